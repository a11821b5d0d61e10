"""The Dovecot side's configuration and loading, on Dovecot 2.3 and 2.4.

What a postmaster meets before any login: the passdb's settings as Dovecot
shows them, a misspelled or out-of-range setting refused with a message that
names it, Dovecot 2.3's `args =` line refused under 2.4 with the 2.4 keys,
and a module built for another Dovecot refused with Dovecot's own version
message instead of a crash. Each test renders the chain's configuration
(conf.d/dovecot/dovegate-<2.3|2.4>.conf, as installed), changes the passdb
block and runs the real Dovecot on it through tests/chain/run-dovecot.sh,
which gives Dovecot our modules (2.4: the settings module too).
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from chain import CHAIN_DIR, Chain, dovecot_line
from conftest import BUILD_DIR

RUN_DOVECOT = os.path.join(CHAIN_DIR, "run-dovecot.sh")
LIBS = os.path.join(BUILD_DIR, "src", "plugin", ".libs")


@pytest.fixture
def rendered():
    """A chain's rendered Dovecot configuration, not started."""
    state = tempfile.mkdtemp(prefix="dovegate-test-conf-", dir="/tmp")
    c = Chain(state, BUILD_DIR)
    c.prepare()
    yield c
    shutil.rmtree(state, ignore_errors=True)


def snippet_path(c):
    return os.path.join(os.path.dirname(c.values["DOVECOT_CONF"]), "dovecot-dovegate.conf")


def replace_passdb(c, body):
    """Replace the dovegate passdb block of the rendered snippet with
    `body` (the lines inside the block)."""
    path = snippet_path(c)
    text = open(path).read()
    if dovecot_line() == "2.4":
        rx = re.compile(r"^passdb dovegate \{\n.*?^\}\n", re.M | re.S)
        block = "passdb dovegate {\n" + body + "}\n"
    else:
        rx = re.compile(r"^passdb \{\n  driver = dovegate\n.*?^\}\n", re.M | re.S)
        block = "passdb {\n  driver = dovegate\n" + body + "}\n"
    new, n = rx.subn(lambda m: block, text)
    assert n == 1, f"no dovegate passdb block in {path}"
    with open(path, "w") as f:
        f.write(new)


def doveconf(c, *args):
    """doveconf on the rendered configuration, with our modules in view."""
    return subprocess.run([RUN_DOVECOT, c.values["DOVECOT_CONF"], LIBS, "doveconf",
                           "-c", c.values["DOVECOT_CONF"], *args],
                          capture_output=True, text=True, timeout=60)


def dovecot_output(c, pattern, libs=LIBS, timeout=20):
    """Start Dovecot on the rendered configuration until its stderr or log
    matches `pattern` (or it exits, or timeout); returns everything it said
    and whether it was still running. Stopped by pid."""
    log = c.values["LOG_DOVECOT"]
    open(log, "a").close()
    errf = tempfile.TemporaryFile()
    proc = subprocess.Popen([RUN_DOVECOT, c.values["DOVECOT_CONF"], libs],
                            stdin=subprocess.DEVNULL, stdout=errf, stderr=subprocess.STDOUT,
                            start_new_session=True)
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    try:
        while True:
            errf.seek(0)
            text = errf.read().decode(errors="replace") + open(log, errors="replace").read()
            if rx.search(text) or proc.poll() is not None or time.monotonic() > deadline:
                return text, proc.poll() is None
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        errf.close()


def assert_no_crash(text):
    for bad in ("Panic:", "killed with signal", "core dumped", "Segmentation"):
        assert bad not in text, text[-3000:]


def test_doveconf_shows_the_passdb_settings(rendered):
    c = rendered
    out = doveconf(c, "-n")
    assert out.returncode == 0, out.stderr
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    ports = [str(c.values[k]) for k in ("DOVECOT_PROXY_IMAP_PORT", "DOVECOT_PROXY_POP3_PORT",
                                        "DOVECOT_PROXY_SUBMISSION_PORT")]
    if dovecot_line() == "2.4":
        # declared by the settings module: shown as settings of their own
        block = re.search(r"^passdb dovegate \{\n(.*?)^\}", out.stdout, re.M | re.S)
        assert block, out.stdout
        assert re.search(rf"^\s+keys = {re.escape(keys)}$", block.group(1), re.M), block.group(1)
        assert re.search(rf"^\s+audience = {re.escape(audience)}$", block.group(1), re.M), block.group(1)
        assert re.search(rf"^\s+nginx_ports = {' '.join(ports)}$", block.group(1), re.M), \
            block.group(1)
    else:
        # (2.3's doveconf hides values of keys named like secrets without -P)
        assert re.search(rf"args = keys=\S+ audience={re.escape(audience)}\b",
                         out.stdout), out.stdout
        assert re.search(rf"args = .* nginx_ports={','.join(ports)}$", out.stdout, re.M), out.stdout


def test_misspelled_setting_is_refused_by_name(rendered):
    c = rendered
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    if dovecot_line() == "2.4":
        replace_passdb(c, f"  kyes = {keys}\n  audience = {audience}\n")
        out = doveconf(c, "-n")
        assert out.returncode != 0
        assert re.search(r"Unknown setting: kyes", out.stderr), out.stderr
    else:
        replace_passdb(c, f"  args = kyes={keys} audience={audience}\n")
        text, _ = dovecot_output(c, r"Fatal: passdb dovegate: ")
        assert re.search(r"Fatal: passdb dovegate: unknown argument 'kyes' "
                         r"\(known: keys, audience, skew, max_lifetime, replay_cache_size, "
                         r"allow_real_nets, nginx_ports\)", text), text[-3000:]
        assert_no_crash(text)


def test_out_of_range_value_is_refused_by_name(rendered):
    c = rendered
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    if dovecot_line() == "2.4":
        replace_passdb(c, f"  keys = {keys}\n  audience = {audience}\n  skew = 2h\n")
    else:
        replace_passdb(c, f"  args = keys={keys} audience={audience} skew=7200\n")
    text, _ = dovecot_output(c, r"passdb dovegate: skew=7200: expected a number from 0 to 600")
    assert "passdb dovegate: skew=7200: expected a number from 0 to 600" in text, text[-3000:]
    assert_no_crash(text)


def test_bad_nginx_port_is_refused_by_name(rendered):
    c = rendered
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    if dovecot_line() == "2.4":
        replace_passdb(c, f"  keys = {keys}\n  audience = {audience}\n  nginx_ports = 10143 imap\n")
    else:
        replace_passdb(c, f"  args = keys={keys} audience={audience} nginx_ports=10143,imap\n")
    pattern = r"passdb dovegate: nginx_ports=10143[ ,]imap: 'imap' is not a port number \(1-65535"
    text, _ = dovecot_output(c, pattern)
    assert re.search(pattern, text), text[-3000:]
    assert_no_crash(text)


def test_missing_audience_stops_auth_with_its_name(rendered):
    c = rendered
    keys = c.values["TICKET_KEYRING"]
    replace_passdb(c, f"  keys = {keys}\n" if dovecot_line() == "2.4" else f"  args = keys={keys}\n")
    text, _ = dovecot_output(c, r"passdb dovegate: missing audience")
    assert "passdb dovegate: missing audience (this backend's name" in text, text[-3000:]
    assert_no_crash(text)


@pytest.mark.skipif(dovecot_line() != "2.4", reason="args = is Dovecot 2.3's own syntax")
def test_23_args_line_under_24_names_the_24_keys(rendered):
    c = rendered
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    replace_passdb(c, f"  args = keys={keys} audience={audience}\n")
    out = doveconf(c, "-n")
    assert out.returncode != 0
    assert (f"args = keys={keys} audience={audience} is Dovecot 2.3 syntax; with Dovecot 2.4 "
            "write the settings inside passdb dovegate { }") in out.stderr, out.stderr
    assert "keys = FILE, audience = ID" in out.stderr, out.stderr


def with_abi(src, dst, version):
    """A copy of module `src` that claims another Dovecot ABI: its
    *_version string (DOVECOT_ABI_VERSION, e.g. "2.3.ABIv19(2.3.19.1)")
    rewritten in place, same length, as a module built against another
    Dovecot release would carry."""
    data = open(src, "rb").read()
    m = re.search(rb"2\.[34]\.ABIv\d+(\([0-9.]+\))?\x00", data)
    assert m, f"no ABI version string in {src}"
    old = m.group(0)[:-1]
    new = re.sub(rb"ABIv\d+", lambda a: b"ABIv" + b"9" * (len(a.group(0)) - 4), old)
    if new == old:
        new = old.replace(b"ABIv", b"ABIw")
    with open(dst, "wb") as f:
        f.write(data.replace(old + b"\x00", new + b"\x00"))
    return new.decode()


def test_module_for_another_dovecot_is_refused_not_crashed(rendered):
    c = rendered
    other = os.path.join(c.state, "other-abi")
    os.makedirs(other)
    os.chmod(other, 0o755)
    version = with_abi(os.path.join(LIBS, "libauthdb_dovegate.so"),
                       os.path.join(other, "libauthdb_dovegate.so"), "other")
    with_abi(os.path.join(LIBS, "lib20_dovegate_plugin.so"),
             os.path.join(other, "lib20_dovegate_plugin.so"), "other")
    settings = os.path.join(LIBS, "libdovegate_settings.so")
    if os.path.exists(settings):
        shutil.copy(settings, other)
    with open(c.values["DOVECOT_CONF"], "a") as f:
        f.write(f"login_plugin_dir = {other}\n")
    text, running = dovecot_output(c, r"Module is for different ABI version", libs=other)
    assert re.search(rf"Fatal: .*Module is for different ABI version {re.escape(version)} "
                     r"\(we have 2\.[34]\.ABIv", text), text[-3000:]
    assert_no_crash(text)


OPEN_PEERS = r"passdb dovegate: allow_real_nets is not set: tickets are accepted from any peer"


def test_unset_allow_real_nets_is_warned_about(rendered):
    """Without allow_real_nets a ticket works from any client: say so at start."""
    c = rendered
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    if dovecot_line() == "2.4":
        replace_passdb(c, f"  keys = {keys}\n  audience = {audience}\n")
    else:
        replace_passdb(c, f"  args = keys={keys} audience={audience}\n")
    text, running = dovecot_output(c, OPEN_PEERS)
    assert re.search(r"Warning: " + OPEN_PEERS + r", not only from nginx; set allow_real_nets "
                     r"to nginx's addresses", text), text[-3000:]
    assert running, text[-3000:]
    assert_no_crash(text)


OPEN_PORTS = (r"passdb dovegate: nginx_ports is not set: the listeners for nginx accept users' "
              r"own passwords")


def test_unset_nginx_ports_is_warned_about(rendered):
    """Without nginx_ports a local user can log in on the listeners for
    nginx with a password and an address of their choice: say so at start."""
    c = rendered
    keys, audience = c.values["TICKET_KEYRING"], c.values["TICKET_AUDIENCE"]
    nets = c.values["NGINX_ADDRESS"]
    if dovecot_line() == "2.4":
        replace_passdb(c, f"  keys = {keys}\n  audience = {audience}\n  allow_real_nets = {nets}\n")
    else:
        replace_passdb(c, f"  args = keys={keys} audience={audience} allow_real_nets={nets}\n")
    text, running = dovecot_output(c, OPEN_PORTS)
    assert re.search(r"Warning: " + OPEN_PORTS + r", sent by anyone in haproxy_trusted_networks "
                     r"with a client address of their choice; set nginx_ports to the ports of "
                     r"the haproxy = yes listeners", text), text[-3000:]
    assert re.search(r"passdb dovegate: audience=\S+ .*nginx_ports=none", text), text[-3000:]
    assert running, text[-3000:]
    assert_no_crash(text)


def test_set_allow_real_nets_and_nginx_ports_are_not_warned_about(rendered):
    c = rendered
    v = c.values
    text, _ = dovecot_output(c, r"passdb dovegate: audience=")
    assert re.search(r"passdb dovegate: audience=\S+ .*allow_real_nets=(?!any)", text), text[-3000:]
    ports = "[ ,]".join(str(v[k]) for k in ("DOVECOT_PROXY_IMAP_PORT", "DOVECOT_PROXY_POP3_PORT",
                                              "DOVECOT_PROXY_SUBMISSION_PORT"))
    assert re.search(rf"passdb dovegate: audience=\S+ .* nginx_ports={ports}$", text, re.M), \
        text[-3000:]
    assert not re.search(OPEN_PEERS, text), text[-3000:]
    assert not re.search(OPEN_PORTS, text), text[-3000:]
