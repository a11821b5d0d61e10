#ifndef DOVEGATE_LOGIN_TRUST_H
#define DOVEGATE_LOGIN_TRUST_H

/* Which connections of a login process come from a trusted proxy (nginx).

   No setting of its own: the trust anchor is Dovecot's, i.e. the listener's
   "haproxy = yes" plus haproxy_trusted_networks. See login_trust.c. */

struct client;

/* TRUE if the client connected to a "haproxy = yes" listener from an
   address in haproxy_trusted_networks (so the PROXY header was accepted).
   Call once, in the client_allocated hook. */
bool dovegate_login_from_trusted_proxy(struct client *client);

#endif
