/* dovegate login tickets: PASETO v4.public (Ed25519, libsodium) plus the
   claim rules shared by the signer (dovegate-auth), the verifier (Dovecot
   passdb module) and the CLI. JSON is built/parsed by the callers (jansson
   outside Dovecot, Dovecot's json parser inside); this file never parses JSON. */
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
   Returns the footer length (0 if none) or -1 if the token is malformed. */
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

/* ---- keys (PASERK text forms) ------------------------------------------- */

/* "k4.public.<b64url pk>" / "k4.secret.<b64url sk>"; parse returns false on
   anything else (and on a secret key whose public half does not match). */
bool paserk_k4_public_encode(const unsigned char pk[TICKET_PK_BYTES], char *out, size_t out_size);
bool paserk_k4_secret_encode(const unsigned char sk[TICKET_SK_BYTES], char *out, size_t out_size);
bool paserk_k4_public_decode(const char *text, unsigned char pk_out[TICKET_PK_BYTES]);
bool paserk_k4_secret_decode(const char *text, unsigned char sk_out[TICKET_SK_BYTES]);
/* "k4.pid.<...>" of a public key (PASERK id), e.g. as the default key id. */
bool paserk_k4_pid(const unsigned char pk[TICKET_PK_BYTES], char *out, size_t out_size);

bool ticket_kid_valid(const char *kid);

/* ---- claims ------------------------------------------------------------- */

/* The facts a ticket carries. Strings are NUL-terminated, "" when absent. */
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
	int64_t max_lifetime; /* exp - iat above this is refused */
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
	TICKET_REPLAY,
};
/* Stable short names for logs: "malformed", "unknown_key", "bad_signature",
   "expired", "not_yet_valid", "wrong_audience", "wrong_user",
   "wrong_service", "replay", "accepted". */
const char *ticket_refusal_name(enum ticket_refusal r);

/* Time and identity rules (signature already checked by the caller). */
enum ticket_refusal ticket_claims_check(const struct ticket_claims *c,
					const struct ticket_expect *e);

/* Cheap test used by the passdb module to decide "this password is a
   ticket, so it is my business": starts with "v4.public." */
bool ticket_looks_like_one(const char *password, size_t len);

#endif
