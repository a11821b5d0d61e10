"""Cluster mode end to end (issue 16): two edges (nginx + dovegate-auth
each) in front of two Dovecots, sharing a real Redis/Valkey store that the
chain starts and the tests stop, pause and restart by pid.

What a postmaster checks: guesses spread over the edges are throttled as on
one edge; a user's logins meet on one backend even when the edges disagree
about the backends; a user moved by the operator goes to the new backend
from every edge; a store that dies or hangs costs no login and no wrong
answer, and the edges say so once and resume when it is back."""
import imaplib
import os
import re
import signal
import subprocess
import time
import types
import urllib.request

import pytest

from conftest import BUILD_DIR, start_chain, stop_chain
from helpers import LOGGED_IN, auth_http, nginx_headers

# users that verify fast (no Argon2): the load test makes many logins
USERS = [(f"user{i}", f"pass-{i}-x", "SHA512-CRYPT" if i % 2 else "PLAIN") for i in range(12)]
# the load's (the other tests' users collect penalty scores of their own)
LOAD_USERS = USERS[5:]


def edge(chain, n):
    """chain.env as edge n's clients see it (AUTH_HTTP_URL, NGINX_IMAP_PORT,
    LOG_AUTH, ... of that edge)."""
    if n == 1:
        return chain
    env = dict(chain.env)
    for k, v in chain.env.items():
        if k.startswith("EDGE2_"):
            env[k[len("EDGE2_"):]] = v
    return types.SimpleNamespace(env=env)


def ask(chain, n, name, password, ip):
    h = nginx_headers(chain, name, password)
    h["Client-IP"] = ip
    return auth_http(edge(chain, n), h)


def decision_lines(log_path, **fields):
    with open(log_path, errors="replace") as f:
        lines = [l for l in f if " decision " in l]
    return [l for l in lines if all(re.search(rf"\b{k}={re.escape(str(v))}(\s|$)", l)
                                    for k, v in fields.items())]


def last_decision(chain, n, **fields):
    """Edge n's newest decision line with those fields (waits up to 10 s)."""
    log = edge(chain, n).env["LOG_AUTH"]
    deadline = time.monotonic() + 10
    while not (lines := decision_lines(log, **fields)):
        assert time.monotonic() < deadline, f"no decision with {fields} in {log}"
        time.sleep(0.05)
    return lines[-1]


def field(line, name):
    m = re.search(rf"\b{name}=(\S+)", line)
    return m.group(1) if m else None


def backend_of(chain, port):
    """1 or 2: which Dovecot listens on that proxy port."""
    ports = {chain.env["DOVECOT_PROXY_IMAP_PORT"]: 1, chain.env["DOVECOT_PROXY_IMAP_PORT_2"]: 2}
    return ports[port]


def audience(n):
    return "chain-dovecot" if n == 1 else f"chain-dovecot-{n}"


def imap_login(chain, n, name, password):
    """A real IMAP login through edge n's nginx; returns after LOGOUT."""
    c = imaplib.IMAP4("127.0.0.1", int(edge(chain, n).env["NGINX_IMAP_PORT"]), timeout=15)
    try:
        c.login(name, password)
        c.select("INBOX")
    finally:
        c.logout()


def dovecot_logins(chain, n, name):
    log = chain.env["LOG_DOVECOT"] if n == 1 else chain.env[f"LOG_DOVECOT_{n}"]
    with open(log, errors="replace") as f:
        return len(re.findall(rf"imap-login: Info: {LOGGED_IN} user=<{re.escape(name)}>", f.read()))


def wait_for_key(chain, key, value, timeout=5):
    """The outcome's EVALSHA is not waited for by the login: poll its effect."""
    deadline = time.monotonic() + timeout
    while (got := chain.store("GET", key)) != value:
        assert time.monotonic() < deadline, f"{key} is {got!r}, not {value!r}"
        time.sleep(0.05)


def metric(chain, n, name):
    with urllib.request.urlopen(edge(chain, n).env["METRICS_URL"], timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def cli(chain, *args):
    return subprocess.run([os.path.join(BUILD_DIR, "src/tools/dovegate"), "cluster", "-c",
                           chain.env["AUTH_CONF"], *args], capture_output=True, text=True,
                          timeout=30)


@pytest.fixture(scope="module")
def cc():
    c = start_chain(edges=2, backends=2, users=USERS)
    yield c
    stop_chain(c)


def test_guesses_over_both_edges_count_once(cc):
    """Wrong passwords from one address, alternating between the edges: each
    failure scores on top of the other edge's, as if one edge saw them all
    (alone, edge 2's first failure would score 1). The store holds the
    network's score."""
    ip = "198.51.100.23"
    scores = []
    for i, n in enumerate((1, 2, 1)):
        resp = ask(cc, n, "user1", f"wrong-{i}", ip)
        assert resp.get("auth-status") != "OK"
        line = last_decision(cc, n, user="user1", rip=ip, result="fail", reason="bad_password",
                             cluster="shared", penalty=i + 1)
        scores.append(int(field(line, "penalty")))
        # Auth-Wait grows with the cluster's score, not this edge's
        assert int(resp["auth-wait"]) >= 2 ** i, resp
    assert scores == [1, 2, 3]
    assert cc.store("GET", f"dovegate:n:{ip}/32") == "3"
    assert 0 < cc.store("TTL", f"dovegate:n:{ip}/32") <= 300   # [penalty] forget_after
    # the right password still works, and clears the score everywhere
    assert ask(cc, 2, "user1", "pass-1-x", ip).get("auth-status") == "OK"
    deadline = time.monotonic() + 5
    while cc.store("EXISTS", f"dovegate:n:{ip}/32") != 0:
        assert time.monotonic() < deadline, "the success did not clear the shared score"
        time.sleep(0.05)
    assert cc.store("EXISTS", f"dovegate:e:{ip}/32") == 1
    assert cc.store("EXISTS", f"dovegate:k:{ip}/32|user1") == 1


def test_operator_moves_a_user(cc):
    """A user assigned to one Dovecot is moved to the other: the next logins
    through either edge land there (the IMAP session really logs in on that
    Dovecot), and the assignment is renewed, not replaced."""
    name, password = "user4", "pass-4-x"
    imap_login(cc, 1, name, password)
    line = last_decision(cc, 1, user=name, result="ok", cluster="shared")
    first = backend_of(cc, field(line, "backend").rsplit(":", 1)[1])
    wait_for_key(cc, f"dovegate:a:{name}", audience(first))
    other = 3 - first
    moved = cli(cc, "move", name, audience(other))
    assert moved.returncode == 0, moved.stderr
    assert cc.store("GET", f"dovegate:a:{name}") == audience(other)
    for n in (1, 2):
        before = dovecot_logins(cc, other, name)
        imap_login(cc, n, name, password)
        line = last_decision(cc, n, user=name, result="ok", assignment="honoured")
        assert backend_of(cc, field(line, "backend").rsplit(":", 1)[1]) == other, line
        deadline = time.monotonic() + 10
        while dovecot_logins(cc, other, name) <= before:
            assert time.monotonic() < deadline, f"no {name} login on Dovecot {other}"
            time.sleep(0.05)
    assert cc.store("GET", f"dovegate:a:{name}") == audience(other)
    assert 800 < cc.store("TTL", f"dovegate:a:{name}") <= 900
    shown = cli(cc, "assignments", name)
    assert shown.returncode == 0, shown.stderr
    assert re.search(rf"^{name} {audience(other)} \d+$", shown.stdout, re.M), shown.stdout


class Load:
    """Logins through both edges' auth_http, bounded in count: right and
    wrong passwords, each client from its own address (so the penalty never
    holds them). Records every answer that is not what the password says."""

    def __init__(self, chain):
        self.chain = chain
        self.count = 0
        self.wrong = []

    def run(self, rounds):
        for _ in range(rounds):
            i = self.count
            self.count += 1
            name, password, _ = LOAD_USERS[i % len(LOAD_USERS)]
            good = i % 3 != 0
            if not good:        # a guess: a user nobody has, so no user score adds up
                name, password = f"nobody{i}", "guess"
            n = 1 + i % 2
            ip = f"203.0.{113 + (i // 250) % 3}.{1 + i % 250}"
            resp = ask(self.chain, n, name, password, ip)
            ok = resp.get("auth-status") == "OK"
            if ok != good:
                self.wrong.append((i, n, name, good, resp))


def state_lines(chain, n, state):
    with open(edge(chain, n).env["LOG_AUTH"], errors="replace") as f:
        return re.findall(rf"cluster store=\S+ state={state}\b.*", f.read())


def test_store_killed_and_restarted_under_load(cc):
    """SIGKILL the store in the middle of a login load: every answer stays
    right, logins go on (decided on local state, cluster=local), each edge
    logs state=down once and exposes it in its metrics; started again, each
    edge logs state=up and the logins use the store again."""
    load = Load(cc)
    downs = [len(state_lines(cc, n, "down")) for n in (1, 2)]
    ups = [len(state_lines(cc, n, "up")) for n in (1, 2)]
    load.run(20)
    cc.stop_store(kill=True)
    started = time.monotonic()
    load.run(40)
    for n in (1, 2):
        assert len(state_lines(cc, n, "down")) == downs[n - 1] + 1, state_lines(cc, n, "down")
        assert metric(cc, n, "dovegate_auth_cluster_store_up") == 0
        assert metric(cc, n, "dovegate_auth_cluster_fallbacks_total") > 0
        line = last_decision(cc, n, cluster="local", result="ok")
        # decided without waiting for the dead store more than its timeout
        assert float(field(line, "duration_ms")) < 1000, line
    # an outage of several retry intervals (1 s) is still one line
    time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))
    for n in (1, 2):
        assert len(state_lines(cc, n, "down")) == downs[n - 1] + 1

    cc.start_store()
    for n in (1, 2):
        deadline = time.monotonic() + 15
        while len(state_lines(cc, n, "up")) <= ups[n - 1]:
            assert time.monotonic() < deadline, f"edge {n} did not log state=up"
            time.sleep(0.1)
    load.run(20)
    assert load.wrong == [], load.wrong
    for n in (1, 2):
        assert last_decision(cc, n, cluster="shared")
        assert metric(cc, n, "dovegate_auth_cluster_store_up") == 1
    # the restarted (empty) store is filled again by the logins
    assert cc.store("DBSIZE") > 0


def test_hung_store_costs_at_most_the_timeout(cc):
    """A store that stops answering (SIGSTOP) while connected: the login in
    flight waits at most [cluster] timeout (100 ms) and is answered right;
    the connection is dropped and the next logins do not wait at all."""
    cc.pause_store()
    try:
        for i in range(4):
            started = time.monotonic()
            resp = ask(cc, 1 + i % 2, "user2", "pass-2-x", f"192.0.2.{100 + i}")
            assert resp.get("auth-status") == "OK", resp
            assert time.monotonic() - started < 5
        for n in (1, 2):
            line = last_decision(cc, n, user="user2", result="ok", cluster="local")
            assert float(field(line, "duration_ms")) < 1000, line
            assert "no answer within timeout (100 ms)" in state_lines(cc, n, "down")[-1]
    finally:
        cc.resume_store()
    for n in (1, 2):
        deadline = time.monotonic() + 15
        while metric(cc, n, "dovegate_auth_cluster_store_up") != 1:
            assert time.monotonic() < deadline, f"edge {n}: store not up again"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def split():
    """Two edges that disagree: edge 2 reaches Dovecot 2's IMAP at a port
    where nothing listens, so its probes fail while edge 1's succeed."""
    from chain import free_ports
    c = start_chain(edges=2, backends=2, users=USERS,
                    edge2_backend_ports={2: {"imap": free_ports(1)[0]}})
    deadline = time.monotonic() + 30
    log = edge(c, 2).env["LOG_AUTH"]
    while not re.search(r"backend proto=imap .*state=down", open(log).read()):
        assert time.monotonic() < deadline, "edge 2 never saw Dovecot 2 down"
        time.sleep(0.1)
    yield c
    stop_chain(c)


def test_sessions_meet_on_one_backend_when_edges_disagree(split):
    """A user whose sticky hash is Dovecot 2 logs in through edge 2 first
    (which cannot reach Dovecot 2: it picks Dovecot 1 and records it), then
    through edge 1 (which would hash to Dovecot 2): both sessions land on
    Dovecot 1 while the assignment lives. Without the store they would
    split, which breaks indexes on shared storage."""
    # which users hash to Dovecot 2 where both are up: ask edge 1, then forget
    hashed_to_2 = []
    for name, password, _ in USERS:
        assert ask(split, 1, name, password, "192.0.2.200").get("auth-status") == "OK"
        line = last_decision(split, 1, user=name, result="ok")
        if backend_of(split, field(line, "backend").rsplit(":", 1)[1]) == 2:
            hashed_to_2.append((name, password))
        time.sleep(0.05)
        split.store("DEL", f"dovegate:a:{name}")
    assert hashed_to_2, "no user hashes to Dovecot 2"
    name, password = hashed_to_2[0]
    split.store("DEL", f"dovegate:a:{name}")
    d1 = dovecot_logins(split, 1, name)

    imap_login(split, 2, name, password)
    line = last_decision(split, 2, user=name, result="ok", assignment="created")
    assert backend_of(split, field(line, "backend").rsplit(":", 1)[1]) == 1, line
    wait_for_key(split, f"dovegate:a:{name}", "chain-dovecot")

    imap_login(split, 1, name, password)
    line = last_decision(split, 1, user=name, result="ok", assignment="honoured")
    assert backend_of(split, field(line, "backend").rsplit(":", 1)[1]) == 1, line
    deadline = time.monotonic() + 10
    while dovecot_logins(split, 1, name) < d1 + 2:
        assert time.monotonic() < deadline, "both sessions should have logged in on Dovecot 1"
        time.sleep(0.05)
    # (finding the user above asked auth_http only: no IMAP session anywhere)
    assert dovecot_logins(split, 2, name) == 0

    # the operator drains Dovecot 1: edge 1 moves the user to Dovecot 2 and
    # records it; edge 2 (which cannot use Dovecot 2) stays on what it can use
    drained = cli(split, "drain", "chain-dovecot")
    assert drained.returncode == 0, drained.stderr
    deadline = time.monotonic() + 10
    while not re.search(r'cluster drained="chain-dovecot"', open(edge(split, 1).env["LOG_AUTH"]).read()):
        assert time.monotonic() < deadline, "edge 1 did not pick up the drained set"
        time.sleep(0.1)
    assert ask(split, 1, name, password, "192.0.2.201").get("auth-status") == "OK"
    line = last_decision(split, 1, user=name, result="ok", assignment="replaced")
    assert backend_of(split, field(line, "backend").rsplit(":", 1)[1]) == 2, line
    wait_for_key(split, f"dovegate:a:{name}", "chain-dovecot-2")
    undrained = cli(split, "undrain", "chain-dovecot")
    assert undrained.returncode == 0, undrained.stderr
