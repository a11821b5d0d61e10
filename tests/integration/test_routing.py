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
import time
import types

import pytest
from chain import free_ports, wait_for_port, write_secret
from conftest import BUILD_DIR, start_chain, stop_chain
from helpers import LOGGED_IN, LogWatch, auth_http, decision, watch_logs

PASSWORD = "route-pass-1"
USERS = [(f"u{i:02d}", PASSWORD, "PLAIN") for i in range(12)]
# probes every 300 ms: two failed ones mark a backend down (a stopped Dovecot
# refuses at once), one good one up; a slow greeting on a busy machine has 3 s
HEALTH = {"interval": "300ms", "timeout": "3s", "rise": 1, "fall": 2}


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
    try:
        # Dovecot's passwd-file passdb now replies host=/port= for the user
        rewrite_user(chain, name, f"host=127.0.0.1 port={chain.env['DOVECOT_PROXY_IMAP_PORT_2']}")
        for _ in range(2):
            assert imap_login(chain, name)[0] == 2
    finally:
        rewrite_user(chain, name, "")
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
rise = 1
fall = 1
proxy_protocol = no
"""


def test_first_logins_after_start_wait_for_no_probe(tmp_path):
    """A (re)started dovegate-auth has no probe result yet: the logins that
    arrive meanwhile go to the backend they will have anyway instead of
    being refused with no_backend. Once the first probe says down, they are
    refused. The backend here accepts connections but never greets, so its
    first probe takes the whole 3 s timeout: long enough to see both."""
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
