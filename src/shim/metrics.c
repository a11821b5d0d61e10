#include "metrics.h"

#include <event2/buffer.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "authhttp.h"

#ifndef DG_VERSION
#define DG_VERSION "unknown"
#endif

#define PROTO_UNKNOWN DG_PROTO_COUNT            /* not sent or not one we know */
#define PROTO_SLOTS (DG_PROTO_COUNT + 1)
#define METHOD_MISSING (AUTHHTTP_METHOD_OTHER + 1)
#define METHOD_SLOTS (AUTHHTTP_METHOD_OTHER + 2)
#define REASON_OTHER METRICS_MAX_REASONS        /* table full or odd text */
#define REASON_LEN 32

enum { RESULT_OK, RESULT_FAIL, RESULT_ERROR, RESULT_COUNT };

static const char *const result_names[RESULT_COUNT] = { "ok", "fail", "error" };

/* Seconds. A cache hit takes ~0.1 ms, a SHA512-CRYPT check a few ms, ARGON2ID
   tens of ms, a Dovecot passdb up to its timeout (20 s by default). */
static const double buckets[] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
};
#define BUCKET_COUNT (sizeof(buckets) / sizeof(buckets[0]))

static struct {
	uint64_t requests[PROTO_SLOTS][METHOD_SLOTS][RESULT_COUNT];
	/* reasons in order of first use; failures[..][REASON_OTHER] is "other" */
	char reasons[METRICS_MAX_REASONS][REASON_LEN];
	size_t reason_count;
	uint64_t failures[PROTO_SLOTS][RESULT_COUNT][METRICS_MAX_REASONS + 1];
	uint64_t duration[BUCKET_COUNT + 1];    /* per bucket, not cumulative; last: +Inf */
	uint64_t duration_count;
	double duration_sum;
	uint64_t cache_hits, cache_misses;
	uint64_t penalty_delays, penalty_delay_seconds, penalty_closes;
	uint64_t penalty_holds, penalty_hold_seconds;
	uint64_t passdb_errors;
	uint64_t reloads_ok, reloads_failed;
	uint64_t scrapes_refused[METRICS_REFUSED_COUNT];
	uint64_t cluster_fallbacks;
	uint64_t cluster_assignments[3];        /* honoured created replaced */
} m;

static const char *const assignment_names[3] = { "honoured", "created", "replaced" };

void metrics_reset(void)
{
	memset(&m, 0, sizeof(m));
}

/* ---- counting ------------------------------------------------------------- */

static size_t result_slot(const char *result)
{
	for (size_t i = 0; i < RESULT_COUNT; i++) {
		if (result != NULL && strcmp(result, result_names[i]) == 0)
			return i;
	}
	return RESULT_ERROR;
}

/* Reasons are code constants, but the table is bounded anyway and takes
   only plain tokens, so nothing a client sends can become a label. */
static size_t reason_slot(const char *reason)
{
	size_t len = reason != NULL ? strlen(reason) : 0;

	if (len == 0 || len >= REASON_LEN ||
	    strspn(reason, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
		return REASON_OTHER;
	for (size_t i = 0; i < m.reason_count; i++) {
		if (strcmp(m.reasons[i], reason) == 0)
			return i;
	}
	if (m.reason_count == METRICS_MAX_REASONS)
		return REASON_OTHER;
	memcpy(m.reasons[m.reason_count], reason, len + 1);
	return m.reason_count++;
}

static void observe_duration(double seconds)
{
	size_t i = 0;

	if (seconds < 0)
		seconds = 0;
	while (i < BUCKET_COUNT && seconds > buckets[i])
		i++;
	m.duration[i]++;
	m.duration_count++;
	m.duration_sum += seconds;
}

void metrics_decision(int proto, int method, const char *result, const char *reason,
		      const char *cache, int delay, double seconds)
{
	size_t p = proto >= 0 && proto < DG_PROTO_COUNT ? (size_t)proto : PROTO_UNKNOWN;
	size_t me = method >= 0 && method <= AUTHHTTP_METHOD_OTHER ? (size_t)method :
		    METHOD_MISSING;
	size_t r = result_slot(result);

	m.requests[p][me][r]++;
	if (r != RESULT_OK) {
		size_t why = reason_slot(reason);

		m.failures[p][r][why]++;
		if (r == RESULT_ERROR && why != REASON_OTHER &&
		    strcmp(m.reasons[why], "temp_fail") == 0)
			m.passdb_errors++;
	}
	if (cache != NULL && strcmp(cache, "hit") == 0)
		m.cache_hits++;
	else if (cache != NULL && strcmp(cache, "miss") == 0)
		m.cache_misses++;
	if (delay == 0)
		m.penalty_closes++;
	else if (delay > 0) {
		m.penalty_delays++;
		m.penalty_delay_seconds += (uint64_t)delay;
	}
	observe_duration(seconds);
}

void metrics_penalty_hold(unsigned seconds)
{
	m.penalty_holds++;
	m.penalty_hold_seconds += seconds;
}

void metrics_reload(bool ok)
{
	if (ok)
		m.reloads_ok++;
	else
		m.reloads_failed++;
}

void metrics_cluster_login(bool shared, const char *assignment)
{
	if (!shared)
		m.cluster_fallbacks++;
	for (size_t i = 0; assignment != NULL && i < 3; i++)
		if (strcmp(assignment, assignment_names[i]) == 0)
			m.cluster_assignments[i]++;
}

void metrics_scrape_refused(enum metrics_refusal why)
{
	if ((unsigned)why < METRICS_REFUSED_COUNT)
		m.scrapes_refused[why]++;
}

void metrics_gauges_add_backend(struct metrics_gauges *g, const char *proto,
				const char *name, const char *backend, bool up)
{
	struct metrics_backend_state *b;

	if (g->backend_count == METRICS_MAX_BACKENDS)
		return;
	b = &g->backends[g->backend_count++];
	snprintf(b->proto, sizeof(b->proto), "%s", proto != NULL ? proto : "");
	snprintf(b->name, sizeof(b->name), "%s", name != NULL ? name : "");
	snprintf(b->backend, sizeof(b->backend), "%s", backend != NULL ? backend : "");
	b->up = up;
}

void metrics_gauges_add_pool(struct metrics_gauges *g, const char *proto, bool panic,
			     unsigned long panic_routes)
{
	struct metrics_pool_state *p;

	if (g->pool_count == METRICS_MAX_POOLS)
		return;
	p = &g->pools[g->pool_count++];
	snprintf(p->proto, sizeof(p->proto), "%s", proto != NULL ? proto : "");
	p->panic = panic;
	p->panic_routes = panic_routes;
}

/* ---- rendering -------------------------------------------------------------- */

struct writer {
	struct evbuffer *out;
	int failed;
};

static void put(struct writer *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void put(struct writer *w, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(w->out, fmt, ap) < 0)
		w->failed = 1;
	va_end(ap);
}

static void family(struct writer *w, const char *name, const char *type, const char *help)
{
	put(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *proto_label(size_t p)
{
	return p == PROTO_UNKNOWN ? "unknown" : dg_proto_name((enum dg_proto)p);
}

static const char *method_label(size_t me)
{
	static const char *const names[METHOD_SLOTS] = {
		[AUTHHTTP_METHOD_PLAIN] = "plain", [AUTHHTTP_METHOD_NONE] = "none",
		[AUTHHTTP_METHOD_APOP] = "apop", [AUTHHTTP_METHOD_CRAM_MD5] = "cram-md5",
		[AUTHHTTP_METHOD_EXTERNAL] = "external", [AUTHHTTP_METHOD_OTHER] = "other",
		[METHOD_MISSING] = "missing",
	};

	return names[me];
}

/* Label values need \\, \" and \n escaped (backend names come from the config). */
static void escape_label(const char *in, char *out, size_t outlen)
{
	size_t o = 0;

	for (; *in != '\0' && o + 3 < outlen; in++) {
		if (*in == '\\' || *in == '"' || *in == '\n') {
			out[o++] = '\\';
			out[o++] = *in == '\n' ? 'n' : *in;
		} else {
			out[o++] = *in;
		}
	}
	out[o] = '\0';
}

static void render_requests(struct writer *w)
{
	family(w, "dovegate_auth_requests_total", "counter",
	       "Login decisions by protocol, Auth-Method and result (ok, fail, error).");
	for (size_t p = 0; p < PROTO_SLOTS; p++)
		for (size_t me = 0; me < METHOD_SLOTS; me++)
			for (size_t r = 0; r < RESULT_COUNT; r++) {
				if (m.requests[p][me][r] == 0)
					continue;
				put(w, "dovegate_auth_requests_total{proto=\"%s\",method=\"%s\","
				    "result=\"%s\"} %llu\n", proto_label(p), method_label(me),
				    result_names[r], (unsigned long long)m.requests[p][me][r]);
			}
}

static void render_failures(struct writer *w)
{
	family(w, "dovegate_auth_failures_total", "counter",
	       "Failed (fail) and temporarily failed (error) decisions by reason, "
	       "as in the decision log line.");
	for (size_t p = 0; p < PROTO_SLOTS; p++)
		for (size_t r = RESULT_FAIL; r < RESULT_COUNT; r++)
			for (size_t i = 0; i <= METRICS_MAX_REASONS; i++) {
				uint64_t n = m.failures[p][r][i];

				if (n == 0)
					continue;
				put(w, "dovegate_auth_failures_total{proto=\"%s\",result=\"%s\","
				    "reason=\"%s\"} %llu\n", proto_label(p), result_names[r],
				    i == REASON_OTHER ? "other" : m.reasons[i],
				    (unsigned long long)n);
			}
}

static void render_duration(struct writer *w)
{
	uint64_t cumulative = 0;

	family(w, "dovegate_auth_request_duration_seconds", "histogram",
	       "Time from nginx's request to dovegate-auth's answer (holds before verifying "
	       "included, Auth-Wait not).");
	for (size_t i = 0; i < BUCKET_COUNT; i++) {
		cumulative += m.duration[i];
		put(w, "dovegate_auth_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
		    buckets[i], (unsigned long long)cumulative);
	}
	put(w, "dovegate_auth_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
	    (unsigned long long)m.duration_count);
	put(w, "dovegate_auth_request_duration_seconds_sum %.9f\n", m.duration_sum);
	put(w, "dovegate_auth_request_duration_seconds_count %llu\n",
	    (unsigned long long)m.duration_count);
}

static void counter(struct writer *w, const char *name, const char *help, uint64_t v)
{
	family(w, name, "counter", help);
	put(w, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge(struct writer *w, const char *name, const char *help, size_t v)
{
	family(w, name, "gauge", help);
	put(w, "%s %zu\n", name, v);
}

static void render_counters(struct writer *w)
{
	counter(w, "dovegate_auth_cache_hits_total",
		"Logins answered from the verified-login cache.", m.cache_hits);
	counter(w, "dovegate_auth_cache_misses_total",
		"Logins the cache did not know (the password was verified).", m.cache_misses);
	counter(w, "dovegate_auth_passdb_errors_total",
		"Temporary failures (reason temp_fail): users file not loaded, Dovecot "
		"auth unreachable or TEMP.", m.passdb_errors);
	counter(w, "dovegate_auth_penalty_delays_total",
		"Failed logins answered with a brute-force Auth-Wait delay.", m.penalty_delays);
	counter(w, "dovegate_auth_penalty_delay_seconds_total",
		"Sum of those Auth-Wait delays, seconds.", m.penalty_delay_seconds);
	counter(w, "dovegate_auth_penalty_holds_total",
		"Logins held before they were verified (a network or user with a score).",
		m.penalty_holds);
	counter(w, "dovegate_auth_penalty_hold_seconds_total",
		"Sum of those holds, seconds.", m.penalty_hold_seconds);
	counter(w, "dovegate_auth_penalty_closes_total",
		"Failed logins at the attempt cap (no Auth-Wait: nginx closes).",
		m.penalty_closes);
	family(w, "dovegate_auth_reloads_total", "counter",
	       "Configuration reloads (SIGHUP) by result; a failed one keeps the old config.");
	put(w, "dovegate_auth_reloads_total{result=\"ok\"} %llu\n",
	    (unsigned long long)m.reloads_ok);
	put(w, "dovegate_auth_reloads_total{result=\"failed\"} %llu\n",
	    (unsigned long long)m.reloads_failed);
	family(w, "dovegate_auth_metrics_refused_total", "counter",
	       "Metrics connections past max_connections, and scrapes without the "
	       "bearer token.");
	put(w, "dovegate_auth_metrics_refused_total{reason=\"max_connections\"} %llu\n",
	    (unsigned long long)m.scrapes_refused[METRICS_REFUSED_CONNECTIONS]);
	put(w, "dovegate_auth_metrics_refused_total{reason=\"unauthorized\"} %llu\n",
	    (unsigned long long)m.scrapes_refused[METRICS_REFUSED_UNAUTHORIZED]);
}

static void render_backends(struct writer *w, const struct metrics_gauges *g)
{
	char proto[2 * sizeof(g->backends[0].proto)], name[2 * sizeof(g->backends[0].name)];
	char backend[2 * sizeof(g->backends[0].backend)];

	if (g->backend_count == 0)
		return;
	family(w, "dovegate_auth_backend_up", "gauge",
	       "Backend health by protocol: 1 up, 0 down (active health checks).");
	for (size_t i = 0; i < g->backend_count; i++) {
		escape_label(g->backends[i].proto, proto, sizeof(proto));
		escape_label(g->backends[i].name, name, sizeof(name));
		escape_label(g->backends[i].backend, backend, sizeof(backend));
		put(w, "dovegate_auth_backend_up{proto=\"%s\",name=\"%s\",backend=\"%s\"} %d\n",
		    proto, name, backend, g->backends[i].up ? 1 : 0);
	}
}

static void render_pools(struct writer *w, const struct metrics_gauges *g)
{
	char proto[2 * sizeof(g->pools[0].proto)];

	if (g->pool_count == 0)
		return;
	family(w, "dovegate_auth_pool_panic", "gauge",
	       "1 while every backend of the pool is down and logins go to them anyway.");
	for (size_t i = 0; i < g->pool_count; i++) {
		escape_label(g->pools[i].proto, proto, sizeof(proto));
		put(w, "dovegate_auth_pool_panic{proto=\"%s\"} %d\n", proto,
		    g->pools[i].panic ? 1 : 0);
	}
	family(w, "dovegate_auth_panic_routes_total", "counter",
	       "Logins routed to a backend marked down because the whole pool was.");
	for (size_t i = 0; i < g->pool_count; i++) {
		escape_label(g->pools[i].proto, proto, sizeof(proto));
		put(w, "dovegate_auth_panic_routes_total{proto=\"%s\"} %lu\n", proto,
		    g->pools[i].panic_routes);
	}
}

static void render_cluster(struct writer *w, const struct metrics_gauges *g)
{
	if (!g->cluster_on)
		return;
	gauge(w, "dovegate_auth_cluster_store_up",
	      "1 while the cluster store answers, 0 while logins use local state.",
	      g->cluster_up ? 1 : 0);
	counter(w, "dovegate_auth_cluster_commands_total",
		"Commands sent to the cluster store.", g->cluster_commands);
	counter(w, "dovegate_auth_cluster_errors_total",
		"Cluster store faults: error replies, timeouts, lost connections.",
		g->cluster_errors);
	counter(w, "dovegate_auth_cluster_store_downs_total",
		"Times the cluster store connection went from up to down.", g->cluster_downs);
	counter(w, "dovegate_auth_cluster_fallbacks_total",
		"Logins decided on this edge's own state (the store did not answer).",
		m.cluster_fallbacks);
	family(w, "dovegate_auth_cluster_assignments_total", "counter",
	       "Logins routed by a user's backend assignment: honoured, created or "
	       "replaced (the assigned backend was unusable).");
	for (size_t i = 0; i < 3; i++)
		put(w, "dovegate_auth_cluster_assignments_total{result=\"%s\"} %llu\n",
		    assignment_names[i], (unsigned long long)m.cluster_assignments[i]);
}

static void render_gauges(struct writer *w, const struct metrics_gauges *g)
{
	/* which version answers, e.g. across hosts during a rolling upgrade */
	family(w, "dovegate_auth_build_info", "gauge", "Always 1; the version as a label.");
	put(w, "dovegate_auth_build_info{version=\"%s\"} 1\n", DG_VERSION);
	gauge(w, "dovegate_auth_in_flight_requests",
	      "auth_http requests being answered.", g->in_flight);
	gauge(w, "dovegate_auth_users", "Users in the loaded users files.", g->users);
	gauge(w, "dovegate_auth_metrics_connections",
	      "Connections open on the metrics listener (this scrape's included).",
	      g->metrics_connections);
	if (g->penalty_enabled) {
		gauge(w, "dovegate_auth_penalty_active",
		      "Client networks and users with a live failure score.", g->penalty_active);
		gauge(w, "dovegate_auth_penalty_entries",
		      "Networks and users held by the penalty table (max_entries bounds it).",
		      g->penalty_entries);
	}
	render_backends(w, g);
	render_pools(w, g);
	render_cluster(w, g);
}

int metrics_render(struct evbuffer *out, const struct metrics_gauges *g)
{
	struct writer w = { out, 0 };

	render_requests(&w);
	render_failures(&w);
	render_duration(&w);
	render_counters(&w);
	render_gauges(&w, g);
	return w.failed ? -1 : 0;
}
