/* constrain._native.cfg_walk / cfg_subtree: the cache-hit traversal of a CFG token mask in C.
 *
 * CompiledGrammar._walk, _walk_apart and _subtree (constrain/engine/cfg_matcher.py) are the
 * definitions, and stay the reference (CompiledGrammar(..., native_walk=False)); the tests
 * compare the masks of the two.  A mask that misses the mask caches recurses through them
 * over its lexeme boundaries: per mask ~10 walk-cache look-ups, ~5 subtrees, ~6 parser
 * completions, almost all of them hits -- yet each hit cost a few microseconds of
 * interpreted dict, tuple and attribute work.  Measured on 120 JSONSchemaBench schemas
 * (2026-12-03, cProfile): that interpretation was about half of all mask time.
 *
 * Only the hit paths live here.  Every miss calls the grammar's own Python method (lexer,
 * walk_key, content_key, job, _union, _drop_walked), so what is built, how it is keyed and
 * how caches are evicted is defined in one place.  The caches are the grammar's dicts and
 * OrderedDicts, read with the dict API (an OrderedDict is a dict) and written with the
 * object API (which keeps its order).  The grammar's attributes are fetched per call, not
 * held: an object holding the grammar's bound methods would make a reference cycle, and
 * cycles leave a grammar to the cyclic GC (see native/earley.c on why that hurts).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* set once by cfg_walk_setup: HorizonReached, and cfg_matcher's _roots_key, _chains, sparsify */
static PyObject *g_horizon_exc, *g_roots_key, *g_chains, *g_sparsify;

static PyObject *s_lexers, *s_wkeys, *s_dkeys, *s_jobs, *s_subs, *s_unions, *s_split, *s_cache_jobs, *s_stats,
    *s_parser, *s_complete, *s_zeros, *s_lexer, *s_walk_key, *s_content_key, *s_job, *s_drop_walked, *s_union,
    *s_start, *s_completing, *s_idx, *s_vals, *s_bnd, *s_uid, *s_key, *s_move_to_end, *s_popitem, *s_job_hits,
    *s_sub_hits, *s_union_hits;

typedef struct {
    PyObject *cg;
    PyObject *lexers, *wkeys, *dkeys, *jobs, *subs, *unions, *complete, *zeros;
    int split;
    Py_ssize_t cache_jobs;
    long job_hits, sub_hits, union_hits;
} Ctx;

static void ctx_clear(Ctx *c) {
    Py_CLEAR(c->lexers);
    Py_CLEAR(c->wkeys);
    Py_CLEAR(c->dkeys);
    Py_CLEAR(c->jobs);
    Py_CLEAR(c->subs);
    Py_CLEAR(c->unions);
    Py_CLEAR(c->complete);
    Py_CLEAR(c->zeros);
}

static int need_dict(PyObject *o, const char *what) {
    if (!PyDict_Check(o)) {
        PyErr_Format(PyExc_TypeError, "the grammar's %s must be a dict, got %.100s", what, Py_TYPE(o)->tp_name);
        return -1;
    }
    return 0;
}

static int ctx_init(Ctx *c, PyObject *cg) {
    memset(c, 0, sizeof(*c));
    if (!g_horizon_exc) {
        PyErr_SetString(PyExc_RuntimeError, "cfg_walk_setup was not called");
        return -1;
    }
    c->cg = cg;
    PyObject *parser = NULL, *split = NULL, *cj = NULL;
    if (!(c->lexers = PyObject_GetAttr(cg, s_lexers)) || !(c->wkeys = PyObject_GetAttr(cg, s_wkeys)) ||
        !(c->dkeys = PyObject_GetAttr(cg, s_dkeys)) || !(c->jobs = PyObject_GetAttr(cg, s_jobs)) ||
        !(c->subs = PyObject_GetAttr(cg, s_subs)) || !(c->unions = PyObject_GetAttr(cg, s_unions)) ||
        !(c->zeros = PyObject_GetAttr(cg, s_zeros)) || !(parser = PyObject_GetAttr(cg, s_parser)) ||
        !(c->complete = PyObject_GetAttr(parser, s_complete)) || !(split = PyObject_GetAttr(cg, s_split)) ||
        !(cj = PyObject_GetAttr(cg, s_cache_jobs)))
        goto fail;
    if (need_dict(c->lexers, "_lexers") < 0 || need_dict(c->wkeys, "_wkeys") < 0 || need_dict(c->dkeys, "_dkeys") < 0 ||
        need_dict(c->jobs, "_jobs") < 0 || need_dict(c->subs, "_subs") < 0 || need_dict(c->unions, "_unions") < 0)
        goto fail;
    c->split = PyObject_IsTrue(split);
    if (c->split < 0) goto fail;
    c->cache_jobs = PyLong_AsSsize_t(cj);
    if (c->cache_jobs == -1 && PyErr_Occurred()) goto fail;
    Py_DECREF(parser);
    Py_DECREF(split);
    Py_DECREF(cj);
    return 0;
fail:
    Py_XDECREF(parser);
    Py_XDECREF(split);
    Py_XDECREF(cj);
    ctx_clear(c);
    return -1;
}

static int bump(PyObject *stats, PyObject *name, long n) {
    if (!n) return 0;
    PyObject *v = PyObject_GetItem(stats, name);
    if (!v) return -1;
    PyObject *nn = PyLong_FromLong(n);
    PyObject *s = nn ? PyNumber_Add(v, nn) : NULL;
    Py_DECREF(v);
    Py_XDECREF(nn);
    if (!s) return -1;
    int r = PyObject_SetItem(stats, name, s);
    Py_DECREF(s);
    return r;
}

/* the hit counters into cg.stats (once per call, not per hit) */
static int ctx_flush(Ctx *c) {
    PyObject *stats = PyObject_GetAttr(c->cg, s_stats);
    if (!stats) return -1;
    int r = (bump(stats, s_job_hits, c->job_hits) < 0 || bump(stats, s_sub_hits, c->sub_hits) < 0 ||
             bump(stats, s_union_hits, c->union_hits) < 0)
                ? -1
                : 0;
    Py_DECREF(stats);
    return r;
}

/* out[idx[i]] |= vals[i] over the buffer protocol (4-byte items; indices checked) */
static int or_into(PyObject *out, PyObject *idx, PyObject *vals) {
    Py_buffer o, ib, vb;
    if (PyObject_GetBuffer(idx, &ib, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (ib.len == 0) {
        PyBuffer_Release(&ib);
        return 0;
    }
    if (PyObject_GetBuffer(vals, &vb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&ib);
        return -1;
    }
    if (PyObject_GetBuffer(out, &o, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&vb);
        PyBuffer_Release(&ib);
        return -1;
    }
    int r = 0;
    if (o.itemsize != 4 || ib.itemsize != 4 || vb.itemsize != 4 || vb.len != ib.len) {
        PyErr_SetString(PyExc_TypeError, "mask words, indices and values must be 4-byte items, indices and values alike long");
        r = -1;
    } else {
        Py_ssize_t n = ib.len / 4, words = o.len / 4;
        uint32_t *w = (uint32_t *)o.buf;
        const int32_t *ix = (const int32_t *)ib.buf;
        const uint32_t *vv = (const uint32_t *)vb.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (ix[i] < 0 || ix[i] >= words) {
                PyErr_Format(PyExc_IndexError, "word index %d out of range [0, %zd)", (int)ix[i], words);
                r = -1;
                break;
            }
            w[ix[i]] |= vv[i];
        }
    }
    PyBuffer_Release(&o);
    PyBuffer_Release(&vb);
    PyBuffer_Release(&ib);
    return r;
}

/* OrderedDict hit: to the end (an entry evicted meanwhile through another grammar is fine) */
static int touch(PyObject *od, PyObject *k) {
    PyObject *r = PyObject_CallMethodOneArg(od, s_move_to_end, k);
    if (r) {
        Py_DECREF(r);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_KeyError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

static PyObject *get_lexer(Ctx *c, PyObject *key) {
    PyObject *lx = PyDict_GetItemWithError(c->lexers, key);
    if (lx) {
        Py_INCREF(lx);
        return lx;
    }
    if (PyErr_Occurred()) return NULL;
    return PyObject_CallMethodOneArg(c->cg, s_lexer, key);
}

static PyObject *get_walk_key(Ctx *c, PyObject *key) {
    PyObject *w = PyDict_GetItemWithError(PyTuple_GET_SIZE(key) == 1 ? c->wkeys : c->dkeys, key);
    if (w) {
        Py_INCREF(w);
        return w;
    }
    if (PyErr_Occurred()) return NULL;
    return PyObject_CallMethodOneArg(c->cg, s_walk_key, key);
}

static PyObject *get_content_key(Ctx *c, PyObject *key) {
    PyObject *d = PyDict_GetItemWithError(c->dkeys, key);
    if (d) {
        Py_INCREF(d);
        return d;
    }
    if (PyErr_Occurred()) return NULL;
    return PyObject_CallMethodOneArg(c->cg, s_content_key, key);
}

static PyObject *get_job(Ctx *c, PyObject *wk, PyObject *rk, PyObject *lx, PyObject *roots) {
    PyObject *chain = PyTuple_Pack(2, wk, rk);
    if (!chain) return NULL;
    PyObject *j = PyDict_GetItemWithError(c->jobs, chain);
    if (j) {
        Py_INCREF(j);
        if (touch(c->jobs, chain) < 0) Py_CLEAR(j);
        else c->job_hits++;
    } else if (!PyErr_Occurred()) {
        PyObject *args[4] = {c->cg, chain, lx, roots};
        j = PyObject_VectorcallMethod(s_job, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    }
    Py_DECREF(chain);
    return j;
}

static PyObject *roots_key(PyObject *roots) { return PyObject_CallOneArg(g_roots_key, roots); }

/* _uid_pairs(done): sorted distinct (origin uid, terminal) pairs, as a tuple */
static PyObject *uid_pairs(PyObject *done) {
    PyObject *set = PySet_New(NULL), *lst = NULL, *res = NULL;
    if (!set) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(done); i++) {
        PyObject *pr = PyList_GET_ITEM(done, i);
        PyObject *u = PyObject_GetAttr(PyTuple_GET_ITEM(pr, 0), s_uid);
        if (!u) goto done;
        PyObject *t = PyTuple_Pack(2, u, PyTuple_GET_ITEM(pr, 1));
        Py_DECREF(u);
        if (!t) goto done;
        int r = PySet_Add(set, t);
        Py_DECREF(t);
        if (r < 0) goto done;
    }
    lst = PySequence_List(set);
    if (!lst || PyList_Sort(lst) < 0) goto done;
    res = PyList_AsTuple(lst);
done:
    Py_DECREF(set);
    Py_XDECREF(lst);
    return res;
}

static int extend(PyObject *dst, PyObject *src) {
    if (!src) return -1;
    int r = 0;
    if (PyList_GET_SIZE(src)) r = PyList_SetSlice(dst, PY_SSIZE_T_MAX, PY_SSIZE_T_MAX, src);
    Py_DECREF(src);
    return r;
}

static PyObject *walk(Ctx *c, PyObject *out, PyObject *entries, PyObject *key, PyObject *roots, PyObject *visited,
                      PyObject *rk);
static PyObject *subtree(Ctx *c, PyObject *out, PyObject *y, PyObject *nodes, PyObject *rk);

/* CompiledGrammar._walk_apart */
static PyObject *walk_apart(Ctx *c, PyObject *out, PyObject *entries, PyObject *key, PyObject *roots,
                            PyObject *visited) {
    PyObject *rk = NULL, *ck = NULL, *ukey = NULL, *u = NULL, *deferred = NULL;
    if (!(rk = roots_key(roots)) || !(ck = get_content_key(c, key)) || !(ukey = PyTuple_Pack(2, ck, rk))) goto fail;
    u = PyDict_GetItemWithError(c->unions, ukey);
    if (u) {
        Py_INCREF(u);
        if (touch(c->unions, ukey) < 0) goto fail;
        c->union_hits++;
    } else {
        if (PyErr_Occurred()) goto fail;
        PyObject *args[5] = {c->cg, ukey, key, roots, rk};
        u = PyObject_VectorcallMethod(s_union, args, 5 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (!u) goto fail;
    }
    if (!PyTuple_Check(u) || PyTuple_GET_SIZE(u) != 3) {
        PyErr_SetString(PyExc_TypeError, "a union entry must be (idx, vals, rest)");
        goto fail;
    }
    if (or_into(out, PyTuple_GET_ITEM(u, 0), PyTuple_GET_ITEM(u, 1)) < 0) goto fail;
    if (!(deferred = PyList_New(0))) goto fail;
    PyObject *rest = PyTuple_GET_ITEM(u, 2);
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rest); i++) {
        Py_ssize_t e = PyLong_AsSsize_t(PyTuple_GET_ITEM(rest, i));
        if (e == -1 && PyErr_Occurred()) goto fail;
        PyObject *se = PyTuple_GetSlice(entries, e, e + 1), *sk = PyTuple_GetSlice(key, e, e + 1);
        PyObject *d = (se && sk) ? walk(c, out, se, sk, roots, visited, rk) : NULL;
        Py_XDECREF(se);
        Py_XDECREF(sk);
        if (extend(deferred, d) < 0) goto fail;
    }
    Py_DECREF(rk);
    Py_DECREF(ck);
    Py_DECREF(ukey);
    Py_DECREF(u);
    return deferred;
fail:
    Py_XDECREF(rk);
    Py_XDECREF(ck);
    Py_XDECREF(ukey);
    Py_XDECREF(u);
    Py_XDECREF(deferred);
    return NULL;
}

/* CompiledGrammar._walk */
static PyObject *walk(Ctx *c, PyObject *out, PyObject *entries, PyObject *key, PyObject *roots, PyObject *visited,
                      PyObject *rk_in) {
    if (!PyTuple_Check(entries) || !PyTuple_Check(key) || !PyDict_Check(visited)) {
        PyErr_SetString(PyExc_TypeError, "walk takes entries and key tuples and a visited dict");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(key);
    if (c->split && n > 1) return walk_apart(c, out, entries, key, roots, visited);
    if (Py_EnterRecursiveCall(" in a CFG mask walk")) return NULL;
    PyObject *lx = NULL, *rk = NULL, *wk = NULL, *j = NULL, *deferred = NULL, *completing = NULL, *bnd = NULL,
             *startv = NULL;
    if (!(lx = get_lexer(c, key))) goto fail;
    if (lx == Py_None) { /* a product too big: the halves on their own (exact, see _walk) */
        Py_ssize_t h = PyTuple_GET_SIZE(entries) / 2;
        PyObject *e1 = PyTuple_GetSlice(entries, 0, h), *k1 = PyTuple_GetSlice(key, 0, h);
        PyObject *e2 = PyTuple_GetSlice(entries, h, PY_SSIZE_T_MAX), *k2 = PyTuple_GetSlice(key, h, PY_SSIZE_T_MAX);
        if (e1 && k1 && e2 && k2) {
            deferred = walk(c, out, e1, k1, roots, visited, NULL);
            if (deferred && extend(deferred, walk(c, out, e2, k2, roots, visited, NULL)) < 0) Py_CLEAR(deferred);
        }
        Py_XDECREF(e1);
        Py_XDECREF(k1);
        Py_XDECREF(e2);
        Py_XDECREF(k2);
        Py_DECREF(lx);
        Py_LeaveRecursiveCall();
        return deferred;
    }
    if (!(startv = PyObject_GetAttr(lx, s_start))) goto fail;
    long start = PyLong_AsLong(startv);
    if (start == -1 && PyErr_Occurred()) goto fail;
    if (!(deferred = PyList_New(0))) goto fail;
    if (start < 0) goto done;
    if (rk_in) {
        Py_INCREF(rk_in);
        rk = rk_in;
    } else if (!(rk = roots_key(roots))) {
        goto fail;
    }
    if (!(wk = get_walk_key(c, key)) || !(j = get_job(c, wk, rk, lx, roots))) goto fail;
    {
        PyObject *idx = PyObject_GetAttr(j, s_idx), *vals = idx ? PyObject_GetAttr(j, s_vals) : NULL;
        int r = vals ? or_into(out, idx, vals) : -1;
        Py_XDECREF(idx);
        Py_XDECREF(vals);
        if (r < 0) goto fail;
    }
    if (!(bnd = PyObject_GetAttr(j, s_bnd))) goto fail;
    if (!PyList_Check(bnd)) {
        PyErr_SetString(PyExc_TypeError, "a walk's boundaries must be a list");
        goto fail;
    }
    if (PyList_GET_SIZE(bnd) && !(completing = PyObject_GetAttr(lx, s_completing))) goto fail;
    for (Py_ssize_t b = 0; b < PyList_GET_SIZE(bnd); b++) {
        PyObject *grp = PyList_GET_ITEM(bnd, b); /* (state, nodes, nodes key) */
        PyObject *comp = PyObject_GetItem(completing, PyTuple_GET_ITEM(grp, 0));
        if (!comp) goto fail;
        PyObject *cs = PySequence_Fast(comp, "completing[s] must be a sequence");
        Py_DECREF(comp);
        if (!cs) goto fail;
        PyObject *done = PyList_New(PySequence_Fast_GET_SIZE(cs));
        if (!done) {
            Py_DECREF(cs);
            goto fail;
        }
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(cs); i++) {
            Py_ssize_t e = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(cs, i));
            if (e < 0 || e >= PyTuple_GET_SIZE(entries)) {
                if (!PyErr_Occurred()) PyErr_SetString(PyExc_IndexError, "completing entry out of range");
                Py_DECREF(cs);
                Py_DECREF(done);
                goto fail;
            }
            PyObject *ent = PyTuple_GET_ITEM(entries, e); /* (terminal, state, origin) */
            PyObject *pr = PyTuple_Pack(2, PyTuple_GET_ITEM(ent, 2), PyTuple_GET_ITEM(ent, 0));
            if (!pr) {
                Py_DECREF(cs);
                Py_DECREF(done);
                goto fail;
            }
            PyList_SET_ITEM(done, i, pr);
        }
        Py_DECREF(cs);
        PyObject *nodes = PyTuple_GET_ITEM(grp, 1), *nk = PyTuple_GET_ITEM(grp, 2);
        PyObject *y = PyObject_CallOneArg(c->complete, done);
        if (!y) {
            if (!PyErr_ExceptionMatches(g_horizon_exc)) {
                Py_DECREF(done);
                goto fail;
            }
            PyErr_Clear();
            PyObject *ud = uid_pairs(done);
            Py_DECREF(done);
            if (!ud) goto fail;
            PyObject *empty = PyTuple_New(0);
            PyObject *item = empty ? PyTuple_Pack(3, ud, empty, nodes) : NULL;
            Py_XDECREF(empty);
            Py_DECREF(ud);
            if (!item || PyList_Append(deferred, item) < 0) {
                Py_XDECREF(item);
                goto fail;
            }
            Py_DECREF(item);
            continue;
        }
        PyObject *ykey = PyObject_GetAttr(y, s_key);
        Py_ssize_t nkey = ykey ? PyObject_Length(ykey) : -1;
        Py_XDECREF(ykey);
        if (nkey <= 0) {
            Py_DECREF(y);
            Py_DECREF(done);
            if (nkey < 0) goto fail;
            continue;
        }
        PyObject *yuid = PyObject_GetAttr(y, s_uid);
        if (!yuid) {
            Py_DECREF(y);
            Py_DECREF(done);
            goto fail;
        }
        PyObject *prev = PyDict_GetItemWithError(visited, yuid);
        PyObject *kept = NULL; /* (owned: this boundary's nodes after dropping walked ones) */
        int err = 0;
        if (prev) { /* (runs of ignored text): drop the trie nodes already walked for y */
            PyObject *args[4] = {c->cg, prev, nodes, nk};
            kept = PyObject_VectorcallMethod(s_drop_walked, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (!kept || !PyTuple_Check(kept) || PyTuple_GET_SIZE(kept) != 3) {
                if (kept) PyErr_SetString(PyExc_TypeError, "_drop_walked must return (nodes, key, both)");
                err = 1;
            } else if (PyDict_SetItem(visited, yuid, PyTuple_GET_ITEM(kept, 2)) < 0) {
                err = 1;
            }
        } else if (PyErr_Occurred()) {
            err = 1;
        } else {
            PyObject *both = PyTuple_Pack(2, nodes, nk);
            err = !both || PyDict_SetItem(visited, yuid, both) < 0;
            Py_XDECREF(both);
        }
        Py_DECREF(yuid);
        if (err) {
            Py_XDECREF(kept);
            Py_DECREF(y);
            Py_DECREF(done);
            goto fail;
        }
        PyObject *wn = kept ? PyTuple_GET_ITEM(kept, 0) : nodes, *wnk = kept ? PyTuple_GET_ITEM(kept, 1) : nk;
        Py_ssize_t nn = PyObject_Length(wn);
        PyObject *chains = nn > 0 ? subtree(c, out, y, wn, wnk) : NULL;
        Py_XDECREF(kept);
        Py_DECREF(y);
        if (nn < 0 || (nn > 0 && !chains)) {
            Py_DECREF(done);
            goto fail;
        }
        if (chains && PyTuple_GET_SIZE(chains)) {
            PyObject *ud = uid_pairs(done);
            if (!ud) {
                Py_DECREF(chains);
                Py_DECREF(done);
                goto fail;
            }
            for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(chains); i++) {
                PyObject *ch = PyTuple_GET_ITEM(chains, i); /* (terminal sets, nodes) */
                PyObject *item = PyTuple_Pack(3, ud, PyTuple_GET_ITEM(ch, 0), PyTuple_GET_ITEM(ch, 1));
                if (!item || PyList_Append(deferred, item) < 0) {
                    Py_XDECREF(item);
                    Py_DECREF(ud);
                    Py_DECREF(chains);
                    Py_DECREF(done);
                    goto fail;
                }
                Py_DECREF(item);
            }
            Py_DECREF(ud);
        }
        Py_XDECREF(chains);
        Py_DECREF(done);
    }
done:
    Py_XDECREF(lx);
    Py_XDECREF(rk);
    Py_XDECREF(wk);
    Py_XDECREF(j);
    Py_XDECREF(completing);
    Py_XDECREF(bnd);
    Py_XDECREF(startv);
    Py_LeaveRecursiveCall();
    return deferred;
fail:
    Py_CLEAR(deferred);
    goto done;
}

/* CompiledGrammar._subtree; returns the chains tuple */
static PyObject *subtree(Ctx *c, PyObject *out, PyObject *y, PyObject *nodes, PyObject *rk_in) {
    PyObject *yuid = NULL, *rk = NULL, *skey = NULL, *hit = NULL, *ykey = NULL, *lx = NULL, *wk = NULL, *j = NULL,
             *bnd = NULL, *tmp = NULL, *entries = NULL, *visited = NULL, *d = NULL, *chains = NULL, *sp = NULL,
             *res = NULL;
    if (!(yuid = PyObject_GetAttr(y, s_uid))) goto done;
    if (rk_in) {
        Py_INCREF(rk_in);
        rk = rk_in;
    } else if (!(rk = roots_key(nodes))) {
        goto done;
    }
    if (!(skey = PyTuple_Pack(2, yuid, rk))) goto done;
    hit = PyDict_GetItemWithError(c->subs, skey);
    if (hit) {
        Py_INCREF(hit);
        if (touch(c->subs, skey) < 0) goto done;
        c->sub_hits++;
    } else {
        if (PyErr_Occurred()) goto done;
        if (!(ykey = PyObject_GetAttr(y, s_key)) || !(lx = get_lexer(c, ykey))) goto done;
        if (lx != Py_None) {
            if (!(wk = get_walk_key(c, ykey)) || !(j = get_job(c, wk, rk, lx, nodes)) ||
                !(bnd = PyObject_GetAttr(j, s_bnd)))
                goto done;
        }
        Py_ssize_t nb = bnd ? PyObject_Length(bnd) : 1;
        if (nb < 0) goto done;
        if (nb == 0) { /* a leaf: the walk's own result, no recursion */
            PyObject *idx = PyObject_GetAttr(j, s_idx), *vals = idx ? PyObject_GetAttr(j, s_vals) : NULL;
            PyObject *empty = vals ? PyTuple_New(0) : NULL;
            hit = empty ? PyTuple_Pack(3, idx, vals, empty) : NULL;
            Py_XDECREF(idx);
            Py_XDECREF(vals);
            Py_XDECREF(empty);
            if (!hit) goto done;
        } else {
            if (!PyTuple_Check(ykey)) {
                PyErr_SetString(PyExc_TypeError, "a node's key must be a tuple");
                goto done;
            }
            if (!(tmp = PyObject_CallNoArgs(c->zeros))) goto done;
            Py_ssize_t k = PyTuple_GET_SIZE(ykey);
            if (!(entries = PyTuple_New(k))) goto done;
            for (Py_ssize_t i = 0; i < k; i++) {
                PyObject *tq = PyTuple_GET_ITEM(ykey, i);
                PyObject *e = PyTuple_Pack(3, PyTuple_GET_ITEM(tq, 0), PyTuple_GET_ITEM(tq, 1), y);
                if (!e) goto done;
                PyTuple_SET_ITEM(entries, i, e);
            }
            PyObject *both = PyTuple_Pack(2, nodes, rk);
            if (!both) goto done;
            visited = PyDict_New();
            int r = visited ? PyDict_SetItem(visited, yuid, both) : -1;
            Py_DECREF(both);
            if (r < 0) goto done;
            if (!(d = walk(c, tmp, entries, ykey, nodes, visited, rk))) goto done;
            if (PyList_GET_SIZE(d)) {
                if (!(chains = PyObject_CallOneArg(g_chains, d))) goto done;
            } else if (!(chains = PyTuple_New(0))) {
                goto done;
            }
            if (!(sp = PyObject_CallOneArg(g_sparsify, tmp))) goto done;
            if (!PyTuple_Check(sp) || PyTuple_GET_SIZE(sp) != 2) {
                PyErr_SetString(PyExc_TypeError, "sparsify must return (idx, vals)");
                goto done;
            }
            if (!(hit = PyTuple_Pack(3, PyTuple_GET_ITEM(sp, 0), PyTuple_GET_ITEM(sp, 1), chains))) goto done;
        }
        if (PyObject_SetItem(c->subs, skey, hit) < 0) goto done;
        if (PyDict_GET_SIZE(c->subs) > c->cache_jobs) {
            PyObject *r = PyObject_CallMethodOneArg(c->subs, s_popitem, Py_False);
            if (!r) goto done;
            Py_DECREF(r);
        }
    }
    if (!PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 3) {
        PyErr_SetString(PyExc_TypeError, "a subtree entry must be (idx, vals, chains)");
        goto done;
    }
    if (or_into(out, PyTuple_GET_ITEM(hit, 0), PyTuple_GET_ITEM(hit, 1)) < 0) goto done;
    res = PyTuple_GET_ITEM(hit, 2);
    Py_INCREF(res);
done:
    Py_XDECREF(yuid);
    Py_XDECREF(rk);
    Py_XDECREF(skey);
    Py_XDECREF(hit);
    Py_XDECREF(ykey);
    Py_XDECREF(lx);
    Py_XDECREF(wk);
    Py_XDECREF(j);
    Py_XDECREF(bnd);
    Py_XDECREF(tmp);
    Py_XDECREF(entries);
    Py_XDECREF(visited);
    Py_XDECREF(d);
    Py_XDECREF(chains);
    Py_XDECREF(sp);
    return res;
}

/* cfg_walk(cg, out, entries, key, roots, visited, rk or None) -> deferred list */
static PyObject *cfg_walk(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "cfg_walk(cg, out, entries, key, roots, visited, rk) takes 7 arguments");
        return NULL;
    }
    Ctx c;
    if (ctx_init(&c, args[0]) < 0) return NULL;
    PyObject *r = walk(&c, args[1], args[2], args[3], args[4], args[5], args[6] == Py_None ? NULL : args[6]);
    if (r && ctx_flush(&c) < 0) Py_CLEAR(r);
    ctx_clear(&c);
    return r;
}

/* cfg_subtree(cg, out, y, nodes, rk or None) -> chains tuple */
static PyObject *cfg_subtree(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "cfg_subtree(cg, out, y, nodes, rk) takes 5 arguments");
        return NULL;
    }
    Ctx c;
    if (ctx_init(&c, args[0]) < 0) return NULL;
    PyObject *r = subtree(&c, args[1], args[2], args[3], args[4] == Py_None ? NULL : args[4]);
    if (r && ctx_flush(&c) < 0) Py_CLEAR(r);
    ctx_clear(&c);
    return r;
}

/* cfg_walk_setup(HorizonReached, roots_key, chains, sparsify) */
static PyObject *cfg_walk_setup(PyObject *Py_UNUSED(mod), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "cfg_walk_setup(horizon_exc, roots_key, chains, sparsify) takes 4 arguments");
        return NULL;
    }
    for (int i = 1; i < 4; i++)
        if (!PyCallable_Check(args[i])) {
            PyErr_SetString(PyExc_TypeError, "cfg_walk_setup: roots_key, chains and sparsify must be callables");
            return NULL;
        }
    if (!PyExceptionClass_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "cfg_walk_setup: horizon_exc must be an exception class");
        return NULL;
    }
    PyObject **g[4] = {&g_horizon_exc, &g_roots_key, &g_chains, &g_sparsify};
    for (int i = 0; i < 4; i++) {
        Py_INCREF(args[i]);
        Py_XSETREF(*g[i], args[i]);
    }
    Py_RETURN_NONE;
}

PyMethodDef constrain_cfgwalk_methods[] = {
    {"cfg_walk", (PyCFunction)(void (*)(void))cfg_walk, METH_FASTCALL,
     "cfg_walk(cg, out, entries, key, roots, visited, rk): CompiledGrammar._walk, in C."},
    {"cfg_subtree", (PyCFunction)(void (*)(void))cfg_subtree, METH_FASTCALL,
     "cfg_subtree(cg, out, y, nodes, rk): CompiledGrammar._subtree, in C."},
    {"cfg_walk_setup", (PyCFunction)(void (*)(void))cfg_walk_setup, METH_FASTCALL,
     "cfg_walk_setup(HorizonReached, _roots_key, _chains, sparsify): the module-level helpers cfg_walk calls."},
    {NULL, NULL, 0, NULL},
};

int constrain_cfgwalk_init(PyObject *m) {
    struct {
        PyObject **p;
        const char *s;
    } names[] = {
        {&s_lexers, "_lexers"},     {&s_wkeys, "_wkeys"},           {&s_dkeys, "_dkeys"},
        {&s_jobs, "_jobs"},         {&s_subs, "_subs"},             {&s_unions, "_unions"},
        {&s_split, "split_entries"}, {&s_cache_jobs, "_cache_jobs"}, {&s_stats, "stats"},
        {&s_parser, "parser"},      {&s_complete, "complete"},      {&s_zeros, "_zeros"},
        {&s_lexer, "lexer"},        {&s_walk_key, "walk_key"},      {&s_content_key, "content_key"},
        {&s_job, "job"},            {&s_drop_walked, "_drop_walked"}, {&s_union, "_union"},
        {&s_start, "start"},        {&s_completing, "completing"},  {&s_idx, "idx"},
        {&s_vals, "vals"},          {&s_bnd, "bnd"},                {&s_uid, "uid"},
        {&s_key, "key"},            {&s_move_to_end, "move_to_end"}, {&s_popitem, "popitem"},
        {&s_job_hits, "job_hits"},  {&s_sub_hits, "sub_hits"},      {&s_union_hits, "union_hits"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!(*names[i].p = PyUnicode_InternFromString(names[i].s))) return -1;
    return PyModule_AddFunctions(m, constrain_cfgwalk_methods);
}
