/* libFuzzer: nginx auth_http request decoding (authhttp_request_parse,
   authhttp_decode, authhttp_secret_ok). Input: "Name: value" lines. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "authhttp.h"

#define MAX_PAIRS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1);
	struct authhttp_pair pairs[MAX_PAIRS];
	size_t count = 0;
	char *p, *line, *save = NULL;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	/* Every value on its own through the %XX decoder (explicit length, so
	   embedded NULs count too). */
	{
		char *out = NULL;
		size_t outlen = 0;
		if (authhttp_decode(buf, size, &out, &outlen) == 0)
			free(out);
	}

	for (p = buf; (line = strtok_r(p, "\n", &save)) != NULL && count < MAX_PAIRS; p = NULL) {
		char *colon = strchr(line, ':');
		size_t n;
		if (colon == NULL)
			continue;
		*colon = '\0';
		colon++;
		if (*colon == ' ')
			colon++;
		n = strlen(colon);
		if (n > 0 && colon[n - 1] == '\r')
			colon[n - 1] = '\0';
		pairs[count].name = line;
		pairs[count].value = colon;
		count++;
	}

	struct authhttp_request req;
	memset(&req, 0, sizeof(req));
	authhttp_request_parse(&req, pairs, count);
	authhttp_request_clear(&req);
	(void)authhttp_secret_ok(pairs, count, "X-Dovegate-Secret", "s3cret", 6);
	for (size_t i = 0; i < count; i++) {
		char *out = NULL;
		size_t outlen = 0;
		enum dg_proto proto;
		if (authhttp_decode(pairs[i].value, strlen(pairs[i].value), &out, &outlen) == 0)
			free(out);
		(void)dg_proto_parse(pairs[i].value, &proto);
	}
	free(buf);
	return 0;
}
