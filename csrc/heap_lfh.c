/* heap_lfh.c: layer 3, the low-fragmentation front end (LFH) of a heap.
 *
 * Serves requests up to 16 KiB once their bucket (size class) is active: a bucket switches
 * after PA_LFH_ACTIVATE back-end allocations of its class (heap.md facts 60-61). Its memory
 * comes from the heap's LFH segments (reserved by the back end, heap.c) in subsegments of equal
 * slots, each slot a 16-byte header plus the bucket's size, so HeapSize, HeapValidate and
 * HeapWalk see LFH blocks like any other.
 *
 * Speed: each thread has a private cache per heap (pa_lfh_tcache_t) holding free slots per
 * bucket; alloc pops and free pushes with no lock and no atomic. Only refilling an empty bin
 * or flushing a full one touches the bucket, a batch at a time: a full bin's surplus is pushed
 * onto the bucket's lock-free remote list with one compare-and-swap, and an empty bin first
 * takes that whole list with one exchange, so a thread that frees what another allocated
 * (cross-thread) hands slots over without the spinlock; only when the list is empty or full
 * do slots go through the subsegments under the bucket's spinlock. The heap lock is taken
 * only to carve or release whole subsegments. A free finds the slot's bucket and geometry in
 * the segment map (no subsegment header read). Structures: heap_internal.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <string.h>

#include "heap_internal.h"

_Static_assert(sizeof(pa_lfh_sub_t) == PA_LFH_SUB_HDR, "subsegment header");
_Static_assert(sizeof(pa_lfh_bucket_t) == 64, "bucket is one cache line");
/* The subsegment with the most slots: bucket 0's, one chunk of 32-byte slots. */
_Static_assert((PA_LFH_CHUNK - PA_LFH_SUB_HDR) / 32 <= PA_LFH_SUB_WORDS * 64, "free bitmap");
/* The first LFH segment's header chunk holds its header, a map of up to 512 chunks and the
 * pa_lfh_t. */
_Static_assert(sizeof(pa_lfh_seg_t) + 512 * 2 + 64 + sizeof(pa_lfh_t) <= PA_LFH_CHUNK,
               "LFH state fits the header chunk");

#define U PA_HEAP_UNIT
#define LFH_SEG_MIN ((size_t)4 << 20)
#define LFH_SEG_MAX ((size_t)32 << 20)
_Static_assert(LFH_SEG_MAX / PA_LFH_CHUNK == PA_LFH_SEG_MAX_CHUNKS, "cfree bitmap");
/* A new subsegment's commit covers up to this many chunks from its first one: the free,
 * uncommitted chunks after it are committed too (free chunks kept committed, pa_lfh_seg_t's
 * cfree), so that the next subsegments need no commit of their own. Committed pages the
 * program never touches cost no memory. sqlite3 under the preload library committed its
 * subsegments in 270 calls of one or two chunks. */
#define LFH_AHEAD 8
/* Chunks released (past the retention budget, or HeapCompact aside) stay committed with
 * their pages dropped while the heap's free chunks kept committed are at most
 * max(LFH_CFREE_MIN, the subsegments' commit); past that, a release decommits them all, in
 * runs. Releasing and committing chunk by chunk cost sqlite3 460 host calls (with a TLB
 * flush for each decommit) where glibc's heap moved its break 108 times. */
#define LFH_CFREE_MIN ((size_t)4 << 20)

static void spin_lock(atomic_int *l)
{
    for (;;) {
        if (!atomic_exchange_explicit(l, 1, memory_order_acquire)) return;
        int spins = 0;
        while (atomic_load_explicit(l, memory_order_relaxed)) {
            if (++spins > 64) {
                sched_yield();
                spins = 0;
            } else {
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
            }
        }
    }
}

static void spin_unlock(atomic_int *l) { atomic_store_explicit(l, 0, memory_order_release); }

void _pa_lfh_fork(pa_heap_t *h, int phase)
{
    pa_lfh_t *L = __atomic_load_n(&h->lfh, __ATOMIC_ACQUIRE);
    if (!L) return;
    for (unsigned b = 0; b < PA_LFH_BUCKETS; b++) {
        if (phase == 0) spin_lock(&L->bucket[b].lock);
        else spin_unlock(&L->bucket[b].lock); /* parent and child alike: 0 is "free" */
    }
}

/* A bucket's geometry as constant expressions, so that _pa_lfh_geom is right before any
 * constructor runs: the preload library serves other libraries' constructors, which run
 * before its own (libgnutls's frees LFH blocks there: with a table filled by a constructor,
 * those frees found every slot size 0). Bucket b < 64 holds (b + 1) * 16 bytes; above, each
 * power of two from 1 KiB to 8 KiB is split into 16 steps. */
#define G_O(b) (10u + ((b) - 64u) / 16u)
#define G_DATA(b) ((b) < 64u ? ((b) + 1u) * 16u \
    : (1u << G_O(b)) + (((b) - 64u) % 16u + 1u) * (1u << (G_O(b) - 4u)))
#define G_SLOT(b) (G_DATA(b) + 16u)
/* Chunks per subsegment: room for about 24 slots, 1 to 8 chunks. */
#define G_N0(b) ((G_SLOT(b) * 24u + 0xFFFFu) / 0x10000u)
#define G_CHUNKS(b) (G_N0(b) < 1u ? 1u : G_N0(b) > 8u ? 8u : G_N0(b))
#define G_SPAN(b) ((G_CHUNKS(b) * 0x10000u - 320u) / G_SLOT(b) * G_SLOT(b))
_Static_assert(PA_HEAP_UNIT == 16 && PA_LFH_CHUNK == 0x10000 && PA_LFH_SUB_HDR == 320,
               "the G_ macros' constants");

size_t _pa_lfh_bucket_data_size(unsigned b) { return G_DATA(b); }

uint32_t _pa_lfh_bucket_nchunks(unsigned b) { return G_CHUNKS(b); }

#define G1(b) {G_SLOT(b), G_SPAN(b)},
#define G4(b) G1(b) G1((b) + 1u) G1((b) + 2u) G1((b) + 3u)
#define G16(b) G4(b) G4((b) + 4u) G4((b) + 8u) G4((b) + 12u)
#define G64(b) G16(b) G16((b) + 16u) G16((b) + 32u) G16((b) + 48u)
const pa_lfh_geom_t _pa_lfh_geom[PA_LFH_BUCKETS] = {G64(0u) G64(64u)};
_Static_assert(PA_LFH_BUCKETS == 128, "geometry table size");
pa_lfh_seg_t _pa_lfh_no_seg;

/* _pa_lfh_bucket_tab[i] = the bucket of a request of 16 * i bytes (of 0 bytes for i = 0):
 * _pa_lfh_bucket_calc as a constant expression, so that the table is right before any
 * constructor runs (the preload library allocates early). */
#define BT_O(n) ((n) - 1 >= 8192 ? 13 : (n) - 1 >= 4096 ? 12 : (n) - 1 >= 2048 ? 11 : 10)
#define BT_N(i) ((i) <= 64 ? ((i) ? (i) - 1 : 0) \
    : 64 + (BT_O(16 * (i)) - 10) * 16 + ((16 * (i) - 1 - (1 << BT_O(16 * (i)))) >> (BT_O(16 * (i)) - 4)))
#define BT1(i) BT_N(i),
#define BT4(i) BT1(i) BT1((i) + 1) BT1((i) + 2) BT1((i) + 3)
#define BT16(i) BT4(i) BT4((i) + 4) BT4((i) + 8) BT4((i) + 12)
#define BT64(i) BT16(i) BT16((i) + 16) BT16((i) + 32) BT16((i) + 48)
#define BT256(i) BT64(i) BT64((i) + 64) BT64((i) + 128) BT64((i) + 192)
const uint8_t _pa_lfh_bucket_tab[PA_LFH_MAX_REQUEST / 16 + 1] = {
    BT256(0) BT256(256) BT256(512) BT64(768) BT64(832) BT64(896) BT16(960) BT16(976) BT16(992)
    BT4(1008) BT4(1012) BT4(1016) BT1(1020) BT1(1021) BT1(1022) BT1(1023)};
_Static_assert(PA_LFH_MAX_REQUEST / 16 + 1 == 1024, "bucket table size");

/* ------------------------------------------------------------------------------------------ */
/* Segments and subsegments (heap lock)                                                        */

pa_lfh_seg_t *_pa_lfh_seg_find(pa_lfh_t *L, uintptr_t a)
{
    unsigned n = atomic_load_explicit(&L->nsegs, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        pa_lfh_seg_t *s = L->segs[i];
        if (a - s->base < s->size) return s;
    }
    return NULL;
}

static size_t seg_header_bytes(size_t nchunks)
{
    return _pa_align_up(sizeof(pa_lfh_seg_t) + nchunks * sizeof(uint16_t), 64);
}

static pa_lfh_seg_t *new_seg_locked(pa_heap_t *h, size_t size)
{
    pa_lfh_seg_t *s = _pa_heap_new_lfh_segment_locked(h, size);
    if (!s) return NULL;
    s->map[0] = PA_LFH_MAP_HEADER;
    return s;
}

/* Creates the LFH state of h (first LFH segment). Heap lock held. */
static int lfh_create_locked(pa_heap_t *h)
{
    if (h->lfh) return 1;
    /* The first segment as large as they get (address space only: chunks are committed as
     * subsegments need them), smaller where the address space is short. The fast free
     * checks the two segments a thread freed into last, and swaps them: with a 4 MiB first
     * segment, a program past 4 MiB of slots had blocks in two at random, and that branch
     * went either way (bench pool, 32 threads: 16% of frees mispredicted, cachegrind). A
     * free chosen between the two without a branch cost 8 more instructions a free
     * (churn +6.5%, trees +9%). */
    DWORD saved = pa_get_last_error();
    pa_lfh_seg_t *s = NULL;
    for (size_t size = LFH_SEG_MAX; !s && size >= LFH_SEG_MIN; size /= 2)
        s = new_seg_locked(h, size);
    if (!s) return 0;
    pa_set_last_error(saved);
    pa_lfh_t *L = (pa_lfh_t *)(s->base + seg_header_bytes(s->nchunks));
    for (unsigned b = 0; b < PA_LFH_BUCKETS; b++) {
        pa_lfh_bucket_t *bk = &L->bucket[b];
        bk->data_size = (uint32_t)_pa_lfh_bucket_data_size(b);
        bk->slot_size = bk->data_size + (uint32_t)U;
        bk->nchunks = _pa_lfh_bucket_nchunks(b);
    }
    L->segs[0] = s;
    atomic_store_explicit(&L->ncaches, PA_LFH_TCACHES, memory_order_relaxed);
    atomic_store_explicit(&L->nsegs, 1, memory_order_release);
    __atomic_store_n(&h->lfh, L, __ATOMIC_RELEASE);
    return 1;
}

static inline int cfree_has(const pa_lfh_seg_t *s, size_t c)
{
    return (int)((s->cfree[c / 64] >> (c % 64)) & 1u);
}

/* Marks free chunk c of s as kept committed (on) or not. Heap lock held. */
static void cfree_mark(pa_lfh_t *L, pa_lfh_seg_t *s, size_t c, int on)
{
    if (cfree_has(s, c) == on) return;
    s->cfree[c / 64] ^= (uint64_t)1 << (c % 64);
    s->cfree_chunks += on ? 1u : (uint32_t)-1;
    L->cfree_bytes += on ? PA_LFH_CHUNK : (size_t)0 - PA_LFH_CHUNK;
}

/* A free run of n chunks in s (all of them kept committed, when `committed`), or 0. */
static size_t find_run(const pa_lfh_seg_t *s, size_t n, int committed)
{
    size_t run = 0;
    for (size_t c = 1; c < s->nchunks; c++) {
        run = s->map[c] || (committed && !cfree_has(s, c)) ? 0 : run + 1;
        if (run == n) return c + 1 - n;
    }
    return 0;
}

/* Decommits the free chunks of s kept committed, one call per run (a run layer 1 refuses
 * stays kept). Heap lock held. */
static void decommit_cfree_locked(pa_heap_t *h, pa_lfh_seg_t *s)
{
    if (!s->cfree_chunks) return;
    DWORD saved = pa_get_last_error();
    for (size_t c = 1; c < s->nchunks;) {
        size_t e = c;
        while (e < s->nchunks && cfree_has(s, e)) e++;
        void *at = (void *)(s->base + c * PA_LFH_CHUNK);
        size_t bytes = (e - c) * PA_LFH_CHUNK;
        if (e > c && pa_virtual_free(h->process, at, bytes, MEM_DECOMMIT, PA_OWNER_HEAP)) {
            h->ctr.committed -= bytes;
            for (size_t k = c; k < e; k++) cfree_mark(h->lfh, s, k, 0);
        }
        c = e + 1;
    }
    pa_set_last_error(saved);
}

/* Commits free chunks [c, end) of s in one call. 0 on failure. */
static int commit_range(pa_heap_t *h, pa_lfh_seg_t *s, size_t c, size_t end)
{
    uintptr_t at = s->base + c * PA_LFH_CHUNK;
    size_t bytes = (end - c) * PA_LFH_CHUNK;
    DWORD prot = (h->flags & HEAP_CREATE_ENABLE_EXECUTE) ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
    if (!pa_virtual_alloc(h->process, (void *)at, bytes, MEM_COMMIT, prot, PA_OWNER_HEAP)) return 0;
    _pa_heap_committed_locked(h, at, bytes);
    return 1;
}

/* Makes free chunks [c, c + n) of s (n <= 8) committed for a subsegment: those kept
 * committed as they are, the others committed, the last run of them with the free chunks
 * after it up to LFH_AHEAD chunks from c (kept committed; without them if that commit fails).
 * The kept ones are taken off the bitmap first: a commit pays for itself by releasing empty
 * subsegments (_pa_heap_committed_locked), and a release may decommit the segment's kept
 * chunks. 0 on failure (what it committed is then kept committed). Heap lock held. */
static int commit_chunks(pa_heap_t *h, pa_lfh_seg_t *s, size_t c, size_t n)
{
    pa_lfh_t *L = h->lfh;
    size_t end = c + n;
    unsigned kept = 0; /* bit k: chunk c + k was kept committed */
    for (size_t k = 0; k < n; k++)
        if (cfree_has(s, c + k)) {
            kept |= 1u << k;
            cfree_mark(L, s, c + k, 0);
        }
    for (size_t i = c; i < end;) {
        if ((kept >> (i - c)) & 1u) {
            i++;
            continue;
        }
        size_t j = i + 1, stop;
        while (j < end && !((kept >> (j - c)) & 1u)) j++;
        for (stop = j; j == end && stop < s->nchunks && stop - c < LFH_AHEAD && !s->map[stop] &&
                       !cfree_has(s, stop);)
            stop++;
        if (!commit_range(h, s, i, stop) && (stop == j || !commit_range(h, s, i, stop = j))) {
            for (size_t k = c; k < end; k++)
                if (k < i || ((kept >> (k - c)) & 1u)) cfree_mark(L, s, k, 1);
            return 0;
        }
        for (size_t k = j; k < stop; k++) cfree_mark(L, s, k, 1);
        i = j;
    }
    return 1;
}

/* Takes a free run of n chunks, committed: of those kept committed first, else of any
 * segment, else of a new segment. Returns its segment (*cp: its first chunk), or NULL.
 * Heap lock held. */
static pa_lfh_seg_t *carve_run_locked(pa_heap_t *h, uint32_t n, size_t *cp)
{
    pa_lfh_t *L = h->lfh;
    pa_lfh_seg_t *s = NULL;
    size_t c = 0;
    unsigned nsegs = atomic_load_explicit(&L->nsegs, memory_order_relaxed);
    for (int pass = L->cfree_bytes ? 0 : 1; pass < 2 && !c; pass++) {
        for (unsigned i = 0; i < nsegs && !c; i++) {
            if ((pass ? L->segs[i]->free_chunks : L->segs[i]->cfree_chunks) < n) continue;
            c = find_run(L->segs[i], n, !pass);
            if (c) s = L->segs[i];
        }
    }
    if (!c) {
        size_t size = L->segs[nsegs - 1]->size * 2;
        if (size > LFH_SEG_MAX) size = LFH_SEG_MAX;
        if (nsegs == PA_HEAP_MAX_SEGMENTS || !(s = new_seg_locked(h, size))) return NULL;
        L->segs[nsegs] = s;
        atomic_store_explicit(&L->nsegs, nsegs + 1, memory_order_release);
        c = find_run(s, n, 0);
    }
    if (!commit_chunks(h, s, c, n)) return NULL;
    s->free_chunks -= n;
    *cp = c;
    return s;
}

/* Carves a chunk of PA_LFH_TC_PER_CHUNK more thread caches (marked in the map like the header
 * chunk: no slots, private to the heap). 0 when there can be no more. Heap lock held. */
static int more_caches_locked(pa_heap_t *h)
{
    pa_lfh_t *L = h->lfh;
    unsigned k = (atomic_load_explicit(&L->ncaches, memory_order_relaxed) - PA_LFH_TCACHES) /
                 PA_LFH_TC_PER_CHUNK;
    size_t c;
    pa_lfh_seg_t *s = k < PA_LFH_TC_CHUNKS ? carve_run_locked(h, 1, &c) : NULL;
    if (!s) return 0;
    L->more[k] = (pa_lfh_tcache_t *)(s->base + c * PA_LFH_CHUNK);
    /* (A chunk kept committed reads as zero unless layer 1 refused to drop its pages; a
     * claim relies on zeroed owners and lookaside bins.) */
    memset(L->more[k], 0, PA_LFH_CHUNK);
    __atomic_store_n(&s->map[c], PA_LFH_MAP_HEADER, __ATOMIC_RELEASE);
    atomic_fetch_add_explicit(&L->ncaches, PA_LFH_TC_PER_CHUNK, memory_order_release);
    return 1;
}

static pa_lfh_sub_t *empty_pop(pa_lfh_t *L, pa_lfh_bucket_t *bk);
static void release_chunks_locked(pa_heap_t *h, pa_lfh_seg_t *s, size_t c, size_t n);

/* An empty subsegment that another bucket keeps (its empty list), of at least n chunks,
 * taken off that list: the fewest chunks first. Heap lock held (it takes that bucket's lock). */
static pa_lfh_sub_t *steal_empty_locked(pa_lfh_t *L, unsigned b, uint32_t n)
{
    for (uint32_t want = n; want <= 8; want++) {
        for (unsigned o = 0; o < PA_LFH_BUCKETS; o++) {
            pa_lfh_bucket_t *ob = &L->bucket[o];
            /* (read without the lock: a hint, checked again under it) */
            if (o == b || ob->nchunks != want || !__atomic_load_n(&ob->empty, __ATOMIC_RELAXED))
                continue;
            spin_lock(&ob->lock);
            pa_lfh_sub_t *sub = ob->empty ? empty_pop(L, ob) : NULL;
            spin_unlock(&ob->lock);
            if (sub) return sub;
        }
    }
    return NULL;
}

/* Carves a subsegment for bucket b. Takes the heap lock; the caller holds no bucket lock.
 * Before it commits new chunks it takes an empty subsegment another bucket retains: a
 * program that frees many blocks of some sizes and then allocates others (sqlite3 between
 * its sorts) reuses the pages it has, instead of giving them back to the host and faulting
 * new ones in (each page once per reuse). Its chunks past the first bk->nchunks go back. */
static pa_lfh_sub_t *new_sub(pa_heap_t *h, unsigned b)
{
    pa_lfh_t *L = h->lfh;
    pa_lfh_bucket_t *bk = &L->bucket[b];
    pa_lfh_sub_t *sub = NULL;
    pthread_mutex_lock(&h->lock);
    pa_lfh_seg_t *s = NULL;
    size_t c = 0;
    size_t bytes = (size_t)bk->nchunks * PA_LFH_CHUNK;
    pa_lfh_sub_t *old = steal_empty_locked(L, b, bk->nchunks);
    if (old) {
        s = old->seg;
        c = ((uintptr_t)old - s->base) / PA_LFH_CHUNK;
        if (old->nchunks > bk->nchunks)
            release_chunks_locked(h, s, c + bk->nchunks, old->nchunks - bk->nchunks);
    } else {
        if (!(s = carve_run_locked(h, bk->nchunks, &c))) goto out;
        atomic_fetch_add_explicit(&L->sub_committed, bytes, memory_order_relaxed);
    }
    uintptr_t base = s->base + c * PA_LFH_CHUNK;
    sub = (pa_lfh_sub_t *)base;
    memset(sub, 0, sizeof *sub);
    sub->magic = PA_LFH_SUB_MAGIC;
    sub->bucket = (uint8_t)b;
    sub->nchunks = (uint16_t)bk->nchunks;
    sub->slot_size = bk->slot_size;
    sub->first = base + PA_LFH_SUB_HDR;
    sub->nslots = (uint32_t)((bytes - PA_LFH_SUB_HDR) / bk->slot_size);
    sub->seg = s;
    for (unsigned i = 0; i < bk->nchunks; i++)
        __atomic_store_n(&s->map[c + i], PA_LFH_MAP(i, b), __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&h->lock);
    return sub;
}

/* Gives chunks [c, c + n) of s back: free in the map, their pages dropped and kept
 * committed; past LFH_CFREE_MIN, with every segment's kept chunks decommitted (those of s
 * alone when the drop fails). Heap lock held. */
static void release_chunks_locked(pa_heap_t *h, pa_lfh_seg_t *s, size_t c, size_t n)
{
    pa_lfh_t *L = h->lfh;
    for (size_t i = 0; i < n; i++) __atomic_store_n(&s->map[c + i], 0, __ATOMIC_RELEASE);
    s->free_chunks += (uint32_t)n;
    size_t bytes = n * PA_LFH_CHUNK;
    size_t left = atomic_fetch_sub_explicit(&L->sub_committed, bytes, memory_order_relaxed) - bytes;
    void *at = (void *)(s->base + c * PA_LFH_CHUNK);
    DWORD saved = pa_get_last_error();
    int dropped = pa_mm_zero_pages(h->process, at, bytes) == STATUS_SUCCESS;
    pa_set_last_error(saved);
    for (size_t i = 0; i < n; i++) cfree_mark(L, s, c + i, 1);
    if (!dropped) {
        decommit_cfree_locked(h, s);
    } else if (L->cfree_bytes > (left > LFH_CFREE_MIN ? left : LFH_CFREE_MIN)) {
        unsigned nsegs = atomic_load_explicit(&L->nsegs, memory_order_relaxed);
        for (unsigned i = 0; i < nsegs; i++) decommit_cfree_locked(h, L->segs[i]);
    }
}

/* Gives a fully free subsegment's chunks back. Heap lock held; the sub is on no list. */
static void release_sub_locked(pa_heap_t *h, pa_lfh_sub_t *sub)
{
    pa_lfh_seg_t *s = sub->seg;
    release_chunks_locked(h, s, ((uintptr_t)sub - s->base) / PA_LFH_CHUNK, sub->nchunks);
}

/* ------------------------------------------------------------------------------------------ */
/* Buckets (bucket lock)                                                                       */

static void list_add(pa_lfh_bucket_t *bk, pa_lfh_sub_t *sub)
{
    sub->prev = NULL;
    sub->next = bk->partial;
    if (sub->next) sub->next->prev = sub;
    bk->partial = sub;
    sub->listed = 1;
}

static void list_remove(pa_lfh_bucket_t *bk, pa_lfh_sub_t *sub)
{
    if (sub->prev) sub->prev->next = sub->next;
    else bk->partial = sub->next;
    if (sub->next) sub->next->prev = sub->prev;
    sub->next = sub->prev = NULL;
    sub->listed = 0;
}

static inline pa_lfh_sub_t *sub_of(const pa_block_t *slot, uint32_t slot_size)
{
    return (pa_lfh_sub_t *)((uintptr_t)slot - (size_t)slot->size * slot_size - PA_LFH_SUB_HDR);
}

/* The empty list of a bucket (bucket lock held), and the heap's count of retained bytes. */
static void empty_push(pa_lfh_t *L, pa_lfh_bucket_t *bk, pa_lfh_sub_t *sub)
{
    sub->next = bk->empty;
    sub->prev = NULL;
    bk->empty = sub;
    sub->listed = 2;
    atomic_fetch_add_explicit(&L->retained, (size_t)sub->nchunks * PA_LFH_CHUNK, memory_order_relaxed);
}

static pa_lfh_sub_t *empty_pop(pa_lfh_t *L, pa_lfh_bucket_t *bk)
{
    pa_lfh_sub_t *sub = bk->empty;
    bk->empty = sub->next;
    sub->next = NULL;
    sub->listed = 0;
    atomic_fetch_sub_explicit(&L->retained, (size_t)sub->nchunks * PA_LFH_CHUNK, memory_order_relaxed);
    return sub;
}

/* Are more empty bytes retained than max(PA_LFH_RETAIN_MIN, used bytes >> shift) (see
 * pa_lfh_t)? */
static int over_budget(pa_lfh_t *L, unsigned shift)
{
    size_t r = atomic_load_explicit(&L->retained, memory_order_relaxed);
    size_t c = atomic_load_explicit(&L->sub_committed, memory_order_relaxed);
    size_t used = c > r ? c - r : 0;
    size_t budget = used >> shift;
    return r > (budget > PA_LFH_RETAIN_MIN ? budget : PA_LFH_RETAIN_MIN);
}

size_t _pa_lfh_pay_locked(pa_heap_t *h, size_t want)
{
    pa_lfh_t *L = h->lfh;
    size_t paid = 0;
    for (unsigned b = 0; L && b < PA_LFH_BUCKETS && paid < want; b++) {
        pa_lfh_bucket_t *bk = &L->bucket[b];
        while (paid < want && __atomic_load_n(&bk->empty, __ATOMIC_RELAXED) &&
               over_budget(L, PA_LFH_RETAIN_SHIFT)) {
            spin_lock(&bk->lock);
            pa_lfh_sub_t *sub = bk->empty ? empty_pop(L, bk) : NULL;
            spin_unlock(&bk->lock);
            if (!sub) break;
            paid += (size_t)sub->nchunks * PA_LFH_CHUNK;
            release_sub_locked(h, sub);
        }
    }
    return paid;
}

/* Appends slot s to the list head..tail. */
static inline void append(pa_block_t **head, pa_block_t **tail, pa_block_t *s)
{
    if (*tail) _pa_lfh_link(*tail, s);
    else *head = s;
    *tail = s;
}

/* Takes up to `want` slots of bucket b into a list linked through the first user word, in
 * address order within each subsegment (the order a program that allocates a batch then
 * walks it reads them).
 * Returns how many. Takes the bucket lock (and the heap lock to carve a subsegment). */
static unsigned take_slots(pa_heap_t *h, unsigned b, unsigned want, pa_block_t **out)
{
    pa_lfh_bucket_t *bk = &h->lfh->bucket[b];
    pa_block_t *head = NULL, *tail = NULL;
    unsigned got = 0;
    spin_lock(&bk->lock);
    while (got < want) {
        pa_lfh_sub_t *sub = bk->partial;
        if (!sub && bk->empty) {
            sub = empty_pop(h->lfh, bk);
            list_add(bk, sub);
        }
        if (!sub) {
            spin_unlock(&bk->lock);
            sub = new_sub(h, b);
            spin_lock(&bk->lock);
            if (!sub) break;
            list_add(bk, sub);
        }
        while (got < want && sub->used < sub->bump) {
            unsigned w = sub->low;
            while (w < PA_LFH_SUB_WORDS && !sub->freebits[w]) w++;
            if (w == PA_LFH_SUB_WORDS) { /* a count the bitmap disagrees with: corrupted */
                sub->used = sub->bump;
                break;
            }
            uint64_t bits = sub->freebits[w];
            while (bits && got < want) {
                uint32_t i = (uint32_t)(w * 64 + (unsigned)__builtin_ctzll(bits));
                bits &= bits - 1;
                pa_block_t *s = (pa_block_t *)(sub->first + (size_t)i * bk->slot_size);
                sub->used++;
                /* A handed-back slot's header says free slot i of this bucket unless
                 * something wrote into it since: such a slot is not handed out again (it
                 * stays counted as used, so HeapValidate fails on its header). */
                if (i >= sub->bump || s->size != i || s->flags != PA_BLK_LFH || s->bucket != b)
                    continue;
                append(&head, &tail, s);
                got++;
            }
            sub->freebits[w] = bits;
            sub->low = (uint16_t)(bits ? w : w + 1);
        }
        while (got < want && sub->bump < sub->nslots) {
            pa_block_t *s = (pa_block_t *)(sub->first + (size_t)sub->bump * sub->slot_size);
            s->size = sub->bump++;
            s->prev_size = 0;
            s->extra = 0;
            s->flags = PA_BLK_LFH;
            s->bucket = (uint8_t)b;
            s->tag = _pa_blk_tag(h, s);
            append(&head, &tail, s);
            sub->used++;
            got++;
        }
        if (sub->used >= sub->nslots) list_remove(bk, sub);
    }
    spin_unlock(&bk->lock);
    if (tail) _pa_lfh_link(tail, NULL);
    *out = head;
    return got;
}

/* Whether slot s (a slot of bucket b handed out earlier, so its subsegment stays) lies in a
 * subsegment starting at sub, by the segment map alone: sub is then safe to read. */
static int sub_holds(pa_lfh_t *L, const pa_lfh_sub_t *sub, const pa_block_t *s, unsigned b)
{
    pa_lfh_seg_t *sg = _pa_lfh_seg_find(L, (uintptr_t)s);
    if (!sg) return 0;
    size_t c = ((uintptr_t)s - sg->base) / PA_LFH_CHUNK;
    unsigned m = __atomic_load_n(&sg->map[c], __ATOMIC_RELAXED), o = _pa_lfh_map_off(m);
    return o < 8u && o <= c && _pa_lfh_map_bucket(m) == b &&
           (uintptr_t)sub == sg->base + (c - o) * PA_LFH_CHUNK;
}

/* Returns a list of n free slots of bucket b (flags already cleared) to their subsegments.
 * A subsegment that becomes free goes onto the bucket's empty list; when can_release, the
 * list then gives subsegments back while the heap retains more than its budget (taking the
 * heap lock after dropping the bucket lock). */
static void give_slots(pa_heap_t *h, unsigned b, pa_block_t *list, int can_release)
{
    pa_lfh_bucket_t *bk = &h->lfh->bucket[b];
    pa_lfh_sub_t *dead = NULL;
    pa_lfh_sub_t *cur = NULL; /* the last slot's subsegment, checked and listed */
    uint32_t nslots = _pa_lfh_geom[b].span / bk->slot_size;
    spin_lock(&bk->lock);
    while (list) {
        pa_block_t *s = list;
        list = *(pa_block_t **)(s + 1);
        uint32_t i = s->size; /* checked when the slot was freed; bounded again here */
        pa_lfh_sub_t *sub = sub_of(s, bk->slot_size);
        if (i >= nslots) continue; /* lost */
        if (sub != cur) { /* (runs of slots of one subsegment are the rule) */
            /* A free slot's header may be written since it was freed (Python with
             * heap_guard=False): sub, from its index, is read only if the map says s lies
             * in the subsegment at sub. (A sub equal to cur was checked so: s is its slot i.) */
            if (!sub_holds(h->lfh, sub, s, b)) continue; /* lost */
            if (sub->magic != PA_LFH_SUB_MAGIC || sub->bucket != b) continue; /* lost */
            if (!sub->listed) list_add(bk, sub);
            cur = sub;
        }
        sub->freebits[i / 64] |= (uint64_t)1 << (i % 64);
        if (i / 64 < sub->low) sub->low = (uint16_t)(i / 64);
        if (--sub->used == 0) {
            cur = NULL;
            /* Carved afresh from its first slot when reused, with no bitmap to read (the
             * old headers say free: a stale pointer is still refused). */
            memset(sub->freebits, 0, ((size_t)sub->bump + 63) / 64 * sizeof(uint64_t));
            sub->low = 0;
            sub->bump = 0;
            list_remove(bk, sub);
            empty_push(h->lfh, bk, sub);
        }
    }
    while (can_release && bk->empty && over_budget(h->lfh, PA_LFH_CREDIT_SHIFT)) {
        pa_lfh_sub_t *sub = empty_pop(h->lfh, bk);
        sub->next = dead;
        dead = sub;
    }
    spin_unlock(&bk->lock);
    if (dead) {
        pthread_mutex_lock(&h->lock);
        while (dead) {
            pa_lfh_sub_t *next = dead->next;
            release_sub_locked(h, dead);
            dead = next;
        }
        pthread_mutex_unlock(&h->lock);
    }
}

/* Pushes the chain head..tail of n free slots onto bucket b's remote list; 0 (nothing done)
 * when that would put more than max slots on it (a bin's limit, so that a bin that takes the
 * list does not overflow at once). Lock-free. */
static int remote_push(pa_lfh_bucket_t *bk, pa_block_t *head, pa_block_t *tail, uint32_t n,
                       uint32_t max)
{
    if (atomic_fetch_add_explicit(&bk->nremote, (int)n, memory_order_relaxed) + (int)n > (int)max) {
        atomic_fetch_sub_explicit(&bk->nremote, (int)n, memory_order_relaxed);
        return 0;
    }
    pa_block_t *old = atomic_load_explicit(&bk->remote, memory_order_relaxed);
    do {
        _pa_lfh_link(tail, old);
    } while (!atomic_compare_exchange_weak_explicit(&bk->remote, &old, head, memory_order_release,
                                                    memory_order_relaxed));
    return 1;
}

/* Takes bucket b's whole remote list; *count gets its length. Lock-free. Each link's check
 * value is verified before the link is followed (HeapValidate does not read the list): at a
 * corrupted one the list is cut there (the slots past it stay handed out: lost, not
 * reused) and *corrupt set. */
static pa_block_t *remote_take(pa_lfh_bucket_t *bk, uint32_t *count, int *corrupt)
{
    *count = 0;
    if (!atomic_load_explicit(&bk->remote, memory_order_relaxed)) return NULL;
    pa_block_t *head = atomic_exchange_explicit(&bk->remote, NULL, memory_order_acquire);
    uint32_t n = 0;
    for (pa_block_t *s = head; s;) {
        int ok;
        pa_block_t *next = _pa_lfh_next(s, &ok);
        n++;
        if (!ok) {
            _pa_lfh_link(s, NULL);
            *corrupt = 1;
            break;
        }
        s = next;
    }
    /* (nremote keeps counting the lost slots: it only bounds the list.) */
    if (n) atomic_fetch_sub_explicit(&bk->nremote, (int)n, memory_order_relaxed);
    *count = n;
    return head;
}

/* Gives bucket b's remote slots back to their subsegments (HeapCompact, heap lock held). */
static void remote_drain(pa_heap_t *h, unsigned b)
{
    uint32_t n;
    int corrupt = 0;
    pa_block_t *list = remote_take(&h->lfh->bucket[b], &n, &corrupt);
    if (list) give_slots(h, b, list, 0);
}

/* ------------------------------------------------------------------------------------------ */
/* Activation                                                                                  */

void _pa_lfh_note_backend_locked(pa_heap_t *h, size_t n)
{
    unsigned b = _pa_lfh_bucket(n);
    if (h->lfh_on[b] || ++h->lfh_count[b] < PA_LFH_ACTIVATE) return;
    /* The LFH's memory is set up by the bucket's first LFH allocation (fact 60: the walk
     * still shows the back end alone after the 17th). */
    __atomic_store_n(&h->lfh_on[b], 1, __ATOMIC_RELEASE);
    h->compat = 2;
}

int _pa_lfh_ensure(pa_heap_t *h)
{
    if (__atomic_load_n(&h->lfh, __ATOMIC_ACQUIRE)) return 1;
    pthread_mutex_lock(&h->lock);
    int ok = lfh_create_locked(h);
    pthread_mutex_unlock(&h->lock);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Thread caches                                                                               */

pa_lfh_tcache_t *_pa_lfh_tcache_claim(pa_heap_t *h)
{
    pa_lfh_t *L = __atomic_load_n(&h->lfh, __ATOMIC_ACQUIRE);
    if (!L) return NULL;
    uintptr_t self = (uintptr_t)pthread_self();
    for (;;) {
        unsigned n = atomic_load_explicit(&L->ncaches, memory_order_acquire);
        /* (All taken: one load instead of a scan of every owner.) */
        for (unsigned i = 0; i < n && atomic_load_explicit(&L->claimed, memory_order_relaxed) < n;
             i++) {
            pa_lfh_tcache_t *tc = _pa_lfh_tcache_at(L, i);
            uintptr_t expected = 0;
            if (__atomic_load_n(&tc->owner, __ATOMIC_RELAXED) ||
                !__atomic_compare_exchange_n(&tc->owner, &expected, self, 0, __ATOMIC_ACQ_REL,
                                             __ATOMIC_RELAXED))
                continue;
            atomic_fetch_add_explicit(&L->claimed, 1, memory_order_relaxed);
            memset(tc->bin, 0, sizeof tc->bin);
            tc->grown = 0;
            tc->last_seg = tc->prev_seg = &_pa_lfh_no_seg;
            tc->heap = h;
            for (unsigned b = 0; b < PA_LFH_BUCKETS; b++) {
                uint32_t lim = (uint32_t)(PA_LFH_BIN_BYTES / L->bucket[b].slot_size);
                tc->bin[b].limit =
                    (uint16_t)(lim < PA_LFH_BIN_MIN ? PA_LFH_BIN_MIN : lim > 128 ? 128 : lim);
                tc->bin[b].room = (int16_t)tc->bin[b].limit;
                tc->bin[b].slot16 = (uint16_t)(_pa_lfh_geom[b].slot_size / 16);
                tc->bin[b].span16 = (uint16_t)(_pa_lfh_geom[b].span / 16);
            }
            return tc;
        }
        /* All taken: more, if there can be. */
        if (n == PA_LFH_TCACHES_MAX) return NULL;
        pthread_mutex_lock(&h->lock);
        int more = atomic_load_explicit(&L->ncaches, memory_order_relaxed) != n ||
                   more_caches_locked(h);
        pthread_mutex_unlock(&h->lock);
        if (!more) return NULL;
    }
}

/* Moves `count` slots from the head of bin b back to the bucket: onto its remote list when
 * `remote` and there is room, else to the subsegments. Every link is checked before it is
 * followed: at a corrupted one the bin is cut after the last good slot (the slots past it
 * stay handed out: lost, not reused). Returns 0 then, else 1. */
static int flush_some(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned b, uint32_t count,
                      int can_release, int remote)
{
    pa_block_t *head = tc->bin[b].head, *tail = head, *rest;
    if (!count || !head) return 1;
    uint32_t moved = 1;
    int ok;
    for (;;) {
        rest = _pa_lfh_next(tail, &ok);
        if (!ok || !rest || moved == count) break;
        tail = rest;
        moved++;
    }
    if (!ok) rest = NULL;
    tc->bin[b].head = rest;
    _pa_lfh_bin_set_count(tc, b, rest ? _pa_lfh_bin_count(tc, b) - moved : 0);
    if (remote && remote_push(&h->lfh->bucket[b], head, tail, moved, tc->bin[b].limit)) {
        atomic_store_explicit(&h->lfh->bucket[b].pusher, (uintptr_t)tc, memory_order_relaxed);
    } else {
        _pa_lfh_link(tail, NULL);
        give_slots(h, b, head, can_release);
    }
    return ok;
}

int _pa_lfh_flush(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned b)
{
    return flush_some(h, tc, b, _pa_lfh_bin_count(tc, b) - tc->bin[b].limit / 2, 1, 1);
}

void *_pa_lfh_bin_corrupt(pa_lfh_tcache_t *tc, unsigned b)
{
    _pa_lfh_link(tc->bin[b].head, NULL);
    _pa_lfh_bin_set_count(tc, b, 1);
    return PA_LFH_CORRUPT;
}

void _pa_lfh_tcache_release(pa_heap_t *h, pa_lfh_tcache_t *tc)
{
    /* Called under the registry lock: no heap lock, so empty subsegments stay. */
    for (unsigned b = 0; b < PA_LFH_BUCKETS; b++) (void)flush_some(h, tc, b, _pa_lfh_bin_count(tc, b), 0, 0);
    atomic_fetch_sub_explicit(&h->lfh->claimed, 1, memory_order_relaxed);
    __atomic_store_n(&tc->owner, 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------------------------------ */
/* Allocation and free                                                                         */

/* Doubles the limit of bin b (its thread took back what it flushed), up to
 * PA_LFH_BIN_GROW_BYTES, while all that tc's bins grew stays within PA_LFH_GROW_TOTAL shared
 * among the threads holding a cache. The caller sets the bin's count afterwards. */
static void grow_bin(pa_lfh_t *L, pa_lfh_tcache_t *tc, unsigned b)
{
    uint32_t max = (uint32_t)(PA_LFH_BIN_GROW_BYTES / _pa_lfh_geom[b].slot_size);
    max = max < 8 ? 8 : max > 128 ? 128 : max;
    uint32_t lim = (uint32_t)tc->bin[b].limit * 2;
    if (lim > max) lim = max;
    if (lim <= tc->bin[b].limit) return;
    size_t add = (size_t)(lim - tc->bin[b].limit) * _pa_lfh_geom[b].slot_size;
    unsigned claimed = atomic_load_explicit(&L->claimed, memory_order_relaxed);
    if (tc->grown + add > PA_LFH_GROW_TOTAL / (claimed ? claimed : 1)) return;
    tc->grown += add;
    tc->bin[b].limit = (uint16_t)lim;
}

void *_pa_lfh_alloc(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned b, size_t n, DWORD flags)
{
    if (!_pa_lfh_ensure(h)) return NULL;
    if (tc) {
        void *r = _pa_lfh_alloc_fast(tc, b, n, flags);
        if (r) return r;
        pa_block_t *list;
        uint32_t got;
        int corrupt = 0;
        if ((list = remote_take(&h->lfh->bucket[b], &got, &corrupt))) {
            if (atomic_load_explicit(&h->lfh->bucket[b].pusher, memory_order_relaxed) == (uintptr_t)tc)
                grow_bin(h->lfh, tc, b);
            tc->bin[b].head = list;
            _pa_lfh_bin_set_count(tc, b, got);
            return corrupt ? PA_LFH_CORRUPT : _pa_lfh_alloc_fast(tc, b, n, flags);
        }
        unsigned want = tc->bin[b].limit / 2;
        got = take_slots(h, b, want ? want : 1, &list);
        if (!got) return NULL;
        tc->bin[b].head = list;
        _pa_lfh_bin_set_count(tc, b, got);
        return _pa_lfh_alloc_fast(tc, b, n, flags);
    }
    pa_block_t *s;
    if (!take_slots(h, b, 1, &s)) return NULL;
    s->prev_size = (uint32_t)n;
    s->flags = PA_BLK_BUSY | PA_BLK_LFH;
    if (flags & HEAP_ZERO_MEMORY) memset(s + 1, 0, n);
    return s + 1;
}

void _pa_lfh_free(pa_heap_t *h, pa_lfh_tcache_t *tc, pa_block_t *b)
{
    if (tc) {
        (void)_pa_lfh_free_fast(h, tc, b);
        return;
    }
    b->flags = PA_BLK_LFH;
    _pa_lfh_link(b, NULL);
    give_slots(h, b->bucket, b, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* Compaction, statistics, validation, walking                                                 */

void _pa_lfh_compact_locked(pa_heap_t *h)
{
    pa_lfh_t *L = h->lfh;
    if (!L) return;
    for (unsigned b = 0; b < PA_LFH_BUCKETS; b++) {
        pa_lfh_bucket_t *bk = &L->bucket[b];
        pa_lfh_sub_t *dead = NULL;
        remote_drain(h, b);
        spin_lock(&bk->lock);
        while (bk->empty) {
            pa_lfh_sub_t *sub = empty_pop(L, bk);
            sub->next = dead;
            dead = sub;
        }
        for (pa_lfh_sub_t *sub = bk->partial, *next; sub; sub = next) {
            next = sub->next;
            if (sub->used == 0) {
                list_remove(bk, sub);
                sub->next = dead;
                dead = sub;
            }
        }
        spin_unlock(&bk->lock);
        while (dead) {
            pa_lfh_sub_t *next = dead->next;
            release_sub_locked(h, dead);
            dead = next;
        }
    }
    unsigned n = atomic_load_explicit(&L->nsegs, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) decommit_cfree_locked(h, L->segs[i]);
}

static pa_lfh_sub_t *sub_checked(pa_heap_t *h, pa_lfh_seg_t *s, size_t c, unsigned m);

/* Counts the busy slots (and their requested bytes) of every subsegment, under the heap lock,
 * which keeps subsegments from coming or going. Other threads may be allocating and freeing
 * slots meanwhile: like any statistics read while the heap is in use, the counts are those of
 * some moment during the walk. A subsegment whose header or map is corrupted is skipped. */
void _pa_lfh_stats(pa_heap_t *h, size_t *busy_blocks, size_t *busy_bytes, uint64_t *buckets)
{
    pa_lfh_t *L = h->lfh;
    if (!L) return;
    unsigned nsegs = atomic_load_explicit(&L->nsegs, memory_order_acquire);
    for (unsigned i = 0; i < nsegs; i++) {
        pa_lfh_seg_t *s = L->segs[i];
        for (size_t c = 1; c < s->nchunks; c++) {
            unsigned m = __atomic_load_n(&s->map[c], __ATOMIC_RELAXED);
            if (!m || m == PA_LFH_MAP_HEADER || _pa_lfh_map_off(m) != 0) continue;
            pa_lfh_sub_t *sub = sub_checked(h, s, c, m);
            if (!sub) continue;
            unsigned k = _pa_lfh_map_bucket(m);
            size_t slot = _pa_lfh_geom[k].slot_size;
            uint32_t bump = __atomic_load_n(&sub->bump, __ATOMIC_RELAXED);
            uintptr_t first = (uintptr_t)sub + PA_LFH_SUB_HDR;
            if (!bump || !_pa_heap_readable(h, first, (size_t)bump * slot)) continue;
            uint64_t n = 0, bytes = 0;
            for (uint32_t j = 0; j < bump; j++) {
                const pa_block_t *b = (const pa_block_t *)(first + (size_t)j * slot);
                if (__atomic_load_n(&b->flags, __ATOMIC_RELAXED) & PA_BLK_BUSY) {
                    n++;
                    bytes += __atomic_load_n(&b->prev_size, __ATOMIC_RELAXED);
                }
            }
            buckets[k] += n;
            *busy_blocks += n;
            *busy_bytes += bytes;
        }
    }
}

/* The subsegment holding chunk c of s whose map entry is m, checked: its geometry comes from
 * the map's bucket (never from the subsegment header), its chunks carry the map entries of
 * one subsegment, its header is readable (layer 1) and its bump count is in range. NULL when
 * corrupted. A caller reading a slot checks that slot's header is readable. */
static pa_lfh_sub_t *sub_checked(pa_heap_t *h, pa_lfh_seg_t *s, size_t c, unsigned m)
{
    unsigned o = _pa_lfh_map_off(m), bk = _pa_lfh_map_bucket(m);
    if (o >= 8u || o > c || bk >= PA_LFH_BUCKETS) return NULL;
    size_t c0 = c - o, n = _pa_lfh_bucket_nchunks(bk);
    if (c0 + n > s->nchunks) return NULL;
    for (size_t k = 0; k < n; k++)
        if (s->map[c0 + k] != PA_LFH_MAP(k, bk)) return NULL;
    pa_lfh_sub_t *sub = (pa_lfh_sub_t *)(s->base + c0 * PA_LFH_CHUNK);
    if (!_pa_heap_readable(h, (uintptr_t)sub, PA_LFH_SUB_HDR)) return NULL;
    if (sub->bump > _pa_lfh_geom[bk].span / _pa_lfh_geom[bk].slot_size) return NULL;
    return sub;
}

/* sub: checked by sub_checked. A free bit names a slot below bump (read only then). */
static int sub_ok_locked(pa_heap_t *h, pa_lfh_seg_t *s, pa_lfh_sub_t *sub)
{
    if (sub->bucket >= PA_LFH_BUCKETS) return 0;
    pa_lfh_bucket_t *bk = &h->lfh->bucket[sub->bucket];
    if (sub->magic != PA_LFH_SUB_MAGIC || sub->seg != s || sub->slot_size != bk->slot_size ||
        sub->nchunks != bk->nchunks || sub->nslots * sub->slot_size != _pa_lfh_geom[sub->bucket].span ||
        sub->bump > sub->nslots || sub->used > sub->bump ||
        sub->first != (uintptr_t)sub + PA_LFH_SUB_HDR)
        return 0;
    if (sub->bump && !_pa_heap_readable(h, sub->first, (size_t)sub->bump * sub->slot_size)) return 0;
    int ok = 1;
    spin_lock(&bk->lock);
    uint32_t nfree = 0;
    for (unsigned w = 0; w < PA_LFH_SUB_WORDS; w++) {
        uint64_t bits = sub->freebits[w];
        if (bits && w < sub->low) ok = 0;
        for (; bits; bits &= bits - 1) {
            uint32_t i = (uint32_t)(w * 64 + (unsigned)__builtin_ctzll(bits));
            const pa_block_t *slot = (const pa_block_t *)(sub->first + (size_t)i * sub->slot_size);
            if (i >= sub->bump || slot->flags != PA_BLK_LFH) ok = 0; /* (read only below bump) */
            nfree++;
        }
    }
    for (uint32_t i = 0; i < sub->bump && ok; i++) {
        pa_block_t *b = (pa_block_t *)(sub->first + (size_t)i * sub->slot_size);
        if (b->size != i || b->bucket != sub->bucket || b->tag != _pa_blk_tag(h, b) ||
            (b->flags & ~PA_BLK_BUSY) != PA_BLK_LFH)
            ok = 0;
        else if ((b->flags & PA_BLK_BUSY) && b->prev_size > bk->data_size)
            ok = 0;
    }
    if (ok && sub->used + nfree != sub->bump) ok = 0;
    spin_unlock(&bk->lock);
    return ok;
}

/* Is b a free slot of bucket k in h's LFH? Position first (segment, map, geometry, as
 * _pa_lfh_lookup), then the header. Reads nothing through b before that. */
static int free_slot_ok(pa_heap_t *h, pa_lfh_t *L, const pa_block_t *b, unsigned k)
{
    uintptr_t a = (uintptr_t)b;
    pa_lfh_seg_t *s = _pa_lfh_seg_find(L, a);
    if (!s || (a & (U - 1))) return 0;
    size_t off = a + U - s->base;
    if (off >= s->size) return 0;
    unsigned m = s->map[off / PA_LFH_CHUNK], o = _pa_lfh_map_off(m);
    if (o >= 8u || o > off / PA_LFH_CHUNK || _pa_lfh_map_bucket(m) != k) return 0;
    size_t d = _pa_lfh_slot_offset(off, o);
    if (d >= _pa_lfh_geom[k].span || !_pa_heap_readable(h, a, U)) return 0;
    return (size_t)b->size * _pa_lfh_geom[k].slot_size == d && b->flags == PA_BLK_LFH && b->bucket == k;
}

int _pa_lfh_validate_tcache(pa_heap_t *h, pa_lfh_tcache_t *tc)
{
    pa_lfh_t *L = __atomic_load_n(&h->lfh, __ATOMIC_ACQUIRE);
    if (!L || !tc) return 1;
    for (unsigned k = 0; k < PA_LFH_BUCKETS; k++) {
        uint32_t n = 0;
        int ok = 1;
        for (pa_block_t *b = tc->bin[k].head; b; b = _pa_lfh_next(b, &ok))
            if (!ok || ++n > _pa_lfh_bin_count(tc, k) || !free_slot_ok(h, L, b, k)) return 0;
        if (!ok) return 0;
        if (n != _pa_lfh_bin_count(tc, k)) return 0;
    }
    return 1;
}

int _pa_lfh_validate_locked(pa_heap_t *h)
{
    pa_lfh_t *L = h->lfh;
    if (!L) return 1;
    unsigned n = atomic_load_explicit(&L->nsegs, memory_order_acquire);
    for (unsigned i = 0; i < n; i++) {
        pa_lfh_seg_t *s = L->segs[i];
        if (s->magic != PA_LFHSEG_MAGIC || s->heap != h || s->map[0] != PA_LFH_MAP_HEADER) return 0;
        uint32_t nfree = 0, ncfree = 0;
        for (size_t c = 1; c < s->nchunks;) {
            unsigned m = s->map[c];
            if (m && cfree_has(s, c)) return 0;
            if (!m || m == PA_LFH_MAP_HEADER) { /* free, or a chunk of thread caches */
                nfree += !m;
                ncfree += (uint32_t)cfree_has(s, c);
                c++;
                continue;
            }
            pa_lfh_sub_t *sub = sub_checked(h, s, c, m);
            if (!sub || _pa_lfh_map_off(m) != 0 || m != PA_LFH_MAP(0, sub->bucket) ||
                c + sub->nchunks > s->nchunks)
                return 0;
            for (unsigned k = 0; k < sub->nchunks; k++)
                if (s->map[c + k] != PA_LFH_MAP(k, sub->bucket)) return 0;
            if (!sub_ok_locked(h, s, sub)) return 0;
            c += sub->nchunks;
        }
        if (nfree != s->free_chunks || ncfree != s->cfree_chunks || cfree_has(s, 0)) return 0;
    }
    return 1;
}

int _pa_lfh_walk_seg(pa_heap_t *h, pa_lfh_seg_t *s, uintptr_t at, PROCESS_HEAP_ENTRY *e)
{
    while (at < s->base + s->size) {
        size_t c = (at - s->base) / PA_LFH_CHUNK;
        unsigned m = s->map[c];
        if (m == PA_LFH_MAP_HEADER) {
            at = s->base + (c + 1) * PA_LFH_CHUNK;
            continue;
        }
        if (!m) {
            /* Free chunks: an uncommitted range, or where they stay committed a free block
             * (its data one unit in, as a slot's). The walk goes on from the range's end,
             * or from just past the free block's start: that run was listed. */
            int kept = cfree_has(s, c);
            size_t end = c;
            uintptr_t from = s->base + c * PA_LFH_CHUNK;
            while (end < s->nchunks && !s->map[end] && cfree_has(s, end) == kept) end++;
            if (at != from) {
                at = s->base + end * PA_LFH_CHUNK;
                continue;
            }
            memset(e, 0, sizeof *e);
            e->wFlags = kept ? 0 : PROCESS_HEAP_UNCOMMITTED_RANGE;
            e->lpData = (void *)(kept ? from + U : from);
            e->cbData = (DWORD)((end - c) * PA_LFH_CHUNK - (kept ? U : 0));
            e->cbOverhead = (BYTE)(kept ? U : 0);
            return 1;
        }
        pa_lfh_sub_t *sub = sub_checked(h, s, c, m);
        if (!sub) return -1;
        unsigned bk = _pa_lfh_map_bucket(m);
        size_t slot = _pa_lfh_geom[bk].slot_size, nslots = _pa_lfh_geom[bk].span / slot;
        uintptr_t first = (uintptr_t)sub + PA_LFH_SUB_HDR;
        if (at < first) at = first;
        size_t idx = (at - first + slot - 1) / slot;
        if (idx >= nslots) {
            at = (uintptr_t)sub + (size_t)_pa_lfh_bucket_nchunks(bk) * PA_LFH_CHUNK;
            continue;
        }
        pa_block_t *b = (pa_block_t *)(first + idx * slot);
        int used = idx < sub->bump;
        if (used && !_pa_heap_readable(h, (uintptr_t)b, U)) return -1;
        memset(e, 0, sizeof *e);
        e->lpData = b + 1;
        if (used && (b->flags & PA_BLK_BUSY)) {
            e->wFlags = PROCESS_HEAP_ENTRY_BUSY;
            e->cbData = b->prev_size;
            size_t over = slot > b->prev_size ? slot - b->prev_size : 0;
            e->cbOverhead = (BYTE)(over > 255 ? 255 : over);
        } else {
            e->cbData = (DWORD)(slot - U);
            e->cbOverhead = (BYTE)U;
        }
        return 1;
    }
    return 0;
}

pa_block_t *_pa_lfh_block_at(pa_heap_t *h, uintptr_t a)
{
    pa_lfh_t *L = h->lfh;
    if (!L) return NULL;
    pa_lfh_seg_t *s = _pa_lfh_seg_find(L, a);
    if (!s) return NULL;
    size_t c = (a - s->base) / PA_LFH_CHUNK;
    unsigned m = s->map[c];
    if (!m || m == PA_LFH_MAP_HEADER) return NULL;
    pa_lfh_sub_t *sub = sub_checked(h, s, c, m);
    if (!sub) return NULL;
    unsigned bk = _pa_lfh_map_bucket(m);
    size_t slot = _pa_lfh_geom[bk].slot_size;
    uintptr_t first = (uintptr_t)sub + PA_LFH_SUB_HDR;
    if (a < first) return NULL;
    size_t idx = (a - first) / slot;
    if (idx >= sub->bump) return NULL;
    pa_block_t *b = (pa_block_t *)(first + idx * slot);
    if (!_pa_heap_readable(h, (uintptr_t)b, U)) return NULL;
    if (!(b->flags & PA_BLK_BUSY) || a < (uintptr_t)(b + 1)) return NULL;
    return b;
}
