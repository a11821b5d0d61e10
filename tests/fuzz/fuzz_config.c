/* libFuzzer: dovegate-auth.conf parser (inih + config checks). There is no
   buffer API: each input is written to one temporary file and loaded. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char path[64];

static void cleanup(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	snprintf(path, sizeof(path), "/tmp/dg-fuzz-config-%ld.conf", (long)getpid());
	atexit(cleanup);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "w");
	if (f == NULL)
		abort();
	if (size > 0 && fwrite(data, 1, size, f) != size)
		abort();
	fclose(f);

	struct dg_config cfg;
	char err[512];
	memset(&cfg, 0, sizeof(cfg));
	if (config_load(path, &cfg, err, sizeof(err)) == 0) {
		(void)config_uses_cred_mode(&cfg, CRED_MODE_TICKET);
		config_free(&cfg);
	}
	return 0;
}
