#include "store_tls.h"

#include <stdio.h>
#include <stdlib.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#ifdef DG_HAVE_HIREDIS_SSL
#include <hiredis/hiredis_ssl.h>

struct store_tls {
	redisSSLContext *ctx;
};

bool store_tls_available(void)
{
	return true;
}

struct store_tls *store_tls_new(const char *ca_file, const char *cert_file,
				const char *key_file, const char *server_name,
				char *err, size_t errlen)
{
	static bool initialised;
	redisSSLContextError why = REDIS_SSL_CTX_NONE;
	struct store_tls *t;

	if ((cert_file == NULL) != (key_file == NULL)) {
		snprintf(err, errlen, "tls_cert_file and tls_key_file go together");
		return NULL;
	}
	if (!initialised) {
		redisInitOpenSSL();
		initialised = true;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->ctx = redisCreateSSLContext(ca_file, NULL, cert_file, key_file, server_name, &why);
	if (t->ctx == NULL) {
		snprintf(err, errlen, "store TLS: %s", redisSSLContextGetError(why));
		free(t);
		return NULL;
	}
	return t;
}

void store_tls_free(struct store_tls *t)
{
	if (t == NULL)
		return;
	redisFreeSSLContext(t->ctx);
	free(t);
}

int store_tls_attach(struct store_tls *t, struct redisAsyncContext *ac, char *err,
		     size_t errlen)
{
	if (redisInitiateSSLWithContext(&ac->c, t->ctx) != REDIS_OK) {
		snprintf(err, errlen, "TLS: %s", ac->c.errstr[0] != '\0' ? ac->c.errstr :
			 "could not start");
		return -1;
	}
	return 0;
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

int store_tls_attach(struct store_tls *t, struct redisAsyncContext *ac, char *err,
		     size_t errlen)
{
	(void)t;
	(void)ac;
	snprintf(err, errlen, "no TLS in this build");
	return -1;
}

#endif
