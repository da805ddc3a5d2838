# cython: language_level=3
"""Steps 2 and 4: the h2 grid (quadratic forms per grid point, discrete posterior draw)."""

from cython.parallel cimport parallel, prange
from libc.math cimport exp, INFINITY
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport dgemm

from ._tiles cimport weighted_squares_tile


# ---------------------------------------------------------------------------
# Steps 2 and 4: discrete h2 posterior over the grid
# ---------------------------------------------------------------------------

def sample_grid_index(
    const double[:, ::1] SS,
    const double[::1] log_det,
    const double[::1] log_prior,
    const double[::1] tau,
    const double[::1] u,
    Py_ssize_t[::1] index_out,
):
    """Draw each column's h2 grid point from its discrete posterior by inverse CDF.

    ``log p(g | .) = -log|V_g|/2 - tau_j SS[j, g]/2 + log prior_g`` (+ const);
    the index is the number of grid points whose cumulative probability is
    below ``u_j`` (MegaLMM's ``sample_h2s`` rule).

    Parameters
    ----------
    SS : (t, G) quadratic forms ``y_j' V_g^-1 y_j`` per column and grid point.
    log_det : (G,) ``log|V_g|``.
    log_prior : (G,) log prior weights (``-inf`` for excluded points).
    tau : (t,) total precisions.
    u : (t,) uniform draws.
    index_out : (t,) output grid indices.
    """
    cdef Py_ssize_t t = SS.shape[0], G = SS.shape[1]
    cdef Py_ssize_t j, g, k
    cdef double mx, total, cum, target
    cdef double *lp
    if log_det.shape[0] != G or log_prior.shape[0] != G:
        raise ValueError("sample_grid_index: grid sizes differ")
    with nogil, parallel():
        lp = <double *> malloc(G * sizeof(double))
        for j in prange(t, schedule="static"):
            mx = -INFINITY
            for g in range(G):
                lp[g] = -0.5 * log_det[g] - 0.5 * tau[j] * SS[j, g] + log_prior[g]
                if lp[g] > mx:
                    mx = lp[g]
            total = 0.0
            for g in range(G):
                lp[g] = exp(lp[g] - mx)
                total = total + lp[g]
            target = u[j] * total
            cum = 0.0
            k = 0
            for g in range(G):
                cum = cum + lp[g]
                if cum < target:
                    k = k + 1
            if k > G - 1:
                k = G - 1
            index_out[j] = k
        free(lp)


# ---------------------------------------------------------------------------
# Steps 2 and 4: quadratic forms for every grid point (one random effect)
# ---------------------------------------------------------------------------

#: Columns per tile of :func:`grid_sums_of_squares` (one ``dgemm`` call each).
GRID_BLOCK = 256


def grid_sums_of_squares(
    const double[::1, :] E,
    const double[:, ::1] W_T,
    double[:, ::1] out,
    Py_ssize_t block=GRID_BLOCK,
):
    """``out[j, g] = sum_i W_T[i, g] E[i, j]^2`` for all columns and grid points.

    One product ``out' = W (E o E)`` with ``W = W_T'`` (``G x n``): the columns of
    ``E`` are processed in fixed tiles of ``block`` columns, one thread per tile,
    which squares its tile into a thread-local buffer and makes one serial
    ``dgemm`` call.  The tiling does not depend on the number of threads, so the
    result is bit-identical for any thread count (call it with the BLAS library
    limited to one thread, as the sampler does).

    Parameters
    ----------
    E : (n, t) rotated residuals, Fortran-ordered.
    W_T : (n, G) weights ``1 / (h_g d_i + 1 - h_g)``, C-ordered.
    out : (t, G) output, C-ordered.
    block : columns of ``E`` per tile.
    """
    cdef Py_ssize_t n = E.shape[0], t = E.shape[1], G = W_T.shape[1]
    cdef Py_ssize_t i, j, tile, n_tiles, j0
    cdef int width, i_n = <int>n, i_G = <int>G
    cdef double *E2
    if W_T.shape[0] != n or out.shape[0] != t or out.shape[1] != G:
        raise ValueError("grid_sums_of_squares: inconsistent shapes")
    if block < 1:
        raise ValueError("grid_sums_of_squares: block must be >= 1")
    if t == 0 or G == 0:
        return
    if n == 0:
        for j in range(t):
            for i in range(G):
                out[j, i] = 0.0
        return
    block = min(block, t)  # one tile at most t wide (the same tiles; a bounded buffer)
    n_tiles = (t + block - 1) // block
    with nogil, parallel():
        E2 = <double *> malloc(n * block * sizeof(double))  # thread-local squared tile
        for tile in prange(n_tiles, schedule="static"):
            if E2 == NULL:
                with gil:
                    raise MemoryError("grid_sums_of_squares: no memory for a tile")
            j0 = tile * block
            width = <int>min(block, t - j0)
            # out[j0:j0+width, :]' (G x width, leading dimension G) = W (E o E)
            weighted_squares_tile(&E[0, j0], i_n, width, &W_T[0, 0], i_G, E2, &out[j0, 0])
        free(E2)


# ---------------------------------------------------------------------------
# Steps 2 and 4: quadratic forms for every grid point (diagonal plus low rank)
# ---------------------------------------------------------------------------

LOWRANK_BLOCK = 32


def grid_sums_of_squares_lowrank(
    const double[::1, :] E,
    const double[:, ::1] W_T,
    const double[::1, :] U,
    const double[::1, :] C_rest,
    const double[::1, :, :] B,
    const Py_ssize_t[::1] s_index,
    double[:, ::1] out,
    Py_ssize_t block=LOWRANK_BLOCK,
):
    """``out[j, g] = sum_i W_T[i, g] E[i, j]^2 - ||B_g P_s(g)' E_j||^2`` for all columns and points.

    The low-rank back-end's Woodbury form ``V_g^-1 = diag(W_T[:, g]) - H_g H_g'`` with
    ``H_g' = B_g P_s(g)'``: ``P_s = diag(f_s) C`` depends only on the grid point's
    diagonal part ``s``, shared by several grid points, and ``f_s = 1`` on the rows
    from ``n_pos`` on.  So ``P_s' E_j = U_s' E_j[:n_pos] + C_rest' E_j[n_pos:]``, with
    ``U_s`` the columns ``s * rank`` to ``(s + 1) * rank`` of ``U`` (the first ``n_pos``
    rows of ``P_s``), is computed once per distinct ``s``, then multiplied by the
    ``rank x rank`` matrix ``B_g`` of each grid point.  Columns of ``E`` are processed
    in fixed tiles of ``block`` columns, one thread per tile, with serial ``dgemm``
    calls into thread-local buffers; the diagonal part of a tile is
    :func:`grid_sums_of_squares`'s product for the same tile (so with ``rank = 0`` and
    the same ``block`` the two kernels agree to the last bit).  The tiling does not depend on the number of
    threads, so the result is bit-identical for any thread count (call it with the
    BLAS library limited to one thread, as the sampler does).

    Parameters
    ----------
    E : (n, t) rotated residuals, Fortran-ordered.
    W_T : (n, G) diagonal weights, C-ordered.
    U : (n_pos, S * rank) scaled low-rank factors of the distinct diagonal parts.
    C_rest : (n - n_pos, rank) rows of the low-rank factor shared by every ``s``.
    B : (rank, rank, G) Fortran-ordered: ``B[:, :, g]`` maps ``P_s(g)' E`` to ``H_g' E``.
    s_index : (G,) distinct diagonal part of each grid point, in ``[0, S)``.
    out : (t, G) output, C-ordered.
    block : columns of ``E`` per tile.
    """
    cdef Py_ssize_t n = E.shape[0], t = E.shape[1], G = W_T.shape[1]
    cdef Py_ssize_t n_pos = U.shape[0], rank = C_rest.shape[1]
    cdef Py_ssize_t S = U.shape[1] // rank if rank > 0 else 0
    cdef Py_ssize_t i, j, jj, g, l, s, tile, n_tiles, j0
    cdef int width, m_rows, i_rank, k_pos, k_rest, ld_e, ld_u, ld_c
    cdef int i_n = <int>n, i_G = <int>G
    cdef double acc, one = 1.0, zero = 0.0
    cdef double *P
    cdef double *Q0
    cdef double *Y
    cdef double *corr
    cdef double *E2
    if W_T.shape[0] != n or out.shape[0] != t or out.shape[1] != G:
        raise ValueError("grid_sums_of_squares_lowrank: inconsistent shapes")
    if (n_pos > n or C_rest.shape[0] != n - n_pos or U.shape[1] != S * rank
            or B.shape[0] != rank or B.shape[1] != rank or B.shape[2] != G
            or s_index.shape[0] != G):
        raise ValueError("grid_sums_of_squares_lowrank: U, C_rest, B and s_index must be "
                         "(n_pos, S * rank), (n - n_pos, rank), (rank, rank, G) and (G,)")
    for g in range(G):
        if rank > 0 and not 0 <= s_index[g] < S:
            raise ValueError("grid_sums_of_squares_lowrank: s_index out of range")
    if block < 1:
        raise ValueError("grid_sums_of_squares_lowrank: block must be >= 1")
    if t == 0 or G == 0:
        return
    if n == 0:  # no rows: every quadratic form is 0 (and E has no element 0)
        for j in range(t):
            for g in range(G):
                out[j, g] = 0.0
        return
    block = min(block, t)  # one tile at most t wide (the same tiles; bounded buffers)
    n_tiles = (t + block - 1) // block
    m_rows = <int>(S * rank)
    i_rank = <int>rank
    k_pos = <int>n_pos
    k_rest = <int>(n - n_pos)
    ld_e = <int>n
    ld_u = <int>max(n_pos, 1)
    ld_c = <int>max(n - n_pos, 1)
    with nogil, parallel():
        # thread-local buffers
        P = <double *> malloc((S * rank * block + 1) * sizeof(double))
        Q0 = <double *> malloc((rank * block + 1) * sizeof(double))
        Y = <double *> malloc((rank * block + 1) * sizeof(double))
        corr = <double *> malloc((G * block + 1) * sizeof(double))
        E2 = <double *> malloc((n * block + 1) * sizeof(double))
        for tile in prange(n_tiles, schedule="static"):
            if P == NULL or Q0 == NULL or Y == NULL or corr == NULL or E2 == NULL:
                with gil:
                    raise MemoryError("grid_sums_of_squares_lowrank: no memory for a tile")
            j0 = tile * block
            width = <int>min(block, t - j0)
            for l in range(G * width):
                corr[l] = 0.0
            if rank > 0:
                if n_pos > 0:  # P_s' E for every distinct s, rows with a varying diagonal
                    dgemm("T", "N", &m_rows, &width, &k_pos, &one, <double *>&U[0, 0], &ld_u,
                          <double *>&E[0, j0], &ld_e, &zero, P, &m_rows)
                else:
                    for l in range(m_rows * width):
                        P[l] = 0.0
                if n_pos < n:  # rows with no diagonalised signal: the same for every s
                    dgemm("T", "N", &i_rank, &width, &k_rest, &one, <double *>&C_rest[0, 0],
                          &ld_c, <double *>&E[n_pos, j0], &ld_e, &zero, Q0, &i_rank)
                    for jj in range(width):
                        for s in range(S):
                            for l in range(rank):
                                P[s * rank + l + jj * m_rows] = (
                                    P[s * rank + l + jj * m_rows] + Q0[l + jj * rank])
                for g in range(G):
                    dgemm("N", "N", &i_rank, &width, &i_rank, &one, <double *>&B[0, 0, g],
                          &i_rank, &P[s_index[g] * rank], &m_rows, &zero, Y, &i_rank)
                    for jj in range(width):
                        acc = 0.0
                        for l in range(rank):
                            acc = acc + Y[l + jj * rank] * Y[l + jj * rank]
                        corr[g + jj * G] = acc
            # the diagonal part as grid_sums_of_squares computes it for the same tile:
            # out[j0:j0+width, :]' = W (E o E), then minus the Woodbury correction
            weighted_squares_tile(&E[0, j0], i_n, width, &W_T[0, 0], i_G, E2, &out[j0, 0])
            for jj in range(width):
                for g in range(G):
                    out[j0 + jj, g] = out[j0 + jj, g] - corr[g + jj * G]
        free(P)
        free(Q0)
        free(Y)
        free(corr)
        free(E2)
