/* preload.c: the whole stack under an unmodified Linux program (LD_PRELOAD).
 *
 * Above layer 5: this file gives the C library's allocation functions (malloc, calloc,
 * realloc, free, posix_memalign, aligned_alloc, memalign, valloc, pvalloc, malloc_usable_size)
 * to the CRT of the current process, so every allocation of the program goes
 * malloc -> HeapAlloc (process heap) -> VirtualAlloc -> mm -> mmap. Built by setup.py as
 * pyalloc/libpyalloc_preload*.so (pyalloc.preload_path()); `pyalloc run` sets it up.
 *
 * Linux programs free memalign'd blocks with free(), which Windows' CRT would not accept:
 * an over-aligned block is one CRT block with the aligned pointer inside it and a tagged
 * back-pointer just below, so free() and malloc_usable_size() recognise it.
 *
 * A free or realloc the heap refuses, or an allocation that finds the heap corrupted, ends
 * the program with a report (heap_failure), as glibc and 64-bit Windows do.
 *
 * PYALLOC_STATS=1 prints what each layer did to stderr at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyalloc.h"
#include "heap_internal.h" /* PA_LFH_MAX_REQUEST */
#include "host.h"

#define EXPORT __attribute__((visibility("default")))

/* The thread's last error (status.c), read inline on free's fast path. */
extern __thread DWORD _pa_last_error __attribute__((tls_model("initial-exec"), visibility("hidden")));

/* Counters, kept only with PYALLOC_STATS=1. */
static int stats_on = -1;
static _Atomic(uint64_t) n_malloc, n_calloc, n_realloc, n_free, n_aligned, bytes_requested;

static inline int stats_enabled(void)
{
    if (__builtin_expect(stats_on < 0, 0)) {
        const char *s = getenv("PYALLOC_STATS");
        stats_on = s && *s == '1';
    }
    return stats_on;
}

#define COUNT(counter, n)                                                                        \
    do {                                                                                         \
        if (__builtin_expect(stats_enabled(), 0))                                                \
            atomic_fetch_add_explicit(&counter, n, memory_order_relaxed);                       \
    } while (0)

static pa_process_t *current;

/* The --stats report and the debug CRT's reports go to a copy of the program's stderr taken
 * at start-up: many programs close their standard streams in an atexit handler of their own
 * (coreutils' close_stdout closes stderr too), and those handlers run before the report and
 * before the leak dump of _CRTDBG_LEAK_CHECK_DF (pa_crt_exit). */
static int report_fd = 2;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0) {
        ssize_t w = write(report_fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
        (void)w;
    }
}

static int report_to_fd(pa_process_t *p, const pa_crt_report_t *r, void *ctx)
{
    (void)p;
    (void)ctx;
    ssize_t w = write(report_fd, r->message, strlen(r->message));
    (void)w;
    return 1;
}

/* A free or realloc of a pointer the process heap refused (no over-aligned one either), or
 * an allocation that found the heap's metadata corrupted. glibc ends the program there
 * ("free(): invalid pointer", "double free or corruption"), and so does 64-bit Windows:
 * terminate-on-corruption is on for every 64-bit process (Raymond Chen, "Brief Q&A on the
 * HeapEnableTerminationOnCorruption heap information flag", The Old New Thing, 2013-12-27),
 * with STATUS_HEAP_CORRUPTION. Reported, then abort() (SIGABRT, as glibc). */
static __attribute__((noreturn, noinline, cold)) void heap_failure(const char *call, void *p)
{
    int corrupt = pa_heap_last_status() == STATUS_HEAP_CORRUPTION;
    char arg[32] = "";
    if (p) snprintf(arg, sizeof arg, "(%p)", p);
    say("pyalloc: %s%s: %s; the program ends, as a 64-bit Windows process ends on heap "
        "corruption (STATUS_HEAP_CORRUPTION 0xC0000374)\n", call, arg,
        corrupt ? "the heap found its metadata corrupted (a write past a block's end, or into "
                  "a freed block)"
                : "not a busy block of the process heap (a double free, a pointer malloc did "
                  "not return, or a block header overwritten)");
    abort();
}

static inline pa_process_t *proc(void)
{
    if (__builtin_expect(!current, 0)) current = pa_process_current();
    return current;
}

/* The process heap, and whether the CRT is the debug one (fixed at the first allocation). */
static HANDLE process_heap;
static int crt_debug = -1;

static inline HANDLE heap(void)
{
    if (__builtin_expect(!process_heap, 0)) process_heap = pa_heap_get_process_heap(proc());
    return process_heap;
}

static inline int debug_crt(void)
{
    if (__builtin_expect(crt_debug < 0, 0)) crt_debug = pa_crt_is_debug(proc());
    return crt_debug;
}

/* The fast paths' one test: fast_heap is the process heap once the process, the heap and the
 * CRT's kind are known, the CRT is the release one and statistics are off; NULL until then and
 * for good otherwise, which sends every call to the full paths below (which count, and set the
 * state up). fast_proc is written first, and fast_heap published after it. */
static pa_process_t *fast_proc;
static HANDLE fast_heap;

/* Requests up to 2^40 bytes (UCRT's _HEAP_MAXREQ is larger; HeapAlloc refuses these anyway)
 * go to the heap directly: one unsigned compare of size - 1 also sends 0 to the full path. */
#define FAST_MAX ((size_t)1 << 40)

static __attribute__((noinline, cold)) void fast_setup(void)
{
    pa_process_t *p = proc();
    HANDLE h = heap();
    if (!p || !h || debug_crt() || stats_enabled()) return;
    fast_proc = p;
    __atomic_store_n(&fast_heap, h, __ATOMIC_RELEASE);
}

static inline HANDLE fast(void) { return __atomic_load_n(&fast_heap, __ATOMIC_ACQUIRE); }

/* ---- over-aligned blocks ---- */

#define ALIGN_TAG ((uintptr_t)0x5041414C49474E00u) /* "PAALIGN\0" */

typedef struct {
    void *block;   /* the CRT block holding the aligned pointer */
    uintptr_t tag; /* ALIGN_TAG ^ (uintptr_t)block */
} align_hdr_t;

/* The CRT block behind an over-aligned pointer, or NULL if p is not one. */
static void *aligned_block_of(void *p)
{
    if (!p || ((uintptr_t)p & 15)) return NULL;
    align_hdr_t *h = (align_hdr_t *)p - 1;
    size_t n;
    /* The header lies inside the block's user bytes, so it is readable when p is ours. */
    if (pa_heap_find_block(proc(), h, sizeof *h, NULL, NULL, &n) != STATUS_SUCCESS) return NULL;
    return h->tag == (ALIGN_TAG ^ (uintptr_t)h->block) && (char *)h->block < (char *)p
               ? h->block
               : NULL;
}

static void *aligned_alloc_impl(size_t alignment, size_t size)
{
    if (alignment <= 16) return malloc(size); /* every block is 16-byte aligned */
    size_t total = size + alignment + sizeof(align_hdr_t);
    if (total < size) {
        errno = ENOMEM;
        return NULL;
    }
    char *block = pa_crt_malloc(proc(), total);
    if (!block) return NULL;
    uintptr_t p = ((uintptr_t)block + sizeof(align_hdr_t) + alignment - 1) & ~(alignment - 1);
    align_hdr_t *h = (align_hdr_t *)p - 1;
    h->block = block;
    h->tag = ALIGN_TAG ^ (uintptr_t)block;
    COUNT(n_aligned, 1);
    return (void *)p;
}

/* ---- the C library's allocation functions ---- */

/* The release CRT's malloc is HeapAlloc(process heap, 0, size ? size : 1) once the size
 * passes its checks; the fast paths below make that call directly and leave everything else
 * (errno, the new handler in new mode 1, the debug CRT, statistics, the first call) to the
 * full paths, which they call when the heap says no. */

static __attribute__((noinline)) void *malloc_full(size_t size)
{
    if (__builtin_expect(!fast(), 0)) fast_setup();
    COUNT(n_malloc, 1);
    COUNT(bytes_requested, size);
    if (!debug_crt() && size <= FAST_MAX) {
        void *r = pa_heap_alloc(proc(), heap(), 0, size ? size : 1);
        if (r) return r;
        if (pa_heap_last_status() == STATUS_HEAP_CORRUPTION) heap_failure("malloc", NULL);
    }
    return pa_crt_malloc(proc(), size);
}

EXPORT void *malloc(size_t size)
{
    HANDLE h = fast();
    if (__builtin_expect(h != NULL && size - 1 < FAST_MAX, 1)) {
        void *r = pa_heap_alloc(fast_proc, h, 0, size);
        if (__builtin_expect(r != NULL, 1)) return r;
    }
    return malloc_full(size);
}

static __attribute__((noinline)) void *calloc_full(size_t count, size_t size)
{
    if (__builtin_expect(!fast(), 0)) fast_setup();
    COUNT(n_calloc, 1);
    size_t total;
    int overflow = __builtin_mul_overflow(count, size, &total);
    COUNT(bytes_requested, overflow ? 0 : total);
    if (!overflow && !debug_crt() && total <= FAST_MAX) {
        void *r = pa_heap_alloc(proc(), heap(), HEAP_ZERO_MEMORY, total ? total : 1);
        if (r) return r;
        if (pa_heap_last_status() == STATUS_HEAP_CORRUPTION) heap_failure("calloc", NULL);
    }
    return pa_crt_calloc(proc(), count, size);
}

/* HEAP_ZERO_MEMORY is a memset of the block in the heap for every block below the large
 * threshold (large blocks are fresh or decommitted pages, zero already), but it keeps a request
 * off the heap's lock-free LFH path: an LFH-sized calloc is a plain HeapAlloc and the same
 * memset here. */
EXPORT void *calloc(size_t count, size_t size)
{
    HANDLE h = fast();
    size_t total;
    if (__builtin_expect(h != NULL && !__builtin_mul_overflow(count, size, &total) &&
                             total - 1 < PA_LFH_MAX_REQUEST, 1)) {
        void *r = pa_heap_alloc(fast_proc, h, 0, total);
        if (__builtin_expect(r != NULL, 1)) return memset(r, 0, total);
    }
    return calloc_full(count, size);
}

/* free's full path; saved is the last error before a refused HeapFree (when refused, else
 * unused). */
static __attribute__((noinline)) void free_full(void *p, int refused, DWORD saved)
{
    if (__builtin_expect(!fast(), 0)) fast_setup();
    COUNT(n_free, 1);
    if (debug_crt()) {
        void *block = aligned_block_of(p);
        pa_crt_free(proc(), block ? block : p);
        return;
    }
    if (!refused) {
        saved = pa_get_last_error();
        if (pa_heap_free(proc(), heap(), 0, p)) return;
    }
    void *block = aligned_block_of(p);
    if (!block) heap_failure("free", p);
    ((align_hdr_t *)p - 1)->tag = 0;
    pa_heap_free(proc(), heap(), 0, block);
    pa_set_last_error(saved);
}

/* The release CRT's free is HeapFree on the process heap, which validates p: only when it
 * refuses (not a block start) can p be an over-aligned pointer inside a block. */
EXPORT void free(void *p)
{
    if (__builtin_expect(p == NULL, 0)) return;
    HANDLE h = fast();
    if (__builtin_expect(h != NULL, 1)) {
        DWORD saved = _pa_last_error;
        if (__builtin_expect(pa_heap_free(fast_proc, h, 0, p), 1)) return;
        free_full(p, 1, saved);
        return;
    }
    free_full(p, 0, 0);
}

EXPORT void cfree(void *p) { free(p); }

EXPORT size_t malloc_usable_size(void *p)
{
    if (!p) return 0;
    if (!debug_crt()) {
        size_t n = pa_heap_size(proc(), heap(), 0, p);
        if (n != (size_t)-1) return n;
    }
    void *block = aligned_block_of(p);
    if (block) return pa_crt_msize(proc(), block) - (size_t)((char *)p - (char *)block);
    size_t n = pa_crt_msize(proc(), p);
    return n == (size_t)-1 ? 0 : n;
}

/* realloc's full path: every case but an ordinary block of the release CRT resized by the
 * heap, which the fast path tried first when refused is set. */
static __attribute__((noinline)) void *realloc_full(void *p, size_t size, int refused)
{
    if (__builtin_expect(!fast(), 0)) fast_setup();
    COUNT(n_realloc, 1);
    COUNT(bytes_requested, size);
    if (!p) return pa_crt_malloc(proc(), size);
    /* (The fast path's HeapReAlloc failed just now: its status is this call's.) */
    if (refused && pa_heap_last_status() == STATUS_HEAP_CORRUPTION) heap_failure("realloc", p);
    /* An ordinary block is recognised cheaply (HeapSize validates block starts); only a
     * pointer it refuses can be an over-aligned one inside a block. */
    int ordinary = !debug_crt() && pa_heap_size(proc(), heap(), 0, p) != (size_t)-1;
    void *block = ordinary ? NULL : aligned_block_of(p);
    if (!ordinary && !block && !debug_crt()) heap_failure("realloc", p);
    if (block) {
        /* Over-aligned blocks move to an ordinary one, as glibc allows. */
        size_t old = malloc_usable_size(p);
        if (size == 0) {
            free(p);
            return NULL;
        }
        void *q = pa_crt_malloc(proc(), size);
        if (q) {
            memcpy(q, p, old < size ? old : size);
            free(p);
        }
        return q;
    }
    if (size == 0) { /* glibc and UCRT both free and return NULL */
        pa_crt_free(proc(), p);
        return NULL;
    }
    if (ordinary && size <= FAST_MAX && !refused) {
        void *r = pa_heap_realloc(proc(), heap(), 0, p, size);
        if (r) return r;
        if (pa_heap_last_status() == STATUS_HEAP_CORRUPTION) heap_failure("realloc", p);
    }
    /* The CRT retries with the new handler (new mode 1) and sets errno. */
    return pa_crt_realloc(proc(), p, size);
}

/* The release CRT's realloc of a block is HeapReAlloc, which validates p: only when it refuses
 * can p be an over-aligned pointer (or the heap be out of memory). */
EXPORT void *realloc(void *p, size_t size)
{
    HANDLE h = fast();
    if (__builtin_expect(h != NULL && size - 1 < FAST_MAX, 1)) {
        if (!p) return malloc(size);
        void *r = pa_heap_realloc(fast_proc, h, 0, p, size);
        if (__builtin_expect(r != NULL, 1)) return r;
        return realloc_full(p, size, 1);
    }
    return realloc_full(p, size, 0);
}

EXPORT void *reallocarray(void *p, size_t count, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, total);
}

EXPORT int posix_memalign(void **out, size_t alignment, size_t size)
{
    if (!alignment || (alignment & (alignment - 1)) || alignment % sizeof(void *)) return EINVAL;
    int saved = errno;
    void *p = aligned_alloc_impl(alignment, size);
    if (!p) {
        errno = saved;
        return ENOMEM;
    }
    *out = p;
    return 0;
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
    if (!alignment || (alignment & (alignment - 1))) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_alloc_impl(alignment, size);
}

EXPORT void *memalign(size_t alignment, size_t size)
{
    return aligned_alloc(alignment, size);
}

EXPORT void *valloc(size_t size)
{
    return aligned_alloc_impl(PA_PAGE_SIZE, size);
}

EXPORT void *pvalloc(size_t size)
{
    size_t rounded = (size + PA_PAGE_SIZE - 1) & ~(PA_PAGE_SIZE - 1);
    if (rounded < size) {
        errno = ENOMEM;
        return NULL;
    }
    return aligned_alloc_impl(PA_PAGE_SIZE, rounded ? rounded : PA_PAGE_SIZE);
}

/* ---- fork: no lock may be held by a thread that the child lacks ---- */

static void before_fork(void)
{
    pa_crt_fork_prepare(proc());
    pa_heap_fork_prepare();
    pa_mm_fork_prepare();
}

static void after_fork_parent(void)
{
    pa_mm_fork_parent();
    pa_heap_fork_parent();
    pa_crt_fork_parent(proc());
}

static void after_fork_child(void)
{
    pa_mm_fork_child();
    pa_heap_fork_child();
    pa_crt_fork_child(proc());
}

/* ---- the read-only window for the extension module (host.h, pyalloc.host()) ----
 * Each function leaves the thread's last error as it found it: looking changes nothing. */

typedef struct {
    pa_region_info_t *out;
    size_t cap, n;
} region_copy_t;

static int copy_region(const pa_region_info_t *r, void *arg)
{
    region_copy_t *c = arg;
    if (c->n < c->cap) c->out[c->n] = *r;
    c->n++;
    return 0;
}

static size_t host_regions(pa_region_info_t *out, size_t cap)
{
    region_copy_t c = {out, cap, 0};
    pa_process_walk(proc(), copy_region, &c); /* (holds the process lock; copy_region allocates nothing) */
    return c.n;
}

static void host_vm_stats(pa_vm_stats_t *out) { pa_process_stats(proc(), out); }

static HANDLE host_process_heap(void)
{
    DWORD saved = pa_get_last_error();
    HANDLE h = heap();
    pa_set_last_error(saved);
    return h;
}

static size_t host_heaps(HANDLE *out, size_t cap)
{
    DWORD saved = pa_get_last_error();
    DWORD n = pa_heap_get_process_heaps(proc(), cap > 0xffffffffu ? 0xffffffffu : (DWORD)cap, out);
    pa_set_last_error(saved);
    return n;
}

static int host_heap_stats(HANDLE h, pa_heap_stats_t *out, DWORD *error)
{
    DWORD saved = pa_get_last_error();
    int ok = pa_heap_stats(proc(), h, out) != 0;
    *error = ok ? 0 : pa_get_last_error();
    pa_set_last_error(saved);
    return ok;
}

static size_t host_heap_walk(HANDLE h, PROCESS_HEAP_ENTRY *out, size_t cap, DWORD *error)
{
    pa_process_t *p = proc();
    DWORD saved = pa_get_last_error();
    size_t n = (size_t)-1;
    *error = 0;
    if (pa_heap_lock(p, h)) {
        /* Under the lock no other thread changes the heap's layout (segments, subsegments,
         * back-end blocks); LFH slots still go from and to other threads' caches, so a slot
         * may show busy or free as it was a moment before, as under any HeapLock here. The
         * walk reads only what stays put (the segment map, subsegment headers, a slot's
         * flags). This thread only copies entries: it allocates nothing. */
        PROCESS_HEAP_ENTRY e;
        memset(&e, 0, sizeof e);
        n = 0;
        while (pa_heap_walk(p, h, &e)) {
            if (n < cap) out[n] = e;
            n++;
        }
        if (pa_get_last_error() != ERROR_NO_MORE_ITEMS) {
            *error = pa_get_last_error();
            n = (size_t)-1;
        }
        pa_heap_unlock(p, h);
    } else {
        *error = pa_get_last_error();
    }
    pa_set_last_error(saved);
    return n;
}

static const pa_host_api_t host_api = {
    PA_HOST_ABI,
    sizeof(pa_host_api_t),
    sizeof(pa_region_info_t),
    sizeof(PROCESS_HEAP_ENTRY),
    sizeof(pa_heap_stats_t),
    sizeof(pa_vm_stats_t),
    host_regions,
    host_vm_stats,
    host_process_heap,
    host_heaps,
    host_heap_stats,
    host_heap_walk,
};

EXPORT const pa_host_api_t *pyalloc_host_api(void) { return &host_api; }

/* ---- statistics at exit ---- */

static int count_region(const pa_region_info_t *r, void *arg)
{
    size_t *c = arg;
    if (r->mbi.State != MEM_FREE && r->mbi.BaseAddress == r->mbi.AllocationBase) {
        c[0]++;
        if (r->owner == PA_OWNER_HEAP) c[1]++;
    }
    return 0;
}

static void print_stats(void)
{
    pa_process_t *p = proc();
    pa_vm_stats_t vm;
    pa_heap_stats_t hs;
    pa_process_stats(p, &vm);
    HANDLE heaps[64];
    DWORD nheaps = pa_heap_get_process_heaps(p, 64, heaps);
    pa_heap_stats(p, pa_heap_get_process_heap(p), &hs);
    size_t regions[2] = {0, 0};
    pa_process_walk(p, count_region, regions);
    say("pyalloc: crt     malloc %llu, calloc %llu, realloc %llu, free %llu, aligned %llu; "
        "%llu bytes requested\n",
        (unsigned long long)n_malloc, (unsigned long long)n_calloc,
        (unsigned long long)n_realloc, (unsigned long long)n_free,
        (unsigned long long)n_aligned, (unsigned long long)bytes_requested);
    say("pyalloc: heap    %lu heaps; process heap: %zu busy blocks (%zu bytes) at exit, "
        "%zu KiB committed, %zu KiB reserved, %zu segments, %zu large blocks, %u LFH buckets\n",
        (unsigned long)nheaps, hs.busy_blocks, hs.busy_bytes, hs.committed >> 10,
        hs.reserved >> 10, hs.segments, hs.large_blocks, hs.lfh_active);
    say("pyalloc: virtual %zu allocations (%zu of them heap-owned), %zu KiB reserved, %zu KiB "
        "committed now, %zu KiB peak committed\n",
        regions[0], regions[1], vm.reserved >> 10, vm.committed >> 10, vm.peak_committed >> 10);
}

/* ---- the leak dump at exit: glibc's own blocks first given back ----
 * glibc keeps blocks for itself until the process ends (stdio buffers, the locale, NSS's
 * tables: 153 blocks for a program that calls setlocale, getpwuid and printf). UCRT marks its
 * own blocks _CRT_BLOCK, which the leak dump leaves out; glibc's are normal blocks to us, so
 * before the dump of _CRTDBG_LEAK_CHECK_DF glibc frees them itself, with __libc_freeres (as
 * valgrind and glibc's mtrace do at exit; its streams stay usable, unbuffered). Runs before
 * the CRT's own destructor (which has a priority number, and so runs after every destructor
 * of the library without one), which then finds the dump done. */
extern void __libc_freeres(void) __attribute__((weak));

__attribute__((destructor)) static void preload_end(void)
{
    pa_process_t *p = current;
    pa_crt_stats_t st;
    if (!p || !pa_crt_is_debug(p)) return;
    pa_crt_stats(p, &st);
    if (!(st.dbg_flag & _CRTDBG_LEAK_CHECK_DF)) return;
    if (__libc_freeres) __libc_freeres();
    pa_crt_exit(p);
}

__attribute__((constructor)) static void preload_init(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
    int debug = debug_crt();
    if (stats_enabled() || debug) {
        /* Far above the descriptors that shells and programs pick for themselves. */
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 512);
        if (fd < 0) fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
        if (fd >= 0) report_fd = fd;
    }
    if (stats_enabled()) atexit(print_stats);
    if (debug) pa_crt_set_report_hook(proc(), report_to_fd, NULL);
}
