/* pyalloc/wintypes.h: the Windows vocabulary shared by every layer.
 *
 * Types, constants and error codes with Windows' names and values (winnt.h, winbase.h,
 * winerror.h, ntstatus.h). Everything here is data: no functions. The core (pyalloc.h) and the
 * Windows-compatible header (pyalloc/windows.h) both include it, so a value is written once.
 * Values are the SDK's; sources: ../shared/reference/virtual-memory.md section 2 and
 * ../shared/reference/heap.md.
 */
#ifndef PYALLOC_WINTYPES_H
#define PYALLOC_WINTYPES_H

#include <stddef.h>
#include <stdint.h>

/* ---- basic types (LLP64 sizes as on Win64: DWORD and LONG are 32-bit) ---- */
typedef int BOOL;
typedef uint8_t BYTE;
typedef uint16_t WORD;
typedef uint32_t DWORD, *PDWORD, *LPDWORD;
typedef uint32_t UINT;
typedef uint32_t ULONG, *PULONG;
typedef int32_t LONG;
typedef size_t SIZE_T, *PSIZE_T;
typedef uintptr_t ULONG_PTR, *PULONG_PTR, DWORD_PTR;
typedef void *LPVOID, *PVOID, *HANDLE;
typedef const void *LPCVOID;
typedef int32_t NTSTATUS;

#ifndef TRUE
#define TRUE 1
#define FALSE 0
#endif

/* ---- structures (x64 layouts) ---- */
typedef struct _MEMORY_BASIC_INFORMATION {
    PVOID BaseAddress;
    PVOID AllocationBase;
    DWORD AllocationProtect;
    WORD PartitionId;
    SIZE_T RegionSize;
    DWORD State;
    DWORD Protect;
    DWORD Type;
} MEMORY_BASIC_INFORMATION, *PMEMORY_BASIC_INFORMATION;

typedef struct _SYSTEM_INFO {
    union {
        DWORD dwOemId;
        struct {
            WORD wProcessorArchitecture;
            WORD wReserved;
        };
    };
    DWORD dwPageSize;
    LPVOID lpMinimumApplicationAddress;
    LPVOID lpMaximumApplicationAddress;
    DWORD_PTR dwActiveProcessorMask;
    DWORD dwNumberOfProcessors;
    DWORD dwProcessorType;
    DWORD dwAllocationGranularity;
    WORD wProcessorLevel;
    WORD wProcessorRevision;
} SYSTEM_INFO, *LPSYSTEM_INFO;

#define PROCESSOR_ARCHITECTURE_AMD64 9
#define PROCESSOR_ARCHITECTURE_ARM64 12
#define PROCESSOR_AMD_X8664 8664

/* ---- VirtualAlloc allocation / free types ---- */
#define MEM_COMMIT 0x00001000
#define MEM_RESERVE 0x00002000
#define MEM_DECOMMIT 0x00004000
#define MEM_RELEASE 0x00008000
#define MEM_FREE 0x00010000
#define MEM_PRIVATE 0x00020000
#define MEM_MAPPED 0x00040000
#define MEM_RESET 0x00080000
#define MEM_TOP_DOWN 0x00100000
#define MEM_WRITE_WATCH 0x00200000
#define MEM_PHYSICAL 0x00400000
#define MEM_IMAGE 0x01000000
#define MEM_RESET_UNDO 0x01000000
#define MEM_LARGE_PAGES 0x20000000
#define MEM_4MB_PAGES 0x80000000
#define AT_ROUND_TO_PAGE 0x40000000
#define WRITE_WATCH_FLAG_RESET 0x01

/* ---- page protections ---- */
#define PAGE_NOACCESS 0x01
#define PAGE_READONLY 0x02
#define PAGE_READWRITE 0x04
#define PAGE_WRITECOPY 0x08
#define PAGE_EXECUTE 0x10
#define PAGE_EXECUTE_READ 0x20
#define PAGE_EXECUTE_READWRITE 0x40
#define PAGE_EXECUTE_WRITECOPY 0x80
#define PAGE_GUARD 0x100
#define PAGE_NOCACHE 0x200
#define PAGE_WRITECOMBINE 0x400

/* ---- sections (used from the sections layer on) ---- */
#define SEC_FILE 0x00800000
#define SEC_IMAGE 0x01000000
#define SEC_RESERVE 0x04000000
#define SEC_COMMIT 0x08000000
#define SEC_NOCACHE 0x10000000
#define SEC_WRITECOMBINE 0x40000000
#define SEC_LARGE_PAGES 0x80000000
#define FILE_MAP_COPY 0x00000001
#define FILE_MAP_WRITE 0x00000002
#define FILE_MAP_READ 0x00000004
#define FILE_MAP_EXECUTE 0x00000020
#define FILE_MAP_ALL_ACCESS 0x000F001F

#define SECTION_QUERY 0x0001
#define SECTION_MAP_WRITE 0x0002
#define SECTION_MAP_READ 0x0004
#define SECTION_MAP_EXECUTE 0x0008
#define SECTION_EXTEND_SIZE 0x0010
#define SECTION_MAP_EXECUTE_EXPLICIT 0x0020
#define INVALID_HANDLE_VALUE ((HANDLE)(intptr_t)-1)

/* ---- Win32 error codes (winerror.h) ---- */
#define ERROR_SUCCESS 0
#define ERROR_FILE_NOT_FOUND 2
#define ERROR_ACCESS_DENIED 5
#define ERROR_INVALID_HANDLE 6
#define ERROR_NOT_ENOUGH_MEMORY 8
#define ERROR_OUTOFMEMORY 14
#define ERROR_BAD_LENGTH 24
#define ERROR_GEN_FAILURE 31
#define ERROR_NOT_SUPPORTED 50
#define ERROR_INVALID_PARAMETER 87
#define ERROR_INSUFFICIENT_BUFFER 122
#define ERROR_ALREADY_EXISTS 183
#define ERROR_BAD_EXE_FORMAT 193
#define ERROR_NO_MORE_ITEMS 259
#define ERROR_INVALID_ADDRESS 487
#define ERROR_NOACCESS 998
#define ERROR_SWAPERROR 999
#define ERROR_FILE_INVALID 1006
#define ERROR_MAPPED_ALIGNMENT 1132
#define ERROR_PRIVILEGE_NOT_HELD 1314
#define ERROR_COMMITMENT_LIMIT 1455

/* ---- NTSTATUS (ntstatus.h); kept as unsigned literals cast on use ---- */
#define STATUS_SUCCESS ((NTSTATUS)0x00000000)
#define STATUS_GUARD_PAGE_VIOLATION ((NTSTATUS)0x80000001)
#define STATUS_WORKING_SET_LIMIT_RANGE ((NTSTATUS)0x40000002)
#define STATUS_INFO_LENGTH_MISMATCH ((NTSTATUS)0xC0000004)
#define STATUS_ACCESS_VIOLATION ((NTSTATUS)0xC0000005)
#define STATUS_IN_PAGE_ERROR ((NTSTATUS)0xC0000006)
#define STATUS_INVALID_HANDLE ((NTSTATUS)0xC0000008)
#define STATUS_INVALID_PARAMETER ((NTSTATUS)0xC000000D)
#define STATUS_NO_MEMORY ((NTSTATUS)0xC0000017)
#define STATUS_CONFLICTING_ADDRESSES ((NTSTATUS)0xC0000018)
#define STATUS_NOT_MAPPED_VIEW ((NTSTATUS)0xC0000019)
#define STATUS_UNABLE_TO_FREE_VM ((NTSTATUS)0xC000001A)
#define STATUS_INVALID_VIEW_SIZE ((NTSTATUS)0xC000001F)
#define STATUS_ALREADY_COMMITTED ((NTSTATUS)0xC0000021)
#define STATUS_ACCESS_DENIED ((NTSTATUS)0xC0000022)
#define STATUS_NOT_COMMITTED ((NTSTATUS)0xC000002D)
#define STATUS_SECTION_TOO_BIG ((NTSTATUS)0xC0000040)
#define STATUS_INVALID_PAGE_PROTECTION ((NTSTATUS)0xC0000045)
#define STATUS_PRIVILEGE_NOT_HELD ((NTSTATUS)0xC0000061)
#define STATUS_FREE_VM_NOT_AT_BASE ((NTSTATUS)0xC000009F)
#define STATUS_MEMORY_NOT_ALLOCATED ((NTSTATUS)0xC00000A0)
#define STATUS_NOT_SUPPORTED ((NTSTATUS)0xC00000BB)
#define STATUS_MAPPED_FILE_SIZE_ZERO ((NTSTATUS)0xC000011E)
#define STATUS_COMMITMENT_LIMIT ((NTSTATUS)0xC000012D)
#define STATUS_OBJECT_NAME_NOT_FOUND ((NTSTATUS)0xC0000034)
#define STATUS_OBJECT_NAME_EXISTS ((NTSTATUS)0x40000000)
#define STATUS_INVALID_FILE_FOR_SECTION ((NTSTATUS)0xC0000020)
#define STATUS_INVALID_IMAGE_NOT_MZ ((NTSTATUS)0xC000012F)
#define STATUS_MAPPED_ALIGNMENT ((NTSTATUS)0xC0000220)

#define NT_SUCCESS(s) ((NTSTATUS)(s) >= 0)

/* ==== layer 3: heap (csrc/heap*.c) ==== values from heap.md's notation section and the SDK */

/* HeapCreate / HeapAlloc flags (heapapi.h, winnt.h). The undocumented ones carry Wine's names. */
#define HEAP_NO_SERIALIZE 0x00000001
#define HEAP_GROWABLE 0x00000002
#define HEAP_GENERATE_EXCEPTIONS 0x00000004
#define HEAP_ZERO_MEMORY 0x00000008
#define HEAP_REALLOC_IN_PLACE_ONLY 0x00000010
#define HEAP_TAIL_CHECKING_ENABLED 0x00000020
#define HEAP_FREE_CHECKING_ENABLED 0x00000040
#define HEAP_DISABLE_COALESCE_ON_FREE 0x00000080
#define HEAP_CREATE_ALIGN_16 0x00010000
#define HEAP_CREATE_ENABLE_TRACING 0x00020000
#define HEAP_CREATE_ENABLE_EXECUTE 0x00040000
#define HEAP_ADD_USER_INFO 0x00000100
#define HEAP_PRIVATE 0x00001000
#define HEAP_PAGE_ALLOCS 0x01000000
#define HEAP_VALIDATE 0x10000000
#define HEAP_VALIDATE_ALL 0x20000000
#define HEAP_VALIDATE_PARAMS 0x40000000

/* PROCESS_HEAP_ENTRY.wFlags */
#define PROCESS_HEAP_REGION 0x0001
#define PROCESS_HEAP_UNCOMMITTED_RANGE 0x0002
#define PROCESS_HEAP_ENTRY_BUSY 0x0004
#define PROCESS_HEAP_SEG_ALLOC 0x0008
#define PROCESS_HEAP_ENTRY_MOVEABLE 0x0010
#define PROCESS_HEAP_ENTRY_DDESHARE 0x0020

/* HeapWalk's entry (minwinbase.h, x64 layout: 40 bytes). */
typedef struct _PROCESS_HEAP_ENTRY {
    PVOID lpData;
    DWORD cbData;
    BYTE cbOverhead;
    BYTE iRegionIndex;
    WORD wFlags;
    union {
        struct {
            HANDLE hMem;
            DWORD dwReserved[3];
        } Block;
        struct {
            DWORD dwCommittedSize;
            DWORD dwUnCommittedSize;
            LPVOID lpFirstBlock;
            LPVOID lpLastBlock;
        } Region;
    };
} PROCESS_HEAP_ENTRY, *LPPROCESS_HEAP_ENTRY, *PPROCESS_HEAP_ENTRY;

typedef enum _HEAP_INFORMATION_CLASS {
    HeapCompatibilityInformation = 0,
    HeapEnableTerminationOnCorruption = 1,
    HeapOptimizeResources = 3,
} HEAP_INFORMATION_CLASS;

#define ERROR_NOT_OWNER 288
#define STATUS_NO_MORE_ENTRIES ((NTSTATUS)0x8000001A)
#define STATUS_UNSUCCESSFUL ((NTSTATUS)0xC0000001)
#define STATUS_INVALID_INFO_CLASS ((NTSTATUS)0xC0000003)
#define STATUS_BUFFER_TOO_SMALL ((NTSTATUS)0xC0000023)
#define STATUS_HEAP_CORRUPTION ((NTSTATUS)0xC0000374)

/* ==== layers 4-5: CRT and new (csrc/crt*.c, csrc/new.c) ====
 * Values of UCRT's malloc.h and crtdbg.h (heap.md facts 67, 88-91). */

/* Largest request malloc accepts (x64); larger ones fail with ENOMEM. */
#define _HEAP_MAXREQ ((size_t)0xFFFFFFFFFFFFFFE0u)

/* Debug heap block types (_CrtMemBlockHeader.block_use; a subtype may sit in bits 16-31 of
 * client and CRT blocks). _UNKNOWN_BLOCK: "use the block's own type" (operator delete). */
#define _FREE_BLOCK 0
#define _NORMAL_BLOCK 1
#define _CRT_BLOCK 2
#define _IGNORE_BLOCK 3
#define _CLIENT_BLOCK 4
#define _MAX_BLOCKS 5
#define _UNKNOWN_BLOCK (-1)
#define _BLOCK_TYPE(block) ((block) & 0xFFFF)
#define _BLOCK_SUBTYPE(block) (((block) >> 16) & 0xFFFF)

/* _crtDbgFlag bits. The high 16 bits hold the check frequency (allocations between two
 * automatic _CrtCheckMemory calls). */
#define _CRTDBG_ALLOC_MEM_DF 0x01
#define _CRTDBG_DELAY_FREE_MEM_DF 0x02
#define _CRTDBG_CHECK_ALWAYS_DF 0x04
#define _CRTDBG_RESERVED_DF 0x08
#define _CRTDBG_CHECK_CRT_DF 0x10
#define _CRTDBG_LEAK_CHECK_DF 0x20
#define _CRTDBG_CHECK_EVERY_16_DF 0x00100000
#define _CRTDBG_CHECK_EVERY_128_DF 0x00800000
#define _CRTDBG_CHECK_EVERY_1024_DF 0x04000000
#define _CRTDBG_CHECK_DEFAULT_DF 0
#define _CRTDBG_REPORT_FLAG (-1)

/* Report types (_CrtDbgReport) and allocation-hook operations. */
#define _CRT_WARN 0
#define _CRT_ERROR 1
#define _CRT_ASSERT 2
#define _CRT_ERRCNT 3
#define _HOOK_ALLOC 1
#define _HOOK_REALLOC 2
#define _HOOK_FREE 3

/* The debug heap's block header, x64 layout (48 bytes): one HeapAlloc holds this header, the
 * user's bytes and a 4-byte no-man's land after them (heap.md fact 88). Blocks form a doubly
 * linked list, newest first; next points to the older block. */
typedef struct _CrtMemBlockHeader {
    struct _CrtMemBlockHeader *next; /* older block */
    struct _CrtMemBlockHeader *prev; /* newer block */
    const char *file_name;           /* call site, or NULL */
    int line;
    int block_use;                   /* _NORMAL_BLOCK ...; _FREE_BLOCK once delay-freed */
    size_t data_size;                /* exact request */
    LONG request;                    /* allocation number, from 1 (0 for ignore blocks) */
    unsigned char gap[4];            /* no-man's land: 0xFD */
} _CrtMemBlockHeader;

/* _CrtMemCheckpoint's snapshot. Counts and sizes are indexed by block type. */
typedef struct _CrtMemState {
    struct _CrtMemBlockHeader *pBlockHeader;
    size_t lCounts[_MAX_BLOCKS];
    size_t lSizes[_MAX_BLOCKS];
    size_t lHighWaterCount; /* most bytes live at once */
    size_t lTotalCount;     /* bytes ever allocated */
} _CrtMemState;

/* _set_new_handler's handler: nonzero = retry the allocation, 0 = give up. */
typedef int (*_PNH)(size_t);

#endif /* PYALLOC_WINTYPES_H */
