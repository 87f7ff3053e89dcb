/* bench_heap.c: layer 3's HeapAlloc/HeapFree against glibc malloc, mimalloc and jemalloc in
 * one run, reported as ratios to glibc measured in the same run.
 *
 * mimalloc and jemalloc are loaded with dlopen (libmimalloc.so.2, libjemalloc.so.2 from the
 * Debian packages libmimalloc-dev / libjemalloc-dev) so that one binary measures all four; an
 * allocator that cannot be loaded is reported as missing. Every (allocator, workload) pair runs
 * in its own forked child, so allocator state and peak RSS do not leak between measurements.
 *
 * Workloads (sizes drawn in advance from a fixed seed, first byte of each block touched):
 *   small   8-512 B, 10,000 live blocks: free a random live one, allocate a new one
 *   medium  8-64 KiB, 1,000 live blocks, same pattern
 *   large   1-4 MiB, 16 live blocks, same pattern
 *   large written   the same, but every 4 KiB page of each new block written (a program that
 *           uses its buffers: page faults and zeroing count here, not in "large")
 *   xsmall / xmedium   cross-thread: one thread allocates, the other frees (SPSC ring)
 * Time is ns per alloc+free pair: the best of ROUNDS rounds, each a fresh child per allocator
 * running the workload twice (the better run counts); the rounds interleave the allocators,
 * the first one rotating, so that the machine's drift spreads over all four. "vs glibc" is
 * best over glibc's best; "range" gives the lowest and highest ratio of one round to glibc's
 * in the same round. Memory: a separate child per allocator, a pass that writes every byte
 * of every block, reports peak RSS growth over peak live bytes (and, for pyalloc, the heap's
 * peak commit charge over live bytes).
 *
 * glibc is called through __libc_malloc/__libc_free (and the harness's own arrays come from
 * __libc_calloc): libpyalloc.a also holds preload.o, whose malloc family would otherwise be
 * linked in and replace glibc's in this binary.
 *
 * Usage: bench_heap [scale [workload [allocator]]]
 *   scale multiplies the iteration counts (default 1); workload and allocator, when given,
 *   run only the workloads / allocators whose name contains them (e.g. `1 small pyalloc`).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pyalloc.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void __libc_free(void *);

typedef struct alloc_s {
    const char *name;
    void *(*alloc)(size_t);
    void (*free)(void *);
    int ok;
} alloc_t;

/* ---- pyalloc: a private process and a growable heap in it ---- */
static pa_process_t *pa_proc;
static HANDLE pa_heap;
static void *pa_alloc_fn(size_t n) { return pa_heap_alloc(pa_proc, pa_heap, 0, n); }
static void pa_free_fn(void *x) { pa_heap_free(pa_proc, pa_heap, 0, x); }
static void pa_setup(void)
{
    pa_proc = pa_process_create(NULL, NULL);
    pa_heap = pa_heap_create(pa_proc, 0, 0, 0);
    if (!pa_heap) abort();
}

static alloc_t allocs[4] = {
    {"glibc", __libc_malloc, __libc_free, 1},
    {"mimalloc", NULL, NULL, 0},
    {"jemalloc", NULL, NULL, 0},
    {"pyalloc", pa_alloc_fn, pa_free_fn, 1},
};

static void load(alloc_t *a, const char *lib, const char *m, const char *f)
{
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "%s: %s\n", a->name, dlerror());
        return;
    }
    a->alloc = (void *(*)(size_t))dlsym(h, m);
    a->free = (void (*)(void *))dlsym(h, f);
    a->ok = a->alloc && a->free;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t rss_kib(int peak)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t v = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, peak ? "VmHWM:" : "VmRSS:", 6)) v = strtoull(line + 6, NULL, 10);
    if (f) fclose(f);
    return v;
}


/* ---- workloads ---- */

typedef struct work_s {
    const char *name;
    size_t lo, hi, live;
    long iters;
    int cross;
    int touch; /* write every page of a new block, not just its first byte */
} work_t;

static uint64_t rng = 88172645463325252ull;
static size_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (size_t)rng;
}

#define NSIZES 65536
static size_t sizes[NSIZES];
static unsigned slots_idx[NSIZES];

static void make_sizes(const work_t *w)
{
    rng = 88172645463325252ull;
    for (int i = 0; i < NSIZES; i++) {
        sizes[i] = w->lo + rnd() % (w->hi - w->lo + 1);
        slots_idx[i] = (unsigned)(rnd() % w->live);
    }
}

/* The workload's write into a new block of n bytes: its first byte, or every page. */
static void touch(const work_t *w, char *x, size_t n)
{
    if (!w->touch) {
        *(volatile char *)x = 1;
        return;
    }
    for (size_t o = 0; o < n; o += 4096) ((volatile char *)x)[o] = 1;
}

/* Single thread: returns ns per pair; *peak_live gets the peak live bytes. */
static double run_single(const alloc_t *a, const work_t *w, int fill, size_t *peak_live)
{
    void **slot = __libc_calloc(w->live, sizeof *slot);
    size_t *len = __libc_calloc(w->live, sizeof *len);
    size_t live = 0, peak = 0;
    for (size_t i = 0; i < w->live; i++) {
        len[i] = sizes[i % NSIZES];
        slot[i] = a->alloc(len[i]);
        if (fill) memset(slot[i], 1, len[i]);
        else touch(w, slot[i], len[i]);
        live += len[i];
    }
    peak = live;
    double t0 = now();
    for (long i = 0; i < w->iters; i++) {
        unsigned k = slots_idx[i & (NSIZES - 1)];
        size_t n = sizes[(i * 7) & (NSIZES - 1)];
        a->free(slot[k]);
        live -= len[k];
        slot[k] = a->alloc(n);
        len[k] = n;
        if (fill) memset(slot[k], 1, n);
        else touch(w, slot[k], n);
        live += n;
        if (live > peak) peak = live;
    }
    double t = now() - t0;
    for (size_t i = 0; i < w->live; i++) a->free(slot[i]);
    __libc_free(slot);
    __libc_free(len);
    *peak_live = peak;
    return t * 1e9 / (double)w->iters;
}

#define RING 1024
typedef struct xq {
    const alloc_t *a;
    const work_t *w;
    void *volatile ring[RING];
    char pad1[64];
    volatile long head;
    char pad2[64];
    volatile long tail;
} xq_t;

static void *x_consumer(void *v)
{
    xq_t *q = v;
    for (long i = 0; i < q->w->iters; i++) {
        while (__atomic_load_n(&q->head, __ATOMIC_ACQUIRE) == q->tail) sched_yield();
        q->a->free(q->ring[q->tail % RING]);
        __atomic_store_n(&q->tail, q->tail + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static double run_cross(const alloc_t *a, const work_t *w)
{
    static xq_t q;
    memset(&q, 0, sizeof q);
    q.a = a;
    q.w = w;
    pthread_t t;
    double t0 = now();
    pthread_create(&t, NULL, x_consumer, &q);
    for (long i = 0; i < w->iters; i++) {
        void *x = a->alloc(sizes[i & (NSIZES - 1)]);
        *(volatile char *)x = 1;
        while (q.head - __atomic_load_n(&q.tail, __ATOMIC_ACQUIRE) >= RING) sched_yield();
        q.ring[q.head % RING] = x;
        __atomic_store_n(&q.head, q.head + 1, __ATOMIC_RELEASE);
    }
    pthread_join(t, NULL);
    return (now() - t0) * 1e9 / (double)w->iters;
}

/* Runs in a fresh child and writes one line to fd: the memory pass ("mem_ratio commit_ratio":
 * every byte written, fewer iterations) when memory is set, else the time pass ("ns": the
 * better of two runs, the second on the state the first left). */
static void measure(int ai, const work_t *w, int memory, int fd)
{
    alloc_t *a = &allocs[ai];
    if (ai == 3) pa_setup();
    make_sizes(w);
    char buf[128];
    int n;
    if (memory) {
        work_t wm = *w;
        wm.iters = w->iters / 10 > 20000 ? 20000 : w->iters / 10;
        size_t before = rss_kib(1), live = 0;
        double commit = 0;
        run_single(a, &wm, 1, &live);
        size_t peak = rss_kib(1);
        double mem = (double)(peak > before ? peak - before : 0) * 1024.0 / (double)live;
        if (ai == 3) {
            pa_vm_stats_t vm;
            pa_process_stats(pa_proc, &vm);
            commit = (double)vm.peak_committed / (double)live;
        }
        n = snprintf(buf, sizeof buf, "%f %f\n", mem, commit);
    } else {
        double best = 1e30;
        for (int rep = 0; rep < 2; rep++) {
            size_t live;
            double ns = w->cross ? run_cross(a, w) : run_single(a, w, 0, &live);
            if (ns < best) best = ns;
        }
        n = snprintf(buf, sizeof buf, "%f\n", best);
    }
    if (write(fd, buf, (size_t)n) != n) _exit(1);
}

/* Forks a child that runs measure(); the numbers it wrote, or 0 if it failed. */
static int in_child(int ai, const work_t *w, int memory, double *x, double *y)
{
    int pfd[2];
    if (pipe(pfd)) return 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        close(pfd[0]);
        measure(ai, w, memory, pfd[1]);
        _exit(0);
    }
    close(pfd[1]);
    char buf[128] = {0};
    ssize_t got = read(pfd[0], buf, sizeof buf - 1);
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    if (got <= 0 || !WIFEXITED(st) || WEXITSTATUS(st)) return 0;
    return memory ? sscanf(buf, "%lf %lf", x, y) == 2 : sscanf(buf, "%lf", x) == 1;
}

#define ROUNDS 5

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;
    /* libjemalloc.so.2 uses initial-exec TLS: dlopen needs surplus static TLS, which glibc
     * sizes at startup from this tunable. Re-exec once with it set. */
    const char *tun = getenv("GLIBC_TUNABLES");
    if (!tun || !strstr(tun, "optional_static_tls")) {
        setenv("GLIBC_TUNABLES", "glibc.rtld.optional_static_tls=16384", 1);
        execv("/proc/self/exe", argv);
    }
    load(&allocs[1], "libmimalloc.so.2", "mi_malloc", "mi_free");
    load(&allocs[2], "libjemalloc.so.2", "malloc", "free");
    work_t works[] = {
        {"small 8-512B x10k", 8, 512, 10000, (long)(4e6 * scale), 0, 0},
        {"medium 8-64KiB x1k", 8 << 10, 64 << 10, 1000, (long)(1e6 * scale), 0, 0},
        {"large 1-4MiB x16", 1 << 20, 4 << 20, 16, (long)(1e5 * scale), 0, 0},
        {"large written", 1 << 20, 4 << 20, 16, (long)(3e3 * scale), 0, 1},
        {"xthread small 8-512B", 8, 512, 1, (long)(2e6 * scale), 1, 0},
        {"xthread medium 8-64KiB", 8 << 10, 64 << 10, 1, (long)(5e5 * scale), 1, 0},
    };
    printf("%-24s %-9s %10s %8s %11s %10s %10s\n", "workload", "allocator", "ns/pair", "vs glibc",
           "range", "rss/live", "commit/live");
    const char *only_work = argc > 2 ? argv[2] : "", *only_alloc = argc > 3 ? argv[3] : "";
    for (unsigned wi = 0; wi < sizeof works / sizeof *works; wi++) {
        const work_t *w = &works[wi];
        if (!strstr(w->name, only_work)) continue;
        int use[4];
        double mem[4] = {0}, commit[4] = {0}, t[4][ROUNDS], best[4];
        for (int ai = 0; ai < 4; ai++) {
            use[ai] = allocs[ai].ok && (!ai || strstr(allocs[ai].name, only_alloc)); /* glibc: the base */
            best[ai] = 0;
            if (use[ai] && !w->cross && !in_child(ai, w, 1, &mem[ai], &commit[ai])) use[ai] = 0;
        }
        /* Time passes interleaved, the first allocator rotating each round, so that the
         * machine's drift spreads over all four; each round's ratio is to glibc's in it. */
        for (int r = 0; r < ROUNDS; r++)
            for (int j = 0; j < 4; j++) {
                int ai = (r + j) % 4;
                t[ai][r] = 0;
                if (use[ai] && in_child(ai, w, 0, &t[ai][r], NULL) &&
                    (!best[ai] || t[ai][r] < best[ai]))
                    best[ai] = t[ai][r];
            }
        for (int ai = 0; ai < 4; ai++) {
            if (!allocs[ai].ok || !best[ai]) {
                if (!ai || strstr(allocs[ai].name, only_alloc))
                    printf("%-24s %-9s %10s\n", w->name, allocs[ai].name, allocs[ai].ok ? "failed" : "missing");
                continue;
            }
            double lo = 1e30, hi = 0;
            for (int r = 0; r < ROUNDS; r++)
                if (t[ai][r] > 0 && t[0][r] > 0) {
                    double q = t[ai][r] / t[0][r];
                    lo = q < lo ? q : lo;
                    hi = q > hi ? q : hi;
                }
            char m[32] = "-", c[32] = "-", rg[32] = "-";
            if (!w->cross) snprintf(m, sizeof m, "%.2f", mem[ai]);
            if (ai == 3 && !w->cross) snprintf(c, sizeof c, "%.2f", commit[ai]);
            if (ai && hi > 0) snprintf(rg, sizeof rg, "%.2f-%.2f", lo, hi);
            printf("%-24s %-9s %10.1f %8.2f %11s %10s %10s\n", w->name, allocs[ai].name, best[ai],
                   best[0] > 0 ? best[ai] / best[0] : 0.0, rg, m, c);
        }
    }
    return 0;
}
