"""libFuzzer smoke run: each harness (tests/fuzz, built by `make fuzz` with
clang and ASan+UBSan) for ~3 s over its seed corpus; any crash, sanitizer
report, leak or timeout fails. scripts/fuzz-smoke does the same from a shell;
FUZZ_TIME=600 there for a longer run."""
import os
import subprocess
import tempfile

import pytest

SRC_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_DIR = os.environ.get("BUILD_DIR") or os.path.join(SRC_DIR, "build")
NAMES = ["authhttp", "passwd_file", "schemes", "ticket", "config", "dovecot_reply"]


@pytest.mark.parametrize("name", NAMES)
def test_fuzz_smoke(name):
    binary = os.path.join(BUILD_DIR, "tests", "fuzz", "fuzz_" + name)
    assert os.access(binary, os.X_OK), (
        f"{binary} missing: run make -C {BUILD_DIR} fuzz "
        "(needs the Debian packages clang and libclang-rt-dev, then configure)")
    artifacts = os.path.join(BUILD_DIR, "tests", "fuzz", "artifacts")
    os.makedirs(artifacts, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dg-fuzz-") as work:
        # new corpus entries go to `work`; the committed seeds stay read-only
        out = subprocess.run([binary, "-max_total_time=3", "-timeout=5",
                              f"-artifact_prefix={artifacts}/{name}-", work,
                              os.path.join(SRC_DIR, "tests", "fuzz", "corpus", name)],
                             capture_output=True, text=True, errors="replace", timeout=60)
    log = out.stdout + out.stderr
    report = f"exit {out.returncode}\n" + "\n".join(log.splitlines()[-80:])
    assert out.returncode == 0, report
    assert "Done" in log, report
