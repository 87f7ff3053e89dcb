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
/* Registers fn to run when any process is destroyed, before its memory goes (process
 * rundown): the higher layers drop their per-process state there. Most recent first;
 * registering the same fn again does nothing. 0, or -1 when the table (8) is full. */
int pa_process_register_rundown(void (*fn)(pa_process_t *p));
/* fork() support, for programs that fork with the preload library: prepare takes every lock
 * of the layer (outermost first) so that no other thread holds one at the fork; parent
 * releases them; child re-creates them, since its only thread inherited them held (a
 * recursive mutex cannot be unlocked there: the child's thread id differs). Call the layers
 * top-down in prepare (CRT, heap, mm) and in any order after. */
void pa_mm_fork_prepare(void);
void pa_mm_fork_parent(void);
void pa_mm_fork_child(void);
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
/* Makes [address, address + size) (whole pages inside one private allocation) read as zero
 * without changing its state: committed pages stay committed with their protection, and the
 * host drops their contents (one madvise, cost in resident pages). For layer 3's reuse of
 * freed large blocks (heap.md fact 18). STATUS_INVALID_PARAMETER for a range that is not
 * page-aligned, not inside one allocation, a view, or write-watched; PA_STATUS_BUFFER_EXPORTED
 * when a pin overlaps it. The range is checked under the process lock and dropped after it
 * is released (other threads' VirtualAlloc calls do not wait for the madvise): the caller
 * must keep the range allocated until the call returns, as the heap does with its blocks. */
NTSTATUS pa_mm_zero_pages(pa_process_t *p, void *address, size_t size);
/* The same result for pages that the program has written and will write again: the pages
 * of the range the host holds (present or swapped out, from /proc/self/pagemap) and that do
 * not read as zero already are cleared in place, and stay resident so that the next writer
 * takes no page faults - when the held pages come to at most keep_max bytes; otherwise the
 * range is dropped as pa_mm_zero_pages does. *resident gets the bytes the host held (kept
 * iff <= keep_max), *written those of them that were not zero. The pages must be committed
 * read-write, and the caller keeps them so; ranges over 16 MiB are always dropped. */
NTSTATUS pa_mm_clear_pages(pa_process_t *p, void *address, size_t size, size_t keep_max,
                           size_t *resident, size_t *written);
/* Moves the contents of [src, src + size) to [dst, dst + size) (whole pages, not
 * overlapping, each range inside one private allocation, every page of both committed with
 * the same protection, PAGE_READWRITE or PAGE_EXECUTE_READWRITE): the host moves its page
 * mappings, so nothing is copied and no page faults follow; src then reads as zero, its state
 * unchanged. dst must read as zero before the call (a fresh or zeroed block: on a host
 * failure it is left so). For layer 3's moving HeapReAlloc of large blocks. Refused like
 * pa_mm_zero_pages (STATUS_INVALID_PARAMETER, PA_STATUS_BUFFER_EXPORTED); STATUS_NOT_SUPPORTED
 * when the host cannot move them (nothing changed: the caller copies). */
NTSTATUS pa_mm_move_pages(pa_process_t *p, void *dst, void *src, size_t size);
/* The base of a free range of size bytes whose address is `phase` bytes past a multiple of
 * `align` (both multiples of the allocation granularity, phase < align), the lowest such
 * range above the process's first free one; NULL when there is none. Only a hint: the caller
 * reserves it with pa_virtual_alloc (MEM_RESERVE at that address), which fails if another
 * thread took it meanwhile. Layer 3 places its large blocks with it (see heap.c). */
void *pa_mm_find_phased(pa_process_t *p, size_t size, size_t align, size_t phase);
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
    size_t overhead;        /* committed - busy_bytes - free_bytes - spare_committed */
    size_t large_blocks;    /* live blocks served by their own reservation */
    size_t cached_large_bytes; /* reserved bytes of freed large blocks kept for reuse */
    size_t cached_large_resident; /* bytes of them cleared in place and kept in memory */
    size_t spare_committed; /* committed bytes of free LFH chunks, their pages dropped: not in
                               memory, kept for the next subsegments */
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
/* For Process(heap_guard=False): the first address of [address, address + size) that lies in
 * some heap's private control data (the header after its Windows-layout fields, segment
 * descriptors, LFH segment header chunks, the PA_LFH_SUB_HDR bytes at the start of each LFH
 * chunk that begins a subsegment or is free), which the heap trusts; 0 when none does. Block
 * headers and free blocks are not private: the heap checks them before use. */
uintptr_t pa_heap_private_overlap(pa_process_t *p, const void *address, size_t size);
/* fork() support for every heap of every process (see pa_mm_fork_prepare). */
void pa_heap_fork_prepare(void);
void pa_heap_fork_parent(void);
void pa_heap_fork_child(void);
/* The NTSTATUS of the calling thread's last failed heap call (what HEAP_GENERATE_EXCEPTIONS
 * would raise: STATUS_NO_MEMORY, STATUS_ACCESS_VIOLATION, STATUS_INVALID_PARAMETER...).
 * STATUS_HEAP_CORRUPTION when the call found the heap's metadata corrupted (a tail or free
 * fill overwritten, a block header or list link that fails its check). */
NTSTATUS pa_heap_last_status(void);
/* 1 if HeapSetInformation(HeapEnableTerminationOnCorruption) applies to heap (set for it, or
 * for every heap of p with a NULL handle, later heaps included), else 0 (also for a handle
 * that is not a heap of p). Where Windows would terminate the process on corruption, a caller
 * reports the failure as an exception instead of a plain error (the Python binding raises
 * HeapException(STATUS_HEAP_CORRUPTION)). Heap calls themselves still fail cleanly. */
int pa_heap_terminates_on_corruption(pa_process_t *p, HANDLE heap);
/* Destroys every heap of p, the process heap included. pa_process_destroy runs it (the heap
 * layer registers it as a rundown function when it first sees a process). */
void pa_heap_process_detach(pa_process_t *p);

/* ==== layer 4: CRT (csrc/crt*.c) ====
 * UCRT's malloc family over the process heap, with the process explicit (heap.md 1.12-1.14,
 * 1.16). Each release CRT block is exactly one HeapAlloc on pa_heap_get_process_heap(p): the
 * pointer malloc returns is the heap block, so HeapSize(process heap, 0, p) == _msize(p) and
 * HeapWalk lists CRT blocks. Failures set the host's errno, which is the calling thread's
 * (ENOMEM 12, EINVAL 22, as on Windows); success leaves it alone. Where UCRT calls the
 * invalid-parameter handler (_msize(NULL), an alignment that is not a power of two,
 * _set_new_mode(2) ...), pyalloc calls the process's handler if one is set and then fails
 * with EINVAL as UCRT does when the handler returns; UCRT's default handler would end the
 * process instead.
 *
 * Each process has its own CRT state (new mode, new handler, hooks, debug heap), created on
 * first use and freed by pa_crt_process_detach (run by pa_process_destroy). Whether a process
 * runs the debug CRT is fixed before its first CRT allocation, as linking with ucrtbased.dll
 * would fix it: in a debug process every function below behaves as the debug CRT's (malloc is
 * _malloc_dbg(size, _NORMAL_BLOCK, NULL, 0), _msize is _msize_dbg ...), and in a release
 * process the *_dbg functions behave as the release ones, as crtdbg.h's macros do without
 * _DEBUG.
 *
 * Words used here: a CRT block is what the malloc family returned; a debug block is
 * _CrtMemBlockHeader (wintypes.h, 48 bytes) + data + 4 bytes of no-man's land (0xFD), one
 * HeapAlloc; its request number counts the debug CRT's allocations from 1; an aligned block
 * is a CRT block holding an aligned pointer and, just below it, a pointer back to the block.
 */

/* Debug CRT fills (heap.md fact 89) and the marks of ignore blocks (fact 90). */
#define PA_CRT_CLEAN_FILL 0xCD         /* new data, and realloc growth */
#define PA_CRT_DEAD_FILL 0xDD          /* freed blocks */
#define PA_CRT_NO_MANS_LAND_FILL 0xFD  /* the gaps before and after data */
#define PA_CRT_ALIGN_FILL 0xED         /* the P-byte gap below an aligned debug pointer */
#define PA_CRT_NO_MANS_LAND_SIZE 4
#define PA_CRT_IGNORE_LINE ((int)0xFEDCBABC)

/* How a block was allocated, for pyalloc's mismatch reports (debug CRT). */
#define PA_CRT_FAMILY_MALLOC 0    /* malloc family (also _aligned_*, which MSVC tells by 0xED) */
#define PA_CRT_FAMILY_NEW 1       /* operator new */
#define PA_CRT_FAMILY_NEW_ARRAY 2 /* operator new[] */

/* A new handler: nonzero = the allocation is retried, 0 = give up. ctx is given at install. */
typedef int (*pa_crt_new_handler_t)(pa_process_t *p, size_t size, void *ctx);
/* The invalid-parameter handler; function is the CRT function's name ("_aligned_malloc"). */
typedef void (*pa_crt_invalid_parameter_handler_t)(pa_process_t *p, const char *function,
                                                   void *ctx);
/* Receives text line by line (leak dumps, statistics); line ends with '\n'. */
typedef void (*pa_crt_sink_t)(const char *line, void *ctx);
/* operator new's "throw" (layer 5): status is PA_NEW_BAD_ALLOC or _BAD_ARRAY_NEW_LENGTH. */
typedef void (*pa_new_throw_hook_t)(pa_process_t *p, int status, size_t size, void *ctx);

/* One report of the debug CRT (_CrtDbgReport). The message is MSVC's wording. */
typedef struct pa_crt_report_s {
    int type;            /* _CRT_WARN, _CRT_ERROR or _CRT_ASSERT */
    int kind;            /* PA_CRT_REPORT_* */
    const char *message;
    void *block;         /* the user pointer concerned, or NULL */
    long request;        /* its request number, or 0 */
} pa_crt_report_t;
#define PA_CRT_REPORT_OTHER 0
#define PA_CRT_REPORT_CORRUPTION 1  /* a no-man's land or a delay-freed block was overwritten */
#define PA_CRT_REPORT_BAD_POINTER 2 /* not a debug block of this CRT, freed twice, wrong type */
#define PA_CRT_REPORT_ALIGNED 3     /* aligned and plain routines mixed (MSVC's check) */
#define PA_CRT_REPORT_MISMATCH 4    /* malloc/free, new/delete, new[]/delete[] mixed: pyalloc's
                                       own check, MSVC does not make it (its new blocks are
                                       _NORMAL_BLOCKs like malloc's) */
#define PA_CRT_REPORT_LEAK 5        /* a line of a leak dump or object dump */
#define PA_CRT_REPORT_BREAK 6       /* the _CrtSetBreakAlloc request happened, no break hook */
/* Returns nonzero when it handled the report; 0 lets it go on to stderr. Runs under the CRT
 * lock (recursive: it may call the CRT). */
typedef int (*pa_crt_report_hook_t)(pa_process_t *p, const pa_crt_report_t *report, void *ctx);
/* Called instead of _CrtDbgBreak when the allocation numbered request is made. */
typedef void (*pa_crt_break_hook_t)(pa_process_t *p, long request, void *ctx);
/* _CrtSetAllocHook's hook: op is _HOOK_ALLOC, _REALLOC or _FREE; 0 makes the call fail. */
typedef int (*pa_crt_alloc_hook_t)(pa_process_t *p, int op, void *block, size_t size,
                                   int block_use, long request, const char *file, int line,
                                   void *ctx);

/* One tracked debug block (pa_crt_leaks, pa_crt_walk_blocks). */
typedef struct pa_crt_block_info_s {
    void *data;         /* user pointer */
    size_t size;        /* requested bytes */
    long request;
    int block_use;      /* _NORMAL_BLOCK, _CLIENT_BLOCK | subtype << 16, _CRT_BLOCK, _FREE_BLOCK */
    int family;         /* PA_CRT_FAMILY_* */
    const char *file;   /* call site, or NULL */
    int line;
} pa_crt_block_info_t;

typedef struct pa_crt_stats_s {
    int debug;                     /* 1: the debug CRT */
    int dbg_flag;                  /* _crtDbgFlag (0 in a release process) */
    long next_request;             /* the number the next debug allocation gets */
    size_t counts[_MAX_BLOCKS];    /* tracked blocks by type (_CrtMemCheckpoint's lCounts) */
    size_t sizes[_MAX_BLOCKS];     /* their bytes */
    size_t high_water;             /* most bytes live at once */
    size_t total;                  /* bytes ever allocated */
    uint64_t reports[_CRT_ERRCNT]; /* by report type */
    uint64_t mismatches;           /* PA_CRT_REPORT_MISMATCH and _ALIGNED reports */
    uint64_t break_hits;
    uint64_t invalid_parameters;
    uint64_t new_handler_calls;
} pa_crt_stats_t;

/* -- the process's CRT (csrc/crt.c) -- */
/* Chooses the debug (1) or release (0) CRT for p: 0 on success, -1 with errno EBUSY once p
 * made a CRT allocation. The default is PYALLOC_CRT_DEBUG (0 unless set to 1). */
int pa_crt_set_debug(pa_process_t *p, int debug);
int pa_crt_is_debug(pa_process_t *p);
/* Frees p's CRT state, dumping leaks first when _CRTDBG_LEAK_CHECK_DF is set (as the debug
 * CRT does at exit). pa_process_destroy runs it before the heap's rundown (the CRT registers
 * it when it first sees a process); call it yourself only before pa_heap_process_detach, as
 * the debug CRT's list lives in the process heap. The CRT blocks themselves stay in the heap;
 * the next CRT call starts a fresh state. */
void pa_crt_process_detach(pa_process_t *p);
/* The end of p's program, as UCRT's termination sees it after the atexit functions: the
 * debug CRT with _CRTDBG_LEAK_CHECK_DF dumps the leaks (_CrtDumpMemoryLeaks). Once per CRT
 * state: later calls, and the detach, do nothing more. The library calls it for
 * pa_process_current() when the program ends (an ELF destructor, so after every atexit
 * function, and after Python has finished; the dump then goes to stderr). Doesn't create
 * p's CRT state. */
void pa_crt_exit(pa_process_t *p);
HANDLE pa_crt_get_heap_handle(pa_process_t *p); /* _get_heap_handle: the process heap */
int pa_crt_get_errno(void);                     /* the thread's errno */
void pa_crt_set_errno(int value);

/* fork() support for p's CRT state (see pa_mm_fork_prepare). */
void pa_crt_fork_prepare(pa_process_t *p);
void pa_crt_fork_parent(pa_process_t *p);
void pa_crt_fork_child(pa_process_t *p);

void *pa_crt_malloc(pa_process_t *p, size_t size);
void *pa_crt_calloc(pa_process_t *p, size_t count, size_t size);
void *pa_crt_realloc(pa_process_t *p, void *block, size_t size);
void pa_crt_free(pa_process_t *p, void *block);
/* _msize: (size_t)-1 + EINVAL for NULL; HeapSize's result otherwise (-1 for a non-block). */
size_t pa_crt_msize(pa_process_t *p, void *block);
/* _expand: resizes in place or fails (NULL, errno from the heap's last error). */
void *pa_crt_expand(pa_process_t *p, void *block, size_t size);
void *pa_crt_recalloc(pa_process_t *p, void *block, size_t count, size_t size);
void *pa_crt_aligned_malloc(pa_process_t *p, size_t size, size_t alignment);
void *pa_crt_aligned_offset_malloc(pa_process_t *p, size_t size, size_t alignment, size_t offset);
void *pa_crt_aligned_realloc(pa_process_t *p, void *block, size_t size, size_t alignment);
void *pa_crt_aligned_offset_realloc(pa_process_t *p, void *block, size_t size, size_t alignment,
                                    size_t offset);
void *pa_crt_aligned_recalloc(pa_process_t *p, void *block, size_t count, size_t size,
                              size_t alignment);
void *pa_crt_aligned_offset_recalloc(pa_process_t *p, void *block, size_t count, size_t size,
                                     size_t alignment, size_t offset);
/* _aligned_free. A pointer that is not an aligned block fails with EINVAL without touching
 * memory (Windows would free whatever the slot below it points to). */
void pa_crt_aligned_free(pa_process_t *p, void *block);
size_t pa_crt_aligned_msize(pa_process_t *p, void *block, size_t alignment, size_t offset);

/* _set_new_mode (0 or 1, else -1 + EINVAL) and _query_new_mode. Mode 1: malloc, calloc and
 * realloc call the new handler on failure and retry while it returns nonzero. */
int pa_crt_set_new_mode(pa_process_t *p, int mode);
int pa_crt_query_new_mode(pa_process_t *p);
/* _set_new_handler: one handler per process, shared with operator new (std::set_new_handler
 * is pa_set_new_handler). Returns the previous handler (NULL at first). */
pa_crt_new_handler_t pa_crt_set_new_handler(pa_process_t *p, pa_crt_new_handler_t handler,
                                            void *ctx);
pa_crt_new_handler_t pa_crt_query_new_handler(pa_process_t *p, void **ctx);
/* _callnewh: 1 if a handler exists and returned nonzero, else 0. */
int pa_crt_callnewh(pa_process_t *p, size_t size);
/* _set_invalid_parameter_handler: returns the previous handler (NULL = pyalloc's default,
 * which only counts). */
pa_crt_invalid_parameter_handler_t
pa_crt_set_invalid_parameter_handler(pa_process_t *p, pa_crt_invalid_parameter_handler_t handler,
                                     void *ctx);
/* Counters of p's CRT (tracked-block figures are 0 in a release process). */
void pa_crt_stats(pa_process_t *p, pa_crt_stats_t *out);

/* -- the debug CRT (csrc/crt_debug.c) -- */
/* The *_dbg family (crtdbg.h). block_use: _NORMAL_BLOCK, _CLIENT_BLOCK (| subtype << 16) or
 * _CRT_BLOCK; file (kept by pointer: it must outlive the block) and line are the call site. */
void *pa_crt_malloc_dbg(pa_process_t *p, size_t size, int block_use, const char *file, int line);
void *pa_crt_calloc_dbg(pa_process_t *p, size_t count, size_t size, int block_use,
                        const char *file, int line);
void *pa_crt_realloc_dbg(pa_process_t *p, void *block, size_t size, int block_use,
                         const char *file, int line);
void *pa_crt_recalloc_dbg(pa_process_t *p, void *block, size_t count, size_t size,
                          int block_use, const char *file, int line);
void *pa_crt_expand_dbg(pa_process_t *p, void *block, size_t size, int block_use,
                        const char *file, int line);
void pa_crt_free_dbg(pa_process_t *p, void *block, int block_use);
size_t pa_crt_msize_dbg(pa_process_t *p, void *block, int block_use);
void *pa_crt_aligned_malloc_dbg(pa_process_t *p, size_t size, size_t alignment, const char *file,
                                int line);
void *pa_crt_aligned_offset_malloc_dbg(pa_process_t *p, size_t size, size_t alignment,
                                       size_t offset, const char *file, int line);
void *pa_crt_aligned_realloc_dbg(pa_process_t *p, void *block, size_t size, size_t alignment,
                                 const char *file, int line);
void *pa_crt_aligned_offset_realloc_dbg(pa_process_t *p, void *block, size_t size,
                                        size_t alignment, size_t offset, const char *file,
                                        int line);
void *pa_crt_aligned_recalloc_dbg(pa_process_t *p, void *block, size_t count, size_t size,
                                  size_t alignment, const char *file, int line);
void *pa_crt_aligned_offset_recalloc_dbg(pa_process_t *p, void *block, size_t count, size_t size,
                                         size_t alignment, size_t offset, const char *file,
                                         int line);
void pa_crt_aligned_free_dbg(pa_process_t *p, void *block);
size_t pa_crt_aligned_msize_dbg(pa_process_t *p, void *block, size_t alignment, size_t offset);

/* _CrtSetDbgFlag: returns the previous flags; _CRTDBG_REPORT_FLAG only asks; unknown low bits
 * -> invalid parameter, EINVAL, the current flags returned unchanged. 0 in a release process. */
int pa_crt_set_dbg_flag(pa_process_t *p, int flags);
/* _CrtCheckMemory: checks every tracked block's no-man's land, that delay-freed blocks still
 * hold 0xDD, that the list has no cycle, then HeapValidate of the process heap; reports each
 * problem and returns FALSE if there was one. TRUE in a release process or with
 * _CRTDBG_ALLOC_MEM_DF off.
 * Headers are the program's memory and may be damaged: every walk of the list (this check,
 * the dumps, pa_crt_leaks, pa_crt_walk_blocks, checkpoints, pa_crt_stats) stops at the first
 * header whose size, links or file name pointer the CRT cannot vouch for, reports it
 * ("Bad memory block found at ...", _CRT_WARN, PA_CRT_REPORT_CORRUPTION) and sees only the
 * blocks before it. */
int pa_crt_check_memory(pa_process_t *p);
/* _CrtDumpMemoryLeaks: TRUE iff a normal or client block (or a CRT block, with
 * _CRTDBG_CHECK_CRT_DF) is live; then writes MSVC's dump ("Detected memory leaks!", one entry
 * per block, newest first, "Object dump complete.") line by line to sink, or as _CRT_WARN
 * reports when sink is NULL. */
int pa_crt_dump_memory_leaks(pa_process_t *p, pa_crt_sink_t sink, void *ctx);
/* The leaks as data: fills out[0 .. min(n, max)) newest first and returns n, the number of
 * blocks _CrtDumpMemoryLeaks would list. */
size_t pa_crt_leaks(pa_process_t *p, pa_crt_block_info_t *out, size_t max);
/* Calls fn for every tracked block, newest first, until it returns nonzero (returned). Holds
 * the CRT lock: fn must not allocate or free through this CRT. */
int pa_crt_walk_blocks(pa_process_t *p, int (*fn)(const pa_crt_block_info_t *b, void *arg),
                       void *arg);
/* _CrtSetBreakAlloc: returns the previous number (-1 = none). When the allocation with that
 * request number is made, the break hook is called (or a PA_CRT_REPORT_BREAK report made). */
long pa_crt_set_break_alloc(pa_process_t *p, long request);
pa_crt_break_hook_t pa_crt_set_break_hook(pa_process_t *p, pa_crt_break_hook_t hook, void *ctx);
pa_crt_alloc_hook_t pa_crt_set_alloc_hook(pa_process_t *p, pa_crt_alloc_hook_t hook, void *ctx);
/* Where reports go (NULL: stderr). Returns the previous hook. */
pa_crt_report_hook_t pa_crt_set_report_hook(pa_process_t *p, pa_crt_report_hook_t hook,
                                            void *ctx);
/* _CrtIsValidHeapPointer: HeapValidate(process heap, 0, header of block). */
int pa_crt_is_valid_heap_pointer(pa_process_t *p, const void *block);
/* _CrtReportBlockType: the block's block_use, or -1. */
int pa_crt_report_block_type(pa_process_t *p, const void *block);
void pa_crt_set_dbg_block_type(pa_process_t *p, void *block, int block_use);
/* _CrtIsMemoryBlock: TRUE iff block is a debug block of exactly size bytes; fills the rest. */
int pa_crt_is_memory_block(pa_process_t *p, const void *block, unsigned size, long *request,
                           const char **file, int *line);
/* _CrtMemCheckpoint, _CrtMemDifference, _CrtMemDumpAllObjectsSince (NULL: all),
 * _CrtMemDumpStatistics. The dumps write to sink, or as _CRT_WARN reports when it is NULL. */
void pa_crt_mem_checkpoint(pa_process_t *p, _CrtMemState *state);
int pa_crt_mem_difference(pa_process_t *p, _CrtMemState *diff, const _CrtMemState *old_state,
                          const _CrtMemState *new_state);
void pa_crt_mem_dump_all_objects_since(pa_process_t *p, const _CrtMemState *state,
                                       pa_crt_sink_t sink, void *ctx);
void pa_crt_mem_dump_statistics(pa_process_t *p, const _CrtMemState *state, pa_crt_sink_t sink,
                                void *ctx);

/* ==== layer 5: new/delete (csrc/new.c) ====
 * vcruntime's operator new/delete over layer 4 (heap.md 1.14-1.16). C has no exceptions: where
 * C++ would throw std::bad_alloc or std::bad_array_new_length, the call returns NULL, the
 * calling thread's pa_new_status() says which, and the process's throw hook (if any) is
 * called first; the nothrow forms return NULL without calling it. */
#define PA_DEFAULT_NEW_ALIGNMENT ((size_t)16) /* __STDCPP_DEFAULT_NEW_ALIGNMENT__ on x64 */
/* Which overload (flags). align 0 = the overloads without std::align_val_t. */
#define PA_NEW_ARRAY 0x1u   /* operator new[] / operator delete[] */
#define PA_NEW_NOTHROW 0x2u /* the std::nothrow_t overloads */
#define PA_NEW_SIZED 0x4u   /* delete: the sized overload (the size is not used, as in MSVC) */
/* pa_new_status() */
#define PA_NEW_OK 0
#define PA_NEW_BAD_ALLOC 1            /* std::bad_alloc */
#define PA_NEW_BAD_ARRAY_NEW_LENGTH 2 /* std::bad_array_new_length (size == SIZE_MAX) */
#define PA_NEW_CTOR_FAILED 3          /* a constructor "threw" (returned nonzero) */

/* A constructor: 0 = constructed, nonzero = failed (as if it threw). */
typedef int (*pa_ctor_t)(void *obj, void *ctx);
typedef void (*pa_dtor_t)(void *obj, void *ctx);

/* operator new(size [, align_val_t] [, nothrow]) and new[]: loops malloc (align 0) or
 * _aligned_malloc(size, align) and the new handler; when the handler gives up, "throws". */
void *pa_operator_new(pa_process_t *p, size_t size, size_t align, unsigned flags);
/* MSVC's debug overload operator new(size, block_use, file, line) (and new[] with
 * PA_NEW_ARRAY): _malloc_dbg with the call site; the plain new in a release process. */
void *pa_operator_new_dbg(pa_process_t *p, size_t size, unsigned flags, int block_use,
                          const char *file, int line);
/* operator delete / delete[] ([sized], [aligned]): free, or _aligned_free when align != 0; in
 * the debug CRT _free_dbg(block, _UNKNOWN_BLOCK), with pyalloc's mismatch check. */
void pa_operator_delete(pa_process_t *p, void *block, size_t size, size_t align, unsigned flags);
/* std::set_new_handler: the same per-process slot as _set_new_handler. */
pa_crt_new_handler_t pa_set_new_handler(pa_process_t *p, pa_crt_new_handler_t handler, void *ctx);
/* Called where C++ would throw from operator new (may longjmp: no lock is held). */
pa_new_throw_hook_t pa_set_new_throw_hook(pa_process_t *p, pa_new_throw_hook_t hook, void *ctx);
/* PA_NEW_* of the calling thread's last pa_operator_new*, pa_new_object or pa_new_array. */
int pa_new_status(void);

/* new-expressions and delete-expressions as MSVC compiles them. A type is described by its
 * size, its alignment (alignof(T); 0 is read as 1; above PA_DEFAULT_NEW_ALIGNMENT the
 * align_val_t overloads are used) and whether its destructor is non-trivial (has_dtor).
 *
 * new T[count]: if has_dtor, a cookie of max(8, align) bytes starts the allocation, holding
 * count (size_t) in its first 8 bytes, and the array follows it, so with ordinary alignment the
 * count sits just before element 0; otherwise there is no cookie and operator new[] gets
 * exactly size * count (heap.md fact 86). A size that overflows asks operator new[] for
 * SIZE_MAX (bad_array_new_length). Constructors run in order; if one fails, the elements
 * already built are destroyed in reverse order (if has_dtor), the memory goes back to operator
 * delete[] and NULL is returned with PA_NEW_CTOR_FAILED. delete[] runs the destructors in
 * reverse order (count read from the cookie) and passes the allocation to operator delete[];
 * without has_dtor it knows no count and runs none. Before trusting a cookie, pa_delete_array
 * checks that count elements fit in the allocation (else errno EINVAL, nothing run or freed;
 * Windows would run destructors over a garbage count); in the debug CRT a delete[] of a block
 * that new (not new[]) allocated is reported as a mismatch and left alone. */
size_t pa_new_array_cookie_size(size_t elem_align, int has_dtor);
void *pa_new_array(pa_process_t *p, size_t elem_size, size_t elem_align, size_t count,
                   int has_dtor, pa_ctor_t ctor, pa_dtor_t dtor, void *ctx);
void pa_delete_array(pa_process_t *p, void *array, size_t elem_size, size_t elem_align,
                     int has_dtor, pa_dtor_t dtor, void *ctx);
/* The count stored in the cookie of an array made with has_dtor. */
size_t pa_new_array_count(const void *array, size_t elem_align);
/* new T / delete obj (sized delete, as MSVC calls it). ctor/dtor may be NULL (trivial). */
void *pa_new_object(pa_process_t *p, size_t size, size_t align, pa_ctor_t ctor, void *ctx);
void pa_delete_object(pa_process_t *p, void *obj, size_t size, size_t align, pa_dtor_t dtor,
                      void *ctx);

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_H */
