/* The shared store of a dovegate cluster (Redis or Valkey), as both
   dovegate-auth and the dovegate CLI see it: where it is (its URL) and what
   its keys are called. One place, so the daemon and the CLI always agree.

   Keys, under a configurable prefix (CLUSTER_PREFIX_DEFAULT):
     PREFIX n:NET          a network's failure score (integer; TTL: the
                           penalty's forget_after, renewed by each failure)
     PREFIX u:USER         a user's failure score (likewise)
     PREFIX k:NET|USER     the user logged in from NET (TTL known_network_ttl)
     PREFIX e:NET          NET is exempt after a success (TTL exempt_after_success)
     PREFIX a:USER         the user's backend (its host id: the backend's
                           audience, else its IP; TTL assignment_ttl, renewed
                           by each login)
     PREFIX drained        the set of host ids drained cluster-wide
   NET is the masked network in CIDR form ("192.0.2.7/32", "2001:db8::/64");
   USER is the user name as nginx sent it (no NUL, CR or LF). */
#ifndef DOVEGATE_COMMON_CLUSTER_STORE_H
#define DOVEGATE_COMMON_CLUSTER_STORE_H

#include <stddef.h>

#define CLUSTER_PREFIX_DEFAULT "dovegate:"
#define CLUSTER_PREFIX_MAX 64
#define CLUSTER_DEFAULT_PORT 6379
/* prefix + kind + a network + '|' + a user of up to 255 bytes */
#define CLUSTER_KEY_MAX (CLUSTER_PREFIX_MAX + 3 + 64 + 1 + 255 + 1)

enum cluster_transport { CLUSTER_TCP, CLUSTER_TLS, CLUSTER_UNIX };

struct cluster_addr {
	enum cluster_transport transport;
	char host[256];                 /* TCP/TLS: name or IP literal; UNIX: socket path */
	unsigned port;                  /* TCP/TLS */
	unsigned db;                    /* SELECT db; 0 by default */
};

/* "redis://HOST[:PORT][/DB]", "rediss://..." (TLS), "unix:/PATH[?db=N]";
   HOST may be "[v6]". No credentials in the URL: the user and the password
   (file) are settings of their own, so no secret ever sits in a logged URL.
   0, or -1 with a message in err. */
int cluster_addr_parse(const char *url, struct cluster_addr *out, char *err, size_t errlen);
/* The URL again, normalised (for logs and metrics). */
void cluster_addr_text(const struct cluster_addr *a, char *out, size_t len);

/* A valid prefix: 1 to CLUSTER_PREFIX_MAX of [A-Za-z0-9:._-] (nothing a
   SCAN MATCH pattern would read as a wildcard). */
int cluster_prefix_ok(const char *prefix);

/* PREFIX KIND ":" a ["|" b] into out; kind is 'n', 'u', 'k', 'e' or 'a'.
   b may be NULL. Returns the length, or -1 when it would not fit in cap. */
int cluster_key(char *out, size_t cap, const char *prefix, char kind,
		const char *a, size_t alen, const char *b, size_t blen);
/* PREFIX "drained". Same return. */
int cluster_drained_key(char *out, size_t cap, const char *prefix);

#endif
