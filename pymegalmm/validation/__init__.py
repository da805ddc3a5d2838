"""Simulation-based calibration: does the sampler draw from the posterior it claims?

==================  ============================================================
module              what it holds
==================  ============================================================
``spec``            :class:`ModelSpec`, a model without its data; :func:`example_spec`
``simulate``        :func:`simulate_from_prior`: parameters from the priors, data
                    from the model (:class:`Simulation`)
``sbc``             :func:`sbc`: replications, ranks and tests (:class:`SBCResult`)
``uniformity``      chi-square and ECDF-envelope tests of discrete uniform ranks
``plots``           :func:`~pymegalmm.validation.plots.sbc_ecdf`,
                    :func:`~pymegalmm.validation.plots.sbc_histogram`
==================  ============================================================

``docs/validation.md`` shows the calibration of every model part and the coverage
of prediction intervals on real data.
"""

from .sbc import QUANTITIES, SBCResult, quantity_labels, quantity_values, sbc
from .simulate import Simulation, simulate_from_prior
from .spec import ModelSpec, example_spec
from .uniformity import ECDFBand, chi_square_uniformity, ecdf_band, ecdf_uniformity

__all__ = ["ECDFBand", "ModelSpec", "QUANTITIES", "SBCResult", "Simulation",
           "chi_square_uniformity", "ecdf_band", "ecdf_uniformity", "example_spec",
           "quantity_labels", "quantity_values", "sbc", "simulate_from_prior"]
