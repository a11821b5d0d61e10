#include "credentials.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int credentials_init(struct credentials *cred, const struct dg_config *cfg,
		     char *err, size_t errlen)
{
	char why[512];

	memset(cred, 0, sizeof(*cred));
	cred->mode = cfg->cred_mode;
	if (cred->mode != CRED_MODE_MASTER)
		return 0;
	cred->master_user = strdup(cfg->master_user);
	cred->separator = strdup(cfg->master_separator);
	if (cred->master_user == NULL || cred->separator == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		credentials_clear(cred);
		return -1;
	}
	if (secret_read(cfg->master_password_file, true, &cred->master_password,
			NULL, why, sizeof(why)) < 0) {
		config_key_error(cfg, CK_MASTER_PASSWORD_FILE, err, errlen,
				 "master_password_file %s", why);
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
	memset(cred, 0, sizeof(*cred));
}

bool credentials_user_ok(const struct credentials *cred, const char *user,
			 size_t user_len, const char **why_r)
{
	if (cred->mode == CRED_MODE_MASTER &&
	    memmem(user, user_len, cred->separator, strlen(cred->separator)) != NULL) {
		*why_r = "user name contains the master separator";
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

int credentials_respond(const struct credentials *cred,
			struct authhttp_response *resp, const char *server_ip,
			const char *port, const char *user, size_t user_len,
			const char *pass, size_t pass_len)
{
	if (cred->mode == CRED_MODE_MASTER)
		return respond_master(cred, resp, server_ip, port, user, user_len);
	return authhttp_response_ok(resp, server_ip, port, user, user_len, pass, pass_len);
}
