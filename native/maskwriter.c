/* constrain._native: the DFA matcher's fill_mask as one C call.
 *
 * Why C and not Numba: a precomputed DFA's mask is a copy (or a zero-fill plus a few
 * words), well under a microsecond of memory work.  What remained was interpreter
 * overhead around it -- a Python frame, a dict lookup, two numpy calls (zero-fill, then
 * fancy-index scatter) -- which made small regexes' masks ~1.2x outlines-core's Rust
 * call.  A Numba dispatcher costs about as much as those calls.  Here a matcher's
 * ``fill_mask`` is a bound method of a ``Cursor`` (one C call from Python), which looks
 * up its DFA state in a shared ``MaskTable`` and writes the caller's buffer.
 *
 * The pure-Python path (``DFAMatcher._fill_mask_py``) stays the reference: every state
 * the table lacks, and every bitmask that is not a writable, contiguous buffer of
 * exactly ``words`` 4-byte items (a torch tensor, a strided view), goes through the
 * ``fallback(state, bitmask)`` callable, which fills it and may register the state's
 * mask here for next time.  Tests compare both paths with hypothesis.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

typedef struct {
    Py_buffer vals; /* int32 words: the whole mask (dense) or the non-zero words (sparse) */
    Py_buffer idx;  /* int64 word indices (sparse only) */
    int present;
    int sparse;
} Entry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t words;
    Py_ssize_t n_states;
    Entry *entries;
    Py_ssize_t n_present;
} MaskTable;

static void table_release(Entry *e) {
    if (!e->present) return;
    PyBuffer_Release(&e->vals);
    if (e->sparse) PyBuffer_Release(&e->idx);
    e->present = 0;
    e->sparse = 0;
}

static void MaskTable_dealloc(MaskTable *self) {
    if (self->entries) {
        for (Py_ssize_t i = 0; i < self->n_states; i++) table_release(&self->entries[i]);
        PyMem_Free(self->entries);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int MaskTable_init(MaskTable *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"n_states", "words", NULL};
    Py_ssize_t n_states, words;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nn", kwlist, &n_states, &words)) return -1;
    if (n_states < 1 || words < 1) {
        PyErr_SetString(PyExc_ValueError, "MaskTable needs n_states >= 1 and words >= 1");
        return -1;
    }
    self->entries = PyMem_Calloc((size_t)n_states, sizeof(Entry));
    if (!self->entries) {
        PyErr_NoMemory();
        return -1;
    }
    self->n_states = n_states;
    self->words = words;
    self->n_present = 0;
    return 0;
}

static int check_state(MaskTable *self, Py_ssize_t state) {
    if (state < 0 || state >= self->n_states) {
        PyErr_Format(PyExc_IndexError, "state %zd out of range [0, %zd)", state, self->n_states);
        return -1;
    }
    return 0;
}

static int get_vector(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_TypeError, "%s must have %zd-byte items, got %zd", what, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* The entry of ``state``, emptied for a new mask (the old one's buffers released). */
static Entry *take_entry(MaskTable *self, Py_ssize_t state) {
    Entry *e = &self->entries[state];
    if (!e->present) self->n_present++;
    table_release(e);
    e->present = 1;
    return e;
}

static PyObject *MaskTable_set_dense(MaskTable *self, PyObject *args) {
    Py_ssize_t state;
    PyObject *vals;
    if (!PyArg_ParseTuple(args, "nO", &state, &vals)) return NULL;
    if (check_state(self, state) < 0) return NULL;
    Py_buffer v;
    if (get_vector(vals, &v, 4, "dense mask words") < 0) return NULL;
    if (v.len / 4 != self->words) {
        PyErr_Format(PyExc_ValueError, "dense mask has %zd words, the table %zd", v.len / 4, self->words);
        PyBuffer_Release(&v);
        return NULL;
    }
    take_entry(self, state)->vals = v;
    Py_RETURN_NONE;
}

static PyObject *MaskTable_set_sparse(MaskTable *self, PyObject *args) {
    Py_ssize_t state;
    PyObject *idx, *vals;
    if (!PyArg_ParseTuple(args, "nOO", &state, &idx, &vals)) return NULL;
    if (check_state(self, state) < 0) return NULL;
    Py_buffer iv, vv;
    if (get_vector(idx, &iv, 8, "sparse word indices") < 0) return NULL;
    if (get_vector(vals, &vv, 4, "sparse mask words") < 0) {
        PyBuffer_Release(&iv);
        return NULL;
    }
    Py_ssize_t k = iv.len / 8;
    int bad = vv.len / 4 != k;
    const long long *ip = (const long long *)iv.buf;
    for (Py_ssize_t i = 0; !bad && i < k; i++) bad = ip[i] < 0 || ip[i] >= self->words;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "sparse mask: indices and words differ in length, or an index is out of range");
        PyBuffer_Release(&iv);
        PyBuffer_Release(&vv);
        return NULL;
    }
    Entry *e = take_entry(self, state);
    e->idx = iv;
    e->vals = vv;
    e->sparse = 1;
    Py_RETURN_NONE;
}

static PyObject *MaskTable_clear(MaskTable *self, PyObject *Py_UNUSED(ignored)) {
    for (Py_ssize_t i = 0; i < self->n_states; i++) table_release(&self->entries[i]);
    self->n_present = 0;
    Py_RETURN_NONE;
}

static PyObject *MaskTable_contains(MaskTable *self, PyObject *arg) {
    Py_ssize_t state = PyLong_AsSsize_t(arg);
    if (state == -1 && PyErr_Occurred()) return NULL;
    if (state < 0 || state >= self->n_states) Py_RETURN_FALSE;
    return PyBool_FromLong(self->entries[state].present);
}

static Py_ssize_t MaskTable_len(MaskTable *self) { return self->n_present; }

static PyMethodDef MaskTable_methods[] = {
    {"set_dense", (PyCFunction)MaskTable_set_dense, METH_VARARGS,
     "set_dense(state, words): the state's whole mask (int32/uint32, `words` of them), kept by reference."},
    {"set_sparse", (PyCFunction)MaskTable_set_sparse, METH_VARARGS,
     "set_sparse(state, idx, words): zero everywhere but int64 word indices `idx`, which get `words`."},
    {"clear", (PyCFunction)MaskTable_clear, METH_NOARGS, "Forget every state's mask."},
    {"has", (PyCFunction)MaskTable_contains, METH_O, "Whether the state's mask is held."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods MaskTable_as_sequence = {.sq_length = (lenfunc)MaskTable_len};

static PyTypeObject MaskTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "constrain._native.MaskTable",
    .tp_doc = PyDoc_STR("MaskTable(n_states, words): per-DFA-state masks shared by the matchers of one DFA."),
    .tp_basicsize = sizeof(MaskTable),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)MaskTable_init,
    .tp_dealloc = (destructor)MaskTable_dealloc,
    .tp_methods = MaskTable_methods,
    .tp_as_sequence = &MaskTable_as_sequence,
};

/* ---- Cursor: one matcher's current state, and its fill_mask ------------------------------ */

typedef struct {
    PyObject_HEAD
    MaskTable *table;
    PyObject *fallback;
    Py_ssize_t state; /* -1: terminated (the mask is all zero) */
} Cursor;

static void Cursor_dealloc(Cursor *self) {
    Py_XDECREF(self->table);
    Py_XDECREF(self->fallback);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Cursor_init(Cursor *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"table", "fallback", "state", NULL};
    PyObject *table, *fallback;
    Py_ssize_t state;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!On", kwlist, &MaskTableType, &table, &fallback, &state))
        return -1;
    if (!PyCallable_Check(fallback)) {
        PyErr_SetString(PyExc_TypeError, "Cursor fallback must be callable");
        return -1;
    }
    Py_INCREF(table);
    Py_INCREF(fallback);
    Py_XSETREF(self->table, (MaskTable *)table);
    Py_XSETREF(self->fallback, fallback);
    self->state = state;
    return 0;
}

static PyObject *call_fallback(Cursor *self, PyObject *bitmask) {
    PyObject *st = PyLong_FromSsize_t(self->state);
    if (!st) return NULL;
    PyObject *r = PyObject_CallFunctionObjArgs(self->fallback, st, bitmask, NULL);
    Py_DECREF(st);
    if (!r) return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

static PyObject *Cursor_fill_mask(Cursor *self, PyObject *bitmask) {
    MaskTable *t = self->table;
    Py_ssize_t s = self->state;
    Entry *e = NULL;
    if (s >= 0) {
        if (s >= t->n_states) {
            PyErr_Format(PyExc_IndexError, "cursor state %zd out of range [0, %zd)", s, t->n_states);
            return NULL;
        }
        e = &t->entries[s];
        if (!e->present) return call_fallback(self, bitmask);
    }
    Py_buffer out;
    if (PyObject_GetBuffer(bitmask, &out, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        /* not a writable contiguous buffer (a torch tensor, a strided view): Python's path */
        PyErr_Clear();
        return call_fallback(self, bitmask);
    }
    if (out.itemsize != 4 || out.len != t->words * 4) {
        PyBuffer_Release(&out);
        return call_fallback(self, bitmask); /* it raises the usual numpy errors, or copes */
    }
    int32_t *dst = (int32_t *)out.buf;
    if (e == NULL) {
        memset(dst, 0, (size_t)out.len);
    } else if (!e->sparse) {
        memcpy(dst, e->vals.buf, (size_t)out.len);
    } else {
        memset(dst, 0, (size_t)out.len);
        const long long *ip = (const long long *)e->idx.buf;
        const int32_t *vp = (const int32_t *)e->vals.buf;
        Py_ssize_t k = e->vals.len / 4;
        for (Py_ssize_t i = 0; i < k; i++) dst[ip[i]] = vp[i];
    }
    PyBuffer_Release(&out);
    Py_RETURN_NONE;
}

static PyObject *Cursor_get_state(Cursor *self, void *Py_UNUSED(closure)) { return PyLong_FromSsize_t(self->state); }

static int Cursor_set_state(Cursor *self, PyObject *value, void *Py_UNUSED(closure)) {
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete state");
        return -1;
    }
    Py_ssize_t s = PyLong_AsSsize_t(value);
    if (s == -1 && PyErr_Occurred()) return -1;
    self->state = s;
    return 0;
}

static PyGetSetDef Cursor_getset[] = {
    {"state", (getter)Cursor_get_state, (setter)Cursor_set_state, "DFA state whose mask fill_mask writes; -1 = none.", NULL},
    {NULL},
};

static PyMethodDef Cursor_methods[] = {
    {"fill_mask", (PyCFunction)Cursor_fill_mask, METH_O,
     "fill_mask(bitmask): overwrite the int32 words with the current state's mask."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CursorType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "constrain._native.Cursor",
    .tp_doc = PyDoc_STR("Cursor(table, fallback, state): a matcher's position in a MaskTable."),
    .tp_basicsize = sizeof(Cursor),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Cursor_init,
    .tp_dealloc = (destructor)Cursor_dealloc,
    .tp_methods = Cursor_methods,
    .tp_getset = Cursor_getset,
};

extern PyMethodDef constrain_propose_methods[]; /* native/propose.c */

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "constrain._native",
    .m_doc = "Compiled helpers of constrain (see native/maskwriter.c and native/propose.c for why they are C).",
    .m_size = -1,
    .m_methods = constrain_propose_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&MaskTableType) < 0 || PyType_Ready(&CursorType) < 0) return NULL;
    PyObject *m = PyModule_Create(&native_module);
    if (!m) return NULL;
    Py_INCREF(&MaskTableType);
    Py_INCREF(&CursorType);
    if (PyModule_AddObject(m, "MaskTable", (PyObject *)&MaskTableType) < 0 ||
        PyModule_AddObject(m, "Cursor", (PyObject *)&CursorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
