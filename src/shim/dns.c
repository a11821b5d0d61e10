#include "dns.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* One try of 2 s per server and one retry: an unresolvable name becomes a
   temporary failure within a few seconds, well inside nginx's wait. */
#define DNS_TIMEOUT "2"
#define DNS_ATTEMPTS "2"

#define HOST_MAX 255  /* a DNS name's longest text form */

struct dns_entry {
	char host[HOST_MAX + 1];
	char ip[INET6_ADDRSTRLEN];
	time_t expires;        /* monotonic seconds */
	unsigned long serial;  /* insertion order: breaks ties in expires */
};

struct dns {
	struct evdns_base *evdns;
	struct dns_entry cache[DNS_CACHE_MAX];
	size_t cached;
	unsigned ttl;
	size_t queries;
	unsigned long serial;
};

struct lookup {
	struct dns *dns;
	dns_done_fn *done;
	void *ctx;
	char host[HOST_MAX + 1];  /* "" when too long to cache */
};

static time_t now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/* The fresh answer for host, or NULL. */
static const char *cache_get(struct dns *dns, const char *host)
{
	time_t now = now_seconds();

	for (size_t i = 0; i < dns->cached; i++) {
		if (strcasecmp(dns->cache[i].host, host) == 0)
			return dns->cache[i].expires > now ? dns->cache[i].ip : NULL;
	}
	return NULL;
}

static bool older(const struct dns_entry *a, const struct dns_entry *b)
{
	return a->expires != b->expires ? a->expires < b->expires : a->serial < b->serial;
}

/* Replaces host's entry, else the one expiring first (an expired one if
   any, else the oldest): the table stays bounded. */
static void cache_put(struct dns *dns, const char *host, const char *ip)
{
	struct dns_entry *e = NULL;

	if (dns->ttl == 0 || host[0] == '\0')
		return;
	for (size_t i = 0; i < dns->cached && e == NULL; i++) {
		if (strcasecmp(dns->cache[i].host, host) == 0)
			e = &dns->cache[i];
	}
	if (e == NULL && dns->cached < DNS_CACHE_MAX)
		e = &dns->cache[dns->cached++];
	if (e == NULL) {
		e = &dns->cache[0];
		for (size_t i = 1; i < dns->cached; i++) {
			if (older(&dns->cache[i], e))
				e = &dns->cache[i];
		}
	}
	snprintf(e->host, sizeof(e->host), "%s", host);
	snprintf(e->ip, sizeof(e->ip), "%s", ip);
	e->expires = now_seconds() + (time_t)dns->ttl;
	e->serial = ++dns->serial;
}

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
	dns->ttl = DNS_CACHE_TTL;
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
	if (ip[0] != '\0') {
		cache_put(l->dns, l->host, ip);
		l->done(l->ctx, ip, NULL);
	}
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
	const char *hit = cache_get(dns, host);
	char ip[INET6_ADDRSTRLEN];
	struct lookup *l;

	if (hit != NULL) {
		/* a copy: done may resolve again and reuse the entry */
		snprintf(ip, sizeof(ip), "%s", hit);
		done(ctx, ip, NULL);
		return;
	}
	l = malloc(sizeof(*l));
	if (l == NULL) {
		done(ctx, NULL, "out of memory");
		return;
	}
	l->dns = dns;
	l->done = done;
	l->ctx = ctx;
	if (strlen(host) <= HOST_MAX)
		memcpy(l->host, host, strlen(host) + 1);
	else
		l->host[0] = '\0';
	dns->queries++;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	/* may call on_result before returning (numeric or /etc/hosts names) */
	evdns_getaddrinfo(dns->evdns, host, NULL, &hints, on_result, l);
}

size_t dns_queries(const struct dns *dns)
{
	return dns->queries;
}

void dns_set_cache_ttl(struct dns *dns, unsigned seconds)
{
	dns->ttl = seconds;
	if (seconds == 0)
		dns->cached = 0;
}

int dns_load_hosts(struct dns *dns, const char *path)
{
	return evdns_base_load_hosts(dns->evdns, path) == 0 ? 0 : -1;
}
