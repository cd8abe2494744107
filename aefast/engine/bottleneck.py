"""The Gaussian-sampling bottleneck of the VAE: constants shared by every backend.

The encoder's last layer emits ``2 k`` values per row: the posterior means
``mu`` (first ``k``) and log-variances ``log sigma^2`` (last ``k``). Before
use the log-variance is clamped to ``[LOGVAR_MIN, LOGVAR_MAX]``; the clamp
passes no gradient where it is active (as ``torch.clamp``). The range keeps
``exp`` finite and ``sigma`` above 4.5e-5 in float32, so a VAE cannot produce
an overflow or a zero variance, whatever the learning rate.

Sampling: ``z = mu + exp(0.5 * log sigma^2) * eps`` with ``eps ~ N(0, I)``
drawn row by row, ``k`` at a time, in row-major order from one NumPy bit
generator (Cython: ``random_standard_normal`` / ``_f``; CUDA:
``numba.cuda.random``). Backward, for ``dL/dz`` and the KL weight ``w``::

    dL/dmu     = dL/dz + w * mu
    dL/dlogvar = (dL/dz * eps * sigma / 2 + w * (sigma^2 - 1) / 2) * [not clamped]

where the KL part is the analytic KL(N(mu, sigma^2) || N(0, 1)) =
``-0.5 * sum(1 + log sigma^2 - mu^2 - sigma^2)`` per row.
"""

LOGVAR_MIN = -20.0
LOGVAR_MAX = 10.0
