"""Thread settings of the training step: BLAS threads and data-parallel workers.

A training step can use the cores in two ways. OpenBLAS can split each GEMM
over its threads, or the step can be data-parallel: each of ``P`` OpenMP
workers runs forward and backward on its part of the batch with one-thread
BLAS, and the workers then sum the gradients and update disjoint ranges of the
parameters (``aefast._ext._network.train_batches(..., n_threads=P)``). The
second synchronises a few times per step instead of around every GEMM and also
spreads the elementwise work, the top-k selection and the optimizer. On this
project's 2-core machine (OPENBLAS_CORETYPE unset), seconds per Fashion-MNIST
epoch with BLAS's 2 threads / one thread / 2 workers:

* 784-128-64-32 mirrored, batch 256 (issue 2's case M): 0.60 / 0.89 / 0.49;
* VAE 784-400-20, batch 128: 1.67 / 2.52 / 1.49;
* TopK 784-4096 (k=32), batch 256: 8.0 / 11.6 / 7.4;
* 784-1000-500-250-30 mirrored (case L): 5.8 / 10.3 / 5.8;
* 30-16-4 on 100,000 rows, batch 64 (case S): 2 workers 0.036 s against
  0.020 s on one thread: tiny steps are dominated by the synchronisation.

Either way, when another process shares the cores, threads that wait on each
other collapse: a Fashion-MNIST autoencoder (784-256-16, batch 64, 2 epochs
on 6,750 rows) took 5 to 19 s with 2 BLAS threads and 0.4 to 0.5 s with one.
So with ``n_jobs=None`` (``step_thread_options``):

* a step whose largest GEMM is under ``PARALLEL_GEMM`` multiply-adds runs
  serially on one thread;
* larger steps let ``ThreadChooser`` time a few calls of data-parallel
  workers against the alternative and keep the faster, trying again
  periodically as the load changes: one thread up to ``LARGE_GEMM``, BLAS's
  own threads beyond it (a trial of one thread on those costs several
  percent, and BLAS's threads are as fast there).

Every option of a fit splits its steps into the same parts (``parts`` of
``train_batches``: the largest number of workers among the options), one
thread or several running them, so the choice, which depends on timing,
changes the speed and never the result.
"""
import contextlib
import time
from typing import NamedTuple

# Largest GEMM of a step, in multiply-adds: below PARALLEL_GEMM the step runs
# serially with one BLAS thread; from LARGE_GEMM on, the alternative to the
# data-parallel workers is BLAS's own threads rather than one thread.
PARALLEL_GEMM = 1 << 20
LARGE_GEMM = 1 << 27
# Inference (blocks of 1,024 rows) runs BLAS on one thread below this size.
SMALL_GEMM = 1 << 24

_CONTROLLER = []  # one threadpoolctl controller, built on first use


class StepThreads(NamedTuple):
    """How a training call uses threads.

    Attributes
    ----------
    blas : int or None
        BLAS thread limit during the call (None: BLAS as configured).
    workers : int
        Data-parallel workers of each step (1: a serial step).
    """

    blas: object
    workers: int


SERIAL = StepThreads(1, 1)


def _controller():
    if not _CONTROLLER:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def blas_threads(n):
    """Context limiting BLAS to ``n`` threads (a no-op for ``n=None``)."""
    if n is None:
        return contextlib.nullcontext()
    return _controller().limit(limits=n, user_api="blas")


def configured_threads():
    """Threads BLAS is configured to use (at least 1): the cores a step may take."""
    counts = [info["num_threads"] for info in _controller().select(user_api="blas").info()]
    return max(counts, default=1) or 1


def largest_gemm(network, rows):
    """Multiply-adds of the largest GEMM in a step of ``rows`` rows."""
    return rows * max(network.in_width(l) * int(network.sizes[l + 1])
                      for l in range(network.n_layers))


def threads_for_step(n_jobs, network, rows):
    """BLAS threads for inference in blocks of ``rows`` rows (None: as configured).

    ``n_jobs`` None picks 1 for GEMMs under ``SMALL_GEMM`` (see the module
    docstring) and leaves BLAS alone otherwise; -1 always leaves it alone; a
    positive value is used as it is.
    """
    if n_jobs == -1:
        return None
    if n_jobs is not None:
        return n_jobs
    return 1 if largest_gemm(network, rows) < SMALL_GEMM else None


def step_thread_options(n_jobs, network, rows, threads=None):
    """The thread settings a fit may use for steps of ``rows`` rows.

    One setting is used as it is; with several, ``ThreadChooser`` times them.
    ``n_jobs`` None: see the module docstring (``threads``, default
    ``configured_threads()``, is the number of workers). -1: BLAS as
    configured, serial steps. A positive value: that many workers (or BLAS
    threads for large GEMMs, whichever is faster), 1 for small steps.
    """
    if n_jobs == -1:
        return [StepThreads(None, 1)]
    size = largest_gemm(network, rows)
    workers = int(n_jobs) if n_jobs is not None else int(threads or configured_threads())
    workers = max(1, min(workers, rows))
    if workers == 1 or size < PARALLEL_GEMM:
        return [SERIAL]
    parallel = StepThreads(1, workers)
    # Trial order matters: BLAS threads keep spinning for a while after their
    # last GEMM (OpenBLAS: about 0.1 s) and slow down the workers meanwhile, so
    # the workers are timed after one thread, and before BLAS's threads.
    if size >= LARGE_GEMM:
        return [parallel, StepThreads(None if n_jobs is None else workers, 1)]
    return [parallel] if n_jobs is not None else [SERIAL, parallel]


class ThreadChooser:
    """Pick the fastest thread setting by timing training calls.

    A trial round runs each option in turn for ``trials`` consecutive calls
    and times them per step, ignoring the first call of each option (it pays
    for waking or parking threads) and keeping each option's best. The first
    option of a round also runs until ``settle`` seconds have passed, so that
    threads left spinning by earlier work (OpenBLAS's idle threads spin for
    about 0.1 s) have gone to sleep before the others are timed. The fastest
    option then runs for ``period`` seconds before the next round. A single
    option is simply used. All options run steps split into ``parts`` (the
    largest number of workers among them) parts, whatever their thread count,
    so the choice changes the speed, never the result.

    Parameters
    ----------
    options : sequence of StepThreads
        Thread settings to compare.
    trials : int, default=3
        Consecutive calls per option in a trial round (>= 2).
    settle : float, default=0.15
        Seconds the first option of a round runs at least.
    period : float, default=10.0
        Seconds of training with the chosen option before the next round
        (a round costs about ``settle`` seconds at the slower option's pace).
    clock : callable, default=time.perf_counter
    """

    def __init__(self, options, trials=3, settle=0.15, period=10.0, clock=time.perf_counter):
        self.options = list(options)
        # Every option splits the batch into the same parts, so the result of a
        # step does not depend on which option runs it (see train_batches).
        self.parts = max(option.workers for option in self.options)
        self.trials = max(2, int(trials))
        self.settle = settle
        self.period = period
        self.clock = clock
        self._chosen = self.options[0]
        self._start_round(None)

    def _start_round(self, now):
        self._trial = 0            # index of the option on trial (None: not in a trial)
        self._calls = 0            # calls of that option so far in this round
        self._round_start = now
        self._best = {}

    def current(self):
        """The setting for the next call."""
        return self._chosen if self._trial is None else self.options[self._trial]

    def run(self, fn):
        """Call ``fn(workers)`` (returning (steps, status)) under the current setting, timed."""
        if len(self.options) == 1:
            return fn(self.options[0].workers)
        now = self.clock()
        if self._trial is None and now >= self._run_until:
            self._start_round(now)
        if self._round_start is None:
            self._round_start = now
        option = self.current()
        with blas_threads(option.blas):
            tic = self.clock()
            steps, status = fn(option.workers)
            toc = self.clock()
        if self._trial is None:
            return steps, status
        self._calls += 1
        if self._calls > 1 and steps:  # not the first call of the option
            per_step = (toc - tic) / steps
            self._best[option] = min(self._best.get(option, per_step), per_step)
        settled = self._trial > 0 or toc - self._round_start >= self.settle
        if self._calls >= self.trials and settled:
            self._trial += 1
            self._calls = 0
            if self._trial == len(self.options):
                if self._best:
                    self._chosen = min(self._best, key=self._best.get)
                self._trial = None
                self._run_until = toc + self.period
        return steps, status
