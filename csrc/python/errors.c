/* errors.c: how the binding raises. Win32 failures raise pyalloc.WinError (an OSError whose
 * .winerror is the code); faults raise pyalloc.AccessViolation / GuardPageViolation; a change
 * that would invalidate a live memoryview raises BufferError. The classes live in
 * pyalloc/errors.py so that they are ordinary, picklable Python classes.
 */
#include "binding.h"

int pa_errors_init(PyObject *module, pa_state *st)
{
    (void)module;
    PyObject *errors = PyImport_ImportModule("pyalloc.errors");
    if (!errors) return -1;
    st->WinError = PyObject_GetAttrString(errors, "WinError");
    st->AccessViolation = PyObject_GetAttrString(errors, "AccessViolation");
    st->GuardPageViolation = PyObject_GetAttrString(errors, "GuardPageViolation");
    st->WinMemoryError = PyObject_GetAttrString(errors, "WinMemoryError");
    st->HeapException = PyObject_GetAttrString(errors, "HeapException");
    Py_DECREF(errors);
    return st->WinError && st->AccessViolation && st->GuardPageViolation && st->WinMemoryError &&
                   st->HeapException
               ? 0
               : -1;
}

PyObject *pa_raise_win_error(pa_state *st, DWORD code)
{
    pa_set_last_error(code);
    if (code == PA_ERROR_BUFFER_EXPORTED) {
        PyErr_SetString(PyExc_BufferError,
                        "the memory is exported to a live memoryview; release it first");
        return NULL;
    }
    /* Out-of-memory codes raise a WinError that is also a MemoryError. */
    PyObject *cls = code == ERROR_NOT_ENOUGH_MEMORY || code == ERROR_OUTOFMEMORY ||
                            code == ERROR_COMMITMENT_LIMIT
                        ? st->WinMemoryError
                        : st->WinError;
    PyObject *exc = PyObject_CallFunction(cls, "k", (unsigned long)code);
    if (exc) {
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

PyObject *pa_raise_last_error(pa_state *st)
{
    return pa_raise_win_error(st, pa_get_last_error());
}

PyObject *pa_raise_access(pa_state *st, NTSTATUS status, uintptr_t address, const char *op)
{
    PyObject *cls = status == STATUS_GUARD_PAGE_VIOLATION ? st->GuardPageViolation
                    : status == STATUS_ACCESS_VIOLATION   ? st->AccessViolation
                                                          : NULL;
    if (!cls) return pa_raise_win_error(st, pa_nt_status_to_dos_error(status));
    PyObject *exc = PyObject_CallFunction(cls, "Ks", (unsigned long long)address, op);
    if (exc) {
        PyErr_SetObject(cls, exc);
        Py_DECREF(exc);
    }
    return NULL;
}
