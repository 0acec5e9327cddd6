/*
 * callengine.c: plugin_host.loading._callengine, the compiled call path.
 *
 * A proxy method (or a DynamicModule function) whose signature the engine
 * can do becomes one METH_FASTCALL callable that, in one crossing from
 * Python: converts the arguments without temporary objects (the UTF-8 a str
 * caches, a buffer-protocol view, scalars range-checked, structs written
 * into a stack buffer), enters the call gate with an atomic, calls the
 * plugin, copies an owned result and releases it with the plugin's own free
 * function, turns a Status into PluginMethodError, returns Out[T] values,
 * and leaves the gate.  The GIL is released around the plugin call only
 * when the declaration says the method is long-running.
 *
 * The engine never decides an error about an argument.  Anything it does
 * not convert itself (another type, a value out of range, a buffer of the
 * wrong format, keywords, a closed gate...) is handed, unchanged, to the
 * pure-Python path (the "fallback" callable), which converts or raises the
 * typed error with its message: so both paths answer alike by
 * construction, and tests/test_engine.py holds them to it.  Errors after
 * the call (a NULL result, a failing Status) are built by the same Python
 * helpers the pure-Python path uses.
 *
 * Calls.  Converted arguments are machine words in two sequences, integer
 * class (integers, pointers, INTEGER eightbytes of small structs) and
 * floating class (float, double, SSE eightbytes).  On the System V x86-64
 * and AAPCS64 ABIs each sequence is assigned to its own registers in order,
 * whatever the interleaving, so one call with every integer and every
 * floating register filled reaches any function whose arguments fit in
 * registers; the callee ignores the registers it does not use.  A float
 * travels in the low 32 bits of its register, where we put it.  Signatures
 * that need the stack (more arguments, structs over 16 bytes by value) and
 * other ABIs (Windows x64 assigns registers by position) are left to the
 * pure-Python path: the planner (plugin_host/loading/_engine.py) declines
 * them, and this module refuses a plan it cannot do.
 *
 * Compiled against the limited API (abi3) of Python 3.11.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && !defined(_WIN32) && !defined(__ILP32__)
#define ENGINE_ABI "sysv-x86_64"
#define ENGINE_INT_REGS 6
#define ENGINE_STRUCTS_BY_VALUE 1
#elif defined(__aarch64__) && !defined(_WIN32) && !defined(__ILP32__)
#define ENGINE_ABI "aapcs64"
#define ENGINE_INT_REGS 8
#define ENGINE_STRUCTS_BY_VALUE 0 /* HFAs and indirect copies: left to the Python path */
#else
#error "the call engine supports System V x86-64 and AAPCS64 only (the build is optional: Python takes over)"
#endif
#define ENGINE_FP_REGS 8
/* Room for the copies of str arguments a call passes to char * parameters (longer ones: Python path). */
#define ENGINE_STRING_BYTES 512

/* The vectorcall protocol for the Function type: in the limited API from 3.12; the flag's bit
 * and a heap type's __vectorcalloffset__ member work the same in 3.11, the oldest Python this
 * module is built for (a call falls back to tp_call where they would not). */
#ifndef Py_TPFLAGS_HAVE_VECTORCALL
#define Py_TPFLAGS_HAVE_VECTORCALL (1UL << 11)
#endif
#define ENGINE_ARGUMENTS_OFFSET ((size_t)1 << (8 * sizeof(size_t) - 1)) /* PY_VECTORCALL_ARGUMENTS_OFFSET */
typedef PyObject *(*engine_vectorcall)(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames);
/* The most Python-level parameters one compiled call takes. */
#define ENGINE_MAX_PARAMS 16
/* Room for the structs of one call (by value, by pointer, a returned one), in bytes. */
#define ENGINE_STRUCT_BYTES 1024

/* Scalar codes (exported to Python as S_*). */
enum { S_I8 = 1, S_I16, S_I32, S_I64, S_U8, S_U16, S_U32, S_U64, S_BOOL, S_F32, S_F64, S_LAST = S_F64 };
/* Parameter kinds (P_*). */
enum {
    P_SCALAR = 1,
    P_CSTR,      /* str only: a trait's CStr */
    P_CHARP,     /* str or bytes: a DynamicModule char * */
    P_BUFFER,    /* any contiguous buffer: pointer and length in bytes */
    P_MUTBUFFER, /* a writable one */
    P_ARRAY,     /* a C-contiguous buffer of one item format: pointer and item count */
    P_MUTARRAY,
    P_OUT,       /* no argument: a zeroed slot the plugin writes, returned after the result */
    P_STRUCT,    /* by value, in registers (ENGINE_STRUCTS_BY_VALUE) */
    P_REF,       /* const T *: written into the stack buffer */
    P_MUTREF,    /* T *: and the plugin's writes copied back into the object */
    P_OUTSTRUCT, /* Out[T] of a struct: a zeroed T the plugin writes, returned as a new object */
    P_LAST = P_OUTSTRUCT
};
/* Result kinds (R_*). */
enum { R_VOID = 0, R_SCALAR, R_OWNEDSTR, R_OWNEDBYTES, R_STATUS, R_STRUCT, R_LAST = R_STRUCT };
/* Method flags (F_*). */
enum { F_SELF = 1, F_RELEASE_GIL = 2 };

static const int scalar_size[S_LAST + 1] = {0, 1, 2, 4, 8, 1, 2, 4, 8, 1, 4, 8};

/* ---- struct layouts ------------------------------------------------------------------------- */

typedef struct Layout Layout;

typedef struct {
    PyObject *name;    /* the field name (str) */
    Py_ssize_t offset; /* from the start of the struct */
    Py_ssize_t count;  /* 1, or n for T x[n] */
    Py_ssize_t stride; /* the size of one item */
    int code;          /* a scalar code, or 0 for a nested struct */
    Layout *nested;
} Field;

struct Layout {
    PyObject *cls;  /* exact instances of this class (or exact dicts) are converted here */
    PyObject *ctor; /* makes result objects from keyword arguments (the class, or SimpleNamespace) */
    Py_ssize_t size;
    Py_ssize_t nfields;
    Field fields[];
};

static void layout_free(Layout *layout) {
    if (layout == NULL) {
        return;
    }
    for (Py_ssize_t i = 0; i < layout->nfields; i++) {
        Py_XDECREF(layout->fields[i].name);
        layout_free(layout->fields[i].nested);
    }
    Py_XDECREF(layout->cls);
    Py_XDECREF(layout->ctor);
    PyMem_Free(layout);
}

static int layout_visit(Layout *layout, visitproc visit, void *arg) {
    if (layout == NULL) {
        return 0;
    }
    Py_VISIT(layout->cls);
    Py_VISIT(layout->ctor);
    for (Py_ssize_t i = 0; i < layout->nfields; i++) {
        int r = layout_visit(layout->fields[i].nested, visit, arg);
        if (r) {
            return r;
        }
    }
    return 0;
}

static Py_ssize_t tuple_ssize(PyObject *tuple, Py_ssize_t i) {
    PyObject *item = PyTuple_GetItem(tuple, i);
    return item == NULL ? -1 : PyLong_AsSsize_t(item);
}

/* A layout from (size, cls, ctor, ((name, offset, count, stride, code, nested|None), ...)). */
static Layout *layout_parse(PyObject *plan, int depth) {
    if (depth > 16 || !PyTuple_Check(plan) || PyTuple_Size(plan) != 4) {
        PyErr_SetString(PyExc_ValueError, "bad struct plan");
        return NULL;
    }
    PyObject *fields = PyTuple_GetItem(plan, 3);
    if (fields == NULL || !PyTuple_Check(fields)) {
        PyErr_SetString(PyExc_ValueError, "bad struct plan fields");
        return NULL;
    }
    Py_ssize_t n = PyTuple_Size(fields);
    Layout *layout = PyMem_Calloc(1, sizeof(Layout) + (size_t)n * sizeof(Field));
    if (layout == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    layout->size = tuple_ssize(plan, 0);
    layout->cls = PyTuple_GetItem(plan, 1);
    layout->ctor = PyTuple_GetItem(plan, 2);
    Py_XINCREF(layout->cls);
    Py_XINCREF(layout->ctor);
    if (layout->size <= 0 || layout->size > ENGINE_STRUCT_BYTES || layout->ctor == NULL) {
        layout_free(layout);
        PyErr_SetString(PyExc_ValueError, "bad struct size");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyTuple_GetItem(fields, i);
        if (f == NULL || !PyTuple_Check(f) || PyTuple_Size(f) != 6) {
            layout_free(layout);
            PyErr_SetString(PyExc_ValueError, "bad struct field plan");
            return NULL;
        }
        Field *field = &layout->fields[i];
        layout->nfields = i + 1; /* freed from here on */
        field->name = PyTuple_GetItem(f, 0);
        Py_XINCREF(field->name);
        field->offset = tuple_ssize(f, 1);
        field->count = tuple_ssize(f, 2);
        field->stride = tuple_ssize(f, 3);
        field->code = (int)tuple_ssize(f, 4);
        PyObject *nested = PyTuple_GetItem(f, 5);
        if (PyErr_Occurred() || field->name == NULL || !PyUnicode_Check(field->name)) {
            layout_free(layout);
            return NULL;
        }
        if (nested != Py_None) {
            field->nested = layout_parse(nested, depth + 1);
            if (field->nested == NULL) {
                layout_free(layout);
                return NULL;
            }
        }
        int ok = field->count >= 1 && field->offset >= 0 && field->stride > 0 &&
                 field->offset + field->count * field->stride <= layout->size;
        if (field->nested != NULL) {
            ok = ok && field->code == 0 && field->stride == field->nested->size;
        } else {
            ok = ok && field->code >= S_I8 && field->code <= S_LAST && field->stride == scalar_size[field->code];
        }
        if (!ok) {
            layout_free(layout);
            PyErr_SetString(PyExc_ValueError, "bad struct field layout");
            return NULL;
        }
    }
    return layout;
}

/* ---- scalars -------------------------------------------------------------------------------- */

/* Python value -> C scalar at dst; 0, or -1 to decline (an error may be set: the caller clears it).
 * Accepts only what cffi accepts and converts as it does: ints in range (bool included) for the
 * integer types, True/False/0/1 for _Bool, ints and floats for float and double. */
static int scalar_from_py(int code, PyObject *value, void *dst) {
    if (code == S_F32 || code == S_F64) {
        double d;
        if (PyFloat_Check(value)) {
            d = PyFloat_AsDouble(value);
        } else if (PyLong_Check(value)) {
            d = PyLong_AsDouble(value);
            if (d == -1.0 && PyErr_Occurred()) {
                return -1;
            }
        } else {
            return -1;
        }
        if (code == S_F32) {
            float f = (float)d;
            memcpy(dst, &f, sizeof f);
        } else {
            memcpy(dst, &d, sizeof d);
        }
        return 0;
    }
    if (!PyLong_Check(value)) {
        return -1;
    }
    if (code == S_U64) {
        unsigned long long u = PyLong_AsUnsignedLongLong(value);
        if (u == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        uint64_t v = u;
        memcpy(dst, &v, sizeof v);
        return 0;
    }
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    switch (code) {
    case S_I8: {
        if (v < INT8_MIN || v > INT8_MAX) return -1;
        int8_t x = (int8_t)v;
        memcpy(dst, &x, 1);
        return 0;
    }
    case S_I16: {
        if (v < INT16_MIN || v > INT16_MAX) return -1;
        int16_t x = (int16_t)v;
        memcpy(dst, &x, 2);
        return 0;
    }
    case S_I32: {
        if (v < INT32_MIN || v > INT32_MAX) return -1;
        int32_t x = (int32_t)v;
        memcpy(dst, &x, 4);
        return 0;
    }
    case S_I64: {
        int64_t x = (int64_t)v;
        memcpy(dst, &x, 8);
        return 0;
    }
    case S_U8: {
        if (v < 0 || v > UINT8_MAX) return -1;
        uint8_t x = (uint8_t)v;
        memcpy(dst, &x, 1);
        return 0;
    }
    case S_U16: {
        if (v < 0 || v > UINT16_MAX) return -1;
        uint16_t x = (uint16_t)v;
        memcpy(dst, &x, 2);
        return 0;
    }
    case S_U32: {
        if (v < 0 || v > (long long)UINT32_MAX) return -1;
        uint32_t x = (uint32_t)v;
        memcpy(dst, &x, 4);
        return 0;
    }
    case S_BOOL: {
        if (v != 0 && v != 1) return -1;
        uint8_t x = (uint8_t)v;
        memcpy(dst, &x, 1);
        return 0;
    }
    default:
        return -1;
    }
}

/* C scalar at src -> a new Python object (int, float or bool, as cffi returns them). */
static PyObject *scalar_to_py(int code, const void *src) {
    switch (code) {
    case S_I8: { int8_t x; memcpy(&x, src, 1); return PyLong_FromLong(x); }
    case S_I16: { int16_t x; memcpy(&x, src, 2); return PyLong_FromLong(x); }
    case S_I32: { int32_t x; memcpy(&x, src, 4); return PyLong_FromLong(x); }
    case S_I64: { int64_t x; memcpy(&x, src, 8); return PyLong_FromLongLong(x); }
    case S_U8: { uint8_t x; memcpy(&x, src, 1); return PyLong_FromUnsignedLong(x); }
    case S_U16: { uint16_t x; memcpy(&x, src, 2); return PyLong_FromUnsignedLong(x); }
    case S_U32: { uint32_t x; memcpy(&x, src, 4); return PyLong_FromUnsignedLong(x); }
    case S_U64: { uint64_t x; memcpy(&x, src, 8); return PyLong_FromUnsignedLongLong(x); }
    case S_BOOL: {
        uint8_t x;
        memcpy(&x, src, 1);
        if (x > 1) { /* what cffi says of the same byte, so both paths answer alike */
            PyErr_Format(PyExc_ValueError, "got a _Bool of value %d, expected 0 or 1", (int)x);
            return NULL;
        }
        return PyBool_FromLong(x);
    }
    case S_F32: { float x; memcpy(&x, src, 4); return PyFloat_FromDouble(x); }
    case S_F64: { double x; memcpy(&x, src, 8); return PyFloat_FromDouble(x); }
    default:
        PyErr_SetString(PyExc_SystemError, "callengine: bad scalar code");
        return NULL;
    }
}

/* A scalar as the 64-bit register word it travels in: integers sign- or zero-extended (what
 * every ABI here accepts), a float in the low 32 bits of a double's bits. */
static uint64_t scalar_word(int code, const void *src) {
    switch (code) {
    case S_I8: { int8_t x; memcpy(&x, src, 1); return (uint64_t)(int64_t)x; }
    case S_I16: { int16_t x; memcpy(&x, src, 2); return (uint64_t)(int64_t)x; }
    case S_I32: { int32_t x; memcpy(&x, src, 4); return (uint64_t)(int64_t)x; }
    case S_U8:
    case S_BOOL: { uint8_t x; memcpy(&x, src, 1); return x; }
    case S_U16: { uint16_t x; memcpy(&x, src, 2); return x; }
    case S_U32: { uint32_t x; memcpy(&x, src, 4); return x; }
    case S_F32: { uint32_t x; memcpy(&x, src, 4); return x; }
    default: { uint64_t x; memcpy(&x, src, 8); return x; }
    }
}

/* ---- structs -------------------------------------------------------------------------------- */

static int struct_from_py(const Layout *layout, PyObject *value, unsigned char *dst);

/* One field's value (a scalar, a nested struct, or a list/tuple of count of either) into dst. */
static int field_from_py(const Field *f, PyObject *item, unsigned char *dst) {
    if (f->count == 1) {
        return f->nested ? struct_from_py(f->nested, item, dst) : scalar_from_py(f->code, item, dst);
    }
    if (!(PyList_Check(item) || PyTuple_Check(item))) {
        return -1; /* the Python path takes any iterable */
    }
    int is_list = PyList_Check(item);
    if ((is_list ? PyList_Size(item) : PyTuple_Size(item)) != f->count) {
        return -1;
    }
    for (Py_ssize_t k = 0; k < f->count; k++) {
        PyObject *x = is_list ? PyList_GetItem(item, k) : PyTuple_GetItem(item, k);
        if (x == NULL) {
            return -1;
        }
        /* Held: converting a struct reads its attributes, which may run code that empties the list. */
        Py_INCREF(x);
        unsigned char *at = dst + k * f->stride;
        int r = f->nested ? struct_from_py(f->nested, x, at) : scalar_from_py(f->code, x, at);
        Py_DECREF(x);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* value (an exact instance of the declared class, or an exact dict) into dst; -1 declines. */
static int struct_from_py(const Layout *layout, PyObject *value, unsigned char *dst) {
    int is_dict = PyDict_CheckExact(value);
    if (!is_dict && (layout->cls == NULL || (PyObject *)Py_TYPE(value) != layout->cls)) {
        return -1;
    }
    /* A class with its own attribute look-up runs code per read: the Python path reads it (once). */
    if (!is_dict && (getattrofunc)PyType_GetSlot(Py_TYPE(value), Py_tp_getattro) != PyObject_GenericGetAttr) {
        return -1;
    }
    memset(dst, 0, (size_t)layout->size);
    for (Py_ssize_t i = 0; i < layout->nfields; i++) {
        const Field *f = &layout->fields[i];
        PyObject *item;
        if (is_dict) {
            item = PyDict_GetItemWithError(value, f->name); /* borrowed */
            Py_XINCREF(item);
        } else {
            item = PyObject_GetAttr(value, f->name);
        }
        if (item == NULL) {
            return -1;
        }
        int r = field_from_py(f, item, dst + f->offset);
        Py_DECREF(item);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *struct_to_py(const Layout *layout, const unsigned char *src);

static PyObject *field_to_py(const Field *f, const unsigned char *src) {
    if (f->count == 1) {
        return f->nested ? struct_to_py(f->nested, src) : scalar_to_py(f->code, src);
    }
    PyObject *list = PyList_New(f->count);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t k = 0; k < f->count; k++) {
        const unsigned char *at = src + k * f->stride;
        PyObject *x = f->nested ? struct_to_py(f->nested, at) : scalar_to_py(f->code, at);
        if (x == NULL || PyList_SetItem(list, k, x) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

/* A new object of the struct's class (ctor(**fields)), as the Python path's _from_struct makes. */
static PyObject *struct_to_py(const Layout *layout, const unsigned char *src) {
    PyObject *kwargs = PyDict_New();
    if (kwargs == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < layout->nfields; i++) {
        const Field *f = &layout->fields[i];
        PyObject *x = field_to_py(f, src + f->offset);
        if (x == NULL || PyDict_SetItem(kwargs, f->name, x) < 0) {
            Py_XDECREF(x);
            Py_DECREF(kwargs);
            return NULL;
        }
        Py_DECREF(x);
    }
    PyObject *empty = PyTuple_New(0);
    PyObject *made = empty == NULL ? NULL : PyObject_Call(layout->ctor, empty, kwargs);
    Py_XDECREF(empty);
    Py_DECREF(kwargs);
    return made;
}

/* After a MutRef call: what _copy_back does (a fresh object, then each field set on the target). */
static int struct_copy_back(const Layout *layout, PyObject *target, const unsigned char *src) {
    PyObject *fresh = struct_to_py(layout, src);
    if (fresh == NULL) {
        return -1;
    }
    int is_dict = PyDict_Check(target);
    for (Py_ssize_t i = 0; i < layout->nfields; i++) {
        PyObject *name = layout->fields[i].name;
        PyObject *x = PyObject_GetAttr(fresh, name);
        int r = x == NULL ? -1 : is_dict ? PyDict_SetItem(target, name, x) : PyObject_SetAttr(target, name, x);
        Py_XDECREF(x);
        if (r < 0) {
            Py_DECREF(fresh);
            return -1;
        }
    }
    Py_DECREF(fresh);
    return 0;
}

/* ---- the gate ------------------------------------------------------------------------------- */

/* The C side of a CallGate: calls enter with an atomic increment, then check open; close()
 * clears open, then (in Python) waits for inflight to drain.  Sequentially consistent, so a call
 * that saw the gate open is counted before close() reads the count. */
typedef struct Method Method;

/* An engine call in progress through a gate, on the caller's C stack: for CallGate's check
 * that a release does not come from inside a call through the gate it would wait for (a
 * signal handler run during the call).  Linked and unlinked with the GIL held only. */
typedef struct Frame {
    struct Frame *prev, *next;
    PyThreadState *thread; /* who makes the call */
    Method *method;
} Frame;

typedef struct {
    PyObject_HEAD
    atomic_int open;
    atomic_long inflight;
    Frame *frames; /* the calls inside, the latest first */
} Gate;
/* The module's types (one interpreter: the module is not meant for sub-interpreters). */
static PyTypeObject *Gate_type;
static PyTypeObject *Function_type;

static PyObject *Gate_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    if (PyTuple_Size(args) != 0 || (kwargs != NULL && PyDict_Size(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Gate() takes no arguments");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Gate *self = (Gate *)alloc(type, 0);
    if (self != NULL) {
        atomic_init(&self->open, 1);
        atomic_init(&self->inflight, 0);
        self->frames = NULL;
    }
    return (PyObject *)self;
}

static void Gate_dealloc(PyObject *self) {
    PyTypeObject *type = Py_TYPE(self);
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

static PyObject *Gate_close(PyObject *self, PyObject *unused) {
    (void)unused;
    atomic_store(&((Gate *)self)->open, 0);
    Py_RETURN_NONE;
}

static PyObject *Gate_inside(PyObject *self, PyObject *unused);

static PyObject *Gate_get_open(PyObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(atomic_load(&((Gate *)self)->open));
}

static PyObject *Gate_get_inflight(PyObject *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(atomic_load(&((Gate *)self)->inflight));
}

static PyMethodDef Gate_methods[] = {
    {"close", Gate_close, METH_NOARGS, "Refuse calls from now on (the caller then waits for inflight to be 0)."},
    {"inside", Gate_inside, METH_NOARGS,
     "(name, owner) of the innermost engine call through this gate on this thread, or None."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Gate_getset[] = {
    {"is_open", Gate_get_open, NULL, "Whether calls are let through.", NULL},
    {"inflight", Gate_get_inflight, NULL, "Engine calls inside the library now.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Gate_slots[] = {
    {Py_tp_new, Gate_new},
    {Py_tp_dealloc, Gate_dealloc},
    {Py_tp_methods, Gate_methods},
    {Py_tp_getset, Gate_getset},
    {Py_tp_doc, "The atomic side of a CallGate, for compiled calls."},
    {0, NULL},
};

static PyType_Spec Gate_spec = {
    "plugin_host.loading._callengine.Gate", sizeof(Gate), 0, Py_TPFLAGS_DEFAULT, Gate_slots,
};

/* ---- compiled methods ----------------------------------------------------------------------- */

typedef struct {
    int kind;
    int code;            /* scalar code: of the value, an array's item, an Out's item */
    int itemsize;        /* arrays */
    char formats[16];    /* arrays: the accepted buffer format characters */
    char classes[3];     /* by-value structs: "I"/"S" per eightbyte */
    Py_ssize_t soffset;  /* structs: where in the stack buffer */
    Layout *layout;
} Param;

struct Method {
    PyObject_HEAD
    engine_vectorcall vectorcall; /* what a call of a Function runs */
    PyObject *weaklist;
    void *fn;
    void *instance;
    void (*free_fn)(void *);
    Gate *gate;
    PyObject *fallback; /* called with the same arguments for whatever the engine does not do */
    PyObject *name;     /* the method's name, for errors and inside() */
    PyObject *owner;    /* what inside() names, and what builds the errors after a call; NULL: self */
    PyObject *doc;
    PyMethodDef def;
    int flags;
    Py_ssize_t nargs; /* Python-level arguments */
    int nparams;
    int nouts;
    int post; /* Out values or MutRef copies to do after the call */
    int how;  /* RC_*: the result's registers */
    int result;
    int rcode;
    char rclasses[3];
    int sret;
    Py_ssize_t roffset;
    Layout *rlayout;
    Param params[ENGINE_MAX_PARAMS];
};

typedef struct { uint64_t a, b; } PairII;
typedef struct { double a, b; } PairSS;
typedef struct { uint64_t a; double b; } PairIS;
typedef struct { double a; uint64_t b; } PairSI;

#if ENGINE_INT_REGS == 6
#define INT_DECL uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t
#define INT_ARGS(r) r[0], r[1], r[2], r[3], r[4], r[5]
#else
#define INT_DECL uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t, uint64_t
#define INT_ARGS(r) r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
#endif
#define FP_DECL double, double, double, double, double, double, double, double
#define FP_ARGS(r) r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]

typedef void (*call_void)(INT_DECL, FP_DECL);
typedef uint64_t (*call_int)(INT_DECL, FP_DECL);
typedef double (*call_fp)(INT_DECL, FP_DECL);
typedef PairII (*call_ii)(INT_DECL, FP_DECL);
typedef PairSS (*call_ss)(INT_DECL, FP_DECL);
typedef PairIS (*call_is)(INT_DECL, FP_DECL);
typedef PairSI (*call_si)(INT_DECL, FP_DECL);

/* How the result comes back (RC_*): which register(s) to read. */
enum { RC_VOID, RC_INT, RC_FP, RC_II, RC_SS, RC_IS, RC_SI };

typedef struct {
    uint64_t i[2];
    double f[2];
} Returned;

static void do_call(int how, void *fn, const uint64_t *ir, const double *fr, Returned *out) {
    switch (how) {
    case RC_VOID:
        ((call_void)fn)(INT_ARGS(ir), FP_ARGS(fr));
        break;
    case RC_INT:
        out->i[0] = ((call_int)fn)(INT_ARGS(ir), FP_ARGS(fr));
        break;
    case RC_FP:
        out->f[0] = ((call_fp)fn)(INT_ARGS(ir), FP_ARGS(fr));
        break;
    case RC_II: {
        PairII p = ((call_ii)fn)(INT_ARGS(ir), FP_ARGS(fr));
        out->i[0] = p.a;
        out->i[1] = p.b;
        break;
    }
    case RC_SS: {
        PairSS p = ((call_ss)fn)(INT_ARGS(ir), FP_ARGS(fr));
        out->f[0] = p.a;
        out->f[1] = p.b;
        break;
    }
    case RC_IS: {
        PairIS p = ((call_is)fn)(INT_ARGS(ir), FP_ARGS(fr));
        out->i[0] = p.a;
        out->f[0] = p.b;
        break;
    }
    case RC_SI: {
        PairSI p = ((call_si)fn)(INT_ARGS(ir), FP_ARGS(fr));
        out->f[0] = p.a;
        out->i[0] = p.b;
        break;
    }
    }
}

static int result_how(const Method *m) {
    switch (m->result) {
    case R_VOID:
        return RC_VOID;
    case R_SCALAR:
        return (m->rcode == S_F32 || m->rcode == S_F64) ? RC_FP : RC_INT;
    case R_OWNEDSTR:
    case R_STATUS:
        return RC_INT;
    case R_OWNEDBYTES:
        return RC_II;
    case R_STRUCT:
        if (m->sret) {
            return RC_INT;
        }
        if (m->rclasses[1] == 0) {
            return m->rclasses[0] == 'S' ? RC_FP : RC_INT;
        }
        if (m->rclasses[0] == 'I') {
            return m->rclasses[1] == 'I' ? RC_II : RC_IS;
        }
        return m->rclasses[1] == 'I' ? RC_SI : RC_SS;
    }
    return RC_VOID;
}

/* The whole call, handed to the pure-Python path: it converts, or raises the typed error. */
static PyObject *delegate(Method *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_Size(kwnames);
    PyObject *tuple = PyTuple_New(nargs);
    if (tuple == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SetItem(tuple, i, args[i]);
    }
    PyObject *kwargs = NULL;
    if (nkw > 0) {
        kwargs = PyDict_New();
        if (kwargs == NULL) {
            Py_DECREF(tuple);
            return NULL;
        }
        for (Py_ssize_t k = 0; k < nkw; k++) {
            if (PyDict_SetItem(kwargs, PyTuple_GetItem(kwnames, k), args[nargs + k]) < 0) {
                Py_DECREF(kwargs);
                Py_DECREF(tuple);
                return NULL;
            }
        }
    }
    PyObject *r = PyObject_Call(m->fallback, tuple, kwargs);
    Py_DECREF(tuple);
    Py_XDECREF(kwargs);
    return r;
}

/* owner.<helper>(name, *extra) -> an exception object, raised. */
static void raise_built(Method *m, const char *helper, PyObject *extra1, PyObject *extra2) {
    PyObject *owner = m->owner != NULL ? m->owner : (PyObject *)m;
    PyObject *exc = extra1 == NULL ? PyObject_CallMethod(owner, helper, "O", m->name)
                                   : PyObject_CallMethod(owner, helper, "OOO", m->name, extra1, extra2);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

static PyObject *method_fastcall(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames) {
    Method *m = (Method *)self;
    if (m->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "compiled call without its fallback");
        return NULL;
    }
    if (kwnames != NULL || nargs != m->nargs || m->fn == NULL) {
        return delegate(m, args, nargs, kwnames);
    }
    uint64_t ir[ENGINE_INT_REGS] = {0};
    double fr[ENGINE_FP_REGS] = {0};
    int ni = 0, nf = 0;
    Py_buffer views[ENGINE_MAX_PARAMS];
    int nviews = 0;
    uint64_t outs[ENGINE_MAX_PARAMS];
    if (m->nouts) {
        memset(outs, 0, sizeof(uint64_t) * (size_t)m->nouts); /* what the plugin leaves unwritten reads 0 */
    }
    _Alignas(16) unsigned char sbuf[ENGINE_STRUCT_BYTES];
    char strings[ENGINE_STRING_BYTES]; /* copies of str arguments for a writable char * (see P_CHARP) */
    size_t strings_used = 0;
    char *error = NULL;

    if (m->sret) {
        ir[ni++] = (uint64_t)(uintptr_t)(sbuf + m->roffset);
    }
    if (m->flags & F_SELF) {
        ir[ni++] = (uint64_t)(uintptr_t)m->instance;
    }
    Py_ssize_t a = 0; /* the next Python argument */
    int o = 0;        /* the next Out slot */
    for (int i = 0; i < m->nparams; i++) {
        const Param *p = &m->params[i];
        switch (p->kind) {
        case P_SCALAR: {
            unsigned char tmp[8];
            if (scalar_from_py(p->code, args[a++], tmp) < 0) {
                goto decline;
            }
            uint64_t w = scalar_word(p->code, tmp);
            if (p->code == S_F32 || p->code == S_F64) {
                memcpy(&fr[nf++], &w, 8);
            } else {
                ir[ni++] = w;
            }
            break;
        }
        case P_CSTR:
        case P_CHARP: {
            PyObject *v = args[a++];
            const char *s;
            if (PyUnicode_Check(v)) {
                Py_ssize_t len;
                s = PyUnicode_AsUTF8AndSize(v, &len); /* cached in the str: no copy per call */
                if (s == NULL) {
                    goto decline; /* a lone surrogate: the Python path raises */
                }
                if (p->kind == P_CHARP) {
                    /* A module function's char * may be written through (cffi drops the const, so
                     * "const char *" looks the same): the str's own bytes must not be, so the function
                     * gets a copy, as the Python path's encode() makes one.  A CStr is const by contract. */
                    if ((size_t)len >= sizeof strings - strings_used) {
                        goto decline; /* too long for the call's buffer: the Python path copies it */
                    }
                    memcpy(strings + strings_used, s, (size_t)len + 1);
                    s = strings + strings_used;
                    strings_used += (size_t)len + 1;
                }
            } else if (p->kind == P_CHARP && PyBytes_Check(v)) {
                s = PyBytes_AsString(v);
            } else {
                goto decline;
            }
            ir[ni++] = (uint64_t)(uintptr_t)s;
            break;
        }
        case P_BUFFER:
        case P_MUTBUFFER: {
            int flags = p->kind == P_MUTBUFFER ? PyBUF_WRITABLE : PyBUF_SIMPLE;
            if (PyObject_GetBuffer(args[a++], &views[nviews], flags) < 0) {
                goto decline;
            }
            Py_buffer *view = &views[nviews++];
            ir[ni++] = (uint64_t)(uintptr_t)view->buf;
            ir[ni++] = (uint64_t)view->len;
            break;
        }
        case P_ARRAY:
        case P_MUTARRAY: {
            int flags = PyBUF_FORMAT | PyBUF_C_CONTIGUOUS | (p->kind == P_MUTARRAY ? PyBUF_WRITABLE : 0);
            if (PyObject_GetBuffer(args[a++], &views[nviews], flags) < 0) {
                goto decline;
            }
            Py_buffer *view = &views[nviews++];
            const char *fmt = view->format == NULL ? "B" : view->format;
            if (*fmt == '@' || *fmt == '=' || *fmt == (PY_LITTLE_ENDIAN ? '<' : '>')) {
                fmt++; /* one prefix, as the Python path allows */
            }
            if (fmt[0] == 0 || fmt[1] != 0 || strchr(p->formats, fmt[0]) == NULL || view->itemsize != p->itemsize) {
                goto decline;
            }
            ir[ni++] = (uint64_t)(uintptr_t)view->buf;
            ir[ni++] = (uint64_t)(view->len / p->itemsize);
            break;
        }
        case P_OUT:
            ir[ni++] = (uint64_t)(uintptr_t)&outs[o++];
            break;
        case P_STRUCT: {
            unsigned char *at = sbuf + p->soffset;
            if (struct_from_py(p->layout, args[a++], at) < 0) {
                goto decline;
            }
            for (int k = 0; k < 2 && p->classes[k]; k++) {
                uint64_t w = 0;
                Py_ssize_t left = p->layout->size - 8 * k;
                memcpy(&w, at + 8 * k, (size_t)(left < 8 ? left : 8));
                if (p->classes[k] == 'S') {
                    memcpy(&fr[nf++], &w, 8);
                } else {
                    ir[ni++] = w;
                }
            }
            break;
        }
        case P_REF:
        case P_MUTREF: {
            unsigned char *at = sbuf + p->soffset;
            if (struct_from_py(p->layout, args[a++], at) < 0) {
                goto decline;
            }
            ir[ni++] = (uint64_t)(uintptr_t)at;
            break;
        }
        case P_OUTSTRUCT: {
            unsigned char *at = sbuf + p->soffset;
            memset(at, 0, (size_t)p->layout->size);
            ir[ni++] = (uint64_t)(uintptr_t)at;
            o++; /* its place among the out values */
            break;
        }
        }
    }
    if (m->result == R_STATUS) {
        ir[ni++] = (uint64_t)(uintptr_t)&error;
    }

    /* Enter the gate: counted first, then the open check (a release clears open, then waits). */
    Gate *gate = m->gate;
    atomic_fetch_add(&gate->inflight, 1);
    if (!atomic_load(&gate->open)) {
        atomic_fetch_sub(&gate->inflight, 1);
        for (int v = 0; v < nviews; v++) {
            PyBuffer_Release(&views[v]);
        }
        return delegate(m, args, nargs, kwnames); /* it raises PluginUnloadedError, as it would */
    }
    Frame frame = {NULL, gate->frames, PyThreadState_Get(), m};
    if (gate->frames != NULL) {
        gate->frames->prev = &frame;
    }
    gate->frames = &frame;

    Returned ret = {{0, 0}, {0, 0}};
    int how = m->how;
    if (m->flags & F_RELEASE_GIL) {
        PyThreadState *ts = PyEval_SaveThread();
        do_call(how, m->fn, ir, fr, &ret);
        PyEval_RestoreThread(ts);
    } else {
        do_call(how, m->fn, ir, fr, &ret);
    }

    /* The result, inside the gate: what the plugin allocated is copied and released now. */
    PyObject *value = NULL;
    int failed = 0;
    switch (m->result) {
    case R_VOID:
        value = Py_None;
        Py_INCREF(value);
        break;
    case R_SCALAR:
        if (m->rcode == S_F32 || m->rcode == S_F64) {
            uint64_t w;
            memcpy(&w, &ret.f[0], 8);
            value = scalar_to_py(m->rcode, &w);
        } else {
            value = scalar_to_py(m->rcode, &ret.i[0]);
        }
        failed = value == NULL;
        break;
    case R_OWNEDSTR: {
        char *s = (char *)(uintptr_t)ret.i[0];
        if (s == NULL) {
            raise_built(m, "_null_result", NULL, NULL);
            failed = 1;
            break;
        }
        value = PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
        m->free_fn(s);
        failed = value == NULL;
        break;
    }
    case R_OWNEDBYTES: {
        char *data = (char *)(uintptr_t)ret.i[0];
        size_t len = (size_t)ret.i[1];
        if (data == NULL) {
            if (len) {
                raise_built(m, "_null_result", NULL, NULL);
                failed = 1;
            } else {
                value = PyBytes_FromStringAndSize("", 0);
                failed = value == NULL;
            }
            break;
        }
        value = len > (size_t)PY_SSIZE_T_MAX ? PyErr_NoMemory() : PyBytes_FromStringAndSize(data, (Py_ssize_t)len);
        m->free_fn(data);
        failed = value == NULL;
        break;
    }
    case R_STATUS: {
        int32_t code = (int32_t)(uint32_t)ret.i[0];
        if (code != 0) {
            PyObject *message = error == NULL ? PyUnicode_FromString("")
                                              : PyUnicode_DecodeUTF8(error, (Py_ssize_t)strlen(error), "replace");
            if (error != NULL) {
                m->free_fn(error);
            }
            PyObject *pycode = message == NULL ? NULL : PyLong_FromLong(code);
            if (pycode != NULL) {
                raise_built(m, "_method_error", pycode, message);
            }
            Py_XDECREF(pycode);
            Py_XDECREF(message);
            failed = 1;
            break;
        }
        if (error != NULL) {
            m->free_fn(error);
        }
        value = Py_None;
        Py_INCREF(value);
        break;
    }
    case R_STRUCT: {
        unsigned char *at = sbuf + m->roffset;
        if (!m->sret) {
            int ki = 0, kf = 0;
            for (int k = 0; k < 2 && m->rclasses[k]; k++) {
                uint64_t w;
                if (m->rclasses[k] == 'S') {
                    memcpy(&w, &ret.f[kf++], 8);
                } else {
                    w = ret.i[ki++];
                }
                Py_ssize_t left = m->rlayout->size - 8 * k;
                memcpy(at + 8 * k, &w, (size_t)(left < 8 ? left : 8));
            }
        }
        value = struct_to_py(m->rlayout, at);
        failed = value == NULL;
        break;
    }
    }
    /* Signal handlers run here, inside the call, as they do in the Python path: one that
     * releases the library is refused (CallGate sees this frame) rather than waiting for us. */
    if (!failed && PyErr_CheckSignals() < 0) {
        Py_CLEAR(value);
        failed = 1;
    }
    if (frame.prev != NULL) {
        frame.prev->next = frame.next;
    } else {
        gate->frames = frame.next;
    }
    if (frame.next != NULL) {
        frame.next->prev = frame.prev;
    }
    atomic_fetch_sub(&gate->inflight, 1);

    if (!m->post) {
        for (int v = 0; v < nviews; v++) {
            PyBuffer_Release(&views[v]);
        }
        return failed ? NULL : value;
    }
    /* After the gate: copy MutRef writes back, add the Out values. */
    a = 0;
    o = 0;
    PyObject *outs_tuple = NULL;
    if (!failed && m->nouts > 0) {
        outs_tuple = PyTuple_New(m->nouts);
        failed = outs_tuple == NULL;
    }
    for (int i = 0; i < m->nparams && !failed; i++) {
        const Param *p = &m->params[i];
        if (p->kind == P_OUT || p->kind == P_OUTSTRUCT) {
            PyObject *x = p->kind == P_OUT ? scalar_to_py(p->code, &outs[o])
                                           : struct_to_py(p->layout, sbuf + p->soffset);
            if (x == NULL) {
                failed = 1;
                break;
            }
            PyTuple_SetItem(outs_tuple, o++, x);
            continue;
        }
        if (p->kind == P_MUTREF && struct_copy_back(p->layout, args[a], sbuf + p->soffset) < 0) {
            failed = 1;
        }
        a++;
    }
    for (int v = 0; v < nviews; v++) {
        PyBuffer_Release(&views[v]);
    }
    if (failed) {
        Py_XDECREF(value);
        Py_XDECREF(outs_tuple);
        return NULL;
    }
    if (outs_tuple == NULL) {
        return value;
    }
    if (m->result == R_VOID || m->result == R_STATUS) {
        Py_DECREF(value);
        if (m->nouts == 1) {
            PyObject *only = PyTuple_GetItem(outs_tuple, 0);
            Py_INCREF(only);
            Py_DECREF(outs_tuple);
            return only;
        }
        return outs_tuple;
    }
    PyObject *all = PyTuple_New(1 + m->nouts);
    if (all == NULL) {
        Py_DECREF(value);
        Py_DECREF(outs_tuple);
        return NULL;
    }
    PyTuple_SetItem(all, 0, value);
    for (int k = 0; k < m->nouts; k++) {
        PyObject *x = PyTuple_GetItem(outs_tuple, k);
        Py_INCREF(x);
        PyTuple_SetItem(all, k + 1, x);
    }
    Py_DECREF(outs_tuple);
    return all;

decline:
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception)) {
        /* KeyboardInterrupt from a signal handler, SystemExit...: raised, as the Python path would */
        for (int v = 0; v < nviews; v++) {
            PyBuffer_Release(&views[v]);
        }
        return NULL;
    }
    PyErr_Clear();
    for (int v = 0; v < nviews; v++) {
        PyBuffer_Release(&views[v]);
    }
    return delegate(m, args, nargs, kwnames);
}

static PyObject *function_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    return method_fastcall(self, args, (Py_ssize_t)(nargsf & ~ENGINE_ARGUMENTS_OFFSET), kwnames);
}

static PyObject *Gate_inside(PyObject *self, PyObject *unused) {
    (void)unused;
    PyThreadState *thread = PyThreadState_Get();
    for (Frame *f = ((Gate *)self)->frames; f != NULL; f = f->next) {
        if (f->thread == thread) {
            PyObject *owner = f->method->owner != NULL ? f->method->owner : (PyObject *)f->method;
            return Py_BuildValue("(OO)", f->method->name, owner);
        }
    }
    Py_RETURN_NONE;
}

/* ---- building a method ---------------------------------------------------------------------- */

static int parse_classes(PyObject *text, char out[3]) {
    memset(out, 0, 3);
    if (text == NULL || !PyUnicode_Check(text)) {
        return -1;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL || n > 2) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] != 'I' && s[i] != 'S' && !(s[i] == 'M' && n == 1)) {
            return -1;
        }
        out[i] = s[i];
    }
    return 0;
}

static Py_ssize_t reserve_struct(Py_ssize_t *used, Py_ssize_t size) {
    Py_ssize_t at = (*used + 15) & ~(Py_ssize_t)15;
    if (at + size > ENGINE_STRUCT_BYTES) {
        return -1;
    }
    *used = at + size;
    return at;
}

/* The plan: ((param, ...), result, flags); a param is (kind, code, itemsize, formats, struct|None,
 * classes), the result (kind, code, struct|None, classes).  Every count is checked here. */
static int method_plan(Method *m, PyObject *plan) {
    if (!PyTuple_Check(plan) || PyTuple_Size(plan) != 3) {
        PyErr_SetString(PyExc_ValueError, "bad plan");
        return -1;
    }
    PyObject *params = PyTuple_GetItem(plan, 0);
    PyObject *result = PyTuple_GetItem(plan, 1);
    m->flags = (int)tuple_ssize(plan, 2);
    if (PyErr_Occurred() || !PyTuple_Check(params) || !PyTuple_Check(result) || PyTuple_Size(result) != 4 ||
        PyTuple_Size(params) > ENGINE_MAX_PARAMS) {
        PyErr_SetString(PyExc_ValueError, "bad plan");
        return -1;
    }
    int ni = (m->flags & F_SELF) ? 1 : 0, nf = 0;
    Py_ssize_t used = 0;
    m->result = (int)tuple_ssize(result, 0);
    m->rcode = (int)tuple_ssize(result, 1);
    if (PyErr_Occurred() || m->result < R_VOID || m->result > R_LAST) {
        PyErr_SetString(PyExc_ValueError, "bad result plan");
        return -1;
    }
    if (m->result == R_SCALAR && (m->rcode < S_I8 || m->rcode > S_LAST)) {
        PyErr_SetString(PyExc_ValueError, "bad result scalar");
        return -1;
    }
    if (m->result == R_STRUCT) {
        m->rlayout = layout_parse(PyTuple_GetItem(result, 2), 0);
        if (m->rlayout == NULL) {
            return -1;
        }
        if (parse_classes(PyTuple_GetItem(result, 3), m->rclasses) < 0 || m->rclasses[0] == 0 ||
            (m->rclasses[0] != 'M' && (m->rlayout->size + 7) / 8 != (m->rclasses[1] ? 2 : 1)) ||
            !ENGINE_STRUCTS_BY_VALUE) {
            PyErr_SetString(PyExc_ValueError, "bad result struct classes");
            return -1;
        }
        m->sret = m->rclasses[0] == 'M';
        m->roffset = reserve_struct(&used, m->rlayout->size);
        if (m->roffset < 0) {
            PyErr_SetString(PyExc_ValueError, "structs too large for the engine");
            return -1;
        }
        ni += m->sret;
    }
    m->nparams = (int)PyTuple_Size(params);
    for (int i = 0; i < m->nparams; i++) {
        PyObject *pp = PyTuple_GetItem(params, i);
        Param *p = &m->params[i];
        if (pp == NULL || !PyTuple_Check(pp) || PyTuple_Size(pp) != 6) {
            PyErr_SetString(PyExc_ValueError, "bad parameter plan");
            return -1;
        }
        p->kind = (int)tuple_ssize(pp, 0);
        p->code = (int)tuple_ssize(pp, 1);
        p->itemsize = (int)tuple_ssize(pp, 2);
        PyObject *formats = PyTuple_GetItem(pp, 3);
        if (PyErr_Occurred() || p->kind < P_SCALAR || p->kind > P_LAST || !PyUnicode_Check(formats)) {
            PyErr_SetString(PyExc_ValueError, "bad parameter plan");
            return -1;
        }
        Py_ssize_t flen;
        const char *f = PyUnicode_AsUTF8AndSize(formats, &flen);
        if (f == NULL || flen >= (Py_ssize_t)sizeof p->formats) {
            PyErr_SetString(PyExc_ValueError, "bad parameter formats");
            return -1;
        }
        memcpy(p->formats, f, (size_t)flen + 1);
        int scalar_ok = p->code >= S_I8 && p->code <= S_LAST;
        switch (p->kind) {
        case P_SCALAR:
            if (!scalar_ok) {
                PyErr_SetString(PyExc_ValueError, "bad scalar");
                return -1;
            }
            if (p->code == S_F32 || p->code == S_F64) {
                nf++;
            } else {
                ni++;
            }
            m->nargs++;
            break;
        case P_CSTR:
        case P_CHARP:
            ni++;
            m->nargs++;
            break;
        case P_BUFFER:
        case P_MUTBUFFER:
            ni += 2;
            m->nargs++;
            break;
        case P_ARRAY:
        case P_MUTARRAY:
            if (!scalar_ok || p->itemsize != scalar_size[p->code] || flen == 0) {
                PyErr_SetString(PyExc_ValueError, "bad array item");
                return -1;
            }
            ni += 2;
            m->nargs++;
            break;
        case P_OUT:
            if (!scalar_ok) {
                PyErr_SetString(PyExc_ValueError, "bad out item");
                return -1;
            }
            ni++;
            m->nouts++;
            break;
        case P_STRUCT:
        case P_REF:
        case P_MUTREF:
        case P_OUTSTRUCT:
            p->layout = layout_parse(PyTuple_GetItem(pp, 4), 0);
            if (p->layout == NULL) {
                return -1;
            }
            p->soffset = reserve_struct(&used, p->layout->size);
            if (p->soffset < 0) {
                PyErr_SetString(PyExc_ValueError, "structs too large for the engine");
                return -1;
            }
            if (p->kind == P_STRUCT) {
                if (!ENGINE_STRUCTS_BY_VALUE || parse_classes(PyTuple_GetItem(pp, 5), p->classes) < 0 ||
                    p->classes[0] == 0 || p->classes[0] == 'M' ||
                    (p->layout->size + 7) / 8 != (p->classes[1] ? 2 : 1)) {
                    PyErr_SetString(PyExc_ValueError, "bad struct classes");
                    return -1;
                }
                for (int k = 0; k < 2 && p->classes[k]; k++) {
                    if (p->classes[k] == 'S') {
                        nf++;
                    } else {
                        ni++;
                    }
                }
            } else {
                ni++;
            }
            if (p->kind == P_OUTSTRUCT) {
                m->nouts++;
            } else {
                m->nargs++;
            }
            break;
        }
    }
    if (m->result == R_STATUS) {
        ni++;
    }
    if (ni > ENGINE_INT_REGS || nf > ENGINE_FP_REGS) {
        PyErr_SetString(PyExc_ValueError, "the arguments do not fit in registers");
        return -1;
    }
    m->how = result_how(m);
    for (int i = 0; i < m->nparams; i++) {
        int kind = m->params[i].kind;
        m->post |= kind == P_OUT || kind == P_OUTSTRUCT || kind == P_MUTREF;
    }
    return 0;
}

static PyObject *Method_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"plan", "address", "gate", "fallback", "name", "instance", "free", "owner", "doc", NULL};
    PyObject *plan, *gate, *fallback, *name, *owner = Py_None, *doc = Py_None;
    unsigned long long address, instance = 0, free_fn = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OKOOU|KKOO", keywords, &plan, &address, &gate, &fallback, &name,
                                     &instance, &free_fn, &owner, &doc)) {
        return NULL;
    }
    if (!PyObject_TypeCheck(gate, Gate_type)) {
        PyErr_SetString(PyExc_TypeError, "gate must be a Gate");
        return NULL;
    }
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "fallback must be callable");
        return NULL;
    }
    if (doc != Py_None && !PyUnicode_Check(doc)) {
        PyErr_SetString(PyExc_TypeError, "doc must be a str or None");
        return NULL;
    }
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    Method *m = (Method *)alloc(type, 0);
    if (m == NULL) {
        return NULL;
    }
    m->fn = (void *)(uintptr_t)address;
    m->instance = (void *)(uintptr_t)instance;
    m->free_fn = (void (*)(void *))(uintptr_t)free_fn;
    Py_INCREF(gate);
    m->gate = (Gate *)gate;
    Py_INCREF(fallback);
    m->fallback = fallback;
    Py_INCREF(name);
    m->name = name;
    if (owner != Py_None) {
        Py_INCREF(owner);
        m->owner = owner;
    }
    if (doc != Py_None) {
        Py_INCREF(doc);
        m->doc = doc;
    }
    if (method_plan(m, plan) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (type == Function_type) {
        m->vectorcall = function_vectorcall;
    }
    if ((m->result == R_OWNEDSTR || m->result == R_OWNEDBYTES || m->result == R_STATUS) && m->free_fn == NULL) {
        Py_DECREF(m);
        PyErr_SetString(PyExc_ValueError, "an owned result needs the plugin's free function");
        return NULL;
    }
    m->def.ml_name = PyUnicode_AsUTF8AndSize(m->name, NULL);
    m->def.ml_meth = (PyCFunction)(void (*)(void))method_fastcall;
    m->def.ml_flags = METH_FASTCALL | METH_KEYWORDS;
    m->def.ml_doc = m->doc == NULL ? NULL : PyUnicode_AsUTF8AndSize(m->doc, NULL);
    if (m->def.ml_name == NULL || (m->doc != NULL && m->def.ml_doc == NULL)) {
        Py_DECREF(m);
        return NULL;
    }
    return (PyObject *)m;
}

static int Method_traverse(PyObject *self, visitproc visit, void *arg) {
    Method *m = (Method *)self;
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(m->gate);
    Py_VISIT(m->fallback);
    Py_VISIT(m->owner);
    int r = layout_visit(m->rlayout, visit, arg);
    for (int i = 0; r == 0 && i < m->nparams; i++) {
        r = layout_visit(m->params[i].layout, visit, arg);
    }
    return r;
}

static int Method_clear(PyObject *self) {
    Method *m = (Method *)self;
    m->fn = NULL; /* from here on every call goes to the fallback (or fails without one) */
    Py_CLEAR(m->fallback);
    Py_CLEAR(m->owner);
    return 0;
}

static void Method_dealloc(PyObject *self) {
    Method *m = (Method *)self;
    PyTypeObject *type = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (m->weaklist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    Py_CLEAR(m->gate);
    Py_CLEAR(m->fallback);
    Py_CLEAR(m->owner);
    Py_CLEAR(m->name);
    Py_CLEAR(m->doc);
    layout_free(m->rlayout);
    for (int i = 0; i < m->nparams; i++) {
        layout_free(m->params[i].layout);
    }
    freefunc tp_free = (freefunc)PyType_GetSlot(type, Py_tp_free);
    tp_free(self);
    Py_DECREF(type);
}

/* Calling the object itself (a compiled ModuleFunction): the same call, from a tuple. */
static PyObject *Method_call(PyObject *self, PyObject *args, PyObject *kwargs) {
    Method *m = (Method *)self;
    Py_ssize_t n = PyTuple_Size(args);
    if (m->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "compiled call without its fallback");
        return NULL;
    }
    if ((kwargs != NULL && PyDict_Size(kwargs) != 0) || n > ENGINE_MAX_PARAMS) {
        return PyObject_Call(m->fallback, args, kwargs);
    }
    PyObject *items[ENGINE_MAX_PARAMS];
    for (Py_ssize_t i = 0; i < n; i++) {
        items[i] = PyTuple_GetItem(args, i); /* borrowed: args lives for the call */
    }
    return method_fastcall(self, items, n, NULL);
}

/* A builtin function calling this method (what a proxy's attribute holds: no Python frame). */
static PyObject *Method_bind(PyObject *self, PyObject *unused) {
    (void)unused;
    Method *m = (Method *)self;
    if (m->fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "compiled call without its fallback");
        return NULL;
    }
    return PyCFunction_NewEx(&m->def, self, NULL);
}

static PyObject *Method_get_name(PyObject *self, void *closure) {
    (void)closure;
    PyObject *name = ((Method *)self)->name;
    Py_INCREF(name);
    return name;
}

static PyObject *Method_get_releases_gil(PyObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong((((Method *)self)->flags & F_RELEASE_GIL) != 0);
}

static PyMethodDef Method_methods[] = {
    {"bind", Method_bind, METH_NOARGS, "A builtin function that makes this call (no Python frame)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Method_getset[] = {
    {"method_name", Method_get_name, NULL, "The method's (or the C function's) name.", NULL},
    {"releases_gil", Method_get_releases_gil, NULL, "Whether the GIL is released around the plugin call.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot Method_slots[] = {
    {Py_tp_new, Method_new},
    {Py_tp_dealloc, Method_dealloc},
    {Py_tp_traverse, Method_traverse},
    {Py_tp_clear, Method_clear},
    {Py_tp_call, Method_call},
    {Py_tp_methods, Method_methods},
    {Py_tp_getset, Method_getset},
    {Py_tp_doc, "One compiled call: Method(plan, address, gate, fallback, name, instance=0, free=0, owner=None, "
                "doc=None)."},
    {0, NULL},
};

static PyType_Spec Method_spec = {
    "plugin_host.loading._callengine.Method",
    sizeof(Method),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    Method_slots,
};

/* ---- Function: a compiled call that is itself the callable -------------------------------------- */

/* A DynamicModule function: called directly (vectorcall, no argument tuple), and for every other
 * attribute, and its repr, the pure-Python ModuleFunction it was made with (its fallback). */

static PyObject *function_getattro(PyObject *self, PyObject *name) {
    PyObject *found = PyObject_GenericGetAttr(self, name);
    Method *m = (Method *)self;
    if (found != NULL || m->fallback == NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    PyErr_Clear();
    return PyObject_GetAttr(m->fallback, name);
}

static PyObject *function_repr(PyObject *self) {
    Method *m = (Method *)self;
    return m->fallback == NULL ? PyUnicode_FromString("<compiled function (cleared)>") : PyObject_Repr(m->fallback);
}

static PyMemberDef Function_members[] = {
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Method, vectorcall), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Method, weaklist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot Function_slots[] = {
    {Py_tp_new, Method_new},
    {Py_tp_dealloc, Method_dealloc},
    {Py_tp_traverse, Method_traverse},
    {Py_tp_clear, Method_clear},
    {Py_tp_call, Method_call},
    {Py_tp_getattro, function_getattro},
    {Py_tp_repr, function_repr},
    {Py_tp_members, Function_members},
    {Py_tp_getset, Method_getset},
    {Py_tp_doc, "A compiled DynamicModule function: Function(plan, address, gate, fallback, name); its other "
                "attributes are the fallback's."},
    {0, NULL},
};

static PyType_Spec Function_spec = {
    "plugin_host.loading._callengine.Function",
    sizeof(Method),
    0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL | Py_TPFLAGS_IMMUTABLETYPE,
    Function_slots,
};

/* ---- the module ----------------------------------------------------------------------------- */

static int add_int(PyObject *module, const char *name, long value) {
    return PyModule_AddIntConstant(module, name, value);
}

/* The interpreter the types below belong to (-1: none yet).  They are process-wide statics, so the
 * module refuses a second interpreter; executed again in its own (a re-import), it reuses them, so
 * gates and functions made before keep passing the type checks. */
static int64_t engine_interpreter = -1;

static int callengine_exec(PyObject *module) {
    int64_t interpreter = PyInterpreterState_GetID(PyInterpreterState_Get());
    if (interpreter < 0) {
        return -1;
    }
    if (engine_interpreter >= 0 && interpreter != engine_interpreter) {
        PyErr_SetString(PyExc_ImportError,
                        "plugin_host.loading._callengine runs in one interpreter per process (its types are "
                        "process-wide); this interpreter uses the pure-Python call path");
        return -1;
    }
    if (Gate_type == NULL) {
        Gate_type = (PyTypeObject *)PyType_FromSpec(&Gate_spec); /* kept for the type checks */
        if (Gate_type == NULL) {
            return -1;
        }
    }
    if (Function_type == NULL) {
        Function_type = (PyTypeObject *)PyType_FromSpec(&Function_spec); /* kept for Method_new's check */
        if (Function_type == NULL) {
            return -1;
        }
    }
    engine_interpreter = interpreter;
    if (PyModule_AddObjectRef(module, "Gate", (PyObject *)Gate_type) < 0 ||
        PyModule_AddObjectRef(module, "Function", (PyObject *)Function_type) < 0) {
        return -1;
    }
    PyObject *method_type = PyType_FromSpec(&Method_spec);
    if (method_type == NULL || PyModule_AddObject(module, "Method", method_type) < 0) {
        Py_XDECREF(method_type);
        return -1;
    }
    struct {
        const char *name;
        long value;
    } constants[] = {
        {"S_I8", S_I8}, {"S_I16", S_I16}, {"S_I32", S_I32}, {"S_I64", S_I64}, {"S_U8", S_U8},
        {"S_U16", S_U16}, {"S_U32", S_U32}, {"S_U64", S_U64}, {"S_BOOL", S_BOOL}, {"S_F32", S_F32},
        {"S_F64", S_F64}, {"P_SCALAR", P_SCALAR}, {"P_CSTR", P_CSTR}, {"P_CHARP", P_CHARP},
        {"P_BUFFER", P_BUFFER}, {"P_MUTBUFFER", P_MUTBUFFER}, {"P_ARRAY", P_ARRAY}, {"P_MUTARRAY", P_MUTARRAY},
        {"P_OUT", P_OUT}, {"P_STRUCT", P_STRUCT}, {"P_REF", P_REF}, {"P_MUTREF", P_MUTREF},
        {"P_OUTSTRUCT", P_OUTSTRUCT},
        {"R_VOID", R_VOID}, {"R_SCALAR", R_SCALAR}, {"R_OWNEDSTR", R_OWNEDSTR}, {"R_OWNEDBYTES", R_OWNEDBYTES},
        {"R_STATUS", R_STATUS}, {"R_STRUCT", R_STRUCT}, {"F_SELF", F_SELF}, {"F_RELEASE_GIL", F_RELEASE_GIL},
        {"INT_REGS", ENGINE_INT_REGS}, {"FP_REGS", ENGINE_FP_REGS}, {"MAX_PARAMS", ENGINE_MAX_PARAMS},
        {"STRUCT_BYTES", ENGINE_STRUCT_BYTES}, {"STRUCTS_BY_VALUE", ENGINE_STRUCTS_BY_VALUE},
        /* Bump when a plan's shape changes: plugin_host.loading._engine refuses another number. */
        {"PLAN_VERSION", 1},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        if (add_int(module, constants[i].name, constants[i].value) < 0) {
            return -1;
        }
    }
    return PyModule_AddStringConstant(module, "ABI", ENGINE_ABI);
}

static PyModuleDef_Slot callengine_slots[] = {
    {Py_mod_exec, callengine_exec},
    {0, NULL},
};

static struct PyModuleDef callengine_module = {
    PyModuleDef_HEAD_INIT,
    "plugin_host.loading._callengine",
    "The compiled call path of proxies and DynamicModule functions (see callengine.c).",
    0,
    NULL,
    callengine_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__callengine(void) { return PyModuleDef_Init(&callengine_module); }
