/* A dovegate-auth.conf written to a fresh temporary directory per test and
   read with config_load(), for the unit tests of what the config sets up
   (test_routing, test_cluster). Include after cmocka.h. */
#ifndef DOVEGATE_TESTS_CONF_FIXTURE_H
#define DOVEGATE_TESTS_CONF_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* src/shim's config.h by its path: "config.h" alone is autoconf's here */
#include "../../src/shim/config.h"
#include "log.h"

struct fx {
	char dir[64];
	char conf[128];
	char err[1024];
	struct dglog log;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/dg-test-unit-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->conf, sizeof(f->conf), "%s/dovegate-auth.conf", f->dir);
	dglog_init(&f->log);
	*state = f;
	return 0;
}

/* Removes the config and a users file a test may have written. */
static int teardown(void **state)
{
	struct fx *f = *state;
	char users[128];

	snprintf(users, sizeof(users), "%s/users", f->dir);
	unlink(users);
	unlink(f->conf);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int load(struct fx *f, const char *text, struct dg_config *cfg)
{
	FILE *fp = fopen(f->conf, "w");

	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	f->err[0] = '\0';
	return config_load(f->conf, cfg, f->err, sizeof(f->err));
}

/* The config is refused with "CONF:LINE: message" ("CONF: message" for line 0). */
static void expect_error(struct fx *f, const char *text, unsigned line, const char *message)
{
	struct dg_config cfg;
	char want[1024];

	assert_int_equal(load(f, text, &cfg), -1);
	if (line != 0)
		snprintf(want, sizeof(want), "%s:%u: %s", f->conf, line, message);
	else
		snprintf(want, sizeof(want), "%s: %s", f->conf, message);
	assert_string_equal(f->err, want);
}

#endif
