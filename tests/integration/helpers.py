"""What the integration tests share: log watching and real-client helpers.

Each helper asserts what an operator would check: dovegate-auth's decision
line, Dovecot's Login: line, the answer nginx would get from dovegate-auth.
"""
import imaplib
import os
import re
import subprocess
import time

# Dovecot's successful login line: "Login: user=<..>" in 2.3, "Logged in:
# user=<..>" in 2.4 (the elements after it are login_log_format_elements).
LOGGED_IN = r"(?:Login|Logged in):"
# A login process's disconnect before login: "Disconnected: <why>" in 2.3,
# "Login aborted: <why>" in 2.4.
LOGIN_GONE = r"(?:Disconnected|Login aborted):"


def auth_line(db, user, ip=r"[^,)]*", session=r"[^>]*"):
    """Regex for an auth process line of passdb `db` (e.g. "passwd-file")
    about `user` (regexes): 2.3 prefixes "passwd-file(user,ip,<session>): ",
    2.4 "auth(user,ip,sasl:plain)<session>: Info: passwd-file: "."""
    return (rf"(?:{db}\({user},{ip},<{session}>\): "
            rf"|auth\({user},{ip}(?:,[^)]*)?\)<{session}>: \w+: {db}: )")


class LogWatch:
    """Reads a log from a remembered offset, so a test sees only its own lines."""

    def __init__(self, path):
        self.path = path
        self.offset = os.path.getsize(path)

    def text(self):
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, timeout=10.0):
        """First match of `pattern` among the new lines; fails with what was seen."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.text().splitlines():
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() >= deadline:
                raise AssertionError(f"no line matching {pattern!r} in {self.path}; new lines:\n"
                                     + self.text()[-4000:])
            time.sleep(0.05)


def watch_logs(chain):
    """Fresh watchers on a chain's three logs, positioned at their current end."""
    e = chain.env
    return {"auth": LogWatch(e["LOG_AUTH"]), "dovecot": LogWatch(e["LOG_DOVECOT"]),
            "nginx": LogWatch(e["LOG_NGINX"])}


def user(chain, name):
    for u, password, scheme in chain.users:
        if u == name:
            return u, password
    raise KeyError(name)


def imap(chain, port_key="NGINX_IMAP_PORT"):
    return imaplib.IMAP4("127.0.0.1", int(chain.env[port_key]), timeout=15)


def decision(logs, **fields):
    """Wait for dovegate-auth's decision line carrying all `fields`."""
    parts = [rf"(?=.*\b{k}={re.escape(str(v))}(?:\s|$))" for k, v in fields.items()]
    return logs["auth"].wait_for(r"\bdecision\b" + "".join(parts) + r".*?\bsession=(\S+).*")


def login_line(logs, service, username):
    return logs["dovecot"].wait_for(rf"{service}-login: Info: {LOGGED_IN} user=<{re.escape(username)}>.*")


def auth_http(chain, headers):
    """Ask dovegate-auth directly, as nginx would; returns the response headers."""
    argv = ["curl", "-sS", "-0", "-D", "-", "-o", "/dev/null", "--max-time", "10"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [chain.env["AUTH_HTTP_URL"]], capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return {k.strip().lower(): v.strip() for k, v in
            (l.split(":", 1) for l in out.stdout.splitlines()[1:] if ":" in l)}


def ask_from(chain, name, password, ip, attempt=1):
    """auth_http as nginx asks for a client at `ip` (Client-IP), on its
    attempt number `attempt` of one connection."""
    h = nginx_headers(chain, name, password)
    h["Client-IP"] = ip
    h["Auth-Login-Attempt"] = str(attempt)
    return auth_http(chain, h)


def nginx_headers(chain, name, password, proto="imap"):
    return {"Auth-Method": "plain", "Auth-User": name, "Auth-Pass": password,
            "Auth-Protocol": proto, "Auth-Login-Attempt": "1", "Client-IP": "192.0.2.7",
            chain.env["AUTH_HTTP_SECRET_HEADER"]: chain.env["AUTH_HTTP_SECRET"]}
