"""bench/run-authhttp --smoke: the auth_http benchmark harness still runs.

Not a measurement: every contender (nginx static, python http.server, each
dovegate-auth case) for ~1 s with 2 connections; wrk must report requests, no
errors and the expected Auth-Status on every answer.
"""
import os
import re
import shutil
import subprocess
import sys
import time

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("BUILD_DIR") or os.path.join(SRC_DIR, "build")


def test_bench_authhttp_smoke():
    assert shutil.which("wrk"), ("wrk is missing: run scripts/deps "
                                 "(the benchmark smoke test needs Debian's wrk in TEST_PKGS)")
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(SRC_DIR, "bench", "run-authhttp"), "--smoke",
                          "--build-dir", BUILD_DIR], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t0
    report = f"exit {out.returncode} after {took:.1f}s\n{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, report
    assert "smoke: every contender answered" in out.stdout, report
    assert "FAIL" not in out.stdout, report
    assert took < 30, report


# ---- issue 6 parts 2 and 3, issue 7's soak: the harnesses still run ------

LOGINLOAD = os.path.join(BUILD_DIR, "bench", "loginload")


def run_bench(script, *args, timeout=120):
    t0 = time.monotonic()
    out = subprocess.run([sys.executable, os.path.join(SRC_DIR, "bench", script), "--smoke",
                          "--build-dir", BUILD_DIR, *args], capture_output=True, text=True,
                         timeout=timeout)
    report = f"exit {out.returncode} after {time.monotonic() - t0:.1f}s\n{out.stdout}\n{out.stderr}"
    assert out.returncode == 0, report
    return out.stdout, report


def loginload(port, proto, *creds, seconds=2, conns=2):
    """creds: ("-u", user, "-w", password) or ("-f", file)."""
    out = subprocess.run([LOGINLOAD, "-p", str(port), "-P", proto, "-c", str(conns),
                          "-d", str(seconds), "-t", "10", *creds],
                         capture_output=True, text=True, timeout=seconds + 30)
    assert out.returncode == 0, out.stderr
    line = [l for l in out.stdout.splitlines() if l.startswith("LOGINLOAD ")]
    assert len(line) == 1, out.stdout
    return {k: float(v) if "." in v else (int(v) if v.isdigit() else v)
            for k, v in (kv.split("=", 1) for kv in line[0].split()[1:])}, out.stderr


def test_loginload_through_the_chain(chain):
    """loginload's one line: real logins through nginx + dovegate-auth +
    Dovecot, no failure, and latency figures in order."""
    e = chain.env
    for proto, port in (("imap", e["NGINX_IMAP_PORT"]), ("pop3", e["NGINX_POP3_PORT"])):
        r, err = loginload(port, proto, "-u", "carol", "-w", "carol-pass-3")
        assert r["proto"] == proto
        assert r["logins"] > 10 and r["ok"] >= r["logins"], (r, err)
        assert r["wrong"] == r["errors"] == r["timeouts"] == r["rejected"] == 0, (r, err)
        assert 0 < r["p50_us"] <= r["p90_us"] <= r["p99_us"] <= r["max_us"] < 10_000_000, r
        assert abs(r["rate"] - r["logins"] / r["duration_s"]) < 1, r


def test_loginload_counts_a_wrong_answer(chain, tmp_path):
    """An answer other than the expected one is a wrong answer, never an ok:
    the number the soak relies on can fail. Here a login expected to be
    refused ("no" in the file) is accepted (a wrong password instead would
    raise dovegate-auth's penalties for the other tests)."""
    creds = tmp_path / "creds"
    creds.write_text("carol carol-pass-3 no\n")
    r, err = loginload(chain.env["NGINX_IMAP_PORT"], "imap", "-f", str(creds), seconds=1, conns=1)
    assert r["ok"] == 0 and r["rejected"] == 0 and r["wrong"] >= 1, (r, err)
    assert "wrong answer for carol: accepted" in err


def test_bench_logins_smoke():
    """bench/run-logins --smoke: all six contenders log in and out briefly."""
    out, report = run_bench("run-logins", "--smoke-duration", "0.5")
    oks = re.findall(r"^ok +(imap|pop3) .* logins=(\d+) .* failures=0 ", out, re.M)
    assert len(oks) == 12 and all(int(n) > 0 for _, n in oks), report
    assert "smoke: every contender logged in and out, no failures" in out, report


def test_bench_memory_smoke():
    """bench/run-memory --smoke: sane RSS figures, requests without errors, a
    reload, the replay-cache phases without failures."""
    out, report = run_bench("run-memory")
    m = re.search(r"idle ([\d.]+) MiB, loaded ([\d.]+) MiB, (\d+) requests without errors, "
                  r"reload (\d+) ms", out)
    assert m, report
    idle, loaded, requests, reload_ms = float(m[1]), float(m[2]), int(m[3]), int(m[4])
    assert 1 < idle <= loaded < 64 and requests > 1000 and reload_ms < 5000, report


def test_bench_soak_smoke():
    """bench/run-soak --smoke: good logins accepted, bad ones and replayed
    tickets refused, zero wrong answers."""
    out, report = run_bench("run-soak")
    m = re.search(r"good (\d+) accepted, bad (\d+) refused, replays (\d+) refused, "
                  r"0 wrong answers, 0 errors", out)
    assert m and all(int(x) > 0 for x in m.groups()), report


def test_bench_bruteforce_smoke():
    """bench/run-bruteforce --smoke: the attacker's guesses reach the chain,
    some are refused unverified, and the other network's logins succeed."""
    out, report = run_bench("run-bruteforce")
    m = re.search(r"smoke: brute-force harness ran: (\d+) guesses sent, (\d+) checked, "
                  r"other network (\d+) logins ok", out)
    assert m and int(m[1]) > 0 and int(m[3]) > 0, report
    # the throttle: fewer passwords were checked than guesses were sent
    assert int(m[2]) < int(m[1]), report


def test_bench_cluster_smoke():
    """bench/run-cluster --smoke: every contender answers OK; with the store
    every login is decided on shared state in two round trips, with the
    store down on local state."""
    out, report = run_bench("run-cluster")
    assert "smoke: cluster harness ran" in out, report
    trips = [float(x) for x in re.findall(r"round_trips_per_login=([\d.]+)", out)]
    assert len(trips) == 2 and all(1.9 <= t <= 2.1 for t in trips), report
