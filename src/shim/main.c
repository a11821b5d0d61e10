/* dovegate-auth: nginx mail auth_http server. Arguments, signals, lifecycle. */
#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "cluster.h"
#include "metrics_http.h"
#include "notify.h"
#include "routing.h"
#include "runtime.h"
#include "server.h"
#include "workers.h"

#ifndef DG_VERSION
#define DG_VERSION "unknown"
#endif

/* Decisions waiting for a hash thread before new ones get a temporary failure. */
#define HASH_QUEUE_MAX 1024
/* How long SIGTERM waits for requests in flight. */
#define DRAIN_SECONDS 30

struct app {
	const char *config_path;
	struct dglog log;
	struct event_base *base;
	struct server *server;
	struct workers *workers;
	/* brute-force scores: outlive every runtime, so they survive SIGHUP */
	struct penalty *penalty;
	/* backend pools and their health: survive SIGHUP the same way */
	struct routing *routing;
	/* the cluster store ([cluster]): one connection for the process */
	struct cluster *cluster;
	struct metrics_http *metrics;   /* NULL: no [metrics] listen */
	struct event *sig_term, *sig_int, *sig_hup, *drain_timer;
	struct event *watchdog;         /* NULL: systemd asked for none */
	bool stopping;
};

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: dovegate-auth [-c CONFIG] [-t] [-h] [-V]\n"
		"  -c, --config CONFIG  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
		"  -t, --test           test the configuration (incl. users and secret files) and exit\n"
		"  -h, --help           this help\n"
		"  -V, --version        version\n"
		"Runs in the foreground; SIGHUP reloads, SIGTERM stops gracefully.\n"
		"See dovegate-auth(8) and dovegate-auth.conf(5).\n");
}

/* ---- privileges -------------------------------------------------------- */

static int check_user_exists(const struct dg_config *cfg, char *err, size_t errlen)
{
	if (cfg->user != NULL && getpwnam(cfg->user) == NULL) {
		config_key_error(cfg, CK_USER, err, errlen, "user %s does not exist", cfg->user);
		return -1;
	}
	if (cfg->socket_group != NULL && getgrnam(cfg->socket_group) == NULL) {
		config_key_error(cfg, CK_SOCKET_GROUP, err, errlen, "group %s does not exist",
				 cfg->socket_group);
		return -1;
	}
	return 0;
}

static int drop_privileges(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		snprintf(err, errlen, "user %s does not exist", user);
		return -1;
	}
	if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
		return 0;
	if (initgroups(user, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
		return -1;
	}
	if (pw->pw_uid != 0 && setuid(0) == 0) {
		snprintf(err, errlen, "could regain root after switching to %s", user);
		return -1;
	}
	return 0;
}

/* ---- signals ------------------------------------------------------------ */

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;

	dglog(&app->log, LOG_WARNING, "%zu requests still in flight after %d s; exiting",
	      server_in_flight(app->server), DRAIN_SECONDS);
	event_base_loopexit(app->base, NULL);
}

static void on_drained(void *arg)
{
	struct app *app = arg;

	event_base_loopexit(app->base, NULL);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
	struct app *app = arg;
	struct timeval tv = { DRAIN_SECONDS, 0 };

	if (app->stopping)
		return;
	app->stopping = true;
	notify_stopping();
	dglog(&app->log, LOG_INFO, "signal %d: stopping, %zu requests in flight",
	      (int)sig, server_in_flight(app->server));
	app->drain_timer = evtimer_new(app->base, on_drain_timeout, app);
	if (app->drain_timer != NULL)
		evtimer_add(app->drain_timer, &tv);
	server_drain(app->server, on_drained, app);
}

/* Settings bound at start-up: warn instead of pretending to apply them. */
static void warn_restart_only(struct app *app, const struct dg_config *old,
			      const struct dg_config *new)
{
	bool changed =
		strcmp(old->listen_text, new->listen_text) != 0 ||
		old->socket_mode != new->socket_mode ||
		(old->user == NULL) != (new->user == NULL) ||
		(old->user != NULL && strcmp(old->user, new->user) != 0) ||
		(old->socket_group == NULL) != (new->socket_group == NULL) ||
		(old->socket_group != NULL && strcmp(old->socket_group, new->socket_group) != 0) ||
		old->hash_threads != new->hash_threads ||
		(old->metrics_listen_text == NULL) != (new->metrics_listen_text == NULL) ||
		(old->metrics_listen_text != NULL &&
		 strcmp(old->metrics_listen_text, new->metrics_listen_text) != 0);

	if (changed)
		dglog(&app->log, LOG_WARNING, "listen, socket_mode, socket_group, user, "
		      "hash_threads and [metrics] listen changes take effect only after a restart");
}

/* Metrics on a network address that anyone there may read. */
static void warn_open_metrics(struct app *app, const struct runtime *rt)
{
	if (rt->metrics_token.data == NULL && !metrics_listen_is_loopback(&rt->cfg.metrics_listen))
		dglog(&app->log, LOG_WARNING, "metrics on %s without [metrics] "
		      "bearer_token_file: anyone who can reach it can read them",
		      rt->cfg.metrics_listen_text);
}

/* Counted, and systemd told that the daemon serves again (a failed reload
   keeps the running configuration). */
static void reload_done(bool ok)
{
	metrics_reload(ok);
	notify_ready(ok ? "serving (reloaded)" : "serving (reload failed, see the log)");
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	struct app *app = arg;
	char err[1024];
	struct runtime *rt;

	notify_reloading();
	rt = runtime_load(app->config_path, true, &app->log, err, sizeof(err));
	if (rt == NULL) {
		dglog(&app->log, LOG_ERR, "reload failed, keeping the running "
		      "configuration: %s", err);
		reload_done(false);
		return;
	}
	if (passdb_attach(rt->passdb, app->base, &app->log,
			  server_runtime(app->server)->passdb, err, sizeof(err)) < 0) {
		dglog(&app->log, LOG_ERR, "reload failed, keeping the running "
		      "configuration: %s", err);
		runtime_unref(rt);
		reload_done(false);
		return;
	}
	if (runtime_attach_penalty(rt, app->penalty, err, sizeof(err)) < 0) {
		/* only ENOMEM: penalty_configure() left the previous settings */
		dglog(&app->log, LOG_ERR, "%s; keeping the previous [penalty] settings", err);
		rt->penalty = server_runtime(app->server)->penalty;
	}
	/* last: it cannot be undone (old decisions then use the new pools too) */
	if (runtime_attach_routing(rt, app->routing, err, sizeof(err)) < 0) {
		dglog(&app->log, LOG_ERR, "reload failed, keeping the running "
		      "configuration: %s", err);
		runtime_unref(rt);
		reload_done(false);
		return;
	}
	if (runtime_attach_cluster(rt, app->cluster, err, sizeof(err)) < 0) {
		/* e.g. a TLS file that does not load: the old store connection stays */
		dglog(&app->log, LOG_ERR, "%s; keeping the previous [cluster] settings", err);
		rt->cluster = server_runtime(app->server)->cluster;
	}
	warn_restart_only(app, &server_runtime(app->server)->cfg, &rt->cfg);
	server_set_runtime(app->server, rt);
	if (app->metrics != NULL) {
		metrics_http_set_access(app->metrics, rt->cfg.metrics_max_connections,
					&rt->metrics_token);
		warn_open_metrics(app, rt);
	}
	dglog_set_target(&app->log, rt->cfg.log_target);
	dglog(&app->log, LOG_INFO, "configuration reloaded from %s (%zu users)",
	      app->config_path, passdb_user_count(rt->passdb));
	runtime_unref(rt);
	reload_done(true);
}

static int add_signals(struct app *app)
{
	app->sig_term = evsignal_new(app->base, SIGTERM, on_stop, app);
	app->sig_int = evsignal_new(app->base, SIGINT, on_stop, app);
	app->sig_hup = evsignal_new(app->base, SIGHUP, on_reload, app);
	if (app->sig_term == NULL || app->sig_int == NULL || app->sig_hup == NULL ||
	    evsignal_add(app->sig_term, NULL) < 0 || evsignal_add(app->sig_int, NULL) < 0 ||
	    evsignal_add(app->sig_hup, NULL) < 0)
		return -1;
	return 0;
}

/* ---- lifecycle ------------------------------------------------------------ */

static int test_config(struct app *app)
{
	char err[1024];
	struct runtime *rt = runtime_load(app->config_path, true, &app->log, err, sizeof(err));

	if (rt == NULL) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (check_user_exists(&rt->cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		runtime_unref(rt);
		return 1;
	}
	printf("config OK\n");
	runtime_unref(rt);
	return 0;
}

/* A scrape's gauges, read from the running state (metrics_http.h). */
static void collect_metrics(void *ctx, struct metrics_gauges *g)
{
	struct app *app = ctx;
	struct runtime *rt = server_runtime(app->server);
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	g->in_flight = server_in_flight(app->server);
	g->users = passdb_user_count(rt->passdb);
	g->penalty_enabled = rt->penalty != NULL;
	if (rt->penalty != NULL) {
		g->penalty_active = penalty_active(rt->penalty, now.tv_sec);
		g->penalty_entries = penalty_entries(rt->penalty);
	}
	if (cluster_on(app->cluster)) {
		struct store_stats st;

		cluster_store_stats(app->cluster, &st);
		g->cluster_on = true;
		g->cluster_up = st.up;
		g->cluster_commands = st.commands;
		g->cluster_errors = st.errors;
		g->cluster_downs = st.downs;
	}
	for (size_t i = 0; i < routing_backend_count(app->routing); i++) {
		struct routing_backend_info b;

		routing_backend_get(app->routing, i, &b);
		metrics_gauges_add_backend(g, b.proto, b.name, b.backend, b.up);
	}
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		bool panic;
		unsigned long routed;

		if (!routing_serves(app->routing, (enum dg_proto)p))
			continue;
		routing_panic_get(app->routing, (enum dg_proto)p, &panic, &routed);
		metrics_gauges_add_pool(g, dg_proto_name((enum dg_proto)p), panic, routed);
	}
}

/* Bind, drop privileges, start the hash threads. */
static int start(struct app *app, struct runtime *rt, char *err, size_t errlen)
{
	const struct dg_config *cfg = &rt->cfg;

	app->server = server_new(app->base, &app->log, rt, err, errlen);
	if (app->server == NULL)
		return -1;
	if (cfg->metrics_listen_text != NULL &&
	    (app->metrics = metrics_http_new(app->base, &app->log, cfg, collect_metrics,
					     app, err, errlen)) == NULL)
		return -1;
	if (app->metrics != NULL) {
		metrics_http_set_access(app->metrics, cfg->metrics_max_connections,
					&rt->metrics_token);
		dglog(&app->log, LOG_INFO, "metrics on http://%s/metrics", cfg->metrics_listen_text);
		warn_open_metrics(app, rt);
	}
	if (cfg->user != NULL && drop_privileges(cfg->user, err, errlen) < 0)
		return -1;
	if (cfg->user == NULL && geteuid() == 0)
		dglog(&app->log, LOG_WARNING, "running as root; set [server] user = "
		      "to drop privileges");
	app->workers = workers_new(app->base, cfg->hash_threads, HASH_QUEUE_MAX, err, errlen);
	if (app->workers == NULL)
		return -1;
	server_set_workers(app->server, app->workers);
	if (add_signals(app) < 0) {
		snprintf(err, errlen, "cannot install signal handlers");
		return -1;
	}
	return 0;
}

static void stop(struct app *app)
{
	/* the store first: lookups in flight go on without it (to the workers) */
	cluster_shutdown(app->cluster);
	/* workers next: their last completions still reply through the server */
	workers_free(app->workers);
	/* cancelled lookups still reply through the server */
	routing_shutdown(app->routing);
	metrics_http_free(app->metrics);
	server_free(app->server);
	if (app->sig_term != NULL)
		event_free(app->sig_term);
	if (app->sig_int != NULL)
		event_free(app->sig_int);
	if (app->sig_hup != NULL)
		event_free(app->sig_hup);
	if (app->drain_timer != NULL)
		event_free(app->drain_timer);
	if (app->watchdog != NULL)
		event_free(app->watchdog);
	if (app->base != NULL)
		event_base_free(app->base);
}

/* epoll changes are batched per loop turn (libevent's changelist), so a
   connection's read, write and close registrations cost fewer epoll_ctl
   calls (bench/RESULTS.md, issue 18: same req/s at 16 connections,
   1.2-1.5x at 64 against the build before). Safe here: no fd is
   dup()ed, the one case libevent warns about; an fd closed and reused
   within a turn is re-added by libevent itself. */
static struct event_base *new_base(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base;

	if (ec == NULL)
		return NULL;
	event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(ec);
	event_config_free(ec);
	return base;
}

static int run(struct app *app)
{
	char err[1024];
	struct runtime *rt;
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	/* before the event base is made: hash threads wake the loop with event_active() */
	if (evthread_use_pthreads() < 0 || (app->base = new_base()) == NULL) {
		dglog(&app->log, LOG_ERR, "cannot initialise libevent");
		return 1;
	}
	rt = runtime_load(app->config_path, false, &app->log, err, sizeof(err));
	if (rt == NULL) {
		dglog(&app->log, LOG_ERR, "%s", err);
		stop(app);
		return 1;
	}
	dglog_set_target(&app->log, rt->cfg.log_target);
	app->penalty = penalty_new();
	app->routing = routing_new(app->base, &app->log);
	app->cluster = cluster_new(app->base, &app->log);
	if (app->penalty == NULL || app->routing == NULL || app->cluster == NULL ||
	    runtime_attach_penalty(rt, app->penalty, err, sizeof(err)) < 0 ||
	    runtime_attach_routing(rt, app->routing, err, sizeof(err)) < 0) {
		dglog(&app->log, LOG_ERR, "%s", app->penalty == NULL || app->routing == NULL ||
		      app->cluster == NULL ? "out of memory for the penalty table or backends" : err);
		runtime_unref(rt);
		stop(app);
		cluster_free(app->cluster);
		penalty_free(app->penalty);
		routing_free(app->routing);
		return 1;
	}
	/* Dovecot is connected after dropping privileges, like every reconnect */
	if (start(app, rt, err, sizeof(err)) < 0 ||
	    passdb_attach(rt->passdb, app->base, &app->log, NULL, err, sizeof(err)) < 0 ||
	    runtime_attach_cluster(rt, app->cluster, err, sizeof(err)) < 0) {
		dglog(&app->log, LOG_ERR, "%s", err);
	} else {
		dglog(&app->log, LOG_INFO, "dovegate-auth " DG_VERSION " listening on %s, "
		      "%zu users, credentials mode %s", rt->cfg.listen_text,
		      passdb_user_count(rt->passdb), cred_mode_name(rt->cfg.cred_mode));
		notify_ready("serving");
		app->watchdog = notify_watchdog_start(app->base);
		/* The server holds its own reference: keeping this one would pin
		   the start-up users table and cache in memory across reloads. */
		runtime_unref(rt);
		rt = NULL;
		if (event_base_dispatch(app->base) == 0)
			rc = 0;
		dglog(&app->log, LOG_INFO, "stopped");
	}
	runtime_unref(rt);
	stop(app);
	/* after stop(): no decision is left to use them */
	cluster_free(app->cluster);
	penalty_free(app->penalty);
	routing_free(app->routing);
	return rc;
}

int main(int argc, char **argv)
{
	struct app app;
	bool test_only = false;
	int opt, rc;
	static const struct option long_options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};

	memset(&app, 0, sizeof(app));
	app.config_path = CONFIG_DEFAULT_PATH;
	dglog_init(&app.log);
	while ((opt = getopt_long(argc, argv, "c:thV", long_options, NULL)) != -1) {
		switch (opt) {
		case 'c': app.config_path = optarg; break;
		case 't': test_only = true; break;
		case 'h': usage(stdout); return 0;
		case 'V': printf("dovegate-auth %s\n", DG_VERSION); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	if (sodium_init() < 0) {
		fprintf(stderr, "dovegate-auth: cannot initialise libsodium\n");
		return 1;
	}
	rc = test_only ? test_config(&app) : run(&app);
	dglog_close(&app.log);
	return rc;
}
