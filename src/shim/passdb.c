#include "passdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "passdb_file.h"

struct source {
	const char *name;               /* points into the config */
	struct passdb_file_src *file;   /* passwd-file; NULL for dovecot */
	/* dovecot */
	char *socket;
	unsigned timeout;
	bool no_penalty;
	struct pdc_client *client;      /* NULL until attached */
};

struct passdb {
	const char *default_scheme;     /* [passdb]'s; owned by the config */
	struct source src[CONFIG_MAX_PASSDBS + 1];
	size_t count;
	struct source *remote;          /* the dovecot source, always last; or NULL */
};

static int add_file(struct passdb *db, const char *name, const char *path,
		    const char *scheme)
{
	struct source *s = &db->src[db->count];

	s->name = name;
	s->file = passdb_file_new(path, scheme);
	if (s->file == NULL)
		return -1;
	db->count++;
	return 0;
}

static int add_conf(struct passdb *db, const struct dg_config *cfg,
		    const struct passdb_conf *pc)
{
	struct source *s = &db->src[db->count];

	if (pc->driver == PASSDB_DRIVER_PASSWD_FILE)
		return add_file(db, pc->name, pc->path, pc->default_scheme != NULL ?
				pc->default_scheme : cfg->default_scheme);
	s->name = pc->name;
	s->timeout = pc->timeout;
	s->no_penalty = pc->no_penalty;
	s->socket = strdup(pc->socket);
	if (s->socket == NULL)
		return -1;
	db->remote = s;
	db->count++;
	return 0;
}

/* [passdb] (when it names a file) takes its place among [passdb NAME]
   sections by line; the config has checked that a dovecot one is last. */
struct passdb *passdb_new(const struct dg_config *cfg)
{
	struct passdb *db = calloc(1, sizeof(*db));
	bool main_done = cfg->line[CK_PASSDB_PATH] == 0;

	if (db == NULL)
		return NULL;
	db->default_scheme = cfg->default_scheme;
	for (size_t i = 0; i <= cfg->passdb_count; i++) {
		const struct passdb_conf *pc = i < cfg->passdb_count ? &cfg->passdbs[i] : NULL;

		if (!main_done && (pc == NULL || cfg->passdb_line < pc->line)) {
			main_done = true;
			if (add_file(db, "passdb", cfg->passdb_path, cfg->default_scheme) < 0)
				goto fail;
		}
		if (pc != NULL && add_conf(db, cfg, pc) < 0)
			goto fail;
	}
	return db;
fail:
	passdb_free(db);
	return NULL;
}

void passdb_free(struct passdb *db)
{
	if (db == NULL)
		return;
	for (size_t i = 0; i < db->count; i++) {
		passdb_file_free(db->src[i].file);
		pdc_client_free(db->src[i].client);
		free(db->src[i].socket);
	}
	free(db);
}

int passdb_load(struct passdb *db, struct dglog *log, char *err, size_t errlen)
{
	int rc = 0;

	/* every file is tried, so each gets its first load; the first error wins */
	for (size_t i = 0; i < db->count; i++) {
		char why[512];

		if (db->src[i].file == NULL ||
		    passdb_file_load(db->src[i].file, log, why, sizeof(why)) == 0)
			continue;
		if (rc == 0)
			snprintf(err, errlen, "%s", why);
		rc = -1;
	}
	return rc;
}

void passdb_refresh(struct passdb *db, struct dglog *log)
{
	for (size_t i = 0; i < db->count; i++) {
		if (db->src[i].file != NULL)
			passdb_file_refresh(db->src[i].file, log);
	}
}

/* A stored password without "{SCHEME}" is read with its own file's default. */
static char *with_scheme(char *stored, const char *scheme, const char *main_scheme)
{
	char *full;

	if (stored[0] == '\0' || stored[0] == '{' || strcasecmp(scheme, main_scheme) == 0)
		return stored;
	if (asprintf(&full, "{%s}%s", scheme, stored) < 0)
		full = NULL;
	explicit_bzero(stored, strlen(stored));
	free(stored);
	return full;
}

enum passdb_result passdb_lookup(const struct passdb *db, const char *user,
				 char **stored_r)
{
	*stored_r = NULL;
	for (size_t i = 0; i < db->count; i++) {
		const struct source *s = &db->src[i];

		if (s->file == NULL)
			return PASSDB_REMOTE;
		switch (passdb_file_lookup(s->file, user, stored_r)) {
		case PDF_NOT_FOUND:
			continue;
		case PDF_UNAVAILABLE:
			return PASSDB_UNAVAILABLE;
		case PDF_FOUND:
			*stored_r = with_scheme(*stored_r, passdb_file_default_scheme(s->file),
						db->default_scheme);
			return *stored_r != NULL ? PASSDB_FOUND : PASSDB_UNAVAILABLE;
		}
	}
	return PASSDB_NOT_FOUND;
}

static int copy_field(const char *value, char **out)
{
	*out = value != NULL ? strdup(value) : NULL;
	return value != NULL && *out == NULL ? -1 : 0;
}

/* The first users file that has the user is the one passdb_lookup() used. */
int passdb_route(const struct passdb *db, const char *user, char **host_r, char **port_r)
{
	*host_r = *port_r = NULL;
	for (size_t i = 0; i < db->count && db->src[i].file != NULL; i++) {
		struct passdb_file_src *f = db->src[i].file;
		char *stored = NULL;
		enum passdb_file_result found = passdb_file_lookup(f, user, &stored);

		if (stored != NULL)
			explicit_bzero(stored, strlen(stored));
		free(stored);
		if (found != PDF_FOUND)
			continue;
		if (copy_field(passdb_file_field(f, user, "host"), host_r) < 0 ||
		    copy_field(passdb_file_field(f, user, "port"), port_r) < 0) {
			free(*host_r);
			*host_r = NULL;
			return -1;
		}
		return 0;
	}
	return 0;
}

/* The users file passdb_lookup() found user in; NULL if none. */
static struct passdb_file_src *file_of(const struct passdb *db, const char *user)
{
	for (size_t i = 0; i < db->count && db->src[i].file != NULL; i++)
		if (passdb_file_has(db->src[i].file, user))
			return db->src[i].file;
	return NULL;
}

bool passdb_nologin(const struct passdb *db, const char *user)
{
	struct passdb_file_src *f = file_of(db, user);

	return f != NULL && passdb_file_field(f, user, "nologin") != NULL;
}

char *passdb_decoy(const struct passdb *db, const char *name)
{
	for (size_t i = 0; i < db->count && db->src[i].file != NULL; i++) {
		struct passdb_file_src *f = db->src[i].file;
		char *decoy = passdb_file_decoy(f, name);

		if (decoy != NULL)
			return with_scheme(decoy, passdb_file_default_scheme(f), db->default_scheme);
	}
	return NULL;
}

const char *passdb_default_scheme(const struct passdb *db)
{
	return db->default_scheme;
}

size_t passdb_user_count(const struct passdb *db)
{
	size_t n = 0;

	for (size_t i = 0; i < db->count; i++) {
		if (db->src[i].file != NULL)
			n += passdb_file_user_count(db->src[i].file);
	}
	return n;
}

const char *passdb_remote_name(const struct passdb *db)
{
	return db->remote != NULL ? db->remote->name : "-";
}

bool passdb_remote_no_penalty(const struct passdb *db)
{
	return db->remote != NULL && db->remote->no_penalty;
}

int passdb_attach(struct passdb *db, struct event_base *base, struct dglog *log,
		  const struct passdb *prev, char *err, size_t errlen)
{
	struct source *s = db->remote;

	if (s == NULL || s->client != NULL)
		return 0;
	if (prev != NULL && prev->remote != NULL && prev->remote->client != NULL &&
	    strcmp(prev->remote->socket, s->socket) == 0) {
		s->client = pdc_client_share(prev->remote->client, s->timeout);
		return 0;
	}
	s->client = pdc_client_new(base, s->socket, s->timeout, log, err, errlen);
	return s->client != NULL ? 0 : -1;
}

void passdb_remote_auth(struct passdb *db, struct pdc_auth *a,
			pdc_done_fn *done, void *ctx)
{
	struct pdc_result res;

	if (db->remote != NULL && db->remote->client != NULL) {
		pdc_client_auth(db->remote->client, a, done, ctx);
		return;
	}
	memset(&res, 0, sizeof(res));
	res.status = PDC_TEMP;
	res.detail = "dovecot auth: not connected";
	done(ctx, &res);
}
