/* Auth-Method external: the user named by a verified client certificate.
   nginx verified the chain (ssl_verify_client, Auth-SSL-Verify: SUCCESS) and
   sends the certificate (auth_http_pass_client_cert on: Auth-SSL-Cert, a
   %XX-escaped PEM) and its subject (Auth-SSL-Subject, RFC 2253). Which part
   names the user is [external] user_from:
     cn     the subject's commonName
     email  the subject's emailAddress, else the first rfc822Name in
            subjectAltName
   (both from the certificate; without one, from Auth-SSL-Subject, where
   email is the emailAddress only)
     map    [external] map_file: "<subject or SHA-1 fingerprint> <user>" lines */
#ifndef DOVEGATE_SHIM_EXTERNAL_H
#define DOVEGATE_SHIM_EXTERNAL_H

#include <stddef.h>

enum external_rule { EXTERNAL_CN, EXTERNAL_EMAIL, EXTERNAL_MAP };

struct external_map;

/* Reads the map file: one mapping per line, '#' comments and blank lines
   skipped; the user is the last word, the key everything before it (a
   subject may contain spaces). NULL with err ("PATH:LINE: why"). */
struct external_map *external_map_load(const char *path, char *err, size_t errlen);
void external_map_free(struct external_map *map);

struct external_cert {
	const char *pem;                /* decoded Auth-SSL-Cert; NULL: absent */
	size_t pem_len;
	const char *subject;            /* Auth-SSL-Subject; NULL: absent */
	const char *fingerprint;        /* Auth-SSL-Fingerprint; NULL: absent */
};

/* The user for this certificate into user (NUL terminated). -1 with a static
   reason in *why_r when the rule finds none. */
int external_user(enum external_rule rule, const struct external_map *map,
		  const struct external_cert *cert, char *user, size_t userlen,
		  const char **why_r);

#endif
