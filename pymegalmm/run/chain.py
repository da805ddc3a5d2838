"""A Markov chain as an object of its own: state, generator, work arrays and recorder.

A :class:`Chain` is the unit that runs: :class:`~pymegalmm.MegaLMM` drives its
chains through it, and it is what runs in another process, is checkpointed and
resumed.  It shares the model's read-only :class:`~pymegalmm.core.data.ModelData`
and owns everything it writes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.data import ModelData, Workspace
from ..core.initialize import initial_state
from ..core.iteration import gibbs_iteration
from ..core.reorder import reorder_factors
from ..core.state import ChainState
from ..errors import SamplerError
from .recorder import Recorder


class Chain:
    """One chain of the Gibbs sampler.

    Parameters
    ----------
    data : the model's precomputes and parts (shared, read-only).
    rng : the chain's generator (the state is drawn from it).
    recorder : the chain's recording policy and in-memory draws.
    state : a state to continue from instead of a new one.
    """

    def __init__(self, data: ModelData, rng: np.random.Generator, recorder: Recorder,
                 state: ChainState | None = None) -> None:
        self.data = data
        self.state = initial_state(data, rng) if state is None else state
        self.recorder = recorder
        self.work = Workspace()
        #: True when an iteration was cut in its middle (its arrays may disagree).
        self.torn = False

    @property
    def nrun(self) -> int:
        """Iterations run so far."""
        return self.state.nrun

    def sample(self, n_iter: int, callback: Callable[[], None] | None = None,
               stop: Callable[[], bool] | None = None) -> int:
        """Run up to ``n_iter`` iterations, recording as the recorder says.

        ``callback`` is called after each iteration; ``stop`` is asked after each one
        and ends the run early when it returns True.  An exception inside an
        iteration marks the chain as torn (see :attr:`torn`).  Returns the
        iterations run.
        """
        if self.torn:
            raise RuntimeError(
                "this chain was interrupted in the middle of an iteration, so its arrays may "
                "disagree; resume the run from its last saved chunk (MegaLMM.resume) or "
                "create the model again")
        s, d, rec = self.state, self.data, self.recorder
        done = 0
        for _ in range(int(n_iter)):
            try:
                gibbs_iteration(s, d, self.work)
            except BaseException:
                self.torn = True
                raise
            done += 1
            if rec.is_recorded(s.nrun):
                rec.record(s, d)
            if callback is not None:
                callback()
            if stop is not None and stop():
                break
        return done

    def reorder_factors(self, drop_cor_threshold: float) -> np.ndarray:
        """Drop redundant factors and sort the rest (see :func:`pymegalmm.core.reorder`)."""
        return reorder_factors(self.state, self.data, drop_cor_threshold)

    def check_finite(self, name: str) -> None:
        """Raise ``SamplerError`` naming the first parameter with a non-finite value."""
        s = self.state
        for key in s.array_names():
            value = getattr(s, key)
            blocks = value if isinstance(value, list) else [value]
            if any(b.dtype.kind == "f" and not np.all(np.isfinite(b)) for b in blocks):
                raise SamplerError(
                    f"{name}: {key} has non-finite values after iteration {s.nrun}"
                )
