/* The metrics listener, on the daemon's event_base and its own address
   ([metrics] listen): GET (or HEAD) /metrics only, one request per
   connection (Connection: close). At most max_connections are open at once;
   one more is answered 503 and closed at once, counted. Each has
   METRICS_TIMEOUT_SECONDS from accept to its answer. With a bearer token,
   a request without "Authorization: Bearer <token>" gets 401 with
   WWW-Authenticate; the token is kept only as a hash, compared in constant
   time, and never logged. */
#ifndef DOVEGATE_SHIM_METRICS_HTTP_H
#define DOVEGATE_SHIM_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "secret.h"

struct event_base;
struct metrics_http;

/* Fills the gauges (zeroed before the call) for one scrape. */
typedef void metrics_collect_fn(void *ctx, struct metrics_gauges *g);

/* Binds cfg's [metrics] listen (run before dropping privileges), with cfg's
   max_connections and no token until metrics_http_set_access(). NULL with
   err on failure. */
struct metrics_http *metrics_http_new(struct event_base *base, struct dglog *log,
				      const struct dg_config *cfg,
				      metrics_collect_fn *collect, void *ctx,
				      char *err, size_t errlen);
/* The connection cap and the bearer token (NULL or empty: none), at start
   and on each reload. Connections already open stay. */
void metrics_http_set_access(struct metrics_http *mh, unsigned max_connections,
			     const struct secret *token);
/* True for 127.0.0.0/8 and ::1. */
bool metrics_listen_is_loopback(const struct dg_listen *l);
void metrics_http_free(struct metrics_http *mh);

#endif
