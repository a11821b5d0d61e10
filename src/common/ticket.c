/* PASETO v4.public, PASERK k4 key forms and the claim rules (ticket.h).
   libc + libsodium only: this file is also compiled into the Dovecot passdb
   module with Dovecot's gnu99 flags, so no config.h and no C11-only syntax. */
#include "ticket.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define V4_PUBLIC "v4.public."
#define V4_PUBLIC_LEN (sizeof(V4_PUBLIC) - 1)
#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
#define SIG_BYTES crypto_sign_BYTES
/* Each PAE piece is bounded by TICKET_MAX_LEN, so PAE fits on the stack. */
#define PAE_MAX (8 + (8 + V4_PUBLIC_LEN) + 3 * (8 + TICKET_MAX_LEN))

/* ---- PASETO v4.public --------------------------------------------------- */

/* PASETO's LE64: little-endian, top bit cleared. */
static void le64(unsigned char *out, uint64_t n)
{
	for (int i = 0; i < 8; i++) {
		out[i] = (unsigned char)(n & 0xff);
		n >>= 8;
	}
	out[7] &= 0x7f;
}

struct piece {
	const unsigned char *data;
	size_t len;
};

/* Pre-Authentication Encoding of the four pieces v4.public signs. Returns
   its length, or 0 if a piece exceeds TICKET_MAX_LEN. */
static size_t pae(unsigned char out[PAE_MAX], const struct piece p[4])
{
	size_t pos = 8;

	le64(out, 4);
	for (int i = 0; i < 4; i++) {
		if (p[i].len > TICKET_MAX_LEN)
			return 0;
		le64(out + pos, p[i].len);
		if (p[i].len > 0)
			memcpy(out + pos + 8, p[i].data, p[i].len);
		pos += 8 + p[i].len;
	}
	return pos;
}

static size_t pae_v4_public(unsigned char out[PAE_MAX],
			    const unsigned char *msg, size_t msg_len,
			    const unsigned char *footer, size_t footer_len,
			    const unsigned char *implicit, size_t implicit_len)
{
	struct piece p[4];

	p[0].data = (const unsigned char *)V4_PUBLIC;
	p[0].len = V4_PUBLIC_LEN;
	p[1].data = msg;
	p[1].len = msg_len;
	p[2].data = footer;
	p[2].len = footer_len;
	p[3].data = implicit;
	p[3].len = implicit_len;
	return pae(out, p);
}

/* Appends b64url(bin) at out + *pos; false if it does not fit. */
static bool append_b64(char *out, size_t out_size, size_t *pos,
		       const unsigned char *bin, size_t bin_len)
{
	size_t need = sodium_base64_ENCODED_LEN(bin_len, B64);

	if (out_size - *pos < need)
		return false;
	sodium_bin2base64(out + *pos, need, bin, bin_len, B64);
	*pos += need - 1;
	return true;
}

int paseto_v4_sign(const unsigned char sk[TICKET_SK_BYTES],
		   const unsigned char *msg, size_t msg_len,
		   const unsigned char *footer, size_t footer_len,
		   const unsigned char *implicit, size_t implicit_len,
		   char *out, size_t out_size)
{
	unsigned char buf[PAE_MAX], body[TICKET_MAX_LEN + SIG_BYTES];
	size_t buf_len, pos = V4_PUBLIC_LEN;

	buf_len = pae_v4_public(buf, msg, msg_len, footer, footer_len,
				implicit, implicit_len);
	if (buf_len == 0 || out_size <= V4_PUBLIC_LEN)
		return -1;
	if (msg_len > 0)
		memcpy(body, msg, msg_len);
	crypto_sign_detached(body + msg_len, NULL, buf, buf_len, sk);
	memcpy(out, V4_PUBLIC, V4_PUBLIC_LEN);
	if (!append_b64(out, out_size, &pos, body, msg_len + SIG_BYTES))
		return -1;
	if (footer_len > 0) {
		if (out_size - pos < 2)
			return -1;
		out[pos++] = '.';
		if (!append_b64(out, out_size, &pos, footer, footer_len))
			return -1;
	}
	return pos <= TICKET_MAX_LEN ? (int)pos : -1;
}

/* The base64url parts of a token: body (message + signature) and footer. */
struct token_parts {
	const char *body, *footer;
	size_t body_len, footer_len;
};

static bool split_token(const char *token, size_t token_len, struct token_parts *t)
{
	const char *dot;

	if (token_len > TICKET_MAX_LEN || token_len < V4_PUBLIC_LEN ||
	    memcmp(token, V4_PUBLIC, V4_PUBLIC_LEN) != 0)
		return false;
	t->body = token + V4_PUBLIC_LEN;
	dot = memchr(t->body, '.', token_len - V4_PUBLIC_LEN);
	if (dot == NULL) {
		t->body_len = token_len - V4_PUBLIC_LEN;
		t->footer = dot;
		t->footer_len = 0;
		return true;
	}
	t->body_len = (size_t)(dot - t->body);
	t->footer = dot + 1;
	t->footer_len = token_len - V4_PUBLIC_LEN - t->body_len - 1;
	/* "v4.public.<body>." with an empty footer is not a canonical token */
	return t->footer_len > 0;
}

/* Strict, canonical base64url (libsodium refuses padding, stray characters
   and non-zero trailing bits). Returns the length or -1. */
static int b64_decode(unsigned char *out, size_t out_size, const char *b64, size_t len)
{
	size_t bin_len;

	if (sodium_base642bin(out, out_size, b64, len, NULL, &bin_len, NULL, B64) != 0)
		return -1;
	return (int)bin_len;
}

int paseto_v4_footer(const char *token, size_t token_len,
		     unsigned char *footer_out, size_t footer_size)
{
	struct token_parts t;
	int len;

	if (!split_token(token, token_len, &t) || footer_size == 0)
		return -1;
	len = t.footer_len == 0 ? 0 :
		b64_decode(footer_out, footer_size - 1, t.footer, t.footer_len);
	if (len >= 0)
		footer_out[len] = '\0';
	return len;
}

/* Decodes the body into message + signature; msg_len_r excludes the
   signature. */
static bool decode_body(const struct token_parts *t,
			unsigned char body[TICKET_MAX_LEN], size_t *msg_len_r)
{
	int len = b64_decode(body, TICKET_MAX_LEN, t->body, t->body_len);

	if (len < (int)SIG_BYTES)
		return false;
	*msg_len_r = (size_t)len - SIG_BYTES;
	return true;
}

static bool copy_message(const unsigned char *msg, size_t msg_len,
			 unsigned char *msg_out, size_t msg_size, size_t *msg_len_r)
{
	if (msg_size <= msg_len)
		return false;
	memcpy(msg_out, msg, msg_len);
	msg_out[msg_len] = '\0';
	if (msg_len_r != NULL)
		*msg_len_r = msg_len;
	return true;
}

enum paseto_result paseto_v4_verify(const unsigned char pk[TICKET_PK_BYTES],
				    const char *token, size_t token_len,
				    const unsigned char *implicit, size_t implicit_len,
				    unsigned char *msg_out, size_t msg_size,
				    size_t *msg_len_r)
{
	unsigned char body[TICKET_MAX_LEN], footer[TICKET_MAX_LEN], buf[PAE_MAX];
	struct token_parts t;
	size_t msg_len, buf_len;
	int footer_len = 0;

	if (!split_token(token, token_len, &t) || !decode_body(&t, body, &msg_len))
		return PASETO_MALFORMED;
	if (t.footer_len > 0 &&
	    (footer_len = b64_decode(footer, sizeof(footer), t.footer, t.footer_len)) < 0)
		return PASETO_MALFORMED;
	buf_len = pae_v4_public(buf, body, msg_len, footer, (size_t)footer_len,
				implicit, implicit_len);
	if (buf_len == 0)
		return PASETO_MALFORMED;
	if (crypto_sign_verify_detached(body + msg_len, buf, buf_len, pk) != 0)
		return PASETO_BAD_SIGNATURE;
	if (!copy_message(body, msg_len, msg_out, msg_size, msg_len_r))
		return PASETO_MALFORMED;
	return PASETO_OK;
}

int paseto_v4_peek(const char *token, size_t token_len,
		   unsigned char *msg_out, size_t msg_size)
{
	unsigned char body[TICKET_MAX_LEN];
	struct token_parts t;
	size_t msg_len;

	if (!split_token(token, token_len, &t) || !decode_body(&t, body, &msg_len) ||
	    !copy_message(body, msg_len, msg_out, msg_size, NULL))
		return -1;
	return (int)msg_len;
}

/* ---- PASERK k4 ---------------------------------------------------------- */

static bool paserk_encode(const char *prefix, const unsigned char *key, size_t key_len,
			  char *out, size_t out_size)
{
	size_t pos = strlen(prefix);

	if (out_size <= pos)
		return false;
	memcpy(out, prefix, pos);
	return append_b64(out, out_size, &pos, key, key_len);
}

/* Exactly prefix + canonical base64url of key_len bytes. */
static bool paserk_decode(const char *prefix, const char *text,
			  unsigned char *key_out, size_t key_len)
{
	unsigned char buf[TICKET_SK_BYTES + 1];
	size_t plen = strlen(prefix);
	int len;

	if (strncmp(text, prefix, plen) != 0)
		return false;
	len = b64_decode(buf, sizeof(buf), text + plen, strlen(text + plen));
	if (len != (int)key_len) {
		sodium_memzero(buf, sizeof(buf));
		return false;
	}
	memcpy(key_out, buf, key_len);
	sodium_memzero(buf, sizeof(buf));
	return true;
}

bool paserk_k4_public_encode(const unsigned char pk[TICKET_PK_BYTES], char *out, size_t out_size)
{
	return paserk_encode("k4.public.", pk, TICKET_PK_BYTES, out, out_size);
}

bool paserk_k4_secret_encode(const unsigned char sk[TICKET_SK_BYTES], char *out, size_t out_size)
{
	return paserk_encode("k4.secret.", sk, TICKET_SK_BYTES, out, out_size);
}

bool paserk_k4_public_decode(const char *text, unsigned char pk_out[TICKET_PK_BYTES])
{
	return paserk_decode("k4.public.", text, pk_out, TICKET_PK_BYTES);
}

/* The public half stored in a libsodium secret key must be the one its seed
   derives, or signatures would not verify under the published key. */
static bool secret_key_consistent(const unsigned char sk[TICKET_SK_BYTES])
{
	unsigned char pk[TICKET_PK_BYTES], sk2[TICKET_SK_BYTES];
	bool ok;

	crypto_sign_seed_keypair(pk, sk2, sk);
	ok = sodium_memcmp(pk, sk + crypto_sign_SEEDBYTES, TICKET_PK_BYTES) == 0;
	sodium_memzero(sk2, sizeof(sk2));
	return ok;
}

bool paserk_k4_secret_decode(const char *text, unsigned char sk_out[TICKET_SK_BYTES])
{
	if (!paserk_decode("k4.secret.", text, sk_out, TICKET_SK_BYTES))
		return false;
	if (secret_key_consistent(sk_out))
		return true;
	sodium_memzero(sk_out, TICKET_SK_BYTES);
	return false;
}

/* PASERK id: "k4.pid." + b64url(BLAKE2b-264("k4.pid." || k4.public text)). */
bool paserk_k4_pid(const unsigned char pk[TICKET_PK_BYTES], char *out, size_t out_size)
{
	static const char h[] = "k4.pid.";
	char text[TICKET_PASERK_PUBLIC_LEN + 1];
	unsigned char hash[33];
	crypto_generichash_state st;

	if (!paserk_k4_public_encode(pk, text, sizeof(text)))
		return false;
	crypto_generichash_init(&st, NULL, 0, sizeof(hash));
	crypto_generichash_update(&st, (const unsigned char *)h, sizeof(h) - 1);
	crypto_generichash_update(&st, (const unsigned char *)text, strlen(text));
	crypto_generichash_final(&st, hash, sizeof(hash));
	return paserk_encode(h, hash, sizeof(hash), out, out_size);
}

static bool is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Starts with a letter or digit, so a key id is never a hidden file name
   or an option when keygen turns it into ID.key/ID.pub. */
bool ticket_kid_valid(const char *kid)
{
	size_t len = strlen(kid);

	if (len == 0 || len > TICKET_KID_MAX || !is_alnum(kid[0]))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (!is_alnum(kid[i]) && kid[i] != '.' && kid[i] != '_' && kid[i] != '-')
			return false;
	}
	return true;
}

/* ---- footer and signing ------------------------------------------------- */

#define FOOTER_HEAD "{\"kid\":\""
#define FOOTER_TAIL "\"}"

int ticket_footer_make(const char *kid, char *out, size_t out_size)
{
	int len;

	if (!ticket_kid_valid(kid))
		return -1;
	len = snprintf(out, out_size, FOOTER_HEAD "%s" FOOTER_TAIL, kid);
	return len > 0 && (size_t)len < out_size ? len : -1;
}

/* Only the exact form ticket_footer_make() writes (kid characters never need
   JSON escapes), so no JSON parser is needed to pick the key. */
bool ticket_footer_kid(const unsigned char *footer, size_t len,
		       char kid_out[TICKET_KID_MAX + 1])
{
	size_t head = sizeof(FOOTER_HEAD) - 1, tail = sizeof(FOOTER_TAIL) - 1;
	size_t kid_len;

	if (len <= head + tail || len - head - tail > TICKET_KID_MAX ||
	    memcmp(footer, FOOTER_HEAD, head) != 0 ||
	    memcmp(footer + len - tail, FOOTER_TAIL, tail) != 0)
		return false;
	kid_len = len - head - tail;
	memcpy(kid_out, footer + head, kid_len);
	kid_out[kid_len] = '\0';
	return ticket_kid_valid(kid_out);
}

int ticket_sign(const unsigned char sk[TICKET_SK_BYTES], const char *kid,
		const char *claims_json, size_t json_len, char *out, size_t out_size)
{
	char footer[sizeof(FOOTER_HEAD) + TICKET_KID_MAX + sizeof(FOOTER_TAIL)];
	int footer_len = ticket_footer_make(kid, footer, sizeof(footer));

	if (footer_len < 0)
		return -1;
	return paseto_v4_sign(sk, (const unsigned char *)claims_json, json_len,
			      (const unsigned char *)footer, (size_t)footer_len,
			      NULL, 0, out, out_size);
}

/* ---- times -------------------------------------------------------------- */

static bool digits(const char *s, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

static int days_in_month(int year, int month)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/* "YYYY-MM-DDTHH:MM:SS" into tm; fields range-checked (timegm would
   silently normalise 2026-02-31). */
static bool parse_date_time(const char *s, struct tm *tm)
{
	int y, mo, d, h, mi, sec;

	if (strlen(s) < 19 || s[4] != '-' || s[7] != '-' ||
	    (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' ||
	    !digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
	    !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) ||
	    h > 23 || mi > 59 || sec > 59)
		return false;
	memset(tm, 0, sizeof(*tm));
	tm->tm_year = y - 1900;
	tm->tm_mon = mo - 1;
	tm->tm_mday = d;
	tm->tm_hour = h;
	tm->tm_min = mi;
	tm->tm_sec = sec;
	return true;
}

/* After the seconds: optional ".fraction" (dropped), then Z or +HH:MM/-HH:MM.
   Sets *offset_r to seconds east of UTC. */
static bool parse_zone(const char *s, int64_t *offset_r)
{
	int h, m;

	if (*s == '.') {
		size_t n = strspn(s + 1, "0123456789");
		if (n == 0)
			return false;
		s += 1 + n;
	}
	if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
		*offset_r = 0;
		return true;
	}
	if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || s[3] != ':' ||
	    !digits(s + 1, 2, &h) || !digits(s + 4, 2, &m) || h > 23 || m > 59)
		return false;
	*offset_r = (int64_t)(h * 3600 + m * 60) * (s[0] == '-' ? -1 : 1);
	return true;
}

bool ticket_time_parse(const char *iso, int64_t *out)
{
	struct tm tm;
	int64_t offset;
	time_t t;

	if (!parse_date_time(iso, &tm) || !parse_zone(iso + 19, &offset))
		return false;
	t = timegm(&tm);
	*out = (int64_t)t - offset;
	return true;
}

bool ticket_time_format(int64_t t, char *out, size_t out_size)
{
	time_t tt = (time_t)t;
	struct tm tm;
	int len;

	if (gmtime_r(&tt, &tm) == NULL || tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		return false;
	len = snprintf(out, out_size, "%04d-%02d-%02dT%02d:%02d:%02dZ",
		       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		       tm.tm_hour, tm.tm_min, tm.tm_sec);
	return len == TICKET_TIME_LEN && (size_t)len < out_size;
}

/* ---- claims ------------------------------------------------------------- */

const char *ticket_refusal_name(enum ticket_refusal r)
{
	switch (r) {
	case TICKET_ACCEPTED: return "accepted";
	case TICKET_MALFORMED: return "malformed";
	case TICKET_UNKNOWN_KEY: return "unknown_key";
	case TICKET_BAD_SIGNATURE: return "bad_signature";
	case TICKET_EXPIRED: return "expired";
	case TICKET_NOT_YET_VALID: return "not_yet_valid";
	case TICKET_WRONG_AUDIENCE: return "wrong_audience";
	case TICKET_WRONG_USER: return "wrong_user";
	case TICKET_WRONG_SERVICE: return "wrong_service";
	case TICKET_REPLAY: return "replay";
	case TICKET_LIFETIME_TOO_LONG: return "lifetime_too_long";
	}
	return "malformed";
}

/* Constant time for equal lengths, like every credential compare here. */
static bool same_string(const char *a, const char *b)
{
	size_t len;

	if (a == NULL || b == NULL || (len = strlen(a)) != strlen(b))
		return false;
	return len == 0 || sodium_memcmp(a, b, len) == 0;
}

/* A session id: 1..64 of [A-Za-z0-9_-] (what dovegate-auth mints, safe in
   Dovecot's log prefixes and its login session id). */
static bool jti_valid(const char *jti)
{
	size_t n = strspn(jti, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			       "0123456789_-");

	return n > 0 && n <= 64 && jti[n] == '\0';
}

/* "" (unknown) or an IPv4/IPv6 address literal. */
static bool rip_valid(const char *rip)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return rip[0] == '\0' || inet_pton(AF_INET, rip, buf) == 1 ||
	       inet_pton(AF_INET6, rip, buf) == 1;
}

static bool claims_complete(const struct ticket_claims *c)
{
	return c->sub[0] != '\0' && c->aud[0] != '\0' && jti_valid(c->jti) &&
	       c->svc[0] != '\0' && c->iat != 0 && c->exp != 0 && c->exp >= c->iat &&
	       rip_valid(c->rip);
}

/* Times are bounded by ticket_time_parse (years 0000-9999) and callers'
   clocks, so these differences cannot overflow. */
static enum ticket_refusal check_times(const struct ticket_claims *c,
				       const struct ticket_expect *e)
{
	int64_t skew = e->skew > 0 ? e->skew : 0;
	int64_t max = e->max_lifetime > 0 ? e->max_lifetime : TICKET_MAX_LIFETIME_DEFAULT;

	if (e->now > c->exp && e->now - c->exp > skew)
		return TICKET_EXPIRED;
	if (c->iat > e->now && c->iat - e->now > skew)
		return TICKET_NOT_YET_VALID;
	if (c->exp - c->iat > max)
		return TICKET_LIFETIME_TOO_LONG;
	return TICKET_ACCEPTED;
}

enum ticket_refusal ticket_claims_check(const struct ticket_claims *c,
					const struct ticket_expect *e)
{
	enum ticket_refusal r;
	const char *svc = e->svc;

	if (!claims_complete(c))
		return TICKET_MALFORMED;
	if ((r = check_times(c, e)) != TICKET_ACCEPTED)
		return r;
	if (!same_string(c->aud, e->aud))
		return TICKET_WRONG_AUDIENCE;
	if (!same_string(c->sub, e->sub))
		return TICKET_WRONG_USER;
	if (svc != NULL && strcmp(svc, "submission") == 0)
		svc = "smtp";
	if (!same_string(c->svc, svc))
		return TICKET_WRONG_SERVICE;
	return TICKET_ACCEPTED;
}

bool ticket_looks_like_one(const char *password, size_t len)
{
	return len >= V4_PUBLIC_LEN && memcmp(password, V4_PUBLIC, V4_PUBLIC_LEN) == 0;
}
