#!/bin/sh
# Run a private Dovecot in the foreground with dovegate's passdb module.
#
#   tests/chain/run-dovecot.sh CONF MODULE_DIR
#
# CONF        the rendered tests/chain/dovecot.conf.in (absolute path)
# MODULE_DIR  the dir holding libauthdb_dovegate.so (e.g.
#             <builddir>/src/plugin/.libs); the login plugin is found through
#             login_plugin_dir in CONF instead.
#
# Dovecot's auth process loads passdb modules only from its compiled-in
# /usr/lib/dovecot/modules/auth. To add ours without writing to /usr/lib,
# Dovecot runs in its own mount namespace where that directory is a
# read-only overlay of a staging dir (only libauthdb_dovegate.so: the auth
# process eagerly loads every other *.so it finds there) over the real one.
# The staging dir is <dir of CONF>/auth-modules.
#
# Needs root (mount namespace, overlayfs; Dovecot's master runs as root).
# The process keeps its pid through every exec (sh -> unshare -> sh ->
# dovecot), so the pid of this script IS Dovecot's master pid: SIGTERM to it
# stops Dovecot and all its children; the namespace goes away with them.
# Logs go to log_path in CONF; stderr only gets start-up failures.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 CONF MODULE_DIR" >&2
	exit 2
fi
conf=$1
module=$2/libauthdb_dovegate.so
authdir=/usr/lib/dovecot/modules/auth

case $conf in
/*) ;;
*) conf=$(pwd)/$conf ;;
esac
[ -r "$conf" ] || { echo "$0: cannot read $conf" >&2; exit 1; }
[ -r "$module" ] || { echo "$0: no $module (build it first)" >&2; exit 1; }
[ -d "$authdir" ] || { echo "$0: no $authdir (install dovecot-core)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "$0: must run as root" >&2; exit 1; }

stage=$(dirname "$conf")/auth-modules
rm -rf "$stage"
mkdir -p "$stage"
cp "$module" "$stage/"

# unshare without --fork execs in place (same pid). Mount propagation
# private: nothing mounted here is seen outside. $1..$3 expand in the inner
# shell, on purpose.
# shellcheck disable=SC2016
exec unshare --mount --propagation private /bin/sh -ec '
	mount -t overlay overlay -o "ro,lowerdir=$1:$2" "$2"
	exec dovecot -F -c "$3"
' run-dovecot "$stage" "$authdir" "$conf"
