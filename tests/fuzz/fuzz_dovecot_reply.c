/* libFuzzer: Dovecot auth-client server lines (pdc_parse_line) and the tab
   escaping helpers. Input: one or more lines. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "passdb_dovecot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > PDC_MAX_LINE * 2)
		return 0;
	char *buf = malloc(size + 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	buf[size] = '\0';

	/* Each LF-terminated line, as the client would hand it over. */
	char *p = buf;
	for (;;) {
		char *nl = memchr(p, '\n', (size_t)(buf + size - p));
		if (nl != NULL)
			*nl = '\0';
		struct pdc_reply r;
		memset(&r, 0, sizeof(r));
		(void)pdc_parse_line(p, &r);
		if (nl == NULL)
			break;
		p = nl + 1;
	}

	/* escape / unescape round trip */
	char *esc = malloc(2 * size + 1);
	if (esc != NULL) {
		size_t n = pdc_tabescape((const char *)data, size, esc);
		esc[n] = '\0';
		pdc_tabunescape(esc);
		if (memchr(data, '\0', size) == NULL &&
		    (strlen(esc) != size || memcmp(esc, data, size) != 0))
			abort();   /* unescape(escape(x)) != x */
		free(esc);
	}
	free(buf);
	return 0;
}
