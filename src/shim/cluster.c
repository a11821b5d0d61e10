#include "cluster.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <openssl/evp.h>

#include "cluster_store.h"

/* At most this many drained host ids are taken from the store. */
#define CLUSTER_MAX_DRAINED 256

struct cluster {
	struct event_base *base;
	struct dglog *log;
	struct store *store;            /* NULL: cluster mode off */
	struct routing *routing;        /* borrowed: gets the drained set */
	char prefix[CLUSTER_PREFIX_MAX + 1];
	bool shared_penalty;
	unsigned assignment_ttl;        /* s; 0: no assignments */
	/* the store keys' lifetimes, from [penalty] */
	unsigned forget_after, exempt_ttl, known_ttl;
	unsigned retry_ms;
	/* the scripts' SHA1s (EVALSHA: the store keeps them from SCRIPT LOAD) */
	char sha_failure[41], sha_success[41];
	struct event *poll;             /* reads the drained set */
	bool poll_in_flight;
	bool refusal_logged;            /* an error reply said since the store came up */
	char *drained_text;             /* the set last applied, " a b " sorted; for the log */
};

/* KEYS: the scores (network, user). ARGV[1]: their lifetime; ARGV[2]: "1"
   to count a failure, "0" only to keep them alive (a refused login). */
static const char script_failure[] =
	"for _, k in ipairs(KEYS) do "
	"if ARGV[2] == '1' then redis.call('INCR', k) end "
	"if redis.call('EXISTS', k) == 1 then redis.call('EXPIRE', k, ARGV[1]) end "
	"end return 1";

/* KEYS: n:NET e:NET k:NET|USER a:USER ("" where not wanted).
   ARGV: exempt_ttl known_ttl backend mode previous assignment_ttl.
   mode: renew | create | replace | none. Returns the user's backend. */
static const char script_success[] =
	"if KEYS[1] ~= '' then redis.call('DEL', KEYS[1]) end "
	"if KEYS[2] ~= '' and tonumber(ARGV[1]) > 0 then "
	"redis.call('SET', KEYS[2], '1', 'EX', ARGV[1]) end "
	"if KEYS[3] ~= '' and tonumber(ARGV[2]) > 0 then "
	"redis.call('SET', KEYS[3], '1', 'EX', ARGV[2]) end "
	"if KEYS[4] == '' or ARGV[4] == 'none' then return false end "
	"local cur = redis.call('GET', KEYS[4]) "
	"if cur == ARGV[3] then redis.call('EXPIRE', KEYS[4], ARGV[6]) return cur end "
	"if (not cur and ARGV[4] ~= 'renew') or (ARGV[4] == 'replace' and cur == ARGV[5]) then "
	"redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[6]) return ARGV[3] end "
	"return cur";

/* ---- the drained set ---------------------------------------------------------- */

/* A host id as routing_host_id() makes them (an audience or an IP): anything
   else read from the store is ignored, so it can never reach a log line. */
static bool host_id_ok(const char *s, size_t len)
{
	return len > 0 && len < ROUTE_IDENTITY_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._:-") == len;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* " id1 id2 " of the sorted ids: one string to compare and log. */
static char *drained_join(const char **ids, size_t n)
{
	size_t len = 2;
	char *s;

	for (size_t i = 0; i < n; i++)
		len += strlen(ids[i]) + 1;
	if ((s = malloc(len)) == NULL)
		return NULL;
	strcpy(s, " ");
	for (size_t i = 0; i < n; i++) {
		strcat(s, ids[i]);
		strcat(s, " ");
	}
	return s;
}

static void apply_drained(struct cluster *c, const redisReply *reply)
{
	const char *ids[CLUSTER_MAX_DRAINED];
	size_t n = 0;
	char *text;

	for (size_t i = 0; i < reply->elements && n < CLUSTER_MAX_DRAINED; i++) {
		const redisReply *e = reply->element[i];

		if (e->type == REDIS_REPLY_STRING && host_id_ok(e->str, e->len))
			ids[n++] = e->str;
	}
	qsort(ids, n, sizeof(ids[0]), compare_strings);
	if ((text = drained_join(ids, n)) == NULL)
		return;
	/* nothing drained is where every edge starts: said only as a change */
	if (strcmp(c->drained_text != NULL ? c->drained_text : " ", text) == 0) {
		free(text);
		return;
	}
	if (routing_set_drained(c->routing, ids, n) < 0) {
		free(text);
		return;
	}
	dglog(c->log, LOG_INFO, "cluster drained=\"%.*s\"",
	      (int)(strlen(text) > 2 ? strlen(text) - 2 : 0), text + 1);
	free(c->drained_text);
	c->drained_text = text;
}

static void on_drained(void *ctx, const struct redisReply *reply)
{
	struct cluster *c = ctx;

	c->poll_in_flight = false;
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && c->routing != NULL)
		apply_drained(c, reply);
}

static void arm_poll(struct cluster *c)
{
	struct timeval tv = { .tv_sec = (time_t)(c->retry_ms / 1000),
			      .tv_usec = (suseconds_t)(c->retry_ms % 1000) * 1000 };

	evtimer_add(c->poll, &tv);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct cluster *c = arg;
	char key[CLUSTER_KEY_MAX];
	const char *argv[2] = { "SMEMBERS", key };
	size_t lens[2] = { 8, 0 };
	int len;

	(void)fd;
	(void)what;
	if (c->store == NULL)
		return;
	arm_poll(c);
	if (c->poll_in_flight || !store_up(c->store) ||
	    (len = cluster_drained_key(key, sizeof(key), c->prefix)) < 0)
		return;
	lens[1] = (size_t)len;
	if (store_command(c->store, on_drained, c, 2, argv, lens) == 0)
		c->poll_in_flight = true;
}

/* ---- the scripts ---------------------------------------------------------------- */

static void sha1_hex(const char *text, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned len = 0;

	out[0] = '\0';
	if (EVP_Digest(text, strlen(text), md, &len, EVP_sha1(), NULL) != 1 || len != 20)
		return;
	for (unsigned i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* An error reply (e.g. NOPERM: an ACL without a command the scripts use),
   said once per connection: the logins go on, the store just learns nothing. */
static void note_refusal(struct cluster *c, const char *command, const redisReply *reply)
{
	if (c->refusal_logged || reply == NULL || reply->type != REDIS_REPLY_ERROR)
		return;
	c->refusal_logged = true;
	dglog(c->log, LOG_WARNING, "cluster store=%s command=%s error=\"%.200s\" "
	      "(the store refused it: check its ACL; logins go on with local state)",
	      store_url(c->store), command, reply->str);
}

static void on_loaded(void *ctx, const struct redisReply *reply)
{
	struct cluster *c = ctx;

	if (cluster_on(c))
		note_refusal(c, "SCRIPT LOAD", reply);
}

/* SCRIPT LOAD both: sent ahead of any EVALSHA on the same connection, so
   the store has them when those arrive. */
static void load_scripts(void *ctx)
{
	struct cluster *c = ctx;
	const char *argv[3] = { "SCRIPT", "LOAD" };
	size_t lens[3] = { 6, 4 };

	c->refusal_logged = false;      /* a new connection (or a flushed store) */
	argv[2] = script_failure;
	lens[2] = sizeof(script_failure) - 1;
	(void)store_command(c->store, on_loaded, c, 3, argv, lens);
	argv[2] = script_success;
	lens[2] = sizeof(script_success) - 1;
	(void)store_command(c->store, on_loaded, c, 3, argv, lens);
}

/* ---- life cycle --------------------------------------------------------------- */

struct cluster *cluster_new(struct event_base *base, struct dglog *log)
{
	struct cluster *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->base = base;
	c->log = log;
	if ((c->poll = evtimer_new(base, on_poll, c)) == NULL) {
		free(c);
		return NULL;
	}
	sha1_hex(script_failure, c->sha_failure);
	sha1_hex(script_success, c->sha_success);
	return c;
}

/* forget_drained: the routing (still there) routes to every backend again. */
static void close_store(struct cluster *c, bool forget_drained)
{
	if (c->poll != NULL)
		evtimer_del(c->poll);
	if (c->store != NULL) {
		struct store *s = c->store;

		c->store = NULL;        /* callbacks run from store_free see it off */
		store_free(s);
	}
	c->poll_in_flight = false;
	free(c->drained_text);
	c->drained_text = NULL;
	if (forget_drained && c->routing != NULL)
		(void)routing_set_drained(c->routing, NULL, 0);
}

int cluster_configure(struct cluster *c, const struct dg_config *cfg,
		      const struct secret *password, struct routing *routing,
		      char *err, size_t errlen)
{
	const struct penalty_config *pc = &cfg->penalty;
	struct store_config sc = {
		.addr = cfg->cluster_addr,
		.user = cfg->cluster_user,
		.password = password != NULL ? (const char *)password->data : NULL,
		.timeout_ms = cfg->cluster_timeout_ms,
		.connect_timeout_ms = cfg->cluster_connect_timeout_ms,
		.retry_ms = cfg->cluster_retry_ms,
		.max_pending = cfg->cluster_max_pending,
		.tls_ca_file = cfg->cluster_tls_ca_file,
		.tls_cert_file = cfg->cluster_tls_cert_file,
		.tls_key_file = cfg->cluster_tls_key_file,
		.tls_server_name = cfg->cluster_tls_server_name,
	};
	struct store *fresh = NULL;

	if (cfg->cluster_store_text == NULL) {
		close_store(c, true);
		c->routing = routing;
		return 0;
	}
	if (c->store == NULL && (fresh = store_new(c->base, c->log)) == NULL) {
		snprintf(err, errlen, "[cluster]: out of memory");
		return -1;
	}
	if (store_configure(fresh != NULL ? fresh : c->store, &sc, err, errlen) < 0) {
		store_free(fresh);
		return -1;
	}
	if (fresh != NULL) {
		c->store = fresh;
		store_on_up(fresh, load_scripts, c);
	}
	if (c->routing != routing && c->routing != NULL)
		(void)routing_set_drained(c->routing, NULL, 0);
	c->routing = routing;
	snprintf(c->prefix, sizeof(c->prefix), "%s", cfg->cluster_prefix);
	c->shared_penalty = cfg->cluster_shared_penalty && cfg->penalty_enabled;
	c->assignment_ttl = cfg->cluster_assignment_ttl;
	c->forget_after = pc->forget_after;
	c->exempt_ttl = pc->exempt_after_success;
	c->known_ttl = pc->known_network_ttl;
	c->retry_ms = cfg->cluster_retry_ms;
	evtimer_del(c->poll);
	on_poll(-1, 0, c);              /* reads the drained set once up; then every retry_ms */
	return 0;
}

/* Before the event base goes: its events are freed here, not later. */
void cluster_shutdown(struct cluster *c)
{
	if (c == NULL)
		return;
	close_store(c, false);  /* shutting down: the drained set no longer matters */
	if (c->poll != NULL) {
		event_free(c->poll);
		c->poll = NULL;
	}
}

void cluster_free(struct cluster *c)
{
	if (c == NULL)
		return;
	cluster_shutdown(c);    /* if stop() has not: the routing may be gone already */
	free(c);
}

bool cluster_on(const struct cluster *c)
{
	return c != NULL && c->store != NULL;
}

bool cluster_assigns(const struct cluster *c)
{
	return cluster_on(c) && c->assignment_ttl > 0;
}

void cluster_store_stats(const struct cluster *c, struct store_stats *out)
{
	if (cluster_on(c))
		store_get_stats(c->store, out);
	else
		memset(out, 0, sizeof(*out));
}

const char *cluster_store_url(const struct cluster *c)
{
	return cluster_on(c) ? store_url(c->store) : "";
}

/* ---- admission: one MGET ------------------------------------------------------ */

/* The keys a lookup reads, in this order (some left out). */
enum { LK_NET, LK_USER, LK_KNOWN, LK_EXEMPT, LK_ASSIGN, LK_COUNT };

struct lookup {
	struct cluster *c;
	struct cluster_facts *out;
	cluster_done_fn *done;
	void *ctx;
	int which[LK_COUNT];            /* reply element index -> LK_* */
	int count;
};

static unsigned reply_uint(const redisReply *e)
{
	unsigned long v;
	char *end;

	if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len > 10)
		return 0;
	v = strtoul(e->str, &end, 10);
	return *end == '\0' && v <= 1000000 ? (unsigned)v : 1000000;
}

static void read_assigned(const redisReply *e, struct cluster_facts *out)
{
	if (e->type == REDIS_REPLY_STRING && host_id_ok(e->str, e->len) &&
	    e->len < sizeof(out->assigned))
		memcpy(out->assigned, e->str, e->len + 1);
}

static void on_lookup(void *ctx, const struct redisReply *reply)
{
	struct lookup *l = ctx;
	struct cluster_facts *out = l->out;

	if (cluster_on(l->c))
		note_refusal(l->c, "MGET", reply);
	if (reply != NULL && reply->type == REDIS_REPLY_ARRAY &&
	    reply->elements == (size_t)l->count) {
		out->answered = true;
		for (int i = 0; i < l->count; i++) {
			const redisReply *e = reply->element[i];

			switch (l->which[i]) {
			case LK_NET: out->penalty.net_score = reply_uint(e); break;
			case LK_USER: out->penalty.user_score = reply_uint(e); break;
			case LK_KNOWN: out->penalty.known = e->type == REDIS_REPLY_STRING; break;
			case LK_EXEMPT: out->penalty.exempt = e->type == REDIS_REPLY_STRING; break;
			case LK_ASSIGN: read_assigned(e, out); break;
			}
		}
	}
	l->done(l->ctx);
	free(l);
}

/* Appends the key PREFIX kind:a[|b] to a lookup's MGET (skipped if too long). */
struct mget {
	char keys[LK_COUNT][CLUSTER_KEY_MAX];
	const char *argv[1 + LK_COUNT];
	size_t lens[1 + LK_COUNT];
	int n;
};

static void mget_add(struct mget *m, struct lookup *l, const char *prefix, int which,
		     char kind, const char *a, size_t alen, const char *b, size_t blen)
{
	int len = cluster_key(m->keys[m->n], sizeof(m->keys[m->n]), prefix, kind, a, alen,
			      b, blen);

	if (len < 0)
		return;
	l->which[m->n] = which;
	m->argv[m->n + 1] = m->keys[m->n];
	m->lens[m->n + 1] = (size_t)len;
	m->n++;
}

bool cluster_lookup(struct cluster *c, const char *net, const char *user,
		    size_t user_len, struct cluster_facts *out, cluster_done_fn *done,
		    void *ctx)
{
	struct mget m = { .argv = { "MGET" }, .lens = { 4 } };
	struct lookup *l;

	memset(out, 0, sizeof(*out));
	if (!cluster_on(c) || !store_up(c->store) || (l = calloc(1, sizeof(*l))) == NULL)
		return false;
	if (c->shared_penalty && net != NULL) {
		mget_add(&m, l, c->prefix, LK_NET, 'n', net, strlen(net), NULL, 0);
		if (user != NULL) {
			mget_add(&m, l, c->prefix, LK_USER, 'u', user, user_len, NULL, 0);
			mget_add(&m, l, c->prefix, LK_KNOWN, 'k', net, strlen(net), user, user_len);
		}
		mget_add(&m, l, c->prefix, LK_EXEMPT, 'e', net, strlen(net), NULL, 0);
	}
	if (c->assignment_ttl > 0 && user != NULL)
		mget_add(&m, l, c->prefix, LK_ASSIGN, 'a', user, user_len, NULL, 0);
	l->c = c;
	l->out = out;
	l->done = done;
	l->ctx = ctx;
	l->count = m.n;
	if (m.n == 0 || store_command(c->store, on_lookup, l, m.n + 1, m.argv, m.lens) < 0) {
		free(l);
		return false;
	}
	return true;
}

/* ---- outcome: one EVAL -------------------------------------------------------- */

/* Errors are counted by the store; a script it no longer has (SCRIPT
   FLUSH) is loaded again for the next logins. */
static void on_recorded(void *ctx, const struct redisReply *reply)
{
	struct cluster *c = ctx;

	if (reply == NULL || reply->type != REDIS_REPLY_ERROR || !cluster_on(c))
		return;
	if (strncmp(reply->str, "NOSCRIPT", 8) == 0)
		load_scripts(c);
	else
		note_refusal(c, "EVALSHA", reply);
}

static const char *assign_mode(enum cluster_assign a)
{
	switch (a) {
	case CLUSTER_ASSIGN_RENEW: return "renew";
	case CLUSTER_ASSIGN_CREATE: return "create";
	case CLUSTER_ASSIGN_REPLACE: return "replace";
	case CLUSTER_ASSIGN_NONE: break;
	}
	return "none";
}

static void record_failure(struct cluster *c, const struct cluster_outcome *o)
{
	char keys[2][CLUSTER_KEY_MAX], ttl[16];
	const char *argv[7] = { "EVALSHA", c->sha_failure };
	size_t lens[7] = { 7, 40 };
	int n = 0, len;

	if ((len = cluster_key(keys[n], sizeof(keys[n]), c->prefix, 'n', o->net,
			       strlen(o->net), NULL, 0)) >= 0) {
		argv[3 + n] = keys[n];
		lens[3 + n] = (size_t)len;
		n++;
	}
	if (o->user != NULL &&
	    (len = cluster_key(keys[n], sizeof(keys[n]), c->prefix, 'u', o->user,
			       o->user_len, NULL, 0)) >= 0) {
		argv[3 + n] = keys[n];
		lens[3 + n] = (size_t)len;
		n++;
	}
	if (n == 0)
		return;
	argv[2] = n == 1 ? "1" : "2";
	lens[2] = 1;
	snprintf(ttl, sizeof(ttl), "%u", c->forget_after);
	argv[3 + n] = ttl;
	lens[3 + n] = strlen(ttl);
	argv[4 + n] = o->event == CLUSTER_EVENT_FAILED ? "1" : "0";
	lens[4 + n] = 1;
	(void)store_command(c->store, on_recorded, c, 5 + n, argv, lens);
}

static void record_success(struct cluster *c, const struct cluster_outcome *o)
{
	char keys[4][CLUSTER_KEY_MAX], exempt[16], known[16], assign_ttl[16];
	const char *argv[13] = { "EVALSHA", c->sha_success, "4" };
	size_t lens[13] = { 7, 40, 1 };
	bool scores = c->shared_penalty && o->net != NULL;
	bool assign = c->assignment_ttl > 0 && o->user != NULL && o->backend != NULL &&
		      o->assign != CLUSTER_ASSIGN_NONE;
	int len;

	if (!scores && !assign)
		return;
	for (int i = 0; i < 4; i++) {
		keys[i][0] = '\0';
		len = -1;
		if (scores && i == 0)
			len = cluster_key(keys[i], sizeof(keys[i]), c->prefix, 'n', o->net,
					  strlen(o->net), NULL, 0);
		else if (scores && i == 1)
			len = cluster_key(keys[i], sizeof(keys[i]), c->prefix, 'e', o->net,
					  strlen(o->net), NULL, 0);
		else if (scores && i == 2 && o->user != NULL)
			len = cluster_key(keys[i], sizeof(keys[i]), c->prefix, 'k', o->net,
					  strlen(o->net), o->user, o->user_len);
		else if (assign && i == 3)
			len = cluster_key(keys[i], sizeof(keys[i]), c->prefix, 'a', o->user,
					  o->user_len, NULL, 0);
		if (len < 0)
			keys[i][0] = '\0';
		argv[3 + i] = keys[i];
		lens[3 + i] = len > 0 ? (size_t)len : 0;
	}
	snprintf(exempt, sizeof(exempt), "%u", c->exempt_ttl);
	snprintf(known, sizeof(known), "%u", c->known_ttl);
	snprintf(assign_ttl, sizeof(assign_ttl), "%u", c->assignment_ttl);
	argv[7] = exempt;
	argv[8] = known;
	argv[9] = assign ? o->backend : "";
	argv[10] = assign ? assign_mode(o->assign) : "none";
	argv[11] = o->previous != NULL ? o->previous : "";
	argv[12] = assign_ttl;
	for (int i = 7; i < 13; i++)
		lens[i] = strlen(argv[i]);
	(void)store_command(c->store, on_recorded, c, 13, argv, lens);
}

void cluster_record(struct cluster *c, const struct cluster_outcome *o)
{
	if (!cluster_on(c) || !store_up(c->store))
		return;
	switch (o->event) {
	case CLUSTER_EVENT_FAILED:
	case CLUSTER_EVENT_REFUSED:
		if (c->shared_penalty && o->net != NULL)
			record_failure(c, o);
		return;
	case CLUSTER_EVENT_SUCCESS:
		record_success(c, o);
		return;
	case CLUSTER_EVENT_NONE:
		return;
	}
}
