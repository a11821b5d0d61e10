# bench/: the login load client of bench/run-logins and bench/run-soak.
# Built with everything else (not installed) so the suite's smoke run has it.
noinst_PROGRAMS += bench/loginload
bench_loginload_SOURCES = bench/loginload.c
bench_loginload_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
bench_loginload_LDADD = $(LIBEVENT_LIBS) -lm
