"""The Cython extensions of aefast; all other metadata lives in pyproject.toml."""
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

# -fopenmp-simd: OpenMP SIMD pragmas only (no runtime); -fno-math-errno lets
# sqrt vectorise. No -ffast-math: the engine's NaN/inf checks need IEEE rules.
COMPILE_ARGS = ["-O3", "-ffp-contract=fast", "-fopenmp-simd", "-fno-math-errno"]
NAMES = ["_network", "_topk"]
# OpenMP threads: Cython prange over rows (_topk) and over the parts of a
# data-parallel training step (_network).
OPENMP = {"_topk": ["-fopenmp"], "_network": ["-fopenmp"]}

extensions = [
    Extension(
        f"aefast._ext.{name}",
        [f"src_ext/{name}.pyx"],
        include_dirs=[np.get_include(), "src_ext"],
        # numpy.random's C distributions (corruption noise in the training step)
        library_dirs=[os.path.join(os.path.dirname(np.__file__), "random", "lib")],
        libraries=["npyrandom"],
        depends=["src_ext/_elementwise.h", "src_ext/_topk.h"],
        extra_compile_args=COMPILE_ARGS + OPENMP.get(name, []),
        extra_link_args=OPENMP.get(name, []),
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for name in NAMES
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
