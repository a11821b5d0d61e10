#!/usr/bin/python3
"""One closing line for a test run: cmocka unit logs + pytest junit XML.

usage: summary.py [--label WORD] [--result FILE] [--sanitizer-reports DIR]
                  [--build-failed BUILD_DIR]... [UNIT_LOG_DIR JUNIT_XML ...]
       summary.py --combine [--label WORD] RESULT_FILE...

One UNIT_LOG_DIR JUNIT_XML pair per build (the plain one, the sanitizer one).
Every file in DIR is an ASan/UBSan/LeakSanitizer report (log_path=DIR/...):
each counts as one failure, whichever process wrote it, and its first lines
are shown. --build-failed BUILD_DIR: that build did not build, one failure.
Prints "WORD: N passed, N failed[, N skipped]" (WORD: --label, default
"total"); --result FILE also writes those counts to FILE (JSON) for --combine.
Exits 1 on any failure or when nothing ran at all.

--combine: one line per RESULT_FILE (a run of the first form, e.g. one CI
leg), then "total: ..." over all of them. A missing or unreadable
RESULT_FILE (the run did not finish) and a run with no test passed or
failed count as one failure each. Exits 1 on any failure.
"""
import glob
import json
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


def counts_line(label, passed, failed, skipped):
    line = f"{label}: {passed} passed, {failed} failed"
    return line + (f", {skipped} skipped" if skipped else "")


def take_option(args, name, many=False):
    """Removes every `name VALUE` from args; returns the values (or the last)."""
    values = []
    while name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            sys.exit(f"summary.py: {name} needs a value\n\n{__doc__}")
        values.append(args[i + 1])
        del args[i:i + 2]
    return values if many else (values[-1] if values else None)


def check_label(label):
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        sys.exit(f"summary.py: --label must be one word, not {label!r}")
    return label


def combine(args):
    """--combine: the runs' result files, one line each, then the total."""
    passed = failed = skipped = 0
    for path in args:
        try:
            with open(path) as f:
                r = json.load(f)
            label = r["label"]
            p, fl, sk = int(r["passed"]), int(r["failed"]), int(r.get("skipped", 0))
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"{path}: no result, counted as 1 failure ({e})")
            failed += 1
            continue
        print(counts_line(label, p, fl, sk))
        if p == 0 and fl == 0:
            print(f"{label}: ran no test, counted as 1 failure")
            fl += 1
        passed, failed, skipped = passed + p, failed + fl, skipped + sk
    return passed, failed, skipped


def main():
    args = sys.argv[1:]
    label = check_label(take_option(args, "--label") or "total")
    if "--combine" in args:
        args.remove("--combine")
        if not args or any(a.startswith("--") for a in args):
            sys.exit(__doc__)
        passed, failed, skipped = combine(args)
        print(counts_line(label, passed, failed, skipped))
        return 1 if failed or passed == 0 else 0

    result = take_option(args, "--result")
    report_dir = take_option(args, "--sanitizer-reports")
    failed_builds = take_option(args, "--build-failed", many=True)
    reports = 0
    if report_dir is not None:
        reports = sanitizer_reports(report_dir)
        print(f"sanitizer reports: {reports}")
    if (not args and not failed_builds) or len(args) % 2 or any(a.startswith("--") for a in args):
        sys.exit(__doc__)
    passed, failed, skipped = 0, reports, 0
    for build in failed_builds:
        print(f"{build}: build failed")
        failed += 1
    for unit_dir, junit in zip(args[0::2], args[1::2]):
        up, uf = unit_counts(unit_dir)
        ip, if_, isk = junit_counts(junit)
        build = os.path.dirname(os.path.dirname(os.path.normpath(unit_dir)))
        print(f"{build}: unit: {up} passed, {uf} failed; "
              f"integration: {ip} passed, {if_} failed, {isk} skipped")
        passed, failed, skipped = passed + up + ip, failed + uf + if_, skipped + isk
    if result:
        os.makedirs(os.path.dirname(os.path.abspath(result)), exist_ok=True)
        with open(result + ".tmp", "w") as f:
            json.dump({"label": label, "passed": passed, "failed": failed,
                       "skipped": skipped}, f)
            f.write("\n")
        os.replace(result + ".tmp", result)
    print(counts_line(label, passed, failed, skipped))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
