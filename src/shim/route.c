#include "route.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(ROUTE_KEY_BYTES == crypto_shorthash_KEYBYTES, "SipHash key size");

void route_key_derive(const char *text, unsigned char key[ROUTE_KEY_BYTES])
{
	if (text == NULL)
		text = ROUTE_KEY_DEFAULT;
	/* unkeyed BLAKE2b: a fixed function of the text, same on every host */
	crypto_generichash(key, ROUTE_KEY_BYTES, (const unsigned char *)text, strlen(text),
			   NULL, 0);
}

static const char *const proto_names[ROUTE_PROTO_COUNT] = { "imap", "pop3", "smtp" };

int route_proto_parse(const char *name)
{
	for (int i = 0; i < ROUTE_PROTO_COUNT; i++)
		if (strcmp(name, proto_names[i]) == 0)
			return i;
	return -1;
}

const char *route_proto_name(enum route_proto proto)
{
	return (unsigned)proto < ROUTE_PROTO_COUNT ? proto_names[proto] : "?";
}

static uint64_t siphash(const unsigned char key[ROUTE_KEY_BYTES], const void *in, size_t len)
{
	unsigned char out[crypto_shorthash_BYTES];

	crypto_shorthash(out, in, len, key);
	/* little endian by definition, so every host reads the same number */
	uint64_t h = 0;
	for (int i = 7; i >= 0; i--)
		h = (h << 8) | out[i];
	return h;
}

static void put_le64(unsigned char *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (8 * i));
}

void route_pool_init(struct route_pool *pool, const unsigned char key[ROUTE_KEY_BYTES])
{
	memset(pool, 0, sizeof(*pool));
	memcpy(pool->key, key, ROUTE_KEY_BYTES);
}

void route_pool_free(struct route_pool *pool)
{
	free(pool->v);
	pool->v = NULL;
	pool->count = pool->cap = 0;
}

int route_pool_add(struct route_pool *pool, const char *spec, unsigned weight,
		   const char *identity, const char **error_r)
{
	struct route_backend *b;
	const char *id;

	if (identity != NULL && strlen(identity) >= ROUTE_IDENTITY_MAX) {
		*error_r = "identity too long";
		return -1;
	}
	if (pool->count == pool->cap) {
		size_t cap = pool->cap ? pool->cap * 2 : 4;
		struct route_backend *v = realloc(pool->v, cap * sizeof(*v));
		if (v == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		pool->v = v;
		pool->cap = cap;
	}
	b = &pool->v[pool->count];
	memset(b, 0, sizeof(*b));
	if (backend_parse(spec, &b->addr, error_r) < 0)
		return -1;
	b->weight = weight;
	if (identity != NULL)
		snprintf(b->identity, sizeof(b->identity), "%s", identity);
	id = b->identity[0] != '\0' ? b->identity : b->addr.text;
	b->id_hash = siphash(pool->key, id, strlen(id));
	return (int)pool->count++;
}

void route_pool_set_down(struct route_pool *pool, size_t index, bool down)
{
	if (index < pool->count) {
		pool->v[index].down = down;
		pool->v[index].unchecked = false;
	}
}

void route_pool_set_unchecked(struct route_pool *pool, size_t index)
{
	if (index < pool->count) {
		pool->v[index].down = true;
		pool->v[index].unchecked = true;
	}
}

/* Weighted HRW (Schindelhauer & Schomaker; "logarithmic method"):
   score = -w / ln(u), u uniform in (0,1) from hash(user, backend). Each
   backend wins with probability w / sum(w), and removing one changes only
   the users it won. */
static double hrw_score(const struct route_pool *pool, uint64_t user_hash,
			const struct route_backend *b)
{
	unsigned char in[16];
	uint64_t h;
	double u;

	put_le64(in, user_hash);
	put_le64(in + 8, b->id_hash);
	h = siphash(pool->key, in, sizeof(in));
	/* 53 bits, centred in their interval: u is never 0 nor 1 */
	u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;
	return -(double)b->weight / log(u);
}

static bool eligible(const struct route_backend *b, enum route_how how)
{
	if (b->weight == 0 || b->drained)
		return false;
	switch (how) {
	case ROUTE_HOW_UP:
		return !b->down;
	case ROUTE_HOW_UNCHECKED:
		return b->unchecked;
	case ROUTE_HOW_PANIC:
		return true;
	}
	return false;
}

/* The highest score among the backends eligible by how. */
static int pick_among(const struct route_pool *pool, uint64_t uh, enum route_how how)
{
	double best = 0;
	int pick = ROUTE_NONE;

	for (size_t i = 0; i < pool->count; i++) {
		const struct route_backend *b = &pool->v[i];
		double s;
		if (!eligible(b, how))
			continue;
		s = hrw_score(pool, uh, b);
		/* ties (practically never): the lower id_hash, so that the
		   order of the config lines does not matter */
		if (pick == ROUTE_NONE || s > best ||
		    (s == best && b->id_hash < pool->v[pick].id_hash)) {
			best = s;
			pick = (int)i;
		}
	}
	return pick;
}

/* Tries up, unchecked, then (when last >= ROUTE_HOW_PANIC) every backend. */
static int pick_upto(const struct route_pool *pool, const char *user, size_t user_len,
		     enum route_how last, enum route_how *how)
{
	uint64_t uh = siphash(pool->key, user, user_len);

	for (int h = ROUTE_HOW_UP; h <= (int)last; h++) {
		int pick = pick_among(pool, uh, (enum route_how)h);
		if (pick != ROUTE_NONE) {
			if (how != NULL)
				*how = (enum route_how)h;
			return pick;
		}
	}
	return ROUTE_NONE;
}

int route_pick(const struct route_pool *pool, const char *user, size_t user_len)
{
	return pick_upto(pool, user, user_len, ROUTE_HOW_UNCHECKED, NULL);
}

int route_pick_panic(const struct route_pool *pool, const char *user, size_t user_len,
		     enum route_how *how)
{
	return pick_upto(pool, user, user_len, ROUTE_HOW_PANIC, how);
}

bool route_pool_panics(const struct route_pool *pool)
{
	bool weighted = false;

	for (size_t i = 0; i < pool->count; i++) {
		const struct route_backend *b = &pool->v[i];
		if (b->weight == 0 || b->drained)
			continue;
		if (!b->down || b->unchecked)
			return false;
		weighted = true;
	}
	return weighted;
}

const struct route_backend *route_pick_backend(const struct route_pool *pool,
					       const char *user, size_t user_len)
{
	int i = route_pick(pool, user, user_len);

	return i == ROUTE_NONE ? NULL : &pool->v[i];
}

void route_table_init(struct route_table *t, const unsigned char key[ROUTE_KEY_BYTES])
{
	for (int i = 0; i < ROUTE_PROTO_COUNT; i++)
		route_pool_init(&t->pools[i], key);
}

void route_table_free(struct route_table *t)
{
	for (int i = 0; i < ROUTE_PROTO_COUNT; i++)
		route_pool_free(&t->pools[i]);
}
