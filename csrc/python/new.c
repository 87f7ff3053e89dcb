/* new.c: layer 5 from Python: operator_new / operator_delete, and new / delete / new_array /
 * delete_array, which build ctypes objects in memory from operator new as MSVC's new- and
 * delete-expressions do (heap.md 1.15). ctypes is only the user's types here: the binding
 * asks ctypes for a type's size and alignment and makes the object with T.from_buffer().
 *
 * new(T, *args, **kwargs): operator new(sizeof(T)) (the align_val_t overload when alignof(T)
 * > 16), then T.from_buffer() over the block, then T.__init__(obj, *args, **kwargs), its
 * "constructor"; if that raises, the memory goes back and the exception propagates.
 * new_array(T, count): operator new[] of count * sizeof(T), preceded by MSVC's cookie (the
 * count) when T has a destructor, i.e. defines __pyalloc_destroy__; the constructors run in
 * order (only a T.__init__ written in Python: ctypes' own does nothing without arguments), and
 * if one raises, the elements already built are destroyed in reverse order first.
 * delete(obj) / delete_array(arr): obj.__pyalloc_destroy__() (for an array, count read back
 * from the cookie, last element first), then operator delete / delete[].
 *
 * Memory safety. The object sees the block through an exporter (_NewBlock) that pins the
 * allocation (a view: free, HeapFree, VirtualFree and VirtualProtect of it raise BufferError)
 * for as long as a ctypes object over it lives. delete() runs the destructors at once, but
 * the block goes back to operator delete only when the last ctypes object over it is gone
 * (at once after `delete(obj); del obj`): a deleted object keeps reading and writing its own
 * bytes, never memory the heap has reused, so using it after delete shows stale values but
 * cannot corrupt the heap or crash. That is pyalloc's one departure from C++. delete() of an
 * object that new() did not return, of an array (delete_array of an object), or a second
 * delete raise TypeError / ValueError without touching memory. An object dropped without
 * delete leaks its block, as in C++ (the debug CRT's leak dump shows it).
 */
#include "binding.h"

#include <errno.h>
#include <string.h>

#define STATE(po) pa_get_state((po)->module)
#define SELF ((ProcessObject *)self)

/* ------------------------------------------------------------------------------------------ */
/* The exporter                                                                                */

enum { LIVE, DESTROYING, DOOMED, FREED };

/* One allocation of new() or new_array(). state: LIVE -> DESTROYING (destructors running)
 * -> DOOMED (returned to operator delete when buffers drops to 0) -> FREED. A LIVE block
 * whose exporter dies is leaked, never freed. */
typedef struct {
    PyObject_HEAD
    ProcessObject *process;
    PyObject *pin;        /* pa_export_view's memoryview over the whole allocation, or NULL */
    PyObject *type;       /* T: the object's type, or the element type */
    char *address;        /* the object, or element 0 */
    Py_ssize_t size;      /* bytes exported: sizeof(T), or sizeof(T) * count */
    size_t elem_size, elem_align, count;
    int array, has_dtor, state;
    Py_ssize_t buffers;   /* Py_buffers handed out (ctypes keeps one per object) */
} NewBlockObject;

/* Gives the memory back to operator delete (or delete[]). */
static void block_free(NewBlockObject *nb)
{
    nb->state = FREED;
    Py_CLEAR(nb->pin); /* unpins */
    /* Also from a dealloc or a buffer release (the garbage collector's time): the heap's lock
     * is not to be waited for with the GIL held (binding.h). */
    if (nb->process->p && pa_wait_heap_unlocked((PyObject *)nb->process, NULL)) {
        PyErr_WriteUnraisable((PyObject *)nb->process); /* the block stays allocated */
        return;
    }
    pa_process_t *p = nb->process->p;
    if (!p) return;
    if (nb->array)
        pa_delete_array(p, nb->address, nb->elem_size, nb->elem_align, nb->has_dtor, NULL, NULL);
    else
        pa_delete_object(p, nb->address, nb->elem_size, nb->elem_align, NULL, NULL);
}

/* block_free where no exception can be raised (a buffer release, a dealloc): what the debug
 * CRT reports still becomes warnings; an exception from them is unraisable. */
static void block_release(NewBlockObject *nb)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    block_free(nb);
    if (pa_crt_flush(nb->process, 0)) PyErr_WriteUnraisable((PyObject *)nb->process);
    PyErr_Restore(type, value, tb);
}

static void block_doom(NewBlockObject *nb)
{
    nb->state = DOOMED;
    if (nb->buffers == 0) block_release(nb);
}

static int block_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    NewBlockObject *nb = (NewBlockObject *)self;
    if (nb->state == DOOMED || nb->state == FREED) {
        PyErr_SetString(PyExc_BufferError, "the object was deleted");
        view->obj = NULL;
        return -1;
    }
    if (PyBuffer_FillInfo(view, self, nb->address, nb->size, 0, flags)) return -1;
    nb->buffers++;
    return 0;
}

static void block_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)view;
    NewBlockObject *nb = (NewBlockObject *)self;
    if (--nb->buffers == 0 && nb->state == DOOMED) block_release(nb);
}

static int block_traverse(PyObject *self, visitproc visit, void *arg)
{
    NewBlockObject *nb = (NewBlockObject *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(nb->process);
    Py_VISIT(nb->pin);
    Py_VISIT(nb->type);
    return 0;
}

static void block_dealloc(PyObject *self)
{
    NewBlockObject *nb = (NewBlockObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (nb->state == DOOMED && nb->process) block_release(nb); /* no buffer can be left */
    Py_CLEAR(nb->pin);
    Py_CLEAR(nb->type);
    Py_CLEAR(nb->process);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot block_slots[] = {
    {Py_tp_doc, "The memory of an object made by new() or new_array(), pinned while it lives."},
    {Py_bf_getbuffer, block_getbuffer},
    {Py_bf_releasebuffer, block_releasebuffer},
    {Py_tp_traverse, block_traverse},
    {Py_tp_dealloc, block_dealloc},
    {0, NULL},
};

static PyType_Spec block_spec = {
    "pyalloc._core._NewBlock", sizeof(NewBlockObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
        Py_TPFLAGS_DISALLOW_INSTANTIATION,
    block_slots,
};

int pa_new_type_init(PyObject *module, pa_state *st)
{
    st->NewBlock = (PyTypeObject *)PyType_FromModuleAndSpec(module, &block_spec, NULL);
    return st->NewBlock ? 0 : -1;
}

/* An exporter for [address, address + size) of the allocation [raw, raw + raw_size), which it
 * pins. NULL raised (the caller still owns the memory). */
static NewBlockObject *block_new(ProcessObject *po, PyObject *type, char *address, size_t size,
                                 char *raw, size_t raw_size)
{
    pa_state *st = STATE(po);
    NewBlockObject *nb = PyObject_GC_New(NewBlockObject, st->NewBlock);
    if (!nb) return NULL;
    nb->process = (ProcessObject *)Py_NewRef(po);
    nb->pin = NULL;
    nb->type = Py_NewRef(type);
    nb->address = address;
    nb->size = (Py_ssize_t)size;
    nb->elem_size = nb->elem_align = nb->count = 0;
    nb->array = nb->has_dtor = 0;
    nb->state = LIVE;
    nb->buffers = 0;
    PyObject_GC_Track(nb);
    nb->pin = pa_export_view(po, (uintptr_t)raw, raw_size ? raw_size : 1);
    if (nb->pin && PyMemoryView_GET_BUFFER(nb->pin)->readonly) {
        Py_CLEAR(nb->pin);
        pa_raise_access(st, STATUS_ACCESS_VIOLATION, (uintptr_t)address, "write");
    }
    if (!nb->pin) Py_CLEAR(nb); /* LIVE: the dealloc frees nothing */
    return nb;
}

/* The exporter behind a ctypes object (a new reference), from the memoryview ctypes keeps in
 * obj._objects; NULL without an exception when there is none. */
static NewBlockObject *mv_block(pa_state *st, PyObject *mv)
{
    PyObject *o = PyMemoryView_GET_BUFFER(mv)->obj;
    return o && Py_IS_TYPE(o, st->NewBlock) ? (NewBlockObject *)o : NULL;
}

/* new() and new_array() also keep the exporter in the object's BLOCK_ATTR: ctypes replaces a
 * simple object's _objects when a value is stored that it must keep alive (c_char_p's
 * bytes), and the memoryview would be lost with it. */
#define BLOCK_ATTR "__pyalloc_block__"

static void keep_block(PyObject *obj, NewBlockObject *nb)
{
    if (PyObject_SetAttrString(obj, BLOCK_ATTR, (PyObject *)nb)) PyErr_Clear(); /* __slots__ */
}

static NewBlockObject *block_of(pa_state *st, PyObject *obj)
{
    PyObject *kept = PyObject_GetAttrString(obj, BLOCK_ATTR);
    if (kept && Py_IS_TYPE(kept, st->NewBlock)) return (NewBlockObject *)kept;
    Py_XDECREF(kept);
    PyErr_Clear();
    PyObject *objects = PyObject_GetAttrString(obj, "_objects");
    if (!objects) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) PyErr_Clear();
        return NULL;
    }
    NewBlockObject *nb = NULL;
    if (PyMemoryView_Check(objects)) {
        nb = mv_block(st, objects);
    } else if (PyDict_Check(objects)) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (!nb && PyDict_Next(objects, &pos, &key, &value))
            if (PyMemoryView_Check(value)) nb = mv_block(st, value);
    }
    Py_XINCREF(nb);
    Py_DECREF(objects);
    return nb;
}

/* ------------------------------------------------------------------------------------------ */
/* Types                                                                                       */

/* sizeof(T) and alignof(T), from ctypes. -1 raised (TypeError for what is not a ctypes type). */
static int ctype_layout(PyObject *type, size_t *size, size_t *align)
{
    if (!PyType_Check(type)) {
        PyErr_Format(PyExc_TypeError, "a ctypes type is required, not %.100s",
                     Py_TYPE(type)->tp_name);
        return -1;
    }
    PyObject *ctypes = PyImport_ImportModule("ctypes");
    if (!ctypes) return -1;
    PyObject *s = PyObject_CallMethod(ctypes, "sizeof", "O", type);
    PyObject *a = s ? PyObject_CallMethod(ctypes, "alignment", "O", type) : NULL;
    Py_DECREF(ctypes);
    int rc = -1;
    if (a) {
        *size = PyLong_AsSize_t(s);
        *align = PyLong_AsSize_t(a);
        rc = PyErr_Occurred() ? -1 : 0;
    }
    Py_XDECREF(s);
    Py_XDECREF(a);
    return rc;
}

/* A non-trivial destructor: the type (or a base) defines __pyalloc_destroy__. */
static int has_destructor(PyObject *type)
{
    return PyObject_HasAttrString(type, "__pyalloc_destroy__");
}

/* A constructor worth running without arguments: an __init__ written in Python (ctypes' own
 * is a slot wrapper that does nothing without arguments). */
static int has_constructor(PyObject *type)
{
    PyObject *init = PyObject_GetAttrString(type, "__init__");
    if (!init) {
        PyErr_Clear();
        return 0;
    }
    int user = !Py_IS_TYPE(init, &PyWrapperDescr_Type);
    Py_DECREF(init);
    return user;
}

static size_t overload_align(size_t align)
{
    return align > PA_DEFAULT_NEW_ALIGNMENT ? align : 0;
}

/* operator new (flags: PA_NEW_ARRAY ...) for a type of alignment align: in the debug CRT with
 * the Python call site (MSVC's debug overload), except for over-aligned types. */
static void *operator_new(ProcessObject *po, int mode, size_t size, size_t align, unsigned flags,
                          const char *file, int line)
{
    size_t a = overload_align(align);
    if (mode == PA_CRT_MODE_DEBUG && !a)
        return pa_operator_new_dbg(po->p, size, flags, _NORMAL_BLOCK, file, line);
    return pa_operator_new(po->p, size, a, flags);
}

static PyObject *new_failed(ProcessObject *po, size_t size)
{
    int status = pa_new_status();
    if (pa_crt_flush(po, 0)) return NULL;
    return pa_crt_raise_bad_alloc(po, status, size);
}

/* The element at index i of an array block, as a ctypes object of the element type. */
static PyObject *element(NewBlockObject *nb, size_t i)
{
    return PyObject_CallMethod(nb->type, "from_buffer", "On", (PyObject *)nb,
                               (Py_ssize_t)(i * nb->elem_size));
}

/* Runs the destructors of elements n-1 .. 0. Every one runs; the first exception is kept
 * (-1), later ones are unraisable. */
static int destroy_elements(NewBlockObject *nb, size_t n)
{
    PyObject *type = NULL, *value = NULL, *tb = NULL;
    int failed = 0;
    for (size_t i = n; i-- > 0;) {
        PyObject *e = element(nb, i);
        PyObject *r = e ? PyObject_CallMethod(e, "__pyalloc_destroy__", NULL) : NULL;
        Py_XDECREF(e);
        if (r) {
            Py_DECREF(r);
        } else if (!failed) {
            failed = 1;
            PyErr_Fetch(&type, &value, &tb);
        } else {
            PyErr_WriteUnraisable(nb->type);
        }
    }
    if (failed) PyErr_Restore(type, value, tb);
    return failed ? -1 : 0;
}

/* The exporter of obj if it may be deleted by this call (array or not); NULL raised. */
static NewBlockObject *checked_block(ProcessObject *po, PyObject *obj, int array,
                                     const char *fname)
{
    if (pa_crt_enter(po) < 0) return NULL;
    NewBlockObject *nb = block_of(STATE(po), obj);
    if (!nb) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s() takes an object that %s() returned, not %.100s",
                         fname, array ? "new_array" : "new", Py_TYPE(obj)->tp_name);
        return NULL;
    }
    PyObject *cls = PyExc_ValueError;
    const char *problem = NULL;
    if (nb->process != po) {
        problem = "the object belongs to another process";
    } else if (nb->array != array) {
        cls = PyExc_TypeError;
        problem = array ? "the object was made by new(): use delete()"
                        : "the object was made by new_array(): use delete_array()";
    } else if (nb->state != LIVE) {
        problem = "the object was already deleted";
    } else {
        PyObject *ctypes = PyImport_ImportModule("ctypes");
        PyObject *addr = ctypes ? PyObject_CallMethod(ctypes, "addressof", "O", obj) : NULL;
        PyObject *size = addr ? PyObject_CallMethod(ctypes, "sizeof", "O", obj) : NULL;
        Py_XDECREF(ctypes);
        if (!size) {
            Py_XDECREF(addr);
            Py_DECREF(nb);
            return NULL;
        }
        if (PyLong_AsVoidPtr(addr) != (void *)nb->address ||
            PyLong_AsSsize_t(size) != nb->size) {
            cls = PyExc_TypeError;
            problem = array ? "not the array that new_array() returned (a part of it?)"
                            : "not the object that new() returned (a part of it?)";
        }
        Py_DECREF(addr);
        Py_DECREF(size);
        if (PyErr_Occurred()) {
            Py_DECREF(nb);
            return NULL;
        }
    }
    if (problem) {
        PyErr_SetString(cls, problem);
        Py_DECREF(nb);
        return NULL;
    }
    return nb;
}

/* ------------------------------------------------------------------------------------------ */
/* operator new and operator delete                                                            */

static int arg_align(PyObject *o, size_t *align)
{
    *align = 0;
    if (!o || o == Py_None) return 0;
    if (pa_arg_size(o, align)) return -1;
    if (*align & (*align - 1)) {
        PyErr_SetString(PyExc_ValueError, "align must be 0 or a power of two");
        return -1;
    }
    return 0;
}

static int arg_flag(PyObject *o, unsigned bit, unsigned *flags)
{
    if (!o) return 0;
    int v = PyObject_IsTrue(o);
    if (v < 0) return -1;
    if (v) *flags |= bit;
    return 0;
}

PyObject *operator_new_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"size", "align", "array", "nothrow", NULL};
    PyObject *a[4] = {NULL, NULL, NULL, NULL};
    size_t size, align;
    unsigned flags = 0;
    const char *file = NULL;
    int line = 0;
    if (nargs > 2)
        return PyErr_Format(PyExc_TypeError, "operator_new() takes at most 2 positional "
                                             "arguments (array and nothrow are keywords)");
    if (pa_parse_args("operator_new", args, nargs, kwnames, names, 1, a) ||
        pa_arg_size(a[0], &size) || arg_align(a[1], &align) ||
        arg_flag(a[2], PA_NEW_ARRAY, &flags) || arg_flag(a[3], PA_NEW_NOTHROW, &flags))
        return NULL;
    int mode = pa_crt_enter(SELF);
    if (mode < 0 || (mode == PA_CRT_MODE_DEBUG && pa_crt_call_site(&file, &line))) return NULL;
    void *r = mode == PA_CRT_MODE_DEBUG && !align
                  ? pa_operator_new_dbg(SELF->p, size, flags, _NORMAL_BLOCK, file, line)
                  : pa_operator_new(SELF->p, size, align, flags);
    if (r) return pa_crt_flush(SELF, (uintptr_t)r) ? NULL : PyLong_FromVoidPtr(r);
    if (!(flags & PA_NEW_NOTHROW)) return new_failed(SELF, size);
    /* The nothrow overloads catch what the throwing one threw (heap.md fact 84). */
    if (pa_crt_flush(SELF, 0)) return NULL;
    if (PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
        PyErr_Clear();
    }
    Py_RETURN_NONE;
}

PyObject *operator_delete_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"address", "align", "array", NULL};
    PyObject *a[3] = {NULL, NULL, NULL};
    uintptr_t address;
    size_t align;
    unsigned flags = 0;
    if (nargs > 2)
        return PyErr_Format(PyExc_TypeError, "operator_delete() takes at most 2 positional "
                                             "arguments (array is a keyword)");
    if (pa_parse_args("operator_delete", args, nargs, kwnames, names, 1, a) ||
        pa_arg_ptr(a[0], &address) || arg_align(a[1], &align) ||
        arg_flag(a[2], PA_NEW_ARRAY, &flags) || pa_crt_enter(SELF) < 0 ||
        pa_crt_check_not_exported(SELF, address))
        return NULL;
    errno = 0;
    pa_operator_delete(SELF->p, (void *)address, 0, align, flags);
    int err = errno;
    if (pa_crt_flush(SELF, 0)) return NULL;
    if (err) return pa_crt_raise_errno(SELF, err, "operator_delete");
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* new and delete expressions                                                                  */

PyObject *new_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    size_t size, align;
    const char *file = NULL;
    int line = 0;
    if (nargs < 1) return PyErr_Format(PyExc_TypeError, "new() missing required argument 'ctype'");
    PyObject *type = args[0];
    int mode = pa_crt_enter(SELF);
    if (mode < 0 || ctype_layout(type, &size, &align) ||
        (mode == PA_CRT_MODE_DEBUG && pa_crt_call_site(&file, &line)))
        return NULL;
    int has_dtor = has_destructor(type);
    char *obj = operator_new(SELF, mode, size, align, 0, file, line);
    if (!obj) return new_failed(SELF, size);
    /* Pinned before the reports run Python code (a warning's filter, the break callback),
     * which then can neither free the block nor close the process (BufferError) under the
     * object built here. */
    NewBlockObject *nb = block_new(SELF, type, obj, size, obj, size);
    if (!nb) {
        pa_delete_object(SELF->p, obj, size, align, NULL, NULL);
        return NULL;
    }
    if (pa_crt_flush(SELF, (uintptr_t)obj)) {
        Py_DECREF(nb); /* LIVE: the block stays, as allocated */
        return NULL;
    }
    nb->elem_size = size;
    nb->elem_align = align;
    nb->count = 1;
    nb->has_dtor = has_dtor;
    PyObject *o = PyObject_CallMethod(type, "from_buffer", "O", (PyObject *)nb);
    if (o) keep_block(o, nb);
    if (o && (nargs > 1 || kwnames || has_constructor(type))) {
        PyObject *init = PyObject_GetAttrString(o, "__init__");
        PyObject *r = init ? PyObject_Vectorcall(init, args + 1, (size_t)(nargs - 1), kwnames)
                           : NULL;
        Py_XDECREF(init);
        if (r) Py_DECREF(r);
        else Py_CLEAR(o);
    }
    if (!o) block_doom(nb); /* freed once whatever the constructor kept of it is gone */
    Py_DECREF(nb);
    return o;
}

PyObject *delete_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"obj", NULL};
    PyObject *a[1] = {NULL};
    if (pa_parse_args("delete", args, nargs, kwnames, names, 1, a)) return NULL;
    NewBlockObject *nb = checked_block(SELF, a[0], 0, "delete");
    if (!nb) return NULL;
    nb->state = DESTROYING;
    int failed = 0;
    if (nb->has_dtor) { /* the memory goes back even if the destructor raises, as in C++ */
        PyObject *r = PyObject_CallMethod(a[0], "__pyalloc_destroy__", NULL);
        failed = !r;
        Py_XDECREF(r);
    }
    block_doom(nb);
    Py_DECREF(nb);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

PyObject *new_array_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    static const char *const names[] = {"ctype", "count", NULL};
    PyObject *a[2] = {NULL, NULL};
    size_t count, elem_size, elem_align;
    const char *file = NULL;
    int line = 0;
    if (pa_parse_args("new_array", args, nargs, kwnames, names, 2, a) ||
        pa_arg_size(a[1], &count))
        return NULL;
    PyObject *type = a[0];
    int mode = pa_crt_enter(SELF);
    if (mode < 0 || ctype_layout(type, &elem_size, &elem_align) ||
        (mode == PA_CRT_MODE_DEBUG && pa_crt_call_site(&file, &line)))
        return NULL;
    int has_dtor = has_destructor(type);
    /* MSVC's new T[count] (heap.md fact 86): the cookie only with a destructor; a size that
     * overflows asks for SIZE_MAX (bad_array_new_length). */
    size_t cookie = pa_new_array_cookie_size(elem_align, has_dtor);
    size_t bytes = SIZE_MAX;
    if (!elem_size || count <= (SIZE_MAX - cookie) / elem_size) bytes = elem_size * count + cookie;
    char *raw = operator_new(SELF, mode, bytes, elem_align, PA_NEW_ARRAY, file, line);
    if (!raw) return new_failed(SELF, bytes);
    if (cookie) memcpy(raw, &count, sizeof count);
    char *array = raw + cookie;
    PyObject *arrtype = PyNumber_Multiply(type, a[1]); /* T * count */
    /* Pinned before the reports run Python code, as in new(). */
    NewBlockObject *nb = arrtype ? block_new(SELF, type, array, bytes - cookie, raw, bytes) : NULL;
    if (!nb) {
        Py_XDECREF(arrtype);
        pa_delete_array(SELF->p, array, elem_size, elem_align, has_dtor, NULL, NULL);
        return NULL;
    }
    if (pa_crt_flush(SELF, (uintptr_t)array)) {
        Py_DECREF(arrtype);
        Py_DECREF(nb); /* LIVE: the block stays, as allocated */
        return NULL;
    }
    nb->elem_size = elem_size;
    nb->elem_align = elem_align;
    nb->count = count;
    nb->array = 1;
    nb->has_dtor = has_dtor;
    PyObject *arr = PyObject_CallMethod(arrtype, "from_buffer", "O", (PyObject *)nb);
    if (arr) keep_block(arr, nb);
    Py_DECREF(arrtype);
    int has_ctor = arr && count && has_constructor(type);
    for (size_t i = 0; arr && has_ctor && i < count; i++) {
        PyObject *e = element(nb, i);
        PyObject *r = e ? PyObject_CallMethod(e, "__init__", NULL) : NULL;
        Py_XDECREF(e);
        if (r) {
            Py_DECREF(r);
            continue;
        }
        /* Constructor i raised: destroy 0 .. i-1 in reverse, then give the memory back. */
        PyObject *etype, *value, *tb;
        PyErr_Fetch(&etype, &value, &tb);
        nb->state = DESTROYING;
        if (has_dtor && destroy_elements(nb, i)) PyErr_WriteUnraisable(type);
        PyErr_Restore(etype, value, tb);
        Py_CLEAR(arr);
    }
    if (!arr) block_doom(nb);
    Py_DECREF(nb);
    return arr;
}

PyObject *delete_array_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"obj", NULL};
    PyObject *a[1] = {NULL};
    if (pa_parse_args("delete_array", args, nargs, kwnames, names, 1, a)) return NULL;
    NewBlockObject *nb = checked_block(SELF, a[0], 1, "delete_array");
    if (!nb) return NULL;
    size_t n = nb->count;
    if (nb->has_dtor) {
        /* delete[] reads the count back from the cookie (inside the pinned allocation). */
        n = pa_new_array_count(nb->address, nb->elem_align);
        if (n > nb->count) {
            PyErr_Format(PyExc_ValueError,
                         "the array cookie was overwritten: it says %zu elements, the array "
                         "has %zu",
                         n, nb->count);
            Py_DECREF(nb);
            return NULL;
        }
    }
    nb->state = DESTROYING;
    int failed = nb->has_dtor && destroy_elements(nb, n);
    block_doom(nb);
    Py_DECREF(nb);
    if (failed) return NULL;
    Py_RETURN_NONE;
}
