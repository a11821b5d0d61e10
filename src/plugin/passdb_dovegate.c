/* dovegate passdb module for Dovecot's auth process: libauthdb_dovegate.so,
   used with "passdb { driver = dovegate }" listed before the operator's
   normal passdb.

   First slice: no ticket is recognised yet, so every password is "not a
   ticket, not my business": the lookup ends with PASSDB_RESULT_NEXT, which
   makes Dovecot go on to the next passdb whatever this passdb's
   result_success/result_failure rules say (auth-request.c,
   auth_request_handle_passdb_callback). This keeps direct clients (own
   password) and master-user logins working, and lets an operator later set
   "result_failure = return-fail" here so that a refused ticket is final
   without affecting non-ticket passwords.

   Dovecot refuses PASSDB_RESULT_NEXT from the last passdb ("Last passdb had
   noauthenticate field", an internal failure). When this passdb is the last
   one (a ticket-only backend) a non-ticket answers USER_UNKNOWN instead: an
   ordinary authentication failure.

   No lookup_credentials: tickets are plaintext passwords, and Dovecot treats
   a passdb without it as "scheme not available" for CRAM-MD5 & co, which
   falls through to the next passdb as well.

   Never cached: the module sets no default_cache_key. */

#include "auth-common.h"
#include "passdb.h"

/* Exported names: Dovecot loads libauthdb_dovegate.so when a passdb names
   driver=dovegate, checks the version and calls the init function. */
const char *authdb_dovegate_version = DOVECOT_ABI_VERSION;

void authdb_dovegate_init(void);
void authdb_dovegate_deinit(void);

/* Per-request debug lines carry the category "dovegate": they show with
   auth_debug = yes or "log_debug = category=dovegate". */
static struct event_category event_category_dovegate = {
	.name = "dovegate",
};

static struct event *dovegate_request_event(struct auth_request *request)
{
	return event_create_passthrough(authdb_event(request))->
		add_category(&event_category_dovegate)->event();
}

static void
dovegate_verify_plain(struct auth_request *request,
		      const char *password ATTR_UNUSED,
		      verify_plain_callback_t *callback)
{
	bool last = request->passdb->next == NULL;

	if (request->fields.skip_password_check) {
		/* A master passdb already verified the password and
		   continues here for the target user: not ours. */
		e_debug(dovegate_request_event(request),
			"dovegate: password already verified (master login), "
			"passing on");
	} else {
		e_debug(dovegate_request_event(request),
			"dovegate: not a login ticket, passing on");
	}
	callback(last ? PASSDB_RESULT_USER_UNKNOWN : PASSDB_RESULT_NEXT,
		 request);
}

static struct passdb_module_interface passdb_dovegate = {
	.name = "dovegate",
	.verify_plain = dovegate_verify_plain,
};

void authdb_dovegate_init(void)
{
	passdb_register_module(&passdb_dovegate);
	i_info("dovegate: passdb driver registered (%s)", DOVECOT_ABI_VERSION);
}

void authdb_dovegate_deinit(void)
{
	passdb_unregister_module(&passdb_dovegate);
}
