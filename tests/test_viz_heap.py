"""pyalloc.viz for the heap layer, checked against HeapWalk and Heap.stats(): the heap map's
rectangles (extent, category, colour) and the front end's buckets, the heap band of the
allocation anatomy, fragmentation samples (Sampler against the statistics, replay against
hand-made traces and real ones), the animation, the live view and the reprs. No pyplot:
plain Figures, rendered with Agg, and few renderings (they are the slow part)."""
from __future__ import annotations

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import pyalloc as pa  # noqa: E402
from pyalloc import TraceEvent, viz  # noqa: E402
from conftest import lfh_spare_entry  # noqa: E402

K64 = 0x10000
PAGE = 0x1000
BUSY, FREE = pa.PROCESS_HEAP_ENTRY_BUSY, 0
LFH_CATS = {"LFH busy", "LFH free"}


def same_colour(patch, colour):
    return patch.get_facecolor() == pytest.approx(to_rgba(colour))


def block_entries(p, heap):
    """HeapWalk's blocks (not regions, not uncommitted ranges)."""
    return [e for e in p.HeapWalk(heap)
            if not e.wFlags & (pa.PROCESS_HEAP_REGION | pa.PROCESS_HEAP_UNCOMMITTED_RANGE)]


@pytest.fixture
def proc():
    with pa.Process(address_space=1 << 32) as p:
        yield p


@pytest.fixture
def mixed(proc):
    """A heap with the LFH serving 40-byte requests (60 of them, every third freed; the
    first 17 came from the back end, before the bucket was activated), back-end
    blocks of assorted sizes with holes, and a 2 MiB block in its own reservation."""
    p = proc
    h = p.HeapCreate(0, 0, 0)
    small = [p.HeapAlloc(h, 0, 40) for _ in range(60)]
    for x in small[::3]:
        p.HeapFree(h, 0, x)
    sizes = [100, 200, 3000, 24, 700, 5000, 1, 0]
    medium = [p.HeapAlloc(h, 0, n) for n in sizes * 2]
    for x in medium[1::2]:
        p.HeapFree(h, 0, x)
    big = p.HeapAlloc(h, 0, 2 << 20)
    return p, h, small, medium, big


# --- heap_layout ---------------------------------------------------------------------------


def test_heap_layout_tiles_every_reservation_and_lists_every_walked_block(mixed):
    p, h, *_ = mixed
    layout = viz.heap_layout(h)
    assert layout.handle == int(h)
    kinds = [s.kind for s in layout.segments]
    assert kinds[0] == "back end" and "LFH" in kinds and kinds[-1] == "large block"
    for seg in layout.segments:
        assert seg.blocks[0].start == seg.base and seg.blocks[-1].end == seg.end
        for a, b in zip(seg.blocks, seg.blocks[1:]):
            assert a.end == b.start
        assert all(b.category in viz.BLOCK_PALETTE for b in seg.blocks)
        cats = {b.category for b in seg.blocks}
        if seg.kind == "LFH":  # free space of no bucket: only whole chunks kept committed
            assert "Busy block" not in cats
            assert all(b.start % 0x10000 == 0 and b.end % K64 == 0
                       for b in seg.blocks if b.category == "Free block")
        else:
            assert not cats & LFH_CATS
    by_user = {b.user: (seg, b) for seg in layout.segments for b in seg.blocks if b.user}
    entries = block_entries(p, h)
    assert len(by_user) == len(entries)
    for e in entries:
        seg, b = by_user[e.lpData]
        assert b.entry == e and b.size == e.cbData
        busy = bool(e.wFlags & BUSY)
        if seg.kind == "LFH" and lfh_spare_entry(e):
            assert b.category == "Free block" and b.end - b.start == e.cbData + e.cbOverhead
        elif seg.kind == "LFH":  # a slot: header, then cbData + cbOverhead - 16 bytes
            assert b.category == ("LFH busy" if busy else "LFH free")
            assert (b.start, b.end) == (e.lpData - 16, e.lpData - 16 + e.cbData + e.cbOverhead)
        elif seg.kind == "back end":
            assert b.category == ("Busy block" if busy else "Free block")
            assert b.start == e.lpData - 16
            if busy:  # cbOverhead: the bytes past the request, header excluded
                assert b.end == e.lpData + e.cbData + e.cbOverhead
            else:  # cbOverhead: the free-list links, in the block
                assert b.end == e.lpData + e.cbData + 16 and e.cbOverhead == 32
        else:
            assert b.category == "Busy block" and e.iRegionIndex == 64
            assert seg.base == p.VirtualQuery(e.lpData).AllocationBase == e.lpData - 64
    # the uncommitted ranges are HeapWalk's, to the byte
    ranges = [(e.lpData, e.lpData + e.cbData) for e in p.HeapWalk(h)
              if e.wFlags & pa.PROCESS_HEAP_UNCOMMITTED_RANGE]
    drawn = [(b.start, b.end) for b in layout.blocks if b.category == "Uncommitted"]
    assert set(ranges) <= set(drawn)
    for start, end in drawn:
        if (start, end) not in ranges:  # a large block's reserved tail
            assert p.VirtualQuery(start).State == pa.MEM_RESERVE
    # the walk adds up to the heap's own statistics
    stats = h.stats()
    totals = layout.totals()
    for key in ("busy_blocks", "busy_bytes", "free_blocks", "free_bytes", "largest_free",
                "spare_committed", "committed", "reserved"):
        assert totals[key] == stats[key], key
    assert layout.stats == stats


def test_heap_layout_finds_the_block_at_an_address(mixed):
    p, h, small, medium, big = mixed
    layout = viz.heap_layout(h)
    seg, b = layout.block_at(small[-1] + 5)  # the first 17 came from the back end
    assert (seg.kind, b.category, b.user, b.size) == ("LFH", "LFH busy", small[-1], 40)
    assert layout.block_at(small[-1] - 16)[1] is b  # its header
    seg, b = layout.block_at(small[1])
    assert (seg.kind, b.category, b.size) == ("back end", "Busy block", 40)
    seg, b = layout.block_at(medium[0])
    assert (seg.kind, b.category, b.size) == ("back end", "Busy block", 100)
    assert layout.block_at(medium[1])[1].category == "Free block"
    assert layout.block_at(int(h))[1].category == "Overhead"  # the heap's descriptor
    assert layout.block_at(big + 100)[0].kind == "large block"
    assert layout.block_at(0x1000) is None


def test_process_heaps_finds_heaps_without_creating_the_process_heap(proc):
    p = proc
    assert viz.process_heaps(p) == []
    h = p.HeapCreate(0, 0, 0)
    p.HeapAlloc(h, 0, 2 << 20)  # a reservation of its own: heap memory, not a heap
    regions = p.regions()
    p.SetLastError(1234)
    assert viz.process_heaps(p) == [int(h)]
    assert p.GetLastError() == 1234 and p.regions() == regions
    assert viz.process_heaps(p) == [int(h)]  # still no process heap
    ph = p.GetProcessHeap()
    assert sorted(viz.process_heaps(p)) == sorted([int(h), int(ph)])


def test_lfh_buckets_are_the_heaps_size_classes(proc):
    assert [viz.lfh_bucket(n) for n in (0, 1, 16, 17, 1024, 1025, 2048, 2049, 16368)] == \
        [0, 0, 0, 1, 63, 64, 79, 80, 127]
    for b in range(128):
        size = viz.lfh_bucket_size(b)
        assert viz.lfh_bucket(size) == b
        if b < 127:
            assert viz.lfh_bucket(size + 1) == b + 1
    p = proc
    h = p.HeapCreate(0, 0, 0)
    for n in (24, 700, 3000):
        for _ in range(20):
            p.HeapAlloc(h, 0, n)
        assert h.stats()["bucket_busy"][viz.lfh_bucket(n)] > 0


# --- heap_map and heap_buckets ---------------------------------------------------------------


def check_heap_map(p, h, fig):
    ax = fig.axes[0]
    layout = fig.pyalloc_layout
    drawn = fig.pyalloc_drawn
    assert drawn and set(d.patch for d in drawn) <= set(ax.patches)
    rows = {}
    for d in drawn:
        assert isinstance(d.region, tuple) and d.region
        assert all(b.category == d.category for b in d.region)
        assert (d.start, d.end) == (d.region[0].start, d.region[-1].end)
        assert same_colour(d.patch, viz.BLOCK_PALETTE[d.category])
        assert d.patch.get_x() == d.start - d.row_base
        assert d.patch.get_width() == d.end - d.start
        assert d.patch.get_gid() == f"{d.category}@{d.start:#x}-{d.end:#x}"
        if d.category == "Uncommitted":
            assert d.patch.get_hatch() and p.VirtualQuery(d.start).State == pa.MEM_RESERVE
        else:
            assert d.patch.get_hatch() is None
        rows.setdefault(d.row_base, []).append(d)
    # one row per reservation, tiled by the rectangles; the rows in the layout's order
    assert list(rows) == [s.base for s in layout.segments]
    y = [round(ds[0].patch.get_y(), 6) for ds in rows.values()]
    assert y == sorted(y) and len(set(y)) == len(y)
    for seg in layout.segments:
        ds = rows[seg.base]
        assert ds[0].start == seg.base and ds[-1].end == seg.end
        for a, b in zip(ds, ds[1:]):
            assert a.end == b.start and a.category != b.category  # runs are maximal
        assert [b for d in ds for b in d.region] == seg.blocks
    # every block HeapWalk lists is in exactly one rectangle, in its category
    where = {b.user: d for d in drawn for b in d.region if b.user}
    for e in block_entries(p, h):
        d = where[e.lpData]
        assert d.start <= e.lpData < d.end
        lfh = layout.block_at(e.lpData)[0].kind == "LFH" and not lfh_spare_entry(e)
        busy = bool(e.wFlags & BUSY)
        expect = {(True, True): "LFH busy", (True, False): "LFH free",
                  (False, True): "Busy block", (False, False): "Free block"}[lfh, busy]
        assert d.category == expect
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [c for c in viz.BLOCK_PALETTE if c in {d.category for d in drawn}]
    for handle, label in zip(ax.get_legend().legend_handles, labels):
        assert same_colour(handle, viz.BLOCK_PALETTE[label])
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    for seg, tick in zip(layout.segments, ticks):
        assert (seg.kind.split()[0] in tick) or (seg.kind == "page heap" and "page" in tick)
    return drawn


def test_heap_map_draws_heapwalk(mixed):
    p, h, *_ = mixed
    fig = viz.heap_map(h)
    drawn = check_heap_map(p, h, fig)
    cats = {d.category for d in drawn}
    assert {"Busy block", "Free block", "LFH busy", "LFH free", "Overhead",
            "Uncommitted"} <= cats
    ax = fig.axes[0]
    # the scale: the segments' committed parts and a stub; the large block is cut off
    width = ax.get_xlim()[1]
    segs = [s for s in fig.pyalloc_layout.segments if s.region_index >= 0]
    assert max(s.committed_end - s.base for s in segs) <= width < max(s.end - s.base
                                                                       for s in segs)
    assert any(t.get_text().endswith("more \u2192") for t in ax.texts)
    stats = h.stats()
    title = ax.get_title(loc="left")
    assert f"{stats['busy_blocks']} busy blocks" in title
    assert f"{stats['free_blocks']} free" in title
    viz.to_png(fig)


def test_heap_map_of_a_back_end_heap_has_no_front_end(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0, lfh=False)
    xs = [p.HeapAlloc(h, 0, 40) for _ in range(100)]
    for x in xs[::2]:
        p.HeapFree(h, 0, x)
    fig = viz.heap_map(h)
    drawn = check_heap_map(p, h, fig)
    assert not {d.category for d in drawn} & LFH_CATS
    assert [s.kind for s in fig.pyalloc_layout.segments] == ["back end"]
    # alternating busy and free blocks: one rectangle each, in address order
    runs = [d.category for d in drawn if d.category in ("Busy block", "Free block")]
    assert runs.count("Free block") >= 49
    fig = viz.heap_buckets(h)
    assert fig.pyalloc_buckets == [] and "serves no bucket" in fig.axes[0].texts[0].get_text()


def test_heap_map_of_a_page_heap(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    b = p.HeapAlloc(h, 0, 32)
    fig = viz.heap_map(h)
    check_heap_map(p, h, fig)
    seg = fig.pyalloc_layout.segments[-1]
    assert seg.kind == "page heap"
    assert [(x.category, x.end - x.start) for x in seg.blocks] == [
        ("Overhead", PAGE), ("Padding", PAGE - 32), ("Busy block", 32), ("Uncommitted", PAGE)]
    assert seg.blocks[2].user == b and (b + 32) % PAGE == 0


def test_heap_buckets_show_the_front_ends_occupancy(mixed):
    p, h, *_ = mixed
    for n in (700, 3000):
        for _ in range(20):
            p.HeapAlloc(h, 0, n)
    stats = h.stats()
    fig = viz.heap_buckets(h)
    usage = fig.pyalloc_buckets
    assert usage == viz.bucket_usage(h)
    assert [u["bucket"] for u in usage] == [k for k, n in enumerate(stats["bucket_busy"]) if n]
    slots = {}
    for b in viz.heap_layout(h).blocks:
        if b.category in LFH_CATS:
            k = viz.lfh_bucket(b.end - b.start - 16)
            slots[k] = slots.get(k, 0) + 1
            if b.category == "LFH busy":
                assert b.size <= viz.lfh_bucket_size(k)
    for u in usage:
        assert u["busy"] == stats["bucket_busy"][u["bucket"]] == u["walk_busy"]
        assert u["slots"] == slots[u["bucket"]] and u["size"] == viz.lfh_bucket_size(u["bucket"])
        full, busy = fig.pyalloc_bars[u["bucket"]]
        assert full.get_height() == 100
        assert busy.get_height() == pytest.approx(100 * u["busy"] / u["slots"])
        assert same_colour(busy, viz.BLOCK_PALETTE["LFH busy"])
        assert same_colour(full, viz.BLOCK_PALETTE["LFH free"])
    # the 40-byte requests after the 17th, less every third one freed
    lfh_live = len([i for i in range(17, 60) if i % 3])
    assert usage[0] == {"bucket": 2, "size": 48, "slots": usage[0]["slots"], "busy": lfh_live,
                        "walk_busy": lfh_live}
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [f"{u['busy']}/{u['slots']}" for u in usage] == texts
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == \
        ["\u226448 B", "\u2264704 B", "\u22643 KiB"]
    assert f"{stats['lfh_active']} of 128 buckets active" in fig.axes[0].get_title(loc="left")


# --- the heap in the allocation anatomy ----------------------------------------------------


def heap_band(fig):
    return [d for d in fig.pyalloc_drawn if d.category in viz.BLOCK_PALETTE]


def test_anatomy_of_an_lfh_block_magnifies_header_bytes_and_padding(mixed):
    p, h, small, *_ = mixed
    x = small[-1]  # the LFH's (the first 17 came from the back end)
    fig = viz.allocation_anatomy(p, x + 3)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["VirtualAlloc\n(layer 2)", "Heap\n(layer 3)", "64 KiB slots"]
    band = heap_band(fig)
    assert [(d.start, d.end, d.category, d.region.label) for d in band] == [
        (x - 16, x, "Overhead", "header: 16 B"),
        (x, x + 40, "LFH busy", "user bytes: 40 B"),
        (x + 40, x + 48, "Padding", "to 16: 8 B")]
    assert x % 16 == 0
    # the VirtualAlloc band is unchanged: the heap's segment, in the Heap kind
    layer2 = [d for d in fig.pyalloc_drawn if d not in band]
    assert {d.category for d in layer2} == {"Heap"}
    assert layer2[0].start == p.VirtualQuery(x).AllocationBase
    # the sliver is magnified in an inset, to the byte
    (main,) = fig.axes
    (inset,) = main.child_axes
    assert inset.get_xlim() == (x - 16 - 16 - layer2[0].start, x + 48 + 16 - layer2[0].start)
    spans = [(round(r.get_x()), round(r.get_x() + r.get_width())) for r in inset.patches]
    base = layer2[0].start
    assert spans == [(x - 16 - base, x - base), (x - base, x + 40 - base),
                     (x + 40 - base, x + 48 - base)]
    texts = [t.get_text() for t in inset.texts]
    assert "user bytes:\n40 B" in texts and "header:\n16 B" in texts
    assert inset.get_xlabel().endswith(f"\u25b2 {x + 3:#x}")  # the address, marked
    labels = [t.get_text() for t in main.get_legend().get_texts()]
    assert labels == ["Heap", "LFH busy", "Overhead", "Padding", "reserved part"]
    viz.to_png(fig)


def test_anatomy_of_back_end_blocks(mixed):
    p, h, _, medium, _ = mixed
    a = medium[0]  # 100 bytes: 12 bytes of padding to 16
    band = heap_band(viz.allocation_anatomy(p, a))
    assert [(d.end - d.start, d.category) for d in band] == \
        [(16, "Overhead"), (100, "Busy block"), (12, "Padding")]
    e = next(e for e in block_entries(p, h) if e.lpData == a)
    assert band[-1].end == a + e.cbData + e.cbOverhead
    one = medium[6]  # a 1-byte request still occupies a whole granule
    band = heap_band(viz.allocation_anatomy(p, one))
    assert [(d.end - d.start, d.category) for d in band[:3]] == \
        [(16, "Overhead"), (1, "Busy block"), (15, "Padding")]
    free = medium[1]
    band = heap_band(viz.allocation_anatomy(p, free))
    assert [d.category for d in band] == ["Overhead", "Free block"]


def test_anatomy_of_a_page_heap_block_shows_its_reservation(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0, debug=pa.PA_HEAP_DEBUG_PAGE_HEAP)
    b = p.HeapAlloc(h, 0, 24)
    fig = viz.allocation_anatomy(p, b)
    band = heap_band(fig)
    assert [(d.category, d.end - d.start) for d in band] == [
        ("Overhead", PAGE), ("Padding", PAGE - 32), ("Busy block", 24), ("Padding", 8),
        ("Uncommitted", PAGE)]
    assert not fig.axes[0].child_axes  # not a sliver: no inset
    layer2 = [d for d in fig.pyalloc_drawn if d not in band]
    assert [d.category for d in layer2] == ["Heap", "Heap", "Unusable"]


def test_anatomy_of_memory_that_is_not_a_heaps_has_no_heap_band(proc):
    p = proc
    a = p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    p.HeapCreate(0, 0, 0)
    fig = viz.allocation_anatomy(p, a)
    assert not heap_band(fig) and not fig.axes[0].child_axes


# --- fragmentation: Sampler, replay, the plot ----------------------------------------------


def test_sampler_samples_the_heaps_statistics(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0, lfh=False)
    s = viz.Sampler(h)
    ptrs = []
    for i in range(40):
        ptrs.append(p.HeapAlloc(h, 0, 64 + 48 * (i % 5)))
        sample = s.sample("HeapAlloc")
        stats = h.stats()
        assert sample == viz.Sample(i, "HeapAlloc", stats["busy_bytes"], stats["committed"],
                                    stats["reserved"], stats["free_bytes"],
                                    stats["largest_free"], 0, stats["busy_blocks"])
        assert sample.overhead == stats["committed"] - stats["busy_bytes"] - stats["free_bytes"]
    s.run([("free", lambda x=x: p.HeapFree(h, 0, x)) for x in ptrs[::2]])
    assert len(s) == 60 and [x.label for x in s.samples[40:]] == ["free"] * 20
    last = s.samples[-1]
    assert last.blocks == 20 and last.free >= sum(64 + 48 * (i % 5) for i in range(0, 40, 2))
    assert last.external_fragmentation == pytest.approx(1 - last.largest_free / last.free)
    assert 0 < last.external_fragmentation < 1
    empty = viz.Sample(0, "", 0, 0, 0, 0, 0, 0)
    assert empty.external_fragmentation == 0.0 and empty.overhead == 0


def test_sampler_of_a_process_samples_its_address_space(proc):
    p = proc
    s = viz.Sampler(p)
    a = p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    sample = s.sample("VirtualAlloc")
    stats = p.stats()
    free = [r.size for r in p.regions() if r.state == pa.MEM_FREE and not r.unusable]
    assert sample == viz.Sample(0, "VirtualAlloc", stats["committed"], stats["committed"],
                                stats["reserved"], sum(free), max(free), K64 - PAGE, 1)
    p.VirtualFree(a, 0, pa.MEM_RELEASE)
    assert s.sample().unusable == 0


def ev(layer, op, address, size=0, extra=0, result=0, flags=0):
    return TraceEvent(0, 0, layer, op, address, size, flags, extra, result)


def test_replay_folds_hand_made_events_exactly():
    B = 0x7F0000000000
    events = [
        ev(1, 1, B, 0x19000),                # reserve 100 KiB -> 28 KiB slot tail
        ev(1, 2, B, 0x2000),                 # commit 2 pages
        ev(1, 2, B + 0x1000, 0x2000),        # commit overlapping: one more page
        ev(1, 4, B + 0x20000, 0, result=-1073741664),  # a failed release: skipped
        ev(1, 3, B, 0x1000),                 # decommit the first page
        ev(1, 1, B + 0x20000, K64),          # a second reservation...
        ev(1, 2, B + 0x20000, PAGE),
        ev(3, 32, B + 0x20000, K64, extra=B + 0x20000, result=1),  # ...is a heap
        ev(3, 34, B + 0x20100, 40, extra=B + 0x20000, result=1),   # HeapAlloc(40)
        ev(3, 34, B + 0x20200, 100, extra=B + 0x20000, result=1),  # HeapAlloc(100)
        ev(3, 34, 0, 1 << 40, extra=B + 0x20000, result=0),        # failed: skipped
        ev(3, 35, B + 0x20100, 200, extra=B + 0x20000, result=B + 0x20400),  # ReAlloc moves
        ev(3, 36, B + 0x20200, extra=B + 0x20000, result=1),       # HeapFree
        ev(3, 36, B + 0x20999, extra=B + 0x20000, result=0),       # failed free: skipped
        ev(1, 4, B, 0x19000),                # release the first
        ev(3, 33, B + 0x20000, extra=B + 0x20000, result=1),       # HeapDestroy
    ]
    samples = viz.replay(events)
    got = [(s.label, s.live, s.committed, s.reserved, s.free, s.largest_free, s.unusable,
            s.blocks) for s in samples]
    h1 = B + 0x21000  # the end of the heap's committed page
    floor = B + 0x200F0  # the lowest block's header: below it, the heap's own structures
    assert got == [
        ("mm.reserve", 0, 0, 0x19000, 0, 0, 0x7000, 1),
        ("mm.commit", 0x2000, 0x2000, 0x19000, 0, 0, 0x7000, 1),
        ("mm.commit", 0x3000, 0x3000, 0x19000, 0, 0, 0x7000, 1),
        ("mm.decommit", 0x2000, 0x2000, 0x19000, 0, 0, 0x7000, 1),
        ("mm.reserve", 0x2000, 0x2000, 0x29000, 0, 0, 0x7000, 2),
        ("mm.commit", 0x3000, 0x3000, 0x29000, 0, 0, 0x7000, 2),
        # from the first heap event on: live = the blocks' bytes, free = the heap's
        # committed bytes outside the blocks' footprints (16-byte header, bytes to 16)
        ("heap.HeapCreate", 0, 0x3000, 0x29000, PAGE, PAGE - 16, 0x7000, 0),
        ("heap.HeapAlloc", 40, 0x3000, 0x29000, h1 - (B + 0x20130),
         h1 - (B + 0x20130) - 16, 0x7000, 1),
        ("heap.HeapAlloc", 140, 0x3000, 0x29000, 0xC0 + h1 - (B + 0x20270),
         h1 - (B + 0x20270) - 16, 0x7000, 2),
        ("heap.HeapReAlloc", 300, 0x3000, 0x29000, 0x100 + 0x180 + h1 - (B + 0x204D0),
         h1 - (B + 0x204D0) - 16, 0x7000, 2),
        ("heap.HeapFree", 200, 0x3000, 0x29000, 0x300 + h1 - (B + 0x204D0),
         h1 - (B + 0x204D0) - 16, 0x7000, 1),
        ("mm.release", 200, 0x1000, 0x10000, 0x300 + h1 - (B + 0x204D0),
         h1 - (B + 0x204D0) - 16, 0, 1),
        ("heap.HeapDestroy", 0, 0x1000, 0x10000, h1 - floor, h1 - floor - 16, 0, 0),
    ]
    assert [s.step for s in samples] == list(range(len(samples)))
    assert viz.replay(events) == samples  # pure


def test_replay_of_a_real_trace_ends_where_the_heap_is(proc):
    p = proc
    with p.trace() as events:
        h = p.HeapCreate(0, 0, 0, lfh=False)
        xs = [p.HeapAlloc(h, 0, 100 + 16 * (i % 9)) for i in range(200)]
        for x in xs[::2]:
            p.HeapFree(h, 0, x)
        y = p.HeapReAlloc(h, 0, xs[1], 5000)
        big = p.HeapAlloc(h, 0, 2 << 20)  # a reservation of its own
        a = p.VirtualAlloc(None, 100000, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    assert events.lost == 0 and y and a
    samples = viz.replay(events)
    last, stats, pstats = samples[-1], h.stats(), p.stats()
    assert (last.live, last.blocks) == (stats["busy_bytes"], stats["busy_blocks"])
    assert (last.committed, last.reserved) == (pstats["committed"], pstats["reserved"])
    assert last.unusable == sum(r.size for r in p.regions() if r.unusable)
    # replay's free space is the heap's free blocks, plus what the events cannot show: the
    # bytes a busy block holds past its request rounded up to 16, each segment's end
    # sentinel, and the large block's committed tail
    unseen = 0
    for seg in viz.heap_layout(h).segments:
        unseen += 16 if seg.kind == "back end" else 0
        for b in seg.blocks:
            if b.category == "Busy block":
                unseen += b.end - (b.user + -(-max(b.size, 1) // 16) * 16)
            elif b.category == "Padding":
                unseen += b.end - b.start
    assert last.free == stats["free_bytes"] + unseen
    assert last.largest_free - stats["largest_free"] in (0, 16)  # (a sentinel next to it)
    heap_events = [e for e in events if e.layer == 3]
    assert len(samples) == len([e for e in events if e.layer == 1]) + len(heap_events)


def test_fragmentation_draws_the_samples(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0, lfh=False)
    s = viz.Sampler(h)
    xs = []
    for i in range(30):
        xs.append(p.HeapAlloc(h, 0, 200)); s.sample("HeapAlloc")
    for x in xs[::2]:
        p.HeapFree(h, 0, x); s.sample("HeapFree")
    fig = viz.fragmentation(s)
    assert fig.pyalloc_samples == s.samples
    series = fig.pyalloc_series
    assert series["live"] == [x.live for x in s.samples]
    assert series["free"] == [x.free for x in s.samples]
    assert series["largest free"] == [x.largest_free for x in s.samples]
    assert series["external fragmentation"] == \
        [1 - x.largest_free / x.free if x.free else 0 for x in s.samples]
    ax, right = fig.axes
    # three stacked areas (live, overhead, free) that add up to the committed line
    areas = ax.collections
    assert len(areas) == 3
    for area, colour in zip(areas, ("Busy block", "Overhead", "Free block")):
        assert area.get_facecolor()[0] == pytest.approx(to_rgba(viz.BLOCK_PALETTE[colour]),
                                                        abs=0.11)
    top = areas[2].get_paths()[0].vertices[:, 1].max()
    assert top == max(x.committed for x in s.samples)
    committed, largest = ax.lines[:2]
    assert list(committed.get_ydata()) == [x.committed for x in s.samples] + \
        [s.samples[-1].committed]
    assert list(largest.get_ydata()[:-1]) == series["largest free"]
    (frag,) = right.lines
    assert list(frag.get_ydata()[:-1]) == \
        pytest.approx([100 * f for f in series["external fragmentation"]])
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert labels[:3] == ["live bytes", "overhead", "free bytes"]
    assert "external fragmentation" in labels[-1]
    last = s.samples[-1]
    assert f"external fragmentation {last.external_fragmentation:.0%}" in \
        ax.get_title(loc="left")
    # from a trace: replay's samples; from samples: themselves
    with p.trace() as events:
        p.HeapAlloc(h, 0, 5000)
    assert viz.fragmentation(events).pyalloc_samples == viz.replay(events)
    assert viz.fragmentation(s.samples[:3]).pyalloc_samples == s.samples[:3]
    with pytest.raises(ValueError):
        viz.fragmentation([])


# --- animate, live, show, reprs --------------------------------------------------------------


def test_animate_replays_a_workload_as_html(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0)
    ptrs = []
    steps = [("HeapAlloc 3000", lambda: ptrs.append(p.HeapAlloc(h, 0, 3000))),
             ("HeapAlloc 100", lambda: ptrs.append(p.HeapAlloc(h, 0, 100))),
             ("HeapFree", lambda: p.HeapFree(h, 0, ptrs[0]))]
    anim = viz.animate(h, steps)
    sampler = anim.pyalloc_sampler
    assert [s.label for s in sampler.samples] == ["start"] + [label for label, _ in steps]
    assert [f.totals()["busy_blocks"] for f in sampler.frames] == [0, 1, 2, 1]
    html = anim.to_jshtml()
    assert "<script" in html and html.count("data:image/png;base64") == 4
    fig = anim._fig
    assert fig.pyalloc_frame == 3
    assert fig.axes[0].get_title(loc="left").startswith("step 3/3: HeapFree")
    # a Sampler kept with frames animates too; one without them cannot
    s = viz.Sampler(p, frames=True)
    s.sample("start")
    s.run([lambda: p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE,
                                  pa.PAGE_READWRITE)])
    anim = viz.animate(s, timeline=False)
    assert anim.to_jshtml().count("data:image/png;base64") == 2
    with pytest.raises(ValueError, match="frames=True"):
        viz.animate(viz.Sampler(p))
    with pytest.raises(ValueError, match="steps"):
        viz.animate(h)


class FakeHandle:
    def __init__(self, obj):
        self.shown = [obj]

    def update(self, obj):
        self.shown.append(obj)


def test_live_view_redraws_as_allocations_happen(proc, monkeypatch):
    p = proc
    view = viz.live(p, every=0)
    assert view.redraws == 1 and view.update() == []  # nothing new: no redraw
    assert view.redraws == 1
    a = p.VirtualAlloc(None, 3 * PAGE, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    new = view.update()
    assert [e.op_name for e in new] == ["reserve", "commit"]
    assert view.redraws == 2
    drawn = view.figure.pyalloc_drawn
    assert any(d.start == a and d.category == "Private Data" for d in drawn)
    # throttled: events are read, the picture waits (force draws it)
    view.every = 3600
    p.VirtualFree(a, 0, pa.MEM_RELEASE)
    assert [e.op_name for e in view.update()] == ["release"] and view.redraws == 2
    view.update(force=True)
    assert view.redraws == 3 and not any(d.start == a and d.category == "Private Data"
                                         for d in view.figure.pyalloc_drawn)
    # in Jupyter: a display handle, updated with the new picture
    pytest.importorskip("IPython")
    import IPython.display
    handles = []

    def display(obj, display_id=False):
        assert display_id
        handles.append(FakeHandle(obj))
        return handles[-1]
    monkeypatch.setattr(IPython.display, "display", display)
    view.every = 0
    view._ipython_display_()
    p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
    view.update()
    (handle,) = handles
    assert len(handle.shown) == 2
    assert all(img.data.startswith(b"\x89PNG") for img in handle.shown)
    view.close()
    assert not view.trace._active and len(view.events) == 5


def test_live_view_of_a_heap_sees_blocks_inside_committed_memory(proc):
    p = proc
    h = p.HeapCreate(0, 0, 0)
    with viz.live(h, every=0) as view:
        before = view.figure.pyalloc_layout.totals()["busy_blocks"]
        x = p.HeapAlloc(h, 0, 100)  # no page is committed for it
        new = view.update()
        assert [e.op_name for e in new] == ["HeapAlloc"]
        layout = view.figure.pyalloc_layout
        assert layout.totals()["busy_blocks"] == before + 1
        assert layout.block_at(x)[1].category == "Busy block"
    assert not view.trace._active


def test_show_draws_whatever_it_is_given(mixed):
    p, h, *_ = mixed
    fig = viz.show(h)
    assert len(fig.axes) == 2 and fig.pyalloc_layout.handle == int(h) and fig.pyalloc_buckets
    assert len(viz.show(p.HeapCreate(0, 0, 0)).axes) == 1  # no front end yet: the map only
    assert viz.show(p).pyalloc_drawn[0].region in p.regions()
    s = viz.Sampler(h)
    s.sample()
    assert viz.show(s).pyalloc_samples == s.samples
    assert viz.show(viz.heap_layout(h)).pyalloc_layout.handle == int(h)


def test_every_new_function_draws_into_a_given_axes(mixed):
    p, h, small, *_ = mixed
    fig = Figure(figsize=(10, 12), layout="constrained")
    axes = fig.subplots(4, 1)
    s = viz.Sampler(h)
    s.sample()
    assert viz.heap_map(h, ax=axes[0]) is fig
    assert viz.heap_buckets(h, ax=axes[1]) is fig
    assert viz.fragmentation(s, ax=axes[2]) is fig
    assert viz.allocation_anatomy(p, small[1], ax=axes[3]) is fig
    viz.to_png(fig)


def test_process_repr_html_lists_the_heaps(mixed):
    p, h, *_ = mixed
    html = p._repr_html_()
    assert html.count("<caption>Heaps</caption>") == 1
    t = viz.heap_layout(h).totals()
    assert f"<td>{int(h):#x}</td>" in html
    assert f"<td>{t['busy_blocks']} (" in html
    with pa.Process(address_space=1 << 30) as q:
        assert "Heaps" not in q._repr_html_()
        assert viz.process_heaps(q) == []  # the repr created no process heap


# ---- layers 4 and 5 in allocation_anatomy ----------------------------------------------------


def _spans(fn, p, address):
    return [(s.start, s.end, s.category) for s in fn(p, address)]


def test_crt_anatomy_of_a_debug_block():
    p = pa.Process(crt_debug=True)
    d = p.malloc(40)
    user = d - 48  # the heap block starts with the 48-byte _CrtMemBlockHeader
    assert _spans(viz._crt_spans, p, d) == [
        (user, d - 4, "CRT header"), (d - 4, d, "No-man's land"),
        (d, d + 40, "Busy block"), (d + 40, d + 44, "No-man's land")]
    assert p.read(d - 4, 4) == b"\xfd" * 4 and p.read(d + 40, 4) == b"\xfd" * 4
    viz.allocation_anatomy(p, d)
    p.free(d)
    p.close()


def test_crt_anatomy_of_an_aligned_block(proc):
    p = proc
    a = p._aligned_malloc(100, 64)
    spans = viz._crt_spans(p, a)
    back = [s for s in spans if s.category == "Back-pointer"]
    assert len(back) == 1 and (back[0].start, back[0].end) == (a - 8, a)
    block = int.from_bytes(p.read(a - 8, 8), "little")
    assert spans[0].start == block and a % 64 == 0
    assert p.HeapSize(p.GetProcessHeap(), 0, block) >= 100
    assert viz._new_spans(p, a) is None
    p._aligned_free(a)


def test_new_anatomy_shows_the_array_cookie(proc):
    p = proc
    import ctypes

    class T(ctypes.Structure):
        _fields_ = [("x", ctypes.c_int)]

        def __pyalloc_destroy__(self):
            pass

    arr = p.new_array(T, 5)
    addr = ctypes.addressof(arr)
    assert _spans(viz._new_spans, p, addr) == [(addr - 8, addr, "Array cookie"),
                                              (addr, addr + 20, "Busy block")]
    assert int.from_bytes(p.read(addr - 8, 8), "little") == 5
    fig = viz.allocation_anatomy(p, addr)
    assert fig is not None
    p.delete_array(arr)
