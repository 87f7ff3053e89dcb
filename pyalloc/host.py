"""The program's own process, when Python itself runs on pyalloc (``pyalloc run -- python``).

Under the preload library every malloc of the interpreter (and of the C libraries it loads)
goes CRT -> HeapAlloc -> VirtualAlloc in the preload library's current process. The module's
functions (:func:`pyalloc.VirtualAlloc`, :func:`pyalloc.malloc`, ...) act on another one, the
extension's :func:`pyalloc.current_process`, so that nothing a Python caller does can free,
protect or release the interpreter's own memory. :func:`host` gives a read-only view of the
program's process instead: its address space, its heaps and what HeapWalk sees in them, each
call a fresh copy. It draws in Jupyter like a :class:`pyalloc.Process`::

    $ pyalloc run -- python -m jupyter lab     # then, in a notebook:
    >>> h = pyalloc.host()
    >>> h                                      # the interpreter's address-space map
    >>> h.find_block(ctypes.addressof(buf))    # the heap block under a 100 KB ctypes buffer
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from . import _core

if TYPE_CHECKING:
    from . import Region

__all__ = ["HostProcess", "host"]


class HostProcess:
    """Read-only view of the process the preload library runs this program in (see
    :func:`host`). Methods named as :class:`pyalloc.Process`'s return the same kinds of
    values; heaps are plain handles (ints)."""

    closed = False

    def regions(self) -> list[Region]:
        """The whole address space, as :meth:`pyalloc.Process.regions`."""
        from . import Region

        return [Region(*r) for r in _core._host_regions()]

    def stats(self) -> dict[str, int]:
        """Reserved, committed and peak committed bytes ..., as :meth:`pyalloc.Process.stats`."""
        return _core._host_stats()

    def GetProcessHeap(self) -> int:
        """The handle of the heap the program's malloc uses."""
        return _core._host_process_heap()

    def GetProcessHeaps(self) -> list[int]:
        """The handles of all the program's heaps."""
        return _core._host_heaps()

    def HeapWalk(self, heap: int) -> Iterator[Any]:
        """Every entry HeapWalk gives for heap (PROCESS_HEAP_ENTRY), taken at once under the
        heap's lock. WinError(ERROR_INVALID_HANDLE) for a handle that is not one of the
        program's heaps."""
        return iter(_core._host_heap_walk(int(heap)))

    def heap_stats(self, heap: int | None = None) -> dict[str, Any]:
        """:meth:`pyalloc.Heap.stats` of heap (default: the process heap)."""
        return _core._host_heap_stats(self.GetProcessHeap() if heap is None else int(heap))

    def find_block(self, address: int) -> Any | None:
        """The HeapWalk entry of a block (busy or free) of one of the program's heaps that
        holds address, or None (the address is not in a heap block: CPython's small objects,
        for one, live in arenas that its own allocator maps, not in malloc's blocks)."""
        for heap in self.GetProcessHeaps():
            for e in self.HeapWalk(heap):
                if not e.wFlags & _core.PROCESS_HEAP_REGION and e.lpData <= address < e.lpData + max(e.cbData, 1):
                    return e
        return None

    def _heap_handles(self) -> list[int]:  # for pyalloc.viz.process_heaps
        return self.GetProcessHeaps()

    def __repr__(self) -> str:
        s = self.stats()
        return (f"<pyalloc.HostProcess: {s['committed'] >> 10} KiB committed, "
                f"{s['reserved'] >> 10} KiB reserved, {len(self.GetProcessHeaps())} heaps>")

    def _repr_png_(self) -> bytes | None:
        from . import viz

        return viz.repr_png(self)  # type: ignore[arg-type]

    def _repr_html_(self) -> str | None:
        from . import viz

        html = viz.repr_html(self)  # type: ignore[arg-type]
        return None if html is None else html + viz.heaps_html(self)  # type: ignore[arg-type]


def host() -> HostProcess | None:
    """The program's own process when this Python runs on pyalloc's preload library
    (``pyalloc run -- python ...``, or LD_PRELOAD set to :func:`pyalloc.preload_path`), as a
    read-only :class:`HostProcess`; None otherwise (or when the preload library loaded is
    not of this build)."""
    return HostProcess() if _core._host_available() else None
