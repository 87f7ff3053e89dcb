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
    /* layers 4 and 5 (crt.c, new.c) */
    PyObject *CrtError;          /* classes from pyalloc.errors: errno failures of the CRT */
    PyObject *CrtMemoryError;
    PyObject *CrtInvalidParameter;
    PyObject *BadAlloc;          /* std::bad_alloc, std::bad_array_new_length */
    PyObject *BadArrayNewLength;
    PyObject *CrtReport;         /* the warning category of debug CRT reports */
    PyTypeObject *CrtBlock;      /* a block of _CrtDumpMemoryLeaks() (struct sequence) */
    PyTypeObject *NewBlock;      /* the exporter behind new() and new_array() objects */
} pa_state;

typedef struct {
    PyObject_HEAD
    pa_process_t *p;      /* NULL once closed */
    PyObject *module;     /* strong reference: keeps the state alive */
    int owned;            /* 0 for the current process, which is never destroyed */
    Py_ssize_t exports;   /* live view() exporters */
    struct pa_export_s *export_list; /* the live exporters (export.c) */
    int heap_guard;       /* read/write/view reach only busy heap blocks in heap memory */
    int crt_mode;         /* PA_CRT_MODE_*: which CRT the process runs, once a call asked */
    struct pa_crt_binding_s *crt; /* the Python side of its CRT (crt.c), NULL until needed */
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

/* The common cases inline, for the calls whose cost is measured (malloc, free, HeapAlloc,
 * HeapFree): exactly the required arguments, positionally, parsed by taking them as given;
 * exact ints converted without PyLong_AsUnsignedLongLong, which goes through
 * _PyLong_AsByteArray for anything above 2**30, as an address always is. Anything else goes
 * to the functions above. */
static inline int pa_parse_fast(const char *fname, PyObject *const *args, Py_ssize_t nargs,
                                PyObject *kwnames, const char *const *names, int nreq,
                                PyObject **out)
{
    if (__builtin_expect(!kwnames && nargs == nreq, 1)) {
        for (Py_ssize_t i = 0; i < nargs; i++) out[i] = args[i];
        return 0;
    }
    return pa_parse_args(fname, args, nargs, kwnames, names, nreq, out);
}

static inline int pa_arg_size_fast(PyObject *o, size_t *out)
{
    if (__builtin_expect(PyLong_CheckExact(o), 1)) {
        size_t v = PyLong_AsSize_t(o);
        if (__builtin_expect(v != (size_t)-1 || !PyErr_Occurred(), 1)) {
            *out = v;
            return 0;
        }
        PyErr_Clear(); /* pa_arg_size raises its own OverflowError */
    }
    return pa_arg_size(o, out);
}

_Static_assert(sizeof(unsigned long) == sizeof(uintptr_t), "LP64: an address is an unsigned long");

static inline int pa_arg_ptr_fast(PyObject *o, uintptr_t *out)
{
    if (__builtin_expect(PyLong_CheckExact(o), 1)) {
        unsigned long v = PyLong_AsUnsignedLong(o); /* 64 bits on LP64 */
        if (__builtin_expect(v != (unsigned long)-1 || !PyErr_Occurred(), 1)) {
            *out = (uintptr_t)v;
            return 0;
        }
        PyErr_Clear();
    }
    return pa_arg_ptr(o, out);
}

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
/* Process.stats()'s dict, and a region tuple of Process._walk(). */
PyObject *pa_vm_stats_dict(const pa_vm_stats_t *s);
PyObject *pa_region_tuple(const pa_region_info_t *r);

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
/* Heap.stats()'s dict. */
PyObject *pa_heap_stats_dict(const pa_heap_stats_t *s);

/* ---- the program's own process under the preload library (host.c) ---- */
extern PyMethodDef pa_host_functions[];

/* ---- view() exporter (export.c) ---- */
int pa_export_type_init(PyObject *module, pa_state *st);
PyObject *pa_export_view(ProcessObject *self, uintptr_t address, size_t size);
/* 1 if a live view's bytes overlap [address, address + size): exact, where pins are pages. */
int pa_export_overlaps(ProcessObject *self, uintptr_t address, size_t size);

/* ---- layers 4 and 5: the CRT (crt.c) and new/delete (new.c) ----
 * A process's CRT is debug or release from its first CRT call on; crt_mode caches which, so
 * that malloc and free need one compare to take their release fast path. */
#define PA_CRT_MODE_UNKNOWN 0 /* no CRT call from Python yet (or closed) */
#define PA_CRT_MODE_RELEASE 1
#define PA_CRT_MODE_DEBUG 2
int pa_crt_type_init(PyObject *module, pa_state *st);
int pa_new_type_init(PyObject *module, pa_state *st);
/* The Process's side (process.c calls these). Process(crt_debug=...): 0, or -1 raised. */
int pa_crt_process_init(ProcessObject *self, int debug);
/* Around pa_process_destroy (close or dealloc): closing refuses (-1, RuntimeError) while the
 * process's new handler runs inside a CRT call; after it, reports made by the rundown (the
 * exit leak dump of _CRTDBG_LEAK_CHECK_DF) are printed to sys.stderr and the state freed.
 * The caller clears self->p first (the printing runs Python code, which may call the
 * Process); `live` is the process when it lives on (the current process), else NULL. */
int pa_crt_process_closing(ProcessObject *self);
void pa_crt_process_closed(ProcessObject *self, pa_process_t *live);
int pa_crt_process_traverse(ProcessObject *self, visitproc visit, void *arg);
void pa_crt_process_clear(ProcessObject *self);
PyObject *pa_crt_get_debug(PyObject *self, void *closure); /* Process.crt_debug */
/* HeapLock from Python threads (heap.c): how many (process, heap, thread) locks Python
 * threads hold, and the wait, with the GIL released, until no other Python thread holds the
 * lock of `heap` of `process` (NULL: of any of its heaps); 0, or -1 raised (closed, or a
 * signal). Every call that may take a heap's lock waits so first while the count is not 0:
 * blocking on that lock with the GIL held would hang the interpreter, as the holder needs the
 * GIL to reach HeapUnlock. */
extern int pa_py_heap_locks;
int pa_wait_heap_unlocked_slow(PyObject *process, HANDLE heap);
static inline int pa_wait_heap_unlocked(PyObject *process, HANDLE heap)
{
    return pa_py_heap_locks ? pa_wait_heap_unlocked_slow(process, heap) : 0;
}
/* Shared by crt.c and new.c. pa_crt_enter: the process's CRT mode (the debug CRT's hooks
 * installed on first use; after the wait above for every heap of the process: a CRT call
 * looks up foreign pointers in all of them), or -1 with ValueError for a closed process. */
int pa_crt_enter(ProcessObject *self);
/* The Python caller's file and line, for debug blocks: file is interned for the life of the
 * interpreter (the CRT keeps it by pointer). 0, or -1 raised. */
int pa_crt_call_site(const char **file, int *line);
/* Turns what the debug CRT reported during the last call into Python: CrtReport warnings,
 * leak lines on sys.stderr, the _CrtSetBreakAlloc callback (given result, the address the
 * call returned). 0, or -1 raised. */
int pa_crt_flush(ProcessObject *self, uintptr_t result);
/* Raises CrtMemoryError (ENOMEM), CrtInvalidParameter (EINVAL) or CrtError; returns NULL.
 * An exception pending from the new handler becomes its __cause__ (an Exception), or stays
 * (KeyboardInterrupt ...). */
PyObject *pa_crt_raise_errno(ProcessObject *self, int err, const char *function);
/* BadAlloc, or BadArrayNewLength for PA_NEW_BAD_ARRAY_NEW_LENGTH; returns NULL. */
PyObject *pa_crt_raise_bad_alloc(ProcessObject *self, int status, size_t size);
/* BufferError (-1) if the heap block holding address is exported to a live memoryview. */
int pa_crt_check_not_exported(ProcessObject *self, uintptr_t address);
/* The module-level malloc and free (module_exec adds them); module_clear calls the other. */
extern PyMethodDef pa_crt_module_functions[];
void pa_crt_module_clear(PyObject *module);
#define PA_DOC_malloc                                                                            \
    "malloc($self, size)\n--\n\nReturns int.\n\nUCRT's malloc on the process heap: one "         \
    "HeapAlloc, so HeapSize == _msize; malloc(0) is a 1-byte block. CrtMemoryError (ENOMEM) on " \
    "failure, after the new handler when _set_new_mode(1)."
#define PA_DOC_free                                                                              \
    "free($self, address)\n--\n\nNone/0 does nothing; a pointer that is not a block raises "     \
    "CrtInvalidParameter (release CRT) or is reported (debug CRT)."
PA_DECLARE_IMPL(malloc)
PA_DECLARE_IMPL(calloc)
PA_DECLARE_IMPL(realloc)
PA_DECLARE_IMPL(free)
PA_DECLARE_IMPL(_msize)
PA_DECLARE_IMPL(_expand)
PA_DECLARE_IMPL(_recalloc)
PA_DECLARE_IMPL(_aligned_malloc)
PA_DECLARE_IMPL(_aligned_offset_malloc)
PA_DECLARE_IMPL(_aligned_realloc)
PA_DECLARE_IMPL(_aligned_free)
PA_DECLARE_IMPL(_aligned_msize)
PA_DECLARE_IMPL(_set_new_mode)
PA_DECLARE_IMPL(_query_new_mode)
PA_DECLARE_IMPL(set_new_handler)
PA_DECLARE_IMPL(_get_heap_handle)
PA_DECLARE_IMPL(_CrtSetDbgFlag)
PA_DECLARE_IMPL(_CrtCheckMemory)
PA_DECLARE_IMPL(_CrtDumpMemoryLeaks)
PA_DECLARE_IMPL(_CrtSetBreakAlloc)
PA_DECLARE_IMPL(_CrtIsValidHeapPointer)
PA_DECLARE_IMPL(_CrtReportBlockType)
PA_DECLARE_IMPL(operator_new)
PA_DECLARE_IMPL(operator_delete)
PA_DECLARE_IMPL(new)
PA_DECLARE_IMPL(delete)
PA_DECLARE_IMPL(new_array)
PA_DECLARE_IMPL(delete_array)

#endif /* PA_BINDING_H */
