/* crt_debug.c: layer 4, the debug CRT heap (UCRT's debug heap, heap.md 1.16 and section 3).
 *
 * Owns debug blocks (_CrtMemBlockHeader + data + 4 bytes of no-man's land, one HeapAlloc on
 * the process heap each), their list, request numbers, fills (0xCD new, 0xDD freed, 0xFD
 * no-man's land, 0xED aligned gap), _crtDbgFlag and the checks it drives, the break allocation,
 * the allocation and report hooks, leak dumps and memory states, and pyalloc's own record of
 * which blocks operator new and new[] allocated (for mismatch reports). State and invariants:
 * crt_internal.h.
 *
 * Where UCRT asserts and, once the assertion is dismissed, goes on with a pointer it has just
 * found bad, pyalloc reports the same assertion and stops there: nothing is read through a
 * pointer until HeapValidate (or pa_heap_find_block) has said it lies in the process heap, and
 * a header whose size disagrees with HeapSize is reported as corruption instead of trusted.
 *
 * Aligned debug block: _malloc_dbg(size + g + m + 2P) (normal block), then at r - g - 2P the
 * pair {base pointer, P bytes of 0xED} below the aligned pointer r (same g, m, r as crt.c).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "crt_internal.h"
#include "os/os.h"

#define HDR sizeof(_CrtMemBlockHeader)
#define NML ((size_t)PA_CRT_NO_MANS_LAND_SIZE)
#define ALIGN_HDR (2 * PA_PTR_SIZE) /* {base pointer, P-byte 0xED gap} */
#define VALID_FLAGS                                                                              \
    (_CRTDBG_ALLOC_MEM_DF | _CRTDBG_DELAY_FREE_MEM_DF | _CRTDBG_CHECK_ALWAYS_DF |                \
     _CRTDBG_CHECK_CRT_DF | _CRTDBG_LEAK_CHECK_DF)
#define FAMILY_REALLOC 3 /* a pseudo family naming realloc in mismatch reports */

_Static_assert(sizeof(_CrtMemBlockHeader) == 48, "x64 _CrtMemBlockHeader is 48 bytes");
_Static_assert(offsetof(_CrtMemBlockHeader, data_size) == 32, "x64 layout");
_Static_assert(offsetof(_CrtMemBlockHeader, request) == 40, "x64 layout");
_Static_assert(offsetof(_CrtMemBlockHeader, gap) == 44, "x64 layout");

static const char *const use_names[_MAX_BLOCKS] = {"Free", "Normal", "CRT", "Ignore", "Client"};
static const char *const alloc_names[] = {"malloc", "operator new", "operator new[]"};
static const char *const free_names[] = {"free", "operator delete", "operator delete[]", "realloc"};

static unsigned char *data_of(_CrtMemBlockHeader *h) { return (unsigned char *)(h + 1); }
static _CrtMemBlockHeader *header_of(const void *block)
{
    return (_CrtMemBlockHeader *)((uintptr_t)block - HDR);
}

static int block_type_valid(int use)
{
    return _BLOCK_TYPE(use) == _CLIENT_BLOCK || _BLOCK_TYPE(use) == _CRT_BLOCK ||
           use == _NORMAL_BLOCK || use == _IGNORE_BLOCK;
}

static int check_bytes(const unsigned char *p, unsigned char value, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != value) return 0;
    return 1;
}

/* ------------------------------------------------------------------------------------------ */
/* Reports                                                                                    */

static void vreport(pa_process_t *p, pa_crt_t *c, int type, int kind, void *block, long request,
                    const char *fmt, va_list ap)
{
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    pthread_mutex_lock(&c->lock);
    c->reports[type]++;
    if (kind == PA_CRT_REPORT_MISMATCH || kind == PA_CRT_REPORT_ALIGNED) c->mismatches++;
    pa_crt_report_hook_t hook = c->report_hook;
    void *ctx = c->report_hook_ctx;
    pa_crt_report_t r = {type, kind, msg, block, request};
    if (!hook || !hook(p, &r, ctx)) fputs(msg, stderr);
    pthread_mutex_unlock(&c->lock);
}

__attribute__((format(printf, 7, 8))) static void
report(pa_process_t *p, pa_crt_t *c, int type, int kind, void *block, long request,
       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(p, c, type, kind, block, request, fmt, ap);
    va_end(ap);
}

/* A failed _ASSERTE of the debug heap, with the expression UCRT's assertion shows. */
static void report_assert(pa_process_t *p, pa_crt_t *c, const char *expr, const void *block)
{
    report(p, c, _CRT_ASSERT, PA_CRT_REPORT_BAD_POINTER, (void *)block, 0,
           "Debug Assertion Failed!\nExpression: %s\n(block at 0x%016" PRIXPTR ")\n", expr,
           (uintptr_t)block);
}

/* Text is written to sink, or reported as _CRT_WARN of the given kind. */
__attribute__((format(printf, 6, 7))) static void
emit(pa_process_t *p, pa_crt_t *c, pa_crt_sink_t sink, void *ctx, int kind, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (sink) {
        char line[512];
        vsnprintf(line, sizeof line, fmt, ap);
        sink(line, ctx);
    } else {
        vreport(p, c, _CRT_WARN, kind, NULL, 0, fmt, ap);
    }
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* Checked access to blocks                                                                   */

static HANDLE crt_heap(pa_process_t *p) { return pa_heap_get_process_heap(p); }

/* _CrtIsValidHeapPointer: block's header is a busy block of the process heap. */
static int valid_heap_pointer(pa_process_t *p, const void *block)
{
    HANDLE h;
    return block && (uintptr_t)block > HDR && (h = crt_heap(p)) != NULL &&
           pa_heap_validate(p, h, 0, header_of(block));
}

static int name_known(const pa_crt_t *c, const char *file);

/* The check every header passes before the CRT trusts it (free, realloc, _msize, the checks,
 * dumps and walks of the list): valid_heap_pointer, the header's size agrees with the heap
 * block's, and its file name is one the CRT stored (name_known), so that it may be printed. */
static int header_sound(pa_process_t *p, pa_crt_t *c, const void *block)
{
    if (!valid_heap_pointer(p, block)) return 0;
    _CrtMemBlockHeader *h = header_of(block);
    size_t n = pa_heap_size(p, crt_heap(p), 0, h);
    return n != (size_t)-1 && n >= HDR + NML && h->data_size == n - HDR - NML &&
           name_known(c, h->file_name);
}

/* [a, a + n) lies in the user bytes of one busy block of the process heap. */
static int readable(pa_process_t *p, uintptr_t a, size_t n)
{
    HANDLE heap = NULL;
    return a > PA_PAGE_SIZE && pa_heap_find_block(p, (const void *)a, n, &heap, NULL, NULL) ==
                                   STATUS_SUCCESS &&
           heap == crt_heap(p);
}

/* The P bytes below block, rounded down to P, hold 0xED: an aligned debug pointer. (UCRT's
 * test masks with ~P - 1 where ~(P - 1) is meant; pyalloc uses the latter.) */
static int is_aligned_block(pa_process_t *p, const void *block)
{
    uintptr_t gap = ((uintptr_t)block & ~(PA_PTR_SIZE - 1)) - PA_PTR_SIZE;
    return readable(p, gap, PA_PTR_SIZE) &&
           check_bytes((const unsigned char *)gap, PA_CRT_ALIGN_FILL, PA_PTR_SIZE);
}

/* The {base, gap} pair below aligned pointer block, or NULL if it is not readable. */
static uintptr_t *align_header(pa_process_t *p, const void *block)
{
    uintptr_t a = ((uintptr_t)block & ~(PA_PTR_SIZE - 1)) - ALIGN_HDR;
    return readable(p, a, ALIGN_HDR) ? (uintptr_t *)a : NULL;
}

/* The list links of h agree with its neighbours (checked before unlinking). */
static int links_sound(pa_process_t *p, pa_crt_t *c, _CrtMemBlockHeader *h)
{
    if (h->prev ? !valid_heap_pointer(p, data_of(h->prev)) || h->prev->next != h : c->first != h)
        return 0;
    if (h->next ? !valid_heap_pointer(p, data_of(h->next)) || h->next->prev != h : c->last != h)
        return 0;
    return 1;
}

static void unlink_locked(pa_crt_t *c, _CrtMemBlockHeader *h)
{
    c->listed--;
    if (h->next) h->next->prev = h->prev;
    else c->last = h->prev;
    if (h->prev) h->prev->next = h->next;
    else c->first = h->next;
}

/* Puts h first in the list. A head that is no longer a sound header (its heap block was freed
 * or rewritten behind the CRT's back: HeapFree of a debug block's base, a header whose block
 * type was rewritten so that free skipped the unlinking) is not written through: the list is
 * reported and started afresh, the blocks on it untracked from then on. */
static void link_first_locked(pa_process_t *p, pa_crt_t *c, _CrtMemBlockHeader *h)
{
    if (c->first && !header_sound(p, c, data_of(c->first))) {
        report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, data_of(c->first), 0,
               "Bad memory block found at 0x%016" PRIXPTR ".\n", (uintptr_t)c->first);
        c->first = c->last = NULL;
        c->listed = 0;
    }
    c->listed++;
    h->prev = NULL;
    h->next = c->first;
    if (c->first) c->first->prev = h;
    else c->last = h;
    c->first = h;
}

/* ------------------------------------------------------------------------------------------ */
/* The family and file name tables (crt_internal.h)                                            */

static size_t tab_slot(uintptr_t key, size_t mask)
{
    uint64_t k = (uint64_t)(key >> 4) * 0x9E3779B97F4A7C15ull;
    return (size_t)(k >> 32) & mask;
}

static size_t tab_bytes(size_t cap) { return cap * 2 * sizeof(uintptr_t); }

static int tab_find(const pa_crt_table_t *t, uintptr_t key, size_t *at)
{
    if (!t->cap) return 0;
    size_t mask = t->cap - 1;
    for (size_t i = tab_slot(key, mask);; i = (i + 1) & mask) {
        if (t->keys[i] == key) return *at = i, 1;
        if (!t->keys[i]) return 0;
    }
}

static void tab_del(pa_crt_table_t *t, uintptr_t key)
{
    size_t i;
    if (!tab_find(t, key, &i)) return;
    size_t mask = t->cap - 1;
    for (size_t j = i;;) { /* backward shift: no tombstones */
        j = (j + 1) & mask;
        if (!t->keys[j]) break;
        size_t k = tab_slot(t->keys[j], mask);
        int stays = i < j ? (k > i && k <= j) : (k > i || k <= j);
        if (!stays) {
            t->keys[i] = t->keys[j];
            t->vals[i] = t->vals[j];
            i = j;
        }
    }
    t->keys[i] = 0;
    t->count--;
}

/* Sets key's value; -1 when the host is out of memory (nothing changed). */
static int tab_put(pa_crt_table_t *t, uintptr_t key, uintptr_t val)
{
    size_t i;
    if (tab_find(t, key, &i)) {
        t->vals[i] = val;
        return 0;
    }
    if ((t->count + 1) * 2 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        uintptr_t *keys = _pa_os_alloc(tab_bytes(cap));
        if (!keys) return -1;
        uintptr_t *vals = keys + cap;
        for (size_t j = 0; j < t->cap; j++) {
            if (!t->keys[j]) continue;
            size_t k = tab_slot(t->keys[j], cap - 1);
            while (keys[k]) k = (k + 1) & (cap - 1);
            keys[k] = t->keys[j];
            vals[k] = t->vals[j];
        }
        if (t->keys) _pa_os_free(t->keys, tab_bytes(t->cap));
        t->keys = keys;
        t->vals = vals;
        t->cap = cap;
    }
    size_t mask = t->cap - 1, k = tab_slot(key, mask);
    while (t->keys[k]) k = (k + 1) & mask;
    t->keys[k] = key;
    t->vals[k] = val;
    t->count++;
    return 0;
}

static void tab_free(pa_crt_table_t *t)
{
    if (t->keys) _pa_os_free(t->keys, tab_bytes(t->cap));
    memset(t, 0, sizeof *t);
}

static int fam_get(const pa_crt_table_t *t, const void *block)
{
    size_t i;
    return tab_find(t, (uintptr_t)block, &i) ? (int)t->vals[i] : PA_CRT_FAMILY_MALLOC;
}

static void fam_del(pa_crt_table_t *t, const void *block) { tab_del(t, (uintptr_t)block); }

/* Records block's family (MALLOC removes the entry). On host memory exhaustion the record is
 * dropped: the block then reads as a malloc block. */
static void fam_set(pa_crt_table_t *t, const void *block, int family)
{
    if (family == PA_CRT_FAMILY_MALLOC) fam_del(t, block);
    else tab_put(t, (uintptr_t)block, (uintptr_t)family);
}

/* File names. A header is user data to the heap, so Python can overwrite its file_name with
 * any pointer; the CRT therefore dereferences a header's file_name only if it is one the CRT
 * itself stored in a listed header (header_sound checks this). The caller keeps a name valid
 * while its block lives (pyalloc.h; Python's names are interned for good), so the table counts
 * the listed headers that hold each name and forgets a name with its last block: a name whose
 * blocks are gone may have been freed by its owner. */

/* The name to store in a new listed header for file: file, counted (NULL when the host is out
 * of memory: the block then has no call site rather than one that could not be checked). */
static const char *name_ref(pa_crt_t *c, const char *file)
{
    size_t i;
    if (!file) return NULL;
    if (tab_find(&c->names, (uintptr_t)file, &i)) return c->names.vals[i]++, file;
    return tab_put(&c->names, (uintptr_t)file, 1) ? NULL : file;
}

/* A listed header holding file goes away (freed, or its name replaced by realloc). */
static void name_unref(pa_crt_t *c, const char *file)
{
    size_t i;
    if (file && tab_find(&c->names, (uintptr_t)file, &i) && !--c->names.vals[i])
        tab_del(&c->names, (uintptr_t)file);
}

static int name_known(const pa_crt_t *c, const char *file)
{
    size_t i;
    return !file || tab_find(&c->names, (uintptr_t)file, &i);
}

static void report_mismatch_locked(pa_process_t *p, pa_crt_t *c, _CrtMemBlockHeader *h,
                                   int allocated, int released)
{
    if (h->file_name)
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_MISMATCH, data_of(h), h->request,
               "pyalloc: mismatched deallocation: %s block (#%ld) at 0x%016" PRIXPTR
               " was allocated by %s and released by %s.\n\nMemory allocated at %s(%d).\n",
               use_names[_BLOCK_TYPE(h->block_use) % _MAX_BLOCKS], (long)h->request,
               (uintptr_t)data_of(h), alloc_names[allocated], free_names[released], h->file_name,
               h->line);
    else
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_MISMATCH, data_of(h), h->request,
               "pyalloc: mismatched deallocation: %s block (#%ld) at 0x%016" PRIXPTR
               " was allocated by %s and released by %s.\n",
               use_names[_BLOCK_TYPE(h->block_use) % _MAX_BLOCKS], (long)h->request,
               (uintptr_t)data_of(h), alloc_names[allocated], free_names[released]);
}

void _pa_crt_dbg_report_mismatch(pa_process_t *p, pa_crt_t *c, void *block, int allocated,
                                 int released)
{
    pthread_mutex_lock(&c->lock);
    if (header_sound(p, c, block)) {
        report_mismatch_locked(p, c, header_of(block), allocated, released);
    } else {
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_MISMATCH, block, 0,
               "pyalloc: mismatched deallocation: the block at 0x%016" PRIXPTR
               " was allocated by %s and released by %s.\n",
               (uintptr_t)block, alloc_names[allocated], free_names[released]);
    }
    pthread_mutex_unlock(&c->lock);
}

int _pa_crt_dbg_family(pa_process_t *p, pa_crt_t *c, const void *block)
{
    int f = -1;
    pthread_mutex_lock(&c->lock);
    if (header_sound(p, c, block)) {
        int use = header_of(block)->block_use;
        if (block_type_valid(use)) f = fam_get(&c->families, block);
    } else if (is_aligned_block(p, block)) {
        uintptr_t *ah = align_header(p, block);
        if (ah && header_sound(p, c, (void *)ah[0])) f = fam_get(&c->families, (void *)ah[0]);
    }
    pthread_mutex_unlock(&c->lock);
    return f;
}

/* ------------------------------------------------------------------------------------------ */
/* Setup, flags and periodic checks                                                           */

static void set_flag_locked(pa_crt_t *c, int flags)
{
    c->check_frequency = (flags & _CRTDBG_CHECK_ALWAYS_DF) ? 1 : ((unsigned)flags >> 16) & 0xFFFF;
    c->check_counter = 0;
    c->dbg_flag = flags;
}

void _pa_crt_dbg_init(pa_crt_t *c, const pa_crt_options_t *o)
{
    c->next_request = 1;
    c->break_alloc = (LONG)o->break_alloc;
    int flags = _CRTDBG_ALLOC_MEM_DF | _CRTDBG_CHECK_DEFAULT_DF;
    if (o->dbg_flag >= 0) flags = o->dbg_flag & (VALID_FLAGS | (int)0xFFFF0000);
    set_flag_locked(c, flags);
}

void _pa_crt_dbg_destroy(pa_process_t *p, pa_crt_t *c)
{
    (void)p;
    tab_free(&c->families);
    tab_free(&c->names);
    c->first = c->last = NULL;
    c->listed = 0;
}

static int check_memory_locked(pa_process_t *p, pa_crt_t *c);

/* UCRT's validate_heap_if_required: every check_frequency-th call runs _CrtCheckMemory and
 * asserts on its result. */
static void validate_if_required_locked(pa_process_t *p, pa_crt_t *c)
{
    if (!c->check_frequency) return;
    if (c->check_counter != c->check_frequency - 1) {
        c->check_counter++;
        return;
    }
    if (c->checking) return;
    c->checking = 1;
    if (!check_memory_locked(p, c))
        report(p, c, _CRT_ASSERT, PA_CRT_REPORT_CORRUPTION, NULL, 0,
               "Debug Assertion Failed!\nExpression: _CrtCheckMemory()\n");
    c->checking = 0;
    c->check_counter = 0;
}

/* The break allocation (_CrtDbgBreak). */
static void break_if_requested_locked(pa_process_t *p, pa_crt_t *c, LONG request)
{
    if (c->break_alloc == -1 || request != c->break_alloc) return;
    c->break_hits++;
    if (c->break_hook)
        c->break_hook(p, request, c->break_hook_ctx);
    else
        report(p, c, _CRT_WARN, PA_CRT_REPORT_BREAK, NULL, request,
               "pyalloc: _CrtDbgBreak: allocation request {%ld} (_CrtSetBreakAlloc)\n",
               (long)request);
}

static int hook_refuses_locked(pa_process_t *p, pa_crt_t *c, int op, void *block, size_t size,
                               int use, LONG request, const char *file, int line)
{
    return c->alloc_hook &&
           !c->alloc_hook(p, op, block, size, use, request, file, line, c->alloc_hook_ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* Allocation                                                                                  */

/* UCRT's heap_alloc_dbg_internal: one attempt, without the new handler. */
static void *alloc_once_locked(pa_process_t *p, pa_crt_t *c, size_t size, int use,
                               const char *file, int line, int family)
{
    validate_if_required_locked(p, c);
    LONG request = c->next_request;
    break_if_requested_locked(p, c, request);
    if (hook_refuses_locked(p, c, _HOOK_ALLOC, NULL, size, use, request, file, line)) {
        if (file)
            report(p, c, _CRT_WARN, PA_CRT_REPORT_OTHER, NULL, request,
                   "Client hook allocation failure at file %s line %d.\n", file, line);
        else
            report(p, c, _CRT_WARN, PA_CRT_REPORT_OTHER, NULL, request,
                   "Client hook allocation failure.\n");
        return NULL;
    }
    int ignore = _BLOCK_TYPE(use) != _CRT_BLOCK && !(c->dbg_flag & _CRTDBG_ALLOC_MEM_DF);
    if (size > _HEAP_MAXREQ - NML - HDR) return errno = ENOMEM, NULL;
    if (!block_type_valid(use))
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_OTHER, NULL, request,
               "Error: memory allocation: bad memory block type.\n");
    HANDLE heap = crt_heap(p);
    _CrtMemBlockHeader *h = heap ? pa_heap_alloc(p, heap, 0, HDR + size + NML) : NULL;
    if (!h) return errno = ENOMEM, NULL;
    _pa_crt_mark_used(c);
    c->next_request++;
    if (ignore) {
        h->next = h->prev = NULL;
        h->file_name = NULL;
        h->line = PA_CRT_IGNORE_LINE;
        h->data_size = size;
        h->block_use = _IGNORE_BLOCK;
        h->request = 0;
    } else {
        c->total = SIZE_MAX - c->total > size ? c->total + size : SIZE_MAX;
        c->current += size;
        if (c->current > c->max_current) c->max_current = c->current;
        link_first_locked(p, c, h);
        h->file_name = name_ref(c, file);
        h->line = line;
        h->data_size = size;
        h->block_use = use;
        h->request = request;
    }
    memset(h->gap, PA_CRT_NO_MANS_LAND_FILL, NML);
    memset(data_of(h) + size, PA_CRT_NO_MANS_LAND_FILL, NML);
    memset(data_of(h), PA_CRT_CLEAN_FILL, size);
    fam_set(&c->families, data_of(h), family);
    return data_of(h);
}

void *_pa_crt_dbg_malloc(pa_process_t *p, pa_crt_t *c, size_t size, int use, const char *file,
                         int line, int family)
{
    int new_mode = atomic_load(&c->new_mode) != 0;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        void *b = alloc_once_locked(p, c, size, use, file, line, family);
        pthread_mutex_unlock(&c->lock);
        if (b) return b;
        if (!new_mode || !pa_crt_callnewh(p, size)) return errno = ENOMEM, NULL;
    }
}

void *_pa_crt_dbg_calloc(pa_process_t *p, pa_crt_t *c, size_t count, size_t size, int use,
                         const char *file, int line)
{
    if (count && _HEAP_MAXREQ / count < size) return errno = ENOMEM, NULL;
    size_t n = count * size;
    void *b = _pa_crt_dbg_malloc(p, c, n, use, file, line, PA_CRT_FAMILY_MALLOC);
    if (b) memset(b, 0, n); /* exactly n bytes (fact 89) */
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* Free                                                                                       */

/* Checks both no-man's lands of h, reporting each damaged one as type; returns how many. */
static int check_gaps_locked(pa_process_t *p, pa_crt_t *c, _CrtMemBlockHeader *h, int type)
{
    int bad = 0;
    static const char *const where[2] = {"before", "after"};
    static const char *const what[2] = {"before start", "after end"};
    const unsigned char *gaps[2] = {h->gap, data_of(h) + h->data_size};
    for (int i = 0; i < 2; i++) {
        if (check_bytes(gaps[i], PA_CRT_NO_MANS_LAND_FILL, NML)) continue;
        bad++;
        const char *name = block_type_valid(h->block_use) || h->block_use == _FREE_BLOCK
                               ? use_names[_BLOCK_TYPE(h->block_use)]
                               : "DAMAGED";
        if (h->file_name)
            report(p, c, type, PA_CRT_REPORT_CORRUPTION, data_of(h), h->request,
                   "HEAP CORRUPTION DETECTED: %s %s block (#%ld) at 0x%016" PRIXPTR ".\n"
                   "CRT detected that the application wrote to memory %s of heap buffer.\n"
                   "\nMemory allocated at %s(%d).\n",
                   where[i], name, (long)h->request, (uintptr_t)data_of(h), what[i], h->file_name,
                   h->line);
        else
            report(p, c, type, PA_CRT_REPORT_CORRUPTION, data_of(h), h->request,
                   "HEAP CORRUPTION DETECTED: %s %s block (#%ld) at 0x%016" PRIXPTR ".\n"
                   "CRT detected that the application wrote to memory %s of heap buffer.\n",
                   where[i], name, (long)h->request, (uintptr_t)data_of(h), what[i]);
    }
    return bad;
}

static void report_damaged_header(pa_process_t *p, pa_crt_t *c, const void *block)
{
    report(p, c, _CRT_ERROR, PA_CRT_REPORT_CORRUPTION, (void *)block, 0,
           "HEAP CORRUPTION DETECTED: the debug header of the block at 0x%016" PRIXPTR
           " is damaged (pyalloc: its size, links or file name disagree with the heap and the"
           " CRT).\n",
           (uintptr_t)block);
}

/* UCRT's free_dbg_nolock; use is the caller's block use (resolved from the header for
 * _UNKNOWN_BLOCK), family how the caller releases. */
static void free_locked(pa_process_t *p, pa_crt_t *c, void *block, int use, int family)
{
    validate_if_required_locked(p, c);
    if (!block) return;
    int valid = valid_heap_pointer(p, block);
    if (use == _UNKNOWN_BLOCK && valid) use = header_of(block)->block_use;
    /* MSVC checks the aligned gap for free (_NORMAL_BLOCK); pyalloc also for a delete of a
     * pointer that is no debug block, which would otherwise read a header that is not one. */
    if ((use == _NORMAL_BLOCK || !valid) && is_aligned_block(p, block)) {
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_ALIGNED, block, 0,
               "The Block at 0x%016" PRIXPTR
               " was allocated by aligned routines, use _aligned_free()\n",
               (uintptr_t)block);
        errno = EINVAL;
        return;
    }
    if (hook_refuses_locked(p, c, _HOOK_FREE, block, 0, use, 0, NULL, 0)) {
        report(p, c, _CRT_WARN, PA_CRT_REPORT_OTHER, block, 0, "Client hook free failure.\n");
        return;
    }
    if (!valid) {
        report_assert(p, c, "_CrtIsValidHeapPointer(block)", block);
        return;
    }
    _CrtMemBlockHeader *h = header_of(block);
    if (!header_sound(p, c, block)) {
        report_damaged_header(p, c, block);
        return;
    }
    if (!block_type_valid(h->block_use)) { /* a delay-freed block freed again */
        report_assert(p, c, "is_block_type_valid(header->_block_use)", block);
        return;
    }
    if (!(c->dbg_flag & _CRTDBG_CHECK_ALWAYS_DF)) check_gaps_locked(p, c, h, _CRT_ERROR);
    int allocated = fam_get(&c->families, block);
    fam_del(&c->families, block);
    if (h->block_use == _IGNORE_BLOCK && !links_sound(p, c, h)) { /* not listed */
        if (allocated != family) report_mismatch_locked(p, c, h, allocated, family);
        name_unref(c, h->file_name); /* NULL unless _CrtSetDbgBlockType made it an ignore block */
        memset(h, PA_CRT_DEAD_FILL, HDR + h->data_size + NML);
        _pa_crt_free_base(p, h);
        return;
    }
    if (!(h->block_use == use || (h->block_use == _CRT_BLOCK && use == _NORMAL_BLOCK)))
        report_assert(p, c,
                      "header->_block_use == block_use || header->_block_use == _CRT_BLOCK && "
                      "block_use == _NORMAL_BLOCK",
                      block);
    if (allocated != family) report_mismatch_locked(p, c, h, allocated, family);
    if (!links_sound(p, c, h)) {
        report_damaged_header(p, c, block);
        return;
    }
    c->current -= h->data_size;
    if (!(c->dbg_flag & _CRTDBG_DELAY_FREE_MEM_DF)) {
        unlink_locked(c, h);
        name_unref(c, h->file_name);
        memset(h, PA_CRT_DEAD_FILL, HDR + h->data_size + NML);
        _pa_crt_free_base(p, h);
    } else {
        h->block_use = _FREE_BLOCK;
        memset(data_of(h), PA_CRT_DEAD_FILL, h->data_size);
    }
}

void _pa_crt_dbg_free(pa_process_t *p, pa_crt_t *c, void *block, int use, int family)
{
    pthread_mutex_lock(&c->lock);
    free_locked(p, c, block, use, family);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------------------------------ */
/* Realloc, expand, msize                                                                     */

/* UCRT's realloc_dbg_nolock: may_move 1 for realloc, 0 for _expand (whose *size becomes what
 * the heap really kept). */
static void *realloc_locked(pa_process_t *p, pa_crt_t *c, void *block, size_t *size, int use,
                            const char *file, int line, int may_move)
{
    if (!block) return _pa_crt_dbg_malloc(p, c, *size, use, file, line, PA_CRT_FAMILY_MALLOC);
    if (may_move && !*size) {
        free_locked(p, c, block, use, PA_CRT_FAMILY_MALLOC);
        return NULL;
    }
    validate_if_required_locked(p, c);
    LONG request = c->next_request;
    break_if_requested_locked(p, c, request);
    if (hook_refuses_locked(p, c, _HOOK_REALLOC, block, *size, use, request, file, line)) {
        if (file)
            report(p, c, _CRT_WARN, PA_CRT_REPORT_OTHER, block, request,
                   "Client hook re-allocation failure at file %s line %d.\n", file, line);
        else
            report(p, c, _CRT_WARN, PA_CRT_REPORT_OTHER, block, request,
                   "Client hook re-allocation failure.\n");
        return NULL;
    }
    int valid = valid_heap_pointer(p, block);
    if (use != _NORMAL_BLOCK && _BLOCK_TYPE(use) != _CLIENT_BLOCK && _BLOCK_TYPE(use) != _CRT_BLOCK) {
        if (file)
            report(p, c, _CRT_ERROR, PA_CRT_REPORT_OTHER, block, request,
                   "Error: memory allocation: bad memory block type.\n"
                   "\nMemory allocated at %s(%d).\n", file, line);
        else
            report(p, c, _CRT_ERROR, PA_CRT_REPORT_OTHER, block, request,
                   "Error: memory allocation: bad memory block type.\n");
    } else if (!valid && is_aligned_block(p, block)) {
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_ALIGNED, block, 0,
               "The Block at 0x%016" PRIXPTR
               " was allocated by aligned routines, use _aligned_realloc()\n",
               (uintptr_t)block);
        return errno = EINVAL, NULL;
    }
    if (!valid) {
        report_assert(p, c, "_CrtIsValidHeapPointer(block)", block);
        return errno = EINVAL, NULL;
    }
    if (!header_sound(p, c, block)) {
        report_damaged_header(p, c, block);
        return errno = EINVAL, NULL;
    }
    _CrtMemBlockHeader *old = header_of(block);
    /* Unlisted: an ignore block that is not on the list (its type is user-writable). */
    int ignore = old->block_use == _IGNORE_BLOCK && !links_sound(p, c, old);
    if (!block_type_valid(old->block_use)) {
        report_assert(p, c, "is_block_type_valid(header->_block_use)", block);
        return errno = EINVAL, NULL;
    }
    if (!ignore && c->total < old->data_size) {
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_CORRUPTION, block, old->request,
               "Error: possible heap corruption at or near 0x%016" PRIXPTR "\n",
               (uintptr_t)block);
        return errno = EINVAL, NULL;
    }
    if (!ignore && !links_sound(p, c, old)) {
        report_damaged_header(p, c, block);
        return errno = EINVAL, NULL;
    }
    if (*size > _HEAP_MAXREQ - NML - HDR) return errno = ENOMEM, NULL;
    int family = fam_get(&c->families, block);
    if (family != PA_CRT_FAMILY_MALLOC) report_mismatch_locked(p, c, old, family, FAMILY_REALLOC);
    size_t old_size = old->data_size;
    _CrtMemBlockHeader *nh;
    if (may_move) {
        nh = _pa_crt_realloc_base(p, c, old, HDR + *size + NML);
        if (!nh) return NULL;
    } else {
        nh = _pa_crt_expand_base(p, c, old, HDR + *size + NML);
        if (!nh) return NULL;
        *size = pa_heap_size(p, crt_heap(p), 0, nh) - HDR - NML; /* the LFH may keep the size */
    }
    c->next_request++;
    if (!ignore) {
        if (c->total < SIZE_MAX) {
            c->total -= old_size;
            c->total += SIZE_MAX - c->total > *size ? *size : SIZE_MAX;
        }
        c->current = c->current - old_size + *size;
        if (c->current > c->max_current) c->max_current = c->current;
    }
    unsigned char *data = data_of(nh);
    if (*size > old_size) memset(data + old_size, PA_CRT_CLEAN_FILL, *size - old_size);
    memset(data + *size, PA_CRT_NO_MANS_LAND_FILL, NML);
    if (!ignore) {
        const char *name = name_ref(c, file);
        name_unref(c, nh->file_name);
        nh->file_name = name;
        nh->line = line;
        nh->request = request;
    }
    nh->data_size = *size;
    if (nh != old && family != PA_CRT_FAMILY_MALLOC) {
        fam_del(&c->families, block);
        fam_set(&c->families, data, family);
    }
    if (nh == old || ignore) return data;
    /* The heap moved the block with its links: relink it first in the list. */
    unlink_locked(c, nh);
    link_first_locked(p, c, nh);
    return data;
}

void *_pa_crt_dbg_realloc(pa_process_t *p, pa_crt_t *c, void *block, size_t size, int use,
                          const char *file, int line)
{
    pthread_mutex_lock(&c->lock);
    void *r = realloc_locked(p, c, block, &size, use, file, line, 1);
    pthread_mutex_unlock(&c->lock);
    return r;
}

void *_pa_crt_dbg_expand(pa_process_t *p, pa_crt_t *c, void *block, size_t size, int use,
                         const char *file, int line)
{
    if (!block) {
        _pa_crt_invalid_parameter(p, c, "_expand_dbg", EINVAL);
        return NULL;
    }
    if (size > _HEAP_MAXREQ - NML - HDR) return errno = ENOMEM, NULL;
    pthread_mutex_lock(&c->lock);
    void *r = realloc_locked(p, c, block, &size, use, file, line, 0);
    pthread_mutex_unlock(&c->lock);
    return r;
}

size_t _pa_crt_dbg_msize(pa_process_t *p, pa_crt_t *c, void *block)
{
    if (!block) {
        _pa_crt_invalid_parameter(p, c, "_msize_dbg", EINVAL);
        return (size_t)-1;
    }
    size_t n = (size_t)-1;
    pthread_mutex_lock(&c->lock);
    validate_if_required_locked(p, c);
    if (!valid_heap_pointer(p, block)) {
        report_assert(p, c, "_CrtIsValidHeapPointer(block)", block);
        errno = EINVAL;
    } else if (!header_sound(p, c, block)) {
        report_damaged_header(p, c, block);
        errno = EINVAL;
    } else if (!block_type_valid(header_of(block)->block_use)) {
        report_assert(p, c, "is_block_type_valid(header->_block_use)", block);
        errno = EINVAL;
    } else {
        n = header_of(block)->data_size;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

void *_pa_crt_dbg_recalloc(pa_process_t *p, pa_crt_t *c, void *block, size_t count, size_t size,
                           int use, const char *file, int line)
{
    if (count && _HEAP_MAXREQ / count < size) return errno = ENOMEM, NULL;
    size_t old = block ? _pa_crt_dbg_msize(p, c, block) : 0;
    if (old == (size_t)-1) return NULL;
    size_t n = count * size;
    void *r = _pa_crt_dbg_realloc(p, c, block, n, use, file, line);
    if (r && old < n) memset((char *)r + old, 0, n - old);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Aligned blocks                                                                             */

static int is_pow2(size_t x) { return x && !(x & (x - 1)); }

void *_pa_crt_dbg_aligned_malloc(pa_process_t *p, pa_crt_t *c, size_t size, size_t align,
                                 size_t offset, const char *file, int line, int family)
{
    if (!is_pow2(align) || (offset && offset >= size)) {
        _pa_crt_invalid_parameter(p, c, "_aligned_offset_malloc_dbg", EINVAL);
        return NULL;
    }
    size_t m = (align > PA_PTR_SIZE ? align : PA_PTR_SIZE) - 1;
    size_t gap = (0 - offset) & (PA_PTR_SIZE - 1);
    size_t nonuser = gap + m + ALIGN_HDR;
    if (size + nonuser < size) return errno = ENOMEM, NULL;
    uintptr_t base =
        (uintptr_t)_pa_crt_dbg_malloc(p, c, size + nonuser, _NORMAL_BLOCK, file, line, family);
    if (!base) return NULL;
    uintptr_t r = ((base + nonuser + offset) & ~(uintptr_t)m) - offset;
    uintptr_t *ah = (uintptr_t *)(r - gap - ALIGN_HDR);
    ah[0] = base;
    memset(&ah[1], PA_CRT_ALIGN_FILL, PA_PTR_SIZE);
    return (void *)r;
}

/* The base debug block under aligned pointer block, after UCRT's checks; 0 (reported) when
 * block is not an aligned debug block. what names the right routine for the message. */
static uintptr_t aligned_base_locked(pa_process_t *p, pa_crt_t *c, void *block, const char *what)
{
    uintptr_t tail = (uintptr_t)block - NML;
    if (readable(p, tail, NML) &&
        check_bytes((const unsigned char *)tail, PA_CRT_NO_MANS_LAND_FILL, NML)) {
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_ALIGNED, block, 0,
               "The block at 0x%016" PRIXPTR " was not allocated by _aligned routines, use %s\n",
               (uintptr_t)block, what);
        return 0;
    }
    uintptr_t *ah = align_header(p, block);
    if (!ah || !header_sound(p, c, (void *)ah[0])) {
        report_assert(p, c, "_CrtIsValidHeapPointer(block)", block);
        return 0;
    }
    if (!check_bytes((const unsigned char *)&ah[1], PA_CRT_ALIGN_FILL, PA_PTR_SIZE))
        report(p, c, _CRT_ERROR, PA_CRT_REPORT_CORRUPTION, block, 0,
               "Damage before 0x%016" PRIXPTR " which was allocated by aligned routine\n",
               (uintptr_t)block);
    return ah[0];
}

void _pa_crt_dbg_aligned_free(pa_process_t *p, pa_crt_t *c, void *block, int family)
{
    if (!block) return;
    pthread_mutex_lock(&c->lock);
    uintptr_t base = aligned_base_locked(p, c, block, "free()");
    if (base) free_locked(p, c, (void *)base, _NORMAL_BLOCK, family);
    pthread_mutex_unlock(&c->lock);
}

size_t _pa_crt_dbg_aligned_msize(pa_process_t *p, pa_crt_t *c, void *block, size_t align,
                                 size_t offset)
{
    if (!block) {
        _pa_crt_invalid_parameter(p, c, "_aligned_msize_dbg", EINVAL);
        return (size_t)-1;
    }
    pthread_mutex_lock(&c->lock);
    uintptr_t *ah = align_header(p, block);
    uintptr_t base = ah && header_sound(p, c, (void *)ah[0]) ? ah[0] : 0;
    size_t total = base ? header_of((void *)base)->data_size : 0;
    pthread_mutex_unlock(&c->lock);
    if (!base) return errno = EINVAL, (size_t)-1;
    size_t header = (uintptr_t)block - base;
    size_t gap = (0 - offset) & (PA_PTR_SIZE - 1);
    size_t m = (align > PA_PTR_SIZE ? align : PA_PTR_SIZE) - 1;
    size_t footer = gap + m + ALIGN_HDR - header;
    return total - header - footer;
}

/* UCRT's _aligned_offset_realloc_dbg: always a new block (no _expand), data copied. */
void *_pa_crt_dbg_aligned_realloc(pa_process_t *p, pa_crt_t *c, void *block, size_t size,
                                  size_t align, size_t offset, const char *file, int line)
{
    if (!block)
        return _pa_crt_dbg_aligned_malloc(p, c, size, align, offset, file, line,
                                          PA_CRT_FAMILY_MALLOC);
    if (!size) {
        _pa_crt_dbg_aligned_free(p, c, block, PA_CRT_FAMILY_MALLOC);
        return NULL;
    }
    pthread_mutex_lock(&c->lock);
    uintptr_t base = aligned_base_locked(p, c, block, "realloc()");
    size_t have = base ? header_of((void *)base)->data_size : 0;
    int family = base ? fam_get(&c->families, (void *)base) : PA_CRT_FAMILY_MALLOC;
    pthread_mutex_unlock(&c->lock);
    if (!base) return errno = EINVAL, NULL;
    if (!is_pow2(align) || (offset && offset >= size)) {
        _pa_crt_invalid_parameter(p, c, "_aligned_offset_realloc_dbg", EINVAL);
        return NULL;
    }
    size_t move = have - ((uintptr_t)block - base);
    void *r = _pa_crt_dbg_aligned_malloc(p, c, size, align, offset, file, line, family);
    if (!r) return NULL;
    memcpy(r, block, move < size ? move : size);
    _pa_crt_dbg_free(p, c, (void *)base, _NORMAL_BLOCK, family);
    return r;
}

void *_pa_crt_dbg_aligned_recalloc(pa_process_t *p, pa_crt_t *c, void *block, size_t count,
                                   size_t size, size_t align, size_t offset, const char *file,
                                   int line)
{
    if (count && _HEAP_MAXREQ / count < size) return errno = ENOMEM, NULL;
    size_t old = block ? _pa_crt_dbg_aligned_msize(p, c, block, align, offset) : 0;
    if (old == (size_t)-1) return NULL;
    size_t n = count * size;
    void *r = _pa_crt_dbg_aligned_realloc(p, c, block, n, align, offset, file, line);
    if (r && old < n) memset((char *)r + old, 0, n - old);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Checks, dumps, states                                                                      */

/* Walks of the block list. Headers are user data to the heap (Python's Process.write reaches
 * them), so no walk trusts one: each header passes header_sound and links_sound (the checks
 * free makes before it unlinks a block) before any field of it is read or its next followed;
 * a walk takes at most c->listed steps, so a cycle cannot hold it; and a list that ends before
 * c->listed headers is damaged too. The first bad header stops the walk:
 *
 *     walk_t w;
 *     for (h = walk_first(p, c, &w); h; h = walk_next(p, c, &w)) ...;
 *     walk_end(p, c, &w); -- reports the damage as _CrtCheckMemory does, returns 0 if any
 *
 * A walk left early (break) has nothing to report. */
typedef struct walk_s {
    _CrtMemBlockHeader *h;   /* the header visited, checked */
    size_t seen;             /* headers visited */
    _CrtMemBlockHeader *bad; /* the header that stopped the walk, or NULL */
    int cycle;               /* bad is one header more than the list holds */
} walk_t;

static _CrtMemBlockHeader *walk_to(pa_process_t *p, pa_crt_t *c, walk_t *w,
                                   _CrtMemBlockHeader *n)
{
    if (!n) { /* the end: links_sound saw that it is c->last; the count must agree too */
        if (w->seen != c->listed && w->h) w->bad = w->h;
        return w->h = NULL;
    }
    if (w->seen == c->listed) w->bad = n, w->cycle = 1;
    else if (!header_sound(p, c, data_of(n)) || !links_sound(p, c, n)) w->bad = n;
    if (w->bad) return w->h = NULL;
    w->seen++;
    return w->h = n;
}

static _CrtMemBlockHeader *walk_first(pa_process_t *p, pa_crt_t *c, walk_t *w)
{
    *w = (walk_t){NULL, 0, NULL, 0};
    return walk_to(p, c, w, c->first);
}

static _CrtMemBlockHeader *walk_next(pa_process_t *p, pa_crt_t *c, walk_t *w)
{
    return walk_to(p, c, w, w->h->next);
}

static int walk_end(pa_process_t *p, pa_crt_t *c, const walk_t *w)
{
    if (!w->bad) return 1;
    if (w->cycle)
        report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, NULL, 0,
               "Cycle in block list detected while processing block located at 0x%016" PRIXPTR
               ".\n",
               (uintptr_t)w->bad);
    else
        report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, data_of(w->bad), 0,
               "Bad memory block found at 0x%016" PRIXPTR ".\n", (uintptr_t)w->bad);
    return 0;
}

/* UCRT's check_block. */
static int check_block_locked(pa_process_t *p, pa_crt_t *c, _CrtMemBlockHeader *h)
{
    int ok = !check_gaps_locked(p, c, h, _CRT_WARN);
    const char *name = block_type_valid(h->block_use) || h->block_use == _FREE_BLOCK
                           ? use_names[_BLOCK_TYPE(h->block_use)]
                           : "DAMAGED";
    if (h->block_use == _FREE_BLOCK &&
        !check_bytes(data_of(h), PA_CRT_DEAD_FILL, h->data_size)) {
        if (h->file_name)
            report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, data_of(h), h->request,
                   "HEAP CORRUPTION DETECTED: on top of Free block at 0x%016" PRIXPTR ".\n"
                   "CRT detected that the application wrote to a heap buffer that was freed.\n"
                   "\nMemory allocated at %s(%d).\n",
                   (uintptr_t)data_of(h), h->file_name, h->line);
        else
            report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, data_of(h), h->request,
                   "HEAP CORRUPTION DETECTED: on top of Free block at 0x%016" PRIXPTR ".\n"
                   "CRT detected that the application wrote to a heap buffer that was freed.\n",
                   (uintptr_t)data_of(h));
        ok = 0;
    }
    if (!ok) {
        if (h->file_name)
            report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, data_of(h), h->request,
                   "%s located at 0x%016" PRIXPTR " is %zu bytes long.\n"
                   "\nMemory allocated at %s(%d).\n",
                   name, (uintptr_t)data_of(h), h->data_size, h->file_name, h->line);
        else
            report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, data_of(h), h->request,
                   "%s located at 0x%016" PRIXPTR " is %zu bytes long.\n", name,
                   (uintptr_t)data_of(h), h->data_size);
    }
    return ok;
}

static int check_memory_locked(pa_process_t *p, pa_crt_t *c)
{
    if (!(c->dbg_flag & _CRTDBG_ALLOC_MEM_DF)) return 1;
    int ok = 1;
    walk_t w;
    for (_CrtMemBlockHeader *h = walk_first(p, c, &w); h; h = walk_next(p, c, &w))
        ok &= check_block_locked(p, c, h);
    ok &= walk_end(p, c, &w);
    HANDLE heap = crt_heap(p);
    if (!heap || !pa_heap_validate(p, heap, 0, NULL)) {
        report(p, c, _CRT_WARN, PA_CRT_REPORT_CORRUPTION, NULL, 0, "Heap validation failed.\n");
        ok = 0;
    }
    return ok;
}

static int leaks_in(pa_crt_t *c, int use)
{
    int t = _BLOCK_TYPE(use);
    return t == _NORMAL_BLOCK || t == _CLIENT_BLOCK ||
           (t == _CRT_BLOCK && (c->dbg_flag & _CRTDBG_CHECK_CRT_DF));
}

static void print_block_data_locked(pa_process_t *p, pa_crt_t *c, pa_crt_sink_t sink, void *ctx,
                                    _CrtMemBlockHeader *h)
{
    char text[17], hex[16 * 3 + 1];
    size_t n = h->data_size < 16 ? h->data_size : 16;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = data_of(h)[i];
        text[i] = b >= 0x20 && b < 0x7F ? (char)b : ' ';
        snprintf(hex + i * 3, sizeof hex - i * 3, "%.2X ", b);
    }
    text[n] = 0;
    hex[n * 3] = 0;
    emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK, " Data: <%s> %s\n", text, hex);
}

/* UCRT's dump_all_object_since_nolock. */
static void dump_objects_locked(pa_process_t *p, pa_crt_t *c, const _CrtMemState *state,
                                pa_crt_sink_t sink, void *ctx)
{
    emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK, "Dumping objects ->\n");
    _CrtMemBlockHeader *stop = state ? state->pBlockHeader : NULL;
    walk_t w;
    for (_CrtMemBlockHeader *h = walk_first(p, c, &w); h && h != stop; h = walk_next(p, c, &w)) {
        int t = _BLOCK_TYPE(h->block_use);
        if (t == _IGNORE_BLOCK || t == _FREE_BLOCK) continue;
        if (t == _CRT_BLOCK && !(c->dbg_flag & _CRTDBG_CHECK_CRT_DF)) continue;
        char site[320] = "";
        if (h->file_name) snprintf(site, sizeof site, "%s(%d) : ", h->file_name, h->line);
        if (t == _CLIENT_BLOCK)
            emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK,
                 "%s{%ld} client block at 0x%016" PRIXPTR ", subtype %x, %zu bytes long.\n", site,
                 (long)h->request, (uintptr_t)data_of(h), (unsigned)_BLOCK_SUBTYPE(h->block_use),
                 h->data_size);
        else if (h->block_use == _NORMAL_BLOCK)
            emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK,
                 "%s{%ld} normal block at 0x%016" PRIXPTR ", %zu bytes long.\n", site,
                 (long)h->request, (uintptr_t)data_of(h), h->data_size);
        else if (t == _CRT_BLOCK)
            emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK,
                 "%s{%ld} crt block at 0x%016" PRIXPTR ", subtype %x, %zu bytes long.\n", site,
                 (long)h->request, (uintptr_t)data_of(h), (unsigned)_BLOCK_SUBTYPE(h->block_use),
                 h->data_size);
        else
            continue;
        print_block_data_locked(p, c, sink, ctx, h);
    }
    walk_end(p, c, &w);
}

/* Counts the blocks before the first bad header, if any; w tells (for walk_end). */
static void checkpoint_locked(pa_process_t *p, pa_crt_t *c, _CrtMemState *s, walk_t *w)
{
    memset(s, 0, sizeof *s);
    s->pBlockHeader = c->first;
    for (_CrtMemBlockHeader *h = walk_first(p, c, w); h; h = walk_next(p, c, w)) {
        int t = _BLOCK_TYPE(h->block_use);
        if (t < 0 || t >= _MAX_BLOCKS) continue;
        s->lCounts[t]++;
        s->lSizes[t] += h->data_size;
    }
    s->lHighWaterCount = c->max_current;
    s->lTotalCount = c->total;
}

void _pa_crt_dbg_counts(pa_process_t *p, pa_crt_t *c, _CrtMemState *s)
{
    walk_t w;
    pthread_mutex_lock(&c->lock);
    checkpoint_locked(p, c, s, &w);
    walk_end(p, c, &w);
    pthread_mutex_unlock(&c->lock);
}

/* The leaks before the first bad header are dumped, and the damage reported (once: by the
 * dump's walk when there is a dump). */
static int dump_leaks_locked(pa_process_t *p, pa_crt_t *c, pa_crt_sink_t sink, void *ctx)
{
    _CrtMemState s;
    walk_t w;
    checkpoint_locked(p, c, &s, &w);
    if (!s.lCounts[_CLIENT_BLOCK] && !s.lCounts[_NORMAL_BLOCK] &&
        !((c->dbg_flag & _CRTDBG_CHECK_CRT_DF) && s.lCounts[_CRT_BLOCK]))
        return walk_end(p, c, &w), 0;
    emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK, "Detected memory leaks!\n");
    dump_objects_locked(p, c, NULL, sink, ctx);
    emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK, "Object dump complete.\n");
    return 1;
}

void _pa_crt_dbg_exit(pa_process_t *p, pa_crt_t *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->dbg_flag & _CRTDBG_LEAK_CHECK_DF) dump_leaks_locked(p, c, NULL, NULL);
    pthread_mutex_unlock(&c->lock);
}

static void info_of(pa_crt_t *c, _CrtMemBlockHeader *h, pa_crt_block_info_t *b)
{
    b->data = data_of(h);
    b->size = h->data_size;
    b->request = h->request;
    b->block_use = h->block_use;
    b->family = fam_get(&c->families, data_of(h));
    b->file = h->file_name;
    b->line = h->line;
}

/* ------------------------------------------------------------------------------------------ */
/* Public debug functions (in a release process, what crtdbg.h's macros make of them)         */

#define DEBUG_STATE(p, c, release_expr)                                                          \
    pa_crt_t *c = _pa_crt_get(p);                                                                \
    if (!c || !c->debug) return release_expr;

void *pa_crt_malloc_dbg(pa_process_t *p, size_t size, int block_use, const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_malloc(p, size));
    return _pa_crt_dbg_malloc(p, c, size, block_use, file, line, PA_CRT_FAMILY_MALLOC);
}

void *pa_crt_calloc_dbg(pa_process_t *p, size_t count, size_t size, int block_use,
                        const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_calloc(p, count, size));
    return _pa_crt_dbg_calloc(p, c, count, size, block_use, file, line);
}

void *pa_crt_realloc_dbg(pa_process_t *p, void *block, size_t size, int block_use,
                         const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_realloc(p, block, size));
    return _pa_crt_dbg_realloc(p, c, block, size, block_use, file, line);
}

void *pa_crt_recalloc_dbg(pa_process_t *p, void *block, size_t count, size_t size, int block_use,
                          const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_recalloc(p, block, count, size));
    return _pa_crt_dbg_recalloc(p, c, block, count, size, block_use, file, line);
}

void *pa_crt_expand_dbg(pa_process_t *p, void *block, size_t size, int block_use,
                        const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_expand(p, block, size));
    return _pa_crt_dbg_expand(p, c, block, size, block_use, file, line);
}

void pa_crt_free_dbg(pa_process_t *p, void *block, int block_use)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (c && c->debug) _pa_crt_dbg_free(p, c, block, block_use, PA_CRT_FAMILY_MALLOC);
    else pa_crt_free(p, block);
}

size_t pa_crt_msize_dbg(pa_process_t *p, void *block, int block_use)
{
    (void)block_use;
    DEBUG_STATE(p, c, pa_crt_msize(p, block));
    return _pa_crt_dbg_msize(p, c, block);
}

void *pa_crt_aligned_malloc_dbg(pa_process_t *p, size_t size, size_t alignment, const char *file,
                                int line)
{
    DEBUG_STATE(p, c, pa_crt_aligned_malloc(p, size, alignment));
    return _pa_crt_dbg_aligned_malloc(p, c, size, alignment, 0, file, line, PA_CRT_FAMILY_MALLOC);
}

void *pa_crt_aligned_offset_malloc_dbg(pa_process_t *p, size_t size, size_t alignment,
                                       size_t offset, const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_aligned_offset_malloc(p, size, alignment, offset));
    return _pa_crt_dbg_aligned_malloc(p, c, size, alignment, offset, file, line,
                                      PA_CRT_FAMILY_MALLOC);
}

void *pa_crt_aligned_realloc_dbg(pa_process_t *p, void *block, size_t size, size_t alignment,
                                 const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_aligned_realloc(p, block, size, alignment));
    return _pa_crt_dbg_aligned_realloc(p, c, block, size, alignment, 0, file, line);
}

void *pa_crt_aligned_offset_realloc_dbg(pa_process_t *p, void *block, size_t size,
                                        size_t alignment, size_t offset, const char *file,
                                        int line)
{
    DEBUG_STATE(p, c, pa_crt_aligned_offset_realloc(p, block, size, alignment, offset));
    return _pa_crt_dbg_aligned_realloc(p, c, block, size, alignment, offset, file, line);
}

void *pa_crt_aligned_recalloc_dbg(pa_process_t *p, void *block, size_t count, size_t size,
                                  size_t alignment, const char *file, int line)
{
    DEBUG_STATE(p, c, pa_crt_aligned_recalloc(p, block, count, size, alignment));
    return _pa_crt_dbg_aligned_recalloc(p, c, block, count, size, alignment, 0, file, line);
}

void *pa_crt_aligned_offset_recalloc_dbg(pa_process_t *p, void *block, size_t count, size_t size,
                                         size_t alignment, size_t offset, const char *file,
                                         int line)
{
    DEBUG_STATE(p, c, pa_crt_aligned_offset_recalloc(p, block, count, size, alignment, offset));
    return _pa_crt_dbg_aligned_recalloc(p, c, block, count, size, alignment, offset, file, line);
}

void pa_crt_aligned_free_dbg(pa_process_t *p, void *block)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (c && c->debug) _pa_crt_dbg_aligned_free(p, c, block, PA_CRT_FAMILY_MALLOC);
    else pa_crt_aligned_free(p, block);
}

size_t pa_crt_aligned_msize_dbg(pa_process_t *p, void *block, size_t alignment, size_t offset)
{
    DEBUG_STATE(p, c, pa_crt_aligned_msize(p, block, alignment, offset));
    return _pa_crt_dbg_aligned_msize(p, c, block, alignment, offset);
}

int pa_crt_set_dbg_flag(pa_process_t *p, int flags)
{
    DEBUG_STATE(p, c, 0);
    if (flags != _CRTDBG_REPORT_FLAG && (flags & 0xFFFF & ~VALID_FLAGS)) {
        _pa_crt_invalid_parameter(p, c, "_CrtSetDbgFlag", EINVAL);
        pthread_mutex_lock(&c->lock);
        int now = c->dbg_flag;
        pthread_mutex_unlock(&c->lock);
        return now;
    }
    pthread_mutex_lock(&c->lock);
    int old = c->dbg_flag;
    if (flags != _CRTDBG_REPORT_FLAG) set_flag_locked(c, flags);
    pthread_mutex_unlock(&c->lock);
    return old;
}

int pa_crt_check_memory(pa_process_t *p)
{
    DEBUG_STATE(p, c, TRUE);
    pthread_mutex_lock(&c->lock);
    int ok = check_memory_locked(p, c);
    pthread_mutex_unlock(&c->lock);
    return ok ? TRUE : FALSE;
}

int pa_crt_dump_memory_leaks(pa_process_t *p, pa_crt_sink_t sink, void *ctx)
{
    DEBUG_STATE(p, c, FALSE);
    pthread_mutex_lock(&c->lock);
    int leaks = dump_leaks_locked(p, c, sink, ctx);
    pthread_mutex_unlock(&c->lock);
    return leaks ? TRUE : FALSE;
}

size_t pa_crt_leaks(pa_process_t *p, pa_crt_block_info_t *out, size_t max)
{
    DEBUG_STATE(p, c, 0);
    size_t n = 0;
    walk_t w;
    pthread_mutex_lock(&c->lock);
    for (_CrtMemBlockHeader *h = walk_first(p, c, &w); h; h = walk_next(p, c, &w)) {
        if (!leaks_in(c, h->block_use)) continue;
        if (out && n < max) info_of(c, h, &out[n]);
        n++;
    }
    walk_end(p, c, &w);
    pthread_mutex_unlock(&c->lock);
    return n;
}

int pa_crt_walk_blocks(pa_process_t *p, int (*fn)(const pa_crt_block_info_t *b, void *arg),
                       void *arg)
{
    DEBUG_STATE(p, c, 0);
    int r = 0;
    walk_t w;
    pthread_mutex_lock(&c->lock);
    for (_CrtMemBlockHeader *h = walk_first(p, c, &w); h; h = walk_next(p, c, &w)) {
        pa_crt_block_info_t b;
        info_of(c, h, &b);
        if ((r = fn(&b, arg)) != 0) break;
    }
    walk_end(p, c, &w);
    pthread_mutex_unlock(&c->lock);
    return r;
}

long pa_crt_set_break_alloc(pa_process_t *p, long request)
{
    DEBUG_STATE(p, c, 0);
    pthread_mutex_lock(&c->lock);
    long old = c->break_alloc;
    c->break_alloc = (LONG)request;
    pthread_mutex_unlock(&c->lock);
    return old;
}

pa_crt_break_hook_t pa_crt_set_break_hook(pa_process_t *p, pa_crt_break_hook_t hook, void *ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return NULL;
    pthread_mutex_lock(&c->lock);
    pa_crt_break_hook_t old = c->break_hook;
    c->break_hook = hook;
    c->break_hook_ctx = ctx;
    pthread_mutex_unlock(&c->lock);
    return old;
}

pa_crt_alloc_hook_t pa_crt_set_alloc_hook(pa_process_t *p, pa_crt_alloc_hook_t hook, void *ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return NULL;
    pthread_mutex_lock(&c->lock);
    pa_crt_alloc_hook_t old = c->alloc_hook;
    c->alloc_hook = hook;
    c->alloc_hook_ctx = ctx;
    pthread_mutex_unlock(&c->lock);
    return old;
}

pa_crt_report_hook_t pa_crt_set_report_hook(pa_process_t *p, pa_crt_report_hook_t hook, void *ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return NULL;
    pthread_mutex_lock(&c->lock);
    pa_crt_report_hook_t old = c->report_hook;
    c->report_hook = hook;
    c->report_hook_ctx = ctx;
    pthread_mutex_unlock(&c->lock);
    return old;
}

int pa_crt_is_valid_heap_pointer(pa_process_t *p, const void *block)
{
    DEBUG_STATE(p, c, TRUE);
    return valid_heap_pointer(p, block) ? TRUE : FALSE;
}

int pa_crt_report_block_type(pa_process_t *p, const void *block)
{
    DEBUG_STATE(p, c, -1);
    pthread_mutex_lock(&c->lock);
    int use = header_sound(p, c, block) ? header_of(block)->block_use : -1;
    pthread_mutex_unlock(&c->lock);
    return use;
}

void pa_crt_set_dbg_block_type(pa_process_t *p, void *block, int block_use)
{
    DEBUG_STATE(p, c, );
    pthread_mutex_lock(&c->lock);
    if (header_sound(p, c, block)) {
        _CrtMemBlockHeader *h = header_of(block);
        if (!block_type_valid(h->block_use))
            report_assert(p, c, "is_block_type_valid(header->_block_use)", block);
        h->block_use = block_use;
    }
    pthread_mutex_unlock(&c->lock);
}

int pa_crt_is_memory_block(pa_process_t *p, const void *block, unsigned size, long *request,
                           const char **file, int *line)
{
    DEBUG_STATE(p, c, TRUE);
    if (request) *request = 0;
    if (file) *file = NULL;
    if (line) *line = 0;
    if (!block) return FALSE;
    int ok = FALSE;
    pthread_mutex_lock(&c->lock);
    if (header_sound(p, c, block)) {
        _CrtMemBlockHeader *h = header_of(block);
        if (block_type_valid(h->block_use) && h->data_size == size &&
            h->request <= c->next_request) {
            if (request) *request = h->request;
            if (file) *file = h->file_name;
            if (line) *line = h->line;
            ok = TRUE;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

void pa_crt_mem_checkpoint(pa_process_t *p, _CrtMemState *state)
{
    if (!state) {
        pa_crt_t *c = _pa_crt_get(p);
        if (c && c->debug) _pa_crt_invalid_parameter(p, c, "_CrtMemCheckpoint", EINVAL);
        return;
    }
    memset(state, 0, sizeof *state);
    DEBUG_STATE(p, c, );
    _pa_crt_dbg_counts(p, c, state);
}

int pa_crt_mem_difference(pa_process_t *p, _CrtMemState *diff, const _CrtMemState *old_state,
                          const _CrtMemState *new_state)
{
    DEBUG_STATE(p, c, FALSE);
    if (!diff || !old_state || !new_state) {
        _pa_crt_invalid_parameter(p, c, "_CrtMemDifference", EINVAL);
        return FALSE;
    }
    int significant = 0;
    pthread_mutex_lock(&c->lock);
    for (int use = 0; use < _MAX_BLOCKS; use++) {
        diff->lSizes[use] = new_state->lSizes[use] - old_state->lSizes[use];
        diff->lCounts[use] = new_state->lCounts[use] - old_state->lCounts[use];
        if (!diff->lSizes[use] && !diff->lCounts[use]) continue;
        if (use == _FREE_BLOCK) continue;
        if (use == _CRT_BLOCK && !(c->dbg_flag & _CRTDBG_CHECK_CRT_DF)) continue;
        significant = 1;
    }
    pthread_mutex_unlock(&c->lock);
    diff->lHighWaterCount = new_state->lHighWaterCount - old_state->lHighWaterCount;
    diff->lTotalCount = new_state->lTotalCount - old_state->lTotalCount;
    diff->pBlockHeader = NULL;
    return significant;
}

void pa_crt_mem_dump_all_objects_since(pa_process_t *p, const _CrtMemState *state,
                                       pa_crt_sink_t sink, void *ctx)
{
    DEBUG_STATE(p, c, );
    pthread_mutex_lock(&c->lock);
    dump_objects_locked(p, c, state, sink, ctx);
    pthread_mutex_unlock(&c->lock);
    emit(p, c, sink, ctx, PA_CRT_REPORT_LEAK, "Object dump complete.\n");
}

void pa_crt_mem_dump_statistics(pa_process_t *p, const _CrtMemState *state, pa_crt_sink_t sink,
                                void *ctx)
{
    DEBUG_STATE(p, c, );
    if (!state) {
        _pa_crt_invalid_parameter(p, c, "_CrtMemDumpStatistics", EINVAL);
        return;
    }
    for (int use = 0; use < _MAX_BLOCKS; use++)
        emit(p, c, sink, ctx, PA_CRT_REPORT_OTHER, "%lld bytes in %lld %s Blocks.\n",
             (long long)state->lSizes[use], (long long)state->lCounts[use], use_names[use]);
    emit(p, c, sink, ctx, PA_CRT_REPORT_OTHER, "Largest number used: %lld bytes.\n",
         (long long)state->lHighWaterCount);
    emit(p, c, sink, ctx, PA_CRT_REPORT_OTHER, "Total allocations: %lld bytes.\n",
         (long long)state->lTotalCount);
}
