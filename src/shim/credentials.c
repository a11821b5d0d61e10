#include "credentials.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyring.h"
#include "ticket_json.h"

static int init_ticket(struct credentials *cred, const struct dg_config *cfg,
		       char *err, size_t errlen)
{
	char why[512];

	cred->lifetime = cfg->ticket_lifetime;
	/* NULL when every backend names its own audience */
	cred->audience = cfg->ticket_audience != NULL ? strdup(cfg->ticket_audience) : NULL;
	if (cfg->ticket_audience != NULL && cred->audience == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return -1;
	}
	if (!ticket_secret_key_load(cfg->ticket_signing_key, cred->kid,
				    cred->signing_key, why, sizeof(why))) {
		config_key_error(cfg, CK_TICKET_SIGNING_KEY, err, errlen,
				 "signing_key %s", why);
		return -1;
	}
	return 0;
}

static int init_master(struct credentials *cred, const struct dg_config *cfg,
		       char *err, size_t errlen)
{
	char why[512];

	cred->master_user = strdup(cfg->master_user);
	cred->separator = strdup(cfg->master_separator);
	if (cred->master_user == NULL || cred->separator == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return -1;
	}
	if (secret_read(cfg->master_password_file, true, &cred->master_password,
			NULL, why, sizeof(why)) < 0) {
		config_key_error(cfg, CK_MASTER_PASSWORD_FILE, err, errlen,
				 "master_password_file %s", why);
		return -1;
	}
	return 0;
}

/* Loads what the modes in use need: the signing key if a protocol uses
   tickets, the master password if one uses master. */
int credentials_init(struct credentials *cred, const struct dg_config *cfg,
		     char *err, size_t errlen)
{
	memset(cred, 0, sizeof(*cred));
	cred->mode = cfg->cred_mode;
	for (int p = 0; p < DG_PROTO_COUNT; p++) {
		cred->has_proto_mode[p] = cfg->line[CK_CRED_IMAP_MODE + p] != 0;
		cred->proto_mode[p] = cfg->proto_cred_mode[p];
	}
	if ((config_uses_cred_mode(cfg, CRED_MODE_TICKET) &&
	     init_ticket(cred, cfg, err, errlen) < 0) ||
	    (config_uses_cred_mode(cfg, CRED_MODE_MASTER) &&
	     init_master(cred, cfg, err, errlen) < 0)) {
		credentials_clear(cred);
		return -1;
	}
	return 0;
}

void credentials_clear(struct credentials *cred)
{
	free(cred->master_user);
	free(cred->separator);
	secret_clear(&cred->master_password);
	free(cred->audience);
	sodium_memzero(cred->signing_key, sizeof(cred->signing_key));
	memset(cred, 0, sizeof(*cred));
}

enum cred_mode credentials_mode(const struct credentials *cred, enum dg_proto proto)
{
	if ((unsigned)proto < DG_PROTO_COUNT && cred->has_proto_mode[proto])
		return cred->proto_mode[proto];
	return cred->mode;
}

bool credentials_user_ok(const struct credentials *cred, enum dg_proto proto,
			 const char *user, size_t user_len, const char **why_r)
{
	enum cred_mode mode = credentials_mode(cred, proto);

	if (mode == CRED_MODE_MASTER &&
	    memmem(user, user_len, cred->separator, strlen(cred->separator)) != NULL) {
		*why_r = "user name contains the master separator";
		return false;
	}
	/* the ticket's claims are JSON */
	if (mode == CRED_MODE_TICKET && !ticket_json_string_ok(user, user_len)) {
		*why_r = "user name is not valid UTF-8";
		return false;
	}
	return true;
}

bool credentials_method_ok(const struct credentials *cred, enum dg_proto proto,
			   enum authhttp_method method, const char **why_r)
{
	if (credentials_mode(cred, proto) == CRED_MODE_PASSTHROUGH &&
	    method != AUTHHTTP_METHOD_PLAIN) {
		*why_r = "credentials mode passthrough needs the plaintext password; "
			 "use ticket or master for this method";
		return false;
	}
	return true;
}

static int respond_master(const struct credentials *cred,
			  struct authhttp_response *resp, const char *server_ip,
			  const char *port, const char *user, size_t user_len)
{
	size_t sep_len = strlen(cred->separator);
	size_t master_len = strlen(cred->master_user);
	size_t len = user_len + sep_len + master_len;
	char *login = malloc(len + 1);
	int rc;

	if (login == NULL)
		return -1;
	memcpy(login, user, user_len);
	memcpy(login + user_len, cred->separator, sep_len);
	memcpy(login + user_len + sep_len, cred->master_user, master_len);
	login[len] = '\0';
	rc = authhttp_response_ok(resp, server_ip, port, login, len,
				  cred->master_password.data,
				  cred->master_password.len);
	free(login);
	return rc;
}

/* Copies src (at most dst_size - 1 bytes) into dst; false if it does not fit. */
static bool copy_claim(char *dst, size_t dst_size, const char *src, size_t len)
{
	if (len >= dst_size)
		return false;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return true;
}

static bool ticket_claims_for(const struct credentials *cred,
			      const struct cred_login *l, struct ticket_claims *c)
{
	const char *tlsv = l->tls_protocol != NULL ? l->tls_protocol : "";
	const char *aud = l->audience != NULL ? l->audience : cred->audience;

	memset(c, 0, sizeof(*c));
	c->iat = (int64_t)time(NULL);
	c->exp = c->iat + cred->lifetime;
	c->rport = l->rport;
	c->tls = l->tls;
	return copy_claim(c->sub, sizeof(c->sub), l->user, l->user_len) &&
	       aud != NULL && copy_claim(c->aud, sizeof(c->aud), aud, strlen(aud)) &&
	       copy_claim(c->jti, sizeof(c->jti), l->session, strlen(l->session)) &&
	       copy_claim(c->svc, sizeof(c->svc), dg_proto_name(l->proto),
			  strlen(dg_proto_name(l->proto))) &&
	       copy_claim(c->rip, sizeof(c->rip), l->rip, strlen(l->rip)) &&
	       copy_claim(c->tls_protocol, sizeof(c->tls_protocol), tlsv, strlen(tlsv));
}

/* Auth-Pass = a ticket signed now; it is a credential, wiped after use. */
static int respond_ticket(const struct credentials *cred,
			  struct authhttp_response *resp, const char *server_ip,
			  const char *port, const struct cred_login *l, const char **why_r)
{
	struct ticket_claims c;
	char token[TICKET_MAX_LEN + 1], *json;
	int len, rc;

	if (!ticket_claims_for(cred, l, &c)) {
		*why_r = "ticket claim too long";
		return -1;
	}
	if ((json = ticket_claims_to_json(&c)) == NULL) {
		*why_r = "cannot encode ticket claims";
		return -1;
	}
	len = ticket_sign(cred->signing_key, cred->kid, json, strlen(json),
			  token, sizeof(token));
	free(json);
	if (len < 0) {
		*why_r = "ticket too long to sign";
		return -1;
	}
	rc = authhttp_response_ok(resp, server_ip, port, l->user, l->user_len,
				  token, (size_t)len);
	sodium_memzero(token, sizeof(token));
	if (rc < 0)
		*why_r = "out of memory";
	return rc;
}

int credentials_respond(const struct credentials *cred,
			struct authhttp_response *resp, const char *server_ip,
			const char *port, const struct cred_login *login,
			const char **why_r)
{
	enum cred_mode mode = credentials_mode(cred, login->proto);

	*why_r = "out of memory";
	if (mode == CRED_MODE_TICKET)
		return respond_ticket(cred, resp, server_ip, port, login, why_r);
	if (mode == CRED_MODE_MASTER)
		return respond_master(cred, resp, server_ip, port, login->user, login->user_len);
	return authhttp_response_ok(resp, server_ip, port, login->user, login->user_len,
				    login->pass, login->pass_len);
}
