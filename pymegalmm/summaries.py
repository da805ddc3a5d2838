"""Former home of the posterior summaries, now :mod:`pymegalmm.results.summaries`."""

from .results.summaries import hpd_interval, posterior_function, posterior_mean

__all__ = ["hpd_interval", "posterior_function", "posterior_mean"]
