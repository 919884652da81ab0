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
#include <math.h>
#include <string.h>

typedef struct {
    Py_buffer vals; /* int32 words: the whole mask (dense) or the non-zero words (sparse) */
    Py_buffer idx;  /* int64 word indices (sparse only) */
    int present;
    int sparse;
} Entry;

/* The DFA itself, for token steps (bind_dfa): the byte table, every token's bytes, the
 * states' shortest-completion distances and the EOS ids.  Optional: without it a table only
 * writes masks. */
typedef struct {
    int bound;
    Py_buffer flat;  /* int32, n_states * 256: next state or -1 */
    Py_buffer offs;  /* int64, n_tokens + 1: token t's bytes are blob[offs[t]:offs[t+1]] */
    Py_buffer blob;  /* uint8 */
    Py_buffer dist;  /* int32, n_states */
    Py_buffer eos;   /* int64 */
    Py_buffer acc;   /* uint8, n_states: accepting */
    Py_ssize_t n_tokens, n_eos;
} DFAPart;

typedef struct {
    PyObject_HEAD
    Py_ssize_t words;
    Py_ssize_t n_states;
    Entry *entries;
    Py_ssize_t n_present;
    DFAPart dfa;
} MaskTable;

static void dfa_release(DFAPart *d) {
    if (!d->bound) return;
    PyBuffer_Release(&d->flat);
    PyBuffer_Release(&d->offs);
    PyBuffer_Release(&d->blob);
    PyBuffer_Release(&d->dist);
    PyBuffer_Release(&d->eos);
    PyBuffer_Release(&d->acc);
    d->bound = 0;
}

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
    dfa_release(&self->dfa);
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


/* numpy reports int64 as "l" or "q" depending on the platform */
static int is_fmt(const Py_buffer *v, char want, Py_ssize_t itemsize) {
    if (v->itemsize != itemsize) return 0;
    const char *f = v->format ? v->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@') f++;
    if (f[0] == want && f[1] == 0) return 1;
    return want == 'q' && f[0] == 'l' && f[1] == 0;
}

static PyObject *MaskTable_bind_dfa(MaskTable *self, PyObject *args) {
    PyObject *fo, *oo, *bo, *dso, *eo, *ao;
    if (!PyArg_ParseTuple(args, "OOOOOO", &fo, &oo, &bo, &dso, &eo, &ao)) return NULL;
    DFAPart d = {.bound = 0};
    Py_buffer *bufs[6] = {&d.flat, &d.offs, &d.blob, &d.dist, &d.eos, &d.acc};
    PyObject *objs[6] = {fo, oo, bo, dso, eo, ao};
    const char fmts[6] = {'i', 'q', 'B', 'i', 'q', 'B'};
    const Py_ssize_t sizes[6] = {4, 8, 1, 4, 8, 1};
    const char *names[6] = {"flat (int32)", "offsets (int64)", "blob (bytes)", "distances (int32)", "eos (int64)",
                            "accepting (uint8)"};
    int got = 0;
    for (; got < 6; got++) {
        if (PyObject_GetBuffer(objs[got], bufs[got], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) goto fail;
        if (!is_fmt(bufs[got], fmts[got], sizes[got])) {
            PyErr_Format(PyExc_TypeError, "bind_dfa: %s must be a contiguous array of that type", names[got]);
            got++;
            goto fail;
        }
    }
    Py_ssize_t ns = self->n_states;
    if (d.flat.len / 4 != ns * 256 || d.dist.len / 4 != ns || d.acc.len != ns) {
        PyErr_Format(PyExc_ValueError,
                     "bind_dfa: a table of %zd states needs %zd table entries, %zd distances and %zd accepting flags",
                     ns, ns * 256, ns, ns);
        goto fail;
    }
    const int32_t *fl = (const int32_t *)d.flat.buf;
    for (Py_ssize_t i = 0; i < ns * 256; i++) /* every step must land on a state or -1 */
        if (fl[i] < -1 || fl[i] >= ns) {
            PyErr_Format(PyExc_ValueError, "bind_dfa: table entry %zd is %d, not a state of [0, %zd) or -1", i,
                         (int)fl[i], ns);
            goto fail;
        }
    d.n_tokens = d.offs.len / 8 - 1;
    const long long *of = (const long long *)d.offs.buf;
    if (d.n_tokens < 0 || of[0] != 0 || of[d.n_tokens] != d.blob.len) {
        PyErr_SetString(PyExc_ValueError, "bind_dfa: offsets must start at 0 and end at len(blob)");
        goto fail;
    }
    for (Py_ssize_t t = 0; t < d.n_tokens; t++)
        if (of[t + 1] < of[t]) {
            PyErr_Format(PyExc_ValueError, "bind_dfa: offsets decrease at token %zd", t);
            goto fail;
        }
    d.n_eos = d.eos.len / 8;
    d.bound = 1;
    dfa_release(&self->dfa);
    self->dfa = d;
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < got; i++) PyBuffer_Release(bufs[i]);
    return NULL;
}

static PyMethodDef MaskTable_methods[] = {
    {"set_dense", (PyCFunction)MaskTable_set_dense, METH_VARARGS,
     "set_dense(state, words): the state's whole mask (int32/uint32, `words` of them), kept by reference."},
    {"set_sparse", (PyCFunction)MaskTable_set_sparse, METH_VARARGS,
     "set_sparse(state, idx, words): zero everywhere but int64 word indices `idx`, which get `words`."},
    {"clear", (PyCFunction)MaskTable_clear, METH_NOARGS, "Forget every state's mask."},
    {"has", (PyCFunction)MaskTable_contains, METH_O, "Whether the state's mask is held."},
    {"bind_dfa", (PyCFunction)MaskTable_bind_dfa, METH_VARARGS,
     "bind_dfa(flat, offsets, blob, distances, eos, accepting): the DFA (int32 n_states*256 table, -1 = "
     "dead), every token's bytes (blob[offsets[t]:offsets[t+1]]), the int32 shortest-completion distances, "
     "the int64 EOS ids and the uint8 accepting flags, for the cursors' token steps (next_state, try_pair, "
     "queued); all are checked here once."},
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


/* ---- token steps (needs bind_dfa) ---------------------------------------------------------- */

static int is_eos(const DFAPart *d, long long t) {
    const long long *e = (const long long *)d->eos.buf;
    for (Py_ssize_t i = 0; i < d->n_eos; i++)
        if (e[i] == t) return 1;
    return 0;
}

/* the state after token t's bytes from s (ByteDFA.run: -1 once dead; no bytes: s itself) */
static Py_ssize_t run_token(const DFAPart *d, Py_ssize_t s, long long t) {
    const int32_t *fl = (const int32_t *)d->flat.buf;
    const long long *of = (const long long *)d->offs.buf;
    const unsigned char *b = (const unsigned char *)d->blob.buf;
    for (long long i = of[t]; i < of[t + 1]; i++) {
        if (s < 0) return -1;
        s = fl[(s << 8) | b[i]];
    }
    return s;
}

/* the state after text token t from s: -1 for a special token (no bytes: never text) or once
 * dead -- DFAMatcher.advance's next state for a token that is not EOS */
static Py_ssize_t text_step(const DFAPart *d, Py_ssize_t s, long long t) {
    const long long *of = (const long long *)d->offs.buf;
    return of[t] == of[t + 1] ? -1 : run_token(d, s, t);
}

/* whether token t's bit is set in a present entry (dense: one word; sparse: binary search) */
static int entry_bit(const Entry *e, long long t) {
    long long w = t >> 5;
    const int32_t *vp = (const int32_t *)e->vals.buf;
    if (!e->sparse) return (int)(((uint32_t)vp[w] >> (t & 31)) & 1u);
    const long long *ip = (const long long *)e->idx.buf;
    Py_ssize_t lo = 0, hi = e->vals.len / 4;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (ip[mid] < w) lo = mid + 1;
        else hi = mid;
    }
    return lo < e->vals.len / 4 && ip[lo] == w ? (int)(((uint32_t)vp[lo] >> (t & 31)) & 1u) : 0;
}

/* completion_after: 0 for EOS, else the distance of the state after t (1 << 30 if dead) */
static long long completion(const DFAPart *d, Py_ssize_t s, long long t) {
    if (is_eos(d, t)) return 0;
    Py_ssize_t s2 = run_token(d, s, t);
    return s2 >= 0 ? (long long)((const int32_t *)d->dist.buf)[s2] : (1LL << 30);
}

static int need_dfa(Cursor *self) {
    if (!self->table->dfa.bound) {
        PyErr_SetString(PyExc_RuntimeError, "this cursor's MaskTable has no DFA bound (bind_dfa)");
        return -1;
    }
    return 0;
}

static PyObject *Cursor_next_state(Cursor *self, PyObject *arg) {
    if (need_dfa(self) < 0) return NULL;
    long long t = PyLong_AsLongLong(arg);
    if (t == -1 && PyErr_Occurred()) return NULL;
    const DFAPart *d = &self->table->dfa;
    if (t < 0 || t >= d->n_tokens) {
        PyErr_Format(PyExc_IndexError, "token %lld out of range [0, %zd)", t, d->n_tokens);
        return NULL;
    }
    if (is_eos(d, t)) return PyLong_FromLong(-2);
    return PyLong_FromSsize_t(self->state < 0 ? -1 : text_step(d, self->state, t));
}

/* try_pair(draws, remaining): the AWRS fast step's two checks in one call.  draws: int64,
 * its first two items t0, t1.  Both must have their bit in the current state's held mask
 * and, when remaining >= 0, completion(t) < remaining each (the budget rule, t1 skipped
 * when equal to t0).  Returns (t0, t1, next) and moves the cursor to next -- the state
 * after t0 -- when both pass (next = -1 when t0 is EOS: the cursor stays, the caller ends
 * the row); otherwise an int and the cursor is unchanged: -1 nothing known (no mask held,
 * terminated, a token outside the vocabulary), -2 a bit is clear, -3 both bits set but
 * the budget rule refused one. */
static PyObject *Cursor_try_pair(Cursor *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "try_pair(draws, remaining) takes 2 arguments");
        return NULL;
    }
    if (need_dfa(self) < 0) return NULL;
    long long remaining = PyLong_AsLongLong(args[1]);
    if (remaining == -1 && PyErr_Occurred()) return NULL;
    Py_buffer db;
    if (PyObject_GetBuffer(args[0], &db, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (!is_fmt(&db, 'q', 8) || db.len < 16) {
        PyBuffer_Release(&db);
        PyErr_SetString(PyExc_TypeError, "try_pair: draws must be a contiguous int64 array of at least 2 items");
        return NULL;
    }
    long long t0 = ((const long long *)db.buf)[0], t1 = ((const long long *)db.buf)[1];
    PyBuffer_Release(&db);
    MaskTable *tb = self->table;
    const DFAPart *d = &tb->dfa;
    Py_ssize_t s = self->state;
    if (s < 0 || s >= tb->n_states || !tb->entries[s].present || t0 < 0 || t1 < 0 || t0 >= d->n_tokens ||
        t1 >= d->n_tokens || (t0 >> 5) >= tb->words || (t1 >> 5) >= tb->words)
        return PyLong_FromLong(-1);
    const Entry *e = &tb->entries[s];
    if (!(entry_bit(e, t0) & entry_bit(e, t1))) return PyLong_FromLong(-2);
    if (remaining >= 0 && !(completion(d, s, t0) < remaining && (t1 == t0 || completion(d, s, t1) < remaining)))
        return PyLong_FromLong(-3);
    Py_ssize_t nxt = -1;
    if (!is_eos(d, t0)) {
        nxt = text_step(d, s, t0);
        if (nxt < 0) return PyLong_FromLong(-1); /* a mask that disagrees with the table: let Python decide */
        self->state = nxt;
    }
    return Py_BuildValue("LLn", t0, t1, nxt);
}

/* DFAMatcher.check for a token of the vocabulary from state s >= 0: the held mask's bit, else
 * EOS -> accepting, a special token -> no, text -> its bytes do not kill the DFA */
static int token_ok(const MaskTable *tb, Py_ssize_t s, long long t) {
    const Entry *e = &tb->entries[s];
    if (e->present && (t >> 5) < tb->words) return entry_bit(e, t);
    const DFAPart *d = &tb->dfa;
    if (is_eos(d, t)) return ((const unsigned char *)d->acc.buf)[s] != 0;
    return text_step(d, s, t) >= 0;
}

/* The sampling Checker of one step, in C: verdicts cached per token (the queue holds few),
 * and the same statistics. */
#define QMAX 64
typedef struct {
    const MaskTable *tb;
    Py_ssize_t s;
    long long remaining; /* < 0: the budget cannot bind this step */
    long long tok[QMAX];
    int ver[QMAX];
    int n;
    long long checks, hits, budget_checks, budget_rejected;
} QCheck;

static int qcheck(QCheck *c, long long t) {
    for (int i = 0; i < c->n; i++)
        if (c->tok[i] == t) {
            c->hits++;
            return c->ver[i];
        }
    int v = token_ok(c->tb, c->s, t);
    c->checks++;
    if (v && c->remaining >= 0) {
        c->budget_checks++;
        if (!(completion(&c->tb->dfa, c->s, t) < c->remaining)) {
            v = 0;
            c->budget_rejected++;
        }
    }
    c->tok[c->n] = t; /* (n < QMAX: at most one new token per queued draw) */
    c->ver[c->n] = v;
    c->n++;
    return v;
}

static int in_set(const long long *set, int n, long long t) {
    for (int i = 0; i < n; i++)
        if (set[i] == t) return 1;
    return 0;
}

/* awrs._walk_queue: rejections counted from n until the first valid draw from q[qi:], or -1
 * where the walk would leave the queue */
static long long walk_queue(const long long *q, Py_ssize_t nq, Py_ssize_t qi, long long *rej, int *nrej, long long n,
                            QCheck *c, long long max_rejects) {
    long long redraws = 0;
    for (;;) {
        if (n >= max_rejects || redraws > 32 || qi >= nq) return -1;
        long long t = q[qi++];
        if (in_set(rej, *nrej, t)) {
            redraws++;
            continue;
        }
        if (qcheck(c, t)) return n;
        rej[(*nrej)++] = t;
        n++;
    }
}

/* queued(draws, got, x, mx, head_mass, remaining, max_rejects, psi_max, head): awrs.awrs_queued
 * for this cursor's DFA state -- the same draws in the same order, the same checks, the same
 * float64 arithmetic -- with the Checker's verdicts from the table.  Returns
 * (token, log_z, rejections, checks, cache_hits, budget_checks, budget_rejected) or, where
 * awrs_queued returns None, (None, tokens checked, their verdicts, checks, cache_hits,
 * budget_checks, budget_rejected) so the caller's Checker continues from those verdicts.
 * The cursor does not move. */
static PyObject *Cursor_queued(Cursor *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "queued(draws, got, x, mx, head_mass, remaining, max_rejects, psi_max, head) takes 9 arguments");
        return NULL;
    }
    if (need_dfa(self) < 0) return NULL;
    Py_ssize_t nq = PyLong_AsSsize_t(args[1]);
    double mx = PyFloat_AsDouble(args[3]), hm = PyFloat_AsDouble(args[4]);
    long long remaining = PyLong_AsLongLong(args[5]), max_rejects = PyLong_AsLongLong(args[6]);
    double psi_max = PyFloat_AsDouble(args[7]), head = PyFloat_AsDouble(args[8]);
    if (PyErr_Occurred()) return NULL;
    Py_buffer db, xb;
    if (PyObject_GetBuffer(args[0], &db, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(args[2], &xb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&db);
        return NULL;
    }
    PyObject *res = NULL;
    if (!is_fmt(&db, 'q', 8) || !is_fmt(&xb, 'f', 4) || nq < 0 || nq > db.len / 8 || nq > QMAX) {
        PyErr_SetString(PyExc_TypeError, "queued: draws must be int64 (got <= its length, <= 64), x float32");
        goto done;
    }
    const long long *q = (const long long *)db.buf;
    const float *x = (const float *)xb.buf;
    Py_ssize_t nx = xb.len / 4;
    MaskTable *tb = self->table;
    QCheck c = {.tb = tb, .s = self->state, .remaining = remaining, .n = 0};
    long long rej[QMAX];
    int nrej = 0;
    long long token = -1, nrejections = 0;
    double log_z = 0.0;
    int ok = 0; /* 1: answered; 0: awrs_queued's None */
    if (max_rejects < 1 || nq < 2 || hm != hm || c.s < 0 || c.s >= tb->n_states) goto answer;
    for (Py_ssize_t i = 0; i < nq; i++) /* the Python path raises or copes: leave it to it */
        if (q[i] < 0 || q[i] >= tb->dfa.n_tokens || q[i] >= nx) goto answer;
    long long x0 = q[0];
    if (qcheck(&c, x0)) {
        long long x1 = q[1];
        if (qcheck(&c, x1)) {
            token = x0;
            ok = 1;
            goto answer;
        }
        qcheck(&c, x1); /* (awrs_sample's walk checks it again: a cache hit) */
        rej[nrej++] = x1;
        long long n = walk_queue(q, nq, 2, rej, &nrej, 1, &c, max_rejects);
        if (n >= 0) {
            token = x0;
            log_z = -log((double)(n + 1));
            nrejections = n;
            ok = 1;
        }
        goto answer;
    }
    {
        double mxf = (double)(float)mx;
        long long n0 = 0, redraws = 0, t = x0, xv = -1;
        double wr = 0.0, psi = 0.0;
        Py_ssize_t qi = 1;
        for (;;) {
            if (n0 >= max_rejects || psi > 0.5 || redraws > 32) goto answer;
            if (t < 0) {
                if (qi >= nq) goto answer;
                t = q[qi++];
            }
            if (in_set(rej, nrej, t)) {
                redraws++;
                t = -1;
                continue;
            }
            if (qcheck(&c, t)) {
                xv = t;
                break;
            }
            rej[nrej++] = t;
            wr += exp((double)x[t] - mxf);
            psi = wr / hm;
            n0++;
            t = -1;
        }
        double b = wr / hm;
        if (b > psi_max || qi >= nq) goto answer;
        double one_minus_psi0 = (double)x[q[qi]] >= mxf - head ? 1.0 - b : 1.0;
        qi++;
        if (psi > 0.5) goto answer;
        long long n1 = walk_queue(q, nq, qi, rej, &nrej, 0, &c, max_rejects);
        if (n1 < 0) goto answer;
        token = xv;
        log_z = one_minus_psi0 > 0 ? log(one_minus_psi0) - log((double)(n0 + n1 + 1)) : -INFINITY;
        nrejections = n0 + n1;
        ok = 1;
    }
answer:
    if (ok) {
        res = Py_BuildValue("LdLLLLL", token, log_z, nrejections, c.checks, c.hits, c.budget_checks, c.budget_rejected);
    } else {
        PyObject *toks = PyList_New(c.n), *vers = PyList_New(c.n);
        if (!toks || !vers) {
            Py_XDECREF(toks);
            Py_XDECREF(vers);
            goto done;
        }
        for (int i = 0; i < c.n; i++) {
            PyList_SET_ITEM(toks, i, PyLong_FromLongLong(c.tok[i]));
            PyList_SET_ITEM(vers, i, PyBool_FromLong(c.ver[i]));
        }
        res = Py_BuildValue("ONNLLLL", Py_None, toks, vers, c.checks, c.hits, c.budget_checks, c.budget_rejected);
    }
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&xb);
    return res;
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
    {"next_state", (PyCFunction)Cursor_next_state, METH_O,
     "next_state(token) -> the DFA state after the token's bytes (-1 dead, terminated or a special token; -2 EOS); "
     "the cursor does not move."},
    {"try_pair", (PyCFunction)(void (*)(void))Cursor_try_pair, METH_FASTCALL,
     "try_pair(draws, remaining) -> (t0, t1, next) and the cursor moved to next, or -1/-2/-3 (see maskwriter.c)."},
    {"queued", (PyCFunction)(void (*)(void))Cursor_queued, METH_FASTCALL,
     "queued(draws, got, x, mx, head_mass, remaining, max_rejects, psi_max, head): awrs_queued with this "
     "state's verdicts, and the Checker's statistics (see maskwriter.c)."},
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
extern PyMethodDef constrain_cfgwords_methods[]; /* native/cfgwords.c */
extern int constrain_records_init(PyObject *m); /* native/records.c */
extern int constrain_earley_init(PyObject *m);  /* native/earley.c */
extern int constrain_cfgwalk_init(PyObject *m); /* native/cfgwalk.c */

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
    if (PyModule_AddFunctions(m, constrain_cfgwords_methods) < 0 || constrain_records_init(m) < 0 ||
        constrain_earley_init(m) < 0 || constrain_cfgwalk_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&MaskTableType);
    Py_INCREF(&CursorType);
    if (PyModule_AddObject(m, "MaskTable", (PyObject *)&MaskTableType) < 0 ||
        PyModule_AddObject(m, "Cursor", (PyObject *)&CursorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
