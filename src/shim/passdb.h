/* The user sources ("passdbs"), asked in order like Dovecot's passdbs:
   [passdb] and [passdb NAME] sections in file order.
   - passwd-file sources are looked up here, synchronously; the caller
     verifies the password (off the loop, see decision.c).
   - a dovecot source (at most one, always last) verifies the password
     itself, asynchronously (passdb_remote_auth).
   Order semantics: the first passwd-file that has the user decides (a wrong
   password stops there; unlike Dovecot's default result_failure=continue,
   a user's password is never tried against a second source); an unknown
   user goes on to the next source; a source that cannot answer stops with a
   temporary failure (never a false "unknown user"). */
#ifndef DOVEGATE_SHIM_PASSDB_H
#define DOVEGATE_SHIM_PASSDB_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "log.h"
#include "passdb_dovecot.h"

struct event_base;
struct passdb;

enum passdb_result {
	PASSDB_FOUND,
	PASSDB_NOT_FOUND,
	PASSDB_UNAVAILABLE,     /* a users file before the user was never loaded */
	PASSDB_REMOTE,          /* in no users file: ask Dovecot (passdb_remote_auth) */
};

/* The sources the config names, in order. NULL: out of memory. */
struct passdb *passdb_new(const struct dg_config *cfg);
void passdb_free(struct passdb *db);

/* Load every users file now. -1 with err ("PATH: why") if one cannot be used. */
int passdb_load(struct passdb *db, struct dglog *log, char *err, size_t errlen);

/* Reload users files that changed (see passdb_file.h). */
void passdb_refresh(struct passdb *db, struct dglog *log);

/* Walks the sources in order. On FOUND, *stored_r is a malloc()ed copy of the
   password field (may be ""), carrying "{SCHEME}" when its file's
   default_scheme differs from passdb_default_scheme(). */
enum passdb_result passdb_lookup(const struct passdb *db, const char *user,
				 char **stored_r);
/* After PASSDB_FOUND: the user's host= and port= extra fields (Dovecot
   proxy semantics: where the user's mailbox is), malloc()ed, NULL when
   absent. -1 when out of memory. */
int passdb_route(const struct passdb *db, const char *user, char **host_r, char **port_r);
/* After PASSDB_FOUND: true when the user's entry carries Dovecot's
   `nologin` field (a locked account). */
bool passdb_nologin(const struct passdb *db, const char *user);
/* A decoy stored password for name (passdb_file_decoy) from the first users
   file that has users, with its "{SCHEME}" as passdb_lookup() gives it;
   NULL when there is none. */
char *passdb_decoy(const struct passdb *db, const char *name);
const char *passdb_default_scheme(const struct passdb *db);
size_t passdb_user_count(const struct passdb *db);
/* The name of the source that answers for users in no file ("-": none). */
const char *passdb_remote_name(const struct passdb *db);

/* The dovecot source's no_penalty setting. */
bool passdb_remote_no_penalty(const struct passdb *db);

/* Connects the dovecot source (never done by `dovegate-auth -t`). A client of
   `prev` (the runtime being replaced) with the same socket is kept, so a
   reload does not reconnect. -1 with err on failure. */
int passdb_attach(struct passdb *db, struct event_base *base, struct dglog *log,
		  const struct passdb *prev, char *err, size_t errlen);

/* After PASSDB_REMOTE: done runs once on the loop thread, maybe before this
   returns. Not attached or not connected: PDC_TEMP at once. */
void passdb_remote_auth(struct passdb *db, struct pdc_auth *a,
			pdc_done_fn *done, void *ctx);

#endif
