/* heap.c: pyalloc.Heap and the heap functions (HeapCreate ... HeapQueryInformation).
 *
 * A Heap names one heap of one process: int(heap) is the heap's base address, the HANDLE
 * Windows gives. Every function also accepts a plain int handle; the heap layer validates
 * handles and pointers itself, so a stale or made-up one fails with WinError, never a crash.
 * Failures raise WinError (a WinMemoryError for out-of-memory); on a HEAP_GENERATE_EXCEPTIONS
 * heap they raise the structured exception Windows would (HeapException). Freeing or moving a
 * block that a live memoryview exports raises BufferError.
 */
#include "binding.h"

#include <time.h>

typedef struct {
    PyObject_HEAD
    HANDLE h;
    DWORD options;     /* HeapCreate options, when created here */
    int destroyed;
    PyObject *process; /* the ProcessObject it belongs to */
} HeapObject;

#define STATE(self) pa_get_state(((ProcessObject *)(self))->module)
#define PROC(self) (((ProcessObject *)(self))->p)

/* ---- HeapLock from Python threads ----
 * A Python thread that holds a heap's lock (HeapLock) needs the GIL to reach HeapUnlock, so no
 * other Python thread may block on that lock while holding the GIL: the whole interpreter would
 * hang. Heap calls therefore first wait here, with the GIL released, while another Python
 * thread holds the lock of the heap (heap NULL: of any heap of the process, for the calls that
 * look at every heap). The table is guarded by the GIL; an entry keeps its Process alive. */
typedef struct {
    PyObject *process; /* NULL: a free entry */
    HANDLE heap;
    uint64_t thread; /* thread_token() of the holder */
    long depth;
} py_lock_t;
#define PY_LOCKS 64
static py_lock_t py_locks[PY_LOCKS];
int pa_py_heap_locks; /* entries in use: with none (the usual case) no call scans the table */

/* The calling thread, as a number no later thread gets: its thread state's id (thread idents
 * are reused once a thread has exited, and a thread that exited holding a lock would pass for
 * the new one, which would then block on that lock with the GIL held). */
static uint64_t thread_token(void) { return PyThreadState_GetID(PyThreadState_Get()); }

/* Whether the thread of token still runs in this interpreter. */
static int thread_alive(uint64_t token)
{
    for (PyThreadState *t = PyInterpreterState_ThreadHead(PyInterpreterState_Get()); t;
         t = PyThreadState_Next(t))
        if (PyThreadState_GetID(t) == token) return 1;
    return 0;
}

static void py_lock_drop(py_lock_t *l)
{
    PyObject *process = l->process;
    if (process) pa_py_heap_locks--;
    l->process = NULL;
    l->depth = 0;
    Py_XDECREF(process);
}

/* 1 while another running Python thread holds the lock of heap of self (NULL: of any of its
 * heaps); else 2 when a thread that exited does (HeapLock without HeapUnlock: the lock stays
 * held for good, as on Windows); else 0. */
static int locked_by_other(PyObject *self, HANDLE heap)
{
    if (!pa_py_heap_locks) return 0;
    uint64_t me = thread_token();
    int abandoned = 0;
    for (int i = 0; i < PY_LOCKS; i++) {
        py_lock_t *l = &py_locks[i];
        if (!l->process) continue;
        if (!PROC(l->process)) { /* closed: its heaps are gone */
            py_lock_drop(l);
            continue;
        }
        if (l->process == self && l->thread != me && (!heap || l->heap == heap)) {
            if (thread_alive(l->thread)) return 1;
            abandoned = 1;
        }
    }
    return abandoned ? 2 : 0;
}

/* 0 once no other Python thread holds the lock; -1 with an exception (closed, a signal, or a
 * lock whose holder exited: waiting would never end, so RuntimeError says why). */
static int wait_heap_unlocked(PyObject *self, HANDLE heap)
{
    int held;
    while (PROC(self) && (held = locked_by_other(self, heap))) {
        if (held == 2) {
            PyErr_SetString(PyExc_RuntimeError,
                            "a heap's lock is held by a thread that exited without HeapUnlock");
            return -1;
        }
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals()) return -1;
    }
    if (PROC(self)) return 0;
    PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
    return -1;
}

int pa_wait_heap_unlocked_slow(PyObject *process, HANDLE heap)
{
    return wait_heap_unlocked(process, heap);
}

static int note_lock(PyObject *self, HANDLE heap, int lock)
{
    uint64_t me = thread_token();
    py_lock_t *free_entry = NULL;
    for (int i = 0; i < PY_LOCKS; i++) {
        py_lock_t *l = &py_locks[i];
        if (l->process == self && l->heap == heap && l->thread == me) {
            if (lock) l->depth++;
            else if (--l->depth == 0) py_lock_drop(l);
            return 0;
        }
        if (!l->process && !free_entry) free_entry = l;
    }
    if (!lock) return 0;
    if (!free_entry) {
        PyErr_SetString(PyExc_RuntimeError, "too many heaps locked by Python threads");
        return -1;
    }
    free_entry->process = Py_NewRef(self);
    pa_py_heap_locks++;
    free_entry->heap = heap;
    free_entry->thread = me;
    free_entry->depth = 1;
    return 0;
}

/* After HeapDestroy: nobody holds the locks of a heap that is gone. */
static void forget_locks(PyObject *self, HANDLE heap)
{
    for (int i = 0; i < PY_LOCKS; i++)
        if (py_locks[i].process == self && py_locks[i].heap == heap) py_lock_drop(&py_locks[i]);
}

#define NO_SERIALIZE(flags) (((flags) & HEAP_NO_SERIALIZE) != 0)

/* ---- the Heap type ---- */

static PyObject *Heap_int(PyObject *self)
{
    return PyLong_FromUnsignedLongLong((uintptr_t)((HeapObject *)self)->h);
}

static Py_hash_t Heap_hash(PyObject *self)
{
    Py_hash_t h = (Py_hash_t)((uintptr_t)((HeapObject *)self)->h >> 16);
    return h == -1 ? -2 : h;
}

static PyObject *Heap_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(a) != Py_TYPE(b)) Py_RETURN_NOTIMPLEMENTED;
    HeapObject *x = (HeapObject *)a, *y = (HeapObject *)b;
    int eq = x->h == y->h && x->process == y->process;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *Heap_repr(PyObject *self)
{
    HeapObject *ho = (HeapObject *)self;
    char addr[32];
    snprintf(addr, sizeof addr, "0x%zx", (size_t)(uintptr_t)ho->h);
    ProcessObject *po = (ProcessObject *)ho->process;
    pa_heap_stats_t s;
    if (!ho->destroyed && po->p && wait_heap_unlocked(ho->process, ho->h)) return NULL;
    if (ho->destroyed || !po->p || !pa_heap_stats(po->p, ho->h, &s))
        return PyUnicode_FromFormat("<pyalloc.Heap %s (destroyed)>", addr);
    return PyUnicode_FromFormat("<pyalloc.Heap %s: %zu busy blocks, %zu KiB busy, %zu KiB "
                                "committed, %zu KiB reserved>",
                                addr, s.busy_blocks, s.busy_bytes >> 10, s.committed >> 10,
                                s.reserved >> 10);
}

PyObject *pa_heap_stats_dict(const pa_heap_stats_t *s)
{
    PyObject *buckets = PyList_New(PA_HEAP_BUCKETS);
    if (!buckets) return NULL;
    for (int i = 0; i < PA_HEAP_BUCKETS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(s->bucket_busy[i]);
        if (!v) {
            Py_DECREF(buckets);
            return NULL;
        }
        PyList_SET_ITEM(buckets, i, v);
    }
    return Py_BuildValue(
        "{sKsKsKsKsKsKsKsKsKsKsKsKsKsIsIsN}", "reserved", (unsigned long long)s->reserved,
        "committed",
        (unsigned long long)s->committed, "busy_bytes", (unsigned long long)s->busy_bytes,
        "busy_blocks", (unsigned long long)s->busy_blocks, "free_bytes",
        (unsigned long long)s->free_bytes, "free_blocks", (unsigned long long)s->free_blocks,
        "largest_free", (unsigned long long)s->largest_free, "overhead",
        (unsigned long long)s->overhead, "large_blocks", (unsigned long long)s->large_blocks,
        "cached_large_bytes", (unsigned long long)s->cached_large_bytes, "cached_large_resident",
        (unsigned long long)s->cached_large_resident, "spare_committed",
        (unsigned long long)s->spare_committed, "segments",
        (unsigned long long)s->segments, "lfh_active", (unsigned)s->lfh_active, "debug",
        (unsigned)s->debug, "bucket_busy", buckets);
}

static PyObject *Heap_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    HeapObject *ho = (HeapObject *)self;
    ProcessObject *po = (ProcessObject *)ho->process;
    pa_heap_stats_t s;
    if (!po->p) return PyErr_Format(PyExc_ValueError, "operation on a closed Process");
    if (ho->destroyed) return pa_raise_win_error(STATE(po), ERROR_INVALID_HANDLE);
    if (wait_heap_unlocked(ho->process, ho->h)) return NULL;
    if (!pa_heap_stats(po->p, ho->h, &s)) return pa_raise_last_error(STATE(po));
    return pa_heap_stats_dict(&s);
}

static PyObject *Heap_get_process(PyObject *self, void *Py_UNUSED(c))
{
    return Py_NewRef(((HeapObject *)self)->process);
}

static PyObject *Heap_get_destroyed(PyObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((HeapObject *)self)->destroyed);
}

static int Heap_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((HeapObject *)self)->process);
    return 0;
}

static int Heap_clear(PyObject *self)
{
    Py_CLEAR(((HeapObject *)self)->process);
    return 0;
}

static void Heap_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Heap_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef Heap_methods[] = {
    {"stats", Heap_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "Returns dict: reserved, committed, busy_bytes, busy_blocks, free_bytes, free_blocks, "
     "largest_free, overhead, large_blocks, cached_large_bytes, cached_large_resident (bytes of "
     "freed large blocks cleared in place and kept in memory), spare_committed (committed bytes of "
     "free LFH chunks whose pages were dropped), segments, lfh_active, debug, "
     "bucket_busy (live blocks per front-end bucket)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Heap_getset[] = {
    {"process", Heap_get_process, NULL, "The Process the heap belongs to.", NULL},
    {"destroyed", Heap_get_destroyed, NULL, "True after HeapDestroy through this object.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Heap_slots[] = {
    {Py_tp_doc, "A heap of a process (a HANDLE: int(heap) is its 64 KiB-aligned base)."},
    {Py_tp_dealloc, Heap_dealloc},
    {Py_tp_traverse, Heap_traverse},
    {Py_tp_clear, Heap_clear},
    {Py_tp_repr, Heap_repr},
    {Py_tp_hash, Heap_hash},
    {Py_tp_richcompare, Heap_richcompare},
    {Py_nb_int, Heap_int},
    {Py_nb_index, Heap_int},
    {Py_tp_methods, Heap_methods},
    {Py_tp_getset, Heap_getset},
    {0, NULL},
};

static PyType_Spec Heap_spec = {
    "pyalloc.Heap", sizeof(HeapObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
        Py_TPFLAGS_DISALLOW_INSTANTIATION,
    Heap_slots,
};

int pa_heap_type_init(PyObject *module, pa_state *st)
{
    st->Heap = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Heap_spec, NULL);
    if (!st->Heap) return -1;
    return PyModule_AddType(module, st->Heap);
}

static PyObject *new_heap(PyObject *self, HANDLE h, DWORD options)
{
    HeapObject *ho = PyObject_GC_New(HeapObject, STATE(self)->Heap);
    if (!ho) return NULL;
    ho->h = h;
    ho->options = options;
    ho->destroyed = 0;
    ho->process = Py_NewRef(self);
    PyObject_GC_Track(ho);
    return (PyObject *)ho;
}

/* ---- arguments and errors ---- */

static int open_or_raise(PyObject *self)
{
    if (PROC(self)) return 0;
    PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
    return -1;
}

/* A heap argument: a Heap or an int handle. *options gets the Heap's create options. */
static int arg_heap(PyObject *self, PyObject *o, HANDLE *h, DWORD *options)
{
    *options = 0;
    if (PyObject_TypeCheck(o, STATE(self)->Heap)) {
        HeapObject *ho = (HeapObject *)o;
        if (ho->destroyed) {
            pa_raise_win_error(STATE(self), ERROR_INVALID_HANDLE);
            return -1;
        }
        *h = ho->h;
        *options = ho->options;
        return 0;
    }
    uintptr_t v;
    if (pa_arg_ptr_fast(o, &v)) return -1;
    *h = (HANDLE)v;
    return 0;
}

/* Raises HeapException(status) about address (the block, or the heap). */
static PyObject *raise_heap_exception(pa_state *st, NTSTATUS status, uintptr_t address, const char *op)
{
    PyObject *exc = PyObject_CallFunction(st->HeapException, "kKs", (unsigned long)(uint32_t)status,
                                          (unsigned long long)address, op);
    if (exc) {
        PyErr_SetObject(st->HeapException, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* Where Windows would terminate the process: a call on a heap with termination on corruption
 * that failed because it found the heap corrupted. */
static int corruption_is_fatal(PyObject *self, HANDLE h)
{
    return pa_heap_last_status() == STATUS_HEAP_CORRUPTION &&
           pa_heap_terminates_on_corruption(PROC(self), h);
}

/* Raises for a failed HeapFree/HeapSize/HeapWalk: HeapException(STATUS_HEAP_CORRUPTION) when
 * corruption_is_fatal, WinError (the last error) otherwise. */
static PyObject *heap_error(PyObject *self, HANDLE h, uintptr_t address, const char *op)
{
    if (corruption_is_fatal(self, h))
        return raise_heap_exception(STATE(self), STATUS_HEAP_CORRUPTION, address ? address : (uintptr_t)h, op);
    return pa_raise_last_error(STATE(self));
}

/* Raises for a failed heap call: the structured exception on a HEAP_GENERATE_EXCEPTIONS
 * heap or call, or for corruption found on a heap that terminates on corruption, WinError
 * otherwise. */
static PyObject *heap_failure(PyObject *self, DWORD flags, HANDLE h, const char *op)
{
    pa_state *st = STATE(self);
    NTSTATUS status = pa_heap_last_status();
    if (corruption_is_fatal(self, h)) return raise_heap_exception(st, status, (uintptr_t)h, op);
    if ((flags & HEAP_GENERATE_EXCEPTIONS) && status != STATUS_SUCCESS) {
        PyObject *exc = PyObject_CallFunction(st->HeapException, "kKs",
                                              (unsigned long)(uint32_t)status,
                                              (unsigned long long)(uintptr_t)h, op);
        if (exc) {
            PyErr_SetObject(st->HeapException, exc);
            Py_DECREF(exc);
        }
        return NULL;
    }
    DWORD err = pa_get_last_error();
    return pa_raise_win_error(st, err ? err : ERROR_NOT_ENOUGH_MEMORY);
}

/* BufferError if the busy block at address is exported by a live memoryview. */
static int check_not_exported(PyObject *self, uintptr_t address)
{
    void *block;
    size_t size;
    HANDLE heap;
    if (!address || !pa_mm_range_pinned(PROC(self), NULL, 0, PA_OWNER_HEAP)) return 0;
    if (wait_heap_unlocked(self, NULL)) return -1; /* pa_heap_find_block locks every heap */
    if (pa_heap_find_block(PROC(self), (void *)address, 0, &heap, &block, &size) != STATUS_SUCCESS)
        return 0;
    if (pa_export_overlaps((ProcessObject *)self, (uintptr_t)block, size ? size : 1)) {
        PyErr_SetString(PyExc_BufferError,
                        "the block is exported to a live memoryview; release it first");
        return -1;
    }
    return 0;
}

int pa_heap_check_access(ProcessObject *self, uintptr_t address, size_t size, const char *op)
{
    if (!size || !pa_mm_range_has_owner(self->p, (void *)address, size, PA_OWNER_HEAP)) return 0;
    if (!self->heap_guard) {
        /* Blocks and their headers may be corrupted for a demonstration, and the heap must
         * notice; the heap's own control data may not (the heap trusts it: a write there
         * could crash the interpreter). Writes and views (writable) are checked; read()
         * is not. */
        uintptr_t at = pa_heap_private_overlap(self->p, (void *)address, size);
        if (!at) return 0;
        pa_raise_access(pa_get_state(self->module), STATUS_ACCESS_VIOLATION, at, op);
        return -1;
    }
    if (wait_heap_unlocked((PyObject *)self, NULL)) return -1;
    if (pa_heap_find_block(self->p, (void *)address, size, NULL, NULL, NULL) == STATUS_SUCCESS)
        return 0;
    /* Heap metadata and free blocks are off limits (Process(heap_guard=False) lifts this). The
     * fault is at the first byte past the busy block the access starts in, or at its start. */
    void *block;
    size_t bsize;
    uintptr_t fault = address;
    if (pa_heap_find_block(self->p, (void *)address, 0, NULL, &block, &bsize) == STATUS_SUCCESS)
        fault = (uintptr_t)block + bsize;
    pa_raise_access(pa_get_state(self->module), STATUS_ACCESS_VIOLATION, fault, op);
    return -1;
}

/* ---- the functions ---- */

#define PARSE(fname, names, nreq, out)                                                           \
    do {                                                                                         \
        if (open_or_raise(self) || pa_parse_fast(fname, args, nargs, kwnames, names, nreq, out)) \
            return NULL;                                                                         \
    } while (0)

PyObject *HeapCreate_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    static const char *const names[] = {"options", "initial_size", "maximum_size", "debug",
                                        "lfh", NULL};
    PyObject *a[5] = {NULL, NULL, NULL, NULL, NULL};
    DWORD options, debug = 0;
    size_t initial, maximum;
    PARSE("HeapCreate", names, 3, a);
    if (nargs > 3) /* debug and lfh are keyword-only */
        return PyErr_Format(PyExc_TypeError,
                            "HeapCreate() takes 3 positional arguments but %zd were given", nargs);
    if (pa_arg_dword(a[0], &options) || pa_arg_size_fast(a[1], &initial) ||
        pa_arg_size_fast(a[2], &maximum) || (a[3] && pa_arg_dword(a[3], &debug)))
        return NULL;
    pa_heap_options_t ho = {debug, 0, (size_t)-1};
    if (a[4]) {
        int lfh = PyObject_IsTrue(a[4]);
        if (lfh < 0) return NULL;
        ho.no_lfh = !lfh;
    }
    HANDLE h = pa_heap_create_ex(PROC(self), options, initial, maximum, &ho);
    if (!h) return pa_raise_last_error(STATE(self));
    return new_heap(self, h, options);
}

/* Parses the single (heap) argument of HeapDestroy and HeapWalk and waits until no other
 * Python thread holds the heap's lock. 0, or -1 with an exception set. */
static int heap_arg_unlocked(PyObject *self, const char *fname, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames, PyObject **arg, HANDLE *h)
{
    static const char *const names[] = {"heap", NULL};
    PyObject *a[1] = {NULL};
    DWORD options;
    if (open_or_raise(self) || pa_parse_fast(fname, args, nargs, kwnames, names, 1, a) ||
        arg_heap(self, a[0], h, &options) || wait_heap_unlocked(self, *h))
        return -1;
    *arg = a[0];
    return 0;
}

PyObject *HeapDestroy_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *arg;
    HANDLE h;
    if (heap_arg_unlocked(self, "HeapDestroy", args, nargs, kwnames, &arg, &h)) return NULL;
    if (pa_mm_range_pinned(PROC(self), NULL, 0, PA_OWNER_HEAP)) {
        PyErr_SetString(PyExc_BufferError,
                        "heap memory is exported to a live memoryview; release it first");
        return NULL;
    }
    if (!pa_heap_destroy(PROC(self), h)) return pa_raise_last_error(STATE(self));
    forget_locks(self, h);
    if (PyObject_TypeCheck(arg, STATE(self)->Heap)) ((HeapObject *)arg)->destroyed = 1;
    Py_RETURN_TRUE;
}

PyObject *HeapAlloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    static const char *const names[] = {"heap", "flags", "size", NULL};
    PyObject *a[3] = {NULL};
    HANDLE h;
    DWORD flags, options;
    size_t size;
    PARSE("HeapAlloc", names, 3, a);
    if (arg_heap(self, a[0], &h, &options) || pa_arg_dword(a[1], &flags) ||
        pa_arg_size_fast(a[2], &size) || (!NO_SERIALIZE(flags) && wait_heap_unlocked(self, h)))
        return NULL;
    void *r = pa_heap_alloc(PROC(self), h, flags, size);
    if (!r) return heap_failure(self, flags | options, h, "HeapAlloc");
    return PyLong_FromUnsignedLongLong((uintptr_t)r);
}

PyObject *HeapReAlloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"heap", "flags", "address", "size", NULL};
    PyObject *a[4] = {NULL};
    HANDLE h;
    DWORD flags, options;
    uintptr_t address;
    size_t size;
    PARSE("HeapReAlloc", names, 4, a);
    if (arg_heap(self, a[0], &h, &options) || pa_arg_dword(a[1], &flags) ||
        pa_arg_ptr_fast(a[2], &address) || pa_arg_size_fast(a[3], &size) ||
        (!NO_SERIALIZE(flags) && wait_heap_unlocked(self, h)) || check_not_exported(self, address))
        return NULL;
    void *r = pa_heap_realloc(PROC(self), h, flags, (void *)address, size);
    /* A NULL address gives NULL with the last error 0 (heap.md fact 30): no failure status of
     * this call to report, so neither ERROR_NOT_ENOUGH_MEMORY nor a stale HeapException. */
    if (!r && !address) return pa_raise_last_error(STATE(self));
    if (!r) return heap_failure(self, flags | options, h, "HeapReAlloc");
    return PyLong_FromUnsignedLongLong((uintptr_t)r);
}

/* Parses (heap, flags, address) as HeapFree, HeapSize and HeapValidate take them; the last
 * nreq - 1 of flags and address may be optional. */
static int heap_flags_address(PyObject *self, const char *fname, PyObject *const *args,
                              Py_ssize_t nargs, PyObject *kwnames, int nreq, HANDLE *h,
                              DWORD *flags, uintptr_t *address)
{
    static const char *const names[] = {"heap", "flags", "address", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    DWORD options;
    *flags = 0;
    *address = 0;
    if (open_or_raise(self) || pa_parse_fast(fname, args, nargs, kwnames, names, nreq, a) ||
        arg_heap(self, a[0], h, &options) || (a[1] && pa_arg_dword(a[1], flags)) ||
        (a[2] && pa_arg_ptr_fast(a[2], address)))
        return -1;
    return 0;
}

PyObject *HeapFree_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    HANDLE h;
    DWORD flags;
    uintptr_t address;
    if (heap_flags_address(self, "HeapFree", args, nargs, kwnames, 3, &h, &flags, &address) ||
        (!NO_SERIALIZE(flags) && wait_heap_unlocked(self, h)) || check_not_exported(self, address))
        return NULL;
    if (!pa_heap_free(PROC(self), h, flags, (void *)address)) return heap_error(self, h, address, "HeapFree");
    Py_RETURN_TRUE;
}

PyObject *HeapSize_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    HANDLE h;
    DWORD flags;
    uintptr_t address;
    if (heap_flags_address(self, "HeapSize", args, nargs, kwnames, 3, &h, &flags, &address) ||
        (!NO_SERIALIZE(flags) && wait_heap_unlocked(self, h)))
        return NULL;
    SIZE_T n = pa_heap_size(PROC(self), h, flags, (void *)address);
    if (n == (SIZE_T)-1) return heap_error(self, h, address, "HeapSize");
    return PyLong_FromSize_t(n);
}

PyObject *HeapValidate_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    HANDLE h;
    DWORD flags;
    uintptr_t address;
    if (heap_flags_address(self, "HeapValidate", args, nargs, kwnames, 1, &h, &flags, &address) ||
        (!NO_SERIALIZE(flags) && wait_heap_unlocked(self, h)))
        return NULL;
    return PyBool_FromLong(pa_heap_validate(PROC(self), h, flags, (void *)address));
}

PyObject *HeapWalk_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    PyObject *arg;
    HANDLE h;
    if (heap_arg_unlocked(self, "HeapWalk", args, nargs, kwnames, &arg, &h)) return NULL;
    if (!pa_heap_lock(PROC(self), h)) return pa_raise_last_error(STATE(self));
    PyObject *list = PyList_New(0);
    PROCESS_HEAP_ENTRY e;
    memset(&e, 0, sizeof e);
    DWORD err = ERROR_NO_MORE_ITEMS;
    while (list) {
        if (!pa_heap_walk(PROC(self), h, &e)) {
            err = pa_get_last_error();
            break;
        }
        PyObject *item = pa_heap_entry_new(STATE(self), &e);
        if (!item || PyList_Append(list, item)) Py_CLEAR(list);
        Py_XDECREF(item);
    }
    pa_heap_unlock(PROC(self), h);
    if (!list) return NULL;
    if (err != ERROR_NO_MORE_ITEMS) {
        Py_DECREF(list);
        if (corruption_is_fatal(self, h)) return heap_error(self, h, 0, "HeapWalk");
        return pa_raise_win_error(STATE(self), err);
    }
    PyObject *it = PyObject_GetIter(list);
    Py_DECREF(list);
    return it;
}

PyObject *HeapCompact_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"heap", "flags", NULL};
    PyObject *a[2] = {NULL};
    HANDLE h;
    DWORD flags, options;
    PARSE("HeapCompact", names, 2, a);
    if (arg_heap(self, a[0], &h, &options) || pa_arg_dword(a[1], &flags) ||
        (!NO_SERIALIZE(flags) && wait_heap_unlocked(self, h)))
        return NULL;
    pa_set_last_error(0);
    SIZE_T n = pa_heap_compact(PROC(self), h, flags);
    if (n == 0 && pa_get_last_error() != 0) return pa_raise_last_error(STATE(self));
    return PyLong_FromSize_t(n);
}

static PyObject *lock_common(PyObject *self, const char *fname, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *kwnames, int lock)
{
    static const char *const names[] = {"heap", NULL};
    PyObject *a[1] = {NULL};
    HANDLE h;
    DWORD options;
    PARSE(fname, names, 1, a);
    if (arg_heap(self, a[0], &h, &options)) return NULL;
    /* A HEAP_NO_SERIALIZE heap's lock excludes nobody (heap.md fact 55). */
    int serialized = !NO_SERIALIZE(options);
    if (lock && serialized && wait_heap_unlocked(self, h)) return NULL;
    if (!(lock ? pa_heap_lock : pa_heap_unlock)(PROC(self), h)) return pa_raise_last_error(STATE(self));
    if (serialized && note_lock(self, h, lock)) {
        pa_heap_unlock(PROC(self), h);
        return NULL;
    }
    Py_RETURN_TRUE;
}

PyObject *HeapLock_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                        PyObject *kwnames)
{
    return lock_common(self, "HeapLock", args, nargs, kwnames, 1);
}

PyObject *HeapUnlock_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    return lock_common(self, "HeapUnlock", args, nargs, kwnames, 0);
}

PyObject *GetProcessHeap_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    PARSE("GetProcessHeap", names, 0, NULL);
    HANDLE h = pa_heap_get_process_heap(PROC(self));
    if (!h) return pa_raise_last_error(STATE(self));
    return new_heap(self, h, 0);
}

PyObject *GetProcessHeaps_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    PARSE("GetProcessHeaps", names, 0, NULL);
    HANDLE small[64], *heaps = small;
    DWORD n = pa_heap_get_process_heaps(PROC(self), 64, heaps);
    if (n > 64) {
        heaps = PyMem_Malloc(n * sizeof *heaps);
        if (!heaps) return PyErr_NoMemory();
        n = pa_heap_get_process_heaps(PROC(self), n, heaps);
    }
    PyObject *list = PyList_New(0);
    for (DWORD i = 0; list && i < n; i++) {
        PyObject *ho = new_heap(self, heaps[i], 0);
        if (!ho || PyList_Append(list, ho)) Py_CLEAR(list);
        Py_XDECREF(ho);
    }
    if (heaps != small) PyMem_Free(heaps);
    return list;
}

PyObject *HeapSetInformation_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"heap", "info_class", "value", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    HANDLE h = NULL;
    DWORD options, info_class;
    ULONG value = 0;
    PARSE("HeapSetInformation", names, 2, a);
    if ((a[0] != Py_None && arg_heap(self, a[0], &h, &options)) || pa_arg_dword(a[1], &info_class) ||
        (a[2] && a[2] != Py_None && pa_arg_dword(a[2], &value)) || (h && wait_heap_unlocked(self, h)))
        return NULL;
    int has_value = a[2] && a[2] != Py_None;
    if (!pa_heap_set_information(PROC(self), h, (HEAP_INFORMATION_CLASS)info_class,
                                 has_value ? &value : NULL, has_value ? sizeof value : 0))
        return pa_raise_last_error(STATE(self));
    Py_RETURN_TRUE;
}

PyObject *HeapQueryInformation_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    static const char *const names[] = {"heap", "info_class", NULL};
    PyObject *a[2] = {NULL, NULL};
    HANDLE h;
    DWORD options, info_class;
    ULONG value = 0;
    SIZE_T len = 0;
    PARSE("HeapQueryInformation", names, 2, a);
    if (arg_heap(self, a[0], &h, &options) || pa_arg_dword(a[1], &info_class) ||
        (h && wait_heap_unlocked(self, h)))
        return NULL;
    if (!pa_heap_query_information(PROC(self), h, (HEAP_INFORMATION_CLASS)info_class, &value,
                                   sizeof value, &len))
        return pa_raise_last_error(STATE(self));
    return PyLong_FromUnsignedLong(value);
}
