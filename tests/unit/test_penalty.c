/* Brute-force state: the delay curve, IP/user scores, repeated passwords,
   success exemption, trusted networks, the attempt cap, decay, LRU bound,
   reconfiguration keeping state. Time is explicit, so everything is exact. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "penalty.h"

#define T0 1000

static struct penalty_addr addr(const char *text)
{
	struct penalty_addr a;

	assert_int_equal(penalty_addr_parse(text, &a), 0);
	return a;
}

static struct penalty *new_penalty(unsigned max_attempts)
{
	struct penalty_config cfg;
	const char *err = NULL;
	struct penalty *p = penalty_new();

	assert_non_null(p);
	penalty_config_defaults(&cfg);
	cfg.max_attempts = max_attempts;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	return p;
}

/* n failures, each with a password never used before in this program (a
   repeated one would rightly count once). */
static void fail_n(struct penalty *p, const char *ip, const char *user, unsigned n,
		   int64_t now, struct penalty_decision *d)
{
	static unsigned long guesses;           /* test-only counter */
	struct penalty_addr a = addr(ip);
	char pw[32];

	for (unsigned i = 0; i < n; i++) {
		snprintf(pw, sizeof(pw), "guess-%lu", guesses++);
		penalty_fail(p, &a, user, pw, strlen(pw), 1, now, d);
	}
}

static void test_curve(void **state)
{
	static const unsigned want[] = { 0, 1, 2, 4, 8, 15, 15, 15 };

	for (unsigned s = 0; s < sizeof(want) / sizeof(want[0]); s++)
		assert_int_equal(penalty_delay_for_score(s, 15), want[s]);
	assert_int_equal(penalty_delay_for_score(40, 15), 15);
	assert_int_equal(penalty_delay_for_score(UINT32_MAX, 15), 15);
	assert_int_equal(penalty_delay_for_score(3, 3), 3);
}

static void test_addr_parse(void **state)
{
	struct penalty_addr a, b;
	struct penalty_net n;
	const char *err;

	a = addr("192.0.2.7");
	assert_int_equal(a.family, AF_INET);
	b = addr("::ffff:192.0.2.7");       /* v4-mapped folds to IPv4 */
	assert_int_equal(b.family, AF_INET);
	assert_memory_equal(a.b, b.b, 16);
	assert_int_equal(addr("2001:db8::1").family, AF_INET6);
	assert_int_equal(penalty_addr_parse("example.com", &a), -1);
	assert_int_equal(penalty_addr_parse("", &a), -1);

	assert_int_equal(penalty_net_parse("10.1.2.3/8", &n, &err), 0);
	assert_int_equal(n.prefix, 8);
	a = addr("10.200.0.1");
	assert_true(penalty_net_contains(&n, &a));
	a = addr("11.0.0.1");
	assert_false(penalty_net_contains(&n, &a));
	a = addr("2001:db8::1");
	assert_false(penalty_net_contains(&n, &a));
	assert_int_equal(penalty_net_parse("2001:db8::/32", &n, &err), 0);
	assert_true(penalty_net_contains(&n, &a));
	assert_int_equal(penalty_net_parse("192.0.2.1", &n, &err), 0);
	assert_int_equal(n.prefix, 32);
	assert_int_equal(penalty_net_parse("10.0.0.0/33", &n, &err), -1);
	assert_int_equal(penalty_net_parse("10.0.0.0/", &n, &err), -1);
	assert_int_equal(penalty_net_parse("10.0.0.0/8x", &n, &err), -1);
	assert_int_equal(penalty_net_parse("/8", &n, &err), -1);
	assert_int_equal(penalty_net_parse("::/129", &n, &err), -1);
	assert_int_equal(penalty_net_parse("::/0", &n, &err), 0);
	assert_true(penalty_net_contains(&n, &a));
}

/* Delays 1, 2, 4, 8, 15, 15 for one IP and one user, with the log text. */
static void test_growth(void **state)
{
	static const unsigned want[] = { 1, 2, 4, 8, 15, 15 };
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;
	char pw[16];

	for (unsigned i = 0; i < 6; i++) {
		snprintf(pw, sizeof(pw), "pw%u", i);
		penalty_fail(p, &a, "alice", pw, strlen(pw), i + 1, T0 + i, &d);
		assert_int_equal(d.score, i + 1);
		assert_int_equal(d.delay, want[i]);
		assert_false(d.close);
		assert_string_equal(d.why, "counted");
	}
	assert_string_equal(d.reason, "penalty=6 delay=15 attempt=6");
	assert_int_equal(penalty_peek(p, &a, "alice", T0 + 6), 6);
	assert_int_equal(penalty_peek(p, &a, NULL, T0 + 6), 6);
	assert_int_equal(penalty_active(p, T0 + 6), 2);     /* IP and user */
	penalty_free(p);
}

static void test_repeat_counts_once(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;

	for (int i = 0; i < 5; i++)
		penalty_fail(p, &a, "alice", "same", 4, 1, T0 + i, &d);
	assert_int_equal(d.score, 1);
	assert_int_equal(d.delay, 1);
	assert_string_equal(d.why, "repeat");
	/* a new password counts; the old one still does not */
	penalty_fail(p, &a, "alice", "other", 5, 1, T0 + 6, &d);
	assert_int_equal(d.score, 2);
	penalty_fail(p, &a, "alice", "same", 4, 1, T0 + 7, &d);
	assert_int_equal(d.score, 2);
	/* NULL secret (nothing to compare): counts every time */
	penalty_fail(p, &a, "alice", NULL, 0, 1, T0 + 8, &d);
	penalty_fail(p, &a, "alice", NULL, 0, 1, T0 + 8, &d);
	assert_int_equal(d.score, 4);
	penalty_free(p);
}

/* Password spraying: one password, many users, one IP: counts per user. */
static void test_spray_counts(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("198.51.100.9");
	struct penalty_decision d;
	char user[16];

	for (int i = 0; i < 4; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		penalty_fail(p, &a, user, "Summer2024!", 11, 1, T0, &d);
	}
	assert_int_equal(d.score, 4);
	assert_int_equal(d.delay, 8);
	penalty_free(p);
}

/* Only RECENT (4) fingerprints are kept: a cycle of 5 passwords counts. */
static void test_repeat_window(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;
	char pw[8];

	for (int round = 0; round < 2; round++)
		for (int i = 0; i < 5; i++) {
			snprintf(pw, sizeof(pw), "p%d", i);
			penalty_fail(p, &a, "alice", pw, strlen(pw), 1, T0, &d);
		}
	assert_int_equal(d.score, 10);
	penalty_free(p);
}

static void test_ipv6_prefix(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_config cfg;
	struct penalty_decision d;
	const char *err;

	fail_n(p, "2001:db8:1:2::1", NULL, 3, T0, &d);
	/* same /64, other host: same bucket */
	fail_n(p, "2001:db8:1:2:ffff::9", NULL, 1, T0, &d);
	assert_int_equal(d.score, 4);
	/* other /64 */
	fail_n(p, "2001:db8:1:3::1", NULL, 1, T0, &d);
	assert_int_equal(d.score, 1);
	/* IPv4 /32 by default */
	fail_n(p, "192.0.2.1", NULL, 2, T0, &d);
	fail_n(p, "192.0.2.2", NULL, 1, T0, &d);
	assert_int_equal(d.score, 1);

	/* configurable: /24 and /48 */
	penalty_config_defaults(&cfg);
	cfg.v4_prefix = 24;
	cfg.v6_prefix = 48;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	fail_n(p, "203.0.113.1", NULL, 1, T0, &d);
	fail_n(p, "203.0.113.200", NULL, 1, T0, &d);
	assert_int_equal(d.score, 2);
	fail_n(p, "2001:db8:5:1::1", NULL, 1, T0, &d);
	fail_n(p, "2001:db8:5:2::1", NULL, 1, T0, &d);
	assert_int_equal(d.score, 2);
	penalty_free(p);
}

/* The user's score follows the user across IPs (distributed guessing). */
static void test_user_score(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_decision d;
	char ip[32];

	for (int i = 0; i < 5; i++) {
		snprintf(ip, sizeof(ip), "192.0.2.%d", i + 1);
		fail_n(p, ip, "bob", 1, T0 + i, &d);
	}
	assert_int_equal(d.score, 5);
	assert_int_equal(d.delay, 15);
	/* another user from a fresh IP is not affected */
	fail_n(p, "192.0.2.99", "carol", 1, T0, &d);
	assert_int_equal(d.score, 1);
	penalty_free(p);
}

/* A success clears the network's score and keeps it from being refused for
   exempt_after_success s; its failures still count (one valid account must
   not open a way to spray everyone else's from there). */
static void test_success_clears_and_exempts(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;
	struct penalty_admission adm;

	fail_n(p, "192.0.2.1", NULL, 4, T0, &d);
	assert_int_equal(d.delay, 8);
	penalty_success(p, &a, "alice", T0 + 1);
	assert_int_equal(penalty_peek(p, &a, NULL, T0 + 1), 0);
	penalty_fail(p, &a, "alice", "x1", 2, 1, T0 + 2, &d);
	assert_string_equal(d.why, "counted");
	assert_int_equal(d.score, 1);
	penalty_fail(p, &a, NULL, "x2", 2, 1, T0 + 3, &d);
	assert_int_equal(d.score, 2);
	assert_int_equal(d.delay, 2);
	/* past refuse_at (10) while exempt: held at most max_delay, not refused */
	fail_n(p, "192.0.2.1", NULL, 10, T0 + 4, &d);
	penalty_admit(p, &a, "carol", T0 + 5, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	assert_int_equal(adm.hold, 15);
	assert_string_equal(adm.why, "network");
	penalty_release(p, &a);
	/* after 600 s the exemption ends: refused unverified (failures kept
	   coming, so the score was never forgotten) */
	fail_n(p, "192.0.2.1", NULL, 1, T0 + 250, &d);
	fail_n(p, "192.0.2.1", NULL, 1, T0 + 500, &d);
	penalty_admit(p, &a, "carol", T0 + 600, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	penalty_release(p, &a);
	penalty_admit(p, &a, "carol", T0 + 602, &adm);
	assert_int_equal(adm.verdict, PENALTY_REFUSE);
	assert_false(adm.taken);
	penalty_free(p);
}

static void test_success_no_exemption(void **state)
{
	struct penalty *p = penalty_new();
	struct penalty_config cfg;
	struct penalty_addr a = addr("192.0.2.1"), b = addr("192.0.2.2");
	struct penalty_decision d;
	const char *err;

	penalty_config_defaults(&cfg);
	cfg.exempt_after_success = 0;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	fail_n(p, "192.0.2.1", NULL, 3, T0, &d);
	penalty_success(p, &a, NULL, T0);
	assert_int_equal(penalty_peek(p, &a, NULL, T0), 0);
	penalty_fail(p, &a, NULL, "z", 1, 1, T0, &d);
	assert_string_equal(d.why, "counted");
	/* success of an unknown IP (and no user) creates nothing */
	size_t n = penalty_entries(p);
	penalty_success(p, &b, NULL, T0);
	assert_int_equal(penalty_entries(p), n);
	penalty_free(p);
}

static void test_trusted(void **state)
{
	struct penalty *p = penalty_new();
	struct penalty_config cfg;
	struct penalty_net nets[2];
	struct penalty_addr a = addr("10.9.8.7");
	struct penalty_decision d;
	const char *err;

	assert_int_equal(penalty_net_parse("10.0.0.0/8", &nets[0], &err), 0);
	assert_int_equal(penalty_net_parse("fd00::/8", &nets[1], &err), 0);
	penalty_config_defaults(&cfg);
	cfg.trusted = nets;
	cfg.trusted_count = 2;
	cfg.max_attempts = 3;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	memset(nets, 0, sizeof(nets));          /* configure copied them */
	for (int i = 0; i < 5; i++)
		fail_n(p, "10.9.8.7", "alice", 1, T0, &d);
	assert_string_equal(d.why, "trusted");
	assert_int_equal(d.score, 0);
	assert_int_equal(d.delay, 1);
	assert_int_equal(penalty_entries(p), 0);
	assert_true(penalty_trusted(p, &a));
	a = addr("fd12::1");
	assert_true(penalty_trusted(p, &a));
	a = addr("::ffff:10.1.1.1");
	assert_true(penalty_trusted(p, &a));
	a = addr("11.0.0.1");
	assert_false(penalty_trusted(p, &a));
	/* the attempt cap still holds on a trusted network */
	a = addr("10.9.8.7");
	penalty_fail(p, &a, "alice", "q", 1, 3, T0, &d);
	assert_true(d.close);
	penalty_free(p);
}

static void test_attempt_cap(void **state)
{
	struct penalty *p = new_penalty(3);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;

	penalty_fail(p, &a, "u", "a", 1, 1, T0, &d);
	assert_false(d.close);
	penalty_fail(p, &a, "u", "b", 1, 2, T0, &d);
	assert_false(d.close);
	assert_int_equal(d.delay, 2);
	penalty_fail(p, &a, "u", "c", 1, 3, T0, &d);
	assert_true(d.close);
	assert_int_equal(d.delay, 0);
	assert_string_equal(d.reason, "penalty=3 delay=0 attempt=3");
	assert_false(penalty_attempt_over(p, 3));
	assert_true(penalty_attempt_over(p, 4));
	penalty_free(p);

	p = new_penalty(0);                     /* 0: no cap */
	penalty_fail(p, &a, "u", "a", 1, 1000, T0, &d);
	assert_false(d.close);
	assert_false(penalty_attempt_over(p, 100000));
	penalty_free(p);
}

static void test_decay(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;

	penalty_fail(p, &a, "alice", "old", 3, 1, T0, &d);
	fail_n(p, "192.0.2.1", "alice", 3, T0, &d);
	assert_int_equal(penalty_peek(p, &a, "alice", T0 + 299), 4);
	assert_int_equal(penalty_peek(p, &a, "alice", T0 + 300), 0);
	assert_int_equal(penalty_active(p, T0 + 300), 0);
	/* the forgotten score restarts from 1, and old fingerprints are gone */
	penalty_fail(p, &a, "alice", "old", 3, 1, T0 + 300, &d);
	assert_int_equal(d.score, 1);
	assert_string_equal(d.why, "counted");
	penalty_free(p);
}

static void test_lru_bound(void **state)
{
	struct penalty *p = penalty_new();
	struct penalty_config cfg;
	struct penalty_decision d;
	const char *err;
	char ip[32];
	struct penalty_addr old = addr("203.0.113.1"), hot = addr("198.51.100.1");

	penalty_config_defaults(&cfg);
	cfg.max_entries = 100;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	fail_n(p, "203.0.113.1", NULL, 2, T0, &d);  /* the oldest, a low score */
	struct penalty_addr real = addr("203.0.113.2");
	fail_n(p, "203.0.113.2", NULL, 3, T0, &d);  /* a real score */
	for (int i = 0; i < 5000; i++) {
		snprintf(ip, sizeof(ip), "10.%d.%d.1", i / 256, i % 256);
		fail_n(p, ip, NULL, 1, T0, &d);
		assert_true(penalty_entries(p) <= 100);
		/* keep one key hot: it must survive eviction */
		if (i % 50 == 0)
			penalty_fail(p, &hot, NULL, NULL, 0, 1, T0, &d);
	}
	assert_int_equal(penalty_entries(p), 100);
	assert_int_equal(penalty_peek(p, &old, NULL, T0), 0);
	assert_int_equal(penalty_peek(p, &hot, NULL, T0), 100);
	/* 5000 one-failure keys evicted each other, never the real score */
	assert_int_equal(penalty_peek(p, &real, NULL, T0), 3);

	/* shrinking on reload evicts at once and keeps the most recent */
	cfg.max_entries = 10;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	assert_int_equal(penalty_entries(p), 10);
	struct penalty_addr last = addr("10.19.135.1");    /* i = 4999 */
	assert_int_equal(penalty_peek(p, &last, NULL, T0), 1);
	penalty_free(p);
}

/* A reload (penalty_configure) keeps every score. */
static void test_reconfigure_keeps_state(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_config cfg;
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;
	const char *err;

	fail_n(p, "192.0.2.1", "alice", 3, T0, &d);
	penalty_config_defaults(&cfg);
	cfg.max_delay = 5;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	assert_int_equal(penalty_peek(p, &a, "alice", T0), 3);
	penalty_fail(p, &a, "alice", "new", 3, 1, T0, &d);
	assert_int_equal(d.score, 4);
	assert_int_equal(d.delay, 5);           /* the new cap */

	/* invalid configs are refused and change nothing */
	cfg.v4_prefix = 0;
	assert_int_equal(penalty_configure(p, &cfg, &err), -1);
	cfg.v4_prefix = 32;
	cfg.v6_prefix = 129;
	assert_int_equal(penalty_configure(p, &cfg, &err), -1);
	cfg.v6_prefix = 64;
	cfg.max_delay = 0;
	assert_int_equal(penalty_configure(p, &cfg, &err), -1);
	cfg.max_delay = 5;
	cfg.max_entries = 1;
	assert_int_equal(penalty_configure(p, &cfg, &err), -1);
	assert_non_null(err);
	assert_int_equal(penalty_peek(p, &a, "alice", T0), 4);
	penalty_free(p);
}

/* The bucket array grows with the table; lookups stay correct. */
static void test_many_keys(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_decision d;
	char user[32];

	for (int i = 0; i < 20000; i++) {
		snprintf(user, sizeof(user), "user-%d", i);
		fail_n(p, "192.0.2.1", user, 1 + i % 3, T0, &d);
	}
	assert_int_equal(penalty_entries(p), 20001);
	struct penalty_addr other = addr("192.0.2.2");
	for (int i = 0; i < 20000; i += 997) {
		snprintf(user, sizeof(user), "user-%d", i);
		assert_int_equal(penalty_peek(p, &other, user, T0), 1 + i % 3);
	}
	penalty_free(p);
}

/* Before verifying: no score, go; a score, hold for its delay; at
   refuse_at, refuse unverified; trusted networks always go. */
static void test_admit_hold_and_refuse(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_admission adm;
	struct penalty_decision d;
	static const unsigned want_hold[] = { 0, 1, 2, 4, 8, 15, 15, 15, 15, 15 };

	for (unsigned s = 0; s < 10; s++) {
		penalty_admit(p, &a, "alice", T0, &adm);
		assert_int_equal(adm.verdict, s == 0 ? PENALTY_GO : PENALTY_HOLD);
		assert_int_equal(adm.hold, want_hold[s]);
		assert_int_equal(adm.score, s);
		assert_true(adm.taken);
		penalty_release(p, &a);
		fail_n(p, "192.0.2.1", NULL, 1, T0, &d);
	}
	/* score 10: refused, success and failure alike, and nothing taken */
	penalty_admit(p, &a, "alice", T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_REFUSE);
	assert_int_equal(adm.hold, 1);          /* Auth-Wait: nothing to wait for */
	assert_int_equal(adm.score, 10);
	assert_string_equal(adm.why, "network");
	assert_false(adm.taken);
	/* refusals keep the score alive: 299 s later still refused ... */
	penalty_admit(p, &a, "alice", T0 + 299, &adm);
	assert_int_equal(adm.verdict, PENALTY_REFUSE);
	/* ... and it is forgotten forget_after s after the last attempt */
	penalty_admit(p, &a, "alice", T0 + 299 + 300, &adm);
	assert_int_equal(adm.verdict, PENALTY_GO);
	penalty_release(p, &a);
	penalty_free(p);

	/* refuse_at = 0: only held */
	struct penalty_config cfg;
	const char *err;
	p = penalty_new();
	penalty_config_defaults(&cfg);
	cfg.refuse_at = 0;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	fail_n(p, "192.0.2.1", NULL, 50, T0, &d);
	penalty_admit(p, &a, NULL, T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	assert_int_equal(adm.hold, 15);
	penalty_release(p, &a);
	penalty_free(p);
}

/* A network with a score may have max_pending logins in flight; a clean
   network is never capped, others are unaffected. */
static void test_admit_pending_cap(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr a = addr("192.0.2.1"), b = addr("198.51.100.1");
	struct penalty_admission adm;
	struct penalty_decision d;

	/* clean: 100 at once are fine (an office behind one address) */
	for (int i = 0; i < 100; i++) {
		penalty_admit(p, &b, NULL, T0, &adm);
		assert_int_equal(adm.verdict, PENALTY_GO);
	}
	for (int i = 0; i < 100; i++)
		penalty_release(p, &b);
	fail_n(p, "192.0.2.1", NULL, 1, T0, &d);         /* a score: capped now */
	for (int i = 0; i < 16; i++) {
		penalty_admit(p, &a, NULL, T0, &adm);
		assert_int_equal(adm.verdict, PENALTY_HOLD);
	}
	penalty_admit(p, &a, NULL, T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_BUSY);
	assert_int_equal(adm.hold, 1);
	assert_false(adm.taken);
	penalty_admit(p, &b, NULL, T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_GO);
	penalty_release(p, &b);
	penalty_release(p, &a);             /* one done: room for one more */
	penalty_admit(p, &a, NULL, T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	penalty_admit(p, &a, NULL, T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_BUSY);
	/* an IPv6 /64 is one network */
	struct penalty_addr v6a = addr("2001:db8:1:2::1"), v6b = addr("2001:db8:1:2::ffff");
	fail_n(p, "2001:db8:1:2::7", NULL, 1, T0, &d);
	for (int i = 0; i < 16; i++)
		penalty_admit(p, i % 2 ? &v6a : &v6b, NULL, T0, &adm);
	penalty_admit(p, &v6a, NULL, T0, &adm);
	assert_int_equal(adm.verdict, PENALTY_BUSY);
	penalty_free(p);
}

/* Guesses at bob from many addresses push bob's score up everywhere but on
   the network bob last logged in from: no lockout lever. */
static void test_known_network_no_lockout(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_addr home = addr("192.0.2.1"), other = addr("198.51.100.9");
	struct penalty_admission adm;
	struct penalty_decision d;
	char ip[32];

	penalty_success(p, &home, "bob", T0);
	for (int i = 0; i < 40; i++) {
		snprintf(ip, sizeof(ip), "203.0.%d.%d", i / 200, i % 200 + 1);
		fail_n(p, ip, "bob", 1, T0 + 1, &d);
	}
	assert_int_equal(d.score, 40);
	penalty_admit(p, &home, "bob", T0 + 2, &adm);
	assert_int_equal(adm.verdict, PENALTY_GO);
	assert_int_equal(adm.hold, 0);
	penalty_release(p, &home);
	/* from anywhere else bob's score holds and then refuses */
	penalty_admit(p, &other, "bob", T0 + 2, &adm);
	assert_int_equal(adm.verdict, PENALTY_REFUSE);
	assert_string_equal(adm.why, "user");
	/* the network's own failures still count for bob at home */
	fail_n(p, "192.0.2.1", "mallory", 3, T0 + 3, &d);
	penalty_admit(p, &home, "bob", T0 + 3, &adm);
	assert_int_equal(adm.verdict, PENALTY_HOLD);
	assert_int_equal(adm.hold, 4);
	assert_string_equal(adm.why, "network");
	penalty_release(p, &home);
	/* known_network_ttl later bob is a stranger at home again */
	penalty_admit(p, &home, "bob", T0 + 30 * 86400, &adm);
	assert_int_equal(adm.verdict, PENALTY_GO);    /* bob's score is long gone, too */
	penalty_release(p, &home);
	penalty_free(p);
}

/* Random user names fill the user keys only: network scores stay, and so
   does a real user's score. */
static void test_user_flood_keeps_networks(void **state)
{
	struct penalty *p = penalty_new();
	struct penalty_config cfg;
	struct penalty_addr attacker = addr("192.0.2.66"), victim_net = addr("198.51.100.1");
	struct penalty_decision d;
	const char *err;
	char user[32];

	penalty_config_defaults(&cfg);
	cfg.max_entries = 100;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	fail_n(p, "198.51.100.1", "alice", 5, T0, &d);
	for (int i = 0; i < 10000; i++) {
		snprintf(user, sizeof(user), "random-%d", i);
		fail_n(p, "192.0.2.66", user, 1, T0, &d);
	}
	assert_true(penalty_entries(p) <= 300);
	assert_int_equal(penalty_peek(p, &victim_net, NULL, T0), 5);
	assert_int_equal(penalty_peek(p, &attacker, NULL, T0), 10000);
	struct penalty_addr elsewhere = addr("203.0.113.5");
	assert_int_equal(penalty_peek(p, &elsewhere, "alice", T0), 5);
	penalty_free(p);
}

/* Whatever happens, a failing answer either closes or waits 1..max_delay s:
   nginx must never get an error or WAIT without Auth-Wait >= 1. */
static void test_delay_invariant(void **state)
{
	struct penalty *p = new_penalty(4);
	struct penalty_decision d;
	struct penalty_addr a;
	char ip[32], user[16], pw[16];

	for (int i = 0; i < 20000; i++) {
		uint32_t r = randombytes_uniform(1u << 20);
		snprintf(ip, sizeof(ip), "192.0.2.%u", r % 7);
		snprintf(user, sizeof(user), "u%u", (r >> 3) % 5);
		snprintf(pw, sizeof(pw), "p%u", (r >> 6) % 9);
		a = addr(ip);
		if ((r >> 10) % 11 == 0) {
			penalty_success(p, &a, user, T0 + i / 10);
			continue;
		}
		penalty_fail(p, &a, (r >> 14) % 3 ? user : NULL, pw, strlen(pw),
			     1 + (r >> 16) % 5, T0 + i / 10, &d);
		assert_true(d.close || (d.delay >= 1 && d.delay <= 15));
		assert_true(!d.close || d.delay == 0);
		assert_true(d.close == (d.attempt >= 4));
	}
	penalty_free(p);
}

/* The live-score gauge follows failures, successes, decay and eviction
   exactly, and a scrape only forgets what expired (as a failure would). */
static void test_active_count(void **state)
{
	struct penalty *p = new_penalty(0);
	struct penalty_config cfg;
	struct penalty_addr a = addr("192.0.2.1");
	struct penalty_decision d;
	const char *err = NULL;

	assert_int_equal(penalty_active(p, T0), 0);
	fail_n(p, "192.0.2.1", "alice", 1, T0, &d);            /* IP + alice */
	fail_n(p, "192.0.2.2", NULL, 2, T0 + 10, &d);          /* + IP */
	fail_n(p, "192.0.2.3", "bob", 1, T0 + 20, &d);         /* + IP + bob */
	assert_int_equal(penalty_active(p, T0 + 20), 5);
	assert_int_equal(penalty_active(p, T0 + 20), 5);       /* reading changes nothing */
	penalty_success(p, &a, "alice", T0 + 30);              /* the IP's score goes */
	assert_int_equal(penalty_active(p, T0 + 30), 4);
	assert_int_equal(penalty_peek(p, &a, "alice", T0 + 30), 1);
	/* alice's score (T0) expires first, then 192.0.2.2's (T0 + 10) */
	assert_int_equal(penalty_active(p, T0 + 299), 4);
	assert_int_equal(penalty_active(p, T0 + 300), 3);
	assert_int_equal(penalty_peek(p, &a, "alice", T0 + 300), 0);
	assert_int_equal(penalty_active(p, T0 + 310), 2);
	/* a new failure moves a key to the front, or brings one back (alice,
	   and her IP: exempt, but its failures count) */
	fail_n(p, "192.0.2.3", NULL, 1, T0 + 315, &d);
	fail_n(p, "192.0.2.1", "alice", 1, T0 + 316, &d);
	assert_int_equal(penalty_active(p, T0 + 316), 4);
	assert_int_equal(penalty_active(p, T0 + 320), 3);      /* bob's, from T0 + 20 */
	/* eviction takes scored keys off the count too: two networks stay, the
	   most recent (.4 and .1; .3's score goes with it) */
	fail_n(p, "192.0.2.4", NULL, 1, T0 + 317, &d);
	assert_int_equal(penalty_active(p, T0 + 320), 4);
	penalty_config_defaults(&cfg);
	cfg.max_attempts = 0;
	cfg.max_entries = 2;
	assert_int_equal(penalty_configure(p, &cfg, &err), 0);
	assert_int_equal(penalty_active(p, T0 + 320), 3);
	assert_int_equal(penalty_peek(p, &a, "alice", T0 + 320), 1);
	penalty_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_curve),
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_growth),
		cmocka_unit_test(test_repeat_counts_once),
		cmocka_unit_test(test_spray_counts),
		cmocka_unit_test(test_repeat_window),
		cmocka_unit_test(test_ipv6_prefix),
		cmocka_unit_test(test_user_score),
		cmocka_unit_test(test_success_clears_and_exempts),
		cmocka_unit_test(test_success_no_exemption),
		cmocka_unit_test(test_admit_hold_and_refuse),
		cmocka_unit_test(test_admit_pending_cap),
		cmocka_unit_test(test_known_network_no_lockout),
		cmocka_unit_test(test_user_flood_keeps_networks),
		cmocka_unit_test(test_trusted),
		cmocka_unit_test(test_attempt_cap),
		cmocka_unit_test(test_decay),
		cmocka_unit_test(test_lru_bound),
		cmocka_unit_test(test_reconfigure_keeps_state),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_delay_invariant),
		cmocka_unit_test(test_active_count),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
