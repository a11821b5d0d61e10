#include "store.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <sodium.h>

#include "store_tls.h"

enum store_state { ST_IDLE, ST_CONNECTING, ST_UP, ST_DOWN };

/* One command in flight. Redis answers in order, so the list is a FIFO and
   its head has the earliest deadline. */
struct store_req {
	struct store *s;
	const redisAsyncContext *ac;    /* the connection it went out on */
	store_reply_fn *fn;             /* NULL: an internal hello command */
	void *ctx;
	int64_t deadline;               /* monotonic ms */
	struct store_req *next;
};

struct store {
	struct event_base *base;
	struct dglog *log;
	/* settings, owned copies */
	struct cluster_addr addr;
	char *user, *password;
	char *tls_ca, *tls_cert, *tls_key, *tls_name;
	unsigned timeout_ms, connect_timeout_ms, retry_ms, max_pending;
	char url[320];
	struct store_tls *tls;

	redisAsyncContext *ac;          /* NULL: not connected */
	redisAsyncContext *doomed;      /* dropped, freed from the loop next */
	enum store_state state;
	bool down_logged;               /* "state=down" said since the last "up" */
	int64_t connect_deadline;
	struct event *timer;            /* deadlines: connect, then the FIFO head */
	struct event *retry;            /* reconnect while down */
	struct event *reaper;           /* frees s->doomed outside hiredis callbacks */
	struct store_req *head, *tail;
	size_t pending;
	store_up_fn *on_up;
	void *on_up_ctx;
	struct store_stats stats;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void log_state(struct store *s, int prio, const char *state, const char *error)
{
	struct kvline kv;

	kv_init(&kv, "cluster");
	kv_add(&kv, "store", s->url);
	kv_add(&kv, "state", state);
	if (error != NULL)
		kv_add(&kv, "error", error);
	if (strcmp(state, "down") == 0)
		kv_add(&kv, "fallback", "local state and hashing until the store is back");
	dglog(s->log, prio, "%s", kv_str(&kv));
}

/* ---- deadlines ---------------------------------------------------------------- */

static void arm_timer(struct store *s)
{
	int64_t deadline = -1, wait;
	struct timeval tv;

	if (s->state == ST_CONNECTING)
		deadline = s->connect_deadline;
	if (s->head != NULL && (deadline < 0 || s->head->deadline < deadline))
		deadline = s->head->deadline;
	if (deadline < 0) {
		evtimer_del(s->timer);
		return;
	}
	wait = deadline - now_ms();
	if (wait < 0)
		wait = 0;
	tv.tv_sec = (time_t)(wait / 1000);
	tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
	evtimer_add(s->timer, &tv);
}

static void schedule_retry(struct store *s)
{
	struct timeval tv = { .tv_sec = (time_t)(s->retry_ms / 1000),
			      .tv_usec = (suseconds_t)(s->retry_ms % 1000) * 1000 };

	evtimer_add(s->retry, &tv);
}

/* The connection is given up (why: for the log, NULL when not a fault).
   Every command in flight is answered with NULL when it is freed, on the
   next loop turn: never inside one of hiredis's own callbacks. */
static void drop_connection(struct store *s, const char *why)
{
	bool was_up = s->state == ST_UP;

	store_tls_detach(s->tls);
	if (s->ac != NULL) {
		if (s->doomed != NULL)
			redisAsyncFree(s->doomed);      /* not reached in practice */
		s->doomed = s->ac;
		s->ac = NULL;
		event_active(s->reaper, 0, 0);
	}
	if (why == NULL) {
		s->state = ST_IDLE;
		return;
	}
	s->state = ST_DOWN;
	s->stats.errors++;
	if (was_up)
		s->stats.downs++;
	if (!s->down_logged) {
		log_state(s, LOG_WARNING, "down", why);
		s->down_logged = true;
	}
	evtimer_del(s->timer);
	schedule_retry(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	int64_t now = now_ms();
	char why[96];

	(void)fd;
	(void)what;
	if (s->state == ST_CONNECTING && now >= s->connect_deadline) {
		snprintf(why, sizeof(why), "no answer within connect_timeout (%u ms)",
			 s->connect_timeout_ms);
		drop_connection(s, why);
		return;
	}
	if (s->head != NULL && s->head->ac == s->ac && now >= s->head->deadline) {
		snprintf(why, sizeof(why), "no answer within timeout (%u ms)", s->timeout_ms);
		drop_connection(s, why);
		return;
	}
	arm_timer(s);
}

static void on_reaper(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	redisAsyncContext *ac = s->doomed;

	(void)fd;
	(void)what;
	s->doomed = NULL;
	if (ac != NULL)
		redisAsyncFree(ac);     /* answers its commands in flight with NULL */
}

/* ---- commands ----------------------------------------------------------------- */

static void unlink_req(struct store *s, struct store_req *r)
{
	struct store_req **pp = &s->head, *prev = NULL;

	while (*pp != NULL && *pp != r) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp == NULL)
		return;
	*pp = r->next;
	if (s->tail == r)
		s->tail = prev;
	s->pending--;
}

static void on_hello(struct store *s, const redisAsyncContext *ac, const redisReply *reply,
		     bool last);

/* hiredis calls this once per command: with the reply, or NULL when the
   connection goes (lost, timed out, freed). */
static void on_reply(redisAsyncContext *c, void *r_, void *privdata)
{
	struct store_req *req = privdata;
	struct store *s = req->s;
	const redisReply *reply = r_;

	(void)c;
	unlink_req(s, req);
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR && req->fn != NULL)
		s->stats.errors++;
	if (req->fn != NULL)
		req->fn(req->ctx, reply);
	else
		on_hello(s, req->ac, reply, req->ctx != NULL);
	free(req);
}

static int send_req(struct store *s, store_reply_fn *fn, void *ctx, int64_t deadline,
		    int argc, const char **argv, const size_t *argvlen)
{
	struct store_req *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return -1;
	req->s = s;
	req->ac = s->ac;
	req->fn = fn;
	req->ctx = ctx;
	req->deadline = deadline;
	if (redisAsyncCommandArgv(s->ac, on_reply, req, argc, argv, argvlen) != REDIS_OK) {
		free(req);
		return -1;
	}
	if (s->tail != NULL)
		s->tail->next = req;
	else
		s->head = req;
	s->tail = req;
	s->pending++;
	if (s->head == req)
		arm_timer(s);
	return 0;
}

int store_command(struct store *s, store_reply_fn *fn, void *ctx, int argc,
		  const char **argv, const size_t *argvlen)
{
	if (s == NULL || s->state != ST_UP || s->ac == NULL || s->pending >= s->max_pending ||
	    send_req(s, fn, ctx, now_ms() + (int64_t)s->timeout_ms, argc, argv, argvlen) < 0) {
		if (s != NULL)
			s->stats.refused++;
		return -1;
	}
	s->stats.commands++;
	return 0;
}

/* ---- connecting --------------------------------------------------------------- */

/* AUTH and SELECT's answers, then PING's (last: ctx non-NULL): up. */
static void on_hello(struct store *s, const redisAsyncContext *ac, const redisReply *reply,
		     bool last)
{
	char why[160];

	if (ac != s->ac || s->state != ST_CONNECTING || reply == NULL)
		return;         /* an old connection's, or lost: on_disconnect says */
	if (reply->type == REDIS_REPLY_ERROR) {
		/* e.g. "WRONGPASS invalid username-password pair", "NOAUTH ..."
		   (never contains the password) */
		snprintf(why, sizeof(why), "%.150s", reply->str);
		drop_connection(s, why);
		return;
	}
	if (!last)
		return;
	s->state = ST_UP;
	s->down_logged = false;
	evtimer_del(s->retry);
	arm_timer(s);
	log_state(s, LOG_INFO, "up", NULL);
	if (s->on_up != NULL)
		s->on_up(s->on_up_ctx);
}

/* hiredis's reason for a failed connection, or TLS's when the certificate
   did not verify (hiredis then says only "Success", from errno 0). */
static const char *failure_text(const struct store *s, const redisAsyncContext *c,
				const char *fallback, char *buf, size_t len)
{
	if (store_tls_explain(s->tls, buf, len))
		return buf;
	return c->errstr[0] != '\0' ? c->errstr : fallback;
}

static void on_connect(const redisAsyncContext *c, int status)
{
	struct store *s = c->data;
	char buf[160];

	if (c != s->ac)
		return;
	if (status != REDIS_OK) {
		/* hiredis frees the context after this call */
		s->ac = NULL;
		drop_connection(s, failure_text(s, c, "connect failed", buf, sizeof(buf)));
	}
}

static void on_disconnect(const redisAsyncContext *c, int status)
{
	struct store *s = c->data;
	char buf[160];

	(void)status;
	if (c == s->doomed) {
		s->doomed = NULL;       /* hiredis freed it first */
		return;
	}
	if (c != s->ac)
		return;
	s->ac = NULL;               /* hiredis frees it after this call */
	drop_connection(s, failure_text(s, c, "connection closed by the store", buf,
					sizeof(buf)));
}

static void send_hello(struct store *s)
{
	char db[16];
	const char *argv[3];
	size_t lens[3];
	int n = 0;

	if (s->password != NULL) {
		argv[n] = "AUTH";
		lens[n++] = 4;
		if (s->user != NULL) {
			argv[n] = s->user;
			lens[n] = strlen(s->user);
			n++;
		}
		argv[n] = s->password;
		lens[n] = strlen(s->password);
		n++;
		(void)send_req(s, NULL, NULL, s->connect_deadline, n, argv, lens);
	}
	if (s->addr.db != 0) {
		snprintf(db, sizeof(db), "%u", s->addr.db);
		argv[0] = "SELECT";
		argv[1] = db;
		lens[0] = 6;
		lens[1] = strlen(db);
		(void)send_req(s, NULL, NULL, s->connect_deadline, 2, argv, lens);
	}
	argv[0] = "PING";
	lens[0] = 4;
	if (send_req(s, NULL, s, s->connect_deadline, 1, argv, lens) < 0)
		drop_connection(s, "out of memory");
}

static void start_connect(struct store *s)
{
	redisAsyncContext *ac;
	char why[160];

	ac = s->addr.transport == CLUSTER_UNIX ? redisAsyncConnectUnix(s->addr.host)
					       : redisAsyncConnect(s->addr.host, (int)s->addr.port);
	if (ac == NULL || ac->err) {
		snprintf(why, sizeof(why), "%.150s", ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		drop_connection(s, why);
		return;
	}
	if (s->tls != NULL && store_tls_attach(s->tls, &ac->c, s->addr.host, why, sizeof(why)) < 0) {
		redisAsyncFree(ac);
		drop_connection(s, why);
		return;
	}
	ac->data = s;
	if (redisLibeventAttach(ac, s->base) != REDIS_OK) {
		redisAsyncFree(ac);
		drop_connection(s, "cannot attach to the event loop");
		return;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	s->ac = ac;
	s->state = ST_CONNECTING;
	s->connect_deadline = now_ms() + (int64_t)s->connect_timeout_ms;
	send_hello(s);
	if (s->ac != NULL)
		arm_timer(s);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;

	(void)fd;
	(void)what;
	if (s->state == ST_DOWN)
		start_connect(s);
}

/* ---- life cycle --------------------------------------------------------------- */

struct store *store_new(struct event_base *base, struct dglog *log)
{
	struct store *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->base = base;
	s->log = log;
	s->timer = evtimer_new(base, on_timer, s);
	s->retry = evtimer_new(base, on_retry, s);
	s->reaper = event_new(base, -1, 0, on_reaper, s);
	if (s->timer == NULL || s->retry == NULL || s->reaper == NULL) {
		store_free(s);
		return NULL;
	}
	return s;
}

static void free_secret(char **p)
{
	if (*p != NULL) {
		sodium_memzero(*p, strlen(*p));
		free(*p);
		*p = NULL;
	}
}

static void free_settings(struct store *s)
{
	free(s->user);
	free_secret(&s->password);
	free(s->tls_ca);
	free(s->tls_cert);
	free(s->tls_key);
	free(s->tls_name);
	s->user = s->tls_ca = s->tls_cert = s->tls_key = s->tls_name = NULL;
	store_tls_free(s->tls);
	s->tls = NULL;
}

static bool same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Whether cfg names another store or other credentials than the current. */
static bool connection_changed(const struct store *s, const struct store_config *cfg)
{
	return s->state == ST_IDLE || memcmp(&s->addr, &cfg->addr, sizeof(s->addr)) != 0 ||
	       !same(s->user, cfg->user) || !same(s->password, cfg->password) ||
	       !same(s->tls_ca, cfg->tls_ca_file) || !same(s->tls_cert, cfg->tls_cert_file) ||
	       !same(s->tls_key, cfg->tls_key_file) || !same(s->tls_name, cfg->tls_server_name);
}

static char *dup_or_null(const char *v, bool *oom)
{
	char *c;

	if (v == NULL)
		return NULL;
	if ((c = strdup(v)) == NULL)
		*oom = true;
	return c;
}

int store_configure(struct store *s, const struct store_config *cfg, char *err, size_t errlen)
{
	struct store_tls *tls = NULL;
	bool oom = false;

	s->timeout_ms = cfg->timeout_ms;
	s->connect_timeout_ms = cfg->connect_timeout_ms;
	s->retry_ms = cfg->retry_ms;
	s->max_pending = cfg->max_pending;
	if (!connection_changed(s, cfg))
		return 0;
	if (cfg->addr.transport == CLUSTER_TLS &&
	    (tls = store_tls_new(cfg->tls_ca_file, cfg->tls_cert_file, cfg->tls_key_file,
				 cfg->tls_server_name, err, errlen)) == NULL)
		return -1;
	drop_connection(s, NULL);
	evtimer_del(s->retry);
	evtimer_del(s->timer);
	free_settings(s);
	s->tls = tls;
	s->addr = cfg->addr;
	s->user = dup_or_null(cfg->user, &oom);
	s->password = dup_or_null(cfg->password, &oom);
	s->tls_ca = dup_or_null(cfg->tls_ca_file, &oom);
	s->tls_cert = dup_or_null(cfg->tls_cert_file, &oom);
	s->tls_key = dup_or_null(cfg->tls_key_file, &oom);
	s->tls_name = dup_or_null(cfg->tls_server_name, &oom);
	cluster_addr_text(&s->addr, s->url, sizeof(s->url));
	if (oom) {
		snprintf(err, errlen, "out of memory");
		free_settings(s);
		return -1;
	}
	s->down_logged = false;
	start_connect(s);
	return 0;
}

void store_free(struct store *s)
{
	if (s == NULL)
		return;
	if (s->ac != NULL) {
		redisAsyncContext *ac = s->ac;

		s->ac = NULL;
		s->state = ST_IDLE;
		redisAsyncFree(ac);
	}
	if (s->doomed != NULL) {
		redisAsyncContext *ac = s->doomed;

		s->doomed = NULL;
		redisAsyncFree(ac);
	}
	if (s->timer != NULL)
		event_free(s->timer);
	if (s->retry != NULL)
		event_free(s->retry);
	if (s->reaper != NULL)
		event_free(s->reaper);
	free_settings(s);
	free(s);
}

void store_on_up(struct store *s, store_up_fn *fn, void *ctx)
{
	s->on_up = fn;
	s->on_up_ctx = ctx;
}

bool store_up(const struct store *s)
{
	return s != NULL && s->state == ST_UP;
}

const char *store_url(const struct store *s)
{
	return s != NULL ? s->url : "";
}

void store_get_stats(const struct store *s, struct store_stats *out)
{
	*out = s->stats;
	out->up = store_up(s);
}
