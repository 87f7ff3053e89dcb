"""The Python API of layers 1-2: Process, the VirtualAlloc family, read/write/view, errors,
regions, reprs, argument handling and threads (the contract of the issue text), beyond the
per-fact tests of test_virtual_facts.py."""
from __future__ import annotations

import ctypes
import gc
import os
import pickle
import random
import re
import sys
import threading

import pytest

import pyalloc as pa
from conftest import GRAN, PAGE, limits, mbi, origin, winerror

RW, RO, NA = pa.PAGE_READWRITE, pa.PAGE_READONLY, pa.PAGE_NOACCESS
RC = pa.MEM_RESERVE | pa.MEM_COMMIT
WW = RC | pa.MEM_WRITE_WATCH


def regions_by_base(p):
    return {r.base: r for r in p.regions()}


# ---- rounding with explicit addresses ------------------------------------------------------------


@pytest.mark.parametrize("offset, size, atype, base_off, region", [
    (0x0000, 0x1, pa.MEM_RESERVE, 0x0000, 0x1000),
    (0x0FFF, 0x2, pa.MEM_RESERVE, 0x0000, 0x2000),     # 0xFFF..0x1000 straddles: 2 pages
    (0x8000, 0x1000, pa.MEM_RESERVE, 0x0000, 0x9000),  # base rounds down to the slot
    (0xFFFF, 0x1, pa.MEM_RESERVE, 0x0000, 0x10000),
    (0xFFFF, 0x2, pa.MEM_RESERVE, 0x0000, 0x11000),    # spills into a second slot
    (0x1234, 0x10, RC, 0x0000, 0x2000),
    (0x0000, 0x10000, RC, 0x0000, 0x10000),
    (0x0000, 0x10001, RC, 0x0000, 0x11000),
])
def test_explicit_reserve_rounding(proc, offset, size, atype, base_off, region):
    lo, _ = limits(proc)
    slot = lo + 3 * GRAN
    assert proc.VirtualAlloc(slot + offset, size, atype, RW) == slot + base_off
    info = mbi(proc, slot)
    assert (info["AllocationBase"], info["RegionSize"]) == (slot, region)
    assert proc.stats()["reserved"] == region
    assert proc.stats()["committed"] == (region if atype & pa.MEM_COMMIT else 0)


@pytest.mark.parametrize("offset, size, base_off, pages", [
    (0x0000, 1, 0x0000, 1),
    (0x0FFF, 1, 0x0000, 1),
    (0x0FFF, 2, 0x0000, 2),
    (0x1000, 0x1000, 0x1000, 1),
    (0x1001, 0x1000, 0x1000, 2),
    (0x2800, 0x3000, 0x2000, 4),
])
def test_explicit_commit_rounds_to_pages(proc, offset, size, base_off, pages):
    r = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, NA)
    assert proc.VirtualAlloc(r + offset, size, pa.MEM_COMMIT, RW) == r + base_off
    info = mbi(proc, r + base_off)
    assert (info["State"], info["RegionSize"]) == (pa.MEM_COMMIT, pages * PAGE)
    assert proc.stats()["committed"] == pages * PAGE


def test_rounded_decommit_and_protect_ranges(proc):
    r = proc.VirtualAlloc(None, 0x8000, RC, RW)
    proc.VirtualFree(r + 0x1FFF, 2, pa.MEM_DECOMMIT)  # pages 1 and 2
    assert [mbi(proc, r + i * PAGE)["State"] for i in range(4)] == [
        pa.MEM_COMMIT, pa.MEM_RESERVE, pa.MEM_RESERVE, pa.MEM_COMMIT]
    assert proc.VirtualProtect(r + 0x3FFF, 2, RO) == RW  # pages 3 and 4
    assert mbi(proc, r + 0x3000)["RegionSize"] == 0x2000
    assert mbi(proc, r + 0x3000)["Protect"] == RO
    assert proc.VirtualProtect(r + 0x5800, 0x800, NA) == RW  # exactly the page
    assert mbi(proc, r + 0x5000)["RegionSize"] == 0x1000
    assert mbi(proc, r + 0x5000)["Protect"] == NA


# ---- region split and merge ---------------------------------------------------------------------


def test_protect_splits_and_merges_regions(proc):
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    assert mbi(proc, p)["RegionSize"] == 0x10000
    proc.VirtualProtect(p + 0x4000, 0x2000, RO)
    assert [(mbi(proc, a)["BaseAddress"] - p, mbi(proc, a)["RegionSize"], mbi(proc, a)["Protect"])
            for a in (p, p + 0x4000, p + 0x6000)] == [
        (0, 0x4000, RW), (0x4000, 0x2000, RO), (0x6000, 0xA000, RW)]
    # querying in the middle of a region starts the region there
    assert mbi(proc, p + 0x5123)["BaseAddress"] == p + 0x5000
    assert mbi(proc, p + 0x5123)["RegionSize"] == 0x1000
    proc.VirtualProtect(p + 0x4000, 0x2000, RW)
    assert mbi(proc, p)["RegionSize"] == 0x10000
    # a guard page is its own region, and merges back once the guard is gone
    proc.VirtualProtect(p + 0x8000, 0x1000, RW | pa.PAGE_GUARD)
    assert mbi(proc, p)["RegionSize"] == 0x8000
    assert mbi(proc, p + 0x8000)["Protect"] == RW | pa.PAGE_GUARD
    with pytest.raises(pa.GuardPageViolation):
        proc.read(p + 0x8000, 1)
    assert mbi(proc, p)["RegionSize"] == 0x10000


def test_commit_and_decommit_split_and_merge_regions(proc):
    p = proc.VirtualAlloc(None, 0x20000, pa.MEM_RESERVE, RW)
    regions = lambda: [(r.base - p, r.size, r.state) for r in proc.regions()
                       if r.allocation_base == p]
    assert regions() == [(0, 0x20000, pa.MEM_RESERVE)]
    proc.VirtualAlloc(p + 0x8000, 0x8000, pa.MEM_COMMIT, RW)
    assert regions() == [(0, 0x8000, pa.MEM_RESERVE), (0x8000, 0x8000, pa.MEM_COMMIT),
                         (0x10000, 0x10000, pa.MEM_RESERVE)]
    proc.VirtualAlloc(p + 0x10000, 0x10000, pa.MEM_COMMIT, RW)
    assert regions() == [(0, 0x8000, pa.MEM_RESERVE), (0x8000, 0x18000, pa.MEM_COMMIT)]
    proc.VirtualFree(p + 0xC000, 0x1000, pa.MEM_DECOMMIT)
    assert regions() == [(0, 0x8000, pa.MEM_RESERVE), (0x8000, 0x4000, pa.MEM_COMMIT),
                         (0xC000, 0x1000, pa.MEM_RESERVE), (0xD000, 0x13000, pa.MEM_COMMIT)]
    proc.VirtualFree(p, 0, pa.MEM_DECOMMIT)  # size 0 at the base: the whole allocation
    assert regions() == [(0, 0x20000, pa.MEM_RESERVE)]
    assert proc.stats()["committed"] == 0


# ---- errors -------------------------------------------------------------------------------------


def test_winerror_is_an_oserror_with_windows_message(proc):
    with pytest.raises(pa.WinError) as info:
        proc.VirtualFree(origin(proc) + 5 * GRAN + GRAN, 0, pa.MEM_RELEASE)
    e = info.value
    assert isinstance(e, OSError) and not isinstance(e, MemoryError)
    assert e.winerror == 487
    assert str(e) == "ERROR_INVALID_ADDRESS (487): Attempt to access invalid address."
    assert pa.FormatMessage(87) == "ERROR_INVALID_PARAMETER (87): The parameter is incorrect."
    assert pa.error_name(8) == "ERROR_NOT_ENOUGH_MEMORY"
    assert pa.error_name(1455) == "ERROR_COMMITMENT_LIMIT"
    assert pa.error_name(123456) is None
    assert pa.FormatMessage(123456) == "Win32 error 123456"
    clone = pickle.loads(pickle.dumps(e))
    assert type(clone) is pa.WinError and clone.winerror == 487 and str(clone) == str(e)


def test_structured_exceptions_pickle_and_describe_themselves(proc):
    p = proc.VirtualAlloc(None, 0x1000, pa.MEM_RESERVE, RW)
    with pytest.raises(pa.AccessViolation) as info:
        proc.read(p + 0x10, 1)
    e = info.value
    assert isinstance(e, pa.StructuredException) and not isinstance(e, OSError)
    assert str(e) == f"access violation reading 0x{p + 0x10:x}"
    clone = pickle.loads(pickle.dumps(e))
    assert (type(clone), clone.address, clone.operation) == (pa.AccessViolation, p + 0x10, "read")
    proc.VirtualAlloc(p, 0x1000, pa.MEM_COMMIT, RW | pa.PAGE_GUARD)
    with pytest.raises(pa.GuardPageViolation) as info:
        proc.write(p, b"x")
    assert str(info.value) == f"guard page violation writing 0x{p:x}"
    assert not isinstance(info.value, pa.AccessViolation)


def test_last_error_is_per_thread(proc):
    with winerror(87, proc):
        proc.VirtualAlloc(None, 0, pa.MEM_RESERVE, RW)
    seen = []

    def worker():
        seen.append(pa.GetLastError())
        pa.SetLastError(1234)
        try:
            proc.VirtualQuery((1 << 64) - 1)
        except pa.WinError:
            seen.append(pa.GetLastError())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [0, 87]
    assert pa.GetLastError() == 87
    pa.SetLastError(5)
    assert proc.GetLastError() == pa.GetLastError() == 5
    proc.SetLastError(code=0)
    assert pa.GetLastError() == 0


def test_failed_calls_change_nothing(proc):
    a = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, RW)
    proc.VirtualAlloc(a, 0x1000, pa.MEM_COMMIT, RW)
    before, stats = proc.regions(), proc.stats()
    failing = [
        lambda: proc.VirtualAlloc(a + 0x8000, 0x10000, pa.MEM_COMMIT, RW),      # past the end
        lambda: proc.VirtualAlloc(a, 0x1000, RC, RW),                           # conflict
        lambda: proc.VirtualAlloc(a, 0x1000, pa.MEM_COMMIT, pa.PAGE_WRITECOPY),
        lambda: proc.VirtualProtect(a, 0x2000, RO),                             # partly reserved
        lambda: proc.VirtualProtect(a, 0x1000, 0x3),
        lambda: proc.VirtualFree(a, 0x20000, pa.MEM_DECOMMIT),
        lambda: proc.VirtualFree(a + 0x1000, 0, pa.MEM_RELEASE),
        lambda: proc.ResetWriteWatch(a, 0x1000),
    ]
    for call in failing:
        with pytest.raises(pa.WinError):
            call()
        assert proc.regions() == before and proc.stats() == stats


# ---- guard pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["read", "write", "view"])
def test_guard_page_raises_once_then_access_succeeds(proc, op):
    p = proc.VirtualAlloc(None, 0x3000, pa.MEM_RESERVE, pa.PAGE_EXECUTE_READWRITE)
    proc.VirtualAlloc(p, 0x3000, pa.MEM_COMMIT, RW)
    proc.write(p + 0x1000, b"guarded")
    proc.VirtualProtect(p + 0x1000, 0x1000, RW | pa.PAGE_GUARD)
    access = {
        "read": lambda: proc.read(p + 0x800, 0x1000),
        "write": lambda: proc.write(p + 0x800, b"z" * 0x1000),
        "view": lambda: proc.view(p + 0x800, 0x1000),
    }[op]
    with pytest.raises(pa.GuardPageViolation) as info:
        access()
    assert info.value.address == p + 0x1000
    assert info.value.operation == ("write" if op == "write" else "read")
    assert proc.read(p + 0x800, 0x800) == bytes(0x800)  # all or nothing: first page untouched
    got = mbi(proc, p + 0x1000)
    assert got["Protect"] == RW and got["AllocationProtect"] == pa.PAGE_EXECUTE_READWRITE
    assert mbi(proc, p)["RegionSize"] == 0x3000  # the guard's region merged back
    result = access()
    if op == "read":
        assert result[0x800:0x807] == b"guarded"
    elif op == "view":
        assert bytes(result[0x800:0x807]) == b"guarded"
        result.release()
    else:
        assert proc.read(p + 0x1000, 7) == b"zzzzzzz"
    assert proc.stats()["guard_hits"] == 1


def test_two_guard_pages_raise_one_at_a_time(proc):
    p = proc.VirtualAlloc(None, 0x2000, RC, RO | pa.PAGE_GUARD)
    for expected in (p, p + 0x1000):
        with pytest.raises(pa.GuardPageViolation) as info:
            proc.read(p, 0x2000)
        assert info.value.address == expected
    assert proc.read(p, 0x2000) == bytes(0x2000)
    with pytest.raises(pa.AccessViolation) as info:  # the guard is gone, READONLY remains
        proc.write(p + 0x1800, b"x")
    assert (info.value.address, info.value.operation) == (p + 0x1800, "write")


def test_guard_on_noaccess_reservation_then_access_violation(proc):
    p = proc.VirtualAlloc(None, 0x1000, RC, pa.PAGE_EXECUTE_READ | pa.PAGE_GUARD)
    with pytest.raises(pa.GuardPageViolation):
        proc.write(p, b"x")
    with pytest.raises(pa.AccessViolation):
        proc.write(p, b"x")
    assert proc.read(p, 1) == b"\0"


# ---- write watch ---------------------------------------------------------------------------------


def test_write_watch_count_limits_and_reset_covers_only_scanned_pages(proc):
    base = proc.VirtualAlloc(None, 0x10000, WW, RW)
    for page in (1, 3, 4, 9):
        proc.write(base + page * PAGE + 5, b"!")
    all_dirty = [base + i * PAGE for i in (1, 3, 4, 9)]
    assert proc.GetWriteWatch(0, base, 0x10000) == (all_dirty, PAGE)
    assert proc.GetWriteWatch(0, base, 0x10000, count=2) == (all_dirty[:2], PAGE)
    assert proc.GetWriteWatch(flags=0, address=base, size=0x10000, count=100)[0] == all_dirty
    # reset with a count: only the pages scanned up to the last one reported are re-armed
    assert proc.GetWriteWatch(pa.WRITE_WATCH_FLAG_RESET, base, 0x10000, count=2)[0] == all_dirty[:2]
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == all_dirty[2:]
    # a sub-range
    assert proc.GetWriteWatch(0, base + 0x4000, 0x6000)[0] == [base + 0x4000, base + 0x9000]
    assert proc.GetWriteWatch(0, base + 0x4FFF, 1)[0] == [base + 0x4000]
    assert proc.ResetWriteWatch(base + 0x4000, 0x1000) is True
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base + 0x9000]
    assert proc.ResetWriteWatch(address=base, size=0x10000)
    assert proc.GetWriteWatch(0, base, 0x10000)[0] == []


def test_write_watch_through_memoryview_uses_the_fault_handler(proc):
    base = proc.VirtualAlloc(None, 0x10000, WW, RW)
    faults = proc.stats()["watch_faults"]
    with proc.view(base, 0x10000) as mv:
        assert not mv.readonly
        mv[0x2000] = 1                       # a direct store: SIGSEGV, recorded, retried
        mv[0x7FFE:0x8002] = b"abcd"          # straddles pages 7 and 8
        assert proc.stats()["watch_faults"] == faults + 3
        mv[0x2001] = 2                       # page already dirty: no fault
        assert proc.stats()["watch_faults"] == faults + 3
        assert proc.GetWriteWatch(pa.WRITE_WATCH_FLAG_RESET, base, 0x10000)[0] == [
            base + 0x2000, base + 0x7000, base + 0x8000]
        mv[0x2002] = 3                       # re-armed under the live view: faults again
        assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base + 0x2000]
        assert proc.stats()["watch_faults"] == faults + 4
        proc.ResetWriteWatch(base, 0x10000)
        ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(mv, 0xF000)), 0x5A, 16)
        assert proc.GetWriteWatch(0, base, 0x10000)[0] == [base + 0xF000]
    assert proc.read(base + 0x2000, 3) == b"\x01\x02\x03"
    assert proc.read(base + 0x7FFE, 4) == b"abcd"
    assert proc.read(base + 0xF000, 16) == b"Z" * 16


SENT_SIGSEGV = """
import os, signal, sys
if sys.argv[1] == "ignored":
    signal.signal(signal.SIGSEGV, signal.SIG_IGN)
import pyalloc as pa
p = pa.Process()
base = p.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE | pa.MEM_COMMIT | pa.MEM_WRITE_WATCH,
                      pa.PAGE_READWRITE)
if sys.argv[1] == "faulthandler":
    import faulthandler
    faulthandler.enable()
    faulthandler._sigsegv()
    print("survived faulthandler._sigsegv()", flush=True)
os.kill(os.getpid(), signal.SIGSEGV)
if sys.argv[1] != "ignored":
    print("survived the kill", flush=True)
with p.view(base, 0x10000) as mv:  # the fault handler still serves the process
    mv[0x3000] = 1
print("alive", p.GetWriteWatch(0, base, 0x10000)[0] == [base + 0x3000])
"""


@pytest.mark.parametrize("case", ["default", "ignored", "faulthandler"])
def test_a_sent_sigsegv_is_not_taken_for_a_fault(case):
    """kill -SEGV (or raise) is not a fault: the handler that serves guard pages and write
    watches passes it on. With the default action the process dies of it, as without pyalloc
    (it returned, the signal was lost and the process ran on); ignored, it stays ignored;
    Python's faulthandler reports it and dies (its tests failed under `pyalloc run`)."""
    import subprocess
    out = subprocess.run([sys.executable, "-c", SENT_SIGSEGV, case], capture_output=True,
                         text=True, env=subprocess_env(), timeout=60)
    if case == "ignored":
        assert (out.returncode, out.stdout) == (0, "alive True\n"), out.stderr
    else:
        assert out.returncode == -11 and out.stdout == "", out.stderr
    if case == "faulthandler":
        assert "Fatal Python error: Segmentation fault" in out.stderr


def test_write_watch_reads_do_not_count_and_memory_still_reads(proc):
    base = proc.VirtualAlloc(None, 0x4000, WW, RW)
    proc.read(base, 0x4000)
    with proc.view(base, 0x4000) as mv:
        assert bytes(mv[:4]) == bytes(4)
    assert proc.GetWriteWatch(0, base, 0x4000)[0] == []
    assert mbi(proc, base)["RegionSize"] == 0x4000


def test_write_watch_reserved_then_committed(proc):
    base = proc.VirtualAlloc(None, 0x20000, pa.MEM_RESERVE | pa.MEM_WRITE_WATCH, NA)
    proc.VirtualAlloc(base + 0x11000, 0x1000, pa.MEM_COMMIT, RW)
    proc.write(base + 0x11000, b"x")
    assert proc.GetWriteWatch(0, base, 0x20000)[0] == [base + 0x11000]


# ---- MEM_RESET / MEM_RESET_UNDO ------------------------------------------------------------------


def test_mem_reset_keeps_commit_and_accepts_any_range_in_an_allocation(proc):
    p = proc.VirtualAlloc(None, 0x4000, pa.MEM_RESERVE, RW)
    proc.VirtualAlloc(p, 0x2000, pa.MEM_COMMIT, RW)
    proc.write(p, b"a" * 0x2000)
    before = proc.regions()
    assert proc.VirtualAlloc(p + 0x800, 0x3000, pa.MEM_RESET, NA) == p  # includes reserved pages
    assert proc.regions() == before and proc.stats()["committed"] == 0x2000
    assert proc.read(p, 0x2000) in (b"a" * 0x2000, bytes(0x1000) + b"a" * 0x1000,
                                    b"a" * 0x1000 + bytes(0x1000), bytes(0x2000))
    with winerror(487, proc):  # past the allocation
        proc.VirtualAlloc(p, 0x5000, pa.MEM_RESET, RW)
    with winerror(487, proc):  # free memory
        proc.VirtualAlloc(p + 0x8000, 0x1000, pa.MEM_RESET, RW)
    # undo on a range never reset succeeds
    assert proc.VirtualAlloc(p + 0x2000, 0x1000, pa.MEM_RESET_UNDO, RW) == p + 0x2000


def _madvise_pageout():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.restype = ctypes.c_int
    with pa.Process(address_space=1 << 20) as probe:
        a = probe.VirtualAlloc(None, PAGE, pa.MEM_COMMIT, RW)
        if libc.madvise(a, PAGE, 21) != 0:
            pytest.skip("no MADV_PAGEOUT on this host")
    return lambda address, size: libc.madvise(address, size, 21)


@pytest.mark.parametrize("between", ["nothing", "protect", "recommit", "guard"])
def test_mem_reset_undo_never_claims_lost_data(proc, between):
    """MS:VirtualAlloc (fact 37): MEM_RESET_UNDO succeeds only if all data is intact. The host
    drops the reset pages (MADV_PAGEOUT, as under memory pressure); a protection change or a
    recommit in between must not make the undo forget that the pages were reset."""
    pageout = _madvise_pageout()
    p = proc.VirtualAlloc(None, 0x3000, RC, RW)
    data = b"\xC3" * 0x3000
    proc.write(p, data)
    assert proc.VirtualAlloc(p, 0x3000, pa.MEM_RESET, RW) == p
    if between == "protect":
        proc.VirtualProtect(p, 0x3000, RO)
    elif between == "recommit":
        proc.VirtualAlloc(p, 0x3000, pa.MEM_COMMIT, pa.PAGE_EXECUTE_READWRITE)
    elif between == "guard":
        proc.VirtualProtect(p + 0x1000, 0x1000, RW | pa.PAGE_GUARD)
    assert pageout(p, 0x3000) == 0
    try:
        proc.VirtualAlloc(p, 0x3000, pa.MEM_RESET_UNDO, RW)
    except pa.WinError as e:
        assert e.winerror == 31 == pa.GetLastError()
        undone = False
    else:
        undone = True
    if between == "guard":
        with pytest.raises(pa.GuardPageViolation):
            proc.read(p, 0x3000)
    content = proc.read(p, 0x3000)
    if undone:
        assert content == data, "MEM_RESET_UNDO succeeded but the data is gone"
    else:
        assert content != data


def test_mem_reset_undo_of_untouched_pages_succeeds(proc):
    """MS:VirtualAlloc (fact 37): failure means some data was replaced by zeros; pages never
    written hold zeros, and nothing replaced them."""
    p = proc.VirtualAlloc(None, 0x2000, RC, RW)
    proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET, RW)
    assert proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET_UNDO, RW) == p


_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
MADV_PAGEOUT = 21  # Linux 5.4: reclaim the range now (drops MEM_RESET's lazily freed pages)


@pytest.mark.parametrize("how", ["write", "view"])
def test_mem_reset_undo_after_the_host_dropped_a_page_that_was_written_again(proc, how):
    """Fact 37: a reset page that the host dropped and the program then wrote again holds the
    new bytes in a fresh zero page - the rest of its data is gone, and MEM_RESET_UNDO fails
    (31) although the page is resident and not all zero. A page written again without being
    dropped keeps its data, and the undo succeeds. Found by the hypothesis model."""
    p = proc.VirtualAlloc(None, 0x2000, RC, RW)
    proc.write(p, b"\xc5" * 0x2000)
    proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET, RW)
    assert _libc.madvise(p, 0x1000, MADV_PAGEOUT) == 0  # the host drops the first page only
    if how == "write":
        proc.write(p + 8, b"\x77")
        proc.write(p + 0x1008, b"\x77")
    else:
        with proc.view(p, 0x2000) as v:
            v[8] = 0x77
            v[0x1008] = 0x77
    with winerror(31, proc):
        proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET_UNDO, RW)
    assert proc.read(p, 16) == bytes(8) + b"\x77" + bytes(7)
    assert proc.read(p + 0x1000, 16) == b"\xc5" * 8 + b"\x77" + b"\xc5" * 7
    # Only the second page, written again but never dropped: nothing lost.
    proc.VirtualAlloc(p + 0x1000, 0x1000, pa.MEM_RESET, RW)
    proc.write(p + 0x1010, b"\x66")
    assert proc.VirtualAlloc(p + 0x1000, 0x1000, pa.MEM_RESET_UNDO, RW) == p + 0x1000
    assert proc.read(p + 0x1008, 16) == b"\x77" + b"\xc5" * 7 + b"\x66" + b"\xc5" * 7


def test_mem_reset_undo_after_the_host_dropped_a_page_that_was_read(proc):
    """Fact 37: once the host has dropped a reset page, MEM_RESET_UNDO fails (31), even when
    the program read the page in between (the read maps the host's zero page, so the page is
    resident again but its data is gone). Found by the hypothesis model."""
    p = proc.VirtualAlloc(None, 0x2000, RC, RW)
    proc.write(p, b"\xc5" * 0x2000)
    proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET, RW)
    assert _libc.madvise(p, 0x2000, MADV_PAGEOUT) == 0
    assert proc.read(p, 16) == bytes(16)  # dropped, and now mapped again (zero page)
    with winerror(31, proc):
        proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET_UNDO, RW)
    assert proc.read(p, 0x2000) == bytes(0x2000)
    # Kept data: an undo right after the reset succeeds and the bytes are there.
    proc.write(p, b"\x5c" * 0x2000)
    proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET, RW)
    assert proc.VirtualAlloc(p, 0x2000, pa.MEM_RESET_UNDO, RW) == p
    assert proc.read(p, 0x2000) == b"\x5c" * 0x2000


# ---- commit limit --------------------------------------------------------------------------------


def test_commit_limit(new_process):
    p = new_process(address_space=1 << 24, commit_limit=0x10000)
    assert p.stats()["commit_limit"] == 0x10000
    big = p.VirtualAlloc(None, 0x100000, pa.MEM_RESERVE, RW)  # reserving is free
    a = p.VirtualAlloc(big, 0xF000, pa.MEM_COMMIT, RW)
    with winerror(1455, p):
        p.VirtualAlloc(big + 0x10000, 0x2000, pa.MEM_COMMIT, RW)
    assert p.VirtualAlloc(big + 0x10000, 0x1000, pa.MEM_COMMIT, RW)  # exactly the limit
    assert p.stats()["committed"] == 0x10000
    assert p.VirtualAlloc(a, 0xF000, pa.MEM_COMMIT, RO) == a  # recommitting charges nothing
    with winerror(1455, p) as info:
        p.VirtualAlloc(None, 0x1000, RC, RW)
    assert isinstance(info.value, MemoryError)  # out-of-memory WinErrors are MemoryErrors too
    assert p.stats()["allocations"] == 1  # the failed reserve+commit left nothing behind
    assert "ERROR_COMMITMENT_LIMIT (1455)" in str(pytest.raises(pa.WinError, p.VirtualAlloc,
                                                                None, 1, pa.MEM_COMMIT, RW).value)
    p.VirtualFree(a, 0x8000, pa.MEM_DECOMMIT)
    c = p.VirtualAlloc(None, 0x8000, RC, RW)
    assert p.stats()["committed"] == 0x10000 and p.stats()["peak_committed"] == 0x10000
    p.VirtualFree(big, 0, pa.MEM_RELEASE)
    p.VirtualFree(c, 0, pa.MEM_RELEASE)
    assert p.stats()["committed"] == 0 and p.stats()["peak_committed"] == 0x10000


def test_commit_limit_rounds_up_to_a_page(new_process):
    p = new_process(address_space=1 << 20, commit_limit=1)
    assert p.stats()["commit_limit"] == PAGE
    p.VirtualAlloc(None, PAGE, RC, RW)
    with winerror(1455, p):
        p.VirtualAlloc(None, 1, RC, RW)


# ---- small address spaces ------------------------------------------------------------------------


def test_one_mib_space_has_fourteen_slots(new_process):
    p = new_process(address_space=1 << 20)
    lo, hi = limits(p)
    assert (hi - lo) // GRAN == 14
    got = [p.VirtualAlloc(None, 8, RC, RW) for _ in range(14)]
    assert got == [lo + i * GRAN for i in range(14)]
    with winerror(8, p) as info:
        p.VirtualAlloc(None, 8, RC, RW)
    assert isinstance(info.value, MemoryError)
    with winerror(8, p):
        p.VirtualAlloc(None, 8, pa.MEM_RESERVE | pa.MEM_TOP_DOWN, RW)
    assert [r.kind for r in p.regions()] == ["Private Data", "Unusable"] * 14
    p.VirtualFree(got[6], 0, pa.MEM_RELEASE)
    assert p.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, RW) == got[6]
    with winerror(87, p):  # larger than the whole usable space
        p.VirtualAlloc(None, 14 * GRAN + 1, pa.MEM_RESERVE, RW)


def test_free_space_is_found_across_holes(new_process):
    p = new_process(address_space=1 << 20)
    lo, _ = limits(p)
    slots = [p.VirtualAlloc(None, GRAN, pa.MEM_RESERVE, RW) for _ in range(14)]
    for i in (2, 5, 6, 9, 10, 11):
        p.VirtualFree(slots[i], 0, pa.MEM_RELEASE)
    assert p.VirtualAlloc(None, 3 * GRAN, pa.MEM_RESERVE, RW) == slots[9]
    assert p.VirtualAlloc(None, 2 * GRAN, pa.MEM_RESERVE | pa.MEM_TOP_DOWN, RW) == slots[5]
    assert p.VirtualAlloc(None, 1, pa.MEM_RESERVE, RW) == slots[2]
    with winerror(8, p):
        p.VirtualAlloc(None, 1, pa.MEM_RESERVE, RW)


def test_top_down_allocations_descend(proc):
    lo, hi = limits(proc)
    got = [proc.VirtualAlloc(None, s, RC | pa.MEM_TOP_DOWN, RW) for s in (1, 0x10001, 0x1000)]
    assert got == [hi - GRAN, hi - 3 * GRAN, hi - 4 * GRAN]
    assert proc.VirtualAlloc(None, 1, RC, RW) == lo


@pytest.mark.parametrize("options, exc", [
    (dict(address_space=0), ValueError),
    (dict(address_space=2 * GRAN), ValueError),
    (dict(address_space=(1 << 20) + 1), ValueError),
    (dict(address_space=1 << 47), ValueError),
    (dict(address_space=-1), OverflowError),
    (dict(address_space="1M"), TypeError),
    (dict(commit_limit=0), ValueError),
    (dict(commit_limit=-5), OverflowError),
    (dict(commit_limit=1.5), TypeError),
    (dict(bogus=1), TypeError),
])
def test_process_options_are_checked(options, exc):
    with pytest.raises(exc):
        pa.Process(**options)


def test_process_options_are_keyword_only():
    with pytest.raises(TypeError):
        pa.Process(1 << 20)
    with pa.Process(address_space=3 * GRAN) as p:
        lo, hi = limits(p)
        assert hi - lo == GRAN
        assert p.VirtualAlloc(None, GRAN, RC, RW) == lo


# ---- read / write / view -------------------------------------------------------------------------


def test_read_write_roundtrip_and_bytes_like_inputs(proc):
    p = proc.VirtualAlloc(None, 0x3000, RC, RW)
    proc.write(p + 0xFFE, b"hello")
    proc.write(p + 0x2000, bytearray(b"ba"))
    proc.write(p + 0x2002, memoryview(b"xmv")[1:])
    proc.write(p + 0x2004, b"")
    assert proc.read(p + 0xFFE, 5) == b"hello"
    assert proc.read(p + 0x2000, 4) == b"bamv"
    assert proc.read(p, 0) == b""
    assert proc.read(address=p + 0xFFF, size=2) == b"el"
    with pytest.raises(TypeError):
        proc.write(p, "text")
    with pytest.raises(TypeError):
        proc.write(p, 5)


@pytest.mark.parametrize("prot, readable, writable", [
    (NA, False, False), (RO, True, False), (RW, True, True),
    (pa.PAGE_EXECUTE_READ, True, False), (pa.PAGE_EXECUTE_READWRITE, True, True),
])
def test_access_follows_protection(proc, prot, readable, writable):
    p = proc.VirtualAlloc(None, 0x1000, RC, prot)
    if readable:
        assert proc.read(p, 4) == bytes(4)
    else:
        with pytest.raises(pa.AccessViolation) as info:
            proc.read(p + 3, 4)
        assert (info.value.address, info.value.operation) == (p + 3, "read")
    if writable:
        proc.write(p, b"ok")
    else:
        with pytest.raises(pa.AccessViolation) as info:
            proc.write(p + 7, b"no")
        assert (info.value.address, info.value.operation) == (p + 7, "write")
        assert info.value.code == pa.STATUS_ACCESS_VIOLATION


def test_write_is_all_or_nothing(proc):
    p = proc.VirtualAlloc(None, 0x4000, RC, RW)
    proc.VirtualProtect(p + 0x2000, 0x1000, RO)
    with pytest.raises(pa.AccessViolation) as info:
        proc.write(p + 0x1000, b"\xFF" * 0x3000)
    assert info.value.address == p + 0x2000
    assert proc.read(p, 0x4000) == bytes(0x4000)
    with pytest.raises(pa.AccessViolation) as info:
        proc.read(p + 0x3F00, 0x200)  # runs into the unusable tail of the slot
    assert info.value.address == p + 0x4000


def test_access_outside_the_process(proc):
    lo, hi = limits(proc)
    for address in (0, 8, origin(proc), lo, hi - 1, hi + GRAN, (1 << 64) - 16):
        with pytest.raises(pa.AccessViolation) as info:
            proc.read(address, 4)
        assert info.value.address == address
        with pytest.raises(pa.AccessViolation):
            proc.write(address, b"abcd")
        with pytest.raises(pa.AccessViolation):
            proc.view(address, 4)


def test_fault_address_is_the_first_byte_that_faults_even_past_the_space(proc):
    """A range running past the process's space still faults in address order."""
    lo, hi = limits(proc)
    top = proc.VirtualAlloc(None, 0x1000, RC | pa.MEM_TOP_DOWN, RW)
    assert top == hi - GRAN
    for size in (0x20000, 1 << 40, (1 << 64) - top - 1):
        for access in (lambda: proc.write(top, b"\1" * min(size, 0x20000)),
                       lambda: proc.view(top, min(size, (1 << 63) - 1))):
            with pytest.raises(pa.AccessViolation) as info:
                access()
            assert info.value.address == top + 0x1000
    guard = proc.VirtualAlloc(None, 0x1000, RC | pa.MEM_TOP_DOWN, RW | pa.PAGE_GUARD)
    with pytest.raises(pa.GuardPageViolation) as info:
        proc.view(guard, 1 << 40)
    assert info.value.address == guard
    with pytest.raises(pa.AccessViolation) as info:
        proc.read(lo, hi - lo + 2 * GRAN)
    assert info.value.address == lo


def test_read_of_a_huge_range_is_an_access_violation_not_memory_error(proc):
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    with pytest.raises(pa.AccessViolation) as info:
        proc.read(p, 1 << 62)
    assert info.value.address == p + 0x1000


def test_views_are_read_only_where_the_pages_are(proc):
    p = proc.VirtualAlloc(None, 0x3000, RC, RW)
    proc.write(p, b"abc")
    proc.VirtualProtect(p + 0x2000, 0x1000, pa.PAGE_EXECUTE_READ)
    rw = proc.view(p, 0x2000)
    ro = proc.view(p + 0x1800, 0x1000)  # RW page + EXECUTE_READ page
    assert not rw.readonly and ro.readonly
    assert rw.format == "B" and rw.nbytes == 0x2000 and rw.contiguous
    with pytest.raises(TypeError):
        ro[0] = 1
    rw[1:3] = b"XY"
    assert proc.read(p, 3) == b"aXY"
    assert bytes(ro[0x800:0x801]) == b"\0"
    proc.write(p + 0x1800, b"seen")
    assert bytes(ro[:4]) == b"seen"  # a live view, not a copy
    assert proc.stats()["pins"] == 2
    rw.release()
    ro.release()
    assert proc.stats()["pins"] == 0
    with proc.view(p, 0) as empty:  # size 0 is fine anywhere
        assert len(empty) == 0
    with proc.view(0, 0) as empty:
        assert len(empty) == 0


def test_view_pins_block_changes_that_would_dangle(proc):
    p = proc.VirtualAlloc(None, 0x10000, RC, RW)
    mv = proc.view(p + 0x1800, 0x1000)  # pins pages 1 and 2 for writing
    blocked = [
        lambda: proc.VirtualFree(p, 0, pa.MEM_RELEASE),
        lambda: proc.VirtualFree(p + 0x2000, 0x1000, pa.MEM_DECOMMIT),
        lambda: proc.VirtualFree(p, 0, pa.MEM_DECOMMIT),
        lambda: proc.VirtualProtect(p + 0x1000, 0x1000, RO),
        lambda: proc.VirtualProtect(p, 0x3000, NA),
        lambda: proc.VirtualProtect(p + 0x2000, 0x1000, RW | pa.PAGE_GUARD),
        lambda: proc.VirtualAlloc(p + 0x2000, 0x1000, pa.MEM_COMMIT, pa.PAGE_EXECUTE_READ),
        lambda: proc.VirtualAlloc(p + 0x1000, 0x1000, pa.MEM_COMMIT, RW | pa.PAGE_GUARD),
        lambda: proc.close(),
    ]
    for call in blocked:
        pa.SetLastError(0)
        with pytest.raises(BufferError):
            call()
        if call is not blocked[-1]:
            assert pa.GetLastError() == 0x20000001
    # allowed: changes elsewhere, and changes that keep the access the view relies on
    proc.VirtualProtect(p + 0x3000, 0x1000, NA)
    proc.VirtualFree(p + 0x4000, 0x1000, pa.MEM_DECOMMIT)
    assert proc.VirtualProtect(p + 0x1000, 0x2000, pa.PAGE_EXECUTE_READWRITE) == RW
    assert proc.VirtualAlloc(p + 0x1000, 0x2000, pa.MEM_COMMIT, RW) == p + 0x1000
    mv[0] = 7
    assert mbi(proc, p + 0x1000)["Protect"] == RW
    mv.release()
    assert proc.VirtualProtect(p + 0x1000, 0x1000, RO) == RW
    assert proc.VirtualFree(p, 0, pa.MEM_RELEASE)
    with pytest.raises(pa.AccessViolation):
        proc.read(p, 1)


def test_read_only_view_allows_adding_write_access(proc):
    p = proc.VirtualAlloc(None, 0x2000, RC, RO)
    with proc.view(p, 0x2000) as mv:
        assert mv.readonly
        assert proc.VirtualProtect(p, 0x2000, RW) == RO
        assert proc.VirtualProtect(p, 0x2000, pa.PAGE_EXECUTE_READ) == RW
        with pytest.raises(BufferError):
            proc.VirtualProtect(p, 0x1000, NA)
        with pytest.raises(BufferError):
            proc.VirtualProtect(p + 0x1000, 0x1000, pa.PAGE_EXECUTE_READ | pa.PAGE_GUARD)
    assert proc.VirtualProtect(p, 0x1000, NA) == pa.PAGE_EXECUTE_READ


def test_view_kept_alive_by_slices_and_released_by_gc(proc):
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    mv = proc.view(p, 0x1000)
    part = mv[10:20]
    del mv
    gc.collect()
    with pytest.raises(BufferError):
        proc.VirtualFree(p, 0, pa.MEM_RELEASE)  # the slice still holds the export
    part[0] = 42
    assert proc.read(p + 10, 1) == b"\x2a"
    del part
    gc.collect()
    assert proc.stats()["pins"] == 0
    assert proc.VirtualFree(p, 0, pa.MEM_RELEASE)


# ---- Process lifetime ----------------------------------------------------------------------------


def test_close_and_with_statement():
    p = pa.Process(address_space=1 << 20)
    assert not p.closed and not p.is_current
    a = p.VirtualAlloc(None, 1, RC, RW)
    p.close()
    assert p.closed
    p.close()  # idempotent
    assert repr(p) == "<Process (closed)>"
    for call in (lambda: p.VirtualAlloc(None, 1, RC, RW), lambda: p.VirtualQuery(a),
                 lambda: p.read(a, 1), lambda: p.GetSystemInfo(), lambda: p.stats(),
                 lambda: p.regions()):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        with p:
            pass
    with pa.Process(address_space=1 << 20) as q:
        assert q.VirtualAlloc(None, 1, RC, RW)
    assert q.closed
    with pytest.raises(RuntimeError):
        with pa.Process(address_space=1 << 20) as r:
            raise RuntimeError("propagates")
    assert r.closed


def test_close_waits_for_views():
    p = pa.Process(address_space=1 << 20)
    a = p.VirtualAlloc(None, 1, RC, RW)
    mv = p.view(a, 1)
    with pytest.raises(BufferError):
        p.close()
    assert not p.closed
    with pytest.raises(BufferError):
        p.__exit__(None, None, None)
    mv.release()
    p.close()
    assert p.closed


def test_processes_are_isolated(new_process):
    p, q = new_process(address_space=1 << 20), new_process(address_space=1 << 20)
    a = p.VirtualAlloc(None, 0x1000, RC, RW)
    p.write(a, b"p only")
    assert limits(p) != limits(q)
    with pytest.raises(pa.AccessViolation):
        q.read(a, 1)
    with winerror(87, q):  # outside q's range
        q.VirtualFree(a, 0, pa.MEM_RELEASE)
    assert q.stats()["allocations"] == 0
    assert p.read(a, 6) == b"p only"


def test_many_processes_come_and_go():
    for _ in range(50):
        with pa.Process(address_space=1 << 20) as p:
            a = p.VirtualAlloc(None, 0x1000, WW, RW)
            with p.view(a, 0x1000) as mv:
                mv[0] = 1
            assert p.GetWriteWatch(0, a, 0x1000)[0] == [a]


# ---- the current process and module-level functions -------------------------------------------


def test_current_process_and_module_functions(current_clean):
    cur = current_clean
    assert pa.current_process() is cur
    assert isinstance(cur, pa.Process) and cur.is_current
    assert "(current)" in repr(cur)
    with pytest.raises(ValueError):
        cur.close()
    with cur:  # the with-statement does not close it
        pass
    assert not cur.closed
    assert pa.GetSystemInfo() == cur.GetSystemInfo()
    a = pa.VirtualAlloc(None, 0x2000, RC, RW)
    try:
        assert cur.VirtualQuery(a) == pa.VirtualQuery(a)
        assert pa.VirtualQuery(a).RegionSize == 0x2000
        assert any(r.base == a for r in cur.regions())
        pa.write(a, b"module")
        assert cur.read(a, 6) == b"module"
        assert pa.VirtualProtect(a, 0x1000, RO) == RW
        with pa.view(a, 6) as mv:
            assert mv.readonly and bytes(mv) == b"module"
        with pytest.raises(pa.AccessViolation):
            pa.write(a, b"x")
        with winerror(487):
            pa.VirtualAlloc(a, 0x1000, RC, RW)
        assert pa.VirtualFree(a + 0x1000, 0x1000, pa.MEM_DECOMMIT)
    finally:
        pa.VirtualFree(a, 0, pa.MEM_RELEASE)
    w = pa.VirtualAlloc(None, 0x1000, WW, RW)
    try:
        pa.write(w, b"w")
        assert pa.GetWriteWatch(0, w, 0x1000) == ([w], PAGE)
        assert pa.ResetWriteWatch(w, 0x1000)
        assert pa.GetWriteWatch(0, w, 0x1000) == ([], PAGE)
    finally:
        pa.VirtualFree(w, 0, pa.MEM_RELEASE)


def test_module_and_methods_have_the_same_functions():
    names = ["VirtualAlloc", "VirtualFree", "VirtualProtect", "VirtualQuery", "GetSystemInfo",
             "GetWriteWatch", "ResetWriteWatch", "GetLastError", "SetLastError", "read",
             "write", "view"]
    for name in names:
        assert callable(getattr(pa, name)), name
        assert callable(getattr(pa.Process, name)), name
        assert getattr(pa, name).__doc__ == getattr(pa.Process, name).__doc__


# ---- regions -------------------------------------------------------------------------------------


def test_regions_are_contiguous_and_match_virtual_query(proc):
    lo, hi = limits(proc)
    assert proc.regions() == [pa.Region(lo, hi - lo, pa.MEM_FREE, NA, 0, 0, 0, 0, False)]
    a = proc.VirtualAlloc(None, 8, RC, RW)
    b = proc.VirtualAlloc(None, 0x30000, pa.MEM_RESERVE, RW)
    proc.VirtualAlloc(b + 0x1000, 0x2000, pa.MEM_COMMIT, RO | pa.PAGE_GUARD)
    c = proc.VirtualAlloc(None, 0x11000, RC | pa.MEM_TOP_DOWN, pa.PAGE_EXECUTE_READ)
    regions = proc.regions()
    assert regions[0].base == lo and regions[-1].end == hi
    for r, nxt in zip(regions, regions[1:]):
        assert r.end == nxt.base and r.size > 0
    for r in regions:
        if r.unusable:
            assert r.state == pa.MEM_FREE and r.end % GRAN == 0
            continue
        q = proc.VirtualQuery(r.base)
        assert (q.BaseAddress, q.RegionSize, q.State, q.Protect, q.Type, q.AllocationBase,
                q.AllocationProtect) == (r.base, r.size, r.state, r.protect, r.type,
                                         r.allocation_base, r.allocation_protect)
    kinds = [(r.base, r.kind) for r in regions]
    assert kinds == [
        (a, "Private Data"), (a + 0x1000, "Unusable"),
        (b, "Reserved"), (b + 0x1000, "Private Data"), (b + 0x3000, "Reserved"),
        (b + 0x30000, "Free"),
        (c, "Private Data"), (c + 0x11000, "Unusable"),
    ]
    assert regions[-1].end == hi and regions[-1].kind == "Unusable"


def test_regions_of_a_full_small_space(new_process):
    p = new_process(address_space=1 << 20)
    for i in range(14):
        p.VirtualAlloc(None, GRAN, pa.MEM_RESERVE if i % 2 else RC, RW)
    kinds = [r.kind for r in p.regions()]
    assert kinds == ["Private Data", "Reserved"] * 7
    assert all(r.size == GRAN for r in p.regions())


# ---- reprs ---------------------------------------------------------------------------------------


def test_reprs(proc):
    lo, hi = limits(proc)
    text = repr(proc)
    assert re.fullmatch(rf"<Process 0x{lo:x}-0x{hi - 1:x}: 0 allocations, 0 KiB "
                        r"reserved, 0 KiB committed>", text), text
    p = proc.VirtualAlloc(None, 0x2000, pa.MEM_RESERVE, pa.PAGE_EXECUTE_READ)
    proc.VirtualAlloc(p, 0x1000, pa.MEM_COMMIT, RW | pa.PAGE_GUARD)
    assert "1 allocations, 8 KiB reserved, 4 KiB committed" in repr(proc)
    assert repr(proc.VirtualQuery(p)) == (
        f"MEMORY_BASIC_INFORMATION(BaseAddress=0x{p:x}, AllocationBase=0x{p:x}, "
        "AllocationProtect=PAGE_EXECUTE_READ, RegionSize=0x1000, State=MEM_COMMIT, "
        "Protect=PAGE_READWRITE|PAGE_GUARD, Type=MEM_PRIVATE)")
    assert repr(proc.VirtualQuery(p + 0x1000)) == (
        f"MEMORY_BASIC_INFORMATION(BaseAddress=0x{p + 0x1000:x}, AllocationBase=0x{p:x}, "
        "AllocationProtect=PAGE_EXECUTE_READ, RegionSize=0x1000, State=MEM_RESERVE, "
        "Protect=0, Type=MEM_PRIVATE)")
    assert repr(proc.VirtualQuery(p + 0x2000)) == (
        f"MEMORY_BASIC_INFORMATION(BaseAddress=0x{p + 0x2000:x}, AllocationBase=0x0, "
        f"AllocationProtect=0, RegionSize=0x{hi - p - 0x2000:x}, State=MEM_FREE, "
        "Protect=PAGE_NOACCESS, Type=0x0)")
    si = repr(proc.GetSystemInfo())
    assert si.startswith("SYSTEM_INFO(wProcessorArchitecture=")
    assert f"lpMinimumApplicationAddress=0x{lo:x}" in si and "dwPageSize=0x1000" in si
    assert "dwAllocationGranularity=0x10000" in si
    assert pa.protect_name(0x104) == "PAGE_READWRITE|PAGE_GUARD"
    assert pa.protect_name(0x204) == "PAGE_READWRITE|PAGE_NOCACHE"
    assert pa.protect_name(0) == "0"
    assert pa.protect_name(0x40000001) == "PAGE_NOACCESS|0x40000000"


def test_structures_behave_like_named_tuples(proc):
    p = proc.VirtualAlloc(None, 0x1000, RC, RW)
    m = proc.VirtualQuery(p)
    assert m._fields == ("BaseAddress", "AllocationBase", "AllocationProtect", "RegionSize",
                         "State", "Protect", "Type")
    assert m == proc.VirtualQuery(p + 0xFFF)
    assert m != proc.VirtualQuery(p + 0x1000)
    assert m._asdict()["RegionSize"] == 0x1000
    with pytest.raises(AttributeError):
        m.RegionSize = 5
    with pytest.raises(TypeError):
        type(m)()
    assert isinstance(m, pa.MEMORY_BASIC_INFORMATION)
    assert isinstance(proc.GetSystemInfo(), pa.SYSTEM_INFO)


# ---- argument handling ---------------------------------------------------------------------------


def test_keyword_arguments(proc):
    p = proc.VirtualAlloc(address=None, size=0x2000, allocation_type=pa.MEM_RESERVE,
                          protect=RW)
    assert proc.VirtualAlloc(p, size=0x1000, allocation_type=pa.MEM_COMMIT, protect=RW) == p
    assert proc.VirtualProtect(address=p, size=0x1000, new_protect=RO) == RW
    assert proc.VirtualQuery(address=p).Protect == RO
    with pytest.raises(pa.AccessViolation):
        proc.write(address=p, data=b"k")
    assert proc.read(address=p, size=1) == b"\0"
    with proc.view(address=p, size=1) as mv:
        assert len(mv) == 1
    assert proc.VirtualFree(address=p, size=0, free_type=pa.MEM_RELEASE) is True
    pa.SetLastError(code=3)
    assert pa.GetLastError() == 3


@pytest.mark.parametrize("call, exc", [
    (lambda p: p.VirtualAlloc(None, "1", pa.MEM_COMMIT, RW), TypeError),
    (lambda p: p.VirtualAlloc(None, 1.0, pa.MEM_COMMIT, RW), TypeError),
    (lambda p: p.VirtualAlloc(None, None, pa.MEM_COMMIT, RW), TypeError),
    (lambda p: p.VirtualAlloc(b"", 1, pa.MEM_COMMIT, RW), TypeError),
    (lambda p: p.VirtualAlloc(None, 1, pa.MEM_COMMIT, None), TypeError),
    (lambda p: p.VirtualAlloc(None, -1, pa.MEM_COMMIT, RW), OverflowError),
    (lambda p: p.VirtualAlloc(-4096, 1, pa.MEM_COMMIT, RW), OverflowError),
    (lambda p: p.VirtualAlloc(None, 1 << 64, pa.MEM_COMMIT, RW), OverflowError),
    (lambda p: p.VirtualAlloc(1 << 64, 1, pa.MEM_COMMIT, RW), OverflowError),
    (lambda p: p.VirtualAlloc(None, 1, 1 << 32, RW), OverflowError),
    (lambda p: p.VirtualAlloc(None, 1, pa.MEM_COMMIT, -1), OverflowError),
    (lambda p: p.VirtualAlloc(None, 1, pa.MEM_COMMIT), TypeError),
    (lambda p: p.VirtualAlloc(None, 1, pa.MEM_COMMIT, RW, 0), TypeError),
    (lambda p: p.VirtualAlloc(None, 1, pa.MEM_COMMIT, protection=RW), TypeError),
    (lambda p: p.VirtualAlloc(None, 1, pa.MEM_COMMIT, RW, protect=RW), TypeError),
    (lambda p: p.VirtualFree(None, -1, pa.MEM_RELEASE), OverflowError),
    (lambda p: p.VirtualFree(0.5, 0, pa.MEM_RELEASE), TypeError),
    (lambda p: p.VirtualProtect(0, 0, -2), OverflowError),
    (lambda p: p.VirtualQuery(), TypeError),
    (lambda p: p.VirtualQuery("0x1000"), TypeError),
    (lambda p: p.VirtualQuery(-1), OverflowError),
    (lambda p: p.GetWriteWatch(0, 0, 1, count=-1), OverflowError),
    (lambda p: p.GetWriteWatch(0, 0), TypeError),
    (lambda p: p.ResetWriteWatch(0, "x"), TypeError),
    (lambda p: p.read(0, -1), OverflowError),
    (lambda p: p.read(0), TypeError),
    (lambda p: p.view(0, -1), OverflowError),
    (lambda p: p.SetLastError(-1), OverflowError),
    (lambda p: p.SetLastError(1 << 32), OverflowError),
    (lambda p: p.GetLastError(1), TypeError),
    (lambda p: p.GetSystemInfo(0), TypeError),
])
def test_argument_errors(proc, call, exc):
    before = proc.stats()
    pa.SetLastError(77)
    with pytest.raises(exc):
        call(proc)
    assert pa.GetLastError() == 77  # not a Win32 failure
    assert proc.stats() == before


def test_range_errors_name_the_bound(proc):
    with pytest.raises(OverflowError, match=r"a DWORD must be in \[0, 0xffffffff\]"):
        proc.VirtualAlloc(None, 1, 1 << 32, RW)
    with pytest.raises(OverflowError, match=r"an address must be in \[0, 0xffffffffffffffff\]"):
        proc.VirtualQuery(-1)


def test_bool_and_int_subclasses_are_ints(proc):
    class Addr(int):
        pass

    p = proc.VirtualAlloc(Addr(0), True, pa.MEM_COMMIT, RW)
    assert proc.VirtualQuery(Addr(p)).RegionSize == PAGE


# ---- threads -------------------------------------------------------------------------------------


def test_threads_hammering_one_process(new_process):
    p = new_process(address_space=1 << 26)
    baseline = p.stats()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(seed):
        rnd = random.Random(seed)
        try:
            start.wait()
            for i in range(150):
                size = rnd.choice([1, 0x1000, 0x3000, 0x10000, 0x21000])
                flags = RC | (pa.MEM_WRITE_WATCH if i % 3 == 0 else 0)
                a = p.VirtualAlloc(None, size, flags, RW)
                tag = bytes([seed]) * 16
                p.write(a, tag)
                with p.view(a, 16) as mv:
                    mv[0] = seed  # a direct store: may fault on a watched page
                    assert bytes(mv) == tag
                assert p.VirtualProtect(a, 1, RO) == RW
                q = p.VirtualQuery(a)
                assert (q.AllocationBase, q.Protect, q.RegionSize) == (a, RO, 0x1000)
                if flags & pa.MEM_WRITE_WATCH:
                    assert p.GetWriteWatch(0, a, 0x1000)[0] == [a]
                with pytest.raises(pa.AccessViolation):
                    p.write(a, b"x")
                assert p.read(a, 16) == tag
                if size > 0x1000:
                    p.VirtualFree(a + 0x1000, 0x1000, pa.MEM_DECOMMIT)
                with pytest.raises(pa.WinError) as info:
                    p.VirtualFree(a + 0x1000, 0, pa.MEM_RELEASE)
                assert info.value.winerror == 487 == pa.GetLastError()
                assert p.VirtualFree(a, 0, pa.MEM_RELEASE)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # make the threads interleave between calls
    try:
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(1, 5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[0]
    after = p.stats()
    for key in ("reserved", "committed", "allocations", "pins"):
        assert after[key] == baseline[key], key
    lo, hi = limits(p)
    assert p.regions() == [pa.Region(lo, hi - lo, pa.MEM_FREE, NA, 0, 0, 0, 0, False)]
    assert after["peak_committed"] > 0


# ---- PYALLOC_ADDRESS_SPACE sizes the current process ---------------------------------------------


DEFAULT_SPAN = 1 << 36  # PA_DEFAULT_ADDRESS_SPACE in pyalloc.h


def subprocess_env(**extra: str) -> dict:
    """The environment for a new interpreter that imports this pyalloc."""
    return dict(os.environ, **extra,
                PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(pa.__file__)),
                                            os.environ.get("PYTHONPATH", "")]))


def current_process_span(address_space: str, limit: int | None = None) -> int:
    """The span a new interpreter's current process gets with PYALLOC_ADDRESS_SPACE set to
    address_space, under RLIMIT_AS = limit; under a limit it also checks that a 1 MiB malloc
    works there."""
    import resource
    import subprocess
    code = ("import pyalloc as pa; s = pa.GetSystemInfo()\n"
            "print(s.lpMaximumApplicationAddress + 1 - s.lpMinimumApplicationAddress)\n"
            "try: print(pa.malloc(1 << 20) != 0)\n"
            "except MemoryError: print(False)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=subprocess_env(PYALLOC_ADDRESS_SPACE=address_space),
                         preexec_fn=limit and (lambda: resource.setrlimit(resource.RLIMIT_AS,
                                                                          (limit, limit))))
    assert out.returncode == 0, out.stderr
    span, malloc_works = out.stdout.split()
    assert malloc_works == "True" or not limit
    # The null slot lies below the minimum and the top slot above the maximum, as on Windows.
    return int(span) + 2 * GRAN


@pytest.mark.parametrize("value, span", [("4G", 4 << 30), ("196608", 3 * GRAN), ("512m", 512 << 20),
                                         ("12x", DEFAULT_SPAN), ("100", DEFAULT_SPAN)])
def test_address_space_env_var_sizes_the_current_process(value, span):
    """PYALLOC_ADDRESS_SPACE (read by the C layer, so valgrind can run programs on the preload
    library) sets the span GetSystemInfo reports; a malformed or too-small value gives the default."""
    assert current_process_span(value) == span


# ASan reserves terabytes of shadow memory: an interpreter under it cannot start with a limit.
under_asan = pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                                reason="ASan's shadow memory exceeds any RLIMIT_AS")


@under_asan
@pytest.mark.parametrize("limit, value, span", [(3 << 30, "", 3 << 29), (3 << 30, "1G", 1 << 30),
                                                (3 << 40, "", DEFAULT_SPAN)])
def test_address_space_of_the_current_process_under_ulimit_v(limit, value, span):
    """Under a limit on the host process's address space (RLIMIT_AS, `ulimit -v`) the current
    process takes at most half of it (the rest is the program's), unless PYALLOC_ADDRESS_SPACE
    says otherwise. It took 64 GiB whatever the limit, so that `import pyalloc` aborted."""
    assert current_process_span(value, limit) == span


@under_asan
def test_process_too_large_for_ulimit_v_raises_memory_error_naming_address_space():
    import resource
    import subprocess
    code = ("import pyalloc as pa\n"
            "try: pa.Process()\n"
            "except MemoryError as e: print(e)\n"
            "print(pa.Process(address_space=256 << 20).regions()[0].size >> 20)\n")
    limit = 3 << 30
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
                         env=subprocess_env())
    assert out.returncode == 0, out.stderr
    refused, free_mib = out.stdout.splitlines()
    assert "65536 MiB" in refused and "address_space" in refused
    assert free_mib == "255"  # all but the null slot and the top slot, free
