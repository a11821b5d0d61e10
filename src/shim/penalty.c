#include "penalty.h"

#include <arpa/inet.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Key: one kind byte + 16 bytes. IP keys hold the masked address itself;
   user keys hold a keyed hash of the name, so a key has a fixed size however
   long the name is, and no name is kept in memory. */
enum key_kind { KEY_IP4 = 4, KEY_IP6 = 6, KEY_USER = 'u' };
#define KEY_LEN 17
#define FP_LEN 16                       /* wrong-password fingerprint */
#define RECENT 4                        /* fingerprints remembered per key */
#define MIN_BUCKETS 64

struct entry {
	struct entry *hnext;            /* bucket chain */
	struct entry *lprev, *lnext;    /* LRU list, most recent at head */
	struct entry *sprev, *snext;    /* scored list (see scored_update) */
	bool scored;
	uint64_t hash;
	unsigned char key[KEY_LEN];
	uint8_t nrecent, recent_next;
	uint32_t score;
	int64_t last_fail;
	int64_t exempt_until;           /* IP keys only */
	unsigned char recent[RECENT][FP_LEN];
};

struct penalty {
	struct penalty_config cfg;      /* cfg.trusted points to trusted below */
	struct penalty_net *trusted;    /* owned */
	struct entry **buckets;
	size_t nbuckets;                /* power of two */
	size_t count;
	struct entry *lru_head, *lru_tail;
	struct entry *scored_head, *scored_tail;
	size_t scored;                  /* entries on the scored list */
	/* Random per process: table hashes cannot be flooded from outside, and
	   fingerprints mean nothing outside this process. */
	unsigned char table_key[crypto_shorthash_KEYBYTES];
	unsigned char fp_key[crypto_generichash_KEYBYTES];
};

/* ---- addresses ---------------------------------------------------------- */

int penalty_addr_parse(const char *text, struct penalty_addr *out)
{
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, text, out->b) == 1) {
		out->family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, text, out->b) != 1)
		return -1;
	out->family = AF_INET6;
	/* nginx on a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d;
	   they must share the IPv4 client's bucket and trusted networks. */
	if (memcmp(out->b, v4mapped, sizeof(v4mapped)) == 0) {
		memmove(out->b, out->b + 12, 4);
		memset(out->b + 4, 0, 12);
		out->family = AF_INET;
	}
	return 0;
}

static void mask_bytes(unsigned char *b, size_t len, unsigned prefix)
{
	for (unsigned i = 0; i < len; i++) {
		/* bits of byte i inside the prefix: 8, then the partial byte, then 0 */
		unsigned bits = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
		b[i] &= (unsigned char)(0xff00u >> bits);
	}
}

static size_t addr_len(int family)
{
	return family == AF_INET ? 4 : 16;
}

int penalty_net_parse(const char *cidr, struct penalty_net *out, const char **error_r)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(cidr, '/');
	size_t hlen = slash != NULL ? (size_t)(slash - cidr) : strlen(cidr);
	unsigned long prefix;
	char *end;

	memset(out, 0, sizeof(*out));
	if (hlen == 0 || hlen >= sizeof(host)) {
		*error_r = "expected address/prefix";
		return -1;
	}
	memcpy(host, cidr, hlen);
	host[hlen] = '\0';
	if (penalty_addr_parse(host, &out->addr) < 0) {
		*error_r = "not an IP address";
		return -1;
	}
	prefix = 8 * addr_len(out->addr.family);
	if (slash != NULL) {
		unsigned long max = prefix;
		if (slash[1] < '0' || slash[1] > '9') {
			*error_r = "bad prefix length";
			return -1;
		}
		prefix = strtoul(slash + 1, &end, 10);
		if (*end != '\0' || prefix > max) {
			*error_r = "bad prefix length";
			return -1;
		}
	}
	out->prefix = (unsigned)prefix;
	mask_bytes(out->addr.b, addr_len(out->addr.family), out->prefix);
	return 0;
}

bool penalty_net_contains(const struct penalty_net *net, const struct penalty_addr *a)
{
	unsigned char b[16];

	if (net->addr.family != a->family)
		return false;
	memcpy(b, a->b, sizeof(b));
	mask_bytes(b, addr_len(a->family), net->prefix);
	return memcmp(b, net->addr.b, addr_len(a->family)) == 0;
}

/* ---- curve and config --------------------------------------------------- */

unsigned penalty_delay_for_score(unsigned score, unsigned max_delay)
{
	if (score == 0)
		return 0;
	/* 1, 2, 4, 8, 16... then the cap (15 by default, like Dovecot's) */
	if (score - 1 >= 31)
		return max_delay;
	unsigned d = 1u << (score - 1);
	return d < max_delay ? d : max_delay;
}

void penalty_config_defaults(struct penalty_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->v4_prefix = 32;
	cfg->v6_prefix = 64;
	cfg->max_entries = 65536;
	cfg->max_delay = 15;
	cfg->forget_after = 300;
	cfg->exempt_after_success = 600;
	cfg->max_attempts = 5;
}

static int config_check(const struct penalty_config *cfg, const char **error_r)
{
	if (cfg->v4_prefix < 1 || cfg->v4_prefix > 32) {
		*error_r = "IPv4 prefix must be 1-32";
		return -1;
	}
	if (cfg->v6_prefix < 1 || cfg->v6_prefix > 128) {
		*error_r = "IPv6 prefix must be 1-128";
		return -1;
	}
	if (cfg->max_entries < 2) {
		*error_r = "max entries must be at least 2";
		return -1;
	}
	/* a failing answer needs Auth-Wait >= 1, or nginx closes */
	if (cfg->max_delay < 1) {
		*error_r = "max delay must be at least 1 s";
		return -1;
	}
	return 0;
}

/* ---- table -------------------------------------------------------------- */

static void lru_unlink(struct penalty *p, struct entry *e)
{
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else
		p->lru_head = e->lnext;
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		p->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
}

static void lru_push_head(struct penalty *p, struct entry *e)
{
	e->lprev = NULL;
	e->lnext = p->lru_head;
	if (p->lru_head != NULL)
		p->lru_head->lprev = e;
	p->lru_head = e;
	if (p->lru_tail == NULL)
		p->lru_tail = e;
}

/* Entries with a score are also on a list ordered by their last failure
   (most recent at head: a failure moves its entry there with now, which
   only grows), so the expired ones gather at the tail and penalty_active()
   drops them from there without walking the table. */
static void scored_unlink(struct penalty *p, struct entry *e)
{
	if (!e->scored)
		return;
	if (e->sprev != NULL)
		e->sprev->snext = e->snext;
	else
		p->scored_head = e->snext;
	if (e->snext != NULL)
		e->snext->sprev = e->sprev;
	else
		p->scored_tail = e->sprev;
	e->sprev = e->snext = NULL;
	e->scored = false;
	p->scored--;
}

/* After a failure (or a reset): on the list at head while it has a score. */
static void scored_update(struct penalty *p, struct entry *e)
{
	scored_unlink(p, e);
	if (e->score == 0)
		return;
	e->snext = p->scored_head;
	if (p->scored_head != NULL)
		p->scored_head->sprev = e;
	p->scored_head = e;
	if (p->scored_tail == NULL)
		p->scored_tail = e;
	e->scored = true;
	p->scored++;
}

static uint64_t key_hash(const struct penalty *p, const unsigned char key[KEY_LEN])
{
	unsigned char out[crypto_shorthash_BYTES];
	uint64_t h;

	crypto_shorthash(out, key, KEY_LEN, p->table_key);
	memcpy(&h, out, sizeof(h));
	return h;
}

static struct entry *table_find(const struct penalty *p, const unsigned char key[KEY_LEN],
				uint64_t hash)
{
	struct entry *e = p->buckets[hash & (p->nbuckets - 1)];

	while (e != NULL && (e->hash != hash || memcmp(e->key, key, KEY_LEN) != 0))
		e = e->hnext;
	return e;
}

static void table_unlink(struct penalty *p, struct entry *e)
{
	struct entry **pp = &p->buckets[e->hash & (p->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
}

static void evict_tail(struct penalty *p)
{
	struct entry *e = p->lru_tail;

	table_unlink(p, e);
	lru_unlink(p, e);
	scored_unlink(p, e);
	p->count--;
	sodium_memzero(e, sizeof(*e));
	free(e);
}

/* Doubles the bucket array when the load passes 1; on ENOMEM keeps the old
   one (longer chains, still correct). */
static void table_maybe_grow(struct penalty *p)
{
	size_t n = p->nbuckets * 2;
	struct entry **nb;

	if (p->count < p->nbuckets || n > SIZE_MAX / sizeof(*nb))
		return;
	nb = calloc(n, sizeof(*nb));
	if (nb == NULL)
		return;
	for (size_t i = 0; i < p->nbuckets; i++) {
		struct entry *e = p->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = nb[e->hash & (n - 1)];
			nb[e->hash & (n - 1)] = e;
		}
	}
	free(p->buckets);
	p->buckets = nb;
	p->nbuckets = n;
}

/* Finds or creates the entry and makes it the most recently used. NULL only
   on ENOMEM (the failure then goes uncounted: fail open on memory, never on
   the decision itself, which still gets its minimum delay). */
static struct entry *table_get(struct penalty *p, const unsigned char key[KEY_LEN])
{
	uint64_t hash = key_hash(p, key);
	struct entry *e = table_find(p, key, hash);

	if (e != NULL) {
		lru_unlink(p, e);
		lru_push_head(p, e);
		return e;
	}
	while (p->count >= p->cfg.max_entries)
		evict_tail(p);
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		return NULL;
	e->hash = hash;
	memcpy(e->key, key, KEY_LEN);
	e->hnext = p->buckets[hash & (p->nbuckets - 1)];
	p->buckets[hash & (p->nbuckets - 1)] = e;
	lru_push_head(p, e);
	p->count++;
	table_maybe_grow(p);
	return e;
}

/* ---- keys --------------------------------------------------------------- */

static void ip_key(const struct penalty *p, const struct penalty_addr *ip,
		   unsigned char key[KEY_LEN])
{
	bool v4 = ip->family == AF_INET;

	memset(key, 0, KEY_LEN);
	key[0] = v4 ? KEY_IP4 : KEY_IP6;
	memcpy(key + 1, ip->b, addr_len(ip->family));
	mask_bytes(key + 1, addr_len(ip->family), v4 ? p->cfg.v4_prefix : p->cfg.v6_prefix);
}

static void user_key(const struct penalty *p, const char *user, unsigned char key[KEY_LEN])
{
	key[0] = KEY_USER;
	crypto_generichash(key + 1, KEY_LEN - 1, (const unsigned char *)user, strlen(user),
			   p->fp_key, sizeof(p->fp_key));
}

/* Fingerprint of (user, secret): per user so that one password sprayed over
   many users from one IP counts for each user, yet a client repeating the
   same wrong login counts once. */
static void fingerprint(const struct penalty *p, const char *user, const void *secret,
			size_t len, unsigned char out[FP_LEN])
{
	crypto_generichash_state st;
	const unsigned char sep = 0;

	crypto_generichash_init(&st, p->fp_key, sizeof(p->fp_key), FP_LEN);
	if (user != NULL)
		crypto_generichash_update(&st, (const unsigned char *)user, strlen(user));
	crypto_generichash_update(&st, &sep, 1);
	crypto_generichash_update(&st, secret, len);
	crypto_generichash_final(&st, out, FP_LEN);
}

/* ---- scoring ------------------------------------------------------------ */

static void entry_decay(const struct penalty *p, struct entry *e, int64_t now)
{
	if (e->score > 0 && now - e->last_fail >= (int64_t)p->cfg.forget_after) {
		e->score = 0;
		e->nrecent = e->recent_next = 0;
	}
}

static bool entry_seen(const struct entry *e, const unsigned char fp[FP_LEN])
{
	for (unsigned i = 0; i < e->nrecent; i++)
		if (sodium_memcmp(e->recent[i], fp, FP_LEN) == 0)
			return true;
	return false;
}

/* Counts one failure unless fp is a repeat; returns whether it counted. */
static bool entry_fail(struct entry *e, const unsigned char *fp, int64_t now)
{
	bool repeat = fp != NULL && entry_seen(e, fp);

	e->last_fail = now;
	if (repeat)
		return false;
	if (fp != NULL) {
		memcpy(e->recent[e->recent_next], fp, FP_LEN);
		e->recent_next = (uint8_t)((e->recent_next + 1) % RECENT);
		if (e->nrecent < RECENT)
			e->nrecent++;
	}
	if (e->score < UINT32_MAX)
		e->score++;
	return true;
}

bool penalty_trusted(const struct penalty *p, const struct penalty_addr *ip)
{
	for (size_t i = 0; i < p->cfg.trusted_count; i++)
		if (penalty_net_contains(&p->trusted[i], ip))
			return true;
	return false;
}

bool penalty_attempt_over(const struct penalty *p, unsigned attempt)
{
	return p->cfg.max_attempts != 0 && attempt > p->cfg.max_attempts;
}

static void decision_finish(const struct penalty *p, unsigned attempt,
			    struct penalty_decision *out)
{
	unsigned d = penalty_delay_for_score(out->score, p->cfg.max_delay);

	out->attempt = attempt;
	out->close = p->cfg.max_attempts != 0 && attempt >= p->cfg.max_attempts;
	/* nginx: an error without Auth-Wait closes the connection, and
	   WAIT without it loops; so a retryable failure waits at least 1 s. */
	out->delay = out->close ? 0 : d < 1 ? 1 : d;
	snprintf(out->reason, sizeof(out->reason), "penalty=%u delay=%u attempt=%u",
		 out->score, out->delay, attempt);
}

void penalty_fail(struct penalty *p, const struct penalty_addr *ip, const char *user,
		  const void *secret, size_t secret_len, unsigned attempt, int64_t now,
		  struct penalty_decision *out)
{
	unsigned char key[KEY_LEN], fp[FP_LEN];
	const unsigned char *fpp = NULL;
	struct entry *ipe = NULL, *ue = NULL;
	bool counted = false, exempt;

	memset(out, 0, sizeof(*out));
	if (penalty_trusted(p, ip)) {
		out->why = "trusted";
		decision_finish(p, attempt, out);
		return;
	}
	if (secret != NULL) {
		fingerprint(p, user, secret, secret_len, fp);
		fpp = fp;
	}
	ip_key(p, ip, key);
	ipe = table_get(p, key);
	exempt = ipe != NULL && ipe->exempt_until > now;
	if (ipe != NULL && !exempt) {
		entry_decay(p, ipe, now);
		counted = entry_fail(ipe, fpp, now);
		scored_update(p, ipe);
		out->score = ipe->score;
	}
	/* An exempt IP (a recent success) still raises the user's score: one
	   valid account must not open a way to guess everyone else's. */
	if (user != NULL) {
		user_key(p, user, key);
		ue = table_get(p, key);
		if (ue != NULL) {
			entry_decay(p, ue, now);
			counted = entry_fail(ue, fpp, now) || counted;
			scored_update(p, ue);
			if (ue->score > out->score)
				out->score = ue->score;
		}
	}
	out->why = exempt ? "exempt" : counted ? "counted" : "repeat";
	decision_finish(p, attempt, out);
}

void penalty_success(struct penalty *p, const struct penalty_addr *ip, const char *user,
		     int64_t now)
{
	unsigned char key[KEY_LEN];
	struct entry *e;

	(void)user;
	if (penalty_trusted(p, ip))
		return;
	ip_key(p, ip, key);
	/* Only create an entry when it is going to hold an exemption. */
	if (p->cfg.exempt_after_success == 0) {
		uint64_t h = key_hash(p, key);
		e = table_find(p, key, h);
		if (e == NULL)
			return;
	} else {
		e = table_get(p, key);
		if (e == NULL)
			return;
		e->exempt_until = now + (int64_t)p->cfg.exempt_after_success;
	}
	e->score = 0;
	e->nrecent = e->recent_next = 0;
	scored_update(p, e);
}

static unsigned peek_one(const struct penalty *p, const unsigned char key[KEY_LEN],
			 int64_t now, bool ip)
{
	const struct entry *e = table_find(p, key, key_hash(p, key));

	if (e == NULL || (ip && e->exempt_until > now))
		return 0;
	if (e->score > 0 && now - e->last_fail >= (int64_t)p->cfg.forget_after)
		return 0;
	return e->score;
}

unsigned penalty_peek(const struct penalty *p, const struct penalty_addr *ip,
		      const char *user, int64_t now)
{
	unsigned char key[KEY_LEN];
	unsigned s;

	if (penalty_trusted(p, ip))
		return 0;
	ip_key(p, ip, key);
	s = peek_one(p, key, now, true);
	if (user != NULL) {
		user_key(p, user, key);
		unsigned u = peek_one(p, key, now, false);
		s = u > s ? u : s;
	}
	return s;
}

size_t penalty_entries(const struct penalty *p)
{
	return p->count;
}

size_t penalty_active(struct penalty *p, int64_t now)
{
	struct entry *e;

	/* what entry_decay() would do at their next failure, done now */
	while ((e = p->scored_tail) != NULL &&
	       now - e->last_fail >= (int64_t)p->cfg.forget_after) {
		e->score = 0;
		e->nrecent = e->recent_next = 0;
		scored_unlink(p, e);
	}
	return p->scored;
}

/* ---- lifetime ----------------------------------------------------------- */

struct penalty *penalty_new(void)
{
	struct penalty *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->buckets = calloc(MIN_BUCKETS, sizeof(*p->buckets));
	if (p->buckets == NULL) {
		free(p);
		return NULL;
	}
	p->nbuckets = MIN_BUCKETS;
	penalty_config_defaults(&p->cfg);
	crypto_shorthash_keygen(p->table_key);
	crypto_generichash_keygen(p->fp_key);
	return p;
}

int penalty_configure(struct penalty *p, const struct penalty_config *cfg,
		      const char **error_r)
{
	struct penalty_net *trusted = NULL;

	if (config_check(cfg, error_r) < 0)
		return -1;
	if (cfg->trusted_count > 0) {
		trusted = calloc(cfg->trusted_count, sizeof(*trusted));
		if (trusted == NULL) {
			*error_r = "out of memory";
			return -1;
		}
		memcpy(trusted, cfg->trusted, cfg->trusted_count * sizeof(*trusted));
	}
	free(p->trusted);
	p->trusted = trusted;
	p->cfg = *cfg;
	p->cfg.trusted = trusted;
	/* Prefix lengths may have changed: old IP keys then simply stop matching
	   and age out of the LRU; no rehash needed. */
	while (p->count > p->cfg.max_entries)
		evict_tail(p);
	return 0;
}

void penalty_free(struct penalty *p)
{
	if (p == NULL)
		return;
	while (p->lru_tail != NULL)
		evict_tail(p);
	free(p->buckets);
	free(p->trusted);
	sodium_memzero(p, sizeof(*p));
	free(p);
}
