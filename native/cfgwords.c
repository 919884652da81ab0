/* constrain._native's word helpers for the CFG matcher (constrain/engine/cfg_matcher.py).
 *
 * Why C: a CFG mask is assembled from cached pieces -- a dense 16 KB copy on a cache hit,
 * sparse ORs of a few hundred words otherwise -- tens of thousands of times per second.
 * The work itself is well under a microsecond; what cost more was the call around it:
 * ``np.copyto`` after ``bitmask.view(np.uint32)`` took ~1.2 us per hit, and a Numba
 * dispatcher call ~0.5 us per sparse OR (it type-checks every argument).  Here each is one
 * METH_FASTCALL function over the buffer protocol.
 *
 * References: ``np.copyto`` and the Numba ``or_sparse`` (constrain/engine/cfg_kernels.py),
 * which tests/test_native.py compares these with, using hypothesis.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int get_words(PyObject *obj, Py_buffer *view, int writable, const char *what) {
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, view, flags) < 0) return -1;
    if (view->itemsize != 4) {
        PyErr_Format(PyExc_TypeError, "%s must have 4-byte items, got %zd-byte items", what, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* copy_words(dst, src): dst[:] = src, both contiguous 4-byte words of the same length. */
static PyObject *copy_words(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "copy_words(dst, src) takes 2 arguments");
        return NULL;
    }
    Py_buffer d, s;
    if (get_words(args[0], &d, 1, "dst") < 0) return NULL;
    if (get_words(args[1], &s, 0, "src") < 0) {
        PyBuffer_Release(&d);
        return NULL;
    }
    if (d.len != s.len) {
        PyErr_Format(PyExc_ValueError, "dst has %zd words, src %zd", d.len / 4, s.len / 4);
    } else {
        memcpy(d.buf, s.buf, (size_t)d.len);
    }
    PyBuffer_Release(&s);
    PyBuffer_Release(&d);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* or_sparse(out, idx, vals): out[idx[i]] |= vals[i]; every index is checked. */
static PyObject *or_sparse(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "or_sparse(out, idx, vals) takes 3 arguments");
        return NULL;
    }
    Py_buffer o, ib, vb;
    if (get_words(args[0], &o, 1, "out") < 0) return NULL;
    if (get_words(args[1], &ib, 0, "idx") < 0) {
        PyBuffer_Release(&o);
        return NULL;
    }
    if (get_words(args[2], &vb, 0, "vals") < 0) {
        PyBuffer_Release(&ib);
        PyBuffer_Release(&o);
        return NULL;
    }
    Py_ssize_t n = ib.len / 4, words = o.len / 4;
    if (vb.len != ib.len) {
        PyErr_Format(PyExc_ValueError, "idx has %zd entries, vals %zd", n, vb.len / 4);
    } else {
        uint32_t *out = (uint32_t *)o.buf;
        const int32_t *idx = (const int32_t *)ib.buf;
        const uint32_t *vals = (const uint32_t *)vb.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t k = idx[i];
            if (k < 0 || k >= words) {
                PyErr_Format(PyExc_IndexError, "word index %d out of range [0, %zd)", (int)k, words);
                break;
            }
            out[k] |= vals[i];
        }
    }
    PyBuffer_Release(&vb);
    PyBuffer_Release(&ib);
    PyBuffer_Release(&o);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

PyMethodDef constrain_cfgwords_methods[] = {
    {"copy_words", (PyCFunction)(void (*)(void))copy_words, METH_FASTCALL,
     "copy_words(dst, src): dst[:] = src (contiguous 4-byte words, equal lengths; dst writable)."},
    {"or_sparse", (PyCFunction)(void (*)(void))or_sparse, METH_FASTCALL,
     "or_sparse(out, idx, vals): out[idx[i]] |= vals[i] (4-byte words; int32 indices, each checked)."},
    {NULL, NULL, 0, NULL},
};
