/* constrain._native.block_max: the lazy AWRS proposal's one pass over the logits.
 *
 * Why C and not Numba: AWRS on an agreeing model touches only a couple of tokens per step,
 * so its per-step cost is the one unavoidable pass over the vocabulary (per-block maxima,
 * the envelope of the exact lazy sampler in constrain/sampling/core.py).  Numba does not
 * vectorise a float max reduction (a dependency chain of scalar compares: ~45-150 us over
 * 128k logits, several accumulators or not), and numpy's row-wise reduce costs ~15 us with
 * its per-call machinery; a plain loop with independent lanes, compiled for AVX2 where the
 * CPU has it, is memory-bound at a few microseconds.
 *
 * The reference is numpy's ``maximum.reduce`` per block (Proposal's fallback path);
 * tests/test_native.py compares them with hypothesis, NaN and -inf included.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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
#include <stdint.h>

/* numpy aligns buffers to 16 bytes only; vector loads that straddle cache lines cost ~2x,
 * so the first few floats (up to the next ``align``-byte boundary) are taken one by one */
static Py_ssize_t head_count(const float *x, Py_ssize_t n, uintptr_t align) {
    uintptr_t mis = (uintptr_t)x % align;
    Py_ssize_t k = mis ? (Py_ssize_t)((align - mis) / sizeof(float)) : 0;
    if (mis % sizeof(float)) k = n; /* not even float-aligned: scalar throughout */
    return k < n ? k : n;
}

__attribute__((target("avx512f"))) static float span_max_avx512(const float *x, Py_ssize_t n, int *nan) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    Py_ssize_t h = head_count(x, n, 64);
    float r0 = span_max_scalar(x, h, nan);
    x += h;
    n -= h;
    Py_ssize_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 v0 = _mm512_load_ps(x + i), v1 = _mm512_load_ps(x + i + 16);
        __m512 v2 = _mm512_load_ps(x + i + 32), v3 = _mm512_load_ps(x + i + 48);
        m0 = _mm512_max_ps(v0, m0);
        m1 = _mm512_max_ps(v1, m1);
        m2 = _mm512_max_ps(v2, m2);
        m3 = _mm512_max_ps(v3, m3);
        s0 = _mm512_add_ps(s0, _mm512_add_ps(v0, v1));
        s1 = _mm512_add_ps(s1, _mm512_add_ps(v2, v3));
    }
    __m512 m = _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3));
    float lanes[16];
    _mm512_storeu_ps(lanes, m);
    float tail = span_max_scalar(x + i, n - i, nan);
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    if (sum != sum) span_max_scalar(x, i, nan);
    float r = tail > r0 ? tail : r0;
    for (int j = 0; j < 16; j++) r = lanes[j] > r ? lanes[j] : r;
    return r;
}

__attribute__((target("avx2"))) static float span_max_avx2(const float *x, Py_ssize_t n, int *nan) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    Py_ssize_t h = head_count(x, n, 32);
    float r0 = span_max_scalar(x, h, nan);
    x += h;
    n -= h;
    Py_ssize_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 v0 = _mm256_load_ps(x + i), v1 = _mm256_load_ps(x + i + 8);
        __m256 v2 = _mm256_load_ps(x + i + 16), v3 = _mm256_load_ps(x + i + 24);
        m0 = _mm256_max_ps(v0, m0);
        m1 = _mm256_max_ps(v1, m1);
        m2 = _mm256_max_ps(v2, m2);
        m3 = _mm256_max_ps(v3, m3);
        s0 = _mm256_add_ps(s0, _mm256_add_ps(v0, v1));
        s1 = _mm256_add_ps(s1, _mm256_add_ps(v2, v3));
    }
    __m256 m = _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3));
    float lanes[8], sums[8];
    _mm256_storeu_ps(lanes, m);
    _mm256_storeu_ps(sums, _mm256_add_ps(s0, s1));
    float tail = span_max_scalar(x + i, n - i, nan);
    float sum = 0;
    for (int j = 0; j < 8; j++) sum += sums[j];
    if (sum != sum) span_max_scalar(x, i, nan);
    float r = tail > r0 ? tail : r0;
    for (int j = 0; j < 8; j++) r = lanes[j] > r ? lanes[j] : r;
    return r;
}

static float span_max_sse2(const float *x, Py_ssize_t n, int *nan) {
    __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    __m128 s = _mm_setzero_ps();
    Py_ssize_t h = head_count(x, n, 16);
    float r0 = span_max_scalar(x, h, nan);
    x += h;
    n -= h;
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128 v0 = _mm_load_ps(x + i), v1 = _mm_load_ps(x + i + 4);
        __m128 v2 = _mm_load_ps(x + i + 8), v3 = _mm_load_ps(x + i + 12);
        m0 = _mm_max_ps(v0, m0);
        m1 = _mm_max_ps(v1, m1);
        m2 = _mm_max_ps(v2, m2);
        m3 = _mm_max_ps(v3, m3);
        s = _mm_add_ps(s, _mm_add_ps(_mm_add_ps(v0, v1), _mm_add_ps(v2, v3)));
    }
    __m128 m = _mm_max_ps(_mm_max_ps(m0, m1), _mm_max_ps(m2, m3));
    float lanes[4], sums[4];
    _mm_storeu_ps(lanes, m);
    _mm_storeu_ps(sums, s);
    float tail = span_max_scalar(x + i, n - i, nan);
    float sum = sums[0] + sums[1] + sums[2] + sums[3];
    if (sum != sum) span_max_scalar(x, i, nan);
    float r = tail > r0 ? tail : r0;
    for (int j = 0; j < 4; j++) r = lanes[j] > r ? lanes[j] : r;
    return r;
}

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
    float g = -INFINITY;
    int nan = 0;
    Py_BEGIN_ALLOW_THREADS for (Py_ssize_t b = 0; b < nb; b++) {
        Py_ssize_t lo = b * block, len = n - lo < block ? n - lo : block;
        float v = span_max(x + lo, len, &nan);
        out[b] = v;
        g = v > g ? v : g;
    }
    Py_END_ALLOW_THREADS res = PyFloat_FromDouble(nan ? (double)NAN : (double)g);
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&ob);
    return res;
}

PyMethodDef constrain_propose_methods[] = {
    {"block_max", block_max, METH_VARARGS,
     "block_max(x, block, out[, path]) -> max: out[b] = max of x[b*block:(b+1)*block] (float32, "
     "contiguous); returns the overall max, NaN if any element is NaN (a NaN never wins a "
     "block's compare).  path: one of simd_paths() (default: the best one)."},
    {"simd_paths", simd_paths, METH_NOARGS, "The block_max paths this CPU can run."},
    {NULL, NULL, 0, NULL},
};
