#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <arpa/inet.h>
#include <ini.h>
#include <libgen.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "passdb_dovecot.h"
#include "external.h"
#include "schemes.h"
#include "ticket.h"

struct key_def;
typedef int set_fn(struct dg_config *cfg, const struct key_def *def,
		   const char *value, char *why, size_t whylen);

struct key_def {
	const char *section;
	const char *name;
	set_fn *set;
	size_t offset;          /* field in struct dg_config */
	unsigned min, max;      /* for numbers */
};

#define FIELD(f) offsetof(struct dg_config, f)
#define FIELD_PTR(cfg, def, type) ((type *)((char *)(cfg) + (def)->offset))

static set_fn set_uint_size, set_metrics_listen;
static set_fn set_string, set_path, set_uint, set_mode, set_listen, set_token,
	set_log_target, set_driver, set_scheme, set_backend, set_cred_mode,
	set_name, set_audience, set_domains, set_relay_backend, set_user_from,
	set_yes_no, set_trusted, set_duration, set_cluster_store, set_cluster_prefix;

/* Same order as enum config_key. */
static const struct key_def keys[CK_COUNT] = {
	{ "server", "listen", set_listen, FIELD(listen), 0, 0 },
	{ "server", "socket_mode", set_mode, FIELD(socket_mode), 0, 0777 },
	{ "server", "socket_group", set_name, FIELD(socket_group), 0, 0 },
	{ "server", "secret_header", set_token, FIELD(secret_header), 0, 0 },
	{ "server", "secret_file", set_path, FIELD(secret_file), 0, 0 },
	{ "server", "timeout", set_uint, FIELD(timeout), 1, 300 },
	{ "server", "max_header_bytes", set_uint, FIELD(max_header_bytes), 1024, 65536 },
	{ "server", "user", set_name, FIELD(user), 0, 0 },
	{ "server", "hash_threads", set_uint, FIELD(hash_threads), 1, 64 },
	{ "server", "proxy_protocol_trusted", set_trusted, FIELD(proxy_trusted), 0, 0 },
	{ "log", "target", set_log_target, FIELD(log_target), 0, 0 },
	{ "passdb", "driver", set_driver, FIELD(passdb_driver), 0, 0 },
	{ "passdb", "path", set_path, FIELD(passdb_path), 0, 0 },
	{ "passdb", "default_scheme", set_scheme, FIELD(default_scheme), 0, 0 },
	{ "backend", "imap", set_backend, FIELD(backends), DG_PROTO_IMAP, 0 },
	{ "backend", "pop3", set_backend, FIELD(backends), DG_PROTO_POP3, 0 },
	{ "backend", "smtp", set_backend, FIELD(backends), DG_PROTO_SMTP, 0 },
	{ "credentials", "mode", set_cred_mode, FIELD(cred_mode), 0, 0 },
	{ "credentials", "imap_mode", set_cred_mode, FIELD(proto_cred_mode[DG_PROTO_IMAP]), 0, 0 },
	{ "credentials", "pop3_mode", set_cred_mode, FIELD(proto_cred_mode[DG_PROTO_POP3]), 0, 0 },
	{ "credentials", "smtp_mode", set_cred_mode, FIELD(proto_cred_mode[DG_PROTO_SMTP]), 0, 0 },
	{ "credentials", "master_user", set_string, FIELD(master_user), 0, 0 },
	{ "credentials", "master_separator", set_string, FIELD(master_separator), 0, 0 },
	{ "credentials", "master_password_file", set_path, FIELD(master_password_file), 0, 0 },
	{ "ticket", "signing_key", set_path, FIELD(ticket_signing_key), 0, 0 },
	{ "ticket", "audience", set_audience, FIELD(ticket_audience), 0, 0 },
	/* a backend refuses longer-lived tickets by default */
	{ "ticket", "lifetime", set_uint, FIELD(ticket_lifetime), 1, TICKET_MAX_LIFETIME_DEFAULT },
	{ "cache", "ttl", set_uint, FIELD(cache_ttl), 0, 86400 },
	{ "cache", "negative_ttl", set_uint, FIELD(cache_negative_ttl), 0, 3600 },
	{ "cache", "size", set_uint, FIELD(cache_size), 0, 10000000 },
	{ "relay", "domains", set_domains, FIELD(relay_domains), 0, 0 },
	{ "relay", "backend", set_relay_backend, FIELD(relay_backend), 0, 0 },
	{ "external", "user_from", set_user_from, FIELD(external_user_from), 0, 0 },
	{ "external", "map_file", set_path, FIELD(external_map_file), 0, 0 },
	{ "penalty", "enabled", set_yes_no, FIELD(penalty_enabled), 0, 0 },
	{ "penalty", "ipv4_prefix", set_uint, FIELD(penalty.v4_prefix), 1, 32 },
	{ "penalty", "ipv6_prefix", set_uint, FIELD(penalty.v6_prefix), 1, 128 },
	{ "penalty", "max_delay", set_uint, FIELD(penalty.max_delay), 1, 3600 },
	{ "penalty", "attempts", set_uint, FIELD(penalty.max_attempts), 0, 1000 },
	{ "penalty", "forget_after", set_uint, FIELD(penalty.forget_after), 1, 86400 },
	{ "penalty", "exempt_after_success", set_uint, FIELD(penalty.exempt_after_success),
	  0, 86400 },
	{ "penalty", "max_entries", set_uint_size, FIELD(penalty.max_entries), 16, 10000000 },
	{ "penalty", "trusted_networks", set_trusted, FIELD(penalty_trusted), 0, 0 },
	{ "penalty", "refuse_at", set_uint, FIELD(penalty.refuse_at), 0, 1000000 },
	{ "penalty", "max_pending", set_uint, FIELD(penalty.max_pending), 0, 1000000 },
	{ "penalty", "known_network_ttl", set_uint, FIELD(penalty.known_network_ttl),
	  0, 366 * 86400 },
	{ "health", "enabled", set_yes_no, FIELD(health_enabled), 0, 0 },
	{ "health", "interval", set_duration, FIELD(health_interval_ms), 100, 3600000 },
	{ "health", "timeout", set_duration, FIELD(health_timeout_ms), 100, 60000 },
	{ "health", "rise", set_uint, FIELD(health_rise), 1, 100 },
	{ "health", "fall", set_uint, FIELD(health_fall), 1, 100 },
	{ "health", "proxy_protocol", set_yes_no, FIELD(health_proxy_protocol), 0, 0 },
	{ "health", "greeting_timeout", set_duration, FIELD(health_greeting_timeout_ms), 100,
	  300000 },
	{ "health", "panic", set_yes_no, FIELD(health_panic), 0, 0 },
	{ "route", "key", set_string, FIELD(route_key), 0, 0 },
	{ "route", "allow_hosts_outside_pools", set_yes_no, FIELD(route_allow_outside), 0, 0 },
	{ "metrics", "listen", set_metrics_listen, FIELD(metrics_listen), 0, 0 },
	{ "metrics", "max_connections", set_uint, FIELD(metrics_max_connections), 1, 1024 },
	{ "metrics", "bearer_token_file", set_path, FIELD(metrics_token_file), 0, 0 },
	{ "cluster", "store", set_cluster_store, FIELD(cluster_store_text), 0, 0 },
	{ "cluster", "user", set_string, FIELD(cluster_user), 0, 0 },
	{ "cluster", "password_file", set_path, FIELD(cluster_password_file), 0, 0 },
	{ "cluster", "timeout", set_duration, FIELD(cluster_timeout_ms), 10, 10000 },
	{ "cluster", "connect_timeout", set_duration, FIELD(cluster_connect_timeout_ms), 10,
	  60000 },
	{ "cluster", "retry_interval", set_duration, FIELD(cluster_retry_ms), 100, 3600000 },
	{ "cluster", "prefix", set_cluster_prefix, FIELD(cluster_prefix), 0, 0 },
	{ "cluster", "assignment_ttl", set_uint, FIELD(cluster_assignment_ttl), 0, 30 * 86400 },
	{ "cluster", "shared_penalty", set_yes_no, FIELD(cluster_shared_penalty), 0, 0 },
	{ "cluster", "max_pending", set_uint, FIELD(cluster_max_pending), 1, 1000000 },
	{ "cluster", "tls_ca_file", set_path, FIELD(cluster_tls_ca_file), 0, 0 },
	{ "cluster", "tls_cert_file", set_path, FIELD(cluster_tls_cert_file), 0, 0 },
	{ "cluster", "tls_key_file", set_path, FIELD(cluster_tls_key_file), 0, 0 },
	{ "cluster", "tls_server_name", set_string, FIELD(cluster_tls_server_name), 0, 0 },
};

/* CK_CRED_IMAP_MODE + proto is that protocol's key */
_Static_assert(CK_CRED_POP3_MODE == CK_CRED_IMAP_MODE + DG_PROTO_POP3 &&
	       CK_CRED_SMTP_MODE == CK_CRED_IMAP_MODE + DG_PROTO_SMTP,
	       "per-protocol credentials keys follow enum dg_proto");
_Static_assert(CK_BACKEND_POP3 == CK_BACKEND_IMAP + DG_PROTO_POP3 &&
	       CK_BACKEND_SMTP == CK_BACKEND_IMAP + DG_PROTO_SMTP,
	       "[backend] PROTO keys follow enum dg_proto");

static const char *const sections[] = {
	"server", "log", "passdb", "backend", "credentials", "ticket", "cache", "relay", "external",
	"penalty", "health", "route", "metrics", "cluster", NULL
};

const char *config_key_name(enum config_key key)
{
	return keys[key].name;
}

const char *cred_mode_name(enum cred_mode mode)
{
	switch (mode) {
	case CRED_MODE_MASTER: return "master";
	case CRED_MODE_PASSTHROUGH: return "passthrough";
	case CRED_MODE_TICKET: return "ticket";
	}
	return "-";
}

/* ---- value setters ---------------------------------------------------------- */

static int replace_string(char **field, const char *value, char *why, size_t whylen)
{
	char *copy = strdup(value);

	if (copy == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	free(*field);
	*field = copy;
	return 0;
}

/* Printable, no spaces at the ends: these values end up in HTTP headers. */
static int set_string(struct dg_config *cfg, const struct key_def *def,
		      const char *value, char *why, size_t whylen)
{
	size_t len = strlen(value);

	if (len == 0) {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c < ' ' || c == 0x7f) {
			snprintf(why, whylen, "must not contain control characters");
			return -1;
		}
	}
	return replace_string(FIELD_PTR(cfg, def, char *), value, why, whylen);
}

/* User and group names: letters, digits and ._- */
static int set_name(struct dg_config *cfg, const struct key_def *def,
		    const char *value, char *why, size_t whylen)
{
	if (value[0] == '\0' || value[0] == '-' ||
	    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "0123456789._-") != strlen(value)) {
		snprintf(why, whylen, "not a valid user/group name");
		return -1;
	}
	return replace_string(FIELD_PTR(cfg, def, char *), value, why, whylen);
}

/* The backend's identity as its passdb expects it in tickets: plain
   characters, so it needs no escaping anywhere. */
static int audience_check(const char *value, char *why, size_t whylen)
{
	size_t len = strlen(value);

	if (len == 0 || len >= sizeof(((struct ticket_claims *)0)->aud) ||
	    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "0123456789._:-") != len) {
		snprintf(why, whylen, "must be 1-127 letters, digits, '.', '_', ':' or '-'");
		return -1;
	}
	return 0;
}

static int set_audience(struct dg_config *cfg, const struct key_def *def,
			const char *value, char *why, size_t whylen)
{
	if (audience_check(value, why, whylen) < 0)
		return -1;
	return replace_string(FIELD_PTR(cfg, def, char *), value, why, whylen);
}

/* Relative paths are relative to the config file's directory. */
static int set_path(struct dg_config *cfg, const struct key_def *def,
		    const char *value, char *why, size_t whylen)
{
	char *full;

	if (value[0] == '\0') {
		snprintf(why, whylen, "must not be empty");
		return -1;
	}
	if (value[0] == '/')
		return replace_string(FIELD_PTR(cfg, def, char *), value, why, whylen);
	if (asprintf(&full, "%s/%s", cfg->dir, value) < 0) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	free(*FIELD_PTR(cfg, def, char *));
	*FIELD_PTR(cfg, def, char *) = full;
	return 0;
}

static int parse_number(const char *value, int base, unsigned min, unsigned max,
			unsigned *out)
{
	char *end;
	unsigned long v;

	if (value[0] < '0' || value[0] > '9')
		return -1;
	errno = 0;
	v = strtoul(value, &end, base);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int set_uint(struct dg_config *cfg, const struct key_def *def,
		    const char *value, char *why, size_t whylen)
{
	if (parse_number(value, 10, def->min, def->max, FIELD_PTR(cfg, def, unsigned)) < 0) {
		snprintf(why, whylen, "must be a number from %u to %u", def->min, def->max);
		return -1;
	}
	return 0;
}

static int set_uint_size(struct dg_config *cfg, const struct key_def *def,
			 const char *value, char *why, size_t whylen)
{
	unsigned v;

	if (parse_number(value, 10, def->min, def->max, &v) < 0) {
		snprintf(why, whylen, "must be a number from %u to %u", def->min, def->max);
		return -1;
	}
	*FIELD_PTR(cfg, def, size_t) = v;
	return 0;
}

static int set_yes_no(struct dg_config *cfg, const struct key_def *def,
		      const char *value, char *why, size_t whylen)
{
	if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
		snprintf(why, whylen, "must be yes or no");
		return -1;
	}
	*FIELD_PTR(cfg, def, bool) = strcmp(value, "yes") == 0;
	return 0;
}

/* The count that goes with a list of networks set by set_trusted(). */
static size_t *nets_count_field(struct dg_config *cfg, const struct key_def *def)
{
	return def->offset == FIELD(proxy_trusted) ? &cfg->proxy_trusted_count
						   : &cfg->penalty_trusted_count;
}

/* CIDR networks (or single addresses) separated by spaces; empty: none. */
static int set_trusted(struct dg_config *cfg, const struct key_def *def,
		       const char *value, char *why, size_t whylen)
{
	struct penalty_net *nets = NULL;
	size_t count = 0;
	const char *p = value;
	struct penalty_net **field = FIELD_PTR(cfg, def, struct penalty_net *);
	size_t *field_count = nets_count_field(cfg, def);

	while (*p != '\0') {
		size_t len = strcspn(p, " \t,");
		char item[64];
		const char *error = "invalid";
		struct penalty_net *grown;

		if (len == 0) {
			p++;
			continue;
		}
		if (len >= sizeof(item)) {
			snprintf(why, whylen, "'%.*s': not a network", (int)len, p);
			free(nets);
			return -1;
		}
		memcpy(item, p, len);
		item[len] = '\0';
		grown = realloc(nets, (count + 1) * sizeof(*nets));
		if (grown == NULL) {
			snprintf(why, whylen, "out of memory");
			free(nets);
			return -1;
		}
		nets = grown;
		if (penalty_net_parse(item, &nets[count], &error) < 0) {
			snprintf(why, whylen, "'%s': %s", item, error);
			free(nets);
			return -1;
		}
		count++;
		p += len;
	}
	free(*field);
	*field = nets;
	*field_count = count;
	return 0;
}

static int set_mode(struct dg_config *cfg, const struct key_def *def,
		    const char *value, char *why, size_t whylen)
{
	if (parse_number(value, 8, def->min, def->max, FIELD_PTR(cfg, def, unsigned)) < 0) {
		snprintf(why, whylen, "must be an octal mode such as 0660");
		return -1;
	}
	return 0;
}

static int set_listen_unix(struct dg_listen *l, const char *path, char *why, size_t whylen)
{
	if (path[0] != '/') {
		snprintf(why, whylen, "unix socket path must be absolute");
		return -1;
	}
	if (strlen(path) >= sizeof(l->path)) {
		snprintf(why, whylen, "unix socket path is too long");
		return -1;
	}
	l->is_unix = true;
	strcpy(l->path, path);
	return 0;
}

/* Same strict "ip:port" / "[v6]:port" syntax as backends (libevent's own
   parser accepts trailing garbage after the port). */
static int parse_listen_tcp(struct dg_listen *l, const char *value)
{
	struct backend b;
	const char *error;
	struct sockaddr_in *sin = (struct sockaddr_in *)&l->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l->addr;

	if (backend_parse(value, &b, &error) < 0)
		return -1;
	if (inet_pton(AF_INET, b.ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(b.port);
		l->addrlen = (int)sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, b.ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(b.port);
		l->addrlen = (int)sizeof(*sin6);
		return 0;
	}
	return -1;
}

static int set_listen(struct dg_config *cfg, const struct key_def *def,
		      const char *value, char *why, size_t whylen)
{
	struct dg_listen l;

	memset(&l, 0, sizeof(l));
	if (strncmp(value, "unix:", 5) == 0) {
		if (set_listen_unix(&l, value + 5, why, whylen) < 0)
			return -1;
	} else if (parse_listen_tcp(&l, value) < 0) {
		snprintf(why, whylen, "expected IP:port, [IPv6]:port or unix:/path");
		return -1;
	}
	if (replace_string(&cfg->listen_text, value, why, whylen) < 0)
		return -1;
	cfg->listen = l;
	return 0;
}

/* [metrics] listen: TCP only; absent, there is no metrics listener. A bare
   port means loopback: metrics reach the network only when an address
   says so. */
static int set_metrics_listen(struct dg_config *cfg, const struct key_def *def,
			      const char *value, char *why, size_t whylen)
{
	size_t len = strlen(value);
	char spec[32];

	if (len > 0 && len <= 5 && strspn(value, "0123456789") == len) {
		snprintf(spec, sizeof(spec), "127.0.0.1:%s", value);
		value = spec;
	}
	if (parse_listen_tcp(&cfg->metrics_listen, value) < 0) {
		snprintf(why, whylen, "expected IP:port, [IPv6]:port or a port (on 127.0.0.1)");
		return -1;
	}
	return replace_string(&cfg->metrics_listen_text, value, why, whylen);
}

/* An HTTP header name. */
static int set_token(struct dg_config *cfg, const struct key_def *def,
		     const char *value, char *why, size_t whylen)
{
	if (value[0] == '\0' ||
	    strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			  "0123456789-") != strlen(value)) {
		snprintf(why, whylen, "must be a header name (letters, digits, '-')");
		return -1;
	}
	return replace_string(FIELD_PTR(cfg, def, char *), value, why, whylen);
}

static int set_log_target(struct dg_config *cfg, const struct key_def *def,
			  const char *value, char *why, size_t whylen)
{
	if (strcmp(value, "stderr") == 0)
		cfg->log_target = DGLOG_STDERR;
	else if (strcmp(value, "syslog") == 0)
		cfg->log_target = DGLOG_SYSLOG;
	else {
		snprintf(why, whylen, "must be stderr or syslog");
		return -1;
	}
	return 0;
}

static int set_driver(struct dg_config *cfg, const struct key_def *def,
		      const char *value, char *why, size_t whylen)
{
	if (strcmp(value, "passwd-file") != 0) {
		snprintf(why, whylen, "only passwd-file is supported");
		return -1;
	}
	return replace_string(&cfg->passdb_driver, value, why, whylen);
}

static int set_scheme(struct dg_config *cfg, const struct key_def *def,
		      const char *value, char *why, size_t whylen)
{
	for (const char *const *n = scheme_names(); *n != NULL; n++) {
		if (strcasecmp(*n, value) == 0)
			return replace_string(&cfg->default_scheme, *n, why, whylen);
	}
	snprintf(why, whylen, "unknown password scheme");
	return -1;
}

static struct backend_conf *backend_conf_add(struct dg_config *cfg, char *why,
					     size_t whylen)
{
	struct backend_conf *bc;

	if (cfg->backend_count == CONFIG_MAX_BACKENDS) {
		snprintf(why, whylen, "too many backends (at most %d)", CONFIG_MAX_BACKENDS);
		return NULL;
	}
	bc = &cfg->backends[cfg->backend_count++];
	memset(bc, 0, sizeof(*bc));
	bc->weight = 1;
	bc->proxy_protocol = -1;
	return bc;
}

/* [backend] imap = ip:port: a backend without a name in that pool. */
static int set_backend(struct dg_config *cfg, const struct key_def *def,
		       const char *value, char *why, size_t whylen)
{
	struct backend addr;
	struct backend_conf *bc;
	const char *error;

	if (backend_parse(value, &addr, &error) < 0) {
		snprintf(why, whylen, "%s", error);
		return -1;
	}
	if ((bc = backend_conf_add(cfg, why, whylen)) == NULL)
		return -1;
	bc->has_proto = bc->has_addr = true;
	bc->proto = (enum dg_proto)def->min;
	bc->addr = addr;
	return 0;
}

/* "2" or "2s" (seconds), "500ms"; kept in milliseconds. */
static int set_duration(struct dg_config *cfg, const struct key_def *def,
			const char *value, char *why, size_t whylen)
{
	char num[16];
	size_t digits = strspn(value, "0123456789");
	const char *unit = value + digits;
	unsigned v, scale = strcmp(unit, "ms") == 0 ? 1 : 1000;

	if (digits > 0 && digits < sizeof(num) &&
	    (unit[0] == '\0' || strcmp(unit, "s") == 0 || scale == 1)) {
		memcpy(num, value, digits);
		num[digits] = '\0';
	} else {
		num[0] = '\0';
	}
	if (parse_number(num, 10, 0, def->max, &v) < 0 || v > def->max / scale ||
	    v * scale < def->min) {
		snprintf(why, whylen, "must be a duration from %ums to %us, e.g. 2s or 500ms",
			 def->min, def->max / 1000);
		return -1;
	}
	*FIELD_PTR(cfg, def, unsigned) = v * scale;
	return 0;
}

/* redis://IP[:PORT][/DB], rediss://... or unix:/PATH[?db=N] (cluster_store.h).
   The host must be an IP literal: dovegate-auth never resolves names on its
   event loop, and a store that moves is a config change anyway. */
static int set_cluster_store(struct dg_config *cfg, const struct key_def *def,
			     const char *value, char *why, size_t whylen)
{
	struct cluster_addr addr;
	unsigned char buf[sizeof(struct in6_addr)];
	char text[320];

	if (cluster_addr_parse(value, &addr, why, whylen) < 0)
		return -1;
	if (addr.transport != CLUSTER_UNIX && inet_pton(AF_INET, addr.host, buf) != 1 &&
	    inet_pton(AF_INET6, addr.host, buf) != 1) {
		snprintf(why, whylen, "the store's host must be an IP address, not \"%.100s\" "
			 "(no name lookups on the event loop)", addr.host);
		return -1;
	}
	cluster_addr_text(&addr, text, sizeof(text));
	cfg->cluster_addr = addr;
	return replace_string(FIELD_PTR(cfg, def, char *), text, why, whylen);
}

static int set_cluster_prefix(struct dg_config *cfg, const struct key_def *def,
			      const char *value, char *why, size_t whylen)
{
	if (!cluster_prefix_ok(value)) {
		snprintf(why, whylen, "must be 1-%d letters, digits, ':', '.', '_' or '-'",
			 CLUSTER_PREFIX_MAX);
		return -1;
	}
	return replace_string(FIELD_PTR(cfg, def, char *), value, why, whylen);
}

static int set_cred_mode(struct dg_config *cfg, const struct key_def *def,
			 const char *value, char *why, size_t whylen)
{
	enum cred_mode *mode = FIELD_PTR(cfg, def, enum cred_mode);

	if (strcmp(value, "ticket") == 0)
		*mode = CRED_MODE_TICKET;
	else if (strcmp(value, "master") == 0)
		*mode = CRED_MODE_MASTER;
	else if (strcmp(value, "passthrough") == 0)
		*mode = CRED_MODE_PASSTHROUGH;
	else {
		snprintf(why, whylen, "must be ticket, master or passthrough");
		return -1;
	}
	return 0;
}

/* Domain names separated by spaces, kept as " a b " in lower case so that
   a lookup is a search for " domain ". */
static int set_domains(struct dg_config *cfg, const struct key_def *def,
		       const char *value, char *why, size_t whylen)
{
	size_t len = strlen(value);
	char *list;

	if (len == 0 || strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789.- ") != len) {
		snprintf(why, whylen, "must be domain names separated by spaces");
		return -1;
	}
	if (asprintf(&list, " %s ", value) < 0) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (char *p = list; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	free(cfg->relay_domains);
	cfg->relay_domains = list;
	return 0;
}

static int set_user_from(struct dg_config *cfg, const struct key_def *def,
			 const char *value, char *why, size_t whylen)
{
	if (strcmp(value, "cn") == 0)
		cfg->external_user_from = EXTERNAL_CN;
	else if (strcmp(value, "email") == 0)
		cfg->external_user_from = EXTERNAL_EMAIL;
	else if (strcmp(value, "map") == 0)
		cfg->external_user_from = EXTERNAL_MAP;
	else {
		snprintf(why, whylen, "must be cn, email or map");
		return -1;
	}
	return 0;
}

static int set_relay_backend(struct dg_config *cfg, const struct key_def *def,
			     const char *value, char *why, size_t whylen)
{
	const char *error;

	if (backend_parse(value, &cfg->relay_backend, &error) < 0) {
		snprintf(why, whylen, "%s", error);
		return -1;
	}
	cfg->has_relay_backend = true;
	return 0;
}

/* ---- parsing ---------------------------------------------------------------- */

struct parse_state {
	struct dg_config *cfg;
	FILE *file;
	char *buf;
	size_t cap;
	unsigned lineno;        /* line inih is working on */
	unsigned err_line;      /* first error we saw */
	char err[256];
};

static void record_error(struct parse_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void record_error(struct parse_state *st, const char *fmt, ...)
{
	va_list ap;

	if (st->err_line != 0)
		return;
	st->err_line = st->lineno;
	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
}

static bool named_passdb_section(const char *s, size_t len);
static bool named_backend_section(const char *s, size_t len);

static bool known_section(const char *name, size_t len)
{
	for (const char *const *s = sections; *s != NULL; s++) {
		if (strlen(*s) == len && strncmp(*s, name, len) == 0)
			return true;
	}
	return false;
}

/* Checks inih cannot do for us. Returns a message, or NULL if the line is fine. */
static const char *check_line(const char *line, char *msg, size_t msglen)
{
	const char *p = line + strspn(line, " \t");
	const char *close;

	if (*p == '\0' || *p == '\n' || *p == '\r' || *p == ';' || *p == '#')
		return NULL;
	if (p != line)
		return "indented line (continuation lines are not supported)";
	if (*p != '[')
		return NULL;
	close = strchr(p, ']');
	if (close != NULL && !known_section(p + 1, (size_t)(close - p - 1)) &&
	    !named_passdb_section(p + 1, (size_t)(close - p - 1)) &&
	    !named_backend_section(p + 1, (size_t)(close - p - 1))) {
		snprintf(msg, msglen, "unknown section [%.*s]", (int)(close - p - 1), p + 1);
		return msg;
	}
	return NULL;
}

/* fgets-like reader for ini_parse_stream(): gives inih one whole line per
   call, which lets us know the line number the handler is looking at (the
   Debian libinih has no INI_HANDLER_LINENO). A line we refuse is replaced by
   one inih also refuses, so its error count stays right. */
static char *read_line(char *str, int num, void *stream)
{
	struct parse_state *st = stream;
	char msg[96];
	const char *bad;
	ssize_t n = getline(&st->buf, &st->cap, st->file);

	if (n < 0)
		return NULL;
	st->lineno++;
	bad = check_line(st->buf, msg, sizeof(msg));
	if (bad == NULL && n >= num)
		bad = "line too long";
	if (bad != NULL) {
		record_error(st, "%s", bad);
		snprintf(str, (size_t)num, "!\n");
	} else {
		memcpy(str, st->buf, (size_t)n + 1);
	}
	return str;
}

static int find_key(const char *section, const char *name)
{
	for (int i = 0; i < CK_COUNT; i++) {
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return i;
	}
	return -1;
}

/* ---- [passdb NAME] sections ------------------------------------------------- */

/* Their keys; the index is passdb_conf.key_line's. */
static const char *const passdb_keys[] = {
	"driver", "path", "default_scheme", "socket", "timeout", "no_penalty", NULL
};
enum { PK_DRIVER, PK_PATH, PK_SCHEME, PK_SOCKET, PK_TIMEOUT, PK_NO_PENALTY };

static bool passdb_name_ok(const char *name, size_t len)
{
	size_t ok = strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			   "0123456789._-");

	return len > 0 && len <= 64 && ok >= len;
}

/* "passdb NAME" (one space) with a plain NAME. */
static bool named_passdb_section(const char *s, size_t len)
{
	return len > 7 && strncmp(s, "passdb ", 7) == 0 && passdb_name_ok(s + 7, len - 7);
}

static struct passdb_conf *passdb_conf_get(struct parse_state *st, const char *name)
{
	struct dg_config *cfg = st->cfg;
	struct passdb_conf *pc;

	for (size_t i = 0; i < cfg->passdb_count; i++) {
		if (strcmp(cfg->passdbs[i].name, name) == 0)
			return &cfg->passdbs[i];
	}
	if (cfg->passdb_count == CONFIG_MAX_PASSDBS) {
		record_error(st, "too many [passdb NAME] sections (at most %d)",
			     CONFIG_MAX_PASSDBS);
		return NULL;
	}
	pc = &cfg->passdbs[cfg->passdb_count];
	pc->name = strdup(name);
	if (pc->name == NULL) {
		record_error(st, "out of memory");
		return NULL;
	}
	pc->line = st->lineno;
	pc->timeout = 20;       /* > Dovecot's longest penalty (15 s) + failure delay (2 s) */
	cfg->passdb_count++;
	return pc;
}

static int passdb_set_value(struct dg_config *cfg, struct passdb_conf *pc, int k,
			    const char *value, char *why, size_t whylen)
{
	switch (k) {
	case PK_DRIVER:
		if (strcmp(value, "passwd-file") == 0)
			pc->driver = PASSDB_DRIVER_PASSWD_FILE;
		else if (strcmp(value, "dovecot") == 0)
			pc->driver = PASSDB_DRIVER_DOVECOT;
		else {
			snprintf(why, whylen, "must be passwd-file or dovecot");
			return -1;
		}
		pc->has_driver = true;
		return 0;
	case PK_PATH:
		if (value[0] == '\0') {
			snprintf(why, whylen, "must not be empty");
			return -1;
		}
		if (value[0] == '/')
			return replace_string(&pc->path, value, why, whylen);
		free(pc->path);
		if (asprintf(&pc->path, "%s/%s", cfg->dir, value) < 0) {
			pc->path = NULL;
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		return 0;
	case PK_SCHEME:
		for (const char *const *n = scheme_names(); *n != NULL; n++) {
			if (strcasecmp(*n, value) == 0)
				return replace_string(&pc->default_scheme, *n, why, whylen);
		}
		snprintf(why, whylen, "unknown password scheme");
		return -1;
	case PK_SOCKET:
		if (pdc_spec_check(value, why, whylen) < 0)
			return -1;
		return replace_string(&pc->socket, value, why, whylen);
	case PK_TIMEOUT:
		if (parse_number(value, 10, 1, 300, &pc->timeout) < 0) {
			snprintf(why, whylen, "must be a number from 1 to 300");
			return -1;
		}
		return 0;
	default:
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
			snprintf(why, whylen, "must be yes or no");
			return -1;
		}
		pc->no_penalty = strcmp(value, "yes") == 0;
		return 0;
	}
}

static int on_passdb_key(struct parse_state *st, const char *pname, const char *name,
			 const char *value)
{
	struct passdb_conf *pc = passdb_conf_get(st, pname);
	char why[200];
	int k = 0;

	if (pc == NULL)
		return 0;
	while (passdb_keys[k] != NULL && strcmp(passdb_keys[k], name) != 0)
		k++;
	if (passdb_keys[k] == NULL) {
		record_error(st, "unknown key '%s' in [passdb %s]", name, pname);
		return 0;
	}
	if (pc->key_line[k] != 0) {
		record_error(st, "duplicate key '%s' (first set on line %u)", name,
			     pc->key_line[k]);
		return 0;
	}
	if (passdb_set_value(st->cfg, pc, k, value, why, sizeof(why)) < 0) {
		record_error(st, "%s: %s", name, why);
		return 0;
	}
	pc->key_line[k] = st->lineno;
	return 1;
}

/* A key that does not belong to the section's driver. */
static int passdb_foreign_key(const struct dg_config *cfg, const struct passdb_conf *pc,
			      char *err, size_t errlen)
{
	static const int file_only[] = { PK_PATH, PK_SCHEME };
	static const int dovecot_only[] = { PK_SOCKET, PK_TIMEOUT, PK_NO_PENALTY };
	bool dovecot = pc->driver == PASSDB_DRIVER_DOVECOT;
	const int *keys_ = dovecot ? file_only : dovecot_only;
	size_t n = dovecot ? 2 : 3;

	for (size_t i = 0; i < n; i++) {
		if (pc->key_line[keys_[i]] != 0) {
			snprintf(err, errlen, "%s:%u: %s does not apply to driver %s",
				 cfg->path, pc->key_line[keys_[i]], passdb_keys[keys_[i]],
				 dovecot ? "dovecot" : "passwd-file");
			return -1;
		}
	}
	return 0;
}

/* Complete sections; a dovecot passdb last: Dovecot does not say whether a
   FAIL was an unknown user, so nothing after it would ever be asked. */
static int check_passdbs(const struct dg_config *cfg, char *err, size_t errlen)
{
	const struct passdb_conf *dovecot = NULL;

	for (size_t i = 0; i < cfg->passdb_count; i++) {
		const struct passdb_conf *pc = &cfg->passdbs[i];
		const char *missing = !pc->has_driver ? "driver" :
			pc->driver == PASSDB_DRIVER_PASSWD_FILE && pc->path == NULL ? "path" :
			pc->driver == PASSDB_DRIVER_DOVECOT && pc->socket == NULL ? "socket" :
			NULL;

		if (missing != NULL) {
			snprintf(err, errlen, "%s:%u: [passdb %s] %s is required",
				 cfg->path, pc->line, pc->name, missing);
			return -1;
		}
		if (passdb_foreign_key(cfg, pc, err, errlen) < 0)
			return -1;
		if (dovecot != NULL || (pc->driver == PASSDB_DRIVER_DOVECOT &&
					cfg->line[CK_PASSDB_PATH] != 0 &&
					cfg->passdb_line > pc->line)) {
			snprintf(err, errlen, "%s:%u: a dovecot passdb must be the last "
				 "one: it answers for every user", cfg->path,
				 dovecot != NULL ? pc->line : cfg->passdb_line);
			return -1;
		}
		if (pc->driver == PASSDB_DRIVER_DOVECOT)
			dovecot = pc;
	}
	return 0;
}

/* ---- [backend NAME] sections ------------------------------------------------ */

/* Their keys; the index is backend_conf.key_line's. */
static const char *const backend_keys[] = {
	"protocol", "address", "weight", "audience", "proxy_protocol", NULL
};
enum { BK_PROTOCOL, BK_ADDRESS, BK_WEIGHT, BK_AUDIENCE, BK_PROXY_PROTOCOL };

/* "backend NAME" (one space) with a plain NAME, as for passdbs. */
static bool named_backend_section(const char *s, size_t len)
{
	return len > 8 && strncmp(s, "backend ", 8) == 0 && passdb_name_ok(s + 8, len - 8);
}

static struct backend_conf *backend_conf_get(struct parse_state *st, const char *name)
{
	struct dg_config *cfg = st->cfg;
	struct backend_conf *bc;
	char why[96];

	for (size_t i = 0; i < cfg->backend_count; i++) {
		if (cfg->backends[i].name != NULL && strcmp(cfg->backends[i].name, name) == 0)
			return &cfg->backends[i];
	}
	if ((bc = backend_conf_add(cfg, why, sizeof(why))) == NULL) {
		record_error(st, "%s", why);
		return NULL;
	}
	bc->line = st->lineno;
	if ((bc->name = strdup(name)) == NULL) {
		record_error(st, "out of memory");
		return NULL;
	}
	return bc;
}

static int backend_set_value(struct backend_conf *bc, int k, const char *value,
			     char *why, size_t whylen)
{
	const char *error;

	switch (k) {
	case BK_PROTOCOL:
		if (dg_proto_parse(value, &bc->proto) < 0) {
			snprintf(why, whylen, "must be imap, pop3 or smtp");
			return -1;
		}
		bc->has_proto = true;
		return 0;
	case BK_ADDRESS:
		if (backend_parse(value, &bc->addr, &error) < 0) {
			snprintf(why, whylen, "%s", error);
			return -1;
		}
		bc->has_addr = true;
		return 0;
	case BK_WEIGHT:
		if (parse_number(value, 10, 0, 1000, &bc->weight) < 0) {
			snprintf(why, whylen, "must be a number from 0 (drained) to 1000");
			return -1;
		}
		return 0;
	case BK_PROXY_PROTOCOL:
		if (strcmp(value, "yes") != 0 && strcmp(value, "no") != 0) {
			snprintf(why, whylen, "must be yes or no");
			return -1;
		}
		bc->proxy_protocol = strcmp(value, "yes") == 0;
		return 0;
	default:
		if (audience_check(value, why, whylen) < 0)
			return -1;
		return replace_string(&bc->audience, value, why, whylen);
	}
}

static int on_backend_key(struct parse_state *st, const char *bname, const char *name,
			  const char *value)
{
	struct backend_conf *bc = backend_conf_get(st, bname);
	char why[200];
	int k = 0;

	if (bc == NULL)
		return 0;
	while (backend_keys[k] != NULL && strcmp(backend_keys[k], name) != 0)
		k++;
	if (backend_keys[k] == NULL) {
		record_error(st, "unknown key '%s' in [backend %s]", name, bname);
		return 0;
	}
	if (bc->key_line[k] != 0) {
		record_error(st, "duplicate key '%s' (first set on line %u)", name,
			     bc->key_line[k]);
		return 0;
	}
	if (backend_set_value(bc, k, value, why, sizeof(why)) < 0) {
		record_error(st, "%s: %s", name, why);
		return 0;
	}
	bc->key_line[k] = st->lineno;
	return 1;
}

static const char *backend_label(const struct backend_conf *bc, char *buf, size_t len)
{
	if (bc->name != NULL)
		snprintf(buf, len, "[backend %s]", bc->name);
	else
		snprintf(buf, len, "[backend] %s", dg_proto_name(bc->proto));
	return buf;
}

/* Two entries for the same server in one pool, or (tickets) two servers
   sharing an audience: each Dovecot remembers used tickets on its own, so
   a shared audience would let one ticket log in once per server. */
static int backend_clash(const struct dg_config *cfg, size_t i, char *err, size_t errlen)
{
	const struct backend_conf *a = &cfg->backends[i];
	const char *aud_a = a->audience != NULL ? a->audience : cfg->ticket_audience;
	bool tickets = cfg->proto_cred_mode[a->proto] == CRED_MODE_TICKET;
	char la[80], lb[80];

	for (size_t j = 0; j < i; j++) {
		const struct backend_conf *b = &cfg->backends[j];
		const char *aud_b = b->audience != NULL ? b->audience : cfg->ticket_audience;

		if (b->proto != a->proto)
			continue;
		if (strcmp(a->addr.text, b->addr.text) == 0) {
			snprintf(err, errlen, "%s:%u: %s: %s is already in the %s pool (%s, line %u)",
				 cfg->path, a->line, backend_label(a, la, sizeof(la)), a->addr.text,
				 dg_proto_name(a->proto), backend_label(b, lb, sizeof(lb)), b->line);
			return -1;
		}
		if (tickets && aud_a != NULL && aud_b != NULL && strcmp(aud_a, aud_b) == 0) {
			snprintf(err, errlen, "%s:%u: %s: audience %s is also %s's (line %u): "
				 "each backend needs its own", cfg->path, a->line,
				 backend_label(a, la, sizeof(la)), aud_a,
				 backend_label(b, lb, sizeof(lb)), b->line);
			return -1;
		}
	}
	return 0;
}

/* Complete sections, no clashes, an audience for every ticket backend. */
static int check_backends(struct dg_config *cfg, char *err, size_t errlen)
{
	char label[80];

	for (size_t i = 0; i < cfg->backend_count; i++) {
		struct backend_conf *bc = &cfg->backends[i];
		const char *missing = !bc->has_proto ? "protocol" : !bc->has_addr ? "address" : NULL;

		if (bc->name == NULL)
			bc->line = cfg->line[CK_BACKEND_IMAP + bc->proto];
		if (missing != NULL) {
			snprintf(err, errlen, "%s:%u: [backend %s] %s is required",
				 cfg->path, bc->line, bc->name, missing);
			return -1;
		}
		if (cfg->proto_cred_mode[bc->proto] == CRED_MODE_TICKET &&
		    bc->audience == NULL && cfg->ticket_audience == NULL) {
			snprintf(err, errlen, "%s:%u: %s needs an audience (or set [ticket] "
				 "audience): %s uses tickets", cfg->path, bc->line,
				 backend_label(bc, label, sizeof(label)), dg_proto_name(bc->proto));
			return -1;
		}
		if (backend_clash(cfg, i, err, errlen) < 0)
			return -1;
		cfg->has_backend[bc->proto] = true;
	}
	return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct parse_state *st = user;
	char why[200];
	int k;

	if (section[0] == '\0') {
		record_error(st, "'%s' outside of any [section]", name);
		return 0;
	}
	if (strncmp(section, "passdb ", 7) == 0)
		return on_passdb_key(st, section + 7, name, value);
	if (strncmp(section, "backend ", 8) == 0)
		return on_backend_key(st, section + 8, name, value);
	k = find_key(section, name);
	if (k < 0) {
		record_error(st, "unknown key '%s' in [%s]", name, section);
		return 0;
	}
	if (st->cfg->line[k] != 0) {
		record_error(st, "duplicate key '%s' (first set on line %u)", name,
			     st->cfg->line[k]);
		return 0;
	}
	if (keys[k].set(st->cfg, &keys[k], value, why, sizeof(why)) < 0) {
		record_error(st, "%s: %s", name, why);
		return 0;
	}
	st->cfg->line[k] = st->lineno;
	if (strcmp(section, "passdb") == 0 && st->cfg->passdb_line == 0)
		st->cfg->passdb_line = st->lineno;     /* its place in the order */
	return 1;
}

static char *absolute_dir(const char *path)
{
	char *copy = strdup(path), *dir, *result = NULL, cwd[4096];

	if (copy == NULL)
		return NULL;
	dir = dirname(copy);
	if (dir[0] == '/')
		result = strdup(dir);
	else if (getcwd(cwd, sizeof(cwd)) == NULL)
		result = NULL;
	else if (strcmp(dir, ".") == 0)
		result = strdup(cwd);
	else if (asprintf(&result, "%s/%s", cwd, dir) < 0)
		result = NULL;
	free(copy);
	return result;
}

static int set_defaults(struct dg_config *cfg, const char *path)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->socket_mode = 0660;
	cfg->timeout = 5;
	cfg->max_header_bytes = 8192;
	cfg->hash_threads = 2;
	cfg->log_target = DGLOG_STDERR;
	cfg->cred_mode = CRED_MODE_TICKET;
	cfg->ticket_lifetime = 60;
	cfg->cache_ttl = 300;
	cfg->cache_negative_ttl = 30;
	cfg->cache_size = 100000;
	cfg->penalty_enabled = true;
	cfg->health_enabled = true;
	cfg->health_interval_ms = 2000;
	cfg->health_timeout_ms = 2000;
	cfg->health_rise = 2;
	cfg->health_fall = 2;
	cfg->health_proxy_protocol = true;
	cfg->health_greeting_timeout_ms = 30000;
	cfg->health_panic = true;
	cfg->metrics_max_connections = 16;
	cfg->cluster_timeout_ms = 100;
	cfg->cluster_connect_timeout_ms = 1000;
	cfg->cluster_retry_ms = 1000;
	cfg->cluster_assignment_ttl = 900;
	cfg->cluster_shared_penalty = true;
	cfg->cluster_max_pending = 1024;
	penalty_config_defaults(&cfg->penalty);
	cfg->path = strdup(path);
	cfg->dir = absolute_dir(path);
	cfg->secret_header = strdup("X-Dovegate-Secret");
	cfg->passdb_driver = strdup("passwd-file");
	cfg->default_scheme = strdup("CRYPT");
	cfg->master_separator = strdup("*");
	cfg->cluster_prefix = strdup(CLUSTER_PREFIX_DEFAULT);
	cfg->listen_text = strdup("127.0.0.1:9143");
	if (cfg->listen_text != NULL)
		parse_listen_tcp(&cfg->listen, cfg->listen_text);
	return cfg->path && cfg->dir && cfg->secret_header && cfg->passdb_driver &&
	       cfg->default_scheme && cfg->master_separator && cfg->listen_text &&
	       cfg->cluster_prefix ? 0 : -1;
}

void config_key_error(const struct dg_config *cfg, enum config_key key,
		      char *err, size_t errlen, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (cfg->line[key] != 0)
		snprintf(err, errlen, "%s:%u: %s", cfg->path, cfg->line[key], msg);
	else
		snprintf(err, errlen, "%s: %s", cfg->path, msg);
}

static int require(const struct dg_config *cfg, enum config_key key,
		   char *err, size_t errlen)
{
	if (cfg->line[key] != 0)
		return 0;
	snprintf(err, errlen, "%s: [%s] %s is required", cfg->path,
		 keys[key].section, keys[key].name);
	return -1;
}

/* imap_mode, pop3_mode, smtp_mode: each defaults to mode. */
static void resolve_cred_modes(struct dg_config *cfg)
{
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		if (cfg->line[CK_CRED_IMAP_MODE + p] == 0)
			cfg->proto_cred_mode[p] = cfg->cred_mode;
	}
}

bool config_uses_cred_mode(const struct dg_config *cfg, enum cred_mode mode)
{
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		if (cfg->proto_cred_mode[p] == mode)
			return true;
	}
	return false;
}

/* Like require(); names the per-protocol key that needs it when `mode`
   (the default) does not. */
static int require_for_mode(const struct dg_config *cfg, enum config_key key,
			    enum cred_mode mode, char *err, size_t errlen)
{
	if (cfg->line[key] != 0 || cfg->cred_mode == mode)
		return require(cfg, key, err, errlen);
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		enum config_key by = (enum config_key)(CK_CRED_IMAP_MODE + p);

		if (cfg->proto_cred_mode[p] != mode)
			continue;
		snprintf(err, errlen, "%s:%u: [%s] %s is required by %s = %s", cfg->path,
			 cfg->line[by], keys[key].section, keys[key].name, keys[by].name,
			 cred_mode_name(mode));
		return -1;
	}
	return 0;
}

/* A dovecot passdb's no_penalty follows [penalty] unless set: when
   dovegate-auth holds and refuses penalised logins itself, Dovecot's own
   per-address delay (up to 15 s) would only add to that hold and push the
   answer past nginx's auth_http_timeout. */
static void default_no_penalty(struct dg_config *cfg)
{
	for (size_t i = 0; i < cfg->passdb_count; i++)
		if (cfg->passdbs[i].key_line[PK_NO_PENALTY] == 0)
			cfg->passdbs[i].no_penalty = cfg->penalty_enabled;
}

/* [cluster] keys need store =; TLS keys need a rediss:// store; a client
   certificate needs its key. */
static int check_cluster(const struct dg_config *cfg, char *err, size_t errlen)
{
	static const enum config_key tls_keys[] = {
		CK_CLUSTER_TLS_CA_FILE, CK_CLUSTER_TLS_CERT_FILE, CK_CLUSTER_TLS_KEY_FILE,
		CK_CLUSTER_TLS_SERVER_NAME
	};

	if (cfg->cluster_store_text == NULL) {
		for (int k = CK_CLUSTER_USER; k <= CK_CLUSTER_TLS_SERVER_NAME; k++)
			if (cfg->line[k] != 0) {
				config_key_error(cfg, (enum config_key)k, err, errlen,
						 "[cluster] %s needs [cluster] store = "
						 "(the store's URL)", keys[k].name);
				return -1;
			}
		return 0;
	}
	for (size_t i = 0; i < sizeof(tls_keys) / sizeof(tls_keys[0]); i++)
		if (cfg->line[tls_keys[i]] != 0 && cfg->cluster_addr.transport != CLUSTER_TLS) {
			config_key_error(cfg, tls_keys[i], err, errlen,
					 "%s applies to a rediss:// store only",
					 keys[tls_keys[i]].name);
			return -1;
		}
	if ((cfg->cluster_tls_cert_file == NULL) != (cfg->cluster_tls_key_file == NULL)) {
		config_key_error(cfg, cfg->cluster_tls_cert_file != NULL ? CK_CLUSTER_TLS_CERT_FILE :
				 CK_CLUSTER_TLS_KEY_FILE, err, errlen,
				 "tls_cert_file and tls_key_file go together");
		return -1;
	}
	if (cfg->cluster_user != NULL && cfg->cluster_password_file == NULL) {
		config_key_error(cfg, CK_CLUSTER_USER, err, errlen,
				 "[cluster] user needs password_file (AUTH user password)");
		return -1;
	}
	return 0;
}

static int check_complete(struct dg_config *cfg, char *err, size_t errlen)
{
	resolve_cred_modes(cfg);
	default_no_penalty(cfg);
	if (require(cfg, CK_SECRET_FILE, err, errlen) < 0 ||
	    /* [passdb] may be left out when [passdb NAME] sections exist */
	    (cfg->passdb_count == 0 && require(cfg, CK_PASSDB_PATH, err, errlen) < 0) ||
	    check_passdbs(cfg, err, errlen) < 0)
		return -1;
	if (config_uses_cred_mode(cfg, CRED_MODE_TICKET) &&
	    require_for_mode(cfg, CK_TICKET_SIGNING_KEY, CRED_MODE_TICKET, err, errlen) < 0)
		return -1;
	/* [ticket] audience: only for backends without their own (checked here) */
	if (check_backends(cfg, err, errlen) < 0)
		return -1;
	if (config_uses_cred_mode(cfg, CRED_MODE_MASTER) &&
	    (require_for_mode(cfg, CK_MASTER_USER, CRED_MODE_MASTER, err, errlen) < 0 ||
	     require_for_mode(cfg, CK_MASTER_PASSWORD_FILE, CRED_MODE_MASTER, err, errlen) < 0))
		return -1;
	if (!cfg->has_backend[DG_PROTO_IMAP] && !cfg->has_backend[DG_PROTO_POP3] &&
	    !cfg->has_backend[DG_PROTO_SMTP]) {
		snprintf(err, errlen, "%s: no backend: set [backend] imap, pop3 or smtp, "
			 "or add [backend NAME] sections", cfg->path);
		return -1;
	}
	if (check_cluster(cfg, err, errlen) < 0)
		return -1;
	if (strpbrk(cfg->master_separator, " ") != NULL) {
		config_key_error(cfg, CK_MASTER_SEPARATOR, err, errlen,
				 "master_separator must not contain spaces");
		return -1;
	}
	return 0;
}

static int parse_file(struct parse_state *st, char *err, size_t errlen)
{
	const char *path = st->cfg->path;
	int rc;

	st->file = fopen(path, "re");
	if (st->file == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = ini_parse_stream(read_line, st, on_key, st);
	fclose(st->file);
	free(st->buf);
	if (rc == 0)
		return 0;
	if (rc < 0)
		snprintf(err, errlen, "%s: out of memory", path);
	else if (st->err_line != 0 && st->err_line <= (unsigned)rc)
		snprintf(err, errlen, "%s:%u: %s", path, st->err_line, st->err);
	else
		snprintf(err, errlen, "%s:%d: syntax error", path, rc);
	return -1;
}

int config_load(const char *path, struct dg_config *cfg, char *err, size_t errlen)
{
	struct parse_state st;

	memset(&st, 0, sizeof(st));
	st.cfg = cfg;
	if (set_defaults(cfg, path) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		config_free(cfg);
		return -1;
	}
	if (parse_file(&st, err, errlen) < 0 || check_complete(cfg, err, errlen) < 0) {
		config_free(cfg);
		return -1;
	}
	cfg->penalty.trusted = cfg->penalty_trusted;
	cfg->penalty.trusted_count = cfg->penalty_trusted_count;
	return 0;
}

void config_free(struct dg_config *cfg)
{
	free(cfg->path);
	free(cfg->dir);
	free(cfg->listen_text);
	free(cfg->socket_group);
	free(cfg->secret_header);
	free(cfg->secret_file);
	free(cfg->user);
	free(cfg->passdb_driver);
	free(cfg->passdb_path);
	free(cfg->default_scheme);
	for (size_t i = 0; i < cfg->passdb_count; i++) {
		free(cfg->passdbs[i].name);
		free(cfg->passdbs[i].path);
		free(cfg->passdbs[i].default_scheme);
		free(cfg->passdbs[i].socket);
	}
	free(cfg->master_user);
	free(cfg->master_separator);
	free(cfg->master_password_file);
	free(cfg->ticket_signing_key);
	free(cfg->ticket_audience);
	free(cfg->relay_domains);
	free(cfg->external_map_file);
	free(cfg->penalty_trusted);
	free(cfg->proxy_trusted);
	for (size_t i = 0; i < cfg->backend_count; i++) {
		free(cfg->backends[i].name);
		free(cfg->backends[i].audience);
	}
	free(cfg->route_key);
	free(cfg->metrics_listen_text);
	free(cfg->metrics_token_file);
	free(cfg->cluster_store_text);
	free(cfg->cluster_user);
	free(cfg->cluster_password_file);
	free(cfg->cluster_prefix);
	free(cfg->cluster_tls_ca_file);
	free(cfg->cluster_tls_cert_file);
	free(cfg->cluster_tls_key_file);
	free(cfg->cluster_tls_server_name);
	memset(cfg, 0, sizeof(*cfg));
}
