/* Ticket claims <-> JSON with jansson (ticket_json.h). */
#include "ticket_json.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum claim_kind { CLAIM_STRING, CLAIM_TIME, CLAIM_PORT, CLAIM_BOOL };

struct claim_def {
	const char *name;
	enum claim_kind kind;
	size_t offset;          /* in struct ticket_claims */
	size_t size;            /* strings: buffer size */
};

#define MEMBER_SIZE(f) sizeof(((struct ticket_claims *)0)->f)
#define STRING(name, f) { name, CLAIM_STRING, offsetof(struct ticket_claims, f), MEMBER_SIZE(f) }
#define OTHER(name, kind, f) { name, kind, offsetof(struct ticket_claims, f), 0 }

/* JSON order. Short names keep a ticket for a 128-byte user within
   TICKET_MAX_SIZE_FOR_NGINX. */
static const struct claim_def claim_defs[] = {
	STRING("sub", sub),
	STRING("aud", aud),
	OTHER("iat", CLAIM_TIME, iat),
	OTHER("exp", CLAIM_TIME, exp),
	STRING("jti", jti),
	STRING("svc", svc),
	STRING("rip", rip),
	OTHER("rport", CLAIM_PORT, rport),
	OTHER("tls", CLAIM_BOOL, tls),
	STRING("tlsv", tls_protocol),
};

#define N_CLAIMS (sizeof(claim_defs) / sizeof(claim_defs[0]))

#define FIELD(c, def, type) ((type *)((char *)(c) + (def)->offset))
#define CFIELD(c, def, type) ((const type *)((const char *)(c) + (def)->offset))

/* ---- to JSON ------------------------------------------------------------ */

/* The claim's JSON value; NULL when absent (*fail_r = false) or on error. */
static json_t *claim_value(const struct ticket_claims *c, const struct claim_def *def,
			   bool *fail_r)
{
	char iso[TICKET_TIME_LEN + 1];
	json_t *v = NULL;

	*fail_r = false;
	switch (def->kind) {
	case CLAIM_STRING:
		if (CFIELD(c, def, char)[0] == '\0')
			return NULL;
		v = json_string(CFIELD(c, def, char));
		break;
	case CLAIM_TIME:
		if (*CFIELD(c, def, int64_t) == 0)
			return NULL;
		if (ticket_time_format(*CFIELD(c, def, int64_t), iso, sizeof(iso)))
			v = json_string(iso);
		break;
	case CLAIM_PORT:
		if (*CFIELD(c, def, int) == 0)
			return NULL;
		v = json_integer(*CFIELD(c, def, int));
		break;
	case CLAIM_BOOL:
		if (!*CFIELD(c, def, bool))
			return NULL;
		v = json_true();
		break;
	}
	*fail_r = v == NULL;
	return v;
}

char *ticket_claims_to_json(const struct ticket_claims *c)
{
	json_t *obj = json_object();
	char *out = NULL;
	bool fail = obj == NULL;

	for (size_t i = 0; i < N_CLAIMS && !fail; i++) {
		json_t *v = claim_value(c, &claim_defs[i], &fail);
		if (v != NULL && json_object_set_new(obj, claim_defs[i].name, v) < 0)
			fail = true;
	}
	if (!fail)
		out = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	return out;
}

/* ---- from JSON ---------------------------------------------------------- */

/* NULL if v was stored, else why not. */
static const char *claim_parse(struct ticket_claims *c, const struct claim_def *def,
			       const json_t *v)
{
	json_int_t port;

	switch (def->kind) {
	case CLAIM_STRING:
		if (!json_is_string(v))
			return "not a string";
		if (json_string_length(v) >= def->size)
			return "too long";
		memcpy(FIELD(c, def, char), json_string_value(v), json_string_length(v) + 1);
		return NULL;
	case CLAIM_TIME:
		if (!json_is_string(v) ||
		    !ticket_time_parse(json_string_value(v), FIELD(c, def, int64_t)))
			return "not an RFC 3339 time such as \"2026-11-22T04:30:00Z\"";
		return NULL;
	case CLAIM_PORT:
		port = json_is_integer(v) ? json_integer_value(v) : 0;
		if (port < 1 || port > 65535)
			return "not a port number (1-65535)";
		*FIELD(c, def, int) = (int)port;
		return NULL;
	case CLAIM_BOOL:
		if (!json_is_boolean(v))
			return "not true or false";
		*FIELD(c, def, bool) = json_is_true(v);
		return NULL;
	}
	return "unknown claim type";
}

static bool claims_parse(struct ticket_claims *c, const json_t *obj,
			 char *err, size_t errsize)
{
	for (size_t i = 0; i < N_CLAIMS; i++) {
		const json_t *v = json_object_get(obj, claim_defs[i].name);
		const char *why = v != NULL ? claim_parse(c, &claim_defs[i], v) : NULL;

		if (why != NULL) {
			snprintf(err, errsize, "claim '%s': %s", claim_defs[i].name, why);
			return false;
		}
	}
	return true;
}

bool ticket_claims_from_json(const char *json, size_t len, struct ticket_claims *out,
			     char *err, size_t errsize)
{
	json_error_t je;
	json_t *root;
	bool ok = false;

	memset(out, 0, sizeof(*out));
	/* a second "sub" could mean something else to another parser */
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		snprintf(err, errsize, "claims are not valid JSON: %s", je.text);
	else if (!json_is_object(root))
		snprintf(err, errsize, "claims are not a JSON object");
	else
		ok = claims_parse(out, root, err, errsize);
	json_decref(root);
	if (!ok)
		memset(out, 0, sizeof(*out));
	return ok;
}

bool ticket_json_string_ok(const char *s, size_t len)
{
	json_t *v;
	bool ok;

	if (memchr(s, '\0', len) != NULL)
		return false;
	v = json_stringn(s, len);
	ok = v != NULL;
	json_decref(v);
	return ok;
}

bool ticket_json_is_object(const char *json, size_t len, char *err, size_t errsize)
{
	json_error_t je;
	json_t *root = json_loadb(json, len, 0, &je);
	bool ok = root != NULL && json_is_object(root);

	if (root == NULL)
		snprintf(err, errsize, "not valid JSON: %s", je.text);
	else if (!ok)
		snprintf(err, errsize, "not a JSON object");
	json_decref(root);
	return ok;
}
