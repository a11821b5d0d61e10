"""The dovegate login plugin in imap-login, pop3-login and submission-login.

What an operator relies on:
- nginx (a haproxy listener, peer in haproxy_trusted_networks) logs in with
  plaintext LOGIN while disable_plaintext_auth = yes refuses it to direct
  clients without TLS;
- a login ticket's session id (and its origin, when no PROXY header gave
  one) shows in the "Login:" line and in the imap/pop3/submission log prefix;
- IMAP ID / XCLIENT values Dovecot takes from login_trusted_networks are
  logged with the proxy they came from;
- a slow auth (> 30 s) through nginx succeeds: imap-login's untagged
  "* OK Waiting for authentication process to respond.." never reaches
  nginx, which fails the login without the plugin.

Ticket facts are simulated with a passwd-file passdb placed first whose users
carry the dovegate passdb's fields (dovegate_session=...), so these tests do
not depend on the ticket mode of dovegate-auth or on the dovegate passdb.
Everything but the nginx tests talks to Dovecot with raw sockets, sending
the PROXY header itself where it plays nginx. Every socket has a timeout.
"""
import base64
import contextlib
import imaplib
import os
import re
import shutil
import socket
import tempfile
import threading
import time

import pytest

from conftest import LogWatch, start_chain, stop_chain
from helpers import LOGGED_IN
from chain import DEMO_USERS, dovecot_conf, free_ports

TIMEOUT = 10  # seconds, for every socket operation of the fast tests

# Users whose (simulated) passdb reply carries login-ticket fields.
TICKET_SESSION = "dg-Tkt_0123456789.abcdefghij~XYZ"
TICKET_FIELDS = {
    "tix": ("tix-pass-5", f"dovegate_session={TICKET_SESSION} dovegate_rip=192.0.2.44 "
                          "dovegate_rport=40404 dovegate_tls=yes dovegate_kid=test-kid"),
    # IPv6 origin without a port; the longest session id Dovecot takes.
    "tix6": ("tix6-pass-6", f"dovegate_session={'S' * 64} dovegate_rip=2001:db8::44 dovegate_tls=no"),
    # One character too long for Dovecot's master login request.
    "badtix": ("badtix-pass-7", f"dovegate_session={'L' * 65} dovegate_tls=yes"),
}
TICKET_USERS = [(u, pw, "PLAIN") for u, (pw, _) in TICKET_FIELDS.items()]


# ---- chains of this module ------------------------------------------------

@contextlib.contextmanager
def private_chain(files=None, **kwargs):
    """A chain of our own (conftest's start_chain: fresh state dir, logs in
    failure reports, stopped by pid). files(dir) writes what its Dovecot
    settings name into a directory of ours, before the chain starts, and
    returns more Chain() keyword arguments."""
    aux = tempfile.mkdtemp(prefix="dovegate-test-aux-", dir="/tmp")
    os.chmod(aux, 0o755)  # read by Dovecot's unprivileged auth process
    try:
        if files:
            kwargs.update(files(aux))
        c = start_chain(**kwargs)
        try:
            yield c
        finally:
            stop_chain(c)
    finally:
        shutil.rmtree(aux, ignore_errors=True)


def write_file(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


@pytest.fixture(scope="module")
def pchain():
    """Ticket fields from a passwd-file passdb placed first, login_trusted_networks
    = 127.0.0.1 (for IMAP ID / XCLIENT), and direct POP3 and submission ports."""
    pop3_port, submission_port = free_ports(2)

    def files(aux):
        fields = os.path.join(aux, "ticket-fields")
        write_file(fields, "".join(f"{u}:{{PLAIN}}{pw}::::::{extra}\n"
                                   for u, (pw, extra) in TICKET_FIELDS.items()))
        pre = ("# test_login_plugin: passdb replies with login-ticket fields\n"
               + dovecot_conf(
                   "passdb {\n  driver = passwd-file\n"
                   f"  args = scheme=PLAIN username_format=%u {fields}\n}}\n",
                   "passdb ticket-fields {\n  driver = passwd-file\n"
                   f"  passwd_file_path = {fields}\n  default_password_scheme = PLAIN\n}}\n"))
        post = ("login_trusted_networks = 127.0.0.1\n"
                f"service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3_port}\n  }}\n}}\n"
                f"service submission-login {{\n  inet_listener submission {{\n"
                f"    port = {submission_port}\n  }}\n}}\n")
        return {"dovecot_pre": pre, "dovecot_post": post}

    with private_chain(files, users=DEMO_USERS + TICKET_USERS) as c:
        c.env["DIRECT_POP3_PORT"] = str(pop3_port)
        c.env["DIRECT_SUBMISSION_PORT"] = str(submission_port)
        yield c


@pytest.fixture
def plogs(pchain):
    return LogWatch(pchain.env["LOG_DOVECOT"])


# ---- a raw line client ----------------------------------------------------

class Raw:
    """One TCP connection to Dovecot; optionally plays nginx (PROXY v1 header)."""

    def __init__(self, port, source="127.0.0.1", proxy_from=None, timeout=TIMEOUT):
        self.sock = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout,
                                             source_address=(source, 0))
        if proxy_from:  # (IPv4 client address, port)
            ip, cport = proxy_from
            self.sock.sendall(f"PROXY TCP4 {ip} 127.0.0.1 {cport} {port}\r\n".encode())
        self.file = self.sock.makefile("rb")
        self.seen = []

    def line(self):
        raw = self.file.readline()
        if not raw:
            raise EOFError(f"connection closed; seen: {self.seen!r}")
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.seen.append(text)
        return text

    def until(self, pattern):
        """Lines up to and including the first matching `pattern` (re.match)."""
        out = []
        while True:
            out.append(self.line())
            if re.match(pattern, out[-1]):
                return out

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def close(self):
        self.file.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def imap_login(raw, name, password, before=()):
    """Greeting, optional commands, LOGIN; returns the tagged LOGIN answer."""
    raw.until(r"\* OK ")
    for i, cmd in enumerate(before):
        raw.send(f"p{i} {cmd}")
        raw.until(rf"p{i} ")
    raw.send(f'a LOGIN "{name}" "{password}"')
    answer = raw.until(r"a ")[-1]
    if answer.startswith("a OK"):
        raw.send("z LOGOUT")
        raw.until(r"z ")
    return answer


def pop3_login(raw, name, password, before=()):
    raw.until(r"\+OK")
    for cmd in before:
        raw.send(cmd)
        raw.until(r"[+-]")
    raw.send(f"USER {name}")
    raw.until(r"[+-]")
    raw.send(f"PASS {password}")
    answer = raw.line()
    if answer.startswith("+OK"):
        raw.send("QUIT")
        raw.line()
    return answer


def smtp_login(raw, name, password, before=()):
    raw.until(r"220 ")
    raw.send("EHLO client.example")
    raw.until(r"250 ")
    for cmd in before:  # XCLIENT answers with a new greeting
        raw.send(cmd)
        raw.until(r"\d{3} ")
        raw.send("EHLO client.example")
        raw.until(r"250 ")
    raw.send("AUTH PLAIN " + base64.b64encode(f"\0{name}\0{password}".encode()).decode())
    answer = raw.line()
    if answer.startswith("235"):
        raw.send("QUIT")
        raw.line()
    return answer


LOGIN = {"imap": imap_login, "pop3": pop3_login, "submission": smtp_login}
PROXY_PORT = {"imap": "DOVECOT_PROXY_IMAP_PORT", "pop3": "DOVECOT_PROXY_POP3_PORT",
              "submission": "DOVECOT_PROXY_SUBMISSION_PORT"}
OK = {"imap": "a OK", "pop3": "+OK", "submission": "235"}


def plugin_line(watch, service, user):
    """The plugin's line for `user`, as a dict of its key=value fields."""
    m = watch.wait_for(rf"^\S+ \S+ {service}-login: Info: dovegate: login user=<{re.escape(user)}> (.*)$")
    fields = dict(re.findall(r"(\w+)=(<[^>]*>|\S+)", m.group(1)))
    fields["_line"] = m.group(0)
    return fields


def login_line(watch, service, user):
    return watch.wait_for(rf"{service}-login: Info: {LOGGED_IN} user=<{re.escape(user)}>.*").group(0)


# ---- ticket facts ---------------------------------------------------------

def test_ticket_session_and_origin_without_proxy_header(pchain, plogs):
    """No PROXY header: the ticket gives session and origin; one exact plugin line."""
    with Raw(pchain.env["DOVECOT_IMAP_PORT"]) as r:
        assert imap_login(r, "tix", "tix-pass-5").startswith("a OK"), r.seen
    m = plogs.wait_for(r"imap-login: Info: (dovegate: login user=<tix> .*)$")
    assert m.group(1) == (f"dovegate: login user=<tix> session=<{TICKET_SESSION}> "
                          "origin=192.0.2.44:40404 via=127.0.0.1 tls=yes "
                          "origin_from=ticket session_from=ticket kid=test-kid")
    line = login_line(plogs, "imap", "tix")
    assert "rip=192.0.2.44," in line and "rport=40404," in line, line
    assert f"session=<{TICKET_SESSION}>" in line, line
    # The imap process has the session in its log prefix.
    plogs.wait_for(rf"imap\(tix\)<\d+><{re.escape(TICKET_SESSION)}>: Info: Disconnected: Logged out")


@pytest.mark.parametrize("service", ["imap", "pop3", "submission"])
def test_ticket_session_behind_proxy_header(pchain, plogs, service):
    """Through a trusted proxy: plaintext login accepted (disable_plaintext_auth
    = yes), the PROXY header's origin kept, the ticket's session applied and
    seen by the post-login process."""
    with Raw(pchain.env[PROXY_PORT[service]], proxy_from=("203.0.113.7", 50123)) as r:
        answer = LOGIN[service](r, "tix", "tix-pass-5")
        assert answer.startswith(OK[service]), r.seen
    f = plugin_line(plogs, service, "tix")
    assert f["session"] == f"<{TICKET_SESSION}>" and f["session_from"] == "ticket", f["_line"]
    assert f["origin"] == "203.0.113.7:50123" and f["origin_from"] == "proxy", f["_line"]
    assert f["via"] == "127.0.0.1" and f["tls"] == "yes" and f["kid"] == "test-kid", f["_line"]
    # The ticket disagreed with the proxy about the origin: logged, not applied.
    assert f["ticket_origin"] == "192.0.2.44:40404", f["_line"]
    line = login_line(plogs, service, "tix")
    assert "rip=203.0.113.7," in line and "rport=50123," in line, line
    assert f"session=<{TICKET_SESSION}>" in line, line
    plogs.wait_for(rf"{service}\(tix\)<\d+><{re.escape(TICKET_SESSION)}>: Info: Disconnected")


def test_ticket_ipv6_origin_without_port_and_64_char_session(pchain, plogs):
    with Raw(pchain.env["DOVECOT_IMAP_PORT"]) as r:
        assert imap_login(r, "tix6", "tix6-pass-6").startswith("a OK"), r.seen
    f = plugin_line(plogs, "imap", "tix6")
    assert f["origin"] == "2001:db8::44" and f["origin_from"] == "ticket", f["_line"]
    assert f["session"] == "<" + "S" * 64 + ">" and f["tls"] == "no", f["_line"]
    assert "kid" not in f, f["_line"]
    line = login_line(plogs, "imap", "tix6")
    assert "rip=2001:db8::44," in line, line
    plogs.wait_for(rf"imap\(tix6\)<\d+><{'S' * 64}>: Info: Disconnected")


def test_unusable_ticket_session_refuses_login(pchain, plogs):
    """A 65-character session id does not fit Dovecot's master login request:
    the login fails closed, with the reason in the log."""
    with Raw(pchain.env["DOVECOT_IMAP_PORT"]) as r:
        answer = imap_login(r, "badtix", "badtix-pass-7")
    assert answer.startswith("a NO") and "Internal login failure" in answer, answer
    plogs.wait_for(r"imap-login: Error: dovegate: login refused: ticket of user=<badtix> "
                   r"unusable: invalid dovegate_session 'L{65}'")
    plogs.wait_for(r"imap-login: Info: (?:Disconnected|Login aborted).*user=<badtix>")
    assert not re.search(rf"{LOGGED_IN} user=<badtix>", plogs.text())


# ---- values forwarded by login_trusted_networks ---------------------------

def test_imap_id_forwarding_is_logged(pchain, plogs):
    with Raw(pchain.env["DOVECOT_IMAP_PORT"]) as r:
        answer = imap_login(r, "alice", "alice-pass-1", before=[
            'ID ("x-originating-ip" "198.51.100.7" "x-originating-port" "5555" '
            '"x-session-id" "fwd-imap-1")'])
        assert answer.startswith("a OK"), r.seen
    f = plugin_line(plogs, "imap", "alice")
    assert (f["origin"], f["origin_from"]) == ("198.51.100.7:5555", "imap-id"), f["_line"]
    assert (f["session"], f["session_from"]) == ("<fwd-imap-1>", "imap-id"), f["_line"]
    assert f["via"] == "127.0.0.1" and f["tls"] == "unknown", f["_line"]
    line = login_line(plogs, "imap", "alice")
    assert "rip=198.51.100.7," in line and "session=<fwd-imap-1>" in line, line


@pytest.mark.parametrize("service", ["pop3", "submission"])
def test_xclient_forwarding_is_logged(pchain, plogs, service):
    port = pchain.env["DIRECT_POP3_PORT" if service == "pop3" else "DIRECT_SUBMISSION_PORT"]
    session = f"fwd-{service}-2"
    with Raw(port) as r:
        answer = LOGIN[service](r, "carol", "carol-pass-3", before=[
            f"XCLIENT ADDR=198.51.100.8 PORT=6666 SESSION={session}"])
        assert answer.startswith(OK[service]), r.seen
    f = plugin_line(plogs, service, "carol")
    assert (f["origin"], f["origin_from"]) == ("198.51.100.8:6666", "xclient"), f["_line"]
    assert (f["session"], f["session_from"]) == (f"<{session}>", "xclient"), f["_line"]
    assert f["via"] == "127.0.0.1", f["_line"]
    line = login_line(plogs, service, "carol")
    assert "rip=198.51.100.8," in line and f"session=<{session}>" in line, line


def test_direct_login_without_forwarding_gets_no_plugin_line(pchain, plogs):
    with Raw(pchain.env["DOVECOT_IMAP_PORT"]) as r:
        assert imap_login(r, "alice", "alice-pass-1").startswith("a OK"), r.seen
    login_line(plogs, "imap", "alice")
    assert "dovegate: login user=" not in plogs.text()


# ---- disable_plaintext_auth and the trust anchor (session chain) ----------

def test_direct_plaintext_login_refused_without_tls(chain, logs):
    """disable_plaintext_auth = yes holds for direct clients. From 127.0.0.2:
    Dovecot counts a connection from its own address as secured."""
    with Raw(chain.env["DOVECOT_IMAP_PORT"], source="127.0.0.2") as r:
        greeting = r.until(r"\* OK ")[-1]
        assert "LOGINDISABLED" in greeting and "AUTH=PLAIN" not in greeting, greeting
        r.send('a LOGIN "alice" "alice-pass-1"')
        answer = r.until(r"a ")[-1]
        assert answer.startswith("a NO"), r.seen
        r.send("b AUTHENTICATE PLAIN " + base64.b64encode(b"\0alice\0alice-pass-1").decode())
        answer = r.until(r"b ")[-1]
        assert answer.startswith("b NO"), r.seen
    logs["dovecot"].wait_for(r"imap-login: Info: Login failed: (?:Plaintext|Cleartext) authentication disabled.*rip=127\.0\.0\.2")
    assert not re.search(rf"{LOGGED_IN} user=<alice>", logs["dovecot"].text())


def test_proxy_header_from_untrusted_address_is_dropped(chain, logs):
    """Only haproxy_trusted_networks reach the haproxy listener, so nobody
    else can get what the plugin grants to a trusted proxy."""
    with Raw(chain.env["DOVECOT_PROXY_IMAP_PORT"], source="127.0.0.2",
             proxy_from=("203.0.113.8", 40000)) as r:
        with pytest.raises((EOFError, ConnectionResetError)):
            r.line()
    logs["dovecot"].wait_for(r"haproxy: Client not trusted \(rip=127\.0\.0\.2\)")


def test_nginx_login_is_logged_with_its_proxy(chain, logs):
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=15)
    client_port = c.sock.getsockname()[1]
    assert c.login("alice", "alice-pass-1")[0] == "OK"
    c.logout()
    f = plugin_line(logs["dovecot"], "imap", "alice")
    assert f["origin"] == f"127.0.0.1:{client_port}" and f["origin_from"] == "proxy", f["_line"]
    assert f["via"] == "127.0.0.1", f["_line"]
    assert f["session_from"] in ("dovecot", "ticket"), f["_line"]  # master or ticket mode
    line = login_line(logs["dovecot"], "imap", "alice")
    assert f"session={f['session']}" in line, line


# ---- slow auth through nginx ----------------------------------------------

SLOW_USER = ("slowpoke", "slow-pass", "PLAIN")
SLOW_SECS = 31  # imap-login says "* OK Waiting for authentication..." at 30 s

CHECKPASSWORD = f"""#!/bin/sh
# Dovecot checkpassword passdb for test_login_plugin: fd 3 carries
# "user\\0password\\0...". Never decides: exit 1 (login failed) makes Dovecot
# go on to the next passdb (result_failure = continue is 2.3's default).
# Slow for {SLOW_USER[0]} only.
user=$(head -c 1024 <&3 | tr '\\000' '\\n' | head -n 1)
[ "$user" = {SLOW_USER[0]} ] && sleep {SLOW_SECS}
exit 1
"""


# Dovecot 2.4 has no checkpassword passdb: the same slow passdb in Lua
# (package dovecot-auth-lua), run by an auth worker so that the sleep blocks
# only this one request.
SLOW_LUA = f"""-- Dovecot Lua passdb for test_login_plugin: never decides (user
-- unknown: Dovecot goes on to the next passdb); slow for {SLOW_USER[0]} only.
-- An auth worker calls the lookup; the verify is there for completeness.
function auth_passdb_lookup(request)
  if request.user == "{SLOW_USER[0]}" then
    os.execute("sleep {SLOW_SECS}")
  end
  return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, ""
end

function auth_passdb_verify(request, password)
  return auth_passdb_lookup(request)
end
"""


def slow_files(post):
    def files(aux):
        if dovecot_conf("2.3", "2.4") == "2.3":
            script = os.path.join(aux, "slow-checkpassword.sh")
            write_file(script, CHECKPASSWORD, 0o755)
            passdb = f"passdb {{\n  driver = checkpassword\n  args = {script}\n}}\n"
        else:
            script = os.path.join(aux, "slow.lua")
            write_file(script, SLOW_LUA)
            passdb = (f"passdb slow {{\n  driver = lua\n  lua_file = {script}\n"
                      "  use_worker = yes\n}\n")
        pre = "# test_login_plugin: a slow passdb for one user\n" + passdb
        return {"dovecot_pre": pre, "dovecot_post": post}
    return files


def slow_login(c, result):
    watch = {k: LogWatch(c.env[k]) for k in ("LOG_DOVECOT", "LOG_NGINX")}
    start = time.monotonic()
    imap = None
    try:
        imap = imaplib.IMAP4("127.0.0.1", int(c.env["NGINX_IMAP_PORT"]), timeout=SLOW_SECS + 25)
        result["answer"] = imap.login(SLOW_USER[0], SLOW_USER[1])
        imap.logout()
    except (imaplib.IMAP4.error, OSError, EOFError) as e:
        result["error"] = e
        if imap is not None:
            with contextlib.suppress(OSError):
                imap.shutdown()
    result["secs"] = time.monotonic() - start
    result["watch"] = watch


@pytest.fixture(scope="module")
def slow_logins():
    """Both slow logins at once (one with the plugin, one without), ~32 s."""
    users = DEMO_USERS + [SLOW_USER]
    with private_chain(slow_files(""), users=users) as with_plugin, \
            private_chain(slow_files(
                "# no login plugin; plaintext from nginx allowed the old way\n"
                + dovecot_conf("login_plugins =\ndisable_plaintext_auth = no\n",
                               "login_plugins {\n  dovegate = no\n}\n"
                               "auth_allow_cleartext = yes\n")), users=users) as without:
        results = {"plugin": {}, "noplugin": {}}
        threads = [threading.Thread(target=slow_login, args=(with_plugin, results["plugin"])),
                   threading.Thread(target=slow_login, args=(without, results["noplugin"]))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SLOW_SECS + 60)
        yield results


def test_slow_auth_through_nginx_succeeds_with_plugin(slow_logins):
    r = slow_logins["plugin"]
    assert "error" not in r, f"{r.get('error')!r}\n" + r["watch"]["LOG_NGINX"].text()[-3000:]
    assert r["answer"][0] == "OK"
    assert r["secs"] >= SLOW_SECS - 1, r["secs"]
    dovecot = r["watch"]["LOG_DOVECOT"]
    # The line was due and kept from nginx.
    dovecot.wait_for(r"imap-login: Debug: dovegate: kept status line from the proxy: "
                     r"OK Waiting for authentication process to respond")
    login_line(dovecot, "imap", SLOW_USER[0])
    assert "invalid response" not in r["watch"]["LOG_NGINX"].text()


def test_slow_auth_through_nginx_fails_without_plugin(slow_logins):
    """The problem is real: nginx 1.22 takes the untagged line for its answer."""
    r = slow_logins["noplugin"]
    assert "error" in r, f"login unexpectedly succeeded: {r.get('answer')!r}"
    assert r["secs"] >= 29, r["secs"]
    r["watch"]["LOG_NGINX"].wait_for(r"upstream sent invalid response")
    # (Dovecot still completes that login a second later, for nobody.)
