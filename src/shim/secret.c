#include "secret.h"
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

static int check_content(const char *buf, size_t len, const char **why)
{
	if (len == 0) {
		*why = "is empty";
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)buf[i];
		if (c < ' ' || c == 0x7f) {
			*why = "contains a control character or more than one line";
			return -1;
		}
	}
	if (buf[0] == ' ' || buf[len - 1] == ' ') {
		*why = "starts or ends with a space (nginx would strip it)";
		return -1;
	}
	return 0;
}

static int check_mode(int fd, const char *path, bool private_only, bool *insecure_r,
		      const char **why, char *whybuf, size_t whylen)
{
	struct stat st;

	if (fstat(fd, &st) < 0) {
		*why = strerror(errno);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = "is not a regular file";
		return -1;
	}
	if (insecure_r != NULL)
		*insecure_r = (st.st_mode & (S_IRGRP | S_IROTH)) != 0;
	if (private_only && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		snprintf(whybuf, whylen,
			 "is accessible by group or others (mode %04o); "
			 "run chmod 600 on it", (unsigned)(st.st_mode & 07777));
		*why = whybuf;
		return -1;
	}
	/* nobody else may change or replace it */
	*why = filetrust_check(fd, path, whybuf, whylen);
	return *why != NULL ? -1 : 0;
}

int secret_read(const char *path, bool private_only, struct secret *out,
		bool *insecure_r, char *err, size_t errlen)
{
	char buf[SECRET_MAX_BYTES + 2], whybuf[512];
	const char *why = NULL;
	ssize_t n;
	size_t len;
	int fd;

	out->data = NULL;
	out->len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (check_mode(fd, path, private_only, insecure_r, &why, whybuf, sizeof(whybuf)) < 0) {
		close(fd);
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	n = dg_read_all(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	len = (size_t)n;
	if (len > SECRET_MAX_BYTES) {
		why = "is longer than 1024 bytes";
	} else {
		if (len > 0 && buf[len - 1] == '\n')
			len--;
		if (len > 0 && buf[len - 1] == '\r')
			len--;
		(void)check_content(buf, len, &why);
	}
	if (why == NULL) {
		out->data = malloc(len + 1);
		if (out->data == NULL)
			why = "out of memory";
	}
	if (why != NULL) {
		sodium_memzero(buf, sizeof(buf));
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	memcpy(out->data, buf, len);
	out->data[len] = '\0';
	out->len = len;
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

void secret_clear(struct secret *s)
{
	if (s->data != NULL) {
		sodium_memzero(s->data, s->len);
		free(s->data);
	}
	s->data = NULL;
	s->len = 0;
}
