/* Dovecot 2.4: the dovegate passdb's settings declared to Dovecot
   (settings_v24.h). Built into libauthdb_dovegate.so, whose preinit reads
   them with settings_get(), and into the settings module
   libdovegate_settings.so in $moduledir/settings, which the config
   process loads: it then knows the keys (doveconf -n shows them, a
   misspelled one is "Unknown setting" as Dovecot's own are) and checks
   the values when the configuration is read. */

#include "lib.h"
#include "array.h"
#include "settings-parser.h"
#include "settings_v24.h"

#undef DEF
#define DEF(type, name) SETTING_DEFINE_STRUCT_##type( \
	"passdb_dovegate_"#name, name, struct passdb_dovegate_settings)

static const struct setting_define passdb_dovegate_setting_defines[] = {
	{ .type = SET_FILTER_NAME, .key = "passdb_dovegate" },
	DEF(STR_NOVARS, keys),
	DEF(STR_NOVARS, audience),
	DEF(TIME, skew),
	DEF(TIME, max_lifetime),
	DEF(UINT, replay_cache_size),
	DEF(BOOLLIST, allow_real_nets),
	DEF(BOOLLIST, nginx_ports),
	DEF(STR_NOVARS_HIDDEN, args),

	SETTING_DEFINE_LIST_END
};

static const struct passdb_dovegate_settings passdb_dovegate_default_settings = {
	.keys = "",
	.audience = "",
	.skew = DOVEGATE_DEFAULT_SKEW,
	.max_lifetime = DOVEGATE_DEFAULT_MAX_LIFETIME,
	.replay_cache_size = DOVEGATE_DEFAULT_REPLAY_CACHE_SIZE,
	.allow_real_nets = ARRAY_INIT,
	.nginx_ports = ARRAY_INIT,
	.args = "",
};

int dovegate_settings_v24_convert(const struct passdb_dovegate_settings *in,
				  pool_t pool,
				  struct dovegate_passdb_settings *out,
				  const char **error_r)
{
	const char *nets = NULL, *ports = NULL;

	if (in->args[0] != '\0') {
		*error_r = t_strdup_printf(
			"args = %s is Dovecot 2.3 syntax; with Dovecot 2.4 "
			"write the settings inside passdb dovegate { }, one "
			"per line: keys = FILE, audience = ID and optionally "
			"skew, max_lifetime, replay_cache_size, "
			"allow_real_nets, nginx_ports (or as "
			"passdb_dovegate_keys etc.)",
			in->args);
		return -1;
	}
	i_zero(out);
	out->keys_path = in->keys;
	out->audience = in->audience;
	out->skew = in->skew;
	out->max_lifetime = in->max_lifetime;
	out->replay_cache_size = in->replay_cache_size;
	if (array_is_created(&in->allow_real_nets) &&
	    array_count(&in->allow_real_nets) > 0) {
		nets = t_strarray_join(
			settings_boollist_get(&in->allow_real_nets), " ");
	}
	if (array_is_created(&in->nginx_ports) &&
	    array_count(&in->nginx_ports) > 0) {
		ports = t_strarray_join(
			settings_boollist_get(&in->nginx_ports), " ");
	}
	return dovegate_passdb_settings_check(out, pool, nets, ports, error_r);
}

static bool
passdb_dovegate_settings_check(void *_set, pool_t pool, const char **error_r)
{
	struct passdb_dovegate_settings *set = _set;
	struct dovegate_passdb_settings checked;

	if (dovegate_settings_v24_convert(set, pool, &checked, error_r) < 0) {
		*error_r = t_strdup_printf("passdb dovegate: %s", *error_r);
		return FALSE;
	}
	return TRUE;
}

const struct setting_parser_info passdb_dovegate_setting_parser_info = {
	.name = "passdb_dovegate",

	.defines = passdb_dovegate_setting_defines,
	.defaults = &passdb_dovegate_default_settings,

	.struct_size = sizeof(struct passdb_dovegate_settings),
	.pool_offset1 = 1 + offsetof(struct passdb_dovegate_settings, pool),
	.check_func = passdb_dovegate_settings_check,
};

/* What the config process looks up in libdovegate_settings.so (module
   name "dovegate_settings"). */
extern const char *dovegate_settings_version;
extern const struct setting_parser_info *dovegate_settings_set_infos[];

const char *dovegate_settings_version = DOVECOT_ABI_VERSION;
const struct setting_parser_info *dovegate_settings_set_infos[] = {
	&passdb_dovegate_setting_parser_info,
	NULL
};
