/* Login tickets: PASETO v4.public and PASERK k4 against the official vectors
   (tests/vectors/paseto), footer and key ids, times, claims <-> JSON, the
   claim rules, the size bound for nginx, tampering, key ring and signing key
   files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filetrust.h"
#include "keyring.h"
#include "ticket.h"
#include "ticket_json.h"

#ifndef DG_VECTORS_DIR
#error "DG_VECTORS_DIR must be defined"
#endif

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define NOW 1795321800  /* 2026-11-22T04:30:00Z */

/* ---- helpers ------------------------------------------------------------ */

static json_t *load_vectors(const char *name)
{
	char path[512];
	json_error_t je;
	json_t *root;

	snprintf(path, sizeof(path), "%s/paseto/%s", DG_VECTORS_DIR, name);
	root = json_load_file(path, 0, &je);
	if (root == NULL || !json_is_array(json_object_get(root, "tests")))
		fail_msg("%s: %s", path, root == NULL ? je.text : "no tests array");
	return root;
}

static const char *str(const json_t *t, const char *name)
{
	const json_t *v = json_object_get(t, name);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Hex into out; returns the byte count (-1 if it does not fit). */
static int hex(const char *h, unsigned char *out, size_t size)
{
	size_t len;

	if (sodium_hex2bin(out, size, h, strlen(h), NULL, &len, NULL) != 0)
		return -1;
	return (int)len;
}

static void keypair(unsigned char pk[TICKET_PK_BYTES], unsigned char sk[TICKET_SK_BYTES])
{
	crypto_sign_keypair(pk, sk);
}

static void sample_claims(struct ticket_claims *c)
{
	memset(c, 0, sizeof(*c));
	strcpy(c->sub, "alice");
	strcpy(c->aud, "mx1");
	strcpy(c->jti, "abcdefghijklmnopqrstuv");
	strcpy(c->svc, "imap");
	c->iat = NOW;
	c->exp = NOW + 60;
	strcpy(c->rip, "203.0.113.9");
	c->rport = 51234;
	c->tls = true;
	strcpy(c->tls_protocol, "TLSv1.3");
}

static struct ticket_expect sample_expect(void)
{
	struct ticket_expect e = {
		.aud = "mx1", .sub = "alice", .svc = "imap",
		.now = NOW + 1, .skew = 5, .max_lifetime = 300,
	};
	return e;
}

static void assert_claims_equal(const struct ticket_claims *a, const struct ticket_claims *b)
{
	assert_string_equal(a->sub, b->sub);
	assert_string_equal(a->aud, b->aud);
	assert_string_equal(a->jti, b->jti);
	assert_string_equal(a->svc, b->svc);
	assert_int_equal(a->iat, b->iat);
	assert_int_equal(a->exp, b->exp);
	assert_string_equal(a->rip, b->rip);
	assert_int_equal(a->rport, b->rport);
	assert_int_equal(a->tls, b->tls);
	assert_string_equal(a->tls_protocol, b->tls_protocol);
}

/* A signed ticket for c into out; returns its length. */
static int make_ticket(const unsigned char *sk, const char *kid,
		       const struct ticket_claims *c, char *out, size_t size)
{
	char *json = ticket_claims_to_json(c);
	int len;

	assert_non_null(json);
	len = ticket_sign(sk, kid, json, strlen(json), out, size);
	free(json);
	assert_true(len > 0);
	return len;
}

/* ---- PASETO v4 vectors -------------------------------------------------- */

static void check_sign_vector(const json_t *t)
{
	unsigned char sk[TICKET_SK_BYTES], pk[TICKET_PK_BYTES], msg[TICKET_MAX_LEN];
	unsigned char footer[TICKET_MAX_LEN];
	const char *payload = str(t, "payload"), *f = str(t, "footer");
	const char *ia = str(t, "implicit-assertion"), *token = str(t, "token");
	char out[TICKET_MAX_LEN + 1];
	size_t msg_len;

	assert_int_equal(hex(str(t, "secret-key"), sk, sizeof(sk)), TICKET_SK_BYTES);
	assert_int_equal(hex(str(t, "public-key"), pk, sizeof(pk)), TICKET_PK_BYTES);
	/* Ed25519 is deterministic: our token must be the vector's */
	assert_int_equal(paseto_v4_sign(sk, (const unsigned char *)payload, strlen(payload),
					(const unsigned char *)f, strlen(f),
					(const unsigned char *)ia, strlen(ia), out, sizeof(out)),
			 (int)strlen(token));
	assert_string_equal(out, token);
	assert_int_equal(paseto_v4_verify(pk, token, strlen(token), (const unsigned char *)ia,
					  strlen(ia), msg, sizeof(msg), &msg_len), PASETO_OK);
	assert_int_equal(msg_len, strlen(payload));
	assert_string_equal((char *)msg, payload);
	assert_int_equal(paseto_v4_footer(token, strlen(token), footer, sizeof(footer)),
			 (int)strlen(f));
	assert_string_equal((char *)footer, f);
	/* the implicit assertion is signed too */
	assert_int_not_equal(paseto_v4_verify(pk, token, strlen(token),
					      (const unsigned char *)"x", 1, msg,
					      sizeof(msg), NULL), PASETO_OK);
}

/* Verified with the vector's public key, or its (symmetric) key used as one:
   either way it must be refused. */
static void check_fail_vector(const json_t *t)
{
	unsigned char pk[TICKET_PK_BYTES + 1], msg[TICKET_MAX_LEN];
	const char *key = str(t, "public-key") != NULL ? str(t, "public-key") : str(t, "key");
	const char *ia = str(t, "implicit-assertion"), *token = str(t, "token");

	assert_int_equal(hex(key, pk, sizeof(pk)), TICKET_PK_BYTES);
	assert_int_not_equal(paseto_v4_verify(pk, token, strlen(token),
					      (const unsigned char *)ia, strlen(ia),
					      msg, sizeof(msg), NULL), PASETO_OK);
}

static void test_paseto_vectors(void **state)
{
	json_t *root = load_vectors("v4.json");
	const json_t *t;
	size_t i, signed_ok = 0, refused = 0;

	json_array_foreach(json_object_get(root, "tests"), i, t) {
		const char *token = str(t, "token");
		bool public = strncmp(token, "v4.public.", 10) == 0 ||
			str(t, "public-key") != NULL;

		if (json_is_true(json_object_get(t, "expect-fail"))) {
			check_fail_vector(t);
			refused++;
		} else if (public) {
			check_sign_vector(t);
			signed_ok++;
		}
	}
	json_decref(root);
	assert_int_equal(signed_ok, 3);  /* 4-S-1..3 */
	assert_int_equal(refused, 5);    /* 4-F-1..5 */
}

/* ---- PASERK k4 vectors -------------------------------------------------- */

/* "<prefix><b64url(raw)>" for a key of any length, as a wrong-sized key
   would be serialised. */
static void paserk_of(const char *prefix, const unsigned char *raw, size_t len,
		      char *out, size_t size)
{
	size_t plen = strlen(prefix);

	strcpy(out, prefix);
	sodium_bin2base64(out + plen, size - plen, raw, len,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

static void check_public(const json_t *t, bool fail)
{
	unsigned char key[128], pk[TICKET_PK_BYTES];
	char text[256];
	int len = hex(str(t, "key"), key, sizeof(key));

	if (fail) {
		assert_int_not_equal(len, TICKET_PK_BYTES);
		paserk_of("k4.public.", key, (size_t)len, text, sizeof(text));
		assert_false(paserk_k4_public_decode(text, pk));
		return;
	}
	assert_true(paserk_k4_public_encode(key, text, sizeof(text)));
	assert_string_equal(text, str(t, "paserk"));
	assert_int_equal(strlen(text), TICKET_PASERK_PUBLIC_LEN);
	assert_true(paserk_k4_public_decode(str(t, "paserk"), pk));
	assert_memory_equal(pk, key, TICKET_PK_BYTES);
}

static void check_secret(const json_t *t, bool fail)
{
	unsigned char key[128], sk[TICKET_SK_BYTES];
	char text[256];
	int len = hex(str(t, "key"), key, sizeof(key));

	paserk_of("k4.secret.", key, (size_t)len, text, sizeof(text));
	if (fail) {
		/* short key, or a public half that is not the seed's */
		assert_false(paserk_k4_secret_decode(text, sk));
		return;
	}
	assert_string_equal(text, str(t, "paserk"));
	assert_true(paserk_k4_secret_encode(key, text, sizeof(text)));
	assert_string_equal(text, str(t, "paserk"));
	assert_int_equal(strlen(text), TICKET_PASERK_SECRET_LEN);
	assert_true(paserk_k4_secret_decode(str(t, "paserk"), sk));
	assert_memory_equal(sk, key, TICKET_SK_BYTES);
}

static void check_pid(const json_t *t, bool fail)
{
	unsigned char key[128], pk[TICKET_PK_BYTES];
	char text[256];
	int len = hex(str(t, "key"), key, sizeof(key));

	if (fail) {
		/* a wrong-sized key never becomes a public key to take the id of */
		assert_int_not_equal(len, TICKET_PK_BYTES);
		paserk_of("k4.public.", key, (size_t)len, text, sizeof(text));
		assert_false(paserk_k4_public_decode(text, pk));
		return;
	}
	assert_true(paserk_k4_pid(key, text, sizeof(text)));
	assert_string_equal(text, str(t, "paserk"));
	assert_int_equal(strlen(text), TICKET_PASERK_PID_LEN);
}

static void run_paserk(const char *file, void (*check)(const json_t *, bool),
		       size_t want_ok, size_t want_fail)
{
	json_t *root = load_vectors(file);
	const json_t *t;
	size_t i, ok = 0, failed = 0;

	json_array_foreach(json_object_get(root, "tests"), i, t) {
		bool fail = json_is_true(json_object_get(t, "expect-fail"));
		check(t, fail);
		if (fail)
			failed++;
		else
			ok++;
	}
	json_decref(root);
	assert_int_equal(ok, want_ok);
	assert_int_equal(failed, want_fail);
}

static void test_paserk_vectors(void **state)
{
	run_paserk("k4.public.json", check_public, 3, 1);
	run_paserk("k4.secret.json", check_secret, 3, 2);
	run_paserk("k4.pid.json", check_pid, 3, 2);
}

static void test_paserk_strict(void **state)
{
	unsigned char pk[TICKET_PK_BYTES], sk[TICKET_SK_BYTES];
	char text[128];

	keypair(pk, sk);
	assert_true(paserk_k4_public_encode(pk, text, sizeof(text)));
	assert_false(paserk_k4_public_encode(pk, text, TICKET_PASERK_PUBLIC_LEN));
	assert_false(paserk_k4_public_decode("k3.public.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", pk));
	assert_false(paserk_k4_public_decode("k4.public.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", pk));
	assert_false(paserk_k4_public_decode("k4.public.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", pk));
	assert_false(paserk_k4_public_decode("k4.public.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA ", pk));
	assert_false(paserk_k4_public_decode("k4.secret.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", pk));
	assert_true(paserk_k4_secret_encode(sk, text, sizeof(text)));
	assert_false(paserk_k4_public_decode(text, pk));
	text[3] = 'p';  /* k4.pecret. */
	assert_false(paserk_k4_secret_decode(text, sk));
}

/* ---- footer, key ids ---------------------------------------------------- */

static void test_kid_and_footer(void **state)
{
	const char *good[] = { "a", "2026-01", "edge1.example_key-2",
		"0123456789012345678901234567890123456789012345678901234567890123" };
	const char *bad[] = { "", ".hidden", "-opt", "_x", "a b", "a/b", "a\"b", "é",
		"01234567890123456789012345678901234567890123456789012345678901234" };
	const char *bad_footers[] = { "{\"kid\":\"\"}", "{\"kid\": \"a\"}", "{\"kid\":\"a\"} ",
		"{\"kid\":\"a\\\"\"}", "{\"kid\":\"a\",\"x\":1}", "{\"KID\":\"a\"}", "a", "" };
	char footer[128], kid[TICKET_KID_MAX + 1];

	for (size_t i = 0; i < N(good); i++) {
		assert_true(ticket_kid_valid(good[i]));
		assert_true(ticket_footer_make(good[i], footer, sizeof(footer)) > 0);
		assert_true(ticket_footer_kid((unsigned char *)footer, strlen(footer), kid));
		assert_string_equal(kid, good[i]);
	}
	for (size_t i = 0; i < N(bad); i++) {
		assert_false(ticket_kid_valid(bad[i]));
		assert_int_equal(ticket_footer_make(bad[i], footer, sizeof(footer)), -1);
	}
	for (size_t i = 0; i < N(bad_footers); i++)
		assert_false(ticket_footer_kid((const unsigned char *)bad_footers[i],
					       strlen(bad_footers[i]), kid));
	assert_int_equal(ticket_footer_make("k1", footer, sizeof(footer)), 12);
	assert_string_equal(footer, "{\"kid\":\"k1\"}");
	assert_int_equal(ticket_footer_make("k1", footer, 12), -1);
	assert_true(ticket_looks_like_one("v4.public.x", 11));
	assert_false(ticket_looks_like_one("v4.public", 9));
	assert_false(ticket_looks_like_one("v4.local.xxxx", 13));
	assert_false(ticket_looks_like_one("secret-password", 15));
}

/* ---- times -------------------------------------------------------------- */

static void test_time_parse(void **state)
{
	const struct { const char *iso; int64_t t; } good[] = {
		{ "2026-11-22T04:30:00Z", NOW },
		{ "2026-11-22t04:30:00z", NOW },
		{ "2026-11-22T04:30:00.999Z", NOW },
		{ "2026-11-22T05:30:00+01:00", NOW },
		{ "2026-11-21T23:00:00-05:30", NOW },
		{ "2022-01-01T00:00:00+00:00", 1640995200 },
		{ "1970-01-01T00:00:00Z", 0 },
		{ "1969-12-31T23:59:59Z", -1 },
		{ "2024-02-29T12:00:00Z", 1709208000 },
		{ "2000-02-29T00:00:00Z", 951782400 },
		{ "9999-12-31T23:59:59Z", 253402300799 },
	};
	const char *bad[] = { "", "2026-11-22", "2026-11-22T04:30Z", "2026-11-22T04:30:00",
		"2026-11-22 04:30:00Z", "2026-11-22T04:30:00ZZ", "2026-11-22T04:30:00+0100",
		"2026-11-22T04:30:00+01", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2026-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2026-04-31T00:00:00Z",
		"2026-11-00T00:00:00Z", "2026-11-22T24:00:00Z", "2026-11-22T23:60:00Z",
		"2026-11-22T23:59:60Z", "2026-11-22T04:30:00.Z", "+2026-11-22T04:30:00Z",
		"2026-11-22T04:30:00+24:00", " 2026-11-22T04:30:00Z", "2026-1-22T04:30:00Z",
		"1795321800" };
	int64_t t;

	for (size_t i = 0; i < N(good); i++) {
		if (!ticket_time_parse(good[i].iso, &t))
			fail_msg("refused %s", good[i].iso);
		assert_int_equal(t, good[i].t);
	}
	for (size_t i = 0; i < N(bad); i++) {
		if (ticket_time_parse(bad[i], &t))
			fail_msg("accepted '%s'", bad[i]);
	}
}

static void test_time_format(void **state)
{
	char out[TICKET_TIME_LEN + 1];
	int64_t back;

	assert_true(ticket_time_format(NOW, out, sizeof(out)));
	assert_string_equal(out, "2026-11-22T04:30:00Z");
	assert_true(ticket_time_format(0, out, sizeof(out)));
	assert_string_equal(out, "1970-01-01T00:00:00Z");
	assert_true(ticket_time_format(253402300799, out, sizeof(out)));
	assert_string_equal(out, "9999-12-31T23:59:59Z");
	assert_false(ticket_time_format(253402300800, out, sizeof(out)));
	assert_false(ticket_time_format(NOW, out, TICKET_TIME_LEN));
	for (int64_t t = -86400 * 400; t < (int64_t)4e9; t += 7777777) {
		assert_true(ticket_time_format(t, out, sizeof(out)));
		assert_true(ticket_time_parse(out, &back));
		assert_int_equal(back, t);
	}
}

/* ---- claims <-> JSON ---------------------------------------------------- */

static void test_claims_json(void **state)
{
	struct ticket_claims c, back;
	char err[256], *json;

	sample_claims(&c);
	json = ticket_claims_to_json(&c);
	assert_non_null(json);
	assert_string_equal(json, "{\"sub\":\"alice\",\"aud\":\"mx1\","
			    "\"iat\":\"2026-11-22T04:30:00Z\",\"exp\":\"2026-11-22T04:31:00Z\","
			    "\"jti\":\"abcdefghijklmnopqrstuv\",\"svc\":\"imap\","
			    "\"rip\":\"203.0.113.9\",\"rport\":51234,\"tls\":true,"
			    "\"tlsv\":\"TLSv1.3\"}");
	assert_true(ticket_claims_from_json(json, strlen(json), &back, err, sizeof(err)));
	assert_claims_equal(&c, &back);
	free(json);

	/* absent claims are left out, and read back as absent */
	c.rip[0] = '\0';
	c.rport = 0;
	c.tls = false;
	c.tls_protocol[0] = '\0';
	json = ticket_claims_to_json(&c);
	assert_null(strstr(json, "rip"));
	assert_null(strstr(json, "tls"));
	assert_true(ticket_claims_from_json(json, strlen(json), &back, err, sizeof(err)));
	assert_claims_equal(&c, &back);
	free(json);

	/* quotes, backslashes and UTF-8 in the user name survive */
	strcpy(c.sub, "a\"b\\c d+é");
	json = ticket_claims_to_json(&c);
	assert_true(ticket_claims_from_json(json, strlen(json), &back, err, sizeof(err)));
	assert_string_equal(back.sub, c.sub);
	free(json);
	/* ... but bytes that are not UTF-8 cannot be a JSON string */
	strcpy(c.sub, "\xff\xfe");
	assert_null(ticket_claims_to_json(&c));
	assert_false(ticket_json_string_ok("\xff", 1));
	assert_false(ticket_json_string_ok("a\0b", 3));
	assert_true(ticket_json_string_ok("bj\xc3\xb6rn", 6));
}

static void test_claims_json_errors(void **state)
{
	const struct { const char *json, *err; } cases[] = {
		{ "", "claims are not valid JSON: " },
		{ "[1]", "claims are not a JSON object" },
		{ "{\"sub\":\"a\",\"sub\":\"b\"}", "claims are not valid JSON: duplicate object key" },
		{ "{\"sub\":1}", "claim 'sub': not a string" },
		{ "{\"exp\":1795321800}", "claim 'exp': not an RFC 3339 time such as \"2026-11-22T04:30:00Z\"" },
		{ "{\"iat\":\"yesterday\"}", "claim 'iat': not an RFC 3339 time such as \"2026-11-22T04:30:00Z\"" },
		{ "{\"rport\":0}", "claim 'rport': not a port number (1-65535)" },
		{ "{\"rport\":65536}", "claim 'rport': not a port number (1-65535)" },
		{ "{\"rport\":\"443\"}", "claim 'rport': not a port number (1-65535)" },
		{ "{\"tls\":\"yes\"}", "claim 'tls': not true or false" },
		{ "{\"svc\":\"submission\"}", "claim 'svc': too long" },
		{ "{\"sub\":\"a\\u0000b\"}", "claims are not valid JSON: " },
	};
	struct ticket_claims c;
	char err[256];

	for (size_t i = 0; i < N(cases); i++) {
		if (ticket_claims_from_json(cases[i].json, strlen(cases[i].json), &c,
					    err, sizeof(err)))
			fail_msg("accepted %s", cases[i].json);
		if (strncmp(err, cases[i].err, strlen(cases[i].err)) != 0)
			fail_msg("%s: got '%s', want '%s'", cases[i].json, err, cases[i].err);
	}
	/* unknown claims are ignored; tls may be false */
	const char *extra = "{\"nbf\":1,\"tls\":false,\"x\":[]}";
	assert_true(ticket_claims_from_json(extra, strlen(extra), &c, err, sizeof(err)));
	assert_false(c.tls);
	assert_true(ticket_json_is_object("{\"a\":1,\"a\":2}", 13, err, sizeof(err)));
	assert_false(ticket_json_is_object("[]", 2, err, sizeof(err)));
	assert_false(ticket_json_is_object("{", 1, err, sizeof(err)));
}

/* ---- claim rules -------------------------------------------------------- */

static void expect_refusal(const struct ticket_claims *c, const struct ticket_expect *e,
			   enum ticket_refusal want)
{
	enum ticket_refusal got = ticket_claims_check(c, e);

	if (got != want)
		fail_msg("got %s, want %s", ticket_refusal_name(got), ticket_refusal_name(want));
}

static void test_claims_required(void **state)
{
	struct ticket_expect e = sample_expect();
	struct ticket_claims c;

	sample_claims(&c);
	expect_refusal(&c, &e, TICKET_ACCEPTED);
	c.sub[0] = '\0'; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	c.aud[0] = '\0'; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	c.jti[0] = '\0'; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	c.svc[0] = '\0'; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	c.iat = 0; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	c.exp = 0; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	c.exp = c.iat - 1; expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	/* jti: 1..64 of [A-Za-z0-9_-] (the Dovecot session id); rip: an IP */
	strcpy(c.jti, "has space"); expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	strcpy(c.jti, "dot.ted"); expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	memset(c.jti, 'J', 64); c.jti[64] = '\0'; expect_refusal(&c, &e, TICKET_ACCEPTED);
	sample_claims(&c);
	strcpy(c.rip, "not-an-ip"); expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	strcpy(c.rip, "192.0.2.300"); expect_refusal(&c, &e, TICKET_MALFORMED); sample_claims(&c);
	strcpy(c.rip, "2001:db8::7"); expect_refusal(&c, &e, TICKET_ACCEPTED); sample_claims(&c);
	c.rip[0] = '\0'; expect_refusal(&c, &e, TICKET_ACCEPTED); sample_claims(&c);
	/* optional facts */
	c.rip[0] = '\0'; c.rport = 0; c.tls = false; c.tls_protocol[0] = '\0';
	expect_refusal(&c, &e, TICKET_ACCEPTED);
}

static void test_claims_times(void **state)
{
	struct ticket_expect e = sample_expect();
	struct ticket_claims c;

	sample_claims(&c);                     /* iat NOW, exp NOW + 60, skew 5 */
	e.now = NOW + 65;
	expect_refusal(&c, &e, TICKET_ACCEPTED);
	e.now = NOW + 66;
	expect_refusal(&c, &e, TICKET_EXPIRED);
	e.now = NOW - 5;
	expect_refusal(&c, &e, TICKET_ACCEPTED);
	e.now = NOW - 6;
	expect_refusal(&c, &e, TICKET_NOT_YET_VALID);
	e.now = NOW + 61;
	e.skew = -10;                          /* treated as 0 */
	expect_refusal(&c, &e, TICKET_EXPIRED);
	e = sample_expect();
	c.exp = NOW + 300;
	expect_refusal(&c, &e, TICKET_ACCEPTED);
	c.exp = NOW + 301;
	expect_refusal(&c, &e, TICKET_LIFETIME_TOO_LONG);
	e.max_lifetime = 0;                    /* default */
	expect_refusal(&c, &e, TICKET_MAX_LIFETIME_DEFAULT >= 301 ? TICKET_ACCEPTED :
		       TICKET_LIFETIME_TOO_LONG);
	c.exp = NOW + 86400 * 365;
	e.now = NOW + 10;
	expect_refusal(&c, &e, TICKET_LIFETIME_TOO_LONG);
}

static void test_claims_identity(void **state)
{
	struct ticket_expect e = sample_expect();
	struct ticket_claims c;

	sample_claims(&c);
	e.aud = "mx2"; expect_refusal(&c, &e, TICKET_WRONG_AUDIENCE);
	e.aud = "mx"; expect_refusal(&c, &e, TICKET_WRONG_AUDIENCE);
	e.aud = NULL; expect_refusal(&c, &e, TICKET_WRONG_AUDIENCE);
	e = sample_expect();
	e.sub = "Alice"; expect_refusal(&c, &e, TICKET_WRONG_USER);
	e.sub = "alice2"; expect_refusal(&c, &e, TICKET_WRONG_USER);
	e.sub = NULL; expect_refusal(&c, &e, TICKET_WRONG_USER);
	e = sample_expect();
	e.svc = "pop3"; expect_refusal(&c, &e, TICKET_WRONG_SERVICE);
	e.svc = NULL; expect_refusal(&c, &e, TICKET_WRONG_SERVICE);
	e.svc = "submission"; expect_refusal(&c, &e, TICKET_WRONG_SERVICE);
	strcpy(c.svc, "smtp");
	expect_refusal(&c, &e, TICKET_ACCEPTED);
	e.svc = "smtp"; expect_refusal(&c, &e, TICKET_ACCEPTED);
	/* expiry is reported before identity */
	e.now = NOW + 3600;
	e.aud = "other";
	expect_refusal(&c, &e, TICKET_EXPIRED);
}

static void test_refusal_names(void **state)
{
	const char *names[] = { "accepted", "malformed", "unknown_key", "bad_signature",
		"expired", "not_yet_valid", "wrong_audience", "wrong_user",
		"wrong_service", "replay", "lifetime_too_long" };

	for (size_t i = 0; i < N(names); i++)
		assert_string_equal(ticket_refusal_name((enum ticket_refusal)i), names[i]);
}

/* ---- whole tickets ------------------------------------------------------ */

/* The worst case the design promises nginx: 128-byte user, longest IPv6
   text, port, TLS facts, a 22-char session id, typical aud and key id. */
static void test_size_bound(void **state)
{
	unsigned char pk[TICKET_PK_BYTES], sk[TICKET_SK_BYTES];
	struct ticket_claims c;
	char token[TICKET_MAX_LEN + 1];
	int len;

	keypair(pk, sk);
	sample_claims(&c);
	memset(c.sub, 'u', 128);
	c.sub[128] = '\0';
	strcpy(c.aud, "dovecot-01.mail.example.org");
	strcpy(c.rip, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
	c.rport = 65535;
	strcpy(c.svc, "pop3");
	len = make_ticket(sk, "dovegate-2026-01", &c, token, sizeof(token));
	print_message("max ticket size: %d bytes (limit %d)\n", len, TICKET_MAX_SIZE_FOR_NGINX);
	assert_true(len <= TICKET_MAX_SIZE_FOR_NGINX);
}

static void test_tampering(void **state)
{
	unsigned char pk[TICKET_PK_BYTES], sk[TICKET_SK_BYTES], msg[TICKET_MAX_LEN];
	struct ticket_claims c;
	char token[TICKET_MAX_LEN + 1], bad[TICKET_MAX_LEN + 2];
	const char repl[] = "AB.-_a=";
	size_t len;

	keypair(pk, sk);
	sample_claims(&c);
	len = (size_t)make_ticket(sk, "k1", &c, token, sizeof(token));
	assert_int_equal(paseto_v4_verify(pk, token, len, NULL, 0, msg, sizeof(msg), NULL),
			 PASETO_OK);
	for (size_t i = 0; i < len; i++) {
		for (size_t r = 0; r < sizeof(repl) - 1; r++) {
			if (token[i] == repl[r])
				continue;
			memcpy(bad, token, len + 1);
			bad[i] = repl[r];
			if (paseto_v4_verify(pk, bad, len, NULL, 0, msg, sizeof(msg),
					     NULL) == PASETO_OK)
				fail_msg("byte %zu changed to '%c' still verifies", i, repl[r]);
		}
		/* truncated at every length */
		assert_int_not_equal(paseto_v4_verify(pk, token, i, NULL, 0, msg,
						      sizeof(msg), NULL), PASETO_OK);
	}
	memcpy(bad, token, len);
	strcpy(bad + len, "A");
	assert_int_not_equal(paseto_v4_verify(pk, bad, len + 1, NULL, 0, msg, sizeof(msg),
					      NULL), PASETO_OK);
	/* msg buffer too small is refused, not truncated */
	assert_int_equal(paseto_v4_verify(pk, token, len, NULL, 0, msg, 10, NULL),
			 PASETO_MALFORMED);
}

static void test_peek_and_footer(void **state)
{
	unsigned char pk[TICKET_PK_BYTES], sk[TICKET_SK_BYTES], msg[TICKET_MAX_LEN];
	unsigned char footer[128];
	struct ticket_claims c;
	char token[TICKET_MAX_LEN + 1], *json;
	int len;

	keypair(pk, sk);
	sample_claims(&c);
	len = make_ticket(sk, "k1", &c, token, sizeof(token));
	json = ticket_claims_to_json(&c);
	assert_int_equal(paseto_v4_peek(token, (size_t)len, msg, sizeof(msg)), (int)strlen(json));
	assert_string_equal((char *)msg, json);
	free(json);
	assert_int_equal(paseto_v4_footer(token, (size_t)len, footer, sizeof(footer)), 12);
	assert_string_equal((char *)footer, "{\"kid\":\"k1\"}");
	assert_int_equal(paseto_v4_footer(token, (size_t)len, footer, 12), -1);
	assert_int_equal(paseto_v4_peek("v4.local.AAAA", 13, msg, sizeof(msg)), -1);
	assert_int_equal(paseto_v4_footer("v4.public.AAAA.", 15, footer, sizeof(footer)), -1);
	/* no room for the token */
	assert_int_equal(ticket_sign(sk, "k1", "{}", 2, token, 50), -1);
	assert_int_equal(ticket_sign(sk, "bad kid", "{}", 2, token, sizeof(token)), -1);
}

/* ---- key files ---------------------------------------------------------- */

struct keydir {
	char dir[64];
	char err[512];
	unsigned char pk1[TICKET_PK_BYTES], sk1[TICKET_SK_BYTES];
	unsigned char pk2[TICKET_PK_BYTES], sk2[TICKET_SK_BYTES];
	char pub1[128], pub2[128], sec1[128], sec2[128];
};

static int keydir_setup(void **state)
{
	struct keydir *k = calloc(1, sizeof(*k));

	strcpy(k->dir, "/tmp/dg-test-ticket-XXXXXX");
	assert_non_null(mkdtemp(k->dir));
	keypair(k->pk1, k->sk1);
	keypair(k->pk2, k->sk2);
	assert_true(paserk_k4_public_encode(k->pk1, k->pub1, sizeof(k->pub1)));
	assert_true(paserk_k4_public_encode(k->pk2, k->pub2, sizeof(k->pub2)));
	assert_true(paserk_k4_secret_encode(k->sk1, k->sec1, sizeof(k->sec1)));
	assert_true(paserk_k4_secret_encode(k->sk2, k->sec2, sizeof(k->sec2)));
	*state = k;
	return 0;
}

static int keydir_teardown(void **state)
{
	struct keydir *k = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", k->dir);
	assert_int_equal(system(cmd), 0);
	free(k);
	return 0;
}

/* Writes name (mode) with printf-style content; returns its path (static). */
static const char *keyfile(const struct keydir *k, const char *name, mode_t mode,
			   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static const char *keyfile(const struct keydir *k, const char *name, mode_t mode,
			   const char *fmt, ...)
{
	static char path[256];
	va_list ap;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", k->dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
	return path;
}

static void expect_ring_error(struct keydir *k, const char *text, const char *want)
{
	const char *path = keyfile(k, "ring", 0644, "%s", text);
	char full[512];

	assert_null(keyring_load(path, k->err, sizeof(k->err)));
	snprintf(full, sizeof(full), "%s%s", path, want);
	assert_string_equal(k->err, full);
}

static void test_keyring_file(void **state)
{
	struct keydir *k = *state;
	struct keyring *ring;
	char text[1024];

	ring = keyring_load(keyfile(k, "ring", 0644,
				    "# old key, drop after rotation\n"
				    "  k-2025\t%s  \r\n\n#\nk-2026 %s\n", k->pub1, k->pub2),
			    k->err, sizeof(k->err));
	if (ring == NULL)
		fail_msg("%s", k->err);
	assert_int_equal(keyring_count(ring), 2);
	assert_string_equal(keyring_kid(ring, 0), "k-2025");
	assert_string_equal(keyring_kid(ring, 1), "k-2026");
	assert_null(keyring_kid(ring, 2));
	assert_memory_equal(keyring_find(ring, "k-2025"), k->pk1, TICKET_PK_BYTES);
	assert_memory_equal(keyring_find(ring, "k-2026"), k->pk2, TICKET_PK_BYTES);
	assert_null(keyring_find(ring, "k-2027"));
	keyring_free(ring);

	snprintf(text, sizeof(text), "a %s\na %s\n", k->pub1, k->pub2);
	expect_ring_error(k, text, ":2: duplicate key id");
	snprintf(text, sizeof(text), "a %s\n", k->sec1);
	expect_ring_error(k, text, ":1: a secret key does not belong in a key ring (use the .pub file)");
	snprintf(text, sizeof(text), "a/b %s\n", k->pub1);
	expect_ring_error(k, text, ":1: invalid key id (1-64 of A-Z a-z 0-9 . _ -, "
			  "starting with a letter or digit)");
	snprintf(text, sizeof(text), "%s\n", k->pub1);
	expect_ring_error(k, text, ":1: expected '<kid> <PASERK key>'");
	snprintf(text, sizeof(text), "a %s extra\n", k->pub1);
	expect_ring_error(k, text, ":1: expected '<kid> <PASERK key>'");
	expect_ring_error(k, "# nothing\n\n", ": no keys (expected '<kid> k4.public.<...>' lines)");
	expect_ring_error(k, "a k4.public.short\n", ":1: not a k4.public PASERK key");
	assert_null(keyring_load("/nonexistent/ring", k->err, sizeof(k->err)));
	assert_string_equal(k->err, "/nonexistent/ring: No such file or directory");
	assert_null(keyring_load(k->dir, k->err, sizeof(k->err)));
}

static void test_keyring_verify(void **state)
{
	struct keydir *k = *state;
	unsigned char msg[TICKET_MAX_LEN];
	char token[TICKET_MAX_LEN + 1], kid[TICKET_KID_MAX + 1];
	struct ticket_claims c;
	struct keyring *ring;
	size_t msg_len;
	int len;

	ring = keyring_load(keyfile(k, "ring", 0644, "k1 %s\nk2 %s\n", k->pub1, k->pub2),
			    k->err, sizeof(k->err));
	assert_non_null(ring);
	sample_claims(&c);

	len = make_ticket(k->sk2, "k2", &c, token, sizeof(token));
	assert_int_equal(keyring_verify(ring, token, (size_t)len, kid, msg, sizeof(msg),
					&msg_len), TICKET_ACCEPTED);
	assert_string_equal(kid, "k2");
	assert_int_equal(msg_len, strlen((char *)msg));
	/* signed by key 1 but naming key 2 */
	len = make_ticket(k->sk1, "k2", &c, token, sizeof(token));
	assert_int_equal(keyring_verify(ring, token, (size_t)len, kid, msg, sizeof(msg),
					NULL), TICKET_BAD_SIGNATURE);
	len = make_ticket(k->sk1, "k3", &c, token, sizeof(token));
	assert_int_equal(keyring_verify(ring, token, (size_t)len, kid, msg, sizeof(msg),
					NULL), TICKET_UNKNOWN_KEY);
	assert_string_equal(kid, "k3");
	/* no footer, a footer that is not ours, not a token */
	len = paseto_v4_sign(k->sk1, (const unsigned char *)"{}", 2, NULL, 0, NULL, 0,
			     token, sizeof(token));
	assert_int_equal(keyring_verify(ring, token, (size_t)len, kid, msg, sizeof(msg),
					NULL), TICKET_MALFORMED);
	assert_string_equal(kid, "");
	len = paseto_v4_sign(k->sk1, (const unsigned char *)"{}", 2,
			     (const unsigned char *)"{\"kid\":\"k1\",\"x\":1}", 18, NULL, 0,
			     token, sizeof(token));
	assert_int_equal(keyring_verify(ring, token, (size_t)len, kid, msg, sizeof(msg),
					NULL), TICKET_MALFORMED);
	assert_int_equal(keyring_verify(ring, "password", 8, kid, msg, sizeof(msg), NULL),
			 TICKET_MALFORMED);
	keyring_free(ring);
}

static void test_secret_key_file(void **state)
{
	struct keydir *k = *state;
	unsigned char sk[TICKET_SK_BYTES], bad_sk[TICKET_SK_BYTES];
	char kid[TICKET_KID_MAX + 1], want[512], bad[128];
	const char *path;
	const mode_t modes[] = { 0640, 0604, 0620, 0610, 0644 };

	path = keyfile(k, "k1.key", 0600, "# dovegate signing key\nk1 %s\n", k->sec1);
	if (!ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)))
		fail_msg("%s", k->err);
	assert_string_equal(kid, "k1");
	assert_memory_equal(sk, k->sk1, TICKET_SK_BYTES);
	assert_true(chmod(path, 0400) == 0);
	assert_true(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));

	for (size_t i = 0; i < N(modes); i++) {
		assert_int_equal(chmod(path, modes[i]), 0);
		assert_false(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
		snprintf(want, sizeof(want), "%s: is accessible by group or others "
			 "(mode %04o); run chmod 600 on it", path, (unsigned)modes[i]);
		assert_string_equal(k->err, want);
	}
	path = keyfile(k, "two.key", 0600, "k1 %s\nk2 %s\n", k->sec1, k->sec2);
	assert_false(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
	assert_non_null(strstr(k->err, ":2: more than one key"));
	path = keyfile(k, "pub.key", 0600, "k1 %s\n", k->pub1);
	assert_false(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
	assert_non_null(strstr(k->err, ":1: not a valid k4.secret PASERK key"));
	/* seed of key 1 with the public half of key 2 */
	memcpy(bad_sk, k->sk1, 32);
	memcpy(bad_sk + 32, k->pk2, 32);
	assert_true(paserk_k4_secret_encode(bad_sk, bad, sizeof(bad)));
	path = keyfile(k, "mixed.key", 0600, "k1 %s\n", bad);
	assert_false(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
	assert_non_null(strstr(k->err, ":1: not a valid k4.secret PASERK key"));
	path = keyfile(k, "empty.key", 0600, "# nothing\n");
	assert_false(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
	snprintf(want, sizeof(want), "%s: no key (expected one '<kid> k4.secret.<...>' line)", path);
	assert_string_equal(k->err, want);
}

/* Key files nobody else can change or replace (filetrust.h), like OpenSSH's
   StrictModes: refused with the file (or directory) and the fix. */
static void expect_untrusted(struct keydir *k, const char *path, const char *want)
{
	char full[1024];

	assert_null(keyring_load(path, k->err, sizeof(k->err)));
	snprintf(full, sizeof(full), "%s: %s", path, want);
	assert_string_equal(k->err, full);
}

static void test_key_file_trust(void **state)
{
	struct keydir *k = *state;
	char sub[128], want[512], tmpring[] = "/tmp/dg-test-ring-XXXXXX";
	unsigned char sk[TICKET_SK_BYTES];
	char kid[TICKET_KID_MAX + 1];
	struct keyring *ring;
	const char *path;
	int fd;

	path = keyfile(k, "ring", 0664, "k1 %s\n", k->pub1);
	snprintf(want, sizeof(want), "is writable by group or others (mode 0664); "
		 "run chmod go-w %s", path);
	expect_untrusted(k, path, want);
	assert_int_equal(chmod(path, 0666), 0);
	snprintf(want, sizeof(want), "is writable by group or others (mode 0666); "
		 "run chmod go-w %s", path);
	expect_untrusted(k, path, want);

	/* in a directory others may write to (no sticky bit) */
	snprintf(sub, sizeof(sub), "%s/keys", k->dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	assert_int_equal(chmod(sub, 0777), 0);
	path = keyfile(k, "keys/ring", 0644, "k1 %s\n", k->pub1);
	snprintf(want, sizeof(want), "is in directory %s, writable by group or others "
		 "(mode 0777); run chmod go-w %s", sub, sub);
	expect_untrusted(k, path, want);
	path = keyfile(k, "keys/k1.key", 0600, "k1 %s\n", k->sec1);
	assert_false(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
	assert_non_null(strstr(k->err, want));
	assert_int_equal(chmod(sub, 0755), 0);
	assert_true(ticket_secret_key_load(path, kid, sk, k->err, sizeof(k->err)));
	sodium_memzero(sk, sizeof(sk));

	/* root's sticky /tmp is fine */
	fd = mkstemp(tmpring);
	assert_true(fd >= 0);
	assert_true(write(fd, "k1 ", 3) == 3);
	assert_true(write(fd, k->pub1, strlen(k->pub1)) == (ssize_t)strlen(k->pub1));
	assert_true(write(fd, "\n", 1) == 1);
	close(fd);
	assert_int_equal(chmod(tmpring, 0644), 0);
	ring = keyring_load(tmpring, k->err, sizeof(k->err));
	unlink(tmpring);
	if (ring == NULL)
		fail_msg("%s", k->err);
	keyring_free(ring);

	if (geteuid() != 0)
		return;         /* ownership needs root to set up */
	path = keyfile(k, "keys/ring", 0644, "k1 %s\n", k->pub1);
	assert_int_equal(chown(path, 65534, 65534), 0);
	snprintf(want, sizeof(want), "is owned by uid 65534, neither root nor this "
		 "process's user; run chown root %s", path);
	expect_untrusted(k, path, want);
	/* unless that is the service user's */
	filetrust_allow_owner(65534);
	ring = keyring_load(path, k->err, sizeof(k->err));
	filetrust_allow_owner((uid_t)-1);
	if (ring == NULL)
		fail_msg("%s", k->err);
	keyring_free(ring);
	assert_int_equal(chown(path, 0, 0), 0);
	assert_int_equal(chown(sub, 65534, 65534), 0);
	snprintf(want, sizeof(want), "is in directory %s, owned by uid 65534, neither "
		 "root nor this process's user; run chown root %s", sub, sub);
	expect_untrusted(k, path, want);
}

int main(void)
{
#define K(f) cmocka_unit_test_setup_teardown(f, keydir_setup, keydir_teardown)
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paseto_vectors),
		cmocka_unit_test(test_paserk_vectors),
		cmocka_unit_test(test_paserk_strict),
		cmocka_unit_test(test_kid_and_footer),
		cmocka_unit_test(test_time_parse),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_claims_json),
		cmocka_unit_test(test_claims_json_errors),
		cmocka_unit_test(test_claims_required),
		cmocka_unit_test(test_claims_times),
		cmocka_unit_test(test_claims_identity),
		cmocka_unit_test(test_refusal_names),
		cmocka_unit_test(test_size_bound),
		cmocka_unit_test(test_tampering),
		cmocka_unit_test(test_peek_and_footer),
		K(test_keyring_file),
		K(test_keyring_verify),
		K(test_secret_key_file),
		K(test_key_file_trust),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
