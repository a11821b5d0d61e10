"""dovegate-auth's `dovecot` passdb: it asks a real Dovecot auth service.

The chain variant Chain(passdb="dovecot-unix"|"dovecot-tcp"): dovegate-auth's
[passdb] is a local users file (etc/users-local, empty at first) followed by
[passdb dovecot], a client of the chain Dovecot's own auth-client listener.
Logins go through nginx with imaplib, as a real client would.
"""
import os
import poplib
import signal
import smtplib
import sqlite3
import subprocess
import tempfile
import time

import imaplib
import pytest

from chain import CHAIN_DIR, dovecot_conf, wait_for_greeting
from conftest import BUILD_DIR, start_chain, stop_chain
from helpers import auth_line, decision, user, watch_logs

SQL_USER, SQL_PASSWORD = "dave", "dave-sql-pass-4"


def sqlite_passdb(dirpath):
    """Dovecot settings for an SQLite passdb (+ a static userdb) holding dave."""
    db = os.path.join(dirpath, "users.sqlite")
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE users (username TEXT PRIMARY KEY, password TEXT)")
        con.execute("INSERT INTO users VALUES (?, ?)", (SQL_USER, "{PLAIN}" + SQL_PASSWORD))
    conf = os.path.join(dirpath, "dovecot-sql.conf.ext")
    with open(conf, "w") as f:
        f.write(f"driver = sqlite\nconnect = {db}\n"
                "password_query = SELECT username AS user, password FROM users "
                "WHERE username = '%u'\n")
    for p in (dirpath, db, conf):
        os.chmod(p, 0o755 if os.path.isdir(p) else 0o644)
    mail = subprocess.run(["id", "-u", "mail"], capture_output=True, text=True).stdout.strip()
    # after the chain's passwd-file passdb/userdb: users there still win
    return dovecot_conf(f"""
passdb {{
  driver = sql
  args = {conf}
}}
userdb {{
  driver = static
  args = uid={mail} gid={mail} home=@STATE_DIR@/mail/%n
}}
""", f"""
sql_driver = sqlite
sqlite_path = {db}
passdb sql {{
  query = SELECT username AS user, password FROM users WHERE username = '%{{user}}'
}}
userdb static {{
  fields {{
    uid = {mail}
    gid = {mail}
    home = @STATE_DIR@/mail/%{{user | username}}
  }}
}}
""")


@pytest.fixture(scope="module")
def sqldir():
    d = tempfile.mkdtemp(prefix="dovegate-sql-", dir="/tmp")
    yield d
    subprocess.run(["rm", "-rf", d], check=False)


@pytest.fixture(scope="module")
def unix_chain():
    c = start_chain(passdb="dovecot-unix")
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def sql_chain(sqldir):
    """Needs the dovecot-sqlite package. The chain renders @STATE_DIR@."""
    c = start_chain(passdb="dovecot-unix", dovecot_post=sqlite_passdb(sqldir))
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def tcp_chain():
    c = start_chain(passdb="dovecot-tcp")
    yield c
    stop_chain(c)


def login(chain, name, password):
    """(True, "") on success, (False, Dovecot/nginx's answer) on NO."""
    c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=30)
    try:
        c.login(name, password)
    except imaplib.IMAP4.error as e:
        return False, str(e)
    finally:
        try:
            c.logout()
        except Exception:
            pass
    return True, ""


def test_good_login_via_dovecot_unix(unix_chain):
    logs = watch_logs(unix_chain)
    name, password = user(unix_chain, "alice")
    assert login(unix_chain, name, password) == (True, "")
    decision(logs, proto="imap", method="plain", user=name, result="ok")


def test_wrong_password_fails_and_dovecot_sees_client_and_session(unix_chain):
    logs = watch_logs(unix_chain)
    name, _ = user(unix_chain, "bob")
    ok, answer = login(unix_chain, name, "not-bobs-password")
    assert not ok
    m = decision(logs, user=name, result="fail", reason="bad_credentials")
    session = m.group(1)
    # Dovecot's auth log names the real client address and our session id
    logs["dovecot"].wait_for(auth_line("passwd-file", name, r"127\.0\.0\.1", session)
                             + "Password mismatch")
    # the password never reaches dovegate-auth's log
    assert "not-bobs-password" not in logs["auth"].text()


def test_unknown_user_fails(unix_chain):
    logs = watch_logs(unix_chain)
    ok, _ = login(unix_chain, "nobody-here", "whatever")
    assert not ok
    decision(logs, user="nobody-here", result="fail")


def test_submission_and_pop3_via_dovecot(unix_chain):
    """nginx's "smtp" is sent to Dovecot as service=submission."""
    logs = watch_logs(unix_chain)
    name, password = user(unix_chain, "alice")
    with smtplib.SMTP("127.0.0.1", int(unix_chain.env["NGINX_SUBMISSION_PORT"]), timeout=15) as s:
        s.ehlo("client.example")
        s.login(name, password)
    decision(logs, proto="smtp", user=name, result="ok")
    p = poplib.POP3("127.0.0.1", int(unix_chain.env["NGINX_POP3_PORT"]), timeout=15)
    p.user(name)
    p.pass_(password)
    p.quit()
    decision(logs, proto="pop3", user=name, result="ok")


def test_sqlite_passdb_behind_dovecot(sql_chain):
    logs = watch_logs(sql_chain)
    assert login(sql_chain, SQL_USER, SQL_PASSWORD) == (True, "")
    decision(logs, user=SQL_USER, result="ok")
    ok, _ = login(sql_chain, SQL_USER, "wrong")
    assert not ok
    decision(logs, user=SQL_USER, result="fail", reason="bad_credentials")
    # users of the chain's passwd-file passdb still log in through Dovecot
    name, password = user(sql_chain, "alice")
    assert login(sql_chain, name, password) == (True, "")


def test_local_file_first_then_dovecot(unix_chain):
    """carol in the local file (own password) wins over Dovecot's carol; a
    wrong password for her stops there, even if it is Dovecot's password."""
    logs = watch_logs(unix_chain)
    local = unix_chain.path("etc", "users-local")
    hashed = unix_chain.hash_password("carol-local-pw", "SHA512-CRYPT")
    with open(local + ".tmp", "w") as f:
        f.write(f"carol:{hashed}::::::\n")
    os.replace(local + ".tmp", local)
    time.sleep(1.1)     # the users file is looked at once a second at most
    try:
        assert login(unix_chain, "carol", "carol-local-pw") == (True, "")
        decision(logs, user="carol", result="ok")
        _, dovecot_password = user(unix_chain, "carol")
        ok, _ = login(unix_chain, "carol", dovecot_password)
        assert not ok
        decision(logs, user="carol", result="fail", reason="bad_password")
        # alice is not in the local file: Dovecot answers
        name, password = user(unix_chain, "alice")
        assert login(unix_chain, name, password) == (True, "")
    finally:
        with open(local, "w"):
            pass


def children(pid):
    kids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(entry))
        except (OSError, ValueError, IndexError):
            pass
    return kids


def stop_dovecot(chain):
    """Dovecot's auth process outlives its master for a while (it finishes
    its clients): stop both, by pid, so the auth socket really goes away."""
    dovecot = chain.procs["dovecot"]
    kids = children(dovecot.pid)
    dovecot.send_signal(signal.SIGTERM)
    dovecot.wait(15)
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def restart_dovecot(chain):
    v = chain.values
    chain._spawn("dovecot", [os.path.join(CHAIN_DIR, "run-dovecot.sh"),
                             chain.path("etc", "dovecot.conf"), v["LOGIN_PLUGIN_DIR"]],
                 log=chain.path("logs", "dovecot-stderr.log"))
    wait_for_greeting(v["DOVECOT_IMAP_PORT"], b"* OK", 30, chain.procs["dovecot"], "dovecot")
    chain.wait_backends_up()  # dovegate-auth's health checks saw it come back


def test_dovecot_down_fails_fast_then_recovers(unix_chain):
    logs = watch_logs(unix_chain)
    name, password = user(unix_chain, "alice")
    stop_dovecot(unix_chain)
    try:
        logs["auth"].wait_for(r"dovecot auth unix:.*logins fail temporarily")
        started = time.monotonic()
        ok, answer = login(unix_chain, name, password)
        assert not ok
        m = decision(logs, user=name, result="error", reason="temp_fail")
        assert 'detail="dovecot auth: not connected"' in m.group(0), m.group(0)
        # dovegate-auth answered at once; nginx then waits Auth-Wait
        ms = float(m.group(0).split("duration_ms=")[1].split()[0])
        assert ms < 100, m.group(0)
        assert time.monotonic() - started < 10
    finally:
        if unix_chain.procs["dovecot"].poll() is not None:
            restart_dovecot(unix_chain)
    # dovegate-auth reconnects by itself (backoff <= 5 s), no restart
    logs["auth"].wait_for(r"dovecot auth unix:\S+: connected", timeout=15)
    assert login(unix_chain, name, password) == (True, "")
    assert unix_chain.procs["dovegate-auth"].poll() is None


def test_reload_keeps_the_connection(unix_chain):
    logs = watch_logs(unix_chain)
    unix_chain.procs["dovegate-auth"].send_signal(signal.SIGHUP)
    logs["auth"].wait_for(r"configuration reloaded")
    name, password = user(unix_chain, "alice")
    assert login(unix_chain, name, password) == (True, "")
    assert "connected" not in logs["auth"].text()


def test_good_and_bad_login_via_dovecot_tcp(tcp_chain):
    logs = watch_logs(tcp_chain)
    name, password = user(tcp_chain, "alice")
    assert login(tcp_chain, name, password) == (True, "")
    decision(logs, user=name, result="ok")
    ok, _ = login(tcp_chain, name, "nope")
    assert not ok
    decision(logs, user=name, result="fail", reason="bad_credentials")


def test_config_check_does_not_need_dovecot(tcp_chain):
    """-t validates the syntax only: Dovecot may start after dovegate-auth."""
    conf = tcp_chain.path("etc", "dovegate-auth.conf")
    with open(conf) as f:
        text = f.read()
    bad = tcp_chain.path("etc", "dovegate-auth-t.conf")
    with open(bad, "w") as f:
        f.write(text.replace(f"tcp:127.0.0.1:{tcp_chain.values['DOVECOT_AUTH_CLIENT_PORT']}",
                             "tcp:127.0.0.1:1"))
    binary = os.path.join(BUILD_DIR, "src", "shim", "dovegate-auth")
    out = subprocess.run([binary, "-t", "-c", bad], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    with open(bad, "w") as f:
        f.write(text.replace("driver = dovecot", "driver = dovecot\nsocket_x = 1"))
    out = subprocess.run([binary, "-t", "-c", bad], capture_output=True, text=True)
    assert out.returncode == 1
    assert "unknown key 'socket_x' in [passdb dovecot]" in out.stderr
