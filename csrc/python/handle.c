/* handle.c: pyalloc.Handle and the section functions (CreateFileMapping, OpenFileMapping,
 * MapViewOfFile[Ex], UnmapViewOfFile, FlushViewOfFile, CloseHandle).
 *
 * A Handle owns one entry of the core's handle table: int(handle) is its value, and it is
 * closed by CloseHandle, by `with`, or when garbage-collected. A closed Handle fails with
 * ERROR_INVALID_HANDLE, as a stale handle does on Windows; it never names a reused entry.
 */
#include "binding.h"
#include "structmember.h"

typedef struct {
    PyObject_HEAD
    HANDLE h;            /* NULL once closed */
    int already_existed; /* CreateFileMapping found the name */
} HandleObject;

static PyObject *Handle_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    HandleObject *ho = (HandleObject *)self;
    if (ho->h) pa_close_handle(ho->h);
    ho->h = NULL;
    Py_RETURN_NONE;
}

static PyObject *Handle_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self);
}

static PyObject *Handle_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    PyObject *r = Handle_close(self, NULL);
    Py_XDECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *Handle_int(PyObject *self)
{
    return PyLong_FromSize_t((size_t)(uintptr_t)((HandleObject *)self)->h);
}

static PyObject *Handle_repr(PyObject *self)
{
    HandleObject *ho = (HandleObject *)self;
    if (!ho->h) return PyUnicode_FromString("<pyalloc.Handle (closed)>");
    uint64_t size = 0;
    DWORD attributes = 0, protect = 0;
    if (pa_nt_query_section(ho->h, &size, &attributes, &protect) != STATUS_SUCCESS)
        return PyUnicode_FromFormat("<pyalloc.Handle %zu>", (size_t)(uintptr_t)ho->h);
    PyObject *prot = pa_protect_name(protect);
    if (!prot) return NULL;
    char sz[32];
    snprintf(sz, sizeof sz, "0x%llx", (unsigned long long)size);
    PyObject *r = PyUnicode_FromFormat("<pyalloc.Handle %zu: section of %s bytes, %U%s%s>",
                                       (size_t)(uintptr_t)ho->h, sz, prot,
                                       (attributes & SEC_RESERVE) ? ", SEC_RESERVE" : "",
                                       (attributes & SEC_FILE) ? ", file" : ", pagefile");
    Py_DECREF(prot);
    return r;
}

static PyObject *Handle_get_closed(PyObject *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(((HandleObject *)self)->h == NULL);
}

static PyObject *Handle_get_size(PyObject *self, void *Py_UNUSED(c))
{
    uint64_t size;
    HandleObject *ho = (HandleObject *)self;
    if (!ho->h || pa_nt_query_section(ho->h, &size, NULL, NULL) != STATUS_SUCCESS) Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(size);
}

static void Handle_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    HandleObject *ho = (HandleObject *)self;
    if (ho->h) pa_close_handle(ho->h);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef Handle_methods[] = {
    {"close", Handle_close, METH_NOARGS,
     "close($self, /)\n--\n\nCloseHandle (no error if already closed)."},
    {"__enter__", Handle_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Handle_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Handle_members[] = {
    {"already_existed", T_INT, offsetof(HandleObject, already_existed), READONLY,
     "True if CreateFileMapping returned an existing named object (ERROR_ALREADY_EXISTS)."},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef Handle_getset[] = {
    {"closed", Handle_get_closed, NULL, "True once closed.", NULL},
    {"size", Handle_get_size, NULL, "The section's size in bytes (None once closed).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_doc, "A Windows handle to a section (file mapping object)."},
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_repr, Handle_repr},
    {Py_nb_int, Handle_int},
    {Py_nb_index, Handle_int},
    {Py_tp_methods, Handle_methods},
    {Py_tp_members, Handle_members},
    {Py_tp_getset, Handle_getset},
    {0, NULL},
};

static PyType_Spec Handle_spec = {
    "pyalloc.Handle", sizeof(HandleObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    Handle_slots,
};

int pa_handle_type_init(PyObject *module, pa_state *st)
{
    st->Handle = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Handle_spec, NULL);
    if (!st->Handle) return -1;
    return PyModule_AddType(module, st->Handle);
}

/* The open HANDLE inside a Handle argument; raises WinError 6 when closed, TypeError when not
 * a Handle. */
static int arg_handle(pa_state *st, PyObject *o, HANDLE *out)
{
    if (!PyObject_TypeCheck(o, st->Handle)) {
        PyErr_Format(PyExc_TypeError, "expected a pyalloc.Handle, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *out = ((HandleObject *)o)->h;
    if (!*out) {
        pa_raise_win_error(st, ERROR_INVALID_HANDLE);
        return -1;
    }
    return 0;
}

/* A name argument: None or str (UTF-8). *bytes keeps the encoded name alive. */
static int arg_name(PyObject *o, PyObject **bytes, const char **name)
{
    *bytes = NULL;
    *name = NULL;
    if (o == NULL || o == Py_None) return 0;
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "name must be a str or None, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    *bytes = PyUnicode_AsUTF8String(o);
    if (!*bytes) return -1;
    *name = PyBytes_AS_STRING(*bytes);
    if (strlen(*name) != (size_t)PyBytes_GET_SIZE(*bytes) || strlen(*name) > 200) {
        Py_CLEAR(*bytes);
        PyErr_SetString(PyExc_ValueError, "name must be at most 200 bytes without NUL");
        return -1;
    }
    return 0;
}

static PyObject *new_handle(pa_state *st, HANDLE h, int existed)
{
    HandleObject *ho = PyObject_New(HandleObject, st->Handle);
    if (!ho) {
        pa_close_handle(h);
        return NULL;
    }
    ho->h = h;
    ho->already_existed = existed;
    return (PyObject *)ho;
}

#define STATE(self) pa_get_state(((ProcessObject *)(self))->module)
#define PROC(self) (((ProcessObject *)(self))->p)

PyObject *CreateFileMapping_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"file", "protect", "maximum_size", "name", NULL};
    PyObject *a[4] = {NULL, NULL, NULL, NULL}, *name_bytes = NULL;
    pa_state *st = STATE(self);
    DWORD protect;
    size_t max_size;
    const char *name;
    HANDLE file = NULL;
    if (pa_parse_args("CreateFileMapping", args, nargs, kwnames, names, 3, a) ||
        pa_arg_dword(a[1], &protect) || pa_arg_size(a[2], &max_size) ||
        arg_name(a[3], &name_bytes, &name))
        return NULL;
    if (a[0] != Py_None) {
        int fd = PyObject_AsFileDescriptor(a[0]);
        if (fd < 0) goto error;
        if (pa_nt_file_handle(fd, &file) != STATUS_SUCCESS) {
            pa_raise_win_error(st, ERROR_INVALID_HANDLE);
            goto error;
        }
    }
    HANDLE h = pa_create_file_mapping(file ? file : INVALID_HANDLE_VALUE, protect, max_size, name);
    DWORD err = pa_get_last_error();
    if (file) pa_close_handle(file); /* the section keeps its own descriptor */
    Py_CLEAR(name_bytes);
    if (!h) return pa_raise_win_error(st, err);
    pa_set_last_error(err);
    return new_handle(st, h, err == ERROR_ALREADY_EXISTS);
error:
    Py_XDECREF(name_bytes);
    return NULL;
}

PyObject *OpenFileMapping_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"desired_access", "name", NULL};
    PyObject *a[2] = {NULL, NULL}, *name_bytes;
    DWORD access;
    const char *name;
    if (pa_parse_args("OpenFileMapping", args, nargs, kwnames, names, 2, a) ||
        pa_arg_dword(a[0], &access) || arg_name(a[1], &name_bytes, &name))
        return NULL;
    if (!name) {
        Py_XDECREF(name_bytes);
        return pa_raise_win_error(STATE(self), ERROR_INVALID_PARAMETER);
    }
    HANDLE h = pa_open_file_mapping(access, name);
    Py_XDECREF(name_bytes);
    if (!h) return pa_raise_last_error(STATE(self));
    return new_handle(STATE(self), h, 0);
}

static PyObject *map_view(PyObject *self, const char *fname, PyObject *const *args,
                          Py_ssize_t nargs, PyObject *kwnames, int ex)
{
    static const char *const names[2][6] = {
        {"mapping", "desired_access", "offset", "size", NULL},
        {"mapping", "desired_access", "offset", "size", "base_address", NULL}};
    PyObject *a[5] = {NULL, NULL, NULL, NULL, NULL};
    HANDLE h;
    DWORD access;
    size_t offset, size;
    uintptr_t base = 0;
    if (!PROC(self)) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
        return NULL;
    }
    if (pa_parse_args(fname, args, nargs, kwnames, names[ex], ex ? 5 : 4, a)) return NULL;
    if (arg_handle(STATE(self), a[0], &h) || pa_arg_dword(a[1], &access) ||
        pa_arg_size(a[2], &offset) || pa_arg_size(a[3], &size) || (ex && pa_arg_ptr(a[4], &base)))
        return NULL;
    void *v = pa_map_view_of_file(PROC(self), h, access, offset, size, (void *)base);
    if (!v) return pa_raise_last_error(STATE(self));
    return PyLong_FromUnsignedLongLong((uintptr_t)v);
}

PyObject *MapViewOfFile_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    return map_view(self, "MapViewOfFile", args, nargs, kwnames, 0);
}

PyObject *MapViewOfFileEx_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    return map_view(self, "MapViewOfFileEx", args, nargs, kwnames, 1);
}

PyObject *UnmapViewOfFile_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    if (!PROC(self)) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
        return NULL;
    }
    if (pa_parse_args("UnmapViewOfFile", args, nargs, kwnames, names, 1, a) ||
        pa_arg_ptr(a[0], &address))
        return NULL;
    if (!pa_unmap_view_of_file(PROC(self), (void *)address)) return pa_raise_last_error(STATE(self));
    Py_RETURN_TRUE;
}

PyObject *FlushViewOfFile_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                               PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", NULL};
    PyObject *a[2] = {NULL, NULL};
    uintptr_t address;
    size_t size;
    if (!PROC(self)) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
        return NULL;
    }
    if (pa_parse_args("FlushViewOfFile", args, nargs, kwnames, names, 2, a) ||
        pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size))
        return NULL;
    if (!pa_flush_view_of_file(PROC(self), (void *)address, size))
        return pa_raise_last_error(STATE(self));
    Py_RETURN_TRUE;
}

PyObject *CloseHandle_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"handle", NULL};
    PyObject *a[1] = {NULL};
    HANDLE h;
    if (pa_parse_args("CloseHandle", args, nargs, kwnames, names, 1, a) ||
        arg_handle(STATE(self), a[0], &h))
        return NULL;
    ((HandleObject *)a[0])->h = NULL;
    if (!pa_close_handle(h)) return pa_raise_last_error(STATE(self));
    Py_RETURN_TRUE;
}
