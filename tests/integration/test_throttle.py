"""Brute force that really throttles (issue 15, point 1): once a network or
a user has a failure score, dovegate-auth holds the next login *before*
verifying it (success and failure alike), refuses it unverified at the hard
limit (refuse_at), caps the logins one network may have in flight
(max_pending), and never lets guesses from elsewhere slow a user on the
network they last logged in from.

A chain of its own with small numbers so that the holds take seconds:
max_delay = 2, refuse_at = 4, max_pending = 3. Each test uses its own
Client-IP values and user names (user scores are shared by every address).
"""
import concurrent.futures
import imaplib
import time

import pytest

from conftest import start_chain, stop_chain
from helpers import LogWatch, ask_from, decision, user

FAIL = "Invalid login or password"


@pytest.fixture(scope="module")
def tchain():
    c = start_chain(penalty={"attempts": 0, "max_delay": 2, "refuse_at": 4,
                             "max_pending": 3})
    yield c
    stop_chain(c)


@pytest.fixture
def log(tchain):
    return {"auth": LogWatch(tchain.env["LOG_AUTH"])}


def timed(chain, name, password, ip):
    t0 = time.monotonic()
    resp = ask_from(chain, name, password, ip)
    return resp, time.monotonic() - t0


def fail_from(chain, ip, n, prefix):
    for i in range(n):
        assert ask_from(chain, f"{prefix}-{i}", f"guess-{i}", ip)["auth-status"] == FAIL


def test_right_password_from_penalised_network_is_held(tchain, log):
    ip = "198.51.100.20"
    fail_from(tchain, ip, 2, "held")            # score 2: hold min(2, max_delay 2)
    name, password = user(tchain, "alice")
    resp, took = timed(tchain, name, password, ip)
    assert resp["auth-status"] == "OK", resp
    assert took >= 1.8, took                    # held before it was verified
    decision(log, user=name, rip=ip, result="ok", hold=2)


def test_other_networks_keep_their_latency(tchain, log):
    ip = "198.51.100.21"
    fail_from(tchain, ip, 3, "busy-net")
    name, password = user(tchain, "carol")
    resp, took = timed(tchain, name, password, "198.51.100.121")
    assert resp["auth-status"] == "OK", resp
    assert took < 1.0, took
    m = decision(log, user=name, rip="198.51.100.121", result="ok")
    assert "hold=" not in m.group(0)


def test_refused_unverified_at_the_hard_limit(tchain, log):
    ip = "198.51.100.22"
    fail_from(tchain, ip, 4, "hard")            # score 4 = refuse_at
    name, password = user(tchain, "alice")
    resp = ask_from(tchain, name, password, ip)      # even the right password
    assert resp["auth-status"] != "OK", resp
    assert resp["auth-status"] != FAIL, resp    # a temporary error, not "wrong password"
    assert resp["auth-wait"] == "1", resp       # nothing was verified: no long wait
    m = decision(log, user=name, rip=ip, result="error", reason="throttled")
    assert " cache=- " in m.group(0)            # the password was never looked at
    assert "not verified" in m.group(0)


def test_too_many_logins_in_flight_from_one_network(tchain, log):
    ip = "198.51.100.23"
    fail_from(tchain, ip, 1, "pending")         # score 1: each login held 1 s
    name, password = user(tchain, "carol")
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: timed(tchain, name, password, ip), range(6)))
    statuses = sorted(r["auth-status"] for r, _ in answers)
    ok = [t for r, t in answers if r["auth-status"] == "OK"]
    refused = [r for r, _ in answers if r["auth-status"] != "OK"]
    assert len(ok) <= 3, statuses               # max_pending = 3 held at once
    assert len(refused) >= 3, statuses
    assert all(r.get("auth-wait") == "1" for r in refused), refused
    decision(log, user=name, rip=ip, result="error", reason="busy")
    # once they are decided there is room again
    resp = ask_from(tchain, name, password, ip)
    assert resp["auth-status"] == "OK", resp


def test_guesses_from_many_networks_do_not_lock_a_user_out_of_their_own(tchain, log):
    name, password = user(tchain, "bob")
    home = "198.51.100.24"
    assert ask_from(tchain, name, password, home)["auth-status"] == "OK"
    # an attacker spread over 4 networks guesses bob's password up to refuse_at
    for i in range(4):
        assert ask_from(tchain, name, f"stolen-{i}", f"203.0.113.{30 + i}")["auth-status"] == FAIL
    decision(log, user=name, rip="203.0.113.33", result="fail", penalty=4)
    # bob at home: no hold, logged in
    resp, took = timed(tchain, name, password, home)
    assert resp["auth-status"] == "OK", resp
    assert took < 1.0, took
    # from a network bob never used, bob's score stops the login unverified
    resp = ask_from(tchain, name, password, "203.0.113.99")
    assert resp["auth-status"] != "OK", resp
    m = decision(log, user=name, rip="203.0.113.99", result="error", reason="throttled")
    assert "user score" in m.group(0)


def test_imap_client_through_nginx_is_held(tchain, log):
    """A real IMAP client through nginx (Client-IP 127.0.0.1): after two
    wrong passwords the right one is held before it is verified."""
    port = int(tchain.env["NGINX_IMAP_PORT"])
    for i in range(2):
        c = imaplib.IMAP4("127.0.0.1", port, timeout=20)
        with pytest.raises(imaplib.IMAP4.error, match=FAIL):
            c.login(f"imap-held-{i}", "wrong")
        c.shutdown()
    name, password = user(tchain, "alice")
    c = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    t0 = time.monotonic()
    typ, _ = c.login(name, password)
    took = time.monotonic() - t0
    assert typ == "OK"
    assert took >= 1.8, took
    decision(log, user=name, rip="127.0.0.1", result="ok", hold=2)
    c.logout()
