"""Logins through the real chain: client -> nginx mail{} -> dovegate-auth -> Dovecot.

Every test uses a real client (imaplib, poplib, smtplib, curl) against the
private nginx and checks what an operator would check: the client's answer,
dovegate-auth's decision line and Dovecot's Login: line.
"""
import email.utils
import imaplib
import os
import poplib
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
import uuid

import pytest
from conftest import BUILD_DIR, SRC_DIR
from helpers import LOGGED_IN, LogWatch, auth_http, decision, imap, login_line, nginx_headers, user  # noqa: F401


def test_endpoints_env_names_the_running_chain(chain):
    with open(chain.path("endpoints.env")) as f:
        env = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
    for key in ("NGINX_IMAP_PORT", "NGINX_POP3_PORT", "NGINX_SUBMISSION_PORT", "AUTH_HTTP_URL",
                "AUTH_HTTP_SECRET_HEADER", "AUTH_HTTP_SECRET", "DOVECOT_IMAP_PORT",
                "DOVECOT_PROXY_IMAP_PORT", "LOG_AUTH", "LOG_DOVECOT", "LOG_NGINX",
                "DEMO_USER", "DEMO_PASSWORD"):
        assert env.get(key), f"endpoints.env lacks {key}"
    # The demo credentials it names really log in.
    c = imap(chain)
    typ, _ = c.login(env["DEMO_USER"], env["DEMO_PASSWORD"])
    assert typ == "OK"
    c.logout()


def test_imap_login_through_nginx(chain, logs):
    name, password = user(chain, "alice")
    c = imap(chain)
    client_port = c.sock.getsockname()[1]
    prelogin_caps = set(c.capabilities)
    typ, data = c.login(name, password)
    assert typ == "OK"
    # nginx relays Dovecot's tagged OK, so the client learns post-login
    # capabilities that nginx's static pre-login list does not have.
    text = data[0].decode()
    assert text.startswith("[CAPABILITY "), text
    postlogin_caps = set(text[len("[CAPABILITY "):text.index("]")].split())
    assert "MOVE" in postlogin_caps and "MOVE" not in prelogin_caps
    typ, data = c.select("INBOX")
    assert typ == "OK"
    c.logout()

    m = decision(logs, proto="imap", method="plain", user=name, result="ok",
                 mode=chain.env["CREDENTIALS_MODE"])
    assert m.group(1)
    # this login's line (its session id): an earlier test's may still be arriving
    line = logs["dovecot"].wait_for(rf"imap-login: Info: {LOGGED_IN} user=<{name}>.*"
                                    rf"session=<{re.escape(m.group(1))}>").group(0)
    # PROXY v1 from nginx gave Dovecot the client's real address and port.
    assert "rip=127.0.0.1" in line
    assert re.search(rf"\brport={client_port}\b", line), line


def test_imap_authenticate_plain_argon2id_user(chain, logs):
    name, password = user(chain, "bob")
    c = imap(chain)
    typ, data = c.authenticate("PLAIN", lambda _: f"\0{name}\0{password}".encode())
    assert typ == "OK"
    typ, data = c.list()
    assert typ == "OK" and any(b"INBOX" in d for d in data)
    c.logout()
    decision(logs, proto="imap", user=name, result="ok")
    login_line(logs, "imap", name)


def test_pop3_user_pass_through_nginx(chain, logs):
    name, password = user(chain, "carol")
    p = poplib.POP3("127.0.0.1", int(chain.env["NGINX_POP3_PORT"]), timeout=15)
    client_port = p.sock.getsockname()[1]
    p.user(name)
    assert p.pass_(password).startswith(b"+OK")
    count, size = p.stat()
    assert count >= 0
    p.quit()
    decision(logs, proto="pop3", method="plain", user=name, result="ok")
    line = login_line(logs, "pop3", name).group(0)
    assert re.search(rf"\brport={client_port}\b", line), line


def test_submission_message_reaches_mailbox(chain, logs):
    name, password = user(chain, "alice")
    subject = f"dovegate test {uuid.uuid4()}"
    msg = (f"From: {name}@localhost\r\nTo: {name}@localhost\r\nSubject: {subject}\r\n"
           f"Date: {email.utils.formatdate()}\r\nMessage-ID: {email.utils.make_msgid()}\r\n\r\n"
           "sent through nginx and Dovecot submission\r\n")
    with smtplib.SMTP("127.0.0.1", int(chain.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example")
        s.login(name, password)  # smtplib picks AUTH PLAIN from nginx's list
        refused = s.sendmail(f"{name}@localhost", [f"{name}@localhost"], msg)
        assert refused == {}
    decision(logs, proto="smtp", method="plain", user=name, result="ok")
    login_line(logs, "submission", name)

    # The message shows up in the mailbox over IMAP (delivery is asynchronous).
    deadline = time.monotonic() + 15
    found = []
    while time.monotonic() < deadline and not found:
        c = imap(chain)
        c.login(name, password)
        c.select("INBOX", readonly=True)
        typ, data = c.search(None, "HEADER", "Subject", f'"{subject}"')
        found = data[0].split()
        c.logout()
        if not found:
            time.sleep(0.3)
    assert found, f"message {subject!r} not in {name}'s INBOX"


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_wrong_password_is_refused_and_logged(chain, logs, proto):
    name, _ = user(chain, "alice")
    if proto == "imap":
        c = imap(chain)
        with pytest.raises(imaplib.IMAP4.error, match="Invalid login or password"):
            c.login(name, "not-the-password")
    elif proto == "pop3":
        p = poplib.POP3("127.0.0.1", int(chain.env["NGINX_POP3_PORT"]), timeout=15)
        p.user(name)
        with pytest.raises(poplib.error_proto, match="Invalid login or password"):
            p.pass_("not-the-password")
    else:
        with smtplib.SMTP("127.0.0.1", int(chain.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
            s.ehlo("client.example")
            with pytest.raises(smtplib.SMTPAuthenticationError) as exc:
                s.login(name, "not-the-password")
            assert exc.value.smtp_code == 535
    decision(logs, proto=proto, user=name, result="fail", reason="bad_password")
    # nginx never reached Dovecot for this user
    assert not re.search(rf"{LOGGED_IN} user=<{name}>", logs["dovecot"].text())


def test_unknown_user_gets_the_same_answer(chain, logs):
    c = imap(chain)
    with pytest.raises(imaplib.IMAP4.error, match="Invalid login or password"):
        c.login("nobody-here", "whatever")
    decision(logs, proto="imap", user="nobody-here", result="fail", reason="unknown_user")


def test_direct_dovecot_login_with_own_password(chain, logs):
    """Clients that bypass nginx still log in with their own password."""
    name, password = user(chain, "alice")
    c = imap(chain, "DOVECOT_IMAP_PORT")
    typ, _ = c.login(name, password)
    assert typ == "OK"
    c.logout()
    login_line(logs, "imap", name)
    assert "decision" not in logs["auth"].text()


def test_curl_lists_inbox_through_nginx(chain):
    name, password = user(chain, "alice")
    out = subprocess.run(["curl", "-sS", "--max-time", "20",
                          f"imap://127.0.0.1:{chain.env['NGINX_IMAP_PORT']}/",
                          "--user", f"{name}:{password}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "INBOX" in out.stdout


def test_auth_http_without_secret_is_refused(chain, logs):
    name, password = user(chain, "alice")
    h = nginx_headers(chain, name, password)
    del h[chain.env["AUTH_HTTP_SECRET_HEADER"]]
    resp = auth_http(chain, h)
    assert resp["auth-status"] != "OK"
    assert "auth-pass" not in resp
    decision(logs, result="error", reason="bad_secret")


def test_master_mode_logs_in_through_nginx(master_chain):
    """credentials=master works with stock Dovecot: user*master + master password."""
    name, password = user(master_chain, "alice")
    logs = {"auth": LogWatch(master_chain.env["LOG_AUTH"]), "dovecot": LogWatch(master_chain.env["LOG_DOVECOT"])}
    c = imap(master_chain)
    assert c.login(name, password)[0] == "OK"
    c.logout()
    decision(logs, proto="imap", user=name, result="ok", mode="master")
    logs["dovecot"].wait_for(rf"Master user logging in as {name}\b")
    login_line(logs, "imap", name)


def test_auth_http_answers_master_credentials(master_chain):
    chain = master_chain
    logs = {"auth": LogWatch(chain.env["LOG_AUTH"])}
    name, password = user(chain, "alice")
    resp = auth_http(chain, nginx_headers(chain, name, password))
    assert resp["auth-status"] == "OK"
    assert resp["auth-server"] == "127.0.0.1"
    assert resp["auth-port"] == chain.env["DOVECOT_PROXY_IMAP_PORT"]
    assert resp["auth-user"] == f"{name}*{chain.env['MASTER_USER']}"
    assert resp["auth-pass"] != password
    line = decision(logs, user=name, result="ok", rip="192.0.2.7").group(0)
    # Secrets never reach the log.
    assert password not in logs["auth"].text()
    assert resp["auth-pass"] not in logs["auth"].text()
    assert "rip=192.0.2.7" in line


@pytest.mark.parametrize("bad", ["%0D%0ADELE 1", "pw%00x", "pw%0A"])
def test_control_bytes_in_password_are_refused(chain, logs, bad):
    # a user of its own per case: each refusal counts towards the user's
    # brute-force score, which later failing logins of alice would pay for
    name = f"ctl-{len(bad)}-{ord(bad[-1])}"
    resp = auth_http(chain, nginx_headers(chain, name, bad, proto="pop3"))
    assert resp["auth-status"] != "OK"
    decision(logs, user=name, result="fail", reason="bad_request")


def test_control_bytes_through_nginx_never_reach_dovecot(chain, logs):
    """nginx %-encodes CR/LF decoded from AUTHENTICATE PLAIN; dovegate-auth refuses them."""
    name, password = user(chain, "alice")
    c = imap(chain)
    with pytest.raises(imaplib.IMAP4.error):
        c.authenticate("PLAIN", lambda _: f"\0{name}\0{password}\r\nDELETE INBOX".encode())
    decision(logs, proto="imap", user=name, result="fail", reason="bad_request")


def test_run_chain_refuses_a_state_dir_dovecot_cannot_reach():
    """scripts/run-chain with DOVEGATE_STATE_DIR under a 0700 directory (as
    mktemp -d makes them): Dovecot's unprivileged processes could not read
    the users file, so the chain would report ready while every login
    fails. It stops with a message that names the directory and the fix,
    and writes no endpoints.env."""
    locked = tempfile.mkdtemp(prefix="dovegate-locked-", dir="/tmp")  # mode 0700
    state = os.path.join(locked, "chain")
    try:
        out = subprocess.run(["/usr/bin/python3", os.path.join(SRC_DIR, "tests", "chain", "chain.py"),
                              "run", "--build-dir", BUILD_DIR],
                             env={**os.environ, "DOVEGATE_STATE_DIR": state},
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0, out.stdout
        assert (f"{locked} is not searchable by other users (mode 0700)" in out.stderr
                and f"chmod o+x {locked}" in out.stderr), out.stderr
        assert not os.path.exists(os.path.join(state, "endpoints.env"))
    finally:
        shutil.rmtree(locked, ignore_errors=True)
