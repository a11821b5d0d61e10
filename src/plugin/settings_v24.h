/* Dovecot 2.4: the dovegate passdb's settings as the config process and
   settings_get() know them (settings_v24.c). Keys: passdb_dovegate_<name>,
   written as <name> inside "passdb dovegate { }" (Dovecot adds the
   prefix). */
#ifndef DOVEGATE_SETTINGS_V24_H
#define DOVEGATE_SETTINGS_V24_H

#include "settings-parser.h"
#include "passdb_settings.h"

struct passdb_dovegate_settings {
	pool_t pool;
	const char *keys;
	const char *audience;
	unsigned int skew;
	unsigned int max_lifetime;
	unsigned int replay_cache_size;
	ARRAY_TYPE(const_string) allow_real_nets;
	ARRAY_TYPE(const_string) nginx_ports;
	/* Dovecot 2.3's "args = ..." line: refused with the 2.4 keys */
	const char *args;
};

extern const struct setting_parser_info passdb_dovegate_setting_parser_info;

/* The checked, version-neutral form (strings from `in`, nets in pool). */
int dovegate_settings_v24_convert(const struct passdb_dovegate_settings *in,
				  pool_t pool,
				  struct dovegate_passdb_settings *out,
				  const char **error_r);

#endif
