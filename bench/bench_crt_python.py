"""A malloc(64)+free pair from Python: pyalloc's CRT next to a bare C-API function pair and to
ctypes, in one run.

    python bench/bench_crt_python.py [--batches 21] [--number 100000] [--max-ratio 1.3]

The baseline is the least a C extension can do for the same job: two METH_O functions that
call glibc's malloc and free and convert the pointer to and from a Python int. The script
compiles them (bench/_bare_capi.c, with the compiler and flags Python's own extensions use)
into a temporary directory. pyalloc's pair does the same conversions around its CRT (one
HeapAlloc and one HeapFree on the simulated process heap), so the ratio is the price of the
binding plus that of pyalloc's heap over glibc's.

Each row times `free(malloc(64))` in batches of --number pairs; rows take turns, batch by
batch, so that all see the same machine, and each reports the best batch in nanoseconds per
pair of *thread CPU time* (time.thread_time: time the benchmark was descheduled on a shared
machine does not count). --max-ratio makes the exit status 1 when pyalloc.malloc+free costs
more than that many times the bare pair.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
import timeit

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the checkout's pyalloc, built in place

import pyalloc as pa  # noqa: E402


def build_bare(tmp: str):
    """Compiles bench/_bare_capi.c into tmp and imports it; None if that is impossible."""
    cc = sysconfig.get_config_var("CC")
    ldshared = sysconfig.get_config_var("LDSHARED")
    if not cc or not ldshared:
        return None
    cflags = (sysconfig.get_config_var("CFLAGS") or "") + " " + (
        sysconfig.get_config_var("CCSHARED") or "")
    src = os.path.join(HERE, "_bare_capi.c")
    obj = os.path.join(tmp, "_bare_capi.o")
    out = os.path.join(tmp, "_bare_capi" + sysconfig.get_config_var("EXT_SUFFIX"))
    try:
        subprocess.run(shlex.split(cc) + shlex.split(cflags) +
                       ["-I", sysconfig.get_paths()["include"], "-c", src, "-o", obj],
                       check=True, capture_output=True)
        subprocess.run(shlex.split(ldshared) + [obj, "-o", out], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(could not build the bare C-API pair: {e})", file=sys.stderr)
        return None
    spec = importlib.util.spec_from_file_location("_bare_capi", out)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=21)
    ap.add_argument("--number", type=int, default=100_000, help="pairs per batch")
    ap.add_argument("--max-ratio", type=float, default=None)
    args = ap.parse_args()

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    c_malloc, c_free = libc.malloc, libc.free
    c_malloc.restype, c_malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    c_free.restype, c_free.argtypes = None, [ctypes.c_void_p]

    proc = pa.Process(crt_debug=False)
    dbg = pa.Process(crt_debug=True)
    heap = int(pa.GetProcessHeap())
    pa.free(pa.malloc(64))  # the current process's CRT and heap exist before timing

    with tempfile.TemporaryDirectory() as tmp:
        bare = build_bare(tmp)
        rows = []
        if bare is not None:
            rows.append(("bare C-API pair (glibc malloc/free, METH_O)",
                         "f(m(64))", dict(m=bare.malloc, f=bare.free)))
        rows += [
            ("pyalloc.malloc + pyalloc.free (current process)",
             "f(m(64))", dict(m=pa.malloc, f=pa.free)),
            ("Process.malloc + Process.free",
             "f(m(64))", dict(m=proc.malloc, f=proc.free)),
            ("Process(crt_debug=True).malloc + free",
             "f(m(64))", dict(m=dbg.malloc, f=dbg.free)),
            ("pyalloc.HeapAlloc + HeapFree (process heap)",
             "f(h, 0, m(h, 0, 64))", dict(m=pa.HeapAlloc, f=pa.HeapFree, h=heap)),
            ("ctypes libc malloc + free",
             "f(m(64))", dict(m=c_malloc, f=c_free)),
        ]
        if bare is not None:
            rows.append(("bare C-API call pair, no allocation (floor)",
                         "f(m(64))", dict(m=bare.nop, f=bare.nop)))
        else:
            import math
            rows.insert(0, ("math.floor pair (bare call floor)", "f(m(64))",
                            dict(m=math.floor, f=math.floor)))

        timers = [timeit.Timer(stmt, globals=g, timer=time.thread_time) for _, stmt, g in rows]
        for t in timers:
            t.timeit(1000)  # warm up
        best = [float("inf")] * len(rows)
        for _ in range(args.batches):
            for i, t in enumerate(timers):
                best[i] = min(best[i], t.timeit(args.number) / args.number * 1e9)

    base = best[0]
    print(f"malloc(64)+free pairs: best of {args.batches} batches of {args.number}, "
          f"ns of thread CPU time per pair; Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'pair':<50}{'ns':>8}{'ratio':>8}")
    for (name, _, _), ns in zip(rows, best):
        print(f"{name:<50}{ns:>8.1f}{ns / base:>8.2f}")
    ratio = best[1] / base
    print(f"\npyalloc.malloc+free / {rows[0][0]}: {ratio:.2f}x"
          + (f" (limit {args.max_ratio})" if args.max_ratio else ""))
    return 1 if args.max_ratio is not None and ratio > args.max_ratio else 0


if __name__ == "__main__":
    sys.exit(main())
