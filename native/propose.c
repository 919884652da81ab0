/* constrain._native's sampling helpers: the lazy AWRS proposal's pass over the logits.
 *
 * Why C and not Numba: AWRS on an agreeing model touches only a couple of tokens per step,
 * so its per-step cost is the one unavoidable pass over the vocabulary (per-block maxima,
 * the envelope of the exact lazy sampler in constrain/sampling/core.py) plus the draws.
 * Numba does not vectorise a float max reduction (a dependency chain of scalar compares:
 * ~45-150 us over 128k logits, several accumulators or not), numpy's row-wise reduce costs
 * ~15 us with its per-call machinery, and a separate numba call for the draws adds its
 * dispatch and a Python round trip.  Here ``lazy_propose`` is one call: block maxima with
 * AVX-512/AVX2/SSE2 (chosen at run time; ~5 us on 128k logits), then the envelope and the
 * draws, whose head scan compares 8 floats at a time.
 *
 * References: numpy's per-block ``maximum.reduce`` (``block_max_reference``) and the
 * pure-Python ``lazy_draws_reference`` (constrain/sampling/kernels.py), which the numba
 * kernel also matches; tests/test_native.py compares them with hypothesis, every SIMD path,
 * misaligned starts, -inf and NaN included, and decodes with and without the extension.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

/* max over x[0:n] as (v > m ? v : m): NaN never wins a compare, so NaNs are reported
 * through *nan (the caller refuses NaN logits).  MAXPS computes exactly (a > b ? a : b).
 * The vector paths detect NaN cheaply through a running sum (NaN propagates through
 * addition); a NaN sum may also come from inf - inf or overflow, so it only triggers the
 * exact scalar scan. */
static float span_max_scalar(const float *x, Py_ssize_t n, int *nan) {
    float r = -INFINITY;
    int bad = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        float v = x[i];
        r = v > r ? v : r;
        bad |= v != v;
    }
    *nan |= bad;
    return r;
}

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

/* numpy aligns buffers to 16 bytes only, and vector loads that straddle cache lines cost
 * ~2x; a scalar head and tail per block (up to a vector's width each) cost as much again.
 * So each span is one unaligned vector at its start, aligned vectors through its middle,
 * and one unaligned vector ending exactly at its end: the three overlap, which a max does
 * not mind (and the NaN-detecting sum only needs to see every element at least once). */
#define ALIGN_UP(p, a) ((const float *)(((uintptr_t)(p) + (a) - 1) & ~(uintptr_t)((a) - 1)))

/* One span_max per instruction set, from one body: W floats per vector of type V, four
 * independent max/sum chains (the max's latency, not its throughput, bounds one chain). */
#define DEFINE_SPAN_MAX(NAME, ATTR, V, W, LOADU, LOAD, MAX, ADD, ZERO, STOREU)                 \
    ATTR static float NAME(const float *x, Py_ssize_t n, int *nan) {                          \
        if (n < W) return span_max_scalar(x, n, nan);                                          \
        const float *end = x + n;                                                              \
        V first = LOADU(x), last = LOADU(end - W);                                             \
        V m0 = MAX(first, last), m1 = m0, m2 = m0, m3 = m0;                                    \
        V s0 = ADD(first, last), s1 = ZERO();                                                  \
        const float *p = ALIGN_UP(x, W * sizeof(float));                                       \
        for (; p + 4 * W <= end; p += 4 * W) {                                                 \
            V v0 = LOAD(p), v1 = LOAD(p + W), v2 = LOAD(p + 2 * W), v3 = LOAD(p + 3 * W);     \
            m0 = MAX(v0, m0);                                                                  \
            m1 = MAX(v1, m1);                                                                  \
            m2 = MAX(v2, m2);                                                                  \
            m3 = MAX(v3, m3);                                                                  \
            s0 = ADD(s0, ADD(v0, v1));                                                         \
            s1 = ADD(s1, ADD(v2, v3));                                                         \
        }                                                                                      \
        for (; p + W <= end; p += W) {                                                         \
            V v = LOAD(p);                                                                     \
            m0 = MAX(v, m0);                                                                   \
            s0 = ADD(s0, v);                                                                   \
        }                                                                                      \
        float lanes[W], sums[W];                                                               \
        STOREU(lanes, MAX(MAX(m0, m1), MAX(m2, m3)));                                          \
        STOREU(sums, ADD(s0, s1));                                                             \
        float r = lanes[0], sum = sums[0];                                                     \
        for (int j = 1; j < W; j++) {                                                          \
            r = lanes[j] > r ? lanes[j] : r;                                                   \
            sum += sums[j];                                                                    \
        }                                                                                      \
        if (sum != sum) span_max_scalar(x, n, nan);                                            \
        return r;                                                                              \
    }

DEFINE_SPAN_MAX(span_max_avx512, __attribute__((target("avx512f"))), __m512, 16, _mm512_loadu_ps, _mm512_load_ps,
                _mm512_max_ps, _mm512_add_ps, _mm512_setzero_ps, _mm512_storeu_ps)
DEFINE_SPAN_MAX(span_max_avx2, __attribute__((target("avx2"))), __m256, 8, _mm256_loadu_ps, _mm256_load_ps,
                _mm256_max_ps, _mm256_add_ps, _mm256_setzero_ps, _mm256_storeu_ps)
DEFINE_SPAN_MAX(span_max_sse2, , __m128, 4, _mm_loadu_ps, _mm_load_ps, _mm_max_ps, _mm_add_ps, _mm_setzero_ps,
                _mm_storeu_ps)

typedef float (*span_fn)(const float *, Py_ssize_t, int *);

static span_fn pick_span_max(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return span_max_avx512;
    if (__builtin_cpu_supports("avx2")) return span_max_avx2;
    return span_max_sse2;
}
#else
typedef float (*span_fn)(const float *, Py_ssize_t, int *);

static span_fn pick_span_max(void) { return span_max_scalar; }
#endif

/* Indices i in [lo, hi) with (double)x[i] >= thr, appended through push(); the AVX2 path
 * compares 8 floats at once against the smallest float >= thr (the same set: floats are
 * discrete), then visits only the set bits. */
typedef int (*push_fn)(void *ctx, Py_ssize_t i);

static float float_at_least(double thr) {
    float f = (float)thr;
    if ((double)f < thr) f = nextafterf(f, INFINITY);
    return f;
}

static int scan_head_scalar(const float *x, Py_ssize_t lo, Py_ssize_t hi, double thr, push_fn push, void *ctx) {
    for (Py_ssize_t i = lo; i < hi; i++)
        if ((double)x[i] >= thr && push(ctx, i) < 0) return -1;
    return 0;
}

#if defined(__x86_64__) || defined(_M_X64)
__attribute__((target("avx2"))) static int scan_head_avx2(const float *x, Py_ssize_t lo, Py_ssize_t hi, double thr,
                                                          push_fn push, void *ctx) {
    if (!(thr <= (double)FLT_MAX)) return scan_head_scalar(x, lo, hi, thr, push, ctx); /* thr = inf or NaN */
    float tf = float_at_least(thr);
    __m256 t = _mm256_set1_ps(tf);
    Py_ssize_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), t, _CMP_GE_OQ));
        while (m) {
            int j = __builtin_ctz(m);
            if (push(ctx, i + j) < 0) return -1;
            m &= m - 1;
        }
    }
    return scan_head_scalar(x, i, hi, thr, push, ctx);
}

static int scan_head(const float *x, Py_ssize_t lo, Py_ssize_t hi, double thr, push_fn push, void *ctx) {
    static int avx2 = -1;
    if (avx2 < 0) avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    return avx2 ? scan_head_avx2(x, lo, hi, thr, push, ctx) : scan_head_scalar(x, lo, hi, thr, push, ctx);
}
#else
static int scan_head(const float *x, Py_ssize_t lo, Py_ssize_t hi, double thr, push_fn push, void *ctx) {
    return scan_head_scalar(x, lo, hi, thr, push, ctx);
}
#endif

static span_fn span_max_fn = NULL; /* the best path this CPU has, chosen on first use */

/* a path by name (tests run every path the CPU has against the reference); NULL if the
 * name is unknown or the CPU lacks it */
static span_fn span_max_named(const char *name) {
    if (!strcmp(name, "scalar")) return span_max_scalar;
#if defined(__x86_64__) || defined(_M_X64)
    if (!strcmp(name, "sse2")) return span_max_sse2;
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2")) return span_max_avx2;
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f")) return span_max_avx512;
#endif
    return NULL;
}

static PyObject *simd_paths(PyObject *self, PyObject *noargs) {
    static const char *all[] = {"scalar", "sse2", "avx2", "avx512"};
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    for (int i = 0; i < 4; i++) {
        if (!span_max_named(all[i])) continue;
        PyObject *s = PyUnicode_FromString(all[i]);
        if (!s || PyList_Append(out, s) < 0) {
            Py_XDECREF(s);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(s);
    }
    return out;
}

/* out[b] = max of block b of x[0:n]; returns the overall max (NaNs reported through *nan) */
static float blocks_max(span_fn span_max, const float *x, Py_ssize_t n, Py_ssize_t block, float *out, int *nan) {
    float g = -INFINITY;
    Py_ssize_t nb = (n + block - 1) / block;
    for (Py_ssize_t b = 0; b < nb; b++) {
        Py_ssize_t lo = b * block, len = n - lo < block ? n - lo : block;
        float v = span_max(x + lo, len, nan);
        out[b] = v;
        g = v > g ? v : g;
    }
    return g;
}

static PyObject *block_max(PyObject *self, PyObject *args) {
    PyObject *xo, *outo;
    Py_ssize_t block;
    const char *path = NULL;
    if (!PyArg_ParseTuple(args, "OnO|s", &xo, &block, &outo, &path)) return NULL;
    span_fn span_max;
    if (path) {
        span_max = span_max_named(path);
        if (!span_max) {
            PyErr_Format(PyExc_ValueError, "no block_max path %R on this CPU (see simd_paths())", PyTuple_GET_ITEM(args, 3));
            return NULL;
        }
    } else {
        if (!span_max_fn) span_max_fn = pick_span_max();
        span_max = span_max_fn;
    }
    if (block < 1) {
        PyErr_SetString(PyExc_ValueError, "block must be >= 1");
        return NULL;
    }
    Py_buffer xb, ob;
    if (PyObject_GetBuffer(xo, &xb, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(outo, &ob, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) < 0) {
        PyBuffer_Release(&xb);
        return NULL;
    }
    PyObject *res = NULL;
    if (xb.itemsize != 4 || ob.itemsize != 4 || !xb.format || !ob.format || strcmp(xb.format, "f") ||
        strcmp(ob.format, "f")) {
        PyErr_SetString(PyExc_TypeError, "block_max needs contiguous float32 buffers");
        goto done;
    }
    Py_ssize_t n = xb.len / 4, nb = (n + block - 1) / block;
    if (ob.len / 4 != nb) {
        PyErr_Format(PyExc_ValueError, "out has %zd items; %zd logits in blocks of %zd need %zd", ob.len / 4,
                     n, block, nb);
        goto done;
    }
    const float *x = (const float *)xb.buf;
    float *out = (float *)ob.buf;
    float g;
    int nan = 0;
    Py_BEGIN_ALLOW_THREADS g = blocks_max(span_max, x, n, block, out, &nan);
    Py_END_ALLOW_THREADS res = PyFloat_FromDouble(nan ? (double)NAN : (double)g);
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&ob);
    return res;
}

/* ---- lazy exact draws (the C twin of constrain/sampling/kernels.py:lazy_draws) -------------
 *
 * Same envelope, same float64 arithmetic, same use of the uniforms ``us`` (k, tries, 3) as
 * the numba kernel and its pure-Python reference, so all three return the same draws (tests
 * compare them); here it runs in the same call as the block maxima, saving the kernel's
 * dispatch and a Python round trip per step. */

#define HEAD_STACK 512

/* The draws' uniforms: an explicit (k, tries, 3) float64 array, or a counter-based stream
 * from one 64-bit seed (SplitMix64 of seed + (i + 1) * golden ratio, top 53 bits), which the
 * caller takes from its numpy Generator: one raw draw per step instead of an array of
 * k * tries * 3 uniforms, and only the rounds actually used are computed.  The same stream
 * in numpy is constrain.sampling.kernels.counter_uniforms (tests compare them). */
typedef struct {
    const double *arr;
    uint64_t seed;
} Uniforms;

static inline double uniform_at(const Uniforms *u, Py_ssize_t i) {
    if (u->arr) return u->arr[i];
    uint64_t z = u->seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1.0p-53;
}

typedef struct {
    Py_ssize_t idx_stack[HEAD_STACK];
    double w_stack[HEAD_STACK];
    Py_ssize_t *idx;
    double *w;
    Py_ssize_t n, cap;
    const float *x;
    double mx, sh;
} HeadBuf;

static void head_free(HeadBuf *hb) {
    if (hb->idx != hb->idx_stack) PyMem_RawFree(hb->idx);
    if (hb->w != hb->w_stack) PyMem_RawFree(hb->w);
    hb->idx = hb->idx_stack;
    hb->w = hb->w_stack;
}

/* append head token i with its weight (the sum runs in index order, as in the kernel) */
static int head_push(void *ctx, Py_ssize_t i) {
    HeadBuf *hb = (HeadBuf *)ctx;
    if (hb->n == hb->cap) {
        Py_ssize_t ncap = hb->cap * 4;
        Py_ssize_t *ni = PyMem_RawMalloc((size_t)ncap * sizeof(Py_ssize_t));
        double *nw = PyMem_RawMalloc((size_t)ncap * sizeof(double));
        if (!ni || !nw) {
            PyMem_RawFree(ni);
            PyMem_RawFree(nw);
            return -1;
        }
        memcpy(ni, hb->idx, (size_t)hb->n * sizeof(Py_ssize_t));
        memcpy(nw, hb->w, (size_t)hb->n * sizeof(double));
        head_free(hb);
        hb->idx = ni;
        hb->w = nw;
        hb->cap = ncap;
    }
    double w = exp((double)hb->x[i] - hb->mx);
    hb->idx[hb->n] = i;
    hb->w[hb->n] = w;
    hb->sh += w;
    hb->n++;
    return 0;
}

/* Returns the number of draws made (< k when draw j had every round rejected; 0 when more
 * than max_head_blocks blocks hold head tokens) and sets *head_mass (NaN when not scanned). */
static Py_ssize_t draws_core(const float *x, Py_ssize_t n, const float *bm, Py_ssize_t nb, double mx,
                             double thr, Py_ssize_t block, const Uniforms *us, Py_ssize_t k, Py_ssize_t tries,
                             long long *out, Py_ssize_t max_head_blocks, double *head_mass, int *nomem) {
    *head_mass = NAN;
    Py_ssize_t nhb = 0;
    for (Py_ssize_t b = 0; b < nb; b++) nhb += (double)bm[b] >= thr;
    if (nhb > max_head_blocks) return 0;
    /* head tokens in index order, their weights, and their sum (the kernel's order) */
    HeadBuf hb = {.idx = hb.idx_stack, .w = hb.w_stack, .n = 0, .cap = HEAD_STACK, .x = x, .mx = mx, .sh = 0.0};
    for (Py_ssize_t b = 0; b < nb; b++) {
        if (!((double)bm[b] >= thr)) continue;
        Py_ssize_t hi = (b + 1) * block < n ? (b + 1) * block : n;
        if (scan_head(x, b * block, hi, thr, head_push, &hb) < 0) {
            head_free(&hb);
            *nomem = 1;
            return 0;
        }
    }
    Py_ssize_t nh = hb.n;
    Py_ssize_t *hidx = hb.idx;
    double *hw = hb.w;
    double sh = hb.sh;
    *head_mass = sh;
    double *bounds = PyMem_RawMalloc((size_t)nb * 2 * sizeof(double));
    if (!bounds) {
        head_free(&hb);
        *nomem = 1;
        return 0;
    }
    double *ecum = bounds + nb;
    double se = 0.0;
    for (Py_ssize_t b = 0; b < nb; b++) {
        double bmb = (double)bm[b];
        double bd = bmb == -INFINITY ? 0.0 : exp((bmb < thr ? bmb : thr) - mx);
        Py_ssize_t size = n - b * block < block ? n - b * block : block;
        bounds[b] = bd;
        se += bd * (double)size;
        ecum[b] = se;
    }
    Py_ssize_t made = k;
    for (Py_ssize_t j = 0; j < k; j++) {
        long long got = -1;
        for (Py_ssize_t r = 0; r < tries; r++) {
            Py_ssize_t ui = (j * tries + r) * 3;
            double u = uniform_at(us, ui) * (sh + se);
            if (u < sh) {
                double acc = 0.0;
                long long last = -1;
                for (Py_ssize_t h = 0; h < nh; h++) {
                    double w = hw[h];
                    if (w > 0) last = hidx[h];
                    acc += w;
                    if (acc > u && w > 0) {
                        got = hidx[h];
                        break;
                    }
                }
                if (got < 0) got = last;
                break;
            }
            u -= sh;
            Py_ssize_t b = nb - 1;
            for (Py_ssize_t c = 0; c < nb; c++) {
                if (ecum[c] > u) {
                    b = c;
                    break;
                }
            }
            double bound = bounds[b];
            if (bound == 0.0) continue;
            Py_ssize_t size = n - b * block < block ? n - b * block : block;
            Py_ssize_t off = (Py_ssize_t)(uniform_at(us, ui + 1) * (double)size);
            if (off > size - 1) off = size - 1;
            Py_ssize_t t = b * block + off;
            double xt = (double)x[t];
            if (xt < thr && uniform_at(us, ui + 2) * bound < exp(xt - mx)) {
                got = t;
                break;
            }
        }
        if (got < 0) {
            made = j;
            break;
        }
        out[j] = got;
    }
    PyMem_RawFree(bounds);
    head_free(&hb);
    return made;
}

/* buffers of one call, released together */
typedef struct {
    Py_buffer b[4];
    int n;
} Buffers;

static void release_all(Buffers *bs) {
    for (int i = 0; i < bs->n; i++) PyBuffer_Release(&bs->b[i]);
    bs->n = 0;
}

static int take(Buffers *bs, PyObject *o, const char *fmt, int writable, const char *what) {
    Py_buffer *v = &bs->b[bs->n];
    if (PyObject_GetBuffer(o, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    bs->n++;
    /* numpy reports int64 as "l" or "q" depending on the platform */
    int ok = v->format && (!strcmp(v->format, fmt) || (!strcmp(fmt, "q") && !strcmp(v->format, "l") && v->itemsize == 8));
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous %s array", what,
                     !strcmp(fmt, "f") ? "float32" : (!strcmp(fmt, "d") ? "float64" : "int64"));
        return -1;
    }
    return 0;
}

/* numpy's bitgen_t (numpy/random/bitgen.h), the struct its BitGenerator.capsule points to */
typedef struct {
    void *state;
    uint64_t (*next_uint64)(void *st);
    uint32_t (*next_uint32)(void *st);
    double (*next_double)(void *st);
    uint64_t (*next_raw)(void *st);
} BitGen;

/* the uniforms argument of lazy_draws / lazy_propose: a (k, tries, 3) float64 array (taken
 * into bs), or a (seed, tries) tuple, seed an int or a BitGenerator capsule; k is then out's
 * length */
static int get_uniforms(Buffers *bs, PyObject *uso, Py_buffer *out, Uniforms *u, Py_ssize_t *k, Py_ssize_t *tries) {
    Py_ssize_t cap = out->len / 8;
    if (PyTuple_Check(uso)) {
        unsigned long long seed;
        PyObject *src;
        if (!PyArg_ParseTuple(uso, "On;us must be a (k, tries, 3) float64 array or a (seed, tries) tuple", &src, tries))
            return -1;
        if (PyCapsule_CheckExact(src) && PyCapsule_IsValid(src, "BitGenerator")) {
            /* numpy's generator itself: one raw draw, what bit_generator.random_raw() returns
             * (without its lock: the sampler's generators are its own) */
            BitGen *bg = (BitGen *)PyCapsule_GetPointer(src, "BitGenerator");
            seed = bg->next_raw(bg->state);
        } else {
            PyObject *iv = PyNumber_Index(src); /* (as the "K" format: any int, wrapped to 64 bits) */
            if (!iv) {
                PyErr_Format(PyExc_TypeError,
                             "us must be a (k, tries, 3) float64 array or a (seed, tries) tuple, seed an int or a "
                             "BitGenerator capsule, not %.100s",
                             Py_TYPE(src)->tp_name);
                return -1;
            }
            seed = PyLong_AsUnsignedLongLongMask(iv);
            Py_DECREF(iv);
            if (seed == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        }
        if (*tries < 0) {
            PyErr_SetString(PyExc_ValueError, "tries must be >= 0");
            return -1;
        }
        u->arr = NULL;
        u->seed = (uint64_t)seed;
        *k = cap;
        return 0;
    }
    if (take(bs, uso, "d", 0, "us") < 0) return -1;
    Py_buffer *v = &bs->b[bs->n - 1];
    if (v->ndim != 3 || v->shape[2] != 3) {
        PyErr_SetString(PyExc_ValueError, "us must have shape (k, tries, 3)");
        return -1;
    }
    *k = v->shape[0];
    *tries = v->shape[1];
    if (cap < *k) {
        PyErr_Format(PyExc_ValueError, "out holds %zd draws, us asks for %zd", cap, *k);
        return -1;
    }
    u->arr = (const double *)v->buf;
    u->seed = 0;
    return 0;
}

/* the buffers and checks lazy_draws and lazy_propose share: x (float32), bm (float32, one
 * per block; writable for lazy_propose), out (int64), the uniforms; n logits, nb blocks */
static int draw_args(Buffers *bs, PyObject *xo, PyObject *bmo, int bm_writable, PyObject *outo, PyObject *uso,
                     Py_ssize_t block, Uniforms *u, Py_ssize_t *k, Py_ssize_t *tries, Py_ssize_t *n, Py_ssize_t *nb) {
    if (take(bs, xo, "f", 0, "x") < 0 || take(bs, bmo, "f", bm_writable, "bm") < 0 || take(bs, outo, "q", 1, "out") < 0)
        return -1;
    if (get_uniforms(bs, uso, &bs->b[2], u, k, tries) < 0) return -1;
    *n = bs->b[0].len / 4;
    *nb = bs->b[1].len / 4;
    if (block < 1 || *nb != (*n + block - 1) / block) {
        PyErr_Format(PyExc_ValueError, "bm has %zd blocks; %zd logits in blocks of %zd need %zd", *nb, *n, block,
                     block < 1 ? 0 : (*n + block - 1) / block);
        return -1;
    }
    return 0;
}

static PyObject *lazy_draws_c(PyObject *self, PyObject *args) {
    PyObject *xo, *bmo, *uso, *outo;
    double mx, thr;
    Py_ssize_t block, limit;
    if (!PyArg_ParseTuple(args, "OOddnOOn", &xo, &bmo, &mx, &thr, &block, &uso, &outo, &limit)) return NULL;
    Buffers bs = {.n = 0};
    PyObject *res = NULL;
    Py_ssize_t k, tries, n, nb;
    Uniforms u;
    if (draw_args(&bs, xo, bmo, 0, outo, uso, block, &u, &k, &tries, &n, &nb) < 0) goto done;
    double hm;
    int nomem = 0;
    Py_ssize_t got = draws_core((const float *)bs.b[0].buf, n, (const float *)bs.b[1].buf, nb, mx, thr, block, &u, k,
                                tries, (long long *)bs.b[2].buf, limit, &hm, &nomem);
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    res = Py_BuildValue("nd", got, hm);
done:
    release_all(&bs);
    return res;
}

static PyObject *lazy_propose(PyObject *self, PyObject *args) {
    PyObject *xo, *uso, *bmo, *outo;
    double head;
    Py_ssize_t block, limit;
    if (!PyArg_ParseTuple(args, "OndOOOn", &xo, &block, &head, &uso, &bmo, &outo, &limit)) return NULL;
    Buffers bs = {.n = 0};
    PyObject *res = NULL;
    Py_ssize_t k, tries, n, nb;
    Uniforms u;
    if (draw_args(&bs, xo, bmo, 1, outo, uso, block, &u, &k, &tries, &n, &nb) < 0) goto done;
    const float *x = (const float *)bs.b[0].buf;
    float *bm = (float *)bs.b[1].buf;
    if (!span_max_fn) span_max_fn = pick_span_max();
    int nan = 0;
    float g = blocks_max(span_max_fn, x, n, block, bm, &nan);
    if (nan || g == -INFINITY) { /* the caller raises; no draws */
        res = Py_BuildValue("dnd", nan ? (double)NAN : (double)g, (Py_ssize_t)0, (double)NAN);
        goto done;
    }
    double mx = (double)g, hm;
    int nomem = 0;
    Py_ssize_t got = draws_core(x, n, bm, nb, mx, mx - head, block, &u, k, tries, (long long *)bs.b[2].buf, limit,
                                &hm, &nomem);
    if (nomem) {
        PyErr_NoMemory();
        goto done;
    }
    res = Py_BuildValue("dnd", mx, got, hm);
done:
    release_all(&bs);
    return res;
}

PyMethodDef constrain_propose_methods[] = {
    {"block_max", block_max, METH_VARARGS,
     "block_max(x, block, out[, path]) -> max: out[b] = max of x[b*block:(b+1)*block] (float32, "
     "contiguous); returns the overall max, NaN if any element is NaN (a NaN never wins a "
     "block's compare).  path: one of simd_paths() (default: the best one)."},
    {"simd_paths", simd_paths, METH_NOARGS, "The block_max paths this CPU can run."},
    {"lazy_draws", lazy_draws_c, METH_VARARGS,
     "lazy_draws(x, bm, mx, thr, block, us, out, max_head_blocks) -> (draws made, head mass): "
     "the C twin of constrain.sampling.kernels.lazy_draws (same draws from the same uniforms).  "
     "us: a (k, tries, 3) float64 array, or (seed, tries) for counter_uniforms(seed, (len(out), tries, 3)), "
     "the seed an int or a numpy BitGenerator.capsule (then one raw draw of that generator)."},
    {"lazy_propose", lazy_propose, METH_VARARGS,
     "lazy_propose(x, block, head, us, bm, out, max_head_blocks) -> (max, draws made, head mass): "
     "block_max into bm, then lazy_draws with thr = max - head, in one call."},
    {NULL, NULL, 0, NULL},
};
