/* test_heap.c: layer 3's back end and entry points against ../shared/reference/heap.md
 * section 1 (facts numbered as there), plus misuse detection and statistics. Each test uses a
 * private process, detached and destroyed at the end. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "heap_internal.h" /* the LFH's bucket table and link check */
#include "os/os.h"                 /* _pa_os_page_flags: what the host holds */
#include "pyalloc.h"
#include "pyalloc/windows.h"

#define P8 ((size_t)8)
#define A ((size_t)0x8000 * P8) /* heap.md's unit: 0x40000 on x64 */

static pa_process_t *proc_new(void)
{
    pa_process_t *p = pa_process_create(NULL, NULL);
    if (!p) abort();
    return p;
}

static void proc_end(pa_process_t *p)
{
    pa_heap_process_detach(p);
    CHECK_EQ(pa_process_destroy(p), STATUS_SUCCESS);
}

#define CHECK_FAILS(call, gle)                                                                   \
    do {                                                                                         \
        pa_set_last_error(0xDEADBEEFu);                                                          \
        CHECK(!(call));                                                                          \
        CHECK_EQ(pa_get_last_error(), (gle));                                                    \
    } while (0)

/* Collects a whole walk. Returns the number of entries. */
static int walk_all(pa_process_t *p, HANDLE h, PROCESS_HEAP_ENTRY *out, int max)
{
    PROCESS_HEAP_ENTRY e;
    memset(&e, 0, sizeof e);
    int n = 0;
    while (pa_heap_walk(p, h, &e)) {
        if (n < max) out[n] = e;
        n++;
        if (n > 100000) break;
    }
    CHECK_EQ(pa_get_last_error(), ERROR_NO_MORE_ITEMS);
    return n;
}

/* ---- 1.1 HeapCreate / HeapDestroy / GetProcessHeap(s) ---- */

TEST(fact01_handles_are_64k_aligned)
{
    pa_process_t *p = proc_new();
    HANDLE a = pa_heap_create(p, 0, 0, 0), b = pa_heap_create(p, 0, 0x1000, 0x10000),
           c = pa_heap_create(p, HEAP_NO_SERIALIZE, 0, 0);
    CHECK(a && b && c);
    CHECK_EQ((uintptr_t)a & 0xFFFF, 0);
    CHECK_EQ((uintptr_t)b & 0xFFFF, 0);
    CHECK_EQ((uintptr_t)c & 0xFFFF, 0);
    proc_end(p);
}

TEST(fact02_03_process_heaps_listed_in_creation_order)
{
    pa_process_t *p = proc_new();
    DWORD n0 = pa_heap_get_process_heaps(p, 0, NULL);
    CHECK(n0 >= 1 && n0 <= 6);
    HANDLE a = pa_heap_create(p, 0, 0, 0), b = pa_heap_create(p, 0, 0, 0);
    CHECK_EQ(pa_heap_get_process_heaps(p, 0, NULL), n0 + 2);
    HANDLE list[16];
    CHECK_EQ(pa_heap_get_process_heaps(p, 16, list), n0 + 2);
    CHECK(list[0] == pa_heap_get_process_heap(p));
    CHECK(list[n0] == a && list[n0 + 1] == b);
    CHECK(pa_heap_destroy(p, a));
    CHECK_EQ(pa_heap_get_process_heaps(p, 0, NULL), n0 + 1);
    proc_end(p);
}

TEST(fact04_destroy_errors)
{
    pa_process_t *p = proc_new();
    CHECK_FAILS(pa_heap_destroy(p, pa_heap_get_process_heap(p)), ERROR_INVALID_HANDLE);
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    CHECK(pa_heap_destroy(p, h));
    CHECK_FAILS(pa_heap_destroy(p, h), ERROR_INVALID_HANDLE);
    CHECK_FAILS(pa_heap_destroy(p, (HANDLE)0x12340000), ERROR_INVALID_HANDLE);
    /* A destroyed heap's handle is refused by everything, without touching its memory. */
    CHECK_FAILS(pa_heap_alloc(p, h, 0, 10), ERROR_INVALID_HANDLE);
    CHECK_FAILS(pa_heap_free(p, h, 0, (char *)h + 0x1000), ERROR_INVALID_HANDLE);
    pa_set_last_error(0);
    CHECK_EQ(pa_heap_size(p, h, 0, (char *)h + 0x1000), (SIZE_T)-1);
    CHECK_EQ(pa_get_last_error(), ERROR_INVALID_HANDLE);
    proc_end(p);
}

TEST(fact05_header_layout_and_flags)
{
    pa_process_t *p = proc_new();
    struct { DWORD opts; SIZE_T init, max; DWORD flags, force; } cases[] = {
        {0, 0, 0, 0x1002, 0},
        {HEAP_NO_SERIALIZE, 0, 0, 0x1003, 0x1},
        {0, 0x1000, 0x10000, 0x1000, 0},
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char *h = pa_heap_create(p, cases[i].opts, cases[i].init, cases[i].max);
        CHECK(h != NULL);
        CHECK_EQ(*(DWORD *)(h + 0x10), 0xFFEEFFEEu);
        CHECK_EQ(*(DWORD *)(h + 0x70), cases[i].flags);
        CHECK_EQ(*(DWORD *)(h + 0x74), cases[i].force);
        DWORD autof = *(DWORD *)(h + 0x14);
        CHECK(autof == 0 || autof == (cases[i].flags & HEAP_GROWABLE));
    }
    unsigned char *ph = pa_heap_get_process_heap(p);
    CHECK_EQ(*(DWORD *)(ph + 0x70), HEAP_GROWABLE);
    CHECK_EQ(*(DWORD *)(ph + 0x74), 0);
    proc_end(p);
}

TEST(fact05_win32_heapcreate_drops_check_flags)
{
    unsigned char *h = HeapCreate(HEAP_TAIL_CHECKING_ENABLED | HEAP_FREE_CHECKING_ENABLED |
                                      HEAP_NO_SERIALIZE, 0, 0);
    CHECK(h != NULL);
    CHECK_EQ(*(DWORD *)(h + 0x70), 0x1003);
    CHECK_EQ(*(DWORD *)(h + 0x74), 0x1);
    void *x = HeapAlloc(h, 0, 17);
    CHECK(x != NULL);
    CHECK(HeapFree(h, 0, x));
    CHECK(HeapDestroy(h));
    CHECK(GetProcessHeap() != NULL);
    CHECK(GetProcessHeap() == GetProcessHeap());
}

/* ---- 1.2 HeapAlloc / HeapSize / HeapFree ---- */

TEST(fact09_10_sizes_are_exact)
{
    pa_process_t *p = proc_new();
    HANDLE heaps[2] = {pa_heap_create(p, 0, 0, 0), pa_heap_create(p, 0, 0, 0x100000)};
    size_t sizes[] = {0, 1, 17, 123, 456, A, 3 * A, 1 << 20, 3000 * 1024 + 37};
    for (int k = 0; k < 2; k++)
        for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            void *x = pa_heap_alloc(p, heaps[k], 0, sizes[i]);
            if (k == 1 && sizes[i] >= A) {
                CHECK(sizes[i] < 0x100000 || x == NULL);
                if (!x) continue;
            }
            CHECK(x != NULL);
            CHECK_EQ(pa_heap_size(p, heaps[k], 0, x), sizes[i]);
            CHECK(pa_heap_free(p, heaps[k], 0, x));
        }
    proc_end(p);
}

TEST(fact11_12_huge_requests_fail_with_error_8)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    CHECK_FAILS(pa_heap_alloc(p, h, 0, ~(SIZE_T)0), ERROR_NOT_ENOUGH_MEMORY);
    void *x = pa_heap_alloc(p, h, 0, 100);
    CHECK_FAILS(pa_heap_realloc(p, h, 0, x, ~(SIZE_T)0 - 7), ERROR_NOT_ENOUGH_MEMORY);
    CHECK_FAILS(pa_heap_realloc(p, h, 0, x, ~(SIZE_T)0), ERROR_NOT_ENOUGH_MEMORY);
    CHECK(pa_heap_validate(p, h, 0, x));
    CHECK_EQ(pa_heap_size(p, h, 0, x), 100);
    proc_end(p);
}

TEST(fact17_18_zero_memory)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    size_t sizes[] = {1, A, 1 << 20};
    for (unsigned i = 0; i < 3; i++) {
        unsigned char *x = pa_heap_alloc(p, h, 0, sizes[i]);
        memset(x, 0xCC, sizes[i]);
        pa_heap_free(p, h, 0, x);
        x = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, sizes[i]);
        size_t bad = 0;
        for (size_t j = 0; j < sizes[i]; j++) bad += x[j] != 0;
        CHECK_EQ(bad, 0);
        pa_heap_free(p, h, 0, x);
    }
    /* A fresh large block reads as zero without HEAP_ZERO_MEMORY (fact 18). */
    unsigned char *big = pa_heap_alloc(p, h, 0, 3000 * 1024 + 37);
    CHECK_EQ(big[3000 * 1024 + 35], 0);
    CHECK_EQ(big[3000 * 1024 + 36], 0);
    /* Growing with HEAP_ZERO_MEMORY zeroes the new tail. */
    unsigned char *y = pa_heap_alloc(p, h, 0, 1);
    y[0] = 7;
    y = pa_heap_realloc(p, h, HEAP_ZERO_MEMORY, y, 1 << 20);
    CHECK(y != NULL);
    CHECK_EQ(y[0], 7);
    size_t bad = 0;
    for (size_t j = 1; j < (1 << 20); j++) bad += y[j] != 0;
    CHECK_EQ(bad, 0);
    unsigned char *z = pa_heap_alloc(p, h, 0, A);
    memset(z, 0x55, A);
    z = pa_heap_realloc(p, h, HEAP_ZERO_MEMORY, z, 3 * A);
    bad = 0;
    for (size_t j = A; j < 3 * A; j++) bad += z[j] != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(z[A - 1], 0x55);
    proc_end(p);
}

TEST(fact19_20_21_alignment)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    uintptr_t any_or = 0, all_and = ~(uintptr_t)0;
    for (int i = 0; i < 128; i++) {
        uintptr_t x = (uintptr_t)pa_heap_alloc(p, h, 0, A + (size_t)i * 8);
        CHECK_EQ(x % 16, 0);
        any_or |= x;
        all_and &= x;
    }
    CHECK(any_or & 16); /* not all multiples of 32 */
    for (int i = 0; i < 4; i++) {
        uintptr_t x = (uintptr_t)pa_heap_alloc(p, h, 0, 4 * A);
        CHECK_EQ(x % 128, 64); /* 8P mod 16P */
    }
    (void)all_and;
    proc_end(p);
}

TEST(fact23_25_large_threshold)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *in = pa_heap_alloc(p, h, 0, 0xFD000), *out = pa_heap_alloc(p, h, 0, 0xFF000);
    CHECK(in && out);
    CHECK(((uintptr_t)in & 0xFFFF) != 64 || 1);
    CHECK_EQ((uintptr_t)out & 0xFFFF, 64);
    PROCESS_HEAP_ENTRY e[64];
    int n = walk_all(p, h, e, 64), seen_in = 0, seen_out = 0;
    for (int i = 0; i < n && i < 64; i++) {
        if (e[i].lpData == in) seen_in = e[i].iRegionIndex != 64;
        if (e[i].lpData == out) seen_out = e[i].iRegionIndex == 64;
    }
    CHECK(seen_in && seen_out);
    CHECK(pa_heap_alloc(p, h, 0, 5 * A + 1) != NULL);
    CHECK(pa_heap_alloc(p, h, 0, 4 * A) != NULL);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* ---- 1.4 fixed-size heaps ---- */

TEST(fact26_fixed_heap_capacity)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, A, A);
    void *x = pa_heap_alloc(p, h, 0, A - (0x400 + 0x100 * P8));
    CHECK(x != NULL);
    CHECK_EQ(pa_heap_size(p, h, 0, x), A - (0x400 + 0x100 * P8));
    pa_heap_free(p, h, 0, x);
    CHECK_FAILS(pa_heap_alloc(p, h, 0, A - (0x200 + 0x80 * P8)), ERROR_NOT_ENOUGH_MEMORY);
    proc_end(p);
}

TEST(fact27_fixed_heap_single_block_limit)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 8 * A, 8 * A);
    void *z = pa_heap_alloc(p, h, 0, 0);
    CHECK(z != NULL);
    CHECK_EQ(pa_heap_size(p, h, 0, z), 0);
    CHECK_FAILS(pa_heap_alloc(p, h, 0, 4 * A), ERROR_NOT_ENOUGH_MEMORY);
    void *a = pa_heap_alloc(p, h, 0, A);
    CHECK(a != NULL);
    CHECK_FAILS(pa_heap_alloc(p, h, 0, 4 * A), ERROR_NOT_ENOUGH_MEMORY);
    proc_end(p);
}

TEST(fact28_32_realloc_in_place)
{
    pa_process_t *p = proc_new();
    HANDLE fixed = pa_heap_create(p, 0, 8 * A, 8 * A), grow = pa_heap_create(p, 0, 0, 0);
    unsigned char *x = pa_heap_alloc(p, fixed, 0, 16);
    x = pa_heap_realloc(p, fixed, HEAP_ZERO_MEMORY, x, 2 * A);
    CHECK(x != NULL);
    CHECK_EQ(x[2 * A - 1], 0);
    CHECK(pa_heap_realloc(p, fixed, HEAP_REALLOC_IN_PLACE_ONLY, x, A + A / 2) == x);
    CHECK(pa_heap_realloc(p, fixed, HEAP_REALLOC_IN_PLACE_ONLY, x, 2 * A) == x);
    CHECK_EQ(pa_heap_size(p, fixed, 0, x), 2 * A);
    void *y = pa_heap_alloc(p, grow, 0, 3 * A);
    CHECK(pa_heap_realloc(p, grow, HEAP_REALLOC_IN_PLACE_ONLY, y, A + A / 2) == y);
    CHECK(pa_heap_realloc(p, grow, HEAP_REALLOC_IN_PLACE_ONLY, y, 2 * A) == y);
    CHECK(pa_heap_validate(p, grow, 0, NULL));
    CHECK(pa_heap_validate(p, fixed, 0, NULL));
    proc_end(p);
}

TEST(fact30_realloc_null)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    pa_set_last_error(0xDEADBEEF);
    CHECK(pa_heap_realloc(p, h, 0, NULL, 1) == NULL);
    CHECK_EQ(pa_get_last_error(), 0);
    proc_end(p);
}

TEST(fact33_large_shrink_then_grow_in_place_fails)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x = pa_heap_alloc(p, h, 0, 1 << 20);
    CHECK(pa_heap_realloc(p, h, HEAP_REALLOC_IN_PLACE_ONLY, x, A + A / 2) == x);
    CHECK_FAILS(pa_heap_realloc(p, h, HEAP_REALLOC_IN_PLACE_ONLY, x, 2 * A), ERROR_NOT_ENOUGH_MEMORY);
    CHECK_EQ(pa_heap_size(p, h, 0, x), A + A / 2);
    proc_end(p);
}

TEST(realloc_moves_and_keeps_contents)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    unsigned char *x = pa_heap_alloc(p, h, 0, 100);
    for (int i = 0; i < 100; i++) x[i] = (unsigned char)i;
    void *blocker = pa_heap_alloc(p, h, 0, 100);
    unsigned char *y = pa_heap_realloc(p, h, 0, x, 5000);
    CHECK(y != NULL);
    int bad = 0;
    for (int i = 0; i < 100; i++) bad += y[i] != i;
    CHECK_EQ(bad, 0);
    CHECK_EQ(pa_heap_size(p, h, 0, y), 5000);
    y = pa_heap_realloc(p, h, 0, y, 2 << 20); /* to a large block */
    bad = 0;
    for (int i = 0; i < 100; i++) bad += y[i] != i;
    CHECK_EQ(bad, 0);
    y = pa_heap_realloc(p, h, 0, y, 50); /* large shrinks in place */
    CHECK_EQ(pa_heap_size(p, h, 0, y), 50);
    CHECK(pa_heap_free(p, h, 0, y));
    CHECK(pa_heap_free(p, h, 0, blocker));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* ---- 1.6 HeapValidate ---- */

TEST(fact36_validate_keeps_last_error)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x = pa_heap_alloc(p, h, 0, 10);
    pa_set_last_error(0x1234);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_validate(p, h, 0, x));
    CHECK(!pa_heap_validate(p, h, 0, (char *)x + 16));
    CHECK_EQ(pa_get_last_error(), 0x1234);
    proc_end(p);
}

/* ---- 1.8 HeapWalk ---- */

TEST(fact44_45_46_fresh_heap_walk)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    PROCESS_HEAP_ENTRY e[8], again[8];
    int n = walk_all(p, h, e, 8);
    CHECK_EQ(n, 3);
    CHECK_EQ(e[0].wFlags, PROCESS_HEAP_REGION);
    CHECK(e[0].lpData == h);
    CHECK(e[0].cbData <= 0x1000);
    CHECK_EQ(e[0].cbOverhead, 0);
    CHECK_EQ(e[0].iRegionIndex, 0);
    CHECK_EQ(e[0].Region.dwCommittedSize, 0x2000);
    CHECK_EQ(e[0].Region.dwUnCommittedSize, 0x10000 - e[0].Region.dwCommittedSize);
    CHECK((char *)e[0].Region.lpFirstBlock == (char *)e[0].lpData + e[0].cbData + 2 * P8);
    CHECK_EQ(e[1].wFlags, 0);
    CHECK_EQ(e[2].wFlags, PROCESS_HEAP_UNCOMMITTED_RANGE);
    CHECK((char *)e[0].Region.lpLastBlock == (char *)e[2].lpData + e[2].cbData);
    CHECK_EQ(walk_all(p, h, again, 8), 3);
    CHECK(!memcmp(e, again, 3 * sizeof *e));
    proc_end(p);
}

TEST(fact49_50_walk_busy_and_large_blocks)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    PROCESS_HEAP_ENTRY before[8], e[8];
    CHECK_EQ(walk_all(p, h, before, 8), 3);
    char *x = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, 123);
    CHECK_EQ(walk_all(p, h, e, 8), 4);
    CHECK_EQ(e[1].wFlags, PROCESS_HEAP_ENTRY_BUSY);
    CHECK(e[1].lpData == x);
    CHECK_EQ(e[1].cbData, 123);
    CHECK(e[1].cbOverhead != 0);
    CHECK_EQ(e[2].wFlags, 0);
    CHECK((char *)e[2].lpData == x + 123 + e[1].cbOverhead + 2 * P8);
    CHECK_EQ(e[2].cbOverhead, 4 * P8);
    CHECK_EQ(e[3].wFlags, PROCESS_HEAP_UNCOMMITTED_RANGE);
    char *y = pa_heap_alloc(p, h, 0, 456);
    CHECK_EQ(walk_all(p, h, e, 8), 5);
    CHECK(e[2].lpData == y && e[2].cbData == 456 && e[2].wFlags == PROCESS_HEAP_ENTRY_BUSY);
    char *big = pa_heap_alloc(p, h, 0, 5 * A);
    CHECK_EQ(walk_all(p, h, e, 8), 6);
    CHECK(e[5].lpData == big);
    CHECK_EQ(e[5].wFlags, PROCESS_HEAP_ENTRY_BUSY);
    CHECK_EQ(e[5].cbData, 5 * A);
    CHECK_EQ(e[5].cbOverhead, 0);
    CHECK_EQ(e[5].iRegionIndex, 64);
    pa_heap_free(p, h, 0, big);
    pa_heap_free(p, h, 0, y);
    pa_heap_free(p, h, 0, x);
    CHECK_EQ(walk_all(p, h, e, 8), 3);
    CHECK(!memcmp(e, before, 3 * sizeof *e));
    proc_end(p);
}

TEST(walk_of_grown_heap_lists_every_block_once)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { N = 300 };
    void *x[N];
    for (int i = 0; i < N; i++) x[i] = pa_heap_alloc(p, h, 0, 20000 + (size_t)i * 16);
    for (int i = 0; i < N; i += 3) pa_heap_free(p, h, 0, x[i]);
    static PROCESS_HEAP_ENTRY e[2000];
    int n = walk_all(p, h, e, 2000), busy = 0, regions = 0;
    for (int i = 0; i < n && i < 2000; i++) {
        busy += (e[i].wFlags & PROCESS_HEAP_ENTRY_BUSY) != 0;
        regions += (e[i].wFlags & PROCESS_HEAP_REGION) != 0;
    }
    CHECK_EQ(busy, N - N / 3);
    CHECK(regions > 1);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* ---- 1.9 locking ---- */

struct lock_arg {
    pa_process_t *p;
    HANDLE h;
    DWORD flags;
    volatile int done;
};

static void *locked_alloc_thread(void *v)
{
    struct lock_arg *a = v;
    void *x = pa_heap_alloc(a->p, a->h, a->flags, 40000);
    pa_heap_free(a->p, a->h, a->flags, x);
    a->done = 1;
    return NULL;
}

static int finishes_within(struct lock_arg *a, int ms)
{
    pthread_t t;
    pthread_create(&t, NULL, locked_alloc_thread, a);
    for (int i = 0; i < ms && !a->done; i++) usleep(1000);
    return a->done;
}

TEST(fact54_55_heaplock_excludes_other_threads)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    CHECK(pa_heap_lock(p, h));
    CHECK(pa_heap_lock(p, h)); /* recursive */
    void *mine = pa_heap_alloc(p, h, 0, 40000);
    CHECK(mine != NULL);
    struct lock_arg blocked = {p, h, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, locked_alloc_thread, &blocked);
    usleep(100000);
    CHECK(!blocked.done);
    struct lock_arg free_pass = {p, h, HEAP_NO_SERIALIZE, 0};
    CHECK(finishes_within(&free_pass, 2000));
    CHECK(pa_heap_unlock(p, h));
    CHECK(pa_heap_unlock(p, h));
    pthread_join(t, NULL);
    CHECK(blocked.done);
    CHECK_FAILS(pa_heap_unlock(p, h), ERROR_NOT_OWNER);
    HANDLE ns = pa_heap_create(p, HEAP_NO_SERIALIZE, 0, 0);
    CHECK(pa_heap_lock(p, ns));
    struct lock_arg other = {p, ns, 0, 0};
    CHECK(finishes_within(&other, 2000));
    CHECK(pa_heap_unlock(p, ns));
    usleep(10000);
    proc_end(p);
}

/* ---- 1.11 information classes, LFH activation, HeapCompact ---- */

TEST(fact59_query_compat)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    ULONG v = 99;
    SIZE_T size = 0;
    CHECK(pa_heap_query_information(p, h, HeapCompatibilityInformation, &v, sizeof v, &size));
    CHECK_EQ(v, 0);
    CHECK_EQ(size, 4);
    size = 0;
    CHECK_FAILS(pa_heap_query_information(p, h, HeapCompatibilityInformation, NULL, 0, &size),
                ERROR_INSUFFICIENT_BUFFER);
    CHECK_EQ(size, 4);
    CHECK_FAILS(pa_heap_query_information(p, h, HeapCompatibilityInformation, NULL, 0, NULL),
                ERROR_INSUFFICIENT_BUFFER);
    unsigned char buf[5];
    CHECK(pa_heap_query_information(p, h, HeapCompatibilityInformation, buf, 5, NULL));
    size = 0;
    CHECK_FAILS(pa_heap_query_information(p, NULL, HeapCompatibilityInformation, &v, 4, &size),
                ERROR_NOACCESS);
    CHECK_EQ(size, 0);
    proc_end(p);
}

static ULONG compat_of(pa_process_t *p, HANDLE h)
{
    ULONG v = 99;
    CHECK(pa_heap_query_information(p, h, HeapCompatibilityInformation, &v, sizeof v, NULL));
    return v;
}

TEST(fact60_lfh_activates_after_18_allocations)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[18];
    for (int i = 0; i < 18; i++) x[i] = pa_heap_alloc(p, h, 0, 0);
    for (int i = 0; i < 18; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK_EQ(compat_of(p, h), 2);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

TEST(fact60_61_set_information_then_lfh_serves_after_17)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    ULONG two = 2, zero = 0, one = 1;
    CHECK(pa_heap_set_information(p, h, HeapCompatibilityInformation, &two, sizeof two));
    CHECK_EQ(compat_of(p, h), 2);
    CHECK_FAILS(pa_heap_set_information(p, h, HeapCompatibilityInformation, &zero, 4), ERROR_GEN_FAILURE);
    CHECK_FAILS(pa_heap_set_information(p, h, HeapCompatibilityInformation, &one, 4), ERROR_GEN_FAILURE);
    CHECK_EQ(compat_of(p, h), 2);
    const size_t size = 0x18 + 2 * P8;
    for (int i = 0; i < 17; i++) {
        void *x = pa_heap_alloc(p, h, 0, size);
        CHECK(pa_heap_free(p, h, 0, x));
    }
    PROCESS_HEAP_ENTRY e[4];
    CHECK_EQ(walk_all(p, h, e, 4), 3);
    void *x[18];
    for (int i = 0; i < 18; i++) x[i] = pa_heap_alloc(p, h, 0, size);
    static PROCESS_HEAP_ENTRY all[8192];
    int n = walk_all(p, h, all, 8192), busy = 0;
    CHECK(n > 24);
    for (int i = 0; i < n && i < 8192; i++)
        if (all[i].wFlags == PROCESS_HEAP_ENTRY_BUSY) {
            busy++;
            CHECK_EQ(all[i].cbData, size);
        }
    CHECK_EQ(busy, 18);
    for (int i = 0; i < 18; i++) CHECK_EQ(pa_heap_size(p, h, 0, x[i]), size);
    for (int i = 0; i < 18; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    HANDLE ns = pa_heap_create(p, HEAP_NO_SERIALIZE, 0, 0);
    CHECK_FAILS(pa_heap_set_information(p, ns, HeapCompatibilityInformation, &two, 4), ERROR_INVALID_PARAMETER);
    CHECK_EQ(compat_of(p, ns), 0);
    CHECK(pa_heap_set_information(p, h, HeapEnableTerminationOnCorruption, NULL, 0));
    proc_end(p);
}

TEST(fact64_compact_returns_largest_free_block)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[20];
    for (int i = 0; i < 20; i++) x[i] = pa_heap_alloc(p, h, 0, 30000);
    for (int i = 0; i < 20; i++) pa_heap_free(p, h, 0, x[i]);
    SIZE_T largest = pa_heap_compact(p, h, 0);
    CHECK(largest >= 30000);
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.largest_free, largest);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* ---- misuse: never a crash, never a corrupted heap ---- */

TEST(misuse_double_free_and_foreign_pointers)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0), other = pa_heap_create(p, 0, 0, 0);
    char *x = pa_heap_alloc(p, h, 0, 100), *y = pa_heap_alloc(p, h, 0, 100);
    char *big = pa_heap_alloc(p, h, 0, 2 << 20);
    CHECK(pa_heap_free(p, h, 0, x));
    CHECK_FAILS(pa_heap_free(p, h, 0, x), ERROR_INVALID_PARAMETER);          /* double free */
    CHECK_FAILS(pa_heap_free(p, h, 0, y + 16), ERROR_INVALID_PARAMETER);     /* inside a block */
    CHECK_FAILS(pa_heap_free(p, h, 0, y + 1), ERROR_INVALID_PARAMETER);      /* misaligned */
    CHECK_FAILS(pa_heap_free(p, other, 0, y), ERROR_INVALID_PARAMETER);      /* other heap */
    CHECK_FAILS(pa_heap_free(p, h, 0, (char *)h + 0x100), ERROR_INVALID_PARAMETER); /* header */
    CHECK_FAILS(pa_heap_free(p, h, 0, (char *)h + 0x9000), ERROR_INVALID_PARAMETER); /* uncommitted */
    CHECK_FAILS(pa_heap_free(p, h, 0, big + 4096), ERROR_INVALID_PARAMETER);
    CHECK(pa_heap_free(p, h, 0, big));
    CHECK_FAILS(pa_heap_free(p, h, 0, big), ERROR_INVALID_PARAMETER);        /* large double free */
    /* Wild pointers: unmapped simulated memory, the host stack, an app allocation. */
    char *wild = (char *)pa_process_min_address(p) + ((size_t)1 << 34);
    CHECK_FAILS(pa_heap_free(p, h, 0, wild + 64), ERROR_INVALID_PARAMETER);
    int local;
    CHECK_FAILS(pa_heap_free(p, h, 0, &local), ERROR_INVALID_PARAMETER);
    char *app = pa_virtual_alloc(p, NULL, 0x10000, MEM_COMMIT | MEM_RESERVE, PAGE_NOACCESS, PA_OWNER_APP);
    CHECK_FAILS(pa_heap_free(p, h, 0, app + 64), ERROR_INVALID_PARAMETER);
    pa_set_last_error(0);
    CHECK_EQ(pa_heap_size(p, h, 0, x), (SIZE_T)-1);
    CHECK_EQ(pa_get_last_error(), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_heap_realloc(p, h, 0, x, 10), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_heap_alloc(p, (HANDLE)(uintptr_t)0x10000, 0, 8), ERROR_INVALID_HANDLE);
    CHECK_FAILS(pa_heap_alloc(p, y, 0, 8), ERROR_INVALID_HANDLE);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, y));
    CHECK(pa_heap_free(p, h, 0, NULL));
    proc_end(p);
}

TEST(misuse_lfh_double_free)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[40];
    for (int i = 0; i < 40; i++) x[i] = pa_heap_alloc(p, h, 0, 48);
    CHECK_EQ(compat_of(p, h), 2);
    CHECK(pa_heap_free(p, h, 0, x[39]));
    CHECK_FAILS(pa_heap_free(p, h, 0, x[39]), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_heap_free(p, h, 0, (char *)x[38] + 16), ERROR_INVALID_PARAMETER);
    CHECK_FAILS(pa_heap_free(p, h, 0, (char *)x[38] + 64 * 1024 * 3), ERROR_INVALID_PARAMETER);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < 39; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* A subsegment whose slots are all freed is carved afresh from its first slot when reused;
 * a stale pointer into it is still refused, and the reused slots work. */
TEST(misuse_lfh_double_free_into_an_emptied_subsegment)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { N = 4000 }; /* 48-byte slots: 1358 per subsegment, so some empty entirely */
    static void *x[N], *y[N];
    for (int i = 0; i < N; i++) CHECK((x[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
    for (int i = 0; i < N; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    for (int i = 0; i < N; i += 97) CHECK_FAILS(pa_heap_free(p, h, 0, x[i]), ERROR_INVALID_PARAMETER);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < N; i++) {
        CHECK((y[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
        memset(y[i], 0xA5, 32);
    }
    CHECK(pa_heap_validate(p, h, 0, NULL));
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_blocks, N);
    for (int i = 0; i < N; i++) CHECK(pa_heap_free(p, h, 0, y[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

struct shuffled_frees {
    pa_process_t *p;
    HANDLE h;
    void **x;
    int n;
};

static void *free_shuffled(void *v)
{
    struct shuffled_frees *f = v;
    uint64_t r = 12345;
    for (int i = f->n - 1; i > 0; i--) {
        r = r * 6364136223846793005ull + 1442695040888963407ull;
        int j = (int)((r >> 33) % (uint64_t)(i + 1));
        void *t = f->x[i];
        f->x[i] = f->x[j];
        f->x[j] = t;
    }
    for (int i = 0; i < f->n; i++)
        if (!pa_heap_free(f->p, f->h, 0, f->x[i])) abort();
    return NULL; /* the thread's exit hands its cached slots back to the subsegments */
}

/* Slots handed back to a subsegment (here in random order, by a thread that then exits) are
 * handed out again lowest address first: a refill reads the subsegment's free bitmap, so a
 * batch a program allocates lies in address order. */
TEST(lfh_refills_hand_out_returned_slots_in_address_order)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { N = 1300, M = 600 };
    static void *x[N], *freed[M], *y[N];
    for (int i = 0; i < N; i++) CHECK((x[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
    for (int i = 0; i < M; i++) freed[i] = x[32 + 2 * i]; /* (the first 17 are back-end blocks) */
    struct shuffled_frees f = {p, h, freed, M};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, free_shuffled, &f), 0);
    pthread_join(t, NULL);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    /* (the first ones come from what this thread's bin and the remote list held) */
    int run = 0, best = 0, reused = 0;
    for (int i = 0; i < N; i++) {
        CHECK((y[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
        int was_freed = 0;
        for (int k = 0; k < M && !was_freed; k++) was_freed = y[i] == freed[k];
        reused += was_freed;
        run = was_freed && i && (uintptr_t)y[i] > (uintptr_t)y[i - 1] ? run + 1 : 0;
        if (run > best) best = run;
    }
    CHECK_EQ(reused, M);
    CHECK(best >= 256);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < N; i++) CHECK(pa_heap_free(p, h, 0, y[i]));
    for (int i = 0; i < N; i++)
        if (i < 32 || i >= 32 + 2 * M || (i - 32) % 2) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* Pages of the holes, as the host holds them: how many of the whole pages inside the free
 * blocks x[1], x[3], ... (each `n` bytes) are present. */
static size_t hole_pages_present(void **x, int count, size_t n)
{
    static unsigned char flags[64];
    size_t present = 0;
    for (int i = 1; i < count; i += 2) {
        uintptr_t from = ((uintptr_t)x[i] + 4095) & ~(uintptr_t)4095;
        size_t pages = ((uintptr_t)x[i] + n - 4096 - from) / 4096; /* inside the block */
        if (pages > 64 || _pa_os_page_flags((void *)from, pages, flags)) return (size_t)-1;
        for (size_t k = 0; k < pages; k++) present += (flags[k] & PA_OS_PAGE_PRESENT) != 0;
    }
    return present;
}

/* A heap whose free back-end blocks hold more than an eighth of its commit pays for what it
 * commits next with the pages inside its big free blocks (heap.md section 3: Windows
 * decommits the inside of big free blocks): the holes stay committed and usable, their
 * pages leave memory. Not with free checking, whose fill must stay. */
TEST(fragmented_heap_commits_are_paid_with_the_pages_of_big_free_blocks)
{
    for (int check = 0; check < 2; check++) {
        pa_process_t *p = proc_new();
        HANDLE h = pa_heap_create(p, check ? HEAP_FREE_CHECKING_ENABLED : 0, 0, 0);
        enum { N = 16, HOLE = 100 << 10, BIG = 600 << 10 };
        void *x[N], *big[8];
        for (int i = 0; i < N; i++) {
            CHECK((x[i] = pa_heap_alloc(p, h, 0, HOLE)) != NULL);
            memset(x[i], 0x5A, HOLE);
        }
        for (int i = 1; i < N; i += 2) CHECK(pa_heap_free(p, h, 0, x[i]));
        size_t before = hole_pages_present(x, N, HOLE);
        CHECK(before != (size_t)-1 && before > 8 * 20);
        for (int i = 0; i < 8; i++) { /* too big for a hole: new commit */
            CHECK((big[i] = pa_heap_alloc(p, h, 0, BIG)) != NULL);
            memset(big[i], 0x77, BIG);
        }
        size_t after = hole_pages_present(x, N, HOLE);
        if (check) CHECK_EQ(after, before);
        else CHECK(after < before / 2); /* (a segment's last block is decommitted otherwise) */
        CHECK(pa_heap_validate(p, h, 0, NULL));
        for (int i = 1; i < N; i += 2) { /* the holes serve again */
            CHECK((x[i] = pa_heap_alloc(p, h, 0, HOLE)) != NULL);
            memset(x[i], 0x33, HOLE);
        }
        CHECK(pa_heap_validate(p, h, 0, NULL));
        for (int i = 0; i < N; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
        for (int i = 0; i < 8; i++) CHECK(pa_heap_free(p, h, 0, big[i]));
        CHECK(pa_heap_validate(p, h, 0, NULL));
        CHECK(pa_heap_destroy(p, h));
        proc_end(p);
    }
}

/* The pages of a commit are paid for with the oldest big free blocks first: the ones freed
 * last are the likeliest to be reused, and their pages would only be faulted in again
 * (bench_preload's realloc workload: 12,886 -> 12,632 faults and 31.5 -> 30.5 MiB of peak
 * RSS against newest first). */
TEST(fragmented_heap_drops_its_oldest_free_blocks_first)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { N = 16, HOLE = 100 << 10, BIG = 300 << 10 };
    void *x[N], *big[16];
    int nbig = 0;
    for (int i = 0; i < N; i++) {
        CHECK((x[i] = pa_heap_alloc(p, h, 0, HOLE)) != NULL);
        memset(x[i], 0x5A, HOLE);
    }
    for (int i = 1; i < N; i += 2) CHECK(pa_heap_free(p, h, 0, x[i])); /* x[1] first */
    void *first[2] = {NULL, x[1]}, *last[2] = {NULL, x[N - 3]}; /* (x[N - 1] joins the tail) */
    size_t whole = hole_pages_present(first, 2, HOLE);
    CHECK(whole != (size_t)-1 && whole > 20);
    while (nbig < 16 && hole_pages_present(first, 2, HOLE) == whole) { /* until one is paid */
        CHECK((big[nbig] = pa_heap_alloc(p, h, 0, BIG)) != NULL);
        memset(big[nbig++], 0x77, BIG);
    }
    CHECK(hole_pages_present(first, 2, HOLE) < whole); /* the oldest hole went first */
    CHECK_EQ(hole_pages_present(last, 2, HOLE), whole); /* the newest is still in memory */
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < N; i += 2) CHECK(pa_heap_free(p, h, 0, x[i]));
    while (nbig) CHECK(pa_heap_free(p, h, 0, big[--nbig]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* The free tail of a back-end segment: up to 1 MiB of it stays committed (a heap that frees
 * and allocates near its end neither decommits nor faults the pages in again each time);
 * beyond 1.25 MiB it is decommitted down to 1 MiB. */
TEST(segment_free_tail_keeps_one_mib_committed)
{
    pa_process_t *p = proc_new();
    const size_t n = (size_t)480 << 10, mib = (size_t)1 << 20;
    HANDLE h = pa_heap_create(p, 0, 0, 16 * mib); /* one segment */
    enum { N = 8 };
    void *x[N];
    pa_heap_stats_t s0, s1, s2;
    for (int i = 0; i < N; i++) CHECK((x[i] = pa_heap_alloc(p, h, 0, n)) != NULL);
    for (int i = 1; i < N; i++) CHECK((char *)x[i] > (char *)x[i - 1]);
    CHECK(pa_heap_stats(p, h, &s0));
    CHECK(pa_heap_free(p, h, 0, x[7]));
    CHECK(pa_heap_free(p, h, 0, x[6]));
    CHECK(pa_heap_stats(p, h, &s1));
    CHECK_EQ(s1.committed, s0.committed); /* 960 KiB free at the end: kept */
    CHECK(pa_heap_free(p, h, 0, x[5]));
    CHECK(pa_heap_free(p, h, 0, x[4]));
    CHECK(pa_heap_stats(p, h, &s2));
    CHECK(s2.committed + 3 * mib / 4 <= s0.committed); /* 1.9 MiB free: down to 1 MiB */
    CHECK(s2.committed + 5 * mib / 4 >= s0.committed);
    void *y = pa_heap_alloc(p, h, 0, n); /* where x[4] was, in the pages kept */
    CHECK(y == x[4]);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, y));
    for (int i = 0; i < 4; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* ---- threads ---- */

#define XT_N 200000
struct xt {
    pa_process_t *p;
    HANDLE h;
    size_t lo, span; /* sizes lo + (i * 37) % span */
    void *volatile ring[1024];
    volatile unsigned head, tail;
};

static void *xt_producer(void *v)
{
    struct xt *q = v;
    for (unsigned i = 0; i < XT_N; i++) {
        size_t n = q->lo + (i * 37) % q->span;
        char *x = pa_heap_alloc(q->p, q->h, 0, n);
        if (!x) abort();
        x[0] = (char)i;
        x[n - 1] = (char)i;
        while (q->head - __atomic_load_n(&q->tail, __ATOMIC_ACQUIRE) >= 1024) sched_yield();
        q->ring[q->head % 1024] = x;
        __atomic_store_n(&q->head, q->head + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static void *xt_consumer(void *v)
{
    struct xt *q = v;
    for (unsigned i = 0; i < XT_N; i++) {
        while (__atomic_load_n(&q->head, __ATOMIC_ACQUIRE) == q->tail) sched_yield();
        char *x = q->ring[q->tail % 1024];
        size_t n = q->lo + (i * 37) % q->span;
        if (pa_heap_size(q->p, q->h, 0, x) != n || x[0] != (char)i || x[n - 1] != (char)i) abort();
        if (!pa_heap_free(q->p, q->h, 0, x)) abort();
        __atomic_store_n(&q->tail, q->tail + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

/* Runs the producer and the consumer over a new heap of p for sizes lo..lo+span-1, then
 * checks that the heap is valid and holds no busy block; returns the heap. */
static HANDLE run_producer_consumer(pa_process_t *p, size_t lo, size_t span)
{
    static struct xt q;
    memset(&q, 0, sizeof q);
    q.p = p;
    q.h = pa_heap_create(p, 0, 0, 0);
    q.lo = lo;
    q.span = span;
    pthread_t a, b;
    pthread_create(&a, NULL, xt_producer, &q);
    pthread_create(&b, NULL, xt_consumer, &q);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    CHECK(pa_heap_validate(p, q.h, 0, NULL));
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, q.h, &s));
    CHECK_EQ(s.busy_blocks, 0);
    CHECK_EQ(s.busy_bytes, 0);
    return q.h;
}

TEST(threads_allocate_in_one_free_in_other)
{
    pa_process_t *p = proc_new();
    HANDLE h = run_producer_consumer(p, 8, 500);
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK(s.lfh_active > 0);
    proc_end(p);
}

TEST(threads_allocate_medium_blocks_in_one_free_in_other)
{
    /* 8 B - 64 KiB: the consumer's bins hand full bins on to the remote lists (or back to the
     * back end), the producer's bins refill from them; every byte and size is checked on the
     * way, and nothing is left or lost at the end. */
    pa_process_t *p = proc_new();
    HANDLE h = run_producer_consumer(p, 8, 65536);
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK(s.committed < ((size_t)160 << 20)); /* 1024 blocks in flight: about 32 MiB */
    proc_end(p);
}

struct mt { pa_process_t *p; HANDLE h; int seed; };

static void *mt_worker(void *v)
{
    struct mt *m = v;
    void *live[256] = {0};
    unsigned r = (unsigned)m->seed;
    for (int i = 0; i < 100000; i++) {
        r = r * 1103515245u + 12345u;
        unsigned k = (r >> 8) % 256;
        if (live[k]) {
            if (!pa_heap_free(m->p, m->h, 0, live[k])) abort();
            live[k] = NULL;
        } else {
            size_t n = (r >> 16) % 3 == 0 ? (r >> 12) % 70000 : (r >> 12) % 600;
            live[k] = pa_heap_alloc(m->p, m->h, 0, n);
            if (!live[k]) abort();
        }
    }
    for (int k = 0; k < 256; k++)
        if (live[k]) pa_heap_free(m->p, m->h, 0, live[k]);
    return NULL;
}

TEST(threads_four_mixed_workers)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    pthread_t t[4];
    struct mt m[4];
    for (int i = 0; i < 4; i++) {
        m[i] = (struct mt){p, h, i + 1};
        pthread_create(&t[i], NULL, mt_worker, &m[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_blocks, 0);
    proc_end(p);
}

/* ---- statistics and direct access ---- */

TEST(stats_follow_allocations)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    pa_heap_stats_t s0, s1;
    CHECK(pa_heap_stats(p, h, &s0));
    CHECK_EQ(s0.busy_blocks, 0);
    CHECK_EQ(s0.committed, 0x2000);
    CHECK_EQ(s0.reserved, 0x10000);
    void *a = pa_heap_alloc(p, h, 0, 1000), *b = pa_heap_alloc(p, h, 0, 3 << 20);
    CHECK(pa_heap_stats(p, h, &s1));
    CHECK_EQ(s1.busy_blocks, 2);
    CHECK_EQ(s1.busy_bytes, 1000 + (3 << 20));
    CHECK_EQ(s1.large_blocks, 1);
    CHECK(s1.committed >= (3 << 20));
    CHECK_EQ(s1.overhead, s1.committed - s1.busy_bytes - s1.free_bytes);
    pa_heap_free(p, h, 0, a);
    pa_heap_free(p, h, 0, b);
    CHECK(pa_heap_stats(p, h, &s1));
    CHECK_EQ(s1.busy_blocks, 0);
    CHECK(s1.cached_large_bytes >= (3 << 20));
    pa_vm_stats_t vm;
    pa_process_stats(p, &vm);
    CHECK(vm.committed >= s1.committed);
    proc_end(p);
}

TEST(find_block_reaches_only_busy_user_bytes)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    char *x = pa_heap_alloc(p, h, 0, 100), *big = pa_heap_alloc(p, h, 0, 2 << 20);
    void *lfh[30];
    for (int i = 0; i < 30; i++) lfh[i] = pa_heap_alloc(p, h, 0, 24);
    HANDLE hh = NULL;
    void *blk = NULL;
    size_t n = 0;
    CHECK_EQ(pa_heap_find_block(p, x + 10, 90, &hh, &blk, &n), STATUS_SUCCESS);
    CHECK(hh == h && blk == x && n == 100);
    CHECK_EQ(pa_heap_find_block(p, x + 10, 91, NULL, NULL, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(pa_heap_find_block(p, x - 1, 1, NULL, NULL, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(pa_heap_find_block(p, big + (1 << 20), 1 << 20, NULL, &blk, NULL), STATUS_SUCCESS);
    CHECK(blk == big);
    CHECK_EQ(pa_heap_find_block(p, lfh[29], 24, NULL, &blk, &n), STATUS_SUCCESS);
    CHECK(blk == lfh[29] && n == 24);
    CHECK_EQ(pa_heap_find_block(p, (char *)lfh[29] + 20, 8, NULL, NULL, NULL), STATUS_ACCESS_VIOLATION);
    pa_heap_free(p, h, 0, lfh[29]);
    CHECK_EQ(pa_heap_find_block(p, lfh[29], 1, NULL, NULL, NULL), STATUS_ACCESS_VIOLATION);
    pa_heap_free(p, h, 0, x);
    CHECK_EQ(pa_heap_find_block(p, x, 1, NULL, NULL, NULL), STATUS_ACCESS_VIOLATION);
    CHECK_EQ(pa_heap_find_block(p, h, 1, NULL, NULL, NULL), STATUS_ACCESS_VIOLATION);
    proc_end(p);
}

/* pa_heap_private_overlap (Process(heap_guard=False)'s check) covers each LFH subsegment's
 * header: the first PA_LFH_SUB_HDR bytes of a chunk that starts a subsegment or is free, not
 * the slots after them. */
TEST(private_overlap_covers_lfh_subsegment_headers)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    char *xs[50];
    for (int i = 0; i < 50; i++) xs[i] = pa_heap_alloc(p, h, 0, 24);
    uintptr_t sub = (uintptr_t)xs[49] & ~(uintptr_t)(PA_LFH_CHUNK - 1);
    CHECK(sub != (uintptr_t)h);
    CHECK_EQ(((pa_lfh_sub_t *)sub)->magic, PA_LFH_SUB_MAGIC);
    CHECK_EQ(pa_heap_private_overlap(p, (void *)(sub + 40), 8), sub + 40); /* next */
    CHECK_EQ(pa_heap_private_overlap(p, (void *)(sub + PA_LFH_SUB_HDR - 1), 1),
             sub + PA_LFH_SUB_HDR - 1);
    CHECK_EQ(pa_heap_private_overlap(p, (void *)(sub + PA_LFH_SUB_HDR - 1), 64),
             sub + PA_LFH_SUB_HDR - 1);
    /* Slot 0 (header and user bytes) and the rest of the (one-chunk) subsegment: open. */
    CHECK_EQ(pa_heap_private_overlap(p, (void *)(sub + PA_LFH_SUB_HDR), PA_LFH_CHUNK - PA_LFH_SUB_HDR), 0);
    /* The next chunk's first bytes (free, or another subsegment's header): private. */
    CHECK_EQ(pa_heap_private_overlap(p, (void *)(sub + PA_LFH_SUB_HDR), PA_LFH_CHUNK - PA_LFH_SUB_HDR + 1),
             sub + PA_LFH_CHUNK);
    /* A range starting before the segment finds its header chunk first. */
    uintptr_t seg = _pa_lfh_seg_find(((pa_heap_t *)h)->lfh, sub)->base;
    CHECK_EQ(pa_heap_private_overlap(p, (void *)(seg + PA_LFH_CHUNK - 8), 16), seg + PA_LFH_CHUNK - 8);
    /* The continuation chunks of a multi-chunk subsegment hold slots from their first byte. */
    char *big[40];
    for (int i = 0; i < 40; i++) big[i] = pa_heap_alloc(p, h, 0, 16000);
    int inner = 0;
    for (int i = 0; i < 40; i++) {
        uintptr_t at = (uintptr_t)big[i] - 16;
        pa_lfh_seg_t *s = _pa_lfh_seg_find(((pa_heap_t *)h)->lfh, at);
        if (!s) continue;
        unsigned m = s->map[(at - s->base) / PA_LFH_CHUNK];
        if (_pa_lfh_map_off(m) == 0) {
            CHECK_EQ(pa_heap_private_overlap(p, (void *)at, 16 + 16000), 0);
            continue;
        }
        uintptr_t chunk = at & ~(uintptr_t)(PA_LFH_CHUNK - 1);
        CHECK_EQ(pa_heap_private_overlap(p, (void *)chunk, PA_LFH_SUB_HDR), 0);
        inner++;
    }
    CHECK(inner > 0);
    for (int i = 0; i < 40; i++) CHECK(pa_heap_free(p, h, 0, big[i]));
    for (int i = 0; i < 50; i++) CHECK(pa_heap_free(p, h, 0, xs[i]));
    proc_end(p);
}

/* What Python can no longer write (the test above), native code still can: HeapWalk and
 * HeapValidate take slot geometry from the segment map and check a subsegment's header before
 * reading it, so a header overwritten with garbage makes HeapValidate FALSE and the walk stop
 * or fail, and a free bitmap with busy slots' bits set hands none of them out twice. */
TEST(corrupt_lfh_subsegment_header_is_noticed)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *xs[40], *ys[200];
    for (int i = 0; i < 40; i++) xs[i] = pa_heap_alloc(p, h, 0, 48);
    unsigned char *sub = (unsigned char *)((uintptr_t)xs[39] & ~(uintptr_t)(PA_LFH_CHUNK - 1));
    unsigned char saved[64];
    memcpy(saved, sub, 64);
    memset(sub, 0xff, 64);
    CHECK(!pa_heap_validate(p, h, 0, NULL));
    PROCESS_HEAP_ENTRY e;
    memset(&e, 0, sizeof e);
    int n = 0;
    while (n < 1000 && pa_heap_walk(p, h, &e)) n++;
    CHECK(n < 1000);
    memcpy(sub, saved, 64);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    uint64_t *bitmap = ((pa_lfh_sub_t *)sub)->freebits, old = bitmap[0];
    bitmap[0] = ~(uint64_t)0;
    CHECK(!pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < 200; i++) ys[i] = pa_heap_alloc(p, h, 0, 48);
    for (int i = 0; i < 200; i++) {
        CHECK(ys[i] != NULL);
        for (int j = 0; j < 40; j++) CHECK(ys[i] != xs[j]);
        for (int j = 0; j < i; j++) CHECK(ys[i] != ys[j]);
    }
    bitmap[0] = old;
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

TEST(random_workload_keeps_heap_valid)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { N = 512 };
    static unsigned char *live[N];
    static size_t size[N];
    memset(live, 0, sizeof live);
    unsigned r = 7;
    for (int i = 0; i < 40000; i++) {
        r = r * 1103515245u + 12345u;
        unsigned k = (r >> 8) % N;
        if (live[k]) {
            for (size_t j = 0; j < size[k]; j += 97) if (live[k][j] != (unsigned char)k) { CHECK(!"clobbered"); break; }
            if ((r >> 20) & 1) {
                size_t nn = (r >> 4) % 3000;
                unsigned char *y = pa_heap_realloc(p, h, 0, live[k], nn);
                CHECK(y != NULL);
                if (nn > size[k]) memset(y + size[k], k, nn - size[k]);
                live[k] = y;
                size[k] = nn;
            } else {
                CHECK(pa_heap_free(p, h, 0, live[k]));
                live[k] = NULL;
            }
        } else {
            size[k] = (r >> 12) % 8 == 0 ? (r >> 4) % 200000 : (r >> 4) % 700;
            live[k] = pa_heap_alloc(p, h, 0, size[k]);
            memset(live[k], k, size[k]);
        }
        if (i % 5000 == 0) CHECK(pa_heap_validate(p, h, 0, NULL));
    }
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int k = 0; k < N; k++) if (live[k]) CHECK(pa_heap_free(p, h, 0, live[k]));
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_blocks, 0);
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* ---- large blocks reused from the cache ---- */

TEST(fact18_reused_large_blocks_read_as_zero)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    /* Dirty blocks of several sizes, free them into the cache, then allocate sizes that reuse
     * them (smaller, equal and larger): every byte must read as zero again. */
    size_t sizes[] = {3000 * 1024 + 37, (size_t)4 << 20, (size_t)1 << 20, (size_t)2 << 20};
    for (int round = 0; round < 3; round++) {
        unsigned char *x[4];
        for (int i = 0; i < 4; i++) {
            size_t n = sizes[(i + round) % 4];
            x[i] = pa_heap_alloc(p, h, 0, n);
            CHECK(x[i] != NULL);
            if (!x[i]) continue;
            CHECK_EQ(pa_heap_size(p, h, 0, x[i]), n);
            size_t bad = 0;
            for (size_t j = 0; j < n; j += 509) bad += x[i][j] != 0;
            bad += x[i][n - 1] != 0;
            CHECK_EQ(bad, 0);
            memset(x[i], 0xA5, n);
        }
        for (int i = 0; i < 4; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
        CHECK_FAILS(pa_heap_free(p, h, 0, x[0]), ERROR_INVALID_PARAMETER); /* cached now */
    }
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 0);
    CHECK(st.cached_large_bytes > 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

TEST(mm_zero_pages_zeroes_committed_pages_and_refuses_bad_ranges)
{
    pa_process_t *p = proc_new();
    unsigned char *a = pa_virtual_alloc(p, NULL, 0x10000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, PA_OWNER_APP);
    CHECK(a != NULL);
    memset(a, 7, 0x10000);
    CHECK_EQ(pa_mm_zero_pages(p, a + 0x1000, 0x2000), STATUS_SUCCESS);
    CHECK_EQ(a[0xFFF], 7);
    CHECK_EQ(a[0x1000], 0);
    CHECK_EQ(a[0x2FFF], 0);
    CHECK_EQ(a[0x3000], 7);
    a[0x1000] = 1; /* still committed and writable */
    CHECK_EQ(a[0x1000], 1);
    MEMORY_BASIC_INFORMATION mbi;
    CHECK(pa_virtual_query(p, a + 0x1000, &mbi, sizeof mbi));
    CHECK_EQ(mbi.State, MEM_COMMIT);
    CHECK_EQ(mbi.Protect, PAGE_READWRITE);
    CHECK_EQ(pa_mm_zero_pages(p, a + 1, 0x1000), STATUS_INVALID_PARAMETER);    /* unaligned */
    CHECK_EQ(pa_mm_zero_pages(p, a, 0x11000), STATUS_INVALID_PARAMETER);      /* past the end */
    CHECK_EQ(pa_mm_zero_pages(p, a, 0), STATUS_INVALID_PARAMETER);
    CHECK_EQ(pa_mm_zero_pages(p, a + 0x20000, 0x1000), STATUS_INVALID_PARAMETER); /* nothing */
    pa_pin_t *pin = NULL;
    int w = 0;
    uintptr_t fault = 0;
    CHECK_EQ(pa_mm_pin(p, a + 0x4000, 16, 1, &w, &fault, &pin), STATUS_SUCCESS);
    CHECK_EQ(pa_mm_zero_pages(p, a + 0x4000, 0x1000), PA_STATUS_BUFFER_EXPORTED);
    CHECK_EQ(a[0x4000], 7);
    if (pin) pa_mm_unpin(p, pin);
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, PA_OWNER_APP));
    proc_end(p);
}

TEST(mm_find_phased_gives_a_free_range_at_the_phase_asked)
{
    pa_process_t *p = proc_new();
    const size_t M2 = (size_t)2 << 20, K64 = 0x10000;
    unsigned char *at = pa_mm_find_phased(p, 3 * M2, M2, M2 - K64);
    CHECK(at != NULL);
    CHECK_EQ(((uintptr_t)at - (uintptr_t)0) % M2, M2 - K64);
    /* Only a hint: the range is free, and reserving it there succeeds. */
    unsigned char *r = pa_virtual_alloc(p, at, 3 * M2, MEM_RESERVE, PAGE_READWRITE, PA_OWNER_APP);
    CHECK(r == at);
    /* The next one lies past it. */
    unsigned char *next = pa_mm_find_phased(p, K64, M2, M2 - K64);
    CHECK(next != NULL && next >= at + 3 * M2 && (uintptr_t)next % M2 == M2 - K64);
    CHECK(pa_mm_find_phased(p, K64, M2, 0) != NULL);
    CHECK(pa_mm_find_phased(p, 0, M2, 0) == NULL);                /* nothing asked */
    CHECK(pa_mm_find_phased(p, K64, M2, M2) == NULL);             /* phase >= align */
    CHECK(pa_mm_find_phased(p, K64, M2, 0x1000) == NULL);         /* not on the granularity */
    CHECK(pa_mm_find_phased(p, (size_t)1 << 40, M2, 0) == NULL);  /* more than the space */
    CHECK(pa_mm_find_phased(NULL, K64, M2, 0) == NULL);
    CHECK(pa_virtual_free(p, r, 0, MEM_RELEASE, PA_OWNER_APP));
    proc_end(p);
}

TEST(large_blocks_start_64k_before_a_2mib_boundary_and_end_on_one)
{
    /* heap.c reserve_large: a freed block that was barely written is dropped with one madvise
     * that walks only the page table entries its own first 2 MiB share with nothing else. */
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    const size_t M2 = (size_t)2 << 20;
    size_t sizes[] = {0x100000, 0x180000, 0x2A0000, 0x3F0000};
    for (int i = 0; i < 4; i++) {
        unsigned char *x = pa_heap_alloc(p, h, 0, sizes[i]);
        CHECK(x != NULL);
        CHECK_EQ((uintptr_t)x % M2, M2 - 0x10000 + 64); /* fact 21 still: base + 8P */
        MEMORY_BASIC_INFORMATION mbi;
        CHECK(pa_virtual_query(p, x, &mbi, sizeof mbi));
        CHECK(mbi.AllocationBase == x - 64);
        /* The reservation ends on a 2 MiB boundary: its last region does. */
        unsigned char *end = x;
        while (pa_virtual_query(p, end, &mbi, sizeof mbi) && mbi.AllocationBase == x - 64)
            end = (unsigned char *)mbi.BaseAddress + mbi.RegionSize;
        CHECK_EQ((uintptr_t)end % M2, 0);
        CHECK((size_t)(end - (x - 64)) >= sizes[i] + 64);
        CHECK((size_t)(end - (x - 64)) < sizes[i] + 64 + M2 + M2 / 4); /* < 2 MiB over the step */
        x[sizes[i] - 1] = 1;
    }
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

TEST(mm_clear_pages_clears_written_pages_in_place_or_drops_the_range)
{
    pa_process_t *p = proc_new();
    unsigned char *a = pa_virtual_alloc(p, NULL, 0x10000, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, PA_OWNER_APP);
    CHECK(a != NULL);
    unsigned char present[16];
    /* Pages 1 and 3 written, page 2 held but zero, the rest never touched. */
    a[0x1000] = 1;
    a[0x3FFF] = 2;
    a[0x2000] = 0;
    a[0] = 9; /* outside the range */
    size_t resident = 1, written = 1;
    CHECK_EQ(pa_mm_clear_pages(p, a + 0x1000, 0xF000, 0x10000, &resident, &written), STATUS_SUCCESS);
    CHECK_EQ(resident, 0x3000);
    CHECK_EQ(written, 0x2000);
    CHECK_EQ(a[0x1000], 0);
    CHECK_EQ(a[0x3FFF], 0);
    CHECK_EQ(a[0], 9);
    CHECK_EQ(_pa_os_page_flags(a, 16, present), 0);
    CHECK_EQ(present[1] & PA_OS_PAGE_PRESENT, PA_OS_PAGE_PRESENT); /* cleared in place: kept */
    CHECK_EQ(present[3] & PA_OS_PAGE_PRESENT, PA_OS_PAGE_PRESENT);
    CHECK_EQ(present[5], 0);
    /* More held than keep_max: the whole range is dropped instead. */
    memset(a + 0x1000, 3, 0x4000);
    CHECK_EQ(pa_mm_clear_pages(p, a + 0x1000, 0xF000, 0x2000, &resident, &written), STATUS_SUCCESS);
    CHECK_EQ(resident, 0x4000);
    CHECK_EQ(written, 0x4000);
    CHECK_EQ(_pa_os_page_flags(a, 16, present), 0); /* (before a read maps the zero page) */
    CHECK_EQ(present[1], 0);
    CHECK_EQ(present[4], 0);
    CHECK_EQ(a[0x1000], 0);
    CHECK_EQ(a[0x4FFF], 0);
    /* It writes, so every page must be committed read-write; pins refuse as for zero_pages. */
    DWORD old;
    CHECK(pa_virtual_protect(p, a + 0x8000, 0x1000, PAGE_READONLY, &old, PA_OWNER_APP));
    CHECK_EQ(pa_mm_clear_pages(p, a + 0x1000, 0xF000, 0x10000, &resident, &written), STATUS_INVALID_PARAMETER);
    CHECK(pa_virtual_protect(p, a + 0x8000, 0x1000, PAGE_READWRITE, &old, PA_OWNER_APP));
    CHECK_EQ(pa_mm_clear_pages(p, a + 1, 0x1000, 0x10000, &resident, &written), STATUS_INVALID_PARAMETER);
    pa_pin_t *pin = NULL;
    int w = 0;
    uintptr_t fault = 0;
    a[0x4000] = 7;
    CHECK_EQ(pa_mm_pin(p, a + 0x4000, 16, 1, &w, &fault, &pin), STATUS_SUCCESS);
    CHECK_EQ(pa_mm_clear_pages(p, a + 0x4000, 0x1000, 0x10000, &resident, &written), PA_STATUS_BUFFER_EXPORTED);
    CHECK_EQ(a[0x4000], 7);
    if (pin) pa_mm_unpin(p, pin);
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, PA_OWNER_APP));
    proc_end(p);
}

/* A committed read-write region of the application (not the heap's). */
static unsigned char *rw_region(pa_process_t *p, size_t size)
{
    return pa_virtual_alloc(p, NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE, PA_OWNER_APP);
}

TEST(mm_move_pages_moves_contents_and_leaves_the_source_zero)
{
    pa_process_t *p = proc_new();
    unsigned char *a = rw_region(p, 0x20000), *b = rw_region(p, 0x20000);
    CHECK(a != NULL && b != NULL);
    for (size_t i = 0; i < 0x10000; i += 512) a[0x1000 + i] = (unsigned char)(i / 512 + 1);
    a[0] = 9;
    NTSTATUS st = pa_mm_move_pages(p, b + 0x1000, a + 0x1000, 0x10000);
    /* STATUS_NOT_SUPPORTED only where the host cannot (no MREMAP_DONTUNMAP): then nothing moved. */
    CHECK(st == STATUS_SUCCESS || st == STATUS_NOT_SUPPORTED);
    unsigned char *holder = st == STATUS_SUCCESS ? b : a, *other = st == STATUS_SUCCESS ? a : b;
    for (size_t i = 0; i < 0x10000; i += 512) {
        CHECK_EQ(holder[0x1000 + i], (unsigned char)(i / 512 + 1));
        CHECK_EQ(other[0x1000 + i], 0);
    }
    CHECK_EQ(a[0], 9); /* outside the range */
    /* Both ranges stay committed read-write, and writable. */
    MEMORY_BASIC_INFORMATION m;
    CHECK_EQ(pa_virtual_query(p, a + 0x1000, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_COMMIT);
    CHECK_EQ(m.Protect, PAGE_READWRITE);
    CHECK_EQ(pa_virtual_query(p, b + 0x1000, &m, sizeof m), sizeof m);
    CHECK_EQ(m.State, MEM_COMMIT);
    CHECK_EQ(m.Protect, PAGE_READWRITE);
    a[0x1000] = 5;
    b[0x1000] = 6;
    CHECK_EQ(a[0x1000] + b[0x1000], 11);
    /* Refused: overlapping, unaligned, a page not committed read-write on either side, a
     * different protection, a pin. Nothing changes. */
    CHECK_EQ(pa_mm_move_pages(p, a + 0x2000, a + 0x1000, 0x2000), STATUS_INVALID_PARAMETER);
    CHECK_EQ(pa_mm_move_pages(p, b + 0x1000, a + 0x1001, 0x1000), STATUS_INVALID_PARAMETER);
    DWORD old;
    CHECK(pa_virtual_protect(p, b + 0x3000, 0x1000, PAGE_READONLY, &old, PA_OWNER_APP));
    CHECK_EQ(pa_mm_move_pages(p, b + 0x1000, a + 0x1000, 0x4000), STATUS_INVALID_PARAMETER);
    CHECK(pa_virtual_protect(p, b + 0x3000, 0x1000, PAGE_EXECUTE_READWRITE, &old, PA_OWNER_APP));
    CHECK_EQ(pa_mm_move_pages(p, b + 0x1000, a + 0x1000, 0x4000), STATUS_INVALID_PARAMETER);
    CHECK(pa_virtual_free(p, b + 0x3000, 0x1000, MEM_DECOMMIT, PA_OWNER_APP));
    CHECK_EQ(pa_mm_move_pages(p, b + 0x1000, a + 0x1000, 0x4000), STATUS_INVALID_PARAMETER);
    pa_pin_t *pin = NULL;
    int w = 0;
    uintptr_t fault = 0;
    CHECK_EQ(pa_mm_pin(p, a + 0x8000, 16, 1, &w, &fault, &pin), STATUS_SUCCESS);
    CHECK_EQ(pa_mm_move_pages(p, b + 0x8000, a + 0x8000, 0x1000), PA_STATUS_BUFFER_EXPORTED);
    if (pin) pa_mm_unpin(p, pin);
    CHECK_EQ(a[0x1000], 5);
    CHECK(pa_virtual_free(p, a, 0, MEM_RELEASE, PA_OWNER_APP));
    CHECK(pa_virtual_free(p, b, 0, MEM_RELEASE, PA_OWNER_APP));
    proc_end(p);
}

TEST(mm_move_pages_across_host_mappings_moves_or_changes_nothing)
{
    /* A range made of two host mappings (pages moved in before, then their neighbours): the
     * host may refuse to move it in one go; then the source is unchanged and the target still
     * reads as zero, accessible (os/linux.c puts it back). */
    pa_process_t *p = proc_new();
    unsigned char *a = rw_region(p, 0x20000), *b = rw_region(p, 0x20000), *c = rw_region(p, 0x20000);
    CHECK(a && b && c);
    memset(a + 0x1000, 0x11, 0x4000);
    if (pa_mm_move_pages(p, b + 0x4000, a + 0x1000, 0x4000) != STATUS_SUCCESS) { /* host cannot */
        proc_end(p);
        return;
    }
    memset(b + 0x1000, 0x22, 0x3000); /* b: its own pages, then the moved ones */
    NTSTATUS st = pa_mm_move_pages(p, c + 0x1000, b + 0x1000, 0x7000);
    CHECK(st == STATUS_SUCCESS || st == STATUS_NOT_SUPPORTED);
    unsigned char *holder = st == STATUS_SUCCESS ? c : b, *other = st == STATUS_SUCCESS ? b : c;
    for (size_t i = 0; i < 0x7000; i += 0x800) {
        CHECK_EQ(holder[0x1000 + i], i < 0x3000 ? 0x22 : 0x11);
        CHECK_EQ(other[0x1000 + i], 0);
    }
    c[0x1000] = 1; /* the target is still there and writable either way */
    CHECK_EQ(c[0x1000], 1);
    proc_end(p);
}

TEST(os_move_that_fails_leaves_the_target_a_zero_read_write_range)
{
    /* Host level: a source that is not mapped cannot be moved; the target (which the kernel
     * may have unmapped already) is put back as zero read-write pages. */
    void *r;
    CHECK_EQ(_pa_os_reserve(0x10000, 0x10000, &r), 0);
    unsigned char *src = r, *dst = src + 0x8000;
    CHECK_EQ(_pa_os_protect(src, 0x10000, PA_OS_READ | PA_OS_WRITE), 0);
    dst[0] = 0; /* dst reads as zero, as the contract asks */
    CHECK_EQ(_pa_os_unmap(src, 0x3000), 0);
    CHECK(_pa_os_move(dst, src, 0x3000, PA_OS_READ | PA_OS_WRITE) != 0);
    CHECK_EQ(dst[0] | dst[0x1000] | dst[0x2FFF], 0);
    dst[0x2FFF] = 3;
    CHECK_EQ(dst[0x2FFF], 3);
    CHECK_EQ(_pa_os_unmap(r, 0x10000), 0);
}

/* Every byte of x[0, n) is zero. */
static size_t nonzero_bytes(const unsigned char *x, size_t n)
{
    size_t bad = 0;
    for (size_t j = 0; j < n; j++) bad += x[j] != 0;
    return bad;
}

TEST(large_blocks_written_through_are_cleared_in_place_and_read_as_zero)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    pa_heap_t *hp = h;
    const size_t n = (size_t)2 << 20;
    unsigned char *keep = pa_heap_alloc(p, h, 0, (size_t)24 << 20); /* live bytes: a budget */
    CHECK(keep != NULL);
    /* Blocks written end to end: the first free looks (fact 18 via pa_mm_clear_pages), and
     * from then on they are cleared in place and kept in memory. */
    for (int i = 0; i < 6; i++) {
        unsigned char *x = pa_heap_alloc(p, h, 0, n);
        CHECK(x != NULL);
        if (!x) break;
        CHECK_EQ(nonzero_bytes(x, n), 0);
        memset(x, 0x5A, n);
        CHECK(pa_heap_free(p, h, 0, x));
    }
    CHECK_EQ(hp->large_dense, 1);
    CHECK(hp->ctr.cached_resident >= n);
    CHECK(hp->ctr.cached_resident <= ((size_t)24 << 20) / 4 + n);
    /* Then blocks barely touched: the next free sees it and goes back to dropping pages; the
     * blocks still read as zero all the way. */
    for (int i = 0; i < 6; i++) {
        unsigned char *x = pa_heap_alloc(p, h, 0, n - 4096 * (size_t)i);
        CHECK(x != NULL);
        if (!x) break;
        CHECK_EQ(nonzero_bytes(x, n - 4096 * (size_t)i), 0);
        x[n / 2] = 1;
        CHECK(pa_heap_free(p, h, 0, x));
    }
    CHECK_EQ(hp->large_dense, 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, keep));
    CHECK(pa_heap_compact(p, h, 0) > 0 || pa_get_last_error() == ERROR_SUCCESS);
    CHECK_EQ(hp->ctr.cached_resident, 0);
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* ---- lookaside lists for 16-64 KiB blocks ---- */

TEST(lookaside_blocks_are_freed_to_the_user)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[6];
    for (int i = 0; i < 6; i++) x[i] = pa_heap_alloc(p, h, 0, 20000 + 5000 * (size_t)i);
    for (int i = 0; i < 6; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    /* Freed (possibly onto a lookaside list): every use of the pointer fails with 87. */
    CHECK_FAILS(pa_heap_free(p, h, 0, x[2]), ERROR_INVALID_PARAMETER);
    CHECK_EQ(pa_heap_size(p, h, 0, x[3]), (SIZE_T)-1);
    CHECK(!pa_heap_validate(p, h, 0, x[4]));
    CHECK(pa_heap_find_block(p, x[1], 1, NULL, NULL, NULL) != STATUS_SUCCESS);
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 0);
    CHECK_EQ(st.busy_bytes, 0);
    PROCESS_HEAP_ENTRY ents[64];
    int n = walk_all(p, h, ents, 64);
    for (int i = 0; i < n && i < 64; i++) CHECK(!(ents[i].wFlags & PROCESS_HEAP_ENTRY_BUSY));
    /* Reuse: exact sizes, zeroing, and the heap stays valid. */
    unsigned char *y = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, 30001);
    CHECK(y != NULL);
    CHECK_EQ(pa_heap_size(p, h, 0, y), 30001);
    size_t bad = 0;
    for (size_t j = 0; j < 30001; j++) bad += y[j] != 0;
    CHECK_EQ(bad, 0);
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 1);
    CHECK_EQ(st.busy_bytes, 30001);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, y));
    /* HeapCompact gives the listed blocks back: one free block again. */
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    n = walk_all(p, h, ents, 64);
    int busy = 0, freeb = 0;
    for (int i = 0; i < n && i < 64; i++) {
        busy += !!(ents[i].wFlags & PROCESS_HEAP_ENTRY_BUSY);
        freeb += ents[i].wFlags == 0;
    }
    CHECK_EQ(busy, 0);
    CHECK(pa_heap_stats(p, h, &st));
    CHECK(freeb >= 1 && (size_t)freeb <= st.segments); /* coalesced: one per segment at most */
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* ---- thread lookaside bins (16-64 KiB requests, LFH active) ---- */

/* Activates the LFH of h for 100-byte blocks, so that the calling thread gets a cache. */
static void lfh_on(pa_process_t *p, HANDLE h)
{
    void *s[40];
    for (int i = 0; i < 40; i++) s[i] = pa_heap_alloc(p, h, 0, 100);
    for (int i = 0; i < 40; i++) CHECK(pa_heap_free(p, h, 0, s[i]));
}

static int busy_entries(pa_process_t *p, HANDLE h)
{
    PROCESS_HEAP_ENTRY e;
    memset(&e, 0, sizeof e);
    int busy = 0;
    for (int n = 0; pa_heap_walk(p, h, &e) && n < 100000; n++) busy += !!(e.wFlags & PROCESS_HEAP_ENTRY_BUSY);
    CHECK_EQ(pa_get_last_error(), ERROR_NO_MORE_ITEMS);
    return busy;
}

TEST(thread_bins_reuse_medium_blocks_and_hide_them)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h);
    void *x[8];
    for (int i = 0; i < 8; i++) x[i] = pa_heap_alloc(p, h, 0, 17000 + 6000 * (size_t)i);
    for (int i = 0; i < 8; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    /* Binned blocks are freed as far as the caller can tell. */
    CHECK_FAILS(pa_heap_free(p, h, 0, x[3]), ERROR_INVALID_PARAMETER);
    CHECK_EQ(pa_heap_size(p, h, 0, x[5]), (SIZE_T)-1);
    CHECK(pa_heap_find_block(p, x[1], 1, NULL, NULL, NULL) != STATUS_SUCCESS);
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 0);
    CHECK_EQ(st.busy_bytes, 0);
    CHECK_EQ(busy_entries(p, h), 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    /* The last block freed of a class is the next one handed out for it, sized exactly. */
    unsigned char *y = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, 17000 + 6000 * 7 - 100);
    CHECK(y == x[7]);
    CHECK_EQ(pa_heap_size(p, h, 0, y), 17000 + 6000 * 7 - 100);
    size_t nonzero = 0;
    for (size_t j = 0; j < 17000 + 6000 * 7 - 100; j++) nonzero += y[j] != 0;
    CHECK_EQ(nonzero, 0);
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 1);
    CHECK_EQ(st.busy_bytes, 17000 + 6000 * 7 - 100);
    CHECK_EQ(busy_entries(p, h), 1);
    CHECK(pa_heap_free(p, h, 0, y));
    /* HeapCompact empties the bins into the back end. */
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    void *z = pa_heap_alloc(p, h, 0, 17000 + 6000 * 7 - 100);
    CHECK(z != NULL);
    CHECK(pa_heap_free(p, h, 0, z));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* heap.c mc_word_of: a thread remembers which back-end segment held the last block it freed
 * in each MiB; after the segments shrink and are rebuilt, those hints name stale slots, which
 * must cost a search, never vouch for memory the segments gave back. */
TEST(thread_bins_stale_segment_hints_vouch_for_nothing)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h);
    enum { N = 300 };
    static unsigned char *x[N];
    for (int i = 0; i < N; i++) CHECK((x[i] = pa_heap_alloc(p, h, 0, 40000)) != NULL);
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK(st.segments >= 3); /* 12 MB of blocks: the heap grew by segments */
    for (int i = 0; i < N; i++) CHECK(pa_heap_free(p, h, 0, x[i])); /* every MiB hinted */
    CHECK(pa_heap_compact(p, h, 0) > 0); /* bins emptied, free ranges decommitted */
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < N; i += 7) CHECK_FAILS(pa_heap_free(p, h, 0, x[i]), ERROR_INVALID_PARAMETER);
    for (int i = 0; i < N; i += 7) CHECK_EQ(pa_heap_size(p, h, 0, x[i]), (SIZE_T)-1);
    /* And blocks allocated again are freed through the hints as before. */
    for (int i = 0; i < N; i++) CHECK((x[i] = pa_heap_alloc(p, h, 0, 40000)) != NULL);
    for (int i = 0; i < N; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK_FAILS(pa_heap_free(p, h, 0, x[N / 2]), ERROR_INVALID_PARAMETER);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* A heap that serves only 16-64 KiB blocks (no LFH bucket ever active) gets the thread bins
 * after 17 of them: a block freed then waits in the freeing thread's own bin, where another
 * thread's request of its class does not find it (the heap's shared lookaside lists would
 * hand it out), and the freeing thread's next request of the class does. */
struct medium_arg {
    pa_process_t *p;
    HANDLE h;
    void *got;
};

static void *alloc_medium_in_thread(void *arg)
{
    struct medium_arg *m = arg;
    m->got = pa_heap_alloc(m->p, m->h, 0, 29000);
    return NULL;
}

TEST(thread_bins_serve_a_heap_without_lfh_sizes)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *a[20];
    for (int i = 0; i < 20; i++) CHECK((a[i] = pa_heap_alloc(p, h, 0, 30000)) != NULL);
    CHECK(pa_heap_free(p, h, 0, a[10]));
    struct medium_arg m = {p, h, NULL};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, alloc_medium_in_thread, &m), 0);
    CHECK_EQ(pthread_join(t, NULL), 0);
    CHECK(m.got != NULL && m.got != a[10]);
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.lfh_active, 0);
    CHECK(pa_heap_alloc(p, h, 0, 29000) == a[10]);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

TEST(thread_bins_detect_a_write_into_a_freed_block)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h);
    void *a = pa_heap_alloc(p, h, 0, 30000), *b = pa_heap_alloc(p, h, 0, 30000);
    CHECK(pa_heap_free(p, h, 0, a));
    CHECK(pa_heap_free(p, h, 0, b)); /* the bin: b, then a */
    memset(b, 0x41, 8);              /* a use after free overwrites b's link */
    CHECK(!pa_heap_validate(p, h, 0, NULL));
    pa_set_last_error(0);
    CHECK(pa_heap_alloc(p, h, 0, 30000) == NULL); /* reported, not followed */
    CHECK_EQ(pa_heap_last_status(), STATUS_HEAP_CORRUPTION);
    /* The bin was dropped (its blocks leak); the heap still serves that size. */
    void *c = pa_heap_alloc(p, h, 0, 30000);
    CHECK(c != NULL && c != a && c != b);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, c));
    /* A write over a binned block's header is caught the same way. */
    void *d = pa_heap_alloc(p, h, 0, 50000);
    CHECK(pa_heap_free(p, h, 0, d));
    memset((char *)d - 16, 0, 16);
    CHECK(pa_heap_alloc(p, h, 0, 50000) == NULL);
    CHECK_EQ(pa_heap_last_status(), STATUS_HEAP_CORRUPTION);
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

struct bins_arg {
    pa_process_t *p;
    HANDLE h;
    unsigned seed;
    volatile int locked, unlocking;
};

static void *bins_exit_thread(void *v)
{
    struct bins_arg *a = v;
    void *x[16];
    for (int i = 0; i < 16; i++) x[i] = pa_heap_alloc(a->p, a->h, 0, 20000 + 2500 * (size_t)i);
    for (int i = 0; i < 16; i++) pa_heap_free(a->p, a->h, 0, x[i]);
    return NULL; /* exits with its bins full */
}

TEST(thread_bins_of_an_exiting_thread_go_back_to_the_heap)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h);
    for (int k = 0; k < 20; k++) { /* more threads than there are caches */
        struct bins_arg a = {p, h, 0, 0, 0};
        pthread_t t;
        pthread_create(&t, NULL, bins_exit_thread, &a);
        pthread_join(t, NULL);
    }
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 0);
    CHECK_EQ(st.busy_bytes, 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_compact(p, h, 0) > 0); /* frees what the threads left */
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK_EQ(busy_entries(p, h), 0);
    /* Committed memory did not grow with the number of threads. */
    CHECK(pa_heap_stats(p, h, &st));
    CHECK(st.committed < ((size_t)4 << 20));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* A thread holding a cache until told to end; and one that only frees, when told to. */
struct holder {
    pa_process_t *p;
    HANDLE h;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int go;    /* holders end, the freer frees, once go reaches their number */
    int ready; /* threads that made their first call */
    void *block;
};

static void wait_turn(struct holder *a, int turn)
{
    pthread_mutex_lock(&a->mu);
    a->ready++;
    pthread_cond_broadcast(&a->cv);
    while (a->go < turn) pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

static void *cache_holder(void *v)
{
    struct holder *a = v;
    CHECK(pa_heap_free(a->p, a->h, 0, pa_heap_alloc(a->p, a->h, 0, 100))); /* claims a cache */
    wait_turn(a, 1);
    return NULL; /* gives it back */
}

static void *late_freer(void *v)
{
    struct holder *a = v;
    void *x = pa_heap_alloc(a->p, a->h, 0, 100); /* every cache taken: none for this thread */
    CHECK(pa_heap_free(a->p, a->h, 0, x));
    wait_turn(a, 2);
    CHECK(pa_heap_free(a->p, a->h, 0, a->block)); /* a cache is free now: it takes it */
    wait_turn(a, 3);
    return NULL;
}

static void set_go(struct holder *a, int go)
{
    pthread_mutex_lock(&a->mu);
    a->go = go;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void wait_ready(struct holder *a, int n)
{
    pthread_mutex_lock(&a->mu);
    while (a->ready < n) pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
}

/* Threads past the PA_LFH_TCACHES caches in the LFH's header chunk get caches carved as they
 * come, up to PA_LFH_TCACHES_MAX; the heap validates with those chunks, and they are private
 * (heap_guard refuses writes there). With more threads than that, a thread that found them
 * all taken gets one once a thread that held one ends, even if it only frees from then on (it
 * kept taking the heap lock). */
TEST(a_thread_without_a_cache_takes_one_given_back)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h); /* (this thread takes a cache too) */
    pa_heap_t *hp = h;
    struct holder a = {p, h, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, NULL};
    a.block = pa_heap_alloc(p, h, 0, 100);
    unsigned others = PA_LFH_TCACHES_MAX - atomic_load(&hp->lfh->claimed);
    pthread_t t[PA_LFH_TCACHES_MAX], late;
    for (unsigned i = 0; i < others; i++) pthread_create(&t[i], NULL, cache_holder, &a);
    wait_ready(&a, (int)others);
    CHECK_EQ(atomic_load(&hp->lfh->claimed), PA_LFH_TCACHES_MAX);
    CHECK_EQ(atomic_load(&hp->lfh->ncaches), PA_LFH_TCACHES_MAX);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    pa_lfh_tcache_t *last = _pa_lfh_tcache_at(hp->lfh, PA_LFH_TCACHES_MAX - 1);
    CHECK_EQ(pa_heap_private_overlap(p, (char *)last + 100, 8), (uintptr_t)last + 100);
    pthread_create(&late, NULL, late_freer, &a);
    wait_ready(&a, (int)others + 1);
    CHECK_EQ(atomic_load(&hp->lfh->claimed), PA_LFH_TCACHES_MAX);
    set_go(&a, 1); /* the holders end */
    for (unsigned i = 0; i < others; i++) pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&hp->lfh->claimed), PA_LFH_TCACHES_MAX - others);
    set_go(&a, 2); /* the late thread frees */
    wait_ready(&a, (int)others + 2);
    CHECK_EQ(atomic_load(&hp->lfh->claimed), PA_LFH_TCACHES_MAX - others + 1); /* it took one */
    set_go(&a, 3);
    pthread_join(late, NULL);
    CHECK_EQ(atomic_load(&hp->lfh->claimed), PA_LFH_TCACHES_MAX - others); /* and gave it back */
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

static void *bins_lock_thread(void *v)
{
    struct bins_arg *a = v;
    CHECK(pa_heap_lock(a->p, a->h));
    a->locked = 1;
    usleep(100000);
    a->unlocking = 1;
    CHECK(pa_heap_unlock(a->p, a->h));
    return NULL;
}

TEST(fact54_heaplock_excludes_binned_medium_calls)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h);
    void *x = pa_heap_alloc(p, h, 0, 40000);
    CHECK(pa_heap_free(p, h, 0, x)); /* binned: the next 40000 could be served without the lock */
    struct bins_arg a = {p, h, 0, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, bins_lock_thread, &a);
    while (!a.locked) usleep(1000);
    void *y = pa_heap_alloc(p, h, 0, 40000);
    CHECK(a.unlocking); /* it waited for HeapUnlock */
    CHECK(y != NULL);
    pthread_join(t, NULL);
    a.locked = a.unlocking = 0; /* (before the thread starts: it sets them) */
    pthread_create(&t, NULL, bins_lock_thread, &a);
    while (!a.locked) usleep(1000);
    CHECK(pa_heap_free(p, h, 0, y));
    CHECK(a.unlocking);
    pthread_join(t, NULL);
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* Fact 56 for a thread that used the heap before its LFH existed and then only frees (the
 * consumer of a producer thread): its LFH frees proceed while another thread holds HeapLock
 * (the free gives it an LFH cache; without one every free took the heap lock). */
struct consumer_arg {
    pa_process_t *p;
    HANDLE h;
    void *volatile x;
    volatile int done;
};

static void *early_consumer(void *v)
{
    struct consumer_arg *a = v;
    CHECK(pa_heap_free(a->p, a->h, 0, pa_heap_alloc(a->p, a->h, 0, 3000))); /* no LFH yet */
    while (!a->x) usleep(1000);
    CHECK(pa_heap_free(a->p, a->h, 0, a->x));
    a->done = 1;
    return NULL;
}

TEST(fact56_lfh_free_proceeds_under_heaplock_in_a_thread_older_than_the_lfh)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    struct consumer_arg a = {p, h, NULL, 0};
    pthread_t t;
    pthread_create(&t, NULL, early_consumer, &a);
    usleep(50000); /* (its first call is made before the LFH starts, or the test proves less) */
    lfh_on(p, h);
    void *x = pa_heap_alloc(p, h, 0, 100);
    CHECK(x != NULL);
    CHECK(pa_heap_lock(p, h));
    a.x = x;
    for (int i = 0; i < 2000 && !a.done; i++) usleep(1000);
    CHECK(a.done);
    CHECK(pa_heap_unlock(p, h));
    pthread_join(t, NULL);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

static void *bins_worker(void *v)
{
    struct bins_arg *a = v;
    void *x[64] = {0};
    unsigned r = a->seed;
    for (int i = 0; i < 30000; i++) {
        r = r * 1103515245u + 12345u;
        unsigned k = (r >> 8) % 64;
        if (x[k]) CHECK(pa_heap_free(a->p, a->h, 0, x[k]));
        size_t n = 16400 + (r >> 12) % 49000;
        x[k] = pa_heap_alloc(a->p, a->h, 0, n);
        CHECK(x[k] != NULL);
        if (x[k]) memset(x[k], (int)k, 64);
    }
    for (int k = 0; k < 64; k++) pa_heap_free(a->p, a->h, 0, x[k]);
    return NULL;
}

TEST(thread_bins_race_with_walk_and_validate)
{
    /* Two threads allocate and free 16-64 KiB blocks through their bins while this one walks
     * and validates the heap under its lock: every check must see a consistent heap. */
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    lfh_on(p, h);
    struct bins_arg a[2] = {{p, h, 1, 0, 0}, {p, h, 2, 0, 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, bins_worker, &a[i]);
    int bad = 0, rounds = 0;
    for (; rounds < 200; rounds++) {
        bad += !pa_heap_validate(p, h, 0, NULL);
        PROCESS_HEAP_ENTRY e;
        memset(&e, 0, sizeof e);
        for (int n = 0; pa_heap_walk(p, h, &e) && n < 100000; n++) {}
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK_EQ(bad, 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    pa_heap_stats_t st;
    CHECK(pa_heap_stats(p, h, &st));
    CHECK_EQ(st.busy_blocks, 0);
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

TEST(lfh_realloc_moves_and_heapsize_is_exact)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *warm[80];
    for (int i = 0; i < 80; i++) warm[i] = pa_heap_alloc(p, h, 0, i < 40 ? 100 : 300); /* both on */
    unsigned char *x = pa_heap_alloc(p, h, 0, 100);
    for (int i = 0; i < 100; i++) x[i] = (unsigned char)i;
    CHECK_EQ(pa_heap_size(p, h, 0, x), 100);
    unsigned char *y = pa_heap_realloc(p, h, HEAP_ZERO_MEMORY, x, 300);
    CHECK(y != NULL && y != x);
    CHECK_EQ(pa_heap_size(p, h, 0, y), 300);
    int bad = 0;
    for (int i = 0; i < 300; i++) bad += y[i] != (i < 100 ? i : 0);
    CHECK_EQ(bad, 0);
    CHECK_FAILS(pa_heap_size(p, h, 0, x) != (SIZE_T)-1, ERROR_INVALID_PARAMETER); /* x was freed */
    CHECK_FAILS(pa_heap_size(p, h, 0, y + 16) != (SIZE_T)-1, ERROR_INVALID_PARAMETER);
    CHECK(pa_heap_free(p, h, 0, y));
    for (int i = 0; i < 80; i++) CHECK(pa_heap_free(p, h, 0, warm[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* Is mem a busy LFH block of heap? */
static int in_lfh(pa_process_t *p, HANDLE heap, void *mem)
{
    pa_heap_t *h = _pa_heap_from_handle(p, heap);
    return h && _pa_lfh_block_at(h, (uintptr_t)mem) == (pa_block_t *)mem - 1;
}

TEST(early_back_end_block_moves_into_the_lfh_when_resized_without_growing)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    /* Allocated before the bucket is active: back-end blocks. */
    unsigned char *x = pa_heap_alloc(p, h, 0, 24), *g = pa_heap_alloc(p, h, 0, 200);
    memset(x, 0x5A, 24);
    CHECK(!in_lfh(p, h, x));
    void *warm[40];
    for (int i = 0; i < 40; i++) warm[i] = pa_heap_alloc(p, h, 0, 24);
    for (int i = 0; i < 40; i++) CHECK(pa_heap_free(p, h, 0, warm[i]));
    /* Growing, or with HEAP_REALLOC_IN_PLACE_ONLY, it stays where it is. */
    CHECK_EQ(pa_heap_realloc(p, h, HEAP_REALLOC_IN_PLACE_ONLY, x, 24), x);
    CHECK(!in_lfh(p, h, x));
    unsigned char *y = pa_heap_realloc(p, h, 0, x, 24);
    CHECK(y != NULL && y != x && in_lfh(p, h, y));
    CHECK_EQ(pa_heap_size(p, h, 0, y), 24);
    int bad = 0;
    for (int i = 0; i < 24; i++) bad += y[i] != 0x5A;
    CHECK_EQ(bad, 0);
    CHECK_FAILS(pa_heap_size(p, h, 0, x) != (SIZE_T)-1, ERROR_INVALID_PARAMETER); /* x was freed */
    /* From then on it is resized in place by the LFH's rule (fact 35). */
    CHECK_EQ(pa_heap_realloc(p, h, 0, y, 20), y);
    /* A bucket that is not active takes no block: 200 bytes stays in the back end. */
    CHECK_EQ(pa_heap_realloc(p, h, 0, g, 190), g);
    CHECK(!in_lfh(p, h, g));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, y));
    CHECK(pa_heap_free(p, h, 0, g));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* ---- event trace ---- */

/* Finds the first event of layer 3 with op at or after index *from; -1 if none. */
static int find_event(const pa_trace_event_t *ev, int n, int from, uint32_t op)
{
    for (int i = from; i < n; i++)
        if (ev[i].layer == PA_LAYER_HEAP && ev[i].op == op) return i;
    return -1;
}

TEST(trace_records_heap_operations)
{
    pa_process_t *p = proc_new();
    CHECK_EQ(pa_trace_start(p, 4096), STATUS_SUCCESS);
    uint64_t since = pa_trace_next_seq(p);
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    CHECK(h != NULL);
    /* Enough allocations of one class to reach the LFH's fast paths too. */
    void *x[40];
    for (int i = 0; i < 40; i++) x[i] = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY * (i == 0), 100);
    void *big = pa_heap_alloc(p, h, 0, 3 << 20);
    void *r = pa_heap_realloc(p, h, 0, x[1], 200);
    CHECK(r != NULL);
    for (int i = 0; i < 40; i++) CHECK(pa_heap_free(p, h, 0, i == 1 ? r : x[i]));
    CHECK(pa_heap_free(p, h, 0, big));
    CHECK_FAILS(pa_heap_free(p, h, 0, x[5]), ERROR_INVALID_PARAMETER); /* double free */
    pa_heap_compact(p, h, 0);
    CHECK(pa_heap_destroy(p, h));

    static pa_trace_event_t ev[4096];
    uint64_t next = 0, lost = 0;
    int n = (int)pa_trace_read(p, since, ev, 4096, &next, &lost);
    CHECK_EQ(lost, 0);
    int i = find_event(ev, n, 0, PA_OP_HEAP_CREATE);
    CHECK(i >= 0);
    if (i >= 0) {
        CHECK_EQ(ev[i].address, (uintptr_t)h);
        CHECK_EQ(ev[i].extra, (uintptr_t)h);
        CHECK_EQ(ev[i].result, 1);
    }
    /* The 40 allocations, in order, with their addresses, sizes and flags. */
    int at = i;
    for (int k = 0; k < 40 && at >= 0; k++) {
        at = find_event(ev, n, at + 1, PA_OP_HEAP_ALLOC);
        CHECK(at >= 0);
        if (at < 0) break;
        CHECK_EQ(ev[at].address, (uintptr_t)x[k]);
        CHECK_EQ(ev[at].size, 100);
        CHECK_EQ(ev[at].flags, k == 0 ? HEAP_ZERO_MEMORY : 0);
        CHECK_EQ(ev[at].extra, (uintptr_t)h);
        CHECK_EQ(ev[at].result, 1);
    }
    at = find_event(ev, n, at + 1, PA_OP_HEAP_ALLOC);
    CHECK(at >= 0);
    if (at >= 0) CHECK_EQ(ev[at].address, (uintptr_t)big);
    int re = find_event(ev, n, 0, PA_OP_HEAP_REALLOC);
    CHECK(re > at);
    if (re >= 0) {
        CHECK_EQ(ev[re].address, (uintptr_t)x[1]);
        CHECK_EQ(ev[re].size, 200);
        CHECK_EQ(ev[re].result, (int64_t)(uintptr_t)r);
    }
    /* 41 successful frees, then the failed double free. */
    at = re;
    for (int k = 0; k < 41 && at >= 0; k++) {
        at = find_event(ev, n, at + 1, PA_OP_HEAP_FREE);
        CHECK(at >= 0);
        if (at < 0) break;
        CHECK_EQ(ev[at].address, k == 40 ? (uintptr_t)big : k == 1 ? (uintptr_t)r : (uintptr_t)x[k]);
        CHECK_EQ(ev[at].result, 1);
    }
    at = find_event(ev, n, at + 1, PA_OP_HEAP_FREE);
    CHECK(at >= 0);
    if (at >= 0) {
        CHECK_EQ(ev[at].address, (uintptr_t)x[5]);
        CHECK_EQ(ev[at].result, 0);
    }
    CHECK(find_event(ev, n, 0, PA_OP_HEAP_COMPACT) > at);
    int d = find_event(ev, n, 0, PA_OP_HEAP_DESTROY);
    CHECK(d > at);
    if (d >= 0) CHECK_EQ(ev[d].result, 1);
    /* Every heap event carries the heap handle. */
    for (int k = 0; k < n; k++)
        if (ev[k].layer == PA_LAYER_HEAP) CHECK_EQ(ev[k].extra, (uintptr_t)h);
    pa_trace_stop(p);
    /* Off again: nothing more is recorded. */
    uint64_t before = pa_trace_next_seq(p);
    HANDLE h2 = pa_heap_create(p, 0, 0, 0);
    void *y = pa_heap_alloc(p, h2, 0, 10);
    CHECK(pa_heap_free(p, h2, 0, y));
    CHECK_EQ(pa_trace_next_seq(p), before);
    proc_end(p);
}

/* ---- LFH internals ---- */

TEST(lfh_bucket_table_matches_the_formula)
{
    for (size_t n = 0; n <= PA_LFH_MAX_REQUEST; n++) {
        unsigned b = _pa_lfh_bucket(n);
        if (b != _pa_lfh_bucket_calc(n)) {
            CHECK_EQ(n, (size_t)-1); /* reports the first n that differs */
            break;
        }
        CHECK(b < PA_LFH_BUCKETS && n <= _pa_lfh_bucket_data_size(b));
        if (b && n <= _pa_lfh_bucket_data_size(b - 1)) CHECK_EQ(n, (size_t)-2);
    }
}

/* The bytes a heap holds in memory or may touch without a commit: its commit less the free LFH
 * chunks whose pages were dropped (spare_committed). */
#define HELD(s) ((s).committed - (s).spare_committed)

/* On a heap whose LFH serves 32-byte requests (48-byte slots): stats in s0, then na blocks
 * a[] and nb blocks b[] allocated (stats in s1), then b[] freed (stats in s2). */
static void lfh_build_then_free(pa_process_t *p, HANDLE h, void **a, int na, void **b, int nb,
                                pa_heap_stats_t *s0, pa_heap_stats_t *s1, pa_heap_stats_t *s2)
{
    for (int i = 0; i < 18; i++) CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 32)));
    CHECK(pa_heap_stats(p, h, s0));
    for (int i = 0; i < na; i++) CHECK((a[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
    for (int i = 0; i < nb; i++) CHECK((b[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
    CHECK(pa_heap_stats(p, h, s1));
    for (int i = 0; i < nb; i++) CHECK(pa_heap_free(p, h, 0, b[i]));
    CHECK(pa_heap_stats(p, h, s2));
}

/* Empty LFH subsegments stay committed within the heap's budget (max(PA_LFH_RETAIN_MIN, an
 * eighth of the bytes in use; up to a quarter on credit, see the next test)): a structure freed
 * next to a larger live one keeps its pages for the next one; HeapCompact releases them;
 * once everything is freed at most PA_LFH_RETAIN_MIN (plus the subsegments the thread's bins
 * keep partly used) stays. */
TEST(lfh_empty_subsegments_kept_within_the_budget)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { NA = 160000, NB = 24000 }; /* 48-byte slots: 7.3 MiB live, 1.1 MiB freed */
    const size_t slack = 4 * PA_LFH_CHUNK;
    void **a = malloc(NA * sizeof *a), **b = malloc(NB * sizeof *b);
    CHECK(a && b);
    pa_heap_stats_t s0, s1, s2, s3, s4;
    lfh_build_then_free(p, h, a, NA, b, NB, &s0, &s1, &s2);
    CHECK_EQ(HELD(s2), HELD(s1)); /* all of B's subsegments kept */
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < NB; i++) CHECK((b[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
    CHECK(pa_heap_stats(p, h, &s3));
    CHECK_EQ(HELD(s3), HELD(s1)); /* and reused */
    for (int i = 0; i < NB; i++) CHECK(pa_heap_free(p, h, 0, b[i]));
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK(pa_heap_stats(p, h, &s3));
    CHECK(HELD(s3) + (size_t)NB * 48 - slack <= HELD(s1));
    for (int i = 0; i < NA; i++) CHECK(pa_heap_free(p, h, 0, a[i]));
    CHECK(pa_heap_stats(p, h, &s4));
    CHECK(HELD(s4) <= HELD(s0) + PA_LFH_RETAIN_MIN + slack);
    CHECK_EQ(s4.busy_blocks, 0);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK(pa_heap_stats(p, h, &s4));
    CHECK(HELD(s4) <= HELD(s0) + slack);
    free(a);
    free(b);
    proc_end(p);
}

/* Empty LFH subsegments kept beyond the budget above, up to a quarter of the bytes in use,
 * are kept on credit: memory the heap commits elsewhere (a large block here) is paid for by
 * releasing them, so that keeping them never raises the heap's peak. */
TEST(lfh_empty_subsegments_kept_on_credit_pay_for_later_commits)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { NA = 160000, NB = 36000 }; /* 48-byte slots: 7.3 MiB live, 1.65 MiB freed */
    const size_t big = (size_t)4 << 20;
    void **a = malloc(NA * sizeof *a), **b = malloc(NB * sizeof *b);
    CHECK(a && b);
    pa_heap_stats_t s0, s1, s2, s3;
    lfh_build_then_free(p, h, a, NA, b, NB, &s0, &s1, &s2);
    CHECK_EQ(HELD(s2), HELD(s1)); /* more than an eighth of 7.3 MiB, all kept */
    void *x = pa_heap_alloc(p, h, 0, big);
    CHECK(x != NULL);
    CHECK(pa_heap_stats(p, h, &s3));
    /* Released down to PA_LFH_RETAIN_MIN (more than an eighth of the bytes in use): about
     * 0.6 MiB of the 1.65. */
    CHECK(HELD(s3) + ((size_t)384 << 10) <= HELD(s2) + big);
    CHECK(HELD(s3) + ((size_t)1 << 20) >= HELD(s2) + big);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, x));
    for (int i = 0; i < NA; i++) CHECK(pa_heap_free(p, h, 0, a[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    free(a);
    free(b);
    proc_end(p);
}

/* A bucket that needs a new subsegment takes an empty one that another bucket of the same
 * subsegment size keeps, before it commits more: the blocks of the new size land where the
 * freed ones were, and the heap's commit does not grow. */
TEST(lfh_new_subsegment_takes_an_empty_one_another_bucket_keeps)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { NA = 6000, NB = 3000 }; /* 48-byte slots (288 KiB), then 80-byte slots (240 KiB) */
    static void *a[NA], *b[NB];
    for (int i = 0; i < 18; i++) {
        CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 32)));
        CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 64)));
    }
    CHECK(_pa_lfh_bucket(32) != _pa_lfh_bucket(64));
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < NA; i++) {
        CHECK((a[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
        if ((uintptr_t)a[i] < lo) lo = (uintptr_t)a[i];
        if ((uintptr_t)a[i] > hi) hi = (uintptr_t)a[i];
    }
    for (int i = 0; i < NA; i++) CHECK(pa_heap_free(p, h, 0, a[i]));
    pa_heap_stats_t s1, s2;
    CHECK(pa_heap_stats(p, h, &s1));
    int inside = 0;
    for (int i = 0; i < NB; i++) {
        CHECK((b[i] = pa_heap_alloc(p, h, 0, 64)) != NULL);
        inside += (uintptr_t)b[i] >= lo && (uintptr_t)b[i] <= hi;
    }
    CHECK(pa_heap_stats(p, h, &s2));
    CHECK(HELD(s2) <= HELD(s1));
    CHECK(inside >= NB / 2);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < NB; i++) CHECK(pa_heap_free(p, h, 0, b[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    /* A bigger empty subsegment serves too (its other chunks go back): 4000-byte slots live
     * in subsegments of two chunks, 128-byte slots in one. */
    CHECK(pa_heap_compact(p, h, 0) > 0);
    CHECK_EQ(_pa_lfh_bucket_nchunks(_pa_lfh_bucket(4000)), 2);
    CHECK_EQ(_pa_lfh_bucket_nchunks(_pa_lfh_bucket(128)), 1);
    for (int i = 0; i < 18; i++) {
        CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 128)));
        CHECK((a[i] = pa_heap_alloc(p, h, 0, 4000)) != NULL);
    }
    for (int i = 18; i < 100; i++) CHECK((a[i] = pa_heap_alloc(p, h, 0, 4000)) != NULL);
    for (int i = 0; i < 100; i++) CHECK(pa_heap_free(p, h, 0, a[i]));
    CHECK(pa_heap_stats(p, h, &s1));
    for (int i = 0; i < NB; i++) CHECK((b[i] = pa_heap_alloc(p, h, 0, 128)) != NULL); /* 432 KiB */
    CHECK(pa_heap_stats(p, h, &s2));
    CHECK(HELD(s2) + ((size_t)128 << 10) <= HELD(s1) + (size_t)NB * 144);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    for (int i = 0; i < NB; i++) CHECK(pa_heap_free(p, h, 0, b[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

/* The first free entry HeapWalk lists in an LFH region (free chunks kept committed), or
 * lpData NULL. Checks that the walk ends as it should. */
static PROCESS_HEAP_ENTRY lfh_spare_entry(pa_process_t *p, HANDLE h)
{
    PROCESS_HEAP_ENTRY e, found;
    memset(&e, 0, sizeof e);
    memset(&found, 0, sizeof found);
    int in_lfh = 0;
    for (int n = 0; pa_heap_walk(p, h, &e) && n < 1000000; n++) {
        if (e.wFlags & PROCESS_HEAP_REGION) in_lfh = e.cbData == PA_LFH_CHUNK; /* header chunk */
        else if (in_lfh && !e.wFlags && e.cbData > PA_LFH_CHUNK / 2 && !found.lpData) found = e;
    }
    CHECK_EQ(pa_get_last_error(), ERROR_NO_MORE_ITEMS);
    return found;
}

/* A new LFH subsegment's commit runs LFH_AHEAD chunks ahead (kept committed, spare_committed),
 * so the next subsegment, of another bucket here, needs no commit; chunks released past the
 * retention budget stay committed with their pages dropped, at most max(4 MiB, the
 * subsegments' commit); HeapWalk lists them as free; HeapCompact decommits them. */
TEST(lfh_free_chunks_stay_committed_without_their_pages)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    enum { NA = 160000 }; /* 48-byte slots: 7.3 MiB */
    void **a = malloc(NA * sizeof *a);
    CHECK(a != NULL);
    for (int i = 0; i < 18; i++) {
        CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 32)));
        CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 64)));
    }
    pa_heap_stats_t s0, s1, s2, s3;
    CHECK(pa_heap_stats(p, h, &s0));
    CHECK(s0.spare_committed >= 4 * PA_LFH_CHUNK); /* two 1-chunk subsegments, the rest ahead */
    void *x = pa_heap_alloc(p, h, 0, 200); /* a third bucket: its subsegment from the spare */
    CHECK(x != NULL);
    for (int i = 0; i < 18; i++) CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, 200)));
    void *y = pa_heap_alloc(p, h, 0, 200);
    CHECK(pa_heap_stats(p, h, &s1));
    CHECK_EQ(s1.committed, s0.committed);
    CHECK_EQ(s1.spare_committed + PA_LFH_CHUNK, s0.spare_committed);
    CHECK(pa_heap_free(p, h, 0, x));
    CHECK(pa_heap_free(p, h, 0, y));
    for (int i = 0; i < NA; i++) CHECK((a[i] = pa_heap_alloc(p, h, 0, 32)) != NULL);
    for (int i = 0; i < NA; i++) CHECK(pa_heap_free(p, h, 0, a[i]));
    CHECK(pa_heap_stats(p, h, &s2));
    CHECK(s2.spare_committed > 0);
    CHECK(s2.spare_committed <= ((size_t)4 << 20) + (s2.committed - s2.spare_committed));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    PROCESS_HEAP_ENTRY e = lfh_spare_entry(p, h);
    CHECK(e.lpData != NULL);
    if (e.lpData) {
        CHECK_EQ(e.cbOverhead, PA_HEAP_UNIT);
        CHECK_EQ((e.cbData + PA_HEAP_UNIT) % PA_LFH_CHUNK, 0);
        char *from = (char *)e.lpData - PA_HEAP_UNIT;
        static unsigned char flags[16];
        CHECK_EQ(_pa_os_page_flags(from, 16, flags), 0);
        int present = 0;
        for (int i = 0; i < 16; i++) present += (flags[i] & PA_OS_PAGE_PRESENT) != 0;
        CHECK_EQ(present, 0);
        MEMORY_BASIC_INFORMATION mbi;
        CHECK(pa_virtual_query(p, from, &mbi, sizeof mbi));
        CHECK_EQ(mbi.State, MEM_COMMIT);
        CHECK(pa_heap_compact(p, h, 0) > 0);
        CHECK(pa_heap_stats(p, h, &s3));
        CHECK_EQ(s3.spare_committed, 0);
        CHECK(s3.committed + s2.spare_committed <= s2.committed);
        CHECK(pa_virtual_query(p, from, &mbi, sizeof mbi));
        CHECK_EQ(mbi.State, MEM_RESERVE);
        CHECK(lfh_spare_entry(p, h).lpData == NULL);
    }
    CHECK(pa_heap_validate(p, h, 0, NULL));
    free(a);
    proc_end(p);
}

/* Random phases of building and freeing LFH blocks of sizes whose subsegments span 1, 2, 4
 * and 8 chunks (each phase its own pair of sizes), with a large block now and then: the
 * commits of new subsegments, some over chunks kept committed, pay for themselves by
 * releasing empty subsegments, and a release can decommit the chunks segments keep. Every
 * block is written end to end when allocated and checked before it is freed; the heap
 * validates after each phase. */
TEST(lfh_chunks_kept_committed_survive_random_build_and_free)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    static const size_t sizes[] = {32, 200, 1000, 4000, 9000, 16000};
    enum { MAX = 12000 };
    static unsigned char *x[MAX];
    static size_t xn[MAX];
    int live = 0, bad = 0;
    uint64_t r = 0x9E3779B97F4A7C15u;
#define NEXT() (r ^= r << 13, r ^= r >> 7, r ^= r << 17, r)
    for (int k = 0; k < 6; k++)
        for (int i = 0; i < 18; i++) CHECK(pa_heap_free(p, h, 0, pa_heap_alloc(p, h, 0, sizes[k])));
    for (int phase = 0; phase < 40 && !bad; phase++) {
        size_t s0 = sizes[NEXT() % 6], s1 = sizes[NEXT() % 6];
        int target = phase % 2 ? (int)(NEXT() % (uint64_t)(live / 4 + 1))
                               : MAX / 4 + (int)(NEXT() % (MAX * 3 / 4));
        while (live < target && !bad) {
            uint64_t v = NEXT();
            size_t n = (v & 1 ? s0 : s1) - (size_t)(v >> 40) % 16;
            unsigned char *b = pa_heap_alloc(p, h, 0, n);
            if (!b) bad = 1;
            else {
                memset(b, (int)(live & 0xff), n);
                x[live] = b;
                xn[live++] = n;
            }
        }
        while (live > target) {
            int i = (int)(NEXT() % (uint64_t)live);
            if (x[i][0] != x[i][xn[i] - 1]) bad = 1;
            CHECK(pa_heap_free(p, h, 0, x[i]));
            x[i] = x[--live];
            xn[i] = xn[live];
        }
        if (phase % 5 == 2) { /* a commit elsewhere: paid for with empty subsegments */
            void *big = pa_heap_alloc(p, h, 0, (size_t)(1 + NEXT() % 6) << 20);
            CHECK(big != NULL);
            CHECK(pa_heap_free(p, h, 0, big));
        }
        CHECK(pa_heap_validate(p, h, 0, NULL));
    }
#undef NEXT
    CHECK_EQ(bad, 0);
    while (live) CHECK(pa_heap_free(p, h, 0, x[--live]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

/* The pages a cached large block keeps resident (cleared when it was freed) move into what
 * the heap commits next, a new LFH subsegment here: its pages are in memory before anything
 * writes them, they read as zero, and the cache keeps that much less. */
TEST(pages_kept_by_cached_large_blocks_move_into_the_next_commit)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    pa_heap_t *hp = h;
    const size_t n = (size_t)2 << 20;
    unsigned char *keep = pa_heap_alloc(p, h, 0, (size_t)24 << 20); /* live bytes: a budget */
    CHECK(keep != NULL);
    for (int i = 0; i < 3; i++) { /* written end to end: cleared in place and kept */
        unsigned char *x = pa_heap_alloc(p, h, 0, n);
        CHECK(x != NULL);
        if (!x) break;
        memset(x, 0x5A, n);
        CHECK(pa_heap_free(p, h, 0, x));
    }
    size_t before = hp->ctr.cached_resident;
    CHECK(before >= n);
    void *y[18];
    for (int i = 0; i < 18; i++) /* back end */
        CHECK((y[i] = pa_heap_alloc(p, h, 0, 4000)) != NULL);
    unsigned char *z = pa_heap_alloc(p, h, 0, 4000); /* in the bucket's first subsegment */
    CHECK(z != NULL);
    unsigned bk = _pa_lfh_bucket(4000);
    size_t bytes = (size_t)hp->lfh->bucket[bk].nchunks * PA_LFH_CHUNK;
    CHECK(bytes >= 2 * PA_LFH_CHUNK);
    const pa_block_t *zh = (const pa_block_t *)(z - PA_HEAP_UNIT); /* size: its slot index */
    unsigned char *base =
        z - PA_HEAP_UNIT - (size_t)zh->size * hp->lfh->bucket[bk].slot_size - PA_LFH_SUB_HDR;
    CHECK_EQ(((pa_lfh_sub_t *)base)->magic, PA_LFH_SUB_MAGIC);
    unsigned char flags[16];
    CHECK_EQ(_pa_os_page_flags(base + bytes - PA_LFH_CHUNK, 16, flags), 0); /* last chunk */
    int present = 0;
    for (int i = 0; i < 16; i++) present += (flags[i] & PA_OS_PAGE_PRESENT) != 0;
    CHECK_EQ(present, 16);
    CHECK_EQ(nonzero_bytes(base + bytes - PA_LFH_CHUNK, PA_LFH_CHUNK), 0);
    CHECK(hp->ctr.cached_resident + bytes <= before);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_free(p, h, 0, z));
    for (int i = 0; i < 18; i++) CHECK(pa_heap_free(p, h, 0, y[i]));
    CHECK(pa_heap_free(p, h, 0, keep));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    CHECK(pa_heap_destroy(p, h));
    proc_end(p);
}

TEST(trace_started_and_stopped_while_the_fast_paths_run)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[64];
    for (int i = 0; i < 64; i++) x[i] = pa_heap_alloc(p, h, 0, 40);
    for (int i = 32; i < 64; i++) CHECK(pa_heap_free(p, h, 0, x[i])); /* fast frees */
    CHECK_EQ(pa_trace_start(p, 1024), STATUS_SUCCESS);
    uint64_t since = pa_trace_next_seq(p);
    void *y = pa_heap_alloc(p, h, 0, 40);
    CHECK(pa_heap_free(p, h, 0, y));
    CHECK(pa_heap_free(p, h, 0, x[0]));
    static pa_trace_event_t ev[64];
    uint64_t next = 0, lost = 0;
    int n = (int)pa_trace_read(p, since, ev, 64, &next, &lost);
    int a = find_event(ev, n, 0, PA_OP_HEAP_ALLOC);
    CHECK(a >= 0);
    if (a >= 0) CHECK_EQ(ev[a].address, (uintptr_t)y);
    int f = find_event(ev, n, 0, PA_OP_HEAP_FREE);
    CHECK(f > a);
    if (f > a) CHECK_EQ(ev[f].address, (uintptr_t)y);
    CHECK(find_event(ev, n, f + 1, PA_OP_HEAP_FREE) > f);
    pa_trace_stop(p);
    uint64_t before = pa_trace_next_seq(p);
    y = pa_heap_alloc(p, h, 0, 40);
    CHECK(pa_heap_free(p, h, 0, y));
    CHECK_EQ(pa_trace_next_seq(p), before);
    for (int i = 1; i < 32; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

TEST(lfh_stats_count_busy_slots_and_bytes_exactly)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[300];
    size_t bytes = 0;
    for (int i = 0; i < 300; i++) {
        size_t n = 1 + (size_t)(i * 37) % 64; /* 4 buckets: each activates at its 17th */
        x[i] = pa_heap_alloc(p, h, 0, n);
        bytes += n;
    }
    pa_heap_stats_t s;
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_blocks, 300);
    CHECK_EQ(s.busy_bytes, bytes);
    uint64_t lfh = 0;
    for (int b = 0; b < PA_LFH_BUCKETS; b++) lfh += s.bucket_busy[b];
    CHECK_EQ(lfh, 300 - 4 * 17);
    /* An in-place LFH shrink (same 16-byte rounding) counts the new size. */
    void *z = pa_heap_alloc(p, h, 0, 40);
    CHECK(pa_heap_realloc(p, h, HEAP_REALLOC_IN_PLACE_ONLY, z, 33) == z);
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_bytes, bytes + 33);
    CHECK(pa_heap_free(p, h, 0, z));
    for (int i = 0; i < 150; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_blocks, 150);
    for (int i = 150; i < 300; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_stats(p, h, &s));
    CHECK_EQ(s.busy_blocks, 0);
    CHECK_EQ(s.busy_bytes, 0);
    lfh = 0;
    for (int b = 0; b < PA_LFH_BUCKETS; b++) lfh += s.bucket_busy[b];
    CHECK_EQ(lfh, 0);
    proc_end(p);
}

TEST(lfh_corrupted_cache_link_fails_the_allocation)
{
    pa_process_t *p = proc_new();
    HANDLE h = pa_heap_create(p, 0, 0, 0);
    void *x[40];
    for (int i = 0; i < 40; i++) x[i] = pa_heap_alloc(p, h, 0, 48);
    CHECK(pa_heap_free(p, h, 0, x[39]));
    memset(x[39], 0xff, 8); /* a use after free over the slot's link */
    CHECK(pa_heap_validate(p, h, 0, NULL) == FALSE);
    CHECK(pa_heap_alloc(p, h, 0, 48) == NULL);
    CHECK_EQ(pa_heap_last_status(), STATUS_HEAP_CORRUPTION);
    /* The bad link is gone (with the slots behind it): the heap serves and validates. */
    CHECK(pa_heap_validate(p, h, 0, NULL));
    void *y[200];
    for (int i = 0; i < 200; i++) CHECK((y[i] = pa_heap_alloc(p, h, 0, 48)) != NULL);
    for (int i = 0; i < 200; i++) CHECK(pa_heap_free(p, h, 0, y[i]));
    for (int i = 0; i < 39; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

CTEST_MAIN()
