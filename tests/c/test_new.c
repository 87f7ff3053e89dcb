/* test_new.c: layer 5 (operator new/delete and MSVC's new[]/delete[], csrc/new.c) against
 * ../shared/reference/heap.md sections 1.14-1.16 (facts numbered as there), including the
 * debug CRT's reports of mismatched releases. Each test uses a private process, detached and
 * destroyed at the end.
 */
#include "crttest.h"

#define MiB ((size_t)1 << 20)

/* ---- operator new / delete ---- */

TEST(fact84_new_is_malloc_one_heap_block)
{
    pa_process_t *p = crt_proc(0, 0);
    size_t before = crt_busy(p);
    void *a = pa_operator_new(p, 24, 0, 0);
    CHECK(a != NULL);
    CHECK_EQ(pa_new_status(), PA_NEW_OK);
    CHECK_EQ((uintptr_t)a % PA_DEFAULT_NEW_ALIGNMENT, 0);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, a), 24);
    CHECK_EQ(crt_busy(p), before + 1);
    void *z = pa_operator_new(p, 0, 0, PA_NEW_ARRAY); /* new[0]: malloc(0), non-NULL */
    CHECK(z != NULL);
    CHECK_EQ(pa_crt_msize(p, z), 1);
    pa_operator_delete(p, a, 24, 0, PA_NEW_SIZED); /* sized delete forwards to delete */
    pa_operator_delete(p, z, 0, 0, PA_NEW_ARRAY);
    pa_operator_delete(p, NULL, 0, 0, 0);
    CHECK_EQ(crt_busy(p), before);
    crt_end(p);
}

typedef struct throws_s {
    int n, status;
    size_t size;
} throws_t;

static void throw_hook(pa_process_t *p, int status, size_t size, void *ctx)
{
    (void)p;
    throws_t *t = ctx;
    t->n++;
    t->status = status;
    t->size = size;
}

typedef struct freer_s {
    int calls, free_on, give_up_on;
    void *reserve;
} freer_t;

/* A new handler: frees the reserve on call free_on, gives up from call give_up_on on (0:
 * never). */
static int handler(pa_process_t *p, size_t size, void *ctx)
{
    (void)size;
    freer_t *f = ctx;
    f->calls++;
    if (f->calls == f->free_on) {
        pa_crt_free(p, f->reserve);
        pa_heap_compact(p, pa_heap_get_process_heap(p), 0);
    }
    return !f->give_up_on || f->calls < f->give_up_on;
}

TEST(fact84_new_loops_on_the_handler_until_it_succeeds)
{
    pa_process_t *p = crt_proc(0, 24 * MiB);
    freer_t f = {0, 4, 0, NULL};
    f.reserve = pa_crt_malloc(p, 12 * MiB);
    throws_t t = {0, 0, 0};
    pa_set_new_throw_hook(p, throw_hook, &t);
    CHECK(pa_set_new_handler(p, handler, &f) == NULL);
    void *b = pa_operator_new(p, 16 * MiB, 0, 0); /* new mode 0: only operator new loops */
    CHECK(b != NULL);
    CHECK_EQ(f.calls, 4);
    CHECK_EQ(pa_new_status(), PA_NEW_OK);
    CHECK_EQ(t.n, 0);
    pa_operator_delete(p, b, 0, 0, 0);
    crt_end(p);
}

TEST(fact84_new_throws_bad_alloc_when_the_handler_gives_up)
{
    pa_process_t *p = crt_proc(0, 16 * MiB);
    throws_t t = {0, 0, 0};
    pa_set_new_throw_hook(p, throw_hook, &t);
    /* No handler: bad_alloc at once. */
    CHECK(pa_operator_new(p, 64 * MiB, 0, 0) == NULL);
    CHECK_EQ(pa_new_status(), PA_NEW_BAD_ALLOC);
    CHECK_EQ(t.n, 1);
    CHECK_EQ(t.status, PA_NEW_BAD_ALLOC);
    CHECK_EQ(t.size, 64 * MiB);
    /* A handler that gives up on its 3rd call. */
    freer_t f = {0, 0, 3, NULL};
    pa_set_new_handler(p, handler, &f);
    CHECK(pa_operator_new(p, 64 * MiB, 0, PA_NEW_ARRAY) == NULL);
    CHECK_EQ(f.calls, 3);
    CHECK_EQ(t.n, 2);
    /* nothrow: the same loop, NULL, no throw. */
    f.calls = 0;
    CHECK(pa_operator_new(p, 64 * MiB, 0, PA_NEW_NOTHROW) == NULL);
    CHECK_EQ(f.calls, 3);
    CHECK_EQ(pa_new_status(), PA_NEW_BAD_ALLOC);
    CHECK_EQ(t.n, 2);
    /* SIZE_MAX: bad_array_new_length, after one handler call. */
    f.calls = 0;
    f.give_up_on = 1;
    CHECK(pa_operator_new(p, SIZE_MAX, 0, PA_NEW_ARRAY) == NULL);
    CHECK_EQ(f.calls, 1);
    CHECK_EQ(pa_new_status(), PA_NEW_BAD_ARRAY_NEW_LENGTH);
    CHECK_EQ(t.status, PA_NEW_BAD_ARRAY_NEW_LENGTH);
    /* New mode 1: malloc itself consults the handler first, then operator new does again. */
    pa_crt_set_new_mode(p, 1);
    f.calls = 0;
    f.give_up_on = 1;
    CHECK(pa_operator_new(p, 64 * MiB, 0, 0) == NULL);
    CHECK_EQ(f.calls, 2);
    f.give_up_on = 0;
    crt_end(p);
}

TEST(fact84_85_aligned_new)
{
    pa_process_t *p = crt_proc(0, 0);
    CHECK_EQ(PA_DEFAULT_NEW_ALIGNMENT, 16);
    size_t aligns[] = {32, 64, 128, 4096};
    for (size_t i = 0; i < 4; i++) {
        size_t before = crt_busy(p);
        char *a = pa_operator_new(p, 100, aligns[i], 0);
        CHECK(a && (uintptr_t)a % aligns[i] == 0);
        /* _aligned_malloc's layout: one block, its address in the slot below. */
        uintptr_t base;
        memcpy(&base, a - 8, 8);
        CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, (void *)base), 100 + 8 + aligns[i] - 1);
        CHECK_EQ(crt_busy(p), before + 1);
        pa_operator_delete(p, a, 100, aligns[i], PA_NEW_SIZED);
        CHECK_EQ(crt_busy(p), before);
    }
    char *n = pa_operator_new(p, 10, 64, PA_NEW_NOTHROW | PA_NEW_ARRAY);
    CHECK(n && (uintptr_t)n % 64 == 0);
    pa_operator_delete(p, n, 0, 64, PA_NEW_ARRAY);
    /* align_val_t that is not a power of two: _aligned_malloc fails, bad_alloc. */
    CHECK(pa_operator_new(p, 10, 48, PA_NEW_NOTHROW) == NULL);
    CHECK_EQ(pa_new_status(), PA_NEW_BAD_ALLOC);
    /* new T: over-aligned types take the aligned overload, others the plain one. */
    void *o16 = pa_new_object(p, 48, 16, NULL, NULL);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, o16), 48);
    void *o32 = pa_new_object(p, 48, 32, NULL, NULL);
    CHECK((uintptr_t)o32 % 32 == 0);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, o32), (size_t)-1); /* inside an aligned block */
    CHECK_EQ(pa_crt_aligned_msize(p, o32, 32, 0), 48);
    pa_delete_object(p, o16, 48, 16, NULL, NULL);
    pa_delete_object(p, o32, 48, 32, NULL, NULL);
    crt_end(p);
}

/* ---- new[] / delete[] and the array cookie (fact 86) ---- */

typedef struct trace_s {
    char *base;
    size_t elem;
    int ctor[64], dtor[64];
    int nctor, ndtor, fail_at;
} trace_t;

static int ctor(void *obj, void *ctx)
{
    trace_t *t = ctx;
    int i = (int)(((char *)obj - t->base) / (ptrdiff_t)t->elem);
    if (t->nctor == t->fail_at) return 1;
    t->ctor[t->nctor++] = i;
    memset(obj, 0x42, t->elem);
    return 0;
}

static void dtor(void *obj, void *ctx)
{
    trace_t *t = ctx;
    t->dtor[t->ndtor++] = (int)(((char *)obj - t->base) / (ptrdiff_t)t->elem);
}

/* ctor needs the array's address before it exists: it is derived from the first call. */
static int ctor_first(void *obj, void *ctx)
{
    trace_t *t = ctx;
    if (!t->base) t->base = obj;
    return ctor(obj, ctx);
}

TEST(fact86_cookie_only_with_a_destructor)
{
    pa_process_t *p = crt_proc(0, 0);
    trace_t t;
    memset(&t, 0, sizeof t);
    t.elem = 12;
    t.fail_at = -1;
    char *a = pa_new_array(p, 12, 4, 5, 1, ctor_first, dtor, &t);
    CHECK(a != NULL);
    CHECK(t.base == a);
    CHECK_EQ(pa_new_array_cookie_size(4, 1), 8);
    size_t count;
    memcpy(&count, a - 8, 8);
    CHECK_EQ(count, 5); /* the count sits just before element 0 */
    CHECK_EQ(pa_new_array_count(a, 4), 5);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, a - 8), 12 * 5 + 8); /* new[] got size*n + 8 */
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, a), (size_t)-1);
    CHECK_EQ(t.nctor, 5);
    for (int i = 0; i < 5; i++) CHECK_EQ(t.ctor[i], i); /* constructed in order */
    pa_delete_array(p, a, 12, 4, 1, dtor, &t);
    CHECK_EQ(t.ndtor, 5);
    for (int i = 0; i < 5; i++) CHECK_EQ(t.dtor[i], 4 - i); /* destroyed in reverse */
    CHECK(!pa_heap_validate(p, crt_heap(p), 0, a - 8));
    /* Trivially destructible: no cookie, exactly size * n. */
    memset(&t, 0, sizeof t);
    t.elem = 12;
    t.fail_at = -1;
    char *b = pa_new_array(p, 12, 4, 5, 0, ctor_first, NULL, &t);
    CHECK(b != NULL && t.base == b);
    CHECK_EQ(pa_new_array_cookie_size(4, 0), 0);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, b), 60);
    pa_delete_array(p, b, 12, 4, 0, NULL, NULL);
    CHECK(!pa_heap_validate(p, crt_heap(p), 0, b));
    pa_delete_array(p, NULL, 12, 4, 1, dtor, &t); /* delete[] nullptr: nothing */
    CHECK_EQ(t.ndtor, 0);
    crt_end(p);
}

TEST(fact86_cookie_of_over_aligned_elements)
{
    pa_process_t *p = crt_proc(0, 0);
    trace_t t;
    memset(&t, 0, sizeof t);
    t.elem = 64;
    t.fail_at = -1;
    /* alignof 16: cookie 16 bytes, still the plain new[] (16 is the default alignment). */
    char *a = pa_new_array(p, 16, 16, 3, 1, NULL, NULL, NULL);
    CHECK_EQ(pa_new_array_cookie_size(16, 1), 16);
    size_t count;
    memcpy(&count, a - 16, 8); /* MSVC: the count starts the cookie */
    CHECK_EQ(count, 3);
    CHECK_EQ(pa_heap_size(p, crt_heap(p), 0, a - 16), 16 * 3 + 16);
    pa_delete_array(p, a, 16, 16, 1, NULL, NULL);
    /* alignof 64: a 64-byte cookie and operator new[](size, align_val_t{64}). */
    char *b = pa_new_array(p, 64, 64, 4, 1, ctor_first, dtor, &t);
    CHECK(b && (uintptr_t)b % 64 == 0);
    memcpy(&count, b - 64, 8);
    CHECK_EQ(count, 4);
    CHECK_EQ(pa_crt_aligned_msize(p, b - 64, 64, 0), 64 * 4 + 64);
    pa_delete_array(p, b, 64, 64, 1, dtor, &t);
    CHECK_EQ(t.ndtor, 4);
    CHECK_EQ(t.dtor[0], 3);
    crt_end(p);
}

TEST(fact86_failing_constructor_unwinds_in_reverse)
{
    pa_process_t *p = crt_proc(0, 0);
    size_t before = crt_busy(p);
    trace_t t;
    memset(&t, 0, sizeof t);
    t.elem = 8;
    t.fail_at = 3;
    CHECK(pa_new_array(p, 8, 8, 6, 1, ctor_first, dtor, &t) == NULL);
    CHECK_EQ(pa_new_status(), PA_NEW_CTOR_FAILED);
    CHECK_EQ(t.nctor, 3);
    CHECK_EQ(t.ndtor, 3);
    CHECK(t.dtor[0] == 2 && t.dtor[1] == 1 && t.dtor[2] == 0);
    CHECK_EQ(crt_busy(p), before); /* the memory went back */
    memset(&t, 0, sizeof t);
    t.elem = 8;
    t.fail_at = 0;
    CHECK(pa_new_object(p, 8, 8, ctor_first, &t) == NULL);
    CHECK_EQ(pa_new_status(), PA_NEW_CTOR_FAILED);
    CHECK_EQ(crt_busy(p), before);
    crt_end(p);
}

TEST(fact84_86_array_size_overflow_is_bad_array_new_length)
{
    pa_process_t *p = crt_proc(0, 0);
    throws_t t = {0, 0, 0};
    pa_set_new_throw_hook(p, throw_hook, &t);
    CHECK(pa_new_array(p, 16, 8, SIZE_MAX / 8, 1, NULL, NULL, NULL) == NULL);
    CHECK_EQ(pa_new_status(), PA_NEW_BAD_ARRAY_NEW_LENGTH);
    CHECK_EQ(t.size, SIZE_MAX);
    CHECK(pa_new_array(p, 8, 8, (SIZE_MAX - 8) / 8 + 1, 1, NULL, NULL, NULL) == NULL); /* + cookie */
    CHECK_EQ(pa_new_status(), PA_NEW_BAD_ARRAY_NEW_LENGTH);
    void *z = pa_new_array(p, 16, 8, 0, 1, NULL, NULL, NULL); /* new T[0]: just the cookie */
    CHECK(z != NULL);
    CHECK_EQ(pa_new_array_count(z, 8), 0);
    pa_delete_array(p, z, 16, 8, 1, NULL, NULL);
    crt_end(p);
}

TEST(fact86_release_delete_array_refuses_a_garbage_cookie)
{
    pa_process_t *p = crt_proc(0, 0);
    trace_t t;
    memset(&t, 0, sizeof t);
    t.elem = 8;
    void *s = pa_new_object(p, 64, 8, NULL, NULL); /* new T, then delete[]: no cookie there */
    errno = 0;
    pa_delete_array(p, s, 8, 8, 1, dtor, &t);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(t.ndtor, 0);
    CHECK_EQ(pa_crt_msize(p, s), 64); /* nothing freed */
    pa_delete_object(p, s, 64, 8, NULL, NULL);
    int local = 0;
    errno = 0;
    pa_delete_array(p, &local, 8, 8, 1, dtor, &t); /* a wild pointer: refused, not read */
    CHECK_EQ(errno, EINVAL);
    errno = 0;
    pa_delete_array(p, (void *)(uintptr_t)0x18, 8, 8, 1, dtor, &t);
    CHECK_EQ(errno, EINVAL);
    CHECK_EQ(t.ndtor, 0);
    crt_end(p);
}

/* ---- the debug configuration (facts 84, 88-94 and pyalloc's mismatch check) ---- */

TEST(fact88_debug_new_blocks_are_normal_blocks)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    char *a = pa_operator_new(p, 24, 0, 0);
    _CrtMemBlockHeader *h = (_CrtMemBlockHeader *)a - 1;
    CHECK_EQ(h->block_use, _NORMAL_BLOCK); /* as MSVC: new is malloc */
    CHECK_EQ(h->data_size, 24);
    CHECK(all_bytes(a, 0xCD, 24));
    char *d = pa_operator_new_dbg(p, 40, 0, _CLIENT_BLOCK, "obj.cpp", 7);
    CHECK_EQ(pa_crt_report_block_type(p, d), _CLIENT_BLOCK);
    pa_crt_block_info_t info[4];
    CHECK_EQ(pa_crt_leaks(p, info, 4), 2);
    CHECK(info[0].data == d && !strcmp(info[0].file, "obj.cpp") && info[0].line == 7);
    CHECK_EQ(info[0].family, PA_CRT_FAMILY_NEW);
    /* An array with a cookie lives in one debug block: count, then elements. */
    char *arr = pa_new_array(p, 10, 8, 3, 1, NULL, NULL, NULL);
    h = (_CrtMemBlockHeader *)(arr - 8) - 1;
    CHECK_EQ(h->data_size, 3 * 10 + 8);
    CHECK_EQ(pa_new_array_count(arr, 8), 3);
    CHECK(all_bytes(arr, 0xCD, 30) && all_bytes(arr + 30, 0xFD, 4));
    pa_operator_delete(p, a, 24, 0, PA_NEW_SIZED);
    pa_operator_delete(p, d, 0, 0, 0); /* _UNKNOWN_BLOCK: the client type is fine */
    pa_delete_array(p, arr, 10, 8, 1, NULL, NULL);
    CHECK_EQ(rs.count, 0);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 0);
    crt_end(p);
}

TEST(fact92_debug_new_mismatches_reported)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    size_t before = crt_busy(p);
    /* free of a new block */
    void *n = pa_operator_new_dbg(p, 16, 0, _NORMAL_BLOCK, "m.cpp", 3);
    pa_crt_free(p, n);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_MISMATCH], 1);
    CHECK(strstr(rs.last, "allocated by operator new and released by free") != NULL);
    CHECK(strstr(rs.last, "Memory allocated at m.cpp(3).") != NULL);
    CHECK(rs.block == n);
    CHECK_EQ(crt_busy(p), before); /* released all the same */
    /* delete of a malloc block */
    void *m = pa_crt_malloc(p, 16);
    pa_operator_delete(p, m, 0, 0, 0);
    CHECK(strstr(rs.last, "allocated by malloc and released by operator delete.") != NULL);
    /* delete of a new[] block (trivial destructor: no cookie) */
    void *v = pa_new_array(p, 4, 4, 10, 0, NULL, NULL, NULL);
    pa_delete_object(p, v, 4, 4, NULL, NULL);
    CHECK(strstr(rs.last, "allocated by operator new[] and released by operator delete.") != NULL);
    /* delete[] of a new block */
    void *s = pa_new_object(p, 40, 8, NULL, NULL);
    trace_t t;
    memset(&t, 0, sizeof t);
    t.elem = 8;
    pa_delete_array(p, s, 8, 8, 1, dtor, &t);
    CHECK(strstr(rs.last, "allocated by operator new and released by operator delete[]") != NULL);
    CHECK_EQ(t.ndtor, 0); /* no destructors over a count that is not there */
    CHECK_EQ(pa_crt_msize(p, s), 40);
    pa_delete_object(p, s, 40, 8, NULL, NULL);
    /* delete of a new[] array with a cookie */
    void *c = pa_new_array(p, 8, 8, 4, 1, NULL, NULL, NULL);
    pa_delete_object(p, c, 8, 8, dtor, &t);
    CHECK(strstr(rs.last, "allocated by operator new[] and released by operator delete.") != NULL);
    CHECK_EQ(t.ndtor, 0);
    pa_delete_array(p, c, 8, 8, 1, NULL, NULL);
    /* delete[] of a malloc block */
    void *mm = pa_crt_malloc(p, 8);
    pa_operator_delete(p, mm, 0, 0, PA_NEW_ARRAY);
    CHECK(strstr(rs.last, "allocated by malloc and released by operator delete[].") != NULL);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_MISMATCH], 6);
    CHECK_EQ(rs.count, 6);
    CHECK_EQ(crt_busy(p), before);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 0);
    pa_crt_stats_t st;
    pa_crt_stats(p, &st);
    CHECK_EQ(st.mismatches, 6);
    crt_end(p);
}

TEST(fact84_debug_aligned_new_and_delete)
{
    pa_process_t *p = crt_proc(1, 0);
    reports_t rs;
    reports_watch(p, &rs);
    char *a = pa_operator_new(p, 100, 64, 0);
    CHECK(a && (uintptr_t)a % 64 == 0);
    CHECK(all_bytes(a - 8, 0xED, 8));
    pa_operator_delete(p, a, 100, 64, PA_NEW_SIZED);
    CHECK_EQ(rs.count, 0);
    /* Aligned new released by free: MSVC's "allocated by aligned routines". */
    char *b = pa_operator_new(p, 100, 64, 0);
    pa_crt_free(p, b);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_ALIGNED], 1);
    CHECK(strstr(rs.last, "use _aligned_free()") != NULL);
    /* ... by plain delete: the same (pyalloc also checks there). */
    pa_operator_delete(p, b, 100, 0, PA_NEW_SIZED);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_ALIGNED], 2);
    /* ... by _aligned_free: the routines match, the families do not. */
    pa_crt_aligned_free(p, b);
    CHECK_EQ(rs.kinds[PA_CRT_REPORT_MISMATCH], 1);
    CHECK(strstr(rs.last, "allocated by operator new and released by free") != NULL);
    /* Over-aligned arrays: cookie and aligned new[] in the debug heap. */
    trace_t t;
    memset(&t, 0, sizeof t);
    t.elem = 32;
    t.fail_at = -1;
    char *arr = pa_new_array(p, 32, 32, 5, 1, ctor_first, dtor, &t);
    CHECK(arr && (uintptr_t)arr % 32 == 0);
    CHECK_EQ(pa_new_array_count(arr, 32), 5);
    pa_delete_array(p, arr, 32, 32, 1, dtor, &t);
    CHECK_EQ(t.ndtor, 5);
    CHECK_EQ(rs.count, 3);
    CHECK_EQ(pa_crt_leaks(p, NULL, 0), 0);
    crt_end(p);
}

TEST(fact84_debug_new_handler_and_leak_report)
{
    pa_process_t *p = crt_proc(1, 16 * MiB);
    freer_t f = {0, 2, 0, NULL};
    f.reserve = pa_crt_malloc(p, 8 * MiB);
    pa_set_new_handler(p, handler, &f);
    void *b = pa_operator_new_dbg(p, 12 * MiB, PA_NEW_ARRAY, _NORMAL_BLOCK, "big.cpp", 99);
    CHECK(b != NULL);
    CHECK_EQ(f.calls, 2);
    lines_t l = {0};
    CHECK_EQ(pa_crt_dump_memory_leaks(p, lines_sink, &l), TRUE);
    char want[160];
    snprintf(want, sizeof want, "big.cpp(99) : {2} normal block at 0x%016llX, %zu bytes long.\n",
             (unsigned long long)(uintptr_t)b, 12 * MiB);
    CHECK_EQ(l.n, 5);
    CHECK(!strcmp(l.line[2], want));
    pa_operator_delete(p, b, 0, 0, PA_NEW_ARRAY);
    CHECK_EQ(pa_crt_dump_memory_leaks(p, NULL, NULL), FALSE);
    crt_end(p);
}

CTEST_MAIN()
