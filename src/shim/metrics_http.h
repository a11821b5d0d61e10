/* The metrics listener: its own libevent evhttp on the daemon's event_base,
   on its own address ([metrics] listen), answering GET /metrics only. */
#ifndef DOVEGATE_SHIM_METRICS_HTTP_H
#define DOVEGATE_SHIM_METRICS_HTTP_H

#include <stddef.h>

#include "config.h"
#include "log.h"
#include "metrics.h"

struct event_base;
struct metrics_http;

/* Fills the gauges (zeroed before the call) for one scrape. */
typedef void metrics_collect_fn(void *ctx, struct metrics_gauges *g);

/* Binds cfg's [metrics] listen (run before dropping privileges). NULL with
   err on failure. */
struct metrics_http *metrics_http_new(struct event_base *base, struct dglog *log,
				      const struct dg_config *cfg,
				      metrics_collect_fn *collect, void *ctx,
				      char *err, size_t errlen);
void metrics_http_free(struct metrics_http *mh);

#endif
