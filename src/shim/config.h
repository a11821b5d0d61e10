/* dovegate-auth.conf: INI file read with libinih. Errors are "FILE:LINE: message"
   (or "FILE: message" when no single line is to blame). */
#ifndef DOVEGATE_SHIM_CONFIG_H
#define DOVEGATE_SHIM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "authhttp.h"
#include "backend.h"
#include "cluster_store.h"
#include "log.h"
#include "penalty.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/dovegate/dovegate-auth.conf"

enum cred_mode { CRED_MODE_MASTER, CRED_MODE_PASSTHROUGH, CRED_MODE_TICKET };

struct dg_listen {
	bool is_unix;
	char path[108];                 /* unix: absolute socket path */
	struct sockaddr_storage addr;   /* tcp */
	int addrlen;
};

/* Every key, in the order of the table in config.c. */
enum config_key {
	CK_LISTEN, CK_SOCKET_MODE, CK_SOCKET_GROUP, CK_SECRET_HEADER,
	CK_SECRET_FILE, CK_TIMEOUT, CK_MAX_HEADER_BYTES, CK_USER, CK_HASH_THREADS,
	CK_PROXY_TRUSTED,
	CK_LOG_TARGET,
	CK_PASSDB_DRIVER, CK_PASSDB_PATH, CK_DEFAULT_SCHEME,
	CK_BACKEND_IMAP, CK_BACKEND_POP3, CK_BACKEND_SMTP,
	CK_CRED_MODE, CK_CRED_IMAP_MODE, CK_CRED_POP3_MODE, CK_CRED_SMTP_MODE,
	CK_MASTER_USER, CK_MASTER_SEPARATOR, CK_MASTER_PASSWORD_FILE,
	CK_TICKET_SIGNING_KEY, CK_TICKET_AUDIENCE, CK_TICKET_LIFETIME,
	CK_CACHE_TTL, CK_CACHE_NEGATIVE_TTL, CK_CACHE_SIZE,
	CK_RELAY_DOMAINS, CK_RELAY_BACKEND,
	CK_EXTERNAL_USER_FROM, CK_EXTERNAL_MAP_FILE,
	CK_PENALTY_ENABLED, CK_PENALTY_IPV4_PREFIX, CK_PENALTY_IPV6_PREFIX,
	CK_PENALTY_MAX_DELAY, CK_PENALTY_ATTEMPTS, CK_PENALTY_FORGET_AFTER,
	CK_PENALTY_EXEMPT_AFTER_SUCCESS, CK_PENALTY_MAX_ENTRIES, CK_PENALTY_TRUSTED,
	CK_PENALTY_REFUSE_AT, CK_PENALTY_MAX_PENDING, CK_PENALTY_KNOWN_NETWORK_TTL,
	CK_HEALTH_ENABLED, CK_HEALTH_INTERVAL, CK_HEALTH_TIMEOUT, CK_HEALTH_RISE,
	CK_HEALTH_FALL, CK_HEALTH_PROXY_PROTOCOL, CK_HEALTH_GREETING_TIMEOUT, CK_HEALTH_PANIC,
	CK_ROUTE_KEY, CK_ROUTE_ALLOW_OUTSIDE,
	CK_METRICS_LISTEN, CK_METRICS_MAX_CONNECTIONS, CK_METRICS_TOKEN_FILE,
	CK_CLUSTER_STORE, CK_CLUSTER_USER, CK_CLUSTER_PASSWORD_FILE, CK_CLUSTER_TIMEOUT,
	CK_CLUSTER_CONNECT_TIMEOUT, CK_CLUSTER_RETRY_INTERVAL, CK_CLUSTER_PREFIX,
	CK_CLUSTER_ASSIGNMENT_TTL, CK_CLUSTER_SHARED_PENALTY, CK_CLUSTER_MAX_PENDING,
	CK_CLUSTER_TLS_CA_FILE, CK_CLUSTER_TLS_CERT_FILE, CK_CLUSTER_TLS_KEY_FILE,
	CK_CLUSTER_TLS_SERVER_NAME,
	CK_COUNT
};

/* A [passdb NAME] section. [passdb] itself keeps its own fields below. */
#define CONFIG_MAX_PASSDBS 8
enum passdb_driver { PASSDB_DRIVER_PASSWD_FILE, PASSDB_DRIVER_DOVECOT };
struct passdb_conf {
	char *name;
	unsigned line;                  /* of its first key: the order */
	bool has_driver;
	enum passdb_driver driver;
	char *path;                     /* passwd-file: absolute */
	char *default_scheme;           /* passwd-file; NULL: [passdb]'s */
	char *socket;                   /* dovecot: unix:/path or tcp:IP:PORT */
	unsigned timeout;               /* dovecot: seconds per request */
	bool no_penalty;                /* dovecot: see conf.d/dovegate-auth.conf */
	unsigned key_line[6];           /* driver path default_scheme socket timeout no_penalty */
};

/* A backend of a protocol's pool: a [backend NAME] section, or a
   [backend] imap/pop3/smtp line (name NULL: the pool of one of old). */
#define CONFIG_MAX_BACKENDS 64
struct backend_conf {
	char *name;                     /* NULL: [backend] PROTO = ... */
	unsigned line;                  /* its first key: for errors */
	bool has_proto;
	enum dg_proto proto;
	bool has_addr;
	struct backend addr;
	unsigned weight;                /* 0: drained, never chosen; default 1 */
	char *audience;                 /* ticket audience; NULL: [ticket]'s */
	int proxy_protocol;             /* health probes send PROXY: 1/0; -1: [health]'s */
	unsigned key_line[5];           /* protocol address weight audience proxy_protocol */
};

struct dg_config {
	char *path;                     /* as given */
	char *dir;                      /* absolute directory of path */
	unsigned line[CK_COUNT];        /* line that set each key; 0 = default */

	/* [server] */
	char *listen_text;
	struct dg_listen listen;
	unsigned socket_mode;
	char *socket_group;             /* NULL: keep the primary group */
	char *secret_header;
	char *secret_file;              /* absolute */
	unsigned timeout;               /* seconds */
	unsigned max_header_bytes;
	char *user;                     /* NULL: do not drop privileges */
	unsigned hash_threads;
	/* [log] */
	enum dglog_target log_target;
	/* [passdb] */
	char *passdb_driver;
	char *passdb_path;              /* absolute */
	char *default_scheme;
	unsigned passdb_line;           /* first key of [passdb]; 0: none */
	/* [passdb NAME] sections, in file order */
	struct passdb_conf passdbs[CONFIG_MAX_PASSDBS];
	size_t passdb_count;
	/* [backend] lines and [backend NAME] sections, in file order */
	struct backend_conf backends[CONFIG_MAX_BACKENDS];
	size_t backend_count;
	bool has_backend[DG_PROTO_COUNT];       /* the pool is not empty */
	/* [health]: active checks of every pool backend (health.h) */
	bool health_enabled;
	unsigned health_interval_ms, health_timeout_ms;
	unsigned health_rise, health_fall;
	bool health_proxy_protocol;     /* probe with "PROXY UNKNOWN" first */
	/* a connected backend's greeting may be this late (>= timeout) */
	unsigned health_greeting_timeout_ms;
	/* a pool whose backends are all down routes to them anyway */
	bool health_panic;
	/* [route] key: the hashing key's text, the same on every host (route.h) */
	char *route_key;
	/* [route] allow_hosts_outside_pools: a passdb host=/port= may name an
	   address that is no backend of the protocol's pool (default no) */
	bool route_allow_outside;
	/* [credentials] */
	enum cred_mode cred_mode;       /* mode: the default for every protocol */
	enum cred_mode proto_cred_mode[DG_PROTO_COUNT]; /* imap_mode ...: resolved,
					   = cred_mode unless set (line[CK_CRED_*_MODE]) */
	char *master_user;
	char *master_separator;
	char *master_password_file;     /* absolute */
	/* [ticket] */
	char *ticket_signing_key;       /* absolute */
	char *ticket_audience;
	unsigned ticket_lifetime;       /* seconds */
	/* [cache] */
	unsigned cache_ttl, cache_negative_ttl;   /* seconds */
	unsigned cache_size;            /* entries; 0: no cache */
	/* [relay]: Auth-Method none (SMTP without AUTH) */
	char *relay_domains;            /* " dom1 dom2 ", lower case; NULL: relay nothing */
	struct backend relay_backend;   /* has_relay_backend false: [backend] smtp */
	bool has_relay_backend;
	/* [external]: Auth-Method external (client certificates), external.h */
	int external_user_from;         /* enum external_rule */
	char *external_map_file;        /* absolute; NULL: none */
	/* [penalty]: brute-force protection (penalty.h). The state itself lives
	   outside the runtime; this is only what penalty_configure() applies. */
	bool penalty_enabled;
	struct penalty_config penalty;  /* .trusted points at penalty_trusted */
	struct penalty_net *penalty_trusted;
	size_t penalty_trusted_count;
	/* [server] proxy_protocol_trusted: load balancers whose PROXY address
	   (nginx's Proxy-Protocol-Addr) is believed; none by default */
	struct penalty_net *proxy_trusted;
	size_t proxy_trusted_count;
	/* [metrics]: Prometheus listener (metrics_http.h); NULL: none. A bare
	   port listens on 127.0.0.1. */
	char *metrics_listen_text;
	struct dg_listen metrics_listen;
	unsigned metrics_max_connections;       /* open at once; more: 503 */
	char *metrics_token_file;       /* absolute; NULL: no bearer token */
	/* [cluster]: several edges share one store (cluster.h); store NULL: off */
	char *cluster_store_text;       /* the URL as normalised */
	struct cluster_addr cluster_addr;       /* host: an IP literal or a socket path */
	char *cluster_user;             /* ACL user; NULL: AUTH with the password alone */
	char *cluster_password_file;    /* absolute; NULL: no AUTH */
	unsigned cluster_timeout_ms, cluster_connect_timeout_ms, cluster_retry_ms;
	char *cluster_prefix;
	unsigned cluster_assignment_ttl;        /* s; 0: no assignments */
	bool cluster_shared_penalty;
	unsigned cluster_max_pending;   /* commands in flight */
	char *cluster_tls_ca_file, *cluster_tls_cert_file, *cluster_tls_key_file; /* absolute */
	char *cluster_tls_server_name;
};

/* Parse and check `path`; on error fills err and returns -1 (cfg is then
   already freed). Files named in the config are not opened here. */
int config_load(const char *path, struct dg_config *cfg, char *err, size_t errlen);
void config_free(struct dg_config *cfg);

/* An error about key `key` ("FILE:LINE: ..." when the key was set in the file). */
void config_key_error(const struct dg_config *cfg, enum config_key key,
		      char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* A key's name in its section, e.g. "bearer_token_file". */
const char *config_key_name(enum config_key key);
const char *cred_mode_name(enum cred_mode mode);
/* True if some protocol uses `mode`. */
bool config_uses_cred_mode(const struct dg_config *cfg, enum cred_mode mode);

#endif
