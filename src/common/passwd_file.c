/* Dovecot passwd-file parsing (mirrors Dovecot 2.3 src/auth/db-passwd-file.c).

   The whole file is copied into one buffer and split in place, so an entry
   costs no allocation of its own; the buffer holds passwords and is zeroed
   when freed. Users are found through an open-addressing table keyed with
   SipHash (libsodium crypto_shorthash) under a per-file random key. */
#include "passwd_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* Columns before the extra fields: user, password, uid, gid, gecos, home,
   shell. */
#define FIXED_COLUMNS 7
#define WARNING_SIZE 160

struct passwd_file {
	char *text;                   /* tokenised copy of the file */
	size_t text_size;
	struct passwd_entry *entries;
	size_t count, entries_cap;
	struct passwd_field *fields;  /* all entries' extra fields, in order */
	size_t fields_used, fields_cap;
	uint32_t *slots;              /* entry index + 1; 0 = empty */
	size_t slot_mask;
	unsigned char key[crypto_shorthash_KEYBYTES];
	size_t duplicates;
	char first_duplicate[WARNING_SIZE];
};

static void set_error(char *errbuf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(char *errbuf, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (errbuf == NULL || size == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, size, fmt, ap);
	va_end(ap);
}

/* ---- hash table ---------------------------------------------------------- */

static size_t slot_of(const struct passwd_file *pf, const char *user)
{
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	crypto_shorthash(h, (const unsigned char *)user, strlen(user), pf->key);
	for (size_t i = 0; i < sizeof(v); i++)
		v = v << 8 | h[i];
	return (size_t)v & pf->slot_mask;
}

/* The slot holding `user`, or the empty slot where it would go. */
static uint32_t *find_slot(const struct passwd_file *pf, const char *user)
{
	size_t i = slot_of(pf, user);

	while (pf->slots[i] != 0 &&
	       strcmp(pf->entries[pf->slots[i] - 1].user, user) != 0)
		i = (i + 1) & pf->slot_mask;
	return &pf->slots[i];
}

/* Sized once from the line count (an upper bound on users), load <= 1/2. */
static bool table_init(struct passwd_file *pf, size_t max_users)
{
	size_t n = 16;

	if (max_users >= UINT32_MAX / 2)
		return false;
	while (n < max_users * 2)
		n *= 2;
	pf->slots = calloc(n, sizeof(*pf->slots));
	pf->entries = calloc(max_users, sizeof(*pf->entries));
	pf->slot_mask = n - 1;
	pf->entries_cap = max_users;
	crypto_shorthash_keygen(pf->key);
	return pf->slots != NULL && pf->entries != NULL;
}

/* ---- line parsing -------------------------------------------------------- */

static bool is_blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] != ' ' && s[i] != '\t')
			return false;
	}
	return true;
}

static struct passwd_field *new_field(struct passwd_file *pf)
{
	if (pf->fields_used == pf->fields_cap) {
		size_t cap = pf->fields_cap == 0 ? 64 : pf->fields_cap * 2;
		struct passwd_field *f = realloc(pf->fields, cap * sizeof(*f));

		if (f == NULL)
			return NULL;
		pf->fields = f;
		pf->fields_cap = cap;
	}
	return &pf->fields[pf->fields_used++];
}

/* Space-separated "key=value" or bare "key" (value ""), in place. Like
   Dovecot, empty tokens from repeated spaces are skipped. */
static const char *parse_extra_fields(struct passwd_file *pf,
				      struct passwd_entry *e, char *p)
{
	while (*p != '\0') {
		struct passwd_field *f;
		char *tok = p, *eq;

		p += strcspn(p, " ");
		if (*p == ' ')
			*p++ = '\0';
		if (*tok == '\0')
			continue;
		if (*tok == '=')
			return "extra field without a name";
		if ((f = new_field(pf)) == NULL)
			return "out of memory";
		f->key = tok;
		if ((eq = strchr(tok, '=')) != NULL) {
			*eq = '\0';
			f->value = eq + 1;
		} else {
			f->value = tok + strlen(tok);
		}
		e->field_count++;
	}
	return NULL;
}

static void note_duplicate(struct passwd_file *pf, const char *user,
			   size_t lineno)
{
	if (pf->duplicates++ == 0)
		snprintf(pf->first_duplicate, sizeof(pf->first_duplicate),
			 "line %zu: user %.64s exists more than once, "
			 "the first entry wins", lineno, user);
}

/* One NUL-terminated line (without its newline). Returns an error or NULL. */
static const char *parse_line(struct passwd_file *pf, char *line, size_t len,
			      size_t lineno)
{
	char *col[FIXED_COLUMNS], *extra = NULL, *p = line;
	struct passwd_entry *e;
	uint32_t *slot;
	size_t n = 0;

	if (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	if (line[0] == '#' || is_blank(line, len))
		return NULL;
	if (strlen(line) != len)
		return "NUL byte in line";
	/* Fewer columns are fine; missing ones read as "". Everything after
	   the 7th ':' is the extra fields column, colons included. */
	col[n++] = p;
	while (n < FIXED_COLUMNS && (p = strchr(p, ':')) != NULL) {
		*p++ = '\0';
		col[n++] = p;
	}
	if (n == FIXED_COLUMNS && (p = strchr(p, ':')) != NULL) {
		*p = '\0';
		extra = p + 1;
	}
	while (n < FIXED_COLUMNS)
		col[n++] = line + len;
	if (col[0][0] == '\0')
		return "empty user name";

	slot = find_slot(pf, col[0]);
	if (*slot != 0) {
		note_duplicate(pf, col[0], lineno);
		return NULL;
	}
	e = &pf->entries[pf->count];
	*e = (struct passwd_entry){ .user = col[0], .password = col[1],
		.uid = col[2], .gid = col[3], .home = col[5] };
	/* An empty 8th column followed by more is Dovecot's old userdb-only
	   "mail" format; a passdb ignores it, so do we. */
	if (extra != NULL && extra[0] != ':') {
		const char *err = parse_extra_fields(pf, e, extra);

		if (err != NULL)
			return err;
	}
	*slot = (uint32_t)++pf->count;
	return NULL;
}

/* Entries were filled in order, so their fields are consecutive runs. */
static void link_fields(struct passwd_file *pf)
{
	size_t off = 0;

	for (size_t i = 0; i < pf->count; i++) {
		struct passwd_entry *e = &pf->entries[i];

		e->fields = e->field_count > 0 ? &pf->fields[off] : NULL;
		off += e->field_count;
	}
}

static size_t count_lines(const char *text, size_t len)
{
	size_t n = 1;

	for (const char *p = text; (p = memchr(p, '\n', len - (size_t)(p - text))) != NULL; p++)
		n++;
	return n;
}

/* Takes ownership of `text` (len bytes + 1 spare for a NUL). */
static struct passwd_file *parse_owned(char *text, size_t len,
				       char *errbuf, size_t errbuf_size)
{
	struct passwd_file *pf = calloc(1, sizeof(*pf));
	const char *err = NULL;
	size_t lineno = 0;
	char *line = text, *end = text + len;

	if (pf == NULL) {
		sodium_memzero(text, len + 1);
		free(text);
		set_error(errbuf, errbuf_size, "out of memory");
		return NULL;
	}
	pf->text = text;
	pf->text_size = len + 1;
	text[len] = '\0';
	if (sodium_init() < 0 || !table_init(pf, count_lines(text, len))) {
		passwd_file_free(pf);
		set_error(errbuf, errbuf_size, "out of memory");
		return NULL;
	}
	while (err == NULL && line < end) {
		char *nl = memchr(line, '\n', (size_t)(end - line));
		size_t l = nl != NULL ? (size_t)(nl - line) : (size_t)(end - line);

		line[l] = '\0';
		err = parse_line(pf, line, l, ++lineno);
		line += l + 1;
	}
	if (err != NULL) {
		set_error(errbuf, errbuf_size, "line %zu: %s", lineno, err);
		passwd_file_free(pf);
		return NULL;
	}
	link_fields(pf);
	return pf;
}

struct passwd_file *passwd_file_parse(const char *text, size_t len,
				      char *errbuf, size_t errbuf_size)
{
	char *copy = malloc(len + 1);

	if (copy == NULL) {
		set_error(errbuf, errbuf_size, "out of memory");
		return NULL;
	}
	if (len > 0)
		memcpy(copy, text, len);
	return parse_owned(copy, len, errbuf, errbuf_size);
}

/* ---- loading ------------------------------------------------------------- */

/* realloc() would leave a stale copy of the passwords behind. */
static char *grow_secret(char *buf, size_t used, size_t new_cap)
{
	char *n = malloc(new_cap);

	if (n != NULL && used > 0)
		memcpy(n, buf, used);
	if (buf != NULL) {
		sodium_memzero(buf, used);
		free(buf);
	}
	return n;
}

/* Whole file into a buffer with one spare byte; NULL with errno set. */
static char *read_all(int fd, size_t *len_r)
{
	struct stat st;
	size_t cap, used = 0;
	char *buf;

	if (fstat(fd, &st) < 0)
		return NULL;
	/* +2: room for the NUL and for the read() that sees EOF */
	cap = st.st_size > 0 ? (size_t)st.st_size + 2 : 4096;
	if ((buf = malloc(cap)) == NULL)
		return NULL;
	for (;;) {
		ssize_t n;

		if (used + 1 >= cap && (buf = grow_secret(buf, used, cap *= 2)) == NULL)
			return NULL;
		n = read(fd, buf + used, cap - used - 1);
		if (n == 0)
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;

			sodium_memzero(buf, used);
			free(buf);
			errno = saved;
			return NULL;
		}
		used += (size_t)n;
	}
	*len_r = used;
	return buf;
}

struct passwd_file *passwd_file_load(const char *path,
				     char *errbuf, size_t errbuf_size)
{
	char err[256] = "";
	struct passwd_file *pf;
	size_t len = 0;
	char *text;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		set_error(errbuf, errbuf_size, "%s: %s", path, strerror(errno));
		return NULL;
	}
	text = read_all(fd, &len);
	if (text == NULL) {
		set_error(errbuf, errbuf_size, "%s: read: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	close(fd);
	/* A file cut short (full disk, a copy still being written) mostly ends
	   inside a line, whose hash would then silently be wrong: refuse it,
	   the caller keeps the previous version. */
	if (len > 0 && text[len - 1] != '\n') {
		set_error(errbuf, errbuf_size, "%s: last line has no newline: file cut "
			  "short? (write it whole, then rename it into place)", path);
		sodium_memzero(text, len);
		free(text);
		return NULL;
	}
	pf = parse_owned(text, len, err, sizeof(err));
	if (pf == NULL)
		set_error(errbuf, errbuf_size, "%s: %s", path, err);
	return pf;
}

void passwd_file_free(struct passwd_file *pf)
{
	if (pf == NULL)
		return;
	if (pf->text != NULL) {
		sodium_memzero(pf->text, pf->text_size);
		free(pf->text);
	}
	free(pf->entries);
	free(pf->fields);
	free(pf->slots);
	sodium_memzero(pf->key, sizeof(pf->key));
	free(pf);
}

/* ---- queries ------------------------------------------------------------- */

const struct passwd_entry *passwd_file_lookup(const struct passwd_file *pf,
					      const char *user)
{
	uint32_t idx;

	if (pf == NULL || user == NULL)
		return NULL;
	idx = *find_slot(pf, user);
	return idx == 0 ? NULL : &pf->entries[idx - 1];
}

size_t passwd_file_count(const struct passwd_file *pf)
{
	return pf == NULL ? 0 : pf->count;
}

const struct passwd_entry *passwd_file_entry(const struct passwd_file *pf, size_t i)
{
	return pf != NULL && i < pf->count ? &pf->entries[i] : NULL;
}

size_t passwd_file_duplicates(const struct passwd_file *pf,
			      const char **first_r)
{
	if (first_r != NULL)
		*first_r = pf != NULL && pf->duplicates > 0 ?
			pf->first_duplicate : NULL;
	return pf == NULL ? 0 : pf->duplicates;
}

/* The last occurrence wins: Dovecot applies extra fields in order, so a
   later one overrides an earlier one with the same key. */
const char *passwd_entry_field(const struct passwd_entry *e, const char *key)
{
	if (e == NULL || key == NULL)
		return NULL;
	for (size_t i = e->field_count; i > 0; i--) {
		if (strcmp(e->fields[i - 1].key, key) == 0)
			return e->fields[i - 1].value;
	}
	return NULL;
}
