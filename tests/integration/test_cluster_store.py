"""dovegate-auth's and dovegate cluster's connection to the cluster store, against a real
redis-server / valkey-server: how it authenticates (requirepass, an ACL
user), a unix socket, TLS (Debian 13: hiredis with hiredis_ssl), what it
logs when the store refuses it, and what `-t` refuses before a start.
One dovegate-auth of its own per test (passthrough mode, no nginx: what is
checked here is the store side; tests/integration/test_cluster.py runs the
whole chain with two edges)."""
import os
import re
import signal
import socket
import subprocess
import time
import types

import pytest

from chain import STORE_SERVERS, _resp_read, free_ports, store_binary, store_command, \
    wait_for_port, write_secret
from conftest import BUILD_DIR
from helpers import auth_http

AUTH = os.path.join(BUILD_DIR, "src/shim/dovegate-auth")
SECRET = "store-test-secret"

CONFIG = """[server]
listen = 127.0.0.1:{port}
secret_file = {dir}/secret
[passdb]
path = {dir}/users
[backend mx1]
protocol = imap
address = 127.0.0.1:{backend}
audience = mx1
[credentials]
mode = passthrough
[health]
enabled = no
[cluster]
{cluster}"""


def ask(where, *commands, timeout=5):
    """Sends commands (tuples) on one connection to the store at where (a
    TCP port, or a unix socket path) and returns the last reply."""
    req = b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a)
                                                   for a in (str(x).encode() for x in c))
                   for c in commands)
    if isinstance(where, int):
        s = socket.create_connection(("127.0.0.1", where), timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(where)
    with s, s.makefile("rb") as f:
        s.sendall(req)
        replies = [_resp_read(f) for _ in commands]
    return replies[-1]


def wait_for_key(where, key, value, *login, timeout=5):
    """The outcome's EVALSHA is not waited for by the login: poll its effect."""
    deadline = time.monotonic() + timeout
    while (got := ask(where, *login, ("GET", key))) != value:
        assert time.monotonic() < deadline, f"{key} is {got!r}, not {value!r}"
        time.sleep(0.05)


# what the README gives dovegate-auth's ACL user, and the CLI's on top
DAEMON_ACL = ("~dovegate:*", "+mget", "+evalsha", "+script|load", "+smembers", "+ping",
              "+select", "+get", "+set", "+del", "+expire", "+incr", "+exists")
CLI_ACL = DAEMON_ACL + ("+ttl", "+scan", "+sadd", "+srem", "+info")


def acl_store(tmp, user, password, rules):
    """A store whose only user is `user` with those ACL rules (the default
    user is off)."""
    return Store(tmp, "--user", "default", "off", "--user", user, "on", f">{password}", *rules)


def server():
    path = store_binary(STORE_SERVERS)
    assert path, "no valkey-server or redis-server (scripts/deps installs one)"
    return path


class Store:
    """A store server of the test's own, on loopback, stopped by pid."""

    def __init__(self, tmp, *args, port=None):
        self.port = port or free_ports(1)[0]
        self.dir = os.path.join(tmp, "store")
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(tmp, "store.log")
        self.proc = subprocess.Popen(
            [server(), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir, *args],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, 10, proc=self.proc, what="store")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


class Auth:
    """dovegate-auth with [cluster] `cluster` (a str of key = value lines)."""

    def __init__(self, tmp, cluster, start=True):
        self.dir = tmp
        self.port, self.backend = free_ports(2)
        write_secret(f"{tmp}/secret", SECRET)
        with open(f"{tmp}/users", "w") as f:
            f.write("sam:{PLAIN}sam-pass::::::\n")
        self.conf = f"{tmp}/auth.conf"
        self.write(cluster)
        self.log_path = f"{tmp}/auth.log"
        self.proc = None
        if start:
            self.proc = subprocess.Popen([AUTH, "-c", self.conf], stdout=open(self.log_path, "wb"),
                                         stderr=subprocess.STDOUT)
            wait_for_port(self.port, 10, proc=self.proc, what="dovegate-auth")

    def write(self, cluster):
        with open(self.conf, "w") as f:
            f.write(CONFIG.format(port=self.port, dir=self.dir, backend=self.backend,
                                  cluster=cluster))

    def test_config(self):
        return subprocess.run([AUTH, "-t", "-c", self.conf], capture_output=True, text=True)

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, count=1, timeout=10):
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.log())) < count:
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.log()}"
            time.sleep(0.05)

    def login(self, password="sam-pass", ip="192.0.2.8"):
        target = types.SimpleNamespace(env={"AUTH_HTTP_URL": f"http://127.0.0.1:{self.port}/auth"})
        return auth_http(target, {"Auth-Method": "plain", "Auth-User": "sam",
                                  "Auth-Pass": password, "Auth-Protocol": "imap",
                                  "Auth-Login-Attempt": "1", "Client-IP": ip,
                                  "X-Dovegate-Secret": SECRET})

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)


@pytest.fixture
def cleanup():
    things = []
    yield things
    for t in reversed(things):
        t.stop()


def test_acl_user_and_a_refused_password(tmp_path, cleanup):
    """An ACL user with a password file: connected and used. A wrong
    password: one state=down line with the store's own reason (never the
    password), logins still answered on local state; the right password
    and a SIGHUP: state=up, and the store is used again."""
    d = str(tmp_path)
    store = acl_store(d, "dovegate", "right-store-pass", DAEMON_ACL)
    cleanup.append(store)
    write_secret(f"{d}/store-password", "wrong-store-pass")
    auth = Auth(d, f"store = redis://127.0.0.1:{store.port}/0\nuser = dovegate\n"
                   f"password_file = {d}/store-password\nretry_interval = 200ms\n")
    cleanup.append(auth)
    auth.wait_for(r"cluster store=redis://127\.0\.0\.1:%d/0 state=down error=\"WRONGPASS" % store.port)
    assert auth.login().get("auth-status") == "OK"
    auth.wait_for(r"decision .*user=sam .*result=ok .*cluster=local")
    time.sleep(0.5)  # a few retries, all refused: still one line
    assert auth.log().count("state=down") == 1, auth.log()
    assert "wrong-store-pass" not in auth.log()

    write_secret(f"{d}/store-password", "right-store-pass")
    os.kill(auth.proc.pid, signal.SIGHUP)
    auth.wait_for(r"state=up")
    assert auth.login().get("auth-status") == "OK"
    auth.wait_for(r"decision .*user=sam .*result=ok .*cluster=shared assignment=created")
    wait_for_key(store.port, "dovegate:a:sam", "mx1", ("AUTH", "dovegate", "right-store-pass"))


def test_a_command_the_acl_refuses_is_logged_once(tmp_path, cleanup):
    """An ACL without a command the scripts use (SET): the store answers
    every outcome with an error; dovegate-auth says so once, naming the
    command, and every login is still answered."""
    d = str(tmp_path)
    store = acl_store(d, "dovegate", "pw", tuple(r for r in DAEMON_ACL if r != "+set"))
    cleanup.append(store)
    write_secret(f"{d}/store-password", "pw")
    auth = Auth(d, f"store = redis://127.0.0.1:{store.port}\nuser = dovegate\n"
                   "password_file = store-password\n")
    cleanup.append(auth)
    auth.wait_for(r"state=up")
    for _ in range(3):
        assert auth.login().get("auth-status") == "OK"
    auth.wait_for(r"command=EVALSHA error=\".*\" \(the store refused it: check its ACL")
    time.sleep(0.3)
    assert auth.log().count("the store refused it") == 1, auth.log()


def test_unix_socket_and_requirepass(tmp_path, cleanup):
    """unix:/PATH?db=N with requirepass: the keys land in that database."""
    d = str(tmp_path)
    sock = f"{d}/store.sock"
    store = Store(d, "--unixsocket", sock, "--unixsocketperm", "700",
                  "--requirepass", "socket-pass")
    cleanup.append(store)
    write_secret(f"{d}/store-password", "socket-pass")
    auth = Auth(d, f"store = unix:{sock}?db=3\npassword_file = {d}/store-password\n")
    cleanup.append(auth)
    auth.wait_for(r'cluster store="unix:%s\?db=3" state=up' % re.escape(sock))
    assert auth.login().get("auth-status") == "OK"
    auth.wait_for(r"cluster=shared assignment=created")
    wait_for_key(sock, "dovegate:a:sam", "mx1", ("AUTH", "socket-pass"), ("SELECT", 3))
    assert ask(sock, ("AUTH", "socket-pass"), ("GET", "dovegate:a:sam")) is None  # not db 0


def test_reload_keeps_the_connection(tmp_path, cleanup):
    """SIGHUP with the same store settings: no reconnect (one state=up),
    timeouts changed take effect without one."""
    d = str(tmp_path)
    store = Store(d)
    cleanup.append(store)
    auth = Auth(d, f"store = redis://127.0.0.1:{store.port}\n")
    cleanup.append(auth)
    auth.wait_for(r"state=up")
    auth.write(f"store = redis://127.0.0.1:{store.port}\ntimeout = 200ms\n")
    os.kill(auth.proc.pid, signal.SIGHUP)
    auth.wait_for(r"configuration reloaded")
    assert auth.login().get("auth-status") == "OK"
    auth.wait_for(r"cluster=shared")
    assert auth.log().count("state=up") == 1, auth.log()
    clients = store_command(store.port, "CLIENT", "LIST")
    # dovegate-auth's one connection (plus this one asking)
    assert len(clients.strip().splitlines()) == 2, clients


def test_config_test_refuses(tmp_path):
    """-t names the line: a password file others can change, two backends
    the store could not tell apart, a host name for the store."""
    d = str(tmp_path)
    auth = Auth(d, "store = redis://127.0.0.1:6379\npassword_file = store-password\n",
                start=False)
    write_secret(f"{d}/store-password", "pw")
    os.chmod(f"{d}/store-password", 0o666)
    out = auth.test_config()
    assert out.returncode == 1
    assert re.search(r"auth\.conf:\d+: password_file .*store-password.*writable by group or others",
                     out.stderr), out.stderr

    os.chmod(f"{d}/store-password", 0o600)
    assert auth.test_config().returncode == 0
    # two Dovecots on one IP without audiences: one name in the store
    with open(auth.conf, "a") as f:
        f.write("[backend mx2]\nprotocol = imap\naddress = 127.0.0.1:1\n"
                "[backend mx3]\nprotocol = imap\naddress = 127.0.0.1:2\n")
    out = auth.test_config()
    assert out.returncode == 1
    assert re.search(r'auth\.conf:\d+: two imap backends would both be "127\.0\.0\.1" in the '
                     r'cluster store: give each \[backend NAME\] an audience', out.stderr), out.stderr
    with open(auth.conf, "a") as f:
        f.write("[cluster]\nassignment_ttl = 0\n")
    assert auth.test_config().returncode == 0, auth.test_config().stderr

    auth.write("store = redis://localhost:6379\n")
    out = auth.test_config()
    assert out.returncode == 1
    assert "the store's host must be an IP address" in out.stderr, out.stderr


def tls_build(d):
    """Whether this dovegate-auth has TLS for the store (hiredis_ssl): what
    -t says about a rediss:// store."""
    os.makedirs(f"{d}/probe")
    out = Auth(f"{d}/probe", "store = rediss://127.0.0.1:6390\n", start=False).test_config()
    assert out.returncode == 0 or "which has no TLS" in out.stderr, out.stderr
    return out.returncode == 0


def make_certs(d):
    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, text=True)
    for name in ("ca", "server", "other-ca"):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-out", f"{d}/{name}.key")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-new", "-key", f"{d}/{ca}.key", "-subj", f"/CN=test {ca}",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-days", "2",
                "-out", f"{d}/{ca}.pem")
    openssl("req", "-new", "-key", f"{d}/server.key", "-subj", "/CN=store.test",
            "-out", f"{d}/server.csr")
    with open(f"{d}/server.ext", "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "subjectAltName=DNS:store.test\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", f"{d}/server.csr", "-CA", f"{d}/ca.pem", "-CAkey",
            f"{d}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{d}/server.ext",
            "-out", f"{d}/server.pem")


def test_tls_store(tmp_path, cleanup):
    """rediss:// (Debian 13's hiredis has hiredis_ssl): verified against
    tls_ca_file and tls_server_name, the keys land in the store. A store
    whose certificate another CA signed: state=down naming the failure,
    logins answered on local state. Debian 12's hiredis 0.14 has no TLS:
    -t says so, and that is all there is to test."""
    d = str(tmp_path)
    if not tls_build(d):
        auth = Auth(d, "store = rediss://127.0.0.1:6390\n", start=False)
        out = auth.test_config()
        assert out.returncode == 1
        assert "rediss:// needs hiredis >= 1.0" in out.stderr, out.stderr
        return
    make_certs(d)
    tls_port = free_ports(1)[0]
    store = Store(d, "--tls-port", str(tls_port), "--tls-cert-file", f"{d}/server.pem",
                  "--tls-key-file", f"{d}/server.key", "--tls-ca-cert-file", f"{d}/ca.pem",
                  "--tls-auth-clients", "no")
    cleanup.append(store)
    wait_for_port(tls_port, 10, proc=store.proc, what="store (TLS)")
    auth = Auth(d, f"store = rediss://127.0.0.1:{tls_port}/0\ntls_ca_file = {d}/ca.pem\n"
                   "tls_server_name = store.test\n")
    cleanup.append(auth)
    auth.wait_for(r"cluster store=rediss://127\.0\.0\.1:%d/0 state=up" % tls_port)
    assert auth.login().get("auth-status") == "OK"
    auth.wait_for(r"cluster=shared assignment=created")
    wait_for_key(store.port, "dovegate:a:sam", "mx1")
    out = cli(auth, "assignments", "sam")       # the CLI over the same TLS settings
    assert out.returncode == 0 and out.stdout.startswith("sam mx1 "), out

    auth.stop()

    # another CA's certificate, or the right CA's for another name: refused
    # (hiredis alone checks no name), with the reason, and logins go on
    for name, ca, why in (("other-ca", "other-ca.pem",
                           "(unable to get local issuer certificate|self-signed certificate in certificate chain)"),
                          ("other-name", "ca.pem", "hostname mismatch")):
        os.makedirs(f"{d}/{name}")
        server_name = "store.test" if name == "other-ca" else "mail.test"
        other = Auth(f"{d}/{name}", f"store = rediss://127.0.0.1:{tls_port}/0\n"
                     f"tls_ca_file = {d}/{ca}\ntls_server_name = {server_name}\n")
        cleanup.append(other)
        other.wait_for(r'state=down error="TLS: certificate verify failed: %s"' % why)
        assert other.login().get("auth-status") == "OK"
        other.wait_for(r"cluster=local")
        assert "state=up" not in other.log()
        out = cli(other, "status")
        assert out.returncode == 1 and re.search("certificate verify failed: " + why, out.stderr)
        other.stop()


def cli(auth, *args):
    return subprocess.run([os.path.join(BUILD_DIR, "src/tools/dovegate"), "cluster", "-c",
                           auth.conf, *args], capture_output=True, text=True, timeout=30)


def test_cli(tmp_path, cleanup):
    """dovegate cluster against a real store with an ACL user, as an
    operator uses it: status, move, assignments, drain, unassign; and the
    ways it fails: an unknown backend, a wrong password (never printed), a
    password file others could change, a store that is down, usage."""
    d = str(tmp_path)
    store = acl_store(d, "ops", "ops-store-pass", CLI_ACL)
    cleanup.append(store)
    write_secret(f"{d}/store-password", "ops-store-pass")
    auth = Auth(d, f"store = redis://127.0.0.1:{store.port}/0\nuser = ops\n"
                   "password_file = store-password\nassignment_ttl = 600\n", start=False)
    login = ("AUTH", "ops", "ops-store-pass")

    out = cli(auth, "status")
    assert out.returncode == 0, out.stderr
    assert re.search(r"^store: redis://127\.0\.0\.1:%d/0 \((redis|valkey) \d" % store.port,
                     out.stdout, re.M), out.stdout
    assert "assignments: 0" in out.stdout and "drained: none" in out.stdout

    out = cli(auth, "move", "sam", "mx1")      # the [backend mx1] section, audience mx1
    assert out.returncode == 0, out.stderr
    assert "doveadm kick sam" in out.stdout
    assert ask(store.port, login, ("GET", "dovegate:a:sam")) == "mx1"
    assert 590 < ask(store.port, login, ("TTL", "dovegate:a:sam")) <= 600
    ask(store.port, login, ("SET", "dovegate:a:alice", "mx1", "EX", "100"))
    out = cli(auth, "assignments")
    assert out.returncode == 0, out.stderr
    assert re.fullmatch(r"alice mx1 (9\d|100)\nsam mx1 \d+\n", out.stdout), out.stdout
    assert re.fullmatch(r"sam mx1 \d+\n", cli(auth, "assignments", "sam").stdout)

    out = cli(auth, "move", "sam", "mx9")
    assert out.returncode == 1
    assert "no backend 'mx9'" in out.stderr and "known: mx1" in out.stderr, out.stderr

    assert cli(auth, "drain", "mx1").returncode == 0
    assert ask(store.port, login, ("SMEMBERS", "dovegate:drained")) == ["mx1"]
    assert "backends: mx1 (drained)" in cli(auth, "status").stdout
    assert cli(auth, "undrain", "mx1").returncode == 0
    assert ask(store.port, login, ("SMEMBERS", "dovegate:drained")) == []

    out = cli(auth, "unassign", "sam")
    assert out.returncode == 0 and "sam unassigned" in out.stdout, out
    assert ask(store.port, login, ("GET", "dovegate:a:sam")) is None
    out = cli(auth, "assignments", "sam")
    assert out.returncode == 1 and "sam has no assignment" in out.stderr, out

    # a wrong password: the store's refusal, never the password itself
    write_secret(f"{d}/store-password", "not-the-pass")
    out = cli(auth, "status")
    assert out.returncode == 1
    assert "WRONGPASS" in out.stderr and "not-the-pass" not in out.stderr + out.stdout
    os.chmod(f"{d}/store-password", 0o666)
    out = cli(auth, "status")
    assert out.returncode == 1 and "writable by group or others" in out.stderr, out.stderr
    os.chmod(f"{d}/store-password", 0o600)

    store.stop()
    started = time.monotonic()
    out = cli(auth, "status")
    assert out.returncode == 1
    assert re.search(r"store redis://127\.0\.0\.1:%d/0: Connection refused" % store.port,
                     out.stderr), out.stderr
    assert time.monotonic() - started < 10

    for args in ((), ("move", "sam"), ("frobnicate",), ("status", "extra")):
        out = cli(auth, *args)
        assert out.returncode == 2, (args, out)
        assert "usage: dovegate cluster" in out.stderr
