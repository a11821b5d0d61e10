/* dovegate-auth: nginx auth_http request decoding, response building, the
   decision log line, and whole decisions against a small runtime. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "authhttp.h"
#include "backend.h"
#include "decision.h"
#include "external.h"
#include "log.h"
#include "penalty.h"
#include "runtime.h"
#include "session.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---------------------------------------------------------------- */

/* A typical request from nginx; tests override single headers. */
struct reqb {
	struct authhttp_pair p[16];
	size_t n;
};

static void reqb_set(struct reqb *b, const char *name, const char *value)
{
	for (size_t i = 0; i < b->n; i++) {
		if (strcmp(b->p[i].name, name) == 0) {
			if (value == NULL) {
				b->p[i] = b->p[--b->n];
			} else {
				b->p[i].value = value;
			}
			return;
		}
	}
	if (value != NULL) {
		b->p[b->n].name = name;
		b->p[b->n].value = value;
		b->n++;
	}
}

static void reqb_init(struct reqb *b)
{
	b->n = 0;
	reqb_set(b, "Host", "localhost");
	reqb_set(b, "Auth-Method", "plain");
	reqb_set(b, "Auth-User", "alice");
	reqb_set(b, "Auth-Pass", "secret");
	reqb_set(b, "Auth-Protocol", "imap");
	reqb_set(b, "Auth-Login-Attempt", "1");
	reqb_set(b, "Client-IP", "192.0.2.7");
	reqb_set(b, "X-Dovegate-Secret", "s3cr3t");
}

static void parse(struct authhttp_request *r, struct reqb *b)
{
	authhttp_request_parse(r, b->p, b->n);
}

/* "Name: value\r\n..." of a response, for exact comparisons. */
static void render(const struct authhttp_response *resp, char *out, size_t outlen)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < resp->count; i++)
		len += (size_t)snprintf(out + len, outlen - len, "%s: %s\r\n",
					resp->headers[i].name, resp->headers[i].value);
}

/* ---- decoding ----------------------------------------------------------------- */

static void test_decode(void **state)
{
	char *out;
	size_t len;

	assert_int_equal(authhttp_decode("a%20b%25c", 9, &out, &len), 0);
	assert_string_equal(out, "a b%c");
	assert_int_equal(len, 5);
	free(out);
	/* a raw '+' is a plus; nginx never form-encodes */
	assert_int_equal(authhttp_decode("p+w%2b", 6, &out, &len), 0);
	assert_string_equal(out, "p+w+");
	free(out);
	assert_int_equal(authhttp_decode("x%00y", 5, &out, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "x\0y", 3);
	free(out);
	assert_int_equal(authhttp_decode("", 0, &out, &len), 0);
	assert_int_equal(len, 0);
	free(out);
}

static void test_decode_bad_sequences(void **state)
{
	const char *bad[] = { "%", "a%", "%4", "a%4", "%zz", "%4g", "%g4", "%%", "% 1" };
	char *out = NULL;
	size_t len;

	for (size_t i = 0; i < N(bad); i++)
		assert_int_equal(authhttp_decode(bad[i], strlen(bad[i]), &out, &len), -1);
}

/* ---- requests ----------------------------------------------------------------- */

static void test_parse_ok(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	reqb_set(&b, "Auth-Pass", "p%20w+%25");
	reqb_set(&b, "Auth-Login-Attempt", "12");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_OK);
	assert_int_equal(r.method, AUTHHTTP_METHOD_PLAIN);
	assert_true(r.has_proto);
	assert_int_equal(r.proto, DG_PROTO_IMAP);
	assert_string_equal(r.user, "alice");
	assert_int_equal(r.pass_len, 5);
	assert_string_equal(r.pass, "p w+%");
	assert_string_equal(r.client_ip, "192.0.2.7");
	assert_int_equal(r.attempt, 12);
	authhttp_request_clear(&r);
}

static void test_parse_header_names_case_insensitive(void **state)
{
	struct authhttp_pair p[] = {
		{ "auth-method", "plain" }, { "AUTH-USER", "bob" }, { "auth-pass", "x" },
		{ "Auth-protocol", "pop3" }, { "auth-login-attempt", "2" },
		{ "client-ip", "2001:db8::1" },
	};
	struct authhttp_request r;

	authhttp_request_parse(&r, p, N(p));
	assert_int_equal(r.status, AUTHHTTP_OK);
	assert_int_equal(r.proto, DG_PROTO_POP3);
	assert_string_equal(r.user, "bob");
	authhttp_request_clear(&r);
}

static void test_parse_refuses_nul_cr_lf(void **state)
{
	const char *values[] = { "a%00b", "a%0Db", "a%0ab", "%0D%0ADELE 1" };
	const char *headers[] = { "Auth-User", "Auth-Pass" };
	struct authhttp_request r;
	struct reqb b;

	for (size_t h = 0; h < N(headers); h++) {
		for (size_t i = 0; i < N(values); i++) {
			reqb_init(&b);
			reqb_set(&b, headers[h], values[i]);
			parse(&r, &b);
			assert_int_equal(r.status, AUTHHTTP_BAD_CREDENTIALS);
			assert_non_null(strstr(r.detail, "NUL, CR or LF"));
			authhttp_request_clear(&r);
		}
	}
	/* other control bytes are not ours to refuse */
	reqb_init(&b);
	reqb_set(&b, "Auth-Pass", "a%09b%1F");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_OK);
	authhttp_request_clear(&r);
}

static void test_parse_bad_escape(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	reqb_set(&b, "Auth-User", "al%zzice");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
	assert_string_equal(r.detail, "bad %-escape in Auth-User");
	assert_null(r.user);
	assert_string_equal(r.user_raw, "al%zzice");
	authhttp_request_clear(&r);

	reqb_init(&b);
	reqb_set(&b, "Auth-Pass", "x%4");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
	assert_string_equal(r.detail, "bad %-escape in Auth-Pass");
	authhttp_request_clear(&r);
}

static void test_parse_missing_headers(void **state)
{
	const char *required[] = { "Auth-Method", "Auth-Protocol", "Client-IP",
				   "Auth-Login-Attempt", "Auth-User", "Auth-Pass" };
	struct authhttp_request r;
	struct reqb b;
	char want[64];

	for (size_t i = 0; i < N(required); i++) {
		reqb_init(&b);
		reqb_set(&b, required[i], NULL);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
		snprintf(want, sizeof(want), "missing %s header", required[i]);
		assert_string_equal(r.detail, want);
		authhttp_request_clear(&r);
	}
}

static void test_parse_duplicate_header(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	b.p[b.n].name = "auth-user";
	b.p[b.n].value = "mallory";
	b.n++;
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
	assert_string_equal(r.detail, "duplicate Auth-User header");
	authhttp_request_clear(&r);
}

static void test_parse_unknown_protocol(void **state)
{
	const char *bad[] = { "IMAP", "http", "", "smtps" };
	struct authhttp_request r;
	struct reqb b;

	for (size_t i = 0; i < N(bad); i++) {
		reqb_init(&b);
		reqb_set(&b, "Auth-Protocol", bad[i]);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
		assert_string_equal(r.detail, "unknown Auth-Protocol");
		assert_false(r.has_proto);
		authhttp_request_clear(&r);
	}
}

static void test_parse_client_ip(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	reqb_set(&b, "Client-IP", "mail.example.com");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
	authhttp_request_clear(&r);
}

static void test_parse_attempt(void **state)
{
	const char *good[] = { "1", "2", "10", "999999" };
	const unsigned long want[] = { 1, 2, 10, 999999 };
	const char *bad[] = { "0", "01", "-1", "+1", "1a", "", " 1", "1000000", "0x10" };
	struct authhttp_request r;
	struct reqb b;

	for (size_t i = 0; i < N(good); i++) {
		reqb_init(&b);
		reqb_set(&b, "Auth-Login-Attempt", good[i]);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_OK);
		assert_int_equal(r.attempt, want[i]);
		authhttp_request_clear(&r);
	}
	for (size_t i = 0; i < N(bad); i++) {
		reqb_init(&b);
		reqb_set(&b, "Auth-Login-Attempt", bad[i]);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
		assert_string_equal(r.detail, "bad Auth-Login-Attempt");
		authhttp_request_clear(&r);
	}
}

static void test_parse_method_none_ignores_credentials(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	reqb_set(&b, "Auth-Method", "none");
	reqb_set(&b, "Auth-Protocol", "smtp");
	reqb_set(&b, "Auth-User", "stale%zz");
	reqb_set(&b, "Auth-Pass", "x%0Ay");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_OK);
	assert_int_equal(r.method, AUTHHTTP_METHOD_NONE);
	assert_null(r.user);
	assert_null(r.pass);
	authhttp_request_clear(&r);
}

#define APOP_SALT "<1896.697170952@dbc.mtview.ca.us>"

static void test_parse_salt_methods(void **state)
{
	const char *methods[] = { "apop", "cram-md5" };
	const enum authhttp_method want[] = { AUTHHTTP_METHOD_APOP, AUTHHTTP_METHOD_CRAM_MD5 };
	struct authhttp_request r;
	struct reqb b;

	for (size_t i = 0; i < N(methods); i++) {
		reqb_init(&b);
		reqb_set(&b, "Auth-Method", methods[i]);
		reqb_set(&b, "Auth-Pass", "3f18b52881e44c0cc6067f46e0ced7bc");
		/* the line nginx writes carries its own CRLF: exactly that goes */
		reqb_set(&b, "Auth-Salt", APOP_SALT "\r\n");
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_OK);
		assert_int_equal(r.method, want[i]);
		assert_string_equal(r.salt, APOP_SALT);
		assert_int_equal(r.salt_len, strlen(APOP_SALT));
		assert_string_equal(r.pass, "3f18b52881e44c0cc6067f46e0ced7bc");
		authhttp_request_clear(&r);

		/* already stripped by the HTTP parser: kept whole */
		reqb_set(&b, "Auth-Salt", APOP_SALT);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_OK);
		assert_string_equal(r.salt, APOP_SALT);
		authhttp_request_clear(&r);

		/* one CRLF only */
		reqb_set(&b, "Auth-Salt", APOP_SALT "\r\n\r\n");
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
		authhttp_request_clear(&r);

		reqb_set(&b, "Auth-Salt", "\r\n");
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
		authhttp_request_clear(&r);

		reqb_set(&b, "Auth-Salt", NULL);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
		assert_string_equal(r.detail, "missing Auth-Salt header");
		authhttp_request_clear(&r);
	}
}

static void test_parse_smtp_to(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	reqb_set(&b, "Auth-Method", "none");
	reqb_set(&b, "Auth-Protocol", "smtp");
	reqb_set(&b, "Auth-SMTP-Helo", "client.example.com");
	reqb_set(&b, "Auth-SMTP-From", "MAIL FROM:<a@example.com>");
	reqb_set(&b, "Auth-SMTP-To", "RCPT TO:<b@example.org>");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_OK);
	assert_string_equal(r.smtp_to, "RCPT TO:<b@example.org>");
	assert_null(r.user);
	authhttp_request_clear(&r);
}

/* A self-signed test certificate (O=Test Org, CN=alice,
   emailAddress=alice@example.org) as nginx sends it: %XX-escaped PEM. */
static const char cert_header[] =
	"-----BEGIN%20CERTIFICATE-----%0AMIIB4TCCAYegAwIBAgIUbA9qx+TgnSeO4OMCv6"
	"cDQv2MTaIwCgYIKoZIzj0EAwIw%0ARTERMA8GA1UECgwIVGVzdCBPcmcxDjAMBgNVBAMMB"
	"WFsaWNlMSAwHgYJKoZIhvcN%0AAQkBFhFhbGljZUBleGFtcGxlLm9yZzAgFw0yNjExMjIw"
	"NTA4MzZaGA8yMTI2MTAy%0AOTA1MDgzNlowRTERMA8GA1UECgwIVGVzdCBPcmcxDjAMBgN"
	"VBAMMBWFsaWNlMSAw%0AHgYJKoZIhvcNAQkBFhFhbGljZUBleGFtcGxlLm9yZzBZMBMGBy"
	"qGSM49AgEGCCqG%0ASM49AwEHA0IABOQrxHOTAksXunq5jGmKVH6imspnRDxeeoHQz82YT"
	"jEp/6ecY+5q%0Ayl/rAfydBgTBljNe6zGkWIaZi4u8T8coMxGjUzBRMB0GA1UdDgQWBBRm"
	"lBP9sZZw%0AhCPhIB2CmMN5EwSyCDAfBgNVHSMEGDAWgBRmlBP9sZZwhCPhIB2CmMN5EwS"
	"yCDAP%0ABgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQD1AXrDoO1bWNK9n5"
	"HF%0AepvCyAH7eFsmzal6US7GFT3pAwIgTragCU8QfSTbEaV2KVkz0MeeacdW3Q/S9XsM%"
	"0Akzl/JTQ=%0A-----END%20CERTIFICATE-----%0A";
#define CERT_SHA1 "12300dd2f228cde3bcbc4d8f538ef9455e2d19ff"

static void test_parse_external(void **state)
{
	struct authhttp_request r;
	struct reqb b;

	reqb_init(&b);
	reqb_set(&b, "Auth-Method", "external");
	reqb_set(&b, "Auth-User", "");
	reqb_set(&b, "Auth-Pass", "");
	reqb_set(&b, "Auth-SSL", "on");
	reqb_set(&b, "Auth-SSL-Verify", "SUCCESS");
	reqb_set(&b, "Auth-SSL-Subject", "emailAddress=alice@example.org,CN=alice,O=Test Org");
	reqb_set(&b, "Auth-SSL-Fingerprint", CERT_SHA1);
	reqb_set(&b, "Auth-SSL-Cert", cert_header);
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_OK);
	assert_int_equal(r.method, AUTHHTTP_METHOD_EXTERNAL);
	assert_string_equal(r.ssl_verify, "SUCCESS");
	assert_string_equal(r.ssl_fingerprint, CERT_SHA1);
	assert_non_null(r.ssl_cert);
	assert_true(strncmp(r.ssl_cert, "-----BEGIN CERTIFICATE-----\n", 28) == 0);
	assert_int_equal(r.ssl_cert_len, strlen(r.ssl_cert));
	assert_null(strchr(r.ssl_cert, '%'));
	assert_int_equal(r.user_len, 0);
	authhttp_request_clear(&r);

	reqb_set(&b, "Auth-SSL-Cert", "-----BEGIN%zz");
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_BAD_REQUEST);
	assert_string_equal(r.detail, "bad %-escape in Auth-SSL-Cert");
	authhttp_request_clear(&r);
}

static void test_parse_other_methods(void **state)
{
	const char *methods[] = { "login", "PLAIN", "APOP", "EXTERNAL" };
	struct authhttp_request r;
	struct reqb b;

	for (size_t i = 0; i < N(methods); i++) {
		reqb_init(&b);
		reqb_set(&b, "Auth-Method", methods[i]);
		parse(&r, &b);
		assert_int_equal(r.status, AUTHHTTP_OK);
		assert_int_equal(r.method, AUTHHTTP_METHOD_OTHER);
		assert_string_equal(r.method_name, methods[i]);
		authhttp_request_clear(&r);
	}
}

static void test_parse_too_long(void **state)
{
	char user[AUTHHTTP_USER_MAX + 2];
	struct authhttp_request r;
	struct reqb b;

	memset(user, 'u', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	reqb_init(&b);
	reqb_set(&b, "Auth-User", user);
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_BAD_CREDENTIALS);
	authhttp_request_clear(&r);
	user[AUTHHTTP_USER_MAX] = '\0';
	reqb_set(&b, "Auth-User", user);
	parse(&r, &b);
	assert_int_equal(r.status, AUTHHTTP_OK);
	authhttp_request_clear(&r);
}

static void test_secret(void **state)
{
	struct reqb b;

	reqb_init(&b);
	assert_true(authhttp_secret_ok(b.p, b.n, "X-Dovegate-Secret", "s3cr3t", 6));
	assert_true(authhttp_secret_ok(b.p, b.n, "x-dovegate-secret", "s3cr3t", 6));
	assert_false(authhttp_secret_ok(b.p, b.n, "X-Dovegate-Secret", "s3cr3T", 6));
	assert_false(authhttp_secret_ok(b.p, b.n, "X-Dovegate-Secret", "s3cr3", 5));
	assert_false(authhttp_secret_ok(b.p, b.n, "X-Dovegate-Secret", "s3cr3tt", 7));
	assert_false(authhttp_secret_ok(b.p, b.n, "X-Other", "s3cr3t", 6));
	reqb_set(&b, "X-Dovegate-Secret", "");
	assert_false(authhttp_secret_ok(b.p, b.n, "X-Dovegate-Secret", "s3cr3t", 6));
	/* a second copy, even a right one, is refused */
	reqb_init(&b);
	b.p[b.n].name = "X-Dovegate-Secret";
	b.p[b.n].value = "s3cr3t";
	b.n++;
	assert_false(authhttp_secret_ok(b.p, b.n, "X-Dovegate-Secret", "s3cr3t", 6));
}

/* ---- responses ---------------------------------------------------------------- */

static void test_response_ok(void **state)
{
	struct authhttp_response resp;
	char out[1024];

	assert_int_equal(authhttp_response_ok(&resp, "2001:db8::5", "10143",
					      "alice*dovegate", 14, "m p", 3), 0);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: OK\r\nAuth-Server: 2001:db8::5\r\n"
			    "Auth-Port: 10143\r\nAuth-User: alice*dovegate\r\n"
			    "Auth-Pass: m p\r\n");
	assert_int_equal(authhttp_response_check(&resp, out, sizeof(out)), AUTHHTTP_CHECK_OK);
	authhttp_response_clear(&resp);

	/* route only (Auth-Method none) */
	assert_int_equal(authhttp_response_ok(&resp, "127.0.0.1", "10587", NULL, 0, NULL, 0), 0);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
			    "Auth-Port: 10587\r\n");
	authhttp_response_clear(&resp);
}

static void test_response_fail(void **state)
{
	struct authhttp_response resp;
	char out[1024];

	authhttp_response_fail(&resp, DG_PROTO_IMAP);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n");
	authhttp_response_clear(&resp);
	authhttp_response_fail(&resp, DG_PROTO_POP3);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n");
	authhttp_response_clear(&resp);
	authhttp_response_fail(&resp, DG_PROTO_SMTP);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n"
			    "Auth-Error-Code: 535 5.7.8\r\n");
	authhttp_response_clear(&resp);
}

static void test_response_tempfail(void **state)
{
	struct authhttp_response resp;
	char out[1024];

	authhttp_response_tempfail(&resp, DG_PROTO_IMAP, true);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Temporary server problem, try again later\r\n"
			    "Auth-Wait: 3\r\n");
	authhttp_response_clear(&resp);
	authhttp_response_tempfail(&resp, DG_PROTO_SMTP, true);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Temporary server problem, try again later\r\n"
			    "Auth-Wait: 3\r\nAuth-Error-Code: 454 4.7.0\r\n");
	authhttp_response_clear(&resp);
	/* without Auth-Wait nginx closes the client connection */
	authhttp_response_tempfail(&resp, DG_PROTO_POP3, false);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Temporary server problem, try again later\r\n");
	authhttp_response_clear(&resp);
	authhttp_response_unsupported(&resp, DG_PROTO_SMTP);
	render(&resp, out, sizeof(out));
	assert_string_equal(out, "Auth-Status: Authentication method not supported\r\n"
			    "Auth-Wait: 3\r\nAuth-Error-Code: 504 5.5.4\r\n");
	authhttp_response_clear(&resp);
}

static void test_response_never_wait(void **state)
{
	struct authhttp_response resp;
	enum dg_proto protos[] = { DG_PROTO_IMAP, DG_PROTO_POP3, DG_PROTO_SMTP };

	for (size_t i = 0; i < N(protos); i++) {
		authhttp_response_fail(&resp, protos[i]);
		assert_string_not_equal(resp.headers[0].value, "WAIT");
		authhttp_response_clear(&resp);
		authhttp_response_tempfail(&resp, protos[i], true);
		assert_string_not_equal(resp.headers[0].value, "WAIT");
		authhttp_response_clear(&resp);
	}
}

static void test_response_size_limit(void **state)
{
	/* Fixed part: "Auth-Status: OK\r\n" 17, "Auth-Server: 127.0.0.1\r\n" 24,
	   "Auth-Port: 143\r\n" 16, "Auth-User: " + "\r\n" 13, "Auth-Pass: x\r\n" 14. */
	size_t fixed = 17 + 24 + 16 + 13 + 14 + AUTHHTTP_HEAD_OVERHEAD;
	size_t fits = AUTHHTTP_HEAD_LIMIT - 1 - fixed;
	char *user = malloc(fits + 2);
	struct authhttp_response resp;
	char detail[160];

	memset(user, 'u', fits + 1);
	authhttp_response_ok(&resp, "127.0.0.1", "143", user, fits, "x", 1);
	assert_int_equal(authhttp_response_head_size(&resp), AUTHHTTP_HEAD_LIMIT - 1);
	assert_int_equal(authhttp_response_check(&resp, detail, sizeof(detail)),
			 AUTHHTTP_CHECK_OK);
	authhttp_response_clear(&resp);

	authhttp_response_ok(&resp, "127.0.0.1", "143", user, fits + 1, "x", 1);
	assert_int_equal(authhttp_response_head_size(&resp), AUTHHTTP_HEAD_LIMIT);
	assert_int_equal(authhttp_response_check(&resp, detail, sizeof(detail)),
			 AUTHHTTP_CHECK_TOO_LARGE);
	assert_non_null(strstr(detail, "1024"));
	authhttp_response_clear(&resp);
	free(user);
}

static void test_response_bad_values(void **state)
{
	const char *bad[] = { " lead", "trail ", "a\tb", "a\x7f" };
	struct authhttp_response resp;
	char detail[160];

	for (size_t i = 0; i < N(bad); i++) {
		authhttp_response_ok(&resp, "127.0.0.1", "143", "u", 1, bad[i], strlen(bad[i]));
		assert_int_equal(authhttp_response_check(&resp, detail, sizeof(detail)),
				 AUTHHTTP_CHECK_BAD_VALUE);
		assert_non_null(strstr(detail, "Auth-Pass"));
		authhttp_response_clear(&resp);
	}
}

/* ---- backends, session ids, log lines --------------------------------------- */

static void test_backend_parse(void **state)
{
	struct backend b;
	const char *err;

	assert_int_equal(backend_parse("127.0.0.1:10143", &b, &err), 0);
	assert_string_equal(b.ip, "127.0.0.1");
	assert_int_equal(b.port, 10143);
	assert_string_equal(b.port_text, "10143");
	assert_string_equal(b.text, "127.0.0.1:10143");
	assert_int_equal(backend_parse("[2001:DB8:0::1]:110", &b, &err), 0);
	assert_string_equal(b.ip, "2001:db8::1");        /* no brackets for nginx */
	assert_string_equal(b.text, "[2001:db8::1]:110");
	const char *bad[] = { "localhost:143", "127.0.0.1", "127.0.0.1:0",
			      "127.0.0.1:65536", "::1:143", "[::1]143", "[::1]:",
			      ":143", "127.0.0.1:14x", "[127.0.0.1]:143" };
	for (size_t i = 0; i < N(bad); i++)
		assert_int_equal(backend_parse(bad[i], &b, &err), -1);
}

static void test_session_id(void **state)
{
	char a[SESSION_ID_LEN + 1], b[SESSION_ID_LEN + 1];

	session_id_new(a);
	session_id_new(b);
	assert_int_equal(strlen(a), 22);
	assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
				"0123456789-_"), 22);
	assert_string_not_equal(a, b);
}

static void test_kv_escaping(void **state)
{
	struct kvline kv;

	kv_init(&kv, "decision");
	kv_add(&kv, "user", "alice");
	kv_add(&kv, "reason", NULL);
	kv_add(&kv, "detail", "two words");
	kv_add(&kv, "q", "a\"b\\c");
	kv_addn(&kv, "c", "x\r\ny\0\x7f\xc3\xa9", 8);
	kv_add(&kv, "e", "");
	kv_add(&kv, "eq", "a=b");
	assert_string_equal(kv_str(&kv),
		"decision user=alice reason=- detail=\"two words\" q=\"a\\\"b\\\\c\" "
		"c=\"x\\r\\ny\\x00\\x7f\xc3\xa9\" e=\"\" eq=\"a=b\"");
}

/* ---- whole decisions -------------------------------------------------------- */

struct fixture {
	char dir[64];
	struct runtime *rt;
	struct dglog log;
	char reply[1024];
	int replies;
};

static void write_file(const char *dir, const char *name, const char *text, mode_t mode)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, mode);
}

static int fixture_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char path[128], err[1024];

	strcpy(fx->dir, "/tmp/dg-test-authhttp-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	write_file(fx->dir, "secret", "s3cr3t\n", 0600);
	write_file(fx->dir, "master", "m4ster\n", 0600);
	write_file(fx->dir, "users",
		   "alice:{PLAIN}secret::::::\n"
		   "nopw:::::::\n"
		   "odd:{NOSUCHSCHEME}x::::::\n"
		   "hashed:{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=::::::\n", 0644);
	write_file(fx->dir, "auth.conf",
		   "[server]\nsecret_file = secret\n"
		   "[passdb]\npath = users\n"
		   "[backend]\nimap = 127.0.0.1:10143\nsmtp = [::1]:10587\n"
		   "[credentials]\nmode = master\nmaster_user = dovegate\n"
		   "master_password_file = master\n"
		   "[relay]\ndomains = example.org Example.NET\n", 0644);
	snprintf(path, sizeof(path), "%s/auth.conf", fx->dir);
	dglog_init(&fx->log);
	fx->rt = runtime_load(path, true, &fx->log, err, sizeof(err));
	if (fx->rt == NULL)
		fail_msg("%s", err);
	*state = fx;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *fx = *state;
	const char *names[] = { "secret", "master", "users", "auth.conf" };
	char path[128];

	runtime_unref(fx->rt);
	for (size_t i = 0; i < N(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", fx->dir, names[i]);
		unlink(path);
	}
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static void on_reply(void *ctx, const struct authhttp_response *resp)
{
	struct fixture *fx = ctx;

	render(resp, fx->reply, sizeof(fx->reply));
	fx->replies++;
}

/* Runs one decision (hashing inline) and returns its log line. */
static const char *decide(struct fixture *fx, struct reqb *b)
{
	static char line[4096];
	struct decision_env env = { fx->rt, NULL, &fx->log };
	int saved = dup(STDERR_FILENO);
	FILE *cap = tmpfile();
	ssize_t n;

	fx->replies = 0;
	fflush(stderr);
	dup2(fileno(cap), STDERR_FILENO);
	decision_run(&env, b->p, b->n, on_reply, fx);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_int_equal(fx->replies, 1);
	n = pread(fileno(cap), line, sizeof(line) - 1, 0);
	fclose(cap);
	line[n > 0 ? n : 0] = '\0';
	fputs(line, stderr);   /* keep it visible in the test log */
	return line;
}

static void test_decision_ok_master(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	reqb_init(&b);
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
			    "Auth-Port: 10143\r\nAuth-User: alice*dovegate\r\n"
			    "Auth-Pass: m4ster\r\n");
	assert_non_null(strstr(line, " decision session="));
	assert_non_null(strstr(line, " proto=imap method=plain user=alice rip=192.0.2.7 "
			       "result=ok reason=- backend=127.0.0.1:10143 mode=master "
			       "attempt=1 cache=miss duration_ms="));
	assert_null(strstr(line, "secret"));
}

static void test_decision_failures(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	reqb_init(&b);
	reqb_set(&b, "Auth-Pass", "wrong");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n");
	assert_non_null(strstr(line, "user=alice rip=192.0.2.7 result=fail reason=bad_password "
			       "backend=- mode=- attempt=1"));
	assert_null(strstr(line, "wrong"));

	reqb_set(&b, "Auth-User", "bob");
	reqb_set(&b, "Auth-Protocol", "smtp");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n"
			    "Auth-Error-Code: 535 5.7.8\r\n");
	assert_non_null(strstr(line, "result=fail reason=unknown_user"));

	reqb_init(&b);
	reqb_set(&b, "Auth-User", "nopw");
	reqb_set(&b, "Auth-Pass", "");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=bad_password"));

	reqb_init(&b);
	reqb_set(&b, "Auth-Pass", "secret%0D%0ADELE 1");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n");
	assert_non_null(strstr(line, "result=fail reason=bad_request detail=\"NUL, CR or LF in password\""));
	assert_null(strstr(line, "DELE"));
}

static void test_decision_errors(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	reqb_init(&b);
	reqb_set(&b, "X-Dovegate-Secret", "guess!");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Temporary server problem, try again later\r\n");
	assert_non_null(strstr(line, "result=error reason=bad_secret"));

	reqb_set(&b, "X-Dovegate-Secret", NULL);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=error reason=bad_secret"));

	reqb_init(&b);
	reqb_set(&b, "Auth-Login-Attempt", NULL);
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Temporary server problem, try again later\r\n");
	assert_non_null(strstr(line, "result=error reason=bad_request "
			       "detail=\"missing Auth-Login-Attempt header\""));

	reqb_init(&b);
	reqb_set(&b, "Auth-Method", "gssapi");
	reqb_set(&b, "Auth-Protocol", "smtp");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Authentication method not supported\r\n"
			    "Auth-Wait: 3\r\nAuth-Error-Code: 504 5.5.4\r\n");
	assert_non_null(strstr(line, "method=gssapi user=alice"));
	assert_non_null(strstr(line, "result=error reason=unsupported_method"));

	reqb_init(&b);
	reqb_set(&b, "Auth-Protocol", "pop3");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Temporary server problem, try again later\r\n"
			    "Auth-Wait: 3\r\n");
	assert_non_null(strstr(line, "result=error reason=no_backend"));

	reqb_init(&b);
	reqb_set(&b, "Auth-User", "odd");
	line = decide(fx, &b);
	/* an entry whose password cannot be checked answers like a wrong one */
	assert_non_null(strstr(line, "result=fail reason=unusable_password"));

	reqb_init(&b);
	reqb_set(&b, "Auth-User", "ali*ce");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=bad_request"));
}

static void test_decision_route_only(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	reqb_init(&b);
	reqb_set(&b, "Auth-Method", "none");
	reqb_set(&b, "Auth-Protocol", "smtp");
	reqb_set(&b, "Auth-User", "stale");
	reqb_set(&b, "Auth-Pass", "stale");
	reqb_set(&b, "Auth-SMTP-To", "RCPT TO:<someone@Example.Org.>");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: OK\r\nAuth-Server: ::1\r\n"
			    "Auth-Port: 10587\r\n");
	assert_non_null(strstr(line, "method=none user=- rip=192.0.2.7 result=ok reason=- "
			       "backend=[::1]:10587 mode=none"));

	reqb_set(&b, "Auth-SMTP-To", "RCPT TO:<x@example.net> SIZE=10");
	decide(fx, &b);
	assert_non_null(strstr(fx->reply, "Auth-Status: OK\r\n"));

	/* not ours, a sub-domain, none at all: 550 5.7.1 */
	const char *refused[] = { "RCPT TO:<someone@example.com>", "RCPT TO:<a@sub.example.org>",
				  "RCPT TO:<postmaster>" };
	for (size_t i = 0; i < N(refused); i++) {
		reqb_set(&b, "Auth-SMTP-To", refused[i]);
		line = decide(fx, &b);
		assert_string_equal(fx->reply, "Auth-Status: Relay access denied\r\n"
				    "Auth-Wait: 3\r\nAuth-Error-Code: 550 5.7.1\r\n");
		assert_non_null(strstr(line, "result=fail reason=relay_denied"));
	}
	reqb_set(&b, "Auth-SMTP-To", NULL);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=relay_denied"));

	reqb_set(&b, "Auth-Protocol", "imap");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=error reason=bad_request"));
}

static void salt_request(struct reqb *b, const char *method, const char *user,
			 const char *response)
{
	reqb_init(b);
	reqb_set(b, "Auth-Method", method);
	reqb_set(b, "Auth-User", user);
	reqb_set(b, "Auth-Pass", response);
	reqb_set(b, "Auth-Salt", APOP_SALT "\r\n");
	reqb_set(b, "Auth-Protocol", "pop3");
}

static void test_decision_apop_cram_md5(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	/* RFC 1939's example challenge; MD5(salt "secret"), HMAC-MD5("secret", salt) */
	salt_request(&b, "apop", "alice", "3f18b52881e44c0cc6067f46e0ced7bc");
	reqb_set(&b, "Auth-Protocol", "imap");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
			    "Auth-Port: 10143\r\nAuth-User: alice*dovegate\r\n"
			    "Auth-Pass: m4ster\r\n");
	assert_non_null(strstr(line, "method=apop user=alice"));

	salt_request(&b, "cram-md5", "alice", "2b5d914728078fba9580a2be9ac3da72");
	reqb_set(&b, "Auth-Protocol", "imap");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "method=cram-md5 user=alice rip=192.0.2.7 result=ok"));

	salt_request(&b, "cram-md5", "alice", "2b5d914728078fba9580a2be9ac3da73");
	reqb_set(&b, "Auth-Protocol", "imap");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=bad_password"));

	/* a hash cannot answer a challenge: the usual answer, a clear log line */
	salt_request(&b, "cram-md5", "hashed", "2b5d914728078fba9580a2be9ac3da72");
	reqb_set(&b, "Auth-Protocol", "smtp");
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Invalid login or password\r\n"
			    "Auth-Wait: 3\r\nAuth-Error-Code: 535 5.7.8\r\n");
	assert_non_null(strstr(line, "result=fail reason=bad_scheme_for_method "
			       "detail=\"scheme cannot serve CRAM-MD5"));

	salt_request(&b, "apop", "nobody", "3f18b52881e44c0cc6067f46e0ced7bc");
	reqb_set(&b, "Auth-Protocol", "imap");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=unknown_user"));

	/* passthrough has no plaintext password to pass on */
	fx->rt->cred.mode = CRED_MODE_PASSTHROUGH;
	salt_request(&b, "apop", "alice", "3f18b52881e44c0cc6067f46e0ced7bc");
	reqb_set(&b, "Auth-Protocol", "imap");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=error reason=unsupported_method "
			       "detail=\"credentials mode passthrough"));
	fx->rt->cred.mode = CRED_MODE_MASTER;
}

static void external_request(struct reqb *b, const char *verify, const char *cert)
{
	reqb_init(b);
	reqb_set(b, "Auth-Method", "external");
	reqb_set(b, "Auth-User", "");
	reqb_set(b, "Auth-Pass", "");
	reqb_set(b, "Auth-SSL", "on");
	reqb_set(b, "Auth-SSL-Verify", verify);
	reqb_set(b, "Auth-SSL-Subject", "emailAddress=alice@example.org,CN=alice,O=Test Org");
	reqb_set(b, "Auth-SSL-Cert", cert);
}

static void test_decision_external(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	/* default rule: the commonName */
	external_request(&b, "SUCCESS", cert_header);
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n"
			    "Auth-Port: 10143\r\nAuth-User: alice*dovegate\r\n"
			    "Auth-Pass: m4ster\r\n");
	assert_non_null(strstr(line, "method=external user=alice rip=192.0.2.7 result=ok"));

	/* an authorization id naming someone else */
	reqb_set(&b, "Auth-User", "bob");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=authzid_mismatch"));
	reqb_set(&b, "Auth-User", "alice");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=ok"));

	external_request(&b, "FAILED:certificate has expired", cert_header);
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Invalid login or password\r\nAuth-Wait: 3\r\n");
	assert_non_null(strstr(line, "result=fail reason=bad_certificate "
			       "detail=\"FAILED:certificate has expired\""));

	/* without the certificate: the subject nginx sends */
	external_request(&b, "SUCCESS", NULL);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "method=external user=alice rip=192.0.2.7 result=ok"));
	reqb_set(&b, "Auth-SSL-Subject", NULL);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=fail reason=bad_certificate "
			       "detail=\"neither Auth-SSL-Cert nor Auth-SSL-Subject\""));

	/* email: alice@example.org is not in the users file */
	fx->rt->cfg.external_user_from = EXTERNAL_EMAIL;
	external_request(&b, "SUCCESS", cert_header);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "user=alice@example.org rip=192.0.2.7 result=fail "
			       "reason=unknown_user"));
	fx->rt->cfg.external_user_from = EXTERNAL_CN;
}

static void test_external_map(void **state)
{
	struct fixture *fx = *state;
	struct external_map *map;
	struct external_cert cert = { NULL, 0, "emailAddress=alice@example.org,CN=alice,O=Test Org",
				      NULL };
	char path[128], err[256], user[64], *pem;
	size_t pem_len;
	const char *why;

	snprintf(path, sizeof(path), "%s/map", fx->dir);
	write_file(fx->dir, "map", "# subject or fingerprint, then the user\n\n"
		   "CN=bob,O=Test Org  bob\n"
		   "emailAddress=alice@example.org,CN=alice,O=Test Org carol\n"
		   "12:30:0D:D2:F2:28:CD:E3:BC:BC:4D:8F:53:8E:F9:45:5E:2D:19:FF dave\n", 0644);
	map = external_map_load(path, err, sizeof(err));
	if (map == NULL)
		fail_msg("%s", err);
	assert_int_equal(external_user(EXTERNAL_MAP, map, &cert, user, sizeof(user), &why), 0);
	assert_string_equal(user, "carol");
	/* by fingerprint, computed from the certificate */
	assert_int_equal(authhttp_decode(cert_header, strlen(cert_header), &pem, &pem_len), 0);
	cert.subject = "CN=other";
	cert.pem = pem;
	cert.pem_len = pem_len;
	assert_int_equal(external_user(EXTERNAL_MAP, map, &cert, user, sizeof(user), &why), 0);
	assert_string_equal(user, "dave");
	assert_int_equal(external_user(EXTERNAL_EMAIL, map, &cert, user, sizeof(user), &why), 0);
	assert_string_equal(user, "alice@example.org");
	/* a user name that does not fit */
	assert_int_equal(external_user(EXTERNAL_EMAIL, map, &cert, user, 5, &why), -1);
	cert.pem = NULL;
	cert.fingerprint = "0000";
	assert_int_equal(external_user(EXTERNAL_MAP, map, &cert, user, sizeof(user), &why), -1);
	assert_string_equal(why, "certificate not in [external] map_file");
	free(pem);
	external_map_free(map);

	/* RFC 2253 subjects: most specific first, escapes are part of values */
	struct { const char *dn; enum external_rule rule; const char *user; } dns[] = {
		{ "CN=alice,O=Test Org", EXTERNAL_CN, "alice" },
		{ "emailAddress=a@example.org,CN=bob", EXTERNAL_EMAIL, "a@example.org" },
		{ "CN=b\\,CN=alice,O=x", EXTERNAL_CN, "b,CN=alice" },
		{ "cn=carol+UID=7,CN=ignored", EXTERNAL_CN, "carol" },
		{ "CN=J\\C3\\BCrgen", EXTERNAL_CN, "J\xc3\xbcrgen" },
		{ "O=no cn", EXTERNAL_CN, NULL },
		{ "CN=", EXTERNAL_CN, NULL },
		{ "CN=a\\0Ab", EXTERNAL_CN, NULL },
		{ "CN=trailing\\", EXTERNAL_CN, NULL },
		{ "CN=alice", EXTERNAL_EMAIL, NULL },
	};
	for (size_t i = 0; i < N(dns); i++) {
		struct external_cert c = { NULL, 0, dns[i].dn, NULL };
		int rc = external_user(dns[i].rule, NULL, &c, user, sizeof(user), &why);

		if (dns[i].user == NULL) {
			assert_int_equal(rc, -1);
		} else {
			assert_int_equal(rc, 0);
			assert_string_equal(user, dns[i].user);
		}
	}

	write_file(fx->dir, "map", "justoneword\n", 0644);
	assert_null(external_map_load(path, err, sizeof(err)));
	assert_non_null(strstr(err, "map:1: expected"));
	unlink(path);
}

static void test_decision_cache(void **state)
{
	struct fixture *fx = *state;
	struct reqb b;
	const char *line;

	reqb_init(&b);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=ok reason=- backend=127.0.0.1:10143 mode=master "
			       "attempt=1 cache=miss duration_ms="));
	line = decide(fx, &b);
	assert_non_null(strstr(line, "result=ok reason=- backend=127.0.0.1:10143 mode=master "
			       "attempt=1 cache=hit duration_ms="));
	assert_non_null(strstr(fx->reply, "Auth-Status: OK\r\n"));

	reqb_set(&b, "Auth-Pass", "wrong");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "reason=bad_password backend=- mode=- attempt=1 cache=miss"));
	line = decide(fx, &b);
	assert_non_null(strstr(line, "reason=bad_password backend=- mode=- attempt=1 cache=hit"));
	assert_non_null(strstr(fx->reply, "Invalid login or password"));

	/* unknown users go through the dummy hash and the cache like anyone */
	reqb_set(&b, "Auth-User", "nobody");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "reason=unknown_user backend=- mode=- attempt=1 cache=miss"));
	line = decide(fx, &b);
	assert_non_null(strstr(line, "reason=unknown_user backend=- mode=- attempt=1 cache=hit"));

	/* unusable stored passwords are never cached */
	reqb_set(&b, "Auth-User", "odd");
	line = decide(fx, &b);
	assert_non_null(strstr(line, "reason=unusable_password"));
	assert_non_null(strstr(line, "cache=miss"));
	line = decide(fx, &b);
	assert_non_null(strstr(line, "cache=miss"));

	/* bad requests never reach the cache */
	reqb_set(&b, "Auth-Login-Attempt", NULL);
	line = decide(fx, &b);
	assert_non_null(strstr(line, "cache=- duration_ms="));
}

static void test_decision_response_too_large(void **state)
{
	struct fixture *fx = *state;
	char user[AUTHHTTP_USER_MAX + 1], path[128];
	struct reqb b;
	const char *line;
	FILE *f;

	/* a 255-byte user is fine on its own; pad the master password so that
	   Auth-User + Auth-Pass do not fit */
	memset(user, 'u', AUTHHTTP_USER_MAX);
	user[AUTHHTTP_USER_MAX] = '\0';
	snprintf(path, sizeof(path), "%s/users", fx->dir);
	f = fopen(path, "a");
	fprintf(f, "%s:{PLAIN}secret::::::\n", user);
	fclose(f);
	passdb_load(fx->rt->passdb, &fx->log, path, sizeof(path));
	secret_clear(&fx->rt->cred.master_password);
	fx->rt->cred.master_password.data = malloc(701);
	memset(fx->rt->cred.master_password.data, 'm', 700);
	fx->rt->cred.master_password.data[700] = '\0';
	fx->rt->cred.master_password.len = 700;

	reqb_init(&b);
	reqb_set(&b, "Auth-User", user);
	line = decide(fx, &b);
	assert_string_equal(fx->reply, "Auth-Status: Temporary server problem, try again later\r\n"
			    "Auth-Wait: 3\r\n");
	assert_non_null(strstr(line, "result=error reason=response_too_large"));
	assert_null(strstr(line, "mmmm"));
}

/* ---- whose address: Client-IP or a balancer's PROXY address ----------- */

static int64_t now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static unsigned score_of(struct penalty *p, const char *ip)
{
	struct penalty_addr a;

	assert_int_equal(penalty_addr_parse(ip, &a), 0);
	return penalty_peek(p, &a, NULL, now_s());
}

/* A wrong password from Client-IP 192.0.2.55 claiming (PROXY) 198.51.100.77. */
static const char *decide_proxied_failure(struct fixture *fx, struct penalty *p)
{
	char err[256];
	struct reqb b;

	assert_int_equal(runtime_attach_penalty(fx->rt, p, err, sizeof(err)), 0);
	reqb_init(&b);
	reqb_set(&b, "Auth-Pass", "wrong");
	reqb_set(&b, "Client-IP", "192.0.2.55");
	reqb_set(&b, "Proxy-Protocol-Addr", "198.51.100.77");
	reqb_set(&b, "Proxy-Protocol-Port", "4711");
	return decide(fx, &b);
}

/* Without proxy_protocol_trusted nobody's PROXY address is believed: the
   failure is Client-IP's, and the log says what was claimed. */
static void test_decision_proxy_addr_untrusted(void **state)
{
	struct fixture *fx = *state;
	struct penalty *p = penalty_new();
	const char *line = decide_proxied_failure(fx, p);

	assert_true(score_of(p, "192.0.2.55") > 0);
	assert_int_equal(score_of(p, "198.51.100.77"), 0);
	assert_non_null(strstr(line, " rip=192.0.2.55 result=fail reason=bad_password"));
	assert_non_null(strstr(line, " claimed=198.51.100.77 "));
	assert_null(strstr(line, " via="));
	penalty_free(p);         /* borrowed by fx->rt, which never uses it again */
}

/* From a configured balancer the PROXY address is the client, and rip= in
   the log is that address (via= the balancer). */
static void test_decision_proxy_addr_trusted(void **state)
{
	struct fixture *fx = *state;
	struct penalty *p = penalty_new();
	struct penalty_net *lb = calloc(1, sizeof(*lb));
	const char *error, *line;

	assert_int_equal(penalty_net_parse("192.0.2.0/24", lb, &error), 0);
	fx->rt->cfg.proxy_trusted = lb;          /* freed by config_free() */
	fx->rt->cfg.proxy_trusted_count = 1;
	line = decide_proxied_failure(fx, p);
	assert_non_null(strstr(line, " rip=198.51.100.77 result=fail reason=bad_password"));
	assert_non_null(strstr(line, " via=192.0.2.55 "));
	assert_null(strstr(line, " claimed="));
	assert_true(score_of(p, "198.51.100.77") > 0);
	assert_int_equal(score_of(p, "192.0.2.55"), 0);
	penalty_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_decode_bad_sequences),
		cmocka_unit_test(test_parse_ok),
		cmocka_unit_test(test_parse_header_names_case_insensitive),
		cmocka_unit_test(test_parse_refuses_nul_cr_lf),
		cmocka_unit_test(test_parse_bad_escape),
		cmocka_unit_test(test_parse_missing_headers),
		cmocka_unit_test(test_parse_duplicate_header),
		cmocka_unit_test(test_parse_unknown_protocol),
		cmocka_unit_test(test_parse_client_ip),
		cmocka_unit_test(test_parse_attempt),
		cmocka_unit_test(test_parse_method_none_ignores_credentials),
		cmocka_unit_test(test_parse_other_methods),
		cmocka_unit_test(test_parse_salt_methods),
		cmocka_unit_test(test_parse_smtp_to),
		cmocka_unit_test(test_parse_external),
		cmocka_unit_test(test_parse_too_long),
		cmocka_unit_test(test_secret),
		cmocka_unit_test(test_response_ok),
		cmocka_unit_test(test_response_fail),
		cmocka_unit_test(test_response_tempfail),
		cmocka_unit_test(test_response_never_wait),
		cmocka_unit_test(test_response_size_limit),
		cmocka_unit_test(test_response_bad_values),
		cmocka_unit_test(test_backend_parse),
		cmocka_unit_test(test_session_id),
		cmocka_unit_test(test_kv_escaping),
		cmocka_unit_test_setup_teardown(test_decision_ok_master, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_failures, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_errors, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_route_only, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_apop_cram_md5, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_cache, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_external, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_external_map, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_response_too_large, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_proxy_addr_untrusted, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_decision_proxy_addr_trusted, fixture_setup,
						fixture_teardown),
	};

	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
