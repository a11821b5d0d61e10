/* Dovecot 2.3: the dovegate passdb reads its settings from the passdb's
   args string (passdb_settings.h):

     passdb {
       driver = dovegate
       args = keys=/etc/dovecot/dovegate.keys audience=mx1 \
              [allow_real_nets=NET,...] [nginx_ports=PORT,...] \
              [skew=30] [max_lifetime=300] [replay_cache_size=100000]
     }

   A bad or missing setting stops the auth process with a line naming it,
   as Dovecot 2.3's own passdbs do. */

#include "auth-common.h"
#include "strnum.h"
#include "passdb.h"
#include "passdb_settings.h"

static void ATTR_NORETURN
dovegate_args_fatal(const char *error)
{
	i_fatal("passdb dovegate: %s (args = keys=FILE audience=ID "
		"[skew=SECS] [max_lifetime=SECS] [replay_cache_size=N] "
		"[allow_real_nets=NET,...] [nginx_ports=PORT,...])", error);
}

static unsigned int dovegate_arg_uint(const char *key, const char *value)
{
	unsigned int n;

	if (str_to_uint(value, &n) < 0) {
		dovegate_args_fatal(t_strdup_printf(
			"%s=%s: not a number", key, value));
	}
	return n;
}

static void
dovegate_parse_args(struct dovegate_passdb_settings *set, const char *args,
		    const char **nets_r, const char **ports_r)
{
	const char *const *arg, *key, *value, *p;

	*nets_r = NULL;
	*ports_r = NULL;
	for (arg = t_strsplit_spaces(args, " \t"); *arg != NULL; arg++) {
		p = strchr(*arg, '=');
		if (p == NULL || p == *arg || p[1] == '\0') {
			dovegate_args_fatal(t_strdup_printf(
				"argument '%s' is not key=value", *arg));
		}
		key = t_strdup_until(*arg, p);
		value = p + 1;
		if (strcmp(key, "keys") == 0)
			set->keys_path = value;
		else if (strcmp(key, "audience") == 0)
			set->audience = value;
		else if (strcmp(key, "skew") == 0)
			set->skew = dovegate_arg_uint(key, value);
		else if (strcmp(key, "max_lifetime") == 0)
			set->max_lifetime = dovegate_arg_uint(key, value);
		else if (strcmp(key, "replay_cache_size") == 0)
			set->replay_cache_size = dovegate_arg_uint(key, value);
		else if (strcmp(key, "allow_real_nets") == 0)
			*nets_r = value;
		else if (strcmp(key, "nginx_ports") == 0)
			*ports_r = value;
		else {
			dovegate_args_fatal(t_strdup_printf(
				"unknown argument '%s' (known: %s)", key,
				DOVEGATE_SETTING_KEYS));
		}
	}
}

static struct passdb_module *
dovegate_preinit_v23(pool_t pool, const char *args)
{
	struct dovegate_passdb_settings set = {
		.skew = DOVEGATE_DEFAULT_SKEW,
		.max_lifetime = DOVEGATE_DEFAULT_MAX_LIFETIME,
		.replay_cache_size = DOVEGATE_DEFAULT_REPLAY_CACHE_SIZE,
	};
	struct passdb_module *module = NULL;
	const char *nets, *ports, *error;

	T_BEGIN {
		dovegate_parse_args(&set, args, &nets, &ports);
		if (dovegate_passdb_settings_check(&set, pool, nets, ports,
						   &error) < 0 ||
		    dovegate_passdb_settings_require(&set, &error) < 0)
			dovegate_args_fatal(error);
		set.keys_path = p_strdup(pool, set.keys_path);
		set.audience = p_strdup(pool, set.audience);
		if (dovegate_passdb_create(pool, &set, &module, &error) < 0)
			i_fatal("passdb dovegate: %s", error);
	} T_END;
	return module;
}

void dovegate_passdb_settings_register(struct passdb_module_interface *iface)
{
	iface->preinit = dovegate_preinit_v23;
}
