"""The fail2ban filter in conf.d against dovegate-auth's real log lines.

fail2ban-regex (Debian's fail2ban) reads the chain's dovegate-auth log with
conf.d/fail2ban/dovegate-auth-filter.conf and must find exactly the failed
logins' client addresses: not successes, not temporary errors, and not an
address smuggled into a user name.
"""
import collections
import os
import subprocess

from conftest import SRC_DIR
from helpers import auth_http, decision, nginx_headers, user

FILTER = os.path.join(SRC_DIR, "conf.d", "fail2ban", "dovegate-auth-filter.conf")


def banned_ips(log_path):
    out = subprocess.run(["fail2ban-regex", "-o", "ip", log_path, FILTER],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return collections.Counter(line.strip() for line in out.stdout.splitlines() if line.strip())


def ask(chain, name, password, client_ip):
    h = nginx_headers(chain, name, password)
    h["Client-IP"] = client_ip
    return auth_http(chain, h)


def test_filter_counts_failures_by_real_client(chain, logs):
    name, password = user(chain, "alice")
    for _ in range(3):
        assert ask(chain, name, "wrong-" + password, "203.0.113.61")["auth-status"] != "OK"
    assert ask(chain, "no-such-user", "x", "2001:db8:61::7")["auth-status"] != "OK"
    # A client-chosen user name that imitates a log line must not get
    # 198.51.100.61 banned: only the real client address counts.
    sneaky = 'x" rip=198.51.100.61 result=fail reason=bad_password'
    assert ask(chain, sneaky, "x", "203.0.113.62")["auth-status"] != "OK"
    assert ask(chain, name, password, "203.0.113.63")["auth-status"] == "OK"
    decision(logs, result="ok", rip="203.0.113.63")

    ips = banned_ips(chain.env["LOG_AUTH"])
    assert ips["203.0.113.61"] == 3
    assert ips["2001:db8:61::7"] == 1
    assert ips["203.0.113.62"] == 1
    assert "198.51.100.61" not in ips
    assert "203.0.113.63" not in ips
