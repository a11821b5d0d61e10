# Dovecot side: the login plugin (imap/pop3/submission-login), the passdb
# module (auth process) and, for Dovecot 2.4, the settings module (config
# process). Both are libtool modules built only with Dovecot's
# own flags (DOVECOT_MODULE_CFLAGS, saved by configure from dovecot.m4):
#  - per-target CPPFLAGS/CFLAGS replace AM_CPPFLAGS/AM_CFLAGS, so dovegate's
#    -std=c11, sanitizer flags and -I$(top_builddir) do not leak in;
#  - Dovecot's lib.h does #include "config.h" (under HAVE_CONFIG_H, which
#    automake's DEFS sets); a quoted include is looked up first next to the
#    including header, so it is /usr/include/dovecot/config.h, never ours,
#    even though automake's DEFAULT_INCLUDES still adds -I$(top_builddir).
#  - nothing is linked: every symbol resolves from the process that loads
#    the module (libdovecot-login, the auth binary); the passdb module adds
#    libsodium (below).
# The .la files are removed after install: Dovecot loads *.so from those
# directories and has no use for them.

dovecot_login_module_LTLIBRARIES = src/plugin/lib20_dovegate_plugin.la
dovecot_auth_module_LTLIBRARIES = src/plugin/libauthdb_dovegate.la

DG_DOVECOT_MODULE_LDFLAGS = -module -avoid-version -shared

src_plugin_lib20_dovegate_plugin_la_SOURCES = src/plugin/login_plugin.c \
	src/plugin/login_trust.c src/plugin/login_trust.h \
	src/plugin/dovecot_compat.h
src_plugin_lib20_dovegate_plugin_la_CPPFLAGS = \
	$(LIBDOVECOT_INCLUDE) $(LIBDOVECOT_LOGIN_INCLUDE)
src_plugin_lib20_dovegate_plugin_la_CFLAGS = $(DOVECOT_MODULE_CFLAGS)
src_plugin_lib20_dovegate_plugin_la_LDFLAGS = $(DG_DOVECOT_MODULE_LDFLAGS)

# The passdb module also compiles the ticket, claims JSON and key ring code
# from src/common (libc + libsodium + jansson, gnu99-clean) with these
# flags, and links libsodium and jansson: the auth binary provides neither.
# How it reads its settings depends on the Dovecot it is built for
# (configure: DOVECOT_24; src/plugin/dovecot_compat.h).
src_plugin_libauthdb_dovegate_la_SOURCES = src/plugin/passdb_dovegate.c \
	src/plugin/passdb_settings.c src/plugin/passdb_settings.h \
	src/plugin/dovecot_compat.h \
	src/plugin/replay_cache.c src/plugin/replay_cache.h \
	src/common/ticket.c src/common/ticket.h \
	src/common/ticket_json.c src/common/ticket_json.h \
	src/common/keyring.c src/common/keyring.h \
	src/common/filetrust.c src/common/filetrust.h \
	src/common/readall.c src/common/readall.h
src_plugin_libauthdb_dovegate_la_CPPFLAGS = \
	$(LIBDOVECOT_INCLUDE) $(LIBDOVECOT_AUTH_INCLUDE) \
	-I$(top_srcdir)/src/common $(SODIUM_CFLAGS) $(JANSSON_CFLAGS)
src_plugin_libauthdb_dovegate_la_CFLAGS = $(DOVECOT_MODULE_CFLAGS)
src_plugin_libauthdb_dovegate_la_LDFLAGS = $(DG_DOVECOT_MODULE_LDFLAGS)
src_plugin_libauthdb_dovegate_la_LIBADD = $(SODIUM_LIBS) $(JANSSON_LIBS)

if DOVECOT_24
# Dovecot 2.4: settings through settings_get(), declared to the config
# process by a settings module (libdovegate_settings.so in
# $moduledir/settings: the parser info and its checks, nothing else).
src_plugin_libauthdb_dovegate_la_SOURCES += src/plugin/passdb_settings_v24.c \
	src/plugin/settings_v24.c src/plugin/settings_v24.h

dovecot_settings_module_LTLIBRARIES = src/plugin/libdovegate_settings.la
src_plugin_libdovegate_settings_la_SOURCES = src/plugin/settings_v24.c \
	src/plugin/settings_v24.h src/plugin/passdb_settings.c \
	src/plugin/passdb_settings.h
src_plugin_libdovegate_settings_la_CPPFLAGS = $(LIBDOVECOT_INCLUDE) \
	-I$(top_srcdir)/src/common
src_plugin_libdovegate_settings_la_CFLAGS = $(DOVECOT_MODULE_CFLAGS)
src_plugin_libdovegate_settings_la_LDFLAGS = $(DG_DOVECOT_MODULE_LDFLAGS)
else
# Dovecot 2.3: the passdb's "args = key=value ..." string.
src_plugin_libauthdb_dovegate_la_SOURCES += src/plugin/passdb_settings_v23.c
endif

# --enable-sanitizers instruments the modules too: they then link libasan,
# which must be preloaded into Dovecot's (uninstrumented) processes; the test
# chain does that (tests/chain/chain.py: sanitizer_dovecot_settings).
if SANITIZERS
src_plugin_lib20_dovegate_plugin_la_CFLAGS += $(SANITIZER_FLAGS)
src_plugin_lib20_dovegate_plugin_la_LDFLAGS += $(SANITIZER_FLAGS)
src_plugin_libauthdb_dovegate_la_CFLAGS += $(SANITIZER_FLAGS)
src_plugin_libauthdb_dovegate_la_LDFLAGS += $(SANITIZER_FLAGS)
if DOVECOT_24
src_plugin_libdovegate_settings_la_CFLAGS += $(SANITIZER_FLAGS)
src_plugin_libdovegate_settings_la_LDFLAGS += $(SANITIZER_FLAGS)
endif
endif

# Hooks by prerequisite only, so other fragments can hang their own on the
# same hook targets.
install-data-hook: install-data-hook-plugin
uninstall-hook: uninstall-hook-plugin

.PHONY: install-data-hook-plugin uninstall-hook-plugin
install-data-hook-plugin:
	rm -f "$(DESTDIR)$(dovecot_login_moduledir)/lib20_dovegate_plugin.la" \
	      "$(DESTDIR)$(dovecot_auth_moduledir)/libauthdb_dovegate.la" \
	      "$(DESTDIR)$(dovecot_settings_moduledir)/libdovegate_settings.la"

# libtool's uninstall needs the .la we removed: delete the .so ourselves.
uninstall-hook-plugin:
	rm -f "$(DESTDIR)$(dovecot_login_moduledir)/lib20_dovegate_plugin.so" \
	      "$(DESTDIR)$(dovecot_auth_moduledir)/libauthdb_dovegate.so" \
	      "$(DESTDIR)$(dovecot_settings_moduledir)/libdovegate_settings.so"
