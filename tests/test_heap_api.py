"""The Python contract of the heap binding (pyalloc.Heap and the Heap* functions), beyond the
Windows facts of test_heap_facts.py:

  * heap_guard (the default): write() and view() reach only the user bytes of busy blocks in heap
    memory; anything else there (headers, tails, free blocks) is an AccessViolation at the first
    byte outside the busy block the access starts in. read() may read anything readable.
  * a block exported by a live memoryview cannot be freed or moved (BufferError), nor can its
    heap be destroyed or its process closed; releasing the view lifts that. Neighbouring blocks
    are unaffected.
  * heap memory belongs to the heap: VirtualFree / VirtualProtect / VirtualAlloc on it fail
    with ERROR_ACCESS_DENIED (5).
  * Process(heap_guard=False) lets Python corrupt the heap; the heap must notice (HeapValidate
    False, the call fails) and never crash or hang the interpreter. Scenarios that do crash or
    hang today run in a child interpreter and are marked xfail with the bug.
  * Heap.stats(), reprs, Process.close(), threads, the module-level functions.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import pickle
import random
import struct
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import pyalloc as pa
from conftest import GRAN, PAGE, lfh_spare_bytes, winerror

BUSY = pa.PROCESS_HEAP_ENTRY_BUSY
REGION = pa.PROCESS_HEAP_REGION
RW = pa.PAGE_READWRITE
TAIL = pa.PA_HEAP_DEBUG_TAIL_CHECK
FREE = pa.PA_HEAP_DEBUG_FREE_CHECK


@pytest.fixture
def p():
    proc = pa.Process()
    yield proc
    gc.collect()
    proc.close()


@pytest.fixture
def raw():
    proc = pa.Process(heap_guard=False)
    yield proc
    gc.collect()
    proc.close()


def lfh_heap(p, size=48, count=40):
    """A heap whose LFH serves `size`, and `count` blocks of it."""
    h = p.HeapCreate(0, 0, 0)
    xs = [p.HeapAlloc(h, 0, size) for _ in range(count)]
    assert p.HeapQueryInformation(h, pa.HeapCompatibilityInformation) == 2
    return h, xs


def busy_blocks(p, h) -> dict:
    return {e.lpData: e.cbData for e in p.HeapWalk(h) if e.wFlags & BUSY}


# ---- heap_guard ----------------------------------------------------------------------------------


KINDS = ["backend", "lfh", "large", "page"]


def make_block(p, kind, n):
    if kind == "lfh":
        h, xs = lfh_heap(p, n)
        return h, xs[-1]
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP if kind == "page" else 0)
    return h, p.HeapAlloc(h, 0, (2 << 20) + n if kind == "large" else n)


@pytest.mark.parametrize("kind", KINDS)
def test_guard_write_inside_a_busy_block(p, kind):
    h, x = make_block(p, kind, 48)
    n = p.HeapSize(h, 0, x)
    data = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    p.write(x, data)
    assert p.read(x, n) == data
    p.write(x + n - 1, b"\x99")
    p.write(x + n // 2, b"")
    mv = p.view(x, n)
    assert not mv.readonly and mv.nbytes == n
    mv[0] = 0x42
    assert p.read(x, 1) == b"\x42"
    mv.release()
    assert p.HeapValidate(h)


@pytest.mark.parametrize("kind", KINDS)
def test_guard_one_byte_past_the_block(p, kind):
    """One byte past the block: AccessViolation at block + size, nothing written (all or
    nothing), also for a write that starts inside the block."""
    h, x = make_block(p, kind, 48)
    n = p.HeapSize(h, 0, x)
    before = p.read(x + n - 4, 4)
    for start, size in ((x + n, 1), (x + n - 4, 5), (x, n + 1)):
        with pytest.raises(pa.AccessViolation) as e:
            p.write(start, b"\x01" * size)
        assert e.value.address == x + n and e.value.operation == "write"
        assert e.value.code == 0xC0000005
        with pytest.raises(pa.AccessViolation) as e:
            p.view(start, size)
        assert e.value.address == x + n
    assert p.read(x + n - 4, 4) == before
    assert p.HeapValidate(h)


@pytest.mark.parametrize("kind", ["backend", "lfh", "large"])
def test_guard_header_is_off_limits(p, kind):
    h, x = make_block(p, kind, 48)
    header = p.read(x - 16, 16)  # reading metadata is allowed
    for start in (x - 16, x - 1, x - 8):
        with pytest.raises(pa.AccessViolation) as e:
            p.write(start, b"\0")
        assert e.value.address == start
        with pytest.raises(pa.AccessViolation):
            p.write(start, b"\0" * (x - start + 4))  # header + the first user bytes
        with pytest.raises(pa.AccessViolation):
            p.view(start, 1)
    with pytest.raises(pa.AccessViolation) as e:
        p.write(int(h) + 0x10, b"\0\0\0\0")  # the heap's own header
    assert e.value.address == int(h) + 0x10
    assert p.read(x - 16, 16) == header
    assert p.HeapValidate(h)


@pytest.mark.parametrize("kind", ["backend", "lfh"])
def test_guard_free_blocks_are_off_limits(p, kind):
    h, x = make_block(p, kind, 48)
    keep = p.HeapAlloc(h, 0, 48)
    p.HeapFree(h, 0, x)
    with pytest.raises(pa.AccessViolation) as e:
        p.view(x, 8)
    assert e.value.address == x
    with pytest.raises(pa.AccessViolation) as e:
        p.write(x, b"use after free")
    assert e.value.address == x
    p.read(x, 8)  # still committed and readable
    # The free space of a fresh heap, and its uncommitted tail.
    free = [e for e in p.HeapWalk(h) if e.wFlags == 0 and e.iRegionIndex == 0][-1]
    with pytest.raises(pa.AccessViolation):
        p.write(free.lpData, b"x")
    assert p.HeapValidate(h) and p.HeapSize(h, 0, keep) == 48


def test_guard_write_spanning_two_blocks(p):
    h = p.HeapCreate(0, 0, 0)
    x, y = p.HeapAlloc(h, 0, 32), p.HeapAlloc(h, 0, 32)
    lo, hi = min(x, y), max(x, y)
    with pytest.raises(pa.AccessViolation) as e:
        p.write(lo, bytes(hi + 32 - lo))
    assert e.value.address == lo + 32


def test_guard_only_concerns_heap_memory(p):
    """Application memory (VirtualAlloc) is not checked against heap blocks."""
    a = p.VirtualAlloc(None, 0x10000, pa.MEM_COMMIT | pa.MEM_RESERVE, RW)
    p.write(a, b"\1" * 0x10000)
    p.view(a + 5, 100).release()


def test_guard_off_reaches_metadata(raw):
    h = raw.HeapCreate(0, 0, 0)
    x = raw.HeapAlloc(h, 0, 48)
    header = raw.read(x - 16, 16)
    raw.write(x - 16, header)  # same bytes: allowed and harmless
    raw.write(x + 48, raw.read(x + 48, 16))
    mv = raw.view(x - 16, 64)
    assert bytes(mv[:16]) == header
    mv.release()
    assert raw.HeapValidate(h)


# ---- BufferError with live views -----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_live_view_pins_its_block(p, kind):
    h, x = make_block(p, kind, 48)
    n = p.HeapSize(h, 0, x)
    mv = p.view(x + 8, 16)
    mv[:4] = b"pin!"
    for call in (lambda: p.HeapFree(h, 0, x),
                 lambda: p.HeapReAlloc(h, 0, x, 1 << 16),
                 lambda: p.HeapReAlloc(h, 0, x, 16),
                 lambda: p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, n - 16),
                 lambda: p.HeapDestroy(h),
                 lambda: p.close()):
        with pytest.raises(BufferError):
            call()
    # Nothing happened: the block, its size and contents are intact.
    assert p.HeapSize(h, 0, x) == n and p.HeapValidate(h, 0, x) and p.HeapValidate(h)
    assert p.read(x + 8, 4) == b"pin!"
    assert not p.closed
    mv.release()
    y = p.HeapReAlloc(h, 0, x, n + 1000)
    assert p.read(y + 8, 4) == b"pin!"
    assert p.HeapFree(h, 0, y)
    assert p.HeapDestroy(h)


def test_slices_and_buffers_keep_the_view_alive(p):
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    mv = p.view(x, 100)
    part = mv[10:20]
    mv.release()
    with pytest.raises(BufferError):
        p.HeapFree(h, 0, x)
    part.release()
    arr = memoryview(p.view(x, 100)).cast("B")  # a memoryview of the view
    with pytest.raises(BufferError):
        p.HeapFree(h, 0, x)
    arr.release()
    gc.collect()
    assert p.HeapFree(h, 0, x)


def test_dropping_the_view_unpins(p):
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    mv = p.view(x, 100)
    del mv
    gc.collect()
    assert p.HeapFree(h, 0, x)


def test_view_of_one_block_does_not_pin_its_neighbours(p):
    """Pins are page-granular in the memory manager, but BufferError concerns only the bytes a
    view covers: blocks on the same page stay freeable and movable."""
    h, xs = lfh_heap(p, 16, 64)
    x = xs[30]
    mv = p.view(x, 16)
    neighbours = [y for y in xs if y != x and abs(y - x) < PAGE]
    assert len(neighbours) > 10
    for y in neighbours[:5]:
        assert p.HeapFree(h, 0, y)
    y = neighbours[5]
    assert p.HeapReAlloc(h, 0, y, 5000)
    back = p.HeapCreate(0, 0, 0, lfh=False)
    a, b = p.HeapAlloc(back, 0, 40), p.HeapAlloc(back, 0, 40)
    mva = p.view(a, 40)
    assert p.HeapFree(back, 0, b)
    with pytest.raises(BufferError):
        p.HeapFree(back, 0, a)
    empty = p.view(a, 0)  # an empty view covers no byte
    mva.release()
    assert p.HeapFree(back, 0, a)
    empty.release()
    with pytest.raises(BufferError):
        p.HeapFree(h, 0, x)
    mv.release()
    assert p.HeapFree(h, 0, x)
    assert p.HeapValidate(h) and p.HeapValidate(back)


def test_views_allow_reading_calls(p):
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    with p.view(x, 100) as mv:
        assert p.HeapSize(h, 0, x) == 100
        assert p.HeapValidate(h) and p.HeapValidate(h, 0, x)
        assert x in busy_blocks(p, h)
        assert h.stats()["busy_blocks"] == 1
        assert p.HeapCompact(h, 0) > 0
        y = p.HeapAlloc(h, 0, 100)
        assert p.HeapFree(h, 0, y)
        mv[:] = bytes(100)
    assert p.HeapFree(h, 0, x)


def test_destroying_another_heap_with_a_view_alive(p):
    """HeapDestroy refuses while any heap memory is exported (the check is coarse: it does not
    tell heaps apart), and succeeds once the view is released."""
    h, other = p.HeapCreate(0, 0, 0), p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    mv = p.view(x, 10)
    with pytest.raises(BufferError):
        p.HeapDestroy(h)
    mv.release()
    assert p.HeapDestroy(h) and p.HeapDestroy(other)


# ---- heap memory belongs to the heap -------------------------------------------------------------


def test_virtual_functions_refuse_heap_memory(p):
    h, xs = lfh_heap(p)
    big = p.HeapAlloc(h, 0, 2 << 20)
    ph = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    pb = p.HeapAlloc(ph, 0, 100)
    lfh_region = [e for e in p.HeapWalk(h) if e.wFlags == REGION and e.iRegionIndex == 1][0]
    targets = [int(h), int(h) + PAGE, big - 64, big, lfh_region.lpData, xs[0], pb, int(ph)]
    for t in targets:
        base = t & ~(PAGE - 1)
        with winerror(5, p):
            p.VirtualFree(p.VirtualQuery(t).AllocationBase, 0, pa.MEM_RELEASE)
        with winerror(5, p):
            p.VirtualFree(base, PAGE, pa.MEM_DECOMMIT)
        with winerror(5, p):
            p.VirtualProtect(base, PAGE, pa.PAGE_NOACCESS)
        with winerror(5, p):
            p.VirtualProtect(base, PAGE, pa.PAGE_READONLY)
        with winerror(5, p):
            p.VirtualAlloc(base, PAGE, pa.MEM_COMMIT, RW)
        with winerror(5, p):
            p.VirtualAlloc(base, PAGE, pa.MEM_RESET, RW)
    # The heap's uncommitted tail cannot be committed behind its back either.
    unc = [e for e in p.HeapWalk(h) if e.wFlags == pa.PROCESS_HEAP_UNCOMMITTED_RANGE][0]
    with winerror(5, p):
        p.VirtualAlloc(unc.lpData, PAGE, pa.MEM_COMMIT, RW)
    assert p.HeapValidate(h) and p.HeapValidate(ph)
    assert p.HeapSize(h, 0, big) == 2 << 20
    assert all(r.kind == "Heap" for r in p.regions() if r.owner == pa.OWNER_HEAP)


# ---- heap_guard=False: corruption is detected, never a crash -------------------------------------


def test_private_control_data_stays_off_limits_without_heap_guard(raw):
    """heap_guard=False opens blocks, their headers and the Windows-layout header fields
    (signature at 0x10, flags at 0x70) to Python's writes; the heap's private control data,
    which its own code trusts (the rest of the header, segment descriptors, an LFH segment's
    header chunk), still raises AccessViolation at its first byte, for write() and view()."""
    p = raw
    h, xs = lfh_heap(p)
    base = int(h)
    for off in (0x10, 0x70):  # Windows' fields: writable (and restored)
        old = p.read(base + off, 4)
        p.write(base + off, old)
    for off in (0x20, 0x58, 0x100, 0x900):
        with pytest.raises(pa.AccessViolation) as info:
            p.write(base + off - 4, b"\xff" * 8)
        assert info.value.address == max(base + off - 4, base + 0x20)
    with pytest.raises(pa.AccessViolation):
        p.view(base + 0x40, 8)
    lfh_seg = p.VirtualQuery(xs[-1]).AllocationBase
    assert lfh_seg != base
    with pytest.raises(pa.AccessViolation):
        p.write(lfh_seg + 0x200, b"\0" * 8)
    # A second back-end segment's descriptor, next to a block whose header stays writable.
    big = [p.HeapAlloc(h, 0, 200_000) for _ in range(12)]
    outside = [b for b in big if p.VirtualQuery(b).AllocationBase not in (base, lfh_seg)]
    assert outside
    seg = p.VirtualQuery(outside[-1]).AllocationBase
    with pytest.raises(pa.AccessViolation) as info:
        p.write(seg, b"\0" * 4)
    assert info.value.address == seg
    header = p.read(outside[-1] - 16, 16)
    p.write(outside[-1] - 16, header)
    assert p.HeapValidate(h)
    for x in big + xs:
        assert p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


def test_lfh_subsegment_header_stays_off_limits_without_heap_guard(raw):
    """The header at the start of each LFH subsegment (magic b'BS', list links, slot geometry,
    free bitmap: 320 bytes before slot 0) is control data the LFH trusts: with heap_guard=False
    a write or view over it raises AccessViolation at its first byte, as for the segment's
    header chunk, while slot 0's header and user bytes right after it stay writable. (A write
    over its list link used to crash HeapCompact and HeapAlloc.)"""
    p = raw
    h, xs = lfh_heap(p, size=24, count=50)
    sub = xs[-1] & ~0xFFFF
    assert p.VirtualQuery(sub).AllocationBase != int(h)
    assert p.read(sub, 2) == b"BS"
    for off, n in ((0, 2), (40, 8), (48, 8), (300, 40), (316, 4)):  # magic, next, prev, bitmap
        with pytest.raises(pa.AccessViolation) as info:
            p.write(sub + off, b"A" * n)
        assert info.value.address == sub + off
    with pytest.raises(pa.AccessViolation) as info:
        p.write(sub - 8, b"\0" * 16)  # from the chunk before: refused at its first byte
    assert info.value.address == sub - 8
    with pytest.raises(pa.AccessViolation) as info:
        p.view(sub + 256, 128)
    assert info.value.address == sub + 256
    assert p.read(sub, 2) == b"BS"
    # Slot 0 follows the header: its header and user bytes are open to writes.
    slot0 = sub + 320 + 16
    assert slot0 in xs
    header = p.read(slot0 - 16, 16)
    p.write(slot0 - 16, header)
    p.write(slot0, b"B" * 24)
    with p.view(slot0, 24) as v:
        v[:4] = b"CCCC"
    assert p.read(slot0, 5) == b"CCCCB"
    # A slot inside a later chunk of a multi-chunk subsegment is not a header: open too.
    h2, big = lfh_heap(p, size=16000, count=40)
    inner = [x for x in big if (x - 16) & 0xFFFF < 320 and (x - 16) & 0xFFFF != 320]
    for x in inner:
        p.write(x, b"D" * 16)
    for x in xs:
        assert p.HeapFree(h, 0, x)
    p.HeapCompact(h, 0)
    ys = [p.HeapAlloc(h, 0, 24) for _ in range(200)]
    assert p.HeapValidate(h) and p.HeapValidate(h2)
    for y in ys:
        assert p.HeapFree(h, 0, y)
    assert p.HeapDestroy(h) and p.HeapDestroy(h2)


def test_rewritten_free_lfh_slot_index_is_not_followed(raw):
    """A freed LFH slot keeps its header, which heap_guard=False lets Python rewrite: a slot
    index that points its subsegment header elsewhere (before the segment, for the first slot
    of a 6-chunk subsegment) is caught by the segment map when the thread's cache gives the
    slot back; the slot is lost and HeapValidate reports it, nothing crashes."""
    p = raw

    def run(f):
        t = threading.Thread(target=f)
        t.start()
        t.join()

    h = p.HeapCreate(0, 0, 0)
    xs: list = []
    run(lambda: xs.extend(p.HeapAlloc(h, 0, 16000) for _ in range(40)))
    seg = p.VirtualQuery(xs[-1]).AllocationBase
    y = min(x for x in xs if p.VirtualQuery(x).AllocationBase == seg)
    assert p.read(y - 16, 4) == struct.pack("<I", 0)  # slot 0 of its subsegment

    def free_and_rewrite():
        assert p.HeapFree(h, 0, y)
        p.write(y - 16, struct.pack("<I", 22))  # the last slot's index

    run(free_and_rewrite)  # the thread's exit gives its cached slots back
    p.HeapCompact(h, 0)
    assert p.HeapValidate(h) is False
    p.write(y - 16, struct.pack("<I", 0))
    zs = [p.HeapAlloc(h, 0, 16000) for _ in range(40)]
    assert y not in zs  # lost, not handed out again
    for x in xs + zs:
        if x != y:
            assert p.HeapFree(h, 0, x)
    assert p.HeapDestroy(h)


def test_corrupt_block_header_is_detected_and_restorable(raw):
    p = raw
    h = p.HeapCreate(0, 0, 0)
    x, y = p.HeapAlloc(h, 0, 100), p.HeapAlloc(h, 0, 100)
    header = p.read(x - 16, 16)
    p.write(x - 16, b"\xa5" * 16)
    assert p.HeapValidate(h) is False
    assert p.HeapValidate(h, 0, x) is False
    for call in (lambda: p.HeapFree(h, 0, x), lambda: p.HeapSize(h, 0, x),
                 lambda: p.HeapReAlloc(h, 0, x, 200)):
        with pytest.raises(pa.WinError):
            call()
    p.write(x - 16, header)
    assert p.HeapValidate(h)
    assert p.HeapSize(h, 0, x) == 100
    assert p.HeapFree(h, 0, x) and p.HeapFree(h, 0, y)
    assert p.HeapValidate(h)


@pytest.mark.parametrize("offset", [o for o in range(-16, 0) if not -8 <= o < -4])
def test_any_zeroed_header_byte_is_noticed(raw, offset):
    """Zeroing one byte of a busy block's header: HeapValidate False or the byte was already 0;
    the block is refused or intact; nothing crashes. (Bytes -8..-5: see
    test_corrupt_size_field_is_detected.)"""
    p = raw
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    old = p.read(x + offset, 1)
    p.write(x + offset, b"\0")
    if old != b"\0":
        assert p.HeapValidate(h, 0, x) is False or p.HeapSize(h, 0, x) == 100
    p.write(x + offset, old)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, x)


def test_corrupt_lfh_block_header(raw):
    p = raw
    h, xs = lfh_heap(p)
    x = xs[10]
    header = p.read(x - 16, 16)
    p.write(x - 16, b"\x5a" * 16)
    assert p.HeapValidate(h) is False and p.HeapValidate(h, 0, x) is False
    with pytest.raises(pa.WinError):
        p.HeapFree(h, 0, x)
    # (The LFH also refuses the two neighbouring slots while that header is bad.)
    assert p.HeapSize(h, 0, xs[30]) == 48
    p.write(x - 16, header)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, x)


def test_corrupt_lfh_bucket_byte_is_refused(raw):
    """An LFH block's bucket byte (header byte -3) indexes the thread's cache on free: a block
    whose byte disagrees with the segment map is refused, not freed into the wrong bin."""
    p = raw
    h, xs = lfh_heap(p)
    p.HeapAlloc(p.HeapCreate(0, 0, 0), 0, 8)  # another heap first in the thread's handle cache
    old = p.read(xs[30] - 3, 1)
    p.write(xs[30] - 3, b"\xff")
    with pytest.raises(pa.WinError):
        p.HeapFree(h, 0, xs[30])
    assert p.HeapValidate(h) is False
    p.write(xs[30] - 3, old)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, xs[30])


def test_corrupt_large_block_header(raw):
    p = raw
    h = p.HeapCreate(0, 0, 0)
    big = p.HeapAlloc(h, 0, 2 << 20)
    header = p.read(big - 16, 16)
    p.write(big - 16, b"\x5a" * 16)
    assert p.HeapValidate(h) is False
    p.write(big - 16, header)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, big)


def test_corrupt_large_block_header_refused_per_block(raw):
    p = raw
    h = p.HeapCreate(0, 0, 0)
    big = p.HeapAlloc(h, 0, 2 << 20)
    p.write(big - 16, b"\x5a" * 16)
    assert p.HeapValidate(h, 0, big) is False
    with pytest.raises(pa.WinError):
        p.HeapFree(h, 0, big)


def test_write_past_the_end_with_tail_checking(raw):
    p = raw
    h = p.HeapCreate(0, 0, 0, debug=TAIL)
    x = p.HeapAlloc(h, 0, 30)
    p.write(x, b"\1" * 30)
    p.write(x + 30, b"overrun")
    assert p.HeapValidate(h) is False and p.HeapValidate(h, 0, x) is False
    # Like Windows, HeapSize checks only with HEAP_VALIDATE (W-KT test_heap_checks); pyalloc's
    # HeapFree and HeapReAlloc refuse the block.
    assert p.HeapSize(h, 0, x) == 30
    for call in (lambda: p.HeapFree(h, 0, x), lambda: p.HeapReAlloc(h, 0, x, 300),
                 lambda: p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 20)):
        with pytest.raises(pa.WinError):
            call()
    other = p.HeapAlloc(h, 0, 30)  # the heap goes on serving
    assert p.HeapFree(h, 0, other)
    p.write(x + 30, b"\xab" * 7)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, x)


def test_write_after_free_with_free_checking(raw):
    p = raw
    h = p.HeapCreate(0, 0, 0, debug=FREE)
    keep, x, after = (p.HeapAlloc(h, 0, 64) for _ in range(3))
    p.HeapFree(h, 0, x)
    fill = p.read(x + 16, 48)
    p.write(x + 40, b"dangling")
    assert p.HeapValidate(h) is False
    p.write(x + 16, fill)
    assert p.HeapValidate(h)
    p.HeapFree(h, 0, keep)
    p.HeapFree(h, 0, after)
    assert p.HeapValidate(h)


def test_corrupt_heap_header_signature(raw):
    """Overwriting the heap's 0xFFEEFFEE signature: HeapValidate notices; other calls do not
    crash; restoring it revives the heap."""
    p = raw
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 10)
    sig = p.read(int(h) + 0x10, 4)
    p.write(int(h) + 0x10, b"\0\0\0\0")
    assert p.HeapValidate(h) is False
    try:
        p.HeapFree(h, 0, p.HeapAlloc(h, 0, 10))
    except pa.WinError:
        pass
    p.write(int(h) + 0x10, sig)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, x)


def test_termination_on_corruption_raises_heap_exception(raw):
    """With HeapEnableTerminationOnCorruption, where Windows would end the process, a call that
    finds the heap corrupted raises HeapException(STATUS_HEAP_CORRUPTION) instead of WinError;
    without it the same call is a plain WinError. HeapValidate still answers False."""
    p = raw
    plain = p.HeapCreate(0, 0, 0, debug=TAIL)
    h = p.HeapCreate(0, 0, 0, debug=TAIL)
    assert p.HeapSetInformation(h, pa.HeapEnableTerminationOnCorruption)
    x, y = p.HeapAlloc(h, 0, 30), p.HeapAlloc(plain, 0, 30)
    p.write(x + 30, b"overrun")
    p.write(y + 30, b"overrun")
    with pytest.raises(pa.WinError) as err:
        p.HeapFree(plain, 0, y)
    assert not isinstance(err.value, pa.HeapException)
    assert p.HeapValidate(h) is False
    for call, op in ((lambda: p.HeapFree(h, 0, x), "HeapFree"),
                     (lambda: p.HeapReAlloc(h, 0, x, 300), "HeapReAlloc")):
        with pytest.raises(pa.HeapException) as exc:
            call()
        assert exc.value.code == 0xC0000374 and exc.value.operation == op
    assert p.HeapSize(h, 0, x) == 30  # no check, no corruption found (as on Windows)
    with pytest.raises(pa.WinError):  # a wild pointer is misuse, not corruption
        p.HeapFree(h, 0, x + 16)
    p.write(x + 30, b"\xab" * 7)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, x)


def test_termination_on_corruption_for_every_heap_covers_later_heaps_and_large_blocks(raw):
    p = raw
    assert p.HeapSetInformation(None, pa.HeapEnableTerminationOnCorruption)
    h = p.HeapCreate(0, 0, 0)  # created afterwards: covered too
    big, other = p.HeapAlloc(h, 0, 2 << 20), p.HeapAlloc(h, 0, 2 << 20)
    link = p.read(big - 48, 8)
    p.write(big - 48, b"\xff" * 8)  # its back link (to other, allocated later)
    assert p.HeapValidate(h) is False
    with pytest.raises(pa.HeapException) as exc:
        p.HeapFree(h, 0, big)
    assert exc.value.code == 0xC0000374 and exc.value.address == big
    p.write(big - 48, link)
    assert p.HeapValidate(h) and p.HeapFree(h, 0, big) and p.HeapFree(h, 0, other)


_CHILD_PRELUDE = """
import pyalloc as pa
p = pa.Process(heap_guard=False)
"""


def run_child(code: str, timeout: float = 20):
    """Runs code in a fresh interpreter; (returncode or None on timeout, stdout)."""
    try:
        r = subprocess.run([sys.executable, "-c", _CHILD_PRELUDE + textwrap.dedent(code)],
                           capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout
    except subprocess.TimeoutExpired:
        return None, ""


def test_child_harness_reports_success():
    assert run_child("print(p.HeapValidate(p.HeapCreate(0, 0, 0)))") == (0, "True\n")


def test_walk_of_corrupt_block_terminates():
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        x = p.HeapAlloc(h, 0, 100)
        y = p.HeapAlloc(h, 0, 100)
        p.write(x - 1, bytes([p.read(x - 1, 1)[0] ^ 0x5A]))
        print(p.HeapValidate(h))
        try:
            print(len(list(p.HeapWalk(h))) < 100)
        except pa.WinError:
            print(True)
        """, timeout=10)
    assert (rc, out) == (0, "False\nTrue\n")


def test_lfh_subsegment_header_and_bitmap_are_not_writable_from_python():
    """A subsegment's header fields and its free bitmap (after its first 64 bytes) are refused
    to Python even with heap_guard=False, in a fresh interpreter as before. What HeapWalk and
    HeapValidate do when native code overwrites them: tests/c/test_heap.c,
    corrupt_lfh_subsegment_header_is_noticed."""
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        xs = [p.HeapAlloc(h, 0, 48) for _ in range(40)]
        sub = xs[-1] & ~0xFFFF
        for at in (sub, sub + 64):
            try:
                p.write(at, b"\\xff" * 64)
            except pa.AccessViolation as e:
                print(e.address == at)
        print(p.HeapValidate(h))
        ys = [p.HeapAlloc(h, 0, 48) for _ in range(200)]
        print(len(set(xs) | set(ys)) == 240, p.HeapValidate(h))
        """)
    assert (rc, out) == (0, "True\nTrue\nTrue\nTrue True\n")


def test_lfh_use_after_free_write_does_not_crash():
    # (xs[5] comes from the back end: the bucket activates at the 17th block. The write
    # overwrites the free block's list link; its neighbours are then freed without merging.)
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        xs = [p.HeapAlloc(h, 0, 48) for _ in range(40)]
        p.HeapFree(h, 0, xs[5])
        p.write(xs[5], b"\\xff" * 8)
        print(p.HeapValidate(h))
        for x in xs[6:]:
            p.HeapFree(h, 0, x)
        print("ok")
        """)
    assert (rc, out) == (0, "False\nok\n")


def test_corrupt_page_heap_link_is_detected():
    """A page-heap block's list links (in its header page, the reservation's base) are checked
    before they are followed: HeapValidate False, HeapFree refused, no crash at teardown."""
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
        xs = [p.HeapAlloc(h, 0, 100) for _ in range(3)]
        base = xs[1] & ~0xFFFF
        p.write(base + 16, b"\\xff" * 16)  # next and prev
        print(p.HeapValidate(h))
        try:
            p.HeapFree(h, 0, xs[1])
        except pa.WinError:
            print("refused")
        try:
            print(len(list(p.HeapWalk(h))) < 100)
        except pa.WinError:
            print(True)
        """)
    assert (rc, out) == (0, "False\nrefused\nTrue\n")


def test_validate_sees_a_write_into_a_freed_lfh_slot(raw):
    """A freed LFH slot waits in the thread's cache, linked through its first word: HeapValidate
    checks the calling thread's cache, so overwriting that link is noticed. (Allocating after
    such a write: see test_alloc_after_a_write_into_a_freed_lfh_slot_is_refused.)"""
    p = raw
    h, xs = lfh_heap(p)
    p.HeapFree(h, 0, xs[30])
    assert p.HeapValidate(h)
    link = p.read(xs[30], 8)
    p.write(xs[30], b"\xff" * 8)
    assert p.HeapValidate(h) is False
    p.write(xs[30], link)
    assert p.HeapValidate(h)


# Garbage over a freed LFH slot's link (its first 8 user bytes): each is caught by the link's
# check value (kept in the slot's header) before the link is followed.
LINK_GARBAGE = {
    "ones": (0, b"\xff" * 8),
    "zeros": (0, b"\0" * 8),
    "small": (0, b"\x01"),
    "high-half": (4, b"\x01\x00"),
    "pattern": (0, b"\xa5" * 8),
}


@pytest.mark.parametrize("kind", sorted(LINK_GARBAGE))
def test_alloc_after_a_write_into_a_freed_lfh_slot_is_refused(kind):
    """A freed LFH slot at the head of the thread's cache whose link was overwritten: the next
    allocation of its size fails with STATUS_HEAP_CORRUPTION instead of following the link
    (the slots behind it are lost); the heap goes on serving that size, and HeapValidate
    passes again once the bad link is gone. With termination on corruption the allocation
    raises HeapException(0xC0000374)."""
    offset, garbage = LINK_GARBAGE[kind]
    rc, out = run_child(f"""
        for fatal in (False, True):
            h = p.HeapCreate(0, 0, 0)
            if fatal:
                p.HeapSetInformation(h, pa.HeapEnableTerminationOnCorruption)
            xs = [p.HeapAlloc(h, 0, 48) for _ in range(40)]
            p.HeapFree(h, 0, xs[30])
            p.write(xs[30] + {offset}, {garbage!r})
            try:
                p.HeapAlloc(h, 0, 48)
                print("served")
            except pa.HeapException as e:
                print("exception", hex(e.code), e.operation)
            except pa.WinError as e:
                print("refused")
            ys = [p.HeapAlloc(h, 0, 48) for _ in range(300)]
            print(p.HeapValidate(h), len(set(ys)) == 300)
            for y in ys + xs[:30] + xs[31:]:
                p.HeapFree(h, 0, y)
            print(p.HeapValidate(h))
        """)
    assert rc == 0, out
    lines = out.splitlines()
    assert lines[0] == "refused" and lines[1:3] == ["True True", "True"], out
    assert lines[3] == "exception 0xc0000374 HeapAlloc" and lines[4:6] == ["True True", "True"], out


def test_corrupted_link_deep_in_the_cache_is_caught_by_the_flush():
    """A bin that overflows hands its newest slots on, walking their links: a link overwritten
    in a slot freed earlier is caught there (HeapFree reports STATUS_HEAP_CORRUPTION, the block
    itself is freed), not followed; the heap goes on serving. (A bin of 64-byte slots holds
    32 of them, 2 KiB: the 20 freed first stay in it, and the overflow hands on the newest 16,
    which walks past the one written 15 frees later.)"""
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        xs = [p.HeapAlloc(h, 0, 48) for _ in range(400)]
        ys = xs[100:]
        for y in ys[:20]:
            p.HeapFree(h, 0, y)
        p.write(ys[17], b"\\xff" * 8)
        failed = 0
        for y in ys[20:200]:
            try:
                p.HeapFree(h, 0, y)
            except pa.WinError:
                failed += 1
        print(failed >= 1)
        zs = [p.HeapAlloc(h, 0, 48) for _ in range(300)]
        print(len(set(zs)) == 300)
        for z in zs:
            p.HeapFree(h, 0, z)
        print(p.HeapValidate(h))
        """)
    assert (rc, out) == (0, "True\nTrue\nTrue\n")


def test_corrupted_link_on_a_remote_list_is_caught():
    """Slots a full bin hands on wait on the bucket's remote list, still linked through their
    first word: a link overwritten there is caught when a thread takes the list (the allocation
    that takes it fails with STATUS_HEAP_CORRUPTION), not followed."""
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        xs = [p.HeapAlloc(h, 0, 48) for _ in range(400)]
        ys = xs[100:]
        for y in ys[:33]:  # the 33rd overflows the bin (32, 2 KiB): its newest 17 go remote
            p.HeapFree(h, 0, y)
        p.write(ys[20], b"\\xa5" * 8)
        failed, zs = 0, []
        for _ in range(200):
            try:
                zs.append(p.HeapAlloc(h, 0, 48))
            except pa.WinError:
                failed += 1
        print(failed, len(set(zs)) == len(zs))
        for z in zs:
            p.HeapFree(h, 0, z)
        print(p.HeapValidate(h))
        """)
    assert (rc, out) == (0, "1 True\nTrue\n")


def test_corrupt_large_block_link_does_not_crash_validate():
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        big = p.HeapAlloc(h, 0, 2 << 20)
        p.write(big - 56, b"\\xff" * 8)
        print(p.HeapValidate(h))
        """)
    assert (rc, out) == (0, "False\n")


def test_corrupt_large_block_back_link_is_detected():
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        big = p.HeapAlloc(h, 0, 2 << 20)
        p.write(big - 48, b"\\xff" * 8)
        print(p.HeapValidate(h))
        try:
            p.HeapFree(h, 0, big)
        except pa.WinError:
            pass
        print("ok")
        """)
    assert (rc, out) == (0, "False\nok\n")


def test_alloc_after_detected_overrun_does_not_crash():
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0)
        x = p.HeapAlloc(h, 0, 70000)
        p.write(x + 70000, bytes(8))
        print(p.HeapValidate(h))
        for n in (0, 16, 48, 100, 1000, 70000, 3 << 20):
            try:
                p.HeapAlloc(h, 0, n)
            except pa.WinError:
                pass
        print("ok")
        """)
    assert (rc, out) == (0, "False\nok\n")


def test_free_next_to_a_corrupt_block_does_not_crash():
    rc, out = run_child("""
        h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_TAIL_CHECK | pa.PA_HEAP_DEBUG_FREE_CHECK)
        xs = [p.HeapAlloc(h, 0, 100 + 16 * i) for i in range(6)]
        p.write(xs[3] - 8, bytes(8))
        print(p.HeapValidate(h))
        for i in (0, 1, 2, 4, 5):
            try:
                p.HeapFree(h, 0, xs[i])
            except pa.WinError:
                pass
        print("ok")
        """)
    assert (rc, out) == (0, "False\nok\n")


def test_corrupt_size_field_is_detected(raw):
    p = raw
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    extra = struct.unpack("<I", p.read(x - 8, 4))[0]
    p.write(x - 8, struct.pack("<I", extra ^ 0x40))
    assert p.HeapValidate(h, 0, x) is False or p.HeapSize(h, 0, x) == 100


# ---- Heap.stats() ------------------------------------------------------------------------------


def check_stats(p, h, live: dict):
    s = h.stats()
    assert s["busy_blocks"] == len(live)
    assert s["busy_bytes"] == sum(live.values())
    held = s["busy_bytes"] + s["free_bytes"] + s["spare_committed"]
    assert s["overhead"] == s["committed"] - held
    assert s["committed"] <= s["reserved"]
    assert s["largest_free"] <= s["free_bytes"]
    walk = list(p.HeapWalk(h))
    assert s["segments"] == sum(1 for e in walk if e.wFlags == REGION)
    outside = sum(1 for e in walk if e.wFlags & BUSY and e.iRegionIndex == 64)
    if s["debug"] & pa.PA_HEAP_DEBUG_PAGE_HEAP:  # page-heap blocks are walked there too
        assert s["large_blocks"] <= outside
    else:
        assert s["large_blocks"] == outside
    assert s["free_blocks"] >= sum(1 for e in walk if e.wFlags == 0 and e.iRegionIndex == 0)
    assert s["spare_committed"] == lfh_spare_bytes(walk)
    assert len(s["bucket_busy"]) == 128
    return s


def test_stats_follow_the_blocks(p):
    h = p.HeapCreate(0, 0, 0)
    s = check_stats(p, h, {})
    assert s["busy_blocks"] == 0 and s["committed"] == 0x2000 and s["reserved"] == GRAN
    assert s["lfh_active"] == 0 and s["debug"] == 0 and s["large_blocks"] == 0
    live = {}
    for n in [0, 1, 100, 1000, 48, 48, 70000, 3 << 20] + [32] * 40:
        live[p.HeapAlloc(h, 0, n)] = n
        check_stats(p, h, live)
    s = check_stats(p, h, live)
    assert s["large_blocks"] == 1 and s["lfh_active"] >= 1
    assert sum(s["bucket_busy"]) >= 18  # the LFH serves most of the 32-byte blocks
    x = next(a for a, n in live.items() if n == 100)
    y = p.HeapReAlloc(h, 0, x, 5000)
    del live[x]
    live[y] = 5000
    check_stats(p, h, live)
    for a in list(live):
        p.HeapFree(h, 0, a)
        del live[a]
        check_stats(p, h, live)
    s = h.stats()
    assert s["busy_blocks"] == 0 and s["busy_bytes"] == 0 and sum(s["bucket_busy"]) == 0
    assert s["large_blocks"] == 0


def test_stats_show_large_blocks_kept_in_memory(p):
    """A program that writes its large blocks through gets them back cleared in place (no page
    faults), counted in cached_large_resident; each still reads as zero (fact 18), and
    HeapCompact lets them go."""
    h = p.HeapCreate(0, 0, 0)
    keep = p.HeapAlloc(h, 0, 24 << 20)  # live large bytes: what may be kept is a quarter
    n = 2 << 20
    assert h.stats()["cached_large_resident"] == 0
    for i in range(4):
        x = p.HeapAlloc(h, 0, n)
        assert p.read(x, n) == bytes(n)
        p.write(x, bytes([0x5A + i]) * n)
        p.HeapFree(h, 0, x)
        s = h.stats()
        assert 0 < s["cached_large_resident"] <= (24 << 20) // 4 + n
        assert s["cached_large_resident"] <= s["cached_large_bytes"]
    p.HeapFree(h, 0, keep)
    p.HeapCompact(h, 0)
    s = h.stats()
    assert s["cached_large_resident"] == 0 and s["cached_large_bytes"] == 0


def test_stats_after_lfh_in_place_realloc(p):
    h, xs = lfh_heap(p, 40)
    live = dict.fromkeys(xs, 40)
    x = xs[-1]
    assert p.HeapReAlloc(h, 0, x, 35) == x  # shrinks inside its slot
    live[x] = 35
    assert h.stats()["busy_bytes"] == sum(live.values())


def lfh_served(p, h, address: int) -> bool:
    """Whether HeapWalk shows the busy block at address inside the LFH (region index > 0)."""
    (e,) = [e for e in p.HeapWalk(h) if e.lpData == address and e.wFlags & pa.PROCESS_HEAP_ENTRY_BUSY]
    return e.iRegionIndex != 0


@pytest.mark.parametrize("new, active, in_lfh", [(100, True, True), (100, False, False),
                                                 (512, True, True), (600, True, False), (20, True, True)])
def test_moving_realloc_of_an_lfh_block(p, new, active, in_lfh):
    """A small LFH block that must move (fact 35) lands in the LFH when the new size's bucket
    is active and the size is at most 512 bytes (PA_LFH_REALLOC_MAX), else in the back end;
    either way the contents move with it and the old slot is free."""
    h, xs = lfh_heap(p, 40)
    if active:
        for _ in range(20):
            p.HeapAlloc(h, 0, new)
    x = xs[-1]
    p.write(x, bytes(range(40)))
    busy = h.stats()["busy_blocks"]
    y = p.HeapReAlloc(h, pa.HEAP_ZERO_MEMORY, x, new)
    assert y != x
    assert lfh_served(p, h, y) == in_lfh
    assert p.read(y, min(new, 40)) == bytes(range(min(new, 40)))
    assert p.read(y + 40, max(new - 40, 0)) == bytes(max(new - 40, 0))
    assert p.HeapSize(h, 0, y) == new
    assert h.stats()["busy_blocks"] == busy
    with winerror(pa.ERROR_INVALID_PARAMETER, p):
        p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


@pytest.mark.parametrize("new", [20, 100, 512])
def test_moving_realloc_takes_the_slot_freed_last(p, new):
    """Without flags, a small LFH block that must move goes into the slot of the new size that
    this thread freed last (HeapReAlloc's lock-free path: the thread's bin, LIFO), with its
    contents, HeapSize exact and the old slot free; a shrink inside the slot stays (fact 35)."""
    h, xs = lfh_heap(p, 40)
    ys = [p.HeapAlloc(h, 0, new) for _ in range(40)]  # the last ones from the LFH (fact 60)
    for y in ys[-5:]:
        p.HeapFree(h, 0, y)
    x = xs[-1]
    p.write(x, bytes(range(40)))
    busy = h.stats()["busy_blocks"]
    z = p.HeapReAlloc(h, 0, x, new)
    assert z == ys[-1] and lfh_served(p, h, z)
    assert p.read(z, min(new, 40)) == bytes(range(min(new, 40)))
    assert p.HeapSize(h, 0, z) == new
    assert h.stats()["busy_blocks"] == busy
    with winerror(pa.ERROR_INVALID_PARAMETER, p):
        p.HeapFree(h, 0, x)
    # The freed slot is the next one of its size handed out.
    assert p.HeapAlloc(h, 0, 40) == x
    assert p.HeapReAlloc(h, 0, z, new - 1 if new % 16 != 1 else new) == z
    assert p.HeapValidate(h)


@pytest.mark.parametrize("flags", [0, pa.HEAP_ZERO_MEMORY])
def test_moving_realloc_of_a_large_block_keeps_every_byte(p, flags):
    """A large block that grows past its commit moves (fact 34); its pages move rather than
    being copied (pa_mm_move_pages), so every byte is checked, the new tail reads as zero with
    HEAP_ZERO_MEMORY, and the old block, reused from the cache, reads as zero (fact 18)."""
    h = p.HeapCreate(0, 0, 0)
    old, new = (2 << 20) + 123, (3 << 20) + 5
    data = random.Random(old).randbytes(old)
    x = p.HeapAlloc(h, 0, old)
    p.write(x, data)
    y = p.HeapReAlloc(h, flags, x, new)
    assert y != x
    assert p.read(y, old) == data
    if flags:
        assert p.read(y + old, new - old) == bytes(new - old)
    assert p.HeapSize(h, 0, y) == new
    with winerror(pa.ERROR_INVALID_PARAMETER, p):
        p.HeapFree(h, 0, x)
    z = p.HeapAlloc(h, 0, old)
    assert p.read(z, old) == bytes(old)
    p.write(y + new - 1, b"\x01")  # the moved block is still writable to its end
    assert p.HeapValidate(h)


def test_a_large_block_moved_to_grow_has_room_to_grow_in_place(p):
    """A large block that HeapReAlloc moved to make it bigger gets half as much again committed
    after it, so the next growth within that stays in place, even with
    HEAP_REALLOC_IN_PLACE_ONLY (fact 33: in place within the commit); a block from HeapAlloc
    has no such room, and a shrink still gives the room back (fact 33)."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 2 << 20)
    with winerror(8, p):
        p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, (2 << 20) + 8192)
    y = p.HeapReAlloc(h, 0, x, 3 << 20)
    assert y != x
    p.write(y + (3 << 20) - 4, b"grow")
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, y, 4 << 20) == y
    assert p.HeapSize(h, 0, y) == 4 << 20
    assert p.read(y + (3 << 20) - 4, 4) == b"grow"
    assert p.read(y + (3 << 20), 1 << 20) == bytes(1 << 20)
    # a grow in place keeps the rest of the room: 4.5 MiB is still in place
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, y, 9 << 19) == y
    assert p.read(y + (4 << 20), 1 << 19) == bytes(1 << 19)
    p.write(y + (4 << 20) - 1, b"\x01")
    assert p.HeapReAlloc(h, 0, y, 3 << 20) == y  # shrinks in place, giving the room back
    with winerror(8, p):
        p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, y, (3 << 20) + 8192)
    assert p.HeapValidate(h)


def test_a_buffer_built_again_grows_in_the_pages_of_the_last_one(p):
    """A large block freed after the program wrote it stays in memory, cleared (fact 18: it
    reads as zero when reused); a buffer that grows by HeapReAlloc moves into it and grows in
    place through the pages it kept, without new page faults (as a program that builds a big
    buffer again and again needs: bench python3 growth). Memory the heap commits later is
    paid for with those pages, so that they never raise the peak."""
    h = p.HeapCreate(0, 0, 0)
    a = p.HeapAlloc(h, 0, 2 << 20)
    p.write(a, b"A" * (2 << 20))
    b = p.HeapAlloc(h, 0, 6 << 20)
    p.write(b, b"\xee" * (6 << 20))
    p.HeapFree(h, 0, b)
    kept = h.stats()["cached_large_resident"]
    assert kept >= (6 << 20) - 4096
    y = p.HeapReAlloc(h, 0, a, 3 << 20)
    assert y == b
    assert h.stats()["cached_large_resident"] == 0
    assert p.read(y, 2 << 20) == b"A" * (2 << 20)
    assert p.read(y + (2 << 20), 1 << 20) == bytes(1 << 20)
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, y, 6 << 20) == y
    assert p.read(y + (3 << 20), 3 << 20) == bytes(3 << 20)
    p.write(y, b"\xee" * (6 << 20))
    p.HeapFree(h, 0, y)
    kept = h.stats()["cached_large_resident"]
    assert kept >= (6 << 20) - 4096
    committed = h.stats()["committed"]
    blocks = [p.HeapAlloc(h, 0, 512 << 10) for _ in range(4)]  # back-end blocks: new commit
    s = h.stats()
    assert s["committed"] > committed
    assert s["cached_large_resident"] <= max(0, kept - (s["committed"] - committed))
    for x in blocks:
        p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


def test_stats_of_debug_heaps(p):
    for debug in (TAIL, FREE, TAIL | FREE, pa.PA_HEAP_DEBUG_VALIDATE_ALL,
                  pa.PA_HEAP_DEBUG_PAGE_HEAP):
        h = p.HeapCreate(0, 0, 0, debug=debug)
        live = {p.HeapAlloc(h, 0, n): n for n in (1, 17, 100, 5000)}
        s = check_stats(p, h, live)
        assert s["debug"] == debug
        for a in live:
            p.HeapFree(h, 0, a)
        assert h.stats()["busy_blocks"] == 0


def test_stats_of_a_destroyed_or_closed_heap():
    p = pa.Process()
    h = p.HeapCreate(0, 0, 0)
    g = p.HeapCreate(0, 0, 0)
    p.HeapDestroy(h)
    with winerror(6, p):
        h.stats()
    p.close()
    with pytest.raises(ValueError):
        g.stats()


# ---- reprs, identity ----------------------------------------------------------------------------


def test_heap_object(p):
    h = p.HeapCreate(0, 0, 0)
    assert isinstance(h, pa.Heap)
    assert int(h) == h.__index__() and hex(h) == hex(int(h))
    assert h.process is p and not h.destroyed
    assert p.GetProcessHeap() == p.GetProcessHeap()
    assert hash(p.GetProcessHeap()) == hash(p.GetProcessHeap())
    assert p.GetProcessHeap() != h
    assert h in p.GetProcessHeaps()
    assert len({h, p.GetProcessHeaps()[-1]}) == 1
    other = pa.Process()
    try:
        assert other.GetProcessHeap() != p.GetProcessHeap()  # another process's heap
    finally:
        other.close()
    with pytest.raises(TypeError):
        pa.Heap()
    x = p.HeapAlloc(int(h), 0, 10)  # plain ints work as handles
    assert p.HeapSize(h, 0, x) == 10


def test_reprs(p):
    h = p.HeapCreate(0, 0, 0)
    p.HeapAlloc(h, 0, 3000)
    r = repr(h)
    assert r.startswith(f"<pyalloc.Heap 0x{int(h):x}: 1 busy blocks, 2 KiB busy")
    assert "KiB committed" in r and "KiB reserved" in r
    e = next(iter(p.HeapWalk(h)))
    assert isinstance(e, pa.PROCESS_HEAP_ENTRY)
    assert repr(e).startswith("PROCESS_HEAP_ENTRY(lpData=0x")
    assert "wFlags=0x1" in repr(e) and "dwCommittedSize=0x2000" in repr(e)
    assert e.wFlags == REGION and e.lpData == int(h)
    p.HeapDestroy(h)
    assert repr(h) == f"<pyalloc.Heap 0x{int(h):x} (destroyed)>"
    g = p.HeapCreate(0, 0, 0)
    p.close()
    assert repr(g) == f"<pyalloc.Heap 0x{int(g):x} (destroyed)>"


def test_exceptions_pickle():
    for exc in (pa.HeapException(0xC0000017, 0x10000, "HeapAlloc"), pa.WinMemoryError(8),
                pa.AccessViolation(0x1234, "write")):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    assert pickle.loads(pickle.dumps(pa.HeapException(0xC0000017, 5, "x"))).code == 0xC0000017


# ---- argument handling ----------------------------------------------------------------------------


def test_arguments(p):
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(heap=h, flags=0, size=10)
    assert p.HeapSize(h, 0, address=x) == 10
    assert p.HeapValidate(h, address=x) and p.HeapValidate(heap=h)
    with pytest.raises(TypeError):
        p.HeapAlloc(h, 0)
    with pytest.raises(TypeError):
        p.HeapAlloc(h, 0, "10")
    with pytest.raises(TypeError):
        p.HeapAlloc(h, 0, 10, 5)
    with pytest.raises(TypeError):
        p.HeapFree(h, 0)
    with pytest.raises((OverflowError, ValueError)):
        p.HeapAlloc(h, 0, -1)
    with pytest.raises((OverflowError, ValueError)):
        p.HeapAlloc(h, 0, 2**64)
    with pytest.raises(TypeError):
        p.HeapCreate(0, 0)
    with pytest.raises(TypeError):
        p.HeapCreate(0, 0, 0, 0)  # debug and lfh are keyword-only
    assert p.HeapFree(h, 0, None) is True  # NULL: nothing to do
    assert p.HeapFree(h, 0, 0) is True


# ---- closing a Process with heaps ---------------------------------------------------------------


def test_close_process_with_heaps():
    p = pa.Process()
    heaps = [p.HeapCreate(0, 0, 0) for _ in range(3)]
    for h in heaps:
        for n in (10, 1000, 48, 2 << 20):
            p.HeapAlloc(h, 0, n)
    ph = p.GetProcessHeap()
    p.HeapAlloc(ph, 0, 100)
    p.close()
    assert p.closed
    for call in (lambda: p.HeapAlloc(heaps[0], 0, 10), lambda: p.HeapCreate(0, 0, 0),
                 lambda: p.GetProcessHeap(), lambda: p.HeapWalk(ph),
                 lambda: p.HeapValidate(heaps[1]), lambda: p.HeapDestroy(heaps[2])):
        with pytest.raises(ValueError):
            call()
    p.close()  # twice is fine


def test_dropping_a_process_with_heaps_and_views():
    p = pa.Process()
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    mv = p.view(x, 100)
    with pytest.raises(BufferError):
        p.close()
    del p, h  # the view keeps the process alive
    gc.collect()
    mv[0] = 1
    mv.release()
    gc.collect()


def test_process_context_manager_with_heaps():
    with pa.Process() as p:
        h = p.HeapCreate(0, 0, 0)
        p.HeapAlloc(h, 0, 10)
    assert p.closed


def test_heaps_of_one_process_are_not_another_s(p, new_process):
    q = new_process()
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    with winerror(6, q):
        q.HeapAlloc(int(h), 0, 10)
    with winerror(6, q):
        q.HeapFree(int(h), 0, x)
    assert not q.HeapValidate(int(h))
    assert p.HeapSize(h, 0, x) == 100


# ---- threads ------------------------------------------------------------------------------------


def test_threads_share_one_heap(p):
    h = p.HeapCreate(0, 0, 0)
    errors = []

    def worker(seed):
        try:
            import random
            rnd = random.Random(seed)
            live = {}
            for i in range(1500):
                if live and rnd.random() < 0.45:
                    a = rnd.choice(list(live))
                    n, tag = live.pop(a)
                    assert p.HeapSize(h, 0, a) == n
                    assert p.read(a, n) == tag * n
                    if rnd.random() < 0.3:
                        m = rnd.randrange(0, 3000)
                        b = p.HeapReAlloc(h, 0, a, m)
                        assert p.read(b, min(n, m)) == tag * min(n, m)
                        p.write(b, tag * m)
                        live[b] = (m, tag)
                    else:
                        assert p.HeapFree(h, 0, a)
                else:
                    n = rnd.choice([0, 8, 16, 24, 48, 64, 100, 256, 1000, 5000, 70000])
                    a = p.HeapAlloc(h, rnd.choice([0, pa.HEAP_ZERO_MEMORY]), n)
                    tag = bytes([seed * 16 + i % 16])
                    p.write(a, tag * n)
                    live[a] = (n, tag)
            for a in live:
                assert p.HeapFree(h, 0, a)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert p.HeapValidate(h)
    s = h.stats()
    assert s["busy_blocks"] == 0
    assert s["lfh_active"] > 0


def test_threads_alloc_in_one_free_in_another(p):
    import queue
    h = p.HeapCreate(0, 0, 0)
    q: queue.Queue = queue.Queue(maxsize=64)
    errors = []

    def producer():
        for i in range(3000):
            n = 8 + (i * 37) % 500
            a = p.HeapAlloc(h, 0, n)
            p.write(a, bytes([i % 256]) * n)
            q.put((a, n, i % 256))
        q.put(None)

    def consumer():
        try:
            while (item := q.get()) is not None:
                a, n, v = item
                assert p.HeapSize(h, 0, a) == n and p.read(a, n) == bytes([v]) * n
                assert p.HeapFree(h, 0, a)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert p.HeapValidate(h) and h.stats()["busy_blocks"] == 0


def calls_wait_for_heap_unlock(p, h, calls):
    """Runs each call in its own Python thread while this thread holds HeapLock(h): none
    finishes (and this thread still runs: the interpreter is not stuck) until HeapUnlock."""
    p.HeapLock(h)
    done = []
    threads = [threading.Thread(target=lambda c=c: (c(), done.append(1))) for c in calls]
    try:
        for t in threads:
            t.start()
        threading.Event().wait(0.1)
        finished_early = len(done)
    finally:
        p.HeapUnlock(h)
    for t in threads:
        t.join(10)
    assert finished_early == 0
    assert len(done) == len(calls)


def test_heaplock_from_python_threads_does_not_hang(p):
    """While one Python thread holds HeapLock, other Python threads' heap calls, writes and
    views wait (with the GIL released) and proceed after HeapUnlock."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    calls_wait_for_heap_unlock(p, h, [
        lambda: p.HeapAlloc(h, 0, 10), lambda: p.write(x, b"z"), lambda: p.view(x, 4).release(),
        lambda: h.stats(), lambda: repr(h), lambda: p.HeapWalk(h), lambda: p.HeapValidate(h),
        lambda: p.HeapSize(h, 0, x), lambda: p.HeapCompact(h, 0)])
    assert p.read(x, 1) == b"z"


def test_crt_and_new_wait_while_a_python_thread_holds_the_process_heap_lock(new_process):
    # Found by fuzzing: malloc, free, new and close took the process heap's lock with the
    # GIL held, so the thread holding HeapLock never got back to HeapUnlock.
    p = new_process()
    x, y = p.malloc(8), p.operator_new(8)
    doomed = [p.new(ctypes.c_int)]
    p.delete(doomed[0])  # the block goes back when the object goes (with the GIL held)
    calls_wait_for_heap_unlock(p, p.GetProcessHeap(), [
        lambda: p.malloc(10), lambda: p.free(x), lambda: p.calloc(2, 3),
        lambda: p.operator_delete(y), lambda: p.delete(p.new(ctypes.c_int)),
        lambda: p._msize(p.realloc(None, 5)), doomed.clear])


@pytest.mark.parametrize("crt_debug", [False, True])
def test_crt_calls_wait_while_a_python_thread_holds_any_heap_lock(new_process, crt_debug):
    # Found by fuzzing: a CRT call given a pointer outside the process heap looks it up in
    # every heap, and spun on the lock of the one a Python thread held, with the GIL held.
    p = new_process(crt_debug=crt_debug)
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 40)

    def misuse():  # one thread: warning filters are process-wide
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pa.CrtReport)
            for call in (p._aligned_free, p.free, lambda a: p._aligned_msize(a, 16, 0)):
                with contextlib.suppress(pa.CrtError):
                    call(x)

    calls_wait_for_heap_unlock(p, h, [misuse])


def thread_catching(exc_type, call, *args):
    """Starts a thread running call(*args); returns it and the list that gets the exc_type
    exception the call raises, if it raises one."""
    caught = []

    def body():
        try:
            call(*args)
        except exc_type as e:
            caught.append(e)

    t = threading.Thread(target=body)
    t.start()
    return t, caught


def test_a_heap_lock_whose_holder_exited_raises_instead_of_hanging():
    # Found by fuzzing: a later thread with the dead holder's ident passed for the holder and
    # blocked on the heap's lock with the GIL held. On Windows the lock stays held for good and
    # its waiters wait forever; here they raise, and so does close (the Process stays open).
    p = pa.Process(address_space=1 << 24)
    h = p.HeapCreate(0, 0, 0)
    t = threading.Thread(target=lambda: p.HeapLock(h))
    t.start()
    t.join()
    t, errors = thread_catching(RuntimeError, p.HeapAlloc, h, 0, 8)  # likely the same ident
    t.join(10)
    assert not t.is_alive() and "exited without HeapUnlock" in str(errors[0])
    with pytest.raises(RuntimeError, match="exited without HeapUnlock"):
        p.malloc(8)
    with pytest.raises(RuntimeError, match="exited without HeapUnlock"):
        p.close()
    assert not p.closed


def test_a_new_handler_that_lets_a_thread_lock_the_heap_does_not_hang(new_process):
    p = new_process(commit_limit=1 << 20)
    h = p.GetProcessHeap()
    held = threading.Event()

    def locker():
        p.HeapLock(h)
        held.set()
        threading.Event().wait(0.2)
        p.HeapUnlock(h)

    threads = []

    def handler(size):  # the first call asks for a retry while the thread holds the lock
        if threads:
            return False
        threads.append(threading.Thread(target=locker))
        threads[0].start()
        held.wait(5)
        return True

    p.set_new_handler(handler)
    with pytest.raises(pa.BadAlloc):
        p.operator_new(1 << 30)
    threads[0].join(10)


def test_closing_a_process_waits_while_a_python_thread_holds_a_heap_lock(new_process):
    p = new_process()
    h = p.HeapCreate(0, 0, 0)

    def locker():
        p.HeapLock(h)
        threading.Event().wait(0.2)
        p.HeapUnlock(h)

    t = threading.Thread(target=locker)
    t.start()
    threading.Event().wait(0.05)
    p.close()
    t.join(10)
    assert p.closed


def test_closing_a_process_while_a_thread_waits_for_its_heap():
    p = pa.Process()
    h = p.HeapCreate(0, 0, 0)
    p.HeapLock(h)
    t, result = thread_catching(ValueError, p.HeapAlloc, h, 0, 10)
    threading.Event().wait(0.05)
    p.close()
    t.join(10)
    assert len(result) == 1 and "closed" in str(result[0])


# ---- the module-level functions act on the current process ---------------------------------------


def test_module_level_functions():
    cur = pa.current_process()
    pa.GetProcessHeap()  # created on first use, then lives as long as the process
    gc.collect()
    before = cur.stats()
    h = pa.HeapCreate(0, 0, 0)
    assert h.process is cur and cur.is_current
    x = pa.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, 100)
    assert cur.read(x, 100) == bytes(100)
    assert pa.HeapSize(h, 0, x) == 100 and pa.HeapValidate(h)
    x = pa.HeapReAlloc(h, 0, x, 200)
    assert [e.cbData for e in pa.HeapWalk(h) if e.wFlags & BUSY] == [200]
    assert pa.HeapLock(h) and pa.HeapUnlock(h)
    assert pa.HeapQueryInformation(h, pa.HeapCompatibilityInformation) == 0
    assert pa.HeapSetInformation(h, pa.HeapCompatibilityInformation, 2)
    assert pa.HeapCompact(h, 0) > 0
    assert pa.GetProcessHeap() == pa.GetProcessHeaps()[0]
    assert h in pa.GetProcessHeaps()
    assert pa.HeapFree(h, 0, x)
    assert pa.HeapDestroy(h)
    with winerror(6):
        pa.HeapDestroy(pa.GetProcessHeap())
    gc.collect()
    after = cur.stats()
    for key in ("reserved", "committed", "allocations", "pins"):
        assert after[key] == before[key], key
