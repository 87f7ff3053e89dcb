/* structs.c: Windows structures as Python objects (MEMORY_BASIC_INFORMATION, SYSTEM_INFO).
 *
 * One small engine serves every structure: a structure is a table of fields, each with a name
 * and a way to show it (hex address, decimal, PAGE_* or MEM_* names). Objects are immutable,
 * compare equal field by field, and have `_fields` and `_asdict()` like named tuples.
 */
#include <stddef.h>

#include "binding.h"
#include "structmember.h"

enum fmt { F_HEX, F_DEC, F_PROTECT, F_STATE, F_TYPE };

typedef struct {
    const char *name;
    enum fmt fmt;
} field_t;

#define MAX_FIELDS 12

typedef struct {
    PyObject_HEAD
    unsigned long long v[MAX_FIELDS];
} StructObject;

static const field_t mbi_fields[] = {
    {"BaseAddress", F_HEX}, {"AllocationBase", F_HEX}, {"AllocationProtect", F_PROTECT},
    {"RegionSize", F_HEX},  {"State", F_STATE},        {"Protect", F_PROTECT},
    {"Type", F_TYPE},       {NULL, F_HEX},
};

static const field_t si_fields[] = {
    {"wProcessorArchitecture", F_DEC}, {"dwPageSize", F_HEX},
    {"lpMinimumApplicationAddress", F_HEX}, {"lpMaximumApplicationAddress", F_HEX},
    {"dwActiveProcessorMask", F_HEX}, {"dwNumberOfProcessors", F_DEC},
    {"dwProcessorType", F_DEC}, {"dwAllocationGranularity", F_HEX},
    {"wProcessorLevel", F_DEC}, {"wProcessorRevision", F_DEC}, {NULL, F_HEX},
};

static const field_t heap_entry_fields[] = {
    {"lpData", F_HEX}, {"cbData", F_HEX}, {"cbOverhead", F_DEC}, {"iRegionIndex", F_DEC},
    {"wFlags", F_HEX}, {"dwCommittedSize", F_HEX}, {"dwUnCommittedSize", F_HEX},
    {"lpFirstBlock", F_HEX}, {"lpLastBlock", F_HEX}, {NULL, F_HEX},
};

static const field_t *fields_of(PyTypeObject *tp)
{
    /* The field table rides on the type as a capsule in its dict. */
    PyObject *cap = PyDict_GetItemString(tp->tp_dict, "_pa_fields");
    return cap ? PyCapsule_GetPointer(cap, NULL) : NULL;
}

static const struct { DWORD value; const char *name; } protect_names[] = {
    {PAGE_NOACCESS, "PAGE_NOACCESS"}, {PAGE_READONLY, "PAGE_READONLY"},
    {PAGE_READWRITE, "PAGE_READWRITE"}, {PAGE_WRITECOPY, "PAGE_WRITECOPY"},
    {PAGE_EXECUTE, "PAGE_EXECUTE"}, {PAGE_EXECUTE_READ, "PAGE_EXECUTE_READ"},
    {PAGE_EXECUTE_READWRITE, "PAGE_EXECUTE_READWRITE"},
    {PAGE_EXECUTE_WRITECOPY, "PAGE_EXECUTE_WRITECOPY"}, {PAGE_GUARD, "PAGE_GUARD"},
    {PAGE_NOCACHE, "PAGE_NOCACHE"}, {PAGE_WRITECOMBINE, "PAGE_WRITECOMBINE"},
};

/* PyUnicode_FromFormat has no 64-bit hex conversion before 3.12. */
static PyObject *hex_str(unsigned long long v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "0x%llx", v);
    return PyUnicode_FromString(buf);
}

PyObject *pa_protect_name(DWORD protect)
{
    if (protect == 0) return PyUnicode_FromString("0");
    PyObject *parts = PyList_New(0), *sep = NULL, *result = NULL;
    if (!parts) return NULL;
    DWORD left = protect;
    for (size_t i = 0; i < sizeof protect_names / sizeof *protect_names; i++) {
        if (!(protect & protect_names[i].value)) continue;
        PyObject *s = PyUnicode_FromString(protect_names[i].name);
        if (!s || PyList_Append(parts, s)) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
        left &= ~protect_names[i].value;
    }
    if (left) {
        PyObject *s = hex_str(left);
        if (!s || PyList_Append(parts, s)) {
            Py_XDECREF(s);
            goto done;
        }
        Py_DECREF(s);
    }
    sep = PyUnicode_FromString("|");
    if (sep) result = PyUnicode_Join(sep, parts);
done:
    Py_XDECREF(sep);
    Py_DECREF(parts);
    return result;
}

static PyObject *format_field(enum fmt fmt, unsigned long long v)
{
    switch (fmt) {
    case F_HEX: return hex_str(v);
    case F_DEC: return PyUnicode_FromFormat("%llu", v);
    case F_PROTECT: return pa_protect_name((DWORD)v);
    case F_STATE:
        if (v == MEM_COMMIT) return PyUnicode_FromString("MEM_COMMIT");
        if (v == MEM_RESERVE) return PyUnicode_FromString("MEM_RESERVE");
        if (v == MEM_FREE) return PyUnicode_FromString("MEM_FREE");
        break;
    case F_TYPE:
        if (v == MEM_PRIVATE) return PyUnicode_FromString("MEM_PRIVATE");
        if (v == MEM_MAPPED) return PyUnicode_FromString("MEM_MAPPED");
        if (v == MEM_IMAGE) return PyUnicode_FromString("MEM_IMAGE");
        break;
    }
    return hex_str(v);
}

static PyObject *struct_repr(PyObject *self)
{
    const field_t *f = fields_of(Py_TYPE(self));
    const StructObject *s = (const StructObject *)self;
    PyObject *parts = PyList_New(0), *result = NULL, *sep = NULL, *body = NULL;
    if (!parts || !f) goto done;
    for (int i = 0; f[i].name; i++) {
        PyObject *val = format_field(f[i].fmt, s->v[i]);
        PyObject *item = val ? PyUnicode_FromFormat("%s=%U", f[i].name, val) : NULL;
        Py_XDECREF(val);
        if (!item || PyList_Append(parts, item)) {
            Py_XDECREF(item);
            goto done;
        }
        Py_DECREF(item);
    }
    sep = PyUnicode_FromString(", ");
    body = sep ? PyUnicode_Join(sep, parts) : NULL;
    const char *name = strrchr(Py_TYPE(self)->tp_name, '.');
    if (body) result = PyUnicode_FromFormat("%s(%U)", name ? name + 1 : Py_TYPE(self)->tp_name, body);
done:
    Py_XDECREF(body);
    Py_XDECREF(sep);
    Py_XDECREF(parts);
    return result;
}

static PyObject *struct_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(a) != Py_TYPE(b)) Py_RETURN_NOTIMPLEMENTED;
    int eq = memcmp(((StructObject *)a)->v, ((StructObject *)b)->v,
                    sizeof ((StructObject *)a)->v) == 0;
    return PyBool_FromLong(op == Py_EQ ? eq : !eq);
}

static PyObject *struct_asdict(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    const field_t *f = fields_of(Py_TYPE(self));
    PyObject *d = PyDict_New();
    if (!d || !f) return d;
    for (int i = 0; f[i].name; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(((StructObject *)self)->v[i]);
        if (!v || PyDict_SetItemString(d, f[i].name, v)) {
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(v);
    }
    return d;
}

static int struct_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static void struct_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef struct_methods[] = {
    {"_asdict", struct_asdict, METH_NOARGS, "_asdict($self, /)\n--\n\nThe fields as a dict."},
    {NULL, NULL, 0, NULL},
};

/* Builds a structure type named `name` from its field table. */
static PyTypeObject *make_struct_type(PyObject *module, const char *name, const char *doc,
                                      const field_t *fields)
{
    PyMemberDef members[MAX_FIELDS + 1];
    int n = 0;
    for (; fields[n].name; n++) {
        members[n] = (PyMemberDef){(char *)fields[n].name, T_ULONGLONG,
                                   (Py_ssize_t)(offsetof(StructObject, v) + n * sizeof(unsigned long long)),
                                   READONLY, NULL};
    }
    members[n] = (PyMemberDef){NULL, 0, 0, 0, NULL};
    PyType_Slot slots[] = {
        {Py_tp_doc, (void *)doc},
        {Py_tp_repr, struct_repr},
        {Py_tp_richcompare, struct_richcompare},
        {Py_tp_members, members},
        {Py_tp_methods, struct_methods},
        {Py_tp_traverse, struct_traverse},
        {Py_tp_dealloc, struct_dealloc},
        {0, NULL},
    };
    PyType_Spec spec = {name, sizeof(StructObject), 0,
                        Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_IMMUTABLETYPE |
                            Py_TPFLAGS_DISALLOW_INSTANTIATION,
                        slots};
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(module, &spec, NULL);
    if (!tp) return NULL;
    PyObject *cap = PyCapsule_New((void *)fields, NULL, NULL);
    PyObject *names = PyTuple_New(n);
    if (!cap || !names) goto fail;
    for (int i = 0; i < n; i++) {
        PyObject *s = PyUnicode_FromString(fields[i].name);
        if (!s) goto fail;
        PyTuple_SET_ITEM(names, i, s);
    }
    /* Immutable types still accept these writes through their dict before publication. */
    if (PyDict_SetItemString(tp->tp_dict, "_pa_fields", cap) ||
        PyDict_SetItemString(tp->tp_dict, "_fields", names))
        goto fail;
    PyType_Modified(tp);
    Py_DECREF(cap);
    Py_DECREF(names);
    if (PyModule_AddType(module, tp)) {
        Py_DECREF(tp);
        return NULL;
    }
    return tp;
fail:
    Py_XDECREF(cap);
    Py_XDECREF(names);
    Py_DECREF(tp);
    return NULL;
}

static PyObject *struct_new(PyTypeObject *tp, const unsigned long long *v, int n)
{
    StructObject *s = PyObject_GC_New(StructObject, tp);
    if (!s) return NULL;
    memset(s->v, 0, sizeof s->v);
    memcpy(s->v, v, (size_t)n * sizeof *v);
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

PyObject *pa_mbi_new(pa_state *st, const MEMORY_BASIC_INFORMATION *m)
{
    unsigned long long v[7] = {(uintptr_t)m->BaseAddress, (uintptr_t)m->AllocationBase,
                               m->AllocationProtect, m->RegionSize, m->State, m->Protect,
                               m->Type};
    return struct_new(st->MemoryBasicInformation, v, 7);
}

PyObject *pa_system_info_new(pa_state *st, const SYSTEM_INFO *si)
{
    unsigned long long v[10] = {si->wProcessorArchitecture, si->dwPageSize,
                                (uintptr_t)si->lpMinimumApplicationAddress,
                                (uintptr_t)si->lpMaximumApplicationAddress,
                                si->dwActiveProcessorMask, si->dwNumberOfProcessors,
                                si->dwProcessorType, si->dwAllocationGranularity,
                                si->wProcessorLevel, si->wProcessorRevision};
    return struct_new(st->SystemInfo, v, 10);
}

PyObject *pa_heap_entry_new(pa_state *st, const PROCESS_HEAP_ENTRY *e)
{
    int region = (e->wFlags & PROCESS_HEAP_REGION) != 0;
    unsigned long long v[9] = {(uintptr_t)e->lpData, e->cbData, e->cbOverhead, e->iRegionIndex,
                               e->wFlags, region ? e->Region.dwCommittedSize : 0,
                               region ? e->Region.dwUnCommittedSize : 0,
                               region ? (uintptr_t)e->Region.lpFirstBlock : 0,
                               region ? (uintptr_t)e->Region.lpLastBlock : 0};
    return struct_new(st->HeapEntry, v, 9);
}

int pa_structs_init(PyObject *module, pa_state *st)
{
    st->HeapEntry = make_struct_type(module, "pyalloc.PROCESS_HEAP_ENTRY",
                                     "One entry of HeapWalk: a region (segment), a busy or free "
                                     "block, or an uncommitted range. The Region fields are 0 "
                                     "for other entries.", heap_entry_fields);
    if (!st->HeapEntry) return -1;
    st->MemoryBasicInformation = make_struct_type(
        module, "pyalloc.MEMORY_BASIC_INFORMATION",
        "What VirtualQuery reports about the region containing an address.", mbi_fields);
    if (!st->MemoryBasicInformation) return -1;
    st->SystemInfo = make_struct_type(module, "pyalloc.SYSTEM_INFO",
                                      "What GetSystemInfo reports for a process.", si_fields);
    return st->SystemInfo ? 0 : -1;
}
