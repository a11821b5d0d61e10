/* dovegate login plugin for Dovecot's imap-login, pop3-login and
   submission-login processes: lib20_dovegate_plugin.so, enabled with
   "login_plugins = dovegate".

   First slice: it registers its client hook and attaches a module context to
   every client (wrapping no vfunc yet), so later slices only add the
   overrides (sasl_check_login for the ticket's session id and origin,
   notify_status to keep untagged lines away from nginx). It changes nothing
   in the login flow.

   Dovecot includes: "login-common.h" pulls in "lib.h" (and Dovecot's own
   config.h) first, as every Dovecot plugin must. Built with Dovecot's flags
   only (src/plugin/local.mk); lib.h's quoted #include "config.h" resolves
   next to lib.h, so it is Dovecot's config.h, not dovegate's. */

#include "login-common.h"
#include "module-context.h"
#include "client-common.h"

#define DOVEGATE_LOGIN_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovegate_login_module)

struct dovegate_login_client {
	union login_client_module_context module_ctx;
};

/* Exported: dovecot checks it against its own ABI version at load. */
const char *dovegate_plugin_version = DOVECOT_ABI_VERSION;

void dovegate_plugin_init(struct module *module);
void dovegate_plugin_deinit(void);

static MODULE_CONTEXT_DEFINE_INIT(dovegate_login_module,
				  &login_module_register);

/* Debug lines of this plugin: "log_debug = category=dovegate" shows them.
   Login processes start once per connection by default (service_count = 1),
   so nothing here logs above debug level on every start. */
static struct event_category event_category_dovegate = {
	.name = "dovegate",
};
static struct event *dovegate_event;

static void dovegate_client_allocated(struct client *client)
{
	struct dovegate_login_client *dclient;
	struct client_vfuncs *v = client->vlast;

	dclient = p_new(client->pool, struct dovegate_login_client, 1);
	dclient->module_ctx.super = *v;
	client->vlast = &dclient->module_ctx.super;
	/* vfunc overrides go here, e.g.
	   v->sasl_check_login = dovegate_sasl_check_login; */
	MODULE_CONTEXT_SET(client, dovegate_login_module, dclient);

	e_debug(event_create_passthrough(client->event)->
		add_category(&event_category_dovegate)->event(),
		"dovegate: client allocated (trusted=%s, secured=%s)",
		client->trusted ? "yes" : "no",
		client->secured ? "yes" : "no");
}

static const struct login_client_hooks dovegate_login_hooks = {
	.client_allocated = dovegate_client_allocated,
};

void dovegate_plugin_init(struct module *module)
{
	dovegate_event = event_create(NULL);
	event_add_category(dovegate_event, &event_category_dovegate);
	event_set_append_log_prefix(dovegate_event, "dovegate: ");

	login_client_hooks_add(module, &dovegate_login_hooks);
	e_debug(dovegate_event, "login plugin loaded (%s, %s)",
		login_binary->process_name, DOVECOT_ABI_VERSION);
}

void dovegate_plugin_deinit(void)
{
	login_client_hooks_remove(&dovegate_login_hooks);
	event_unref(&dovegate_event);
}
