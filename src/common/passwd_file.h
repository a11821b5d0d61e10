/* Dovecot passwd-file format: user:password:uid:gid:gecos:home:shell:extra fields */
#ifndef DOVEGATE_PASSWD_FILE_H
#define DOVEGATE_PASSWD_FILE_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

struct passwd_field {
	char *key;
	char *value;   /* "" for a bare key such as "nologin" */
};

struct passwd_entry {
	char *user;
	char *password;          /* stored field as-is, e.g. "{PLAIN}x"; may be "" */
	char *uid, *gid, *home;  /* "" when empty */
	struct passwd_field *fields;  /* extra fields (column 8), in order */
	size_t field_count;
};

struct passwd_file;

/* Parse `text` (len bytes). Blank lines and lines starting with '#' are
   skipped. On error returns NULL and writes "line N: why" into errbuf. */
struct passwd_file *passwd_file_parse(const char *text, size_t len,
				      char *errbuf, size_t errbuf_size);
/* Read and parse a file; errors name the path and line. */
struct passwd_file *passwd_file_load(const char *path,
				     char *errbuf, size_t errbuf_size);
void passwd_file_free(struct passwd_file *pf);

/* Exact user-name lookup; NULL when absent. */
const struct passwd_entry *passwd_file_lookup(const struct passwd_file *pf,
					      const char *user);
size_t passwd_file_count(const struct passwd_file *pf);
/* Entry i (0 <= i < passwd_file_count()) in file order. */
const struct passwd_entry *passwd_file_entry(const struct passwd_file *pf, size_t i);
/* Users listed more than once: like Dovecot, the first entry wins and the
   others are ignored (Dovecot logs each). Returns how many were ignored;
   *first_r (if not NULL) gets a description of the first such line, or
   NULL. Not an error, but worth a warning in the log. */
size_t passwd_file_duplicates(const struct passwd_file *pf,
			      const char **first_r);
/* Value of an extra field, NULL when absent. */
const char *passwd_entry_field(const struct passwd_entry *e, const char *key);

#endif
