"""Thread policy of the training step: serial, data-parallel workers, BLAS threads."""
import numpy as np
import pytest

import aefast
from aefast.engine.network import Network
from aefast.engine.threads import (LARGE_GEMM, PARALLEL_GEMM, SERIAL, SMALL_GEMM, StepThreads,
                                   ThreadChooser, largest_gemm, step_thread_options,
                                   threads_for_step)


def test_inference_runs_small_products_on_one_blas_thread():
    net = Network([784, 256, 16, 256, 784], ["relu"] * 3 + ["sigmoid"])
    assert threads_for_step(None, net, 64) == 1          # 64 * 784 * 256 < 2**24
    assert 256 * 784 * 256 >= SMALL_GEMM
    assert threads_for_step(None, net, 256) is None      # left to BLAS
    assert threads_for_step(-1, net, 64) is None
    assert threads_for_step(3, net, 64) == 3


def test_step_options_by_size_and_n_jobs():
    net = Network([784, 256, 16, 256, 784], ["relu"] * 3 + ["sigmoid"])
    small, mid, large = 4, 256, 1024
    assert largest_gemm(net, small) < PARALLEL_GEMM <= largest_gemm(net, mid) < LARGE_GEMM
    assert largest_gemm(net, large) >= LARGE_GEMM
    assert step_thread_options(None, net, small, threads=2) == [SERIAL]
    assert step_thread_options(None, net, mid, threads=2) == [SERIAL, StepThreads(1, 2)]
    assert step_thread_options(None, net, large, threads=2) == [StepThreads(1, 2),
                                                                 StepThreads(None, 1)]
    assert step_thread_options(None, net, mid, threads=1) == [SERIAL]
    assert step_thread_options(-1, net, mid) == [StepThreads(None, 1)]
    assert step_thread_options(1, net, large) == [SERIAL]
    assert step_thread_options(3, net, mid) == [StepThreads(1, 3)]
    assert step_thread_options(3, net, large) == [StepThreads(1, 3), StepThreads(3, 1)]
    # never more workers than rows in a batch
    assert step_thread_options(8, Network([5000, 300, 5000], ["relu", "identity"]), 2) == [
        StepThreads(1, 2)]


def test_chooser_keeps_the_faster_setting_and_tries_again():
    now = [0.0]
    slow_start, fast = SERIAL, StepThreads(1, 2)
    chooser = ThreadChooser([slow_start, fast], trials=2, settle=1.5, period=10.0,
                            clock=lambda: now[0])
    cost = {1: 0.2, 2: 0.01}
    seen = []

    def call(workers):
        assert workers == chooser.current().workers
        if seen[-1:] != [workers]:  # waking the threads: ignored by the chooser
            now[0] += 1.0
        seen.append(workers)
        now[0] += cost[workers]
        return 1, 0

    for _ in range(6):
        assert chooser.run(call) == (1, 0)
    # the first option runs until `settle` seconds have passed (3 calls), then 2 of the other
    assert seen[:5] == [1, 1, 1, 2, 2]
    assert seen[5] == 2 and chooser.current() == fast
    cost[1], cost[2] = 0.01, 0.2              # the load changed
    while now[0] < 12.0:                      # the chosen option runs for `period` seconds
        chooser.run(call)
    assert set(seen[5:-1]) == {2}
    for _ in range(10):
        chooser.run(call)
    assert chooser.current() == slow_start


def test_a_failing_call_is_passed_through():
    chooser = ThreadChooser([StepThreads(1, 2), SERIAL])
    assert chooser.run(lambda workers: (0, 2)) == (0, 2)
    assert ThreadChooser([SERIAL]).run(lambda workers: (workers, 0)) == (1, 0)
