"""systemd Type=notify without systemd: dovegate-auth runs with
NOTIFY_SOCKET pointing at a unix datagram socket this test owns, as
systemd would set it, and the test checks what a service manager relies on:
READY=1 only once the auth_http port accepts and answers, RELOADING=1 then
READY=1 around every SIGHUP (a failed reload too: the old config keeps
serving), STOPPING=1 on SIGTERM, then a clean exit; WATCHDOG=1 keep-alives
only when asked (WATCHDOG_USEC). Also: with no [metrics]
section the daemon opens no metrics port (metrics are off by default).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import types

import pytest

from conftest import BUILD_DIR
from chain import free_ports, write_secret
from helpers import auth_http

CONFIG = """[server]
listen = 127.0.0.1:{port}
secret_file = {dir}/secret
[passdb]
path = {dir}/users
[backend]
imap = 127.0.0.1:{backend}
[credentials]
mode = passthrough
[health]
; no Dovecot behind this daemon: no probes, the backend counts as up
enabled = no
"""


def built_with_libsystemd():
    with open(os.path.join(BUILD_DIR, "Makefile")) as f:
        return "DG_HAVE_LIBSYSTEMD" in f.read()


@pytest.fixture
def start_daemon():
    """Starts dovegate-auth with extra environment, and the notify socket
    it reports to; stops them at the end."""
    if not built_with_libsystemd():
        pytest.skip("built without libsystemd (no sd_notify)")
    d = tempfile.mkdtemp(prefix="dovegate-notify-", dir="/tmp")
    started = []

    def start(extra_env=None):
        port, backend = free_ports(2)
        write_secret(f"{d}/secret", "notify-test-secret")
        with open(f"{d}/users", "w") as f:
            f.write("dora:{PLAIN}dora-pass::::::\n")
        with open(f"{d}/auth.conf", "w") as f:
            f.write(CONFIG.format(port=port, dir=d, backend=backend))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(f"{d}/notify")
        env = dict(os.environ, NOTIFY_SOCKET=f"{d}/notify", **(extra_env or {}))
        log = open(f"{d}/auth.log", "wb")
        proc = subprocess.Popen([os.path.join(BUILD_DIR, "src/shim/dovegate-auth"), "-c",
                                 f"{d}/auth.conf"], env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append((proc, sock, log))
        return {"proc": proc, "sock": sock, "port": port, "dir": d}

    yield start
    for proc, sock, log in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        sock.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(start_daemon):
    """A dovegate-auth of its own, as systemd starts it without WatchdogSec=."""
    return start_daemon()


def next_message(sock, timeout=10.0):
    """The next notification as {"READY": "1", "STATUS": ...}."""
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def answers(port):
    """nginx's question answered: the Auth-Status."""
    target = types.SimpleNamespace(env={"AUTH_HTTP_URL": f"http://127.0.0.1:{port}/auth"})
    resp = auth_http(target, {"Auth-Method": "plain", "Auth-User": "dora",
                                  "Auth-Pass": "dora-pass", "Auth-Protocol": "imap",
                                  "Auth-Login-Attempt": "1", "Client-IP": "192.0.2.9",
                                  "X-Dovegate-Secret": "notify-test-secret"})
    return resp.get("auth-status")


def test_ready_after_listening(daemon):
    msg = next_message(daemon["sock"])
    assert msg.get("READY") == "1", msg
    # at READY the port must already take and answer requests
    socket.create_connection(("127.0.0.1", daemon["port"]), timeout=1).close()
    assert answers(daemon["port"]) == "OK"
    # nothing but the auth_http port listens: no [metrics], no metrics port
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    mine = [l for l in out.splitlines() if f"pid={daemon['proc'].pid}," in l]
    assert len(mine) == 1 and f"127.0.0.1:{daemon['port']} " in mine[0], mine


def test_reload_and_stop(daemon):
    sock, proc = daemon["sock"], daemon["proc"]
    assert next_message(sock).get("READY") == "1"
    proc.send_signal(signal.SIGHUP)
    assert next_message(sock).get("RELOADING") == "1"
    msg = next_message(sock)
    assert msg.get("READY") == "1" and "reloaded" in msg.get("STATUS", ""), msg

    # a broken config: still RELOADING then READY, and it keeps serving
    conf = f"{daemon['dir']}/auth.conf"
    with open(conf, "a") as f:
        f.write("[no-such-section]\n")
    proc.send_signal(signal.SIGHUP)
    assert next_message(sock).get("RELOADING") == "1"
    msg = next_message(sock)
    assert msg.get("READY") == "1" and "failed" in msg.get("STATUS", ""), msg
    assert answers(daemon["port"]) == "OK"

    proc.send_signal(signal.SIGTERM)
    assert next_message(sock).get("STOPPING") == "1"
    assert proc.wait(timeout=10) == 0


def test_no_notify_socket_is_fine(daemon):
    """Without NOTIFY_SOCKET (Type=simple, or a shell) nothing changes."""
    d = daemon["dir"]
    port = free_ports(1)[0]
    with open(f"{d}/plain.conf", "w") as f:
        f.write(CONFIG.format(port=port, dir=d, backend=daemon["port"]))
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    proc = subprocess.Popen([os.path.join(BUILD_DIR, "src/shim/dovegate-auth"), "-c",
                             f"{d}/plain.conf"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert answers(port) == "OK"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def messages_for(sock, seconds):
    """Every notification that arrives within the next seconds."""
    out, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append(next_message(sock, timeout=left))
        except socket.timeout:
            break
    return out


def test_watchdog_keepalives(start_daemon):
    """WatchdogSec=0.4s in the unit: systemd sets WATCHDOG_USEC and
    WATCHDOG_PID; the daemon must send WATCHDOG=1 at least every 0.4 s
    (at half the interval, from its event loop) while it serves, also
    while it is answering requests."""
    # WATCHDOG_PID would be the daemon's own pid; unset, libsystemd
    # takes the request as meant for this process
    d = start_daemon({"WATCHDOG_USEC": "400000"})
    assert next_message(d["sock"]).get("READY") == "1"
    t0 = time.monotonic()
    pings = [m for m in messages_for(d["sock"], 2.0) if m.get("WATCHDOG") == "1"]
    assert answers(d["port"]) == "OK"
    # 2 s at one ping per 0.2 s: about 10 (the first at start-up); fewer
    # than 7 would let systemd's 0.4 s deadline pass
    assert len(pings) >= 7, (len(pings), time.monotonic() - t0)
    d["proc"].send_signal(signal.SIGTERM)
    assert d["proc"].wait(timeout=10) == 0


def test_no_watchdog_unless_asked(daemon):
    """Without WatchdogSec= (no WATCHDOG_USEC) no keep-alives are sent."""
    assert next_message(daemon["sock"]).get("READY") == "1"
    assert not [m for m in messages_for(daemon["sock"], 1.0) if "WATCHDOG" in m]


def test_watchdog_for_another_pid_is_ignored(start_daemon):
    d = start_daemon({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())})
    assert next_message(d["sock"]).get("READY") == "1"
    assert not [m for m in messages_for(d["sock"], 1.0) if "WATCHDOG" in m]
