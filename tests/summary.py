#!/usr/bin/python3
"""One closing line for the whole test run: cmocka unit logs + pytest junit XML.

usage: summary.py UNIT_LOG_DIR JUNIT_XML
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


def main():
    up, uf = unit_counts(sys.argv[1])
    ip, if_, isk = junit_counts(sys.argv[2])
    print(f"unit: {up} passed, {uf} failed")
    print(f"integration: {ip} passed, {if_} failed, {isk} skipped")
    passed, failed = up + ip, uf + if_
    line = f"total: {passed} passed, {failed} failed"
    print(line + (f", {isk} skipped" if isk else ""))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
