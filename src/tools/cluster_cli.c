/* `dovegate cluster`: look at and steer the store dovegate-auth's edges
   share (dovegate-auth.conf's [cluster]): status, assignments, move,
   unassign, drain, undrain. It reads the config with dovegate-auth's own
   reader (the same checks, the same host ids) and talks to the store with
   blocking hiredis calls: this is a command, not the event loop. */
#include "cluster_cli.h"

#include <getopt.h>
#include <stdarg.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "../shim/config.h"
#include "../shim/secret.h"
#include "../shim/store_tls.h"
#include "cluster_store.h"
#include "filetrust.h"

#define EXIT_USAGE 2
/* generous for a command run by hand (the daemon's timeout is per login) */
#define COMMAND_TIMEOUT_MS 5000
#define MAX_ASSIGNMENTS 1000000

struct cli {
	struct dg_config cfg;
	bool loaded;
	redisContext *c;
	struct store_tls *tls;
	char url[320];
};

static void vsay(const char *fmt, va_list ap)
{
	fputs("dovegate cluster: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
}

void cluster_help(FILE *out)
{
	fprintf(out,
		"usage: dovegate cluster [-c CONFIG] COMMAND [ARGS]\n"
		"\n"
		"The store named by CONFIG's [cluster] section (default %s):\n"
		"  status                 the store, the drained backends, how many assignments\n"
		"  assignments [USER]     \"USER BACKEND TTL\" lines, sorted by user\n"
		"  move USER BACKEND      send USER's next logins to BACKEND, from every edge\n"
		"  unassign USER          forget USER's backend (the next login picks one)\n"
		"  drain BACKEND          no new logins to BACKEND from any edge\n"
		"  undrain BACKEND        BACKEND takes logins again\n"
		"\n"
		"BACKEND: a [backend NAME] section's name, or a backend's host id (its\n"
		"audience, else its IP). Open sessions stay where they are: doveadm kick\n"
		"them to move them. Exit status: 0 done, 1 failed, 2 usage.\n",
		CONFIG_DEFAULT_PATH);
}

static int usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsay(fmt, ap);
	va_end(ap);
	fprintf(stderr, "usage: dovegate cluster %s\n", CLUSTER_SYNOPSIS);
	return EXIT_USAGE;
}

/* ---- the config and the backends' host ids ----------------------------------------- */

static const char *host_id(const struct backend_conf *b)
{
	return b->audience != NULL ? b->audience : b->addr.ip;
}

/* BACKEND as typed: a host id, or a [backend NAME]; NULL if no backend has it. */
static const char *backend_id(const struct dg_config *cfg, const char *backend)
{
	for (size_t i = 0; i < cfg->backend_count; i++) {
		const struct backend_conf *b = &cfg->backends[i];

		if (strcmp(host_id(b), backend) == 0 ||
		    (b->name != NULL && strcmp(b->name, backend) == 0))
			return host_id(b);
	}
	return NULL;
}

static bool listed_before(const struct dg_config *cfg, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (strcmp(host_id(&cfg->backends[j]), host_id(&cfg->backends[i])) == 0)
			return true;
	return false;
}

static void print_known(FILE *out, const struct dg_config *cfg)
{
	const char *sep = "";

	for (size_t i = 0; i < cfg->backend_count; i++) {
		if (listed_before(cfg, i))
			continue;
		fprintf(out, "%s%s", sep, host_id(&cfg->backends[i]));
		sep = ", ";
	}
}

static const char *require_backend(const struct cli *cl, const char *backend)
{
	const char *id = backend_id(&cl->cfg, backend);

	if (id == NULL) {
		fprintf(stderr, "dovegate cluster: no backend '%s' in %s; known: ", backend,
			cl->cfg.path);
		print_known(stderr, &cl->cfg);
		fputc('\n', stderr);
	}
	return id;
}

/* A user name as nginx sends it: no NUL, CR or LF, and it must fit a key. */
static bool user_ok(const char *user)
{
	return user[0] != '\0' && strpbrk(user, "\r\n") == NULL &&
	       strlen(user) <= CLUSTER_KEY_MAX - CLUSTER_PREFIX_MAX - 68;
}

static int load_config(struct cli *cl, const char *path)
{
	char err[1024];

	if (config_load(path, &cl->cfg, err, sizeof(err)) < 0) {
		fail("%s", err);
		return -1;
	}
	cl->loaded = true;
	if (cl->cfg.cluster_store_text == NULL) {
		fail("%s: no [cluster] store = (cluster mode is off)", path);
		return -1;
	}
	cluster_addr_text(&cl->cfg.cluster_addr, cl->url, sizeof(cl->url));
	return 0;
}

/* ---- the store ----------------------------------------------------------------------- */

static struct timeval ms_tv(unsigned ms)
{
	struct timeval tv = { .tv_sec = (time_t)(ms / 1000),
			      .tv_usec = (suseconds_t)(ms % 1000) * 1000 };

	return tv;
}

/* A reply, or NULL after saying why (an error reply, a lost connection). */
static redisReply *command(struct cli *cl, int argc, const char **argv)
{
	redisReply *r = redisCommandArgv(cl->c, argc, argv, NULL);

	if (r == NULL) {
		fail("store %s: %s", cl->url, cl->c->errstr[0] != '\0' ? cl->c->errstr :
		     "no answer");
		return NULL;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		/* never includes a password (AUTH's errors do not echo it) */
		fail("store %s: %s: %s", cl->url, argv[0], r->str);
		freeReplyObject(r);
		return NULL;
	}
	return r;
}

static int command_ok(struct cli *cl, int argc, const char **argv)
{
	redisReply *r = command(cl, argc, argv);

	if (r == NULL)
		return -1;
	freeReplyObject(r);
	return 0;
}

static int authenticate(struct cli *cl)
{
	const struct dg_config *cfg = &cl->cfg;
	const struct passwd *pw = cfg->user != NULL ? getpwnam(cfg->user) : NULL;
	struct secret password = { 0 };
	char why[512];
	const char *argv[3] = { "AUTH" };
	int n = 1, rc;

	if (cfg->cluster_password_file == NULL)
		return 0;
	/* like dovegate-auth: the file may belong to its [server] user */
	filetrust_allow_owner(pw != NULL ? pw->pw_uid : (uid_t)-1);
	if (secret_read(cfg->cluster_password_file, false, &password, NULL, why,
			sizeof(why)) < 0) {
		fail("%s: password_file %s", cfg->path, why);
		return -1;
	}
	if (cfg->cluster_user != NULL)
		argv[n++] = cfg->cluster_user;
	argv[n++] = password.data;
	rc = command_ok(cl, n, argv);
	secret_clear(&password);
	return rc;
}

static int connect_store(struct cli *cl)
{
	const struct dg_config *cfg = &cl->cfg;
	const struct cluster_addr *a = &cfg->cluster_addr;
	struct timeval tv = ms_tv(cfg->cluster_connect_timeout_ms);
	char why[512], db[16];
	const char *select[2] = { "SELECT", db };

	cl->c = a->transport == CLUSTER_UNIX ? redisConnectUnixWithTimeout(a->host, tv)
					     : redisConnectWithTimeout(a->host, (int)a->port, tv);
	if (cl->c == NULL || cl->c->err) {
		fail("store %s: %s", cl->url, cl->c != NULL ? cl->c->errstr : "out of memory");
		return -1;
	}
	if (redisSetTimeout(cl->c, ms_tv(COMMAND_TIMEOUT_MS)) != REDIS_OK) {
		fail("store %s: cannot set a timeout", cl->url);
		return -1;
	}
	if (a->transport == CLUSTER_TLS) {
		cl->tls = store_tls_new(cfg->cluster_tls_ca_file, cfg->cluster_tls_cert_file,
					cfg->cluster_tls_key_file, cfg->cluster_tls_server_name,
					why, sizeof(why));
		if (cl->tls == NULL ||
		    store_tls_attach(cl->tls, cl->c, a->host, why, sizeof(why)) < 0) {
			fail("store %s: %s", cl->url, why);
			return -1;
		}
	}
	if (authenticate(cl) < 0)
		return -1;
	snprintf(db, sizeof(db), "%u", a->db);
	return a->db == 0 ? 0 : command_ok(cl, 2, select);
}

static void cli_close(struct cli *cl)
{
	if (cl->c != NULL)
		redisFree(cl->c);
	store_tls_free(cl->tls);
	if (cl->loaded)
		config_free(&cl->cfg);
}

/* ---- the commands -------------------------------------------------------------------- */

static int key_for(const struct cli *cl, char *key, char kind, const char *a)
{
	return cluster_key(key, CLUSTER_KEY_MAX, cl->cfg.cluster_prefix, kind, a, strlen(a),
			   NULL, 0);
}

struct assignment {
	char *user, *backend;
	long long ttl;
};

static int by_user(const void *a, const void *b)
{
	return strcmp(((const struct assignment *)a)->user, ((const struct assignment *)b)->user);
}

static void assignments_free(struct assignment *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].user);
		free(v[i].backend);
	}
	free(v);
}

/* The keys PREFIXa:* (SCAN: never blocks the store like KEYS would). */
static int scan_assignment_keys(struct cli *cl, char ***keys, size_t *count)
{
	char pattern[CLUSTER_PREFIX_MAX + 8], cursor[32] = "0";
	const char *argv[6] = { "SCAN", cursor, "MATCH", pattern, "COUNT", "1000" };
	size_t cap = 0;

	snprintf(pattern, sizeof(pattern), "%sa:*", cl->cfg.cluster_prefix);
	*keys = NULL;
	*count = 0;
	do {
		redisReply *r = command(cl, 6, argv);

		if (r == NULL)
			return -1;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			fail("store %s: unexpected SCAN reply", cl->url);
			freeReplyObject(r);
			return -1;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements && *count < MAX_ASSIGNMENTS; i++) {
			const redisReply *k = r->element[1]->element[i];

			if (*count == cap) {
				char **grown = realloc(*keys, (cap = cap * 2 + 64) * sizeof(**keys));

				if (grown == NULL) {
					freeReplyObject(r);
					fail("out of memory");
					return -1;
				}
				*keys = grown;
			}
			if (((*keys)[*count] = strdup(k->str)) == NULL) {
				freeReplyObject(r);
				fail("out of memory");
				return -1;
			}
			(*count)++;
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/* GET and TTL of each key, pipelined; keys gone meanwhile are left out. */
static int read_assignments(struct cli *cl, char **keys, size_t nkeys,
			    struct assignment **out, size_t *n)
{
	size_t plen = strlen(cl->cfg.cluster_prefix) + 2;

	*n = 0;
	if ((*out = calloc(nkeys + 1, sizeof(**out))) == NULL) {
		fail("out of memory");
		return -1;
	}
	for (size_t i = 0; i < nkeys; i++) {
		redisAppendCommand(cl->c, "GET %s", keys[i]);
		redisAppendCommand(cl->c, "TTL %s", keys[i]);
	}
	for (size_t i = 0; i < nkeys; i++) {
		redisReply *get = NULL, *ttl = NULL;

		if (redisGetReply(cl->c, (void **)&get) != REDIS_OK ||
		    redisGetReply(cl->c, (void **)&ttl) != REDIS_OK) {
			fail("store %s: %s", cl->url, cl->c->errstr);
			freeReplyObject(get);
			return -1;
		}
		if (get->type == REDIS_REPLY_STRING && ttl->type == REDIS_REPLY_INTEGER) {
			struct assignment *a = &(*out)[(*n)++];

			a->user = strdup(keys[i] + plen);
			a->backend = strdup(get->str);
			a->ttl = ttl->integer;
			if (a->user == NULL || a->backend == NULL) {
				freeReplyObject(get);
				freeReplyObject(ttl);
				fail("out of memory");
				return -1;
			}
		}
		freeReplyObject(get);
		freeReplyObject(ttl);
	}
	qsort(*out, *n, sizeof(**out), by_user);
	return 0;
}

static int list_assignments(struct cli *cl, bool print, size_t *total)
{
	char **keys;
	size_t nkeys, n = 0;
	struct assignment *v = NULL;
	int rc = scan_assignment_keys(cl, &keys, &nkeys);

	if (rc == 0 && print)
		rc = read_assignments(cl, keys, nkeys, &v, &n);
	for (size_t i = 0; rc == 0 && print && i < n; i++)
		printf("%s %s %lld\n", v[i].user, v[i].backend, v[i].ttl);
	if (total != NULL)
		*total = print ? n : nkeys;
	assignments_free(v, n);
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i]);
	free(keys);
	return rc;
}

static int show_one(struct cli *cl, const char *user)
{
	char key[CLUSTER_KEY_MAX];
	const char *get[2] = { "GET", key }, *ttl[2] = { "TTL", key };
	redisReply *g, *t;
	int rc = 0;

	if (!user_ok(user) || key_for(cl, key, 'a', user) < 0)
		return usage("not a user name: '%s'", user);
	if ((g = command(cl, 2, get)) == NULL)
		return 1;
	if (g->type != REDIS_REPLY_STRING) {
		fail("%s has no assignment (the next login picks a backend)", user);
		freeReplyObject(g);
		return 1;
	}
	if ((t = command(cl, 2, ttl)) == NULL)
		rc = 1;
	else
		printf("%s %s %lld\n", user, g->str, t->type == REDIS_REPLY_INTEGER ? t->integer : -1);
	freeReplyObject(t);
	freeReplyObject(g);
	return rc;
}

static int members_of_drained(struct cli *cl, redisReply **out)
{
	char key[CLUSTER_KEY_MAX];
	const char *argv[2] = { "SMEMBERS", key };

	if (cluster_drained_key(key, sizeof(key), cl->cfg.cluster_prefix) < 0)
		return -1;
	*out = command(cl, 2, argv);
	return *out != NULL && (*out)->type == REDIS_REPLY_ARRAY ? 0 : -1;
}

static bool is_drained(const redisReply *set, const char *id)
{
	for (size_t i = 0; i < set->elements; i++)
		if (strcmp(set->element[i]->str, id) == 0)
			return true;
	return false;
}

/* "valkey 8.1.1" or "redis 7.0.15", from INFO server. */
static void server_version(struct cli *cl, char *out, size_t len)
{
	const char *argv[2] = { "INFO", "server" };
	redisReply *r = command(cl, 2, argv);
	const char *v;

	snprintf(out, len, "unknown");
	if (r == NULL || r->type != REDIS_REPLY_STRING) {
		freeReplyObject(r);
		return;
	}
	if ((v = strstr(r->str, "valkey_version:")) != NULL)
		snprintf(out, len, "valkey %.*s", (int)strcspn(v + 15, "\r\n"), v + 15);
	else if ((v = strstr(r->str, "redis_version:")) != NULL)
		snprintf(out, len, "redis %.*s", (int)strcspn(v + 14, "\r\n"), v + 14);
	freeReplyObject(r);
}

static int cmd_status(struct cli *cl)
{
	char version[64];
	redisReply *drained = NULL;
	size_t assignments = 0;
	int rc;

	server_version(cl, version, sizeof(version));
	printf("store: %s (%s)\n", cl->url, version);
	printf("prefix: %s\n", cl->cfg.cluster_prefix);
	if (cl->cfg.cluster_assignment_ttl > 0)
		printf("assignment_ttl: %u s\n", cl->cfg.cluster_assignment_ttl);
	else
		printf("assignment_ttl: 0 (no assignments)\n");
	if (members_of_drained(cl, &drained) < 0 || list_assignments(cl, false, &assignments) < 0) {
		freeReplyObject(drained);
		return 1;
	}
	printf("assignments: %zu\n", assignments);
	printf("backends:");
	for (size_t i = 0; i < cl->cfg.backend_count; i++) {
		const char *id = host_id(&cl->cfg.backends[i]);

		if (!listed_before(&cl->cfg, i))
			printf(" %s%s", id, is_drained(drained, id) ? " (drained)" : "");
	}
	printf("\ndrained:");
	for (size_t i = 0; i < drained->elements; i++)
		printf(" %s%s", drained->element[i]->str,
		       backend_id(&cl->cfg, drained->element[i]->str) == NULL ?
		       " (not a backend of this config)" : "");
	printf("%s\n", drained->elements == 0 ? " none" : "");
	rc = 0;
	freeReplyObject(drained);
	return rc;
}

static int cmd_move(struct cli *cl, const char *user, const char *backend)
{
	char key[CLUSTER_KEY_MAX], ttl[16];
	const char *id;
	const char *argv[5] = { "SET", key, NULL, "EX", ttl };
	redisReply *drained = NULL;

	if (!user_ok(user) || key_for(cl, key, 'a', user) < 0)
		return usage("not a user name: '%s'", user);
	if ((id = require_backend(cl, backend)) == NULL)
		return 1;
	if (cl->cfg.cluster_assignment_ttl == 0) {
		fail("%s: [cluster] assignment_ttl = 0: there are no assignments to move",
		     cl->cfg.path);
		return 1;
	}
	argv[2] = id;
	snprintf(ttl, sizeof(ttl), "%u", cl->cfg.cluster_assignment_ttl);
	if (command_ok(cl, 5, argv) < 0)
		return 1;
	printf("%s -> %s (kick the user's open sessions elsewhere: doveadm kick %s)\n",
	       user, id, user);
	if (members_of_drained(cl, &drained) == 0 && is_drained(drained, id))
		fprintf(stderr, "dovegate cluster: note: %s is drained: the edges will not "
			"honour this until it is undrained\n", id);
	freeReplyObject(drained);
	return 0;
}

static int cmd_unassign(struct cli *cl, const char *user)
{
	char key[CLUSTER_KEY_MAX];
	const char *argv[2] = { "DEL", key };
	redisReply *r;

	if (!user_ok(user) || key_for(cl, key, 'a', user) < 0)
		return usage("not a user name: '%s'", user);
	if ((r = command(cl, 2, argv)) == NULL)
		return 1;
	printf(r->type == REDIS_REPLY_INTEGER && r->integer > 0 ?
	       "%s unassigned: the next login picks a backend\n" :
	       "%s had no assignment\n", user);
	freeReplyObject(r);
	return 0;
}

static int cmd_drain(struct cli *cl, const char *backend, bool drain)
{
	char key[CLUSTER_KEY_MAX];
	const char *id;
	const char *argv[3] = { drain ? "SADD" : "SREM", key, NULL };

	if ((id = require_backend(cl, backend)) == NULL)
		return 1;
	if (cluster_drained_key(key, sizeof(key), cl->cfg.cluster_prefix) < 0)
		return 1;
	argv[2] = id;
	if (command_ok(cl, 3, argv) < 0)
		return 1;
	if (drain)
		printf("%s drained: every edge stops sending new logins there within its "
		       "retry_interval; open sessions stay (doveadm kick moves them)\n", id);
	else
		printf("%s undrained: it takes new logins again\n", id);
	return 0;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static int run(struct cli *cl, int argc, char **argv)
{
	const char *sub = argv[0];

	if (strcmp(sub, "status") == 0 && argc == 1)
		return cmd_status(cl);
	if (strcmp(sub, "assignments") == 0 && argc <= 2)
		return argc == 2 ? show_one(cl, argv[1]) : list_assignments(cl, true, NULL) < 0;
	if (strcmp(sub, "move") == 0 && argc == 3)
		return cmd_move(cl, argv[1], argv[2]);
	if (strcmp(sub, "unassign") == 0 && argc == 2)
		return cmd_unassign(cl, argv[1]);
	if ((strcmp(sub, "drain") == 0 || strcmp(sub, "undrain") == 0) && argc == 2)
		return cmd_drain(cl, argv[1], strcmp(sub, "drain") == 0);
	return -1;
}

static bool known_command(const char *sub, int argc)
{
	static const struct { const char *name; int min, max; } subs[] = {
		{ "status", 1, 1 }, { "assignments", 1, 2 }, { "move", 3, 3 },
		{ "unassign", 2, 2 }, { "drain", 2, 2 }, { "undrain", 2, 2 },
	};

	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
		if (strcmp(subs[i].name, sub) == 0)
			return argc >= subs[i].min && argc <= subs[i].max;
	return false;
}

int cluster_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = CONFIG_DEFAULT_PATH;
	struct cli cl;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'h': cluster_help(stdout); return 0;
		default: return usage("unknown option or missing argument");
		}
	}
	if (optind >= argc)
		return usage("missing command");
	if (!known_command(argv[optind], argc - optind))
		return usage("unknown command or wrong arguments: '%s'", argv[optind]);
	memset(&cl, 0, sizeof(cl));
	if (load_config(&cl, path) < 0 || connect_store(&cl) < 0) {
		cli_close(&cl);
		return 1;
	}
	rc = run(&cl, argc - optind, argv + optind);
	cli_close(&cl);
	return rc;
}
