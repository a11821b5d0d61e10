#include "cache.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NIL UINT32_MAX

struct entry {
	unsigned char key[CACHE_KEY_BYTES];
	time_t expires;
	uint32_t next;          /* bucket chain */
	bool used;
	bool ok;
	bool referenced;        /* clock: used since the hand last passed */
};

struct cache {
	unsigned char hash_key[crypto_generichash_KEYBYTES];
	unsigned ttl, negative_ttl;
	struct entry *entries;
	uint32_t size, count, hand;
	uint32_t *buckets;
	uint32_t mask;          /* bucket count - 1 (a power of two) */
};

struct cache *cache_new(size_t size, unsigned ttl, unsigned negative_ttl)
{
	struct cache *c;
	size_t nb = 1;

	if (size == 0 || size >= NIL)
		return NULL;
	while (nb < size)
		nb <<= 1;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->entries = calloc(size, sizeof(*c->entries));
	c->buckets = malloc(nb * sizeof(*c->buckets));
	if (c->entries == NULL || c->buckets == NULL) {
		cache_free(c);
		return NULL;
	}
	c->size = (uint32_t)size;
	c->mask = (uint32_t)(nb - 1);
	c->ttl = ttl;
	c->negative_ttl = negative_ttl;
	crypto_generichash_keygen(c->hash_key);
	cache_clear(c);
	return c;
}

void cache_free(struct cache *c)
{
	if (c == NULL)
		return;
	sodium_memzero(c->hash_key, sizeof(c->hash_key));
	free(c->entries);
	free(c->buckets);
	free(c);
}

void cache_clear(struct cache *c)
{
	if (c == NULL)
		return;
	memset(c->entries, 0, (size_t)c->size * sizeof(*c->entries));
	for (uint32_t i = 0; i <= c->mask; i++)
		c->buckets[i] = NIL;
	c->count = 0;
	c->hand = 0;
}

size_t cache_count(const struct cache *c)
{
	return c != NULL ? c->count : 0;
}

void cache_key(const struct cache *c, const char *const *parts,
	       const size_t *lens, size_t count,
	       unsigned char key[CACHE_KEY_BYTES])
{
	crypto_generichash_state st;

	if (c == NULL) {
		memset(key, 0, CACHE_KEY_BYTES);
		return;
	}
	crypto_generichash_init(&st, c->hash_key, sizeof(c->hash_key), CACHE_KEY_BYTES);
	for (size_t i = 0; i < count; i++) {
		uint64_t len = parts[i] != NULL ? (uint64_t)lens[i] : 0;
		unsigned char prefix[8];

		for (int b = 0; b < 8; b++)
			prefix[b] = (unsigned char)(len >> (8 * b));
		crypto_generichash_update(&st, prefix, sizeof(prefix));
		if (len > 0)
			crypto_generichash_update(&st, (const unsigned char *)parts[i], len);
	}
	crypto_generichash_final(&st, key, CACHE_KEY_BYTES);
	/* the state saw passwords */
	sodium_memzero(&st, sizeof(st));
}

/* The key is already a keyed hash: any 4 of its bytes are a fine bucket index. */
static uint32_t bucket_of(const struct cache *c, const unsigned char *key)
{
	uint32_t h;

	memcpy(&h, key, sizeof(h));
	return h & c->mask;
}

static uint32_t find(const struct cache *c, const unsigned char *key)
{
	for (uint32_t i = c->buckets[bucket_of(c, key)]; i != NIL; i = c->entries[i].next) {
		if (sodium_memcmp(c->entries[i].key, key, CACHE_KEY_BYTES) == 0)
			return i;
	}
	return NIL;
}

static void unlink_entry(struct cache *c, uint32_t idx)
{
	uint32_t *p = &c->buckets[bucket_of(c, c->entries[idx].key)];

	while (*p != idx)
		p = &c->entries[*p].next;
	*p = c->entries[idx].next;
	memset(&c->entries[idx], 0, sizeof(c->entries[idx]));
	c->count--;
}

enum cache_result cache_get(struct cache *c, const unsigned char key[CACHE_KEY_BYTES],
			    time_t now)
{
	uint32_t i;

	if (c == NULL || (i = find(c, key)) == NIL)
		return CACHE_MISS;
	if (now >= c->entries[i].expires) {
		unlink_entry(c, i);
		return CACHE_MISS;
	}
	c->entries[i].referenced = true;
	return c->entries[i].ok ? CACHE_HIT_OK : CACHE_HIT_FAIL;
}

/* Clock: a free slot, or the first entry not referenced since the hand last
   passed (clearing the marks it passes); expired entries go first. */
static uint32_t victim(struct cache *c, time_t now)
{
	for (;;) {
		uint32_t i = c->hand;
		struct entry *e = &c->entries[i];

		c->hand = (c->hand + 1) % c->size;
		if (!e->used)
			return i;
		if (!e->referenced || now >= e->expires) {
			unlink_entry(c, i);
			return i;
		}
		e->referenced = false;
	}
}

void cache_put(struct cache *c, const unsigned char key[CACHE_KEY_BYTES], bool ok,
	       time_t now)
{
	unsigned ttl;
	uint32_t i, b;

	if (c == NULL)
		return;
	ttl = ok ? c->ttl : c->negative_ttl;
	if (ttl == 0)
		return;
	i = find(c, key);
	if (i == NIL) {
		i = victim(c, now);
		b = bucket_of(c, key);
		memcpy(c->entries[i].key, key, CACHE_KEY_BYTES);
		c->entries[i].used = true;
		c->entries[i].next = c->buckets[b];
		c->buckets[b] = i;
		c->count++;
	}
	c->entries[i].ok = ok;
	c->entries[i].expires = now + (time_t)ttl;
	c->entries[i].referenced = false;
}
