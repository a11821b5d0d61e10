#!/usr/bin/python3
"""The local dovegate chain: private nginx mail{} + dovegate-auth + Dovecot.

Used two ways:
  * `scripts/run-chain` runs it in the foreground for people (`chain.py run`);
  * the integration tests start and stop it from a pytest fixture (`Chain`).

Everything lives in one state directory: rendered configs (etc/), users and
secrets, logs (logs/), pid files and sockets (run/), mail (mail/). Nothing is
written elsewhere; the system nginx and Dovecot configs are never read.
"""

import argparse
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAIN_DIR = os.path.join(SRC_DIR, "tests", "chain")
CONF_DIR = os.path.join(SRC_DIR, "conf.d")

DEMO_USERS = [
    # user, password, scheme: one scheme each, so a demo login exercises it
    ("alice", "alice-pass-1", "SHA512-CRYPT"),
    ("bob", "bob-pass-2", "ARGON2ID"),
    ("carol", "carol-pass-3", "PLAIN"),
]
MASTER_USER = "dovegate"
TICKET_KID = "chain-1"
TICKET_AUDIENCE = "chain-dovecot"
SECRET_HEADER = "X-Dovegate-Secret"
# dovegate-auth's [health] in the chain: quick to recover; patient with a
# greeting on a loaded test machine (each probe starts a Dovecot login
# process: service_count = 1)
CHAIN_HEALTH = {"interval": "2s", "timeout": "3s", "rise": 1, "fall": 2}
# the pool protocols and the Dovecot listener each one uses
BACKEND_PORTS = (("imap", "DOVECOT_PROXY_IMAP_PORT"), ("pop3", "DOVECOT_PROXY_POP3_PORT"),
                 ("smtp", "DOVECOT_PROXY_SUBMISSION_PORT"))
BACKEND_STATE = re.compile(r"\bbackend proto=(\S+) backend=(\S+) .*\bstate=(up|down)\b")
PLACEHOLDER = re.compile(r"@([A-Z][A-Z0-9_]*)@")
# dovegate-auth's [cluster] keys the chain sets besides store (Chain(cluster=
# {...}) adds or overrides keys)
CHAIN_CLUSTER = {}
# the cluster store's server and client: Valkey (Debian 13) or Redis (Debian 12)
STORE_SERVERS = ("valkey-server", "redis-server")
STORE_CLIS = ("valkey-cli", "redis-cli")
# edge 2's own values (ports, logs, files); everything else it shares with edge 1
EDGE_PORT_KEYS = ("NGINX_IMAP_PORT", "NGINX_POP3_PORT", "NGINX_SUBMISSION_PORT", "NGINX_SMTP_PORT",
                  "NGINX_IMAPS_PORT", "AUTH_HTTP_PORT", "METRICS_PORT")
# endpoints.env names that differ per edge: edge 2's get an EDGE2_ prefix
EDGE_ENV_KEYS = EDGE_PORT_KEYS + ("AUTH_HTTP_URL", "METRICS_URL", "LOG_AUTH", "LOG_NGINX", "AUTH_CONF")


class ChainError(Exception):
    pass


_dovecot_line = None


def dovecot_line():
    """The installed Dovecot's release line, "2.3" or "2.4": it picks the
    chain's config templates (tests/chain/dovecot-<line>.conf.in and
    conf.d/dovecot/dovegate-<line>.conf) and the syntax tests write."""
    global _dovecot_line
    if _dovecot_line is None:
        try:
            out = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout
        except OSError as e:
            raise ChainError(f"dovecot --version: {e} (install dovecot-core)")
        m = re.match(r"(2\.[34])\.", out)
        if not m:
            raise ChainError(f"Dovecot {out.strip()!r} is not supported (2.3 or 2.4)")
        _dovecot_line = m.group(1)
    return _dovecot_line


def dovecot_conf(v23, v24):
    """The Dovecot settings text for the installed release line."""
    return v24 if dovecot_line() == "2.4" else v23


def free_ports(count):
    """Distinct free loopback TCP ports (bound together, so no duplicates)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def render(template_path, values, out_path):
    """Replace @KEY@ tokens; an unknown token is an error, never left behind."""
    with open(template_path) as f:
        text = f.read()

    def sub(m):
        key = m.group(1)
        if key not in values:
            raise ChainError(f"{template_path}: no value for @{key}@")
        return str(values[key])

    with open(out_path, "w") as f:
        f.write(PLACEHOLDER.sub(sub, text))
    return out_path


def write_secret(path, value):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(path, 0o600)


def wait_for_greeting(port, prefix, timeout, proc=None, what=""):
    """Wait until 127.0.0.1:port greets with `prefix` (b"* OK", b"+OK", b"220")."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ChainError(f"{what} exited with status {proc.returncode}")
        # a login process under valgrind on a busy machine may take seconds
        # to greet: waiting is better than starting yet another one
        wait = max(2.0, min(10.0, deadline - time.monotonic()))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
                line = s.recv(512)
                if line.startswith(prefix):
                    return
                last = line
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise ChainError(f"{what} on port {port} not ready after {timeout}s: {last!r}")


def wait_for_port(port, timeout, proc=None, what=""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ChainError(f"{what} exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ChainError(f"{what} not listening on port {port} after {timeout}s")


def store_binary(names):
    """The first of `names` on PATH (or in /usr/bin, /usr/sbin), else None."""
    for n in names:
        p = shutil.which(n) or next((d + "/" + n for d in ("/usr/bin", "/usr/sbin")
                                     if os.access(d + "/" + n, os.X_OK)), None)
        if p:
            return p
    return None


class StoreError(Exception):
    """An error reply (-ERR ...) from the store."""


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError(f"store: short reply {line!r}")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise StoreError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ConnectionError(f"store: unexpected reply {line!r}")


def store_command(port, *args, timeout=5, host="127.0.0.1"):
    """One command to a Redis/Valkey server on host:port (RESP, no client
    library needed); the reply as str/int/None/list, StoreError for -ERR."""
    req = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(x).encode() for x in args))
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(req)
        with s.makefile("rb") as f:
            return _resp_read(f)


def store_info(port, section="commandstats"):
    """INFO SECTION as {name: value}; commandstats values are dicts, e.g.
    store_info(p)["cmdstat_mget"]["calls"]."""
    out = {}
    for line in store_command(port, "INFO", section).splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        k, v = line.split(":", 1)
        if "=" in v:
            d = {}
            for kv in v.split(","):
                a, _, b = kv.partition("=")
                try:
                    d[a] = float(b) if "." in b else int(b)
                except ValueError:
                    d[a] = b
            out[k] = d
        else:
            out[k] = v
    return out


def wait_for_store(port, timeout, proc=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ChainError(f"store server exited with status {proc.returncode}")
        try:
            if store_command(port, "PING", timeout=2) == "PONG":
                return
        except (OSError, StoreError) as e:
            last = e
        time.sleep(0.05)
    raise ChainError(f"store server on port {port} not answering PING after {timeout}s: {last!r}")


def sanitizer_dovecot_settings(build_dir):
    """Dovecot settings for modules built with --enable-sanitizers (they link
    libasan; Dovecot's binaries do not): its processes get libasan preloaded
    (it must be the first library), no address-space limit (ASan reserves
    terabytes of shadow memory), login processes without chroot (so reports
    reach ASAN_OPTIONS' log_path), and no leak check (Dovecot's own memory at
    exit; valgrind checks our modules' leaks in the plain build). Empty for a
    plain build."""
    module = os.path.join(build_dir, "src", "plugin", ".libs", "libauthdb_dovegate.so")
    try:
        out = subprocess.run(["ldd", module], capture_output=True, text=True).stdout
    except OSError:
        return ""
    m = re.search(r"libasan\.so\S* => (\S+)", out)
    if not m:
        return ""
    if dovecot_line() != "2.3":
        # the sanitizer variant runs in the Debian 12 leg (scripts/run-tests)
        raise ChainError("sanitizer-built modules: the chain preloads libasan "
                         "with Dovecot 2.3 settings only")
    env = [f"LD_PRELOAD={m.group(1)}",
           "ASAN_OPTIONS=" + ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"]))]
    if os.environ.get("UBSAN_OPTIONS"):
        env.append(f"UBSAN_OPTIONS={os.environ['UBSAN_OPTIONS']}")
    return ("import_environment = TZ CORE_OUTOFMEM CORE_ERROR LISTEN_PID LISTEN_FDS "
            + " ".join(env) + "\ndefault_vsz_limit = 0\n"
            + "".join(f"service {s}-login {{\n  chroot =\n}}\n" for s in ("imap", "pop3", "submission")))


def tail(path, lines=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return f"({path}: {e})\n"


class Chain:
    """Starts and stops the three daemons; `env` holds endpoints.env's values."""

    def __init__(self, state_dir, build_dir, users=DEMO_USERS, dovecot_pre="", dovecot_post="",
                 credentials="ticket", passdb="file", imap_auth="plain login",
                 pop3_auth="plain", proto_credentials=None, auth_timeout=5, penalty=None,
                 backends=1, health=None, metrics=None, edges=1, cluster=None,
                 edge2_backend_ports=None):
        """dovecot_pre/dovecot_post: extra Dovecot settings for a test, placed
        before the dovegate snippet (e.g. a passdb that must come first) and
        at the end (later settings override earlier ones). credentials:
        dovegate-auth's mode, "ticket" (its default) or "master". passdb:
        "file" (dovegate-auth reads the users file) or "dovecot-unix" /
        "dovecot-tcp": dovegate-auth's [passdb] is its own, initially empty,
        etc/users-local (tests may write it) followed by [passdb dovecot], a
        client of this Dovecot's auth-client listener (unix or TCP).
        imap_auth/pop3_auth: nginx's imap_auth/pop3_auth methods (adding
        cram-md5 or apop only makes sense for users stored as PLAIN).
        proto_credentials: per-protocol modes, e.g. {"smtp": "master"}
        (dovegate-auth's imap_mode/pop3_mode/smtp_mode; default: none, all
        follow credentials). auth_timeout: dovegate-auth's [server] timeout.
        penalty: extra [penalty] keys, e.g. {"attempts": 3} (default: none).
        backends: how many Dovecot instances (each with its own ports,
        base_dir, mail, log and ticket audience; instance 1 is the classic
        one). With 1, dovegate-auth gets the classic "[backend] imap = ..."
        lines; with more, one [backend dovecot-N-PROTO] section each.
        health: [health] keys overriding the chain's (CHAIN_HEALTH).
        metrics: [metrics] keys, e.g. {"max_connections": 2}; "listen"
        replaces the chain's 127.0.0.1:METRICS_PORT ("{port}" in it is
        METRICS_PORT, e.g. "{port}" alone).

        Cluster mode (issue 16, ../shared/cluster-spec):
        edges: 1, or 2 for a second edge, an nginx + dovegate-auth pair of
        its own (own ports, logs logs/nginx-2.log and logs/dovegate-auth-2.log,
        configs and nginx pid/temp files in STATE/edge2/) in front of the same
        Dovecots, with the same users file, keys, secrets and [cluster] store.
        Its values are self.edges[1]; endpoints.env names them with an
        EDGE2_ prefix (EDGE2_NGINX_IMAP_PORT, EDGE2_AUTH_HTTP_URL, ...);
        its processes are procs["nginx-2"] and procs["dovegate-auth-2"].
        cluster: None (default: a store with edges=2, none with 1), True
        (a store and a [cluster] section with the chain's keys), a dict of
        extra [cluster] keys (e.g. {"assignment_ttl": 0}; "store" replaces
        the chain's URL, "{port}" in a value is the store's port), or False
        (no store, no [cluster]: with edges=2, two edges that share nothing).
        With a store, a Redis/Valkey server (valkey-server or redis-server)
        runs on 127.0.0.1:STORE_PORT, no persistence, data in STATE/store,
        log logs/store.log, started first and stopped last (procs["store"]);
        stop_store()/start_store()/pause_store()/resume_store() and
        store(*command) for tests.
        edge2_backend_ports: {backend number: {proto: port}} that edge 2's
        [backend] sections use instead of the real ones (same audience), e.g.
        {2: {"imap": 1}} makes edge 2's imap probes of Dovecot 2 fail while
        edge 1's succeed; start() does not wait for these to come up."""
        if edges not in (1, 2):
            raise ChainError(f"edges={edges!r}: 1 or 2")
        self.edge_count = edges
        if cluster is None:
            cluster = edges == 2
        self.cluster = None if cluster is False else {**CHAIN_CLUSTER, **(cluster if isinstance(cluster, dict) else {})}
        self.edge2_backend_ports = {int(i): dict(p) for i, p in (edge2_backend_ports or {}).items()}
        self.edges = []  # per edge: its values (edge 1's are self.values)
        self.imap_auth = imap_auth
        self.pop3_auth = pop3_auth
        self.state = os.path.abspath(state_dir)
        self.credentials = credentials
        self.proto_credentials = dict(proto_credentials or {})
        self.auth_timeout = auth_timeout
        self.penalty = dict(penalty or {})
        self.backend_count = backends
        self.health = {**CHAIN_HEALTH, **(health or {})}
        self.metrics = dict(metrics or {})
        self.backends = []  # per Dovecot instance: its values (see _backend_values)
        self.passdb = passdb
        self.dovecot_pre = dovecot_pre
        self.dovecot_post = sanitizer_dovecot_settings(build_dir) + dovecot_post
        self.build = os.path.abspath(build_dir)
        self.users = list(users)
        self.procs = {}  # name -> Popen, in start order
        self.env = {}

    # ---- paths ---------------------------------------------------------
    def path(self, *parts):
        return os.path.join(self.state, *parts)

    def binary(self, rel):
        p = os.path.join(self.build, rel)
        if not os.access(p, os.X_OK):
            raise ChainError(f"{p} missing: build first (scripts/build)")
        return p

    # ---- preparation ---------------------------------------------------
    def prepare(self):
        blocked = unreachable_dir(self.state)
        if blocked:
            mode = stat.S_IMODE(os.stat(blocked).st_mode)
            raise ChainError(
                f"state dir {self.state}: {blocked} is not searchable by other users "
                f"(mode {mode:04o}), so Dovecot's unprivileged processes (dovecot, dovenull, "
                f"mail) cannot read the users file or deliver mail there and every login "
                f"would fail; run chmod o+x {blocked}, or pick another DOVEGATE_STATE_DIR")
        for d in ("etc", "logs", "run", "mail", "dovecot-base"):
            os.makedirs(self.path(d), exist_ok=True)
        # Dovecot's unprivileged auth, login and mail processes must reach files here.
        for d in (self.state, self.path("etc"), self.path("run")):
            os.chmod(d, 0o755)
        # Mail processes may not run as root: Debian's "mail" system user owns the mail.
        mail = pwd.getpwnam("mail")
        os.chown(self.path("mail"), mail.pw_uid, mail.pw_gid)
        nb = 13 + 4 * (self.backend_count - 1)
        ports = free_ports(nb + len(EDGE_PORT_KEYS) + 1)
        extra_ports = ports[nb:]
        v = {
            "STATE_DIR": self.state,
            "BUILD_DIR": self.build,
            "SRC_DIR": SRC_DIR,
            "NGINX_ADDRESS": "127.0.0.1",
            "MAIL_SERVER_NAME": "localhost",
            "NGINX_IMAP_PORT": ports[0],
            "NGINX_POP3_PORT": ports[1],
            "NGINX_SUBMISSION_PORT": ports[2],
            "AUTH_HTTP_PORT": ports[3],
            "DOVECOT_IMAP_PORT": ports[4],
            "DOVECOT_PROXY_IMAP_PORT": ports[5],
            "DOVECOT_PROXY_POP3_PORT": ports[6],
            "DOVECOT_PROXY_SUBMISSION_PORT": ports[7],
            "SUBMISSION_RELAY_PORT": ports[8],
            "NGINX_SMTP_PORT": ports[9],  # MX: SMTP without AUTH (Auth-Method none)
            "RELAY_DOMAINS": "example.org",
            "IMAP_AUTH_METHODS": self.imap_auth,
            "POP3_AUTH_METHODS": self.pop3_auth,
            "MAIL_UID": mail.pw_uid,
            "MAIL_GID": mail.pw_gid,
            "AUTH_HTTP_SECRET_HEADER": SECRET_HEADER,
            "AUTH_HTTP_SECRET": secrets.token_urlsafe(24),
            "MASTER_USER": MASTER_USER,
            "MASTER_PASSWORD": secrets.token_urlsafe(24),
            "LOG_AUTH": self.path("logs", "dovegate-auth.log"),
            "LOG_DOVECOT": self.path("logs", "dovecot.log"),
            "LOG_NGINX": self.path("logs", "nginx.log"),
            "USERS_FILE": self.path("etc", "users"),
            "MASTER_USERS_FILE": self.path("etc", "master-users"),
            "MASTER_PASSWORD_FILE": self.path("etc", "master-password"),
            "HTTP_SECRET_FILE": self.path("etc", "http-secret"),
            "LOGIN_PLUGIN_DIR": os.path.join(self.build, "src", "plugin", ".libs"),
            "CREDENTIALS_MODE": self.credentials,
            "CREDENTIALS_PROTO_MODES": "".join(f"{p}_mode = {m}\n"
                                               for p, m in sorted(self.proto_credentials.items())),
            "AUTH_TIMEOUT": self.auth_timeout,
            "TICKET_KID": TICKET_KID,
            "TICKET_SIGNING_KEY": self.path("etc", "keys", f"{TICKET_KID}.key"),
            "TICKET_KEYRING": self.path("etc", "keys", "ring.pub"),
            "TICKET_AUDIENCE": TICKET_AUDIENCE,
            "DOVECOT_EXTRA_PRE": self.dovecot_pre,
            "DOVECOT_EXTRA_POST": self.dovecot_post,
            "LMTP_SOCKET": self.path("dovecot-base", "lmtp"),
            "AUTH_USERS_FILE": self.path("etc", "users"),
            "AUTH_PASSDB_EXTRA": "",
            "AUTH_PENALTY": "".join(f"{k} = {v}\n" for k, v in self.penalty.items()),
            "DOVECOT_AUTH_CLIENT_PORT": ports[10],
            # IMAP over TLS with client certificates (AUTHENTICATE EXTERNAL)
            "NGINX_IMAPS_PORT": ports[11],
            # dovegate-auth's Prometheus listener ([metrics] listen)
            "METRICS_PORT": ports[12],
            "TLS_CA": self.path("etc", "tls", "ca.crt"),
            "TLS_CERT": self.path("etc", "tls", "server.crt"),
            "TLS_KEY": self.path("etc", "tls", "server.key"),
            "TLS_CLIENT_CA": self.path("etc", "tls", "ca.crt"),
            "TLS_CLIENT_CERT": self.path("etc", "tls", "client.crt"),
            "TLS_CLIENT_KEY": self.path("etc", "tls", "client.key"),
            "TLS_CLIENT_USER": "carol",
        }
        if self.passdb != "file":
            self._dovecot_passdb(v)
        v["DOVECOT_CONF"] = self.path("etc", "dovecot.conf")
        self.backends = [v] + [self._backend_values(v, i, ports[13 + 4 * (i - 2):])
                               for i in range(2, self.backend_count + 1)]
        v["AUTH_BACKENDS"] = self._auth_backends()
        v["AUTH_HEALTH"] = "".join(f"{k} = {val}\n" for k, val in self.health.items())
        metrics = {"listen": "127.0.0.1:{port}", **self.metrics}
        v["AUTH_METRICS"] = "".join(f"{k} = {str(val).format(port=v['METRICS_PORT'])}\n"
                                    for k, val in metrics.items())
        v["AUTH_HTTP_URL"] = f"http://127.0.0.1:{v['AUTH_HTTP_PORT']}/auth"
        v["METRICS_URL"] = f"http://127.0.0.1:{v['METRICS_PORT']}/metrics"
        v["AUTH_CONF"] = self.path("etc", "dovegate-auth.conf")
        v["NGINX_PREFIX"] = self.path("run")
        v["STORE_PORT"] = extra_ports[-1] if self.cluster is not None else ""
        v["STORE_URL"] = f"redis://127.0.0.1:{v['STORE_PORT']}/0" if self.cluster is not None else ""
        v["LOG_STORE"] = self.path("logs", "store.log")
        v["AUTH_CLUSTER"] = self._auth_cluster(v)
        self.values = v
        self.edges = [v]
        if self.edge_count == 2:
            self.edges.append(self._edge_values(v, 2, extra_ports))
        for e in self.edges:
            for log in ("LOG_AUTH", "LOG_NGINX"):
                open(e[log], "a").close()
        open(v["LOG_DOVECOT"], "a").close()
        self._write_users()
        write_secret(v["HTTP_SECRET_FILE"], v["AUTH_HTTP_SECRET"])
        write_secret(v["MASTER_PASSWORD_FILE"], v["MASTER_PASSWORD"])
        self._make_ticket_keys()
        self._make_tls_certs()
        self._render_configs()

    def _backend_values(self, v, i, ports):
        """Dovecot instance i (>= 2): instance 1's values with its own
        ports, state directory (base_dir, mail), log and ticket audience."""
        d = self.path(f"dovecot-{i}")
        for sub in ("", "etc", "dovecot-base"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            os.chmod(os.path.join(d, sub), 0o755)
        os.makedirs(os.path.join(d, "mail"), exist_ok=True)
        os.chown(os.path.join(d, "mail"), v["MAIL_UID"], v["MAIL_GID"])
        return {**v, "STATE_DIR": d, "LOG_DOVECOT": self.path("logs", f"dovecot-{i}.log"),
                "DOVECOT_IMAP_PORT": ports[0], "DOVECOT_PROXY_IMAP_PORT": ports[1],
                "DOVECOT_PROXY_POP3_PORT": ports[2], "DOVECOT_PROXY_SUBMISSION_PORT": ports[3],
                "TICKET_AUDIENCE": f"{TICKET_AUDIENCE}-{i}",
                "LMTP_SOCKET": os.path.join(d, "dovecot-base", "lmtp"),
                "DOVECOT_EXTRA_PRE": self.dovecot_pre, "DOVECOT_EXTRA_POST": self.dovecot_post,
                "DOVECOT_CONF": os.path.join(d, "etc", "dovecot.conf")}

    def _edge_values(self, v, n, ports):
        """Edge n (2): edge 1's values with its own nginx and dovegate-auth
        ports, logs, configs (STATE/edgeN/etc) and nginx prefix (pid, temp
        files: STATE/edgeN/run)."""
        d = self.path(f"edge{n}")
        for sub in ("", "etc", "run"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
            os.chmod(os.path.join(d, sub), 0o755)
        e = {**v, **dict(zip(EDGE_PORT_KEYS, ports)), "STATE_DIR": d,
             "LOG_AUTH": self.path("logs", f"dovegate-auth-{n}.log"),
             "LOG_NGINX": self.path("logs", f"nginx-{n}.log"),
             "AUTH_CONF": os.path.join(d, "etc", "dovegate-auth.conf"),
             "NGINX_PREFIX": os.path.join(d, "run")}
        e["AUTH_HTTP_URL"] = f"http://127.0.0.1:{e['AUTH_HTTP_PORT']}/auth"
        e["METRICS_URL"] = f"http://127.0.0.1:{e['METRICS_PORT']}/metrics"
        metrics = {"listen": "127.0.0.1:{port}", **self.metrics}
        e["AUTH_METRICS"] = "".join(f"{k} = {str(val).format(port=e['METRICS_PORT'])}\n"
                                    for k, val in metrics.items())
        e["AUTH_BACKENDS"] = self._auth_backends(self.edge2_backend_ports)
        return e

    def _auth_cluster(self, v):
        """dovegate-auth's [cluster] section (empty without a store)."""
        if self.cluster is None:
            return ""
        keys = {"store": v["STORE_URL"], **self.cluster}
        return "[cluster]\n" + "".join(f"{k} = {str(val).format(port=v['STORE_PORT'])}\n"
                                        for k, val in keys.items())

    def backend_address(self, i, proto, edge=1):
        """"127.0.0.1:PORT" of Dovecot i's proto backend as edge `edge`'s
        dovegate-auth has it (edge2_backend_ports may change edge 2's)."""
        port = dict(BACKEND_PORTS)[proto]
        if edge == 2 and proto in self.edge2_backend_ports.get(i, {}):
            return f"127.0.0.1:{self.edge2_backend_ports[i][proto]}"
        return f"127.0.0.1:{self.backends[i - 1][port]}"

    def _auth_backends(self, override=None):
        """dovegate-auth's pools: the classic one-line form for one Dovecot,
        a [backend NAME] section per Dovecot and protocol for more.
        override: {backend number: {proto: port}} (edge2_backend_ports)."""
        override = override or {}

        def port(i, b, p, k):
            return override.get(i, {}).get(p, b[k])
        if len(self.backends) == 1:
            b = self.backends[0]
            return "[backend]\n" + "".join(f"{p} = 127.0.0.1:{port(1, b, p, k)}\n" for p, k in BACKEND_PORTS)
        return "\n".join(f"[backend dovecot-{i}-{p}]\nprotocol = {p}\naddress = 127.0.0.1:{port(i, b, p, k)}\n"
                         f"audience = {b['TICKET_AUDIENCE']}\n"
                         for i, b in enumerate(self.backends, 1) for p, k in BACKEND_PORTS)

    def _dovecot_passdb(self, v):
        """dovegate-auth asks this Dovecot's auth service (see Chain's passdb)."""
        # the listener's name decides its type: "auth-client" is the plain
        # SASL one (a "-login" suffix would hold replies for a master REQUEST)
        v["DOVECOT_EXTRA_POST"] += f"""
service auth {{
  unix_listener auth-client {{
    mode = 0666
  }}
  inet_listener auth-client {{
    {dovecot_conf("address", "listen")} = 127.0.0.1
    port = {v['DOVECOT_AUTH_CLIENT_PORT']}
  }}
}}
"""
        socket_spec = {"dovecot-unix": f"unix:{self.path('dovecot-base', 'auth-client')}",
                       "dovecot-tcp": f"tcp:127.0.0.1:{v['DOVECOT_AUTH_CLIENT_PORT']}"}[self.passdb]
        v["AUTH_USERS_FILE"] = self.path("etc", "users-local")
        open(v["AUTH_USERS_FILE"], "a").close()
        v["AUTH_PASSDB_EXTRA"] = f"[passdb dovecot]\ndriver = dovecot\nsocket = {socket_spec}\ntimeout = 20\n"

    def hash_password(self, password, scheme):
        """Hash with our own CLI; Dovecot verifies the same file for direct logins."""
        out = subprocess.run([self.binary("src/tools/dovegate"), "pw", "-s", scheme, "-p", password],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def _write_users(self):
        v = self.values
        with open(v["USERS_FILE"], "w") as f:
            for user, password, scheme in self.users:
                f.write(f"{user}:{self.hash_password(password, scheme)}::::::\n")
        master_hash = self.hash_password(v["MASTER_PASSWORD"], "SHA512-CRYPT")
        with open(v["MASTER_USERS_FILE"], "w") as f:
            f.write(f"{MASTER_USER}:{master_hash}\n")
        # The auth process runs as Dovecot's unprivileged user and reads both.
        os.chmod(v["USERS_FILE"], 0o644)
        os.chmod(v["MASTER_USERS_FILE"], 0o644)

    def _make_ticket_keys(self):
        """Signing key for dovegate-auth; its public half is Dovecot's key ring."""
        v = self.values
        keys = os.path.dirname(v["TICKET_SIGNING_KEY"])
        os.makedirs(keys, exist_ok=True)
        os.chmod(keys, 0o755)
        if not os.path.exists(v["TICKET_SIGNING_KEY"]):
            subprocess.run([self.binary("src/tools/dovegate"), "keygen", "--kid", TICKET_KID, "--dir", keys],
                           check=True, capture_output=True, text=True)
        with open(os.path.join(keys, f"{TICKET_KID}.pub")) as src, open(v["TICKET_KEYRING"], "w") as ring:
            ring.write(src.read())
        os.chmod(v["TICKET_KEYRING"], 0o644)

    def _make_tls_certs(self):
        """A test CA, nginx's server certificate and a client certificate whose
        CN is TLS_CLIENT_USER (for AUTHENTICATE EXTERNAL), made with openssl."""
        v = self.values
        d = os.path.dirname(v["TLS_CA"])
        os.makedirs(d, exist_ok=True)
        if os.path.exists(v["TLS_CLIENT_CERT"]):
            return

        def openssl(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)

        def key(path):
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)

        def signed(name, subject, ext):
            key(f"{d}/{name}.key")
            openssl("req", "-new", "-key", f"{d}/{name}.key", "-subj", subject, "-out", f"{d}/{name}.csr")
            with open(f"{d}/{name}.ext", "w") as f:
                f.write(ext)
            openssl("x509", "-req", "-in", f"{d}/{name}.csr", "-CA", v["TLS_CA"], "-CAkey", f"{d}/ca.key",
                    "-CAcreateserial", "-days", "30", "-extfile", f"{d}/{name}.ext", "-out", f"{d}/{name}.crt")

        # Extensions strict verifiers require (Python 3.13's default
        # VERIFY_X509_STRICT: a CA's key usage, a leaf's key identifiers).
        key(f"{d}/ca.key")
        openssl("req", "-x509", "-new", "-key", f"{d}/ca.key", "-subj", "/O=dovegate chain/CN=chain test CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-days", "30", "-out", v["TLS_CA"])
        leaf = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        signed("server", "/CN=localhost", leaf + "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
               "extendedKeyUsage=serverAuth\n")
        signed("client", f"/O=dovegate chain/CN={v['TLS_CLIENT_USER']}",
               leaf + "extendedKeyUsage=clientAuth\n")

    def _render_configs(self):
        for e in self.edges:
            etc = os.path.join(e["STATE_DIR"], "etc")
            render(os.path.join(CONF_DIR, "nginx", "dovegate-mail.conf"), e, os.path.join(etc, "nginx-mail.conf"))
            render(os.path.join(CHAIN_DIR, "nginx.conf.in"), e, os.path.join(etc, "nginx.conf"))
        for b in self.backends:
            etc = os.path.dirname(b["DOVECOT_CONF"])
            line = dovecot_line()
            render(os.path.join(CONF_DIR, "dovecot", f"dovegate-{line}.conf"), b,
                   os.path.join(etc, "dovecot-dovegate.conf"))
            render(os.path.join(CHAIN_DIR, f"dovecot-{line}.conf.in"), b, b["DOVECOT_CONF"])
            open(b["LOG_DOVECOT"], "a").close()
        for e in self.edges:
            render(os.path.join(CHAIN_DIR, "dovegate-auth.conf.in"), e, e["AUTH_CONF"])

    # ---- lifecycle -----------------------------------------------------
    def _spawn(self, name, argv, log=None):
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                    start_new_session=True)
        finally:
            if log:
                out.close()
        self.procs[name] = proc
        return proc

    def start(self, timeout=30, ready_check=False):
        """Start everything and write endpoints.env. ready_check: first make
        sure the demo user logs in through nginx (scripts/run-chain: "ready"
        means a login works)."""
        self.prepare()
        v = self.values
        try:
            if self.cluster is not None:
                self.start_store(timeout)
            # Dovecot submission relays; the relay delivers through Dovecot's LMTP.
            relay = self._spawn("relay", ["/usr/bin/python3", os.path.join(CHAIN_DIR, "relay.py"),
                                          "--listen", f"127.0.0.1:{v['SUBMISSION_RELAY_PORT']}",
                                          "--lmtp", v["LMTP_SOCKET"]],
                                log=self.path("logs", "relay.log"))
            for i in range(1, len(self.backends) + 1):
                self.start_backend(i, timeout, wait_healthy=False)
            # after Dovecot: dovegate-auth's first health probes find it up
            auths = []
            for n, e in enumerate(self.edges, 1):
                auths.append(self._spawn(self.edge_proc_name("dovegate-auth", n),
                                         [self.binary("src/shim/dovegate-auth"), "-c", e["AUTH_CONF"]],
                                         log=e["LOG_AUTH"]))
            wait_for_greeting(v["SUBMISSION_RELAY_PORT"], b"220", timeout, relay, "relay")
            for n, (e, auth) in enumerate(zip(self.edges, auths), 1):
                what = self.edge_proc_name("dovegate-auth", n)
                wait_for_port(e["AUTH_HTTP_PORT"], timeout, auth, what)
            self.wait_backends_up(timeout)
            for n, (e, auth) in enumerate(zip(self.edges, auths), 1):
                what = self.edge_proc_name("dovegate-auth", n)
                wait_for_port(e["METRICS_PORT"], timeout, auth, f"{what} metrics")
            for n, e in enumerate(self.edges, 1):
                name = self.edge_proc_name("nginx", n)
                nginx = self._spawn(name, ["nginx", "-p", e["NGINX_PREFIX"],
                                           "-c", os.path.join(e["STATE_DIR"], "etc", "nginx.conf"),
                                           "-e", e["LOG_NGINX"], "-g", "daemon off;"],
                                    log=self.path("logs", f"{name}-stderr.log"))
                wait_for_greeting(e["NGINX_IMAP_PORT"], b"* OK", timeout, nginx, name)
                wait_for_greeting(e["NGINX_POP3_PORT"], b"+OK", timeout, nginx, name)
                wait_for_greeting(e["NGINX_SUBMISSION_PORT"], b"220", timeout, nginx, name)
                wait_for_greeting(e["NGINX_SMTP_PORT"], b"220", timeout, nginx, name)
                wait_for_port(e["NGINX_IMAPS_PORT"], timeout, nginx, name)
            if ready_check:
                for n in range(1, len(self.edges) + 1):
                    self.check_demo_login(timeout, edge=n)
        except Exception:
            self.stop()
            raise
        self._write_endpoints()
        return self

    def check_demo_login(self, timeout=30, edge=1):
        """The demo user logs in and out through edge `edge`'s nginx IMAP
        port (retried while dovegate-auth's health checks settle), else
        ChainError."""
        import imaplib
        user, password = self.users[0][0], self.users[0][1]
        deadline = time.monotonic() + timeout
        while True:
            imap = None
            try:
                imap = imaplib.IMAP4("127.0.0.1", int(self.edges[edge - 1]["NGINX_IMAP_PORT"]), timeout=10)
                imap.login(user, password)
                imap.logout()
                return
            except (imaplib.IMAP4.error, OSError, EOFError) as e:
                last = e
                if imap is not None:
                    try:
                        imap.shutdown()
                    except OSError:
                        pass
            if time.monotonic() >= deadline:
                raise ChainError(f"everything started, but {user} cannot log in through edge {edge}'s nginx "
                                 f"({last}); see the logs below")
            time.sleep(0.5)

    # ---- edges ------------------------------------------------------------
    @staticmethod
    def edge_proc_name(daemon, n):
        """procs' name of edge n's daemon ("nginx", "dovegate-auth"): edge 1's
        keep the classic names, edge 2's are "nginx-2", "dovegate-auth-2"."""
        return daemon if n == 1 else f"{daemon}-{n}"

    # ---- the cluster store -----------------------------------------------
    def store_argv(self):
        server = store_binary(STORE_SERVERS)
        if server is None:
            raise ChainError("no valkey-server or redis-server: the cluster store needs one "
                             "(scripts/deps installs it)")
        return [server, "--bind", "127.0.0.1", "--port", str(self.values["STORE_PORT"]),
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--dir", self.path("store")]

    def start_store(self, timeout=30):
        """Start the store server (again: same port, empty) and wait until it
        answers PING. endpoints.env (STORE_PID, PIDS) is rewritten if written."""
        if self.cluster is None:
            raise ChainError("this chain has no store (Chain(cluster=...) or edges=2)")
        proc = self.procs.get("store")
        if proc is not None and proc.poll() is None:
            raise ChainError(f"the store is running (pid {proc.pid})")
        os.makedirs(self.path("store"), exist_ok=True)
        proc = self._spawn("store", self.store_argv(), log=self.values["LOG_STORE"])
        wait_for_store(self.values["STORE_PORT"], timeout, proc)
        if self.env:
            self._write_endpoints()
        return proc

    def stop_store(self, kill=False, timeout=15):
        """Stop the store server by pid: SIGTERM (kill=True: SIGKILL, like a
        crash) and wait for it. start_store() brings it back on its port."""
        proc = self.procs["store"]
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def pause_store(self):
        """SIGSTOP the store: it keeps its connections but answers nothing
        (dovegate-auth's commands time out). resume_store() undoes it."""
        os.kill(self.procs["store"].pid, signal.SIGSTOP)

    def resume_store(self):
        os.kill(self.procs["store"].pid, signal.SIGCONT)

    def store(self, *command, timeout=5):
        """One command to the store, e.g. chain.store("GET", "dovegate:a:alice");
        its reply (str, int, None or a list; StoreError for an error reply)."""
        return store_command(self.values["STORE_PORT"], *command, timeout=timeout)

    def store_info(self, section="commandstats"):
        """INFO SECTION of the store as a dict (see store_info())."""
        return store_info(self.values["STORE_PORT"], section)

    # ---- Dovecot instances (backends) ------------------------------------
    def backend_proc_name(self, i):
        return "dovecot" if i == 1 else f"dovecot-{i}"

    def start_backend(self, i, timeout=30, wait_healthy=True):
        """Start Dovecot instance i (1-based) and wait for its greeting; then,
        if dovegate-auth runs, until its health checks count it up."""
        b = self.backends[i - 1]
        suffix = "" if i == 1 else f"-{i}"
        proc = self._spawn(self.backend_proc_name(i),
                           [os.path.join(CHAIN_DIR, "run-dovecot.sh"), b["DOVECOT_CONF"], b["LOGIN_PLUGIN_DIR"]],
                           log=self.path("logs", f"dovecot{suffix}-stderr.log"))
        wait_for_greeting(b["DOVECOT_IMAP_PORT"], b"* OK", timeout, proc, f"dovecot {i}")
        if wait_healthy:
            self.wait_backends_up(timeout)
        return proc

    def stop_backend(self, i, timeout=15):
        """Stop Dovecot instance i by its master's pid (SIGTERM; SIGKILL
        for the process group if it lingers)."""
        proc = self.procs[self.backend_proc_name(i)]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def backend_states(self, edge=1):
        """{(proto, "ip:port"): "up"|"down"}: the last state edge `edge`'s
        dovegate-auth logged for each backend it checks."""
        states = {}
        with open(self.edges[edge - 1]["LOG_AUTH"], errors="replace") as f:
            for line in f:
                m = BACKEND_STATE.search(line)
                if m:
                    states[(m.group(1), m.group(2))] = m.group(3)
        return states

    def wait_backends_up(self, timeout=30, edges=None):
        """Until each edge's dovegate-auth's last word on every pool backend
        is "up" (no-op with health checks off). edges: edge numbers (default
        all); edge 2's backends moved by edge2_backend_ports are skipped."""
        if str(self.health.get("enabled", "yes")) == "no":
            return
        deadline = time.monotonic() + timeout
        for n in edges or range(1, len(self.edges) + 1):
            want = {(p, f"127.0.0.1:{b[k]}") for i, b in enumerate(self.backends, 1)
                    for p, k in BACKEND_PORTS
                    if not (n == 2 and p in self.edge2_backend_ports.get(i, {}))}
            while True:
                states = self.backend_states(n)
                if all(states.get(w) == "up" for w in want):
                    break
                if time.monotonic() >= deadline:
                    raise ChainError(f"backends not up on edge {n} after {timeout}s: {states}")
                time.sleep(0.1)

    def _write_endpoints(self):
        v = self.values
        keys = ["NGINX_IMAP_PORT", "NGINX_POP3_PORT", "NGINX_SUBMISSION_PORT", "NGINX_SMTP_PORT",
                "RELAY_DOMAINS", "NGINX_IMAPS_PORT", "TLS_CA", "TLS_CLIENT_CERT", "TLS_CLIENT_KEY",
                "TLS_CLIENT_USER", "AUTH_HTTP_URL", "AUTH_HTTP_PORT", "METRICS_URL", "METRICS_PORT",
                "AUTH_HTTP_SECRET_HEADER", "AUTH_HTTP_SECRET", "DOVECOT_IMAP_PORT",
                "DOVECOT_PROXY_IMAP_PORT", "DOVECOT_PROXY_POP3_PORT", "DOVECOT_PROXY_SUBMISSION_PORT",
                "LOG_AUTH", "LOG_DOVECOT", "LOG_NGINX", "MASTER_USER", "CREDENTIALS_MODE",
                "TICKET_AUDIENCE", "AUTH_CONF"]
        self.env = {k: str(v[k]) for k in keys}
        self.env["EDGES"] = str(len(self.edges))
        for n, e in enumerate(self.edges[1:], 2):
            for key in EDGE_ENV_KEYS:
                self.env[f"EDGE{n}_{key}"] = str(e[key])
        if self.cluster is not None:
            store = self.procs.get("store")
            self.env.update(STORE_URL=v["STORE_URL"], STORE_PORT=str(v["STORE_PORT"]),
                            STORE_PID=str(store.pid if store else ""), LOG_STORE=v["LOG_STORE"],
                            STORE_SERVER=self.store_argv()[0],
                            STORE_CLI=store_binary(STORE_CLIS) or "")
        self.env["DEMO_USER"], self.env["DEMO_PASSWORD"] = self.users[0][0], self.users[0][1]
        self.env["TICKET_PUBLIC_KEY"] = v["TICKET_KEYRING"]
        self.env["STATE_DIR"] = self.state
        for i, b in enumerate(self.backends[1:], 2):
            for key in ("LOG_DOVECOT", "TICKET_AUDIENCE", "DOVECOT_IMAP_PORT", "DOVECOT_PROXY_IMAP_PORT",
                        "DOVECOT_PROXY_POP3_PORT", "DOVECOT_PROXY_SUBMISSION_PORT"):
                self.env[f"{key}_{i}"] = str(b[key])
        self.env["PIDS"] = " ".join(f"{n}:{p.pid}" for n, p in self.procs.items() if p is not None)
        path = self.path("endpoints.env")
        with open(path + ".tmp", "w") as f:
            for k, val in self.env.items():
                f.write(f"{k}={shell_quote(val)}\n")
        os.replace(path + ".tmp", path)

    def alive(self):
        return {n: p.poll() is None for n, p in self.procs.items() if p is not None}

    def stop(self, timeout=10):
        """SIGTERM each daemon (reverse start order: the store last) by pid,
        SIGKILL stragglers."""
        procs = [(n, p) for n, p in reversed(list(self.procs.items())) if p is not None]
        for name, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                if name == "store":
                    proc.send_signal(signal.SIGCONT)  # after pause_store()
        deadline = time.monotonic() + timeout
        for name, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        try:
            os.unlink(self.path("endpoints.env"))
        except FileNotFoundError:
            pass

    def log_tails(self, lines=40):
        v = self.values
        out = []
        edges = self.edges or [v]
        logs = [p for e in edges for p in (e["LOG_AUTH"], e["LOG_NGINX"])]
        logs += [b["LOG_DOVECOT"] for b in getattr(self, "backends", [v])]
        if self.cluster is not None:
            logs.append(v["LOG_STORE"])
        for path in logs:
            out.append(f"----- {path} (last {lines} lines)\n{tail(path, lines)}")
        stderr_logs = [f"dovecot-{i}-stderr.log" for i in range(2, self.backend_count + 1)]
        stderr_logs += [f"nginx-{n}-stderr.log" for n in range(2, self.edge_count + 1)]
        for extra in ["dovecot-stderr.log", "nginx-stderr.log", "relay.log"] + stderr_logs:
            p = self.path("logs", extra)
            if os.path.exists(p) and os.path.getsize(p):
                out.append(f"----- {p}\n{tail(p, lines)}")
        return "\n".join(out)


def shell_quote(s):
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]*", s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


def backends_banner(chain):
    """Lines for Dovecot instances 2.. (scripts/run-chain --backends N)."""
    return "".join(f"  Dovecot {i}:             direct IMAP 127.0.0.1:{b['DOVECOT_IMAP_PORT']}, "
                   f"log {b['LOG_DOVECOT']}\n" for i, b in enumerate(chain.backends[1:], 2))


def edges_banner(chain):
    """Lines for edge 2 and the store (scripts/run-chain --edges 2)."""
    e = chain.env
    text = ""
    for n in range(2, len(chain.edges) + 1):
        p = f"EDGE{n}_"
        shared = "users and store" if "STORE_URL" in e else "users; no store"
        text += (f"\n  Edge {n} (own nginx + dovegate-auth; same Dovecots, {shared}):\n"
                 f"    IMAP via nginx:        127.0.0.1:{e[p + 'NGINX_IMAP_PORT']}\n"
                 f"    POP3 via nginx:        127.0.0.1:{e[p + 'NGINX_POP3_PORT']}\n"
                 f"    submission via nginx:  127.0.0.1:{e[p + 'NGINX_SUBMISSION_PORT']}\n"
                 f"    IMAPS via nginx:       127.0.0.1:{e[p + 'NGINX_IMAPS_PORT']}\n"
                 f"    dovegate-auth:         {e[p + 'AUTH_HTTP_URL']}\n"
                 f"    metrics (Prometheus):  {e[p + 'METRICS_URL']}\n")
    if "STORE_URL" in e:
        cli = f"{os.path.basename(e['STORE_CLI'])} -p {e['STORE_PORT']}" if e["STORE_CLI"] else ""
        text += (f"\n  Cluster store:         {e['STORE_URL']} ({os.path.basename(e['STORE_SERVER'])}, "
                 f"pid {e['STORE_PID']}){', try: ' + cli if cli else ''}\n")
    return text


def edges_logs_banner(chain):
    e = chain.env
    text = "".join(f"  edge {n} dovegate-auth: {e[f'EDGE{n}_LOG_AUTH']}\n"
                   f"  edge {n} nginx:         {e[f'EDGE{n}_LOG_NGINX']}\n"
                   for n in range(2, len(chain.edges) + 1))
    if "LOG_STORE" in e:
        text += f"  store:         {e['LOG_STORE']}\n"
    return text


def print_banner(chain):
    e, v = chain.env, chain.values
    user, password = e["DEMO_USER"], e["DEMO_PASSWORD"]
    print(f"""
dovegate chain is up (state: {chain.state})

  IMAP via nginx:        127.0.0.1:{e['NGINX_IMAP_PORT']}
  POP3 via nginx:        127.0.0.1:{e['NGINX_POP3_PORT']}
  submission via nginx:  127.0.0.1:{e['NGINX_SUBMISSION_PORT']}
  IMAPS via nginx:       127.0.0.1:{e['NGINX_IMAPS_PORT']} (client certificate: EXTERNAL as {e['TLS_CLIENT_USER']})
  MX via nginx:          127.0.0.1:{e['NGINX_SMTP_PORT']} (no AUTH; relays to {e['RELAY_DOMAINS']})
  dovegate-auth:         {e['AUTH_HTTP_URL']}
  metrics (Prometheus):  {e['METRICS_URL']}
  Dovecot direct IMAP:   127.0.0.1:{e['DOVECOT_IMAP_PORT']} (no PROXY header)
{backends_banner(chain)}{edges_banner(chain)}
Try:
  curl -v 'imap://{user}:{password}@127.0.0.1:{e['NGINX_IMAP_PORT']}/INBOX'
  curl -v 'pop3://{user}:{password}@127.0.0.1:{e['NGINX_POP3_PORT']}/'
Demo users: {', '.join(f'{u}/{p} ({s})' for u, p, s in chain.users)}

Logs:
  dovegate-auth: {e['LOG_AUTH']}
  nginx:         {e['LOG_NGINX']}
  Dovecot:       {e['LOG_DOVECOT']}
{edges_logs_banner(chain)}Endpoints for scripts: {chain.path('endpoints.env')}
Ctrl-C stops everything.
""", flush=True)


def deliver_demo_mail(chain):
    """Put one welcome message into the demo user's INBOX through Dovecot's
    LMTP, on every Dovecot (the user's backend is whichever the pool picks)."""
    import smtplib
    user = chain.users[0][0]
    msg = (f"From: postmaster@localhost\r\nTo: {user}@localhost\r\n"
           f"Subject: Welcome to the dovegate demo\r\n\r\n"
           f"This message was delivered by the local chain at start-up.\r\n")
    for b in chain.backends:
        with smtplib.LMTP(b["LMTP_SOCKET"]) as lmtp:
            lmtp.sendmail("postmaster@localhost", [user], msg)


def unreachable_dir(path):
    """The first directory above `path` that other users cannot search (no
    o+x), or None. Dovecot's unprivileged processes (dovecot, dovenull, the
    mail user) must reach the state dir: a 0700 one (mktemp -d, a home
    directory) above it makes every login fail."""
    d = os.path.dirname(os.path.abspath(path))
    while True:
        if os.path.exists(d) and not os.stat(d).st_mode & 0o001:
            return d
        if d == "/":
            return None
        d = os.path.dirname(d)


def default_state_dir(build_dir):
    """BUILD_DIR/state, unless Dovecot's unprivileged processes cannot reach it
    (a checkout under a 0700 home directory): then /tmp/dovegate-chain."""
    state = os.path.join(build_dir, "state")
    return "/tmp/dovegate-chain" if unreachable_dir(state) else state


def cmd_run(args):
    state = args.state_dir or os.environ.get("DOVEGATE_STATE_DIR") or default_state_dir(args.build_dir)
    backends = args.backends if args.backends is not None else (2 if args.edges == 2 else 1)
    chain = Chain(state, args.build_dir, backends=backends, edges=args.edges,
                  cluster=False if args.no_store else None)
    stopping = {"flag": False}

    def on_signal(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        chain.start(ready_check=True)
    except ChainError as e:
        print(f"chain: {e}", file=sys.stderr)
        print(chain.log_tails(20) if hasattr(chain, "values") else "", file=sys.stderr)
        return 1
    try:
        deliver_demo_mail(chain)
    except Exception as e:  # the chain is still useful without the welcome mail
        print(f"chain: demo mail not delivered: {e}", file=sys.stderr)
    print_banner(chain)
    while not stopping["flag"]:
        dead = [n for n, up in chain.alive().items() if not up]
        if dead:
            print(f"chain: {', '.join(dead)} exited; stopping", file=sys.stderr)
            print(chain.log_tails(20), file=sys.stderr)
            chain.stop()
            return 1
        time.sleep(0.5)
    print("chain: stopping", flush=True)
    chain.stop()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["run"])
    ap.add_argument("--build-dir", default=os.path.join(SRC_DIR, "build"))
    ap.add_argument("--state-dir", default=None, help="default: $DOVEGATE_STATE_DIR or BUILD_DIR/state")
    ap.add_argument("--backends", type=int, default=None,
                    help="Dovecot instances behind dovegate-auth (default 1; 2 with --edges 2)")
    ap.add_argument("--edges", type=int, choices=[1, 2], default=1,
                    help="nginx + dovegate-auth pairs (2: a second edge and the cluster store)")
    ap.add_argument("--no-store", action="store_true",
                    help="with --edges 2: no cluster store, the edges share nothing")
    args = ap.parse_args()
    return cmd_run(args)


if __name__ == "__main__":
    sys.exit(main())
