"""Test helper for the Numba CUDA simulator (imported by the CUDA test modules)."""
import sys

import numpy as np


def lock_simulator_shared_arrays():
    """Work around a race in Numba's CUDA simulator; returns the function that undoes it.

    The simulator gives the threads of a block their "shared" array from a
    per-block dict, check-then-set without a lock: when the OS switches threads
    between the two (likelier under load, and with the short switch interval
    above), two threads of a block get different arrays and the kernel's
    result is garbage now and then. The allocation is serialised here, keyed
    by the calling line as the simulator does. Nothing changes on a real GPU.
    """
    from numba import config

    if not config.ENABLE_CUDASIM:
        return lambda: None
    import threading
    import traceback

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    shared = getattr(kernelapi, "FakeCUDAShared", None)
    if shared is None or not hasattr(shared, "array"):
        return lambda: None
    original = shared.array
    lock = threading.Lock()

    def array(self, shape, dtype):
        allocations = getattr(self, "_allocations", None)
        if shape == 0 or allocations is None:
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = traceback.extract_stack(sys._getframe())[-2][0:2]
        with lock:
            res = allocations.get(caller)
            if res is None:
                res = allocations[caller] = np.empty(shape, dtype)
        return res

    shared.array = array

    def undo():
        shared.array = original

    return undo
