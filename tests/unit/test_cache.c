/* The verified-login cache: keys, TTLs, eviction, clearing, size 0. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "cache.h"

static void key_of(const struct cache *c, const char *user, const char *pass,
		   unsigned char key[CACHE_KEY_BYTES])
{
	const char *parts[] = { "plain", user, pass };
	size_t lens[] = { 5, strlen(user), strlen(pass) };

	cache_key(c, parts, lens, 3, key);
}

static void test_disabled(void **state)
{
	unsigned char key[CACHE_KEY_BYTES];
	struct cache *c = cache_new(0, 300, 30);

	assert_null(c);
	key_of(c, "alice", "pw", key);
	cache_put(c, key, true, 100);
	assert_int_equal(cache_get(c, key, 100), CACHE_MISS);
	assert_int_equal(cache_count(c), 0);
	cache_clear(c);
	cache_free(c);
}

static void test_keys(void **state)
{
	struct cache *c = cache_new(10, 300, 30), *other = cache_new(10, 300, 30);
	unsigned char a[CACHE_KEY_BYTES], b[CACHE_KEY_BYTES], a2[CACHE_KEY_BYTES];
	const char *p1[] = { "ab", "c" }, *p2[] = { "a", "bc" }, *p3[] = { NULL, "abc" };
	size_t l1[] = { 2, 1 }, l2[] = { 1, 2 }, l3[] = { 99, 3 };

	key_of(c, "alice", "pw", a);
	key_of(c, "alice", "pw", a2);
	assert_memory_equal(a, a2, CACHE_KEY_BYTES);
	key_of(c, "alice", "pW", b);
	assert_memory_not_equal(a, b, CACHE_KEY_BYTES);
	/* parts are length-prefixed: no ambiguity at the joins */
	cache_key(c, p1, l1, 2, a);
	cache_key(c, p2, l2, 2, b);
	assert_memory_not_equal(a, b, CACHE_KEY_BYTES);
	/* NULL is empty, whatever its length says */
	cache_key(c, p3, l3, 2, a);
	l3[0] = 0;
	p3[0] = "";
	cache_key(c, p3, l3, 2, b);
	assert_memory_equal(a, b, CACHE_KEY_BYTES);
	/* a per-process (per-cache) random key */
	key_of(c, "alice", "pw", a);
	key_of(other, "alice", "pw", b);
	assert_memory_not_equal(a, b, CACHE_KEY_BYTES);
	cache_free(c);
	cache_free(other);
}

static void test_ttls(void **state)
{
	struct cache *c = cache_new(10, 300, 30);
	unsigned char ok[CACHE_KEY_BYTES], bad[CACHE_KEY_BYTES];

	key_of(c, "alice", "right", ok);
	key_of(c, "alice", "wrong", bad);
	assert_int_equal(cache_get(c, ok, 1000), CACHE_MISS);
	cache_put(c, ok, true, 1000);
	cache_put(c, bad, false, 1000);
	assert_int_equal(cache_count(c), 2);
	assert_int_equal(cache_get(c, ok, 1000), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, bad, 1029), CACHE_HIT_FAIL);
	assert_int_equal(cache_get(c, bad, 1030), CACHE_MISS);
	assert_int_equal(cache_count(c), 1);
	assert_int_equal(cache_get(c, ok, 1299), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, ok, 1300), CACHE_MISS);
	assert_int_equal(cache_count(c), 0);

	/* a new outcome replaces the old one */
	cache_put(c, ok, false, 2000);
	cache_put(c, ok, true, 2000);
	assert_int_equal(cache_count(c), 1);
	assert_int_equal(cache_get(c, ok, 2001), CACHE_HIT_OK);
	cache_free(c);

	/* a TTL of 0 caches nothing of that kind */
	c = cache_new(10, 300, 0);
	cache_put(c, bad, false, 1000);
	assert_int_equal(cache_get(c, bad, 1000), CACHE_MISS);
	cache_free(c);
}

static void test_bounded_clock(void **state)
{
	struct cache *c = cache_new(4, 300, 30);
	unsigned char keys[6][CACHE_KEY_BYTES];
	char user[8];

	for (int i = 0; i < 6; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		key_of(c, user, "pw", keys[i]);
	}
	for (int i = 0; i < 4; i++)
		cache_put(c, keys[i], true, 10);
	/* u0 and u2 used since: the clock spares them */
	assert_int_equal(cache_get(c, keys[0], 11), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, keys[2], 11), CACHE_HIT_OK);
	cache_put(c, keys[4], true, 12);
	cache_put(c, keys[5], true, 12);
	assert_int_equal(cache_count(c), 4);
	assert_int_equal(cache_get(c, keys[0], 13), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, keys[2], 13), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, keys[4], 13), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, keys[5], 13), CACHE_HIT_OK);
	assert_int_equal(cache_get(c, keys[1], 13), CACHE_MISS);
	assert_int_equal(cache_get(c, keys[3], 13), CACHE_MISS);
	cache_free(c);
}

static void test_many_and_clear(void **state)
{
	struct cache *c = cache_new(1000, 300, 30);
	unsigned char key[CACHE_KEY_BYTES];
	char user[16];
	size_t hits = 0;

	for (int i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		key_of(c, user, "pw", key);
		cache_put(c, key, i % 2 == 0, 100);
		assert_true(cache_count(c) <= 1000);
	}
	assert_int_equal(cache_count(c), 1000);
	for (int i = 0; i < 5000; i++) {
		snprintf(user, sizeof(user), "user%d", i);
		key_of(c, user, "pw", key);
		if (cache_get(c, key, 101) != CACHE_MISS)
			hits++;
	}
	assert_int_equal(hits, 1000);
	cache_clear(c);
	assert_int_equal(cache_count(c), 0);
	key_of(c, "user4999", "pw", key);
	assert_int_equal(cache_get(c, key, 101), CACHE_MISS);
	cache_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disabled),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_ttls),
		cmocka_unit_test(test_bounded_clock),
		cmocka_unit_test(test_many_and_clear),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
