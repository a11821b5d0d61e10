/* Session ids: one per login decision, logged here and (later) carried to the
   backend in the login ticket. */
#ifndef DOVEGATE_SHIM_SESSION_H
#define DOVEGATE_SHIM_SESSION_H

/* 16 random bytes as unpadded base64url: 22 characters. */
#define SESSION_ID_LEN 22

/* Requires sodium_init() to have succeeded. */
void session_id_new(char out[SESSION_ID_LEN + 1]);

#endif
