"""Routing through the real chain with TWO Dovecot backends behind nginx.

client -> nginx -> dovegate-auth (pools, health checks) -> Dovecot 1 or 2.
Where a login went is checked the way an operator would: dovegate-auth's
decision line names the backend, and exactly that Dovecot logs the
`Login:` line with the decision's session id. Backends are stopped and
started by their master's pid. One test runs a dovegate-auth of its own
in front of a backend that never greets, to see the logins that arrive
before the first health probe has a result.
"""
import imaplib
import os
import re
import signal
import smtplib
import socket
import subprocess
import threading
import time
import types
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families
from chain import free_ports, wait_for_port, write_secret
from conftest import BUILD_DIR, start_chain, stop_chain
from helpers import LOGGED_IN, LogWatch, auth_http, decision, watch_logs

PASSWORD = "route-pass-1"
USERS = [(f"u{i:02d}", PASSWORD, "PLAIN") for i in range(12)]
# probes every 300 ms: two failed ones mark a backend down (a stopped Dovecot
# refuses at once), one good one up; a slow greeting on a busy machine has 3 s.
# panic = no: with both Dovecots stopped, logins are refused (no_backend)
# instead of going to a stopped one; the panic tests below use the default.
HEALTH = {"interval": "300ms", "timeout": "3s", "rise": 1, "fall": 2, "panic": "no"}


@pytest.fixture(scope="module")
def pair():
    c = start_chain(users=USERS, backends=2, health=HEALTH)
    yield c
    stop_chain(c)


def backend_of(chain, i, proto="imap"):
    key = {"imap": "DOVECOT_PROXY_IMAP_PORT", "smtp": "DOVECOT_PROXY_SUBMISSION_PORT"}[proto]
    return f"127.0.0.1:{chain.env[key if i == 1 else f'{key}_{i}']}"


def dovecot_log(chain, i):
    return LogWatch(chain.env["LOG_DOVECOT" if i == 1 else f"LOG_DOVECOT_{i}"])


def imap_login(chain, name, password=PASSWORD):
    """One IMAP login through nginx; returns (instance, session) after
    checking that exactly that Dovecot logged this session's Login: line."""
    logs = watch_logs(chain)
    dlogs = {i: dovecot_log(chain, i) for i in (1, 2)}
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=15)
    try:
        assert c.login(name, password)[0] == "OK"
    finally:
        c.logout()
    m = decision(logs, user=name, result="ok")
    session = m.group(1)
    backend = re.search(r"\bbackend=(\S+)", m.group(0)).group(1)
    instance = {backend_of(chain, 1): 1, backend_of(chain, 2): 2}[backend]
    login = rf"imap-login: Info: {LOGGED_IN} user=<{name}>.*session=<{re.escape(session)}>"
    dlogs[instance].wait_for(login)
    assert not re.search(login, dlogs[3 - instance].text())
    return instance, session


def wait_state(chain, i, state, proto="imap", timeout=10):
    """Until dovegate-auth's last health word on Dovecot i (proto) is state."""
    key = (proto, backend_of(chain, i, proto))
    deadline = time.monotonic() + timeout
    while chain.backend_states().get(key) != state:
        assert time.monotonic() < deadline, f"{key} not {state}: {chain.backend_states()}"
        time.sleep(0.05)


def placement(chain):
    """{user: instance} from one login each."""
    return {name: imap_login(chain, name)[0] for name, _, _ in USERS}


def restart_stopped(chain):
    for i in (1, 2):
        if chain.procs[chain.backend_proc_name(i)].poll() is not None:
            chain.start_backend(i, wait_healthy=False)
    chain.wait_backends_up()


@pytest.fixture
def both_up(pair):
    """Each test starts and ends with both Dovecots running and healthy."""
    restart_stopped(pair)
    yield pair
    restart_stopped(pair)


def test_same_user_same_backend_and_both_used(both_up):
    chain = both_up
    first = placement(chain)
    for _ in range(2):
        assert placement(chain) == first
    # 12 users over two equal backends: both get some
    assert set(first.values()) == {1, 2}, first


def test_failover_moves_only_the_stopped_backends_users_and_recovers(both_up):
    chain = both_up
    before = placement(chain)
    on2 = sorted(u for u, i in before.items() if i == 2)
    on1 = sorted(u for u, i in before.items() if i == 1)
    auth = LogWatch(chain.env["LOG_AUTH"])
    chain.stop_backend(2)
    auth.wait_for(rf"backend proto=imap backend={re.escape(backend_of(chain, 2))} "
                  r"name=dovecot-2-imap state=down reason=\S+")
    # the next login lands on the other backend; backend 1's users stay
    for name in on2[:3] + on1[:2]:
        assert imap_login(chain, name)[0] == 1
    chain.start_backend(2)
    auth.wait_for(rf"backend proto=imap backend={re.escape(backend_of(chain, 2))} "
                  r"name=dovecot-2-imap state=up reason=\"greeting ok\"")
    # recovery: the users come back to their own backend
    for name in on2[:3]:
        assert imap_login(chain, name)[0] == 2


def test_no_healthy_backend_is_a_quick_temporary_failure(both_up):
    chain = both_up
    logs = watch_logs(chain)
    for i in (1, 2):
        chain.stop_backend(i)
    for i in (1, 2):
        for proto in ("imap", "smtp"):
            wait_state(chain, i, "down", proto)
    started = time.monotonic()
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=15)
    with pytest.raises(imaplib.IMAP4.error) as exc:
        c.login("u01", PASSWORD)
    c.shutdown()
    took = time.monotonic() - started
    assert "Temporary server problem" in str(exc.value)
    # dovegate-auth answers at once; nginx delivers it after Auth-Wait (3 s)
    assert took < 8, took
    m = decision(logs, proto="imap", user="u01", result="error", reason="no_backend")
    assert 'detail="no healthy imap backend"' in m.group(0)
    assert float(m.group(0).split("duration_ms=")[1].split()[0]) < 100

    with smtplib.SMTP("127.0.0.1", int(chain.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example.org")
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login("u02", PASSWORD)
    assert exc.value.smtp_code == 454, exc.value
    assert exc.value.smtp_error.startswith(b"4.7.0"), exc.value
    decision(logs, proto="smtp", user="u02", result="error", reason="no_backend")


def rewrite_user(chain, name, fields):
    """Give a users-file line extra fields (dovegate-auth re-reads the file
    when it changes; so does Dovecot)."""
    path = chain.values["USERS_FILE"]
    with open(path) as f:
        lines = f.read().splitlines()
    out = []
    for line in lines:
        if line.split(":", 1)[0] == name:
            line = ":".join(line.split(":")[:7]) + ":" + fields
        out.append(line + "\n")
    with open(path + ".tmp", "w") as f:
        f.writelines(out)
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)
    time.sleep(1.1)  # dovegate-auth looks at the file at most once a second


def test_passdb_host_port_decide_first(both_up):
    chain = both_up
    before = placement(chain)
    pinned = next(u for u, i in before.items() if i == 1)
    named = next(u for u, i in before.items() if i == 1 and u != pinned)
    lost = next(u for u, i in before.items() if i == 2)
    port2 = chain.env["DOVECOT_PROXY_IMAP_PORT_2"]
    try:
        rewrite_user(chain, pinned, f"host=127.0.0.1 port={port2}")
        rewrite_user(chain, named, f"host=localhost port={port2}")
        rewrite_user(chain, lost, "host=no-such-host.invalid")
        # the hash said backend 1; the passdb says backend 2 (IP literal,
        # and a name resolved to one: nginx gets 127.0.0.1 either way)
        for _ in range(2):
            assert imap_login(chain, pinned)[0] == 2
        assert imap_login(chain, named)[0] == 2
        # a name that does not resolve: a temporary failure, with the reason
        logs = watch_logs(chain)
        c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=20)
        with pytest.raises(imaplib.IMAP4.error) as exc:
            c.login(lost, PASSWORD)
        c.shutdown()
        assert "Temporary server problem" in str(exc.value)
        m = decision(logs, user=lost, result="error", reason="dns_failed")
        assert "passdb host=no-such-host.invalid" in m.group(0)
    finally:
        for name in (pinned, named, lost):
            rewrite_user(chain, name, "")
    assert imap_login(chain, pinned)[0] == 1


class FakeBackend:
    """A listener on 127.0.0.2 (no pool's address) that greets like IMAP and
    records every connection: whether nginx was sent there."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                try:
                    conn.sendall(b"* OK fake\r\n")
                    # nginx's PROXY line, then its LOGIN command
                    while b"LOGIN" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.seen.append(data)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def set_route_option(chain, text):
    """Append (text) or drop (None) a [route] section in dovegate-auth's
    config, and reload it."""
    conf = chain.path("etc", "dovegate-auth.conf")
    with open(conf) as f:
        base = f.read().split("\n[route]\n", 1)[0]
    with open(conf, "w") as f:
        f.write(base if text is None else base.rstrip("\n") + "\n\n[route]\n" + text)
    auth = LogWatch(chain.env["LOG_AUTH"])
    os.kill(chain.procs["dovegate-auth"].pid, signal.SIGHUP)
    auth.wait_for(r"configuration reloaded")


def refused_login(chain, name):
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=20)
    with pytest.raises(imaplib.IMAP4.error) as exc:
        c.login(name, PASSWORD)
    c.shutdown()
    assert "Temporary server problem" in str(exc.value)


def test_passdb_host_outside_the_pools_is_refused(both_up):
    """A passdb host=/port= that is no backend of the protocol's pool gets
    no password: a temporary failure whose decision line names the host,
    unless [route] allow_hosts_outside_pools = yes. One inside still works."""
    chain = both_up
    fake = FakeBackend()
    outside, by_name, inside = USERS[0][0], USERS[1][0], USERS[2][0]
    direct = chain.env["DOVECOT_IMAP_PORT"]  # Dovecot 1's own IMAP port: no pool backend
    try:
        rewrite_user(chain, outside, f"host=127.0.0.2 port={fake.port}")
        # a name that resolves to a pool backend's IP, with a port of none
        rewrite_user(chain, by_name, f"host=localhost port={direct}")
        rewrite_user(chain, inside, f"host=127.0.0.1 port={chain.env['DOVECOT_PROXY_IMAP_PORT_2']}")
        logs = watch_logs(chain)
        refused_login(chain, outside)
        m = decision(logs, user=outside, result="error", reason="bad_route")
        assert f"passdb host=127.0.0.2 port={fake.port}: not in the imap pool" in m.group(0)
        refused_login(chain, by_name)
        m = decision(logs, user=by_name, result="error", reason="bad_route")
        assert f"passdb host=localhost (127.0.0.1) port={direct}: not in the imap pool" \
            in m.group(0)
        assert PASSWORD not in logs["auth"].text()
        assert imap_login(chain, inside)[0] == 2
        time.sleep(0.5)
        assert fake.seen == [], "nginx was sent to an address outside the pools"
        # the operator allows it: nginx goes there with the user's login
        set_route_option(chain, "allow_hosts_outside_pools = yes\n")
        logs = watch_logs(chain)
        c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=20)
        try:
            c.login(outside, PASSWORD)
        except (imaplib.IMAP4.error, imaplib.IMAP4.abort, OSError):
            pass  # the fake backend does not log anyone in
        finally:
            c.shutdown()
        m = decision(logs, user=outside, result="ok")
        assert f"backend=127.0.0.2:{fake.port}" in m.group(0)
        deadline = time.monotonic() + 5
        while not fake.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake.seen) == 1 and b"LOGIN" in fake.seen[0], fake.seen
    finally:
        fake.close()
        set_route_option(chain, None)
        for name in (outside, by_name, inside):
            rewrite_user(chain, name, "")


def test_reload_keeps_health_state(both_up):
    chain = both_up
    before = placement(chain)
    on2 = next(u for u, i in before.items() if i == 2)
    on1 = next(u for u, i in before.items() if i == 1)
    chain.stop_backend(2)
    wait_state(chain, 2, "down")
    auth = LogWatch(chain.env["LOG_AUTH"])
    os.kill(chain.procs["dovegate-auth"].pid, signal.SIGHUP)
    auth.wait_for(r"configuration reloaded")
    # straight after the reload: up stays up, down stays down
    assert imap_login(chain, on1)[0] == 1
    assert imap_login(chain, on2)[0] == 1
    time.sleep(1.0)  # several probe intervals of the new checker
    # no backend was re-announced: the new checker started from the old states
    assert not re.search(r"\bbackend proto=\S+ .*\bstate=", auth.text()), auth.text()
    chain.start_backend(2)
    assert imap_login(chain, on2)[0] == 2


@pytest.fixture(scope="module")
def dovecot_pair():
    """Two Dovecots, and dovegate-auth asking Dovecot 1's auth service."""
    c = start_chain(users=USERS, backends=2, health=HEALTH, passdb="dovecot-unix")
    yield c
    stop_chain(c)


def test_dovecot_passdb_host_port_decide_first(dovecot_pair):
    chain = dovecot_pair
    name = next(u for u, _, _ in USERS if imap_login(chain, u)[0] == 1)
    outside = next(u for u, _, _ in USERS if u != name)
    try:
        # Dovecot's passwd-file passdb now replies host=/port= for the user
        rewrite_user(chain, name, f"host=127.0.0.1 port={chain.env['DOVECOT_PROXY_IMAP_PORT_2']}")
        # and for another one an address that is no backend of the pool
        rewrite_user(chain, outside, "host=127.0.0.2 port=10143")
        for _ in range(2):
            assert imap_login(chain, name)[0] == 2
        logs = watch_logs(chain)
        refused_login(chain, outside)
        m = decision(logs, user=outside, result="error", reason="bad_route")
        assert "passdb host=127.0.0.2 port=10143: not in the imap pool" in m.group(0)
    finally:
        rewrite_user(chain, name, "")
        rewrite_user(chain, outside, "")
    assert imap_login(chain, name)[0] == 1


def test_reload_drains_a_backend_and_moves_only_its_users(both_up):
    chain = both_up
    before = placement(chain)
    conf = chain.path("etc", "dovegate-auth.conf")
    with open(conf) as f:
        original = f.read()
    section = "[backend dovecot-2-imap]\n"
    assert section in original
    auth = LogWatch(chain.env["LOG_AUTH"])
    try:
        with open(conf, "w") as f:
            f.write(original.replace(section, section + "weight = 0\n"))
        os.kill(chain.procs["dovegate-auth"].pid, signal.SIGHUP)
        auth.wait_for(r"configuration reloaded")
        after = placement(chain)
        # backend 2's users moved to backend 1; nobody else moved
        assert after == {u: 1 for u in before}, after
    finally:
        with open(conf, "w") as f:
            f.write(original)
        restored = LogWatch(chain.env["LOG_AUTH"])
        os.kill(chain.procs["dovegate-auth"].pid, signal.SIGHUP)
        restored.wait_for(r"configuration reloaded")
    assert placement(chain) == before


STARTUP_CONFIG = """[server]
listen = 127.0.0.1:{port}
secret_file = {dir}/secret
[passdb]
path = {dir}/users
[backend]
imap = 127.0.0.1:{backend}
[credentials]
mode = passthrough
[health]
interval = 10s
timeout = 3s
greeting_timeout = 3s
rise = 1
fall = 1
proxy_protocol = no
panic = no
"""


def test_first_logins_after_start_wait_for_no_probe(tmp_path):
    """A (re)started dovegate-auth has no probe result yet: the logins that
    arrive meanwhile go to the backend they will have anyway instead of
    being refused with no_backend. Once the first probe says down, they are
    refused (panic = no here; with the default the pool would route to it
    anyway: see the panic test). The backend here accepts connections but
    never greets, so its first probe takes the whole 3 s (timeout and
    greeting_timeout): long enough to see both."""
    port, backend = free_ports(2)
    silent = socket.socket()
    silent.bind(("127.0.0.1", backend))
    silent.listen(16)  # the kernel completes handshakes; nobody greets
    d = str(tmp_path)
    write_secret(f"{d}/secret", "startup-secret")
    with open(f"{d}/users", "w") as f:
        f.write("sam:{PLAIN}sam-pass::::::\n")
    with open(f"{d}/auth.conf", "w") as f:
        f.write(STARTUP_CONFIG.format(port=port, dir=d, backend=backend))
    log_path = f"{d}/auth.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([os.path.join(BUILD_DIR, "src/shim/dovegate-auth"), "-c",
                             f"{d}/auth.conf"], stdout=log, stderr=subprocess.STDOUT)
    target = types.SimpleNamespace(env={"AUTH_HTTP_URL": f"http://127.0.0.1:{port}/auth"})
    headers = {"Auth-Method": "plain", "Auth-User": "sam", "Auth-Pass": "sam-pass",
               "Auth-Protocol": "imap", "Auth-Login-Attempt": "1", "Client-IP": "192.0.2.8",
               "X-Dovegate-Secret": "startup-secret"}
    try:
        wait_for_port(port, 10, proc=proc, what="dovegate-auth")
        started = time.monotonic()
        resp = auth_http(target, headers)
        assert time.monotonic() - started < 2.5, "the probe may have ended: test timing lost"
        assert resp.get("auth-status") == "OK", resp
        assert (resp.get("auth-server"), resp.get("auth-port")) == ("127.0.0.1", str(backend))

        # the first probe times out: down, and now logins are refused
        deadline = time.monotonic() + 10
        while b"state=down" not in open(log_path, "rb").read():
            assert time.monotonic() < deadline, open(log_path, "rb").read()
            time.sleep(0.1)
        resp = auth_http(target, headers)
        assert resp.get("auth-status") != "OK" and "auth-wait" in resp, resp
        text = open(log_path, "rb").read().decode()
        assert re.search(r"user=sam\b.*reason=no_backend", text), text
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        log.close()
        silent.close()


# ---- health checks must not cause outages -----------------------------------

class GreetingRelay:
    """A TCP relay in front of Dovecot's haproxy listener: it passes logins
    through, but delays the backend's first bytes (the greeting) by `delay`
    seconds, or, with drop_probes, closes every connection that starts
    with dovegate-auth's probe header "PROXY UNKNOWN" (nginx's logins send
    "PROXY TCP4 ..."). Settable while it runs."""

    def __init__(self, upstream_port, delay=0.0, drop_probes=False):
        self.upstream = ("127.0.0.1", upstream_port)
        self.delay = delay
        self.drop_probes = drop_probes
        self.probes_dropped = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        try:
            first = client.recv(4096)
            if self.drop_probes and first.startswith(b"PROXY UNKNOWN"):
                self.probes_dropped += 1
                return
            up = socket.create_connection(self.upstream, timeout=10)
            up.sendall(first)
            threading.Thread(target=self._pump, args=(client, up, 0), daemon=True).start()
            self._pump(up, client, self.delay)
        except OSError:
            pass
        finally:
            client.close()

    @staticmethod
    def _pump(src, dst, delay):
        try:
            while True:
                data = src.recv(4096)
                if not data:
                    break
                if delay:
                    time.sleep(delay)
                    delay = 0
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed = True
        self.sock.close()


class ProxiedIMAP(imaplib.IMAP4):
    """IMAP as nginx speaks it to Dovecot's haproxy listener: PROXY v1 first."""

    def _create_socket(self, timeout):
        s = super()._create_socket(timeout)
        s.sendall(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 143\r\n")
        return s


def own_auth_conf(chain, relay_port, port, metrics, health):
    """The chain's dovegate-auth config with its own ports, the IMAP pool
    pointing at the relay, and [health] replaced."""
    with open(chain.path("etc", "dovegate-auth.conf")) as f:
        text = f.read()
    text = text.replace(f"listen = 127.0.0.1:{chain.values['AUTH_HTTP_PORT']}",
                        f"listen = 127.0.0.1:{port}")
    text = text.replace(f"listen = 127.0.0.1:{chain.values['METRICS_PORT']}",
                        f"listen = 127.0.0.1:{metrics}")
    text = text.replace(f"imap = 127.0.0.1:{chain.env['DOVECOT_PROXY_IMAP_PORT']}",
                        f"imap = 127.0.0.1:{relay_port}")
    head, rest = text.split("[health]\n", 1)
    rest = rest[rest.index("\n[") + 1:]
    return head + "[health]\n" + "".join(f"{k} = {v}\n" for k, v in health.items()) + rest


@pytest.fixture
def own_auth(chain, tmp_path):
    """start(relay, health) runs a dovegate-auth of its own in front of the
    relay (the chain's users, secret and ticket key); yields it."""
    procs = []

    def start(relay, health):
        port, metrics = free_ports(2)
        conf = tmp_path / "auth.conf"
        conf.write_text(own_auth_conf(chain, relay.port, port, metrics, health))
        log_path = str(tmp_path / "auth.log")
        log = open(log_path, "wb")
        proc = subprocess.Popen([os.path.join(BUILD_DIR, "src/shim/dovegate-auth"), "-c",
                                 str(conf)], stdout=log, stderr=subprocess.STDOUT)
        procs.append((proc, log))
        wait_for_port(port, 10, proc=proc, what="dovegate-auth")
        env = {**chain.env, "AUTH_HTTP_URL": f"http://127.0.0.1:{port}/auth"}
        return types.SimpleNamespace(env=env, log_path=log_path, proc=proc,
                                     metrics_url=f"http://127.0.0.1:{metrics}/metrics",
                                     log=lambda: open(log_path, errors="replace").read())

    yield start
    for proc, log in procs:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        log.close()


def login_through_relay(chain, auth, relay):
    """One login the way nginx makes it: ask dovegate-auth, then log in at
    the backend it names (the relay) with the ticket. The Dovecot session
    id is the decision's."""
    name, password = chain.users[0][0], chain.users[0][1]
    headers = {"Auth-Method": "plain", "Auth-User": name, "Auth-Pass": password,
               "Auth-Protocol": "imap", "Auth-Login-Attempt": "1", "Client-IP": "192.0.2.7",
               chain.env["AUTH_HTTP_SECRET_HEADER"]: chain.env["AUTH_HTTP_SECRET"]}
    resp = auth_http(auth, headers)
    assert resp.get("auth-status") == "OK", (resp, auth.log()[-3000:])
    assert (resp["auth-server"], resp["auth-port"]) == ("127.0.0.1", str(relay.port)), resp
    c = ProxiedIMAP("127.0.0.1", relay.port, timeout=20)
    try:
        assert c.login(resp["auth-user"], resp["auth-pass"])[0] == "OK"
    finally:
        c.logout()


def metric(url, name, labels):
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


# probes every 300 ms, each failing after 500 ms without a connection or a
# greeting; two failures in a row mark a backend down
FAST_HEALTH = {"interval": "300ms", "timeout": "500ms", "rise": 1, "fall": 2}


def test_slow_greetings_do_not_take_a_serving_backend_down(chain, own_auth):
    """The only IMAP backend greets 1.5 s late (a busy machine), far beyond
    the probes' 500 ms timeout, but logs everybody in. Its probes connect
    at once, so the late greeting counts (greeting_timeout, 30 s): the
    backend stays up and every login in the next seconds works."""
    relay = GreetingRelay(int(chain.env["DOVECOT_PROXY_IMAP_PORT"]), delay=1.5)
    try:
        auth = own_auth(relay, FAST_HEALTH)
        deadline = time.monotonic() + 5
        logins = 0
        while time.monotonic() < deadline:
            login_through_relay(chain, auth, relay)
            logins += 1
        assert logins >= 2
        text = auth.log()
        assert "state=down" not in text, text
        assert "state=panic" not in text, text
        assert metric(auth.metrics_url, "dovegate_auth_backend_up", {"proto": "imap"}) == 1
    finally:
        relay.close()


def test_all_backends_down_routes_anyway_logged_once_and_counted(chain, own_auth):
    """Probes that fail everywhere (here: the relay drops every probe
    connection, logins pass) mark the only IMAP backend down. The pool
    then routes to it anyway: logins keep working, one line says the pool
    entered panic mode, the metrics count the logins routed in it, and
    one line says when a backend is up again."""
    relay = GreetingRelay(int(chain.env["DOVECOT_PROXY_IMAP_PORT"]), drop_probes=True)
    try:
        auth = own_auth(relay, FAST_HEALTH)
        deadline = time.monotonic() + 15
        while "proto=imap state=panic" not in auth.log():
            assert time.monotonic() < deadline, auth.log()
            time.sleep(0.05)
        assert re.search(r"backend proto=imap .*state=down reason=closed", auth.log())
        for _ in range(3):
            login_through_relay(chain, auth, relay)
        text = auth.log()
        assert len(re.findall(r"\bpool proto=imap state=panic\b", text)) == 1, text
        # each login routed in panic says so in its decision line
        assert len(re.findall(r"\bdecision\b.* result=ok .*\bpanic=yes\b", text)) == 3, text
        assert metric(auth.metrics_url, "dovegate_auth_pool_panic", {"proto": "imap"}) == 1
        assert metric(auth.metrics_url, "dovegate_auth_panic_routes_total",
                      {"proto": "imap"}) == 3
        assert metric(auth.metrics_url, "dovegate_auth_pool_panic", {"proto": "pop3"}) == 0

        relay.drop_probes = False
        deadline = time.monotonic() + 15
        while "proto=imap state=normal" not in auth.log():
            assert time.monotonic() < deadline, auth.log()
            time.sleep(0.05)
        login_through_relay(chain, auth, relay)
        text = auth.log()
        assert len(re.findall(r"\bpool proto=imap state=normal\b", text)) == 1, text
        assert len(re.findall(r"\bdecision\b.* result=ok .*\bpanic=yes\b", text)) == 3, text
        assert len(re.findall(r"\bpool proto=imap state=panic\b", text)) == 1, text
        assert metric(auth.metrics_url, "dovegate_auth_pool_panic", {"proto": "imap"}) == 0
        assert metric(auth.metrics_url, "dovegate_auth_panic_routes_total",
                      {"proto": "imap"}) == 3
    finally:
        relay.close()
