/* new.c: layer 5, vcruntime's operator new/delete and MSVC's new[]/delete[] expressions over
 * layer 4 (heap.md 1.14-1.16).
 *
 * Owns the operator new loop (malloc or _aligned_malloc, then the new handler, then "throw"),
 * the per-thread status that stands for C++'s exceptions, the process's throw hook, and the
 * array cookie. operator delete is free / _aligned_free in a release process and
 * _free_dbg(block, _UNKNOWN_BLOCK) in a debug one, where the debug CRT also compares how the
 * block was allocated (malloc, new, new[]) with how it is released.
 *
 * Array cookie (MSVC ABI, heap.md fact 86): only for element types with a non-trivial
 * destructor; max(sizeof(size_t), alignof(T)) bytes at the start of the allocation, the count
 * in its first size_t, the array right after it.
 */
#include <stdint.h>
#include <string.h>

#include "crt_internal.h"

static __thread int new_status;

int pa_new_status(void) { return new_status; }

pa_crt_new_handler_t pa_set_new_handler(pa_process_t *p, pa_crt_new_handler_t handler, void *ctx)
{
    return pa_crt_set_new_handler(p, handler, ctx);
}

pa_new_throw_hook_t pa_set_new_throw_hook(pa_process_t *p, pa_new_throw_hook_t hook, void *ctx)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return NULL;
    pthread_mutex_lock(&c->lock);
    pa_new_throw_hook_t old = c->throw_hook;
    c->throw_hook = hook;
    c->throw_hook_ctx = ctx;
    pthread_mutex_unlock(&c->lock);
    return old;
}

/* Where vcruntime throws: bad_array_new_length for SIZE_MAX, bad_alloc otherwise. The nothrow
 * overloads catch it: the status is set, the hook is not called. */
static void *fail(pa_process_t *p, pa_crt_t *c, size_t size, unsigned flags)
{
    int st = size == SIZE_MAX ? PA_NEW_BAD_ARRAY_NEW_LENGTH : PA_NEW_BAD_ALLOC;
    new_status = st;
    if (c && !(flags & PA_NEW_NOTHROW)) {
        pthread_mutex_lock(&c->lock);
        pa_new_throw_hook_t hook = c->throw_hook;
        void *ctx = c->throw_hook_ctx;
        pthread_mutex_unlock(&c->lock);
        if (hook) hook(p, st, size, ctx);
    }
    return NULL;
}

/* One operator new: the allocation loop of fact 84. */
static void *new_loop(pa_process_t *p, pa_crt_t *c, size_t size, size_t align, unsigned flags,
                      int use, const char *file, int line)
{
    int family = (flags & PA_NEW_ARRAY) ? PA_CRT_FAMILY_NEW_ARRAY : PA_CRT_FAMILY_NEW;
    for (;;) {
        void *b;
        if (align)
            b = c->debug ? _pa_crt_dbg_aligned_malloc(p, c, size, align, 0, file, line, family)
                         : _pa_crt_aligned_malloc_base(p, c, size, align);
        else
            b = c->debug ? _pa_crt_dbg_malloc(p, c, size, use, file, line, family)
                         : _pa_crt_malloc_base(p, c, size);
        if (b) {
            new_status = PA_NEW_OK;
            return b;
        }
        if (!pa_crt_callnewh(p, size)) return fail(p, c, size, flags);
    }
}

void *pa_operator_new(pa_process_t *p, size_t size, size_t align, unsigned flags)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return fail(p, NULL, size, flags);
    void *r = new_loop(p, c, size, align, flags, _NORMAL_BLOCK, NULL, 0);
    _pa_trace_layer(p, PA_LAYER_NEW, (flags & PA_NEW_ARRAY) ? PA_OP_NEW_ARRAY : PA_OP_NEW,
                    (uintptr_t)r, size, flags, align, r ? 0 : pa_new_status());
    return r;
}

void *pa_operator_new_dbg(pa_process_t *p, size_t size, unsigned flags, int block_use,
                          const char *file, int line)
{
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return fail(p, NULL, size, flags);
    if (!c->debug) return new_loop(p, c, size, 0, flags, _NORMAL_BLOCK, NULL, 0);
    return new_loop(p, c, size, 0, flags, block_use, file, line);
}

void pa_operator_delete(pa_process_t *p, void *block, size_t size, size_t align, unsigned flags)
{
    (void)size; /* the sized overloads forward to the unsized ones */
    if (!block) return;
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return;
    _pa_trace_layer(p, PA_LAYER_NEW, (flags & PA_NEW_ARRAY) ? PA_OP_DELETE_ARRAY : PA_OP_DELETE,
                    (uintptr_t)block, size, flags, align, 0);
    int family = (flags & PA_NEW_ARRAY) ? PA_CRT_FAMILY_NEW_ARRAY : PA_CRT_FAMILY_NEW;
    if (align) {
        if (c->debug) _pa_crt_dbg_aligned_free(p, c, block, family);
        else _pa_crt_aligned_free_base(p, block);
    } else {
        if (c->debug) _pa_crt_dbg_free(p, c, block, _UNKNOWN_BLOCK, family);
        else _pa_crt_free_base(p, block);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* new and delete expressions                                                                 */

/* The align_val_t argument C++ passes for alignment align, or 0 for the plain overloads. */
static size_t overload_align(size_t align)
{
    return align > PA_DEFAULT_NEW_ALIGNMENT ? align : 0;
}

size_t pa_new_array_cookie_size(size_t elem_align, int has_dtor)
{
    if (!has_dtor) return 0;
    return elem_align > sizeof(size_t) ? elem_align : sizeof(size_t);
}

size_t pa_new_array_count(const void *array, size_t elem_align)
{
    size_t n;
    memcpy(&n, (const char *)array - pa_new_array_cookie_size(elem_align, 1), sizeof n);
    return n;
}

void *pa_new_array(pa_process_t *p, size_t elem_size, size_t elem_align, size_t count,
                   int has_dtor, pa_ctor_t ctor, pa_dtor_t dtor, void *ctx)
{
    size_t cookie = pa_new_array_cookie_size(elem_align, has_dtor);
    size_t align = overload_align(elem_align);
    size_t bytes = SIZE_MAX; /* what MSVC passes when the size overflows */
    if (!elem_size || count <= (SIZE_MAX - cookie) / elem_size) bytes = elem_size * count + cookie;
    char *raw = pa_operator_new(p, bytes, align, PA_NEW_ARRAY);
    if (!raw) return NULL;
    if (cookie) memcpy(raw, &count, sizeof count);
    char *array = raw + cookie;
    for (size_t i = 0; ctor && i < count; i++) {
        if (ctor(array + i * elem_size, ctx) == 0) continue;
        for (size_t j = i; has_dtor && dtor && j-- > 0;) dtor(array + j * elem_size, ctx);
        pa_operator_delete(p, raw, bytes, align, PA_NEW_ARRAY | PA_NEW_SIZED);
        new_status = PA_NEW_CTOR_FAILED;
        return NULL;
    }
    new_status = PA_NEW_OK;
    return array;
}

/* Reads the count of the array whose allocation is raw, if raw is a CRT block (asked of the
 * CRT before anything is read) holding a cookie and that many elements; else 0. */
static int read_cookie(pa_process_t *p, char *raw, size_t align, size_t elem_size, size_t cookie,
                       size_t *n)
{
    if ((uintptr_t)raw < PA_PAGE_SIZE) return 0;
    size_t have = align ? pa_crt_aligned_msize(p, raw, align, 0) : pa_crt_msize(p, raw);
    if (have == (size_t)-1 || have < cookie) return 0;
    memcpy(n, raw, sizeof *n);
    return !elem_size || *n <= (have - cookie) / elem_size;
}

void pa_delete_array(pa_process_t *p, void *array, size_t elem_size, size_t elem_align,
                     int has_dtor, pa_dtor_t dtor, void *ctx)
{
    if (!array) return;
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return;
    size_t cookie = pa_new_array_cookie_size(elem_align, has_dtor);
    size_t align = overload_align(elem_align);
    char *raw = (char *)array - cookie;
    size_t bytes = 0;
    if (cookie) {
        if (c->debug && _pa_crt_dbg_family(p, c, raw) < 0) {
            /* No block starts at the cookie: a delete[] of what new (or malloc) made? */
            int f = _pa_crt_dbg_family(p, c, array);
            if (f >= 0) _pa_crt_dbg_report_mismatch(p, c, array, f, PA_CRT_FAMILY_NEW_ARRAY);
            else pa_operator_delete(p, raw, 0, align, PA_NEW_ARRAY); /* reports the pointer */
            return;
        }
        size_t n;
        if (!read_cookie(p, raw, align, elem_size, cookie, &n)) {
            errno = EINVAL;
            return;
        }
        for (size_t i = n; dtor && i-- > 0;) dtor((char *)array + i * elem_size, ctx);
        bytes = n * elem_size + cookie;
    }
    pa_operator_delete(p, raw, bytes, align, PA_NEW_ARRAY | PA_NEW_SIZED);
}

void *pa_new_object(pa_process_t *p, size_t size, size_t align, pa_ctor_t ctor, void *ctx)
{
    size_t a = overload_align(align);
    void *obj = pa_operator_new(p, size, a, 0);
    if (!obj) return NULL;
    if (ctor && ctor(obj, ctx)) {
        pa_operator_delete(p, obj, size, a, PA_NEW_SIZED);
        new_status = PA_NEW_CTOR_FAILED;
        return NULL;
    }
    return obj;
}

void pa_delete_object(pa_process_t *p, void *obj, size_t size, size_t align, pa_dtor_t dtor,
                      void *ctx)
{
    if (!obj) return;
    pa_crt_t *c = _pa_crt_get(p);
    if (!c) return;
    size_t a = overload_align(align);
    if (c->debug && _pa_crt_dbg_family(p, c, obj) < 0) {
        /* Not a block: the first element of a new[] array with a cookie? */
        char *raw = (char *)obj - pa_new_array_cookie_size(align, 1);
        int f = _pa_crt_dbg_family(p, c, raw);
        if (f >= 0) _pa_crt_dbg_report_mismatch(p, c, raw, f, PA_CRT_FAMILY_NEW);
        else pa_operator_delete(p, obj, size, a, PA_NEW_SIZED); /* reports the pointer */
        return;
    }
    if (dtor) dtor(obj, ctx);
    pa_operator_delete(p, obj, size, a, PA_NEW_SIZED);
}
