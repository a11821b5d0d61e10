/* The resolver's answer cache (dns.h): a name resolved lately is answered
   without a new lookup, names compare case-insensitively, the table stays
   bounded, and with no reuse time every login asks again. Names come from
   a hosts(5) file of the test's own (evdns answers those like DNS ones). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dns.h"

#define NAMES (DNS_CACHE_MAX + 44)

struct fx {
	char hosts[64];
	struct event_base *base;
	struct dns *dns;
};

struct answer {
	bool done;
	char ip[64];
	char error[64];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];
	FILE *fp;
	int fd;

	strcpy(f->hosts, "/tmp/dg-test-dns-XXXXXX");
	fd = mkstemp(f->hosts);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	assert_non_null(fp);
	fprintf(fp, "192.0.2.10 imap1.example.test\n");
	for (int i = 0; i < NAMES; i++)
		fprintf(fp, "10.0.%d.%d host%d.example.test\n", i / 200, i % 200 + 1, i);
	assert_int_equal(fclose(fp), 0);
	f->base = event_base_new();
	assert_non_null(f->base);
	f->dns = dns_new(f->base, err, sizeof(err));
	assert_non_null(f->dns);
	assert_int_equal(dns_load_hosts(f->dns, f->hosts), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	dns_free(f->dns);
	event_base_free(f->base);
	unlink(f->hosts);
	free(f);
	return 0;
}

static void on_done(void *ctx, const char *ip, const char *error)
{
	struct answer *a = ctx;

	a->done = true;
	snprintf(a->ip, sizeof(a->ip), "%s", ip != NULL ? ip : "");
	snprintf(a->error, sizeof(a->error), "%s", error != NULL ? error : "");
}

/* The answer for host, running the loop until it comes (bounded). */
static struct answer resolve(struct fx *f, const char *host)
{
	struct answer a = { 0 };

	dns_resolve(f->dns, host, on_done, &a);
	for (int i = 0; i < 1000 && !a.done; i++)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	assert_true(a.done);
	return a;
}

static void test_answer_reused(void **state)
{
	struct fx *f = *state;
	struct answer a = resolve(f, "imap1.example.test");
	size_t asked = dns_queries(f->dns);

	assert_string_equal(a.ip, "192.0.2.10");
	assert_string_equal(a.error, "");
	a = resolve(f, "imap1.example.test");
	assert_string_equal(a.ip, "192.0.2.10");
	a = resolve(f, "IMAP1.Example.TEST");
	assert_string_equal(a.ip, "192.0.2.10");
	assert_int_equal(dns_queries(f->dns), asked);
}

static void test_no_reuse_time_asks_every_time(void **state)
{
	struct fx *f = *state;
	size_t asked;

	dns_set_cache_ttl(f->dns, 0);
	asked = dns_queries(f->dns);
	for (int i = 0; i < 3; i++)
		assert_string_equal(resolve(f, "imap1.example.test").ip, "192.0.2.10");
	assert_int_equal(dns_queries(f->dns), asked + 3);
}

static void test_table_is_bounded(void **state)
{
	struct fx *f = *state;
	char host[64], want[32];
	size_t asked = dns_queries(f->dns);

	for (int i = 0; i < NAMES; i++) {
		snprintf(host, sizeof(host), "host%d.example.test", i);
		snprintf(want, sizeof(want), "10.0.%d.%d", i / 200, i % 200 + 1);
		assert_string_equal(resolve(f, host).ip, want);
	}
	assert_int_equal(dns_queries(f->dns), asked + NAMES);
	/* the latest name is kept ... */
	snprintf(host, sizeof(host), "host%d.example.test", NAMES - 1);
	resolve(f, host);
	assert_int_equal(dns_queries(f->dns), asked + NAMES);
	/* ... but not all of them: at most DNS_CACHE_MAX are (the oldest go
	   first, so the first names are asked for again) */
	asked = dns_queries(f->dns);
	for (int i = 0; i < NAMES; i++) {
		snprintf(host, sizeof(host), "host%d.example.test", i);
		resolve(f, host);
	}
	assert_true(dns_queries(f->dns) >= asked + (NAMES - DNS_CACHE_MAX));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_answer_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_reuse_time_asks_every_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table_is_bounded, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
