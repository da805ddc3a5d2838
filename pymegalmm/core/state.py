"""The state of one Markov chain: named arrays plus its random-number generator.

Arrays that hold one column per trait (or factor) are Fortran-ordered so that a
column is contiguous for the kernels.  Quantities with a ``Qt`` prefix live in
the rotated row space of the random-effect back-end
(:mod:`pymegalmm.core.random_effects`; the identity rotation with several random
effects).  Random-effect coefficients ``U_R`` / ``U_F`` are in the back-end's
basis (see its ``to_levels``).  The loadings prior's own arrays live in
``lambda_prior`` (names and dims declared by the prior) and are also reachable
as attributes (``state.delta`` for ARD).  Saving and loading keep the
generator's state, so a resumed chain continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: Prefix of the loadings prior's arrays in a saved state.
_PRIOR_PREFIX = "lambda_prior."
#: Prefix of the extra regressions' arrays (``B2_F``, ``B2_R``, their prior) in a saved state.
_EXTRA_PREFIX = "extra."
#: Prefix of the observation model's own arrays (e.g. ``dispersion``) in a saved state.
_OBSERVATION_PREFIX = "observation."
_NOT_ARRAYS = ("nrun", "rng", "lambda_prior", "extra", "observation")


@dataclass
class ChainState:
    """Current values of all parameters of one chain (internal, scaled units).

    Attributes
    ----------
    Eta : (n, t) latent traits: scaled Y with missing cells imputed.
    QtEta : list of rotated blocks of ``Eta``, one per trait group (``n_s x t_s``).
    B1 : (b1, t) fixed effects.
    Lambda : (k, t) factor loadings.
    tot_Eta_prec : (t,) total precision of each trait's residual model.
    resid_h2_index : (t,) grid index of each trait's variance proportions.
    U_R : (r, t) trait-specific random effects (back-end basis).
    QtF : (n, k) rotated factor scores.
    tot_F_prec : (k,) total precision of each factor (working parameter).
    F_h2_index : (k,) grid index of each factor's variance proportions.
    U_F : (r, k) factor random effects (back-end basis).
    nrun : int, iterations done.
    rng : numpy.random.Generator of this chain.
    lambda_prior : dict of str -> array, the loadings prior's state.
    extra : dict of str -> array, the extra regressions' ``B2_F``, ``B2_R`` and their
        prior's scales (:mod:`pymegalmm.core.regressions`); empty without them.
    cis_effects : (t, c_max) each trait's own regression coefficients (``cis_genotypes``;
        zero beyond the trait's ``c_j``); ``(0, 0)`` without.
    observation : dict of str -> array, the observation model's own parameters (e.g.
        the negative-binomial dispersion per trait); empty for Gaussian data.
    F : (n, k) factor scores in the original rows, kept with several trait groups,
        where step 6 draws them in those rows (``QtF = rotate(F)``), so the next
        iteration and the recorder need not unrotate ``QtF``; ``(0, 0)`` with one group
        (read both through :func:`pymegalmm.core.factor_scores.factor_scores_in_rows`).
    """

    Eta: np.ndarray
    QtEta: list[np.ndarray]
    B1: np.ndarray
    Lambda: np.ndarray
    tot_Eta_prec: np.ndarray
    resid_h2_index: np.ndarray
    U_R: np.ndarray
    QtF: np.ndarray
    tot_F_prec: np.ndarray
    F_h2_index: np.ndarray
    U_F: np.ndarray
    nrun: int
    rng: np.random.Generator
    lambda_prior: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    cis_effects: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    observation: dict[str, np.ndarray] = field(default_factory=dict)
    F: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))

    def __getattr__(self, name: str) -> np.ndarray:
        # only called when normal lookup fails: the loadings prior's arrays by name
        prior = self.__dict__.get("lambda_prior", {})
        if name in prior:
            return prior[name]
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        observation = self.__dict__.get("observation", {})
        if name in observation:
            return observation[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def array_names(self) -> list[str]:
        """Names of the array fields, then of the loadings prior's arrays."""
        own = [f.name for f in fields(self) if f.name not in _NOT_ARRAYS]
        return own + list(self.lambda_prior) + list(self.extra) + list(self.observation)

    def save(self, path: str | Path | BinaryIO) -> None:
        """Write the state, including the generator's state, to an ``.npz`` file (or an
        open binary file)."""
        own = [f.name for f in fields(self) if f.name not in (*_NOT_ARRAYS, "QtEta")]
        arrays = {name: getattr(self, name) for name in own}
        arrays.update({f"QtEta_{i}": block for i, block in enumerate(self.QtEta)})
        arrays.update({_PRIOR_PREFIX + k: v for k, v in self.lambda_prior.items()})
        arrays.update({_EXTRA_PREFIX + k: v for k, v in self.extra.items()})
        arrays.update({_OBSERVATION_PREFIX + k: v for k, v in self.observation.items()})
        meta = {"nrun": self.nrun, "n_groups": len(self.QtEta),
                "rng": self.rng.bit_generator.state,
                "bit_generator": type(self.rng.bit_generator).__name__}
        if hasattr(path, "write"):
            np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
            return
        with open(path, "wb") as fh:  # a file object: numpy must not append ".npz"
            np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> ChainState:
        """Read a state written by :meth:`save`; the generator continues exactly."""
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["__meta__"]))
            arrays = {name: np.asfortranarray(f[name]) for name in f.files if name != "__meta__"}
        arrays["QtEta"] = [arrays.pop(f"QtEta_{i}") for i in range(int(meta["n_groups"]))]
        prior = {name[len(_PRIOR_PREFIX):]: arrays.pop(name) for name in list(arrays)
                 if name.startswith(_PRIOR_PREFIX)}
        extra = {name[len(_EXTRA_PREFIX):]: arrays.pop(name) for name in list(arrays)
                 if name.startswith(_EXTRA_PREFIX)}
        observation = {name[len(_OBSERVATION_PREFIX):]: arrays.pop(name) for name in list(arrays)
                       if name.startswith(_OBSERVATION_PREFIX)}
        bit_gen = getattr(np.random, meta["bit_generator"])()
        bit_gen.state = meta["rng"]
        return cls(**arrays, nrun=int(meta["nrun"]), rng=np.random.Generator(bit_gen),
                   lambda_prior=prior, extra=extra, observation=observation)
