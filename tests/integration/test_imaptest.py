"""imaptest through the chain (issue 14): Dovecot's own IMAP server tester.

- Compliance: imaptest's whole scripted suite (the tarball's src/tests, one
  run per target) against Dovecot directly, and through nginx +
  dovegate-auth in ticket and in master mode. Directly every group passes;
  through nginx every group passes except the differences listed in
  NGINX_DIFFERENCES, each with its reason (and the way it fails). A group
  that newly fails, fails differently, or a listed one that passes, fails
  the test. Groups imaptest skips are listed too (imaptest_support's
  EXPECTED_SKIPS). Per-group results are printed for every run.
- Stress: imaptest's default command mix, appends included, with 20
  clients over 5 users for 30 s through nginx, in both modes: no `Error:`
  line from imaptest, every login decided ok, every nginx session in its
  own user's mailbox (session ids in ticket mode, per-user login counts in
  master mode), and no error in Dovecot's or dovegate-auth's log.

imaptest comes from scripts/imaptest (built into $BUILD_DIR/imaptest from
../shared/imaptest, or IMAPTEST_SRC / IMAPTEST_BIN); without any, these tests
skip with one line saying how to get it (under CI=true they fail instead).
The login-rate comparison with direct Dovecot is a benchmark:
bench/run-imaptest-logins.
"""
import collections
import os
import re
import subprocess
import sys
import time

import pytest
from chain import DEMO_USERS
from conftest import start_chain, stop_chain
from helpers import LOGGED_IN, watch_logs
import imaptest_support as its

# the 31.8 KB, 30-pair ID command in the not-authenticated state: nginx
# (1.22) answers it itself; raising imap_client_buffer does not change that
NGINX_DIFFERENCES = {
    "id": ("nginx answers imaptest's 31.8 KB ID command (30 pairs, before login) itself with "
           "BAD invalid command; raising imap_client_buffer does not change it",
           r"BAD invalid command"),
}

COMPLIANCE_USERS = {"direct": ("ct-direct", "ct-pass-d"), "ticket": ("ct-ticket", "ct-pass-t"),
                    "master": ("ct-master", "ct-pass-m")}
STRESS_PASSWORD = "stress-pass-14"   # imaptest's users= share one password
STRESS_USERS = [(f"stress{i}", STRESS_PASSWORD, "PLAIN") for i in range(1, 6)]
STRESS_CLIENTS, STRESS_SECS = 20, 30
USERS = DEMO_USERS + [(u, p, "PLAIN") for u, p in COMPLIANCE_USERS.values()] + STRESS_USERS


@pytest.fixture(scope="module")
def imaptest():
    return its.get_imaptest()


def imaptest_chain(mode):
    # URLAUTH on, so that imaptest's urlauth groups run
    return start_chain(users=USERS, credentials=mode, dovecot_post=its.urlauth_settings())


@pytest.fixture(scope="module")
def ticket_it(imaptest):
    c = imaptest_chain("ticket")
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def master_it(imaptest):
    c = imaptest_chain("master")
    yield c
    stop_chain(c)


def show(capsys, text):
    """Per-group results and timings go to the terminal even when pytest
    captures output (they are the point of these tests)."""
    with capsys.disabled():
        print("\n" + text, flush=True)


def compliance(imaptest, chain, port_key, who, expected, title, capsys):
    user, password = COMPLIANCE_USERS[who]
    logs = watch_logs(chain)
    run = its.Compliance(imaptest, int(chain.env[port_key]), user, password)
    skips = its.expected_skips()
    show(capsys, run.report(f"{title} (127.0.0.1:{chain.env[port_key]}, user {user})", expected, skips))
    problems = run.problems(expected, skips)
    # a crashed imap process can hide behind a group that still "passes"
    crashes = [l for l in logs["dovecot"].text().splitlines() if re.search(r": (Fatal|Panic):", l)]
    if crashes:
        problems.append("Dovecot crashed during the run:\n" + first(crashes))
    assert not problems, "\n".join(problems)


def test_compliance_direct(imaptest, ticket_it, capsys):
    compliance(imaptest, ticket_it, "DOVECOT_IMAP_PORT", "direct", {}, "Dovecot directly", capsys)


@pytest.mark.parametrize("mode", ["ticket", "master"])
def test_compliance_through_nginx(imaptest, mode, request, capsys):
    chain = request.getfixturevalue(f"{mode}_it")
    compliance(imaptest, chain, "NGINX_IMAP_PORT", mode, NGINX_DIFFERENCES,
               f"through nginx + dovegate-auth, {mode} mode", capsys)


# ---- stress ---------------------------------------------------------------

DECISION = re.compile(r"\bdecision session=(\S+) proto=imap .*?\buser=(\S+) .*?\bresult=(\S+) reason=(\S+)")
LOGIN = re.compile(rf"imap-login: Info: {LOGGED_IN} user=<([^>]*)>.*?\bsession=<([^>]*)>")
MAIL_PREFIX = re.compile(r"\bimap\(([^)]*)\)<\d+><([^>]*)>")
AUTH_BAD_LEVEL = re.compile(r"dovegate-auth\[\d+\]: (error|crit\w*|fatal|alert|emerg\w*):")
DOVECOT_BAD = re.compile(r": (Error|Fatal|Panic):")
NGINX_BAD = re.compile(r"\[(crit|alert|emerg)\]")


def first(lines, n=15, width=240):
    return "\n".join("  " + (l if len(l) <= width else l[:width] + "...") for l in lines[:n])


@pytest.mark.parametrize("mode", ["ticket", "master"])
def test_imaptest_stress_through_nginx(imaptest, mode, request, capsys):
    chain = request.getfixturevalue(f"{mode}_it")
    logs = watch_logs(chain)
    port = int(chain.env["NGINX_IMAP_PORT"])
    t0 = time.monotonic()
    rc, out, tot = its.stress(imaptest, port, "stress%d", len(STRESS_USERS), STRESS_PASSWORD,
                              STRESS_CLIENTS, STRESS_SECS)
    took = time.monotonic() - t0
    errors = [l for l in out.splitlines() if "Error:" in l]

    # every decision, and Dovecot's Login: lines (only imaptest logs in
    # during the run: health probes never do); a login reaches Dovecot's log
    # shortly after imaptest saw its OK
    decisions = DECISION.findall(logs["auth"].text())
    deadline = time.monotonic() + 15
    while True:
        logins = LOGIN.findall(logs["dovecot"].text())
        if len(logins) >= len(decisions) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    auth_text, dovecot_text, nginx_text = logs["auth"].text(), logs["dovecot"].text(), logs["nginx"].text()
    not_ok = [d for d in decisions if d[2] != "ok"]
    auth_bad = [l for l in auth_text.splitlines() if AUTH_BAD_LEVEL.search(l)]
    auth_warn = [l for l in auth_text.splitlines() if ": warning:" in l]
    dovecot_bad = [l for l in dovecot_text.splitlines() if DOVECOT_BAD.search(l)]
    nginx_bad = [l for l in nginx_text.splitlines() if NGINX_BAD.search(l)]
    nginx_errors = [l for l in nginx_text.splitlines() if "[error]" in l]

    # no wrong mailbox: each session is its own user's
    wrong = []
    decided = collections.Counter(d[1] for d in decisions)
    logged_in = collections.Counter(m[0] for m in logins)
    if mode == "ticket":
        # the ticket carries the decision's session id into Dovecot's
        # Login: line and the imap process's log prefix
        user_of = {d[0]: d[1] for d in decisions}
        for user, session in logins:
            if user_of.get(session) != user:
                wrong.append(f"Login: user=<{user}> session=<{session}>: decided for {user_of.get(session)}")
        for user, session in MAIL_PREFIX.findall(dovecot_text):
            if session in user_of and user_of[session] != user:
                wrong.append(f"imap({user}) session {session}: decided for {user_of[session]}")
    if decided != logged_in:
        wrong.append(f"logins per user: decided {dict(decided)}, Dovecot logged in {dict(logged_in)}")

    show(capsys, f"imaptest stress through nginx, {mode} mode: {STRESS_CLIENTS} clients, "
         f"{len(STRESS_USERS)} users, {STRESS_SECS} s (took {took:.1f} s), imaptest exit {rc}\n"
         f"  totals: {tot}\n"
         f"  Error: lines {len(errors)}; decisions {len(decisions)} (not ok: {len(not_ok)}); "
         f"Dovecot logins {len(logins)}; wrong mailbox {len(wrong)}; Dovecot errors "
         f"{len(dovecot_bad)}; dovegate-auth errors {len(auth_bad)}, warnings {len(auth_warn)}; "
         f"nginx [error] lines {len(nginx_errors)}"
         + ("\n  dovegate-auth warnings:\n" + first(auth_warn, 5) if auth_warn else ""))

    problems = []
    if rc != 0:
        problems.append(f"imaptest exited {rc}")
    if not tot or tot.get("Logi", 0) < STRESS_CLIENTS or not tot.get("Appe") or not tot.get("Logo"):
        problems.append(f"too little happened (LOGIN >= {STRESS_CLIENTS}, APPEND and LOGOUT > 0 "
                        f"expected): {tot}\n{out[-3000:]}")
    if errors:
        problems.append(f"{len(errors)} Error: lines from imaptest:\n" + first(errors))
    if not decisions:
        problems.append("no decision lines in dovegate-auth's log")
    if not_ok:
        problems.append(f"{len(not_ok)} logins not ok (refused or failed): " + ", ".join(
            f"{u} result={r} reason={why}" for _, u, r, why in not_ok[:10]))
    if wrong:
        problems.append("sessions in the wrong mailbox or unaccounted for:\n" + first(wrong))
    if dovecot_bad:
        problems.append("errors in Dovecot's log:\n" + first(dovecot_bad))
    if auth_bad:
        problems.append("errors in dovegate-auth's log:\n" + first(auth_bad))
    if nginx_bad:
        problems.append("critical lines in nginx's log:\n" + first(nginx_bad))
    assert not problems, "\n".join(problems)


def test_bench_imaptest_logins_smoke(imaptest, capsys):
    """bench/run-imaptest-logins --smoke: the login-rate harness still runs
    (not a measurement: each contender once for a second)."""
    env = dict(os.environ, BUILD_DIR=its.BUILD_DIR, IMAPTEST_BIN=imaptest["bin"],
               IMAPTEST_TESTS=imaptest["tests"])
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(its.SRC_DIR, "bench", "run-imaptest-logins"),
                          "--smoke", "--build-dir", its.BUILD_DIR], capture_output=True, text=True,
                         env=env, timeout=180)
    report = f"exit {out.returncode} after {time.monotonic() - t0:.1f}s\n{out.stdout}\n{out.stderr[-6000:]}"
    assert out.returncode == 0, report
    assert "smoke: imaptest login-rate harness ran" in out.stdout, report
