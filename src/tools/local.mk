# dovegate CLI: password hashing now; keygen and ticket inspection later.
bin_PROGRAMS += src/tools/dovegate
src_tools_dovegate_SOURCES = src/tools/dovegate.c
src_tools_dovegate_CFLAGS = $(AM_CFLAGS) $(SODIUM_CFLAGS)
src_tools_dovegate_LDADD = $(DG_COMMON_LIBS)
