# dovegate-auth: the nginx mail auth_http server.
# Everything but main.c lives in libdgshim.a so the unit tests link the same code.
noinst_LIBRARIES += src/shim/libdgshim.a
src_shim_libdgshim_a_SOURCES = \
	src/shim/authhttp.c src/shim/authhttp.h \
	src/shim/backend.c src/shim/backend.h \
	src/shim/cache.c src/shim/cache.h \
	src/shim/client_addr.c src/shim/client_addr.h \
	src/shim/cluster.c src/shim/cluster.h \
	src/shim/config.c src/shim/config.h \
	src/shim/credentials.c src/shim/credentials.h \
	src/shim/decision.c src/shim/decision.h \
	src/shim/director.c src/shim/director.h \
	src/shim/external.c src/shim/external.h \
	src/shim/health.c src/shim/health.h \
	src/shim/log.c src/shim/log.h \
	src/shim/metrics.c src/shim/metrics.h \
	src/shim/metrics_http.c src/shim/metrics_http.h \
	src/shim/notify.c src/shim/notify.h \
	src/shim/passdb.c src/shim/passdb.h \
	src/shim/passdb_dovecot.c src/shim/passdb_dovecot.h \
	src/shim/passdb_file.c src/shim/passdb_file.h \
	src/shim/penalty.c src/shim/penalty.h \
	src/shim/route.c src/shim/route.h \
	src/shim/routing.c src/shim/routing.h \
	src/shim/dns.c src/shim/dns.h \
	src/shim/runtime.c src/shim/runtime.h \
	src/shim/secret.c src/shim/secret.h \
	src/shim/server.c src/shim/server.h \
	src/shim/session.c src/shim/session.h \
	src/shim/store.c src/shim/store.h \
	src/shim/store_tls.c src/shim/store_tls.h \
	src/shim/throttle.c src/shim/throttle.h \
	src/shim/workers.c src/shim/workers.h
DG_SHIM_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS) $(SODIUM_CFLAGS) $(INIH_CFLAGS) $(OPENSSL_CFLAGS) \
	$(SYSTEMD_CFLAGS) $(HIREDIS_CFLAGS) $(HIREDIS_SSL_CFLAGS) -DSYSCONFDIR='"$(sysconfdir)"' -DDG_VERSION='"$(PACKAGE_VERSION)"'
src_shim_libdgshim_a_CFLAGS = $(DG_SHIM_CFLAGS)
# libdgshim.a first, then what it needs
DG_SHIM_LIBS = src/shim/libdgshim.a $(DG_COMMON_LIBS) $(LIBEVENT_LIBS) \
	$(INIH_LIBS) $(SODIUM_LIBS) $(SYSTEMD_LIBS) $(HIREDIS_SSL_LIBS) $(HIREDIS_LIBS) -lm

sbin_PROGRAMS += src/shim/dovegate-auth
src_shim_dovegate_auth_SOURCES = src/shim/main.c
src_shim_dovegate_auth_CFLAGS = $(DG_SHIM_CFLAGS)
src_shim_dovegate_auth_LDADD = $(DG_SHIM_LIBS)
