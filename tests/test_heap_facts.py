"""The Windows heap facts of /work/shared/reference/heap.md sections 1.1-1.11, through the Python
API: one test (or parametrized group) per fact, named after its number, citing the source key.

Notation as in heap.md: P = 8 (x64), A = 0x8000 * P = 0x40000. Bytes of heap metadata (the heap
header, fill patterns, tail bytes) are read with Process.read, which may read anything readable;
Process.write reaches only busy blocks unless the process has heap_guard=False.

Where Windows returns NULL/FALSE, pyalloc raises WinError (a WinMemoryError, also a MemoryError,
for ERROR_NOT_ENOUGH_MEMORY) with GetLastError() set to the same code; HeapSize's (SIZE_T)-1 is a
WinError too. Where native Windows crashes (fact 14: wild pointers) or is undefined (fact 15:
double free), pyalloc's contract (pyalloc.h, layer 3) is a graceful WinError 87 and an intact
heap: those tests pin pyalloc's contract and say so.

Facts without a test here, and why:
  12 is checked with 11, 26 and 27 (the last error after an out-of-memory failure);
  13, 22, 31, 37, 47, 48 do not exist in heap.md;
  24 is Wine's internal switch ([W]); the native bracket of fact 23 is tested instead;
  38 needs GlobalAlloc (not part of pyalloc): its Python analogue (a pointer into a block is not a
     block) is tested;
  51 needs GlobalAlloc; the part that applies (no MOVEABLE/DDESHARE bits in any walk) is tested
     with 50 and 53;
  52 is RtlWalkHeap's encoding, which the Python API does not expose (HeapWalk's is tested);
  56 is checked at the C level (tests/c/test_heap.c); from Python, a heap locked by another
     Python thread is waited for whatever serves the call.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time

import pytest

import pyalloc as pa
from conftest import GRAN, PAGE, lfh_spare_entry, winerror

P = 8
A = 0x8000 * P  # 0x40000
BUSY = pa.PROCESS_HEAP_ENTRY_BUSY
REGION = pa.PROCESS_HEAP_REGION
UNCOMMITTED = pa.PROCESS_HEAP_UNCOMMITTED_RANGE
COMPAT = pa.HeapCompatibilityInformation
NO_MEMORY = 8
HEAP_PAGE_ALLOCS = 0x01000000
HEAP_VALIDATE_ALL = 0x20000000
STATUS_NO_MEMORY = 0xC0000017


@pytest.fixture
def p():
    """A fresh process with the default (64 GiB) address space: room for large blocks."""
    proc = pa.Process()
    yield proc
    proc.close()


@pytest.fixture
def raw():
    """A process whose Python writes may touch heap metadata (heap_guard=False)."""
    proc = pa.Process(heap_guard=False)
    yield proc
    proc.close()


def walk(p, h) -> list:
    return list(p.HeapWalk(h))


def dword(p, address: int) -> int:
    return struct.unpack("<I", p.read(address, 4))[0]


def compat(p, h) -> int:
    return p.HeapQueryInformation(h, COMPAT)


def region_index(p, h, address: int) -> int:
    (e,) = [e for e in walk(p, h) if e.lpData == address and e.wFlags & BUSY]
    return e.iRegionIndex


# ---- 1.1 HeapCreate / HeapDestroy / GetProcessHeap(s) -------------------------------------------


@pytest.mark.parametrize("options, initial, maximum", [
    (0, 0, 0), (0, 0x1000, 0x10000), (pa.HEAP_NO_SERIALIZE, 0, 0), (0, A, 8 * A),
])
def test_fact01_handles_are_64k_aligned(p, options, initial, maximum):
    """Every HeapCreate handle is 64 KiB aligned, and it is the base of a committed, heap-owned
    allocation that VirtualQuery describes; W-KT test_HeapCreate."""
    h = p.HeapCreate(options, initial, maximum)
    assert int(h) % GRAN == 0
    mbi = p.VirtualQuery(int(h))
    assert mbi.AllocationBase == mbi.BaseAddress == int(h)
    assert mbi.State == pa.MEM_COMMIT and mbi.Type == pa.MEM_PRIVATE
    assert mbi.Protect == pa.PAGE_READWRITE
    (region,) = [r for r in p.regions() if r.base == int(h)]
    assert region.owner == pa.OWNER_HEAP and region.kind == "Heap"
    # The process heap too.
    assert int(p.GetProcessHeap()) % GRAN == 0


def test_fact02_process_heaps_count(p):
    """GetProcessHeaps: count <= 6 in a fresh process, +1 per HeapCreate, -1 per HeapDestroy,
    heaps[0] is the process heap; W-KT test_HeapCreate."""
    heaps = p.GetProcessHeaps()
    n0 = len(heaps)
    assert 1 <= n0 <= 6
    assert heaps[0] == p.GetProcessHeap()
    a = p.HeapCreate(0, 0, 0)
    assert len(p.GetProcessHeaps()) == n0 + 1
    b = p.HeapCreate(pa.HEAP_NO_SERIALIZE, 0, 0x10000)
    assert len(p.GetProcessHeaps()) == n0 + 2
    p.HeapDestroy(a)
    assert len(p.GetProcessHeaps()) == n0 + 1
    p.HeapDestroy(b)
    assert p.GetProcessHeaps() == heaps
    assert p.GetProcessHeaps()[0] == p.GetProcessHeap()


def test_fact03_new_heaps_are_appended_in_creation_order(p):
    """After two HeapCreates the handles are at heaps[n] and heaps[n+1]; W-KT test_HeapCreate."""
    n = len(p.GetProcessHeaps())
    a, b = p.HeapCreate(0, 0, 0), p.HeapCreate(0, 0, 0)
    heaps = p.GetProcessHeaps()
    assert [int(x) for x in heaps[n:]] == [int(a), int(b)]


def test_fact04_destroy_errors(p):
    """HeapDestroy: True; the process heap, a destroyed or a made-up handle -> error 6;
    W-KB HeapDestroy, W-NH RtlDestroyHeap."""
    with winerror(6, p):
        p.HeapDestroy(p.GetProcessHeap())
    with winerror(6, p):
        p.HeapDestroy(int(p.GetProcessHeap()))
    h = p.HeapCreate(0, 0, 0)
    handle = int(h)
    assert p.HeapDestroy(h) is True
    assert h.destroyed
    with winerror(6, p):
        p.HeapDestroy(h)
    with winerror(6, p):
        p.HeapDestroy(handle)
    with winerror(6, p):
        p.HeapDestroy(0x12340000)
    # A destroyed heap's handle is refused by everything, as a Heap or as an int.
    for handle in (h, int(h), 0x12340000):
        for call in (lambda: p.HeapAlloc(handle, 0, 10), lambda: p.HeapFree(handle, 0, 0x1000),
                     lambda: p.HeapSize(handle, 0, int(h) + 0x1000),
                     lambda: p.HeapReAlloc(handle, 0, int(h) + 0x1000, 10),
                     lambda: p.HeapWalk(handle), lambda: p.HeapLock(handle),
                     lambda: p.HeapCompact(handle, 0),
                     lambda: p.HeapQueryInformation(handle, COMPAT)):
            with winerror(6, p):
                call()
        if isinstance(handle, int):  # (a destroyed Heap object raises WinError 6 instead)
            assert p.HeapValidate(handle) is False
    # The process heap still works.
    ph = p.GetProcessHeap()
    p.HeapFree(ph, 0, p.HeapAlloc(ph, 0, 10))
    assert p.HeapValidate(ph)


@pytest.mark.parametrize("options, initial, maximum, flags, force", [
    (0, 0, 0, 0x1002, 0),
    (pa.HEAP_NO_SERIALIZE, 0, 0, 0x1003, 0x1),
    (0, 0x1000, 0x10000, 0x1000, 0),
])
def test_fact05_header_layout_and_flags(p, options, initial, maximum, flags, force):
    """0xFFEEFFEE at +0x10, flags at +0x70, force_flags at +0x74 (x64); W-KT test_heap_layout."""
    h = int(p.HeapCreate(options, initial, maximum))
    assert dword(p, h + 0x10) == 0xFFEEFFEE
    assert dword(p, h + 0x70) == flags
    assert dword(p, h + 0x74) == force
    assert dword(p, h + 0x14) in (0, flags & pa.HEAP_GROWABLE)


def test_fact05_process_heap_flags(p):
    """The process heap: flags HEAP_GROWABLE, force_flags 0; W-KT test_heap_layout."""
    h = int(p.GetProcessHeap())
    assert dword(p, h + 0x10) == 0xFFEEFFEE
    assert dword(p, h + 0x70) == pa.HEAP_GROWABLE
    assert dword(p, h + 0x74) == 0


@pytest.mark.parametrize("debug, bits, force", [
    (pa.PA_HEAP_DEBUG_TAIL_CHECK, pa.HEAP_TAIL_CHECKING_ENABLED, 0x20),
    (pa.PA_HEAP_DEBUG_FREE_CHECK, pa.HEAP_FREE_CHECKING_ENABLED, 0x40),
    (pa.PA_HEAP_DEBUG_PAGE_HEAP, HEAP_PAGE_ALLOCS, HEAP_PAGE_ALLOCS | 0x1002),
])
def test_fact06_debug_options_set_the_header_flags(p, debug, bits, force):
    """Debug options show in flags/force_flags as the GlobalFlag bits do (force keeps
    GROWABLE|PRIVATE only with page allocs); W-KT heap_flags_from_global_flag, W-NH
    heap_set_debug_flags."""
    h = p.HeapCreate(0, 0, 0, debug=debug)
    assert dword(p, int(h) + 0x70) == 0x1002 | bits
    assert dword(p, int(h) + 0x74) == force
    assert h.stats()["debug"] == debug


_GLOBALFLAG_CHILD = """
import struct, pyalloc as pa
p = pa.Process()
for h in (p.HeapCreate(0, 0, 0), p.GetProcessHeap()):
    b = p.read(int(h), 0x78)
    print(struct.unpack_from('<I', b, 0x70)[0], struct.unpack_from('<I', b, 0x74)[0],
          h.stats()['debug'])
h = p.HeapCreate(0, 0, 0)
x = p.HeapAlloc(h, 0, 17)
print(p.read(x + 17, 8).hex())
"""


@pytest.mark.parametrize("var, debug, bits", [
    ("PYALLOC_HEAP_TAIL_CHECK", pa.PA_HEAP_DEBUG_TAIL_CHECK, pa.HEAP_TAIL_CHECKING_ENABLED),
    ("PYALLOC_HEAP_FREE_CHECK", pa.PA_HEAP_DEBUG_FREE_CHECK, pa.HEAP_FREE_CHECKING_ENABLED),
    ("PYALLOC_HEAP_VALIDATE_ALL", pa.PA_HEAP_DEBUG_VALIDATE_ALL, HEAP_VALIDATE_ALL),
    ("PYALLOC_HEAP_PAGE_HEAP", pa.PA_HEAP_DEBUG_PAGE_HEAP, HEAP_PAGE_ALLOCS),
])
def test_fact06_process_wide_debug_flags(var, debug, bits):
    """The GlobalFlag analogue (environment) applies to every heap, the process heap included;
    W-KT heap_flags_from_global_flag. (pyalloc's VALIDATE_ALL adds only HEAP_VALIDATE_ALL,
    where FLG_HEAP_VALIDATE_ALL also brings tail and free checking.)"""
    env = dict(os.environ, **{var: "1"})
    out = subprocess.run([sys.executable, "-c", _GLOBALFLAG_CHILD], env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout.split("\n")
    created, process_heap = ([int(x) for x in line.split()] for line in out[:2])
    assert created[0] == 0x1002 | bits and created[2] == debug
    assert process_heap[0] == pa.HEAP_GROWABLE | bits and process_heap[2] == debug
    if debug == pa.PA_HEAP_DEBUG_TAIL_CHECK:
        assert out[2] == "ab" * 8


@pytest.mark.parametrize("initial, committed", [
    (0, 0x2000), (1, 0x2000), (0x1001, 0x2000), (0x5000, 0x5000), (0x12345, 0x13000),
])
def test_fact07_initial_size_is_page_rounded(p, initial, committed):
    """HeapCreate rounds the initial commit up to pages (0 commits the minimum); D-HC. The
    minimum is 0x400*P (fact 46)."""
    h = p.HeapCreate(0, initial, 0)
    region = walk(p, h)[0]
    assert region.wFlags == REGION
    assert region.dwCommittedSize == committed
    assert h.stats()["committed"] == committed
    assert p.VirtualQuery(int(h)).RegionSize == committed


@pytest.mark.parametrize("maximum", [0x200000, 0x1000000])
def test_fact07_fixed_heap_largest_block_below_1024k(p, maximum):
    """A fixed-size heap's largest block is slightly less than 1024 KB on 64-bit, even when the
    heap is bigger; D-HC."""
    h = p.HeapCreate(0, 0, maximum)
    x = p.HeapAlloc(h, 0, 1000 * 1024)
    assert p.HeapSize(h, 0, x) == 1000 * 1024
    for n in (1024 * 1024, 1024 * 1024 - 16, 2 * 1024 * 1024):
        with winerror(NO_MEMORY, p) as e:
            p.HeapAlloc(h, 0, n)
        assert isinstance(e.value, MemoryError)
    assert p.HeapValidate(h)


def test_fact07_no_serialize_heap_gets_no_lfh(p):
    """HEAP_NO_SERIALIZE heaps cannot get the LFH: many same-size allocations keep the
    compatibility value 0 and the walk shows only back-end blocks; D-HC."""
    h = p.HeapCreate(pa.HEAP_NO_SERIALIZE, 0, 0)
    xs = [p.HeapAlloc(h, 0, 32) for _ in range(100)]
    assert compat(p, h) == 0
    assert h.stats()["lfh_active"] == 0
    assert all(e.iRegionIndex == 0 for e in walk(p, h))
    for x in xs:
        p.HeapFree(h, 0, x)


def test_fact08_fixed_heap_requests_below_0x7fff8(p):
    """On a non-growable heap, requests below 0x7FFF8 are served when there is room; D-HA."""
    h = p.HeapCreate(0, 0, 0x400000)
    for n in (0, 1, 0x1000, 0x7FFF7):
        x = p.HeapAlloc(h, 0, n)
        assert p.HeapSize(h, 0, x) == n
        p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


# ---- 1.2 HeapAlloc / HeapSize / HeapFree basics --------------------------------------------------


@pytest.mark.parametrize("maximum", [0, 0x100000])
def test_fact09_zero_byte_block(p, maximum):
    """HeapAlloc(heap, 0, 0) is a block of HeapSize 0, growable and fixed; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, maximum)
    x = p.HeapAlloc(h, 0, 0)
    assert x and x % 16 == 0
    assert p.HeapSize(h, 0, x) == 0
    assert p.HeapValidate(h, 0, x)
    assert p.HeapFree(h, 0, x) is True


@pytest.mark.parametrize("maximum", [0, 0x800000])
@pytest.mark.parametrize("n", [0, 1, 17, 123, 456, A, 3 * A, 1 << 20, 3000 * 1024 + 37])
def test_fact10_heapsize_is_exact(p, maximum, n):
    """HeapSize is exactly the requested count, never the rounded block size; W-KT
    test_HeapCreate, test_heap_checks."""
    h = p.HeapCreate(0, 0, maximum)
    if maximum and n >= 0xFF000:  # fixed heaps have no large blocks (fact 7)
        with winerror(NO_MEMORY, p):
            p.HeapAlloc(h, 0, n)
        return
    x = p.HeapAlloc(h, 0, n)
    assert p.HeapSize(h, 0, x) == n
    y = p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, n)
    assert p.HeapSize(h, 0, y) == n
    assert [e.cbData for e in walk(p, h) if e.wFlags & BUSY] == [n, n]
    p.HeapFree(h, 0, x)
    p.HeapFree(h, 0, y)


@pytest.mark.parametrize("n", [2**64 - 1, 2**64 - 8, 2**63, 1 << 48])
def test_fact11_12_huge_alloc_is_memory_error(p, n):
    """HeapAlloc(~0) fails with ERROR_NOT_ENOUGH_MEMORY, a MemoryError; W-KT test_HeapCreate,
    D-HA (fact 12: the last error is 8)."""
    h = p.HeapCreate(0, 0, 0)
    with winerror(NO_MEMORY, p) as e:
        p.HeapAlloc(h, 0, n)
    assert isinstance(e.value, pa.WinMemoryError) and isinstance(e.value, MemoryError)
    with pytest.raises(MemoryError):
        p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, n)
    assert p.HeapValidate(h)


@pytest.mark.parametrize("size", [100, 40, 70000, 2 << 20])
@pytest.mark.parametrize("n", [2**64 - 1, 2**64 - 8])
def test_fact11_failed_huge_realloc_keeps_the_block(p, size, n):
    """HeapReAlloc(p, ~0 - 7) and (p, ~0) fail and leave p valid, same size and contents;
    W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, size)
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    p.write(x, data)
    for flags in (0, pa.HEAP_ZERO_MEMORY, pa.HEAP_REALLOC_IN_PLACE_ONLY):
        with winerror(NO_MEMORY, p) as e:
            p.HeapReAlloc(h, flags, x, n)
        assert isinstance(e.value, MemoryError)
        assert p.HeapValidate(h, 0, x)
        assert p.HeapSize(h, 0, x) == size
        assert p.read(x, size) == data
    assert p.HeapValidate(h)
    p.HeapFree(h, 0, x)


def test_fact14_wild_pointers_fail_gracefully(p):
    """Native Windows crashes on wild pointers (W-KT test_HeapCreate keeps those calls under
    if (0)); pyalloc's contract instead: WinError 87 and an intact heap."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    app = p.VirtualAlloc(None, 0x10000, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    si = p.GetSystemInfo()
    unmapped = si.lpMinimumApplicationAddress + (1 << 34)
    for wild in (0xDEADBE00, unmapped + 64, app + 64, int(h) + 0x100, int(h) + 0x9000):
        with winerror(87, p):
            p.HeapFree(h, 0, wild)
        with winerror(87, p):
            p.HeapReAlloc(h, 0, wild, 10)
        with winerror(87, p):
            p.HeapSize(h, 0, wild)
        assert p.HeapValidate(h, 0, wild) is False
    assert p.HeapValidate(h)
    assert p.HeapSize(h, 0, x) == 100


def test_fact15_16_double_free_and_foreign_blocks(p):
    """Double free, HeapSize of a freed block, a pointer inside a block, a block of another
    heap -> error 87 (HeapSize's (SIZE_T)-1); the heap still validates. W-NH
    unsafe_block_from_ptr, RtlFreeHeap, RtlSizeHeap; D-HS."""
    h, other = p.HeapCreate(0, 0, 0), p.HeapCreate(0, 0, 0)
    x, y = p.HeapAlloc(h, 0, 100), p.HeapAlloc(h, 0, 100)
    big = p.HeapAlloc(h, 0, 2 << 20)
    lfh = [p.HeapAlloc(h, 0, 48) for _ in range(40)]
    assert compat(p, h) == 2
    p.HeapFree(h, 0, x)
    p.HeapFree(h, 0, big)
    p.HeapFree(h, 0, lfh[-1])
    for bad in (x, big, lfh[-1], y + 16, y + 1, big + 4096, lfh[0] + 16):
        with winerror(87, p):
            p.HeapFree(h, 0, bad)
        with winerror(87, p):
            p.HeapSize(h, 0, bad)
        with winerror(87, p):
            p.HeapReAlloc(h, 0, bad, 10)
    with winerror(87, p):
        p.HeapFree(other, 0, y)
    with winerror(87, p):
        p.HeapSize(other, 0, lfh[0])
    assert p.HeapValidate(h) and p.HeapValidate(other)
    assert p.HeapSize(h, 0, y) == 100
    p.HeapFree(h, 0, y)
    for b in lfh[:-1]:
        p.HeapFree(h, 0, b)
    assert p.HeapValidate(h)
    assert h.stats()["busy_blocks"] == 0


@pytest.mark.parametrize("n", [1, 17, A, 1 << 20])
def test_fact17_zero_memory_zeroes_reused_memory(p, n):
    """HEAP_ZERO_MEMORY zeroes the whole request, also where dirty memory is reused; W-KT
    test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, n)
    p.write(x, b"\xcc" * n)
    p.HeapFree(h, 0, x)
    y = p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, n)
    assert p.read(y, n) == bytes(n)
    p.HeapFree(h, 0, y)


@pytest.mark.parametrize("old, new", [(A, 3 * A), (1, 1 << 20), (100, 5000), (40, 48), (0, 10)])
def test_fact17_zero_memory_realloc_zeroes_the_new_tail(p, old, new):
    """HeapReAlloc(HEAP_ZERO_MEMORY) growing A -> 3A, 1 -> 1 MiB zeroes the new tail and keeps
    the old bytes; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    dirty = p.HeapAlloc(h, 0, new)  # leave dirty memory around for the grown block to reuse
    p.write(dirty, b"\x77" * new)
    p.HeapFree(h, 0, dirty)
    x = p.HeapAlloc(h, 0, old)
    p.write(x, b"\x55" * old)
    y = p.HeapReAlloc(h, pa.HEAP_ZERO_MEMORY, x, new)
    assert p.HeapSize(h, 0, y) == new
    assert p.read(y, old) == b"\x55" * old
    assert p.read(y + old, new - old) == bytes(new - old)


def test_fact18_fresh_large_block_reads_zero(p):
    """A block from the VirtualAlloc path reads as zero without HEAP_ZERO_MEMORY; W-KT
    test_heap_checks."""
    h = p.HeapCreate(0, 0, 0)
    n = 3000 * 1024 + 37
    x = p.HeapAlloc(h, 0, n)
    assert p.read(x + n - 2, 2) == b"\0\0"
    assert p.read(x, n) == bytes(n)


def test_fact19_20_alignment_of_ordinary_blocks(p):
    """All blocks are 16-byte aligned (MEMORY_ALLOCATION_ALIGNMENT, D-HA), and not all are
    multiples of 32 among 128 blocks of size A (W-KT test_HeapCreate)."""
    h = p.HeapCreate(0, 0, 0)
    xs = [p.HeapAlloc(h, 0, A) for _ in range(128)]
    assert all(x % 16 == 0 for x in xs)
    assert any(x % 32 == 16 for x in xs)
    small = [p.HeapAlloc(h, 0, n) for n in range(0, 300)]
    assert all(x % 16 == 0 for x in small)
    assert len(set(xs + small)) == len(xs) + len(small)


def test_fact21_alignment_of_large_blocks(p):
    """Large blocks (4A) sit 8P = 64 bytes past a 64 KiB-aligned allocation: address = 64
    (mod 128); W-KT test_HeapCreate, test_block_layout."""
    h = p.HeapCreate(0, 0, 0)
    for _ in range(4):
        x = p.HeapAlloc(h, 0, 4 * A)
        assert x % (16 * P) == 8 * P
        assert x % GRAN == 64
        mbi = p.VirtualQuery(x)
        assert mbi.AllocationBase == x - 64
        assert region_index(p, h, x) == 64


# ---- 1.3 block layout / VirtualAlloc threshold ---------------------------------------------------


def test_fact23_small_large_boundary(p):
    """Sizes <= 0x20000*P - 0x3000 come from the heap segment, >= 0x20000*P - 0x1000 are separate
    VirtualAlloc blocks, non-adjacent and 8P-aligned; W-KT test_block_layout."""
    h = p.HeapCreate(0, 0, 0)
    inside = p.HeapAlloc(h, 0, 0x20000 * P - 0x3000)
    large = [p.HeapAlloc(h, 0, 0x20000 * P - 0x1000) for _ in range(3)]
    assert region_index(p, h, inside) != 64
    for x in large:
        assert region_index(p, h, x) == 64
        assert x % GRAN == 64
        assert p.VirtualQuery(x).AllocationBase == x - 64
    gaps = [b - a for a, b in zip(sorted(large), sorted(large)[1:])]
    assert all(g > 0x20000 * P - 0x1000 for g in gaps)
    assert p.HeapValidate(h)


def test_fact23_large_blocks_have_no_tail_pattern(p):
    """Large blocks carry no tail pattern even with tail checking; W-KT test_block_layout
    (fact 41: Windows does not tail-check large blocks)."""
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_TAIL_CHECK)
    n = 0x20000 * P - 0x1000 + 5
    x = p.HeapAlloc(h, 0, n)
    assert p.read(x + n, 8) == bytes(8)
    small = p.HeapAlloc(h, 0, 5)
    assert p.read(small + 5, 8) == b"\xab" * 8


def test_fact25_growable_heap_serves_big_requests(p):
    """HeapAlloc(5A+1) and HeapAlloc(4A) succeed on a growable heap; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x, y = p.HeapAlloc(h, 0, 5 * A + 1), p.HeapAlloc(h, 0, 4 * A)
    assert p.HeapSize(h, 0, x) == 5 * A + 1 and p.HeapSize(h, 0, y) == 4 * A
    assert p.HeapValidate(h)


# ---- 1.4 fixed-size heaps ------------------------------------------------------------------------


def test_fact26_fixed_heap_capacity(p):
    """HeapCreate(0, A, A): A - (0x400 + 0x100*P) fits exactly; A - (0x200 + 0x80*P) fails with
    error 8 (fact 12); W-KT test_HeapCreate."""
    h = p.HeapCreate(0, A, A)
    n = A - (0x400 + 0x100 * P)
    x = p.HeapAlloc(h, 0, n)
    assert p.HeapSize(h, 0, x) == n
    p.HeapFree(h, 0, x)
    with winerror(NO_MEMORY, p) as e:
        p.HeapAlloc(h, 0, A - (0x200 + 0x80 * P))
    assert isinstance(e.value, MemoryError)
    assert p.HeapValidate(h)


def test_fact27_fixed_heap_single_block_limit(p):
    """HeapCreate(0, 8A, 8A): HeapAlloc(0) works; HeapAlloc(4A) fails with 8 on the empty heap
    and with an A-sized block live; HeapAlloc(A) works; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 8 * A, 8 * A)
    z = p.HeapAlloc(h, 0, 0)
    assert p.HeapSize(h, 0, z) == 0
    with winerror(NO_MEMORY, p):
        p.HeapAlloc(h, 0, 4 * A)
    a = p.HeapAlloc(h, 0, A)
    assert p.HeapSize(h, 0, a) == A
    with winerror(NO_MEMORY, p):
        p.HeapAlloc(h, 0, 4 * A)
    assert p.HeapValidate(h)


def test_fact28_fixed_heap_realloc_in_place(p):
    """Fixed heap: HeapReAlloc(ZERO, p, 2A) zeroes; in-place shrink to 1.5A and grow back to 2A
    keep the pointer; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 8 * A, 8 * A)
    x = p.HeapAlloc(h, 0, 16)
    x = p.HeapReAlloc(h, pa.HEAP_ZERO_MEMORY, x, 2 * A)
    assert p.read(x, 2 * A) == bytes(2 * A)
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, A + A // 2) == x
    assert p.HeapSize(h, 0, x) == A + A // 2
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 2 * A) == x
    assert p.HeapSize(h, 0, x) == 2 * A
    assert p.HeapValidate(h)


def test_fact29_fixed_heap_never_grows(p):
    """A fixed heap gets no second region and no large blocks; running out is error 8 (not
    ReactOS's 122); W-NH allocate_region, R-HEAP RtlAllocateHeap."""
    h = p.HeapCreate(0, 0, 0x100000)
    blocks = []
    with winerror(NO_MEMORY, p):
        for _ in range(1000):
            blocks.append(p.HeapAlloc(h, 0, 0x8000))
    assert 0 < len(blocks) < 32
    with winerror(NO_MEMORY, p):
        p.HeapAlloc(h, 0, 0x200000)
    entries = walk(p, h)
    assert [e.wFlags for e in entries].count(REGION) == 1
    assert not any(e.iRegionIndex == 64 for e in entries)
    assert h.stats()["reserved"] <= 0x100000
    assert p.HeapValidate(h)


# ---- 1.5 HeapReAlloc ----------------------------------------------------------------------------


@pytest.mark.parametrize("options", [0, pa.HEAP_GENERATE_EXCEPTIONS])
def test_fact30_realloc_of_null(p, options):
    """HeapReAlloc(heap, 0, NULL, 1) returns NULL and leaves GetLastError() == 0 (no error code,
    no structured exception); W-KT test_HeapCreate."""
    h = p.HeapCreate(options, 0, 0)
    if options:  # a previous failure must not leak its status into this one
        with pytest.raises(pa.HeapException):
            p.HeapAlloc(h, 0, 2**64 - 1)
    with winerror(0, p) as e:
        p.HeapReAlloc(h, 0, None, 1)
    assert not isinstance(e.value, MemoryError)
    with winerror(0, p):
        p.HeapReAlloc(h, 0, 0, 100)


def test_fact32_in_place_shrink_and_grow(p):
    """For an ordinary 3A block, in-place resize to 1.5A and back to 2A keeps the pointer;
    W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 3 * A)
    p.write(x, b"\x42" * (3 * A))
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, A + A // 2) == x
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 2 * A) == x
    assert p.HeapSize(h, 0, x) == 2 * A
    assert p.read(x, A + A // 2) == b"\x42" * (A + A // 2)
    assert p.HeapValidate(h)


def test_fact33_large_block_shrink_then_grow_in_place_fails(p):
    """A 1 MiB block shrinks in place to 1.5A; growing back in place to 2A fails with error 8
    (the shrink decommitted pages) and leaves the block as it was; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 1 << 20)
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, A + A // 2) == x
    with winerror(NO_MEMORY, p):
        p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 2 * A)
    assert p.HeapSize(h, 0, x) == A + A // 2
    assert p.HeapValidate(h, 0, x)
    # A moving realloc still grows it.
    y = p.HeapReAlloc(h, 0, x, 2 * A)
    assert p.HeapSize(h, 0, y) == 2 * A


def test_fact34_moving_realloc_copies_and_in_place_failure_is_8(p):
    """A realloc that cannot grow in place moves (alloc + copy + free); with
    HEAP_REALLOC_IN_PLACE_ONLY it fails with error 8; growing an in-heap block past the large
    threshold is never in place; W-NH RtlReAllocateHeap, heap_resize_in_place."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 100)
    data = bytes(range(100))
    p.write(x, data)
    blocker = p.HeapAlloc(h, 0, 100)
    with winerror(NO_MEMORY, p):
        p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 5000)
    assert p.read(x, 100) == data
    y = p.HeapReAlloc(h, 0, x, 5000)
    assert y != x and p.read(y, 100) == data and p.HeapSize(h, 0, y) == 5000
    with winerror(87, p):
        p.HeapSize(h, 0, x)  # the old block was freed
    big = p.HeapAlloc(h, 0, 0x80000)
    assert region_index(p, h, big) != 64
    with winerror(NO_MEMORY, p):
        p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, big, 0x200000)
    big2 = p.HeapReAlloc(h, 0, big, 0x200000)
    assert region_index(p, h, big2) == 64
    p.HeapFree(h, 0, blocker)
    assert p.HeapValidate(h)


@pytest.mark.parametrize("new, in_place", [(33, True), (39, True), (20, False), (0, False),
                                           (60, False), (100, False)])
def test_fact35_lfh_in_place_only_within_the_same_size_class(p, new, in_place):
    """LFH blocks resize in place only when shrinking inside their 16-byte-rounded size;
    W-NH heap_resize_block_lfh, S-EXP."""
    h = p.HeapCreate(0, 0, 0)
    p.HeapSetInformation(h, COMPAT, 2)
    xs = [p.HeapAlloc(h, 0, 40) for _ in range(40)]
    x = xs[-1]
    assert region_index(p, h, x) != 0  # served by the LFH
    if in_place:
        assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, new) == x
        assert p.HeapSize(h, 0, x) == new
    else:
        with winerror(NO_MEMORY, p):
            p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, new)
        assert p.HeapSize(h, 0, x) == 40
    assert p.HeapValidate(h)


def test_fact35_lfh_block_never_grows_in_place(p):
    """W-NH heap_resize_block_lfh refuses any size >= the old one, as native LFH does."""
    h = p.HeapCreate(0, 0, 0)
    p.HeapSetInformation(h, COMPAT, 2)
    x = [p.HeapAlloc(h, 0, 40) for _ in range(40)][-1]
    for new in (48, 41, 40):
        with winerror(NO_MEMORY, p):
            p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, new)
    assert p.HeapSize(h, 0, x) == 40


# ---- 1.6 HeapValidate ---------------------------------------------------------------------------


def test_fact36_validate_keeps_the_last_error(p):
    """HeapValidate(heap, 0, NULL) on a healthy heap is True and does not touch the last error
    (nor does a block or a failing check); W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, 0, 10)
    p.SetLastError(0x1234)
    assert p.HeapValidate(h) is True
    assert p.HeapValidate(h, 0, None) is True
    assert p.HeapValidate(h, 0, x) is True
    assert p.HeapValidate(h, 0, x + 16) is False
    assert p.GetLastError() == 0x1234


def test_fact38_validate_of_something_that_is_not_a_block(p):
    """HeapValidate of a pointer that is not a block (GlobalAlloc's handle in the test; here a
    pointer into a block, the heap header, a freed block) is False, the block itself True;
    W-KT test_GlobalAlloc."""
    h = p.HeapCreate(0, 0, 0)
    x, y = p.HeapAlloc(h, 0, 64), p.HeapAlloc(h, 0, 64)
    p.HeapFree(h, 0, y)
    assert p.HeapValidate(h, 0, x)
    for bad in (x + 8, x + 16, int(h), int(h) + 0x100, y):
        assert p.HeapValidate(h, 0, bad) is False
    assert p.HeapValidate(h)


# ---- 1.7 tail / free checking and fill patterns --------------------------------------------------


def test_fact39_tail_pattern_after_small_blocks(p):
    """With tail checking, at least 8 bytes of 0xAB follow every block of 0..63 bytes; a 17-byte
    zeroed block has p[17..19] == 0xAB; W-KT test_heap_checks, test_block_layout."""
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_TAIL_CHECK)
    for n in range(64):
        x = p.HeapAlloc(h, 0, n)
        assert p.read(x + n, 8) == b"\xab" * 8, n
        assert p.read(x + n, 2 * P) == b"\xab" * (2 * P)
        assert p.HeapSize(h, 0, x) == n
    z = p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, 17)
    assert p.read(z, 20) == bytes(17) + b"\xab" * 3
    assert p.HeapValidate(h)


def test_fact40_shrink_rewrites_the_tail(p):
    """In-place shrink 17 -> 14 with tail checking rewrites p[14..16] to 0xAB; without tail
    checking p[14], p[15] stay 0; W-KT test_heap_checks."""
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_TAIL_CHECK)
    x = p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, 17)
    assert p.HeapReAlloc(h, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 14) == x
    assert p.read(x + 14, 3) == b"\xab" * 3
    plain = p.HeapCreate(0, 0, 0)
    y = p.HeapAlloc(plain, pa.HEAP_ZERO_MEMORY, 17)
    assert p.HeapReAlloc(plain, pa.HEAP_REALLOC_IN_PLACE_ONLY, y, 14) == y
    assert p.read(y + 14, 2) == b"\0\0"


def test_fact41_overwritten_tail_is_detected(raw):
    """Overwriting the first tail byte makes HeapValidate(heap, 0, p) False and HeapSize /
    HeapReAlloc / HeapFree refuse the block; restoring it makes them work again; W-KT
    test_heap_checks."""
    p = raw
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_TAIL_CHECK)
    x = p.HeapAlloc(h, 0, 17)
    p.write(x + 17, b"\0")
    assert p.HeapValidate(h, 0, x) is False
    assert p.HeapValidate(h) is False
    with pytest.raises(pa.WinError):
        p.HeapFree(h, 0, x)
    p.write(x + 17, b"\xab")
    assert p.HeapValidate(h, 0, x) and p.HeapValidate(h)
    assert p.HeapSize(h, 0, x) == 17
    y = p.HeapReAlloc(h, 0, x, 1000)
    assert p.HeapSize(h, 0, y) == 1000
    p.HeapFree(h, 0, y)
    assert p.HeapValidate(h)


def test_fact42_free_fill_and_its_check(raw):
    """With free checking a freed 37-byte block reads EE FE EE FE at bytes 16..19; corrupting
    that byte makes HeapValidate False; restoring it -> True; W-KT test_heap_checks."""
    p = raw
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_FREE_CHECK)
    keep = p.HeapAlloc(h, 0, 8)
    x = p.HeapAlloc(h, 0, 37)
    after = p.HeapAlloc(h, 0, 8)  # keeps x from merging into the free tail
    p.HeapFree(h, 0, x)
    assert p.read(x + 16, 4) == b"\xee\xfe\xee\xfe"
    assert struct.unpack("<I", p.read(x + 16, 4))[0] == 0xFEEEFEEE
    assert p.HeapValidate(h)
    p.write(x + 16, b"\0")  # a write after free
    assert p.HeapValidate(h) is False
    p.write(x + 16, b"\xee")
    assert p.HeapValidate(h)
    p.HeapFree(h, 0, keep)
    p.HeapFree(h, 0, after)
    assert p.HeapValidate(h)


def test_fact43_fill_constants(p):
    """New blocks read 0xBAADF00D with free checking and without HEAP_ZERO_MEMORY, freed ones
    0xFEEEFEEE, the tail 0xAB x 2P; W-NH BLOCK_FILL_*, R-HEAPH ARENA_INUSE_FILLER."""
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_FREE_CHECK | pa.PA_HEAP_DEBUG_TAIL_CHECK)
    keep = p.HeapAlloc(h, 0, 8)
    x = p.HeapAlloc(h, 0, 40)
    assert p.read(x, 40) == struct.pack("<I", 0xBAADF00D) * 10
    assert p.read(x + 40, 2 * P) == b"\xab" * (2 * P)
    z = p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, 40)
    assert p.read(z, 40) == bytes(40)
    p.HeapFree(h, 0, x)
    assert p.read(x + 16, 24) == struct.pack("<I", 0xFEEEFEEE) * 6
    plain = p.HeapCreate(0, 0, 0)
    y = p.HeapAlloc(plain, 0, 40)
    assert p.read(y, 4) != struct.pack("<I", 0xBAADF00D)
    p.HeapFree(h, 0, keep)
    assert p.HeapValidate(h)


# ---- page heap (FLG_HEAP_PAGE_ALLOCS: fact 6, R-HEAP heappage.c) ---------------------------------


@pytest.mark.parametrize("n", [16, 32, 4096, 8192])
def test_fact06_page_heap_overrun_faults_at_the_first_byte_past_the_block(raw, n):
    """With the page heap, a block of a multiple of 16 bytes ends at a PAGE_NOACCESS page:
    writing one byte past it from Python faults at exactly that address (R-HEAP heappage.c)."""
    p = raw
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    x = p.HeapAlloc(h, 0, n)
    assert x % 16 == 0 and p.HeapSize(h, 0, x) == n
    p.write(x, b"\x5a" * n)
    with pytest.raises(pa.AccessViolation) as e:
        p.write(x + n, b"\x01")
    assert e.value.address == x + n and e.value.operation == "write"
    with pytest.raises(pa.AccessViolation) as e:
        p.read(x + n, 1)
    assert e.value.address == x + n
    mbi = p.VirtualQuery(x + n)
    assert mbi.Protect == pa.PAGE_NOACCESS or mbi.State != pa.MEM_COMMIT
    assert p.HeapValidate(h, 0, x)
    p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


@pytest.mark.parametrize("n", [1, 5, 100, 5000])
def test_fact06_page_heap_slack_overrun_is_caught_at_free(raw, n):
    """Between a block and its guard page (16-byte rounding) lie tail bytes; writing there is
    caught by HeapValidate and HeapFree, and restoring them makes the block freeable."""
    p = raw
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    x = p.HeapAlloc(h, 0, n)
    end = (n + 15) // 16 * 16
    with pytest.raises(pa.AccessViolation) as e:
        p.write(x + end, b"\x01")
    assert e.value.address == x + end
    old = p.read(x + n, 1)
    p.write(x + n, b"\x00")
    assert p.HeapValidate(h, 0, x) is False
    with pytest.raises(pa.WinError):
        p.HeapFree(h, 0, x)
    p.write(x + n, old)
    assert p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


@pytest.mark.parametrize("n", [1, 16, 100, 4096, 5000])
def test_fact06_page_heap_use_after_free_faults(p, n):
    """A freed page-heap block is decommitted: reading it faults, and so does freeing it again
    (error 87, no crash)."""
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    x = p.HeapAlloc(h, 0, n)
    p.HeapFree(h, 0, x)
    with pytest.raises(pa.AccessViolation) as e:
        p.read(x, 1)
    assert e.value.address == x
    with winerror(87, p):
        p.HeapFree(h, 0, x)
    assert p.HeapValidate(h)


def test_fact06_page_heap_blocks_are_walked_as_outside_blocks(p):
    """Live page-heap blocks are listed after the region, like large blocks (iRegionIndex 64)."""
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    xs = [p.HeapAlloc(h, 0, n) for n in (1, 300, 5000)]
    busy = {e.lpData: (e.cbData, e.iRegionIndex) for e in walk(p, h) if e.wFlags & BUSY}
    assert busy == {x: (n, 64) for x, n in zip(xs, (1, 300, 5000))}


# ---- 1.8 HeapWalk -------------------------------------------------------------------------------


def test_fact44_walk_is_repeatable(p):
    """Walking twice gives identical entries; the walk ends (ERROR_NO_MORE_ITEMS, which the
    iterator turns into its end); W-KT test_HeapCreate, D-PHE."""
    h = p.HeapCreate(0, 0, 0)
    for n in (10, 100, 1000, 1 << 20):
        p.HeapAlloc(h, 0, n)
    first, second = walk(p, h), walk(p, h)
    assert first == second and len(first) >= 6
    assert p.GetLastError() != 0  # the C walk's last call failed with ERROR_NO_MORE_ITEMS
    assert p.GetLastError() == 259


def test_fact45_46_fresh_heap_walk(p):
    """A fresh HeapCreate(0,0,0) walks as REGION, one free block, UNCOMMITTED; the region entry
    is the heap itself with cbData <= 0x1000, committed 0x400*P, committed + uncommitted =
    0x10000, lpFirstBlock = lpData + cbData + 2P, lpLastBlock = end of the uncommitted range;
    W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    region, free, unc = walk(p, h)
    assert region.wFlags == REGION and region.lpData == int(h)
    assert 0 < region.cbData <= 0x1000
    assert region.cbOverhead == 0 and region.iRegionIndex == 0
    assert region.dwCommittedSize == 0x400 * P
    assert region.dwUnCommittedSize == 0x10000 - region.dwCommittedSize
    assert region.lpFirstBlock == region.lpData + region.cbData + 2 * P
    assert free.wFlags == 0 and free.lpData == region.lpFirstBlock
    assert free.cbOverhead == 4 * P
    assert unc.wFlags == UNCOMMITTED
    assert unc.lpData == int(h) + region.dwCommittedSize
    assert region.lpLastBlock == unc.lpData + unc.cbData
    assert unc.lpData + unc.cbData == int(h) + 0x10000


def test_fact49_walk_of_busy_blocks(p):
    """After HeapAlloc(123, ZERO): REGION, BUSY (lpData = ptr, cbData = 123, cbOverhead != 0),
    free (at ptr + 123 + cbOverhead + 2P, cbOverhead 4P), UNCOMMITTED; a 456-byte block adds
    one BUSY entry before the free one; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    x = p.HeapAlloc(h, pa.HEAP_ZERO_MEMORY, 123)
    region, busy, free, unc = walk(p, h)
    assert (region.wFlags, busy.wFlags, free.wFlags, unc.wFlags) == (REGION, BUSY, 0, UNCOMMITTED)
    assert busy.lpData == x and busy.cbData == 123 and busy.cbOverhead != 0
    assert free.lpData == busy.lpData + 123 + busy.cbOverhead + 2 * P
    assert free.cbOverhead == 4 * P
    y = p.HeapAlloc(h, 0, 456)
    entries = walk(p, h)
    assert [e.wFlags for e in entries] == [REGION, BUSY, BUSY, 0, UNCOMMITTED]
    assert (entries[2].lpData, entries[2].cbData) == (y, 456)
    assert entries[3].lpData == y + 456 + entries[2].cbOverhead + 2 * P


def test_fact50_large_blocks_are_walked_after_the_regions(p):
    """After HeapAlloc(5A) the 4th entry is BUSY, lpData = ptr, cbData = 5A, cbOverhead 0,
    iRegionIndex 64, no DDESHARE (fact 51); freeing restores the original walk exactly; W-KT
    test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    before = walk(p, h)
    assert len(before) == 3
    x = p.HeapAlloc(h, 0, 5 * A)
    entries = walk(p, h)
    assert len(entries) == 4
    e = entries[3]
    assert e.wFlags == BUSY and e.lpData == x and e.cbData == 5 * A
    assert e.cbOverhead == 0 and e.iRegionIndex == 64
    assert entries[:3] == before
    y = p.HeapAlloc(h, 0, 100)
    z = p.HeapAlloc(h, 0, 4 * A)
    entries = walk(p, h)
    outside = [i for i, e in enumerate(entries) if e.iRegionIndex == 64]
    assert outside == [len(entries) - 2, len(entries) - 1]  # after every region's entries
    assert {entries[i].lpData for i in outside} == {x, z}
    assert any(e.lpData == y and e.iRegionIndex == 0 for e in entries)
    for b in (x, y, z):
        p.HeapFree(h, 0, b)
    assert walk(p, h) == before
    flags = pa.PROCESS_HEAP_ENTRY_MOVEABLE | pa.PROCESS_HEAP_ENTRY_DDESHARE
    assert not any(e.wFlags & flags for e in entries)


def test_fact53_lfh_walk(p):
    """Once the LFH serves a size class the walk has > 24 entries; LFH busy entries have the
    requested cbData, free LFH slots wFlags 0 and cbOverhead 2P, busy and free slots of one
    class span the same slot size; an UNCOMMITTED entry is followed by a REGION; W-KT
    test_HeapCreate. (pyalloc's block header is 16 bytes where native's is 8, so the slot is
    16 bytes bigger than native's: busy cbOverhead is 24 where native shows 8.)"""
    h = p.HeapCreate(0, 0, 0)
    n = 0x18 + 2 * P
    xs = [p.HeapAlloc(h, 0, n) for _ in range(40)]
    assert compat(p, h) == 2
    entries = walk(p, h)
    assert len(entries) > 24
    lfh_busy = [e for e in entries if e.wFlags == BUSY and e.iRegionIndex not in (0, 64)]
    lfh_free = [e for e in entries if e.wFlags == 0 and e.iRegionIndex not in (0, 64)
                and not lfh_spare_entry(e)]  # (not the free chunks kept committed)
    assert {e.lpData for e in lfh_busy} <= set(xs) and len(lfh_busy) >= 18
    assert all(e.cbData == n for e in lfh_busy)
    assert lfh_free and all(e.cbOverhead == 2 * P for e in lfh_free)
    slot = lfh_busy[0].cbData + lfh_busy[0].cbOverhead
    assert all(e.cbData + e.cbOverhead == slot for e in lfh_busy + lfh_free)
    assert slot - n == P or slot - n == 3 * P  # native 8; pyalloc 24 (16-byte header)
    flags = [e.wFlags for e in entries]
    assert any(a == UNCOMMITTED and b == REGION for a, b in zip(flags, flags[1:]))
    bad = pa.PROCESS_HEAP_ENTRY_MOVEABLE | pa.PROCESS_HEAP_ENTRY_DDESHARE
    assert not any(f & bad for f in flags)
    assert {e.lpData for e in entries if e.wFlags & BUSY} == set(xs)


# ---- 1.9 locking --------------------------------------------------------------------------------


def _start(target):
    result = []

    def run():
        try:
            result.append(target())
        except BaseException as e:  # reported by the test
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, result


def test_fact54_heaplock_excludes_other_threads(p):
    """While one thread holds HeapLock, another thread's HeapAlloc/HeapFree/HeapLock wait until
    HeapUnlock; its HEAP_NO_SERIALIZE calls do not; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    assert p.HeapLock(h) and p.HeapLock(h)  # recursive
    mine = p.HeapAlloc(h, 0, 40000)  # the owner's own calls proceed
    t1, r1 = _start(lambda: p.HeapFree(h, 0, p.HeapAlloc(h, 0, 40000)))
    t2, r2 = _start(lambda: p.HeapLock(h) and p.HeapUnlock(h))
    t3, r3 = _start(lambda: p.HeapFree(h, pa.HEAP_NO_SERIALIZE,
                                       p.HeapAlloc(h, pa.HEAP_NO_SERIALIZE, 40000)))
    t3.join(5)
    assert r3 == [True]
    time.sleep(0.1)
    assert r1 == [] and r2 == []
    assert p.HeapUnlock(h)
    time.sleep(0.05)
    assert r1 == [] and r2 == []  # still locked once
    assert p.HeapUnlock(h)
    t1.join(5)
    t2.join(5)
    assert r1 == [True] and r2 == [True]
    with winerror(288, p):  # ERROR_NOT_OWNER
        p.HeapUnlock(h)
    p.HeapFree(h, 0, mine)
    assert p.HeapValidate(h)


def test_fact55_no_serialize_heap_lock_excludes_nobody(p):
    """A HEAP_NO_SERIALIZE heap: HeapLock/HeapUnlock return True but another thread's
    HeapLock + HeapAlloc proceed at once; W-KT test_HeapCreate."""
    h = p.HeapCreate(pa.HEAP_NO_SERIALIZE, 0, 0)
    assert p.HeapLock(h) is True
    t, r = _start(lambda: p.HeapLock(h) and p.HeapAlloc(h, 0, 100) and p.HeapUnlock(h))
    t.join(5)
    assert r == [True]
    assert p.HeapUnlock(h) is True


# ---- 1.10 HEAP_GENERATE_EXCEPTIONS ---------------------------------------------------------------


def test_fact57_generate_exceptions_raise_heap_exception(p):
    """With HEAP_GENERATE_EXCEPTIONS (at HeapCreate or per call) HeapAlloc/HeapReAlloc raise
    STATUS_NO_MEMORY (0xC0000017) instead of returning NULL; D-HA, D-HC."""
    g = p.HeapCreate(pa.HEAP_GENERATE_EXCEPTIONS, 0, 0)
    with pytest.raises(pa.HeapException) as e:
        p.HeapAlloc(g, 0, 2**64 - 1)
    assert e.value.code == STATUS_NO_MEMORY and e.value.address == int(g)
    assert isinstance(e.value, pa.StructuredException)
    assert not isinstance(e.value, pa.WinError)
    x = p.HeapAlloc(g, 0, 100)
    with pytest.raises(pa.HeapException) as e:
        p.HeapReAlloc(g, 0, x, 2**64 - 1)
    assert e.value.code == STATUS_NO_MEMORY
    with pytest.raises(pa.HeapException) as e:
        p.HeapReAlloc(g, pa.HEAP_REALLOC_IN_PLACE_ONLY, x, 1 << 20)
    assert e.value.code == STATUS_NO_MEMORY
    assert p.HeapSize(g, 0, x) == 100 and p.HeapValidate(g, 0, x)
    h = p.HeapCreate(0, 0, 0)
    with pytest.raises(pa.HeapException) as e:
        p.HeapAlloc(h, pa.HEAP_GENERATE_EXCEPTIONS, 2**64 - 1)
    assert e.value.code == STATUS_NO_MEMORY
    with winerror(NO_MEMORY, p):  # without the flag: the ordinary error
        p.HeapAlloc(h, 0, 2**64 - 1)


def test_fact57_fixed_heap_exhaustion_raises(p):
    """A fixed HEAP_GENERATE_EXCEPTIONS heap that runs out raises STATUS_NO_MEMORY; D-HC
    (R-HEAP raises STATUS_NO_MEMORY there too)."""
    f = p.HeapCreate(pa.HEAP_GENERATE_EXCEPTIONS, 0x10000, 0x10000)
    with pytest.raises(pa.HeapException) as e:
        p.HeapAlloc(f, 0, 0x20000)
    assert e.value.code == STATUS_NO_MEMORY
    assert "STATUS_NO_MEMORY" in str(e.value)
    assert p.HeapValidate(f)


# ---- 1.11 information classes, LFH, HeapCompact --------------------------------------------------


def test_fact59_query_compatibility(p):
    """A fresh heap's HeapCompatibilityInformation is 0; a NULL heap -> ERROR_NOACCESS (998);
    W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    assert compat(p, h) == 0
    with winerror(998, p):
        p.HeapQueryInformation(0, COMPAT)
    with winerror(998, p):
        p.HeapQueryInformation(None, COMPAT)


def test_fact60_lfh_activates_after_18_allocations(p):
    """18 HeapAlloc(heap, 0, 0) calls (then frees) on a fresh growable heap make the
    compatibility value 2; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    xs = [p.HeapAlloc(h, 0, 0) for _ in range(0x12)]
    for x in xs:
        p.HeapFree(h, 0, x)
    assert compat(p, h) == 2
    assert h.stats()["lfh_active"] >= 1
    assert p.HeapValidate(h)


def test_fact60_set_information_then_17_back_end_allocations(p):
    """After HeapSetInformation(2), 17 allocations of a class still come from the back end
    (walk still 3 entries); the next 18 come from an LFH subsegment (walk > 24 entries); W-KT
    test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    assert p.HeapSetInformation(h, COMPAT, 2) is True
    n = 0x18 + 2 * P
    for _ in range(0x11):
        p.HeapFree(h, 0, p.HeapAlloc(h, 0, n))
    assert len(walk(p, h)) == 3
    xs = [p.HeapAlloc(h, 0, n) for _ in range(0x12)]
    entries = walk(p, h)
    assert len(entries) > 24
    busy = [e for e in entries if e.wFlags & BUSY]
    assert sorted(e.lpData for e in busy) == sorted(xs)
    assert all(e.cbData == n for e in busy)
    assert all(e.iRegionIndex not in (0, 64) for e in busy)
    assert all(p.HeapSize(h, 0, x) == n for x in xs)


def test_fact61_lfh_cannot_be_undone(p):
    """Setting 2 -> True and the query reads 2; then 0 or 1 -> ERROR_GEN_FAILURE (31) and it
    stays 2; a HEAP_NO_SERIALIZE heap refuses 2 with 87 and stays 0; W-KT test_HeapCreate."""
    h = p.HeapCreate(0, 0, 0)
    assert p.HeapSetInformation(h, COMPAT, 2)
    assert compat(p, h) == 2
    for v in (0, 1):
        with winerror(31, p):
            p.HeapSetInformation(h, COMPAT, v)
        assert compat(p, h) == 2
    assert p.HeapSetInformation(h, COMPAT, 2)  # again: fine
    ns = p.HeapCreate(pa.HEAP_NO_SERIALIZE, 0, 0)
    with winerror(87, p):
        p.HeapSetInformation(ns, COMPAT, 2)
    assert compat(p, ns) == 0


@pytest.mark.parametrize("kind", ["fixed", "debug"])
def test_fact62_no_lfh_for_fixed_or_debug_heaps(p, kind):
    """LFH cannot be enabled for fixed-size heaps nor under debug heap options; D-HSI."""
    h = (p.HeapCreate(0, 0x10000, 0x100000) if kind == "fixed"
         else p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_TAIL_CHECK))
    with pytest.raises(pa.WinError):
        p.HeapSetInformation(h, COMPAT, 2)
    xs = [p.HeapAlloc(h, 0, 32) for _ in range(100)]
    assert compat(p, h) == 0 and h.stats()["lfh_active"] == 0
    for x in xs:
        p.HeapFree(h, 0, x)


def test_fact62_termination_on_corruption_takes_no_value(p):
    """HeapEnableTerminationOnCorruption takes no buffer, for one heap or (heap NULL) the
    process; D-HSI. HeapOptimizeResources is accepted (W-NH: success)."""
    h = p.HeapCreate(0, 0, 0)
    assert p.HeapSetInformation(None, pa.HeapEnableTerminationOnCorruption) is True
    assert p.HeapSetInformation(h, pa.HeapEnableTerminationOnCorruption) is True
    assert p.HeapSetInformation(h, pa.HeapOptimizeResources, 1) is True
    assert compat(p, h) == 0


def test_fact63_other_classes_and_values(p):
    """Query of another class -> STATUS_INVALID_INFO_CLASS (87); compatibility without a buffer
    -> ERROR_INSUFFICIENT_BUFFER (122); value 3 -> STATUS_UNSUCCESSFUL (31); W-NH
    RtlQueryHeapInformation, RtlSetHeapInformation."""
    h = p.HeapCreate(0, 0, 0)
    for cls in (pa.HeapEnableTerminationOnCorruption, pa.HeapOptimizeResources, 77):
        with winerror(87, p):
            p.HeapQueryInformation(h, cls)
    with winerror(122, p):
        p.HeapSetInformation(h, COMPAT)
    with winerror(31, p):
        p.HeapSetInformation(h, COMPAT, 3)
    assert compat(p, h) == 0
    with winerror(87, p):
        p.HeapSetInformation(h, 77, 1)


def test_fact64_compact_returns_the_largest_free_block(p):
    """HeapCompact returns the size of the largest committed free block; D-HCP."""
    h = p.HeapCreate(0, 0, 0)
    fresh = p.HeapCompact(h, 0)
    assert fresh == h.stats()["largest_free"] > 0
    xs = [p.HeapAlloc(h, 0, 30000) for _ in range(20)]
    for x in xs:
        p.HeapFree(h, 0, x)
    largest = p.HeapCompact(h, 0)
    assert largest >= 30000
    assert largest == h.stats()["largest_free"]
    # The walk's cbData of a free block leaves out its list links (cbOverhead 4P, fact 49);
    # HeapCompact counts what one allocation could get from it.
    free = [e.cbData for e in walk(p, h) if e.wFlags == 0 and e.iRegionIndex != 64]
    assert max(free) <= largest <= max(free) + 2 * P
    assert p.HeapValidate(h)
