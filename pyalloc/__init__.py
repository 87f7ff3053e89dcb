"""pyalloc: the Windows memory-allocation stack, in C, running for real on Linux.

The stack, bottom up (each layer calls only the one below it):

1. the kernel-mode memory manager: one simulated address space per :class:`Process`;
2. the VirtualAlloc family: :func:`VirtualAlloc`, :func:`VirtualFree`, :func:`VirtualProtect`,
   :func:`VirtualQuery`, :func:`GetSystemInfo`, :func:`GetWriteWatch`, :func:`ResetWriteWatch`;
3. the heap: :func:`HeapCreate`, :func:`HeapAlloc` ... (:class:`Heap`);
4. the CRT: :func:`malloc`, :func:`free`, :func:`_msize`, :func:`_aligned_malloc` ..., and
   the debug CRT of ``Process(crt_debug=True)``: :func:`_CrtCheckMemory`,
   :func:`_CrtDumpMemoryLeaks`, :func:`_CrtSetDbgFlag`, :func:`_CrtSetBreakAlloc`, with its
   reports as :class:`CrtReport` warnings;
5. new/delete: :func:`operator_new`, :func:`operator_delete`, :func:`set_new_handler`, and
   :func:`new` / :func:`delete` / :func:`new_array` / :func:`delete_array`, which build ctypes
   objects in process memory.

Every Windows-named function exists at module level, acting on :func:`current_process`, and
as a method of :class:`Process` with the same signature. Pointers are ints (None or 0 for
NULL). Failures raise :class:`WinError` (the CRT: :class:`CrtError`; operator new:
:class:`BadAlloc`); faults raise :class:`AccessViolation` or :class:`GuardPageViolation`;
nothing a Python caller does can crash the interpreter.

When Python itself runs on the stack (``pyalloc run -- python``), :func:`host` shows the
interpreter's own process, read-only.
"""
from __future__ import annotations

from typing import NamedTuple

from . import errors
from .errors import (
    AccessViolation,
    BadAlloc,
    BadArrayNewLength,
    CrtError,
    CrtInvalidParameter,
    CrtMemoryError,
    CrtReport,
    GuardPageViolation,
    HeapException,
    StructuredException,
    WinError,
    WinMemoryError,
)
from .trace import Trace, TraceEvent
from . import _core
from .host import HostProcess, host
from ._core import *  # noqa: F401,F403  (constants, structures, Windows-named functions)
from ._core import (
    MEMORY_BASIC_INFORMATION,
    SYSTEM_INFO,
    CrtBlock,
    FormatMessage,
    current_process,
    error_name,
    protect_name,
)

# The CRT's Windows names begin with an underscore, which `import *` skips: listed here.
from ._core import (  # noqa: F401
    _CLIENT_BLOCK,
    _CRT_ASSERT,
    _CRT_BLOCK,
    _CRT_ERROR,
    _CRT_WARN,
    _CRTDBG_ALLOC_MEM_DF,
    _CRTDBG_CHECK_ALWAYS_DF,
    _CRTDBG_CHECK_CRT_DF,
    _CRTDBG_CHECK_DEFAULT_DF,
    _CRTDBG_CHECK_EVERY_16_DF,
    _CRTDBG_CHECK_EVERY_128_DF,
    _CRTDBG_CHECK_EVERY_1024_DF,
    _CRTDBG_DELAY_FREE_MEM_DF,
    _CRTDBG_LEAK_CHECK_DF,
    _CRTDBG_REPORT_FLAG,
    _CRTDBG_RESERVED_DF,
    _FREE_BLOCK,
    _HEAP_MAXREQ,
    _IGNORE_BLOCK,
    _MAX_BLOCKS,
    _NORMAL_BLOCK,
    _UNKNOWN_BLOCK,
    _aligned_free,
    _aligned_malloc,
    _aligned_msize,
    _aligned_offset_malloc,
    _aligned_realloc,
    _CrtCheckMemory,
    _CrtDumpMemoryLeaks,
    _CrtIsValidHeapPointer,
    _CrtReportBlockType,
    _CrtSetBreakAlloc,
    _CrtSetDbgFlag,
    _expand,
    _get_heap_handle,
    _msize,
    _query_new_mode,
    _recalloc,
    _set_new_mode,
)

_CRT_NAMES = [
    "_CLIENT_BLOCK", "_CRT_ASSERT", "_CRT_BLOCK", "_CRT_ERROR", "_CRT_WARN",
    "_CRTDBG_ALLOC_MEM_DF", "_CRTDBG_CHECK_ALWAYS_DF", "_CRTDBG_CHECK_CRT_DF",
    "_CRTDBG_CHECK_DEFAULT_DF", "_CRTDBG_CHECK_EVERY_16_DF", "_CRTDBG_CHECK_EVERY_128_DF",
    "_CRTDBG_CHECK_EVERY_1024_DF", "_CRTDBG_DELAY_FREE_MEM_DF", "_CRTDBG_LEAK_CHECK_DF",
    "_CRTDBG_REPORT_FLAG", "_CRTDBG_RESERVED_DF", "_FREE_BLOCK", "_HEAP_MAXREQ",
    "_IGNORE_BLOCK", "_MAX_BLOCKS", "_NORMAL_BLOCK", "_UNKNOWN_BLOCK", "_aligned_free",
    "_aligned_malloc", "_aligned_msize", "_aligned_offset_malloc", "_aligned_realloc",
    "_CrtCheckMemory", "_CrtDumpMemoryLeaks", "_CrtIsValidHeapPointer", "_CrtReportBlockType",
    "_CrtSetBreakAlloc", "_CrtSetDbgFlag", "_expand", "_get_heap_handle", "_msize",
    "_query_new_mode", "_recalloc", "_set_new_mode",
]

__version__ = "0.1.0"


def preload_path() -> str:
    """The path of the preload library that puts an unmodified Linux program's malloc,
    calloc, realloc, free, posix_memalign, aligned_alloc, memalign, valloc, pvalloc and
    malloc_usable_size on pyalloc's CRT -> HeapAlloc -> VirtualAlloc stack
    (``LD_PRELOAD=$(python -c 'import pyalloc; print(pyalloc.preload_path())') program``, or
    ``pyalloc run -- program``)."""
    import glob
    import os

    found = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "libpyalloc_preload*.so")))
    if not found:
        raise FileNotFoundError("the preload library was not built (pip install . builds it)")
    return found[0]


class Region(NamedTuple):
    """One entry of :meth:`Process.regions`: a VirtualQuery region, or the unusable tail of an
    allocation's last 64 KiB slot."""

    base: int
    size: int
    state: int  # MEM_FREE, MEM_RESERVE or MEM_COMMIT
    protect: int
    type: int  # MEM_PRIVATE, MEM_MAPPED or 0
    allocation_base: int
    allocation_protect: int
    owner: int  # OWNER_APP, OWNER_HEAP, ...
    unusable: bool
    mapped_file: bool = False  # a view of a file (False for pagefile-backed views)

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def kind(self) -> str:
        """The region's category in VMMap's vocabulary: Free, Unusable, Reserved,
        Private Data, Heap, Mapped File (a view of a file) or Shareable (a view of
        pagefile-backed memory)."""
        if self.unusable:
            return "Unusable"
        if self.state == _core.MEM_FREE:
            return "Free"
        if self.owner == _core.OWNER_HEAP:
            return "Heap"
        if self.type == _core.MEM_MAPPED:
            return "Mapped File" if self.mapped_file else "Shareable"
        if self.state == _core.MEM_RESERVE:
            return "Reserved"
        return "Private Data"


class Process(_core.Process):
    """An isolated simulated Windows process (see the C type's docstring for options)."""

    def regions(self) -> list[Region]:
        """Walks the whole usable address space, lowest address first: free ranges, the
        unusable tails of 64 KiB slots, reserved and committed regions (the data an
        address-space map is drawn from). Contiguous, from lpMinimumApplicationAddress to
        lpMaximumApplicationAddress."""
        return [Region(*r) for r in self._walk()]

    # pyalloc.viz, and matplotlib with it, are imported only when Jupyter asks.
    def _repr_png_(self) -> bytes | None:
        """Jupyter's picture of the process: its address-space map as PNG (None without
        matplotlib, or once closed)."""
        from . import viz
        return viz.repr_png(self)

    def _repr_html_(self) -> str | None:
        """Jupyter's view of the process: the address-space map (the text map without
        matplotlib), its summary and a table of its heaps (None once closed)."""
        from . import viz
        html = viz.repr_html(self)
        # the heaps' summary, when the process has any (found without creating one)
        return None if html is None else html + viz.heaps_html(self)

    def trace(self, capacity: int = 0) -> Trace:
        """``with process.trace() as events:`` records every layer's operations on this
        process into ``events`` (a list of :class:`~pyalloc.trace.TraceEvent`). capacity is
        the ring's size in events (default 65536)."""
        return Trace(self, capacity)


_core._set_process_class(Process)

__all__ = [name for name in dir(_core) if not name.startswith("_")] + _CRT_NAMES + [
    "preload_path",
    "host",
    "HostProcess",
    "Process",
    "Region",
    "Trace",
    "TraceEvent",
    "WinError",
    "WinMemoryError",
    "StructuredException",
    "HeapException",
    "AccessViolation",
    "GuardPageViolation",
    "CrtError",
    "CrtMemoryError",
    "CrtInvalidParameter",
    "BadAlloc",
    "BadArrayNewLength",
    "CrtReport",
    "errors",
]
