"""pyalloc.host(): the interpreter's own process, read-only, when Python runs on the stack.

The preloaded tests run a child `pyalloc run -- python -c SCRIPT`; SCRIPT asserts and prints
"ok". The interpreter's big blocks (a 100 KB ctypes buffer) must be busy blocks of the
program's process heap, HeapWalk'd through the preload library, while pyalloc's own
functions keep acting on the extension's separate current process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import pyalloc
from pyalloc import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


def run_on_pyalloc(script: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pyalloc", "run", "--", sys.executable, "-c",
                           textwrap.dedent(script)], env=env, capture_output=True, timeout=120)


def assert_ok(script: str) -> None:
    r = run_on_pyalloc(script)
    assert r.returncode == 0 and r.stdout.decode().strip().endswith("ok"), (
        r.stdout.decode(errors="replace")[-2000:] + r.stderr.decode(errors="replace")[-3000:])


def test_without_the_preload_library_there_is_no_host():
    assert pyalloc.host() is None
    assert _core._host_available() is False
    with pytest.raises(RuntimeError, match="pyalloc run"):
        _core._host_regions()
    with pytest.raises(RuntimeError):
        _core._host_heap_walk(0)


preloaded = pytest.mark.skipif(ASAN, reason="the preload library is not tested under ASan")


@preloaded
def test_a_big_python_buffer_is_a_busy_block_of_the_programs_process_heap():
    assert_ok("""
        import ctypes, pyalloc
        h = pyalloc.host()
        assert isinstance(h, pyalloc.HostProcess)
        heap = h.GetProcessHeap()
        assert heap in h.GetProcessHeaps()
        buf = ctypes.create_string_buffer(100_000)   # CPython mallocs it
        a = ctypes.addressof(buf)
        e = h.find_block(a)
        assert e is not None and e.wFlags & pyalloc.PROCESS_HEAP_ENTRY_BUSY, e
        assert e.lpData <= a and a + 100_000 <= e.lpData + e.cbData, e
        # the same block in the walk of the process heap itself, and its heap counts it
        assert any(x.lpData == e.lpData for x in h.HeapWalk(heap))
        st = h.heap_stats()
        assert st["busy_blocks"] > 0 and st["busy_bytes"] >= 100_000, st
        # the heap's memory is a committed Heap region of the program's address space
        r = [r for r in h.regions() if r.base <= a < r.end]
        assert len(r) == 1 and r[0].kind == "Heap" and r[0].state == pyalloc.MEM_COMMIT, r
        print("ok")
        """)


@preloaded
def test_the_host_is_not_the_process_pyalloc_functions_act_on():
    assert_ok("""
        import pyalloc
        h = pyalloc.host()
        p = pyalloc.VirtualAlloc(None, 1 << 16, pyalloc.MEM_COMMIT | pyalloc.MEM_RESERVE,
                                 pyalloc.PAGE_READWRITE)
        # the extension's current process has it; the program's address space does not
        assert pyalloc.VirtualQuery(p).State == pyalloc.MEM_COMMIT
        assert not [r for r in h.regions() if r.base <= p < r.end and r.state != pyalloc.MEM_FREE]
        assert pyalloc.GetProcessHeap() != h.GetProcessHeap()
        pyalloc.VirtualFree(p, 0, pyalloc.MEM_RELEASE)
        print("ok")
        """)


@preloaded
def test_the_host_address_space_is_contiguous_and_its_stats_agree():
    assert_ok("""
        import pyalloc
        h = pyalloc.host()
        regions = h.regions()
        assert all(a.end == b.base for a, b in zip(regions, regions[1:]))
        committed = sum(r.size for r in regions if r.state == pyalloc.MEM_COMMIT)
        assert committed > 0
        s = h.stats()
        # (Python may allocate between the two calls; the heap commits in 64 KiB steps)
        assert abs(s["committed"] - committed) <= 1 << 20, (s, committed)
        assert s["reserved"] >= s["committed"]
        print("ok")
        """)


@preloaded
def test_a_handle_that_is_not_a_heap_of_the_program_raises_invalid_handle():
    assert_ok("""
        import pyalloc
        h = pyalloc.host()
        for bad in (12345, pyalloc.GetProcessHeap()):  # the second: the *extension's* heap
            for call in (lambda: list(h.HeapWalk(bad)), lambda: h.heap_stats(bad)):
                try:
                    call()
                except pyalloc.WinError as e:
                    assert e.winerror == 6, e   # ERROR_INVALID_HANDLE
                else:
                    raise AssertionError("no error for %#x" % bad)
        print("ok")
        """)


@preloaded
def test_walks_while_other_threads_allocate_without_the_gil():
    # zlib releases the GIL while it compresses, mallocing its state and output as it goes:
    # those threads change the heap while the main thread walks it (under the heap's lock).
    assert_ok("""
        import os, threading, zlib, pyalloc
        h = pyalloc.host()
        data = os.urandom(1 << 16) * 16
        stop = threading.Event()
        def work():
            while not stop.is_set():
                zlib.compress(data, 1)
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads: t.start()
        try:
            heap = h.GetProcessHeap()
            for _ in range(30):
                entries = list(h.HeapWalk(heap))
                assert entries[0].wFlags & pyalloc.PROCESS_HEAP_REGION
                busy = [e for e in entries if e.wFlags & pyalloc.PROCESS_HEAP_ENTRY_BUSY]
                assert busy and all(e.cbData > 0 for e in busy)
        finally:
            stop.set()
            for t in threads: t.join()
        print("ok")
        """)


@preloaded
def test_the_host_draws_as_a_process_does():
    pytest.importorskip("matplotlib")
    assert_ok("""
        import pyalloc
        from pyalloc import textmap, viz
        h = pyalloc.host()
        assert "Heap" in textmap.format_map(h)
        fig = viz.address_space(h)
        assert any(d.category == "Heap" for d in fig.pyalloc_drawn)
        assert "%#x" % h.GetProcessHeap() in viz.heaps_html(h)
        assert h._repr_png_().startswith(b"\\x89PNG")
        print("ok")
        """)
