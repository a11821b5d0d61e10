#include "session.h"

#include <sodium.h>

void session_id_new(char out[SESSION_ID_LEN + 1])
{
	unsigned char raw[16];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(out, SESSION_ID_LEN + 1, raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}
