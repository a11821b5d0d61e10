# Dovecot side: the login plugin (imap/pop3/submission-login) and the passdb
# module (auth process). Both are libtool modules built only with Dovecot's
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
	src/plugin/login_trust.c src/plugin/login_trust.h
src_plugin_lib20_dovegate_plugin_la_CPPFLAGS = \
	$(LIBDOVECOT_INCLUDE) $(LIBDOVECOT_LOGIN_INCLUDE)
src_plugin_lib20_dovegate_plugin_la_CFLAGS = $(DOVECOT_MODULE_CFLAGS)
src_plugin_lib20_dovegate_plugin_la_LDFLAGS = $(DG_DOVECOT_MODULE_LDFLAGS)

# The passdb module also compiles the ticket and key ring code from
# src/common (libc + libsodium only, gnu99-clean) with these flags, and links
# libsodium: the auth binary does not provide it.
src_plugin_libauthdb_dovegate_la_SOURCES = src/plugin/passdb_dovegate.c \
	src/plugin/replay_cache.c src/plugin/replay_cache.h \
	src/plugin/claims_json.c src/plugin/claims_json.h \
	src/common/ticket.c src/common/ticket.h \
	src/common/keyring.c src/common/keyring.h \
	src/common/readall.c src/common/readall.h
src_plugin_libauthdb_dovegate_la_CPPFLAGS = \
	$(LIBDOVECOT_INCLUDE) $(LIBDOVECOT_AUTH_INCLUDE) \
	-I$(top_srcdir)/src/common $(SODIUM_CFLAGS)
src_plugin_libauthdb_dovegate_la_CFLAGS = $(DOVECOT_MODULE_CFLAGS)
src_plugin_libauthdb_dovegate_la_LDFLAGS = $(DG_DOVECOT_MODULE_LDFLAGS)
src_plugin_libauthdb_dovegate_la_LIBADD = $(SODIUM_LIBS)

# --enable-sanitizers instruments the modules too: they then link libasan,
# which must be preloaded into Dovecot's (uninstrumented) processes; the test
# chain does that (tests/chain/chain.py: sanitizer_dovecot_settings).
if SANITIZERS
src_plugin_lib20_dovegate_plugin_la_CFLAGS += $(SANITIZER_FLAGS)
src_plugin_lib20_dovegate_plugin_la_LDFLAGS += $(SANITIZER_FLAGS)
src_plugin_libauthdb_dovegate_la_CFLAGS += $(SANITIZER_FLAGS)
src_plugin_libauthdb_dovegate_la_LDFLAGS += $(SANITIZER_FLAGS)
endif

# Hooks by prerequisite only, so other fragments can hang their own on the
# same hook targets.
install-data-hook: install-data-hook-plugin
uninstall-hook: uninstall-hook-plugin

.PHONY: install-data-hook-plugin uninstall-hook-plugin
install-data-hook-plugin:
	rm -f "$(DESTDIR)$(dovecot_login_moduledir)/lib20_dovegate_plugin.la" \
	      "$(DESTDIR)$(dovecot_auth_moduledir)/libauthdb_dovegate.la"

# libtool's uninstall needs the .la we removed: delete the .so ourselves.
uninstall-hook-plugin:
	rm -f "$(DESTDIR)$(dovecot_login_moduledir)/lib20_dovegate_plugin.so" \
	      "$(DESTDIR)$(dovecot_auth_moduledir)/libauthdb_dovegate.so"
