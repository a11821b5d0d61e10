#include "client_addr.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

bool client_addr_is_ip(const char *s)
{
	unsigned char bin[sizeof(struct in6_addr)];

	return s != NULL &&
	       (inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1);
}

/* Decimal 1..65535, else 0 (unknown). */
static int port_number(const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;
	long v;

	if (len == 0 || len > 5 || s[0] == '0' || strspn(s, "0123456789") != len)
		return 0;
	v = strtol(s, NULL, 10);
	return v <= 65535 ? (int)v : 0;
}

static bool copy_ip(char *dst, size_t dstlen, const char *s)
{
	if (s == NULL || strlen(s) >= dstlen || !client_addr_is_ip(s))
		return false;
	strcpy(dst, s);
	return true;
}

static bool is_balancer(const struct penalty_net *balancers, size_t count, const char *ip)
{
	struct penalty_addr a;

	if (count == 0 || penalty_addr_parse(ip, &a) < 0)
		return false;
	for (size_t i = 0; i < count; i++)
		if (penalty_net_contains(&balancers[i], &a))
			return true;
	return false;
}

void client_addr_choose(const struct penalty_net *balancers, size_t balancer_count,
			const char *client_ip, const char *pp_addr, const char *pp_port,
			struct client_addr *out)
{
	char proxied[INET6_ADDRSTRLEN];

	memset(out, 0, sizeof(*out));
	/* Client-IP as sent (validated by authhttp_request_parse) */
	if (client_ip != NULL && strlen(client_ip) < sizeof(out->rip))
		strcpy(out->rip, client_ip);
	if (!copy_ip(proxied, sizeof(proxied), pp_addr))
		return;
	if (!is_balancer(balancers, balancer_count, out->rip)) {
		strcpy(out->claimed, proxied);
		return;
	}
	strcpy(out->via, out->rip);
	strcpy(out->rip, proxied);
	out->rport = port_number(pp_port);
}
