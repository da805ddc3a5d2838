"""Build the Cython kernels, with OpenMP when the compiler supports it.

The kernels live in the package ``pymegalmm/_kernels/``, one compiled module per
topic: every ``pymegalmm/_kernels/*.pyx`` becomes the extension
``pymegalmm._kernels.<name>`` (``__init__.py`` re-exports their functions).  The
shared ``.pxd`` files there (the OpenMP shim ``_openmp_helpers.pxd`` and the inline
dense algebra ``_dense.pxd``) are only cimported, not built.

The compiler is probed once with a tiny OpenMP program.  If ``-fopenmp`` does not
compile and link (e.g. Apple clang without libomp), every kernel module is built
serially: ``prange`` loops then run on one thread and ``pymegalmm.show_config()``
reports ``OpenMP: disabled``.  Set ``PYMEGALMM_NO_OPENMP=1`` to force a serial build.

Debug build (memory checks): ``PYMEGALMM_DEBUG_BUILD=1 python setup.py build_ext --inplace``
builds the kernels for finding memory errors and undefined behaviour instead of for
speed (tested with GCC on Linux; ``bash tools/sanitize.sh`` does it in a throwaway
copy and runs the kernel tests).  It changes:

* Cython directives ``boundscheck=True, wraparound=True, initializedcheck=True,
  cdivision=False``: every memoryview index is checked (``IndexError``), negative
  indices wrap, an unassigned memoryview raises, and division by zero raises
  ``ZeroDivisionError`` instead of giving ``inf``/``nan``;
* compiled and linked with ``-O1 -g -fno-omit-frame-pointer
  -fsanitize=address,undefined -fno-sanitize-recover=undefined`` (AddressSanitizer for
  out-of-bounds and use-after-free accesses, UBSan for signed overflow, misaligned
  loads, invalid shifts...; any UB aborts), with OpenMP as in the normal build.
  ``-fno-wrapv`` undoes the ``-fwrapv`` that Python's own CFLAGS pass, so that signed
  overflow in a kernel is undefined again and UBSan reports it.

The generated C goes to ``build/debug-c/`` (not next to the ``.pyx`` files) and
everything is rebuilt (``force``), because neither Cython nor ``build_ext`` notices a
change of directives or flags.  The resulting ``.so`` files import only with the
ASan runtime loaded first (``LD_PRELOAD``, see ``tools/sanitize.sh``); after an
in-place debug build, go back with ``python setup.py build_ext --inplace --force``.
With the variable unset (or ``0``) the build is the normal one, unchanged.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0);
        return 0;
    }
    """
)


def openmp_flags() -> tuple[list[str], list[str]]:
    """Return (compile, link) flags for OpenMP, or two empty lists when unsupported."""
    if os.environ.get("PYMEGALMM_NO_OPENMP"):
        print("pymegalmm: PYMEGALMM_NO_OPENMP set, building without OpenMP")
        return [], []
    if sys.platform == "win32":
        return ["/openmp"], []
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    cc = cc.split()
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as fh:
            fh.write(OPENMP_PROBE)
        result = subprocess.run(
            [*cc, "-fopenmp", src, "-o", exe], capture_output=True, text=True
        )
        if result.returncode == 0 and subprocess.run([exe], capture_output=True).returncode == 0:
            return ["-fopenmp"], ["-fopenmp"]
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        "pymegalmm: WARNING the C compiler does not support OpenMP; "
        "building the kernels single-threaded"
    )
    return [], []


compile_omp, link_omp = openmp_flags()
KERNELS_DIR = os.path.join("pymegalmm", "_kernels")
# NumPy's random distributions, exposed to C extensions as a static library; only the
# modules listed here call them
NUMPY_RANDOM_LIB = os.path.join(os.path.dirname(np.__file__), "random", "lib")
USES_NPYRANDOM = {"_random", "_shrinkage"}

# PYMEGALMM_DEBUG_BUILD=1: bounds-checked, ASan/UBSan-instrumented kernels (see the
# docstring); unset or 0: the normal optimised build
DEBUG_BUILD = os.environ.get("PYMEGALMM_DEBUG_BUILD", "") not in ("", "0")
COMPILER_DIRECTIVES = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
}
if DEBUG_BUILD:
    if sys.platform == "win32":
        raise RuntimeError("setup.py: PYMEGALMM_DEBUG_BUILD needs GCC or Clang (not MSVC)")
    print("pymegalmm: PYMEGALMM_DEBUG_BUILD set, building bounds-checked ASan/UBSan kernels")
    SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    OPT_FLAGS = ["-O1", "-g", "-fno-omit-frame-pointer", "-fno-wrapv", *SANITIZE]
    LINK_FLAGS = SANITIZE
    COMPILER_DIRECTIVES.update(
        boundscheck=True, wraparound=True, initializedcheck=True, cdivision=False
    )
    CYTHONIZE_OPTIONS = {"force": True, "build_dir": os.path.join("build", "debug-c")}
    SETUP_OPTIONS = {"build_ext": {"force": True}}
else:
    # -fno-math-errno: sqrt without an errno check, so loops that take square roots
    # vectorise (sample_diagonal_effects: 1.6x at t = 20000).  It changes no result:
    # sqrt and division stay correctly rounded IEEE operations, and exp/log stay libm
    # calls (vector versions need -ffast-math); tests/test_golden.py checks the draws.
    OPT_FLAGS = ["-O3", "-fno-math-errno"]
    LINK_FLAGS = []
    CYTHONIZE_OPTIONS = {}
    SETUP_OPTIONS = {}


def kernel_extension(pyx: str) -> Extension:
    """Return the extension ``pymegalmm._kernels.<name>`` built from ``<name>.pyx``."""
    name = os.path.splitext(os.path.basename(pyx))[0]
    npyrandom = name in USES_NPYRANDOM
    return Extension(
        f"pymegalmm._kernels.{name}",
        [pyx],
        include_dirs=[np.get_include()],
        library_dirs=[NUMPY_RANDOM_LIB] if npyrandom else [],
        libraries=["npyrandom", "m"] if npyrandom else ["m"],
        extra_compile_args=[*OPT_FLAGS, *compile_omp],
        extra_link_args=[*LINK_FLAGS, *link_omp],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
    )


# one extension per topic module; POSIX paths, as setuptools expects for sources
extensions = [
    kernel_extension(pyx.replace(os.sep, "/"))
    for pyx in sorted(glob.glob(os.path.join(KERNELS_DIR, "*.pyx")))
]
if not extensions:
    raise RuntimeError(f"setup.py: no kernel sources found in {KERNELS_DIR}")

setup(
    ext_modules=cythonize(
        extensions, compiler_directives=COMPILER_DIRECTIVES, **CYTHONIZE_OPTIONS
    ),
    options=SETUP_OPTIONS,
)
