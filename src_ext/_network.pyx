# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled CPU training step of the aefast network engine.

Design
------
A network is a chain of dense layers whose parameters live in one flat buffer:
for layer ``l`` the weights ``W_l`` (``n_in x n_out``, C order) start at
``w_off[l]`` and the bias ``b_l`` (``n_out``) at ``b_off[l]``. The gradient
buffer and the optimizer states are twins of the same length and layout, so the
optimizer is one fused pass over flat arrays.

Activations of a mini-batch are kept in one workspace: the block of layer ``l``
(``l = 0`` is the gathered input batch) holds ``batch x sizes[l]`` values in C
order. The backward pass needs nothing else: every supported activation has a
derivative expressible through its *output*, so pre-activations are never
stored. The last layer keeps its logits when the loss is Bernoulli
cross-entropy, which is then computed stably from them.

BLAS is column major while our blocks are row major. A row-major ``B x n``
block is the column-major ``n x B`` matrix, so ``Z = H W`` is computed as
``Z^T = W^T H^T`` without any transposition in memory; see ``_forward_layer``
and ``_backward_layer``.

Everything from the gather of a batch (through the shuffled index, so the
data array is never copied) to the optimizer update runs without the GIL and
without returning to Python; a Python call covers many batches.
Status codes report a non-finite loss or gradient *before* the update, so the
parameters stay at their last finite values.

A step can be data-parallel (``train_batches(..., n_threads=T, parts=P)``):
the batch is split into P contiguous parts, each run forward and backward with
its own workspaces and gradient buffer, by T OpenMP threads; the gradients are
then summed and the optimizer applied over disjoint ranges of the flat buffer.
What couples the rows of a batch runs serially in between: the random draws
(in batch order), the TopK firing counts and the code penalties' batch
statistics. The result depends on P (the order of the gradient sums), never on
T, so a fit that switches thread counts as the machine's load changes stays
reproducible.
"""
from libc.math cimport exp, expm1, log, log1p, fabs, sqrt, tanh, isfinite, cos, sin
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from cpython.pycapsule cimport PyCapsule_GetPointer
from numpy.random cimport bitgen_t
from cython.parallel cimport prange
from numpy.random.c_distributions cimport random_standard_normal, random_standard_normal_f
from scipy.linalg.cython_blas cimport sgemm, dgemm

import numpy as np

cdef extern from "_topk.h" nogil:
    void ae_topk_row_f(const float* x, Py_ssize_t n, Py_ssize_t k, float* values,
                       int64_t* indices)
    void ae_topk_row_d(const double* x, Py_ssize_t n, Py_ssize_t k, double* values,
                       int64_t* indices)

cdef extern from "_elementwise.h" nogil:
    double ae_bce_f(const float* z, const float* x, float* delta, Py_ssize_t n, float scale)
    double ae_bce_d(const double* z, const double* x, double* delta, Py_ssize_t n, double scale)
    double ae_sse_f(const float* out, const float* x, float* delta, Py_ssize_t n, float scale)
    double ae_sse_d(const double* out, const double* x, double* delta, Py_ssize_t n,
                    double scale)
    int ae_adam_f(float* p, const float* g, float* m, float* v, Py_ssize_t n, float b1,
                   float b2, float step, float inv_sqrt_bc2, float eps)
    void ae_adam_d(double* p, const double* g, double* m, double* v, Py_ssize_t n, double b1,
                   double b2, double step, double inv_sqrt_bc2, double eps)
    int ae_all_finite_f(const float* a, Py_ssize_t n)
    int ae_all_finite_d(const double* a, Py_ssize_t n)
    int ae_bias_act_f(float* z, const float* b, Py_ssize_t rows, Py_ssize_t cols, int act,
                      float slope)
    int ae_act_grad_f(float* d, const float* a, Py_ssize_t n, int act, float slope)
    double ae_weight_penalty_f(const float* w, float* g, Py_ssize_t n, float l2, float l1)
    int ae_gauss_noise_f(const float* clean, float* out, Py_ssize_t n, const uint64_t* words,
                         float std)
    int ae_mask_f(const float* clean, float* out, Py_ssize_t n, const uint16_t* u,
                  uint32_t threshold, int salt_pepper, float low, float high)

ctypedef fused floating:
    float
    double

# Activation codes (engine/network.py holds the names).
cdef enum:
    ACT_IDENTITY = 0
    ACT_RELU = 1
    ACT_LEAKY_RELU = 2
    ACT_TANH = 3
    ACT_SIGMOID = 4
    ACT_SOFTPLUS = 5

# Loss codes (engine/losses.py).
cdef enum:
    LOSS_MSE = 0
    LOSS_BCE = 1
    LOSS_GAUSS = 2            # Gaussian NLL with per-feature log-variance (VAE)

# VAE bottleneck: log-variance clamp (engine/bottleneck.py documents it).
cdef double LOGVAR_MIN = -20.0
cdef double LOGVAR_MAX = 10.0
cdef double LOG_2PI = 1.8378770664093453

# Optimizer codes (engine/optimizers.py).
cdef enum:
    OPT_SGD = 0
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3

# Code-layer sparsity (engine/regularizers.py).
cdef enum:
    SP_NONE = 0
    SP_L1 = 1
    SP_KL = 2
    SP_TOPK = 3

# Input corruption (engine/regularizers.py).
cdef enum:
    CO_NONE = 0
    CO_GAUSSIAN = 1
    CO_MASKING = 2
    CO_SALT_PEPPER = 3

# Status codes returned to Python.
cdef enum:
    ST_OK = 0
    ST_NONFINITE_LOSS = 1
    ST_NONFINITE_GRAD = 2

STATUS_OK = ST_OK
STATUS_NONFINITE_LOSS = ST_NONFINITE_LOSS
STATUS_NONFINITE_GRAD = ST_NONFINITE_GRAD

cdef char TR_N = b'N'
cdef char TR_T = b'T'

cdef struct Reg:
    Py_ssize_t code_block     # workspace block of the code (0: no code-layer part)
    int sparsity
    double weight             # L1 / KL penalty weight
    double target             # KL target mean activation
    Py_ssize_t k              # TopK active units per row in training
    bint normalize_decoder    # TopK: rows of the first decoder matrix kept at unit norm
    int corruption
    double level              # noise std or corrupted fraction
    double low, high          # salt-and-pepper values
    bitgen_t* rng
    int64_t* fired            # per code unit: times selected with a non-zero value, or NULL
    Py_ssize_t aux_k          # AuxK: dead units used to reconstruct the residual (0: off)
    double aux_weight
    int64_t dead_after        # AuxK: a unit is dead after this many samples without firing
    int64_t* since_fired      # per code unit: training samples since it last fired
    double* rho               # per code unit: batch mean activation (KL workspace)
    bint gaussian             # VAE: block code_block holds [mu | log var] of n_latent each,
    Py_ssize_t n_latent       #   sampled into the z block that the decoder reads
    double kl_weight          # VAE: weight of KL(q(z|x) || N(0, I)) (beta, warm-up)
    Py_ssize_t obs_off        # LOSS_GAUSS: offset of the learned log-variances in params,
    double obs_logvar         #   or -1 and this fixed log-variance


cdef struct Spec:
    Py_ssize_t n_layers
    const int64_t* sizes      # n_layers + 1
    const int64_t* acts       # n_layers
    const int64_t* w_off      # n_layers
    const int64_t* b_off      # n_layers
    int loss
    double leaky_slope
    const Reg* reg

cdef struct OptConfig:
    int kind
    double lr
    double beta1
    double beta2
    double eps
    double momentum
    double weight_decay
    double weight_l1
    int64_t t                 # updates done so far (Adam bias correction)


cdef inline void _gemm(char ta, char tb, int m, int n, int k, floating alpha,
                       const floating* a, int lda, const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    # cython_blas takes non-const pointers; BLAS never writes A or B.
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb,
              &beta, c, &ldc)


cdef inline floating _sigmoid(floating z) noexcept nogil:
    # Split by sign so exp never overflows.
    cdef floating e
    if z >= 0:
        return 1 / (1 + exp(-z))
    e = exp(z)
    return e / (1 + e)


cdef inline floating _softplus(floating z) noexcept nogil:
    return (z if z > 0 else 0) + log1p(exp(-fabs(z)))


cdef void _bias_activation(floating* z, const floating* b, Py_ssize_t rows,
                           Py_ssize_t cols, int act, floating slope) noexcept nogil:
    """z <- act(z + b) in place, row by row (one pass after the GEMM)."""
    cdef Py_ssize_t i, j
    cdef floating v
    cdef floating* row
    if floating is float:  # vectorised C (src_ext/_elementwise.h)
        ae_bias_act_f(z, b, rows, cols, act, slope)
        return
    for i in range(rows):
        row = z + i * cols
        if act == ACT_IDENTITY:
            for j in range(cols):
                row[j] = row[j] + b[j]
        elif act == ACT_RELU:
            for j in range(cols):
                v = row[j] + b[j]
                row[j] = v if v > 0 else 0
        elif act == ACT_LEAKY_RELU:
            for j in range(cols):
                v = row[j] + b[j]
                row[j] = v if v > 0 else slope * v
        elif act == ACT_TANH:
            for j in range(cols):
                row[j] = tanh(row[j] + b[j])
        elif act == ACT_SIGMOID:
            for j in range(cols):
                row[j] = _sigmoid(row[j] + b[j])
        else:  # softplus
            for j in range(cols):
                row[j] = _softplus(row[j] + b[j])


cdef void _mul_derivative(floating* d, const floating* a, Py_ssize_t n, int act,
                          floating slope) noexcept nogil:
    """d <- d * act'(z), with act' written through the output a = act(z)."""
    cdef Py_ssize_t j
    if floating is float:  # vectorised C (src_ext/_elementwise.h)
        ae_act_grad_f(d, a, n, act, slope)
        return
    if act == ACT_IDENTITY:
        return
    elif act == ACT_RELU:
        for j in range(n):
            if a[j] <= 0:
                d[j] = 0
    elif act == ACT_LEAKY_RELU:
        for j in range(n):
            if a[j] <= 0:
                d[j] = d[j] * slope
    elif act == ACT_TANH:
        for j in range(n):
            d[j] = d[j] * (1 - a[j] * a[j])
    elif act == ACT_SIGMOID:
        for j in range(n):
            d[j] = d[j] * a[j] * (1 - a[j])
    else:  # softplus: sigmoid(z) = 1 - exp(-a)
        for j in range(n):
            d[j] = d[j] * (-expm1(-a[j]))



cdef inline Py_ssize_t _block_offset(const Spec* s, Py_ssize_t layer,
                                     Py_ssize_t batch) noexcept nogil:
    cdef Py_ssize_t l, off = 0
    for l in range(layer):
        off += batch * s.sizes[l]
    return off


cdef inline Py_ssize_t _in_width(const Spec* s, Py_ssize_t layer) noexcept nogil:
    """Input width of `layer`: the decoder of a VAE reads z, half the stats block."""
    if s.reg.gaussian and layer == s.reg.code_block:
        return s.reg.n_latent
    return s.sizes[layer]


cdef inline Py_ssize_t _z_offset(const Spec* s, Py_ssize_t batch) noexcept nogil:
    """VAE: the z block (batch x n_latent) follows the output block; eps follows z."""
    return _block_offset(s, s.n_layers + 1, batch)


cdef inline double _clamp_logvar(double v) noexcept nogil:
    if v < LOGVAR_MIN:
        return LOGVAR_MIN
    if v > LOGVAR_MAX:
        return LOGVAR_MAX
    return v


cdef double _reparameterize(const floating* stats, Py_ssize_t rows, Py_ssize_t k,
                            floating* z, floating* eps, bitgen_t* rng,
                            double* kl_rows, bint eps_ready=False) noexcept nogil:
    """z <- mu + exp(log var / 2) * eps per row; returns the summed analytic KL.

    `stats` rows are [mu | log var] (2k values). eps is drawn row by row, k at
    a time, from `rng` (NumPy's standard normal ziggurat, float32 or float64 as
    the data), and kept for the backward pass; with `eps_ready` (and `rng`
    NULL) eps already holds the draws (see _draw_eps). With neither, z <- mu
    (the posterior mean) and eps is not touched. kl_rows (if not NULL) gets
    each row's KL(N(mu, sigma^2) || N(0, I)).
    """
    cdef Py_ssize_t i, j
    cdef double mu, lv, var, e, row_kl, total = 0.0
    cdef const floating* srow
    for i in range(rows):
        srow = stats + i * 2 * k
        row_kl = 0.0
        for j in range(k):
            mu = srow[j]
            lv = _clamp_logvar(srow[k + j])
            var = exp(lv)
            row_kl += mu * mu + var - 1.0 - lv
            if rng != NULL:
                if floating is float:
                    e = random_standard_normal_f(rng)
                else:
                    e = random_standard_normal(rng)
                eps[i * k + j] = <floating>e
                z[i * k + j] = <floating>(mu + sqrt(var) * <floating>e)
            elif eps_ready:
                z[i * k + j] = <floating>(mu + sqrt(var) * eps[i * k + j])
            else:
                z[i * k + j] = <floating>mu
        row_kl *= 0.5
        if kl_rows != NULL:
            kl_rows[i] = row_kl
        total += row_kl
    return total


cdef void _draw_eps(floating* eps, Py_ssize_t n, bitgen_t* rng) noexcept nogil:
    """eps <- n standard normals in the order _reparameterize draws them."""
    cdef Py_ssize_t j
    for j in range(n):
        if floating is float:
            eps[j] = random_standard_normal_f(rng)
        else:
            eps[j] = <floating>random_standard_normal(rng)


cdef void _reparameterize_backward(const floating* stats, const floating* eps,
                                   const floating* d_z, floating* d_stats, Py_ssize_t rows,
                                   Py_ssize_t k, double kl_scale) noexcept nogil:
    """d_stats <- gradient through z = mu + sigma eps and through kl_scale * KL.

    No gradient reaches a log-variance where its clamp is active.
    """
    cdef Py_ssize_t i, j
    cdef double mu, raw, lv, sd, g
    for i in range(rows):
        for j in range(k):
            mu = stats[i * 2 * k + j]
            raw = stats[i * 2 * k + k + j]
            g = d_z[i * k + j]
            d_stats[i * 2 * k + j] = <floating>(g + kl_scale * mu)
            if raw < LOGVAR_MIN or raw > LOGVAR_MAX:
                d_stats[i * 2 * k + k + j] = 0
            else:
                lv = raw
                sd = exp(0.5 * lv)
                d_stats[i * 2 * k + k + j] = <floating>(
                    0.5 * g * eps[i * k + j] * sd + kl_scale * 0.5 * (sd * sd - 1.0))


cdef inline void _topk_row(const floating* x, Py_ssize_t n, Py_ssize_t k, floating* values,
                           int64_t* indices) noexcept nogil:
    if floating is float:
        ae_topk_row_f(x, n, k, values, indices)
    else:
        ae_topk_row_d(x, n, k, values, indices)


cdef void _keep_topk(floating* code, Py_ssize_t rows, Py_ssize_t width, Py_ssize_t k,
                     int64_t* idx, floating* values, int64_t* fired, int64_t* since_fired,
                     floating* dense) noexcept nogil:
    """Zero all but the k largest entries of each row; idx gets their columns.

    Training also counts firings (`fired`; `since_fired` is reset where a unit
    fires, unless NULL) and, for AuxK, keeps the dense code in `dense`;
    inference passes NULL for all three.
    """
    cdef Py_ssize_t i, t
    cdef floating* row
    for i in range(rows):
        row = code + i * width
        _topk_row(row, width, k, values, idx + i * k)
        if dense != NULL:
            memcpy(dense + i * width, row, width * sizeof(floating))
        memset(row, 0, width * sizeof(floating))
        for t in range(k):
            row[idx[i * k + t]] = values[t]
            if fired != NULL and values[t] != 0:
                fired[idx[i * k + t]] += 1
                if since_fired != NULL:
                    since_fired[idx[i * k + t]] = 0


cdef void _sparse_decode(const floating* code, Py_ssize_t rows, Py_ssize_t width,
                         Py_ssize_t k, const int64_t* idx, const floating* w,
                         Py_ssize_t n_out, floating* z) noexcept nogil:
    """z <- code @ W touching only the k active rows of W per sample: O(rows k n_out)."""
    cdef Py_ssize_t i, t, j, c
    cdef floating v
    cdef floating* zrow
    cdef const floating* wrow
    memset(z, 0, rows * n_out * sizeof(floating))
    for i in range(rows):
        zrow = z + i * n_out
        for t in range(k):
            j = idx[i * k + t]
            v = code[i * width + j]
            if v != 0:
                wrow = w + j * n_out
                for c in range(n_out):
                    zrow[c] += v * wrow[c]


cdef double _forward(const Spec* s, const floating* params, floating* ws,
                     Py_ssize_t stride, Py_ssize_t rows, Py_ssize_t first,
                     Py_ssize_t last, bint keep_logits, Py_ssize_t topk,
                     int64_t* idx, floating* values, int64_t* fired,
                     int64_t* since_fired, floating* dense, bitgen_t* sample_rng,
                     double* kl_rows, bint eps_ready=False) noexcept nogil:
    """Forward through layers [first, last) of blocks laid out for `stride` rows.

    The input must already sit in block `first` (for a VAE decoding from
    `first` = code block: in the z block). With `keep_logits`, the last
    layer is left as pre-activation plus bias (logits). With `topk` > 0 the
    code block keeps its `topk` largest units per row (columns in `idx`), and
    the next layer decodes from those rows of its weights only. A VAE's stats
    block is sampled into z with `sample_rng` (NULL: z = mu, or with
    `eps_ready` the draws already in the eps block); the summed KL is returned
    (0 without a VAE bottleneck) and kl_rows gets it per row. Firings are
    counted in `fired` / `since_fired` (see _keep_topk).
    """
    cdef Py_ssize_t l, n_in, n_out
    cdef Py_ssize_t cb = s.reg.code_block
    cdef floating* h
    cdef floating* z
    cdef int act
    cdef bint sparse_input
    cdef double kl = 0.0
    cdef floating* zb = ws + _z_offset(s, stride)
    for l in range(first, last):
        n_in = _in_width(s, l)
        n_out = s.sizes[l + 1]
        if s.reg.gaussian and l == cb:
            h = zb
        else:
            h = ws + _block_offset(s, l, stride)
        z = ws + _block_offset(s, l + 1, stride)
        sparse_input = topk > 0 and l == cb and first < cb
        if sparse_input:
            _sparse_decode(h, rows, n_in, topk, idx, params + s.w_off[l], n_out, z)
        else:
            # Z^T (n_out x rows, col-major) = W^T (n_out x n_in) @ H^T (n_in x rows)
            _gemm(TR_N, TR_N, <int>n_out, <int>rows, <int>n_in, <floating>1.0,
                  params + s.w_off[l], <int>n_out, h, <int>n_in, <floating>0.0,
                  z, <int>n_out)
        act = <int>s.acts[l]
        if keep_logits and l == last - 1:
            act = ACT_IDENTITY
        _bias_activation(z, params + s.b_off[l], rows, n_out, act,
                         <floating>s.leaky_slope)
        if topk > 0 and l + 1 == cb:
            _keep_topk(z, rows, n_out, topk, idx, values, fired, since_fired, dense)
        if s.reg.gaussian and l + 1 == cb and last > cb:
            kl = _reparameterize(z, rows, s.reg.n_latent, zb, zb + stride * s.reg.n_latent,
                                 sample_rng, kl_rows, eps_ready)
    return kl


cdef double _code_penalty_sum(const Spec* s, const floating* code, Py_ssize_t rows,
                              Py_ssize_t width) noexcept nogil:
    """Accumulate one part of a batch's codes for the code penalty.

    L1 returns sum |h_ij| of the part; KL adds its column sums to reg.rho
    (zeroed by the caller before the first part) and returns 0. A batch split
    over threads accumulates each thread's rows, then calls
    _code_penalty_finish once.
    """
    cdef const Reg* r = s.reg
    cdef Py_ssize_t i, j
    cdef double total = 0.0
    if r.sparsity == SP_L1:
        for i in range(rows * width):
            total += fabs(code[i])
    elif r.sparsity == SP_KL:
        for i in range(rows):
            for j in range(width):
                r.rho[j] += code[i * width + j]
    return total


cdef double _code_penalty_finish(const Spec* s, double l1_sum, Py_ssize_t rows,
                                 Py_ssize_t width) noexcept nogil:
    """Value of the L1-activity or KL-sparsity penalty of a batch of `rows` rows.

    L1: weight * mean over rows of sum_j |h_ij| (`l1_sum` from
    _code_penalty_sum). KL: weight * sum_j KL(target || rho_j) with rho_j the
    batch mean of unit j (clipped to [1e-7, 1 - 1e-7]); reg.rho is then
    replaced by the per-unit gradient that _add_code_penalty_grad adds.
    """
    cdef const Reg* r = s.reg
    cdef Py_ssize_t j
    cdef double total = 0.0, rho, t = r.target
    if r.sparsity == SP_L1:
        return r.weight * l1_sum / rows
    if r.sparsity == SP_KL:
        for j in range(width):
            rho = min(max(r.rho[j] / rows, 1e-7), 1.0 - 1e-7)
            total += t * log(t / rho) + (1.0 - t) * log((1.0 - t) / (1.0 - rho))
            r.rho[j] = r.weight * (-t / rho + (1.0 - t) / (1.0 - rho)) / rows
        return r.weight * total
    return 0.0


cdef void _add_code_penalty_grad(const Spec* s, const floating* code, floating* d,
                                 Py_ssize_t rows, Py_ssize_t width,
                                 Py_ssize_t norm_rows) noexcept nogil:
    """d (dLoss/dcode) += gradient of the code penalty (after _code_penalty_finish).

    `norm_rows` is the number of rows of the whole batch (`rows` may be one
    thread's part of it). Reads reg.rho only, so threads may share it.
    """
    cdef const Reg* r = s.reg
    cdef Py_ssize_t i, j
    cdef floating c
    if r.sparsity == SP_L1:
        c = <floating>(r.weight / norm_rows)
        for i in range(rows * width):
            if code[i] > 0:
                d[i] += c
            elif code[i] < 0:
                d[i] -= c
    elif r.sparsity == SP_KL:
        for i in range(rows):
            for j in range(width):
                d[i * width + j] += <floating>r.rho[j]


cdef inline Py_ssize_t _corruption_words(const Reg* r, Py_ssize_t n) noexcept nogil:
    """Random 64-bit words that corrupting n values takes."""
    return (n + 1) // 2 if r.corruption == CO_GAUSSIAN else (n + 3) // 4


cdef void _draw_corruption_words(const Reg* r, Py_ssize_t n, uint64_t* words) noexcept nogil:
    """words <- the random words for corrupting n values (see _corrupt)."""
    cdef Py_ssize_t j
    for j in range(_corruption_words(r, n)):
        words[j] = r.rng.next_uint64(r.rng.state)


cdef void _corrupt(const Reg* r, const floating* clean, floating* out, Py_ssize_t n,
                   const uint64_t* words) noexcept nogil:
    """out <- corrupted copy of clean (Gaussian, masking or salt-and-pepper noise).

    `words` holds the random words _draw_corruption_words drew for n values
    (drawing is serial, this part may run in a thread). Gaussian noise is
    Box-Muller, a pair of normals per word (see ae_gauss_noise_f in
    _elementwise.h); masking and salt-and-pepper take four 16-bit uniforms
    per word.
    """
    cdef Py_ssize_t j
    cdef uint32_t threshold, v
    cdef const uint16_t* u = <const uint16_t*>words
    cdef double u1, u2, radius
    if r.corruption == CO_GAUSSIAN:
        if floating is float:
            ae_gauss_noise_f(clean, out, n, words, <float>r.level)
            return
        for j in range(n):
            u1 = <double>((words[j // 2] >> 40) + 1) * 5.9604644775390625e-8
            u2 = <double>((words[j // 2] >> 16) & 0xFFFFFF) * 5.9604644775390625e-8
            radius = sqrt(-2.0 * log(u1))
            if j % 2 == 0:
                out[j] = clean[j] + <floating>(r.level * radius * cos(6.283185307179586 * u2))
            else:
                out[j] = clean[j] + <floating>(r.level * radius * sin(6.283185307179586 * u2))
        return
    # Each 64-bit draw gives four 16-bit uniforms (in memory order, least
    # significant first on little-endian machines): an entry is hit when its
    # uniform is below fraction * 2^16 (so fractions resolve to 1/65536), and a
    # hit's lowest bit picks salt or pepper. Drawing the words first keeps the
    # generator's indirect call out of the elementwise loop, which vectorises.
    threshold = <uint32_t>min(r.level * 65536.0 + 0.5, 65536.0)
    if floating is float:
        ae_mask_f(clean, out, n, u, threshold, r.corruption != CO_MASKING, <float>r.low,
                  <float>r.high)
        return
    for j in range(n):
        v = u[j]
        if v < threshold:
            if r.corruption == CO_MASKING:
                out[j] = 0
            else:
                out[j] = <floating>(r.high if (v & 1) else r.low)
        else:
            out[j] = clean[j]


cdef void _normalize_rows(floating* w, Py_ssize_t rows, Py_ssize_t cols) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef double norm
    for i in range(rows):
        norm = 0.0
        for j in range(cols):
            norm += w[i * cols + j] * w[i * cols + j]
        if norm > 0:
            norm = 1.0 / sqrt(norm)
            for j in range(cols):
                w[i * cols + j] *= <floating>norm


cdef inline double _loss_sum(int loss, const floating* out, const floating* target,
                            floating* delta, Py_ssize_t n, double scale) noexcept nogil:
    if floating is float:
        if loss == LOSS_BCE:
            return ae_bce_f(out, target, delta, n, <float>scale)
        return ae_sse_f(out, target, delta, n, <float>scale)
    else:
        if loss == LOSS_BCE:
            return ae_bce_d(out, target, delta, n, scale)
        return ae_sse_d(out, target, delta, n, scale)


cdef double _gauss_nll(const Spec* s, const floating* out, const floating* target,
                      floating* delta, Py_ssize_t rows, Py_ssize_t cols, double scale,
                      const floating* params, floating* grads,
                      double* row_losses) noexcept nogil:
    """Gaussian negative log-likelihood with per-feature log-variance s_j.

    nll = 0.5 * sum_j ((x_j - m_j)^2 exp(-s_j) + s_j + log 2 pi); s_j is the
    learned params[obs_off + j] clamped to [LOGVAR_MIN, LOGVAR_MAX] (its
    gradient, scaled, goes to grads[obs_off + j] when grads is not NULL) or
    the fixed obs_logvar.
    """
    cdef Py_ssize_t i, j
    cdef double r, lv, inv, acc, total = 0.0
    cdef bint learned = s.reg.obs_off >= 0
    cdef const floating* lvp = params + s.reg.obs_off if learned else NULL
    cdef floating* glv = grads + s.reg.obs_off if (learned and grads != NULL) else NULL
    if glv != NULL:
        memset(glv, 0, cols * sizeof(floating))
    for i in range(rows):
        acc = 0.0
        for j in range(cols):
            lv = _clamp_logvar(lvp[j]) if learned else s.reg.obs_logvar
            inv = exp(-lv)
            r = <double>out[i * cols + j] - <double>target[i * cols + j]
            acc += 0.5 * (r * r * inv + lv + LOG_2PI)
            if delta != NULL:
                delta[i * cols + j] = <floating>(scale * r * inv)
            if glv != NULL and lvp[j] >= LOGVAR_MIN and lvp[j] <= LOGVAR_MAX:
                glv[j] += <floating>(scale * 0.5 * (1.0 - r * r * inv))
        if row_losses != NULL:
            row_losses[i] = acc
        total += acc
    return total


cdef double _loss_and_delta(const Spec* s, const floating* out, const floating* target,
                            floating* delta, Py_ssize_t rows, Py_ssize_t cols,
                            double scale, double* row_losses, const floating* params,
                            floating* grads) noexcept nogil:
    """Loss summed over the batch; delta <- scale * dLoss/d(pre-activation).

    MSE: out holds act(z); BCE: out holds logits z, so the gradient is
    sigmoid(z) - x and log(1 + exp(-|z|)) never overflows; Gaussian: see
    _gauss_nll (params/grads are only read for its learned variances). With
    delta NULL only the loss is computed; row_losses (if not NULL) gets each
    row's sum.
    """
    cdef Py_ssize_t i
    cdef double total = 0.0
    if s.loss == LOSS_GAUSS:
        total = _gauss_nll(s, out, target, delta, rows, cols, scale, params,
                           grads if delta != NULL else NULL, row_losses)
    elif row_losses == NULL:
        total = _loss_sum(s.loss, out, target, delta, rows * cols, scale)
    else:
        for i in range(rows):
            row_losses[i] = _loss_sum(s.loss, out + i * cols, target + i * cols,
                                      NULL if delta == NULL else delta + i * cols, cols, scale)
            total += row_losses[i]
    if delta != NULL and s.loss != LOSS_BCE:
        _mul_derivative(delta, out, rows * cols, <int>s.acts[s.n_layers - 1],
                        <floating>s.leaky_slope)
    return total


cdef void _sparse_decode_backward(const floating* code, floating* d_code,
                                  Py_ssize_t rows, Py_ssize_t width, Py_ssize_t k,
                                  const int64_t* idx, const floating* w, floating* gw,
                                  const floating* d, Py_ssize_t n_out) noexcept nogil:
    """Backward of _sparse_decode: gw rows and d_code entries of active units only."""
    cdef Py_ssize_t i, t, j, c
    cdef floating v, acc
    cdef const floating* drow
    cdef const floating* wrow
    cdef floating* grow
    memset(gw, 0, width * n_out * sizeof(floating))
    memset(d_code, 0, rows * width * sizeof(floating))
    for i in range(rows):
        drow = d + i * n_out
        for t in range(k):
            j = idx[i * k + t]
            wrow = w + j * n_out
            v = code[i * width + j]
            if v != 0:
                grow = gw + j * n_out
                for c in range(n_out):
                    grow[c] += v * drow[c]
            acc = 0
            for c in range(n_out):
                acc += drow[c] * wrow[c]
            d_code[i * width + j] = acc


cdef double _auxk(const Spec* s, const floating* dense, const floating* target,
                  const floating* out, bint logits, const floating* w, floating* gw,
                  floating* d_code, Py_ssize_t rows, Py_ssize_t width, Py_ssize_t d,
                  floating* scratch, floating* vals, int64_t* idx,
                  floating* g, Py_ssize_t norm_rows) noexcept nogil:
    """AuxK (Gao et al. 2024): reconstruct the residual from the top dead units.

    For each row, the `aux_k` largest dense code values among dead units decode
    (through the output layer's weights, no bias) an estimate of the residual
    e = x - x_hat of the main reconstruction (a constant target). Adds the
    gradient of aux_weight * mean((e - e_hat)^2) to `gw` and to `d_code`
    (already multiplied by the code activation's derivative at the dense
    value) and returns the loss. The mean is over `norm_rows` rows (the whole
    batch, of which these `rows` may be one thread's part).
    """
    cdef const Reg* r = s.reg
    cdef Py_ssize_t i, j, t, c, m, n_dead
    cdef double total = 0.0
    cdef floating scale = <floating>(2.0 * r.aux_weight / (norm_rows * d))
    cdef floating v, diff, xh, acc
    cdef floating lowest = <floating>(-3.0e38)
    cdef int code_act = <int>s.acts[s.reg.code_block - 1]
    cdef const floating* wrow
    cdef floating* grow
    for i in range(rows):
        n_dead = 0
        for j in range(width):
            if r.since_fired[j] >= r.dead_after:
                scratch[j] = dense[i * width + j]
                n_dead += 1
            else:
                scratch[j] = lowest
        if n_dead == 0:
            continue
        m = min(r.aux_k, n_dead)
        _topk_row(scratch, width, m, vals, idx)
        memset(g, 0, d * sizeof(floating))
        for t in range(m):
            v = vals[t]
            if v != 0 and v > lowest:
                wrow = w + idx[t] * d
                for c in range(d):
                    g[c] += v * wrow[c]
        for c in range(d):
            xh = _sigmoid(out[i * d + c]) if logits else out[i * d + c]
            diff = (target[i * d + c] - xh) - g[c]
            total += diff * diff
            g[c] = -scale * diff
        for t in range(m):
            v = vals[t]
            if v == 0 or v <= lowest:
                continue
            j = idx[t]
            wrow = w + j * d
            grow = gw + j * d
            acc = 0
            for c in range(d):
                grow[c] += v * g[c]
                acc += g[c] * wrow[c]
            _mul_derivative(&acc, &v, 1, code_act, <floating>s.leaky_slope)
            d_code[i * width + j] += acc
    return r.aux_weight * total / (norm_rows * d)


cdef void _topk_weight_grad(const floating* h, const floating* d, Py_ssize_t rows,
                            Py_ssize_t n_in, Py_ssize_t n_out, Py_ssize_t k,
                            const int64_t* idx, floating* dv, floating* gw) noexcept nogil:
    """gw (n_in x n_out) <- h^T d for a delta that is zero outside each row's k units.

    The weight gradient of the layer that produces a TopK code: the dense
    GEMM would spend n_out / k times the work on zeros. `dv` (rows * k
    scratch) receives the selected deltas; each row of gw (one input feature,
    n_out values) is zeroed and accumulated while it sits in L1.
    """
    cdef Py_ssize_t i, t, f
    cdef floating hf
    cdef floating* grow
    cdef const int64_t* ri
    cdef const floating* rv
    for i in range(rows):
        for t in range(k):
            dv[i * k + t] = d[i * n_out + idx[i * k + t]]
    for f in range(n_in):
        grow = gw + f * n_out
        memset(grow, 0, n_out * sizeof(floating))
        for i in range(rows):
            hf = h[i * n_in + f]
            if hf != 0:
                ri = idx + i * k
                rv = dv + i * k
                for t in range(k):
                    grow[ri[t]] += hf * rv[t]


cdef double _backward(const Spec* s, const floating* params, floating* grads,
                      const floating* ws, floating* delta_a, floating* delta_b,
                      Py_ssize_t stride, Py_ssize_t rows, double weight_decay,
                      double weight_l1, Py_ssize_t topk, const int64_t* idx,
                      const floating* dense, const floating* target, floating* aux_ws,
                      int64_t* aux_idx, double kl_scale, Py_ssize_t norm_rows,
                      floating* code_delta) noexcept nogil:
    """Gradients of all layers from the output delta in delta_a.

    Returns the weight penalty value (L2 / 2 * sum W^2 + L1 * sum |W|) so the
    caller can add it to the objective (plus the AuxK loss when `dense` is
    given). Code-layer penalties (L1 activity, KL sparsity) add their gradient
    where the delta reaches the code block. A VAE's decoder reads the z block;
    the delta of z goes back through the sampling step (and kl_scale * KL) to
    the stats block. Penalties on the code average over `norm_rows`, the
    rows of the whole batch (`rows` may be one thread's part of it). With
    TopK (and no AuxK, whose gradient reaches unselected units) the layer
    producing the code gets its weight gradient from the k selected units
    only (_topk_weight_grad, `code_delta`: rows * topk scratch).
    """
    cdef Py_ssize_t l, i, j, n_in, n_out, nw
    cdef Py_ssize_t cb = s.reg.code_block
    cdef const floating* h
    cdef floating* d = delta_a
    cdef floating* d_next = delta_b
    cdef floating* tmp
    cdef floating* gw
    cdef floating* gb
    cdef const floating* w
    cdef double penalty = 0.0
    cdef floating wv
    cdef bint sparse_input, sampled
    cdef Py_ssize_t nl = s.reg.n_latent
    for l in range(s.n_layers - 1, -1, -1):
        n_in = _in_width(s, l)
        n_out = s.sizes[l + 1]
        sampled = s.reg.gaussian and l == cb
        if sampled:
            h = ws + _z_offset(s, stride)
        else:
            h = ws + _block_offset(s, l, stride)
        w = params + s.w_off[l]
        gw = grads + s.w_off[l]
        gb = grads + s.b_off[l]
        sparse_input = topk > 0 and l == cb
        if sparse_input:
            _sparse_decode_backward(h, d_next, rows, n_in, topk, idx, w, gw, d, n_out)
        elif topk > 0 and l + 1 == cb and dense == NULL and code_delta != NULL:
            _topk_weight_grad(h, d, rows, n_in, n_out, topk, idx, code_delta, gw)
        else:
            # dW^T (n_out x n_in) = dZ^T (n_out x rows) @ H (rows x n_in)
            _gemm(TR_N, TR_T, <int>n_out, <int>n_in, <int>rows, <floating>1.0,
                  d, <int>n_out, h, <int>n_in, <floating>0.0, gw, <int>n_out)
        memset(gb, 0, n_out * sizeof(floating))
        for i in range(rows):
            for j in range(n_out):
                gb[j] += d[i * n_out + j]
        if weight_decay != 0.0 or weight_l1 != 0.0:
            if floating is float:  # vectorised C (src_ext/_elementwise.h)
                penalty += ae_weight_penalty_f(w, gw, n_in * n_out, <float>weight_decay,
                                               <float>weight_l1)
            else:
                for j in range(n_in * n_out):
                    wv = w[j]
                    penalty += 0.5 * weight_decay * wv * wv + weight_l1 * fabs(wv)
                    gw[j] += <floating>weight_decay * wv
                    if wv > 0:
                        gw[j] += <floating>weight_l1
                    elif wv < 0:
                        gw[j] -= <floating>weight_l1
        if l > 0:
            if not sparse_input:
                # dH^T (n_in x rows) = W (n_in x n_out) @ dZ^T (n_out x rows)
                _gemm(TR_T, TR_N, <int>n_in, <int>rows, <int>n_out, <floating>1.0,
                      w, <int>n_out, d, <int>n_out, <floating>0.0, d_next, <int>n_in)
            if sampled:
                # d_next holds dL/dz; d (consumed) receives dL/d[mu | log var]; the
                # stats layer is linear, so d is already the next layer's delta.
                _reparameterize_backward(ws + _block_offset(s, cb, stride),
                                         ws + _z_offset(s, stride) + stride * nl,
                                         d_next, d, rows, nl, kl_scale)
                continue
            if l == cb and (s.reg.sparsity == SP_L1 or s.reg.sparsity == SP_KL):
                _add_code_penalty_grad(s, h, d_next, rows, n_in, norm_rows)
            _mul_derivative(d_next, h, rows * n_in, <int>s.acts[l - 1],
                            <floating>s.leaky_slope)
            if sparse_input and dense != NULL:
                penalty += _auxk(s, dense, target, ws + _block_offset(s, s.n_layers, stride),
                                 s.loss == LOSS_BCE, w, gw, d_next, rows, n_in, n_out,
                                 aux_ws, aux_ws + n_in, aux_idx, aux_ws + n_in + s.reg.aux_k,
                                 norm_rows)
            tmp = d
            d = d_next
            d_next = tmp
    return penalty


cdef inline bint _all_finite(const floating* a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        return ae_all_finite_f(a, n) != 0
    else:
        return ae_all_finite_d(a, n) != 0


cdef void _optimizer_update(const OptConfig* o, floating* p, const floating* g,
                            floating* s1, floating* s2, Py_ssize_t n) noexcept nogil:
    """One fused pass of SGD / momentum / Nesterov / Adam over the flat buffer."""
    cdef Py_ssize_t j
    cdef floating lr = <floating>o.lr
    cdef floating mu = <floating>o.momentum
    cdef floating b1 = <floating>o.beta1, b2 = <floating>o.beta2
    cdef floating step, inv_sqrt_bc2
    cdef double t = <double>(o.t + 1)
    if o.kind == OPT_SGD:
        for j in range(n):
            p[j] -= lr * g[j]
    elif o.kind == OPT_MOMENTUM:
        for j in range(n):
            s1[j] = mu * s1[j] + g[j]
            p[j] -= lr * s1[j]
    elif o.kind == OPT_NESTEROV:
        for j in range(n):
            s1[j] = mu * s1[j] + g[j]
            p[j] -= lr * (g[j] + mu * s1[j])
    else:
        # PyTorch's form: p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)
        step = <floating>(o.lr / (1.0 - o.beta1 ** t))
        inv_sqrt_bc2 = <floating>(1.0 / sqrt(1.0 - o.beta2 ** t))
        if floating is float:
            ae_adam_f(p, g, s1, s2, n, b1, b2, step, inv_sqrt_bc2, <float>o.eps)
        else:
            ae_adam_d(p, g, s1, s2, n, b1, b2, step, inv_sqrt_bc2, o.eps)


cdef void _gather(const floating* X, Py_ssize_t n_features, const int64_t* idx,
                  Py_ssize_t rows, floating* out) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(rows):
        memcpy(out + i * n_features, X + idx[i] * n_features,
               n_features * sizeof(floating))


cdef class Regularization:
    """Code-layer sparsity and input corruption of one network, for the kernels.

    Parameters
    ----------
    code_block : int
        Workspace block of the code (the number of encoder layers); 0 disables
        every code-layer part.
    sparsity : {0: none, 1: L1 activity, 2: KL sparsity, 3: TopK}
    weight, target : float
        Penalty weight; KL target mean activation.
    k, encode_k : int
        TopK active units per row in training and at inference.
    normalize_decoder : bool
        TopK: rescale the rows of the first decoder matrix to unit norm after
        every update.
    corruption : {0: none, 1: Gaussian, 2: masking, 3: salt-and-pepper}
    level, low, high : float
        Noise std or corrupted fraction; salt-and-pepper values.
    bit_generator : numpy.random.BitGenerator or None
        Source of the corruption noise (required when corruption != 0).
    n_code : int
        Width of the code (size of the firing counters).
    aux_k, aux_weight, dead_after : int, float, int
        TopK's auxiliary loss: dead units reconstructing the residual (aux_k = 0
        disables it); a unit is dead after `dead_after` training samples
        without firing.
    gaussian : bool
        VAE bottleneck: block `code_block` holds [mu | log var] (2 n_latent
        wide, identity activation) and the next layer reads z sampled from it
        with `bit_generator` (required).
    n_latent : int
        Width of z.
    kl_weight : float
        Weight of the KL term (settable between calls, for warm-up).
    obs_off, obs_logvar : int, float
        Gaussian likelihood (loss code 2): offset of the learned per-feature
        log-variances in the parameter buffer, or -1 and a fixed log-variance.
    """
    cdef Reg reg
    cdef public Py_ssize_t encode_k
    cdef object _bit_generator
    cdef object _capsule
    cdef int64_t[::1] _fired
    cdef int64_t[::1] _since_fired
    cdef double[::1] _rho

    def __init__(self, Py_ssize_t code_block=0, int sparsity=SP_NONE, double weight=0.0,
                 double target=0.0, Py_ssize_t k=0, Py_ssize_t encode_k=0,
                 bint normalize_decoder=False, int corruption=CO_NONE, double level=0.0,
                 double low=0.0, double high=1.0, bit_generator=None, Py_ssize_t n_code=0,
                 Py_ssize_t aux_k=0, double aux_weight=0.0, int64_t dead_after=0,
                 bint gaussian=False, Py_ssize_t n_latent=0, double kl_weight=1.0,
                 Py_ssize_t obs_off=-1, double obs_logvar=0.0):
        if sparsity != SP_NONE and code_block < 1:
            raise ValueError("code-layer sparsity needs a code block")
        if sparsity == SP_TOPK and not (1 <= k <= n_code and 1 <= encode_k <= n_code):
            raise ValueError("TopK needs 1 <= k, encode_k <= n_code")
        if corruption != CO_NONE and bit_generator is None:
            raise ValueError("corruption needs a bit generator")
        if gaussian and (code_block < 1 or n_latent < 1 or sparsity != SP_NONE):
            raise ValueError("a VAE bottleneck needs a code block, n_latent >= 1 and no "
                             "code sparsity")
        if not (kl_weight >= 0.0):
            raise ValueError("kl_weight must be >= 0")
        self.reg.code_block = code_block
        self.reg.sparsity = sparsity
        self.reg.weight = weight
        self.reg.target = target
        self.reg.k = k if sparsity == SP_TOPK else 0
        self.encode_k = encode_k if sparsity == SP_TOPK else 0
        self.reg.normalize_decoder = normalize_decoder and sparsity == SP_TOPK
        self.reg.corruption = corruption
        self.reg.level = level
        self.reg.low = low
        self.reg.high = high
        self.reg.rng = NULL
        if bit_generator is not None:
            self._bit_generator = bit_generator
            self._capsule = bit_generator.capsule
            self.reg.rng = <bitgen_t*>PyCapsule_GetPointer(self._capsule, "BitGenerator")
        if aux_k and (sparsity != SP_TOPK or not 1 <= aux_k <= n_code or dead_after < 1):
            raise ValueError("AuxK needs TopK, 1 <= aux_k <= n_code and dead_after >= 1")
        self.reg.aux_k = aux_k
        self.reg.aux_weight = aux_weight
        self.reg.dead_after = dead_after
        self._fired = np.zeros(max(n_code, 1), dtype=np.int64)
        self._since_fired = np.zeros(max(n_code, 1), dtype=np.int64)
        self._rho = np.zeros(max(n_code, 1), dtype=np.float64)
        self.reg.fired = &self._fired[0]
        self.reg.since_fired = &self._since_fired[0]
        self.reg.rho = &self._rho[0]
        self.reg.gaussian = gaussian
        self.reg.n_latent = n_latent if gaussian else 0
        self.reg.kl_weight = kl_weight
        self.reg.obs_off = obs_off
        self.reg.obs_logvar = obs_logvar

    @property
    def kl_weight(self):
        """Weight of the VAE's KL term in the training objective."""
        return self.reg.kl_weight

    @kl_weight.setter
    def kl_weight(self, double value):
        if not (value >= 0.0):
            raise ValueError("kl_weight must be >= 0")
        self.reg.kl_weight = value

    @property
    def fired(self):
        """Per code unit: training selections with a non-zero value (TopK)."""
        return np.asarray(self._fired)

    @property
    def since_fired(self):
        """Per code unit: training samples since it last fired (TopK)."""
        return np.asarray(self._since_fired)

    def reset_fired(self):
        self._fired[:] = 0


cdef Regularization _NO_REGULARIZATION = Regularization()


cdef Spec _make_spec(const int64_t[::1] sizes, const int64_t[::1] acts,
                     const int64_t[::1] w_off, const int64_t[::1] b_off,
                     int loss, double leaky_slope, Regularization reg) except *:
    cdef Spec s
    cdef Py_ssize_t n_layers = acts.shape[0]
    if sizes.shape[0] != n_layers + 1 or w_off.shape[0] != n_layers or b_off.shape[0] != n_layers:
        raise ValueError("inconsistent network spec arrays")
    if n_layers < 1:
        raise ValueError("a network needs at least one layer")
    if reg is None:
        reg = _NO_REGULARIZATION
    if reg.reg.code_block >= n_layers or (reg.reg.sparsity == SP_TOPK and
                                          sizes[reg.reg.code_block] < max(reg.reg.k, reg.encode_k)):
        raise ValueError("the regularization does not fit this network")
    if reg.reg.aux_k and reg.reg.code_block != n_layers - 1:
        raise ValueError("AuxK needs the code to feed the output layer directly")
    if reg.reg.gaussian and (reg.reg.code_block < 1
                             or sizes[reg.reg.code_block] != 2 * reg.reg.n_latent
                             or acts[reg.reg.code_block - 1] != ACT_IDENTITY):
        raise ValueError("a VAE's stats block must be 2 * n_latent wide and linear")
    s.n_layers = n_layers
    s.sizes = &sizes[0]
    s.acts = &acts[0]
    s.w_off = &w_off[0]
    s.b_off = &b_off[0]
    s.loss = loss
    s.leaky_slope = leaky_slope
    s.reg = &reg.reg
    return s


cdef int _check_obs(const Spec* s, Py_ssize_t n_params) except -1:
    """The learned Gaussian variances must lie inside the parameter buffer."""
    if s.loss == LOSS_GAUSS and s.reg.obs_off >= 0 and (
            s.reg.obs_off < s.b_off[s.n_layers - 1] + s.sizes[s.n_layers]
            or s.reg.obs_off + s.sizes[s.n_layers] > n_params):
        raise ValueError("the learned variances lie outside the parameter buffer")
    return 0



cdef Py_ssize_t _max_width(const Spec* s) noexcept nogil:
    cdef Py_ssize_t l, m = 0
    for l in range(s.n_layers + 1):
        if s.sizes[l] > m:
            m = s.sizes[l]
    return m


cdef inline Py_ssize_t _aligned(Py_ssize_t n) noexcept nogil:
    """n rounded up to a multiple of 16 elements (64-byte aligned parts)."""
    return (n + 15) // 16 * 16


def workspace_sizes(const int64_t[::1] sizes, Py_ssize_t batch_size, Py_ssize_t n_latent=0,
                    int parts=1):
    """Lengths of the activation and delta workspaces for `batch_size` rows.

    A VAE (`n_latent` > 0) also keeps z and eps, n_latent values per row each.
    With `parts` > 1: the workspaces of a data-parallel training step, one
    64-byte aligned part of ceil(batch_size / parts) rows each.
    """
    cdef Py_ssize_t total = 2 * n_latent, m = 0, l
    cdef Py_ssize_t P = max(1, min(parts, batch_size))
    cdef Py_ssize_t rows = (batch_size + P - 1) // P
    for l in range(sizes.shape[0]):
        total += sizes[l]
        m = max(m, sizes[l])
    if P == 1:
        return total * batch_size, 2 * m * batch_size
    return P * _aligned(total * rows), P * _aligned(2 * m * rows)


cdef double _part_forward(const Spec* s, const floating* X, Py_ssize_t n_features,
                          const int64_t* rows_index, Py_ssize_t rows, floating* clean,
                          const uint64_t* words, const floating* params, floating* ws,
                          Py_ssize_t stride,
                          Py_ssize_t k, int64_t* idx, floating* values, int64_t* fired,
                          int64_t* since_fired, floating* dense, bitgen_t* rng,
                          bint eps_ready) noexcept nogil:
    """Forward pass of one thread's part of a batch; returns its summed VAE KL.

    The part's rows of X are gathered into the input block, or with `words`
    (the corruption's random words for the part) into `clean`, and the input
    block gets their corrupted copy.
    """
    if rows == 0:
        return 0.0
    if words != NULL:
        _gather(X, n_features, rows_index, rows, clean)
        _corrupt(s.reg, clean, ws, rows * n_features, words)
    else:
        _gather(X, n_features, rows_index, rows, ws)
    return _forward(s, params, ws, stride, rows, 0, s.n_layers, s.loss == LOSS_BCE, k,
                    idx, values, fired, since_fired, dense, rng, NULL, eps_ready)


cdef double _part_backward(const Spec* s, const floating* params, floating* grads,
                           floating* ws, floating* delta, Py_ssize_t delta_half,
                           Py_ssize_t stride, Py_ssize_t rows, const floating* target,
                           double loss_scale, double weight_decay, double weight_l1,
                           Py_ssize_t k, const int64_t* idx, const floating* dense,
                           floating* aux_ws, int64_t* aux_idx, double kl_scale,
                           Py_ssize_t norm_rows, floating* code_delta,
                           double* data_loss) noexcept nogil:
    """Loss, delta and gradients (into `grads`) of one thread's part of a batch.

    `data_loss` gets the part's summed loss; returns the penalties computed in
    the backward pass (weight penalty, AuxK). A part with a non-finite loss
    skips its backward pass (the step is abandoned anyway).
    """
    cdef Py_ssize_t n_out = s.sizes[s.n_layers]
    cdef floating* out = ws + _block_offset(s, s.n_layers, stride)
    data_loss[0] = 0.0
    if rows == 0:
        return 0.0
    data_loss[0] = _loss_and_delta(s, out, target, delta, rows, n_out, loss_scale, NULL,
                                   params, grads)
    if not isfinite(data_loss[0]):
        return 0.0
    return _backward(s, params, grads, ws, delta, delta + delta_half, stride, rows,
                     weight_decay, weight_l1, k, idx, dense, target, aux_ws, aux_idx,
                     kl_scale, norm_rows, code_delta)


cdef bint _sum_gradients(floating* grads, const floating* part_grads, Py_ssize_t n_parts,
                         Py_ssize_t n_params, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """grads[lo:hi] += the other parts' gradients there; whether the sum is finite.

    Block by block, so the check reads what the sum just wrote from L1.
    """
    cdef Py_ssize_t p, j, b, stop
    cdef const floating* g
    cdef bint finite = True
    for b in range(lo, hi, 2048):
        stop = min(b + 2048, hi)
        for p in range(n_parts):
            g = part_grads + p * n_params
            for j in range(b, stop):
                grads[j] += g[j]
        finite = finite and _all_finite(grads + b, stop - b)
    return finite


def train_batches(const floating[:, ::1] X, const int64_t[::1] order,
                  Py_ssize_t start, Py_ssize_t stop, Py_ssize_t batch_size,
                  const int64_t[::1] sizes, const int64_t[::1] acts,
                  const int64_t[::1] w_off, const int64_t[::1] b_off,
                  int loss, double leaky_slope, Regularization reg,
                  floating[::1] params, floating[::1] grads,
                  floating[::1] state1, floating[::1] state2,
                  floating[::1] ws, floating[::1] delta_ws, floating[::1] target_ws,
                  int optimizer, double lr, double beta1, double beta2, double eps,
                  double momentum, double weight_decay, double weight_l1,
                  int64_t t, double[::1] batch_losses, int n_threads=1,
                  floating[::1] part_grads=None, int parts=0):
    """Train on the batches order[start:stop] in steps of `batch_size` rows.

    Each step gathers its rows of X through `order` (into `target_ws` when the
    input is corrupted, the corrupted copy going to the network), runs forward,
    loss, code penalties, backward and the optimizer update. batch_losses[i]
    receives the mean loss (plus penalties) of step i. Returns (steps_done,
    status); on a non-finite loss or gradient the failing step is not applied.

    With `parts` > 1 (default: `n_threads`) every step is data-parallel:
    forward and backward run on each contiguous part of the batch (through
    its own workspaces and gradient buffer), on `n_threads` OpenMP threads
    (BLAS should then run on one thread), and the gradients are then summed
    and the optimizer applied over disjoint ranges of the parameters. Serial
    phases between them draw the random numbers (corruption, VAE noise) in
    batch order, merge the TopK firing counts and finish the code penalties,
    so the result is the one-part step's up to the order of the gradient
    sums, and does not depend on `n_threads`. `ws` and `delta_ws` then have
    the sizes `workspace_sizes(..., parts)` gives, and `part_grads`
    (allocated when None) holds (parts - 1) * n_params gradient values.
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, loss, leaky_slope, reg)
    cdef OptConfig o
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_out = sizes[sizes.shape[0] - 1]
    cdef Py_ssize_t n_params = params.shape[0]
    cdef Py_ssize_t need_ws, need_delta, pos, rows, steps = 0, n_steps
    cdef Py_ssize_t cb = s.reg.code_block, k = s.reg.k, j, p
    cdef double data_loss, penalty, kl, norm, code_sum
    cdef int status = ST_OK
    cdef bint corrupt = s.reg.corruption != CO_NONE
    cdef object dtype = np.asarray(params).dtype
    cdef Py_ssize_t aux_k = s.reg.aux_k
    cdef Py_ssize_t n_code = sizes[cb] if cb > 0 else 1
    cdef Py_ssize_t nl = s.reg.n_latent
    # Parts: thread p trains rows [p * part, p * part + part_rows[p]) of a batch.
    cdef int P = max(1, min(parts if parts > 0 else n_threads, batch_size))
    cdef int T = max(1, min(n_threads, P))  # threads running the parts
    cdef Py_ssize_t chunk = (batch_size + P - 1) // P, part, n_parts
    if n_features != sizes[0] or n_out != n_features:
        raise ValueError("X has %d features, the network expects %d in and %d out"
                         % (n_features, sizes[0], n_out))
    if stop > order.shape[0] or start < 0 or start > stop:
        raise ValueError("batch range out of the index")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    need_ws, need_delta = workspace_sizes(sizes, batch_size, nl, P)
    if ws.shape[0] < need_ws or delta_ws.shape[0] < need_delta:
        raise ValueError("workspace too small")
    if s.reg.gaussian and s.reg.rng == NULL:
        raise ValueError("a VAE needs a bit generator for its samples")
    _check_obs(&s, n_params)
    if corrupt and target_ws.shape[0] < batch_size * n_features:
        raise ValueError("target workspace too small")
    if grads.shape[0] != n_params or state1.shape[0] != n_params or state2.shape[0] != n_params:
        raise ValueError("gradient and optimizer state buffers must match params")
    if X.shape[0] == 0:
        return 0, ST_OK
    n_steps = (stop - start + batch_size - 1) // batch_size
    if batch_losses.shape[0] < n_steps:
        raise ValueError("batch_losses too short")
    for pos in range(start, stop):
        if order[pos] < 0 or order[pos] >= X.shape[0]:
            raise IndexError("order holds an index outside X")
    # Per-part buffers, laid out part after part.
    cdef Py_ssize_t ws_len = 0, delta_len = 0, delta_half = batch_size * _max_width(&s)
    if P > 1:
        ws_len = need_ws // P
        delta_len = need_delta // P
        delta_half = delta_len // 2
    if part_grads is None:
        part_grads = np.zeros(max((P - 1) * n_params, 1), dtype=dtype)
    elif part_grads.shape[0] < (P - 1) * n_params:
        raise ValueError("part_grads too short")
    cdef int64_t[::1] idx = np.zeros(max(P * chunk * k, 1), dtype=np.int64)
    cdef floating[::1] code_delta = np.zeros(max(P * chunk * k, 1), dtype=dtype)
    cdef floating[::1] values = np.zeros(P * max(k, 1), dtype=dtype)
    # TopK firing counts per part (merged after the forward pass when P > 1)
    cdef int64_t[::1] part_fired = np.zeros(P * n_code if (k > 0 and P > 1) else 1,
                                            dtype=np.int64)
    # AuxK: the dense code, and per-row scratch (candidates, values, residual)
    cdef Py_ssize_t aux_len = n_code + aux_k + n_out
    cdef floating[::1] dense = np.zeros(max(P * chunk * n_code, 1) if aux_k else 1, dtype=dtype)
    cdef floating[::1] aux_ws = np.zeros(P * aux_len, dtype=dtype)
    cdef int64_t[::1] aux_idx = np.zeros(P * max(aux_k, 1), dtype=np.int64)
    # corruption: each part's random words (drawn in batch order, used in parallel)
    cdef Py_ssize_t words_len = (chunk * n_features + 1) // 2 + 1
    cdef uint64_t[::1] words = np.zeros(P * words_len if corrupt else 1, dtype=np.uint64)
    cdef double[::1] part_kl = np.zeros(P)
    cdef double[::1] part_loss = np.zeros(P)
    cdef double[::1] part_penalty = np.zeros(P)
    cdef int[::1] part_finite = np.zeros(P, dtype=np.intc)
    cdef Py_ssize_t[::1] param_lo = np.zeros(P + 1, dtype=np.intp)
    for p in range(P + 1):
        param_lo[p] = min(n_params, _aligned(n_params * p // P)) if p < P else n_params
    cdef floating* wsp
    cdef floating* target
    cdef int64_t* fired_p
    cdef int64_t* since_fired_p
    cdef floating* dense_p
    cdef bitgen_t* rng_p
    o.kind = optimizer
    o.lr = lr
    o.beta1 = beta1
    o.beta2 = beta2
    o.eps = eps
    o.momentum = momentum
    o.weight_decay = weight_decay
    o.weight_l1 = weight_l1
    o.t = t
    with nogil:
        pos = start
        while pos < stop:
            rows = min(batch_size, stop - pos)
            part = (rows + P - 1) // P
            n_parts = (rows + part - 1) // part
            # Serial: the random draws, in batch order.
            if corrupt:
                for p in range(n_parts):
                    _draw_corruption_words(s.reg, min(part, rows - p * part) * n_features,
                                           &words[0] + p * words_len)
            if s.reg.gaussian and P > 1:
                for p in range(n_parts):
                    _draw_eps(&ws[0] + p * ws_len + _z_offset(&s, chunk) + chunk * nl,
                              min(part, rows - p * part) * nl, s.reg.rng)
            if k > 0:
                for j in range(n_code):
                    s.reg.since_fired[j] += rows
                if P > 1:
                    memset(&part_fired[0], 0, P * n_code * sizeof(int64_t))
            # Parallel: the forward pass of each part.
            for p in prange(n_parts, num_threads=T, schedule="static", chunksize=1,
                            use_threads_if=T > 1 and n_parts > 1):
                if P > 1:
                    fired_p = &part_fired[0] + p * n_code if k > 0 else NULL
                    since_fired_p = NULL
                    rng_p = NULL
                else:
                    fired_p = s.reg.fired if k > 0 else NULL
                    since_fired_p = s.reg.since_fired if k > 0 else NULL
                    rng_p = s.reg.rng if s.reg.gaussian else NULL
                part_kl[p] = _part_forward(
                    &s, &X[0, 0], n_features, &order[pos + p * part],
                    min(part, rows - p * part), &target_ws[0] + p * part * n_features,
                    &words[0] + p * words_len if corrupt else NULL, &params[0],
                    &ws[0] + p * ws_len, chunk, k, &idx[0] + p * chunk * k,
                    &values[0] + p * max(k, 1), fired_p, since_fired_p,
                    &dense[0] + p * chunk * n_code if aux_k else NULL, rng_p,
                    s.reg.gaussian and P > 1)
            # Serial: merge the firing counts, finish the code penalty.
            kl = 0.0
            for p in range(n_parts):
                kl += part_kl[p]
            if k > 0 and P > 1:
                for p in range(n_parts):
                    for j in range(n_code):
                        if part_fired[p * n_code + j]:
                            s.reg.fired[j] += part_fired[p * n_code + j]
                            s.reg.since_fired[j] = 0
            code_sum = 0.0
            if cb > 0 and (s.reg.sparsity == SP_L1 or s.reg.sparsity == SP_KL):
                if s.reg.sparsity == SP_KL:
                    for j in range(n_code):
                        s.reg.rho[j] = 0.0
                for p in range(n_parts):
                    code_sum += _code_penalty_sum(
                        &s, &ws[0] + p * ws_len + _block_offset(&s, cb, chunk),
                        min(part, rows - p * part), n_code)
                code_sum = _code_penalty_finish(&s, code_sum, rows, n_code)
            # An autoencoder's loss is a mean over samples and features; a VAE's
            # negative ELBO sums over features and averages over samples.
            norm = rows if s.reg.gaussian else rows * n_out
            # Parallel: loss, delta and gradients of each part (the weight
            # penalty, on the parameters, once: in part 0).
            for p in prange(n_parts, num_threads=T, schedule="static", chunksize=1,
                            use_threads_if=T > 1 and n_parts > 1):
                wsp = &ws[0] + p * ws_len
                target = (&target_ws[0] + p * part * n_features) if corrupt else wsp
                part_penalty[p] = _part_backward(
                    &s, &params[0], &grads[0] if p == 0 else &part_grads[0] + (p - 1) * n_params,
                    wsp, &delta_ws[0] + p * delta_len, delta_half, chunk,
                    min(part, rows - p * part), target, 1.0 / norm,
                    weight_decay if p == 0 else 0.0, weight_l1 if p == 0 else 0.0, k,
                    &idx[0] + p * chunk * k,
                    &dense[0] + p * chunk * n_code if aux_k else NULL,
                    &aux_ws[0] + p * aux_len, &aux_idx[0] + p * max(aux_k, 1),
                    s.reg.kl_weight / rows, rows,
                    &code_delta[0] + p * chunk * k if k > 0 else NULL, &part_loss[p])
            data_loss = 0.0
            penalty = 0.0
            for p in range(n_parts):
                data_loss += part_loss[p]
                penalty += part_penalty[p]
            data_loss = (data_loss + s.reg.kl_weight * kl) / norm + code_sum
            if not isfinite(data_loss):
                status = ST_NONFINITE_LOSS
                break
            # Parallel over parameter ranges: sum the parts' gradients, check
            # them, then (after every range is known finite) update.
            for p in prange(P, num_threads=T, schedule="static", chunksize=1,
                            use_threads_if=T > 1):
                part_finite[p] = _sum_gradients(&grads[0], &part_grads[0], n_parts - 1,
                                                n_params, param_lo[p], param_lo[p + 1])
            for p in range(P):
                if not part_finite[p]:
                    status = ST_NONFINITE_GRAD
            if status != ST_OK:
                break
            for p in prange(P, num_threads=T, schedule="static", chunksize=1,
                            use_threads_if=T > 1):
                _optimizer_update(&o, &params[0] + param_lo[p], &grads[0] + param_lo[p],
                                  &state1[0] + param_lo[p], &state2[0] + param_lo[p],
                                  param_lo[p + 1] - param_lo[p])
            if s.reg.normalize_decoder:
                _normalize_rows(&params[0] + s.w_off[cb], s.sizes[cb], s.sizes[cb + 1])
            o.t += 1
            batch_losses[steps] = data_loss + penalty
            steps += 1
            pos += rows
    return steps, status


def forward_rows(const floating[:, ::1] X, const int64_t[::1] index,
                 const int64_t[::1] sizes, const int64_t[::1] acts,
                 const int64_t[::1] w_off, const int64_t[::1] b_off,
                 double leaky_slope, Regularization reg, const floating[::1] params,
                 Py_ssize_t first, Py_ssize_t last, floating[::1] ws,
                 Py_ssize_t block_rows, floating[:, ::1] out):
    """out <- network layers [first, last) applied to X[index] (with activations).

    X has sizes[first] columns (a VAE decoder's input: n_latent) and out has
    sizes[last]; rows are processed in blocks of `block_rows` through the
    workspace. A TopK code keeps `reg.encode_k` units when the code block lies
    in (first, last]; a VAE decodes its posterior mean (no sampling).
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, LOSS_MSE, leaky_slope, reg)
    cdef Py_ssize_t n = index.shape[0], pos, rows, i, j
    cdef Py_ssize_t d_in, d_out
    cdef Py_ssize_t cb = s.reg.code_block
    cdef Py_ssize_t k = reg.encode_k if (reg is not None and first < cb <= last) else 0
    cdef int64_t[::1] idx = np.zeros(max(block_rows * k, 1), dtype=np.int64)
    cdef floating[::1] values = np.zeros(max(k, 1), dtype=np.asarray(out).dtype)
    cdef floating* res
    if not (0 <= first < last <= s.n_layers):
        raise ValueError("invalid layer range")
    d_in = _in_width(&s, first)
    d_out = sizes[last]
    if X.shape[1] != d_in or out.shape[1] != d_out or out.shape[0] != n:
        raise ValueError("shape mismatch between X, out and the layer range")
    if ws.shape[0] < workspace_sizes(sizes, block_rows, s.reg.n_latent)[0]:
        raise ValueError("workspace too small")
    for i in range(n):
        if index[i] < 0 or index[i] >= X.shape[0]:
            raise IndexError("index outside X")
    if n == 0:
        return
    with nogil:
        pos = 0
        while pos < n:
            rows = min(block_rows, n - pos)
            # Place the input in block `first` (a VAE's decoder input: the z block).
            if s.reg.gaussian and first == cb:
                _gather(&X[0, 0], d_in, &index[pos], rows, &ws[0] + _z_offset(&s, block_rows))
            else:
                _gather(&X[0, 0], d_in, &index[pos], rows,
                        &ws[0] + _block_offset(&s, first, block_rows))
            _forward(&s, &params[0], &ws[0], block_rows, rows, first, last, False,
                     k, &idx[0], &values[0], NULL, NULL, NULL, NULL, NULL)
            res = &ws[0] + _block_offset(&s, last, block_rows)
            memcpy(&out[pos, 0], res, rows * d_out * sizeof(floating))
            pos += rows


def row_losses(const floating[:, ::1] X, const int64_t[::1] index,
               const int64_t[::1] sizes, const int64_t[::1] acts,
               const int64_t[::1] w_off, const int64_t[::1] b_off,
               int loss, double leaky_slope, Regularization reg,
               const floating[::1] params, floating[::1] ws, Py_ssize_t block_rows,
               double[::1] out):
    """out[i] <- the loss of reconstructing X[index[i]], averaged over features.

    Reconstruction only (no penalties, no corruption); a TopK code keeps
    `reg.encode_k` units.
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, loss, leaky_slope, reg)
    cdef Py_ssize_t n = index.shape[0], pos, rows, i
    cdef Py_ssize_t d = X.shape[1]
    cdef Py_ssize_t k = reg.encode_k if reg is not None else 0
    cdef int64_t[::1] idx = np.zeros(max(block_rows * k, 1), dtype=np.int64)
    cdef floating[::1] values = np.zeros(max(k, 1), dtype=np.asarray(ws).dtype)
    cdef floating* res
    if d != sizes[0] or d != sizes[s.n_layers]:
        raise ValueError("X has %d features, the network expects %d" % (d, sizes[0]))
    _check_obs(&s, params.shape[0])
    if out.shape[0] != n:
        raise ValueError("out must have one entry per index")
    if ws.shape[0] < workspace_sizes(sizes, block_rows, s.reg.n_latent)[0]:
        raise ValueError("workspace too small")
    for i in range(n):
        if index[i] < 0 or index[i] >= X.shape[0]:
            raise IndexError("index outside X")
    if n == 0:
        return
    with nogil:
        pos = 0
        while pos < n:
            rows = min(block_rows, n - pos)
            _gather(&X[0, 0], d, &index[pos], rows, &ws[0])
            _forward(&s, &params[0], &ws[0], block_rows, rows, 0, s.n_layers,
                     s.loss == LOSS_BCE, k, &idx[0], &values[0], NULL, NULL, NULL, NULL, NULL)
            res = &ws[0] + _block_offset(&s, s.n_layers, block_rows)
            _loss_and_delta(&s, res, &ws[0], NULL, rows, d, 1.0, &out[pos], &params[0], NULL)
            for i in range(rows):
                out[pos + i] /= d
            pos += rows


def corrupt(const floating[::1] clean, floating[::1] out, Regularization reg):
    """out <- `clean` corrupted as `reg` says: the training step's kernel, exposed for tests."""
    if reg is None or reg.reg.corruption == CO_NONE:
        raise ValueError("reg has no corruption")
    if out.shape[0] != clean.shape[0]:
        raise ValueError("clean and out must have the same length")
    if clean.shape[0] == 0:
        return
    cdef uint64_t[::1] words = np.zeros((clean.shape[0] + 1) // 2 + 1, dtype=np.uint64)
    with nogil:
        _draw_corruption_words(&reg.reg, clean.shape[0], &words[0])
        _corrupt(&reg.reg, &clean[0], &out[0], clean.shape[0], &words[0])


def vae_rows(const floating[:, ::1] X, const int64_t[::1] index,
             const int64_t[::1] sizes, const int64_t[::1] acts,
             const int64_t[::1] w_off, const int64_t[::1] b_off,
             int loss, double leaky_slope, Regularization reg,
             const floating[::1] params, floating[::1] ws, Py_ssize_t block_rows,
             bint sample, double[::1] rec_out, double[::1] kl_out):
    """Per row of X[index]: the VAE's reconstruction NLL (summed over features) and KL.

    With `sample`, z is drawn from q(z|x) with the regularization's bit
    generator (one-sample ELBO = -(rec + kl)); otherwise z = mu.
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, loss, leaky_slope, reg)
    cdef Py_ssize_t n = index.shape[0], pos, rows, i
    cdef Py_ssize_t d = X.shape[1]
    cdef floating* res
    cdef bitgen_t* rng = s.reg.rng if sample else NULL
    if not s.reg.gaussian:
        raise ValueError("vae_rows needs a VAE bottleneck")
    if sample and rng == NULL:
        raise ValueError("sampling needs a bit generator")
    if d != sizes[0] or d != sizes[s.n_layers]:
        raise ValueError("X has %d features, the network expects %d" % (d, sizes[0]))
    _check_obs(&s, params.shape[0])
    if rec_out.shape[0] != n or kl_out.shape[0] != n:
        raise ValueError("rec_out and kl_out need one entry per index")
    if ws.shape[0] < workspace_sizes(sizes, block_rows, s.reg.n_latent)[0]:
        raise ValueError("workspace too small")
    for i in range(n):
        if index[i] < 0 or index[i] >= X.shape[0]:
            raise IndexError("index outside X")
    if n == 0:
        return
    with nogil:
        pos = 0
        while pos < n:
            rows = min(block_rows, n - pos)
            _gather(&X[0, 0], d, &index[pos], rows, &ws[0])
            _forward(&s, &params[0], &ws[0], block_rows, rows, 0, s.n_layers,
                     s.loss == LOSS_BCE, 0, NULL, NULL, NULL, NULL, NULL, rng, &kl_out[pos])
            res = &ws[0] + _block_offset(&s, s.n_layers, block_rows)
            _loss_and_delta(&s, res, &ws[0], NULL, rows, d, 1.0, &rec_out[pos], &params[0],
                            NULL)
            pos += rows


def decode_losses(const floating[:, ::1] Z, const floating[:, ::1] X,
                  const int64_t[::1] x_index, const int64_t[::1] sizes,
                  const int64_t[::1] acts, const int64_t[::1] w_off,
                  const int64_t[::1] b_off, int loss, double leaky_slope,
                  Regularization reg, const floating[::1] params, floating[::1] ws,
                  Py_ssize_t block_rows, double[::1] out):
    """out[i] <- reconstruction NLL (summed over features) of X[x_index[i]] decoded from Z[i].

    The decoder part of a VAE (layers from the code block on), for the
    importance-weighted likelihood: many z per x without copying x.
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, loss, leaky_slope, reg)
    cdef Py_ssize_t n = Z.shape[0], pos, rows, i
    cdef Py_ssize_t d = X.shape[1], cb = s.reg.code_block
    cdef floating* res
    cdef floating* target
    if not s.reg.gaussian:
        raise ValueError("decode_losses needs a VAE bottleneck")
    if Z.shape[1] != s.reg.n_latent or d != sizes[s.n_layers]:
        raise ValueError("Z needs %d columns and X %d" % (s.reg.n_latent, sizes[s.n_layers]))
    _check_obs(&s, params.shape[0])
    if x_index.shape[0] != n or out.shape[0] != n:
        raise ValueError("x_index and out need one entry per row of Z")
    # The targets go to block 0, unused when decoding from the code block.
    if ws.shape[0] < workspace_sizes(sizes, block_rows, s.reg.n_latent)[0]:
        raise ValueError("workspace too small")
    for i in range(n):
        if x_index[i] < 0 or x_index[i] >= X.shape[0]:
            raise IndexError("x_index outside X")
    if n == 0:
        return
    with nogil:
        pos = 0
        while pos < n:
            rows = min(block_rows, n - pos)
            memcpy(&ws[0] + _z_offset(&s, block_rows), &Z[pos, 0],
                   rows * s.reg.n_latent * sizeof(floating))
            target = &ws[0]
            _gather(&X[0, 0], d, &x_index[pos], rows, target)
            _forward(&s, &params[0], &ws[0], block_rows, rows, cb, s.n_layers,
                     s.loss == LOSS_BCE, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
            res = &ws[0] + _block_offset(&s, s.n_layers, block_rows)
            _loss_and_delta(&s, res, target, NULL, rows, d, 1.0, &out[pos], &params[0], NULL)
            pos += rows


def reparameterize(const floating[:, ::1] stats, floating[:, ::1] z, floating[:, ::1] eps,
                   Regularization reg, bint sample=True, double[::1] kl_out=None):
    """z <- mu + exp(log var / 2) * eps: the training step's sampling kernel, for tests.

    stats has 2k columns [mu | log var]; eps receives the standard normal
    draws (row-major, from reg's bit generator). Returns the summed KL.
    """
    cdef Py_ssize_t rows = stats.shape[0], k = z.shape[1]
    cdef bitgen_t* rng = reg.reg.rng if sample else NULL
    cdef double total
    cdef double* kl_ptr = NULL
    if stats.shape[1] != 2 * k or z.shape[0] != rows or eps.shape[0] != rows or eps.shape[1] != k:
        raise ValueError("stats must be (n, 2k), z and eps (n, k)")
    if sample and rng == NULL:
        raise ValueError("sampling needs a bit generator")
    if kl_out is not None:
        if kl_out.shape[0] != rows:
            raise ValueError("kl_out needs one entry per row")
        kl_ptr = &kl_out[0]
    if rows == 0 or k == 0:
        return 0.0
    with nogil:
        total = _reparameterize(&stats[0, 0], rows, k, &z[0, 0], &eps[0, 0], rng, kl_ptr)
    return total


def reparameterize_backward(const floating[:, ::1] stats, const floating[:, ::1] eps,
                            const floating[:, ::1] d_z, floating[:, ::1] d_stats,
                            double kl_scale):
    """d_stats <- gradient of (L(z) + kl_scale * KL) w.r.t. [mu | log var], given dL/dz."""
    cdef Py_ssize_t rows = stats.shape[0], k = eps.shape[1]
    if (stats.shape[1] != 2 * k or eps.shape[0] != rows or d_z.shape[0] != rows
            or d_z.shape[1] != k or d_stats.shape[0] != rows or d_stats.shape[1] != 2 * k):
        raise ValueError("stats and d_stats must be (n, 2k), eps and d_z (n, k)")
    if rows == 0 or k == 0:
        return
    with nogil:
        _reparameterize_backward(&stats[0, 0], &eps[0, 0], &d_z[0, 0], &d_stats[0, 0], rows, k,
                                 kl_scale)
