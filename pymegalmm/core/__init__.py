"""The sampler's core: precomputation, chain state, the steps and the iteration.

==================  ======================================================================
module              what it holds
==================  ======================================================================
``grid``            the discrete h2 grid
``identifiability`` which fixed effects each trait's observed cells identify
``memory``          size of the precomputes, checked before they are built
``random_effects``  back-ends (one / several random effects) behind one protocol
``data``            :class:`ModelData` (read-only, shared by chains), :class:`Workspace`
``precompute``      builds :class:`ModelData` from the specification
``state``           :class:`ChainState`, the parameters of one chain
``column_lmm``      the column-LMM step shared by traits and factors (steps 1-5)
``factor_scores``   step 6
``mean``            the factor model's expected value of ``Eta``
``iteration``       one Gibbs iteration, step by step
``initialize``      a chain's starting state
``reorder``         dropping and sorting factors
==================  ======================================================================
"""
