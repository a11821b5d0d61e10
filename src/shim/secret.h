/* Small secret files (the nginx shared secret, the master password). */
#ifndef DOVEGATE_SHIM_SECRET_H
#define DOVEGATE_SHIM_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#define SECRET_MAX_BYTES 1024

struct secret {
	char *data;   /* NUL terminated; no control bytes */
	size_t len;
};

/* Read `path`, strip one trailing "\n" or "\r\n". The content must be
   non-empty, free of control bytes and of leading/trailing spaces, because it
   travels as an HTTP header value (nginx trims spaces).
   If `private_only`, refuse files any group/other permission bit set.
   Always refuse a file another user could change or replace (filetrust.h).
   *insecure_r (if not NULL) tells whether group/others may read the file.
   Errors go to err as "PATH: why". */
int secret_read(const char *path, bool private_only, struct secret *out,
		bool *insecure_r, char *err, size_t errlen);
/* Wipes and frees. */
void secret_clear(struct secret *s);

#endif
