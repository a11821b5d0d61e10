"""Dovecot's listeners for nginx take only what nginx hands over.

On one host (nginx, dovegate-auth and Dovecot together, as the README's
Configure section sets it up) haproxy_trusted_networks is 127.0.0.1, so
every local user may send a PROXY header to the "haproxy = yes" listeners
and claim any client address. The dovegate passdb's nginx_ports (the chain
sets them from the snippet, as an operator would) makes those listeners
accept only a login ticket or a master-user login: a user's own password
there is refused before it is checked, with a log line that says why and
never the password. What an operator checks:
- the attack of issue 15 (point 12), run as the unprivileged user "nobody":
  PROXY header claiming 198.51.100.7, then LOGIN with alice's real
  password, is refused on the IMAP, POP3 and submission listeners for
  nginx, and Dovecot's log names the reason, the port and the real peer;
- a login through nginx still works in ticket mode and in master mode;
- a direct client on Dovecot's ordinary listener still logs in with its
  password.
"""
import poplib
import re
import smtplib
import subprocess

import pytest

from helpers import LOGGED_IN, auth_line, decision, imap, login_line, user, watch_logs
from test_login_plugin import OK, PROXY_PORT, Raw, imap_login, pop3_login, smtp_login

# The address each attack claims: one per test, since Dovecot's own auth
# penalty delays the next failure from an address (2, 4, 8 ... s) and the
# chain's Dovecot is shared with other tests.
CLAIMED = {"imap": "198.51.100.7", "pop3": "198.51.100.8", "submission": "198.51.100.9",
           "master": "198.51.100.10"}
REFUSED = r"dovegate: password refused: reason=nginx_port lport={port} real_rip=127\.0\.0\.1\b"

# What the local user runs: a PROXY v1 header claiming an address, then LOGIN
# with a password read from stdin; prints Dovecot's tagged answer.
ATTACK = r"""
import socket, sys
port, claimed, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
password = sys.stdin.read()
s = socket.create_connection(("127.0.0.1", port), timeout=15)
f = s.makefile("rb")
s.sendall(f"PROXY TCP4 {claimed} 127.0.0.1 40007 143\r\n".encode())
assert f.readline().startswith(b"* OK")
s.sendall(f'a LOGIN "{name}" "{password}"\r\n'.encode())
while True:
    line = f.readline().decode()
    if not line or line.startswith("a "):
        print(line.strip())
        break
"""


def attack_as_nobody(chain, name, password, claimed):
    """The issue's attack, by the unprivileged local user "nobody"."""
    out = subprocess.run(["/usr/bin/python3", "-c", ATTACK, chain.env["DOVECOT_PROXY_IMAP_PORT"],
                          claimed, name], input=password, user="nobody", capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def assert_refused_and_logged(chain, logs, name, password, port, claimed):
    dlog = logs["dovecot"]
    dlog.wait_for(auth_line("dovegate", name, re.escape(claimed)) + REFUSED.format(port=port))
    text = dlog.text()
    assert not re.search(rf"{LOGGED_IN} user=<{name}>", text), text[-3000:]
    assert password not in text, "the password was logged"


def test_own_password_from_a_local_user_on_the_nginx_listener_is_refused(chain, logs):
    name, password = user(chain, "alice")
    answer = attack_as_nobody(chain, name, password, CLAIMED["imap"])
    assert answer.startswith("a NO"), answer
    assert_refused_and_logged(chain, logs, name, password, chain.env["DOVECOT_PROXY_IMAP_PORT"],
                              CLAIMED["imap"])
    # Nothing went through dovegate-auth: no decision for this login.
    assert not re.search(rf"\bdecision\b.*\buser={name}\b", logs["auth"].text())


@pytest.mark.parametrize("service", ["pop3", "submission"])
def test_own_password_on_the_pop3_and_submission_listeners_for_nginx_is_refused(
        chain, logs, service):
    name, password = user(chain, "carol")
    port = chain.env[PROXY_PORT[service]]
    with Raw(port, proxy_from=(CLAIMED[service], 40008)) as r:
        answer = {"pop3": pop3_login, "submission": smtp_login}[service](r, name, password)
    assert not answer.startswith(OK[service]), r.seen
    assert_refused_and_logged(chain, logs, name, password, port, CLAIMED[service])


def test_ticket_through_nginx_still_logs_in(chain, logs):
    name, password = user(chain, "alice")
    c = imap(chain)
    assert c.login(name, password)[0] == "OK"
    c.logout()
    session = decision(logs, proto="imap", user=name, result="ok", mode="ticket").group(1)
    logs["dovecot"].wait_for(rf"dovegate: ticket accepted: session={re.escape(session)}")
    assert f"session=<{session}>" in login_line(logs, "imap", name).group(0)
    assert "password refused" not in logs["dovecot"].text()


def test_direct_client_still_logs_in_with_its_password(chain, logs):
    name, password = user(chain, "alice")
    with Raw(chain.env["DOVECOT_IMAP_PORT"]) as r:
        assert imap_login(r, name, password).startswith("a OK"), r.seen
    login_line(logs, "imap", name)
    assert "password refused" not in logs["dovecot"].text()


def test_master_mode_through_nginx_still_logs_in(master_chain):
    c = master_chain
    logs = watch_logs(c)
    name, password = user(c, "bob")
    i = imap(c)
    assert i.login(name, password)[0] == "OK"
    i.logout()
    p = poplib.POP3("127.0.0.1", int(c.env["NGINX_POP3_PORT"]), timeout=15)
    p.user(name)
    assert p.pass_(password).startswith(b"+OK")
    p.quit()
    with smtplib.SMTP("127.0.0.1", int(c.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example")
        s.login(name, password)
    for proto, service in (("imap", "imap"), ("pop3", "pop3"), ("smtp", "submission")):
        decision(logs, proto=proto, user=name, result="ok", mode="master")
        login_line(logs, service, name)
    assert "password refused" not in logs["dovecot"].text()


def test_own_password_on_the_nginx_listener_is_refused_in_master_mode(master_chain):
    logs = watch_logs(master_chain)
    name, password = user(master_chain, "alice")
    answer = attack_as_nobody(master_chain, name, password, CLAIMED["master"])
    assert answer.startswith("a NO"), answer
    assert_refused_and_logged(master_chain, logs, name, password,
                              master_chain.env["DOVECOT_PROXY_IMAP_PORT"], CLAIMED["master"])
