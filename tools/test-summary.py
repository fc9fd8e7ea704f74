#!/usr/bin/env python3
"""test-summary - counts the results of a `meson test` run from its testlog.json.

    tools/test-summary.py [[LABEL=]testlog.json ...]

Prints one line per suite and the failed tests, and ends with exactly one line
`N passed, N failed` (`, N skipped` appended when some were skipped) for CI to read.

An unlabelled log holds the distinct tests; a labelled one (`sanitized=...`) is a re-run of
some of them (tools/test re-runs the node's tests under sanitizers), so its tests are not new
ones.  The line before the last gives the breakdown,
`327 passed, 0 failed (and sanitized re-run: 298 passed, 0 failed)`, and the last line
counts the distinct tests' passes and every failure of every run: a test that passes but fails
under sanitizers adds one failure and keeps its pass, so the run is red while the pass count
stays the number of distinct tests that passed.

A log that is missing counts as one failure of its run: its build or setup failed, and the
scripts delete the previous run's logs before they build, so a run never reports results it
did not produce.

Counting: a test that speaks TAP counts each of its "ok" / "not ok" lines ("# SKIP" ones as
skipped, "not ok ... # TODO" too: an expected failure); a TAP test that crashed, timed out or
failed without a "not ok" line adds one failure; a test without TAP lines counts as one.
Exits 1 if anything failed or no test ran, else 0.
"""

import json
import re
import sys
from collections import OrderedDict

TAP_LINE = re.compile(r"^(not ok|ok)\b(.*)$")
SKIP_DIRECTIVE = re.compile(r"#\s*skip", re.IGNORECASE)
TODO_DIRECTIVE = re.compile(r"#\s*todo", re.IGNORECASE)
FAILING_RESULTS = {"FAIL", "ERROR", "TIMEOUT", "UNEXPECTEDPASS"}


def suite_of(entry):
    """The first suite a test belongs to: "generia:unit+node / config" -> "unit"."""
    suites = entry.get("suite")
    if suites:
        return suites[0].split(":", 1)[-1]
    project_and_suites = entry["name"].split(" / ", 1)[0]
    return project_and_suites.split(":", 1)[-1].split("+")[0] or "default"


def count(entry):
    """Returns (passed, failed, skipped) for one test."""
    passed = failed = skipped = 0
    for line in (entry.get("stdout") or "").splitlines():
        match = TAP_LINE.match(line)
        if not match:
            continue
        status, rest = match.groups()
        if SKIP_DIRECTIVE.search(rest):
            skipped += 1
        elif status == "ok":
            passed += 1
        elif TODO_DIRECTIVE.search(rest):
            skipped += 1
        else:
            failed += 1

    result = entry.get("result", "ERROR")
    if result in FAILING_RESULTS and failed == 0:
        failed = 1
    elif passed + failed + skipped == 0:
        if result == "SKIP":
            skipped = 1
        else:
            passed = 1
    return passed, failed, skipped


def read_log(path):
    with open(path, encoding="utf-8") as log:
        return [json.loads(line) for line in log if line.strip()]


def main():
    """Arguments: testlog.json paths, each optionally as LABEL=PATH; a label prefixes the suite
    names of its log ("sanitized/unit"), so several runs add up in one table and one line."""
    args = sys.argv[1:] or ["_build/meson-logs/testlog.json"]
    suites = OrderedDict()
    failures = []
    logs = []
    # Per label ("" for the distinct tests): [passed, failed, skipped].
    runs = OrderedDict()
    for arg in args:
        label, _, path = arg.rpartition("=") if "=" in arg else ("", "", arg)
        run = runs.setdefault(label, [0, 0, 0])
        try:
            entries = read_log(path)
        except FileNotFoundError:
            print(f"test-summary: {path} not found: its build or setup failed, no test ran")
            failures.append(f"  {label + ': ' if label else ''}{path}: missing, 1 failed")
            run[1] += 1
            continue
        logs.append(path)
        for entry in entries:
            passed, failed, skipped = count(entry)
            suite = suite_of(entry)
            if label:
                suite = f"{label}/{suite}"
            totals = suites.setdefault(suite, [0, 0, 0, 0])
            totals[0] += 1
            totals[1] += passed
            totals[2] += failed
            totals[3] += skipped
            run[0] += passed
            run[1] += failed
            run[2] += skipped
            if failed:
                failures.append(f"  {label + ': ' if label else ''}{entry['name']}: "
                                f"{entry.get('result')}, {failed} failed")

    print(f"{'suite':<22} {'tests':>6} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for name, (tests, passed, failed, skipped) in suites.items():
        print(f"{name:<22} {tests:>6} {passed:>7} {failed:>7} {skipped:>8}")
    if failures:
        print("failed:")
        print("\n".join(failures))
    for path in logs:
        print(f"log: {path.replace('.json', '.txt')}")

    passed, failed, skipped = runs.get("", [0, 0, 0])
    reruns = [(label, totals) for label, totals in runs.items() if label]
    failed += sum(totals[1] for _, totals in reruns)
    if passed + failed == 0:
        failed = 1  # a run that ran nothing must not look green
    if reruns:
        distinct = runs.get("", [0, 0, 0])
        parts = [f"{label} re-run: {totals[0]} passed, {totals[1]} failed" for label, totals in reruns]
        print(f"{distinct[0]} passed, {distinct[1]} failed (and {'; '.join(parts)})")
    line = f"{passed} passed, {failed} failed"
    if skipped:
        line += f", {skipped} skipped"
    print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
