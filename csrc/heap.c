/* heap.c: layer 3, the NT-style heap's back end and its public entry points.
 *
 * Owns heap objects, the per-process registry of heaps, segments (reserved and committed only
 * through layer 2 with owner PA_OWNER_HEAP), blocks with 16-byte headers carved from them,
 * free lists with splitting and coalescing, decommit of free segment tails, large blocks
 * served by their own reservation (and a cache of freed ones), HeapReAlloc, HeapWalk,
 * HeapValidate, HeapCompact, HeapLock and the information classes. Small requests go to the
 * low-fragmentation front end (heap_lfh.c) once their bucket is active; debug fills and the
 * page heap are in heap_debug.c. Structures and invariants: heap_internal.h.
 *
 * Checking handles and pointers: a handle is accepted only if it is in the registry of the
 * process (cached per thread, invalidated by a global epoch that every HeapDestroy bumps); a
 * pointer only if it lies in the committed part of one of the heap's segments, in a live LFH
 * subsegment, or at the start of one of the process's committed allocations (asked of layer
 * 1) - before anything is read through it.
 *
 * Event trace (PA_LAYER_HEAP): every HeapCreate/Destroy/Alloc/ReAlloc/Free/Compact is recorded
 * with extra = the heap handle. ALLOC: address = the block returned (0), size = request,
 * result = success. FREE: address = the pointer passed, result = success. REALLOC: address =
 * the old block, size = the new size, result = the new block (0). CREATE/DESTROY/COMPACT:
 * address = the heap. Tracing off costs one relaxed load per call (_pa_heap_trace).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <string.h>
#include <time.h>

#include "heap_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                      */

static __thread NTSTATUS heap_status __attribute__((tls_model("initial-exec")));

int _pa_heap_fail(NTSTATUS status)
{
    heap_status = status;
    _pa_set_last_status(status);
    return 0;
}

int _pa_heap_fail_win32(NTSTATUS status, DWORD error)
{
    heap_status = status;
    pa_set_last_error(error);
    return 0;
}

NTSTATUS pa_heap_last_status(void) { return heap_status; }

/* Set when a call finds the heap's metadata corrupted (corrupt_fail), so that the entry point
 * does not overwrite that status with STATUS_NO_MEMORY. Reset by those entry points. */
static __thread int corrupt_seen __attribute__((tls_model("initial-exec")));

static int corrupt_fail(void)
{
    corrupt_seen = 1;
    return _pa_heap_fail(STATUS_HEAP_CORRUPTION);
}

/* A handle that is not a heap: NULL reads as an access violation, anything else is invalid. */
static int fail_handle(HANDLE handle)
{
    return handle ? _pa_heap_fail(STATUS_INVALID_HANDLE) : _pa_heap_fail(STATUS_ACCESS_VIOLATION);
}

/* ------------------------------------------------------------------------------------------ */
/* Registry of heaps per process, and the per-thread cache of checked handles                  */

#define PA_HEAP_MAX_PROCS 1024

typedef struct proc_rec_s {
    pa_process_t *p;
    pa_heap_t *process_heap;
    pa_heap_t *first, *last; /* creation order through next_heap */
    DWORD count;
    int terminate_on_corruption; /* set for every heap, later ones included */
} proc_rec_t;

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static proc_rec_t procs[PA_HEAP_MAX_PROCS];
static int nprocs;
#define heap_epoch _pa_heap_epoch /* internal.h (trace.c bumps it too) */
static _Atomic uint64_t next_heap_id = 1;

/* One checked (process, handle) pair; valid while epoch == heap_epoch. The fast paths run
 * while fast == heap_epoch: fast is the epoch when the entry has an LFH cache and its
 * process was not tracing when that was checked (trace.c bumps heap_epoch when tracing
 * starts or stops), 0 otherwise; so they need no NULL or trace check of their own. */
typedef struct tls_ent_s {
    pa_heap_t *heap;
    pa_process_t *p;
    uint64_t fast;
    pa_lfh_tcache_t *tc;
    uint64_t epoch;
    uint64_t id;
    int no_cache; /* every thread cache of the heap was taken when this entry asked */
} tls_ent_t;

#define TLS_ENTS 4
static __thread tls_ent_t tls_ents[TLS_ENTS] __attribute__((tls_model("initial-exec")));
static __thread unsigned tls_next __attribute__((tls_model("initial-exec")));
static pthread_key_t tls_key;
static pthread_once_t tls_key_once = PTHREAD_ONCE_INIT;

static proc_rec_t *rec_find_locked(pa_process_t *p, int create)
{
    proc_rec_t *hole = NULL;
    for (int i = 0; i < nprocs; i++) {
        if (procs[i].p == p) return &procs[i];
        if (!procs[i].p && !hole) hole = &procs[i];
    }
    if (!create) return NULL;
    if (!hole) {
        if (nprocs == PA_HEAP_MAX_PROCS) return NULL;
        hole = &procs[nprocs++];
    }
    memset(hole, 0, sizeof *hole);
    hole->p = p;
    pa_process_register_rundown(pa_heap_process_detach); /* heaps die with their process */
    return hole;
}

/* Is h a live heap of p? Registry lock held. */
static int registered_locked(pa_process_t *p, const pa_heap_t *h, uint64_t id)
{
    proc_rec_t *r = rec_find_locked(p, 0);
    if (!r) return 0;
    for (pa_heap_t *x = r->first; x; x = x->next_heap)
        if (x == h) return !id || x->id == id;
    return 0;
}

pa_heap_t *_pa_heap_from_handle(pa_process_t *p, HANDLE handle)
{
    pa_heap_t *h = handle;
    if (!p || !h || ((uintptr_t)h & (PA_GRANULARITY - 1))) return NULL;
    pthread_mutex_lock(&registry_lock);
    int ok = registered_locked(p, h, 0) && h->signature == PA_HEAP_SIGNATURE &&
             h->magic == PA_HEAP_MAGIC && h->self == h;
    pthread_mutex_unlock(&registry_lock);
    return ok ? h : NULL;
}

static void mc_orphan(pa_heap_t *h, pa_lfh_tcache_t *tc);

/* Gives a thread cache back if its heap still lives. Registry lock held. */
static void tls_drop_locked(tls_ent_t *e)
{
    if (e->tc && registered_locked(e->p, e->heap, e->id)) {
        mc_orphan(e->heap, e->tc);
        _pa_lfh_tcache_release(e->heap, e->tc);
    }
    memset(e, 0, sizeof *e);
}

static void tls_thread_exit(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&registry_lock);
    for (int i = 0; i < TLS_ENTS; i++) tls_drop_locked(&tls_ents[i]);
    pthread_mutex_unlock(&registry_lock);
}

static void tls_key_init(void) { pthread_key_create(&tls_key, tls_thread_exit); }

/* Sets e->fast (see tls_ent_t) after e->epoch or e->tc changed. */
static void tls_set_fast(tls_ent_t *e)
{
    e->fast = e->tc && !atomic_load_explicit(&e->p->trace.enabled, memory_order_acquire) ? e->epoch : 0;
}

/* Gives entry e (of the calling thread, for a heap with an LFH) a thread cache if one is
 * free, and arranges for it to go back when the thread ends. */
static void tls_claim_cache(tls_ent_t *e)
{
    e->tc = _pa_lfh_tcache_claim(e->heap);
    if (!e->tc) {
        e->no_cache = 1; /* all taken: this entry stops asking */
        return;
    }
    pthread_once(&tls_key_once, tls_key_init);
    pthread_setspecific(tls_key, (void *)1);
    tls_set_fast(e);
}

static inline tls_ent_t *tls_lookup(pa_process_t *p, HANDLE handle)
{
    uint64_t ep = atomic_load_explicit(&heap_epoch, memory_order_acquire);
    if (PA_LIKELY(tls_ents[0].heap == handle && tls_ents[0].p == p && tls_ents[0].epoch == ep && handle))
        return &tls_ents[0];
    for (int i = 1; i < TLS_ENTS; i++) {
        tls_ent_t *e = &tls_ents[i];
        if (e->heap == handle && e->p == p && e->epoch == ep && handle) return e;
    }
    return NULL;
}

/* Checks handle against the registry and caches it. NULL (last error set) when invalid. */
static tls_ent_t *tls_to_front(tls_ent_t *e)
{
    if (e != &tls_ents[0]) {
        tls_ent_t t = *e;
        *e = tls_ents[0];
        tls_ents[0] = t;
    }
    return &tls_ents[0];
}

static tls_ent_t *tls_validate(pa_process_t *p, HANDLE handle)
{
    tls_ent_t *e = tls_lookup(p, handle);
    if (e) return tls_to_front(e);
    uint64_t ep = atomic_load_explicit(&heap_epoch, memory_order_acquire);
    pa_heap_t *h = _pa_heap_from_handle(p, handle);
    if (!h) {
        fail_handle(handle);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    /* Reuse this heap's stale entry (keeping its cache), else a stale one, else round robin. */
    for (int i = 0; i < TLS_ENTS && !e; i++)
        if (tls_ents[i].heap == h && tls_ents[i].p == p && tls_ents[i].id == h->id) e = &tls_ents[i];
    for (int i = 0; i < TLS_ENTS && !e; i++)
        if (!tls_ents[i].heap || tls_ents[i].epoch != ep) e = &tls_ents[i];
    if (!e) e = &tls_ents[tls_next++ % TLS_ENTS];
    if (e->heap != h || e->p != p || e->id != h->id) tls_drop_locked(e);
    e->heap = h;
    e->p = p;
    e->id = h->id;
    e->epoch = ep;
    e->no_cache = 0;
    if (!e->tc && h->lfh) tls_claim_cache(e);
    tls_set_fast(e);
    pthread_mutex_unlock(&registry_lock);
    return tls_to_front(e);
}

/* ------------------------------------------------------------------------------------------ */
/* Locking                                                                                     */

int _pa_heap_enter(pa_heap_t *h, DWORD flags)
{
    if ((h->flags | flags) & HEAP_NO_SERIALIZE) return 0;
    pthread_mutex_lock(&h->lock);
    return 1;
}

void _pa_heap_leave(pa_heap_t *h, int locked)
{
    if (locked) pthread_mutex_unlock(&h->lock);
}

/* ------------------------------------------------------------------------------------------ */
/* Blocks and free lists                                                                       */

#define U PA_HEAP_UNIT
#define HEAP_HDR_SIZE (_pa_align_up(sizeof(pa_heap_t), U))
#define SEG_HDR_SIZE (_pa_align_up(sizeof(pa_segment_t), U))

_Static_assert(offsetof(pa_heap_t, signature) == 0x10, "heap.md fact 5");
_Static_assert(offsetof(pa_heap_t, flags) == 0x70, "heap.md fact 5");
_Static_assert(offsetof(pa_heap_t, force_flags) == 0x74, "heap.md fact 5");
/* REGION cbData <= 0x1000 (fact 46); fixed-heap limits of fact 26 need 0x600 < H <= 0xBE0. */
_Static_assert(sizeof(pa_heap_t) > 0x600 && sizeof(pa_heap_t) <= 0xBE0, "heap header size");
_Static_assert(sizeof(pa_block_t) == 16 && sizeof(pa_large_t) == 64, "block layouts");

static inline pa_block_t *blk_next(pa_block_t *b) { return (pa_block_t *)((char *)b + (size_t)b->size * U); }
static inline pa_block_t *blk_prev(pa_block_t *b)
{
    return b->prev_size ? (pa_block_t *)((char *)b - (size_t)b->prev_size * U) : NULL;
}
static inline void *blk_user(pa_block_t *b) { return b + 1; }
static inline size_t blk_requested(const pa_block_t *b) { return (size_t)b->size * U - U - b->extra; }

static void fl_insert(pa_heap_t *h, pa_block_t *b)
{
    pa_free_t *f = (pa_free_t *)b;
    unsigned c = _pa_free_class(b->size);
    f->prev = NULL;
    f->next = h->free[c];
    if (f->next) f->next->prev = f;
    h->free[c] = f;
    h->freemap[c >> 6] |= (uint64_t)1 << (c & 63);
    h->ctr.free_bytes += (size_t)b->size * U;
    h->ctr.free_blocks++;
}

static void fl_remove(pa_heap_t *h, pa_block_t *b)
{
    pa_free_t *f = (pa_free_t *)b;
    unsigned c = _pa_free_class(b->size);
    if (f->prev) f->prev->next = f->next;
    else h->free[c] = f->next;
    if (f->next) f->next->prev = f->prev;
    if (!h->free[c]) h->freemap[c >> 6] &= ~((uint64_t)1 << (c & 63));
    h->ctr.free_bytes -= (size_t)b->size * U;
    h->ctr.free_blocks--;
}

/* Writes a header of `units` granules at b and fixes the next block's prev_size. */
static void blk_init(pa_heap_t *h, pa_block_t *b, uint32_t units, uint32_t prev, uint8_t flags)
{
    b->size = units;
    b->prev_size = prev;
    b->extra = 0;
    b->flags = flags;
    b->bucket = 0;
    b->tag = _pa_blk_tag(h, b);
    blk_next(b)->prev_size = units;
}

/* Makes [b, b + units) one free block (header already placed by the caller or not), fills it
 * when free checking, and lists it. Only [from, to) is filled: the bytes before `from` (NULL:
 * b's pa_free_t) and from `to` to the end (NULL: none) hold the fill already, as parts of
 * filled free blocks. Filling them again made each allocation, free or realloc beside a
 * large free block cost that block's size: CPython's test_json took over 5 minutes under
 * `pyalloc run --heap-checks`, 2 s now. */
static void make_free_part(pa_heap_t *h, pa_block_t *b, uint32_t units, uint32_t prev, char *from,
                           char *to)
{
    blk_init(h, b, units, prev, 0);
    if (h->debug & PA_HEAP_DEBUG_FREE_CHECK) {
        if (!from) from = (char *)b + sizeof(pa_free_t);
        if (!to) to = (char *)b + (size_t)units * U;
        if (to > from) _pa_heap_fill_free(from, (size_t)(to - from));
        b->flags |= PA_BLK_FILLED;
    }
    fl_insert(h, b);
}

static void make_free(pa_heap_t *h, pa_block_t *b, uint32_t units, uint32_t prev)
{
    make_free_part(h, b, units, prev, NULL, NULL);
}

/* Where a free block's fill starts if it has one (free checking), else NULL. */
static char *fill_start(const pa_block_t *f)
{
    return (f->flags & PA_BLK_FILLED) ? (char *)f + sizeof(pa_free_t) : NULL;
}

static inline int fl_ptr_ok(const pa_heap_t *h, const void *p, const pa_segment_t *near);
static int fl_entry_ok_in(const pa_heap_t *h, const pa_segment_t *s, pa_block_t *b);
static int fl_entry_ok(const pa_heap_t *h, pa_block_t *b);
static int seg_last_block(const pa_heap_t *h, const pa_segment_t *s, pa_block_t **last);

/* The first free block of at least `units` granules, removed from its list; NULL if none.
 * List links are range-checked before they are followed and the block taken is checked
 * (fl_entry_ok) before it is unlinked: NULL after corrupt_fail() when one is corrupted. */
static pa_block_t *fl_take(pa_heap_t *h, size_t units)
{
    unsigned c = _pa_free_class(units);
    if (c >= PA_FREE_EXACT) {
        int budget = 32;
        for (pa_free_t *f = h->free[c]; f && budget--; f = f->next) {
            if (f->hdr.size >= units) {
                if (!fl_entry_ok(h, &f->hdr)) return corrupt_fail(), NULL;
                fl_remove(h, &f->hdr);
                return &f->hdr;
            }
            if (f->next && !fl_ptr_ok(h, f->next, NULL)) return corrupt_fail(), NULL;
        }
        c++;
    }
    for (unsigned w = c >> 6; w < sizeof h->freemap / sizeof *h->freemap; w++) {
        uint64_t bits = h->freemap[w];
        if (w == c >> 6) bits &= ~(uint64_t)0 << (c & 63);
        if (!bits) continue;
        unsigned k = w * 64 + (unsigned)__builtin_ctzll(bits);
        pa_block_t *b = &h->free[k]->hdr;
        if (!fl_entry_ok(h, b)) return corrupt_fail(), NULL;
        fl_remove(h, b);
        return b;
    }
    return NULL;
}

/* Granules of a back-end block for a request of n bytes (room for the tail pattern when tail
 * checking). n must be <= PA_HEAP_MAX_REQUEST. */
static size_t units_for(const pa_heap_t *h, size_t n)
{
    size_t data = (h->debug & PA_HEAP_DEBUG_TAIL_CHECK) ? n + U : (n ? n : 1);
    return _pa_align_up(data, U) / U + 1;
}

/* Turns free block b (off the lists) into a busy one of `units` granules for n bytes,
 * splitting off the rest when it can hold a block. */
static void *carve(pa_heap_t *h, pa_block_t *b, size_t units, size_t n, DWORD flags)
{
    size_t have = b->size;
    if (have - units >= 2) {
        pa_block_t *rest = (pa_block_t *)((char *)b + units * U);
        b->size = (uint32_t)units;
        /* (rest past its pa_free_t is inside b's fill) */
        make_free_part(h, rest, (uint32_t)(have - units), (uint32_t)units, NULL,
                       fill_start(b) ? (char *)rest + sizeof(pa_free_t) : NULL);
    } else {
        units = have;
    }
    b->size = (uint32_t)units;
    b->extra = (uint32_t)(units * U - U - n);
    b->flags = PA_BLK_BUSY;
    b->bucket = 0;
    b->tag = _pa_blk_tag(h, b);
    h->ctr.busy_bytes += n;
    h->ctr.busy_blocks++;
    void *user = blk_user(b);
    if (flags & HEAP_ZERO_MEMORY) memset(user, 0, n);
    else if (h->debug & PA_HEAP_DEBUG_FREE_CHECK) _pa_heap_fill_new(h, user, n, n);
    if (h->debug & PA_HEAP_DEBUG_TAIL_CHECK) _pa_heap_fill_tail(user, n);
    return user;
}

/* ------------------------------------------------------------------------------------------ */
/* Segments                                                                                    */

static DWORD heap_protect(const pa_heap_t *h)
{
    return (h->flags & HEAP_CREATE_ENABLE_EXECUTE) ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
}

static int commit(pa_heap_t *h, uintptr_t addr, size_t size)
{
    if (!pa_virtual_alloc(h->process, (void *)addr, size, MEM_COMMIT, heap_protect(h), PA_OWNER_HEAP))
        return 0;
    _pa_heap_committed_locked(h, addr, size);
    return 1;
}

static int decommit(pa_heap_t *h, uintptr_t addr, size_t size)
{
    DWORD saved = pa_get_last_error();
    int ok = pa_virtual_free(h->process, (void *)addr, size, MEM_DECOMMIT, PA_OWNER_HEAP);
    pa_set_last_error(saved); /* a pinned range simply stays committed */
    if (ok) h->ctr.committed -= size;
    return ok;
}

/* Reserves size bytes at address `at` (NULL: anywhere). */
static void *reserve_at(pa_heap_t *h, void *at, size_t size)
{
    void *base = pa_virtual_alloc(h->process, at, size, MEM_RESERVE, heap_protect(h), PA_OWNER_HEAP);
    if (base) h->ctr.reserved += _pa_align_up(size, PA_PAGE_SIZE);
    return base;
}

static void *reserve(pa_heap_t *h, size_t size) { return reserve_at(h, NULL, size); }

/* A large block's reservation starts 64 KiB before a 2 MiB boundary and ends on one, where
 * the address space has room: its first page (header and first user bytes, always written)
 * is then the only page of the block in its first 2 MiB of address space, and no other
 * block's first page shares the block's last 2 MiB. The host's page tables for the rest of
 * the block exist only where the program writes. Dropping the pages of a freed block that
 * was barely written (large_zero_locked) walks the page table entries of its range: with the
 * blocks packed at 64 KiB granularity most of a 2.5 MiB block's entries were walked, 0.5 us
 * a call; placed so, 0.27 us (a loop of madvise calls on this machine, kernel 6.18).
 * bench_heap's large workload went from 1.07x glibc's time to 0.76-0.79x. It costs address
 * space, never commit: a 1 MiB request spans about 4 MiB of it (the reservation rounded up,
 * and the next placed block starts after the next boundary; the gaps serve smaller
 * reservations); where no such place is free, the block goes anywhere, packed. *size is
 * rounded up when the place is found (a freed block then serves any request up to it). */
#define LARGE_ALIGN ((size_t)2 << 20)

static void *reserve_large(pa_heap_t *h, size_t *size)
{
    size_t placed = _pa_align_up(*size - PA_GRANULARITY, LARGE_ALIGN) + PA_GRANULARITY;
    void *at = pa_mm_find_phased(h->process, placed, LARGE_ALIGN, LARGE_ALIGN - PA_GRANULARITY);
    if (at) {
        DWORD saved = pa_get_last_error();
        void *base = reserve_at(h, at, placed);
        pa_set_last_error(saved); /* taken meanwhile: anywhere else will do */
        if (base) {
            *size = placed;
            return base;
        }
    }
    return reserve(h, *size);
}

static void release(pa_heap_t *h, void *base, size_t reserved, size_t committed)
{
    DWORD saved = pa_get_last_error();
    if (pa_virtual_free(h->process, base, 0, MEM_RELEASE, PA_OWNER_HEAP)) {
        h->ctr.reserved -= _pa_align_up(reserved, PA_PAGE_SIZE);
        h->ctr.committed -= committed;
    }
    pa_set_last_error(saved);
}

static void seg_init(pa_heap_t *h, pa_segment_t *s, uintptr_t base, size_t hdr, size_t reserved,
                     size_t committed)
{
    s->magic = PA_SEG_MAGIC;
    s->kind = PA_SEG_BACKEND;
    s->heap = h;
    s->base = base;
    s->first = base + hdr;
    s->commit_end = base + committed;
    s->end = base + reserved;
    s->min_commit = s->commit_end;
    pa_block_t *end = (pa_block_t *)(s->commit_end - U);
    uint32_t units = (uint32_t)((s->commit_end - U - s->first) / U);
    end->size = 1;
    end->flags = PA_BLK_END | PA_BLK_BUSY;
    end->extra = 0;
    end->bucket = 0;
    end->tag = _pa_blk_tag(h, end);
    make_free(h, (pa_block_t *)s->first, units, 0);
}

/* The segment map's word for s (see pa_heap_t.segmap). */
static uint64_t segmap_word(const pa_segment_t *s)
{
    if (s->kind == PA_SEG_LFH) {
        const pa_lfh_seg_t *l = (const pa_lfh_seg_t *)s;
        return (uint64_t)(l->base >> 16) << 32 | PA_SEGMAP_LFH | (uint32_t)(l->size >> 12);
    }
    return (uint64_t)(s->base >> 16) << 32 | (uint32_t)((s->end - s->base) >> 12);
}

static inline uintptr_t segmap_base(uint64_t w) { return (uintptr_t)(w >> 32) << 16; }
static inline size_t segmap_size(uint64_t w) { return (size_t)(w & ~(uint64_t)0xFFFFFFFF80000000u) << 12; }

/* Index of the segment (any kind) containing addr in [base, end), or -1. Reads only the
 * segment map (one array, not the segments' headers). */
static int seg_index(const pa_heap_t *h, uintptr_t addr)
{
    for (unsigned i = 0; i < h->nsegs; i++) {
        uint64_t w = h->segmap[i];
        if (addr - segmap_base(w) < segmap_size(w)) return (int)i;
    }
    return -1;
}

/* The descriptor of the segment at base: at its base, or for segment 0 (the heap's own
 * reservation) in the heap header. */
static inline pa_segment_t *seg_at_base(const pa_heap_t *h, uintptr_t base)
{
    return base == (uintptr_t)h ? (pa_segment_t *)&h->seg0 : (pa_segment_t *)base;
}

/* The descriptor of segment i. */
static inline pa_segment_t *seg_at(const pa_heap_t *h, unsigned i)
{
    return seg_at_base(h, segmap_base(h->segmap[i]));
}

/* The mc_words entry (see pa_heap_t) whose committed range holds addr, or 0. Read without the
 * heap lock by the lookaside bins' lookups, and under it by backend_seg_of. With a thread's
 * cache tc, the entry that held addr's MiB of address space last time is tried first
 * (tc->mc_hint): which of the segments a freed block lies in follows no pattern, so the
 * search's exit was a mispredicted branch on most frees. A hint only names a slot of
 * mc_words, whose word is checked as in the search: a stale one costs the search, nothing
 * else. */
static inline __attribute__((always_inline)) uint64_t mc_word_of(const pa_heap_t *h, pa_lfh_tcache_t *tc,
                                                                 uintptr_t addr)
{
    unsigned g = (unsigned)(addr >> 20) & (PA_MC_HINTS - 1), k;
    if (tc && (k = tc->mc_hint[g] - 1u) < PA_MC_ORDER) {
        uint64_t w = __atomic_load_n(&h->mc_words[k], __ATOMIC_ACQUIRE);
        if (PA_LIKELY(addr - segmap_base(w) < ((size_t)(uint32_t)w << 12))) return w;
    }
    for (unsigned j = 0; j < PA_MC_ORDER; j++) {
        uint64_t w = __atomic_load_n(&h->mc_words[j], __ATOMIC_ACQUIRE);
        size_t committed = (size_t)(uint32_t)w << 12;
        if (!committed) return 0;
        if (addr - segmap_base(w) < committed) {
            if (tc) tc->mc_hint[g] = (uint8_t)(j + 1);
            return w;
        }
    }
    return 0;
}

/* The back-end segment holding addr, or NULL. The biggest back-end segments (mc_words, by
 * committed bytes, kept current under the lock) are tried first: most blocks are found there
 * in two or three steps, where the walk of segmap (creation order, LFH segments included)
 * took about 100 instructions per call with 36 MB in 1-64 KiB blocks. */
static pa_segment_t *backend_seg_of(const pa_heap_t *h, uintptr_t addr)
{
    uint64_t w = mc_word_of(h, NULL, addr);
    if (w) return seg_at_base(h, segmap_base(w));
    int i = seg_index(h, addr);
    return i >= 0 && !(h->segmap[i] & PA_SEGMAP_LFH) ? seg_at(h, (unsigned)i) : NULL;
}

/* Rebuilds mc_words (heap lock held) after a back-end segment was added or removed or its
 * commit changed: the segments with the most committed bytes first. Called before memory is
 * decommitted or released and after it is committed, so that a lock-free reader's word never
 * covers memory that is not committed, unless the reader is slow enough to use a word that a
 * rebuild has replaced meanwhile: a valid block is never in such memory, so only a wild
 * pointer could then reach it. */
static void mc_words_rebuild(pa_heap_t *h)
{
    uint64_t words[PA_MC_ORDER] = {0};
    unsigned k = 0;
    for (unsigned i = h->nsegs; i-- > 0;) {
        if (h->segmap[i] & PA_SEGMAP_LFH) continue;
        const pa_segment_t *s = seg_at(h, i);
        uint64_t w = (uint64_t)(s->base >> 16) << 32 | (uint32_t)((s->commit_end - s->base) >> 12);
        unsigned j = k < PA_MC_ORDER ? k++ : PA_MC_ORDER;
        while (j > 0 && (uint32_t)words[j - 1] < (uint32_t)w) {
            if (j < PA_MC_ORDER) words[j] = words[j - 1];
            j--;
        }
        if (j < PA_MC_ORDER) words[j] = w;
    }
    for (unsigned j = 0; j < PA_MC_ORDER; j++) __atomic_store_n(&h->mc_words[j], words[j], __ATOMIC_RELEASE);
}

static int seg_append(pa_heap_t *h, pa_segment_t *s)
{
    if (h->nsegs == PA_HEAP_MAX_SEGMENTS) return 0;
    h->segmap[h->nsegs] = segmap_word(s);
    h->nsegs++;
    if (s->kind == PA_SEG_BACKEND) mc_words_rebuild(h);
    return 1;
}

static void seg_remove(pa_heap_t *h, pa_segment_t *s)
{
    for (unsigned i = 0; i < h->nsegs; i++)
        if (seg_at(h, i) == s) {
            memmove(&h->segmap[i], &h->segmap[i + 1], (h->nsegs - i - 1) * sizeof *h->segmap);
            h->nsegs--;
            h->segmap[h->nsegs] = 0;
            mc_words_rebuild(h);
            return;
        }
}

/* Commits at least `bytes` more at the tail of s; the new space joins the last free block.
 * Returns 0 when s has no room or layer 2 refuses, -1 (after corrupt_fail) when the last
 * block is corrupted. */
static int seg_extend(pa_heap_t *h, pa_segment_t *s, size_t bytes)
{
    size_t room = s->end - s->commit_end;
    size_t want = _pa_align_up(bytes, PA_PAGE_SIZE);
    if (want > room) return 0;
    size_t step = want < PA_GRANULARITY ? PA_GRANULARITY : want;
    if (step > room) step = room;
    pa_block_t *last;
    if (!seg_last_block(h, s, &last) ||
        (last && !(last->flags & PA_BLK_BUSY) && !fl_entry_ok_in(h, s, last)))
        return corrupt_fail(), -1;
    if (!commit(h, s->commit_end, step)) return 0;
    pa_block_t *old_end = (pa_block_t *)(s->commit_end - U);
    uint32_t prev = old_end->prev_size;
    s->commit_end += step;
    pa_block_t *end = (pa_block_t *)(s->commit_end - U);
    end->size = 1;
    end->flags = PA_BLK_END | PA_BLK_BUSY;
    end->extra = 0;
    end->bucket = 0;
    end->tag = _pa_blk_tag(h, end);
    mc_words_rebuild(h);
    if (last && !(last->flags & PA_BLK_BUSY)) {
        fl_remove(h, last);
        make_free(h, last, (uint32_t)((uintptr_t)end - (uintptr_t)last) / U, last->prev_size);
    } else {
        make_free(h, old_end, (uint32_t)((uintptr_t)end - (uintptr_t)old_end) / U, prev);
    }
    return 1;
}

/* Makes room for a block of `units` granules: commits more of a segment or reserves a new
 * one (growable heaps). Returns 0 with nothing changed when it cannot. */
static int grow(pa_heap_t *h, size_t units)
{
    size_t bytes = units * U;
    for (unsigned i = 0; i < h->nsegs; i++) {
        pa_segment_t *s = seg_at(h, i);
        if (s->kind != PA_SEG_BACKEND) continue;
        pa_block_t *last;
        if (!seg_last_block(h, s, &last)) return corrupt_fail();
        size_t have = last && !(last->flags & PA_BLK_BUSY) ? (size_t)last->size * U : 0;
        if (s->end - s->commit_end + have >= bytes + (have ? 0 : U)) {
            int r = seg_extend(h, s, bytes + U - have);
            if (r) return r > 0;
        }
    }
    if (h->maximum) return 0;
    size_t need = _pa_align_up(SEG_HDR_SIZE + bytes + U, PA_GRANULARITY);
    size_t size = h->grow_size > need ? h->grow_size : need;
    void *base = reserve(h, size);
    if (!base) return 0;
    size_t first_commit = _pa_align_up(SEG_HDR_SIZE + bytes + U, PA_PAGE_SIZE);
    if (first_commit < PA_GRANULARITY) first_commit = PA_GRANULARITY;
    if (first_commit > size) first_commit = size;
    if (!commit(h, (uintptr_t)base, first_commit)) {
        release(h, base, size, 0);
        return 0;
    }
    pa_segment_t *s = base;
    if (h->nsegs == PA_HEAP_MAX_SEGMENTS) {
        release(h, base, size, first_commit);
        return 0;
    }
    seg_init(h, s, (uintptr_t)base, SEG_HDR_SIZE, size, first_commit);
    seg_append(h, s);
    s->min_commit = s->base + PA_GRANULARITY;
    if (h->grow_size < ((size_t)64 << 20)) h->grow_size *= 2;
    return 1;
}

pa_lfh_seg_t *_pa_heap_new_lfh_segment_locked(pa_heap_t *h, size_t size)
{
    if (h->nsegs == PA_HEAP_MAX_SEGMENTS) return _pa_heap_fail(STATUS_NO_MEMORY), NULL;
    void *base = reserve(h, size);
    if (!base) return NULL;
    if (!commit(h, (uintptr_t)base, PA_LFH_CHUNK)) {
        release(h, base, size, 0);
        return NULL;
    }
    pa_lfh_seg_t *s = base;
    s->magic = PA_LFHSEG_MAGIC;
    s->kind = PA_SEG_LFH;
    s->heap = h;
    s->base = (uintptr_t)base;
    s->size = size;
    s->nchunks = (uint32_t)(size / PA_LFH_CHUNK);
    s->free_chunks = s->nchunks - 1;
    seg_append(h, (pa_segment_t *)s);
    return s;
}

#define TRIM_KEEP ((size_t)1 << 20)
#define TRIM_STEP ((size_t)256 << 10)

/* After a free: decommits the free tail of s beyond 64 KiB into the last free block, and
 * releases a secondary segment that became entirely free while the heap has plenty of other
 * free space. b is the (coalesced, listed) free block. */
static void seg_trim(pa_heap_t *h, pa_segment_t *s, pa_block_t *b)
{
    pa_block_t *end = blk_next(b);
    if (!(end->flags & PA_BLK_END)) return;
    size_t seg_bytes = s->end - s->base;
    if ((uintptr_t)b == s->first && s != &h->seg0 && !(h->ctr.busy_blocks == 0 && h->nsegs == 2) &&
        h->ctr.free_bytes - (size_t)b->size * U >= seg_bytes) {
        fl_remove(h, b);
        seg_remove(h, s);
        release(h, (void *)s->base, seg_bytes, s->commit_end - s->base);
        return;
    }
    /* Keep 1 MiB of the free tail committed and decommit only 256 KiB or more at once: a
     * heap that frees and reallocates near its end must not commit and decommit on every
     * call (Windows' DeCommitFreeBlockThreshold plays the same role), nor fault the pages in
     * again (python3 growing lists and buffers under the preload library: with 256 KiB kept,
     * 7.6 MiB decommitted in 14 trims of json+re, and 11.7k page faults against 8.2k in the
     * growth workload; peak RSS 1.3-1.6 MiB higher). */
    uintptr_t keep = _pa_align_up((uintptr_t)b + sizeof(pa_free_t) + TRIM_KEEP, PA_PAGE_SIZE);
    if (keep < s->min_commit) keep = s->min_commit;
    if (keep + TRIM_STEP > s->commit_end) return;
    fl_remove(h, b);
    uintptr_t old_end = s->commit_end;
    s->commit_end = keep;
    mc_words_rebuild(h); /* before the pages go */
    if (!decommit(h, keep, old_end - keep)) {
        s->commit_end = old_end;
        mc_words_rebuild(h);
        fl_insert(h, b);
        return;
    }
    pa_block_t *nend = (pa_block_t *)(keep - U);
    nend->size = 1;
    nend->flags = PA_BLK_END | PA_BLK_BUSY;
    nend->extra = 0;
    nend->bucket = 0;
    nend->tag = _pa_blk_tag(h, nend);
    b->size = (uint32_t)(((uintptr_t)nend - (uintptr_t)b) / U);
    b->tag = _pa_blk_tag(h, b);
    nend->prev_size = b->size;
    fl_insert(h, b);
}

/* ------------------------------------------------------------------------------------------ */
/* Large blocks                                                                                */

static pa_large_t *large_of(void *user) { return (pa_large_t *)((char *)user - sizeof(pa_large_t)); }

static void large_link(pa_large_t **list, pa_large_t *l)
{
    l->prev = NULL;
    l->next = *list;
    if (l->next) l->next->prev = l;
    *list = l;
}

static void large_unlink(pa_large_t **list, pa_large_t *l)
{
    if (l->prev) l->prev->next = l->next;
    else *list = l->next;
    if (l->next) l->next->prev = l->prev;
}

#define LARGE_BUSY (PA_BLK_BUSY | PA_BLK_LARGE)
#define LARGE_CACHED (PA_BLK_LARGE | PA_BLK_CACHED)

/* Is x readable as a large block: 64 KiB-aligned, the base of a heap-owned private
 * allocation whose first page is committed read-write (PAGE_READWRITE or
 * PAGE_EXECUTE_READWRITE, the heap's protections)? A look-up in the process's slot table,
 * O(1), so that every pointer to a large block (the user's, or a link read from a large
 * block's header) is checked before it is followed. The process lock is held (heap lock >
 * process lock). */
static inline int large_mapped_plocked(const pa_process_t *p, const pa_large_t *x)
{
    uintptr_t a = (uintptr_t)x;
    if (!a || (a & (PA_GRANULARITY - 1))) return 0;
    const pa_alloc_t *al = _pa_alloc_at_locked(p, a);
    if (!al || al->base != a || al->owner != PA_OWNER_HEAP || al->type != MEM_PRIVATE) return 0;
    return _pa_pstate_rw(*_pa_pstate(p, a));
}

int _pa_heap_readable(pa_heap_t *h, uintptr_t a, size_t n)
{
    pa_process_t *p = h->process;
    if (!n || a + n < a) return 0;
    _pa_lock(p);
    const pa_alloc_t *al = _pa_alloc_at_locked(p, a);
    int ok = al && al->owner == PA_OWNER_HEAP && al->type == MEM_PRIVATE && a + n <= al->base + al->size;
    for (uintptr_t pg = _pa_align_down(a, PA_PAGE_SIZE); ok && pg < a + n; pg += PA_PAGE_SIZE)
        ok = _pa_pstate_rw(*_pa_pstate(p, pg));
    _pa_unlock(p);
    return ok;
}

/* Could x be a large block of h with these header flags: readable (large_mapped_plocked),
 * carrying h's header? Process lock held. */
static int large_ok_plocked(const pa_heap_t *h, const pa_large_t *x, uint8_t flags)
{
    return large_mapped_plocked(h->process, x) && x->heap == h && x->hdr.size == PA_LARGE_MAGIC &&
           x->hdr.flags == flags && x->hdr.tag == _pa_blk_tag(h, &x->hdr);
}

/* Do l's list neighbours (checked with large_ok_plocked) point back to it? Process lock held. */
static int large_links_ok_plocked(const pa_heap_t *h, pa_large_t *const *list, const pa_large_t *l,
                                  uint8_t flags)
{
    if (l->prev ? !large_ok_plocked(h, l->prev, flags) || l->prev->next != l : *list != l) return 0;
    return !l->next || (large_ok_plocked(h, l->next, flags) && l->next->prev == l);
}

/* The block after x in its list (NULL at the end), checked, or NULL with *bad set when the
 * link is corrupted. Process lock held. */
static pa_large_t *large_next_plocked(const pa_heap_t *h, const pa_large_t *x, uint8_t flags, int *bad)
{
    pa_large_t *n = x->next;
    if (n && (!large_ok_plocked(h, n, flags) || n->prev != x)) {
        *bad = 1;
        return NULL;
    }
    return n;
}

/* The first block of a list, checked like large_next_plocked. */
static pa_large_t *large_first_plocked(const pa_heap_t *h, pa_large_t *first, uint8_t flags, int *bad)
{
    if (first && (!large_ok_plocked(h, first, flags) || first->prev)) {
        *bad = 1;
        return NULL;
    }
    return first;
}

/* Forgets the cache of freed large blocks after finding it corrupted: its reservations stay
 * (the process's rundown releases them). */
static void large_drop_cache(pa_heap_t *h)
{
    h->large_cache = NULL;
    h->ctr.cached_large = h->ctr.cached_large_bytes = h->ctr.cached_resident = 0;
}

/* Bytes reserved for a large block of `total` bytes: rounded up to one of four steps per
 * power of two, so that a freed block can serve any later request of its step or below. */
static size_t large_reserve_size(size_t total)
{
    if (total <= ((size_t)1 << 20)) return _pa_align_up(total, PA_GRANULARITY);
    unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)(total - 1));
    size_t step = (size_t)1 << (b - 2);
    return _pa_align_up(total, step);
}

/* Zeroes the user bytes of large block l as it goes into the cache, so that it reads as zero
 * when it is reused, as a fresh VirtualAlloc block does (heap.md fact 18). Only the pages its
 * request spans can have been written: a recycled block's commit beyond them was zero when
 * it was handed out, and an in-place HeapReAlloc decommits what it gives up. The rest of the
 * header page is cleared by hand; the pages after it by layer 1, in one of two ways:
 *   - dropped (pa_mm_zero_pages, one madvise): about 0.5 us whatever the size when the
 *     program touched few pages, but each page it touched costs a fault when the block is
 *     reused - 1.3 ms for a 2.5 MiB block written end to end, where glibc's reuse costs 80 us;
 *   - cleared in place (pa_mm_clear_pages: the pages the host holds are zeroed with memset and
 *     stay resident): 110 us for that block, and no faults after it.
 * The heap drops while blocks come back mostly untouched, and clears while they come back
 * mostly written (large_dense). Clearing looks at each page, so it tells how much of the
 * block was written; dropping tells nothing, so now and then a free clears instead, to find
 * out: the first large free of a heap, then after gaps that double from LARGE_PROBE_MIN_GAP
 * to LARGE_PROBE_MAX_GAP frees while the blocks it looks at are barely written. Under an
 * eighth of a block written switches back to dropping (and the block is dropped: pages that
 * read as zero but are held would otherwise look written to the next free). Blocks kept
 * resident are bounded by a quarter of the live large bytes or by the written span of the
 * largest block freed so far (up to LARGE_KEEP_CAP, glibc's largest mmap threshold), the
 * oldest dropped first; and every page the heap commits later drops one of them
 * (_pa_heap_committed_locked), so that the pages kept never raise the program's peak (a
 * fixed floor of 4 MiB without that took sqlite3's peak RSS under the preload library from
 * 1.09x glibc's to 1.24x). `written` is how many user bytes may have been written: 0 for a
 * block whose pages a HeapReAlloc moved away (large_move; it says nothing about density).
 * 0 when layer 1 refuses (e.g. a Python buffer still exports the block). */
#define LARGE_PROBE_MIN_GAP 16u
#define LARGE_PROBE_MAX_GAP 1024u
#define LARGE_KEEP_CAP ((size_t)32 << 20)

/* Drops the pages of the oldest cached blocks kept resident until at most `keep` bytes are
 * (the newest are the likeliest to be reused). With `room` bytes at `dst` (the start of a
 * range the heap has just committed, which reads as zero), the pages go there instead of
 * being dropped: a cached block's pages were cleared when it was freed, so they read as zero
 * too, and the heap's new memory is then resident without a page fault for each page the
 * program touches in it (pa_mm_move_pages; sqlite3 under the preload library had 1,300 such
 * faults where glibc reuses a freed buffer's pages for the small blocks that follow). */
static void large_trim_resident_locked(pa_heap_t *h, size_t keep, uintptr_t dst, size_t room)
{
    pa_large_t *order[64];
    size_t n = 0, hops = 0;
    int bad = 0;
    if (h->ctr.cached_resident <= keep) return;
    _pa_lock(h->process);
    for (pa_large_t *c = large_first_plocked(h, h->large_cache, LARGE_CACHED, &bad); c && !bad && n < 64;
         c = large_next_plocked(h, c, LARGE_CACHED, &bad)) {
        if (++hops > h->ctr.cached_large) break;
        if (c->hdr.prev_size) order[n++] = c;
    }
    _pa_unlock(h->process);
    while (n && h->ctr.cached_resident > keep) {
        pa_large_t *c = order[--n];
        size_t kept = (size_t)c->hdr.prev_size * PA_PAGE_SIZE, over = h->ctr.cached_resident - keep;
        char *from = (char *)c + PA_PAGE_SIZE;
        size_t len = c->committed - PA_PAGE_SIZE;
        if (over < kept) {
            /* Part of it: the end of what it keeps (the pages a buffer wrote lie at its start). */
            len = _pa_align_up(over, PA_PAGE_SIZE);
            from += kept - len;
        }
        size_t moved = len < room ? len : room;
        if (moved && pa_mm_move_pages(h->process, (void *)dst, from, moved) != STATUS_SUCCESS)
            moved = room = 0;
        dst += moved;
        room -= moved;
        if (len > moved &&
            pa_mm_zero_pages(h->process, from + moved, len - moved) != STATUS_SUCCESS) {
            if (!moved) continue;
            len = moved;
        }
        size_t dropped = len < kept ? len : kept;
        c->hdr.prev_size -= (uint32_t)(dropped / PA_PAGE_SIZE);
        h->ctr.cached_resident -= dropped;
    }
}

/* Free back-end blocks of at least DROP_MIN bytes whose inside pages may go to pay for a
 * commit (drop_free_for). */
#define DROP_MIN ((size_t)64 << 10)

/* While more than an eighth of the heap's commit lies in free back-end blocks, memory the
 * heap newly commits is paid for with the whole pages inside big free blocks (after the
 * header and list links; not a segment's last block, which seg_trim decommits): they stay
 * committed, as the tiling of a segment requires, but the host drops them, and they read as
 * zero when a block is carved there again (nothing reads a free block's bytes without free
 * checking, which keeps them). The largest blocks go first, and of a size class the oldest
 * (the list's tail: a block freed last is the likeliest to be carved again soon), each once
 * (PA_BLK_DROPPED, which a merge or a split clears). Windows' heap decommits the inside of big free blocks for the
 * same reason (DeCommitFreeBlockThreshold, heap.md section 3). A program that moves growing
 * buffers leaves such holes while it grows elsewhere: bench_preload's realloc workload had
 * 6.4 MiB in free blocks at its peak commit of 34 MiB, 4 MiB of it in whole pages of blocks
 * of 64 KiB or more. Dropping every big free block as it was freed instead cost that
 * workload 120k page faults (7.9k before) and twice its time. */
static void drop_free_for(pa_heap_t *h, size_t want)
{
    if ((h->debug & PA_HEAP_DEBUG_FREE_CHECK) || h->ctr.free_bytes <= h->ctr.committed / 8) return;
    unsigned cmin = _pa_free_class(DROP_MIN / U);
    int budget = 64; /* blocks looked at */
    for (unsigned c = PA_FREE_CLASSES; c-- > cmin && want && budget > 0;) {
        pa_free_t *last = NULL;
        int walk = 256; /* the oldest within reach */
        for (pa_free_t *f = h->free[c]; f && walk-- > 0; f = f->next) {
            if (!fl_ptr_ok(h, f, NULL)) return;
            last = f;
        }
        /* Each link back was checked by fl_entry_ok of the block before (last: by the walk). */
        for (pa_free_t *f = last; f && want && budget-- > 0; f = f->prev) {
            pa_block_t *b = &f->hdr;
            if (!fl_entry_ok(h, b)) return; /* (HeapValidate reports it) */
            size_t bytes = (size_t)b->size * U;
            if ((b->flags & PA_BLK_DROPPED) || bytes < DROP_MIN ||
                (blk_next(b)->flags & PA_BLK_END))
                continue;
            uintptr_t from = _pa_align_up((uintptr_t)b + sizeof(pa_free_t), PA_PAGE_SIZE);
            uintptr_t to = ((uintptr_t)b + bytes) & ~(uintptr_t)(PA_PAGE_SIZE - 1);
            DWORD saved = pa_get_last_error();
            if (to > from &&
                pa_mm_zero_pages(h->process, (void *)from, to - from) == STATUS_SUCCESS) {
                b->flags |= PA_BLK_DROPPED;
                want -= want < to - from ? want : to - from;
            }
            pa_set_last_error(saved);
        }
    }
}

/* Memory the heap newly commits at addr is paid for with the pages of cached large blocks
 * kept resident, which move there: what the program freed and has not used again stays in
 * memory only while its footprint does not grow elsewhere, so that keeping it never raises
 * the peak. Then with the empty LFH subsegments retained on credit (_pa_lfh_pay_locked),
 * and in a fragmented heap, with the inside of big free blocks (drop_free_for). */
void _pa_heap_committed_locked(pa_heap_t *h, uintptr_t addr, size_t size)
{
    h->ctr.committed += size;
    size_t from_cache = 0;
    if (h->ctr.cached_resident) {
        size_t before = h->ctr.cached_resident;
        large_trim_resident_locked(h, before > size ? before - size : 0, addr, size);
        from_cache = before - h->ctr.cached_resident;
    }
    if (size > from_cache && h->lfh) from_cache += _pa_lfh_pay_locked(h, size - from_cache);
    if (size > from_cache) drop_free_for(h, size - from_cache);
}

static int large_zero_locked(pa_heap_t *h, pa_large_t *l, size_t written)
{
    size_t c = _pa_align_up(sizeof(pa_large_t) + written, PA_PAGE_SIZE);
    if (c > l->committed) c = l->committed;
    l->hdr.prev_size = 0; /* pages kept resident (cached blocks) */
    if (c > PA_PAGE_SIZE) {
        char *from = (char *)l + PA_PAGE_SIZE;
        size_t n = c - PA_PAGE_SIZE;
        if (!h->large_dense && h->large_probe_left) {
            h->large_probe_left--;
            if (pa_mm_zero_pages(h->process, from, n) != STATUS_SUCCESS) return 0;
        } else {
            size_t floor = (size_t)h->large_keep_floor * PA_GRANULARITY;
            if (n > floor) {
                floor = _pa_align_up(n < LARGE_KEEP_CAP ? n : LARGE_KEEP_CAP, PA_GRANULARITY);
                h->large_keep_floor = (uint16_t)(floor / PA_GRANULARITY);
            }
            size_t keep = h->ctr.large_bytes / 4, resident = 0, written = 0;
            if (keep < floor) keep = floor;
            if (pa_mm_clear_pages(h->process, from, n, keep, &resident, &written) != STATUS_SUCCESS) return 0;
            int was_dense = h->large_dense;
            h->large_dense = written >= n / 8;
            if (!h->large_dense) {
                /* Barely written: the next look comes later, the gap doubling while that
                 * holds (a new run of dropping starts from the smallest gap). */
                unsigned gap = was_dense || !h->large_probe_gap ? LARGE_PROBE_MIN_GAP : 2u * h->large_probe_gap;
                h->large_probe_gap = (uint16_t)(gap < LARGE_PROBE_MAX_GAP ? gap : LARGE_PROBE_MAX_GAP);
                h->large_probe_left = h->large_probe_gap;
                if (resident <= keep && pa_mm_zero_pages(h->process, from, n) != STATUS_SUCCESS) return 0;
            } else if (resident <= keep) {
                large_trim_resident_locked(h, keep - resident, 0, 0);
                l->hdr.prev_size = (uint32_t)(resident / PA_PAGE_SIZE);
                h->ctr.cached_resident += resident;
            }
        }
    }
    memset(l + 1, 0, (c < PA_PAGE_SIZE ? c : PA_PAGE_SIZE) - sizeof(pa_large_t));
    return 1;
}

/* Takes cached block l out of the resident-bytes count (it leaves the cache). */
static void large_uncache(pa_heap_t *h, pa_large_t *l)
{
    h->ctr.cached_large--;
    h->ctr.cached_large_bytes -= l->reserved;
    h->ctr.cached_resident -= (size_t)l->hdr.prev_size * PA_PAGE_SIZE;
    l->hdr.prev_size = 0;
}

/* Makes a cached (zeroed) block l ready for a request of `total` bytes (page multiple): at
 * least [l, l + total) committed. A commit more than twice the need is trimmed, except, for
 * a buffer that grows (`grow`), the pages it keeps resident: it grows into them in place
 * without a fault. Otherwise only a shortfall is committed (a later in-place shrink still
 * decommits, so fact 33 holds). Returns 0 on failure (the block is still whole and cached). */
static int large_recycle_locked(pa_heap_t *h, pa_large_t *l, size_t total, int grow)
{
    size_t old = l->committed, to = PA_PAGE_SIZE + (size_t)l->hdr.prev_size * PA_PAGE_SIZE;
    if (!grow || to < total) to = total;
    if (old > 2 * total && old > to && decommit(h, (uintptr_t)l + to, old - to)) old = l->committed = to;
    if (total > old) {
        if (!commit(h, (uintptr_t)l + old, total - old)) return 0;
        l->committed = total;
    }
    return 1;
}

#define LARGE_SCAN 8

/* A large block for n bytes with at least `room` (>= n) bytes committed: a block that grows by
 * HeapReAlloc gets room to grow into in place (fact 33: within its commit). */
static void *large_alloc_locked(pa_heap_t *h, DWORD flags, size_t n, size_t room)
{
    size_t total = _pa_align_up(sizeof(pa_large_t) + room, PA_PAGE_SIZE);
    pa_large_t *l = NULL, *best = NULL;
    (void)flags; /* every large block reads as zero */
    /* Among the LARGE_SCAN most recently cached blocks that are big enough, the cheapest to
     * recycle: one whose commit already covers total needs no commit call, and the less it
     * has committed beyond total the less there is to zero; a shortfall costs a commit. The
     * scan stops at a block within a quarter of total. Older blocks are reused only when
     * the recent ones do not fit (and evicted first). A buffer that grows by HeapReAlloc
     * (room > n) while freed blocks come back written takes the first block that keeps at
     * least total bytes resident: a program that builds a big buffer again and again (bench
     * python3 growth) then builds it in the same pages, as glibc's heap top does. */
    size_t best_d = 0, budget = h->ctr.cached_large, fits = 0;
    int bad = 0, grow = room > n && h->large_dense;
    if (h->large_cache) {
        /* Each link is checked for memory safety only (mapped, linking back); the block
         * chosen gets the full check. */
        const pa_process_t *p = h->process;
        _pa_lock(h->process);
        pa_large_t *c = h->large_cache, *prev = NULL;
        for (; c && fits < LARGE_SCAN; prev = c, c = c->next) {
            if (!budget-- || !large_mapped_plocked(p, c) || c->prev != prev) {
                bad = 1;
                break;
            }
            if (c->reserved < total) continue;
            fits++;
            size_t d = c->committed >= total ? c->committed - total : 4 * (total - c->committed) + total;
            if (h->large_dense) { /* pages not kept resident fault in as the program writes */
                size_t kept = (size_t)c->hdr.prev_size * PA_PAGE_SIZE;
                if (grow && kept >= total) { /* a growing buffer: this one */
                    best = c;
                    break;
                }
                d += total > kept ? total - kept : 0;
            }
            if (!best || d < best_d) best = c, best_d = d;
            if (d <= total / 4) break;
        }
        if (best && !large_ok_plocked(h, best, LARGE_CACHED)) bad = 1;
        _pa_unlock(h->process);
    }
    if (bad) {
        large_drop_cache(h);
        if (h->terminate_on_corruption) return corrupt_fail(), NULL;
        best = NULL;
    }
    if (best && large_recycle_locked(h, best, total, grow)) {
        large_unlink(&h->large_cache, best);
        large_uncache(h, best);
        l = best;
    } else {
        size_t reserved = large_reserve_size(total);
        l = reserve_large(h, &reserved);
        if (!l) return NULL;
        if (!commit(h, (uintptr_t)l, total)) {
            release(h, l, reserved, 0);
            return NULL;
        }
        l->reserved = reserved;
        l->committed = total;
        l->heap = h;
    }
    l->requested = n;
    l->hdr.size = PA_LARGE_MAGIC;
    l->hdr.prev_size = 0;
    l->hdr.extra = 0;
    l->hdr.flags = PA_BLK_BUSY | PA_BLK_LARGE;
    l->hdr.bucket = 0;
    l->hdr.tag = _pa_blk_tag(h, &l->hdr);
    large_link(&h->large, l);
    h->ctr.large_blocks++;
    h->ctr.large_bytes += n;
    h->ctr.busy_bytes += n;
    h->ctr.busy_blocks++;
    return l + 1;
}

static void large_free_locked(pa_heap_t *h, pa_large_t *l, size_t written)
{
    large_unlink(&h->large, l);
    h->ctr.large_blocks--;
    h->ctr.large_bytes -= l->requested;
    h->ctr.busy_bytes -= l->requested;
    h->ctr.busy_blocks--;
    if (h->large_cache_max && l->reserved <= h->large_cache_max / 2 && large_zero_locked(h, l, written)) {
        /* Evict the oldest cached blocks until this one fits. */
        while (h->large_cache && h->ctr.cached_large_bytes + l->reserved > h->large_cache_max) {
            int bad = 0;
            size_t hops = 0;
            _pa_lock(h->process);
            pa_large_t *old = large_first_plocked(h, h->large_cache, LARGE_CACHED, &bad), *n;
            while (old && (n = large_next_plocked(h, old, LARGE_CACHED, &bad))) {
                if (++hops >= h->ctr.cached_large) { /* longer than counted: a cycle */
                    bad = 1;
                    break;
                }
                old = n;
            }
            _pa_unlock(h->process);
            if (bad || !old) {
                large_drop_cache(h);
                break;
            }
            large_unlink(&h->large_cache, old);
            large_uncache(h, old);
            release(h, old, old->reserved, old->committed);
        }
        l->hdr.flags = PA_BLK_LARGE | PA_BLK_CACHED;
        large_link(&h->large_cache, l);
        h->ctr.cached_large++;
        h->ctr.cached_large_bytes += l->reserved;
        return;
    }
    release(h, l, l->reserved, l->committed);
}

/* Releases every block of a list (taken off the heap), checking each link before it is
 * followed: a corrupted one ends the walk, and the rest stays reserved until the process's
 * rundown. */
static void large_release_list_locked(pa_heap_t *h, pa_large_t *l, uint8_t flags)
{
    int bad = 0;
    _pa_lock(h->process);
    l = large_first_plocked(h, l, flags, &bad);
    _pa_unlock(h->process);
    while (l) {
        _pa_lock(h->process);
        pa_large_t *next = large_next_plocked(h, l, flags, &bad);
        _pa_unlock(h->process);
        release(h, l, l->reserved, l->committed);
        l = next;
    }
}

static void large_flush_cache_locked(pa_heap_t *h)
{
    pa_large_t *l = h->large_cache;
    large_drop_cache(h);
    large_release_list_locked(h, l, LARGE_CACHED);
}

/* Is user a busy large block of h? Asks layer 1 (large_ok_plocked) before reading anything,
 * then checks the block's list links: NULL, with *corrupt set, when they are corrupted. */
static pa_large_t *large_lookup(pa_heap_t *h, const void *user, int *corrupt)
{
    uintptr_t a = (uintptr_t)user;
    if ((a & (PA_GRANULARITY - 1)) != sizeof(pa_large_t)) return NULL;
    pa_large_t *l = large_of((void *)user);
    _pa_lock(h->process);
    int ok = large_ok_plocked(h, l, LARGE_BUSY);
    int links = ok && large_links_ok_plocked(h, &h->large, l, LARGE_BUSY);
    _pa_unlock(h->process);
    if (ok && !links) *corrupt = 1;
    return links ? l : NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Classifying a pointer passed by the user                                                    */

/* K_BAD: not a busy block of the heap; K_CORRUPT: one whose metadata is corrupted. */
enum { K_BAD, K_CORRUPT, K_BACKEND, K_LFH, K_LARGE, K_PAGE };

/* The failure for a pointer that classify_locked refused. */
static int fail_kind(int kind)
{
    return kind == K_CORRUPT ? corrupt_fail() : _pa_heap_fail(STATUS_INVALID_PARAMETER);
}

typedef struct found_s {
    int kind;
    pa_segment_t *seg;
    pa_block_t *blk;
    pa_large_t *large;
    pa_pageblk_t *page;
} found_t;

typedef uint64_t __attribute__((may_alias)) hdr_word_t;

/* Writes extra, flags, bucket and tag of b in one store. */
static void blk_set_word2(pa_heap_t *h, pa_block_t *b, uint32_t extra, uint8_t flags)
{
    pa_block_t v = *b;
    v.extra = extra;
    v.flags = flags;
    v.bucket = 0;
    v.tag = _pa_blk_tag_v(h, (uintptr_t)b, v.size, extra);
    hdr_word_t w;
    memcpy(&w, &v.extra, sizeof w);
    __atomic_store_n((hdr_word_t *)&b->extra, w, __ATOMIC_RELEASE);
}

/* b's header as one thread wrote it (its second word loaded in one go). */
static pa_block_t blk_snapshot(const pa_block_t *b)
{
    pa_block_t v;
    hdr_word_t w = __atomic_load_n((const hdr_word_t *)&b->extra, __ATOMIC_ACQUIRE);
    v.size = b->size;
    v.prev_size = b->prev_size;
    memcpy(&v.extra, &w, sizeof w);
    return v;
}

/* Is b (inside s's committed blocks) a real busy or free back-end block? */
static int backend_block_ok(const pa_heap_t *h, const pa_segment_t *s, pa_block_t *b)
{
    uintptr_t a = (uintptr_t)b;
    if ((a & (U - 1)) || a < s->first || a >= s->commit_end - U) return 0;
    pa_block_t v = blk_snapshot(b); /* a thread's lookaside bin may be rewriting it */
    if (v.tag != _pa_blk_tag_v(h, a, v.size, v.extra) || (v.flags & (PA_BLK_END | PA_BLK_LFH | PA_BLK_LARGE)))
        return 0;
    if (v.size < 2 || (size_t)v.size * U > s->commit_end - U - a) return 0;
    if (blk_next(b)->prev_size != v.size) return 0;
    if (v.prev_size) {
        if ((size_t)v.prev_size * U > a - s->first) return 0;
        if (blk_prev(b)->size != v.prev_size) return 0;
    } else if (a != s->first) {
        return 0;
    }
    if ((v.flags & PA_BLK_BUSY) && (size_t)v.extra > (size_t)v.size * U - U) return 0;
    return 1;
}

/* Could p be a listed free block of h: 16-aligned, its pa_free_t inside the blocks of a
 * back-end segment (near, when not NULL, is tried first without a lookup)? Reads nothing
 * through p (so a link read from heap memory is checked with it before it is followed). */
static inline int fl_ptr_ok(const pa_heap_t *h, const void *p, const pa_segment_t *near)
{
    uintptr_t a = (uintptr_t)p;
    if (a & (U - 1)) return 0;
    const pa_segment_t *s = near;
    if (!s || a - s->first >= s->commit_end - s->first) s = backend_seg_of(h, a);
    return s && a >= s->first && a + sizeof(pa_free_t) <= s->commit_end - U;
}

/* Is b an intact listed free block of h: a real free block of its segment (backend_block_ok,
 * tag included) whose list neighbours point back to it? Checked before a free block is
 * unlinked or merged, so that corrupted metadata is reported instead of followed. */
static int fl_entry_ok_in(const pa_heap_t *h, const pa_segment_t *s, pa_block_t *b)
{
    if (!s || !backend_block_ok(h, s, b) || (b->flags & PA_BLK_BUSY)) return 0;
    const pa_free_t *f = (const pa_free_t *)b;
    if (f->prev ? !fl_ptr_ok(h, f->prev, s) || f->prev->next != f
                : h->free[_pa_free_class(b->size)] != f)
        return 0;
    if (f->next && (!fl_ptr_ok(h, f->next, s) || f->next->prev != f)) return 0;
    return 1;
}

/* fl_entry_ok_in with b's segment looked up; callers that know it (b is a neighbour of a
 * block of that segment) pass it instead. */
static int fl_entry_ok(const pa_heap_t *h, pa_block_t *b)
{
    return fl_entry_ok_in(h, backend_seg_of(h, (uintptr_t)b), b);
}

/* The block after b in s, or NULL when b's size would leave the segment's blocks (for loops
 * over a segment's blocks that have not checked each block). */
static pa_block_t *blk_next_in(const pa_segment_t *s, pa_block_t *b)
{
    if (b->size == 0 || (size_t)b->size * U > s->commit_end - U - (uintptr_t)b) return NULL;
    return blk_next(b);
}

/* The last block of s before its end sentinel (NULL if none), through *last; 0 when the
 * sentinel's back link or that block is corrupted. */
static int seg_last_block(const pa_heap_t *h, const pa_segment_t *s, pa_block_t **last)
{
    pa_block_t *end = (pa_block_t *)(s->commit_end - U);
    *last = NULL;
    if (!end->prev_size) return (uintptr_t)end == s->first;
    if ((size_t)end->prev_size * U > (uintptr_t)end - s->first) return 0;
    *last = blk_prev(end);
    return backend_block_ok(h, s, *last);
}

/* Finds the busy block whose user pointer is mem. Heap lock held (or NO_SERIALIZE). */
static int classify_locked(pa_heap_t *h, pa_lfh_tcache_t *tc, const void *mem, found_t *f)
{
    memset(f, 0, sizeof *f);
    uintptr_t a = (uintptr_t)mem;
    if (h->debug & PA_HEAP_DEBUG_PAGE_HEAP) {
        int r = _pa_pageheap_lookup_locked(h, mem, &f->page);
        if (r) return f->kind = r > 0 ? K_PAGE : K_BAD;
    }
    if (a & (U - 1)) return K_BAD;
    int r = _pa_lfh_lookup(h, tc, mem, &f->blk);
    if (r == PA_LFH_BUSY) return f->kind = K_LFH;
    if (r == PA_LFH_BAD) return K_BAD;
    pa_segment_t *s = backend_seg_of(h, a);
    if (s) {
        pa_block_t *b = (pa_block_t *)(a - U);
        if (a < s->first + U || a >= s->commit_end || !backend_block_ok(h, s, b) ||
            (b->flags & (PA_BLK_BUSY | PA_BLK_CACHED)) != PA_BLK_BUSY)
            return K_BAD;
        f->seg = s;
        f->blk = b;
        return f->kind = K_BACKEND;
    }
    int corrupt = 0;
    f->large = large_lookup(h, mem, &corrupt);
    return f->kind = f->large ? K_LARGE : corrupt ? K_CORRUPT : K_BAD;
}

static size_t found_size(const found_t *f)
{
    switch (f->kind) {
    case K_BACKEND: return blk_requested(f->blk);
    case K_LFH: return f->blk->prev_size;
    case K_LARGE: return f->large->requested;
    case K_PAGE: return f->page->requested;
    }
    return (size_t)-1;
}

/* ------------------------------------------------------------------------------------------ */
/* Back-end allocation and free                                                                */

static int lfh_eligible(const pa_heap_t *h)
{
    return !h->maximum && !(h->flags & HEAP_NO_SERIALIZE) && !h->debug &&
           !(h->force_flags & 0x80000000u); /* bit 31 of force_flags: our "no LFH" option */
}

/* Lookaside class of a request n in (PA_LA_MIN, PA_LA_MAX] (by (n - 1) >> 12, 3..15), the
 * largest request of a class, and the class of a block of cap user bytes in
 * [la_class_bytes(0), PA_LA_MAX * 5 / 4] (by cap >> 12, 5..20: the largest class whose
 * requests it holds). Tables, not comparisons: the sizes of a free+alloc pair come in no
 * order, and the comparisons' branches were mispredicted about once per pair. */
static const uint8_t la_req_class[16] = {0, 0, 0, 0, 0, 1, 2, 3, 4, 4, 5, 5, 6, 6, 7, 7};
static const uint8_t la_cap_class[21] = {0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 7, 7, 7};
static const uint32_t la_bytes[PA_LA_CLASSES] = {20 << 10, 24 << 10, 28 << 10, 32 << 10,
                                                 40 << 10, 48 << 10, 56 << 10, 64 << 10};

static inline unsigned la_class(size_t n) { return la_req_class[(n - 1) >> 12]; }

static inline size_t la_class_bytes(unsigned c) { return la_bytes[c]; }

static inline unsigned la_class_of_cap(size_t cap) { return la_cap_class[cap >> 12]; }

static int la_eligible(const pa_heap_t *h, size_t n)
{
    return n > PA_LA_MIN && n <= PA_LA_MAX && !h->maximum && !h->debug &&
           !(h->flags & HEAP_NO_SERIALIZE);
}

/* Is b, the head of a lookaside list, a listed back-end block? Its link (the first user
 * word) is checked when it becomes the head in turn. */
static int la_entry_ok(const pa_heap_t *h, pa_block_t *b)
{
    const pa_segment_t *s = backend_seg_of(h, (uintptr_t)b);
    return s && backend_block_ok(h, s, b) && b->flags == (PA_BLK_BUSY | PA_BLK_CACHED);
}

/* Takes a block for n bytes from its lookaside list; NULL when the list is empty, or after
 * corrupt_fail() (the list is dropped) when its head is not a listed block. */
static void *la_take_locked(pa_heap_t *h, DWORD flags, size_t n)
{
    unsigned c = la_class(n);
    pa_block_t *b = h->la[c];
    if (!b) return NULL;
    if (!la_entry_ok(h, b)) {
        h->la[c] = NULL;
        h->la_n[c] = 0;
        return corrupt_fail(), NULL;
    }
    h->la[c] = *(pa_block_t **)(b + 1);
    h->la_n[c]--;
    b->flags = PA_BLK_BUSY;
    b->extra = (uint32_t)((size_t)b->size * U - U - n);
    b->tag = _pa_blk_tag(h, b);
    h->ctr.busy_bytes += n;
    h->ctr.busy_blocks++;
    if (flags & HEAP_ZERO_MEMORY) memset(b + 1, 0, n);
    return b + 1;
}

/* Puts busy back-end block b on its lookaside list if it fits one with room. */
static int la_put_locked(pa_heap_t *h, pa_block_t *b)
{
    size_t cap = (size_t)b->size * U - U, n = blk_requested(b);
    if (!la_eligible(h, n) || cap > PA_LA_MAX + PA_LA_MAX / 4 || cap < la_class_bytes(0)) return 0;
    unsigned c = la_class_of_cap(cap);
    if (h->la_n[c] >= PA_LA_DEPTH) return 0;
    h->ctr.busy_bytes -= n;
    h->ctr.busy_blocks--;
    b->flags = PA_BLK_BUSY | PA_BLK_CACHED;
    *(pa_block_t **)(b + 1) = h->la[c];
    h->la[c] = b;
    h->la_n[c]++;
    return 1;
}

static int backend_free_locked(pa_heap_t *h, pa_segment_t *s, pa_block_t *b);

/* Frees every block of the lookaside lists to the back end (HeapCompact). A list whose head
 * is not a listed block is dropped (its blocks stay busy). */
static void la_flush_locked(pa_heap_t *h)
{
    for (unsigned c = 0; c < PA_LA_CLASSES; c++) {
        while (h->la[c]) {
            pa_block_t *b = h->la[c];
            if (!la_entry_ok(h, b)) {
                h->la[c] = NULL;
                corrupt_fail();
                break;
            }
            h->la[c] = *(pa_block_t **)(b + 1);
            h->ctr.busy_bytes += blk_requested(b);
            h->ctr.busy_blocks++;
            b->flags = PA_BLK_BUSY;
            backend_free_locked(h, backend_seg_of(h, (uintptr_t)b), b);
        }
        h->la_n[c] = 0;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Thread lookaside bins                                                                       */
/*
 * A thread's LFH cache also holds, per lookaside class, up to PA_MC_DEPTH freed back-end
 * blocks of 16-64 KiB requests (at most PA_MC_BYTES in all), so that a free+alloc pair of such
 * sizes takes no lock, like an LFH pair. A binned block keeps its busy header with
 * PA_BLK_CACHED (the back end never merges it; HeapSize and HeapFree refuse it; HeapWalk
 * reports it free), linked through its first user word. Without the lock only the fields that
 * the block's holder alone writes are read: its size, extra, flags and tag, and the next
 * block's prev_size (the back end writes that word only when this block's size changes). The
 * second header word (extra, flags, bucket, tag) is stored in one go, so that a HeapWalk or
 * HeapValidate under the lock sees either the old header or the new one.
 */

/* The end of the committed blocks of the back-end segment of h whose blocks hold header
 * address b, found without the heap lock in mc_words; 0 when b is not 16-aligned in such a
 * place (or its segment is not listed there: the caller then takes the locked path). */
static inline __attribute__((always_inline)) uintptr_t mc_committed_end(pa_heap_t *h, pa_lfh_tcache_t *tc,
                                                                      uintptr_t b)
{
    if (b & (U - 1)) return 0;
    uint64_t w = mc_word_of(h, tc, b);
    if (!w) return 0;
    uintptr_t base = segmap_base(w);
    size_t committed = (size_t)(uint32_t)w << 12, hdr = base == (uintptr_t)h ? HEAP_HDR_SIZE : SEG_HDR_SIZE;
    return b >= base + hdr && b + 2 * U <= base + committed ? base + committed : 0;
}

/* The header of the back-end block at user address a if it is one with flags `want`, found
 * without the heap lock (its tag checked; the neighbours are not read); NULL otherwise.
 * Nothing is read at a before a is known to lie in committed blocks of a back-end segment. */
static inline __attribute__((always_inline)) pa_block_t *mc_block_of(pa_heap_t *h, pa_lfh_tcache_t *tc,
                                                                     uintptr_t a, uint8_t want)
{
    pa_block_t *b = (pa_block_t *)(a - U);
    uintptr_t end = mc_committed_end(h, tc, (uintptr_t)b);
    if (!end) return NULL;
    pa_block_t v = blk_snapshot(b);
    if (v.flags != want || v.tag != _pa_blk_tag_v(h, (uintptr_t)b, v.size, v.extra) || v.size < 2 ||
        (size_t)v.size * U > end - U - (uintptr_t)b || (size_t)v.extra > (size_t)v.size * U - U)
        return NULL;
    return b;
}

/* A binned block's link to the next one is kept twice in its first two user words, each
 * masked with a key of the heap, so that a stray write into a freed block shows as a
 * mismatch when the link is read and nothing has to be looked up to trust it. */
static inline uint64_t mc_key(const pa_heap_t *h) { return (uint64_t)h->cookie * 0x9E3779B97F4A7C15ull | 1; }

static inline void mc_set_link(const pa_heap_t *h, pa_block_t *b, pa_block_t *next)
{
    uint64_t *w = (uint64_t *)(b + 1), k = mc_key(h);
    w[0] = (uintptr_t)next ^ k;
    w[1] = ~(uintptr_t)next ^ (k << 17 | k >> 47);
}

/* b's link; *bad set (and NULL returned) when its two copies disagree. */
static inline pa_block_t *mc_get_link(const pa_heap_t *h, const pa_block_t *b, int *bad)
{
    const uint64_t *w = (const uint64_t *)(b + 1);
    uint64_t k = mc_key(h), x = w[0] ^ k;
    if (PA_UNLIKELY(~x != (w[1] ^ (k << 17 | k >> 47)))) {
        *bad = 1;
        return NULL;
    }
    return (pa_block_t *)(uintptr_t)x;
}

/* A full bin c goes whole onto the heap's remote list of its class, for a thread that
 * allocates what this one frees; 0 when the remote lists hold their maximum already, when
 * no other thread holds a cache of the heap, or when a link of the bin is bad (the bin
 * stays, and the caller flushes it). */
static pa_block_t *mc_next(pa_heap_t *h, pa_block_t *b, int *bad);

/* User bytes of the blocks of the chain from head (NULL: none), followed link by link (a bad
 * link ends it and sets *bad), and the chain's length and last block if asked. */
static size_t mc_chain(pa_heap_t *h, pa_block_t *head, uint32_t *count, pa_block_t **tail, int *bad)
{
    size_t bytes = 0;
    uint32_t n = 0;
    pa_block_t *last = NULL;
    *bad = 0;
    for (pa_block_t *x = head; x && !*bad; x = mc_next(h, x, bad)) {
        bytes += (size_t)x->size * U - U;
        n++;
        last = x;
    }
    if (count) *count = n;
    if (tail) *tail = last;
    return bytes;
}

/* Pushes the chain head..tail onto a lock-free list (the remote lists, the orphan list). */
static void mc_push_chain(pa_heap_t *h, _Atomic(pa_block_t *) *list, pa_block_t *head, pa_block_t *tail)
{
    pa_block_t *old = atomic_load_explicit(list, memory_order_relaxed);
    do mc_set_link(h, tail, old);
    while (!atomic_compare_exchange_weak_explicit(list, &old, head, memory_order_release, memory_order_relaxed));
}

/* Puts busy block b of cap user bytes on the thread's bin c, marked cached (the tag stays). */
static inline __attribute__((always_inline)) void mc_bin_push(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned c, pa_block_t *b, size_t cap)
{
    __atomic_store_n(&b->flags, PA_BLK_BUSY | PA_BLK_CACHED, __ATOMIC_RELEASE);
    mc_set_link(h, b, tc->mbin[c].head);
    tc->mbin[c].head = b;
    tc->mbin[c].count++;
    tc->mbytes += cap;
}

static int mc_hand_on(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned c)
{
    pa_block_t *head = tc->mbin[c].head, *tail;
    if (!head) return tc->mbytes + PA_LA_MAX + PA_LA_MAX / 4 <= PA_MC_BYTES;
    /* With one thread on the heap nobody else would take the list: the blocks go back to
     * the back end, where they coalesce, rather than wait (as a second bin) for this one. */
    if (atomic_load_explicit(&h->lfh->claimed, memory_order_relaxed) < 2) return 0;
    int bad;
    size_t bytes = mc_chain(h, head, NULL, &tail, &bad);
    if (bad) return 0;
    if (atomic_fetch_add_explicit(&h->mc_remote_bytes, (int64_t)bytes, memory_order_relaxed) + (int64_t)bytes >
        PA_MC_REMOTE_BYTES) {
        atomic_fetch_sub_explicit(&h->mc_remote_bytes, (int64_t)bytes, memory_order_relaxed);
        return 0;
    }
    mc_push_chain(h, &h->mc_remote[c], head, tail);
    tc->mbin[c].head = NULL;
    tc->mbin[c].count = 0;
    tc->mbytes -= bytes;
    return 1;
}

static void mc_free_chain_locked(pa_heap_t *h, pa_block_t *b);

/* Frees bin c to the back end (takes the heap lock). */
static void mc_flush_bin(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned c)
{
    pa_block_t *head = tc->mbin[c].head;
    int bad;
    size_t bytes = mc_chain(h, head, NULL, NULL, &bad);
    tc->mbin[c].head = NULL;
    tc->mbin[c].count = 0;
    tc->mbytes = tc->mbytes > bytes ? tc->mbytes - bytes : 0;
    pthread_mutex_lock(&h->lock);
    mc_free_chain_locked(h, head);
    pthread_mutex_unlock(&h->lock);
}

/* Moves the remote list of class c into the thread's empty bin c. */
static void mc_take_remote(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned c)
{
    if (!atomic_load_explicit(&h->mc_remote[c], memory_order_relaxed)) return;
    pa_block_t *head = atomic_exchange_explicit(&h->mc_remote[c], NULL, memory_order_acquire);
    if (!head) return;
    int bad;
    uint32_t count;
    size_t bytes = mc_chain(h, head, &count, NULL, &bad);
    /* (A bad link ends the list where it is: the blocks after it leak, and mc_take reports
     * the corruption when it reaches it.) */
    atomic_fetch_sub_explicit(&h->mc_remote_bytes, (int64_t)bytes, memory_order_relaxed);
    tc->mbin[c].head = head;
    tc->mbin[c].count = count;
    tc->mbytes += bytes;
}

/* HeapFree without the lock: puts mem on the thread's bin if it is a busy back-end block of a
 * lookaside class and the bin has room. 0: not done (the caller takes the locked path, which
 * checks everything and reports what is wrong). */
static inline __attribute__((always_inline)) int mc_put(pa_heap_t *h, pa_lfh_tcache_t *tc, void *mem)
{
    pa_block_t *b = mc_block_of(h, tc, (uintptr_t)mem, PA_BLK_BUSY);
    if (!b) return 0;
    size_t cap = (size_t)b->size * U - U;
    if (cap < la_class_bytes(0) || cap > PA_LA_MAX + PA_LA_MAX / 4) return 0;
    unsigned c = la_class_of_cap(cap);
    /* Only blocks carved at their class's size (what HeapAlloc makes of these requests): one
     * that a HeapReAlloc grew or shrank in place goes back to the back end, where it can
     * merge; kept in a bin it would pin a hole of its own size (bench_preload's realloc
     * workload: +3.8 MB of peak RSS over 32.5). */
    if (cap - la_class_bytes(c) >= 4 * U) return 0;
    if ((tc->mbin[c].count >= PA_MC_DEPTH || tc->mbytes + cap > PA_MC_BYTES) && !mc_hand_on(h, tc, c)) {
        /* The remote lists are full too (or are not for this heap now): the whole bin
         * goes back to the back end under one lock (not one lock per free), and this block
         * starts it again. */
        if (!tc->mbin[c].head) return 0;
        mc_flush_bin(h, tc, c);
        if (tc->mbytes + cap > PA_MC_BYTES) return 0;
    }
    tc->mbusy_bytes -= (int64_t)(cap - b->extra);
    tc->mbusy_blocks--;
    mc_bin_push(h, tc, c, b, cap);
    return 1;
}

/* Forgets bin c (after a corrupted link was found: its blocks stay busy and leak). */

static void mc_drop_bin(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned c)
{
    tc->mbin[c].head = NULL;
    tc->mbin[c].count = 0;
    size_t bytes = 0;
    int bad;
    for (unsigned i = 0; i < PA_LA_CLASSES; i++) bytes += mc_chain(h, tc->mbin[i].head, NULL, NULL, &bad);
    tc->mbytes = bytes;
}

/* The block after b on a bin or orphan list: NULL at the end, and *bad set when the link (b's
 * first user word, which a stray write may have hit) does not point at a header in a back-end
 * segment's committed blocks. Only its place is checked here: its header is checked when it
 * is taken (mc_take) or freed (mc_free_chain_locked). */
static pa_block_t *mc_next(pa_heap_t *h, pa_block_t *b, int *bad)
{
    pa_block_t *x = mc_get_link(h, b, bad);
    if (!x) return NULL;
    if (!mc_committed_end(h, NULL, (uintptr_t)x)) {
        *bad = 1;
        return NULL;
    }
    return x;
}

/* HeapAlloc of n bytes (a lookaside request) without the lock, from the thread's bin; NULL
 * when the bin is empty, or after corrupt_fail() (the bin is dropped) when its head or the
 * link after it has been overwritten. */
static inline __attribute__((always_inline)) void *mc_take(pa_heap_t *h, pa_lfh_tcache_t *tc, DWORD flags, size_t n)
{
    unsigned c = la_class(n);
    pa_block_t *b = tc->mbin[c].head;
    if (!b) {
        /* The next class up (at most a quarter more than asked for), then what other threads
         * handed on. */
        if (c + 1 < PA_LA_CLASSES && (b = tc->mbin[c + 1].head)) {
            c++;
        } else {
            mc_take_remote(h, tc, c);
            if (!(b = tc->mbin[c].head)) return NULL;
        }
    }
    int bad = 0;
    pa_block_t v = blk_snapshot(b);
    /* The link's two copies are checked here; the block it names is checked (header and
     * place) when it is taken in turn. */
    pa_block_t *next = v.flags == (PA_BLK_BUSY | PA_BLK_CACHED) ? mc_get_link(h, b, &bad) : (bad = 1, NULL);
    if (bad || v.tag != _pa_blk_tag_v(h, (uintptr_t)b, v.size, v.extra) || (size_t)v.size * U - U < n) {
        mc_drop_bin(h, tc, c);
        return corrupt_fail(), NULL;
    }
    size_t cap = (size_t)v.size * U - U;
    tc->mbin[c].head = next;
    tc->mbin[c].count--;
    tc->mbytes -= cap;
    blk_set_word2(h, b, (uint32_t)(cap - n), PA_BLK_BUSY);
    tc->mbusy_bytes += (int64_t)n;
    tc->mbusy_blocks++;
    if (flags & HEAP_ZERO_MEMORY) memset(b + 1, 0, n);
    return b + 1;
}

/* After a miss of bin c that took the lock anyway: a few more blocks of the class for the
 * bin, so that a thread that allocates what another frees takes the lock once per
 * MC_REFILL + 1 allocations, not on each. Only while a second thread holds a cache of the
 * heap (as for mc_hand_on): a lone thread's bins fill from its own frees, and blocks carved
 * ahead for them were flushed back unused (bench_heap's medium pattern: 3% of its
 * instructions). Heap lock held. */
#define MC_REFILL 3

static void *alloc_locked(pa_heap_t *h, DWORD flags, size_t n);

static void mc_refill_locked(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned c)
{
    size_t want = la_class_bytes(c);
    if (atomic_load_explicit(&h->lfh->claimed, memory_order_relaxed) < 2) return;
    for (int k = 0; k < MC_REFILL && tc->mbin[c].count < PA_MC_DEPTH && tc->mbytes + want <= PA_MC_BYTES; k++) {
        void *user = alloc_locked(h, 0, want);
        if (!user) break;
        pa_block_t *b = (pa_block_t *)user - 1;
        h->ctr.busy_bytes -= want;
        h->ctr.busy_blocks--;
        mc_bin_push(h, tc, c, b, (size_t)b->size * U - U);
    }
}

/* Gives the blocks of a chain (checked link by link; a bad link ends it) back to the back
 * end. Heap lock held. */
static void mc_free_chain_locked(pa_heap_t *h, pa_block_t *b)
{
    while (b) {
        int bad = 0;
        pa_block_t *next = mc_next(h, b, &bad);
        pa_segment_t *s = backend_seg_of(h, (uintptr_t)b);
        if (!s || !backend_block_ok(h, s, b) || b->flags != (PA_BLK_BUSY | PA_BLK_CACHED)) {
            corrupt_fail();
            return;
        }
        h->ctr.busy_bytes += blk_requested(b);
        h->ctr.busy_blocks++;
        b->flags = PA_BLK_BUSY;
        backend_free_locked(h, s, b);
        if (bad) {
            corrupt_fail();
            return;
        }
        b = next;
    }
}

/* Empties the calling thread's bins into the back end (HeapCompact). Heap lock held. */
static void mc_flush_locked(pa_heap_t *h, pa_lfh_tcache_t *tc)
{
    if (!tc) return;
    for (unsigned c = 0; c < PA_LA_CLASSES; c++) {
        pa_block_t *b = tc->mbin[c].head;
        tc->mbin[c].head = NULL;
        tc->mbin[c].count = 0;
        mc_free_chain_locked(h, b);
    }
    tc->mbytes = 0;
}

/* Frees the blocks that threads left behind on h->mc_orphans and handed on to the remote
 * lists. Heap lock held. */
static void mc_drain_orphans_locked(pa_heap_t *h)
{
    if (atomic_load_explicit(&h->mc_orphans, memory_order_relaxed))
        mc_free_chain_locked(h, atomic_exchange_explicit(&h->mc_orphans, NULL, memory_order_acquire));
    for (unsigned c = 0; c < PA_LA_CLASSES; c++) {
        if (!atomic_load_explicit(&h->mc_remote[c], memory_order_relaxed)) continue;
        pa_block_t *x = atomic_exchange_explicit(&h->mc_remote[c], NULL, memory_order_acquire);
        int bad;
        int64_t bytes = (int64_t)mc_chain(h, x, NULL, NULL, &bad);
        atomic_fetch_sub_explicit(&h->mc_remote_bytes, bytes, memory_order_relaxed);
        mc_free_chain_locked(h, x);
    }
}

/* A thread gives its cache back (no heap lock: see tls_drop_locked): its binned blocks go on
 * h->mc_orphans for the next locked call to free, and its busy counts to the heap's. */
static void mc_orphan(pa_heap_t *h, pa_lfh_tcache_t *tc)
{
    for (unsigned c = 0; c < PA_LA_CLASSES; c++) {
        pa_block_t *head = tc->mbin[c].head, *tail;
        int bad;
        tc->mbin[c].head = NULL;
        tc->mbin[c].count = 0;
        if (!head) continue;
        (void)mc_chain(h, head, NULL, &tail, &bad);
        mc_push_chain(h, &h->mc_orphans, head, tail); /* (after a bad link, the rest of the bin leaks) */
    }
    tc->mbytes = 0;
    atomic_fetch_add_explicit(&h->mc_busy_bytes, tc->mbusy_bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->mc_busy_blocks, tc->mbusy_blocks, memory_order_relaxed);
    tc->mbusy_bytes = tc->mbusy_blocks = 0;
}

/* Are the calling thread's bins intact (HeapValidate)? Heap lock held. */
static int mc_validate(pa_heap_t *h, pa_lfh_tcache_t *tc)
{
    if (!tc) return 1;
    for (unsigned c = 0; c < PA_LA_CLASSES; c++) {
        int bad = 0;
        for (pa_block_t *b = tc->mbin[c].head; b && !bad; b = mc_next(h, b, &bad)) {
            pa_segment_t *s = backend_seg_of(h, (uintptr_t)b);
            if (!s || !backend_block_ok(h, s, b) || b->flags != (PA_BLK_BUSY | PA_BLK_CACHED)) return 0;
        }
        if (bad) return 0;
    }
    return 1;
}

/* Are there blocks on the orphan or remote lists that a locked call could free? */
static int mc_has_spare(pa_heap_t *h)
{
    return atomic_load_explicit(&h->mc_orphans, memory_order_relaxed) ||
           atomic_load_explicit(&h->mc_remote_bytes, memory_order_relaxed) > 0;
}

static void *alloc_locked(pa_heap_t *h, DWORD flags, size_t n)
{
    if (n > PA_HEAP_MAX_REQUEST) return NULL;
    if (h->debug & PA_HEAP_DEBUG_PAGE_HEAP) return _pa_pageheap_alloc_locked(h, flags, n);
    size_t units = units_for(h, n);
    if (units * U >= PA_HEAP_LARGE_THRESHOLD)
        return h->maximum ? NULL : large_alloc_locked(h, flags, n, n);
    if (la_eligible(h, n)) {
        uint16_t uses = __atomic_load_n(&h->la_uses, __ATOMIC_RELAXED);
        if (uses < PA_LFH_ACTIVATE) __atomic_store_n(&h->la_uses, (uint16_t)(uses + 1), __ATOMIC_RELAXED);
        void *r = la_take_locked(h, flags, n);
        if (r || corrupt_seen) return r;
        units = units_for(h, la_class_bytes(la_class(n)));
    }
    pa_block_t *b = fl_take(h, units);
    if (!b && mc_has_spare(h)) {
        mc_drain_orphans_locked(h);
        b = fl_take(h, units);
    }
    if (!b) {
        if (!grow(h, units)) return NULL;
        b = fl_take(h, units);
        if (!b) return NULL;
    }
    void *user = carve(h, b, units, n, flags);
    if (n <= PA_LFH_MAX_REQUEST && lfh_eligible(h)) _pa_lfh_note_backend_locked(h, n);
    return user;
}

void *_pa_heap_backend_alloc_locked(pa_heap_t *h, DWORD flags, size_t size)
{
    return alloc_locked(h, flags, size);
}

/* Frees busy back-end block b of segment s (checked by backend_block_ok). A free neighbour
 * is checked (fl_entry_ok) before it is merged; a corrupted one is left alone (b is freed on
 * its own, and HeapValidate still fails), or, on a heap that terminates on corruption, the
 * call fails: 0 after corrupt_fail(), nothing changed. */
static int backend_free_locked(pa_heap_t *h, pa_segment_t *s, pa_block_t *b)
{
    pa_block_t *next = blk_next(b), *prev = blk_prev(b);
    int join_next = 0, join_prev = 0;
    if (!(h->flags & HEAP_DISABLE_COALESCE_ON_FREE)) {
        join_next = !(next->flags & PA_BLK_BUSY);
        join_prev = prev && !(prev->flags & PA_BLK_BUSY);
        if (join_next && !fl_entry_ok_in(h, s, next)) join_next = -1;
        if (join_prev && !fl_entry_ok_in(h, s, prev)) join_prev = -1;
        if (join_next < 0 || join_prev < 0) {
            if (h->terminate_on_corruption) return corrupt_fail();
            join_next = join_next > 0;
            join_prev = join_prev > 0;
        }
    }
    h->ctr.busy_bytes -= blk_requested(b);
    h->ctr.busy_blocks--;
    uint32_t units = b->size;
    pa_block_t *start = b;
    char *fill_from = NULL, *fill_to = NULL; /* (see make_free_part) */
    if (join_next) {
        fl_remove(h, next);
        units += next->size;
        fill_to = fill_start(next);
    }
    if (join_prev) {
        fl_remove(h, prev);
        units += prev->size;
        start = prev;
        fill_from = (char *)b; /* (the previous free block is filled) */
    }
    make_free_part(h, start, units, start->prev_size, fill_from, fill_to);
    seg_trim(h, s, start);
    return 1;
}

static BOOL free_found_locked(pa_heap_t *h, pa_lfh_tcache_t *tc, found_t *f)
{
    switch (f->kind) {
    case K_BACKEND:
        if ((h->debug & PA_HEAP_DEBUG_TAIL_CHECK) &&
            !_pa_heap_tail_ok(blk_user(f->blk), blk_requested(f->blk)))
            return _pa_heap_fail(STATUS_HEAP_CORRUPTION), FALSE;
        return la_put_locked(h, f->blk) || backend_free_locked(h, f->seg, f->blk);
    case K_LFH: _pa_lfh_free(h, tc, f->blk); return TRUE;
    case K_LARGE: large_free_locked(h, f->large, f->large->requested); return TRUE;
    case K_PAGE:
        if (!_pa_pageheap_free_locked(h, f->page)) return _pa_heap_fail(STATUS_HEAP_CORRUPTION), FALSE;
        return TRUE;
    }
    return _pa_heap_fail(STATUS_INVALID_PARAMETER), FALSE;
}

/* ------------------------------------------------------------------------------------------ */
/* Creating and destroying heaps                                                               */

static uint32_t make_cookie(const void *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uintptr_t)h ^
                 atomic_load(&next_heap_id) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (uint32_t)x;
}

static HANDLE create_heap(pa_process_t *p, DWORD options, size_t initial, size_t maximum,
                          const pa_heap_options_t *o, int is_process_heap)
{
    if (!p) return _pa_heap_fail(STATUS_INVALID_PARAMETER), NULL;
    DWORD flags = options & (HEAP_NO_SERIALIZE | HEAP_GENERATE_EXCEPTIONS |
                             HEAP_CREATE_ENABLE_EXECUTE | HEAP_DISABLE_COALESCE_ON_FREE |
                             HEAP_CREATE_ALIGN_16);
    uint32_t debug = _pa_heap_env_debug() | (o ? (o->debug & PA_HEAP_DEBUG_MASK) : 0);
    if (options & HEAP_TAIL_CHECKING_ENABLED) debug |= PA_HEAP_DEBUG_TAIL_CHECK;
    if (options & HEAP_FREE_CHECKING_ENABLED) debug |= PA_HEAP_DEBUG_FREE_CHECK;
    size_t limit = pa_process_max_address(p) - pa_process_min_address(p);
    if (initial > limit || maximum > limit) return _pa_heap_fail(STATUS_NO_MEMORY), NULL;
    size_t commit_size = _pa_align_up(initial, PA_PAGE_SIZE);
    if (commit_size < 2 * PA_PAGE_SIZE) commit_size = 2 * PA_PAGE_SIZE; /* fact 46: 0x2000 */
    size_t reserve_size;
    if (maximum) {
        if (maximum < initial) maximum = initial;
        reserve_size = _pa_align_up(maximum, PA_GRANULARITY);
        if (reserve_size < PA_GRANULARITY) reserve_size = PA_GRANULARITY;
        if (commit_size > reserve_size) commit_size = reserve_size;
    } else {
        reserve_size = _pa_align_up(commit_size, PA_GRANULARITY);
    }
    DWORD prot = (flags & HEAP_CREATE_ENABLE_EXECUTE) ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
    void *base = pa_virtual_alloc(p, NULL, reserve_size, MEM_RESERVE, prot, PA_OWNER_HEAP);
    if (!base) return _pa_heap_fail(STATUS_NO_MEMORY), NULL;
    if (!pa_virtual_alloc(p, base, commit_size, MEM_COMMIT, prot, PA_OWNER_HEAP)) {
        pa_virtual_free(p, base, 0, MEM_RELEASE, PA_OWNER_HEAP);
        return _pa_heap_fail(STATUS_NO_MEMORY), NULL;
    }
    pa_heap_t *h = base;
    h->signature = PA_HEAP_SIGNATURE;
    h->magic = PA_HEAP_MAGIC;
    h->cookie = make_cookie(h);
    h->process = p;
    h->self = h;
    h->maximum = maximum;
    h->id = atomic_fetch_add(&next_heap_id, 1);
    h->debug = debug;
    h->grow_size = (size_t)1 << 20;
    size_t cache = o && o->large_cache != (size_t)-1 ? o->large_cache : _pa_heap_env_large_cache();
    h->large_cache_max = maximum ? 0 : cache;
    /* Flags as Windows shows them (facts 5 and 6). */
    DWORD f = flags;
    if (!maximum) f |= HEAP_GROWABLE;
    if (!is_process_heap) f |= HEAP_PRIVATE;
    if (debug & PA_HEAP_DEBUG_TAIL_CHECK) f |= HEAP_TAIL_CHECKING_ENABLED;
    if (debug & PA_HEAP_DEBUG_FREE_CHECK) f |= HEAP_FREE_CHECKING_ENABLED;
    if (debug & PA_HEAP_DEBUG_VALIDATE_ALL) f |= HEAP_VALIDATE_ALL;
    if (debug & PA_HEAP_DEBUG_PAGE_HEAP) f |= HEAP_PAGE_ALLOCS;
    h->flags = f;
    h->force_flags = f & ~(DWORD)(HEAP_DISABLE_COALESCE_ON_FREE | HEAP_CREATE_ENABLE_EXECUTE);
    if (!(f & HEAP_PAGE_ALLOCS)) h->force_flags &= ~(DWORD)(HEAP_GROWABLE | HEAP_PRIVATE);
    if ((o && o->no_lfh) || _pa_heap_env_no_lfh()) h->force_flags |= 0x80000000u;
    h->auto_flags = f & HEAP_GROWABLE;
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&h->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    h->ctr.reserved = reserve_size;
    h->ctr.committed = commit_size;
    seg_init(h, &h->seg0, (uintptr_t)h, HEAP_HDR_SIZE, reserve_size, commit_size);
    seg_append(h, &h->seg0);

    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = rec_find_locked(p, 1);
    if (!r || (is_process_heap && r->process_heap)) {
        pthread_mutex_unlock(&registry_lock);
        pthread_mutex_destroy(&h->lock);
        pa_virtual_free(p, base, 0, MEM_RELEASE, PA_OWNER_HEAP);
        if (r && is_process_heap) return r->process_heap; /* another thread won the race */
        return _pa_heap_fail(STATUS_NO_MEMORY), NULL;
    }
    if (is_process_heap) {
        /* The process heap is listed first (fact 2). */
        r->process_heap = h;
        h->next_heap = r->first;
        r->first = h;
        if (!r->last) r->last = h;
    } else {
        if (r->last) r->last->next_heap = h;
        else r->first = h;
        r->last = h;
    }
    r->count++;
    h->terminate_on_corruption = (uint32_t)r->terminate_on_corruption;
    pthread_mutex_unlock(&registry_lock);
    _pa_heap_trace(p, PA_OP_HEAP_CREATE, h, initial, options, h, 1);
    return h;
}

HANDLE pa_heap_create_ex(pa_process_t *p, DWORD options, SIZE_T initial, SIZE_T maximum,
                         const pa_heap_options_t *heap_options)
{
    return create_heap(p, options, initial, maximum, heap_options, 0);
}

HANDLE pa_heap_create(pa_process_t *p, DWORD options, SIZE_T initial, SIZE_T maximum)
{
    return create_heap(p, options, initial, maximum, NULL, 0);
}

static __thread struct {
    pa_process_t *p;
    pa_heap_t *heap;
    uint64_t epoch;
} tls_process_heap __attribute__((tls_model("initial-exec")));

HANDLE pa_heap_get_process_heap(pa_process_t *p)
{
    uint64_t ep = atomic_load_explicit(&heap_epoch, memory_order_acquire);
    if (tls_process_heap.p == p && tls_process_heap.epoch == ep && p) return tls_process_heap.heap;
    if (!p) return _pa_heap_fail(STATUS_INVALID_PARAMETER), NULL;
    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = rec_find_locked(p, 0);
    pa_heap_t *h = r ? r->process_heap : NULL;
    pthread_mutex_unlock(&registry_lock);
    if (!h) h = create_heap(p, 0, 0, 0, NULL, 1);
    if (h) {
        tls_process_heap.p = p;
        tls_process_heap.heap = h;
        tls_process_heap.epoch = ep;
    }
    return h;
}

DWORD pa_heap_get_process_heaps(pa_process_t *p, DWORD count, HANDLE *heaps)
{
    if (!pa_heap_get_process_heap(p)) return 0;
    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = rec_find_locked(p, 0);
    DWORD total = r ? r->count : 0;
    if (heaps && count >= total) {
        DWORD i = 0;
        for (pa_heap_t *h = r->first; h; h = h->next_heap) heaps[i++] = h;
    }
    pthread_mutex_unlock(&registry_lock);
    return total;
}

/* Releases everything of h, which is out of the registry. */
static void destroy_heap_memory(pa_heap_t *h)
{
    pthread_mutex_lock(&h->lock);
    pa_process_t *p = h->process;
    pa_large_t *large = h->large;
    h->large = NULL;
    large_release_list_locked(h, large, LARGE_BUSY);
    large_flush_cache_locked(h);
    _pa_pageheap_destroy_locked(h);
    /* LFH segments after the first hold no LFH state; the first holds pa_lfh_t. */
    for (unsigned i = h->nsegs; i-- > 1;) {
        pa_segment_t *s = seg_at(h, i);
        pa_virtual_free(p, (void *)s->base, 0, MEM_RELEASE, PA_OWNER_HEAP);
    }
    pthread_mutex_unlock(&h->lock);
    pthread_mutex_destroy(&h->lock);
    h->signature = 0;
    h->magic = 0;
    pa_virtual_free(p, h, 0, MEM_RELEASE, PA_OWNER_HEAP);
}

static BOOL destroy_heap(pa_process_t *p, HANDLE heap)
{
    pa_heap_t *h = heap;
    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = p ? rec_find_locked(p, 0) : NULL;
    pa_heap_t *prev = NULL, *x = r ? r->first : NULL;
    while (x && x != h) {
        prev = x;
        x = x->next_heap;
    }
    /* ntdll never destroys the process heap (fact 4). */
    if (!x || x == r->process_heap) {
        pthread_mutex_unlock(&registry_lock);
        return _pa_heap_fail(STATUS_INVALID_HANDLE);
    }
    if (prev) prev->next_heap = h->next_heap;
    else r->first = h->next_heap;
    if (r->last == h) r->last = prev;
    r->count--;
    atomic_fetch_add_explicit(&heap_epoch, 1, memory_order_acq_rel);
    pthread_mutex_unlock(&registry_lock);
    destroy_heap_memory(h);
    return TRUE;
}

BOOL pa_heap_destroy(pa_process_t *p, HANDLE heap)
{
    BOOL ok = destroy_heap(p, heap);
    if (p) _pa_heap_trace(p, PA_OP_HEAP_DESTROY, heap, 0, 0, heap, ok);
    return ok;
}

/* fork: the registry lock, then each heap's lock and its buckets, in registry order. */
static void heap_lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
}

static void heap_fork_each(int phase)
{
    for (int i = 0; i < nprocs; i++) {
        for (pa_heap_t *h = procs[i].p ? procs[i].first : NULL; h; h = h->next_heap) {
            if (phase == 0) pthread_mutex_lock(&h->lock);
            _pa_lfh_fork(h, phase);
            if (phase == 1) pthread_mutex_unlock(&h->lock);
            else if (phase == 2) heap_lock_init(&h->lock);
        }
    }
}

void pa_heap_fork_prepare(void)
{
    pthread_mutex_lock(&registry_lock);
    heap_fork_each(0);
}

void pa_heap_fork_parent(void)
{
    heap_fork_each(1);
    pthread_mutex_unlock(&registry_lock);
}

void pa_heap_fork_child(void)
{
    heap_fork_each(2);
    pthread_mutex_init(&registry_lock, NULL);
}

void pa_heap_process_detach(pa_process_t *p)
{
    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = rec_find_locked(p, 0);
    pa_heap_t *list = r ? r->first : NULL;
    if (r) memset(r, 0, sizeof *r);
    atomic_fetch_add_explicit(&heap_epoch, 1, memory_order_acq_rel);
    pthread_mutex_unlock(&registry_lock);
    while (list) {
        pa_heap_t *next = list->next_heap;
        destroy_heap_memory(list);
        list = next;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* HeapAlloc, HeapFree, HeapSize                                                               */

static void validate_all_or_note(pa_heap_t *h)
{
    if (h->debug & PA_HEAP_DEBUG_VALIDATE_ALL) {
        DWORD saved = pa_get_last_error();
        (void)_pa_heap_validate_locked(h);
        pa_set_last_error(saved);
    }
}

static LPVOID alloc_untraced(pa_process_t *p, HANDLE heap, DWORD flags, SIZE_T n)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return NULL;
    pa_heap_t *h = e->heap;
    if (n <= PA_LFH_MAX_REQUEST) {
        unsigned b = _pa_lfh_bucket(n);
        if (h->lfh_on[b]) {
            if (!e->tc && _pa_lfh_ensure(h)) tls_claim_cache(e);
            void *r = _pa_lfh_alloc(h, e->tc, b, n, flags);
            if (r == PA_LFH_CORRUPT) return corrupt_fail(), NULL;
            if (r) return r;
        }
    }
    int medium = n > PA_LA_MIN && n <= PA_LA_MAX;
    if (medium && !e->tc && !e->no_cache && __atomic_load_n(&h->la_uses, __ATOMIC_RELAXED) >= PA_LFH_ACTIVATE &&
        lfh_eligible(h) && _pa_lfh_ensure(h))
        tls_claim_cache(e);
    int bins = medium && e->tc && !atomic_load_explicit(&h->user_locks, memory_order_acquire);
    if (bins) {
        corrupt_seen = 0;
        void *r = mc_take(h, e->tc, flags, n);
        if (r || corrupt_seen) return r;
    }
    int locked = _pa_heap_enter(h, flags);
    validate_all_or_note(h);
    corrupt_seen = 0;
    void *r = alloc_locked(h, flags, n);
    if (r && bins) mc_refill_locked(h, e->tc, la_class(n));
    _pa_heap_leave(h, locked);
    if (!r && !corrupt_seen) _pa_heap_fail(STATUS_NO_MEMORY);
    return r;
}

/* The thread's cached handle if it has a cache whose lookaside bins may be used now (no
 * HeapLock held), else NULL. */
static inline tls_ent_t *tls_cached(pa_process_t *p, HANDLE heap)
{
    tls_ent_t *e = &tls_ents[0];
    return e->heap == heap && e->p == p && e->tc &&
                   e->epoch == atomic_load_explicit(&heap_epoch, memory_order_acquire) &&
                   !atomic_load_explicit(&e->heap->user_locks, memory_order_acquire)
               ? e
               : NULL;
}

/* Is the thread's cached handle (the first entry) fast for (p, heap): an LFH cache, no
 * tracing, the entry current? */
static inline __attribute__((always_inline)) int tls_fast(const tls_ent_t *e, pa_process_t *p, HANDLE heap)
{
    return e->heap == heap && e->p == p && e->fast == atomic_load_explicit(&heap_epoch, memory_order_relaxed);
}

static __attribute__((noinline)) LPVOID alloc_slow(pa_process_t *p, HANDLE heap, DWORD flags, SIZE_T n)
{
    tls_ent_t *e;
    void *r;
    if (n - (PA_LA_MIN + 1) < PA_LA_MAX - PA_LA_MIN && (e = tls_cached(p, heap))) {
        corrupt_seen = 0;
        r = mc_take(e->heap, e->tc, flags, n);
        if (r || corrupt_seen) goto out;
    }
    r = alloc_untraced(p, heap, flags, n);
out:
    if (p) _pa_heap_trace(p, PA_OP_HEAP_ALLOC, r, n, flags, heap, r != NULL);
    return r;
}

/* A 16-64 KiB request of a thread whose cached handle is fast (pa_heap_alloc checked it: an
 * LFH cache, no tracing): its lookaside bin, else the locked path. */
static __attribute__((noinline)) LPVOID alloc_medium(tls_ent_t *e, DWORD flags, SIZE_T n)
{
    pa_heap_t *h = e->heap;
    if (!atomic_load_explicit(&h->user_locks, memory_order_acquire)) {
        corrupt_seen = 0;
        void *r = mc_take(h, e->tc, flags, n);
        if (r || corrupt_seen) return r;
    }
    pa_process_t *p = e->p;
    HANDLE heap = h;
    void *r = alloc_untraced(p, heap, flags, n);
    _pa_heap_trace(p, PA_OP_HEAP_ALLOC, r, n, flags, heap, r != NULL);
    return r;
}

/* The fast path, written so that it needs no stack frame (everything else is a tail call):
 * the thread's cached handle (the first entry of its cache, fast: it has an LFH cache and
 * its process does not trace) and a non-empty bin of that cache whose head's link passes its
 * check (else alloc_slow finds it again and reports the corruption). A bin only ever holds
 * slots of active buckets, so no other check is needed. */
LPVOID pa_heap_alloc(pa_process_t *p, HANDLE heap, DWORD flags, SIZE_T n)
{
    tls_ent_t *e = &tls_ents[0];
    /* tls_fast's test written out: through the helper gcc allocates this function's registers
     * worse (one more instruction per call, callgrind). */
    if (PA_LIKELY(e->heap == heap && e->p == p &&
                  e->fast == atomic_load_explicit(&heap_epoch, memory_order_relaxed))) {
        if (PA_LIKELY(n <= PA_LFH_MAX_REQUEST && !(flags & HEAP_ZERO_MEMORY))) {
            pa_lfh_tcache_t *tc = e->tc;
            unsigned k = _pa_lfh_bucket(n);
            pa_block_t *b = tc->bin[k].head;
            if (PA_LIKELY(b != NULL)) {
                int ok;
                pa_block_t *next = _pa_lfh_next(b, &ok);
                if (PA_LIKELY(ok)) {
                    tc->bin[k].head = next;
                    tc->bin[k].room++;
                    b->prev_size = (uint32_t)n;
                    b->flags = PA_BLK_BUSY | PA_BLK_LFH;
                    return b + 1;
                }
            }
        } else if (n - (PA_LA_MIN + 1) < PA_LA_MAX - PA_LA_MIN) {
            return alloc_medium(e, flags, n);
        }
    }
    return alloc_slow(p, heap, flags, n);
}

static BOOL free_untraced(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    if (!mem) return TRUE;
    pa_heap_t *h = e->heap;
    /* A thread that only frees (what another allocates) gets a cache too, once the heap has
     * an LFH: its frees then go to its bins, and on to the remote lists, without the lock.
     * One that found them all taken asks again once a thread has given one back. */
    pa_lfh_t *L = __atomic_load_n(&h->lfh, __ATOMIC_ACQUIRE);
    if (!e->tc && L &&
        (!e->no_cache || atomic_load_explicit(&L->claimed, memory_order_relaxed) <
                             atomic_load_explicit(&L->ncaches, memory_order_relaxed)))
        tls_claim_cache(e);
    if (e->tc) {
        /* An LFH block needs no lock (the lookup reads only validated memory). */
        pa_block_t *hdr;
        int r = _pa_lfh_lookup(h, e->tc, mem, &hdr);
        if (r == PA_LFH_BUSY) return _pa_lfh_free_fast(h, e->tc, hdr) ? TRUE : corrupt_fail();
        if (r == PA_LFH_BAD) return _pa_heap_fail(STATUS_INVALID_PARAMETER);
        if (!atomic_load_explicit(&h->user_locks, memory_order_acquire) && mc_put(h, e->tc, mem)) return TRUE;
    }
    int locked = _pa_heap_enter(h, flags);
    validate_all_or_note(h);
    found_t f;
    BOOL ok;
    int kind = classify_locked(h, e->tc, mem, &f);
    if (kind < K_BACKEND) ok = fail_kind(kind);
    else ok = free_found_locked(h, e->tc, &f);
    _pa_heap_leave(h, locked);
    return ok;
}

static __attribute__((noinline)) BOOL free_slow(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem)
{
    tls_ent_t *e = tls_cached(p, heap);
    BOOL ok = (e && mc_put(e->heap, e->tc, mem)) || free_untraced(p, heap, flags, mem);
    if (p) _pa_heap_trace(p, PA_OP_HEAP_FREE, mem, 0, flags, heap, ok);
    return ok;
}

/* A free that the fast path could not vouch for, by a thread whose cached handle is fast
 * (pa_heap_free checked it, as pa_heap_alloc does for alloc_medium): a 16-64 KiB block onto
 * its lookaside bin, anything else the locked path. */
static __attribute__((noinline)) BOOL free_medium(tls_ent_t *e, DWORD flags, LPVOID mem)
{
    pa_heap_t *h = e->heap;
    if (!atomic_load_explicit(&h->user_locks, memory_order_acquire) && mc_put(h, e->tc, mem)) return TRUE;
    pa_process_t *p = e->p;
    BOOL ok = free_untraced(p, h, flags, mem);
    _pa_heap_trace(p, PA_OP_HEAP_FREE, mem, 0, flags, h, ok);
    return ok;
}

/* After a fast-path free of mem (now a free slot on the bin of the thread's cache): flushes
 * the full bin. Takes only the entry point's arguments, so that the fast path keeps few
 * values live. */
static __attribute__((noinline)) BOOL free_fast_tail(pa_process_t *p, HANDLE heap, DWORD flags,
                                                     LPVOID mem)
{
    pa_lfh_tcache_t *tc = tls_ents[0].tc;
    unsigned k = ((pa_block_t *)mem - 1)->bucket; /* not checked by the fast path: bound it */
    BOOL ok = TRUE;
    if (k < PA_LFH_BUCKETS && tc->bin[k].room < 0 && !_pa_lfh_flush(tc->heap, tc, k))
        ok = corrupt_fail();
    _pa_heap_trace(p, PA_OP_HEAP_FREE, mem, 0, flags, heap, ok);
    return ok;
}

/* The busy LFH slot at user address a, if the fast paths can vouch for it without the lock:
 * a slot of one of the two LFH segments the thread freed into last, checked by position
 * against its bucket's geometry, which the segment map gives (_pa_lfh_lookup's checks, with
 * the geometry copied into the bin; the subsegment header is not read); NULL otherwise. *kp
 * gets its bucket. */
static inline __attribute__((always_inline)) pa_block_t *fast_busy_slot(pa_lfh_tcache_t *tc, uintptr_t a,
                                                                      unsigned *kp)
{
    const pa_lfh_seg_t *s = tc->last_seg;
    size_t off = a - s->base;
    if (PA_UNLIKELY(off >= s->size)) { /* the other one, which then comes first */
        s = tc->prev_seg;
        off = a - s->base;
        if (off < s->size) {
            tc->prev_seg = tc->last_seg;
            tc->last_seg = (pa_lfh_seg_t *)s;
        }
    }
    if (PA_LIKELY(off < s->size && !(a & (PA_HEAP_UNIT - 1)))) {
        /* d16 = _pa_lfh_slot_offset(off, o) / 16 with o + 1 = m & 15 in size_t, with no
         * separate check of the map value: for a chunk without slots (0, or the header)
         * o + 1 is 0 (d wraps) or 15 and k is 0, so d16 >= span16; a legal map never has
         * o > chunk index, nor k >= 128 (heap_internal.h). */
        unsigned m = __atomic_load_n(&s->map[off / PA_LFH_CHUNK], __ATOMIC_RELAXED);
        unsigned k = _pa_lfh_map_bucket(m);
        pa_block_t *b = (pa_block_t *)(a - PA_HEAP_UNIT);
        size_t d16 = ((off & (PA_LFH_CHUNK - 1)) + (size_t)(m & 15u) * PA_LFH_CHUNK - PA_LFH_CHUNK -
                      PA_LFH_SUB_HDR - PA_HEAP_UNIT) / 16;
        if (PA_LIKELY(d16 < tc->bin[k].span16 && (size_t)b->size * tc->bin[k].slot16 == d16 &&
                      b->flags == (PA_BLK_BUSY | PA_BLK_LFH))) {
            *kp = k;
            return b;
        }
    }
    return NULL;
}

/* The fast path (no stack frame, like pa_heap_alloc): a slot fast_busy_slot vouches for,
 * pushed onto the thread's bin with its link's check value. */
BOOL pa_heap_free(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem)
{
    tls_ent_t *e = &tls_ents[0];
    if (PA_LIKELY(tls_fast(e, p, heap))) {
        pa_lfh_tcache_t *tc = e->tc;
        unsigned k;
        pa_block_t *b = fast_busy_slot(tc, (uintptr_t)mem, &k);
        if (PA_LIKELY(b != NULL)) {
            b->flags = PA_BLK_LFH;
            _pa_lfh_link(b, tc->bin[k].head);
            tc->bin[k].head = b;
            if (PA_UNLIKELY(--tc->bin[k].room < 0)) return free_fast_tail(p, heap, flags, mem);
            return TRUE;
        }
        return free_medium(e, flags, mem);
    }
    return free_slow(p, heap, flags, mem);
}

SIZE_T pa_heap_size(pa_process_t *p, HANDLE heap, DWORD flags, LPCVOID mem)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return (SIZE_T)-1;
    pa_heap_t *h = e->heap;
    if (e->tc && mem) {
        /* Without the lock, like HeapFree: an LFH slot, or a busy back-end block of a size
         * that the thread bins serve. */
        pa_block_t *b;
        int r = _pa_lfh_lookup(h, e->tc, mem, &b);
        if (r == PA_LFH_BUSY) return b->prev_size;
        if (r == PA_LFH_BAD) return _pa_heap_fail(STATUS_INVALID_PARAMETER), (SIZE_T)-1;
        if ((b = mc_block_of(h, e->tc, (uintptr_t)mem, PA_BLK_BUSY)) != NULL) {
            pa_block_t v = blk_snapshot(b);
            return (size_t)v.size * U - U - v.extra;
        }
    }
    int locked = _pa_heap_enter(h, flags);
    validate_all_or_note(h);
    found_t f;
    size_t n = (size_t)-1;
    int kind = mem ? classify_locked(h, e->tc, mem, &f) : K_BAD;
    if (kind < K_BACKEND) fail_kind(kind);
    else n = found_size(&f);
    _pa_heap_leave(h, locked);
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* HeapReAlloc                                                                                 */

/* Resizes back-end block b of s in place to `units` granules; returns 0 when it cannot, -1
 * (after corrupt_fail, nothing changed) when the free block after it is corrupted. */
static int backend_resize_locked(pa_heap_t *h, pa_segment_t *s, pa_block_t *b, size_t units)
{
    if (units * U >= PA_HEAP_LARGE_THRESHOLD) return 0; /* fact 34 */
    size_t have = b->size;
    pa_block_t *next = blk_next(b);
    if (!(next->flags & PA_BLK_BUSY) && !fl_entry_ok_in(h, s, next)) return corrupt_fail(), -1;
    if (units > have) {
        size_t avail = have + (!(next->flags & PA_BLK_BUSY) ? next->size : 0);
        if (avail < units) {
            /* At the segment's end: commit more and retry. */
            pa_block_t *after = !(next->flags & PA_BLK_BUSY) ? blk_next(next) : next;
            if (!(after->flags & PA_BLK_END)) return 0;
            int r = seg_extend(h, s, (units - avail) * U + U);
            if (r <= 0) return r;
            next = blk_next(b);
            avail = have + (!(next->flags & PA_BLK_BUSY) ? next->size : 0);
            if (avail < units) return 0;
        }
        int next_free = !(next->flags & PA_BLK_BUSY);
        if (next_free) fl_remove(h, next);
        if (avail - units >= 2) {
            b->size = (uint32_t)units;
            pa_block_t *rest = blk_next(b);
            /* (rest lies past next's start: past its pa_free_t, inside next's fill) */
            make_free_part(h, rest, (uint32_t)(avail - units), (uint32_t)units, NULL,
                           next_free && fill_start(next) ? (char *)rest + sizeof(pa_free_t) : NULL);
        } else {
            b->size = (uint32_t)avail;
            blk_next(b)->prev_size = b->size;
        }
        return 1;
    }
    if (have - units >= 2) {
        b->size = (uint32_t)units;
        pa_block_t *rest = blk_next(b);
        size_t rest_units = have - units;
        char *filled = NULL;
        if (!(next->flags & PA_BLK_BUSY) && !(h->flags & HEAP_DISABLE_COALESCE_ON_FREE)) {
            fl_remove(h, next);
            rest_units += next->size;
            filled = fill_start(next);
        }
        make_free_part(h, rest, (uint32_t)rest_units, (uint32_t)units, NULL, filled);
    }
    return 1;
}

/* Fact 35: an LFH block of `old` requested bytes is resized in place to n only when it
 * shrinks within the same 16-byte rounding. */
static inline int lfh_resizes_in_place(size_t old, size_t n)
{
    return n < old && _pa_align_up(n ? n : 1, U) == _pa_align_up(old, U);
}

/* The moving half of a HeapReAlloc: the old contents into the new block, and with
 * HEAP_ZERO_MEMORY zeros after them when it grew. */
static void realloc_move(void *nu, const void *user, size_t old, size_t n, DWORD flags)
{
    size_t len = old < n ? old : n;
    /* The length hidden from the compiler: knowing it small (the fast path's blocks are at
     * most 512 bytes), GCC inlined the copy as `rep movsq`, whose start-up cost was a quarter
     * of the fast HeapReAlloc's time under sqlite3; libc's memcpy copies such blocks with a
     * few vector moves. */
    __asm__("" : "+r"(len));
    memcpy(nu, user, len);
    if (n > old && (flags & HEAP_ZERO_MEMORY)) memset((char *)nu + old, 0, n - old);
}

/* A moving HeapReAlloc of a large block of at least this many bytes moves its pages. */
#define LARGE_MOVE_MIN ((size_t)256 << 10)

/* Moves the contents of large block `from` (old bytes) into `to`, a new large block of n > old
 * bytes that reads as zero: the pages after the header page by layer 1 (the host moves the
 * mappings: nothing is copied, `to` takes no page faults for them, and `from` reads as zero
 * after, as the cache needs it), the header page's user bytes with memcpy (both blocks have
 * the same layout, so the offsets match). glibc's realloc moves big blocks with mremap too.
 * 0 when it does not apply or layer 1 refuses (a Python buffer exports the block, say): the
 * caller copies. */
static int large_move(pa_heap_t *h, void *to, void *from, size_t old, size_t n, DWORD flags)
{
    pa_large_t *t = large_of(to);
    if (old < LARGE_MOVE_MIN || n <= old || h->debug || ((uintptr_t)t & (PA_GRANULARITY - 1)) ||
        t->hdr.size != PA_LARGE_MAGIC || t->hdr.flags != LARGE_BUSY || t->heap != h)
        return 0;
    size_t head = PA_PAGE_SIZE - sizeof(pa_large_t); /* user bytes in the header page */
    size_t span = _pa_align_up(sizeof(pa_large_t) + old, PA_PAGE_SIZE) - PA_PAGE_SIZE;
    if (pa_mm_move_pages(h->process, (char *)to + head, (char *)from + head, span) != STATUS_SUCCESS) return 0;
    memcpy(to, from, head);
    if (flags & HEAP_ZERO_MEMORY) { /* the moved pages' bytes after old; the rest reads as zero */
        size_t end = head + span < n ? head + span : n;
        memset((char *)to + old, 0, end - old);
    }
    return 1;
}

/* The new block of a HeapReAlloc that grows to n bytes by moving: a large block gets room for
 * its next growths in place, half as much again committed at its end (fact 33: in place
 * within the commit; pages not written cost no memory; a grow in place keeps the rest of the
 * room), so that a buffer grown step by step moves once in a few steps, not at every one
 * (glibc's realloc grows big blocks by mremap, in place when it can). Back-end blocks get no
 * room: free space kept after each growing block took bench_preload's realloc workload from
 * 32 to 42 MB of peak RSS. */
static void *alloc_grown_locked(pa_heap_t *h, DWORD flags, size_t n)
{
    if (h->debug || h->maximum || n > PA_HEAP_MAX_REQUEST / 2 || units_for(h, n) * U < PA_HEAP_LARGE_THRESHOLD)
        return alloc_locked(h, flags, n);
    return large_alloc_locked(h, flags, n, n + n / 2);
}

static LPVOID realloc_found_locked(pa_heap_t *h, pa_lfh_tcache_t *tc, found_t *f, DWORD flags,
                                   size_t n)
{
    size_t old = found_size(f);
    void *user = f->kind == K_PAGE ? (void *)f->page->user
                 : f->kind == K_LARGE ? (void *)(f->large + 1) : blk_user(f->blk);
    int in_place = 0;
    switch (f->kind) {
    case K_BACKEND: {
        if ((h->debug & PA_HEAP_DEBUG_TAIL_CHECK) && !_pa_heap_tail_ok(user, old))
            return _pa_heap_fail(STATUS_HEAP_CORRUPTION), NULL;
        size_t units = units_for(h, n);
        int r = backend_resize_locked(h, f->seg, f->blk, units);
        if (r < 0) return NULL;
        if (r) {
            f->blk->extra = (uint32_t)((size_t)f->blk->size * U - U - n);
            f->blk->tag = _pa_blk_tag(h, f->blk);
            h->ctr.busy_bytes += n - old;
            in_place = 1;
        }
        break;
    }
    case K_LFH:
        /* (pa_heap_stats reads an LFH block's size from its header.) */
        if (lfh_resizes_in_place(old, n)) {
            f->blk->prev_size = (uint32_t)n;
            in_place = 1;
        }
        break;
    case K_LARGE: {
        pa_large_t *l = f->large;
        size_t need = _pa_align_up(sizeof(pa_large_t) + n, PA_PAGE_SIZE);
        if (need <= l->committed) {
            /* A shrink gives up the pages after the new end: a later grow in place fails
             * (fact 33). A grow keeps what is left of its commit for the next one. */
            if (n < old && need < l->committed && decommit(h, (uintptr_t)l + need, l->committed - need))
                l->committed = need;
            h->ctr.busy_bytes += n - old;
            h->ctr.large_bytes += n - old;
            l->requested = n;
            in_place = 1;
        }
        break;
    }
    case K_PAGE: break;
    }
    if (in_place) {
        if (n > old) {
            if (flags & HEAP_ZERO_MEMORY) memset((char *)user + old, 0, n - old);
            else if (h->debug & PA_HEAP_DEBUG_FREE_CHECK) _pa_heap_fill_new(h, (char *)user + old, n - old, n - old);
        }
        if (f->kind == K_BACKEND && (h->debug & PA_HEAP_DEBUG_TAIL_CHECK)) _pa_heap_fill_tail(user, n);
        return user;
    }
    if (flags & HEAP_REALLOC_IN_PLACE_ONLY) return _pa_heap_fail(STATUS_NO_MEMORY), NULL;
    /* The thread's lookaside bins first: a program that grows buffers with realloc and frees
     * them when done would otherwise fill its bins with blocks that only HeapAlloc reuses. */
    void *nu = tc && n > PA_LA_MIN && n <= PA_LA_MAX ? mc_take(h, tc, flags & ~(DWORD)HEAP_ZERO_MEMORY, n) : NULL;
    if (!nu && !corrupt_seen)
        nu = n > old ? alloc_grown_locked(h, flags & ~(DWORD)HEAP_ZERO_MEMORY, n)
                     : alloc_locked(h, flags & ~(DWORD)HEAP_ZERO_MEMORY, n);
    if (!nu) return corrupt_seen ? NULL : (_pa_heap_fail(STATUS_NO_MEMORY), NULL);
    if (f->kind == K_LARGE && large_move(h, nu, user, old, n, flags)) {
        large_free_locked(h, f->large, 0); /* only its header page's bytes were not moved */
        return nu;
    }
    realloc_move(nu, user, old, n, flags);
    free_found_locked(h, tc, f);
    return nu;
}

/* HeapReAlloc of an LFH block to n <= PA_LFH_REALLOC_MAX bytes in an active bucket, without
 * the heap lock: in place when it may (fact 35), else a new LFH block, the copy, and the
 * free of the old one. NULL when that does not apply (the caller takes the locked path),
 * PA_LFH_CORRUPT after a reported failure. */
static void *realloc_lfh(tls_ent_t *e, DWORD flags, void *mem, size_t n)
{
    pa_heap_t *h = e->heap;
    unsigned k = _pa_lfh_bucket(n);
    if (!__atomic_load_n(&h->lfh_on[k], __ATOMIC_ACQUIRE)) return NULL;
    pa_block_t *hdr;
    int r = _pa_lfh_lookup(h, e->tc, mem, &hdr);
    if (r == PA_LFH_NOT_MINE) return NULL;
    if (r == PA_LFH_BAD) return _pa_heap_fail(STATUS_INVALID_PARAMETER), PA_LFH_CORRUPT;
    size_t old = hdr->prev_size;
    if (lfh_resizes_in_place(old, n)) {
        hdr->prev_size = (uint32_t)n;
        return mem;
    }
    void *nu = _pa_lfh_alloc(h, e->tc, k, n, flags & ~(DWORD)HEAP_ZERO_MEMORY);
    if (nu == PA_LFH_CORRUPT) return corrupt_fail(), PA_LFH_CORRUPT;
    if (!nu) return NULL;
    realloc_move(nu, mem, old, n, flags);
    /* A flush that finds a corrupted link frees the old block all the same: the move stands
     * and the corruption is reported. */
    if (!_pa_lfh_free_fast(h, e->tc, hdr)) corrupt_fail();
    return nu;
}

static LPVOID heap_realloc(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem, SIZE_T n)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return NULL;
    if (!mem) {
        pa_set_last_error(ERROR_SUCCESS); /* fact 30 */
        return NULL;
    }
    pa_heap_t *h = e->heap;
    if (n > PA_HEAP_MAX_REQUEST) return _pa_heap_fail(STATUS_NO_MEMORY), NULL; /* fact 11 */
    if (e->tc && n <= PA_LFH_REALLOC_MAX && !(flags & HEAP_REALLOC_IN_PLACE_ONLY)) {
        void *r = realloc_lfh(e, flags, mem, n);
        if (r) return r == PA_LFH_CORRUPT ? NULL : r;
    }
    /* A back-end block resized to a size that an active LFH bucket serves, without growing,
     * moves into a slot of that bucket (taken here: the LFH may take the heap lock to grow).
     * Such a block was allocated before its bucket was active, and every later HeapReAlloc
     * of it would take the lock: sqlite3 reallocs two such 24-byte blocks to the same size
     * 100,000 times, about 30 ns each against the fast path's 8. The slot goes back if
     * unused. */
    void *slot = NULL;
    if (e->tc && !h->debug && n - 1 < PA_LFH_REALLOC_MAX && !(flags & HEAP_REALLOC_IN_PLACE_ONLY)) {
        unsigned k = _pa_lfh_bucket(n);
        if (__atomic_load_n(&h->lfh_on[k], __ATOMIC_ACQUIRE)) slot = _pa_lfh_alloc_fast(e->tc, k, n, 0);
        if (slot == PA_LFH_CORRUPT) return corrupt_fail(), NULL; /* as realloc_lfh */
    }
    int locked = _pa_heap_enter(h, flags);
    validate_all_or_note(h);
    corrupt_seen = 0;
    found_t f;
    void *r = NULL;
    /* A block that must grow by moving gets its new block from the back end, under the lock
     * (as it always did here): moving into the LFH was tried, and programs that grow many
     * buffers step by step (bench_preload's realloc workload) then left a partly used
     * subsegment in every bucket on the way, +10 MB of peak RSS over 33 MB. */
    int kind = classify_locked(h, e->tc, mem, &f);
    if (kind < K_BACKEND) {
        fail_kind(kind);
    } else if (slot && kind == K_BACKEND && n <= found_size(&f)) {
        realloc_move(slot, blk_user(f.blk), n, n, 0); /* (n <= old: n bytes move) */
        if (free_found_locked(h, e->tc, &f)) r = slot;
    } else {
        r = realloc_found_locked(h, e->tc, &f, flags, n);
    }
    _pa_heap_leave(h, locked);
    /* (Just popped, so the push cannot overflow the bin and flush.) */
    if (slot && r != slot) _pa_lfh_free_fast(h, e->tc, (pa_block_t *)slot - 1);
    return r;
}

/* Traced as address = the old block, size = the new size, result = the new block (0). */
static __attribute__((noinline)) LPVOID realloc_slow(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem,
                                                     SIZE_T n)
{
    void *r = heap_realloc(p, heap, flags, mem, n);
    if (p) _pa_heap_trace(p, PA_OP_HEAP_REALLOC, mem, n, flags, heap, (int64_t)(uintptr_t)r);
    return r;
}

/* The fast path, like pa_heap_alloc's and pa_heap_free's: an LFH slot that fast_busy_slot
 * vouches for, resized to at most PA_LFH_REALLOC_MAX bytes (no flags that change the
 * result), either in place (fact 35) or moved into the head slot of the new size's bin
 * (bins hold only slots of active buckets, so this is where realloc_lfh would move it).
 * Anything else, including an empty bin, takes realloc_slow. */
LPVOID pa_heap_realloc(pa_process_t *p, HANDLE heap, DWORD flags, LPVOID mem, SIZE_T n)
{
    tls_ent_t *e = &tls_ents[0];
    if (PA_LIKELY(tls_fast(e, p, heap) && n - 1 < PA_LFH_REALLOC_MAX &&
                  !(flags & (HEAP_ZERO_MEMORY | HEAP_REALLOC_IN_PLACE_ONLY)))) {
        pa_lfh_tcache_t *tc = e->tc;
        unsigned k;
        pa_block_t *b = fast_busy_slot(tc, (uintptr_t)mem, &k);
        if (PA_LIKELY(b != NULL)) {
            size_t old = b->prev_size;
            if (lfh_resizes_in_place(old, n)) {
                b->prev_size = (uint32_t)n;
                return mem;
            }
            void *nu = _pa_lfh_alloc_fast(tc, _pa_lfh_bucket(n), n, 0);
            if (nu == PA_LFH_CORRUPT) return corrupt_fail(), NULL; /* as realloc_lfh */
            if (PA_LIKELY(nu != NULL)) {
                realloc_move(nu, mem, old, n, 0);
                /* A flush that finds a corrupted link frees the old block all the same: the
                 * move stands and the corruption is reported (as realloc_lfh does). */
                if (PA_UNLIKELY(!_pa_lfh_free_fast(tc->heap, tc, b))) corrupt_fail();
                return nu;
            }
        }
    }
    return realloc_slow(p, heap, flags, mem, n);
}

/* ------------------------------------------------------------------------------------------ */
/* HeapValidate                                                                                */

static int validate_backend_seg_locked(pa_heap_t *h, pa_segment_t *s, size_t *nfree)
{
    pa_block_t *b = (pa_block_t *)s->first;
    uint32_t prev = 0;
    int prev_free = 0;
    while (!(b->flags & PA_BLK_END)) {
        if (b->prev_size != prev || !backend_block_ok(h, s, b)) return 0;
        if (b->flags & PA_BLK_BUSY) {
            if ((h->debug & PA_HEAP_DEBUG_TAIL_CHECK) && !_pa_heap_tail_ok(blk_user(b), blk_requested(b)))
                return 0;
            prev_free = 0;
        } else {
            if (prev_free && !(h->flags & HEAP_DISABLE_COALESCE_ON_FREE)) return 0;
            if ((b->flags & PA_BLK_FILLED) &&
                !_pa_heap_free_fill_ok((char *)b + sizeof(pa_free_t), (size_t)b->size * U - sizeof(pa_free_t)))
                return 0;
            prev_free = 1;
            (*nfree)++;
        }
        prev = b->size;
        b = blk_next(b);
        if ((uintptr_t)b >= s->commit_end) return 0;
    }
    return (uintptr_t)b == s->commit_end - U && b->prev_size == prev && b->tag == _pa_blk_tag(h, b);
}

/* Are the lists of large blocks (live and cached) intact: every block checked by
 * large_ok_plocked before it is read, back links right, lengths as counted? */
static int large_lists_ok_locked(pa_heap_t *h)
{
    int bad = 0;
    size_t n = 0, nc = 0;
    _pa_lock(h->process);
    for (pa_large_t *l = large_first_plocked(h, h->large, LARGE_BUSY, &bad); l && !bad;
         l = large_next_plocked(h, l, LARGE_BUSY, &bad))
        if (++n > h->ctr.large_blocks) bad = 1;
    for (pa_large_t *l = large_first_plocked(h, h->large_cache, LARGE_CACHED, &bad); l && !bad;
         l = large_next_plocked(h, l, LARGE_CACHED, &bad))
        if (++nc > h->ctr.cached_large) bad = 1;
    _pa_unlock(h->process);
    return !bad && n == h->ctr.large_blocks && nc == h->ctr.cached_large;
}

int _pa_heap_validate_locked(pa_heap_t *h)
{
    if (h->signature != PA_HEAP_SIGNATURE || h->magic != PA_HEAP_MAGIC || h->self != h) return 0;
    size_t nfree = 0, listed = 0;
    for (unsigned i = 0; i < h->nsegs; i++) {
        pa_segment_t *s = seg_at(h, i);
        if (s->kind == PA_SEG_BACKEND && !validate_backend_seg_locked(h, s, &nfree)) return 0;
    }
    for (unsigned c = 0; c < PA_FREE_CLASSES; c++) {
        pa_free_t *prev = NULL;
        for (pa_free_t *f = h->free[c]; f; prev = f, f = f->next) {
            if (!fl_ptr_ok(h, f, NULL) || f->prev != prev || (f->hdr.flags & PA_BLK_BUSY) ||
                _pa_free_class(f->hdr.size) != c || f->hdr.tag != _pa_blk_tag(h, &f->hdr))
                return 0;
            if (++listed > nfree) return 0;
        }
    }
    if (listed != nfree || nfree != h->ctr.free_blocks) return 0;
    if (!large_lists_ok_locked(h)) return 0;
    if (!_pa_lfh_validate_locked(h)) return 0;
    if ((h->debug & PA_HEAP_DEBUG_PAGE_HEAP) && !_pa_pageheap_validate_locked(h, NULL)) return 0;
    return 1;
}

BOOL pa_heap_validate(pa_process_t *p, HANDLE heap, DWORD flags, LPCVOID mem)
{
    DWORD saved = pa_get_last_error();
    pa_heap_t *h = _pa_heap_from_handle(p, heap);
    BOOL ok = FALSE;
    if (h) {
        tls_ent_t *e = tls_lookup(p, heap);
        int locked = _pa_heap_enter(h, flags);
        if (!mem) {
            ok = _pa_heap_validate_locked(h) && _pa_lfh_validate_tcache(h, e ? e->tc : NULL) &&
                 mc_validate(h, e ? e->tc : NULL);
        } else {
            found_t f;
            switch (classify_locked(h, e ? e->tc : NULL, mem, &f)) {
            case K_BACKEND:
                ok = !(h->debug & PA_HEAP_DEBUG_TAIL_CHECK) ||
                     _pa_heap_tail_ok(blk_user(f.blk), blk_requested(f.blk));
                break;
            case K_LFH:
            case K_LARGE: ok = TRUE; break;
            case K_PAGE: ok = _pa_pageheap_validate_locked(h, f.page); break;
            default: ok = FALSE;
            }
        }
        _pa_heap_leave(h, locked);
    }
    pa_set_last_error(saved); /* fact 36: never touches the last error */
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* HeapCompact, HeapLock, information classes, statistics                                      */

/* (Stops at a link that leaves the heap's segments, and after free_blocks entries.) */
static size_t largest_free_locked(const pa_heap_t *h)
{
    for (unsigned c = PA_FREE_CLASSES; c-- > 0;) {
        size_t best = 0, budget = h->ctr.free_blocks;
        for (pa_free_t *f = h->free[c]; f && budget-- && fl_ptr_ok(h, f, NULL); f = f->next)
            if (f->hdr.size > best) best = f->hdr.size;
        if (best) return best * U - U;
    }
    return 0;
}

static SIZE_T heap_compact(pa_process_t *p, HANDLE heap, DWORD flags)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return 0;
    pa_heap_t *h = e->heap;
    int locked = _pa_heap_enter(h, flags);
    la_flush_locked(h);
    mc_flush_locked(h, e->tc);
    mc_drain_orphans_locked(h);
    if (h->flags & HEAP_DISABLE_COALESCE_ON_FREE) {
        /* Merge runs of free blocks now. */
        for (unsigned i = 0; i < h->nsegs; i++) {
            pa_segment_t *s = seg_at(h, i);
            if (s->kind != PA_SEG_BACKEND) continue;
            for (pa_block_t *b = (pa_block_t *)s->first; b && !(b->flags & PA_BLK_END); b = blk_next_in(s, b)) {
                if (b->flags & PA_BLK_BUSY) continue;
                pa_block_t *n = blk_next_in(s, b);
                if (!n || (n->flags & PA_BLK_BUSY)) continue;
                if (!fl_entry_ok(h, b)) break;
                fl_remove(h, b);
                while (!(n->flags & PA_BLK_BUSY) && fl_entry_ok(h, n)) {
                    fl_remove(h, n);
                    b->size += n->size;
                    n = blk_next(b);
                }
                n->prev_size = b->size;
                make_free(h, b, b->size, b->prev_size);
            }
        }
    }
    for (unsigned i = 0; i < h->nsegs; i++) {
        pa_segment_t *s = seg_at(h, i);
        if (s->kind != PA_SEG_BACKEND) continue;
        pa_block_t *last;
        if (seg_last_block(h, s, &last) && last && !(last->flags & PA_BLK_BUSY) && fl_entry_ok(h, last)) {
            unsigned before = h->nsegs;
            seg_trim(h, s, last);
            if (h->nsegs != before) i--;
        }
    }
    large_flush_cache_locked(h);
    _pa_lfh_compact_locked(h);
    size_t largest = largest_free_locked(h);
    _pa_heap_leave(h, locked);
    if (!largest) pa_set_last_error(ERROR_SUCCESS);
    return largest;
}

/* Traced with size = result = the largest free block. */
SIZE_T pa_heap_compact(pa_process_t *p, HANDLE heap, DWORD flags)
{
    SIZE_T n = heap_compact(p, heap, flags);
    if (p) _pa_heap_trace(p, PA_OP_HEAP_COMPACT, heap, n, flags, heap, (int64_t)n);
    return n;
}

BOOL pa_heap_lock(pa_process_t *p, HANDLE heap)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    if (!(e->heap->flags & HEAP_NO_SERIALIZE)) {
        pthread_mutex_lock(&e->heap->lock);
        atomic_fetch_add_explicit(&e->heap->user_locks, 1, memory_order_acq_rel);
    }
    return TRUE;
}

BOOL pa_heap_unlock(pa_process_t *p, HANDLE heap)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    if (!(e->heap->flags & HEAP_NO_SERIALIZE)) {
        if (pthread_mutex_unlock(&e->heap->lock)) return _pa_heap_fail_win32(STATUS_UNSUCCESSFUL, ERROR_NOT_OWNER);
        atomic_fetch_sub_explicit(&e->heap->user_locks, 1, memory_order_acq_rel);
    }
    return TRUE;
}

BOOL pa_heap_set_information(pa_process_t *p, HANDLE heap, HEAP_INFORMATION_CLASS info_class,
                             PVOID info, SIZE_T length)
{
    if (info_class == HeapEnableTerminationOnCorruption) {
        /* Applies to every heap of the process when heap is NULL; cannot be undone. */
        if (!heap) {
            pthread_mutex_lock(&registry_lock);
            proc_rec_t *r = p ? rec_find_locked(p, 1) : NULL;
            if (r) r->terminate_on_corruption = 1;
            for (pa_heap_t *h = r ? r->first : NULL; h; h = h->next_heap) h->terminate_on_corruption = 1;
            pthread_mutex_unlock(&registry_lock);
            return TRUE;
        }
        tls_ent_t *e = tls_validate(p, heap);
        if (!e) return FALSE;
        e->heap->terminate_on_corruption = 1;
        return TRUE;
    }
    if (!heap) return _pa_heap_fail(STATUS_ACCESS_VIOLATION);
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    pa_heap_t *h = e->heap;
    if (info_class == HeapOptimizeResources) return TRUE;
    if (info_class != HeapCompatibilityInformation)
        return _pa_heap_fail_win32(STATUS_INVALID_INFO_CLASS, ERROR_INVALID_PARAMETER);
    if (!info || length < sizeof(ULONG))
        return _pa_heap_fail_win32(STATUS_BUFFER_TOO_SMALL, ERROR_INSUFFICIENT_BUFFER);
    ULONG v;
    memcpy(&v, info, sizeof v);
    pthread_mutex_lock(&h->lock);
    BOOL ok = TRUE;
    if (v == 2) {
        if (h->compat != 2 && !lfh_eligible(h)) ok = _pa_heap_fail(STATUS_INVALID_PARAMETER); /* fact 61 */
        else h->compat = 2;
    } else if (v == 0 || v == 1) {
        if (h->compat == 2) ok = _pa_heap_fail(STATUS_UNSUCCESSFUL); /* LFH cannot be undone */
    } else {
        ok = _pa_heap_fail(STATUS_UNSUCCESSFUL);
    }
    pthread_mutex_unlock(&h->lock);
    return ok;
}

int pa_heap_terminates_on_corruption(pa_process_t *p, HANDLE heap)
{
    pa_heap_t *h = _pa_heap_from_handle(p, heap);
    return h && h->terminate_on_corruption;
}

BOOL pa_heap_query_information(pa_process_t *p, HANDLE heap, HEAP_INFORMATION_CLASS info_class,
                               PVOID info, SIZE_T length, PSIZE_T return_length)
{
    if (!heap) return _pa_heap_fail(STATUS_ACCESS_VIOLATION); /* fact 59 */
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    if (info_class != HeapCompatibilityInformation)
        return _pa_heap_fail_win32(STATUS_INVALID_INFO_CLASS, ERROR_INVALID_PARAMETER);
    if (return_length) *return_length = sizeof(ULONG);
    if (!info || length < sizeof(ULONG))
        return _pa_heap_fail_win32(STATUS_BUFFER_TOO_SMALL, ERROR_INSUFFICIENT_BUFFER);
    ULONG v = e->heap->compat;
    memcpy(info, &v, sizeof v);
    return TRUE;
}

BOOL pa_heap_stats(pa_process_t *p, HANDLE heap, pa_heap_stats_t *out)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    if (!out) return _pa_heap_fail(STATUS_INVALID_PARAMETER);
    pa_heap_t *h = e->heap;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&h->lock);
    out->reserved = h->ctr.reserved;
    out->committed = h->ctr.committed;
    out->busy_bytes = h->ctr.busy_bytes;
    out->busy_blocks = h->ctr.busy_blocks;
    out->free_bytes = h->ctr.free_bytes;
    out->free_blocks = h->ctr.free_blocks;
    out->largest_free = largest_free_locked(h);
    out->large_blocks = h->ctr.large_blocks;
    out->cached_large_bytes = h->ctr.cached_large_bytes;
    out->cached_large_resident = h->ctr.cached_resident;
    if (h->lfh) out->spare_committed = h->lfh->cfree_bytes;
    out->segments = h->nsegs;
    out->debug = h->debug;
    for (unsigned b = 0; b < PA_LFH_BUCKETS; b++) out->lfh_active += h->lfh_on[b];
    _pa_lfh_stats(h, &out->busy_blocks, &out->busy_bytes, out->bucket_busy);
    /* Thread lookaside bins: blocks taken or put without the lock. */
    int64_t mb = atomic_load_explicit(&h->mc_busy_bytes, memory_order_relaxed);
    int64_t mn = atomic_load_explicit(&h->mc_busy_blocks, memory_order_relaxed);
    pa_lfh_t *L = h->lfh;
    unsigned ncaches = L ? atomic_load_explicit(&L->ncaches, memory_order_acquire) : 0;
    for (unsigned i = 0; i < ncaches; i++) {
        pa_lfh_tcache_t *tc = _pa_lfh_tcache_at(L, i);
        if (__atomic_load_n(&tc->owner, __ATOMIC_ACQUIRE)) {
            mb += __atomic_load_n(&tc->mbusy_bytes, __ATOMIC_RELAXED);
            mn += __atomic_load_n(&tc->mbusy_blocks, __ATOMIC_RELAXED);
        }
    }
    out->busy_bytes = (size_t)((int64_t)out->busy_bytes + mb);
    out->busy_blocks = (size_t)((int64_t)out->busy_blocks + mn);
    pthread_mutex_unlock(&h->lock);
    size_t used = out->busy_bytes + out->free_bytes + out->spare_committed;
    out->overhead = out->committed > used ? out->committed - used : 0;
    return TRUE;
}

/* ------------------------------------------------------------------------------------------ */
/* HeapWalk                                                                                    */

static void walk_region(const pa_heap_t *h, unsigned i, PROCESS_HEAP_ENTRY *e)
{
    const pa_segment_t *s = seg_at(h, i);
    memset(e, 0, sizeof *e);
    e->wFlags = PROCESS_HEAP_REGION;
    e->iRegionIndex = (BYTE)i;
    e->lpData = (void *)s->base;
    if (s->kind == PA_SEG_LFH) {
        const pa_lfh_seg_t *l = (const pa_lfh_seg_t *)s;
        e->cbData = (DWORD)PA_LFH_CHUNK;
        size_t kept = l->cfree_chunks; /* free chunks that stay committed */
        e->Region.dwCommittedSize =
            (DWORD)((size_t)(l->nchunks - l->free_chunks + kept) * PA_LFH_CHUNK);
        e->Region.dwUnCommittedSize = (DWORD)((size_t)(l->free_chunks - kept) * PA_LFH_CHUNK);
        e->Region.lpFirstBlock = (char *)l->base + PA_LFH_CHUNK;
        e->Region.lpLastBlock = (char *)l->base + l->size;
        return;
    }
    e->cbData = (DWORD)(s->first - s->base);
    e->Region.dwCommittedSize = (DWORD)(s->commit_end - s->base);
    e->Region.dwUnCommittedSize = (DWORD)(s->end - s->commit_end);
    e->Region.lpFirstBlock = (char *)s->first + U;
    e->Region.lpLastBlock = (void *)s->end;
}

/* Fills e with back-end block b (not the end sentinel). */
static void walk_block(const pa_heap_t *h, unsigned i, pa_block_t *b, PROCESS_HEAP_ENTRY *e)
{
    (void)h;
    memset(e, 0, sizeof *e);
    e->lpData = blk_user(b);
    e->iRegionIndex = (BYTE)i;
    if ((b->flags & (PA_BLK_BUSY | PA_BLK_CACHED)) == PA_BLK_BUSY) {
        e->wFlags = PROCESS_HEAP_ENTRY_BUSY;
        e->cbData = (DWORD)blk_requested(b);
        e->cbOverhead = (BYTE)(b->extra > 255 ? 255 : b->extra);
    } else {
        e->cbData = (DWORD)((size_t)b->size * U - sizeof(pa_free_t));
        e->cbOverhead = (BYTE)sizeof(pa_free_t); /* 4P (fact 49) */
    }
}

/* The entry after the end of segment i's blocks: its uncommitted tail or the next region. */
static int walk_after_blocks(pa_heap_t *h, unsigned i, PROCESS_HEAP_ENTRY *e);

static int walk_from_region(pa_heap_t *h, unsigned i, uintptr_t at, PROCESS_HEAP_ENTRY *e)
{
    for (; i < h->nsegs; i++, at = 0) {
        pa_segment_t *s = seg_at(h, i);
        if (s->kind == PA_SEG_LFH) {
            int r = _pa_lfh_walk_seg(h, (pa_lfh_seg_t *)s, at ? at : s->base + PA_LFH_CHUNK, e);
            if (r < 0) return -1;
            if (r) {
                e->iRegionIndex = (BYTE)i;
                return 1;
            }
            if (i + 1 < h->nsegs) {
                walk_region(h, i + 1, e);
                return 1;
            }
            return 0;
        }
        pa_block_t *b = (pa_block_t *)(at ? at : s->first);
        if (!(b->flags & PA_BLK_END)) {
            walk_block(h, i, b, e);
            return 1;
        }
        return walk_after_blocks(h, i, e);
    }
    return 0;
}

static int walk_after_blocks(pa_heap_t *h, unsigned i, PROCESS_HEAP_ENTRY *e)
{
    pa_segment_t *s = seg_at(h, i);
    if (s->commit_end < s->end) {
        memset(e, 0, sizeof *e);
        e->wFlags = PROCESS_HEAP_UNCOMMITTED_RANGE;
        e->iRegionIndex = (BYTE)i;
        e->lpData = (void *)s->commit_end;
        e->cbData = (DWORD)(s->end - s->commit_end);
        return 1;
    }
    if (i + 1 < h->nsegs) {
        walk_region(h, i + 1, e);
        return 1;
    }
    return 0;
}

/* Large and page-heap blocks, listed after all regions (fact 50). `after` is the user
 * pointer of the previous one, or NULL to start. */
static int walk_outside(pa_heap_t *h, const void *after, PROCESS_HEAP_ENTRY *e)
{
    int take = after == NULL, bad = 0;
    size_t n = 0;
    _pa_lock(h->process);
    for (pa_large_t *l = large_first_plocked(h, h->large, LARGE_BUSY, &bad); l && n++ < h->ctr.large_blocks;
         l = large_next_plocked(h, l, LARGE_BUSY, &bad)) {
        if (take) {
            _pa_unlock(h->process);
            memset(e, 0, sizeof *e);
            e->lpData = l + 1;
            e->cbData = (DWORD)l->requested;
            e->wFlags = PROCESS_HEAP_ENTRY_BUSY;
            e->iRegionIndex = 64;
            return 1;
        }
        if ((void *)(l + 1) == after) take = 1;
    }
    _pa_unlock(h->process);
    if (bad) return -1;
    n = 0;
    for (pa_pageblk_t *b = h->pages; b && n++ < h->ctr.page_blocks; b = b->next) {
        if (!_pa_pageblk_ok(h, b, 0)) return -1;
        if (take) {
            memset(e, 0, sizeof *e);
            e->lpData = (void *)b->user;
            e->cbData = (DWORD)b->requested;
            e->wFlags = PROCESS_HEAP_ENTRY_BUSY;
            e->iRegionIndex = 64;
            return 1;
        }
        if ((void *)b->user == after) take = 1;
    }
    return 0;
}

static int walk_next_locked(pa_heap_t *h, PROCESS_HEAP_ENTRY *e)
{
    uintptr_t a = (uintptr_t)e->lpData;
    if (!a) {
        walk_region(h, 0, e);
        return 1;
    }
    int i = (e->iRegionIndex == 64 && (e->wFlags & PROCESS_HEAP_ENTRY_BUSY)) ? -1 : seg_index(h, a);
    if (i < 0) {
        if (e->wFlags & PROCESS_HEAP_UNCOMMITTED_RANGE) i = seg_index(h, a - 1);
        if (i < 0) return walk_outside(h, e->lpData, e);
    }
    pa_segment_t *s = seg_at(h, i);
    int done;
    if (e->wFlags & PROCESS_HEAP_REGION) {
        done = walk_from_region(h, (unsigned)i, 0, e);
    } else if (s->kind == PA_SEG_LFH) {
        /* Just past the previous slot's header: the walker rounds up to the next slot. */
        uintptr_t at = (e->wFlags & PROCESS_HEAP_UNCOMMITTED_RANGE) ? a + e->cbData : a - U + 1;
        done = walk_from_region(h, (unsigned)i, at, e);
    } else if (e->wFlags & PROCESS_HEAP_UNCOMMITTED_RANGE) {
        done = (unsigned)i + 1 < h->nsegs ? (walk_region(h, (unsigned)i + 1, e), 1) : 0;
    } else {
        pa_block_t *b = (pa_block_t *)(a - U);
        if (!backend_block_ok(h, s, b)) {
            /* The block changed since the last call (or its header is corrupted): continue
             * from the first block past it. Each step moves forward inside the segment, so
             * the walk ends; a size that leaves the segment ends it with an error. */
            b = (pa_block_t *)s->first;
            while (b && !(b->flags & PA_BLK_END) && (uintptr_t)b <= a - U) b = blk_next_in(s, b);
            done = !b ? -1
                   : (b->flags & PA_BLK_END) ? walk_after_blocks(h, (unsigned)i, e)
                                             : (walk_block(h, (unsigned)i, b, e), 1);
        } else {
            pa_block_t *n = blk_next(b);
            done = (n->flags & PA_BLK_END) ? walk_after_blocks(h, (unsigned)i, e)
                                           : (walk_block(h, (unsigned)i, n, e), 1);
        }
    }
    return done ? done : walk_outside(h, NULL, e);
}

BOOL pa_heap_walk(pa_process_t *p, HANDLE heap, LPPROCESS_HEAP_ENTRY entry)
{
    tls_ent_t *e = tls_validate(p, heap);
    if (!e) return FALSE;
    if (!entry) return _pa_heap_fail(STATUS_INVALID_PARAMETER);
    pa_heap_t *h = e->heap;
    int locked = _pa_heap_enter(h, 0);
    int ok = walk_next_locked(h, entry);
    _pa_heap_leave(h, locked);
    if (ok < 0) return corrupt_fail();
    if (!ok) return _pa_heap_fail_win32(STATUS_NO_MORE_ENTRIES, ERROR_NO_MORE_ITEMS);
    return TRUE;
}

/* ------------------------------------------------------------------------------------------ */
/* Direct access from Python                                                                   */

/* The busy block of h containing addr: its user pointer and requested size. */
static int block_containing_locked(pa_heap_t *h, uintptr_t addr, void **user, size_t *size)
{
    pa_pageblk_t *pb;
    if ((h->debug & PA_HEAP_DEBUG_PAGE_HEAP)) {
        size_t n = 0;
        for (pb = h->pages; pb && n++ < h->ctr.page_blocks && _pa_pageblk_ok(h, pb, 0); pb = pb->next)
            if (addr - pb->user < (pb->requested ? pb->requested : 1)) {
                *user = (void *)pb->user;
                *size = pb->requested;
                return 1;
            }
    }
    pa_block_t *lb = _pa_lfh_block_at(h, addr);
    if (lb) {
        *user = blk_user(lb);
        *size = lb->prev_size;
        return 1;
    }
    pa_segment_t *s = backend_seg_of(h, addr);
    if (s) {
        if (addr < s->first || addr >= s->commit_end) return 0;
        for (pa_block_t *b = (pa_block_t *)s->first; b && !(b->flags & PA_BLK_END); b = blk_next_in(s, b)) {
            if (!blk_next_in(s, b)) return 0;
            if ((uintptr_t)blk_next(b) <= addr) continue;
            if ((b->flags & (PA_BLK_BUSY | PA_BLK_CACHED)) != PA_BLK_BUSY) return 0;
            *user = blk_user(b);
            *size = blk_requested(b);
            return 1;
        }
        return 0;
    }
    int bad = 0, found = 0;
    size_t n = 0;
    _pa_lock(h->process);
    for (pa_large_t *l = large_first_plocked(h, h->large, LARGE_BUSY, &bad); l && n++ < h->ctr.large_blocks;
         l = large_next_plocked(h, l, LARGE_BUSY, &bad))
        if (addr - (uintptr_t)(l + 1) < l->requested) {
            *user = l + 1;
            *size = l->requested;
            found = 1;
            break;
        }
    _pa_unlock(h->process);
    return found;
}

NTSTATUS pa_heap_find_block(pa_process_t *p, const void *address, size_t size, HANDLE *heap_out,
                            void **block_out, size_t *block_size)
{
    uintptr_t a = (uintptr_t)address;
    if (!p || a + size < a) return STATUS_ACCESS_VIOLATION;
    NTSTATUS st;
retry:
    st = STATUS_ACCESS_VIOLATION;
    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = rec_find_locked(p, 0);
    for (pa_heap_t *h = r ? r->first : NULL; h && st != STATUS_SUCCESS; h = h->next_heap) {
        /* A thread holding a heap lock may wait for the registry lock (a handle missing
         * from its cache): never wait for a heap lock while holding the registry's. */
        if (pthread_mutex_trylock(&h->lock)) {
            pthread_mutex_unlock(&registry_lock);
            sched_yield();
            goto retry;
        }
        void *user;
        size_t n;
        if (block_containing_locked(h, a, &user, &n) && a >= (uintptr_t)user &&
            a + (size ? size : 1) <= (uintptr_t)user + n) {
            if (heap_out) *heap_out = h;
            if (block_out) *block_out = user;
            if (block_size) *block_size = n;
            st = STATUS_SUCCESS;
        }
        pthread_mutex_unlock(&h->lock);
    }
    pthread_mutex_unlock(&registry_lock);
    return st;
}

/* The heap's private control data (heap.md's layout covers only the header's first 0x20 bytes
 * and flags/force_flags at 0x70): the rest of the header, each back-end segment's descriptor,
 * each LFH segment's header chunk (its map and cfree bitmap and, in the first, the LFH
 * directory with the thread caches), and the subsegment header (pa_lfh_sub_t: list links,
 * slot geometry, free bitmap) at the start of each subsegment's first chunk. These are
 * trusted by the heap's own code; block headers, free blocks, large and page-heap descriptors
 * are checked before use, so they are not listed here. */
uintptr_t pa_heap_private_overlap(pa_process_t *p, const void *address, size_t size)
{
    uintptr_t a = (uintptr_t)address, end = a + size, hit = 0;
    if (!p || !size || end < a) return 0;
#define PRIVATE(lo, hi)                                                                          \
    do {                                                                                         \
        uintptr_t lo_ = (lo), hi_ = (hi);                                                        \
        if (lo_ < end && a < hi_) {                                                              \
            uintptr_t f_ = a > lo_ ? a : lo_;                                                     \
            if (!hit || f_ < hit) hit = f_;                                                      \
        }                                                                                        \
    } while (0)
    pthread_mutex_lock(&registry_lock);
    proc_rec_t *r = rec_find_locked(p, 0);
    for (pa_heap_t *h = r ? r->first : NULL; h; h = h->next_heap) {
        uintptr_t b = (uintptr_t)h;
        PRIVATE(b + 0x20, b + offsetof(pa_heap_t, flags));
        PRIVATE(b + offsetof(pa_heap_t, force_flags) + 4, b + HEAP_HDR_SIZE);
        /* Segments change under the heap lock, which is not taken here (see find_block): each
         * word is read whole, and a segment that comes or goes meanwhile is missed or kept. */
        unsigned n = __atomic_load_n(&h->nsegs, __ATOMIC_ACQUIRE);
        for (unsigned i = 1; i < n && i < PA_HEAP_MAX_SEGMENTS; i++) {
            uint64_t w = __atomic_load_n(&h->segmap[i], __ATOMIC_ACQUIRE);
            uintptr_t base = segmap_base(w);
            if (!base) continue;
            if (!(w & PA_SEGMAP_LFH)) {
                PRIVATE(base, base + SEG_HDR_SIZE);
                continue;
            }
            PRIVATE(base, base + PA_LFH_CHUNK);
            /* Subsegment headers: the first PA_LFH_SUB_HDR bytes of every chunk that starts a
             * subsegment (map offset 0) or is free (map 0: the LFH may carve one there at any
             * time), and the whole of each chunk of more thread caches (map value
             * PA_LFH_MAP_HEADER). Only the chunks the range reaches are looked at, first to
             * last, and the first header found is this segment's lowest hit. The map lives in
             * the header chunk, which stays committed until the heap leaves the registry (whose
             * lock is held), and which Python cannot write. */
            size_t nchunks = segmap_size(w) / PA_LFH_CHUNK;
            uintptr_t lo = a > base ? a : base;
            if (lo - base >= nchunks * PA_LFH_CHUNK) continue;
            size_t c = (lo - base) / PA_LFH_CHUNK;
            const pa_lfh_seg_t *ls = (const pa_lfh_seg_t *)base;
            if (lo - (base + c * PA_LFH_CHUNK) >= PA_LFH_SUB_HDR &&
                __atomic_load_n(&ls->map[c], __ATOMIC_ACQUIRE) != PA_LFH_MAP_HEADER)
                c++;
            if (c < 1) c = 1;
            for (; c < nchunks && base + c * PA_LFH_CHUNK < end; c++) {
                unsigned m = __atomic_load_n(&ls->map[c], __ATOMIC_ACQUIRE);
                if (m == PA_LFH_MAP_HEADER) { /* a chunk of thread caches */
                    PRIVATE(base + c * PA_LFH_CHUNK, base + (c + 1) * PA_LFH_CHUNK);
                    break;
                }
                if (m && _pa_lfh_map_off(m) != 0) continue; /* inside a subsegment: slots */
                PRIVATE(base + c * PA_LFH_CHUNK, base + c * PA_LFH_CHUNK + PA_LFH_SUB_HDR);
                break;
            }
        }
    }
    pthread_mutex_unlock(&registry_lock);
#undef PRIVATE
    return hit;
}
