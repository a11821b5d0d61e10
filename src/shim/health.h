/* Active health checks of backends: connect, read the protocol greeting
   (IMAP "* OK", POP3 "+OK", SMTP "220"), every interval, each probe bounded by
   a timeout; rise consecutive good probes bring a backend up, fall bad ones
   take it down. A callback hears every state change (for logs, metrics and
   the route pools).

   The counting is a pure state machine (health_step) so it can be tested
   without sockets; the probing runs on a libevent loop. */
#ifndef DOVEGATE_SHIM_HEALTH_H
#define DOVEGATE_SHIM_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* ---- state machine ------------------------------------------------------ */

enum health_start {
	HEALTH_START_DOWN,              /* down until rise good probes */
	HEALTH_START_UP,                /* up until fall bad probes */
	/* down, but the first good probe brings it up: no routing gap of
	   rise * interval at start-up, no routing to a dead backend either */
	HEALTH_START_PENDING,
};

struct health_params {
	unsigned rise;                  /* >= 1 */
	unsigned fall;                  /* >= 1 */
};

struct health_state {
	bool up;
	unsigned streak;                /* consecutive results against the state */
	bool pending;                   /* HEALTH_START_PENDING, no result yet */
};

void health_state_init(struct health_state *s, enum health_start start);
/* Feeds one probe result; true when the state (s->up) changed. */
bool health_step(struct health_state *s, const struct health_params *p, bool ok);

/* ---- greeting ------------------------------------------------------------ */

enum health_proto { HEALTH_IMAP, HEALTH_POP3, HEALTH_SMTP };

enum health_verdict { HEALTH_NEED_MORE, HEALTH_GOOD, HEALTH_BAD };

/* Judges the first bytes a server sent. HEALTH_NEED_MORE until the line is
   complete (or long enough to tell). */
enum health_verdict health_greeting_check(enum health_proto proto, const char *buf,
					  size_t len);
/* "imap", "pop3", "smtp"; -1 otherwise. */
int health_proto_parse(const char *name);

/* ---- checker (libevent) -------------------------------------------------- */

struct event_base;
struct health_checker;

struct health_target {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum health_proto proto;
	char name[128];                 /* for logs: "imap 10.0.0.1:143" */
	unsigned interval_ms;           /* between probe starts; >= 1 */
	unsigned timeout_ms;            /* whole probe: connect + greeting */
	/* When the connection is established but the greeting is later than
	   timeout_ms, wait for it until greeting_timeout_ms after the probe's
	   start: a backend that accepts and greets slowly (a busy machine)
	   still logs nginx's clients in, so it is not down. 0 (or less than
	   timeout_ms): timeout_ms bounds the greeting too. */
	unsigned greeting_timeout_ms;
	struct health_params params;
	enum health_start start;
	/* Send "PROXY UNKNOWN\r\n" first: Dovecot's haproxy=yes listeners (the
	   ones nginx uses) drop connections without a PROXY header. */
	bool send_proxy;
};

/* Called on the loop thread on every state change, and on the first
   result of a HEALTH_START_PENDING target even when it stays down. reason is a short text
   ("greeting ok", "timeout", "connect: Connection refused", "bad greeting",
   "closed") valid during the call only. The callback must not free the
   checker; it may do anything else (log, mark a route backend down). */
typedef void health_change_fn(void *ctx, size_t id, const struct health_target *t,
			      bool up, const char *reason);

struct health_checker *health_new(struct event_base *base, health_change_fn *cb, void *ctx);
/* Starts probing at once. Returns the target's id (0, 1, ...) or -1.
   There is no remove: a reload builds a new checker, passing each surviving
   target's current state as its start (HEALTH_START_UP/DOWN) so a reload
   neither flaps nor forgets. */
int health_add(struct health_checker *hc, const struct health_target *t);
bool health_is_up(const struct health_checker *hc, size_t id);
/* Probes done so far for id (tests, metrics). */
unsigned long health_probes(const struct health_checker *hc, size_t id);
/* Stops every probe and timer; no callback runs after this. */
void health_free(struct health_checker *hc);

#endif
