/* libFuzzer: login tickets. Input starting with '{': claims JSON
   (ticket_claims_from_json, then signed with a fixed key and verified back
   through a key ring). Otherwise a token: paseto_v4_verify with the PASETO
   test-vector key, keyring_verify with a fixed ring, peek/footer, and the
   claims parser on whatever message verified or peeked. */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "keyring.h"
#include "ticket.h"
#include "ticket_json.h"

static struct keyring *ring;
static unsigned char sk[TICKET_SK_BYTES], pk[TICKET_PK_BYTES];
static unsigned char vector_pk[TICKET_PK_BYTES];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	unsigned char seed[crypto_sign_SEEDBYTES];
	char paserk[128], path[] = "/tmp/dg-fuzz-ring-XXXXXX", err[256];
	int fd;
	FILE *f;

	if (sodium_init() < 0)
		abort();
	memset(seed, 0x42, sizeof(seed));
	crypto_sign_seed_keypair(pk, sk, seed);
	/* PASETO v4 test vectors 4-S-*: public key */
	if (sodium_hex2bin(vector_pk, sizeof(vector_pk),
			   "1eb9dbbbbc047c03fd70604e0071f0987e16b28b757225c11f00415d0e20b1a2",
			   64, NULL, NULL, NULL) != 0)
		abort();
	if (!paserk_k4_public_encode(pk, paserk, sizeof(paserk)))
		abort();
	fd = mkstemp(path);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL)
		abort();
	fprintf(f, "# fuzz ring\nfuzz %s\n", paserk);
	fclose(f);
	ring = keyring_load(path, err, sizeof(err));
	unlink(path);
	if (ring == NULL) {
		fprintf(stderr, "keyring_load: %s\n", err);
		abort();
	}
	return 0;
}

static void claims(const char *json, size_t len)
{
	struct ticket_claims c;
	char err[256];
	memset(&c, 0, sizeof(c));
	if (!ticket_claims_from_json(json, len, &c, err, sizeof(err)))
		return;
	struct ticket_expect e = { .aud = "mx1", .sub = "alice", .svc = "imap",
				   .now = 1795000000, .skew = 30, .max_lifetime = 0 };
	(void)ticket_claims_check(&c, &e);
	char *back = ticket_claims_to_json(&c);
	if (back == NULL)
		return;
	/* sign and verify back through the ring */
	char token[TICKET_MAX_LEN + 1], kid[TICKET_KID_MAX + 1];
	unsigned char msg[TICKET_MAX_LEN + 1];
	size_t msg_len = 0;
	int n = ticket_sign(sk, "fuzz", back, strlen(back), token, sizeof(token));
	if (n > 0) {
		if (keyring_verify(ring, token, (size_t)n, kid, msg, sizeof(msg), &msg_len) != TICKET_ACCEPTED ||
		    msg_len != strlen(back) || memcmp(msg, back, msg_len) != 0)
			abort();   /* our own ticket must verify */
	}
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	unsigned char msg[4096], footer[4096];
	char kid[TICKET_KID_MAX + 1];
	size_t msg_len = 0;

	if (size > 4096)
		return 0;
	if (size > 0 && data[0] == '{') {
		claims(in, size);
		return 0;
	}
	char *tok = malloc(size + 1);   /* callers pass NUL-terminated passwords */
	if (tok == NULL)
		return 0;
	memcpy(tok, data, size);
	tok[size] = '\0';
	(void)ticket_looks_like_one(tok, size);
	if (paseto_v4_verify(vector_pk, tok, size, NULL, 0, msg, sizeof(msg), &msg_len) == PASETO_OK)
		claims((const char *)msg, msg_len);
	if (keyring_verify(ring, tok, size, kid, msg, sizeof(msg), &msg_len) == TICKET_ACCEPTED)
		claims((const char *)msg, msg_len);
	int flen = paseto_v4_footer(tok, size, footer, sizeof(footer));
	if (flen >= 0)
		(void)ticket_footer_kid(footer, (size_t)flen, kid);
	int mlen = paseto_v4_peek(tok, size, msg, sizeof(msg));
	if (mlen >= 0)
		claims((const char *)msg, (size_t)mlen);
	int64_t t;
	(void)ticket_time_parse(tok, &t);
	(void)ticket_kid_valid(tok);
	{
		unsigned char k[TICKET_SK_BYTES];
		(void)paserk_k4_public_decode(tok, k);
		(void)paserk_k4_secret_decode(tok, k);
	}
	free(tok);
	return 0;
}
