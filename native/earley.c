/* constrain._native.EarleyCore: the Earley parser's item-set primitives in C -- closing seeds
 * into a node (build_node), completing terminals at a boundary (complete) and truncating a
 * node's origins to a view (view).  constrain/cfg/earley.py holds the Python definitions,
 * which stay the reference (EarleyGrammar(..., accelerate=False)); tests compare the two.
 *
 * Why C: a token mask that misses the mask caches walks the vocabulary trie's lexeme
 * boundaries, and at each it completes terminals and views the result -- thousands of small
 * dict/set/tuple operations per mask, interpreted.  Measured on the JSON benchmark
 * (2026-12-03, py-spy): these three functions were a third of all mask time.
 *
 * Semantics are the Python ones, item for item and in the same order (the work list is a
 * stack popped from its end), so nodes have the same items, origins and waiting tables.
 * Two differences, both invisible outside the parser: the hash-consing tables are keyed by
 * the sorted item codes packed as bytes (not int tuples: cheaper to build and to hash), and a
 * node object is only allocated when its item set is new (the Python version allocates one
 * first and may throw it away), so uids are numbered differently.
 *
 * Nodes are instances of the record type of native/records.c: their fields sit at fixed
 * offsets, read here directly.  The core keeps references to the parser's tables (dicts
 * shared with the Python side) and to a callable giving a terminal's DFA start state (DFAs
 * are built lazily); it takes part in the cyclic GC, since that callable refers back to the
 * parser.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INTERN_MAX 500000
#define COMPLETE_MAX 200000

typedef struct {
    int p, d;
    PyObject *org; /* borrowed; NULL: the node being built */
} Item;

typedef struct {
    PyObject_HEAD
    int nt, n_prods, n_syms, aug_prod;
    long long np_, nd;
    int *lhs, *rhs_off, *rhs_len, *rhs;
    int *bl_off, *bl; /* productions by lhs: bl[bl_off[s] .. bl_off[s + 1]] */
    char *nullable;   /* per symbol */
    char *ignore;     /* per terminal */
    int *ignore_list, n_ignore;
    int *starts; /* per terminal: DFA start state, -1 until asked */
    PyObject **sym_ints; /* PyLong per symbol (waiting-table keys) */
    PyObject *node_type, *horizon, *exc;
    PyObject *intern, *nodes, *cache, *view_intern, *views, *start_of;
    Py_ssize_t f_uid, f_items, f_origins, f_waiting, f_accepting, f_expected, f_key;
    /* scratch, reused across calls (the core is not re-entered: nothing here calls back into
     * the parser except start_of, which builds a DFA) */
    unsigned int gen;
    unsigned int *pred, *comp, *wcnt_gen;
    int *wcnt, *wfill;
} Core;

#define FLD(o, off) (*(PyObject **)((char *)(o) + (off)))

/* A fresh stamp for the per-symbol scratch arrays (a mark is valid when it equals c->gen);
 * after 2^32 calls the stamps start over from cleared arrays, so no stale mark can match. */
static void next_gen(Core *c) {
    if (++c->gen == 0) {
        memset(c->pred, 0, (size_t)c->n_syms * sizeof(unsigned int));
        memset(c->comp, 0, (size_t)c->n_syms * sizeof(unsigned int));
        memset(c->wcnt_gen, 0, (size_t)c->n_syms * sizeof(unsigned int));
        c->gen = 1;
    }
}

/* ---- small growable arrays and an int64 hash set ------------------------------------------- */

typedef struct {
    Item *a;
    Py_ssize_t n, cap;
} Items;

static int items_push(Items *v, int p, int d, PyObject *org) {
    if (v->n == v->cap) {
        Py_ssize_t cap = v->cap ? 2 * v->cap : 64;
        Item *a = PyMem_Realloc(v->a, (size_t)cap * sizeof(Item));
        if (!a) {
            PyErr_NoMemory();
            return -1;
        }
        v->a = a;
        v->cap = cap;
    }
    v->a[v->n].p = p;
    v->a[v->n].d = d;
    v->a[v->n].org = org;
    v->n++;
    return 0;
}

typedef struct {
    int64_t *keys; /* -1: empty */
    Py_ssize_t cap, n;
} Set;

static int set_init(Set *s, Py_ssize_t cap) {
    s->cap = cap;
    s->n = 0;
    s->keys = PyMem_Malloc((size_t)cap * sizeof(int64_t));
    if (!s->keys) {
        PyErr_NoMemory();
        return -1;
    }
    memset(s->keys, 0xff, (size_t)cap * sizeof(int64_t));
    return 0;
}

static inline Py_ssize_t slot_of(int64_t k, Py_ssize_t cap) {
    uint64_t h = (uint64_t)k * 0x9E3779B97F4A7C15ULL;
    return (Py_ssize_t)(h >> 17) & (cap - 1);
}

/* 1 if added, 0 if present, -1 on error */
static int set_add(Set *s, int64_t k) {
    if (2 * (s->n + 1) > s->cap) {
        Set t;
        if (set_init(&t, 2 * s->cap) < 0) return -1;
        for (Py_ssize_t i = 0; i < s->cap; i++) {
            int64_t x = s->keys[i];
            if (x < 0) continue;
            Py_ssize_t j = slot_of(x, t.cap);
            while (t.keys[j] >= 0) j = (j + 1) & (t.cap - 1);
            t.keys[j] = x;
            t.n++;
        }
        PyMem_Free(s->keys);
        *s = t;
    }
    Py_ssize_t j = slot_of(k, s->cap);
    while (s->keys[j] >= 0) {
        if (s->keys[j] == k) return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->keys[j] = k;
    s->n++;
    return 1;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The set's codes sorted, as bytes: the hash-consing key. */
static PyObject *sorted_key(Set *s) {
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(s->n * (Py_ssize_t)sizeof(int64_t)));
    if (!b) return NULL;
    int64_t *out = (int64_t *)PyBytes_AS_STRING(b);
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < s->cap; i++)
        if (s->keys[i] >= 0) out[m++] = s->keys[i];
    qsort(out, (size_t)m, sizeof(int64_t), cmp_i64);
    return b;
}

static inline long long uid_of(Core *c, PyObject *node) { return PyLong_AsLongLong(FLD(node, c->f_uid)); }

static int check_node(Core *c, PyObject *o) {
    if (Py_TYPE(o) != (PyTypeObject *)c->node_type) {
        PyErr_Format(PyExc_TypeError, "expected a parser Node, got %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

static void set_field(PyObject *o, Py_ssize_t off, PyObject *v) { /* steals v */
    PyObject *old = FLD(o, off);
    FLD(o, off) = v;
    Py_XDECREF(old);
}

/* ---- a new node's tables: items, origins, waiting (Node._set_items) ------------------------ */

static int set_items(Core *c, PyObject *node, Items *full) {
    Py_ssize_t n = full->n;
    PyObject *items = PyTuple_New(n);
    PyObject *origins_l = PyList_New(0);
    PyObject *index = PyDict_New(); /* origin uid -> k */
    PyObject *waiting = PyDict_New();
    int *wsym = PyMem_Malloc((size_t)(n ? n : 1) * sizeof(int));
    if (!items || !origins_l || !index || !waiting || !wsym) goto fail;
    next_gen(c);
    for (Py_ssize_t i = 0; i < n; i++) {
        Item *it = &full->a[i];
        long k;
        if (it->org == NULL || it->org == node) {
            k = -1;
        } else {
            PyObject *u = FLD(it->org, c->f_uid);
            PyObject *kk = PyDict_GetItemWithError(index, u);
            if (kk) {
                k = PyLong_AsLong(kk);
            } else {
                if (PyErr_Occurred()) goto fail;
                k = (long)PyList_GET_SIZE(origins_l);
                PyObject *kv = PyLong_FromLong(k);
                if (!kv || PyDict_SetItem(index, u, kv) < 0) {
                    Py_XDECREF(kv);
                    goto fail;
                }
                Py_DECREF(kv);
                if (PyList_Append(origins_l, it->org) < 0) goto fail;
            }
        }
        PyObject *t = Py_BuildValue("(iil)", it->p, it->d, k);
        if (!t) goto fail;
        PyObject_GC_UnTrack(t); /* (ints only: see below, at origins) */
        PyTuple_SET_ITEM(items, i, t);
        int p = it->p;
        if (it->d < c->rhs_len[p]) {
            int s = c->rhs[c->rhs_off[p] + it->d];
            wsym[i] = s;
            if (c->wcnt_gen[s] != c->gen) {
                c->wcnt_gen[s] = c->gen;
                c->wcnt[s] = 0;
            }
            c->wcnt[s]++;
        } else {
            wsym[i] = -1;
        }
    }
    /* waiting: symbol -> its items, symbols in order of first appearance */
    for (Py_ssize_t i = 0; i < n; i++) {
        int s = wsym[i];
        if (s < 0) continue;
        PyObject *tup;
        if (c->wcnt[s] >= 0) { /* first item of s: make its tuple */
            tup = PyTuple_New(c->wcnt[s]);
            if (!tup) goto fail;
            PyObject_GC_UnTrack(tup); /* (untracked item tuples only) */
            if (PyDict_SetItem(waiting, c->sym_ints[s], tup) < 0) {
                Py_DECREF(tup);
                goto fail;
            }
            Py_DECREF(tup);
            c->wfill[s] = 0;
            c->wcnt[s] = -1;
        } else {
            tup = PyDict_GetItem(waiting, c->sym_ints[s]);
        }
        PyObject *t = PyTuple_GET_ITEM(items, i);
        Py_INCREF(t);
        PyTuple_SET_ITEM(tup, c->wfill[s]++, t);
    }
    PyObject *origins = PyList_AsTuple(origins_l);
    if (!origins) goto fail;
    /* Untracked by the cyclic GC from birth: the item tuples hold ints, the origins nodes
     * (records without GC support), the waiting table ints and those tuples, so none can
     * be part of a cycle -- the collector would untrack them itself, but only after
     * traversing them once per generation.  A schema's parser makes hundreds of thousands
     * of these; measured on 120 JSONSchemaBench schemas (2026-12-03), collections during
     * fill_mask were ~20% of all mask time, most of it gen-2 passes over these tuples. */
    PyObject_GC_UnTrack(items);
    PyObject_GC_UnTrack(origins);
    PyObject_GC_UnTrack(waiting);
    set_field(node, c->f_items, items);
    set_field(node, c->f_origins, origins);
    set_field(node, c->f_waiting, waiting);
    Py_DECREF(origins_l);
    Py_DECREF(index);
    PyMem_Free(wsym);
    return 0;
fail:
    Py_XDECREF(items);
    Py_XDECREF(origins_l);
    Py_XDECREF(index);
    Py_XDECREF(waiting);
    PyMem_Free(wsym);
    if (!PyErr_Occurred()) PyErr_NoMemory();
    return -1;
}

static int start_state(Core *c, int t) {
    if (c->starts[t] < 0) {
        PyObject *r = PyObject_CallFunction(c->start_of, "i", t);
        if (!r) return -1;
        long v = PyLong_AsLong(r);
        Py_DECREF(r);
        if (v == -1 && PyErr_Occurred()) return -1;
        c->starts[t] = (int)v;
    }
    return c->starts[t];
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* accepting, expected and key of a node built from the closure (build_node's tail): expected
 * are the terminals some item waits for, sorted; key the lexer entries started here, one per
 * expected or ignored terminal, sorted. */
static int set_summary(Core *c, PyObject *node, Items *items) {
    int acc = 0;
    next_gen(c);
    unsigned int g = c->gen;
    int *syms = PyMem_Malloc((size_t)(items->n + c->n_ignore + 1) * sizeof(int));
    if (!syms) {
        PyErr_NoMemory();
        return -1;
    }
    int n_exp = 0;
    for (Py_ssize_t i = 0; i < items->n; i++) {
        Item *it = &items->a[i];
        if (it->p == c->aug_prod && it->d == 1) acc = 1;
        if (it->d < c->rhs_len[it->p]) {
            int s = c->rhs[c->rhs_off[it->p] + it->d];
            if (s < c->nt && c->wcnt_gen[s] != g) {
                c->wcnt_gen[s] = g;
                syms[n_exp++] = s;
            }
        }
    }
    qsort(syms, (size_t)n_exp, sizeof(int), cmp_int);
    PyObject *exp = PyTuple_New(n_exp), *key = NULL;
    if (!exp) goto fail;
    for (int i = 0; i < n_exp; i++) {
        Py_INCREF(c->sym_ints[syms[i]]);
        PyTuple_SET_ITEM(exp, i, c->sym_ints[syms[i]]);
    }
    int n_key = n_exp;
    for (int i = 0; i < c->n_ignore; i++)
        if (c->wcnt_gen[c->ignore_list[i]] != g) syms[n_key++] = c->ignore_list[i];
    qsort(syms, (size_t)n_key, sizeof(int), cmp_int);
    key = PyTuple_New(n_key);
    if (!key) goto fail;
    for (int i = 0; i < n_key; i++) {
        int q = start_state(c, syms[i]);
        PyObject *pair = q < 0 ? NULL : Py_BuildValue("(ii)", syms[i], q);
        if (!pair) goto fail;
        PyObject_GC_UnTrack(pair); /* (ints: as in set_items) */
        PyTuple_SET_ITEM(key, i, pair);
    }
    PyMem_Free(syms);
    PyObject_GC_UnTrack(exp);
    PyObject_GC_UnTrack(key);
    Py_INCREF(acc ? Py_True : Py_False);
    set_field(node, c->f_accepting, acc ? Py_True : Py_False);
    set_field(node, c->f_expected, exp);
    set_field(node, c->f_key, key);
    return 0;
fail:
    PyMem_Free(syms);
    Py_XDECREF(exp);
    Py_XDECREF(key);
    return -1;
}

static PyObject *new_node(Core *c) {
    PyObject *node = PyObject_CallNoArgs(c->node_type);
    if (node && check_node(c, node) < 0) Py_CLEAR(node);
    return node;
}

/* ---- build_node ------------------------------------------------------------------------------ */

/* Pushes node o's stored items (p, d, k) in tuple its (its items, or a waiting table's entry)
 * onto work, dots moved by shift, origins resolved (k < 0: o itself). */
static int push_node_items(Core *c, Items *work, PyObject *its, PyObject *o, int shift) {
    PyObject *origins = FLD(o, c->f_origins);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(its); i++) {
        PyObject *x = PyTuple_GET_ITEM(its, i);
        int p = (int)PyLong_AsLong(PyTuple_GET_ITEM(x, 0));
        int d = (int)PyLong_AsLong(PyTuple_GET_ITEM(x, 1));
        long k = PyLong_AsLong(PyTuple_GET_ITEM(x, 2));
        if (items_push(work, p, d + shift, k < 0 ? o : PyTuple_GET_ITEM(origins, k)) < 0) return -1;
    }
    return 0;
}

/* Pushes node o's items waiting for symbol s, advanced over it; HorizonReached where o is the
 * horizon (the Python horizon's waiting table raises on any look-up). */
static int push_advanced(Core *c, Items *work, PyObject *o, int s) {
    if (o == c->horizon) {
        PyErr_SetNone(c->exc);
        return -1;
    }
    PyObject *w = PyDict_GetItemWithError(FLD(o, c->f_waiting), c->sym_ints[s]);
    if (!w) return PyErr_Occurred() ? -1 : 0;
    return push_node_items(c, work, w, o, 1);
}

static PyObject *close_seeds(Core *c, Items *work) {
    Items items = {0};
    Set seen = {0};
    PyObject *node = NULL, *ikey = NULL;
    unsigned int *pred = c->pred, *comp = c->comp;
    next_gen(c);
    unsigned int g = c->gen;
    /* the node's own unfinished items by next symbol, as chains of indexes into items */
    int *whead = NULL, *wtail = NULL, *wnext = NULL;
    Py_ssize_t wcap = 0;
    unsigned int *wgen = c->wcnt_gen; /* (per symbol: chain valid in this generation) */
    whead = PyMem_Malloc((size_t)c->n_syms * sizeof(int));
    wtail = PyMem_Malloc((size_t)c->n_syms * sizeof(int));
    if (!whead || !wtail || set_init(&seen, 64) < 0) goto fail;
    while (work->n) {
        Item it = work->a[--work->n];
        int p = it.p, d = it.d;
        long long ou = it.org ? uid_of(c, it.org) : 0;
        int64_t k = (int64_t)((ou * c->np_ + p) * c->nd + d);
        int added = set_add(&seen, k);
        if (added < 0) goto fail;
        if (!added) continue;
        Py_ssize_t idx = items.n;
        if (items_push(&items, p, d, it.org) < 0) goto fail;
        int lhs = c->lhs[p];
        if (d == c->rhs_len[p]) {
            if (it.org == NULL) {
                comp[lhs] = g;
                if (wgen[lhs] == g)
                    for (int w = whead[lhs]; w >= 0; w = wnext[w])
                        if (items_push(work, items.a[w].p, items.a[w].d + 1, items.a[w].org) < 0) goto fail;
            } else if (push_advanced(c, work, it.org, lhs) < 0) {
                goto fail;
            }
            continue;
        }
        int s = c->rhs[c->rhs_off[p] + d];
        if (idx >= wcap) {
            Py_ssize_t cap = wcap ? 2 * wcap : 64;
            while (cap <= idx) cap *= 2;
            int *nn = PyMem_Realloc(wnext, (size_t)cap * sizeof(int));
            if (!nn) {
                PyErr_NoMemory();
                goto fail;
            }
            wnext = nn;
            wcap = cap;
        }
        wnext[idx] = -1;
        if (wgen[s] != g) {
            wgen[s] = g;
            whead[s] = (int)idx;
        } else {
            wnext[wtail[s]] = (int)idx;
        }
        wtail[s] = (int)idx;
        if (s >= c->nt) {
            if (pred[s] != g) {
                pred[s] = g;
                for (int j = c->bl_off[s]; j < c->bl_off[s + 1]; j++)
                    if (items_push(work, c->bl[j], 0, NULL) < 0) goto fail;
            }
            if (c->nullable[s] || comp[s] == g)
                if (items_push(work, p, d + 1, it.org) < 0) goto fail;
        }
    }
    ikey = sorted_key(&seen);
    if (!ikey) goto fail;
    node = PyDict_GetItemWithError(c->intern, ikey);
    if (node) {
        Py_INCREF(node);
    } else {
        if (PyErr_Occurred()) goto fail;
        node = new_node(c);
        if (!node) goto fail;
        if (set_items(c, node, &items) < 0 || set_summary(c, node, &items) < 0) goto fail;
        if (PyDict_GET_SIZE(c->intern) > INTERN_MAX) PyDict_Clear(c->intern);
        if (PyDict_SetItem(c->intern, ikey, node) < 0 || PyDict_SetItem(c->nodes, FLD(node, c->f_uid), node) < 0)
            goto fail;
    }
    Py_DECREF(ikey);
    PyMem_Free(items.a);
    PyMem_Free(seen.keys);
    PyMem_Free(whead);
    PyMem_Free(wtail);
    PyMem_Free(wnext);
    return node;
fail:
    Py_XDECREF(node);
    Py_XDECREF(ikey);
    PyMem_Free(items.a);
    PyMem_Free(seen.keys);
    PyMem_Free(whead);
    PyMem_Free(wtail);
    PyMem_Free(wnext);
    return NULL;
}

static int check_prod(Core *c, long p, long d) {
    if (p < 0 || p >= c->n_prods || d < 0 || d > c->rhs_len[p]) {
        PyErr_Format(PyExc_ValueError, "item (%ld, %ld) is not a production and dot of this grammar", p, d);
        return -1;
    }
    return 0;
}

static PyObject *core_build_node(Core *c, PyObject *seeds) {
    PyObject *fast = PySequence_Fast(seeds, "build_node takes a collection of (production, dot, origin) items");
    if (!fast) return NULL;
    Items work = {0};
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PySequence_Fast_GET_ITEM(fast, i);
        long p, d;
        PyObject *o;
        if (!PyTuple_Check(t) || !PyArg_ParseTuple(t, "llO", &p, &d, &o)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "seeds are (production, dot, origin) tuples");
            goto fail;
        }
        if (check_prod(c, p, d) < 0) goto fail;
        if (o != Py_None && check_node(c, o) < 0) goto fail;
        if (items_push(&work, (int)p, (int)d, o == Py_None ? NULL : o) < 0) goto fail;
    }
    PyObject *r = close_seeds(c, &work);
    PyMem_Free(work.a);
    Py_DECREF(fast);
    return r;
fail:
    PyMem_Free(work.a);
    Py_DECREF(fast);
    return NULL;
}

/* ---- complete -------------------------------------------------------------------------------- */

static PyObject *core_complete(Core *c, PyObject *done) {
    PyObject *fast = PySequence_Fast(done, "complete takes a collection of (node, terminal) pairs");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject *key = NULL, *node = NULL;
    Items work = {0};
    int64_t one[1];
    int64_t *codes = n <= 1 ? one : PyMem_Malloc((size_t)n * sizeof(int64_t));
    if (!codes) {
        Py_DECREF(fast);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pr = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(pr) || PyTuple_GET_SIZE(pr) != 2) {
            PyErr_SetString(PyExc_TypeError, "complete takes (node, terminal) pairs");
            goto fail;
        }
        PyObject *o = PyTuple_GET_ITEM(pr, 0);
        long t = PyLong_AsLong(PyTuple_GET_ITEM(pr, 1));
        if (t == -1 && PyErr_Occurred()) goto fail;
        if (check_node(c, o) < 0) goto fail;
        if (t < 0 || t >= c->nt) {
            PyErr_Format(PyExc_ValueError, "terminal %ld out of range (the grammar has %d)", t, c->nt);
            goto fail;
        }
        codes[i] = (int64_t)(uid_of(c, o) * c->nt + t);
    }
    Py_ssize_t m = n;
    if (n > 1) { /* distinct codes, sorted */
        qsort(codes, (size_t)n, sizeof(int64_t), cmp_i64);
        m = 1;
        for (Py_ssize_t i = 1; i < n; i++)
            if (codes[i] != codes[m - 1]) codes[m++] = codes[i];
    }
    if (m == 1) {
        key = PyLong_FromLongLong(codes[0]);
    } else {
        key = PyBytes_FromStringAndSize((const char *)codes, (Py_ssize_t)(m * (Py_ssize_t)sizeof(int64_t)));
    }
    if (!key) goto fail;
    PyObject *hit = PyDict_GetItemWithError(c->cache, key);
    if (hit) {
        if (hit == c->horizon) {
            PyErr_SetNone(c->exc);
            goto fail;
        }
        Py_INCREF(hit);
        node = hit;
        goto done;
    }
    if (PyErr_Occurred()) goto fail;
    /* one origin and only ignored terminals: ignored text is invisible to the grammar */
    PyObject *first = n ? PyTuple_GET_ITEM(PySequence_Fast_GET_ITEM(fast, 0), 0) : NULL;
    int trivial = n > 0;
    for (Py_ssize_t i = 0; i < n && trivial; i++) {
        PyObject *pr = PySequence_Fast_GET_ITEM(fast, i);
        if (PyTuple_GET_ITEM(pr, 0) != first || !c->ignore[PyLong_AsLong(PyTuple_GET_ITEM(pr, 1))]) trivial = 0;
    }
    if (trivial) {
        Py_INCREF(first);
        node = first;
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *pr = PySequence_Fast_GET_ITEM(fast, i);
            PyObject *o = PyTuple_GET_ITEM(pr, 0);
            int t = (int)PyLong_AsLong(PyTuple_GET_ITEM(pr, 1));
            /* (ignored: full_items(), the item set itself starts again; the horizon has no
             * items, and push_advanced raises for it, not remembered) */
            if (c->ignore[t] && push_node_items(c, &work, FLD(o, c->f_items), o, 0) < 0) goto fail;
            if (push_advanced(c, &work, o, t) < 0) goto fail;
        }
        /* (origins None never occur here: every seed names a real node) */
        node = close_seeds(c, &work);
        if (!node) {
            if (PyErr_ExceptionMatches(c->exc)) {
                PyObject *et, *ev, *tb;
                PyErr_Fetch(&et, &ev, &tb);
                int r = PyDict_SetItem(c->cache, key, c->horizon);
                PyErr_Restore(et, ev, tb);
                if (r < 0) PyErr_Clear();
            }
            goto fail;
        }
    }
    if (PyDict_GET_SIZE(c->cache) > COMPLETE_MAX) PyDict_Clear(c->cache);
    if (PyDict_SetItem(c->cache, key, node) < 0) goto fail;
done:
    Py_DECREF(key);
    PyMem_Free(work.a);
    if (codes != one) PyMem_Free(codes);
    Py_DECREF(fast);
    return node;
fail:
    Py_XDECREF(node);
    Py_XDECREF(key);
    PyMem_Free(work.a);
    if (codes != one) PyMem_Free(codes);
    Py_DECREF(fast);
    return NULL;
}

/* ---- view -------------------------------------------------------------------------------------- */

static PyObject *view_rec(Core *c, PyObject *node, long k) {
    if (k <= 0 || node == c->horizon) {
        Py_INCREF(c->horizon);
        return c->horizon;
    }
    PyObject *kk = PyLong_FromLong(k);
    if (!kk) return NULL;
    PyObject *views = PyDict_GetItemWithError(c->views, kk);
    if (!views) {
        if (PyErr_Occurred()) {
            Py_DECREF(kk);
            return NULL;
        }
        views = PyDict_New();
        if (!views || PyDict_SetItem(c->views, kk, views) < 0) {
            Py_XDECREF(views);
            Py_DECREF(kk);
            return NULL;
        }
        Py_DECREF(views); /* (held by c->views) */
    } else {
        PyObject *v = PyDict_GetItemWithError(views, FLD(node, c->f_uid));
        if (v) {
            Py_DECREF(kk);
            Py_INCREF(v);
            return v;
        }
        if (PyErr_Occurred()) {
            Py_DECREF(kk);
            return NULL;
        }
    }
    Py_INCREF(views); /* (the dicts may be replaced below) */
    PyObject *origins = FLD(node, c->f_origins);
    PyObject *its = FLD(node, c->f_items);
    Py_ssize_t no = PyTuple_GET_SIZE(origins), ni = PyTuple_GET_SIZE(its);
    PyObject **sub = PyMem_Calloc((size_t)(no ? no : 1), sizeof(PyObject *));
    Items full = {0};
    Set seen = {0};
    PyObject *ikey = NULL, *v = NULL;
    if (!sub || set_init(&seen, 64) < 0) goto fail;
    for (Py_ssize_t i = 0; i < no; i++) {
        sub[i] = view_rec(c, PyTuple_GET_ITEM(origins, i), k - 1);
        if (!sub[i]) goto fail;
    }
    for (Py_ssize_t i = 0; i < ni; i++) {
        PyObject *x = PyTuple_GET_ITEM(its, i);
        int p = (int)PyLong_AsLong(PyTuple_GET_ITEM(x, 0));
        int d = (int)PyLong_AsLong(PyTuple_GET_ITEM(x, 1));
        long j = PyLong_AsLong(PyTuple_GET_ITEM(x, 2));
        long long ou = j < 0 ? 0 : uid_of(c, sub[j]);
        int added = set_add(&seen, (int64_t)((ou * c->np_ + p) * c->nd + d));
        if (added < 0) goto fail;
        if (added && items_push(&full, p, d, j < 0 ? NULL : sub[j]) < 0) goto fail;
    }
    ikey = sorted_key(&seen);
    if (!ikey) goto fail;
    v = PyDict_GetItemWithError(c->view_intern, ikey);
    if (v) {
        Py_INCREF(v);
    } else {
        if (PyErr_Occurred()) goto fail;
        v = new_node(c);
        if (!v || set_items(c, v, &full) < 0) goto fail;
        Py_INCREF(FLD(node, c->f_accepting));
        set_field(v, c->f_accepting, FLD(node, c->f_accepting));
        Py_INCREF(FLD(node, c->f_expected));
        set_field(v, c->f_expected, FLD(node, c->f_expected));
        Py_INCREF(FLD(node, c->f_key));
        set_field(v, c->f_key, FLD(node, c->f_key));
        if (PyDict_GET_SIZE(c->view_intern) > INTERN_MAX) {
            PyDict_Clear(c->view_intern);
            PyDict_Clear(c->views); /* (it keeps views of views alive too) */
            Py_DECREF(views);
            views = PyDict_New();
            if (!views || PyDict_SetItem(c->views, kk, views) < 0) goto fail;
        }
        if (PyDict_SetItem(c->view_intern, ikey, v) < 0) goto fail;
    }
    if (PyDict_SetItem(views, FLD(node, c->f_uid), v) < 0) goto fail;
    for (Py_ssize_t i = 0; i < no; i++) Py_XDECREF(sub[i]);
    PyMem_Free(sub);
    PyMem_Free(full.a);
    PyMem_Free(seen.keys);
    Py_DECREF(ikey);
    Py_DECREF(views);
    Py_DECREF(kk);
    return v;
fail:
    if (sub)
        for (Py_ssize_t i = 0; i < no; i++) Py_XDECREF(sub[i]);
    PyMem_Free(sub);
    PyMem_Free(full.a);
    PyMem_Free(seen.keys);
    Py_XDECREF(ikey);
    Py_XDECREF(v);
    Py_XDECREF(views);
    Py_DECREF(kk);
    return NULL;
}

static PyObject *core_view(Core *c, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "view(node, k) takes 2 arguments");
        return NULL;
    }
    if (check_node(c, args[0]) < 0) return NULL;
    long k = PyLong_AsLong(args[1]);
    if (k == -1 && PyErr_Occurred()) return NULL;
    return view_rec(c, args[0], k);
}

/* ---- the type ------------------------------------------------------------------------------- */

/* the object references the core holds, for the GC protocol's two walks over them */
#define CORE_OBJECTS(X) \
    X(node_type) X(horizon) X(exc) X(intern) X(nodes) X(cache) X(view_intern) X(views) X(start_of)

static int core_traverse(Core *c, visitproc visit, void *arg) {
#define VISIT(f) Py_VISIT(c->f);
    CORE_OBJECTS(VISIT)
#undef VISIT
    return 0;
}

static int core_clear(Core *c) {
#define CLEAR(f) Py_CLEAR(c->f);
    CORE_OBJECTS(CLEAR)
#undef CLEAR
    return 0;
}

static void core_free_arrays(Core *c) {
    PyMem_Free(c->lhs);
    PyMem_Free(c->rhs_off);
    PyMem_Free(c->rhs_len);
    PyMem_Free(c->rhs);
    PyMem_Free(c->bl_off);
    PyMem_Free(c->bl);
    PyMem_Free(c->nullable);
    PyMem_Free(c->ignore);
    PyMem_Free(c->ignore_list);
    PyMem_Free(c->starts);
    PyMem_Free(c->pred);
    PyMem_Free(c->comp);
    PyMem_Free(c->wcnt_gen);
    PyMem_Free(c->wcnt);
    PyMem_Free(c->wfill);
    if (c->sym_ints) {
        for (int i = 0; i < c->n_syms; i++) Py_XDECREF(c->sym_ints[i]);
        PyMem_Free(c->sym_ints);
    }
}

static void core_dealloc(Core *c) {
    PyObject_GC_UnTrack(c);
    core_clear(c);
    core_free_arrays(c);
    PyTypeObject *tp = Py_TYPE(c);
    tp->tp_free(c);
    Py_DECREF(tp);
}

static int is_field_ok(Core *c) {
    /* the record type's slots: one PyObject* per field after the header */
    PyTypeObject *tp = (PyTypeObject *)c->node_type;
    Py_ssize_t n = (tp->tp_basicsize - (Py_ssize_t)sizeof(PyObject)) / (Py_ssize_t)sizeof(PyObject *);
    Py_ssize_t fs[] = {c->f_uid, c->f_items, c->f_origins, c->f_waiting, c->f_accepting, c->f_expected, c->f_key};
    for (size_t i = 0; i < sizeof(fs) / sizeof(fs[0]); i++) {
        Py_ssize_t idx = (fs[i] - (Py_ssize_t)sizeof(PyObject)) / (Py_ssize_t)sizeof(PyObject *);
        if (idx < 0 || idx >= n) return 0;
    }
    return tp->tp_itemsize == 0 && !(tp->tp_flags & Py_TPFLAGS_HAVE_GC) && tp->tp_dictoffset == 0;
}

/* EarleyCore(prods, nullable, ignore, n_terminals, aug_prod, code, node_type, horizon, exc,
 *            tables, start_of, fields)
 * prods: [(lhs, rhs tuple)]; nullable: collection of symbols; ignore: collection of terminals;
 * code: (n_prods, max rhs + 1); tables: (intern, nodes, complete cache, view intern, views)
 * dicts; start_of(t) -> DFA start state; fields: slot indexes of (uid, items, origins, waiting,
 * accepting, expected, key) in node_type. */
static PyObject *core_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *prods, *nullable, *ignore, *node_type, *horizon, *exc, *tables, *start_of, *fields;
    int nt, aug;
    long long np_, nd;
    if (kwds && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "EarleyCore takes positional arguments only");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O!OOii(LL)OOOO!OO!:EarleyCore", &PyList_Type, &prods, &nullable, &ignore, &nt, &aug,
                          &np_, &nd, &node_type, &horizon, &exc, &PyTuple_Type, &tables, &start_of, &PyTuple_Type,
                          &fields))
        return NULL;
    if (!PyExceptionClass_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "exc must be an exception class (HorizonReached)");
        return NULL;
    }
    if (!PyType_Check(node_type) || Py_TYPE(horizon) != (PyTypeObject *)node_type) {
        PyErr_SetString(PyExc_TypeError, "node_type must be a type and horizon one of its instances");
        return NULL;
    }
    if (PyTuple_GET_SIZE(tables) != 5 || PyTuple_GET_SIZE(fields) != 7) {
        PyErr_SetString(PyExc_ValueError, "tables: 5 dicts; fields: 7 slot indexes");
        return NULL;
    }
    for (int i = 0; i < 5; i++)
        if (!PyDict_Check(PyTuple_GET_ITEM(tables, i))) {
            PyErr_SetString(PyExc_TypeError, "tables must be dicts");
            return NULL;
        }
    Core *c = (Core *)type->tp_alloc(type, 0);
    if (!c) return NULL;
    Py_ssize_t *fo[] = {&c->f_uid, &c->f_items, &c->f_origins, &c->f_waiting, &c->f_accepting, &c->f_expected, &c->f_key};
    for (int i = 0; i < 7; i++) {
        long fi = PyLong_AsLong(PyTuple_GET_ITEM(fields, i));
        if (fi == -1 && PyErr_Occurred()) goto fail;
        *fo[i] = (Py_ssize_t)sizeof(PyObject) + fi * (Py_ssize_t)sizeof(PyObject *);
    }
    c->node_type = Py_NewRef(node_type);
    c->horizon = Py_NewRef(horizon);
    c->exc = Py_NewRef(exc);
    c->intern = Py_NewRef(PyTuple_GET_ITEM(tables, 0));
    c->nodes = Py_NewRef(PyTuple_GET_ITEM(tables, 1));
    c->cache = Py_NewRef(PyTuple_GET_ITEM(tables, 2));
    c->view_intern = Py_NewRef(PyTuple_GET_ITEM(tables, 3));
    c->views = Py_NewRef(PyTuple_GET_ITEM(tables, 4));
    c->start_of = Py_NewRef(start_of);
    if (!is_field_ok(c)) {
        PyErr_SetString(PyExc_TypeError, "node_type is not a record type with those fields (native/records.c)");
        goto fail;
    }
    c->nt = nt;
    c->aug_prod = aug;
    c->np_ = np_;
    c->nd = nd;
    Py_ssize_t n_prods = PyList_GET_SIZE(prods);
    c->n_prods = (int)n_prods;
    if (nt < 0 || aug < 0 || aug >= n_prods || np_ != n_prods) {
        PyErr_SetString(PyExc_ValueError, "inconsistent grammar sizes");
        goto fail;
    }
    /* symbols: every lhs and rhs symbol is below n_syms */
    int n_syms = nt;
    Py_ssize_t total = 0;
    for (Py_ssize_t p = 0; p < n_prods; p++) {
        PyObject *pr = PyList_GET_ITEM(prods, p);
        PyObject *rhs;
        int lhs;
        if (!PyTuple_Check(pr) || !PyArg_ParseTuple(pr, "iO!", &lhs, &PyTuple_Type, &rhs)) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "prods are (lhs, rhs tuple)");
            goto fail;
        }
        if (lhs + 1 > n_syms) n_syms = lhs + 1;
        total += PyTuple_GET_SIZE(rhs);
        if (PyTuple_GET_SIZE(rhs) + 1 > nd) {
            PyErr_SetString(PyExc_ValueError, "code's second part must exceed every rhs length");
            goto fail;
        }
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rhs); i++) {
            long s = PyLong_AsLong(PyTuple_GET_ITEM(rhs, i));
            if (s < 0) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative symbol");
                goto fail;
            }
            if (s + 1 > n_syms) n_syms = (int)s + 1;
        }
    }
    c->n_syms = n_syms;
    c->lhs = PyMem_Malloc((size_t)n_prods * sizeof(int));
    c->rhs_off = PyMem_Malloc((size_t)n_prods * sizeof(int));
    c->rhs_len = PyMem_Malloc((size_t)n_prods * sizeof(int));
    c->rhs = PyMem_Malloc((size_t)(total ? total : 1) * sizeof(int));
    c->bl_off = PyMem_Calloc((size_t)n_syms + 1, sizeof(int));
    c->bl = PyMem_Malloc((size_t)(n_prods ? n_prods : 1) * sizeof(int));
    c->nullable = PyMem_Calloc((size_t)n_syms, 1);
    c->ignore = PyMem_Calloc((size_t)(nt ? nt : 1), 1);
    c->ignore_list = PyMem_Malloc((size_t)(nt ? nt : 1) * sizeof(int));
    c->starts = PyMem_Malloc((size_t)(nt ? nt : 1) * sizeof(int));
    c->pred = PyMem_Calloc((size_t)n_syms, sizeof(unsigned int));
    c->comp = PyMem_Calloc((size_t)n_syms, sizeof(unsigned int));
    c->wcnt_gen = PyMem_Calloc((size_t)n_syms, sizeof(unsigned int));
    c->wcnt = PyMem_Calloc((size_t)n_syms, sizeof(int));
    c->wfill = PyMem_Calloc((size_t)n_syms, sizeof(int));
    c->sym_ints = PyMem_Calloc((size_t)n_syms, sizeof(PyObject *));
    if (!c->lhs || !c->rhs_off || !c->rhs_len || !c->rhs || !c->bl_off || !c->bl || !c->nullable || !c->ignore ||
        !c->ignore_list || !c->starts || !c->pred || !c->comp || !c->wcnt_gen || !c->wcnt || !c->wfill ||
        !c->sym_ints) {
        PyErr_NoMemory();
        goto fail;
    }
    c->gen = 1;
    for (int t = 0; t < nt; t++) c->starts[t] = -1;
    for (int s = 0; s < n_syms; s++)
        if (!(c->sym_ints[s] = PyLong_FromLong(s))) goto fail;
    Py_ssize_t off = 0;
    for (Py_ssize_t p = 0; p < n_prods; p++) {
        PyObject *pr = PyList_GET_ITEM(prods, p);
        PyObject *rhs = PyTuple_GET_ITEM(pr, 1);
        c->lhs[p] = (int)PyLong_AsLong(PyTuple_GET_ITEM(pr, 0));
        c->rhs_off[p] = (int)off;
        c->rhs_len[p] = (int)PyTuple_GET_SIZE(rhs);
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rhs); i++) c->rhs[off++] = (int)PyLong_AsLong(PyTuple_GET_ITEM(rhs, i));
        c->bl_off[c->lhs[p] + 1]++;
    }
    for (int s = 0; s < n_syms; s++) c->bl_off[s + 1] += c->bl_off[s];
    {
        int *fill = PyMem_Calloc((size_t)n_syms, sizeof(int));
        if (!fill) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t p = 0; p < n_prods; p++) c->bl[c->bl_off[c->lhs[p]] + fill[c->lhs[p]]++] = (int)p;
        PyMem_Free(fill);
    }
    PyObject *it = PyObject_GetIter(nullable), *x;
    if (!it) goto fail;
    while ((x = PyIter_Next(it))) {
        long s = PyLong_AsLong(x);
        Py_DECREF(x);
        if (s >= 0 && s < n_syms) c->nullable[s] = 1;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) goto fail;
    it = PyObject_GetIter(ignore);
    if (!it) goto fail;
    while ((x = PyIter_Next(it))) {
        long t = PyLong_AsLong(x);
        Py_DECREF(x);
        if (t < 0 || t >= nt) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "ignored terminal out of range");
            break;
        }
        c->ignore[t] = 1;
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) goto fail;
    c->n_ignore = 0;
    for (int t = 0; t < nt; t++)
        if (c->ignore[t]) c->ignore_list[c->n_ignore++] = t;
    return (PyObject *)c;
fail:
    Py_DECREF(c);
    return NULL;
}

static PyMethodDef core_methods[] = {
    {"build_node", (PyCFunction)core_build_node, METH_O,
     "build_node(seeds): the node closing seeds (production, dot, origin or None) under predict/complete."},
    {"complete", (PyCFunction)core_complete, METH_O,
     "complete(done): the node after the (origin node, terminal) pairs in done complete."},
    {"view", (PyCFunction)(void (*)(void))core_view, METH_FASTCALL,
     "view(node, k): node with origins truncated k levels deep (EarleyGrammar.view)."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot core_slots[] = {
    {Py_tp_new, (void *)core_new},
    {Py_tp_dealloc, (void *)core_dealloc},
    {Py_tp_traverse, (void *)core_traverse},
    {Py_tp_clear, (void *)core_clear},
    {Py_tp_methods, core_methods},
    {Py_tp_doc, "Earley item-set primitives in C (native/earley.c); EarleyGrammar's Python methods are the reference."},
    {0, NULL},
};

static PyType_Spec core_spec = {
    .name = "constrain._native.EarleyCore",
    .basicsize = sizeof(Core),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = core_slots,
};

/* Called from PyInit__native (native/maskwriter.c). */
int constrain_earley_init(PyObject *m) {
    PyObject *tp = PyType_FromSpec(&core_spec);
    if (!tp) return -1;
    if (PyModule_AddObject(m, "EarleyCore", tp) < 0) {
        Py_DECREF(tp);
        return -1;
    }
    return 0;
}
