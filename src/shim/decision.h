/* One login decision: nginx's request in, the auth_http answer out, and one
   "decision ..." log line. Password verification runs on the hash workers. */
#ifndef DOVEGATE_SHIM_DECISION_H
#define DOVEGATE_SHIM_DECISION_H

#include <stddef.h>

#include "authhttp.h"
#include "log.h"
#include "runtime.h"
#include "workers.h"

struct event_base;

struct decision_env {
	struct runtime *rt;             /* referenced for the decision's lifetime */
	struct workers *workers;        /* NULL: verify inline (tests, tools) */
	struct dglog *log;
	/* for holding penalised logins before they are verified (throttle.h);
	   NULL: never held */
	struct event_base *base;
};

/* Called exactly once per decision, on the event loop thread; resp is only
   valid during the call. */
typedef void decision_reply_fn(void *ctx, const struct authhttp_response *resp);

/* pairs are only read during this call. reply may run before it returns. */
void decision_run(const struct decision_env *env, const struct authhttp_pair *pairs,
		  size_t count, decision_reply_fn *reply, void *ctx);

#endif
