"""The event trace: every layer records its operations, in order, into the process's ring."""
from __future__ import annotations

import pytest

import pyalloc as pa


def ops(events, layer):
    return [(e.op_name, e.address, e.size) for e in events if e.layer_name == layer]


def test_each_layer_records_its_calls_in_order():
    with pa.Process() as p:
        heap = p.GetProcessHeap()
        with p.trace() as events:
            v = p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
            p.VirtualFree(v, 0, pa.MEM_RELEASE)
            h = p.HeapAlloc(heap, 0, 24)
            p.HeapFree(heap, 0, h)
            m = p.malloc(100)
            m2 = p.realloc(m, 300)
            p.free(m2)
            n = p.operator_new(50)
            p.operator_delete(n)
        assert ops(events, "mm")[:3] == [("reserve", v, 0x1000), ("commit", v, 0x1000),
                                         ("release", v, 0x1000)]
        heap_ops = ops(events, "heap")
        assert ("HeapAlloc", h, 24) in heap_ops and heap_ops.index(("HeapAlloc", h, 24)) < \
            [o[0] for o in heap_ops].index("HeapFree")
        assert ops(events, "crt") == [("malloc", m, 100), ("realloc", m2, 300), ("free", m2, 0)]
        assert ops(events, "new") == [("operator new", n, 50), ("operator delete", n, 0)]
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        assert all(e.ok for e in events) and events.lost == 0


def test_failures_are_recorded_with_their_status():
    with pa.Process() as p:
        with p.trace() as events:
            try:
                p.VirtualFree(p.GetSystemInfo().lpMinimumApplicationAddress, 0, pa.MEM_RELEASE)
            except pa.WinError:
                pass
        (e,) = [e for e in events if e.op_name == "release"]
        assert not e.ok and e.result & 0xFFFFFFFF == 0xC00000A0  # STATUS_MEMORY_NOT_ALLOCATED


@pytest.mark.parametrize("capacity", [2**63 + 1, 2**64 - 1])
def test_a_ring_too_big_to_round_up_raises_memory_error(capacity):
    # Found by fuzzing: rounding such a capacity up to a power of two never ended.
    with pa.Process() as p:
        with pytest.raises(MemoryError):
            p._trace_start(capacity)


def test_nothing_is_recorded_outside_a_trace_and_a_small_ring_counts_what_it_lost():
    with pa.Process() as p:
        heap = p.GetProcessHeap()
        p.HeapFree(heap, 0, p.HeapAlloc(heap, 0, 10))
        with p.trace(capacity=16) as events:
            for _ in range(50):
                p.HeapFree(heap, 0, p.HeapAlloc(heap, 0, 10))
        # 100 heap events at least (the heap may also commit pages): the ring keeps the last 16
        assert len(events) == 16 and events.lost >= 100 - 16
        assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + 16))
        assert events[-1].op_name == "HeapFree"
        with p.trace() as later:
            pass
        assert list(later) == []
