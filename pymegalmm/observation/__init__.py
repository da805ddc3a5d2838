"""Observation models: how the data ``Y`` are seen through the latent ``Eta`` (a plug-in).

======================  ============================================================
module                  what it holds
======================  ============================================================
``base``                :class:`ObservationModel`, the protocol; :class:`LatentScale`,
                        :class:`SimulatedObservations`, :func:`simulate_observations`
``gaussian``            :class:`GaussianMissing`, Gaussian data with missing cells (default)
``voom``                :class:`Voom`, Gaussian data with known precision weights per cell
``binomial``            :class:`Binomial`, successes out of trials, logit link (Polya-Gamma)
``negative_binomial``   :class:`NegativeBinomial`, counts with library sizes, log link
``combined``            :class:`Combined`, blocks of traits with their own models, one fit
``probes``              :class:`ProbesToGenes`, several probes per gene (microarrays)
``regression``          :class:`Regression`, individual curves from observations along a covariate
``maps``                missing-data maps: which missing cells are imputed, which predicted
======================  ============================================================
"""

from .base import LatentScale, ObservationModel, SimulatedObservations, simulate_observations
from .binomial import Binomial
from .combined import Combined
from .gaussian import GaussianMissing
from .maps import MissingDataMap, TraitGroup, best_map, full_imputation_map, search_maps
from .negative_binomial import NegativeBinomial
from .probes import ProbesToGenes
from .regression import Regression
from .voom import Voom

__all__ = ["Binomial", "Combined", "GaussianMissing", "LatentScale", "MissingDataMap",
           "NegativeBinomial", "ObservationModel", "ProbesToGenes", "Regression",
           "SimulatedObservations", "TraitGroup", "Voom", "best_map", "full_imputation_map",
           "search_maps", "simulate_observations"]
