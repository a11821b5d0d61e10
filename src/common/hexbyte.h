/* One byte from two hex digits ("%XX" in nginx headers, "\XX" in RFC 2253
   names), decoded by libsodium rather than by hand. */
#ifndef DOVEGATE_HEXBYTE_H
#define DOVEGATE_HEXBYTE_H

#include <stdbool.h>
#include <stddef.h>
#include <sodium.h>

/* `avail`: bytes readable at `two` (so a NUL or the end is never passed). */
static inline bool hex_byte(const char *two, size_t avail, unsigned char *out)
{
	size_t n = 0;

	return avail >= 2 && sodium_hex2bin(out, 1, two, 2, NULL, &n, NULL) == 0 && n == 1;
}

#endif
