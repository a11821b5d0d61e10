#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, uint16_t *port_r)
{
	char *end;
	unsigned long v;

	if (*s < '0' || *s > '9')
		return -1;
	v = strtoul(s, &end, 10);
	if (*end != '\0' || v == 0 || v > 65535)
		return -1;
	*port_r = (uint16_t)v;
	return 0;
}

/* Normalise an IP literal (inet_ntop form); -1 if it is not one. */
static int normalise_ip(const char *host, bool v6, char *out, size_t outlen)
{
	unsigned char bin[sizeof(struct in6_addr)];
	int af = v6 ? AF_INET6 : AF_INET;

	if (inet_pton(af, host, bin) != 1)
		return -1;
	return inet_ntop(af, bin, out, (socklen_t)outlen) != NULL ? 0 : -1;
}

int backend_parse(const char *spec, struct backend *out, const char **error_r)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *hstart = spec;
	size_t hlen;
	bool v6 = false;

	memset(out, 0, sizeof(*out));
	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		if (close == NULL || close[1] != ':') {
			*error_r = "expected [IPv6]:port";
			return -1;
		}
		hstart = spec + 1;
		hlen = (size_t)(close - hstart);
		colon = close + 1;
		v6 = true;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL || strchr(spec, ':') != colon) {
			*error_r = "expected ip:port (write IPv6 as [addr]:port)";
			return -1;
		}
		hlen = (size_t)(colon - spec);
	}
	if (hlen == 0 || hlen >= sizeof(host)) {
		*error_r = "missing or over-long IP address";
		return -1;
	}
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	if (normalise_ip(host, v6, out->ip, sizeof(out->ip)) < 0) {
		*error_r = "not an IP literal (host names are not allowed: nginx needs an IP)";
		return -1;
	}
	if (parse_port(colon + 1, &out->port) < 0) {
		*error_r = "port must be 1-65535";
		return -1;
	}
	snprintf(out->port_text, sizeof(out->port_text), "%u", out->port);
	snprintf(out->text, sizeof(out->text), v6 ? "[%s]:%u" : "%s:%u",
		 out->ip, out->port);
	return 0;
}
