/* Single-use memory for login tickets, in Dovecot's auth process (passdb
   module side). Remembers each accepted ticket id (jti) until a deadline
   (the ticket's exp + allowed skew); after that the ticket is refused as
   expired anyway, so the id can be forgotten.

   Clocks: the deadline is wall time (exp is), but the wall clock can jump.
   An id is kept for its remaining lifetime as measured on the monotonic
   clock (computed at insertion), so a wall clock step forward does not
   forget live ids, and it is forgotten only once the wall clock says it has
   expired too, so a step back while it is remembered does not revive it
   (it is then kept until the wall deadline is reached again).

   Bounded: with max_entries live ids, a new id is refused (REPLAY_CACHE_FULL)
   rather than evicting a live one, which would let that ticket be replayed.
   Only tickets with a good signature and valid claims reach the cache, so
   only real logins can fill it. Size it for the peak login rate times the
   ticket lifetime (plus skew).

   Built with Dovecot's flags and lib (hash table, priority queue); every
   entry is i_malloc()ed and freed on expiry or deinit. */
#ifndef DOVEGATE_REPLAY_CACHE_H
#define DOVEGATE_REPLAY_CACHE_H

#include <time.h>

enum replay_cache_result {
	REPLAY_CACHE_NEW = 0,  /* first use: now remembered */
	REPLAY_CACHE_SEEN,     /* already used: a replay */
	REPLAY_CACHE_FULL,     /* max_entries live ids: not remembered */
};

struct replay_cache *replay_cache_init(unsigned int max_entries);
void replay_cache_deinit(struct replay_cache **cache);

/* Raise or lower the bound (applies to later inserts). */
void replay_cache_set_limit(struct replay_cache *cache,
			    unsigned int max_entries);
unsigned int replay_cache_limit(const struct replay_cache *cache);

/* A moment on both clocks, in seconds: wall (time()) and monotonic
   (CLOCK_MONOTONIC; see replay_cache_now()). */
struct replay_time {
	time_t wall;
	time_t mono;
};

/* Now, on both clocks. */
void replay_cache_now(struct replay_time *now_r);

/* Forget ids whose deadline has passed on both clocks, then look id up and
   remember it until wall time `forget_after` (inclusive) if it is new. */
enum replay_cache_result
replay_cache_check_add(struct replay_cache *cache, const char *id,
		       const struct replay_time *now, time_t forget_after);

unsigned int replay_cache_count(const struct replay_cache *cache);

#endif
