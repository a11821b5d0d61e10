/* Read a whole small file from an open descriptor, retrying on EINTR.
   libc + POSIX only: also compiled into the Dovecot passdb module. */
#ifndef DOVEGATE_READALL_H
#define DOVEGATE_READALL_H

#include <stddef.h>
#include <sys/types.h>

/* Up to cap bytes into buf; returns the count (less at end of file) or -1. */
ssize_t dg_read_all(int fd, char *buf, size_t cap);

#endif
