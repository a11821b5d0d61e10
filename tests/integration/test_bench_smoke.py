"""bench/run-authhttp --smoke: the auth_http benchmark harness still runs.

Not a measurement: every contender (nginx static, python http.server, each
dovegate-auth case) for ~1 s with 2 connections; wrk must report requests, no
errors and the expected Auth-Status on every answer.
"""
import os
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
