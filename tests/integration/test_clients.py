"""Real mail clients through nginx + dovegate-auth (issue 14), each a Debian
package (scripts/deps), in ticket and in master mode:

- mbsync (isync) pulls a mailbox over IMAP into a local Maildir: every
  message arrives, the counts match the server's, a second pull brings only
  the new ones;
- fetchmail fetches over POP3 and hands each message to an MDA (a plain
  file per message): every message arrives, and the server's mailbox is
  empty afterwards (fetchmail deletes what it fetched);
- swaks sends with AUTH PLAIN over submission: the message is delivered to
  the recipient's mailbox (Dovecot submission, the chain's relay, LMTP).

Each also checks that dovegate-auth decided the login (in the chain's mode)
and that Dovecot logged it in through nginx. Messages are put in and looked
at directly at Dovecot (LMTP; IMAP on its direct listener), not through the
path under test.
"""
import email
import email.policy
import imaplib
import os
import re
import secrets
import shutil
import smtplib
import subprocess
import time

import pytest
from chain import DEMO_USERS
from conftest import start_chain, stop_chain
from helpers import decision, login_line, watch_logs

USERS = DEMO_USERS + [("reader", "reader-pass-14", "SHA512-CRYPT"), ("popper", "popper-pass-14", "PLAIN"),
                      ("sender", "sender-pass-14", "SHA512-CRYPT"), ("rcpt", "rcpt-pass-14", "PLAIN")]
PASSWORDS = {u: p for u, p, _ in USERS}


@pytest.fixture(scope="module", params=["ticket", "master"])
def mode_chain(request):
    c = start_chain(users=USERS, credentials=request.param)
    c.mode = request.param
    yield c
    stop_chain(c)


def need(program, package):
    assert shutil.which(program), f"{program} is missing: run scripts/deps (Debian package {package})"


def deliver(chain, user, subjects):
    """Put one message per subject into user's INBOX through Dovecot's LMTP
    (one transaction each: smtplib reads one LMTP DATA reply)."""
    for s in subjects:
        msg = (f"From: postmaster@localhost\r\nTo: {user}@localhost\r\nSubject: {s}\r\n"
               f"Message-ID: <{secrets.token_hex(8)}@dovegate.test>\r\n\r\nbody of {s}\r\n")
        with smtplib.LMTP(chain.values["LMTP_SOCKET"]) as lmtp:
            lmtp.sendmail("postmaster@localhost", [user], msg)


def server_subjects(chain, user):
    """Subjects in user's INBOX, read at Dovecot directly."""
    m = imaplib.IMAP4("127.0.0.1", int(chain.env["DOVECOT_IMAP_PORT"]), timeout=15)
    try:
        m.login(user, PASSWORDS[user])
        typ, data = m.select("INBOX", readonly=True)
        assert typ == "OK", data
        if int(data[0]) == 0:
            return []
        typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted(subject_of(item[1]) for item in data if isinstance(item, tuple))
    finally:
        m.logout()


def subject_of(raw):
    return str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])


def run(argv, home, timeout=60):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, HOME=str(home)), stdin=subprocess.DEVNULL)
    return r, f"{' '.join(argv)}: exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"


def through_nginx(chain, logs, proto, service, user):
    """dovegate-auth decided the login in the chain's mode, and Dovecot
    logged it in from nginx (the PROXY header names nginx's port)."""
    decision(logs, proto=proto, user=user, result="ok", mode=chain.mode)
    line = login_line(logs, service, user).group(0)
    port = {"imap": "NGINX_IMAP_PORT", "pop3": "NGINX_POP3_PORT", "smtp": "NGINX_SUBMISSION_PORT"}[proto]
    assert "lport=" not in line or re.search(rf"\blport={chain.env[port]}\b", line), line


def test_mbsync_pulls_a_mailbox(mode_chain, tmp_path):
    need("mbsync", "isync")
    chain, user = mode_chain, "reader"
    tag = secrets.token_hex(4)
    first = [f"mbsync {chain.mode} {tag} {i}" for i in range(5)]
    deliver(chain, user, first)
    local = tmp_path / "mail"
    local.mkdir()
    cfg = tmp_path / "mbsyncrc"
    cfg.write_text(f"""IMAPAccount chain
Host 127.0.0.1
Port {chain.env['NGINX_IMAP_PORT']}
User {user}
Pass {PASSWORDS[user]}
SSLType None
# plain IMAP LOGIN on loopback (mbsync 1.5, Debian 13, otherwise insists on
# SASL PLAIN, which nginx offers only as imap_auth plain over TLS)
AuthMechs LOGIN

IMAPStore remote
Account chain

MaildirStore local
Path {local}/
Inbox {local}/INBOX

Channel pull
Far :remote:
Near :local:
Patterns INBOX
Sync Pull
Create Near
SyncState *
""")

    def pull():
        logs = watch_logs(chain)
        r, report = run(["mbsync", "-c", str(cfg), "pull"], tmp_path)
        assert r.returncode == 0, report
        through_nginx(chain, logs, "imap", "imap", user)
        files = [p for d in ("new", "cur") for p in (local / "INBOX" / d).iterdir()]
        return sorted(subject_of(p.read_bytes()) for p in files), report

    got, report = pull()
    assert got == sorted(first), report
    assert got == server_subjects(chain, user)
    # a second pull brings the new messages only
    second = [f"mbsync {chain.mode} {tag} {i}" for i in range(5, 8)]
    deliver(chain, user, second)
    got, report = pull()
    assert got == sorted(first + second), report
    assert len(got) == len(server_subjects(chain, user)) == 8


def test_fetchmail_fetches_over_pop3(mode_chain, tmp_path):
    need("fetchmail", "fetchmail")
    chain, user = mode_chain, "popper"
    subjects = [f"fetchmail {chain.mode} {secrets.token_hex(4)} {i}" for i in range(4)]
    deliver(chain, user, subjects)
    out = tmp_path / "delivered"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    # sslproto '': nginx offers no STLS, and fetchmail would insist on it;
    # the MDA writes each message to a file of its own ($$: the MDA shell's pid)
    rc.write_text(f"""set no syslog
poll 127.0.0.1 with protocol POP3 port {chain.env['NGINX_POP3_PORT']}
  user "{user}" there with password "{PASSWORDS[user]}" is "{user}" here
  options fetchall sslproto ''
  mda "cat > {out}/msg.$$"
""")
    rc.chmod(0o600)  # fetchmail refuses a readable rc file
    logs = watch_logs(chain)
    r, report = run(["fetchmail", "-f", str(rc), "--idfile", str(tmp_path / "fetchids"), "--nodetach",
                     "-v"], tmp_path)
    assert r.returncode == 0, report  # 0: mail was retrieved
    through_nginx(chain, logs, "pop3", "pop3", user)
    files = sorted(out.iterdir())
    got = sorted(subject_of(p.read_bytes()) for p in files)
    assert got == sorted(subjects), report
    for p in files:
        assert re.search(rb"^Received: .*\n\s+by \S+ with POP3 \(fetchmail", p.read_bytes(), re.M), p
    assert server_subjects(chain, user) == [], "fetchmail should have deleted what it fetched"


def test_swaks_sends_with_auth_plain_over_submission(mode_chain, tmp_path):
    need("swaks", "swaks")
    chain, sender, rcpt = mode_chain, "sender", "rcpt"
    subject = f"swaks {chain.mode} {secrets.token_hex(4)}"
    logs = watch_logs(chain)
    r, report = run(["swaks", "--server", "127.0.0.1", "--port", chain.env["NGINX_SUBMISSION_PORT"],
                     "--auth", "PLAIN", "--auth-user", sender, "--auth-password", PASSWORDS[sender],
                     "--from", f"{sender}@localhost", "--to", f"{rcpt}@localhost",
                     "--header", f"Subject: {subject}", "--body", "sent by swaks through nginx",
                     "--timeout", "30"], tmp_path)
    assert r.returncode == 0, report
    assert re.search(r"^<-  235 ", r.stdout, re.M), report  # AUTH PLAIN accepted
    through_nginx(chain, logs, "smtp", "submission", sender)
    # delivery (Dovecot submission -> relay -> LMTP) finishes after the 250
    deadline = time.monotonic() + 15
    while subject not in (got := server_subjects(chain, rcpt)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert subject in got, f"{subject!r} not in {rcpt}'s INBOX: {got}\n{report}"
