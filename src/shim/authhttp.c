#include "authhttp.h"
#include "hexbyte.h"

#include <arpa/inet.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const proto_names[DG_PROTO_COUNT] = { "imap", "pop3", "smtp" };

const char *dg_proto_name(enum dg_proto proto)
{
	return (unsigned)proto < DG_PROTO_COUNT ? proto_names[proto] : "-";
}

int dg_proto_parse(const char *name, enum dg_proto *proto_r)
{
	for (int i = 0; i < DG_PROTO_COUNT; i++) {
		if (strcmp(name, proto_names[i]) == 0) {
			*proto_r = (enum dg_proto)i;
			return 0;
		}
	}
	return -1;
}

/* ---- decoding --------------------------------------------------------------
   Own decoder rather than evhttp_uridecode(): that one copies a malformed
   "%zz" through unchanged, and we want to refuse it (nginx always escapes '%'
   itself, so a stray one means the request did not come from nginx). */

int authhttp_decode(const char *in, size_t inlen, char **out, size_t *outlen)
{
	char *buf = malloc(inlen + 1);
	size_t o = 0;

	if (buf == NULL)
		return -1;
	for (size_t i = 0; i < inlen; i++) {
		unsigned char byte;

		if (in[i] != '%') {
			buf[o++] = in[i];
			continue;
		}
		if (!hex_byte(in + i + 1, inlen - i - 1, &byte))
			goto bad;
		buf[o++] = (char)byte;
		i += 2;
	}
	buf[o] = '\0';
	*out = buf;
	*outlen = o;
	return 0;
bad:
	sodium_memzero(buf, inlen + 1);
	free(buf);
	return -1;
}

/* ---- request ---------------------------------------------------------------- */

static void set_status(struct authhttp_request *req, enum authhttp_status status,
		       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Keeps the first problem, except that a bad request outranks bad credentials
   (it says more about who is talking to us). */
static void set_status(struct authhttp_request *req, enum authhttp_status status,
		       const char *fmt, ...)
{
	va_list ap;

	if (req->status == AUTHHTTP_BAD_REQUEST)
		return;
	if (req->status == AUTHHTTP_BAD_CREDENTIALS && status != AUTHHTTP_BAD_REQUEST)
		return;
	req->status = status;
	va_start(ap, fmt);
	vsnprintf(req->detail, sizeof(req->detail), fmt, ap);
	va_end(ap);
}

/* The value of a header that must occur at most once. NULL if absent; a
   duplicate makes the request bad (and returns NULL). */
static const char *header(struct authhttp_request *req,
			  const struct authhttp_pair *pairs, size_t count,
			  const char *name)
{
	const char *found = NULL;

	for (size_t i = 0; i < count; i++) {
		if (strcasecmp(pairs[i].name, name) != 0)
			continue;
		if (found != NULL) {
			set_status(req, AUTHHTTP_BAD_REQUEST, "duplicate %s header", name);
			return NULL;
		}
		found = pairs[i].value;
	}
	return found;
}

static const char *required(struct authhttp_request *req,
			    const struct authhttp_pair *pairs, size_t count,
			    const char *name)
{
	const char *v = header(req, pairs, count, name);

	if (v == NULL)
		set_status(req, AUTHHTTP_BAD_REQUEST, "missing %s header", name);
	return v;
}

static void parse_method(struct authhttp_request *req, const char *v)
{
	if (v == NULL)
		return;
	req->method_name = strndup(v, 32);
	if (strcmp(v, "plain") == 0)
		req->method = AUTHHTTP_METHOD_PLAIN;
	else if (strcmp(v, "none") == 0)
		req->method = AUTHHTTP_METHOD_NONE;
	else if (strcmp(v, "apop") == 0)
		req->method = AUTHHTTP_METHOD_APOP;
	else if (strcmp(v, "cram-md5") == 0)
		req->method = AUTHHTTP_METHOD_CRAM_MD5;
	else if (strcmp(v, "external") == 0)
		req->method = AUTHHTTP_METHOD_EXTERNAL;
	else
		req->method = AUTHHTTP_METHOD_OTHER;
}

static void parse_proto(struct authhttp_request *req, const char *v)
{
	if (v == NULL)
		return;
	if (dg_proto_parse(v, &req->proto) == 0)
		req->has_proto = true;
	else
		set_status(req, AUTHHTTP_BAD_REQUEST, "unknown Auth-Protocol");
}

static void parse_client_ip(struct authhttp_request *req, const char *v)
{
	unsigned char bin[sizeof(struct in6_addr)];

	if (v == NULL)
		return;
	req->client_ip = strndup(v, 64);
	if (inet_pton(AF_INET, v, bin) != 1 && inet_pton(AF_INET6, v, bin) != 1)
		set_status(req, AUTHHTTP_BAD_REQUEST, "Client-IP is not an IP address");
}

/* Decimal 1..999999, no sign, no leading zero. */
static void parse_attempt(struct authhttp_request *req, const char *v)
{
	size_t len;

	if (v == NULL)
		return;
	len = strlen(v);
	if (len == 0 || len > 6 || v[0] < '1' || v[0] > '9' ||
	    strspn(v, "0123456789") != len) {
		set_status(req, AUTHHTTP_BAD_REQUEST, "bad Auth-Login-Attempt");
		return;
	}
	req->attempt = strtoul(v, NULL, 10);
}

static bool has_forbidden_byte(const char *s, size_t len)
{
	return memchr(s, '\0', len) != NULL || memchr(s, '\r', len) != NULL ||
	       memchr(s, '\n', len) != NULL;
}

static void parse_user(struct authhttp_request *req, const char *v)
{
	req->user_raw = strndup(v, AUTHHTTP_USER_MAX * 3);
	if (authhttp_decode(v, strlen(v), &req->user, &req->user_len) < 0) {
		req->user = NULL;
		set_status(req, AUTHHTTP_BAD_REQUEST, "bad %%-escape in Auth-User");
		return;
	}
	if (req->user_len > AUTHHTTP_USER_MAX)
		set_status(req, AUTHHTTP_BAD_CREDENTIALS, "user name longer than %d bytes",
			   AUTHHTTP_USER_MAX);
	else if (has_forbidden_byte(req->user, req->user_len))
		set_status(req, AUTHHTTP_BAD_CREDENTIALS, "NUL, CR or LF in user name");
}

static void parse_pass(struct authhttp_request *req, const char *v)
{
	if (authhttp_decode(v, strlen(v), &req->pass, &req->pass_len) < 0) {
		req->pass = NULL;
		set_status(req, AUTHHTTP_BAD_REQUEST, "bad %%-escape in Auth-Pass");
		return;
	}
	if (req->pass_len > AUTHHTTP_PASS_MAX)
		set_status(req, AUTHHTTP_BAD_CREDENTIALS, "password longer than %d bytes",
			   AUTHHTTP_PASS_MAX);
	else if (has_forbidden_byte(req->pass, req->pass_len))
		set_status(req, AUTHHTTP_BAD_CREDENTIALS, "NUL, CR or LF in password");
}

/* nginx writes Auth-Salt as "Auth-Salt: " + its challenge line, which ends
   in its own CRLF; the HTTP parser normally eats it, but if it is still there
   exactly one CRLF goes, nothing else (the challenge is hashed byte for byte). */
static void parse_salt(struct authhttp_request *req, const char *v)
{
	size_t len = strlen(v);

	if (len >= 2 && v[len - 2] == '\r' && v[len - 1] == '\n')
		len -= 2;
	if (len == 0 || len > AUTHHTTP_SALT_MAX || memchr(v, '\r', len) != NULL ||
	    memchr(v, '\n', len) != NULL) {
		set_status(req, AUTHHTTP_BAD_REQUEST, "bad Auth-Salt");
		return;
	}
	req->salt = strndup(v, len);
	if (req->salt == NULL)
		set_status(req, AUTHHTTP_BAD_REQUEST, "out of memory");
	else
		req->salt_len = len;
}

/* Method none: only the recipient matters (routing by its domain). */
static void parse_smtp_to(struct authhttp_request *req,
			  const struct authhttp_pair *pairs, size_t count)
{
	const char *to = header(req, pairs, count, "Auth-SMTP-To");

	if (to != NULL)
		req->smtp_to = strndup(to, AUTHHTTP_SMTP_TO_MAX);
}

static char *optional_copy(struct authhttp_request *req, const struct authhttp_pair *pairs,
			   size_t count, const char *name)
{
	const char *v = header(req, pairs, count, name);

	return v != NULL ? strndup(v, AUTHHTTP_SSL_FIELD_MAX) : NULL;
}

/* Method external: the certificate nginx verified. Auth-User is the
   client's optional authorization id, Auth-Pass empty. */
static void parse_ssl(struct authhttp_request *req, const struct authhttp_pair *pairs,
		      size_t count)
{
	const char *cert = header(req, pairs, count, "Auth-SSL-Cert");
	const char *user = header(req, pairs, count, "Auth-User");

	req->ssl_verify = optional_copy(req, pairs, count, "Auth-SSL-Verify");
	req->ssl_subject = optional_copy(req, pairs, count, "Auth-SSL-Subject");
	req->ssl_fingerprint = optional_copy(req, pairs, count, "Auth-SSL-Fingerprint");
	if (cert != NULL && authhttp_decode(cert, strlen(cert), &req->ssl_cert,
					    &req->ssl_cert_len) < 0) {
		req->ssl_cert = NULL;
		set_status(req, AUTHHTTP_BAD_REQUEST, "bad %%-escape in Auth-SSL-Cert");
	}
	if (user != NULL)
		parse_user(req, user);
}

/* Credentials matter for plain, apop and cram-md5; for none they are ignored
   (nginx may send stale ones from an earlier attempt); for other methods the
   user is decoded for the log only. */
static void parse_credentials(struct authhttp_request *req,
			      const struct authhttp_pair *pairs, size_t count)
{
	const char *user, *pass, *salt;

	if (req->method == AUTHHTTP_METHOD_NONE) {
		parse_smtp_to(req, pairs, count);
		return;
	}
	if (req->method == AUTHHTTP_METHOD_EXTERNAL) {
		parse_ssl(req, pairs, count);
		return;
	}
	if (req->method == AUTHHTTP_METHOD_OTHER) {
		user = header(req, pairs, count, "Auth-User");
		if (user != NULL) {
			req->user_raw = strndup(user, AUTHHTTP_USER_MAX * 3);
			if (authhttp_decode(user, strlen(user), &req->user, &req->user_len) < 0)
				req->user = NULL;
		}
		return;
	}
	user = required(req, pairs, count, "Auth-User");
	pass = required(req, pairs, count, "Auth-Pass");
	if (user != NULL)
		parse_user(req, user);
	if (pass != NULL)
		parse_pass(req, pass);
	if (!AUTHHTTP_METHOD_HAS_SALT(req->method))
		return;
	salt = required(req, pairs, count, "Auth-Salt");
	if (salt != NULL)
		parse_salt(req, salt);
}

/* nginx sends at most ~25 headers of its own (with client certificates and
   PROXY facts) plus the operator's auth_http_header lines; more is not nginx.
   max_header_bytes alone would let ~1500 tiny headers through. */
#define REQUEST_HEADERS_MAX 64

void authhttp_request_parse(struct authhttp_request *req,
			    const struct authhttp_pair *pairs, size_t count)
{
	memset(req, 0, sizeof(*req));
	req->status = AUTHHTTP_OK;
	req->method = AUTHHTTP_METHOD_OTHER;
	if (count > REQUEST_HEADERS_MAX)
		set_status(req, AUTHHTTP_BAD_REQUEST, "%zu headers (at most %d)", count,
			   REQUEST_HEADERS_MAX);

	parse_method(req, required(req, pairs, count, "Auth-Method"));
	parse_proto(req, required(req, pairs, count, "Auth-Protocol"));
	parse_client_ip(req, required(req, pairs, count, "Client-IP"));
	parse_attempt(req, required(req, pairs, count, "Auth-Login-Attempt"));
	if (req->method_name != NULL)
		parse_credentials(req, pairs, count);
}

void authhttp_request_clear(struct authhttp_request *req)
{
	if (req->pass != NULL) {
		sodium_memzero(req->pass, req->pass_len);
		free(req->pass);
	}
	free(req->user);
	free(req->user_raw);
	free(req->salt);
	free(req->smtp_to);
	free(req->ssl_verify);
	free(req->ssl_subject);
	free(req->ssl_fingerprint);
	free(req->ssl_cert);
	free(req->method_name);
	free(req->client_ip);
	memset(req, 0, sizeof(*req));
}

bool authhttp_secret_ok(const struct authhttp_pair *pairs, size_t count,
			const char *name, const char *secret, size_t secret_len)
{
	const char *found = NULL;

	for (size_t i = 0; i < count; i++) {
		if (strcasecmp(pairs[i].name, name) != 0)
			continue;
		if (found != NULL)
			return false;
		found = pairs[i].value;
	}
	if (found == NULL || strlen(found) != secret_len)
		return false;
	return sodium_memcmp(found, secret, secret_len) == 0;
}

/* ---- responses ------------------------------------------------------------ */

static int add(struct authhttp_response *resp, const char *name,
	       const char *value, size_t len, bool sensitive)
{
	struct authhttp_header *h;

	if (resp->count >= AUTHHTTP_MAX_HEADERS)
		return -1;
	h = &resp->headers[resp->count];
	h->value = malloc(len + 1);
	if (h->value == NULL)
		return -1;
	memcpy(h->value, value, len);
	h->value[len] = '\0';
	h->name = name;
	h->sensitive = sensitive;
	resp->count++;
	return 0;
}

static int adds(struct authhttp_response *resp, const char *name, const char *value)
{
	return add(resp, name, value, strlen(value), false);
}

int authhttp_response_ok(struct authhttp_response *resp, const char *server_ip,
			 const char *port, const char *user, size_t user_len,
			 const char *pass, size_t pass_len)
{
	memset(resp, 0, sizeof(*resp));
	if (adds(resp, "Auth-Status", "OK") < 0 ||
	    adds(resp, "Auth-Server", server_ip) < 0 ||
	    adds(resp, "Auth-Port", port) < 0)
		return -1;
	if (user == NULL)
		return 0;
	if (add(resp, "Auth-User", user, user_len, false) < 0 ||
	    add(resp, "Auth-Pass", pass, pass_len, true) < 0)
		return -1;
	return 0;
}

static int error_response(struct authhttp_response *resp, const char *text,
			  bool with_wait, enum dg_proto proto, const char *smtp_code)
{
	memset(resp, 0, sizeof(*resp));
	if (adds(resp, "Auth-Status", text) < 0)
		return -1;
	if (with_wait && adds(resp, "Auth-Wait", AUTHHTTP_WAIT_SECONDS) < 0)
		return -1;
	if (proto == DG_PROTO_SMTP && adds(resp, "Auth-Error-Code", smtp_code) < 0)
		return -1;
	return 0;
}

int authhttp_response_fail(struct authhttp_response *resp, enum dg_proto proto)
{
	return error_response(resp, AUTHHTTP_TEXT_FAIL, true, proto, "535 5.7.8");
}

int authhttp_response_tempfail(struct authhttp_response *resp, enum dg_proto proto,
			       bool with_wait)
{
	return error_response(resp, AUTHHTTP_TEXT_TEMPFAIL, with_wait, proto, "454 4.7.0");
}

int authhttp_response_unsupported(struct authhttp_response *resp, enum dg_proto proto)
{
	return error_response(resp, AUTHHTTP_TEXT_UNSUPPORTED, true, proto, "504 5.5.4");
}

int authhttp_response_relay_denied(struct authhttp_response *resp)
{
	return error_response(resp, AUTHHTTP_TEXT_RELAY_DENIED, true, DG_PROTO_SMTP,
			      "550 5.7.1");
}

void authhttp_response_clear(struct authhttp_response *resp)
{
	for (size_t i = 0; i < resp->count; i++) {
		struct authhttp_header *h = &resp->headers[i];
		if (h->sensitive)
			sodium_memzero(h->value, strlen(h->value));
		free(h->value);
	}
	memset(resp, 0, sizeof(*resp));
}

size_t authhttp_response_head_size(const struct authhttp_response *resp)
{
	size_t size = AUTHHTTP_HEAD_OVERHEAD;

	for (size_t i = 0; i < resp->count; i++)
		size += strlen(resp->headers[i].name) + 2 +
			strlen(resp->headers[i].value) + 2;
	return size;
}

static bool value_ok(const char *v)
{
	size_t len = strlen(v);

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)v[i];
		if (c < ' ' || c == 0x7f)
			return false;
	}
	return len == 0 || (v[0] != ' ' && v[len - 1] != ' ');
}

enum authhttp_check authhttp_response_check(const struct authhttp_response *resp,
					    char *detail, size_t detail_len)
{
	size_t size = authhttp_response_head_size(resp);

	for (size_t i = 0; i < resp->count; i++) {
		if (!value_ok(resp->headers[i].value)) {
			snprintf(detail, detail_len,
				 "%s value has control bytes or leading/trailing spaces",
				 resp->headers[i].name);
			return AUTHHTTP_CHECK_BAD_VALUE;
		}
	}
	if (size >= AUTHHTTP_HEAD_LIMIT) {
		snprintf(detail, detail_len,
			 "response head would be %zu bytes, nginx reads only %d",
			 size, AUTHHTTP_HEAD_LIMIT);
		return AUTHHTTP_CHECK_TOO_LARGE;
	}
	return AUTHHTTP_CHECK_OK;
}
