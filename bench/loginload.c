/* loginload: IMAP/POP3 login load for bench/run-logins and bench/run-soak.
 *
 *   loginload -p PORT [-H 127.0.0.1] [-P imap|pop3] [-c CONNS] [-d SECONDS]
 *             [-r LOGINS_PER_S] [-t TIMEOUT_S] (-u USER -w PASS | -f FILE)
 *
 * CONNS loops, each: connect -> greeting -> LOGIN (USER/PASS) -> LOGOUT (QUIT)
 * -> close, for SECONDS, then the logins in flight finish (bounded by the
 * timeout) and one line is printed:
 *
 *   LOGINLOAD proto=imap conns=16 duration_s=3.000 logins=1234 rate=411.3
 *     ok=1234 rejected=0 wrong=0 errors=0 timeouts=0 late=3
 *     p50_us=.. p90_us=.. p99_us=.. max_us=..
 *
 * FILE: one "user password ok|no" line each (whitespace-separated), used
 * round robin: "no" lines must be refused (NO / -ERR), "ok" lines accepted.
 * wrong = an answer other than the expected one (the number that must stay
 * 0), errors = closed connections or protocol errors, timeouts = no answer
 * within TIMEOUT_S. logins and rate count the logins answered before the
 * deadline; "late" ones (in flight at the deadline) are still checked.
 * Latency: connect to the login answer, from a log-linear histogram (1%).
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define MAX_CREDS 100000
#define HIST_BUCKETS 2000 /* 1.01^2000 us: beyond any timeout */

enum proto { IMAP, POP3 };
enum step { GREETING, USER_SENT, LOGIN_SENT, LOGOUT_SENT };

struct cred {
	char *user, *pass;
	bool expect_ok;
};

struct stats {
	uint64_t logins, ok, rejected, wrong, errors, timeouts, late;
	uint64_t hist[HIST_BUCKETS];
	uint64_t max_us;
};

struct load;

struct conn {
	struct load *load;
	struct bufferevent *bev;
	struct event *pace;
	const struct cred *cred;
	enum step step;
	struct timeval t0;
	bool answered;
};

struct load {
	struct event_base *base;
	struct sockaddr_storage addr;
	int addrlen;
	enum proto proto;
	int nconns, active;
	double duration, rate, timeout;
	struct cred *creds;
	size_t ncreds, next_cred;
	struct timeval start, deadline;
	uint64_t issued; /* logins started, for pacing */
	bool stopping;
	struct stats st;
	struct conn conns[MAX_CONNS];
};

static double elapsed(const struct timeval *a, const struct timeval *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_usec - a->tv_usec) / 1e6;
}

/* Not libevent's cached time: that comes from a coarse clock (ms steps). */
static void now(struct load *l, struct timeval *tv)
{
	gettimeofday(tv, NULL);
}

/* ---- latency histogram --------------------------------------------------- */

static void hist_add(struct stats *st, uint64_t us)
{
	int i = us <= 1 ? 0 : (int)(log((double)us) / log(1.01));

	st->hist[i < HIST_BUCKETS ? i : HIST_BUCKETS - 1]++;
	if (us > st->max_us)
		st->max_us = us;
}

static uint64_t hist_pct(const struct stats *st, double pct)
{
	uint64_t total = 0, seen = 0;

	for (int i = 0; i < HIST_BUCKETS; i++)
		total += st->hist[i];
	if (total == 0)
		return 0;
	for (int i = 0; i < HIST_BUCKETS; i++) {
		seen += st->hist[i];
		if ((double)seen >= pct / 100.0 * (double)total) {
			uint64_t v = (uint64_t)pow(1.01, i + 1);
			return v < st->max_us ? v : st->max_us;
		}
	}
	return st->max_us;
}

/* ---- one login ----------------------------------------------------------- */

static void start_login(struct conn *c);

/* This loop is done once the deadline passed: no new login starts. */
static bool loop_ends(struct conn *c)
{
	struct load *l = c->load;
	struct timeval t;

	now(l, &t);
	if (!l->stopping && timercmp(&t, &l->deadline, <))
		return false;
	l->stopping = true;
	if (--l->active == 0)
		event_base_loopbreak(l->base);
	return true;
}

static void finish(struct conn *c)
{
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (!loop_ends(c))
		start_login(c);
}

/* The login's answer: counted once, against the expected outcome. */
static void answered(struct conn *c, bool accepted)
{
	struct load *l = c->load;
	struct timeval t;

	c->answered = true;
	now(l, &t);
	if (timercmp(&t, &l->deadline, <)) {
		l->st.logins++;
		hist_add(&l->st, (uint64_t)(elapsed(&c->t0, &t) * 1e6));
	} else {
		l->st.late++;
	}
	if (accepted != c->cred->expect_ok) {
		l->st.wrong++;
		if (l->st.wrong <= 3)
			fprintf(stderr, "loginload: wrong answer for %s: %s\n", c->cred->user,
				accepted ? "accepted" : "refused");
	} else if (accepted) {
		l->st.ok++;
	} else {
		l->st.rejected++;
	}
}

static void fail(struct conn *c, const char *what, const char *line)
{
	struct load *l = c->load;

	/* after the answer, a close instead of a clean LOGOUT is not a failure
	   of the login (nginx closes after a refusal) */
	if (!c->answered) {
		l->st.errors++;
		if (l->st.errors <= 3)
			fprintf(stderr, "loginload: %s (%s)\n", what, line ? line : "-");
	}
	finish(c);
}

__attribute__((format(printf, 3, 4)))
static void send_line(struct conn *c, enum step next, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), fmt, ap);
	va_end(ap);
	c->step = next;
}

static void imap_line(struct conn *c, const char *line)
{
	switch (c->step) {
	case GREETING:
		if (strncmp(line, "* OK", 4) != 0)
			return fail(c, "bad greeting", line);
		return send_line(c, LOGIN_SENT, "a LOGIN \"%s\" \"%s\"\r\n", c->cred->user,
				 c->cred->pass);
	case LOGIN_SENT:
		if (line[0] == '*')
			return; /* untagged (CAPABILITY ...) */
		if (strncmp(line, "a OK", 4) == 0) {
			answered(c, true);
			return send_line(c, LOGOUT_SENT, "b LOGOUT\r\n");
		}
		if (strncmp(line, "a NO", 4) == 0) {
			answered(c, false);
			return finish(c);
		}
		return fail(c, "bad LOGIN answer", line);
	case LOGOUT_SENT:
		if (strncmp(line, "b OK", 4) == 0)
			return finish(c);
		return; /* * BYE */
	default:
		return fail(c, "unexpected line", line);
	}
}

static void pop3_line(struct conn *c, const char *line)
{
	bool ok = strncmp(line, "+OK", 3) == 0;

	switch (c->step) {
	case GREETING:
		if (!ok)
			return fail(c, "bad greeting", line);
		return send_line(c, USER_SENT, "USER %s\r\n", c->cred->user);
	case USER_SENT:
		if (!ok)
			return fail(c, "USER refused", line);
		return send_line(c, LOGIN_SENT, "PASS %s\r\n", c->cred->pass);
	case LOGIN_SENT:
		if (!ok && strncmp(line, "-ERR", 4) != 0)
			return fail(c, "bad PASS answer", line);
		answered(c, ok);
		if (!ok)
			return finish(c);
		return send_line(c, LOGOUT_SENT, "QUIT\r\n");
	case LOGOUT_SENT:
		return finish(c);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	char *line;

	while (c->bev == bev &&
	       (line = evbuffer_readln(bufferevent_get_input(bev), NULL, EVBUFFER_EOL_CRLF))) {
		if (c->load->proto == IMAP)
			imap_line(c, line);
		else
			pop3_line(c, line);
		free(line);
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT) {
		if (!c->answered)
			c->load->st.timeouts++;
		c->answered = true;
		return finish(c);
	}
	if (c->step == LOGOUT_SENT)
		return finish(c); /* closed after the logout: fine */
	fail(c, (what & BEV_EVENT_EOF) ? "closed by server" : "connection error",
	     evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void connect_now(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	struct load *l = c->load;
	struct timeval tmo;

	if (what != 0 && loop_ends(c))
		return; /* a paced slot after the deadline */
	now(l, &c->t0);
	c->step = GREETING;
	c->answered = false;
	c->bev = bufferevent_socket_new(l->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		l->st.errors++;
		l->stopping = true;
		return finish(c);
	}
	tmo.tv_sec = (time_t)l->timeout;
	tmo.tv_usec = (suseconds_t)((l->timeout - (double)tmo.tv_sec) * 1e6);
	bufferevent_set_timeouts(c->bev, &tmo, &tmo);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&l->addr, l->addrlen) < 0) {
		/* failed at once (e.g. no local port): retry in 10 ms, never recurse */
		struct timeval retry = { 0, 10000 };

		l->st.errors++;
		if (l->st.errors <= 3)
			fprintf(stderr, "loginload: connect failed (%s)\n", strerror(errno));
		bufferevent_free(c->bev);
		c->bev = NULL;
		evtimer_add(c->pace, &retry);
	}
}

/* Next login of this loop: at once, or at its slot when paced (-r). */
static void start_login(struct conn *c)
{
	struct load *l = c->load;
	struct timeval t, slot, wait;

	c->cred = &l->creds[l->next_cred++ % l->ncreds];
	if (l->rate <= 0) {
		connect_now(-1, 0, c);
		return;
	}
	double at = (double)l->issued++ / l->rate;
	slot.tv_sec = l->start.tv_sec + (time_t)at;
	slot.tv_usec = l->start.tv_usec + (suseconds_t)((at - floor(at)) * 1e6);
	if (slot.tv_usec >= 1000000) {
		slot.tv_sec++;
		slot.tv_usec -= 1000000;
	}
	now(l, &t);
	if (!timercmp(&slot, &t, >)) {
		connect_now(-1, 0, c);
		return;
	}
	timersub(&slot, &t, &wait);
	evtimer_add(c->pace, &wait);
}

/* ---- set-up and report --------------------------------------------------- */

static int load_creds(struct load *l, const char *path)
{
	FILE *f = fopen(path, "r");
	char u[512], p[1024], e[8];

	if (f == NULL) {
		perror(path);
		return -1;
	}
	l->creds = calloc(MAX_CREDS, sizeof(*l->creds));
	while (l->creds != NULL && l->ncreds < MAX_CREDS &&
	       fscanf(f, "%511s %1023s %7s", u, p, e) == 3) {
		struct cred *c = &l->creds[l->ncreds++];
		c->user = strdup(u);
		c->pass = strdup(p);
		c->expect_ok = strcmp(e, "ok") == 0;
	}
	fclose(f);
	return l->ncreds > 0 ? 0 : -1;
}

static void report(const struct load *l, double secs)
{
	const struct stats *s = &l->st;

	printf("LOGINLOAD proto=%s conns=%d duration_s=%.3f logins=%llu rate=%.1f ok=%llu "
	       "rejected=%llu wrong=%llu errors=%llu timeouts=%llu late=%llu p50_us=%llu "
	       "p90_us=%llu p99_us=%llu max_us=%llu\n",
	       l->proto == IMAP ? "imap" : "pop3", l->nconns, secs, (unsigned long long)s->logins,
	       (double)s->logins / secs, (unsigned long long)s->ok,
	       (unsigned long long)s->rejected, (unsigned long long)s->wrong,
	       (unsigned long long)s->errors, (unsigned long long)s->timeouts,
	       (unsigned long long)s->late, (unsigned long long)hist_pct(s, 50),
	       (unsigned long long)hist_pct(s, 90), (unsigned long long)hist_pct(s, 99),
	       (unsigned long long)s->max_us);
}

static void usage(void)
{
	fprintf(stderr, "usage: loginload -p PORT [-H ADDR] [-P imap|pop3] [-c CONNS] "
		"[-d SECONDS] [-r LOGINS_PER_S] [-t TIMEOUT_S] (-u USER -w PASS | -f FILE)\n");
	exit(2);
}

static void parse_args(struct load *l, int argc, char **argv)
{
	const char *host = "127.0.0.1", *user = NULL, *pass = NULL, *file = NULL;
	char spec[300];
	int opt, port = 0;

	while ((opt = getopt(argc, argv, "H:p:P:c:d:r:t:u:w:f:")) != -1) {
		switch (opt) {
		case 'H': host = optarg; break;
		case 'p': port = atoi(optarg); break;
		case 'P': l->proto = strcmp(optarg, "pop3") == 0 ? POP3 : IMAP; break;
		case 'c': l->nconns = atoi(optarg); break;
		case 'd': l->duration = atof(optarg); break;
		case 'r': l->rate = atof(optarg); break;
		case 't': l->timeout = atof(optarg); break;
		case 'u': user = optarg; break;
		case 'w': pass = optarg; break;
		case 'f': file = optarg; break;
		default: usage();
		}
	}
	/* bounded: a forgotten argument must not turn into an endless run */
	if (port <= 0 || port > 65535 || l->nconns < 1 || l->nconns > MAX_CONNS ||
	    !(l->duration > 0 && l->duration <= 86400) || !(l->timeout > 0 && l->timeout <= 600))
		usage();
	snprintf(spec, sizeof(spec), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	l->addrlen = sizeof(l->addr);
	if (evutil_parse_sockaddr_port(spec, (struct sockaddr *)&l->addr, &l->addrlen) < 0)
		usage();
	if (file != NULL) {
		if (load_creds(l, file) < 0)
			usage();
	} else if (user != NULL && pass != NULL) {
		static struct cred one;
		one = (struct cred){ (char *)user, (char *)pass, true };
		l->creds = &one;
		l->ncreds = 1;
	} else {
		usage();
	}
}

int main(int argc, char **argv)
{
	static struct load l = { .proto = IMAP, .nconns = 16, .duration = 3, .timeout = 30 };
	struct timeval end, dur, grace;

	parse_args(&l, argc, argv);
	l.base = event_base_new();
	if (l.base == NULL)
		return 1;
	gettimeofday(&l.start, NULL);
	dur.tv_sec = (time_t)l.duration;
	dur.tv_usec = (suseconds_t)((l.duration - (double)dur.tv_sec) * 1e6);
	timeradd(&l.start, &dur, &l.deadline);
	l.active = l.nconns;
	for (int i = 0; i < l.nconns; i++) {
		l.conns[i].load = &l;
		l.conns[i].pace = evtimer_new(l.base, connect_now, &l.conns[i]);
		start_login(&l.conns[i]);
	}
	/* hard bound: duration plus one timeout for the logins in flight */
	grace.tv_sec = (time_t)(l.duration + l.timeout + 1);
	grace.tv_usec = 0;
	event_base_loopexit(l.base, &grace);
	event_base_dispatch(l.base);
	gettimeofday(&end, NULL);
	report(&l, l.duration < elapsed(&l.start, &end) ? l.duration : elapsed(&l.start, &end));
	return 0;
}
