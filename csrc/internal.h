/* internal.h: types and helpers shared by the core's files (the `_pa_` names).
 *
 * The process object and its three tables are described here, once:
 *
 *   pages[]   one pa_pstate_t per 4 KiB page of the address space: commit state, base
 *             protection, guard, write-watch and reset bits. Reserved-but-uncommitted pages
 *             have no protection bits. Free pages are all zero.
 *   slots[]   one pointer per 64 KiB slot: the allocation that owns the slot, or NULL. An
 *             allocation owns every slot it touches, so the unusable tail of its last slot
 *             still points at it (VirtualQuery reports that tail as free).
 *   used[]    a bitmap with one bit per slot, set iff slots[i] != NULL; used to find free
 *             ranges a word at a time.
 *
 * Invariants (checked by _pa_mm_validate_locked in debug builds):
 *   - every allocation starts on a slot boundary and its size is a non-zero page multiple;
 *   - slots[i] == a for exactly the slots a touches; used[] mirrors slots[];
 *   - pages outside allocations are 0; committed == number of PS_COMMITTED pages;
 *   - the host protection of every page equals host_prot(pages[i]) (see mm.c).
 * Everything is changed under p->lock; the fault handler takes it too.
 */
#ifndef PA_INTERNAL_H
#define PA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "pyalloc.h"

#define PA_LIKELY(x) __builtin_expect(!!(x), 1)
#define PA_UNLIKELY(x) __builtin_expect(!!(x), 0)

#ifndef PA_DEBUG
#define PA_DEBUG 0
#endif
#if PA_DEBUG
#include <assert.h>
#define pa_assert_internal(x) assert(x)
#else
#define pa_assert_internal(x) ((void)0)
#endif

#define PA_PAGE_SHIFT 12
#define PA_SLOT_SHIFT 16

static inline uintptr_t _pa_align_down(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }
static inline uintptr_t _pa_align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }

/* ---- per-page state ---- */
typedef uint16_t pa_pstate_t;
#define PS_PROT_MASK 0x0007u   /* log2 of the base PAGE_* protection (0 NOACCESS .. 7 EXECUTE_WRITECOPY) */
#define PS_GUARD 0x0008u       /* PAGE_GUARD: the next access raises and clears it */
#define PS_COMMITTED 0x0010u
#define PS_WATCH_CLEAN 0x0020u /* write-watched and not written since the last reset */
#define PS_RESET 0x0040u       /* MEM_RESET applied and not undone */
#define PS_PRIVATE_MAP 0x0080u /* view page mapped copy-on-write from its section */
#define PS_COPIED 0x0100u      /* view page written through copy-on-write: private for good */
#define PS_RESET_ZERO 0x0200u  /* with PS_RESET: the page held only zeros when it was reset */
#define PS_RESET_ARMED 0x0400u /* with PS_RESET: held data, not written since (host write-protected) */
#define PS_RESET_LOST 0x0800u  /* with PS_RESET: the host had dropped it when it was written again */
/* Bits that VirtualQuery compares to split regions (write watch and reset are invisible). */
#define PS_QUERY_MASK (PS_PROT_MASK | PS_GUARD | PS_COMMITTED)

/* ---- sections (section.c) ----
 * Every section has a header: in the shared object for named pagefile sections (so all host
 * processes share the handle count and the commit bitmap), in private memory otherwise. */
typedef struct pa_section_header_s {
    _Atomic(uint64_t) magic;
    _Atomic(uint32_t) handles;    /* open handles in all host processes (named sections) */
    _Atomic(uint32_t) commit_gen; /* bumped by every SEC_RESERVE commit */
    uint64_t size;
    DWORD protect, attributes;
    _Atomic(uint64_t) committed[]; /* SEC_RESERVE: one bit per page */
} pa_section_header_t;

typedef struct pa_section_s {
    _Atomic(long) refs;   /* handles and views in this host process */
    long handles;         /* handles in this host process (under the handle-table lock) */
    int fd;
    int file_backed;
    int header_shared;    /* header lives in the shared object (named pagefile section) */
    int published;        /* listed under its name */
    uint64_t size;        /* mappable bytes */
    uint64_t data_offset; /* where the data starts in fd */
    DWORD protect;        /* PAGE_* given at creation */
    DWORD attributes;     /* SEC_COMMIT or SEC_RESERVE, with SEC_NOCACHE / SEC_WRITECOMBINE */
    pa_section_header_t *header;
    size_t header_size;
    char name[256];
    struct pa_section_s *next; /* published names */
} pa_section_t;

void _pa_section_ref(pa_section_t *s);
void _pa_section_unref(pa_section_t *s);
int _pa_section_page_committed(const pa_section_t *s, uint64_t page);
void _pa_section_commit(pa_section_t *s, uint64_t first, uint64_t n);
uint32_t _pa_section_generation(const pa_section_t *s);
/* Access bits of a PAGE_* base protection: 1 read, 2 write, 4 execute (WRITECOPY reads). */
unsigned _pa_protect_access(DWORD protect);

/* ---- allocations ---- */
#define PA_ALLOC_WRITE_WATCH 0x1u

typedef struct pa_alloc_s {
    uintptr_t base;      /* AllocationBase, slot-aligned */
    size_t size;         /* page multiple */
    DWORD alloc_prot;    /* AllocationProtect */
    DWORD type;          /* MEM_PRIVATE or MEM_MAPPED */
    uint32_t flags;      /* PA_ALLOC_* */
    pa_owner_t owner;
    pa_section_t *section; /* views: the section (referenced) */
    uint64_t offset;       /* views: byte offset of the view in the section */
    uint32_t gen;          /* views: section commit generation last synced */
    struct pa_alloc_s *next_free; /* pool link while free */
} pa_alloc_t;

struct pa_pin_s {
    uintptr_t start, end; /* page-rounded */
    int writable;
    struct pa_pin_s *prev, *next;
};

/* A fixed-size object pool fed from _pa_os_alloc, so that the core never calls malloc. */
typedef struct pa_pool_s {
    size_t item_size;
    void *free;   /* returned items, singly linked through the first word */
    void *chunks; /* singly linked through the first word of each chunk */
    char *next, *end; /* the newest chunk's never-used part, handed out in order */
} pa_pool_t;
void *_pa_pool_get(pa_pool_t *pool);
void _pa_pool_put(pa_pool_t *pool, void *item);
void _pa_pool_destroy(pa_pool_t *pool);

/* The event ring of one process (trace.c). Writers claim a slot with one fetch-add on head and
 * publish it by storing its seq last; readers check seq before and after copying. */
typedef struct pa_trace_s {
    _Atomic(int) enabled;       /* nesting count; 0 = off */
    _Atomic(uint64_t) head;     /* events claimed so far */
    size_t capacity;            /* a power of two */
    struct pa_trace_slot_s *slots;
} pa_trace_t;

struct pa_process_s {
    pthread_mutex_t lock;
    _Atomic(uintptr_t) lock_owner; /* pthread_self() of the holder, or 0 (for the fault handler) */
    uintptr_t base;     /* start of the host reservation (slot 0: the never-usable null slot) */
    size_t span;        /* bytes of the host reservation */
    uintptr_t min;      /* lowest usable address: base + 64 KiB */
    uintptr_t limit;    /* one past the highest usable address: base + span - 64 KiB */
    size_t npages, nslots;
    pa_pstate_t *pages;
    pa_alloc_t **slots;
    uint64_t *used;
    size_t free_hint;   /* no free slot below this one */
    pa_pool_t alloc_pool, pin_pool;
    pa_pin_t *pins;
    size_t commit_limit_pages; /* 0 = none */
    size_t committed_pages, peak_committed_pages, reserved_bytes, nallocs, npins;
    uint64_t guard_hits, watch_faults;
    int registry_slot;
    int is_current;
    pa_trace_t trace;
    void *crt; /* layers 4-5: the process's CRT state (crt_internal.h), NULL until first use;
                  freed by pa_crt_process_detach (a rundown function) */
};

/* pa_process_current() if it was made, else NULL (without making it). */
pa_process_t *_pa_process_current_if_made(void);

/* Locking: every function named _locked expects p->lock held by the caller. */
void _pa_lock(pa_process_t *p);
void _pa_unlock(pa_process_t *p);

/* The allocation containing addr, or NULL (also for the unusable tail of a slot). Locked. */
static inline pa_alloc_t *_pa_alloc_at_locked(const pa_process_t *p, uintptr_t addr)
{
    if (addr < p->base || addr >= p->base + p->span) return NULL;
    pa_alloc_t *a = p->slots[(addr - p->base) >> PA_SLOT_SHIFT];
    return (a && addr < a->base + a->size) ? a : NULL;
}

static inline pa_pstate_t *_pa_pstate(const pa_process_t *p, uintptr_t addr)
{
    return &p->pages[(addr - p->base) >> PA_PAGE_SHIFT];
}

/* Is page state s committed PAGE_READWRITE or PAGE_EXECUTE_READWRITE, without a guard (its
 * other bits, such as reset or write-watch, aside)? */
static inline int _pa_pstate_rw(pa_pstate_t s)
{
    s &= PS_QUERY_MASK;
    return s == (PS_COMMITTED | 2u) || s == (PS_COMMITTED | 6u); /* log2 of 0x04, 0x40 */
}

/* Win32 protection of a committed page's state, with the allocation's sticky attributes. */
static inline DWORD _pa_pstate_protect(pa_pstate_t s, DWORD alloc_prot)
{
    if (!(s & PS_COMMITTED)) return 0;
    DWORD prot = (DWORD)1 << (s & PS_PROT_MASK);
    if (s & PS_GUARD) prot |= PAGE_GUARD;
    return prot | (alloc_prot & (PAGE_NOCACHE | PAGE_WRITECOMBINE));
}

/* Maps a view of s (checked by section.c) into p. */
NTSTATUS _pa_mm_map_view(pa_process_t *p, pa_section_t *s, void **base, uint64_t offset,
                         size_t *size, DWORD protect);

/* Generation of what threads cache about heaps (heap.c's per-thread handle cache): bumped
 * when a heap or process goes away, and by trace.c when a process starts or stops tracing
 * (the heap's fast paths, taken only for entries checked while tracing was off, have no
 * trace check of their own). Never 0. */
extern _Atomic uint64_t _pa_heap_epoch __attribute__((visibility("hidden")));

/* Records an event if tracing is on (the check is inline; trace.c does the rest). */
static inline void _pa_trace(pa_process_t *p, uint32_t op, uint64_t address, uint64_t size,
                             uint64_t flags, uint64_t extra, int64_t result)
{
    if (PA_UNLIKELY(atomic_load_explicit(&p->trace.enabled, memory_order_relaxed)))
        pa_trace_record(p, PA_LAYER_MM, op, address, size, flags, extra, result);
}
/* The same for any layer's events. */
static inline void _pa_trace_layer(pa_process_t *p, uint32_t layer, uint32_t op,
                                   uint64_t address, uint64_t size, uint64_t flags,
                                   uint64_t extra, int64_t result)
{
    if (PA_UNLIKELY(atomic_load_explicit(&p->trace.enabled, memory_order_relaxed)))
        pa_trace_record(p, layer, op, address, size, flags, extra, result);
}
void _pa_trace_free(pa_process_t *p);

/* Set the thread's last error (status.c). */
void _pa_set_last_status(NTSTATUS status);

#if PA_DEBUG
int _pa_mm_validate_locked(pa_process_t *p);
#endif

#endif /* PA_INTERNAL_H */
