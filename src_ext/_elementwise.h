/*
 * Vectorised elementwise loops of the training step (float32 and float64).
 *
 * Why C and not Cython: these loops dominate the non-GEMM time of a step
 * (Bernoulli cross-entropy needs an exp and a log per output element, Adam a
 * sqrt and a division per parameter). They need (a) exp/log written as
 * branch-free polynomials so that the compiler can vectorise them -- libm's
 * scalar calls cannot be, and glibc's vector variants require -ffast-math,
 * which would also remove the NaN checks the engine relies on -- (b) OpenMP
 * SIMD reductions (-fopenmp-simd: no runtime, no threads) so that the loss
 * sum vectorises without -ffast-math, and (c) AVX-512 / AVX2 code paths chosen
 * at load time (GCC target_clones on Linux x86-64), since the extension is
 * compiled for the baseline ISA.
 *
 * float32 uses the Cephes single-precision polynomials (about 1 ulp on the
 * ranges used here); float64 keeps libm for accuracy.
 */
#ifndef AEFAST_ELEMENTWISE_H
#define AEFAST_ELEMENTWISE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Each vectorised loop is written once as an always-inline body and compiled
 * three times: for AVX-512, for AVX2+FMA and for the baseline ISA; the first
 * call picks the best one the CPU supports. (GCC's target_clones would be
 * shorter but does not vectorise the inlined helpers in its clones.) */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define AE_BODY static inline __attribute__((always_inline))
#define AE_AVX512 __attribute__((target("avx512f,avx512dq,avx2,fma")))
#define AE_AVX2 __attribute__((target("avx2,fma")))
static int ae_cpu_level(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return 1;
    return 0;
}
#else
#define AE_BODY static inline
#define AE_AVX512
#define AE_AVX2
static int ae_cpu_level(void) { return 0; }
#endif

#define AE_DISPATCH(ret, name, params, args)                                  \
    AE_AVX512 static ret name##_avx512 params { return name##_body args; }    \
    AE_AVX2 static ret name##_avx2 params { return name##_body args; }        \
    static ret name##_base params { return name##_body args; }                \
    static ret name params                                                    \
    {                                                                         \
        static int level = -1; /* a benign race: every thread stores the same */ \
        if (level < 0)                                                        \
            level = ae_cpu_level();                                           \
        if (level == 2)                                                       \
            return name##_avx512 args;                                        \
        if (level == 1)                                                       \
            return name##_avx2 args;                                          \
        return name##_base args;                                              \
    }

/* exp(x) for x <= 0 (Cephes expf); results below 2^-126 are flushed to ~1e-38. */
static inline float ae_exp_neg_f(float x)
{
    x = x < -87.0f ? -87.0f : x;
    /* Round to nearest by the 1.5 * 2^23 trick: branch-free, no libm call,
     * and kept exact without -ffast-math. */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* log(1 + e) for e in [0, 1] (Cephes logf on the mantissa of 1 + e). */
static inline float ae_log1p_unit_f(float e)
{
    float y = 1.0f + e;
    int big = y > 1.41421356237f;
    float f = (big ? 0.5f * y : y) - 1.0f;
    float z = f * f;
    float p = 7.0376836292e-2f;
    p = p * f - 1.1514610310e-1f;
    p = p * f + 1.1676998740e-1f;
    p = p * f - 1.2420140846e-1f;
    p = p * f + 1.4249322787e-1f;
    p = p * f - 1.6668057665e-1f;
    p = p * f + 2.0000714765e-1f;
    p = p * f - 2.4999993993e-1f;
    p = p * f + 3.3333331174e-1f;
    p = p * f * z - 0.5f * z + f;
    return p + (big ? 0.693147180559945f : 0.0f);
}

/* Loss sums: a float SIMD reduction per block of AE_BLOCK elements (mixing
 * float lanes with a double accumulator defeats GCC's AVX2 vectoriser), blocks
 * added in double, so the sum keeps about float precision per block. */
#define AE_BLOCK 1024

/* Sum of Bernoulli cross-entropies from logits z against targets x; with
 * delta non-NULL also delta = scale * (sigmoid(z) - x). */
AE_BODY double ae_bce_f_body(const float *z, const float *x, float *delta,
                             ptrdiff_t n, float scale)
{
    double total = 0.0;
    for (ptrdiff_t b = 0; b < n; b += AE_BLOCK) {
        ptrdiff_t stop = b + AE_BLOCK < n ? b + AE_BLOCK : n;
        float part = 0.0f;
        if (delta) {
            #pragma omp simd reduction(+:part)
            for (ptrdiff_t j = b; j < stop; j++) {
                float zj = z[j], xj = x[j];
                float e = ae_exp_neg_f(-fabsf(zj));
                float pos = zj > 0.0f ? zj : 0.0f;
                part += pos - zj * xj + ae_log1p_unit_f(e);
                float sig = (zj >= 0.0f ? 1.0f : e) / (1.0f + e);
                delta[j] = scale * (sig - xj);
            }
        } else {
            #pragma omp simd reduction(+:part)
            for (ptrdiff_t j = b; j < stop; j++) {
                float zj = z[j], xj = x[j];
                float e = ae_exp_neg_f(-fabsf(zj));
                float pos = zj > 0.0f ? zj : 0.0f;
                part += pos - zj * xj + ae_log1p_unit_f(e);
            }
        }
        total += part;
    }
    return total;
}

static double ae_bce_d(const double *z, const double *x, double *delta,
                       ptrdiff_t n, double scale)
{
    double total = 0.0;
    for (ptrdiff_t j = 0; j < n; j++) {
        double zj = z[j], xj = x[j];
        double e = exp(-fabs(zj));
        total += (zj > 0 ? zj : 0) - zj * xj + log1p(e);
        if (delta)
            delta[j] = scale * ((zj >= 0 ? 1.0 : e) / (1.0 + e) - xj);
    }
    return total;
}

/* Sum of squared errors; with delta non-NULL also delta = 2 scale (out - x). */
AE_BODY double ae_sse_f_body(const float *out, const float *x, float *delta,
                             ptrdiff_t n, float scale)
{
    double total = 0.0;
    float twice = 2.0f * scale;
    for (ptrdiff_t b = 0; b < n; b += AE_BLOCK) {
        ptrdiff_t stop = b + AE_BLOCK < n ? b + AE_BLOCK : n;
        float part = 0.0f;
        if (delta) {
            #pragma omp simd reduction(+:part)
            for (ptrdiff_t j = b; j < stop; j++) {
                float d = out[j] - x[j];
                part += d * d;
                delta[j] = twice * d;
            }
        } else {
            #pragma omp simd reduction(+:part)
            for (ptrdiff_t j = b; j < stop; j++) {
                float d = out[j] - x[j];
                part += d * d;
            }
        }
        total += part;
    }
    return total;
}

static double ae_sse_d(const double *out, const double *x, double *delta,
                       ptrdiff_t n, double scale)
{
    double total = 0.0;
    for (ptrdiff_t j = 0; j < n; j++) {
        double d = out[j] - x[j];
        total += d * d;
        if (delta)
            delta[j] = 2.0 * scale * d;
    }
    return total;
}

/* Adam over a flat buffer, PyTorch's placement of eps:
 * p -= step * m / (sqrt(v) * inv_sqrt_bc2 + eps). */
AE_BODY int ae_adam_f_body(float *p, const float *g, float *m, float *v, ptrdiff_t n,
                           float b1, float b2, float step, float inv_sqrt_bc2, float eps)
{
    #pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        float gj = g[j];
        float mj = b1 * m[j] + (1.0f - b1) * gj;
        float vj = b2 * v[j] + (1.0f - b2) * gj * gj;
        m[j] = mj;
        v[j] = vj;
        /* the ratio is bounded (about 1 / sqrt(1 - b2)), so step * ratio cannot overflow
           where step * mj could */
        p[j] -= step * (mj / (sqrtf(vj) * inv_sqrt_bc2 + eps));
    }
    return 0;
}

static void ae_adam_d(double *p, const double *g, double *m, double *v, ptrdiff_t n,
                      double b1, double b2, double step, double inv_sqrt_bc2, double eps)
{
    for (ptrdiff_t j = 0; j < n; j++) {
        double gj = g[j];
        double mj = b1 * m[j] + (1.0 - b1) * gj;
        double vj = b2 * v[j] + (1.0 - b2) * gj * gj;
        m[j] = mj;
        v[j] = vj;
        p[j] -= step * (mj / (sqrt(vj) * inv_sqrt_bc2 + eps));
    }
}

/* Non-zero when every value is finite: inf * 0 and NaN * 0 are NaN, so one
 * vectorised sum detects either. */
AE_BODY int ae_all_finite_f_body(const float *a, ptrdiff_t n)
{
    float acc = 0.0f;
    #pragma omp simd reduction(+:acc)
    for (ptrdiff_t j = 0; j < n; j++)
        acc += a[j] * 0.0f;
    return acc == 0.0f;
}

static int ae_all_finite_d(const double *a, ptrdiff_t n)
{
    double acc = 0.0;
    for (ptrdiff_t j = 0; j < n; j++)
        acc += a[j] * 0.0;
    return acc == 0.0;
}

/* Weight penalties on one layer's weights: g += l2 w + l1 sign(w); returns
 * sum(l2 / 2 w^2 + l1 |w|). */
AE_BODY double ae_weight_penalty_f_body(const float *w, float *g, ptrdiff_t n, float l2,
                                        float l1)
{
    double total = 0.0;
    for (ptrdiff_t b = 0; b < n; b += AE_BLOCK) {
        ptrdiff_t stop = b + AE_BLOCK < n ? b + AE_BLOCK : n;
        float part = 0.0f;
        #pragma omp simd reduction(+:part)
        for (ptrdiff_t j = b; j < stop; j++) {
            float v = w[j];
            part += 0.5f * l2 * v * v + l1 * fabsf(v);
            g[j] += l2 * v + (v > 0.0f ? l1 : (v < 0.0f ? -l1 : 0.0f));
        }
        total += part;
    }
    return total;
}

/* Box-Muller normals from 64-bit words: word i gives u1 = (bits 40-63 + 1) / 2^24
 * in (0, 1] and u2 = bits 16-39 / 2^24 in [0, 1); r = sqrt(-2 log u1), and the
 * pair (r cos 2 pi u2, r sin 2 pi u2) lands in entries 2i and 2i + 1:
 * out[j] = clean[j] + std * normal. log and sin/cos are Cephes polynomials
 * (relative error about 1e-7), so the loop vectorises. */
static inline float ae_log_unit_f(float u)   /* log(u) for u in (0, 1] */
{
    int32_t bits;
    memcpy(&bits, &u, sizeof bits);
    int32_t e = ((bits >> 23) & 0xFF) - 127;
    int32_t mbits = (bits & 0x007FFFFF) | 0x3F800000;   /* mantissa in [1, 2) */
    float m;
    memcpy(&m, &mbits, sizeof m);
    return (float)e * 0.693147180559945f + ae_log1p_unit_f(m - 1.0f);
}

AE_BODY int ae_gauss_noise_f_body(const float *clean, float *out, ptrdiff_t n,
                                  const uint64_t *words, float std)
{
    ptrdiff_t pairs = n / 2;
    #pragma omp simd
    for (ptrdiff_t i = 0; i < pairs; i++) {
        uint64_t w = words[i];
        float u1 = (float)((w >> 40) + 1) * 5.9604644775390625e-8f;
        float u2 = (float)((w >> 16) & 0xFFFFFF) * 5.9604644775390625e-8f;
        float r = sqrtf(-2.0f * ae_log_unit_f(u1));
        /* 2 pi u2 = q pi / 2 + phi, phi in [-pi/4, pi/4] */
        float q = (u2 * 4.0f + 12582912.0f) - 12582912.0f;   /* round(4 u2), 0..4 */
        float phi = (u2 - 0.25f * q) * 6.283185307179586f;
        float z = phi * phi;
        float sn = phi + phi * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z
                                    - 1.6666654611e-1f);
        float cs = 1.0f - 0.5f * z + z * z * ((2.443315711809948e-5f * z
                                               - 1.388731625493765e-3f) * z
                                              + 4.166664568298827e-2f);
        int32_t k = (int32_t)q & 3;
        float c = k == 0 ? cs : (k == 1 ? -sn : (k == 2 ? -cs : sn));
        float s = k == 0 ? sn : (k == 1 ? cs : (k == 2 ? -sn : -cs));
        out[2 * i] = clean[2 * i] + std * (r * c);
        out[2 * i + 1] = clean[2 * i + 1] + std * (r * s);
    }
    if (n % 2) {
        uint64_t w = words[pairs];
        float u1 = (float)((w >> 40) + 1) * 5.9604644775390625e-8f;
        float u2 = (float)((w >> 16) & 0xFFFFFF) * 5.9604644775390625e-8f;
        out[n - 1] = clean[n - 1] + std * (sqrtf(-2.0f * ae_log_unit_f(u1))
                                           * cosf(6.283185307179586f * u2));
    }
    return 0;
}

/* Masking / salt-and-pepper corruption from 16-bit uniforms u[j]: an entry is
 * hit when u[j] < threshold; a hit becomes 0 (masking) or, for salt and
 * pepper, high or low as u[j]'s lowest bit says; other entries are copied. */
AE_BODY int ae_mask_f_body(const float *clean, float *out, ptrdiff_t n, const uint16_t *u,
                           uint32_t threshold, int salt_pepper, float low, float high)
{
    #pragma omp simd
    for (ptrdiff_t j = 0; j < n; j++) {
        uint32_t v = u[j];
        float hit = salt_pepper ? ((v & 1u) ? high : low) : 0.0f;
        out[j] = v < threshold ? hit : clean[j];
    }
    return 0;
}

/* Activation codes, as in engine/network.py. */
enum { AE_IDENTITY = 0, AE_RELU = 1, AE_LEAKY_RELU = 2, AE_TANH = 3, AE_SIGMOID = 4,
       AE_SOFTPLUS = 5 };

/* z <- act(z + b) row by row, one pass after the GEMM. tanh keeps libm
 * (a branch-free tanh loses relative accuracy near 0). */
AE_BODY int ae_bias_act_f_body(float *z, const float *b, ptrdiff_t rows, ptrdiff_t cols,
                               int act, float slope)
{
    for (ptrdiff_t i = 0; i < rows; i++) {
        float *row = z + i * cols;
        switch (act) {
        case AE_IDENTITY:
            #pragma omp simd
            for (ptrdiff_t j = 0; j < cols; j++)
                row[j] += b[j];
            break;
        case AE_RELU:
            #pragma omp simd
            for (ptrdiff_t j = 0; j < cols; j++) {
                float v = row[j] + b[j];
                row[j] = v > 0.0f ? v : 0.0f;
            }
            break;
        case AE_LEAKY_RELU:
            #pragma omp simd
            for (ptrdiff_t j = 0; j < cols; j++) {
                float v = row[j] + b[j];
                row[j] = v > 0.0f ? v : slope * v;
            }
            break;
        case AE_TANH:
            for (ptrdiff_t j = 0; j < cols; j++)
                row[j] = tanhf(row[j] + b[j]);
            break;
        case AE_SIGMOID:
            #pragma omp simd
            for (ptrdiff_t j = 0; j < cols; j++) {
                float v = row[j] + b[j];
                float e = ae_exp_neg_f(-fabsf(v));
                row[j] = (v >= 0.0f ? 1.0f : e) / (1.0f + e);
            }
            break;
        default: /* softplus */
            #pragma omp simd
            for (ptrdiff_t j = 0; j < cols; j++) {
                float v = row[j] + b[j];
                row[j] = (v > 0.0f ? v : 0.0f) + ae_log1p_unit_f(ae_exp_neg_f(-fabsf(v)));
            }
        }
    }
    return 0;
}

/* d <- d * act'(z), written through the output a = act(z). softplus keeps
 * libm's expm1 (1 - exp(-a) cancels for small a). */
AE_BODY int ae_act_grad_f_body(float *d, const float *a, ptrdiff_t n, int act, float slope)
{
    switch (act) {
    case AE_IDENTITY:
        break;
    case AE_RELU:
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            d[j] = a[j] > 0.0f ? d[j] : 0.0f;
        break;
    case AE_LEAKY_RELU:
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            d[j] = a[j] > 0.0f ? d[j] : slope * d[j];
        break;
    case AE_TANH:
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            d[j] *= 1.0f - a[j] * a[j];
        break;
    case AE_SIGMOID:
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; j++)
            d[j] *= a[j] * (1.0f - a[j]);
        break;
    default: /* softplus: sigmoid(z) = 1 - exp(-a) */
        for (ptrdiff_t j = 0; j < n; j++)
            d[j] *= -expm1f(-a[j]);
    }
    return 0;
}

AE_DISPATCH(double, ae_bce_f, (const float *z, const float *x, float *delta, ptrdiff_t n,
                               float scale), (z, x, delta, n, scale))
AE_DISPATCH(double, ae_sse_f, (const float *out, const float *x, float *delta, ptrdiff_t n,
                               float scale), (out, x, delta, n, scale))
AE_DISPATCH(int, ae_adam_f, (float *p, const float *g, float *m, float *v, ptrdiff_t n,
                             float b1, float b2, float step, float inv_sqrt_bc2, float eps),
            (p, g, m, v, n, b1, b2, step, inv_sqrt_bc2, eps))
AE_DISPATCH(int, ae_all_finite_f, (const float *a, ptrdiff_t n), (a, n))
AE_DISPATCH(double, ae_weight_penalty_f, (const float *w, float *g, ptrdiff_t n, float l2,
                                          float l1), (w, g, n, l2, l1))
AE_DISPATCH(int, ae_bias_act_f, (float *z, const float *b, ptrdiff_t rows, ptrdiff_t cols,
                                 int act, float slope), (z, b, rows, cols, act, slope))
AE_DISPATCH(int, ae_act_grad_f, (float *d, const float *a, ptrdiff_t n, int act, float slope),
            (d, a, n, act, slope))
AE_DISPATCH(int, ae_gauss_noise_f, (const float *clean, float *out, ptrdiff_t n,
                                    const uint64_t *words, float std),
            (clean, out, n, words, std))
AE_DISPATCH(int, ae_mask_f, (const float *clean, float *out, ptrdiff_t n, const uint16_t *u,
                             uint32_t threshold, int salt_pepper, float low, float high),
            (clean, out, n, u, threshold, salt_pepper, low, high))

#endif
