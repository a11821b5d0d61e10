"""Prometheus metrics: what a scrape says matches the logins made through
real nginx with real IMAP/POP3 clients, in a format Prometheus' own parser
reads (python3-prometheus-client), on a loopback-only listener of its own.

A chain of its own: counters and penalty scores start from nothing, and
[penalty] max_delay = 1 keeps each failed login at a one-second Auth-Wait.
"""
import http.client
import imaplib
import os
import poplib
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import start_chain, stop_chain
from helpers import LogWatch, user


@pytest.fixture(scope="module")
def mchain():
    # health: a slow greeting on a busy machine must not fail logins here
    c = start_chain(penalty={"max_delay": 1}, health={"timeout": "10s", "fall": 3})
    yield c
    stop_chain(c)


def scrape_text(chain):
    with urllib.request.urlopen(chain.env["METRICS_URL"], timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def scrape(chain):
    """{(sample name, sorted label items): value} of one scrape."""
    text = scrape_text(chain)
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name, **labels):
    return val(after, name, **labels) - val(before, name, **labels)


def total(samples, name):
    return sum(v for (n, _), v in samples.items() if n == name)


def imap_login(chain, name, password):
    """True if nginx let the login through; a refusal is an answer, not an error."""
    conn = imaplib.IMAP4("127.0.0.1", int(chain.env["NGINX_IMAP_PORT"]), timeout=20)
    try:
        conn.login(name, password)
        conn.logout()
        return True
    except imaplib.IMAP4.error:
        return False


def pop3_login(chain, name, password):
    conn = poplib.POP3("127.0.0.1", int(chain.env["NGINX_POP3_PORT"]), timeout=20)
    try:
        conn.user(name)
        conn.pass_(password)
        conn.quit()
        return True
    except poplib.error_proto:
        return False


def decisions(log, result):
    return len(re.findall(rf"\bdecision\b.*\bresult={result}\b", log.text()))


def test_counters_match_logins(mchain):
    """M bad then N good logins: request, failure, cache, penalty and
    histogram deltas are exactly those logins, as the decision lines say."""
    log = LogWatch(mchain.env["LOG_AUTH"])
    before = scrape(mchain)
    alice, alice_pw = user(mchain, "alice")
    bad = [("alice", "wrong-1"), ("nobody-here", "wrong-2")]
    good = [(alice, alice_pw), user(mchain, "bob"), user(mchain, "carol"), (alice, alice_pw)]
    assert [imap_login(mchain, n, p) for n, p in bad] == [False] * len(bad)
    assert [imap_login(mchain, n, p) for n, p in good] == [True] * len(good)
    assert pop3_login(mchain, *user(mchain, "carol"))
    after = scrape(mchain)

    n_imap, n_all = len(good), len(good) + 1
    m = len(bad)
    assert decisions(log, "ok") == n_all and decisions(log, "fail") == m
    req = "dovegate_auth_requests_total"
    assert delta(before, after, req, proto="imap", method="plain", result="ok") == n_imap
    assert delta(before, after, req, proto="pop3", method="plain", result="ok") == 1
    assert delta(before, after, req, proto="imap", method="plain", result="fail") == m
    assert total(after, req) - total(before, req) == n_all + m
    fail = "dovegate_auth_failures_total"
    assert delta(before, after, fail, proto="imap", result="fail", reason="bad_password") == 1
    assert delta(before, after, fail, proto="imap", result="fail", reason="unknown_user") == 1
    # the second alice login and the POP3 carol login (same password) hit the cache
    assert delta(before, after, "dovegate_auth_cache_hits_total") == 2
    assert delta(before, after, "dovegate_auth_cache_misses_total") == n_all + m - 2
    # every failure got the (capped) one-second Auth-Wait
    assert delta(before, after, "dovegate_auth_penalty_delays_total") == m
    assert delta(before, after, "dovegate_auth_penalty_delay_seconds_total") == m
    assert delta(before, after, "dovegate_auth_passdb_errors_total") == 0
    # the successes cleared 127.0.0.1; the failed users' scores stay
    assert val(after, "dovegate_auth_penalty_active") == 2
    assert val(after, "dovegate_auth_users") == len(mchain.users)
    # no user name (nor a password) ever becomes part of the metrics
    text = scrape_text(mchain)
    for name, password in bad + good:
        assert name not in text and password not in text


def test_histogram_counts_every_request(mchain):
    imap_login(mchain, *user(mchain, "bob"))
    s = scrape(mchain)
    count = val(s, "dovegate_auth_request_duration_seconds_count")
    assert count == total(s, "dovegate_auth_requests_total") > 0
    assert val(s, "dovegate_auth_request_duration_seconds_bucket", le="+Inf") == count
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in s.items()
                     if n == "dovegate_auth_request_duration_seconds_bucket")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)  # cumulative
    assert 0 < val(s, "dovegate_auth_request_duration_seconds_sum") < count * 5


def wait_for_reloads(chain, result, at_least, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        n = val(scrape(chain), "dovegate_auth_reloads_total", result=result)
        if n >= at_least or time.monotonic() > deadline:
            return n
        time.sleep(0.1)


def test_reload_counters(mchain):
    pid = mchain.procs["dovegate-auth"].pid
    conf = mchain.path("etc", "dovegate-auth.conf")
    s = scrape(mchain)
    ok = val(s, "dovegate_auth_reloads_total", result="ok")
    failed = val(s, "dovegate_auth_reloads_total", result="failed")
    os.kill(pid, signal.SIGHUP)
    assert wait_for_reloads(mchain, "ok", ok + 1) == ok + 1
    with open(conf) as f:
        good = f.read()
    try:
        with open(conf, "a") as f:
            f.write("\n[no-such-section]\n")
        os.kill(pid, signal.SIGHUP)
        assert wait_for_reloads(mchain, "failed", failed + 1) == failed + 1
    finally:
        with open(conf, "w") as f:
            f.write(good)
    # counters survive reloads, and logins still work with the kept config
    assert imap_login(mchain, *user(mchain, "alice"))
    after = scrape(mchain)
    assert val(after, "dovegate_auth_reloads_total", result="ok") == ok + 1
    req = "dovegate_auth_requests_total"
    assert total(after, req) == total(s, req) + 1


def request(chain, method, path):
    u = urllib.parse.urlsplit(chain.env["METRICS_URL"])
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_only_get_metrics(mchain):
    assert request(mchain, "GET", "/metrics")[0] == 200
    assert request(mchain, "GET", "/metrics?x=1")[0] == 200
    assert request(mchain, "HEAD", "/metrics") == (200, b"")
    for path in ("/", "/auth", "/metrics/", "/metricsx", "/favicon.ico"):
        assert request(mchain, "GET", path)[0] == 404, path
    # other methods: libevent's 501 Not Implemented, no metrics
    status, body = request(mchain, "POST", "/metrics")
    assert status >= 400 and b"dovegate_auth" not in body
    # the auth_http listener does not serve metrics
    auth = urllib.parse.urlsplit(mchain.env["AUTH_HTTP_URL"])
    conn = http.client.HTTPConnection(auth.hostname, auth.port, timeout=10)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    assert b"dovegate_auth_requests_total" not in r.read()
    conn.close()


def test_listener_is_loopback_only(mchain):
    port = urllib.parse.urlsplit(mchain.env["METRICS_URL"]).port
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[3] == f"127.0.0.1:{port}", out
    assert len(out) == 5, out  # exactly one listening socket
    # and the start-up log says where
    with open(mchain.env["LOG_AUTH"]) as f:
        assert f"metrics on {mchain.env['METRICS_URL']}" in f.read()


def test_backend_health(mchain):
    """The chain's Dovecot listeners, up once the health checks have seen them."""
    want = {("imap", f"127.0.0.1:{mchain.env['DOVECOT_PROXY_IMAP_PORT']}"),
            ("pop3", f"127.0.0.1:{mchain.env['DOVECOT_PROXY_POP3_PORT']}"),
            ("smtp", f"127.0.0.1:{mchain.env['DOVECOT_PROXY_SUBMISSION_PORT']}")}
    deadline = time.monotonic() + 15
    while True:
        up = {(dict(l)["proto"], dict(l)["backend"]): v for (n, l), v in scrape(mchain).items()
              if n == "dovegate_auth_backend_up"}
        if all(up.get(k) == 1 for k in want) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {k: up.get(k) for k in want} == {k: 1 for k in want}, up


@pytest.mark.parametrize("value", ["unix:/run/metrics.sock", "localhost:9145", "127.0.0.1"])
def test_bad_listen_is_refused_with_its_line(mchain, value, tmp_path):
    """`dovegate-auth -t` names the line of an unusable [metrics] listen."""
    with open(mchain.path("etc", "dovegate-auth.conf")) as f:
        text = f.read()
    text = re.sub(r"(?m)^listen = 127\.0\.0\.1:\d+\n(?![\s\S]*^listen =)", f"listen = {value}\n", text)
    conf = tmp_path / "auth.conf"
    conf.write_text(text)
    line = max(i for i, l in enumerate(text.splitlines(), 1) if l == f"listen = {value}")
    out = subprocess.run([mchain.binary("src/shim/dovegate-auth"), "-t", "-c", str(conf)],
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{conf}:{line}: listen: expected IP:port" in out.stderr, out.stderr


# ---- a guarded listener: bare port, bearer token, connection cap -------------

METRICS_TOKEN = "scrape-" + "tok3n-4b1d6e"
GUARD_MAX_CONNECTIONS = 2


@pytest.fixture(scope="module")
def token_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics-token") / "token"
    path.write_text(METRICS_TOKEN + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def guarded(token_file):
    """[metrics] listen = <port alone>, bearer_token_file, max_connections = 2."""
    c = start_chain(metrics={"listen": "{port}", "bearer_token_file": str(token_file),
                             "max_connections": GUARD_MAX_CONNECTIONS})
    yield c
    stop_chain(c)


def get(chain, token=None, auth=None, path="/metrics"):
    """(status, headers, body) of one GET with urllib; an HTTP error is an answer."""
    u = urllib.parse.urlsplit(chain.env["METRICS_URL"])
    req = urllib.request.Request(f"http://{u.netloc}{path}")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if auth is not None:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def guarded_scrape(chain):
    status, _, text = get(chain, token=METRICS_TOKEN)
    assert status == 200, text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_port_alone_listens_on_loopback(guarded):
    """`listen = PORT` binds 127.0.0.1 only: metrics reach the network only
    when the configuration names an address."""
    port = guarded.values["METRICS_PORT"]
    with open(guarded.path("etc", "dovegate-auth.conf")) as f:
        assert f"\nlisten = {port}\n" in f.read()
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[3] == f"127.0.0.1:{port}", out
    assert len(out) == 5, out  # exactly one listening socket
    with open(guarded.env["LOG_AUTH"]) as f:
        assert f"metrics on http://127.0.0.1:{port}/metrics" in f.read()


def test_bearer_token_required(guarded):
    log = LogWatch(guarded.env["LOG_AUTH"])
    before = guarded_scrape(guarded)
    # no token: 401 with the challenge, and nothing of the metrics
    status, headers, body = get(guarded)
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Bearer realm="dovegate-auth metrics"'
    assert "dovegate_auth" not in body
    # a wrong token, another scheme, the token with a suffix: refused too
    for kwargs in ({"token": "scrape-wrong"}, {"token": METRICS_TOKEN + "x"},
                   {"token": METRICS_TOKEN[:-1]}, {"auth": f"Basic {METRICS_TOKEN}"}):
        status, headers, body = get(guarded, **kwargs)
        assert status == 401, kwargs
        assert headers["WWW-Authenticate"].startswith('Bearer realm="dovegate-auth metrics"')
        assert "dovegate_auth" not in body
    # other paths say nothing without the token either
    assert get(guarded, path="/")[0] == 401
    # the right one, the way an operator would try it
    out = subprocess.run(["curl", "-sS", "--fail", "--oauth2-bearer", METRICS_TOKEN,
                          guarded.env["METRICS_URL"]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "dovegate_auth_requests_total" in out.stdout or "dovegate_auth_build_info" in out.stdout
    after = guarded_scrape(guarded)
    assert delta(before, after, "dovegate_auth_metrics_refused_total", reason="unauthorized") == 6
    # logged (at most once a minute), the token never
    text = log.text()
    assert re.search(r"metrics: refused a scrape from 127\.0\.0\.1: no bearer token", text), text
    assert METRICS_TOKEN not in text and "scrape-wrong" not in text


def test_bearer_token_file_must_not_be_writable_by_others(mchain, tmp_path):
    """`dovegate-auth -t` refuses a token file others could change, naming
    the file and the fix."""
    token = tmp_path / "token"
    token.write_text(METRICS_TOKEN + "\n")
    token.chmod(0o620)
    with open(mchain.path("etc", "dovegate-auth.conf")) as f:
        text = f.read() + f"bearer_token_file = {token}\n"
    conf = tmp_path / "auth.conf"
    conf.write_text(text)
    line = len(text.splitlines())
    argv = [mchain.binary("src/shim/dovegate-auth"), "-t", "-c", str(conf)]
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 1
    assert (f"{conf}:{line}: bearer_token_file {token}: is writable by group or others "
            f"(mode 0620); run chmod go-w {token}") in out.stderr, out.stderr
    assert METRICS_TOKEN not in out.stderr + out.stdout
    token.chmod(0o600)
    out = subprocess.run(argv, capture_output=True, text=True)
    assert out.returncode == 0 and "config OK" in out.stdout, out.stderr


def test_connection_cap(guarded):
    """Past max_connections a new connection gets a 503 (or is closed) at
    once, counted and logged; the slots come back when the others close."""
    log = LogWatch(guarded.env["LOG_AUTH"])
    before = guarded_scrape(guarded)
    port = int(guarded.values["METRICS_PORT"])
    held = [socket.create_connection(("127.0.0.1", port), timeout=5)
            for _ in range(GUARD_MAX_CONNECTIONS)]
    try:
        time.sleep(0.5)  # dovegate-auth accepted them
        try:
            status, _, body = get(guarded, token=METRICS_TOKEN)
        except (ConnectionError, http.client.HTTPException, urllib.error.URLError) as e:
            status, body = None, str(e)
        assert status in (503, None), (status, body)
        assert "dovegate_auth" not in body
        log.wait_for(r"metrics: refused a connection from 127\.0\.0\.1: 2 open, "
                     r"\[metrics\] max_connections = 2")
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            after = guarded_scrape(guarded)
            break
        except (AssertionError, ConnectionError, urllib.error.URLError):
            assert time.monotonic() < deadline, "the slots did not come back"
            time.sleep(0.1)
    assert delta(before, after, "dovegate_auth_metrics_refused_total",
                 reason="max_connections") >= 1
    # the scrape itself is the only connection left open
    assert val(after, "dovegate_auth_metrics_connections") == 1


def test_idle_connections_do_not_hold_the_slots(guarded):
    """A client that connects and says nothing (or too little) is cut 10 s
    after it connected, so stuck clients cannot keep scrapes out for long."""
    port = int(guarded.values["METRICS_PORT"])
    held = [socket.create_connection(("127.0.0.1", port), timeout=15)
            for _ in range(GUARD_MAX_CONNECTIONS)]
    held[1].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")   # never ends its head
    try:
        time.sleep(0.5)
        status = None
        try:
            status = get(guarded, token=METRICS_TOKEN)[0]
        except (ConnectionError, http.client.HTTPException, urllib.error.URLError):
            pass
        assert status in (503, None)
        # dovegate-auth closes both (EOF) at its 10 s deadline
        started = time.monotonic()
        for s in held:
            assert s.recv(1) == b""
        assert time.monotonic() - started < 12
        assert get(guarded, token=METRICS_TOKEN)[0] == 200
    finally:
        for s in held:
            s.close()


def test_reload_rotates_the_token(guarded, token_file):
    pid = guarded.procs["dovegate-auth"].pid
    new = "scrape-rotated-9f2c"
    log = LogWatch(guarded.env["LOG_AUTH"])
    try:
        token_file.write_text(new + "\n")
        os.kill(pid, signal.SIGHUP)
        log.wait_for(r"configuration reloaded")
        assert get(guarded, token=METRICS_TOKEN)[0] == 401
        assert get(guarded, token=new)[0] == 200
    finally:
        token_file.write_text(METRICS_TOKEN + "\n")
        os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + 5
    while get(guarded, token=METRICS_TOKEN)[0] != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
