/* The connection to the cluster's shared store (Redis or Valkey): one
   asynchronous hiredis connection on the event loop (its libevent adapter),
   never a blocking call. Every command has a deadline (timeout_ms): when the
   oldest command in flight passes it, the connection is dropped and every
   command in flight is answered with NULL, so a slow store costs a login at
   most the timeout. While the store is not up (connecting, refused, timed
   out), store_command() refuses at once and callers use their local state;
   the connection is retried every retry_ms. The state changes are logged
   once each ("cluster store=URL state=down error=..." / "state=up").

   Loop thread only. */
#ifndef DOVEGATE_SHIM_STORE_H
#define DOVEGATE_SHIM_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster_store.h"
#include "log.h"

struct event_base;
struct redisReply;
struct store;

struct store_config {
	struct cluster_addr addr;       /* host: an IP literal (no DNS on the loop) */
	const char *user;               /* ACL user; NULL: AUTH with the password alone */
	const char *password;           /* NULL: no AUTH */
	unsigned timeout_ms;            /* per command */
	unsigned connect_timeout_ms;    /* connect + AUTH + SELECT */
	unsigned retry_ms;              /* between attempts while down */
	unsigned max_pending;           /* commands in flight; beyond: refused */
	/* TLS (addr.transport CLUSTER_TLS); NULL: system CAs, no client cert */
	const char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
};

struct store_stats {
	bool up;
	uint64_t commands;              /* sent */
	uint64_t errors;                /* error replies, timeouts, lost connections */
	uint64_t refused;               /* store_command() while down or full */
	uint64_t downs;                 /* up -> down transitions */
};

/* NULL on ENOMEM. Nothing happens until store_configure(). */
struct store *store_new(struct event_base *base, struct dglog *log);
/* Starts connecting (or reconnects when the address, credentials or TLS
   settings changed; otherwise only the timeouts are updated). -1 with err
   on a setting this build cannot honour (TLS without hiredis_ssl, a TLS
   file that does not load); the previous connection then stays. */
int store_configure(struct store *s, const struct store_config *cfg, char *err, size_t errlen);
/* Closes the connection; commands in flight are answered with NULL. */
void store_free(struct store *s);

/* fn(ctx) runs each time the connection comes up (after AUTH, SELECT and
   PING), before any command sent later: e.g. to load scripts. */
typedef void store_up_fn(void *ctx);
void store_on_up(struct store *s, store_up_fn *fn, void *ctx);

bool store_up(const struct store *s);
const char *store_url(const struct store *s);  /* "" before store_configure() */
void store_get_stats(const struct store *s, struct store_stats *out);

/* reply is NULL on a timeout, a lost connection or shutdown; an error reply
   (REDIS_REPLY_ERROR) is passed on as it is. Valid only during the call. */
typedef void store_reply_fn(void *ctx, const struct redisReply *reply);

/* Sends one command (argv with lengths: binary safe). -1 when the store is
   not up or max_pending commands are in flight: fn is then never called.
   Otherwise fn is called exactly once, from the event loop, never from
   within store_command(). */
int store_command(struct store *s, store_reply_fn *fn, void *ctx, int argc,
		  const char **argv, const size_t *argvlen);

#endif
