#include "passdb_file.h"

#include <errno.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "passwd_file.h"

/* What identifies a version of the file. */
struct file_sig {
	bool valid;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

struct passdb_file_src {
	char *path;
	char *default_scheme;
	struct passwd_file *pf;         /* last good version; NULL if none */
	struct file_sig loaded;         /* version in pf */
	struct file_sig failed;         /* last version that failed to load */
	char last_error[512];           /* last error logged, to log it once */
	struct timespec last_check;
	unsigned char decoy_key[crypto_shorthash_KEYBYTES];    /* per process */
};

struct passdb_file_src *passdb_file_new(const char *path, const char *default_scheme)
{
	struct passdb_file_src *db = calloc(1, sizeof(*db));

	if (db == NULL)
		return NULL;
	db->path = strdup(path);
	db->default_scheme = strdup(default_scheme);
	if (db->path == NULL || db->default_scheme == NULL) {
		passdb_file_free(db);
		return NULL;
	}
	crypto_shorthash_keygen(db->decoy_key);
	return db;
}

void passdb_file_free(struct passdb_file_src *db)
{
	if (db == NULL)
		return;
	passwd_file_free(db->pf);
	free(db->path);
	free(db->default_scheme);
	free(db);
}

static bool sig_equal(const struct file_sig *a, const struct file_sig *b)
{
	return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static int file_sig_get(const char *path, struct file_sig *sig, char *err, size_t errlen)
{
	struct stat st;

	memset(sig, 0, sizeof(*sig));
	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	sig->valid = true;
	sig->dev = st.st_dev;
	sig->ino = st.st_ino;
	sig->size = st.st_size;
	sig->mtime = st.st_mtim;
	return 0;
}

/* stat() before reading: if the file changes in between, the next check sees
   a new signature and loads again. */
static int load_version(struct passdb_file_src *db, struct file_sig *sig,
			struct dglog *log, char *err, size_t errlen)
{
	struct passwd_file *pf;
	const char *dup = NULL;

	if (file_sig_get(db->path, sig, err, errlen) < 0)
		return -1;
	pf = passwd_file_load(db->path, err, errlen);
	if (pf == NULL)
		return -1;
	passwd_file_free(db->pf);
	db->pf = pf;
	db->loaded = *sig;
	if (passwd_file_duplicates(pf, &dup) > 0)
		dglog(log, LOG_WARNING, "%s: users listed twice, the first entry wins: %s",
		      db->path, dup != NULL ? dup : "?");
	db->last_error[0] = '\0';
	return 0;
}

int passdb_file_load(struct passdb_file_src *db, struct dglog *log,
		     char *err, size_t errlen)
{
	struct file_sig sig;

	clock_gettime(CLOCK_MONOTONIC, &db->last_check);
	if (load_version(db, &sig, log, err, errlen) == 0)
		return 0;
	db->failed = sig;
	snprintf(db->last_error, sizeof(db->last_error), "%s", err);
	return -1;
}

static bool checked_recently(struct passdb_file_src *db)
{
	struct timespec now;
	long long elapsed_ms;

	clock_gettime(CLOCK_MONOTONIC, &now);
	elapsed_ms = (now.tv_sec - db->last_check.tv_sec) * 1000LL +
		     (now.tv_nsec - db->last_check.tv_nsec) / 1000000;
	if (elapsed_ms < 1000)
		return true;
	db->last_check = now;
	return false;
}

static void log_failure_once(struct passdb_file_src *db, struct dglog *log,
			     const char *err)
{
	if (strcmp(db->last_error, err) == 0)
		return;
	snprintf(db->last_error, sizeof(db->last_error), "%s", err);
	if (db->pf != NULL)
		dglog(log, LOG_ERR, "users file not reloaded, keeping the previous "
		      "version (%zu users): %s", passwd_file_count(db->pf), err);
	else
		dglog(log, LOG_ERR, "users file unusable, logins fail temporarily: %s", err);
}

void passdb_file_refresh(struct passdb_file_src *db, struct dglog *log)
{
	struct file_sig sig;
	char err[512];

	if (checked_recently(db))
		return;
	if (file_sig_get(db->path, &sig, err, sizeof(err)) < 0) {
		log_failure_once(db, log, err);
		return;
	}
	if (sig_equal(&sig, &db->loaded) || sig_equal(&sig, &db->failed))
		return;
	if (load_version(db, &sig, log, err, sizeof(err)) < 0) {
		db->failed = sig;
		log_failure_once(db, log, err);
		return;
	}
	dglog(log, LOG_INFO, "users file %s reloaded: %zu users", db->path,
	      passwd_file_count(db->pf));
}

enum passdb_file_result passdb_file_lookup(const struct passdb_file_src *db,
					   const char *user, char **stored_r)
{
	const struct passwd_entry *e;

	*stored_r = NULL;
	if (db->pf == NULL)
		return PDF_UNAVAILABLE;
	e = passwd_file_lookup(db->pf, user);
	if (e == NULL)
		return PDF_NOT_FOUND;
	*stored_r = strdup(e->password != NULL ? e->password : "");
	return *stored_r != NULL ? PDF_FOUND : PDF_UNAVAILABLE;
}

bool passdb_file_has(const struct passdb_file_src *db, const char *user)
{
	return db->pf != NULL && passwd_file_lookup(db->pf, user) != NULL;
}

const char *passdb_file_field(const struct passdb_file_src *db, const char *user,
			      const char *key)
{
	const struct passwd_entry *e = db->pf != NULL ? passwd_file_lookup(db->pf, user) : NULL;

	return e != NULL ? passwd_entry_field(e, key) : NULL;
}

/* A stored password worth using as a decoy: not empty, not locked with the
   usual '!' or '*' in front of the hash. */
static bool decoy_usable(const char *stored)
{
	const char *hash = stored;

	if (stored == NULL || stored[0] == '\0')
		return false;
	if (stored[0] == '{') {
		const char *end = strchr(stored, '}');
		hash = end != NULL ? end + 1 : stored;
	}
	return hash[0] != '\0' && hash[0] != '!' && hash[0] != '*';
}

char *passdb_file_decoy(const struct passdb_file_src *db, const char *name)
{
	size_t n = passwd_file_count(db->pf);
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t pick;

	if (n == 0)
		return NULL;
	crypto_shorthash(h, (const unsigned char *)name, strlen(name), db->decoy_key);
	memcpy(&pick, h, sizeof(pick));
	for (size_t i = 0; i < n; i++) {
		const struct passwd_entry *e = passwd_file_entry(db->pf, (size_t)((pick + i) % n));

		if (decoy_usable(e->password))
			return strdup(e->password);
	}
	return NULL;
}

const char *passdb_file_default_scheme(const struct passdb_file_src *db)
{
	return db->default_scheme;
}

size_t passdb_file_user_count(const struct passdb_file_src *db)
{
	return db->pf != NULL ? passwd_file_count(db->pf) : 0;
}
