/* Ticket claims <-> JSON with jansson, for dovegate-auth, the CLI and the
   Dovecot passdb module (one parser for Dovecot 2.3 and 2.4, whose own
   JSON APIs differ). Claim names and
   encodings: see struct ticket_claims in ticket.h. Does not expose jansson,
   so users need no JANSSON_CFLAGS. */
#ifndef DOVEGATE_TICKET_JSON_H
#define DOVEGATE_TICKET_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "ticket.h"

/* Compact JSON of the present claims (malloc()ed), or NULL when out of
   memory or a string claim is not valid UTF-8 / iat or exp not formattable. */
char *ticket_claims_to_json(const struct ticket_claims *c);

/* Parses claims (fields not in the JSON are left ""/0/false). False with a
   reason in err ("claim 'exp': not an RFC 3339 time", "duplicate name" ...).
   Unknown claims are ignored; duplicate names are refused. */
bool ticket_claims_from_json(const char *json, size_t len, struct ticket_claims *out,
			     char *err, size_t errsize);

/* True if the bytes are valid UTF-8 without NUL, i.e. can be a claim
   (nginx passes user names as raw bytes). */
bool ticket_json_string_ok(const char *s, size_t len);

/* True if json is one well-formed JSON object (duplicates allowed, so tests
   can craft odd tickets); else false with jansson's reason in err. */
bool ticket_json_is_object(const char *json, size_t len, char *err, size_t errsize);

#endif
