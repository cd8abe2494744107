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
 * write the k largest of x[0..n) in descending order and their indices;
 * ae_topk_row_checked_{f,d} (same arguments) also return 1 for a row with NaN
 * or inf (checked within the first pass on the AVX-512 path) and 0 otherwise.
 * Order is total and deterministic: a beats b when a.value > b.value, or when
 * the values are equal and a.index < b.index (so among ties the lower index
 * comes first and is the one kept). Callers guarantee 1 <= k <= n and finite
 * x; with NaN the result is unspecified but every access stays in bounds.
 * No globals (apart from the benign CPU-level cache of AE_DISPATCH), no heap
 * allocation: values/indices and a few KB of stack are the only workspace, so
 * the functions are thread-safe and can run inside a nogil/prange loop.
 *
 * Algorithm. Elements are visited in index order, so a new element always has
 * a higher index than every kept one and never beats a kept element of equal
 * value. Hence the only test needed against the current k-th best value t is
 * the strict x[j] > t, and ties need no extra work.
 *
 *  - A lower bound t0 on the k-th largest value (ae_topk_bound): the k-th
 *    largest of the maxima of G = 2k groups (group g holds x[j], j % G == g,
 *    so the maxima are one vertical vectorised max over the row). k distinct
 *    elements are >= t0, and on random rows only about 1.4 k are.
 *  - float32 on AVX-512 with k <= 128 (ae_topk_sorted_f_masked): one compare
 *    per 16 elements against the threshold gives a bit mask; its set bits are
 *    appended to a buffer of candidates, whose k best are placed by rank (the
 *    number of candidates that beat each one: vectorised compares and
 *    popcounts, no branchy sort or insertion). A full buffer (256) is merged
 *    down to its k best, whose k-th value becomes the strict threshold; rows
 *    that fill it again and again (ascending, constant) go to the next path.
 *  - k <= AE_TOPK_SORTED_K otherwise: the row is read in blocks of
 *    AE_TOPK_BLOCK elements whose maximum (OpenMP SIMD max-reduction) is
 *    compared with the threshold (t0 until k elements have entered, then the
 *    k-th kept value t); only a block that beats it is rescanned element by
 *    element. values[] is kept sorted best first (unused slots hold -inf); an
 *    insertion finds its slot with a vectorised count of kept values >= v and
 *    shifts the tail by one.
 *  - larger k: values[]/indices[] hold a binary min-heap under the same total
 *    order (root = the worst kept element, whose value is t); a final in-place
 *    heapsort leaves it in descending order. O(n + m log k) for m heap
 *    replacements, O(n log n) at k = n, where insertion into a sorted buffer
 *    would be quadratic.
 *
 * Measured (one core of the shared AMD EPYC dev box, float32, random normal
 * rows): 4096 elements, k=32: 1.8 us/row on the AVX-512 path (4.9 us with the
 * earlier k-groups bound and insertions), of which the bound is 0.5 us;
 * 1000 elements, k=25: 0.44 us (3.0 us before).
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

/* Groups per selected element in the pre-pass bound (see ae_topk_bound). */
#ifndef AE_TOPK_GROUPS_PER_K
#define AE_TOPK_GROUPS_PER_K 2
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
/* The k-th largest of a[0..n) (1 <= k <= n), by quickselect; a is reordered. */ \
AE_BODY T ae_topk_kth_##S(T *a, ptrdiff_t n, ptrdiff_t k)                            \
{                                                                                  \
    ptrdiff_t lo = 0, hi = n - 1, want = k - 1; /* position in descending order */ \
    while (lo < hi) {                                                              \
        T p = a[lo + (hi - lo) / 2];                                               \
        ptrdiff_t i = lo, j = hi;                                                  \
        while (i <= j) {                                                           \
            while (a[i] > p) i++;                                                  \
            while (a[j] < p) j--;                                                  \
            if (i <= j) {                                                          \
                T tmp = a[i]; a[i] = a[j]; a[j] = tmp;                             \
                i++; j--;                                                          \
            }                                                                      \
        }                                                                          \
        if (want <= j) hi = j;                                                     \
        else if (want >= i) lo = i;                                                \
        else break;                                                                \
    }                                                                              \
    return a[want];                                                                \
}                                                                                  \
                                                                                   \
/* Lower bound on the k-th largest of x[0..n): the k-th largest of the maxima of \
 * G >= k disjoint groups (k distinct elements are >= it). Group g holds the     \
 * x[j] with j % G == g, so the maxima are a vertical, vectorised max over rows  \
 * of G; G = AE_TOPK_GROUPS_PER_K * k (rounded up to 16, at most n) keeps the    \
 * bound tight: on random rows about 1.4 k elements pass it (1.1 k with 4 k     \
 * groups, whose quickselect costs more than it saves) instead of the 3-4 k of  \
 * k contiguous groups, so few insertions remain. */                            \
AE_BODY T ae_topk_bound_##S(const T *x, ptrdiff_t n, ptrdiff_t k)                    \
{                                                                                  \
    T gm[AE_TOPK_GROUPS_PER_K * AE_TOPK_SORTED_K + 16];                            \
    ptrdiff_t G = (AE_TOPK_GROUPS_PER_K * k + 15) / 16 * 16, j, g;                 \
    if (G > n)                                                                     \
        G = n;                                                                     \
    for (g = 0; g < G; g++)                                                        \
        gm[g] = x[g];                                                              \
    for (j = G; j + G <= n; j += G) {                                              \
        const T *row = x + j;                                                      \
        _Pragma("omp simd")                                                        \
        for (g = 0; g < G; g++)                                                    \
            gm[g] = row[g] > gm[g] ? row[g] : gm[g];                               \
    }                                                                              \
    for (g = 0; j + g < n; g++)                                                    \
        gm[g] = x[j + g] > gm[g] ? x[j + g] : gm[g];                               \
    return ae_topk_kth_##S(gm, G, k);                                              \
}                                                                                  \
                                                                                   \
/* Sorted-buffer path (k <= AE_TOPK_SORTED_K). */                                \
AE_BODY void ae_topk_sorted_##S(const T *x, ptrdiff_t n, ptrdiff_t k,            \
                                T *val, int64_t *idx)                              \
{                                                                                  \
    const ptrdiff_t B = AE_TOPK_BLOCK;                                             \
    ptrdiff_t j, c = 0;                                                            \
    T t0 = ae_topk_bound_##S(x, n, k);                                             \
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

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define AE_TOPK_MASKED 1
/* The sorted-buffer path for float32 on AVX-512: one compare per 16 elements
 * gives a bit mask of the candidates, whose set bits are visited directly (no
 * block maximum, no rescan of a hit block). Same bound, same insertion, same
 * order of visits as ae_topk_sorted_f, so the same result. */
/* Place the k best of the m candidates cv/ci (1 <= k <= m <= capacity) into
 * val/idx, best first. cv has room for m rounded up to 16 (the padding is
 * filled with -inf here); candidates were visited in index order, so a lower
 * position means a lower index. The rank of a candidate is the number that
 * beat it (greater value, or equal value and lower position): two compares
 * and a popcount per 16 candidates, no branchy sort. */
AE_AVX512 static void ae_topk_rank_select_f(float *cv, const int64_t *ci, ptrdiff_t m,
                                            ptrdiff_t k, float *val, int64_t *idx)
{
    ptrdiff_t padded = (m + 15) / 16 * 16;
    for (ptrdiff_t i = m; i < padded; i++)
        cv[i] = -INFINITY;
    for (ptrdiff_t i = 0; i < m; i++) {
        __m512 v = _mm512_set1_ps(cv[i]);
        int r = 0;
        for (ptrdiff_t j = 0; j < padded; j += 16) {
            __m512 c = _mm512_loadu_ps(cv + j);
            unsigned gt = _mm512_cmp_ps_mask(c, v, _CMP_GT_OQ);
            unsigned eq = _mm512_cmp_ps_mask(c, v, _CMP_EQ_OQ);
            /* positions below i among j .. j + 15 */
            ptrdiff_t below = i - j;
            unsigned lower = below >= 16 ? 0xFFFFu : below <= 0 ? 0u : (1u << below) - 1u;
            r += __builtin_popcount(gt | (eq & lower));
        }
        if (r < k) {
            val[r] = cv[i];
            idx[r] = ci[i];
        }
    }
}

/* The k-th largest of the n values a[0..n) (1 <= k <= n), by rank as above;
 * a has room for n rounded up to 16. */
AE_AVX512 static float ae_topk_kth_ranked_f(float *a, ptrdiff_t n, ptrdiff_t k)
{
    ptrdiff_t padded = (n + 15) / 16 * 16;
    for (ptrdiff_t i = n; i < padded; i++)
        a[i] = -INFINITY;
    for (ptrdiff_t i = 0; i < n; i++) {
        __m512 v = _mm512_set1_ps(a[i]);
        int above = 0, ties = 0;
        for (ptrdiff_t j = 0; j < padded; j += 16) {
            __m512 c = _mm512_loadu_ps(a + j);
            above += __builtin_popcount(_mm512_cmp_ps_mask(c, v, _CMP_GT_OQ));
            ties += __builtin_popcount(_mm512_cmp_ps_mask(c, v, _CMP_EQ_OQ));
        }
        if (above < k && above + ties >= k)
            return a[i];
    }
    return -INFINITY; /* not reached for finite values */
}

/* ae_topk_bound_f on AVX-512, with the rank-based k-th largest. The same
 * pass sums x * 0, which is NaN when any x is NaN or inf: *finite gets
 * whether the row is finite (no separate pass for the check). */
AE_AVX512 static float ae_topk_bound_masked_f(const float *x, ptrdiff_t n, ptrdiff_t k,
                                              int *finite)
{
    float gm[AE_TOPK_GROUPS_PER_K * AE_TOPK_SORTED_K + 16];
    float zero[AE_TOPK_GROUPS_PER_K * AE_TOPK_SORTED_K + 16];
    ptrdiff_t G = (AE_TOPK_GROUPS_PER_K * k + 15) / 16 * 16, j, g;
    float acc = 0.0f;
    if (G > n)
        G = n;
    for (g = 0; g < G; g++) {
        gm[g] = x[g];
        zero[g] = x[g] * 0.0f;
    }
    for (j = G; j + G <= n; j += G) {
        const float *row = x + j;
        _Pragma("omp simd")
        for (g = 0; g < G; g++) {
            gm[g] = row[g] > gm[g] ? row[g] : gm[g];
            zero[g] += row[g] * 0.0f;
        }
    }
    for (g = 0; j + g < n; g++) {
        gm[g] = x[j + g] > gm[g] ? x[j + g] : gm[g];
        zero[g] += x[j + g] * 0.0f;
    }
    for (g = 0; g < G; g++)
        acc += zero[g];
    *finite = acc == 0.0f;
    if (!*finite)
        return 0.0f;
    return ae_topk_kth_ranked_f(gm, G, k);
}

/* Candidates kept before a merge (see ae_topk_sorted_f_masked). */
#define AE_TOPK_CANDIDATES 256

/* The sorted-buffer path for float32 on AVX-512: one compare per 16 elements
 * against the bound gives a bit mask of the candidates, whose set bits are
 * appended to a small buffer (no block maximum, no rescan of a hit block, no
 * insertion per candidate); the buffer's k best are then placed by rank. A
 * full buffer is merged down to its k best, whose k-th value becomes the
 * (strict) threshold. Same total order as ae_topk_sorted_f, same result. */
AE_AVX512 static int ae_topk_sorted_f_masked(const float *x, ptrdiff_t n, ptrdiff_t k,
                                             float *val, int64_t *idx)
{
    float cv[AE_TOPK_CANDIDATES + 16];
    int64_t ci[AE_TOPK_CANDIDATES];
    int finite;
    float t = ae_topk_bound_masked_f(x, n, k, &finite);
    if (!finite)
        return 1;
    ptrdiff_t m = 0, j;
    int strict = 0, merges = 0; /* after a merge: x enters when x > t */
    __m512 tv = _mm512_set1_ps(t);
    for (j = 0; j < n; j += 16) {
        unsigned bits;
        if (j + 16 <= n) {
            bits = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j), tv, _CMP_GE_OQ);
        } else {
            __mmask16 live = (__mmask16)((1u << (n - j)) - 1u);
            bits = _mm512_mask_cmp_ps_mask(live, _mm512_maskz_loadu_ps(live, x + j), tv,
                                           _CMP_GE_OQ);
        }
        while (bits) {
            ptrdiff_t q = j + __builtin_ctz(bits);
            bits &= bits - 1;
            if (strict && !(x[q] > t))
                continue;
            cv[m] = x[q];
            ci[m] = q;
            if (++m == AE_TOPK_CANDIDATES && k < AE_TOPK_CANDIDATES) {
                /* Rows that keep beating the threshold (ascending, constant) make
                 * every merge cost O(capacity^2): the insertion path is cheaper. */
                if (++merges > 4) {
                    ae_topk_sorted_f(x, n, k, val, idx);
                    return 0;
                }
                ae_topk_rank_select_f(cv, ci, m, k, val, idx);
                for (ptrdiff_t i = 0; i < k; i++) {
                    cv[i] = val[i];
                    ci[i] = idx[i];
                }
                m = k;
                t = val[k - 1];
                strict = 1;
                tv = _mm512_set1_ps(t);
            }
        }
    }
    ae_topk_rank_select_f(cv, ci, m, k, val, idx);
    return 0;
}
#endif

/* AE_DISPATCH needs a non-void body (C forbids `return f();` in a void
 * function), hence the int-returning dispatchers behind the void API. */
AE_DISPATCH(int, ae_topk_row_f_impl, (const float *x, ptrdiff_t n, ptrdiff_t k,
                                       float *values, int64_t *indices),
            (x, n, k, values, indices))
AE_DISPATCH(int, ae_topk_row_d_impl, (const double *x, ptrdiff_t n, ptrdiff_t k,
                                       double *values, int64_t *indices),
            (x, n, k, values, indices))

#ifdef AE_TOPK_MASKED
/* Whether float32 rows take ae_topk_sorted_f_masked: AVX-512 and small k. */
static int ae_topk_masked_ok(ptrdiff_t k)
{
    static int level = -1; /* a benign race: every thread stores the same */
    if (level < 0)
        level = ae_cpu_level();
    return level == 2 && 2 * k <= AE_TOPK_CANDIDATES;
}
#endif

/* Top-k of a finite row (the training step's codes are finite). */
static void ae_topk_row_f(const float *x, ptrdiff_t n, ptrdiff_t k, float *values,
                          int64_t *indices)
{
#ifdef AE_TOPK_MASKED
    if (ae_topk_masked_ok(k)) {
        (void)ae_topk_sorted_f_masked(x, n, k, values, indices);
        return;
    }
#endif
    (void)ae_topk_row_f_impl(x, n, k, values, indices);
}

/* Top-k of a row that may hold NaN or inf: returns 1 (values and indices
 * unspecified) if it does, else 0. The AVX-512 path checks in its first pass. */
static int ae_topk_row_checked_f(const float *x, ptrdiff_t n, ptrdiff_t k, float *values,
                                 int64_t *indices)
{
#ifdef AE_TOPK_MASKED
    if (ae_topk_masked_ok(k))
        return ae_topk_sorted_f_masked(x, n, k, values, indices);
#endif
    if (!ae_all_finite_f(x, n))
        return 1;
    (void)ae_topk_row_f_impl(x, n, k, values, indices);
    return 0;
}

static void ae_topk_row_d(const double *x, ptrdiff_t n, ptrdiff_t k, double *values,
                          int64_t *indices)
{
    (void)ae_topk_row_d_impl(x, n, k, values, indices);
}

static int ae_topk_row_checked_d(const double *x, ptrdiff_t n, ptrdiff_t k, double *values,
                                 int64_t *indices)
{
    if (!ae_all_finite_d(x, n))
        return 1;
    (void)ae_topk_row_d_impl(x, n, k, values, indices);
    return 0;
}

#endif
