/* Key files for login tickets. libc + libsodium only: also compiled into the
   Dovecot passdb module (gnu99, no config.h).

   One format for both kinds of file, a text file of lines
       <kid> <PASERK>
   (blanks between; '#' starts a comment line; blank lines ignored):
   - key ring (public, for verifiers): any number of "<kid> k4.public.<...>"
     lines with distinct kids. `cat *.pub > ring` builds one.
   - signing key (secret, dovegate-auth only): exactly one
     "<kid> k4.secret.<...>" line; the file must not be accessible by group
     or others (chmod 600).
   Both are refused when another user could change or replace them
   (filetrust.h: owner, mode, and the directories above). */
#ifndef DOVEGATE_KEYRING_H
#define DOVEGATE_KEYRING_H

#include <stdbool.h>
#include <stddef.h>

#include "ticket.h"

#define KEYRING_FILE_MAX 65536   /* larger ring files are refused */

struct keyring;

/* NULL on error, with "PATH[:LINE]: why" in err. An empty ring is an error. */
struct keyring *keyring_load(const char *path, char *err, size_t errsize);
/* The public key for kid, or NULL. */
const unsigned char *keyring_find(const struct keyring *ring, const char *kid);
size_t keyring_count(const struct keyring *ring);
/* The i-th kid in file order (i < keyring_count()). */
const char *keyring_kid(const struct keyring *ring, size_t i);
void keyring_free(struct keyring *ring);

/* Picks the key named by the token's footer and verifies the signature.
   Returns TICKET_ACCEPTED (message copied to msg_out, NUL-terminated),
   TICKET_MALFORMED, TICKET_UNKNOWN_KEY or TICKET_BAD_SIGNATURE. kid_out
   gets the footer's kid when there is one ("" otherwise), for logs. */
enum ticket_refusal keyring_verify(const struct keyring *ring,
				   const char *token, size_t token_len,
				   char kid_out[TICKET_KID_MAX + 1],
				   unsigned char *msg_out, size_t msg_size,
				   size_t *msg_len_r);

/* Reads a signing key file. False with "PATH[:LINE]: why" in err. sk_out is
   wiped on failure; the caller wipes it after use (sodium_memzero). */
bool ticket_secret_key_load(const char *path, char kid_out[TICKET_KID_MAX + 1],
			    unsigned char sk_out[TICKET_SK_BYTES],
			    char *err, size_t errsize);

#endif
