"""Fixtures: one private chain (nginx + dovegate-auth + Dovecot) per test session.

The chain runs on free 127.0.0.1 ports in a fresh /tmp directory and is
stopped by pid at the end. A failing test gets the three daemons' log tails
in its report.
"""
import os
import shutil
import sys
import tempfile

import pytest

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC_DIR, "tests", "chain"))

from chain import Chain  # noqa: E402
from helpers import LogWatch, watch_logs  # noqa: E402,F401

BUILD_DIR = os.environ.get("BUILD_DIR") or os.path.join(SRC_DIR, "build")
LIVE_CHAINS = []  # running chains, whose logs a failing test report shows


def start_chain(**kwargs):
    """A running chain in a fresh /tmp directory (Chain's keyword arguments)."""
    state = tempfile.mkdtemp(prefix="dovegate-test-", dir="/tmp")
    c = Chain(state, BUILD_DIR, **kwargs)
    try:
        c.start()
    except Exception:
        tails = c.log_tails(60) if hasattr(c, "values") else ""
        pytest.fail(f"chain did not start (state kept in {state}):\n{tails}", pytrace=True)
    LIVE_CHAINS.append(c)
    return c


def stop_chain(c):
    LIVE_CHAINS.remove(c)
    c.stop()
    if not getattr(pytest, "dovegate_failed", False):
        shutil.rmtree(c.state, ignore_errors=True)
    else:
        print(f"\nchain state kept for inspection: {c.state}")


@pytest.fixture(scope="session")
def chain():
    """The default chain: ticket credentials, demo users."""
    c = start_chain()
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def master_chain():
    """A chain whose dovegate-auth hands nginx master-user credentials."""
    c = start_chain(credentials="master")
    yield c
    stop_chain(c)


@pytest.fixture(scope="module")
def cluster_chain():
    """Cluster mode (issue 16): two edges (nginx + dovegate-auth each; edge
    2's endpoints are the EDGE2_ names in env) in front of two Dovecots,
    sharing a Redis/Valkey store (STORE_URL, STORE_PORT, STORE_PID;
    store(), store_info(), stop_store(), start_store(), pause_store(),
    resume_store()). A test that needs other [cluster] keys or a different
    edge 2 builds its own with start_chain(edges=2, backends=2,
    cluster={...}, edge2_backend_ports={...})."""
    c = start_chain(edges=2, backends=2)
    yield c
    stop_chain(c)


@pytest.fixture
def logs(chain):
    """Fresh watchers on the three logs, positioned at the start of the test."""
    return watch_logs(chain)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        pytest.dovegate_failed = True
        for c in LIVE_CHAINS:
            report.sections.append((f"daemon logs ({c.state})", c.log_tails(40)))
