/* _bare_capi.c: the baseline of bench_crt_python.py, the least a C extension can do for a
 * malloc+free pair from Python: METH_O functions calling glibc, with the pointer as an int.
 * Built by the benchmark into a temporary directory; never part of pyalloc (free() of a
 * made-up int would crash the interpreter). nop() is the call alone, for the floor.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>

static PyObject *bare_malloc(PyObject *module, PyObject *arg)
{
    (void)module;
    size_t n = PyLong_AsSize_t(arg);
    if (n == (size_t)-1 && PyErr_Occurred()) return NULL;
    void *p = malloc(n);
    if (!p) return PyErr_NoMemory();
    return PyLong_FromVoidPtr(p);
}

static PyObject *bare_free(PyObject *module, PyObject *arg)
{
    (void)module;
    void *p = PyLong_AsVoidPtr(arg);
    if (!p && PyErr_Occurred()) return NULL;
    free(p);
    Py_RETURN_NONE;
}

static PyObject *bare_nop(PyObject *module, PyObject *arg)
{
    (void)module;
    return Py_NewRef(arg);
}

static PyMethodDef methods[] = {
    {"malloc", bare_malloc, METH_O, "malloc(size) -> int"},
    {"free", bare_free, METH_O, "free(address)"},
    {"nop", bare_nop, METH_O, "nop(x) -> x"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_bare_capi", "bench_crt_python.py's baseline.", 0, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bare_capi(void)
{
    return PyModuleDef_Init(&module_def);
}
