"""Reliability: warnings about data, numerical guards, labels kept, thread safety."""

from __future__ import annotations

import threading
import time
import warnings

import numpy as np
import pytest

from pymegalmm import MegaLMM, Priors, datasets
from pymegalmm.errors import ConcurrencyError, SamplerError
from pymegalmm.priors import VariancePrior


@pytest.fixture(scope="module")
def sim():
    return datasets.simulate_factor_data(n=60, t=5, k_true=2, n_markers=300, seed=2)


def fit(sim, Y=None, data=None, formula=None, **kwargs):
    kwargs = {"n_factors": 2, "h2_divisions": 6, "burn": 4, "seed": 1, "verbose": False,
              **kwargs}
    return MegaLMM(sim.Y if Y is None else Y, formula or sim.formula,
                   data=sim.data if data is None else data, relmat={"ID": sim.K}, **kwargs)


def draws(m):
    post = m.posterior
    return {name: post[name].values for name in post.data_vars}


# --------------------------------------------------------------------------------------
# warnings about the data
# --------------------------------------------------------------------------------------


def test_collinear_fixed_effect_warns_naming_the_column(sim):
    data = sim.data.assign(x=np.linspace(-1, 1, len(sim.data)))
    data = data.assign(x2=2 * data["x"])
    with pytest.warns(UserWarning, match=r"'x2' is not identifiable for any trait"):
        m = fit(sim, data=data, formula="~ x + x2 + (1|ID)")
    m.sample(6, progress=False)
    assert np.all(m.posterior["B1"].sel(fixed="x2").values == 0.0)


def test_identifiable_fixed_effects_do_not_warn(sim):
    data = sim.data.assign(x=np.linspace(-1, 1, len(sim.data)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(sim, data=data, formula="~ x + (1|ID)")


@pytest.mark.parametrize("factor", [1e-8, 1e8])
def test_data_far_from_the_priors_scale_warns_without_scaling(sim, factor):
    with pytest.warns(UserWarning, match=r"scale_Y=False.*far from the scale the priors"):
        fit(sim, Y=sim.Y * factor, scale_Y=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(sim, Y=sim.Y * factor, scale_Y=True)  # scaled: nothing to warn about


def test_data_on_the_priors_scale_does_not_warn(sim):
    Y = (sim.Y - sim.Y.mean()) / sim.Y.std()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(sim, Y=Y, scale_Y=False)


# --------------------------------------------------------------------------------------
# numerical guards and results before any draw
# --------------------------------------------------------------------------------------


def test_non_finite_user_scale_value_raises_with_iteration_and_parameter(sim):
    m = fit(sim, chains=2)
    m.sample(2, progress=False)
    chain = m.chains[1]
    chain.state.tot_F_prec[0] = np.inf  # Lambda and F on the user's scale become 0 * inf
    with pytest.raises(SamplerError, match=r"chain 1: iteration 2: \w+ has non-finite"):
        chain.recorder.record(chain.state, m.data)


def test_results_before_burn_in_ends_raise_instead_of_nan(sim):
    m = fit(sim, burn=50)
    m.sample(10, progress=False)
    for call in (m.genetic_values, m.predict):
        with pytest.raises(RuntimeError, match=r"no draws recorded yet.*burn = 50.*run = 10"):
            call()


# --------------------------------------------------------------------------------------
# labels and R habits
# --------------------------------------------------------------------------------------


def test_integer_trait_names_stay_integers(sim):
    Y = sim.Y.set_axis([10, 20, 30, 40, 50], axis=1)
    m = fit(sim, Y=Y).sample(6, progress=False)
    assert list(m.posterior.trait.values) == [10, 20, 30, 40, 50]
    assert list(m.predict().columns) == [10, 20, 30, 40, 50]
    assert list(m.genetic_values().columns) == [10, 20, 30, 40, 50]


def test_r_style_prior_dicts_give_the_same_draws(sim):
    a = fit(sim, priors=Priors(tot_Y_var={"V": 0.5, "nu": 5}, tot_F_var={"V": 0.9, "nu": 20}))
    b = fit(sim, priors=Priors(tot_Y_var=VariancePrior(0.5, 5), tot_F_var=VariancePrior(0.9, 20)))
    a.sample(8, progress=False)
    b.sample(8, progress=False)
    for name, value in draws(a).items():
        np.testing.assert_array_equal(value, draws(b)[name], err_msg=name)


def test_labelled_Y_with_default_data_index_fits(sim):
    # R matches rows by position: Y labelled by individual, data on a RangeIndex
    Y = sim.Y.set_axis([f"plot{i}" for i in range(len(sim.Y))])
    m = fit(sim, Y=Y, data=sim.data.reset_index(drop=True)).sample(6, progress=False)
    assert list(m.predict().index) == list(Y.index)


# --------------------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------------------


def test_one_model_sampled_from_two_threads_raises(sim):
    m = fit(sim)
    errors: list[BaseException] = []

    def run():
        try:
            m.sample(3000, progress=False)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 30
    while not m._lock.locked() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert m._lock.locked(), "the worker never started sampling"
    with pytest.raises(ConcurrencyError, match=r"sample\(\) was called while this model"):
        m.sample(1, progress=False)
    with pytest.raises(ConcurrencyError, match="reorder_factors"):
        m.reorder_factors()
    worker.join()
    assert not errors
    assert m.chains[0].nrun == 3000  # the worker's run was not disturbed


def test_two_models_in_two_threads_match_running_them_in_turn(sim):
    def build():
        return [fit(sim, seed=s, chains=2) for s in (11, 12)]

    alone = build()
    for m in alone:
        m.sample(60, progress=False)
    together = build()
    threads = [threading.Thread(target=m.sample, args=(60,), kwargs={"progress": False})
               for m in together]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(alone, together, strict=True):
        da, db = draws(a), draws(b)
        for name in da:
            np.testing.assert_array_equal(da[name], db[name], err_msg=name)


def test_relationship_matrix_far_from_unit_diagonal_warns(sim):
    with pytest.warns(UserWarning, match=r"'ID' has mean diagonal 3[0-9.]*; .*divide K"):
        MegaLMM(sim.Y, sim.formula, data=sim.data, relmat={"ID": sim.K * 35}, n_factors=2,
                h2_divisions=6, verbose=False)


def test_trait_with_one_observation_gives_one_clear_error_and_no_numpy_warning(sim):
    Y = sim.Y.copy()
    Y.iloc[1:, 3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Degrees of freedom <= 0" from numpy
        with pytest.raises(ValueError, match=r"trait\(s\) \['T04'\] of Y have fewer than 2"):
            fit(sim, Y=Y)


def test_level_never_observed_in_some_traits_warns_with_the_count(sim):
    data = sim.data.assign(Pop=np.where(np.arange(len(sim.data)) % 2, "A", "B"))
    Y = sim.Y.copy()
    Y.loc[(data["Pop"] == "B").to_numpy(), "T01"] = np.nan  # T01 never observed in B
    with pytest.warns(UserWarning, match=r"'Pop\[T.B\]' is not identifiable from the observed "
                                         r"cells of 1 of 5 traits"):
        fit(sim, Y=Y, data=data, formula="~ Pop + (1|ID)")


@pytest.mark.parametrize("scale_Y", [True, False])
def test_constant_trait_is_refused_whatever_the_scaling(sim, scale_Y):
    Y = sim.Y.assign(T05=3.0)
    with pytest.raises(ValueError, match=r"\['T05'\] of Y have"):
        fit(sim, Y=Y, scale_Y=scale_Y)


def test_unwritable_run_dir_names_it(sim, tmp_path):
    m = fit(sim, run_dir="/proc/pymegalmm_cannot_be_here").sample(6, progress=False)
    with pytest.raises(OSError, match=r"run_dir '/proc/pymegalmm_cannot_be_here' cannot be"):
        m.save_posterior_chunk()
