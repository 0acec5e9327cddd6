/*
 * floor_ext.c: the benchmarks' compiled floor (bench/bench_calls.py builds it).
 *
 * One hand-written CPython function per benchmarked call, each a single
 * crossing with nothing generic in it: the call gate as one atomic flag and
 * an atomic count, the argument conversion (the UTF-8 a str caches, a
 * buffer view, two C ints), a direct call through a typed function pointer,
 * and for greet the copy and free of the owned result.  What no host can beat
 * by much: the compiled call engine is measured against it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

typedef char *(*greet_fn)(void *, const char *);
typedef size_t (*transform_fn)(void *, uint8_t *, size_t);
typedef int (*add_fn)(int, int);

static atomic_int gate_open = 1;
static atomic_long inflight;
static greet_fn greet_call;
static void *greet_self;
static void (*greet_free)(void *);
static transform_fn transform_call;
static void *transform_self;
static add_fn add_call;

static PyObject *setup(PyObject *module, PyObject *args) {
    (void)module;
    unsigned long long g, gs, gf, t, ts, a;
    if (!PyArg_ParseTuple(args, "KKKKKK", &g, &gs, &gf, &t, &ts, &a)) {
        return NULL;
    }
    greet_call = (greet_fn)(uintptr_t)g;
    greet_self = (void *)(uintptr_t)gs;
    greet_free = (void (*)(void *))(uintptr_t)gf;
    transform_call = (transform_fn)(uintptr_t)t;
    transform_self = (void *)(uintptr_t)ts;
    add_call = (add_fn)(uintptr_t)a;
    Py_RETURN_NONE;
}

static int enter(void) {
    atomic_fetch_add(&inflight, 1);
    if (!atomic_load(&gate_open)) {
        atomic_fetch_sub(&inflight, 1);
        PyErr_SetString(PyExc_RuntimeError, "closed");
        return -1;
    }
    return 0;
}

static void leave(void) { atomic_fetch_sub(&inflight, 1); }

static PyObject *greet(PyObject *module, PyObject *name) {
    (void)module;
    const char *utf8 = PyUnicode_AsUTF8AndSize(name, NULL);
    if (utf8 == NULL || enter() < 0) {
        return NULL;
    }
    char *s = greet_call(greet_self, utf8);
    PyObject *r = s == NULL ? NULL : PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
    greet_free(s);
    leave();
    return r;
}

static PyObject *transform(PyObject *module, PyObject *data) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (enter() < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    size_t changed = transform_call(transform_self, view.buf, (size_t)view.len);
    leave();
    PyBuffer_Release(&view);
    return PyLong_FromSize_t(changed);
}

static PyObject *add(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "add takes 2 arguments");
        return NULL;
    }
    long a = PyLong_AsLong(args[0]), b = PyLong_AsLong(args[1]);
    if ((a == -1 || b == -1) && PyErr_Occurred()) {
        return NULL;
    }
    if (a < INT_MIN || a > INT_MAX || b < INT_MIN || b > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "does not fit an int");
        return NULL;
    }
    if (enter() < 0) {
        return NULL;
    }
    int r = add_call((int)a, (int)b);
    leave();
    return PyLong_FromLong(r);
}

static PyMethodDef methods[] = {
    {"setup", setup, METH_VARARGS, "setup(greet, greet_self, greet_free, transform, transform_self, add)"},
    {"greet", greet, METH_O, "The floor of a Greeter proxy call."},
    {"transform", transform, METH_O, "The floor of a Transformer proxy call."},
    {"add", (PyCFunction)(void (*)(void))add, METH_FASTCALL, "The floor of a DynamicModule add call."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_bench_floors", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__bench_floors(void) { return PyModule_Create(&module); }
