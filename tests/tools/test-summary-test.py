#!/usr/bin/env python3
"""Checks tools/test-summary.py on made-up testlog.json files: the last line CI reads, the
breakdown line before it, and the exit status, for a clean run, a failure only under
sanitizers, and a run whose sanitized build failed (no log: never old results).  Prints TAP."""

import json
import os
import subprocess
import sys
import tempfile

SUMMARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "test-summary.py")


def entry(name, result, tap_lines):
    return {"name": f"generia:{name}", "suite": [f"generia:{name.split(' / ')[0]}"], "result": result,
            "stdout": "".join(line + "\n" for line in tap_lines)}


def write_log(folder, name, entries):
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as log:
        log.write("\n".join(json.dumps(e) for e in entries) + "\n")
    return path


def summary(*args):
    run = subprocess.run([sys.executable, SUMMARY, *args], capture_output=True, text=True, check=False)
    lines = run.stdout.splitlines()
    return run.returncode, lines[-2] if len(lines) > 1 else "", lines[-1] if lines else ""


def main():
    checks = []
    with tempfile.TemporaryDirectory() as folder:
        main_log = write_log(folder, "main.json", [
            entry("unit / a", "OK", ["ok 1 x", "ok 2 y", "ok 3 z # SKIP no tool"]),
            entry("integration / b", "OK", ["ok 1 w"]),
            entry("unit / style", "OK", []),
        ])
        clean = write_log(folder, "clean.json", [entry("unit / a", "OK", ["ok 1 x", "ok 2 y"])])
        dirty = write_log(folder, "dirty.json", [entry("unit / a", "FAIL", ["ok 1 x", "not ok 2 y"])])
        crashed = write_log(folder, "crashed.json", [entry("unit / a", "ERROR", ["ok 1 x"])])

        code, before, last = summary(main_log)
        checks.append(("a plain run", (code, last), (0, "4 passed, 0 failed, 1 skipped")))

        code, before, last = summary(main_log, f"sanitized={clean}")
        checks.append(("the sanitizer re-run adds no passes", (code, last), (0, "4 passed, 0 failed, 1 skipped")))
        checks.append(("the breakdown names the re-run", before,
                       "4 passed, 0 failed (and sanitized re-run: 2 passed, 0 failed)"))

        code, before, last = summary(main_log, f"sanitized={dirty}")
        checks.append(("a failure only under sanitizers fails the run", (code, last),
                       (1, "4 passed, 1 failed, 1 skipped")))

        code, before, last = summary(main_log, f"sanitized={crashed}")
        checks.append(("a crash without a not-ok line counts", (code, last), (1, "4 passed, 1 failed, 1 skipped")))

        missing = os.path.join(folder, "never-written.json")
        code, before, last = summary(main_log, f"sanitized={missing}")
        checks.append(("a missing log (failed build) is one failure", (code, last),
                       (1, "4 passed, 1 failed, 1 skipped")))

        code, before, last = summary(missing)
        checks.append(("nothing ran at all", (code, last), (1, "0 passed, 1 failed")))

    print("TAP version 13")
    failed = 0
    for number, (name, got, expected) in enumerate(checks, 1):
        if got == expected:
            print(f"ok {number} - {name}")
        else:
            failed += 1
            print(f"not ok {number} - {name}\n# got      {got!r}\n# expected {expected!r}")
    print(f"1..{len(checks)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
