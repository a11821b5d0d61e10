/* Dovecot-compatible password schemes.

   Mirrors Dovecot 2.3 (src/auth/password-scheme*.c): a stored field is
   "{NAME[.ENC]}data"; ENC ("b64", "base64", "hex") overrides the scheme's
   default encoding, the data is decoded into raw bytes, then either the
   scheme's own verifier runs or, for unsalted schemes, the raw value is
   regenerated from the password and compared. */

/* CRAM-MD5 stores MD5's internal state after one HMAC pad block. Only
   OpenSSL's low-level MD5 API (deprecated in 3.0, still shipped) exposes
   that state; without this the declarations warn. */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include "schemes.h"

#include <crypt.h>
#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/md5.h>
#include <sodium.h>

enum encoding { ENC_NONE, ENC_BASE64, ENC_HEX };

/* Heap bytes that may hold secrets: NUL-terminated past len (crypt and
   libsodium want C strings), zeroed when freed. */
struct bytes {
	unsigned char *data;
	size_t len, cap;
};

struct scheme;
typedef enum scheme_result verify_fn(const struct scheme *s, const char *pw,
				     size_t pwlen, const struct bytes *raw,
				     const char **error_r);
typedef bool generate_fn(const struct scheme *s, const char *pw, size_t pwlen,
			 unsigned int rounds, struct bytes *out,
			 const char **error_r);

struct scheme {
	const char *name;
	enum encoding encoding;   /* default encoding of the stored data */
	size_t raw_len;           /* fixed decoded size, 0 = variable */
	verify_fn *verify;        /* NULL: regenerate and compare */
	generate_fn *generate;
	const EVP_MD *(*md)(void);  /* digest, for digest based schemes */
	const char *prefix;         /* crypt_gensalt prefix for *-CRYPT */
};

#define CRAM_MD5_CONTEXTLEN 32
#define SALT_CHARS "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
/* Dovecot's generation defaults (doveadm pw without -r). */
#define SHA_CRYPT_ROUNDS_DEFAULT 5000
#define BLF_ROUNDS_DEFAULT 5
#define BLF_ROUNDS_MIN 4
#define BLF_ROUNDS_MAX 31
#define PBKDF2_ROUNDS_DEFAULT 5000
#define PBKDF2_KEY_LEN 20
#define PBKDF2_SALT_LEN 16
#define SCRAM_ITER_DEFAULT 4096
#define SCRAM_ITER_MIN 4096
#define SCRAM_SALT_LEN 16
#define SALTED_DIGEST_SALT_LEN 8

/* ---- small helpers ------------------------------------------------------ */

static bool bytes_alloc(struct bytes *b, size_t len)
{
	b->data = malloc(len + 1);
	if (b->data == NULL)
		return false;
	b->len = len;
	b->cap = len + 1;
	b->data[len] = '\0';
	return true;
}

static bool bytes_copy(struct bytes *b, const void *src, size_t len)
{
	if (!bytes_alloc(b, len))
		return false;
	if (len > 0)
		memcpy(b->data, src, len);
	return true;
}

static void bytes_free(struct bytes *b)
{
	if (b->data != NULL) {
		sodium_memzero(b->data, b->cap);
		free(b->data);
	}
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Constant time for equal lengths; lengths themselves are not secret. */
static bool equal_ct(const void *a, size_t alen, const void *b, size_t blen)
{
	return alen == blen && (alen == 0 || sodium_memcmp(a, b, alen) == 0);
}

static bool hex_decode(const char *hex, size_t len, struct bytes *out)
{
	size_t n;

	if (!bytes_alloc(out, len / 2))
		return false;
	if (sodium_hex2bin(out->data, len / 2, hex, len, NULL, &n, NULL) != 0 ||
	    n * 2 != len) {
		bytes_free(out);
		return false;
	}
	return true;
}

/* Like Dovecot: padding required, embedded whitespace ignored. */
static bool base64_decode(const char *b64, size_t len, struct bytes *out)
{
	size_t n;

	if (!bytes_alloc(out, len / 4 * 3 + 3))
		return false;
	if (sodium_base642bin(out->data, out->len, b64, len, " \t\r\n", &n,
			      NULL, sodium_base64_VARIANT_ORIGINAL) != 0) {
		bytes_free(out);
		return false;
	}
	out->len = n;
	out->data[n] = '\0';
	return true;
}

static bool digest(const EVP_MD *md, const void *a, size_t alen,
		   const void *b, size_t blen, unsigned char *out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx != NULL &&
		EVP_DigestInit_ex(ctx, md, NULL) == 1 &&
		EVP_DigestUpdate(ctx, a, alen) == 1 &&
		(blen == 0 || EVP_DigestUpdate(ctx, b, blen) == 1) &&
		EVP_DigestFinal_ex(ctx, out, NULL) == 1;

	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Decimal like Dovecot's str_to_uint(): digits only, no sign, no overflow. */
static bool parse_uint(const char *s, size_t len, unsigned int *out)
{
	unsigned long long v = 0;

	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (unsigned int)(s[i] - '0');
		if (v > UINT_MAX)
			return false;
	}
	*out = (unsigned int)v;
	return true;
}

/* ---- crypt(3) family ---------------------------------------------------- */

static enum scheme_result crypt_compare(const char *pw, const char *setting,
					size_t setting_len, const char **error_r)
{
	struct crypt_data *cd = calloc(1, sizeof(*cd));
	enum scheme_result res;
	const char *out;

	if (cd == NULL) {
		*error_r = "out of memory";
		return SCHEME_MALFORMED;
	}
	out = crypt_rn(pw, setting, cd, (int)sizeof(*cd));
	if (out == NULL) {
		*error_r = "crypt() does not accept this hash";
		res = SCHEME_MALFORMED;
	} else {
		res = equal_ct(out, strlen(out), setting, setting_len) ?
			SCHEME_OK : SCHEME_MISMATCH;
	}
	sodium_memzero(cd, sizeof(*cd));
	free(cd);
	return res;
}

/* CRYPT, DES-, SHA256-, SHA512-CRYPT: Dovecot hands any setting to crypt(),
   so e.g. {SHA512-CRYPT}$1$... verifies too. An empty hash never matches. */
static enum scheme_result verify_crypt(const struct scheme *s, const char *pw,
				       size_t pwlen, const struct bytes *raw,
				       const char **error_r)
{
	if (raw->len == 0 || strlen((const char *)raw->data) != raw->len)
		return SCHEME_MISMATCH;
	return crypt_compare(pw, (const char *)raw->data, raw->len, error_r);
}

static enum scheme_result verify_blf_crypt(const struct scheme *s,
					   const char *pw, size_t pwlen,
					   const struct bytes *raw,
					   const char **error_r)
{
	const char *h = (const char *)raw->data;

	if (raw->len == 0)
		return SCHEME_MISMATCH;
	/* Dovecot's check: "$2?$" and at least the 30-char salt prefix. */
	if (raw->len < 7 + 22 + 1 || h[0] != '$' || h[1] != '2' ||
	    h[2] < 'a' || h[2] > 'z' || h[3] != '$') {
		*error_r = "not a blowfish hash";
		return SCHEME_MALFORMED;
	}
	return verify_crypt(s, pw, pwlen, raw, error_r);
}

static enum scheme_result verify_md5_crypt(const struct scheme *s,
					   const char *pw, size_t pwlen,
					   const struct bytes *raw,
					   const char **error_r)
{
	if (raw->len == 0)
		return SCHEME_MISMATCH;
	if (strncmp((const char *)raw->data, "$1$", 3) != 0) {
		*error_r = "not an MD5-CRYPT hash";
		return SCHEME_MALFORMED;
	}
	return verify_crypt(s, pw, pwlen, raw, error_r);
}

static bool gen_crypt(const struct scheme *s, const char *pw, size_t pwlen,
		      unsigned int rounds, struct bytes *out,
		      const char **error_r)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	unsigned long count = 0;
	const char *hash;
	bool ok;

	if (strcmp(s->prefix, "$2y$") == 0) {
		count = rounds == 0 ? BLF_ROUNDS_DEFAULT : rounds;
		count = count < BLF_ROUNDS_MIN ? BLF_ROUNDS_MIN :
			count > BLF_ROUNDS_MAX ? BLF_ROUNDS_MAX : count;
	} else if (s->prefix[0] == '$' && s->prefix[1] != '1') {
		/* SHA-crypt: 5000 is written without "rounds=". */
		count = rounds == 0 ? SHA_CRYPT_ROUNDS_DEFAULT : rounds;
	}
	if (crypt_gensalt_rn(s->prefix, count, NULL, 0, setting,
			     sizeof(setting)) == NULL) {
		*error_r = "crypt_gensalt() failed";
		return false;
	}
	if ((cd = calloc(1, sizeof(*cd))) == NULL) {
		*error_r = "out of memory";
		return false;
	}
	hash = crypt_rn(pw, setting, cd, (int)sizeof(*cd));
	ok = hash != NULL && bytes_copy(out, hash, strlen(hash));
	if (!ok)
		*error_r = "crypt() failed";
	sodium_memzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

/* ---- plain and unsalted digests ----------------------------------------- */

static bool gen_plain(const struct scheme *s, const char *pw, size_t pwlen,
		      unsigned int rounds, struct bytes *out,
		      const char **error_r)
{
	if (!bytes_copy(out, pw, pwlen)) {
		*error_r = "out of memory";
		return false;
	}
	return true;
}

static bool gen_digest(const struct scheme *s, const char *pw, size_t pwlen,
		       unsigned int rounds, struct bytes *out,
		       const char **error_r)
{
	const EVP_MD *md = s->md();

	if (!bytes_alloc(out, (size_t)EVP_MD_get_size(md)) ||
	    !digest(md, pw, pwlen, NULL, 0, out->data)) {
		bytes_free(out);
		*error_r = "digest failed";
		return false;
	}
	return true;
}

static enum scheme_result verify_regenerate(const struct scheme *s,
					    const char *pw, size_t pwlen,
					    const struct bytes *raw,
					    const char **error_r)
{
	struct bytes gen = { 0 };
	enum scheme_result res;

	if (!s->generate(s, pw, pwlen, 0, &gen, error_r))
		return SCHEME_MALFORMED;
	res = equal_ct(gen.data, gen.len, raw->data, raw->len) ?
		SCHEME_OK : SCHEME_MISMATCH;
	bytes_free(&gen);
	return res;
}

/* ---- salted digests: base64(digest(password || salt) || salt) ----------- */

static bool gen_salted(const struct scheme *s, const char *pw, size_t pwlen,
		       unsigned int rounds, struct bytes *out,
		       const char **error_r)
{
	const EVP_MD *md = s->md();
	size_t hlen = (size_t)EVP_MD_get_size(md);

	if (!bytes_alloc(out, hlen + SALTED_DIGEST_SALT_LEN)) {
		*error_r = "out of memory";
		return false;
	}
	randombytes_buf(out->data + hlen, SALTED_DIGEST_SALT_LEN);
	if (!digest(md, pw, pwlen, out->data + hlen, SALTED_DIGEST_SALT_LEN,
		    out->data)) {
		bytes_free(out);
		*error_r = "digest failed";
		return false;
	}
	return true;
}

static enum scheme_result verify_salted(const struct scheme *s,
					const char *pw, size_t pwlen,
					const struct bytes *raw,
					const char **error_r)
{
	const EVP_MD *md = s->md();
	size_t hlen = (size_t)EVP_MD_get_size(md);
	unsigned char d[EVP_MAX_MD_SIZE];
	enum scheme_result res;

	/* Dovecot requires a non-empty salt. */
	if (raw->len <= hlen) {
		*error_r = "salted hash is too short";
		return SCHEME_MALFORMED;
	}
	if (!digest(md, pw, pwlen, raw->data + hlen, raw->len - hlen, d)) {
		*error_r = "digest failed";
		return SCHEME_MALFORMED;
	}
	res = equal_ct(d, hlen, raw->data, hlen) ? SCHEME_OK : SCHEME_MISMATCH;
	sodium_memzero(d, sizeof(d));
	return res;
}

/* "MD5" is MD5-CRYPT when it looks like one, else PLAIN-MD5. */
static enum scheme_result verify_md5(const struct scheme *s, const char *pw,
				     size_t pwlen, const struct bytes *raw,
				     const char **error_r)
{
	struct scheme plain_md5 = { .md = EVP_md5, .generate = gen_digest };
	const char *h = (const char *)raw->data;
	struct bytes bin = { 0 };
	enum scheme_result res;
	bool ok;

	if (strncmp(h, "$1$", 3) == 0)
		return verify_crypt(s, pw, pwlen, raw, error_r);
	ok = raw->len == 2 * MD5_DIGEST_LENGTH ?
		hex_decode(h, raw->len, &bin) :
		base64_decode(h, raw->len, &bin);
	if (!ok || bin.len != MD5_DIGEST_LENGTH) {
		bytes_free(&bin);
		*error_r = "not a valid MD5-CRYPT or PLAIN-MD5 hash";
		return SCHEME_MALFORMED;
	}
	res = verify_regenerate(&plain_md5, pw, pwlen, &bin, error_r);
	bytes_free(&bin);
	return res;
}

/* ---- CRAM-MD5: MD5 states after the HMAC opad and ipad blocks ----------- */

static void md5_put_state(const MD5_CTX *c, unsigned char *p)
{
	const MD5_LONG v[4] = { c->A, c->B, c->C, c->D };

	for (size_t i = 0; i < 4; i++)
		for (size_t j = 0; j < 4; j++)
			*p++ = (unsigned char)(v[i] >> (8 * j));
}

static void md5_get_state(MD5_CTX *c, const unsigned char *p)
{
	MD5_LONG v[4];

	for (size_t i = 0; i < 4; i++, p += 4)
		v[i] = (MD5_LONG)p[0] | (MD5_LONG)p[1] << 8 |
			(MD5_LONG)p[2] << 16 | (MD5_LONG)p[3] << 24;
	MD5_Init(c);
	c->A = v[0]; c->B = v[1]; c->C = v[2]; c->D = v[3];
	c->Nl = 64 * 8;  /* one pad block already hashed */
}

/* Dovecot's hmac_md5_get_cram_context(): outer state, then inner state. */
static void cram_md5_context(const char *pw, size_t pwlen,
			     unsigned char out[CRAM_MD5_CONTEXTLEN])
{
	unsigned char key[64] = { 0 }, pad[64];
	MD5_CTX c;

	if (pwlen > sizeof(key))
		MD5((const unsigned char *)pw, pwlen, key);
	else if (pwlen > 0)
		memcpy(key, pw, pwlen);
	for (size_t i = 0; i < 64; i++)
		pad[i] = key[i] ^ 0x5c;
	MD5_Init(&c);
	MD5_Update(&c, pad, sizeof(pad));
	md5_put_state(&c, out);
	for (size_t i = 0; i < 64; i++)
		pad[i] = key[i] ^ 0x36;
	MD5_Init(&c);
	MD5_Update(&c, pad, sizeof(pad));
	md5_put_state(&c, out + 16);
	sodium_memzero(key, sizeof(key));
	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(&c, sizeof(c));
}

static bool gen_cram_md5(const struct scheme *s, const char *pw, size_t pwlen,
			 unsigned int rounds, struct bytes *out,
			 const char **error_r)
{
	if (!bytes_alloc(out, CRAM_MD5_CONTEXTLEN)) {
		*error_r = "out of memory";
		return false;
	}
	cram_md5_context(pw, pwlen, out->data);
	return true;
}

/* HMAC-MD5(key, msg) resumed from a stored context. */
static void cram_md5_hmac(const unsigned char ctx[CRAM_MD5_CONTEXTLEN],
			  const void *msg, size_t len,
			  unsigned char out[MD5_DIGEST_LENGTH])
{
	unsigned char inner[MD5_DIGEST_LENGTH];
	MD5_CTX c;

	md5_get_state(&c, ctx + 16);
	MD5_Update(&c, msg, len);
	MD5_Final(inner, &c);
	md5_get_state(&c, ctx);
	MD5_Update(&c, inner, sizeof(inner));
	MD5_Final(out, &c);
	sodium_memzero(&c, sizeof(c));
}

/* ---- PBKDF2: "$1$salt$rounds$hex(PBKDF2-HMAC-SHA1(pw, salt, rounds, 20))" */

static bool pbkdf2_sha1(const char *pw, size_t pwlen, const char *salt,
			size_t saltlen, unsigned int rounds,
			unsigned char key[PBKDF2_KEY_LEN])
{
	return rounds > 0 && rounds <= INT_MAX && pwlen <= INT_MAX &&
		saltlen <= INT_MAX &&
		PKCS5_PBKDF2_HMAC(pw, (int)pwlen,
				  (const unsigned char *)salt, (int)saltlen,
				  (int)rounds, EVP_sha1(), PBKDF2_KEY_LEN,
				  key) == 1;
}

static enum scheme_result verify_pbkdf2(const struct scheme *s,
					const char *pw, size_t pwlen,
					const struct bytes *raw,
					const char **error_r)
{
	const char *h = (const char *)raw->data, *salt, *r, *hex;
	unsigned char want[PBKDF2_KEY_LEN], got[PBKDF2_KEY_LEN];
	unsigned int rounds;
	size_t n;

	/* The salt is used as the literal string, not decoded. */
	if (raw->len < 3 || strncmp(h, "$1$", 3) != 0 ||
	    (r = strchr(salt = h + 3, '$')) == NULL ||
	    (hex = strchr(r + 1, '$')) == NULL || strchr(hex + 1, '$') != NULL ||
	    !parse_uint(r + 1, (size_t)(hex - r - 1), &rounds) || rounds == 0) {
		*error_r = "invalid PBKDF2 hash format";
		return SCHEME_MALFORMED;
	}
	hex++;
	if (strlen(hex) != 2 * PBKDF2_KEY_LEN ||
	    sodium_hex2bin(want, sizeof(want), hex, strlen(hex), NULL, &n,
			   NULL) != 0 || n != PBKDF2_KEY_LEN) {
		*error_r = "PBKDF2 hash is not 160-bit hex";
		return SCHEME_MALFORMED;
	}
	if (!pbkdf2_sha1(pw, pwlen, salt, (size_t)(r - salt), rounds, got)) {
		*error_r = "PBKDF2 failed";
		return SCHEME_MALFORMED;
	}
	return equal_ct(want, sizeof(want), got, sizeof(got)) ?
		SCHEME_OK : SCHEME_MISMATCH;
}

static void random_salt_chars(char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = SALT_CHARS[randombytes_uniform(sizeof(SALT_CHARS) - 1)];
	buf[len] = '\0';
}

static bool gen_pbkdf2(const struct scheme *s, const char *pw, size_t pwlen,
		       unsigned int rounds, struct bytes *out,
		       const char **error_r)
{
	char salt[PBKDF2_SALT_LEN + 1], hex[2 * PBKDF2_KEY_LEN + 1];
	unsigned char key[PBKDF2_KEY_LEN];
	char buf[3 + PBKDF2_SALT_LEN + 1 + 10 + 1 + sizeof(hex)];
	int n;

	if (rounds == 0)
		rounds = PBKDF2_ROUNDS_DEFAULT;
	random_salt_chars(salt, PBKDF2_SALT_LEN);
	if (!pbkdf2_sha1(pw, pwlen, salt, PBKDF2_SALT_LEN, rounds, key)) {
		*error_r = "PBKDF2 failed";
		return false;
	}
	sodium_bin2hex(hex, sizeof(hex), key, sizeof(key));
	n = snprintf(buf, sizeof(buf), "$1$%s$%u$%s", salt, rounds, hex);
	if (n < 0 || (size_t)n >= sizeof(buf) || !bytes_copy(out, buf, (size_t)n)) {
		*error_r = "out of memory";
		return false;
	}
	return true;
}

/* ---- SCRAM-SHA-1/-256 (RFC 5802): "iter,salt,StoredKey,ServerKey" ------- */

struct scram_keys {
	unsigned char stored[EVP_MAX_MD_SIZE], server[EVP_MAX_MD_SIZE];
};

static bool scram_compute(const EVP_MD *md, const char *pw, size_t pwlen,
			  const unsigned char *salt, size_t saltlen,
			  unsigned int iter, struct scram_keys *k)
{
	unsigned char salted[EVP_MAX_MD_SIZE], client[EVP_MAX_MD_SIZE];
	int hlen = EVP_MD_get_size(md);
	bool ok;

	ok = iter <= INT_MAX && pwlen <= INT_MAX && saltlen <= INT_MAX &&
		PKCS5_PBKDF2_HMAC(pw, (int)pwlen, salt, (int)saltlen,
				  (int)iter, md, hlen, salted) == 1 &&
		HMAC(md, salted, hlen, (const unsigned char *)"Client Key", 10,
		     client, NULL) != NULL &&
		HMAC(md, salted, hlen, (const unsigned char *)"Server Key", 10,
		     k->server, NULL) != NULL &&
		digest(md, client, (size_t)hlen, NULL, 0, k->stored);
	sodium_memzero(salted, sizeof(salted));
	sodium_memzero(client, sizeof(client));
	return ok;
}

static bool scram_b64_field(const char *p, size_t len, size_t want,
			    unsigned char *out)
{
	struct bytes b = { 0 };
	bool ok = base64_decode(p, len, &b) && (want == 0 || b.len == want);

	if (ok && want > 0)
		memcpy(out, b.data, want);
	bytes_free(&b);
	return ok;
}

static enum scheme_result verify_scram(const struct scheme *s, const char *pw,
				       size_t pwlen, const struct bytes *raw,
				       const char **error_r)
{
	const EVP_MD *md = s->md();
	size_t hlen = (size_t)EVP_MD_get_size(md);
	const char *f[4], *h = (const char *)raw->data, *end = h + raw->len;
	unsigned char stored[EVP_MAX_MD_SIZE], server[EVP_MAX_MD_SIZE];
	struct bytes salt = { 0 };
	struct scram_keys k;
	unsigned int iter;
	enum scheme_result res;
	size_t i = 0;

	f[0] = h;
	for (const char *p = h; p < end; p++) {
		if (*p == ',' && ++i < 4)
			f[i] = p + 1;
	}
	if (i != 3 || !parse_uint(f[0], (size_t)(f[1] - f[0] - 1), &iter) ||
	    iter < SCRAM_ITER_MIN || iter > INT_MAX ||
	    !scram_b64_field(f[2], (size_t)(f[3] - f[2] - 1), hlen, stored) ||
	    !scram_b64_field(f[3], (size_t)(end - f[3]), hlen, server) ||
	    !base64_decode(f[1], (size_t)(f[2] - f[1] - 1), &salt)) {
		*error_r = "invalid SCRAM hash format";
		return SCHEME_MALFORMED;
	}
	if (!scram_compute(md, pw, pwlen, salt.data, salt.len, iter, &k)) {
		*error_r = "SCRAM key derivation failed";
		res = SCHEME_MALFORMED;
	} else {
		res = equal_ct(k.stored, hlen, stored, hlen) ?
			SCHEME_OK : SCHEME_MISMATCH;
	}
	sodium_memzero(&k, sizeof(k));
	bytes_free(&salt);
	return res;
}

static bool gen_scram(const struct scheme *s, const char *pw, size_t pwlen,
		      unsigned int rounds, struct bytes *out,
		      const char **error_r)
{
	const EVP_MD *md = s->md();
	size_t hlen = (size_t)EVP_MD_get_size(md);
	unsigned char salt[SCRAM_SALT_LEN];
	char b64salt[sodium_base64_ENCODED_LEN(SCRAM_SALT_LEN, sodium_base64_VARIANT_ORIGINAL)];
	char b64st[sodium_base64_ENCODED_LEN(EVP_MAX_MD_SIZE, sodium_base64_VARIANT_ORIGINAL)];
	char b64sv[sizeof(b64st)];
	char buf[16 + sizeof(b64salt) + 2 * sizeof(b64st)];
	struct scram_keys k;
	int n;

	if (rounds == 0)
		rounds = SCRAM_ITER_DEFAULT;
	if (rounds < SCRAM_ITER_MIN)
		rounds = SCRAM_ITER_MIN;
	randombytes_buf(salt, sizeof(salt));
	if (!scram_compute(md, pw, pwlen, salt, sizeof(salt), rounds, &k)) {
		*error_r = "SCRAM key derivation failed";
		return false;
	}
	sodium_bin2base64(b64salt, sizeof(b64salt), salt, sizeof(salt),
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b64st, sizeof(b64st), k.stored, hlen,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(b64sv, sizeof(b64sv), k.server, hlen,
			  sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(&k, sizeof(k));
	n = snprintf(buf, sizeof(buf), "%u,%s,%s,%s", rounds, b64salt, b64st,
		     b64sv);
	if (n < 0 || (size_t)n >= sizeof(buf) || !bytes_copy(out, buf, (size_t)n)) {
		*error_r = "out of memory";
		return false;
	}
	return true;
}

/* ---- Argon2 (libsodium) ------------------------------------------------- */

/* Dovecot verifies ARGON2I and ARGON2ID alike with crypto_pwhash_str_verify(),
   so either name accepts either "$argon2i$" or "$argon2id$" data. */
static enum scheme_result verify_argon2(const struct scheme *s,
					const char *pw, size_t pwlen,
					const struct bytes *raw,
					const char **error_r)
{
	const char *h = (const char *)raw->data;

	/* needs_rehash() parses without hashing: -1 means unparsable. */
	if (strlen(h) != raw->len ||
	    crypto_pwhash_str_needs_rehash(h, crypto_pwhash_OPSLIMIT_INTERACTIVE,
					   crypto_pwhash_MEMLIMIT_INTERACTIVE) < 0) {
		*error_r = "not a valid Argon2 hash";
		return SCHEME_MALFORMED;
	}
	return crypto_pwhash_str_verify(h, pw, pwlen) == 0 ?
		SCHEME_OK : SCHEME_MISMATCH;
}

/* Dovecot's choice: rounds = opslimit, memory limit follows the rounds. */
static bool gen_argon2(const struct scheme *s, const char *pw, size_t pwlen,
		       unsigned int rounds, struct bytes *out,
		       const char **error_r)
{
	char str[crypto_pwhash_STRBYTES];
	unsigned long long ops = rounds;
	size_t mem;
	int ret;

	if (strcmp(s->name, "ARGON2ID") == 0) {
		if (ops == 0)
			ops = crypto_pwhash_argon2id_OPSLIMIT_INTERACTIVE;
		mem = ops >= crypto_pwhash_argon2id_OPSLIMIT_SENSITIVE ?
			crypto_pwhash_argon2id_MEMLIMIT_SENSITIVE :
			ops >= crypto_pwhash_argon2id_OPSLIMIT_MODERATE ?
			crypto_pwhash_argon2id_MEMLIMIT_MODERATE :
			crypto_pwhash_argon2id_MEMLIMIT_INTERACTIVE;
		if (ops < 3)  /* as Dovecot: older libsodium wanted t >= 3 */
			ops = 3;
		ret = crypto_pwhash_argon2id_str(str, pw, pwlen, ops, mem);
	} else {
		if (ops == 0)
			ops = crypto_pwhash_argon2i_OPSLIMIT_INTERACTIVE;
		mem = ops >= crypto_pwhash_argon2i_OPSLIMIT_SENSITIVE ?
			crypto_pwhash_argon2i_MEMLIMIT_SENSITIVE :
			ops >= crypto_pwhash_argon2i_OPSLIMIT_MODERATE ?
			crypto_pwhash_argon2i_MEMLIMIT_MODERATE :
			crypto_pwhash_argon2i_MEMLIMIT_INTERACTIVE;
		ret = crypto_pwhash_argon2i_str(str, pw, pwlen, ops, mem);
	}
	if (ret != 0 || !bytes_copy(out, str, strlen(str))) {
		*error_r = "Argon2 hashing failed (out of memory?)";
		return false;
	}
	return true;
}

/* ---- scheme table ------------------------------------------------------- */

static const struct scheme schemes[] = {
	{ "PLAIN", ENC_NONE, 0, NULL, gen_plain, NULL, NULL },
	{ "CLEAR", ENC_NONE, 0, NULL, gen_plain, NULL, NULL },
	{ "CLEARTEXT", ENC_NONE, 0, NULL, gen_plain, NULL, NULL },
	/* Dovecot generates blowfish for plain "CRYPT". */
	{ "CRYPT", ENC_NONE, 0, verify_crypt, gen_crypt, NULL, "$2y$" },
	{ "DES-CRYPT", ENC_NONE, 0, verify_crypt, gen_crypt, NULL, "" },
	{ "MD5-CRYPT", ENC_NONE, 0, verify_md5_crypt, gen_crypt, NULL, "$1$" },
	{ "MD5", ENC_NONE, 0, verify_md5, gen_crypt, NULL, "$1$" },
	{ "SHA256-CRYPT", ENC_NONE, 0, verify_crypt, gen_crypt, NULL, "$5$" },
	{ "SHA512-CRYPT", ENC_NONE, 0, verify_crypt, gen_crypt, NULL, "$6$" },
	{ "BLF-CRYPT", ENC_NONE, 0, verify_blf_crypt, gen_crypt, NULL, "$2y$" },
	{ "ARGON2I", ENC_NONE, 0, verify_argon2, gen_argon2, NULL, NULL },
	{ "ARGON2ID", ENC_NONE, 0, verify_argon2, gen_argon2, NULL, NULL },
	{ "SHA", ENC_BASE64, 20, NULL, gen_digest, EVP_sha1, NULL },
	{ "SHA1", ENC_BASE64, 20, NULL, gen_digest, EVP_sha1, NULL },
	{ "SHA256", ENC_BASE64, 32, NULL, gen_digest, EVP_sha256, NULL },
	{ "SHA512", ENC_BASE64, 64, NULL, gen_digest, EVP_sha512, NULL },
	{ "PLAIN-MD5", ENC_HEX, 16, NULL, gen_digest, EVP_md5, NULL },
	{ "LDAP-MD5", ENC_BASE64, 16, NULL, gen_digest, EVP_md5, NULL },
	{ "SMD5", ENC_BASE64, 0, verify_salted, gen_salted, EVP_md5, NULL },
	{ "SSHA", ENC_BASE64, 0, verify_salted, gen_salted, EVP_sha1, NULL },
	{ "SSHA256", ENC_BASE64, 0, verify_salted, gen_salted, EVP_sha256, NULL },
	{ "SSHA512", ENC_BASE64, 0, verify_salted, gen_salted, EVP_sha512, NULL },
	{ "PBKDF2", ENC_NONE, 0, verify_pbkdf2, gen_pbkdf2, NULL, NULL },
	{ "CRAM-MD5", ENC_HEX, CRAM_MD5_CONTEXTLEN, NULL, gen_cram_md5, NULL, NULL },
	{ "HMAC-MD5", ENC_HEX, CRAM_MD5_CONTEXTLEN, NULL, gen_cram_md5, NULL, NULL },
	{ "SCRAM-SHA-1", ENC_NONE, 0, verify_scram, gen_scram, EVP_sha1, NULL },
	{ "SCRAM-SHA-256", ENC_NONE, 0, verify_scram, gen_scram, EVP_sha256, NULL },
};

#define N_SCHEMES (sizeof(schemes) / sizeof(schemes[0]))

const char *const *scheme_names(void)
{
	/* Same order as schemes[]; the assertion catches a forgotten row. */
	static const char *const names[] = {
		"PLAIN", "CLEAR", "CLEARTEXT", "CRYPT", "DES-CRYPT", "MD5-CRYPT",
		"MD5", "SHA256-CRYPT", "SHA512-CRYPT", "BLF-CRYPT", "ARGON2I",
		"ARGON2ID", "SHA", "SHA1", "SHA256", "SHA512", "PLAIN-MD5",
		"LDAP-MD5", "SMD5", "SSHA", "SSHA256", "SSHA512", "PBKDF2",
		"CRAM-MD5", "HMAC-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256", NULL
	};
	_Static_assert(sizeof(names) / sizeof(names[0]) == N_SCHEMES + 1,
		       "scheme_names() and schemes[] differ");
	return names;
}

/* "NAME" or "NAME.ENC" (len bytes). NULL for an unknown name or encoding. */
static const struct scheme *lookup(const char *name, size_t len,
				   enum encoding *enc_r, bool *explicit_r)
{
	const char *dot = memchr(name, '.', len);
	size_t nlen = dot != NULL ? (size_t)(dot - name) : len;
	const struct scheme *s = NULL;

	for (size_t i = 0; i < N_SCHEMES && s == NULL; i++) {
		if (strlen(schemes[i].name) == nlen &&
		    strncasecmp(schemes[i].name, name, nlen) == 0)
			s = &schemes[i];
	}
	*explicit_r = dot != NULL;
	if (s == NULL || dot == NULL) {
		if (s != NULL)
			*enc_r = s->encoding;
		return s;
	}
	dot++;
	len -= nlen + 1;
	if ((len == 3 && strncasecmp(dot, "b64", 3) == 0) ||
	    (len == 6 && strncasecmp(dot, "base64", 6) == 0))
		*enc_r = ENC_BASE64;
	else if (len == 3 && strncasecmp(dot, "hex", 3) == 0)
		*enc_r = ENC_HEX;
	else
		return NULL;
	return s;
}

/* Dovecot's password_decode(): without an explicit encoding, fixed-size
   schemes guess hex when the length fits, falling back to base64. */
static enum scheme_result decode(const struct scheme *s, enum encoding enc,
				 bool explicit_enc, const char *data,
				 size_t len, struct bytes *raw,
				 const char **error_r)
{
	bool guessed = false;

	if (enc != ENC_NONE && s->raw_len != 0 && !explicit_enc) {
		enc = len == s->raw_len * 2 ? ENC_HEX : ENC_BASE64;
		guessed = true;
	}
	if (enc == ENC_NONE) {
		if (!bytes_copy(raw, data, len)) {
			*error_r = "out of memory";
			return SCHEME_MALFORMED;
		}
	} else if (enc == ENC_HEX && hex_decode(data, len, raw)) {
		/* decoded */
	} else if (enc == ENC_HEX && !guessed) {
		*error_r = "hash is not valid hex";
		return SCHEME_MALFORMED;
	} else if (!base64_decode(data, len, raw)) {
		*error_r = "hash is not valid base64";
		return SCHEME_MALFORMED;
	}
	if (s->raw_len != 0 && raw->len != s->raw_len) {
		bytes_free(raw);
		*error_r = "hash has the wrong length for its scheme";
		return SCHEME_MALFORMED;
	}
	return SCHEME_OK;
}

struct parsed {
	const struct scheme *scheme;
	struct bytes raw;
};

/* Dovecot's password_get_scheme() + password_decode(). */
static enum scheme_result parse_stored(const char *stored,
				       const char *default_scheme,
				       struct parsed *p, const char **error_r)
{
	const char *name = default_scheme != NULL ? default_scheme : "CRYPT";
	size_t name_len = strlen(name), data_len = strlen(stored);
	const char *data = stored, *end;
	enum encoding enc;
	bool explicit_enc;

	if (strncmp(stored, "$1$", 3) == 0 &&
	    (end = strchr(stored + 3, '$')) != NULL) {
		/* "$1$salt$hash[$ignored]" is MD5-CRYPT whatever the default */
		name = "MD5-CRYPT";
		name_len = strlen(name);
		if ((end = strchr(end + 1, '$')) != NULL)
			data_len = (size_t)(end - stored);
	} else if (stored[0] == '{' && (end = strchr(stored, '}')) != NULL) {
		name = stored + 1;
		name_len = (size_t)(end - name);
		data = end + 1;
		data_len = strlen(data);
	}
	p->scheme = lookup(name, name_len, &enc, &explicit_enc);
	if (p->scheme == NULL) {
		*error_r = "unknown password scheme";
		return SCHEME_UNKNOWN;
	}
	return decode(p->scheme, enc, explicit_enc, data, data_len, &p->raw,
		      error_r);
}

/* NUL-terminated copy; Dovecot passwords are C strings, so a NUL inside
   can never match anything Dovecot would accept. */
static bool password_copy(const char *password, size_t pwlen,
			  struct bytes *out, const char **error_r)
{
	if (password == NULL && pwlen > 0) {
		*error_r = "no password";
		return false;
	}
	if (pwlen > 0 && memchr(password, '\0', pwlen) != NULL) {
		*error_r = "password contains a NUL byte";
		return false;
	}
	if (!bytes_copy(out, password, pwlen)) {
		*error_r = "out of memory";
		return false;
	}
	return true;
}

static bool lib_init(const char **error_r)
{
	/* Idempotent and thread-safe; needed for randombytes and pwhash. */
	if (sodium_init() < 0) {
		*error_r = "libsodium initialisation failed";
		return false;
	}
	return true;
}

enum scheme_result scheme_verify(const char *stored, const char *default_scheme,
				 const char *password, size_t pwlen,
				 const char **error_r)
{
	const char *dummy;
	struct parsed p = { 0 };
	struct bytes pw = { 0 };
	enum scheme_result res;

	if (error_r == NULL)
		error_r = &dummy;
	if (stored == NULL) {
		*error_r = "no stored password";
		return SCHEME_MALFORMED;
	}
	if (!lib_init(error_r))
		return SCHEME_MALFORMED;
	res = parse_stored(stored, default_scheme, &p, error_r);
	if (res != SCHEME_OK)
		return res;
	if (!password_copy(password, pwlen, &pw, error_r)) {
		res = SCHEME_MISMATCH;
	} else {
		verify_fn *verify = p.scheme->verify != NULL ?
			p.scheme->verify : verify_regenerate;
		res = verify(p.scheme, (const char *)pw.data, pw.len, &p.raw,
			     error_r);
		if (res == SCHEME_MISMATCH)
			*error_r = "password mismatch";
	}
	bytes_free(&pw);
	bytes_free(&p.raw);
	return res;
}

/* "{NAME.ENC}" + encoded raw value. */
static char *encode_result(const char *scheme, enum encoding enc,
			   const struct bytes *raw, const char **error_r)
{
	size_t nlen = strlen(scheme), cap;
	char *out;

	cap = enc == ENC_BASE64 ?
		sodium_base64_ENCODED_LEN(raw->len, sodium_base64_VARIANT_ORIGINAL) :
		enc == ENC_HEX ? raw->len * 2 + 1 : raw->len + 1;
	if ((out = malloc(nlen + 2 + cap)) == NULL) {
		*error_r = "out of memory";
		return NULL;
	}
	out[0] = '{';
	for (size_t i = 0; i < nlen; i++)
		out[1 + i] = (char)toupper((unsigned char)scheme[i]);
	out[1 + nlen] = '}';
	if (enc == ENC_BASE64)
		sodium_bin2base64(out + nlen + 2, cap, raw->data, raw->len,
				  sodium_base64_VARIANT_ORIGINAL);
	else if (enc == ENC_HEX)
		sodium_bin2hex(out + nlen + 2, cap, raw->data, raw->len);
	else
		memcpy(out + nlen + 2, raw->data, raw->len + 1);
	return out;
}

char *scheme_hash_rounds(const char *scheme, unsigned int rounds,
			 const char *password, size_t pwlen,
			 const char **error_r)
{
	const char *dummy;
	const struct scheme *s;
	struct bytes pw = { 0 }, raw = { 0 };
	enum encoding enc;
	bool explicit_enc;
	char *out = NULL;

	if (error_r == NULL)
		error_r = &dummy;
	if (!lib_init(error_r))
		return NULL;
	s = scheme == NULL ? NULL :
		lookup(scheme, strlen(scheme), &enc, &explicit_enc);
	if (s == NULL) {
		*error_r = "unknown password scheme";
		return NULL;
	}
	if (password_copy(password, pwlen, &pw, error_r) &&
	    s->generate(s, (const char *)pw.data, pw.len, rounds, &raw,
			error_r))
		out = encode_result(scheme, enc, &raw, error_r);
	bytes_free(&raw);
	bytes_free(&pw);
	return out;
}

char *scheme_hash(const char *scheme, const char *password, size_t pwlen,
		  const char **error_r)
{
	return scheme_hash_rounds(scheme, 0, password, pwlen, error_r);
}

/* ---- challenge-response helpers ----------------------------------------- */

/* The client's hex digest (case-insensitive) as MD5_DIGEST_LENGTH bytes. */
static bool response_decode(const char *hex, size_t len,
			    unsigned char out[MD5_DIGEST_LENGTH])
{
	size_t n;

	return hex != NULL && len == 2 * MD5_DIGEST_LENGTH &&
		sodium_hex2bin(out, MD5_DIGEST_LENGTH, hex, len, NULL, &n,
			       NULL) == 0 && n == MD5_DIGEST_LENGTH;
}

static bool is_plaintext(const struct scheme *s)
{
	return s->generate == gen_plain;
}

enum scheme_result scheme_verify_cram_md5(const char *stored,
					  const char *default_scheme,
					  const char *challenge,
					  size_t challenge_len,
					  const char *response,
					  size_t response_len,
					  const char **error_r)
{
	const char *dummy;
	unsigned char ctx[CRAM_MD5_CONTEXTLEN], want[MD5_DIGEST_LENGTH];
	unsigned char got[MD5_DIGEST_LENGTH];
	struct parsed p = { 0 };
	enum scheme_result res;

	if (error_r == NULL)
		error_r = &dummy;
	if (stored == NULL || !lib_init(error_r))
		return SCHEME_MALFORMED;
	if ((res = parse_stored(stored, default_scheme, &p, error_r)) != SCHEME_OK)
		return res;
	if (p.scheme->generate == gen_cram_md5) {
		memcpy(ctx, p.raw.data, sizeof(ctx));
	} else if (is_plaintext(p.scheme)) {
		cram_md5_context((const char *)p.raw.data, p.raw.len, ctx);
	} else {
		bytes_free(&p.raw);
		*error_r = "scheme cannot serve CRAM-MD5 (needs PLAIN or CRAM-MD5)";
		return SCHEME_UNKNOWN;
	}
	bytes_free(&p.raw);
	cram_md5_hmac(ctx, challenge, challenge_len, want);
	res = response_decode(response, response_len, got) &&
		equal_ct(want, sizeof(want), got, sizeof(got)) ?
		SCHEME_OK : SCHEME_MISMATCH;
	if (res == SCHEME_MISMATCH)
		*error_r = "password mismatch";
	sodium_memzero(ctx, sizeof(ctx));
	sodium_memzero(want, sizeof(want));
	return res;
}

enum scheme_result scheme_verify_apop(const char *stored,
				      const char *default_scheme,
				      const char *challenge,
				      size_t challenge_len,
				      const char *response,
				      size_t response_len,
				      const char **error_r)
{
	const char *dummy;
	unsigned char want[MD5_DIGEST_LENGTH], got[MD5_DIGEST_LENGTH];
	struct parsed p = { 0 };
	enum scheme_result res;
	bool ok;

	if (error_r == NULL)
		error_r = &dummy;
	if (stored == NULL || !lib_init(error_r))
		return SCHEME_MALFORMED;
	if ((res = parse_stored(stored, default_scheme, &p, error_r)) != SCHEME_OK)
		return res;
	if (!is_plaintext(p.scheme)) {
		bytes_free(&p.raw);
		*error_r = "scheme cannot serve APOP (needs PLAIN)";
		return SCHEME_UNKNOWN;
	}
	ok = digest(EVP_md5(), challenge, challenge_len, p.raw.data, p.raw.len,
		    want);
	bytes_free(&p.raw);
	if (!ok) {
		*error_r = "digest failed";
		return SCHEME_MALFORMED;
	}
	res = response_decode(response, response_len, got) &&
		equal_ct(want, sizeof(want), got, sizeof(got)) ?
		SCHEME_OK : SCHEME_MISMATCH;
	if (res == SCHEME_MISMATCH)
		*error_r = "password mismatch";
	sodium_memzero(want, sizeof(want));
	return res;
}
