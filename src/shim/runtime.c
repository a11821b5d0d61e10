#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static int load_passdb(struct runtime *rt, bool strict, struct dglog *log,
		       char *err, size_t errlen)
{
	char why[512];

	rt->passdb = passdb_new(rt->cfg.passdb_path, rt->cfg.default_scheme);
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

static void runtime_free(struct runtime *rt)
{
	passdb_free(rt->passdb);
	credentials_clear(&rt->cred);
	secret_clear(&rt->http_secret);
	config_free(&rt->cfg);
	free(rt);
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
	if (load_secret(rt, log, err, errlen) < 0 ||
	    credentials_init(&rt->cred, &rt->cfg, err, errlen) < 0 ||
	    load_passdb(rt, strict, log, err, errlen) < 0) {
		runtime_free(rt);
		return NULL;
	}
	return rt;
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
