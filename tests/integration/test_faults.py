"""Faults (issue 7): parts of the chain failing under dovegate-auth's feet.

- Dovecot's auth service (dovegate-auth's [passdb dovecot]) stopped and
  restarted under a steady stream of requests: fast temporary errors, never a
  wrong answer, recovery without restarting dovegate-auth.
- dovegate-auth itself restarted while clients log in through nginx: nginx
  sees refused connections for that moment; a good password never gets
  "Invalid login or password", a bad one never gets in.
- A users file that vanishes or is cut short on reload: the previous version
  is kept and the reason logged.
- Clock skew between dovegate-auth and Dovecot, inside and beyond the
  passdb's allowed skew: tickets signed with shifted times (the CLI), and
  dovegate-auth run under faketime.
(A backend killed mid-run is covered by the routing tests.)
"""
import calendar
import imaplib
import os
import re
import secrets
import shutil
import threading
import time

import pytest
from chain import DEMO_USERS
from conftest import LogWatch, start_chain, stop_chain
from helpers import auth_http, nginx_headers, user
from test_passdb_dovecot import restart_dovecot, stop_dovecot
from test_tickets import dovegate, good_claims, iso, mint, proxy_login
from test_valgrind import sanitized_build, start_wrapped_chain

FAIL = "Invalid login or password"
TEMPFAIL = "Temporary server problem, try again later"
SKEW = 30  # the chain's passdb dovegate skew (Dovecot side, its default)
FAST_USERS = [u for u in DEMO_USERS if u[2] != "ARGON2ID"]


class Load:
    """Requests in a background thread until stopped; keeps (when, what,
    answer, seconds). `ask(i)` returns (what, answer)."""

    def __init__(self, ask, pause=0.02, limit=2000):
        self.ask, self.pause, self.limit = ask, pause, limit
        self.results = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        for i in range(self.limit):  # bounded in count; stop() bounds it in time
            if self.stopping.is_set():
                return
            t = time.monotonic()
            what, answer = self.ask(i)
            self.results.append((t, what, answer, time.monotonic() - t))
            time.sleep(self.pause)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


# ---- Dovecot's auth service goes away and comes back ------------------------------

@pytest.fixture(scope="module")
def dchain():
    c = start_chain(users=FAST_USERS, passdb="dovecot-unix", penalty={"enabled": "no"})
    yield c
    stop_chain(c)


def test_dovecot_auth_restart_under_load(dchain):
    """alice's good password and a fresh wrong one each time (never cached:
    it must reach Dovecot), one after the other: every answer is right or
    temporary; while Dovecot is away the temporary errors come at once; after
    its restart the same dovegate-auth answers right again."""
    alog = LogWatch(dchain.env["LOG_AUTH"])
    pid = dchain.procs["dovegate-auth"].pid
    name, pw = user(dchain, "alice")

    def ask(i):
        if i % 2 == 0:
            return "good", auth_http(dchain, nginx_headers(dchain, name, pw))["auth-status"]
        bad = "wrong-" + secrets.token_hex(4)
        return "bad", auth_http(dchain, nginx_headers(dchain, name, bad))["auth-status"]

    with Load(ask) as load:
        time.sleep(1.0)
        stop_dovecot(dchain)
        stopped = time.monotonic()
        try:
            alog.wait_for(r"dovecot auth unix:.*logins fail temporarily")
            time.sleep(1.5)
        finally:
            restart_dovecot(dchain)
            dchain.wait_backends_up()  # dovegate-auth's health checks saw it come back
        restarted = time.monotonic()
        alog.wait_for(r"dovecot auth unix:\S+: connected", timeout=15)
        # until both kinds are answered again (a bad one waits out Dovecot's
        # 2 s failure delay), at most 10 s
        for _ in range(100):
            seen = {(r[1], r[2]) for r in load.results if r[0] > restarted + 0.5}
            if {("good", "OK"), ("bad", FAIL)} <= seen:
                break
            time.sleep(0.1)

    res = load.results
    assert len(res) > 20, len(res)
    wrong = [r for r in res if (r[1] == "good" and r[2] != "OK" and r[2] != TEMPFAIL)
             or (r[1] == "bad" and r[2] == "OK")]
    assert not wrong, wrong
    during = [r for r in res if stopped + 0.5 < r[0] < restarted and r[1] == "bad"]
    assert during and all(r[2] == TEMPFAIL for r in during), during
    assert max(r[3] for r in during) < 0.5, "temporary errors were not fast"
    after = [r for r in res if r[0] > restarted + 0.5]
    assert any(r[1] == "bad" and r[2] == FAIL for r in after), after[-6:]
    assert any(r[1] == "good" and r[2] == "OK" for r in after), after[-6:]
    # a user never cached logs in through Dovecot again, same dovegate-auth
    carol, cpw = user(dchain, "carol")
    assert auth_http(dchain, nginx_headers(dchain, carol, cpw))["auth-status"] == "OK"
    assert dchain.procs["dovegate-auth"].pid == pid and dchain.alive()["dovegate-auth"]


# ---- dovegate-auth restarted while nginx uses it -------------------------------------

@pytest.fixture(scope="module")
def rchain():
    c = start_wrapped_chain([], users=FAST_USERS, penalty={"enabled": "no"})
    yield c
    stop_chain(c)


def imap_login(chain, name, password):
    """'ok', 'fail' (nginx relayed our "Invalid login or password") or
    'unavailable' (anything else: nginx could not ask, or a reset)."""
    try:
        c = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=20)
    except OSError as e:
        return f"unavailable: {e}"
    try:
        c.login(name, password)
        c.logout()
        return "ok"
    except imaplib.IMAP4.error as e:
        return "fail" if FAIL in str(e) else f"unavailable: {e}"
    except (imaplib.IMAP4.abort, OSError) as e:
        return f"unavailable: {e}"


def test_restart_under_load_never_gives_a_wrong_answer(rchain):
    alog = LogWatch(rchain.env["LOG_AUTH"])
    nlog = LogWatch(rchain.env["LOG_NGINX"])
    name, pw = user(rchain, "alice")
    carol, cpw = user(rchain, "carol")
    results = []
    stopping = threading.Event()

    def client(good):
        for _ in range(200):
            if stopping.is_set():
                return
            if good:
                results.append(("good", imap_login(rchain, name, pw)))
            else:
                results.append(("bad", imap_login(rchain, carol, "wrong")))

    threads = [threading.Thread(target=client, args=(g,), daemon=True) for g in (True, True, False)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    rchain.restart_auth()
    alog.wait_for(r"signal 15: stopping")
    alog.wait_for(r"listening on 127\.0\.0\.1:\d+", timeout=30)
    rchain.wait_backends_up()
    time.sleep(2.0)
    stopping.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)

    good = [r for w, r in results if w == "good"]
    bad = [r for w, r in results if w == "bad"]
    assert good.count("ok") > 10 and bad, (len(good), len(bad))
    assert "fail" not in good, [r for r in good if r != "ok"]
    assert "ok" not in bad
    # every refusal nginx saw was the connection, never an answer it misread
    for line in nlog.text().splitlines():
        if "auth http server" in line and "error" in line:
            assert re.search(r"connect\(\) failed|recv\(\) failed|Connection refused", line), line
    assert imap_login(rchain, name, pw) == "ok"


# ---- the users file on reload -----------------------------------------------------------

@pytest.fixture(scope="module")
def fchain():
    c = start_chain(users=FAST_USERS, penalty={"enabled": "no"})
    yield c
    stop_chain(c)


def users_file(chain):
    return chain.values["USERS_FILE"]


def reload(chain):
    chain.procs["dovegate-auth"].send_signal(1)  # SIGHUP


def all_log_in(chain):
    for name, pw, _ in chain.users:
        assert auth_http(chain, nginx_headers(chain, name, pw))["auth-status"] == "OK", name


@pytest.mark.parametrize("how", ["missing", "unreadable", "truncated-line", "truncated-half"])
def test_broken_users_file_keeps_the_previous_version(fchain, how):
    alog = LogWatch(fchain.env["LOG_AUTH"])
    path = users_file(fchain)
    saved = path + ".saved"
    shutil.copy2(path, saved)
    text = open(saved).read()
    try:
        if how == "missing":
            os.unlink(path)
        elif how == "unreadable":  # root reads any mode: a directory in its place
            os.unlink(path)
            os.mkdir(path)
        elif how == "truncated-line":  # cut inside the last hash, as a full disk leaves it
            with open(path, "w") as f:
                f.write(text.rstrip("\n")[:-20])
        else:
            with open(path, "w") as f:
                f.write(text[:len(text) // 2])
        time.sleep(1.1)  # the file is looked at again at most once a second
        reload(fchain)
        all_log_in(fchain)  # also triggers the look at the changed file
        line = alog.wait_for(r"users file not reloaded, keeping the previous version "
                             r"\(\d+ users\): .+").group(0)
        assert "users file" in line and "reloaded:" not in alog.text(), alog.text()
        all_log_in(fchain)
    finally:
        if os.path.isdir(path):
            os.rmdir(path)
        os.replace(saved, path)
        os.utime(path)
    time.sleep(1.1)
    all_log_in(fchain)


# ---- clock skew between dovegate-auth and Dovecot -------------------------------------

@pytest.mark.parametrize("iat,exp,reason", [
    (SKEW - 10, SKEW + 50, None), (SKEW + 30, SKEW + 90, "not_yet_valid"),  # signer ahead
    (-25, -(SKEW - 10), None), (-100, -(SKEW + 10), "expired"),             # signer behind
])
def test_ticket_from_a_skewed_clock(fchain, iat, exp, reason):
    """Tickets signed by the CLI with iat/exp shifted (seconds from now), as a
    dovegate-auth whose clock is ahead or behind would sign them. (Far behind
    also meets the passdb's issued-before-start rule in a young auth process:
    the cases stay clear of it.)"""
    dlog = LogWatch(fchain.env["LOG_DOVECOT"])
    name, _ = user(fchain, "alice")
    now = int(time.time())
    ticket = mint(fchain, good_claims(fchain, name, iat=iso(now + iat), exp=iso(now + exp),
                                      jti=f"skew{iat}x{secrets.token_hex(6)}"))
    if reason is None:
        c, (typ, _) = proxy_login(fchain, name, ticket)
        assert typ == "OK"
        c.logout()
        dlog.wait_for(r"dovegate: ticket accepted")
    else:
        with pytest.raises(imaplib.IMAP4.error):
            proxy_login(fchain, name, ticket)
        dlog.wait_for(rf"dovegate: ticket refused: reason={reason}\b")


FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def faketime_wrapper(offset):
    """dovegate-auth's wall clock shifted by `offset` seconds (libfaketime);
    its monotonic clock (timers, timeouts) left alone."""
    env = ["env", f"LD_PRELOAD={FAKETIME_LIB}", f"FAKETIME={offset:+d}s",
           "FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_NO_CACHE=1"]
    if sanitized_build():  # ASan wants to be the first library; libfaketime is
        env.append("ASAN_OPTIONS=" + ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                            "verify_asan_link_order=0"])))
    return env


@pytest.mark.parametrize("offset,accepted", [(SKEW - 10, True), (SKEW + 60, False)])
def test_dovegate_auth_clock_ahead_under_faketime(offset, accepted):
    """The whole path through nginx with dovegate-auth's clock ahead of
    Dovecot's: inside the skew the login works; beyond it Dovecot refuses the
    ticket (the client sees a failure, Dovecot logs why)."""
    if not os.path.exists(FAKETIME_LIB):
        pytest.fail(f"{FAKETIME_LIB} missing: install faketime (scripts/deps)")
    c = start_wrapped_chain(faketime_wrapper(offset), users=FAST_USERS)
    try:
        dlog = LogWatch(c.env["LOG_DOVECOT"])
        name, pw = user(c, "alice")
        # the ticket says when dovegate-auth thinks it is
        ticket = auth_http(c, nginx_headers(c, name, pw))["auth-pass"]
        iat = re.search(r'"iat":"([^"]+)"', dovegate_inspect(c, ticket)).group(1)
        issued = calendar.timegm(time.strptime(iat, "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(issued - time.time() - offset) < 5, (iat, offset)

        result = imap_login(c, name, pw)
        if accepted:
            assert result == "ok"
            dlog.wait_for(r"dovegate: ticket accepted")
        else:
            assert result != "ok"
            dlog.wait_for(r"dovegate: ticket refused: reason=not_yet_valid\b")
    finally:
        stop_chain(c)


def dovegate_inspect(chain, ticket):
    return dovegate(chain, "ticket", "inspect", ticket).stdout
