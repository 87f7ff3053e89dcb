"""Sections: CreateFileMapping, OpenFileMapping, MapViewOfFile[Ex], UnmapViewOfFile,
FlushViewOfFile and CloseHandle through the Python API, against the Windows facts of
/work/shared/reference/virtual-memory.md sections 1.11-1.14 (facts 84-110) and the view facts of
earlier sections (35, 47, 59). Tests are named after their fact; the others pin pyalloc's own
contract (handles, the address-space walk, sharing between processes, no leaks on failure).

Known limitation, deliberately not tested as Windows behaviour: named FILE-backed sections are
shared by name only inside one host process (named pagefile sections work across processes).
"""
from __future__ import annotations

import contextlib
import gc
import operator
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import pyalloc as pa
from conftest import GRAN, PAGE, winerror

REPO = Path(__file__).resolve().parent.parent

RW = pa.PAGE_READWRITE
RO = pa.PAGE_READONLY
WC = pa.PAGE_WRITECOPY
ERW = pa.PAGE_EXECUTE_READWRITE
ER = pa.PAGE_EXECUTE_READ
EWC = pa.PAGE_EXECUTE_WRITECOPY
NA = pa.PAGE_NOACCESS
READ, WRITE, COPY, EXEC = pa.FILE_MAP_READ, pa.FILE_MAP_WRITE, pa.FILE_MAP_COPY, pa.FILE_MAP_EXECUTE
MAPPED = pa.MEM_MAPPED


def hexid(value):
    """Parameter ids: protections and flags in hex."""
    return hex(value) if isinstance(value, int) else None


RUN = uuid.uuid4().hex[:12]  # this run's names, apart from those of concurrent runs


def unique(tag: str = "s") -> str:
    """A section name no other test (or concurrent run) uses."""
    return f"pyalloc-test-{RUN}-{tag}-{uuid.uuid4().hex}"


def vq(p, address) -> dict:
    return p.VirtualQuery(address)._asdict()


def expect_vq(p, address, **fields):
    got = vq(p, address)
    for k, v in fields.items():
        assert got[k] == v, f"{k}: {got[k]:#x} != {v:#x} in {p.VirtualQuery(address)!r}"
    return got


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def snapshot(p) -> tuple:
    """Everything a failed call must leave alone: the address space, its counters and the
    host's open file descriptors."""
    gc.collect()
    st = p.stats()
    return (p.regions(), {k: st[k] for k in ("reserved", "committed", "allocations", "pins")},
            open_fds())


@contextlib.contextmanager
def leaks_nothing(p):
    before = snapshot(p)
    yield
    after = snapshot(p)
    assert after[0] == before[0], "address space changed"
    assert after[1] == before[1], "counters changed"
    assert after[2] == before[2], f"file descriptors changed: {before[2] ^ after[2]}"


def make_file(tmp_path, data: bytes, name: str = "data.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def shm_path(name: str) -> Path:
    """Where a named pagefile section lives while it has a name (POSIX shared memory)."""
    return Path("/dev/shm") / f"pyalloc.{name}"


def named_objects() -> set[str]:
    return {n for n in os.listdir("/dev/shm") if n.startswith(f"pyalloc.pyalloc-test-{RUN}-")}


@pytest.fixture(autouse=True)
def no_leftover_names():
    """No test leaves a named section behind (its name must go with its last handle)."""
    before = named_objects()
    yield
    gc.collect()
    assert named_objects() - before == set()


# ---- 1.11 CreateFileMapping --------------------------------------------------------------------


def test_fact84_pagefile_section_needs_a_size_87(proc):
    """kbsync:CreateFileMappingW: CreateFileMapping(INVALID_HANDLE_VALUE, ..., 0) -> 87."""
    with leaks_nothing(proc), winerror(87, proc):
        proc.CreateFileMapping(None, RW, 0)
    with leaks_nothing(proc), winerror(87, proc):
        proc.CreateFileMapping(None, RW, 0, name=unique())


def test_fact85_success_sets_last_error_zero_existing_name_183(proc):
    """k32:test_CreateFileMapping: success sets GLE 0; an existing name returns a handle to the
    existing object with GLE 183 and the new size ignored."""
    name = unique()
    proc.SetLastError(0xDEAD)
    with proc.CreateFileMapping(None, RW, 0x10000, name) as h1:
        assert proc.GetLastError() == 0
        assert not h1.already_existed
        proc.SetLastError(0xDEAD)
        with proc.CreateFileMapping(None, RW, 0x30000, name) as h2:
            assert proc.GetLastError() == pa.ERROR_ALREADY_EXISTS == 183
            assert h2.already_existed
            assert int(h2) != int(h1)
            assert h2.size == h1.size == 0x10000  # the new size is ignored
            # The same object: a write through one handle's view shows in the other's.
            v1 = proc.MapViewOfFile(h1, WRITE, 0, 0)
            v2 = proc.MapViewOfFile(h2, READ, 0, 0)
            proc.write(v1 + 0x123, b"same object")
            assert proc.read(v2 + 0x123, 11) == b"same object"
            proc.UnmapViewOfFile(v1)
            proc.UnmapViewOfFile(v2)


def test_fact85_names_are_case_sensitive(proc):
    """k32:test_CreateFileMapping: "WINE TEST MAPPING" vs "Wine Test Mapping" are two objects;
    OpenFileMapping with the wrong case -> 2."""
    base = unique("Case")
    with proc.CreateFileMapping(None, RW, 0x1000, base + "-Wine Test Mapping") as h1:
        proc.SetLastError(0xDEAD)
        with proc.CreateFileMapping(None, RW, 0x2000, base + "-WINE TEST MAPPING") as h2:
            assert proc.GetLastError() == 0
            assert not h2.already_existed
            assert (h1.size, h2.size) == (0x1000, 0x2000)
        with leaks_nothing(proc), winerror(2, proc):
            proc.OpenFileMapping(pa.FILE_MAP_ALL_ACCESS, base + "-wine test mapping")
        with proc.OpenFileMapping(pa.FILE_MAP_ALL_ACCESS, base + "-Wine Test Mapping") as h3:
            assert h3.size == 0x1000


def test_open_missing_name_fails_2(proc):
    """k32:test_CreateFileMapping (fact 85): OpenFileMapping of a name nobody created -> 2."""
    with leaks_nothing(proc), winerror(pa.ERROR_FILE_NOT_FOUND, proc):
        proc.OpenFileMapping(pa.FILE_MAP_READ, unique("missing"))


ACCEPTED = [RO, RW, WC, ER, ERW, EWC]
REJECTED = [0, NA, pa.PAGE_EXECUTE, RO | NA, RW | RO, WC | RW, ER | pa.PAGE_EXECUTE, ERW | ER,
            EWC | ERW, RW | pa.PAGE_GUARD, RO | pa.PAGE_NOCACHE, 0x100, 0xFF]


@pytest.mark.parametrize("prot", ACCEPTED)
def test_fact86_accepted_protections(proc, prot):
    """k32:test_CreateFileMapping_protection: the six section protections are accepted, and a
    FILE_MAP_READ view of each is PAGE_READONLY."""
    with proc.CreateFileMapping(None, prot, 0x1000) as h:
        v = proc.MapViewOfFile(h, READ, 0, 0)
        assert vq(proc, v) == dict(BaseAddress=v, AllocationBase=v, AllocationProtect=RO,
                                   RegionSize=PAGE, State=pa.MEM_COMMIT, Protect=RO, Type=MAPPED)
        proc.UnmapViewOfFile(v)


@pytest.mark.parametrize("prot", REJECTED, ids=hexid)
def test_fact86_fact74_rejected_protections_87(proc, prot):
    """k32:test_CreateFileMapping_protection: PAGE_NOACCESS, PAGE_EXECUTE, 0 and every multi-bit
    combination -> 87; PAGE_GUARD is not accepted either (fact 74)."""
    with leaks_nothing(proc), winerror(87, proc):
        proc.CreateFileMapping(None, prot, 0x1000)


@pytest.mark.parametrize("sec, reserved", [
    (0, False), (pa.SEC_COMMIT, False), (pa.SEC_RESERVE, True),
    (pa.SEC_RESERVE | pa.SEC_NOCACHE, True), (pa.SEC_COMMIT | pa.SEC_NOCACHE, False),
    (pa.SEC_RESERVE | pa.SEC_WRITECOMBINE, True), (pa.SEC_COMMIT | pa.SEC_WRITECOMBINE, False),
], ids=hexid)
def test_fact87_accepted_sec_flags(proc, sec, reserved):
    """k32:test_CreateFileMapping sec_flag_tests: accepted SEC_* combinations; no flag means
    SEC_COMMIT (a view is committed), SEC_RESERVE leaves it reserved."""
    with proc.CreateFileMapping(None, RW | sec, 0x20000) as h:
        assert ("SEC_RESERVE" in repr(h)) == reserved
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        modifier = (pa.PAGE_NOCACHE if sec & pa.SEC_NOCACHE else
                    pa.PAGE_WRITECOMBINE if sec & pa.SEC_WRITECOMBINE else 0)
        expect_vq(proc, v, RegionSize=0x20000, AllocationProtect=RW | modifier, Type=MAPPED,
                  State=pa.MEM_RESERVE if reserved else pa.MEM_COMMIT,
                  Protect=0 if reserved else RW | modifier)
        proc.UnmapViewOfFile(v)


@pytest.mark.parametrize("sec, code", [
    (pa.SEC_RESERVE | pa.SEC_COMMIT, 87),
    (pa.SEC_LARGE_PAGES, 87), (pa.SEC_COMMIT | pa.SEC_LARGE_PAGES, 87),
    (pa.SEC_RESERVE | pa.SEC_LARGE_PAGES, 87),
    (pa.SEC_NOCACHE, 87), (pa.SEC_WRITECOMBINE, 87),
    (pa.SEC_FILE, 87), (pa.SEC_FILE | pa.SEC_COMMIT, 87), (pa.SEC_FILE | pa.SEC_RESERVE, 87),
    (pa.SEC_IMAGE, 193),
    (pa.SEC_IMAGE | pa.SEC_RESERVE, 87), (pa.SEC_IMAGE | pa.SEC_COMMIT, 87),
], ids=hexid)
def test_fact87_rejected_sec_flags(proc, sec, code):
    """k32:test_CreateFileMapping sec_flag_tests: the rejected combinations and their codes."""
    with leaks_nothing(proc), winerror(code, proc):
        proc.CreateFileMapping(None, RW | sec, 0x20000)
    with leaks_nothing(proc), winerror(code, proc):
        proc.CreateFileMapping(None, RW | sec, 0x20000, name=unique())


def test_fact88_pagefile_size_rounds_to_a_page_file_size_is_exact(proc, tmp_path):
    """k32:test_MapViewOfFile: pagefile 0x3452 -> 0x4000; a file section keeps 36 and 0x3456."""
    with proc.CreateFileMapping(None, RW, 0x3452) as h:
        assert h.size == 0x4000
    with proc.CreateFileMapping(None, RW, 0x3452, name=unique()) as h:
        assert h.size == 0x4000
    path = make_file(tmp_path, b"x" * 36)
    with open(path, "r+b") as f:
        with proc.CreateFileMapping(f, RW, 0) as h:
            assert h.size == 36
            assert "file" in repr(h)
        with proc.CreateFileMapping(f, RW, 0x3456) as h:
            assert h.size == 0x3456
    assert os.path.getsize(path) == 0x3456  # grown by the writable section (fact 89)


def test_fact89_zero_byte_file_1006(proc, tmp_path):
    """k32:test_MapViewOfFile: a 0-byte file with size 0 -> 1006 (ERROR_FILE_INVALID)."""
    path = make_file(tmp_path, b"")
    with open(path, "r+b") as f:
        for prot in (RO, RW, WC):
            with leaks_nothing(proc), winerror(pa.ERROR_FILE_INVALID, proc):
                proc.CreateFileMapping(f, prot, 0)
    assert os.path.getsize(path) == 0


def test_fact89_readonly_section_larger_than_file_8(proc, tmp_path):
    """k32:test_MapViewOfFile: a read-only section larger than the file -> 8
    (STATUS_SECTION_TOO_BIG); the file is left alone."""
    path = make_file(tmp_path, b"y" * 100)
    with open(path, "r+b") as f:
        for prot in (RO, ER):
            with leaks_nothing(proc), winerror(8, proc):
                proc.CreateFileMapping(f, prot, 0x2000)
    assert os.path.getsize(path) == 100


def test_fact89_writable_section_larger_than_file_grows_it(proc, tmp_path):
    """k32:test_MapViewOfFile, srv:create_mapping: a writable section larger than the file grows
    the file; the new bytes read as zero and can be written through a view."""
    path = make_file(tmp_path, b"abc")
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RW, 0x12345) as h:
        assert os.path.getsize(path) == 0x12345
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        expect_vq(proc, v, RegionSize=0x13000, State=pa.MEM_COMMIT, Protect=RW, Type=MAPPED)
        assert proc.read(v, 4) == b"abc\0"
        assert proc.read(v + 0x12340, 5) == bytes(5)
        proc.write(v + 0x12340, b"tail!")
        proc.FlushViewOfFile(v, 0)
        proc.UnmapViewOfFile(v)
    data = path.read_bytes()
    assert len(data) == 0x12345
    assert data[:3] == b"abc" and data[-5:] == b"tail!"


def test_a_file_truncated_under_its_views_gives_in_page_errors_not_a_crash(proc, tmp_path):
    """Windows refuses to truncate a file while a view of it exists; Linux allows it, and the
    host then raises SIGBUS at each access past the new end (found by fuzzing: it killed the
    interpreter, or a memoryview access faulted forever). Checked copies of such a page fail
    with STATUS_IN_PAGE_ERROR -> ERROR_SWAPERROR 999 (Wine's ntdll error table), and the page
    is replaced by a zero page that direct accesses then read and write."""
    path = make_file(tmp_path, b"a" * 0x20000)
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RW, 0) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        c = proc.MapViewOfFile(h, pa.FILE_MAP_COPY, 0, 0)
        f.truncate(10)
        assert proc.read(v, 4) == b"aaaa"  # still inside the file
        with winerror(999, proc):
            proc.read(v + 0x11000, 4)
        with winerror(999, proc):
            proc.write(v + 0x12000, b"x")
        with winerror(999, proc):
            proc.read(c + 0x13000, 2)
        assert proc.read(v + 0x11000, 4) == bytes(4)  # replaced: readable from now on
        with proc.view(v + 0x14000, 4) as mv:
            assert bytes(mv) == bytes(4)
            mv[0] = 65
            assert bytes(mv) == b"A\0\0\0"
        expect_vq(proc, v + 0x11000, State=pa.MEM_COMMIT, Protect=RW, Type=MAPPED)
        proc.UnmapViewOfFile(v)
        proc.UnmapViewOfFile(c)


def test_fact90_read_only_file(proc, tmp_path):
    """k32:test_MapViewOfFile, k32:test_mapping: a file opened for reading only: PAGE_READWRITE
    -> 5; PAGE_WRITECOPY and PAGE_READONLY succeed (and a copy view's writes stay private)."""
    path = make_file(tmp_path, b"read only file")
    with open(path, "rb") as f:
        for prot in (RW, ERW):
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.CreateFileMapping(f, prot, 0)
        with proc.CreateFileMapping(f, RO, 0) as h:
            v = proc.MapViewOfFile(h, READ, 0, 0)
            assert proc.read(v, 14) == b"read only file"
            proc.UnmapViewOfFile(v)
        with proc.CreateFileMapping(f, WC, 0) as h:
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.MapViewOfFile(h, WRITE, 0, 0)
            v = proc.MapViewOfFile(h, COPY, 0, 0)
            proc.write(v, b"READ")
            assert proc.read(v, 14) == b"READ only file"
            proc.UnmapViewOfFile(v)
            r = proc.MapViewOfFile(h, READ, 0, 0)  # fact 59: a read view may become WRITECOPY
            assert proc.VirtualProtect(r, 1, WC) == RO
            proc.write(r + 5, b"ONLY")
            assert proc.read(r, 14) == b"read ONLY file"
            proc.UnmapViewOfFile(r)
    assert path.read_bytes() == b"read only file"


def test_fact90_file_without_read_access_fails_5(proc, tmp_path):
    """k32:test_mapping: a file handle without read access cannot back any section (a
    write-only descriptor, and an O_PATH one, which has no access at all)."""
    path = make_file(tmp_path, b"z" * 10)
    with open(path, "wb") as f:  # truncates: give it content again
        f.write(b"z" * 10)
        f.flush()
        for prot in ACCEPTED:
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.CreateFileMapping(f, prot, 0)
    fd = os.open(path, os.O_PATH)
    try:
        for prot in ACCEPTED:
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.CreateFileMapping(fd, prot, 0)
    finally:
        os.close(fd)


def test_fact91_closing_all_handles_keeps_the_view_drops_the_name(proc):
    """k32:test_MapViewOfFile: with every handle of a named section closed, the view stays valid
    (VQ unchanged, data readable) but OpenFileMapping fails with 2 and CreateFileMapping with
    that name makes a fresh object (GLE 0)."""
    name = unique()
    h = proc.CreateFileMapping(None, RW, 0x20000, name)
    h2 = proc.OpenFileMapping(pa.FILE_MAP_ALL_ACCESS, name)
    v = proc.MapViewOfFile(h, WRITE, 0, 0)
    proc.write(v, b"survivor")
    info = vq(proc, v)
    assert shm_path(name).exists()
    proc.CloseHandle(h)
    proc.OpenFileMapping(READ, name).close()  # h2 still holds the name
    h2.close()
    assert not shm_path(name).exists()
    assert vq(proc, v) == info
    assert proc.read(v, 8) == b"survivor"
    proc.write(v + 0x1FFF8, b"stillrw!")
    with leaks_nothing(proc), winerror(2, proc):
        proc.OpenFileMapping(READ, name)
    proc.SetLastError(0xDEAD)
    with proc.CreateFileMapping(None, RW, 0x10000, name) as fresh:
        assert proc.GetLastError() == 0 and not fresh.already_existed
        assert fresh.size == 0x10000
        w = proc.MapViewOfFile(fresh, READ, 0, 0)
        assert proc.read(w, 8) == bytes(8)  # a new object, not the old data
        proc.UnmapViewOfFile(w)
    assert proc.read(v, 8) == b"survivor"
    proc.UnmapViewOfFile(v)


def test_fact91_unnamed_section_data_lives_while_a_view_does(proc):
    """k32:test_MapViewOfFile: closing the handle does not unmap or drop the data."""
    h = proc.CreateFileMapping(None, RW, 0x10000)
    v = proc.MapViewOfFile(h, WRITE, 0, 0)
    proc.write(v, b"kept")
    h.close()
    assert proc.read(v, 4) == b"kept"
    proc.UnmapViewOfFile(v)


# ---- 1.12 MapViewOfFile and views ---------------------------------------------------------------


def test_fact92_views_are_64k_aligned(proc):
    """nt:test_NtMapViewOfSection: every view starts on a 64 KiB boundary."""
    with proc.CreateFileMapping(None, RW, 0x30000) as h:
        views = [proc.MapViewOfFile(h, WRITE, off, size)
                 for off, size in ((0, 0x1000), (0, 1), (0x10000, 0x11000), (0x20000, 0), (0, 0))]
        spare = proc.VirtualAlloc(None, 0x1000, pa.MEM_COMMIT, RW)  # private memory in between
        views.append(proc.MapViewOfFile(h, READ, 0, 0x1234))
        assert all(v % GRAN == 0 for v in views)
        assert len(set(views)) == len(views)
        for v in views:
            assert vq(proc, v)["AllocationBase"] == v
            proc.UnmapViewOfFile(v)
        proc.VirtualFree(spare, 0, pa.MEM_RELEASE)


def test_fact93_alignment_and_conflicts(proc):
    """nt:test_NtMapViewOfSection, MS:MapViewOfFile: an offset that is not a multiple of 64 KiB
    -> 1132; a MapViewOfFileEx base not 64K aligned (p+42, p+0x1000) -> 1132; a base inside an
    existing view -> 487; a free aligned base is used exactly."""
    with proc.CreateFileMapping(None, RW, 0x40000) as h:
        for off in (0x1000, 42, 0x10001, 0x8000):
            with leaks_nothing(proc), winerror(pa.ERROR_MAPPED_ALIGNMENT, proc):
                proc.MapViewOfFile(h, READ, off, 0x1000)
        v = proc.MapViewOfFile(h, WRITE, 0, 0x20000)
        target = v + 0x40000
        assert vq(proc, target)["State"] == pa.MEM_FREE
        for base in (target + 42, target + 0x1000, v + 0x1000):
            with leaks_nothing(proc), winerror(pa.ERROR_MAPPED_ALIGNMENT, proc):
                proc.MapViewOfFileEx(h, READ, 0, 0x1000, base)
        for base in (v, v + 0x10000):
            with leaks_nothing(proc), winerror(pa.ERROR_INVALID_ADDRESS, proc):
                proc.MapViewOfFileEx(h, READ, 0, 0x1000, base)
        private = proc.VirtualAlloc(None, 0x20000, pa.MEM_RESERVE, RW)
        with leaks_nothing(proc), winerror(pa.ERROR_INVALID_ADDRESS, proc):
            proc.MapViewOfFileEx(h, READ, 0, 0x1000, private + 0x10000)
        w = proc.MapViewOfFileEx(h, READ, 0x10000, 0x1000, target)
        assert w == target
        proc.write(v + 0x10000, b"offset")
        assert proc.read(w, 6) == b"offset"
        # A view spanning into an allocation: conflict.
        proc.UnmapViewOfFile(w)
        with leaks_nothing(proc), winerror(pa.ERROR_INVALID_ADDRESS, proc):
            proc.MapViewOfFileEx(h, READ, 0, 0x20000, private - 0x10000)
        proc.UnmapViewOfFile(v)
        proc.VirtualFree(private, 0, pa.MEM_RELEASE)


def test_fact94_view_sizes(proc):
    """k32:test_MapViewOfFile, uv:virtual_map_section: size 0 maps to the section's end; a size
    past the end -> 5; offset >= size -> 87."""
    with proc.CreateFileMapping(None, RW, 0x30000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0x10000, 0)
        expect_vq(proc, v, RegionSize=0x20000, State=pa.MEM_COMMIT, Type=MAPPED)
        w = proc.MapViewOfFile(h, WRITE, 0, 0x30000)  # exactly the whole section
        proc.write(w + 0x10000, b"second slot")
        assert proc.read(v, 11) == b"second slot"
        for off, size in ((0, 0x30001), (0x10000, 0x20001), (0x20000, 0x10001), (0, 1 << 40)):
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.MapViewOfFile(h, READ, off, size)
        for off in (0x30000, 0x40000, 1 << 40):
            for size in (0, 0x1000):
                with leaks_nothing(proc), winerror(pa.ERROR_INVALID_PARAMETER, proc):
                    proc.MapViewOfFile(h, READ, off, size)
        proc.UnmapViewOfFile(v)
        proc.UnmapViewOfFile(w)


SECTION_MAP_EXECUTE = pa.SECTION_MAP_EXECUTE
VIEW_TABLE = [  # k32:test_mapping's view[] table: FILE_MAP_* access -> view protection
    (0, NA), (COPY, WC), (WRITE, RW), (WRITE | COPY, RW), (READ, RO), (READ | COPY, RO),
    (READ | WRITE, RW), (READ | WRITE | COPY, RW),
    (SECTION_MAP_EXECUTE, NA), (SECTION_MAP_EXECUTE | COPY, NA),
    (SECTION_MAP_EXECUTE | WRITE, RW), (SECTION_MAP_EXECUTE | READ, RO),
    (EXEC, NA), (EXEC | COPY, EWC), (EXEC | WRITE, ERW), (EXEC | WRITE | COPY, ERW),
    (EXEC | READ, ER), (EXEC | READ | COPY, ER), (EXEC | READ | WRITE, ERW),
    (EXEC | READ | WRITE | COPY, ERW), (EXEC | SECTION_MAP_EXECUTE | COPY, NA),
    (EXEC | SECTION_MAP_EXECUTE | READ, ER),
    (pa.FILE_MAP_ALL_ACCESS, RW), (pa.FILE_MAP_ALL_ACCESS | EXEC, ERW),
]


@pytest.mark.parametrize("access, prot", VIEW_TABLE, ids=hexid)
def test_fact95_access_to_view_protection(proc, access, prot):
    """k32:test_mapping, kb:MapViewOfFileEx: the view's Protect = AllocationProtect, State
    COMMIT, Type MEM_MAPPED, Size the page-rounded view size. FILE_MAP_COPY counts only when it
    is the only bit besides FILE_MAP_EXECUTE."""
    with proc.CreateFileMapping(None, ERW, 0x10000) as h:
        v = proc.MapViewOfFile(h, access, 0, 0x2345)
        assert v % GRAN == 0
        assert vq(proc, v) == dict(BaseAddress=v, AllocationBase=v, AllocationProtect=prot,
                                   RegionSize=0x3000, State=pa.MEM_COMMIT, Protect=prot,
                                   Type=MAPPED)
        proc.UnmapViewOfFile(v)


SECTION_VS_ACCESS = [  # fact 96: may this access map a section of this protection?
    (RO, [READ, COPY, 0, READ | COPY], [WRITE, WRITE | READ, pa.FILE_MAP_ALL_ACCESS]),
    (WC, [READ, COPY, 0], [WRITE, WRITE | COPY]),
    (RW, [READ, COPY, 0, WRITE, pa.FILE_MAP_ALL_ACCESS], [EXEC | READ, EXEC | WRITE]),
    (ER, [READ, COPY, 0, EXEC | READ, EXEC | COPY], [WRITE, EXEC | WRITE]),
    (EWC, [READ, COPY, 0, EXEC | READ, EXEC | COPY], [WRITE, EXEC | WRITE]),
    (ERW, [READ, COPY, 0, WRITE, EXEC | WRITE, EXEC | COPY], []),
]


@pytest.mark.parametrize("sprot, ok, denied", SECTION_VS_ACCESS, ids=hexid)
def test_fact96_access_must_be_allowed_by_the_section_5(proc, sprot, ok, denied):
    """k32:test_mapping, k32:test_MapViewOfFile: FILE_MAP_WRITE needs a read/write section;
    FILE_MAP_READ, FILE_MAP_COPY and 0 work on any; FILE_MAP_EXECUTE needs an executable one.
    Otherwise 5."""
    with proc.CreateFileMapping(None, sprot, 0x10000) as h:
        for access in ok:
            proc.UnmapViewOfFile(proc.MapViewOfFile(h, access, 0, 0))
        for access in denied:
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.MapViewOfFile(h, access, 0, 0)


def test_fact96_handle_rights(proc):
    """k32:test_MapViewOfFile: a handle with only FILE_MAP_READ cannot map FILE_MAP_WRITE (5);
    a handle with no rights cannot map even access 0 (5)."""
    name = unique()
    with proc.CreateFileMapping(None, RW, 0x10000, name):
        with proc.OpenFileMapping(READ, name) as ro:
            for access in (WRITE, WRITE | READ, pa.FILE_MAP_ALL_ACCESS):
                with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                    proc.MapViewOfFile(ro, access, 0, 0)
            v = proc.MapViewOfFile(ro, READ, 0, 0)
            c = proc.MapViewOfFile(ro, COPY, 0, 0)
            proc.write(c, b"mine")  # copy-on-write needs only read rights
            assert proc.read(v, 4) == bytes(4)
            proc.UnmapViewOfFile(v)
            proc.UnmapViewOfFile(c)
        with proc.OpenFileMapping(0, name) as none:
            for access in (0, READ, COPY):
                with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                    proc.MapViewOfFile(none, access, 0, 0)
        with proc.OpenFileMapping(WRITE | READ, name) as rw:
            proc.UnmapViewOfFile(proc.MapViewOfFile(rw, WRITE, 0, 0))


def test_fact96_open_with_file_map_copy_maps_copy_views(proc):
    """kb:OpenFileMappingW: FILE_MAP_COPY as the desired access is SECTION_MAP_READ, so the
    handle can map copy-on-write (and read) views but not write views."""
    name = unique()
    with proc.CreateFileMapping(None, RW, 0x10000, name), \
            proc.OpenFileMapping(COPY, name) as h:
        c = proc.MapViewOfFile(h, COPY, 0, 0)
        r = proc.MapViewOfFile(h, READ, 0, 0)
        proc.write(c, b"private")
        assert proc.read(r, 7) == bytes(7)
        with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
            proc.MapViewOfFile(h, WRITE, 0, 0)
        proc.UnmapViewOfFile(c)
        proc.UnmapViewOfFile(r)


def test_fact97_fact98_sec_reserve_commit_is_section_wide(proc, new_process):
    """k32:test_MapViewOfFile: a SEC_RESERVE view is reserved; committing part of it through one
    view commits it in every view of the section, each with its own view protection (also in
    another process and in views mapped later)."""
    with proc.CreateFileMapping(None, RW | pa.SEC_RESERVE, 0x100000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        v2 = proc.MapViewOfFile(h, WRITE, 0, 0)
        ro = proc.MapViewOfFile(h, READ, 0, 0)
        assert v != v2
        reserved = dict(AllocationProtect=RW, RegionSize=0x100000, State=pa.MEM_RESERVE,
                        Protect=0, Type=MAPPED)
        expect_vq(proc, v, BaseAddress=v, AllocationBase=v, **reserved)
        expect_vq(proc, v2, BaseAddress=v2, AllocationBase=v2, **reserved)
        with pytest.raises(pa.AccessViolation):
            proc.read(v2, 1)
        other = new_process(address_space=1 << 24)
        ov = other.MapViewOfFile(h, WRITE, 0, 0)
        assert proc.VirtualAlloc(v, 0x10000, pa.MEM_COMMIT, RO) == v
        expect_vq(proc, v, RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RO,
                  AllocationProtect=RW, Type=MAPPED)
        expect_vq(proc, v + 0x10000, RegionSize=0xF0000, State=pa.MEM_RESERVE, Protect=0)
        expect_vq(proc, v2, RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RW,
                  AllocationProtect=RW)
        expect_vq(proc, ro, RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RO,
                  AllocationProtect=RO)
        expect_vq(other, ov, RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RW)
        # The committed pages are shared memory: a write through one view shows everywhere.
        proc.write(v2 + 0x100, b"committed")
        assert proc.read(v + 0x100, 9) == b"committed"
        assert other.read(ov + 0x100, 9) == b"committed"
        with pytest.raises(pa.AccessViolation):
            proc.write(v + 0x100, b"x")  # this view's pages were committed PAGE_READONLY
        # Commits from another process and in the middle of the section.
        other.VirtualAlloc(ov + 0x42000, 0x1000, pa.MEM_COMMIT, RW)
        expect_vq(proc, v2 + 0x42000, RegionSize=0x1000, State=pa.MEM_COMMIT, Protect=RW)
        late = proc.MapViewOfFile(h, READ, 0x40000, 0)
        expect_vq(proc, late, RegionSize=0x2000, State=pa.MEM_RESERVE)
        expect_vq(proc, late + 0x2000, RegionSize=0x1000, State=pa.MEM_COMMIT, Protect=RO)
        other.write(ov + 0x42010, b"late")
        assert proc.read(late + 0x2010, 4) == b"late"
        for a in (v, v2, ro, late):
            proc.UnmapViewOfFile(a)
        other.UnmapViewOfFile(ov)


def test_fact97_fact98_sec_reserve_with_copy_views(proc):
    """A copy-on-write view of a SEC_RESERVE section: commits through any view reach it (as
    PAGE_WRITECOPY, its own protection), it may commit with PAGE_WRITECOPY but not
    PAGE_READWRITE (fact 99), and its writes stay private (fact 106). VirtualProtect over
    reserved pages -> 487 (fact 50)."""
    with proc.CreateFileMapping(None, RW | pa.SEC_RESERVE, 0x20000) as h:
        c = proc.MapViewOfFile(h, COPY, 0, 0)
        w = proc.MapViewOfFile(h, WRITE, 0, 0)
        expect_vq(proc, c, State=pa.MEM_RESERVE, Protect=0, AllocationProtect=WC,
                  RegionSize=0x20000)
        with winerror(pa.ERROR_INVALID_ADDRESS, proc):
            proc.VirtualProtect(c, 0x1000, RO)
        proc.VirtualAlloc(w, 0x1000, pa.MEM_COMMIT, RW)
        expect_vq(proc, c, State=pa.MEM_COMMIT, Protect=WC, RegionSize=0x1000)
        proc.write(w, b"shared")
        assert proc.read(c, 6) == b"shared"
        proc.write(c, b"SECRET")
        assert proc.read(w, 6) == b"shared"
        expect_vq(proc, c, Protect=RW, RegionSize=0x1000, AllocationProtect=WC)
        with leaks_nothing(proc), winerror(87, proc):
            proc.VirtualAlloc(c + 0x1000, 0x1000, pa.MEM_COMMIT, RW)
        assert proc.VirtualAlloc(c + 0x1000, 0x1000, pa.MEM_COMMIT, WC) == c + 0x1000
        expect_vq(proc, w + 0x1000, State=pa.MEM_COMMIT, Protect=RW, RegionSize=0x1000)
        proc.write(c + 0x1000, b"mine")
        assert proc.read(w + 0x1000, 4) == bytes(4)
        proc.write(w + 0x1000, b"ours")
        assert proc.read(c + 0x1000, 4) == b"mine"
        with winerror(pa.ERROR_INVALID_ADDRESS, proc):
            proc.VirtualProtect(w, 0x3000, RO)  # the third page is still reserved
        expect_vq(proc, w, Protect=RW, RegionSize=0x2000)
        proc.UnmapViewOfFile(c)
        proc.UnmapViewOfFile(w)


def test_fact99_commit_on_a_sec_commit_view(proc):
    """k32:test_MapViewOfFile, k32:test_mapping: MEM_COMMIT on a committed pagefile view still
    succeeds and changes the protection of that part; it must stay within the view's access,
    else 87."""
    with proc.CreateFileMapping(None, RW, 0x100000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        expect_vq(proc, v, RegionSize=0x100000, State=pa.MEM_COMMIT, Protect=RW)
        assert proc.VirtualAlloc(v, 0x10000, pa.MEM_COMMIT, RO) == v
        expect_vq(proc, v, RegionSize=0x10000, State=pa.MEM_COMMIT, Protect=RO,
                  AllocationProtect=RW)
        r = proc.MapViewOfFile(h, READ, 0, 0)
        for prot in (RW, ERW, ER, pa.PAGE_EXECUTE):
            with leaks_nothing(proc), winerror(87, proc):
                proc.VirtualAlloc(r, 0x1000, pa.MEM_COMMIT, prot)
        assert proc.VirtualAlloc(r, 0x1000, pa.MEM_COMMIT, NA) == r
        expect_vq(proc, r, RegionSize=0x1000, Protect=NA, AllocationProtect=RO)
        proc.UnmapViewOfFile(v)
        proc.UnmapViewOfFile(r)


def test_fact99_commit_writecopy_on_a_shared_view_keeps_writes_private(proc):
    """Facts 99, 106, 108: a pagefile view's pages recommitted PAGE_WRITECOPY are copy-on-write:
    a write there is private to the view, as after VirtualProtect(PAGE_WRITECOPY)."""
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        w = proc.MapViewOfFile(h, READ, 0, 0)
        assert proc.VirtualAlloc(v, 0x1000, pa.MEM_COMMIT, WC) == v
        expect_vq(proc, v, RegionSize=0x1000, Protect=WC)
        proc.write(v, b"private")
        expect_vq(proc, v, RegionSize=0x10000, Protect=RW)  # copied: like the rest again
        assert proc.read(v, 7) == b"private"
        assert proc.read(w, 7) == bytes(7)
        proc.write(v + 0x1000, b"shared")
        assert proc.read(w + 0x1000, 6) == b"shared"
        proc.UnmapViewOfFile(v)
        proc.UnmapViewOfFile(w)


def test_fact100_commit_on_a_file_view_fails_5(proc, tmp_path):
    """k32:test_CreateFileMapping_protection, k32:test_mapping: VirtualAlloc(MEM_COMMIT) on a
    view of a real file -> 5 (STATUS_ALREADY_COMMITTED), whatever the protection."""
    path = make_file(tmp_path, b"f" * 0x2000)
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RW, 0) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        for prot in (RO, RW, WC, NA):
            with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
                proc.VirtualAlloc(v, 0x1000, pa.MEM_COMMIT, prot)
        expect_vq(proc, v, RegionSize=0x2000, Protect=RW)
        proc.UnmapViewOfFile(v)


@pytest.mark.parametrize("sec", [pa.SEC_COMMIT, pa.SEC_RESERVE])
def test_fact101_sec_nocache_views(proc, sec):
    """k32:test_MapViewOfFile: SEC_NOCACHE views carry PAGE_NOCACHE: 0x204, and 0x202 after a
    commit with PAGE_READONLY."""
    with proc.CreateFileMapping(None, RW | sec | pa.SEC_NOCACHE, 0x100000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        expect_vq(proc, v, AllocationProtect=0x204, RegionSize=0x100000,
                  Protect=0x204 if sec == pa.SEC_COMMIT else 0)
        assert proc.VirtualAlloc(v, 0x10000, pa.MEM_COMMIT, RO) == v
        expect_vq(proc, v, AllocationProtect=0x204, RegionSize=0x10000, Protect=0x202,
                  State=pa.MEM_COMMIT)
        proc.UnmapViewOfFile(v)


@pytest.mark.parametrize("sec", [pa.SEC_COMMIT, pa.SEC_RESERVE])
def test_fact35_mem_reset_on_pagefile_views(proc, sec):
    """k32:test_MapViewOfFile: MEM_RESET on a SEC_RESERVE or SEC_COMMIT pagefile view
    succeeds and returns the address."""
    with proc.CreateFileMapping(None, RW | sec, 0x20000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        if sec == pa.SEC_RESERVE:
            proc.VirtualAlloc(v, 0x20000, pa.MEM_COMMIT, RW)
        assert proc.VirtualAlloc(v, 0x10000, pa.MEM_RESET, NA) == v
        expect_vq(proc, v, State=pa.MEM_COMMIT, Protect=RW, RegionSize=0x20000)
        proc.UnmapViewOfFile(v)


def test_fact102_views_see_each_others_writes(proc):
    """k32:test_shared_memory: two views of one section see each other's writes immediately,
    at every offset, through read/write and through memoryviews."""
    with proc.CreateFileMapping(None, RW, 0x20000) as h:
        a = proc.MapViewOfFile(h, WRITE, 0, 0)
        b = proc.MapViewOfFile(h, WRITE, 0x10000, 0)
        proc.write(a + 0x10010, b"from a")
        assert proc.read(b + 0x10, 6) == b"from a"
        mv = proc.view(b + 0x20, 6)
        assert not mv.readonly
        mv[:] = b"from b"
        assert proc.read(a + 0x10020, 6) == b"from b"
        mv.release()
        proc.UnmapViewOfFile(a)
        proc.UnmapViewOfFile(b)


# ---- views and the VirtualAlloc family (facts 47, 59) -------------------------------------------


def test_fact47_virtual_free_on_a_view_87(proc):
    """k32:test_MapViewOfFile, uv:NtFreeVirtualMemory: VirtualFree on a view (decommit or
    release) -> 87, and the view is untouched."""
    with proc.CreateFileMapping(None, RW, 0x20000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        proc.write(v, b"keep")
        for args in ((v, 0x10000, pa.MEM_DECOMMIT), (v, 0, pa.MEM_RELEASE),
                     (v + 0x1000, 0x1000, pa.MEM_DECOMMIT)):
            with leaks_nothing(proc), winerror(87, proc):
                proc.VirtualFree(*args)
        assert proc.read(v, 4) == b"keep"
        proc.UnmapViewOfFile(v)


VIEW_PROTECT = [  # fact 59: view protection -> targets that succeed (every other one -> 87)
    (RW, [NA, RO, RW, WC]),
    (RO, [NA, RO, WC]),
    (WC, [NA, RO, WC]),
    (NA, [NA]),
    (ER, [NA, RO, WC, pa.PAGE_EXECUTE, ER]),
    (EWC, [NA, RO, WC, pa.PAGE_EXECUTE, ER]),
    (ERW, [NA, RO, RW, WC, pa.PAGE_EXECUTE, ER, ERW]),
]
ACCESS_OF = {RW: WRITE, RO: READ, WC: COPY, NA: 0, ER: EXEC | READ, EWC: EXEC | COPY,
             ERW: EXEC | WRITE}
# PAGE_EXECUTE_WRITECOPY as a target is left out: fact 59 ("WRITECOPY counts as read") allows
# it on an EXECUTE_READ view, k32:test_mapping's is_compatible_protection does not, and
# Windows reports it as PAGE_EXECUTE_READWRITE afterwards (not a fact of the reference).
TARGETS = [NA, RO, RW, WC, pa.PAGE_EXECUTE, ER, ERW]


@pytest.mark.parametrize("view_prot, allowed", VIEW_PROTECT, ids=hexid)
def test_fact59_virtual_protect_on_views(proc, view_prot, allowed):
    """k32:test_CreateFileMapping_protection, k32:test_mapping: VirtualProtect on a view
    succeeds iff the new access is within the view's (WRITECOPY reads; NOACCESS always works);
    otherwise 87. AllocationProtect never changes."""
    with proc.CreateFileMapping(None, ERW, 0x10000) as h:
        v = proc.MapViewOfFile(h, ACCESS_OF[view_prot], 0, 0x1000)
        current = view_prot
        for target in TARGETS:
            if target in allowed:
                assert proc.VirtualProtect(v, 0x1000, target) == current
                current = target
                expect_vq(proc, v, Protect=target, AllocationProtect=view_prot, Type=MAPPED)
            else:
                with winerror(87, proc):
                    proc.VirtualProtect(v, 0x1000, target)
                expect_vq(proc, v, Protect=current)
        proc.UnmapViewOfFile(v)


def test_fact59_read_view_example(proc, tmp_path):
    """The reference's example on a file: FILE_MAP_READ view -> PAGE_READWRITE fails 87,
    PAGE_WRITECOPY and PAGE_READONLY succeed; PAGE_GUARD is a valid modifier on views."""
    path = make_file(tmp_path, b"r" * 0x1000)
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RW, 0) as h:
        v = proc.MapViewOfFile(h, READ, 0, 0)
        with winerror(87, proc):
            proc.VirtualProtect(v, 0x1000, RW)
        assert proc.VirtualProtect(v, 0x1000, WC) == RO
        assert proc.VirtualProtect(v, 0x1000, RO) == WC
        assert proc.VirtualProtect(v, 0x1000, RO | pa.PAGE_GUARD) == RO
        with pytest.raises(pa.GuardPageViolation):
            proc.read(v, 1)
        assert proc.read(v, 1) == b"r"
        proc.UnmapViewOfFile(v)


def test_unmap_of_private_or_free_memory_fails_487(proc):
    """UnmapViewOfFile on anything that is not a view -> 487 (STATUS_NOT_MAPPED_VIEW)."""
    private = proc.VirtualAlloc(None, 0x10000, pa.MEM_COMMIT, RW)
    reserved = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, RW)
    lo = proc.GetSystemInfo().lpMinimumApplicationAddress
    for a in (private, private + 0x1000, reserved, reserved + 0x20000, lo - 0x10000, 0):
        with leaks_nothing(proc), winerror(pa.ERROR_INVALID_ADDRESS, proc):
            proc.UnmapViewOfFile(a)
    assert proc.read(private, 1) == b"\0"
    proc.VirtualFree(private, 0, pa.MEM_RELEASE)
    proc.VirtualFree(reserved, 0, pa.MEM_RELEASE)


# ---- 1.13 UnmapViewOfFile -----------------------------------------------------------------------


def test_fact105_after_unmap_free_and_faulting(proc):
    """k32:test_MapViewOfFile: after unmapping, VQ = {ptr, NULL, 0, ..., MEM_FREE, NOACCESS, 0}
    and reads fault; unmapping again -> 487."""
    with proc.CreateFileMapping(None, RW, 0x20000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        proc.write(v + 0x1234, b"gone soon")
        before = proc.stats()
        assert proc.UnmapViewOfFile(v) is True
        info = vq(proc, v + 0x1000)
        assert info["BaseAddress"] == v + 0x1000
        assert (info["AllocationBase"], info["AllocationProtect"], info["State"],
                info["Protect"], info["Type"]) == (0, 0, pa.MEM_FREE, NA, 0)
        assert info["RegionSize"] >= 0x1F000
        for op in (lambda: proc.read(v + 0x1234, 1), lambda: proc.write(v, b"x"),
                   lambda: proc.view(v, 1)):
            with pytest.raises(pa.AccessViolation) as exc:
                op()
            assert exc.value.address in (v, v + 0x1234)
        with winerror(pa.ERROR_INVALID_ADDRESS, proc):
            proc.UnmapViewOfFile(v)
        after = proc.stats()
        assert after["allocations"] == before["allocations"] - 1
        assert after["reserved"] == before["reserved"] - 0x20000


def test_unmap_with_a_live_memoryview_raises_buffer_error(proc):
    """pyalloc's contract: a change that would leave a memoryview dangling raises BufferError
    (the view stays mapped); once released, unmapping works."""
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        mv = proc.view(v, 16)
        with pytest.raises(BufferError):
            proc.UnmapViewOfFile(v)
        mv[0] = 7
        mv.release()
        proc.UnmapViewOfFile(v)


# ---- 1.14 copy-on-write -------------------------------------------------------------------------


def test_fact106_copy_view_writes_stay_private(proc):
    """k32:test_shared_memory_ro: a FILE_MAP_COPY view's writes are private (a shared view still
    reads 0); FILE_MAP_COPY|FILE_MAP_WRITE is a normal shared view."""
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        shared = proc.MapViewOfFile(h, READ, 0, 0)
        cow = proc.MapViewOfFile(h, COPY, 0, 0)
        cow2 = proc.MapViewOfFile(h, COPY, 0, 0)
        proc.write(cow + 0x10, b"cow write")
        assert proc.read(cow + 0x10, 9) == b"cow write"
        assert proc.read(shared + 0x10, 9) == bytes(9)
        assert proc.read(cow2 + 0x10, 9) == bytes(9)
        both = proc.MapViewOfFile(h, COPY | WRITE, 0, 0)
        expect_vq(proc, both, Protect=RW, AllocationProtect=RW)
        proc.write(both + 0x10, b"shared!!!")
        assert proc.read(shared + 0x10, 9) == b"shared!!!"
        assert proc.read(cow2 + 0x10, 9) == b"shared!!!"  # untouched copy pages follow
        assert proc.read(cow + 0x10, 9) == b"cow write"  # the copied page does not
        for a in (shared, cow, cow2, both):
            proc.UnmapViewOfFile(a)


def test_fact106_fact109_query_after_the_first_write(proc):
    """k32:test_mapping, MS:VirtualQuery: after the first write the page reports PAGE_READWRITE
    and the region splits; untouched pages stay PAGE_WRITECOPY; AllocationProtect stays
    PAGE_WRITECOPY and Type MEM_MAPPED."""
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        c = proc.MapViewOfFile(h, COPY, 0, 0x3000)
        assert vq(proc, c) == dict(BaseAddress=c, AllocationBase=c, AllocationProtect=WC,
                                   RegionSize=0x3000, State=pa.MEM_COMMIT, Protect=WC,
                                   Type=MAPPED)
        proc.read(c + 0x1000, 1)  # reading does not copy
        expect_vq(proc, c, RegionSize=0x3000, Protect=WC)
        proc.write(c + 0x1800, b"!")
        for page, size, prot in ((c, 0x1000, WC), (c + 0x1000, 0x1000, RW),
                                 (c + 0x2000, 0x1000, WC)):
            assert vq(proc, page) == dict(BaseAddress=page, AllocationBase=c,
                                          AllocationProtect=WC, RegionSize=size,
                                          State=pa.MEM_COMMIT, Protect=prot, Type=MAPPED)
        # A memoryview of a written (copied) page is writable; of an untouched one it is not.
        mv = proc.view(c + 0x1000, 4)
        assert not mv.readonly
        mv.release()
        mv = proc.view(c, 4)
        assert mv.readonly
        mv.release()
        kinds = {r.base: (r.kind, r.protect) for r in proc.regions()}
        assert kinds[c] == ("Shareable", WC) and kinds[c + 0x1000] == ("Shareable", RW)
        proc.UnmapViewOfFile(c)


def test_fact106_copy_view_of_a_file_leaves_the_file_alone(proc, tmp_path):
    """k32:test_shared_memory_ro on a file: a FILE_MAP_COPY view's writes never reach the file
    nor the file's shared views, also after FlushViewOfFile and closing everything."""
    original = bytes(range(256)) * 32  # 0x2000 bytes
    path = make_file(tmp_path, original)
    with open(path, "r+b") as f:
        h = proc.CreateFileMapping(f, RW, 0)
        shared = proc.MapViewOfFile(h, READ, 0, 0)
        cow = proc.MapViewOfFile(h, COPY, 0, 0)
        proc.write(cow + 0x1000, b"COPY" * 8)
        assert proc.read(cow + 0x1000, 32) == b"COPY" * 8
        assert proc.read(shared + 0x1000, 32) == original[0x1000:0x1020]
        proc.FlushViewOfFile(cow, 0)
        proc.FlushViewOfFile(shared, 0)
        assert path.read_bytes() == original
        proc.UnmapViewOfFile(cow)
        proc.UnmapViewOfFile(shared)
        h.close()
    assert path.read_bytes() == original


def test_fact108_protect_writecopy_on_a_shared_file_view(proc, tmp_path):
    """k32:test_mappings: VirtualProtect(PAGE_WRITECOPY) on a shared read/write file view, then
    writing: the file on disk is not modified (checked after FlushViewOfFile and after closing
    everything); pages left PAGE_READWRITE still write through."""
    original = b"A" * 0x1000 + b"B" * 0x1000
    path = make_file(tmp_path, original)
    with open(path, "r+b") as f:
        h = proc.CreateFileMapping(f, RW, 0)
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        other = proc.MapViewOfFile(h, READ, 0, 0)
        assert proc.VirtualProtect(v, 0x1000, WC) == RW
        expect_vq(proc, v, RegionSize=0x1000, Protect=WC, AllocationProtect=RW)
        proc.write(v + 8, b"private!")
        # Copied: PAGE_READWRITE again, one region with the untouched page.
        expect_vq(proc, v, RegionSize=0x2000, Protect=RW, AllocationProtect=RW, Type=MAPPED)
        assert proc.read(v, 16) == b"AAAAAAAAprivate!"
        assert proc.read(other, 16) == b"A" * 16
        proc.FlushViewOfFile(v, 0)
        assert path.read_bytes() == original
        # Back to PAGE_READWRITE: the copied page stays private.
        assert proc.VirtualProtect(v, 0x1000, RW) == RW
        proc.write(v + 16, b"still private")
        proc.write(v + 0x1000, b"shared write")  # page 2 was never copy-on-write
        assert proc.read(other + 0x1000, 12) == b"shared write"
        proc.FlushViewOfFile(v, 0x2000)
        on_disk = path.read_bytes()
        assert on_disk[:0x1000] == original[:0x1000]
        assert on_disk[0x1000:0x100C] == b"shared write"
        proc.UnmapViewOfFile(v)
        proc.UnmapViewOfFile(other)
        h.close()
    on_disk = path.read_bytes()
    assert on_disk[:0x1000] == original[:0x1000]
    assert on_disk[0x1000:0x100C] == b"shared write"


def test_fact108_writecopy_and_back_before_writing_stays_shared(proc):
    """Leaving PAGE_WRITECOPY before any write returns the page to the shared section."""
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        r = proc.MapViewOfFile(h, READ, 0, 0)
        proc.VirtualProtect(v, 0x1000, WC)
        proc.VirtualProtect(v, 0x1000, RW)
        proc.write(v, b"shared")
        assert proc.read(r, 6) == b"shared"
        proc.UnmapViewOfFile(v)
        proc.UnmapViewOfFile(r)


def test_fact110_writecopy_invalid_for_private_memory(proc):
    """k32:test_VirtualAlloc_protection, k32:test_VirtualProtect: PAGE_WRITECOPY and
    PAGE_EXECUTE_WRITECOPY are only for views: 87 on private memory."""
    p = proc.VirtualAlloc(None, 0x1000, pa.MEM_COMMIT, RW)
    for prot in (WC, EWC):
        with winerror(87, proc):
            proc.VirtualAlloc(None, 0x1000, pa.MEM_COMMIT, prot)
        with winerror(87, proc):
            proc.VirtualProtect(p, 0x1000, prot)
    proc.VirtualFree(p, 0, pa.MEM_RELEASE)


# ---- file-backed views --------------------------------------------------------------------------


def test_file_views_read_and_write_the_file(proc, tmp_path):
    """A view of a file reads the file's bytes; writes through a view (checked writes and a
    writable memoryview) reach the file; FlushViewOfFile makes them durable."""
    original = bytes(range(256)) * 0x30  # 0x3000 bytes
    path = make_file(tmp_path, original)
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RW, 0) as h:
        r = proc.MapViewOfFile(h, READ, 0, 0)
        assert proc.read(r, 0x3000) == original
        w = proc.MapViewOfFile(h, WRITE, 0, 0x2000)
        proc.write(w + 0x100, b"checked write")
        mv = proc.view(w + 0x1000, 16)
        assert not mv.readonly
        mv[:] = b"memoryview write"
        mv.release()
        assert proc.read(r + 0x100, 13) == b"checked write"
        assert proc.FlushViewOfFile(w + 0x100, 13) is True
        assert proc.FlushViewOfFile(w, 0) is True
        with open(path, "rb") as again:
            data = again.read()
        assert data[0x100:0x10D] == b"checked write"
        assert data[0x1000:0x1010] == b"memoryview write"
        assert data[0x2000:] == original[0x2000:]
        # The file's own writes show in the view (same page cache).
        os.pwrite(f.fileno(), b"from the file", 0x2800)
        assert proc.read(r + 0x2800, 13) == b"from the file"
        proc.UnmapViewOfFile(r)
        proc.UnmapViewOfFile(w)


def test_file_view_at_an_offset(proc, tmp_path):
    """A view at file offset 0x10000 sees the file from there."""
    data = b"\x11" * 0x10000 + b"second granule" + b"\x22" * 100
    path = make_file(tmp_path, data)
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RO, 0) as h:
        v = proc.MapViewOfFile(h, READ, 0x10000, 0)
        expect_vq(proc, v, RegionSize=0x1000, Protect=RO, Type=MAPPED)
        assert proc.read(v, 14) == b"second granule"
        with leaks_nothing(proc), winerror(pa.ERROR_ACCESS_DENIED, proc):
            proc.MapViewOfFile(h, READ, 0x10000, 0x1000)  # past the 114-byte end
        proc.UnmapViewOfFile(v)


def test_flush_view_of_file_errors(proc):
    """FlushViewOfFile outside any view fails (487); on a pagefile view it succeeds."""
    private = proc.VirtualAlloc(None, 0x1000, pa.MEM_COMMIT, RW)
    with leaks_nothing(proc), winerror(pa.ERROR_INVALID_ADDRESS, proc):
        proc.FlushViewOfFile(private, 0)
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        assert proc.FlushViewOfFile(v, 0) is True
        proc.UnmapViewOfFile(v)
    proc.VirtualFree(private, 0, pa.MEM_RELEASE)


# ---- access from Python -------------------------------------------------------------------------


def test_access_violations_instead_of_crashes(proc):
    """read/write/view raise AccessViolation (never crash) where the view's protection forbids:
    writing a FILE_MAP_READ view, reading a PAGE_NOACCESS view or a reserved SEC_RESERVE
    page."""
    with proc.CreateFileMapping(None, RW, 0x10000) as h, \
            proc.CreateFileMapping(None, RW | pa.SEC_RESERVE, 0x20000) as hr:
        ro = proc.MapViewOfFile(h, READ, 0, 0)
        na = proc.MapViewOfFile(h, 0, 0, 0)
        ex = proc.MapViewOfFile(h, EXEC, 0, 0)  # FILE_MAP_EXECUTE alone: PAGE_NOACCESS
        res = proc.MapViewOfFile(hr, WRITE, 0, 0)
        proc.VirtualAlloc(res, 0x1000, pa.MEM_COMMIT, RW)
        cases = [
            (lambda: proc.write(ro + 5, b"x"), ro + 5, "write"),
            (lambda: proc.read(na + 0x10, 4), na + 0x10, "read"),
            (lambda: proc.write(na, b"x"), na, "write"),
            (lambda: proc.view(na, 8), na, "read"),
            (lambda: proc.read(ex, 1), ex, "read"),
            (lambda: proc.read(res + 0xFFC, 8), res + 0x1000, "read"),
            (lambda: proc.write(res + 0x1000, b"x"), res + 0x1000, "write"),
        ]
        for op, address, operation in cases:
            with pytest.raises(pa.AccessViolation) as exc:
                op()
            assert exc.value.address == address
            assert exc.value.operation == operation
            assert exc.value.code == 0xC0000005
        mv = proc.view(ro, 8)
        assert mv.readonly
        with pytest.raises(TypeError):
            mv[0] = 1
        mv.release()
        proc.write(res + 0xFF0, b"edge")
        assert proc.read(res + 0xFF0, 4) == b"edge"
        for a in (ro, na, ex, res):
            proc.UnmapViewOfFile(a)


def test_module_level_functions_on_the_current_process(current_clean, tmp_path):
    """Every section function exists at module level, acting on the current process."""
    path = make_file(tmp_path, b"module level")
    with open(path, "r+b") as f:
        h = pa.CreateFileMapping(f, RW, 0)
        v = pa.MapViewOfFile(h, WRITE, 0, 0)
        assert pa.VirtualQuery(v).Type == MAPPED
        assert pa.read(v, 12) == b"module level"
        pa.write(v, b"MODULE")
        assert pa.FlushViewOfFile(v, 0) is True
        assert pa.UnmapViewOfFile(v) is True
        assert pa.CloseHandle(h) is True
        assert h.closed
    assert path.read_bytes() == b"MODULE level"
    name = unique()
    with pa.CreateFileMapping(None, RW, 0x1000, name) as h, \
            pa.OpenFileMapping(READ, name) as h2:
        w = pa.MapViewOfFileEx(h2, READ, 0, 0, None)
        pa.UnmapViewOfFile(w)
        del h


# ---- bad input leaks nothing --------------------------------------------------------------------


def _bad_calls(p, tmp_path):
    """(description, call, expected winerror) for failures set up on p (set-up done first)."""
    h = p.CreateFileMapping(None, RW, 0x20000)
    ro_section = p.CreateFileMapping(None, RO, 0x20000)
    v = p.MapViewOfFile(h, WRITE, 0, 0x20000)
    free = v + 0x40000
    closed = p.CreateFileMapping(None, RW, 0x1000)
    closed.close()
    ro_file = open(make_file(tmp_path, b"q" * 0x1000, "ro.bin"), "rb")
    rw_file = open(make_file(tmp_path, b"", "empty.bin"), "r+b")
    private = p.VirtualAlloc(None, 0x10000, pa.MEM_COMMIT, RW)
    big = p.CreateFileMapping(None, RW, 1 << 25)  # larger than the 16 MiB address space
    cases = [
        ("no room", lambda: p.MapViewOfFile(big, READ, 0, 0), 8),
        ("offset not 64K", lambda: p.MapViewOfFile(h, READ, 0x1000, 0), 1132),
        ("base not 64K", lambda: p.MapViewOfFileEx(h, READ, 0, 0, free + 0x1000), 1132),
        ("base +42", lambda: p.MapViewOfFileEx(h, READ, 0, 0, free + 42), 1132),
        ("base in a view", lambda: p.MapViewOfFileEx(h, READ, 0, 0, v + 0x10000), 487),
        ("base on a view", lambda: p.MapViewOfFileEx(h, READ, 0, 0, v), 487),
        ("base in private", lambda: p.MapViewOfFileEx(h, READ, 0, 0, private), 487),
        ("past the end", lambda: p.MapViewOfFile(h, READ, 0x10000, 0x10001), 5),
        ("offset >= size", lambda: p.MapViewOfFile(h, READ, 0x20000, 0), 87),
        ("write on RO section", lambda: p.MapViewOfFile(ro_section, WRITE, 0, 0), 5),
        ("exec on RW section", lambda: p.MapViewOfFile(h, EXEC | READ, 0, 0), 5),
        ("closed handle map", lambda: p.MapViewOfFile(closed, READ, 0, 0), 6),
        ("closed handle close", lambda: p.CloseHandle(closed), 6),
        ("RO file RW section", lambda: p.CreateFileMapping(ro_file, RW, 0), 5),
        ("RO section too big", lambda: p.CreateFileMapping(ro_file, RO, 0x2000), 8),
        ("empty file", lambda: p.CreateFileMapping(rw_file, RW, 0), 1006),
        ("pagefile size 0", lambda: p.CreateFileMapping(None, RW, 0), 87),
        ("bad protection", lambda: p.CreateFileMapping(None, NA, 0x1000), 87),
        ("bad protection file", lambda: p.CreateFileMapping(rw_file, pa.PAGE_EXECUTE, 1), 87),
        ("SEC_IMAGE", lambda: p.CreateFileMapping(None, RW | pa.SEC_IMAGE, 0x1000), 193),
        ("missing name", lambda: p.OpenFileMapping(READ, unique("nope")), 2),
        ("unmap private", lambda: p.UnmapViewOfFile(private), 487),
        ("free a view", lambda: p.VirtualFree(v, 0, pa.MEM_RELEASE), 87),
        ("decommit a view", lambda: p.VirtualFree(v, 0x1000, pa.MEM_DECOMMIT), 87),
        ("protect a view wider", lambda: p.VirtualProtect(v, 0x1000, ERW), 87),
    ]

    def cleanup():
        p.UnmapViewOfFile(v)
        p.VirtualFree(private, 0, pa.MEM_RELEASE)
        for x in (h, ro_section, big, ro_file, rw_file):
            x.close()

    return cases, cleanup


def test_bad_input_raises_the_windows_code_and_leaks_nothing(proc, tmp_path):
    """Every failure raises WinError with Windows' code, sets the last error, and leaves the
    address space, the counters and the open file descriptors exactly as they were."""
    cases, cleanup = _bad_calls(proc, tmp_path)
    try:
        for what, call, code in cases:
            before = snapshot(proc)
            proc.SetLastError(0xDEAD)
            with pytest.raises(pa.WinError) as exc:
                call()
            assert exc.value.winerror == code, what
            assert proc.GetLastError() == code, what
            after = snapshot(proc)
            assert after[0] == before[0], what
            assert after[1] == before[1], what
            assert after[2] == before[2], what
    finally:
        cleanup()


def test_failed_calls_repeated_leak_nothing(proc, tmp_path):
    """Many failures in a row leave the descriptor count unchanged (no slow leak)."""
    cases, cleanup = _bad_calls(proc, tmp_path)
    try:
        before = snapshot(proc)
        for _ in range(50):
            for _what, call, _code in cases:
                with pytest.raises(pa.WinError):
                    call()
        assert snapshot(proc) == before
    finally:
        cleanup()


# ---- handles ------------------------------------------------------------------------------------


def test_handles_close_with_with_and_on_garbage_collection(proc):
    """A Handle closes when its `with` block ends and when it is garbage-collected: its memfd
    descriptor goes, and a named section's name disappears."""
    before = open_fds()
    with proc.CreateFileMapping(None, RW, 0x10000) as h:
        assert not h.closed
        assert len(open_fds() - before) == 1
    assert h.closed and h.size is None
    assert open_fds() == before
    h = proc.CreateFileMapping(None, RW, 0x10000)
    del h
    gc.collect()
    assert open_fds() == before
    name = unique()
    h = proc.CreateFileMapping(None, RW, 0x10000, name)
    assert shm_path(name).exists()
    del h
    gc.collect()
    assert not shm_path(name).exists()
    with winerror(2, proc):
        proc.OpenFileMapping(READ, name)
    assert open_fds() == before


def test_closed_handle_is_invalid_6(proc):
    """A closed Handle fails with ERROR_INVALID_HANDLE everywhere, as a stale handle does; it
    never names a reused handle table entry."""
    h = proc.CreateFileMapping(None, RW, 0x10000)
    value = int(h)
    assert value % 4 == 0 and value > 0
    assert proc.CloseHandle(h) is True
    assert h.closed and repr(h) == "<pyalloc.Handle (closed)>"
    fresh = proc.CreateFileMapping(None, RO, 0x1000)  # may reuse the table entry
    for call in (lambda: proc.CloseHandle(h), lambda: proc.MapViewOfFile(h, READ, 0, 0),
                 lambda: proc.MapViewOfFileEx(h, READ, 0, 0, None), lambda: pa.CloseHandle(h)):
        with leaks_nothing(proc), winerror(pa.ERROR_INVALID_HANDLE, proc):
            call()
    h.close()  # no error
    assert not fresh.closed and fresh.size == 0x1000
    fresh.close()
    with pytest.raises(TypeError):
        proc.MapViewOfFile(value, READ, 0, 0)
    with pytest.raises(TypeError):
        pa.Handle()


def test_handle_repr_and_int(proc):
    with proc.CreateFileMapping(None, ER | pa.SEC_RESERVE, 0x1800) as h:
        r = repr(h)
        assert r.startswith(f"<pyalloc.Handle {int(h)}: section of 0x2000 bytes")
        assert "PAGE_EXECUTE_READ" in r and "SEC_RESERVE" in r and "pagefile" in r
        assert operator.index(h) == int(h)


def test_names_with_slashes_and_percent_signs(proc):
    """Any character may appear in a name: "a/b" and "a%2Fb" are two different objects."""
    base = unique("chars")
    names = [base + "/a/b", base + "%2Fa%2Fb", base + "\\Local\\x", base + " \u00e9t\u00e9"]
    handles = [proc.CreateFileMapping(None, RW, 0x1000 * (i + 1), n) for i, n in enumerate(names)]
    assert not any(h.already_existed for h in handles)
    for i, n in enumerate(names):
        with proc.OpenFileMapping(READ, n) as h:
            assert h.size == 0x1000 * (i + 1)
    for h in handles:
        h.close()


def test_closed_process_refuses_section_calls(new_process):
    p = new_process(address_space=1 << 24)
    h = p.CreateFileMapping(None, RW, 0x1000)
    p.close()
    for call in (lambda: p.MapViewOfFile(h, READ, 0, 0), lambda: p.UnmapViewOfFile(0x10000),
                 lambda: p.FlushViewOfFile(0x10000, 0)):
        with pytest.raises(ValueError):
            call()
    assert p.CloseHandle(h) is True  # handles are not the process's


def test_full_handle_table_fails_without_losing_the_name(proc):
    """When no handle is left, CreateFileMapping and OpenFileMapping fail, but the failure
    takes nothing away: the name stays with the handles that hold it, and it still goes with
    the last of them (fact 91); an unnamed section's descriptor is not leaked."""
    name = unique("full")
    first = proc.CreateFileMapping(None, RW, 0x1000, name)
    handles = []
    with pytest.raises(pa.WinError):
        for _ in range(1 << 17):
            handles.append(proc.OpenFileMapping(READ, name))
    assert len(handles) > 1000
    fds = open_fds()
    for call in (lambda: proc.OpenFileMapping(READ, name),
                 lambda: proc.CreateFileMapping(None, RW, 0x1000, name),
                 lambda: proc.CreateFileMapping(None, RW, 0x1000),
                 lambda: proc.CreateFileMapping(None, RW, 0x1000, unique("new"))):
        with pytest.raises(pa.WinError):
            call()
    assert open_fds() == fds
    handles.pop().close()
    with proc.CreateFileMapping(None, RW, 0x2000, name) as again:
        assert again.already_existed and again.size == 0x1000
    for h in handles:
        h.close()
    assert shm_path(name).exists()
    first.close()
    assert not shm_path(name).exists()


def test_process_close_releases_views_and_descriptors(new_process):
    """Closing a process unmaps its views; their section descriptors go with the last one."""
    before = open_fds()
    p = new_process(address_space=1 << 24)
    h = p.CreateFileMapping(None, RW, 0x10000)
    v = p.MapViewOfFile(h, WRITE, 0, 0)
    p.write(v, b"x")
    h.close()
    assert len(open_fds() - before) == 1  # the view keeps the section
    p.close()
    assert open_fds() == before


# ---- sharing ------------------------------------------------------------------------------------


def test_unnamed_section_shared_between_two_processes(new_process):
    """A section handle mapped into two pyalloc processes: writes in one are seen by the other,
    both ways, each view in its own address space."""
    p1 = new_process(address_space=1 << 24)
    p2 = new_process(address_space=1 << 24)
    with p1.CreateFileMapping(None, RW, 0x20000) as h:
        a = p1.MapViewOfFile(h, WRITE, 0, 0)
        b = p2.MapViewOfFile(h, WRITE, 0, 0)
        assert p2.VirtualQuery(b).Type == MAPPED
        with pytest.raises(pa.AccessViolation):
            p1.read(b, 1)  # b is not in p1's address space
        p1.write(a + 0x1FFF0, b"p1 -> p2")
        assert p2.read(b + 0x1FFF0, 8) == b"p1 -> p2"
        p2.write(b + 0x10, b"p2 -> p1")
        assert p1.read(a + 0x10, 8) == b"p2 -> p1"
        c = p2.MapViewOfFile(h, COPY, 0, 0)
        p2.write(c + 0x10, b"private!")
        assert p1.read(a + 0x10, 8) == b"p2 -> p1"
        p1.UnmapViewOfFile(a)
        assert p2.read(b + 0x10, 8) == b"p2 -> p1"
        p2.UnmapViewOfFile(b)
        p2.UnmapViewOfFile(c)


CHILD_PRELUDE = """
import sys
import pyalloc as pa
p = pa.Process(address_space=1 << 24)
def say(*words):
    print(*words, flush=True)
def wait_for(word):
    line = sys.stdin.readline().strip()
    assert line == word, line
"""


def start_child(body: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-c", CHILD_PRELUDE + textwrap.dedent(body)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))


def child_says(child: subprocess.Popen) -> str:
    line = child.stdout.readline().strip()
    if not line:
        _, err = child.communicate(timeout=10)
        raise AssertionError(f"child said nothing (rc {child.returncode}):\n{err}")
    return line


def finish(child: subprocess.Popen, send: str | None = None) -> str:
    out, err = child.communicate(send, timeout=20)
    assert child.returncode == 0, err
    return out


def test_named_section_shared_with_another_os_process(proc):
    """fact 102 across host processes: a named pagefile section is one object in both; the
    parent writes, the child reads it and writes, the parent reads the child's write."""
    name = unique("xproc")
    with proc.CreateFileMapping(None, RW, 0x20000, name) as h:
        v = proc.MapViewOfFile(h, WRITE, 0, 0)
        proc.write(v + 0x10, b"hello from the parent")
        child = start_child(f"""
            h = p.OpenFileMapping(pa.FILE_MAP_ALL_ACCESS, {name!r})
            assert h.size == 0x20000, h.size
            v = p.MapViewOfFile(h, pa.FILE_MAP_WRITE, 0, 0)
            say(p.read(v + 0x10, 21).decode())
            p.write(v + 0x1FF00, b"hello from the child")
            h2 = p.CreateFileMapping(None, pa.PAGE_READWRITE, 0x10000, {name!r})
            say(bool(h2.already_existed), p.GetLastError(), h2.size)
        """)
        out = finish(child).splitlines()
        assert out == ["hello from the parent", f"True {pa.ERROR_ALREADY_EXISTS} {0x20000}"]
        assert proc.read(v + 0x1FF00, 20) == b"hello from the child"
        proc.UnmapViewOfFile(v)
    assert not shm_path(name).exists()


def test_named_sec_reserve_section_across_os_processes(proc):
    """A child creates a named SEC_RESERVE section and commits a page; the parent opens it by
    name (GLE 183 for CreateFileMapping, size from the creator), sees the child's commit and
    data (fact 98 across processes), commits and writes a page the child then sees. When both
    have closed their handles the name is gone (fact 91)."""
    name = unique("xres")
    child = start_child(f"""
        h = p.CreateFileMapping(None, pa.PAGE_READWRITE | pa.SEC_RESERVE, 0x40000, {name!r})
        v = p.MapViewOfFile(h, pa.FILE_MAP_WRITE, 0, 0)
        p.VirtualAlloc(v + 0x1000, 0x1000, pa.MEM_COMMIT, pa.PAGE_READWRITE)
        p.write(v + 0x1000, b"child data")
        say("ready")
        wait_for("go")
        m = p.VirtualQuery(v + 0x30000)
        say(hex(m.State), hex(m.RegionSize), p.read(v + 0x30000, 11).decode())
        p.write(v + 0x30010, b"answer")
        say("written")
        wait_for("bye")
    """)
    try:
        assert child_says(child) == "ready"
        proc.SetLastError(0)
        with proc.CreateFileMapping(None, RW, 0x1000, name) as h:
            assert h.already_existed and proc.GetLastError() == 183
            assert h.size == 0x40000 and "SEC_RESERVE" in repr(h)
            v = proc.MapViewOfFile(h, WRITE, 0, 0)
            expect_vq(proc, v, State=pa.MEM_RESERVE, RegionSize=0x1000)
            expect_vq(proc, v + 0x1000, State=pa.MEM_COMMIT, RegionSize=0x1000, Protect=RW)
            assert proc.read(v + 0x1000, 10) == b"child data"
            proc.VirtualAlloc(v + 0x30000, 0x2000, pa.MEM_COMMIT, RW)
            proc.write(v + 0x30000, b"parent data")
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child_says(child) == f"{pa.MEM_COMMIT:#x} 0x2000 parent data"
            assert child_says(child) == "written"
            assert proc.read(v + 0x30010, 6) == b"answer"
            proc.UnmapViewOfFile(v)
        assert shm_path(name).exists()  # the child still has a handle
        finish(child, "bye\n")
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert not shm_path(name).exists()
    with winerror(2, proc):
        proc.OpenFileMapping(READ, name)


def test_named_section_name_gone_for_other_processes_after_last_close(proc):
    """fact 91 across host processes: once the only handle is closed (its view still mapped),
    another process cannot open the name."""
    name = unique("xgone")
    h = proc.CreateFileMapping(None, RW, 0x10000, name)
    v = proc.MapViewOfFile(h, WRITE, 0, 0)
    proc.write(v, b"orphan")
    h.close()
    child = start_child(f"""
        try:
            p.OpenFileMapping(pa.FILE_MAP_READ, {name!r})
        except pa.WinError as e:
            say(e.winerror)
    """)
    assert finish(child).split() == ["2"]
    assert proc.read(v, 6) == b"orphan"
    proc.UnmapViewOfFile(v)


# ---- the address-space walk ---------------------------------------------------------------------


def test_regions_tell_views_from_private_memory(proc, tmp_path):
    """Process.regions() reports views as MEM_MAPPED, kind 'Mapped File' (a file) or
    'Shareable' (pagefile-backed), distinct from 'Private Data' and 'Reserved'; the text map
    shows the same."""
    from pyalloc.textmap import format_map

    path = make_file(tmp_path, b"m" * 0x3000)
    private = proc.VirtualAlloc(None, 0x2000, pa.MEM_COMMIT, RW)
    reserved = proc.VirtualAlloc(None, 0x10000, pa.MEM_RESERVE, RW)
    with open(path, "r+b") as f, proc.CreateFileMapping(f, RW, 0) as hf, \
            proc.CreateFileMapping(None, RW | pa.SEC_RESERVE, 0x20000) as hp:
        fv = proc.MapViewOfFile(hf, READ, 0, 0)
        pv = proc.MapViewOfFile(hp, WRITE, 0, 0)
        proc.VirtualAlloc(pv, 0x1000, pa.MEM_COMMIT, RW)
        by_base = {r.base: r for r in proc.regions()}
        assert by_base[private].kind == "Private Data" and by_base[private].type == pa.MEM_PRIVATE
        assert by_base[reserved].kind == "Reserved"
        f_region = by_base[fv]
        assert f_region.kind == "Mapped File" and f_region.mapped_file
        assert (f_region.type, f_region.size, f_region.protect) == (MAPPED, 0x3000, RO)
        assert "mapped_file=True" in repr(f_region)
        assert by_base[fv + 0x3000].kind == "Unusable"
        for base, state in ((pv, pa.MEM_COMMIT), (pv + 0x1000, pa.MEM_RESERVE)):
            r = by_base[base]
            assert (r.kind, r.type, r.state, r.mapped_file) == ("Shareable", MAPPED, state,
                                                               False)
        text = format_map(proc)
        assert "Mapped File" in text and "Shareable" in text and "Private Data" in text
        proc.UnmapViewOfFile(fv)
        proc.UnmapViewOfFile(pv)
    assert not any(r.type == MAPPED for r in proc.regions())
    proc.VirtualFree(private, 0, pa.MEM_RELEASE)
    proc.VirtualFree(reserved, 0, pa.MEM_RELEASE)
