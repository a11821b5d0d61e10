/* What differs between Dovecot 2.3 (Debian 12) and 2.4 (Debian 13) for
   dovegate's modules, in one place. Everything else in src/plugin is
   written once for both.

   Here: small renames the login plugin and the passdb module meet (client
   flags, net_ipport2str, the service settings getter, the request's
   protocol field). Elsewhere, picked by configure (src/plugin/local.mk):
   how the passdb module reads its settings (passdb_settings_v23.c: the
   2.3 "args = key=value ..." string; passdb_settings_v24.c plus the
   settings module settings_v24.c: 2.4's settings_get() with the keys
   declared to the config process).

   Include after Dovecot's lib.h (it defines DOVECOT_PREREQ). */
#ifndef DOVEGATE_DOVECOT_COMPAT_H
#define DOVEGATE_DOVECOT_COMPAT_H

#define DOVEGATE_DOVECOT_24 DOVECOT_PREREQ(2, 4, 0)

#if DOVEGATE_DOVECOT_24
/* ---- Dovecot 2.4 ---------------------------------------------------- */

/* client-common.h renamed secured/trusted/tls/proxied_ssl */
#  define DG_CLIENT_SECURED(c) ((c)->connection_secured)
#  define DG_CLIENT_TRUSTED(c) ((c)->connection_trusted)
#  define DG_CLIENT_TLS(c) ((c)->connection_tls_secured)
#  define DG_CLIENT_PROXIED_TLS(c) ((c)->haproxy_terminated_tls)

/* "192.0.2.7:4711" / "[2001:db8::7]:4711" */
#  define dg_ipport2str(ip, port) net_ipport2str((ip), (port))

#  define dg_service_settings(service) \
	master_service_get_service_settings(service)

/* auth_request_fields.service became .protocol */
#  define DG_REQUEST_PROTOCOL(request) ((request)->fields.protocol)

#else
/* ---- Dovecot 2.3 ---------------------------------------------------- */

#  define DG_CLIENT_SECURED(c) ((c)->secured)
#  define DG_CLIENT_TRUSTED(c) ((c)->trusted)
#  define DG_CLIENT_TLS(c) ((c)->tls)
#  define DG_CLIENT_PROXIED_TLS(c) ((c)->proxied_ssl)

static inline const char *
dg_ipport2str(const struct ip_addr *ip, in_port_t port)
{
	const char *str;

	return net_ipport2str(ip, port, &str) < 0 ? net_ip2addr(ip) : str;
}

#  define dg_service_settings(service) master_service_settings_get(service)

#  define DG_REQUEST_PROTOCOL(request) ((request)->fields.service)

#endif

#endif
