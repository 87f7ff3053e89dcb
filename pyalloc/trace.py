"""Event traces: what every layer did, in order.

>>> with process.trace() as events:
...     p = process.VirtualAlloc(None, 8, MEM_COMMIT | MEM_RESERVE, PAGE_READWRITE)
>>> [e.op_name for e in events]
['reserve', 'commit']

The C core records into a ring buffer per process (cheap when off). ``events`` is filled when
the ``with`` block ends; ``Trace.poll()`` returns what arrived since the last poll, for live
views. Events overwritten before they were read (a full ring) are counted in ``lost``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from . import _core

if TYPE_CHECKING:
    from . import Process

__all__ = ["TraceEvent", "Trace", "LAYERS"]

LAYERS = {1: "mm", 2: "virtual", 3: "heap", 4: "crt", 5: "new"}


class TraceEvent(NamedTuple):
    """One recorded operation. ``result`` is the NTSTATUS (0 = success) for the memory
    manager's events."""

    seq: int
    time_ns: int
    layer: int
    op: int
    address: int
    size: int
    flags: int
    extra: int
    result: int

    @property
    def layer_name(self) -> str:
        return LAYERS.get(self.layer, str(self.layer))

    @property
    def op_name(self) -> str:
        return _core.trace_op_name(self.op) or str(self.op)

    @property
    def ok(self) -> bool:
        return self.result >= 0

    def __repr__(self) -> str:
        status = "" if self.result == 0 else f" result={self.result & 0xFFFFFFFF:#x}"
        return (f"<{self.layer_name}.{self.op_name} {self.address:#x} size={self.size:#x}"
                f" flags={self.flags:#x}{status}>")


class Trace(list):
    """The events of one ``with process.trace():`` block (a list of TraceEvent)."""

    def __init__(self, process: Process, capacity: int = 0) -> None:
        super().__init__()
        self.process = process
        self.capacity = capacity
        self.lost = 0
        self._since = 0
        self._active = False

    def __enter__(self) -> Trace:
        self._since = self.process._trace_start(self.capacity)
        self._active = True
        return self

    def poll(self) -> list[TraceEvent]:
        """Reads the events recorded since the last poll, appends them, and returns them."""
        raw, self._since, lost = self.process._trace_read(self._since)
        self.lost += lost
        new = [TraceEvent(*r) for r in raw]
        self.extend(new)
        return new

    def __exit__(self, *exc: object) -> None:
        if self._active:
            self.poll()
            self.process._trace_stop()
            self._active = False

    def __repr__(self) -> str:
        return f"<Trace of {len(self)} events{', %d lost' % self.lost if self.lost else ''}>"
