/* heap_debug.c: layer 3, the heap's debug options: fill patterns and the full page heap.
 *
 * Owns the one table of environment options of the heap (PYALLOC_HEAP_*, read once, applied
 * to every heap as Windows applies an image's GlobalFlag, heap.md fact 6), the fill patterns
 * of the debug heap (heap.md facts 39-43: 0xAB tail, 0xFEEEFEEE free, 0xBAADF00D new) and
 * the page heap: with PA_HEAP_DEBUG_PAGE_HEAP every block gets its own reservation, a header
 * page, then the user bytes ending where a reserved (PAGE_NOACCESS) page begins, so an overrun
 * faults at once; a freed block's pages are decommitted and its reservation kept for a while,
 * so a use after free faults too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "heap_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Options from the environment                                                                */

static struct {
    uint32_t debug;
    int no_lfh;
    size_t large_cache;
} env = {0, 0, (size_t)64 << 20};

static const struct {
    const char *name;
    uint32_t debug_bit; /* 0: not a debug flag (handled by name below) */
} env_table[] = {
    {"PYALLOC_HEAP_TAIL_CHECK", PA_HEAP_DEBUG_TAIL_CHECK},
    {"PYALLOC_HEAP_FREE_CHECK", PA_HEAP_DEBUG_FREE_CHECK},
    {"PYALLOC_HEAP_VALIDATE_ALL", PA_HEAP_DEBUG_VALIDATE_ALL},
    {"PYALLOC_HEAP_PAGE_HEAP", PA_HEAP_DEBUG_PAGE_HEAP},
    {"PYALLOC_HEAP_NO_LFH", 0},      /* 1: never activate the LFH */
    {"PYALLOC_HEAP_LARGE_CACHE", 0}, /* bytes of freed large blocks kept per heap */
};

static pthread_once_t env_once = PTHREAD_ONCE_INIT;

static void env_read(void)
{
    for (size_t i = 0; i < sizeof env_table / sizeof *env_table; i++) {
        const char *v = getenv(env_table[i].name);
        if (!v || !*v) continue;
        unsigned long long x = strtoull(v, NULL, 0);
        if (env_table[i].debug_bit) {
            if (x) env.debug |= env_table[i].debug_bit;
        } else if (!strcmp(env_table[i].name, "PYALLOC_HEAP_NO_LFH")) {
            env.no_lfh = x != 0;
        } else {
            env.large_cache = (size_t)x;
        }
    }
}

uint32_t _pa_heap_env_debug(void)
{
    pthread_once(&env_once, env_read);
    return env.debug;
}

size_t _pa_heap_env_large_cache(void)
{
    pthread_once(&env_once, env_read);
    return env.large_cache;
}

int _pa_heap_env_no_lfh(void)
{
    pthread_once(&env_once, env_read);
    return env.no_lfh;
}

/* ------------------------------------------------------------------------------------------ */
/* Fill patterns                                                                               */

#define FILL_NEW 0xBAADF00Du
#define FILL_FREE 0xFEEEFEEEu
#define FILL_TAIL 0xAB
#define TAIL_BYTES 16

/* Writes the 32-bit pattern over [p, p + n), phased on 4-byte addresses. */
static void fill32(void *p, size_t n, uint32_t pattern)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)(pattern >> (8 * (((uintptr_t)(b + i)) & 3)));
}

static int check32(const void *p, size_t n, uint32_t pattern)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(pattern >> (8 * (((uintptr_t)(b + i)) & 3)))) return 0;
    return 1;
}

void _pa_heap_fill_new(pa_heap_t *h, void *user, size_t n, size_t avail)
{
    (void)h;
    fill32(user, n < avail ? n : avail, FILL_NEW);
}

void _pa_heap_fill_tail(void *user, size_t n) { memset((char *)user + n, FILL_TAIL, TAIL_BYTES); }

int _pa_heap_tail_ok(const void *user, size_t n)
{
    const unsigned char *t = (const unsigned char *)user + n;
    for (int i = 0; i < TAIL_BYTES; i++)
        if (t[i] != FILL_TAIL) return 0;
    return 1;
}

void _pa_heap_fill_free(void *from, size_t n) { fill32(from, n, FILL_FREE); }

int _pa_heap_free_fill_ok(const void *from, size_t n) { return check32(from, n, FILL_FREE); }

/* ------------------------------------------------------------------------------------------ */
/* Page heap                                                                                   */

#define PAGE PA_PAGE_SIZE
#define MAX_FREED 256 /* freed blocks whose reservation is kept (use after free faults) */

static DWORD prot_of(const pa_heap_t *h)
{
    return (h->flags & HEAP_CREATE_ENABLE_EXECUTE) ? PAGE_EXECUTE_READWRITE : PAGE_READWRITE;
}

/* Bytes between the user bytes' end and the guard page, filled with FILL_TAIL. */
static size_t suffix_of(const pa_pageblk_t *b)
{
    return (uintptr_t)b + b->reserved - PAGE - (b->user + b->requested);
}

static void release_block(pa_heap_t *h, pa_pageblk_t *b, size_t committed)
{
    size_t reserved = b->reserved;
    DWORD saved = pa_get_last_error();
    if (pa_virtual_free(h->process, b, 0, MEM_RELEASE, PA_OWNER_HEAP)) {
        h->ctr.reserved -= reserved;
        h->ctr.committed -= committed;
    }
    pa_set_last_error(saved);
}

void *_pa_pageheap_alloc_locked(pa_heap_t *h, DWORD flags, size_t n)
{
    size_t data = _pa_align_up(_pa_align_up(n ? n : 1, PA_HEAP_UNIT), PAGE);
    size_t reserved = PAGE + data + PAGE;
    if (n > PA_HEAP_MAX_REQUEST) return NULL;
    pa_pageblk_t *b = pa_virtual_alloc(h->process, NULL, reserved, MEM_RESERVE, prot_of(h), PA_OWNER_HEAP);
    if (!b) return NULL;
    if (!pa_virtual_alloc(h->process, b, PAGE + data, MEM_COMMIT, prot_of(h), PA_OWNER_HEAP)) {
        pa_virtual_free(h->process, b, 0, MEM_RELEASE, PA_OWNER_HEAP);
        return NULL;
    }
    h->ctr.reserved += reserved;
    h->ctr.committed += PAGE + data;
    b->magic = PA_PAGEBLK_MAGIC;
    b->heap = h;
    b->requested = n;
    b->reserved = reserved;
    b->user = (uintptr_t)b + PAGE + data - _pa_align_up(n ? n : 1, PA_HEAP_UNIT);
    b->prev = NULL;
    b->next = h->pages;
    if (b->next) b->next->prev = b;
    h->pages = b;
    h->ctr.page_blocks++;
    h->ctr.busy_blocks++;
    h->ctr.busy_bytes += n;
    if (!(flags & HEAP_ZERO_MEMORY) && (h->debug & PA_HEAP_DEBUG_FREE_CHECK))
        fill32((void *)b->user, n, FILL_NEW);
    memset((char *)b->user + n, FILL_TAIL, suffix_of(b));
    return (void *)b->user;
}

int _pa_pageheap_lookup_locked(pa_heap_t *h, const void *mem, pa_pageblk_t **out)
{
    MEMORY_BASIC_INFORMATION mbi;
    if (pa_nt_query_virtual_memory(h->process, mem, &mbi) != STATUS_SUCCESS || !mbi.AllocationBase)
        return 0;
    pa_pageblk_t *b = mbi.AllocationBase;
    if (pa_nt_query_virtual_memory(h->process, b, &mbi) != STATUS_SUCCESS || mbi.State != MEM_COMMIT ||
        !(mbi.Protect & (PAGE_READWRITE | PAGE_EXECUTE_READWRITE)) || (mbi.Protect & PAGE_GUARD))
        return 0;
    if (b->magic != PA_PAGEBLK_MAGIC || b->heap != h) return 0;
    if (b->freed || b->user != (uintptr_t)mem) return -1; /* double free, or inside a block */
    *out = b;
    return 1;
}

int _pa_pageblk_ok(pa_heap_t *h, const pa_pageblk_t *x, uint32_t freed)
{
    return x && !((uintptr_t)x & (PA_GRANULARITY - 1)) && _pa_heap_readable(h, (uintptr_t)x, sizeof *x) &&
           x->magic == PA_PAGEBLK_MAGIC && x->heap == h && x->freed == freed;
}

/* Are b's tail fill bytes intact? Reads them only where layer 1 says they are readable. */
static int tail_fill_ok(pa_heap_t *h, const pa_pageblk_t *b)
{
    const unsigned char *t = (const unsigned char *)b->user + b->requested;
    size_t n = suffix_of(b);
    if (n && !_pa_heap_readable(h, (uintptr_t)t, n)) return 0;
    for (size_t i = 0; i < n; i++)
        if (t[i] != FILL_TAIL) return 0;
    return 1;
}

int _pa_pageheap_free_locked(pa_heap_t *h, pa_pageblk_t *b)
{
    if (!tail_fill_ok(h, b)) return 0;
    /* The list links are checked before they are written through. */
    if ((b->prev ? !_pa_pageblk_ok(h, b->prev, 0) || b->prev->next != b : h->pages != b) ||
        (b->next && (!_pa_pageblk_ok(h, b->next, 0) || b->next->prev != b)))
        return 0;
    if (b->prev) b->prev->next = b->next;
    else h->pages = b->next;
    if (b->next) b->next->prev = b->prev;
    h->ctr.page_blocks--;
    h->ctr.busy_blocks--;
    h->ctr.busy_bytes -= b->requested;
    size_t data = b->reserved - 2 * PAGE;
    DWORD saved = pa_get_last_error();
    if (pa_virtual_free(h->process, (char *)b + PAGE, data, MEM_DECOMMIT, PA_OWNER_HEAP))
        h->ctr.committed -= data;
    pa_set_last_error(saved);
    b->freed = 1;
    /* Keep the reservation (and header page) so the freed pages fault and a double free is
     * recognised; the oldest are released past MAX_FREED. */
    b->next = NULL;
    b->prev = h->freed_pages_tail;
    if (h->freed_pages_tail) h->freed_pages_tail->next = b;
    else h->freed_pages = b;
    h->freed_pages_tail = b;
    if (++h->nfreed_pages > MAX_FREED) {
        pa_pageblk_t *old = h->freed_pages;
        if (!_pa_pageblk_ok(h, old, 1) || (old->next && !_pa_pageblk_ok(h, old->next, 1))) {
            /* A corrupted queue: forget it (its reservations go with the process). */
            h->freed_pages = h->freed_pages_tail = b;
            b->prev = NULL;
            h->nfreed_pages = 1;
            return 1;
        }
        h->freed_pages = old->next;
        if (h->freed_pages) h->freed_pages->prev = NULL;
        else h->freed_pages_tail = NULL;
        h->nfreed_pages--;
        release_block(h, old, PAGE);
    }
    return 1;
}

/* (A block that fails _pa_pageblk_ok ends its list: the rest goes with the process.) */
void _pa_pageheap_destroy_locked(pa_heap_t *h)
{
    while (h->pages && _pa_pageblk_ok(h, h->pages, 0)) {
        pa_pageblk_t *b = h->pages;
        h->pages = b->next;
        release_block(h, b, b->reserved - PAGE);
    }
    h->pages = NULL;
    while (h->freed_pages && _pa_pageblk_ok(h, h->freed_pages, 1)) {
        pa_pageblk_t *b = h->freed_pages;
        h->freed_pages = b->next;
        release_block(h, b, PAGE);
    }
    h->freed_pages = NULL;
    h->freed_pages_tail = NULL;
    h->nfreed_pages = 0;
}

int _pa_pageheap_validate_locked(pa_heap_t *h, pa_pageblk_t *only)
{
    size_t n = 0;
    for (pa_pageblk_t *b = only ? only : h->pages, *prev = NULL; b; prev = b, b = only ? NULL : b->next) {
        if (!_pa_pageblk_ok(h, b, 0) || (!only && (b->prev != prev || ++n > h->ctr.page_blocks)) ||
            !tail_fill_ok(h, b))
            return 0;
    }
    n = 0;
    for (pa_pageblk_t *b = only ? NULL : h->freed_pages, *prev = NULL; b; prev = b, b = b->next)
        if (!_pa_pageblk_ok(h, b, 1) || b->prev != prev || ++n > h->nfreed_pages) return 0;
    return 1;
}
