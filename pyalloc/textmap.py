"""A text address-space map, VMMap style, for terminals (``python -m pyalloc demo``)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import _core

if TYPE_CHECKING:
    from . import Process, Region

__all__ = ["format_size", "format_map"]


def format_size(n: int) -> str:
    """1536 -> '1.5 KiB'; exact byte counts below 1 KiB."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            v = n / (1 << shift)
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


_STATE = {_core.MEM_FREE: "free", _core.MEM_RESERVE: "reserve", _core.MEM_COMMIT: "commit"}


def _row(r: Region) -> str:
    protect = "" if r.state == _core.MEM_FREE else _core.protect_name(r.protect) if r.protect else "-"
    alloc = f"{r.allocation_base:#x}" if r.allocation_base else ""
    return (f"{r.base:#016x}  {r.end:#016x}  {format_size(r.size):>9}  {r.kind:<13}"
            f"{_STATE.get(r.state, hex(r.state)):<8} {protect:<24} {alloc}")


def format_map(process: Process, *, zoom: bool = True) -> str:
    """The regions of a process, one line each. With zoom, the big free ranges before the
    first and after the last allocation are shown as one line each."""
    regions = process.regions()
    used = [i for i, r in enumerate(regions) if r.state != _core.MEM_FREE]
    if zoom and used:
        lo, hi = max(used[0] - 1, 0), min(used[-1] + 2, len(regions))
        regions = regions[lo:hi]
    header = (f"{'start':<18}{'end':<18}{'size':>9}  {'kind':<13}{'state':<8} "
              f"{'protect':<24} allocation base")
    lines = [header, "-" * len(header)]
    lines += [_row(r) for r in regions]
    st = process.stats()
    lines.append("")
    lines.append(f"{st['allocations']} allocations, {format_size(st['reserved'])} reserved, "
                 f"{format_size(st['committed'])} committed (peak {format_size(st['peak_committed'])})")
    return "\n".join(lines)
