#include "external.h"
#include "hexbyte.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct map_entry {
	char *key;                      /* subject, or fingerprint in lower-case hex */
	char *user;
};

struct external_map {
	struct map_entry *entries;
	size_t count;
};

void external_map_free(struct external_map *map)
{
	if (map == NULL)
		return;
	for (size_t i = 0; i < map->count; i++) {
		free(map->entries[i].key);
		free(map->entries[i].user);
	}
	free(map->entries);
	free(map);
}

/* A fingerprint written with colons or in upper case still matches nginx's
   lower-case hex. */
static void normalise_fingerprint(char *key)
{
	size_t len = strlen(key), o = 0;

	if (strspn(key, "0123456789abcdefABCDEF:") != len)
		return;
	for (size_t i = 0; i < len; i++) {
		if (key[i] != ':')
			key[o++] = (char)(key[i] >= 'A' && key[i] <= 'F' ? key[i] + 32 : key[i]);
	}
	key[o] = '\0';
}

static int map_add(struct external_map *map, char *line, char *why, size_t whylen)
{
	char *end = line + strlen(line), *sep;
	struct map_entry *grown;

	while (end > line && strchr(" \t\r\n", end[-1]) != NULL)
		*--end = '\0';
	line += strspn(line, " \t");
	if (*line == '\0' || *line == '#')
		return 0;
	sep = line + strlen(line);
	while (sep > line && strchr(" \t", sep[-1]) == NULL)
		sep--;
	if (sep == line) {
		snprintf(why, whylen, "expected \"<subject or fingerprint> <user>\"");
		return -1;
	}
	grown = realloc(map->entries, (map->count + 1) * sizeof(*grown));
	if (grown == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	map->entries = grown;
	grown[map->count].user = strdup(sep);
	while (sep > line && strchr(" \t", sep[-1]) != NULL)
		sep--;
	grown[map->count].key = strndup(line, (size_t)(sep - line));
	map->count++;
	if (grown[map->count - 1].user == NULL || grown[map->count - 1].key == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	normalise_fingerprint(grown[map->count - 1].key);
	return 0;
}

struct external_map *external_map_load(const char *path, char *err, size_t errlen)
{
	struct external_map *map = calloc(1, sizeof(*map));
	FILE *f = fopen(path, "re");
	char *line = NULL, why[128];
	size_t cap = 0;
	unsigned lineno = 0;

	if (map == NULL || f == NULL) {
		snprintf(err, errlen, "%s: %s", path, f == NULL ? strerror(errno) : "out of memory");
		goto fail;
	}
	while (getline(&line, &cap, f) >= 0) {
		lineno++;
		if (map_add(map, line, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			goto fail;
		}
	}
	free(line);
	fclose(f);
	return map;
fail:
	free(line);
	if (f != NULL)
		fclose(f);
	external_map_free(map);
	return NULL;
}

/* ---- certificate -------------------------------------------------------- */

static X509 *parse_pem(const struct external_cert *cert)
{
	BIO *bio;
	X509 *x;

	if (cert->pem == NULL || cert->pem_len == 0 || cert->pem_len > INT32_MAX)
		return NULL;
	bio = BIO_new_mem_buf(cert->pem, (int)cert->pem_len);
	if (bio == NULL)
		return NULL;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	return x;
}

/* An ASN.1 string as UTF-8 into out; refuses embedded NULs and control
   bytes (they would end or split a user name). */
static int copy_asn1(const ASN1_STRING *s, char *out, size_t outlen)
{
	unsigned char *utf8 = NULL;
	int len = ASN1_STRING_to_UTF8(&utf8, s);
	int rc = -1;

	if (len > 0 && (size_t)len < outlen) {
		rc = 0;
		for (int i = 0; i < len; i++) {
			if (utf8[i] < 0x20 || utf8[i] == 0x7f)
				rc = -1;
		}
		if (rc == 0) {
			memcpy(out, utf8, (size_t)len);
			out[len] = '\0';
		}
	}
	OPENSSL_free(utf8);
	return rc;
}

/* The last entry with this NID (the most specific one, as Dovecot's
   ssl_cert_username_field takes it). */
static int subject_field(X509 *x, int nid, char *out, size_t outlen)
{
	const X509_NAME *name = X509_get_subject_name(x);
	int idx = -1, last = -1;

	while ((idx = X509_NAME_get_index_by_NID(name, nid, idx)) >= 0)
		last = idx;
	if (last < 0)
		return -1;
	return copy_asn1(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, last)), out, outlen);
}

static int san_email(X509 *x, char *out, size_t outlen)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	int rc = -1;

	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && rc < 0; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type == GEN_EMAIL)
			rc = copy_asn1(gn->d.rfc822Name, out, outlen);
	}
	GENERAL_NAMES_free(names);
	return rc;
}

/* nginx's Auth-SSL-Fingerprint: SHA-1 of the DER certificate, lower-case hex. */
static int fingerprint(X509 *x, char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!X509_digest(x, EVP_sha1(), md, &len) || outlen < 2 * (size_t)len + 1)
		return -1;
	for (unsigned int i = 0; i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* ---- Auth-SSL-Subject: nginx's $ssl_client_s_dn, RFC 2253 ---------------
   Used for cn/email when nginx does not pass the certificate. RFC 2253 lists
   the most specific RDN first (the certificate's last), escapes special
   characters as "\c" and bytes as "\XX"; an escaped ',' or '+' is part of
   the value, never a separator. */

/* Unescapes one attribute value starting at p into out; returns the end
   (the separator or the string's end), NULL if malformed or too long. */
static const char *dn_value(const char *p, char *out, size_t outlen)
{
	size_t o = 0;

	while (*p != '\0' && *p != ',' && *p != '+') {
		unsigned char c = (unsigned char)*p++;

		if (c == '\\') {
			if (hex_byte(p, strnlen(p, 2), &c)) {
				p += 2;
			} else if (*p != '\0') {
				c = (unsigned char)*p++;
			} else {
				return NULL;
			}
		}
		if (c < 0x20 || c == 0x7f || o + 1 >= outlen)
			return NULL;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return p;
}

/* The first (most specific) value of attribute `type` in the subject. */
static int subject_text_field(const char *dn, const char *type, char *out, size_t outlen)
{
	size_t tlen = strlen(type);
	const char *p = dn;

	while (p != NULL && *p != '\0') {
		bool match = strncasecmp(p, type, tlen) == 0 && p[tlen] == '=';
		const char *eq = strchr(p, '=');

		if (eq == NULL)
			return -1;
		p = dn_value(eq + 1, out, outlen);
		if (p == NULL)
			return -1;
		if (match)
			return out[0] != '\0' ? 0 : -1;
		if (*p != '\0')
			p++;
	}
	return -1;
}

static int map_lookup(const struct external_map *map, const char *key, char *user,
		      size_t userlen)
{
	for (size_t i = 0; map != NULL && key != NULL && i < map->count; i++) {
		if (strcmp(map->entries[i].key, key) == 0 &&
		    strlen(map->entries[i].user) < userlen) {
			strcpy(user, map->entries[i].user);
			return 0;
		}
	}
	return -1;
}

/* The subject as nginx sends it names the map entry first; then the
   fingerprint (computed from the certificate when nginx passed it). */
static int user_from_map(const struct external_map *map, X509 *x,
			 const struct external_cert *cert, char *user, size_t userlen)
{
	char fp[2 * EVP_MAX_MD_SIZE + 1];

	if (map_lookup(map, cert->subject, user, userlen) == 0)
		return 0;
	if (x != NULL && fingerprint(x, fp, sizeof(fp)) == 0)
		return map_lookup(map, fp, user, userlen);
	return map_lookup(map, cert->fingerprint, user, userlen);
}

int external_user(enum external_rule rule, const struct external_map *map,
		  const struct external_cert *cert, char *user, size_t userlen,
		  const char **why_r)
{
	X509 *x = parse_pem(cert);
	int rc = -1;

	if (rule == EXTERNAL_MAP) {
		rc = user_from_map(map, x, cert, user, userlen);
		*why_r = "certificate not in [external] map_file";
	} else if (x == NULL && cert->pem != NULL) {
		*why_r = "Auth-SSL-Cert is not a PEM certificate";
	} else if (x == NULL && cert->subject == NULL) {
		*why_r = "neither Auth-SSL-Cert nor Auth-SSL-Subject";
	} else if (x == NULL) {
		/* email: only the subject's emailAddress (no subjectAltName here) */
		rc = subject_text_field(cert->subject, rule == EXTERNAL_CN ? "CN" : "emailAddress",
					user, userlen);
		*why_r = rule == EXTERNAL_CN ? "certificate subject has no usable commonName" :
					       "certificate subject has no usable emailAddress";
	} else if (rule == EXTERNAL_CN) {
		rc = subject_field(x, NID_commonName, user, userlen);
		*why_r = "certificate subject has no usable commonName";
	} else {
		rc = subject_field(x, NID_pkcs9_emailAddress, user, userlen);
		if (rc < 0)
			rc = san_email(x, user, userlen);
		*why_r = "certificate has no usable email address";
	}
	X509_free(x);
	return rc;
}
