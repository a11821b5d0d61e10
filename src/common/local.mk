# Shared code: password schemes, passwd-file parsing, login tickets, key ring.
# ticket.c and keyring.c need only libc + libsodium: the Dovecot passdb module
# compiles them too, with Dovecot's flags.
noinst_LIBRARIES += src/common/libdgcommon.a
src_common_libdgcommon_a_SOURCES = \
	src/common/schemes.c src/common/schemes.h \
	src/common/passwd_file.c src/common/passwd_file.h \
	src/common/hexbyte.h \
	src/common/ticket.c src/common/ticket.h \
	src/common/keyring.c src/common/keyring.h \
	src/common/filetrust.c src/common/filetrust.h \
	src/common/readall.c src/common/readall.h \
	src/common/cluster_store.c src/common/cluster_store.h
src_common_libdgcommon_a_CFLAGS = $(AM_CFLAGS) $(SODIUM_CFLAGS) $(OPENSSL_CFLAGS) $(CRYPT_CFLAGS)

# Claims <-> JSON (jansson), for dovegate-auth and the CLI only. Its header
# does not include jansson.h, so its users need no JANSSON_CFLAGS.
noinst_LIBRARIES += src/common/libdgticketjson.a
src_common_libdgticketjson_a_SOURCES = \
	src/common/ticket_json.c src/common/ticket_json.h
src_common_libdgticketjson_a_CFLAGS = $(AM_CFLAGS) $(JANSSON_CFLAGS)

# Everything above, in link order (libdgticketjson.a uses ticket.c).
DG_COMMON_LIBS = src/common/libdgticketjson.a src/common/libdgcommon.a \
	$(SODIUM_LIBS) $(OPENSSL_LIBS) $(CRYPT_LIBS) $(JANSSON_LIBS)
