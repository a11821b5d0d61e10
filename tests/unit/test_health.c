/* Health checks: the rise/fall state machine and the greeting judge as pure
   functions; then the libevent checker against small greeting servers on
   127.0.0.1 in the same event loop (good, closed, wrong greeting, silent),
   every run bounded in time. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "health.h"

/* ---- state machine ------------------------------------------------------ */

/* Feeds results ("+" good, "-" bad); returns the states after each as a
   string of "U"/"D", and counts changes. */
static void feed(struct health_state *s, const struct health_params *p, const char *in,
		 char *out, int *changes)
{
	*changes = 0;
	for (; *in != '\0'; in++, out++) {
		*changes += health_step(s, p, *in == '+');
		*out = s->up ? 'U' : 'D';
	}
	*out = '\0';
}

static void test_state_machine(void **state)
{
	struct health_params p = { .rise = 2, .fall = 3 };
	struct health_state s;
	char out[32];
	int changes;

	health_state_init(&s, HEALTH_START_DOWN);
	feed(&s, &p, "+-++--+---++", out, &changes);
	assert_string_equal(out, "DDDUUUUUUDDU");
	assert_int_equal(changes, 3);
	/* one good result between bad ones resets the fall count */
	feed(&s, &p, "--+---", out, &changes);
	assert_string_equal(out, "UUUUUD");

	health_state_init(&s, HEALTH_START_UP);
	feed(&s, &p, "--+--+---", out, &changes);
	assert_string_equal(out, "UUUUUUUUD");
	assert_int_equal(changes, 1);

	/* pending: the first good probe is enough, only the first */
	health_state_init(&s, HEALTH_START_PENDING);
	feed(&s, &p, "+", out, &changes);
	assert_string_equal(out, "U");
	health_state_init(&s, HEALTH_START_PENDING);
	feed(&s, &p, "-+++", out, &changes);
	assert_string_equal(out, "DDUU");

	/* rise = fall = 1: follows every result */
	p.rise = p.fall = 1;
	health_state_init(&s, HEALTH_START_DOWN);
	feed(&s, &p, "+-+-", out, &changes);
	assert_string_equal(out, "UDUD");
	assert_int_equal(changes, 4);
}

static void test_greeting(void **state)
{
#define CHECK(proto, text, want) \
	assert_int_equal(health_greeting_check(proto, text, strlen(text)), want)
	CHECK(HEALTH_IMAP, "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", HEALTH_GOOD);
	CHECK(HEALTH_IMAP, "* OK", HEALTH_GOOD);
	CHECK(HEALTH_IMAP, "* O", HEALTH_NEED_MORE);
	CHECK(HEALTH_IMAP, "", HEALTH_NEED_MORE);
	CHECK(HEALTH_IMAP, "* BYE shutting down\r\n", HEALTH_BAD);
	CHECK(HEALTH_IMAP, "* PREAUTH\r\n", HEALTH_BAD);
	CHECK(HEALTH_IMAP, "+OK\r\n", HEALTH_BAD);
	CHECK(HEALTH_POP3, "+OK Dovecot ready.\r\n", HEALTH_GOOD);
	CHECK(HEALTH_POP3, "-ERR\r\n", HEALTH_BAD);
	CHECK(HEALTH_POP3, "+O", HEALTH_NEED_MORE);
	CHECK(HEALTH_SMTP, "220 mx ESMTP\r\n", HEALTH_GOOD);
	CHECK(HEALTH_SMTP, "220-mx ESMTP\r\n", HEALTH_GOOD);
	CHECK(HEALTH_SMTP, "220", HEALTH_NEED_MORE);
	CHECK(HEALTH_SMTP, "2201 x\r\n", HEALTH_BAD);
	CHECK(HEALTH_SMTP, "421 4.3.2 busy\r\n", HEALTH_BAD);
	CHECK(HEALTH_SMTP, "* OK\r\n", HEALTH_BAD);
#undef CHECK
	assert_int_equal(health_proto_parse("imap"), HEALTH_IMAP);
	assert_int_equal(health_proto_parse("pop3"), HEALTH_POP3);
	assert_int_equal(health_proto_parse("smtp"), HEALTH_SMTP);
	assert_int_equal(health_proto_parse("http"), -1);
}

/* ---- greeting servers ------------------------------------------------------ */

enum mode { GOOD, WRONG, SILENT, PROXY_FIRST, SLOW };

#define MAX_CONNS 128

struct gserver {
	struct evconnlistener *l;
	enum mode mode;
	const char *greeting;
	struct sockaddr_in sin;
	evutil_socket_t fds[MAX_CONNS];
	struct event *ev[MAX_CONNS];    /* PROXY_FIRST: waits for the header */
	int n;
	int proxy_seen;
	unsigned delay_ms;              /* SLOW: greets this long after accepting */
};

static void send_greeting(evutil_socket_t fd, const char *text)
{
	ssize_t w = write(fd, text, strlen(text));

	assert_int_equal(w, (ssize_t)strlen(text));
}

/* PROXY_FIRST: greets only once "PROXY UNKNOWN\r\n" arrived (whole, on
   loopback), like a haproxy=yes listener. */
static void on_proxy_line(evutil_socket_t fd, short what, void *arg)
{
	struct gserver *gs = arg;
	char buf[64];
	ssize_t r = read(fd, buf, sizeof(buf) - 1);

	if (r <= 0)
		return;
	buf[r] = '\0';
	if (strcmp(buf, "PROXY UNKNOWN\r\n") == 0) {
		gs->proxy_seen++;
		send_greeting(fd, gs->greeting);
	}
}

static void on_slow_greet(evutil_socket_t fd, short what, void *arg)
{
	struct gserver *gs = arg;

	send_greeting(fd, gs->greeting);
}

/* Connections stay open until the server is freed: a close racing with the
   client's PROXY bytes could turn into a reset. */
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct gserver *gs = arg;

	if (gs->n == MAX_CONNS) {
		close(fd);
		return;
	}
	gs->fds[gs->n] = fd;
	gs->ev[gs->n] = NULL;
	if (gs->mode == GOOD || gs->mode == WRONG) {
		send_greeting(fd, gs->greeting);
	} else if (gs->mode == PROXY_FIRST) {
		gs->ev[gs->n] = event_new(evconnlistener_get_base(l), fd, EV_READ | EV_PERSIST,
					  on_proxy_line, gs);
		event_add(gs->ev[gs->n], NULL);
	} else if (gs->mode == SLOW) {
		struct timeval tv = { .tv_sec = gs->delay_ms / 1000,
				      .tv_usec = (gs->delay_ms % 1000) * 1000 };
		gs->ev[gs->n] = event_new(evconnlistener_get_base(l), fd, 0, on_slow_greet, gs);
		event_add(gs->ev[gs->n], &tv);
	}
	gs->n++;
}

static void gserver_start(struct event_base *base, struct gserver *gs, enum mode mode,
			  const char *greeting)
{
	socklen_t len = sizeof(gs->sin);

	memset(gs, 0, sizeof(*gs));
	gs->mode = mode;
	gs->greeting = greeting;
	gs->sin.sin_family = AF_INET;
	gs->sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	gs->l = evconnlistener_new_bind(base, on_accept, gs,
					LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
					(struct sockaddr *)&gs->sin, sizeof(gs->sin));
	assert_non_null(gs->l);
	assert_int_equal(getsockname(evconnlistener_get_fd(gs->l),
				     (struct sockaddr *)&gs->sin, &len), 0);
}

/* Stops listening (connects are refused from now on) and drops the
   connections. Safe to call twice. */
static void gserver_stop(struct gserver *gs)
{
	if (gs->l != NULL)
		evconnlistener_free(gs->l);
	gs->l = NULL;
	for (int i = 0; i < gs->n; i++) {
		if (gs->ev[i] != NULL)
			event_free(gs->ev[i]);
		close(gs->fds[i]);
	}
	gs->n = 0;
}

/* ---- checker runs ---------------------------------------------------------- */

#define MAX_CHANGES 16

struct run {
	struct health_checker *hc;
	struct event_base *base;
	struct gserver *stop_on_up;     /* stop this server when a target comes up */
	int nchanges;
	struct {
		size_t id;
		bool up;
		unsigned long probes;   /* probes done when the change happened */
		char reason[96];
	} changes[MAX_CHANGES];
	int want_changes;               /* leave the loop once this many happened */
};

static void on_change(void *ctx, size_t id, const struct health_target *t, bool up,
		      const char *reason)
{
	struct run *r = ctx;

	assert_true(r->nchanges < MAX_CHANGES);
	r->changes[r->nchanges].id = id;
	r->changes[r->nchanges].up = up;
	r->changes[r->nchanges].probes = health_probes(r->hc, id);
	snprintf(r->changes[r->nchanges].reason, sizeof(r->changes[0].reason), "%s", reason);
	r->nchanges++;
	if (up && r->stop_on_up != NULL)
		gserver_stop(r->stop_on_up);
	if (r->nchanges >= r->want_changes)
		event_base_loopbreak(r->base);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the loop until want_changes changes, at most max_s seconds. */
static double run_loop(struct run *r, double max_s)
{
	struct timeval tv = { .tv_sec = (time_t)max_s,
			      .tv_usec = (suseconds_t)((max_s - (time_t)max_s) * 1e6) };
	double t0 = now_s();

	event_base_loopexit(r->base, &tv);
	event_base_dispatch(r->base);
	return now_s() - t0;
}

static struct health_target target(const struct gserver *gs, enum health_proto proto,
				   unsigned rise, unsigned fall, enum health_start start)
{
	struct health_target t;

	memset(&t, 0, sizeof(t));
	memcpy(&t.addr, &gs->sin, sizeof(gs->sin));
	t.addrlen = sizeof(gs->sin);
	t.proto = proto;
	snprintf(t.name, sizeof(t.name), "test 127.0.0.1:%u", ntohs(gs->sin.sin_port));
	t.interval_ms = 20;
	t.timeout_ms = 500;
	t.params.rise = rise;
	t.params.fall = fall;
	t.start = start;
	return t;
}

static void run_init(struct run *r, int want_changes)
{
	memset(r, 0, sizeof(*r));
	r->base = event_base_new();
	assert_non_null(r->base);
	r->hc = health_new(r->base, on_change, r);
	assert_non_null(r->hc);
	r->want_changes = want_changes;
}

static void run_free(struct run *r)
{
	health_free(r->hc);
	event_base_free(r->base);
}

/* Good server: up after exactly rise probes; then the server goes away
   (closed from the "up" callback): down after exactly fall more probes. */
static void test_up_then_closed(void **state)
{
	struct run r;
	struct gserver gs;
	struct health_target t;

	run_init(&r, 2);
	gserver_start(r.base, &gs, GOOD, "* OK [CAPABILITY IMAP4rev1] ready\r\n");
	t = target(&gs, HEALTH_IMAP, 3, 2, HEALTH_START_DOWN);
	r.stop_on_up = &gs;
	assert_int_equal(health_add(r.hc, &t), 0);
	assert_false(health_is_up(r.hc, 0));
	double took = run_loop(&r, 5);
	print_message("up then closed: %d changes in %.3f s\n", r.nchanges, took);
	assert_int_equal(r.nchanges, 2);
	assert_true(r.changes[0].up);
	assert_int_equal(r.changes[0].probes, 3);
	assert_string_equal(r.changes[0].reason, "greeting ok");
	assert_false(r.changes[1].up);
	assert_int_equal(r.changes[1].probes, 5);
	print_message("down reason: %s\n", r.changes[1].reason);
	assert_memory_equal(r.changes[1].reason, "connect: ", 9);
	assert_false(health_is_up(r.hc, 0));
	run_free(&r);
	gserver_stop(&gs);
}

/* One server per protocol, all good: all three come up. */
static void test_three_protocols(void **state)
{
	struct run r;
	struct gserver gs[3];
	static const char *const greet[3] = { "* OK hi\r\n", "+OK hi\r\n", "220 mx ESMTP\r\n" };
	struct health_target t;

	run_init(&r, 3);
	for (int i = 0; i < 3; i++) {
		gserver_start(r.base, &gs[i], GOOD, greet[i]);
		t = target(&gs[i], (enum health_proto)i, 2, 2, HEALTH_START_DOWN);
		assert_int_equal(health_add(r.hc, &t), i);
	}
	run_loop(&r, 5);
	assert_int_equal(r.nchanges, 3);
	for (size_t i = 0; i < 3; i++)
		assert_true(health_is_up(r.hc, i));
	run_free(&r);
	for (int i = 0; i < 3; i++)
		gserver_stop(&gs[i]);
}

/* Wrong greeting (a POP3 server where IMAP was expected): down. */
static void test_wrong_greeting(void **state)
{
	struct run r;
	struct gserver gs;
	struct health_target t;

	run_init(&r, 1);
	gserver_start(r.base, &gs, WRONG, "+OK POP3 here\r\n");
	t = target(&gs, HEALTH_IMAP, 2, 2, HEALTH_START_UP);
	assert_int_equal(health_add(r.hc, &t), 0);
	assert_true(health_is_up(r.hc, 0));
	run_loop(&r, 5);
	assert_int_equal(r.nchanges, 1);
	assert_false(r.changes[0].up);
	assert_int_equal(r.changes[0].probes, 2);
	assert_string_equal(r.changes[0].reason, "bad greeting");
	run_free(&r);
	gserver_stop(&gs);
}

/* A server that accepts and never speaks: the probe times out. */
static void test_silent_timeout(void **state)
{
	struct run r;
	struct gserver gs;
	struct health_target t;

	run_init(&r, 1);
	gserver_start(r.base, &gs, SILENT, NULL);
	t = target(&gs, HEALTH_SMTP, 1, 2, HEALTH_START_UP);
	t.timeout_ms = 150;
	t.interval_ms = 50;     /* shorter than the timeout: probes never overlap */
	assert_int_equal(health_add(r.hc, &t), 0);
	double took = run_loop(&r, 5);
	print_message("silent server: down after %.3f s\n", took);
	assert_int_equal(r.nchanges, 1);
	assert_false(r.changes[0].up);
	assert_string_equal(r.changes[0].reason, "timeout");
	assert_int_equal(r.changes[0].probes, 2);
	assert_true(took >= 0.29 && took < 2.0);
	run_free(&r);
	gserver_stop(&gs);
}

/* A server that accepts at once but greets later than the timeout (a busy
   machine) still serves logins: with greeting_timeout_ms the late greeting
   counts as a good probe, and the backend never goes down. Without it the
   same server is down after fall probes. */
static void test_slow_greeting_is_not_down(void **state)
{
	struct run r;
	struct gserver gs;
	struct health_target t;

	run_init(&r, 1);
	gserver_start(r.base, &gs, SLOW, "* OK slow\r\n");
	gs.delay_ms = 300;
	t = target(&gs, HEALTH_IMAP, 1, 2, HEALTH_START_UP);
	t.timeout_ms = 100;
	t.interval_ms = 50;
	t.greeting_timeout_ms = 1000;
	assert_int_equal(health_add(r.hc, &t), 0);
	run_loop(&r, 1.5);
	assert_int_equal(r.nchanges, 0);
	assert_true(health_is_up(r.hc, 0));
	assert_true(health_probes(r.hc, 0) >= 3);
	run_free(&r);
	gserver_stop(&gs);

	/* the greeting later than greeting_timeout_ms: a failed probe */
	run_init(&r, 1);
	gserver_start(r.base, &gs, SLOW, "* OK slow\r\n");
	gs.delay_ms = 2000;
	t = target(&gs, HEALTH_IMAP, 1, 2, HEALTH_START_UP);
	t.timeout_ms = 100;
	t.interval_ms = 50;
	t.greeting_timeout_ms = 200;
	assert_int_equal(health_add(r.hc, &t), 0);
	run_loop(&r, 3);
	assert_int_equal(r.nchanges, 1);
	assert_false(r.changes[0].up);
	assert_string_equal(r.changes[0].reason, "timeout");
	run_free(&r);
	gserver_stop(&gs);
}

/* send_proxy: a haproxy=yes style server greets only after the header. */
static void test_proxy_header(void **state)
{
	struct run r;
	struct gserver gs;
	struct health_target t;

	run_init(&r, 1);
	gserver_start(r.base, &gs, PROXY_FIRST, "+OK ready\r\n");
	t = target(&gs, HEALTH_POP3, 2, 1, HEALTH_START_DOWN);
	t.send_proxy = true;
	assert_int_equal(health_add(r.hc, &t), 0);
	run_loop(&r, 5);
	assert_int_equal(r.nchanges, 1);
	assert_true(r.changes[0].up);
	assert_true(gs.proxy_seen >= 2);
	run_free(&r);
	gserver_stop(&gs);
}

/* Pending start: the first good probe is enough; nothing listening: it
   stays down, reported once (the first verdict), and freeing mid-probe is
   clean. */
static void test_pending_and_free(void **state)
{
	struct run r;
	struct gserver gs, dead;
	struct health_target t;

	run_init(&r, 2);
	gserver_start(r.base, &gs, GOOD, "* OK\r\n");
	gserver_start(r.base, &dead, GOOD, "* OK\r\n");
	gserver_stop(&dead);                    /* its port now refuses */
	t = target(&gs, HEALTH_IMAP, 5, 5, HEALTH_START_PENDING);
	assert_int_equal(health_add(r.hc, &t), 0);
	t = target(&dead, HEALTH_IMAP, 5, 5, HEALTH_START_PENDING);
	assert_int_equal(health_add(r.hc, &t), 1);
	run_loop(&r, 5);
	assert_int_equal(r.nchanges, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(r.changes[i].probes, 1);
		assert_int_equal(r.changes[i].up, r.changes[i].id == 0);
	}
	assert_false(health_is_up(r.hc, 1));

	/* invalid targets are refused */
	t.interval_ms = 0;
	assert_int_equal(health_add(r.hc, &t), -1);
	t.interval_ms = 10;
	t.params.rise = 0;
	assert_int_equal(health_add(r.hc, &t), -1);
	run_free(&r);                           /* probes may be in flight */
	gserver_stop(&gs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_machine),
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_up_then_closed),
		cmocka_unit_test(test_three_protocols),
		cmocka_unit_test(test_wrong_greeting),
		cmocka_unit_test(test_silent_timeout),
		cmocka_unit_test(test_slow_greeting_is_not_down),
		cmocka_unit_test(test_proxy_header),
		cmocka_unit_test(test_pending_and_free),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
