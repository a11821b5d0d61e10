/* The dovecot passdb's protocol pieces (AUTH lines out, server lines in), its
   [passdb NAME] config sections and the order of passdbs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "passdb.h"
#include "passdb_dovecot.h"

static const struct pdc_auth base_auth = {
	.id = 7, .service = "imap", .rip = "203.0.113.9", .lip = "127.0.0.1",
	.session = "abcDEF", .secured = true, .no_penalty = false,
	.user = "alice", .user_len = 5, .pass = "pw", .pass_len = 2,
};

static void test_build_plain(void **state)
{
	char *line;
	size_t len;

	(void)state;
	assert_int_equal(pdc_build_auth(&base_auth, &line, &len), 0);
	/* base64("\0alice\0pw") = "AGFsaWNlAHB3" */
	assert_string_equal(line, "AUTH\t7\tPLAIN\tservice=imap\tlip=127.0.0.1"
			    "\trip=203.0.113.9\tsession=abcDEF\tsecured"
			    "\tresp=AGFsaWNlAHB3\n");
	assert_int_equal(len, strlen(line));
	free(line);
}

static void test_build_resp_last_and_escaped(void **state)
{
	struct pdc_auth a = base_auth;
	char *line, *resp;
	size_t len;

	(void)state;
	a.service = "x\ty\001z";
	a.rip = NULL;
	a.lip = "";
	a.session = NULL;
	a.secured = false;
	a.no_penalty = true;
	a.user = "a\tb";
	a.user_len = 3;
	assert_int_equal(pdc_build_auth(&a, &line, &len), 0);
	assert_non_null(strstr(line, "\tservice=x\001ty\0011z\t"));
	assert_null(strstr(line, "rip="));
	assert_null(strstr(line, "lip="));
	assert_null(strstr(line, "secured"));
	assert_non_null(strstr(line, "\tno-penalty\t"));
	resp = strstr(line, "\tresp=");
	assert_non_null(resp);
	/* resp= is the last parameter; the user's TAB is inside base64 */
	assert_null(strchr(resp + 1, '\t'));
	assert_string_equal(resp, "\tresp=AGEJYgBwdw==\n");
	free(line);
}

static void test_build_refuses(void **state)
{
	struct pdc_auth a = base_auth;
	char *line;
	size_t len;
	static char big[PDC_MAX_LINE];

	(void)state;
	a.pass = "p\0w";
	a.pass_len = 3;
	assert_int_equal(pdc_build_auth(&a, &line, &len), -1);
	assert_null(line);
	a = base_auth;
	a.id = 0;
	assert_int_equal(pdc_build_auth(&a, &line, &len), -1);
	a = base_auth;
	memset(big, 'x', sizeof(big));
	a.pass = big;
	a.pass_len = sizeof(big);
	assert_int_equal(pdc_build_auth(&a, &line, &len), -1);
}

static void test_escape_roundtrip(void **state)
{
	const char in[] = "a\tb\rc\nd\001e\\f";
	char out[2 * sizeof(in) + 1];
	size_t n;

	(void)state;
	n = pdc_tabescape(in, sizeof(in) - 1, out);
	assert_string_equal(out, "a\001tb\001rc\001nd\0011e\\f");
	assert_int_equal(n, strlen(out));
	pdc_tabunescape(out);
	assert_string_equal(out, in);
}

static void test_unescape_odd(void **state)
{
	char s1[] = "x\001";            /* trailing escape char kept */
	char s2[] = "\001q";            /* unknown: the char itself */

	(void)state;
	pdc_tabunescape(s1);
	assert_string_equal(s1, "x\001");
	pdc_tabunescape(s2);
	assert_string_equal(s2, "q");
}

static void test_parse_ok_fields(void **state)
{
	char line[] = "OK\t12\tuser=bob\001tx\t\thost=10.1.2.3\tport=1143\tproxy"
		      "\tnologin\treason=go\001nthere\tempty=\t";
	struct pdc_reply r;

	(void)state;
	assert_int_equal(pdc_parse_line(line, &r), PDC_LINE_OK);
	assert_int_equal(r.id, 12);
	assert_string_equal(r.user, "bob\tx");
	assert_string_equal(r.host, "10.1.2.3");
	assert_int_equal(r.port, 1143);
	assert_true(r.proxy);
	assert_true(r.nologin);
	assert_string_equal(r.reason, "go\nthere");
	assert_null(r.code);
	assert_false(r.temp_fail);
}

static void test_parse_bad_port(void **state)
{
	char l1[] = "OK\t1\tuser=a\tport=70000";
	char l2[] = "OK\t1\tuser=a\tport=x1\thost=";
	struct pdc_reply r;

	(void)state;
	assert_int_equal(pdc_parse_line(l1, &r), PDC_LINE_OK);
	assert_int_equal(r.port, 0);
	assert_int_equal(pdc_parse_line(l2, &r), PDC_LINE_OK);
	assert_int_equal(r.port, 0);
	assert_null(r.host);
}

static void test_parse_fail_codes(void **state)
{
	char l1[] = "FAIL\t3\tuser=alice";
	char l2[] = "FAIL\t4\tuser=alice\tcode=temp_fail\treason=db down";
	char l3[] = "FAIL\t5\tcode=authz_fail";
	char l4[] = "FAIL\t6\ttemp";
	struct pdc_reply r;

	(void)state;
	assert_int_equal(pdc_parse_line(l1, &r), PDC_LINE_FAIL);
	assert_int_equal(r.id, 3);
	assert_string_equal(r.user, "alice");
	assert_false(r.temp_fail);
	assert_int_equal(pdc_parse_line(l2, &r), PDC_LINE_FAIL);
	assert_true(r.temp_fail);
	assert_string_equal(r.code, "temp_fail");
	assert_string_equal(r.reason, "db down");
	assert_int_equal(pdc_parse_line(l3, &r), PDC_LINE_FAIL);
	assert_false(r.temp_fail);
	assert_string_equal(r.code, "authz_fail");
	assert_null(r.user);
	assert_int_equal(pdc_parse_line(l4, &r), PDC_LINE_FAIL);
	assert_true(r.temp_fail);
}

static void test_parse_cont(void **state)
{
	char l1[] = "CONT\t9\t";
	char l2[] = "CONT\t10\tPDw+";
	struct pdc_reply r;

	(void)state;
	assert_int_equal(pdc_parse_line(l1, &r), PDC_LINE_CONT);
	assert_int_equal(r.id, 9);
	assert_string_equal(r.cont, "");
	assert_int_equal(pdc_parse_line(l2, &r), PDC_LINE_CONT);
	assert_string_equal(r.cont, "PDw+");
}

static void test_parse_handshake(void **state)
{
	char v[] = "VERSION\t1\t2";
	char bad_v[] = "VERSION\tx";
	char mech[] = "MECH\tPLAIN\tplaintext";
	char done[] = "DONE";
	char other[] = "NEWTHING\tx";
	struct pdc_reply r;

	(void)state;
	assert_int_equal(pdc_parse_line(v, &r), PDC_LINE_VERSION);
	assert_int_equal(r.version_major, 1);
	assert_int_equal(r.version_minor, 2);
	assert_int_equal(pdc_parse_line(bad_v, &r), PDC_LINE_BAD);
	assert_int_equal(pdc_parse_line(mech, &r), PDC_LINE_MECH);
	assert_int_equal(pdc_parse_line(done, &r), PDC_LINE_DONE);
	assert_int_equal(pdc_parse_line(other, &r), PDC_LINE_OTHER);
}

static void test_parse_bad_ids(void **state)
{
	char l1[] = "OK";
	char l2[] = "OK\t0\tuser=a";
	char l3[] = "FAIL\t-1";
	char l4[] = "OK\t99999999999";
	char l5[] = "";
	struct pdc_reply r;

	(void)state;
	assert_int_equal(pdc_parse_line(l1, &r), PDC_LINE_BAD);
	assert_int_equal(pdc_parse_line(l2, &r), PDC_LINE_BAD);
	assert_int_equal(pdc_parse_line(l3, &r), PDC_LINE_BAD);
	assert_int_equal(pdc_parse_line(l4, &r), PDC_LINE_BAD);
	assert_int_equal(pdc_parse_line(l5, &r), PDC_LINE_OTHER);
}

static void test_spec_check(void **state)
{
	char why[128];

	(void)state;
	assert_int_equal(pdc_spec_check("unix:/run/dovecot/auth-client", why, sizeof(why)), 0);
	assert_int_equal(pdc_spec_check("tcp:127.0.0.1:12345", why, sizeof(why)), 0);
	assert_int_equal(pdc_spec_check("tcp:[::1]:12345", why, sizeof(why)), 0);
	assert_int_equal(pdc_spec_check("unix:relative", why, sizeof(why)), -1);
	assert_int_equal(pdc_spec_check("tcp:localhost:1", why, sizeof(why)), -1);
	assert_int_equal(pdc_spec_check("127.0.0.1:1", why, sizeof(why)), -1);
}

/* ---- [passdb NAME] config sections and the passdb order ----------------------- */

#define BASE_CONF \
	"[server]\nsecret_file = secret\n"              /* 1-2 */ \
	"[backend]\nimap = 127.0.0.1:10143\n"           /* 3-4 */ \
	"[credentials]\nmode = passthrough\n"           /* 5-6 */

struct conf_dir {
	char dir[64];
	char conf[96];
	char err[512];
};

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static int conf_setup(void **state)
{
	struct conf_dir *c = calloc(1, sizeof(*c));

	assert_non_null(c);
	snprintf(c->dir, sizeof(c->dir), "/tmp/dg-pdc-XXXXXX");
	assert_non_null(mkdtemp(c->dir));
	snprintf(c->conf, sizeof(c->conf), "%s/a.conf", c->dir);
	*state = c;
	return 0;
}

static int conf_teardown(void **state)
{
	struct conf_dir *c = *state;
	const char *names[] = { "a.conf", "u1", "u2", NULL };
	char path[160];

	for (int i = 0; names[i] != NULL; i++) {
		snprintf(path, sizeof(path), "%s/%s", c->dir, names[i]);
		unlink(path);
	}
	rmdir(c->dir);
	free(c);
	return 0;
}

static int load_conf(struct conf_dir *c, const char *text, struct dg_config *cfg)
{
	write_text(c->conf, text);
	c->err[0] = '\0';
	return config_load(c->conf, cfg, c->err, sizeof(c->err));
}

static void expect_conf_error(struct conf_dir *c, const char *text, const char *suffix)
{
	struct dg_config cfg;

	assert_int_equal(load_conf(c, text, &cfg), -1);
	if (strstr(c->err, suffix) == NULL)
		fail_msg("error \"%s\" lacks \"%s\"", c->err, suffix);
}

static void test_conf_named_passdbs(void **state)
{
	struct conf_dir *c = *state;
	struct dg_config cfg;

	assert_int_equal(load_conf(c, BASE_CONF
				   "[passdb users]\n"                   /* 7 */
				   "driver = passwd-file\n"             /* 8 */
				   "path = u2\n"                        /* 9 */
				   "default_scheme = plain\n"           /* 10 */
				   "[passdb dovecot]\n"                 /* 11 */
				   "driver = dovecot\n"                 /* 12 */
				   "socket = tcp:127.0.0.1:4000\n"      /* 13 */
				   "timeout = 3\n"
				   "no_penalty = yes\n", &cfg), 0);
	assert_int_equal(cfg.passdb_count, 2);
	assert_string_equal(cfg.passdbs[0].name, "users");
	assert_int_equal(cfg.passdbs[0].driver, PASSDB_DRIVER_PASSWD_FILE);
	assert_string_equal(cfg.passdbs[0].default_scheme, "PLAIN");
	assert_non_null(strstr(cfg.passdbs[0].path, "/u2"));
	assert_int_equal(cfg.passdbs[1].driver, PASSDB_DRIVER_DOVECOT);
	assert_string_equal(cfg.passdbs[1].socket, "tcp:127.0.0.1:4000");
	assert_int_equal(cfg.passdbs[1].timeout, 3);
	assert_true(cfg.passdbs[1].no_penalty);
	config_free(&cfg);
}

/* no_penalty follows [penalty] unless set: dovegate-auth's own hold before
   verifying must not be stacked on Dovecot's per-address delay. */
static void test_conf_no_penalty_follows_penalty(void **state)
{
	struct conf_dir *c = *state;
	struct dg_config cfg;
	static const char dc[] = "[passdb dovecot]\ndriver = dovecot\n"
				 "socket = tcp:127.0.0.1:4000\n";
	char text[512];

	assert_int_equal(load_conf(c, BASE_CONF "[passdb dovecot]\ndriver = dovecot\n"
				   "socket = tcp:127.0.0.1:4000\n", &cfg), 0);
	assert_true(cfg.passdbs[0].no_penalty);         /* [penalty] is on by default */
	config_free(&cfg);
	snprintf(text, sizeof(text), "%s%s[penalty]\nenabled = no\n", BASE_CONF, dc);
	assert_int_equal(load_conf(c, text, &cfg), 0);
	assert_false(cfg.passdbs[0].no_penalty);        /* Dovecot's is the only brake */
	config_free(&cfg);
	snprintf(text, sizeof(text), "%s%sno_penalty = no\n", BASE_CONF, dc);
	assert_int_equal(load_conf(c, text, &cfg), 0);
	assert_false(cfg.passdbs[0].no_penalty);        /* set: kept */
	config_free(&cfg);
}

static void test_conf_passdb_errors(void **state)
{
	struct conf_dir *c = *state;

	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = ldap\n",
			  ":8: driver: must be passwd-file or dovecot");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\nsocket = /x\n",
			  ":9: socket: expected unix:/path or tcp:IP:PORT");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\n",
			  ":8: [passdb d] socket is required");
	expect_conf_error(c, BASE_CONF "[passdb d]\npath = u1\n",
			  ":8: [passdb d] driver is required");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\n"
			  "socket = unix:/s\npath = u1\n",
			  ":10: path does not apply to driver dovecot");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\nsocket = unix:/s\n"
			  "[passdb f]\ndriver = passwd-file\npath = u1\n",
			  ":11: a dovecot passdb must be the last one");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\nsocket = unix:/s\n"
			  "[passdb]\npath = u1\n",
			  ":11: a dovecot passdb must be the last one");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\ndriver = dovecot\n",
			  ":9: duplicate key 'driver' (first set on line 8)");
	expect_conf_error(c, BASE_CONF "[passdb d]\nsocket_x = 1\n",
			  ":8: unknown key 'socket_x' in [passdb d]");
	expect_conf_error(c, BASE_CONF "[passdb a b]\ndriver = dovecot\n",
			  ":7: unknown section [passdb a b]");
	expect_conf_error(c, BASE_CONF "[passdb d]\ndriver = dovecot\nsocket = unix:/s\n"
			  "timeout = 0\n", ":10: timeout: must be a number from 1 to 300");
	/* neither [passdb] path nor a named passdb */
	expect_conf_error(c, BASE_CONF, "[passdb] path is required");
}

/* [passdb] takes its place by line among named ones; the first file that
   has the user answers; users in no file go to the dovecot passdb. */
static void test_passdb_order(void **state)
{
	struct conf_dir *c = *state;
	struct dg_config cfg;
	struct passdb *db;
	char path[160], *stored;

	snprintf(path, sizeof(path), "%s/u1", c->dir);
	write_text(path, "carol:{PLAIN}one::::::\nzed:two::::::\n");
	snprintf(path, sizeof(path), "%s/u2", c->dir);
	write_text(path, "carol:{PLAIN}shadowed::::::\nbob:three::::::\n");
	assert_int_equal(load_conf(c, BASE_CONF
				   "[passdb]\npath = u1\n"
				   "[passdb second]\ndriver = passwd-file\npath = u2\n"
				   "default_scheme = PLAIN\n"
				   "[passdb dovecot]\ndriver = dovecot\nsocket = unix:/nonexistent\n",
				   &cfg), 0);
	db = passdb_new(&cfg);
	assert_non_null(db);
	assert_int_equal(passdb_load(db, NULL, c->err, sizeof(c->err)), 0);
	assert_int_equal(passdb_user_count(db), 4);
	assert_int_equal(passdb_lookup(db, "carol", &stored), PASSDB_FOUND);
	assert_string_equal(stored, "{PLAIN}one");
	free(stored);
	assert_int_equal(passdb_lookup(db, "zed", &stored), PASSDB_FOUND);
	assert_string_equal(stored, "two");     /* [passdb]'s default scheme */
	free(stored);
	assert_int_equal(passdb_lookup(db, "bob", &stored), PASSDB_FOUND);
	assert_string_equal(stored, "{PLAIN}three");    /* its own file's default */
	free(stored);
	assert_int_equal(passdb_lookup(db, "dave", &stored), PASSDB_REMOTE);
	assert_null(stored);
	assert_string_equal(passdb_remote_name(db), "dovecot");
	passdb_free(db);
	config_free(&cfg);
}

static struct pdc_result last_result;
static char last_detail[128];

static void record_result(void *ctx, const struct pdc_result *res)
{
	(void)ctx;
	last_result = *res;
	snprintf(last_detail, sizeof(last_detail), "%s", res->detail ? res->detail : "");
}

/* Not attached (dovegate-auth -t, tests): a temporary failure at once. */
static void test_remote_not_attached(void **state)
{
	struct conf_dir *c = *state;
	struct dg_config cfg;
	struct passdb *db;
	struct pdc_auth a = base_auth;

	assert_int_equal(load_conf(c, BASE_CONF "[passdb dovecot]\ndriver = dovecot\n"
				   "socket = unix:/nonexistent\n", &cfg), 0);
	db = passdb_new(&cfg);
	assert_non_null(db);
	last_result.status = PDC_OK;
	passdb_remote_auth(db, &a, record_result, NULL);
	assert_int_equal(last_result.status, PDC_TEMP);
	assert_string_equal(last_detail, "dovecot auth: not connected");
	passdb_free(db);
	config_free(&cfg);
}

/* ---- the client against a scripted server on a UNIX socket ----------------------- */

struct fake {
	struct event_base *base;
	struct evconnlistener *lis;
	struct bufferevent *conn;       /* the client's connection, server side */
	char path[108];
	char got[4096];                 /* lines received from the client */
	unsigned connections;
	/* completed requests, in completion order */
	unsigned done_count;
	enum pdc_status status[8];
	char user[8][32];
	char detail[8][64];
};

static void fake_read(struct bufferevent *bev, void *arg)
{
	struct fake *f = arg;
	char *line;
	size_t len;

	while ((line = evbuffer_readln(bufferevent_get_input(bev), &len,
				       EVBUFFER_EOL_LF)) != NULL) {
		strncat(f->got, line, sizeof(f->got) - strlen(f->got) - 2);
		strcat(f->got, "\n");
		free(line);
	}
}

static void fake_accept(struct evconnlistener *lis, evutil_socket_t fd,
			struct sockaddr *sa, int socklen, void *arg)
{
	struct fake *f = arg;

	(void)lis;
	(void)sa;
	(void)socklen;
	f->conn = bufferevent_socket_new(f->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(f->conn, fake_read, NULL, NULL, f);
	bufferevent_enable(f->conn, EV_READ | EV_WRITE);
	f->connections++;
	evbuffer_add_printf(bufferevent_get_output(f->conn),
			    "VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t1\nCUID\t1\n"
			    "COOKIE\tabc\nDONE\n");
}

static void fake_send(struct fake *f, const char *text)
{
	evbuffer_add(bufferevent_get_output(f->conn), text, strlen(text));
}

static void on_done(void *ctx, const struct pdc_result *res)
{
	struct fake *f = ctx;
	unsigned i = f->done_count++;

	f->status[i] = res->status;
	snprintf(f->user[i], sizeof(f->user[i]), "%s", res->user ? res->user : "");
	snprintf(f->detail[i], sizeof(f->detail[i]), "%s", res->detail ? res->detail : "");
}

/* Runs the loop until cond holds (checked every 10 ms) or 5 s pass. */
#define RUN_UNTIL(f, cond) do { \
	for (int i_ = 0; i_ < 500 && !(cond); i_++) { \
		struct timeval tv_ = { 0, 10000 }; \
		event_base_loopexit((f)->base, &tv_); \
		event_base_dispatch((f)->base); \
	} \
	assert_true(cond); \
} while (0)

static void fake_listen(struct fake *f)
{
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, f->path);
	unlink(f->path);
	f->lis = evconnlistener_new_bind(f->base, fake_accept, f,
					 LEV_OPT_CLOSE_ON_FREE, -1,
					 (struct sockaddr *)&sun, sizeof(sun));
	assert_non_null(f->lis);
}

static void test_client_pipelining_timeout_reconnect(void **state)
{
	struct fake f;
	struct dglog log;
	struct pdc_client *c;
	struct pdc_auth a1 = base_auth, a2 = base_auth, a3 = base_auth;
	char spec[128], err[128], late[64];

	(void)state;
	memset(&f, 0, sizeof(f));
	memset(&log, 0, sizeof(log));
	dglog_init(&log);
	snprintf(f.path, sizeof(f.path), "/tmp/dg-pdc-sock-%ld", (long)getpid());
	f.base = event_base_new();
	fake_listen(&f);
	snprintf(spec, sizeof(spec), "unix:%s", f.path);
	c = pdc_client_new(f.base, spec, 1, &log, err, sizeof(err));
	assert_non_null(c);
	RUN_UNTIL(&f, pdc_client_ready(c));
	assert_non_null(strstr(f.got, "VERSION\t1\t2\nCPID\t"));

	/* two requests; the server answers the second first */
	pdc_client_auth(c, &a1, on_done, &f);
	pdc_client_auth(c, &a2, on_done, &f);
	assert_int_not_equal(a1.id, a2.id);
	RUN_UNTIL(&f, strstr(f.got, "AUTH\t") != NULL &&
		  strstr(strstr(f.got, "AUTH\t") + 1, "AUTH\t") != NULL);
	snprintf(late, sizeof(late), "FAIL\t%u\tuser=alice\n", a2.id);
	fake_send(&f, late);
	snprintf(late, sizeof(late), "OK\t%u\tuser=Alice\n", a1.id);
	fake_send(&f, late);
	RUN_UNTIL(&f, f.done_count == 2);
	assert_int_equal(f.status[0], PDC_FAIL);
	assert_int_equal(f.status[1], PDC_OK);
	assert_string_equal(f.user[1], "Alice");

	/* no answer within the timeout: a temporary failure and a CANCEL; the
	   late answer is dropped */
	pdc_client_auth(c, &a3, on_done, &f);
	RUN_UNTIL(&f, f.done_count == 3);
	assert_int_equal(f.status[2], PDC_TEMP);
	assert_string_equal(f.detail[2], "dovecot auth: timeout");
	snprintf(late, sizeof(late), "CANCEL\t%u\n", a3.id);
	RUN_UNTIL(&f, strstr(f.got, late) != NULL);
	snprintf(late, sizeof(late), "OK\t%u\tuser=alice\n", a3.id);
	fake_send(&f, late);

	/* the server goes away: requests fail at once, then it reconnects */
	bufferevent_free(f.conn);
	f.conn = NULL;
	RUN_UNTIL(&f, !pdc_client_ready(c));
	assert_int_equal(f.done_count, 3);
	pdc_client_auth(c, &a1, on_done, &f);
	assert_int_equal(f.done_count, 4);
	assert_int_equal(f.status[3], PDC_TEMP);
	assert_string_equal(f.detail[3], "dovecot auth: not connected");
	RUN_UNTIL(&f, pdc_client_ready(c) && f.connections == 2);

	pdc_client_free(c);
	if (f.conn != NULL)
		bufferevent_free(f.conn);
	evconnlistener_free(f.lis);
	unlink(f.path);
	event_base_free(f.base);
	dglog_close(&log);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_build_plain),
		cmocka_unit_test(test_build_resp_last_and_escaped),
		cmocka_unit_test(test_build_refuses),
		cmocka_unit_test(test_escape_roundtrip),
		cmocka_unit_test(test_unescape_odd),
		cmocka_unit_test(test_parse_ok_fields),
		cmocka_unit_test(test_parse_bad_port),
		cmocka_unit_test(test_parse_fail_codes),
		cmocka_unit_test(test_parse_cont),
		cmocka_unit_test(test_parse_handshake),
		cmocka_unit_test(test_parse_bad_ids),
		cmocka_unit_test(test_spec_check),
		cmocka_unit_test_setup_teardown(test_conf_no_penalty_follows_penalty, conf_setup,
						conf_teardown),
		cmocka_unit_test_setup_teardown(test_conf_named_passdbs, conf_setup, conf_teardown),
		cmocka_unit_test_setup_teardown(test_conf_passdb_errors, conf_setup, conf_teardown),
		cmocka_unit_test_setup_teardown(test_passdb_order, conf_setup, conf_teardown),
		cmocka_unit_test_setup_teardown(test_remote_not_attached, conf_setup, conf_teardown),
		cmocka_unit_test(test_client_pipelining_timeout_reconnect),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
