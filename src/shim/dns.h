/* Asynchronous host-name resolution for passdb host= fields (libevent
   evdns: /etc/resolv.conf and /etc/hosts, read when created). nginx needs
   an IP literal in Auth-Server, so a name is resolved here. Answers are
   kept for DNS_CACHE_TTL seconds (evdns keeps none): a login does not wait
   for the resolver, nor fail with it, when its host was resolved lately. */
#ifndef DOVEGATE_SHIM_DNS_H
#define DOVEGATE_SHIM_DNS_H

#include <stddef.h>

struct event_base;
struct dns;

/* NULL with err when the resolver cannot be set up. */
struct dns *dns_new(struct event_base *base, char *err, size_t errlen);
/* Pending lookups are answered with an error ("cancelled"). */
void dns_free(struct dns *dns);

/* ip: the first address as an IP literal (IPv6 without brackets), or NULL
   with error (a short text: "no such host", "timeout", ...). Both are only
   valid during the call. */
typedef void dns_done_fn(void *ctx, const char *ip, const char *error);

/* done runs exactly once on the loop thread, maybe before this returns
   (a cached name, an IP literal, an /etc/hosts name). */
void dns_resolve(struct dns *dns, const char *host, dns_done_fn *done, void *ctx);

/* Seconds an answer is reused; failures are never kept. */
#define DNS_CACHE_TTL 30
/* Names kept at most (passdb host= names are few: one per backend). */
#define DNS_CACHE_MAX 256

/* Tests: lookups handed to the resolver so far, and the reuse time
   (0: no cache). */
size_t dns_queries(const struct dns *dns);
void dns_set_cache_ttl(struct dns *dns, unsigned seconds);
/* Tests: names from another hosts(5) file too; -1 when unreadable. */
int dns_load_hosts(struct dns *dns, const char *path);

#endif
