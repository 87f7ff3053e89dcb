"""The exceptions pyalloc raises.

Where Windows returns NULL/FALSE and sets the last error, pyalloc raises :class:`WinError`.
Where a real load or store would fault, the checked accessors (``read``, ``write``, ``view``)
raise a :class:`StructuredException` instead of crashing: :class:`AccessViolation`
(STATUS_ACCESS_VIOLATION) or :class:`GuardPageViolation` (STATUS_GUARD_PAGE_VIOLATION, raised
once: the guard is gone afterwards, as on Windows). A change that would leave a live
memoryview dangling raises the built-in BufferError.
"""
from __future__ import annotations

__all__ = ["WinError", "StructuredException", "AccessViolation", "GuardPageViolation"]


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


class StructuredException(Exception):
    """A Windows structured exception raised by a memory access. ``.code`` is the NTSTATUS."""

    code: int = 0
    _what = "exception"

    def __init__(self, address: int, operation: str) -> None:
        super().__init__(f"{self._what} {operation}ing 0x{address:x}" if operation != "execute"
                         else f"{self._what} executing 0x{address:x}")
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
