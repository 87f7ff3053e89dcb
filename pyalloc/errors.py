"""The exceptions pyalloc raises.

Where Windows returns NULL/FALSE and sets the last error, pyalloc raises :class:`WinError`.
Where a real load or store would fault, the checked accessors (``read``, ``write``, ``view``)
raise a :class:`StructuredException` instead of crashing: :class:`AccessViolation`
(STATUS_ACCESS_VIOLATION) or :class:`GuardPageViolation` (STATUS_GUARD_PAGE_VIOLATION, raised
once: the guard is gone afterwards, as on Windows). A change that would leave a live
memoryview dangling raises the built-in BufferError.
"""
from __future__ import annotations

__all__ = [
    "WinError",
    "WinMemoryError",
    "StructuredException",
    "AccessViolation",
    "GuardPageViolation",
    "HeapException",
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
