#include "decision.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "schemes.h"
#include "session.h"

struct decision {
	struct runtime *rt;
	struct dglog *log;
	decision_reply_fn *reply;
	void *reply_ctx;
	char session[SESSION_ID_LEN + 1];
	struct timespec start;
	struct authhttp_request req;
	/* client facts for a ticket, read while nginx's headers are at hand */
	char rip[INET6_ADDRSTRLEN];
	int rport;                      /* 0: unknown */
	bool tls;
	char tls_protocol[32];

	/* outcome */
	const char *result;             /* ok | fail | error */
	const char *reason;             /* NULL when ok */
	char detail[160];
	const struct backend *backend;  /* points into rt->cfg */
	const char *mode;               /* credentials used, for the log */
	struct authhttp_response resp;

	/* handed to a hash worker: written before submit, read back after */
	char *stored;
	const char *default_scheme;
	enum scheme_result verified;
	const char *verify_error;
};

static enum dg_proto reply_proto(const struct decision *d)
{
	/* without a known protocol, answer without SMTP codes */
	return d->req.has_proto ? d->req.proto : DG_PROTO_IMAP;
}

static void set_detail(struct decision *d, const char *detail)
{
	snprintf(d->detail, sizeof(d->detail), "%s", detail != NULL ? detail : "");
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

static void outcome_unsupported(struct decision *d)
{
	d->result = "error";
	d->reason = "unsupported_method";
	set_detail(d, NULL);
	authhttp_response_unsupported(&d->resp, reply_proto(d));
}

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

	kv_init(&kv, "decision");
	kv_add(&kv, "session", d->session);
	kv_add(&kv, "proto", r->has_proto ? dg_proto_name(r->proto) : NULL);
	kv_add(&kv, "method", r->method_name);
	if (r->user != NULL)
		kv_addn(&kv, "user", r->user, r->user_len);
	else
		kv_add(&kv, "user", r->user_raw);
	kv_add(&kv, "rip", r->client_ip);
	kv_add(&kv, "result", d->result);
	kv_add(&kv, "reason", d->reason);
	if (d->detail[0] != '\0')
		kv_add(&kv, "detail", d->detail);
	kv_add(&kv, "backend", ok ? d->backend->text : NULL);
	kv_add(&kv, "mode", ok ? d->mode : NULL);
	if (r->attempt != 0)
		kv_addf(&kv, "attempt", "%lu", r->attempt);
	else
		kv_add(&kv, "attempt", NULL);
	kv_addf(&kv, "duration_ms", "%.1f", elapsed_ms(&d->start));
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

static void finish(struct decision *d)
{
	check_response(d);
	log_decision(d);
	d->reply(d->reply_ctx, &d->resp);
	authhttp_response_clear(&d->resp);
	authhttp_request_clear(&d->req);
	if (d->stored != NULL) {
		sodium_memzero(d->stored, strlen(d->stored));
		free(d->stored);
	}
	runtime_unref(d->rt);
	free(d);
}

/* ---- password verification ------------------------------------------------ */

/* Worker thread: reads only d->stored, d->default_scheme, d->req.pass. */
static void verify_work(void *arg)
{
	struct decision *d = arg;

	d->verify_error = NULL;
	d->verified = scheme_verify(d->stored, d->default_scheme, d->req.pass,
				    d->req.pass_len, &d->verify_error);
}

static void respond_verified(struct decision *d)
{
	const struct credentials *cred = &d->rt->cred;
	const struct authhttp_request *r = &d->req;
	const struct cred_login login = {
		.user = r->user, .user_len = r->user_len,
		.pass = r->pass, .pass_len = r->pass_len,
		.session = d->session, .proto = r->proto,
		.rip = d->rip, .rport = d->rport,
		.tls = d->tls, .tls_protocol = d->tls_protocol,
	};
	const char *why;

	if (credentials_respond(cred, &d->resp, d->backend->ip, d->backend->port_text,
				&login, &why) < 0) {
		authhttp_response_clear(&d->resp);
		outcome_error(d, "temp_fail", why, true);
		return;
	}
	outcome_ok(d, cred_mode_name(cred->mode));
}

/* Event loop thread. */
static void verify_done(void *arg)
{
	struct decision *d = arg;
	char detail[160];

	switch (d->verified) {
	case SCHEME_OK:
		respond_verified(d);
		break;
	case SCHEME_MISMATCH:
		outcome_fail(d, "bad_password", NULL);
		break;
	case SCHEME_UNKNOWN:
	case SCHEME_MALFORMED:
	default:
		snprintf(detail, sizeof(detail), "stored password: %s",
			 d->verify_error != NULL ? d->verify_error : "unusable");
		outcome_error(d, "temp_fail", detail, true);
		break;
	}
	finish(d);
}

static void verify(struct decision *d, struct workers *workers)
{
	d->default_scheme = passdb_default_scheme(d->rt->passdb);
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
		outcome_unsupported(d);
		return true;
	}
	if (r->status == AUTHHTTP_BAD_CREDENTIALS) {
		outcome_fail(d, "bad_request", r->detail);
		return true;
	}
	if (!rt->cfg.has_backend[r->proto]) {
		outcome_error(d, "no_backend", "no backend configured for this protocol", true);
		return true;
	}
	d->backend = &rt->cfg.backend[r->proto];
	return false;
}

/* Auth-Method none (SMTP without AUTH): route only, credentials untouched. */
static void route_only(struct decision *d)
{
	if (d->req.proto != DG_PROTO_SMTP) {
		outcome_error(d, "bad_request", "method none is only used for smtp", false);
		return;
	}
	if (authhttp_response_ok(&d->resp, d->backend->ip, d->backend->port_text,
				 NULL, 0, NULL, 0) < 0) {
		authhttp_response_clear(&d->resp);
		outcome_error(d, "temp_fail", "out of memory", true);
		return;
	}
	outcome_ok(d, "none");
}

/* Returns true when an outcome was set; false when the password must be verified. */
static bool look_up_user(struct decision *d)
{
	const struct authhttp_request *r = &d->req;
	const char *why;

	if (!credentials_user_ok(&d->rt->cred, r->user, r->user_len, &why)) {
		outcome_fail(d, "bad_request", why);
		return true;
	}
	passdb_refresh(d->rt->passdb, d->log);
	switch (passdb_lookup(d->rt->passdb, r->user, &d->stored)) {
	case PASSDB_UNAVAILABLE:
		outcome_error(d, "temp_fail", "users file not loaded", true);
		return true;
	case PASSDB_NOT_FOUND:
		outcome_fail(d, "unknown_user", NULL);
		return true;
	case PASSDB_FOUND:
		break;
	}
	if (d->stored[0] == '\0') {
		/* as Dovecot: an empty password field never matches */
		outcome_fail(d, "bad_password", "no password set");
		return true;
	}
	return false;
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

static bool is_ip(const char *s)
{
	unsigned char bin[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, bin) == 1 || inet_pton(AF_INET6, s, bin) == 1;
}

/* Decimal 1..65535, else 0 (unknown). */
static int port_number(const char *s)
{
	size_t len = s != NULL ? strlen(s) : 0;
	long v;

	if (len == 0 || len > 5 || s[0] == '0' || strspn(s, "0123456789") != len)
		return 0;
	v = strtol(s, NULL, 10);
	return v <= 65535 ? (int)v : 0;
}

/* nginx has no Client-Port; the port is known only when a balancer in front
   of nginx sent PROXY, and then Proxy-Protocol-Addr is the client (Client-IP
   may be the balancer). */
static void read_client_facts(struct decision *d, const struct authhttp_pair *pairs,
			      size_t count)
{
	const char *addr = single_header(pairs, count, "Proxy-Protocol-Addr");
	const char *ssl = single_header(pairs, count, "Auth-SSL");
	const char *tlsv = single_header(pairs, count, "Auth-SSL-Protocol");

	if (addr != NULL && strlen(addr) < sizeof(d->rip) && is_ip(addr)) {
		strcpy(d->rip, addr);
		d->rport = port_number(single_header(pairs, count, "Proxy-Protocol-Port"));
	} else if (d->req.client_ip != NULL && strlen(d->req.client_ip) < sizeof(d->rip)) {
		strcpy(d->rip, d->req.client_ip);
	}
	d->tls = ssl != NULL && strcmp(ssl, "on") == 0;
	/* e.g. "TLSv1.3": a plain token or nothing */
	if (d->tls && tlsv != NULL && strlen(tlsv) < sizeof(d->tls_protocol) &&
	    strspn(tlsv, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
			 "0123456789._-") == strlen(tlsv))
		strcpy(d->tls_protocol, tlsv);
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
	d->reply = reply;
	d->reply_ctx = ctx;
	session_id_new(d->session);
	authhttp_request_parse(&d->req, pairs, count);
	read_client_facts(d, pairs, count);

	if (check_request(d, pairs, count))
		finish(d);
	else if (d->req.method == AUTHHTTP_METHOD_NONE) {
		route_only(d);
		finish(d);
	} else if (look_up_user(d))
		finish(d);
	else
		verify(d, env->workers);
}
