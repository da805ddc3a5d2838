"""Former home of the plots, now :mod:`pymegalmm.results.plots`."""

from .results.plots import heatmap, traceplot

__all__ = ["heatmap", "traceplot"]
