"""Bad input: every trap in shared/notes/nginx-mail-facts.md, against the real
dovegate-auth (asked as nginx asks it: curl with nginx's headers, or a raw
socket for what curl cannot send) and through real nginx where it applies.

One private chain for the module: tickets for IMAP and POP3 but a master user
for SMTP (per-protocol credentials), a 2-second [server] timeout, and users
whose names and passwords are traps of their own. Each test checks what the
client sees and dovegate-auth's log line; every response head is kept and the
last test checks them all (never WAIT, always < 1024 bytes, Auth-Server an IP
literal).
"""
import imaplib
import ipaddress
import re
import smtplib
import socket
import subprocess
import time

import pytest
from chain import DEMO_USERS
from conftest import LogWatch, start_chain, stop_chain
from helpers import LOGGED_IN, nginx_headers

# '+', ' ', '%' (followed by hex digits: never decoded twice), both quotes
# and a UTF-8 letter: nginx escapes only the space and the '%'.
SPECIAL_PASSWORD = "p+ss w%41rd\"q'\u00e9"
LONG_USER = "u" * 255            # a ticket for it cannot fit in 1024 bytes
USER_128 = "v" * 128             # the longest user a ticket is sized for
USERS = DEMO_USERS + [
    ("zoe", SPECIAL_PASSWORD, "SHA512-CRYPT"),
    ("sam", "two words", "PLAIN"),      # Auth-Pass "two+words" must not match
    (LONG_USER, "long-pass", "PLAIN"),
    (USER_128, "v-pass", "PLAIN"),
]
TEMPFAIL = "Temporary server problem, try again later"
FAIL = "Invalid login or password"
RESPONSES = []  # (what, raw response head) of every answer in this file


@pytest.fixture(scope="module")
def traps():
    c = start_chain(users=USERS, proto_credentials={"smtp": "master"}, auth_timeout=2)
    yield c
    stop_chain(c)


@pytest.fixture
def log(traps):
    return LogWatch(traps.env["LOG_AUTH"])


def password(chain, name):
    return next(p for u, p, _ in chain.users if u == name)


def nginx_escape(value):
    """Auth-User/Auth-Pass as nginx writes them: %XX for 0x00-0x1F, space and '%'."""
    return "".join(f"%{b:02X}" if b < 0x21 or b == 0x25 else chr(b)
                   for b in value.encode()).encode("latin-1")


def parse_head(head):
    lines = head.decode("latin-1").split("\r\n")
    return {k.strip().lower(): v.strip() for k, v in
            (l.split(":", 1) for l in lines[1:] if ":" in l)}


def ask(chain, headers, what=""):
    """auth_http() with the raw head kept: curl, HTTP/1.0, nginx's headers.
    Values may be bytes (sent as they are: nginx does not escape UTF-8)."""
    argv = [b"curl", b"-sS", b"-0", b"-D", b"-", b"-o", b"/dev/null", b"--max-time", b"10"]
    for k, v in headers.items():
        argv += [b"-H", k.encode() + b": " + (v if isinstance(v, bytes) else v.encode())]
    out = subprocess.run(argv + [chain.env["AUTH_HTTP_URL"].encode()], capture_output=True,
                         timeout=20)
    assert out.returncode == 0, out.stderr
    head = out.stdout.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    RESPONSES.append((what or str(headers.get("Auth-User", "")), head))
    return parse_head(head)


def raw(chain, data, timeout=5.0):
    """Send bytes to dovegate-auth, read until it closes; the answer."""
    s = socket.create_connection(("127.0.0.1", chain.values["AUTH_HTTP_PORT"]), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    if out:
        RESPONSES.append((repr(data[:40]), out.split(b"\r\n\r\n")[0] + b"\r\n\r\n"))
    return out


def request_bytes(chain, headers, request_line=b"GET /auth HTTP/1.0"):
    """A request as nginx writes it (headers in the given order)."""
    lines = [request_line, b"Host: 127.0.0.1"]
    for k, v in headers.items():
        lines.append(k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()))
    return b"\r\n".join(lines) + b"\r\n\r\n"


def decision(log, **fields):
    parts = [rf"(?=.*\b{k}={re.escape(str(v))}(?:\s|$))" for k, v in fields.items()]
    return log.wait_for(r"\bdecision\b" + "".join(parts) + ".*").group(0)


def good_request_still_served(chain, log):
    """The daemon survived: a correct request right after is answered."""
    name = "alice"
    resp = ask(chain, nginx_headers(chain, name, password(chain, name)), "good")
    assert resp["auth-status"] == "OK"
    assert chain.alive()["dovegate-auth"]
    decision(log, user=name, result="ok", rip="192.0.2.7")


# ---- per-protocol credentials: SMTP with a master user, IMAP with tickets ------

def test_smtp_master_and_imap_ticket_through_nginx(traps, log):
    dovecot = LogWatch(traps.env["LOG_DOVECOT"])
    name, pw = "alice", password(traps, "alice")
    with smtplib.SMTP("127.0.0.1", int(traps.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example")
        assert s.login(name, pw)[0] == 235
        assert s.noop()[0] == 250
    decision(log, proto="smtp", user=name, result="ok", mode="master")
    dovecot.wait_for(rf"submission-login: .*Master user logging in as {name}\b"
                     rf"|Master user logging in as {name}\b")
    dovecot.wait_for(rf"submission-login: Info: {LOGGED_IN} user=<{name}>")

    c = imaplib.IMAP4("127.0.0.1", int(traps.env["NGINX_IMAP_PORT"]), timeout=15)
    assert c.login(name, pw)[0] == "OK"
    c.logout()
    decision(log, proto="imap", user=name, result="ok", mode="ticket")
    dovecot.wait_for(rf"imap-login: Info: {LOGGED_IN} user=<{name}>")


def test_auth_http_answers_per_protocol_credentials(traps, log):
    name, pw = "alice", password(traps, "alice")
    smtp = ask(traps, nginx_headers(traps, name, pw, proto="smtp"))
    assert smtp["auth-status"] == "OK"
    assert smtp["auth-user"] == f"{name}*{traps.env['MASTER_USER']}"
    assert smtp["auth-pass"] not in (pw, "") and not smtp["auth-pass"].startswith("v4.public.")
    assert smtp["auth-port"] == traps.env["DOVECOT_PROXY_SUBMISSION_PORT"]
    decision(log, proto="smtp", user=name, result="ok", mode="master")
    for proto in ("imap", "pop3"):  # no imap_mode/pop3_mode: mode = ticket
        resp = ask(traps, nginx_headers(traps, name, pw, proto=proto))
        assert resp["auth-user"] == name
        assert resp["auth-pass"].startswith("v4.public.")
        decision(log, proto=proto, user=name, result="ok", mode="ticket")


# ---- escaping: %XX only, a raw '+' is a plus -----------------------------------

def test_special_password_logs_in_through_nginx(traps, log):
    """'+', ' ', '%', quotes and UTF-8 in a password survive nginx and us."""
    port = int(traps.env["NGINX_IMAP_PORT"])
    c = imaplib.IMAP4("127.0.0.1", port, timeout=15)
    c._encoding = "utf-8"  # the password's UTF-8 bytes go raw in the quoted string
    assert c.login("zoe", SPECIAL_PASSWORD)[0] == "OK"
    c.logout()
    decision(log, proto="imap", method="plain", user="zoe", result="ok")

    c = imaplib.IMAP4("127.0.0.1", port, timeout=15)
    typ, _ = c.authenticate("PLAIN", lambda _: b"\0zoe\0" + SPECIAL_PASSWORD.encode())
    assert typ == "OK"
    c.logout()
    assert len(re.findall(r"decision .*user=zoe .*result=ok", log.text())) == 2
    assert "w%41rd" not in log.text() and "wArd" not in log.text()


def test_raw_plus_is_a_plus(traps, log):
    resp = ask(traps, nginx_headers(traps, "zoe", nginx_escape(SPECIAL_PASSWORD)))
    assert resp["auth-status"] == "OK"
    decision(log, user="zoe", result="ok")
    # were '+' a space, "two+words" would be sam's password "two words"
    resp = ask(traps, nginx_headers(traps, "sam", "two+words"))
    assert resp["auth-status"] == FAIL and int(resp["auth-wait"]) >= 1  # [penalty] delay
    decision(log, user="sam", result="fail", reason="bad_password")
    resp = ask(traps, nginx_headers(traps, "sam", "two%20words"))
    assert resp["auth-status"] == "OK"
    decision(log, user="sam", result="ok")


def test_percent_2B_decodes_to_plus(traps, log):
    every_byte = "".join(f"%{b:02x}" for b in SPECIAL_PASSWORD.encode())  # lower-case hex too
    for pw in (nginx_escape(SPECIAL_PASSWORD).replace(b"+", b"%2B"), every_byte):
        resp = ask(traps, nginx_headers(traps, "zoe", pw))
        assert resp["auth-status"] == "OK", pw
    assert len(re.findall(r"decision .*user=zoe .*result=ok", log.text())) == 2


@pytest.mark.parametrize("field,value", [("Auth-Pass", "pw%zz"), ("Auth-Pass", "pw%2"),
                                         ("Auth-Pass", "%"), ("Auth-User", "ali%zzce")])
def test_malformed_percent_escape_is_refused(traps, log, field, value):
    h = nginx_headers(traps, "alice", password(traps, "alice"))
    h[field] = value
    resp = ask(traps, h)
    # not nginx talking: an error that closes the client connection
    assert resp["auth-status"] == TEMPFAIL and "auth-wait" not in resp
    assert "auth-pass" not in resp
    decision(log, result="error", reason="bad_request")


# ---- NUL/CR/LF: passwords are covered in test_login.py; user names here ---------

@pytest.mark.parametrize("bad_user", ["alice%0D%0A", "ali%00ce", "alice%0ADELE 1", "%0D"])
@pytest.mark.parametrize("proto", ["pop3", "smtp"])
def test_control_bytes_in_user_name_are_refused(traps, log, bad_user, proto):
    resp = ask(traps, nginx_headers(traps, bad_user, password(traps, "alice"), proto=proto))
    assert resp["auth-status"] == FAIL and int(resp["auth-wait"]) >= 1  # [penalty] delay
    assert "auth-user" not in resp
    if proto == "smtp":
        assert resp["auth-error-code"] == "535 5.7.8"
    decision(log, proto=proto, result="fail", reason="bad_request")


# ---- method none: stale credentials are ignored ---------------------------------

def test_method_none_ignores_stale_credentials(traps, log):
    h = {"Auth-Method": "none", "Auth-User": "bogus%zz", "Auth-Pass": "stale%0D%0ARSET",
         "Auth-Protocol": "smtp", "Auth-Login-Attempt": "2", "Client-IP": "192.0.2.9",
         "Client-Host": "[UNAVAILABLE]", "Auth-SMTP-Helo": "mx.example.net",
         "Auth-SMTP-From": "MAIL FROM:<a@example.net>", "Auth-SMTP-To": "RCPT TO:<bob@Example.org>",
         traps.env["AUTH_HTTP_SECRET_HEADER"]: traps.env["AUTH_HTTP_SECRET"]}
    resp = ask(traps, h, "none")
    assert resp["auth-status"] == "OK"
    assert resp["auth-server"] == "127.0.0.1"
    assert resp["auth-port"] == str(traps.values["SUBMISSION_RELAY_PORT"])
    assert "auth-user" not in resp and "auth-pass" not in resp
    line = decision(log, proto="smtp", method="none", result="ok", mode="none")
    assert "stale" not in line and "RSET" not in line


# ---- the 1024-byte response head ---------------------------------------------

def test_255_byte_user_in_ticket_mode_is_refused_cleanly(traps, log):
    h = nginx_headers(traps, LONG_USER, "long-pass")
    h["Client-IP"] = "2001:db8:85a3:1234:5678:8a2e:370:7334"
    resp = ask(traps, h, "255-byte user")
    head = RESPONSES[-1][1]
    assert len(head) < 1024
    assert resp["auth-status"] == TEMPFAIL and resp["auth-wait"] == "3"
    assert "auth-user" not in resp and "auth-pass" not in resp  # no partial head
    decision(log, proto="imap", result="error", reason="response_too_large")
    # over SMTP (master) the same user fits
    resp = ask(traps, nginx_headers(traps, LONG_USER, "long-pass", proto="smtp"), "255 smtp")
    assert resp["auth-status"] == "OK" and len(RESPONSES[-1][1]) < 1024
    decision(log, proto="smtp", result="ok", mode="master")


def test_128_byte_user_gets_a_ticket_that_fits(traps, log):
    h = nginx_headers(traps, USER_128, "v-pass")
    h["Client-IP"] = "2001:db8:85a3:1234:5678:8a2e:370:7334"
    resp = ask(traps, h, "128-byte user")
    assert resp["auth-status"] == "OK"
    assert resp["auth-user"] == USER_128
    assert resp["auth-pass"].startswith("v4.public.") and len(resp["auth-pass"]) <= 640
    assert len(RESPONSES[-1][1]) < 1024
    decision(log, proto="imap", user=USER_128, result="ok", mode="ticket")


# ---- SMTP failures carry Auth-Error-Code ------------------------------------------

def test_smtp_failure_is_535_5_7_8(traps, log):
    resp = ask(traps, nginx_headers(traps, "alice", "wrong", proto="smtp"))
    assert resp["auth-status"] == FAIL
    assert resp["auth-error-code"] == "535 5.7.8" and int(resp["auth-wait"]) >= 1
    decision(log, proto="smtp", user="alice", result="fail", reason="bad_password")
    with smtplib.SMTP("127.0.0.1", int(traps.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
            s.login("bob", "wrong")
    assert exc.value.smtp_code == 535
    assert exc.value.smtp_error.startswith(b"5.7.8 Invalid login or password")
    decision(log, proto="smtp", user="bob", result="fail", reason="bad_password")


# ---- the shared secret ---------------------------------------------------------

@pytest.mark.parametrize("how", ["missing", "wrong", "longer", "empty-ish", "duplicate"])
def test_requests_without_the_secret_are_refused(traps, log, how):
    name, pw = "alice", password(traps, "alice")
    h = nginx_headers(traps, name, pw)
    key, secret = traps.env["AUTH_HTTP_SECRET_HEADER"], traps.env["AUTH_HTTP_SECRET"]
    if how == "missing":
        del h[key]
    elif how == "wrong":
        h[key] = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    elif how == "longer":
        h[key] = secret + "x"
    elif how == "empty-ish":
        h[key] = "-"
    if how == "duplicate":  # right value twice: not what nginx sends
        data = request_bytes(traps, h).replace(b"\r\n\r\n", f"\r\n{key}: {secret}\r\n\r\n".encode())
        out = raw(traps, data)
        resp = parse_head(out.split(b"\r\n\r\n")[0])
    else:
        resp = ask(traps, h)
    assert resp["auth-status"] == TEMPFAIL
    assert "auth-wait" not in resp and "auth-pass" not in resp
    decision(log, user=name, result="error", reason="bad_secret")


# ---- HTTP itself: refused without crashing, the daemon keeps serving -------------

def bad_http_cases(chain):
    good = request_bytes(chain, nginx_headers(chain, "alice", password(chain, "alice")))
    max_header_bytes = 8192  # dovegate-auth's default (the chain does not set it)
    return {
        "post": (good.replace(b"GET ", b"POST ", 1), b" 501 ", None),
        "http-0.9": (b"GET /auth\r\n\r\n", b" 400 ", None),
        "http-1.2": (good.replace(b"HTTP/1.0", b"HTTP/1.2", 1), b" 400 ",
                     r"refused .*reason=bad_http_version detail=\"HTTP/1\.2\""),
        "http-2.0": (good.replace(b"HTTP/1.0", b"HTTP/2.0", 1), b" 400 ", None),
        # a TLS hello: its NUL bytes get the connection cut without an answer
        "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 \xff\r\n\r\n", b"",
                    r"refused request=http result=error reason=nul_byte\b"),
        "no-version": (b"GET\r\n\r\n", b" 400 ", None),
        "oversized-header": (good.replace(b"Host: 127.0.0.1",
                                          b"X-Big: " + b"a" * (max_header_bytes + 1), 1), b" 400 ", None),
        "too-many-headers": (good.replace(b"Host: 127.0.0.1", b"\r\n".join(
            b"X-Filler-%d: v" % i for i in range(100)), 1), b" 200 ",
            r"decision .*result=error reason=bad_request detail=\"10\d headers \(at most 64\)\""),
    }


@pytest.mark.parametrize("case", ["post", "http-0.9", "http-1.2", "http-2.0", "garbage",
                                  "no-version", "oversized-header", "too-many-headers"])
def test_bad_http_is_refused_and_daemon_keeps_serving(traps, log, case):
    data, status, logged = bad_http_cases(traps)[case]
    out = raw(traps, data)
    if status == b"":
        assert out == b"", out
    else:
        assert out.split(b"\r\n", 1)[0].startswith(b"HTTP/1.") and status in out.split(b"\r\n", 1)[0], out
    assert b"Auth-Status: OK" not in out and b"Auth-Pass" not in out
    if status == b" 200 ":
        assert parse_head(out.split(b"\r\n\r\n")[0])["auth-status"] == TEMPFAIL
    if logged:
        log.wait_for(logged)
    else:  # refused by the HTTP layer: no decision was made
        time.sleep(0.1)
        assert "decision" not in log.text()
    good_request_still_served(traps, log)


def test_slow_client_is_cut_off_while_others_are_served(traps, log):
    timeout = traps.auth_timeout
    half = request_bytes(traps, nginx_headers(traps, "alice", password(traps, "alice")))[:90]
    s = socket.create_connection(("127.0.0.1", traps.values["AUTH_HTTP_PORT"]), timeout=timeout + 5)
    try:
        s.sendall(half)
        start = time.monotonic()
        for _ in range(3):  # answered at once while the slow one hangs
            t = time.monotonic()
            assert ask(traps, nginx_headers(traps, "carol", password(traps, "carol")))["auth-status"] == "OK"
            assert time.monotonic() - t < 1.0
        assert s.recv(4096) == b""  # closed without an answer
        elapsed = time.monotonic() - start
    finally:
        s.close()
    assert timeout - 0.5 <= elapsed <= timeout + 1.5, elapsed
    assert len(re.findall(r"\bdecision\b", log.text())) == 3  # the three good ones only
    assert "user=alice" not in log.text()
    good_request_still_served(traps, log)


# ---- over every answer above ------------------------------------------------------

def test_every_answer_is_safe_for_nginx(traps):
    """Never WAIT; Auth-Wait >= 1 when present; heads < 1024 bytes; Auth-Server
    an IP literal (no brackets) with a valid Auth-Port."""
    ask(traps, nginx_headers(traps, "alice", password(traps, "alice")), "final")
    assert len(RESPONSES) > 1
    for what, head in RESPONSES:
        assert len(head) < 1024, (what, len(head))
        h = parse_head(head.split(b"\r\n\r\n")[0])
        if "auth-status" not in h:  # the HTTP layer's own refusals
            assert not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"), what
            continue
        assert h["auth-status"] != "WAIT" and b"WAIT" not in head, what
        if "auth-wait" in h:
            assert int(h["auth-wait"]) >= 1, what
        if h["auth-status"] == "OK":
            server = h["auth-server"]
            assert "[" not in server and ipaddress.ip_address(server), what
            assert 1 <= int(h["auth-port"]) <= 65535, what
