#include "metrics_http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define METRICS_BACKLOG 64
/* from accept to the answer written: a slow client cannot hold a slot */
#define METRICS_TIMEOUT_SECONDS 10
#define METRICS_MAX_HEAD 8192
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_CONTENT_TYPE "text/plain; charset=utf-8"
#define REFUSAL_LOG_EVERY 60.0          /* s between two lines of one kind */
#define TOKEN_HASH_BYTES crypto_generichash_BYTES
#define REALM "dovegate-auth metrics"

/* One line per kind of refusal at most every REFUSAL_LOG_EVERY seconds. */
struct refusal_log {
	double logged;                  /* monotonic s; 0: never */
	unsigned since;                 /* refusals not logged since */
};

/* One accepted connection: one request, one answer, then closed. */
struct conn {
	struct conn *prev, *next;
	struct metrics_http *mh;
	struct bufferevent *bev;
	struct event *deadline;
	bool answered;
	char peer[INET6_ADDRSTRLEN];
};

struct metrics_http {
	struct event_base *base;
	struct evconnlistener *listener;
	struct dglog *log;
	metrics_collect_fn *collect;
	void *ctx;
	unsigned max_connections;
	size_t open;
	struct conn *conns;
	/* only a hash of the token is kept; compared in constant time */
	bool has_token;
	unsigned char token_hash[TOKEN_HASH_BYTES];
	struct refusal_log full_log, auth_log;
};

/* The parsed request head (pointers into the head's own copy). */
struct request {
	const char *method;
	const char *target;
	const char *authorization;      /* NULL: none */
};

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* True (and *since_r set) when this refusal gets a log line. */
static bool refusal_logged(struct refusal_log *rl, unsigned *since_r)
{
	double now = now_seconds();

	if (rl->logged != 0 && now - rl->logged < REFUSAL_LOG_EVERY) {
		rl->since++;
		return false;
	}
	*since_r = rl->since;
	rl->logged = now;
	rl->since = 0;
	return true;
}

/* " (N more such since the last line)", or "" */
static const char *since_text(unsigned since, char *buf, size_t len)
{
	if (since == 0)
		return "";
	snprintf(buf, len, " (%u more such since the last line)", since);
	return buf;
}

static void peer_text(const struct sockaddr *sa, char *out, size_t len)
{
	const void *a = sa->sa_family == AF_INET6 ?
			(const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr :
			(const void *)&((const struct sockaddr_in *)sa)->sin_addr;

	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) ||
	    inet_ntop(sa->sa_family, a, out, (socklen_t)len) == NULL)
		snprintf(out, len, "-");
}

/* ---- connections ------------------------------------------------------------ */

static void conn_free(struct conn *c)
{
	struct metrics_http *mh = c->mh;

	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		mh->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	mh->open--;
	event_free(c->deadline);
	bufferevent_free(c->bev);       /* closes the socket */
	free(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	conn_free(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_free(arg);
}

/* Queues the answer; the connection closes once it is written. */
static void reply(struct conn *c, int status, const char *reason, const char *ctype,
		  const char *extra_headers, struct evbuffer *body, bool head_only)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t len = body != NULL ? evbuffer_get_length(body) : 0;

	c->answered = true;
	bufferevent_disable(c->bev, EV_READ);
	if (evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
				"Content-Length: %zu\r\nConnection: close\r\n%s\r\n",
				status, reason, ctype, len,
				extra_headers != NULL ? extra_headers : "") < 0 ||
	    (body != NULL && !head_only && evbuffer_add_buffer(out, body) < 0)) {
		conn_free(c);
		return;
	}
	bufferevent_enable(c->bev, EV_WRITE);
}

static void reply_text(struct conn *c, int status, const char *reason,
		       const char *extra_headers, bool head_only)
{
	struct evbuffer *body = evbuffer_new();

	if (body != NULL)
		evbuffer_add_printf(body, "%s\n", reason);
	reply(c, status, reason, TEXT_CONTENT_TYPE, extra_headers, body, head_only);
	if (body != NULL)
		evbuffer_free(body);
}

/* ---- the request ------------------------------------------------------------ */

static char *next_line(char **cursor)
{
	char *line = *cursor, *eol = strchr(line, '\n');

	if (eol == NULL)
		return NULL;
	*cursor = eol + 1;
	if (eol > line && eol[-1] == '\r')
		eol--;
	*eol = '\0';
	return line;
}

/* "METHOD TARGET HTTP/1.x", then header lines up to the empty one. Only
   Authorization is kept. -1 on anything malformed. */
static int parse_head(char *head, struct request *rq)
{
	char *cursor = head, *line = next_line(&cursor), *sp1, *sp2;

	memset(rq, 0, sizeof(*rq));
	if (line == NULL || (sp1 = strchr(line, ' ')) == NULL ||
	    (sp2 = strchr(sp1 + 1, ' ')) == NULL || strchr(sp2 + 1, ' ') != NULL)
		return -1;
	*sp1 = *sp2 = '\0';
	if (strcmp(sp2 + 1, "HTTP/1.0") != 0 && strcmp(sp2 + 1, "HTTP/1.1") != 0)
		return -1;
	rq->method = line;
	rq->target = sp1 + 1;
	while ((line = next_line(&cursor)) != NULL && line[0] != '\0') {
		char *colon = strchr(line, ':'), *value;
		size_t vlen;

		/* no folded lines, no spaces in names */
		if (colon == NULL || colon == line || strcspn(line, " \t") < (size_t)(colon - line))
			return -1;
		*colon = '\0';
		if (strcasecmp(line, "Authorization") != 0)
			continue;
		if (rq->authorization != NULL)
			return -1;
		value = colon + 1 + strspn(colon + 1, " \t");
		vlen = strlen(value);
		while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
			value[--vlen] = '\0';
		rq->authorization = value;
	}
	return line != NULL ? 0 : -1;
}

static bool is_metrics_path(const char *target)
{
	size_t len = strcspn(target, "?");

	return len == 8 && strncmp(target, "/metrics", 8) == 0;
}

/* Without a configured token, everyone; else "Bearer <token>". */
static bool authorized(const struct metrics_http *mh, const char *value)
{
	unsigned char h[TOKEN_HASH_BYTES];
	bool ok;

	if (!mh->has_token)
		return true;
	if (value == NULL || strncasecmp(value, "Bearer ", 7) != 0)
		return false;
	value += 7 + strspn(value + 7, " ");
	/* hashes of equal length: the compare time says nothing about the token */
	crypto_generichash(h, sizeof(h), (const unsigned char *)value, strlen(value), NULL, 0);
	ok = sodium_memcmp(h, mh->token_hash, sizeof(h)) == 0;
	sodium_memzero(h, sizeof(h));
	return ok;
}

static void refuse_unauthorized(struct conn *c, const struct request *rq, bool head_only)
{
	struct metrics_http *mh = c->mh;
	char sincebuf[64];
	unsigned since;

	metrics_scrape_refused(METRICS_REFUSED_UNAUTHORIZED);
	if (refusal_logged(&mh->auth_log, &since))
		dglog(mh->log, LOG_WARNING, "metrics: refused a scrape from %s: %s bearer "
		      "token%s", c->peer, rq->authorization != NULL ? "wrong or malformed" : "no",
		      since_text(since, sincebuf, sizeof(sincebuf)));
	reply_text(c, 401, "Unauthorized", rq->authorization != NULL ?
		   "WWW-Authenticate: Bearer realm=\"" REALM "\", error=\"invalid_token\"\r\n" :
		   "WWW-Authenticate: Bearer realm=\"" REALM "\"\r\n", head_only);
}

static void serve_metrics(struct conn *c, bool head_only)
{
	struct metrics_http *mh = c->mh;
	struct metrics_gauges *g = calloc(1, sizeof(*g));
	struct evbuffer *body = evbuffer_new();

	if (g != NULL && body != NULL) {
		mh->collect(mh->ctx, g);
		g->metrics_connections = mh->open;
	}
	if (g == NULL || body == NULL || metrics_render(body, g) < 0) {
		dglog(mh->log, LOG_ERR, "metrics: out of memory");
		reply_text(c, 500, "Internal Server Error", NULL, head_only);
	} else {
		reply(c, 200, "OK", METRICS_CONTENT_TYPE, NULL, body, head_only);
	}
	if (body != NULL)
		evbuffer_free(body);
	free(g);
}

static void answer(struct conn *c, char *head)
{
	struct request rq;
	bool head_only;

	if (parse_head(head, &rq) < 0) {
		reply_text(c, 400, "Bad Request", NULL, false);
		return;
	}
	head_only = strcmp(rq.method, "HEAD") == 0;
	if (!head_only && strcmp(rq.method, "GET") != 0)
		reply_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", false);
	else if (!authorized(c->mh, rq.authorization))
		refuse_unauthorized(c, &rq, head_only);
	else if (!is_metrics_path(rq.target))
		reply_text(c, 404, "Not Found", NULL, head_only);
	else
		serve_metrics(c, head_only);
}

/* Where the head ends ("\r\n\r\n", or "\n\n" from a sloppy client), or -1. */
static ssize_t head_end(struct evbuffer *in)
{
	struct evbuffer_ptr crlf = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	struct evbuffer_ptr lf = evbuffer_search(in, "\n\n", 2, NULL);

	if (crlf.pos >= 0 && (lf.pos < 0 || crlf.pos < lf.pos))
		return (ssize_t)crlf.pos + 4;
	return lf.pos >= 0 ? (ssize_t)lf.pos + 2 : -1;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	ssize_t end = head_end(in);
	char *head;

	if (c->answered) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (end < 0 && evbuffer_get_length(in) <= METRICS_MAX_HEAD)
		return;                 /* more to come */
	if (end < 0 || end > METRICS_MAX_HEAD) {
		evbuffer_drain(in, evbuffer_get_length(in));
		reply_text(c, 431, "Request Header Fields Too Large", NULL, false);
		return;
	}
	head = malloc((size_t)end + 1);
	if (head == NULL) {
		conn_free(c);
		return;
	}
	evbuffer_remove(in, head, (size_t)end);
	head[end] = '\0';
	evbuffer_drain(in, evbuffer_get_length(in));
	if (memchr(head, '\0', (size_t)end) != NULL)
		reply_text(c, 400, "Bad Request", NULL, false);
	else
		answer(c, head);
	/* it may hold the token */
	sodium_memzero(head, (size_t)end);
	free(head);
}

/* ---- accepting ---------------------------------------------------------------- */

/* Past max_connections: a short 503 written straight to the new socket,
   then closed; no state kept for it. */
static void refuse_full(struct metrics_http *mh, evutil_socket_t fd,
			const struct sockaddr *sa)
{
	static const char msg[] =
		"HTTP/1.1 503 Service Unavailable\r\n"
		"Content-Type: " TEXT_CONTENT_TYPE "\r\n"
		"Content-Length: 28\r\nConnection: close\r\nRetry-After: 1\r\n\r\n"
		"too many metrics connections";
	char drain[1024], peer[INET6_ADDRSTRLEN], sincebuf[64];
	unsigned since;
	ssize_t n;

	metrics_scrape_refused(METRICS_REFUSED_CONNECTIONS);
	if (refusal_logged(&mh->full_log, &since)) {
		peer_text(sa, peer, sizeof(peer));
		dglog(mh->log, LOG_WARNING, "metrics: refused a connection from %s: %zu open, "
		      "[metrics] max_connections = %u%s", peer, mh->open, mh->max_connections,
		      since_text(since, sincebuf, sizeof(sincebuf)));
	}
	/* what already came is read, so that close() does not reset the
	   connection before the client reads the answer */
	for (int i = 0; i < 8 && (n = recv(fd, drain, sizeof(drain), MSG_DONTWAIT)) > 0; i++)
		;
	(void)!send(fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	shutdown(fd, SHUT_WR);
	evutil_closesocket(fd);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
		      int salen, void *arg)
{
	struct metrics_http *mh = arg;
	struct timeval tv = { METRICS_TIMEOUT_SECONDS, 0 };
	struct conn *c;

	if (mh->open >= mh->max_connections) {
		refuse_full(mh, fd, sa);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->bev = bufferevent_socket_new(mh->base, fd,
							   BEV_OPT_CLOSE_ON_FREE)) == NULL ||
	    (c->deadline = evtimer_new(mh->base, on_deadline, c)) == NULL) {
		dglog(mh->log, LOG_ERR, "metrics: out of memory");
		if (c != NULL && c->bev != NULL)
			bufferevent_free(c->bev);
		else
			evutil_closesocket(fd);
		free(c);
		return;
	}
	c->mh = mh;
	peer_text(sa, c->peer, sizeof(c->peer));
	c->next = mh->conns;
	if (mh->conns != NULL)
		mh->conns->prev = c;
	mh->conns = c;
	mh->open++;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ);
	evtimer_add(c->deadline, &tv);
}

static int bind_listener(struct metrics_http *mh, const struct dg_config *cfg,
			 char *err, size_t errlen)
{
	mh->listener = evconnlistener_new_bind(
		mh->base, on_accept, mh,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
		METRICS_BACKLOG, (const struct sockaddr *)&cfg->metrics_listen.addr,
		cfg->metrics_listen.addrlen);
	if (mh->listener == NULL) {
		config_key_error(cfg, CK_METRICS_LISTEN, err, errlen,
				 "cannot listen on %s: %s", cfg->metrics_listen_text,
				 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	return 0;
}

struct metrics_http *metrics_http_new(struct event_base *base, struct dglog *log,
				      const struct dg_config *cfg,
				      metrics_collect_fn *collect, void *ctx,
				      char *err, size_t errlen)
{
	struct metrics_http *mh = calloc(1, sizeof(*mh));

	if (mh == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		return NULL;
	}
	mh->base = base;
	mh->log = log;
	mh->collect = collect;
	mh->ctx = ctx;
	mh->max_connections = cfg->metrics_max_connections;
	if (bind_listener(mh, cfg, err, errlen) < 0) {
		free(mh);
		return NULL;
	}
	return mh;
}

void metrics_http_set_access(struct metrics_http *mh, unsigned max_connections,
			     const struct secret *token)
{
	mh->max_connections = max_connections;
	mh->has_token = token != NULL && token->data != NULL;
	sodium_memzero(mh->token_hash, sizeof(mh->token_hash));
	if (mh->has_token)
		crypto_generichash(mh->token_hash, sizeof(mh->token_hash),
				   (const unsigned char *)token->data, token->len, NULL, 0);
}

bool metrics_listen_is_loopback(const struct dg_listen *l)
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->addr;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&l->addr;

	if (l->addr.ss_family == AF_INET)
		return (ntohl(sin->sin_addr.s_addr) >> 24) == 127;
	return l->addr.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr);
}

void metrics_http_free(struct metrics_http *mh)
{
	if (mh == NULL)
		return;
	while (mh->conns != NULL)
		conn_free(mh->conns);
	if (mh->listener != NULL)
		evconnlistener_free(mh->listener);
	sodium_memzero(mh->token_hash, sizeof(mh->token_hash));
	free(mh);
}
