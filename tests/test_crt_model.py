"""Model-based test of layer 4 through Python: a hypothesis state machine drives random
malloc, calloc (some of them overflowing), realloc (to 0 too), _recalloc, _expand, free (in
this thread, or in another that then exits), _aligned_malloc, _aligned_offset_malloc,
_aligned_realloc, _aligned_free and writes into the blocks, on a fresh Process per example
with the release or the debug CRT, against a pure-Python model of the live blocks:
address -> (size, known bytes).

The model is written from the reference (/work/shared/reference/heap.md), not from the C code:
  * blocks are 16-byte aligned and never overlap; _msize is the request, which UCRT's
    release malloc bumps from 0 to 1 [67] (the debug CRT keeps 0);
  * calloc zeroes the block, and fails with ENOMEM when count x size exceeds _HEAP_MAXREQ
    [68]; realloc keeps min(old, new) bytes and realloc(p, 0) frees p [65, 68]; _recalloc
    zero-fills from the old _msize to the new size [74]; _expand stays in place, and a shrink
    it cannot do on the LFH keeps the block as it was [73];
  * an aligned block's pointer plus offset is a multiple of the alignment, _aligned_msize
    gives its size, _aligned_realloc keeps its bytes and its alignment, and
    _aligned_realloc(p, 0) frees it [78];
  * release CRT: every block is one HeapAlloc on the process heap [67]: HeapSize == _msize,
    and HeapWalk's busy blocks are exactly the model's, an aligned block's being its base
    block, found through the pointer stored just below it, of size + P + g + m bytes [78];
  * debug CRT: _CrtCheckMemory holds after every step, _CrtIsValidHeapPointer is true of
    every plain block, and _CrtDumpMemoryLeaks lists exactly the live blocks [Debug CRT].
"""
from __future__ import annotations

import threading

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

import pyalloc as pa

P = 8  # pointer size
BUSY = pa.PROCESS_HEAP_ENTRY_BUSY

small = st.integers(0, 600)
sizes = st.one_of(small, small, small, st.integers(601, 20000), st.integers(1 << 20, 2 << 20))
alignments = st.sampled_from([1, 2, 8, 16, 32, 64, 256, 4096])


class CrtModel(RuleBasedStateMachine):
    blocks = Bundle("blocks")
    aligned = Bundle("aligned")

    def __init__(self):
        super().__init__()
        self.p = None
        self.live: dict[int, tuple[int, dict]] = {}  # plain blocks: address -> (size, bytes)
        # aligned blocks: address -> (size, alignment, offset, bytes)
        self.al: dict[int, tuple[int, int, int, dict]] = {}

    @initialize(debug=st.booleans())
    def create(self, debug):
        self.debug = debug
        self.p = pa.Process(crt_debug=debug)

    def teardown(self):
        if self.p is None:
            return
        if self.debug:
            leaks = self.p._CrtDumpMemoryLeaks()  # (also printed, as MSVC prints them)
            assert len(leaks) == len(self.live) + len(self.al)
            plain = {b.address: b.size for b in leaks if b.address in self.live}
            assert plain == {a: s for a, (s, _) in self.live.items()}
        for a in list(self.live):
            self.p.free(a)
        for a in list(self.al):
            self.p._aligned_free(a)
        if self.debug:
            assert self.p._CrtDumpMemoryLeaks() == []
        else:
            assert not [e for e in self.p.HeapWalk(self.p.GetProcessHeap()) if e.wFlags & BUSY]
        self.p.close()

    # ---- helpers ----

    def msize_of_request(self, n: int) -> int:
        return n if self.debug or n else 1  # UCRT's release malloc(0) is malloc(1) [67]

    def check(self, a: int, known: dict):
        if known:
            lo, hi = min(known), max(known) + 1
            data = self.p.read(a + lo, hi - lo)
            bad = [o for o, v in known.items() if data[o - lo] != v]
            assert not bad, f"block 0x{a:x}: bytes changed at {sorted(bad)[:8]}"

    def add(self, a: int, size: int, known: dict) -> int:
        assert a % 16 == 0, f"0x{a:x} is not 16-byte aligned"
        assert a not in self.live and a not in self.al
        self.live[a] = (size, known)
        return a

    @staticmethod
    def zeros(start: int, end: int) -> dict:
        """Known zero bytes of [start, end): all for a small range, else both ends."""
        if end - start <= 4096:
            return dict.fromkeys(range(start, end), 0)
        return dict.fromkeys([*range(start, start + 64), *range(end - 64, end)], 0)

    # ---- rules: plain blocks ----

    @rule(target=blocks, n=sizes)
    def malloc(self, n):
        a = self.p.malloc(n)
        assert self.p._msize(a) == self.msize_of_request(n)
        return self.add(a, self.msize_of_request(n), {})

    @rule(target=blocks, count=st.integers(0, 40), each=st.integers(0, 100))
    def calloc(self, count, each):
        a = self.p.calloc(count, each)
        n = self.msize_of_request(count * each)
        self.check(a, self.zeros(0, count * each))
        return self.add(a, n, self.zeros(0, count * each))

    @rule(count=st.integers(2, 1 << 20))
    def calloc_overflow(self, count):
        each = pa._HEAP_MAXREQ // count + 1  # count x each > _HEAP_MAXREQ [68]
        try:
            self.p.calloc(count, each)
        except pa.CrtMemoryError as e:
            assert e.errno == 12
        else:
            raise AssertionError(f"calloc({count}, {each}) succeeded")

    @rule(a=blocks, data=st.data())
    def write(self, a, data):
        if a not in self.live or not self.live[a][0]:
            return
        size, known = self.live[a]
        offset = data.draw(st.integers(0, size - 1), label="offset")
        payload = data.draw(st.binary(min_size=1, max_size=min(48, size - offset)), label="bytes")
        self.p.write(a + offset, payload)
        known.update(zip(range(offset, offset + len(payload)), payload))

    @rule(target=blocks, a=blocks, n=sizes)
    def realloc(self, a, n):
        if a not in self.live:
            return a
        size, known = self.live.pop(a)
        b = self.p.realloc(a, n)
        if n == 0:  # realloc(p, 0) frees p and returns NULL [65]
            assert b is None
            return a
        assert self.p._msize(b) == n
        kept = {o: v for o, v in known.items() if o < n}
        self.check(b, kept)
        return self.add(b, n, kept)

    @rule(target=blocks, a=blocks, count=st.integers(1, 40), each=st.integers(1, 100))
    def recalloc(self, a, count, each):
        if a not in self.live:
            return a
        size, known = self.live.pop(a)
        n = count * each
        b = self.p._recalloc(a, count, each)
        kept = {o: v for o, v in known.items() if o < n}
        kept.update(self.zeros(size, n) if n > size else {})  # from the old _msize on [74]
        assert self.p._msize(b) == n
        self.check(b, kept)
        return self.add(b, n, kept)

    @rule(a=blocks, n=sizes)
    def expand(self, a, n):
        if a not in self.live:
            return
        size, known = self.live[a]
        try:
            b = self.p._expand(a, n)
        except pa.CrtError:
            assert self.p._msize(a) == size  # failed: the block is as it was
            self.check(a, known)
            return
        assert b == a
        now = self.p._msize(a)
        # in place; a shrink the LFH cannot make keeps the old size [73]
        assert now == self.msize_of_request(n) or (n < size and now == size), (size, n, now)
        self.live[a] = (now, {o: v for o, v in known.items() if o < now})
        self.check(a, self.live[a][1])

    @rule(a=blocks)
    def free(self, a):
        if a not in self.live:
            return
        self.check(a, self.live[a][1])
        self.p.free(a)
        del self.live[a]

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def free_in_a_thread(self, data):
        """free from a thread that then exits: the blocks go through that thread's cache of
        the process heap (given back to the heap when the thread ends)."""
        picks = data.draw(st.lists(st.sampled_from(sorted(self.live)), min_size=1, max_size=8,
                                   unique=True), label="freed in a thread")
        for a in picks:
            self.check(a, self.live[a][1])
        errors: list = []

        def free_them():
            try:
                for a in picks:
                    self.p.free(a)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        t = threading.Thread(target=free_them)
        t.start()
        t.join()
        assert not errors
        for a in picks:
            del self.live[a]

    # ---- rules: aligned blocks ----

    @rule(target=aligned, n=st.integers(1, 5000), alignment=alignments, data=st.data())
    def aligned_malloc(self, n, alignment, data):
        offset = data.draw(st.integers(0, n - 1), label="offset") if data.draw(st.booleans()) else 0
        a = self.p._aligned_offset_malloc(n, alignment, offset)
        assert (a + offset) % alignment == 0
        assert self.p._aligned_msize(a, alignment, offset) == n
        self.p.write(a + n - 1, b"\xa5")
        self.p.write(a, b"\x5a")
        assert a not in self.al and a not in self.live
        self.al[a] = (n, alignment, offset, {n - 1: 0xA5, 0: 0x5A})
        return a

    @rule(target=aligned, a=aligned, n=st.integers(0, 9000))
    def aligned_realloc(self, a, n):
        if a not in self.al or self.al[a][2]:  # (_aligned_offset_realloc is not exposed)
            return a
        size, alignment, offset, known = self.al.pop(a)
        b = self.p._aligned_realloc(a, n, alignment)
        if n == 0:  # frees it [78]
            assert b is None
            return a
        assert b % alignment == 0 and self.p._aligned_msize(b, alignment, 0) == n
        kept = {o: v for o, v in known.items() if o < n}
        self.check(b, kept)
        self.al[b] = (n, alignment, 0, kept)
        return b

    @rule(a=aligned)
    def aligned_free(self, a):
        if a not in self.al:
            return
        self.check(a, self.al[a][3])
        self.p._aligned_free(a)
        del self.al[a]

    # ---- after every step ----

    @invariant()
    def crt_matches_the_model(self):
        if self.p is None:
            return
        p = self.p
        end = 0
        for a in sorted(self.live):
            size, known = self.live[a]
            assert a >= end, f"block 0x{a:x} overlaps the previous one"
            end = a + max(size, 1)
            assert p._msize(a) == size
            self.check(a, known)
        for a, (size, alignment, offset, known) in self.al.items():
            assert p._aligned_msize(a, alignment, offset) == size
            self.check(a, known)
        if self.debug:
            assert p._CrtCheckMemory() is True
            assert all(p._CrtIsValidHeapPointer(a) for a in self.live)
            return
        heap = p.GetProcessHeap()
        busy = {e.lpData: e.cbData for e in p.HeapWalk(heap) if e.wFlags & BUSY}
        want = {a: size for a, (size, _) in self.live.items()}
        for a, (size, alignment, offset, _) in self.al.items():
            base = int.from_bytes(p.read((a & ~(P - 1)) - P, P), "little")
            g, m = -offset & (P - 1), max(alignment, P) - 1
            want[base] = size + P + g + m  # the base block of fact 78
        assert busy == want
        assert all(p.HeapSize(heap, 0, a) == size for a, (size, _) in self.live.items())


CrtModel.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_crt_model = CrtModel.TestCase
