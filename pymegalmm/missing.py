"""Former home of the missing-data maps, now :mod:`pymegalmm.observation.maps`."""

from .observation.maps import (
    MissingDataMap,
    TraitGroup,
    best_map,
    default_bytes_per_group,
    full_imputation_map,
    pattern_map,
    search_maps,
)

__all__ = ["MissingDataMap", "TraitGroup", "best_map", "default_bytes_per_group",
           "full_imputation_map", "pattern_map", "search_maps"]
