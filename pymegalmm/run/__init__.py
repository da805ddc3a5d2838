"""The run layer: chains, their recording policy, in-memory draws and the on-disk store.

==============  ====================================================================
module          what it holds
==============  ====================================================================
``chain``       :class:`Chain`: state + generator + work arrays + recorder
``recorder``    :class:`Recorder`: burn, thin, what is recorded
``transform``   :class:`UserScale`: state -> parameters on the user's scale
``draws``       :class:`DrawStore`: one chain's draws in memory
``store``       :class:`PosteriorStore`: the run's draws on disk (zarr)
==============  ====================================================================
"""

from .chain import Chain
from .draws import DrawStore
from .recorder import Recorder
from .store import PosteriorStore
from .transform import UserScale

__all__ = ["Chain", "DrawStore", "PosteriorStore", "Recorder", "UserScale"]
