"""The results layer: names attached once, labelled posteriors, summaries and plots.

==================  ====================================================================
module              what it holds
==================  ====================================================================
``schema``          names, dims and descriptions of every quantity; :class:`Coordinates`
``dataset``         in-memory draws -> labelled ``xarray.Dataset``
``derived``         ``U``, ``G``, ``R``, ``h2`` per draw
``functions``       user functions evaluated on every draw
``run_results``     a run's posterior, means, predictions, genetic values, chunks
``summaries``       posterior means, HPD intervals, functions of the posterior
``tables``          lme4-style tables, R-hat and ESS, the printed summary
``diagnostics``     convergence diagnostics of identified quantities; number of factors
``arviz_export``    a fit as ArviZ ``InferenceData`` (0.x) or ``xarray.DataTree`` (1.x)
``plots``           trace plots and heatmaps
==================  ====================================================================
"""
