/* Backend pools per mail protocol and the choice of a backend for a user:
   weighted rendezvous (highest random weight) hashing, so a user always lands
   on the same healthy backend, and adding, removing or losing one backend
   moves only the users that backend had (or gets).

   Stateless agreement: every dovegate-auth host in front of the same
   backends must pick the same backend for a user without talking to the
   others. So the hash key is NOT random per process: it is derived from a
   configured text (route_key_derive), the same on every host; the default
   text is ROUTE_KEY_DEFAULT. It only needs to be secret if an operator cares
   that outsiders could predict which backend a user name lands on.

   Backends are identified in the hash by their identity (the ticket audience)
   when set, else by "ip:port", so renumbering a backend that keeps its
   identity does not move its users. */
#ifndef DOVEGATE_SHIM_ROUTE_H
#define DOVEGATE_SHIM_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define ROUTE_KEY_BYTES 16              /* crypto_shorthash_KEYBYTES (SipHash-2-4) */
#define ROUTE_KEY_DEFAULT "dovegate-route-v1"
#define ROUTE_IDENTITY_MAX 128
#define ROUTE_NONE (-1)

enum route_proto { ROUTE_IMAP, ROUTE_POP3, ROUTE_SMTP, ROUTE_PROTO_COUNT };

struct route_backend {
	struct backend addr;            /* ip (IPv6 ok), port, text */
	unsigned weight;                /* 0: drained, never chosen */
	char identity[ROUTE_IDENTITY_MAX];   /* audience name for tickets; may be "" */
	uint64_t id_hash;               /* hash of identity or ip:port, under the pool key */
	bool down;                      /* health checks said so */
	/* Not probed yet (a new backend, or every one at start-up): down, but
	   chosen when no probed backend of the pool is up, so the first logins
	   after a (re)start are not refused for want of a probe result. */
	bool unchecked;
	/* drained cluster-wide (`dovegate cluster drain`): like weight 0 */
	bool drained;
};

/* Owns its array. Protocol-free: a table holds one per protocol. */
struct route_pool {
	struct route_backend *v;
	size_t count, cap;
	unsigned char key[ROUTE_KEY_BYTES];
};

struct route_table {
	struct route_pool pools[ROUTE_PROTO_COUNT];
};

/* Derives the pool key from a configured text (NULL: ROUTE_KEY_DEFAULT).
   Deterministic, so all hosts with the same text agree. */
void route_key_derive(const char *text, unsigned char key[ROUTE_KEY_BYTES]);
/* "imap", "pop3", "smtp" (nginx's Auth-Protocol); -1 otherwise. */
int route_proto_parse(const char *name);
const char *route_proto_name(enum route_proto proto);

void route_pool_init(struct route_pool *pool, const unsigned char key[ROUTE_KEY_BYTES]);
void route_pool_free(struct route_pool *pool);
/* spec is "ip:port" or "[v6]:port"; identity may be NULL. Returns the new
   backend's index, or -1 with *error_r (static text). */
int route_pool_add(struct route_pool *pool, const char *spec, unsigned weight,
		   const char *identity, const char **error_r);
/* A health verdict: also ends the backend's unchecked state. */
void route_pool_set_down(struct route_pool *pool, size_t index, bool down);
void route_pool_set_unchecked(struct route_pool *pool, size_t index);
/* The backend for user among those up with weight > 0; when none is, among
   the unchecked ones (ROUTE_NONE when neither).
   Deterministic across processes and hosts for the same key and backends. */
int route_pick(const struct route_pool *pool, const char *user, size_t user_len);

/* How route_pick_panic found its backend. */
enum route_how { ROUTE_HOW_UP, ROUTE_HOW_UNCHECKED, ROUTE_HOW_PANIC };

/* route_pick, and when it finds none: among every backend with weight > 0,
   down or not ("panic", like nginx upstreams whose servers are all marked
   failed, or Envoy's panic threshold): health checks that fail everywhere
   at once more likely say something about the checks than about every
   backend. *how (may be NULL) says which set the backend came from. */
int route_pick_panic(const struct route_pool *pool, const char *user, size_t user_len,
		     enum route_how *how);
/* True when the pool has a backend with weight > 0 but none of them is up
   or unchecked: route_pick_panic would pick a down one. */
bool route_pool_panics(const struct route_pool *pool);
/* Convenience: NULL when none is available. */
const struct route_backend *route_pick_backend(const struct route_pool *pool,
					       const char *user, size_t user_len);

void route_table_init(struct route_table *t, const unsigned char key[ROUTE_KEY_BYTES]);
void route_table_free(struct route_table *t);

#endif
