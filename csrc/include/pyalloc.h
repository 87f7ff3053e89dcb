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

/* ---- structured exceptions seen by C code (csrc/mm.c) ----
 * A guard page touched by a direct load or store raises STATUS_GUARD_PAGE_VIOLATION: the guard
 * is cleared, the handler below (if any) is called, and the access is retried, as when a
 * Windows handler returns EXCEPTION_CONTINUE_EXECUTION. A first write to a write-watched page
 * is recorded silently. Any other fault in a process's address space is an unhandled access
 * violation and goes to the host's previous SIGSEGV handler. */
typedef void (*pa_exception_handler_t)(pa_process_t *p, NTSTATUS code, int write,
                                       uintptr_t address);
void pa_set_exception_handler(pa_exception_handler_t handler);

#ifdef __cplusplus
}
#endif
#endif /* PYALLOC_H */
