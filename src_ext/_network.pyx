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
"""
from libc.math cimport exp, expm1, log1p, fabs, sqrt, tanh, isfinite
from libc.string cimport memcpy, memset
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

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

# Optimizer codes (engine/optimizers.py).
cdef enum:
    OPT_SGD = 0
    OPT_MOMENTUM = 1
    OPT_NESTEROV = 2
    OPT_ADAM = 3

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

cdef struct Spec:
    Py_ssize_t n_layers
    const int64_t* sizes      # n_layers + 1
    const int64_t* acts       # n_layers
    const int64_t* w_off      # n_layers
    const int64_t* b_off      # n_layers
    int loss
    double leaky_slope

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


cdef void _apply_activation(floating* z, Py_ssize_t n, int act, floating slope) noexcept nogil:
    """z <- act(z) in place (logits to outputs at inference)."""
    cdef Py_ssize_t j
    cdef floating v
    for j in range(n):
        v = z[j]
        if act == ACT_RELU:
            z[j] = v if v > 0 else 0
        elif act == ACT_LEAKY_RELU:
            z[j] = v if v > 0 else slope * v
        elif act == ACT_TANH:
            z[j] = tanh(v)
        elif act == ACT_SIGMOID:
            z[j] = _sigmoid(v)
        elif act == ACT_SOFTPLUS:
            z[j] = _softplus(v)


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


cdef void _forward(const Spec* s, const floating* params, floating* ws,
                   Py_ssize_t stride, Py_ssize_t rows, Py_ssize_t first,
                   Py_ssize_t last, bint keep_logits) noexcept nogil:
    """Forward through layers [first, last) of blocks laid out for `stride` rows.

    The input must already sit in block `first`. With `keep_logits`, the last
    layer is left as pre-activation plus bias (logits).
    """
    cdef Py_ssize_t l, n_in, n_out
    cdef floating* h
    cdef floating* z
    cdef int act
    for l in range(first, last):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        h = ws + _block_offset(s, l, stride)
        z = ws + _block_offset(s, l + 1, stride)
        # Z^T (n_out x rows, col-major) = W^T (n_out x n_in) @ H^T (n_in x rows)
        _gemm(TR_N, TR_N, <int>n_out, <int>rows, <int>n_in, <floating>1.0,
              params + s.w_off[l], <int>n_out, h, <int>n_in, <floating>0.0,
              z, <int>n_out)
        act = <int>s.acts[l]
        if keep_logits and l == last - 1:
            act = ACT_IDENTITY
        _bias_activation(z, params + s.b_off[l], rows, n_out, act,
                         <floating>s.leaky_slope)


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


cdef double _loss_and_delta(const Spec* s, const floating* out, const floating* target,
                            floating* delta, Py_ssize_t rows, Py_ssize_t cols,
                            double scale, double* row_losses) noexcept nogil:
    """Loss summed over the batch; delta <- scale * dLoss/d(pre-activation).

    MSE: out holds act(z); BCE: out holds logits z, so the gradient is
    sigmoid(z) - x and log(1 + exp(-|z|)) never overflows. With delta NULL only
    the loss is computed; row_losses (if not NULL) gets each row's sum.
    """
    cdef Py_ssize_t i
    cdef double total = 0.0
    if row_losses == NULL:
        total = _loss_sum(s.loss, out, target, delta, rows * cols, scale)
    else:
        for i in range(rows):
            row_losses[i] = _loss_sum(s.loss, out + i * cols, target + i * cols,
                                      NULL if delta == NULL else delta + i * cols, cols, scale)
            total += row_losses[i]
    if delta != NULL and s.loss == LOSS_MSE:
        _mul_derivative(delta, out, rows * cols, <int>s.acts[s.n_layers - 1],
                        <floating>s.leaky_slope)
    return total


cdef double _backward(const Spec* s, const floating* params, floating* grads,
                      const floating* ws, floating* delta_a, floating* delta_b,
                      Py_ssize_t stride, Py_ssize_t rows, double weight_decay,
                      double weight_l1) noexcept nogil:
    """Gradients of all layers from the output delta in delta_a.

    Returns the weight penalty value (L2 / 2 * sum W^2 + L1 * sum |W|) so the
    caller can add it to the objective.
    """
    cdef Py_ssize_t l, i, j, n_in, n_out, nw
    cdef const floating* h
    cdef floating* d = delta_a
    cdef floating* d_next = delta_b
    cdef floating* tmp
    cdef floating* gw
    cdef floating* gb
    cdef const floating* w
    cdef double penalty = 0.0
    cdef floating wv
    for l in range(s.n_layers - 1, -1, -1):
        n_in = s.sizes[l]
        n_out = s.sizes[l + 1]
        h = ws + _block_offset(s, l, stride)
        w = params + s.w_off[l]
        gw = grads + s.w_off[l]
        gb = grads + s.b_off[l]
        # dW^T (n_out x n_in) = dZ^T (n_out x rows) @ H (rows x n_in)
        _gemm(TR_N, TR_T, <int>n_out, <int>n_in, <int>rows, <floating>1.0,
              d, <int>n_out, h, <int>n_in, <floating>0.0, gw, <int>n_out)
        memset(gb, 0, n_out * sizeof(floating))
        for i in range(rows):
            for j in range(n_out):
                gb[j] += d[i * n_out + j]
        if weight_decay != 0.0 or weight_l1 != 0.0:
            nw = n_in * n_out
            for j in range(nw):
                wv = w[j]
                penalty += 0.5 * weight_decay * wv * wv + weight_l1 * fabs(wv)
                gw[j] += <floating>weight_decay * wv
                if wv > 0:
                    gw[j] += <floating>weight_l1
                elif wv < 0:
                    gw[j] -= <floating>weight_l1
        if l > 0:
            # dH^T (n_in x rows) = W (n_in x n_out) @ dZ^T (n_out x rows)
            _gemm(TR_T, TR_N, <int>n_in, <int>rows, <int>n_out, <floating>1.0,
                  w, <int>n_out, d, <int>n_out, <floating>0.0, d_next, <int>n_in)
            _mul_derivative(d_next, h, rows * n_in, <int>s.acts[l - 1],
                            <floating>s.leaky_slope)
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


cdef Spec _make_spec(const int64_t[::1] sizes, const int64_t[::1] acts,
                     const int64_t[::1] w_off, const int64_t[::1] b_off,
                     int loss, double leaky_slope) except *:
    cdef Spec s
    cdef Py_ssize_t n_layers = acts.shape[0]
    if sizes.shape[0] != n_layers + 1 or w_off.shape[0] != n_layers or b_off.shape[0] != n_layers:
        raise ValueError("inconsistent network spec arrays")
    if n_layers < 1:
        raise ValueError("a network needs at least one layer")
    s.n_layers = n_layers
    s.sizes = &sizes[0]
    s.acts = &acts[0]
    s.w_off = &w_off[0]
    s.b_off = &b_off[0]
    s.loss = loss
    s.leaky_slope = leaky_slope
    return s



cdef Py_ssize_t _max_width(const Spec* s) noexcept nogil:
    cdef Py_ssize_t l, m = 0
    for l in range(s.n_layers + 1):
        if s.sizes[l] > m:
            m = s.sizes[l]
    return m


def workspace_sizes(const int64_t[::1] sizes, Py_ssize_t batch_size):
    """Lengths of the activation and delta workspaces for `batch_size` rows."""
    cdef Py_ssize_t total = 0, m = 0, l
    for l in range(sizes.shape[0]):
        total += sizes[l]
        m = max(m, sizes[l])
    return total * batch_size, 2 * m * batch_size


def train_batches(const floating[:, ::1] X, const int64_t[::1] order,
                  Py_ssize_t start, Py_ssize_t stop, Py_ssize_t batch_size,
                  const int64_t[::1] sizes, const int64_t[::1] acts,
                  const int64_t[::1] w_off, const int64_t[::1] b_off,
                  int loss, double leaky_slope,
                  floating[::1] params, floating[::1] grads,
                  floating[::1] state1, floating[::1] state2,
                  floating[::1] ws, floating[::1] delta_ws,
                  int optimizer, double lr, double beta1, double beta2, double eps,
                  double momentum, double weight_decay, double weight_l1,
                  int64_t t, double[::1] batch_losses):
    """Train on the batches order[start:stop] in steps of `batch_size` rows.

    Each step gathers its rows of X through `order`, runs forward, loss,
    backward and the optimizer update. batch_losses[i] receives the mean loss
    (plus weight penalty) of step i. Returns (steps_done, status); on a
    non-finite loss or gradient the failing step is not applied.
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, loss, leaky_slope)
    cdef OptConfig o
    cdef Py_ssize_t n_features = X.shape[1]
    cdef Py_ssize_t n_out = sizes[sizes.shape[0] - 1]
    cdef Py_ssize_t n_params = params.shape[0]
    cdef Py_ssize_t need_ws, need_delta, pos, rows, steps = 0, n_steps
    cdef floating* out
    cdef double data_loss, penalty
    cdef int status = ST_OK
    if n_features != sizes[0] or n_out != n_features:
        raise ValueError("X has %d features, the network expects %d in and %d out"
                         % (n_features, sizes[0], n_out))
    if stop > order.shape[0] or start < 0 or start > stop:
        raise ValueError("batch range out of the index")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    need_ws, need_delta = workspace_sizes(sizes, batch_size)
    if ws.shape[0] < need_ws or delta_ws.shape[0] < need_delta:
        raise ValueError("workspace too small")
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
            _gather(&X[0, 0], n_features, &order[pos], rows, &ws[0])
            _forward(&s, &params[0], &ws[0], batch_size, rows, 0, s.n_layers,
                     s.loss == LOSS_BCE)
            out = &ws[0] + _block_offset(&s, s.n_layers, batch_size)
            data_loss = _loss_and_delta(&s, out, &ws[0], &delta_ws[0], rows, n_out,
                                        1.0 / (rows * n_out), NULL)
            data_loss /= rows * n_out
            if not isfinite(data_loss):
                status = ST_NONFINITE_LOSS
                break
            penalty = _backward(&s, &params[0], &grads[0], &ws[0], &delta_ws[0],
                                &delta_ws[0] + batch_size * _max_width(&s),
                                batch_size, rows, weight_decay, weight_l1)
            if not _all_finite(&grads[0], n_params):
                status = ST_NONFINITE_GRAD
                break
            _optimizer_update(&o, &params[0], &grads[0], &state1[0], &state2[0], n_params)
            o.t += 1
            batch_losses[steps] = data_loss + penalty
            steps += 1
            pos += rows
    return steps, status


def forward_rows(const floating[:, ::1] X, const int64_t[::1] index,
                 const int64_t[::1] sizes, const int64_t[::1] acts,
                 const int64_t[::1] w_off, const int64_t[::1] b_off,
                 double leaky_slope, const floating[::1] params,
                 Py_ssize_t first, Py_ssize_t last, floating[::1] ws,
                 Py_ssize_t block_rows, floating[:, ::1] out):
    """out <- network layers [first, last) applied to X[index] (with activations).

    X has sizes[first] columns and out has sizes[last]; rows are processed in
    blocks of `block_rows` through the workspace.
    """
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, LOSS_MSE, leaky_slope)
    cdef Py_ssize_t n = index.shape[0], pos, rows, i, j
    cdef Py_ssize_t d_in, d_out
    cdef floating* res
    if not (0 <= first < last <= s.n_layers):
        raise ValueError("invalid layer range")
    d_in = sizes[first]
    d_out = sizes[last]
    if X.shape[1] != d_in or out.shape[1] != d_out or out.shape[0] != n:
        raise ValueError("shape mismatch between X, out and the layer range")
    if ws.shape[0] < workspace_sizes(sizes, block_rows)[0]:
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
            # Place the input in block `first` of a layout that starts there.
            _gather(&X[0, 0], d_in, &index[pos], rows,
                    &ws[0] + _block_offset(&s, first, block_rows))
            _forward(&s, &params[0], &ws[0], block_rows, rows, first, last, False)
            res = &ws[0] + _block_offset(&s, last, block_rows)
            memcpy(&out[pos, 0], res, rows * d_out * sizeof(floating))
            pos += rows


def row_losses(const floating[:, ::1] X, const int64_t[::1] index,
               const int64_t[::1] sizes, const int64_t[::1] acts,
               const int64_t[::1] w_off, const int64_t[::1] b_off,
               int loss, double leaky_slope, const floating[::1] params,
               floating[::1] ws, Py_ssize_t block_rows, double[::1] out):
    """out[i] <- the loss of reconstructing X[index[i]], averaged over features."""
    cdef Spec s = _make_spec(sizes, acts, w_off, b_off, loss, leaky_slope)
    cdef Py_ssize_t n = index.shape[0], pos, rows, i
    cdef Py_ssize_t d = X.shape[1]
    cdef floating* res
    if d != sizes[0] or d != sizes[s.n_layers]:
        raise ValueError("X has %d features, the network expects %d" % (d, sizes[0]))
    if out.shape[0] != n:
        raise ValueError("out must have one entry per index")
    if ws.shape[0] < workspace_sizes(sizes, block_rows)[0]:
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
                     s.loss == LOSS_BCE)
            res = &ws[0] + _block_offset(&s, s.n_layers, block_rows)
            _loss_and_delta(&s, res, &ws[0], NULL, rows, d, 1.0, &out[pos])
            for i in range(rows):
                out[pos + i] /= d
            pos += rows
