/* Login ticket JSON with Dovecot's json parser: see claims_json.h. */

#include "lib.h"
#include "istream.h"
#include "json-parser.h"
#include "net.h"
#include "strnum.h"
#include "claims_json.h"

enum claim_bit {
	CLAIM_SUB = 0x001,
	CLAIM_AUD = 0x002,
	CLAIM_IAT = 0x004,
	CLAIM_EXP = 0x008,
	CLAIM_JTI = 0x010,
	CLAIM_SVC = 0x020,
	CLAIM_RIP = 0x040,
	CLAIM_RPORT = 0x080,
	CLAIM_TLS = 0x100,
	CLAIM_TLSV = 0x200,
};
#define CLAIMS_REQUIRED \
	(CLAIM_SUB | CLAIM_AUD | CLAIM_IAT | CLAIM_EXP | CLAIM_JTI | CLAIM_SVC)

struct json_member_ctx {
	struct istream *input;
	struct json_parser *parser;
};

static void json_ctx_init(struct json_member_ctx *ctx,
			  const unsigned char *json, size_t size)
{
	ctx->input = i_stream_create_from_data(json, size);
	ctx->parser = json_parser_init(ctx->input);
}

/* Ends parsing; keeps an earlier error, else reports the parser's. */
static int json_ctx_deinit(struct json_member_ctx *ctx, int ret,
			   const char **error_r)
{
	const char *perror;

	if (json_parser_deinit(&ctx->parser, &perror) < 0 && ret == 0) {
		*error_r = t_strdup_printf("invalid JSON: %s", perror);
		ret = -1;
	}
	i_stream_unref(&ctx->input);
	return ret;
}

/* Next "key": value pair of the root object. Returns 1 with the key
   (data-stack copy) and the value, 0 at the end of the object, -1 on error.
   Nested objects/arrays are returned as their type with value NULL; call
   json_parse_skip() to pass over them. */
static int json_next_member(struct json_member_ctx *ctx, const char **key_r,
			    enum json_type *type_r, const char **value_r,
			    const char **error_r)
{
	enum json_type type;
	const char *value;
	int ret;

	ret = json_parse_next(ctx->parser, &type, &value);
	if (ret < 0)
		return 0; /* end of input: json_parser_deinit() tells if clean */
	if (ret == 0 || type != JSON_TYPE_OBJECT_KEY) {
		*error_r = "invalid JSON: expected an object member";
		return -1;
	}
	*key_r = t_strdup(value);
	ret = json_parse_next(ctx->parser, type_r, value_r);
	if (ret <= 0) {
		*error_r = "invalid JSON: member without a value";
		return -1;
	}
	return 1;
}

static int copy_string(const char *key, enum json_type type,
		       const char *value, char *dest, size_t dest_size,
		       const char **error_r)
{
	size_t len;

	if (type != JSON_TYPE_STRING) {
		*error_r = t_strdup_printf("claim %s is not a string", key);
		return -1;
	}
	len = strlen(value);
	if (len >= dest_size) {
		*error_r = t_strdup_printf("claim %s is too long (%zu bytes)",
					   key, len);
		return -1;
	}
	memcpy(dest, value, len + 1);
	return 0;
}

static int parse_time(const char *key, enum json_type type, const char *value,
		      int64_t *time_r, const char **error_r)
{
	if (type != JSON_TYPE_STRING || !ticket_time_parse(value, time_r)) {
		*error_r = t_strdup_printf(
			"claim %s is not an RFC 3339 date-time string", key);
		return -1;
	}
	return 0;
}

static bool jti_valid(const char *jti)
{
	size_t i;

	for (i = 0; jti[i] != '\0'; i++) {
		char c = jti[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return FALSE;
	}
	return i > 0 && i <= 64;
}

static int
claims_member(const char *key, enum json_type type, const char *value,
	      struct ticket_claims *c, unsigned int *seen,
	      const char **error_r)
{
	static const struct {
		const char *name;
		enum claim_bit bit;
	} known[] = {
		{ "sub", CLAIM_SUB }, { "aud", CLAIM_AUD },
		{ "iat", CLAIM_IAT }, { "exp", CLAIM_EXP },
		{ "jti", CLAIM_JTI }, { "svc", CLAIM_SVC },
		{ "rip", CLAIM_RIP }, { "rport", CLAIM_RPORT },
		{ "tls", CLAIM_TLS }, { "tlsv", CLAIM_TLSV },
	};
	enum claim_bit bit = 0;
	unsigned int i, port;

	for (i = 0; i < N_ELEMENTS(known); i++) {
		if (strcmp(key, known[i].name) == 0) {
			bit = known[i].bit;
			break;
		}
	}
	if (bit == 0)
		return 0; /* not ours: ignored */
	if ((*seen & bit) != 0) {
		*error_r = t_strdup_printf("claim %s appears twice", key);
		return -1;
	}
	*seen |= bit;

	switch (bit) {
	case CLAIM_SUB:
		if (copy_string(key, type, value, c->sub, sizeof(c->sub),
				error_r) < 0)
			return -1;
		if (c->sub[0] == '\0') {
			*error_r = "claim sub is empty";
			return -1;
		}
		return 0;
	case CLAIM_AUD:
		if (copy_string(key, type, value, c->aud, sizeof(c->aud),
				error_r) < 0)
			return -1;
		if (c->aud[0] == '\0') {
			*error_r = "claim aud is empty";
			return -1;
		}
		return 0;
	case CLAIM_JTI:
		if (copy_string(key, type, value, c->jti, sizeof(c->jti),
				error_r) < 0)
			return -1;
		if (!jti_valid(c->jti)) {
			*error_r = "claim jti is not 1-64 characters of [A-Za-z0-9_-]";
			return -1;
		}
		return 0;
	case CLAIM_SVC:
		if (copy_string(key, type, value, c->svc, sizeof(c->svc),
				error_r) < 0)
			return -1;
		if (c->svc[0] == '\0') {
			*error_r = "claim svc is empty";
			return -1;
		}
		return 0;
	case CLAIM_IAT:
		return parse_time(key, type, value, &c->iat, error_r);
	case CLAIM_EXP:
		return parse_time(key, type, value, &c->exp, error_r);
	case CLAIM_RIP: {
		struct ip_addr ip;

		if (copy_string(key, type, value, c->rip, sizeof(c->rip),
				error_r) < 0)
			return -1;
		if (net_addr2ip(c->rip, &ip) < 0) {
			*error_r = "claim rip is not an IP address";
			return -1;
		}
		return 0;
	}
	case CLAIM_RPORT:
		if (type != JSON_TYPE_NUMBER || str_to_uint(value, &port) < 0 ||
		    port == 0 || port > 65535) {
			*error_r = "claim rport is not a port number (1-65535)";
			return -1;
		}
		c->rport = (int)port;
		return 0;
	case CLAIM_TLS:
		if (type != JSON_TYPE_TRUE && type != JSON_TYPE_FALSE) {
			*error_r = "claim tls is not true/false";
			return -1;
		}
		c->tls = type == JSON_TYPE_TRUE;
		return 0;
	case CLAIM_TLSV:
		return copy_string(key, type, value, c->tls_protocol,
				   sizeof(c->tls_protocol), error_r);
	}
	i_unreached();
}

int claims_json_parse(const unsigned char *json, size_t size,
		       struct ticket_claims *claims_r, const char **error_r)
{
	struct json_member_ctx ctx;
	enum json_type type;
	const char *key, *value;
	unsigned int seen = 0;
	int ret;

	i_zero(claims_r);
	json_ctx_init(&ctx, json, size);
	while ((ret = json_next_member(&ctx, &key, &type, &value,
				       error_r)) > 0) {
		if (type == JSON_TYPE_OBJECT || type == JSON_TYPE_ARRAY) {
			json_parse_skip(ctx.parser);
			value = NULL;
		}
		if (claims_member(key, type, value, claims_r, &seen, error_r) < 0) {
			ret = -1;
			break;
		}
	}
	ret = json_ctx_deinit(&ctx, ret, error_r);
	if (ret == 0 && (seen & CLAIMS_REQUIRED) != CLAIMS_REQUIRED) {
		const char *missing =
			(seen & CLAIM_SUB) == 0 ? "sub" :
			(seen & CLAIM_AUD) == 0 ? "aud" :
			(seen & CLAIM_IAT) == 0 ? "iat" :
			(seen & CLAIM_EXP) == 0 ? "exp" :
			(seen & CLAIM_JTI) == 0 ? "jti" : "svc";
		*error_r = t_strdup_printf("claim %s is missing", missing);
		ret = -1;
	}
	return ret;
}
