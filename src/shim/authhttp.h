/* nginx mail auth_http protocol: request decoding and response building.
   Independent of libevent so that it can be unit tested on its own.
   Facts: shared/notes/nginx-mail-facts.md. */
#ifndef DOVEGATE_SHIM_AUTHHTTP_H
#define DOVEGATE_SHIM_AUTHHTTP_H

#include <stdbool.h>
#include <stddef.h>

enum dg_proto { DG_PROTO_IMAP, DG_PROTO_POP3, DG_PROTO_SMTP, DG_PROTO_COUNT };

const char *dg_proto_name(enum dg_proto proto);
/* Exact lower-case names as nginx sends them; -1 if unknown. */
int dg_proto_parse(const char *name, enum dg_proto *proto_r);

enum authhttp_method {
	AUTHHTTP_METHOD_PLAIN,
	AUTHHTTP_METHOD_NONE,    /* SMTP without AUTH: route only */
	AUTHHTTP_METHOD_APOP,    /* Auth-Pass = hex MD5(salt || password) */
	AUTHHTTP_METHOD_CRAM_MD5,/* Auth-Pass = hex HMAC-MD5(password, salt) */
	AUTHHTTP_METHOD_EXTERNAL,/* verified client certificate, no password */
	AUTHHTTP_METHOD_OTHER,   /* anything else: not supported */
};

/* Methods where nginx holds no plaintext password (it cannot be passed through). */
#define AUTHHTTP_METHOD_HAS_SALT(m) \
	((m) == AUTHHTTP_METHOD_APOP || (m) == AUTHHTTP_METHOD_CRAM_MD5)
#define AUTHHTTP_SALT_MAX 512
#define AUTHHTTP_SMTP_TO_MAX 1024
#define AUTHHTTP_SSL_FIELD_MAX 1024

/* Limits on decoded credentials; longer ones are refused as bad requests. */
#define AUTHHTTP_USER_MAX 255
#define AUTHHTTP_PASS_MAX 1024

struct authhttp_pair {
	const char *name;
	const char *value;
};

enum authhttp_status {
	AUTHHTTP_OK,
	/* Not something nginx sends: missing/duplicate header, bad %XX, unknown
	   protocol ... An error between nginx and us. */
	AUTHHTTP_BAD_REQUEST,
	/* Well-formed, but the client's credentials are unacceptable (NUL, CR or
	   LF, too long). Counts as a failed login. */
	AUTHHTTP_BAD_CREDENTIALS,
};

struct authhttp_request {
	enum authhttp_status status;
	char detail[128];               /* why status != OK */

	bool has_proto;
	enum dg_proto proto;
	enum authhttp_method method;
	char *method_name;              /* as sent, for logs; NULL if absent */
	char *user;                     /* decoded, NUL terminated; NULL if absent or undecodable */
	size_t user_len;
	char *user_raw;                 /* as sent, for logs when decoding failed */
	char *pass;                     /* decoded; wiped on clear */
	size_t pass_len;
	char *salt;                     /* apop, cram-md5: Auth-Salt without its CRLF */
	size_t salt_len;
	char *smtp_to;                  /* none: Auth-SMTP-To as sent; NULL if absent */
	/* external: nginx's client certificate facts (NULL if absent) */
	char *ssl_verify;               /* Auth-SSL-Verify, "SUCCESS" when verified */
	char *ssl_subject;              /* Auth-SSL-Subject */
	char *ssl_fingerprint;          /* Auth-SSL-Fingerprint */
	char *ssl_cert;                 /* Auth-SSL-Cert, %XX-decoded PEM */
	size_t ssl_cert_len;
	char *client_ip;                /* as sent; validated only if status OK */
	unsigned long attempt;          /* Auth-Login-Attempt, >= 1 when status OK */
};

/* Header names are matched case-insensitively. Always fills what it can (for
   logging) and sets status/detail. Release with authhttp_request_clear(). */
void authhttp_request_parse(struct authhttp_request *req,
			    const struct authhttp_pair *pairs, size_t count);
void authhttp_request_clear(struct authhttp_request *req);

/* True if header `name` occurs exactly once and equals the secret. Compared in
   constant time for equal lengths; a length mismatch is simply wrong. */
bool authhttp_secret_ok(const struct authhttp_pair *pairs, size_t count,
			const char *name, const char *secret, size_t secret_len);

/* Decode nginx's %XX escaping (only %XX; '+' stays '+'). Refuses a '%' not
   followed by two hex digits. Returns a malloc()ed NUL terminated buffer; the
   decoded bytes may contain NUL, hence *outlen. */
int authhttp_decode(const char *in, size_t inlen, char **out, size_t *outlen);

/* ---- responses ----------------------------------------------------------- */

/* nginx reads only the first 1024 bytes of the answer: the head must end
   inside them. */
#define AUTHHTTP_HEAD_LIMIT 1024
/* What libevent adds around our header lines, worst case (HTTP/1.1 request):
   "HTTP/1.1 200 OK\r\n" 17 + "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" 37 +
   "Connection: close\r\n" 19 + "Content-Length: 0\r\n" 19 + final "\r\n" 2
   = 94; rounded up. nginx itself speaks HTTP/1.0 and gets 57 (we always
   send Content-Length: 0, see server.c). */
#define AUTHHTTP_HEAD_OVERHEAD 96
#define AUTHHTTP_MAX_HEADERS 8

#define AUTHHTTP_TEXT_FAIL "Invalid login or password"
#define AUTHHTTP_TEXT_TEMPFAIL "Temporary server problem, try again later"
#define AUTHHTTP_TEXT_UNSUPPORTED "Authentication method not supported"
#define AUTHHTTP_TEXT_RELAY_DENIED "Relay access denied"
#define AUTHHTTP_WAIT_SECONDS "3"

struct authhttp_header {
	const char *name;   /* static */
	char *value;        /* owned */
	bool sensitive;     /* wiped on clear */
};

struct authhttp_response {
	size_t count;
	struct authhttp_header headers[AUTHHTTP_MAX_HEADERS];
};

/* Each builder starts from an empty response; clear it afterwards.
   Return 0, or -1 when out of memory. */
/* Success: Auth-Status OK, Auth-Server, Auth-Port, and Auth-User/Auth-Pass
   when user is not NULL (method none routes without changing credentials). */
int authhttp_response_ok(struct authhttp_response *resp, const char *server_ip,
			 const char *port, const char *user, size_t user_len,
			 const char *pass, size_t pass_len);
/* Wrong user or password: same answer for both; the client may retry. */
int authhttp_response_fail(struct authhttp_response *resp, enum dg_proto proto);
/* Temporary problem. with_wait=false makes nginx close the client connection. */
int authhttp_response_tempfail(struct authhttp_response *resp, enum dg_proto proto,
			       bool with_wait);
int authhttp_response_unsupported(struct authhttp_response *resp, enum dg_proto proto);
/* SMTP without AUTH to a recipient we do not relay for: 550 5.7.1. */
int authhttp_response_relay_denied(struct authhttp_response *resp);
void authhttp_response_clear(struct authhttp_response *resp);

/* Bytes of our header lines ("Name: value\r\n" each) plus AUTHHTTP_HEAD_OVERHEAD. */
size_t authhttp_response_head_size(const struct authhttp_response *resp);
enum authhttp_check {
	AUTHHTTP_CHECK_OK,
	AUTHHTTP_CHECK_TOO_LARGE,   /* head would not fit in AUTHHTTP_HEAD_LIMIT */
	AUTHHTTP_CHECK_BAD_VALUE,   /* control bytes, or leading/trailing spaces
				       that nginx would strip */
};
/* Will nginx read the response as meant? If not, a reason in detail. */
enum authhttp_check authhttp_response_check(const struct authhttp_response *resp,
					    char *detail, size_t detail_len);

#endif
