/* dovegate login tickets: PASETO v4.public (Ed25519, libsodium) plus the
   claim rules shared by the signer (dovegate-auth), the verifier (Dovecot
   passdb module) and the CLI. JSON is built/parsed by ticket_json.c
   (jansson, on both sides); this file never parses JSON. */
#ifndef DOVEGATE_TICKET_H
#define DOVEGATE_TICKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TICKET_PK_BYTES 32          /* Ed25519 public key */
#define TICKET_SK_BYTES 64          /* Ed25519 secret key (libsodium layout) */
#define TICKET_KID_MAX 64           /* key id: [A-Za-z0-9._-], 1..64 chars */
#define TICKET_MAX_LEN 1024         /* longest token we sign or accept */
#define TICKET_MAX_SIZE_FOR_NGINX 640
#define TICKET_PASERK_PUBLIC_LEN 53 /* "k4.public." + 43, without the NUL */
#define TICKET_PASERK_SECRET_LEN 96 /* "k4.secret." + 86 */
#define TICKET_PASERK_PID_LEN 51    /* "k4.pid." + 44 */
#define TICKET_TIME_LEN 20          /* "2026-11-22T04:30:00Z", without the NUL */
#define TICKET_MAX_LIFETIME_DEFAULT 300 /* used when ticket_expect.max_lifetime <= 0 */

/* ---- PASETO v4.public --------------------------------------------------- */

/* Sign `msg` with footer and implicit assertion (both may be empty).
   Writes a NUL-terminated "v4.public.<b64url(msg||sig)>[.<b64url(footer)>]"
   into out. Returns its length, or -1 if out_size is too small. */
int paseto_v4_sign(const unsigned char sk[TICKET_SK_BYTES],
		   const unsigned char *msg, size_t msg_len,
		   const unsigned char *footer, size_t footer_len,
		   const unsigned char *implicit, size_t implicit_len,
		   char *out, size_t out_size);

/* Decode the (unauthenticated) footer of a token, e.g. to pick the key.
   Returns the footer length (0 if none) or -1 if the token is malformed or
   footer_size is not > that length (the footer is NUL-terminated). */
int paseto_v4_footer(const char *token, size_t token_len,
		     unsigned char *footer_out, size_t footer_size);

enum paseto_result {
	PASETO_OK = 0,
	PASETO_MALFORMED,      /* wrong header, bad base64url, too short/long */
	PASETO_BAD_SIGNATURE,
};
/* Verify; on success the message is copied to msg_out (NUL-terminated,
   *msg_len_r set). msg_size must be > the message length. */
enum paseto_result paseto_v4_verify(const unsigned char pk[TICKET_PK_BYTES],
				    const char *token, size_t token_len,
				    const unsigned char *implicit, size_t implicit_len,
				    unsigned char *msg_out, size_t msg_size,
				    size_t *msg_len_r);

/* The message WITHOUT verifying the signature (dovegate ticket inspect).
   NUL-terminated; returns its length, or -1 (malformed / msg_size too small). */
int paseto_v4_peek(const char *token, size_t token_len,
		   unsigned char *msg_out, size_t msg_size);

/* ---- keys (PASERK text forms) ------------------------------------------- */

/* "k4.public.<b64url pk>" / "k4.secret.<b64url sk>"; parse returns false on
   anything else (and on a secret key whose public half does not match). */
bool paserk_k4_public_encode(const unsigned char pk[TICKET_PK_BYTES], char *out, size_t out_size);
bool paserk_k4_secret_encode(const unsigned char sk[TICKET_SK_BYTES], char *out, size_t out_size);
bool paserk_k4_public_decode(const char *text, unsigned char pk_out[TICKET_PK_BYTES]);
bool paserk_k4_secret_decode(const char *text, unsigned char sk_out[TICKET_SK_BYTES]);
/* "k4.pid.<...>" of a public key (PASERK id), e.g. as the default key id. */
bool paserk_k4_pid(const unsigned char pk[TICKET_PK_BYTES], char *out, size_t out_size);

/* 1..64 of [A-Za-z0-9._-], starting with a letter or digit. */
bool ticket_kid_valid(const char *kid);

/* ---- dovegate tickets: footer, signing ---------------------------------- */

/* The footer is exactly {"kid":"<kid>"}. make returns its length or -1 (bad
   kid / no room); kid parses only that exact form (no JSON parser needed). */
int ticket_footer_make(const char *kid, char *out, size_t out_size);
bool ticket_footer_kid(const unsigned char *footer, size_t len,
		       char kid_out[TICKET_KID_MAX + 1]);

/* Sign claims (JSON bytes, see below) with the kid footer and no implicit
   assertion. Returns the token length or -1 (bad kid, no room, token over
   TICKET_MAX_LEN). */
int ticket_sign(const unsigned char sk[TICKET_SK_BYTES], const char *kid,
		const char *claims_json, size_t json_len, char *out, size_t out_size);

/* ---- times: RFC 3339 / ISO 8601 as PASETO's iat/exp ---------------------- */

/* Accepts YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) ('t'/'z' too); the
   fraction is dropped. Out-of-range fields (Feb 30, 24:00, :60) are refused. */
bool ticket_time_parse(const char *iso, int64_t *out);
/* Writes "YYYY-MM-DDTHH:MM:SSZ" (TICKET_TIME_LEN chars + NUL); false if
   out_size <= TICKET_TIME_LEN or the year is outside 0000-9999. */
bool ticket_time_format(int64_t t, char *out, size_t out_size);

/* ---- claims ------------------------------------------------------------- */

/* The facts a ticket carries. Strings are NUL-terminated, "" when absent.
   JSON claims (compact, only present ones, this order), e.g.
     {"sub":"alice","aud":"mx1","iat":"2026-11-22T04:30:00Z",
      "exp":"2026-11-22T04:31:00Z","jti":"<session id>","svc":"imap",
      "rip":"2001:db8::7","rport":51234,"tls":true,"tlsv":"TLSv1.3"}
   iat/exp: ticket_time_format() strings; rport: number 1..65535; tls:
   boolean (absent = false); tlsv: tls_protocol. Parsers must refuse
   duplicate names; unknown names are ignored. Required: sub aud iat exp jti
   svc (else TICKET_MALFORMED). */
struct ticket_claims {
	char sub[256];     /* user as nginx sends it to the backend */
	char aud[128];     /* backend identity */
	char jti[65];      /* session id (<= 64 chars, URL-safe) */
	char svc[8];       /* imap | pop3 | smtp */
	int64_t iat, exp;  /* unix seconds */
	char rip[64];      /* client address, "" when unknown */
	int rport;         /* client port, 0 when unknown */
	bool tls;          /* client connected to nginx with TLS */
	char tls_protocol[32]; /* "" when unknown */
};

struct ticket_expect {
	const char *aud;   /* this backend's identity (required) */
	const char *sub;   /* login user after normalisation (required) */
	const char *svc;   /* "imap" | "pop3" | "smtp" (Dovecot "submission" maps to smtp) */
	int64_t now;
	int64_t skew;      /* allowed clock difference in seconds */
	int64_t max_lifetime; /* exp - iat above this is refused
				 (<= 0: TICKET_MAX_LIFETIME_DEFAULT) */
};

enum ticket_refusal {
	TICKET_ACCEPTED = 0,
	TICKET_MALFORMED,
	TICKET_UNKNOWN_KEY,
	TICKET_BAD_SIGNATURE,
	TICKET_EXPIRED,
	TICKET_NOT_YET_VALID,
	TICKET_WRONG_AUDIENCE,
	TICKET_WRONG_USER,
	TICKET_WRONG_SERVICE,
	TICKET_REPLAY,         /* set by the caller's single-use cache */
	TICKET_LIFETIME_TOO_LONG, /* exp - iat > max_lifetime */
};
/* Stable short names for logs: "malformed", "unknown_key", "bad_signature",
   "expired", "not_yet_valid", "wrong_audience", "wrong_user",
   "wrong_service", "replay", "lifetime_too_long", "accepted". */
const char *ticket_refusal_name(enum ticket_refusal r);

/* Time and identity rules (signature already checked by the caller), in
   this order: required claims present, exp >= iat, jti 1..64 of
   [A-Za-z0-9_-] and rip "" or an IP address (else malformed); now >
   exp + skew (expired); iat > now + skew (not_yet_valid); exp - iat >
   max_lifetime; aud, sub, svc equal to the expected ones (NULL expected =
   refused; svc "submission" counts as "smtp"). Never returns REPLAY. */
enum ticket_refusal ticket_claims_check(const struct ticket_claims *c,
					const struct ticket_expect *e);

/* Cheap test used by the passdb module to decide "this password is a
   ticket, so it is my business": starts with "v4.public." */
bool ticket_looks_like_one(const char *password, size_t len);

#endif
