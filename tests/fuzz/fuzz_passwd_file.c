/* libFuzzer: Dovecot passwd-file parser. Input: the file's text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "passwd_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	struct passwd_file *pf = passwd_file_parse((const char *)data, size, err, sizeof(err));
	if (pf == NULL)
		return 0;
	const char *first = NULL;
	(void)passwd_file_count(pf);
	(void)passwd_file_duplicates(pf, &first);
	/* Look up the first line's user name, and a few fixed ones. */
	{
		char user[256];
		size_t i = 0;
		while (i < size && i < sizeof(user) - 1 && data[i] != ':' && data[i] != '\n' && data[i] != '\0') {
			user[i] = (char)data[i];
			i++;
		}
		user[i] = '\0';
		const struct passwd_entry *e = passwd_file_lookup(pf, user);
		if (e != NULL) {
			(void)passwd_entry_field(e, "nologin");
			(void)passwd_entry_field(e, "proxy");
			for (size_t f = 0; f < e->field_count; f++)
				(void)strlen(e->fields[f].key);
		}
	}
	(void)passwd_file_lookup(pf, "alice");
	(void)passwd_file_lookup(pf, "");
	passwd_file_free(pf);
	return 0;
}
