"""Time of ``import aefast`` in a fresh interpreter, as numpy's and scipy's bench_import do.

Importing in the benchmark process would measure nothing (the module is cached after the
first import), so each sample starts a new Python. ``time_python`` is the interpreter's own
start-up, the baseline to subtract. Public names load lazily (PEP 562), so
``time_aefast_autoencoder`` adds the first access of ``aefast.Autoencoder``, which imports the
estimator's modules (scikit-learn among them). ``track_import_seconds`` measures
``import aefast`` alone inside the child process with ``time.perf_counter``.
"""

import subprocess
import sys
from timeit import default_timer


def _run(code):
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True).stdout


class ImportTime:
    timer = default_timer  # wall clock: the work happens in a child process
    timeout = 120

    def time_python(self):
        _run("pass")

    def time_aefast(self):
        _run("import aefast")

    def time_aefast_autoencoder(self):
        # public names load lazily (PEP 562): this is the import cost before training
        _run("import aefast; aefast.Autoencoder")

    def track_import_seconds(self):
        """Seconds spent in ``import aefast`` alone (best of 3 fresh processes)."""
        code = ("import time; t = time.perf_counter(); import aefast; "
                "print(time.perf_counter() - t)")
        return min(float(_run(code)) for _ in range(3))

    track_import_seconds.unit = "seconds"
