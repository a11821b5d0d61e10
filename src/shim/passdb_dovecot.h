/* The `dovecot` passdb: dovegate-auth as a client of a Dovecot auth service
   (its auth-client protocol, version 1.2, over a UNIX or TCP socket).
   Facts: shared/notes/dovecot-auth-client-facts.md.

   This header has two layers:
   - pure protocol pieces (building AUTH lines, parsing server lines), with no
     sockets, so they are unit tested directly;
   - the client: one libevent bufferevent connection, handshake, pipelined
     requests with ids, reconnect with backoff, per-request timeouts. */
#ifndef DOVEGATE_SHIM_PASSDB_DOVECOT_H
#define DOVEGATE_SHIM_PASSDB_DOVECOT_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

/* Dovecot closes the connection on longer lines. */
#define PDC_MAX_LINE 16384

/* ---- protocol pieces -------------------------------------------------------- */

/* One PLAIN authentication request. Strings other than user/pass must not be
   NULL unless marked optional. */
struct pdc_auth {
	unsigned id;                    /* 1.., unique among outstanding requests */
	const char *service;            /* imap, pop3, submission */
	const char *rip;                /* optional: the real client address */
	const char *lip;                /* optional: the address nginx accepted on */
	const char *session;            /* optional: the decision's session id */
	bool secured;                   /* the client used TLS (Auth-SSL: on) */
	bool no_penalty;                /* skip Dovecot's per-rip penalty */
	const char *user;
	size_t user_len;
	const char *pass;               /* secret: only ever inside resp= */
	size_t pass_len;
};

/* "AUTH\t<id>\tPLAIN\t<params>\tresp=<base64>\n", parameter values
   tab-escaped, resp= last (Dovecot requires it). *line_r is malloc()ed and
   holds the password in base64: wipe it (sodium_memzero) before free().
   -1 on a NUL in user/pass, a line over PDC_MAX_LINE, or out of memory. */
int pdc_build_auth(const struct pdc_auth *a, char **line_r, size_t *len_r);

/* Dovecot's str_tabescape(): \001 -> \0011, TAB -> \001t, CR -> \001r,
   LF -> \001n. out must hold 2*len+1 bytes. Returns the escaped length. */
size_t pdc_tabescape(const char *in, size_t len, char *out);
/* In place; the result is never longer. Unknown \001x sequences yield x. */
void pdc_tabunescape(char *s);

enum pdc_line_kind {
	PDC_LINE_VERSION, PDC_LINE_MECH, PDC_LINE_SPID, PDC_LINE_CUID,
	PDC_LINE_COOKIE, PDC_LINE_DONE, PDC_LINE_OK, PDC_LINE_FAIL, PDC_LINE_CONT,
	PDC_LINE_OTHER,                 /* ignored, as Dovecot's own clients do */
	PDC_LINE_BAD,                   /* a reply line we cannot trust: reconnect */
};

/* What an OK/FAIL/CONT line says. Pointers go into the parsed line. */
struct pdc_reply {
	unsigned id;
	const char *user;               /* user= (Dovecot may rename); NULL: none */
	const char *host;               /* host= for routing; NULL: none */
	int port;                       /* port=, 1..65535; 0: none or invalid */
	const char *reason;             /* reason= for the client; NULL: none */
	const char *code;               /* FAIL code= (temp_fail, ...); NULL: none */
	bool nologin, proxy;
	bool temp_fail;                 /* FAIL with code=temp_fail (or bare temp) */
	const char *cont;               /* CONT: the server's base64 challenge */
	unsigned version_major, version_minor;  /* VERSION line */
};

/* Parses one line without its LF, in place (tab-unescapes the fields). */
enum pdc_line_kind pdc_parse_line(char *line, struct pdc_reply *r);

/* ---- the client --------------------------------------------------------------- */

struct event_base;
struct pdc_client;
struct pdc_request;

enum pdc_status {
	PDC_OK,                 /* password accepted */
	PDC_FAIL,               /* refused: Dovecot does not say whether the user
				   exists (FAIL carries user= either way) */
	PDC_TEMP,               /* not connected, timeout, code=temp_fail, ... */
};

/* Given to the done callback; strings valid only during the call. */
struct pdc_result {
	enum pdc_status status;
	const char *user;               /* OK/FAIL: user= if the server sent one */
	const char *host;
	int port;
	bool nologin, proxy;
	const char *reason;             /* Dovecot's reason= */
	const char *code;               /* FAIL code= */
	const char *detail;             /* for the decision log: why TEMP */
};

typedef void pdc_done_fn(void *ctx, const struct pdc_result *res);

/* spec: "unix:/path" or "tcp:IP:PORT" (IPv6 as [addr]:port). Connects at once
   and keeps reconnecting (0.1 s doubling to 5 s) while the socket is down. */
struct pdc_client *pdc_client_new(struct event_base *base, const char *spec,
				  unsigned timeout_s, struct dglog *log,
				  char *err, size_t errlen);
/* One more owner (a reloaded runtime keeps the connection). */
struct pdc_client *pdc_client_share(struct pdc_client *c, unsigned timeout_s);
/* Drops an owner. The last one closes the connection: outstanding requests
   complete with PDC_TEMP ("dovecot auth: shutting down"). */
void pdc_client_free(struct pdc_client *c);
const char *pdc_client_spec(const struct pdc_client *c);
bool pdc_client_ready(const struct pdc_client *c);

/* Sends a request (a->id is assigned here). done runs exactly once on the
   loop thread, possibly before this returns (not connected: PDC_TEMP). */
void pdc_client_auth(struct pdc_client *c, struct pdc_auth *a,
		     pdc_done_fn *done, void *ctx);

/* Checks a socket spec; used by the config parser. */
int pdc_spec_check(const char *spec, char *why, size_t whylen);

#endif
