/* host.h: the preload library's read-only window onto the program's own process.
 *
 * Under `pyalloc run -- python ...` the interpreter's mallocs go to the preload library's
 * current process, and the extension module (pyalloc._core) has its own copy of the stack,
 * with its own current process, behind pyalloc.VirtualAlloc and the rest. The two are kept
 * apart on purpose: a Python call must not be able to free, protect or release the
 * interpreter's own memory (it would crash). This table lets the extension look at the
 * program's process without changing it (pyalloc.host()): the address space, the heaps and
 * what HeapWalk sees in them, copied out under the layer's lock.
 *
 * The preload library exports pyalloc_host_api(); the extension finds it with
 * dlsym(RTLD_DEFAULT, ...), and uses the table only when abi and the struct sizes match its
 * own (both are built from these headers by one setup.py; a preload library of another build
 * is ignored). */
#ifndef PA_PRELOAD_HOST_H
#define PA_PRELOAD_HOST_H

#include "pyalloc.h"

#define PA_HOST_ABI 1u
#define PA_HOST_SYMBOL "pyalloc_host_api"

typedef struct pa_host_api_s {
    uint32_t abi;          /* PA_HOST_ABI */
    uint32_t size;         /* sizeof(pa_host_api_t) */
    uint32_t region_size;  /* sizeof(pa_region_info_t) */
    uint32_t entry_size;   /* sizeof(PROCESS_HEAP_ENTRY) */
    uint32_t stats_size;   /* sizeof(pa_heap_stats_t) */
    uint32_t vm_size;      /* sizeof(pa_vm_stats_t) */
    /* The functions that fill a table (regions, heaps, heap_walk) copy at most cap entries
     * and return how many there are: more than cap means call again with more room (the
     * program may allocate between the calls, so the count can change). */
    size_t (*regions)(pa_region_info_t *out, size_t cap);
    void (*vm_stats)(pa_vm_stats_t *out);
    HANDLE (*process_heap)(void);
    size_t (*heaps)(HANDLE *out, size_t cap);
    /* 0 (and *error, a Win32 code) when heap is not one of the process's heaps. */
    int (*heap_stats)(HANDLE heap, pa_heap_stats_t *out, DWORD *error);
    /* HeapWalk from the start to ERROR_NO_MORE_ITEMS under HeapLock. (size_t)-1 and *error
     * (ERROR_INVALID_HANDLE, or the walk's own error: a corrupted heap) on failure. */
    size_t (*heap_walk)(HANDLE heap, PROCESS_HEAP_ENTRY *out, size_t cap, DWORD *error);
} pa_host_api_t;

#endif /* PA_PRELOAD_HOST_H */
