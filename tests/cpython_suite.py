#!/usr/bin/env python3
"""CPython's whole regression suite, natively and on pyalloc's stack (`make cpython-suite`).

    python tests/cpython_suite.py [--jobs 2] [--timeout 600] [--exclude T1,T2] [--only T1,T2]

Runs `python -m test` twice with the same arguments, natively and under `pyalloc run`, and
compares what `regrtest` reports: the run passes when the same number of tests ran and every
test file that failed on the stack failed natively too (a machine without network, or
without a terminal, fails some tests either way). About 15 minutes each way on two cores;
pytest runs 15 allocation-heavy modules of the suite in every run
(tests/test_preload.py), this is the rest, by hand.

Left out by default: tests that need the network, and two that hang natively in a sandbox
without a controlling terminal (test_interpreters, test__xxsubinterpreters). The Python
must have its test package (Debian: libpython3.X-testsuite).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXCLUDE = ("test_ssl test_socket test_urllib2net test_urllibnet test_nntplib test_ftplib "
           "test_smtpnet test_timeout test_asyncio test_concurrent_futures "
           "test_multiprocessing_fork test_multiprocessing_forkserver "
           "test_multiprocessing_spawn test_interpreters test__xxsubinterpreters").split()


def failed_files(out: str) -> set[str]:
    """The test files regrtest lists as failed (its 'N tests failed:' block)."""
    m = re.search(r"^\d+ tests? failed:\n((?:    .*\n)+)", out, re.M)
    return set(m.group(1).split()) if m else set()


def tests_run(out: str) -> int | None:
    m = re.search(r"Total tests: run=([0-9,]+)", out)
    return int(m.group(1).replace(",", "")) if m else None


def run(argv: list[str], preload: bool, timeout: float) -> tuple[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pyalloc", "run", "--", *argv] if preload else argv
    t = time.monotonic()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.stdout + r.stderr, time.monotonic() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=600, help="seconds per test file")
    ap.add_argument("--exclude", default=",".join(EXCLUDE))
    ap.add_argument("--only", default="", help="these test files instead of the whole suite")
    args = ap.parse_args()
    if subprocess.run([sys.executable, "-c", "import test.support"], capture_output=True).returncode:
        print("this Python has no test package", file=sys.stderr)
        return 2
    argv = [sys.executable, "-m", "test", "-q", f"-j{args.jobs}", f"--timeout={args.timeout}"]
    if args.only:
        argv += args.only.split(",")
    elif args.exclude:
        argv += ["-x", *args.exclude.split(",")]
    results = {}
    for name, preload in (("native", False), ("pyalloc", True)):
        out, took = run(argv, preload, timeout=4 * 3600)
        results[name] = (failed_files(out), tests_run(out))
        print(f"{name:8} {took / 60:5.1f} min  tests run {results[name][1]}  "
              f"failed files {sorted(results[name][0]) or 'none'}", flush=True)
        if results[name][1] is None:
            print(out[-3000:], file=sys.stderr)
            return 1
    (native_failed, native_run), (ours_failed, ours_run) = results["native"], results["pyalloc"]
    only_ours = ours_failed - native_failed
    ok = not only_ours and ours_run == native_run
    print("same results on the stack" if ok else
          f"DIFFERENT: failed only on the stack {sorted(only_ours)}; tests run {ours_run} "
          f"against {native_run}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
