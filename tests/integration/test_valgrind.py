"""dovegate's Dovecot modules under valgrind (issue 4).

A chain of its own whose Dovecot runs the auth process (libauthdb_dovegate.so:
the passdb, ticket and key ring code, replay cache) and imap-login
(lib20_dovegate_plugin.so: the login plugin) under valgrind's memcheck. It
drives the paths our code owns: a good ticket login through nginx (ticket
accepted, session applied by the login plugin), a wrong password through
nginx, on Dovecot's haproxy port a non-ticket password (refused: nginx_ports)
and on its direct port one (handed on to the next passdb), a replayed ticket
and a tampered one. Then it stops Dovecot
(SIGTERM to the master, so every process exits normally and valgrind writes
its leak report) and reads every valgrind log: no memcheck error at all in
any process, and no definitely/indirectly lost block allocated through our
code. Needs valgrind (scripts/deps); without it the test fails, never skips.

A second chain runs dovegate-auth itself under memcheck (issue 7): logins of
every kind through nginx (IMAP LOGIN and AUTHENTICATE, CRAM-MD5, POP3 USER/PASS
and APOP, submission, EXTERNAL with a client certificate, MX without AUTH),
refusals, a reload, then SIGTERM: no memcheck error, no definitely or
indirectly lost block, valgrind's exit status clean. Skipped only in the
sanitizer build (valgrind cannot run ASan binaries; ASan watches it there).
"""
import glob
import imaplib
import os
import poplib
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request

import pytest

from chain import DEMO_USERS, Chain
from conftest import BUILD_DIR, LIVE_CHAINS, LogWatch, stop_chain
from helpers import LOGGED_IN, auth_http, auth_line, nginx_headers, user
from test_tickets import good_claims, mint, proxy_login

VALGRIND = "/usr/bin/valgrind"
# valgrind is slow: every imap-login (one per connection) and the auth
# process start under it, so waits are generous. The whole module stays
# well under 2 minutes.
SLOW = 60
STOP_TIMEOUT = 60

# Names that put a valgrind stack into our code: the two modules and the
# source files / functions they are built from.
OURS = re.compile(r"libauthdb_dovegate\.so|lib20_dovegate_plugin\.so|passdb_dovegate|login_plugin"
                  r"|\bticket[._]|keyring|replay_cache|claims_json|login_trust|dovegate")

# The measured recipe plus --keep-debuginfo=yes: Dovecot dlcloses its modules
# at exit, before the leak check, and without it a leak's frames inside our
# .so print as "???" (checked with a dlopen'ed test library): the leak would
# still count as an error, but could not be attributed to dovegate.
VG_OPTS = ("--vgdb=no --leak-check=full --show-leak-kinds=all "
           "--errors-for-leak-kinds=definite,indirect,possible --track-origins=yes --num-callers=30 "
           "--keep-debuginfo=yes")
AUTH_MODULE = "libauthdb_dovegate.so"
LOGIN_PLUGIN = "lib20_dovegate_plugin.so"


def dovecot_settings(logdir):
    return f"""
# test_valgrind: auth and imap-login under valgrind's memcheck.
service auth {{
  executable = {VALGRIND} {VG_OPTS} --log-file={logdir}/auth.%p.log /usr/lib/dovecot/auth
}}
# Login processes chroot into base_dir/login (Dovecot's default, kept): the
# process execs valgrind outside the chroot, valgrind opens its log file
# and reads the debug info of every library (the login plugin included)
# when it is mapped, and imap-login loads its plugins before it chroots
# itself; measured: the same reports with and without the chroot. Should a
# valgrind or Dovecot update break that, "chroot =" here is an acceptable
# fallback for this test (it changes where the process finds files, not
# what the plugin does with memory).
service imap-login {{
  executable = {VALGRIND} {VG_OPTS} --log-file={logdir}/imap-login.%p.log /usr/lib/dovecot/imap-login
}}
"""


@pytest.fixture(scope="module")
def vg():
    """(chain, valgrind log dir): a ticket-mode chain with auth and imap-login
    under valgrind. The test stops Dovecot itself; stop_chain here is then a
    no-op for the daemons and removes the state (kept on failure)."""
    if not os.access(VALGRIND, os.X_OK):
        pytest.fail(f"{VALGRIND} missing: install valgrind (add it to TEST_PKGS in scripts/deps)")
    logdir = tempfile.mkdtemp(prefix="dovegate-valgrind-", dir="/tmp")
    os.chmod(logdir, 0o755)  # valgrind opens its log before the process drops root
    keep = True  # on any failure, start-up included
    try:
        # Dovecot under valgrind starts slowly on a loaded machine: 60 s
        # one health probe per backend, at start-up: a later probe's
        # imap-login (under memcheck, slow to start) could be SIGQUIT mid-start
        # when the chain stops, and memcheck would report Dovecot's memory
        c = start_wrapped_chain([], dovecot_post=dovecot_settings(logdir),
                                health={"interval": "3600s"})
        try:
            yield c, logdir
        finally:
            c.stop(timeout=STOP_TIMEOUT)  # valgrind'ed processes exit slowly
            stop_chain(c)
        keep = getattr(pytest, "dovegate_failed", False)
    finally:
        if keep:
            print(f"\nvalgrind logs kept for inspection: {logdir}")
        else:
            shutil.rmtree(logdir, ignore_errors=True)


def ticket_login_through_nginx(chain, dlog):
    name, password = user(chain, "alice")
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=SLOW)
    assert c.login(name, password)[0] == "OK"
    assert c.select("INBOX")[0] == "OK"
    c.logout()
    session = dlog.wait_for(r"dovegate: ticket accepted: session=(\S+)", SLOW).group(1)
    line = dlog.wait_for(rf"imap-login: Info: dovegate: login user=<{name}> session=<{re.escape(session)}>.*",
                         SLOW).group(0)
    assert "session_from=ticket" in line, line
    dlog.wait_for(rf"imap-login: Info: {LOGGED_IN} user=<{name}>.*session=<{re.escape(session)}>", SLOW)


def wrong_password_through_nginx(chain, alog):
    """Refused by dovegate-auth; nginx never reaches Dovecot."""
    name, _ = user(chain, "bob")
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=SLOW)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(name, "not-bobs-password")
    c.shutdown()
    alog.wait_for(rf"\bdecision\b.*\buser={name}\b.*\bresult=fail\b.*\breason=bad_password\b", SLOW)


def plain_password_on_haproxy_port(chain, dlog):
    """Not a ticket, on one of nginx_ports: refused by the dovegate passdb."""
    name, _ = user(chain, "carol")
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, "not-carols-password")
    dlog.wait_for(r"dovegate: password refused: reason=nginx_port\b", SLOW)


def plain_password_on_direct_port(chain, dlog):
    """Not a ticket, on Dovecot's own listener: the dovegate passdb hands it
    on; the passwd-file refuses it."""
    name, _ = user(chain, "carol")
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["DOVECOT_IMAP_PORT"]), timeout=SLOW)
    with pytest.raises(imaplib.IMAP4.error):
        c.login(name, "not-carols-password")
    c.shutdown()
    dlog.wait_for(auth_line("passwd-file", name) + "Password mismatch", SLOW)


def replayed_ticket(chain, dlog):
    name, password = user(chain, "alice")
    resp = auth_http(chain, nginx_headers(chain, name, password))
    assert resp["auth-status"] == "OK", resp
    ticket = resp["auth-pass"]
    c, (typ, _) = proxy_login(chain, resp["auth-user"], ticket)
    assert typ == "OK"
    c.logout()
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, resp["auth-user"], ticket)
    dlog.wait_for(r"dovegate: ticket refused: reason=replay\b", SLOW)


def tampered_ticket(chain, dlog):
    name, _ = user(chain, "alice")
    ticket = mint(chain, good_claims(chain, name))
    head, body = ticket[:20], ticket[20:]
    flipped = head + ("A" if body[0] != "A" else "B") + body[1:]
    with pytest.raises(imaplib.IMAP4.error):
        proxy_login(chain, name, flipped)
    dlog.wait_for(r"dovegate: ticket refused: reason=(bad_signature|malformed)\b", SLOW)


# ---- valgrind logs ----------------------------------------------------------

def pid_of(path):
    return int(re.search(r"\.(\d+)\.log$", path).group(1))


def wait_for_exit(paths, timeout):
    """Dovecot's master may be gone before its children finish their leak
    check: wait for every valgrind'ed pid to disappear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in paths if os.path.exists(f"/proc/{pid_of(p)}")]
        if not alive:
            return []
        time.sleep(0.2)
    return alive


def blocks(text):
    """A valgrind log as blocks: the lines between two empty '==PID== ' lines."""
    out, cur = [], []
    for line in text.splitlines():
        if re.sub(r"^==\d+==", "", line).strip():
            cur.append(line)
        elif cur:
            out.append("\n".join(cur))
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


# Blocks that are not an error or a lost block: preamble, summaries, and
# still-reachable records (Dovecot's and glibc's, reported but not errors).
NOT_AN_ERROR = re.compile(r"Memcheck, a memory error detector|HEAP SUMMARY:|All heap blocks were freed"
                          r"|LEAK SUMMARY:|For lists of detected|For counts of detected|ERROR SUMMARY:"
                          r"|are still reachable in loss record")
OUR_LEAK = re.compile(r"are (definitely|indirectly) lost in loss record")


def findings(path):
    """(problems, text) of one valgrind log; a problem is a headline plus the
    valgrind excerpts, blocks through dovegate code first and marked."""
    with open(path, errors="replace") as f:
        text = f.read()
    m = re.search(r"ERROR SUMMARY: (\d+) errors? from (\d+) contexts?.*", text)
    if not m:
        return [f"{path}: no ERROR SUMMARY (process killed, or still running?); last lines:\n"
                + "\n".join(text.splitlines()[-30:])], text
    errors = [b for b in blocks(text) if not NOT_AN_ERROR.search(b.split("\n", 1)[0])]
    ours = [b for b in errors if OURS.search(b)]
    our_leaks = [b for b in ours if OUR_LEAK.search(b)]
    if int(m.group(1)) == 0 and not our_leaks:
        return [], text
    shown = "\n\n".join([f"[through dovegate code]\n{b}" for b in ours]
                         + [b for b in errors if b not in ours])
    if len(shown) > 8000:
        shown = shown[:8000] + f"\n[... cut; whole log: {path}]"
    return [f"{path}: {m.group(0)}; {len(ours)} block(s) through dovegate code, "
            f"{len(our_leaks)} of them definitely/indirectly lost\n{shown}"], text


def maps(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return f.read()
    except OSError:
        return ""


def valgrind_logs(logdir, kind):
    return sorted(glob.glob(os.path.join(logdir, f"{kind}.*.log")))


def assert_modules_loaded_under_valgrind(chain, logdir):
    """The processes valgrind watches really run our code: the live auth
    process has the passdb module mapped, and a fresh imap-login (one per
    connection) the login plugin. Checked in /proc/PID/maps of the pids that
    name valgrind's logs."""
    auth = [p for p in valgrind_logs(logdir, "auth") if AUTH_MODULE in maps(pid_of(p))]
    assert auth, (f"no running auth process under valgrind with {AUTH_MODULE} mapped; "
                  f"logs: {os.listdir(logdir)}")
    with socket.create_connection(("127.0.0.1", int(chain.env["DOVECOT_IMAP_PORT"])), timeout=SLOW) as s:
        assert s.recv(512).startswith(b"* OK")  # imap-login is up, plugins loaded
        login = [p for p in valgrind_logs(logdir, "imap-login") if LOGIN_PLUGIN in maps(pid_of(p))]
        assert login, (f"no running imap-login under valgrind with {LOGIN_PLUGIN} mapped; "
                       f"logs: {os.listdir(logdir)}")


def test_modules_run_clean_under_valgrind(vg):
    chain, logdir = vg
    dlog = LogWatch(chain.env["LOG_DOVECOT"])
    alog = LogWatch(chain.env["LOG_AUTH"])

    ticket_login_through_nginx(chain, dlog)
    wrong_password_through_nginx(chain, alog)
    plain_password_on_haproxy_port(chain, dlog)
    plain_password_on_direct_port(chain, dlog)
    replayed_ticket(chain, dlog)
    tampered_ticket(chain, dlog)
    assert_modules_loaded_under_valgrind(chain, logdir)

    # Stop everything; SIGTERM to Dovecot's master makes auth and the login
    # processes exit normally, so valgrind runs its leak check.
    chain.stop(timeout=STOP_TIMEOUT)
    logs = sorted(glob.glob(os.path.join(logdir, "*.log")))
    still = wait_for_exit(logs, STOP_TIMEOUT)
    assert not still, f"processes under valgrind still running after Dovecot stopped: {still}"

    # At least one log per process type: the test must be able to fail.
    auth, login = valgrind_logs(logdir, "auth"), valgrind_logs(logdir, "imap-login")
    assert auth and login, f"valgrind logs in {logdir}: {os.listdir(logdir)}"
    # One imap-login per connection: the start-up probe, the nginx login,
    # the wrong password on the haproxy port, two replay logins, the tampered
    # ticket and the probe above.
    assert len(login) >= 7, login

    problems = []
    for p in logs:
        problems += findings(p)[0]
    assert not problems, (f"valgrind found problems ({len(logs)} logs in {logdir}):\n\n"
                          + "\n\n".join(problems))


# ---- dovegate-auth under valgrind ---------------------------------------------

class WrappedAuthChain(Chain):
    """A chain whose dovegate-auth runs under a wrapper command (valgrind,
    faketime): the wrapper's argv goes in front of dovegate-auth's."""

    def __init__(self, *args, auth_wrapper=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.auth_wrapper = list(auth_wrapper)

    def auth_argv(self):
        return self.auth_wrapper + [self.binary("src/shim/dovegate-auth"), "-c",
                                    self.path("etc", "dovegate-auth.conf")]

    def _spawn(self, name, argv, log=None):
        if name == "dovegate-auth":
            argv = self.auth_argv()
        return super()._spawn(name, argv, log)

    def restart_auth(self, timeout=30):
        """SIGTERM dovegate-auth by pid, wait, start it again (same wrapper)."""
        proc = self.procs["dovegate-auth"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
        self._spawn("dovegate-auth", None, log=self.values["LOG_AUTH"])


def start_wrapped_chain(auth_wrapper, **kwargs):
    """conftest.start_chain for a WrappedAuthChain (log tails on failure too)."""
    state = tempfile.mkdtemp(prefix="dovegate-test-", dir="/tmp")
    c = WrappedAuthChain(state, BUILD_DIR, auth_wrapper=auth_wrapper, **kwargs)
    try:
        c.start(timeout=60)
    except Exception:
        tails = c.log_tails(60) if hasattr(c, "values") else ""
        pytest.fail(f"chain did not start (state kept in {state}):\n{tails}", pytrace=True)
    LIVE_CHAINS.append(c)
    return c


def sanitized_build():
    """True for a --enable-sanitizers build (dovegate-auth links libasan)."""
    out = subprocess.run(["ldd", os.path.join(BUILD_DIR, "src", "shim", "dovegate-auth")],
                         capture_output=True, text=True)
    return "libasan" in out.stdout


AUTH_VG_EXIT = 99  # valgrind's exit status when it found an error
AUTH_VG_OPTS = ["--vgdb=no", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect", f"--error-exitcode={AUTH_VG_EXIT}",
                "--track-origins=yes", "--num-callers=30"]
# bob's ARGON2ID hash would take minutes under memcheck: PLAIN and SHA512-CRYPT
AUTH_VG_USERS = [u for u in DEMO_USERS if u[2] != "ARGON2ID"]


@pytest.fixture(scope="module")
def vg_auth():
    if not os.access(VALGRIND, os.X_OK):
        pytest.fail(f"{VALGRIND} missing: install valgrind (add it to TEST_PKGS in scripts/deps)")
    if sanitized_build():
        pytest.skip("sanitizer build: valgrind cannot run ASan binaries (ASan checks them instead)")
    logdir = tempfile.mkdtemp(prefix="dovegate-valgrind-auth-", dir="/tmp")
    log = os.path.join(logdir, "dovegate-auth.%p.log")
    c = start_wrapped_chain([VALGRIND, *AUTH_VG_OPTS, f"--log-file={log}"], users=AUTH_VG_USERS,
                            imap_auth="plain login cram-md5", pop3_auth="plain apop")
    try:
        yield c, logdir
    finally:
        stop_chain(c)
        if not getattr(pytest, "dovegate_failed", False):
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print(f"\nvalgrind logs kept for inspection: {logdir}")


def every_kind_of_login(chain, alog):
    e = chain.env
    alice, carol = user(chain, "alice"), user(chain, "carol")
    port = int(e["NGINX_IMAP_PORT"])
    c = imaplib.IMAP4("127.0.0.1", port, timeout=SLOW)
    assert c.login(*alice)[0] == "OK"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", port, timeout=SLOW)
    assert c.authenticate("PLAIN", lambda _: f"\0{carol[0]}\0{carol[1]}".encode())[0] == "OK"
    c.logout()
    c = imaplib.IMAP4("127.0.0.1", port, timeout=SLOW)
    assert c.login_cram_md5(*carol)[0] == "OK"
    c.logout()
    p = poplib.POP3("127.0.0.1", int(e["NGINX_POP3_PORT"]), timeout=SLOW)
    p.user(alice[0])
    assert p.pass_(alice[1]).startswith(b"+OK")
    p.quit()
    p = poplib.POP3("127.0.0.1", int(e["NGINX_POP3_PORT"]), timeout=SLOW)
    assert p.apop(*carol).startswith(b"+OK")
    p.quit()
    with smtplib.SMTP("127.0.0.1", int(e["NGINX_SUBMISSION_PORT"]), timeout=SLOW) as s:
        s.ehlo("client.example")
        assert s.login(*alice)[0] == 235
    ctx = ssl.create_default_context(cafile=e["TLS_CA"])
    ctx.load_cert_chain(e["TLS_CLIENT_CERT"], e["TLS_CLIENT_KEY"])
    c = imaplib.IMAP4_SSL("127.0.0.1", int(e["NGINX_IMAPS_PORT"]), ssl_context=ctx, timeout=SLOW)
    assert c.authenticate("EXTERNAL", lambda _: b"")[0] == "OK"
    c.logout()
    with smtplib.SMTP("127.0.0.1", int(e["NGINX_SMTP_PORT"]), timeout=SLOW) as s:
        s.ehlo("client.example.com")
        assert s.mail("sender@example.com")[0] == 250
        assert s.rcpt("carol@example.org")[0] == 250
    with smtplib.SMTP("127.0.0.1", int(e["NGINX_SMTP_PORT"]), timeout=SLOW) as s:
        s.ehlo("client.example.com")
        assert s.mail("sender@example.com")[0] == 250
        assert s.rcpt("someone@example.com")[0] == 550  # not a relay domain
    for method in ("plain", "cram-md5", "apop", "external", "none"):
        alog.wait_for(rf"\bdecision\b.*\bmethod={method}\b.*\bresult=ok\b", SLOW)


def refusals(chain, alog):
    """Wrong password, unknown user, bad request, missing secret: straight to
    dovegate-auth (through nginx each costs Auth-Wait seconds)."""
    name, _ = user(chain, "alice")
    assert auth_http(chain, nginx_headers(chain, name, "wrong"))["auth-status"] != "OK"
    assert auth_http(chain, nginx_headers(chain, "nobody", "x"))["auth-status"] != "OK"
    assert auth_http(chain, nginx_headers(chain, name, "pw%0D%0A"))["auth-status"] != "OK"
    h = nginx_headers(chain, name, "x")
    del h[chain.env["AUTH_HTTP_SECRET_HEADER"]]
    assert auth_http(chain, h)["auth-status"] != "OK"
    for reason in ("bad_password", "unknown_user|bad_password", "bad_request", "bad_secret"):
        alog.wait_for(rf"\bdecision\b.*\breason=({reason})\b", SLOW)


def test_dovegate_auth_runs_clean_under_valgrind(vg_auth):
    chain, logdir = vg_auth
    alog = LogWatch(chain.env["LOG_AUTH"])
    every_kind_of_login(chain, alog)
    refusals(chain, alog)
    proc = chain.procs["dovegate-auth"]
    proc.send_signal(signal.SIGHUP)
    alog.wait_for(r"configuration reloaded", SLOW)
    every_kind_of_login(chain, LogWatch(chain.env["LOG_AUTH"]))  # on the new runtime
    # the metrics listener renders every counter and gauge
    with urllib.request.urlopen(chain.env["METRICS_URL"], timeout=SLOW) as r:
        assert b"dovegate_auth_requests_total{" in r.read()

    proc.send_signal(signal.SIGTERM)
    status = proc.wait(STOP_TIMEOUT)
    logs = glob.glob(os.path.join(logdir, "dovegate-auth.*.log"))
    assert len(logs) == 1, logs
    problems, text = findings(logs[0])
    summary = re.search(r"definitely lost: ([\d,]+) bytes", text)
    assert not problems, "\n\n".join(problems)
    assert status == 0, f"exit status {status} (valgrind's on error: {AUTH_VG_EXIT}):\n{text[-3000:]}"
    assert summary is None or summary.group(1) == "0" or "All heap blocks were freed" in text, text[-3000:]
