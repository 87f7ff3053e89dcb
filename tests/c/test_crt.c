/* test_crt.c: layer 4 (the CRT, csrc/crt*.c) against ../shared/reference/heap.md sections
 * 1.12-1.14 and 1.16 (facts numbered as there), plus pyalloc's refusals of misuse. Each test
 * uses a private process with a release or debug CRT, detached and destroyed at the end; the
 * last tests use the Windows names of pyalloc/crt.h on the current process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <pthread.h>

#include "crttest.h"
#include "pyalloc/windows.h"

#define PYALLOC_REPLACE_CRT
#define _CRTDBG_MAP_ALLOC
#include "pyalloc/crt.h"

#define P8 ((size_t)8)
#define MiB ((size_t)1 << 20)

/* ---- 1.12 malloc / calloc / realloc / free / _msize ---- */

TEST(fact65_malloc_zero_and_realloc_null_and_zero)
{
    pa_process_t *p = crt_proc(0, 0);
    void *a = pa_crt_malloc(p, 0);
    CHECK(a != NULL);
    CHECK_EQ(pa_crt_msize(p, a), 1); /* fact 67: bumped to one byte on UCRT */
    pa_crt_free(p, a);
    void *b = pa_crt_realloc(p, NULL, 10);
    CHECK(b != NULL);
    CHECK_EQ(pa_crt_msize(p, b), 10);
    memset(b, 0x5A, 10);
    void *c = pa_crt_realloc(p, b, 20);
    CHECK(c != NULL);
    CHECK(all_bytes(c, 0x5A, 10));
    size_t before = crt_busy(p);
    errno = 0;
    CHECK(pa_crt_realloc(p, c, 0) == NULL);          /* frees c */
    CHECK_EQ(crt_busy(p), before - 1);
    CHECK(!pa_heap_validate(p, crt_heap(p), 0, c));
    CHECK_EQ(errno, 0);
    void *d = pa_crt_realloc(p, NULL, 0);            /* malloc(0) */
    CHECK(d != NULL);
    CHECK_EQ(pa_crt_msize(p, d), 1);
    pa_crt_free(p, d);
    pa_crt_free(p, NULL);
    crt_end(p);
}

static int walk_finds(pa_process_t *p, void *block, size_t size)
{
    PROCESS_HEAP_ENTRY e;
    memset(&e, 0, sizeof e);
    int found = 0;
    while (pa_heap_walk(p, crt_heap(p), &e))
        if (e.lpData == block && (e.wFlags & PROCESS_HEAP_ENTRY_BUSY) && e.cbData == size) found++;
    return found;
}

TEST(fact67_one_heapalloc_per_malloc)
{
    pa_process_t *p = crt_proc(0, 0);
    CHECK(pa_crt_get_heap_handle(p) == crt_heap(p)); /* fact 71: ucrtbase's heap */
    size_t sizes[] = {1, 24, 100, 1000, 5000, 70000, 2 * MiB};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t before = crt_busy(p);
        void *b = pa_crt_malloc(p, sizes[i]);
        CHECK(b != NULL);
        CHECK_EQ(crt_busy(p), before + 1);
        CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, b), sizes[i]);
        CHECK_EQ(pa_crt_msize(p, b), pa_heap_size(p, crt_heap(p), 0, b));
        CHECK_EQ(walk_finds(p, b, sizes[i]), 1);
        CHECK_EQ((uintptr_t)b & 15, 0);
        memset(b, 0xA5, sizes[i]);
        pa_crt_free(p, b);
        CHECK_EQ(crt_busy(p), before);
    }
    /* And the CRT's free takes HeapAlloc's blocks (same heap). */
    void *h = pa_heap_alloc(p, crt_heap(p), 0, 40);
    CHECK_EQ(pa_crt_msize(p, h), 40);
    pa_crt_free(p, h);
    CHECK(!pa_heap_validate(p, crt_heap(p), 0, h));
    crt_end(p);
}

static int count_calls(pa_process_t *p, size_t size, void *ctx)
{
    (void)p, (void)size;
    ++*(int *)ctx;
    return 0;
}

TEST(fact67_heap_maxreq_is_enomem_without_new_handler)
{
    pa_process_t *p = crt_proc(0, 0);
    int calls = 0;
    pa_crt_set_new_mode(p, 1);
    pa_crt_set_new_handler(p, count_calls, &calls);
    size_t sizes[] = {_HEAP_MAXREQ + 1, SIZE_MAX};
    for (int i = 0; i < 2; i++) {
        errno = 0;
        CHECK(pa_crt_malloc(p, sizes[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
        errno = 0;
        CHECK(pa_crt_calloc(p, 1, sizes[i]) == NULL);
        CHECK_EQ(errno, ENOMEM);
    }
    CHECK_EQ(calls, 0); /* rejected before the new-handler loop */
    void *b = pa_crt_malloc(p, 8);
    errno = 0;
    CHECK(pa_crt_realloc(p, b, _HEAP_MAXREQ + 1) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(pa_crt_msize(p, b), 8); /* untouched */
    pa_crt_free(p, b);
    crt_end(p);
}

TEST(fact67_68_heap_failure_sets_enomem_and_keeps_block)
{
    pa_process_t *p = crt_proc(0, 16 * MiB);
    errno = 0;
    CHECK(pa_crt_malloc(p, 64 * MiB) == NULL); /* the commit limit refuses */
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(pa_crt_calloc(p, 64, MiB) == NULL);
    CHECK_EQ(errno, ENOMEM);
    char *b = pa_crt_malloc(p, 100);
    memset(b, 7, 100);
    errno = 0;
    CHECK(pa_crt_realloc(p, b, 64 * MiB) == NULL);
    CHECK_EQ(errno, ENOMEM); /* from the heap's ERROR_NOT_ENOUGH_MEMORY */
    CHECK(all_bytes(b, 7, 100));
    CHECK_EQ(pa_crt_msize(p, b), 100);
    pa_crt_free(p, b);
    crt_end(p);
}

TEST(fact68_calloc_overflow_and_zeroing)
{
    pa_process_t *p = crt_proc(0, 0);
    errno = 0;
    CHECK(pa_crt_calloc(p, 0x10, _HEAP_MAXREQ / 0x10 + 1) == NULL);
    CHECK_EQ(errno, ENOMEM);
    errno = 0;
    CHECK(pa_crt_calloc(p, SIZE_MAX / 2, 3) == NULL);
    CHECK_EQ(errno, ENOMEM);
    void *z = pa_crt_calloc(p, 0, 5);
    CHECK(z != NULL);
    CHECK_EQ(pa_crt_msize(p, z), 1);
    pa_crt_free(p, z);
    /* Reuse a dirty block: calloc still zeroes. */
    for (int round = 0; round < 40; round++) {
        char *d = pa_crt_malloc(p, 300);
        memset(d, 0xEE, 300);
        pa_crt_free(p, d);
        char *c = pa_crt_calloc(p, 100, 3);
        CHECK(c != NULL);
        CHECK(all_bytes(c, 0, 300));
        CHECK_EQ(pa_crt_msize(p, c), 300);
        pa_crt_free(p, c);
    }
    crt_end(p);
}

TEST(fact69_70_msize_null_and_foreign)
{
    pa_process_t *p = crt_proc(0, 0);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    errno = 0;
    CHECK_EQ(pa_crt_msize(p, NULL), (size_t)-1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 1);
    CHECK(!strcmp(iph.function, "_msize"));
    char *b = pa_crt_malloc(p, 64);
    int local;
    CHECK_EQ(pa_crt_msize(p, b + 16), (size_t)-1); /* not a block: HeapSize's -1 */
    CHECK_EQ(pa_crt_msize(p, &local), (size_t)-1);
    CHECK_EQ(pa_crt_msize(p, b), 64);
    /* free of a foreign pointer: HeapFree fails, errno from its last error. */
    errno = 0;
    pa_crt_free(p, b + 16);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(pa_crt_msize(p, b), 64);
    pa_crt_free(p, b);
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK_EQ(s.invalid_parameters, 1);
    CHECK_EQ(s.debug, 0);
    crt_end(p);
}

/* ---- 1.13 _expand / _recalloc / aligned allocation ---- */

TEST(fact73_expand)
{
    pa_process_t *p = crt_proc(0, 0);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    errno = 0;
    CHECK(pa_crt_expand(p, NULL, 10) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 1);
    char *b = pa_crt_malloc(p, 200000); /* a back-end block */
    errno = 0;
    CHECK(pa_crt_expand(p, b, _HEAP_MAXREQ + 1) == NULL);
    CHECK_EQ(errno, ENOMEM);
    memset(b, 3, 1000);
    CHECK(pa_crt_expand(p, b, 1000) == b); /* shrink in place */
    CHECK_EQ(pa_crt_msize(p, b), 1000);
    CHECK(all_bytes(b, 3, 1000));
    CHECK(pa_crt_expand(p, b, 0) == b); /* 0 is 1 */
    CHECK_EQ(pa_crt_msize(p, b), 1);
    errno = 0;
    CHECK(pa_crt_expand(p, b, 4 * MiB) == NULL); /* cannot grow into a large block in place */
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(pa_crt_msize(p, b), 1);
    pa_crt_free(p, b);
    crt_end(p);
}

TEST(fact73_expand_lfh_shrink_returns_the_block)
{
    pa_process_t *p = crt_proc(0, 0);
    void *keep[64];
    for (int i = 0; i < 64; i++) keep[i] = pa_crt_malloc(p, 1000);
    ULONG compat = 0;
    CHECK(pa_heap_query_information(p, crt_heap(p), HeapCompatibilityInformation, &compat,
                                    sizeof compat, NULL));
    CHECK_EQ(compat, 2); /* the bucket of 1000-byte blocks went to the LFH */
    void *b = pa_crt_malloc(p, 1000);
    CHECK(pa_crt_expand(p, b, 100) == b); /* the LFH cannot shrink it: success anyway */
    CHECK_EQ(pa_crt_msize(p, b), 1000);  /* and the size stays */
    errno = 0;
    CHECK(pa_crt_expand(p, b, 3000) == NULL); /* growing is a real failure */
    CHECK_EQ(errno, ENOMEM);
    pa_crt_free(p, b);
    for (int i = 0; i < 64; i++) pa_crt_free(p, keep[i]);
    crt_end(p);
}

TEST(fact74_recalloc)
{
    pa_process_t *p = crt_proc(0, 0);
    errno = 0;
    CHECK(pa_crt_recalloc(p, NULL, 0x10, _HEAP_MAXREQ / 0x10 + 1) == NULL);
    CHECK_EQ(errno, ENOMEM);
    char *b = pa_crt_recalloc(p, NULL, 4, 4);
    CHECK(b && all_bytes(b, 0, 16));
    memset(b, 9, 16);
    b = pa_crt_recalloc(p, b, 10, 10);
    CHECK(b != NULL);
    CHECK(all_bytes(b, 9, 16));
    CHECK(all_bytes(b + 16, 0, 84)); /* zeroed from the old _msize */
    CHECK_EQ(pa_crt_msize(p, b), 100);
    b = pa_crt_recalloc(p, b, 2, 5); /* shrink: nothing zeroed */
    CHECK(all_bytes(b, 9, 10));
    size_t before = crt_busy(p);
    CHECK(pa_crt_recalloc(p, b, 0, 4) == NULL); /* realloc(b, 0): freed */
    CHECK_EQ(crt_busy(p), before - 1);
    crt_end(p);
}

TEST(fact75_76_aligned_malloc_alignments)
{
    pa_process_t *p = crt_proc(0, 0);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    size_t good[] = {1, 2, 4, 8, 16, 32, 64, 128, 4096, 65536};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        char *a = pa_crt_aligned_malloc(p, 256, good[i]);
        CHECK(a != NULL);
        CHECK_EQ((uintptr_t)a % good[i], 0);
        memset(a, 1, 256);
        pa_crt_aligned_free(p, a);
    }
    size_t bad[] = {0, 3, 127, 48}; /* UCRT: 0 is not a power of two (fact 76) */
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        errno = 0;
        CHECK(pa_crt_aligned_malloc(p, 256, bad[i]) == NULL);
        CHECK_EQ(errno, EINVAL);
    }
    CHECK_EQ(iph.calls, 4);
    errno = 0;
    CHECK(pa_crt_aligned_offset_malloc(p, 16, 32, 16) == NULL); /* offset >= size */
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 5);
    char *o = pa_crt_aligned_offset_malloc(p, 100, 64, 12);
    CHECK(o && ((uintptr_t)o + 12) % 64 == 0);
    pa_crt_aligned_free(p, o);
    crt_end(p);
}

/* Checks fact 78's layout of one aligned block r from _aligned_offset_malloc(size, a, off). */
static void check_aligned_layout(pa_process_t *p, void *r, size_t size, size_t a, size_t off)
{
    size_t m = (a > P8 ? a : P8) - 1, g = (0 - off) & (P8 - 1);
    uintptr_t slot = ((uintptr_t)r & ~(P8 - 1)) - P8, base;
    CHECK_EQ(slot, (uintptr_t)r - g - P8);
    memcpy(&base, (void *)slot, sizeof base);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, (void *)base), size + P8 + g + m);
    CHECK_EQ((uintptr_t)r, ((base + P8 + g + m + off) & ~(uintptr_t)m) - off);
    CHECK_EQ(((uintptr_t)r + off) % (a ? a : 1), 0);
    CHECK_EQ(pa_crt_aligned_msize(p, r, a, off), size);
}

TEST(fact78_aligned_block_layout)
{
    pa_process_t *p = crt_proc(0, 0);
    size_t aligns[] = {1, 8, 16, 32, 64, 256, 4096};
    size_t offsets[] = {0, 1, 4, 8, 13, 40};
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        for (size_t j = 0; j < sizeof offsets / sizeof *offsets; j++) {
            size_t size = 100;
            size_t before = crt_busy(p);
            void *r = pa_crt_aligned_offset_malloc(p, size, aligns[i], offsets[j]);
            CHECK(r != NULL);
            CHECK_EQ(crt_busy(p), before + 1); /* one malloc underneath */
            check_aligned_layout(p, r, size, aligns[i], offsets[j]);
            pa_crt_aligned_free(p, r);
            CHECK_EQ(crt_busy(p), before);
        }
    }
    pa_crt_aligned_free(p, NULL);
    crt_end(p);
}

TEST(fact78_aligned_realloc_and_recalloc)
{
    pa_process_t *p = crt_proc(0, 0);
    char *r = pa_crt_aligned_realloc(p, NULL, 50, 64); /* NULL: _aligned_malloc */
    CHECK(r && (uintptr_t)r % 64 == 0);
    check_aligned_layout(p, r, 50, 64, 0);
    for (int i = 0; i < 50; i++) r[i] = (char)i;
    r = pa_crt_aligned_realloc(p, r, 5000, 64);
    CHECK(r && (uintptr_t)r % 64 == 0);
    check_aligned_layout(p, r, 5000, 64, 0);
    for (int i = 0; i < 50; i++) CHECK_EQ(r[i], i);
    r = pa_crt_aligned_realloc(p, r, 20, 256); /* a larger alignment: data moves along */
    CHECK(r && (uintptr_t)r % 256 == 0);
    check_aligned_layout(p, r, 20, 256, 0);
    for (int i = 0; i < 20; i++) CHECK_EQ(r[i], i);
    r = pa_crt_aligned_offset_realloc(p, r, 30, 32, 4);
    CHECK(r && ((uintptr_t)r + 4) % 32 == 0);
    check_aligned_layout(p, r, 30, 32, 4);
    for (int i = 0; i < 20; i++) CHECK_EQ(r[i], i);
    size_t before = crt_busy(p);
    CHECK(pa_crt_aligned_offset_realloc(p, r, 0, 32, 4) == NULL); /* frees */
    CHECK_EQ(crt_busy(p), before - 1);
    char *z = pa_crt_aligned_recalloc(p, NULL, 4, 4, 32);
    CHECK(z && all_bytes(z, 0, 16));
    memset(z, 0x44, 16);
    z = pa_crt_aligned_recalloc(p, z, 10, 10, 32);
    CHECK(z && all_bytes(z, 0x44, 16) && all_bytes(z + 16, 0, 84));
    check_aligned_layout(p, z, 100, 32, 0);
    pa_crt_aligned_free(p, z);
    errno = 0;
    CHECK(pa_crt_aligned_recalloc(p, NULL, 0x10, _HEAP_MAXREQ / 0x10 + 1, 16) == NULL);
    CHECK_EQ(errno, ENOMEM);
    crt_end(p);
}

TEST(fact80_aligned_msize_null_and_misuse_refused)
{
    pa_process_t *p = crt_proc(0, 0);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    errno = 0;
    CHECK_EQ(pa_crt_aligned_msize(p, NULL, 16, 0), (size_t)-1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 1);
    /* pyalloc: a plain block given to _aligned_free is refused, nothing freed. */
    char *b = pa_crt_malloc(p, 64);
    errno = 0;
    pa_crt_aligned_free(p, b);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(pa_crt_msize(p, b), 64);
    int local = 0;
    errno = 0;
    pa_crt_aligned_free(p, &local);
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    CHECK(pa_crt_aligned_realloc(p, b, 10, 16) == NULL);
    CHECK_EQ(errno, EINVAL);
    pa_crt_free(p, b);
    crt_end(p);
}

/* ---- 1.14 new handler / new mode ---- */

TEST(fact81_set_new_mode)
{
    pa_process_t *p = crt_proc(0, 0);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    CHECK_EQ(pa_crt_query_new_mode(p), 0);
    CHECK_EQ(pa_crt_set_new_mode(p, 1), 0);
    CHECK_EQ(pa_crt_query_new_mode(p), 1);
    errno = 0;
    CHECK_EQ(pa_crt_set_new_mode(p, 2), -1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 1);
    CHECK_EQ(pa_crt_query_new_mode(p), 1);
    CHECK_EQ(pa_crt_set_new_mode(p, 0), 1);
    crt_end(p);
}

/* A handler that frees (and compacts away) a reserve block on its n-th call. */
typedef struct freer_s {
    int calls, free_on;
    void *reserve;
} freer_t;

static int freer(pa_process_t *p, size_t size, void *ctx)
{
    (void)size;
    freer_t *f = ctx;
    if (++f->calls == f->free_on) {
        pa_crt_free(p, f->reserve);
        pa_heap_compact(p, pa_heap_get_process_heap(p), 0);
    }
    return 1;
}

static int gives_up_after(pa_process_t *p, size_t size, void *ctx)
{
    (void)p, (void)size;
    int *left = ctx;
    return (*left)-- > 0;
}

TEST(fact81_82_new_mode_makes_malloc_loop_on_the_handler)
{
    pa_process_t *p = crt_proc(0, 24 * MiB);
    freer_t f = {0, 3, NULL};
    f.reserve = pa_crt_malloc(p, 12 * MiB);
    CHECK(f.reserve != NULL);
    CHECK(pa_crt_set_new_handler(p, freer, &f) == NULL);
    /* New mode 0: malloc fails at once. */
    errno = 0;
    CHECK(pa_crt_malloc(p, 16 * MiB) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(f.calls, 0);
    pa_crt_set_new_mode(p, 1);
    void *b = pa_crt_malloc(p, 16 * MiB); /* handler called 3 times, then it fits */
    CHECK(b != NULL);
    CHECK_EQ(f.calls, 3);
    pa_crt_free(p, b);
    /* A handler that gives up: called until it returns 0. */
    int left = 4;
    pa_crt_set_new_handler(p, gives_up_after, &left);
    errno = 0;
    CHECK(pa_crt_calloc(p, 64, MiB) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(left, -1); /* 4 retries, then the 5th call said no */
    char *small = pa_crt_malloc(p, 10);
    left = 2;
    errno = 0;
    CHECK(pa_crt_realloc(p, small, 64 * MiB) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK_EQ(left, -1);
    pa_crt_free(p, small);
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK_EQ(s.new_handler_calls, 3 + 5 + 3);
    crt_end(p);
}

TEST(fact82_set_new_handler_and_callnewh)
{
    pa_process_t *p = crt_proc(0, 0);
    CHECK_EQ(pa_crt_callnewh(p, 10), 0); /* no handler */
    int left = 1, calls = 0;
    CHECK(pa_crt_set_new_handler(p, gives_up_after, &left) == NULL);
    CHECK_EQ(pa_crt_callnewh(p, 10), 1);
    CHECK_EQ(pa_crt_callnewh(p, 10), 0);
    void *ctx = NULL;
    CHECK(pa_crt_query_new_handler(p, &ctx) == gives_up_after);
    CHECK(ctx == &left);
    CHECK(pa_crt_set_new_handler(p, count_calls, &calls) == gives_up_after);
    CHECK_EQ(pa_crt_callnewh(p, 10), 0);
    CHECK_EQ(calls, 1);
    CHECK(pa_crt_set_new_handler(p, NULL, NULL) == count_calls); /* 0 removes it */
    CHECK(pa_crt_query_new_handler(p, &ctx) == NULL);
    CHECK_EQ(pa_crt_callnewh(p, 10), 0);
    crt_end(p);
}

TEST(crt_debug_choice_is_fixed_by_the_first_allocation)
{
    pa_process_t *p = crt_proc(0, 0);
    CHECK_EQ(pa_crt_set_debug(p, 1), 0);
    CHECK_EQ(pa_crt_set_debug(p, 0), 0);
    void *b = pa_crt_malloc(p, 1);
    errno = 0;
    CHECK_EQ(pa_crt_set_debug(p, 1), -1);
    CHECK_EQ(errno, EBUSY);
    CHECK_EQ(pa_crt_set_debug(p, 0), 0); /* no change is fine */
    /* In a release process the debug functions are the release ones (crtdbg.h's macros). */
    void *d = pa_crt_malloc_dbg(p, 10, _CLIENT_BLOCK, "x.c", 1);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, d), 10);
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_REPORT_FLAG), 0);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    CHECK_EQ(pa_crt_dump_memory_leaks(p, NULL, NULL), FALSE);
    CHECK_EQ(pa_crt_is_valid_heap_pointer(p, (char *)d + 3), TRUE);
    CHECK_EQ(pa_crt_report_block_type(p, d), -1);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 0);
    pa_crt_free_dbg(p, d, _CLIENT_BLOCK);
    pa_crt_free(p, b);
    crt_end(p);
}

/* ---- 1.16 the debug CRT heap ---- */

#define HDR ((size_t)48)

static _CrtMemBlockHeader *hdr(void *block) { return (_CrtMemBlockHeader *)block - 1; }

TEST(fact88_debug_block_layout)
{
    pa_process_t *p = crt_proc(1, 0);
    static const char file[] = "file.c";
    unsigned char *a = pa_crt_malloc_dbg(p, 10, _NORMAL_BLOCK, file, 42);
    CHECK(a != NULL);
    unsigned char *h = a - HDR;
    /* Raw x64 layout: next 0, prev 8, file 16, line 24, use 28, size 32, request 40, gap 44. */
    const char *fp;
    int line, use, req;
    size_t size;
    void *next, *prev;
    memcpy(&next, h, 8);
    memcpy(&prev, h + 8, 8);
    memcpy(&fp, h + 16, 8);
    memcpy(&line, h + 24, 4);
    memcpy(&use, h + 28, 4);
    memcpy(&size, h + 32, 8);
    memcpy(&req, h + 40, 4);
    CHECK(next == NULL && prev == NULL);
    CHECK(fp == file);
    CHECK_EQ(line, 42);
    CHECK_EQ(use, _NORMAL_BLOCK);
    CHECK_EQ(size, 10);
    CHECK_EQ(req, 1); /* request numbers start at 1 */
    CHECK(all_bytes(h + 44, 0xFD, 4));
    CHECK(all_bytes(a, 0xCD, 10));
    CHECK(all_bytes(a + 10, 0xFD, 4));
    /* One HeapAlloc of header + n + 4; _msize is the request, HeapSize sees the whole. */
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, h), HDR + 10 + 4);
    CHECK_EQ(walk_finds(p, h, HDR + 10 + 4), 1);
    CHECK_EQ(pa_crt_msize(p, a), 10);
    CHECK_EQ(pa_crt_msize_dbg(p, a, _NORMAL_BLOCK), 10);
    /* Newest first. */
    unsigned char *b = pa_crt_malloc(p, 3);
    CHECK_EQ(hdr(b)->request, 2);
    CHECK(hdr(b)->next == hdr(a) && hdr(a)->prev == hdr(b) && hdr(b)->prev == NULL);
    CHECK(hdr(b)->file_name == NULL && hdr(b)->line == 0);
    CHECK_EQ(pa_crt_is_valid_heap_pointer(p, a), TRUE);
    CHECK_EQ(pa_crt_is_valid_heap_pointer(p, a + 16), FALSE);
    CHECK_EQ(pa_crt_is_valid_heap_pointer(p, NULL), FALSE);
    CHECK_EQ(pa_crt_is_valid_heap_pointer(p, &line), FALSE);
    pa_crt_free(p, a);
    pa_crt_free(p, b);
    crt_end(p);
}

TEST(fact89_fills)
{
    pa_process_t *p = crt_proc(1, 0);
    unsigned char *a = pa_crt_malloc(p, 100);
    void *neighbour = pa_crt_malloc(p, 100); /* keeps a's pages from being trimmed */
    CHECK(all_bytes(a, 0xCD, 100));
    memset(a, 0x11, 100);
    pa_crt_free(p, a); /* header + data + gap filled with 0xDD, then HeapFree */
    CHECK(!pa_heap_validate(p, crt_heap(p), 0, a - HDR));
    CHECK(all_bytes(a, 0xDD, 100)); /* the heap keeps its links in the first bytes only */
    unsigned char *g = pa_crt_malloc(p, 8);
    memset(g, 0x22, 8);
    g = pa_crt_realloc(p, g, 40);
    CHECK(all_bytes(g, 0x22, 8));
    CHECK(all_bytes(g + 8, 0xCD, 32)); /* growth: 0xCD */
    CHECK(all_bytes(g + 40, 0xFD, 4));
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, g - HDR), HDR + 40 + 4);
    unsigned char *c = pa_crt_calloc(p, 3, 7);
    CHECK(all_bytes(c, 0, 21)); /* exactly n bytes zeroed */
    CHECK(all_bytes(c + 21, 0xFD, 4));
    CHECK(all_bytes(hdr(c)->gap, 0xFD, 4));
    /* Aligned debug block: {base, 8 x 0xED} just below the aligned pointer. */
    unsigned char *r = pa_crt_aligned_malloc(p, 40, 64);
    CHECK(r && (uintptr_t)r % 64 == 0);
    CHECK(all_bytes(r - 8, 0xED, 8));
    uintptr_t base;
    memcpy(&base, r - 16, 8);
    CHECK_EQ(hdr((void *)base)->block_use, _NORMAL_BLOCK);
    CHECK_EQ(hdr((void *)base)->data_size, 40 + 0 + 63 + 16);
    CHECK_EQ(pa_crt_aligned_msize(p, r, 64, 0), 40);
    pa_crt_aligned_free(p, r);
    pa_crt_free(p, g);
    pa_crt_free(p, c);
    pa_crt_free(p, neighbour);
    crt_end(p);
}

TEST(fact89_delay_free_keeps_dead_blocks)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_DELAY_FREE_MEM_DF),
             _CRTDBG_ALLOC_MEM_DF);
    unsigned char *a = pa_crt_malloc(p, 32);
    memset(a, 0x33, 32);
    pa_crt_free(p, a);
    CHECK(pa_heap_validate(p, crt_heap(p), 0, a - HDR)); /* still a heap block */
    CHECK_EQ(hdr(a)->block_use, _FREE_BLOCK);
    CHECK(all_bytes(a, 0xDD, 32));
    CHECK(all_bytes(a + 32, 0xFD, 4));
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK_EQ(s.counts[_FREE_BLOCK], 1);
    CHECK_EQ(s.counts[_NORMAL_BLOCK], 0);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    CHECK_EQ(rs.count, 0);
    /* Freeing it again: UCRT's block-type assertion, nothing else happens. */
    pa_crt_free(p, a);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_BAD_POINTER], 1);
    CHECK(strstr(rs.last, "is_block_type_valid") != NULL);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    crt_end(p);
}

TEST(fact90_requests_and_block_types)
{
    pa_process_t *p = crt_proc(1, 0);
    void *a = pa_crt_malloc(p, 1);
    void *b = pa_crt_calloc(p, 1, 1);
    b = pa_crt_realloc(p, b, 100);
    void *c = pa_crt_malloc_dbg(p, 5, _CLIENT_BLOCK | (5 << 16), NULL, 0);
    void *crt = pa_crt_malloc_dbg(p, 6, _CRT_BLOCK, NULL, 0);
    CHECK_EQ(hdr(a)->request, 1);
    CHECK_EQ(hdr(b)->request, 3); /* realloc takes a number of its own */
    CHECK_EQ(hdr(c)->request, 4);
    CHECK_EQ(pa_crt_report_block_type(p, c), _CLIENT_BLOCK | (5 << 16));
    CHECK_EQ(pa_crt_report_block_type(p, crt), _CRT_BLOCK);
    CHECK_EQ(pa_crt_report_block_type(p, (char *)c + 1), -1);
    pa_crt_set_dbg_block_type(p, a, _CLIENT_BLOCK);
    CHECK_EQ(pa_crt_report_block_type(p, a), _CLIENT_BLOCK);
    /* _CRTDBG_ALLOC_MEM_DF off: ignore blocks, not listed, request 0, line 0xFEDCBABC. */
    CHECK_EQ(pa_crt_set_dbg_flag(p, 0), _CRTDBG_ALLOC_MEM_DF);
    void *ig = pa_crt_malloc_dbg(p, 7, _NORMAL_BLOCK, "f.c", 9);
    CHECK_EQ(hdr(ig)->block_use, _IGNORE_BLOCK);
    CHECK_EQ(hdr(ig)->request, 0);
    CHECK_EQ(hdr(ig)->line, PA_CRT_IGNORE_LINE);
    CHECK(hdr(ig)->next == NULL && hdr(ig)->prev == NULL && hdr(ig)->file_name == NULL);
    CHECK(all_bytes(ig, 0xCD, 7) && all_bytes((char *)ig + 7, 0xFD, 4));
    void *crt2 = pa_crt_malloc_dbg(p, 6, _CRT_BLOCK, NULL, 0); /* CRT blocks are still kept */
    CHECK_EQ(hdr(crt2)->block_use, _CRT_BLOCK);
    CHECK_EQ(hdr(crt2)->request, 7); /* the ignore block used a number */
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK_EQ(s.counts[_CRT_BLOCK], 2);
    CHECK_EQ(s.counts[_CLIENT_BLOCK], 2);
    CHECK_EQ(s.counts[_NORMAL_BLOCK], 1);
    CHECK_EQ(s.counts[_IGNORE_BLOCK], 0);
    CHECK_EQ(s.next_request, 8);
    CHECK_EQ(pa_crt_check_memory(p), TRUE); /* ALLOC_MEM_DF off: TRUE at once */
    pa_crt_free(p, ig);
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF);
    pa_crt_free_dbg(p, a, _CLIENT_BLOCK);
    pa_crt_free(p, b);
    pa_crt_free_dbg(p, c, _CLIENT_BLOCK | (5 << 16));
    pa_crt_free(p, crt); /* a CRT block may be freed as a normal one */
    pa_crt_free_dbg(p, crt2, _CRT_BLOCK);
    pa_crt_stats(p, &s);
    CHECK_EQ(s.counts[_CRT_BLOCK] + s.counts[_CLIENT_BLOCK] + s.counts[_NORMAL_BLOCK], 0);
    CHECK_EQ(s.reports[_CRT_ASSERT] + s.reports[_CRT_ERROR], 0);
    crt_end(p);
}

TEST(fact91_dbg_flag)
{
    pa_process_t *p = crt_proc(1, 0);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_REPORT_FLAG), _CRTDBG_ALLOC_MEM_DF);
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_REPORT_FLAG), _CRTDBG_ALLOC_MEM_DF); /* no change */
    int f = _CRTDBG_ALLOC_MEM_DF | _CRTDBG_LEAK_CHECK_DF | _CRTDBG_CHECK_EVERY_16_DF;
    CHECK_EQ(pa_crt_set_dbg_flag(p, f), _CRTDBG_ALLOC_MEM_DF);
    errno = 0;
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | 0x40), f); /* unknown low bit */
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 1);
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_REPORT_FLAG), f);
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_RESERVED_DF), f);
    CHECK_EQ(iph.calls, 2); /* 0x08 is reserved: not accepted */
    CHECK_EQ(pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF), f);
    crt_end(p);
}

TEST(fact92_free_reports_damaged_no_mans_land)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    unsigned char *a = pa_crt_malloc_dbg(p, 10, _NORMAL_BLOCK, "over.c", 7);
    a[10] = 0; /* one byte past the end */
    size_t before = crt_busy(p);
    pa_crt_free(p, a);
    CHECK_EQ(rs.count, 1);
    CHECK_EQ(rs.types[_CRT_ERROR], 1);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_CORRUPTION], 1);
    CHECK(strstr(rs.last, "HEAP CORRUPTION DETECTED: after Normal block (#1) at 0x") != NULL);
    CHECK(strstr(rs.last, "wrote to memory after end of heap buffer") != NULL);
    CHECK(strstr(rs.last, "Memory allocated at over.c(7).") != NULL);
    CHECK(rs.block == a);
    CHECK_EQ(crt_busy(p), before - 1); /* freed all the same, as MSVC after the report */
    reports_clear(&rs);
    unsigned char *b = pa_crt_malloc(p, 10);
    b[-1] = 0; /* underrun */
    pa_crt_free(p, b);
    CHECK_EQ(rs.count, 1);
    CHECK(strstr(rs.last, "HEAP CORRUPTION DETECTED: before Normal block (#2)") != NULL);
    CHECK(strstr(rs.last, "Memory allocated at") == NULL);
    /* A damaged header (size overwritten) is reported, not trusted. */
    reports_clear(&rs);
    unsigned char *c = pa_crt_malloc(p, 24);
    hdr(c)->data_size = 1u << 30;
    pa_crt_free(p, c);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_CORRUPTION], 1);
    CHECK(strstr(rs.last, "damaged") != NULL);
    hdr(c)->data_size = 24;
    pa_crt_free(p, c);
    crt_end(p);
}

TEST(fact92_93_check_always_runs_check_memory)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_CHECK_ALWAYS_DF);
    unsigned char *a = pa_crt_malloc(p, 16);
    a[16] = 1;
    CHECK_EQ(rs.count, 0);
    void *b = pa_crt_malloc(p, 1); /* the check before this allocation finds it */
    CHECK(rs.types[_CRT_WARN] >= 1);
    CHECK_EQ(rs.types[_CRT_ASSERT], 1);
    CHECK(strstr(rs.all, "HEAP CORRUPTION DETECTED: after Normal block (#1)") != NULL);
    CHECK(strstr(rs.all, "Expression: _CrtCheckMemory()") != NULL);
    a[16] = 0xFD;
    reports_clear(&rs);
    pa_crt_free(p, b);
    pa_crt_free(p, a);
    CHECK_EQ(rs.count, 0);
    /* Every 16th call with _CRTDBG_CHECK_EVERY_16_DF. */
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_CHECK_EVERY_16_DF);
    unsigned char *c = pa_crt_malloc(p, 8);
    c[8] = 0;
    int calls = 1, when = 0;
    for (; calls < 40 && !rs.types[_CRT_ASSERT]; calls++) {
        void *d = pa_crt_malloc(p, 1);
        if (rs.types[_CRT_ASSERT] && !when) when = calls;
        pa_crt_free(p, d);
        if (rs.types[_CRT_ASSERT] && !when) when = calls;
    }
    CHECK(when > 0 && when <= 9); /* 16 calls (mallocs and frees) after the flag was set */
    c[8] = 0xFD;
    pa_crt_free(p, c);
    crt_end(p);
}

TEST(fact93_check_memory)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    unsigned char *a = pa_crt_malloc_dbg(p, 10, _NORMAL_BLOCK, "chk.c", 3);
    void *b = pa_crt_malloc(p, 20);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    CHECK_EQ(rs.count, 0);
    a[12] = 0x00; /* inside the trailing 0xFD gap */
    CHECK_EQ(pa_crt_check_memory(p), FALSE);
    CHECK_EQ(rs.types[_CRT_WARN], 2);
    CHECK(strstr(rs.all, "HEAP CORRUPTION DETECTED: after Normal block (#1)") != NULL);
    CHECK(strstr(rs.all, "Normal located at 0x") != NULL);
    CHECK(strstr(rs.all, "is 10 bytes long.") != NULL);
    CHECK(strstr(rs.all, "Memory allocated at chk.c(3).") != NULL);
    a[12] = 0xFD;
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    /* A write to a delay-freed block. */
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_DELAY_FREE_MEM_DF);
    unsigned char *f = pa_crt_malloc(p, 8);
    pa_crt_free(p, f);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    f[3] = 'x';
    reports_clear(&rs);
    CHECK_EQ(pa_crt_check_memory(p), FALSE);
    CHECK(strstr(rs.all, "HEAP CORRUPTION DETECTED: on top of Free block at 0x") != NULL);
    CHECK(strstr(rs.all, "wrote to a heap buffer that was freed") != NULL);
    /* With _CRTDBG_ALLOC_MEM_DF off, TRUE without looking. */
    pa_crt_set_dbg_flag(p, 0);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF);
    f[3] = 0xDD;
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    pa_crt_free(p, a);
    pa_crt_free(p, b);
    crt_end(p);
}

TEST(fact94_leak_dump_contents)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    lines_t l = {0};
    CHECK_EQ(pa_crt_dump_memory_leaks(p, lines_sink, &l), FALSE);
    CHECK_EQ(l.n, 0);
    char *a = pa_crt_malloc_dbg(p, 5, _NORMAL_BLOCK, "leak.c", 12); /* {1} */
    memcpy(a, "hello", 5);
    void *gone = pa_crt_malloc(p, 9);                                   /* {2}, freed */
    char *c = pa_crt_malloc_dbg(p, 20, _CLIENT_BLOCK | (3 << 16), "leak.c", 30); /* {3} */
    memset(c, 'z', 20);
    void *crt = pa_crt_malloc_dbg(p, 4, _CRT_BLOCK, NULL, 0);           /* {4}, not a leak */
    char *n = pa_crt_malloc(p, 2);                                       /* {5}, no site */
    pa_crt_free(p, gone);
    CHECK_EQ(pa_crt_dump_memory_leaks(p, lines_sink, &l), TRUE);
    char want[6][160];
    snprintf(want[0], 160, "{5} normal block at 0x%016" PRIXPTR ", 2 bytes long.\n", (uintptr_t)n);
    snprintf(want[1], 160,
             "leak.c(30) : {3} client block at 0x%016" PRIXPTR ", subtype 3, 20 bytes long.\n",
             (uintptr_t)c);
    snprintf(want[2], 160, "leak.c(12) : {1} normal block at 0x%016" PRIXPTR ", 5 bytes long.\n",
             (uintptr_t)a);
    CHECK_EQ(l.n, 9);
    CHECK(!strcmp(l.line[0], "Detected memory leaks!\n"));
    CHECK(!strcmp(l.line[1], "Dumping objects ->\n"));
    CHECK(!strcmp(l.line[2], want[0]));
    CHECK(!strcmp(l.line[3], " Data: <  > CD CD \n"));
    CHECK(!strcmp(l.line[4], want[1]));
    CHECK(!strcmp(l.line[5], " Data: <zzzzzzzzzzzzzzzz> 7A 7A 7A 7A 7A 7A 7A 7A 7A 7A 7A 7A 7A 7A "
                             "7A 7A \n"));
    CHECK(!strcmp(l.line[6], want[2]));
    CHECK(!strcmp(l.line[7], " Data: <hello> 68 65 6C 6C 6F \n"));
    CHECK(!strcmp(l.line[8], "Object dump complete.\n"));
    CHECK_EQ(rs.count, 0); /* all went to the sink */
    /* The same as data. */
    pa_crt_block_info_t info[8];
    CHECK_EQ(pa_crt_leaks(p, info, 8), 3);
    CHECK(info[0].data == n && info[0].size == 2 && info[0].request == 5 && !info[0].file);
    CHECK(info[1].data == c && info[1].request == 3 && info[1].line == 30);
    CHECK_EQ(info[1].block_use, _CLIENT_BLOCK | (3 << 16));
    CHECK(info[2].data == a && info[2].size == 5 && !strcmp(info[2].file, "leak.c"));
    CHECK_EQ(info[2].line, 12);
    CHECK_EQ(info[2].family, PA_CRT_FAMILY_MALLOC);
    CHECK_EQ(pa_crt_leaks(p, info, 1), 3); /* the count even when out is short */
    /* Without a sink: _CRT_WARN reports. */
    CHECK_EQ(pa_crt_dump_memory_leaks(p, NULL, NULL), TRUE);
    CHECK_EQ(rs.count, 9);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_LEAK], 9);
    CHECK(strstr(rs.all, want[1]) != NULL);
    /* CRT blocks count with _CRTDBG_CHECK_CRT_DF. */
    pa_crt_free(p, a);
    pa_crt_free_dbg(p, c, _CLIENT_BLOCK | (3 << 16));
    pa_crt_free(p, n);
    CHECK_EQ(pa_crt_dump_memory_leaks(p, NULL, NULL), FALSE);
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_CHECK_CRT_DF);
    memset(&l, 0, sizeof l);
    CHECK_EQ(pa_crt_dump_memory_leaks(p, lines_sink, &l), TRUE);
    CHECK(l.n == 5 && strstr(l.line[2], "{4} crt block at 0x") != NULL);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 1);
    pa_crt_free(p, crt);
    crt_end(p);
}

static int detach_reports(pa_process_t *p, const pa_crt_report_t *r, void *ctx)
{
    (void)p;
    if (r->kind == PA_CRT_REPORT_LEAK) ++*(int *)ctx;
    return 1;
}

/* A debug CRT with _CRTDBG_LEAK_CHECK_DF and one leak; *lines counts the dump's lines. */
static pa_process_t *leak_checked(int *lines)
{
    pa_process_t *p = crt_proc(1, 0);
    pa_crt_set_report_hook(p, detach_reports, lines);
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_LEAK_CHECK_DF);
    pa_crt_malloc(p, 8);
    return p;
}

TEST(fact94_leak_check_flag_dumps_at_detach)
{
    int lines = 0;
    crt_end(leak_checked(&lines)); /* as the debug CRT does at exit */
    CHECK_EQ(lines, 5);
}

/* pa_crt_exit is the program's end (the library runs it for the current process, after the
 * atexit functions): the dump comes once, and the later detach makes no second one. */
TEST(fact94_leak_check_at_program_end_dumps_once)
{
    int lines = 0;
    pa_process_t *p = leak_checked(&lines);
    pa_crt_exit(p);
    CHECK_EQ(lines, 5);
    pa_crt_exit(p);
    crt_end(p);
    CHECK_EQ(lines, 5);
    pa_crt_exit(NULL); /* no process, or one without CRT state: nothing */
}

/* A header is user data to the heap: the program (or Python's Process.write) can overwrite it.
 * Every walk of the list (dumps, leaks, checkpoints, statistics, _CrtCheckMemory) checks each
 * header before it reads a field or follows next, stops at the first bad one and reports it as
 * _CrtCheckMemory does; the blocks before it are still listed. (Found by fuzzing: a file_name
 * or next overwritten with garbage crashed the leak dump, a next pointing at its own header
 * made it loop forever.) */
static void damaged_walks_stop_at(pa_process_t *p, reports_t *rs, char *bad, char *good)
{
    char want[2][160];
    snprintf(want[0], 160, "Bad memory block found at 0x%016" PRIXPTR ".\n",
             (uintptr_t)hdr(bad));
    snprintf(want[1], 160, "new.c(2) : {2} normal block at 0x%016" PRIXPTR ", 6 bytes long.\n",
             (uintptr_t)good);
    reports_clear(rs);
    lines_t l = {0};
    CHECK_EQ(pa_crt_dump_memory_leaks(p, lines_sink, &l), TRUE); /* good was walked first */
    CHECK_EQ(l.n, 5);
    CHECK(!strcmp(l.line[2], want[1]));
    CHECK(!strcmp(l.line[4], "Object dump complete.\n"));
    CHECK_EQ(rs->count, 1);
    CHECK_EQ(rs->kinds[PA_CRT_REPORT_CORRUPTION], 1);
    CHECK_EQ(rs->types[_CRT_WARN], 1);
    CHECK(!strcmp(rs->last, want[0]) && rs->block == bad);
    pa_crt_block_info_t info[4];
    CHECK_EQ(pa_crt_leaks(p, info, 4), 1);
    CHECK(info[0].data == good && !strcmp(info[0].file, "new.c"));
    _CrtMemState s;
    pa_crt_mem_checkpoint(p, &s);
    CHECK_EQ(s.lCounts[_NORMAL_BLOCK], 1);
    CHECK_EQ(s.lSizes[_NORMAL_BLOCK], 6);
    pa_crt_stats_t st;
    pa_crt_stats(p, &st);
    CHECK_EQ(st.counts[_NORMAL_BLOCK], 1);
    reports_clear(rs);
    CHECK_EQ(pa_crt_check_memory(p), FALSE);
    CHECK(strstr(rs->all, want[0]) != NULL);
    reports_clear(rs);
    pa_crt_free(p, bad); /* not trusted: reported, not freed */
    CHECK_EQ(rs->count, 1);
    CHECK(strstr(rs->last, "damaged") != NULL);
}

TEST(fact94_walks_stop_at_a_damaged_header)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    char *a = pa_crt_malloc_dbg(p, 5, _NORMAL_BLOCK, "old.c", 1); /* {1}, walked last */
    char *b = pa_crt_malloc_dbg(p, 6, _NORMAL_BLOCK, "new.c", 2); /* {2}, walked first */
    _CrtMemBlockHeader saved = *hdr(a);
    hdr(a)->file_name = (const char *)(uintptr_t)0x4141414141414141ull; /* not a name */
    damaged_walks_stop_at(p, &rs, a, b);
    *hdr(a) = saved;
    static const char other[] = "old.c"; /* a good string, but not one the CRT was given */
    hdr(a)->file_name = other;
    if (other != saved.file_name) damaged_walks_stop_at(p, &rs, a, b);
    *hdr(a) = saved;
    hdr(a)->next = (_CrtMemBlockHeader *)(uintptr_t)0x4141414141414141ull;
    damaged_walks_stop_at(p, &rs, a, b);
    *hdr(a) = saved;
    hdr(a)->next = hdr(a); /* a cycle */
    damaged_walks_stop_at(p, &rs, a, b);
    *hdr(a) = saved;
    reports_clear(&rs);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 2);
    CHECK_EQ(rs.count, 0);
    /* The leak dump at detach, too. */
    pa_crt_set_dbg_flag(p, _CRTDBG_ALLOC_MEM_DF | _CRTDBG_LEAK_CHECK_DF);
    hdr(a)->next = hdr(a);
    crt_end(p);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_CORRUPTION], 1);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_LEAK], 5);
    CHECK(strstr(rs.all, "new.c(2) : {2} normal block") != NULL);
    CHECK(strstr(rs.all, "Bad memory block found at") != NULL);
}

TEST(fact94_msize_dbg_maxreq_and_new_mode)
{
    pa_process_t *p = crt_proc(1, 16 * MiB);
    iph_t iph = {0};
    pa_crt_set_invalid_parameter_handler(p, iph_count, &iph);
    errno = 0;
    CHECK_EQ(pa_crt_msize_dbg(p, NULL, _NORMAL_BLOCK), (size_t)-1);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(iph.calls, 1);
    errno = 0;
    CHECK(pa_crt_malloc_dbg(p, _HEAP_MAXREQ - 4 - 48 + 1, _NORMAL_BLOCK, NULL, 0) == NULL);
    CHECK_EQ(errno, ENOMEM);
    /* The debug allocator honours the new mode. */
    freer_t f = {0, 2, NULL};
    f.reserve = pa_crt_malloc(p, 8 * MiB);
    pa_crt_set_new_handler(p, freer, &f);
    pa_crt_set_new_mode(p, 1);
    void *b = pa_crt_malloc_dbg(p, 12 * MiB, _NORMAL_BLOCK, "big.c", 1);
    CHECK(b != NULL);
    CHECK_EQ(f.calls, 2);
    CHECK_EQ(pa_crt_msize(p, b), 12 * MiB);
    pa_crt_free(p, b);
    crt_end(p);
}

static int break_at(pa_process_t *p, long request, void *ctx)
{
    (void)p;
    long *seen = ctx;
    seen[seen[0] + 1] = request;
    seen[0]++;
    return 0;
}

static void break_hook(pa_process_t *p, long request, void *ctx) { break_at(p, request, ctx); }

TEST(crt_break_alloc_and_alloc_hook)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    long seen[8] = {0};
    CHECK_EQ(pa_crt_set_break_alloc(p, 3), -1);
    pa_crt_set_break_hook(p, break_hook, seen);
    void *a = pa_crt_malloc(p, 1), *b = pa_crt_malloc(p, 1);
    CHECK_EQ(seen[0], 0);
    b = pa_crt_realloc(p, b, 50); /* request 3 */
    CHECK_EQ(seen[0], 1);
    CHECK_EQ(seen[1], 3);
    CHECK_EQ(hdr(b)->request, 3);
    /* Without a hook: a report. */
    pa_crt_set_break_hook(p, NULL, NULL);
    CHECK_EQ(pa_crt_set_break_alloc(p, 4), 3);
    void *c = pa_crt_malloc(p, 1);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_BREAK], 1);
    CHECK(strstr(rs.last, "{4}") != NULL);
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK_EQ(s.break_hits, 2);
    pa_crt_free(p, a);
    pa_crt_free(p, b);
    pa_crt_free(p, c);
    crt_end(p);
}

typedef struct hook_log_s {
    int ops[4];
    int refuse; /* op to refuse */
    size_t size;
    long request;
} hook_log_t;

static int alloc_hook(pa_process_t *p, int op, void *block, size_t size, int use, long request,
                      const char *file, int line, void *ctx)
{
    (void)p, (void)block, (void)use, (void)file, (void)line;
    hook_log_t *h = ctx;
    h->ops[op]++;
    h->size = size;
    h->request = request;
    return op != h->refuse;
}

TEST(crt_alloc_hook)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    hook_log_t h = {{0}, 0, 0, 0};
    pa_crt_set_alloc_hook(p, alloc_hook, &h);
    void *a = pa_crt_malloc(p, 33);
    CHECK_EQ(h.ops[_HOOK_ALLOC], 1);
    CHECK_EQ(h.size, 33);
    CHECK_EQ(h.request, 1);
    h.refuse = _HOOK_ALLOC;
    errno = 0;
    CHECK(pa_crt_malloc_dbg(p, 10, _NORMAL_BLOCK, "hook.c", 5) == NULL);
    CHECK_EQ(errno, ENOMEM);
    CHECK(strstr(rs.last, "Client hook allocation failure at file hook.c line 5.") != NULL);
    h.refuse = _HOOK_FREE;
    size_t before = crt_busy(p);
    pa_crt_free(p, a);
    CHECK_EQ(crt_busy(p), before); /* the hook kept it */
    CHECK(strstr(rs.last, "Client hook free failure.") != NULL);
    h.refuse = 0;
    pa_crt_free(p, a);
    CHECK_EQ(crt_busy(p), before - 1);
    CHECK_EQ(h.ops[_HOOK_FREE], 2);
    crt_end(p);
}

TEST(fact84_92_debug_crt_reports_misuse)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    /* free of a client block as a normal one: UCRT's block-use assertion. */
    void *cl = pa_crt_malloc_dbg(p, 8, _CLIENT_BLOCK, NULL, 0);
    size_t before = crt_busy(p);
    pa_crt_free(p, cl);
    CHECK_EQ(rs.types[_CRT_ASSERT], 1);
    CHECK(strstr(rs.last, "header->_block_use == block_use") != NULL);
    CHECK_EQ(crt_busy(p), before - 1);
    /* Aligned and plain routines mixed. */
    reports_clear(&rs);
    void *al = pa_crt_aligned_malloc(p, 32, 32);
    pa_crt_free(p, al);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_ALIGNED], 1);
    CHECK(strstr(rs.last, "was allocated by aligned routines, use _aligned_free()") != NULL);
    errno = 0;
    CHECK(pa_crt_realloc(p, al, 64) == NULL);
    CHECK_EQ(errno, EINVAL);
    CHECK(strstr(rs.last, "use _aligned_realloc()") != NULL);
    void *pl = pa_crt_malloc(p, 16);
    pa_crt_aligned_free(p, pl);
    CHECK(strstr(rs.last, "was not allocated by _aligned routines, use free()") != NULL);
    CHECK(pa_crt_aligned_realloc(p, pl, 8, 16) == NULL);
    CHECK(strstr(rs.last, "use realloc()") != NULL);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_ALIGNED], 4);
    CHECK_EQ(pa_crt_msize(p, pl), 16); /* all refused: both blocks live */
    CHECK_EQ(pa_crt_aligned_msize(p, al, 32, 0), 32);
    /* Wild pointers: the assertion, no crash, nothing freed. */
    reports_clear(&rs);
    int local;
    pa_crt_free(p, (char *)pl + 8);
    pa_crt_free(p, &local);
    pa_crt_free(p, (void *)(uintptr_t)0x40);
    CHECK_EQ(rs.types[_CRT_ASSERT], 3);
    CHECK(strstr(rs.last, "_CrtIsValidHeapPointer(block)") != NULL);
    errno = 0;
    CHECK_EQ(pa_crt_msize(p, &local), (size_t)-1);
    CHECK_EQ(errno, EINVAL);
    pa_crt_free(p, pl);
    pa_crt_aligned_free(p, al);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 0);
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK_EQ(s.mismatches, 4);
    crt_end(p);
}

TEST(fact88_89_debug_expand_recalloc_realloc)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    unsigned char *a = pa_crt_malloc(p, 100000);
    memset(a, 1, 100000);
    CHECK(pa_crt_expand(p, a, 500) == a);
    CHECK_EQ(pa_crt_msize(p, a), 500);
    CHECK(all_bytes(a + 500, 0xFD, 4));
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, a - HDR), HDR + 500 + 4);
    CHECK_EQ(hdr(a)->request, 2);
    unsigned char *r = pa_crt_recalloc(p, NULL, 2, 3);
    CHECK(all_bytes(r, 0, 6));
    r = pa_crt_recalloc(p, r, 4, 4);
    CHECK(all_bytes(r, 0, 16) && all_bytes(r + 16, 0xFD, 4));
    /* realloc that moves relinks the block first. */
    unsigned char *b = pa_crt_malloc(p, 16);
    void *blocker = pa_crt_malloc(p, 16); /* newer than b, and in the way of its growth */
    memset(b, 0x77, 16);
    unsigned char *b2 = pa_crt_realloc_dbg(p, b, 200000, _NORMAL_BLOCK, "re.c", 77);
    CHECK(b2 && b2 != b);
    CHECK(all_bytes(b2, 0x77, 16) && all_bytes(b2 + 16, 0xCD, 200000 - 16));
    CHECK(hdr(b2)->prev == NULL && hdr(b2)->line == 77);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    pa_crt_block_info_t info[4];
    CHECK_EQ(pa_crt_leaks(p, info, 4), 4);
    CHECK(info[0].data == b2 && info[1].data == blocker && info[2].data == r && info[3].data == a);
    CHECK(pa_crt_realloc(p, b2, 0) == NULL);
    pa_crt_free(p, blocker);
    pa_crt_free(p, r);
    pa_crt_free(p, a);
    CHECK_EQ(rs.count, 0);
    crt_end(p);
}

TEST(crt_memory_states)
{
    pa_process_t *p = crt_proc(1, 0);
    _CrtMemState s1, s2, d;
    pa_crt_mem_checkpoint(p, &s1);
    void *a = pa_crt_malloc(p, 10), *b = pa_crt_malloc_dbg(p, 20, _CLIENT_BLOCK, NULL, 0);
    void *crt = pa_crt_malloc_dbg(p, 5, _CRT_BLOCK, NULL, 0);
    pa_crt_mem_checkpoint(p, &s2);
    CHECK_EQ(s2.lCounts[_NORMAL_BLOCK], 1);
    CHECK_EQ(s2.lSizes[_CLIENT_BLOCK], 20);
    CHECK_EQ(s2.lHighWaterCount, 35);
    CHECK_EQ(pa_crt_mem_difference(p, &d, &s1, &s2), 1);
    CHECK_EQ(d.lCounts[_CLIENT_BLOCK], 1);
    lines_t l = {0};
    pa_crt_mem_dump_all_objects_since(p, &s2, lines_sink, &l); /* nothing since s2 */
    CHECK_EQ(l.n, 2);
    memset(&l, 0, sizeof l);
    pa_crt_mem_dump_all_objects_since(p, &s1, lines_sink, &l);
    CHECK_EQ(l.n, 6); /* header, 2 blocks x 2 lines (the CRT block is skipped), footer */
    memset(&l, 0, sizeof l);
    pa_crt_mem_dump_statistics(p, &d, lines_sink, &l);
    CHECK_EQ(l.n, 7);
    CHECK(!strcmp(l.line[4], "20 bytes in 1 Client Blocks.\n"));
    pa_crt_free(p, a);
    pa_crt_free_dbg(p, b, _CLIENT_BLOCK);
    pa_crt_mem_checkpoint(p, &s2);
    CHECK_EQ(pa_crt_mem_difference(p, &d, &s1, &s2), 0); /* only a CRT block differs */
    pa_crt_free(p, crt);
    crt_end(p);
}

typedef struct churn_s {
    pa_process_t *p;
    int seed;
} churn_t;

static void *churn(void *arg)
{
    churn_t *c = arg;
    void *held[32] = {0};
    unsigned x = (unsigned)c->seed;
    for (int i = 0; i < 4000; i++) {
        x = x * 1103515245u + 12345u;
        int k = (int)((x >> 8) % 32);
        if (held[k]) {
            pa_crt_free(c->p, held[k]);
            held[k] = NULL;
        } else {
            held[k] = (x & 1) ? pa_crt_malloc(c->p, (x >> 12) % 300)
                              : pa_crt_aligned_malloc(c->p, (x >> 12) % 300, 64);
            if ((x & 1) && held[k]) held[k] = pa_crt_realloc(c->p, held[k], (x >> 16) % 500 + 1);
            if (!(x & 1)) {
                if (held[k]) pa_crt_aligned_free(c->p, held[k]);
                held[k] = NULL;
            }
        }
    }
    for (int k = 0; k < 32; k++) pa_crt_free(c->p, held[k]);
    return NULL;
}

TEST(crt_debug_heap_under_threads)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    pthread_t t[2];
    churn_t c[2] = {{p, 1}, {p, 2}};
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, churn, &c[i]);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK_EQ(pa_crt_check_memory(p), TRUE);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 0);
    CHECK_EQ(rs.count, 0);
    pa_crt_stats_t s;
    pa_crt_stats(p, &s);
    CHECK(s.next_request > 4000);
    crt_end(p);
}

/* ---- the Windows names (pyalloc/crt.h) on the current process ---- */

static int pnh_calls;
static int pnh(size_t size)
{
    (void)size;
    pnh_calls++;
    return 0;
}

TEST(windows_names_on_the_current_process)
{
    pa_process_t *cur = pa_process_current();
    int debug = pa_crt_set_debug(cur, 1) == 0; /* unless something allocated already */
    CHECK(_get_heap_handle() == (intptr_t)GetProcessHeap());
    /* With PYALLOC_REPLACE_CRT and _CRTDBG_MAP_ALLOC, malloc records the call site. */
    int line = __LINE__ + 1;
    char *a = malloc(10);
    CHECK(a != NULL);
    CHECK_EQ(_msize(a), 10);
    long req = 0;
    char *file = NULL;
    int l = 0;
    CHECK_EQ(_CrtIsMemoryBlock(a, 10, &req, &file, &l), TRUE);
    if (debug) {
        CHECK(file && strstr(file, "test_crt.c") != NULL);
        CHECK_EQ(l, line);
        CHECK_EQ(HeapSize(GetProcessHeap(), 0, a - 48), 48 + 10 + 4);
        CHECK_EQ(_CrtCheckMemory(), TRUE);
        CHECK_EQ(_CrtSetDbgFlag(_CRTDBG_REPORT_FLAG) & _CRTDBG_ALLOC_MEM_DF, _CRTDBG_ALLOC_MEM_DF);
    } else {
        CHECK_EQ(HeapSize(GetProcessHeap(), 0, a), 10);
    }
    a = realloc(a, 100);
    CHECK_EQ(_msize(a), 100);
    free(a);
    char *z = calloc(4, 4);
    CHECK(z && all_bytes(z, 0, 16));
    z = _recalloc(z, 8, 4);
    CHECK(all_bytes(z, 0, 32));
    free(z);
    void *al = _aligned_malloc(100, 128);
    CHECK((uintptr_t)al % 128 == 0);
    CHECK_EQ(_aligned_msize(al, 128, 0), 100);
    _aligned_free(al);
    CHECK_EQ(_set_new_mode(0), 0);
    CHECK_EQ(_query_new_mode(), 0);
    CHECK(_set_new_handler(pnh) == NULL);
    CHECK(_query_new_handler() == pnh);
    CHECK_EQ(_callnewh(5), 0);
    CHECK_EQ(pnh_calls, 1);
    CHECK(_set_new_handler(NULL) == pnh);
    int e = 0;
    _set_errno(ENOMEM);
    CHECK_EQ(_get_errno(&e), 0);
    CHECK_EQ(e, ENOMEM);
    CHECK_EQ(_CrtDumpMemoryLeaks(), FALSE);
    void *b = pa_malloc(3);
    CHECK_EQ(_msize(b), 3);
    pa_free(b);
}

CTEST_MAIN()
