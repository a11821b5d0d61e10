/* How nginx logs in at the backend after we accepted a login.
   ticket:      Auth-User = the user, Auth-Pass = a fresh login ticket
                (PASETO v4.public signed with [ticket] signing_key) that the
                dovegate passdb on the backend verifies; the default.
   master:      Auth-User = user + separator + master_user, Auth-Pass = the
                master password (Dovecot master user login; stock Dovecot).
   passthrough: the user's own name and password.
   [credentials] mode is the default; imap_mode, pop3_mode and smtp_mode
   choose per protocol (e.g. master for SMTP, tickets for IMAP). */
#ifndef DOVEGATE_SHIM_CREDENTIALS_H
#define DOVEGATE_SHIM_CREDENTIALS_H

#include <stdbool.h>
#include <stddef.h>

#include "authhttp.h"
#include "config.h"
#include "secret.h"
#include "ticket.h"

struct credentials {
	enum cred_mode mode;                    /* the default */
	bool has_proto_mode[DG_PROTO_COUNT];    /* imap_mode ... set: overrides mode */
	enum cred_mode proto_mode[DG_PROTO_COUNT];
	char *master_user;
	char *separator;
	struct secret master_password;
	/* ticket mode */
	char kid[TICKET_KID_MAX + 1];
	unsigned char signing_key[TICKET_SK_BYTES];   /* wiped on clear */
	char *audience;                 /* [ticket] audience; NULL: none */
	unsigned lifetime;
};

/* One accepted login: the credentials nginx got, and for tickets what the
   backend should learn about the client. */
struct cred_login {
	const char *user;
	size_t user_len;
	const char *pass;
	size_t pass_len;
	const char *session;            /* the decision's id: the ticket's jti */
	enum dg_proto proto;
	const char *rip;                /* client address */
	int rport;                      /* 0: unknown */
	bool tls;
	const char *tls_protocol;       /* "": unknown */
	const char *audience;           /* the chosen backend's; NULL: [ticket]'s */
};

/* Reads the master password file (mode master) or the signing key (mode
   ticket), which must not be accessible by group or others. Errors are
   "CONFIG:LINE: ...". */
int credentials_init(struct credentials *cred, const struct dg_config *cfg,
		     char *err, size_t errlen);
void credentials_clear(struct credentials *cred);

/* The mode used for logins over `proto`. */
enum cred_mode credentials_mode(const struct credentials *cred, enum dg_proto proto);

/* False (with a reason) if this user name cannot be carried in this mode,
   e.g. it contains the master separator and would be split at the backend. */
bool credentials_user_ok(const struct credentials *cred, enum dg_proto proto,
			 const char *user, size_t user_len, const char **why_r);

/* False (with a reason) if this mode cannot log in after this method:
   passthrough needs the client's plaintext password, which nginx does not
   have after APOP or CRAM-MD5. */
bool credentials_method_ok(const struct credentials *cred, enum dg_proto proto,
			   enum authhttp_method method, const char **why_r);

/* Build the success response for a verified login, in login->proto's mode.
   -1 with *why_r on failure (out of memory, ticket not representable). */
int credentials_respond(const struct credentials *cred,
			struct authhttp_response *resp, const char *server_ip,
			const char *port, const struct cred_login *login,
			const char **why_r);

#endif
