/* How nginx logs in at the backend after we accepted a login.
   master:      Auth-User = user + separator + master_user, Auth-Pass = the
                master password (Dovecot master user login; stock Dovecot).
   passthrough: the user's own name and password. */
#ifndef DOVEGATE_SHIM_CREDENTIALS_H
#define DOVEGATE_SHIM_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#include "authhttp.h"
#include "config.h"
#include "secret.h"

struct credentials {
	enum cred_mode mode;
	char *master_user;
	char *separator;
	struct secret master_password;
};

/* Reads the master password file (mode master), which must not be accessible
   by group or others. Errors are "CONFIG:LINE: ...". */
int credentials_init(struct credentials *cred, const struct dg_config *cfg,
		     char *err, size_t errlen);
void credentials_clear(struct credentials *cred);

/* False (with a reason) if this user name cannot be carried in this mode,
   e.g. it contains the master separator and would be split at the backend. */
bool credentials_user_ok(const struct credentials *cred, const char *user,
			 size_t user_len, const char **why_r);

/* Build the success response for a verified user/password. */
int credentials_respond(const struct credentials *cred,
			struct authhttp_response *resp, const char *server_ip,
			const char *port, const char *user, size_t user_len,
			const char *pass, size_t pass_len);

#endif
