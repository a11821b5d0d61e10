# libFuzzer harnesses (clang; `make fuzz`). Built with plain make rules, not
# automake programs: the main build uses gcc, these need clang, so each
# harness compiles the sources it needs itself (objects in tests/fuzz/obj/).
FUZZ_NAMES = authhttp passwd_file schemes ticket config dovecot_reply
FUZZ_PROGS = $(FUZZ_NAMES:%=tests/fuzz/fuzz_%)
EXTRA_DIST += $(FUZZ_NAMES:%=tests/fuzz/fuzz_%.c) tests/fuzz/corpus scripts/fuzz-smoke

if FUZZ
FUZZ_SAN = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -g -O1 -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -w \
	-I$(top_srcdir)/src/common -I$(top_srcdir)/src/shim -I$(top_builddir) \
	-DSYSCONFDIR='"$(sysconfdir)"' -DDG_VERSION='"$(PACKAGE_VERSION)"' \
	$(LIBEVENT_CFLAGS) $(SODIUM_CFLAGS) $(INIH_CFLAGS) $(OPENSSL_CFLAGS) \
	$(CRYPT_CFLAGS) $(JANSSON_CFLAGS) $(HIREDIS_CFLAGS) $(HIREDIS_SSL_CFLAGS)
FUZZ_LIBS = $(LIBEVENT_LIBS) $(INIH_LIBS) $(SODIUM_LIBS) $(HIREDIS_SSL_LIBS) $(HIREDIS_LIBS) \
	$(OPENSSL_LIBS) $(CRYPT_LIBS) $(JANSSON_LIBS) $(LIBS)
# The code under test: libdgcommon + ticket_json + libdgshim (config.c pulls
# in most of the shim), without main.c.
FUZZ_SRCS = $(filter %.c,$(src_common_libdgcommon_a_SOURCES) \
	$(src_common_libdgticketjson_a_SOURCES) $(src_shim_libdgshim_a_SOURCES))
FUZZ_OBJS = $(patsubst src/%.c,tests/fuzz/obj/%.o,$(FUZZ_SRCS))

$(FUZZ_OBJS): tests/fuzz/obj/%.o: $(top_srcdir)/src/%.c config.h
	@$(MKDIR_P) $(@D)
	$(AM_V_CC)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined \
		-fno-sanitize-recover=undefined -c -o $@ $<

$(FUZZ_PROGS): tests/fuzz/fuzz_%: $(top_srcdir)/tests/fuzz/fuzz_%.c $(FUZZ_OBJS)
	@$(MKDIR_P) $(@D)
	$(AM_V_CCLD)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -o $@ $< $(FUZZ_OBJS) $(FUZZ_LIBS)

fuzz: $(FUZZ_PROGS)
else
fuzz:
	@echo "make fuzz needs clang with libFuzzer: apt-get install clang libclang-rt-dev, then re-run configure" >&2
	@exit 1
endif
.PHONY: fuzz
CLEANFILES += $(FUZZ_PROGS)
clean-local: clean-fuzz
clean-fuzz:
	-rm -rf tests/fuzz/obj
