/* libFuzzer: password scheme parsers (scheme_verify, CRAM-MD5, APOP).
   Input: "<stored>\0<password>" (no NUL: all stored, empty password). */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "schemes.h"

/* Stored hashes are trusted admin data whose cost parameters are honoured
   (rounds=, argon2 m/t, bcrypt cost ...): skip inputs that would only make
   the fuzzer slow, not find bugs. */
static int too_costly(const char *s)
{
	if (strstr(s, "$7$") || strstr(s, "$y$") || strstr(s, "$gy$") ||
	    strstr(s, "$sha1$") || strstr(s, "$md5"))
		return 1;
	for (const char *p = s; *p != '\0'; p++) {
		if (isdigit((unsigned char)*p) && (p == s || !isdigit((unsigned char)p[-1]))) {
			unsigned long v = strtoul(p, NULL, 10);
			if (v > 5000 || strspn(p, "0123456789") > 6)
				return 1;
		}
	}
	if (strcasestr(s, "argon2")) {
		const char *m = strstr(s, "m="), *t = strstr(s, "t="), *par = strstr(s, "p=");
		if ((m && strtoul(m + 2, NULL, 10) > 4096) || (t && strtoul(t + 2, NULL, 10) > 3) ||
		    (par && strtoul(par + 2, NULL, 10) > 2))
			return 1;
	}
	for (const char *p = strstr(s, "$2"); p != NULL; p = strstr(p + 1, "$2")) {
		if (p[2] != '\0' && p[3] == '$' && isdigit((unsigned char)p[4]) &&
		    strtoul(p + 4, NULL, 10) > 5)
			return 1;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 4096)
		return 0;
	char *buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';
	const char *stored = buf;
	size_t slen = strlen(stored);
	const char *pw = slen < size ? buf + slen + 1 : buf + size;
	size_t pwlen = slen < size ? size - slen - 1 : 0;
	const char *err = NULL;

	if (!too_costly(stored)) {
		(void)scheme_verify(stored, "CRYPT", pw, pwlen, &err);
		(void)scheme_verify(stored, "PLAIN", pw, pwlen, &err);
		(void)scheme_verify(stored, NULL, pw, pwlen, &err);
		(void)scheme_verify_cram_md5(stored, "PLAIN", "<1.2@host>", 10,
					     pw, pwlen, &err);
		(void)scheme_verify_apop(stored, "PLAIN", "<1.2@host>", 10, pw, pwlen, &err);
	}
	free(buf);
	return 0;
}
