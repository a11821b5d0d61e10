"""Login tickets end to end: dovegate-auth mints, Dovecot's dovegate passdb verifies.

The session chain runs in ticket mode (dovegate-auth's default). These tests
check what an operator would: one session id from dovegate-auth's decision
line to Dovecot's Login: line and the mail process's log prefix, the client's
real address, and that every kind of bad ticket is refused with its reason.
"""
import imaplib
import itertools
import json
import os
import poplib
import re
import signal
import smtplib
import subprocess
import time

import pytest

from helpers import auth_http, decision, imap, login_line, nginx_headers, user


def dovegate(chain, *args, check=True):
    return subprocess.run([chain.binary("src/tools/dovegate"), *args], capture_output=True,
                          text=True, timeout=30, check=check)


class ProxiedIMAP4(imaplib.IMAP4):
    """imaplib client that first sends a PROXY v1 header, as nginx does."""

    def __init__(self, port, rip, rport):
        self._proxy_line = f"PROXY TCP4 {rip} 127.0.0.1 {rport} 143\r\n".encode()
        super().__init__("127.0.0.1", port, timeout=15)

    def _create_socket(self, timeout):
        sock = super()._create_socket(timeout)
        sock.sendall(self._proxy_line)
        return sock


_RIPS = itertools.count(1)


def proxy_login(chain, name, password, rip=None, rport=40123):
    """Log in on Dovecot's haproxy listener the way nginx does. Each call gets
    its own client address: Dovecot's auth penalty per address would
    otherwise delay every refusal after the first by 2, 6, 10 s..."""
    rip = rip or f"198.51.100.{next(_RIPS) % 250 + 1}"
    c = ProxiedIMAP4(int(chain.env["DOVECOT_PROXY_IMAP_PORT"]), rip, rport)
    return c, c.login(name, password)


def mint(chain, claims, key=None):
    """A ticket signed with the chain's (or another) key, claims exactly as given."""
    key = key or chain.values["TICKET_SIGNING_KEY"]
    out = dovegate(chain, "ticket", "sign", "--key", key, "--claims", json.dumps(claims))
    return out.stdout.strip()


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def good_claims(chain, name, **over):
    now = int(time.time())
    c = {"sub": name, "aud": chain.values["TICKET_AUDIENCE"], "iat": iso(now), "exp": iso(now + 60),
         "jti": f"test{now}{os.getpid()}{len(over)}" + "".join(sorted(over)).replace("_", ""),
         "svc": "imap", "rip": "198.51.100.23", "rport": 40123, "tls": False}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def test_session_id_is_the_same_at_every_hop(chain, logs):
    name, password = user(chain, "alice")
    c = imap(chain)
    client_port = c.sock.getsockname()[1]
    assert c.login(name, password)[0] == "OK"
    c.select("INBOX")
    c.logout()
    session = decision(logs, proto="imap", user=name, result="ok", mode="ticket").group(1)
    line = login_line(logs, "imap", name).group(0)
    assert f"session=<{session}>" in line, line
    assert re.search(rf"\brport={client_port}\b", line), line
    # The post-login imap process logs with the same session in its prefix.
    logs["dovecot"].wait_for(rf"imap\({name}\)<\d+><{re.escape(session)}>")
    logs["dovecot"].wait_for(rf"dovegate: ticket accepted.*session={re.escape(session)}")


def test_pop3_and_submission_carry_the_session(chain, logs):
    name, password = user(chain, "carol")
    p = poplib.POP3("127.0.0.1", int(chain.env["NGINX_POP3_PORT"]), timeout=15)
    p.user(name)
    assert p.pass_(password).startswith(b"+OK")
    p.quit()
    session = decision(logs, proto="pop3", user=name, result="ok", mode="ticket").group(1)
    assert f"session=<{session}>" in login_line(logs, "pop3", name).group(0)
    logs["dovecot"].wait_for(rf"pop3\({name}\)<\d+><{re.escape(session)}>")

    with smtplib.SMTP("127.0.0.1", int(chain.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example")
        s.login(name, password)
    session = decision(logs, proto="smtp", user=name, result="ok", mode="ticket").group(1)
    assert f"session=<{session}>" in login_line(logs, "submission", name).group(0)


def test_ticket_from_auth_http_works_once_then_is_a_replay(chain, logs):
    name, password = user(chain, "alice")
    resp = auth_http(chain, nginx_headers(chain, name, password))
    assert resp["auth-status"] == "OK" and resp["auth-pass"].startswith("v4.public.")
    ticket = resp["auth-pass"]
    assert len(ticket) <= 640
    c, (typ, _) = proxy_login(chain, resp["auth-user"], ticket)
    assert typ == "OK"
    c.logout()
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, resp["auth-user"], ticket)
    logs["dovecot"].wait_for(r"dovegate: ticket refused: reason=replay")


@pytest.mark.parametrize("reason,over", [
    ("expired", {"iat": -600, "exp": -300}),
    ("not_yet_valid", {"iat": 600, "exp": 660}),
    ("wrong_audience", {"aud": "some-other-backend"}),
    ("wrong_user", {"sub": "bob"}),
    ("wrong_service", {"svc": "pop3"}),
])
def test_bad_claims_are_refused_with_reason(chain, logs, reason, over):
    name, _ = user(chain, "alice")
    now = int(time.time())
    over = dict(over)
    for k in ("iat", "exp"):
        if k in over:
            over[k] = iso(now + over[k])
    ticket = mint(chain, good_claims(chain, name, **over))
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, ticket)
    logs["dovecot"].wait_for(rf"dovegate: ticket refused: reason={reason}\b")


def test_tampered_ticket_is_refused(chain, logs):
    name, _ = user(chain, "alice")
    ticket = mint(chain, good_claims(chain, name))
    head, body = ticket[:20], ticket[20:]
    flipped = head + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, flipped)
    logs["dovecot"].wait_for(r"dovegate: ticket refused: reason=(bad_signature|malformed)\b")


def test_unknown_key_is_refused(chain, logs, tmp_path):
    name, _ = user(chain, "alice")
    dovegate(chain, "keygen", "--kid", "stranger", "--dir", str(tmp_path))
    ticket = mint(chain, good_claims(chain, name), key=str(tmp_path / "stranger.key"))
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, ticket)
    logs["dovecot"].wait_for(r"dovegate: ticket refused: reason=unknown_key\b")


def test_keygen_creates_a_missing_key_directory(chain, tmp_path):
    """README's `dovegate keygen --dir /etc/dovegate/keys` on a fresh host:
    the directory is made 0700, the key 0600; a missing parent or a file in
    the way is a clear error and writes nothing."""
    keys = tmp_path / "keys"
    out = dovegate(chain, "keygen", "--kid", "fresh", "--dir", str(keys)).stdout
    assert f"{keys}: created (mode 0700)" in out
    assert (keys.stat().st_mode & 0o777) == 0o700
    assert ((keys / "fresh.key").stat().st_mode & 0o777) == 0o600
    assert "\nfresh k4.public." in (keys / "fresh.pub").read_text()
    # again into the same, now existing, directory: fine
    dovegate(chain, "keygen", "--kid", "second", "--dir", str(keys))
    deep = dovegate(chain, "keygen", "--kid", "x", "--dir", str(tmp_path / "no" / "keys"), check=False)
    assert deep.returncode != 0 and "No such file or directory" in deep.stderr
    (tmp_path / "plain").write_text("")
    blocked = dovegate(chain, "keygen", "--kid", "x", "--dir", str(tmp_path / "plain"), check=False)
    assert blocked.returncode != 0 and "exists and is not a directory" in blocked.stderr
    assert not (tmp_path / "no").exists()


def test_no_password_reaches_the_backend(chain, logs):
    """In ticket mode nginx logs in to Dovecot with a ticket, never the password."""
    name, password = user(chain, "bob")
    resp = auth_http(chain, nginx_headers(chain, name, password))
    assert resp["auth-status"] == "OK"
    assert resp["auth-user"] == name
    assert password not in resp["auth-pass"]
    assert dovegate(chain, "ticket", "verify", "--keys", chain.values["TICKET_KEYRING"],
                    "--aud", chain.values["TICKET_AUDIENCE"], "--user", name, "--service", "imap",
                    resp["auth-pass"]).returncode == 0


@pytest.fixture(scope="module")
def rotation_chain():
    from conftest import start_chain, stop_chain
    c = start_chain()
    yield c
    stop_chain(c)


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)


def test_key_rotation(rotation_chain):
    """Add the new public key to the backend, switch the signing key, drop the old one."""
    from conftest import LogWatch
    chain = rotation_chain
    v = chain.values
    name, password = user(chain, "alice")
    keys = os.path.dirname(v["TICKET_SIGNING_KEY"])
    old_pub = open(os.path.join(keys, "chain-1.pub")).read()
    dovegate(chain, "keygen", "--kid", "chain-2", "--dir", keys)
    new_pub = open(os.path.join(keys, "chain-2.pub")).read()
    dovecot_log = LogWatch(chain.env["LOG_DOVECOT"])
    auth_log = LogWatch(chain.env["LOG_AUTH"])

    def nginx_login(kid):
        watch = LogWatch(chain.env["LOG_DOVECOT"])
        c = imap(chain)
        assert c.login(name, password)[0] == "OK"
        c.logout()
        watch.wait_for(rf"dovegate: ticket accepted: .*kid={kid}\b")

    # 1. The backend learns the new public key: the passdb re-reads a changed
    # ring at the next ticket (checking at most once a second).
    write_atomic(v["TICKET_KEYRING"], old_pub + new_pub)
    time.sleep(1.1)
    nginx_login("chain-1")
    dovecot_log.wait_for(r"key ring .* reloaded \(2 keys\)")
    old_ticket = mint(chain, good_claims(chain, name, jti="rotation-old-1"))

    # 2. dovegate-auth switches to the new signing key on SIGHUP.
    conf = chain.path("etc", "dovegate-auth.conf")
    text = open(conf).read().replace(v["TICKET_SIGNING_KEY"], os.path.join(keys, "chain-2.key"))
    write_atomic(conf, text)
    chain.procs["dovegate-auth"].send_signal(signal.SIGHUP)
    auth_log.wait_for(r"configuration reloaded")
    nginx_login("chain-2")
    # A ticket of the old key issued before the switch still works meanwhile.
    c, (typ, _) = proxy_login(chain, name, old_ticket)
    assert typ == "OK"
    c.logout()

    # 3. The old key leaves the ring: its tickets fail, new logins go on.
    old_ticket2 = mint(chain, good_claims(chain, name, jti="rotation-old-2"))
    watch = LogWatch(chain.env["LOG_DOVECOT"])
    write_atomic(v["TICKET_KEYRING"], new_pub)
    time.sleep(1.1)
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, old_ticket2)
    watch.wait_for(r"key ring .* reloaded \(1 keys\)")
    watch.wait_for(r"dovegate: ticket refused: reason=unknown_key kid=chain-1\b")
    nginx_login("chain-2")


def ticket_claim(chain, ticket, name):
    out = dovegate(chain, "ticket", "inspect", ticket).stdout
    m = re.search(rf'"{name}":("[^"]*"|\d+)', out)
    return json.loads(m.group(1)) if m else None


def proxied_headers(chain, name, password, client_ip, pp_addr):
    h = nginx_headers(chain, name, password)
    h.update({"Client-IP": client_ip, "Proxy-Protocol-Addr": pp_addr,
              "Proxy-Protocol-Port": "40999"})
    return h


def test_proxy_protocol_addr_is_only_a_claim_by_default(chain, logs):
    """Anyone reaching a proxy_protocol listener of nginx can send PROXY: its
    address must not become the ticket's rip (nor the penalised address)
    unless Client-IP is a configured load balancer."""
    name, password = user(chain, "alice")
    resp = auth_http(chain, proxied_headers(chain, name, password, "192.0.2.55", "198.51.100.77"))
    assert resp["auth-status"] == "OK"
    assert ticket_claim(chain, resp["auth-pass"], "rip") == "192.0.2.55"
    assert ticket_claim(chain, resp["auth-pass"], "rport") is None
    decision(logs, user=name, rip="192.0.2.55", result="ok", claimed="198.51.100.77")


def test_proxy_protocol_addr_from_a_trusted_balancer(chain, logs):
    """[server] proxy_protocol_trusted: from those networks the PROXY address
    is the client, in the ticket and as the decision line's rip=."""
    from conftest import LogWatch
    name, password = user(chain, "alice")
    conf = chain.path("etc", "dovegate-auth.conf")
    original = open(conf).read()
    auth_log = LogWatch(chain.env["LOG_AUTH"])
    write_atomic(conf, original.replace("[server]\n", "[server]\nproxy_protocol_trusted = 192.0.2.0/24\n", 1))
    try:
        chain.procs["dovegate-auth"].send_signal(signal.SIGHUP)
        auth_log.wait_for(r"configuration reloaded")
        resp = auth_http(chain, proxied_headers(chain, name, password, "192.0.2.55", "198.51.100.77"))
        assert resp["auth-status"] == "OK"
        assert ticket_claim(chain, resp["auth-pass"], "rip") == "198.51.100.77"
        assert ticket_claim(chain, resp["auth-pass"], "rport") == 40999
        decision(logs, user=name, rip="198.51.100.77", result="ok", via="192.0.2.55")
        # another peer is no balancer: its claim stays a claim
        resp = auth_http(chain, proxied_headers(chain, name, password, "203.0.113.9", "198.51.100.78"))
        assert ticket_claim(chain, resp["auth-pass"], "rip") == "203.0.113.9"
    finally:
        write_atomic(conf, original)
        chain.procs["dovegate-auth"].send_signal(signal.SIGHUP)
        auth_log.wait_for(r"configuration reloaded")


def test_key_ring_others_can_write_is_refused(chain, logs, tmp_path):
    """Like OpenSSH's StrictModes: a key ring others may change is refused by
    the passdb (which keeps its previous keys) and by the CLI, naming the fix."""
    from conftest import LogWatch
    ring = chain.values["TICKET_KEYRING"]
    text = open(ring).read()
    name, password = user(chain, "alice")
    watch = LogWatch(chain.env["LOG_DOVECOT"])
    try:
        write_atomic(ring, text + "# touched\n")
        os.chmod(ring, 0o666)
        time.sleep(1.1)
        c = imap(chain)
        assert c.login(name, password)[0] == "OK"   # the previous keys stay
        c.logout()
        watch.wait_for(rf"key ring not reloaded: .*{re.escape(ring)}: is writable by group or "
                       rf"others \(mode 0666\); run chmod go-w {re.escape(ring)}")
        out = dovegate(chain, "ticket", "verify", "--keys", ring, "x", check=False)
        assert out.returncode != 0 and f"run chmod go-w {ring}" in out.stderr
    finally:
        write_atomic(ring, text)
    # a directory others can write to (no sticky bit) is refused, too
    d = tmp_path / "keys"
    d.mkdir()
    (d / "ring").write_text(text)
    os.chmod(d / "ring", 0o644)
    os.chmod(d, 0o777)
    out = dovegate(chain, "ticket", "verify", "--keys", str(d / "ring"), "x", check=False)
    assert out.returncode != 0 and f"is in directory {d}, writable by group or others" in out.stderr
