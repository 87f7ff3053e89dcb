"""Type stubs for pyalloc._core, the C extension (see csrc/python/)."""
from __future__ import annotations

from typing import Any, Final, Self

__all__ = [
    "ALLOCATION_GRANULARITY",
    "AT_ROUND_TO_PAGE",
    "CloseHandle",
    "CreateFileMapping",
    "DEFAULT_ADDRESS_SPACE",
    "ERROR_ACCESS_DENIED",
    "ERROR_ALREADY_EXISTS",
    "ERROR_BAD_EXE_FORMAT",
    "ERROR_BAD_LENGTH",
    "ERROR_COMMITMENT_LIMIT",
    "ERROR_FILE_INVALID",
    "ERROR_FILE_NOT_FOUND",
    "ERROR_GEN_FAILURE",
    "ERROR_INSUFFICIENT_BUFFER",
    "ERROR_INVALID_ADDRESS",
    "ERROR_INVALID_HANDLE",
    "ERROR_INVALID_PARAMETER",
    "ERROR_MAPPED_ALIGNMENT",
    "ERROR_NOACCESS",
    "ERROR_NOT_ENOUGH_MEMORY",
    "ERROR_NOT_SUPPORTED",
    "ERROR_NO_MORE_ITEMS",
    "ERROR_OUTOFMEMORY",
    "ERROR_PRIVILEGE_NOT_HELD",
    "ERROR_SUCCESS",
    "FILE_MAP_ALL_ACCESS",
    "FILE_MAP_COPY",
    "FILE_MAP_EXECUTE",
    "FILE_MAP_READ",
    "FILE_MAP_WRITE",
    "FlushViewOfFile",
    "FormatMessage",
    "GetLastError",
    "GetSystemInfo",
    "GetWriteWatch",
    "Handle",
    "MEMORY_BASIC_INFORMATION",
    "MEM_4MB_PAGES",
    "MEM_COMMIT",
    "MEM_DECOMMIT",
    "MEM_FREE",
    "MEM_IMAGE",
    "MEM_LARGE_PAGES",
    "MEM_MAPPED",
    "MEM_PHYSICAL",
    "MEM_PRIVATE",
    "MEM_RELEASE",
    "MEM_RESERVE",
    "MEM_RESET",
    "MEM_RESET_UNDO",
    "MEM_TOP_DOWN",
    "MEM_WRITE_WATCH",
    "MapViewOfFile",
    "MapViewOfFileEx",
    "OWNER_APP",
    "OWNER_HEAP",
    "OpenFileMapping",
    "PAGE_EXECUTE",
    "PAGE_EXECUTE_READ",
    "PAGE_EXECUTE_READWRITE",
    "PAGE_EXECUTE_WRITECOPY",
    "PAGE_GUARD",
    "PAGE_NOACCESS",
    "PAGE_NOCACHE",
    "PAGE_READONLY",
    "PAGE_READWRITE",
    "PAGE_SIZE",
    "PAGE_WRITECOMBINE",
    "PAGE_WRITECOPY",
    "PROCESSOR_AMD_X8664",
    "PROCESSOR_ARCHITECTURE_AMD64",
    "PROCESSOR_ARCHITECTURE_ARM64",
    "ResetWriteWatch",
    "SECTION_EXTEND_SIZE",
    "SECTION_MAP_EXECUTE",
    "SECTION_MAP_EXECUTE_EXPLICIT",
    "SECTION_MAP_READ",
    "SECTION_MAP_WRITE",
    "SECTION_QUERY",
    "SEC_COMMIT",
    "SEC_FILE",
    "SEC_IMAGE",
    "SEC_LARGE_PAGES",
    "SEC_NOCACHE",
    "SEC_RESERVE",
    "SEC_WRITECOMBINE",
    "STATUS_ACCESS_VIOLATION",
    "STATUS_GUARD_PAGE_VIOLATION",
    "SYSTEM_INFO",
    "SetLastError",
    "UnmapViewOfFile",
    "VirtualAlloc",
    "VirtualFree",
    "VirtualProtect",
    "VirtualQuery",
    "WRITE_WATCH_FLAG_RESET",
    "current_process",
    "error_name",
    "protect_name",
    "read",
    "view",
    "write",
]

ALLOCATION_GRANULARITY: Final[int]
AT_ROUND_TO_PAGE: Final[int]
DEFAULT_ADDRESS_SPACE: Final[int]
ERROR_ACCESS_DENIED: Final[int]
ERROR_ALREADY_EXISTS: Final[int]
ERROR_BAD_EXE_FORMAT: Final[int]
ERROR_BAD_LENGTH: Final[int]
ERROR_COMMITMENT_LIMIT: Final[int]
ERROR_FILE_INVALID: Final[int]
ERROR_FILE_NOT_FOUND: Final[int]
ERROR_GEN_FAILURE: Final[int]
ERROR_INSUFFICIENT_BUFFER: Final[int]
ERROR_INVALID_ADDRESS: Final[int]
ERROR_INVALID_HANDLE: Final[int]
ERROR_INVALID_PARAMETER: Final[int]
ERROR_MAPPED_ALIGNMENT: Final[int]
ERROR_NOACCESS: Final[int]
ERROR_NOT_ENOUGH_MEMORY: Final[int]
ERROR_NOT_SUPPORTED: Final[int]
ERROR_NO_MORE_ITEMS: Final[int]
ERROR_OUTOFMEMORY: Final[int]
ERROR_PRIVILEGE_NOT_HELD: Final[int]
ERROR_SUCCESS: Final[int]
FILE_MAP_ALL_ACCESS: Final[int]
FILE_MAP_COPY: Final[int]
FILE_MAP_EXECUTE: Final[int]
FILE_MAP_READ: Final[int]
FILE_MAP_WRITE: Final[int]
MEM_4MB_PAGES: Final[int]
MEM_COMMIT: Final[int]
MEM_DECOMMIT: Final[int]
MEM_FREE: Final[int]
MEM_IMAGE: Final[int]
MEM_LARGE_PAGES: Final[int]
MEM_MAPPED: Final[int]
MEM_PHYSICAL: Final[int]
MEM_PRIVATE: Final[int]
MEM_RELEASE: Final[int]
MEM_RESERVE: Final[int]
MEM_RESET: Final[int]
MEM_RESET_UNDO: Final[int]
MEM_TOP_DOWN: Final[int]
MEM_WRITE_WATCH: Final[int]
OWNER_APP: Final[int]
OWNER_HEAP: Final[int]
PAGE_EXECUTE: Final[int]
PAGE_EXECUTE_READ: Final[int]
PAGE_EXECUTE_READWRITE: Final[int]
PAGE_EXECUTE_WRITECOPY: Final[int]
PAGE_GUARD: Final[int]
PAGE_NOACCESS: Final[int]
PAGE_NOCACHE: Final[int]
PAGE_READONLY: Final[int]
PAGE_READWRITE: Final[int]
PAGE_SIZE: Final[int]
PAGE_WRITECOMBINE: Final[int]
PAGE_WRITECOPY: Final[int]
PROCESSOR_AMD_X8664: Final[int]
PROCESSOR_ARCHITECTURE_AMD64: Final[int]
PROCESSOR_ARCHITECTURE_ARM64: Final[int]
SEC_COMMIT: Final[int]
SEC_FILE: Final[int]
SEC_IMAGE: Final[int]
SEC_LARGE_PAGES: Final[int]
SEC_NOCACHE: Final[int]
SEC_RESERVE: Final[int]
SEC_WRITECOMBINE: Final[int]
STATUS_ACCESS_VIOLATION: Final[int]
STATUS_GUARD_PAGE_VIOLATION: Final[int]
WRITE_WATCH_FLAG_RESET: Final[int]

SECTION_EXTEND_SIZE: Final[int]
SECTION_MAP_EXECUTE: Final[int]
SECTION_MAP_EXECUTE_EXPLICIT: Final[int]
SECTION_MAP_READ: Final[int]
SECTION_MAP_WRITE: Final[int]
SECTION_QUERY: Final[int]
class MEMORY_BASIC_INFORMATION:
    """What VirtualQuery reports about the region containing an address."""
    _fields: tuple[str, ...]
    @property
    def BaseAddress(self) -> int: ...
    @property
    def AllocationBase(self) -> int: ...
    @property
    def AllocationProtect(self) -> int: ...
    @property
    def RegionSize(self) -> int: ...
    @property
    def State(self) -> int: ...
    @property
    def Protect(self) -> int: ...
    @property
    def Type(self) -> int: ...
    def _asdict(self) -> dict[str, int]: ...

class SYSTEM_INFO:
    """What GetSystemInfo reports for a process."""
    _fields: tuple[str, ...]
    @property
    def wProcessorArchitecture(self) -> int: ...
    @property
    def dwPageSize(self) -> int: ...
    @property
    def lpMinimumApplicationAddress(self) -> int: ...
    @property
    def lpMaximumApplicationAddress(self) -> int: ...
    @property
    def dwActiveProcessorMask(self) -> int: ...
    @property
    def dwNumberOfProcessors(self) -> int: ...
    @property
    def dwProcessorType(self) -> int: ...
    @property
    def dwAllocationGranularity(self) -> int: ...
    @property
    def wProcessorLevel(self) -> int: ...
    @property
    def wProcessorRevision(self) -> int: ...
    def _asdict(self) -> dict[str, int]: ...

class Handle:
    """A Windows handle to a section; closed by CloseHandle, `with`, or garbage collection."""
    @property
    def already_existed(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    @property
    def size(self) -> int | None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Handle: ...
    def __exit__(self, *exc: Any) -> bool: ...
    def __int__(self) -> int: ...
    def __index__(self) -> int: ...

class Process:
    """An isolated simulated Windows process with its own address space."""
    def __new__(cls, *, address_space: int | None = ..., commit_limit: int | None = ...) -> Self: ...
    @property
    def closed(self) -> bool: ...
    @property
    def is_current(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: Any) -> bool: ...
    def stats(self) -> dict[str, int]: ...
    def _walk(self) -> list[tuple[int, int, int, int, int, int, int, int, bool, bool]]: ...
    def VirtualAlloc(self, address: int | None, size: int, allocation_type: int, protect: int) -> int: ...
    def VirtualFree(self, address: int | None, size: int, free_type: int) -> bool: ...
    def VirtualProtect(self, address: int | None, size: int, new_protect: int) -> int: ...
    def VirtualQuery(self, address: int | None) -> MEMORY_BASIC_INFORMATION: ...
    def GetSystemInfo(self) -> SYSTEM_INFO: ...
    def GetWriteWatch(self, flags: int, address: int | None, size: int, count: int | None = ...) -> tuple[list[int], int]: ...
    def ResetWriteWatch(self, address: int | None, size: int) -> bool: ...
    def CreateFileMapping(self, file: Any, protect: int, maximum_size: int, name: str | None = ...) -> Handle: ...
    def OpenFileMapping(self, desired_access: int, name: str) -> Handle: ...
    def MapViewOfFile(self, mapping: Handle, desired_access: int, offset: int, size: int) -> int: ...
    def MapViewOfFileEx(self, mapping: Handle, desired_access: int, offset: int, size: int, base_address: int | None) -> int: ...
    def UnmapViewOfFile(self, address: int | None) -> bool: ...
    def FlushViewOfFile(self, address: int | None, size: int) -> bool: ...
    def CloseHandle(self, handle: Handle) -> bool: ...
    def GetLastError(self) -> int: ...
    def SetLastError(self, code: int) -> None: ...
    def read(self, address: int | None, size: int) -> bytes: ...
    def write(self, address: int | None, data: bytes | bytearray | memoryview) -> None: ...
    def view(self, address: int | None, size: int) -> memoryview: ...

def VirtualAlloc(address: int | None, size: int, allocation_type: int, protect: int) -> int: ...
def VirtualFree(address: int | None, size: int, free_type: int) -> bool: ...
def VirtualProtect(address: int | None, size: int, new_protect: int) -> int: ...
def VirtualQuery(address: int | None) -> MEMORY_BASIC_INFORMATION: ...
def GetSystemInfo() -> SYSTEM_INFO: ...
def GetWriteWatch(flags: int, address: int | None, size: int, count: int | None = ...) -> tuple[list[int], int]: ...
def ResetWriteWatch(address: int | None, size: int) -> bool: ...
def CreateFileMapping(file: Any, protect: int, maximum_size: int, name: str | None = ...) -> Handle: ...
def OpenFileMapping(desired_access: int, name: str) -> Handle: ...
def MapViewOfFile(mapping: Handle, desired_access: int, offset: int, size: int) -> int: ...
def MapViewOfFileEx(mapping: Handle, desired_access: int, offset: int, size: int, base_address: int | None) -> int: ...
def UnmapViewOfFile(address: int | None) -> bool: ...
def FlushViewOfFile(address: int | None, size: int) -> bool: ...
def CloseHandle(handle: Handle) -> bool: ...
def GetLastError() -> int: ...
def SetLastError(code: int) -> None: ...
def read(address: int | None, size: int) -> bytes: ...
def write(address: int | None, data: bytes | bytearray | memoryview) -> None: ...
def view(address: int | None, size: int) -> memoryview: ...
def current_process() -> Any: ...
def _set_process_class(cls: type) -> None: ...
def FormatMessage(code: int) -> str: ...
def error_name(code: int) -> str | None: ...
def protect_name(protect: int) -> str: ...
