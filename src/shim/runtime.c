#include "runtime.h"
#include "store_tls.h"

#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filetrust.h"
#include "schemes.h"

static int load_secret(struct runtime *rt, struct dglog *log, char *err, size_t errlen)
{
	char why[512];
	bool insecure = false;

	if (secret_read(rt->cfg.secret_file, false, &rt->http_secret, &insecure,
			why, sizeof(why)) < 0) {
		config_key_error(&rt->cfg, CK_SECRET_FILE, err, errlen, "secret_file %s", why);
		return -1;
	}
	if (insecure)
		dglog(log, LOG_WARNING, "%s: readable by group or others; "
		      "chmod 600 it (or 640 with a trusted group)", rt->cfg.secret_file);
	return 0;
}

/* An optional secret file named by key (path NULL: none), read with the
   config so that -t checks it and SIGHUP rotates it. */
static int load_optional_secret(const struct runtime *rt, const char *path,
				enum config_key key, struct secret *out, struct dglog *log,
				char *err, size_t errlen)
{
	char why[512];
	bool insecure = false;

	if (path == NULL)
		return 0;
	if (secret_read(path, false, out, &insecure, why, sizeof(why)) < 0) {
		config_key_error(&rt->cfg, key, err, errlen, "%s %s", config_key_name(key), why);
		return -1;
	}
	if (insecure)
		dglog(log, LOG_WARNING, "%s: readable by group or others; "
		      "chmod 600 it (or 640 with a trusted group)", path);
	return 0;
}

/* A rediss:// store: its TLS files load, and this build has TLS at all
   (Debian 12's hiredis has none), so that -t says so before a start does. */
static int check_cluster_tls(const struct runtime *rt, char *err, size_t errlen)
{
	const struct dg_config *cfg = &rt->cfg;
	struct store_tls *tls;
	char why[512];

	if (cfg->cluster_store_text == NULL || cfg->cluster_addr.transport != CLUSTER_TLS)
		return 0;
	tls = store_tls_new(cfg->cluster_tls_ca_file, cfg->cluster_tls_cert_file,
			    cfg->cluster_tls_key_file, cfg->cluster_tls_server_name, why, sizeof(why));
	if (tls == NULL) {
		config_key_error(cfg, CK_CLUSTER_STORE, err, errlen, "store %s", why);
		return -1;
	}
	store_tls_free(tls);
	return 0;
}

/* The store names backends by host id (routing.h): one id, one backend. */
static int check_cluster_hosts(const struct runtime *rt, char *err, size_t errlen)
{
	const struct dg_config *cfg = &rt->cfg;
	enum dg_proto proto;
	const char *shared;

	if (cfg->cluster_store_text == NULL || cfg->cluster_assignment_ttl == 0 ||
	    (shared = routing_shared_host_id(rt->own_routing, &proto)) == NULL)
		return 0;
	config_key_error(cfg, CK_CLUSTER_STORE, err, errlen,
			 "two %s backends would both be \"%s\" in the cluster store: give each "
			 "[backend NAME] an audience of its own (or set assignment_ttl = 0)",
			 dg_proto_name(proto), shared);
	return -1;
}

static int load_passdb(struct runtime *rt, bool strict, struct dglog *log,
		       char *err, size_t errlen)
{
	char why[512];

	rt->passdb = passdb_new(&rt->cfg);
	if (rt->passdb == NULL) {
		snprintf(err, errlen, "%s: out of memory", rt->cfg.path);
		return -1;
	}
	if (passdb_load(rt->passdb, log, why, sizeof(why)) == 0)
		return 0;
	if (!strict) {
		dglog(log, LOG_ERR, "users file unusable, logins fail temporarily "
		      "until it is fixed: %s", why);
		return 0;
	}
	config_key_error(&rt->cfg, CK_PASSDB_PATH, err, errlen, "users file %s", why);
	return -1;
}

/* Unknown users are verified against this hash so that they are not
   answered faster than a wrong password. Its scheme: [passdb] default_scheme
   when the config sets it, else SHA512-CRYPT (what `dovegate pw` and most
   Dovecot installations store), at the scheme's default cost: the cost of a
   typical users file entry. Made at load time, so a slow scheme (ARGON2ID)
   costs start-up/reload time once, not the event loop per request. */
static int make_dummy_hash(struct runtime *rt, char *err, size_t errlen)
{
	const char *scheme = rt->cfg.line[CK_DEFAULT_SCHEME] != 0 ?
			     rt->cfg.default_scheme : "SHA512-CRYPT";
	unsigned char random[24];
	char password[sizeof(random) * 2 + 1];
	const char *why = "unknown error";

	randombytes_buf(random, sizeof(random));
	sodium_bin2hex(password, sizeof(password), random, sizeof(random));
	rt->dummy_hash = scheme_hash(scheme, password, strlen(password), &why);
	sodium_memzero(password, sizeof(password));
	if (rt->dummy_hash == NULL) {
		snprintf(err, errlen, "%s: cannot hash with %s: %s", rt->cfg.path, scheme, why);
		return -1;
	}
	return 0;
}

static int make_cache(struct runtime *rt, char *err, size_t errlen)
{
	if (rt->cfg.cache_size == 0)
		return 0;
	rt->cache = cache_new(rt->cfg.cache_size, rt->cfg.cache_ttl,
			      rt->cfg.cache_negative_ttl);
	if (rt->cache == NULL) {
		snprintf(err, errlen, "%s: out of memory for the cache", rt->cfg.path);
		return -1;
	}
	return 0;
}

/* Read with the config: a changed map takes effect on reload (SIGHUP). */
static int load_external_map(struct runtime *rt, char *err, size_t errlen)
{
	char why[512];

	if (rt->cfg.external_user_from != EXTERNAL_MAP)
		return 0;
	if (rt->cfg.external_map_file == NULL) {
		config_key_error(&rt->cfg, CK_EXTERNAL_USER_FROM, err, errlen,
				 "user_from = map needs [external] map_file");
		return -1;
	}
	rt->external_map = external_map_load(rt->cfg.external_map_file, why, sizeof(why));
	if (rt->external_map == NULL) {
		config_key_error(&rt->cfg, CK_EXTERNAL_MAP_FILE, err, errlen, "map_file %s", why);
		return -1;
	}
	return 0;
}

/* Until runtime_attach_routing(): the pools without health checks. */
static int make_own_routing(struct runtime *rt, struct dglog *log, char *err, size_t errlen)
{
	rt->own_routing = routing_new(NULL, log);
	if (rt->own_routing == NULL) {
		snprintf(err, errlen, "%s: out of memory", rt->cfg.path);
		return -1;
	}
	rt->routing = rt->own_routing;
	return routing_configure(rt->own_routing, &rt->cfg, err, errlen);
}

static void runtime_free(struct runtime *rt)
{
	routing_free(rt->own_routing);
	external_map_free(rt->external_map);
	cache_free(rt->cache);
	free(rt->dummy_hash);
	passdb_free(rt->passdb);
	credentials_clear(&rt->cred);
	secret_clear(&rt->http_secret);
	secret_clear(&rt->metrics_token);
	secret_clear(&rt->cluster_password);
	config_free(&rt->cfg);
	free(rt);
}

/* Key and secret files may belong to [server] user, who re-reads them on
   SIGHUP (filetrust.h): accept that owner, too, while still root. */
static void allow_service_user(const struct dg_config *cfg)
{
	const struct passwd *pw = cfg->user != NULL ? getpwnam(cfg->user) : NULL;

	filetrust_allow_owner(pw != NULL ? pw->pw_uid : (uid_t)-1);
}

struct runtime *runtime_load(const char *config_path, bool strict,
			     struct dglog *log, char *err, size_t errlen)
{
	struct runtime *rt = calloc(1, sizeof(*rt));

	if (rt == NULL) {
		snprintf(err, errlen, "%s: out of memory", config_path);
		return NULL;
	}
	rt->refs = 1;
	if (config_load(config_path, &rt->cfg, err, errlen) < 0) {
		free(rt);
		return NULL;
	}
	allow_service_user(&rt->cfg);
	if (load_secret(rt, log, err, errlen) < 0 ||
	    load_optional_secret(rt, rt->cfg.metrics_token_file, CK_METRICS_TOKEN_FILE,
				 &rt->metrics_token, log, err, errlen) < 0 ||
	    load_optional_secret(rt, rt->cfg.cluster_password_file, CK_CLUSTER_PASSWORD_FILE,
				 &rt->cluster_password, log, err, errlen) < 0 ||
	    check_cluster_tls(rt, err, errlen) < 0 ||
	    credentials_init(&rt->cred, &rt->cfg, err, errlen) < 0 ||
	    load_passdb(rt, strict, log, err, errlen) < 0 ||
	    make_dummy_hash(rt, err, errlen) < 0 || make_cache(rt, err, errlen) < 0 ||
	    load_external_map(rt, err, errlen) < 0 ||
	    make_own_routing(rt, log, err, errlen) < 0 ||
	    check_cluster_hosts(rt, err, errlen) < 0) {
		runtime_free(rt);
		return NULL;
	}
	return rt;
}

int runtime_attach_penalty(struct runtime *rt, struct penalty *p, char *err, size_t errlen)
{
	const char *why = "invalid settings";

	rt->penalty = NULL;
	if (!rt->cfg.penalty_enabled || p == NULL)
		return 0;
	if (penalty_configure(p, &rt->cfg.penalty, &why) < 0) {
		snprintf(err, errlen, "%s: [penalty] %s", rt->cfg.path, why);
		return -1;
	}
	rt->penalty = p;
	return 0;
}

int runtime_attach_routing(struct runtime *rt, struct routing *r, char *err, size_t errlen)
{
	if (routing_configure(r, &rt->cfg, err, errlen) < 0)
		return -1;
	rt->routing = r;
	return 0;
}

int runtime_attach_cluster(struct runtime *rt, struct cluster *c, char *err, size_t errlen)
{
	char why[512];

	rt->cluster = NULL;
	if (cluster_configure(c, &rt->cfg, &rt->cluster_password, rt->routing, why,
			      sizeof(why)) < 0) {
		config_key_error(&rt->cfg, CK_CLUSTER_STORE, err, errlen, "[cluster] %s", why);
		return -1;
	}
	rt->cluster = cluster_on(c) ? c : NULL;
	return 0;
}

struct runtime *runtime_ref(struct runtime *rt)
{
	rt->refs++;
	return rt;
}

void runtime_unref(struct runtime *rt)
{
	if (rt != NULL && --rt->refs == 0)
		runtime_free(rt);
}
