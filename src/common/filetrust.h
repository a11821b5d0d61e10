/* Whether a key, key ring or secret file can be trusted, like OpenSSH's
   StrictModes: the file and every directory above it (up to /) must be
   owned by root or by this process's user, and not writable by group or
   others, so that no other user can change or replace what is read. A
   directory owned by root with the sticky bit (like /tmp) is accepted
   although others may write to it: they cannot rename or delete what is
   not theirs. libc only: also compiled into the Dovecot passdb module. */
#ifndef DOVEGATE_FILETRUST_H
#define DOVEGATE_FILETRUST_H

#include <stddef.h>
#include <sys/types.h>

/* One more owner to accept, e.g. the user a daemon switches to after
   reading its files as root ((uid_t)-1: none). Process-wide. */
void filetrust_allow_owner(uid_t uid);

/* NULL if fd, opened from path, may be trusted; else why, naming the file
   or directory and the command that fixes it (in whybuf). */
const char *filetrust_check(int fd, const char *path, char *whybuf, size_t whylen);

#endif
