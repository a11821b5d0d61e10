/* HTTP glue: libevent evhttp on a TCP or UNIX listener, requests handed to
   decision_run(), graceful drain on shutdown. */
#ifndef DOVEGATE_SHIM_SERVER_H
#define DOVEGATE_SHIM_SERVER_H

#include <stddef.h>

#include "log.h"
#include "runtime.h"
#include "workers.h"

struct event_base;
struct server;

/* Binds the listener from rt->cfg (run before dropping privileges). */
struct server *server_new(struct event_base *base, struct dglog *log,
			  struct runtime *rt, char *err, size_t errlen);
/* Takes its own reference; decisions under way keep the old one. Listener
   settings cannot change without a restart. */
void server_set_runtime(struct server *srv, struct runtime *rt);
struct runtime *server_runtime(struct server *srv);
void server_set_workers(struct server *srv, struct workers *workers);

/* Stop accepting; call drained(arg) once no request is in flight. */
void server_drain(struct server *srv, void (*drained)(void *arg), void *arg);
size_t server_in_flight(const struct server *srv);
/* Closes remaining connections and removes the UNIX socket. */
void server_free(struct server *srv);

#endif
