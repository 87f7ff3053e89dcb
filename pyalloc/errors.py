"""The exceptions pyalloc raises.

Where Windows returns NULL/FALSE and sets the last error, pyalloc raises :class:`WinError`;
where the CRT returns NULL and sets errno, :class:`CrtError` (:class:`CrtMemoryError` for
ENOMEM, :class:`CrtInvalidParameter` for EINVAL); where C++'s operator new throws,
:class:`BadAlloc`. The debug CRT's reports are :class:`CrtReport` warnings.
Where a real load or store would fault, the checked accessors (``read``, ``write``, ``view``)
raise a :class:`StructuredException` instead of crashing: :class:`AccessViolation`
(STATUS_ACCESS_VIOLATION) or :class:`GuardPageViolation` (STATUS_GUARD_PAGE_VIOLATION, raised
once: the guard is gone afterwards, as on Windows). A change that would leave a live
memoryview dangling raises the built-in BufferError.
"""
from __future__ import annotations

import os

__all__ = [
    "WinError",
    "WinMemoryError",
    "StructuredException",
    "AccessViolation",
    "GuardPageViolation",
    "HeapException",
    "CrtError",
    "CrtMemoryError",
    "CrtInvalidParameter",
    "BadAlloc",
    "BadArrayNewLength",
    "CrtReport",
]


class WinError(OSError):
    """A Win32 failure. ``.winerror`` is the code GetLastError() returns.

    >>> str(WinError(487))
    'ERROR_INVALID_ADDRESS (487): Attempt to access invalid address.'
    """

    winerror: int

    def __init__(self, winerror: int, strerror: str | None = None) -> None:
        if strerror is None:
            from ._core import FormatMessage

            strerror = FormatMessage(winerror)
        super().__init__(strerror)
        self.winerror = winerror

    def __reduce__(self):  # keep .winerror through pickling (multiprocessing)
        return (type(self), (self.winerror, self.args[0]))


class WinMemoryError(WinError, MemoryError):
    """A WinError for ERROR_NOT_ENOUGH_MEMORY (8), ERROR_OUTOFMEMORY (14) or
    ERROR_COMMITMENT_LIMIT (1455): ``except MemoryError`` catches it too."""


class StructuredException(Exception):
    """A Windows structured exception raised by a memory access. ``.code`` is the NTSTATUS."""

    code: int = 0
    _what = "exception"

    def __init__(self, address: int, operation: str) -> None:
        verb = {"read": "reading", "write": "writing", "execute": "executing"}.get(operation, operation)
        super().__init__(f"{self._what} {verb} 0x{address:x}")
        self.address = address
        self.operation = operation

    def __reduce__(self):
        return (type(self), (self.address, self.operation))


class AccessViolation(StructuredException):
    """STATUS_ACCESS_VIOLATION (0xC0000005): the memory is not committed, or its protection
    forbids the access. ``.address`` is the first byte that faulted, ``.operation`` is
    'read' or 'write'."""

    code = 0xC0000005
    _what = "access violation"


class GuardPageViolation(StructuredException):
    """STATUS_GUARD_PAGE_VIOLATION (0x80000001): the first touch of a PAGE_GUARD page. The
    guard is cleared, so the same access succeeds when retried."""

    code = 0x80000001
    _what = "guard page violation"


_HEAP_STATUS = {
    0xC0000017: "STATUS_NO_MEMORY",
    0xC0000005: "STATUS_ACCESS_VIOLATION",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC0000374: "STATUS_HEAP_CORRUPTION",
}


class HeapException(StructuredException):
    """The structured exception a heap raises where Windows would: a HEAP_GENERATE_EXCEPTIONS
    heap that cannot allocate (STATUS_NO_MEMORY), or corruption detected with termination on
    corruption enabled (STATUS_HEAP_CORRUPTION). ``.code`` is the NTSTATUS, ``.address`` the
    block or heap concerned."""

    def __init__(self, code: int, address: int = 0, operation: str = "") -> None:
        Exception.__init__(self, f"{_HEAP_STATUS.get(code, hex(code))} (0x{code:08X}) in "
                                 f"{operation or 'heap'} at 0x{address:x}")
        self.code = code
        self.address = address
        self.operation = operation

    def __reduce__(self):
        return (type(self), (self.code, self.address, self.operation))


class CrtError(OSError):
    """A CRT function failed and set errno (``.errno``; ``.function`` names the function).

    >>> str(CrtError(22, "_msize"))
    '[Errno 22] _msize: Invalid argument'
    """

    function: str | None

    def __init__(self, errno: int, function: str | None = None) -> None:
        text = os.strerror(errno)
        super().__init__(errno, f"{function}: {text}" if function else text)
        self.function = function

    def __reduce__(self):
        return (type(self), (self.errno, self.function))


class CrtMemoryError(CrtError, MemoryError):
    """ENOMEM (12): malloc and its kind could not allocate (``except MemoryError`` catches
    it too)."""


class CrtInvalidParameter(CrtError, ValueError):
    """EINVAL (22): where UCRT calls the invalid-parameter handler (``_msize(NULL)``, an
    alignment that is not a power of two, ``_set_new_mode(2)``), or a pointer that is not a
    block (``except ValueError`` catches it too)."""


class BadAlloc(MemoryError):
    """C++'s std::bad_alloc: operator new (or new(), new_array()) could not allocate and the
    new handler gave up. ``.size`` is the request in bytes."""

    size: int | None
    _what = "bad allocation"  # what() of MSVC's std::bad_alloc

    def __init__(self, size: int | None = None) -> None:
        super().__init__(self._what if size is None else f"{self._what} ({size} bytes)")
        self.size = size

    def __reduce__(self):
        return (type(self), (self.size,))


class BadArrayNewLength(BadAlloc):
    """C++'s std::bad_array_new_length: new_array()'s size overflowed (operator new[] was asked
    for SIZE_MAX bytes)."""

    _what = "bad array new length"


class CrtReport(RuntimeWarning):
    """A report of the debug CRT (_CrtDbgReport), issued as a warning at the Python line whose
    call made it: heap corruption, a bad pointer, aligned and plain routines mixed, a
    malloc/new/new[] mismatch (pyalloc's own check), an allocation hook refusal, or the
    _CrtSetBreakAlloc allocation. ``str()`` is MSVC's message; ``.type`` is _CRT_WARN,
    _CRT_ERROR or _CRT_ASSERT, ``.kind`` one of PA_CRT_REPORT_*, ``.address`` the block
    concerned (0 if none) and ``.request`` its allocation number (0 if unknown).

    Under ``-W error`` (pytest's filterwarnings = error) a report raises: expect it with
    ``pytest.warns(pyalloc.CrtReport)``."""

    def __init__(self, message: str, type: int = 0, kind: int = 0, address: int = 0,
                 request: int = 0) -> None:
        super().__init__(message)
        self.type = type
        self.kind = kind
        self.address = address
        self.request = request

    def __reduce__(self):
        return (type(self), (self.args[0], self.type, self.kind, self.address, self.request))
