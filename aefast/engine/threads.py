"""BLAS thread limits for the training step.

OpenBLAS splits even small GEMMs over its threads. When another process
shares the cores those threads wait on each other: on this project's 2-core
machine with one core busy elsewhere, a Fashion-MNIST autoencoder
(784-256-16, batch 64, 2 epochs on 6,750 rows) took 5 to 19 s with 2 BLAS
threads and 0.4 to 0.5 s with one; at batch 256 the two were equal. So unless
the user says otherwise, a step whose largest GEMM is small runs BLAS on one
thread (``threads_for_step``).

Larger GEMMs collapse too under contention (batch 256 of the same network:
4.8 to 5.8 s with 2 threads, 0.4 to 0.6 s with one, while a quiet machine
favours 2 threads), so for mid-sized steps the training loop lets
``ThreadChooser`` time a few calls with each setting and keep the faster,
trying again periodically as the load changes. Steps with a GEMM of 2**27
multiply-adds or more (case L of issue 2) keep BLAS as configured.
"""
import contextlib
import time

# Largest GEMM of a step, in multiply-adds, below which BLAS runs on one thread,
# and above which BLAS is left alone (its threads pay off; timing trials of one
# thread cost case L of issue 2 about 8%). In between, ThreadChooser decides.
SMALL_GEMM = 1 << 24
LARGE_GEMM = 1 << 27

_CONTROLLER = []  # one threadpoolctl controller, built on first use


def blas_threads(n):
    """Context limiting BLAS to ``n`` threads (a no-op for ``n=None``)."""
    if n is None:
        return contextlib.nullcontext()
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=n, user_api="blas")


def largest_gemm(network, rows):
    """Multiply-adds of the largest GEMM in a step of ``rows`` rows."""
    return rows * max(network.in_width(l) * int(network.sizes[l + 1])
                      for l in range(network.n_layers))


def threads_for_step(n_jobs, network, rows):
    """BLAS threads for steps of ``rows`` rows through ``network`` (None: as configured).

    ``n_jobs`` None picks 1 for small GEMMs (see the module docstring) and
    leaves BLAS alone otherwise; -1 always leaves it alone; a positive value
    is used as it is.
    """
    if n_jobs == -1:
        return None
    if n_jobs is not None:
        return n_jobs
    return 1 if largest_gemm(network, rows) < SMALL_GEMM else None


def needs_chooser(n_jobs, network, rows):
    """Whether fit should time BLAS's setting against one thread (see ThreadChooser)."""
    return n_jobs is None and SMALL_GEMM <= largest_gemm(network, rows) < LARGE_GEMM


class ThreadChooser:
    """Pick the faster BLAS thread setting by timing training calls.

    Each trial round runs every option for ``trials`` consecutive calls and
    times them per step, ignoring the first call of each option (it pays for
    waking or parking BLAS threads); the fastest option then runs for
    ``period`` calls before the next round.

    Parameters
    ----------
    options : sequence
        Thread settings to compare (None: BLAS as configured).
    trials : int, default=4
        Consecutive calls per option in a trial round (>= 2).
    period : int, default=64
        Calls run with the chosen option before the next trial round.
    clock : callable, default=time.perf_counter
    """

    def __init__(self, options, trials=4, period=64, clock=time.perf_counter):
        self.options = list(options)
        self.trials = max(2, int(trials))
        self.period = period
        self.clock = clock
        self._calls = 0
        self._best = {}
        self._chosen = self.options[0]

    def _position(self):
        """Index of the next call within its round (trial calls first)."""
        return self._calls % (self.period + self.trials * len(self.options))

    def _in_trial(self):
        return self._position() < self.trials * len(self.options)

    def current(self):
        """The setting for the next call."""
        if self._in_trial():
            return self.options[self._position() // self.trials]
        return self._chosen

    def run(self, fn):
        """Call ``fn()`` (returning (steps, status)) under the current setting, timed."""
        position = self._position()
        option = self.current()
        trial = self._in_trial()
        if position == 0:
            self._best = {}
        with blas_threads(option):
            tic = self.clock()
            steps, status = fn()
            seconds = self.clock() - tic
        self._calls += 1
        if trial and steps and position % self.trials:  # not the first call of the option
            per_step = seconds / steps
            self._best[option] = min(self._best.get(option, per_step), per_step)
        if trial and not self._in_trial() and self._best:
            self._chosen = min(self._best, key=self._best.get)
        return steps, status
