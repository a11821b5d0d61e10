/* Asynchronous host-name resolution for passdb host= fields (libevent
   evdns: /etc/resolv.conf and /etc/hosts, read when created). nginx needs
   an IP literal in Auth-Server, so a name is resolved here. */
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

/* done runs exactly once on the loop thread, maybe before this returns. */
void dns_resolve(struct dns *dns, const char *host, dns_done_fn *done, void *ctx);

#endif
