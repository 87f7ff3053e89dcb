"""Pictures of a process's memory, for Jupyter: matplotlib figures drawn from real data.

::

    from pyalloc import viz
    viz.address_space(p)             # the address-space map, VMMap's colours and vocabulary
    viz.region_table(p)              # VMMap's summary table (viz.region_summary(p): as data)
    viz.allocation_anatomy(p, addr)  # one allocation to scale: slots, pages, guard, tail,
                                     # and the heap block at addr: header, bytes, padding
    viz.heap_map(heap)               # HeapWalk: busy/free blocks by segment, LFH slots
    viz.heap_buckets(heap)           # the low-fragmentation front end's buckets
    viz.fragmentation(s)             # over time, from a Sampler or a trace (viz.replay)
    viz.animate(heap, steps)         # a workload replayed: FuncAnimation (.to_jshtml())
    viz.live(heap)                   # a picture that update() redraws as memory changes
    viz.show(obj)                    # the picture of a Heap, Process, Sampler or trace

matplotlib is imported only inside these functions (``import pyalloc`` never imports it;
``pip install 'pyalloc[viz]'`` brings it). Every function takes ``ax=None`` (``None``: draw
on a new :class:`matplotlib.figure.Figure`, not one registered with pyplot, so nothing is
shown twice and nothing leaks) and returns the Figure. The figure keeps what it drew, so
tests and notebooks can check a picture against ``VirtualQuery``:

- ``fig.pyalloc_drawn``: a list of :class:`Drawn`, one per rectangle (address range,
  category, the :class:`~pyalloc.Region` it shows, the matplotlib patch); each patch's gid
  is ``"<category>@<start:#x>-<end:#x>"``;
- ``fig.pyalloc_summary``: :func:`region_table`'s rows;
- ``fig.pyalloc_layout`` (:func:`heap_map`), ``fig.pyalloc_buckets`` (:func:`heap_buckets`),
  ``fig.pyalloc_samples`` and ``fig.pyalloc_series`` (:func:`fragmentation`).

Palette
-------
:data:`PALETTE` maps a category to its colour. The categories are :attr:`Region.kind
<pyalloc.Region.kind>`'s (VMMap's vocabulary) plus ``"Guard"`` for committed
``PAGE_GUARD`` pages (a guard page is drawn as a guard page whatever its kind). The colours
are Okabe and Ito's colour-blind-safe set (Wong, *Nature Methods* 8:441, 2011), with greys
for the two kinds that hold nothing:

=============  ==========  ============================================================
category       colour      meaning
=============  ==========  ============================================================
Free           ``#F2F2F2`` near white: nobody's; a future allocation may land here
Unusable       ``#BBBBBB`` grey, hatched: free, but in the last 64 KiB slot of an
                           allocation, so no allocation can ever use it
Reserved       ``#56B4E9`` sky blue: address space only, no commit charge
Private Data   ``#0072B2`` blue: committed private memory (the dark twin of Reserved)
Heap           ``#D55E00`` vermillion: memory a heap owns (VMMap's heap is orange-red)
Mapped File    ``#009E73`` bluish green: a view of a file (MapViewOfFile)
Shareable      ``#CC79A7`` reddish purple: a view of pagefile-backed section memory
Guard          ``#E69F00`` orange: a committed page with ``PAGE_GUARD``
=============  ==========  ============================================================

The reserved (not committed) pages of a heap or a view keep their kind's colour, under
white dots (:data:`RESERVED_HATCH`): private reserved memory has a kind and colour of its
own, Reserved, as in VMMap.

Reserved and Private Data differ in lightness as well as hue, so they stay apart in grey
scale and for every kind of colour blindness; the greys are told apart by lightness and
Unusable's hatching.

Inside a heap
-------------
:data:`BLOCK_PALETTE` colours what the heap layer draws inside its own memory
(:func:`heap_map`, the heap band of :func:`allocation_anatomy`, :func:`fragmentation`).
All of that memory is Heap in the address-space map, so these pictures never show the
kinds whose colours some of them reuse (Private Data, Mapped File, Guard):

=============  ==========  ============================================================
category       colour      meaning
=============  ==========  ============================================================
Busy block     ``#0072B2`` blue: a busy block of the back end (or one with a
                           reservation of its own)
Free block     ``#F0E442`` yellow: a free back-end block, for a request of any size
LFH busy       ``#009E73`` bluish green: a busy slot of the low-fragmentation front end
LFH free       ``#7FCDB4`` light bluish green: a free slot, for its bucket's sizes only
Overhead       ``#555555`` dark grey: headers and the heap's own structures (segment
                           descriptors, the LFH's header chunk, subsegment headers)
Padding        ``#E69F00`` orange: bytes of a block past the request (rounding to 16, the
                           rest of a slot or page)
Uncommitted    ``#F7F7F7`` near white, grey dots: reserved pages of the heap
=============  ==========  ============================================================

Busy is dark and free is light at both ends, and the back end is blue and yellow where the
front end is green, so busy and free stay apart for every kind of colour blindness
(checked by simulating protan, deutan and tritan vision: the pairs that share a row differ
by at least 17 in CIELAB); a row holds back-end or front-end blocks, never both, and its
label says which (the free chunks an LFH segment keeps committed for its next subsegments
are free space of no bucket, drawn as a Free block).

Adding a layer to the anatomy
-----------------------------
:func:`allocation_anatomy` draws one band per layer that owns the address, lowest layer at
the bottom, on one address axis. A layer is a function ``spans(process, address)``
returning the :class:`Span` list it sees at that address (or ``None`` if the address is
not its), registered with :func:`register_anatomy_layer`; the VirtualAlloc layer (2) below
is the model, the heap layer (3) is another: the block at the address, magnified in an
inset when it is a sliver of its segment. Span categories are :data:`PALETTE` or
:data:`BLOCK_PALETTE` keys; a layer adding categories adds them to :data:`BLOCK_PALETTE`
(and to the table above).
"""
from __future__ import annotations

import base64
import bisect
import html
import io
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import _core
from .textmap import format_map, format_size
from .trace import LAYERS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from . import Process, Region

__all__ = [
    "PALETTE",
    "KINDS",
    "Drawn",
    "Span",
    "address_space",
    "region_summary",
    "region_table",
    "allocation_anatomy",
    "register_anatomy_layer",
    "category",
    "to_png",
    "BLOCK_PALETTE",
    "HeapBlock",
    "HeapSegment",
    "HeapLayout",
    "heap_layout",
    "process_heaps",
    "block_spans",
    "lfh_bucket",
    "lfh_bucket_size",
    "heap_map",
    "bucket_usage",
    "heap_buckets",
    "Sample",
    "Sampler",
    "replay",
    "samples_of",
    "fragmentation",
    "animate",
    "LiveView",
    "live",
    "show",
    "heaps_html",
]

PALETTE: dict[str, str] = {
    "Free": "#F2F2F2",
    "Unusable": "#BBBBBB",
    "Reserved": "#56B4E9",
    "Private Data": "#0072B2",
    "Heap": "#D55E00",
    "Mapped File": "#009E73",
    "Shareable": "#CC79A7",
    "Guard": "#E69F00",
}
"""Category -> colour (see the module docstring for the choice)."""

KINDS: tuple[str, ...] = ("Mapped File", "Shareable", "Heap", "Private Data", "Reserved",
                          "Unusable", "Free")
"""Every :attr:`Region.kind <pyalloc.Region.kind>`, in the order of VMMap's summary table."""

BLOCK_PALETTE: dict[str, str] = {
    "Busy block": "#0072B2",
    "Free block": "#F0E442",
    "LFH busy": "#009E73",
    "LFH free": "#7FCDB4",
    "Overhead": "#555555",
    "Padding": "#E69F00",
    "Uncommitted": "#F7F7F7",
}
"""Category -> colour for what the heap layer draws inside its memory (see the module
docstring); these categories never share a picture with the PALETTE colours they reuse."""

_HATCH = {"Unusable": "////", "Uncommitted": ".."}
_HATCH_COLOUR = {"Uncommitted": "#999999"}  # (others: white)
RESERVED_HATCH = "..."
"""The hatching of the reserved pages of a Heap, Mapped File or Shareable region."""
_RESERVED_LABEL = "reserved part"
_GRANULARITY = _core.ALLOCATION_GRANULARITY  # 64 KiB: one slot
_PAGE = _core.PAGE_SIZE


class Drawn(NamedTuple):
    """One rectangle a viz function drew. x is in bytes: the rectangle spans
    ``start - row_base .. end - row_base`` on its row, except an elided run of identical
    rows (``elided``), drawn as one full row standing for ``start .. end``."""

    start: int
    end: int
    category: str  # a PALETTE key
    region: Any  # the Region (or Span) it shows
    patch: Any  # the matplotlib Rectangle
    row_base: int = 0  # the address at x = 0 on its row
    elided: bool = False


class Span(NamedTuple):
    """What one layer sees at an address range, for :func:`allocation_anatomy`."""

    start: int
    end: int
    category: str  # a PALETTE key
    label: str = ""
    reserved: bool = False  # reserved pages (hatched, for kinds that are not Reserved)


# --- helpers ------------------------------------------------------------------------------


def _mpl() -> Any:
    """Imports matplotlib (ImportError with the fix if it is missing)."""
    try:
        import matplotlib
        import matplotlib.figure  # noqa: F401
        import matplotlib.patches  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised through repr_html's fallback
        raise ImportError("pyalloc.viz needs matplotlib: pip install 'pyalloc[viz]'") from e
    return matplotlib


_figure_class: Any = None


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    """The figure and axes to draw on: the caller's, or a new Figure, unknown to pyplot,
    that shows itself in Jupyter (as PNG) whether or not pyplot was ever imported."""
    global _figure_class
    _mpl()
    from matplotlib.figure import Figure as MplFigure

    if ax is not None:
        root: Any = ax.figure
        while not isinstance(root, MplFigure):  # an axes of a SubFigure
            root = root.figure
        return root, ax
    if _figure_class is None:

        class PyallocFigure(MplFigure):
            """A matplotlib Figure that Jupyter displays without pyplot's help."""

            def _repr_png_(self) -> bytes:
                return to_png(self)

        _figure_class = PyallocFigure
    fig = _figure_class(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _record(fig: Figure, name: str, items: list) -> None:
    existing = getattr(fig, name, None)
    if existing is None:
        setattr(fig, name, items)
    else:  # several pictures drawn on one figure
        existing.extend(items)


def _text_colour(colour: str) -> str:
    """Black or white, whichever reads better on colour (relative luminance)."""
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "black" if lum > 0.45 else "white"


def _text_style(cat: str) -> dict[str, Any]:
    """Text properties for a label on a rectangle of category cat."""
    # the box, in the rectangle's own colour, keeps grid lines and hatching off the text
    return {"color": _text_colour(_colour(cat)), "zorder": 4,
            "bbox": dict(boxstyle="round,pad=0.15", facecolor=_colour(cat), edgecolor="none")}


def _colour(cat: str) -> str:
    """The colour of a :data:`PALETTE` or :data:`BLOCK_PALETTE` category."""
    return PALETTE[cat] if cat in PALETTE else BLOCK_PALETTE[cat]


def _is_guard(r: Region) -> bool:
    return r.state == _core.MEM_COMMIT and bool(r.protect & _core.PAGE_GUARD)


def category(region: Region) -> str:
    """The :data:`PALETTE` key a region is drawn with: its kind, or ``"Guard"`` for
    committed ``PAGE_GUARD`` pages."""
    return "Guard" if _is_guard(region) else region.kind


def _hatch(cat: str, reserved: bool) -> str | None:
    """The hatching of a rectangle of category cat (reserved: its pages are reserved)."""
    if cat in _HATCH:
        return _HATCH[cat]
    return RESERVED_HATCH if reserved and cat in ("Heap", "Mapped File", "Shareable") else None


def _rectangle(xy: tuple[float, float], width: float, height: float, cat: str,
               reserved: bool, start: int, end: int) -> Any:
    mpl = _mpl()
    hatch = _hatch(cat, reserved)
    return mpl.patches.Rectangle(xy, width, height, facecolor=_colour(cat),
                                 edgecolor=_HATCH_COLOUR.get(cat, "white") if hatch
                                 else "none", hatch=hatch,
                                 linewidth=0, gid=f"{cat}@{start:#x}-{end:#x}")


def _legend(ax: Axes, categories: list[str], hatched: bool = False, **kw: Any) -> None:
    """A legend of the categories (in PALETTE order), and of the reserved-part hatching."""
    mpl = _mpl()
    handles = [mpl.patches.Patch(facecolor=colour, edgecolor="#555555", linewidth=0.5,
                                 hatch=_HATCH.get(c), label=c)
               for c, colour in {**PALETTE, **BLOCK_PALETTE}.items() if c in categories]
    if hatched:
        handles.append(mpl.patches.Patch(facecolor="#777777", edgecolor="white",
                                         linewidth=0.5, hatch=RESERVED_HATCH,
                                         label=_RESERVED_LABEL))
    ax.legend(handles=handles, **kw)


def _exact_size(n: int) -> str:
    """A byte count in the largest unit that shows it exactly (to two decimals)."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and (n * 100) % (1 << shift) == 0:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} B" if n < 1024 else f"{n >> 10} KiB" if n % 1024 == 0 else f"{n} B"


def _size_formatter() -> Any:
    mpl = _mpl()
    import matplotlib.ticker  # noqa: F401

    def fmt(x: float, _pos: Any) -> str:
        n = int(round(x))
        return "0" if n == 0 else "+" + _exact_size(n)
    return mpl.ticker.FuncFormatter(fmt)


def to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _allocation_count(regions: list[Region]) -> int:
    return len({r.allocation_base for r in regions if r.allocation_base and not r.unusable
                and r.state != _core.MEM_FREE})


def _headline(regions: list[Region]) -> str:
    reserved = sum(r.size for r in regions if r.state != _core.MEM_FREE)
    committed = sum(r.size for r in regions if r.state == _core.MEM_COMMIT)
    n = _allocation_count(regions)
    return (f"{n} allocation{'s' * (n != 1)}, {format_size(reserved)} reserved, "
            f"{format_size(committed)} committed")


# --- address_space ------------------------------------------------------------------------


class _Row(NamedTuple):
    base: int  # address at x = 0
    pieces: list  # (start, end, region), clipped to the row
    elided_end: int  # for an elided run: the end of the run; else 0


def _rows(regions: list[Region], lo: int, hi: int, width: int,
          limit: int = 4096) -> list[_Row] | int:
    """Cuts [lo, hi) into rows of `width` bytes (aligned to width); a run of 2 or more whole
    rows inside one region becomes one elided row. Returns the rows, or just their number
    when there would be more than limit."""
    first = lo // width * width
    # rows with a region boundary (or lo/hi) strictly inside are drawn as they are
    bounds = {r.base for r in regions if lo < r.base < hi} | {lo, hi}
    split = sorted({(b - first) // width for b in bounds if b % width})
    # each region covering whole rows adds one row (elided if it covers several)
    runs = []
    for r in regions:
        a, b = max(r.base, lo), min(r.end, hi)
        r0, r1 = -(-(a - first) // width), (b - first) // width
        if r1 > r0:
            runs.append((r0, r1, r))
    count = len(split) + len(runs)
    if count > limit:
        return count
    rows: list[_Row] = []
    for index in split:
        base = first + index * width
        pieces = [(max(r.base, base, lo), min(r.end, base + width, hi), r)
                  for r in regions if r.base < min(base + width, hi) and r.end > max(base, lo)]
        rows.append(_Row(base, pieces, 0))
    for r0, r1, r in runs:
        base = first + r0 * width
        end = first + r1 * width
        if r1 - r0 == 1:
            rows.append(_Row(base, [(base, end, r)], 0))
        else:
            rows.append(_Row(base, [(base, end, r)], end))
    rows.sort(key=lambda row: row.base)
    return rows


def _choose_rows(regions: list[Region], lo: int, hi: int,
                 max_rows: int) -> tuple[int, list[_Row]]:
    """The narrowest power-of-two row width (at least one slot, at least the whole range
    up to 1 MiB) that fits in max_rows rows, and those rows."""
    span = hi - lo
    width = _GRANULARITY
    while width < min(span, 1 << 20):
        width *= 2
    while True:
        rows = _rows(regions, lo, hi, width, max_rows)
        if isinstance(rows, list):
            return width, rows
        width *= 2


def address_space(process: Process, *, ax: Axes | None = None, zoom: bool = True,
                  grid: bool = True, max_rows: int = 16, labels: bool = True) -> Figure:
    """The process's address-space map, to scale, in VMMap's vocabulary and :data:`PALETTE`.

    The address range is drawn as rows of equal width (a power of two, at least one 64 KiB
    slot), lowest address at the top left, like a hex dump: each row is labelled with its
    first address and the x axis is the offset in the row. The width is the narrowest that
    fits in ``max_rows`` rows, and a run of whole rows inside one region (a big reservation,
    a gap) is drawn as one elided row saying what it stands for, so a few allocations and
    hundreds both read well.

    zoom: show only the rows from the first to the last allocation (else the whole space).
    grid: draw the 64 KiB slot boundaries, and the 4 KiB pages as minor ticks when a row is
    at most 256 KiB. labels: write kind and size in rectangles wide enough to hold them.

    Each rectangle is recorded in ``fig.pyalloc_drawn`` (:class:`Drawn`)."""
    mpl = _mpl()
    import matplotlib.collections  # noqa: F401
    import matplotlib.ticker  # noqa: F401

    regions = process.regions()
    if not regions:
        raise ValueError("the process has no address space")
    lo, hi = regions[0].base, regions[-1].end
    used = [r for r in regions if r.state != _core.MEM_FREE]
    if zoom and used:
        lo = used[0].base
        hi = -(-used[-1].end // _GRANULARITY) * _GRANULARITY
    width, rows = _choose_rows(regions, lo, hi, max_rows)
    if zoom and used:  # show the rest of the first and last rows too (as far as they exist)
        lo = max(regions[0].base, lo // width * width)
        hi = min(regions[-1].end, -(-hi // width) * width)
        whole_rows = _rows(regions, lo, hi, width, len(rows))
        assert isinstance(whole_rows, list)  # never more rows than before
        rows = whole_rows
    fig, ax = _figure(ax, (10, max(2.3, 1.3 + 0.42 * len(rows))))

    drawn: list[Drawn] = []
    present: set[str] = set()
    hatched = False
    height = 0.8
    # a rectangle narrower than ~8 characters of label is left unlabelled
    bbox = ax.get_position()
    axes_px = fig.get_figwidth() * fig.dpi * bbox.width
    for y, row in enumerate(rows):
        for start, end, r in row.pieces:
            cat = category(r)
            present.add(cat)
            x0 = start - row.base
            w = (width if row.elided_end else end - start)
            reserved = r.state == _core.MEM_RESERVE
            hatched |= _hatch(cat, reserved) == RESERVED_HATCH
            patch = _rectangle((x0, y - height / 2), w, height, cat, reserved, start, end)
            ax.add_patch(patch)
            drawn.append(Drawn(start, row.elided_end or end, cat, r, patch, row.base,
                               bool(row.elided_end)))
            if row.elided_end:
                n = (row.elided_end - start) // width
                ax.text(width / 2, y, f"\u22ee {n} rows: {format_size(row.elided_end - start)} "
                        f"{cat} \u22ee", ha="center", va="center", fontsize=8,
                        **_text_style(cat))
            elif labels:
                size = format_size(end - start)
                if end - start < r.size:  # the region goes on beyond this row or the view
                    size += f" of {format_size(r.size)}"
                if w / width * axes_px > 5.5 * max(len(cat), len(size)) + 8:
                    ax.text(x0 + w / 2, y, f"{cat}\n{size}", ha="center", va="center",
                            fontsize=7.5, linespacing=1.1, **_text_style(cat))
    if grid and width // _GRANULARITY <= 256:
        segments = []
        for y, row in enumerate(rows):
            if row.elided_end:
                continue
            first = max(row.pieces[0][0], row.base) - row.base
            last = row.pieces[-1][1] - row.base
            for x in range(_GRANULARITY, width, _GRANULARITY):
                if first <= x <= last:
                    segments.append([(x, y - height / 2), (x, y + height / 2)])
        ax.add_collection(mpl.collections.LineCollection(
            segments, colors="black", linewidths=0.6, alpha=0.45, zorder=3))

    ax.set_xlim(0, width)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{row.base:#014x}" for row in rows], family="monospace", fontsize=8)
    slots = width // _GRANULARITY
    step = _GRANULARITY * max(1, slots // 8) if slots > 1 else _GRANULARITY // 4
    ax.xaxis.set_major_locator(mpl.ticker.MultipleLocator(step))
    ax.xaxis.set_major_formatter(_size_formatter())
    if grid and width <= 256 << 10:
        ax.xaxis.set_minor_locator(mpl.ticker.MultipleLocator(_PAGE))
    elif grid and slots <= 64:
        ax.xaxis.set_minor_locator(mpl.ticker.MultipleLocator(_GRANULARITY))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(f"offset in row (rows of {format_size(width)}"
                  + (f" = {slots} slots of 64 KiB" if slots > 1 else " = one 64 KiB slot")
                  + ("; ticks: 4 KiB pages)" if grid and width <= 256 << 10 else ")"),
                  fontsize=8.5)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    total = regions[-1].end - regions[0].base
    shown = f"{format_size(hi - lo)} of {format_size(total)} shown" if zoom and used else \
        f"all {format_size(total)}"
    ax.set_title(f"Address space: {_headline(regions)}  ({shown})", fontsize=10, loc="left")
    _legend(ax, list(present), hatched, loc="upper left", bbox_to_anchor=(1.0, 1.0),
            fontsize=8, frameon=False, handlelength=1.4)
    _record(fig, "pyalloc_drawn", drawn)
    return fig


# --- region_summary / region_table --------------------------------------------------------


def region_summary(process: Process) -> list[dict[str, Any]]:
    """VMMap's summary table as data: one dict per kind (every kind of :data:`KINDS`, in
    that order), after a ``"Total"`` row for everything but Free. Keys: ``kind``; ``size``
    (bytes of that kind); ``committed`` (bytes committed); ``blocks`` (how many regions, as
    :meth:`Process.regions <pyalloc.Process.regions>` and VirtualQuery cut them); ``largest``
    (the largest such region: for Free, the largest allocation that could still succeed,
    give or take 64 KiB alignment)."""
    rows: dict[str, dict[str, Any]] = {
        k: {"kind": k, "size": 0, "committed": 0, "blocks": 0, "largest": 0} for k in KINDS}
    total: dict[str, Any] = {"kind": "Total", "size": 0, "committed": 0, "blocks": 0,
                             "largest": 0}
    for r in process.regions():
        committed = r.size if r.state == _core.MEM_COMMIT else 0
        targets = (rows[r.kind],) if r.kind == "Free" else (rows[r.kind], total)
        for row in targets:
            row["size"] += r.size
            row["committed"] += committed
            row["blocks"] += 1
            row["largest"] = max(row["largest"], r.size)
    return [total] + [rows[k] for k in KINDS]


_COLUMNS = ("Type", "Size", "Committed", "Blocks", "Largest")


def _table_cells(summary: list[dict[str, Any]]) -> list[list[str]]:
    """The table's text, one list per row (shared with repr_html)."""
    cells = []
    for row in summary:
        if row["blocks"] == 0:
            cells.append([row["kind"], "", "", "", ""])
        else:
            cells.append([row["kind"], format_size(row["size"]), format_size(row["committed"]),
                          str(row["blocks"]), format_size(row["largest"])])
    return cells


def region_table(process: Process, *, ax: Axes | None = None) -> Figure:
    """VMMap's summary table, drawn: Type (each kind in its :data:`PALETTE` colour), Size,
    Committed, Blocks, Largest; a Total row first. The data is :func:`region_summary`'s,
    kept as ``fig.pyalloc_summary``; the matplotlib Table is ``ax.tables[0]``."""
    mpl = _mpl()
    import matplotlib.transforms  # noqa: F401

    summary = region_summary(process)
    fig, ax = _figure(ax, (6.4, 0.3 * (len(summary) + 1) + 0.45))
    ax.set_axis_off()
    cells = _table_cells(summary)
    colours = [["white"] * len(_COLUMNS) for _ in cells]
    for i, row in enumerate(summary):
        if row["kind"] in PALETTE:
            colours[i][0] = PALETTE[row["kind"]]
    table = ax.table(cellText=cells, colLabels=_COLUMNS, cellColours=colours,
                     cellLoc="right", colLoc="right",
                     bbox=mpl.transforms.Bbox.from_bounds(0, 0, 1, 1),
                     colWidths=[0.28, 0.18, 0.18, 0.13, 0.18])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (i, j), cell in table.get_celld().items():
        cell.set_edgecolor("#BBBBBB")
        cell.set_linewidth(0.5)
        if i == 0:
            cell.set_text_props(weight="bold")
        if j == 0:
            cell.set_text_props(ha="left")
            cell.PAD = 0.05
            if i > 0 and summary[i - 1]["kind"] in PALETTE:
                cell.get_text().set_color(_text_colour(PALETTE[summary[i - 1]["kind"]]))
            if i == 1:
                cell.set_text_props(weight="bold")
    ax.set_title(f"Regions by type: {_headline(process.regions())}", fontsize=10, loc="left")
    _record(fig, "pyalloc_summary", summary)
    return fig


# --- allocation_anatomy -------------------------------------------------------------------


class _Layer(NamedTuple):
    level: int
    name: str
    spans: Callable[[Any, int], "list[Span] | None"]


_LAYERS: list[_Layer] = []


def register_anatomy_layer(level: int, name: str,
                           spans: Callable[[Any, int], list[Span] | None]) -> None:
    """Adds a band to :func:`allocation_anatomy`: ``spans(process, address)`` returns what
    layer ``level`` (2 VirtualAlloc, 3 heap, 4 CRT, 5 new) sees around ``address``, as
    address-ordered :class:`Span` s, or None where the address is not that layer's. A layer
    registered again under the same name replaces the old one."""
    _LAYERS[:] = [layer for layer in _LAYERS if layer.name != name]
    _LAYERS.append(_Layer(level, name, spans))
    _LAYERS.sort(key=lambda layer: layer.level)


def _allocation_regions(process: Process, address: int) -> list[Region]:
    """The regions of the allocation containing address, then its unusable tail if any."""
    regions = process.regions()
    hit = next((r for r in regions if r.base <= address < r.end), None)
    if hit is None or hit.state == _core.MEM_FREE:
        what = "outside the address space" if hit is None else \
            "in an unusable slot tail" if hit.unusable else "free"
        raise ValueError(f"no allocation at {address:#x}: the address is {what}")
    base = hit.allocation_base
    out = [r for r in regions if r.allocation_base == base and r.state != _core.MEM_FREE]
    after = next((r for r in regions if r.base == out[-1].end), None)
    if after is not None and after.unusable:
        out.append(after)
    return out


def _virtualalloc_spans(process: Process, address: int) -> list[Span] | None:
    """Layer 2: the allocation's committed, guard and reserved pages and unusable tail."""
    spans = []
    for r in _allocation_regions(process, address):
        cat = category(r)
        if r.unusable:
            what = "unusable"
        elif r.state == _core.MEM_RESERVE:
            what = "reserved"
        else:
            what = _core.protect_name(r.protect & ~_core.PAGE_GUARD) + \
                (" + GUARD" if cat == "Guard" else "")
        spans.append(Span(r.base, r.end, cat, f"{format_size(r.size)} {what}",
                          r.state == _core.MEM_RESERVE))
    return spans


register_anatomy_layer(2, "VirtualAlloc", _virtualalloc_spans)


def allocation_anatomy(process: Process, address: int, *, ax: Axes | None = None,
                       layers: list[str] | None = None) -> Figure:
    """One allocation to scale: its 64 KiB slot(s) (the ruler on top, with page lines when
    there are few enough pages), its committed, guard and reserved pages, and the unusable
    tail of its last slot. One band per layer that owns ``address`` (today: VirtualAlloc,
    layer 2; see :func:`register_anatomy_layer`), lowest layer at the bottom, all on one
    address axis; ``layers`` picks layers by name. Spans too narrow for their label get a
    callout under their band.

    Raises ValueError if no allocation contains ``address``. The rectangles are recorded in
    ``fig.pyalloc_drawn`` (:class:`Drawn`: ``region`` is the :class:`Span`, ``row_base`` the
    allocation base, which is x = 0)."""
    mpl = _mpl()
    import matplotlib.ticker  # noqa: F401

    regions = _allocation_regions(process, address)
    base = regions[0].allocation_base
    size = -(-regions[-1].end // _GRANULARITY) * _GRANULARITY - base
    slots, pages = size // _GRANULARITY, size // _PAGE
    bands = [(layer, spans) for layer in _LAYERS
             if layers is None or layer.name in layers
             for spans in [layer.spans(process, address)] if spans]

    # lay the bands out bottom up, each with room for its callouts underneath
    axes_px = 10 * 100 * 0.75  # the band's width in pixels, near enough, at 100 dpi
    height, level_step = 0.5, 0.3
    plan = []  # (layer, spans, y, callouts: [(span, level, to_the_right)])
    cursor = 0.0
    zoomed = None  # the highest band whose spans are a sliver: magnified in an inset
    for layer, spans in bands:
        narrow = [sp for sp in spans if sp.label and
                  (sp.end - sp.start) / size * axes_px < 6.2 * len(sp.label) + 10]
        callouts = []
        if layer.level >= 3 and (spans[-1].end - spans[0].start) * 40 < size:
            zoomed = (layer, spans)
            narrow = []  # labelled in the inset instead
        if len(narrow) <= 6:
            right = sorted((sp for sp in narrow if (sp.start - base) / size <= 0.6),
                           key=lambda sp: -sp.start)
            left = sorted((sp for sp in narrow if (sp.start - base) / size > 0.6),
                          key=lambda sp: sp.start)
            callouts = [(sp, i, True) for i, sp in enumerate(right)] + \
                [(sp, i, False) for i, sp in enumerate(left)]
        levels = max((lv + 1 for _, lv, _ in callouts), default=0)
        y = cursor + levels * level_step + height / 2 + (0.15 if levels else 0)
        plan.append((layer, spans, y, callouts, narrow if len(narrow) > 6 else []))
        cursor = y + height / 2 + 0.25
    ruler_y = cursor + 0.05
    top = ruler_y + 0.35
    zoom_y = top + 0.6  # the inset's bottom, leaving room for its connectors
    if zoomed is not None:  # ... and for the callouts of spans too narrow for their label
        zoom_y += 0.34 * len(_inset_narrow(zoomed[1]))
        top = zoom_y + 0.9 + 0.85  # the inset, and its tick labels above it
    fig, ax = _figure(ax, (10, 1.3 + 0.45 * (top + 0.05)))

    drawn: list[Drawn] = []
    present: list[str] = []
    hatched = False
    for layer, spans, y, callouts, unlabelled in plan:
        for sp in spans:
            if sp.category not in present:
                present.append(sp.category)
            hatched |= _hatch(sp.category, sp.reserved) == RESERVED_HATCH
            patch = _rectangle((sp.start - base, y - height / 2), sp.end - sp.start, height,
                               sp.category, sp.reserved, sp.start, sp.end)
            ax.add_patch(patch)
            drawn.append(Drawn(sp.start, sp.end, sp.category, sp, patch, base))
            if sp.label and all(sp is not c for c, _, _ in callouts) and \
                    sp not in unlabelled and (zoomed is None or spans is not zoomed[1]):
                ax.text((sp.start + sp.end) / 2 - base, y, sp.label, ha="center",
                        va="center", fontsize=8, **_text_style(sp.category))
        for sp, level, to_the_right in callouts:
            x = (sp.start + sp.end) / 2 - base
            ax.annotate(sp.label, xy=(x, y - height / 2),
                        xytext=(x + (0.015 if to_the_right else -0.015) * size,
                                y - height / 2 - 0.15 - level * level_step),
                        ha="left" if to_the_right else "right", va="center", fontsize=8,
                        arrowprops=dict(arrowstyle="-", color="#444444", linewidth=0.7,
                                        shrinkA=1, shrinkB=0,
                                        connectionstyle="angle,angleA=0,angleB=90,rad=0"))
        if unlabelled:
            ax.text(0, y - height / 2 - 0.1, f"{len(unlabelled)} spans too narrow to label",
                    ha="left", va="top", fontsize=8, style="italic")
        if zoomed is not None and spans is zoomed[1]:  # a marker where the sliver is
            ax.plot([(spans[0].start + spans[-1].end) / 2 - base], [y + height / 2 + 0.08],
                    marker="v", markersize=6, color="#333333", zorder=5)
            continue
        if pages <= 128:  # page boundaries across the band
            ax.vlines(range(_PAGE, size, _PAGE), y - height / 2, y + height / 2,
                      colors="white", linewidths=0.5, alpha=0.8, zorder=2)
        if 1 < slots <= 256:  # slot boundaries across the band
            ax.vlines(range(_GRANULARITY, size, _GRANULARITY), y - height / 2, y + height / 2,
                      colors="black", linewidths=0.8, alpha=0.6, zorder=3)

    # the ruler: layer 1's grain, 64 KiB slots
    ruler_h = 0.3
    if slots <= 256:
        for k in range(slots):
            ax.add_patch(mpl.patches.Rectangle(
                (k * _GRANULARITY, ruler_y), _GRANULARITY, ruler_h,
                facecolor="#FFFFFF" if k % 2 == 0 else "#E3E3E3", edgecolor="#333333",
                linewidth=0.6))
            if slots <= 16:
                ax.text((k + 0.5) * _GRANULARITY, ruler_y + ruler_h / 2, f"slot {k}",
                        ha="center", va="center", fontsize=7.5)
    else:
        ax.add_patch(mpl.patches.Rectangle((0, ruler_y), size, ruler_h, facecolor="#E3E3E3",
                                           edgecolor="#333333", linewidth=0.6))
    if slots > 16:
        ax.text(size / 2, ruler_y + ruler_h / 2, f"{slots} slots of 64 KiB", ha="center",
                va="center", fontsize=7.5,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))

    ax.set_xlim(0, size)
    ax.set_ylim(0, top)
    ax.set_yticks([y for _, _, y, _, _ in plan] + [ruler_y + ruler_h / 2])
    ax.set_yticklabels([f"{layer.name}\n(layer {layer.level})" for layer, *_ in plan]
                       + ["64 KiB slots"], fontsize=8.5)
    ax.tick_params(axis="y", length=0)
    step = _GRANULARITY * max(1, slots // 8) if slots > 1 else _GRANULARITY // 4
    ax.xaxis.set_major_locator(mpl.ticker.MultipleLocator(step))
    ax.xaxis.set_major_formatter(_size_formatter())
    # minor ticks: pages, or slots where pages would be a blur (and slow: a Tick each)
    minor = _PAGE if pages <= 64 else _GRANULARITY if slots <= 64 else 0
    if minor:
        ax.xaxis.set_minor_locator(mpl.ticker.MultipleLocator(minor))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel(f"offset from the allocation base {base:#x}"
                  + ("  (minor ticks: 4 KiB pages)" if minor == _PAGE else ""), fontsize=8.5)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    committed = sum(r.size for r in regions if r.state == _core.MEM_COMMIT)
    reserved = sum(r.size for r in regions if r.state != _core.MEM_FREE)
    unusable = sum(r.size for r in regions if r.unusable)
    tail = f"{format_size(unusable)} unusable" if unusable else "no unusable tail"
    what = "View" if regions[0].type == _core.MEM_MAPPED else "Allocation"
    ax.set_title(f"{what} at {base:#x}: {format_size(reserved)} reserved in {slots} "
                 f"slot{'s' * (slots != 1)} of 64 KiB, {format_size(committed)} committed, "
                 f"{tail}", fontsize=10, loc="left")
    if zoomed is not None:
        layer, spans = zoomed
        y = next(y for lay, _, y, _, _ in plan if lay is layer)
        _zoom_inset(ax, base, address, spans, y, height, zoom_y)
    _legend(ax, present, hatched, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
            frameon=False, handlelength=1.4)
    _record(fig, "pyalloc_drawn", drawn)
    return fig


_INSET_PX = 750  # the inset's width in pixels, near enough (10 inches, 100 dpi, 75%)


def _inset_range(spans: list[Span]) -> tuple[int, int]:
    """The inset's x range: the spans and a margin either side (addresses)."""
    lo, hi = spans[0].start, spans[-1].end
    margin = max(_UNIT, (hi - lo) // 10)
    return lo - margin, hi + margin


def _inset_words(sp: Span) -> str:
    return sp.label.replace(": ", ":\n", 1)


def _inset_narrow(spans: list[Span]) -> list[Span]:
    """The spans whose label does not fit inside them in the inset (at most 4 get a
    callout; the rest stay unlabelled)."""
    x0, x1 = _inset_range(spans)
    return [sp for sp in spans if sp.label and (sp.end - sp.start) / (x1 - x0) * _INSET_PX
            <= 6 * max(map(len, _inset_words(sp).split("\n"))) + 6][:4]


def _zoom_inset(ax: Axes, base: int, address: int, spans: list[Span], y: float,
                height: float, bottom: float) -> Axes:
    """Magnifies a band's spans (a heap block in a segment of megabytes) in an inset above
    the ruler, framed on the band by a zoom box; x is in bytes from the first span. Labels
    go inside the spans, or below the inset with a leader line where a span is too narrow;
    a triangle under the inset marks address."""
    mpl = _mpl()
    import matplotlib.ticker  # noqa: F401
    import matplotlib.transforms  # noqa: F401

    lo = spans[0].start
    x0, x1 = (a - base for a in _inset_range(spans))
    inset = ax.inset_axes(
        (0.0, bottom, 1.0, 0.9),
        transform=mpl.transforms.blended_transform_factory(ax.transAxes, ax.transData))
    inset.set_xlim(x0, x1)
    inset.set_ylim(y - height / 2, y + height / 2)
    narrow = _inset_narrow(spans)
    for sp in spans:
        inset.add_patch(_rectangle((sp.start - base, y - height / 2), sp.end - sp.start,
                                   height, sp.category, sp.reserved, sp.start, sp.end))
        if sp.label and all(sp is not n for n in narrow):
            inset.text((sp.start + sp.end) / 2 - base, y, _inset_words(sp), ha="center",
                       va="center", fontsize=7.5, linespacing=1.1, **_text_style(sp.category))
    inset.vlines([sp.start - base for sp in spans[1:]], y - height / 2, y + height / 2,
                 colors="white", linewidths=0.8, zorder=3)
    # callouts: the nearest to the inset's middle lowest, text away from the middle
    middle = (x0 + x1) / 2
    order = sorted(narrow, key=lambda sp: -abs((sp.start + sp.end) / 2 - base - middle))
    for level, sp in enumerate(order):
        x = (sp.start + sp.end) / 2 - base
        right = x <= middle
        inset.annotate(sp.label, xy=(x, y - height / 2), xytext=(14 if right else -14,
                                                                  -10 - 11 * level),
                       textcoords="offset points", ha="left" if right else "right",
                       va="center", fontsize=7.5, annotation_clip=False,
                       arrowprops=dict(arrowstyle="-", color="#444444", linewidth=0.7,
                                       shrinkA=1, shrinkB=0,
                                       connectionstyle="angle,angleA=0,angleB=90,rad=0"))
    marked = ""
    if x0 + base <= address < x1 + base:
        inset.plot([address - base], [y - height / 2], marker="^", markersize=6,
                   color="#333333", clip_on=False, zorder=5)
        marked = f"; \u25b2 {address:#x}"
    step = _pow2_step(x1 - x0, 12)
    inset.xaxis.set_major_locator(mpl.ticker.MultipleLocator(step, offset=lo - base))
    inset.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(
        lambda x, _pos: f"{int(round(x)) - (lo - base):+d}"))
    inset.xaxis.tick_top()
    inset.xaxis.set_label_position("top")
    inset.tick_params(axis="x", labelsize=7.5)
    inset.set_yticks([])
    inset.set_xlabel(f"bytes from {lo:#x}, magnified (ticks every {step} bytes){marked}",
                     fontsize=8, labelpad=2)
    for side in ("left", "right", "bottom"):
        inset.spines[side].set_visible(False)
    ax.indicate_inset_zoom(inset, edgecolor="#333333", linewidth=0.8)
    return inset


# --- heaps: HeapWalk as a layout of blocks -------------------------------------------------

_UNIT = 16  # the heap's block granularity and header size (x64)
_LFH_BUCKETS = 128
_LFH_CHUNK = 0x10000  # an LFH segment is cut into chunks of 64 KiB


def lfh_bucket(size: int) -> int:
    """The low-fragmentation front end's bucket (size class) of a request of ``size`` bytes
    (at most 16368): 16-byte steps up to 1 KiB, then 16 buckets per octave up to 16 KiB."""
    if size <= 1024:
        return (size + 15) // 16 - 1 if size else 0
    octave = (size - 1).bit_length() - 1
    return 64 + (octave - 10) * 16 + ((size - 1 - (1 << octave)) >> (octave - 4))


def lfh_bucket_size(bucket: int) -> int:
    """The largest request bucket ``bucket`` serves; its slots are 16 bytes more (the
    header)."""
    if bucket < 64:
        return (bucket + 1) * 16
    octave, k = 10 + (bucket - 64) // 16, (bucket - 64) % 16
    return (1 << octave) + (k + 1) * (1 << (octave - 4))


class HeapBlock(NamedTuple):
    """One piece of a heap segment, as :func:`heap_layout` cuts it: a block (header
    included) or a piece HeapWalk does not list as a block."""

    start: int  # the block's header (or the piece's first byte)
    end: int
    category: str  # a BLOCK_PALETTE key
    user: int = 0  # lpData: the pointer HeapAlloc returned (0 for pieces that are not blocks)
    size: int = 0  # cbData: requested bytes of a busy block, usable bytes of a free one
    entry: Any = None  # the PROCESS_HEAP_ENTRY (None for pieces HeapWalk does not list)


class HeapSegment(NamedTuple):
    """One reservation of a heap: a segment (``region_index``: HeapWalk's iRegionIndex), or
    a block served by a reservation of its own (``region_index`` -1: a large block, or a
    page-heap block).
    ``blocks`` tile ``[base, end)`` in address order."""

    region_index: int
    kind: str  # "back end", "LFH", "large block" or "page heap"
    base: int
    end: int
    blocks: list[HeapBlock]

    @property
    def committed_end(self) -> int:
        """One past the last byte that is not Uncommitted."""
        return max((b.end for b in self.blocks if b.category != "Uncommitted"),
                   default=self.base)


class HeapLayout(NamedTuple):
    """A heap, as HeapWalk lists it, cut into :class:`HeapBlock` s (a snapshot: drawing it
    later draws the heap as it was)."""

    handle: int
    segments: list[HeapSegment]
    stats: dict[str, Any] | None  # Heap.stats() at the time, when a Heap was given

    @property
    def blocks(self) -> list[HeapBlock]:
        return [b for s in self.segments for b in s.blocks]

    def totals(self) -> dict[str, int]:
        """What the walk adds up to, in Heap.stats()'s terms: busy_blocks, busy_bytes (the
        requested bytes), free_blocks, free_bytes (back-end free blocks, headers included),
        largest_free (user bytes of the largest), spare_committed (free chunks the LFH
        keeps committed), lfh_slots, lfh_free, committed, reserved."""
        blocks = self.blocks
        busy = [b for b in blocks if b.category in ("Busy block", "LFH busy")]
        free = [b for s in self.segments if s.kind != "LFH" for b in s.blocks
                if b.category == "Free block"]
        spare = [b for s in self.segments if s.kind == "LFH" for b in s.blocks
                 if b.category == "Free block"]
        return {
            "busy_blocks": len(busy),
            "busy_bytes": sum(b.size for b in busy),
            "free_blocks": len(free),
            "free_bytes": sum(b.end - b.start for b in free),
            "largest_free": max((b.end - b.start - _UNIT for b in free), default=0),
            "spare_committed": sum(b.end - b.start for b in spare),
            "lfh_slots": sum(b.category in ("LFH busy", "LFH free") for b in blocks),
            "lfh_free": sum(b.category == "LFH free" for b in blocks),
            "committed": sum(b.end - b.start for b in blocks if b.category != "Uncommitted"),
            "reserved": sum(s.end - s.base for s in self.segments),
        }

    def block_at(self, address: int) -> tuple[HeapSegment, HeapBlock] | None:
        """The segment and piece containing address, or None."""
        for s in self.segments:
            if s.base <= address < s.end:
                for b in s.blocks:
                    if b.start <= address < b.end:
                        return s, b
        return None


def _walk_segment(region: Any, entries: list[Any]) -> HeapSegment:
    """Cuts one HeapWalk region (a segment) into HeapBlocks. A back-end segment's blocks
    tile its committed part, which ends in a one-granule end sentinel; an LFH segment is a
    64 KiB header chunk, then subsegments (a 320-byte header with the free bitmap, then
    equal slots), free chunks kept committed (listed as one free entry per run) and
    uncommitted chunks."""
    base, end = region.lpData, region.lpLastBlock
    lfh = region.cbData == _GRANULARITY and region.lpFirstBlock == base + _GRANULARITY
    busy, free = ("LFH busy", "LFH free") if lfh else ("Busy block", "Free block")
    pieces = [HeapBlock(base, base + region.cbData, "Overhead", entry=region)]
    commit_end = base + region.dwCommittedSize
    for i, e in enumerate(entries):
        if e.wFlags & _core.PROCESS_HEAP_UNCOMMITTED_RANGE:
            pieces.append(HeapBlock(e.lpData, e.lpData + e.cbData, "Uncommitted", entry=e))
            continue
        start = e.lpData - _UNIT
        if lfh:  # a slot: cbData + cbOverhead is the slot size, header included
            stop = start + e.cbData + e.cbOverhead
            if not e.wFlags and (stop - start) % _LFH_CHUNK == 0:
                # free chunks kept committed (Heap.stats()['spare_committed']): free space of
                # no bucket, their pages dropped
                pieces.append(HeapBlock(start, stop, "Free block", e.lpData, e.cbData, e))
                continue
        else:  # back-end blocks tile the committed part: up to the next block
            after = entries[i + 1] if i + 1 < len(entries) else None
            if after is not None and not after.wFlags & _core.PROCESS_HEAP_UNCOMMITTED_RANGE:
                stop = after.lpData - _UNIT
            else:
                stop = commit_end - _UNIT
        cat = busy if e.wFlags & _core.PROCESS_HEAP_ENTRY_BUSY else free
        pieces.append(HeapBlock(start, stop, cat, e.lpData, e.cbData, e))
    if not lfh:  # the end sentinel, which HeapWalk does not list
        pieces.append(HeapBlock(commit_end - _UNIT, commit_end, "Overhead"))
    pieces.sort(key=lambda b: b.start)
    blocks: list[HeapBlock] = []
    at = base
    for b in pieces:  # what lies between the listed pieces is the heap's own
        if b.start > at:
            blocks.append(HeapBlock(at, b.start, "Overhead"))
        if b.end > b.start:
            blocks.append(b)
        at = max(at, b.end)
    if at < end:
        blocks.append(HeapBlock(at, end, "Overhead"))
    return HeapSegment(region.iRegionIndex, "LFH" if lfh else "back end", base, end, blocks)


def _own_reservation(e: Any, regions: list[Region]) -> HeapSegment:
    """A block HeapWalk lists after the regions: a large block (64 bytes of header at the
    base of its own reservation) or a page-heap block (a header page, then the block, which
    ends where the reserved page after it starts)."""
    hit = next(r for r in regions if r.base <= e.lpData < r.end)
    mine = [r for r in regions if r.allocation_base == hit.allocation_base and
            r.state != _core.MEM_FREE]
    base = hit.allocation_base
    large = e.lpData - base == 64
    header = base + (64 if large else _PAGE)
    user_end = e.lpData + e.cbData
    commit_end = max(r.end for r in mine if r.state == _core.MEM_COMMIT)
    pieces = [HeapBlock(base, min(header, e.lpData), "Overhead"),
              HeapBlock(header, e.lpData, "Padding"),
              HeapBlock(e.lpData, user_end, "Busy block", e.lpData, e.cbData, e),
              HeapBlock(user_end, commit_end, "Padding")]
    pieces += [HeapBlock(r.base, r.end, "Uncommitted") for r in mine
               if r.state == _core.MEM_RESERVE]
    blocks = sorted((b for b in pieces if b.end > b.start), key=lambda b: b.start)
    return HeapSegment(-1, "large block" if large else "page heap", base, mine[-1].end, blocks)


def heap_layout(heap: Any, process: Process | None = None) -> HeapLayout:
    """HeapWalk's view of a heap, cut into pieces that tile each of its reservations: busy
    and free blocks (back end or LFH), the heap's own overhead (segment descriptors, the
    LFH's header chunk, subsegment headers, end sentinels), uncommitted ranges, and blocks
    served by their own reservation. ``heap`` is a :class:`pyalloc.Heap` (or a handle, with
    ``process``). Freed large blocks kept for reuse are not listed by HeapWalk and not
    here either."""
    if process is None:
        process = heap.process
    entries = list(process.HeapWalk(heap))
    stats = heap.stats() if hasattr(heap, "stats") else None
    segments: list[HeapSegment] = []
    region: Any = None
    inside: list[Any] = []
    outside: list[Any] = []
    for e in entries + [None]:
        if e is None or e.wFlags & _core.PROCESS_HEAP_REGION or e.iRegionIndex >= 64:
            if region is not None:
                segments.append(_walk_segment(region, inside))
            region, inside = None, []
            if e is not None and e.wFlags & _core.PROCESS_HEAP_REGION:
                region = e
            elif e is not None:
                outside.append(e)
        else:
            inside.append(e)
    if outside:
        regions = process.regions()
        segments += [_own_reservation(e, regions) for e in outside]
    return HeapLayout(int(heap), segments, stats)


def _heap_of(process: Process, address: int) -> int | None:
    """The handle of the heap whose memory holds address, or None."""
    for handle in process_heaps(process):
        layout = heap_layout(handle, process)
        if layout.block_at(address) is not None:
            return handle
    return None


def process_heaps(process: Process) -> list[int]:
    """The handles of the process's heaps, found without creating the process heap (as
    GetProcessHeaps would): the bases of heap-owned allocations that are heap handles. The
    last error is left as it was."""
    handles = getattr(process, "_heap_handles", None)  # pyalloc.host(): asks its process
    if handles is not None:
        return handles()
    heaps = []
    seen = set()
    last = process.GetLastError()
    try:
        for r in process.regions():
            if r.owner != _core.OWNER_HEAP or r.allocation_base in seen:
                continue
            seen.add(r.allocation_base)
            try:
                process.HeapQueryInformation(r.allocation_base,
                                             _core.HeapCompatibilityInformation)
            except (OSError, ValueError):
                continue
            heaps.append(r.allocation_base)
    finally:
        process.SetLastError(last)
    return heaps


def _bytes(n: int) -> str:
    """A size for a label: exact below 64 KiB (4064 B, 4 KiB), else format_size's."""
    return format_size(n) if n >= 1 << 16 or n % 1024 == 0 else f"{n} B"


def _piece_label(b: HeapBlock) -> str:
    n = b.end - b.start
    if b.category in ("Busy block", "LFH busy"):
        return f"user bytes: {b.size} B"
    if b.category == "Overhead":
        return f"header: {_bytes(n)}"
    if b.category == "Uncommitted":
        return f"reserved: {_bytes(n)}"
    return f"{_SHORT[b.category]}: {_bytes(n)}"


def block_spans(block: HeapBlock) -> list[Span]:
    """One heap block, as the heap layer's anatomy band shows it: its 16-byte header, the
    user bytes, the padding up to the next 16-byte boundary, and the rest of its slot (LFH:
    the bucket's size rounds the request up) or block (back end: a remainder too small to
    split off). A free block: header, then free bytes. A piece that is not a block: itself."""
    b = block
    if not b.user:
        return [Span(b.start, b.end, b.category, _piece_label(b), b.category == "Uncommitted")]
    spans = [Span(b.start, b.user, "Overhead", f"header: {b.user - b.start} B")]
    if b.category in ("Free block", "LFH free"):
        return spans + [Span(b.user, b.end, b.category, f"free: {b.end - b.user} B")]
    data_end = b.user + b.size
    aligned = -(-data_end // _UNIT) * _UNIT
    if b.size:
        spans.append(Span(b.user, data_end, b.category, f"user bytes: {b.size} B"))
    if aligned > data_end:
        spans.append(Span(data_end, aligned, "Padding", f"to 16: {aligned - data_end} B"))
    if b.end > aligned:
        what = "rest of slot" if b.category == "LFH busy" else "rest of block"
        spans.append(Span(aligned, b.end, "Padding", f"{what}: {b.end - aligned} B"))
    return spans


def _heap_spans(process: Process, address: int) -> list[Span] | None:
    """Layer 3: the heap block at address (see :func:`block_spans`); for a block with a
    reservation of its own, the whole reservation; None outside heap memory."""
    hit = next((r for r in process.regions() if r.base <= address < r.end), None)
    if hit is None or hit.owner != _core.OWNER_HEAP or hit.state == _core.MEM_FREE:
        return None
    for handle in process_heaps(process):
        found = heap_layout(handle, process).block_at(address)
        if found is not None:
            break
    else:
        return None
    seg, block = found
    if seg.region_index < 0:
        return [Span(b.start, b.end, b.category, _piece_label(b), b.category == "Uncommitted")
                for b in seg.blocks]
    return block_spans(block)


register_anatomy_layer(3, "Heap", _heap_spans)

# Layers 4 and 5: the CRT's and operator new's view of a process-heap block.
BLOCK_PALETTE.update({
    "CRT header": "#882255",
    "No-man's land": "#44AA99",
    "Back-pointer": "#CC79A7",
    "Array cookie": "#56B4E9",
})
_CRT_HEADER = 48  # _CrtMemBlockHeader on x64; its last 4 bytes are the gap (heap.md fact 88)
_NO_MANS_LAND = 4
_P = 8  # sizeof(void *)


def _process_heap_block(process: Process, address: int) -> HeapBlock | None:
    """The busy block of the process heap (the CRT's heap) containing address, or None."""
    hit = next((r for r in process.regions() if r.base <= address < r.end), None)
    if hit is None or hit.owner != _core.OWNER_HEAP:
        return None
    found = heap_layout(process.GetProcessHeap(), process).block_at(address)
    if found is None or not found[1].user or found[1].category not in ("Busy block", "LFH busy"):
        return None
    return found[1]


def _word(process: Process, address: int) -> int:
    return int.from_bytes(process.read(address, _P), "little")


def _crt_spans(process: Process, address: int) -> list[Span] | None:
    """Layer 4: the CRT block whose pointer is address: in the debug CRT, the
    _CrtMemBlockHeader, the 0xFD no-man's land before and after the data; for
    _aligned_malloc, the gap and the back-pointer below the aligned data; else the whole
    block as malloc returned it. None outside the process heap's busy blocks."""
    b = _process_heap_block(process, address)
    if b is None:
        return None
    if getattr(process, "crt_debug", False) and address == b.user + _CRT_HEADER:
        size = _word(process, b.user + 32)  # data_size
        data = b.user + _CRT_HEADER
        return [Span(b.user, data - _NO_MANS_LAND, "CRT header",
                     f"_CrtMemBlockHeader: {_CRT_HEADER - _NO_MANS_LAND} B"),
                Span(data - _NO_MANS_LAND, data, "No-man's land", "gap: 4 B of 0xFD"),
                Span(data, data + size, "Busy block", f"data: {size} B"),
                Span(data + size, data + size + _NO_MANS_LAND, "No-man's land",
                     "4 B of 0xFD")]
    if address >= b.user + _P and address < b.user + b.size and \
            _word(process, address - _P) == b.user:
        spans = []
        if address - _P > b.user:
            spans.append(Span(b.user, address - _P, "Padding", f"gap: {address - _P - b.user} B"))
        return spans + [Span(address - _P, address, "Back-pointer", "back-pointer: 8 B"),
                        Span(address, b.user + b.size, "Busy block",
                             f"aligned data: {b.user + b.size - address} B")]
    return [Span(b.user, b.user + b.size, "Busy block", f"malloc'd block: {b.size} B")]


def _new_spans(process: Process, address: int) -> list[Span] | None:
    """Layer 5: a new[] array whose element type has a destructor: MSVC's 8-byte cookie
    holding the element count just below the array (heap.md fact 87). None otherwise."""
    b = _process_heap_block(process, address)
    if b is None:
        return None
    start = b.user + (_CRT_HEADER if getattr(process, "crt_debug", False) else 0)
    if address != start + _P:
        return None
    count = _word(process, start)
    data = (b.size - _P) if start == b.user else _word(process, b.user + 32) - _P
    if count <= 0 or data <= 0 or data % count:
        return None
    return [Span(start, address, "Array cookie", f"cookie: count {count}"),
            Span(address, address + data, "Busy block",
                 f"{count} x {data // count} B")]


register_anatomy_layer(4, "CRT", _crt_spans)
register_anatomy_layer(5, "new", _new_spans)


# --- heap_map / heap_buckets ---------------------------------------------------------------

_KIND_LABEL = {"back end": "back end", "LFH": "LFH", "large block": "large block",
               "page heap": "page-heap block"}
_SHORT = {"Busy block": "busy", "Free block": "free", "LFH busy": "busy", "LFH free": "free",
          "Overhead": "overhead", "Padding": "padding", "Uncommitted": "uncommitted"}


def _pow2_step(width: float, ticks: int = 8) -> int:
    """The smallest power of two (at least 16) that cuts width into at most ticks parts."""
    step = _UNIT
    while width / step > ticks:
        step *= 2
    return step


def _runs(blocks: list[HeapBlock]) -> list[list[HeapBlock]]:
    """Consecutive pieces of one category, grouped."""
    runs: list[list[HeapBlock]] = []
    for b in blocks:
        if runs and runs[-1][-1].category == b.category and runs[-1][-1].end == b.start:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def _run_label(run: list[HeapBlock]) -> str:
    cat = run[0].category
    size = format_size(run[-1].end - run[0].start)
    if cat in ("Busy block", "LFH busy", "Free block", "LFH free"):
        n = len(run)
        return f"{n} {_SHORT[cat]}\n{size}" if n > 1 else f"{_SHORT[cat]}\n{size}"
    return f"{_SHORT[cat]}\n{size}"


def heap_map(heap: Any, *, ax: Axes | None = None, process: Process | None = None,
             max_rows: int = 12, labels: bool = True) -> Figure:
    """A heap, as HeapWalk sees it: one row per segment (and per block with a reservation of
    its own), x the offset from the segment's base, all rows on one scale. Busy and free
    blocks of the back end, busy and free slots of the low-fragmentation front end (LFH),
    the heap's own overhead and the uncommitted rest, in :data:`BLOCK_PALETTE`'s colours;
    thin white lines separate blocks wide enough to show them.

    When the uncommitted tails are much longer than what is committed, the x axis ends a
    little past the last committed byte and each row says how much more it reserves.
    ``heap``: a :class:`pyalloc.Heap`, a handle (with ``process``) or a :class:`HeapLayout`.

    Consecutive pieces of one category are one rectangle: ``fig.pyalloc_drawn`` holds a
    :class:`Drawn` per rectangle (``region``: the tuple of :class:`HeapBlock` s it shows,
    ``row_base``: the segment's base); ``fig.pyalloc_layout`` is the HeapLayout."""
    mpl = _mpl()
    import matplotlib.collections  # noqa: F401
    import matplotlib.ticker  # noqa: F401

    layout = heap if isinstance(heap, HeapLayout) else heap_layout(heap, process)
    rows = layout.segments[:max_rows]
    hidden = len(layout.segments) - len(rows)
    fig, ax = _figure(ax, (10, max(2.4, 1.4 + 0.5 * (len(rows) + bool(hidden)))))
    # the segments set the scale (a big block's own reservation is cut off at its edge)
    scale = [s for s in rows if s.region_index >= 0] or rows
    full = max((s.end - s.base for s in scale), default=_GRANULARITY)
    active = max((s.committed_end - s.base for s in scale), default=_GRANULARITY)
    width = full
    if full > 2 * active:  # mostly uncommitted: show the committed parts and a stub
        width = -(-active * 5 // 4 // _PAGE) * _PAGE
    bbox = ax.get_position()
    axes_px = fig.get_figwidth() * fig.dpi * bbox.width
    px_per_byte = axes_px / width
    height = 0.8
    drawn: list[Drawn] = []
    present: list[str] = []
    lines = []
    for y, seg in enumerate(rows):
        for run in _runs(seg.blocks):
            cat = run[0].category
            start, end = run[0].start, run[-1].end
            if cat not in present:
                present.append(cat)
            patch = _rectangle((start - seg.base, y - height / 2), end - start, height, cat,
                               False, start, end)
            ax.add_patch(patch)
            drawn.append(Drawn(start, end, cat, tuple(run), patch, seg.base))
            if len(run) > 1 and (end - start) / len(run) * px_per_byte >= 4:
                lines += [[(b.start - seg.base, y - height / 2),
                           (b.start - seg.base, y + height / 2)] for b in run[1:]]
            shown = min(end, seg.base + width) - max(start, seg.base)
            text = _run_label(run)
            if labels and shown * px_per_byte > 6 * max(map(len, text.split("\n"))) + 8:
                x = (max(start, seg.base) + min(end, seg.base + width)) / 2 - seg.base
                ax.text(x, y, text, ha="center", va="center", fontsize=7.5, linespacing=1.1,
                        **_text_style(cat))
        if seg.end - seg.base > width:  # in the row's bottom right corner
            ax.text(width * 0.998, y + height / 2 - 0.04,
                    f"{format_size(seg.end - seg.base - width)} more \u2192",
                    ha="right", va="bottom", fontsize=7.5, style="italic", zorder=5,
                    bbox=dict(boxstyle="round,pad=0.15", facecolor="white", alpha=0.85,
                              edgecolor="none"))
    ax.add_collection(mpl.collections.LineCollection(lines, colors="white", linewidths=0.6,
                                                     zorder=3))
    ax.set_xlim(0, width)
    ax.set_ylim(len(rows) - 0.5 + (0.6 if hidden else 0), -0.5)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"segment {s.region_index}\n{_KIND_LABEL[s.kind]}"
                        if s.region_index >= 0 else f"{_KIND_LABEL[s.kind]}\n{s.base:#x}"
                        for s in rows], fontsize=8)
    if hidden:
        ax.text(0, len(rows) - 0.15, f"... and {hidden} more reservation"
                f"{'s' * (hidden != 1)} not shown", fontsize=8, style="italic", va="center")
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_major_locator(mpl.ticker.MultipleLocator(_pow2_step(width)))
    ax.xaxis.set_major_formatter(_size_formatter())
    ax.tick_params(axis="x", labelsize=8)
    ax.set_xlabel("offset from the reservation's base", fontsize=8.5)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    t = layout.totals()
    ax.set_title(f"Heap {layout.handle:#x}: {t['busy_blocks']} busy blocks "
                 f"({format_size(t['busy_bytes'])}), {t['free_blocks']} free "
                 f"({format_size(t['free_bytes'])}, largest {format_size(t['largest_free'])})"
                 f"; {format_size(t['committed'])} committed of "
                 f"{format_size(t['reserved'])}", fontsize=10, loc="left")
    _legend(ax, present, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
            frameon=False, handlelength=1.4)
    _record(fig, "pyalloc_drawn", drawn)
    setattr(fig, "pyalloc_layout", layout)
    return fig


def bucket_usage(heap: Any, layout: HeapLayout | None = None) -> list[dict[str, int]]:
    """The front end's buckets in use, as data: one dict per bucket that has slots or busy
    blocks: ``bucket``, ``size`` (the largest request it serves), ``slots`` (slots in its
    committed subsegments, from HeapWalk), ``busy`` (Heap.stats()['bucket_busy']) and
    ``walk_busy`` (busy slots HeapWalk lists; equal to busy unless a thread's cache holds
    some)."""
    layout = layout or heap_layout(heap)
    stats = layout.stats if layout.stats is not None else heap.stats()
    slots = [0] * _LFH_BUCKETS
    walk_busy = [0] * _LFH_BUCKETS
    for b in layout.blocks:
        if b.category in ("LFH busy", "LFH free"):
            k = lfh_bucket(b.end - b.start - _UNIT)
            slots[k] += 1
            walk_busy[k] += b.category == "LFH busy"
    busy = stats["bucket_busy"]
    return [{"bucket": k, "size": lfh_bucket_size(k), "slots": slots[k], "busy": busy[k],
             "walk_busy": walk_busy[k]}
            for k in range(_LFH_BUCKETS) if slots[k] or busy[k]]


def heap_buckets(heap: Any, *, ax: Axes | None = None) -> Figure:
    """The low-fragmentation front end's buckets in use: for each, its slots (the committed
    subsegments' capacity) and how many are busy, from Heap.stats()['bucket_busy'] and
    HeapWalk. ``fig.pyalloc_buckets`` is :func:`bucket_usage`'s data; the bars are
    ``fig.pyalloc_bars`` (bucket -> (slots bar, busy bar))."""
    _mpl()
    layout = heap if isinstance(heap, HeapLayout) else heap_layout(heap)
    usage = bucket_usage(heap, layout)
    fig, ax = _figure(ax, (min(10.0, 5.5 + 0.45 * len(usage)), 2.8))
    bars = {}
    if usage:
        x = range(len(usage))
        full = [100.0 if u["slots"] else 0.0 for u in usage]
        share = [100.0 * min(u["busy"], u["slots"]) / u["slots"] if u["slots"] else 0.0
                 for u in usage]
        cap = ax.bar(x, full, width=0.6, color=BLOCK_PALETTE["LFH free"], edgecolor="#555555",
                     linewidth=0.5, label="free slots")
        used = ax.bar(x, share, width=0.6, color=BLOCK_PALETTE["LFH busy"], label="busy slots")
        for i, u in enumerate(usage):
            bars[u["bucket"]] = (cap[i], used[i])
            ax.text(i, 101, f"{u['busy']}/{u['slots']}", ha="center", va="bottom",
                    fontsize=7.5)
        ax.set_xticks(list(x))
        ax.set_xticklabels([f"\u2264{_exact_size(u['size'])}" for u in usage], fontsize=8,
                           rotation=45 if len(usage) > 12 else 0)
        ax.set_xlim(-0.6, max(len(usage), 4) - 0.4)
        ax.set_ylim(0, 112)
        ax.set_yticks([0, 25, 50, 75, 100])
        ax.set_yticklabels(["0", "25%", "50%", "75%", "100%"], fontsize=8)
        ax.set_xlabel("bucket: the largest request it serves (its slots are 16 bytes more);"
                      " above each bar: busy/slots", fontsize=8.5)
        ax.set_ylabel("occupancy", fontsize=8.5)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    else:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "The low-fragmentation front end serves no bucket: every block "
                "comes from the back end\n(HeapCreate(..., lfh=False), or no size has been "
                "allocated 17 times yet)", ha="center", va="center", fontsize=9,
                transform=ax.transAxes)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    stats = layout.stats if layout.stats is not None else heap.stats()
    total_busy = sum(u["busy"] for u in usage)
    total_slots = sum(u["slots"] for u in usage)
    ax.set_title(f"Low-fragmentation front end of heap {layout.handle:#x}: "
                 f"{stats['lfh_active']} of {_LFH_BUCKETS} buckets active, {total_busy} "
                 f"busy of {total_slots} slots", fontsize=10, loc="left")
    _record(fig, "pyalloc_buckets", usage)
    setattr(fig, "pyalloc_bars", bars)
    return fig


# --- fragmentation over time: samples, replay, the plot --------------------------------


class Sample(NamedTuple):
    """The state of a heap (or of a process's memory) after one step of a workload, in
    bytes. ``committed = live + free + overhead`` (overhead is what is left: headers,
    padding, the LFH's unused slots, the heap's own structures)."""

    step: int
    label: str  # what the step did ("HeapAlloc", "free every other", ...)
    live: int  # requested bytes of live blocks
    committed: int
    reserved: int
    free: int  # bytes of free blocks a request of any size could use
    largest_free: int  # the largest request that fits without growing the heap
    unusable: int  # address space lost in the unusable tails of 64 KiB slots
    blocks: int = 0  # live blocks

    @property
    def overhead(self) -> int:
        return max(0, self.committed - self.live - self.free)

    @property
    def external_fragmentation(self) -> float:
        """1 - largest free / total free: 0 when the free space is one piece (or there is
        none), towards 1 as it is scattered in many small pieces."""
        return 1.0 - self.largest_free / self.free if self.free else 0.0


def _slot_tails(regions: list[Region], owner: int | None = None) -> int:
    """Unusable slot tails after allocations (of owner, if given)."""
    total = 0
    for before, r in zip(regions, regions[1:]):
        if r.unusable and (owner is None or before.owner == owner):
            total += r.size
    return total


class Sampler:
    """Samples a heap (``Heap.stats()``) or a process (``Process.stats()`` and its regions)
    after each step of a workload::

        s = viz.Sampler(heap)
        for n in sizes:
            ptrs.append(p.HeapAlloc(heap, 0, n)); s.sample("HeapAlloc")
        viz.fragmentation(s)

    For a heap, the fields are Heap.stats()'s: live = busy_bytes, free = free_bytes (the
    back end's free blocks), largest_free, committed, reserved, blocks = busy_blocks;
    unusable = the slot tails after the heap's reservations. For a process: live =
    committed = the commit charge, free and largest_free = the free address space and its
    largest region (a reservation bigger than that fails), unusable = every slot tail.
    With ``frames=True`` each sample also keeps a snapshot of the map
    (:func:`heap_layout` or the regions) for :func:`animate`."""

    def __init__(self, target: Any, *, frames: bool = False) -> None:
        self.target = target
        self.heap = target if hasattr(target, "stats") and hasattr(target, "process") else None
        self.process = self.heap.process if self.heap is not None else target
        self.frames: list[Any] | None = [] if frames else None
        self.samples: list[Sample] = []

    def sample(self, label: str = "") -> Sample:
        """Takes one sample (and a snapshot, if keeping frames); returns it."""
        regions = self.process.regions()
        step = len(self.samples)
        if self.heap is not None:
            s = self.heap.stats()
            sample = Sample(step, label, s["busy_bytes"], s["committed"], s["reserved"],
                            s["free_bytes"], s["largest_free"],
                            _slot_tails(regions, _core.OWNER_HEAP), s["busy_blocks"])
            if self.frames is not None:
                self.frames.append(heap_layout(self.heap))
        else:
            s = self.process.stats()
            free = [r.size for r in regions if r.state == _core.MEM_FREE and not r.unusable]
            sample = Sample(step, label, s["committed"], s["committed"], s["reserved"],
                            sum(free), max(free, default=0), _slot_tails(regions),
                            s["allocations"])
            if self.frames is not None:
                self.frames.append(_Regions(regions))
        self.samples.append(sample)
        return sample

    def run(self, steps: Any) -> Sampler:
        """Runs steps (callables, or (label, callable) pairs), sampling after each."""
        for step in steps:
            label, fn = step if isinstance(step, tuple) else (getattr(step, "__name__", ""),
                                                              step)
            fn()
            self.sample(label)
        return self

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"<Sampler of {len(self.samples)} samples>"


class _Regions:
    """A snapshot of a process's regions, drawn by address_space like a Process."""

    closed = False

    def __init__(self, regions: list[Region]) -> None:
        self._regions = regions

    def regions(self) -> list[Region]:
        return list(self._regions)


# Trace op numbers (pyalloc.h's pa_trace_op_t)
_OP_RESERVE, _OP_COMMIT, _OP_DECOMMIT, _OP_RELEASE = 1, 2, 3, 4
_OP_MAP_VIEW, _OP_UNMAP_VIEW = 7, 8
_OP_HEAP_CREATE, _OP_HEAP_DESTROY, _OP_HEAP_ALLOC, _OP_HEAP_REALLOC, _OP_HEAP_FREE = \
    32, 33, 34, 35, 36
_LAYER_MM, _LAYER_HEAP = 1, 3


def _subtract(intervals: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    out = []
    for a, b in intervals:
        if b <= lo or a >= hi:
            out.append((a, b))
        else:
            if a < lo:
                out.append((a, lo))
            if b > hi:
                out.append((hi, b))
    return out


def _add(intervals: list[tuple[int, int]], lo: int, hi: int) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(_subtract(intervals, lo, hi) + [(lo, hi)]):
        if merged and merged[-1][1] == a:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


class _Allocation:
    """replay's model of one reservation: its committed ranges and, once a heap uses it,
    the footprints of its live blocks (kept sorted), and the free bytes between them. The
    bytes below the lowest block it has held are the heap's own (a segment's descriptor,
    the LFH's header chunk, a large block's header), not free."""

    def __init__(self, base: int, size: int) -> None:
        self.base, self.size = base, size
        self.committed: list[tuple[int, int]] = []
        self.heap = False
        self.feet: list[tuple[int, int]] = []  # live blocks' footprints, sorted
        self.floor: int | None = None  # the lowest footprint ever
        self.free = self.largest = 0

    @property
    def committed_bytes(self) -> int:
        return sum(b - a for a, b in self.committed)

    def recount(self) -> None:
        """free and largest: the committed bytes outside the live blocks' footprints, and
        the largest request one such gap holds (after its 16-byte header)."""
        self.free = self.largest = 0
        if not self.heap:
            return
        i = 0
        for lo, hi in self.committed:
            if self.floor is not None:
                lo = max(lo, self.floor)
                if lo >= hi:
                    continue
            at = lo
            while i < len(self.feet) and self.feet[i][1] <= lo:
                i += 1
            j = i
            while j < len(self.feet) and self.feet[j][0] < hi:
                a, b = self.feet[j]
                if a > at:
                    self._gap(a - at)
                at = max(at, b)
                j += 1
            if hi > at:
                self._gap(hi - at)

    def _gap(self, n: int) -> None:
        self.free += n
        self.largest = max(self.largest, n - _UNIT)


def _footprint(user: int, size: int) -> tuple[int, int]:
    """The least a block takes: a 16-byte header, then its bytes rounded up to 16."""
    return user - _UNIT, user + -(-max(size, 1) // _UNIT) * _UNIT


def replay(events: Any) -> list[Sample]:
    """Folds a trace (TraceEvents, oldest first) into one :class:`Sample` per event that
    changed something, from the events alone (a pure function: the same events give the
    same samples).

    The memory manager's events give committed and reserved (pages, exactly; a view counts
    as committed in full) and unusable (each reservation's slot tail). The heap layer's
    events give live and blocks: HeapAlloc (``address`` the block, ``size`` its bytes,
    ``extra`` the heap), HeapReAlloc (``address`` the old block, ``result`` the new one),
    HeapFree, HeapDestroy (its heap's blocks go); a failed call (``result`` 0) changes
    nothing. The reservations the heap's events touch are heap memory, and free and
    largest_free are their committed bytes outside every live block's footprint (a 16-byte
    header and the bytes rounded up to 16), above the lowest block each has held (below it
    are the heap's own structures): what the heap would have free with no other overhead.
    That still counts the LFH's unused slots and subsegment headers as free; :class:`Sampler`
    reads the heap's own statistics instead. In a trace without heap
    events (VirtualAlloc calls), live = committed and free = 0."""
    allocations: dict[int, _Allocation] = {}
    bases: list[int] = []  # sorted
    live: dict[int, tuple[int, int, _Allocation | None]] = {}  # user -> size, heap, alloc
    samples: list[Sample] = []
    t = {"committed": 0, "reserved": 0, "unusable": 0, "live": 0, "free": 0}
    heap_seen = False

    def find(address: int) -> _Allocation | None:
        i = bisect.bisect_right(bases, address) - 1
        if i >= 0:
            a = allocations[bases[i]]
            if address < a.base + a.size:
                return a
        return None

    def settle(a: _Allocation, committed: int, free: int) -> None:
        """After a change to a: recount it and move the totals by the difference."""
        a.recount()
        t["committed"] += a.committed_bytes - committed
        t["free"] += a.free - free

    def add_block(user: int, size: int, heap: int) -> None:
        a = find(user)
        live[user] = (size, heap, a)
        t["live"] += size
        if a is not None:
            before = a.committed_bytes, a.free
            a.heap = True
            foot = _footprint(user, size)
            bisect.insort(a.feet, foot)
            a.floor = foot[0] if a.floor is None else min(a.floor, foot[0])
            settle(a, *before)

    def remove_block(user: int) -> None:
        size, _heap, a = live.pop(user)
        t["live"] -= size
        if a is not None and allocations.get(a.base) is a:
            before = a.committed_bytes, a.free
            a.feet.remove(_footprint(user, size))
            settle(a, *before)

    for e in events:
        hit = find(e.address)
        if e.layer == _LAYER_MM:
            if e.result < 0:
                continue
            if e.op in (_OP_RESERVE, _OP_MAP_VIEW):
                a = allocations[e.address] = _Allocation(e.address, e.size)
                bisect.insort(bases, e.address)
                t["reserved"] += e.size
                t["unusable"] += -e.size % _GRANULARITY
                if e.op == _OP_MAP_VIEW:
                    a.committed = [(a.base, a.base + a.size)]
                    settle(a, 0, 0)
            elif e.op in (_OP_RELEASE, _OP_UNMAP_VIEW) and e.address in allocations:
                a = allocations.pop(e.address)
                bases.remove(a.base)
                t["reserved"] -= a.size
                t["unusable"] -= -a.size % _GRANULARITY
                t["committed"] -= a.committed_bytes
                t["free"] -= a.free
            elif e.op in (_OP_COMMIT, _OP_DECOMMIT) and hit is not None:
                before = hit.committed_bytes, hit.free
                change = _add if e.op == _OP_COMMIT else _subtract
                hit.committed = change(hit.committed, e.address, e.address + e.size)
                settle(hit, *before)
            else:
                continue
        elif e.layer == _LAYER_HEAP:
            if e.op == _OP_HEAP_ALLOC and e.address and e.result:
                add_block(e.address, e.size, e.extra)
            elif e.op == _OP_HEAP_FREE and e.result and e.address in live:
                remove_block(e.address)
            elif e.op == _OP_HEAP_REALLOC and e.result:
                if e.address in live:
                    remove_block(e.address)
                add_block(e.result, e.size, e.extra)
            elif e.op == _OP_HEAP_CREATE and hit is not None:
                before = hit.committed_bytes, hit.free
                hit.heap = True
                settle(hit, *before)
            elif e.op == _OP_HEAP_DESTROY:
                for user in [u for u, (_s, heap, _a) in live.items() if heap == e.address]:
                    remove_block(user)
            else:
                continue
            heap_seen = True
        else:
            continue
        if heap_seen:
            sample_live, free = t["live"], t["free"]
            largest = max((a.largest for a in allocations.values() if a.heap), default=0)
        else:
            sample_live, free, largest = t["committed"], 0, 0
        samples.append(Sample(len(samples), f"{LAYERS.get(e.layer, str(e.layer))}."
                              f"{_core.trace_op_name(e.op) or e.op}", sample_live,
                              t["committed"], t["reserved"], free, largest, t["unusable"],
                              len(live) if heap_seen else len(allocations)))
    return samples


def samples_of(source: Any) -> list[Sample]:
    """Samples from a :class:`Sampler`, a trace (TraceEvents: :func:`replay`) or a list of
    samples."""
    if isinstance(source, Sampler):
        return list(source.samples)
    items = list(source)
    if items and not isinstance(items[0], Sample):
        return replay(items)
    return items


def fragmentation(source: Any, *, ax: Axes | None = None) -> Figure:
    """Fragmentation over time, from a :class:`Sampler`, a trace (via :func:`replay`) or
    samples: the committed bytes stacked as live bytes, overhead and free bytes, the
    largest free block (dashed), and on the right axis the external fragmentation, 1 -
    largest free / total free. For a process's samples, whose free bytes are address space
    rather than part of the commit, free and the largest free region are lines (left out
    when they dwarf the commit, as a 64 GiB address space does). ``fig.pyalloc_samples`` holds the samples and
    ``fig.pyalloc_series`` the plotted values by name."""
    mpl = _mpl()
    import matplotlib.ticker  # noqa: F401

    samples = samples_of(source)
    if not samples:
        raise ValueError("no samples to draw")
    fig, ax = _figure(ax, (10, 3.6))
    x = [s.step for s in samples] + [samples[-1].step + 1]  # each sample holds for one step

    def post(values: list[Any]) -> list[Any]:
        return values + values[-1:]
    series: dict[str, list[Any]] = {
        "live": [s.live for s in samples],
        "overhead": [s.overhead for s in samples],
        "free": [s.free for s in samples],
        "committed": [s.committed for s in samples],
        "largest free": [s.largest_free for s in samples],
        "external fragmentation": [s.external_fragmentation for s in samples],
        "unusable": [s.unusable for s in samples],
    }
    # a heap's free bytes are part of what it committed (stacked up to the committed line);
    # a process's free address space is not, and is drawn as lines when it is commensurate
    stack_free = all(s.live + s.overhead + s.free == s.committed for s in samples)
    free_lines = stack_free or max(series["free"]) <= 16 * max(max(series["committed"]), 1)
    layers = [("live", "live bytes", BLOCK_PALETTE["Busy block"]),
              ("overhead", "overhead", BLOCK_PALETTE["Overhead"])]
    if stack_free:
        layers.append(("free", "free bytes", BLOCK_PALETTE["Free block"]))
    bottom = [0] * len(samples)
    for key, label, colour in layers:
        top = [b + v for b, v in zip(bottom, series[key])]
        ax.fill_between(x, post(bottom), post(top), step="post", facecolor=colour,
                        edgecolor="none", label=label, alpha=0.9)
        bottom = top
    ax.step(x, post(series["committed"]), where="post", color="black", linewidth=1.0,
            label="committed")
    if free_lines and not stack_free:
        ax.step(x, post(series["free"]), where="post", color="#B5A800", linewidth=1.6,
                label="free address space")
    if free_lines:
        ax.step(x, post(series["largest free"]), where="post", color="black",
                linewidth=1.2, linestyle=(0, (4, 2)),
                label="largest free block" if stack_free else "largest free region")
    if any(series["unusable"]):
        ax.step(x, post(series["unusable"]), where="post", color="#777777", linewidth=1.0,
                linestyle=":", label="unusable slot tails")
    ax.set_xlim(x[0], x[-1])
    peak = max(bottom + series["committed"] + series["unusable"] + [_UNIT] +
               (series["free"] if free_lines else []))
    ax.set_ylim(0, peak * 1.08)
    ax.yaxis.set_major_locator(mpl.ticker.MultipleLocator(_pow2_step(peak, 6)))
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(
        lambda v, _pos: format_size(int(v)) if v else "0"))
    ax.tick_params(labelsize=8)
    ax.set_ylabel("bytes", fontsize=8.5)
    labelled = len(samples) <= 16 and all(s.label for s in samples)
    if labelled:  # each step named under it
        ax.set_xticks([s.step + 0.5 for s in samples])
        ax.set_xticklabels([s.label for s in samples], rotation=30, ha="right", fontsize=7.5)
    else:
        ax.xaxis.set_major_locator(mpl.ticker.MaxNLocator(10, integer=True))
        ax.set_xlabel("step (one sample after each)", fontsize=8.5)
    right = ax.twinx()
    right.step(x, post([100 * f for f in series["external fragmentation"]]), where="post",
               color=PALETTE["Shareable"], linewidth=1.6,
               label="external fragmentation (right axis)")
    right.set_ylim(0, 105)
    right.yaxis.set_major_formatter(mpl.ticker.PercentFormatter())
    right.tick_params(labelsize=8, colors=PALETTE["Shareable"])
    right.set_ylabel("1 \u2212 largest free / free", fontsize=8.5, color=PALETTE["Shareable"])
    for a in (ax, right):
        a.spines["top"].set_visible(False)
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels()
    right.legend(handles + h2, labels + l2, loc="upper center",
                 bbox_to_anchor=(0.5, -0.36 if labelled else -0.2), ncol=3, fontsize=8,
                 frameon=False)
    last = samples[-1]
    ax.set_title(f"After {len(samples)} step{'s' * (len(samples) != 1)}: "
                 f"{format_size(last.live)} live in "
                 f"{last.blocks} blocks, {format_size(last.committed)} committed, "
                 f"{format_size(last.free)} free (largest {format_size(last.largest_free)}): "
                 f"external fragmentation {last.external_fragmentation:.0%}", fontsize=10,
                 loc="left")
    _record(fig, "pyalloc_samples", samples)
    setattr(fig, "pyalloc_series", series)
    return fig


# --- animate, live, show -------------------------------------------------------------------


def _is_heap(obj: Any) -> bool:
    return hasattr(obj, "stats") and hasattr(obj, "process") and hasattr(obj, "destroyed")


def _grid(size: tuple[float, float], ratios: list[float]) -> tuple[Figure, list[Axes]]:
    """A new figure (as :func:`_figure` makes them) with one column of axes."""
    fig, ax = _figure(None, size)
    ax.remove()
    return fig, list(fig.subplots(len(ratios), 1, height_ratios=ratios, squeeze=False)[:, 0])


def _draw_map(frame: Any, ax: Axes) -> None:
    if isinstance(frame, HeapLayout):
        heap_map(frame, ax=ax)
    else:
        address_space(frame, ax=ax)


def animate(source: Any, steps: Any = None, *, interval: int = 500,
            timeline: bool = True) -> Any:
    """A matplotlib FuncAnimation replaying a workload: the heap map (or the address-space
    map) after each step, above the fragmentation timeline so far. ``source`` is a
    :class:`Sampler` made with ``frames=True`` that has sampled the workload, or a heap or
    a process with ``steps`` (callables, or (label, callable) pairs), which are run now,
    sampling once before and after each. Every frame is drawn from a snapshot, so the
    animation can be drawn again; in a notebook,
    ``IPython.display.HTML(anim.to_jshtml())`` shows it with a player.
    ``anim.pyalloc_sampler`` is the Sampler."""
    mpl = _mpl()
    import matplotlib.animation  # noqa: F401

    if isinstance(source, Sampler):
        sampler = source
        if sampler.frames is None:
            raise ValueError("animate needs the maps: make the Sampler with frames=True")
    else:
        if steps is None:
            raise ValueError("animate(heap_or_process, steps): the steps to run")
        sampler = Sampler(source, frames=True)
        sampler.sample("start")
        sampler.run(steps)
    frames, samples = list(sampler.frames or []), sampler.samples
    if not frames:
        raise ValueError("the Sampler has no samples yet")
    if isinstance(frames[0], HeapLayout):
        rows = max(len(f.segments) for f in frames)
        height = max(2.4, 1.4 + 0.5 * min(rows, 12))
    else:
        height = 4.5
    fig, _ = _grid((10, height + (3.2 if timeline else 0)),
                   [height, 3.2] if timeline else [height])
    # frames are many: a fixed layout (no constrained-layout pass each) at 80 dpi
    fig.set_layout_engine("none")
    fig.set_dpi(80)
    peak = max(max(s.committed, s.live + s.overhead + s.free, s.unusable) for s in samples)

    def draw(i: int) -> list[Any]:
        fig.clear()
        for name in ("pyalloc_drawn", "pyalloc_samples"):
            if hasattr(fig, name):
                delattr(fig, name)
        axes = fig.subplots(2 if timeline else 1, 1, squeeze=False,
                            height_ratios=[height, 3.2] if timeline else [height],
                            gridspec_kw=dict(left=0.13, right=0.82, top=0.9, bottom=0.2,
                                             hspace=0.8))[:, 0]
        _draw_map(frames[i], axes[0])
        label = samples[i].label
        axes[0].set_title(f"step {i}/{len(frames) - 1}" + (f": {label}" if label else "") +
                          "\n" + axes[0].get_title(loc="left"), fontsize=10, loc="left")
        if timeline:
            fragmentation(samples[:i + 1], ax=axes[1])
            axes[1].set_xlim(0, len(samples))
            if samples[0].free <= 4 * max(peak, 1):
                axes[1].set_ylim(0, peak * 1.08)
        setattr(fig, "pyalloc_frame", i)
        return []

    anim = mpl.animation.FuncAnimation(fig, draw, frames=len(frames), interval=interval,
                                       repeat=False)
    anim.pyalloc_sampler = sampler
    return anim


class LiveView:
    """A picture of a process (its address-space map) or of a heap (its heap map) that
    redraws as allocations happen. In Jupyter, displaying it shows the picture in an output
    that :meth:`update` replaces (an IPython display handle); anywhere, :attr:`figure` is
    the latest picture. Made by :func:`live`; a context manager (the trace it reads stops
    at the end, after a last update)."""

    def __init__(self, target: Any, *, every: float = 0.25) -> None:
        self.heap = target if _is_heap(target) else None
        self.process = self.heap.process if self.heap is not None else target
        self.every = every
        self.trace = self.process.trace()
        self.trace.__enter__()
        self.handle: Any = None
        self.redraws = 0
        self._drawn_at = 0.0
        self._state: Any = None
        self.figure = self._draw()

    @property
    def events(self) -> list[Any]:
        """Every event the view has read (a :class:`~pyalloc.Trace`)."""
        return self.trace

    def _now_state(self) -> Any:
        if self.heap is not None:
            s = self.heap.stats()
            return tuple(v for k, v in s.items() if k != "bucket_busy")
        return tuple(self.process.stats().values())

    def _draw(self) -> Figure:
        self._state = self._now_state()
        fig = heap_map(self.heap) if self.heap is not None else address_space(self.process)
        self.redraws += 1
        self._drawn_at = time.monotonic()
        return fig

    def _image(self) -> Any:
        from IPython.display import Image
        return Image(data=to_png(self.figure), format="png")

    def update(self, *, force: bool = False) -> list[Any]:
        """Reads the events recorded since the last update and redraws if anything changed
        (an event, or the heap's or process's statistics: a HeapAlloc inside committed
        memory records no memory-manager event), at most once per ``every`` seconds unless
        force. Returns the new events."""
        new = self.trace.poll() if self.trace._active else []
        if not force and time.monotonic() - self._drawn_at < self.every:
            return new
        if force or new or self._now_state() != self._state:
            self.figure = self._draw()
            if self.handle is not None:
                self.handle.update(self._image())
        return new

    def _ipython_display_(self) -> None:
        from IPython.display import display
        self.handle = display(self._image(), display_id=True)

    def close(self) -> None:
        """A last update, then stops reading the trace."""
        if self.trace._active:
            self.update(force=True)
            self.trace.__exit__(None, None, None)

    def __enter__(self) -> LiveView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        what = f"heap {int(self.heap):#x}" if self.heap is not None else "process"
        return f"<LiveView of {what}: {self.redraws} drawings, {len(self.trace)} events>"


def live(target: Any, *, every: float = 0.25) -> LiveView:
    """A :class:`LiveView` of a process (address-space map) or heap (heap map)::

        view = viz.live(heap)
        view                      # in Jupyter: shows the picture
        for n in sizes:
            p.HeapAlloc(heap, 0, n)
            view.update()         # redraws (at most every `every` seconds)
        view.close()              # the last state, and the trace stops
    """
    return LiveView(target, every=every)


def show(obj: Any) -> Figure:
    """The picture of anything pyalloc has: a Heap (its map, above its front end's
    buckets if it uses any), a HeapLayout (its map), a Process (its address-space map), a Sampler,
    a trace or samples (:func:`fragmentation`)."""
    if _is_heap(obj):
        layout = heap_layout(obj)
        if not bucket_usage(obj, layout):  # no front end to show
            return heap_map(layout)
        rows = min(len(layout.segments), 12)
        top = max(2.4, 1.4 + 0.5 * rows)
        fig, (a, b) = _grid((10, top + 2.8), [top, 2.8])
        heap_map(layout, ax=a)
        heap_buckets(layout, ax=b)
        return fig
    if isinstance(obj, HeapLayout):
        return heap_map(obj)
    if hasattr(obj, "regions"):
        return address_space(obj)
    return fragmentation(obj)


def heaps_html(process: Process) -> str:
    """An HTML table of the process's heaps ('' when it has none), for Process._repr_html_."""
    rows = []
    for handle in process_heaps(process):
        layout = heap_layout(handle, process)
        t = layout.totals()
        segments = [s for s in layout.segments if s.region_index >= 0]
        cells = [f"{handle:#x}", str(len(segments)),
                 format_size(t["committed"]), format_size(t["reserved"]),
                 f"{t['busy_blocks']} ({format_size(t['busy_bytes'])})",
                 f"{t['free_blocks']} ({format_size(t['free_bytes'])})",
                 format_size(t["largest_free"]),
                 f"{t['lfh_slots'] - t['lfh_free']}/{t['lfh_slots']}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{c}</th>" for c in _HEAP_COLUMNS)
    return (f"<table><caption>Heaps</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


_HEAP_COLUMNS = ("Heap", "Segments", "Committed", "Reserved", "Busy blocks", "Free blocks",
                 "Largest free", "LFH slots busy")


# --- Jupyter reprs (Process._repr_png_ / _repr_html_ delegate here) ------------------------


def repr_png(process: Process) -> bytes | None:
    """The address-space map as PNG; None if matplotlib is missing or the process closed."""
    if getattr(process, "closed", False):
        return None
    try:
        _mpl()
    except ImportError:
        return None
    return to_png(address_space(process))


def repr_html(process: Process) -> str | None:
    """The map as an inline PNG and the summary as an HTML table; without matplotlib, the
    text map (:func:`pyalloc.textmap.format_map`) in a <pre> block. None if closed."""
    if getattr(process, "closed", False):
        return None
    try:
        _mpl()
    except ImportError:
        return f"<pre>{html.escape(format_map(process))}</pre>"
    png = base64.b64encode(to_png(address_space(process))).decode("ascii")
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in _table_cells(region_summary(process)))
    return (f'<div><img src="data:image/png;base64,{png}" alt="address-space map"/>'
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")
