"""Build and runtime configuration: OpenMP, threads, BLAS (``show_config``)."""

from __future__ import annotations

import os
import platform
import sys
import warnings
from pathlib import Path

SERIAL_BUILD_WARNING = (
    "pymegalmm was built without OpenMP: the sampler runs on one thread. Results are "
    "identical, only slower. Rebuild with a compiler that supports -fopenmp to use "
    "several cores."
)


#: How OpenMP threads wait, as decided by :func:`set_wait_policy` at import.
WAIT_POLICY = "unknown"


def _libgomp_loaded() -> bool:
    """Whether GNU OpenMP is already loaded in this process (then its settings are fixed)."""
    try:
        with open("/proc/self/maps") as fh:
            return any("libgomp" in line for line in fh)
    except OSError:  # not Linux: cannot tell
        return False


#: libgomp's spin count set by :func:`set_wait_policy`: an idle OpenMP thread spins this
#: many times, then sleeps.
SPIN_COUNT = "1000"


def set_wait_policy() -> str:
    """Make idle OpenMP threads spin briefly, then sleep, unless the user chose otherwise.

    Threads that spin until the next parallel region keep a core busy while they wait;
    when anything else runs on the machine (another program, another chain in a
    parallel process) they steal its time, and an iteration became 5-7x slower (issue
    13).  Threads that sleep at once (``OMP_WAIT_POLICY=PASSIVE``, the default until
    issue 15's fifth round) must be woken for each of the dozens of short kernels of
    an iteration, which on this project's 2-core virtual machines cost 10-15 % of an
    iteration at ``t = 1000``.  A brief spin (libgomp's ``GOMP_SPINCOUNT=1000``) keeps
    the threads awake across the gaps between kernels and still sleeps when the
    program waits longer (``benchmarks/chains.py``, measured on 2 cores at
    ``t = 1000``: idle 7.05 ms per iteration, against 7.77 passive and 6.65 spinning;
    with one core busy 12.6, against 11.6 and 22.3).  LLVM's OpenMP runtime does not
    read ``GOMP_SPINCOUNT``; ``KMP_BLOCKTIME=0`` makes its threads sleep at once, as
    before.  ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME`` set by the
    user are respected.  Must run before the kernels load the OpenMP runtime, i.e. at
    ``import pymegalmm``.

    Returns
    -------
    str
        What is in force, as :func:`show_config` reports it.
    """
    global WAIT_POLICY
    user = {k: os.environ[k] for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
            if k in os.environ}
    if user:
        WAIT_POLICY = "as set by " + ", ".join(f"{k}={v}" for k, v in user.items())
    elif _libgomp_loaded():
        WAIT_POLICY = "OpenMP runtime's default (it was loaded before pymegalmm)"
    else:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
        os.environ["KMP_BLOCKTIME"] = "0"
        WAIT_POLICY = (f"brief spin, then sleep (GOMP_SPINCOUNT={SPIN_COUNT}, set by pymegalmm; "
                       "OMP_WAIT_POLICY=PASSIVE or ACTIVE to change)")
    return WAIT_POLICY


_KERNELS = None  # the module, once imported (kernels_module is called ~200 times an iteration)


def kernels_module():
    """Return the compiled kernel module, with a clear error when it is not built."""
    global _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    try:
        from . import _kernels
    except ImportError as exc:  # pragma: no cover - only on a broken install
        here = Path(__file__).resolve().parent
        raise ImportError(
            f"pymegalmm's compiled kernels are not built in {here}. Install the package "
            "with `pip install .` (or `python setup.py build_ext --inplace` in a source "
            "tree). If it is installed and you are in its source folder, Python imports "
            "the unbuilt sources from the current folder: run from another folder, or use "
            "the installed command (`pymegalmm demo`)."
        ) from exc
    _KERNELS = _kernels
    return _kernels


def warn_if_serial() -> None:
    """Warn (once, at import) when the kernels were compiled without OpenMP."""
    try:
        from . import _kernels
    except ImportError:  # a source tree without the extension: reported when first used
        return
    if not _kernels.openmp_enabled():
        warnings.warn(SERIAL_BUILD_WARNING, RuntimeWarning, stacklevel=3)


def config() -> dict[str, object]:
    """Return the configuration shown by :func:`show_config` as a dictionary."""
    from . import __version__

    info: dict[str, object] = {
        "pymegalmm": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        from . import _kernels

        info["kernels"] = "built"
        info["openmp"] = bool(_kernels.openmp_enabled())
        info["openmp_max_threads"] = int(_kernels.openmp_max_threads())
        info["openmp_wait"] = WAIT_POLICY
    except ImportError:
        info["kernels"] = "NOT BUILT"
        info["openmp"] = False
        info["openmp_max_threads"] = 1
    import numpy
    import scipy

    info["numpy"] = numpy.__version__
    info["scipy"] = scipy.__version__
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            f"{p.get('internal_api')} {p.get('version')} ({p.get('num_threads')} threads)"
            for p in threadpool_info()
            if p.get("user_api") == "blas"
        ]
    except ImportError:  # pragma: no cover
        info["blas"] = ["threadpoolctl not installed"]
    return info


def show_config() -> None:
    """Print the build and runtime configuration (OpenMP, threads, BLAS, versions).

    Examples
    --------
    >>> import pymegalmm
    >>> pymegalmm.show_config()  # doctest: +SKIP
    pymegalmm          0.2.0.dev0
    OpenMP             enabled (2 threads)
    ...
    """
    info = config()
    omp = info["openmp"]
    print(f"{'pymegalmm':<18} {info['pymegalmm']}")
    print(f"{'python':<18} {info['python']} on {info['platform']}")
    print(f"{'kernels':<18} {info['kernels']}")
    state = f"enabled ({info['openmp_max_threads']} threads)" if omp else "disabled (serial build)"
    print(f"{'OpenMP':<18} {state}")
    if omp:
        print(f"{'OpenMP waiting':<18} {info['openmp_wait']}")
    print(f"{'numpy':<18} {info['numpy']}")
    print(f"{'scipy':<18} {info['scipy']}")
    for line in info["blas"] or ["none found"]:
        print(f"{'BLAS':<18} {line}")
