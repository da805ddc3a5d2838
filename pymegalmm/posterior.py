"""Former home of the posterior's schema and derived quantities; old imports keep working.

See :mod:`pymegalmm.results` (``schema``, ``dataset``, ``derived``, ``functions``)
and :mod:`pymegalmm.run.draws`.
"""

from .results.dataset import draws_to_dataset
from .results.derived import add_derived
from .results.functions import evaluate_function
from .results.schema import (
    DEFAULT_RECORD,
    DERIVED_NEEDS,
    DESCRIPTIONS,
    PARAM_DIMS,
    Coordinates,
    param_dims,
)
from .run.draws import DrawStore

__all__ = ["DEFAULT_RECORD", "DERIVED_NEEDS", "DESCRIPTIONS", "PARAM_DIMS", "Coordinates",
           "DrawStore", "add_derived", "draws_to_dataset", "evaluate_function", "param_dims"]
