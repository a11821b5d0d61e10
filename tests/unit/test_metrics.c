/* Prometheus rendering: counters per label set, the bounded reason table,
   histogram bucket edges, penalty and reload counters, gauges and label
   escaping. The integration test checks the same against real logins. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authhttp.h"
#include "metrics.h"
#include "metrics_http.h"

static char *render(const struct metrics_gauges *g)
{
	struct evbuffer *out = evbuffer_new();
	size_t len;
	char *text;

	assert_non_null(out);
	assert_int_equal(metrics_render(out, g), 0);
	len = evbuffer_get_length(out);
	text = malloc(len + 1);
	assert_non_null(text);
	evbuffer_remove(out, text, len);
	text[len] = '\0';
	evbuffer_free(out);
	return text;
}

/* The whole sample line "name{labels} value" must be there. */
static void assert_line(const char *text, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (strstr(text, want) == NULL)
		fail_msg("missing line: %s\nin:\n%s", line, text);
}

static int reset(void **state)
{
	metrics_reset();
	return 0;
}

static void test_requests_and_failures(void **state)
{
	struct metrics_gauges g = { 0 };
	char *text;

	metrics_decision(DG_PROTO_IMAP, AUTHHTTP_METHOD_PLAIN, "ok", NULL, "miss", -1, 0.002);
	metrics_decision(DG_PROTO_IMAP, AUTHHTTP_METHOD_PLAIN, "ok", NULL, "hit", -1, 0.0001);
	metrics_decision(DG_PROTO_POP3, AUTHHTTP_METHOD_APOP, "fail", "bad_password", "miss", 2, 0.01);
	metrics_decision(-1, -1, "error", "bad_secret", NULL, -1, 0.0);
	metrics_decision(DG_PROTO_SMTP, AUTHHTTP_METHOD_PLAIN, "error", "temp_fail", "off", -1, 0.5);
	text = render(&g);
	assert_line(text, "dovegate_auth_requests_total{proto=\"imap\",method=\"plain\",result=\"ok\"} 2");
	assert_line(text, "dovegate_auth_requests_total{proto=\"pop3\",method=\"apop\",result=\"fail\"} 1");
	assert_line(text, "dovegate_auth_requests_total{proto=\"unknown\",method=\"missing\",result=\"error\"} 1");
	assert_line(text, "dovegate_auth_failures_total{proto=\"pop3\",result=\"fail\",reason=\"bad_password\"} 1");
	assert_line(text, "dovegate_auth_failures_total{proto=\"unknown\",result=\"error\",reason=\"bad_secret\"} 1");
	assert_line(text, "dovegate_auth_cache_hits_total 1");
	assert_line(text, "dovegate_auth_cache_misses_total 2");
	assert_line(text, "dovegate_auth_passdb_errors_total 1");
	assert_line(text, "dovegate_auth_penalty_delays_total 1");
	assert_line(text, "dovegate_auth_penalty_delay_seconds_total 2");
	assert_line(text, "dovegate_auth_penalty_closes_total 0");
	/* series never seen are not invented */
	assert_null(strstr(text, "{proto=\"imap\",method=\"plain\",result=\"fail\"}"));
	free(text);
}

static void test_histogram_edges(void **state)
{
	struct metrics_gauges g = { 0 };
	char *text;

	metrics_decision(0, 0, "ok", NULL, NULL, -1, 0.001);    /* le is "<=": in 0.001 */
	metrics_decision(0, 0, "ok", NULL, NULL, -1, 0.0010001);
	metrics_decision(0, 0, "ok", NULL, NULL, -1, 100.0);    /* only +Inf */
	text = render(&g);
	assert_line(text, "dovegate_auth_request_duration_seconds_bucket{le=\"0.0005\"} 0");
	assert_line(text, "dovegate_auth_request_duration_seconds_bucket{le=\"0.001\"} 1");
	assert_line(text, "dovegate_auth_request_duration_seconds_bucket{le=\"0.0025\"} 2");
	assert_line(text, "dovegate_auth_request_duration_seconds_bucket{le=\"30\"} 2");
	assert_line(text, "dovegate_auth_request_duration_seconds_bucket{le=\"+Inf\"} 3");
	assert_line(text, "dovegate_auth_request_duration_seconds_count 3");
	assert_non_null(strstr(text, "dovegate_auth_request_duration_seconds_sum 100.002"));
	free(text);
}

static void test_reason_table_is_bounded(void **state)
{
	struct metrics_gauges g = { 0 };
	char reason[32], line[160];
	char *text;

	for (int i = 0; i < METRICS_MAX_REASONS + 5; i++) {
		snprintf(reason, sizeof(reason), "reason_%d", i);
		metrics_decision(0, 0, "fail", reason, NULL, -1, 0);
	}
	/* not a plain token: never a label */
	metrics_decision(0, 0, "fail", "evil\"} 1\nx{", NULL, -1, 0);
	text = render(&g);
	snprintf(line, sizeof(line), "dovegate_auth_failures_total{proto=\"imap\","
		 "result=\"fail\",reason=\"reason_%d\"} 1", METRICS_MAX_REASONS - 1);
	assert_line(text, line);
	assert_null(strstr(text, "reason_" "32\""));
	assert_line(text, "dovegate_auth_failures_total{proto=\"imap\",result=\"fail\",reason=\"other\"} 6");
	assert_null(strstr(text, "evil"));
	free(text);
}

static void test_reloads_close_and_gauges(void **state)
{
	struct metrics_gauges g = { .in_flight = 3, .users = 7, .penalty_enabled = true,
				    .penalty_active = 2, .penalty_entries = 5 };
	char *text;

	metrics_reload(true);
	metrics_reload(true);
	metrics_reload(false);
	metrics_decision(0, 0, "fail", "bad_password", NULL, 0, 0);
	metrics_gauges_add_backend(&g, "imap", "mx1", "10.0.0.5:143", true);
	metrics_gauges_add_backend(&g, "pop3", "", "[2001:db8::1]:110", false);
	metrics_gauges_add_backend(&g, "smtp", "odd\"name\\", "10.0.0.6:587", true);
	text = render(&g);
	assert_line(text, "dovegate_auth_reloads_total{result=\"ok\"} 2");
	assert_line(text, "dovegate_auth_reloads_total{result=\"failed\"} 1");
	assert_line(text, "dovegate_auth_penalty_closes_total 1");
	assert_line(text, "dovegate_auth_penalty_delays_total 0");
	assert_line(text, "dovegate_auth_in_flight_requests 3");
	assert_line(text, "dovegate_auth_users 7");
	assert_line(text, "dovegate_auth_penalty_active 2");
	assert_line(text, "dovegate_auth_penalty_entries 5");
	assert_line(text, "dovegate_auth_backend_up{proto=\"imap\",name=\"mx1\",backend=\"10.0.0.5:143\"} 1");
	assert_line(text, "dovegate_auth_backend_up{proto=\"pop3\",name=\"\",backend=\"[2001:db8::1]:110\"} 0");
	assert_line(text, "dovegate_auth_backend_up{proto=\"smtp\",name=\"odd\\\"name\\\\\",backend=\"10.0.0.6:587\"} 1");
	free(text);
}

/* The metrics listener's refusals, by a fixed reason, and its connections. */
static void test_scrape_refusals(void **state)
{
	struct metrics_gauges g = { .metrics_connections = 2 };
	char *text;

	text = render(&g);
	assert_line(text, "dovegate_auth_metrics_refused_total{reason=\"max_connections\"} 0");
	assert_line(text, "dovegate_auth_metrics_refused_total{reason=\"unauthorized\"} 0");
	free(text);
	metrics_scrape_refused(METRICS_REFUSED_CONNECTIONS);
	metrics_scrape_refused(METRICS_REFUSED_UNAUTHORIZED);
	metrics_scrape_refused(METRICS_REFUSED_UNAUTHORIZED);
	metrics_scrape_refused(METRICS_REFUSED_COUNT);          /* ignored */
	text = render(&g);
	assert_line(text, "dovegate_auth_metrics_refused_total{reason=\"max_connections\"} 1");
	assert_line(text, "dovegate_auth_metrics_refused_total{reason=\"unauthorized\"} 2");
	assert_line(text, "dovegate_auth_metrics_connections 2");
	free(text);
}

/* Which [metrics] listen addresses are loopback (no start-up warning when
   there is no bearer token). */
static void test_listen_is_loopback(void **state)
{
	static const struct { const char *ip; bool loopback; } cases[] = {
		{ "127.0.0.1", true }, { "127.1.2.3", true }, { "::1", true },
		{ "0.0.0.0", false }, { "10.0.0.2", false }, { "128.0.0.1", false },
		{ "::", false }, { "::ffff:127.0.0.1", false }, { "2001:db8::1", false },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct dg_listen l;
		struct sockaddr_in *sin = (struct sockaddr_in *)&l.addr;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&l.addr;

		memset(&l, 0, sizeof(l));
		if (inet_pton(AF_INET, cases[i].ip, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
		} else {
			assert_int_equal(inet_pton(AF_INET6, cases[i].ip, &sin6->sin6_addr), 1);
			sin6->sin6_family = AF_INET6;
		}
		if (metrics_listen_is_loopback(&l) != cases[i].loopback)
			fail_msg("%s: expected %s", cases[i].ip,
				 cases[i].loopback ? "loopback" : "not loopback");
	}
}

static void test_penalty_off_has_no_penalty_gauges(void **state)
{
	struct metrics_gauges g = { 0 };
	char *text = render(&g);

	assert_null(strstr(text, "dovegate_auth_penalty_active"));
	assert_non_null(strstr(text, "\ndovegate_auth_build_info{version=\"" DG_VERSION "\"} 1\n"));
	assert_null(strstr(text, "dovegate_auth_backend_up"));
	/* every family is announced once, with HELP and TYPE */
	assert_non_null(strstr(text, "# TYPE dovegate_auth_request_duration_seconds histogram\n"));
	assert_non_null(strstr(text, "# TYPE dovegate_auth_requests_total counter\n"));
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_requests_and_failures, reset),
		cmocka_unit_test_setup(test_histogram_edges, reset),
		cmocka_unit_test_setup(test_reason_table_is_bounded, reset),
		cmocka_unit_test_setup(test_reloads_close_and_gauges, reset),
		cmocka_unit_test_setup(test_penalty_off_has_no_penalty_gauges, reset),
		cmocka_unit_test_setup(test_scrape_refusals, reset),
		cmocka_unit_test(test_listen_is_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
