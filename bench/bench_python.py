"""Python call overhead of pyalloc's binding, next to ctypes calls of libc, in one run.

    python bench/bench_python.py

Reports ns per call (best of several timeit repeats) and the ratio to a ctypes call of
libc's getpid(), the usual way to reach C from Python without a C extension.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import timeit

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout's

import pyalloc as pa  # noqa: E402


def best_ns(stmt, number: int = 200_000, repeat: int = 7) -> float:
    return min(timeit.repeat(stmt, number=number, repeat=repeat)) / number * 1e9


def main() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    getpid = libc.getpid
    getpid.restype = ctypes.c_int
    getpid.argtypes = []
    proc = pa.Process()
    addr = proc.VirtualAlloc(None, 1 << 16, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    addr_cur = pa.VirtualAlloc(None, 1 << 16, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    vq, read, write = proc.VirtualQuery, proc.read, proc.write
    mvq = pa.VirtualQuery
    rows = [
        ("ctypes libc.getpid()", best_ns(getpid)),
        ("Process.VirtualQuery(addr)", best_ns(lambda: vq(addr))),
        ("pyalloc.VirtualQuery(addr) [current process]", best_ns(lambda: mvq(addr_cur))),
        ("Process.read(addr, 8)", best_ns(lambda: read(addr, 8))),
        ("Process.write(addr, b'12345678')", best_ns(lambda: write(addr, b"12345678"))),
        ("VirtualAlloc+VirtualFree 64 KiB (reserve+commit)",
         best_ns(lambda: proc.VirtualFree(
             proc.VirtualAlloc(None, 1 << 16, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE),
             0, pa.MEM_RELEASE), number=20_000)),
        ("empty lambda (timing floor)", best_ns(lambda: None)),
    ]
    base = rows[0][1]
    print(f"{'call':<52}{'ns/call':>10}{'vs ctypes':>11}")
    for name, ns in rows:
        print(f"{name:<52}{ns:>10.0f}{ns / base:>10.2f}x")


if __name__ == "__main__":
    main()
