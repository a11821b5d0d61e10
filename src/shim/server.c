#include "server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>         /* the request's HTTP version */
#include <event2/listener.h>
#include <sys/queue.h>
#include <event2/keyvalq_struct.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "decision.h"

#define LISTEN_BACKLOG 511
/* accept() failing (EMFILE: out of fds): pause the listener this long rather
   than spin on a listening socket that stays readable */
#define ACCEPT_PAUSE_MS 200
#define ACCEPT_LOG_EVERY 10.0           /* seconds between such log lines */

struct server {
	struct event_base *base;
	struct dglog *log;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct runtime *rt;
	struct workers *workers;
	char unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	ino_t unix_ino;                 /* to remove only our own socket */
	size_t in_flight;
	unsigned timeout;               /* [server] timeout: whole request head */
	double *started;                /* per fd: first byte of its request */
	size_t started_len;
	struct event *accept_pause;
	double accept_logged;           /* last "cannot accept" line */
	unsigned accept_errors;         /* since then */
	bool draining;
	void (*drained)(void *arg);
	void *drained_arg;
};

/* One request from its arrival until its reply is written or its
   connection is gone (in_flight counts these). */
struct pending {
	struct server *srv;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;        /* while the reply is written */
};

/* ---- binding ----------------------------------------------------------- */

static int bind_tcp(const struct dg_listen *l, char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&l->addr, (socklen_t)l->addrlen) < 0 ||
	    listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* A socket file left by a dead instance may go; a live one or any other
   file may not. */
static int remove_stale_socket(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "exists and is not a socket");
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	rc = fd >= 0 ? connect(fd, (struct sockaddr *)&sun, sizeof(sun)) : -1;
	if (fd >= 0)
		close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "in use by another process");
		return -1;
	}
	unlink(path);
	return 0;
}

/* Owner: the `user` we will run as; group: socket_group, else that user's. */
static int socket_owner(const struct dg_config *cfg, uid_t *uid, gid_t *gid,
			char *err, size_t errlen)
{
	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	if (cfg->user != NULL) {
		struct passwd *pw = getpwnam(cfg->user);
		if (pw == NULL) {
			snprintf(err, errlen, "user %s does not exist", cfg->user);
			return -1;
		}
		*uid = pw->pw_uid;
		*gid = pw->pw_gid;
	}
	if (cfg->socket_group != NULL) {
		struct group *gr = getgrnam(cfg->socket_group);
		if (gr == NULL) {
			snprintf(err, errlen, "group %s does not exist", cfg->socket_group);
			return -1;
		}
		*gid = gr->gr_gid;
	}
	return 0;
}

static int set_socket_access(const struct dg_config *cfg, char *err, size_t errlen)
{
	const char *path = cfg->listen.path;
	uid_t uid;
	gid_t gid;

	if (socket_owner(cfg, &uid, &gid, err, errlen) < 0)
		return -1;
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && geteuid() == 0 &&
	    chown(path, uid, gid) < 0) {
		snprintf(err, errlen, "chown: %s", strerror(errno));
		return -1;
	}
	if (chmod(path, cfg->socket_mode) < 0) {
		snprintf(err, errlen, "chmod: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Permissions are set between bind() and listen(): no one can connect to a
   socket with the wrong mode. */
static int bind_unix(struct server *srv, const struct dg_config *cfg,
		     char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	if (remove_stale_socket(cfg->listen.path, err, errlen) < 0)
		return -1;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	strcpy(sun.sun_path, cfg->listen.path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	strcpy(srv->unix_path, cfg->listen.path);
	if (stat(cfg->listen.path, &st) == 0)
		srv->unix_ino = st.st_ino;
	if (set_socket_access(cfg, err, errlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "listen: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int bind_listener(struct server *srv, const struct dg_config *cfg,
			 char *err, size_t errlen)
{
	char why[256] = "";
	int fd = cfg->listen.is_unix ? bind_unix(srv, cfg, why, sizeof(why)) :
				       bind_tcp(&cfg->listen, why, sizeof(why));

	if (fd < 0) {
		config_key_error(cfg, CK_LISTEN, err, errlen, "cannot listen on %s: %s",
				 cfg->listen_text, why);
		return -1;
	}
	srv->listener = evconnlistener_new(srv->base, NULL, NULL,
					   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
					   -1, fd);
	if (srv->listener == NULL) {
		close(fd);
		snprintf(err, errlen, "cannot create listener");
		return -1;
	}
	if (evhttp_bind_listener(srv->http, srv->listener) == NULL) {
		evconnlistener_free(srv->listener);
		srv->listener = NULL;
		snprintf(err, errlen, "cannot attach listener");
		return -1;
	}
	return 0;
}

/* ---- slow clients -----------------------------------------------------------
   evhttp's timeout is an inactivity timeout: a client sending a byte every few
   seconds (slowloris) would keep its connection for hours. So a request head
   must be complete within [server] timeout of its first byte; a read after
   that shuts the socket down and evhttp frees the connection as on any EOF.
   evhttp has no hook at connection start or end, so the input buffer's
   callback swaps itself (fresh -> started) at a request's first byte and the
   time is kept per fd: an fd belongs to one connection at a time, and every
   request overwrites its fd's entry first. Callbacks get the bufferevent, so
   the (one) server is reached through gate_srv. */

static struct server *gate_srv;

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int gate_slot(struct server *srv, evutil_socket_t fd)
{
	size_t need = (size_t)fd + 1, len = srv->started_len ? srv->started_len : 64;
	double *grown;

	if (need <= srv->started_len)
		return 0;
	while (len < need)
		len *= 2;
	grown = realloc(srv->started, len * sizeof(*grown));
	if (grown == NULL)
		return -1;
	srv->started = grown;
	srv->started_len = len;
	return 0;
}

static void on_input_fresh(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			   void *arg);
static void on_input_started(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			     void *arg);

/* Cut the connection: what came is dropped unparsed, evhttp then sees EOF
   and frees the connection its usual way. */
static void gate_cut(struct evbuffer *buf, evutil_socket_t fd, void *arg)
{
	evbuffer_remove_cb(buf, on_input_fresh, arg);
	evbuffer_remove_cb(buf, on_input_started, arg);
	evbuffer_drain(buf, evbuffer_get_length(buf));
	shutdown(fd, SHUT_RDWR);
}

/* A raw NUL never comes from nginx (it sends %00), and evhttp would silently
   cut the header value there ("Auth-User: alice\0x" read as alice). */
static bool gate_nul(struct evbuffer *buf, const struct evbuffer_cb_info *info,
		     evutil_socket_t fd, void *arg)
{
	struct evbuffer_ptr pos;
	size_t len = evbuffer_get_length(buf);

	if (info->n_added > len ||
	    evbuffer_ptr_set(buf, &pos, len - info->n_added, EVBUFFER_PTR_SET) < 0 ||
	    evbuffer_search(buf, "", 1, &pos).pos < 0)
		return false;
	gate_cut(buf, fd, arg);
	dglog(gate_srv->log, LOG_WARNING, "refused request=http result=error "
	      "reason=nul_byte detail=\"NUL byte in the request head\"");
	return true;
}

static void on_input_fresh(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			   void *arg)
{
	evutil_socket_t fd = bufferevent_getfd(arg);

	if (info->n_added == 0 || fd < 0 || gate_nul(buf, info, fd, arg) ||
	    gate_slot(gate_srv, fd) < 0)
		return;
	gate_srv->started[fd] = now_seconds();
	evbuffer_remove_cb(buf, on_input_fresh, arg);
	evbuffer_add_cb(buf, on_input_started, arg);
}

static void on_input_started(struct evbuffer *buf, const struct evbuffer_cb_info *info,
			     void *arg)
{
	evutil_socket_t fd = bufferevent_getfd(arg);
	double took;

	if (info->n_added == 0 || fd < 0 || gate_nul(buf, info, fd, arg))
		return;
	took = now_seconds() - gate_srv->started[fd];
	if (took <= gate_srv->timeout)
		return;
	gate_cut(buf, fd, arg);
	dglog(gate_srv->log, LOG_WARNING, "refused request=http result=error "
	      "reason=slow_request detail=\"head not complete %.0f s after its first "
	      "byte (timeout %u s)\"", took, gate_srv->timeout);
}

/* evhttp's default bufferevent (options 0: evhttp closes the fd itself),
   with the gate on its input */
static struct bufferevent *new_bufferevent(struct event_base *base, void *arg)
{
	struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);

	if (bev != NULL)
		evbuffer_add_cb(bufferevent_get_input(bev), on_input_fresh, bev);
	return bev;
}

/* The head is complete: the next request on this connection starts afresh. */
static void gate_rearm(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
	struct evbuffer *in = bev ? bufferevent_get_input(bev) : NULL;

	if (in != NULL && evbuffer_remove_cb(in, on_input_started, bev) == 0)
		evbuffer_add_cb(in, on_input_fresh, bev);
}

/* ---- accept errors ----------------------------------------------------------- */

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	if (!srv->draining)
		evconnlistener_enable(srv->listener);
}

/* The listener's user argument is evhttp's, hence gate_srv. */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct server *srv = gate_srv;
	struct timeval pause = { 0, ACCEPT_PAUSE_MS * 1000 };
	int err = EVUTIL_SOCKET_ERROR();
	double now = now_seconds();

	srv->accept_errors++;
	if (srv->accept_logged == 0 || now - srv->accept_logged >= ACCEPT_LOG_EVERY) {
		dglog(srv->log, LOG_ERR, "cannot accept connections: %s; pausing %d ms "
		      "(%u times since the last such line)", strerror(err),
		      ACCEPT_PAUSE_MS, srv->accept_errors);
		srv->accept_logged = now;
		srv->accept_errors = 0;
	}
	evconnlistener_disable(listener);
	event_add(srv->accept_pause, &pause);
}

/* ---- requests -------------------------------------------------------------- */

static void request_done(struct server *srv)
{
	srv->in_flight--;
	if (srv->draining && srv->in_flight == 0 && srv->drained != NULL)
		srv->drained(srv->drained_arg);
}

static void pending_release(struct pending *p)
{
	request_done(p->srv);
	free(p);
}

/* The reply was written. The connection may be freed next: its close
   callback must not see p any more. */
static void on_complete(struct evhttp_request *req, void *arg)
{
	struct pending *p = arg;

	evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	pending_release(p);
}

/* The connection goes away while the reply is being written (the client
   reset it: the write fails). libevent then frees the request without
   calling on_complete, so this is the only word p gets. */
static void on_write_close(struct evhttp_connection *evcon, void *arg)
{
	struct pending *p = arg;

	evhttp_request_set_on_complete_cb(p->req, NULL, NULL);
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	pending_release(p);
}

static void on_reply(void *ctx, const struct authhttp_response *resp)
{
	struct pending *p = ctx;
	struct evkeyvalq *out = evhttp_request_get_output_headers(p->req);

	for (size_t i = 0; i < resp->count; i++) {
		if (evhttp_add_header(out, resp->headers[i].name, resp->headers[i].value) < 0)
			dglog(p->srv->log, LOG_ERR, "libevent refused header %s",
			      resp->headers[i].name);
	}
	/* libevent adds Content-Length only for HTTP/1.1 or keep-alive; strict
	   clients (wrk, load balancers' health checks) need it on HTTP/1.0 too to
	   know the empty body ended. Counted in AUTHHTTP_HEAD_OVERHEAD. */
	evhttp_add_header(out, "Content-Length", "0");
	p->evcon = evhttp_request_get_connection(p->req);
	if (p->evcon == NULL) {
		/* client went away while we were deciding: this frees req */
		evhttp_send_reply(p->req, HTTP_OK, "OK", NULL);
		pending_release(p);
		return;
	}
	/* released by whichever comes first: the reply written, or the
	   connection freed (a failed write frees it without on_complete) */
	evhttp_request_set_on_complete_cb(p->req, on_complete, p);
	evhttp_connection_set_closecb(p->evcon, on_write_close, p);
	evhttp_send_reply(p->req, HTTP_OK, "OK", NULL);
}

static struct authhttp_pair *collect_headers(struct evhttp_request *req, size_t *count)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	struct authhttp_pair *pairs;
	size_t n = 0;

	TAILQ_FOREACH(kv, in, next)
		n++;
	pairs = calloc(n + 1, sizeof(*pairs));
	if (pairs == NULL)
		return NULL;
	n = 0;
	TAILQ_FOREACH(kv, in, next) {
		pairs[n].name = kv->key;
		pairs[n].value = kv->value;
		n++;
	}
	*count = n;
	return pairs;
}

/* nginx speaks HTTP/1.0; libevent also lets e.g. HTTP/1.2 through. */
static bool refuse_http_version(struct server *srv, struct evhttp_request *req)
{
	if (req->major == 1 && req->minor <= 1)
		return false;
	dglog(srv->log, LOG_WARNING, "refused request=http result=error "
	      "reason=bad_http_version detail=\"HTTP/%d.%d\"", req->major, req->minor);
	evhttp_send_error(req, HTTP_BADREQUEST, NULL);
	return true;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct server *srv = arg;
	struct decision_env env = { srv->rt, srv->workers, srv->log, srv->base };
	struct authhttp_pair *pairs;
	struct pending *p;
	size_t count = 0;

	gate_rearm(req);
	if (refuse_http_version(srv, req))
		return;
	pairs = collect_headers(req, &count);
	p = malloc(sizeof(*p));
	if (pairs == NULL || p == NULL) {
		free(pairs);
		free(p);
		dglog(srv->log, LOG_ERR, "out of memory");
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	p->srv = srv;
	p->req = req;
	srv->in_flight++;
	decision_run(&env, pairs, count, on_reply, p);
	free(pairs);
}

/* ---- lifecycle -------------------------------------------------------------- */

static void apply_limits(struct server *srv, const struct dg_config *cfg)
{
	evhttp_set_timeout(srv->http, (int)cfg->timeout);
	srv->timeout = cfg->timeout;
	evhttp_set_max_headers_size(srv->http, cfg->max_header_bytes);
	evhttp_set_max_body_size(srv->http, 0);
}

struct server *server_new(struct event_base *base, struct dglog *log,
			  struct runtime *rt, char *err, size_t errlen)
{
	struct server *srv = calloc(1, sizeof(*srv));

	if (srv == NULL || (srv->http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "out of memory");
		free(srv);
		return NULL;
	}
	srv->base = base;
	srv->log = log;
	srv->rt = runtime_ref(rt);
	evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET);
	/* nginx ignores the body; do not announce one */
	evhttp_set_default_content_type(srv->http, NULL);
	evhttp_set_gencb(srv->http, on_request, srv);
	evhttp_set_bevcb(srv->http, new_bufferevent, NULL);
	gate_srv = srv;
	apply_limits(srv, &rt->cfg);
	srv->accept_pause = evtimer_new(base, on_accept_resume, srv);
	if (srv->accept_pause == NULL) {
		snprintf(err, errlen, "out of memory");
		server_free(srv);
		return NULL;
	}
	if (bind_listener(srv, &rt->cfg, err, errlen) < 0) {
		server_free(srv);
		return NULL;
	}
	evconnlistener_set_error_cb(srv->listener, on_accept_error);
	return srv;
}

void server_set_runtime(struct server *srv, struct runtime *rt)
{
	struct runtime *old = srv->rt;

	srv->rt = runtime_ref(rt);
	apply_limits(srv, &rt->cfg);
	runtime_unref(old);
}

struct runtime *server_runtime(struct server *srv)
{
	return srv->rt;
}

void server_set_workers(struct server *srv, struct workers *workers)
{
	srv->workers = workers;
}

void server_drain(struct server *srv, void (*drained)(void *arg), void *arg)
{
	srv->draining = true;
	srv->drained = drained;
	srv->drained_arg = arg;
	if (srv->listener != NULL)
		evconnlistener_disable(srv->listener);
	if (srv->in_flight == 0)
		drained(arg);
}

size_t server_in_flight(const struct server *srv)
{
	return srv->in_flight;
}

static void remove_socket(struct server *srv)
{
	struct stat st;

	if (srv->unix_path[0] == '\0')
		return;
	if (lstat(srv->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    st.st_ino == srv->unix_ino && unlink(srv->unix_path) < 0)
		dglog(srv->log, LOG_WARNING, "cannot remove %s: %s", srv->unix_path,
		      strerror(errno));
}

void server_free(struct server *srv)
{
	if (srv == NULL)
		return;
	/* evhttp_free() frees the listener bound to it, and the connections
	   (whose close callbacks release their requests: no drained call now) */
	srv->drained = NULL;
	if (srv->http != NULL)
		evhttp_free(srv->http);
	if (srv->accept_pause != NULL)
		event_free(srv->accept_pause);
	if (gate_srv == srv)
		gate_srv = NULL;
	free(srv->started);
	remove_socket(srv);
	runtime_unref(srv->rt);
	free(srv);
}
