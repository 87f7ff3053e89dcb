"""Pictures of a process's memory, for Jupyter: matplotlib figures drawn from real data.

::

    from pyalloc import viz
    viz.address_space(p)             # the address-space map, VMMap's colours and vocabulary
    viz.region_table(p)              # VMMap's summary table (viz.region_summary(p): as data)
    viz.allocation_anatomy(p, addr)  # one allocation to scale: slots, pages, guard, tail

matplotlib is imported only inside these functions (``import pyalloc`` never imports it;
``pip install 'pyalloc[viz]'`` brings it). Every function takes ``ax=None`` (``None``: draw
on a new :class:`matplotlib.figure.Figure`, not one registered with pyplot, so nothing is
shown twice and nothing leaks) and returns the Figure. The figure keeps what it drew, so
tests and notebooks can check a picture against ``VirtualQuery``:

- ``fig.pyalloc_drawn``: a list of :class:`Drawn`, one per rectangle (address range,
  category, the :class:`~pyalloc.Region` it shows, the matplotlib patch); each patch's gid
  is ``"<category>@<start:#x>-<end:#x>"``;
- ``fig.pyalloc_summary``: :func:`region_table`'s rows.

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
Unusable's hatching. Okabe-Ito's yellow ``#F0E442`` and black are left for the higher
layers' anatomy (busy and free heap blocks, headers).

Adding a layer to the anatomy
-----------------------------
:func:`allocation_anatomy` draws one band per layer that owns the address, lowest layer at
the bottom, on one address axis. A layer is a function ``spans(process, address)``
returning the :class:`Span` list it sees at that address (or ``None`` if the address is
not its), registered with :func:`register_anatomy_layer`; the VirtualAlloc layer (2) below
is the model. Span categories are :data:`PALETTE` keys; a layer adding categories adds
them to :data:`PALETTE` (and to the table above).
"""
from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from . import _core
from .textmap import format_map, format_size

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

_HATCH = {"Unusable": "////"}
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
    return {"color": _text_colour(PALETTE[cat]), "zorder": 4,
            "bbox": dict(boxstyle="round,pad=0.15", facecolor=PALETTE[cat], edgecolor="none")}


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
    return mpl.patches.Rectangle(xy, width, height, facecolor=PALETTE[cat],
                                 edgecolor="white" if hatch else "none", hatch=hatch,
                                 linewidth=0, gid=f"{cat}@{start:#x}-{end:#x}")


def _legend(ax: Axes, categories: list[str], hatched: bool = False, **kw: Any) -> None:
    """A legend of the categories (in PALETTE order), and of the reserved-part hatching."""
    mpl = _mpl()
    handles = [mpl.patches.Patch(facecolor=PALETTE[c], edgecolor="#555555", linewidth=0.5,
                                 hatch=_HATCH.get(c), label=c)
               for c in PALETTE if c in categories]
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
    for layer, spans in bands:
        narrow = [sp for sp in spans if sp.label and
                  (sp.end - sp.start) / size * axes_px < 6.2 * len(sp.label) + 10]
        callouts = []
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
    fig, ax = _figure(ax, (10, 1.3 + 0.45 * (ruler_y + 0.4)))

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
            if sp.label and all(sp is not c for c, _, _ in callouts) and sp not in unlabelled:
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
    ax.set_ylim(0, ruler_y + ruler_h + 0.05)
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
    _legend(ax, present, hatched, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
            frameon=False, handlelength=1.4)
    _record(fig, "pyalloc_drawn", drawn)
    return fig


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
