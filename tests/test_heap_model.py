"""Model-based test of layer 3 through Python: a hypothesis state machine drives random
HeapAlloc (with and without HEAP_ZERO_MEMORY), HeapReAlloc (growing, shrinking, in place only,
zeroing), HeapFree (and double frees), HeapSize, writes (a few bytes, or whole big blocks) and
reads of block contents, HeapWalk,
HeapCompact and HeapSetInformation on a fresh Process per example, against a pure-Python model
of the live blocks: address -> (size, known bytes).

The model is written from the reference (/work/shared/reference/heap.md), not from the C code:
  * HeapSize is exactly the requested size [10]; blocks are 16-byte aligned [19] and never
    overlap;
  * HEAP_ZERO_MEMORY zeroes the whole request, and HeapReAlloc with it zeroes the grown tail
    [17]; a new large block reads as zero without it [18]; a realloc keeps min(old, new)
    bytes [34], in place only or moving;
  * HEAP_REALLOC_IN_PLACE_ONLY keeps the address or fails with ERROR_NOT_ENOUGH_MEMORY and
    leaves the block as it was [11, 32-35]; a moving realloc on a growable heap succeeds;
  * a freed block cannot be freed again: ERROR_INVALID_PARAMETER (pyalloc's contract, [15]);
  * after every step HeapValidate(heap) is True [36], HeapWalk's busy entries are exactly the
    live blocks (addresses and sizes) [44-53], Heap.stats() counts them and their bytes, and
    HeapCompact returns the largest free block [64] and decommits the LFH's spare chunks;
    Heap.stats()' spare_committed is what HeapWalk lists as the LFH's kept free chunks.
Sizes are biased to 0-600 bytes (the LFH's range) with some 1-4 MiB (large blocks [23]) and a
few in between.
"""
from __future__ import annotations

import threading

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

import pyalloc as pa
from conftest import lfh_spare_bytes

ZERO = pa.HEAP_ZERO_MEMORY
IN_PLACE = pa.HEAP_REALLOC_IN_PLACE_ONLY
BUSY = pa.PROCESS_HEAP_ENTRY_BUSY
LARGE = 1 << 20    # requests this big are large blocks (over 0xFD000 [23])
FULL_CHECK = 8192  # blocks up to this size are read whole; bigger ones at their known bytes
SAMPLE = 64        # zeroed bytes the model remembers at each end of a big block

small_sizes = st.integers(0, 600)
sizes = st.one_of(small_sizes, small_sizes, small_sizes, small_sizes, small_sizes,
                  st.integers(601, 70000), st.integers(1 << 20, 4 << 20))

HEAPS = {
    "lfh": dict(),
    "back end only": dict(lfh=False),
    "tail and free checking": dict(debug=pa.PA_HEAP_DEBUG_TAIL_CHECK | pa.PA_HEAP_DEBUG_FREE_CHECK),
    "page heap": dict(debug=pa.PA_HEAP_DEBUG_PAGE_HEAP),
}


def zero_known(size: int, start: int = 0, value: int = 0) -> dict:
    """Known bytes of [start, size) after zeroing (or filling with value): all of them for a
    small block, else samples at both ends and in the middle."""
    if size - start <= FULL_CHECK:
        return dict.fromkeys(range(start, size), value)
    mid = (start + size) // 2
    offsets = [*range(start, start + SAMPLE), *range(mid, mid + SAMPLE), *range(size - SAMPLE, size)]
    return dict.fromkeys(offsets, value)


def runs(offsets):
    """Sorted offsets -> [(start, length)] of consecutive runs."""
    out = []
    for o in sorted(offsets):
        if out and out[-1][0] + out[-1][1] == o:
            out[-1][1] += 1
        else:
            out.append([o, 1])
    return out


class HeapModel(RuleBasedStateMachine):
    blocks = Bundle("blocks")

    def __init__(self):
        super().__init__()
        self.p = None
        self.live: dict[int, tuple[int, dict]] = {}  # address -> (size, {offset: byte})
        self.freed: set[int] = set()

    @initialize(kind=st.sampled_from(sorted(HEAPS)))
    def create(self, kind):
        self.kind = kind
        self.p = pa.Process()
        self.h = self.p.HeapCreate(0, 0, 0, **HEAPS[kind])

    def teardown(self):
        if self.p is not None:
            for a in list(self.live):
                assert self.p.HeapFree(self.h, 0, a)
            assert self.p.HeapValidate(self.h)
            assert self.h.stats()["busy_blocks"] == 0
            self.p.close()

    # ---- helpers ----

    def check_contents(self, a: int):
        size, known = self.live[a]
        if not known:
            return
        if size <= FULL_CHECK:
            data = self.p.read(a, size)
            bad = [o for o, v in known.items() if data[o] != v]
        else:
            bad = []
            for start, n in runs(known):
                data = self.p.read(a + start, n)
                bad += [start + i for i in range(n) if data[i] != known[start + i]]
        assert not bad, f"block 0x{a:x} ({size} bytes): bytes changed at {bad[:8]}"

    def add(self, a: int, size: int, known: dict):
        assert a % 16 == 0, f"0x{a:x} is not 16-byte aligned"
        assert a not in self.live
        self.live[a] = (size, known)
        self.freed.discard(a)
        return a

    # ---- rules ----

    @rule(target=blocks, size=sizes, zero=st.booleans())
    def alloc(self, size, zero):
        a = self.p.HeapAlloc(self.h, ZERO if zero else 0, size)
        # a large block reads as zero without HEAP_ZERO_MEMORY too [18], also when the heap
        # gives out again one that was freed (debug heaps fill new blocks instead [43])
        large = size >= LARGE and self.kind in ("lfh", "back end only")
        self.add(a, size, zero_known(size) if zero or large else {})
        self.check_contents(a)
        return a

    @rule(a=blocks, data=st.data())
    def write(self, a, data):
        if a not in self.live:
            return
        size, known = self.live[a]
        if size == 0:
            return
        offset = data.draw(st.integers(0, size - 1), label="offset")
        n = data.draw(st.integers(1, min(64, size - offset)), label="length")
        payload = data.draw(st.binary(min_size=n, max_size=n), label="payload")
        self.p.write(a + offset, payload)
        known.update(zip(range(offset, offset + n), payload))

    @rule(a=blocks, value=st.integers(1, 255))
    def fill(self, a, value):
        """Writes a whole block (of 64 KiB or more): freed large blocks that came back written
        through are cleared and kept in memory, not dropped, and must still read as zero when
        they are given out again [18]."""
        if a not in self.live or self.live[a][0] < 1 << 16:
            return
        size, known = self.live[a]
        self.p.write(a, bytes([value]) * size)
        known.clear()
        known.update(zero_known(size, value=value))

    @rule(a=blocks)
    def read(self, a):
        if a in self.live:
            self.check_contents(a)

    @rule(a=blocks)
    def size(self, a):
        if a in self.live:
            assert self.p.HeapSize(self.h, 0, a) == self.live[a][0]

    @rule(target=blocks, a=blocks, new=sizes, zero=st.booleans(), in_place=st.booleans())
    def realloc(self, a, new, zero, in_place):
        if a not in self.live:
            return a
        old, known = self.live[a]
        flags = (ZERO if zero else 0) | (IN_PLACE if in_place else 0)
        try:
            b = self.p.HeapReAlloc(self.h, flags, a, new)
        except pa.WinMemoryError as e:
            assert in_place, f"a moving realloc {old} -> {new} failed: {e}"
            assert e.winerror == 8
            assert self.p.HeapSize(self.h, 0, a) == old
            self.check_contents(a)
            return a
        if in_place:
            assert b == a
        kept = {o: v for o, v in known.items() if o < new}
        if zero and new > old:
            kept.update(zero_known(new, old))
        del self.live[a]
        if b != a:
            self.freed.add(a)
        self.add(b, new, kept)
        self.check_contents(b)
        return b

    @rule(a=blocks)
    def free(self, a):
        if a not in self.live:
            return
        self.check_contents(a)
        assert self.p.HeapFree(self.h, 0, a) is True
        del self.live[a]
        self.freed.add(a)

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free_in_a_thread(self, data):
        """Frees blocks from a thread that then exits: its cache of freed LFH slots goes back
        to the subsegments (their free bitmaps), where later refills take them."""
        picks = data.draw(st.lists(st.sampled_from(sorted(self.live)), min_size=1, max_size=8,
                                   unique=True), label="freed in a thread")
        for a in picks:
            self.check_contents(a)
        results: list = []

        def free_them():
            results.extend(self.p.HeapFree(self.h, 0, a) for a in picks)

        t = threading.Thread(target=free_them)
        t.start()
        t.join()
        assert results == [True] * len(picks)
        for a in picks:
            del self.live[a]
            self.freed.add(a)

    @precondition(lambda self: self.freed)
    @rule(data=st.data())
    def double_free(self, data):
        a = data.draw(st.sampled_from(sorted(self.freed)), label="freed")
        self.p.SetLastError(0)
        try:
            self.p.HeapFree(self.h, 0, a)
        except pa.WinError as e:
            assert e.winerror == 87 and self.p.GetLastError() == 87
        else:
            raise AssertionError(f"double free of 0x{a:x} succeeded")

    @rule()
    def compact(self):
        largest = self.p.HeapCompact(self.h, 0)
        s = self.h.stats()
        assert largest == s["largest_free"]
        assert s["spare_committed"] == 0  # the LFH's kept chunks are decommitted

    @rule()
    def enable_lfh(self):
        try:
            self.p.HeapSetInformation(self.h, pa.HeapCompatibilityInformation, 2)
        except pa.WinError as e:  # nor can debug heaps (fact 62), nor HeapCreate(lfh=False)
            assert self.kind != "lfh" and e.winerror == 87
        else:
            assert self.p.HeapQueryInformation(self.h, pa.HeapCompatibilityInformation) == 2

    # ---- after every step ----

    @invariant()
    def heap_matches_the_model(self):
        if self.p is None:
            return
        p, h = self.p, self.h
        assert p.HeapValidate(h) is True
        busy = {e.lpData: e.cbData for e in p.HeapWalk(h) if e.wFlags & BUSY}
        assert busy == {a: s for a, (s, _) in self.live.items()}
        end = 0
        for a in sorted(self.live):  # no two blocks overlap
            size = self.live[a][0]
            assert a >= end, f"block 0x{a:x} overlaps the previous one"
            end = a + max(size, 1)
            assert p.HeapSize(h, 0, a) == size
        s = h.stats()
        assert s["busy_blocks"] == len(self.live)
        assert s["busy_bytes"] == sum(size for size, _ in self.live.values())
        spare = lfh_spare_bytes(p.HeapWalk(h))  # the LFH's kept chunks: not overhead
        assert s["spare_committed"] == spare
        held = s["busy_bytes"] + s["free_bytes"] + spare
        assert s["overhead"] == max(0, s["committed"] - held)
        for a in self.live:
            self.check_contents(a)


HeapModel.TestCase.settings = settings(
    max_examples=100, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_heap_model = HeapModel.TestCase
