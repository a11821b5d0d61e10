/* dovegate login plugin: which connections come from a trusted proxy.

   A connection counts as "from a trusted proxy" when BOTH hold:
   1. it arrived on a listener with "haproxy = yes", and
   2. its real peer address (the socket's, not the PROXY header's) is in
      haproxy_trusted_networks.

   Dovecot 2.3 itself already guarantees 2 for every connection on such a
   listener: master_service_haproxy_new() drops a connection from anywhere
   else ("haproxy: Client not trusted") before the login process sees it, and
   a connection whose PROXY header does not parse is dropped too. Checking it
   again here keeps the security argument local and survives a Dovecot that
   would ever hand such a connection on. So only hosts the postmaster already
   trusts with the client's identity (they may claim any client address) can
   get what this plugin grants such connections: plaintext LOGIN while
   disable_plaintext_auth = yes, and silence before the login completes.

   Why not login_trusted_networks: it is matched against the address the
   PROXY header claims (the client), not against nginx; and it would also
   let the connection override the client address again with IMAP ID /
   XCLIENT. Why not a setting of our own: login plugins get no plugin {}
   settings, and the haproxy listener plus haproxy_trusted_networks are the
   very settings that already say "nginx is trusted here".

   Dovecot 2.3.19's struct client has no "proxied" flag (it is only in the
   master_service_connection, which client_allocated does not get), and
   comparing client->ip with real_remote_ip is a guess (nginx on the
   client's host could, rarely, reuse the client's port). The listener's
   haproxy flag is exact: it is what made Dovecot read the PROXY header. It
   lives in master-service-private.h, which dovecot-dev installs; the
   plugin's DOVECOT_ABI_VERSION check at load ties the struct layout to the
   running Dovecot. */

#include "login-common.h"
#include "master-service.h"
#include "master-service-private.h"
#include "master-service-settings.h"
#include "client-common.h"
#include "login_trust.h"
#include "dovecot_compat.h"

/* TRUE if every listener of this process called `name` has haproxy = yes
   (names are unique per service; be strict if they were not). */
static bool listener_is_haproxy(const char *name)
{
	const struct master_service_listener *l;
	bool found = FALSE;
	unsigned int i;

	if (name == NULL || name[0] == '\0')
		return FALSE;
	for (i = 0; i < master_service->socket_count; i++) {
		l = &master_service->listeners[i];
		if (l->name == NULL || strcmp(l->name, name) != 0)
			continue;
		if (!l->haproxy)
			return FALSE;
		found = TRUE;
	}
	return found;
}

static bool ip_in_haproxy_trusted_networks(const struct ip_addr *ip)
{
	const struct master_service_settings *set =
		dg_service_settings(master_service);
	const char *const *net;
	struct ip_addr net_ip;
	unsigned int bits;

	if (set->haproxy_trusted_networks == NULL)
		return FALSE;
	net = t_strsplit_spaces(set->haproxy_trusted_networks, ", ");
	for (; *net != NULL; net++) {
		/* Dovecot reports an invalid entry itself. */
		if (net_parse_range(*net, &net_ip, &bits) == 0 &&
		    net_is_in_network(ip, &net_ip, bits))
			return TRUE;
	}
	return FALSE;
}

bool dovegate_login_from_trusted_proxy(struct client *client)
{
	return listener_is_haproxy(client->listener_name) &&
		ip_in_haproxy_trusted_networks(&client->real_remote_ip);
}
