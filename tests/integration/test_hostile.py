"""Hostile input (issue 7): what an attacker, a broken client or a port
scanner can send, against the real dovegate-auth (raw sockets, curl), through
the real nginx (imaplib, poplib, raw IMAP) and, for tickets, to Dovecot's
haproxy listener the way nginx logs in. Each case gets a clear refusal and a
log line, and the daemon keeps serving.

Covered elsewhere, not repeated here: bad %-escapes, CR/LF/NUL in decoded
credentials sent directly, AUTHENTICATE PLAIN with CR/LF through nginx, 100
headers, one oversized header, bad HTTP versions, one slow client
(test_traps.py, test_login.py); replayed, expired, wrongly addressed,
tampered and unknown-key tickets (test_tickets.py).
"""
import base64
import imaplib
import os
import poplib
import re
import resource
import socket
import time

import pytest
from chain import DEMO_USERS
from conftest import LogWatch, start_chain, stop_chain
from helpers import LOGIN_GONE, nginx_headers, user
from test_tickets import ProxiedIMAP4, dovegate, good_claims, mint, proxy_login
from test_traps import ask, parse_head, raw, request_bytes

TIMEOUT = 2          # dovegate-auth's [server] timeout in this module's chain
FAIL = "Invalid login or password"


@pytest.fixture(scope="module")
def hostile():
    # penalties off: the refusals below would otherwise delay one another
    c = start_chain(users=DEMO_USERS, auth_timeout=TIMEOUT, penalty={"enabled": "no"})
    yield c
    stop_chain(c)


@pytest.fixture
def alog(hostile):
    return LogWatch(hostile.env["LOG_AUTH"])


@pytest.fixture
def dlog(hostile):
    return LogWatch(hostile.env["LOG_DOVECOT"])


def auth_pid(chain):
    return chain.procs["dovegate-auth"].pid


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def good_request(chain):
    name, pw = user(chain, "carol")
    return request_bytes(chain, nginx_headers(chain, name, pw))


def still_serving(chain, alog, within=1.0):
    """A good request right now is answered OK, quickly, and logged."""
    name, pw = user(chain, "carol")
    t = time.monotonic()
    assert ask(chain, nginx_headers(chain, name, pw), "good")["auth-status"] == "OK"
    assert time.monotonic() - t < within
    alog.wait_for(rf"\bdecision\b.*\buser={name}\b.*\bresult=ok\b")
    assert chain.alive()["dovegate-auth"]


def closed_by_server(s, deadline):
    """True once the server closed s (EOF or reset) before `deadline`."""
    s.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


# ---- HTTP framing --------------------------------------------------------------

@pytest.mark.parametrize("version", [b"HTTP/1.0", b"HTTP/1.1"])
def test_answers_carry_content_length_zero(hostile, alog, version):
    """wrk and strict HTTP clients need the empty body's length; nginx does not
    mind it. Exactly one Content-Length: 0, nothing after the head."""
    name, pw = user(hostile, "alice")
    for password, status in ((pw, b"Auth-Status: OK"), ("wrong", FAIL.encode())):
        headers = dict(nginx_headers(hostile, name, password), Connection="close")
        out = raw(hostile, request_bytes(hostile, headers, b"GET /auth " + version))
        head, _, body = out.partition(b"\r\n\r\n")
        assert status in head, out
        assert re.findall(rb"(?im)^content-length:[^\r\n]*", head) == [b"Content-Length: 0"], head
        assert body == b"", out


# ---- slow and idle connections ---------------------------------------------------

def test_trickling_client_is_cut_off_at_the_timeout(hostile, alog):
    """Slowloris: one byte every 0.4 s would keep an inactivity timeout happy
    for hours. The head must be complete within [server] timeout of its first
    byte; meanwhile other requests are answered at once."""
    data = good_request(hostile)
    s = socket.create_connection(("127.0.0.1", hostile.values["AUTH_HTTP_PORT"]), timeout=5)
    start = time.monotonic()
    cut = None
    try:
        for i in range(len(data) - 1):  # never the last byte: the head stays open
            try:
                s.sendall(data[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                cut = time.monotonic() - start
                break
            if i == 2:
                still_serving(hostile, alog)
            if closed_by_server(s, time.monotonic() + 0.4):
                cut = time.monotonic() - start
                break
            if time.monotonic() - start > TIMEOUT + 5:
                break
    finally:
        s.close()
    assert cut is not None, f"still open {time.monotonic() - start:.1f} s after the first byte"
    assert TIMEOUT <= cut <= TIMEOUT + 1.5, cut
    alog.wait_for(r"refused request=http result=error reason=slow_request detail=\"head not "
                  rf"complete \d+ s after its first byte \(timeout {TIMEOUT} s\)\"")
    still_serving(hostile, alog)


def test_half_open_connections_time_out_while_others_are_served(hostile, alog):
    """200 connections that send nothing or half a head: good requests are
    answered meanwhile, every idle one is closed by the timeout, and the
    daemon's descriptors come back to where they were."""
    pid = auth_pid(hostile)
    before = open_fds(pid)
    half = good_request(hostile)[:60]
    socks = []
    try:
        for i in range(200):
            s = socket.create_connection(("127.0.0.1", hostile.values["AUTH_HTTP_PORT"]), timeout=5)
            if i % 4 == 0:
                s.sendall(half)
            socks.append(s)
        for _ in range(3):
            still_serving(hostile, alog)
        deadline = time.monotonic() + TIMEOUT + 3
        open_ones = [s for s in socks if not closed_by_server(s, deadline)]
        assert not open_ones, f"{len(open_ones)} of 200 idle connections still open"
    finally:
        for s in socks:
            s.close()
    for _ in range(20):  # the last closes may still be under way
        if open_fds(pid) <= before + 1:
            break
        time.sleep(0.1)
    assert open_fds(pid) <= before + 1, (before, open_fds(pid))
    still_serving(hostile, alog)


def test_out_of_descriptors_pauses_accepting_then_recovers(hostile, alog):
    """With its descriptors used up by idle connections, dovegate-auth says so
    in its log and pauses accepting instead of spinning on accept(); once the
    idle connections time out it serves again by itself (its health checks,
    out of descriptors too, mark the backends down meanwhile: temporary
    failures, then up again)."""
    pid = auth_pid(hostile)
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (open_fds(pid) + 20, hard))
    socks = []
    try:
        for _ in range(40):  # more than it can accept; the kernel queues the rest
            socks.append(socket.create_connection(("127.0.0.1", hostile.values["AUTH_HTTP_PORT"]),
                                                  timeout=5))
        alog.wait_for(r"cannot accept connections: Too many open files; pausing \d+ ms \(1 times")
        cpu = cpu_seconds(pid)
        time.sleep(1.0)
        assert cpu_seconds(pid) - cpu < 0.3, "busy loop on accept()"
        deadline = time.monotonic() + TIMEOUT * 3 + 3
        open_ones = [s for s in socks if not closed_by_server(s, deadline)]
        assert not open_ones, f"{len(open_ones)} idle connections never closed"
        assert alog.text().count("cannot accept connections") <= 2, "log flood"
    finally:
        for s in socks:
            s.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    # its health checks could not connect either: backends come back up first
    hostile.wait_backends_up()
    still_serving(hostile, alog)


# ---- malformed requests --------------------------------------------------------------

def malformed(chain):
    good = good_request(chain)
    head = good[:-2]
    return {
        "huge-request-line": good.replace(b"GET /auth ", b"GET /auth?" + b"a" * 100000 + b" ", 1),
        "body": head + b"Content-Length: 5\r\n\r\nhello",
        "chunked": head + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "header-without-colon": head + b"Auth-Nonsense\r\n\r\n",
        "folded-header": head.replace(b"Auth-User: carol\r\n", b"Auth-User: carol\r\n evil\r\n"),
        "nul-in-header": head.replace(b"Auth-User: carol", b"Auth-User: car\x00ol") + b"\r\n",
        "raw-nul-after-name": head.replace(b"Auth-User: carol", b"Auth-User: carol\x00x") + b"\r\n",
        "only-crlfs": b"\r\n" * 5000,
        "binary": bytes(range(256)) * 30,
    }


@pytest.mark.parametrize("case", ["huge-request-line", "body", "chunked", "header-without-colon",
                                  "folded-header", "nul-in-header", "raw-nul-after-name",
                                  "only-crlfs", "binary"])
def test_malformed_request_is_refused(hostile, alog, case):
    """Never a login: an HTTP error, a closed connection, or an error answer
    with its decision line; then the daemon serves the next request."""
    out = raw(hostile, malformed(hostile)[case])
    assert b"Auth-Status: OK" not in out and b"Auth-Pass" not in out, out[:300]
    if out:
        status = out.split(b"\r\n", 1)[0]
        assert re.match(rb"HTTP/1\.[01] (200|4\d\d|5\d\d) ", status), out[:300]
        if b" 200 " in status:  # reached the decision: an error answer, logged
            assert parse_head(out.split(b"\r\n\r\n")[0])["auth-status"] != "OK"
            alog.wait_for(r"\bdecision\b.*\bresult=(error|fail)\b")
    if b"\x00" in malformed(hostile)[case]:  # evhttp would cut the value there
        assert out == b"", out[:300]
        alog.wait_for(r"refused request=http result=error reason=nul_byte\b")
        assert "decision" not in alog.text()
    still_serving(hostile, alog)


def test_pipelined_requests_get_no_wrong_answer(hostile, alog):
    """Two requests in one write (not what nginx does): the second, with a wrong
    password, is never answered OK, whatever libevent does with it."""
    name, pw = user(hostile, "alice")
    first = request_bytes(hostile, nginx_headers(hostile, name, pw), b"GET /auth HTTP/1.1")
    second = request_bytes(hostile, nginx_headers(hostile, name, "wrong"), b"GET /auth HTTP/1.1")
    out = raw(hostile, first + second)
    answers = [a for a in out.split(b"HTTP/1.1 ")[1:]]
    assert answers and b"Auth-Status: OK" in answers[0], out
    for a in answers[1:]:
        assert b"Auth-Status: OK" not in a, out
    still_serving(hostile, alog)


# ---- credentials through nginx ----------------------------------------------------------

def imap_raw(chain, lines, timeout=15):
    """Speak IMAP to nginx byte for byte (literals included); the tagged answer."""
    s = socket.create_connection(("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"])), timeout=timeout)
    f = s.makefile("rb")
    try:
        assert f.readline().startswith(b"* OK")
        for data, expect_continuation in lines:
            s.sendall(data)
            if expect_continuation:
                line = f.readline()
                if not line.startswith(b"+"):
                    return line
        while True:
            line = f.readline()
            if not line or line.startswith(b"A1 "):
                return line
    finally:
        f.close()
        s.close()


def imap_login_literals(chain, name, password):
    return imap_raw(chain, [(b"A1 LOGIN {%d}\r\n" % len(name), True),
                            (name + b" {%d}\r\n" % len(password), True),
                            (password + b"\r\n", False)])


@pytest.mark.parametrize("password", [b"pw\r\nA2 DELETE INBOX", b"pw\x00x", b"pw\nx"])
def test_control_bytes_in_an_imap_literal_never_reach_dovecot(hostile, alog, dlog, password):
    """A literal may carry CR, LF and NUL; nginx %-encodes them, dovegate-auth
    refuses: the client gets NO, Dovecot never sees the login."""
    name, _ = user(hostile, "alice")
    answer = imap_login_literals(hostile, name.encode(), password)
    assert answer.startswith(b"A1 NO"), answer
    alog.wait_for(rf"\bdecision\b.*\buser={name}\b.*\bresult=fail\b.*\breason=bad_request\b.*"
                  r"detail=\"NUL, CR or LF in password\"")
    assert f"user=<{name}>" not in dlog.text()


def test_nul_in_pop3_password_through_nginx(hostile, alog):
    name, _ = user(hostile, "carol")
    p = poplib.POP3("127.0.0.1", int(hostile.env["NGINX_POP3_PORT"]), timeout=15)
    try:
        p.user(name)
        with pytest.raises(poplib.error_proto) as e:
            p._shortcmd(b"PASS carol\x00-pass-3".decode("latin-1"))
        assert FAIL.encode() in e.value.args[0], e.value
    finally:
        p.close()
    alog.wait_for(rf"\bdecision\b.*\bproto=pop3\b.*\buser={name}\b.*\breason=bad_request\b")


def test_long_user_names_are_refused_and_logged_short(hostile, alog):
    """Over 255 bytes: refused with its reason; the log line carries at most a
    prefix of the name, never the whole 4 KB."""
    for length in (256, 4000):
        name = "L" * length
        resp = ask(hostile, nginx_headers(hostile, name, "pw"), f"user of {length}")
        assert resp["auth-status"] == FAIL
        line = alog.wait_for(r"\bdecision\b.*detail=\"user name longer than 255 bytes\".*").group(0)
        assert len(line) < 1200 and "L" * 300 not in line, len(line)
        alog = LogWatch(hostile.env["LOG_AUTH"])
    # through nginx: an IMAP literal of 300 bytes
    answer = imap_login_literals(hostile, b"M" * 300, b"pw")
    assert answer.startswith(b"A1 NO"), answer
    alog.wait_for(r"\bdecision\b.*\bproto=imap\b.*detail=\"user name longer than 255 bytes\"")
    still_serving(hostile, alog)


def test_invalid_utf8_user_is_refused_and_logged_as_valid_utf8(hostile, alog):
    """Bytes that are not UTF-8 (a lone 0xff, an overlong '/', a surrogate)
    get an ordinary refusal; the decision line escapes them as \\xNN so it
    stays valid UTF-8 for log shippers; real UTF-8 stays readable."""
    bad = b"\xff\xc0\xaf\xed\xa0\x80x\xc3\xa9"
    resp = ask(hostile, nginx_headers(hostile, bad, "pw"), "invalid utf-8")
    assert resp["auth-status"] == FAIL
    alog.wait_for(r"\bdecision\b.*\bresult=fail\b")
    raw_log = open(hostile.env["LOG_AUTH"], "rb").read()[alog.offset:]
    line = [l for l in raw_log.splitlines() if b"decision" in l][-1]
    line.decode("utf-8")  # strict: raises on any invalid byte
    assert b'user="\\xff\\xc0\\xaf\\xed\\xa0\\x80x\xc3\xa9"' in line, line
    # through nginx, raw bytes in a quoted IMAP string
    alog2 = LogWatch(hostile.env["LOG_AUTH"])
    answer = imap_raw(hostile, [(b'A1 LOGIN "' + bad + b'" "pw"\r\n', False)])
    assert answer.startswith(b"A1 NO"), answer
    alog2.wait_for(r"\bdecision\b.*\bproto=imap\b.*user=\"\\xff.*\bresult=fail\b")


# ---- tickets presented to Dovecot ---------------------------------------------------------

def refused_at_dovecot(chain, dlog, name, ticket, reasons):
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, ticket)
    return dlog.wait_for(rf"dovegate: ticket refused: reason=({reasons})\b").group(1)


def dovecot_still_serving(chain):
    name, _ = user(chain, "alice")
    c, (typ, _) = proxy_login(chain, name, mint(chain, good_claims(chain, name)))
    assert typ == "OK"
    c.logout()


@pytest.mark.parametrize("cut", ["no-footer", "half-payload", "last-char", "prefix-only"])
def test_truncated_ticket_is_refused(hostile, dlog, cut):
    name, _ = user(hostile, "alice")
    t = mint(hostile, good_claims(hostile, name))
    body, footer = t.rsplit(".", 1)
    bad = {"no-footer": body, "half-payload": t[:len(body) // 2] + "." + footer,
           "last-char": t[:-1], "prefix-only": "v4.public."}[cut]
    refused_at_dovecot(hostile, dlog, name, bad, "malformed|bad_signature|unknown_key")
    dovecot_still_serving(hostile)


def test_ticket_signed_by_another_key_under_our_key_id_is_refused(hostile, dlog, tmp_path):
    """A forger who knows the key id (it is in every ticket's footer)."""
    name, _ = user(hostile, "alice")
    kid = hostile.values["TICKET_SIGNING_KEY"].rsplit("/", 1)[1][:-len(".key")]
    dovegate(hostile, "keygen", "--kid", kid, "--dir", str(tmp_path))
    forged = mint(hostile, good_claims(hostile, name), key=str(tmp_path / f"{kid}.key"))
    assert forged.rsplit(".", 1)[1] == mint(hostile, good_claims(hostile, name)).rsplit(".", 1)[1]
    refused_at_dovecot(hostile, dlog, name, forged, "bad_signature")
    dovecot_still_serving(hostile)


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def b64e(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def test_claims_from_one_ticket_with_the_signature_of_another_are_refused(hostile, dlog):
    """bob's claims glued to the signature of a ticket for alice."""
    alice, bob = user(hostile, "alice")[0], user(hostile, "bob")[0]
    ta = mint(hostile, good_claims(hostile, alice))
    tb = mint(hostile, good_claims(hostile, bob))
    pa, pb = b64d(ta.split(".")[2]), b64d(tb.split(".")[2])
    spliced = "v4.public." + b64e(pb[:-64] + pa[-64:]) + "." + tb.split(".")[3]
    refused_at_dovecot(hostile, dlog, bob, spliced, "bad_signature")
    dovecot_still_serving(hostile)


def test_swapped_claims_are_refused(hostile, dlog):
    """Correctly signed, but sub and aud exchanged."""
    name, _ = user(hostile, "alice")
    claims = good_claims(hostile, name)
    claims["sub"], claims["aud"] = claims["aud"], claims["sub"]
    refused_at_dovecot(hostile, dlog, name, mint(hostile, claims), "wrong_user|wrong_audience")
    dovecot_still_serving(hostile)


def proxy_login_literals(chain, name, password, rip="198.51.100.77"):
    """LOGIN on Dovecot's haproxy listener exactly as nginx sends it: PROXY
    v1, then user and password as literals. The tagged answer."""
    s = socket.create_connection(("127.0.0.1", int(chain.env["DOVECOT_PROXY_IMAP_PORT"])), timeout=15)
    f = s.makefile("rb")
    try:
        s.sendall(f"PROXY TCP4 {rip} 127.0.0.1 40124 143\r\n".encode())
        assert f.readline().startswith(b"* OK")
        for data in (b"A1 LOGIN {%d}\r\n" % len(name), name + b" {%d}\r\n" % len(password)):
            s.sendall(data)
            line = f.readline()
            if not line.startswith(b"+"):
                return line
        s.sendall(password + b"\r\n")
        while True:
            line = f.readline()
            if not line or line.startswith(b"A1 "):
                return line
    except ConnectionResetError:
        return b""  # Dovecot hung up on it
    finally:
        f.close()
        s.close()


def test_huge_ticket_is_refused(hostile, dlog):
    """Over the 1024-byte ticket limit: refused by the passdb before any
    crypto, logged (AUTHENTICATE PLAIN carries 1100 bytes to it); a 60 kB one
    as nginx would send it (LOGIN literals) is refused by imap-login's own
    input limit. Dovecot keeps serving either way."""
    name, _ = user(hostile, "alice")
    t = mint(hostile, good_claims(hostile, name))

    def huge(size):
        return "v4.public." + "A" * (size - len(t)) + t[len("v4.public."):]

    c = ProxiedIMAP4(int(hostile.env["DOVECOT_PROXY_IMAP_PORT"]), "198.51.100.78", 40125)
    with pytest.raises(imaplib.IMAP4.error):
        c.authenticate("PLAIN", lambda _: f"\0{name}\0{huge(1100)}".encode())
    c.shutdown()
    dlog.wait_for(r"dovegate: ticket refused: reason=malformed\b.*longer than TICKET_MAX_LEN")

    answer = proxy_login_literals(hostile, name.encode(), huge(60000).encode())
    assert not answer.startswith(b"A1 OK"), answer
    dlog.wait_for(rf"imap-login: Info: {LOGIN_GONE} (Literal size too large|Input buffer full)")
    dovecot_still_serving(hostile)
