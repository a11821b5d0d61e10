/* Everything one login decision needs, built from one version of the config:
   the config itself, the shared secret, the credentials, the passdb.
   Immutable once built (except the passdb's own reloads, done on the loop
   thread) and reference counted, so SIGHUP can swap in a new one while
   decisions under the old one finish. Only touched on the event loop thread;
   hash workers get copies of what they need. */
#ifndef DOVEGATE_SHIM_RUNTIME_H
#define DOVEGATE_SHIM_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#include "cache.h"
#include "cluster.h"
#include "config.h"
#include "external.h"
#include "credentials.h"
#include "log.h"
#include "passdb.h"
#include "penalty.h"
#include "routing.h"
#include "secret.h"

struct runtime {
	unsigned refs;
	struct dg_config cfg;
	struct secret http_secret;
	/* [metrics] bearer_token_file's token (data NULL: none) */
	struct secret metrics_token;
	struct credentials cred;
	struct passdb *passdb;
	/* Verified logins (NULL: [cache] size = 0). Built with the runtime, so a
	   reload starts empty; mutated on the loop thread only. */
	struct cache *cache;
	/* Hash of a random password that unknown users are verified against, so
	   that they cost as much as a wrong password (see runtime.c). */
	char *dummy_hash;
	/* [external] map_file, read with the config (NULL: no map) */
	struct external_map *external_map;
	/* Brute-force state: NOT part of the reloadable runtime. Owned by the
	   process (main.c) so that scores survive SIGHUP; borrowed here. NULL:
	   [penalty] enabled = no (or not attached, e.g. tools and tests). */
	struct penalty *penalty;
	/* Backend pools and their health: process-wide too (main.c), borrowed
	   once attached; until then the runtime's own copy of the pools, all
	   counted as up (own_routing, for `-t`, tools and tests). */
	struct routing *routing;
	struct routing *own_routing;
	/* [cluster] password_file's password (data NULL: none), read with the
	   config so that -t checks it and SIGHUP rotates it */
	struct secret cluster_password;
	/* The cluster store: process-wide (main.c), borrowed once attached;
	   NULL: no [cluster] (or not attached). */
	struct cluster *cluster;
};

/* strict: an unusable users file is an error (config test, reload).
   Otherwise (start-up) it is logged and logins fail temporarily until the
   file becomes usable. Errors are "CONFIG:LINE: message". */
struct runtime *runtime_load(const char *config_path, bool strict,
			     struct dglog *log, char *err, size_t errlen);
/* Applies rt's [penalty] settings to the process-wide state p (keeping
   every score) and lets rt's decisions use it. -1 with err on ENOMEM. */
int runtime_attach_penalty(struct runtime *rt, struct penalty *p, char *err, size_t errlen);
/* Applies rt's backend pools, [health] and [route] to the process-wide
   routing r (keeping every surviving backend's health) and lets rt's
   decisions use it. -1 with err. */
int runtime_attach_routing(struct runtime *rt, struct routing *r, char *err, size_t errlen);
/* Applies rt's [cluster] to the process-wide cluster c (after
   runtime_attach_routing: the drained set goes to rt's routing) and lets
   rt's decisions use it. -1 with err. */
int runtime_attach_cluster(struct runtime *rt, struct cluster *c, char *err, size_t errlen);
struct runtime *runtime_ref(struct runtime *rt);
void runtime_unref(struct runtime *rt);

#endif
