#include "decision.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "cache.h"
#include "client_addr.h"
#include "cluster.h"
#include "director.h"
#include "external.h"
#include "metrics.h"
#include "penalty.h"
#include "routing.h"
#include "schemes.h"
#include "session.h"
#include "throttle.h"

struct decision {
	struct runtime *rt;
	struct dglog *log;
	struct workers *workers;        /* NULL: verify inline */
	struct event_base *base;        /* NULL: logins are never held */
	decision_reply_fn *reply;
	void *reply_ctx;
	char session[SESSION_ID_LEN + 1];
	struct timespec start;
	struct authhttp_request req;
	/* client facts for a ticket, read while nginx's headers are at hand */
	struct client_addr client;      /* rip: the address decisions use */
	bool tls;
	char tls_protocol[32];

	/* outcome */
	const char *result;             /* ok | fail | error */
	const char *reason;             /* NULL when ok */
	char detail[160];
	struct routing_choice target;   /* the backend nginx goes to (when ok) */
	const char *mode;               /* credentials used, for the log */
	struct authhttp_response resp;

	/* verified-login cache */
	const char *cache_state;        /* hit | miss | off; NULL: not consulted */
	unsigned char cache_key[CACHE_KEY_BYTES];
	bool unknown_user;              /* verifying against a decoy */
	bool no_password;               /* empty password field: a decoy, too */
	bool locked;                    /* nologin: verified, then refused like a bad password */
	/* Another user's stored password (passdb_decoy), so that logins without a
	   usable one of their own cost what real ones cost; a match never counts */
	char *decoy;

	/* the dovecot passdb (passdb_dovecot.c) verifies instead of a worker */
	bool remote;
	char *remote_user;              /* its user= (may rename); NULL: as sent */

	/* passdb host= and port= (either passdb): they decide the backend */
	char *route_host;
	char *route_port;               /* NULL: not given */
	bool resolving;                 /* a host name lookup is under way */
	bool resolve_sync;              /* ... inside routing_resolve() itself */

	/* handed to a hash worker: written before submit, read back after */
	char *stored;
	const char *default_scheme;
	enum scheme_result verified;
	const char *verify_error;

	/* brute-force protection before verifying (throttle.h) */
	struct throttle throttle;
	unsigned held;                  /* s the login was held before verifying */

	/* brute-force protection, for the log; penalty_logged false: not consulted */
	bool penalty_logged;
	unsigned penalty_score;
	unsigned penalty_delay;         /* 0 with penalty_close */
	bool penalty_close;
	bool penalty_counted;           /* the failure raised the scores */

	/* cluster mode (cluster.h): what the store said before the policy step */
	const char *cluster_state;      /* shared | local; NULL: no [cluster] */
	struct cluster_facts facts;
	char net[64];                   /* the client's network, as the store names it */
	const char *assigned;           /* facts.assigned for the director; NULL: not asked */
	struct director_choice director;
	char previous[ROUTE_IDENTITY_MAX];      /* the assignment a REPLACE replaces */
};

static enum dg_proto reply_proto(const struct decision *d)
{
	/* without a known protocol, answer without SMTP codes */
	return d->req.has_proto ? d->req.proto : DG_PROTO_IMAP;
}

static void set_detail(struct decision *d, const char *detail)
{
	snprintf(d->detail, sizeof(d->detail), "%.*s", (int)sizeof(d->detail) - 1,
		 detail != NULL ? detail : "");
}

/* Wrong user or password, or credentials we refuse: the client may retry. */
static void outcome_fail(struct decision *d, const char *reason, const char *detail)
{
	d->result = "fail";
	d->reason = reason;
	set_detail(d, detail);
	authhttp_response_fail(&d->resp, reply_proto(d));
}

/* Our problem or nginx's. with_wait=false also closes the client connection. */
static void outcome_error(struct decision *d, const char *reason, const char *detail,
			  bool with_wait)
{
	d->result = "error";
	d->reason = reason;
	set_detail(d, detail);
	authhttp_response_tempfail(&d->resp, reply_proto(d), with_wait);
}

static void outcome_unsupported(struct decision *d, const char *detail)
{
	d->result = "error";
	d->reason = "unsupported_method";
	set_detail(d, detail);
	authhttp_response_unsupported(&d->resp, reply_proto(d));
}

static time_t monotonic_seconds(void);

static void outcome_ok(struct decision *d, const char *mode)
{
	d->result = "ok";
	d->reason = NULL;
	d->mode = mode;
}

static double elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1000.0 +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static void log_decision(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	struct kvline kv;
	bool ok = strcmp(d->result, "ok") == 0;
	double ms = elapsed_ms(&d->start);

	kv_init(&kv, "decision");
	kv_add(&kv, "session", d->session);
	kv_add(&kv, "proto", r->has_proto ? dg_proto_name(r->proto) : NULL);
	kv_add(&kv, "method", r->method_name);
	if (r->user != NULL)
		kv_addn(&kv, "user", r->user, r->user_len);
	else
		kv_add(&kv, "user", r->user_raw);
	/* the address acted on (penalties, ticket, exemption), not just Client-IP */
	kv_add(&kv, "rip", d->client.rip[0] != '\0' ? d->client.rip : r->client_ip);
	kv_add(&kv, "result", d->result);
	kv_add(&kv, "reason", d->reason);
	if (d->detail[0] != '\0')
		kv_add(&kv, "detail", d->detail);
	kv_add(&kv, "backend", ok ? d->target.addr.text : NULL);
	kv_add(&kv, "mode", ok ? d->mode : NULL);
	if (r->attempt != 0)
		kv_addf(&kv, "attempt", "%lu", r->attempt);
	else
		kv_add(&kv, "attempt", NULL);
	kv_add(&kv, "cache", d->cache_state);
	if (d->cluster_state != NULL)           /* [cluster] only */
		kv_add(&kv, "cluster", d->cluster_state);
	if (ok && d->director.how != NULL)
		kv_add(&kv, "assignment", d->director.how);
	if (d->penalty_logged) {
		kv_addf(&kv, "penalty", "%u", d->penalty_score);
		if (d->penalty_close)
			kv_add(&kv, "delay", "close");
		else
			kv_addf(&kv, "delay", "%u", d->penalty_delay);
	}
	if (d->held > 0)
		kv_addf(&kv, "hold", "%u", d->held);
	if (ok && d->target.panic)
		kv_add(&kv, "panic", "yes");    /* every backend of the pool was down */
	if (d->client.via[0] != '\0')
		kv_add(&kv, "via", d->client.via);
	if (d->client.claimed[0] != '\0')
		kv_add(&kv, "claimed", d->client.claimed);
	kv_addf(&kv, "duration_ms", "%.1f", ms);
	metrics_decision(r->has_proto ? (int)r->proto : -1,
			 r->method_name != NULL ? (int)r->method : -1, d->result, d->reason,
			 d->cache_state, !d->penalty_logged ? -1 :
			 d->penalty_close ? 0 : (int)d->penalty_delay, ms / 1000.0);
	if (d->cluster_state != NULL)
		metrics_cluster_login(strcmp(d->cluster_state, "shared") == 0,
				      ok ? d->director.how : NULL);
	dglog(d->log, ok || strcmp(d->result, "fail") == 0 ? LOG_INFO : LOG_WARNING,
	      "%s", kv_str(&kv));
}

/* Never send nginx something it would misread: fail the login instead. */
static void check_response(struct decision *d)
{
	char detail[160];

	switch (authhttp_response_check(&d->resp, detail, sizeof(detail))) {
	case AUTHHTTP_CHECK_OK:
		return;
	case AUTHHTTP_CHECK_TOO_LARGE:
		authhttp_response_clear(&d->resp);
		outcome_error(d, "response_too_large", detail, true);
		return;
	case AUTHHTTP_CHECK_BAD_VALUE:
		authhttp_response_clear(&d->resp);
		outcome_error(d, "unrepresentable", detail, true);
		return;
	}
}

/* ---- brute-force protection ----------------------------------------------- */

/* Failures that cost the client: a wrong user or password, or credentials
   we refuse. Temporary failures and refusals of a valid login never count. */
static bool counts_as_failure(const struct decision *d)
{
	static const char *const reasons[] = {
		"bad_password", "unknown_user", "bad_request", "bad_credentials",
		"locked", "unusable_password", "nologin", NULL
	};

	if (d->result == NULL || strcmp(d->result, "fail") != 0 || d->reason == NULL)
		return false;
	for (size_t i = 0; reasons[i] != NULL; i++)
		if (strcmp(d->reason, reasons[i]) == 0)
			return true;
	return false;
}

/* Auth-Wait becomes delay seconds (at least 1); close removes it, which
   makes nginx close the client connection (the attempt cap). */
static void set_wait(struct authhttp_response *resp, bool close, unsigned delay)
{
	char value[16];

	for (size_t i = 0; i < resp->count; i++) {
		struct authhttp_header *h = &resp->headers[i];
		char *copy;

		if (strcmp(h->name, "Auth-Wait") != 0)
			continue;
		if (close) {
			free(h->value);
			memmove(h, h + 1, (resp->count - i - 1) * sizeof(*h));
			resp->count--;
			return;
		}
		snprintf(value, sizeof(value), "%u", delay > 0 ? delay : 1);
		copy = strdup(value);
		if (copy == NULL)
			return;         /* keep the fixed wait */
		free(h->value);
		h->value = copy;
		return;
	}
}

/* The store's scores for the login; NULL when it did not answer. */
static const struct penalty_shared *shared_facts(const struct decision *d)
{
	return d->facts.answered ? &d->facts.penalty : NULL;
}

/* The real client (d->client.rip: Client-IP, or a trusted balancer's PROXY
   address) pays for a failure and is cleared by a success. */
static void apply_penalty(struct decision *d)
{
	struct penalty *p = d->rt->penalty;
	const struct authhttp_request *r = &d->req;
	struct penalty_addr ip;
	struct penalty_decision pd;

	if (p == NULL || d->result == NULL || d->client.rip[0] == '\0' ||
	    penalty_addr_parse(d->client.rip, &ip) < 0)
		return;
	if (strcmp(d->result, "ok") == 0) {
		/* method none routes without credentials: no proof of anything */
		if (r->method != AUTHHTTP_METHOD_NONE)
			penalty_success(p, &ip, r->user, monotonic_seconds());
		return;
	}
	if (!counts_as_failure(d))
		return;
	penalty_fail_shared(p, &ip, r->user, r->pass, r->pass != NULL ? r->pass_len : 0,
			    r->attempt > UINT32_MAX ? UINT32_MAX : (unsigned)r->attempt,
			    monotonic_seconds(), shared_facts(d), &pd);
	d->penalty_counted = pd.why != NULL && strcmp(pd.why, "counted") == 0;
	set_wait(&d->resp, pd.close, pd.delay);
	d->penalty_logged = true;
	d->penalty_score = pd.score;
	d->penalty_delay = pd.close ? 0 : pd.delay > 0 ? pd.delay : 1;
	d->penalty_close = pd.close;
}

/* What the cluster learns from the login (one EVALSHA, not waited for). */
static void tell_cluster(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	struct cluster_outcome o = {
		.net = d->net[0] != '\0' ? d->net : NULL,
		.user = r->user, .user_len = r->user != NULL ? r->user_len : 0,
	};

	if (d->cluster_state == NULL || d->result == NULL)
		return;
	if (strcmp(d->result, "ok") == 0) {
		o.event = CLUSTER_EVENT_SUCCESS;
		o.backend = routing_host_id(&d->target);
		o.assign = d->director.assign;
		o.previous = d->previous;
	} else if (counts_as_failure(d) && d->penalty_counted) {
		o.event = CLUSTER_EVENT_FAILED;
	} else if (d->reason != NULL && strcmp(d->reason, "throttled") == 0) {
		o.event = CLUSTER_EVENT_REFUSED;
	}
	cluster_record(d->rt->cluster, &o);
}

static void finish(struct decision *d)
{
	if (d->resolving)
		return;                 /* the lookup's answer finishes it */
	check_response(d);
	/* after the check: an answer it turned into an error is no success */
	apply_penalty(d);
	tell_cluster(d);
	throttle_done(&d->throttle);
	log_decision(d);
	d->reply(d->reply_ctx, &d->resp);
	authhttp_response_clear(&d->resp);
	authhttp_request_clear(&d->req);
	free(d->remote_user);
	free(d->route_host);
	free(d->route_port);
	if (d->stored != NULL) {
		sodium_memzero(d->stored, strlen(d->stored));
		free(d->stored);
	}
	if (d->decoy != NULL) {
		sodium_memzero(d->decoy, strlen(d->decoy));
		free(d->decoy);
	}
	runtime_unref(d->rt);
	free(d);
}

/* ---- password verification ------------------------------------------------ */

static bool unusable(enum scheme_result r)
{
	return r == SCHEME_MALFORMED || r == SCHEME_UNKNOWN;
}

static enum scheme_result verify_against(const struct decision *d, const char *stored,
					 const char **error_r)
{
	const struct authhttp_request *r = &d->req;

	switch (r->method) {
	case AUTHHTTP_METHOD_APOP:
		return scheme_verify_apop(stored, d->default_scheme, r->salt, r->salt_len,
					  r->pass, r->pass_len, error_r);
	case AUTHHTTP_METHOD_CRAM_MD5:
		return scheme_verify_cram_md5(stored, d->default_scheme, r->salt, r->salt_len,
					      r->pass, r->pass_len, error_r);
	default:
		return scheme_verify(stored, d->default_scheme, r->pass, r->pass_len, error_r);
	}
}

/* Worker thread: reads only d->stored, d->decoy, d->default_scheme, d->req
   and the runtime's (immutable) dummy hash. */
static void verify_work(void *arg)
{
	struct decision *d = arg;
	const bool decoyed = d->unknown_user || d->no_password;
	const char *ignored;

	d->verify_error = NULL;
	d->verified = verify_against(d, d->stored, &d->verify_error);
	if (!unusable(d->verified) || AUTHHTTP_METHOD_HAS_SALT(d->req.method))
		return;
	/* A stored password that cannot be checked (a locked "!..." hash, an
	   unknown scheme, a broken decoy) answers no faster than a real one:
	   check the decoy, or failing that the dummy, and discard the result. */
	if (d->decoy == NULL || unusable(verify_against(d, d->decoy, &ignored)))
		(void)verify_against(d, d->rt->dummy_hash, &ignored);
	if (decoyed)
		d->verified = SCHEME_MISMATCH;  /* concluded as unknown/no password anyway */
}

/* ---- the backend ------------------------------------------------------------ */


/* The credentials for the chosen backend, d->target. */
static void respond_to_target(struct decision *d)
{
	const struct credentials *cred = &d->rt->cred;
	const struct authhttp_request *r = &d->req;
	const struct cred_login login = {
		.user = d->remote_user != NULL ? d->remote_user : r->user,
		.user_len = d->remote_user != NULL ? strlen(d->remote_user) : r->user_len,
		.pass = r->pass, .pass_len = r->pass_len,
		.session = d->session, .proto = r->proto,
		.rip = d->client.rip, .rport = d->client.rport,
		.tls = d->tls, .tls_protocol = d->tls_protocol,
		.audience = d->target.audience[0] != '\0' ? d->target.audience : NULL,
	};
	const char *why;

	if (credentials_respond(cred, &d->resp, d->target.addr.ip, d->target.addr.port_text,
				&login, &why) < 0) {
		authhttp_response_clear(&d->resp);
		outcome_error(d, "temp_fail", why, true);
		return;
	}
	outcome_ok(d, cred_mode_name(credentials_mode(cred, r->proto)));
}

/* "passdb host=NAME (IP) port=P: not in the imap pool" (no IP when host=
   was one), for [route] allow_hosts_outside_pools = no */
static void outside_pool_detail(const struct decision *d, const char *ip, char *out,
				size_t len)
{
	char host[96];

	if (strcmp(d->route_host, ip) != 0)
		snprintf(host, sizeof(host), "%.40s (%.46s)", d->route_host, ip);
	else
		snprintf(host, sizeof(host), "%.46s", ip);
	snprintf(out, len, "passdb host=%s%s%.8s: not in the %s pool", host,
		 d->route_port != NULL ? " port=" : "",
		 d->route_port != NULL ? d->route_port : "", dg_proto_name(d->req.proto));
}

/* A passdb's host (an IP literal by now) and port. */
static void use_address(struct decision *d, const char *ip)
{
	const char *port = d->route_port;
	size_t plen = port != NULL ? strlen(port) : 0;
	unsigned long n = plen > 0 && plen <= 5 && strspn(port, "0123456789") == plen ?
			  strtoul(port, NULL, 10) : 0;
	char detail[160];

	if (port != NULL && (n == 0 || n > 65535)) {
		snprintf(detail, sizeof(detail), "passdb port=%.64s is not a port", port);
		outcome_error(d, "bad_route", detail, true);
		return;
	}
	switch (routing_choice_for(d->rt->routing, d->req.proto, ip, (unsigned)n, &d->target)) {
	case 0:
		break;
	case ROUTING_OUTSIDE_POOL:
		outside_pool_detail(d, ip, detail, sizeof(detail));
		outcome_error(d, "bad_route", detail, true);
		return;
	default:
		snprintf(detail, sizeof(detail), "passdb host=%.64s is not usable", ip);
		outcome_error(d, "bad_route", detail, true);
		return;
	}
	respond_to_target(d);
}

static void on_resolved(void *ctx, const char *ip, const char *error)
{
	struct decision *d = ctx;
	char detail[160];

	if (ip != NULL) {
		use_address(d, ip);
	} else {
		snprintf(detail, sizeof(detail), "passdb host=%.64s: %s", d->route_host, error);
		outcome_error(d, "dns_failed", detail, true);
	}
	if (d->resolve_sync) {
		d->resolve_sync = false;        /* answered at once: the caller goes on */
		return;
	}
	d->resolving = false;
	finish(d);
}

/* passdb host=/port= decide first, like Dovecot's proxy fields (a name is
   resolved first: nginx takes IP literals only); otherwise the user's
   healthy backend in the protocol's pool. May finish asynchronously
   (d->resolving). */
static void respond_verified(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	const char *user = d->remote_user != NULL ? d->remote_user : r->user;
	char detail[64];

	if (d->route_host == NULL || d->route_host[0] == '\0') {   /* "host=": none */
		if (director_pick(d->rt->routing, r->proto, user, strlen(user), d->assigned,
				  &d->target, &d->director)) {
			if (d->director.assign == CLUSTER_ASSIGN_REPLACE)
				snprintf(d->previous, sizeof(d->previous), "%s", d->assigned);
			respond_to_target(d);
			return;
		}
		snprintf(detail, sizeof(detail), "no healthy %s backend", dg_proto_name(r->proto));
		outcome_error(d, "no_backend", detail, true);
		return;
	}
	if (client_addr_is_ip(d->route_host)) {
		use_address(d, d->route_host);
		return;
	}
	d->resolving = d->resolve_sync = true;
	routing_resolve(d->rt->routing, d->route_host, on_resolved, d);
	if (!d->resolve_sync)
		d->resolving = false;   /* on_resolved already ran */
	d->resolve_sync = false;
}

static time_t monotonic_seconds(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec;
}

/* The outcome of a verification, fresh or cached. */
static void conclude(struct decision *d)
{
	char detail[160];
	const char *why = d->verify_error != NULL ? d->verify_error : "unusable";

	if (d->unknown_user) {
		outcome_fail(d, "unknown_user", NULL);
		return;
	}
	if (d->no_password) {
		/* as Dovecot: an empty password field never matches */
		outcome_fail(d, "bad_password", "no password set");
		return;
	}
	if (d->locked) {
		/* whatever the password: the client learns nothing more than from
		   a wrong one, and the attempt counts */
		outcome_fail(d, "locked", "nologin");
		return;
	}
	switch (d->verified) {
	case SCHEME_OK:
		respond_verified(d);
		break;
	case SCHEME_MISMATCH:
		outcome_fail(d, "bad_password", NULL);
		break;
	case SCHEME_UNKNOWN:
		/* e.g. a SHA512-CRYPT user trying CRAM-MD5: the user's problem,
		   not a temporary one, so the client gets the usual answer */
		if (AUTHHTTP_METHOD_HAS_SALT(d->req.method)) {
			outcome_fail(d, "bad_scheme_for_method", why);
			break;
		}
		/* fall through */
	case SCHEME_MALFORMED:
	default:
		/* a locked ("!"-prefixed) or broken entry: answered and counted
		   like a wrong password, so it does not tell that the user exists;
		   the log line says what is wrong with it */
		snprintf(detail, sizeof(detail), "stored password: %s", why);
		outcome_fail(d, "unusable_password", detail);
		break;
	}
}

/* Only definite answers are cached; a broken stored password stays loud. */
static void remember(struct decision *d)
{
	if (d->cache_state == NULL || strcmp(d->cache_state, "miss") != 0)
		return;
	if (d->verified == SCHEME_OK || d->verified == SCHEME_MISMATCH)
		cache_put(d->rt->cache, d->cache_key, d->verified == SCHEME_OK,
			  monotonic_seconds());
}

/* Event loop thread. */
static void verify_done(void *arg)
{
	struct decision *d = arg;

	remember(d);
	conclude(d);
	finish(d);
}

/* The key covers everything the verification depends on, the stored
   password included: a users file reloaded with a new password (or a user
   now unknown, verified against the dummy) can never hit an old entry. */
static void make_cache_key(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	const char *parts[] = { r->method_name, r->user, r->pass, r->salt, d->stored };
	size_t lens[] = {
		r->method_name != NULL ? strlen(r->method_name) : 0, r->user_len,
		r->pass_len, r->salt_len, strlen(d->stored),
	};

	cache_key(d->rt->cache, parts, lens, 5, d->cache_key);
}

/* True when the cache answered (the decision is complete but not finished). */
static bool answer_from_cache(struct decision *d)
{
	enum cache_result hit;

	if (d->rt->cache == NULL) {
		d->cache_state = "off";
		return false;
	}
	make_cache_key(d);
	hit = cache_get(d->rt->cache, d->cache_key, monotonic_seconds());
	if (hit == CACHE_MISS) {
		d->cache_state = "miss";
		return false;
	}
	d->cache_state = "hit";
	d->verified = hit == CACHE_HIT_OK ? SCHEME_OK : SCHEME_MISMATCH;
	conclude(d);
	return true;
}

/* ---- the dovecot passdb ----------------------------------------------------- */

/* The service Dovecot's passdb conditions see for a direct login to its own
   imap-login, pop3-login and submission-login (nginx says "smtp"). */
static const char *dovecot_service(enum dg_proto proto)
{
	switch (proto) {
	case DG_PROTO_POP3: return "pop3";
	case DG_PROTO_SMTP: return "submission";
	default: return "imap";
	}
}

static int keep_string(char **field, const char *value)
{
	if (value == NULL)
		return 0;
	*field = strdup(value);
	return *field != NULL ? 0 : -1;
}

static int keep_port(char **field, int port)
{
	char text[16];

	snprintf(text, sizeof(text), "%d", port);
	return keep_string(field, text);
}

static void remote_done(void *ctx, const struct pdc_result *res)
{
	struct decision *d = ctx;
	char detail[160];

	switch (res->status) {
	case PDC_OK:
		if (keep_string(&d->remote_user, res->user) < 0 ||
		    keep_string(&d->route_host, res->host) < 0 ||
		    (res->port > 0 && keep_port(&d->route_port, res->port) < 0))
			outcome_error(d, "temp_fail", "out of memory", true);
		else if (res->nologin && !res->proxy)
			/* Dovecot would refuse the login itself, with reason= */
			outcome_fail(d, "nologin", res->reason);
		else {
			respond_verified(d);
		}
		break;
	case PDC_FAIL:
		/* Dovecot does not say whether the user exists */
		snprintf(detail, sizeof(detail), "dovecot auth: FAIL%s%s",
			 res->code != NULL ? " code=" : "", res->code != NULL ? res->code : "");
		outcome_fail(d, "bad_credentials", detail);
		break;
	case PDC_TEMP:
	default:
		outcome_error(d, "temp_fail", res->detail, true);
		break;
	}
	finish(d);
}

/* Only PLAIN can be forwarded: Dovecot checks APOP and CRAM-MD5 answers only
   against challenges it made itself, not nginx's. */
static void ask_dovecot(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	struct pdc_auth a = {
		.service = dovecot_service(r->proto), .rip = d->client.rip,
		.session = d->session, .secured = d->tls,
		.no_penalty = passdb_remote_no_penalty(d->rt->passdb),
		.user = r->user, .user_len = r->user_len,
		.pass = r->pass, .pass_len = r->pass_len,
	};

	if (r->method != AUTHHTTP_METHOD_PLAIN) {
		outcome_unsupported(d, "the dovecot passdb checks plain passwords only: "
				    "Dovecot accepts only its own apop/cram-md5 challenges");
		finish(d);
		return;
	}
	passdb_remote_auth(d->rt->passdb, &a, remote_done, d);
}

static void verify(struct decision *d, struct workers *workers)
{
	if (d->remote) {
		ask_dovecot(d);
		return;
	}
	d->default_scheme = passdb_default_scheme(d->rt->passdb);
	if (answer_from_cache(d)) {
		finish(d);
		return;
	}
	if (workers == NULL) {
		verify_work(d);
		verify_done(d);
		return;
	}
	if (workers_submit(workers, d, verify_work, verify_done) < 0) {
		outcome_error(d, "overloaded", "hash queue full", true);
		finish(d);
	}
}

/* ---- the checks, in order ------------------------------------------------- */

/* Returns true when an outcome was set (the decision is complete). */
static bool check_request(struct decision *d, const struct authhttp_pair *pairs,
			  size_t count)
{
	const struct runtime *rt = d->rt;
	const struct authhttp_request *r = &d->req;
	const char *why;

	if (!authhttp_secret_ok(pairs, count, rt->cfg.secret_header,
				rt->http_secret.data, rt->http_secret.len)) {
		outcome_error(d, "bad_secret", NULL, false);
		return true;
	}
	if (r->status == AUTHHTTP_BAD_REQUEST) {
		outcome_error(d, "bad_request", r->detail, false);
		return true;
	}
	if (r->method == AUTHHTTP_METHOD_OTHER) {
		outcome_unsupported(d, NULL);
		return true;
	}
	if (!credentials_method_ok(&rt->cred, r->proto, r->method, &why)) {
		outcome_unsupported(d, why);
		return true;
	}
	if (r->status == AUTHHTTP_BAD_CREDENTIALS) {
		outcome_fail(d, "bad_request", r->detail);
		return true;
	}
	if (!routing_serves(rt->routing, r->proto)) {
		outcome_error(d, "no_backend", "no backend configured for this protocol", true);
		return true;
	}
	return false;
}

/* The domain of Auth-SMTP-To ("RCPT TO:<user@Example.org>", or just the
   address), lower case, without a trailing dot, into out. False if none. */
static bool recipient_domain(const char *to, char *out, size_t outlen)
{
	const char *lt = to != NULL ? strchr(to, '<') : NULL;
	const char *start = lt != NULL ? lt + 1 : to, *at, *end;
	size_t len;

	if (start == NULL)
		return false;
	if (lt == NULL && strncasecmp(start, "RCPT TO:", 8) == 0)
		start += 8;
	end = start + strcspn(start, lt != NULL ? ">" : " ");
	at = memrchr(start, '@', (size_t)(end - start));
	if (at == NULL)
		return false;
	len = (size_t)(end - at - 1);
	if (len > 0 && at[len] == '.')
		len--;
	if (len == 0 || len >= outlen)
		return false;
	for (size_t i = 0; i < len; i++)
		out[i] = (char)tolower((unsigned char)at[1 + i]);
	out[len] = '\0';
	return true;
}

/* [relay] domains is kept as " a b " (config.c): look for " domain ". */
static bool relay_domain_listed(const struct dg_config *cfg, const char *domain)
{
	char needle[260];

	if (cfg->relay_domains == NULL || strpbrk(domain, " ") != NULL)
		return false;
	snprintf(needle, sizeof(needle), " %s ", domain);
	return strstr(cfg->relay_domains, needle) != NULL;
}

/* Auth-Method none (SMTP without AUTH): route by the recipient's domain to
   [relay] backend (else [backend] smtp); credentials untouched and any stale
   Auth-User/Auth-Pass ignored. nginx asks once, at the first RCPT TO: later
   recipients go straight to the backend, which must refuse relaying itself. */
static void route_only(struct decision *d)
{
	const struct dg_config *cfg = &d->rt->cfg;
	char domain[256];

	if (d->req.proto != DG_PROTO_SMTP) {
		outcome_error(d, "bad_request", "method none is only used for smtp", false);
		return;
	}
	if (!recipient_domain(d->req.smtp_to, domain, sizeof(domain)) ||
	    !relay_domain_listed(cfg, domain)) {
		d->result = "fail";
		d->reason = "relay_denied";
		set_detail(d, d->req.smtp_to != NULL ? d->req.smtp_to : "no Auth-SMTP-To");
		authhttp_response_relay_denied(&d->resp);
		return;
	}
	if (cfg->has_relay_backend) {
		d->target.addr = cfg->relay_backend;
	} else if (!routing_pick(d->rt->routing, DG_PROTO_SMTP, domain, strlen(domain),
				 &d->target)) {
		outcome_error(d, "no_backend", "no healthy smtp backend", true);
		return;
	}
	if (authhttp_response_ok(&d->resp, d->target.addr.ip, d->target.addr.port_text,
				 NULL, 0, NULL, 0) < 0) {
		authhttp_response_clear(&d->resp);
		outcome_error(d, "temp_fail", "out of memory", true);
		return;
	}
	outcome_ok(d, "none");
}

/* A decoy to verify against instead of a stored password: another user's
   (passdb_decoy), else rt->dummy_hash. False on ENOMEM. */
static bool use_decoy(struct decision *d)
{
	if (d->stored != NULL) {
		sodium_memzero(d->stored, strlen(d->stored));
		free(d->stored);
	}
	d->stored = d->decoy;
	d->decoy = NULL;
	if (d->stored == NULL)
		d->stored = strdup(d->rt->dummy_hash);
	return d->stored != NULL;
}

/* Returns true when an outcome was set; false when the password must be verified. */
static bool look_up_user(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	const char *why;

	if (!credentials_user_ok(&d->rt->cred, r->proto, r->user, r->user_len, &why)) {
		outcome_fail(d, "bad_request", why);
		return true;
	}
	passdb_refresh(d->rt->passdb, d->log);
	switch (passdb_lookup(d->rt->passdb, r->user, &d->stored)) {
	case PASSDB_UNAVAILABLE:
		outcome_error(d, "temp_fail", "users file not loaded", true);
		return true;
	case PASSDB_NOT_FOUND:
		/* verified anyway, against a decoy: same cost as a wrong password */
		d->unknown_user = true;
		d->decoy = passdb_decoy(d->rt->passdb, r->user);
		if (!use_decoy(d)) {
			outcome_error(d, "temp_fail", "out of memory", true);
			return true;
		}
		return false;
	case PASSDB_REMOTE:
		d->remote = true;
		return false;
	case PASSDB_FOUND:
		break;
	}
	d->locked = passdb_nologin(d->rt->passdb, r->user);
	d->decoy = passdb_decoy(d->rt->passdb, r->user);
	if (passdb_route(d->rt->passdb, r->user, &d->route_host, &d->route_port) < 0) {
		outcome_error(d, "temp_fail", "out of memory", true);
		return true;
	}
	if (d->stored[0] == '\0') {
		/* never matches, but costs as much as a wrong password */
		d->no_password = true;
		if (!use_decoy(d)) {
			outcome_error(d, "temp_fail", "out of memory", true);
			return true;
		}
	}
	return false;
}

/* ---- external: a verified client certificate, no password -------------- */

/* The certificate's user replaces Auth-User (the client's optional
   authorization id, which must then name the same user). */
static bool take_certificate_user(struct decision *d)
{
	struct authhttp_request *r = &d->req;
	const struct external_cert cert = {
		.pem = r->ssl_cert, .pem_len = r->ssl_cert_len,
		.subject = r->ssl_subject, .fingerprint = r->ssl_fingerprint,
	};
	char user[AUTHHTTP_USER_MAX + 1], *copy;
	const char *why;

	if (r->ssl_verify == NULL || strcmp(r->ssl_verify, "SUCCESS") != 0) {
		outcome_fail(d, "bad_certificate", r->ssl_verify != NULL ? r->ssl_verify :
			     "no verified client certificate (Auth-SSL-Verify)");
		return false;
	}
	if (external_user(d->rt->cfg.external_user_from, d->rt->external_map, &cert,
			  user, sizeof(user), &why) < 0) {
		outcome_fail(d, "bad_certificate", why);
		return false;
	}
	if (r->user != NULL && r->user_len > 0 &&
	    (r->user_len != strlen(user) || memcmp(r->user, user, r->user_len) != 0)) {
		outcome_fail(d, "authzid_mismatch", user);
		return false;
	}
	if ((copy = strdup(user)) == NULL) {
		outcome_error(d, "temp_fail", "out of memory", true);
		return false;
	}
	free(r->user);
	r->user = copy;
	r->user_len = strlen(copy);
	return true;
}

/* nginx verified the certificate; the user it names must exist. */
static void external_login(struct decision *d)
{
	const char *why;

	if (!take_certificate_user(d))
		return;
	if (!credentials_user_ok(&d->rt->cred, d->req.proto, d->req.user,
				 d->req.user_len, &why)) {
		outcome_fail(d, "bad_request", why);
		return;
	}
	passdb_refresh(d->rt->passdb, d->log);
	switch (passdb_lookup(d->rt->passdb, d->req.user, &d->stored)) {
	case PASSDB_FOUND:
		if (passdb_route(d->rt->passdb, d->req.user, &d->route_host, &d->route_port) < 0)
			outcome_error(d, "temp_fail", "out of memory", true);
		else
			respond_verified(d);
		return;
	case PASSDB_NOT_FOUND:
		outcome_fail(d, "unknown_user", "certificate user not in the passdb");
		return;
	case PASSDB_REMOTE:
		outcome_fail(d, "unknown_user", "certificate users must be in a users file");
		return;
	case PASSDB_UNAVAILABLE:
		outcome_error(d, "temp_fail", "users file not loaded", true);
		return;
	}
}

/* ---- client facts for tickets ---------------------------------------------- */

/* A header nginx sends at most once; NULL if absent or repeated. */
static const char *single_header(const struct authhttp_pair *pairs, size_t count,
				 const char *name)
{
	const char *found = NULL;

	for (size_t i = 0; i < count; i++) {
		if (strcasecmp(pairs[i].name, name) != 0)
			continue;
		if (found != NULL)
			return NULL;
		found = pairs[i].value;
	}
	return found;
}

/* The client's address: Client-IP, or Proxy-Protocol-Addr/-Port when
   Client-IP is a trusted load balancer (client_addr.h). */
static void read_client_facts(struct decision *d, const struct authhttp_pair *pairs,
			      size_t count)
{
	const struct dg_config *cfg = &d->rt->cfg;
	const char *ssl = single_header(pairs, count, "Auth-SSL");
	const char *tlsv = single_header(pairs, count, "Auth-SSL-Protocol");

	client_addr_choose(cfg->proxy_trusted, cfg->proxy_trusted_count, d->req.client_ip,
			   single_header(pairs, count, "Proxy-Protocol-Addr"),
			   single_header(pairs, count, "Proxy-Protocol-Port"), &d->client);
	d->tls = ssl != NULL && strcmp(ssl, "on") == 0;
	/* e.g. "TLSv1.3": a plain token or nothing */
	if (d->tls && tlsv != NULL && strlen(tlsv) < sizeof(d->tls_protocol) &&
	    strspn(tlsv, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") == strlen(tlsv))
		strcpy(d->tls_protocol, tlsv);
}

/* Verification, routing and credentials, once the policy step let it on. */
static void verify_login(void *arg)
{
	struct decision *d = arg;

	if (look_up_user(d))
		finish(d);
	else
		verify(d, d->workers);
}

/* The policy step (throttle.h): verify now, after a hold, or not at all. */
static void admit(struct decision *d)
{
	struct throttle *t = &d->throttle;
	char detail[96];

	switch (throttle_admit(t, d->rt->penalty, d->base, d->client.rip, d->req.user,
			       shared_facts(d), verify_login, d)) {
	case PENALTY_GO:
		verify_login(d);
		return;
	case PENALTY_HOLD:
		d->held = t->adm.hold;  /* verify_login runs when it is over */
		metrics_penalty_hold(t->adm.hold);
		return;
	case PENALTY_REFUSE:
		snprintf(detail, sizeof(detail), "%s score %u reached refuse_at: not verified",
			 t->adm.why, t->adm.score);
		outcome_error(d, "throttled", detail, true);
		break;
	case PENALTY_BUSY:
		snprintf(detail, sizeof(detail), "the network has max_pending logins in flight");
		outcome_error(d, "busy", detail, true);
		break;
	}
	set_wait(&d->resp, false, t->adm.hold);
	d->penalty_logged = true;
	d->penalty_score = t->adm.score;
	d->penalty_delay = t->adm.hold > 0 ? t->adm.hold : 1;
	finish(d);
}

/* The store answered (or failed, or timed out): on to the policy step. */
static void cluster_answered(void *ctx)
{
	struct decision *d = ctx;

	if (d->facts.answered) {
		d->cluster_state = "shared";
		if (cluster_assigns(d->rt->cluster))
			d->assigned = d->facts.assigned;
	}
	admit(d);
}

/* Facts from the cluster store first, when there is one: the network's
   and user's scores and the user's backend (cluster.h). */
static void admit_login(struct decision *d)
{
	struct cluster *c = d->rt->cluster;
	struct penalty_addr ip;

	if (!cluster_on(c)) {
		admit(d);
		return;
	}
	d->cluster_state = "local";     /* until the store answers */
	if (d->rt->penalty != NULL && d->client.rip[0] != '\0' &&
	    penalty_addr_parse(d->client.rip, &ip) == 0 && !penalty_trusted(d->rt->penalty, &ip))
		penalty_network_text(d->rt->penalty, &ip, d->net, sizeof(d->net));
	if (!cluster_lookup(c, d->net[0] != '\0' ? d->net : NULL, d->req.user,
			    d->req.user != NULL ? d->req.user_len : 0, &d->facts,
			    cluster_answered, d))
		admit(d);
}

void decision_run(const struct decision_env *env, const struct authhttp_pair *pairs,
		  size_t count, decision_reply_fn *reply, void *ctx)
{
	struct decision *d = calloc(1, sizeof(*d));
	struct authhttp_response oom;

	if (d == NULL) {
		memset(&oom, 0, sizeof(oom));
		dglog(env->log, LOG_ERR, "out of memory");
		reply(ctx, &oom);
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &d->start);
	d->rt = runtime_ref(env->rt);
	d->log = env->log;
	d->workers = env->workers;
	d->base = env->base;
	d->reply = reply;
	d->reply_ctx = ctx;
	session_id_new(d->session);
	authhttp_request_parse(&d->req, pairs, count);
	read_client_facts(d, pairs, count);

	/* facts -> policy -> verify -> route -> credentials -> respond */
	if (check_request(d, pairs, count))
		finish(d);
	else if (d->req.method == AUTHHTTP_METHOD_NONE) {
		route_only(d);
		finish(d);
	} else if (d->req.method == AUTHHTTP_METHOD_EXTERNAL) {
		external_login(d);
		finish(d);
	} else
		admit_login(d);
}
