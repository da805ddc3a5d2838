"""Horseshoe loadings prior with an ordering sequence: R MegaLMM's nominal default.

METHOD.md section 3, step 7, "Horseshoe alternative".  The prior of R MegaLMM 0.9.5's
``sample_Lambda_prec_horseshoe`` (Piironen & Vehtari 2017's global scale from a
prior guess of the proportion of non-zero loadings, and a multiplicative sequence
that shrinks later factors more), written from the model's full conditionals; the
defects that make R's version fail (METHOD.md Q1) are fixed, see
:class:`HorseshoePrior`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..errors import InputError
from ..validate import check_float, check_int
from .base import LambdaPrior, PriorState
from .variance import GammaPrior, as_prior

#: Updates run after the factors are reordered (R's ``reorder_factors``).
REFRESH_UPDATES = 10


@dataclass(frozen=True)
class HorseshoePrior(LambdaPrior):
    """Horseshoe shrinkage prior on the factor loadings, ordered by a sequence of factor scales.

    .. warning:: The Gibbs sampler mixes slowly under this prior when a loading's
       posterior is split between the prior's pole at zero and a value the data support
       (typically a factor with one large loading, whose variance trades with that
       trait's residual variance): a chain can keep that loading collapsed near zero
       for hundreds to thousands of iterations.  The conditionals are exact, but
       ``Lambda' Lambda``, ``G`` and ``R`` then need long chains and heavy thinning
       (``docs/validation.md``: draws 50 iterations apart gave U-shaped ranks in
       simulation-based calibration); check their effective sample size
       (:meth:`~pymegalmm.MegaLMM.diagnostics`).

    ``lambda_kj ~ N(0, tau2 * phi2_kj * c_k / tot_Eta_prec_j)`` with

    - local scales ``sqrt(phi2_kj) ~ C+(0, 1)`` (half-Cauchy), drawn through
      ``phi2 | nu ~ IG(1/2, 1/nu)``, ``nu ~ IG(1/2, 1)``;
    - a global scale ``sqrt(tau2) ~ C+(0, tau_0)``, drawn through
      ``tau2 | xi ~ IG(1/2, 1/xi)``, ``xi ~ IG(1/2, 1/tau_0^2)``, with
      ``tau_0 = prop_0 / (1 - prop_0) / sqrt(n)`` (``n`` rows of data), so that
      about a share ``prop_0`` of the loadings escape the shrinkage a priori;
    - a per-factor variance multiplier ``c_k = cumprod(delta)_k`` with ``delta_1 = 1``
      and ``delta_l ~ IG(shape, scale = rate)`` for ``l >= 2``, i.e. the precision
      ratio ``1 / delta_l ~ Gamma(delta.shape, rate = delta.rate)``: with the default
      Gamma(3, 1), ``E[1 / delta_l] = 3``, each factor's loadings are a priori about
      3 times more concentrated than the previous factor's, which orders the factors.

    ``IG(a, b)`` is the inverse gamma with shape ``a`` and scale ``b``
    (``1/x ~ Gamma(a, rate b)``).  Each iteration draws ``nu``, then ``phi2``, then
    runs ``delta_iterations_factor`` sweeps of ``tau2``, ``xi``, ``delta_2..delta_k``
    (METHOD.md section 3, step 7), then reports ``Lambda_m_eff``.

    State: ``Lambda_phi2`` and ``Lambda_nu`` (factor, trait), ``Lambda_tau2`` and
    ``Lambda_xi`` (scalars), ``delta`` and ``Lambda_m_eff`` (factor).  Recorded:
    ``delta`` and ``Lambda_m_eff``, the effective number of non-zero loadings of
    each factor, ``sum_j (1 - 1 / (1 + n / P_kj))`` with the relative prior
    precision ``P_kj = 1 / (tau2 phi2_kj c_k)`` (Piironen & Vehtari 2017), by which
    :func:`~pymegalmm.core.reorder.reorder_factors` sorts the factors.

    Parameters
    ----------
    prop_0 : float
        Prior guess of the proportion of non-zero loadings, in ``(0, 1)``.  Default 0.1.
    delta : GammaPrior or dict
        Prior of the precision ratios ``1 / delta_l`` (``l >= 2``) as
        ``GammaPrior(shape, rate)``, i.e. ``delta_l ~ IG(shape, scale = rate)``;
        a dict ``{"shape": ..., "rate": ...}`` (R's ``list(shape = , rate = )``) is
        accepted.  Default shape 3, rate 1.
    delta_iterations_factor : int
        Sweeps of the ``tau2, xi, delta`` update per iteration (>= 1).  Default 100.

    Notes
    -----
    Differences from R MegaLMM 0.9.5 (METHOD.md Q1, Q6):

    - R's default ``MegaLMM_priors()`` supplies ``delta_l = list(shape, rate)`` but the
      sampler reads ``delta$shape`` and ``delta$scale``, so it fails at
      initialisation.  Here the argument is ``delta``, a :class:`GammaPrior`.
    - R draws the starting ``delta_l`` with ``1/delta_l ~ Gamma(shape, rate = 1/scale)``
      but updates it as ``delta_l ~ IG(shape, scale)``: two different priors unless
      the value is 1.  Here one prior is used everywhere: the update's,
      ``1/delta_l ~ Gamma(delta.shape, rate = delta.rate)``.  With R's default
      (shape 3, rate or scale 1) the two conventions agree.
    - After factors are reordered, the local scales follow their factors; R leaves
      them in place.  ``delta`` stays with the positions, as in R.
    - ``n`` is the number of rows of the data the model is fitted to (R: rows of
      ``data``, including rows without any observation, which pymegalmm drops).

    R's documentation also names a ``sample_Lambda_prec_reg_horseshoe`` (the
    regularised horseshoe with a slab); R 0.9.5 has no such function and neither
    has this class: this is R's plain horseshoe.

    Examples
    --------
    >>> from pymegalmm import Priors
    >>> from pymegalmm.priors import GammaPrior, HorseshoePrior
    >>> prior = HorseshoePrior(prop_0=0.2, delta=GammaPrior(shape=3, rate=1))
    >>> Priors(Lambda_prior=prior).Lambda_prior
    HorseshoePrior(prop_0=0.2, delta=GammaPrior(shape=3.0, rate=1.0), delta_iterations_factor=100)
    """

    prop_0: float = 0.1
    delta: GammaPrior = GammaPrior(3.0, 1.0)
    delta_iterations_factor: int = 100
    #: Rows of the data (set by :meth:`for_data` when the model is built; not an argument).
    n_rows: int | None = field(default=None, init=False, repr=False)

    state_dims: ClassVar[dict[str, tuple[str, ...]]] = {
        "Lambda_phi2": ("factor", "trait"), "Lambda_nu": ("factor", "trait"),
        "Lambda_tau2": (), "Lambda_xi": (), "delta": ("factor",), "Lambda_m_eff": ("factor",),
    }
    recorded: ClassVar[dict[str, str]] = {
        "delta": "horseshoe ratio of each factor's loading variance to the previous factor's "
                 "(c = cumprod(delta), delta_1 = 1)",
        "Lambda_m_eff": "horseshoe effective number of non-zero loadings of each factor, "
                        "sum_j (1 - 1 / (1 + n / P_kj)) with P the relative prior precision",
    }

    def __post_init__(self) -> None:
        check = {
            "prop_0": check_float("prop_0", self.prop_0, low=0.0, high=1.0, low_open=True,
                                  high_open=True),
            "delta": as_prior("delta", self.delta, GammaPrior),
            "delta_iterations_factor": check_int("delta_iterations_factor",
                                                 self.delta_iterations_factor, minimum=1),
        }
        for name, value in check.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ data size

    def for_data(self, n_rows: int) -> HorseshoePrior:
        """A copy that knows the number of rows ``n`` (for ``tau_0`` and ``Lambda_m_eff``).

        Parameters
        ----------
        n_rows : int
            Number of rows (observations) of the data, >= 1.

        Returns
        -------
        HorseshoePrior
            The same prior, bound to ``n_rows``.
        """
        n = check_int("n_rows", n_rows, minimum=1)
        if n == self.n_rows:
            return self
        bound = copy.copy(self)
        object.__setattr__(bound, "n_rows", n)
        return bound

    def _n(self) -> int:
        if self.n_rows is None:
            raise InputError("HorseshoePrior needs the number of rows of the data: MegaLMM "
                             "sets it; to use the prior on its own, call "
                             "prior.for_data(n_rows) first")
        return self.n_rows

    @property
    def tau_0(self) -> float:
        """Scale of the global half-Cauchy, ``prop_0 / (1 - prop_0) / sqrt(n)``."""
        return self.prop_0 / (1.0 - self.prop_0) / math.sqrt(self._n())

    # ------------------------------------------------------------------ protocol

    def initialize(self, Lambda: np.ndarray, tot_prec: np.ndarray,
                   rng: np.random.Generator) -> PriorState:
        """``delta_1 = 1``, ``delta_l`` from its prior, other scales 1, then one update (as R)."""
        self._n()
        k, t = Lambda.shape
        delta = np.ones(k)
        delta[1:] = self.delta.rate / rng.standard_gamma(self.delta.shape, size=k - 1)
        state = {
            "Lambda_phi2": np.ones((k, t), order="F"), "Lambda_nu": np.ones((k, t), order="F"),
            "Lambda_tau2": np.array(1.0), "Lambda_xi": np.array(1.0), "delta": delta,
            "Lambda_m_eff": np.ones(k),
        }
        return self.update(Lambda, tot_prec, state, rng)

    def precision(self, state: PriorState) -> np.ndarray:
        """``P_kj = 1 / (tau2 phi2_kj c_k)``, Fortran-ordered."""
        tau2 = float(np.reshape(state["Lambda_tau2"], ()))
        c = np.cumprod(state["delta"])
        return np.asfortranarray(1.0 / (tau2 * state["Lambda_phi2"] * c[:, None]))

    def update(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
               rng: np.random.Generator) -> PriorState:
        """One Gibbs update of the prior's state given the loadings (step 7).

        With ``b_kj = tot_prec_j lambda_kj^2 / 2`` and the previous ``tau2``, ``c``:

        1. ``nu_kj ~ IG(1, 1 + 1/phi2_kj)``;
        2. ``phi2_kj ~ IG(1, 1/nu_kj + b_kj / (c_k tau2))``;
        3. with ``s_k = sum_j b_kj / phi2_kj``, ``delta_iterations_factor`` sweeps of
           ``tau2 ~ IG((t k + 1)/2, 1/xi + sum_k s_k / c_k)``,
           ``xi ~ IG(1, 1/tau_0^2 + 1/tau2)`` and, for ``h = 2..k`` in turn,
           ``delta_h ~ IG(shape + t (k - h + 1)/2, rate + delta_h sum_{l>=h} s_l / (c_l tau2))``
           (``c`` kept current);
        4. ``Lambda_m_eff_k = sum_j (1 - 1 / (1 + n tau2 phi2_kj c_k))``.

        Random numbers, in this order: ``(k, t)`` standard exponentials for ``nu``,
        ``(k, t)`` for ``phi2``, then a ``(delta_iterations_factor, k + 1)`` array of
        standard gammas (columns: ``tau2``, ``xi``, ``delta_2..delta_k``), all from ``rng``.
        """
        n, t0 = self._n(), self.tau_0
        k, t = Lambda.shape
        b = 0.5 * np.square(Lambda) * tot_prec  # tau_j lambda_kj^2 / 2
        delta = np.array(state["delta"], dtype=float, copy=True)
        tau2 = float(np.reshape(state["Lambda_tau2"], ()))
        xi = float(np.reshape(state["Lambda_xi"], ()))
        c = np.cumprod(delta)
        # local scales (IG(1, rate) = rate / Exp(1))
        nu = (1.0 + 1.0 / state["Lambda_phi2"]) / rng.standard_exponential((k, t))
        phi2 = (1.0 / nu + b / (c[:, None] * tau2)) / rng.standard_exponential((k, t))
        s = (b / phi2).sum(axis=1)
        # global scale and the delta sequence
        shapes = np.concatenate([[0.5 * (t * k + 1), 1.0],
                                 self.delta.shape + 0.5 * t * (k - np.arange(1, k))])
        gammas = rng.standard_gamma(shapes, size=(self.delta_iterations_factor, k + 1))
        tau2, xi = _sweep(delta, s.tolist(), tau2, xi, t0, self.delta.rate, gammas)
        c = np.cumprod(delta)
        n_var = n * tau2 * phi2 * c[:, None]  # n / P_kj
        m_eff = (1.0 - 1.0 / (1.0 + n_var)).sum(axis=1)
        return {"Lambda_phi2": np.asfortranarray(phi2), "Lambda_nu": np.asfortranarray(nu),
                "Lambda_tau2": np.array(tau2), "Lambda_xi": np.array(xi), "delta": delta,
                "Lambda_m_eff": m_eff}

    def sample_prior(self, n_factors: int, tot_prec: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, PriorState]:
        """Draw the scales and the loadings from the prior that :meth:`update` targets.

        ``xi ~ IG(1/2, 1/tau_0^2)``, ``tau2 ~ IG(1/2, 1/xi)``; ``nu_kj ~ IG(1/2, 1)``,
        ``phi2_kj ~ IG(1/2, 1/nu_kj)``; ``delta_1 = 1``, ``delta_l ~ IG(shape, rate)``;
        ``lambda_kj ~ N(0, tau2 phi2_kj c_k / tot_prec_j)``.  Needs the number of rows
        (:meth:`for_data`).

        Parameters
        ----------
        n_factors : int
            Number of factors ``k``.
        tot_prec : numpy.ndarray
            ``(t,)`` total precision of each trait's residual model.
        rng : numpy.random.Generator
            Source of every random number.

        Returns
        -------
        Lambda : numpy.ndarray
            ``(k, t)`` loadings (Fortran-ordered).
        state : PriorState
            The state arrays, as :meth:`initialize` returns them.
        """
        k = check_int("n_factors", n_factors, minimum=1)
        n, t0 = self._n(), self.tau_0
        tot_prec = np.asarray(tot_prec, dtype=float)
        t = tot_prec.shape[0]
        xi = (1.0 / t0**2) / rng.standard_gamma(0.5)
        tau2 = (1.0 / xi) / rng.standard_gamma(0.5)
        nu = 1.0 / rng.standard_gamma(0.5, size=(k, t))
        phi2 = (1.0 / nu) / rng.standard_gamma(0.5, size=(k, t))
        delta = np.ones(k)
        delta[1:] = self.delta.rate / rng.standard_gamma(self.delta.shape, size=k - 1)
        var = tau2 * phi2 * np.cumprod(delta)[:, None]
        Lambda = np.asfortranarray(rng.standard_normal((k, t)) * np.sqrt(var / tot_prec))
        m_eff = (1.0 - 1.0 / (1.0 + n * var)).sum(axis=1)
        return Lambda, {"Lambda_phi2": np.asfortranarray(phi2), "Lambda_nu": np.asfortranarray(nu),
                        "Lambda_tau2": np.array(tau2), "Lambda_xi": np.array(xi),
                        "delta": delta, "Lambda_m_eff": m_eff}

    def permute(self, state: PriorState, order: np.ndarray) -> PriorState:
        """Local scales and ``Lambda_m_eff`` follow their factors; ``delta`` stays with positions.

        ``c_k = prod_{l<=k} delta_l`` is the scale of the k-th position in the ordering
        (what reordering is for), and ``tau2``, ``xi`` are global.
        """
        out = {name: np.array(value, copy=True) for name, value in state.items()}
        for name in ("Lambda_phi2", "Lambda_nu"):
            out[name] = np.asfortranarray(state[name][order])
        out["Lambda_m_eff"] = state["Lambda_m_eff"][order].copy()
        return out

    def refresh(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
                rng: np.random.Generator) -> PriorState:
        """R's ``reorder_factors``: 10 updates (``delta_1`` is always 1 here)."""
        for _ in range(REFRESH_UPDATES):
            state = self.update(Lambda, tot_prec, state, rng)
        return state


def _sweep(delta: np.ndarray, s: list[float], tau2: float, xi: float, tau_0: float,
           delta_rate: float, gammas: np.ndarray) -> tuple[float, float]:
    """Sweeps of ``tau2``, ``xi`` and ``delta_2..delta_k`` (``delta`` updated in place).

    ``gammas[i]`` holds sweep ``i``'s standard gammas with the conditionals' shapes
    (``tau2``, ``xi``, ``delta_2..delta_k``); an ``IG(a, b)`` draw is ``b / gamma``.
    With ``delta`` about to be updated in increasing order, the sum
    ``delta_h sum_{l>=h} s_l / c_l`` only involves the not-yet-updated
    ``delta_{h+1..k}``: it is ``tail_h / c_{h-1}`` with
    ``tail_h = s_h + tail_{h+1} / delta_{h+1}`` (computed backwards from the old
    values) and ``c_{h-1}`` the running product of the new ones, so a sweep is ``O(k)``.
    """
    k = len(s)
    d = delta.tolist()
    inv_t0_sq = 1.0 / (tau_0 * tau_0)
    tail = [0.0] * k
    for row in gammas.tolist():
        tail[k - 1] = s[k - 1]
        for h in range(k - 2, -1, -1):
            tail[h] = s[h] + tail[h + 1] / d[h + 1]
        # tail[0] = sum_k s_k / c_k (delta_1 = 1)
        tau2 = (1.0 / xi + tail[0] / d[0]) / row[0]
        xi = (inv_t0_sq + 1.0 / tau2) / row[1]
        prefix = d[0]  # c_{h-1} with the new values
        for h in range(1, k):
            d[h] = (delta_rate + tail[h] / (prefix * tau2)) / row[h + 1]
            prefix *= d[h]
    delta[:] = d
    return tau2, xi
