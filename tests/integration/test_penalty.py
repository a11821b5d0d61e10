"""Brute-force protection: growing Auth-Wait per client address and user,
the attempt cap, clearing after a success, and state kept across SIGHUP
(holds before verifying, refusal and the in-flight cap: test_throttle.py).

A chain of its own (scores must start from nothing), with [penalty]
attempts = 3 so that the capped IMAP connection takes seconds, not 15.
Each test uses its own Client-IP values and user names: user scores are
shared by every address.
"""
import imaplib
import signal
import time

import pytest

from conftest import start_chain, stop_chain
from helpers import LogWatch, ask_from, decision, user

FAIL = "Invalid login or password"


@pytest.fixture(scope="module")
def pchain():
    c = start_chain(penalty={"attempts": 3})
    yield c
    stop_chain(c)


@pytest.fixture
def log(pchain):
    return {"auth": LogWatch(pchain.env["LOG_AUTH"])}


def wait_of(resp):
    assert resp["auth-status"] == FAIL, resp
    return int(resp["auth-wait"])


def test_delay_grows_for_repeated_failures(pchain, log):
    waits = [wait_of(ask_from(pchain, "pen-grow", f"guess-{i}", "198.51.100.10")) for i in range(5)]
    assert waits == [1, 2, 4, 8, 15]
    decision(log, user="pen-grow", rip="198.51.100.10", result="fail",
             reason="unknown_user", penalty=5, delay=15)


def test_same_wrong_password_does_not_escalate(pchain, log):
    waits = [wait_of(ask_from(pchain, "pen-repeat", "same-guess", "198.51.100.11")) for _ in range(4)]
    assert waits == [1, 1, 1, 1]


def test_known_user_wrong_password_counts(pchain, log):
    name, _ = user(pchain, "carol")
    waits = [wait_of(ask_from(pchain, name, f"nope-{i}", "198.51.100.15")) for i in range(2)]
    assert waits == [1, 2]
    decision(log, user=name, result="fail", reason="bad_password", penalty=2, delay=2)


def test_success_clears_the_address(pchain, log):
    ip = "198.51.100.12"
    waits = [wait_of(ask_from(pchain, f"pen-clear-{i}", "x", ip)) for i in range(3)]
    assert waits == [1, 2, 4]
    name, password = user(pchain, "alice")
    assert ask_from(pchain, name, password, ip)["auth-status"] == "OK"
    # cleared: the curve starts again; later failures from the address still
    # count (one valid account must not open a way to guess everyone else's)
    waits = [wait_of(ask_from(pchain, f"pen-after-{i}", "x", ip)) for i in range(3)]
    assert waits == [1, 2, 4]


def test_other_address_is_unaffected(pchain):
    waits = [wait_of(ask_from(pchain, f"pen-busy-{i}", "x", "198.51.100.13")) for i in range(4)]
    assert waits == [1, 2, 4, 8]
    assert wait_of(ask_from(pchain, "pen-quiet", "x", "198.51.100.14")) == 1


def test_ipv6_addresses_in_one_64_share_a_score(pchain):
    assert wait_of(ask_from(pchain, "pen-v6-a", "x", "2001:db8:1:2::1")) == 1
    assert wait_of(ask_from(pchain, "pen-v6-b", "x", "2001:db8:1:2:ffff::7")) == 2
    assert wait_of(ask_from(pchain, "pen-v6-c", "x", "2001:db8:1:2::1")) == 4
    # the next /64 is another client
    assert wait_of(ask_from(pchain, "pen-v6-d", "x", "2001:db8:1:3::1")) == 1


def test_attempt_cap_answers_without_auth_wait(pchain, log):
    resp = ask_from(pchain, "pen-cap", "x", "198.51.100.16", attempt=3)
    assert resp["auth-status"] == FAIL
    assert "auth-wait" not in resp      # nginx closes the client connection
    decision(log, user="pen-cap", result="fail", delay="close")


def test_imap_failures_are_delayed_and_connection_closed_at_cap(pchain, log):
    """Through nginx: Client-IP 127.0.0.1 (not trusted by default)."""
    c = imaplib.IMAP4("127.0.0.1", int(pchain.env["NGINX_IMAP_PORT"]), timeout=20)
    took = []
    for i in range(2):
        t0 = time.monotonic()
        with pytest.raises(imaplib.IMAP4.error, match=FAIL):
            c.login(f"pen-imap-{i}", f"guess-{i}")
        took.append(time.monotonic() - t0)
    # nginx waits Auth-Wait (1 s, then 2 s) before answering
    assert took[0] >= 0.8, took
    assert took[1] >= took[0] + 0.7, took
    decision(log, user="pen-imap-1", rip="127.0.0.1", attempt=2, delay=2)
    # the third attempt is the cap: refused and the connection closed
    with pytest.raises((imaplib.IMAP4.error, OSError)):   # NO (+ BYE) or abort
        c.login("pen-imap-2", "guess-2")
    decision(log, user="pen-imap-2", rip="127.0.0.1", attempt=3, delay="close")
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        c.noop()
    try:
        c.shutdown()
    except OSError:
        pass


def test_scores_survive_sighup(pchain, log):
    ip = "198.51.100.17"
    waits = [wait_of(ask_from(pchain, "pen-hup", f"g-{i}", ip)) for i in range(2)]
    assert waits == [1, 2]
    pchain.procs["dovegate-auth"].send_signal(signal.SIGHUP)
    log["auth"].wait_for(r"configuration reloaded")
    assert wait_of(ask_from(pchain, "pen-hup-2", "g", ip)) == 4
