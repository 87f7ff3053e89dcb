/* binding.h: what the files of the extension module (pyalloc._core) share.
 *
 * The binding sits above the whole C stack and talks to it only through pyalloc.h. It follows
 * CPython's Modules/xxlimited.c: multi-phase init, module state, heap types, hand-written
 * METH_FASTCALL argument parsing. One file per Python type, one for errors.
 */
#ifndef PA_BINDING_H
#define PA_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pyalloc.h"

typedef struct {
    PyTypeObject *Process;       /* pyalloc._core.Process */
    PyTypeObject *Export;        /* exporter behind Process.view() memoryviews */
    PyTypeObject *MemoryBasicInformation;
    PyTypeObject *SystemInfo;
    PyTypeObject *Handle;        /* pyalloc.Handle (handle.c) */
    PyTypeObject *HeapEntry;     /* PROCESS_HEAP_ENTRY */
    PyTypeObject *Heap;          /* pyalloc.Heap (heap.c) */
    PyObject *WinMemoryError;    /* WinError that is also a MemoryError */
    PyObject *HeapException;     /* a heap's structured exception (HEAP_GENERATE_EXCEPTIONS) */
    PyObject *WinError;          /* classes from pyalloc.errors */
    PyObject *AccessViolation;
    PyObject *GuardPageViolation;
    PyObject *current;           /* the Process object for pa_process_current(), lazily */
    PyObject *current_class;     /* the class to make it from (pyalloc.Process) */
} pa_state;

typedef struct {
    PyObject_HEAD
    pa_process_t *p;      /* NULL once closed */
    PyObject *module;     /* strong reference: keeps the state alive */
    int owned;            /* 0 for the current process, which is never destroyed */
    Py_ssize_t exports;   /* live view() exporters */
    struct pa_export_s *export_list; /* the live exporters (export.c) */
    int heap_guard;       /* read/write/view reach only busy heap blocks in heap memory */
} ProcessObject;

extern PyModuleDef pa_module_def;

static inline pa_state *pa_get_state(PyObject *module)
{
    return (pa_state *)PyModule_GetState(module);
}

/* ---- argument parsing (module.c) ----
 * Parses positional-or-keyword arguments of a METH_FASTCALL|METH_KEYWORDS call into out[],
 * by names[] (NULL-terminated); the first nrequired are required, others stay as given in out
 * (the caller presets defaults, usually NULL). Returns 0, or -1 with TypeError set. */
int pa_parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *const *names, int nrequired, PyObject **out);
/* Converters: 0 on success, -1 with an exception set. None means 0 for pointers. */
int pa_arg_ptr(PyObject *o, uintptr_t *out);
int pa_arg_size(PyObject *o, size_t *out);
int pa_arg_dword(PyObject *o, DWORD *out);

/* ---- errors (errors.c) ---- */
int pa_errors_init(PyObject *module, pa_state *st);
/* Raises for the calling thread's last error: BufferError for PA_ERROR_BUFFER_EXPORTED,
 * WinError otherwise. Returns NULL. */
PyObject *pa_raise_last_error(pa_state *st);
/* Sets the last error to code and raises it. */
PyObject *pa_raise_win_error(pa_state *st, DWORD code);
/* Raises AccessViolation or GuardPageViolation for a pa_mm_* status; MemoryError else. */
PyObject *pa_raise_access(pa_state *st, NTSTATUS status, uintptr_t address, const char *op);

/* ---- structures (structs.c) ---- */
int pa_structs_init(PyObject *module, pa_state *st);
PyObject *pa_mbi_new(pa_state *st, const MEMORY_BASIC_INFORMATION *mbi);
PyObject *pa_system_info_new(pa_state *st, const SYSTEM_INFO *si);
PyObject *pa_heap_entry_new(pa_state *st, const PROCESS_HEAP_ENTRY *e);
/* "PAGE_READWRITE|PAGE_GUARD", "MEM_COMMIT", ... (a new str), used by reprs. */
PyObject *pa_protect_name(DWORD protect);

/* ---- Process (process.c) ---- */
int pa_process_type_init(PyObject *module, pa_state *st);
/* The Process object the module-level functions act on (borrowed). */
PyObject *pa_current_process(PyObject *module);
extern PyMethodDef pa_process_functions[]; /* Windows-named methods, also module functions */

/* ---- handles and sections (handle.c) ---- */
int pa_handle_type_init(PyObject *module, pa_state *st);
#define PA_DECLARE_IMPL(name)                                                                    \
    PyObject *name##_impl(PyObject *self, PyObject *const *args, Py_ssize_t nargs,             \
                          PyObject *kwnames);
PA_DECLARE_IMPL(CreateFileMapping)
PA_DECLARE_IMPL(OpenFileMapping)
PA_DECLARE_IMPL(MapViewOfFile)
PA_DECLARE_IMPL(MapViewOfFileEx)
PA_DECLARE_IMPL(UnmapViewOfFile)
PA_DECLARE_IMPL(FlushViewOfFile)
PA_DECLARE_IMPL(CloseHandle)

/* ---- heaps (heap.c) ---- */
int pa_heap_type_init(PyObject *module, pa_state *st);
/* Checks a direct access from Python to heap memory: with heap_guard on, it must lie inside
 * one busy block. 0, or -1 with AccessViolation raised. */
int pa_heap_check_access(ProcessObject *self, uintptr_t address, size_t size, const char *op);
PA_DECLARE_IMPL(HeapCreate)
PA_DECLARE_IMPL(HeapDestroy)
PA_DECLARE_IMPL(HeapAlloc)
PA_DECLARE_IMPL(HeapReAlloc)
PA_DECLARE_IMPL(HeapFree)
PA_DECLARE_IMPL(HeapSize)
PA_DECLARE_IMPL(HeapValidate)
PA_DECLARE_IMPL(HeapWalk)
PA_DECLARE_IMPL(HeapCompact)
PA_DECLARE_IMPL(HeapLock)
PA_DECLARE_IMPL(HeapUnlock)
PA_DECLARE_IMPL(GetProcessHeap)
PA_DECLARE_IMPL(GetProcessHeaps)
PA_DECLARE_IMPL(HeapSetInformation)
PA_DECLARE_IMPL(HeapQueryInformation)

/* ---- view() exporter (export.c) ---- */
int pa_export_type_init(PyObject *module, pa_state *st);
PyObject *pa_export_view(ProcessObject *self, uintptr_t address, size_t size);
/* 1 if a live view's bytes overlap [address, address + size): exact, where pins are pages. */
int pa_export_overlaps(ProcessObject *self, uintptr_t address, size_t size);

#endif /* PA_BINDING_H */
