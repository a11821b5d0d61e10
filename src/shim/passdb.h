/* The user source: a Dovecot passwd-file, reloaded when it changes. */
#ifndef DOVEGATE_SHIM_PASSDB_H
#define DOVEGATE_SHIM_PASSDB_H

#include <stddef.h>

#include "log.h"

struct passdb;

enum passdb_result {
	PASSDB_FOUND,
	PASSDB_NOT_FOUND,
	PASSDB_UNAVAILABLE,     /* no good version of the file was ever loaded */
};

struct passdb *passdb_new(const char *path, const char *default_scheme);
void passdb_free(struct passdb *db);

/* Load the file now. -1 with err ("PATH: why") if it cannot be used. */
int passdb_load(struct passdb *db, struct dglog *log, char *err, size_t errlen);

/* Reload if the file's inode, size or mtime changed; looks at most once per
   second. A broken file keeps the previous good version; why is logged once
   per change of the file. */
void passdb_refresh(struct passdb *db, struct dglog *log);

/* On FOUND, *stored_r is a malloc()ed copy of the password field (may be ""). */
enum passdb_result passdb_lookup(const struct passdb *db, const char *user,
				 char **stored_r);
const char *passdb_default_scheme(const struct passdb *db);
size_t passdb_user_count(const struct passdb *db);

#endif
