/* The policy step of a login, before anything is verified: asks the
   brute-force state (penalty_admit) whether the client's network and the
   user may have this login checked now, later (held for the score's delay
   on a timer, success and failure alike), or not at all (a temporary error
   at the hard limit, or when the network has too many logins in flight).
   One struct throttle per decision; throttle_done() releases what
   admission took (the in-flight count, the timer) on every path. */
#ifndef DOVEGATE_SHIM_THROTTLE_H
#define DOVEGATE_SHIM_THROTTLE_H

#include <stdbool.h>

#include "penalty.h"

struct event;
struct event_base;

struct throttle {
	struct penalty *penalty;        /* NULL: nothing to release */
	struct penalty_addr ip;
	struct penalty_admission adm;
	struct event *timer;            /* while held */
	void (*go)(void *arg);          /* run when the hold is over */
	void *go_arg;
};

typedef void throttle_go_fn(void *arg);

/* Decides for the client at rip (text address) and user (may be NULL).
   GO: returns at once, verify now. HOLD: go(arg) runs from the event loop
   after adm.hold seconds (t must stay in place until then) (without a base, or if the timer cannot be set,
   the login is not held: GO). REFUSE/BUSY: nothing runs; answer with a
   temporary error and Auth-Wait adm.hold. No penalty state or an address
   that does not parse: GO. shared: the cluster store's facts (NULL: this
   edge's own state alone). */
enum penalty_verdict throttle_admit(struct throttle *t, struct penalty *p,
				    struct event_base *base, const char *rip,
				    const char *user, const struct penalty_shared *shared,
				    throttle_go_fn *go, void *arg);
/* The login is decided (or abandoned): releases the in-flight count and the
   timer. Safe to call more than once, and on a zeroed struct. */
void throttle_done(struct throttle *t);

#endif
