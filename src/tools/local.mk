# dovegate CLI: pw, keygen, ticket, cluster. `cluster` reads the config with
# dovegate-auth's own reader and TLS code (libdgshim.a).
bin_PROGRAMS += src/tools/dovegate
src_tools_dovegate_SOURCES = src/tools/dovegate.c \
	src/tools/cluster_cli.c src/tools/cluster_cli.h
src_tools_dovegate_CFLAGS = $(DG_SHIM_CFLAGS)
src_tools_dovegate_LDADD = $(DG_SHIM_LIBS)
