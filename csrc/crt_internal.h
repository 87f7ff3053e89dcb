/* crt_internal.h: layers 4 and 5's private state, shared by crt.c, crt_debug.c, crt_win32.c and
 * new.c (the `_pa_crt_` names). The per-process CRT state is described here, once.
 *
 * A process's CRT state (pa_crt_t) lives in host memory from _pa_os_alloc (never in the
 * simulated address space, so no application write can damage it) and hangs off
 * pa_process_s.crt; it is created on the first CRT call and freed by pa_crt_process_detach,
 * which pa_process_destroy runs as a rundown function before the heap's.
 *
 * Release CRT: a CRT block is one HeapAlloc on the process heap, nothing else; the state only
 * holds the new mode, the handlers and the hooks.
 *
 * Debug CRT (crt_debug.c): every block is a _CrtMemBlockHeader (wintypes.h), data and 4 bytes
 * of no-man's land, all from one HeapAlloc. Invariants, under `lock`:
 *   - first..last lists every tracked block (normal, client, CRT, and _FREE_BLOCK ones kept by
 *     _CRTDBG_DELAY_FREE_MEM_DF), newest first; first->prev == NULL, last->next == NULL.
 *     Ignore blocks are never listed;
 *   - listed == the number of blocks on first..last (walks take no more steps than that);
 *   - current == sum of data_size over listed blocks that are not _FREE_BLOCK;
 *   - families holds an entry for exactly the live debug blocks allocated by operator new or
 *     new[] (key: the user pointer of the debug block); blocks without one came from malloc;
 *   - names holds every file name pointer stored in a listed block's header, with the number of
 *     listed headers holding it: a header's file_name is dereferenced only if names has it
 *     (crt_debug.c, header_sound).
 * Nothing in the state is read or written without `lock` except the atomics.
 *
 * Locks, outermost first: a CRT lock (recursive, as UCRT's heap lock: report, allocation and
 * new handlers run under it and may call back into the CRT) > the heap's locks (layer 3).
 */
#ifndef PA_CRT_INTERNAL_H
#define PA_CRT_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "internal.h"

#define PA_PTR_SIZE sizeof(void *)

/* A pointer-keyed table (the family table, the file name table): open addressing, linear
 * probing, deletion by backward shift. */
typedef struct pa_crt_table_s {
    uintptr_t *keys; /* 0 = empty */
    uintptr_t *vals; /* families: PA_CRT_FAMILY_*; names: reference counts */
    size_t cap;      /* power of two, or 0 */
    size_t count;
} pa_crt_table_t;

typedef struct pa_crt_s {
    pthread_mutex_t lock;   /* recursive */
    int debug;              /* 1: the debug CRT; fixed once `used` is set */
    atomic_int used;        /* a CRT allocation was made */
    atomic_int new_mode;    /* _set_new_mode */
    atomic_int ended;       /* pa_crt_exit ran: the program's end was seen, once */

    /* Handlers and hooks; each function pointer with its context, written under lock. */
    pa_crt_new_handler_t new_handler;
    void *new_handler_ctx;
    pa_crt_invalid_parameter_handler_t iph;
    void *iph_ctx;
    pa_new_throw_hook_t throw_hook;
    void *throw_hook_ctx;
    pa_crt_report_hook_t report_hook;
    void *report_hook_ctx;
    pa_crt_break_hook_t break_hook;
    void *break_hook_ctx;
    pa_crt_alloc_hook_t alloc_hook;
    void *alloc_hook_ctx;

    /* Debug heap (crt_debug.c). */
    _CrtMemBlockHeader *first, *last;
    size_t total, current, max_current;  /* bytes: ever, live, most live at once */
    unsigned check_frequency, check_counter;
    int checking;                        /* inside an automatic _CrtCheckMemory */
    LONG next_request;                   /* starts at 1 */
    int dbg_flag;                        /* _crtDbgFlag */
    LONG break_alloc;                    /* -1 = none */
    size_t listed;                       /* blocks on first..last */
    pa_crt_table_t families;
    pa_crt_table_t names;                /* file name -> listed headers holding it */

    /* Counters (pa_crt_stats). */
    uint64_t reports[_CRT_ERRCNT];
    uint64_t mismatches, break_hits, invalid_parameters, new_handler_calls;
} pa_crt_t;

/* The CRT state of p, created on first use (debug or not per the PYALLOC_CRT_* options). NULL
 * only when p is NULL or the host is out of memory. */
pa_crt_t *_pa_crt_get(pa_process_t *p);
/* Marks the first allocation (after which the debug choice is fixed). */
static inline void _pa_crt_mark_used(pa_crt_t *c)
{
    if (PA_UNLIKELY(!atomic_load_explicit(&c->used, memory_order_relaxed)))
        atomic_store_explicit(&c->used, 1, memory_order_relaxed);
}
/* UCRT's _VALIDATE_RETURN: calls the invalid-parameter handler, then sets errno (the caller
 * returns its failure value). */
void _pa_crt_invalid_parameter(pa_process_t *p, pa_crt_t *c, const char *function, int err);
/* errno for a Win32 error code (UCRT's __acrt_errno_from_os_error, for the codes the heap
 * sets). */
int _pa_crt_errno_from_os_error(DWORD error);

/* Options read once from the environment (crt.c). */
typedef struct pa_crt_options_s {
    int debug;       /* PYALLOC_CRT_DEBUG */
    int dbg_flag;    /* PYALLOC_CRT_DBG_FLAG; -1 = UCRT's default */
    long break_alloc; /* PYALLOC_CRT_BREAK_ALLOC; -1 = none */
} pa_crt_options_t;
const pa_crt_options_t *_pa_crt_options(void);

/* ---- the release CRT's primitives (crt.c), which the debug CRT builds on ---- */
void *_pa_crt_malloc_base(pa_process_t *p, pa_crt_t *c, size_t size);
void *_pa_crt_realloc_base(pa_process_t *p, pa_crt_t *c, void *block, size_t size);
void *_pa_crt_expand_base(pa_process_t *p, pa_crt_t *c, void *block, size_t size);
void _pa_crt_free_base(pa_process_t *p, void *block);
size_t _pa_crt_msize_base(pa_process_t *p, void *block);
/* The release _aligned_malloc and _aligned_free (for new.c's aligned new and delete). */
void *_pa_crt_aligned_malloc_base(pa_process_t *p, pa_crt_t *c, size_t size, size_t align);
void _pa_crt_aligned_free_base(pa_process_t *p, void *block);

/* ---- the debug CRT (crt_debug.c); every function takes the lock itself ---- */
void _pa_crt_dbg_init(pa_crt_t *c, const pa_crt_options_t *o);
void _pa_crt_dbg_destroy(pa_process_t *p, pa_crt_t *c);
/* _malloc_dbg with the new-mode loop; family tags the block for mismatch reports. */
void *_pa_crt_dbg_malloc(pa_process_t *p, pa_crt_t *c, size_t size, int block_use,
                         const char *file, int line, int family);
void *_pa_crt_dbg_calloc(pa_process_t *p, pa_crt_t *c, size_t count, size_t size, int block_use,
                         const char *file, int line);
void *_pa_crt_dbg_realloc(pa_process_t *p, pa_crt_t *c, void *block, size_t size, int block_use,
                          const char *file, int line);
void *_pa_crt_dbg_recalloc(pa_process_t *p, pa_crt_t *c, void *block, size_t count, size_t size,
                           int block_use, const char *file, int line);
void *_pa_crt_dbg_expand(pa_process_t *p, pa_crt_t *c, void *block, size_t size, int block_use,
                         const char *file, int line);
/* _free_dbg; family is how the caller releases (free = MALLOC, delete = NEW, delete[] =
 * NEW_ARRAY), compared with how the block was allocated. */
void _pa_crt_dbg_free(pa_process_t *p, pa_crt_t *c, void *block, int block_use, int family);
size_t _pa_crt_dbg_msize(pa_process_t *p, pa_crt_t *c, void *block);
void *_pa_crt_dbg_aligned_malloc(pa_process_t *p, pa_crt_t *c, size_t size, size_t align,
                                 size_t offset, const char *file, int line, int family);
void *_pa_crt_dbg_aligned_realloc(pa_process_t *p, pa_crt_t *c, void *block, size_t size,
                                  size_t align, size_t offset, const char *file, int line);
void *_pa_crt_dbg_aligned_recalloc(pa_process_t *p, pa_crt_t *c, void *block, size_t count,
                                   size_t size, size_t align, size_t offset, const char *file,
                                   int line);
void _pa_crt_dbg_aligned_free(pa_process_t *p, pa_crt_t *c, void *block, int family);
size_t _pa_crt_dbg_aligned_msize(pa_process_t *p, pa_crt_t *c, void *block, size_t align,
                                 size_t offset);
/* Reports a pyalloc-only diagnostic (a mismatch found by new.c before it touched the block). */
void _pa_crt_dbg_report_mismatch(pa_process_t *p, pa_crt_t *c, void *block, int allocated,
                                 int released);
/* The family the debug heap recorded for the block at user pointer block, or -1 when block is
 * not a live block of the debug heap. */
int _pa_crt_dbg_family(pa_process_t *p, pa_crt_t *c, const void *block);
/* _CrtMemCheckpoint's counts and sizes (pa_crt_stats); a damaged list is reported. */
void _pa_crt_dbg_counts(pa_process_t *p, pa_crt_t *c, _CrtMemState *state);
/* Dumps leaks when _CRTDBG_LEAK_CHECK_DF is set (as UCRT does at exit; see pa_crt_exit). */
void _pa_crt_dbg_exit(pa_process_t *p, pa_crt_t *c);

#endif /* PA_CRT_INTERNAL_H */
