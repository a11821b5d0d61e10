"""Every Auth-Method nginx sends, through the real chain: APOP and CRAM-MD5
(nginx holds no plaintext password: the backend login needs tickets or the
master user), SMTP without AUTH (Auth-Method none, routed by recipient
domain), and the verified-login cache.
"""
import imaplib
import poplib
import re
import smtplib
import ssl

import pytest
from conftest import start_chain, stop_chain
from helpers import LogWatch, decision, login_line, watch_logs  # noqa: F401

USERS = [
    ("alice", "alice-pass-1", "SHA512-CRYPT"),
    ("bob", "bob-pass-2", "ARGON2ID"),
    ("carol", "carol-pass-3", "PLAIN"),
    ("dave", "dave-pass-4", "CRAM-MD5"),
]


@pytest.fixture(scope="module")
def mchain():
    c = start_chain(users=USERS, imap_auth="plain login cram-md5", pop3_auth="plain apop cram-md5")
    yield c
    stop_chain(c)


@pytest.fixture
def logs(mchain):
    return watch_logs(mchain)


def password(name):
    return next(p for u, p, _ in USERS if u == name)


def imap(chain):
    return imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=15)


def pop3(chain):
    return poplib.POP3("127.0.0.1", int(chain.env["NGINX_POP3_PORT"]), timeout=15)


def test_pop3_apop_plain_user(mchain, logs):
    p = pop3(mchain)
    # nginx's greeting carries the APOP timestamp when pop3_auth has apop
    assert re.search(rb"<[^>]+>", p.getwelcome()), p.getwelcome()
    assert p.apop("carol", password("carol")).startswith(b"+OK")
    p.stat()
    p.quit()
    decision(logs, proto="pop3", method="apop", user="carol", result="ok")
    login_line(logs, "pop3", "carol")


def test_pop3_apop_wrong_password(mchain, logs):
    p = pop3(mchain)
    with pytest.raises(poplib.error_proto, match="Invalid login or password"):
        p.apop("carol", "not-the-password")
    decision(logs, proto="pop3", method="apop", user="carol", result="fail",
             reason="bad_password")


@pytest.mark.parametrize("name", ["carol", "dave"])  # stored as {PLAIN} and {CRAM-MD5}
def test_imap_cram_md5(mchain, logs, name):
    c = imap(mchain)
    assert "AUTH=CRAM-MD5" in c.capabilities
    typ, _ = c.login_cram_md5(name, password(name))
    assert typ == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    decision(logs, proto="imap", method="cram-md5", user=name, result="ok",
             mode=mchain.env["CREDENTIALS_MODE"])
    login_line(logs, "imap", name)


def test_imap_cram_md5_hashed_user_fails_clearly(mchain, logs):
    c = imap(mchain)
    with pytest.raises(imaplib.IMAP4.error, match="Invalid login or password"):
        c.login_cram_md5("alice", password("alice"))
    m = decision(logs, proto="imap", method="cram-md5", user="alice", result="fail",
                 reason="bad_scheme_for_method")
    assert "scheme cannot serve CRAM-MD5" in m.group(0)


def test_repeat_login_hits_the_cache(mchain, logs):
    for expected in ("miss", "hit"):
        c = imap(mchain)
        assert c.login("bob", password("bob"))[0] == "OK"
        c.logout()
        decision(logs, method="plain", user="bob", result="ok", cache=expected)
        logs["auth"] = LogWatch(mchain.env["LOG_AUTH"])


def test_unknown_user_is_verified_like_a_wrong_password(mchain, logs):
    c = imap(mchain)
    with pytest.raises(imaplib.IMAP4.error, match="Invalid login or password"):
        c.login("nobody", "whatever")
    decision(logs, method="plain", user="nobody", result="fail", reason="unknown_user",
             cache="miss")


def smtp_mx(chain):
    s = smtplib.SMTP("127.0.0.1", int(chain.env["NGINX_SMTP_PORT"]), timeout=15)
    s.ehlo("client.example.com")
    return s


def test_smtp_without_auth_to_relay_domain(mchain, logs):
    s = smtp_mx(mchain)
    assert s.mail("sender@example.com")[0] == 250
    code, text = s.rcpt("carol@example.org")
    assert code == 250, text
    code, text = s.data(b"Subject: relayed\r\n\r\nhello\r\n")
    assert code == 250, text
    s.quit()
    decision(logs, proto="smtp", method="none", result="ok",
             backend=f"127.0.0.1:{mchain.values['SUBMISSION_RELAY_PORT']}")


def test_smtp_without_auth_to_other_domain_refused(mchain, logs):
    s = smtp_mx(mchain)
    assert s.mail("sender@example.com")[0] == 250
    code, text = s.rcpt("someone@example.com")
    assert code == 550, text
    assert text.startswith(b"5.7.1"), text
    s.close()
    decision(logs, proto="smtp", method="none", result="fail", reason="relay_denied")


def test_imap_authenticate_external_with_client_certificate(mchain, logs):
    e = mchain.env
    ctx = ssl.create_default_context(cafile=e["TLS_CA"])
    ctx.load_cert_chain(e["TLS_CLIENT_CERT"], e["TLS_CLIENT_KEY"])
    c = imaplib.IMAP4_SSL("127.0.0.1", int(e["NGINX_IMAPS_PORT"]), ssl_context=ctx, timeout=15)
    assert "AUTH=EXTERNAL" in c.capabilities
    typ, _ = c.authenticate("EXTERNAL", lambda challenge: b"")
    assert typ == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    user = e["TLS_CLIENT_USER"]
    decision(logs, proto="imap", method="external", user=user, result="ok",
             mode=e["CREDENTIALS_MODE"])
    line = login_line(logs, "imap", user).group(0)
    assert "secured" in line


def test_imaps_without_client_certificate_is_refused(mchain):
    e = mchain.env
    ctx = ssl.create_default_context(cafile=e["TLS_CA"])
    # TLS 1.3: the handshake completes for the client, then nginx says BYE
    with pytest.raises((ssl.SSLError, OSError, imaplib.IMAP4.error), match="certificate"):
        c = imaplib.IMAP4_SSL("127.0.0.1", int(e["NGINX_IMAPS_PORT"]), ssl_context=ctx, timeout=15)
        c.noop()
