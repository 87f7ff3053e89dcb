"""pyalloc.viz draws what VirtualQuery says: every rectangle's extent and colour, the
legend and the summary table are checked against real processes, not just that a figure
appears. No pyplot: the figures are plain Figures, rendered with Agg."""
from __future__ import annotations

import base64
import io
import os
import random
import subprocess
import sys

import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

import pyalloc as pa  # noqa: E402
from pyalloc import Region, viz  # noqa: E402
from pyalloc.textmap import format_map, format_size  # noqa: E402

K64 = 0x10000
PAGE = 0x1000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def demo():
    """A few allocations: 8 bytes; 1 MiB reserved with 3 pages committed, a guard page and
    a PAGE_NOACCESS page; 100000 bytes committed (two slots, a 28 KiB unusable tail)."""
    with pa.Process(address_space=1 << 32) as p:
        a = p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        b = p.VirtualAlloc(None, 1 << 20, pa.MEM_RESERVE, pa.PAGE_NOACCESS)
        p.VirtualAlloc(b, 3 * PAGE, pa.MEM_COMMIT, pa.PAGE_READWRITE)
        p.VirtualAlloc(b + 3 * PAGE, PAGE, pa.MEM_COMMIT, pa.PAGE_READWRITE | pa.PAGE_GUARD)
        p.VirtualAlloc(b + 5 * PAGE, PAGE, pa.MEM_COMMIT, pa.PAGE_NOACCESS)
        c = p.VirtualAlloc(None, 100000, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        yield p, a, b, c


@pytest.fixture
def many():
    """Hundreds of allocations of assorted sizes, a third of them released again."""
    rng = random.Random(7)
    with pa.Process(address_space=1 << 32) as p:
        ptrs = [p.VirtualAlloc(None, rng.choice([8, PAGE, 20000, K64, 200000]),
                               rng.choice([pa.MEM_COMMIT | pa.MEM_RESERVE, pa.MEM_RESERVE]),
                               pa.PAGE_READWRITE) for _ in range(300)]
        for x in ptrs[::3]:
            p.VirtualFree(x, 0, pa.MEM_RELEASE)
        yield p


@pytest.fixture
def big():
    """A 256 MiB reservation with 5 MiB committed in the middle, between two small ones:
    rows of whole reserved megabytes are elided."""
    with pa.Process(address_space=1 << 32) as p:
        p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        x = p.VirtualAlloc(None, 256 << 20, pa.MEM_RESERVE, pa.PAGE_READWRITE)
        p.VirtualAlloc(x + (100 << 20), 5 << 20, pa.MEM_COMMIT, pa.PAGE_READWRITE)
        p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        yield p, x


def same_colour(patch, colour):
    return patch.get_facecolor() == pytest.approx(to_rgba(colour))


def expected_hatch(category, reserved):
    if category == "Unusable":
        return "////"
    if reserved and category in ("Heap", "Mapped File", "Shareable"):
        return viz.RESERVED_HATCH
    return None


def expected_legend(drawn):
    categories = {d.category for d in drawn}
    hatched = any(d.patch.get_hatch() == viz.RESERVED_HATCH for d in drawn)
    return [c for c in viz.PALETTE if c in categories] + ["reserved part"] * hatched


def legend_labels(ax):
    legend = ax.get_legend()
    assert legend is not None, "no legend"
    return [t.get_text() for t in legend.get_texts()]


def check_map(p, fig, *, zoom=True):
    """The address-space map's rectangles against Process.regions() and VirtualQuery."""
    ax = fig.axes[0]
    drawn = fig.pyalloc_drawn
    regions = p.regions()
    assert drawn and set(d.patch for d in drawn) <= set(ax.patches)
    row_width = int(ax.get_xlim()[1])
    assert row_width % K64 == 0 and row_width & (row_width - 1) == 0  # a power of two
    for d in drawn:
        assert d.region in regions
        assert d.region.base <= d.start < d.end <= d.region.end
        assert d.category == viz.category(d.region)
        assert same_colour(d.patch, viz.PALETTE[d.category])
        assert d.patch.get_hatch() == expected_hatch(d.category,
                                                     d.region.state == pa.MEM_RESERVE)
        assert d.patch.get_gid() == f"{d.category}@{d.start:#x}-{d.end:#x}"
        assert d.row_base % row_width == 0
        if d.elided:  # one full row standing for whole rows of one region
            assert (d.patch.get_x(), d.patch.get_width()) == (0, row_width)
            assert (d.end - d.start) % row_width == 0 and d.end - d.start >= 2 * row_width
        else:  # to scale, at its offset in its row
            assert d.patch.get_x() == d.start - d.row_base
            assert d.patch.get_width() == d.end - d.start
            assert d.end <= d.row_base + row_width
        mbi = p.VirtualQuery(d.start)
        assert mbi.State == d.region.state
        if d.region.state != pa.MEM_FREE:
            assert mbi.AllocationBase == d.region.allocation_base
            assert mbi.Protect == d.region.protect
            assert mbi.BaseAddress <= d.start < mbi.BaseAddress + mbi.RegionSize
            assert (d.category == "Guard") == bool(mbi.Protect & pa.PAGE_GUARD)
    # the rectangles tile the view, in address order, without gaps or overlaps
    for d, e in zip(drawn, sorted(drawn, key=lambda d: d.start)):
        assert d is e
    for d, e in zip(drawn, drawn[1:]):
        assert d.end == e.start
    used = [r for r in regions if r.state != pa.MEM_FREE]
    if zoom and used:  # every allocation is in view
        assert drawn[0].start <= used[0].base and drawn[-1].end >= used[-1].end
    else:
        assert (drawn[0].start, drawn[-1].end) == (regions[0].base, regions[-1].end)
    assert legend_labels(ax) == expected_legend(drawn)
    for handle, label in zip(ax.get_legend().legend_handles, legend_labels(ax)):
        if label in viz.PALETTE:
            assert same_colour(handle, viz.PALETTE[label])
        else:
            assert handle.get_hatch() == viz.RESERVED_HATCH
    return drawn


def test_address_space_of_a_few_allocations_matches_virtualquery(demo):
    p, a, b, c = demo
    fig = viz.address_space(p)
    drawn = check_map(p, fig)
    ax = fig.axes[0]
    assert ax.get_xlim()[1] == 1 << 20  # 1.2 MiB of allocations: rows of 1 MiB
    # Rows start at multiples of 1 MiB, so 1.2 MiB from a 64 KiB-aligned base spans 2 or 3.
    row_bases = sorted({d.row_base for d in drawn})
    assert len(row_bases) in (2, 3) and all(b % (1 << 20) == 0 for b in row_bases)
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{b:#014x}" for b in row_bases]
    by_start = {d.start: d for d in drawn}
    assert by_start[a].category == "Private Data" and by_start[a].end == a + PAGE
    assert by_start[a + PAGE].category == "Unusable" and by_start[a + PAGE].end == a + K64
    assert by_start[b + 3 * PAGE].category == "Guard"
    assert by_start[b + 4 * PAGE].category == "Reserved"
    assert by_start[b + 5 * PAGE].category == "Private Data"  # committed PAGE_NOACCESS
    # (Free space around the allocations is drawn too, depending on where the process's range
    # falls in the rows; one CI run drew none, so it is not required here.)
    cats = {d.category for d in drawn}
    assert {"Unusable", "Reserved", "Private Data", "Guard"} <= cats <= {
        "Free", "Unusable", "Reserved", "Private Data", "Guard"}
    to_png(fig)


def test_address_space_of_hundreds_of_allocations_fits_in_rows(many):
    fig = viz.address_space(many)
    drawn = check_map(many, fig)
    rows = {d.row_base for d in drawn}
    assert 8 <= len(rows) <= 16
    assert sum(1 for d in drawn if d.category != "Free") > 300
    # the grid: one line per 64 KiB slot boundary inside each drawn row
    width = fig.axes[0].get_xlim()[1]
    (grid,) = fig.axes[0].collections
    xs = {seg[0][0] for seg in grid.get_segments()}
    assert xs <= set(range(K64, int(width), K64)) and len(xs) == width // K64 - 1
    to_png(fig)


def test_address_space_elides_whole_rows_of_one_region(big):
    p, x = big
    fig = viz.address_space(p)
    drawn = check_map(p, fig)
    elided = [d for d in drawn if d.elided]
    assert [d.category for d in elided] == ["Reserved", "Private Data", "Reserved"]
    assert all(d.region.allocation_base == x for d in elided)
    assert len(fig.axes[0].get_yticks()) <= 16


def test_address_space_unzoomed_shows_the_whole_space(big):
    p, _ = big
    fig = viz.address_space(p, zoom=False, grid=False)
    check_map(p, fig, zoom=False)
    assert not fig.axes[0].collections  # no slot grid


def test_address_space_of_an_empty_process_is_all_free():
    with pa.Process(address_space=1 << 30) as p:
        fig = viz.address_space(p)
        drawn = check_map(p, fig)
        assert {d.category for d in drawn} == {"Free"}


def test_one_slot_row_has_page_ticks():
    with pa.Process(address_space=1 << 30) as p:
        p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, pa.PAGE_READWRITE)
        fig = viz.address_space(p)
        check_map(p, fig)
        ax = fig.axes[0]
        assert ax.get_xlim() == (0, K64)
        ticks = [*ax.xaxis.get_minorticklocs(), *ax.xaxis.get_majorticklocs()]
        assert set(range(0, K64 + 1, PAGE)) <= {round(t) for t in ticks}  # every page


def fake_process(regions):
    class Fake:
        def regions(self):
            return list(regions)
    return Fake()


@pytest.fixture
def views(tmp_path):
    """A private page, a view of a file, a pagefile-backed SEC_RESERVE view with 32 KiB
    committed, and (where the binding has the heap) a heap with a few blocks."""
    path = tmp_path / "mapped.bin"
    path.write_bytes(b"m" * 0x5000)
    rw = pa.PAGE_READWRITE
    with pa.Process(address_space=1 << 32) as p, open(path, "r+b") as f, \
            p.CreateFileMapping(f, rw, 0) as hf, \
            p.CreateFileMapping(None, rw | pa.SEC_RESERVE, 0x30000) as hp:
        p.VirtualAlloc(None, 8, pa.MEM_COMMIT | pa.MEM_RESERVE, rw)
        fv = p.MapViewOfFile(hf, pa.FILE_MAP_READ, 0, 0)
        pv = p.MapViewOfFile(hp, pa.FILE_MAP_WRITE, 0, 0)
        p.VirtualAlloc(pv, 0x8000, pa.MEM_COMMIT, rw)
        heap = None
        if hasattr(p, "HeapCreate"):  # layer 3's binding
            heap = p.HeapCreate(0, 0, 0)
            for n in (100, 5000, 70000):
                p.HeapAlloc(heap, 0, n)
        yield p, fv, pv, heap
        p.UnmapViewOfFile(fv)
        p.UnmapViewOfFile(pv)


def test_views_and_heaps_are_drawn_in_their_kinds_colours(views):
    p, fv, pv, heap = views
    drawn = check_map(p, viz.address_space(p))
    by_start = {d.start: d for d in drawn}
    assert (by_start[fv].category, by_start[fv].end) == ("Mapped File", fv + 0x5000)
    assert by_start[fv + 0x5000].category == "Unusable"
    assert (by_start[pv].category, by_start[pv].patch.get_hatch()) == ("Shareable", None)
    assert (by_start[pv + 0x8000].category, by_start[pv + 0x8000].patch.get_hatch()) == \
        ("Shareable", viz.RESERVED_HATCH)
    if heap is not None:
        mine = [d for d in drawn if d.region.allocation_base == int(heap)]
        assert mine and {d.category for d in mine} == {"Heap"}
    fig = check_anatomy(p, pv + 0x20000)
    assert [(d.category, d.end - d.start, d.region.reserved) for d in fig.pyalloc_drawn] == \
        [("Shareable", 0x8000, False), ("Shareable", 0x28000, True)]
    assert fig.axes[0].get_title(loc="left").startswith(f"View at {pv:#x}")


def test_every_kind_has_its_colour():
    # Regions by hand, in VirtualQuery's shapes, so every kind is drawn whatever the
    # layers above can make yet.
    base = 0x7F0000000000
    rw, ro = pa.PAGE_READWRITE, pa.PAGE_READONLY
    rs = [Region(base, 4 * K64, pa.MEM_COMMIT, rw, pa.MEM_PRIVATE, base, rw, pa.OWNER_HEAP,
                 False),
          Region(base + 4 * K64, 2 * K64, pa.MEM_RESERVE, 0, pa.MEM_PRIVATE, base, rw,
                 pa.OWNER_HEAP, False),
          Region(base + 6 * K64, 3 * K64, pa.MEM_COMMIT, ro, pa.MEM_MAPPED, base + 6 * K64,
                 ro, pa.OWNER_APP, False),
          Region(base + 9 * K64, K64, pa.MEM_COMMIT, ro, pa.MEM_MAPPED, base + 9 * K64, ro,
                 pa.OWNER_APP, False, True),
          Region(base + 10 * K64, 1 << 30, pa.MEM_FREE, pa.PAGE_NOACCESS, 0, 0, 0, 0, False)]

    class Fake:
        def regions(self):
            return list(rs)
    fig = viz.address_space(Fake())
    kinds = [(d.category, d.start, d.end, d.patch.get_hatch()) for d in fig.pyalloc_drawn]
    assert kinds[:4] == [("Heap", rs[0].base, rs[0].end, None),
                         ("Heap", rs[1].base, rs[1].end, viz.RESERVED_HATCH),
                         ("Shareable", rs[2].base, rs[2].end, None),
                         ("Mapped File", rs[3].base, rs[3].end, None)]
    for d in fig.pyalloc_drawn:
        assert same_colour(d.patch, viz.PALETTE[d.category])
    assert legend_labels(fig.axes[0]) == ["Free", "Heap", "Mapped File", "Shareable",
                                          "reserved part"]
    summary = {row["kind"]: row for row in viz.region_summary(Fake())}
    assert summary["Heap"] == {"kind": "Heap", "size": 6 * K64, "committed": 4 * K64,
                               "blocks": 2, "largest": 4 * K64}
    assert summary["Shareable"]["committed"] == 3 * K64
    assert summary["Mapped File"]["blocks"] == 1


def test_palette_is_documented_and_distinct():
    assert set(viz.KINDS) | {"Guard"} == set(viz.PALETTE)
    assert len(set(viz.PALETTE.values())) == len(viz.PALETTE)
    for name, colour in viz.PALETTE.items():
        assert f"``{colour}``" in viz.__doc__ and name in viz.__doc__


# --- region_summary / region_table -----------------------------------------------------


def test_region_summary_adds_up_the_regions(many):
    summary = viz.region_summary(many)
    assert [row["kind"] for row in summary] == ["Total", *viz.KINDS]
    regions = many.regions()
    for row in summary[1:]:
        mine = [r for r in regions if r.kind == row["kind"]]
        assert row["size"] == sum(r.size for r in mine)
        assert row["committed"] == sum(r.size for r in mine if r.state == pa.MEM_COMMIT)
        assert row["blocks"] == len(mine)
        assert row["largest"] == max((r.size for r in mine), default=0)
    total = summary[0]
    used = [row for row in summary[1:] if row["kind"] != "Free"]
    for key in ("size", "committed", "blocks"):
        assert total[key] == sum(row[key] for row in used)
    stats = many.stats()
    assert total["committed"] == stats["committed"]
    by_kind = {row["kind"]: row for row in summary}
    assert total["size"] - by_kind["Unusable"]["size"] == stats["reserved"]
    assert sum(row["size"] for row in summary[1:]) == regions[-1].end - regions[0].base


def test_region_table_shows_the_summary(demo):
    p = demo[0]
    fig = viz.region_table(p)
    summary = fig.pyalloc_summary
    assert summary == viz.region_summary(p)
    (table,) = fig.axes[0].tables
    cells = table.get_celld()
    assert [cells[0, j].get_text().get_text() for j in range(5)] == \
        ["Type", "Size", "Committed", "Blocks", "Largest"]
    for i, row in enumerate(summary, start=1):
        text = [cells[i, j].get_text().get_text() for j in range(5)]
        if row["blocks"]:
            assert text == [row["kind"], format_size(row["size"]),
                            format_size(row["committed"]), str(row["blocks"]),
                            format_size(row["largest"])]
        else:
            assert text == [row["kind"], "", "", "", ""]
        if row["kind"] in viz.PALETTE:
            assert same_colour(cells[i, 0], viz.PALETTE[row["kind"]])
    by_kind = {row["kind"]: row for row in summary}
    # a's page; b's 3 pages, guard page and PAGE_NOACCESS page; c's 100000 bytes in pages
    assert by_kind["Private Data"]["committed"] == PAGE + 5 * PAGE + 0x19000
    assert by_kind["Heap"]["blocks"] == 0
    to_png(fig)


# --- allocation_anatomy ----------------------------------------------------------------


def check_anatomy(p, address):
    fig = viz.allocation_anatomy(p, address)
    ax = fig.axes[0]
    drawn = fig.pyalloc_drawn
    base = p.VirtualQuery(address).AllocationBase
    assert drawn[0].start == base and drawn[-1].end % K64 == 0
    assert ax.get_xlim() == (0, drawn[-1].end - base)
    for d, e in zip(drawn, drawn[1:]):
        assert d.end == e.start
    for d in drawn:
        assert d.patch.get_x() == d.start - base and d.patch.get_width() == d.end - d.start
        assert same_colour(d.patch, viz.PALETTE[d.category])
        mbi = p.VirtualQuery(d.start)
        if d.category == "Unusable":
            assert mbi.State == pa.MEM_FREE and d is drawn[-1] and d.end - d.start < K64
            continue
        assert (mbi.BaseAddress, mbi.RegionSize, mbi.AllocationBase) == \
            (d.start, d.end - d.start, base)
        assert d.region.reserved == (d.category == "Reserved" or
                                     d.patch.get_hatch() == viz.RESERVED_HATCH)
        assert d.patch.get_hatch() == expected_hatch(d.category, d.region.reserved)
        if d.region.reserved:
            assert mbi.State == pa.MEM_RESERVE
        else:
            assert mbi.State == pa.MEM_COMMIT
            assert (d.category == "Guard") == bool(mbi.Protect & pa.PAGE_GUARD)
        assert d.region.label.startswith(format_size(d.end - d.start))
    assert legend_labels(ax) == expected_legend(drawn)
    return fig


def test_anatomy_of_eight_bytes_is_a_page_and_an_unusable_tail(demo):
    p, a, _, _ = demo
    fig = check_anatomy(p, a)
    assert [(d.category, d.end - d.start) for d in fig.pyalloc_drawn] == \
        [("Private Data", PAGE), ("Unusable", K64 - PAGE)]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["VirtualAlloc\n(layer 2)", "64 KiB slots"]
    assert "slot 0" in [t.get_text() for t in fig.axes[0].texts]


def test_anatomy_of_a_reservation_shows_commit_guard_and_reserve(demo):
    p, _, b, _ = demo
    fig = check_anatomy(p, b + 0x50000)  # any address inside the allocation
    assert [(d.category, d.end - d.start) for d in fig.pyalloc_drawn] == \
        [("Private Data", 3 * PAGE), ("Guard", PAGE), ("Reserved", PAGE),
         ("Private Data", PAGE), ("Reserved", (1 << 20) - 6 * PAGE)]
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [f"slot {k}" for k in range(16)] == [t for t in texts if t.startswith("slot")]
    assert "4 KiB PAGE_READWRITE + GUARD" in texts  # a callout: too narrow to hold it
    to_png(fig)


def test_anatomy_of_a_two_slot_allocation(demo):
    p, _, _, c = demo
    fig = check_anatomy(p, c)
    assert [(d.category, d.end - d.start) for d in fig.pyalloc_drawn] == \
        [("Private Data", 0x19000), ("Unusable", 2 * K64 - 0x19000)]


def test_anatomy_of_a_big_reservation(big):
    p, x = big
    fig = check_anatomy(p, x)
    assert [d.category for d in fig.pyalloc_drawn] == ["Reserved", "Private Data", "Reserved"]
    assert "4096 slots of 64 KiB" in [t.get_text() for t in fig.axes[0].texts]


def test_anatomy_refuses_addresses_outside_allocations(demo):
    p, a, _, _ = demo
    with pytest.raises(ValueError, match="unusable"):
        viz.allocation_anatomy(p, a + PAGE)
    with pytest.raises(ValueError, match="free"):
        viz.allocation_anatomy(p, p.regions()[-1].base)
    with pytest.raises(ValueError, match="outside"):
        viz.allocation_anatomy(p, 0x1000)


def test_anatomy_stacks_registered_layers(demo, monkeypatch):
    p, _, b, _ = demo
    monkeypatch.setattr(viz, "_LAYERS", list(viz._LAYERS))
    seen = []

    def toy(process, address):  # a higher layer that sees two blocks in the first page
        seen.append(address)
        if not b <= address < b + (1 << 20):
            return None
        return [viz.Span(b, b + 0x100, "Heap", "header"), viz.Span(b + 0x100, b + PAGE, "Free")]
    viz.register_anatomy_layer(3, "Toy heap", toy)
    fig = viz.allocation_anatomy(p, b)
    assert seen == [b]
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["VirtualAlloc\n(layer 2)", "Toy heap\n(layer 3)", "64 KiB slots"]
    toy_drawn = [d for d in fig.pyalloc_drawn if isinstance(d.region, viz.Span)
                 and d.region.label in ("header", "")]
    assert [(d.start, d.end, d.category) for d in toy_drawn] == \
        [(b, b + 0x100, "Heap"), (b + 0x100, b + PAGE, "Free")]
    layer2_y = fig.pyalloc_drawn[0].patch.get_y()
    assert all(d.patch.get_y() > layer2_y for d in toy_drawn)  # above layer 2
    # only the named layers; and a layer that does not own the address is left out
    assert len(viz.allocation_anatomy(p, b, layers=["VirtualAlloc"]).axes[0].get_yticks()) == 2
    a = demo[1]
    assert len(viz.allocation_anatomy(p, a).axes[0].get_yticks()) == 2


# --- axes, figures, reprs --------------------------------------------------------------


def to_png(fig):
    data = viz.to_png(fig)
    assert data.startswith(PNG_MAGIC)
    image = imread(io.BytesIO(data))
    assert image.shape[0] > 100 and image.shape[1] > 400
    return data


def test_every_function_draws_into_a_given_axes(demo):
    p, a, _, _ = demo
    fig = Figure(figsize=(10, 9), layout="constrained")
    axes = fig.subplots(3, 1)
    assert viz.address_space(p, ax=axes[0]) is fig
    assert viz.region_table(p, ax=axes[1]) is fig
    assert viz.allocation_anatomy(p, a, ax=axes[2]) is fig
    n_map = len(viz.address_space(p).pyalloc_drawn)
    assert len(fig.pyalloc_drawn) == n_map + 2  # the map's rectangles, then the anatomy's
    assert fig.pyalloc_summary == viz.region_summary(p)
    to_png(fig)
    root = Figure()
    sub = root.subfigures(1, 2)[0]
    assert viz.region_table(p, ax=sub.subplots()) is root  # the figure, not the subfigure


def test_figures_show_themselves_in_jupyter_without_pyplot(demo):
    fig = viz.address_space(demo[0])
    assert fig._repr_png_().startswith(PNG_MAGIC)
    assert "matplotlib.pyplot" not in sys.modules or fig.canvas.manager is None


def test_process_repr_png_is_the_map(demo):
    p = demo[0]
    data = p._repr_png_()
    assert data.startswith(PNG_MAGIC)
    assert imread(io.BytesIO(data)).shape[1] > 400


def test_process_repr_html_is_the_map_and_the_table(demo):
    p = demo[0]
    html = p._repr_html_()
    start = html.index('src="data:image/png;base64,') + len('src="data:image/png;base64,')
    png = base64.b64decode(html[start:html.index('"', start)])
    assert png.startswith(PNG_MAGIC)
    for row in viz.region_summary(p):
        assert f"<td>{row['kind']}</td>" in html
    assert f"<td>{format_size(viz.region_summary(p)[0]['committed'])}</td>" in html


def test_process_reprs_without_matplotlib_fall_back_to_the_text_map(demo, monkeypatch):
    p = demo[0]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    with pytest.raises(ImportError, match=r"pyalloc\[viz\]"):
        viz.address_space(p)
    assert p._repr_png_() is None
    html = p._repr_html_()
    assert html.startswith("<pre>") and html.endswith("</pre>")
    assert format_map(p).splitlines()[2].split()[0] in html


def test_closed_process_has_no_picture():
    p = pa.Process(address_space=1 << 30)
    p.close()
    assert p._repr_png_() is None and p._repr_html_() is None


def test_import_pyalloc_does_not_import_matplotlib():
    code = ("import sys, pyalloc, pyalloc.viz; p = pyalloc.Process(address_space=1 << 30); "
            "p.regions(); assert 'matplotlib' not in sys.modules, 'imported'")
    root = os.path.dirname(os.path.dirname(pa.__file__))  # the pyalloc under test
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [root, os.environ.get("PYTHONPATH")])))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
