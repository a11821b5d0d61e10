/* Dovecot 2.4: the dovegate passdb reads its settings with settings_get()
   (settings_v24.c declares them):

     passdb dovegate {
       keys = /etc/dovecot/dovegate.keys
       audience = mx1
       #allow_real_nets = 192.0.2.10 2001:db8::/64
       #nginx_ports = 10143 10110 10587
       #skew = 30s
       #max_lifetime = 5min
       #replay_cache_size = 100000
     }

   Dovecot stops the auth process with "passdb dovegate: <error>" when
   preinit fails. */

#include "auth-common.h"
#include "settings.h"
#include "passdb.h"
#include "settings_v24.h"

static int
dovegate_preinit_v24(pool_t pool, struct event *event,
		     struct passdb_module **module_r, const char **error_r)
{
	const struct passdb_dovegate_settings *dset;
	struct dovegate_passdb_settings set;
	int ret;

	if (settings_get(event, &passdb_dovegate_setting_parser_info, 0,
			 &dset, error_r) < 0)
		return -1;
	ret = dovegate_settings_v24_convert(dset, pool, &set, error_r);
	if (ret == 0)
		ret = dovegate_passdb_settings_require(&set, error_r);
	if (ret == 0) {
		set.keys_path = p_strdup(pool, set.keys_path);
		set.audience = p_strdup(pool, set.audience);
		ret = dovegate_passdb_create(pool, &set, module_r, error_r);
	}
	settings_free(dset);
	return ret;
}

void dovegate_passdb_settings_register(struct passdb_module_interface *iface)
{
	iface->preinit = dovegate_preinit_v24;
}
