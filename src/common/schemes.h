/* Dovecot-compatible password schemes: verify and hash "{SCHEME}data" strings. */
#ifndef DOVEGATE_SCHEMES_H
#define DOVEGATE_SCHEMES_H

#include <stddef.h>

enum scheme_result {
	SCHEME_OK = 0,        /* password matches */
	SCHEME_MISMATCH,      /* well-formed hash, wrong password */
	SCHEME_UNKNOWN,       /* scheme name not supported */
	SCHEME_MALFORMED,     /* hash data cannot be parsed for its scheme */
};

/* Verify `password` (pwlen bytes, may not be NUL terminated) against a stored
   Dovecot password field such as "{SHA512-CRYPT}$6$..." or "{PLAIN}secret".
   A field without "{SCHEME}" prefix is taken as `default_scheme` (Dovecot's
   passwd-file default is "CRYPT"). Secrets are compared in constant time.
   On failure other than MISMATCH, *error_r (if not NULL) gets a static
   description that never contains secret material. */
enum scheme_result scheme_verify(const char *stored, const char *default_scheme,
				 const char *password, size_t pwlen,
				 const char **error_r);

/* Hash `password` with `scheme` (e.g. "SHA512-CRYPT", "ARGON2ID", "PLAIN").
   Returns a malloc()ed "{SCHEME}..." string, or NULL with *error_r set. */
char *scheme_hash(const char *scheme, const char *password, size_t pwlen,
		  const char **error_r);

/* scheme_hash() with a cost; 0 means Dovecot's default (doveadm pw -r):
   rounds for SHA256/SHA512-CRYPT (5000), PBKDF2 (5000) and SCRAM-* (4096),
   log2 cost for BLF-CRYPT and CRYPT (5), opslimit for ARGON2ID (3, 64 MiB)
   and ARGON2I (4, 32 MiB; memory grows with the opslimit like Dovecot's). */
char *scheme_hash_rounds(const char *scheme, unsigned int rounds,
			 const char *password, size_t pwlen,
			 const char **error_r);

/* CRAM-MD5 (RFC 2195): check the client's hex HMAC-MD5 `response` to
   `challenge` against a stored field holding the plaintext (PLAIN, CLEAR,
   CLEARTEXT, any encoding) or Dovecot's CRAM-MD5/HMAC-MD5 context.
   SCHEME_UNKNOWN also when the stored scheme cannot serve CRAM-MD5. */
enum scheme_result scheme_verify_cram_md5(const char *stored,
					  const char *default_scheme,
					  const char *challenge,
					  size_t challenge_len,
					  const char *response,
					  size_t response_len,
					  const char **error_r);

/* APOP (RFC 1939): `response` is hex MD5(challenge || password); only a
   plaintext scheme (PLAIN, CLEAR, CLEARTEXT) can serve it. */
enum scheme_result scheme_verify_apop(const char *stored,
				      const char *default_scheme,
				      const char *challenge,
				      size_t challenge_len,
				      const char *response,
				      size_t response_len,
				      const char **error_r);

/* NUL-terminated list of scheme names scheme_verify() understands. */
const char *const *scheme_names(void);

#endif
