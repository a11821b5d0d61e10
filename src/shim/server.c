#include "server.h"

#include <errno.h>
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
#include <unistd.h>

#include "decision.h"

#define LISTEN_BACKLOG 511

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
	bool draining;
	void (*drained)(void *arg);
	void *drained_arg;
};

/* One request between arrival and the reply being handed to libevent. */
struct pending {
	struct server *srv;
	struct evhttp_request *req;
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

/* ---- requests -------------------------------------------------------------- */

static void request_done(struct server *srv)
{
	srv->in_flight--;
	if (srv->draining && srv->in_flight == 0 && srv->drained != NULL)
		srv->drained(srv->drained_arg);
}

static void on_complete(struct evhttp_request *req, void *arg)
{
	struct pending *p = arg;

	request_done(p->srv);
	free(p);
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
	if (evhttp_request_get_connection(p->req) == NULL) {
		/* client went away while we were deciding: this frees req */
		evhttp_send_reply(p->req, HTTP_OK, "OK", NULL);
		request_done(p->srv);
		free(p);
		return;
	}
	evhttp_request_set_on_complete_cb(p->req, on_complete, p);
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
	struct decision_env env = { srv->rt, srv->workers, srv->log };
	struct authhttp_pair *pairs;
	struct pending *p;
	size_t count = 0;

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
	apply_limits(srv, &rt->cfg);
	if (bind_listener(srv, &rt->cfg, err, errlen) < 0) {
		server_free(srv);
		return NULL;
	}
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
	/* evhttp_free() frees the listener bound to it */
	if (srv->http != NULL)
		evhttp_free(srv->http);
	remove_socket(srv);
	runtime_unref(srv->rt);
	free(srv);
}
