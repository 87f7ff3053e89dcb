"""The Windows facts of /work/shared/reference/virtual-memory.md sections 1.1-1.10 that apply to
private memory, one test (or parametrized group) per fact, through the Python API.

Each test is named after its fact number and cites the source key of the fact. Addresses that
Windows pins as absolute numbers (0x10000, 0x7FFFFFFEFFFF, ...) are checked relative to the
process's own range (conftest.origin).

Facts of these sections that have no Python counterpart, and so no test here:
  3  GetLargePageMinimum (not part of the binding);
  15 VirtualAllocEx/VirtualFreeEx with a NULL process handle (no handles: a Process *is* one);
  17 VirtualAlloc2 alignment requirements (not part of the binding);
  46 NT-level partial release (VirtualFree cannot do it: fact 40);
  47, 59, 74 mapped views and CreateFileMapping (not in this layer);
  53 VirtualProtect with lpflOldProtect = NULL, 60 and 67 VirtualQuery's return value and
     dwLength (the Python signatures have no such out-parameters);
  83 write watch across decommit (Windows itself is inconsistent: deliberately not pinned).
"""
from __future__ import annotations

import platform

import pytest

import pyalloc as pa
from conftest import (GRAN, PAGE, READABLE, VALID_PROTECTIONS, WRITABLE, limits, mbi, origin,
                      rel, winerror)

RW = pa.PAGE_READWRITE
RC = pa.MEM_RESERVE | pa.MEM_COMMIT


def vq(p, address):
    return mbi(p, address)


def expect_vq(p, address, **fields):
    got = vq(p, address)
    for k, v in fields.items():
        assert got[k] == v, f"{k}: {got[k]:#x} != {v:#x} in {p.VirtualQuery(address)!r}"
    return got


# ---- 1.1 GetSystemInfo -------------------------------------------------------------------------


def test_fact01_system_info_x64_values(bigproc):
    """k32-level values of x64 Windows; ntinfo:test_query_basic, kb:fill_system_info."""
    si = bigproc.GetSystemInfo()
    assert si.dwPageSize == 0x1000
    assert si.dwAllocationGranularity == 0x10000
    # lpMinimumApplicationAddress is 0x10000 above the process's NULL, lpMaximumApplicationAddress
    # is the last byte below the top 64 KiB (0x7FFFFFFEFFFF for the 128 TiB x64 space).
    assert rel(bigproc, si.lpMinimumApplicationAddress) == 0x10000
    assert rel(bigproc, si.lpMaximumApplicationAddress) == pa.DEFAULT_ADDRESS_SPACE - 0x10000 - 1
    assert si.lpMinimumApplicationAddress % GRAN == 0
    # The area below the minimum is free and never usable, as Windows' first 64 KiB.
    expect_vq(bigproc, origin(bigproc), State=pa.MEM_FREE, RegionSize=0x10000, AllocationBase=0)
    if platform.machine() in ("x86_64", "AMD64"):
        assert si.wProcessorArchitecture == 9 == pa.PROCESSOR_ARCHITECTURE_AMD64
        assert si.dwProcessorType == 8664
    assert si.dwNumberOfProcessors >= 1
    assert si.dwActiveProcessorMask == (1 << si.dwNumberOfProcessors) - 1


def test_fact02_system_info_32bit_sized_space(new_process):
    """A 2 GiB process reports HighestUserAddress 0x7FFEFFFF; ntinfo:test_query_basic."""
    p = new_process(address_space=1 << 31)
    si = p.GetSystemInfo()
    assert rel(p, si.lpMinimumApplicationAddress) == 0x10000
    assert rel(p, si.lpMaximumApplicationAddress) == 0x7FFEFFFF


# ---- 1.2 VirtualAlloc: sizes, rounding, 64K alignment --------------------------------------------


@pytest.mark.parametrize("atype", [pa.MEM_RESERVE, pa.MEM_COMMIT, RC, 0, 0xDEAD0000])
def test_fact04_zero_size_fails_87(proc, atype):
    """VirtualAlloc(NULL, 0, ...) -> 87, zero size checked first; k32:test_VirtualAlloc."""
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0, atype, pa.PAGE_NOACCESS)
    assert proc.stats()["allocations"] == 0


def test_fact05_reserve_fffc_rounds_to_page_protect_zero(proc):
    """k32:test_VirtualAlloc: reserve 0xFFFC -> VQ {p, p, NOACCESS, 0x10000, RESERVE, 0, PRIVATE}."""
    p = proc.VirtualAlloc(None, 0xFFFC, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
    assert p
    assert vq(proc, p) == dict(BaseAddress=p, AllocationBase=p, AllocationProtect=0x01,
                               RegionSize=0x10000, State=0x2000, Protect=0, Type=0x20000)
    assert proc.stats()["reserved"] == 0x10000


def test_fact06_null_address_results_are_64k_aligned(proc):
    """k32:test_VirtualAlloc: VirtualAlloc(0, 0x2000, RESERVE|COMMIT, EXECUTE_READWRITE)."""
    results = [proc.VirtualAlloc(None, size, RC, pa.PAGE_EXECUTE_READWRITE)
               for size in (0x2000, 1, 0x10001, 0x1000, 0x30000)]
    assert all(r % 0x10000 == 0 for r in results)
    assert len(set(results)) == len(results)


def test_fact08_explicit_address_reuse_after_release(proc):
    """k32:test_VirtualAlloc: after MEM_RELEASE, VirtualAlloc(p, 0x1000, ...) returns exactly p."""
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    assert proc.VirtualAlloc(p, 0x1000, RC, pa.PAGE_EXECUTE_READWRITE) == p
    expect_vq(proc, p, RegionSize=0x1000, State=pa.MEM_COMMIT,
              Protect=pa.PAGE_EXECUTE_READWRITE)


def test_fact09_explicit_address_rounding(proc):
    """MS:VirtualAlloc, uv:allocate_virtual_memory: reserve rounds the base down to 64K, commit
    down to a page; size = round_up_page(addr + size) - base; the rounded base is returned."""
    lo, _ = limits(proc)
    target = lo + 5 * GRAN
    # reserve at an unaligned address inside a free slot
    r = proc.VirtualAlloc(target + 0x1234, 0x2000, pa.MEM_RESERVE, RW)
    assert r == target
    expect_vq(proc, r, AllocationBase=target, RegionSize=0x4000, State=pa.MEM_RESERVE)
    assert proc.stats()["reserved"] == 0x4000
    # commit of 2 bytes straddling a page boundary covers both pages
    c = proc.VirtualAlloc(target + 0x1FFF, 2, pa.MEM_COMMIT, RW)
    assert c == target + 0x1000
    expect_vq(proc, c, BaseAddress=c, RegionSize=0x2000, State=pa.MEM_COMMIT, Protect=RW)
    expect_vq(proc, target, RegionSize=0x1000, State=pa.MEM_RESERVE)
    # reserve+commit with an explicit unaligned address: base rounded to 64K, the rest committed
    r2 = proc.VirtualAlloc(target + GRAN + 0x10, 0x10, RC, RW)
    assert r2 == target + GRAN
    expect_vq(proc, r2, RegionSize=0x1000, State=pa.MEM_COMMIT, AllocationBase=r2)


@pytest.mark.parametrize("atype", [pa.MEM_RESERVE, RC])
def test_fact10_reserve_overlapping_rounds_down_and_conflicts_487(proc, atype):
    """nt:test_NtAllocateVirtualMemory: reserve at p+0x1000 rounds down to p -> 487."""
    p = proc.VirtualAlloc(None, 0x1000, RC, pa.PAGE_EXECUTE_READWRITE)
    with winerror(487, proc):
        proc.VirtualAlloc(p + 0x1000, 0x1000, atype, RW)
    assert proc.stats()["allocations"] == 1
    expect_vq(proc, p, RegionSize=0x1000, Protect=pa.PAGE_EXECUTE_READWRITE)


def test_fact11_reserve_over_any_part_of_an_allocation_487(proc):
    """uv:map_fixed_area, MS:VirtualAlloc: a reservation may not overlap an allocation."""
    lo, _ = limits(proc)
    a = proc.VirtualAlloc(lo + 4 * GRAN, 3 * GRAN, pa.MEM_RESERVE, RW)
    for addr, size in ((lo + 2 * GRAN, 3 * GRAN),        # runs into its first slot
                       (a + 2 * GRAN + 0x5000, 0x1000),   # inside its last slot
                       (a, 3 * GRAN),                      # exactly it
                       (lo + GRAN, 10 * GRAN)):            # covers it
        with winerror(487, proc):
            proc.VirtualAlloc(addr, size, pa.MEM_RESERVE, RW)
    assert proc.stats()["allocations"] == 1
    # the unusable tail of a slot cannot be reserved either
    b = proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE, RW)
    with winerror(487, proc):
        proc.VirtualAlloc(b + 0x8000, 0x1000, pa.MEM_RESERVE, RW)


def test_fact12_address_out_of_range_87(proc):
    """uv:allocate_virtual_memory: below 0x10000, wrap-around, above the user limit -> 87."""
    lo, hi = limits(proc)
    cases = [
        (lo - GRAN, 0x1000, pa.MEM_RESERVE),          # relative 0: NULL page
        (lo - 1, 0x1000, pa.MEM_RESERVE),             # rounds down below the minimum
        (lo - 0x1000, 0x1000, pa.MEM_COMMIT),
        (0x1000, 0x1000, pa.MEM_RESERVE),             # absolute address far below the process
        (hi - 0x1000, 0x2000, pa.MEM_RESERVE),        # runs past the limit
        (hi, 0x1000, pa.MEM_RESERVE),                 # at the limit
        (hi, 0x1000, pa.MEM_COMMIT),
        (lo, (1 << 64) - lo, pa.MEM_RESERVE),         # wraps around
        (lo, (1 << 64) - 1, RC),
    ]
    for addr, size, atype in cases:
        with winerror(87, proc):
            proc.VirtualAlloc(addr, size, atype, RW)
    assert proc.stats()["allocations"] == 0
    # the boundaries themselves are fine
    assert proc.VirtualAlloc(lo, 0x1000, pa.MEM_RESERVE, RW) == lo
    top = proc.VirtualAlloc(hi - 0x1000, 0x1000, pa.MEM_RESERVE, RW)
    assert top == hi - GRAN


def test_fact13_huge_size_87_and_no_room_8(proc):
    """uv:allocate_virtual_memory, kb:VirtualAllocEx: size above the space -> 87; no hole -> 8."""
    lo, hi = limits(proc)
    with winerror(87, proc):
        proc.VirtualAlloc(None, hi - lo + 1, pa.MEM_RESERVE, RW)
    with winerror(87, proc):
        proc.VirtualAlloc(None, 1 << 63, pa.MEM_RESERVE, RW)
    whole = proc.VirtualAlloc(None, hi - lo, pa.MEM_RESERVE, RW)
    assert whole == lo
    with winerror(8, proc):
        proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE, RW)
    with winerror(8, proc):
        proc.VirtualAlloc(None, 0x1000, RC | pa.MEM_TOP_DOWN, RW)
    proc.VirtualFree(whole, 0, pa.MEM_RELEASE)
    assert proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE, RW) == lo


def test_fact14_at_round_to_page_rejected_87(proc):
    """k32:test_VirtualAlloc, nt:test_NtAllocateVirtualMemory: AT_ROUND_TO_PAGE -> 87."""
    assert pa.AT_ROUND_TO_PAGE == 0x40000000
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0x1000, RC | pa.AT_ROUND_TO_PAGE, RW)
    assert proc.stats()["allocations"] == 0


def test_fact16_top_down_takes_the_highest_free_slot(proc):
    """MS:VirtualAlloc, uv:alloc_free_area: candidate = round_down_64K(end - size), from the top."""
    lo, hi = limits(proc)
    a = proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE | pa.MEM_TOP_DOWN, RW)
    assert a == hi - GRAN
    b = proc.VirtualAlloc(None, 0x18000, RC | pa.MEM_TOP_DOWN, RW)
    assert b == a - 2 * GRAN
    c = proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE, RW)  # bottom-up as usual
    assert c == lo
    proc.VirtualFree(a, 0, pa.MEM_RELEASE)
    assert proc.VirtualAlloc(None, 0x1000, pa.MEM_COMMIT | pa.MEM_TOP_DOWN, RW) == a


# ---- 1.3 reserve/commit state machine -------------------------------------------------------------


def test_fact18_commit_noaccess_page_in_reservation(proc):
    """k32:test_VirtualAlloc: VQ(p) = {p, p, 0x01, 0x1000, COMMIT, NOACCESS, PRIVATE}."""
    p = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
    assert proc.VirtualAlloc(p, 0x1000, pa.MEM_COMMIT, pa.PAGE_NOACCESS) == p
    assert vq(proc, p) == dict(BaseAddress=p, AllocationBase=p, AllocationProtect=1,
                               RegionSize=0x1000, State=0x1000, Protect=1, Type=0x20000)
    expect_vq(proc, p + 0x1000, RegionSize=0xF000, State=pa.MEM_RESERVE, Protect=0)


@pytest.mark.parametrize("prot", VALID_PROTECTIONS)
def test_fact19_recommit_succeeds_and_replaces_protection(proc, prot):
    """k32:test_VirtualAlloc_protection, k32:test_VirtualProtect; new prot replaces (uv:set_protection)."""
    b = proc.VirtualAlloc(None, 0x3000, RC, RW)
    proc.write(b + 0x1000, b"keep")
    assert proc.VirtualAlloc(b + 0x1010, 0x10, pa.MEM_COMMIT, prot) == b + 0x1000
    same = prot == RW  # then the three pages form one region again
    expect_vq(proc, b + 0x1000, RegionSize=0x2000 if same else 0x1000, State=pa.MEM_COMMIT,
              Protect=prot, AllocationProtect=RW)
    expect_vq(proc, b, RegionSize=0x3000 if same else 0x1000, Protect=RW)
    assert proc.stats()["committed"] == 0x3000  # no second charge
    if prot in READABLE:
        assert proc.read(b + 0x1000, 4) == b"keep"  # recommitting keeps the data


def test_fact20_commit_at_null_reserves_too(proc):
    """k32:test_VirtualAlloc_protection: MEM_COMMIT alone with NULL reserves and commits."""
    p = proc.VirtualAlloc(None, 0x2000, pa.MEM_COMMIT, RW)
    assert p % GRAN == 0
    assert vq(proc, p) == dict(BaseAddress=p, AllocationBase=p, AllocationProtect=RW,
                               RegionSize=0x2000, State=pa.MEM_COMMIT, Protect=RW,
                               Type=pa.MEM_PRIVATE)
    assert proc.stats()["reserved"] == proc.stats()["committed"] == 0x2000


def test_fact21_commit_outside_any_reservation_487(proc):
    """MS:VirtualAlloc, uv:allocate_virtual_memory: STATUS_NOT_MAPPED_VIEW -> 487."""
    lo, _ = limits(proc)
    with winerror(487, proc):
        proc.VirtualAlloc(lo + 7 * GRAN, 0x1000, pa.MEM_COMMIT, RW)
    b = proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE, RW)
    with winerror(487, proc):  # the unusable tail of its slot
        proc.VirtualAlloc(b + 0x1000, 0x1000, pa.MEM_COMMIT, RW)
    assert proc.stats()["committed"] == 0


def test_fact22_commit_past_the_reservation_end_487_nothing_committed(proc):
    """uv:allocate_virtual_memory: the whole range must lie in one allocation."""
    lo, _ = limits(proc)
    a = proc.VirtualAlloc(lo, 0x10000, pa.MEM_RESERVE, RW)
    b = proc.VirtualAlloc(lo + GRAN, 0x10000, pa.MEM_RESERVE, RW)
    with winerror(487, proc):  # spans both allocations
        proc.VirtualAlloc(a + 0xF000, 0x2000, pa.MEM_COMMIT, RW)
    c = proc.VirtualAlloc(None, 0x3000, pa.MEM_RESERVE, RW)
    with winerror(487, proc):  # runs into the unusable tail
        proc.VirtualAlloc(c, 0x4000, pa.MEM_COMMIT, RW)
    assert proc.stats()["committed"] == 0
    for base in (a, b, c):
        expect_vq(proc, base, State=pa.MEM_RESERVE)


def test_fact23_committed_memory_reads_zero_also_after_decommit(proc):
    """MS:VirtualAlloc, uv:decommit_pages: fresh commits, and recommits, read as zero."""
    p = proc.VirtualAlloc(None, 0x20000, pa.MEM_RESERVE, RW)
    proc.VirtualAlloc(p, 0x20000, pa.MEM_COMMIT, RW)
    assert proc.read(p, 0x20000) == bytes(0x20000)
    proc.write(p + 0xFF0, b"\xAA" * 0x20)
    proc.write(p + 0x10000, b"\x55" * 0x1000)
    proc.VirtualFree(p, 0x20000, pa.MEM_DECOMMIT)
    proc.VirtualAlloc(p, 0x20000, pa.MEM_COMMIT, RW)
    assert proc.read(p, 0x20000) == bytes(0x20000)
    # released and reallocated memory is zero too
    proc.write(p, b"x" * 100)
    proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    q = proc.VirtualAlloc(p, 0x1000, RC, RW)
    assert q == p and proc.read(q, 100) == bytes(100)


@pytest.mark.parametrize("op", ["read", "write", "view"])
def test_fact24_access_to_reserved_page_is_access_violation(proc, op):
    """MS:VirtualFree remarks, uv:get_unix_prot: reserved pages fault with 0xC0000005."""
    p = proc.VirtualAlloc(None, 0x2000, pa.MEM_RESERVE, RW)
    proc.VirtualAlloc(p, 0x1000, pa.MEM_COMMIT, RW)
    with pytest.raises(pa.AccessViolation) as info:
        if op == "read":
            proc.read(p + 0xFFE, 4)
        elif op == "write":
            proc.write(p + 0xFFE, b"abcd")
        else:
            proc.view(p + 0xFFE, 4)
    assert info.value.code == 0xC0000005 == pa.STATUS_ACCESS_VIOLATION
    assert info.value.address == p + 0x1000
    assert info.value.operation == ("write" if op == "write" else "read")
    assert proc.read(p + 0xFFE, 2) == b"\0\0"  # all or nothing: nothing was written


# ---- 1.4 invalid flags and protections -----------------------------------------------------------


@pytest.mark.parametrize("atype", [pa.MEM_RESERVE, pa.MEM_COMMIT, RC])
def test_fact25_protect_zero_87(proc, atype):
    """k32:test_VirtualAlloc: flProtect = 0 -> 87."""
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0x1000, atype, 0)
    assert proc.stats()["allocations"] == 0


def test_fact26_protection_table_for_commit(proc):
    """k32:test_VirtualAlloc_protection, k32:test_VirtualProtect: exactly the six base values."""
    for prot in range(0x100):
        if prot in VALID_PROTECTIONS:
            p = proc.VirtualAlloc(None, PAGE, pa.MEM_COMMIT, prot)
            assert vq(proc, p) == dict(BaseAddress=p, AllocationBase=p, AllocationProtect=prot,
                                       RegionSize=PAGE, State=pa.MEM_COMMIT, Protect=prot,
                                       Type=pa.MEM_PRIVATE)
            proc.VirtualFree(p, 0, pa.MEM_RELEASE)
        else:
            with winerror(87, proc):
                proc.VirtualAlloc(None, PAGE, pa.MEM_COMMIT, prot)
    assert proc.stats()["allocations"] == 0
    # bits above the modifiers are invalid too
    for prot in (RW | 0x800, RW | 0x10000, RW | 0x40000000, RW | 0x80000000):
        with winerror(87, proc):
            proc.VirtualAlloc(None, PAGE, pa.MEM_COMMIT, prot)


@pytest.mark.parametrize("prot", sorted(WRITABLE))
def test_fact27_writing_does_not_change_protect(proc, prot):
    """k32:test_VirtualAlloc_protection: Protect unchanged by a write."""
    p = proc.VirtualAlloc(None, PAGE, pa.MEM_COMMIT, prot)
    before = vq(proc, p)
    proc.write(p, b"\x01\x02")
    with proc.view(p, 4) as mv:
        mv[2] = 3
    assert vq(proc, p) == before
    assert proc.read(p, 3) == b"\x01\x02\x03"


def test_fact28_readonly_plus_execute_87(proc):
    """k32:test_VirtualAlloc: PAGE_READONLY|PAGE_EXECUTE -> 87."""
    with winerror(87, proc):
        proc.VirtualAlloc(None, PAGE, RC, pa.PAGE_READONLY | pa.PAGE_EXECUTE)


def test_fact29_nocache_is_a_per_allocation_attribute(proc):
    """k32:test_VirtualAlloc: NOCACHE sticks to the allocation; dropped by VirtualProtect elsewhere."""
    p = proc.VirtualAlloc(None, 0x2000, pa.MEM_COMMIT, RW | pa.PAGE_NOCACHE)
    expect_vq(proc, p, AllocationProtect=0x204, Protect=0x204, RegionSize=0x2000)
    assert proc.VirtualProtect(p, 0x1000, RW) == 0x204
    expect_vq(proc, p, Protect=0x204, RegionSize=0x2000)
    assert proc.VirtualProtect(p, 0x1000, pa.PAGE_READONLY) == 0x204
    expect_vq(proc, p, Protect=0x202, RegionSize=0x1000)
    q = proc.VirtualAlloc(None, 0x1000, pa.MEM_COMMIT, RW)
    assert proc.VirtualProtect(q, 0x1000, pa.PAGE_READONLY | pa.PAGE_NOCACHE) == RW
    expect_vq(proc, q, Protect=pa.PAGE_READONLY, AllocationProtect=RW)


def test_fact30_write_watch_needs_reserve(proc):
    """k32:test_write_watch: MEM_WRITE_WATCH alone -> 87; with MEM_RESERVE it works."""
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0x10000, pa.MEM_WRITE_WATCH, RW)
    p = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE | pa.MEM_WRITE_WATCH, RW)
    expect_vq(proc, p, State=pa.MEM_RESERVE, RegionSize=0x10000)
    assert proc.GetWriteWatch(0, p, 0x10000) == ([], PAGE)


@pytest.mark.parametrize("atype", [0, pa.MEM_DECOMMIT, pa.MEM_RELEASE, pa.MEM_PHYSICAL,
                                   pa.MEM_COMMIT | pa.MEM_PHYSICAL, pa.MEM_LARGE_PAGES,
                                   pa.MEM_RESERVE | pa.MEM_4MB_PAGES, pa.MEM_TOP_DOWN,
                                   pa.MEM_RESERVE | 0x10, pa.MEM_FREE])
def test_fact31_bad_allocation_type_87(proc, atype):
    """uv:NtAllocateVirtualMemory (type_mask), uv:allocate_virtual_memory."""
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0x1000, atype, RW)
    assert proc.stats()["allocations"] == 0


def test_fact31_large_pages_need_a_privilege_1314(proc):
    """MS:VirtualAlloc: MEM_LARGE_PAGES needs SeLockMemoryPrivilege (section 4 expects 1314)."""
    with winerror(1314, proc):
        proc.VirtualAlloc(None, 0x200000, RC | pa.MEM_LARGE_PAGES, RW)
    assert proc.stats()["allocations"] == 0


@pytest.mark.parametrize("atype", [pa.MEM_RESERVE, RC])
def test_fact32_guard_with_noaccess_87(proc, atype):
    """creating-guard-pages: PAGE_GUARD|PAGE_NOACCESS is invalid (recommended emulation: 87)."""
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0x1000, atype, pa.PAGE_NOACCESS | pa.PAGE_GUARD)
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    with winerror(87, proc):
        proc.VirtualProtect(p, 0x1000, pa.PAGE_NOACCESS | pa.PAGE_GUARD)
    expect_vq(proc, p, Protect=RW)


# ---- 1.5 MEM_RESET / MEM_RESET_UNDO ---------------------------------------------------------------


def test_fact33_mem_reset_keeps_state_ignores_protect(proc):
    """k32:test_VirtualAlloc: MEM_RESET -> p; data old or zero; VQ unchanged; flProtect ignored."""
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    proc.write(p, b"data" * 1024)
    before = vq(proc, p)
    assert proc.VirtualAlloc(p, 0x1000, pa.MEM_RESET, pa.PAGE_NOACCESS) == p
    assert vq(proc, p) == before
    assert proc.read(p, 0x1000) in (b"data" * 1024, bytes(0x1000))
    assert proc.stats()["committed"] == 0x1000


def test_fact36_mem_reset_cannot_be_combined(proc):
    """MS:VirtualAlloc: MEM_RESET "cannot be used with any other value"."""
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    for atype in (pa.MEM_RESET | pa.MEM_COMMIT, pa.MEM_RESET | pa.MEM_RESERVE,
                  pa.MEM_RESET | pa.MEM_TOP_DOWN, pa.MEM_RESET | pa.MEM_RESET_UNDO):
        with winerror(87, proc):
            proc.VirtualAlloc(p, 0x1000, atype, RW)
    with winerror(87, proc):  # and it needs an address
        proc.VirtualAlloc(None, 0x1000, pa.MEM_RESET, RW)


def test_fact37_mem_reset_undo(proc):
    """MS:VirtualAlloc: MEM_RESET_UNDO = 0x01000000; success means the data is intact."""
    assert pa.MEM_RESET_UNDO == 0x01000000
    p = proc.VirtualAlloc(None, 0x4000, RC, RW)
    data = bytes(range(256)) * 64
    proc.write(p, data)
    proc.VirtualAlloc(p, 0x4000, pa.MEM_RESET, RW)
    try:
        assert proc.VirtualAlloc(p, 0x4000, pa.MEM_RESET_UNDO, RW) == p
    except pa.WinError:
        # failure means some data was replaced by zeros (host memory pressure)
        pages = [proc.read(p + i, PAGE) for i in range(0, 0x4000, PAGE)]
        assert bytes(PAGE) in pages
    else:
        assert proc.read(p, 0x4000) == data
    with winerror(87, proc):
        proc.VirtualAlloc(p, 0x1000, pa.MEM_RESET_UNDO | pa.MEM_COMMIT, RW)


# ---- 1.6 VirtualFree ---------------------------------------------------------------------------------


def test_fact38_free_type_zero_or_mem_free_87(proc):
    """k32:test_VirtualAlloc: VirtualFree(p, 0x10000, 0) and VirtualFree(p, 0, MEM_FREE) -> 87."""
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    with winerror(87, proc):
        proc.VirtualFree(p, 0x10000, 0)
    with winerror(87, proc):
        proc.VirtualFree(p, 0, pa.MEM_FREE)
    expect_vq(proc, p, State=pa.MEM_COMMIT, RegionSize=0x10000)


def test_fact40_release_with_a_size_87(proc):
    """k32:test_VirtualAlloc, kb:VirtualFreeEx: MEM_RELEASE with non-zero size -> 87."""
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    for size in (1, 0x1000, 0x10000):
        with winerror(87, proc):
            proc.VirtualFree(p, size, pa.MEM_RELEASE)
    assert proc.stats()["allocations"] == 1
    assert proc.VirtualFree(p, 0, pa.MEM_RELEASE) is True
    expect_vq(proc, p, State=pa.MEM_FREE)


def test_fact44_double_free_and_free_of_free_memory_487(proc):
    """nt:test_NtFreeVirtualMemory: STATUS_MEMORY_NOT_ALLOCATED -> 487."""
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    with winerror(487, proc):
        proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    with winerror(487, proc):
        proc.VirtualFree(p, 0x1000, pa.MEM_DECOMMIT)
    q = proc.VirtualAlloc(None, 0x1000, RC, RW)
    with winerror(487, proc):  # the unusable tail of q's slot
        proc.VirtualFree(q + 0x2000, 0x1000, pa.MEM_DECOMMIT)
    with winerror(487, proc):  # not at the base
        proc.VirtualFree(q + 0x1000, 0, pa.MEM_RELEASE)


def test_fact48_free_null_or_both_types_87(proc):
    """uv:NtFreeVirtualMemory, MSVC C6331: NULL -> 87; MEM_DECOMMIT|MEM_RELEASE -> 87."""
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    for ftype in (pa.MEM_RELEASE, pa.MEM_DECOMMIT):
        with winerror(87, proc):
            proc.VirtualFree(None, 0, ftype)
        with winerror(87, proc):
            proc.VirtualFree(0, 0x1000, ftype)
    with winerror(87, proc):
        proc.VirtualFree(p, 0, pa.MEM_DECOMMIT | pa.MEM_RELEASE)
    with winerror(87, proc):
        proc.VirtualFree(p, 0x1000, pa.MEM_DECOMMIT | pa.MEM_RELEASE)
    expect_vq(proc, p, State=pa.MEM_COMMIT, RegionSize=0x10000)


def test_fact49_release_of_mixed_region_frees_everything(proc):
    """MS:VirtualFree, k32:test_stack_commit: 4 MiB with some pages committed, released at once."""
    p = proc.VirtualAlloc(None, 0x400000, pa.MEM_RESERVE, RW)
    proc.VirtualAlloc(p + 0x3FE000, 0x2000, pa.MEM_COMMIT, RW)
    proc.VirtualAlloc(p + 0x100000, 0x1000, pa.MEM_COMMIT, RW | pa.PAGE_GUARD)
    assert proc.stats()["committed"] == 0x3000
    assert proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    for a in (p, p + 0x100000, p + 0x3FE000):
        expect_vq(proc, a, State=pa.MEM_FREE, AllocationBase=0, Type=0)
    assert proc.stats()["committed"] == proc.stats()["reserved"] == 0


# ---- 1.7 VirtualProtect -------------------------------------------------------------------------------


def test_fact50_protect_reserved_pages_487(proc):
    """k32:test_VirtualAlloc: VirtualProtect(p, 0xFFFC, PAGE_READONLY) on reserved -> 487."""
    p = proc.VirtualAlloc(None, 0xFFFC, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
    with winerror(487, proc):
        proc.VirtualProtect(p, 0xFFFC, pa.PAGE_READONLY)


def test_fact51_protect_partly_committed_487_nothing_changes(proc):
    """k32:test_VirtualAlloc, MS:VirtualProtect: some pages committed -> 487, no change."""
    p = proc.VirtualAlloc(None, 0xFFFC, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
    proc.VirtualAlloc(p, 0x1000, pa.MEM_COMMIT, pa.PAGE_NOACCESS)
    with winerror(487, proc):
        proc.VirtualProtect(p, 0xFFFC, pa.PAGE_READONLY)
    expect_vq(proc, p, Protect=pa.PAGE_NOACCESS, RegionSize=0x1000, State=pa.MEM_COMMIT)
    expect_vq(proc, p + 0x1000, State=pa.MEM_RESERVE, Protect=0)


def test_fact52_protect_chain_returns_old_values(proc):
    """k32:test_VirtualAlloc: NOACCESS -> READONLY (old 0x01) -> READWRITE (old 0x02)."""
    p = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
    proc.VirtualAlloc(p, 0x1000, pa.MEM_COMMIT, pa.PAGE_NOACCESS)
    assert proc.VirtualProtect(p, 0x1000, pa.PAGE_READONLY) == 0x01
    assert proc.VirtualProtect(p, 0x1000, RW) == 0x02
    expect_vq(proc, p, RegionSize=0x1000, State=pa.MEM_COMMIT, Protect=0x04)


def test_fact54_protection_targets_from_a_committed_page(proc):
    """k32:test_VirtualProtect: the six bases succeed (old = previous); others 87, unchanged."""
    p = proc.VirtualAlloc(None, 0x1000, RC, pa.PAGE_NOACCESS)
    current = pa.PAGE_NOACCESS
    for prot in range(0x100):
        if prot in VALID_PROTECTIONS:
            assert proc.VirtualProtect(p, 0x1000, prot) == current
            current = prot
            expect_vq(proc, p, Protect=prot, AllocationProtect=pa.PAGE_NOACCESS)
        else:
            with winerror(87, proc):
                proc.VirtualProtect(p, 0x1000, prot)
            expect_vq(proc, p, Protect=current)


def test_fact55_rw_plus_execute_writecopy_or_zero_87(proc):
    """k32:test_VirtualAlloc: PAGE_READWRITE|PAGE_EXECUTE_WRITECOPY and 0 -> 87."""
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    for prot in (RW | pa.PAGE_EXECUTE_WRITECOPY, 0, pa.PAGE_WRITECOPY, pa.PAGE_EXECUTE_WRITECOPY):
        with winerror(87, proc):
            proc.VirtualProtect(p, 0x1000, prot)
    expect_vq(proc, p, Protect=RW)


def test_fact56_old_protection_is_the_first_pages(proc):
    """MS:VirtualProtect, uv:NtProtectVirtualMemory: old = first page's protection."""
    p = proc.VirtualAlloc(None, 0x3000, RC, RW)
    proc.VirtualProtect(p + 0x1000, 0x1000, pa.PAGE_EXECUTE_READ)
    proc.VirtualProtect(p + 0x2000, 0x1000, pa.PAGE_READONLY | pa.PAGE_GUARD)
    assert proc.VirtualProtect(p + 0x1000, 0x2000, pa.PAGE_NOACCESS) == pa.PAGE_EXECUTE_READ
    assert proc.VirtualProtect(p + 0x2000, 0x1000, RW) == pa.PAGE_NOACCESS
    proc.VirtualProtect(p + 0x2000, 0x1000, pa.PAGE_READONLY | pa.PAGE_GUARD)
    assert proc.VirtualProtect(p + 0x2FFF, 1, RW) == pa.PAGE_READONLY | pa.PAGE_GUARD
    assert proc.VirtualProtect(p, 0x3000, RW) == RW
    expect_vq(proc, p, RegionSize=0x3000, Protect=RW)


def test_fact57_protect_across_allocations_or_free_memory_fails(proc):
    """MS:VirtualProtect (one allocation only); Wine's code is 87 (uv:NtProtectVirtualMemory)."""
    lo, hi = limits(proc)
    a = proc.VirtualAlloc(lo, 0x10000, RC, RW)
    b = proc.VirtualAlloc(lo + GRAN, 0x10000, RC, RW)
    with winerror(87, proc):
        proc.VirtualProtect(a + 0xF000, 0x2000, pa.PAGE_READONLY)
    with winerror(87, proc):
        proc.VirtualProtect(lo + 9 * GRAN, 0x1000, pa.PAGE_READONLY)
    with winerror(87, proc):
        proc.VirtualProtect(hi, 0x1000, pa.PAGE_READONLY)
    expect_vq(proc, a, Protect=RW, RegionSize=0x10000)
    expect_vq(proc, b, Protect=RW, RegionSize=0x10000)


# ---- 1.8 VirtualQuery ---------------------------------------------------------------------------------


def test_fact62_regions_never_span_allocations(proc):
    """MS:VirtualQuery, uv:fill_basic_memory_info: adjacent identical allocations stay apart."""
    lo, _ = limits(proc)
    a = proc.VirtualAlloc(lo, 0x10000, RC, RW)
    b = proc.VirtualAlloc(lo + GRAN, 0x10000, RC, RW)
    expect_vq(proc, a, RegionSize=0x10000, AllocationBase=a)
    expect_vq(proc, b, RegionSize=0x10000, AllocationBase=b)
    expect_vq(proc, a + 0x8000, BaseAddress=a + 0x8000, RegionSize=0x8000)


def test_fact63_free_memory_query(proc):
    """k32:test_MapViewOfFile, MS:VirtualQuery (40 MB free, query at +10 MB -> 30 MB)."""
    lo, hi = limits(proc)
    p = proc.VirtualAlloc(lo + 40 * GRAN, 0x1000, pa.MEM_RESERVE, RW)
    assert vq(proc, lo + 10 * GRAN + 0x123) == dict(
        BaseAddress=lo + 10 * GRAN, AllocationBase=0, AllocationProtect=0,
        RegionSize=30 * GRAN, State=pa.MEM_FREE, Protect=pa.PAGE_NOACCESS, Type=0)
    # the tail of p's slot is free up to the top
    expect_vq(proc, p + 0x1000, State=pa.MEM_FREE, RegionSize=hi - (p + 0x1000))
    proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    expect_vq(proc, lo, RegionSize=hi - lo, State=pa.MEM_FREE, AllocationBase=0)


def test_fact64_allocation_protect_never_changes(proc):
    """k32:test_guard_page, k32:test_MapViewOfFile: AllocationProtect is allocation-time only."""
    p = proc.VirtualAlloc(None, 0x4000, pa.MEM_RESERVE, pa.PAGE_EXECUTE_READ)
    proc.VirtualAlloc(p, 0x2000, pa.MEM_COMMIT, RW | pa.PAGE_GUARD)
    proc.VirtualProtect(p + 0x1000, 0x1000, pa.PAGE_NOACCESS)
    with pytest.raises(pa.GuardPageViolation):
        proc.read(p, 1)
    proc.VirtualFree(p + 0x1000, 0x1000, pa.MEM_DECOMMIT)
    proc.VirtualAlloc(p + 0x3000, 0x1000, pa.MEM_COMMIT, pa.PAGE_READONLY)
    for a in range(p, p + 0x4000, PAGE):
        expect_vq(proc, a, AllocationProtect=pa.PAGE_EXECUTE_READ, AllocationBase=p)


def test_fact65_write_watch_invisible_to_query(proc):
    """k32:test_write_watch, uv:fill_basic_memory_info: no split, no visible bit."""
    p = proc.VirtualAlloc(None, 0x10000, RC | pa.MEM_WRITE_WATCH, RW)
    proc.write(p + 0x3000, b"x")
    assert vq(proc, p) == dict(BaseAddress=p, AllocationBase=p, AllocationProtect=RW,
                               RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RW,
                               Type=pa.MEM_PRIVATE)
    assert proc.GetWriteWatch(0, p, 0x10000)[0] == [p + 0x3000]


def test_fact66_query_address_limits(bigproc):
    """ntinfo:test_queryvirtualmemory: VQ(NULL), VQ(0xFFFF), VQ(0x10000), VQ(max) succeed;
    VQ(max + 1) and VQ(~0) -> 87."""
    o = origin(bigproc)
    lo, hi = limits(bigproc)
    for a in (0, o, o + 0xFFFF, lo, hi - 1):
        info = vq(bigproc, a)
        assert info["State"] == pa.MEM_FREE
        assert info["BaseAddress"] == a & ~0xFFF
    assert vq(bigproc, o + 0xFFFF)["RegionSize"] == 0x1000
    assert vq(bigproc, hi - 1)["RegionSize"] == 0x1000
    for a in (hi, hi + GRAN, (1 << 64) - 1):
        with winerror(87, bigproc):
            bigproc.VirtualQuery(a)


def test_fact68_reserved_protect_zero_free_protect_noaccess(proc):
    """k32:test_VirtualAlloc, k32:test_MapViewOfFile: do not swap 0 and PAGE_NOACCESS."""
    p = proc.VirtualAlloc(None, 0x2000, pa.MEM_RESERVE, RW)
    expect_vq(proc, p, State=pa.MEM_RESERVE, Protect=0)
    expect_vq(proc, p + 0x2000, State=pa.MEM_FREE, Protect=pa.PAGE_NOACCESS)


# ---- 1.9 guard pages ----------------------------------------------------------------------------------


def test_fact69_guard_allocation_query(proc):
    """k32:test_guard_page: VQ = {Protect 0x104, AllocProt 0x104, Size 0x1000, COMMIT, PRIVATE}."""
    p = proc.VirtualAlloc(None, 0x1000, RC, RW | pa.PAGE_GUARD)
    expect_vq(proc, p, Protect=0x104, AllocationProtect=0x104, RegionSize=0x1000,
              State=pa.MEM_COMMIT, Type=pa.MEM_PRIVATE)


def test_fact70_protect_guard_old_values(proc):
    """k32:test_guard_page: old 0x104 then old 0x04."""
    p = proc.VirtualAlloc(None, 0x1000, RC, RW | pa.PAGE_GUARD)
    assert proc.VirtualProtect(p, 0x1000, RW) == 0x104
    assert proc.VirtualProtect(p, 0x1000, RW | pa.PAGE_GUARD) == 0x04
    expect_vq(proc, p, Protect=0x104)


@pytest.mark.parametrize("op", ["read", "write"])
def test_fact71_first_access_raises_guard_violation_once(proc, op):
    """k32:test_guard_page, creating-guard-pages, uv:virtual_handle_fault."""
    p = proc.VirtualAlloc(None, 0x1000, RC, RW | pa.PAGE_GUARD)
    hits = proc.stats()["guard_hits"]
    with pytest.raises(pa.GuardPageViolation) as info:
        if op == "read":
            proc.read(p + 0x10, 4)
        else:
            proc.write(p + 0x10, b"abcd")
    e = info.value
    assert e.code == 0x80000001 == pa.STATUS_GUARD_PAGE_VIOLATION
    assert (e.address, e.operation) == (p + 0x10, op)
    assert proc.stats()["guard_hits"] == hits + 1
    expect_vq(proc, p, Protect=0x04, AllocationProtect=0x104)
    # the retried access succeeds: exactly one exception
    if op == "read":
        assert proc.read(p + 0x10, 4) == bytes(4)
    else:
        proc.write(p + 0x10, b"abcd")
        assert proc.read(p + 0x10, 4) == b"abcd"
    assert proc.stats()["guard_hits"] == hits + 1


def test_fact72_guard_hit_inside_a_call_fails_the_call_once(proc):
    """k32:test_guard_page [T*]: the call fails once and clears the guard; data intact."""
    p = proc.VirtualAlloc(None, 0x2000, RC, RW)
    proc.write(p + 0x1000, b"intact")
    proc.VirtualProtect(p + 0x1000, 0x1000, RW | pa.PAGE_GUARD)
    with pytest.raises(pa.GuardPageViolation) as info:
        proc.read(p + 0xFFE, 8)  # starts on the normal page, runs into the guard page
    assert info.value.address == p + 0x1000
    assert proc.read(p + 0xFFE, 8) == b"\0\0intact"
    proc.VirtualProtect(p + 0x1000, 0x1000, RW | pa.PAGE_GUARD)
    with pytest.raises(pa.GuardPageViolation):
        proc.view(p + 0x1000, 6)
    with proc.view(p + 0x1000, 6) as mv:
        assert bytes(mv) == b"intact"


def test_fact73_guard_plus_write_watch(proc):
    """k32:test_guard_page: the guard raises once, then the write is reported (count 1)."""
    p = proc.VirtualAlloc(None, 0x1000, RC | pa.MEM_WRITE_WATCH, RW | pa.PAGE_GUARD)
    with pytest.raises(pa.GuardPageViolation):
        proc.write(p, b"\x01")
    assert proc.GetWriteWatch(0, p, 0x1000) == ([], PAGE)  # the faulting write did not happen
    proc.write(p, b"\x01")
    assert proc.GetWriteWatch(0, p, 0x1000) == ([p], PAGE)


# ---- 1.10 write watch ---------------------------------------------------------------------------------


def test_fact75_write_watch_allocation_looks_normal(proc):
    """k32:test_write_watch: normal VQ; GetWriteWatch -> 0 pages."""
    p = proc.VirtualAlloc(None, 0x10000, RC | pa.MEM_WRITE_WATCH, RW)
    assert vq(proc, p) == dict(BaseAddress=p, AllocationBase=p, AllocationProtect=RW,
                               RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RW,
                               Type=pa.MEM_PRIVATE)
    assert proc.GetWriteWatch(0, p, 0x10000) == ([], 0x1000)


def test_fact76_write_watch_return_conventions(proc):
    """k32:test_write_watch, kb:GetWriteWatch: success returns; failure (UINT)~0 -> WinError + GLE."""
    p = proc.VirtualAlloc(None, 0x10000, RC | pa.MEM_WRITE_WATCH, RW)
    q = proc.VirtualAlloc(None, 0x10000, RC, RW)
    assert isinstance(proc.GetWriteWatch(0, p, 0x10000), tuple)
    assert proc.ResetWriteWatch(p, 0x10000) is True
    with winerror(87, proc):
        proc.GetWriteWatch(0, q, 0x10000)
    with winerror(87, proc):
        proc.ResetWriteWatch(q, 0x10000)


def test_fact77_write_watch_reports_and_resets(proc):
    """k32:test_write_watch: write base[page+1] -> [base+0x1000], granularity 0x1000; RESET."""
    base = proc.VirtualAlloc(None, 0x10000, RC | pa.MEM_WRITE_WATCH, RW)
    proc.write(base + 0x1001, b"\x07")
    assert proc.GetWriteWatch(0, base, 0x10000) == ([base + 0x1000], 0x1000)
    assert proc.GetWriteWatch(0, base, 0x10000) == ([base + 0x1000], 0x1000)  # no reset
    assert proc.GetWriteWatch(pa.WRITE_WATCH_FLAG_RESET, base, 0x10000) == ([base + 0x1000],
                                                                             0x1000)
    assert proc.GetWriteWatch(0, base, 0x10000) == ([], 0x1000)
    assert proc.read(base + 0x1001, 1) == b"\x07"


def test_fact80_protect_does_not_change_watch_state(proc):
    """k32:test_write_watch: dirty pages stay dirty after NOACCESS; allocation prot irrelevant."""
    base = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE | pa.MEM_WRITE_WATCH,
                             pa.PAGE_NOACCESS)
    proc.VirtualAlloc(base, 0x2000, pa.MEM_COMMIT, pa.PAGE_NOACCESS)
    proc.VirtualProtect(base, 0x2000, RW)
    proc.write(base + 0x1000, b"w")
    proc.VirtualProtect(base, 0x2000, pa.PAGE_NOACCESS)
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base + 0x1000]
    proc.VirtualProtect(base, 0x2000, pa.PAGE_EXECUTE_READWRITE)
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base + 0x1000]


def test_fact81_write_watch_invalid_parameters_87(proc):
    """k32:test_write_watch, uv:NtGetWriteWatch."""
    base = proc.VirtualAlloc(None, 0x10000, RC | pa.MEM_WRITE_WATCH, RW)
    plain = proc.VirtualAlloc(None, 0x10000, RC, RW)
    proc.write(base, b"x")
    bad_get = [
        dict(flags=0, address=None, size=0x10000),          # base NULL
        dict(flags=0, address=plain, size=0x10000),         # not watched
        dict(flags=0, address=base, size=0x10000, count=0),  # *count = 0
        dict(flags=2, address=base, size=0x10000),          # bad flags
        dict(flags=0xFFFFFFFF, address=base, size=0x10000),
        dict(flags=0, address=base, size=0),                # size 0
        dict(flags=0, address=base, size=0x10001),          # larger than the allocation
        dict(flags=0, address=base + 0xF000, size=0x1001),  # crosses its end
        dict(flags=0, address=base + 0x10000, size=0x1000),  # past it
    ]
    for kwargs in bad_get:
        with winerror(87, proc):
            proc.GetWriteWatch(**kwargs)
    for address, size in ((base, 0), (plain, 0x1000), (None, 0x1000),
                          (base + 0xF000, 0x2000)):
        with winerror(87, proc):
            proc.ResetWriteWatch(address, size)
    # nothing above reset the watch
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base]


def test_fact82_only_completed_writes_count(proc):
    """k32:test_write_watch (kernel writes count, a failed ReadFile marks nothing): stores made
    by C code through a memoryview count; a write that faults part-way marks nothing."""
    base = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE | pa.MEM_WRITE_WATCH, RW)
    proc.VirtualAlloc(base, 0x2000, pa.MEM_COMMIT, RW)
    with pytest.raises(pa.AccessViolation):
        proc.write(base + 0x1FF0, b"y" * 0x20)  # runs into the reserved third page
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == []
    assert proc.read(base + 0x1FF0, 0x10) == bytes(0x10)
    with proc.view(base, 0x2000) as mv:
        mv[0x1800:0x1804] = b"kern"
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base + 0x1000]
