/* Login ticket claims read with Dovecot's own json parser, for the passdb
   module. The PASETO layer (src/common/ticket.c, keyring_verify) hands over
   the verified message; this turns it into struct ticket_claims. The footer
   ({"kid":"..."}, exact form) is read by ticket_footer_kid(). */
#ifndef DOVEGATE_CLAIMS_JSON_H
#define DOVEGATE_CLAIMS_JSON_H

#include "ticket.h"

/* Claims object (ticket.h: names, types). Required: sub, aud, jti, svc
   (strings), iat, exp (RFC 3339 strings, ticket_time_parse). Optional: rip
   (IP address string), rport (1..65535), tls (true/false), tlsv (string).
   Unknown members are ignored (nested values skipped); duplicate members,
   wrong types, over-long or empty values, a jti outside [A-Za-z0-9_-]{1,64}
   or invalid JSON are errors.
   Returns 0, or -1 with *error_r set (safe to log: never echoes values). */
int claims_json_parse(const unsigned char *json, size_t size,
		       struct ticket_claims *claims_r, const char **error_r);

#endif
