"""Shared fixtures and helpers for the pyalloc Python tests.

Addresses of a simulated process are absolute host addresses; what Windows pins are addresses
*relative to the process's own range*: ``origin(p)`` is the address that plays the role of
Windows' NULL (the process's lpMinimumApplicationAddress is origin + 0x10000, as on x64
Windows), and ``rel(p, a)`` turns an absolute address into the Windows-equivalent one.
"""
from __future__ import annotations

import contextlib
import gc
import os

import pytest
from hypothesis import settings

# CI (.ci/run sets PYALLOC_CI=1) runs the property tests derandomized: the same examples on
# every run, so that whether a commit lands does not depend on the draw. Locally each run
# draws new examples (and replays failures from the example database).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("PYALLOC_CI"):
    settings.load_profile("ci")

import pyalloc as pa

PAGE = 0x1000
GRAN = 0x10000
SMALL_SPACE = 1 << 24  # 16 MiB: 256 slots, 254 usable

# The six base protections valid for private memory (fact 26).
VALID_PROTECTIONS = (
    pa.PAGE_NOACCESS,
    pa.PAGE_READONLY,
    pa.PAGE_READWRITE,
    pa.PAGE_EXECUTE,
    pa.PAGE_EXECUTE_READ,
    pa.PAGE_EXECUTE_READWRITE,
)
READABLE = {pa.PAGE_READONLY, pa.PAGE_READWRITE, pa.PAGE_EXECUTE, pa.PAGE_EXECUTE_READ,
            pa.PAGE_EXECUTE_READWRITE}
WRITABLE = {pa.PAGE_READWRITE, pa.PAGE_EXECUTE_READWRITE}


def origin(p: pa.Process) -> int:
    """The process's own "NULL": lpMinimumApplicationAddress - 64 KiB."""
    return p.GetSystemInfo().lpMinimumApplicationAddress - GRAN


def rel(p: pa.Process, address: int) -> int:
    return address - origin(p)


def limits(p: pa.Process) -> tuple[int, int]:
    """(lowest usable address, one past the highest usable address)."""
    si = p.GetSystemInfo()
    return si.lpMinimumApplicationAddress, si.lpMaximumApplicationAddress + 1


def mbi(p: pa.Process, address: int) -> dict:
    return p.VirtualQuery(address)._asdict()


def lfh_spare_entry(e) -> bool:
    """Is HeapWalk entry e, in an LFH region, a run of the free chunks the LFH keeps
    committed (a free entry of whole 64 KiB chunks), not a free slot?"""
    return e.wFlags == 0 and (e.cbData + e.cbOverhead) % GRAN == 0


def lfh_spare_bytes(walk) -> int:
    """The bytes of the free chunks the LFH keeps committed, as HeapWalk lists them (a
    REGION entry whose cbData is its 64 KiB header chunk opens an LFH region).
    Heap.stats()['spare_committed'] counts the same."""
    spare, lfh = 0, False
    for e in walk:
        if e.wFlags & pa.PROCESS_HEAP_REGION:
            lfh = e.cbData == GRAN
        elif lfh and lfh_spare_entry(e):
            spare += e.cbData + e.cbOverhead
    return spare


@contextlib.contextmanager
def winerror(code: int, process: pa.Process | None = None):
    """Expects a WinError with .winerror == code, and GetLastError() == code afterwards (the
    last error is first set to a different value, so the check is meaningful)."""
    getlast = process.GetLastError if process is not None else pa.GetLastError
    setlast = process.SetLastError if process is not None else pa.SetLastError
    setlast(0xDEAD)
    with pytest.raises(pa.WinError) as info:
        yield info
    assert info.value.winerror == code, f"winerror {info.value.winerror}, expected {code}"
    assert isinstance(info.value, OSError)
    assert getlast() == code
    assert pa.GetLastError() == code  # one per thread, whichever object asks


def _close(p: pa.Process) -> None:
    if not p.closed:
        gc.collect()  # memoryviews left in frames of failed tests
        p.close()


@pytest.fixture
def proc():
    """A fresh, isolated process with a small (16 MiB) address space."""
    p = pa.Process(address_space=SMALL_SPACE)
    yield p
    _close(p)


@pytest.fixture
def bigproc():
    """A fresh process with the default (64 GiB) address space."""
    p = pa.Process()
    yield p
    _close(p)


@pytest.fixture
def new_process():
    """Factory for extra processes, all closed at teardown."""
    made: list[pa.Process] = []

    def factory(**options) -> pa.Process:
        p = pa.Process(**options)
        made.append(p)
        return p

    yield factory
    for p in made:
        _close(p)


@pytest.fixture
def current_clean():
    """The current process; fails the test if it leaks allocations, commit or pins."""
    cur = pa.current_process()
    before = cur.stats()
    yield cur
    gc.collect()
    after = cur.stats()
    for key in ("reserved", "committed", "allocations", "pins"):
        assert after[key] == before[key], f"current process leaked {key}"
