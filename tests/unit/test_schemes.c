/* Password schemes: Dovecot-generated vectors, encodings, malformed input,
   hashing round trips, CRAM-MD5 and APOP. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "schemes.h"

#ifndef DG_VECTORS_DIR
#define DG_VECTORS_DIR "tests/vectors"
#endif

struct vector {
	char *password;
	char *stored;
};

struct vectors {
	struct vector *v;
	size_t n;
};

static const char *vectors_path(void)
{
	static char path[4096];
	const char *dir = getenv("DG_VECTORS_DIR");

	snprintf(path, sizeof(path), "%s/dovecot-pw.txt",
		 dir != NULL ? dir : DG_VECTORS_DIR);
	return path;
}

/* "PASSWORD<TAB>STORED" lines; '#' comments. */
static int load_vectors(void **state)
{
	struct vectors *vs = calloc(1, sizeof(*vs));
	FILE *f = fopen(vectors_path(), "r");
	char line[1024];

	if (vs == NULL || f == NULL) {
		fprintf(stderr, "cannot open %s\n", vectors_path());
		free(vs);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *tab;

		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '#' || line[0] == '\0' ||
		    (tab = strchr(line, '\t')) == NULL)
			continue;
		*tab = '\0';
		vs->v = realloc(vs->v, (vs->n + 1) * sizeof(*vs->v));
		assert_non_null(vs->v);
		vs->v[vs->n].password = strdup(line);
		vs->v[vs->n].stored = strdup(tab + 1);
		vs->n++;
	}
	fclose(f);
	*state = vs;
	return vs->n > 0 ? 0 : -1;
}

static int free_vectors(void **state)
{
	struct vectors *vs = *state;

	for (size_t i = 0; i < vs->n; i++) {
		free(vs->v[i].password);
		free(vs->v[i].stored);
	}
	free(vs->v);
	free(vs);
	return 0;
}

static enum scheme_result verify(const char *stored, const char *pw)
{
	return scheme_verify(stored, "CRYPT", pw, strlen(pw), NULL);
}

static const struct vector *find_vector(const struct vectors *vs,
					const char *prefix)
{
	for (size_t i = 0; i < vs->n; i++) {
		if (strncmp(vs->v[i].stored, prefix, strlen(prefix)) == 0)
			return &vs->v[i];
	}
	fail_msg("no vector starting with %s", prefix);
	return NULL;
}

/* ---- Dovecot vectors ----------------------------------------------------- */

static void test_vectors_verify(void **state)
{
	const struct vectors *vs = *state;

	for (size_t i = 0; i < vs->n; i++) {
		const struct vector *v = &vs->v[i];
		char wrong[512];
		const char *err = NULL;

		if (scheme_verify(v->stored, "CRYPT", v->password,
				  strlen(v->password), &err) != SCHEME_OK)
			fail_msg("%s rejected its password: %s", v->stored,
				 err != NULL ? err : "?");
		/* first byte changed: DES-CRYPT only sees 8 bytes */
		snprintf(wrong, sizeof(wrong), "%c%s",
			 v->password[0] == 'Q' ? 'R' : 'Q', v->password + 1);
		if (verify(v->stored, wrong) != SCHEME_MISMATCH)
			fail_msg("%s accepted a wrong password", v->stored);
		/* DES-CRYPT reads 8 bytes, bcrypt 72: appending is invisible */
		if (strncmp(v->stored, "{DES-CRYPT}", 11) == 0 ||
		    (strstr(v->stored, "}$2y$") != NULL &&
		     strlen(v->password) >= 72))
			continue;
		snprintf(wrong, sizeof(wrong), "%s!", v->password);
		if (verify(v->stored, wrong) != SCHEME_MISMATCH)
			fail_msg("%s accepted password + '!'", v->stored);
	}
}

static void test_vectors_cover_schemes(void **state)
{
	static const char *const required[] = {
		"{PLAIN}", "{CLEARTEXT}", "{CRYPT}", "{SHA512-CRYPT}",
		"{SHA256-CRYPT}", "{MD5-CRYPT}", "{BLF-CRYPT}", "{ARGON2ID}",
		"{ARGON2I}", "{SHA}", "{SSHA}", "{SHA256}", "{SSHA256}",
		"{SHA512}", "{SSHA512}", "{PBKDF2}", "{CRAM-MD5}",
		"{SHA256.HEX}", "{SSHA512.HEX}", "{PLAIN.B64}", "{CRAM-MD5.B64}",
	};
	const struct vectors *vs = *state;

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		assert_non_null(find_vector(vs, required[i]));
}

/* ---- names, defaults, encodings ------------------------------------------ */

static char *lowercase_scheme(const char *stored)
{
	char *s = strdup(stored);

	assert_non_null(s);
	for (char *p = s + 1; *p != '}' && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return s;
}

static void test_case_insensitive(void **state)
{
	const char *prefixes[] = { "{SHA512-CRYPT}", "{SHA256.HEX}",
				   "{PLAIN.B64}", "{SSHA512}", "{CRAM-MD5}" };

	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		const struct vector *v = find_vector(*state, prefixes[i]);
		char *lower = lowercase_scheme(v->stored);

		assert_int_equal(verify(lower, v->password), SCHEME_OK);
		free(lower);
	}
	assert_int_equal(verify("{Plain.Hex}706c61696e", "plain"), SCHEME_OK);
}

static void test_default_scheme(void **state)
{
	const struct vector *v = find_vector(*state, "{SHA512-CRYPT}");
	const char *bare = v->stored + strlen("{SHA512-CRYPT}");

	assert_int_equal(scheme_verify(bare, "CRYPT", v->password,
				       strlen(v->password), NULL), SCHEME_OK);
	assert_int_equal(scheme_verify(bare, NULL, v->password,
				       strlen(v->password), NULL), SCHEME_OK);
	assert_int_equal(scheme_verify(bare, "crypt", "nope", 4, NULL),
			 SCHEME_MISMATCH);
	assert_int_equal(scheme_verify("secret", "PLAIN", "secret", 6, NULL),
			 SCHEME_OK);
	assert_int_equal(scheme_verify("c2VjcmV0", "PLAIN.B64", "secret", 6,
				       NULL), SCHEME_OK);
	/* a '{' without '}' is data for the default scheme */
	assert_int_equal(scheme_verify("{secret", "PLAIN", "{secret", 7, NULL),
			 SCHEME_OK);
}

/* Dovecot takes "$1$salt$hash[$ignored]" as MD5-CRYPT whatever the
   default scheme is, and ignores what follows the hash. */
static void test_md5_crypt_detection(void **state)
{
	const struct vector *v = find_vector(*state, "{MD5-CRYPT}");
	const char *bare = v->stored + strlen("{MD5-CRYPT}");
	char buf[256];

	assert_int_equal(scheme_verify(bare, "PLAIN", v->password,
				       strlen(v->password), NULL), SCHEME_OK);
	snprintf(buf, sizeof(buf), "%s$junk", bare);
	assert_int_equal(scheme_verify(buf, "PLAIN", v->password,
				       strlen(v->password), NULL), SCHEME_OK);
	/* any crypt() hash verifies under SHA512-CRYPT, as in Dovecot */
	snprintf(buf, sizeof(buf), "{SHA512-CRYPT}%s", bare);
	assert_int_equal(verify(buf, v->password), SCHEME_OK);
	/* "MD5" is MD5-CRYPT or PLAIN-MD5 */
	assert_int_equal(verify("{MD5}2ab34030f609d8399bc985bc3e145243",
				"pässwörd 42!"), SCHEME_OK);
}

/* Without ".hex"/".b64", fixed-size schemes guess hex by length. */
static void test_encoding_guess(void **state)
{
	const struct vector *hex = find_vector(*state, "{SHA256.HEX}");
	const struct vector *b64 = find_vector(*state, "{CRAM-MD5.B64}");
	char buf[256];

	snprintf(buf, sizeof(buf), "{SHA256}%s",
		 hex->stored + strlen("{SHA256.HEX}"));
	assert_int_equal(verify(buf, hex->password), SCHEME_OK);
	snprintf(buf, sizeof(buf), "{CRAM-MD5}%s",
		 b64->stored + strlen("{CRAM-MD5.B64}"));
	assert_int_equal(verify(buf, b64->password), SCHEME_OK);
	/* uppercase hex is fine */
	assert_int_equal(verify("{SHA.HEX}FF6C1B3292F86FB701327D1E76D8FF391994307D",
				"pässwörd 42!"), SCHEME_OK);
	/* Dovecot's base64 decoder skips whitespace */
	assert_int_equal(verify("{SHA} /2wbMpL4b7cBMn0e dtj/ORmUMH0= ",
				"pässwörd 42!"), SCHEME_OK);
}

/* ---- malformed and unknown ------------------------------------------------ */

static void test_malformed(void **state)
{
	static const char *const bad[] = {
		"{SHA256}abc",                          /* not base64 */
		"{SHA}/2wbMpL4b7cBMn0edtj/ORmUMH0",      /* padding missing */
		"{SHA}/2wbMpL4b7cBMn0edtj/ORmUMH0==",    /* padding extra */
		"{SHA}AAAA",                            /* wrong length */
		"{SHA256.HEX}zz",                       /* not hex */
		"{PLAIN.HEX}abc",                       /* odd hex */
		"{SHA512.HEX}00",                       /* wrong length */
		"{SSHA}/2wbMpL4b7cBMn0edtj/ORmUMH0=",    /* no salt */
		"{SSHA256}",                            /* empty */
		"{CRAM-MD5}be25",                       /* short context */
		"{BLF-CRYPT}$6$Ak0YUPxJ0/qv8vTS$CNEMceWyj20m0e3l6qxHlKQtc4OE",
		"{BLF-CRYPT}$2y$05$short",
		"{MD5-CRYPT}$6$Ak0YUPxJ0/qv8vTS$CNEMceWyj20m0e3l6qxHlKQtc4OE",
		"{CRYPT}*",                             /* crypt() refuses */
		"{MD5}nothex",
		"{PBKDF2}garbage",
		"{PBKDF2}$1$salt$+5000$fc99f2ca6f4a48fe94ecd74f959311ff7adba7d4",
		"{PBKDF2}$1$salt$5000$fc99f2ca6f4a48fe94ecd74f959311ff7adba7d4$",
		"{PBKDF2}$1$salt$0$fc99f2ca6f4a48fe94ecd74f959311ff7adba7d4",
		"{PBKDF2}$1$salt$99999999999$fc99f2ca6f4a48fe94ecd74f959311ff7adba7d4",
		"{PBKDF2}$1$salt$5000$fc99f2",
		"{PBKDF2}$1$salt$5000$zz99f2ca6f4a48fe94ecd74f959311ff7adba7d4",
		"{ARGON2ID}$argon2id$garbage",
		"{ARGON2I}",
		"{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$n7Sinxwu9O8Wi1rXkA6y9Q",
		"{SCRAM-SHA-1}4096,abc",
		"{SCRAM-SHA-1}100,GAF3X7ZnMqImXVc+2d1Vmg==,4b9DlRdE2EgBeZfY34p3WmAMVfU=,8QZhCUGtg6ON4ciauNwMtiRYTvo=",
		"{SCRAM-SHA-256}4096,GAF3X7ZnMqImXVc+2d1Vmg==,4b9DlRdE2EgBeZfY34p3WmAMVfU=,8QZhCUGtg6ON4ciauNwMtiRYTvo=",
		"{SCRAM-SHA-1}4096,GAF3X7ZnMqImXVc+2d1Vmg==,4b9DlRdE2EgBeZfY34p3WmAMVfU=,8QZhCUGtg6ON4ciauNwMtiRYTvo=,x",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *err = NULL;
		enum scheme_result r = scheme_verify(bad[i], "CRYPT", "pw", 2, &err);

		if (r != SCHEME_MALFORMED)
			fail_msg("%s: got %d, want MALFORMED", bad[i], r);
		assert_non_null(err);
	}
	assert_int_equal(scheme_verify(NULL, "CRYPT", "pw", 2, NULL),
			 SCHEME_MALFORMED);
}

static void test_unknown(void **state)
{
	static const char *const bad[] = {
		"{FOO}bar", "{}bar", "{SHA256.FOO}abc", "{SHA256.}abc",
		"{DIGEST-MD5}00112233445566778899aabbccddeeff", "{.HEX}00",
	};
	const char *err = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err = NULL;
		if (scheme_verify(bad[i], "CRYPT", "pw", 2, &err) != SCHEME_UNKNOWN)
			fail_msg("%s: want UNKNOWN", bad[i]);
		assert_non_null(err);
	}
	assert_int_equal(scheme_verify("nobraces", "BOGUS", "pw", 2, NULL),
			 SCHEME_UNKNOWN);
}

static void test_mismatch_edges(void **state)
{
	const char buf[] = "secretXYZ";

	/* an empty crypt hash never matches (crypt() would say yes) */
	assert_int_equal(verify("{CRYPT}", ""), SCHEME_MISMATCH);
	assert_int_equal(verify("", ""), SCHEME_MISMATCH);
	assert_int_equal(verify("{BLF-CRYPT}", "x"), SCHEME_MISMATCH);
	assert_int_equal(verify("{CRYPT}xx", "xx"), SCHEME_MISMATCH);
	/* pwlen counts, not the NUL */
	assert_int_equal(scheme_verify("{PLAIN}secret", NULL, buf, 6, NULL),
			 SCHEME_OK);
	assert_int_equal(scheme_verify("{PLAIN}secret", NULL, buf, 7, NULL),
			 SCHEME_MISMATCH);
	/* Dovecot passwords are C strings: an inner NUL never matches */
	assert_int_equal(scheme_verify("{PLAIN.HEX}610062", NULL, "a\0b", 3,
				       NULL), SCHEME_MISMATCH);
	assert_int_equal(scheme_verify("{PLAIN}", NULL, "", 0, NULL), SCHEME_OK);
}

/* ---- hashing --------------------------------------------------------------- */

static void roundtrip(const char *scheme, const char *pw)
{
	const char *err = NULL;
	char *h = scheme_hash(scheme, pw, strlen(pw), &err), *h2;
	char prefix[64];

	if (h == NULL)
		fail_msg("%s: %s", scheme, err);
	snprintf(prefix, sizeof(prefix), "{%s}", scheme);
	for (char *p = prefix; *p != '\0'; p++)
		*p = (char)toupper((unsigned char)*p);
	assert_memory_equal(h, prefix, strlen(prefix));
	if (verify(h, pw) != SCHEME_OK)
		fail_msg("%s: own hash %s rejected", scheme, h);
	assert_int_equal(verify(h, "wrong password"), SCHEME_MISMATCH);
	/* salted schemes must not repeat themselves */
	h2 = scheme_hash(scheme, pw, strlen(pw), NULL);
	assert_non_null(h2);
	assert_int_equal(verify(h2, pw), SCHEME_OK);
	free(h2);
	free(h);
}

static void test_hash_roundtrip(void **state)
{
	const char *const *names = scheme_names();

	for (size_t i = 0; names[i] != NULL; i++) {
		if (strcmp(names[i], "DES-CRYPT") != 0)
			roundtrip(names[i], "pässwörd 42!");
	}
	roundtrip("DES-CRYPT", "secret");
	roundtrip("ssha512.hex", "x");
	roundtrip("PLAIN.B64", "with space and : colon");
	roundtrip("SHA256.base64", "y");
	roundtrip("CRAM-MD5", "a password longer than sixty-four bytes, so "
		  "HMAC hashes the key first");
}

static void test_hash_salted_differ(void **state)
{
	const char *schemes[] = { "SHA512-CRYPT", "SSHA256", "ARGON2ID",
				  "BLF-CRYPT", "PBKDF2" };

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		char *a = scheme_hash(schemes[i], "pw", 2, NULL);
		char *b = scheme_hash(schemes[i], "pw", 2, NULL);

		assert_non_null(a);
		assert_non_null(b);
		assert_string_not_equal(a, b);
		free(a);
		free(b);
	}
}

static void test_hash_rounds(void **state)
{
	struct { const char *scheme; unsigned int rounds; const char *want; }
	cases[] = {
		{ "SHA512-CRYPT", 0, "{SHA512-CRYPT}$6$" },
		{ "SHA512-CRYPT", 10000, "{SHA512-CRYPT}$6$rounds=10000$" },
		{ "SHA256-CRYPT", 1000, "{SHA256-CRYPT}$5$rounds=1000$" },
		{ "BLF-CRYPT", 0, "{BLF-CRYPT}$2y$05$" },
		{ "BLF-CRYPT", 1, "{BLF-CRYPT}$2y$04$" },
		{ "CRYPT", 6, "{CRYPT}$2y$06$" },
		{ "PBKDF2", 1000, "{PBKDF2}$1$" },
		{ "ARGON2ID", 0, "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$" },
		{ "ARGON2I", 0, "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$" },
		{ "SCRAM-SHA-1", 0, "{SCRAM-SHA-1}4096," },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *h = scheme_hash_rounds(cases[i].scheme, cases[i].rounds,
					     "pw", 2, NULL);

		assert_non_null(h);
		if (strncmp(h, cases[i].want, strlen(cases[i].want)) != 0)
			fail_msg("%s/%u: %s", cases[i].scheme, cases[i].rounds, h);
		assert_int_equal(verify(h, "pw"), SCHEME_OK);
		free(h);
	}
}

static void test_hash_errors(void **state)
{
	const char *err = NULL;

	assert_null(scheme_hash("NOPE", "pw", 2, &err));
	assert_non_null(err);
	assert_null(scheme_hash("SHA256.XYZ", "pw", 2, NULL));
	assert_null(scheme_hash(NULL, "pw", 2, NULL));
	err = NULL;
	assert_null(scheme_hash("PLAIN", "a\0b", 3, &err));
	assert_non_null(err);
}

static void test_scheme_names(void **state)
{
	static const char *const want[] = {
		"PLAIN", "CLEARTEXT", "CRYPT", "SHA512-CRYPT", "SHA256-CRYPT",
		"MD5-CRYPT", "BLF-CRYPT", "ARGON2ID", "ARGON2I", "SHA", "SSHA",
		"SHA256", "SSHA256", "SHA512", "SSHA512", "PBKDF2", "CRAM-MD5",
	};
	const char *const *names = scheme_names();

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bool found = false;

		for (size_t j = 0; names[j] != NULL; j++)
			found = found || strcmp(names[j], want[i]) == 0;
		if (!found)
			fail_msg("%s missing from scheme_names()", want[i]);
	}
}

/* ---- CRAM-MD5 and APOP ----------------------------------------------------- */

static void hmac_md5_hex(const char *key, const char *msg, char out[33])
{
	unsigned char d[16];

	assert_non_null(HMAC(EVP_md5(), key, (int)strlen(key),
			     (const unsigned char *)msg, strlen(msg), d, NULL));
	for (size_t i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static enum scheme_result cram(const char *stored, const char *challenge,
			       const char *response)
{
	return scheme_verify_cram_md5(stored, "CRYPT", challenge,
				      strlen(challenge), response,
				      strlen(response), NULL);
}

static void test_cram_md5(void **state)
{
	/* RFC 2195 section 2 */
	const char *ch = "<1896.697170952@postoffice.reston.mci.net>";
	const char *resp = "b913a602c7eda7a495b4e6e7334d3890";
	const struct vector *v = find_vector(*state, "{CRAM-MD5}");
	const struct vector *longpw = NULL;
	char want[33];

	assert_int_equal(cram("{PLAIN}tanstaaftanstaaf", ch, resp), SCHEME_OK);
	assert_int_equal(cram("{CLEARTEXT}tanstaaftanstaaf", ch,
			      "B913A602C7EDA7A495B4E6E7334D3890"), SCHEME_OK);
	assert_int_equal(cram("{PLAIN}tanstaaftanstaag", ch, resp),
			 SCHEME_MISMATCH);
	assert_int_equal(cram("{PLAIN}tanstaaftanstaaf", ch, "b913"),
			 SCHEME_MISMATCH);
	/* Dovecot's stored context, from doveadm, for short and long keys */
	for (size_t i = 0; i < ((const struct vectors *)*state)->n; i++) {
		const struct vector *w = &((const struct vectors *)*state)->v[i];

		if (strncmp(w->stored, "{CRAM-MD5}", 10) == 0 &&
		    strlen(w->password) > 64)
			longpw = w;
	}
	assert_non_null(longpw);
	hmac_md5_hex(v->password, ch, want);
	assert_int_equal(cram(v->stored, ch, want), SCHEME_OK);
	want[0] = want[0] == '0' ? '1' : '0';
	assert_int_equal(cram(v->stored, ch, want), SCHEME_MISMATCH);
	hmac_md5_hex(longpw->password, "<x@y>", want);
	assert_int_equal(cram(longpw->stored, "<x@y>", want), SCHEME_OK);
	/* a one-way hash cannot answer a challenge */
	assert_int_equal(cram(find_vector(*state, "{SHA512-CRYPT}")->stored,
			      ch, resp), SCHEME_UNKNOWN);
	assert_int_equal(cram("{SHA256}abc", ch, resp), SCHEME_MALFORMED);
}

static void test_apop(void **state)
{
	/* RFC 1939 section 7 */
	const char *ch = "<1896.697170952@dbc.mtview.ca.us>";
	const char *resp = "c4c9334bac560ecc979e58001b3e22fb";

	assert_int_equal(scheme_verify_apop("{PLAIN}tanstaaf", NULL, ch,
					    strlen(ch), resp, strlen(resp),
					    NULL), SCHEME_OK);
	assert_int_equal(scheme_verify_apop("{PLAIN.B64}dGFuc3RhYWY=", NULL, ch,
					    strlen(ch), resp, strlen(resp),
					    NULL), SCHEME_OK);
	assert_int_equal(scheme_verify_apop("{PLAIN}tanstaag", NULL, ch,
					    strlen(ch), resp, strlen(resp),
					    NULL), SCHEME_MISMATCH);
	assert_int_equal(scheme_verify_apop("{CRAM-MD5}be254021a90edfe6f58962c1178378353baeeeb40263878f313e74b6127de63c",
					    NULL, ch, strlen(ch), resp,
					    strlen(resp), NULL), SCHEME_UNKNOWN);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_verify),
		cmocka_unit_test(test_vectors_cover_schemes),
		cmocka_unit_test(test_case_insensitive),
		cmocka_unit_test(test_default_scheme),
		cmocka_unit_test(test_md5_crypt_detection),
		cmocka_unit_test(test_encoding_guess),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_mismatch_edges),
		cmocka_unit_test(test_hash_roundtrip),
		cmocka_unit_test(test_hash_salted_differ),
		cmocka_unit_test(test_hash_rounds),
		cmocka_unit_test(test_hash_errors),
		cmocka_unit_test(test_scheme_names),
		cmocka_unit_test(test_cram_md5),
		cmocka_unit_test(test_apop),
	};

	return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
