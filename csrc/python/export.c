/* export.c: the object behind Process.view() memoryviews.
 *
 * An exporter pins its range in the memory manager (pa_mm_pin) for as long as it lives, so
 * that no free, decommit or protection change can leave the memoryview dangling: those raise
 * BufferError instead. The memoryview holds the only reference; releasing the memoryview
 * (mv.release(), del, or garbage collection) unpins.
 */
#include "binding.h"

typedef struct pa_export_s {
    PyObject_HEAD
    struct pa_export_s *next, *prev; /* in process->export_list while pinned */
    ProcessObject *process;
    pa_pin_t *pin;
    void *address;
    Py_ssize_t size;
    int writable;
    Py_ssize_t buffers; /* Py_buffers handed out */
} ExportObject;

static int export_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    ExportObject *e = (ExportObject *)self;
    if (PyBuffer_FillInfo(view, self, e->address, e->size, !e->writable, flags)) return -1;
    e->buffers++;
    return 0;
}

static void export_releasebuffer(PyObject *self, Py_buffer *view)
{
    (void)view;
    ((ExportObject *)self)->buffers--;
}

static int export_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((ExportObject *)self)->process);
    return 0;
}

static void export_dealloc(PyObject *self)
{
    ExportObject *e = (ExportObject *)self;
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (e->pin && e->process && e->process->p) pa_mm_unpin(e->process->p, e->pin);
    if (e->process) {
        if (e->prev) e->prev->next = e->next;
        else e->process->export_list = e->next;
        if (e->next) e->next->prev = e->prev;
    }
    if (e->process) e->process->exports--;
    Py_CLEAR(e->process);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyType_Slot export_slots[] = {
    {Py_tp_doc, "A pinned range of simulated memory, exported through memoryview."},
    {Py_bf_getbuffer, export_getbuffer},
    {Py_bf_releasebuffer, export_releasebuffer},
    {Py_tp_traverse, export_traverse},
    {Py_tp_dealloc, export_dealloc},
    {0, NULL},
};

static PyType_Spec export_spec = {
    "pyalloc._core._Export", sizeof(ExportObject), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
        Py_TPFLAGS_DISALLOW_INSTANTIATION,
    export_slots,
};

int pa_export_type_init(PyObject *module, pa_state *st)
{
    st->Export = (PyTypeObject *)PyType_FromModuleAndSpec(module, &export_spec, NULL);
    return st->Export ? 0 : -1;
}

PyObject *pa_export_view(ProcessObject *self, uintptr_t address, size_t size)
{
    pa_state *st = pa_get_state(self->module);
    if (size > (size_t)PY_SSIZE_T_MAX) return PyErr_Format(PyExc_OverflowError, "size too large");
    ExportObject *e = PyObject_GC_New(ExportObject, st->Export);
    if (!e) return NULL;
    e->process = NULL;
    e->pin = NULL;
    e->buffers = 0;
    int writable = 0;
    uintptr_t fault = 0;
    NTSTATUS s = pa_mm_pin(self->p, (void *)address, size, 1, &writable, &fault, &e->pin);
    if (s != STATUS_SUCCESS) {
        Py_DECREF(e); /* valid to deallocate: no process, no pin */
        return pa_raise_access(st, s, fault, "read");
    }
    Py_INCREF(self);
    e->process = self;
    self->exports++;
    e->prev = NULL;
    e->next = self->export_list;
    if (e->next) e->next->prev = e;
    self->export_list = e;
    e->address = (void *)address;
    e->size = (Py_ssize_t)size;
    e->writable = writable;
    PyObject_GC_Track(e);
    PyObject *mv = PyMemoryView_FromObject((PyObject *)e);
    Py_DECREF(e); /* the memoryview keeps it alive */
    return mv;
}

int pa_export_overlaps(ProcessObject *self, uintptr_t address, size_t size)
{
    for (ExportObject *e = self->export_list; e; e = e->next)
        if ((uintptr_t)e->address < address + size && address < (uintptr_t)e->address + (size_t)e->size)
            return 1;
    return 0;
}
