#!/usr/bin/env bash
# Check the Cython/OpenMP kernels for memory errors and undefined behaviour.
#
#   bash tools/sanitize.sh [extra pytest arguments]
#
# 1. Copies the working tree (tracked and untracked-but-not-ignored files, so
#    uncommitted edits are checked too; no build products) into a throwaway
#    directory under ${TMPDIR:-/tmp}.  Nothing is built in this tree, and an
#    installed (or editable) pymegalmm is neither rebuilt nor used: the copy goes
#    first on PYTHONPATH and the script checks that the kernels are imported from it.
# 2. Builds the kernels there with PYMEGALMM_DEBUG_BUILD=1 (see setup.py): Cython
#    bounds/wraparound/initialised checks, cdivision off, -O1 -g and
#    -fsanitize=address,undefined -fno-sanitize-recover=undefined, OpenMP on.
# 3. Runs the kernel tests (tests/test_kernels.py, tests/test_random.py) and the
#    golden-draws and plug-in tests (tests/test_golden.py, tests/test_plugins.py,
#    which run whole chains through every kernel) with ASan/UBSan and 2 OpenMP threads.
#
# Exits non-zero if the build fails, a test fails (a Cython bounds check raises
# IndexError, cdivision=False raises ZeroDivisionError), or a sanitizer reports
# anything.  Needs gcc (libasan/libubsan and libgomp from the same GCC) on Linux.
# Run it with the dev virtualenv active (Cython, numpy, pytest), or set PYTHON.
# Set SANITIZE_KEEP=1 to keep the throwaway directory (its path is printed).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
CC=${CC:-gcc}
TESTS=(tests/test_kernels.py tests/test_random.py tests/test_golden.py tests/test_plugins.py)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/pymegalmm-sanitize.XXXXXX")
if [[ -z "${SANITIZE_KEEP:-}" ]]; then
    trap 'rm -rf "$WORK"' EXIT
fi
SRC="$WORK/src"
LOGS="$WORK/logs"
mkdir -p "$SRC" "$LOGS"
echo "sanitize: throwaway copy in $SRC"

# --- 1. copy the working tree (files deleted but not yet committed are skipped) ---
git -C "$REPO" ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do if [[ -f "$REPO/$f" ]]; then printf '%s\0' "$f"; fi; done \
    | tar -C "$REPO" --null -T - -cf - \
    | tar -C "$SRC" -xf -

# --- 2. debug build, in place in the copy -------------------------------------------
start=$SECONDS
(cd "$SRC" && PYMEGALMM_DEBUG_BUILD=1 "$PYTHON" setup.py build_ext --inplace -j 2 \
    >"$LOGS/build.log" 2>&1) || { tail -n 40 "$LOGS/build.log"; echo "sanitize: build failed"; exit 1; }
echo "sanitize: debug build done in $((SECONDS - start)) s"

# --- 3. run the tests under ASan/UBSan -----------------------------------------------
# Python itself is not built with ASan, so the ASan runtime must be the first library
# loaded ("ASan runtime does not come first in initial library list" otherwise):
# LD_PRELOAD it.  libubsan needs no preloading: the instrumented .so files list it as
# a dependency and it works when dlopen()ed with them.
LIBASAN=$("$CC" -print-file-name=libasan.so)
[[ -f "$LIBASAN" ]] || { echo "sanitize: $CC has no libasan.so"; exit 1; }
export LD_PRELOAD="$LIBASAN${LD_PRELOAD:+:$LD_PRELOAD}"
# detect_leaks=0: CPython keeps many allocations alive until exit (interned objects,
# module state), which LeakSanitizer would report by the thousand.
# halt_on_error=1 (ASan's default, spelled out): stop at the first error, exit code 1.
# UBSan: -fno-sanitize-recover=undefined already aborts at the first UB (exit code 1);
# print_stacktrace=1 says which kernel line it came from.  UBSan ignores log_path when
# it runs next to ASan, so both report on stderr, which is copied to a log and searched
# for their markers below.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
# Python objects through malloc, so ASan also sees their bounds (pymalloc's arenas
# hide overflows of small objects)
export PYTHONMALLOC=malloc
# the thread tests switch between 1 and 2 threads; everything else runs with 2
export OMP_NUM_THREADS=2
# the copy, not an installed pymegalmm (an editable install's finder comes after
# PYTHONPATH on sys.path)
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
cd "$SRC"

# sanity check: the kernels come from the copy, both sanitizer runtimes are live in
# the process, and OpenMP runs 2 threads
"$PYTHON" - "$SRC" <<'EOF'
import ctypes
import os
import sys

import pymegalmm._kernels as K

kernel = ctypes.CDLL(K._regression.__file__)  # looks in the module and its dependencies
for symbol in ("__asan_report_load8", "__ubsan_handle_add_overflow_abort"):
    if not hasattr(kernel, symbol):
        sys.exit(f"sanitize: {symbol} not loaded: the kernels are not instrumented")

src = os.path.realpath(sys.argv[1])
where = os.path.realpath(K._gemm.__file__)
if not where.startswith(src + os.sep):
    sys.exit(f"sanitize: kernels imported from {where}, not from the debug copy {src}")
print(f"sanitize: kernels from {os.path.dirname(where)}, OpenMP enabled: "
      f"{K.openmp_enabled()}, threads: {K.openmp_max_threads()}")
if not K.openmp_enabled() or K.openmp_max_threads() != 2:
    sys.exit("sanitize: expected an OpenMP build running 2 threads")
EOF

# --capture=sys: pytest captures only Python-level output, so what the sanitizers write
# to file descriptor 2 is shown (and logged) at once, not lost in pytest's capture file
# when the process aborts.
start=$SECONDS
status=0
"$PYTHON" -m pytest -q -p no:cacheprovider --capture=sys \
    -W error::pytest.PytestUnraisableExceptionWarning "${TESTS[@]}" "$@" \
    2>&1 | tee "$LOGS/tests.log" || status=$?
echo "sanitize: tests ran in $((SECONDS - start)) s (exit code $status)"

if grep -E -q '==[0-9]+==ERROR: |runtime error: ' "$LOGS/tests.log"; then
    echo "sanitize: FAILED, the sanitizers reported:"
    grep -E -A 4 '==[0-9]+==ERROR: |runtime error: ' "$LOGS/tests.log"
    exit 1
fi
if ((status != 0)); then
    echo "sanitize: FAILED, tests failed under the debug build (exit code $status)"
    exit "$status"
fi
echo "sanitize: OK, no sanitizer report and all tests passed"
