"""Shared helpers of bench/run-logins, run-memory and run-soak: packages,
private daemons stopped by pid, /proc accounting, medians, the results file."""

import datetime
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(TOP, "bench")
sys.path.insert(0, os.path.join(TOP, "tests", "chain"))
from chain import dovecot_conf, free_ports  # noqa: E402,F401  (shared with the chain)
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(Exception):
    pass


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- set-up

def ensure_packages(pkgs):
    missing = [p for p in pkgs if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True).stdout
        != "install ok installed"]
    if not missing:
        return
    log(f"bench: installing: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, env=env)


def prepare_full_run(args, pkgs=()):
    """Full runs: become root, install, build (scripts/build runs scripts/deps)."""
    if os.geteuid() != 0:
        os.execvp("sudo", ["sudo", f"BUILD_DIR={args.build_dir}", sys.executable, *sys.argv])
    ensure_packages(list(pkgs))
    subprocess.run([os.path.join(TOP, "scripts", "build")], check=True,
                   env=dict(os.environ, BUILD_DIR=args.build_dir))


def default_build_dir():
    return os.environ.get("BUILD_DIR") or os.path.join(TOP, "build")


def loginload_path(build):
    p = os.path.join(build, "bench", "loginload")
    if not os.access(p, os.X_OK):
        raise BenchError(f"{p} missing: build first (scripts/build; Makefile.am must include "
                         "bench/local.mk)")
    return p


def wait_greeting(port, prefix, proc, what, timeout=30):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                last = s.recv(512)
                if last.startswith(prefix):
                    return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise BenchError(f"{what} on 127.0.0.1:{port} not ready after {timeout}s: {last!r}")


class Procs:
    """Daemons started by the harness, each in its own session, stopped by pid."""

    def __init__(self, state):
        self.state = state
        self.procs = {}

    def spawn(self, name, argv, logname, env=None):
        with open(os.path.join(self.state, logname), "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
        self.procs[name] = proc
        return proc

    def stop(self):
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(list(self.procs.values())):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def dovecot_tuning(mail_procs):
    """Dovecot tuned so that process start-up is not what is measured
    (2.3: service_count = 0; 2.4: restart_request_count = unlimited)."""
    reuse = dovecot_conf("service_count = 0", "restart_request_count = unlimited")
    return f"""
service imap-login {{
  {reuse}
  process_min_avail = 2
}}
service pop3-login {{
  {reuse}
  process_min_avail = 2
}}
service imap {{
  {reuse}
  process_min_avail = {mail_procs}
}}
service pop3 {{
  {reuse}
  process_min_avail = {mail_procs}
}}
service auth {{
  client_limit = 4096
}}
# one user logs in on many connections at once
mail_max_userip_connections = 100000
# production logging: Login:/Disconnected lines, no auth debugging
auth_verbose = no
log_debug =
"""


# ---------------------------------------------------------------- /proc

def proc_stat(pid):
    """(comm, utime+stime, cutime+cstime, rss bytes) of a pid, None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    fields = raw.rsplit(")", 1)[1].split()
    return (comm, int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14]),
            int(fields[21]) * PAGE)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def rss_bytes(pid):
    """VmRSS of a pid (bytes), 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


class CpuGroups:
    """CPU time per process group over an interval.

    roots: {group: pid}, a daemon's main pid; its children count in the same
    group unless split_children names a group per child comm (Dovecot:
    auth, imap-login, imap ...). Children that exit during the interval are
    charged through the parent's cutime/cstime (what they used after the first
    snapshot), to "<group> exited" since their comm can no longer be asked."""

    def __init__(self, roots, split_children=()):
        self.roots = roots
        self.split = set(split_children)

    def snapshot(self):
        snap = {}
        for group, pid in self.roots.items():
            st = proc_stat(pid)
            if st is None:
                continue
            snap[pid] = (group, st[1], st[2], None)
            for child in children(pid):
                cst = proc_stat(child)
                if cst is None:
                    continue
                sub = f"{group} {cst[0]}" if group in self.split else group
                # a child's own children (nginx has none; Dovecot's have none) are not followed
                snap[child] = (sub, cst[1], cst[2], pid)
        return snap

    @staticmethod
    def delta(a, b):
        """{group: seconds} between two snapshots."""
        out = {}

        def add(g, ticks):
            out[g] = out.get(g, 0.0) + ticks / TICK

        for pid, (g, cpu, ccpu, parent) in b.items():
            prev = a.get(pid)
            add(g, cpu - (prev[1] if prev else 0))
            if parent is None:
                gone = [p for p, v in a.items() if v[3] == pid and p not in b]
                # reaped children: cutime grew by their whole life; subtract what was seen before
                extra = ccpu - (prev[2] if prev else ccpu) - sum(a[p][1] for p in gone)
                if extra > 0:
                    add(f"{g} exited", extra)
        return out


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def load_lines(loads, note=""):
    """The load average around a run, for the results' header. Only the first
    figure (taken before measuring) shows other work on the machine: the later
    ones count the benchmark's own runnable processes."""
    mid = loads[len(loads) // 2]
    text = (f"- load average (1/5/15 min): {loads[0]} before measuring, {mid} midway, "
            f"{loads[-1]} at the end,\n  on {os.cpu_count()} CPUs; the later figures count the "
            f"benchmark's own processes waiting for a CPU, so\n  other work on the machine shows "
            f"in the first figure and in the spread of the runs")
    return text + (f"\n  {note}" if note else "") + "\n"


# ---------------------------------------------------------------- numbers

def med(values):
    return statistics.median(values), min(values), max(values)


def fmt_med(t, spec=",.0f"):
    return f"{format(t[0], spec)} ({format(t[1], spec)}-{format(t[2], spec)})"


def parse_kv_line(prefix, text):
    m = re.search(rf"^{prefix} (.*)$", text, re.M)
    if not m:
        return None
    out = {}
    for kv in m.group(1).split():
        k, v = kv.split("=", 1)
        try:
            out[k] = float(v) if "." in v else int(v)
        except ValueError:
            out[k] = v
    return out


def run_loginload(build, port, proto, conns, duration, creds_file=None, user=None, password=None,
                  rate=None, timeout=30):
    argv = [loginload_path(build), "-p", str(port), "-P", proto, "-c", str(conns),
            "-d", str(duration), "-t", str(timeout)]
    argv += ["-f", creds_file] if creds_file else ["-u", user, "-w", password]
    if rate:
        argv += ["-r", f"{rate:.1f}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + timeout + 30)
    r = parse_kv_line("LOGINLOAD", out.stdout)
    if out.returncode != 0 or r is None:
        raise BenchError(f"loginload failed ({out.returncode}): {out.stdout}{out.stderr}")
    r["failures"] = r["wrong"] + r["errors"] + r["timeouts"]
    r["stderr"] = out.stderr.strip()
    return r


# ---------------------------------------------------------------- report

def machine_lines(build):
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    dc_v = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    dg = subprocess.run([os.path.join(build, "src/shim/dovegate-auth"), "-V"],
                        capture_output=True, text=True).stdout.strip()
    # BENCH_GIT: the commit, when running from an exported tree (git archive)
    git = os.environ.get("BENCH_GIT") or subprocess.run(
        ["git", "-C", TOP, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"- date: {now}\n"
            f"- machine: {os.cpu_count()} CPUs (nproc), {model}, {platform.release()}\n"
            f"- versions: {nginx_v}; Dovecot {dc_v}; {dg} (git {git})\n")


def write_section(path, name, text):
    """Replace (or append) one harness's section of bench/RESULTS.md, so each
    harness refreshes its own results and keeps the others'."""
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    try:
        with open(path) as f:
            old = f.read()
    except FileNotFoundError:
        old = ""
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end) + 1:]
    else:
        new = old.rstrip() + ("\n\n" if old else "") + block
    with open(path + ".tmp", "w") as f:
        f.write(new)
    os.replace(path + ".tmp", path)
