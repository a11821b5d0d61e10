#include "cluster_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(char *err, size_t errlen, const char *url, const char *why)
{
	snprintf(err, errlen, "store '%.80s': %s", url, why);
	return -1;
}

/* digits only, 1..max */
static int parse_number(const char *s, size_t len, unsigned long max, unsigned *out)
{
	unsigned long v = 0;

	if (len == 0 || len > 10)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > max)
		return -1;
	*out = (unsigned)v;
	return 0;
}

static int parse_unix(const char *url, const char *rest, struct cluster_addr *out,
		      char *err, size_t errlen)
{
	const char *q = strchr(rest, '?');
	size_t plen = q != NULL ? (size_t)(q - rest) : strlen(rest);

	if (strncmp(rest, "//", 2) == 0) {      /* unix:///path */
		rest += 2;
		plen -= 2;
	}
	if (plen == 0 || rest[0] != '/')
		return fail(err, errlen, url, "unix: needs an absolute socket path");
	if (plen >= sizeof(out->host))
		return fail(err, errlen, url, "socket path too long");
	memcpy(out->host, rest, plen);
	out->host[plen] = '\0';
	if (q != NULL && (strncmp(q, "?db=", 4) != 0 ||
			  parse_number(q + 4, strlen(q + 4), 10000, &out->db) < 0))
		return fail(err, errlen, url, "the only query is ?db=N (0-10000)");
	return 0;
}

static int parse_tcp(const char *url, const char *rest, struct cluster_addr *out,
		     char *err, size_t errlen)
{
	const char *end = rest + strcspn(rest, "/"), *port = NULL, *hend;

	if (memchr(rest, '@', (size_t)(end - rest)) != NULL)
		return fail(err, errlen, url, "no credentials in the URL: use user = and "
			    "password_file =");
	if (rest[0] == '[') {
		hend = memchr(rest, ']', (size_t)(end - rest));
		if (hend == NULL)
			return fail(err, errlen, url, "unclosed [ in the host");
		rest++;
		if (hend + 1 < end) {
			if (hend[1] != ':')
				return fail(err, errlen, url, "junk after ]");
			port = hend + 2;
		}
	} else {
		hend = memchr(rest, ':', (size_t)(end - rest));
		if (hend != NULL)
			port = hend + 1;
		else
			hend = end;
	}
	if (hend == rest)
		return fail(err, errlen, url, "no host");
	if ((size_t)(hend - rest) >= sizeof(out->host))
		return fail(err, errlen, url, "host too long");
	memcpy(out->host, rest, (size_t)(hend - rest));
	out->host[hend - rest] = '\0';
	out->port = CLUSTER_DEFAULT_PORT;
	if (port != NULL && (parse_number(port, (size_t)(end - port), 65535, &out->port) < 0 ||
			     out->port == 0))
		return fail(err, errlen, url, "the port must be 1-65535");
	if (*end == '/' && end[1] != '\0' &&
	    parse_number(end + 1, strlen(end + 1), 10000, &out->db) < 0)
		return fail(err, errlen, url, "the database must be a number (0-10000)");
	return 0;
}

int cluster_addr_parse(const char *url, struct cluster_addr *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (url == NULL || url[0] == '\0')
		return fail(err, errlen, "", "empty");
	if (strpbrk(url, " \t\r\n") != NULL)
		return fail(err, errlen, url, "spaces in the URL");
	if (strncmp(url, "redis://", 8) == 0) {
		out->transport = CLUSTER_TCP;
		return parse_tcp(url, url + 8, out, err, errlen);
	}
	if (strncmp(url, "rediss://", 9) == 0) {
		out->transport = CLUSTER_TLS;
		return parse_tcp(url, url + 9, out, err, errlen);
	}
	if (strncmp(url, "unix:", 5) == 0) {
		out->transport = CLUSTER_UNIX;
		return parse_unix(url, url + 5, out, err, errlen);
	}
	return fail(err, errlen, url, "must start with redis://, rediss:// or unix:");
}

void cluster_addr_text(const struct cluster_addr *a, char *out, size_t len)
{
	if (a->transport == CLUSTER_UNIX) {
		if (a->db == 0)
			snprintf(out, len, "unix:%s", a->host);
		else
			snprintf(out, len, "unix:%s?db=%u", a->host, a->db);
		return;
	}
	snprintf(out, len, "%s://%s%s%s:%u/%u", a->transport == CLUSTER_TLS ? "rediss" : "redis",
		 strchr(a->host, ':') != NULL ? "[" : "", a->host,
		 strchr(a->host, ':') != NULL ? "]" : "", a->port, a->db);
}

int cluster_prefix_ok(const char *prefix)
{
	size_t len = strlen(prefix);

	return len > 0 && len <= CLUSTER_PREFIX_MAX &&
	       strspn(prefix, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			      "0123456789:._-") == len;
}

int cluster_key(char *out, size_t cap, const char *prefix, char kind,
		const char *a, size_t alen, const char *b, size_t blen)
{
	size_t plen = strlen(prefix);
	size_t need = plen + 2 + alen + (b != NULL ? 1 + blen : 0);
	char *p = out;

	if (need + 1 > cap)
		return -1;
	memcpy(p, prefix, plen);
	p += plen;
	*p++ = kind;
	*p++ = ':';
	memcpy(p, a, alen);
	p += alen;
	if (b != NULL) {
		*p++ = '|';
		memcpy(p, b, blen);
		p += blen;
	}
	*p = '\0';
	return (int)need;
}

int cluster_drained_key(char *out, size_t cap, const char *prefix)
{
	int n = snprintf(out, cap, "%sdrained", prefix);

	return n > 0 && (size_t)n < cap ? n : -1;
}
