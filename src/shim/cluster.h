/* Cluster mode: several dovegate-auth edges share state through one store
   (Redis or Valkey, store.h), so that
   - brute force is scored once for all edges: network and user scores,
     users known at a network and exempt networks live in the store
     (penalty.h folds them into this edge's own state, which stays the
     fallback);
   - every edge sends a user's logins to one backend: the user's first login
     records its backend (an assignment, renewed by each login, expiring
     after assignment_ttl without one), and every edge honours a live
     assignment while that backend is usable (director.h);
   - backends can be drained cluster-wide (`dovegate cluster drain`): the
     set is read every retry_interval.
   Per login at most two commands: cluster_lookup() (one MGET, before the
   policy step) and cluster_record() (one EVALSHA, when the login is decided,
   not waited for). While the store is down both return at once and the
   edge decides alone.

   Process-wide, outside the reloadable runtime (like the penalty state):
   cluster_configure() applies each config. Loop thread only. */
#ifndef DOVEGATE_SHIM_CLUSTER_H
#define DOVEGATE_SHIM_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "log.h"
#include "penalty.h"
#include "route.h"
#include "routing.h"
#include "secret.h"
#include "store.h"

struct event_base;
struct cluster;

struct cluster *cluster_new(struct event_base *base, struct dglog *log);
/* Applies cfg's [cluster] (and the [penalty] expiry times the store's keys
   use). password: the store password (data NULL: none). routing gets the
   drained set. Without [cluster], closes the store. -1 with err. */
int cluster_configure(struct cluster *c, const struct dg_config *cfg,
		      const struct secret *password, struct routing *routing,
		      char *err, size_t errlen);
/* Closes the store for good (shutdown, before the event base is freed):
   lookups in flight are answered with nothing asked, later calls see
   cluster mode off, and no event of the cluster's is left. */
void cluster_shutdown(struct cluster *c);
void cluster_free(struct cluster *c);

/* Cluster mode is configured (the store may be down). */
bool cluster_on(const struct cluster *c);
/* Assignments are on ([cluster] assignment_ttl > 0). */
bool cluster_assigns(const struct cluster *c);
void cluster_store_stats(const struct cluster *c, struct store_stats *out);
const char *cluster_store_url(const struct cluster *c);

/* What the store said about a login. */
struct cluster_facts {
	bool answered;                  /* false: decided on this edge's state alone */
	struct penalty_shared penalty;
	char assigned[ROUTE_IDENTITY_MAX];   /* the user's backend host id; "" none */
};

typedef void cluster_done_fn(void *ctx);

/* Asks the store about the login's network (net: penalty_network_text();
   NULL when the penalty is off) and user. False: nothing was asked (cluster
   off, store down, nothing to ask): out->answered is false, go on at once.
   True: done(ctx) runs from the loop within [cluster] timeout, with out
   filled (out->answered false if the store failed); out must stay put. */
bool cluster_lookup(struct cluster *c, const char *net, const char *user,
		    size_t user_len, struct cluster_facts *out, cluster_done_fn *done,
		    void *ctx);

enum cluster_assign {
	CLUSTER_ASSIGN_NONE,            /* leave the assignment alone */
	CLUSTER_ASSIGN_RENEW,           /* the login went to the assigned backend */
	CLUSTER_ASSIGN_CREATE,          /* none yet: record the backend */
	CLUSTER_ASSIGN_REPLACE,         /* the assigned one was unusable here: move */
};

enum cluster_event {
	CLUSTER_EVENT_NONE,
	CLUSTER_EVENT_FAILED,           /* a counted failure: scores up */
	CLUSTER_EVENT_REFUSED,          /* refused unverified: scores kept alive */
	CLUSTER_EVENT_SUCCESS,          /* network cleared, exempt, user known there */
};

struct cluster_outcome {
	enum cluster_event event;
	const char *net;                /* NULL: no scores to change */
	const char *user;               /* NULL: none */
	size_t user_len;
	/* SUCCESS: the backend's host id and what to do with the assignment */
	const char *backend;
	enum cluster_assign assign;
	const char *previous;           /* REPLACE: the assignment it replaces */
};

/* Tells the store (one EVALSHA, not waited for); nothing while it is down. */
void cluster_record(struct cluster *c, const struct cluster_outcome *o);

#endif
