/* crt.c: layer 4 from Python: UCRT's malloc family (malloc ... _aligned_msize, _set_new_mode,
 * set_new_handler, _get_heap_handle) and the debug CRT (_CrtSetDbgFlag, _CrtCheckMemory,
 * _CrtDumpMemoryLeaks, _CrtSetBreakAlloc ...), and the Python side of each process's CRT.
 *
 * Results and errors. Blocks are ints; a NULL that means success (realloc(p, 0) freed p) is
 * None. A failure raises by the errno the CRT set: CrtMemoryError (ENOMEM; a MemoryError),
 * CrtInvalidParameter (EINVAL; a ValueError), CrtError otherwise (all OSErrors with .errno).
 * Freeing or moving a block that a live memoryview exports raises BufferError.
 *
 * Speed. malloc and free of a release process take a fast path: positional arguments without
 * pa_parse_args, one compare of crt_mode, the CRT call, and no heap lookup unless the process
 * has live exports. Everything else (keywords, the debug CRT, a process not yet asked) goes
 * the general way.
 *
 * The debug CRT. Its allocations record the Python caller's file and line (interned for the
 * life of the interpreter: the CRT keeps the pointer in the block header). Its reports reach
 * Python through a report hook, which only copies them (it runs under the CRT's lock, where no
 * Python code may run: that code could release the GIL to a thread that then waits on the
 * lock); pa_crt_flush turns them into CrtReport warnings once the C call has returned. Leak
 * dumps go to sys.stderr. _CrtSetBreakAlloc(n, callback) calls callback(n, address) after the
 * allocation numbered n; without a callback that allocation makes a CrtReport warning.
 *
 * The new handler (one per process, shared by _set_new_mode(1)'s malloc and operator new) is a
 * Python callable, called with the size: truthy retries, falsy gives up. If it raises, the
 * allocation gives up and the error raised (CrtMemoryError, BadAlloc) has it as __cause__.
 */
#include "binding.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>

#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define STATE(po) pa_get_state((po)->module)

/* ------------------------------------------------------------------------------------------ */
/* The Python side of a process's CRT                                                          */

#define PENDING_BREAK (-1) /* a pending entry that is a break, not a report */

typedef struct {
    int kind;        /* PA_CRT_REPORT_* or PENDING_BREAK */
    int type;        /* _CRT_WARN, _CRT_ERROR, _CRT_ASSERT */
    long request;
    uintptr_t block;
    char *message;   /* PyMem_Raw, or NULL */
} pending_t;

/* Allocated on first need, freed by pa_crt_process_closed. The C hooks of the process point
 * at it (their ctx) from install until then; they fill `pending` under the CRT lock with the
 * GIL held by the calling thread, and pa_crt_flush empties it with the GIL held. */
typedef struct pa_crt_binding_s {
    PyObject *new_handler;    /* the process's new handler, or NULL */
    PyObject *break_callback; /* _CrtSetBreakAlloc's callback, or NULL */
    pending_t *pending;
    size_t npending, cap;
    int in_handler;           /* new handlers running (a CRT call is under way: no close) */
    PyObject *process;        /* the Process it belongs to (borrowed: it frees the binding) */
} binding_t;

static binding_t *binding_of(ProcessObject *po)
{
    if (!po->crt) {
        if (!(po->crt = PyMem_Calloc(1, sizeof(binding_t)))) return (binding_t *)PyErr_NoMemory();
        po->crt->process = (PyObject *)po;
    }
    return po->crt;
}

static int pending_push(binding_t *b, int kind, int type, long request, uintptr_t block,
                        const char *message)
{
    if (b->npending == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        pending_t *n = PyMem_RawRealloc(b->pending, cap * sizeof *n);
        if (!n) return -1;
        b->pending = n;
        b->cap = cap;
    }
    char *m = NULL;
    if (message) {
        size_t len = strlen(message);
        if (!(m = PyMem_RawMalloc(len + 1))) return -1;
        memcpy(m, message, len + 1);
    }
    b->pending[b->npending++] = (pending_t){kind, type, request, block, m};
    return 0;
}

/* Under the CRT lock: copy only. Unhandled (0) when out of memory: the CRT prints it. */
static int report_hook(pa_process_t *p, const pa_crt_report_t *r, void *ctx)
{
    (void)p;
    return pending_push(ctx, r->kind, r->type, r->request, (uintptr_t)r->block, r->message) == 0;
}

static void break_hook(pa_process_t *p, long request, void *ctx)
{
    (void)p;
    pending_push(ctx, PENDING_BREAK, _CRT_WARN, request, 0, NULL);
}

/* Outside the CRT lock, GIL held (every caller of the CRT here holds it). */
static int new_handler(pa_process_t *p, size_t size, void *ctx)
{
    (void)p;
    binding_t *b = ctx;
    PyGILState_STATE g = PyGILState_Ensure();
    int retry = 0;
    if (b->new_handler && !PyErr_Occurred()) {
        PyObject *h = Py_NewRef(b->new_handler), *n = PyLong_FromSize_t(size), *r = NULL;
        b->in_handler++;
        if (n) r = PyObject_CallOneArg(h, n);
        b->in_handler--;
        Py_XDECREF(n);
        Py_DECREF(h);
        if (r) {
            retry = PyObject_IsTrue(r);
            Py_DECREF(r);
            if (retry < 0) retry = 0; /* the exception stays pending */
        }
        /* The retry takes the heap's lock, which the handler may have let a thread take. */
        if (retry && pa_wait_heap_unlocked(b->process, NULL)) retry = 0;
    }
    PyGILState_Release(g);
    return retry;
}

/* The current process whose CRT reports to this binding, if any. Its CRT outlives Python and
 * dumps its leaks when the program ends (pa_crt_exit, after Python is gone): if its Process
 * object was never freed, that dump must not go to a binding nobody reads any more. */
static pa_process_t *hooked_current;

static void python_ended(void)
{
    pa_crt_set_report_hook(hooked_current, NULL, NULL); /* the CRT prints to stderr itself */
    pa_crt_set_break_hook(hooked_current, NULL, NULL);
    pa_crt_set_new_handler(hooked_current, NULL, NULL);
}

int pa_crt_enter(ProcessObject *po)
{
    if (pa_wait_heap_unlocked((PyObject *)po, NULL)) return -1;
    if (LIKELY(po->crt_mode != PA_CRT_MODE_UNKNOWN)) return po->crt_mode;
    if (!po->p) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
        return -1;
    }
    int debug = pa_crt_is_debug(po->p);
    if (debug) {
        binding_t *b = binding_of(po);
        if (!b) return -1;
        pa_crt_set_report_hook(po->p, report_hook, b);
        if (!po->owned && !hooked_current && Py_AtExit(python_ended) == 0) hooked_current = po->p;
    }
    po->crt_mode = debug ? PA_CRT_MODE_DEBUG : PA_CRT_MODE_RELEASE;
    return po->crt_mode;
}

int pa_crt_process_init(ProcessObject *po, int debug)
{
    if (pa_crt_set_debug(po->p, debug)) {
        PyErr_SetString(PyExc_RuntimeError, "the process's CRT is already in use");
        return -1;
    }
    return pa_crt_enter(po) < 0 ? -1 : 0;
}

PyObject *pa_crt_get_debug(PyObject *self, void *closure)
{
    (void)closure;
    int mode = pa_crt_enter((ProcessObject *)self);
    if (mode < 0) return NULL;
    return PyBool_FromLong(mode == PA_CRT_MODE_DEBUG);
}

int pa_crt_process_traverse(ProcessObject *po, visitproc visit, void *arg)
{
    if (po->crt) {
        Py_VISIT(po->crt->new_handler);
        Py_VISIT(po->crt->break_callback);
    }
    return 0;
}

void pa_crt_process_clear(ProcessObject *po)
{
    if (po->crt) {
        Py_CLEAR(po->crt->new_handler);
        Py_CLEAR(po->crt->break_callback);
    }
}

int pa_crt_process_closing(ProcessObject *po)
{
    if (po->crt && po->crt->in_handler) {
        PyErr_SetString(PyExc_RuntimeError,
                        "cannot close a Process from its new handler: the allocation that "
                        "called it is under way");
        return -1;
    }
    po->crt_mode = PA_CRT_MODE_UNKNOWN; /* a closed process takes the general path */
    return 0;
}

void pa_crt_process_closed(ProcessObject *po, pa_process_t *live)
{
    binding_t *b = po->crt;
    if (!b) return;
    /* The current process lives on: it must not call into a freed binding. */
    if (live) {
        void *ctx = NULL;
        if (pa_crt_query_new_handler(live, &ctx) == new_handler && ctx == b)
            pa_crt_set_new_handler(live, NULL, NULL);
        pa_crt_set_report_hook(live, NULL, NULL);
        pa_crt_set_break_hook(live, NULL, NULL);
    }
    po->crt = NULL; /* detached before any Python code runs: nothing can push onto it now */
    /* What the rundown reported (the leak dump of _CRTDBG_LEAK_CHECK_DF) goes to stderr. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyObject *err = PySys_GetObject("stderr");
    for (size_t i = 0; i < b->npending; i++) {
        if (b->pending[i].message && err && err != Py_None &&
            PyFile_WriteString(b->pending[i].message, err))
            PyErr_Clear();
        PyMem_RawFree(b->pending[i].message);
    }
    PyErr_Restore(type, value, tb);
    PyMem_RawFree(b->pending);
    Py_XDECREF(b->new_handler);
    Py_XDECREF(b->break_callback);
    PyMem_Free(b);
}

/* ------------------------------------------------------------------------------------------ */
/* Call sites                                                                                  */

/* Interned file names: never freed, as the CRT may report a block's file at any time (also
 * of the current process, which outlives every module object). One entry per distinct name. */
typedef struct {
    Py_hash_t hash;
    size_t len;
    char *s;
} name_t;
static name_t *names;
static size_t names_cap, names_count;
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *intern_locked(const char *u, size_t len, Py_hash_t hash)
{
    if ((names_count + 1) * 2 > names_cap) {
        size_t cap = names_cap ? 2 * names_cap : 64;
        name_t *t = PyMem_RawCalloc(cap, sizeof *t);
        if (!t) return NULL;
        for (size_t i = 0; i < names_cap; i++) {
            if (!names[i].s) continue;
            size_t k = (size_t)names[i].hash & (cap - 1);
            while (t[k].s) k = (k + 1) & (cap - 1);
            t[k] = names[i];
        }
        PyMem_RawFree(names);
        names = t;
        names_cap = cap;
    }
    size_t k = (size_t)hash & (names_cap - 1);
    for (; names[k].s; k = (k + 1) & (names_cap - 1))
        if (names[k].hash == hash && names[k].len == len && !memcmp(names[k].s, u, len))
            return names[k].s;
    char *s = PyMem_RawMalloc(len + 1);
    if (!s) return NULL;
    memcpy(s, u, len);
    s[len] = 0;
    names[k] = (name_t){hash, len, s};
    names_count++;
    return s;
}

static const char *intern_name(PyObject *str)
{
    Py_ssize_t len;
    const char *u = PyUnicode_AsUTF8AndSize(str, &len);
    Py_hash_t hash = u ? PyObject_Hash(str) : -1;
    if (hash == -1) return NULL;
    pthread_mutex_lock(&names_lock);
    const char *s = intern_locked(u, (size_t)len, hash);
    pthread_mutex_unlock(&names_lock);
    if (!s) PyErr_NoMemory();
    return s;
}

/* The last code object seen and its interned file name (a strong reference, so that the
 * pointer cannot name another code object): most allocations come from the code that made
 * the previous one. Guarded by the GIL, like the frames it is taken from. */
static PyObject *last_code;
static const char *last_file;

int pa_crt_call_site(const char **file, int *line)
{
    static PyObject *co_filename; /* the attribute's name, interned once */
    *file = NULL;
    *line = 0;
    PyFrameObject *f = PyEval_GetFrame(); /* borrowed; NULL outside Python code */
    if (!f) return 0;
    *line = PyFrame_GetLineNumber(f);
    PyObject *code = (PyObject *)PyFrame_GetCode(f);
    if (code == last_code) {
        Py_DECREF(code);
        *file = last_file;
        return 0;
    }
    if (!co_filename && !(co_filename = PyUnicode_InternFromString("co_filename"))) {
        Py_DECREF(code);
        return -1;
    }
    PyObject *name = PyObject_GetAttr(code, co_filename);
    if (name && PyUnicode_Check(name) && (*file = intern_name(name)) != NULL) {
        Py_XSETREF(last_code, code); /* takes the reference */
        last_file = *file;
        code = NULL;
    }
    Py_XDECREF(code);
    int failed = !name || (PyUnicode_Check(name) && !*file);
    Py_XDECREF(name);
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Reports, breaks and errors                                                                  */

static int warn_report(ProcessObject *po, const pending_t *e)
{
    const char *m = e->message ? e->message : "";
    size_t len = strlen(m);
    while (len && m[len - 1] == '\n') len--;
    PyObject *w = NULL, *warnings = NULL, *r = NULL;
    PyObject *text = PyUnicode_DecodeUTF8(m, (Py_ssize_t)len, "replace");
    if (text)
        w = PyObject_CallFunction(STATE(po)->CrtReport, "OiiKl", text, e->type, e->kind,
                                  (unsigned long long)e->block, e->request);
    if (w) warnings = PyImport_ImportModule("warnings");
    if (warnings) r = PyObject_CallMethod(warnings, "warn", "O", w); /* at the caller's line */
    Py_XDECREF(text);
    Py_XDECREF(w);
    Py_XDECREF(warnings);
    Py_XDECREF(r);
    return r ? 0 : -1;
}

/* The binding is read anew for every entry: Python code run for one may close the process. */
static int deliver(ProcessObject *po, const pending_t *e, uintptr_t result)
{
    if (e->kind == PENDING_BREAK) {
        binding_t *b = po->crt;
        if (!b || !b->break_callback) return 0;
        PyObject *cb = Py_NewRef(b->break_callback);
        PyObject *r = PyObject_CallFunction(cb, "lK", e->request, (unsigned long long)result);
        Py_DECREF(cb);
        Py_XDECREF(r);
        return r ? 0 : -1;
    }
    if (e->kind == PA_CRT_REPORT_LEAK) { /* a line of a dump: text, as MSVC's output window */
        PyObject *err = PySys_GetObject("stderr");
        return err && err != Py_None && e->message ? PyFile_WriteString(e->message, err) : 0;
    }
    return warn_report(po, e);
}

int pa_crt_flush(ProcessObject *po, uintptr_t result)
{
    binding_t *b = po->crt;
    if (LIKELY(!b || !b->npending)) return 0;
    if (!po->module) return 0; /* being collected: pa_crt_process_closed prints them */
    /* Take the list: Python code run below may let another thread add to a new one. */
    pending_t *list = b->pending;
    size_t n = b->npending;
    b->pending = NULL;
    b->npending = b->cap = 0;
    /* An exception pending from the new handler waits until the reports are out. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (!rc) rc = deliver(po, &list[i], result);
        PyMem_RawFree(list[i].message);
    }
    PyMem_RawFree(list);
    if (rc) {
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    PyErr_Restore(type, value, tb);
    return 0;
}

/* Raises cls(*args) with the exception pending from a new handler (if any) as its __cause__;
 * a pending exception that is no Exception (KeyboardInterrupt, SystemExit) propagates as it
 * is. Returns NULL. */
static PyObject *raise_chained(PyObject *cls, const char *format, ...)
{
    PyObject *cause = NULL;
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
        PyObject *type, *tb;
        PyErr_Fetch(&type, &cause, &tb);
        PyErr_NormalizeException(&type, &cause, &tb);
        if (tb && cause) PyException_SetTraceback(cause, tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
    }
    va_list ap;
    va_start(ap, format);
    PyObject *args = Py_VaBuildValue(format, ap);
    va_end(ap);
    PyObject *exc = args ? PyObject_CallObject(cls, args) : NULL;
    Py_XDECREF(args);
    if (exc && cause) {
        PyException_SetContext(exc, Py_NewRef(cause)); /* both steal */
        PyException_SetCause(exc, Py_NewRef(cause));
    }
    Py_XDECREF(cause);
    if (!exc) return NULL;
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
    return NULL;
}

PyObject *pa_crt_raise_errno(ProcessObject *po, int err, const char *function)
{
    pa_state *st = STATE(po);
    if (!err) err = EINVAL;
    PyObject *cls = err == ENOMEM   ? st->CrtMemoryError
                    : err == EINVAL ? st->CrtInvalidParameter
                                    : st->CrtError;
    return raise_chained(cls, "(is)", err, function);
}

/* BadAlloc or BadArrayNewLength, for a failed operator new (also used by new.c). */
PyObject *pa_crt_raise_bad_alloc(ProcessObject *po, int status, size_t size)
{
    pa_state *st = STATE(po);
    PyObject *cls = status == PA_NEW_BAD_ARRAY_NEW_LENGTH ? st->BadArrayNewLength : st->BadAlloc;
    return raise_chained(cls, "(K)", (unsigned long long)size);
}

int pa_crt_check_not_exported(ProcessObject *po, uintptr_t address)
{
    void *block;
    size_t size;
    if (!address || !po->exports ||
        pa_heap_find_block(po->p, (void *)address, 0, NULL, &block, &size) != STATUS_SUCCESS)
        return 0;
    /* The exports' exact byte ranges: a view of a neighbour on the same page is no reason. */
    if (!pa_export_overlaps(po, (uintptr_t)block, size ? size : 1)) return 0;
    PyErr_SetString(PyExc_BufferError,
                    "the block is exported to a live memoryview; release it first");
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments and results                                                                       */

static int arg_int(PyObject *o, int *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "an int is required, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < INT32_MIN || v > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "the value does not fit a C int");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The mode, with the call site when it is the debug CRT; -1 raised. */
static int enter_site(ProcessObject *po, const char **file, int *line)
{
    *file = NULL;
    *line = 0;
    int mode = pa_crt_enter(po);
    if (mode == PA_CRT_MODE_DEBUG && pa_crt_call_site(file, line)) return -1;
    return mode;
}

/* The end of a call that returns a block: r (an int), None when a NULL r is the call's
 * success (null_ok: realloc to 0 bytes freed the block), or the errno's exception. */
static PyObject *block_result(ProcessObject *po, void *r, int err, int null_ok, const char *fname)
{
    if (pa_crt_flush(po, (uintptr_t)r)) return NULL;
    if (r) return PyLong_FromVoidPtr(r);
    if (null_ok && !PyErr_Occurred()) Py_RETURN_NONE;
    return pa_crt_raise_errno(po, err, fname);
}

/* The end of a call without a result (free and its kind): errno set means it failed. */
static PyObject *void_result(ProcessObject *po, int err, const char *fname)
{
    if (pa_crt_flush(po, 0)) return NULL;
    if (err) return pa_crt_raise_errno(po, err, fname);
    Py_RETURN_NONE;
}

static PyObject *size_result(ProcessObject *po, size_t n, int err, const char *fname)
{
    if (pa_crt_flush(po, 0)) return NULL;
    if (n == (size_t)-1) return pa_crt_raise_errno(po, err, fname);
    return PyLong_FromSize_t(n);
}

#define SELF ((ProcessObject *)self)

/* ------------------------------------------------------------------------------------------ */
/* malloc and free                                                                             */

PyObject *malloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"size", NULL};
    PyObject *a[1] = {NULL};
    size_t size;
    const char *file;
    int line;
    if (pa_parse_fast("malloc", args, nargs, kwnames, names, 1, a) || pa_arg_size_fast(a[0], &size))
        return NULL;
    if (LIKELY(SELF->crt_mode == PA_CRT_MODE_RELEASE && !pa_py_heap_locks)) {
        void *r = pa_crt_malloc(SELF->p, size);
        if (LIKELY(r != NULL)) return PyLong_FromVoidPtr(r);
        return block_result(SELF, NULL, errno, 0, "malloc");
    }
    int mode = enter_site(SELF, &file, &line);
    if (mode < 0) return NULL;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_malloc_dbg(SELF->p, size, _NORMAL_BLOCK, file, line)
                  : pa_crt_malloc(SELF->p, size);
    return block_result(SELF, r, errno, 0, "malloc");
}

PyObject *free_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    if (pa_parse_fast("free", args, nargs, kwnames, names, 1, a) || pa_arg_ptr_fast(a[0], &address))
        return NULL;
    if (LIKELY(SELF->crt_mode == PA_CRT_MODE_RELEASE && !pa_py_heap_locks)) {
        if (UNLIKELY(SELF->exports) && pa_crt_check_not_exported(SELF, address)) return NULL;
        errno = 0;
        pa_crt_free(SELF->p, (void *)address);
        if (LIKELY(!errno)) Py_RETURN_NONE;
        return pa_crt_raise_errno(SELF, errno, "free");
    }
    if (pa_crt_enter(SELF) < 0 || pa_crt_check_not_exported(SELF, address)) return NULL;
    errno = 0;
    pa_crt_free(SELF->p, (void *)address);
    return void_result(SELF, errno, "free");
}

/* The module-level versions find the current process without calling out of this file
 * (a call through the PLT to PyModule_GetState costs a tenth of the pair): fast_module is the
 * module (its instance made last), whose state they read from fast_state. */
static PyObject *fast_module;
static pa_state *fast_state;

void pa_crt_module_clear(PyObject *module)
{
    if (fast_module == module) fast_module = NULL, fast_state = NULL;
}

static inline PyObject *current(PyObject *module)
{
    pa_state *st = LIKELY(module == fast_module) ? fast_state : pa_get_state(module);
    return LIKELY(st->current != NULL) ? st->current : pa_current_process(module);
}

static PyObject *mod_malloc(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    PyObject *self = current(module);
    return self ? malloc_impl(self, args, nargs, kwnames) : NULL;
}

static PyObject *mod_free(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    PyObject *self = current(module);
    return self ? free_impl(self, args, nargs, kwnames) : NULL;
}

PyMethodDef pa_crt_module_functions[] = {
    {"malloc", (PyCFunction)(void (*)(void))mod_malloc, METH_FASTCALL | METH_KEYWORDS,
     PA_DOC_malloc},
    {"free", (PyCFunction)(void (*)(void))mod_free, METH_FASTCALL | METH_KEYWORDS, PA_DOC_free},
    {NULL, NULL, 0, NULL},
};

/* ------------------------------------------------------------------------------------------ */
/* The rest of the malloc family                                                               */

PyObject *calloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"count", "size", NULL};
    PyObject *a[2] = {NULL, NULL};
    size_t count, size;
    const char *file;
    int line;
    if (pa_parse_fast("calloc", args, nargs, kwnames, names, 2, a) ||
        pa_arg_size_fast(a[0], &count) ||
        pa_arg_size_fast(a[1], &size))
        return NULL;
    int mode = enter_site(SELF, &file, &line);
    if (mode < 0) return NULL;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_calloc_dbg(SELF->p, count, size, _NORMAL_BLOCK, file, line)
                  : pa_crt_calloc(SELF->p, count, size);
    return block_result(SELF, r, errno, 0, "calloc");
}

/* Parses (address, size) as realloc and _expand take them and enters the CRT at the caller's
 * site: the CRT mode, or -1 with an exception set (BufferError if the block is exported). */
static int address_size_site(PyObject *self, const char *fname, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames, uintptr_t *address,
                             size_t *size, const char **file, int *line)
{
    static const char *const names[] = {"address", "size", NULL};
    PyObject *a[2] = {NULL, NULL};
    if (pa_parse_fast(fname, args, nargs, kwnames, names, 2, a) || pa_arg_ptr_fast(a[0], address) ||
        pa_arg_size_fast(a[1], size))
        return -1;
    int mode = enter_site(SELF, file, line);
    if (mode < 0 || pa_crt_check_not_exported(SELF, *address)) return -1;
    return mode;
}

PyObject *realloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    uintptr_t address;
    size_t size;
    const char *file;
    int line;
    int mode = address_size_site(self, "realloc", args, nargs, kwnames, &address, &size, &file,
                                 &line);
    if (mode < 0) return NULL;
    errno = 0;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_realloc_dbg(SELF->p, (void *)address, size, _NORMAL_BLOCK, file, line)
                  : pa_crt_realloc(SELF->p, (void *)address, size);
    int err = errno;
    /* realloc(p, 0) frees p and returns NULL: None, unless freeing failed. */
    return block_result(SELF, r, err, address && !size && !err, "realloc");
}

PyObject *_msize_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    if (pa_parse_fast("_msize", args, nargs, kwnames, names, 1, a) ||
        pa_arg_ptr_fast(a[0], &address) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    errno = 0;
    size_t n = pa_crt_msize(SELF->p, (void *)address);
    return size_result(SELF, n, errno, "_msize");
}

PyObject *_expand_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    uintptr_t address;
    size_t size;
    const char *file;
    int line;
    int mode = address_size_site(self, "_expand", args, nargs, kwnames, &address, &size, &file,
                                 &line);
    if (mode < 0) return NULL;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_expand_dbg(SELF->p, (void *)address, size, _NORMAL_BLOCK, file, line)
                  : pa_crt_expand(SELF->p, (void *)address, size);
    return block_result(SELF, r, errno, 0, "_expand");
}

PyObject *_recalloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    static const char *const names[] = {"address", "count", "size", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    uintptr_t address;
    size_t count, size;
    const char *file;
    int line;
    if (pa_parse_fast("_recalloc", args, nargs, kwnames, names, 3, a) ||
        pa_arg_ptr_fast(a[0], &address) ||
        pa_arg_size_fast(a[1], &count) || pa_arg_size_fast(a[2], &size))
        return NULL;
    int mode = enter_site(SELF, &file, &line);
    if (mode < 0 || pa_crt_check_not_exported(SELF, address)) return NULL;
    errno = 0;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_recalloc_dbg(SELF->p, (void *)address, count, size, _NORMAL_BLOCK, file,
                                        line)
                  : pa_crt_recalloc(SELF->p, (void *)address, count, size);
    int err = errno;
    return block_result(SELF, r, err, address && (!count || !size) && !err, "_recalloc");
}

/* ------------------------------------------------------------------------------------------ */
/* Aligned blocks                                                                              */

PyObject *_aligned_malloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"size", "alignment", NULL};
    PyObject *a[2] = {NULL, NULL};
    size_t size, alignment;
    const char *file;
    int line;
    if (pa_parse_fast("_aligned_malloc", args, nargs, kwnames, names, 2, a) ||
        pa_arg_size_fast(a[0], &size) || pa_arg_size_fast(a[1], &alignment))
        return NULL;
    int mode = enter_site(SELF, &file, &line);
    if (mode < 0) return NULL;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_aligned_malloc_dbg(SELF->p, size, alignment, file, line)
                  : pa_crt_aligned_malloc(SELF->p, size, alignment);
    return block_result(SELF, r, errno, 0, "_aligned_malloc");
}

PyObject *_aligned_offset_malloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
    static const char *const names[] = {"size", "alignment", "offset", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    size_t size, alignment, offset;
    const char *file;
    int line;
    if (pa_parse_fast("_aligned_offset_malloc", args, nargs, kwnames, names, 3, a) ||
        pa_arg_size_fast(a[0], &size) || pa_arg_size_fast(a[1], &alignment) ||
        pa_arg_size_fast(a[2], &offset))
        return NULL;
    int mode = enter_site(SELF, &file, &line);
    if (mode < 0) return NULL;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_aligned_offset_malloc_dbg(SELF->p, size, alignment, offset, file, line)
                  : pa_crt_aligned_offset_malloc(SELF->p, size, alignment, offset);
    return block_result(SELF, r, errno, 0, "_aligned_offset_malloc");
}

PyObject *_aligned_realloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", "alignment", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    uintptr_t address;
    size_t size, alignment;
    const char *file;
    int line;
    if (pa_parse_fast("_aligned_realloc", args, nargs, kwnames, names, 3, a) ||
        pa_arg_ptr_fast(a[0], &address) || pa_arg_size_fast(a[1], &size) ||
        pa_arg_size_fast(a[2], &alignment))
        return NULL;
    int mode = enter_site(SELF, &file, &line);
    if (mode < 0 || pa_crt_check_not_exported(SELF, address)) return NULL;
    errno = 0;
    void *r = mode == PA_CRT_MODE_DEBUG
                  ? pa_crt_aligned_realloc_dbg(SELF->p, (void *)address, size, alignment, file,
                                               line)
                  : pa_crt_aligned_realloc(SELF->p, (void *)address, size, alignment);
    int err = errno;
    return block_result(SELF, r, err, address && !size && !err, "_aligned_realloc");
}

PyObject *_aligned_free_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    if (pa_parse_fast("_aligned_free", args, nargs, kwnames, names, 1, a) ||
        pa_arg_ptr_fast(a[0], &address) || pa_crt_enter(SELF) < 0 ||
        pa_crt_check_not_exported(SELF, address))
        return NULL;
    errno = 0;
    pa_crt_aligned_free(SELF->p, (void *)address);
    return void_result(SELF, errno, "_aligned_free");
}

PyObject *_aligned_msize_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"address", "alignment", "offset", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    uintptr_t address;
    size_t alignment, offset;
    if (pa_parse_fast("_aligned_msize", args, nargs, kwnames, names, 3, a) ||
        pa_arg_ptr_fast(a[0], &address) || pa_arg_size_fast(a[1], &alignment) ||
        pa_arg_size_fast(a[2], &offset) || pa_crt_enter(SELF) < 0)
        return NULL;
    errno = 0;
    size_t n = pa_crt_aligned_msize(SELF->p, (void *)address, alignment, offset);
    return size_result(SELF, n, errno, "_aligned_msize");
}

/* ------------------------------------------------------------------------------------------ */
/* New mode, new handler, heap handle                                                          */

PyObject *_set_new_mode_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    static const char *const names[] = {"mode", NULL};
    PyObject *a[1] = {NULL};
    int mode;
    if (pa_parse_fast("_set_new_mode", args, nargs, kwnames, names, 1, a) || arg_int(a[0], &mode) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    int old = pa_crt_set_new_mode(SELF->p, mode);
    int err = errno;
    if (pa_crt_flush(SELF, 0)) return NULL;
    if (old < 0) return pa_crt_raise_errno(SELF, err, "_set_new_mode");
    return PyLong_FromLong(old);
}

PyObject *_query_new_mode_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    if (pa_parse_fast("_query_new_mode", args, nargs, kwnames, names, 0, NULL) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    return PyLong_FromLong(pa_crt_query_new_mode(SELF->p));
}

PyObject *set_new_handler_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"handler", NULL};
    PyObject *a[1] = {NULL};
    if (pa_parse_fast("set_new_handler", args, nargs, kwnames, names, 1, a) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    PyObject *handler = a[0];
    if (handler != Py_None && !PyCallable_Check(handler))
        return PyErr_Format(PyExc_TypeError, "the new handler must be callable or None");
    binding_t *b = binding_of(SELF);
    if (!b) return NULL;
    PyObject *old = b->new_handler;
    b->new_handler = handler == Py_None ? NULL : Py_NewRef(handler);
    if (b->new_handler) pa_set_new_handler(SELF->p, new_handler, b);
    else pa_set_new_handler(SELF->p, NULL, NULL);
    return old ? old : Py_NewRef(Py_None);
}

PyObject *_get_heap_handle_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    if (pa_parse_fast("_get_heap_handle", args, nargs, kwnames, names, 0, NULL) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    /* UCRT's CRT heap is the process heap (heap.md fact 71): the same Heap object. */
    return GetProcessHeap_impl(self, NULL, 0, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* The debug CRT                                                                               */

PyObject *_CrtSetDbgFlag_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {"flags", NULL};
    PyObject *a[1] = {NULL};
    int flags;
    if (pa_parse_fast("_CrtSetDbgFlag", args, nargs, kwnames, names, 1, a) ||
        arg_int(a[0], &flags) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    errno = 0;
    int old = pa_crt_set_dbg_flag(SELF->p, flags);
    int err = errno;
    if (pa_crt_flush(SELF, 0)) return NULL;
    if (err) return pa_crt_raise_errno(SELF, err, "_CrtSetDbgFlag");
    return PyLong_FromLong(old);
}

PyObject *_CrtCheckMemory_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    if (pa_parse_fast("_CrtCheckMemory", args, nargs, kwnames, names, 0, NULL) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    int ok = pa_crt_check_memory(SELF->p);
    if (pa_crt_flush(SELF, 0)) return NULL;
    return PyBool_FromLong(ok);
}

/* A growing text buffer for dumps (the sink runs under the CRT lock: no Python there). */
typedef struct {
    char *s;
    size_t len, cap;
    int failed;
} text_t;

static void text_sink(const char *line, void *ctx)
{
    text_t *t = ctx;
    size_t n = strlen(line);
    if (t->failed) return;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap < t->len + n + 1) cap *= 2;
        char *s = PyMem_RawRealloc(t->s, cap);
        if (!s) {
            t->failed = 1;
            return;
        }
        t->s = s;
        t->cap = cap;
    }
    memcpy(t->s + t->len, line, n + 1);
    t->len += n;
}

static const char *const allocators[] = {"malloc", "operator new", "operator new[]"};

static PyObject *crt_block_new(pa_state *st, const pa_crt_block_info_t *b)
{
    PyObject *o = PyStructSequence_New(st->CrtBlock);
    if (!o) return NULL;
    /* b->file passed the CRT's header check: a name the CRT stored (crt_debug.c, name_known) */
    PyObject *file = b->file ? PyUnicode_DecodeUTF8(b->file, (Py_ssize_t)strlen(b->file), "replace")
                             : Py_NewRef(Py_None);
    PyObject *v[7] = {
        PyLong_FromVoidPtr(b->data), PyLong_FromSize_t(b->size), PyLong_FromLong(b->request),
        PyLong_FromLong(b->block_use), file, PyLong_FromLong(b->line),
        PyUnicode_FromString(allocators[b->family >= 0 && b->family < 3 ? b->family : 0]),
    };
    int ok = 1;
    for (int i = 0; i < 7; i++) {
        if (!v[i]) ok = 0;
        PyStructSequence_SetItem(o, i, v[i] ? v[i] : Py_NewRef(Py_None)); /* steals */
    }
    if (!ok) Py_CLEAR(o);
    return o;
}

PyObject *_CrtDumpMemoryLeaks_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    if (pa_parse_fast("_CrtDumpMemoryLeaks", args, nargs, kwnames, names, 0, NULL) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    pa_state *st = STATE(SELF);
    binding_t *b = SELF->crt;
    size_t reported = b ? b->npending : 0;
    size_t n = pa_crt_leaks(SELF->p, NULL, 0);
    pa_crt_block_info_t *info = n ? PyMem_Calloc(n, sizeof *info) : NULL;
    size_t filled = info ? pa_crt_leaks(SELF->p, info, n) : 0;
    if (filled < n) n = filled;
    /* pa_crt_leaks reports a damaged block list (and lists the blocks before the damage) as the
     * dump below does: only the dump's reports are kept, so that the damage shows once. */
    for (; b && b->npending > reported; b->npending--)
        PyMem_RawFree(b->pending[b->npending - 1].message);
    if (n && !info) return PyErr_NoMemory();
    text_t text = {NULL, 0, 0, 0};
    pa_crt_dump_memory_leaks(SELF->p, text_sink, &text);
    PyObject *list = PyList_New(0);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *b = crt_block_new(st, &info[i]);
        if (!b || PyList_Append(list, b)) Py_CLEAR(list);
        Py_XDECREF(b);
    }
    PyMem_Free(info);
    PyObject *err = PySys_GetObject("stderr");
    if (list && text.len && err && err != Py_None && PyFile_WriteString(text.s, err))
        Py_CLEAR(list);
    PyMem_RawFree(text.s);
    if (list && pa_crt_flush(SELF, 0)) Py_CLEAR(list);
    return list;
}

PyObject *_CrtSetBreakAlloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"request", "callback", NULL};
    PyObject *a[2] = {NULL, NULL};
    long request;
    if (pa_parse_args("_CrtSetBreakAlloc", args, nargs, kwnames, names, 1, a) ||
        pa_crt_enter(SELF) < 0)
        return NULL;
    if (!PyLong_Check(a[0])) return PyErr_Format(PyExc_TypeError, "request must be an int");
    request = PyLong_AsLong(a[0]);
    if (request == -1 && PyErr_Occurred()) return NULL;
    PyObject *callback = a[1] && a[1] != Py_None ? a[1] : NULL;
    if (callback && !PyCallable_Check(callback))
        return PyErr_Format(PyExc_TypeError, "the callback must be callable or None");
    binding_t *b = binding_of(SELF);
    if (!b) return NULL;
    Py_XSETREF(b->break_callback, Py_XNewRef(callback));
    if (callback) pa_crt_set_break_hook(SELF->p, break_hook, b);
    else pa_crt_set_break_hook(SELF->p, NULL, NULL);
    return PyLong_FromLong(pa_crt_set_break_alloc(SELF->p, request));
}

PyObject *_CrtIsValidHeapPointer_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    if (pa_parse_fast("_CrtIsValidHeapPointer", args, nargs, kwnames, names, 1, a) ||
        pa_arg_ptr_fast(a[0], &address) || pa_crt_enter(SELF) < 0)
        return NULL;
    return PyBool_FromLong(pa_crt_is_valid_heap_pointer(SELF->p, (void *)address));
}

PyObject *_CrtReportBlockType_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    if (pa_parse_fast("_CrtReportBlockType", args, nargs, kwnames, names, 1, a) ||
        pa_arg_ptr_fast(a[0], &address) || pa_crt_enter(SELF) < 0)
        return NULL;
    return PyLong_FromLong(pa_crt_report_block_type(SELF->p, (void *)address));
}

/* ------------------------------------------------------------------------------------------ */
/* Types                                                                                       */

static PyStructSequence_Field crt_block_fields[] = {
    {"address", "the user pointer"},
    {"size", "the bytes requested"},
    {"request", "the allocation number {n} (_CrtSetBreakAlloc takes it)"},
    {"block_type", "_NORMAL_BLOCK, _CLIENT_BLOCK | subtype << 16, _CRT_BLOCK"},
    {"file", "the Python file that allocated it, or None"},
    {"line", "its line, or 0"},
    {"allocator", "'malloc', 'operator new' or 'operator new[]'"},
    {NULL, NULL},
};

static PyStructSequence_Desc crt_block_desc = {
    "pyalloc.CrtBlock",
    "A live block of the debug CRT, as _CrtDumpMemoryLeaks() lists it.",
    crt_block_fields,
    7,
};

int pa_crt_type_init(PyObject *module, pa_state *st)
{
    PyObject *errors = PyImport_ImportModule("pyalloc.errors");
    if (!errors) return -1;
    st->CrtError = PyObject_GetAttrString(errors, "CrtError");
    st->CrtMemoryError = PyObject_GetAttrString(errors, "CrtMemoryError");
    st->CrtInvalidParameter = PyObject_GetAttrString(errors, "CrtInvalidParameter");
    st->BadAlloc = PyObject_GetAttrString(errors, "BadAlloc");
    st->BadArrayNewLength = PyObject_GetAttrString(errors, "BadArrayNewLength");
    st->CrtReport = PyObject_GetAttrString(errors, "CrtReport");
    Py_DECREF(errors);
    if (!st->CrtError || !st->CrtMemoryError || !st->CrtInvalidParameter || !st->BadAlloc ||
        !st->BadArrayNewLength || !st->CrtReport)
        return -1;
    fast_module = module;
    fast_state = st;
    st->CrtBlock = PyStructSequence_NewType(&crt_block_desc);
    if (!st->CrtBlock || PyModule_AddType(module, st->CrtBlock)) return -1;
    PyObject *maxreq = PyLong_FromSize_t(_HEAP_MAXREQ);
    if (!maxreq) return -1;
    int r = PyModule_AddObjectRef(module, "_HEAP_MAXREQ", maxreq);
    Py_DECREF(maxreq);
    return r;
}
