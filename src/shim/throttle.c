#include "throttle.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t monotonic_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static void on_hold_over(evutil_socket_t fd, short what, void *ctx)
{
	struct throttle *t = ctx;

	(void)fd;
	(void)what;
	t->go(t->go_arg);
}

/* -1 when the timer cannot be set (the login then goes on unheld). */
static int start_hold(struct throttle *t, struct event_base *base)
{
	struct timeval tv = { .tv_sec = (time_t)t->adm.hold, .tv_usec = 0 };

	t->timer = evtimer_new(base, on_hold_over, t);
	if (t->timer == NULL || evtimer_add(t->timer, &tv) < 0) {
		if (t->timer != NULL)
			event_free(t->timer);
		t->timer = NULL;
		return -1;
	}
	return 0;
}

enum penalty_verdict throttle_admit(struct throttle *t, struct penalty *p,
				    struct event_base *base, const char *rip,
				    const char *user, const struct penalty_shared *shared,
				    throttle_go_fn *go, void *arg)
{
	memset(t, 0, sizeof(*t));
	if (p == NULL || rip == NULL || rip[0] == '\0' || penalty_addr_parse(rip, &t->ip) < 0)
		return PENALTY_GO;
	penalty_admit_shared(p, &t->ip, user, monotonic_now(), shared, &t->adm);
	if (t->adm.taken)
		t->penalty = p;
	if (t->adm.verdict != PENALTY_HOLD)
		return t->adm.verdict;
	t->go = go;
	t->go_arg = arg;
	if (base == NULL || start_hold(t, base) < 0) {
		t->adm.verdict = PENALTY_GO;
		return PENALTY_GO;
	}
	return PENALTY_HOLD;
}

void throttle_done(struct throttle *t)
{
	if (t->timer != NULL) {
		event_free(t->timer);   /* if still pending, go never runs */
		t->timer = NULL;
	}
	if (t->penalty != NULL) {
		penalty_release(t->penalty, &t->ip);
		t->penalty = NULL;
	}
}
