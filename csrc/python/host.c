/* host.c: pyalloc.host(), the program's own process, read-only (csrc/preload/host.h).
 *
 * Under `pyalloc run -- python ...` the preload library serves the interpreter's mallocs from
 * its current process; this file reaches that process through the table the library exports,
 * never through the extension's own copy of the stack. Every function here only copies data
 * out: the interpreter's memory cannot be freed or changed from Python this way.
 *
 * The tables are copied into PyMem buffers before any Python object is made: making one
 * allocates (from the very heap being looked at, under the preload library), and the walk
 * holds that heap's lock. */
#include <dlfcn.h>

#include "binding.h"
#include "preload/host.h"

/* The preload library's table, if it is loaded and of this build's layout; else NULL. */
static const pa_host_api_t *host_api(void)
{
    const pa_host_api_t *(*get)(void);
    *(void **)&get = dlsym(RTLD_DEFAULT, PA_HOST_SYMBOL);
    if (!get) return NULL;
    const pa_host_api_t *t = get();
    if (!t || t->abi != PA_HOST_ABI || t->size != sizeof *t ||
        t->region_size != sizeof(pa_region_info_t) || t->entry_size != sizeof(PROCESS_HEAP_ENTRY) ||
        t->stats_size != sizeof(pa_heap_stats_t) || t->vm_size != sizeof(pa_vm_stats_t))
        return NULL;
    return t;
}

static const pa_host_api_t *need_host(void)
{
    const pa_host_api_t *t = host_api();
    if (!t)
        PyErr_SetString(PyExc_RuntimeError,
                        "the program does not run on pyalloc's preload library (pyalloc run)");
    return t;
}

/* Calls fill(out, cap) until the table fits; returns a PyMem buffer of *n entries of `size`
 * bytes, or NULL with an exception set. fill returns
 * (size_t)-1 for an error, passed on in *failed. */
typedef size_t (*fill_fn)(void *ctx, void *out, size_t cap);
static void *fill_all(fill_fn fill, void *ctx, size_t size, size_t *n, int *failed)
{
    size_t cap = 64;
    *failed = 0;
    *n = 0;
    for (;;) {
        void *buf = PyMem_Calloc(cap, size);
        if (!buf) return PyErr_NoMemory();
        size_t got = fill(ctx, buf, cap);
        if (got == (size_t)-1) {
            PyMem_Free(buf);
            *failed = 1;
            return NULL;
        }
        if (got <= cap) {
            *n = got;
            return buf;
        }
        PyMem_Free(buf);
        cap = got + got / 4 + 16; /* it may have grown by the time it is called again */
    }
}

static size_t fill_regions(void *ctx, void *out, size_t cap)
{
    return ((const pa_host_api_t *)ctx)->regions(out, cap);
}

static size_t fill_heaps(void *ctx, void *out, size_t cap)
{
    return ((const pa_host_api_t *)ctx)->heaps(out, cap);
}

typedef struct {
    const pa_host_api_t *t;
    HANDLE heap;
    DWORD error;
} walk_ctx_t;

static size_t fill_walk(void *ctx, void *out, size_t cap)
{
    walk_ctx_t *w = ctx;
    return w->t->heap_walk(w->heap, out, cap, &w->error);
}

/* A list of make(ctx, item) for the n items of `size` bytes at buf; frees buf. */
static PyObject *list_of(void *buf, size_t n, size_t size, PyObject *(*make)(void *ctx, const void *item),
                         void *ctx)
{
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *item = make(ctx, (const char *)buf + i * size);
        if (!item) Py_CLEAR(list);
        else PyList_SET_ITEM(list, (Py_ssize_t)i, item);
    }
    PyMem_Free(buf);
    return list;
}

static PyObject *make_region(void *ctx, const void *item)
{
    (void)ctx;
    return pa_region_tuple(item);
}

static PyObject *make_handle(void *ctx, const void *item)
{
    (void)ctx;
    return PyLong_FromVoidPtr(*(HANDLE const *)item);
}

static PyObject *make_entry(void *ctx, const void *item) { return pa_heap_entry_new(ctx, item); }

static PyObject *host_available(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return PyBool_FromLong(host_api() != NULL);
}

/* One of the program's tables (fill: fill_regions or fill_heaps), as a list. */
static PyObject *host_table(fill_fn fill, size_t size, PyObject *(*make)(void *ctx, const void *item))
{
    const pa_host_api_t *t = need_host();
    size_t n;
    int failed;
    if (!t) return NULL;
    void *buf = fill_all(fill, (void *)t, size, &n, &failed);
    return buf ? list_of(buf, n, size, make, NULL) : NULL;
}

static PyObject *host_regions(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return host_table(fill_regions, sizeof(pa_region_info_t), make_region);
}

static PyObject *host_stats(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    const pa_host_api_t *t = need_host();
    if (!t) return NULL;
    pa_vm_stats_t s;
    t->vm_stats(&s);
    return pa_vm_stats_dict(&s);
}

static PyObject *host_process_heap(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    const pa_host_api_t *t = need_host();
    if (!t) return NULL;
    return PyLong_FromVoidPtr(t->process_heap());
}

static PyObject *host_heaps(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    (void)module;
    return host_table(fill_heaps, sizeof(HANDLE), make_handle);
}

static PyObject *host_heap_stats(PyObject *module, PyObject *arg)
{
    const pa_host_api_t *t = need_host();
    uintptr_t heap;
    if (!t || pa_arg_ptr(arg, &heap)) return NULL;
    pa_heap_stats_t s;
    DWORD error;
    if (!t->heap_stats((HANDLE)heap, &s, &error)) return pa_raise_win_error(pa_get_state(module), error);
    return pa_heap_stats_dict(&s);
}

static PyObject *host_heap_walk(PyObject *module, PyObject *arg)
{
    const pa_host_api_t *t = need_host();
    uintptr_t heap;
    if (!t || pa_arg_ptr(arg, &heap)) return NULL;
    walk_ctx_t w = {t, (HANDLE)heap, 0};
    size_t n;
    int failed;
    PROCESS_HEAP_ENTRY *e = fill_all(fill_walk, &w, sizeof *e, &n, &failed);
    pa_state *st = pa_get_state(module);
    if (failed) return pa_raise_win_error(st, w.error);
    return e ? list_of(e, n, sizeof *e, make_entry, st) : NULL;
}

PyMethodDef pa_host_functions[] = {
    {"_host_available", host_available, METH_NOARGS,
     "_host_available($module, /)\n--\n\nTrue when the program runs on pyalloc's preload "
     "library of this build (pyalloc run)."},
    {"_host_regions", host_regions, METH_NOARGS,
     "_host_regions($module, /)\n--\n\nThe program's address space, as Process._walk()."},
    {"_host_stats", host_stats, METH_NOARGS,
     "_host_stats($module, /)\n--\n\nThe program's memory statistics, as Process.stats()."},
    {"_host_process_heap", host_process_heap, METH_NOARGS,
     "_host_process_heap($module, /)\n--\n\nThe handle of the program's process heap (int)."},
    {"_host_heaps", host_heaps, METH_NOARGS,
     "_host_heaps($module, /)\n--\n\nThe handles of the program's heaps (GetProcessHeaps)."},
    {"_host_heap_stats", host_heap_stats, METH_O,
     "_host_heap_stats($module, heap, /)\n--\n\nHeap.stats() of one of the program's heaps."},
    {"_host_heap_walk", host_heap_walk, METH_O,
     "_host_heap_walk($module, heap, /)\n--\n\nEvery HeapWalk entry of one of the program's "
     "heaps (a list of PROCESS_HEAP_ENTRY), taken under its HeapLock."},
    {NULL, NULL, 0, NULL},
};
