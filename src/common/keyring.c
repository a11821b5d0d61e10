/* Key ring and signing key files (keyring.h). libc + libsodium only. */
#include "keyring.h"
#include "filetrust.h"
#include "readall.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SECRET_FILE_MAX 4096
#define FOOTER_MAX 128   /* {"kid":"<64>"} is 74 bytes */

struct ring_key {
	char kid[TICKET_KID_MAX + 1];
	unsigned char pk[TICKET_PK_BYTES];
};

struct keyring {
	size_t count, cap;
	struct ring_key *keys;
};

/* ---- reading ------------------------------------------------------------ */

/* NULL if the file may be used, else why not: a regular file, private if
   private_only, and no other user can change or replace it (filetrust.h). */
static const char *check_file(int fd, const char *path, bool private_only,
			      char *whybuf, size_t whylen)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return strerror(errno);
	if (!S_ISREG(st.st_mode))
		return "is not a regular file";
	if (private_only && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		snprintf(whybuf, whylen, "is accessible by group or others (mode %04o); "
			 "run chmod 600 on it", (unsigned)(st.st_mode & 07777));
		return whybuf;
	}
	return filetrust_check(fd, path, whybuf, whylen);
}

/* At most max bytes of text (no NUL) into a malloc()ed buffer of max + 2
   bytes, NUL-terminated; NULL with *why_r. */
static char *read_text(int fd, size_t max, const char **why_r)
{
	char *buf = malloc(max + 2);
	ssize_t n;

	if (buf == NULL) {
		*why_r = "out of memory";
		return NULL;
	}
	n = dg_read_all(fd, buf, max + 1);
	if (n < 0)
		*why_r = strerror(errno);
	else if ((size_t)n > max)
		*why_r = "file too large";
	else if (memchr(buf, '\0', (size_t)n) != NULL)
		*why_r = "contains a NUL byte";
	else {
		buf[n] = '\0';
		return buf;
	}
	sodium_memzero(buf, max + 2);
	free(buf);
	return NULL;
}

/* The whole file, see read_text(); private_only refuses files with group or
   other permissions. Errors are "PATH: why". */
static char *slurp(const char *path, size_t max, bool private_only,
		   char *err, size_t errsize)
{
	char whybuf[512], *text = NULL;
	const char *why;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		snprintf(err, errsize, "%s: %s", path, strerror(errno));
		return NULL;
	}
	why = check_file(fd, path, private_only, whybuf, sizeof(whybuf));
	if (why == NULL)
		text = read_text(fd, max, &why);
	close(fd);
	if (text == NULL)
		snprintf(err, errsize, "%s: %s", path, why);
	return text;
}

/* Next line of *cursor (NUL-terminated in place, CR and trailing blanks
   stripped), or NULL at the end. */
static char *next_line(char **cursor)
{
	char *line = *cursor, *nl, *end;

	if (*line == '\0')
		return NULL;
	nl = strchr(line, '\n');
	if (nl != NULL) {
		*nl = '\0';
		*cursor = nl + 1;
	} else {
		*cursor = line + strlen(line);
	}
	end = line + strlen(line);
	while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return line;
}

/* "<kid> <paserk>": 1 with both set, 0 for a blank or comment line, -1 with
   *why on anything else. */
static int split_entry(char *line, char **kid, char **paserk, const char **why)
{
	char *p = line + strspn(line, " \t");

	if (*p == '\0' || *p == '#')
		return 0;
	*kid = p;
	p += strcspn(p, " \t");
	if (*p == '\0') {
		*why = "expected '<kid> <PASERK key>'";
		return -1;
	}
	*p++ = '\0';
	p += strspn(p, " \t");
	*paserk = p;
	if (p[strcspn(p, " \t")] != '\0') {
		*why = "expected '<kid> <PASERK key>'";
		return -1;
	}
	if (!ticket_kid_valid(*kid)) {
		*why = "invalid key id (1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit)";
		return -1;
	}
	return 1;
}

/* ---- key ring ----------------------------------------------------------- */

static const char *ring_add(struct keyring *ring, const char *kid, const char *paserk)
{
	struct ring_key *k;

	if (keyring_find(ring, kid) != NULL)
		return "duplicate key id";
	if (ring->count == ring->cap) {
		size_t cap = ring->cap == 0 ? 4 : ring->cap * 2;
		struct ring_key *keys = realloc(ring->keys, cap * sizeof(*keys));
		if (keys == NULL)
			return "out of memory";
		ring->keys = keys;
		ring->cap = cap;
	}
	k = &ring->keys[ring->count];
	if (!paserk_k4_public_decode(paserk, k->pk))
		return strncmp(paserk, "k4.secret.", 10) == 0 ?
			"a secret key does not belong in a key ring (use the .pub file)" :
			"not a k4.public PASERK key";
	snprintf(k->kid, sizeof(k->kid), "%s", kid);
	ring->count++;
	return NULL;
}

static bool ring_parse(struct keyring *ring, char *text, const char *path,
		       char *err, size_t errsize)
{
	char *cursor = text, *line, *kid = NULL, *paserk = NULL;
	const char *why = NULL;
	unsigned lineno = 0;

	while ((line = next_line(&cursor)) != NULL) {
		int r = split_entry(line, &kid, &paserk, &why);
		lineno++;
		if (r > 0)
			why = ring_add(ring, kid, paserk);
		if (r < 0 || why != NULL) {
			snprintf(err, errsize, "%s:%u: %s", path, lineno, why);
			return false;
		}
	}
	if (ring->count == 0) {
		snprintf(err, errsize, "%s: no keys (expected '<kid> k4.public.<...>' lines)", path);
		return false;
	}
	return true;
}

struct keyring *keyring_load(const char *path, char *err, size_t errsize)
{
	struct keyring *ring;
	char *text;

	if (sodium_init() < 0) {
		snprintf(err, errsize, "%s: cannot initialise libsodium", path);
		return NULL;
	}
	if ((text = slurp(path, KEYRING_FILE_MAX, false, err, errsize)) == NULL)
		return NULL;
	ring = calloc(1, sizeof(*ring));
	if (ring == NULL)
		snprintf(err, errsize, "%s: out of memory", path);
	else if (!ring_parse(ring, text, path, err, errsize)) {
		keyring_free(ring);
		ring = NULL;
	}
	free(text);
	return ring;
}

const unsigned char *keyring_find(const struct keyring *ring, const char *kid)
{
	for (size_t i = 0; i < ring->count; i++) {
		if (strcmp(ring->keys[i].kid, kid) == 0)
			return ring->keys[i].pk;
	}
	return NULL;
}

size_t keyring_count(const struct keyring *ring)
{
	return ring->count;
}

const char *keyring_kid(const struct keyring *ring, size_t i)
{
	return i < ring->count ? ring->keys[i].kid : NULL;
}

void keyring_free(struct keyring *ring)
{
	if (ring == NULL)
		return;
	free(ring->keys);
	free(ring);
}

enum ticket_refusal keyring_verify(const struct keyring *ring,
				   const char *token, size_t token_len,
				   char kid_out[TICKET_KID_MAX + 1],
				   unsigned char *msg_out, size_t msg_size,
				   size_t *msg_len_r)
{
	unsigned char footer[FOOTER_MAX];
	const unsigned char *pk;
	int len = paseto_v4_footer(token, token_len, footer, sizeof(footer));

	kid_out[0] = '\0';
	if (len <= 0 || !ticket_footer_kid(footer, (size_t)len, kid_out)) {
		kid_out[0] = '\0';
		return TICKET_MALFORMED;
	}
	if ((pk = keyring_find(ring, kid_out)) == NULL)
		return TICKET_UNKNOWN_KEY;
	switch (paseto_v4_verify(pk, token, token_len, NULL, 0, msg_out, msg_size,
				 msg_len_r)) {
	case PASETO_OK:
		return TICKET_ACCEPTED;
	case PASETO_BAD_SIGNATURE:
		return TICKET_BAD_SIGNATURE;
	case PASETO_MALFORMED:
	default:
		return TICKET_MALFORMED;
	}
}

/* ---- signing key -------------------------------------------------------- */

/* Exactly one "<kid> k4.secret.<...>" entry. */
static const char *secret_parse(char *text, char *kid_out, unsigned char *sk_out,
				unsigned *lineno_r)
{
	char *cursor = text, *line, *kid = NULL, *paserk = NULL;
	const char *why = NULL;
	unsigned lineno = 0;
	bool found = false;

	while ((line = next_line(&cursor)) != NULL) {
		int r = split_entry(line, &kid, &paserk, &why);
		*lineno_r = ++lineno;
		if (r < 0)
			return why;
		if (r == 0)
			continue;
		if (found)
			return "more than one key (a signing key file holds exactly one)";
		if (!paserk_k4_secret_decode(paserk, sk_out))
			return "not a valid k4.secret PASERK key";
		snprintf(kid_out, TICKET_KID_MAX + 1, "%s", kid);
		found = true;
	}
	*lineno_r = 0;
	return found ? NULL : "no key (expected one '<kid> k4.secret.<...>' line)";
}

bool ticket_secret_key_load(const char *path, char kid_out[TICKET_KID_MAX + 1],
			    unsigned char sk_out[TICKET_SK_BYTES],
			    char *err, size_t errsize)
{
	const char *why;
	unsigned lineno = 0;
	char *text;

	sodium_memzero(sk_out, TICKET_SK_BYTES);
	if (sodium_init() < 0) {
		snprintf(err, errsize, "%s: cannot initialise libsodium", path);
		return false;
	}
	if ((text = slurp(path, SECRET_FILE_MAX, true, err, errsize)) == NULL)
		return false;
	why = secret_parse(text, kid_out, sk_out, &lineno);
	sodium_memzero(text, SECRET_FILE_MAX + 2);
	free(text);
	if (why == NULL)
		return true;
	sodium_memzero(sk_out, TICKET_SK_BYTES);
	kid_out[0] = '\0';
	if (lineno != 0)
		snprintf(err, errsize, "%s:%u: %s", path, lineno, why);
	else
		snprintf(err, errsize, "%s: %s", path, why);
	return false;
}
