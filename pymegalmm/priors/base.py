"""The loadings-prior protocol: what a prior on ``Lambda`` owns and does.

A loadings prior is one class (a frozen dataclass: its parameters, with a
readable repr) that the sampler drives through the methods below and never
inspects otherwise; the iteration (:mod:`pymegalmm.core.iteration`) reads the
same whatever the prior.  Its *state* (the arrays it updates every iteration,
e.g. ARD's local and global precisions) is a ``dict`` of arrays kept in the
chain's state next to the model's parameters; ``state_dims`` names their dims
(``"factor"``, ``"trait"``), so that the state can be saved, permuted when the
factors are reordered, and recorded in the labelled posterior.

The loadings step (step 1 of the iteration) draws each trait's column of
``Lambda`` from its Gaussian full conditional given the prior's conditional
prior ``lambda_j ~ N(mean_j, (tot_Eta_prec_j * precision_j)^-1)``, jointly with
the fixed effects and the trait's total precision.  A prior whose conditional
prior is not Gaussian given its state (BayesC's spike and slab) supplies its own
draw of that step through :meth:`~LambdaPrior.sample_loadings`, which receives
the step's whitened sufficient statistics (:class:`LoadingsRegression`); the
default returns None, meaning "use the standard Gaussian step".

Writing a prior
---------------
Subclass :class:`LambdaPrior`, declare ``state_dims`` and implement
:meth:`~LambdaPrior.initialize`, :meth:`~LambdaPrior.precision` and
:meth:`~LambdaPrior.update`; override :meth:`~LambdaPrior.mean` for a non-zero
prior mean, :meth:`~LambdaPrior.refresh` to re-tune the state after factors
are reordered, :meth:`~LambdaPrior.for_data` when the prior needs the number
of rows of the data and :meth:`~LambdaPrior.for_traits` when it needs the names
of the traits (both called once when the model's data are built), and
:meth:`~LambdaPrior.sample_loadings` when the loadings need a draw of their own.
Every random number must come from the ``rng`` passed in, so that chains stay
reproducible.  ``docs/architecture.md`` has a complete example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: State of a loadings prior: named arrays (Fortran-ordered when 2-D).
PriorState = dict[str, np.ndarray]


@dataclass(frozen=True)
class LoadingsRegression:
    """Step 1 for ``c`` traits given their h2, as whitened sufficient statistics.

    Per trait ``j`` (whitened by ``V(h2_j)^-1/2``, the random effects integrated out)::

        y_j = X [lambda_j; b_j] + e_j,   e_j ~ N(0, I / tau_j),   X = [F, X1]

    with the ``n_pen`` penalised columns (the factor scores) first and the flat
    ones (``X1``, flat prior on ``b_j``) after them; ``tau_j ~ Gamma(tau_shape,
    rate tau_rate)``.  With a prior mean, ``y`` is already ``y - F mean`` and
    ``coef`` the loadings minus the mean (the step adds it back).

    Attributes
    ----------
    gram : numpy.ndarray
        ``(G', p, p)`` Gram matrices ``X' W X``, C-ordered; trait ``j`` uses
        ``gram[gram_index[j]]``.
    gram_index : numpy.ndarray
        ``(c,)`` which Gram matrix each trait uses.
    XtWy : numpy.ndarray
        ``(p, c)`` cross-products ``X' W y_j``.
    yWy : numpy.ndarray
        ``(c,)`` ``y_j' W y_j``.
    n_pen : int
        Number of penalised columns (``k``, the loadings), the first of ``X``.
    n_rows : int
        Number of rows ``n`` of the regressions (the Gamma shape's ``n / 2``).
    coef : numpy.ndarray
        ``(p, c)`` current coefficients ``[Lambda; B1]`` of the traits.
    tau : numpy.ndarray
        ``(c,)`` current total precisions.
    tau_shape, tau_rate : float
        Prior of the total precisions.
    drop_flat : numpy.ndarray or None
        ``(c, p - n_pen)`` uint8, non-zero where a flat coefficient is not identified
        for that trait: it must be left out of the model (coefficient 0).
    """

    gram: np.ndarray
    gram_index: np.ndarray
    XtWy: np.ndarray
    yWy: np.ndarray
    n_pen: int
    n_rows: int
    coef: np.ndarray
    tau: np.ndarray
    tau_shape: float
    tau_rate: float
    drop_flat: np.ndarray | None = None


class LambdaPrior(ABC):
    """Base class of the priors on the factor loadings ``Lambda`` (``k x t``).

    Attributes
    ----------
    state_dims : mapping of str -> tuple of str
        Name and dims of every state array; dims among ``"factor"`` and
        ``"trait"`` (in that order of axes when both).
    recorded : mapping of str -> str
        State arrays that can be recorded per draw (scale-free quantities), with
        their descriptions for the posterior.
    """

    state_dims: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    recorded: ClassVar[Mapping[str, str]] = {}

    @abstractmethod
    def initialize(self, Lambda: np.ndarray, tot_prec: np.ndarray,
                   rng: np.random.Generator) -> PriorState:
        """Starting state, given the starting loadings and trait precisions.

        Parameters
        ----------
        Lambda : (k, t) starting loadings.
        tot_prec : (t,) starting total precision of each trait's residual model.
        rng : the chain's generator.
        """

    @abstractmethod
    def precision(self, state: PriorState) -> np.ndarray:
        """Prior precision of each loading relative to the trait's ``tot_Eta_prec``.

        An array that broadcasts to ``(k, t)`` (``(k, 1)`` for one precision per factor).
        """

    def mean(self, state: PriorState) -> np.ndarray | None:
        """Prior mean of the loadings (broadcastable to ``(k, t)``), or None for zero (default).

        A non-zero mean is handled by the loadings step: it regresses
        ``Eta - F mean`` on ``F`` with a zero-mean prior and adds ``mean`` back.
        """
        return None

    @abstractmethod
    def update(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
               rng: np.random.Generator) -> PriorState:
        """Draw the prior's state given the current loadings (step 7); return the new state."""

    def sample_prior(self, n_factors: int, tot_prec: np.ndarray, rng: np.random.Generator
                     ) -> tuple[np.ndarray, PriorState]:
        """Draw the prior's state from its hyper-priors, then the loadings given it.

        The simulation counterpart of :meth:`update`, used by
        :func:`pymegalmm.validation.simulate_from_prior` to check calibration: it must
        draw from exactly the prior :meth:`precision` and :meth:`mean` describe
        (``lambda_j ~ N(mean_j, (tot_prec_j * precision_j)^-1)``), so that
        simulation-based calibration tests the sampler against that prior.

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
            ``(k, t)`` loadings.
        state : PriorState
            The prior's state arrays (as :meth:`initialize` returns them).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement sample_prior(n_factors, tot_prec, rng), "
            "needed to simulate from the prior (pymegalmm.validation); add it next to update()"
        )

    def sample_loadings(self, regression: LoadingsRegression, state: PriorState,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
        """Draw step 1's ``[Lambda; B1]`` and ``tau`` of ``c`` traits, or None (default).

        None means "use the standard step" (the Gaussian conditional prior given by
        :meth:`precision` and :meth:`mean`, drawn jointly with the fixed effects and
        ``tau``); the sampler then draws exactly as if this method did not exist.  A
        prior that overrides it returns a valid Gibbs update of the coefficients and
        ``tau`` given ``h2``, drawing every random number from ``rng`` in a fixed
        order; h2 and the random effects are then drawn as usual.

        Parameters
        ----------
        regression : LoadingsRegression
            The step's sufficient statistics and current values.
        state : PriorState
            The prior's current state.
        rng : numpy.random.Generator
            The chain's generator.

        Returns
        -------
        tuple of numpy.ndarray or None
            ``coef`` ``(p, c)`` (loadings first, then the flat coefficients,
            Fortran-ordered) and ``tau`` ``(c,)``; or None.
        """
        return None

    def spike_and_slab(self, state: PriorState) -> tuple[np.ndarray, np.ndarray] | None:
        """``(slab variances, inclusion probabilities)`` per factor, or None (default).

        A prior whose loadings are spike and slab (drawn by :meth:`sample_loadings` with
        :func:`pymegalmm.priors.bayesc.sample_spike_slab`) returns them, so that the
        sampler can sweep its loadings together with other spike-and-slab or Gaussian
        penalised coefficients of the same regression (the extra regressions' ``B2_R``).
        """
        return None

    @property
    def has_loadings_sampler(self) -> bool:
        """Whether this prior overrides :meth:`sample_loadings` (the sampler asks once)."""
        return type(self).sample_loadings is not LambdaPrior.sample_loadings

    def for_data(self, n_rows: int) -> LambdaPrior:
        """This prior as used on data of ``n_rows`` rows (default: itself, unchanged).

        Called once when the model's data are built (``ModelData.priors`` holds the
        result).  A prior whose scale depends on the number of observations (the
        horseshoe's global scale ``tau_0``) returns a copy that knows it; the
        protocol's other methods then need no data size.

        Parameters
        ----------
        n_rows : int
            Number of rows (observations) of the data.

        Returns
        -------
        LambdaPrior
            ``self`` by default.
        """
        return self

    def for_traits(self, traits: Sequence[Hashable]) -> LambdaPrior:
        """This prior as used on data with these traits, in this order (default: itself).

        Called once when the model's data are built, after :meth:`for_data`.  A prior
        with per-trait inputs given by name (ARD's ``trait_covariates``) returns a copy
        holding them in the model's trait order, or raises if a trait is missing.

        Parameters
        ----------
        traits : sequence
            Names of the traits (columns of ``Y``), in the model's order.

        Returns
        -------
        LambdaPrior
            ``self`` by default.
        """
        return self

    def coordinates(self) -> dict[str, list]:
        """Labels of the prior's own dims (other than ``factor`` and ``trait``) of its
        recorded state, e.g. ``{"covariate": [...]}`` (default: none)."""
        return {}

    def records_with(self) -> tuple[str, ...]:
        """Core parameters recorded by default with this prior's recorded state, because
        reading it needs them (default: none)."""
        return ()

    def permute(self, state: PriorState, order: np.ndarray) -> PriorState:
        """The state with factors in the new ``order`` (new position -> old factor).

        The default permutes every array along its ``"factor"`` axis.
        """
        out = {}
        for name, value in state.items():
            dims = self.state_dims[name]
            out[name] = (np.asfortranarray(np.take(value, order, axis=dims.index("factor")))
                         if "factor" in dims else value.copy())
        return out

    def refresh(self, Lambda: np.ndarray, tot_prec: np.ndarray, state: PriorState,
                rng: np.random.Generator) -> PriorState:
        """Re-tune the state after factors were dropped and reordered (default: one update)."""
        return self.update(Lambda, tot_prec, state, rng)

    def record(self, state: PriorState) -> dict[str, np.ndarray]:
        """Copies of the recordable state arrays (see ``recorded``)."""
        return {name: state[name].copy() for name in self.recorded}
