"""--help: what a postmaster types first, on both programs (issue 17).

`dovegate-auth --help` used to answer "invalid option -- '-'" and exit 1;
`dovegate pw --help` "unknown option --". Both must print their usage on
stdout and exit 0; an unknown long option stays a usage error.
"""
import os
import subprocess

import pytest

from conftest import BUILD_DIR


def run(rel, *args):
    path = os.path.join(BUILD_DIR, rel)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} missing: build first (scripts/build)")
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=10)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_dovegate_auth_help(flag):
    r = run("src/shim/dovegate-auth", flag)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: dovegate-auth")
    assert "--config" in r.stdout and "--test" in r.stdout
    assert r.stderr == ""


def test_dovegate_auth_long_options():
    r = run("src/shim/dovegate-auth", "--version")
    assert r.returncode == 0 and r.stdout.startswith("dovegate-auth ")
    r = run("src/shim/dovegate-auth", "--config", "/nonexistent/dovegate-auth.conf", "--test")
    assert r.returncode != 0
    assert "/nonexistent/dovegate-auth.conf" in r.stdout + r.stderr


def test_dovegate_auth_unknown_option_is_usage_error():
    r = run("src/shim/dovegate-auth", "--no-such-option")
    assert r.returncode == 1
    assert "Usage: dovegate-auth" in r.stderr and r.stdout == ""


@pytest.mark.parametrize("args", [["--help"], ["help"], ["pw", "--help"], ["keygen", "--help"],
                                  ["ticket", "--help"], ["pw", "-h"]])
def test_dovegate_help(args):
    r = run("src/tools/dovegate", *args)
    assert r.returncode == 0, r.stderr
    assert "usage: dovegate" in r.stdout
    assert r.stderr == ""
