/* Backend routing for dovegate-auth: the per-protocol pools of the config
   (route.h: weighted rendezvous hashing on the user), their active health
   checks (health.h) and the host-name resolver for passdb host= fields
   (dns.h).

   Process-wide and outside the reloadable runtime, like the penalty state:
   a reload (routing_configure) builds new pools and a new checker, and every
   backend that is still configured keeps its health state (up or down);
   new ones are down until their first good probe. Loop thread only. */
#ifndef DOVEGATE_SHIM_ROUTING_H
#define DOVEGATE_SHIM_ROUTING_H

#include <stdbool.h>
#include <stddef.h>

#include "authhttp.h"
#include "backend.h"
#include "config.h"
#include "dns.h"
#include "log.h"
#include "route.h"

struct event_base;
struct routing;

/* base NULL: no health checks (every backend counts as up) and no
   resolver (tests, `dovegate-auth -t`). NULL: out of memory. */
struct routing *routing_new(struct event_base *base, struct dglog *log);
/* Applies cfg's pools, [health] and [route] key. -1 with err (the previous
   pools stay in force). */
int routing_configure(struct routing *r, const struct dg_config *cfg,
		      char *err, size_t errlen);
/* Stops every probe and answers pending resolutions with an error; the
   pools stay usable (every backend keeps its last state). Before the event
   base goes. */
void routing_shutdown(struct routing *r);
void routing_free(struct routing *r);

/* True when proto has a pool (healthy or not). */
bool routing_serves(const struct routing *r, enum dg_proto proto);

/* The backend a login goes to. */
struct routing_choice {
	struct backend addr;
	/* the backend's ticket audience; "" when it has none of its own (the
	   credentials then use [ticket] audience) */
	char audience[ROUTE_IDENTITY_MAX];
	/* every backend of the pool is down: routed to one anyway */
	bool panic;
};

/* The healthy backend for key (the user) in proto's pool. When none is up,
   with [health] panic = yes (the default), the backend key would have
   among all of them, down or not (counted, out->panic); false when the pool
   is empty or every backend is drained (or none is up and panic = no).
   Sticky: the same key gets the same backend while it is up, on every host
   with the same [route] key and backends. */
bool routing_pick(struct routing *r, enum dg_proto proto, const char *key,
		  size_t key_len, struct routing_choice *out);
/* A passdb's host (an IP literal) and port (0: not given): a backend of
   proto's pool at that IP (and port, when given); without a port, that
   backend's port. An address outside the pool only with [route]
   allow_hosts_outside_pools = yes (without a port, then, the protocol's
   standard port: 143, 110, 587), else ROUTING_OUTSIDE_POOL. The audience is
   that of the pool backend at the address, if any. -1 when ip is not an IP
   literal. */
#define ROUTING_OUTSIDE_POOL (-2)
int routing_choice_for(const struct routing *r, enum dg_proto proto, const char *ip,
		       unsigned port, struct routing_choice *out);

/* ---- cluster mode ------------------------------------------------------------ */

/* A backend's host id: its audience, else its IP. The imap, pop3 and smtp
   backends of one Dovecot host share it; the cluster store's assignments
   and drained set name backends by it. */
const char *routing_host_id(const struct routing_choice *c);
/* The backend of proto's pool with host id id, into out. USABLE: up (or
   not checked yet), weight > 0 and not drained; UNUSABLE: in the pool but
   not those; ABSENT: no such backend in the pool. */
#define ROUTING_HOST_USABLE 1
#define ROUTING_HOST_UNUSABLE 0
#define ROUTING_HOST_ABSENT (-1)
int routing_find_host(const struct routing *r, enum dg_proto proto, const char *id,
		      struct routing_choice *out);
/* A host id two backends of one pool share (e.g. two Dovecots on one IP,
   neither with an audience of its own), with its pool; NULL: none. */
const char *routing_shared_host_id(const struct routing *r, enum dg_proto *proto);
/* The host ids drained cluster-wide: never picked by hashing, their
   assignments not honoured. Replaces the previous set; kept across
   routing_configure(). -1 on ENOMEM (the previous set stays). */
int routing_set_drained(struct routing *r, const char *const *ids, size_t count);

/* Resolves a passdb host= name to an IP literal (dns.h). Without a
   resolver, done gets an error at once. */
void routing_resolve(struct routing *r, const char *host, dns_done_fn *done, void *ctx);

/* ---- read-only view, for metrics ----------------------------------------- */

struct routing_backend_info {
	const char *proto;              /* "imap", "pop3", "smtp" */
	const char *backend;            /* "ip:port" ("[v6]:port") */
	const char *name;               /* [backend NAME]; "" for [backend] PROTO = */
	bool up;                        /* health checks say so (or checks are off) */
	unsigned weight;                /* 0: drained */
};

/* Whether proto's pool is in panic mode now (logged once when it enters
   and once when it leaves), and the logins routed in panic since start. */
void routing_panic_get(const struct routing *r, enum dg_proto proto, bool *active,
		       unsigned long *routed);

size_t routing_backend_count(const struct routing *r);
/* i < routing_backend_count(); the strings live until the next
   routing_configure() or routing_free(). */
void routing_backend_get(const struct routing *r, size_t i, struct routing_backend_info *out);

#endif
