#include "dns.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* One try of 2 s per server and one retry: an unresolvable name becomes a
   temporary failure within a few seconds, well inside nginx's wait. */
#define DNS_TIMEOUT "2"
#define DNS_ATTEMPTS "2"

struct dns {
	struct evdns_base *evdns;
};

struct lookup {
	dns_done_fn *done;
	void *ctx;
};

struct dns *dns_new(struct event_base *base, char *err, size_t errlen)
{
	struct dns *dns = calloc(1, sizeof(*dns));

	if (dns == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	dns->evdns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
	if (dns->evdns == NULL) {
		snprintf(err, errlen, "cannot set up the resolver (/etc/resolv.conf)");
		free(dns);
		return NULL;
	}
	evdns_base_set_option(dns->evdns, "timeout:", DNS_TIMEOUT);
	evdns_base_set_option(dns->evdns, "attempts:", DNS_ATTEMPTS);
	return dns;
}

void dns_free(struct dns *dns)
{
	if (dns == NULL)
		return;
	/* 1: pending requests get their callback (EVUTIL_EAI_CANCEL) */
	evdns_base_free(dns->evdns, 1);
	free(dns);
}

static void on_result(int result, struct evutil_addrinfo *res, void *arg)
{
	struct lookup *l = arg;
	char ip[INET6_ADDRSTRLEN] = "";
	const void *bin = NULL;

	if (result == 0 && res != NULL) {
		if (res->ai_family == AF_INET)
			bin = &((struct sockaddr_in *)res->ai_addr)->sin_addr;
		else if (res->ai_family == AF_INET6)
			bin = &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
		if (bin == NULL || inet_ntop(res->ai_family, bin, ip, sizeof(ip)) == NULL)
			ip[0] = '\0';
	}
	if (ip[0] != '\0')
		l->done(l->ctx, ip, NULL);
	else
		l->done(l->ctx, NULL, result == 0 ? "no address" :
			result == EVUTIL_EAI_CANCEL ? "cancelled" : evutil_gai_strerror(result));
	if (res != NULL)
		evutil_freeaddrinfo(res);
	free(l);
}

void dns_resolve(struct dns *dns, const char *host, dns_done_fn *done, void *ctx)
{
	struct evutil_addrinfo hints;
	struct lookup *l = malloc(sizeof(*l));

	if (l == NULL) {
		done(ctx, NULL, "out of memory");
		return;
	}
	l->done = done;
	l->ctx = ctx;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* may call on_result before returning (numeric or /etc/hosts names) */
	evdns_getaddrinfo(dns->evdns, host, NULL, &hints, on_result, l);
}
