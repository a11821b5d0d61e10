/* Backend choice: weighted rendezvous hashing. Stickiness, order
   independence, balance over 100k users (equal and 1:2 weights), minimal
   movement when a backend is added, removed or marked down. The measured
   numbers are printed so regressions are visible, and asserted in bounds. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"

#define USERS 100000
/* the known answers for ROUTE_KEY_DEFAULT and mail1..mail5 */
#define KNOWN_ALICE "mail5"
#define KNOWN_BOB "mail4"
#define KNOWN_CAROL "mail5"

static void user_name(int i, char *buf, size_t len)
{
	snprintf(buf, len, "user%d@example.org", i);
}

static void add(struct route_pool *pool, const char *spec, unsigned weight, const char *id)
{
	const char *err = NULL;

	assert_true(route_pool_add(pool, spec, weight, id, &err) >= 0);
}

static void pool_n(struct route_pool *pool, int n, unsigned weight)
{
	unsigned char key[ROUTE_KEY_BYTES];
	char spec[32], id[32];

	route_key_derive(NULL, key);
	route_pool_init(pool, key);
	for (int i = 0; i < n; i++) {
		snprintf(spec, sizeof(spec), "10.0.0.%d:143", i + 1);
		snprintf(id, sizeof(id), "mail%d", i + 1);
		add(pool, spec, weight, id);
	}
}

/* picks[i] = the identity number ("mailN" -> N) user i lands on. */
static void pick_all(const struct route_pool *pool, int *picks)
{
	char user[48];

	for (int i = 0; i < USERS; i++) {
		user_name(i, user, sizeof(user));
		const struct route_backend *b = route_pick_backend(pool, user, strlen(user));
		assert_non_null(b);
		picks[i] = atoi(b->identity + 4);
	}
}

static void test_parse_and_names(void **state)
{
	struct route_pool pool;
	unsigned char key[ROUTE_KEY_BYTES];
	const char *err = NULL;
	char longid[ROUTE_IDENTITY_MAX + 1];

	route_key_derive(NULL, key);
	route_pool_init(&pool, key);
	assert_int_equal(route_pool_add(&pool, "[2001:db8::1]:993", 1, "v6", &err), 0);
	assert_string_equal(pool.v[0].addr.ip, "2001:db8::1");
	assert_int_equal(pool.v[0].addr.port, 993);
	assert_int_equal(route_pool_add(&pool, "mail.example.org:143", 1, NULL, &err), -1);
	assert_non_null(err);
	assert_int_equal(route_pool_add(&pool, "10.0.0.1:0", 1, NULL, &err), -1);
	memset(longid, 'x', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	assert_int_equal(route_pool_add(&pool, "10.0.0.1:143", 1, longid, &err), -1);
	assert_int_equal(pool.count, 1);
	route_pool_free(&pool);

	assert_int_equal(route_proto_parse("imap"), ROUTE_IMAP);
	assert_int_equal(route_proto_parse("pop3"), ROUTE_POP3);
	assert_int_equal(route_proto_parse("smtp"), ROUTE_SMTP);
	assert_int_equal(route_proto_parse("IMAP"), -1);
	assert_string_equal(route_proto_name(ROUTE_SMTP), "smtp");
}

static void test_key_derive(void **state)
{
	unsigned char a[ROUTE_KEY_BYTES], b[ROUTE_KEY_BYTES], c[ROUTE_KEY_BYTES];

	route_key_derive(NULL, a);
	route_key_derive(ROUTE_KEY_DEFAULT, b);
	route_key_derive("site-secret", c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
}

static void test_none_available(void **state)
{
	struct route_pool pool;

	pool_n(&pool, 0, 1);
	assert_int_equal(route_pick(&pool, "alice", 5), ROUTE_NONE);
	route_pool_free(&pool);

	pool_n(&pool, 3, 1);
	for (size_t i = 0; i < 3; i++)
		route_pool_set_down(&pool, i, true);
	assert_int_equal(route_pick(&pool, "alice", 5), ROUTE_NONE);
	assert_null(route_pick_backend(&pool, "alice", 5));
	route_pool_set_down(&pool, 1, false);
	assert_int_equal(route_pick(&pool, "alice", 5), 1);
	route_pool_free(&pool);

	/* weight 0 = drained: never chosen */
	pool_n(&pool, 2, 0);
	assert_int_equal(route_pick(&pool, "alice", 5), ROUTE_NONE);
	route_pool_free(&pool);
}

/* Same user, same backend; independent of config order; the same on every
   host (a fixed known answer: changing the hash would move every user when
   hosts run mixed versions). */
static void test_sticky_and_stable(void **state)
{
	struct route_pool a, b;
	unsigned char key[ROUTE_KEY_BYTES];
	char user[48], spec[32], id[32];

	pool_n(&a, 5, 1);
	route_key_derive(NULL, key);
	route_pool_init(&b, key);
	for (int i = 5; i >= 1; i--) {
		snprintf(spec, sizeof(spec), "10.0.0.%d:143", i);
		snprintf(id, sizeof(id), "mail%d", i);
		add(&b, spec, 1, id);
	}
	for (int i = 0; i < 2000; i++) {
		user_name(i, user, sizeof(user));
		const struct route_backend *x = route_pick_backend(&a, user, strlen(user));
		assert_ptr_equal(x, route_pick_backend(&a, user, strlen(user)));
		assert_string_equal(x->identity,
				    route_pick_backend(&b, user, strlen(user))->identity);
	}
	print_message("known answers: alice->%s bob->%s carol->%s\n",
		      route_pick_backend(&a, "alice", 5)->identity,
		      route_pick_backend(&a, "bob", 3)->identity,
		      route_pick_backend(&a, "carol", 5)->identity);
	assert_string_equal(route_pick_backend(&a, "alice", 5)->identity, KNOWN_ALICE);
	assert_string_equal(route_pick_backend(&a, "bob", 3)->identity, KNOWN_BOB);
	assert_string_equal(route_pick_backend(&a, "carol", 5)->identity, KNOWN_CAROL);
	route_pool_free(&a);
	route_pool_free(&b);
}

/* Another key spreads users differently (the key really is used). */
static void test_key_matters(void **state)
{
	struct route_pool a, b;
	unsigned char key[ROUTE_KEY_BYTES];
	char user[48];
	int same = 0;

	pool_n(&a, 4, 1);
	route_key_derive("other", key);
	route_pool_init(&b, key);
	for (size_t i = 0; i < a.count; i++)
		add(&b, a.v[i].addr.text, 1, a.v[i].identity);
	for (int i = 0; i < 4000; i++) {
		user_name(i, user, sizeof(user));
		same += strcmp(route_pick_backend(&a, user, strlen(user))->identity,
			       route_pick_backend(&b, user, strlen(user))->identity) == 0;
	}
	/* independent choices agree ~1/4 of the time */
	assert_true(same > 800 && same < 1200);
	route_pool_free(&a);
	route_pool_free(&b);
}

static void count_shares(const int *picks, int n, int *counts)
{
	memset(counts, 0, sizeof(int) * (size_t)(n + 1));
	for (int i = 0; i < USERS; i++)
		counts[picks[i]]++;
}

static void test_balance_equal(void **state)
{
	struct route_pool pool;
	int *picks = calloc(USERS, sizeof(int)), counts[6];
	int lo = USERS, hi = 0;

	pool_n(&pool, 5, 1);
	pick_all(&pool, picks);
	count_shares(picks, 5, counts);
	for (int i = 1; i <= 5; i++) {
		lo = counts[i] < lo ? counts[i] : lo;
		hi = counts[i] > hi ? counts[i] : hi;
	}
	print_message("equal weights, 5 backends, %d users: min %d max %d (ideal %d)\n",
		      USERS, lo, hi, USERS / 5);
	/* binomial sd ~126: 2% of the total is ~16 sd */
	assert_true(lo > USERS / 5 - 2000 && hi < USERS / 5 + 2000);
	route_pool_free(&pool);
	free(picks);
}

static void test_balance_weighted(void **state)
{
	struct route_pool pool;
	unsigned char key[ROUTE_KEY_BYTES];
	int *picks = calloc(USERS, sizeof(int)), counts[4];

	route_key_derive(NULL, key);
	route_pool_init(&pool, key);
	add(&pool, "10.0.0.1:143", 1, "mail1");
	add(&pool, "[2001:db8::2]:143", 2, "mail2");
	pick_all(&pool, picks);
	count_shares(picks, 2, counts);
	print_message("weights 1:2, %d users: %d / %d (ideal %d / %d)\n", USERS, counts[1],
		      counts[2], USERS / 3, 2 * USERS / 3);
	assert_true(abs(counts[1] - USERS / 3) < 2000);

	add(&pool, "10.0.0.3:143", 3, "mail3");
	pick_all(&pool, picks);
	count_shares(picks, 3, counts);
	print_message("weights 1:2:3: %d / %d / %d (ideal %d / %d / %d)\n", counts[1],
		      counts[2], counts[3], USERS / 6, USERS / 3, USERS / 2);
	assert_true(abs(counts[1] - USERS / 6) < 2000);
	assert_true(abs(counts[2] - USERS / 3) < 2000);
	assert_true(abs(counts[3] - USERS / 2) < 2000);
	route_pool_free(&pool);
	free(picks);
}

/* Adding a 6th backend: only users that now land on it move (~1/6). */
static void test_add_moves_share(void **state)
{
	struct route_pool pool;
	int *before = calloc(USERS, sizeof(int)), *after = calloc(USERS, sizeof(int));
	int moved = 0;

	pool_n(&pool, 5, 1);
	pick_all(&pool, before);
	add(&pool, "10.0.0.6:143", 1, "mail6");
	pick_all(&pool, after);
	for (int i = 0; i < USERS; i++) {
		if (before[i] != after[i]) {
			moved++;
			assert_int_equal(after[i], 6);  /* only to the new one */
		}
	}
	print_message("add 6th backend: %d of %d users moved (ideal %d)\n", moved, USERS,
		      USERS / 6);
	assert_true(abs(moved - USERS / 6) < 2000);
	route_pool_free(&pool);
	free(before);
	free(after);
}

/* Removing one of 6 (config change): only its users move, spread evenly. */
static void test_remove_moves_share(void **state)
{
	struct route_pool six, five;
	int *before = calloc(USERS, sizeof(int)), *after = calloc(USERS, sizeof(int));
	int moved = 0, counts[7] = { 0 };

	pool_n(&six, 6, 1);
	pool_n(&five, 6, 1);
	five.count = 5;                         /* drop mail6 */
	pick_all(&six, before);
	pick_all(&five, after);
	for (int i = 0; i < USERS; i++) {
		if (before[i] != after[i]) {
			moved++;
			assert_int_equal(before[i], 6);
			counts[after[i]]++;
		} else {
			assert_true(before[i] != 6);
		}
	}
	print_message("remove 1 of 6: %d moved (ideal %d), to mail1..5: %d %d %d %d %d\n",
		      moved, USERS / 6, counts[1], counts[2], counts[3], counts[4],
		      counts[5]);
	assert_true(abs(moved - USERS / 6) < 2000);
	for (int i = 1; i <= 5; i++)
		assert_true(abs(counts[i] - moved / 5) < 800);
	route_pool_free(&six);
	five.count = 6;
	route_pool_free(&five);
	free(before);
	free(after);
}

/* Marked down: only its users move; marked up again: all come back. */
static void test_down_moves_only_its_users(void **state)
{
	struct route_pool pool;
	int *before = calloc(USERS, sizeof(int)), *after = calloc(USERS, sizeof(int));
	int moved = 0, had = 0;

	pool_n(&pool, 4, 1);
	pick_all(&pool, before);
	route_pool_set_down(&pool, 2, true);    /* mail3 */
	pick_all(&pool, after);
	for (int i = 0; i < USERS; i++) {
		had += before[i] == 3;
		if (before[i] != after[i]) {
			moved++;
			assert_int_equal(before[i], 3);
		}
		assert_true(after[i] != 3);
	}
	print_message("mail3 down (1 of 4): %d moved, it had %d\n", moved, had);
	assert_int_equal(moved, had);
	route_pool_set_down(&pool, 2, false);
	pick_all(&pool, after);
	assert_memory_equal(before, after, sizeof(int) * USERS);
	route_pool_free(&pool);
	free(before);
	free(after);
}

/* Start-up: no backend has a probe result yet. Logins are not refused
   meanwhile: they go where they will go once all are up. A probed backend
   that is up wins over unchecked ones; a probe verdict ends "unchecked". */
static void test_unchecked_until_probed(void **state)
{
	struct route_pool pool;
	int *up = calloc(USERS, sizeof(int)), *fresh = calloc(USERS, sizeof(int));

	pool_n(&pool, 3, 1);
	pick_all(&pool, up);
	for (size_t i = 0; i < 3; i++)
		route_pool_set_unchecked(&pool, i);
	pick_all(&pool, fresh);
	assert_memory_equal(up, fresh, sizeof(int) * USERS);

	/* mail2 answers its first probe: everybody goes there until the
	   others have theirs */
	route_pool_set_down(&pool, 1, false);
	pick_all(&pool, fresh);
	for (int i = 0; i < USERS; i++)
		assert_int_equal(fresh[i], 2);

	/* the others' first probes fail: they are down, not unchecked, and
	   mail2 going down too leaves nothing */
	route_pool_set_down(&pool, 0, true);
	route_pool_set_down(&pool, 2, true);
	route_pool_set_down(&pool, 1, true);
	assert_int_equal(route_pick(&pool, "alice", 5), ROUTE_NONE);

	/* drained (weight 0) stays unused even unchecked */
	route_pool_free(&pool);
	pool_n(&pool, 1, 0);
	route_pool_set_unchecked(&pool, 0);
	assert_int_equal(route_pick(&pool, "alice", 5), ROUTE_NONE);
	route_pool_free(&pool);
	free(up);
	free(fresh);
}

/* pick_all with route_pick_panic, each pick made the way want says. */
static void pick_all_panic(const struct route_pool *pool, int *picks, enum route_how want)
{
	char name[32];

	for (int i = 0; i < USERS; i++) {
		enum route_how how = ROUTE_HOW_UNCHECKED;
		user_name(i, name, sizeof(name));
		int pick = route_pick_panic(pool, name, strlen(name), &how);
		assert_int_not_equal(pick, ROUTE_NONE);
		assert_int_equal(how, want);
		picks[i] = atoi(pool->v[pick].identity + 4);
	}
}

/* Every backend down (health checks failing everywhere at once, e.g. slow
   probes on a busy machine): route_pick_panic still answers, with the
   backend each user has when all are up, so nobody moves; one backend up
   again ends the panic. Drained backends stay unused even then. */
static void test_panic_when_all_down(void **state)
{
	struct route_pool pool;
	int *up = calloc(USERS, sizeof(int)), *panic = calloc(USERS, sizeof(int));

	pool_n(&pool, 3, 1);
	pick_all(&pool, up);
	assert_false(route_pool_panics(&pool));
	for (size_t i = 0; i < 3; i++)
		route_pool_set_down(&pool, i, true);
	assert_true(route_pool_panics(&pool));
	assert_int_equal(route_pick(&pool, "alice", 5), ROUTE_NONE);
	pick_all_panic(&pool, panic, ROUTE_HOW_PANIC);
	assert_memory_equal(up, panic, sizeof(int) * USERS);

	/* one back up: it takes everybody, no panic */
	route_pool_set_down(&pool, 1, false);
	assert_false(route_pool_panics(&pool));
	pick_all_panic(&pool, panic, ROUTE_HOW_UP);
	for (int i = 0; i < USERS; i++)
		assert_int_equal(panic[i], 2);

	/* an unchecked backend is not a panic either */
	route_pool_set_down(&pool, 1, true);
	route_pool_set_unchecked(&pool, 2);
	assert_false(route_pool_panics(&pool));
	pick_all_panic(&pool, panic, ROUTE_HOW_UNCHECKED);
	route_pool_free(&pool);

	/* drained backends: never chosen, not even in panic */
	pool_n(&pool, 2, 0);
	route_pool_set_down(&pool, 0, true);
	route_pool_set_down(&pool, 1, true);
	assert_false(route_pool_panics(&pool));
	assert_int_equal(route_pick_panic(&pool, "alice", 5, NULL), ROUTE_NONE);
	route_pool_free(&pool);
	free(up);
	free(panic);
}

/* Changing one weight moves users only to (raised) or from (lowered) it. */
static void test_weight_change(void **state)
{
	struct route_pool pool;
	int *before = calloc(USERS, sizeof(int)), *after = calloc(USERS, sizeof(int));
	int moved = 0;

	pool_n(&pool, 4, 1);
	pick_all(&pool, before);
	pool.v[0].weight = 2;
	pick_all(&pool, after);
	for (int i = 0; i < USERS; i++)
		if (before[i] != after[i]) {
			moved++;
			assert_int_equal(after[i], 1);
		}
	/* mail1 goes from 1/4 to 2/5: ~15% of users move, all to it */
	print_message("weight 1->2 on 1 of 4: %d moved (ideal %d)\n", moved,
		      USERS * 2 / 5 - USERS / 4);
	assert_true(abs(moved - (USERS * 2 / 5 - USERS / 4)) < 2000);
	route_pool_free(&pool);
	free(before);
	free(after);
}

static void test_table(void **state)
{
	struct route_table t;
	unsigned char key[ROUTE_KEY_BYTES];
	const char *err;

	route_key_derive(NULL, key);
	route_table_init(&t, key);
	assert_int_equal(route_pool_add(&t.pools[ROUTE_IMAP], "10.0.0.1:143", 1, "a", &err), 0);
	assert_int_equal(route_pool_add(&t.pools[ROUTE_SMTP], "10.0.0.1:587", 1, "a", &err), 0);
	assert_int_equal(route_pick(&t.pools[ROUTE_IMAP], "u", 1), 0);
	assert_int_equal(route_pick(&t.pools[ROUTE_POP3], "u", 1), ROUTE_NONE);
	assert_int_equal(t.pools[ROUTE_SMTP].v[0].addr.port, 587);
	route_table_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_names),
		cmocka_unit_test(test_key_derive),
		cmocka_unit_test(test_none_available),
		cmocka_unit_test(test_sticky_and_stable),
		cmocka_unit_test(test_key_matters),
		cmocka_unit_test(test_balance_equal),
		cmocka_unit_test(test_balance_weighted),
		cmocka_unit_test(test_add_moves_share),
		cmocka_unit_test(test_remove_moves_share),
		cmocka_unit_test(test_down_moves_only_its_users),
		cmocka_unit_test(test_unchecked_until_probed),
		cmocka_unit_test(test_panic_when_all_down),
		cmocka_unit_test(test_weight_change),
		cmocka_unit_test(test_table),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
