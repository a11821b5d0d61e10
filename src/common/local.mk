# Shared code: password schemes, passwd-file parsing (later: tickets, key ring).
noinst_LIBRARIES += src/common/libdgcommon.a
src_common_libdgcommon_a_SOURCES = \
	src/common/schemes.c src/common/schemes.h \
	src/common/passwd_file.c src/common/passwd_file.h
src_common_libdgcommon_a_CFLAGS = $(AM_CFLAGS) $(SODIUM_CFLAGS) $(OPENSSL_CFLAGS) $(CRYPT_CFLAGS)
DG_COMMON_LIBS = src/common/libdgcommon.a $(SODIUM_LIBS) $(OPENSSL_LIBS) $(CRYPT_LIBS)
