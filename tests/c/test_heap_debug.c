/* test_heap_debug.c: the heap's debug options (heap.md facts 39-43) and the page heap, whose
 * overruns and uses after free must fault: checked with pa_mm_read (no fault needed) and in a
 * forked child that must die from the access. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctest.h"
#include "pyalloc.h"

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

static HANDLE debug_heap(pa_process_t *p, uint32_t debug)
{
    pa_heap_options_t o = {debug, 0, (size_t)-1};
    HANDLE h = pa_heap_create_ex(p, 0, 0, 0, &o);
    CHECK(h != NULL);
    return h;
}

/* Runs fn(arg) in a child; returns 1 if the child died from a fault (SIGSEGV/SIGBUS, or the
 * sanitizer's report of one, which exits non-zero). */
static int child_faults(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) dup2(fd, 2);
        fn(arg);
        _exit(0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) return WTERMSIG(st) == SIGSEGV || WTERMSIG(st) == SIGBUS;
    return WIFEXITED(st) && WEXITSTATUS(st) != 0;
}

TEST(fact39_tail_pattern_after_small_blocks)
{
    pa_process_t *p = proc_new();
    HANDLE h = debug_heap(p, PA_HEAP_DEBUG_TAIL_CHECK);
    for (size_t n = 0; n < 64; n++) {
        unsigned char *x = pa_heap_alloc(p, h, 0, n);
        int bad = 0;
        for (size_t i = 0; i < 8; i++) bad += x[n + i] != 0xAB;
        CHECK_EQ(bad, 0);
        CHECK_EQ(pa_heap_size(p, h, 0, x), n);
    }
    unsigned char *z = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, 17);
    CHECK(z[16] == 0 && z[17] == 0xAB && z[18] == 0xAB && z[19] == 0xAB);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    DWORD flags = *(DWORD *)((char *)h + 0x70);
    CHECK(flags & HEAP_TAIL_CHECKING_ENABLED);
    proc_end(p);
}

TEST(fact40_41_shrink_rewrites_tail_and_overrun_is_detected)
{
    pa_process_t *p = proc_new();
    HANDLE h = debug_heap(p, PA_HEAP_DEBUG_TAIL_CHECK);
    unsigned char *x = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, 17);
    CHECK(pa_heap_realloc(p, h, HEAP_REALLOC_IN_PLACE_ONLY, x, 14) == x);
    CHECK(x[14] == 0xAB && x[15] == 0xAB && x[16] == 0xAB);
    x[14] = 0; /* overrun by one byte */
    CHECK(!pa_heap_validate(p, h, 0, x));
    CHECK(!pa_heap_validate(p, h, 0, NULL));
    CHECK(!pa_heap_free(p, h, 0, x)); /* refused: the heap stays as it was */
    x[14] = 0xAB;
    CHECK(pa_heap_validate(p, h, 0, x));
    CHECK_EQ(pa_heap_size(p, h, 0, x), 14);
    CHECK(pa_heap_free(p, h, 0, x));
    /* Without tail checking a shrink leaves the bytes alone. */
    HANDLE plain = pa_heap_create(p, HEAP_NO_SERIALIZE, 0, 0);
    unsigned char *y = pa_heap_alloc(p, plain, HEAP_ZERO_MEMORY, 17);
    CHECK(pa_heap_realloc(p, plain, HEAP_REALLOC_IN_PLACE_ONLY, y, 14) == y);
    CHECK(y[14] == 0 && y[15] == 0);
    proc_end(p);
}

TEST(fact42_43_free_fill_and_new_fill)
{
    pa_process_t *p = proc_new();
    HANDLE h = debug_heap(p, PA_HEAP_DEBUG_FREE_CHECK);
    unsigned char *keep = pa_heap_alloc(p, h, 0, 8);
    unsigned char *x = pa_heap_alloc(p, h, 0, 37);
    CHECK(x[0] == 0x0D && x[1] == 0xF0 && x[2] == 0xAD && x[3] == 0xBA); /* 0xBAADF00D */
    unsigned char *z = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, 37);
    CHECK(z[0] == 0 && z[36] == 0);
    unsigned char *after = pa_heap_alloc(p, h, 0, 8); /* keeps x from merging into the tail */
    CHECK(pa_heap_free(p, h, 0, x));
    CHECK(x[16] == 0xEE && x[17] == 0xFE && x[18] == 0xEE && x[19] == 0xFE);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    x[16] = 0; /* a write after free */
    CHECK(!pa_heap_validate(p, h, 0, NULL));
    x[16] = 0xEE;
    CHECK(pa_heap_validate(p, h, 0, NULL));
    pa_heap_free(p, h, 0, z);
    pa_heap_free(p, h, 0, keep);
    pa_heap_free(p, h, 0, after);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

TEST(validate_all_and_no_lfh_in_debug_heaps)
{
    pa_process_t *p = proc_new();
    HANDLE h = debug_heap(p, PA_HEAP_DEBUG_VALIDATE_ALL | PA_HEAP_DEBUG_TAIL_CHECK);
    void *x[100];
    for (int i = 0; i < 100; i++) x[i] = pa_heap_alloc(p, h, 0, 32);
    ULONG v = 9, two = 2;
    CHECK(pa_heap_query_information(p, h, HeapCompatibilityInformation, &v, 4, NULL));
    CHECK_EQ(v, 0);
    CHECK(!pa_heap_set_information(p, h, HeapCompatibilityInformation, &two, 4));
    for (int i = 0; i < 100; i++) CHECK(pa_heap_free(p, h, 0, x[i]));
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

struct ph { pa_process_t *p; HANDLE h; unsigned char *x; size_t n; };

static void overrun(void *v)
{
    struct ph *a = v;
    a->x[a->n + (16 - a->n % 16) % 16] = 1; /* first byte past the 16-byte-rounded block */
}

static void use_after_free(void *v)
{
    struct ph *a = v;
    volatile unsigned char c = a->x[0];
    (void)c;
}

TEST(page_heap_overrun_and_use_after_free_fault)
{
    pa_process_t *p = proc_new();
    HANDLE h = debug_heap(p, PA_HEAP_DEBUG_PAGE_HEAP);
    DWORD flags = *(DWORD *)((char *)h + 0x70);
    CHECK(flags & HEAP_PAGE_ALLOCS);
    size_t sizes[] = {1, 16, 100, 4096, 5000};
    for (unsigned i = 0; i < 5; i++) {
        size_t n = sizes[i];
        unsigned char *x = pa_heap_alloc(p, h, HEAP_ZERO_MEMORY, n);
        CHECK(x != NULL);
        CHECK_EQ((uintptr_t)x % 16, 0);
        CHECK_EQ(pa_heap_size(p, h, 0, x), n);
        memset(x, 0x5A, n);
        uintptr_t fault = 0;
        unsigned char b;
        size_t end = (n + 15) / 16 * 16;
        CHECK_EQ(pa_mm_read(p, x + end, &b, 1, &fault), STATUS_ACCESS_VIOLATION);
        CHECK_EQ(fault, (uintptr_t)(x + end));
        struct ph a = {p, h, x, n};
        CHECK(child_faults(overrun, &a));
        CHECK(pa_heap_validate(p, h, 0, x));
        CHECK(pa_heap_free(p, h, 0, x));
        CHECK_EQ(pa_mm_read(p, x, &b, 1, &fault), STATUS_ACCESS_VIOLATION);
        CHECK(child_faults(use_after_free, &a));
        pa_set_last_error(0);
        CHECK(!pa_heap_free(p, h, 0, x)); /* double free */
        CHECK_EQ(pa_get_last_error(), ERROR_INVALID_PARAMETER);
    }
    /* A write into the slack between the user bytes and the guard page is caught at free. */
    unsigned char *y = pa_heap_alloc(p, h, 0, 5);
    y[6] = 0;
    CHECK(!pa_heap_validate(p, h, 0, y));
    CHECK(!pa_heap_free(p, h, 0, y));
    y[6] = 0xAB;
    CHECK(pa_heap_free(p, h, 0, y));
    /* Walk lists live page-heap blocks after the region. */
    void *live = pa_heap_alloc(p, h, 0, 300);
    PROCESS_HEAP_ENTRY e;
    memset(&e, 0, sizeof e);
    int found = 0;
    while (pa_heap_walk(p, h, &e)) found |= e.lpData == live && e.cbData == 300 && e.iRegionIndex == 64;
    CHECK(found);
    CHECK(pa_heap_validate(p, h, 0, NULL));
    proc_end(p);
}

CTEST_MAIN()
