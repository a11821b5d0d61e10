#!/bin/sh
# Run a private Dovecot in the foreground with dovegate's modules.
#
#   tests/chain/run-dovecot.sh CONF MODULE_DIR [COMMAND ARGS...]
#
# CONF        the rendered tests/chain/dovecot-2.x.conf.in (absolute path)
# MODULE_DIR  the dir holding libauthdb_dovegate.so and, for Dovecot 2.4,
#             libdovegate_settings.so (e.g. <builddir>/src/plugin/.libs);
#             the login plugin is found through login_plugin_dir in CONF.
# COMMAND     run instead of "dovecot -F -c CONF", in the same view of the
#             module directories (e.g. doveconf -n -c CONF).
#
# Dovecot loads passdb modules only from its compiled-in
# /usr/lib/dovecot/modules/auth, and Dovecot 2.4's config process loads
# settings modules only from /usr/lib/dovecot/modules/settings. To add ours
# without writing to /usr/lib, Dovecot runs in its own mount namespace where
# /usr/lib/dovecot/modules is a read-only overlay of a staging tree (only
# auth/libauthdb_dovegate.so and settings/libdovegate_settings.so: the auth
# process eagerly loads every *.so it finds in auth/) over the real one.
# The staging tree is <dir of CONF>/dovecot-modules.
#
# Needs root (mount namespace, overlayfs; Dovecot's master runs as root).
# The process keeps its pid through every exec (sh -> unshare -> sh ->
# dovecot), so the pid of this script IS Dovecot's master pid: SIGTERM to it
# stops Dovecot and all its children; the namespace goes away with them.
# Logs go to log_path in CONF; stderr only gets start-up failures.
set -eu

if [ $# -lt 2 ]; then
	echo "usage: $0 CONF MODULE_DIR [COMMAND ARGS...]" >&2
	exit 2
fi
conf=$1
libs=$2
shift 2
moduledir=/usr/lib/dovecot/modules

case $conf in
/*) ;;
*) conf=$(pwd)/$conf ;;
esac
[ -r "$conf" ] || { echo "$0: cannot read $conf" >&2; exit 1; }
[ -r "$libs/libauthdb_dovegate.so" ] || { echo "$0: no $libs/libauthdb_dovegate.so (build it first)" >&2; exit 1; }
[ -d "$moduledir" ] || { echo "$0: no $moduledir (install dovecot-core)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 1; }

stage=$(dirname "$conf")/dovecot-modules
rm -rf "$stage"
mkdir -p "$stage/auth"
cp "$libs/libauthdb_dovegate.so" "$stage/auth/"
if [ -f "$libs/libdovegate_settings.so" ]; then
	mkdir -p "$stage/settings"
	cp "$libs/libdovegate_settings.so" "$stage/settings/"
fi
[ $# -gt 0 ] || set -- dovecot -F -c "$conf"

# unshare without --fork execs in place (same pid). Mount propagation
# private: nothing mounted here is seen outside. $1 and $2 expand in the
# inner shell, on purpose.
# shellcheck disable=SC2016
exec unshare --mount --propagation private /bin/sh -ec '
	mount -t overlay overlay -o "ro,lowerdir=$1:$2" "$2"
	shift 2
	exec "$@"
' run-dovecot "$stage" "$moduledir" "$@"
