"""BLAS thread policy of the training step."""
import numpy as np
import pytest

from aefast.engine.network import Network
from aefast.engine.threads import SMALL_GEMM, ThreadChooser, needs_chooser, threads_for_step


def test_small_steps_run_blas_on_one_thread():
    net = Network([784, 256, 16, 256, 784], ["relu"] * 3 + ["sigmoid"])
    assert threads_for_step(None, net, 64) == 1          # 64 * 784 * 256 < 2**24
    assert 256 * 784 * 256 >= SMALL_GEMM
    assert threads_for_step(None, net, 256) is None      # left to BLAS (and the chooser)
    assert threads_for_step(-1, net, 64) is None
    assert threads_for_step(3, net, 64) == 3
    assert needs_chooser(None, net, 256) and not needs_chooser(None, net, 64)
    assert not needs_chooser(None, net, 4096)           # large GEMMs: BLAS as configured
    assert not needs_chooser(1, net, 256)


def test_chooser_keeps_the_faster_setting_and_tries_again():
    now = [0.0]
    chooser = ThreadChooser([None, 1], trials=2, period=5, clock=lambda: now[0])
    cost = {None: 0.02, 1: 0.001}
    seen = []

    def call():
        option = chooser.current()
        if seen[-1:] != [option]:  # waking the threads: ignored by the chooser
            now[0] += 1.0
        seen.append(option)
        now[0] += cost[option]
        return 1, 0

    for _ in range(9):
        assert chooser.run(call) == (1, 0)
    assert seen[:4] == [None, None, 1, 1]        # trial round, one option at a time
    assert seen[4:9] == [1] * 5                  # the faster one
    cost[None], cost[1] = 0.001, 0.02            # the load changed
    for _ in range(9):
        chooser.run(call)
    assert seen[9:13] == [None, None, 1, 1] and seen[13:] == [None] * 5


def test_a_failing_call_is_passed_through():
    chooser = ThreadChooser([None, 1])
    assert chooser.run(lambda: (0, 2)) == (0, 2)
