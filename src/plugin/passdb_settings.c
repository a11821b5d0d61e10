/* The dovegate passdb's setting rules, shared by both Dovecot versions
   (passdb_settings.h). */

#include "lib.h"
#include "net.h"
#include "passdb_settings.h"
#include "ticket.h"

static int
dovegate_check_range(const char *key, unsigned int value, unsigned int min,
		     unsigned int max, const char **error_r)
{
	if (value >= min && value <= max)
		return 0;
	*error_r = t_strdup_printf("%s=%u: expected a number from %u to %u",
				   key, value, min, max);
	return -1;
}

static int
dovegate_parse_nets(struct dovegate_passdb_settings *set, pool_t pool,
		    const char *value, const char **error_r)
{
	const char *const *nets = t_strsplit_spaces(value, ", ");
	unsigned int i, count = str_array_length(nets);
	struct dovegate_net *parsed;

	if (count == 0)
		return 0;
	parsed = p_new(pool, struct dovegate_net, count);
	for (i = 0; i < count; i++) {
		if (net_parse_range(nets[i], &parsed[i].ip,
				    &parsed[i].bits) < 0) {
			*error_r = t_strdup_printf(
				"allow_real_nets=%s: '%s' is not an IP address "
				"or network (e.g. 192.0.2.10, 2001:db8::/64)",
				value, nets[i]);
			return -1;
		}
	}
	set->real_nets = parsed;
	set->real_nets_count = count;
	set->real_nets_str = p_strdup(pool, value);
	return 0;
}

static int
dovegate_parse_ports(struct dovegate_passdb_settings *set, pool_t pool,
		     const char *value, const char **error_r)
{
	const char *const *ports = t_strsplit_spaces(value, ", ");
	unsigned int i, count = str_array_length(ports);
	in_port_t *parsed;

	if (count == 0)
		return 0;
	parsed = p_new(pool, in_port_t, count);
	for (i = 0; i < count; i++) {
		if (net_str2port(ports[i], &parsed[i]) < 0) {
			*error_r = t_strdup_printf(
				"nginx_ports=%s: '%s' is not a port number "
				"(1-65535; the ports of the haproxy = yes "
				"listeners, e.g. 10143)", value, ports[i]);
			return -1;
		}
	}
	set->nginx_ports = parsed;
	set->nginx_ports_count = count;
	set->nginx_ports_str = p_strdup(pool, value);
	return 0;
}

int dovegate_passdb_settings_check(struct dovegate_passdb_settings *set,
				   pool_t pool, const char *nets,
				   const char *ports, const char **error_r)
{
	if (set->keys_path != NULL && set->keys_path[0] != '\0' &&
	    set->keys_path[0] != '/') {
		*error_r = t_strdup_printf("keys=%s: must be an absolute path",
					   set->keys_path);
		return -1;
	}
	if (set->audience != NULL &&
	    strlen(set->audience) >= sizeof(((struct ticket_claims *)0)->aud)) {
		*error_r = t_strdup_printf("audience=%s: longer than %zu "
			"characters", set->audience,
			sizeof(((struct ticket_claims *)0)->aud) - 1);
		return -1;
	}
	if (dovegate_check_range("skew", set->skew, 0, DOVEGATE_MAX_SKEW,
				 error_r) < 0 ||
	    dovegate_check_range("max_lifetime", set->max_lifetime, 1,
				 DOVEGATE_MAX_MAX_LIFETIME, error_r) < 0 ||
	    dovegate_check_range("replay_cache_size", set->replay_cache_size,
				 1, DOVEGATE_MAX_REPLAY_CACHE_SIZE, error_r) < 0)
		return -1;
	set->real_nets = NULL;
	set->real_nets_count = 0;
	set->real_nets_str = NULL;
	set->nginx_ports = NULL;
	set->nginx_ports_count = 0;
	set->nginx_ports_str = NULL;
	if (nets != NULL && dovegate_parse_nets(set, pool, nets, error_r) < 0)
		return -1;
	return ports == NULL ? 0 :
		dovegate_parse_ports(set, pool, ports, error_r);
}

int dovegate_passdb_settings_require(const struct dovegate_passdb_settings *set,
				     const char **error_r)
{
	if (set->keys_path == NULL || set->keys_path[0] == '\0') {
		*error_r = "missing keys (the key ring with dovegate-auth's "
			"public keys, e.g. /etc/dovecot/dovegate.keys)";
		return -1;
	}
	if (set->audience == NULL || set->audience[0] == '\0') {
		*error_r = "missing audience (this backend's name, as "
			"dovegate-auth's tickets address it)";
		return -1;
	}
	return 0;
}
