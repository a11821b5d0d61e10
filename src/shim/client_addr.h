/* Which address is the client's. nginx sends Client-IP (the peer of its
   connection) and, when a load balancer in front of it sent a PROXY header,
   Proxy-Protocol-Addr/-Port. The latter is only as true as whoever sent the
   PROXY header: anyone who can reach a proxy_protocol listener can claim any
   address. So it is believed only when Client-IP is one of the configured
   load-balancer networks ([server] proxy_protocol_trusted); otherwise the
   client is Client-IP and the claim is only logged. */
#ifndef DOVEGATE_SHIM_CLIENT_ADDR_H
#define DOVEGATE_SHIM_CLIENT_ADDR_H

#include <netinet/in.h>
#include <stddef.h>

#include "penalty.h"

struct client_addr {
	char rip[INET6_ADDRSTRLEN];     /* what decisions use; "" unknown */
	int rport;                      /* 0: unknown (only PROXY knows it) */
	char via[INET6_ADDRSTRLEN];     /* Client-IP, when rip came from PROXY */
	char claimed[INET6_ADDRSTRLEN]; /* a Proxy-Protocol-Addr not believed */
};

/* client_ip, pp_addr and pp_port as nginx sent them (NULL: absent). */
void client_addr_choose(const struct penalty_net *balancers, size_t balancer_count,
			const char *client_ip, const char *pp_addr, const char *pp_port,
			struct client_addr *out);

/* An IPv4 or IPv6 literal. */
bool client_addr_is_ip(const char *s);

#endif
