#include "store_tls.h"

#include <stdio.h>
#include <stdlib.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#ifdef DG_HAVE_HIREDIS_SSL
#include <arpa/inet.h>
#include <string.h>

#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* dovegate-auth's own OpenSSL context, not hiredis's redisSSLContext: that
   one sends server_name as SNI only and never checks the certificate's name. */
struct store_tls {
	SSL_CTX *ctx;
	char *server_name;              /* NULL: the store's IP must be in the certificate */
	SSL *ssl;                       /* the current connection's (hiredis owns it) */
};

bool store_tls_available(void)
{
	return true;
}

static void tls_error(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_get_error();

	snprintf(err, errlen, "store TLS: %s%s%s: %s", what, file != NULL ? " " : "",
		 file != NULL ? file : "", e != 0 ? ERR_reason_error_string(e) : "failed");
	ERR_clear_error();
}

struct store_tls *store_tls_new(const char *ca_file, const char *cert_file,
				const char *key_file, const char *server_name,
				char *err, size_t errlen)
{
	struct store_tls *t;

	if ((cert_file == NULL) != (key_file == NULL)) {
		snprintf(err, errlen, "tls_cert_file and tls_key_file go together");
		return NULL;
	}
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (server_name != NULL && (t->server_name = strdup(server_name)) == NULL)) {
		free(t);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((t->ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_error(err, errlen, "no context", NULL);
		goto fail;
	}
	SSL_CTX_set_min_proto_version(t->ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL ? SSL_CTX_load_verify_locations(t->ctx, ca_file, NULL) != 1
			    : SSL_CTX_set_default_verify_paths(t->ctx) != 1) {
		tls_error(err, errlen, "cannot load the CA file", ca_file);
		goto fail;
	}
	if (cert_file != NULL &&
	    SSL_CTX_use_certificate_chain_file(t->ctx, cert_file) != 1) {
		tls_error(err, errlen, "cannot load tls_cert_file", cert_file);
		goto fail;
	}
	if (key_file != NULL &&
	    (SSL_CTX_use_PrivateKey_file(t->ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
	     SSL_CTX_check_private_key(t->ctx) != 1)) {
		tls_error(err, errlen, "cannot use tls_key_file", key_file);
		goto fail;
	}
	return t;
fail:
	store_tls_free(t);
	return NULL;
}

void store_tls_free(struct store_tls *t)
{
	if (t == NULL)
		return;
	SSL_CTX_free(t->ctx);
	free(t->server_name);
	free(t);
}

/* Why the handshake failed, when it was the certificate. */
static bool verify_failure(const SSL *ssl, char *out, size_t len)
{
	long v = SSL_get_verify_result(ssl);

	if (v == X509_V_OK)
		return false;
	snprintf(out, len, "TLS: certificate verify failed: %s", X509_verify_cert_error_string(v));
	return true;
}

/* The certificate must name server_name, or else the IP connected to. */
static int expect_name(struct store_tls *t, SSL *ssl, const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];
	bool ip = inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;

	if (t->server_name != NULL)
		return SSL_set_tlsext_host_name(ssl, t->server_name) == 1 &&
		       SSL_set1_host(ssl, t->server_name) == 1 ? 0 : -1;
	if (ip)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 ? 0 : -1;
	return 0;               /* a unix socket: the chain alone */
}

int store_tls_attach(struct store_tls *t, struct redisContext *c, const char *host,
		     char *err, size_t errlen)
{
	SSL *ssl = SSL_new(t->ctx);

	t->ssl = NULL;
	if (ssl == NULL || expect_name(t, ssl, host) < 0) {
		SSL_free(ssl);
		tls_error(err, errlen, "cannot set up the connection", NULL);
		return -1;
	}
	if (redisInitiateSSL(c, ssl) != REDIS_OK) {
		/* a blocking connection has done the handshake: say why it failed */
		if (!verify_failure(ssl, err, errlen))
			snprintf(err, errlen, "store TLS: %s", c->errstr[0] != '\0' ? c->errstr :
				 "could not start");
		SSL_free(ssl);  /* not taken on failure */
		return -1;
	}
	t->ssl = ssl;
	return 0;
}

void store_tls_detach(struct store_tls *t)
{
	if (t != NULL)
		t->ssl = NULL;
}

bool store_tls_explain(const struct store_tls *t, char *out, size_t len)
{
	return t != NULL && t->ssl != NULL && verify_failure(t->ssl, out, len);
}

#else /* hiredis without TLS (Debian 12's 0.14) */

bool store_tls_available(void)
{
	return false;
}

struct store_tls *store_tls_new(const char *ca_file, const char *cert_file,
				const char *key_file, const char *server_name,
				char *err, size_t errlen)
{
	(void)ca_file;
	(void)cert_file;
	(void)key_file;
	(void)server_name;
	snprintf(err, errlen, "rediss:// needs hiredis >= 1.0 with hiredis_ssl (Debian 13); "
		 "this dovegate-auth was built with hiredis %d.%d, which has no TLS: "
		 "use redis:// on a trusted network or a local TLS tunnel",
		 HIREDIS_MAJOR, HIREDIS_MINOR);
	return NULL;
}

void store_tls_free(struct store_tls *t)
{
	(void)t;
}

int store_tls_attach(struct store_tls *t, struct redisContext *c, const char *host,
		     char *err, size_t errlen)
{
	(void)t;
	(void)c;
	(void)host;
	snprintf(err, errlen, "no TLS in this build");
	return -1;
}

void store_tls_detach(struct store_tls *t)
{
	(void)t;
}

bool store_tls_explain(const struct store_tls *t, char *out, size_t len)
{
	(void)t;
	(void)out;
	(void)len;
	return false;
}

#endif
