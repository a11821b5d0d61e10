/* StrictModes-like checks of key and secret files (filetrust.h). */
#include "filetrust.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uid_t extra_owner = (uid_t)-1;

void filetrust_allow_owner(uid_t uid)
{
	extra_owner = uid;
}

static bool owner_ok(uid_t uid)
{
	return uid == 0 || uid == geteuid() || (extra_owner != (uid_t)-1 && uid == extra_owner);
}

/* The file itself: NULL, or why in whybuf. */
static const char *check_own(const struct stat *st, const char *path,
			     char *whybuf, size_t whylen)
{
	if (!owner_ok(st->st_uid)) {
		snprintf(whybuf, whylen, "is owned by uid %u, neither root nor this "
			 "process's user; run chown root %s", (unsigned)st->st_uid, path);
		return whybuf;
	}
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(whybuf, whylen, "is writable by group or others (mode %04o); "
			 "run chmod go-w %s", (unsigned)(st->st_mode & 07777), path);
		return whybuf;
	}
	return NULL;
}

/* One directory above the file: NULL, or why in whybuf. */
static const char *check_dir(const char *dir, char *whybuf, size_t whylen)
{
	struct stat st;

	if (stat(dir, &st) < 0) {
		snprintf(whybuf, whylen, "directory %s: %s", dir, strerror(errno));
		return whybuf;
	}
	if (!owner_ok(st.st_uid)) {
		snprintf(whybuf, whylen, "is in directory %s, owned by uid %u, neither "
			 "root nor this process's user; run chown root %s",
			 dir, (unsigned)st.st_uid, dir);
		return whybuf;
	}
	/* root's sticky directories (/tmp): others cannot replace our entries */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
	    !(st.st_uid == 0 && (st.st_mode & S_ISVTX) != 0)) {
		snprintf(whybuf, whylen, "is in directory %s, writable by group or "
			 "others (mode %04o); run chmod go-w %s",
			 dir, (unsigned)(st.st_mode & 07777), dir);
		return whybuf;
	}
	return NULL;
}

/* Every directory above the resolved path, up to /. */
static const char *check_dirs(const char *path, char *whybuf, size_t whylen)
{
	char *real = realpath(path, NULL), *slash;
	const char *why = NULL;

	if (real == NULL) {
		snprintf(whybuf, whylen, "cannot resolve the path: %s", strerror(errno));
		return whybuf;
	}
	while (why == NULL && (slash = strrchr(real, '/')) != NULL) {
		if (slash == real) {
			why = check_dir("/", whybuf, whylen);
			break;
		}
		*slash = '\0';
		why = check_dir(real, whybuf, whylen);
	}
	free(real);
	return why;
}

const char *filetrust_check(int fd, const char *path, char *whybuf, size_t whylen)
{
	struct stat st;
	const char *why;

	if (fstat(fd, &st) < 0) {
		snprintf(whybuf, whylen, "%s", strerror(errno));
		return whybuf;
	}
	why = check_own(&st, path, whybuf, whylen);
	return why != NULL ? why : check_dirs(path, whybuf, whylen);
}
