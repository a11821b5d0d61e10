/* dovegate passdb module for Dovecot's auth process: libauthdb_dovegate.so,
   used with (Dovecot 2.4; 2.3: passdb { driver = dovegate  args = ... },
   see passdb_settings.h)

     passdb dovegate {
       keys = /etc/dovecot/dovegate.keys
       audience = dovecot-1
       [allow_real_nets = NET ...] [nginx_ports = PORT ...]
       [skew = 30s] [max_lifetime = 5min] [replay_cache_size = 100000]
     }

   listed before the operator's normal passdb. It verifies the login tickets
   dovegate-auth hands nginx as the backend password (PASETO v4.public, key
   id in the footer; src/common/ticket.h) and gives the login plugin the
   ticket's facts as passdb fields.

   Not a ticket (does not start with "v4.public."): not this passdb's
   business. The lookup ends with PASSDB_RESULT_NEXT, which makes Dovecot go
   on to the next passdb whatever this passdb's result_* rules say
   (auth-request.c, auth_request_handle_passdb_callback), so direct clients
   (own password) and master-user logins keep working. Dovecot refuses
   PASSDB_RESULT_NEXT from the last passdb ("Last passdb had noauthenticate
   field", an internal failure): when this passdb is the last one (a
   ticket-only backend) a non-ticket answers USER_UNKNOWN instead.

   Except on nginx_ports, the listeners meant for nginx: there a password
   that is not a ticket is refused unchecked (PASSWORD_MISMATCH, final as
   below; one log line, never the password), unless a master passdb already
   verified it (master-user login). Anyone in haproxy_trusted_networks may
   send those listeners a PROXY header claiming any client address (with
   nginx on the same host: every local user), so a user's own password
   there would skip dovegate-auth's checks under an address of the
   sender's choice. The port checked is the socket's (real_local_port),
   which the PROXY header cannot change; direct clients on Dovecot's other
   listeners are not affected.

   A ticket: real peer in allow_real_nets (before anything else, so a
   ticket shown from elsewhere is not used up), key ring lookup by kid,
   signature, claims (ticket_json.c), time/audience/user/service
   rules (ticket_claims_check), issued after this process started (the
   replay memory is per process), single use (replay_cache.c). Any refusal
   is PASSDB_RESULT_PASSWORD_MISMATCH plus one log line with the reason; it
   is final: init() makes this passdb's result_failure "return-fail", so a
   refused ticket never falls through to a later passdb (e.g. one with
   nopassword or allow_nets-only rules).

   Never cached: the module sets no default_cache_key, so auth_passdb's
   cache_key stays NULL and Dovecot's auth cache neither stores nor serves
   this passdb's results whatever auth_cache_size says (init() checks).

   No lookup_credentials: tickets are plaintext passwords. Dovecot treats
   a passdb without it as "scheme not available" for CRAM-MD5 & co, which
   it handles with result_failure: return-fail (init() below), so such a
   mechanism fails while this passdb comes first (seen on 2.3.19 with
   auth_mechanisms = ... cram-md5, on Dovecot's own listeners too). On
   nginx_ports that is also what keeps them out: a lookup_credentials that
   passed on would have to refuse there as verify_plain does.

   Files: the key ring is read at preinit (still root) and re-read when its
   file changes (stat at most once a second, as the auth process's
   unprivileged user, so keep it world-readable: public keys only). A ring
   that fails to load keeps the previous one and says why. */

#include "auth-common.h"
#include "array.h"
#include "ioloop.h"
#include "str.h"
#include "strnum.h"
#include "str-sanitize.h"
#include "net.h"
#include "passdb.h"

#include <sys/stat.h>

#include "ticket.h"
#include "keyring.h"
#include "replay_cache.h"
#include "ticket_json.h"
#include "passdb_settings.h"
#include "dovecot_compat.h"

/* Longest value of a ticket claim written to the log. */
#define DOVEGATE_LOG_VALUE_MAX 80

/* Exported names: Dovecot loads libauthdb_dovegate.so when a passdb names
   driver=dovegate, checks the version and calls the init function. */
const char *authdb_dovegate_version = DOVECOT_ABI_VERSION;

void authdb_dovegate_init(void);
void authdb_dovegate_deinit(void);

struct dovegate_passdb_module {
	struct passdb_module module;
	struct dovegate_passdb_settings set;

	struct keyring *ring;
	struct stat ring_st;     /* of the file the ring was loaded from */
	time_t ring_checked;     /* ioloop_time of the last stat() */
	bool ring_stat_failed;   /* logged once until stat() works again */
};

/* One cache per auth process, shared by every dovegate passdb in it: a
   ticket id is single-use whichever passdb sees it. */
static struct replay_cache *dovegate_replay_cache = NULL;
static unsigned int dovegate_replay_cache_refs = 0;
/* When this process's replay memory began (see dovegate_verify_ticket). */
static time_t dovegate_started = 0;

/* Per-request lines carry the category "dovegate": debug lines show with
   auth_debug = yes or "log_debug = category=dovegate". */
static struct event_category event_category_dovegate = {
	.name = "dovegate",
};

static struct event *dovegate_request_event(struct auth_request *request)
{
	return event_create_passthrough(authdb_event(request))->
		add_category(&event_category_dovegate)->event();
}

/* ---- key ring ----------------------------------------------------------- */

static bool dovegate_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
		a->st_size == b->st_size &&
		a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
		a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
		a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
		a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* At most once a second: reload the ring if its file changed. A file that
   cannot be loaded keeps the previous ring (logged once per change). */
static void dovegate_ring_refresh(struct dovegate_passdb_module *m)
{
	struct keyring *ring;
	struct stat st;
	char err[512];

	if (m->ring_checked == ioloop_time)
		return;
	m->ring_checked = ioloop_time;

	if (stat(m->set.keys_path, &st) < 0) {
		if (!m->ring_stat_failed) {
			i_error("passdb dovegate: stat(%s) failed: %m "
				"(keeping the loaded keys)", m->set.keys_path);
			m->ring_stat_failed = TRUE;
		}
		return;
	}
	m->ring_stat_failed = FALSE;
	if (dovegate_same_file(&st, &m->ring_st))
		return;
	m->ring_st = st;

	ring = keyring_load(m->set.keys_path, err, sizeof(err));
	if (ring == NULL) {
		i_error("passdb dovegate: key ring not reloaded: %s "
			"(keeping the previous keys)", err);
		return;
	}
	keyring_free(m->ring);
	m->ring = ring;
	i_info("passdb dovegate: key ring %s reloaded (%zu keys)",
	       m->set.keys_path, keyring_count(ring));
}

/* ---- verification ------------------------------------------------------- */

static const char *dovegate_log_value(const char *value)
{
	return value == NULL || value[0] == '\0' ? "-" :
		str_sanitize(value, DOVEGATE_LOG_VALUE_MAX);
}

/* Logs the one refusal line; the login fails with a password mismatch. */
static enum passdb_result
dovegate_refuse(struct auth_request *request, const char *reason,
		const char *kid, const struct ticket_claims *c,
		const char *detail)
{
	struct event *event = event_create_passthrough(authdb_event(request))->
		add_category(&event_category_dovegate)->
		add_str("dovegate_result", "refused")->
		add_str("dovegate_reason", reason)->event();
	string_t *line = t_str_new(256);

	str_printfa(line, "dovegate: ticket refused: reason=%s kid=%s "
		    "jti=%s sub=%s aud=%s", reason, dovegate_log_value(kid),
		    dovegate_log_value(c == NULL ? NULL : c->jti),
		    dovegate_log_value(c == NULL ? NULL : c->sub),
		    dovegate_log_value(c == NULL ? NULL : c->aud));
	if (detail != NULL)
		str_printfa(line, " detail=%s", str_sanitize(detail, 200));
	if (strcmp(reason, "replay_cache_full") == 0)
		e_warning(event, "%s", str_c(line));
	else
		e_info(event, "%s", str_c(line));
	return PASSDB_RESULT_PASSWORD_MISMATCH;
}

/* The connection's real peer (nginx for a PROXY connection; not the
   forwarded client address) against allow_real_nets. */
static bool
dovegate_peer_allowed(const struct dovegate_passdb_module *m,
		      const struct ip_addr *peer)
{
	unsigned int i;

	if (m->set.real_nets_count == 0)
		return TRUE;
	if (peer->family == 0)
		return FALSE;
	for (i = 0; i < m->set.real_nets_count; i++) {
		if (net_is_in_network(peer, &m->set.real_nets[i].ip,
				      m->set.real_nets[i].bits))
			return TRUE;
	}
	return FALSE;
}

static const char *dovegate_ticket_service(const char *service)
{
	/* Dovecot's service names; tickets say "smtp" for submission */
	if (service != NULL && strcmp(service, "submission") == 0)
		return "smtp";
	return service;
}

static enum passdb_result
dovegate_verify_ticket(struct auth_request *request,
		       struct dovegate_passdb_module *m, const char *password)
{
	unsigned char msg[TICKET_MAX_LEN + 1];
	char kid[TICKET_KID_MAX + 1];
	struct ticket_claims claims;
	struct ticket_expect expect;
	enum ticket_refusal r;
	char error[256];
	const char *user, *original;
	size_t len = strlen(password), msg_len;
	time_t now = ioloop_time;
	struct replay_time rnow;

	/* First, before any work: a ticket from anywhere but nginx is
	   refused without being used up. */
	if (!dovegate_peer_allowed(m, &request->fields.real_remote_ip)) {
		return dovegate_refuse(request, "untrusted_peer", NULL, NULL,
			t_strdup_printf("real_rip %s not in allow_real_nets",
				request->fields.real_remote_ip.family == 0 ?
				"unknown" :
				net_ip2addr(&request->fields.real_remote_ip)));
	}
	if (len > TICKET_MAX_LEN) {
		return dovegate_refuse(request, "malformed", NULL, NULL,
				       "longer than TICKET_MAX_LEN");
	}

	dovegate_ring_refresh(m);
	r = keyring_verify(m->ring, password, len, kid, msg, sizeof(msg),
			   &msg_len);
	if (r != TICKET_ACCEPTED) {
		return dovegate_refuse(request, ticket_refusal_name(r), kid,
				       NULL, NULL);
	}
	if (!ticket_claims_from_json((const char *)msg, msg_len, &claims,
				     error, sizeof(error)))
		return dovegate_refuse(request, "malformed", kid, NULL, error);

	/* The user: nginx sends the ticket's sub as the login name
	   (original_username, exactly as sent, the master user part if any
	   removed); Dovecot may have normalised it since (auth_username_format
	   %Lu lowercases by default, default_realm, translation) into
	   fields.user. Both name the same account: either may match. */
	user = request->fields.user;
	original = request->fields.original_username;
	i_zero(&expect);
	expect.aud = m->set.audience;
	expect.sub = original != NULL ? original : user;
	expect.svc = dovegate_ticket_service(DG_REQUEST_PROTOCOL(request));
	expect.now = now;
	expect.skew = m->set.skew;
	expect.max_lifetime = m->set.max_lifetime;
	r = ticket_claims_check(&claims, &expect);
	if (r == TICKET_WRONG_USER && user != NULL &&
	    strcmp(expect.sub, user) != 0) {
		expect.sub = user;
		r = ticket_claims_check(&claims, &expect);
	}
	if (r != TICKET_ACCEPTED) {
		return dovegate_refuse(request, ticket_refusal_name(r), kid,
				       &claims, NULL);
	}

	/* The replay cache only knows tickets used since this process
	   started; a restart (doveadm reload, crash, idle_kill) forgets.
	   nginx uses a ticket within milliseconds of its issue, so a ticket
	   issued before the start (with skew: the signer's clock may be
	   behind) may well have been used already: refuse it. */
	if (claims.iat + m->set.skew < dovegate_started) {
		return dovegate_refuse(request, "issued_before_start", kid,
			&claims, "issued before this auth process started; "
			"single use cannot be checked");
	}

	/* Single use: remembered until it would be refused as expired, for
	   its remaining lifetime on the monotonic clock (replay_cache.h). */
	replay_cache_now(&rnow);
	rnow.wall = now;
	switch (replay_cache_check_add(dovegate_replay_cache, claims.jti, &rnow,
				       (time_t)claims.exp + m->set.skew)) {
	case REPLAY_CACHE_NEW:
		break;
	case REPLAY_CACHE_SEEN:
		return dovegate_refuse(request,
				       ticket_refusal_name(TICKET_REPLAY),
				       kid, &claims, NULL);
	case REPLAY_CACHE_FULL:
		return dovegate_refuse(request, "replay_cache_full", kid,
				       &claims, t_strdup_printf(
					"%u unexpired tickets remembered; "
					"raise replay_cache_size",
					replay_cache_limit(
						dovegate_replay_cache)));
	}

	/* For the login plugin (client->auth_passdb_args). */
	auth_request_set_field(request, "dovegate_session", claims.jti, NULL);
	if (claims.rip[0] != '\0')
		auth_request_set_field(request, "dovegate_rip", claims.rip, NULL);
	if (claims.rport != 0) {
		auth_request_set_field(request, "dovegate_rport",
				       dec2str(claims.rport), NULL);
	}
	auth_request_set_field(request, "dovegate_tls",
			       claims.tls ? "yes" : "no", NULL);
	auth_request_set_field(request, "dovegate_kid", kid, NULL);

	e_info(event_create_passthrough(authdb_event(request))->
	       add_category(&event_category_dovegate)->
	       add_str("dovegate_result", "accepted")->event(),
	       "dovegate: ticket accepted: session=%s kid=%s", claims.jti, kid);
	return PASSDB_RESULT_OK;
}

/* ---- passwords on the listeners for nginx ------------------------------ */

/* The connection's own local port (Dovecot sends the socket's as
   real_lport when a PROXY header claimed another; it equals lport
   otherwise) is one of nginx_ports. */
static bool
dovegate_on_nginx_port(const struct dovegate_passdb_module *m,
		       const struct auth_request *request)
{
	in_port_t port = request->fields.real_local_port;
	unsigned int i;

	if (port == 0)
		return FALSE;
	for (i = 0; i < m->set.nginx_ports_count; i++) {
		if (m->set.nginx_ports[i] == port)
			return TRUE;
	}
	return FALSE;
}

/* One line naming the port and the real peer (the prefix has the user and
   the claimed client address); the password is neither checked nor
   logged. */
static enum passdb_result
dovegate_refuse_password(struct auth_request *request)
{
	const struct ip_addr *peer = &request->fields.real_remote_ip;

	e_info(event_create_passthrough(authdb_event(request))->
	       add_category(&event_category_dovegate)->
	       add_str("dovegate_result", "refused")->
	       add_str("dovegate_reason", "nginx_port")->event(),
	       "dovegate: password refused: reason=nginx_port lport=%u "
	       "real_rip=%s (a listener for nginx: only login tickets and "
	       "master-user logins; the password was not checked)",
	       request->fields.real_local_port,
	       peer->family == 0 ? "unknown" : net_ip2addr(peer));
	return PASSDB_RESULT_PASSWORD_MISMATCH;
}

static void
dovegate_verify_plain(struct auth_request *request, const char *password,
		      verify_plain_callback_t *callback)
{
	struct dovegate_passdb_module *m =
		(struct dovegate_passdb_module *)request->passdb->passdb;
	bool last = request->passdb->next == NULL;

	if (request->fields.skip_password_check) {
		/* A master passdb already verified the password and
		   continues here for the target user: not ours. */
		e_debug(dovegate_request_event(request),
			"dovegate: password already verified (master login), "
			"passing on");
	} else if (!ticket_looks_like_one(password, strlen(password))) {
		if (dovegate_on_nginx_port(m, request)) {
			callback(dovegate_refuse_password(request), request);
			return;
		}
		e_debug(dovegate_request_event(request),
			"dovegate: not a login ticket, passing on");
	} else {
		enum passdb_result result;

		T_BEGIN {
			result = dovegate_verify_ticket(request, m, password);
		} T_END;
		callback(result, request);
		return;
	}
	callback(last ? PASSDB_RESULT_USER_UNKNOWN : PASSDB_RESULT_NEXT,
		 request);
}

/* ---- module life -------------------------------------------------------- */

/* Without allow_real_nets anyone who can reach a Dovecot listener can use a
   ticket (one sniffed or taken from a log, within its lifetime), not only
   nginx. Working, but not what a ticket backend should be: say so. */
static void dovegate_warn_open_peers(const struct dovegate_passdb_module *m)
{
	if (m->set.real_nets_count > 0)
		return;
	i_warning("passdb dovegate: allow_real_nets is not set: tickets are "
		  "accepted from any peer, not only from nginx; set "
		  "allow_real_nets to nginx's addresses");
}

/* Without nginx_ports the listeners for nginx take users' own passwords
   too, from anyone in haproxy_trusted_networks (with nginx on this host:
   every local user), under a client address of the sender's choice. */
static void dovegate_warn_open_ports(const struct dovegate_passdb_module *m)
{
	if (m->set.nginx_ports_count > 0)
		return;
	i_warning("passdb dovegate: nginx_ports is not set: the listeners for "
		  "nginx accept users' own passwords, sent by anyone in "
		  "haproxy_trusted_networks with a client address of their "
		  "choice; set nginx_ports to the ports of the haproxy = yes "
		  "listeners");
}

int dovegate_passdb_create(pool_t pool,
			   const struct dovegate_passdb_settings *set,
			   struct passdb_module **module_r,
			   const char **error_r)
{
	struct dovegate_passdb_module *m;
	char err[512];

	m = p_new(pool, struct dovegate_passdb_module, 1);
	/* never cached: auth_passdb.cache_key comes from this */
	m->module.default_cache_key = NULL;
	m->set = *set;

	/* Still root here: the first load may read a root-only file, but
	   reloads run as the auth user (see the top of this file). */
	if (stat(m->set.keys_path, &m->ring_st) < 0) {
		*error_r = t_strdup_printf("keys=%s: stat() failed: %m",
					   m->set.keys_path);
		return -1;
	}
	m->ring = keyring_load(m->set.keys_path, err, sizeof(err));
	if (m->ring == NULL) {
		*error_r = t_strdup_printf("keys=%s: %s", m->set.keys_path,
					   err);
		return -1;
	}
	m->ring_checked = ioloop_time;

	if (dovegate_replay_cache == NULL) {
		dovegate_started = time(NULL);
		dovegate_replay_cache =
			replay_cache_init(m->set.replay_cache_size);
	} else if (replay_cache_limit(dovegate_replay_cache) <
		   m->set.replay_cache_size) {
		replay_cache_set_limit(dovegate_replay_cache,
				       m->set.replay_cache_size);
	}
	dovegate_replay_cache_refs++;

	if (!worker) {
		/* (auth-worker processes load every passdb too, unused) */
		i_info("passdb dovegate: audience=%s keys=%s (%zu keys) "
		       "skew=%u max_lifetime=%u replay_cache_size=%u "
		       "allow_real_nets=%s nginx_ports=%s", m->set.audience,
		       m->set.keys_path, keyring_count(m->ring), m->set.skew,
		       m->set.max_lifetime, m->set.replay_cache_size,
		       m->set.real_nets_str == NULL ? "any" :
		       m->set.real_nets_str,
		       m->set.nginx_ports_str == NULL ? "none" :
		       m->set.nginx_ports_str);
		dovegate_warn_open_peers(m);
		dovegate_warn_open_ports(m);
	}
	*module_r = &m->module;
	return 0;
}

static const char *dovegate_rule_name(enum auth_db_rule rule)
{
	switch (rule) {
	case AUTH_DB_RULE_RETURN: return "return";
	case AUTH_DB_RULE_RETURN_OK: return "return-ok";
	case AUTH_DB_RULE_RETURN_FAIL: return "return-fail";
	case AUTH_DB_RULE_CONTINUE: return "continue";
	case AUTH_DB_RULE_CONTINUE_OK: return "continue-ok";
	case AUTH_DB_RULE_CONTINUE_FAIL: return "continue-fail";
	}
	return "?";
}

/* Runs after every passdb of every auth service is set up: check how this
   module is used and make a refused ticket final. */
static void dovegate_init(struct passdb_module *module)
{
	struct auth *const *authp;
	struct auth_passdb *ap;

	array_foreach(&auths, authp) {
		for (ap = (*authp)->masterdbs; ap != NULL; ap = ap->next) {
			if (ap->passdb == module) {
				/* As a master passdb the ticket's user would
				   be the master user, not the one logged in. */
				i_fatal("passdb dovegate: cannot be a master "
					"passdb (remove master = yes)");
			}
		}
		for (ap = (*authp)->passdbs; ap != NULL; ap = ap->next) {
			if (ap->passdb != module)
				continue;
			if (ap->cache_key != NULL) {
				i_fatal("passdb dovegate: has an auth cache "
					"key; tickets must never be cached");
			}
			if (ap->result_failure != AUTH_DB_RULE_RETURN_FAIL) {
				if (ap->result_failure == AUTH_DB_RULE_RETURN_OK ||
				    ap->result_failure == AUTH_DB_RULE_CONTINUE_OK) {
					i_warning("passdb dovegate: ignoring "
						  "result_failure = %s",
						  dovegate_rule_name(ap->result_failure));
				}
				/* A refused ticket ends the login: it must not
				   reach a later passdb. Non-tickets are NEXT,
				   which always continues. */
				ap->result_failure = AUTH_DB_RULE_RETURN_FAIL;
			}
		}
	}
}

static void dovegate_deinit(struct passdb_module *module)
{
	struct dovegate_passdb_module *m =
		(struct dovegate_passdb_module *)module;

	keyring_free(m->ring);
	m->ring = NULL;
	i_assert(dovegate_replay_cache_refs > 0);
	if (--dovegate_replay_cache_refs == 0)
		replay_cache_deinit(&dovegate_replay_cache);
}

static struct passdb_module_interface passdb_dovegate = {
	.name = "dovegate",
	/* .preinit: dovegate_passdb_settings_register() */
	.init = dovegate_init,
	.deinit = dovegate_deinit,
	.verify_plain = dovegate_verify_plain,
};

void authdb_dovegate_init(void)
{
	dovegate_passdb_settings_register(&passdb_dovegate);
	passdb_register_module(&passdb_dovegate);
	i_info("dovegate: passdb driver registered (%s)", DOVECOT_ABI_VERSION);
}

void authdb_dovegate_deinit(void)
{
	passdb_unregister_module(&passdb_dovegate);
}
