# cython: language_level=3
"""Random draws in fixed column blocks, one NumPy bit generator per block."""

from cpython.pycapsule cimport PyCapsule_GetPointer
from cython.parallel cimport prange
from libc.stdlib cimport free, malloc
from numpy.random cimport bitgen_t
from numpy.random.c_distributions cimport random_standard_gamma, random_standard_normal_fill


def fill_random_blocks(list bit_generators, double[::1, :] out, Py_ssize_t width,
                       bint gamma=False, double shape=1.0):
    """Fill ``out`` with standard normal (or standard Gamma(``shape``)) draws by blocks.

    Columns ``b * width`` to ``(b + 1) * width - 1`` are filled, in column-major
    order, from ``bit_generators[b]`` with NumPy's own distribution functions, so
    block ``b`` holds exactly what ``Generator(bit_generators[b]).standard_normal``
    (or ``.standard_gamma(shape)``) would return.  Blocks run in parallel; the
    result does not depend on the number of threads.

    Parameters
    ----------
    bit_generators : list of numpy.random.BitGenerator
        One per block, used by one thread only.
    out : (rows, cols) Fortran-ordered output.
    width : columns per block.
    gamma : draw standard Gamma(``shape``) instead of standard normals.
    shape : Gamma shape.
    """
    cdef Py_ssize_t rows = out.shape[0], cols = out.shape[1]
    cdef Py_ssize_t n_blocks = len(bit_generators)
    cdef Py_ssize_t b, start, count, i
    cdef double *dst
    if width < 1 or n_blocks != (cols + width - 1) // width:
        raise ValueError("fill_random_blocks: need one bit generator per block of columns")
    if rows == 0 or cols == 0:
        return
    states = <bitgen_t **> malloc(n_blocks * sizeof(bitgen_t *))
    if states == NULL:
        raise MemoryError()
    try:
        for b in range(n_blocks):
            states[b] = <bitgen_t *> PyCapsule_GetPointer(bit_generators[b].capsule,
                                                         "BitGenerator")
        with nogil:
            for b in prange(n_blocks, schedule="static"):
                start = b * width
                count = rows * min(width, cols - start)
                dst = &out[0, start]
                if gamma:
                    for i in range(count):
                        dst[i] = random_standard_gamma(states[b], shape)
                else:
                    random_standard_normal_fill(states[b], count, dst)
    finally:
        free(states)
