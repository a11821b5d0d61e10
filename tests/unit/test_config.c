/* dovegate-auth configuration: parsing, line numbers in errors, relative
   paths, and the files the config names (secret, master password, signing
   key, users); ticket mode's responses. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "external.h"
#include "credentials.h"
#include "decision.h"
#include "keyring.h"
#include "log.h"
#include "runtime.h"
#include "ticket_json.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

struct tmpdir {
	char dir[64];
	char conf[128];
	char err[1024];
	struct dglog log;
	char ring[128];                 /* key ring with ticket.key's public key */
};

static void write_file(const struct tmpdir *t, const char *name, const char *text,
		       mode_t mode)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", t->dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

/* ticket.key (0600) and its public key in ring. */
static void write_ticket_key(struct tmpdir *t)
{
	unsigned char pk[TICKET_PK_BYTES], sk[TICKET_SK_BYTES];
	char paserk[128], line[256];

	crypto_sign_keypair(pk, sk);
	assert_true(paserk_k4_secret_encode(sk, paserk, sizeof(paserk)));
	snprintf(line, sizeof(line), "# test key\nedge-1 %s\n", paserk);
	write_file(t, "ticket.key", line, 0600);
	assert_true(paserk_k4_public_encode(pk, paserk, sizeof(paserk)));
	snprintf(line, sizeof(line), "edge-1 %s\n", paserk);
	write_file(t, "ring", line, 0644);
	snprintf(t->ring, sizeof(t->ring), "%s/ring", t->dir);
	sodium_memzero(sk, sizeof(sk));
}

static int setup(void **state)
{
	struct tmpdir *t = calloc(1, sizeof(*t));

	strcpy(t->dir, "/tmp/dg-test-config-XXXXXX");
	assert_non_null(mkdtemp(t->dir));
	snprintf(t->conf, sizeof(t->conf), "%s/dovegate-auth.conf", t->dir);
	write_file(t, "secret", "s3cr3t\n", 0600);
	write_file(t, "master", "m4ster\n", 0600);
	write_file(t, "users", "alice:{PLAIN}x::::::\n", 0644);
	write_ticket_key(t);
	dglog_init(&t->log);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tmpdir *t = *state;
	const char *names[] = { "secret", "master", "users", "dovegate-auth.conf",
				"ticket.key", "ring" };
	char path[256];

	for (size_t i = 0; i < N(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", t->dir, names[i]);
		unlink(path);
	}
	rmdir(t->dir);
	free(t);
	return 0;
}

#define VALID \
	"; comment\n"                                   /* 1 */ \
	"[server]\n"                                    /* 2 */ \
	"listen = 127.0.0.1:9143\n"                     /* 3 */ \
	"secret_header = X-Dovegate-Secret\n"           /* 4 */ \
	"secret_file = secret   ; inline comment\n"     /* 5 */ \
	"timeout = 7\n"                                 /* 6 */ \
	"max_header_bytes = 4096\n"                     /* 7 */ \
	"\n"                                            /* 8 */ \
	"[log]\n"                                       /* 9 */ \
	"target = syslog\n"                             /* 10 */ \
	"[passdb]\n"                                    /* 11 */ \
	"driver = passwd-file\n"                        /* 12 */ \
	"path = users\n"                                /* 13 */ \
	"default_scheme = sha512-crypt\n"               /* 14 */ \
	"[backend]\n"                                   /* 15 */ \
	"imap = 127.0.0.1:10143\n"                      /* 16 */ \
	"pop3 = [::1]:10110\n"                          /* 17 */ \
	"[credentials]\n"                               /* 18 */ \
	"mode = master\n"                               /* 19 */ \
	"master_user = dovegate\n"                      /* 20 */ \
	"master_separator = *\n"                        /* 21 */ \
	"master_password_file = master\n"               /* 22 */

/* Loads `text` as the config; returns config_load()'s result. */
static int load(struct tmpdir *t, const char *text, struct dg_config *cfg)
{
	write_file(t, "dovegate-auth.conf", text, 0644);
	t->err[0] = '\0';
	return config_load(t->conf, cfg, t->err, sizeof(t->err));
}

/* Expect an error "CONF:line: message". */
static void expect_error(struct tmpdir *t, const char *text, unsigned line,
			 const char *message)
{
	struct dg_config cfg;
	char want[1024];

	assert_int_equal(load(t, text, &cfg), -1);
	if (line != 0)
		snprintf(want, sizeof(want), "%s:%u: %s", t->conf, line, message);
	else
		snprintf(want, sizeof(want), "%s: %s", t->conf, message);
	assert_string_equal(t->err, want);
}

static void test_valid(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char path[256];

	assert_int_equal(load(t, VALID, &cfg), 0);
	assert_false(cfg.listen.is_unix);
	assert_int_equal(cfg.listen.addr.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.listen.addr)->sin_port), 9143);
	assert_string_equal(cfg.secret_header, "X-Dovegate-Secret");
	assert_int_equal(cfg.timeout, 7);
	assert_int_equal(cfg.max_header_bytes, 4096);
	assert_int_equal(cfg.log_target, DGLOG_SYSLOG);
	assert_string_equal(cfg.default_scheme, "SHA512-CRYPT");
	assert_true(cfg.has_backend[DG_PROTO_IMAP]);
	assert_true(cfg.has_backend[DG_PROTO_POP3]);
	assert_false(cfg.has_backend[DG_PROTO_SMTP]);
	/* [backend] lines are pools of one, in file order */
	assert_int_equal(cfg.backend_count, 2);
	assert_null(cfg.backends[1].name);
	assert_int_equal(cfg.backends[1].proto, DG_PROTO_POP3);
	assert_string_equal(cfg.backends[1].addr.ip, "::1");
	assert_int_equal(cfg.backends[1].addr.port, 10110);
	assert_int_equal(cfg.backends[1].weight, 1);
	assert_int_equal(cfg.backends[1].line, 17);
	assert_int_equal(cfg.cred_mode, CRED_MODE_MASTER);
	assert_string_equal(cfg.master_user, "dovegate");
	assert_string_equal(cfg.master_separator, "*");
	assert_int_equal(cfg.line[CK_MASTER_PASSWORD_FILE], 22);
	/* relative paths are relative to the config file's directory */
	snprintf(path, sizeof(path), "%s/secret", t->dir);
	assert_string_equal(cfg.secret_file, path);
	snprintf(path, sizeof(path), "%s/users", t->dir);
	assert_string_equal(cfg.passdb_path, path);
	snprintf(path, sizeof(path), "%s/master", t->dir);
	assert_string_equal(cfg.master_password_file, path);
	config_free(&cfg);
}

static void test_defaults(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;

	assert_int_equal(load(t, "[server]\nsecret_file = /etc/x\n[passdb]\npath = /etc/u\n"
			      "[backend]\nsmtp = 127.0.0.1:25\n[credentials]\n"
			      "mode = passthrough\n", &cfg), 0);
	assert_string_equal(cfg.listen_text, "127.0.0.1:9143");
	assert_int_equal(ntohs(((struct sockaddr_in *)&cfg.listen.addr)->sin_port), 9143);
	assert_string_equal(cfg.secret_header, "X-Dovegate-Secret");
	assert_int_equal(cfg.timeout, 5);
	assert_int_equal(cfg.max_header_bytes, 8192);
	assert_int_equal(cfg.socket_mode, 0660);
	assert_int_equal(cfg.log_target, DGLOG_STDERR);
	assert_string_equal(cfg.default_scheme, "CRYPT");
	assert_string_equal(cfg.secret_file, "/etc/x");
	assert_int_equal(cfg.cred_mode, CRED_MODE_PASSTHROUGH);
	assert_null(cfg.user);
	assert_int_equal(cfg.ticket_lifetime, 60);
	config_free(&cfg);
}

static void test_unknown_key(void **state)
{
	struct tmpdir *t = *state;
	char text[2048];

	snprintf(text, sizeof(text), "%s[server]\nlisten_port = 1\n", VALID);
	expect_error(t, text, 24, "unknown key 'listen_port' in [server]");
	expect_error(t, "[server]\nsecret_file = x\n[backend]\nimap2 = 127.0.0.1:1\n", 4,
		     "unknown key 'imap2' in [backend]");
	expect_error(t, "listen = 127.0.0.1:1\n", 1, "'listen' outside of any [section]");
}

static void test_unknown_section(void **state)
{
	struct tmpdir *t = *state;
	char text[2048];

	snprintf(text, sizeof(text), "%s[nosuch]\nttl = 5\n", VALID);
	expect_error(t, text, 23, "unknown section [nosuch]");
}

static void test_syntax_errors(void **state)
{
	struct tmpdir *t = *state;
	char text[2048], longline[400];

	expect_error(t, "[server]\nsecret_file = x\nlisten\n", 3, "syntax error");
	expect_error(t, "[server]\nsecret_file = x\nsecret_file = y\n", 3,
		     "duplicate key 'secret_file' (first set on line 2)");
	expect_error(t, "[server]\nsecret_file = x\n  continued\n", 3,
		     "indented line (continuation lines are not supported)");
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	snprintf(text, sizeof(text), "[server]\nsecret_file = %s\n", longline);
	expect_error(t, text, 2, "line too long");
	expect_error(t, "[server]\ntimeout = 0\n", 2, "timeout: must be a number from 1 to 300");
	expect_error(t, "[server]\ntimeout = 5s\n", 2, "timeout: must be a number from 1 to 300");
	expect_error(t, "[server]\nsocket_mode = 0999\n", 2,
		     "socket_mode: must be an octal mode such as 0660");
	expect_error(t, "[log]\ntarget = file\n", 2, "target: must be stderr or syslog");
	expect_error(t, "[passdb]\ndriver = ldap\n", 2, "driver: only passwd-file is supported");
	expect_error(t, "[passdb]\ndefault_scheme = ROT13\n", 2,
		     "default_scheme: unknown password scheme");
	expect_error(t, "[credentials]\nmode = tickets\n", 2,
		     "mode: must be ticket, master or passthrough");
	expect_error(t, "[ticket]\naudience = mx 1\n", 2,
		     "audience: must be 1-127 letters, digits, '.', '_', ':' or '-'");
	expect_error(t, "[ticket]\naudience = mx/1\n", 2,
		     "audience: must be 1-127 letters, digits, '.', '_', ':' or '-'");
	expect_error(t, "[ticket]\nlifetime = 0\n", 2, "lifetime: must be a number from 1 to 300");
	expect_error(t, "[ticket]\nlifetime = 301\n", 2, "lifetime: must be a number from 1 to 300");
	expect_error(t, "[ticket]\nsigning_key =\n", 2, "signing_key: must not be empty");
	expect_error(t, "[server]\nsecret_header = X Secret\n", 2,
		     "secret_header: must be a header name (letters, digits, '-')");
}

static void test_bad_listen(void **state)
{
	struct tmpdir *t = *state;
	const char *bad[] = { "localhost:9143", "127.0.0.1", "127.0.0.1:0", "*:9143",
			      "127.0.0.1:70000", "[::1]", "127.0.0.1:9143x", "::1:9143",
			      "unix/run/x" };
	char text[256];

	for (size_t i = 0; i < N(bad); i++) {
		snprintf(text, sizeof(text), "[server]\n\nlisten = %s\n", bad[i]);
		expect_error(t, text, 3, "listen: expected IP:port, [IPv6]:port or unix:/path");
	}
	expect_error(t, "[server]\nlisten = unix:run/auth.sock\n", 2,
		     "listen: unix socket path must be absolute");
}

static void test_listen_forms(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char text[2048];

	/* replace line 3, "listen = 127.0.0.1:9143" (23 bytes) */
	strcpy(text, VALID);
	memcpy(strstr(text, "listen = 127.0.0.1:9143"), "listen = [::1]:19143   ", 23);
	assert_int_equal(load(t, text, &cfg), 0);
	assert_int_equal(cfg.listen.addr.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&cfg.listen.addr)->sin6_port), 19143);
	config_free(&cfg);

	strcpy(text, VALID);
	memcpy(strstr(text, "listen = 127.0.0.1:9143"), "listen = unix:/run/x.sk", 23);
	assert_int_equal(load(t, text, &cfg), 0);
	assert_true(cfg.listen.is_unix);
	assert_string_equal(cfg.listen.path, "/run/x.sk");
	config_free(&cfg);

	strcpy(text, VALID);
	memcpy(strstr(text, "listen = 127.0.0.1:9143"), "listen = 0.0.0.0:9143  ", 23);
	assert_int_equal(load(t, text, &cfg), 0);
	config_free(&cfg);
}

/* [metrics]: a port alone is loopback; the connection cap; the bearer
   token file, read with the runtime under the secret-file rules. [route]
   allow_hosts_outside_pools is off unless set. */
static void test_metrics_section(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	struct runtime *rt;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg.metrics_listen.addr;
	char want[1024], path[256];

	assert_int_equal(load(t, VALID "[metrics]\nlisten = 9145\n", &cfg), 0);
	assert_string_equal(cfg.metrics_listen_text, "127.0.0.1:9145");
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(ntohs(sin->sin_port), 9145);
	assert_int_equal(cfg.metrics_max_connections, 16);
	assert_null(cfg.metrics_token_file);
	assert_false(cfg.route_allow_outside);
	config_free(&cfg);

	assert_int_equal(load(t, VALID "[metrics]\nlisten = [::]:9145\nmax_connections = 2\n"
			      "bearer_token_file = token\n[route]\n"
			      "allow_hosts_outside_pools = yes\n", &cfg), 0);
	assert_int_equal(cfg.metrics_listen.addr.ss_family, AF_INET6);
	assert_int_equal(cfg.metrics_max_connections, 2);
	snprintf(path, sizeof(path), "%s/token", t->dir);
	assert_string_equal(cfg.metrics_token_file, path);
	assert_true(cfg.route_allow_outside);
	config_free(&cfg);

	expect_error(t, VALID "[metrics]\nlisten = 9145\nmax_connections = 0\n", 25,
		     "max_connections: must be a number from 1 to 1024");
	expect_error(t, VALID "[metrics]\nlisten = 99999999\n", 24,
		     "listen: expected IP:port, [IPv6]:port or a port (on 127.0.0.1)");
	expect_error(t, VALID "[route]\nallow_hosts_outside_pools = maybe\n", 24,
		     "allow_hosts_outside_pools: must be yes or no");

	/* the token: refused when others may change it, read otherwise */
	write_file(t, "dovegate-auth.conf", VALID "[metrics]\nlisten = 9145\n"
		   "bearer_token_file = token\n", 0644);
	write_file(t, "token", "t0ken-for-scrapes\n", 0620);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:25: bearer_token_file %s/token: is writable by group "
		 "or others (mode 0620); run chmod go-w %s/token", t->conf, t->dir, t->dir);
	assert_string_equal(t->err, want);
	write_file(t, "token", "t0ken-for-scrapes\n", 0600);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	assert_non_null(rt);
	assert_string_equal(rt->metrics_token.data, "t0ken-for-scrapes");
	runtime_unref(rt);
	unlink(path);
}

static void test_bad_backend(void **state)
{
	struct tmpdir *t = *state;

	expect_error(t, "[backend]\nimap = mail.example.com:143\n", 2,
		     "imap: not an IP literal (host names are not allowed: nginx needs an IP)");
	expect_error(t, "[backend]\nsmtp = ::1:25\n", 2,
		     "smtp: expected ip:port (write IPv6 as [addr]:port)");
}

/* [cache], [relay], [external]: values and their errors. */
static void test_methods_sections(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char text[2048];

	assert_int_equal(load(t, VALID, &cfg), 0);
	assert_int_equal(cfg.cache_ttl, 300);
	assert_int_equal(cfg.cache_negative_ttl, 30);
	assert_int_equal(cfg.cache_size, 100000);
	assert_null(cfg.relay_domains);
	assert_int_equal(cfg.external_user_from, EXTERNAL_CN);
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[cache]\nttl = 60\nnegative_ttl = 0\nsize = 0\n"
		 "[relay]\ndomains = Example.ORG example.net\nbackend = 127.0.0.1:25\n"
		 "[external]\nuser_from = map\nmap_file = cert-users\n", VALID);
	assert_int_equal(load(t, text, &cfg), 0);
	assert_int_equal(cfg.cache_ttl, 60);
	assert_int_equal(cfg.cache_negative_ttl, 0);
	assert_int_equal(cfg.cache_size, 0);
	assert_string_equal(cfg.relay_domains, " example.org example.net ");
	assert_true(cfg.has_relay_backend);
	assert_string_equal(cfg.relay_backend.text, "127.0.0.1:25");
	assert_int_equal(cfg.external_user_from, EXTERNAL_MAP);
	assert_non_null(strstr(cfg.external_map_file, "/cert-users"));
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[cache]\nsize = lots\n", VALID);
	expect_error(t, text, 24, "size: must be a number from 0 to 10000000");
	snprintf(text, sizeof(text), "%s[relay]\ndomains = a.org,b.org\n", VALID);
	expect_error(t, text, 24, "domains: must be domain names separated by spaces");
	snprintf(text, sizeof(text), "%s[external]\nuser_from = uid\n", VALID);
	expect_error(t, text, 24, "user_from: must be cn, email or map");
}

/* [penalty]: defaults (on, nothing trusted), values and their errors. */
static void test_penalty_section(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char text[2048];

	assert_int_equal(load(t, VALID, &cfg), 0);
	assert_true(cfg.penalty_enabled);
	assert_int_equal(cfg.penalty.v4_prefix, 32);
	assert_int_equal(cfg.penalty.v6_prefix, 64);
	assert_int_equal(cfg.penalty.max_delay, 15);
	assert_int_equal(cfg.penalty.max_attempts, 5);
	assert_int_equal(cfg.penalty.forget_after, 300);
	assert_int_equal(cfg.penalty.exempt_after_success, 600);
	assert_int_equal(cfg.penalty.max_entries, 65536);
	assert_int_equal(cfg.penalty.trusted_count, 0);
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[penalty]\nenabled = no\nipv4_prefix = 24\n"
		 "ipv6_prefix = 48\nmax_delay = 8\nattempts = 3\nforget_after = 60\n"
		 "exempt_after_success = 0\nmax_entries = 1000\n"
		 "trusted_networks = 10.0.0.0/8  2001:db8::/32 192.0.2.1\n", VALID);
	assert_int_equal(load(t, text, &cfg), 0);
	assert_false(cfg.penalty_enabled);
	assert_int_equal(cfg.penalty.v4_prefix, 24);
	assert_int_equal(cfg.penalty.v6_prefix, 48);
	assert_int_equal(cfg.penalty.max_delay, 8);
	assert_int_equal(cfg.penalty.max_attempts, 3);
	assert_int_equal(cfg.penalty.forget_after, 60);
	assert_int_equal(cfg.penalty.exempt_after_success, 0);
	assert_int_equal(cfg.penalty.max_entries, 1000);
	assert_int_equal(cfg.penalty.trusted_count, 3);
	assert_ptr_equal(cfg.penalty.trusted, cfg.penalty_trusted);
	assert_int_equal(cfg.penalty_trusted[0].prefix, 8);
	assert_int_equal(cfg.penalty_trusted[1].prefix, 32);
	assert_int_equal(cfg.penalty_trusted[2].prefix, 32);
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[penalty]\ntrusted_networks =\n", VALID);
	assert_int_equal(load(t, text, &cfg), 0);
	assert_int_equal(cfg.penalty.trusted_count, 0);
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[penalty]\nenabled = maybe\n", VALID);
	expect_error(t, text, 24, "enabled: must be yes or no");
	snprintf(text, sizeof(text), "%s[penalty]\nipv4_prefix = 33\n", VALID);
	expect_error(t, text, 24, "ipv4_prefix: must be a number from 1 to 32");
	snprintf(text, sizeof(text), "%s[penalty]\nmax_delay = 0\n", VALID);
	expect_error(t, text, 24, "max_delay: must be a number from 1 to 3600");
	snprintf(text, sizeof(text), "%s[penalty]\ntrusted_networks = 10.0.0.0/33\n", VALID);
	expect_error(t, text, 24, "trusted_networks: '10.0.0.0/33': bad prefix length");
	snprintf(text, sizeof(text), "%s[penalty]\ntrusted_networks = localhost\n", VALID);
	expect_error(t, text, 24, "trusted_networks: 'localhost': not an IP address");
}

/* [server] proxy_protocol_trusted: the load balancers whose PROXY address is
   believed (client_addr.h); none by default. [server] comes after VALID's
   last section, so it is opened again. */
static void test_proxy_protocol_trusted(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char text[2048];

	assert_int_equal(load(t, VALID, &cfg), 0);
	assert_int_equal(cfg.proxy_trusted_count, 0);
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[server]\nproxy_protocol_trusted = 10.1.0.0/16 2001:db8::5\n",
		 VALID);
	assert_int_equal(load(t, text, &cfg), 0);
	assert_int_equal(cfg.proxy_trusted_count, 2);
	assert_int_equal(cfg.proxy_trusted[0].prefix, 16);
	assert_int_equal(cfg.proxy_trusted[1].prefix, 128);
	assert_int_equal(cfg.penalty_trusted_count, 0);
	config_free(&cfg);

	snprintf(text, sizeof(text), "%s[server]\nproxy_protocol_trusted = lb.example.org\n", VALID);
	expect_error(t, text, 24, "proxy_protocol_trusted: 'lb.example.org': not an IP address");
}

static void test_required(void **state)
{
	struct tmpdir *t = *state;

	expect_error(t, "[passdb]\npath = users\n", 0, "[server] secret_file is required");
	/* ticket mode is the default */
	expect_error(t, "[server]\nsecret_file = s\n[passdb]\npath = u\n[backend]\n"
		     "imap = 127.0.0.1:1\n", 0, "[ticket] signing_key is required");
	expect_error(t, "[server]\nsecret_file = s\n[passdb]\npath = u\n[backend]\n"
		     "imap = 127.0.0.1:1\n[ticket]\nsigning_key = k.key\n", 6,
		     "[backend] imap needs an audience (or set [ticket] audience): "
		     "imap uses tickets");
	expect_error(t, "[server]\nsecret_file = s\n[passdb]\npath = u\n[backend]\n"
		     "imap = 127.0.0.1:1\n[credentials]\nmode = ticket\n[ticket]\n"
		     "audience = mx1\n", 0, "[ticket] signing_key is required");
	expect_error(t, "[server]\nsecret_file = s\n[passdb]\npath = u\n[backend]\n"
		     "imap = 127.0.0.1:1\n[credentials]\nmode = master\n", 0,
		     "[credentials] master_user is required");
	expect_error(t, "[server]\nsecret_file = s\n[passdb]\npath = u\n"
		     "[credentials]\nmode = passthrough\n", 0,
		     "no backend: set [backend] imap, pop3 or smtp, or add [backend NAME] sections");
}

static void test_missing_config_file(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char path[256], want[512];

	snprintf(path, sizeof(path), "%s/nonexistent.conf", t->dir);
	assert_int_equal(config_load(path, &cfg, t->err, sizeof(t->err)), -1);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(t->err, want);
}

/* ---- the files a config names (what -t also checks) ----------------------- */

static void test_runtime_ok(void **state)
{
	struct tmpdir *t = *state;
	struct runtime *rt;

	write_file(t, "dovegate-auth.conf", VALID, 0644);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	if (rt == NULL)
		fail_msg("%s", t->err);
	assert_string_equal(rt->http_secret.data, "s3cr3t");
	assert_string_equal(rt->cred.master_password.data, "m4ster");
	assert_int_equal(passdb_user_count(rt->passdb), 1);
	runtime_unref(rt);
}

static void test_insecure_master_password_file(void **state)
{
	struct tmpdir *t = *state;
	const mode_t modes[] = { 0640, 0604, 0620, 0644 };
	char want[512];

	write_file(t, "dovegate-auth.conf", VALID, 0644);
	for (size_t i = 0; i < N(modes); i++) {
		write_file(t, "master", "m4ster\n", modes[i]);
		assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
		snprintf(want, sizeof(want), "%s:22: master_password_file %s/master: is "
			 "accessible by group or others (mode %04o); run chmod 600 on it",
			 t->conf, t->dir, (unsigned)modes[i]);
		assert_string_equal(t->err, want);
	}
	write_file(t, "master", "m4ster\n", 0400);
	struct runtime *rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	assert_non_null(rt);
	runtime_unref(rt);
}

/* The shared secret: readable by a group is only warned about, but a file
   others can change (or one in a directory they can write to) is refused. */
static void test_untrusted_secret_file(void **state)
{
	struct tmpdir *t = *state;
	char want[1024];

	write_file(t, "dovegate-auth.conf", VALID, 0644);
	write_file(t, "secret", "s3cr3t\n", 0662);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:5: secret_file %s/secret: is writable by group "
		 "or others (mode 0662); run chmod go-w %s/secret", t->conf, t->dir, t->dir);
	assert_string_equal(t->err, want);
	write_file(t, "secret", "s3cr3t\n", 0600);
	assert_int_equal(chmod(t->dir, 0777), 0);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	assert_non_null(strstr(t->err, "secret_file "));
	snprintf(want, sizeof(want), ": is in directory %s, writable by group or others "
		 "(mode 0777); run chmod go-w %s", t->dir, t->dir);
	assert_non_null(strstr(t->err, want));
	assert_int_equal(chmod(t->dir, 0700), 0);
}

static void test_bad_secret_files(void **state)
{
	struct tmpdir *t = *state;
	char want[512];

	write_file(t, "dovegate-auth.conf", VALID, 0644);
	write_file(t, "master", "two\nlines\n", 0600);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:22: master_password_file %s/master: contains "
		 "a control character or more than one line", t->conf, t->dir);
	assert_string_equal(t->err, want);

	write_file(t, "master", "m4ster", 0600);       /* no newline is fine */
	unlink(strcat(strcpy(want, t->dir), "/secret"));
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:5: secret_file %s/secret: No such file or directory",
		 t->conf, t->dir);
	assert_string_equal(t->err, want);

	write_file(t, "secret", "\n", 0600);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	assert_non_null(strstr(t->err, "secret: is empty"));
}

static void test_users_file(void **state)
{
	struct tmpdir *t = *state;
	struct runtime *rt;
	char path[256], want[1024];

	write_file(t, "dovegate-auth.conf", VALID, 0644);
	snprintf(path, sizeof(path), "%s/users", t->dir);
	unlink(path);
	/* -t and reload: an error naming the line of [passdb] path */
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:13: users file ", t->conf);
	assert_memory_equal(t->err, want, strlen(want));
	assert_non_null(strstr(t->err, "No such file or directory"));
	/* start-up: runs, logins fail temporarily */
	rt = runtime_load(t->conf, false, &t->log, t->err, sizeof(t->err));
	assert_non_null(rt);
	assert_int_equal(passdb_user_count(rt->passdb), 0);
	runtime_unref(rt);
}

static void test_passthrough_needs_no_master(void **state)
{
	struct tmpdir *t = *state;
	struct runtime *rt;

	write_file(t, "dovegate-auth.conf",
		   "[server]\nsecret_file = secret\n[passdb]\npath = users\n"
		   "[backend]\nimap = 127.0.0.1:10143\n[credentials]\nmode = passthrough\n", 0644);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	if (rt == NULL)
		fail_msg("%s", t->err);
	assert_int_equal(rt->cred.mode, CRED_MODE_PASSTHROUGH);
	assert_null(rt->cred.master_password.data);
	runtime_unref(rt);
}

/* ---- ticket mode (the default) ------------------------------------------- */

#define TICKET_CONF \
	"[server]\n"                                    /* 1 */ \
	"secret_file = secret\n"                        /* 2 */ \
	"[passdb]\n"                                    /* 3 */ \
	"path = users\n"                                /* 4 */ \
	"[backend]\n"                                   /* 5 */ \
	"imap = 127.0.0.1:10143\n"                      /* 6 */ \
	"[ticket]\n"                                    /* 7 */ \
	"signing_key = ticket.key\n"                    /* 8 */ \
	"audience = mx1.example.org\n"                  /* 9 */ \
	"lifetime = 30\n"                               /* 10 */

static void test_ticket_config(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;
	char path[256];

	assert_int_equal(load(t, TICKET_CONF, &cfg), 0);
	assert_int_equal(cfg.cred_mode, CRED_MODE_TICKET);
	assert_string_equal(cred_mode_name(cfg.cred_mode), "ticket");
	snprintf(path, sizeof(path), "%s/ticket.key", t->dir);
	assert_string_equal(cfg.ticket_signing_key, path);
	assert_string_equal(cfg.ticket_audience, "mx1.example.org");
	assert_int_equal(cfg.ticket_lifetime, 30);
	assert_int_equal(cfg.line[CK_TICKET_AUDIENCE], 9);
	config_free(&cfg);
}

static void test_ticket_key_errors(void **state)
{
	struct tmpdir *t = *state;
	char want[1024], path[256];

	write_file(t, "dovegate-auth.conf", TICKET_CONF, 0644);
	snprintf(path, sizeof(path), "%s/ticket.key", t->dir);
	assert_int_equal(chmod(path, 0640), 0);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:8: signing_key %s: is accessible by group or "
		 "others (mode 0640); run chmod 600 on it", t->conf, path);
	assert_string_equal(t->err, want);

	write_file(t, "ticket.key", "edge-1 k4.public.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n", 0600);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:8: signing_key %s:1: not a valid k4.secret "
		 "PASERK key", t->conf, path);
	assert_string_equal(t->err, want);

	unlink(path);
	assert_null(runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err)));
	snprintf(want, sizeof(want), "%s:8: signing_key %s: No such file or directory",
		 t->conf, path);
	assert_string_equal(t->err, want);
}

static const char *response_header(const struct authhttp_response *resp, const char *name)
{
	for (size_t i = 0; i < resp->count; i++) {
		if (strcmp(resp->headers[i].name, name) == 0)
			return resp->headers[i].value;
	}
	return NULL;
}

/* Auth-Pass must be a ticket the backend accepts, carrying the login's facts. */
static void check_ticket(const struct tmpdir *t, const char *token,
			 const struct cred_login *l, struct ticket_claims *c)
{
	unsigned char msg[TICKET_MAX_LEN];
	char kid[TICKET_KID_MAX + 1], err[256];
	struct keyring *ring = keyring_load(t->ring, err, sizeof(err));
	size_t msg_len;
	struct ticket_expect e = { .aud = "mx1.example.org", .sub = l->user,
		.svc = dg_proto_name(l->proto), .now = time(NULL), .skew = 2 };

	assert_non_null(ring);
	assert_int_equal(keyring_verify(ring, token, strlen(token), kid, msg, sizeof(msg),
					&msg_len), TICKET_ACCEPTED);
	assert_string_equal(kid, "edge-1");
	keyring_free(ring);
	if (!ticket_claims_from_json((char *)msg, msg_len, c, err, sizeof(err)))
		fail_msg("%s", err);
	assert_int_equal(ticket_claims_check(c, &e), TICKET_ACCEPTED);
	assert_int_equal(c->exp - c->iat, 30);
	assert_string_equal(c->jti, l->session);
}

static void test_ticket_response(void **state)
{
	struct tmpdir *t = *state;
	struct authhttp_response resp;
	struct ticket_claims c;
	struct runtime *rt;
	char user[129], detail[160];
	const char *why;
	struct cred_login l = {
		.user = user, .user_len = 128, .pass = "pw", .pass_len = 2,
		.session = "AAAAAAAAAAAAAAAAAAAAAA", .proto = DG_PROTO_SMTP,
		.rip = "2001:db8:85a3:1234:5678:8a2e:370:7334", .rport = 65535,
		.tls = true, .tls_protocol = "TLSv1.3",
	};

	memset(user, 'u', 128);
	user[128] = '\0';
	write_file(t, "dovegate-auth.conf", TICKET_CONF, 0644);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	if (rt == NULL)
		fail_msg("%s", t->err);
	assert_string_equal(rt->cred.kid, "edge-1");
	assert_false(credentials_user_ok(&rt->cred, DG_PROTO_IMAP, "\xff", 1, &why));
	assert_string_equal(why, "user name is not valid UTF-8");
	assert_true(credentials_user_ok(&rt->cred, DG_PROTO_IMAP, user, 128, &why));

	assert_int_equal(credentials_respond(&rt->cred, &resp, "127.0.0.1", "10587", &l,
					     &why), 0);
	assert_string_equal(response_header(&resp, "Auth-User"), user);
	check_ticket(t, response_header(&resp, "Auth-Pass"), &l, &c);
	assert_string_equal(c.svc, "smtp");
	assert_string_equal(c.rip, l.rip);
	assert_int_equal(c.rport, 65535);
	assert_true(c.tls);
	assert_string_equal(c.tls_protocol, "TLSv1.3");
	assert_true(strlen(response_header(&resp, "Auth-Pass")) <= TICKET_MAX_SIZE_FOR_NGINX);
	/* nginx reads it all */
	assert_int_equal(authhttp_response_check(&resp, detail, sizeof(detail)),
			 AUTHHTTP_CHECK_OK);
	authhttp_response_clear(&resp);

	/* unknown port, no TLS: left out */
	l.rport = 0;
	l.tls = false;
	l.tls_protocol = "";
	l.proto = DG_PROTO_IMAP;
	assert_int_equal(credentials_respond(&rt->cred, &resp, "127.0.0.1", "10143", &l,
					     &why), 0);
	check_ticket(t, response_header(&resp, "Auth-Pass"), &l, &c);
	assert_int_equal(c.rport, 0);
	assert_false(c.tls);
	assert_string_equal(c.tls_protocol, "");
	authhttp_response_clear(&resp);
	runtime_unref(rt);
}

/* A whole decision: the ticket carries the logged session id and the
   client facts from nginx's headers (PROXY address/port, TLS). */
static void on_reply(void *ctx, const struct authhttp_response *resp)
{
	char *pass = ctx;
	const char *v = response_header(resp, "Auth-Pass");

	snprintf(pass, TICKET_MAX_LEN + 1, "%s", v != NULL ? v : "");
}

/* Runs one decision inline and returns its log line (captured from stderr). */
static const char *decide(struct runtime *rt, struct dglog *log,
			  const struct authhttp_pair *pairs, size_t n, char *pass)
{
	static char line[4096];
	struct decision_env env = { rt, NULL, log };
	int saved = dup(STDERR_FILENO);
	FILE *cap = tmpfile();
	ssize_t len;

	fflush(stderr);
	dup2(fileno(cap), STDERR_FILENO);
	decision_run(&env, pairs, n, on_reply, pass);
	dup2(saved, STDERR_FILENO);
	close(saved);
	len = pread(fileno(cap), line, sizeof(line) - 1, 0);
	fclose(cap);
	line[len > 0 ? len : 0] = '\0';
	return line;
}

static void test_ticket_decision(void **state)
{
	struct tmpdir *t = *state;
	const struct authhttp_pair pairs[] = {
		{ "Auth-Method", "plain" }, { "Auth-User", "alice" }, { "Auth-Pass", "x" },
		{ "Auth-Protocol", "imap" }, { "Auth-Login-Attempt", "1" },
		{ "Client-IP", "192.0.2.1" }, { "Proxy-Protocol-Addr", "2001:db8::7" },
		{ "Proxy-Protocol-Port", "51234" }, { "Auth-SSL", "on" },
		{ "Auth-SSL-Protocol", "TLSv1.3" }, { "X-Dovegate-Secret", "s3cr3t" },
	};
	char pass[TICKET_MAX_LEN + 1] = "", session[64];
	struct ticket_claims c;
	struct cred_login l = { .user = "alice", .session = session, .proto = DG_PROTO_IMAP };
	struct runtime *rt;
	const char *line;

	/* nginx's peer 192.0.2.1 is a configured load balancer: its PROXY
	   address is the client, in the ticket and in the log */
	write_file(t, "dovegate-auth.conf", TICKET_CONF
		   "[server]\nproxy_protocol_trusted = 192.0.2.0/24\n", 0644);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	assert_non_null(rt);
	line = decide(rt, &t->log, pairs, N(pairs), pass);
	runtime_unref(rt);
	assert_non_null(strstr(line, " rip=2001:db8::7 result=ok reason=- "
			       "backend=127.0.0.1:10143 mode=ticket attempt=1 "));
	assert_non_null(strstr(line, " via=192.0.2.1 "));
	assert_non_null(strstr(line, "session="));
	assert_int_equal(sscanf(strstr(line, "session="), "session=%63s", session), 1);
	check_ticket(t, pass, &l, &c);
	assert_string_equal(c.rip, "2001:db8::7");
	assert_int_equal(c.rport, 51234);
	assert_true(c.tls);
	assert_string_equal(c.tls_protocol, "TLSv1.3");
	assert_null(strstr(line, pass));
}

/* Without proxy_protocol_trusted, a PROXY address is only a claim: the
   ticket's rip is Client-IP and its port unknown. */
static void test_ticket_decision_untrusted_proxy(void **state)
{
	struct tmpdir *t = *state;
	const struct authhttp_pair pairs[] = {
		{ "Auth-Method", "plain" }, { "Auth-User", "alice" }, { "Auth-Pass", "x" },
		{ "Auth-Protocol", "imap" }, { "Auth-Login-Attempt", "1" },
		{ "Client-IP", "192.0.2.55" }, { "Proxy-Protocol-Addr", "198.51.100.77" },
		{ "Proxy-Protocol-Port", "51234" }, { "X-Dovegate-Secret", "s3cr3t" },
	};
	char pass[TICKET_MAX_LEN + 1] = "", session[64];
	struct ticket_claims c;
	struct cred_login l = { .user = "alice", .session = session, .proto = DG_PROTO_IMAP };
	struct runtime *rt;
	const char *line;

	write_file(t, "dovegate-auth.conf", TICKET_CONF, 0644);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	assert_non_null(rt);
	line = decide(rt, &t->log, pairs, N(pairs), pass);
	runtime_unref(rt);
	assert_int_equal(sscanf(strstr(line, "session="), "session=%63s", session), 1);
	check_ticket(t, pass, &l, &c);
	assert_string_equal(c.rip, "192.0.2.55");
	assert_int_equal(c.rport, 0);
	assert_non_null(strstr(line, " rip=192.0.2.55 result=ok "));
	assert_non_null(strstr(line, " claimed=198.51.100.77 "));
}

/* ---- per-protocol credentials modes --------------------------------------- */

#define MIXED_CONF \
	TICKET_CONF                                     /* 1-10 */ \
	"[credentials]\n"                               /* 11 */ \
	"smtp_mode = master\n"                          /* 12 */ \
	"pop3_mode = passthrough\n"                     /* 13 */

static void test_per_protocol_modes(void **state)
{
	struct tmpdir *t = *state;
	struct dg_config cfg;

	/* unset: each follows mode */
	assert_int_equal(load(t, VALID, &cfg), 0);
	for (int p = 0; p < DG_PROTO_COUNT; p++)
		assert_int_equal(cfg.proto_cred_mode[p], CRED_MODE_MASTER);
	assert_false(config_uses_cred_mode(&cfg, CRED_MODE_TICKET));
	config_free(&cfg);

	assert_int_equal(load(t, MIXED_CONF "master_user = dg\n"
			      "master_password_file = master\n", &cfg), 0);
	assert_int_equal(cfg.cred_mode, CRED_MODE_TICKET);
	assert_int_equal(cfg.proto_cred_mode[DG_PROTO_IMAP], CRED_MODE_TICKET);
	assert_int_equal(cfg.proto_cred_mode[DG_PROTO_POP3], CRED_MODE_PASSTHROUGH);
	assert_int_equal(cfg.proto_cred_mode[DG_PROTO_SMTP], CRED_MODE_MASTER);
	assert_int_equal(cfg.line[CK_CRED_SMTP_MODE], 12);
	assert_int_equal(cfg.line[CK_CRED_IMAP_MODE], 0);
	config_free(&cfg);

	/* mode = master, imap_mode = ticket: [ticket] is then needed too */
	assert_int_equal(load(t, VALID "imap_mode = ticket\n"
			      "[ticket]\nsigning_key = ticket.key\naudience = mx1\n", &cfg), 0);
	assert_int_equal(cfg.proto_cred_mode[DG_PROTO_POP3], CRED_MODE_MASTER);
	assert_int_equal(cfg.proto_cred_mode[DG_PROTO_IMAP], CRED_MODE_TICKET);
	config_free(&cfg);
}

static void test_per_protocol_mode_errors(void **state)
{
	struct tmpdir *t = *state;

	/* the key that needs it is named, with its line */
	expect_error(t, MIXED_CONF, 12,
		     "[credentials] master_user is required by smtp_mode = master");
	expect_error(t, MIXED_CONF "master_user = dg\n", 12,
		     "[credentials] master_password_file is required by smtp_mode = master");
	expect_error(t, "[server]\nsecret_file = secret\n[passdb]\npath = users\n"
		     "[backend]\nimap = 127.0.0.1:1\n[credentials]\nmode = passthrough\n"
		     "pop3_mode = ticket\n", 9,
		     "[ticket] signing_key is required by pop3_mode = ticket");
	expect_error(t, "[server]\nsecret_file = secret\n[passdb]\npath = users\n"
		     "[backend]\nimap = 127.0.0.1:1\n[credentials]\nmode = passthrough\n"
		     "imap_mode = tickets\n", 9,
		     "imap_mode: must be ticket, master or passthrough");
	expect_error(t, MIXED_CONF "smtp_mode = ticket\n", 14,
		     "duplicate key 'smtp_mode' (first set on line 12)");
}

static void test_per_protocol_credentials(void **state)
{
	struct tmpdir *t = *state;
	struct authhttp_response resp;
	struct runtime *rt;
	const char *why;
	struct cred_login l = {
		.user = "alice", .user_len = 5, .pass = "pw", .pass_len = 2,
		.session = "AAAAAAAAAAAAAAAAAAAAAA", .proto = DG_PROTO_SMTP, .rip = "192.0.2.1",
	};

	write_file(t, "dovegate-auth.conf", MIXED_CONF "master_user = dg\n"
		   "master_password_file = master\n", 0644);
	rt = runtime_load(t->conf, true, &t->log, t->err, sizeof(t->err));
	if (rt == NULL)
		fail_msg("%s", t->err);
	/* both modes' secrets are loaded */
	assert_string_equal(rt->cred.kid, "edge-1");
	assert_string_equal(rt->cred.master_password.data, "m4ster");
	assert_int_equal(credentials_mode(&rt->cred, DG_PROTO_IMAP), CRED_MODE_TICKET);
	assert_int_equal(credentials_mode(&rt->cred, DG_PROTO_POP3), CRED_MODE_PASSTHROUGH);
	assert_int_equal(credentials_mode(&rt->cred, DG_PROTO_SMTP), CRED_MODE_MASTER);

	/* smtp: master */
	assert_int_equal(credentials_respond(&rt->cred, &resp, "127.0.0.1", "10587", &l,
					     &why), 0);
	assert_string_equal(response_header(&resp, "Auth-User"), "alice*dg");
	assert_string_equal(response_header(&resp, "Auth-Pass"), "m4ster");
	authhttp_response_clear(&resp);
	/* imap: a ticket */
	l.proto = DG_PROTO_IMAP;
	assert_int_equal(credentials_respond(&rt->cred, &resp, "127.0.0.1", "10143", &l,
					     &why), 0);
	assert_string_equal(response_header(&resp, "Auth-User"), "alice");
	assert_true(strncmp(response_header(&resp, "Auth-Pass"), "v4.public.", 10) == 0);
	authhttp_response_clear(&resp);
	/* pop3: passthrough */
	l.proto = DG_PROTO_POP3;
	assert_int_equal(credentials_respond(&rt->cred, &resp, "127.0.0.1", "10110", &l,
					     &why), 0);
	assert_string_equal(response_header(&resp, "Auth-Pass"), "pw");
	authhttp_response_clear(&resp);

	/* per-protocol checks: the separator matters for master only, the
	   plaintext password for passthrough only */
	assert_false(credentials_user_ok(&rt->cred, DG_PROTO_SMTP, "a*b", 3, &why));
	assert_true(credentials_user_ok(&rt->cred, DG_PROTO_IMAP, "a*b", 3, &why));
	assert_false(credentials_method_ok(&rt->cred, DG_PROTO_POP3, AUTHHTTP_METHOD_APOP,
					   &why));
	assert_true(credentials_method_ok(&rt->cred, DG_PROTO_IMAP, AUTHHTTP_METHOD_APOP,
					  &why));
	assert_string_equal(cred_mode_name(credentials_mode(&rt->cred, DG_PROTO_SMTP)),
			    "master");
	runtime_unref(rt);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_valid),
		T(test_defaults),
		T(test_unknown_key),
		T(test_unknown_section),
		T(test_methods_sections),
		T(test_penalty_section),
		T(test_proxy_protocol_trusted),
		T(test_syntax_errors),
		T(test_bad_listen),
		T(test_listen_forms),
		T(test_metrics_section),
		T(test_bad_backend),
		T(test_required),
		T(test_missing_config_file),
		T(test_runtime_ok),
		T(test_insecure_master_password_file),
		T(test_bad_secret_files),
		T(test_untrusted_secret_file),
		T(test_users_file),
		T(test_passthrough_needs_no_master),
		T(test_ticket_config),
		T(test_ticket_key_errors),
		T(test_ticket_response),
		T(test_ticket_decision),
		T(test_ticket_decision_untrusted_proxy),
		T(test_per_protocol_modes),
		T(test_per_protocol_mode_errors),
		T(test_per_protocol_credentials),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
