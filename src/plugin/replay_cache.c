/* Single-use memory for login tickets: see replay_cache.h. */

#include "lib.h"
#include "hash.h"
#include "priorityq.h"
#include "replay_cache.h"

#include <time.h>

struct replay_entry {
	struct priorityq_item item; /* must be first */
	time_t mono_deadline; /* the queue's order */
	time_t forget_after; /* wall time */
	char id[]; /* NUL-terminated; also the hash key */
};

struct replay_cache {
	HASH_TABLE(const char *, struct replay_entry *) ids;
	struct priorityq *by_deadline; /* earliest mono_deadline first */
	unsigned int max_entries;
};

static int replay_entry_cmp(const void *p1, const void *p2)
{
	const struct replay_entry *e1 = p1, *e2 = p2;

	if (e1->mono_deadline < e2->mono_deadline)
		return -1;
	return e1->mono_deadline > e2->mono_deadline ? 1 : 0;
}

struct replay_cache *replay_cache_init(unsigned int max_entries)
{
	struct replay_cache *cache;

	i_assert(max_entries > 0);
	cache = i_new(struct replay_cache, 1);
	cache->max_entries = max_entries;
	hash_table_create(&cache->ids, default_pool, 0, str_hash, strcmp);
	cache->by_deadline = priorityq_init(replay_entry_cmp, 128);
	return cache;
}

void replay_cache_deinit(struct replay_cache **_cache)
{
	struct replay_cache *cache = *_cache;
	struct priorityq_item *item;

	if (cache == NULL)
		return;
	*_cache = NULL;
	while ((item = priorityq_pop(cache->by_deadline)) != NULL)
		i_free(item);
	priorityq_deinit(&cache->by_deadline);
	hash_table_destroy(&cache->ids);
	i_free(cache);
}

void replay_cache_set_limit(struct replay_cache *cache,
			    unsigned int max_entries)
{
	i_assert(max_entries > 0);
	cache->max_entries = max_entries;
}

unsigned int replay_cache_limit(const struct replay_cache *cache)
{
	return cache->max_entries;
}

unsigned int replay_cache_count(const struct replay_cache *cache)
{
	return hash_table_count(cache->ids);
}

void replay_cache_now(struct replay_time *now_r)
{
	struct timespec ts;

	now_r->wall = time(NULL);
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		i_fatal("clock_gettime(CLOCK_MONOTONIC) failed: %m");
	now_r->mono = ts.tv_sec;
}

/* The monotonic moment at which wall time forget_after is over, counted
   from now: never before now. */
static time_t replay_mono_deadline(const struct replay_time *now,
				   time_t forget_after)
{
	return forget_after < now->wall ? now->mono :
		now->mono + (forget_after - now->wall);
}

static void replay_cache_expire(struct replay_cache *cache,
				const struct replay_time *now)
{
	struct priorityq_item *item;
	struct replay_entry *entry;

	while ((item = priorityq_peek(cache->by_deadline)) != NULL) {
		entry = (struct replay_entry *)item;
		if (entry->mono_deadline >= now->mono)
			break;
		(void)priorityq_pop(cache->by_deadline);
		if (entry->forget_after >= now->wall) {
			/* the wall clock went back: still valid there, so
			   keep it until the wall deadline comes again */
			entry->mono_deadline =
				replay_mono_deadline(now, entry->forget_after);
			priorityq_add(cache->by_deadline, &entry->item);
			continue;
		}
		hash_table_remove(cache->ids, (const char *)entry->id);
		i_free(entry);
	}
}

enum replay_cache_result
replay_cache_check_add(struct replay_cache *cache, const char *id,
		       const struct replay_time *now, time_t forget_after)
{
	struct replay_entry *entry;
	size_t len;

	replay_cache_expire(cache, now);
	if (hash_table_lookup(cache->ids, id) != NULL)
		return REPLAY_CACHE_SEEN;
	if (hash_table_count(cache->ids) >= cache->max_entries)
		return REPLAY_CACHE_FULL;

	len = strlen(id);
	entry = i_malloc(MALLOC_ADD(sizeof(*entry), len + 1));
	memcpy(entry->id, id, len + 1);
	entry->forget_after = forget_after;
	entry->mono_deadline = replay_mono_deadline(now, forget_after);
	priorityq_add(cache->by_deadline, &entry->item);
	hash_table_insert(cache->ids, (const char *)entry->id, entry);
	return REPLAY_CACHE_NEW;
}
