"""Random misuse programs for tests/test_misuse.py: each seed draws one pyalloc.Process and a
sequence of calls with arguments a careless or hostile caller might pass (stale, shifted and
absurd addresses, huge sizes, bad flags, callbacks that free or raise, a file truncated under
its views). Every call may raise; none may crash, hang or raise SystemError (a C function
that returned NULL without an exception, or a value with one).

    python tests/misuse_programs.py FIRST_SEED END_SEED

runs seeds [FIRST_SEED, END_SEED), printing "SEED n" before each, and "SYSTEMERROR ..." for
each SystemError. The op table grew out of the fuzzing that found the crashes the tests named
"found by fuzzing" pin."""
from __future__ import annotations

import ctypes
import gc
import os
import random
import sys
import tempfile
import threading
import time
import warnings

import pyalloc as pa

STEPS = 60


class Pair(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]

    def __pyalloc_destroy__(self):
        pass


class Wide(ctypes.Structure):
    _align_ = 64
    _fields_ = [("x", ctypes.c_char * 100)]


CTYPES = [ctypes.c_int, ctypes.c_char * 5000, Pair, ctypes.c_char * 0, ctypes.c_double * 3,
          ctypes.c_char_p, Wide]
PROTECTS = [pa.PAGE_NOACCESS, pa.PAGE_READONLY, pa.PAGE_READWRITE, pa.PAGE_WRITECOPY,
            pa.PAGE_EXECUTE, pa.PAGE_EXECUTE_READ, pa.PAGE_EXECUTE_READWRITE,
            pa.PAGE_READWRITE | pa.PAGE_GUARD, pa.PAGE_READONLY | pa.PAGE_GUARD,
            pa.PAGE_READWRITE | pa.PAGE_NOCACHE, 0, 3]
RC = pa.MEM_RESERVE | pa.MEM_COMMIT
TYPES = [RC, pa.MEM_RESERVE, pa.MEM_COMMIT, RC | pa.MEM_WRITE_WATCH, pa.MEM_RESET,
         pa.MEM_RESET_UNDO, RC | pa.MEM_TOP_DOWN]
SHIFTS = [1, 8, 16, -8, -16, -32, -48, 4095, 4096, -4096, 65536]
ODD = [0, 1, 2**63, 2**64 - 1, 0x10000, 2**47]


def program(seed: int) -> None:
    r = random.Random(seed)
    p = pa.Process(crt_debug=r.random() < 0.4, heap_guard=r.random() < 0.7,
                   commit_limit=r.choice([None, None, 1 << 20, 1 << 24]),
                   address_space=r.choice([None, None, 1 << 24, 3 * 65536]))
    addrs, heaps, handles, views, objs = [0], [p.GetProcessHeap()], [], [], []
    backing = tempfile.TemporaryFile()
    backing.write(b"F" * 200000)
    backing.flush()

    def addr():
        a, x = r.choice(addrs), r.random()
        if x < 0.5:
            return a
        if x < 0.75:
            return max(0, a + r.choice(SHIFTS))
        return r.choice(ODD) if x < 0.85 else max(0, a + r.randrange(-70000, 70000))

    def size():
        return r.choice([0, 1, 8, 24, 100, 4096, 4097, 65536, 1 << 20, 1 << 25, 2**63,
                         2**64 - 1, r.randrange(200000)])

    def heap():
        return r.choice(heaps) if r.random() < 0.9 else addr()

    def keep(a):
        if isinstance(a, int) and a:
            addrs.append(a)

    def new_handler(n):
        if r.random() < 0.5:
            p.free(r.choice(addrs))
        return r.random() < 0.5

    def on_break(request, address):
        [lambda: p.free(address), lambda: p.malloc(10), lambda: 1 / 0, lambda: None][r.randrange(4)]()

    def lock_briefly(h):  # another thread holds a heap lock while this one goes on
        p.HeapLock(h)
        time.sleep(0.002)
        p.HeapUnlock(h)

    def some(seq):
        return r.choice(seq) if seq else None

    ops = [
        lambda: keep(p.VirtualAlloc(r.choice([None, addr()]), size(), r.choice(TYPES), r.choice(PROTECTS))),
        lambda: p.VirtualFree(addr(), r.choice([0, size()]), r.choice([pa.MEM_RELEASE, pa.MEM_DECOMMIT, 0])),
        lambda: p.VirtualProtect(addr(), size(), r.choice(PROTECTS)),
        lambda: p.VirtualQuery(addr()),
        lambda: p.read(addr(), r.choice([0, 1, 16, 5000, 70000])),
        lambda: p.write(addr(), os.urandom(r.choice([0, 1, 8, 16, 300, 5000]))),
        lambda: views.append(p.view(addr(), r.choice([0, 1, 16, 5000, 70000]))),
        lambda: views.pop(r.randrange(len(views))).release() if views else None,
        lambda: bytes(some(views)) if views else None,
        lambda: p.GetWriteWatch(r.choice([0, 1]), addr(), size()),
        lambda: p.ResetWriteWatch(addr(), size()),
        lambda: heaps.append(p.HeapCreate(r.choice([0, 1, 4, 0x40000, 5]), r.choice([0, 4096, 1 << 20]),
                                          r.choice([0, 0, 65536, 1 << 20]),
                                          debug=r.choice([0, 0, 1, 2, 4, 8, 15]), lfh=r.random() < 0.7)),
        lambda: p.HeapDestroy(heap()),
        lambda: keep(p.HeapAlloc(heap(), r.choice([0, 4, 8, 0x10]), size())),
        lambda: keep(p.HeapReAlloc(heap(), r.choice([0, 8, 0x10]), addr(), size())),
        lambda: p.HeapFree(heap(), r.choice([0, 1]), addr()),
        lambda: p.HeapSize(heap(), 0, addr()),
        lambda: p.HeapValidate(heap(), 0, r.choice([None, addr()])),
        lambda: list(p.HeapWalk(heap())),
        lambda: p.HeapCompact(heap(), 0),
        lambda: threading.Thread(target=lock_briefly, args=(heap(),), daemon=True).start(),
        lambda: p.HeapSetInformation(heap(), r.choice([0, 1, 3]), r.choice([None, 0, 1, 2])),
        lambda: some(heaps).stats(),
        lambda: keep(p.malloc(size())),
        lambda: keep(p.calloc(r.choice([0, 1, 3, 2**40]), size())),
        lambda: keep(p.realloc(addr(), size())),
        lambda: p.free(addr()),
        lambda: p._msize(addr()),
        lambda: keep(p._expand(addr(), size())),
        lambda: keep(p._recalloc(addr(), r.choice([0, 1, 5]), size())),
        lambda: keep(p._aligned_malloc(size(), r.choice([0, 1, 3, 16, 64, 4096, 2**63]))),
        lambda: keep(p._aligned_offset_malloc(size(), r.choice([16, 64, 4096]), r.choice([0, 8, 5000]))),
        lambda: keep(p._aligned_realloc(addr(), size(), r.choice([16, 64, 4096]))),
        lambda: p._aligned_free(addr()),
        lambda: p._set_new_mode(r.choice([0, 1, 2, -1])),
        lambda: p.set_new_handler(r.choice([None, new_handler])),
        lambda: keep(p.operator_new(size(), r.choice([0, 0, 16, 4096]), array=r.random() < 0.5,
                                    nothrow=r.random() < 0.5)),
        lambda: p.operator_delete(addr(), r.choice([0, 0, 32]), array=r.random() < 0.5),
        lambda: objs.append(p.new(r.choice(CTYPES))),
        lambda: objs.append(p.new_array(r.choice(CTYPES), r.choice([0, 1, 3, 100]))),
        lambda: p.delete(some(objs)),
        lambda: p.delete_array(some(objs)),
        lambda: objs.pop(r.randrange(len(objs))) if objs else None,
        lambda: p._CrtSetDbgFlag(r.choice([0, 1, 2, 4, 0x10001, 0x3, 0x25, -1])),
        lambda: p._CrtCheckMemory(),
        lambda: p._CrtDumpMemoryLeaks(),
        lambda: p._CrtSetBreakAlloc(r.randrange(1, 30), r.choice([None, on_break])),
        lambda: p._CrtIsValidHeapPointer(addr()),
        lambda: handles.append(p.CreateFileMapping(
            r.choice([None, None, backing]), r.choice([pa.PAGE_READONLY, pa.PAGE_READWRITE, pa.PAGE_WRITECOPY]),
            r.choice([0, 1, 4096, 1 << 20, 300000]), r.choice([None, None, "misuse-%d" % r.randrange(3)]))),
        lambda: keep(p.MapViewOfFile(some(handles), r.choice([pa.FILE_MAP_READ, pa.FILE_MAP_WRITE, pa.FILE_MAP_COPY]),
                                     r.choice([0, 65536, 4096]), r.choice([0, 4096, 1 << 20]))),
        lambda: p.UnmapViewOfFile(addr()),
        lambda: p.FlushViewOfFile(addr(), r.choice([0, 1, 4096])),
        lambda: p.CloseHandle(some(handles)),
        lambda: backing.truncate(r.choice([0, 10, 70000])),
        lambda: p._trace_start(r.choice([0, 1, 16, 1000, 2**63 + 1])),
        lambda: p._trace_stop(),
        lambda: p.regions(),
        lambda: repr(some(heaps)),
        gc.collect,
    ]
    try:
        for _ in range(STEPS):
            try:
                ops[r.randrange(len(ops))]()
            except SystemError as e:
                print("SYSTEMERROR", seed, repr(e), flush=True)
            except Exception:
                pass
    finally:
        views.clear()
        objs.clear()
        gc.collect()
        try:
            p.close()
        except Exception:
            pass


def main() -> None:
    warnings.simplefilter("ignore")
    sys.stderr = open(os.devnull, "w")  # the debug CRT's reports and leak dumps
    for seed in range(int(sys.argv[1]), int(sys.argv[2])):
        print("SEED", seed, flush=True)
        program(seed)


if __name__ == "__main__":
    main()
