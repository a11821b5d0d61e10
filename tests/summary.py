#!/usr/bin/python3
"""One closing line for the whole test run: cmocka unit logs + pytest junit XML.

usage: summary.py UNIT_LOG_DIR JUNIT_XML [UNIT_LOG_DIR JUNIT_XML ...]
                  [--sanitizer-reports DIR]
One pair per build (the plain one, the sanitizer one). Every file in DIR is
an ASan/UBSan/LeakSanitizer report (log_path=DIR/...): each counts as one
failure, whichever process wrote it, and its first lines are shown.
Prints "total: N passed, N failed[, N skipped]"; exits 1 on any failure or
when nothing ran at all.
"""
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET


def unit_counts(log_dir):
    passed = failed = 0
    for trs in sorted(glob.glob(os.path.join(log_dir, "*.trs"))):
        log = trs[:-4] + ".log"
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        p = sum(int(n) for n in re.findall(r"^\[  PASSED  \] (\d+) test", text, re.M))
        f = sum(int(n) for n in re.findall(r"^\[  FAILED  \] (\d+) test", text, re.M))
        crashed = ":test-result: FAIL" in open(trs).read() and f == 0
        passed += p
        failed += f + (1 if crashed else 0)
    return passed, failed


def junit_counts(path):
    if not os.path.exists(path):
        return 0, 1, 0  # pytest did not even produce a report: count it as a failure
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    tests = fail = skip = 0
    for s in suites:
        tests += int(s.get("tests", 0))
        fail += int(s.get("failures", 0)) + int(s.get("errors", 0))
        skip += int(s.get("skipped", 0))
    return tests - fail - skip, fail, skip


def sanitizer_reports(report_dir):
    """Report files, each shown by its first lines (the error and its stack)."""
    paths = sorted(glob.glob(os.path.join(report_dir, "*")))
    for p in paths:
        with open(p, errors="replace") as f:
            head = "".join(f.readlines()[:40])
        print(f"----- sanitizer report {p}\n{head}")
    return len(paths)


def main():
    args = sys.argv[1:]
    reports = 0
    if "--sanitizer-reports" in args:
        i = args.index("--sanitizer-reports")
        reports = sanitizer_reports(args[i + 1])
        print(f"sanitizer reports: {reports}")
        del args[i:i + 2]
    if not args or len(args) % 2:
        sys.exit(__doc__)
    passed, failed, skipped = 0, reports, 0
    for unit_dir, junit in zip(args[0::2], args[1::2]):
        up, uf = unit_counts(unit_dir)
        ip, if_, isk = junit_counts(junit)
        build = os.path.dirname(os.path.dirname(os.path.normpath(unit_dir)))
        print(f"{build}: unit: {up} passed, {uf} failed; "
              f"integration: {ip} passed, {if_} failed, {isk} skipped")
        passed, failed, skipped = passed + up + ip, failed + uf + if_, skipped + isk
    line = f"total: {passed} passed, {failed} failed"
    print(line + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
