/* bench_virtual.c: layer 2's VirtualAlloc family against the Linux system calls that do the
 * same host work, measured in the same run.
 *
 * Every row times one operation over a batch of BATCH calls (set-up and tear-down outside the
 * timed loop) and reports ns per call, the best of REPEATS batches; the pyalloc and the system
 * call batches alternate so that both see the same machine state. The ratio is pyalloc's time
 * over the system call's.
 *
 *   reserve 64 KiB           VirtualAlloc(MEM_RESERVE)        mmap(PROT_NONE, MAP_NORESERVE)
 *   commit 1 / 16 pages      VirtualAlloc(MEM_COMMIT)         mprotect(PROT_READ|PROT_WRITE)
 *   decommit 16 pages        VirtualFree(MEM_DECOMMIT)        mmap(MAP_FIXED, PROT_NONE), and
 *                                                             madvise(DONTNEED) + mprotect(NONE)
 *   release 64 KiB           VirtualFree(MEM_RELEASE)         munmap
 *   reserve+commit+release   VirtualAlloc + VirtualFree       mmap(RW) + munmap
 *   VirtualQuery             VirtualQuery                     mincore of one page (Linux has no
 *                                                             call that returns a protection)
 * Decommitted pages were written first (one byte per page) on both sides.
 *
 * Usage: bench_virtual [scale]   (scale multiplies the batch count; default 1)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>

#include "pyalloc.h"

#define PAGE ((size_t)4096)
#define SLOT ((size_t)65536)
#define MiB ((size_t)1 << 20)
#define BATCH 2048

static int repeats = 21;
static pa_process_t *proc;
static void *addr[BATCH];
static volatile unsigned char sink;

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void fail(const char *what)
{
    fprintf(stderr, "bench_virtual: %s failed (last error %u)\n", what,
            (unsigned)pa_get_last_error());
    exit(1);
}

/* ---- set-up helpers (not timed) ---- */

static void pa_reserve_all(size_t size, DWORD type)
{
    for (int i = 0; i < BATCH; i++) {
        addr[i] = pa_virtual_alloc(proc, NULL, size, type, PAGE_READWRITE, PA_OWNER_APP);
        if (!addr[i]) fail("VirtualAlloc");
    }
}

static void pa_release_all(void)
{
    for (int i = 0; i < BATCH; i++)
        if (!pa_virtual_free(proc, addr[i], 0, MEM_RELEASE, PA_OWNER_APP)) fail("VirtualFree");
}

static void os_map_all(size_t size, int prot)
{
    for (int i = 0; i < BATCH; i++) {
        addr[i] = mmap(NULL, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (addr[i] == MAP_FAILED) fail("mmap");
    }
}

static void os_unmap_all(size_t size)
{
    for (int i = 0; i < BATCH; i++) munmap(addr[i], size);
}

static void touch_all(size_t size)
{
    for (int i = 0; i < BATCH; i++)
        for (size_t off = 0; off < size; off += PAGE) ((volatile char *)addr[i])[off] = 1;
}

/* ---- the measurements: each runs one batch and returns ns per call ---- */

static double pa_reserve(void)
{
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        addr[i] = pa_virtual_alloc(proc, NULL, SLOT, MEM_RESERVE, PAGE_READWRITE, PA_OWNER_APP);
    t = now_ns() - t;
    for (int i = 0; i < BATCH; i++)
        if (!addr[i]) fail("VirtualAlloc(MEM_RESERVE)");
    pa_release_all();
    return t / BATCH;
}

static double os_reserve(void)
{
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        addr[i] = mmap(NULL, SLOT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    t = now_ns() - t;
    for (int i = 0; i < BATCH; i++)
        if (addr[i] == MAP_FAILED) fail("mmap");
    os_unmap_all(SLOT);
    return t / BATCH;
}

static double pa_commit(size_t pages)
{
    pa_reserve_all(SLOT, MEM_RESERVE);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (!pa_virtual_alloc(proc, addr[i], pages * PAGE, MEM_COMMIT, PAGE_READWRITE,
                              PA_OWNER_APP))
            fail("VirtualAlloc(MEM_COMMIT)");
    t = now_ns() - t;
    pa_release_all();
    return t / BATCH;
}

static double os_commit(size_t pages)
{
    os_map_all(SLOT, PROT_NONE);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (mprotect(addr[i], pages * PAGE, PROT_READ | PROT_WRITE)) fail("mprotect");
    t = now_ns() - t;
    os_unmap_all(SLOT);
    return t / BATCH;
}

static double pa_commit1(void) { return pa_commit(1); }
static double os_commit1(void) { return os_commit(1); }
static double pa_commit16(void) { return pa_commit(16); }
static double os_commit16(void) { return os_commit(16); }

static double pa_decommit(void)
{
    pa_reserve_all(SLOT, MEM_RESERVE | MEM_COMMIT);
    touch_all(SLOT);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (!pa_virtual_free(proc, addr[i], SLOT, MEM_DECOMMIT, PA_OWNER_APP))
            fail("VirtualFree(MEM_DECOMMIT)");
    t = now_ns() - t;
    pa_release_all();
    return t / BATCH;
}

static double os_decommit_mmap(void)
{
    os_map_all(SLOT, PROT_READ | PROT_WRITE);
    touch_all(SLOT);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (mmap(addr[i], SLOT, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED,
                 -1, 0) == MAP_FAILED)
            fail("mmap(MAP_FIXED)");
    t = now_ns() - t;
    os_unmap_all(SLOT);
    return t / BATCH;
}

static double os_decommit_madvise(void)
{
    os_map_all(SLOT, PROT_READ | PROT_WRITE);
    touch_all(SLOT);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (madvise(addr[i], SLOT, MADV_DONTNEED) || mprotect(addr[i], SLOT, PROT_NONE))
            fail("madvise/mprotect");
    t = now_ns() - t;
    os_unmap_all(SLOT);
    return t / BATCH;
}

static double pa_release(void)
{
    pa_reserve_all(SLOT, MEM_RESERVE);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (!pa_virtual_free(proc, addr[i], 0, MEM_RELEASE, PA_OWNER_APP))
            fail("VirtualFree(MEM_RELEASE)");
    t = now_ns() - t;
    return t / BATCH;
}

static double os_release(void)
{
    os_map_all(SLOT, PROT_NONE);
    double t = now_ns();
    for (int i = 0; i < BATCH; i++)
        if (munmap(addr[i], SLOT)) fail("munmap");
    t = now_ns() - t;
    return t / BATCH;
}

static double pa_cycle(void)
{
    double t = now_ns();
    for (int i = 0; i < BATCH; i++) {
        void *a = pa_virtual_alloc(proc, NULL, MiB, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE,
                                   PA_OWNER_APP);
        if (!a || !pa_virtual_free(proc, a, 0, MEM_RELEASE, PA_OWNER_APP)) fail("1 MiB cycle");
    }
    return (now_ns() - t) / BATCH;
}

static double os_cycle(void)
{
    double t = now_ns();
    for (int i = 0; i < BATCH; i++) {
        void *a = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (a == MAP_FAILED || munmap(a, MiB)) fail("mmap/munmap 1 MiB");
    }
    return (now_ns() - t) / BATCH;
}

/* VirtualQuery in the middle of one committed region of `size` bytes, among BATCH other
 * allocations; the syscall side asks mincore about one page of a mapping. */
static char *query_target;
static size_t query_size;

static double pa_query(void)
{
    MEMORY_BASIC_INFORMATION m;
    size_t sum = 0;
    double t = now_ns();
    for (int i = 0; i < 8 * BATCH; i++) {
        if (!pa_virtual_query(proc, query_target + ((size_t)(i & 7) * PAGE), &m, sizeof m))
            fail("VirtualQuery");
        sum += m.RegionSize;
    }
    t = now_ns() - t;
    if (sum < query_size) fail("VirtualQuery result");
    return t / (8 * BATCH);
}

static unsigned char *os_query_target;
static double os_query(void)
{
    unsigned char vec[1];
    double t = now_ns();
    for (int i = 0; i < 8 * BATCH; i++) {
        if (mincore(os_query_target + ((size_t)(i & 7) * PAGE), PAGE, vec)) fail("mincore");
        sink = vec[0];
    }
    return (now_ns() - t) / (8 * BATCH);
}

/* ---- driver ---- */

typedef struct {
    const char *name, *syscall;
    double (*pa)(void), (*os)(void);
} row_t;

static void run(const row_t *r)
{
    double best_pa = 1e30, best_os = 1e30;
    r->pa(); /* warm-up */
    r->os();
    for (int k = 0; k < repeats; k++) {
        double a = r->pa(), b = r->os();
        if (a < best_pa) best_pa = a;
        if (b < best_os) best_os = b;
    }
    printf("| %-34s | %10.0f | %10.0f | %6.2f | %-38s |\n", r->name, best_pa, best_os,
           best_pa / best_os, r->syscall);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    if (scale > 0) repeats = (int)(repeats * scale) > 0 ? (int)(repeats * scale) : 1;
    NTSTATUS st;
    proc = pa_process_create(NULL, &st);
    if (!proc) fail("pa_process_create");

    struct utsname u;
    uname(&u);
    printf("bench_virtual: %s %s %s; batches of %d calls, best of %d; ns per call\n\n", u.sysname,
           u.release, u.machine, BATCH, repeats);
    printf("| %-34s | %10s | %10s | %6s | %-38s |\n", "operation", "pyalloc", "syscall", "ratio",
           "system call");
    printf("|%s|%s|%s|%s|%s|\n", "------------------------------------", "-----------:",
           "-----------:", "-------:", "----------------------------------------");
    static const row_t rows[] = {
        {"reserve 64 KiB", "mmap PROT_NONE", pa_reserve, os_reserve},
        {"commit 1 page", "mprotect RW", pa_commit1, os_commit1},
        {"commit 16 pages", "mprotect RW", pa_commit16, os_commit16},
        {"decommit 16 pages", "mmap MAP_FIXED PROT_NONE", pa_decommit, os_decommit_mmap},
        {"decommit 16 pages", "madvise DONTNEED + mprotect NONE", pa_decommit,
         os_decommit_madvise},
        {"release 64 KiB", "munmap", pa_release, os_release},
        {"reserve+commit+release 1 MiB", "mmap RW + munmap", pa_cycle, os_cycle},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) run(&rows[i]);

    /* VirtualQuery among BATCH live allocations, in a 64 KiB and a 1 MiB committed region. */
    pa_reserve_all(SLOT, MEM_RESERVE | MEM_COMMIT);
    os_query_target = mmap(NULL, MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (os_query_target == MAP_FAILED) fail("mmap");
    static const size_t sizes[] = {SLOT, MiB};
    for (int s = 0; s < 2; s++) {
        query_size = sizes[s];
        query_target = pa_virtual_alloc(proc, NULL, query_size, MEM_RESERVE | MEM_COMMIT,
                                        PAGE_READWRITE, PA_OWNER_APP);
        if (!query_target) fail("VirtualAlloc");
        row_t r = {s ? "VirtualQuery (1 MiB region)" : "VirtualQuery (64 KiB region)",
                   "mincore 1 page", pa_query, os_query};
        run(&r);
        pa_virtual_free(proc, query_target, 0, MEM_RELEASE, PA_OWNER_APP);
    }
    munmap(os_query_target, MiB);
    pa_release_all();
    pa_process_destroy(proc);
    return 0;
}
