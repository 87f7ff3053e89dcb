/* heap_internal.h: layer 3's private types, shared by heap.c, heap_lfh.c, heap_debug.c and
 * heap_win32.c (the `_pa_heap_` names). Every structure of the heap is described here, once.
 *
 * A heap is a set of *segments*, each one reservation made through layer 2 with owner
 * PA_OWNER_HEAP, plus *large blocks* (one reservation each) and, with the page heap, *page
 * blocks* (one reservation each). The heap object itself (pa_heap_t) sits at the 64 KiB-aligned
 * base of its first segment, so the handle is the heap's base address, as on Windows.
 *
 *   back-end segment   [descriptor][block]...[block][end] commit_end ..uncommitted.. end
 *                      Blocks tile [first, commit_end) exactly; the last granule is an end
 *                      sentinel (busy, PA_BLK_END) so every block has a next one. Only the
 *                      tail beyond commit_end is ever uncommitted, so a block header inside
 *                      [first, commit_end) is always readable.
 *   LFH segment        [64 KiB header chunk][subsegment][free chunks][subsegment]...
 *                      64 KiB chunks; a subsegment is a run of 1..8 chunks holding equal slots
 *                      of one bucket. map[c] = PA_LFH_MAP(c - first chunk of its subsegment,
 *                      bucket): the offset + 1 in its low 4 bits and the bucket above them, so
 *                      a free finds the slot geometry without reading the subsegment header;
 *                      0 for a chunk that belongs to no subsegment (uncommitted).
 *   large block        [pa_large_t 48 B][pa_block_t 16 B][user ...] in its own reservation: the
 *                      user pointer is 64 bytes past a 64 KiB boundary (heap.md fact 21).
 *
 * Block header (pa_block_t, 16 bytes, immediately before the user bytes; x64 granularity):
 *   back end  size = block bytes / 16 (header included); prev_size = size of the previous block
 *             of the segment (0 for the first); extra = block bytes - 16 - requested bytes
 *             (HeapSize is exact); flags; tag = _pa_blk_tag(heap, header), which covers the
 *             address, size and extra.
 *   LFH       size = slot index in the subsegment; prev_size = requested bytes; bucket.
 *   large     size = PA_LARGE_MAGIC; the request lives in pa_large_t.
 * A free back-end block has list links right after its header (pa_free_t), so the smallest
 * block is 32 bytes (a 0-byte request still occupies one 16-byte granule).
 *
 * Invariants (checked by _pa_heap_validate_locked, which HeapValidate runs):
 *   - blocks tile each segment's committed area; next->prev_size == size; tags match;
 *   - no two adjacent free blocks (unless HEAP_DISABLE_COALESCE_ON_FREE);
 *   - every free block is in exactly the free list of its class, and free_bytes/free_blocks
 *     count them;
 *   - with free checking, every free block's bytes past its links hold 0xFEEEFEEE; with tail
 *     checking, the 16 bytes after a busy block's user bytes hold 0xAB.
 *
 * Locks, outermost first: the registry lock (heap.c) > a heap's lock > an LFH bucket lock >
 * the process lock (taken inside layer 2). Nothing calls back up the chain.
 */
#ifndef PA_HEAP_INTERNAL_H
#define PA_HEAP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#include "internal.h"

#define PA_HEAP_UNIT ((size_t)16)         /* block granularity and header size on x64 */
#define PA_HEAP_SIGNATURE 0xFFEEFFEEu     /* at offset 0x10 (heap.md fact 5) */
#define PA_HEAP_MAGIC 0x70614870u         /* "pHap": our own check next to the signature */
#define PA_SEG_MAGIC 0x67655370u          /* "pSeg" */
#define PA_LFHSEG_MAGIC 0x73664c70u       /* "pLfs" */
#define PA_LARGE_MAGIC 0x67724c70u        /* "pLrg" in pa_block_t.size of a large block */
#define PA_PAGEBLK_MAGIC 0x67615070u      /* "pPag" */

/* Windows x64: in-heap blocks end below this total size; larger ones get their own
 * reservation (heap.md facts 23-24). Also the limit of a fixed heap's single block. */
#define PA_HEAP_LARGE_THRESHOLD ((size_t)0xFEFF0)
/* Requests beyond this fail outright (no reservation could hold them). */
#define PA_HEAP_MAX_REQUEST (((size_t)1 << 46) - ((size_t)1 << 20))

#define PA_HEAP_MAX_SEGMENTS 64
#define PA_FREE_CLASSES 136               /* see _pa_free_class */
#define PA_FREE_EXACT 64                  /* classes below this hold one block size each */

/* Lookaside lists of a growable, serialized, non-debug heap: freed back-end blocks of
 * 16-64 KiB requests wait on one of PA_LA_CLASSES lists (four per power of two; requests of a
 * class are carved at the class's size, so any block of the list fits) for the next request
 * of their class, so that a free+alloc pair skips the free lists, coalescing and decommit.
 * Under the heap lock, like every back-end call (fact 54). A listed block keeps its busy
 * header with PA_BLK_CACHED: it is invisible to HeapSize/HeapFree (error 87), reported free
 * by HeapWalk, and never coalesced; HeapCompact empties the lists.
 * A thread with an LFH cache first uses its own lookaside bins of the same classes, without
 * the lock (heap.c, "Thread lookaside bins"); these lists take what the bins cannot. */
#define PA_LA_CLASSES 8
#define PA_LA_DEPTH 4
#define PA_MC_DEPTH 16             /* per thread and class (thread lookaside bins) */
#define PA_MC_BYTES ((size_t)2 << 20) /* bytes a thread's bins of one heap may hold */
#define PA_MC_REMOTE_BYTES ((int64_t)64 << 20) /* bytes the remote lists of a heap may hold */
#define PA_SEGMAP_LFH 0x80000000u
#define PA_MC_ORDER 24                /* back-end segments a lock-free lookup searches */
#define PA_MC_HINTS 1024              /* a thread's hints of where a block's segment is */
#define PA_LA_MIN ((size_t)16368)  /* requests above this (the LFH's limit) ... */
#define PA_LA_MAX ((size_t)65536)  /* ... up to this use the lists */
/* A HeapReAlloc that moves an LFH block to a new size up to this, in an active bucket, takes
 * the new block from the LFH without the heap lock (programs that grow small strings step
 * by step: sqlite3). Larger moves go to the back end, where a growing buffer does not leave
 * a partly used subsegment in every bucket it passes. */
#define PA_LFH_REALLOC_MAX ((size_t)512)

/* Low-fragmentation front end: 128 buckets of user sizes up to 16 KiB. */
#define PA_LFH_BUCKETS 128
#define PA_LFH_MAX_REQUEST ((size_t)16368)
#define PA_LFH_ACTIVATE 17                /* back-end allocations of a class before it switches */
#define PA_LFH_CHUNK ((size_t)0x10000)
/* Threads with a private cache per heap: PA_LFH_TCACHES in the LFH's header chunk, then up
 * to PA_LFH_TC_CHUNKS more chunks of them, each carved from an LFH segment when a thread finds
 * every cache taken (a thread without a cache takes the bucket and heap locks for every LFH
 * call: with 32 threads at once, half of them did). */
#define PA_LFH_TCACHES 16
#define PA_LFH_TC_CHUNKS 12
#define PA_LFH_RETAIN_MIN ((size_t)1 << 20) /* empty subsegments kept committed, see pa_lfh_t */
#define PA_LFH_RETAIN_SHIFT 3
#define PA_LFH_CREDIT_SHIFT 2
/* A thread's bin of a bucket holds up to PA_LFH_BIN_BYTES of slots (at least PA_LFH_BIN_MIN,
 * at most 128 slots), and the bucket's remote list as many: what a thread that frees what
 * another allocates (prodcons) keeps out of use is about twice that per bucket. A bin whose
 * thread takes back the remote list it pushed last (it allocates what it frees) doubles its
 * limit, up to PA_LFH_BIN_GROW_BYTES (at least 8 slots): fewer flushes and refills. With 8
 * KiB bins and empty subsegments kept up to half the bytes in use, bench_preload's prodcons
 * (64 buckets in use) peaked at 1.22-1.28x glibc's RSS when its queue filled; with 2 KiB and
 * a quarter (PA_LFH_CREDIT_SHIFT 2, PA_LFH_RETAIN_SHIFT 3) at 1.10x, and it, trees and
 * bench_heap's small workload are as fast. A thread's bins grow by at most PA_LFH_GROW_TOTAL
 * over the number of threads holding a cache: growth up to 64 KiB held 330 KiB per thread in
 * bench_preload's pool (32 threads, each with 64 blocks live over 63 buckets), and with a
 * cache for every thread its peak RSS went to 1.25-1.41x glibc's (1.07-1.23x up to 8 KiB;
 * 0.97-1.04x with this budget); capping every bin at 4 KiB instead cost churn (one thread)
 * 6% more instructions. */
#define PA_LFH_BIN_BYTES ((size_t)2 << 10)
#define PA_LFH_BIN_MIN 4
#define PA_LFH_BIN_GROW_BYTES ((size_t)64 << 10)
#define PA_LFH_GROW_TOTAL ((size_t)2 << 20)

/* pa_block_t.flags */
#define PA_BLK_BUSY 0x01
#define PA_BLK_LFH 0x02
#define PA_BLK_LARGE 0x04
#define PA_BLK_FILLED 0x08    /* free block carries the free-check fill */
#define PA_BLK_CACHED 0x10    /* large block kept for reuse after HeapFree; a back-end block
                                 on a lookaside list (busy to the back end, freed to the user) */
#define PA_BLK_END 0x20       /* a segment's end sentinel (busy, one granule, never walked) */
#define PA_BLK_DROPPED 0x40   /* free back-end block whose inside pages the host no longer
                                 holds (heap.c, drop_free_for) */

typedef struct pa_heap_s pa_heap_t;

typedef struct pa_block_s {
    uint32_t size;
    uint32_t prev_size;
    uint32_t extra;
    uint8_t flags;
    uint8_t bucket;
    uint16_t tag;
} pa_block_t;

typedef struct pa_free_s {
    pa_block_t hdr;
    struct pa_free_s *next, *prev;
} pa_free_t;

/* Kinds of segment */
#define PA_SEG_BACKEND 1
#define PA_SEG_LFH 2

/* A back-end segment's descriptor, at its base (segment 0's is inside pa_heap_t). */
typedef struct pa_segment_s {
    uint32_t magic;
    uint32_t kind;
    pa_heap_t *heap;
    uintptr_t base;        /* reservation base */
    uintptr_t first;       /* first block header */
    uintptr_t commit_end;  /* blocks tile [first, commit_end) */
    uintptr_t end;         /* base + reserved bytes */
    uintptr_t min_commit;  /* commit_end is never decommitted below this */
} pa_segment_t;

/* An LFH segment's header, at its base (chunk 0). */
#define PA_LFH_SEG_MAX_CHUNKS 512 /* chunks of the largest LFH segment (32 MiB) */
typedef struct pa_lfh_seg_s {
    uint32_t magic;
    uint32_t kind;         /* PA_SEG_LFH: same prefix as pa_segment_t */
    pa_heap_t *heap;
    uintptr_t base;
    size_t size;
    uint32_t nchunks;
    uint32_t free_chunks;
    /* Free chunks that stay committed, their pages dropped (bit c of cfree: chunk c), so that
     * the next subsegments there need no commit (heap_lfh.c, commit_chunks). */
    uint32_t cfree_chunks;
    uint32_t pad;
    uint64_t cfree[PA_LFH_SEG_MAX_CHUNKS / 64];
    uint16_t map[];        /* per chunk, see the file comment */
} pa_lfh_seg_t;

/* A subsegment: equal slots of one bucket, at the start of its first chunk. Slots handed back
 * to it are marked in a bitmap, not linked: a refill takes them in address order and reads no
 * slot to find the next one (a linked list made every step a dependent cache miss), and the
 * slots it hands out lie close together. The smallest bucket's subsegment (one chunk of
 * 32-byte slots) has the most slots: 2038, under the bitmap's 2048. */
#define PA_LFH_SUB_WORDS 32
typedef struct pa_lfh_sub_s {  /* 320 bytes: slot 0 follows */
    uint16_t magic;
    uint8_t bucket;
    uint8_t listed;        /* 1: on the bucket's partial list, 2: on its empty list */
    uint16_t nchunks;
    uint16_t low;          /* freebits words below this are all zero */
    uint32_t slot_size;    /* bytes, header included */
    uint32_t nslots;
    uint32_t used;         /* slots handed out (busy, cached by a thread, or remote) */
    uint32_t bump;         /* slots [bump, nslots) were never handed out */
    uint64_t pad;
    uintptr_t first;       /* slot 0's header */
    struct pa_lfh_sub_s *next, *prev; /* the bucket's list of subsegments with room */
    pa_lfh_seg_t *seg;
    /* Bit i: slot i (< bump) was handed back and is free; bump - used bits are set. */
    uint64_t freebits[PA_LFH_SUB_WORDS];
} pa_lfh_sub_t;
#define PA_LFH_SUB_MAGIC 0x5342u
#define PA_LFH_SUB_HDR ((size_t)320)
/* map[] value of the segment's header chunk: bucket 0 with offset 14, so that every map value
 * (0, the header, a subsegment's chunk) names a bucket < 16 * 16 + 8, and a chunk without
 * slots gives an offset (2^32 - 1 or 14 chunks) that no slot geometry passes. */
#define PA_LFH_MAP_HEADER 0x000Fu
#define PA_LFH_MAP(off, bucket) ((uint16_t)(((unsigned)(bucket) << 4) | ((unsigned)(off) + 1u)))
/* A map value's chunk offset in its subsegment; >= 8 for 0 and the header chunk. (The fast
 * free relies on a legal map: a value of a subsegment's chunk names a bucket < 128.) */
static inline unsigned _pa_lfh_map_off(unsigned m) { return (m & 15u) - 1u; }
static inline unsigned _pa_lfh_map_bucket(unsigned m) { return m >> 4; }

/* Slot geometry of each bucket, the same in every heap (a constant table): slot bytes
 * (header included) and the bytes a subsegment's slots span from the first one. Read by the
 * free path instead of the subsegment header. */
typedef struct pa_lfh_geom_s {
    uint32_t slot_size;
    uint32_t span;         /* slots per subsegment * slot_size */
} pa_lfh_geom_t;
extern const pa_lfh_geom_t _pa_lfh_geom[PA_LFH_BUCKETS] __attribute__((visibility("hidden")));
/* The offset from its subsegment's first slot of the header of user pointer base + off, in
 * a chunk at offset o of its subsegment (wraps to a huge value before the first slot). */
static inline size_t _pa_lfh_slot_offset(size_t off, unsigned o)
{
    return (off & (PA_LFH_CHUNK - 1)) + (size_t)o * PA_LFH_CHUNK - PA_LFH_SUB_HDR - PA_HEAP_UNIT;
}

/* A bucket: its lock guards its subsegment list and every subsegment's free bitmap.
 *
 * Its remote list is a lock-free stack of free slots (linked through their first user word,
 * with the link's check value as in a thread's bin, flags already cleared) that bypasses the lock: a thread whose bin overflows pushes the
 * surplus there with one compare-and-swap (typically the thread that frees what another
 * allocates), and a thread whose bin is empty takes the whole stack with one exchange before
 * it asks the subsegments. Pushes only ever link a chain in front and takes only ever empty
 * the stack, so there is no ABA problem. A slot on the stack still counts as handed out
 * (pa_lfh_sub_t.used), like a slot in a thread's bin. nremote bounds the stack (it is at
 * least the number of slots on it); past a bin's limit the slots go back under the lock. */
typedef struct pa_lfh_bucket_s {
    atomic_int lock;
    uint32_t slot_size;
    uint32_t data_size;    /* the largest request the bucket serves */
    uint32_t nchunks;      /* chunks per subsegment */
    pa_lfh_sub_t *partial; /* subsegments with free or never-used slots */
    pa_lfh_sub_t *empty;   /* fully free subsegments kept committed (linked by next), within
                              the heap's retention budget (pa_lfh_t.retained) */
    _Atomic(pa_block_t *) remote;
    atomic_int nremote;
    uint32_t pad0;
    _Atomic uintptr_t pusher; /* the cache that pushed onto remote last (see PA_LFH_BIN_BYTES) */
    uint32_t pad[2];
} pa_lfh_bucket_t;

/* A thread's private cache for one heap: up to `limit` free slots per bucket. Only its thread
 * touches it. A cached slot is linked through its first user word, and its header's prev_size
 * (unused while the slot is free) holds _pa_lfh_link_chk of that link, checked before the
 * link is followed (bins and remote lists alike): a write into a freed slot is found, not
 * followed. Busy counts are not kept here: pa_heap_stats counts busy slots (_pa_lfh_stats). */
typedef struct pa_lfh_tcache_s {
    struct {                /* 16 bytes: what a pair of fast alloc and free reads of a bin */
        pa_block_t *head;
        int16_t room;       /* limit - slots on the bin (< 0: full, flush on the next free) */
        uint16_t limit;     /* <= 128 */
        uint16_t slot16;    /* the bucket's _pa_lfh_geom, / 16 (slots are <= 16 KiB and */
        uint16_t span16;    /* subsegments <= 512 KiB), so the fast free reads one line */
    } bin[PA_LFH_BUCKETS];
    /* Thread lookaside bins of 16-64 KiB back-end blocks (heap.c, mc_*): freed blocks keep
     * their busy header with PA_BLK_CACHED, linked through the first user word, so that a
     * free+alloc pair of such a size takes no lock. mbusy_* are the thread's changes to the
     * heap's busy counts (they can go negative). */
    struct {
        pa_block_t *head;
        uint32_t count;
    } mbin[PA_LA_CLASSES];
    size_t mbytes;
    int64_t mbusy_bytes, mbusy_blocks;
    size_t grown; /* bytes of slots its bins' limits grew by (see PA_LFH_GROW_TOTAL) */
    /* The LFH segments the thread freed into last (the fast free's range check), never NULL:
     * &_pa_lfh_no_seg until the first LFH frees. */
    pa_lfh_seg_t *last_seg, *prev_seg;
    /* Per MiB of address space (modulo PA_MC_HINTS), 1 + the mc_words slot that held a block
     * the thread freed there last (heap.c mc_word_of); 0: none yet. */
    uint8_t mc_hint[PA_MC_HINTS];
    pa_heap_t *heap;
    uintptr_t owner;       /* pthread_self() of the thread using it, 0 when free */
} pa_lfh_tcache_t;

/* The LFH of one heap, at the start of its first LFH segment's header chunk (after the
 * segment header). */
typedef struct pa_lfh_s {
    pa_lfh_bucket_t bucket[PA_LFH_BUCKETS];
    pa_lfh_seg_t *segs[PA_HEAP_MAX_SEGMENTS];
    atomic_uint nsegs;
    /* Committed bytes of all subsegments (changed under the heap lock), and of those on the
     * buckets' empty lists (changed under their bucket locks). Empty subsegments stay
     * committed while retained <= max(PA_LFH_RETAIN_MIN, (committed - retained) >>
     * PA_LFH_CREDIT_SHIFT): a program that frees a structure and builds it again (trees),
     * or frees blocks of some sizes and then allocates others (a new subsegment takes
     * another bucket's empty one), reuses the pages without a decommit and a page fault per
     * page. What is retained beyond the same bound with PA_LFH_RETAIN_SHIFT is on credit:
     * memory the heap commits elsewhere is paid for by releasing it (_pa_lfh_pay_locked),
     * so that it never raises the peak. HeapCompact releases them all. */
    _Atomic size_t sub_committed, retained;
    size_t cfree_bytes; /* free chunks kept committed in all segments (heap lock) */
    atomic_uint claimed; /* caches that threads hold now */
    atomic_uint ncaches; /* caches there are: PA_LFH_TCACHES + those in more[] */
    pa_lfh_tcache_t *more[PA_LFH_TC_CHUNKS]; /* chunks of PA_LFH_TC_PER_CHUNK caches */
    pa_lfh_tcache_t tcache[PA_LFH_TCACHES];
} pa_lfh_t;
#define PA_LFH_TC_PER_CHUNK ((unsigned)(PA_LFH_CHUNK / sizeof(pa_lfh_tcache_t)))
#define PA_LFH_TCACHES_MAX (PA_LFH_TCACHES + PA_LFH_TC_CHUNKS * PA_LFH_TC_PER_CHUNK)

/* Cache i (< L->ncaches, read with acquire) of L. */
static inline pa_lfh_tcache_t *_pa_lfh_tcache_at(pa_lfh_t *L, unsigned i)
{
    if (i < PA_LFH_TCACHES) return &L->tcache[i];
    i -= PA_LFH_TCACHES;
    return &L->more[i / PA_LFH_TC_PER_CHUNK][i % PA_LFH_TC_PER_CHUNK];
}

/* A large (VirtualAlloc'd) block: 48 bytes then its pa_block_t, so user = base + 64. */
typedef struct pa_large_s {
    pa_heap_t *heap;
    struct pa_large_s *next, *prev;
    size_t requested;
    size_t committed;      /* bytes committed from base */
    size_t reserved;
    pa_block_t hdr;
} pa_large_t;

/* A page-heap block: this header fills the first page of its reservation; the user bytes end
 * at the start of the trailing PAGE_NOACCESS page (rounded down to 16 bytes). */
typedef struct pa_pageblk_s {
    uint32_t magic;
    uint32_t freed;
    pa_heap_t *heap;
    struct pa_pageblk_s *next, *prev;
    uintptr_t user;
    size_t requested;
    size_t reserved;
} pa_pageblk_t;

/* Per-heap debug options (PA_HEAP_DEBUG_* of pyalloc.h). */
#define PA_HEAP_DEBUG_MASK 0x1Fu

/* Statistics counted under the heap lock (the LFH's are summed in when read). */
typedef struct pa_heap_counters_s {
    size_t reserved, committed;
    size_t busy_bytes, busy_blocks;
    size_t free_bytes, free_blocks;
    size_t large_blocks, large_bytes;
    size_t cached_large, cached_large_bytes;
    size_t cached_resident; /* bytes of cached large blocks cleared in place (kept in memory) */
    size_t page_blocks;
} pa_heap_counters_t;

/* The heap object. The fields up to force_flags reproduce Windows x64's offsets (heap.md
 * fact 5); the rest is ours. Its size is the REGION entry's cbData (< 0x1000, fact 46, and
 * small enough for the fixed-heap limits of fact 26). */
struct pa_heap_s {
    uint64_t entry[2];              /* 0x00: where Windows keeps the heap's own block header */
    uint32_t signature;             /* 0x10: PA_HEAP_SIGNATURE */
    uint32_t auto_flags;            /* 0x14: flags & HEAP_GROWABLE */
    uint32_t magic;                 /* 0x18: PA_HEAP_MAGIC */
    uint32_t cookie;                /* 0x1C: random, mixed into block tags */
    pa_process_t *process;          /* 0x20 */
    pa_heap_t *self;                /* 0x28 */
    size_t maximum;                 /* 0x30: 0 for growable heaps */
    uint64_t id;                    /* 0x38: unique creation number */
    uint32_t debug;                 /* 0x40: PA_HEAP_DEBUG_* */
    uint32_t compat;                /* 0x44: HeapCompatibilityInformation */
    uint32_t terminate_on_corruption; /* 0x48 */
    uint32_t nsegs;                 /* 0x4C: entries of segmap[] */
    pa_heap_t *next_heap;           /* 0x50: the process's heaps in creation order */
    pa_lfh_t *lfh;                  /* 0x58: NULL until a bucket activates */
    size_t grow_size;               /* 0x60: next segment's reservation */
    size_t large_cache_max;         /* 0x68: bytes of freed large blocks kept */
    uint32_t flags;                 /* 0x70 */
    uint32_t force_flags;           /* 0x74 */
    pthread_mutex_t lock;           /* recursive, like a critical section */
    pa_segment_t seg0;
    pa_large_t *large, *large_cache;
    pa_pageblk_t *pages, *freed_pages, *freed_pages_tail;
    size_t nfreed_pages;
    uint64_t freemap[(PA_FREE_CLASSES + 63) / 64];
    pa_free_t *free[PA_FREE_CLASSES];
    uint16_t lfh_count[PA_LFH_BUCKETS]; /* back-end allocations per bucket (activation) */
    uint8_t lfh_on[PA_LFH_BUCKETS];     /* bucket served by the LFH */
    pa_heap_counters_t ctr;
    pa_block_t *la[PA_LA_CLASSES];  /* lookaside lists, linked through the first user word */
    uint8_t la_n[PA_LA_CLASSES];
    /* Back-end allocations of 16-64 KiB requests, counted up to PA_LFH_ACTIVATE: from then on
     * a thread gets its cache (the LFH's memory set up if needed) for its lookaside bins even
     * if the heap never served an LFH size. Written under the lock, read without it. */
    uint16_t la_uses;
    /* The back-end and LFH segments in creation order, each described in one word:
     * (base >> 16) << 32 | PA_SEGMAP_LFH for LFH segments | reserved bytes >> 12. A segment's
     * descriptor is at its base (segment 0's is seg0, in this header). */
    uint64_t segmap[PA_HEAP_MAX_SEGMENTS];
    /* Blocks of thread lookaside bins whose thread left (linked like the bins; pushed without
     * the lock, taken under it), and the busy counts those threads took with them. */
    _Atomic(pa_block_t *) mc_orphans;
    _Atomic int64_t mc_busy_bytes, mc_busy_blocks;
    /* Per lookaside class, binned blocks that a thread whose bin was full handed on (a thread
     * that frees what another allocates): pushed with one compare-and-swap, taken whole with
     * one exchange by a thread whose bin is empty (push-only/take-all: no ABA). At most
     * PA_MC_REMOTE_BYTES in all (mc_remote_bytes). */
    _Atomic(pa_block_t *) mc_remote[PA_LA_CLASSES];
    _Atomic int64_t mc_remote_bytes;
    /* The back-end segments with the most committed bytes, most first, in segmap's format
     * but with committed bytes >> 12 in the low word (0 words at the end): where lock-free
     * lookups search, without reading a segment's descriptor. */
    uint64_t mc_words[PA_MC_ORDER];
    /* HeapLock calls not yet undone: while nonzero the thread bins step aside, so that a
     * HeapLock holder excludes other threads' 16-64 KiB calls as on Windows (fact 54; only the
     * LFH's sizes proceed, fact 56). */
    _Atomic uint32_t user_locks;
    /* How freed large blocks are zeroed (large_zero_locked): 0 drop their pages (cheap when
     * the program touched few), 1 clear the pages it touched in place (when it touched most:
     * no page faults when they are reused). Decided from what the last blocks looked like. */
    uint8_t large_dense;
    /* While dropping: frees until the next one looks at what was written (large_zero_locked),
     * and the gap after that one (doubling while blocks come back untouched, up to
     * LARGE_PROBE_MAX_GAP). Both 0 in a new heap: its first large free looks. */
    uint16_t large_probe_left, large_probe_gap;
    /* The written span of the largest large block freed so far, in 64 KiB units and capped
     * (large_zero_locked): how much of the cache may stay resident even while few large bytes
     * are live. (In what was padding: the header's size shifts every block of segment 0.) */
    uint16_t large_keep_floor;
};

/* ---- heap.c ---- */
/* The free-list class of a block of `units` 16-byte granules. */
static inline unsigned _pa_free_class(size_t units)
{
    if (units < PA_FREE_EXACT) return (unsigned)units;
    unsigned b = 63u - (unsigned)__builtin_clzll((unsigned long long)units);
    unsigned c = 64u + (b - 6u) * 4u + (unsigned)((units >> (b - 2u)) & 3u);
    return c < PA_FREE_CLASSES ? c : PA_FREE_CLASSES - 1;
}

/* A block header's check value: its address, the heap's cookie, and its size and extra fields
 * (mixed, so that a change to either shows). Whoever changes size or extra of a block whose
 * tag is checked recomputes the tag afterwards. prev_size and flags are not covered: the LFH
 * rewrites them on every allocation, and the back end checks prev_size against the previous
 * block. */
static inline uint16_t _pa_blk_tag_v(const pa_heap_t *h, uintptr_t a, uint32_t size, uint32_t extra)
{
    /* One multiply: every input bit reaches the top 16 bits of the product. */
    uint64_t x = ((uint64_t)size << 32 | extra) ^ (a >> 4);
    return (uint16_t)((x * 0x9E3779B97F4A7C15ull) >> 48) ^ (uint16_t)h->cookie;
}

static inline uint16_t _pa_blk_tag(const pa_heap_t *h, const pa_block_t *b)
{
    return _pa_blk_tag_v(h, (uintptr_t)b, b->size, b->extra);
}

/* Records a failure: the thread's last error and heap status. Returns 0. */
int _pa_heap_fail(NTSTATUS status);
/* Like _pa_heap_fail with a Win32 code that the status table does not produce. */
int _pa_heap_fail_win32(NTSTATUS status, DWORD error);
/* Locks the heap unless it or the call is HEAP_NO_SERIALIZE; returns whether it locked. */
int _pa_heap_enter(pa_heap_t *h, DWORD flags);
void _pa_heap_leave(pa_heap_t *h, int locked);
/* Back-end block allocation for LFH and the heap's own needs. The heap lock is held. */
void *_pa_heap_backend_alloc_locked(pa_heap_t *h, DWORD flags, size_t size);
/* Reserves a segment of `size` bytes (64 KiB multiple) for the LFH and appends it to segs[].
 * Commits nothing. NULL (last error set) when the heap is full. Heap lock held. */
pa_lfh_seg_t *_pa_heap_new_lfh_segment_locked(pa_heap_t *h, size_t size);
/* Chunks per subsegment of bucket b: room for about 24 slots, 1 to 8 chunks. */
uint32_t _pa_lfh_bucket_nchunks(unsigned b);
/* Releases empty LFH subsegments retained on credit (see pa_lfh_t) until `want` bytes are
 * or none is left; returns the bytes released. Heap lock held, no bucket lock. */
size_t _pa_lfh_pay_locked(pa_heap_t *h, size_t want);
/* Accounts `size` bytes newly committed at addr for the heap (the LFH's subsegments): they
 * are paid for with the pages of cached large blocks kept resident, which move there. Heap
 * lock held. */
void _pa_heap_committed_locked(pa_heap_t *h, uintptr_t addr, size_t size);
/* Finds the heap of a process whose handle is `handle`; NULL when it is not one. */
pa_heap_t *_pa_heap_from_handle(pa_process_t *p, HANDLE handle);
int _pa_heap_validate_locked(pa_heap_t *h);
/* Are [a, a + n) all committed read-write pages of one heap-owned allocation of h's process?
 * (Layer 1's page states, under the process lock: O(pages).) For walking and validation,
 * before they read through metadata that a corrupted map or header could point anywhere. */
int _pa_heap_readable(pa_heap_t *h, uintptr_t a, size_t n);

/* ---- heap_lfh.c ---- */
/* Bucket of a request of n <= PA_LFH_MAX_REQUEST bytes: 16-byte steps up to 1 KiB, then 16
 * per power of two. Every bucket boundary is a multiple of 16, so the bucket depends on
 * (n + 15) / 16 alone: a constant table (heap_lfh.c; a C test checks it against
 * _pa_lfh_bucket_calc). */
extern const uint8_t _pa_lfh_bucket_tab[PA_LFH_MAX_REQUEST / 16 + 1] __attribute__((visibility("hidden")));
static inline unsigned _pa_lfh_bucket(size_t n) { return _pa_lfh_bucket_tab[(n + 15) >> 4]; }
static inline unsigned _pa_lfh_bucket_calc(size_t n)
{
    if (n <= 1024) return n ? (unsigned)((n + 15) >> 4) - 1u : 0u;
    unsigned o = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1)); /* 10..13 */
    return 64u + (o - 10u) * 16u + (unsigned)((n - 1 - ((size_t)1 << o)) >> (o - 4));
}
size_t _pa_lfh_bucket_data_size(unsigned bucket);
/* Sets up the LFH's memory of h if needed (takes the heap lock). 0 when it cannot. */
int _pa_lfh_ensure(pa_heap_t *h);
/* Counts a back-end allocation of an LFH-sized request; activates the bucket at the
 * threshold. Heap lock held. */
void _pa_lfh_note_backend_locked(pa_heap_t *h, size_t n);
/* Allocates from an active bucket; NULL (no error set) when the LFH cannot serve it,
 * PA_LFH_CORRUPT when the thread's bin or the bucket's remote list has a corrupted link. */
void *_pa_lfh_alloc(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned bucket, size_t n, DWORD flags);
/* Result of _pa_lfh_lookup */
#define PA_LFH_NOT_MINE 0
#define PA_LFH_BUSY 1
#define PA_LFH_BAD (-1)
/* Classifies mem: not in any LFH segment of h, a busy LFH block (*hdr set), or a bad
 * pointer inside an LFH segment (free slot, wrong offset). Reads only validated memory. */
/* (inline, below) */
pa_lfh_seg_t *_pa_lfh_seg_find(pa_lfh_t *L, uintptr_t a);
/* Frees a busy LFH block found by _pa_lfh_lookup (corruption found by a flush on the way is
 * dropped silently: see _pa_lfh_free_fast to report it). */
void _pa_lfh_free(pa_heap_t *h, pa_lfh_tcache_t *tc, pa_block_t *hdr);
/* The calling thread's cache for h (claimed on first use), or NULL if none is free and no
 * more can be carved (PA_LFH_TCACHES_MAX, or no memory). Takes the heap lock to carve. */
pa_lfh_tcache_t *_pa_lfh_tcache_claim(pa_heap_t *h);
/* Returns every slot cached in tc to its subsegment and frees tc. */
void _pa_lfh_tcache_release(pa_heap_t *h, pa_lfh_tcache_t *tc);
/* fork phases for h's bucket locks: 0 take them all, 1 and 2 (parent, child) free them. */
void _pa_lfh_fork(pa_heap_t *h, int phase);
/* Releases empty subsegments (HeapCompact). Heap lock held. */
void _pa_lfh_compact_locked(pa_heap_t *h);
/* Adds the LFH's busy slots to busy_blocks, their requested bytes to busy_bytes and per-bucket
 * counts to buckets[] (by walking the subsegments). Heap lock held. */
void _pa_lfh_stats(pa_heap_t *h, size_t *busy_blocks, size_t *busy_bytes, uint64_t *buckets);
int _pa_lfh_validate_locked(pa_heap_t *h);
/* Checks the free slots cached in tc, the calling thread's own cache (NULL: nothing to check):
 * each link passes its check value and is a free slot of its bucket, checked before it is
 * followed, and the counts match. Other threads' caches and the remote lists are not read (they change without a
 * lock). */
int _pa_lfh_validate_tcache(pa_heap_t *h, pa_lfh_tcache_t *tc);
/* Walk support: fills entry for the LFH segment position at/after `at` in seg; returns 0
 * when the segment is exhausted, -1 when its map or a subsegment header is corrupted. */
int _pa_lfh_walk_seg(pa_heap_t *h, pa_lfh_seg_t *seg, uintptr_t at, PROCESS_HEAP_ENTRY *e);
/* For pa_heap_find_block: the busy LFH block containing addr, or NULL. */
pa_block_t *_pa_lfh_block_at(pa_heap_t *h, uintptr_t addr);

/* ---- heap_debug.c ---- */
/* Debug options applied to every heap from the environment (read once). */
uint32_t _pa_heap_env_debug(void);
/* Environment: bytes of freed large blocks a heap keeps (default 64 MiB; 0 disables). */
size_t _pa_heap_env_large_cache(void);
int _pa_heap_env_no_lfh(void);
void _pa_heap_fill_new(pa_heap_t *h, void *user, size_t n, size_t avail);
void _pa_heap_fill_tail(void *user, size_t n);
int _pa_heap_tail_ok(const void *user, size_t n);
void _pa_heap_fill_free(void *from, size_t n);
int _pa_heap_free_fill_ok(const void *from, size_t n);
void *_pa_pageheap_alloc_locked(pa_heap_t *h, DWORD flags, size_t n);
/* Result: 1 found (a page-heap block of h, *blk set), 0 not a page-heap block, -1 bad. */
int _pa_pageheap_lookup_locked(pa_heap_t *h, const void *mem, pa_pageblk_t **blk);
int _pa_pageheap_free_locked(pa_heap_t *h, pa_pageblk_t *b);
void _pa_pageheap_destroy_locked(pa_heap_t *h);
int _pa_pageheap_validate_locked(pa_heap_t *h, pa_pageblk_t *only);
/* Is x a page-heap block of h (busy: freed 0, or on the freed queue: 1): 64 KiB-aligned, its
 * header readable (layer 1), magic and heap right? Checked before a list link is followed. */
int _pa_pageblk_ok(pa_heap_t *h, const pa_pageblk_t *x, uint32_t freed);

/* The check value of a free-slot link (see pa_lfh_tcache_t), kept in the slot's prev_size. A
 * multiplicative hash: every bit of the link moves the upper half of the product, so a link
 * changed by any write into the slot's first 8 user bytes (zeros, a repeated byte, a valid
 * address, ...) keeps its old check value only by a 1 in 2^32 chance. Not a secret: it
 * detects accidents (Python writing into freed memory with heap_guard=False), not attacks. */
static inline uint32_t _pa_lfh_link_chk(const pa_block_t *next)
{
    return (uint32_t)(((uint64_t)(uintptr_t)next * 0x9e3779b97f4a7c15ull) >> 32);
}
/* Links free slot b to next. */
static inline void _pa_lfh_link(pa_block_t *b, pa_block_t *next)
{
    *(pa_block_t **)(b + 1) = next;
    b->prev_size = _pa_lfh_link_chk(next);
}
/* b's link (b itself a checked free slot); *ok = 0 when its check value disagrees. */
static inline pa_block_t *_pa_lfh_next(const pa_block_t *b, int *ok)
{
    pa_block_t *next = *(pa_block_t *const *)(b + 1);
    *ok = b->prev_size == _pa_lfh_link_chk(next);
    return next;
}

/* last_seg of a cache that has not freed yet: size 0, so the fast free's range check fails. */
extern pa_lfh_seg_t _pa_lfh_no_seg __attribute__((visibility("hidden")));

/* The hot paths, inlined into heap.c's entry points: pop a cached slot / push a freed one.
 * Only the cache's own thread calls them. */
/* Moves the surplus of a full bin to the bucket; 0 when a corrupted link was found on the
 * way (the bin is cut before it; heap corruption to report). */
int _pa_lfh_flush(pa_heap_t *h, pa_lfh_tcache_t *tc, unsigned bucket);
/* The bin's head slot has a corrupted link: the bin keeps only that slot (the rest cannot be
 * reached safely). Returns PA_LFH_CORRUPT. */
void *_pa_lfh_bin_corrupt(pa_lfh_tcache_t *tc, unsigned bucket);
#define PA_LFH_CORRUPT ((void *)1)

/* Slots on bin k of tc. */
static inline uint32_t _pa_lfh_bin_count(const pa_lfh_tcache_t *tc, unsigned k)
{
    return (uint32_t)(tc->bin[k].limit - tc->bin[k].room);
}
static inline void _pa_lfh_bin_set_count(pa_lfh_tcache_t *tc, unsigned k, uint32_t n)
{
    tc->bin[k].room = (int16_t)((int)tc->bin[k].limit - (int)n);
}

/* A slot of bin k; NULL when the bin is empty, PA_LFH_CORRUPT when its link is corrupted. */
static inline void *_pa_lfh_alloc_fast(pa_lfh_tcache_t *tc, unsigned k, size_t n, DWORD flags)
{
    pa_block_t *b = tc->bin[k].head;
    if (PA_UNLIKELY(b == NULL)) return NULL;
    int ok;
    pa_block_t *next = _pa_lfh_next(b, &ok);
    if (PA_UNLIKELY(!ok)) return _pa_lfh_bin_corrupt(tc, k);
    tc->bin[k].head = next;
    tc->bin[k].room++;
    b->prev_size = (uint32_t)n;
    b->flags = PA_BLK_BUSY | PA_BLK_LFH;
    if (flags & HEAP_ZERO_MEMORY) __builtin_memset(b + 1, 0, n);
    return b + 1;
}

/* Pushes busy slot b (checked by _pa_lfh_lookup); 0 when the flush that followed found
 * corruption (b is freed all the same). */
static inline int _pa_lfh_free_fast(pa_heap_t *h, pa_lfh_tcache_t *tc, pa_block_t *b)
{
    unsigned k = b->bucket;
    b->flags = PA_BLK_LFH;
    _pa_lfh_link(b, tc->bin[k].head);
    tc->bin[k].head = b;
    if (PA_UNLIKELY(--tc->bin[k].room < 0)) return _pa_lfh_flush(h, tc, k);
    return 1;
}

/* Classifies mem against the LFH of h (tc: the caller's cache, may be NULL). A block passes
 * only if it starts exactly at a slot of a live subsegment (slot index checked against the
 * bucket's geometry, which the segment map gives) and is busy, so a forged header inside user
 * data cannot pass; the per-block tag is not needed here. Reads the segment map and the
 * block header only: no subsegment header. */
static inline int _pa_lfh_lookup(pa_heap_t *h, pa_lfh_tcache_t *tc, const void *mem, pa_block_t **hdr)
{
    uintptr_t a = (uintptr_t)mem;
    pa_lfh_seg_t *s = tc ? tc->last_seg : NULL;
    if (PA_UNLIKELY(!s || a - s->base >= s->size)) {
        if (tc && a - tc->prev_seg->base < tc->prev_seg->size) {
            s = tc->prev_seg;
        } else {
            pa_lfh_t *L = __atomic_load_n(&h->lfh, __ATOMIC_ACQUIRE);
            if (!L) return PA_LFH_NOT_MINE;
            s = _pa_lfh_seg_find(L, a);
            if (!s) return PA_LFH_NOT_MINE;
        }
        if (tc) { /* the two most recent, as the fast free keeps them */
            tc->prev_seg = tc->last_seg;
            tc->last_seg = s;
        }
    }
    size_t off = a - s->base;
    unsigned m = __atomic_load_n(&s->map[off / PA_LFH_CHUNK], __ATOMIC_RELAXED);
    unsigned o = _pa_lfh_map_off(m);
    if (PA_UNLIKELY(o >= 8u || o > off / PA_LFH_CHUNK)) return PA_LFH_BAD; /* 0, header, bad */
    pa_lfh_geom_t g = _pa_lfh_geom[_pa_lfh_map_bucket(m)];
    pa_block_t *b = (pa_block_t *)(a - PA_HEAP_UNIT);
    /* d = b's offset from the subsegment's first slot. d < span before reading b: b lies in
     * the slot area (not in the previous, perhaps uncommitted chunk, nor in the slack after
     * the last slot). */
    size_t d = _pa_lfh_slot_offset(off, o);
    if (PA_UNLIKELY((a & (PA_HEAP_UNIT - 1)) || d >= g.span)) return PA_LFH_BAD;
    if (PA_UNLIKELY((size_t)b->size * g.slot_size != d || b->flags != (PA_BLK_BUSY | PA_BLK_LFH) ||
                    b->bucket != _pa_lfh_map_bucket(m)))
        return PA_LFH_BAD; /* (the free path indexes the thread's bins by b->bucket) */
    *hdr = b;
    return PA_LFH_BUSY;
}

/* Records a heap event in the process's trace: one relaxed load while tracing is off. */
static inline void _pa_heap_trace(pa_process_t *p, uint32_t op, const void *address, size_t size,
                                  DWORD flags, const void *heap, int64_t result)
{
    if (PA_UNLIKELY(atomic_load_explicit(&p->trace.enabled, memory_order_relaxed)))
        pa_trace_record(p, PA_LAYER_HEAP, op, (uint64_t)(uintptr_t)address, size, flags,
                        (uint64_t)(uintptr_t)heap, result);
}

#endif /* PA_HEAP_INTERNAL_H */
