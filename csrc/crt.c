/* crt.c: layer 4, UCRT's malloc family over the process heap (heap.md 1.12-1.14).
 *
 * Owns each process's CRT state (created on first use, crt_internal.h), the PYALLOC_CRT_*
 * options, the release CRT (one HeapAlloc per block, nothing else), the aligned block layout,
 * the new mode and the new and invalid-parameter handlers. Each public function sends a debug
 * process to crt_debug.c, as UCRT's malloc calls _malloc_dbg when built with _DEBUG.
 *
 * Aligned block (heap.md fact 78), P = 8: with m = max(align, P) - 1 and g = (0 - offset) &
 * (P - 1), the CRT block is malloc(P + g + m + size); the aligned pointer is r = ((base + P + g
 * + m + offset) & ~m) - offset, so that r + offset is aligned, and base is stored in the P
 * bytes at r - g - P, which is also ((r & ~(P - 1)) - P): the slot just below r rounded down.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "crt_internal.h"
#include "os/os.h"

/* ------------------------------------------------------------------------------------------ */
/* Options from the environment, read once                                                    */

static pa_crt_options_t options = {0, -1, -1};

static const struct {
    const char *name;
    int which;
} option_table[] = {
    {"PYALLOC_CRT_DEBUG", 0},       /* 1: processes start with the debug CRT */
    {"PYALLOC_CRT_DBG_FLAG", 1},    /* initial _crtDbgFlag of a debug CRT, e.g. 0x25 */
    {"PYALLOC_CRT_BREAK_ALLOC", 2}, /* initial _crtBreakAlloc of a debug CRT */
};

static pthread_once_t options_once = PTHREAD_ONCE_INIT;

static void options_read(void)
{
    for (size_t i = 0; i < sizeof option_table / sizeof *option_table; i++) {
        const char *v = getenv(option_table[i].name);
        if (!v || !*v) continue;
        long x = strtol(v, NULL, 0);
        switch (option_table[i].which) {
        case 0: options.debug = x != 0; break;
        case 1: options.dbg_flag = (int)x; break;
        default: options.break_alloc = x; break;
        }
    }
}

const pa_crt_options_t *_pa_crt_options(void)
{
    pthread_once(&options_once, options_read);
    return &options;
}

/* ------------------------------------------------------------------------------------------ */
/* The per-process state                                                                      */

static pthread_mutex_t create_lock = PTHREAD_MUTEX_INITIALIZER;

static void crt_lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(m, &attr);
    pthread_mutexattr_destroy(&attr);
}


/* Creates the state on first use. The process heap is made first: that registers the heap's
 * rundown before the CRT's, and rundowns run most recent first, so a process's CRT (whose
 * debug list lives in the heap) is run down before its heap. */
pa_crt_t *_pa_crt_get(pa_process_t *p)
{
    if (PA_UNLIKELY(!p)) return NULL;
    pa_crt_t *c = __atomic_load_n(&p->crt, __ATOMIC_ACQUIRE);
    if (PA_LIKELY(c != NULL)) return c;
    const pa_crt_options_t *o = _pa_crt_options();
    pa_heap_get_process_heap(p);
    pa_process_register_rundown(pa_crt_process_detach);
    pthread_mutex_lock(&create_lock);
    c = p->crt;
    if (!c && (c = _pa_os_alloc(sizeof *c)) != NULL) {
        crt_lock_init(&c->lock);
        c->debug = o->debug;
        _pa_crt_dbg_init(c, o);
        __atomic_store_n(&p->crt, c, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&create_lock);
    return c;
}

void pa_crt_fork_prepare(pa_process_t *p)
{
    pthread_mutex_lock(&create_lock);
    pa_crt_t *c = p ? __atomic_load_n(&p->crt, __ATOMIC_ACQUIRE) : NULL;
    if (c) pthread_mutex_lock(&c->lock);
}

void pa_crt_fork_parent(pa_process_t *p)
{
    pa_crt_t *c = p ? __atomic_load_n(&p->crt, __ATOMIC_ACQUIRE) : NULL;
    if (c) pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&create_lock);
}

void pa_crt_fork_child(pa_process_t *p)
{
    pa_crt_t *c = p ? __atomic_load_n(&p->crt, __ATOMIC_ACQUIRE) : NULL;
    if (c) crt_lock_init(&c->lock);
    pthread_mutex_init(&create_lock, NULL);
}

void pa_crt_process_detach(pa_process_t *p)
{
    if (!p) return;
    pa_crt_t *c = __atomic_load_n(&p->crt, __ATOMIC_ACQUIRE);
    if (!c) return;
    /* The leak dump may call the report hook, which may use the CRT: p->crt is still set. */
    pa_crt_exit(p);
    pthread_mutex_lock(&create_lock);
    __atomic_store_n(&p->crt, NULL, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&create_lock);
    _pa_crt_dbg_destroy(p, c);
    pthread_mutex_destroy(&c->lock);
    _pa_os_free(c, sizeof *c);
}

void pa_crt_exit(pa_process_t *p)
{
    pa_crt_t *c = p ? __atomic_load_n(&p->crt, __ATOMIC_ACQUIRE) : NULL;
    if (c && !atomic_exchange(&c->ended, 1) && c->debug) _pa_crt_dbg_exit(p, c);
}

/* The current process is never destroyed: its CRT sees the program end here, in the ELF
 * destructors, which glibc runs after the atexit functions (as UCRT's termination runs
 * after them). Its state stays: threads and later destructors may still allocate. A
 * priority number makes it run after the library's destructors that have none (GCC runs
 * destructors in the reverse order of constructors, and one without a number as the last
 * constructor): the preload library's, which lets glibc free its own blocks first. */
__attribute__((destructor(1000))) static void crt_program_end(void)
{
    pa_crt_exit(_pa_process_current_if_made());
}

int pa_crt_set_debug(pa_process_t *p, int debug)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return errno = p ? ENOMEM : EINVAL, -1;
    pthread_mutex_lock(&c->lock);
    int ok = !atomic_load(&c->used) || c->debug == (debug != 0);
    if (ok) c->debug = debug != 0;
    pthread_mutex_unlock(&c->lock);
    if (!ok) return errno = EBUSY, -1;
    return 0;
}

int pa_crt_is_debug(pa_process_t *p)
{
    pa_crt_t *c = _pa_crt_get(p);
    return c ? c->debug : 0;
}

HANDLE pa_crt_get_heap_handle(pa_process_t *p) { return pa_heap_get_process_heap(p); }

int pa_crt_get_errno(void) { return errno; }

void pa_crt_set_errno(int value) { errno = value; }

void _pa_crt_invalid_parameter(pa_process_t *p, pa_crt_t *c, const char *function, int err)
{
    pthread_mutex_lock(&c->lock);
    c->invalid_parameters++;
    pa_crt_invalid_parameter_handler_t h = c->iph;
    void *ctx = c->iph_ctx;
    pthread_mutex_unlock(&c->lock);
    errno = err;
    if (h) h(p, function, ctx);
    errno = err;
}

int _pa_crt_errno_from_os_error(DWORD error)
{
    switch (error) {
    case ERROR_NOT_ENOUGH_MEMORY:
    case 7: /* ERROR_ARENA_TRASHED */
    case 9: /* ERROR_INVALID_BLOCK */
        return ENOMEM;
    case ERROR_INVALID_HANDLE: return EBADF;
    case ERROR_ACCESS_DENIED: return EACCES;
    default: return EINVAL;
    }
}

pa_crt_invalid_parameter_handler_t
pa_crt_set_invalid_parameter_handler(pa_process_t *p, pa_crt_invalid_parameter_handler_t handler,
                                     void *ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return NULL;
    pthread_mutex_lock(&c->lock);
    pa_crt_invalid_parameter_handler_t old = c->iph;
    c->iph = handler;
    c->iph_ctx = ctx;
    pthread_mutex_unlock(&c->lock);
    return old;
}

/* ------------------------------------------------------------------------------------------ */
/* New mode and new handler (heap.md facts 81-82)                                             */

int pa_crt_set_new_mode(pa_process_t *p, int mode)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return errno = EINVAL, -1;
    if (mode != 0 && mode != 1) {
        _pa_crt_invalid_parameter(p, c, "_set_new_mode", EINVAL);
        return -1;
    }
    return atomic_exchange(&c->new_mode, mode);
}

int pa_crt_query_new_mode(pa_process_t *p)
{
    pa_crt_t *c = _pa_crt_get(p);
    return c ? atomic_load(&c->new_mode) : 0;
}

pa_crt_new_handler_t pa_crt_set_new_handler(pa_process_t *p, pa_crt_new_handler_t handler,
                                            void *ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return NULL;
    pthread_mutex_lock(&c->lock);
    pa_crt_new_handler_t old = c->new_handler;
    c->new_handler = handler;
    c->new_handler_ctx = handler ? ctx : NULL;
    pthread_mutex_unlock(&c->lock);
    return old;
}

pa_crt_new_handler_t pa_crt_query_new_handler(pa_process_t *p, void **ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    pa_crt_new_handler_t h = NULL;
    void *x = NULL;
    if (c) {
        pthread_mutex_lock(&c->lock);
        h = c->new_handler;
        x = c->new_handler_ctx;
        pthread_mutex_unlock(&c->lock);
    }
    if (ctx) *ctx = x;
    return h;
}

int pa_crt_callnewh(pa_process_t *p, size_t size)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return 0;
    pthread_mutex_lock(&c->lock);
    pa_crt_new_handler_t h = c->new_handler;
    void *ctx = c->new_handler_ctx;
    if (h) c->new_handler_calls++;
    pthread_mutex_unlock(&c->lock);
    return h && h(p, size, ctx) != 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The release CRT's primitives                                                               */

/* The new-mode retry of malloc, calloc and realloc: 1 to try again. */
static int retry_with_new_handler(pa_process_t *p, pa_crt_t *c, size_t size)
{
    return atomic_load_explicit(&c->new_mode, memory_order_relaxed) && pa_crt_callnewh(p, size);
}

static void *heap_alloc(pa_process_t *p, DWORD flags, size_t size)
{
    HANDLE h = pa_heap_get_process_heap(p);
    return h ? pa_heap_alloc(p, h, flags, size) : NULL;
}

/* _malloc_base (fact 67). */
void *_pa_crt_malloc_base(pa_process_t *p, pa_crt_t *c, size_t size)
{
    if (size > _HEAP_MAXREQ) return errno = ENOMEM, NULL;
    size_t n = size ? size : 1;
    _pa_crt_mark_used(c);
    for (;;) {
        void *b = heap_alloc(p, 0, n);
        if (PA_LIKELY(b != NULL)) return b;
        if (!retry_with_new_handler(p, c, n)) return errno = ENOMEM, NULL;
    }
}

/* _calloc_base (fact 68). */
static void *calloc_base(pa_process_t *p, pa_crt_t *c, size_t count, size_t size)
{
    if (count && _HEAP_MAXREQ / count < size) return errno = ENOMEM, NULL;
    size_t n = count * size;
    if (!n) n = 1;
    _pa_crt_mark_used(c);
    for (;;) {
        void *b = heap_alloc(p, HEAP_ZERO_MEMORY, n);
        if (b) return b;
        if (!retry_with_new_handler(p, c, n)) return errno = ENOMEM, NULL;
    }
}

/* _free_base: a HeapFree failure sets errno from the heap's last error. */
void _pa_crt_free_base(pa_process_t *p, void *block)
{
    if (!block) return;
    HANDLE h = pa_heap_get_process_heap(p);
    if (!h || !pa_heap_free(p, h, 0, block)) errno = _pa_crt_errno_from_os_error(pa_get_last_error());
}

/* _realloc_base (fact 68): NULL is malloc, 0 is free; on failure the block is untouched. */
void *_pa_crt_realloc_base(pa_process_t *p, pa_crt_t *c, void *block, size_t size)
{
    if (!block) return _pa_crt_malloc_base(p, c, size);
    if (!size) {
        _pa_crt_free_base(p, block);
        return NULL;
    }
    if (size > _HEAP_MAXREQ) return errno = ENOMEM, NULL;
    for (;;) {
        HANDLE h = pa_heap_get_process_heap(p);
        void *b = h ? pa_heap_realloc(p, h, 0, block, size) : NULL;
        if (b) return b;
        if (!retry_with_new_handler(p, c, size)) {
            errno = _pa_crt_errno_from_os_error(pa_get_last_error());
            return NULL;
        }
    }
}

/* _msize_base (fact 69). */
size_t _pa_crt_msize_base(pa_process_t *p, void *block)
{
    HANDLE h = pa_heap_get_process_heap(p);
    return h ? pa_heap_size(p, h, 0, block) : (size_t)-1;
}

static int lfh_enabled(pa_process_t *p, HANDLE h)
{
    ULONG type = (ULONG)-1;
    return pa_heap_query_information(p, h, HeapCompatibilityInformation, &type, sizeof type,
                                     NULL) && type == 2;
}

/* _expand_base (fact 73); block is not NULL (checked by the callers). */
void *_pa_crt_expand_base(pa_process_t *p, pa_crt_t *c, void *block, size_t size)
{
    (void)c;
    if (size > _HEAP_MAXREQ) return errno = ENOMEM, NULL;
    HANDLE h = pa_heap_get_process_heap(p);
    if (!h) return errno = ENOMEM, NULL;
    size_t old = pa_heap_size(p, h, 0, block);
    size_t n = size ? size : 1;
    void *b = pa_heap_realloc(p, h, HEAP_REALLOC_IN_PLACE_ONLY, block, n);
    if (b) return b;
    DWORD error = pa_get_last_error();
    /* The LFH cannot shrink in place: a shrink of a block it may serve is a success. */
    if (old != (size_t)-1 && old <= 0x4000 && n <= old && lfh_enabled(p, h)) return block;
    errno = _pa_crt_errno_from_os_error(error);
    return NULL;
}

/* _recalloc_base (fact 74). */
static void *recalloc_base(pa_process_t *p, pa_crt_t *c, void *block, size_t count, size_t size)
{
    if (count && _HEAP_MAXREQ / count < size) return errno = ENOMEM, NULL;
    size_t old = block ? _pa_crt_msize_base(p, block) : 0;
    size_t n = count * size;
    void *b = _pa_crt_realloc_base(p, c, block, n);
    if (b && old < n) memset((char *)b + old, 0, n - old);
    return b;
}

/* ---- aligned blocks (facts 75-80) ---- */

static int is_pow2(size_t x) { return x && !(x & (x - 1)); }

/* Reads the base pointer stored below aligned pointer block. 0 (nothing read) unless the slot
 * lies inside a busy block of the process heap and points at that very block: a pointer that
 * is not an aligned block is refused instead of freeing whatever its slot holds. */
static int aligned_base(pa_process_t *p, const void *block, uintptr_t *base)
{
    uintptr_t slot = ((uintptr_t)block & ~(PA_PTR_SIZE - 1)) - PA_PTR_SIZE;
    HANDLE heap = NULL;
    void *user = NULL;
    if ((uintptr_t)block < PA_PTR_SIZE ||
        pa_heap_find_block(p, (const void *)slot, PA_PTR_SIZE, &heap, &user, NULL) != STATUS_SUCCESS ||
        heap != pa_heap_get_process_heap(p))
        return 0;
    memcpy(base, (const void *)slot, sizeof *base);
    return *base == (uintptr_t)user;
}

static void *aligned_offset_malloc_base(pa_process_t *p, pa_crt_t *c, size_t size, size_t align,
                                        size_t offset, const char *fn)
{
    if (!is_pow2(align) || (offset && offset >= size)) {
        _pa_crt_invalid_parameter(p, c, fn, EINVAL);
        return NULL;
    }
    size_t m = (align > PA_PTR_SIZE ? align : PA_PTR_SIZE) - 1;
    size_t gap = (0 - offset) & (PA_PTR_SIZE - 1);
    size_t nonuser = PA_PTR_SIZE + gap + m;
    if (size + nonuser < size) return errno = ENOMEM, NULL;
    uintptr_t base = (uintptr_t)_pa_crt_malloc_base(p, c, size + nonuser);
    if (!base) return NULL;
    uintptr_t r = ((base + nonuser + offset) & ~(uintptr_t)m) - offset;
    memcpy((void *)(r - gap - PA_PTR_SIZE), &base, sizeof base);
    return (void *)r;
}

static void aligned_free_base(pa_process_t *p, void *block)
{
    if (!block) return;
    uintptr_t base;
    if (!aligned_base(p, block, &base)) {
        errno = EINVAL;
        return;
    }
    _pa_crt_free_base(p, (void *)base);
}

static size_t aligned_msize_base(pa_process_t *p, pa_crt_t *c, void *block, size_t align,
                                 size_t offset)
{
    if (!block) {
        _pa_crt_invalid_parameter(p, c, "_aligned_msize", EINVAL);
        return (size_t)-1;
    }
    uintptr_t base;
    if (!aligned_base(p, block, &base)) return errno = EINVAL, (size_t)-1;
    size_t total = _pa_crt_msize_base(p, (void *)base);
    size_t header = (uintptr_t)block - base;
    size_t gap = (0 - offset) & (PA_PTR_SIZE - 1);
    size_t m = (align > PA_PTR_SIZE ? align : PA_PTR_SIZE) - 1;
    size_t footer = gap + m + PA_PTR_SIZE - header;
    return total - header - footer;
}

/* _aligned_offset_realloc_base: grows or shrinks the base block in place when the data need
 * not move down (_expand), else allocates a new one; the data then move to the canonical
 * aligned position of the (new) base block. */
static void *aligned_offset_realloc_base(pa_process_t *p, pa_crt_t *c, void *block, size_t size,
                                         size_t align, size_t offset, const char *fn)
{
    if (!block) return aligned_offset_malloc_base(p, c, size, align, offset, fn);
    if (!size) {
        aligned_free_base(p, block);
        return NULL;
    }
    if (!is_pow2(align) || (offset && offset >= size)) {
        _pa_crt_invalid_parameter(p, c, fn, EINVAL);
        return NULL;
    }
    uintptr_t base;
    if (!aligned_base(p, block, &base)) return errno = EINVAL, NULL;
    size_t m = (align > PA_PTR_SIZE ? align : PA_PTR_SIZE) - 1;
    size_t gap = (0 - offset) & (PA_PTR_SIZE - 1);
    size_t diff = (uintptr_t)block - base;
    size_t move = _pa_crt_msize_base(p, (void *)base) - diff;
    if (move > size) move = size;
    size_t need = PA_PTR_SIZE + gap + m + size;
    if (need < size) return errno = ENOMEM, NULL;
    uintptr_t nb = 0;
    int moved = 1;
    if (base + m + PA_PTR_SIZE + gap >= (uintptr_t)block) {
        int saved = errno;
        nb = (uintptr_t)_pa_crt_expand_base(p, c, (void *)base, need);
        if (nb) moved = 0;
        else errno = saved;
    }
    if (moved && !(nb = (uintptr_t)_pa_crt_malloc_base(p, c, need))) return NULL;
    uintptr_t r = ((nb + PA_PTR_SIZE + gap + m + offset) & ~(uintptr_t)m) - offset;
    memmove((void *)r, (const void *)(base + diff), move);
    if (moved) _pa_crt_free_base(p, (void *)base);
    memcpy((void *)(r - gap - PA_PTR_SIZE), &nb, sizeof nb);
    return (void *)r;
}

static void *aligned_offset_recalloc_base(pa_process_t *p, pa_crt_t *c, void *block, size_t count,
                                          size_t size, size_t align, size_t offset,
                                          const char *fn)
{
    if (count && _HEAP_MAXREQ / count < size) return errno = ENOMEM, NULL;
    size_t n = count * size, old = 0;
    if (block) {
        old = aligned_msize_base(p, c, block, align, offset);
        if (old == (size_t)-1) return NULL;
    }
    void *r = aligned_offset_realloc_base(p, c, block, n, align, offset, fn);
    if (r && old < n) memset((char *)r + old, 0, n - old);
    return r;
}

void *_pa_crt_aligned_malloc_base(pa_process_t *p, pa_crt_t *c, size_t size, size_t align)
{
    return aligned_offset_malloc_base(p, c, size, align, 0, "_aligned_malloc");
}

void _pa_crt_aligned_free_base(pa_process_t *p, void *block) { aligned_free_base(p, block); }

/* ------------------------------------------------------------------------------------------ */
/* The public functions: the debug CRT in a debug process                                     */

#define GET_STATE(p, c, fail)                                                                    \
    pa_crt_t *c = _pa_crt_get(p);                                                                \
    if (PA_UNLIKELY(!c)) {                                                                       \
        errno = (p) ? ENOMEM : EINVAL;                                                           \
        return fail;                                                                             \
    }

/* Trace events of the malloc family: address = the result (or the block freed), extra = the
 * block reallocated, result = 0 or the errno of a failure. */
static void *traced(pa_process_t *p, uint32_t op, void *r, size_t size, void *old)
{
    _pa_trace_layer(p, PA_LAYER_CRT, op, (uintptr_t)r, size, 0, (uintptr_t)old,
                    r || (op == PA_OP_REALLOC && !size) ? 0 : errno);
    return r;
}

void *pa_crt_malloc(pa_process_t *p, size_t size)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return traced(p, PA_OP_MALLOC,
                      _pa_crt_dbg_malloc(p, c, size, _NORMAL_BLOCK, NULL, 0, PA_CRT_FAMILY_MALLOC),
                      size, NULL);
    return traced(p, PA_OP_MALLOC, _pa_crt_malloc_base(p, c, size), size, NULL);
}

void *pa_crt_calloc(pa_process_t *p, size_t count, size_t size)
{
    GET_STATE(p, c, NULL);
    size_t total = count * size; /* for the event only; calloc checks the overflow */
    if (c->debug)
        return traced(p, PA_OP_CALLOC,
                      _pa_crt_dbg_calloc(p, c, count, size, _NORMAL_BLOCK, NULL, 0), total, NULL);
    return traced(p, PA_OP_CALLOC, calloc_base(p, c, count, size), total, NULL);
}

void *pa_crt_realloc(pa_process_t *p, void *block, size_t size)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return traced(p, PA_OP_REALLOC,
                      _pa_crt_dbg_realloc(p, c, block, size, _NORMAL_BLOCK, NULL, 0), size, block);
    return traced(p, PA_OP_REALLOC, _pa_crt_realloc_base(p, c, block, size), size, block);
}

void pa_crt_free(pa_process_t *p, void *block)
{
    if (!block) return;
    GET_STATE(p, c, );
    _pa_trace_layer(p, PA_LAYER_CRT, PA_OP_FREE, (uintptr_t)block, 0, 0, 0, 0);
    if (c->debug) _pa_crt_dbg_free(p, c, block, _NORMAL_BLOCK, PA_CRT_FAMILY_MALLOC);
    else _pa_crt_free_base(p, block);
}

size_t pa_crt_msize(pa_process_t *p, void *block)
{
    GET_STATE(p, c, (size_t)-1);
    if (c->debug) return _pa_crt_dbg_msize(p, c, block);
    if (!block) {
        _pa_crt_invalid_parameter(p, c, "_msize", EINVAL);
        return (size_t)-1;
    }
    return _pa_crt_msize_base(p, block);
}

void *pa_crt_expand(pa_process_t *p, void *block, size_t size)
{
    GET_STATE(p, c, NULL);
    if (c->debug) return _pa_crt_dbg_expand(p, c, block, size, _NORMAL_BLOCK, NULL, 0);
    if (!block) {
        _pa_crt_invalid_parameter(p, c, "_expand", EINVAL);
        return NULL;
    }
    return _pa_crt_expand_base(p, c, block, size);
}

void *pa_crt_recalloc(pa_process_t *p, void *block, size_t count, size_t size)
{
    GET_STATE(p, c, NULL);
    if (c->debug) return _pa_crt_dbg_recalloc(p, c, block, count, size, _NORMAL_BLOCK, NULL, 0);
    return recalloc_base(p, c, block, count, size);
}

void *pa_crt_aligned_malloc(pa_process_t *p, size_t size, size_t alignment)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return traced(p, PA_OP_ALIGNED_MALLOC,
                      _pa_crt_dbg_aligned_malloc(p, c, size, alignment, 0, NULL, 0,
                                                 PA_CRT_FAMILY_MALLOC),
                      size, NULL);
    return traced(p, PA_OP_ALIGNED_MALLOC,
                  aligned_offset_malloc_base(p, c, size, alignment, 0, "_aligned_malloc"), size,
                  NULL);
}

void *pa_crt_aligned_offset_malloc(pa_process_t *p, size_t size, size_t alignment, size_t offset)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return _pa_crt_dbg_aligned_malloc(p, c, size, alignment, offset, NULL, 0,
                                          PA_CRT_FAMILY_MALLOC);
    return aligned_offset_malloc_base(p, c, size, alignment, offset, "_aligned_offset_malloc");
}

void *pa_crt_aligned_realloc(pa_process_t *p, void *block, size_t size, size_t alignment)
{
    GET_STATE(p, c, NULL);
    if (c->debug) return _pa_crt_dbg_aligned_realloc(p, c, block, size, alignment, 0, NULL, 0);
    return aligned_offset_realloc_base(p, c, block, size, alignment, 0, "_aligned_realloc");
}

void *pa_crt_aligned_offset_realloc(pa_process_t *p, void *block, size_t size, size_t alignment,
                                    size_t offset)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return _pa_crt_dbg_aligned_realloc(p, c, block, size, alignment, offset, NULL, 0);
    return aligned_offset_realloc_base(p, c, block, size, alignment, offset,
                                       "_aligned_offset_realloc");
}

void *pa_crt_aligned_recalloc(pa_process_t *p, void *block, size_t count, size_t size,
                              size_t alignment)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return _pa_crt_dbg_aligned_recalloc(p, c, block, count, size, alignment, 0, NULL, 0);
    return aligned_offset_recalloc_base(p, c, block, count, size, alignment, 0,
                                        "_aligned_recalloc");
}

void *pa_crt_aligned_offset_recalloc(pa_process_t *p, void *block, size_t count, size_t size,
                                     size_t alignment, size_t offset)
{
    GET_STATE(p, c, NULL);
    if (c->debug)
        return _pa_crt_dbg_aligned_recalloc(p, c, block, count, size, alignment, offset, NULL, 0);
    return aligned_offset_recalloc_base(p, c, block, count, size, alignment, offset,
                                        "_aligned_offset_recalloc");
}

void pa_crt_aligned_free(pa_process_t *p, void *block)
{
    if (!block) return;
    GET_STATE(p, c, );
    _pa_trace_layer(p, PA_LAYER_CRT, PA_OP_ALIGNED_FREE, (uintptr_t)block, 0, 0, 0, 0);
    if (c->debug) _pa_crt_dbg_aligned_free(p, c, block, PA_CRT_FAMILY_MALLOC);
    else aligned_free_base(p, block);
}

size_t pa_crt_aligned_msize(pa_process_t *p, void *block, size_t alignment, size_t offset)
{
    GET_STATE(p, c, (size_t)-1);
    if (c->debug) return _pa_crt_dbg_aligned_msize(p, c, block, alignment, offset);
    return aligned_msize_base(p, c, block, alignment, offset);
}

void pa_crt_stats(pa_process_t *p, pa_crt_stats_t *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return;
    pthread_mutex_lock(&c->lock);
    out->debug = c->debug;
    out->dbg_flag = c->debug ? c->dbg_flag : 0;
    out->next_request = c->next_request;
    if (c->debug) { /* the CRT lock is recursive */
        _CrtMemState s;
        _pa_crt_dbg_counts(p, c, &s);
        for (int t = 0; t < _MAX_BLOCKS; t++) {
            out->counts[t] = s.lCounts[t];
            out->sizes[t] = s.lSizes[t];
        }
    }
    out->high_water = c->max_current;
    out->total = c->total;
    memcpy(out->reports, c->reports, sizeof out->reports);
    out->mismatches = c->mismatches;
    out->break_hits = c->break_hits;
    out->invalid_parameters = c->invalid_parameters;
    out->new_handler_calls = c->new_handler_calls;
    pthread_mutex_unlock(&c->lock);
}
