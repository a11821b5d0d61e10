"""imaptest for the integration tests: where it comes from, how to run its
compliance suite and its stress load, and how to read what it says.

imaptest is built (and cached) by scripts/imaptest; see its header. Without
any imaptest source the tests skip with that script's one line saying how to
get one, except under CI=true, where they fail: CI must run them. A failed
build always fails them.
"""
import imaplib
import os
import re
import subprocess
import tempfile
import textwrap
import time

import pytest
from chain import dovecot_conf, dovecot_line

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("BUILD_DIR") or os.path.join(SRC_DIR, "build")
SCRIPT = os.path.join(SRC_DIR, "scripts", "imaptest")

# Groups imaptest skips on every target, with the reason. A group skipped
# that is not listed, or a listed one that runs, fails the test.
EXPECTED_SKIPS = {
    "sort-partial": "needs CONTEXT=SORT, which Dovecot does not offer",
    "urlauth2": "needs imaptest's user2= (a second user with the same password), which imaptest's "
                "own CI does not pass either: given one, the group fails on its own script (no "
                "`messages:` header, so its FETCH 1:2 meets an empty mailbox)",
}

# Groups that may be skipped on Dovecot 2.4 (either way is fine there):
# Debian 13's 2.4.1 offers no URLAUTH with imap_urlauth_host and a
# mail_attribute dict set (it does offer METADATA with them); 2.3 does, so
# there they must run.
MAY_SKIP_24 = {g: "Dovecot 2.4.1 offers no URLAUTH with imap_urlauth_host and a mail_attribute dict"
               for g in ("urlauth", "urlauth-binary")}

SUMMARY = re.compile(r"^(\d+) test groups: (\d+) failed, (\d+) skipped", re.M)
FAILURE = re.compile(r"^\*\*\* Test (\S+) ", re.M)


def ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def get_imaptest():
    """{"bin": ..., "tests": ...} from scripts/imaptest (building it if
    needed); skips (fails under CI=true) when there is no imaptest at all."""
    env = dict(os.environ, BUILD_DIR=BUILD_DIR)
    try:
        r = subprocess.run([SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.fail("scripts/imaptest did not finish within 900 s")
    if r.returncode == 3:
        line = (r.stderr.strip().splitlines() or ["imaptest: not available"])[-1]
        if ci():
            pytest.fail(f"CI=true, so imaptest must run, but: {line}")
        pytest.skip(line)
    if r.returncode != 0:
        pytest.fail(f"scripts/imaptest failed (exit {r.returncode}): its build must work here:\n"
                    f"{r.stderr[-6000:]}")
    vals = dict(re.findall(r"^(IMAPTEST_\w+)='([^']*)'$", r.stdout, re.M))
    found = {"bin": vals.get("IMAPTEST_BIN", ""), "tests": vals.get("IMAPTEST_TESTS", "")}
    if not found["tests"] or not os.path.isfile(os.path.join(found["tests"], "default.mbox")):
        line = (f"imaptest {found['bin']} has no compliance scripts: set IMAPTEST_TESTS=<imaptest "
                "checkout>/src/tests")
        if ci():
            pytest.fail(line)
        pytest.skip(line)
    return found


def urlauth_settings():
    """Dovecot settings that make it offer URLAUTH (needs mailbox attributes),
    so that imaptest's urlauth groups run instead of being skipped."""
    return dovecot_conf(
        "imap_urlauth_host = *\nmail_attribute_dict = file:%h/dovecot-attributes\n",
        "imap_urlauth_host = *\n"
        "mail_attribute {\n  dict file {\n    path = %{home}/dovecot-attributes\n  }\n}\n")


def expected_skips():
    """{group: (reason, must)}: must=False means it may also run."""
    skips = {g: (why, True) for g, why in EXPECTED_SKIPS.items()}
    if dovecot_line() == "2.4":
        skips.update({g: (why, False) for g, why in MAY_SKIP_24.items()})
    return skips


# ---- compliance -----------------------------------------------------------

def group_names(tests_dir):
    """The groups imaptest runs from a directory: its files, except *.mbox,
    dot files and subdirectories (test-parser.c), sorted."""
    return sorted(n for n in os.listdir(tests_dir)
                  if not n.startswith(".") and not n.endswith(".mbox")
                  and os.path.isfile(os.path.join(tests_dir, n)))


def group_header(path):
    """A group's header (key: value lines up to the first empty line)."""
    head = {}
    with open(path, "rb") as f:
        for raw in f:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if not line.strip():
                break
            if ":" in line:
                k, v = line.split(":", 1)
                head.setdefault(k.strip().lower(), []).append(v.strip())
    return head


def skip_reason(head, capabilities):
    """Why imaptest skips a group (test-exec.c: a `user N: $user2` without
    user2=, or a required capability the server does not announce after
    login), or None."""
    for k, vals in head.items():
        if k.startswith("user ") and any(v in ("$user2", "${user2}") for v in vals):
            return "needs user2="
    caps = {c.upper() for c in capabilities}
    missing = [c for v in head.get("capabilities", []) for c in v.split() if c.upper() not in caps]
    return f"server lacks {' '.join(missing)}" if missing else None


def post_login_capabilities(port, user, password):
    m = imaplib.IMAP4("127.0.0.1", port, timeout=20)
    try:
        m.login(user, password)
        typ, data = m.capability()
        assert typ == "OK", data
        return data[0].decode().split()
    finally:
        try:
            m.logout()
        except Exception:
            pass


class Compliance:
    """One run of imaptest's compliance suite and its per-group verdicts."""

    def __init__(self, imaptest, port, user, password, timeout=300):
        self.port, self.user = port, user
        tests = imaptest["tests"]
        self.groups = group_names(tests)
        caps = post_login_capabilities(port, user, password)
        self.skipped = {}
        for g in self.groups:
            why = skip_reason(group_header(os.path.join(tests, g)), caps)
            if why:
                self.skipped[g] = why
        argv = [imaptest["bin"], "host=127.0.0.1", f"port={port}", f"user={user}",
                f"pass={password}", f"test={tests}"]
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="imaptest-") as cwd:
            r = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=timeout)
        self.seconds = time.monotonic() - t0
        self.rc = r.returncode
        self.output = (r.stdout + r.stderr).decode("utf-8", "replace")
        self.summary = SUMMARY.search(self.output)
        # each failure block: "*** Test NAME ..." up to the next empty line
        self.failures = {}
        for block in re.split(r"\n\s*\n", self.output):
            m = FAILURE.search(block)
            if m:
                self.failures.setdefault(m.group(1), []).append(block[m.start():].strip())

    def problems(self, expected_failures, skips):
        """What makes the run fail: imaptest's own verdict disagreeing, a
        group failing that is not listed, a listed one passing or failing
        another way, an unexpected skip, an expected skip that ran."""
        out = []
        if not self.summary:
            return [f"no summary line from imaptest (exit {self.rc}): it crashed or never ran"]
        total, failed = int(self.summary.group(1)), int(self.summary.group(2))
        if total != len(self.groups):
            out.append(f"imaptest ran {total} groups, the directory has {len(self.groups)}")
        if failed != len(self.failures):
            out.append(f"imaptest counts {failed} failed groups, its output names {len(self.failures)}")
        if self.rc not in (0, 2) or (self.rc == 0) != (failed == 0):
            out.append(f"imaptest exited {self.rc} with {failed} failed groups")
        for g in self.groups:
            fails = self.failures.get(g)
            if g in expected_failures:
                reason, pattern = expected_failures[g]
                if not fails:
                    out.append(f"{g}: listed as an expected difference ({reason}) but passed: "
                               "remove it from the list")
                elif not re.search(pattern, "\n".join(fails)):
                    out.append(f"{g}: fails, but not as listed ({pattern!r}):\n{clip(fails)}")
            elif fails:
                out.append(f"{g}: FAILED\n{clip(fails)}")
            if g in self.skipped and g not in skips:
                out.append(f"{g}: skipped ({self.skipped[g]}), not an expected skip")
            if g in skips and skips[g][1] and g not in self.skipped:
                out.append(f"{g}: listed as skipped ({skips[g][0]}) but runs: update EXPECTED_SKIPS")
        return out

    def report(self, title, expected_failures, skips):
        ok = [g for g in self.groups if g not in self.failures and g not in self.skipped]
        lines = [f"imaptest compliance, {title}: {len(self.groups)} groups in {self.seconds:.1f} s, "
                 f"imaptest says: {self.summary.group(0) if self.summary else '(no summary)'}",
                 *wrap(f"passed ({len(ok)}): " + " ".join(ok))]
        for g in self.groups:
            if g in self.failures:
                tag = "failed, expected" if g in expected_failures else "FAILED"
                why = expected_failures.get(g, ("not listed", ""))[0]
                lines += wrap(f"{tag}: {g} ({why})")
        for g, why in self.skipped.items():
            lines += wrap(f"skipped: {g} ({skips[g][0]})" if g in skips
                          else f"SKIPPED: {g} ({why}; not an expected skip)")
        return "\n".join(lines)


def wrap(text):
    return textwrap.wrap(text, 110, initial_indent="  ", subsequent_indent="      ",
                         break_on_hyphens=False) or ["  "]


def clip(blocks, lines=12, width=240):
    """Failure text for a report: imaptest echoes whole commands (the id
    group's is 31.8 KB), so lines are cut."""
    out = []
    for b in blocks:
        out += [l if len(l) <= width else l[:width] + f"... ({len(l)} chars)" for l in b.splitlines()]
    return "\n".join("    " + l for l in out[:lines])


# ---- stress ---------------------------------------------------------------

def stress(imaptest, port, user_template, users, password, clients, secs, extra=()):
    """imaptest's default command mix (LOGIN, LIST, STATUS, SELECT, FETCH,
    STORE, EXPUNGE, APPEND, LOGOUT...) with `clients` connections over
    `users` users for `secs` seconds. Returns (exit code, output, totals)."""
    argv = [imaptest["bin"], "host=127.0.0.1", f"port={port}", f"user={user_template}",
            f"users={users}", f"pass={password}", f"clients={clients}", f"secs={secs}",
            f"mbox={os.path.join(imaptest['tests'], 'default.mbox')}", *extra]
    with tempfile.TemporaryDirectory(prefix="imaptest-") as cwd:
        r = subprocess.run(argv, capture_output=True, cwd=cwd, timeout=secs + 120)
    output = (r.stdout + r.stderr).decode("utf-8", "replace")
    return r.returncode, output, totals(output)


def totals(output):
    """imaptest's closing "Totals:" table as {state abbreviation: count}."""
    tail = output.split("Totals:", 1)
    if len(tail) < 2:
        return {}
    rows = [l.split() for l in tail[1].splitlines() if l.strip()]
    names = rows[0] if rows else []
    for row in rows[1:]:
        if len(row) == len(names) and all(x.isdigit() for x in row):
            return dict(zip(names, map(int, row)))
    return {}
