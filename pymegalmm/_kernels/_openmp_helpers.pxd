# cython: language_level=3
# The one OpenMP shim shared by all kernel modules, as in scikit-learn's
# ``sklearn/utils/_openmp_helpers.pxd``: with OpenMP (``_OPENMP`` defined by
# ``-fopenmp``) it includes <omp.h>; without, it defines serial stubs so the same
# .pyx files build either way.  ``cimport`` these names from here; do not
# re-declare them elsewhere.  The stubs are ``static inline`` so that a module
# cimporting only some of them compiles without unused-function warnings.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define PYMEGALMM_OPENMP 1
    #else
    #define PYMEGALMM_OPENMP 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline void omp_set_num_threads(int n) { (void)n; }
    #endif
    """
    int PYMEGALMM_OPENMP
    int omp_get_max_threads() noexcept nogil
    void omp_set_num_threads(int n) noexcept nogil
