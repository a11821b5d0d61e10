#include "metrics_http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_BACKLOG 64
#define METRICS_TIMEOUT_SECONDS 10
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
	struct evhttp *http;
	struct dglog *log;
	metrics_collect_fn *collect;
	void *ctx;
};

static bool is_metrics_path(struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	return path != NULL && strcmp(path, "/metrics") == 0;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct metrics_http *mh = arg;
	struct metrics_gauges *g;
	struct evbuffer *body;

	if (!is_metrics_path(req)) {
		evhttp_send_error(req, HTTP_NOTFOUND, NULL);
		return;
	}
	g = calloc(1, sizeof(*g));
	body = evbuffer_new();
	if (g != NULL && body != NULL)
		mh->collect(mh->ctx, g);
	if (g == NULL || body == NULL || metrics_render(body, g) < 0) {
		dglog(mh->log, LOG_ERR, "metrics: out of memory");
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	} else {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
				  METRICS_CONTENT_TYPE);
		evhttp_send_reply(req, HTTP_OK, "OK", body);
	}
	if (body != NULL)
		evbuffer_free(body);
	free(g);
}

static int bind_listener(struct metrics_http *mh, struct event_base *base,
			 const struct dg_config *cfg, char *err, size_t errlen)
{
	struct evconnlistener *l = evconnlistener_new_bind(
		base, NULL, NULL,
		LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
		METRICS_BACKLOG, (const struct sockaddr *)&cfg->metrics_listen.addr,
		cfg->metrics_listen.addrlen);

	if (l == NULL) {
		config_key_error(cfg, CK_METRICS_LISTEN, err, errlen,
				 "cannot listen on %s: %s", cfg->metrics_listen_text,
				 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	/* evhttp_free() frees it from now on */
	if (evhttp_bind_listener(mh->http, l) == NULL) {
		evconnlistener_free(l);
		snprintf(err, errlen, "metrics: cannot attach listener");
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

	if (mh == NULL || (mh->http = evhttp_new(base)) == NULL) {
		snprintf(err, errlen, "metrics: out of memory");
		free(mh);
		return NULL;
	}
	mh->log = log;
	mh->collect = collect;
	mh->ctx = ctx;
	evhttp_set_allowed_methods(mh->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(mh->http, METRICS_TIMEOUT_SECONDS);
	evhttp_set_max_headers_size(mh->http, 8192);
	evhttp_set_max_body_size(mh->http, 0);
	evhttp_set_gencb(mh->http, on_request, mh);
	if (bind_listener(mh, base, cfg, err, errlen) < 0) {
		metrics_http_free(mh);
		return NULL;
	}
	return mh;
}

void metrics_http_free(struct metrics_http *mh)
{
	if (mh == NULL)
		return;
	evhttp_free(mh->http);
	free(mh);
}
