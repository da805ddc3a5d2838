"""Prior weights of the discrete h2 grid (``h2_prior_resids`` / ``h2_prior_factors``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError, InputTypeError

#: A prior over the grid: None (flat), a callable of the ``(m, G)`` grid, or ``G`` weights.
H2Prior = Callable[[np.ndarray], np.ndarray] | np.ndarray | None


def check_h2_prior(name: str, prior: object) -> None:
    """Refuse what cannot be an h2 prior (None, a callable or an array of weights)."""
    if prior is None or callable(prior):
        return
    try:
        weights = np.asarray(prior, dtype=float)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be None, a function of the grid or an array of "
                             f"weights, got {type(prior).__name__}") from None
    if weights.ndim != 1:
        raise InputError(f"{name} must be one weight per grid point (1-D), got shape "
                         f"{weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise InputError(f"{name} weights must be finite, non-negative and not all zero")


def h2_log_prior(prior: H2Prior, grid: np.ndarray, what: str) -> np.ndarray:
    """Normalised log prior weights of the grid points.

    Parameters
    ----------
    prior : callable, array or None
        ``None`` is the flat prior.  A callable receives the ``(m, G)`` grid and
        returns ``G`` non-negative weights; an array gives the weights directly.
    grid : numpy.ndarray
        ``(m, G)`` grid from :func:`make_h2_grid`.
    what : str
        Name used in error messages ("h2_prior_resids" or "h2_prior_factors").

    Returns
    -------
    numpy.ndarray
        ``(G,)`` log weights summing (after exp) to one; ``-inf`` where the weight is 0.
    """
    n_grid = grid.shape[1]
    if prior is None:
        weights = np.ones(n_grid)
    else:
        check_h2_prior(what, prior)
        try:
            value = prior(grid) if callable(prior) else prior
        except Exception as exc:
            raise InputTypeError(f"{what}: calling it with the (m, G) grid failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        try:
            weights = np.asarray(value, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            raise InputTypeError(f"{what} must return numeric weights, got "
                                 f"{type(value).__name__}") from None
    if weights.shape != (n_grid,):
        raise InputError(
            f"{what} must give one weight per grid point ({n_grid}), got {weights.shape}"
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise InputError(f"{what} weights must be finite, non-negative and not all zero")
    with np.errstate(divide="ignore"):
        return np.log(weights / weights.sum())


def sample_h2_prior(prior: H2Prior, grid: np.ndarray, size: int, rng: np.random.Generator,
                    what: str = "h2_prior") -> np.ndarray:
    """Grid indices drawn from a discrete h2 prior (for simulations).

    The sampler draws h2 on the grid with the weights of :func:`h2_log_prior`; a
    simulation from the prior must use the same discrete distribution, not a
    continuous one.

    Parameters
    ----------
    prior : callable, array or None
        The prior, as in :func:`h2_log_prior`.
    grid : numpy.ndarray
        ``(m, G)`` grid of variance proportions.
    size : int
        Number of draws (traits or factors).
    rng : numpy.random.Generator
        Source of the random numbers.
    what : str
        Name used in error messages.

    Returns
    -------
    numpy.ndarray
        ``(size,)`` grid indices (``grid[:, index]`` are the proportions).
    """
    weights = np.exp(h2_log_prior(prior, grid, what))
    return rng.choice(grid.shape[1], size=int(size), p=weights / weights.sum()).astype(np.intp)
