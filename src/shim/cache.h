/* Verified-login cache: repeat logins skip the password hash.
   Entries are keyed by a keyed BLAKE2b (libsodium crypto_generichash) of the
   login's inputs under a random per-process key, so the table holds no
   password and its keys are useless outside this process. Positive entries
   live `ttl` seconds, negative ones `negative_ttl`; when full, the clock
   (second-chance) algorithm evicts an entry not used since the hand last
   passed. Only touched on the event loop thread: no locking. */
#ifndef DOVEGATE_SHIM_CACHE_H
#define DOVEGATE_SHIM_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define CACHE_KEY_BYTES 32

struct cache;

enum cache_result { CACHE_MISS, CACHE_HIT_OK, CACHE_HIT_FAIL };

/* size 0 means "no cache": returns NULL, and every function below accepts
   NULL (lookups miss, stores are dropped). NULL also when out of memory. */
struct cache *cache_new(size_t size, unsigned ttl, unsigned negative_ttl);
void cache_free(struct cache *c);

/* Key of `count` byte strings; each is length-prefixed, so ("ab","c") and
   ("a","bc") differ. A NULL part counts as empty. */
void cache_key(const struct cache *c, const char *const *parts,
	       const size_t *lens, size_t count,
	       unsigned char key[CACHE_KEY_BYTES]);

/* now: a monotonic clock in seconds (tests pass their own). */
enum cache_result cache_get(struct cache *c, const unsigned char key[CACHE_KEY_BYTES],
			    time_t now);
/* Remember a definite outcome (never a temporary failure). */
void cache_put(struct cache *c, const unsigned char key[CACHE_KEY_BYTES], bool ok,
	       time_t now);
void cache_clear(struct cache *c);
size_t cache_count(const struct cache *c);

#endif
