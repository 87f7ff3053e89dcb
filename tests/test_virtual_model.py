"""Model-based test of layer 2: a hypothesis state machine drives random VirtualAlloc,
VirtualFree, VirtualProtect, VirtualQuery, read, write, view, GetWriteWatch and
ResetWriteWatch calls on a small Process and on a pure-Python model of its address space,
and compares every result, every error code (and GetLastError), every
MEMORY_BASIC_INFORMATION field, every byte read, and after every step Process.regions() and
Process.stats().

The model is written from the reference (/work/shared/reference/virtual-memory.md, facts in
brackets), not from the C code:
  * an allocation is {base (64K-aligned), size (page multiple), AllocationProtect, write
    watch}; it owns every 64K slot it touches and the tail of its last slot is free but
    unusable [9, 11, 62];
  * a page of an allocation is reserved or committed; a committed page has one of the six
    base protections [26], maybe PAGE_GUARD [69-71], and its allocation's NOCACHE /
    WRITECOMBINE attribute [29]; fresh commits read as zero [23];
  * write watch: a page is dirty once written, re-armed by a reset [75-81]; protection
    changes do not touch it [80];
  * MEM_RESET lets the host replace a page's contents by zeros at any time until
    MEM_RESET_UNDO, which succeeds only if nothing was lost [33, 37]: the model keeps the
    possible contents of such pages and narrows them as reads observe them. A rule calls
    madvise(MADV_PAGEOUT) to make the host actually drop what it may drop;
  * live memoryviews (pins) forbid freeing, decommitting, guarding or taking away the access
    they rely on (BufferError, GetLastError() = PA_ERROR_BUFFER_EXPORTED);
  * a commit limit (ERROR_COMMITMENT_LIMIT, 1455) bounds the committed pages.
Where the reference leaves an order of checks open, the model takes the implementation's
order, which is Wine's (section 3) except in one place not pinned by any test: VirtualProtect
with an invalid protection on reserved pages fails with 87 here, 487 in Wine (whose
NtProtectVirtualMemory checks the commit state first). VirtualProtect with size 0 is left out
(the implementation changes the address's page, Wine changes nothing).
"""
from __future__ import annotations

import ctypes
import gc
from dataclasses import dataclass, field

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule)

import pyalloc as pa

PAGE = 0x1000
GRAN = 0x10000
SPACE = 1 << 24
COMMIT_LIMIT = 0x100000  # 256 pages
BUFFER_EXPORTED = 0x20000001

RW, RO, NA = pa.PAGE_READWRITE, pa.PAGE_READONLY, pa.PAGE_NOACCESS
GUARD, NOCACHE, WCOMB = pa.PAGE_GUARD, pa.PAGE_NOCACHE, pa.PAGE_WRITECOMBINE
BASES = (pa.PAGE_NOACCESS, pa.PAGE_READONLY, pa.PAGE_READWRITE, pa.PAGE_EXECUTE,
         pa.PAGE_EXECUTE_READ, pa.PAGE_EXECUTE_READWRITE)
WRITABLE = (pa.PAGE_READWRITE, pa.PAGE_EXECUTE_READWRITE)
ALLOC_TYPES = pa.MEM_COMMIT | pa.MEM_RESERVE | pa.MEM_TOP_DOWN | pa.MEM_WRITE_WATCH


def pgdown(x: int) -> int:
    return x & ~(PAGE - 1)


def pgup(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


def gup(x: int) -> int:
    return (x + GRAN - 1) & ~(GRAN - 1)


COPY_BASES = (pa.PAGE_WRITECOPY, pa.PAGE_EXECUTE_WRITECOPY)


def valid_protect(prot: int, allow_copy: bool = False):
    """(base, guard) for a protection valid on private memory, or None [25, 26, 28, 32, 55].
    allow_copy: accept the WRITECOPY bases, which only mapped memory takes [110]."""
    base = prot & 0xFF
    mods = prot & ~0xFF
    if base not in BASES + (COPY_BASES if allow_copy else ()) or mods & ~(GUARD | NOCACHE | WCOMB):
        return None
    if mods & (mods - 1):  # GUARD, NOCACHE and WRITECOMBINE exclude each other
        return None
    if mods and base == NA:
        return None
    return base, bool(mods & GUARD)


# ---- results ----------------------------------------------------------------------------------


def OK(value=None):
    return ("ok", value)


def ERR(code):
    return ("err", code)


BUFFER = ("buffer",)


def run(fn, *args, **kwargs):
    """Calls fn and turns its outcome into a comparable tuple; checks GetLastError()."""
    pa.SetLastError(0xBEEF)
    try:
        return OK(fn(*args, **kwargs))
    except pa.WinError as e:
        assert pa.GetLastError() == e.winerror
        return ERR(e.winerror)
    except pa.GuardPageViolation as e:
        return ("guard", e.address, e.operation)
    except pa.AccessViolation as e:
        return ("av", e.address, e.operation)
    except BufferError:
        assert pa.GetLastError() == BUFFER_EXPORTED
        return BUFFER


# ---- the model ----------------------------------------------------------------------------------


@dataclass
class Alloc:
    base: int
    size: int
    prot: int
    watch: bool

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def slot_end(self) -> int:
        return gup(self.end)


@dataclass
class Page:
    committed: bool = False
    prot: int = 0
    guard: bool = False
    dirty: bool = False  # write watch: written since the last reset
    reset: bool = False  # MEM_RESET applied, not undone
    # possible contents, each [bytes, intact]: intact = not zeroed by the pending MEM_RESET
    cands: list = field(default_factory=list)


@dataclass
class View:
    mv: memoryview
    address: int
    size: int
    writable: bool

    @property
    def pstart(self) -> int:
        return pgdown(self.address)

    @property
    def pend(self) -> int:
        return pgup(self.address + self.size)


class Model:
    def __init__(self, lo: int, hi: int, origin: int, commit_limit: int | None = None):
        self.lo, self.hi, self.origin = lo, hi, origin
        self.limit_pages = commit_limit // PAGE if commit_limit else None
        self.allocs: dict[int, Alloc] = {}
        self.pages: dict[int, Page] = {}
        self.views: list[View] = []
        self.peak = 0          # highest commit charge, in pages
        self.guard_hits = 0    # guard exceptions raised
        self.watch_faults = 0  # first direct stores to write-watched pages

    # -- lookups
    def alloc_at(self, addr: int) -> Alloc | None:
        for a in self.allocs.values():
            if a.base <= addr < a.end:
                return a
        return None

    def slot_owner(self, addr: int) -> Alloc | None:
        for a in self.allocs.values():
            if a.base <= addr < a.slot_end:
                return a
        return None

    def committed(self) -> int:
        return sum(p.committed for p in self.pages.values())

    def over_limit(self, new_pages: int) -> bool:
        return self.limit_pages is not None and self.committed() + new_pages > self.limit_pages

    def protect_of(self, page: Page, a: Alloc) -> int:
        if not page.committed:
            return 0
        return page.prot | (GUARD if page.guard else 0) | (a.prot & (NOCACHE | WCOMB))

    def gaps(self):
        prev = self.lo
        for a in sorted(self.allocs.values(), key=lambda a: a.base):
            if a.base > prev:
                yield prev, a.base
            prev = a.slot_end
        if prev < self.hi:
            yield prev, self.hi

    def pins_block(self, start, end, everything, prot=None, guard=False) -> bool:
        for v in self.views:
            if v.pend <= start or v.pstart >= end:
                continue
            if everything or guard or prot == NA:
                return True
            if v.writable and prot not in WRITABLE:
                return True
        return False

    # -- page contents
    def commit_pages(self, start, end, base, guard):
        for pg in range(start, end, PAGE):
            page = self.pages[pg]
            if not page.committed:
                page.committed = True
                page.cands = [[bytes(PAGE), True]]
                page.reset = False
            page.prot, page.guard = base, guard
        self.peak = max(self.peak, self.committed())

    def decommit_pages(self, start, end):
        for pg in range(start, end, PAGE):
            page = self.pages[pg]
            page.committed, page.prot, page.guard, page.reset = False, 0, False, False
            page.cands = []

    def store(self, addr, data: bytes):
        pos = 0
        while pos < len(data):
            a = addr + pos
            pg = pgdown(a)
            n = min(len(data) - pos, pg + PAGE - a)
            page = self.pages[pg]
            off = a - pg
            for c in page.cands:
                c[0] = c[0][:off] + data[pos:pos + n] + c[0][off + n:]
            self._dedupe(page)
            if self.alloc_at(pg).watch:
                page.dirty = True
            pos += n

    @staticmethod
    def _dedupe(page: Page):
        out: dict[bytes, bool] = {}
        for content, intact in page.cands:
            out[content] = out.get(content, False) or intact
        page.cands = [[k, v] for k, v in out.items()]

    def observe(self, addr, actual: bytes) -> str | None:
        """Checks bytes read at addr against the possible contents; narrows them."""
        pos = 0
        while pos < len(actual):
            a = addr + pos
            pg = pgdown(a)
            n = min(len(actual) - pos, pg + PAGE - a)
            page = self.pages[pg]
            off = a - pg
            chunk = actual[pos:pos + n]
            keep = [c for c in page.cands if c[0][off:off + n] == chunk]
            if not keep:
                expected = [c[0][off:off + n][:32].hex() for c in page.cands]
                return f"page {pg:#x}+{off:#x}: read {chunk[:32].hex()}, model {expected}"
            if page.reset and any(intact for _, intact in keep):
                # Reading data that MEM_RESET let go of does not keep it: until it is written
                # or MEM_RESET_UNDO, the host may still drop it later (a read does not cancel
                # MADV_FREE). Only a read of the dropped contents rules the old ones out.
                keep += [c for c in page.cands if not c[1] and c not in keep]
            page.cands = keep
            pos += n
        return None

    # -- access checks (read, write, view) [24, 71, 72]
    def access(self, addr, size, write):
        op = "write" if write else "read"
        end = addr + size
        pg = pgdown(addr)
        while pg < end:
            at = max(pg, addr)
            page = self.pages.get(pg) if self.alloc_at(pg) else None
            if page is None or not page.committed:
                return ("av", at, op)
            if page.guard:
                page.guard = False
                self.guard_hits += 1
                return ("guard", at, op)
            if (page.prot not in WRITABLE) if write else (page.prot == NA):
                return ("av", at, op)
            pg += PAGE
        return None

    # -- VirtualAlloc [4-37]
    def virtual_alloc(self, addr, size, atype, prot):
        addr = addr or 0
        if size == 0:
            return ERR(87)
        if atype in (pa.MEM_RESET, pa.MEM_RESET_UNDO):
            if not addr:
                return ERR(87)
            start, end = pgdown(addr), pgup(addr + size)
            if addr + size > self.hi or start < self.lo:
                return ERR(87)
            a = self.alloc_at(start)
            if a is None or end > a.end:
                return ERR(487)
            if atype == pa.MEM_RESET:
                for pg in range(start, end, PAGE):
                    page = self.pages[pg]
                    if page.committed:
                        page.reset = True
                        for c in page.cands:
                            c[1] = True
                        page.cands.append([bytes(PAGE), False])
                        self._dedupe(page)
                return OK(start)
            return ("undo", start, end)
        if (atype & pa.MEM_LARGE_PAGES) and (atype & pa.MEM_COMMIT) and (atype & pa.MEM_RESERVE):
            return ERR(1314)
        if atype & ~ALLOC_TYPES or not atype & (pa.MEM_COMMIT | pa.MEM_RESERVE):
            return ERR(87)
        if atype & pa.MEM_WRITE_WATCH and not atype & pa.MEM_RESERVE:
            return ERR(87)
        vp = valid_protect(prot, allow_copy=True)
        if vp is None:
            return ERR(87)
        base_prot, guard = vp
        reserve = bool(atype & pa.MEM_RESERVE) or not addr
        commit = bool(atype & pa.MEM_COMMIT)
        # WRITECOPY is for views [110]: a reservation refuses it at once; a commit only once
        # it knows the memory is private (Wine: set_protection after find_view)
        if base_prot in COPY_BASES and reserve:
            return ERR(87)
        if addr:
            start = addr & ~((GRAN if reserve else PAGE) - 1)
            end = pgup(addr + size)
            if addr + size > self.hi or start < self.lo:
                return ERR(87)
            length = end - start
        else:
            if size > self.hi - self.lo:
                return ERR(87)
            start, length = None, pgup(size)
        if reserve:
            span = gup(length)
            if start is not None:
                if any(a.base < start + span and start < a.slot_end for a in self.allocs.values()):
                    return ERR(487)
            else:
                fits = [(g0, g1) for g0, g1 in self.gaps() if g1 - g0 >= span]
                if not fits:
                    return ERR(8)
                start = fits[-1][1] - span if atype & pa.MEM_TOP_DOWN else fits[0][0]
            if commit and self.over_limit(length // PAGE):
                return ERR(1455)
            watch = bool(atype & pa.MEM_WRITE_WATCH)
            self.allocs[start] = Alloc(start, length, prot, watch)
            for pg in range(start, start + length, PAGE):
                self.pages[pg] = Page()
            if commit:
                self.commit_pages(start, start + length, base_prot, guard)
            return OK(start)
        a = self.alloc_at(start)
        if a is None or end > a.end:
            return ERR(487)
        if base_prot in COPY_BASES:
            return ERR(87)
        if self.pins_block(start, end, False, base_prot, guard):
            return BUFFER
        fresh = sum(not self.pages[pg].committed for pg in range(start, end, PAGE))
        if self.over_limit(fresh):
            return ERR(1455)
        self.commit_pages(start, end, base_prot, guard)
        return OK(start)

    # -- VirtualFree [38-49]
    def virtual_free(self, addr, size, ftype):
        addr = addr or 0
        if ftype == pa.MEM_RELEASE and size != 0:
            return ERR(87)
        if ftype not in (pa.MEM_DECOMMIT, pa.MEM_RELEASE):
            return ERR(87)
        if not addr or addr < self.lo or addr >= self.hi:
            return ERR(87)
        start = pgdown(addr)
        a = self.alloc_at(start)
        if a is None:
            return ERR(487)
        if size == 0:
            if start != a.base:
                return ERR(487)
            end = a.end
        else:
            end = pgup(addr + size)
            if end > a.end:
                return ERR(87)
        if self.pins_block(start, end, True):
            return BUFFER
        if ftype == pa.MEM_RELEASE:
            for pg in range(a.base, a.end, PAGE):
                del self.pages[pg]
            del self.allocs[a.base]
        else:
            self.decommit_pages(start, end)
        return OK(True)

    # -- VirtualProtect [50-57]
    def virtual_protect(self, addr, size, prot):
        addr = addr or 0
        if addr < self.lo or addr >= self.hi:
            return ERR(87)
        start, end = pgdown(addr), pgup(addr + size)
        a = self.alloc_at(start)
        if a is None or end > a.end:
            return ERR(87)
        vp = valid_protect(prot)
        if vp is None:
            return ERR(87)
        if not all(self.pages[pg].committed for pg in range(start, end, PAGE)):
            return ERR(487)
        if self.pins_block(start, end, False, vp[0], vp[1]):
            return BUFFER
        old = self.protect_of(self.pages[start], a)
        for pg in range(start, end, PAGE):
            self.pages[pg].prot, self.pages[pg].guard = vp
        return OK(old)

    # -- VirtualQuery [5, 18, 62-68]
    def virtual_query(self, addr):
        if addr >= self.hi:
            return ERR(87)
        pg = pgdown(addr)
        a = self.alloc_at(pg)
        if a is None:
            if pg < self.lo:
                end = self.lo
            else:
                end = min([b.base for b in self.allocs.values() if b.base > pg], default=self.hi)
            return OK(dict(BaseAddress=pg, AllocationBase=0, AllocationProtect=0,
                           RegionSize=end - pg, State=pa.MEM_FREE, Protect=NA, Type=0))
        first = self.pages[pg]

        def key(p: Page):
            return (p.committed, p.prot, p.guard)

        e = pg + PAGE
        while e < a.end and key(self.pages[e]) == key(first):
            e += PAGE
        return OK(dict(BaseAddress=pg, AllocationBase=a.base, AllocationProtect=a.prot,
                       RegionSize=e - pg,
                       State=pa.MEM_COMMIT if first.committed else pa.MEM_RESERVE,
                       Protect=self.protect_of(first, a), Type=pa.MEM_PRIVATE))

    def regions(self):
        out = []
        addr = self.lo
        while addr < self.hi:
            owner = self.slot_owner(addr)
            if owner is not None and addr >= owner.end:
                out.append((addr, owner.slot_end - addr, pa.MEM_FREE, NA, 0, 0, 0, 0, True))
                addr = owner.slot_end
                continue
            q = self.virtual_query(addr)[1]
            out.append((addr, q["RegionSize"], q["State"], q["Protect"], q["Type"],
                        q["AllocationBase"], q["AllocationProtect"], 0, False))
            addr += q["RegionSize"]
        return out

    # -- write watch [75-81]
    def get_write_watch(self, flags, addr, size, count):
        addr = addr or 0
        if flags & ~pa.WRITE_WATCH_FLAG_RESET or size == 0:
            return ERR(87)
        if count is None:
            count = max(1, (addr + size + PAGE - 1) // PAGE - addr // PAGE)
        if count == 0:
            return ERR(87)
        a = self._watched(addr, size)
        if a is None:
            return ERR(87)
        start, end = pgdown(addr), pgup(addr + size)
        found, pg = [], start
        while pg < end and len(found) < count:
            if self.pages[pg].dirty:
                found.append(pg)
            pg += PAGE
        if flags & pa.WRITE_WATCH_FLAG_RESET:
            for q in range(start, pg, PAGE):
                self.pages[q].dirty = False
        return OK((found, PAGE))

    def reset_write_watch(self, addr, size):
        addr = addr or 0
        if size == 0 or self._watched(addr, size) is None:
            return ERR(87)
        for pg in range(pgdown(addr), pgup(addr + size), PAGE):
            self.pages[pg].dirty = False
        return OK(True)

    def _watched(self, addr, size):
        if addr < self.lo or addr >= self.hi:
            return None
        a = self.alloc_at(addr)
        if a is None or not a.watch or addr + size > a.end:
            return None
        return a


# ---- host memory pressure ------------------------------------------------------------------------

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    _libc.madvise.restype = ctypes.c_int
except (OSError, AttributeError):  # pragma: no cover
    _libc = None
MADV_PAGEOUT = 21


def _pageout_supported() -> bool:
    if _libc is None:
        return False
    with pa.Process(address_space=1 << 20) as p:
        a = p.VirtualAlloc(None, PAGE, pa.MEM_COMMIT, RW)
        return _libc.madvise(a, PAGE, MADV_PAGEOUT) == 0


PAGEOUT = _pageout_supported()


# ---- strategies ----------------------------------------------------------------------------------

SIZES = st.one_of(
    st.sampled_from([1, 2, 0xFFF, 0x1000, 0x1001, 0x2000, 0x3000, 0x8000, 0xFFFC, 0x10000,
                     0x10001, 0x20000, 0x30000]),
    st.integers(1, 0x40000),
)
VALID_PROTECTS = st.one_of(
    st.sampled_from(BASES),
    st.sampled_from(WRITABLE),
    st.sampled_from([RW | GUARD, RO | GUARD, pa.PAGE_EXECUTE_READ | GUARD, RW | NOCACHE,
                     pa.PAGE_EXECUTE_READWRITE | WCOMB]),
)
INVALID_PROTECTS = st.sampled_from([0, pa.PAGE_WRITECOPY, pa.PAGE_EXECUTE_WRITECOPY, 0x03, 0x06,
                                    0x30, 0x50, NA | GUARD, GUARD, RW | GUARD | NOCACHE,
                                    RW | 0x800, RW | 0x40000000])
PROTECTS = st.one_of(VALID_PROTECTS, VALID_PROTECTS, VALID_PROTECTS, INVALID_PROTECTS)
GOOD_TYPES = st.sampled_from([
    pa.MEM_RESERVE, pa.MEM_COMMIT, pa.MEM_COMMIT | pa.MEM_RESERVE,
    pa.MEM_RESERVE | pa.MEM_WRITE_WATCH, pa.MEM_COMMIT | pa.MEM_RESERVE | pa.MEM_WRITE_WATCH,
    pa.MEM_RESERVE | pa.MEM_TOP_DOWN, pa.MEM_COMMIT | pa.MEM_TOP_DOWN,
    pa.MEM_COMMIT | pa.MEM_RESERVE | pa.MEM_TOP_DOWN | pa.MEM_WRITE_WATCH])
BAD_TYPES = st.sampled_from([
    0, pa.MEM_DECOMMIT, pa.MEM_RELEASE, pa.MEM_WRITE_WATCH, pa.MEM_COMMIT | pa.MEM_WRITE_WATCH,
    pa.MEM_RESET | pa.MEM_COMMIT, pa.MEM_COMMIT | pa.MEM_RESERVE | pa.MEM_LARGE_PAGES,
    pa.MEM_PHYSICAL, pa.MEM_RESET_UNDO | pa.MEM_RESET])
ALLOC_TYPES_ST = st.one_of(GOOD_TYPES, GOOD_TYPES, GOOD_TYPES, BAD_TYPES)
FREE_TYPES = st.one_of(st.sampled_from([pa.MEM_DECOMMIT, pa.MEM_RELEASE]),
                       st.sampled_from([pa.MEM_DECOMMIT, pa.MEM_RELEASE]),
                       st.sampled_from([0, pa.MEM_FREE, pa.MEM_DECOMMIT | pa.MEM_RELEASE,
                                        pa.MEM_RESERVE]))


class VirtualMemoryMachine(RuleBasedStateMachine):
    p: pa.Process | None = None

    def teardown(self):
        if self.p is None:
            return
        for v in self.m.views:
            v.mv.release()
        self.m.views.clear()
        self.p.close()

    # -- address drawing
    def addr(self, data, allow_null=False):
        """An address: mostly in or near allocations (often on committed pages), sometimes
        in free slots, at the edges of the space, or NULL."""
        m = self.m
        choices = ["slot", "edge"]
        if m.allocs:
            choices += ["alloc"] * 3
        committed = [pg for pg, page in m.pages.items() if page.committed]
        if committed:
            choices += ["committed"] * 4
        if allow_null:
            choices.append("null")
        kind = data.draw(st.sampled_from(choices))
        if kind == "null":
            return None
        if kind == "edge":
            return data.draw(st.sampled_from([m.lo, m.lo - 1, m.lo - PAGE, m.origin, m.hi - PAGE,
                                              m.hi - 1, m.hi, m.hi + PAGE]))
        if kind == "slot":
            slot = data.draw(st.integers(0, (m.hi - m.lo) // GRAN - 1))
            return m.lo + slot * GRAN + data.draw(st.sampled_from([0, 0, PAGE, 0x8000, 0x123]))
        if kind == "committed":
            return data.draw(st.sampled_from(sorted(committed))) + data.draw(
                st.sampled_from([0, 0, 1, 0x800, PAGE - 2]))
        a = data.draw(st.sampled_from(sorted(m.allocs)))
        size = m.allocs[a].size
        off = data.draw(st.integers(-2, (size // PAGE) + 2)) * PAGE
        if data.draw(st.booleans()):
            off += data.draw(st.integers(0, PAGE - 1))
        return a + off

    def inside(self, data, a=None):
        """An allocation and a page range inside it."""
        if a is None:
            a = self.m.allocs[data.draw(st.sampled_from(sorted(self.m.allocs)))]
        n = a.size // PAGE
        first = data.draw(st.integers(0, n - 1))
        last = data.draw(st.integers(first, min(n - 1, first + 8)))
        return a, a.base + first * PAGE, (last - first + 1) * PAGE

    def check(self, what, expected, actual):
        assert expected == actual, f"{what}: model {expected!r}, process {actual!r}"

    # -- rules
    @initialize(data=st.data(), space=st.sampled_from([SPACE, SPACE, SPACE, 1 << 20]),
                limit=st.sampled_from([None, COMMIT_LIMIT, COMMIT_LIMIT, 0x40000]))
    def some_allocations(self, data, space, limit):
        """A process with 254 (or 14) usable slots and maybe a commit limit, and a few live
        allocations: reserved, committed, partly committed, write-watched."""
        self.p = pa.Process(address_space=space, commit_limit=limit)
        si = self.p.GetSystemInfo()
        lo, hi = si.lpMinimumApplicationAddress, si.lpMaximumApplicationAddress + 1
        self.m = Model(lo, hi, lo - GRAN, limit)
        for _ in range(data.draw(st.integers(1, 4))):
            self._alloc(None, data.draw(SIZES), data.draw(GOOD_TYPES), data.draw(VALID_PROTECTS))
        for a in list(self.m.allocs.values()):
            if data.draw(st.booleans()):
                _, start, size = self.inside(data, a)
                self._alloc(start, size, pa.MEM_COMMIT, data.draw(VALID_PROTECTS))

    @rule(size=SIZES, atype=GOOD_TYPES, prot=VALID_PROTECTS)
    def allocate(self, size, atype, prot):
        self._alloc(None, size, atype, prot)

    @rule(data=st.data(), size=SIZES, atype=ALLOC_TYPES_ST, prot=PROTECTS)
    def virtual_alloc(self, data, size, atype, prot):
        addr = None if data.draw(st.booleans()) else self.addr(data, allow_null=True)
        if data.draw(st.integers(0, 9)) == 0:
            size = data.draw(st.sampled_from([0, SPACE, 1 << 40, (1 << 64) - 1]))
        self._alloc(addr, size, atype, prot)

    def _alloc(self, addr, size, atype, prot):
        call = f"VirtualAlloc({addr!r}, {size:#x}, {atype:#x}, {prot:#x})"
        expected = self.m.virtual_alloc(addr, size, atype, prot)
        actual = run(self.p.VirtualAlloc, addr, size, atype, prot)
        if expected[0] == "undo":
            _, start, end = expected
            pages = [self.m.pages[pg] for pg in range(start, end, PAGE)]
            pending = [pg for pg in pages if pg.reset]
            if pending:
                assert actual in (OK(start), ERR(31)), f"{call}: {actual!r}"
            else:
                self.check(call, OK(start), actual)
            for page in pending:
                if actual == OK(start):  # success: nothing was lost [37]
                    page.cands = [c for c in page.cands if c[1]]
                page.reset = False
            return
        self.check(call, expected, actual)

    @rule(data=st.data(), prot=PROTECTS)
    @precondition(lambda self: self.m.allocs)
    def commit_inside(self, data, prot):
        _, start, size = self.inside(data)
        self._alloc(start, size, pa.MEM_COMMIT, prot)

    @rule(data=st.data(), undo=st.booleans())
    @precondition(lambda self: self.m.allocs)
    def reset_inside(self, data, undo):
        _, start, size = self.inside(data)
        self._alloc(start, size, pa.MEM_RESET_UNDO if undo else pa.MEM_RESET,
                    data.draw(st.sampled_from([NA, RW, 0])))

    @rule(data=st.data(), fill=st.integers(1, 255), between=st.sampled_from(
        ["nothing", "protect", "recommit", "decommit", "write"]), pressure=st.booleans())
    @precondition(lambda self: any(p.committed for p in self.m.pages.values()))
    def reset_cycle(self, data, fill, between, pressure):
        """write, MEM_RESET, something, host pressure, MEM_RESET_UNDO, read: the sequence
        where MEM_RESET_UNDO must not claim lost data [37]; each call checked as usual."""
        committed = sorted(pg for pg, page in self.m.pages.items() if page.committed)
        start = data.draw(st.sampled_from(committed))
        a = self.m.alloc_at(start)
        n = data.draw(st.integers(1, min(4, (a.end - start) // PAGE)))
        size = n * PAGE
        self.write_checked(start, bytes([fill]) * size)
        self._alloc(start, size, pa.MEM_RESET, NA)
        if between == "protect":
            self.protect_checked(start, size, data.draw(VALID_PROTECTS))
        elif between == "recommit":
            self._alloc(start, size, pa.MEM_COMMIT, data.draw(VALID_PROTECTS))
        elif between == "decommit":
            self.check("decommit", self.m.virtual_free(start, PAGE, pa.MEM_DECOMMIT),
                       run(self.p.VirtualFree, start, PAGE, pa.MEM_DECOMMIT))
        elif between == "write":
            self.write_checked(start + size // 2, bytes([fill ^ 0xFF]) * 8)
        if pressure and PAGEOUT:
            assert _libc.madvise(start, size, MADV_PAGEOUT) == 0
        self._alloc(start, size, pa.MEM_RESET_UNDO, NA)
        self.read_checked(start, size)

    @rule(data=st.data(), size=st.one_of(st.just(0), SIZES), ftype=FREE_TYPES)
    def virtual_free(self, data, size, ftype):
        addr = self.addr(data, allow_null=True)
        call = f"VirtualFree({addr!r}, {size:#x}, {ftype:#x})"
        self.check(call, self.m.virtual_free(addr, size, ftype),
                   run(self.p.VirtualFree, addr, size, ftype))

    @rule(data=st.data())
    @precondition(lambda self: self.m.allocs)
    def decommit_inside(self, data):
        _, start, size = self.inside(data)
        self.check(f"VirtualFree({start:#x}, {size:#x}, MEM_DECOMMIT)",
                   self.m.virtual_free(start, size, pa.MEM_DECOMMIT),
                   run(self.p.VirtualFree, start, size, pa.MEM_DECOMMIT))

    @rule(data=st.data())
    @precondition(lambda self: len(self.m.allocs) > 3)
    def release_one(self, data):
        base = data.draw(st.sampled_from(sorted(self.m.allocs)))
        self.check(f"VirtualFree({base:#x}, 0, MEM_RELEASE)",
                   self.m.virtual_free(base, 0, pa.MEM_RELEASE),
                   run(self.p.VirtualFree, base, 0, pa.MEM_RELEASE))

    @rule(data=st.data(), size=SIZES, prot=PROTECTS)
    def virtual_protect(self, data, size, prot):
        # (size 0 is left out: the reference does not say what it means, and Wine's
        # NtProtectVirtualMemory and this implementation disagree)
        if self.m.allocs and data.draw(st.integers(0, 3)):
            _, addr, size = self.inside(data)
        else:
            addr = self.addr(data)
        self.protect_checked(addr, size, prot)

    def protect_checked(self, addr, size, prot):
        self.check(f"VirtualProtect({addr:#x}, {size:#x}, {prot:#x})",
                   self.m.virtual_protect(addr, size, prot),
                   run(self.p.VirtualProtect, addr, size, prot))

    @rule(data=st.data())
    def virtual_query(self, data):
        addr = self.addr(data)
        actual = run(self.p.VirtualQuery, addr)
        if actual[0] == "ok":
            actual = OK(actual[1]._asdict())
        self.check(f"VirtualQuery({addr:#x})", self.m.virtual_query(addr), actual)

    @rule(data=st.data(), size=st.integers(1, 3 * PAGE))
    def read(self, data, size):
        self.read_checked(self.addr(data), size)

    def read_checked(self, addr, size):
        expected = self.m.access(addr, size, False)
        actual = run(self.p.read, addr, size)
        if expected is not None:
            self.check(f"read({addr:#x}, {size:#x})", expected, actual)
            return
        assert actual[0] == "ok", f"read({addr:#x}, {size:#x}): {actual!r}"
        problem = self.m.observe(addr, actual[1])
        assert problem is None, f"read({addr:#x}, {size:#x}): {problem}"

    @rule(data=st.data(), size=st.integers(1, 3 * PAGE), fill=st.integers(1, 255))
    def write(self, data, size, fill):
        self.write_checked(self.addr(data), bytes([fill]) * size)

    def write_checked(self, addr, payload):
        size = len(payload)
        expected = self.m.access(addr, size, True)
        actual = run(self.p.write, addr, payload)
        if expected is None:
            self.m.store(addr, payload)
            expected = OK(None)
        self.check(f"write({addr:#x}, {size:#x})", expected, actual)

    @rule(data=st.data(), flags=st.sampled_from([0, 0, 1, 1, 2]),
          size=st.one_of(st.just(0), SIZES),
          count=st.one_of(st.none(), st.none(), st.integers(0, 5)))
    def get_write_watch(self, data, flags, size, count):
        addr = self.addr(data, allow_null=True)
        watched = [a for a in self.m.allocs.values() if a.watch]
        if watched and data.draw(st.booleans()):
            a = data.draw(st.sampled_from(watched))
            addr, size = a.base, a.size
        kwargs = {} if count is None else {"count": count}
        self.check(f"GetWriteWatch({flags}, {addr!r}, {size:#x}, {count})",
                   self.m.get_write_watch(flags, addr, size, count),
                   run(self.p.GetWriteWatch, flags, addr, size, **kwargs))

    @rule(data=st.data(), size=st.one_of(st.just(0), SIZES))
    def reset_write_watch(self, data, size):
        addr = self.addr(data, allow_null=True)
        self.check(f"ResetWriteWatch({addr!r}, {size:#x})",
                   self.m.reset_write_watch(addr, size),
                   run(self.p.ResetWriteWatch, addr, size))

    @rule(data=st.data(), size=st.integers(1, 3 * PAGE))
    @precondition(lambda self: len(self.m.views) < 3)
    def open_view(self, data, size):
        self.open_view_checked(self.addr(data), size)

    def open_view_checked(self, addr, size) -> View | None:
        expected = self.m.access(addr, size, False)
        actual = run(self.p.view, addr, size)
        if expected is not None:
            self.check(f"view({addr:#x}, {size:#x})", expected, actual)
            return None
        assert actual[0] == "ok", f"view({addr:#x}, {size:#x}): {actual!r}"
        mv = actual[1]
        writable = all(self.m.pages[pg].prot in WRITABLE
                       for pg in range(pgdown(addr), pgup(addr + size), PAGE))
        self.m.views.append(View(mv, addr, size, writable))
        assert mv.readonly == (not writable), f"view({addr:#x}, {size:#x}).readonly"
        assert len(mv) == size
        problem = self.m.observe(addr, bytes(mv))
        assert problem is None, f"view({addr:#x}, {size:#x}): {problem}"
        return self.m.views[-1]

    @rule(data=st.data(), keep=st.booleans())
    @precondition(lambda self: any(p.committed for p in self.m.pages.values()))
    def changes_under_a_view(self, data, keep):
        """A view of committed pages, then changes to pages it covers or neighbours: those that
        would leave it dangling raise BufferError, the others work; all checked."""
        committed = sorted(pg for pg, page in self.m.pages.items() if page.committed)
        start = data.draw(st.sampled_from(committed))
        a = self.m.alloc_at(start)
        size = data.draw(st.integers(1, min(3 * PAGE, a.end - start)))
        v = self.open_view_checked(start, size) if len(self.m.views) < 3 else None
        for _ in range(data.draw(st.integers(1, 3))):
            lowest = max(a.base, start - PAGE)  # draws are relative: the base varies by run
            first = pgdown(lowest + data.draw(st.integers(0, start + size - 1 - lowest)))
            n = data.draw(st.integers(1, 3)) * PAGE
            op = data.draw(st.sampled_from(["protect", "commit", "decommit", "release"]))
            if op == "protect":
                self.protect_checked(first, n, data.draw(VALID_PROTECTS))
            elif op == "commit":
                self._alloc(first, n, pa.MEM_COMMIT, data.draw(VALID_PROTECTS))
            elif op == "decommit":
                self.check("decommit", self.m.virtual_free(first, n, pa.MEM_DECOMMIT),
                           run(self.p.VirtualFree, first, n, pa.MEM_DECOMMIT))
            else:
                self.check("release", self.m.virtual_free(a.base, 0, pa.MEM_RELEASE),
                           run(self.p.VirtualFree, a.base, 0, pa.MEM_RELEASE))
                break
        if v is not None and not keep:
            v.mv.release()
            self.m.views.remove(v)

    @rule(data=st.data(), fill=st.integers(0, 255), reset=st.booleans())
    @precondition(lambda self: any(a.watch for a in self.m.allocs.values()))
    def watch_through_view(self, data, fill, reset):
        """ResetWriteWatch, then direct stores through a view of watched pages (each first
        store faults into the SIGSEGV handler), then GetWriteWatch; all checked."""
        a = data.draw(st.sampled_from([a for a in self.m.allocs.values() if a.watch]))
        if reset:
            self.check("ResetWriteWatch", self.m.reset_write_watch(a.base, a.size),
                       run(self.p.ResetWriteWatch, a.base, a.size))
        _, start, size = self.inside(data, a)
        if len(self.m.views) >= 3:
            return
        v = self.open_view_checked(start, size)
        if v is not None and v.writable:
            for off in sorted(set(data.draw(st.lists(st.integers(0, size - 1), max_size=4)))):
                v.mv[off] = fill
                pg = pgdown(start + off)
                self.m.watch_faults += not self.m.pages[pg].dirty
                self.m.store(start + off, bytes([fill]))
        self.check("GetWriteWatch", self.m.get_write_watch(0, a.base, a.size, None),
                   run(self.p.GetWriteWatch, 0, a.base, a.size))

    @rule(data=st.data(), fill=st.integers(0, 255))
    @precondition(lambda self: self.m.views)
    def use_view(self, data, fill):
        v = data.draw(st.sampled_from(self.m.views))
        off = data.draw(st.integers(0, v.size - 1))
        n = data.draw(st.integers(1, v.size - off))
        if v.writable and data.draw(st.booleans()):
            v.mv[off:off + n] = bytes([fill]) * n  # direct stores: the SIGSEGV handler's path
            for pg in range(pgdown(v.address + off), pgup(v.address + off + n), PAGE):
                self.m.watch_faults += self.m.alloc_at(pg).watch and not self.m.pages[pg].dirty
            self.m.store(v.address + off, bytes([fill]) * n)
        elif not v.writable and data.draw(st.booleans()):
            try:
                v.mv[off] = fill
            except TypeError:
                pass
            else:
                raise AssertionError("a read-only view accepted a store")
        problem = self.m.observe(v.address + off, bytes(v.mv[off:off + n]))
        assert problem is None, f"view at {v.address:#x}: {problem}"

    @rule(data=st.data())
    @precondition(lambda self: self.m.views)
    def release_view(self, data):
        v = data.draw(st.sampled_from(self.m.views))
        v.mv.release()
        self.m.views.remove(v)

    @rule(data=st.data())
    @precondition(lambda self: PAGEOUT and self.m.allocs)
    def host_memory_pressure(self, data):
        """The host drops whatever MEM_RESET allowed it to drop (and may swap the rest)."""
        _, start, size = self.inside(data)
        assert _libc.madvise(start, size, MADV_PAGEOUT) == 0

    # -- invariants
    @invariant()
    def regions_match(self):
        regions = self.p.regions()
        actual = [(r.base, r.size, r.state, r.protect, r.type, r.allocation_base,
                   r.allocation_protect, r.owner, r.unusable) for r in regions]
        assert actual == self.m.regions(), "regions() differ from the model"
        assert not any(getattr(r, "mapped_file", False) for r in regions)

    @invariant()
    def stats_match(self):
        s = self.p.stats()
        m = self.m
        assert s["committed"] == m.committed() * PAGE
        assert s["reserved"] == sum(a.size for a in m.allocs.values())
        assert s["allocations"] == len(m.allocs)
        assert s["pins"] == len(m.views)
        assert s["peak_committed"] == m.peak * PAGE
        assert s["guard_hits"] == m.guard_hits
        assert s["watch_faults"] == m.watch_faults
        if m.limit_pages is not None:
            assert s["commit_limit"] == m.limit_pages * PAGE
            assert s["peak_committed"] <= s["commit_limit"]


VirtualMemoryMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestVirtualMemoryModel = VirtualMemoryMachine.TestCase


def test_model_sanity_against_known_facts():
    """The model itself agrees with a few facts, so that a model bug cannot hide an
    implementation bug that happens to match it."""
    m = Model(0x10000, 0x10000 + 14 * GRAN, 0)
    assert m.virtual_alloc(None, 0xFFFC, pa.MEM_RESERVE, NA) == OK(0x10000)        # fact 5
    assert m.virtual_query(0x10000) == OK(dict(
        BaseAddress=0x10000, AllocationBase=0x10000, AllocationProtect=NA, RegionSize=0x10000,
        State=pa.MEM_RESERVE, Protect=0, Type=pa.MEM_PRIVATE))
    assert m.virtual_alloc(0x11000, 0x1000, pa.MEM_RESERVE, RW) == ERR(487)         # fact 10
    assert m.virtual_alloc(0x10000, 0x1000, pa.MEM_COMMIT, NA) == OK(0x10000)       # fact 18
    assert m.virtual_protect(0x10000, 0xFFFC, RO) == ERR(487)                       # fact 51
    assert m.virtual_protect(0x10000, 0x1000, RO) == OK(NA)                         # fact 52
    assert m.virtual_free(0x10000, 1, pa.MEM_RELEASE) == ERR(87)                    # fact 40
    assert m.virtual_free(0x10000, 0, pa.MEM_RELEASE) == OK(True)
    assert m.virtual_free(0x10000, 0, pa.MEM_RELEASE) == ERR(487)                   # fact 44
    top = m.virtual_alloc(None, 0x1000, pa.MEM_RESERVE | pa.MEM_TOP_DOWN, RW)       # fact 16
    assert top == OK(0x10000 + 13 * GRAN)
    assert m.virtual_query(0x20000) == OK(dict(                                       # fact 63
        BaseAddress=0x20000, AllocationBase=0, AllocationProtect=0, RegionSize=12 * GRAN,
        State=pa.MEM_FREE, Protect=NA, Type=0))
    assert m.virtual_query(m.hi) == ERR(87)                                          # fact 66
    w = m.virtual_alloc(None, 0x10000, pa.MEM_RESERVE | pa.MEM_COMMIT | pa.MEM_WRITE_WATCH, RW)[1]
    m.store(w + 0x1001, b"x")
    assert m.get_write_watch(1, w, 0x10000, None) == OK(([w + 0x1000], PAGE))          # fact 77
    assert m.get_write_watch(0, w, 0x10000, None) == OK(([], PAGE))
    assert m.get_write_watch(0, w, 0x10000, 0) == ERR(87)                             # fact 81
