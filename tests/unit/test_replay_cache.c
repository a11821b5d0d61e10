/* The passdb's replay cache (src/plugin/replay_cache.c), built with
   Dovecot's flags and linked with libdovecot: ids are kept for their
   remaining lifetime on the monotonic clock, and until the wall clock says
   they expired, so wall clock steps neither forget nor revive them. */
#include "lib.h"
#include "replay_cache.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#define WALL0 1800000000
#define MONO0 1000

static void at(struct replay_time *t, time_t wall, time_t mono)
{
	t->wall = wall;
	t->mono = mono;
}

static void test_basic(void **state)
{
	struct replay_cache *c = replay_cache_init(2);
	struct replay_time t;

	(void)state;
	at(&t, WALL0, MONO0);
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_NEW);
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_SEEN);
	assert_int_equal(replay_cache_check_add(c, "b", &t, WALL0 + 90), REPLAY_CACHE_NEW);
	assert_int_equal(replay_cache_check_add(c, "c", &t, WALL0 + 90), REPLAY_CACHE_FULL);
	/* both clocks past the deadline: forgotten */
	at(&t, WALL0 + 91, MONO0 + 91);
	assert_int_equal(replay_cache_check_add(c, "c", &t, WALL0 + 200), REPLAY_CACHE_NEW);
	assert_int_equal(replay_cache_count(c), 1);
	replay_cache_deinit(&c);
}

/* The wall clock jumps an hour ahead (and is set right later): the id is
   still remembered for its real remaining lifetime. */
static void test_wall_step_forward_forgets_nothing(void **state)
{
	struct replay_cache *c = replay_cache_init(10);
	struct replay_time t;

	(void)state;
	at(&t, WALL0, MONO0);
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_NEW);
	at(&t, WALL0 + 3600, MONO0 + 10);
	assert_int_equal(replay_cache_check_add(c, "x", &t, WALL0 + 3700), REPLAY_CACHE_NEW);
	at(&t, WALL0 + 20, MONO0 + 20);      /* stepped back to the right time */
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_SEEN);
	replay_cache_deinit(&c);
}

/* The wall clock steps back an hour while the id is remembered: once its
   monotonic lifetime is over the wall clock still calls it valid, so it is
   kept until the wall deadline comes again. */
static void test_wall_step_back_revives_nothing(void **state)
{
	struct replay_cache *c = replay_cache_init(10);
	struct replay_time t;

	(void)state;
	at(&t, WALL0, MONO0);
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_NEW);
	at(&t, WALL0 - 3600 + 100, MONO0 + 100);
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_SEEN);
	at(&t, WALL0 + 50, MONO0 + 3800);
	assert_int_equal(replay_cache_check_add(c, "a", &t, WALL0 + 90), REPLAY_CACHE_SEEN);
	at(&t, WALL0 + 91, MONO0 + 3841);
	assert_int_equal(replay_cache_check_add(c, "b", &t, WALL0 + 200), REPLAY_CACHE_NEW);
	assert_int_equal(replay_cache_count(c), 1);
	replay_cache_deinit(&c);
}

static void test_now(void **state)
{
	struct replay_time a, b;

	(void)state;
	replay_cache_now(&a);
	replay_cache_now(&b);
	assert_true(b.mono >= a.mono);
	assert_true(a.wall > WALL0 - 200000000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_wall_step_forward_forgets_nothing),
		cmocka_unit_test(test_wall_step_back_revives_nothing),
		cmocka_unit_test(test_now),
	};
	int ret;

	lib_init();
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	lib_deinit();
	return ret;
}
