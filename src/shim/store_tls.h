/* TLS to the cluster store: the one part that differs between Debian 12's
   hiredis 0.14 (no TLS at all) and Debian 13's hiredis 1.2 (hiredis_ssl).
   Built without hiredis_ssl, store_tls_new() fails with a message that
   says so; nothing else in dovegate-auth knows the difference. */
#ifndef DOVEGATE_SHIM_STORE_TLS_H
#define DOVEGATE_SHIM_STORE_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct redisContext;
struct store_tls;

/* Whether this build can talk TLS to the store. */
bool store_tls_available(void);
/* A client context (TLS 1.2 or later): the store's certificate is verified
   against ca_file (NULL: the system's CAs) and must name server_name (sent
   as SNI too), or when that is NULL the IP connected to; cert_file/key_file:
   a client certificate (both or neither). NULL with err on failure. */
struct store_tls *store_tls_new(const char *ca_file, const char *cert_file,
				const char *key_file, const char *server_name,
				char *err, size_t errlen);
void store_tls_free(struct store_tls *t);
/* Starts TLS on a connection to host (an IP, or a socket path) just
   opened (an asynchronous one's &ac->c, or a blocking one: then the
   handshake is done here); the connection then owns it. -1 with err. */
int store_tls_attach(struct store_tls *t, struct redisContext *c, const char *host,
		     char *err, size_t errlen);
/* The connection attached last is gone: forget it. */
void store_tls_detach(struct store_tls *t);
/* Why the current connection's handshake failed, when its certificate did
   not verify (hiredis itself only says "Success" then). */
bool store_tls_explain(const struct store_tls *t, char *out, size_t len);

#endif
