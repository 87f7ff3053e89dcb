/* process.c: pyalloc.Process, one simulated Windows process, and the Windows-named functions.
 *
 * Each Windows-named function is written once, as a Process method; the module-level function
 * of the same name calls it on the current process (pa_current_process). Pointers are Python
 * ints (None or 0 for NULL). A Win32 failure raises WinError with the last error; memory that
 * a checked access cannot reach raises AccessViolation or GuardPageViolation, never a crash.
 * All calls keep the GIL, so close() cannot race with a call on another Python thread.
 */
#include "binding.h"

#define STATE(self) pa_get_state(((ProcessObject *)(self))->module)
#define PROC(self) (((ProcessObject *)(self))->p)

static int check_open(PyObject *self)
{
    if (PROC(self)) return 0;
    PyErr_SetString(PyExc_ValueError, "operation on a closed Process");
    return -1;
}

/* Parses the arguments of a Windows-named method and checks that the process is open. */
#define PARSE(fname, names, nreq, out)                                                           \
    do {                                                                                         \
        if (check_open(self) ||                                                                  \
            pa_parse_args(fname, args, nargs, kwnames, names, nreq, out))                        \
            return NULL;                                                                         \
    } while (0)

/* ---- lifetime ---- */

static PyObject *wrap_process(PyTypeObject *cls, PyObject *module, pa_process_t *p, int owned)
{
    ProcessObject *self = (ProcessObject *)cls->tp_alloc(cls, 0);
    if (!self) return NULL;
    self->p = p;
    self->owned = owned;
    self->module = Py_NewRef(module);
    self->heap_guard = 1;
    return (PyObject *)self;
}

static PyObject *Process_new(PyTypeObject *cls, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"address_space", "commit_limit", "heap_guard", "crt_debug", NULL};
    PyObject *space_o = Py_None, *limit_o = Py_None, *crt_debug_o = Py_None;
    int heap_guard = 1, crt_debug = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OOpO:Process", kwlist, &space_o, &limit_o,
                                     &heap_guard, &crt_debug_o))
        return NULL;
    if (crt_debug_o != Py_None && (crt_debug = PyObject_IsTrue(crt_debug_o)) < 0) return NULL;
    pa_process_options_t opt = {0, 0};
    if (space_o != Py_None && pa_arg_size(space_o, &opt.address_space)) return NULL;
    if (limit_o != Py_None && pa_arg_size(limit_o, &opt.commit_limit)) return NULL;
    if (space_o != Py_None && (opt.address_space < 3 * PA_GRANULARITY ||
                               opt.address_space % PA_GRANULARITY ||
                               opt.address_space > ((size_t)1 << 46)))
        return PyErr_Format(PyExc_ValueError,
                            "address_space must be a multiple of 64 KiB from 192 KiB to 64 TiB");
    if (limit_o != Py_None && opt.commit_limit == 0)
        return PyErr_Format(PyExc_ValueError, "commit_limit must be positive, or None");
    PyObject *module = PyType_GetModuleByDef(cls, &pa_module_def);
    if (!module) return NULL;
    NTSTATUS status;
    pa_process_t *p = pa_process_create(&opt, &status);
    if (!p) {
        size_t span = opt.address_space ? opt.address_space : PA_DEFAULT_ADDRESS_SPACE;
        return PyErr_Format(PyExc_MemoryError,
                            "the host refused a reservation of %zu MiB for the process's "
                            "address space (under ulimit -v?); pass a smaller address_space",
                            span >> 20);
    }
    PyObject *self = wrap_process(cls, module, p, 1);
    if (!self) {
        pa_process_destroy(p);
        return NULL;
    }
    ((ProcessObject *)self)->heap_guard = heap_guard;
    if (crt_debug >= 0 && pa_crt_process_init((ProcessObject *)self, crt_debug)) Py_CLEAR(self);
    return self;
}

/* Destroys the simulated process. BufferError while a view is alive. */
static int close_process(ProcessObject *self)
{
    if (!self->p || !self->owned) return 0;
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "cannot close a Process while views of it exist");
        return -1;
    }
    if (pa_wait_heap_unlocked((PyObject *)self, NULL)) return -1;
    if (pa_crt_process_closing(self)) return -1;
    if (pa_process_destroy(self->p) != STATUS_SUCCESS) {
        PyErr_SetString(PyExc_BufferError, "cannot close a Process while views of it exist");
        return -1;
    }
    self->p = NULL; /* closed, before the rundown's reports run Python code */
    pa_crt_process_closed(self, NULL);
    return 0;
}

static PyObject *Process_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!((ProcessObject *)self)->owned)
        return PyErr_Format(PyExc_ValueError, "the current process cannot be closed");
    if (close_process((ProcessObject *)self)) return NULL;
    Py_RETURN_NONE;
}

static PyObject *Process_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self)) return NULL;
    return Py_NewRef(self);
}

static PyObject *Process_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    if (((ProcessObject *)self)->owned && close_process((ProcessObject *)self)) return NULL;
    Py_RETURN_FALSE;
}

static int Process_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((ProcessObject *)self)->module);
    return pa_crt_process_traverse((ProcessObject *)self, visit, arg);
}

static int Process_clear(PyObject *self)
{
    Py_CLEAR(((ProcessObject *)self)->module);
    pa_crt_process_clear((ProcessObject *)self);
    return 0;
}

static void Process_dealloc(PyObject *self)
{
    ProcessObject *po = (ProcessObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    /* No exporter can be alive: each holds a reference to us. */
    (void)pa_crt_process_closing(po); /* no call can be under way: each holds a reference */
    pa_process_t *p = po->p;
    po->p = NULL;
    if (p && po->owned) pa_process_destroy(p); /* heaps go in its rundown */
    pa_crt_process_closed(po, po->owned ? NULL : p);
    Process_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *Process_repr(PyObject *self)
{
    ProcessObject *po = (ProcessObject *)self;
    const char *name = Py_TYPE(self)->tp_name;
    if (!po->p) return PyUnicode_FromFormat("<%s (closed)>", name);
    pa_vm_stats_t s;
    pa_process_stats(po->p, &s);
    char range[64];
    snprintf(range, sizeof range, "0x%zx-0x%zx", (size_t)pa_process_min_address(po->p),
             (size_t)pa_process_max_address(po->p));
    return PyUnicode_FromFormat("<%s%s %s: %zu allocations, %zu KiB reserved, %zu KiB committed>",
                                name, po->owned ? "" : " (current)", range, s.allocations,
                                s.reserved >> 10, s.committed >> 10);
}

/* ---- the Windows-named functions ---- */

static PyObject *VirtualAlloc_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", "allocation_type", "protect", NULL};
    PyObject *a[4] = {NULL};
    uintptr_t address;
    size_t size;
    DWORD type, protect;
    PARSE("VirtualAlloc", names, 4, a);
    if (pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size) || pa_arg_dword(a[2], &type) ||
        pa_arg_dword(a[3], &protect))
        return NULL;
    void *r = pa_virtual_alloc(PROC(self), (void *)address, size, type, protect, PA_OWNER_APP);
    if (!r) return pa_raise_last_error(STATE(self));
    return PyLong_FromUnsignedLongLong((uintptr_t)r);
}

static PyObject *VirtualFree_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                  PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", "free_type", NULL};
    PyObject *a[3] = {NULL};
    uintptr_t address;
    size_t size;
    DWORD type;
    PARSE("VirtualFree", names, 3, a);
    if (pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size) || pa_arg_dword(a[2], &type))
        return NULL;
    if (!pa_virtual_free(PROC(self), (void *)address, size, type, PA_OWNER_APP))
        return pa_raise_last_error(STATE(self));
    Py_RETURN_TRUE;
}

static PyObject *VirtualProtect_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                     PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", "new_protect", NULL};
    PyObject *a[3] = {NULL};
    uintptr_t address;
    size_t size;
    DWORD protect, old = 0;
    PARSE("VirtualProtect", names, 3, a);
    if (pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size) || pa_arg_dword(a[2], &protect))
        return NULL;
    if (!pa_virtual_protect(PROC(self), (void *)address, size, protect, &old, PA_OWNER_APP))
        return pa_raise_last_error(STATE(self));
    return PyLong_FromUnsignedLong(old);
}

static PyObject *VirtualQuery_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"address", NULL};
    PyObject *a[1] = {NULL};
    uintptr_t address;
    MEMORY_BASIC_INFORMATION mbi;
    PARSE("VirtualQuery", names, 1, a);
    if (pa_arg_ptr(a[0], &address)) return NULL;
    if (!pa_virtual_query(PROC(self), (void *)address, &mbi, sizeof mbi))
        return pa_raise_last_error(STATE(self));
    return pa_mbi_new(STATE(self), &mbi);
}

static PyObject *GetSystemInfo_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    SYSTEM_INFO si;
    PARSE("GetSystemInfo", names, 0, NULL);
    pa_get_system_info(PROC(self), &si);
    return pa_system_info_new(STATE(self), &si);
}

static PyObject *GetWriteWatch_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                    PyObject *kwnames)
{
    static const char *const names[] = {"flags", "address", "size", "count", NULL};
    PyObject *a[4] = {NULL, NULL, NULL, NULL};
    DWORD flags;
    uintptr_t address;
    size_t size, count;
    PARSE("GetWriteWatch", names, 3, a);
    if (pa_arg_dword(a[0], &flags) || pa_arg_ptr(a[1], &address) || pa_arg_size(a[2], &size))
        return NULL;
    if (a[3] && a[3] != Py_None) {
        if (pa_arg_size(a[3], &count)) return NULL;
    } else {
        /* Room for every page of the range (the range must lie in one allocation anyway). */
        size_t pages = (size_t)((address + size + PA_PAGE_SIZE - 1) / PA_PAGE_SIZE -
                                address / PA_PAGE_SIZE);
        count = pages ? pages : 1;
    }
    if (count > ((size_t)1 << 24)) count = (size_t)1 << 24;
    PVOID *addresses = count ? PyMem_Malloc(count * sizeof(PVOID)) : NULL;
    if (count && !addresses) return PyErr_NoMemory();
    ULONG_PTR n = count;
    ULONG granularity = 0;
    UINT r = pa_get_write_watch(PROC(self), flags, (void *)address, size,
                                count ? addresses : NULL, &n, &granularity);
    PyObject *list = NULL, *result = NULL;
    if (r != 0) {
        pa_raise_last_error(STATE(self));
        goto done;
    }
    list = PyList_New((Py_ssize_t)n);
    if (!list) goto done;
    for (ULONG_PTR i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong((uintptr_t)addresses[i]);
        if (!v) goto done;
        PyList_SET_ITEM(list, (Py_ssize_t)i, v);
    }
    result = Py_BuildValue("(Ok)", list, (unsigned long)granularity);
done:
    Py_XDECREF(list);
    PyMem_Free(addresses);
    return result;
}

static PyObject *ResetWriteWatch_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                      PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", NULL};
    PyObject *a[2] = {NULL};
    uintptr_t address;
    size_t size;
    PARSE("ResetWriteWatch", names, 2, a);
    if (pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size)) return NULL;
    if (pa_reset_write_watch(PROC(self), (void *)address, size) != 0)
        return pa_raise_last_error(STATE(self));
    Py_RETURN_TRUE;
}

static PyObject *GetLastError_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {NULL};
    (void)self;
    if (pa_parse_args("GetLastError", args, nargs, kwnames, names, 0, NULL)) return NULL;
    return PyLong_FromUnsignedLong(pa_get_last_error());
}

static PyObject *SetLastError_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                   PyObject *kwnames)
{
    static const char *const names[] = {"code", NULL};
    PyObject *a[1] = {NULL};
    DWORD code;
    (void)self;
    if (pa_parse_args("SetLastError", args, nargs, kwnames, names, 1, a) ||
        pa_arg_dword(a[0], &code))
        return NULL;
    pa_set_last_error(code);
    Py_RETURN_NONE;
}

/* ---- memory access ---- */

static PyObject *read_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", NULL};
    PyObject *a[2] = {NULL};
    uintptr_t address, fault = 0;
    size_t size;
    PARSE("read", names, 2, a);
    if (pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size)) return NULL;
    if (size > ((size_t)1 << 20)) {
        /* Check a big range before allocating the result: a read that would fault is an
         * AccessViolation (or a guard hit), not a MemoryError. The pin checks and goes. */
        pa_pin_t *pin;
        int writable;
        NTSTATUS s = pa_mm_pin(PROC(self), (void *)address, size, 0, &writable, &fault, &pin);
        if (s != STATUS_SUCCESS) return pa_raise_access(STATE(self), s, fault, "read");
        pa_mm_unpin(PROC(self), pin);
    }
    if (size > (size_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (!out) return NULL;
    NTSTATUS s = pa_mm_read(PROC(self), (void *)address, PyBytes_AS_STRING(out), size, &fault);
    if (s != STATUS_SUCCESS) {
        Py_DECREF(out);
        return pa_raise_access(STATE(self), s, fault, "read");
    }
    return out;
}

static PyObject *write_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                            PyObject *kwnames)
{
    static const char *const names[] = {"address", "data", NULL};
    PyObject *a[2] = {NULL};
    uintptr_t address, fault = 0;
    PARSE("write", names, 2, a);
    if (pa_arg_ptr(a[0], &address)) return NULL;
    Py_buffer buf;
    if (PyObject_GetBuffer(a[1], &buf, PyBUF_SIMPLE)) return NULL;
    if (pa_heap_check_access((ProcessObject *)self, address, (size_t)buf.len, "write")) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    NTSTATUS s = pa_mm_write(PROC(self), (void *)address, buf.buf, (size_t)buf.len, &fault);
    PyBuffer_Release(&buf);
    if (s != STATUS_SUCCESS) return pa_raise_access(STATE(self), s, fault, "write");
    Py_RETURN_NONE;
}

static PyObject *view_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    static const char *const names[] = {"address", "size", NULL};
    PyObject *a[2] = {NULL};
    uintptr_t address;
    size_t size;
    PARSE("view", names, 2, a);
    if (pa_arg_ptr(a[0], &address) || pa_arg_size(a[1], &size) ||
        pa_heap_check_access((ProcessObject *)self, address, size, "read"))
        return NULL;
    return pa_export_view((ProcessObject *)self, address, size);
}

/* ---- Process-only methods ---- */

PyObject *pa_vm_stats_dict(const pa_vm_stats_t *s)
{
    return Py_BuildValue("{sKsKsKsKsKsKsKsK}", "reserved", (unsigned long long)s->reserved,
                         "committed", (unsigned long long)s->committed, "peak_committed",
                         (unsigned long long)s->peak_committed, "commit_limit",
                         (unsigned long long)s->commit_limit, "allocations",
                         (unsigned long long)s->allocations, "pins", (unsigned long long)s->pins,
                         "guard_hits", (unsigned long long)s->guard_hits, "watch_faults",
                         (unsigned long long)s->watch_faults);
}

static PyObject *Process_stats(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self)) return NULL;
    pa_vm_stats_t s;
    pa_process_stats(PROC(self), &s);
    return pa_vm_stats_dict(&s);
}

PyObject *pa_region_tuple(const pa_region_info_t *r)
{
    const MEMORY_BASIC_INFORMATION *m = &r->mbi;
    return Py_BuildValue("(KKkkkKkkOO)", (unsigned long long)(uintptr_t)m->BaseAddress,
                         (unsigned long long)m->RegionSize, (unsigned long)m->State,
                         (unsigned long)m->Protect, (unsigned long)m->Type,
                         (unsigned long long)(uintptr_t)m->AllocationBase,
                         (unsigned long)m->AllocationProtect, (unsigned long)r->owner,
                         r->unusable ? Py_True : Py_False, r->mapped_file ? Py_True : Py_False);
}

static int walk_one(const pa_region_info_t *r, void *arg)
{
    PyObject *t = pa_region_tuple(r);
    if (!t || PyList_Append((PyObject *)arg, t)) {
        Py_XDECREF(t);
        return -1;
    }
    Py_DECREF(t);
    return 0;
}

static PyObject *Process_walk(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self)) return NULL;
    PyObject *list = PyList_New(0);
    if (list && pa_process_walk(PROC(self), walk_one, list)) Py_CLEAR(list);
    return list;
}

/* ---- event trace ---- */

static PyObject *Process_trace_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    size_t capacity = 0;
    if (check_open(self)) return NULL;
    if (nargs > 1)
        return PyErr_Format(PyExc_TypeError, "_trace_start() takes at most 1 argument (%zd given)",
                            nargs);
    if (nargs == 1 && pa_arg_size(args[0], &capacity)) return NULL;
    if (pa_trace_start(PROC(self), capacity) != STATUS_SUCCESS) return PyErr_NoMemory();
    return PyLong_FromUnsignedLongLong(pa_trace_next_seq(PROC(self)));
}

static PyObject *Process_trace_stop(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (check_open(self)) return NULL;
    pa_trace_stop(PROC(self));
    Py_RETURN_NONE;
}

/* _trace_read(since) -> ([(seq, time_ns, layer, op, address, size, flags, extra, result)],
 * next_since, lost) */
static PyObject *Process_trace_read(PyObject *self, PyObject *arg)
{
    size_t since;
    if (check_open(self) || pa_arg_size(arg, &since)) return NULL;
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    enum { CHUNK = 256 };
    pa_trace_event_t buf[CHUNK];
    uint64_t next = since, lost_total = 0;
    for (;;) {
        uint64_t lost;
        size_t n = pa_trace_read(PROC(self), next, buf, CHUNK, &next, &lost);
        lost_total += lost;
        for (size_t i = 0; i < n; i++) {
            const pa_trace_event_t *e = &buf[i];
            PyObject *t = Py_BuildValue("(KKkkKKKKL)", (unsigned long long)e->seq,
                                        (unsigned long long)e->time_ns, (unsigned long)e->layer,
                                        (unsigned long)e->op, (unsigned long long)e->address,
                                        (unsigned long long)e->size, (unsigned long long)e->flags,
                                        (unsigned long long)e->extra, (long long)e->result);
            if (!t || PyList_Append(list, t)) {
                Py_XDECREF(t);
                Py_DECREF(list);
                return NULL;
            }
            Py_DECREF(t);
        }
        if (n < CHUNK) break;
    }
    PyObject *r = Py_BuildValue("(OKK)", list, (unsigned long long)next,
                                (unsigned long long)lost_total);
    Py_DECREF(list);
    return r;
}

static PyObject *Process_get_closed(PyObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(PROC(self) == NULL);
}

static PyObject *Process_get_is_current(PyObject *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(!((ProcessObject *)self)->owned);
}

/* ---- method tables ---- */

#define PA_WINDOWS_FUNCTIONS(X)                                                                  \
    X(VirtualAlloc, "VirtualAlloc($self, address, size, allocation_type, protect)\n--\n\n"       \
                    "Returns int.\n\nReserves and/or commits pages; returns the (rounded) base " \
                    "address.")                                                                  \
    X(VirtualFree, "VirtualFree($self, address, size, free_type)\n--\n\n"                        \
                   "Returns True.\n\nMEM_DECOMMIT pages or MEM_RELEASE a whole allocation "      \
                   "(size 0).")                                                                  \
    X(VirtualProtect, "VirtualProtect($self, address, size, new_protect)\n--\n\n"                \
                      "Returns old_protect.")                                                    \
    X(VirtualQuery, "VirtualQuery($self, address)\n--\n\n"                                       \
                    "Returns MEMORY_BASIC_INFORMATION.")                                         \
    X(GetSystemInfo, "GetSystemInfo($self)\n--\n\n"                                              \
                     "Returns SYSTEM_INFO.")                                                     \
    X(GetWriteWatch, "GetWriteWatch($self, flags, address, size, count=None)\n--\n\n"            \
                     "Returns (addresses, granularity).\n\nPages written since the last reset "  \
                     "in a MEM_WRITE_WATCH allocation.")                                         \
    X(ResetWriteWatch, "ResetWriteWatch($self, address, size)\n--\n\n"                           \
                       "Returns True.")                                                          \
    X(CreateFileMapping, "CreateFileMapping($self, file, protect, maximum_size, name=None)\n"    \
                         "--\n\nReturns Handle.\n\nfile: None for pagefile-backed memory, or "   \
                         "an open file / descriptor. protect: PAGE_* | SEC_*. An existing name " \
                         "returns a handle to that object and sets the last error to "           \
                         "ERROR_ALREADY_EXISTS.")                                                \
    X(OpenFileMapping, "OpenFileMapping($self, desired_access, name)\n--\n\n"                    \
                       "Returns Handle.")                                                        \
    X(MapViewOfFile, "MapViewOfFile($self, mapping, desired_access, offset, size)\n--\n\n"       \
                     "Returns int.")                                                             \
    X(MapViewOfFileEx, "MapViewOfFileEx($self, mapping, desired_access, offset, size, "          \
                       "base_address)\n--\n\n"                                                   \
                       "Returns int.")                                                           \
    X(UnmapViewOfFile, "UnmapViewOfFile($self, address)\n--\n\n"                                 \
                       "Returns True.")                                                          \
    X(FlushViewOfFile, "FlushViewOfFile($self, address, size)\n--\n\n"                           \
                       "Returns True: writes the view's dirty pages to the file and waits "      \
                       "(size 0: to the end of the view).")                                      \
    X(CloseHandle, "CloseHandle($self, handle)\n--\n\n"                                          \
                   "Returns True.")                                                              \
    X(HeapCreate, "HeapCreate($self, options, initial_size, maximum_size, *, debug=0, "          \
                  "lfh=True)\n--\n\n"                                                            \
                  "Returns Heap.\n\nmaximum_size 0: growable. debug: PA_HEAP_DEBUG_* "           \
                  "(tail/free checking, validate all, page heap). lfh=False keeps the "          \
                  "low-fragmentation front end off.")                                            \
    X(HeapDestroy, "HeapDestroy($self, heap)\n--\n\n"                                            \
                   "Returns True.")                                                              \
    X(HeapAlloc, "HeapAlloc($self, heap, flags, size)\n--\n\n"                                   \
                 "Returns int.")                                                                 \
    X(HeapReAlloc, "HeapReAlloc($self, heap, flags, address, size)\n--\n\n"                      \
                   "Returns int.")                                                               \
    X(HeapFree, "HeapFree($self, heap, flags, address)\n--\n\n"                                  \
                "Returns True.")                                                                 \
    X(HeapSize, "HeapSize($self, heap, flags, address)\n--\n\n"                                  \
                "Returns int: the exact size requested.")                                        \
    X(HeapValidate, "HeapValidate($self, heap, flags=0, address=None)\n--\n\n"                   \
                    "Returns bool.")                                                             \
    X(HeapWalk, "HeapWalk($self, heap)\n--\n\n"                                                  \
                "Returns iterator of PROCESS_HEAP_ENTRY.")                                       \
    X(HeapCompact, "HeapCompact($self, heap, flags)\n--\n\n"                                     \
                   "Returns int: the largest committed free block.")                             \
    X(HeapLock, "HeapLock($self, heap)\n--\n\n"                                                  \
                "Returns True.")                                                                 \
    X(HeapUnlock, "HeapUnlock($self, heap)\n--\n\n"                                              \
                  "Returns True.")                                                               \
    X(GetProcessHeap, "GetProcessHeap($self)\n--\n\n"                                            \
                      "Returns Heap.")                                                           \
    X(GetProcessHeaps, "GetProcessHeaps($self)\n--\n\n"                                          \
                       "Returns list of Heap (the process heap first).")                         \
    X(HeapSetInformation, "HeapSetInformation($self, heap, info_class, value=None)\n--\n\n"      \
                          "Returns True.\n\nHeapCompatibilityInformation with value 2 enables "  \
                          "the LFH; HeapEnableTerminationOnCorruption takes heap None.")         \
    X(HeapQueryInformation, "HeapQueryInformation($self, heap, info_class)\n--\n\n"              \
                            "Returns int.")                                                      \
    X(GetLastError, "GetLastError($self)\n--\n\n"                                                \
                    "Returns int: the calling thread's last Win32 error.")                       \
    X(SetLastError, "SetLastError($self, code)\n--\n\n"                                          \
                    "Sets the calling thread's last Win32 error.")                               \
    X(read, "read($self, address, size)\n--\n\n"                                                 \
            "Returns bytes.\n\nRaises AccessViolation or GuardPageViolation where a real read "  \
            "would fault; all or nothing.")                                                      \
    X(write, "write($self, address, data)\n--\n\n"                                               \
             "Writes a bytes-like object; raises AccessViolation or GuardPageViolation where a " \
             "real write would fault; all or nothing.")                                          \
    X(view, "view($self, address, size)\n--\n\n"                                                 \
            "Returns memoryview.\n\nA live view of the memory, read-only unless every page is "  \
            "writable. While it exists, freeing, decommitting or protecting its pages so that "  \
            "it would dangle raises BufferError.")                                               \
    PA_CRT_FUNCTIONS(X)

/* Layers 4 and 5 (crt.c, new.c). malloc and free are Process methods from PA_CRT_FAST_METHODS;
 * their module-level versions are crt.c's, which reach the current process without a call. */
#define PA_CRT_FAST_METHODS(X) X(malloc, PA_DOC_malloc) X(free, PA_DOC_free)
#define PA_CRT_FUNCTIONS(X)                                                                      \
    X(calloc, "calloc($self, count, size)\n--\n\n"                                               \
              "Returns int: zeroed; count * size overflowing is ENOMEM.")                        \
    X(realloc, "realloc($self, address, size)\n--\n\n"                                           \
               "Returns int or None.\n\nNone/0: malloc. size 0 frees the block and returns "     \
               "None. On failure the block is untouched.")                                       \
    X(_msize, "_msize($self, address)\n--\n\n"                                                   \
              "Returns int: the bytes requested (HeapSize's answer).")                           \
    X(_expand, "_expand($self, address, size)\n--\n\n"                                           \
               "Returns int: resizes in place, or raises.")                                      \
    X(_recalloc, "_recalloc($self, address, count, size)\n--\n\n"                                \
                 "Returns int or None: realloc, zeroing growth.")                                \
    X(_aligned_malloc, "_aligned_malloc($self, size, alignment)\n--\n\n"                         \
                       "Returns int (alignment a power of two).")                                \
    X(_aligned_offset_malloc, "_aligned_offset_malloc($self, size, alignment, offset)\n--\n\n"   \
                              "Returns int: address + offset is aligned.")                       \
    X(_aligned_realloc, "_aligned_realloc($self, address, size, alignment)\n--\n\n"              \
                        "Returns int or None (size 0 frees).")                                   \
    X(_aligned_free, "_aligned_free($self, address)\n--\n\n"                                     \
                     "Frees an _aligned_* block.")                                               \
    X(_aligned_msize, "_aligned_msize($self, address, alignment, offset)\n--\n\n"                \
                      "Returns int.")                                                            \
    X(_set_new_mode, "_set_new_mode($self, mode)\n--\n\n"                                        \
                     "Returns old mode. 1: malloc calls the new handler.")                       \
    X(_query_new_mode, "_query_new_mode($self)\n--\n\n"                                          \
                       "Returns int.")                                                           \
    X(set_new_handler, "set_new_handler($self, handler)\n--\n\n"                                 \
                       "Returns previous handler or None.\n\nhandler(size) is called when "      \
                       "operator new (or malloc, in new mode 1) fails: truthy retries, falsy "   \
                       "or raising gives up (BadAlloc / CrtMemoryError, with the handler's "     \
                       "exception as __cause__). None removes it. One per process.")             \
    X(_get_heap_handle, "_get_heap_handle($self)\n--\n\n"                                        \
                        "Returns Heap: the CRT's heap, the process heap.")                       \
    X(_CrtSetDbgFlag, "_CrtSetDbgFlag($self, flags)\n--\n\n"                                     \
                      "Returns old flags (_CRTDBG_REPORT_FLAG only asks; 0 in a release CRT).")  \
    X(_CrtCheckMemory, "_CrtCheckMemory($self)\n--\n\n"                                          \
                       "Returns bool: checks every debug block's no-man's land and delay-freed " \
                       "fill, then the heap; problems are CrtReport warnings.")                  \
    X(_CrtDumpMemoryLeaks, "_CrtDumpMemoryLeaks($self)\n--\n\n"                                  \
                           "Returns list of CrtBlock.\n\nThe live normal and client blocks, "    \
                           "newest first (empty: no leaks), also printed to sys.stderr as MSVC " \
                           "prints them.")                                                       \
    X(_CrtSetBreakAlloc, "_CrtSetBreakAlloc($self, request, callback=None)\n--\n\n"              \
                         "Returns previous request (-1: none)\n\nWhen allocation number "        \
                         "request is made, callback(request, address) is called as the "         \
                         "allocating call returns (if it raises, the call raises that, the "     \
                         "block staying allocated); without a callback it makes a CrtReport "    \
                         "warning.")                                                             \
    X(_CrtIsValidHeapPointer, "_CrtIsValidHeapPointer($self, address)\n--\n\n"                   \
                              "Returns bool.")                                                   \
    X(_CrtReportBlockType, "_CrtReportBlockType($self, address)\n--\n\n"                         \
                           "Returns block type, or -1.")                                         \
    X(operator_new, "operator_new($self, size, align=0, *, array=False, nothrow=False)\n--\n\n"  \
                    "Returns int.\n\nvcruntime's operator new (new[] with array, the "           \
                    "align_val_t overload with align): malloc, then the new handler, then "      \
                    "BadAlloc. nothrow: None instead of raising.")                               \
    X(operator_delete, "operator_delete($self, address, align=0, *, array=False)\n--\n\n"        \
                       "vcruntime's operator delete (delete[] with array, the align_val_t "      \
                       "overload with align): frees a block of operator_new. None/0 does "       \
                       "nothing.")                                                               \
    X(new, "new($self, ctype, /, *args, **kwargs)\n--\n\n"                                       \
           "Returns ctype instance in memory from operator new.\n\nRuns ctype's __init__ with "  \
           "the arguments. BadAlloc on failure.")                                                \
    X(delete, "delete($self, obj)\n--\n\n"                                                       \
              "Runs obj.__pyalloc_destroy__() if the type has it, then operator delete, once "   \
              "no ctypes object over the memory is left (at once after `delete(obj); del "       \
              "obj`). Only for what new() returned; twice raises.")                              \
    X(new_array, "new_array($self, ctype, count)\n--\n\n"                                        \
                 "Returns (ctype * count) instance, after MSVC's array cookie when ctype "       \
                 "defines __pyalloc_destroy__; constructors run in order.")                      \
    X(delete_array, "delete_array($self, obj)\n--\n\n"                                           \
                    "Destructors in reverse order (count from the cookie), then operator "       \
                    "delete[].")                                                                 \

/* Module-level versions: the same implementation on the current process. */
#define X(name, doc)                                                                             \
    static PyObject *mod_##name(PyObject *module, PyObject *const *args, Py_ssize_t nargs,       \
                                PyObject *kwnames)                                               \
    {                                                                                            \
        PyObject *self = pa_current_process(module);                                             \
        return self ? name##_impl(self, args, nargs, kwnames) : NULL;                            \
    }
PA_WINDOWS_FUNCTIONS(X)
#undef X

#define X(name, doc) {#name, (PyCFunction)(void (*)(void))mod_##name, METH_FASTCALL | METH_KEYWORDS, doc},
PyMethodDef pa_process_functions[] = {PA_WINDOWS_FUNCTIONS(X){NULL, NULL, 0, NULL}};
#undef X

#define X(name, doc) {#name, (PyCFunction)(void (*)(void))name##_impl, METH_FASTCALL | METH_KEYWORDS, doc},
static PyMethodDef Process_methods[] = {
    PA_WINDOWS_FUNCTIONS(X)
    PA_CRT_FAST_METHODS(X)
    {"close", Process_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Destroys the simulated process and all its memory (BufferError while views exist)."},
    {"__enter__", Process_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))Process_exit, METH_FASTCALL, NULL},
    {"stats", Process_stats, METH_NOARGS,
     "stats($self, /)\n--\n\n"
     "Returns dict: reserved, committed, peak_committed, commit_limit, allocations, pins, "
     "guard_hits, watch_faults."},
    {"_trace_start", (PyCFunction)(void (*)(void))Process_trace_start, METH_FASTCALL,
     "_trace_start($self, capacity=0, /)\n--\n\n"
     "Returns the next seq: starts (or nests) event recording."},
    {"_trace_stop", Process_trace_stop, METH_NOARGS,
     "_trace_stop($self, /)\n--\n\nEnds one _trace_start."},
    {"_trace_read", Process_trace_read, METH_O,
     "_trace_read($self, since, /)\n--\n\nReturns (events as tuples, next_since, lost)."},
    {"_walk", Process_walk, METH_NOARGS,
     "_walk($self, /)\n--\n\nReturns a list of (base, size, state, protect, type, allocation_base, "
     "allocation_protect, owner, unusable, mapped_file) covering the whole usable address space."},
    {NULL, NULL, 0, NULL},
};
#undef X

static PyGetSetDef Process_getset[] = {
    {"closed", Process_get_closed, NULL, "True once close() has run.", NULL},
    {"is_current", Process_get_is_current, NULL,
     "True for the process the module-level functions act on.", NULL},
    {"crt_debug", pa_crt_get_debug, NULL,
     "True if the process runs the debug CRT (Process(crt_debug=True), or PYALLOC_CRT_DEBUG=1 "
     "for the current process).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Process_slots[] = {
    {Py_tp_doc, "Process(*, address_space=None, commit_limit=None, heap_guard=True, "
                "crt_debug=None)\n--\n\n"
                "An isolated simulated Windows process: its own address space (64 GiB by "
                "default; address_space=2**31 gives a 32-bit-sized one) reserved from the host "
                "at creation, and an optional commit limit in bytes. With heap_guard (the "
                "default) write() and view() reach only the bytes of busy heap blocks in heap "
                "memory; heap_guard=False lets them corrupt blocks and block headers, for "
                "demonstrations (the heap's own control data stays off limits). "
                "crt_debug=True gives the process the debug CRT (_malloc_dbg blocks, reports, "
                "leak dumps), False the release one; None follows PYALLOC_CRT_DEBUG."},
    {Py_tp_new, Process_new},
    {Py_tp_dealloc, Process_dealloc},
    {Py_tp_traverse, Process_traverse},
    {Py_tp_clear, Process_clear},
    {Py_tp_repr, Process_repr},
    {Py_tp_methods, Process_methods},
    {Py_tp_getset, Process_getset},
    {0, NULL},
};

static PyType_Spec Process_spec = {
    "pyalloc._core.Process", sizeof(ProcessObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, Process_slots,
};

int pa_process_type_init(PyObject *module, pa_state *st)
{
    st->Process = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Process_spec, NULL);
    if (!st->Process) return -1;
    return PyModule_AddType(module, st->Process);
}

PyObject *pa_current_process(PyObject *module)
{
    pa_state *st = pa_get_state(module);
    if (!st->current) {
        PyTypeObject *cls = st->current_class ? (PyTypeObject *)st->current_class : st->Process;
        st->current = wrap_process(cls, module, pa_process_current(), 0);
    }
    return st->current;
}
