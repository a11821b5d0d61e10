#include "health.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- state machine ------------------------------------------------------ */

void health_state_init(struct health_state *s, enum health_start start)
{
	s->up = start == HEALTH_START_UP;
	s->streak = 0;
	s->pending = start == HEALTH_START_PENDING;
}

bool health_step(struct health_state *s, const struct health_params *p, bool ok)
{
	bool pending = s->pending;

	s->pending = false;
	if (ok == s->up) {
		/* a result agreeing with the state breaks any opposite streak */
		s->streak = 0;
		return false;
	}
	s->streak++;
	if (s->streak < (s->up ? p->fall : p->rise) && !(pending && ok))
		return false;
	s->up = ok;
	s->streak = 0;
	return true;
}

/* ---- greeting ------------------------------------------------------------ */

int health_proto_parse(const char *name)
{
	if (strcmp(name, "imap") == 0)
		return HEALTH_IMAP;
	if (strcmp(name, "pop3") == 0)
		return HEALTH_POP3;
	if (strcmp(name, "smtp") == 0)
		return HEALTH_SMTP;
	return -1;
}

/* What nginx itself expects before it logs in (ngx_mail_proxy_module):
   IMAP "* OK", POP3 "+OK", SMTP "220". A backend answering anything else
   ("* BYE", "-ERR", "421", "* PREAUTH") would fail nginx's login too. */
enum health_verdict health_greeting_check(enum health_proto proto, const char *buf,
					  size_t len)
{
	const char *want = proto == HEALTH_IMAP ? "* OK" : proto == HEALTH_POP3 ? "+OK" : "220";
	size_t wlen = strlen(want);
	size_t n = len < wlen ? len : wlen;

	if (memcmp(buf, want, n) != 0)
		return HEALTH_BAD;
	if (len < wlen)
		return HEALTH_NEED_MORE;
	if (proto != HEALTH_SMTP)
		return HEALTH_GOOD;
	/* "220 " or a multi-line "220-", not "2201" */
	if (len == wlen)
		return HEALTH_NEED_MORE;
	return buf[wlen] == ' ' || buf[wlen] == '-' || buf[wlen] == '\r' ? HEALTH_GOOD
									: HEALTH_BAD;
}

/* ---- checker -------------------------------------------------------------- */

struct target_rt {
	struct health_checker *hc;
	size_t id;
	struct health_target t;
	struct health_state st;
	struct event *tick;             /* persistent: one probe per interval */
	struct event *deadline;         /* the running probe's timeout */
	struct bufferevent *bev;        /* the running probe; NULL between probes */
	bool connected;                 /* the running probe's connection is up */
	bool waited;                    /* its deadline moved to greeting_timeout_ms */
	char buf[64];
	size_t len;
	unsigned long probes;
};

struct health_checker {
	struct event_base *base;
	health_change_fn *cb;
	void *ctx;
	struct target_rt **v;           /* pointers: events keep them as args */
	size_t count, cap;
};

static struct timeval ms_tv(unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };
	return tv;
}

static void probe_end(struct target_rt *tr, bool ok, const char *reason)
{
	bool first;

	if (tr->bev != NULL) {
		bufferevent_free(tr->bev);
		tr->bev = NULL;
	}
	event_del(tr->deadline);
	tr->probes++;
	/* a pending target's first verdict is news even when it stays down */
	first = tr->st.pending;
	if ((health_step(&tr->st, &tr->t.params, ok) || first) && tr->hc->cb != NULL)
		tr->hc->cb(tr->hc->ctx, tr->id, &tr->t, tr->st.up, reason);
}

static void probe_read(struct bufferevent *bev, void *arg)
{
	struct target_rt *tr = arg;
	size_t room = sizeof(tr->buf) - tr->len;
	enum health_verdict v;

	tr->len += bufferevent_read(bev, tr->buf + tr->len, room);
	v = health_greeting_check(tr->t.proto, tr->buf, tr->len);
	if (v == HEALTH_GOOD)
		probe_end(tr, true, "greeting ok");
	else if (v == HEALTH_BAD || tr->len == sizeof(tr->buf))
		probe_end(tr, false, "bad greeting");
}

static void probe_event(struct bufferevent *bev, short what, void *arg)
{
	struct target_rt *tr = arg;
	char reason[96];

	if (what & BEV_EVENT_CONNECTED) {
		tr->connected = true;
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		snprintf(reason, sizeof(reason), "connect: %s",
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		probe_end(tr, false, reason);
	} else {
		probe_end(tr, false, "closed");
	}
}

/* Connected but no greeting yet at timeout_ms: slow is not down, so wait
   for the greeting until greeting_timeout_ms (once). */
static bool probe_wait_longer(struct target_rt *tr)
{
	struct timeval tv;

	if (!tr->connected || tr->waited || tr->t.greeting_timeout_ms <= tr->t.timeout_ms)
		return false;
	tr->waited = true;
	tv = ms_tv(tr->t.greeting_timeout_ms - tr->t.timeout_ms);
	return event_add(tr->deadline, &tv) == 0;
}

static void probe_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct target_rt *tr = arg;

	if (probe_wait_longer(tr))
		return;
	probe_end(tr, false, "timeout");
}

static void probe_start(evutil_socket_t fd, short what, void *arg)
{
	struct target_rt *tr = arg;
	struct timeval tv = ms_tv(tr->t.timeout_ms);
	static const char proxy[] = "PROXY UNKNOWN\r\n";

	if (tr->bev != NULL)
		return;                 /* timeout > interval: the running probe decides */
	tr->len = 0;
	tr->connected = tr->waited = false;
	/* deferred callbacks: an immediate connect failure is reported from
	   the loop, never from inside bufferevent_socket_connect() */
	tr->bev = bufferevent_socket_new(tr->hc->base, -1,
					 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tr->bev == NULL) {
		probe_end(tr, false, "out of memory");
		return;
	}
	bufferevent_setcb(tr->bev, probe_read, NULL, probe_event, tr);
	bufferevent_enable(tr->bev, EV_READ);
	event_add(tr->deadline, &tv);
	if (bufferevent_socket_connect(tr->bev, (struct sockaddr *)&tr->t.addr,
				       (int)tr->t.addrlen) < 0) {
		char reason[96];
		snprintf(reason, sizeof(reason), "connect: %s",
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		probe_end(tr, false, reason);
		return;
	}
	if (tr->t.send_proxy)
		bufferevent_write(tr->bev, proxy, sizeof(proxy) - 1);
}

struct health_checker *health_new(struct event_base *base, health_change_fn *cb, void *ctx)
{
	struct health_checker *hc = calloc(1, sizeof(*hc));

	if (hc == NULL)
		return NULL;
	hc->base = base;
	hc->cb = cb;
	hc->ctx = ctx;
	return hc;
}

static void target_free(struct target_rt *tr)
{
	if (tr->bev != NULL)
		bufferevent_free(tr->bev);
	if (tr->tick != NULL)
		event_free(tr->tick);
	if (tr->deadline != NULL)
		event_free(tr->deadline);
	free(tr);
}

static bool target_valid(const struct health_target *t)
{
	return t->interval_ms >= 1 && t->timeout_ms >= 1 && t->params.rise >= 1 &&
	       t->params.fall >= 1 && t->addrlen > 0 && t->addrlen <= sizeof(t->addr);
}

int health_add(struct health_checker *hc, const struct health_target *t)
{
	struct target_rt *tr;
	struct timeval tv = ms_tv(t->interval_ms);

	if (!target_valid(t))
		return -1;
	if (hc->count == hc->cap) {
		size_t cap = hc->cap ? hc->cap * 2 : 4;
		struct target_rt **v = realloc(hc->v, cap * sizeof(*v));
		if (v == NULL)
			return -1;
		hc->v = v;
		hc->cap = cap;
	}
	tr = calloc(1, sizeof(*tr));
	if (tr == NULL)
		return -1;
	tr->hc = hc;
	tr->id = hc->count;
	tr->t = *t;
	health_state_init(&tr->st, t->start);
	tr->tick = event_new(hc->base, -1, EV_PERSIST, probe_start, tr);
	tr->deadline = evtimer_new(hc->base, probe_timeout, tr);
	if (tr->tick == NULL || tr->deadline == NULL || event_add(tr->tick, &tv) < 0) {
		target_free(tr);
		return -1;
	}
	/* first probe now, not one interval after start-up */
	event_active(tr->tick, EV_TIMEOUT, 0);
	hc->v[hc->count++] = tr;
	return (int)tr->id;
}

bool health_is_up(const struct health_checker *hc, size_t id)
{
	return id < hc->count && hc->v[id]->st.up;
}

unsigned long health_probes(const struct health_checker *hc, size_t id)
{
	return id < hc->count ? hc->v[id]->probes : 0;
}

void health_free(struct health_checker *hc)
{
	if (hc == NULL)
		return;
	for (size_t i = 0; i < hc->count; i++)
		target_free(hc->v[i]);
	free(hc->v);
	free(hc);
}
