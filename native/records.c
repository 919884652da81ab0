/* constrain._native.record_type: classes whose instances the cyclic garbage collector does not
 * track, for the Earley parser's Node (constrain/cfg/earley.py).
 *
 * Why C: nodes are hash-consed and kept for the grammar's lifetime (in the parser's memos,
 * by uid), so a grammar in use holds thousands of them -- and every full collection of
 * Python's cyclic GC walked each one and each dict naming one: 8-17 ms per collection, ~12%
 * of the JSON benchmark's mask time (measured 2026-12-03).  A Python class is always
 * tracked, __slots__ or not (even a subclass of an untracked C type); a type built here
 * without Py_TPFLAGS_HAVE_GC is not, and then the memo dicts and origin tuples holding only
 * nodes and int tuples are untracked by the collector too.
 *
 * Only for objects that can never be part of a reference cycle (a cycle through them would
 * leak): a node refers to older nodes (its origins) and to int tuples and dicts of them,
 * never to itself or to a newer node.  Freeing a long chain of origins would recurse once
 * per link, so past a fixed depth the references are parked in a list and released
 * iteratively.
 *
 * record_type(name, fields, namespace) -> a new mutable heap type with one object slot per
 * name in ``fields`` (AttributeError until set, like __slots__) and the functions,
 * properties and constants of ``namespace`` set on it (except entries named like a field:
 * the member descriptors of a __slots__ class passed as is).  With CONSTRAIN_NO_NATIVE=1 (or no
 * extension) Node is the plain __slots__ class with the same namespace, the reference; the
 * parser tests run either way.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <string.h>

#define MAX_DEPTH 256

static int dealloc_depth = 0;
static PyObject *parked = NULL; /* references whose release was deferred */

static void release(PyObject *o) {
    if (dealloc_depth < MAX_DEPTH || parked == NULL) {
        Py_DECREF(o);
    } else if (PyList_Append(parked, o) == 0) {
        Py_DECREF(o); /* the list holds it now */
    } else {
        PyErr_Clear();
        Py_DECREF(o);
    }
}

static void record_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    Py_ssize_t n = (tp->tp_basicsize - (Py_ssize_t)sizeof(PyObject)) / (Py_ssize_t)sizeof(PyObject *);
    PyObject **fields = (PyObject **)((char *)self + sizeof(PyObject));
    PyObject *held[64];
    for (Py_ssize_t i = 0; i < n; i++) {
        held[i] = fields[i];
        fields[i] = NULL;
    }
    tp->tp_free(self);
    Py_DECREF(tp); /* instances of heap types hold their type */
    dealloc_depth++;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (held[i]) release(held[i]);
    }
    dealloc_depth--;
    if (dealloc_depth == 0 && parked != NULL) {
        dealloc_depth++;
        Py_ssize_t k;
        while ((k = PyList_GET_SIZE(parked)) > 0) {
            PyObject *o = PyList_GET_ITEM(parked, k - 1);
            Py_INCREF(o);
            if (PyList_SetSlice(parked, k - 1, k, NULL) < 0) {
                PyErr_Clear();
                Py_DECREF(o);
                break;
            }
            Py_DECREF(o); /* may park more: the loop takes them too */
        }
        dealloc_depth--;
    }
}

static char *copy_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = PyMem_Malloc(n);
    if (c) memcpy(c, s, n);
    return c;
}

/* Frees what record_type allocated for a type that was not made (an error on the way). */
static void free_spec(PyMemberDef *members, Py_ssize_t n, char *tp_name) {
    if (members) {
        for (Py_ssize_t i = 0; i < n; i++) PyMem_Free((void *)members[i].name);
        PyMem_Free(members);
    }
    PyMem_Free(tp_name);
}

static PyObject *record_type(PyObject *Py_UNUSED(mod), PyObject *args) {
    const char *name;
    PyObject *fields, *ns;
    if (!PyArg_ParseTuple(args, "sO!O!:record_type", &name, &PyTuple_Type, &fields, &PyDict_Type, &ns)) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(fields);
    if (n < 1 || n > 64) {
        PyErr_Format(PyExc_ValueError, "record_type takes 1 to 64 fields, got %zd", n);
        return NULL;
    }
    /* the member table and names live as long as the type: types are made once per process */
    PyMemberDef *members = PyMem_Calloc((size_t)n + 1, sizeof(PyMemberDef));
    char *tp_name = copy_str(name);
    if (!members || !tp_name) {
        free_spec(members, n, tp_name);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyTuple_GET_ITEM(fields, i);
        const char *s = PyUnicode_Check(f) ? PyUnicode_AsUTF8(f) : NULL;
        if (!s) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "record_type fields must be str");
            free_spec(members, n, tp_name);
            return NULL;
        }
        members[i].name = copy_str(s);
        if (!members[i].name) {
            free_spec(members, n, tp_name);
            return PyErr_NoMemory();
        }
        members[i].type = T_OBJECT_EX;
        members[i].offset = (Py_ssize_t)sizeof(PyObject) + i * (Py_ssize_t)sizeof(PyObject *);
    }
    PyType_Slot slots[] = {
        {Py_tp_dealloc, (void *)record_dealloc},
        {Py_tp_new, (void *)PyType_GenericNew},
        {Py_tp_members, members},
        {0, NULL},
    };
    PyType_Spec spec = {
        .name = tp_name,
        .basicsize = (int)(sizeof(PyObject) + (size_t)n * sizeof(PyObject *)),
        .itemsize = 0,
        .flags = Py_TPFLAGS_DEFAULT, /* no Py_TPFLAGS_HAVE_GC: the point */
        .slots = slots,
    };
    PyObject *tp = PyType_FromSpec(&spec);
    if (!tp) {
        free_spec(members, n, tp_name);
        return NULL;
    }
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(ns, &pos, &k, &v)) {
        if (PyUnicode_Check(k) && (PyUnicode_CompareWithASCIIString(k, "__slots__") == 0 ||
                                   PyUnicode_CompareWithASCIIString(k, "__dict__") == 0 ||
                                   PyUnicode_CompareWithASCIIString(k, "__weakref__") == 0))
            continue;
        int own = PySequence_Contains(fields, k); /* (a __slots__ class's descriptors for them) */
        if (own < 0) {
            Py_DECREF(tp);
            return NULL;
        }
        if (own) continue;
        if (PyObject_SetAttr(tp, k, v) < 0) {
            Py_DECREF(tp);
            return NULL;
        }
    }
    return tp;
}

PyMethodDef constrain_records_methods[] = {
    {"record_type", record_type, METH_VARARGS,
     "record_type(name, fields, namespace): a class whose instances the cyclic GC does not track "
     "(see native/records.c)."},
    {NULL, NULL, 0, NULL},
};

/* Called from PyInit__native (native/maskwriter.c). */
int constrain_records_init(PyObject *m) {
    if (parked == NULL && (parked = PyList_New(0)) == NULL) return -1;
    return PyModule_AddFunctions(m, constrain_records_methods);
}
