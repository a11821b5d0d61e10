#include "penalty.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stddef.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Key: one kind byte + 16 bytes. IP keys hold the masked address itself;
   user keys hold a keyed hash of the name, so a key has a fixed size however
   long the name is, and no name is kept in memory. */
enum key_kind { KEY_IP4 = 4, KEY_IP6 = 6, KEY_USER = 'u', KEY_KNOWN = 'k' };
#define KEY_LEN 17
#define FP_LEN 16                       /* wrong-password fingerprint */
#define RECENT 4                        /* fingerprints remembered per key */
#define MIN_BUCKETS 64
/* A score this high is worth keeping: such keys live on a list of their own
   that a flood of one-failure keys never evicts from (while it has cold
   entries to evict). */
#define HOT_SCORE 3
/* Entries with logins in flight are passed over by eviction this many
   times before one goes anyway (their count is then simply lost). */
#define EVICT_TRIES 8

/* Each kind of key has its own bound and its own LRU lists, so a flood of
   one kind (random user names, say) never evicts another kind (networks). */
enum table_kind { TK_NET, TK_USER, TK_KNOWN, TK_COUNT };

/* An intrusive doubly linked list of entries, most recent at head; each
   list an entry can be on has its own struct link in the entry. */
struct link {
	struct entry *prev, *next;
};

struct lru {
	struct entry *head, *tail;
	size_t count;
	size_t link;                    /* offsetof(struct entry, <its link>) */
};

struct entry {
	struct entry *hnext;            /* bucket chain */
	struct link lru;                /* its kind's cold or hot LRU list */
	struct link scored;             /* the scored list (see scored_update) */
	bool on_scored;
	uint64_t hash;
	unsigned char key[KEY_LEN];
	uint8_t nrecent, recent_next;
	bool hot;                       /* on its kind's hot list */
	uint32_t score;
	uint32_t pending;               /* network keys: logins being decided */
	int64_t last_fail;
	int64_t exempt_until;           /* network keys; known keys: until when */
	unsigned char recent[RECENT][FP_LEN];
};

struct penalty {
	struct penalty_config cfg;      /* cfg.trusted points to trusted below */
	struct penalty_net *trusted;    /* owned */
	struct entry **buckets;
	size_t nbuckets;                /* power of two */
	size_t count;                   /* all kinds */
	struct lru cold[TK_COUNT], hot[TK_COUNT];
	struct lru scored;              /* entries with a score, by last failure */
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
	cfg->refuse_at = 10;
	cfg->max_pending = 16;
	cfg->known_network_ttl = 30 * 86400;
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

static enum table_kind kind_of(const unsigned char key[KEY_LEN])
{
	return key[0] == KEY_USER ? TK_USER : key[0] == KEY_KNOWN ? TK_KNOWN : TK_NET;
}

static struct lru *list_of(struct penalty *p, const struct entry *e)
{
	enum table_kind k = kind_of(e->key);

	return e->hot ? &p->hot[k] : &p->cold[k];
}

static struct link *link_of(const struct lru *l, struct entry *e)
{
	return (struct link *)((char *)e + l->link);
}

static void list_unlink(struct lru *l, struct entry *e)
{
	struct link *k = link_of(l, e);

	if (k->prev != NULL)
		link_of(l, k->prev)->next = k->next;
	else
		l->head = k->next;
	if (k->next != NULL)
		link_of(l, k->next)->prev = k->prev;
	else
		l->tail = k->prev;
	k->prev = k->next = NULL;
	l->count--;
}

static void list_push_head(struct lru *l, struct entry *e)
{
	struct link *k = link_of(l, e);

	k->prev = NULL;
	k->next = l->head;
	if (l->head != NULL)
		link_of(l, l->head)->prev = e;
	l->head = e;
	if (l->tail == NULL)
		l->tail = e;
	l->count++;
}

static void lru_unlink(struct penalty *p, struct entry *e)
{
	list_unlink(list_of(p, e), e);
}

static void lru_push_head(struct penalty *p, struct entry *e)
{
	list_push_head(list_of(p, e), e);
}

/* Moves e to the head of the list its worth puts it on: hot once its score
   reached HOT_SCORE (or, for a network, while a success exempts it). */
static void lru_place(struct penalty *p, struct entry *e, int64_t now)
{
	bool hot = e->score >= HOT_SCORE || (kind_of(e->key) == TK_NET && e->exempt_until > now);

	lru_unlink(p, e);
	e->hot = hot;
	lru_push_head(p, e);
}

/* Entries with a score are also on a list ordered by their last failure
   (most recent at head: a failure moves its entry there with now, which
   only grows), so the expired ones gather at the tail and penalty_active()
   drops them from there without walking the table. */
static void scored_unlink(struct penalty *p, struct entry *e)
{
	if (!e->on_scored)
		return;
	list_unlink(&p->scored, e);
	e->on_scored = false;
}

/* After a failure (or a reset): on the list at head while it has a score. */
static void scored_update(struct penalty *p, struct entry *e)
{
	scored_unlink(p, e);
	if (e->score == 0)
		return;
	list_push_head(&p->scored, e);
	e->on_scored = true;
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

static void entry_drop(struct penalty *p, struct entry *e)
{
	table_unlink(p, e);
	lru_unlink(p, e);
	scored_unlink(p, e);
	p->count--;
	sodium_memzero(e, sizeof(*e));
	free(e);
}

static size_t kind_count(const struct penalty *p, enum table_kind k)
{
	return p->cold[k].count + p->hot[k].count;
}

/* Drops one entry of kind k: the least recently used cold one, else the
   least recently used hot one; one with logins in flight is passed over a
   few times (moved to the head) before one goes anyway. */
static void evict_one(struct penalty *p, enum table_kind k)
{
	for (unsigned tries = 0;; tries++) {
		struct lru *l = p->cold[k].tail != NULL ? &p->cold[k] : &p->hot[k];
		struct entry *e = l->tail;

		if (e->pending == 0 || tries >= EVICT_TRIES || l->count == 1) {
			entry_drop(p, e);
			return;
		}
		lru_unlink(p, e);
		lru_push_head(p, e);
	}
}

static void evict_to_bound(struct penalty *p)
{
	for (int k = 0; k < TK_COUNT; k++)
		while (kind_count(p, (enum table_kind)k) > p->cfg.max_entries)
			evict_one(p, (enum table_kind)k);
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

/* Finds or creates the entry and makes it the most recently used of its
   list. NULL only on ENOMEM (the failure then goes uncounted: fail open on
   memory, never on the decision itself, which still gets its minimum delay). */
static struct entry *table_get(struct penalty *p, const unsigned char key[KEY_LEN])
{
	uint64_t hash = key_hash(p, key);
	struct entry *e = table_find(p, key, hash);
	enum table_kind k = kind_of(key);

	if (e != NULL) {
		lru_unlink(p, e);
		lru_push_head(p, e);
		return e;
	}
	while (kind_count(p, k) >= p->cfg.max_entries)
		evict_one(p, k);
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

static const struct entry *table_peek(const struct penalty *p, const unsigned char key[KEY_LEN])
{
	return table_find(p, key, key_hash(p, key));
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

/* (user, network): the user logged in from that network recently. */
static void known_key(const struct penalty *p, const struct penalty_addr *ip, const char *user,
		      unsigned char key[KEY_LEN])
{
	crypto_generichash_state st;
	unsigned char net[KEY_LEN];

	ip_key(p, ip, net);
	crypto_generichash_init(&st, p->fp_key, sizeof(p->fp_key), KEY_LEN - 1);
	crypto_generichash_update(&st, net, sizeof(net));
	crypto_generichash_update(&st, (const unsigned char *)user, strlen(user));
	crypto_generichash_final(&st, key + 1, KEY_LEN - 1);
	key[0] = KEY_KNOWN;
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
	penalty_fail_shared(p, ip, user, secret, secret_len, attempt, now, NULL, out);
}

void penalty_fail_shared(struct penalty *p, const struct penalty_addr *ip, const char *user,
			 const void *secret, size_t secret_len, unsigned attempt, int64_t now,
			 const struct penalty_shared *shared, struct penalty_decision *out)
{
	unsigned char key[KEY_LEN], fp[FP_LEN];
	const unsigned char *fpp = NULL;
	struct entry *ipe = NULL, *ue = NULL;
	bool counted = false;

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
	/* The network always counts, exempt or not: one valid account must not
	   open a way to guess everyone else's from the same network. */
	ip_key(p, ip, key);
	ipe = table_get(p, key);
	if (ipe != NULL) {
		entry_decay(p, ipe, now);
		counted = entry_fail(ipe, fpp, now);
		scored_update(p, ipe);
		out->score = ipe->score;
		lru_place(p, ipe, now);
	}
	if (user != NULL) {
		user_key(p, user, key);
		ue = table_get(p, key);
		if (ue != NULL) {
			entry_decay(p, ue, now);
			counted = entry_fail(ue, fpp, now) || counted;
			scored_update(p, ue);
			if (ue->score > out->score)
				out->score = ue->score;
			lru_place(p, ue, now);
		}
	}
	out->why = counted ? "counted" : "repeat";
	if (counted && shared != NULL) {
		unsigned top = shared->net_score > shared->user_score ? shared->net_score
								     : shared->user_score;
		if (top < UINT32_MAX && top + 1 > out->score)
			out->score = top + 1;
	}
	decision_finish(p, attempt, out);
}

void penalty_success(struct penalty *p, const struct penalty_addr *ip, const char *user,
		     int64_t now)
{
	unsigned char key[KEY_LEN];
	struct entry *e;

	if (penalty_trusted(p, ip))
		return;
	if (user != NULL && p->cfg.known_network_ttl > 0) {
		known_key(p, ip, user, key);
		e = table_get(p, key);
		if (e != NULL)
			e->exempt_until = now + (int64_t)p->cfg.known_network_ttl;
	}
	ip_key(p, ip, key);
	/* Only create an entry when it is going to hold an exemption. */
	if (p->cfg.exempt_after_success == 0) {
		e = table_find(p, key, key_hash(p, key));
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
	lru_place(p, e, now);
}

/* A live score (0 once forgotten). */
static unsigned live_score(const struct penalty *p, const struct entry *e, int64_t now)
{
	if (e == NULL || e->score == 0 || now - e->last_fail >= (int64_t)p->cfg.forget_after)
		return 0;
	return e->score;
}

static bool user_known_at(const struct penalty *p, const struct penalty_addr *ip,
			  const char *user, int64_t now)
{
	unsigned char key[KEY_LEN];
	const struct entry *e;

	if (p->cfg.known_network_ttl == 0)
		return false;
	known_key(p, ip, user, key);
	e = table_peek(p, key);
	return e != NULL && e->exempt_until > now;
}

unsigned penalty_peek(const struct penalty *p, const struct penalty_addr *ip,
		      const char *user, int64_t now)
{
	unsigned char key[KEY_LEN];
	unsigned s, u;

	if (penalty_trusted(p, ip))
		return 0;
	ip_key(p, ip, key);
	s = live_score(p, table_peek(p, key), now);
	if (user != NULL) {
		user_key(p, user, key);
		u = live_score(p, table_peek(p, key), now);
		s = u > s ? u : s;
	}
	return s;
}

/* Keeps the deciding score alive while refusals go on: an attack that does
   not stop is not forgotten. */
static void refusal_seen(struct penalty *p, struct entry *ne, const char *user,
			 bool by_user, int64_t now)
{
	unsigned char key[KEY_LEN];
	struct entry *ue;

	if (!by_user) {
		ne->last_fail = now;
		scored_update(p, ne);
		return;
	}
	user_key(p, user, key);
	ue = table_find(p, key, key_hash(p, key));
	if (ue != NULL) {
		ue->last_fail = now;
		scored_update(p, ue);
	}
}

void penalty_admit(struct penalty *p, const struct penalty_addr *ip, const char *user,
		   int64_t now, struct penalty_admission *out)
{
	penalty_admit_shared(p, ip, user, now, NULL, out);
}

void penalty_admit_shared(struct penalty *p, const struct penalty_addr *ip, const char *user,
			  int64_t now, const struct penalty_shared *shared,
			  struct penalty_admission *out)
{
	static const struct penalty_shared none;
	const struct penalty_shared *sh = shared != NULL ? shared : &none;
	unsigned char key[KEY_LEN];
	struct entry *ne;
	unsigned net_score;
	bool by_user = false;

	memset(out, 0, sizeof(*out));
	out->verdict = PENALTY_GO;
	out->why = "none";
	if (penalty_trusted(p, ip)) {
		out->why = "trusted";
		return;
	}
	ip_key(p, ip, key);
	ne = table_get(p, key);
	if (ne == NULL)
		return;                 /* ENOMEM: fail open, as penalty_fail does */
	net_score = live_score(p, ne, now);
	if (sh->net_score > net_score)
		net_score = sh->net_score;
	out->score = net_score;
	/* A user known at this network (a recent success from it) is not slowed
	   by failures elsewhere: guesses from many addresses cannot lock them out
	   of their usual network. Everywhere else the user's score counts. */
	if (user != NULL && !sh->known && !user_known_at(p, ip, user, now)) {
		user_key(p, user, key);
		unsigned u = live_score(p, table_peek(p, key), now);
		if (sh->user_score > u)
			u = sh->user_score;
		if (u > out->score) {
			out->score = u;
			by_user = true;
		}
	}
	out->why = out->score == 0 ? "none" : by_user ? "user" : "network";
	out->hold = penalty_delay_for_score(out->score, p->cfg.max_delay);
	/* Refusals verify nothing, so a long Auth-Wait would gain nothing: it
	   would only keep nginx holding the client connection (one an attacker
	   has given up on) for that long. nginx needs at least 1. */
	/* Only a network with a score of its own is capped: a clean one (an
	   office, a webmail host) may open as many logins at once as it likes. */
	if (p->cfg.max_pending != 0 && ne->pending >= p->cfg.max_pending && net_score > 0) {
		out->verdict = PENALTY_BUSY;
		out->why = "pending";
		out->hold = 1;
		return;
	}
	/* An exempt network (a success not long ago) is held but never refused
	   by its own score: an office behind one address keeps working through
	   a colleague's typos. */
	if (p->cfg.refuse_at != 0 && out->score >= p->cfg.refuse_at &&
	    (by_user || (ne->exempt_until <= now && !sh->exempt))) {
		out->verdict = PENALTY_REFUSE;
		out->hold = 1;
		refusal_seen(p, ne, user, by_user, now);
		return;
	}
	if (out->hold > 0)
		out->verdict = PENALTY_HOLD;
	if (ne->pending < UINT32_MAX)
		ne->pending++;
	out->taken = true;
}

void penalty_release(struct penalty *p, const struct penalty_addr *ip)
{
	unsigned char key[KEY_LEN];
	struct entry *e;

	if (penalty_trusted(p, ip))
		return;
	ip_key(p, ip, key);
	e = table_find(p, key, key_hash(p, key));
	if (e != NULL && e->pending > 0)
		e->pending--;
}

size_t penalty_entries(const struct penalty *p)
{
	return p->count;
}

size_t penalty_active(struct penalty *p, int64_t now)
{
	struct entry *e;

	/* what entry_decay() would do at their next failure, done now */
	while ((e = p->scored.tail) != NULL &&
	       now - e->last_fail >= (int64_t)p->cfg.forget_after) {
		e->score = 0;
		e->nrecent = e->recent_next = 0;
		scored_unlink(p, e);
	}
	return p->scored.count;
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
	for (int k = 0; k < TK_COUNT; k++)
		p->cold[k].link = p->hot[k].link = offsetof(struct entry, lru);
	p->scored.link = offsetof(struct entry, scored);
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
	   and age out of the LRU; no rehash needed. Each kind is bounded by
	   max_entries on its own. */
	evict_to_bound(p);
	return 0;
}

void penalty_free(struct penalty *p)
{
	if (p == NULL)
		return;
	for (int k = 0; k < TK_COUNT; k++) {
		while (p->cold[k].tail != NULL)
			entry_drop(p, p->cold[k].tail);
		while (p->hot[k].tail != NULL)
			entry_drop(p, p->hot[k].tail);
	}
	free(p->buckets);
	free(p->trusted);
	sodium_memzero(p, sizeof(*p));
	free(p);
}

void penalty_network_text(const struct penalty *p, const struct penalty_addr *ip, char *out,
			  size_t len)
{
	unsigned char b[16];
	char text[INET6_ADDRSTRLEN];
	bool v4 = ip->family == AF_INET;
	unsigned prefix = v4 ? p->cfg.v4_prefix : p->cfg.v6_prefix;

	memset(b, 0, sizeof(b));
	memcpy(b, ip->b, addr_len(ip->family));
	mask_bytes(b, addr_len(ip->family), prefix);
	if (inet_ntop(v4 ? AF_INET : AF_INET6, b, text, sizeof(text)) == NULL)
		text[0] = '\0';
	snprintf(out, len, "%s/%u", text, prefix);
}

const struct penalty_config *penalty_get_config(const struct penalty *p)
{
	return &p->cfg;
}
