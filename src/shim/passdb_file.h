/* A passwd-file passdb source: a Dovecot passwd-file, reloaded when it changes. */
#ifndef DOVEGATE_SHIM_PASSDB_FILE_H
#define DOVEGATE_SHIM_PASSDB_FILE_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

struct passdb_file_src;

enum passdb_file_result {
	PDF_FOUND,
	PDF_NOT_FOUND,
	PDF_UNAVAILABLE,     /* no good version of the file was ever loaded */
};

struct passdb_file_src *passdb_file_new(const char *path, const char *default_scheme);
void passdb_file_free(struct passdb_file_src *db);

/* Load the file now. -1 with err ("PATH: why") if it cannot be used. */
int passdb_file_load(struct passdb_file_src *db, struct dglog *log,
		     char *err, size_t errlen);

/* Reload if the file's inode, size or mtime changed; looks at most once per
   second. A broken file keeps the previous good version; why is logged once
   per change of the file. */
void passdb_file_refresh(struct passdb_file_src *db, struct dglog *log);

/* On FOUND, *stored_r is a malloc()ed copy of the password field (may be ""). */
enum passdb_file_result passdb_file_lookup(const struct passdb_file_src *db,
					   const char *user, char **stored_r);
/* Whether the loaded file has user. */
bool passdb_file_has(const struct passdb_file_src *db, const char *user);
/* The user's extra field `key` (e.g. host, port); NULL when the user or the
   field is absent. Valid until the next refresh. */
const char *passdb_file_field(const struct passdb_file_src *db, const char *user,
			      const char *key);
/* A decoy for a login that has no usable stored password (an unknown user,
   an empty or unusable password field): another user's stored password,
   picked by a keyed hash of name, so that verifying against it costs what
   this file's real users cost, the same for the same name every time.
   malloc()ed; NULL when the file has no user with a usable password
   (not empty, not locked with '!' or '*'). The caller
   must never let a match count. */
char *passdb_file_decoy(const struct passdb_file_src *db, const char *name);
const char *passdb_file_default_scheme(const struct passdb_file_src *db);
size_t passdb_file_user_count(const struct passdb_file_src *db);

#endif
