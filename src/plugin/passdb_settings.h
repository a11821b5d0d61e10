/* The dovegate passdb's settings: one struct and one set of rules for both
   Dovecot versions. How they are read differs (dovecot_compat.h):
     2.3  passdb { driver = dovegate
                   args = keys=FILE audience=ID [skew=30] ... }
          (passdb_settings_v23.c)
     2.4  passdb dovegate { keys = FILE  audience = ID  [skew = 30s] ... }
          i.e. passdb_dovegate_keys etc., declared to the config process
          by the settings module (settings_v24.c, passdb_settings_v24.c).
   The names after the prefix are the same in both. */
#ifndef DOVEGATE_PASSDB_SETTINGS_H
#define DOVEGATE_PASSDB_SETTINGS_H

#define DOVEGATE_DEFAULT_SKEW 30
#define DOVEGATE_DEFAULT_MAX_LIFETIME 300
#define DOVEGATE_DEFAULT_REPLAY_CACHE_SIZE 100000
#define DOVEGATE_MAX_SKEW 600
#define DOVEGATE_MAX_MAX_LIFETIME 86400
#define DOVEGATE_MAX_REPLAY_CACHE_SIZE 100000000

/* Every key, for error messages that list them. */
#define DOVEGATE_SETTING_KEYS \
	"keys, audience, skew, max_lifetime, replay_cache_size, " \
	"allow_real_nets, nginx_ports"

struct passdb_module;
struct passdb_module_interface;

struct dovegate_net {
	struct ip_addr ip;
	unsigned int bits;
};

/* Checked settings; strings and nets live in the pool they were checked
   with. */
struct dovegate_passdb_settings {
	const char *keys_path;   /* absolute path of the public key ring */
	const char *audience;    /* this backend's name in tickets */
	unsigned int skew, max_lifetime, replay_cache_size;
	/* allow_real_nets: tickets only from these peers (nginx); none = any */
	const char *real_nets_str;  /* NULL: any */
	const struct dovegate_net *real_nets;
	unsigned int real_nets_count;
	/* nginx_ports: the local ports of the listeners meant for nginx. A
	   login on one of them (the socket's port, not the PROXY header's
	   claim) must bring a ticket or be a master-user login; any other
	   password is refused unchecked. None: every port takes passwords. */
	const char *nginx_ports_str;  /* NULL: none */
	const in_port_t *nginx_ports;
	unsigned int nginx_ports_count;
};

/* The numbers, the nets and the ports (each list comma- or
   space-separated; NULL: unset) against the rules.
   `keys` and `audience` may be empty here (the 2.4 config process checks
   every filter, used or not); dovegate_passdb_settings_require() says
   when they are missing. Returns 0, or -1 with *error_r naming the key. */
int dovegate_passdb_settings_check(struct dovegate_passdb_settings *set,
				   pool_t pool, const char *nets,
				   const char *ports, const char **error_r);
int dovegate_passdb_settings_require(const struct dovegate_passdb_settings *set,
				     const char **error_r);

/* passdb_dovegate.c: the module for checked settings (keys loaded, replay
   memory set up). -1 with *error_r when the key ring cannot be loaded. */
int dovegate_passdb_create(pool_t pool,
			   const struct dovegate_passdb_settings *set,
			   struct passdb_module **module_r,
			   const char **error_r);

/* passdb_settings_v23.c / _v24.c: sets iface->preinit to the version's
   settings reader, which ends in dovegate_passdb_create(). */
void dovegate_passdb_settings_register(struct passdb_module_interface *iface);

#endif
