"""Reload under load with zero failures, and SIGTERM drain.

Reload: threads ask dovegate-auth directly as nginx does (HTTP/1.0 GET,
one connection per question, valid logins only) while another logs in
through nginx with imaplib, and the test sends SIGHUP several times, once
after adding a user to the users file. Every answer must be Auth-Status OK
and every IMAP login must work; the added user logs in after the reload.
A chain of its own: its users file changes. The same with a chain whose
dovegate-auth asks Dovecot's auth service (reloads keep its connection),
and with two Dovecots whose IMAP backends are drained in turn by reloads;
a signing key switch (key rotation) under load loses no login either.

Drain: a dovegate-auth of its own gets a burst of ARGON2ID logins (slow on
purpose, so they are still being hashed) and SIGTERM: every request in
flight is answered, then it exits 0.
"""
import concurrent.futures
import http.client
import imaplib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import BUILD_DIR, start_chain, stop_chain
from chain import free_ports, write_secret
from helpers import LogWatch, user

LOAD_THREADS = 3
RELOADS = 5
MAX_SECONDS = 60          # the load stops by itself even if the test goes wrong
NEW_USER = ("dave", "dave-pass-4", "SHA512-CRYPT")
# Not about health checks: on a busy machine a slow greeting must not mark
# the only backend down in the middle of a reload test.
STEADY_HEALTH = {"timeout": "10s", "fall": 3}


class NginxStyle(http.client.HTTPConnection):
    """nginx speaks HTTP/1.0 to auth_http."""
    _http_vsn = 10
    _http_vsn_str = "HTTP/1.0"


def ask(url, secret_header, secret, name, password, proto="imap", timeout=10):
    """One auth_http question as nginx asks it; returns the answer's headers."""
    u = urllib.parse.urlsplit(url)
    conn = NginxStyle(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest("GET", u.path, skip_accept_encoding=True)
        for k, v in (("Auth-Method", "plain"), ("Auth-User", name), ("Auth-Pass", password),
                     ("Auth-Protocol", proto), ("Auth-Login-Attempt", "1"),
                     ("Client-IP", "192.0.2.44"), (secret_header, secret)):
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


@pytest.fixture(scope="module")
def rchain():
    c = start_chain(health=STEADY_HEALTH)
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def bchain():
    """Two Dovecots: an IMAP pool of two backends."""
    c = start_chain(backends=2, health=STEADY_HEALTH)
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def dchain():
    """dovegate-auth asking Dovecot's auth service ([passdb dovecot]); its own
    users file is empty, so every OK is Dovecot's answer."""
    c = start_chain(passdb="dovecot-unix", health=STEADY_HEALTH)
    yield c
    stop_chain(c)


class Load:
    """Bounded load in threads; records every answer that is not a success."""

    def __init__(self, chain):
        self.chain = chain
        self.stop = threading.Event()
        self.errors = []
        self.done = []            # monotonic times of successful answers
        self.imap_done = []       # ... and of successful IMAP logins
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.auth_http, args=(i,)) for i in range(LOAD_THREADS)]
        self.threads.append(threading.Thread(target=self.imap))

    def running(self, started):
        return not self.stop.is_set() and time.monotonic() - started < MAX_SECONDS

    def auth_http(self, i):
        e, started = self.chain.env, time.monotonic()
        users = [user(self.chain, n) for n in ("alice", "bob", "carol")]
        n = 0
        while self.running(started):
            name, password = users[(i + n) % len(users)]
            n += 1
            try:
                status, h = ask(e["AUTH_HTTP_URL"], e["AUTH_HTTP_SECRET_HEADER"],
                                e["AUTH_HTTP_SECRET"], name, password)
                ok = status == 200 and h.get("auth-status") == "OK"
                what = (status, h.get("auth-status"), h.get("auth-error-code"))
            except Exception as exc:  # a refused or dropped connection is a failure too
                ok, what = False, repr(exc)
            with self.lock:
                if ok:
                    self.done.append(time.monotonic())
                else:
                    self.errors.append((name, what))

    def imap(self):
        started = time.monotonic()
        name, password = user(self.chain, "carol")
        while self.running(started):
            try:
                conn = imaplib.IMAP4("127.0.0.1", int(self.chain.env["NGINX_IMAP_PORT"]), timeout=20)
                conn.login(name, password)
                conn.logout()
                with self.lock:
                    self.imap_done.append(time.monotonic())
            except Exception as exc:
                with self.lock:
                    self.errors.append(("imap " + name, repr(exc)))

    def wait_after(self, t, timeout=20):
        """Until both kinds of load have succeeded after time t: the load
        runs across every reload (a stall is a failure)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if any(d > t for d in self.done) and any(d > t for d in self.imap_done):
                    return
            assert time.monotonic() < deadline, f"load stalled: {self.errors[-3:]}"
            time.sleep(0.05)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(MAX_SECONDS)


def add_user(chain, name, password, scheme):
    """Atomically, as an operator should (write a copy, rename it over)."""
    path = chain.values["USERS_FILE"]
    with open(path) as f:
        text = f.read()
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text + f"{name}:{chain.hash_password(password, scheme)}::::::\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def wait_count(log, pattern, count, timeout=10):
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, log.text())) < count:
        assert time.monotonic() < deadline, f"fewer than {count} x {pattern!r}:\n{log.text()[-3000:]}"
        time.sleep(0.05)


def wait_dovecot_knows(chain, name, password, timeout=15):
    """Dovecot reads the same users file (its userdb) on its own schedule:
    wait until a direct login to it works, so that a failure after the
    reload can only be dovegate-auth's."""
    deadline = time.monotonic() + timeout
    while True:
        conn = imaplib.IMAP4("127.0.0.1", int(chain.env["DOVECOT_IMAP_PORT"]), timeout=10)
        try:
            conn.login(name, password)
        except imaplib.IMAP4.error:
            conn.shutdown()
            assert time.monotonic() < deadline, f"Dovecot never saw {name}"
            time.sleep(0.2)
            continue
        conn.logout()
        return


def reload(load, log, pid, count):
    """SIGHUP; returns once the count-th reload is logged and answers followed it."""
    t = time.monotonic()
    os.kill(pid, signal.SIGHUP)
    wait_count(log, r"configuration reloaded", count)
    load.wait_after(t)


def test_reload_under_load_zero_failures(rchain):
    log = LogWatch(rchain.env["LOG_AUTH"])
    pid = rchain.procs["dovegate-auth"].pid
    with Load(rchain) as load:
        load.wait_after(0)
        for i in range(RELOADS):
            if i == RELOADS // 2:
                add_user(rchain, *NEW_USER)
                wait_dovecot_knows(rchain, *NEW_USER[:2])
            reload(load, log, pid, i + 1)
        # the user added mid-run logs in through nginx after the reload
        conn = imaplib.IMAP4("127.0.0.1", int(rchain.env["NGINX_IMAP_PORT"]), timeout=20)
        conn.login(NEW_USER[0], NEW_USER[1])
        conn.logout()
        time.sleep(0.3)
    assert load.errors == []
    reloaded = re.findall(r"configuration reloaded from \S+ \((\d+) users\)", log.text())
    users = len(rchain.users)
    assert reloaded == [str(users)] * (RELOADS // 2) + [str(users + 1)] * (RELOADS - RELOADS // 2)
    assert "reload failed" not in log.text()


def test_signing_key_switch_under_load(rchain):
    """Key rotation by the book while IMAP logins run: the new public key
    joins Dovecot's ring first, then dovegate-auth signs with the new key
    after a SIGHUP. No login fails, and Dovecot accepts tickets of the new key."""
    log, dlog = LogWatch(rchain.env["LOG_AUTH"]), LogWatch(rchain.env["LOG_DOVECOT"])
    pid = rchain.procs["dovegate-auth"].pid
    keys = os.path.dirname(rchain.values["TICKET_SIGNING_KEY"])
    subprocess.run([rchain.binary("src/tools/dovegate"), "keygen", "--kid", "chain-2", "--dir", keys],
                   check=True, capture_output=True)
    ring = rchain.values["TICKET_KEYRING"]
    with open(ring) as f, open(os.path.join(keys, "chain-2.pub")) as new:
        text = f.read() + new.read()
    with open(ring + ".new", "w") as f:
        f.write(text)
    os.chmod(ring + ".new", 0o644)
    os.replace(ring + ".new", ring)
    conf = rchain.path("etc", "dovegate-auth.conf")
    with open(conf) as f:
        text = f.read().replace(rchain.values["TICKET_SIGNING_KEY"], os.path.join(keys, "chain-2.key"))
    with Load(rchain) as load:
        time.sleep(1.5)  # the dovegate passdb re-reads a changed ring within a second
        with open(conf + ".new", "w") as f:
            f.write(text)
        os.replace(conf + ".new", conf)
        reload(load, log, pid, 1)
        dlog.wait_for(r"ticket accepted: .*\bkid=chain-2\b", timeout=20)
    assert load.errors == []
    assert "reload failed" not in log.text()


def test_reload_with_dovecot_passdb_under_load(dchain):
    """Each reload hands the Dovecot auth connection to the new passdb:
    questions on their way through it are answered all the same."""
    log = LogWatch(dchain.env["LOG_AUTH"])
    pid = dchain.procs["dovegate-auth"].pid
    with Load(dchain) as load:
        load.wait_after(0)
        for i in range(RELOADS):
            reload(load, log, pid, i + 1)
    assert load.errors == []
    assert "reload failed" not in log.text()


def set_weight(chain, section, weight):
    """[backend SECTION] weight = N (None: the default), written atomically."""
    conf = chain.path("etc", "dovegate-auth.conf")
    with open(conf) as f:
        text = f.read()
    text = re.sub(rf"(\[backend {section}\]\n(?:(?!\[)[^\n]*\n)*?)weight = \d+\n", r"\1", text)
    if weight is not None:
        text = text.replace(f"[backend {section}]\n", f"[backend {section}]\nweight = {weight}\n", 1)
    with open(conf + ".new", "w") as f:
        f.write(text)
    os.replace(conf + ".new", conf)


def imap_ports_of(chain, names):
    """The backend port dovegate-auth answers for each user's IMAP login."""
    e = chain.env
    return {n: ask(e["AUTH_HTTP_URL"], e["AUTH_HTTP_SECRET_HEADER"], e["AUTH_HTTP_SECRET"],
                   n, dict((u, p) for u, p, _ in chain.users)[n])[1].get("auth-port")
            for n in names}


def test_backend_changes_under_load(bchain):
    """Draining one IMAP backend, then the other, by reload while logins run:
    no failed answer, and each reload moves every user off the drained one."""
    log = LogWatch(bchain.env["LOG_AUTH"])
    pid = bchain.procs["dovegate-auth"].pid
    ports = [str(b["DOVECOT_PROXY_IMAP_PORT"]) for b in bchain.backends]
    names = [u for u, _, _ in bchain.users]
    steps = [("dovecot-1-imap", 0, ports[1]), ("dovecot-1-imap", None, None),
             ("dovecot-2-imap", 0, ports[0]), ("dovecot-2-imap", None, None)]
    with Load(bchain) as load:
        load.wait_after(0)
        for i, (section, weight, only) in enumerate(steps):
            set_weight(bchain, section, weight)
            reload(load, log, pid, i + 1)
            if only is not None:
                assert set(imap_ports_of(bchain, names).values()) == {only}
    assert load.errors == []
    assert "reload failed" not in log.text()


DRAIN_CONFIG = """[server]
listen = 127.0.0.1:{port}
secret_file = {dir}/secret
hash_threads = 1
[passdb]
path = {dir}/users
[backend]
imap = 127.0.0.1:{backend}
[credentials]
mode = passthrough
[health]
; no Dovecot behind this daemon: no probes, the backend counts as up
enabled = no
[metrics]
listen = 127.0.0.1:{metrics}
"""
BURST = 8


def arrived(metrics_url):
    """Requests dovegate-auth has read: answered plus in flight, and in flight."""
    with urllib.request.urlopen(metrics_url, timeout=5) as r:
        text = r.read().decode()
    answered = in_flight = 0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "dovegate_auth_requests_total":
                answered += s.value
            elif s.name == "dovegate_auth_in_flight_requests":
                in_flight = s.value
    return answered + in_flight, in_flight


def drain_daemon(prefix, extra=""):
    """A dovegate-auth of its own with DRAIN_CONFIG (+ extra) and one
    ARGON2ID user erin; returns (dir, auth port, metrics port, process,
    its log file). The caller waits for it to listen and stops it."""
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    port, backend, metrics = free_ports(3)
    dovegate = os.path.join(BUILD_DIR, "src/tools/dovegate")
    hashed = subprocess.run([dovegate, "pw", "-s", "ARGON2ID", "-p", "erin-pass"], check=True,
                            capture_output=True, text=True).stdout.strip()
    write_secret(f"{d}/secret", "drain-secret")
    with open(f"{d}/users", "w") as f:
        f.write(f"erin:{hashed}::::::\n")
    with open(f"{d}/auth.conf", "w") as f:
        f.write(DRAIN_CONFIG.format(port=port, dir=d, backend=backend, metrics=metrics) + extra)
    logf = open(f"{d}/auth.log", "wb")
    proc = subprocess.Popen([os.path.join(BUILD_DIR, "src/shim/dovegate-auth"), "-c", f"{d}/auth.conf"],
                            stdout=logf, stderr=subprocess.STDOUT)
    return d, port, metrics, proc, logf


def test_sigterm_answers_requests_in_flight():
    d, port, metrics, proc, logf = drain_daemon("dovegate-drain-")
    url = f"http://127.0.0.1:{port}/auth"
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in open(f"{d}/auth.log").read():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
            # generous timeouts: on a busy machine one ARGON2ID check takes far longer
            answers = [pool.submit(ask, url, "X-Dovegate-Secret", "drain-secret", "erin", "erin-pass",
                                   timeout=60) for _ in range(BURST)]
            # SIGTERM once all have arrived and some wait for the one hash thread
            # (~0.1 s per ARGON2ID check)
            deadline = time.monotonic() + 20
            while arrived(f"http://127.0.0.1:{metrics}/metrics")[0] < BURST:
                assert time.monotonic() < deadline, "the burst never arrived"
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            results = [a.result(timeout=90) for a in answers]
        assert [(s, h.get("auth-status")) for s, h in results] == [(200, "OK")] * BURST
        assert proc.wait(timeout=30) == 0
        text = open(f"{d}/auth.log").read()
        in_flight = int(re.search(r"stopping, (\d+) requests in flight", text).group(1))
        assert in_flight > 0, text
        assert "still in flight" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        logf.close()
        shutil.rmtree(d, ignore_errors=True)


RESET_BURST = 4


def request_head(port, name, password):
    return (f"GET /auth HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAuth-Method: plain\r\n"
            f"Auth-User: {name}\r\nAuth-Pass: {password}\r\nAuth-Protocol: imap\r\n"
            f"Auth-Login-Attempt: 1\r\nClient-IP: 192.0.2.45\r\n"
            f"X-Dovegate-Secret: drain-secret\r\n\r\n").encode()


def test_clients_that_reset_before_the_reply_are_not_in_flight_forever():
    """A client that sends its request and resets the connection (SO_LINGER
    0) while dovegate-auth is still deciding: the reply's write fails, and
    libevent frees such a request without its completion callback. The
    in-flight count must still come back to 0, and SIGTERM must then stop
    at once instead of waiting the whole drain time (30 s) for them."""
    # no cache: every request waits for the one hash thread
    d, port, metrics, proc, logf = drain_daemon("dovegate-reset-", "[cache]\nsize = 0\n")
    metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    try:
        deadline = time.monotonic() + 10
        while "listening on" not in open(f"{d}/auth.log").read():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        socks = []
        for _ in range(RESET_BURST):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.sendall(request_head(port, "erin", "erin-pass"))
            socks.append(s)
        # all read and waiting for the hash thread, then reset before any answer
        deadline = time.monotonic() + 20
        while arrived(metrics_url)[1] < RESET_BURST:
            assert time.monotonic() < deadline, "the requests never arrived"
            time.sleep(0.005)
        for s in socks:
            s.close()  # SO_LINGER 0: a reset
        deadline = time.monotonic() + 20
        while arrived(metrics_url) != (RESET_BURST, 0):
            assert time.monotonic() < deadline, f"still in flight: {arrived(metrics_url)}"
            time.sleep(0.05)

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=40) == 0
        took = time.monotonic() - started
        text = open(f"{d}/auth.log").read()
        assert took < 5, (took, text)
        assert "still in flight" not in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        logf.close()
        shutil.rmtree(d, ignore_errors=True)
