"""Unknown users, locked accounts and broken entries must not answer faster
than real users, and their attempts count (issue 15, point 10).

The users file is rewritten so that every real user costs ~0.5 s
(SHA512-CRYPT with many rounds, like a site that raised its cost): an
unknown user verified against the built-in dummy (default cost, ~2 ms)
would answer a hundred times faster and so tell that the user does not
exist. Each login uses its own user and Client-IP, so that no penalty hold
is part of what is measured; the time compared is the decision's own
duration_ms, with a wide margin (same run, ratio to the real user).
"""
import os
import subprocess
import time

import pytest

from conftest import start_chain, stop_chain
from helpers import LogWatch, ask_from, decision

FAIL = "Invalid login or password"
ROUNDS = 1500000


def hash_pw(chain, password):
    out = subprocess.run([os.path.join(chain.build, "src", "tools", "dovegate"), "pw",
                          "-s", "SHA512-CRYPT", "-r", str(ROUNDS), "-p", password],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def slow(tmp_path_factory):
    c = start_chain()
    real = hash_pw(c, "slow-pass-1")
    # '!' in front of the hash: the usual way to lock an entry and keep it
    locked = real.replace("}", "}!", 1)
    lines = [f"slow-{i}:{real}::::::" for i in range(4)]
    lines += [f"banged:{locked}::::::",
              f"nolog:{real}::::::nologin"]
    path = c.path("etc", "users")
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.chmod(tmp, os.stat(path).st_mode)
    os.rename(tmp, path)
    # wait until the new file is in use (reloaded at most once a second)
    for i in range(30):
        if ask_from(c, "slow-0", "slow-pass-1", f"192.0.2.{200 + i}")["auth-status"] == "OK":
            break
        time.sleep(0.3)
    else:
        pytest.fail("the rewritten users file was not loaded")
    yield c
    stop_chain(c)


@pytest.fixture
def log(slow):
    return {"auth": LogWatch(slow.env["LOG_AUTH"])}


def duration(log, **fields):
    m = decision(log, **fields)
    return float(m.group(0).split("duration_ms=")[1].split()[0])


def test_unknown_user_costs_what_a_real_one_costs(slow, log):
    assert ask_from(slow, "slow-1", "wrong-a", "198.51.100.40")["auth-status"] == FAIL
    real = duration(log, user="slow-1", reason="bad_password")
    assert ask_from(slow, "nobody-here", "wrong-b", "198.51.100.41")["auth-status"] == FAIL
    unknown = duration(log, user="nobody-here", reason="unknown_user", penalty=1)
    assert real > 100, real                     # the users file is the slow one
    assert unknown >= 0.3 * real, (unknown, real)


def test_locked_entry_answers_like_a_wrong_password_and_counts(slow, log):
    assert ask_from(slow, "slow-2", "wrong-c", "198.51.100.42")["auth-status"] == FAIL
    real = duration(log, user="slow-2", reason="bad_password")
    # even the right password: the same answer as a wrong one, counted
    resp = ask_from(slow, "banged", "slow-pass-1", "198.51.100.43")
    assert resp["auth-status"] == FAIL, resp
    m = decision(log, user="banged", result="fail", reason="unusable_password", penalty=1)
    took = float(m.group(0).split("duration_ms=")[1].split()[0])
    assert "stored password" in m.group(0)
    assert took >= 0.3 * real, (took, real)


def test_nologin_account_is_refused_and_counted(slow, log):
    # the right password of a nologin account: refused like a wrong one
    resp = ask_from(slow, "nolog", "slow-pass-1", "198.51.100.44")
    assert resp["auth-status"] == FAIL, resp
    decision(log, user="nolog", result="fail", reason="locked", penalty=1)
    resp = ask_from(slow, "nolog", "wrong-d", "198.51.100.45")
    assert resp["auth-status"] == FAIL, resp
