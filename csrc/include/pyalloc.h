/* pyalloc.h: the public C API of the pyalloc core (no Python.h).
 *
 * pyalloc is the Windows memory-allocation stack running for real on Linux. The stack, bottom up;
 * each layer calls only the one below it:
 *
 *   1. mm       kernel-mode memory manager: one simulated address space per process
 *               (pa_nt_* functions, NTSTATUS results)                         csrc/mm.c
 *   2. virtual  the VirtualAlloc family: Win32 results and last-error codes   csrc/virtual.c
 *   3. heap     HeapAlloc and friends                                        (csrc/heap*.c)
 *   4. crt      malloc and friends                                           (csrc/crt.c)
 *   5. new      operator new/delete                                          (csrc/new.c)
 *
 * Every function here takes the process explicitly. pyalloc/windows.h declares the same
 * functions with Windows' names and prototypes acting on pa_process_current().
 *
 * Glossary (the words are used in this sense in every file):
 *   page         4 KiB, the unit of commit and protection (PA_PAGE_SIZE).
 *   granularity  64 KiB, the unit of reservation: every allocation starts on it and occupies
 *                whole slots of it (PA_GRANULARITY). The slot's tail past the allocation's last
 *                page is free but unusable.
 *   allocation   what one reservation (VirtualAlloc MEM_RESERVE) or one mapped view created:
 *                AllocationBase, a page-rounded size, AllocationProtect, Type. Never merged,
 *                split only by the NT-level partial release.
 *   region       a run of pages inside one allocation with the same state and protection: what
 *                VirtualQuery reports. Free memory between allocations is a free region.
 *   owner        which layer an allocation belongs to (PA_OWNER_*): the application, or a higher
 *                layer such as a heap, whose memory the application must not free or re-protect.
 *   pin          a live export of a range (a Python memoryview): while one exists, nothing may
 *                make the pinned pages vanish or lose the access the export relies on.
 *   segment      a heap's contiguous reservation, grown by committing pages (layer 3).
 *   block        one heap allocation: header plus user bytes (layer 3).
 *   bucket       a size class of the low-fragmentation front end (layer 3).
 *   view         a mapping of a section into an address space (sections).
 */
#ifndef PYALLOC_H
#define PYALLOC_H

#include "pyalloc/wintypes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PA_PAGE_SIZE ((size_t)0x1000)
#define PA_GRANULARITY ((size_t)0x10000)
/* Default size of a process's simulated user address space (64 GiB). */
#define PA_DEFAULT_ADDRESS_SPACE ((size_t)1 << 36)

/* Owners of allocations. PA_OWNER_ANY, passed to free/protect, skips the owner check. */
typedef uint32_t pa_owner_t;
#define PA_OWNER_APP ((pa_owner_t)0)
#define PA_OWNER_HEAP ((pa_owner_t)1)
#define PA_OWNER_ANY ((pa_owner_t)0xFFFFFFFFu)

/* pyalloc's own NTSTATUS and Win32 codes (customer bit set, as Windows reserves for apps). */
#define PA_STATUS_BUFFER_EXPORTED ((NTSTATUS)0xE0000001) /* a pin forbids the change */
#define PA_STATUS_OWNED ((NTSTATUS)0xE0000002)           /* memory owned by another layer */
#define PA_ERROR_BUFFER_EXPORTED 0x20000001u
/* PA_STATUS_OWNED surfaces as ERROR_ACCESS_DENIED. */

typedef struct pa_process_s pa_process_t;
typedef struct pa_pin_s pa_pin_t;

typedef struct pa_process_options_s {
    size_t address_space; /* bytes of simulated user space; 0 = PA_DEFAULT_ADDRESS_SPACE */
    size_t commit_limit;  /* bytes that may be committed at once; 0 = no limit */
} pa_process_options_t;

/* Commit charge and counters of one process, read without stopping it. */
typedef struct pa_vm_stats_s {
    size_t reserved;        /* bytes of all allocations (page-rounded) */
    size_t committed;       /* commit charge now */
    size_t peak_committed;  /* highest commit charge seen */
    size_t commit_limit;    /* 0 = none */
    size_t allocations;     /* live allocations */
    size_t pins;            /* live exports */
    uint64_t guard_hits;    /* guard-page exceptions raised */
    uint64_t watch_faults;  /* first writes to write-watched pages */
} pa_vm_stats_t;

/* One entry of the address-space walk (pa_process_walk). */
typedef struct pa_region_info_s {
    MEMORY_BASIC_INFORMATION mbi;
    pa_owner_t owner;       /* for allocated regions */
    int unusable;           /* 1: free pages between an allocation's end and its last slot's end */
    int mapped_file;        /* 1: a view of a file (0 for pagefile-backed views) */
} pa_region_info_t;

/* ---- processes (csrc/mm.c) ---- */

/* Creates a process with its own reserved address space. Returns NULL and sets *status
 * (STATUS_INVALID_PARAMETER for a bad size, STATUS_NO_MEMORY when the host refuses). */
pa_process_t *pa_process_create(const pa_process_options_t *options, NTSTATUS *status);
/* Destroys a process and unmaps everything it had. Fails with PA_STATUS_BUFFER_EXPORTED while
 * a pin exists. The current process cannot be destroyed (STATUS_ACCESS_DENIED). */
NTSTATUS pa_process_destroy(pa_process_t *p);
/* The process that the Windows-named functions act on; created on first use. Never NULL unless
 * the host refuses the reservation, which aborts. */
pa_process_t *pa_process_current(void);
/* Lowest and highest usable addresses (as SYSTEM_INFO reports them). */
uintptr_t pa_process_min_address(const pa_process_t *p);
uintptr_t pa_process_max_address(const pa_process_t *p);
void pa_process_stats(pa_process_t *p, pa_vm_stats_t *out);
/* Walks the address space from its lowest to its highest address, calling fn for every region
 * (free, unusable, reserved, committed) until fn returns non-zero. Holds the process lock: fn
 * must not call back into the process. Returns fn's non-zero result or 0. */
int pa_process_walk(pa_process_t *p, int (*fn)(const pa_region_info_t *r, void *arg), void *arg);

/* ---- layer 1: NT-style memory manager (csrc/mm.c); all return NTSTATUS ---- */

/* NtAllocateVirtualMemory: reserve and/or commit, MEM_RESET, MEM_RESET_UNDO. *base and *size
 * are in/out: rounded as Windows rounds them. */
NTSTATUS pa_nt_allocate_virtual_memory(pa_process_t *p, void **base, size_t *size, DWORD type,
                                       DWORD protect, pa_owner_t owner);
/* NtFreeVirtualMemory: MEM_DECOMMIT, or MEM_RELEASE of a whole allocation (*size == 0) or of
 * pages inside one (*size != 0, the Windows 10 partial release). */
NTSTATUS pa_nt_free_virtual_memory(pa_process_t *p, void **base, size_t *size, DWORD type,
                                   pa_owner_t owner);
NTSTATUS pa_nt_protect_virtual_memory(pa_process_t *p, void **base, size_t *size, DWORD protect,
                                      DWORD *old_protect, pa_owner_t owner);
NTSTATUS pa_nt_query_virtual_memory(pa_process_t *p, const void *address,
                                    MEMORY_BASIC_INFORMATION *mbi);
/* NtGetWriteWatch: fills addresses (up to *count) with written pages, sets *count. */
NTSTATUS pa_nt_get_write_watch(pa_process_t *p, DWORD flags, void *base, size_t size,
                               void **addresses, ULONG_PTR *count, ULONG *granularity);
NTSTATUS pa_nt_reset_write_watch(pa_process_t *p, void *base, size_t size);

/* Checked copies between simulated memory and the caller, as NtRead/NtWriteVirtualMemory with
 * the fault semantics of a real access: all or nothing. On STATUS_ACCESS_VIOLATION or
 * STATUS_GUARD_PAGE_VIOLATION (whose guard is then cleared, once) *fault is the first address
 * that faulted; nothing was copied. Writes mark write-watched pages. */
NTSTATUS pa_mm_read(pa_process_t *p, const void *address, void *out, size_t size,
                    uintptr_t *fault);
NTSTATUS pa_mm_write(pa_process_t *p, void *address, const void *data, size_t size,
                     uintptr_t *fault);
/* Pins [address, address+size) for a direct export (memoryview). want_write asks for write
 * access; *writable tells whether it was granted (all pages writable). Fails like pa_mm_read. */
NTSTATUS pa_mm_pin(pa_process_t *p, void *address, size_t size, int want_write, int *writable,
                   uintptr_t *fault, pa_pin_t **pin);
void pa_mm_unpin(pa_process_t *p, pa_pin_t *pin);
/* 1 if any allocation touching [address, address + size) belongs to owner. */
int pa_mm_range_has_owner(pa_process_t *p, const void *address, size_t size, pa_owner_t owner);
/* 1 if a pin overlaps [address, address + size) (size 0: any pin in memory of owner). */
int pa_mm_range_pinned(pa_process_t *p, const void *address, size_t size, pa_owner_t owner);

/* ---- status and last error (csrc/status.c) ---- */
DWORD pa_nt_status_to_dos_error(NTSTATUS status); /* RtlNtStatusToDosError */
DWORD pa_get_last_error(void);                    /* per thread */
void pa_set_last_error(DWORD code);
/* "ERROR_INVALID_ADDRESS" and "Attempt to access invalid address." for a known code; NULL else. */
const char *pa_error_name(DWORD code);
const char *pa_error_message(DWORD code);

/* ---- layer 2: the VirtualAlloc family (csrc/virtual.c); Win32 results, last error set ---- */
LPVOID pa_virtual_alloc(pa_process_t *p, LPVOID address, SIZE_T size, DWORD type, DWORD protect,
                        pa_owner_t owner);
BOOL pa_virtual_free(pa_process_t *p, LPVOID address, SIZE_T size, DWORD free_type,
                     pa_owner_t owner);
BOOL pa_virtual_protect(pa_process_t *p, LPVOID address, SIZE_T size, DWORD protect,
                        PDWORD old_protect, pa_owner_t owner);
SIZE_T pa_virtual_query(pa_process_t *p, LPCVOID address, PMEMORY_BASIC_INFORMATION mbi,
                        SIZE_T length);
void pa_get_system_info(pa_process_t *p, LPSYSTEM_INFO info);
UINT pa_get_write_watch(pa_process_t *p, DWORD flags, PVOID base, SIZE_T size, PVOID *addresses,
                        ULONG_PTR *count, PULONG granularity);
UINT pa_reset_write_watch(pa_process_t *p, LPVOID base, SIZE_T size);

/* ---- sections: shared memory and file mappings (csrc/section.c, csrc/mm.c) ----
 * Handles name kernel objects (sections and files) in one table shared by every process of
 * this host process, so that a section handle can be mapped into several pa_process_t; a
 * handle is a small multiple of 4, as on Windows, and a stale or made-up one fails with
 * STATUS_INVALID_HANDLE. Unnamed pagefile sections are memfds; named ones are POSIX shared
 * memory objects that other host processes open by the same name. */

/* A file handle for fd (which is duplicated: close fd as you like). */
NTSTATUS pa_nt_file_handle(int fd, HANDLE *handle);
/* NtCreateSection. protect: PAGE_READONLY, _READWRITE, _WRITECOPY, _EXECUTE_READ,
 * _EXECUTE_READWRITE, _EXECUTE_WRITECOPY. attributes: SEC_COMMIT (default) or SEC_RESERVE, with
 * SEC_NOCACHE or SEC_WRITECOMBINE. file: a file handle or NULL / INVALID_HANDLE_VALUE for the
 * pagefile. max_size 0: the file's size. A name that exists gives a handle to the existing
 * object and *existed = 1. */
NTSTATUS pa_nt_create_section(HANDLE *handle, DWORD access, uint64_t max_size, DWORD protect,
                              DWORD attributes, HANDLE file, const char *name, int *existed);
/* NtOpenSection by name (STATUS_OBJECT_NAME_NOT_FOUND if there is none). */
NTSTATUS pa_nt_open_section(HANDLE *handle, DWORD access, const char *name);
/* NtQuerySection: the section's size (page-rounded for the pagefile, exact for files). */
NTSTATUS pa_nt_query_section(HANDLE section, uint64_t *size, DWORD *attributes, DWORD *protect);
/* NtMapViewOfSection: maps [offset, offset + *size) (*size 0: to the end) at *base (NULL:
 * anywhere) with view protection protect. */
NTSTATUS pa_nt_map_view_of_section(HANDLE section, pa_process_t *p, void **base, uint64_t offset,
                                   size_t *size, DWORD protect);
/* NtUnmapViewOfSection: address may be anywhere inside the view. */
NTSTATUS pa_nt_unmap_view_of_section(pa_process_t *p, void *address);
/* NtFlushVirtualMemory: writes a file view's dirty pages to the file and waits. */
NTSTATUS pa_nt_flush_virtual_memory(pa_process_t *p, void *address, size_t size);
/* NtClose. */
NTSTATUS pa_nt_close(HANDLE handle);

/* Layer 2 (csrc/filemap.c): Win32 results and last errors. */
HANDLE pa_create_file_mapping(HANDLE file, DWORD protect, uint64_t max_size, const char *name);
HANDLE pa_open_file_mapping(DWORD access, const char *name);
LPVOID pa_map_view_of_file(pa_process_t *p, HANDLE mapping, DWORD access, uint64_t offset,
                           SIZE_T size, LPVOID base);
BOOL pa_unmap_view_of_file(pa_process_t *p, LPCVOID address);
BOOL pa_flush_view_of_file(pa_process_t *p, LPCVOID address, SIZE_T size);
BOOL pa_close_handle(HANDLE handle);

/* ---- event trace (csrc/trace.c) ----
 * Every layer can record its operations into a ring buffer per process: off by default and
 * then one relaxed load per operation. The memory manager records what changes the address
 * space (page-rounded, as it happened); the higher layers record their own calls. Readers
 * never block writers: an event overwritten while being read is skipped, and counted. */
typedef enum {
    PA_LAYER_MM = 1, PA_LAYER_VIRTUAL = 2, PA_LAYER_HEAP = 3, PA_LAYER_CRT = 4, PA_LAYER_NEW = 5
} pa_trace_layer_t;

typedef enum {
    /* layer 1 */
    PA_OP_RESERVE = 1, PA_OP_COMMIT, PA_OP_DECOMMIT, PA_OP_RELEASE, PA_OP_PROTECT, PA_OP_RESET,
    PA_OP_MAP_VIEW, PA_OP_UNMAP_VIEW, PA_OP_GUARD_HIT, PA_OP_WATCH_FAULT, PA_OP_COPY_ON_WRITE,
    /* layer 3 */
    PA_OP_HEAP_CREATE = 32, PA_OP_HEAP_DESTROY, PA_OP_HEAP_ALLOC, PA_OP_HEAP_REALLOC,
    PA_OP_HEAP_FREE, PA_OP_HEAP_COMPACT,
    /* layer 4 */
    PA_OP_MALLOC = 64, PA_OP_CALLOC, PA_OP_REALLOC, PA_OP_FREE, PA_OP_ALIGNED_MALLOC,
    PA_OP_ALIGNED_FREE,
    /* layer 5 */
    PA_OP_NEW = 96, PA_OP_DELETE, PA_OP_NEW_ARRAY, PA_OP_DELETE_ARRAY,
} pa_trace_op_t;

typedef struct pa_trace_event_s {
    uint64_t seq;       /* 1, 2, 3, ... per process */
    uint64_t time_ns;   /* CLOCK_MONOTONIC */
    uint32_t layer;     /* pa_trace_layer_t */
    uint32_t op;        /* pa_trace_op_t */
    uint64_t address;   /* the address operated on (or returned) */
    uint64_t size;      /* bytes */
    uint64_t flags;     /* the call's flags / protection / type */
    uint64_t extra;     /* op-specific: old protection, heap handle, new address, ... */
    int64_t result;     /* NTSTATUS, BOOL or 0 */
} pa_trace_event_t;

/* Starts recording into a ring of capacity events (0: 65536); nested calls count. */
NTSTATUS pa_trace_start(pa_process_t *p, size_t capacity);
/* Stops when every pa_trace_start has been matched. */
void pa_trace_stop(pa_process_t *p);
int pa_trace_enabled(const pa_process_t *p);
/* The sequence number the next event will get. */
uint64_t pa_trace_next_seq(const pa_process_t *p);
/* Copies up to max events with seq >= since, oldest first; returns how many. *next_since is
 * where to continue; *lost counts events overwritten before they could be read. */
size_t pa_trace_read(pa_process_t *p, uint64_t since, pa_trace_event_t *out, size_t max,
                     uint64_t *next_since, uint64_t *lost);
/* Records one event (any layer). Cheap no-op while tracing is off. */
void pa_trace_record(pa_process_t *p, uint32_t layer, uint32_t op, uint64_t address,
                     uint64_t size, uint64_t flags, uint64_t extra, int64_t result);
/* "VirtualAlloc"-style names for display, or NULL. */
const char *pa_trace_op_name(uint32_t op);

/* ---- structured exceptions seen by C code (csrc/mm.c) ----
 * A guard page touched by a direct load or store raises STATUS_GUARD_PAGE_VIOLATION: the guard
 * is cleared, the handler below (if any) is called, and the access is retried, as when a
 * Windows handler returns EXCEPTION_CONTINUE_EXECUTION. A first write to a write-watched page
 * is recorded silently. Any other fault in a process's address space is an unhandled access
 * violation and goes to the host's previous SIGSEGV handler. */
typedef void (*pa_exception_handler_t)(pa_process_t *p, NTSTATUS code, int write,
                                       uintptr_t address);
void pa_set_exception_handler(pa_exception_handler_t handler);

/* ==== layer 3: heap (csrc/heap*.c) ====
 * HeapCreate and friends with the process explicit. Results and last errors are Win32's
 * (heap.md section 1): NULL / FALSE / (SIZE_T)-1 with the last error set. A heap handle is the
 * heap's 64 KiB-aligned base address. Misuse never crashes and never corrupts a heap: a
 * handle that is not a live heap of the process fails with ERROR_INVALID_HANDLE (a NULL one
 * with ERROR_NOACCESS), a pointer that is not a busy block of the heap (double free, foreign
 * or wild pointer) fails with ERROR_INVALID_PARAMETER; pointers are checked against the heap's
 * own segments and the process's address space before anything is read through them.
 * HEAP_GENERATE_EXCEPTIONS is accepted; the failure is reported as a result (C has no SEH),
 * and pa_heap_last_status() gives the status Windows would raise. */

/* Debug options of one heap (pa_heap_options_t.debug); the environment variables
 * PYALLOC_HEAP_TAIL_CHECK, _FREE_CHECK, _VALIDATE_ALL, _PAGE_HEAP (=1) add them to every heap,
 * as the GlobalFlag image option does on Windows (heap.md fact 6). */
#define PA_HEAP_DEBUG_TAIL_CHECK 0x1u   /* 16 bytes of 0xAB after each block, checked */
#define PA_HEAP_DEBUG_FREE_CHECK 0x2u   /* freed blocks filled with 0xFEEEFEEE, new ones with
                                           0xBAADF00D; the fill is checked */
#define PA_HEAP_DEBUG_VALIDATE_ALL 0x4u /* HeapValidate(heap, 0, NULL) on every call */
#define PA_HEAP_DEBUG_PAGE_HEAP 0x8u    /* every block at the end of its own pages, followed by a
                                           PAGE_NOACCESS page; freed blocks decommitted */

typedef struct pa_heap_options_s {
    uint32_t debug;        /* PA_HEAP_DEBUG_* */
    int no_lfh;            /* 1: never activate the low-fragmentation front end */
    size_t large_cache;    /* bytes of freed large blocks kept for reuse; (size_t)-1 = default
                              (64 MiB or PYALLOC_HEAP_LARGE_CACHE). A reused block is not
                              zeroed unless HEAP_ZERO_MEMORY is given. */
} pa_heap_options_t;

#define PA_HEAP_BUCKETS 128 /* LFH size classes: 16-byte steps to 1 KiB, 16 per octave to 16 KiB */

/* Statistics of one heap, cheap to read (no walk). */
typedef struct pa_heap_stats_s {
    size_t reserved;        /* bytes of all the heap's reservations */
    size_t committed;       /* bytes of them committed */
    size_t busy_bytes;      /* requested bytes of live blocks */
    size_t busy_blocks;
    size_t free_bytes;      /* committed bytes in free back-end blocks, headers included */
    size_t free_blocks;
    size_t largest_free;    /* user bytes of the largest free back-end block */
    size_t overhead;        /* committed - busy_bytes - free_bytes */
    size_t large_blocks;    /* live blocks served by their own reservation */
    size_t cached_large_bytes; /* reserved bytes of freed large blocks kept for reuse */
    size_t segments;        /* regions, as HeapWalk lists them */
    uint32_t lfh_active;    /* buckets served by the LFH */
    uint32_t debug;         /* PA_HEAP_DEBUG_* in force */
    uint64_t bucket_busy[PA_HEAP_BUCKETS]; /* live LFH blocks per bucket */
} pa_heap_stats_t;

/* HeapCreate. options: HEAP_NO_SERIALIZE, HEAP_GENERATE_EXCEPTIONS, HEAP_CREATE_ENABLE_EXECUTE,
 * and here also HEAP_TAIL_CHECKING_ENABLED / HEAP_FREE_CHECKING_ENABLED (which Windows'
 * HeapCreate drops, heap.md fact 5). maximum 0 = growable. NULL + ERROR_NOT_ENOUGH_MEMORY or
 * ERROR_INVALID_PARAMETER on failure. */
HANDLE pa_heap_create(pa_process_t *p, DWORD options, SIZE_T initial, SIZE_T maximum);
/* pa_heap_create with per-heap options (NULL = defaults). */
HANDLE pa_heap_create_ex(pa_process_t *p, DWORD options, SIZE_T initial, SIZE_T maximum,
                         const pa_heap_options_t *heap_options);
/* HeapDestroy: releases every reservation of the heap. FALSE + ERROR_INVALID_HANDLE for a
 * handle that is not a heap of p, or for the process heap. */
BOOL pa_heap_destroy(pa_process_t *p, HANDLE heap);
/* GetProcessHeap: the process heap, created on first use (growable, serialized). */
HANDLE pa_heap_get_process_heap(pa_process_t *p);
/* GetProcessHeaps: the number of heaps; fills heaps[] (process heap first, then creation
 * order) when count is large enough. */
DWORD pa_heap_get_process_heaps(pa_process_t *p, DWORD count, HANDLE *heaps);
LPVOID pa_heap_alloc(pa_process_t *p, HANDLE heap, DWORD flags, SIZE_T size);
/* HeapReAlloc: mem NULL -> NULL with the last error 0. On failure mem stays valid. */
LPVOID pa_heap_realloc(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem, SIZE_T size);
/* HeapFree: mem NULL -> TRUE. */
BOOL pa_heap_free(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem);
/* HeapSize: the exact requested size, or (SIZE_T)-1 with the last error set. */
SIZE_T pa_heap_size(pa_process_t *p, HANDLE heap, DWORD flags, LPCVOID mem);
/* HeapValidate: mem NULL checks the whole heap. Never changes the last error. */
BOOL pa_heap_validate(pa_process_t *p, HANDLE heap, DWORD flags, LPCVOID mem);
/* HeapCompact: coalesces, decommits and releases what it can; returns the largest committed
 * free block (0 with the last error 0 when there is none). */
SIZE_T pa_heap_compact(pa_process_t *p, HANDLE heap, DWORD flags);
/* HeapLock / HeapUnlock (recursive; no exclusion on a HEAP_NO_SERIALIZE heap). HeapUnlock by a
 * thread that does not hold the lock: FALSE + ERROR_NOT_OWNER. */
BOOL pa_heap_lock(pa_process_t *p, HANDLE heap);
BOOL pa_heap_unlock(pa_process_t *p, HANDLE heap);
/* HeapWalk: start with entry->lpData = NULL; FALSE + ERROR_NO_MORE_ITEMS at the end. Regions
 * (segments) first, each followed by its blocks and uncommitted ranges, then large blocks. */
BOOL pa_heap_walk(pa_process_t *p, HANDLE heap, LPPROCESS_HEAP_ENTRY entry);
BOOL pa_heap_set_information(pa_process_t *p, HANDLE heap, HEAP_INFORMATION_CLASS info_class,
                             PVOID info, SIZE_T length);
BOOL pa_heap_query_information(pa_process_t *p, HANDLE heap, HEAP_INFORMATION_CLASS info_class,
                               PVOID info, SIZE_T length, PSIZE_T return_length);
/* Statistics. FALSE + ERROR_INVALID_HANDLE for a bad handle. */
BOOL pa_heap_stats(pa_process_t *p, HANDLE heap, pa_heap_stats_t *out);
/* For direct access from Python: STATUS_SUCCESS iff [address, address + size) lies within the
 * user bytes of one busy block of some heap of p; then *heap_out, *block_out and *block_size
 * (may be NULL) give the heap, the block's user pointer and its requested size. Otherwise
 * STATUS_ACCESS_VIOLATION. size 0 asks about the byte at address. */
NTSTATUS pa_heap_find_block(pa_process_t *p, const void *address, size_t size, HANDLE *heap_out,
                            void **block_out, size_t *block_size);
/* The NTSTATUS of the calling thread's last failed heap call (what HEAP_GENERATE_EXCEPTIONS
 * would raise: STATUS_NO_MEMORY, STATUS_ACCESS_VIOLATION, STATUS_INVALID_PARAMETER...). */
NTSTATUS pa_heap_last_status(void);
/* Destroys every heap of p, the process heap included. Call it before pa_process_destroy:
 * the heap layer keeps a registry of each process's heaps that must not outlive them. */
void pa_heap_process_detach(pa_process_t *p);

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_H */
