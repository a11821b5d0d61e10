#include "routing.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health.h"

_Static_assert((int)ROUTE_IMAP == (int)DG_PROTO_IMAP && (int)ROUTE_POP3 == (int)DG_PROTO_POP3 &&
	       (int)ROUTE_SMTP == (int)DG_PROTO_SMTP && (int)ROUTE_PROTO_COUNT == (int)DG_PROTO_COUNT,
	       "route pools are indexed by enum dg_proto");

/* One pool backend; entries[i] is health target i when checks run. */
struct entry {
	enum dg_proto proto;
	size_t pool_index;
	char name[65];                  /* "": [backend] PROTO = */
	bool up;
};

/* What one configuration built; replaced as a whole on reload. */
struct generation {
	struct route_table table;
	struct entry *entries;
	size_t count;
	struct health_checker *hc;      /* NULL: checks off */
};

/* A pool's panic mode (route_pick_panic): kept across reloads. */
struct panic_state {
	bool active;                    /* every backend down: routing to them anyway */
	unsigned long routed;           /* logins routed while active */
};

struct routing {
	struct event_base *base;
	struct dglog *log;
	struct dns *dns;
	struct generation gen;
	bool configured;
	bool panic_allowed;             /* [health] panic */
	bool outside_allowed;           /* [route] allow_hosts_outside_pools */
	struct panic_state panic[DG_PROTO_COUNT];
	/* host ids drained cluster-wide (routing_set_drained), kept across
	   routing_configure() */
	char **drained;
	size_t drained_count;
};

static void choice_from(const struct routing *r, enum dg_proto proto, size_t pool_index,
			struct routing_choice *out);
static void drained_free(struct routing *r);

struct routing *routing_new(struct event_base *base, struct dglog *log)
{
	struct routing *r = calloc(1, sizeof(*r));
	char err[128];

	if (r == NULL)
		return NULL;
	r->base = base;
	r->log = log;
	/* read now, before privileges are dropped */
	if (base != NULL && (r->dns = dns_new(base, err, sizeof(err))) == NULL)
		dglog(log, LOG_WARNING, "host names in passdb host= fields will fail: %s", err);
	return r;
}

static void generation_free(struct generation *g)
{
	/* the checker first: no callback may see a half-freed generation */
	health_free(g->hc);
	route_table_free(&g->table);
	free(g->entries);
	memset(g, 0, sizeof(*g));
}

void routing_shutdown(struct routing *r)
{
	if (r == NULL)
		return;
	health_free(r->gen.hc);
	r->gen.hc = NULL;
	dns_free(r->dns);
	r->dns = NULL;
	r->base = NULL;
}

void routing_free(struct routing *r)
{
	if (r == NULL)
		return;
	routing_shutdown(r);
	generation_free(&r->gen);
	drained_free(r);
	free(r);
}

static void log_state(struct routing *r, const struct entry *e, const char *state,
		      const char *reason)
{
	const struct route_backend *b = &r->gen.table.pools[e->proto].v[e->pool_index];
	struct kvline kv;

	kv_init(&kv, "backend");
	kv_add(&kv, "proto", dg_proto_name(e->proto));
	kv_add(&kv, "backend", b->addr.text);
	kv_add(&kv, "name", e->name[0] != '\0' ? e->name : NULL);
	kv_add(&kv, "state", state);
	kv_add(&kv, "reason", reason);
	dglog(r->log, strcmp(state, "up") == 0 ? LOG_INFO : LOG_WARNING, "%s", kv_str(&kv));
}

/* One line when a pool enters panic mode and one when it leaves it. */
static void update_panic(struct routing *r, enum dg_proto proto)
{
	const struct route_pool *pool = &r->gen.table.pools[proto];
	struct panic_state *ps = &r->panic[proto];
	bool now = r->panic_allowed && route_pool_panics(pool);
	struct kvline kv;

	if (now == ps->active)
		return;
	ps->active = now;
	kv_init(&kv, "pool");
	kv_add(&kv, "proto", dg_proto_name(proto));
	kv_add(&kv, "state", now ? "panic" : "normal");
	kv_add(&kv, "detail", now ? "every backend is down: routing to them anyway"
				  : "a backend is up again");
	dglog(r->log, now ? LOG_WARNING : LOG_INFO, "%s", kv_str(&kv));
}

static void on_health(void *ctx, size_t id, const struct health_target *t, bool up,
		      const char *reason)
{
	struct routing *r = ctx;
	struct entry *e;

	(void)t;
	if (id >= r->gen.count)
		return;
	e = &r->gen.entries[id];
	e->up = up;
	route_pool_set_down(&r->gen.table.pools[e->proto], e->pool_index, !up);
	log_state(r, e, up ? "up" : "down", reason);
	update_panic(r, e->proto);
}

/* The state a backend had in the running generation: 1 up, 0 down, -1 new. */
static int previous_state(const struct routing *r, enum dg_proto proto, const char *text)
{
	for (size_t i = 0; r->configured && i < r->gen.count; i++) {
		const struct entry *e = &r->gen.entries[i];

		if (e->proto == proto &&
		    strcmp(r->gen.table.pools[proto].v[e->pool_index].addr.text, text) == 0)
			return e->up;
	}
	return -1;
}

static int fill_target(const struct dg_config *cfg, const struct backend_conf *bc,
		       int prev, struct health_target *t)
{
	const struct backend *addr = &bc->addr;
	enum dg_proto proto = bc->proto;
	struct sockaddr_in *sin = (struct sockaddr_in *)&t->addr;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&t->addr;

	memset(t, 0, sizeof(*t));
	if (inet_pton(AF_INET, addr->ip, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(addr->port);
		t->addrlen = sizeof(*sin);
	} else if (inet_pton(AF_INET6, addr->ip, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(addr->port);
		t->addrlen = sizeof(*sin6);
	} else {
		return -1;
	}
	t->proto = (enum health_proto)health_proto_parse(dg_proto_name(proto));
	snprintf(t->name, sizeof(t->name), "%s %s", dg_proto_name(proto), addr->text);
	t->interval_ms = cfg->health_interval_ms;
	t->timeout_ms = cfg->health_timeout_ms;
	t->params.rise = cfg->health_rise;
	t->params.fall = cfg->health_fall;
	/* a reload neither flaps nor forgets; a new backend waits for its
	   first good probe (and serves meanwhile only when no checked backend
	   of its pool is up: route_pool_set_unchecked) */
	t->start = prev < 0 ? HEALTH_START_PENDING : prev ? HEALTH_START_UP : HEALTH_START_DOWN;
	t->greeting_timeout_ms = cfg->health_greeting_timeout_ms;
	t->send_proxy = bc->proxy_protocol >= 0 ? bc->proxy_protocol : cfg->health_proxy_protocol;
	return 0;
}

/* One backend into g's pool and entries; checked unless checks are off. */
static int add_backend(struct routing *r, struct generation *g, const struct dg_config *cfg,
		       const struct backend_conf *bc, char *err, size_t errlen)
{
	struct route_pool *pool = &g->table.pools[bc->proto];
	struct entry *e = &g->entries[g->count];
	const char *why = "invalid";
	int prev = previous_state(r, bc->proto, bc->addr.text);
	int idx = route_pool_add(pool, bc->addr.text, bc->weight, bc->audience, &why);
	struct health_target t;

	if (idx < 0) {
		snprintf(err, errlen, "%s:%u: %s: %s", cfg->path, bc->line, bc->addr.text, why);
		return -1;
	}
	memset(e, 0, sizeof(*e));
	e->proto = bc->proto;
	e->pool_index = (size_t)idx;
	snprintf(e->name, sizeof(e->name), "%s", bc->name != NULL ? bc->name : "");
	g->count++;
	if (g->hc == NULL) {
		e->up = true;
		return 0;
	}
	e->up = prev == 1;
	if (prev < 0)
		route_pool_set_unchecked(pool, e->pool_index);
	else
		route_pool_set_down(pool, e->pool_index, !e->up);
	if (fill_target(cfg, bc, prev, &t) < 0 || health_add(g->hc, &t) < 0) {
		snprintf(err, errlen, "%s:%u: cannot check %s", cfg->path, bc->line, bc->addr.text);
		return -1;
	}
	return 0;
}

static const char *backend_host_id(const struct route_backend *b)
{
	return b->identity[0] != '\0' ? b->identity : b->addr.ip;
}

static bool is_drained(const struct routing *r, const char *id)
{
	for (size_t i = 0; i < r->drained_count; i++)
		if (strcmp(r->drained[i], id) == 0)
			return true;
	return false;
}

static void apply_drained(struct routing *r)
{
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		struct route_pool *pool = &r->gen.table.pools[p];

		for (size_t i = 0; i < pool->count; i++)
			pool->v[i].drained = is_drained(r, backend_host_id(&pool->v[i]));
	}
}

static void drained_free(struct routing *r)
{
	for (size_t i = 0; i < r->drained_count; i++)
		free(r->drained[i]);
	free(r->drained);
	r->drained = NULL;
	r->drained_count = 0;
}

int routing_set_drained(struct routing *r, const char *const *ids, size_t count)
{
	char **copy = calloc(count + 1, sizeof(*copy));

	if (copy == NULL)
		return -1;
	for (size_t i = 0; i < count; i++) {
		if ((copy[i] = strdup(ids[i])) == NULL) {
			while (i-- > 0)
				free(copy[i]);
			free(copy);
			return -1;
		}
	}
	drained_free(r);
	r->drained = copy;
	r->drained_count = count;
	apply_drained(r);
	for (int p = 0; p < DG_PROTO_COUNT; p++)
		update_panic(r, (enum dg_proto)p);
	return 0;
}

const char *routing_host_id(const struct routing_choice *c)
{
	return c->audience[0] != '\0' ? c->audience : c->addr.ip;
}

int routing_find_host(const struct routing *r, enum dg_proto proto, const char *id,
		      struct routing_choice *out)
{
	const struct route_pool *pool;

	memset(out, 0, sizeof(*out));
	if (!routing_serves(r, proto))
		return ROUTING_HOST_ABSENT;
	pool = &r->gen.table.pools[proto];
	for (size_t i = 0; i < pool->count; i++) {
		const struct route_backend *b = &pool->v[i];

		if (strcmp(backend_host_id(b), id) != 0)
			continue;
		choice_from(r, proto, i, out);
		return b->weight > 0 && !b->drained && (!b->down || b->unchecked) ?
		       ROUTING_HOST_USABLE : ROUTING_HOST_UNUSABLE;
	}
	return ROUTING_HOST_ABSENT;
}

const char *routing_shared_host_id(const struct routing *r, enum dg_proto *proto)
{
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		const struct route_pool *pool = &r->gen.table.pools[p];

		for (size_t i = 0; i < pool->count; i++)
			for (size_t j = i + 1; j < pool->count; j++)
				if (strcmp(backend_host_id(&pool->v[i]),
					   backend_host_id(&pool->v[j])) == 0) {
					*proto = (enum dg_proto)p;
					return backend_host_id(&pool->v[i]);
				}
	}
	return NULL;
}

int routing_configure(struct routing *r, const struct dg_config *cfg, char *err, size_t errlen)
{
	struct generation g;
	unsigned char key[ROUTE_KEY_BYTES];

	memset(&g, 0, sizeof(g));
	route_key_derive(cfg->route_key, key);
	route_table_init(&g.table, key);
	g.entries = calloc(cfg->backend_count + 1, sizeof(*g.entries));
	if (g.entries == NULL ||
	    (r->base != NULL && cfg->health_enabled &&
	     (g.hc = health_new(r->base, on_health, r)) == NULL)) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		generation_free(&g);
		return -1;
	}
	for (size_t i = 0; i < cfg->backend_count; i++) {
		if (add_backend(r, &g, cfg, &cfg->backends[i], err, errlen) < 0) {
			generation_free(&g);
			return -1;
		}
	}
	/* probes start from the loop, after this returns: the callback sees g
	   only once it is r->gen */
	generation_free(&r->gen);
	r->gen = g;
	r->configured = true;
	r->panic_allowed = cfg->health_panic;
	r->outside_allowed = cfg->route_allow_outside;
	apply_drained(r);
	for (int p = 0; p < DG_PROTO_COUNT; p++)
		update_panic(r, (enum dg_proto)p);
	return 0;
}

bool routing_serves(const struct routing *r, enum dg_proto proto)
{
	return (unsigned)proto < DG_PROTO_COUNT && r->gen.table.pools[proto].count > 0;
}

static void choice_from(const struct routing *r, enum dg_proto proto, size_t pool_index,
			struct routing_choice *out)
{
	const struct route_backend *b = &r->gen.table.pools[proto].v[pool_index];

	out->addr = b->addr;
	snprintf(out->audience, sizeof(out->audience), "%s", b->identity);
}

bool routing_pick(struct routing *r, enum dg_proto proto, const char *key,
		  size_t key_len, struct routing_choice *out)
{
	const struct route_pool *pool;
	enum route_how how = ROUTE_HOW_UP;
	int i;

	memset(out, 0, sizeof(*out));
	if (!routing_serves(r, proto))
		return false;
	pool = &r->gen.table.pools[proto];
	i = r->panic_allowed ? route_pick_panic(pool, key, key_len, &how)
			     : route_pick(pool, key, key_len);
	if (i == ROUTE_NONE)
		return false;
	if (how == ROUTE_HOW_PANIC)
		r->panic[proto].routed++;
	out->panic = how == ROUTE_HOW_PANIC;
	choice_from(r, proto, (size_t)i, out);
	return true;
}

void routing_panic_get(const struct routing *r, enum dg_proto proto, bool *active,
		       unsigned long *routed)
{
	*active = r->panic[proto].active;
	*routed = r->panic[proto].routed;
}

/* The pool backend at ip (and port, unless 0), or -1. */
static int pool_find(const struct route_pool *pool, const char *ip, unsigned port)
{
	for (size_t i = 0; i < pool->count; i++) {
		const struct backend *b = &pool->v[i].addr;

		if (strcmp(b->ip, ip) == 0 && (port == 0 || b->port == port))
			return (int)i;
	}
	return -1;
}

/* "ip:port", "[v6]:port" */
static int make_spec(char *out, size_t len, const char *ip, unsigned port)
{
	int n = strchr(ip, ':') != NULL ? snprintf(out, len, "[%s]:%u", ip, port) :
					   snprintf(out, len, "%s:%u", ip, port);

	return n > 0 && (size_t)n < len ? 0 : -1;
}

int routing_choice_for(const struct routing *r, enum dg_proto proto, const char *ip,
		       unsigned port, struct routing_choice *out)
{
	static const unsigned standard_port[DG_PROTO_COUNT] = { 143, 110, 587 };
	const struct route_pool *pool = &r->gen.table.pools[proto];
	char spec[INET6_ADDRSTRLEN + 16];
	struct backend norm;
	const char *why;
	int i;

	memset(out, 0, sizeof(*out));
	/* normalised first, so that "::ffff:..." or "010.0.0.1" cannot miss */
	if (strlen(ip) >= INET6_ADDRSTRLEN ||
	    make_spec(spec, sizeof(spec), ip, port != 0 ? port : 1) < 0 ||
	    backend_parse(spec, &norm, &why) < 0)
		return -1;
	i = pool_find(pool, norm.ip, port);
	if (i >= 0) {
		choice_from(r, proto, (size_t)i, out);
		return 0;
	}
	/* the login's credentials would go to a server nobody configured */
	if (!r->outside_allowed)
		return ROUTING_OUTSIDE_POOL;
	make_spec(spec, sizeof(spec), norm.ip, port != 0 ? port : standard_port[proto]);
	return backend_parse(spec, &out->addr, &why);
}

void routing_resolve(struct routing *r, const char *host, dns_done_fn *done, void *ctx)
{
	if (r->dns == NULL) {
		done(ctx, NULL, "no resolver");
		return;
	}
	dns_resolve(r->dns, host, done, ctx);
}

size_t routing_backend_count(const struct routing *r)
{
	return r != NULL ? r->gen.count : 0;
}

void routing_backend_get(const struct routing *r, size_t i, struct routing_backend_info *out)
{
	const struct entry *e = &r->gen.entries[i];
	const struct route_backend *b = &r->gen.table.pools[e->proto].v[e->pool_index];

	out->proto = dg_proto_name(e->proto);
	out->backend = b->addr.text;
	out->name = e->name;
	out->up = e->up;
	out->weight = b->weight;
}
