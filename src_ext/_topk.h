/*
 * Row-wise top-k selection (float32 and float64): the one CPU implementation,
 * used by the public aefast.ops.topk (src_ext/_topk.pyx) and by the k-sparse
 * bottleneck of the training step (src_ext/_network.pyx).
 *
 *   static void ae_topk_row_f(const float *x, ptrdiff_t n, ptrdiff_t k,
 *                             float *values, int64_t *indices);
 *   static void ae_topk_row_d(const double *x, ptrdiff_t n, ptrdiff_t k,
 *                             double *values, int64_t *indices);
 *
 * write the k largest of x[0..n) in descending order and their indices.
 * Order is total and deterministic: a beats b when a.value > b.value, or when
 * the values are equal and a.index < b.index (so among ties the lower index
 * comes first and is the one kept). Callers guarantee 1 <= k <= n and finite
 * x; with NaN the result is unspecified but every access stays in bounds.
 * No globals (apart from the benign CPU-level cache of AE_DISPATCH), no
 * allocation: values/indices are the only workspace, so the functions are
 * thread-safe and can run inside a nogil/prange loop.
 *
 * Algorithm. Elements are visited in index order, so a new element always has
 * a higher index than every kept one and never beats a kept element of equal
 * value. Hence the only test needed against the current k-th best value t is
 * the strict x[j] > t, and ties need no extra work.
 *
 *  - k <= AE_TOPK_SORTED_K (the k-sparse case, k << n): a first vectorised
 *    pass takes the maxima of k disjoint groups of n/k elements; their minimum
 *    t0 is a lower bound on the k-th largest value (k distinct elements are
 *    >= t0), which on random rows leaves about 3-4 k candidates instead of the
 *    k ln(n/k) insertions of a plain scan. The second pass reads x in blocks of
 *    AE_TOPK_BLOCK elements whose maximum (OpenMP SIMD max-reduction) is
 *    compared with the current threshold (t0 until k elements have entered,
 *    then the k-th kept value t); only a block that beats it is rescanned
 *    element by element. values[] is kept sorted best first (unused slots hold
 *    -inf); an insertion finds its slot with a vectorised count of kept values
 *    >= v (no branchy walk) and shifts the tail by one.
 *  - larger k: values[]/indices[] hold a binary min-heap under the same total
 *    order (root = the worst kept element, whose value is t); a final in-place
 *    heapsort leaves it in descending order. O(n + m log k) for m heap
 *    replacements, O(n log n) at k = n, where insertion into a sorted buffer
 *    would be quadratic.
 *
 * Measured (one core of the shared AMD EPYC dev box, AVX-512 path, float32):
 * 256 x 4096 k=32 about 4.9 us/row, 256 x 1000 k=25 about 3.0 us/row, i.e.
 * ~15k and ~9k cycles: the remaining cost is the ~70 / ~60 insertions per row
 * and the scalar rescans of hit blocks (one mispredicted branch per
 * candidate), not the streaming pass. See the report of issue 4 for the next
 * steps (tighter t0, branch-free candidate compaction).
 *
 * The vectorised pre-filter is compiled for AVX-512, AVX2 and the baseline ISA
 * and chosen at load time (AE_DISPATCH of _elementwise.h).
 */
#ifndef AEFAST_TOPK_H
#define AEFAST_TOPK_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "_elementwise.h" /* AE_BODY, AE_DISPATCH, ae_cpu_level */

/* Elements per pre-filter block: 2 AVX-512 vectors of float32 (measured
 * against 16 and 64). Larger blocks
 * amortise the horizontal reduction, smaller ones rescan less after a hit. */
#ifndef AE_TOPK_BLOCK
#define AE_TOPK_BLOCK 32
#endif

/* Largest k handled by the sorted buffer; above it, the heap. */
#ifndef AE_TOPK_SORTED_K
#define AE_TOPK_SORTED_K 128
#endif

/* AE_TOPK_DEFINE(T, S) defines, for element type T, the body
 * ae_topk_row_S_impl_body (dispatched below) and its helpers. */
#define AE_TOPK_DEFINE(T, S)                                                       \
                                                                                   \
/* Insert (v, j) into the buffer val/idx of capacity k, sorted best first, whose \
 * unused tail holds -inf: v goes after every kept value >= v (kept ones have   \
 * lower indices), found by a vectorised count instead of a branchy walk; the   \
 * tail shifts by one and the last entry drops out. Requires v > val[k - 1].   */ \
AE_BODY void ae_topk_put_##S(T *val, int64_t *idx, ptrdiff_t k, T v, int64_t j)  \
{                                                                                  \
    int p = 0;                                                                     \
    _Pragma("omp simd reduction(+:p)")                                             \
    for (ptrdiff_t i = 0; i < k; i++)                                              \
        p += val[i] >= v;                                                          \
    for (ptrdiff_t i = k - 1; i > p; i--) {                                        \
        val[i] = val[i - 1];                                                       \
        idx[i] = idx[i - 1];                                                       \
    }                                                                              \
    if (p < k) { /* always, unless v is NaN */                                     \
        val[p] = v;                                                                \
        idx[p] = j;                                                                \
    }                                                                              \
}                                                                                  \
                                                                                   \
/* a is worse than b in the total order (smaller value, or equal value and   \
 * higher index). */                                                             \
static inline int ae_topk_worse_##S(T va, int64_t ia, T vb, int64_t ib)          \
{                                                                                  \
    return va < vb || (va == vb && ia > ib);                                       \
}                                                                                  \
                                                                                   \
/* Restore the min-heap (root = worst) below position p, heap of length len. */ \
static inline void ae_topk_sift_##S(T *val, int64_t *idx, ptrdiff_t len,         \
                                    ptrdiff_t p)                                   \
{                                                                                  \
    T v = val[p];                                                                  \
    int64_t i = idx[p];                                                            \
    for (;;) {                                                                     \
        ptrdiff_t c = 2 * p + 1;                                                   \
        if (c >= len)                                                              \
            break;                                                                 \
        if (c + 1 < len && ae_topk_worse_##S(val[c + 1], idx[c + 1], val[c], idx[c])) \
            c++;                                                                   \
        if (!ae_topk_worse_##S(val[c], idx[c], v, i))                              \
            break;                                                                 \
        val[p] = val[c];                                                           \
        idx[p] = idx[c];                                                           \
        p = c;                                                                     \
    }                                                                              \
    val[p] = v;                                                                    \
    idx[p] = i;                                                                    \
}                                                                                  \
                                                                                   \
/* Maximum of x[0..len): vectorised (max is exact: no reassociation issue). */  \
AE_BODY T ae_topk_max_##S(const T *x, ptrdiff_t len)                             \
{                                                                                  \
    T m = x[0];                                                                    \
    _Pragma("omp simd reduction(max:m)")                                           \
    for (ptrdiff_t q = 0; q < len; q++)                                            \
        m = x[q] > m ? x[q] : m;                                                   \
    return m;                                                                      \
}                                                                                  \
                                                                                   \
/* Sorted-buffer path (k <= AE_TOPK_SORTED_K). */                                \
AE_BODY void ae_topk_sorted_##S(const T *x, ptrdiff_t n, ptrdiff_t k,            \
                                T *val, int64_t *idx)                              \
{                                                                                  \
    const ptrdiff_t B = AE_TOPK_BLOCK;                                             \
    ptrdiff_t len = n / k, j, c = 0;                                               \
    /* Lower bound on the k-th largest value: the smallest of the maxima of k     \
     * disjoint groups (k distinct elements are >= it). */                        \
    T t0 = ae_topk_max_##S(x, len);                                                \
    for (ptrdiff_t g = 1; g < k; g++) {                                            \
        T m = ae_topk_max_##S(x + g * len, len);                                   \
        t0 = m < t0 ? m : t0;                                                      \
    }                                                                              \
    for (ptrdiff_t i = 0; i < k; i++) {                                            \
        val[i] = -(T)INFINITY;                                                     \
        idx[i] = 0;                                                                \
    }                                                                              \
    /* Phase A, buffer not yet full: every x >= t0 enters. */                     \
    for (j = 0; j < n && c < k;) {                                                 \
        ptrdiff_t stop = j + B < n ? j + B : n;                                    \
        if (stop - j == B && !(ae_topk_max_##S(x + j, B) >= t0)) {                 \
            j = stop;                                                              \
            continue;                                                              \
        }                                                                          \
        for (; j < stop && c < k; j++)                                             \
            if (x[j] >= t0) {                                                      \
                ae_topk_put_##S(val, idx, k, x[j], j);                             \
                c++;                                                               \
            }                                                                      \
    }                                                                              \
    /* Phase B, buffer full: x enters when it beats the k-th kept value. */      \
    T t = val[k - 1];                                                              \
    for (; j < n && j % B; j++)                                                    \
        if (x[j] > t) {                                                            \
            ae_topk_put_##S(val, idx, k, x[j], j);                                 \
            t = val[k - 1];                                                        \
        }                                                                          \
    for (; j + B <= n; j += B) {                                                   \
        if (!(ae_topk_max_##S(x + j, B) > t))                                      \
            continue;                                                              \
        for (ptrdiff_t q = j; q < j + B; q++)                                      \
            if (x[q] > t) {                                                        \
                ae_topk_put_##S(val, idx, k, x[q], q);                             \
                t = val[k - 1];                                                    \
            }                                                                      \
    }                                                                              \
    for (; j < n; j++)                                                             \
        if (x[j] > t) {                                                            \
            ae_topk_put_##S(val, idx, k, x[j], j);                                 \
            t = val[k - 1];                                                        \
        }                                                                          \
}                                                                                  \
                                                                                   \
/* Heap path (larger k). */                                                      \
static void ae_topk_heap_##S(const T *x, ptrdiff_t n, ptrdiff_t k,               \
                             T *val, int64_t *idx)                                 \
{                                                                                  \
    ptrdiff_t j;                                                                   \
    for (j = 0; j < k; j++) {                                                      \
        val[j] = x[j];                                                             \
        idx[j] = j;                                                                \
    }                                                                              \
    for (ptrdiff_t p = k / 2 - 1; p >= 0; p--)                                     \
        ae_topk_sift_##S(val, idx, k, p);                                          \
    T t = val[0];                                                                  \
    for (; j < n; j++)                                                             \
        if (x[j] > t) {                                                            \
            val[0] = x[j];                                                         \
            idx[0] = j;                                                            \
            ae_topk_sift_##S(val, idx, k, 0);                                      \
            t = val[0];                                                            \
        }                                                                          \
    /* Heapsort: moving the root (worst) to the end each time leaves the      \
     * buffer best-first. */                                                     \
    for (ptrdiff_t m = k - 1; m > 0; m--) {                                        \
        T v = val[0];                                                              \
        int64_t i = idx[0];                                                        \
        val[0] = val[m];                                                           \
        idx[0] = idx[m];                                                           \
        val[m] = v;                                                                \
        idx[m] = i;                                                                \
        ae_topk_sift_##S(val, idx, m, 0);                                          \
    }                                                                              \
}                                                                                  \
                                                                                   \
AE_BODY int ae_topk_row_##S##_impl_body(const T *x, ptrdiff_t n, ptrdiff_t k,    \
                                        T *val, int64_t *idx)                      \
{                                                                                  \
    if (k <= AE_TOPK_SORTED_K)                                                     \
        ae_topk_sorted_##S(x, n, k, val, idx);                                     \
    else                                                                           \
        ae_topk_heap_##S(x, n, k, val, idx);                                       \
    return 0;                                                                      \
}

AE_TOPK_DEFINE(float, f)
AE_TOPK_DEFINE(double, d)

/* AE_DISPATCH needs a non-void body (C forbids `return f();` in a void
 * function), hence the int-returning dispatchers behind the void API. */
AE_DISPATCH(int, ae_topk_row_f_impl, (const float *x, ptrdiff_t n, ptrdiff_t k,
                                       float *values, int64_t *indices),
            (x, n, k, values, indices))
AE_DISPATCH(int, ae_topk_row_d_impl, (const double *x, ptrdiff_t n, ptrdiff_t k,
                                       double *values, int64_t *indices),
            (x, n, k, values, indices))

static void ae_topk_row_f(const float *x, ptrdiff_t n, ptrdiff_t k, float *values,
                          int64_t *indices)
{
    (void)ae_topk_row_f_impl(x, n, k, values, indices);
}

static void ae_topk_row_d(const double *x, ptrdiff_t n, ptrdiff_t k, double *values,
                          int64_t *indices)
{
    (void)ae_topk_row_d_impl(x, n, k, values, indices);
}

#endif
