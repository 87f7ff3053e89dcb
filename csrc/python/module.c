/* module.c: the extension module pyalloc._core: multi-phase init, module state, constants,
 * argument parsing shared by every function, and the module-level functions.
 */
#include "binding.h"

/* ---- argument parsing ---- */

int pa_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, int nrequired, PyObject **out)
{
    int n = 0;
    while (names[n]) n++;
    if (nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname, n,
                     nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int i = 0;
        while (i < n && PyUnicode_CompareWithASCIIString(key, names[i]) != 0) i++;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                         key);
            return -1;
        }
        if (i < nargs || out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + k];
    }
    for (int i = 0; i < nrequired; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)", fname,
                         names[i], i + 1);
            return -1;
        }
    }
    return 0;
}

/* PyErr_Format has no %llx: the bound is formatted here. */
static int arg_range_error(const char *what, unsigned long long max)
{
    char bound[24];
    snprintf(bound, sizeof bound, "0x%llx", max);
    PyErr_Format(PyExc_OverflowError, "%s must be in [0, %s]", what, bound);
    return -1;
}

static int arg_unsigned(PyObject *o, unsigned long long max, const char *what,
                        unsigned long long *out)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be an int, not %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return arg_range_error(what, max);
    }
    if (v > max) return arg_range_error(what, max);
    *out = v;
    return 0;
}

int pa_arg_ptr(PyObject *o, uintptr_t *out)
{
    unsigned long long v = 0;
    if (o != Py_None && arg_unsigned(o, UINTPTR_MAX, "an address", &v)) return -1;
    *out = (uintptr_t)v;
    return 0;
}

int pa_arg_size(PyObject *o, size_t *out)
{
    unsigned long long v;
    if (arg_unsigned(o, SIZE_MAX, "a size", &v)) return -1;
    *out = (size_t)v;
    return 0;
}

int pa_arg_dword(PyObject *o, DWORD *out)
{
    unsigned long long v;
    if (arg_unsigned(o, 0xFFFFFFFFull, "a DWORD", &v)) return -1;
    *out = (DWORD)v;
    return 0;
}

/* ---- constants (values from pyalloc/wintypes.h; names listed once here) ---- */

#define PA_CONSTANTS(C)                                                                          \
    C(MEM_COMMIT) C(MEM_RESERVE) C(MEM_DECOMMIT) C(MEM_RELEASE) C(MEM_FREE) C(MEM_PRIVATE)      \
    C(MEM_MAPPED) C(MEM_RESET) C(MEM_TOP_DOWN) C(MEM_WRITE_WATCH) C(MEM_PHYSICAL) C(MEM_IMAGE)  \
    C(MEM_RESET_UNDO) C(MEM_LARGE_PAGES) C(MEM_4MB_PAGES) C(AT_ROUND_TO_PAGE)                   \
    C(WRITE_WATCH_FLAG_RESET)                                                                   \
    C(PAGE_NOACCESS) C(PAGE_READONLY) C(PAGE_READWRITE) C(PAGE_WRITECOPY) C(PAGE_EXECUTE)       \
    C(PAGE_EXECUTE_READ) C(PAGE_EXECUTE_READWRITE) C(PAGE_EXECUTE_WRITECOPY) C(PAGE_GUARD)      \
    C(PAGE_NOCACHE) C(PAGE_WRITECOMBINE)                                                        \
    C(SEC_FILE) C(SEC_IMAGE) C(SEC_RESERVE) C(SEC_COMMIT) C(SEC_NOCACHE) C(SEC_WRITECOMBINE)    \
    C(SEC_LARGE_PAGES) C(FILE_MAP_COPY) C(FILE_MAP_WRITE) C(FILE_MAP_READ) C(FILE_MAP_EXECUTE)  \
    C(FILE_MAP_ALL_ACCESS) C(SECTION_QUERY) C(SECTION_MAP_WRITE) C(SECTION_MAP_READ)          \
    C(SECTION_MAP_EXECUTE) C(SECTION_EXTEND_SIZE) C(SECTION_MAP_EXECUTE_EXPLICIT)               \
    C(ERROR_SUCCESS) C(ERROR_FILE_NOT_FOUND) C(ERROR_ACCESS_DENIED) C(ERROR_INVALID_HANDLE)     \
    C(ERROR_NOT_ENOUGH_MEMORY) C(ERROR_OUTOFMEMORY) C(ERROR_BAD_LENGTH) C(ERROR_GEN_FAILURE)    \
    C(ERROR_NOT_SUPPORTED) C(ERROR_INVALID_PARAMETER) C(ERROR_INSUFFICIENT_BUFFER)              \
    C(ERROR_ALREADY_EXISTS) C(ERROR_BAD_EXE_FORMAT) C(ERROR_NO_MORE_ITEMS)                      \
    C(ERROR_INVALID_ADDRESS) C(ERROR_NOACCESS) C(ERROR_FILE_INVALID) C(ERROR_MAPPED_ALIGNMENT)  \
    C(ERROR_PRIVILEGE_NOT_HELD) C(ERROR_COMMITMENT_LIMIT) C(ERROR_SWAPERROR)                    \
    C(HEAP_NO_SERIALIZE) C(HEAP_GROWABLE) C(HEAP_GENERATE_EXCEPTIONS) C(HEAP_ZERO_MEMORY)      \
    C(HEAP_REALLOC_IN_PLACE_ONLY) C(HEAP_TAIL_CHECKING_ENABLED) C(HEAP_FREE_CHECKING_ENABLED)   \
    C(HEAP_DISABLE_COALESCE_ON_FREE) C(HEAP_CREATE_ENABLE_EXECUTE) C(HEAP_CREATE_ALIGN_16)      \
    C(HEAP_CREATE_ENABLE_TRACING) C(PROCESS_HEAP_REGION) C(PROCESS_HEAP_UNCOMMITTED_RANGE)      \
    C(PROCESS_HEAP_ENTRY_BUSY) C(PROCESS_HEAP_SEG_ALLOC) C(PROCESS_HEAP_ENTRY_MOVEABLE)         \
    C(PROCESS_HEAP_ENTRY_DDESHARE) C(HeapCompatibilityInformation)                               \
    C(HeapEnableTerminationOnCorruption) C(HeapOptimizeResources) C(ERROR_NOT_OWNER)             \
    C(PA_HEAP_DEBUG_TAIL_CHECK) C(PA_HEAP_DEBUG_FREE_CHECK) C(PA_HEAP_DEBUG_VALIDATE_ALL)       \
    C(PA_HEAP_DEBUG_PAGE_HEAP)                                                                  \
    C(PROCESSOR_ARCHITECTURE_AMD64) C(PROCESSOR_ARCHITECTURE_ARM64) C(PROCESSOR_AMD_X8664)      \
    C(_CRTDBG_ALLOC_MEM_DF) C(_CRTDBG_DELAY_FREE_MEM_DF) C(_CRTDBG_CHECK_ALWAYS_DF)             \
    C(_CRTDBG_RESERVED_DF) C(_CRTDBG_CHECK_CRT_DF) C(_CRTDBG_LEAK_CHECK_DF)                     \
    C(_CRTDBG_CHECK_EVERY_16_DF) C(_CRTDBG_CHECK_EVERY_128_DF) C(_CRTDBG_CHECK_EVERY_1024_DF)   \
    C(_CRTDBG_CHECK_DEFAULT_DF) C(_CRTDBG_REPORT_FLAG)                                          \
    C(_FREE_BLOCK) C(_NORMAL_BLOCK) C(_CRT_BLOCK) C(_IGNORE_BLOCK) C(_CLIENT_BLOCK)             \
    C(_MAX_BLOCKS) C(_UNKNOWN_BLOCK) C(_CRT_WARN) C(_CRT_ERROR) C(_CRT_ASSERT)                  \
    C(PA_CRT_CLEAN_FILL) C(PA_CRT_DEAD_FILL) C(PA_CRT_NO_MANS_LAND_FILL) C(PA_CRT_ALIGN_FILL)   \
    C(PA_CRT_NO_MANS_LAND_SIZE) C(PA_CRT_REPORT_OTHER) C(PA_CRT_REPORT_CORRUPTION)              \
    C(PA_CRT_REPORT_BAD_POINTER) C(PA_CRT_REPORT_ALIGNED) C(PA_CRT_REPORT_MISMATCH)             \
    C(PA_CRT_REPORT_LEAK) C(PA_CRT_REPORT_BREAK) C(PA_DEFAULT_NEW_ALIGNMENT)

static int add_constants(PyObject *module)
{
#define C(name) if (PyModule_AddIntConstant(module, #name, (long)(name))) return -1;
    PA_CONSTANTS(C)
#undef C
    /* Unsigned NTSTATUS values, as Windows headers print them. */
    if (PyModule_AddIntConstant(module, "STATUS_ACCESS_VIOLATION", 0xC0000005l) ||
        PyModule_AddIntConstant(module, "STATUS_GUARD_PAGE_VIOLATION", 0x80000001l) ||
        PyModule_AddIntConstant(module, "PAGE_SIZE", (long)PA_PAGE_SIZE) ||
        PyModule_AddIntConstant(module, "ALLOCATION_GRANULARITY", (long)PA_GRANULARITY) ||
        PyModule_AddIntConstant(module, "DEFAULT_ADDRESS_SPACE", (long)PA_DEFAULT_ADDRESS_SPACE) ||
        PyModule_AddIntConstant(module, "OWNER_APP", (long)PA_OWNER_APP) ||
        PyModule_AddIntConstant(module, "OWNER_HEAP", (long)PA_OWNER_HEAP))
        return -1;
    return 0;
}

/* ---- module-level functions that are not Windows-named ---- */

static PyObject *mod_current_process(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return Py_XNewRef(pa_current_process(module));
}

static PyObject *mod_set_process_class(PyObject *module, PyObject *cls)
{
    pa_state *st = pa_get_state(module);
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, st->Process))
        return PyErr_Format(PyExc_TypeError, "expected a subclass of Process");
    if (st->current)
        return PyErr_Format(PyExc_RuntimeError, "the current process object already exists");
    Py_XSETREF(st->current_class, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyObject *mod_FormatMessage(PyObject *module, PyObject *arg)
{
    DWORD code;
    (void)module;
    if (pa_arg_dword(arg, &code)) return NULL;
    const char *name = pa_error_name(code), *msg = pa_error_message(code);
    if (!name) return PyUnicode_FromFormat("Win32 error %lu", (unsigned long)code);
    return PyUnicode_FromFormat("%s (%lu): %s", name, (unsigned long)code, msg);
}

static PyObject *mod_error_name(PyObject *module, PyObject *arg)
{
    DWORD code;
    (void)module;
    if (pa_arg_dword(arg, &code)) return NULL;
    const char *name = pa_error_name(code);
    if (!name) Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyObject *mod_protect_name(PyObject *module, PyObject *arg)
{
    DWORD v;
    (void)module;
    if (pa_arg_dword(arg, &v)) return NULL;
    return pa_protect_name(v);
}

static PyObject *mod_trace_op_name(PyObject *module, PyObject *arg)
{
    DWORD op;
    (void)module;
    if (pa_arg_dword(arg, &op)) return NULL;
    const char *name = pa_trace_op_name(op);
    if (!name) Py_RETURN_NONE;
    return PyUnicode_FromString(name);
}

static PyMethodDef extra_functions[] = {
    {"trace_op_name", mod_trace_op_name, METH_O,
     "trace_op_name($module, op, /)\n--\n\nReturns the name of a trace event kind (str), or None."},
    {"current_process", mod_current_process, METH_NOARGS,
     "current_process($module, /)\n--\n\nReturns the Process the module-level functions act on."},
    {"_set_process_class", mod_set_process_class, METH_O,
     "_set_process_class($module, cls, /)\n--\n\nSets the class of the current-process object "
     "(before its first use)."},
    {"FormatMessage", mod_FormatMessage, METH_O,
     "FormatMessage($module, code, /)\n--\n\nReturns 'ERROR_NAME (code): message'."},
    {"error_name", mod_error_name, METH_O,
     "error_name($module, code, /)\n--\n\nReturns 'ERROR_...' or None."},
    {"protect_name", mod_protect_name, METH_O,
     "protect_name($module, protect, /)\n--\n\n"
     "Returns a name such as 'PAGE_READWRITE|PAGE_GUARD'."},
    {NULL, NULL, 0, NULL},
};

/* ---- module lifecycle ---- */

static int module_exec(PyObject *module)
{
    pa_state *st = pa_get_state(module);
    if (pa_errors_init(module, st) || pa_structs_init(module, st) ||
        pa_export_type_init(module, st) || pa_process_type_init(module, st) ||
        pa_handle_type_init(module, st) || pa_heap_type_init(module, st) ||
        pa_crt_type_init(module, st) || pa_new_type_init(module, st) ||
        add_constants(module) || PyModule_AddFunctions(module, pa_process_functions) ||
        PyModule_AddFunctions(module, pa_crt_module_functions) ||
        PyModule_AddFunctions(module, extra_functions) ||
        PyModule_AddFunctions(module, pa_host_functions))
        return -1;
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    pa_state *st = pa_get_state(module);
    Py_VISIT(st->Process);
    Py_VISIT(st->Export);
    Py_VISIT(st->MemoryBasicInformation);
    Py_VISIT(st->SystemInfo);
    Py_VISIT(st->Handle);
    Py_VISIT(st->WinError);
    Py_VISIT(st->AccessViolation);
    Py_VISIT(st->GuardPageViolation);
    Py_VISIT(st->current);
    Py_VISIT(st->current_class);
    Py_VISIT(st->Heap);
    Py_VISIT(st->HeapEntry);
    Py_VISIT(st->HeapException);
    Py_VISIT(st->WinMemoryError);
    Py_VISIT(st->CrtError);
    Py_VISIT(st->CrtMemoryError);
    Py_VISIT(st->CrtInvalidParameter);
    Py_VISIT(st->BadAlloc);
    Py_VISIT(st->BadArrayNewLength);
    Py_VISIT(st->CrtReport);
    Py_VISIT(st->CrtBlock);
    Py_VISIT(st->NewBlock);
    return 0;
}

static int module_clear(PyObject *module)
{
    pa_state *st = pa_get_state(module);
    pa_crt_module_clear(module);
    Py_CLEAR(st->Process);
    Py_CLEAR(st->Export);
    Py_CLEAR(st->MemoryBasicInformation);
    Py_CLEAR(st->SystemInfo);
    Py_CLEAR(st->Handle);
    Py_CLEAR(st->WinError);
    Py_CLEAR(st->AccessViolation);
    Py_CLEAR(st->GuardPageViolation);
    Py_CLEAR(st->current);
    Py_CLEAR(st->current_class);
    Py_CLEAR(st->Heap);
    Py_CLEAR(st->HeapEntry);
    Py_CLEAR(st->HeapException);
    Py_CLEAR(st->WinMemoryError);
    Py_CLEAR(st->CrtError);
    Py_CLEAR(st->CrtMemoryError);
    Py_CLEAR(st->CrtInvalidParameter);
    Py_CLEAR(st->BadAlloc);
    Py_CLEAR(st->BadArrayNewLength);
    Py_CLEAR(st->CrtReport);
    Py_CLEAR(st->CrtBlock);
    Py_CLEAR(st->NewBlock);
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

PyModuleDef pa_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyalloc._core",
    .m_doc = "The C core of pyalloc: the Windows memory-allocation stack on Linux.",
    .m_size = sizeof(pa_state),
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&pa_module_def);
}
