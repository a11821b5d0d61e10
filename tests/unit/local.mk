# cmocka unit tests. One block per test program; append new ones below.
if UNIT_TESTS
check_PROGRAMS += tests/unit/test_schemes
tests_unit_test_schemes_SOURCES = tests/unit/test_schemes.c
tests_unit_test_schemes_CPPFLAGS = $(AM_CPPFLAGS) -DDG_VECTORS_DIR='"$(abs_top_srcdir)/tests/vectors"'
tests_unit_test_schemes_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) $(OPENSSL_CFLAGS)
tests_unit_test_schemes_LDADD = $(DG_COMMON_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_schemes

check_PROGRAMS += tests/unit/test_passwd_file
tests_unit_test_passwd_file_SOURCES = tests/unit/test_passwd_file.c
tests_unit_test_passwd_file_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_passwd_file_LDADD = $(DG_COMMON_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_passwd_file

# dovegate-auth (src/shim): protocol, decisions, configuration
check_PROGRAMS += tests/unit/test_authhttp
tests_unit_test_authhttp_SOURCES = tests/unit/test_authhttp.c
tests_unit_test_authhttp_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_authhttp_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_authhttp_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_authhttp

check_PROGRAMS += tests/unit/test_config
tests_unit_test_config_SOURCES = tests/unit/test_config.c
tests_unit_test_config_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_config_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_config_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_config

check_PROGRAMS += tests/unit/test_cache
tests_unit_test_cache_SOURCES = tests/unit/test_cache.c
tests_unit_test_cache_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_cache_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_cache_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_cache

# login tickets: PASETO/PASERK vectors, claims, key files
check_PROGRAMS += tests/unit/test_ticket
tests_unit_test_ticket_SOURCES = tests/unit/test_ticket.c
tests_unit_test_ticket_CPPFLAGS = $(AM_CPPFLAGS) -DDG_VECTORS_DIR='"$(abs_top_srcdir)/tests/vectors"'
tests_unit_test_ticket_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS) $(SODIUM_CFLAGS) $(JANSSON_CFLAGS)
tests_unit_test_ticket_LDADD = $(DG_COMMON_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_ticket

# the dovecot passdb: auth-client protocol lines
check_PROGRAMS += tests/unit/test_passdb_dovecot
tests_unit_test_passdb_dovecot_SOURCES = tests/unit/test_passdb_dovecot.c
tests_unit_test_passdb_dovecot_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_passdb_dovecot_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_passdb_dovecot_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_passdb_dovecot

# brute-force state, backend choice (rendezvous hashing), health checks
check_PROGRAMS += tests/unit/test_penalty
tests_unit_test_penalty_SOURCES = tests/unit/test_penalty.c
tests_unit_test_penalty_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_penalty_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_penalty_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_penalty

check_PROGRAMS += tests/unit/test_route
tests_unit_test_route_SOURCES = tests/unit/test_route.c
tests_unit_test_route_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_route_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_route_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS) -lm
TESTS += tests/unit/test_route

check_PROGRAMS += tests/unit/test_health
tests_unit_test_health_SOURCES = tests/unit/test_health.c
tests_unit_test_health_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_health_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_health_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_health

# backend pools from the config and the choice of a backend (routing.h)
check_PROGRAMS += tests/unit/test_routing
tests_unit_test_routing_SOURCES = tests/unit/test_routing.c tests/unit/conf_fixture.h
tests_unit_test_routing_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_routing_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_routing_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_routing

# Prometheus rendering (metrics.h)
check_PROGRAMS += tests/unit/test_metrics
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c
tests_unit_test_metrics_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_metrics_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_metrics_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_metrics

# the resolver's answer cache (dns.h)
check_PROGRAMS += tests/unit/test_dns
tests_unit_test_dns_SOURCES = tests/unit/test_dns.c
tests_unit_test_dns_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_dns_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_dns_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_dns
endif
EXTRA_DIST += tests/vectors/dovecot-pw.txt tests/vectors/paseto

# cluster mode without a store: URL and keys, [cluster], the director, shared scores
if UNIT_TESTS
check_PROGRAMS += tests/unit/test_cluster
tests_unit_test_cluster_SOURCES = tests/unit/test_cluster.c tests/unit/conf_fixture.h
tests_unit_test_cluster_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/src/shim
tests_unit_test_cluster_CFLAGS = $(DG_SHIM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_cluster_LDADD = $(DG_SHIM_LIBS) $(CMOCKA_LIBS)
TESTS += tests/unit/test_cluster
endif

# the passdb's replay cache (src/plugin/replay_cache.c): Dovecot's flags and
# lib (hash table, priority queue), like the module itself
if UNIT_TESTS
check_PROGRAMS += tests/unit/test_replay_cache
tests_unit_test_replay_cache_SOURCES = tests/unit/test_replay_cache.c \
	src/plugin/replay_cache.c src/plugin/replay_cache.h
tests_unit_test_replay_cache_CPPFLAGS = $(LIBDOVECOT_INCLUDE) -I$(top_srcdir)/src/plugin
tests_unit_test_replay_cache_CFLAGS = $(DOVECOT_MODULE_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_replay_cache_LDADD = $(LIBDOVECOT) $(CMOCKA_LIBS)
tests_unit_test_replay_cache_LDFLAGS = -Wl,-rpath,$(dovecotdir)
TESTS += tests/unit/test_replay_cache
endif
