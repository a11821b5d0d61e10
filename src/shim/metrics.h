/* Prometheus metrics: the process-wide counters and their text rendering
   (exposition format 0.0.4). The counters are one per process, outside the
   reloadable runtime, so they survive SIGHUP; a scrape asks the daemon for
   its gauges (struct metrics_gauges). Loop thread only: no locking.
   The listener is metrics_http.h. */
#ifndef DOVEGATE_SHIM_METRICS_H
#define DOVEGATE_SHIM_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

/* Every label value comes from a fixed set or is bounded by this table:
   a client can never create new series. */
#define METRICS_MAX_REASONS 32
#define METRICS_MAX_BACKENDS 64

/* One login decision, counted where its log line is written.
   proto: enum dg_proto or -1 (not sent/unknown); method: enum authhttp_method
   or -1 (no Auth-Method); result: "ok", "fail" or "error"; reason: NULL for
   ok, else a plain token such as "bad_password"; cache: "hit", "miss", "off"
   or NULL (not consulted); delay: the penalty's Auth-Wait seconds, 0 when
   the answer closes the connection (attempt cap), -1 when no penalty
   applied; seconds: how long the decision took. */
void metrics_decision(int proto, int method, const char *result, const char *reason,
		      const char *cache, int delay, double seconds);
/* A login held seconds before it was verified (throttle.h). */
void metrics_penalty_hold(unsigned seconds);
void metrics_reload(bool ok);
/* A login in cluster mode: shared false when the store did not answer and
   this edge decided alone; assignment: the director's "honoured",
   "created", "replaced", or NULL. */
void metrics_cluster_login(bool shared, const char *assignment);

/* A metrics connection or scrape refused by the listener (metrics_http.h). */
enum metrics_refusal {
	METRICS_REFUSED_CONNECTIONS,    /* past [metrics] max_connections */
	METRICS_REFUSED_UNAUTHORIZED,   /* no or wrong bearer token */
	METRICS_REFUSED_COUNT
};
void metrics_scrape_refused(enum metrics_refusal why);
/* Back to zero (unit tests). */
void metrics_reset(void);

struct metrics_backend_state {
	char proto[8];
	char name[64];                  /* [backend NAME]; "" for [backend] PROTO = */
	char backend[64];               /* ip:port */
	bool up;
};

#define METRICS_MAX_POOLS 3             /* imap, pop3, smtp */

struct metrics_pool_state {
	char proto[8];
	bool panic;                     /* every backend down: routing to them anyway */
	unsigned long panic_routes;     /* logins routed in panic since start */
};

/* Values read at scrape time. */
struct metrics_gauges {
	size_t in_flight;               /* auth_http requests being answered */
	size_t users;                   /* users in the loaded users files */
	bool penalty_enabled;
	size_t penalty_active;          /* keys with a live failure score */
	size_t penalty_entries;         /* keys held (bounded by max_entries) */
	struct metrics_backend_state backends[METRICS_MAX_BACKENDS];
	size_t backend_count;
	struct metrics_pool_state pools[METRICS_MAX_POOLS];
	size_t pool_count;
	size_t metrics_connections;     /* open on the metrics listener, this one included */
	/* [cluster] (cluster.h); cluster_on false: no cluster series */
	bool cluster_on;
	bool cluster_up;                /* the store connection is up */
	uint64_t cluster_commands, cluster_errors, cluster_downs;
};

/* Adds one backend's health (beyond METRICS_MAX_BACKENDS: ignored). */
void metrics_gauges_add_backend(struct metrics_gauges *g, const char *proto,
				const char *name, const char *backend, bool up);

/* Adds one pool's panic state (beyond METRICS_MAX_POOLS: ignored). */
void metrics_gauges_add_pool(struct metrics_gauges *g, const char *proto, bool panic,
			     unsigned long panic_routes);

/* The whole exposition, counters and g. 0, or -1 when out of memory. */
int metrics_render(struct evbuffer *out, const struct metrics_gauges *g);

#endif
