/* dovegate login plugin for Dovecot's imap-login, pop3-login and
   submission-login processes: lib20_dovegate_plugin.so, enabled with
   "login_plugins = dovegate". It has no settings of its own.

   What it does, per client:
   - Connections from a trusted proxy (a "haproxy = yes" listener, peer in
     haproxy_trusted_networks: login_trust.c) are marked secured, so nginx's
     plaintext LOGIN / USER+PASS / AUTH PLAIN is accepted while
     disable_plaintext_auth = yes (2.4: auth_allow_cleartext = no) stays
     in force for everybody else, and they get no unsolicited status
     lines before the login completes (imap-login's "* OK Waiting for
     authentication process to respond.." after 30 s of auth breaks the
     IMAP proxy of nginx 1.22 and 1.26: "upstream sent invalid response").
   - In sasl_check_login (after the passdb said OK, before the anvil check,
     the "Login:" line and the post-login process), applies a login
     ticket's facts, which the dovegate passdb hands over as passdb fields:
     dovegate_session (always), dovegate_rip/dovegate_rport (only when
     nobody already supplied the origin: no PROXY header, no IMAP ID /
     XCLIENT); dovegate_tls and dovegate_kid are logged. A field the
     login process cannot use (session id not 1..64 of A-Z a-z 0-9 - . _ ~,
     a bad address or port) fails the login, with an error line.
   - Logs one line per login in which it (or Dovecot) trusted somebody
     else's word: a ticket, a PROXY header, or IMAP ID x-originating-* /
     x-session-id or POP3/SMTP XCLIENT from login_trusted_networks:
       <proc>: Info: dovegate: login user=<U> session=<S> origin=IP[:PORT]
         via=REAL_RIP tls=yes|no|unknown origin_from=SRC session_from=SRC
         [kid=K] [forwarded_session=<S2>] [ticket_origin=IP[:PORT]]
     origin_from: socket, proxy, imap-id, xclient, ticket;
     session_from: dovecot, imap-id, xclient, ticket.

   Debug lines: "log_debug = category=dovegate".

   Dovecot includes: "login-common.h" pulls in "lib.h" (and Dovecot's own
   config.h) first, as every Dovecot plugin must. Built with Dovecot's flags
   only (src/plugin/local.mk); lib.h's quoted #include "config.h" resolves
   next to lib.h, so it is Dovecot's config.h, not dovegate's. */

#include "login-common.h"
#include "str.h"
#include "str-sanitize.h"
#include "module-context.h"
#include "client-common.h"
#include "login_trust.h"
#include "dovecot_compat.h"

#define DOVEGATE_LOGIN_CONTEXT(obj) \
	MODULE_CONTEXT(obj, dovegate_login_module)

/* What the client gets when the plugin refuses a login (the log says why). */
#define DOVEGATE_INTERNAL_FAILURE_MSG \
	"Internal login failure. Refer to server log for more information."

/* Who supplied a login's origin (client address and port) or session id. */
enum dovegate_source {
	/* origin: the TCP peer; session id: made by the login process */
	DOVEGATE_SOURCE_OWN = 0,
	/* origin from the PROXY header of a trusted proxy */
	DOVEGATE_SOURCE_PROXY,
	/* IMAP ID / POP3 or SMTP XCLIENT from login_trusted_networks */
	DOVEGATE_SOURCE_FORWARDED,
	/* the login ticket, via the dovegate passdb's fields */
	DOVEGATE_SOURCE_TICKET,
};

struct dovegate_login_client {
	union login_client_module_context module_ctx;

	/* The origin as Dovecot set it at allocation (socket or PROXY
	   header): what IMAP ID / XCLIENT changed later shows against it. */
	struct ip_addr alloc_ip;
	in_port_t alloc_port;
	/* Session id made at allocation for clients in
	   login_trusted_networks, which may replace it; NULL for others. */
	const char *alloc_session_id;

	/* Connected through a trusted proxy (login_trust.c). */
	bool trusted_proxy:1;
};

/* The ticket's facts, as the dovegate passdb hands them over. */
struct dovegate_ticket {
	const char *session, *rip, *rport, *tls, *kid;
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

static struct event *dovegate_client_debug_event(struct client *client)
{
	return event_create_passthrough(client->event)->
		add_category(&event_category_dovegate)->event();
}

/* ---- ticket fields ---------------------------------------------------- */

/* If arg is "key=value", points *value_r at value and returns TRUE. */
static bool
dovegate_passdb_field(const char *arg, const char *key, const char **value_r)
{
	size_t len = strlen(key);

	if (strncmp(arg, key, len) != 0 || arg[len] != '=')
		return FALSE;
	*value_r = arg + len + 1;
	return TRUE;
}

static void
dovegate_ticket_read(const char *const *args, struct dovegate_ticket *ticket_r)
{
	i_zero(ticket_r);
	if (args == NULL)
		return;
	/* A repeated field: the last one wins, as in Dovecot's replies. */
	for (; *args != NULL; args++) {
		(void)(dovegate_passdb_field(*args, "dovegate_session",
					     &ticket_r->session) ||
		       dovegate_passdb_field(*args, "dovegate_rip",
					     &ticket_r->rip) ||
		       dovegate_passdb_field(*args, "dovegate_rport",
					     &ticket_r->rport) ||
		       dovegate_passdb_field(*args, "dovegate_tls",
					     &ticket_r->tls) ||
		       dovegate_passdb_field(*args, "dovegate_kid",
					     &ticket_r->kid));
	}
}

/* Session ids travel in the master login request (which reserves
   LOGIN_MAX_SESSION_ID_LEN bytes for them), the "Login:" line and every
   log prefix of the post-login process: 1..64 characters of RFC 3986's
   unreserved set, which includes dovegate-auth's base64url ids. */
static bool dovegate_session_id_is_valid(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > LOGIN_MAX_SESSION_ID_LEN)
		return FALSE;
	for (; *id != '\0'; id++) {
		if (!((*id >= 'A' && *id <= 'Z') || (*id >= 'a' && *id <= 'z') ||
		      (*id >= '0' && *id <= '9') ||
		      *id == '-' || *id == '_' || *id == '.' || *id == '~'))
			return FALSE;
	}
	return TRUE;
}

/* Checks the ticket's fields before anything is applied. rip/rport are
   parsed into *ip_r / *port_r (port 0: the ticket carries no port). */
static bool
dovegate_ticket_check(const struct dovegate_ticket *ticket,
		      struct ip_addr *ip_r, in_port_t *port_r,
		      const char **error_r)
{
	i_zero(ip_r);
	*port_r = 0;

	if (!dovegate_session_id_is_valid(ticket->session)) {
		*error_r = t_strdup_printf(
			"invalid dovegate_session '%s' (1..%u of A-Z a-z 0-9 - . _ ~)",
			str_sanitize(ticket->session, 80),
			LOGIN_MAX_SESSION_ID_LEN);
		return FALSE;
	}
	if (ticket->rip != NULL && net_addr2ip(ticket->rip, ip_r) < 0) {
		*error_r = t_strdup_printf("invalid dovegate_rip '%s'",
					   str_sanitize(ticket->rip, 64));
		return FALSE;
	}
	if (ticket->rport != NULL) {
		if (ticket->rip == NULL) {
			*error_r = "dovegate_rport without dovegate_rip";
			return FALSE;
		}
		if (net_str2port(ticket->rport, port_r) < 0) {
			*error_r = t_strdup_printf(
				"invalid dovegate_rport '%s'",
				str_sanitize(ticket->rport, 16));
			return FALSE;
		}
	}
	if (ticket->tls != NULL && strcmp(ticket->tls, "yes") != 0 &&
	    strcmp(ticket->tls, "no") != 0) {
		*error_r = t_strdup_printf("invalid dovegate_tls '%s'",
					   str_sanitize(ticket->tls, 16));
		return FALSE;
	}
	return TRUE;
}

/* ---- logging ----------------------------------------------------------- */

static const char *dovegate_client_user(struct client *client)
{
	return client->virtual_user == NULL ? "" :
		str_sanitize(client->virtual_user, 256);
}

static const char *dovegate_source_name(enum dovegate_source source,
					bool is_session)
{
	switch (source) {
	case DOVEGATE_SOURCE_OWN:
		return is_session ? "dovecot" : "socket";
	case DOVEGATE_SOURCE_PROXY:
		return "proxy";
	case DOVEGATE_SOURCE_FORWARDED:
		/* imap-login takes them from ID, pop3-login and
		   submission-login from XCLIENT */
		return strcmp(login_binary->protocol, "imap") == 0 ?
			"imap-id" : "xclient";
	case DOVEGATE_SOURCE_TICKET:
		return "ticket";
	}
	i_unreached();
}

/* "192.0.2.7:4711", "[2001:db8::7]:4711", or without ":port" for port 0 */
static const char *dovegate_origin_str(const struct ip_addr *ip, in_port_t port)
{
	if (port == 0)
		return net_ip2addr(ip);
	return dg_ipport2str(ip, port);
}

/* The login line goes to a child of client->event (its fields, our
   category) whose prefix replaces the client's log elements: a line of
   its own, not one more "user=<..>, method=.." tail. */
static void ATTR_FORMAT(2, 3)
dovegate_client_info(struct client *client, const char *fmt, ...)
{
	struct event *event;
	va_list args;

	event = event_create(client->event);
	event_add_category(event, &event_category_dovegate);
	event_replace_log_prefix(event, i_get_failure_prefix());
	va_start(args, fmt);
	e_info(event, "dovegate: %s", t_strdup_vprintf(fmt, args));
	va_end(args);
	event_unref(&event);
}

/* ---- client vfuncs ----------------------------------------------------- */

static void
dovegate_notify_status(struct client *client, bool bad, const char *text)
{
	/* Only installed for clients of a trusted proxy: nginx reads the
	   first line after its command as the answer to it, so an untagged
	   "* OK Waiting for authentication process to respond.." (30 s into
	   a slow auth) or "* BAD ..." fails the login there. Say nothing;
	   the proxy has its own timeouts. */
	e_debug(dovegate_client_debug_event(client),
		"dovegate: kept status line from the proxy: %s %s",
		bad ? "BAD" : "OK", text);
}

static bool dovegate_sasl_check_login(struct client *client)
{
	struct dovegate_login_client *dclient = DOVEGATE_LOGIN_CONTEXT(client);
	struct dovegate_ticket ticket;
	enum dovegate_source origin_from, session_from;
	struct ip_addr ticket_ip;
	in_port_t ticket_port;
	const char *error, *forwarded_session = NULL;
	const char *ticket_origin = NULL;
	string_t *line;

	/* What Dovecot already has, and who said so. */
	if (!net_ip_compare(&client->ip, &dclient->alloc_ip) ||
	    client->remote_port != dclient->alloc_port)
		origin_from = DOVEGATE_SOURCE_FORWARDED;
	else if (!net_ip_compare(&client->ip, &client->real_remote_ip) ||
		 client->remote_port != client->real_remote_port)
		origin_from = DOVEGATE_SOURCE_PROXY;
	else
		origin_from = DOVEGATE_SOURCE_OWN;
	if (dclient->alloc_session_id != NULL && client->session_id != NULL &&
	    strcmp(client->session_id, dclient->alloc_session_id) != 0) {
		session_from = DOVEGATE_SOURCE_FORWARDED;
		forwarded_session = client->session_id;
	} else {
		session_from = DOVEGATE_SOURCE_OWN;
	}

	dovegate_ticket_read(client->auth_passdb_args, &ticket);
	if (ticket.session != NULL) {
		if (!dovegate_ticket_check(&ticket, &ticket_ip, &ticket_port,
					   &error)) {
			/* Only the dovegate passdb sets these fields, after
			   verifying the ticket's signature: a bad value is a
			   bug or tampering. Fail closed, say why. */
			e_error(client->event, "dovegate: login refused: "
				"ticket of user=<%s> unusable: %s",
				dovegate_client_user(client), error);
			client_auth_fail(client, DOVEGATE_INTERNAL_FAILURE_MSG);
			return FALSE;
		}
		client->session_id = p_strdup(client->pool, ticket.session);
		session_from = DOVEGATE_SOURCE_TICKET;
		if (ticket.rip == NULL) {
			/* nothing to apply */
		} else if (origin_from == DOVEGATE_SOURCE_OWN) {
			client->ip = ticket_ip;
			client->remote_port = ticket_port;
			origin_from = DOVEGATE_SOURCE_TICKET;
		} else if (!net_ip_compare(&ticket_ip, &client->ip) ||
			   (ticket_port != 0 &&
			    ticket_port != client->remote_port)) {
			/* A proxy already said where the client is and the
			   ticket disagrees: keep the proxy's word (the auth
			   process, its penalties included, saw that one)
			   and log the ticket's. */
			ticket_origin = dovegate_origin_str(&ticket_ip,
							    ticket_port);
		}
	} else if (ticket.rip != NULL || ticket.rport != NULL) {
		e_warning(client->event, "dovegate: ignoring dovegate_rip/"
			  "dovegate_rport without dovegate_session");
	}

	/* Event fields are set once at allocation: bring them up to date
	   for events of the rest of this login (and for IMAP ID / XCLIENT
	   changes, which Dovecot 2.3 does not mirror there either). */
	event_add_str(client->event, "remote_ip", net_ip2addr(&client->ip));
	event_add_int(client->event, "remote_port", client->remote_port);
	if (client->session_id != NULL)
		event_add_str(client->event, "session", client->session_id);

	if (dclient->module_ctx.super.sasl_check_login != NULL &&
	    !dclient->module_ctx.super.sasl_check_login(client))
		return FALSE;

	if (ticket.session == NULL && !dclient->trusted_proxy &&
	    origin_from == DOVEGATE_SOURCE_OWN &&
	    session_from == DOVEGATE_SOURCE_OWN) {
		/* a direct client: Dovecot's "Login:" line says it all */
		return TRUE;
	}

	line = t_str_new(256);
	str_printfa(line, "login user=<%s> session=<%s> origin=%s via=%s tls=",
		    dovegate_client_user(client),
		    client_get_session_id(client),
		    dovegate_origin_str(&client->ip, client->remote_port),
		    net_ip2addr(&client->real_remote_ip));
	if (ticket.tls != NULL)
		str_append(line, ticket.tls);
	else if (origin_from == DOVEGATE_SOURCE_OWN)
		str_append(line, DG_CLIENT_TLS(client) ? "yes" : "no");
	else if (DG_CLIENT_PROXIED_TLS(client))
		str_append(line, "yes");
	else
		str_append(line, "unknown");
	str_printfa(line, " origin_from=%s session_from=%s",
		    dovegate_source_name(origin_from, FALSE),
		    dovegate_source_name(session_from, TRUE));
	if (ticket.kid != NULL)
		str_printfa(line, " kid=%s", str_sanitize(ticket.kid, 64));
	if (forwarded_session != NULL && session_from == DOVEGATE_SOURCE_TICKET)
		str_printfa(line, " forwarded_session=<%s>",
			    str_sanitize(forwarded_session,
					 LOGIN_MAX_SESSION_ID_LEN));
	if (ticket_origin != NULL)
		str_printfa(line, " ticket_origin=%s", ticket_origin);
	dovegate_client_info(client, "%s", str_c(line));
	return TRUE;
}

/* ---- hooks ------------------------------------------------------------- */

static void dovegate_client_allocated(struct client *client)
{
	struct dovegate_login_client *dclient;
	struct client_vfuncs *v = client->vlast;

	dclient = p_new(client->pool, struct dovegate_login_client, 1);
	dclient->module_ctx.super = *v;
	client->vlast = &dclient->module_ctx.super;
	v->sasl_check_login = dovegate_sasl_check_login;
	MODULE_CONTEXT_SET(client, dovegate_login_module, dclient);

	dclient->alloc_ip = client->ip;
	dclient->alloc_port = client->remote_port;
	if (DG_CLIENT_TRUSTED(client)) {
		/* login_trusted_networks may replace the session id with
		   IMAP ID x-session-id or XCLIENT SESSION=. Make Dovecot's
		   own now (it is made on first use anyway) to tell them
		   apart at login. */
		dclient->alloc_session_id = client_get_session_id(client);
	}

	dclient->trusted_proxy = dovegate_login_from_trusted_proxy(client);
	if (dclient->trusted_proxy) {
		/* Let the proxy log in with a plaintext mechanism although
		   disable_plaintext_auth = yes (2.4: auth_allow_cleartext
		   = no). Safe because only hosts in haproxy_trusted_networks
		   get here (login_trust.c): the password crosses only the
		   proxy-to-Dovecot network the postmaster chose to trust
		   with the PROXY header; the
		   client's own leg is the proxy's business (nginx: ssl /
		   starttls only). Direct clients keep Dovecot's rules.
		   Nothing else follows from "secured" that a trusted
		   proxy must not have: unlike client->trusted it does not
		   allow IMAP ID / XCLIENT to override the client address. */
		DG_CLIENT_SECURED(client) = TRUE;
		/* pop3-login and submission-login have no notify_status */
		if (v->notify_status != NULL)
			v->notify_status = dovegate_notify_status;
	}

	e_debug(dovegate_client_debug_event(client),
		"dovegate: client allocated (listener=%s, trusted_proxy=%s, "
		"login_trusted=%s, secured=%s)",
		client->listener_name,
		dclient->trusted_proxy ? "yes" : "no",
		DG_CLIENT_TRUSTED(client) ? "yes" : "no",
		DG_CLIENT_SECURED(client) ? "yes" : "no");
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
