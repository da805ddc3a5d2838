"""ProbesToGenes: several probes per gene (R MegaLMM's probe_gene_model).

Inputs, the latent-frame hook (Y=None refused for other models), the conditional
against a slow NumPy reference on the same random numbers, threads, exact resume,
recording and the response scale, then recovery on a simulation made for it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

from pymegalmm import Control, MegaLMM, datasets
from pymegalmm.errors import InputError, InputTypeError, LabelError
from pymegalmm.linalg import standard_normal
from pymegalmm.observation import Combined, ProbesToGenes
from pymegalmm.observation.probes import probe_gene_update, simulate_probes
from pymegalmm.priors.variance import GammaPrior


@pytest.fixture(scope="module")
def sim():
    """40 rows x 4 genes of a 2-factor model, 3 probes per gene (one of them noisy)."""
    s = datasets.simulate_factor_data(n=40, t=4, k_true=2, n_markers=200, seed=3)
    tau = np.tile([0.5, 20.0, 20.0], 4)
    Y, pmap, _ = simulate_probes(s.Y, 3, tau, np.random.default_rng(1))
    return s, Y, pmap


def fit(s, Y, obs, run_dir, n_iter=8, threads=None, **kw):
    m = MegaLMM(Y, s.formula, data=s.data, relmat={"ID": s.K}, n_factors=2, h2_divisions=5,
                burn=2, seed=7, verbose=False, observation=obs, run_dir=run_dir,
                control=Control(n_threads=threads), **kw)
    m.sample(n_iter, progress=False)
    return m


# ----------------------------------------------------------------------------- inputs

def test_inputs_are_checked(sim, tmp_path):
    s, Y, pmap = sim
    with pytest.raises(InputTypeError, match="probe_map"):
        ProbesToGenes(3)
    with pytest.raises(InputError, match="probe_map is empty"):
        ProbesToGenes({})
    with pytest.raises(InputError, match="probe_map has missing genes"):
        ProbesToGenes(pmap.where(pmap != "T01"))
    with pytest.raises(InputTypeError, match="precision"):
        ProbesToGenes(pmap, precision=2.0)

    def build(Yx, pm, data=s.data):
        return MegaLMM(Yx, s.formula, data=data, relmat={"ID": s.K}, n_factors=2,
                       h2_divisions=5, verbose=False, observation=ProbesToGenes(pm),
                       run_dir=tmp_path / "r")

    with pytest.raises(LabelError, match="probe_map lacks 1 probe"):
        build(Y, pmap.drop("T02_p1"))
    extra_gene = pd.concat([pmap, pd.Series({"X_p0": "X"})])  # a gene without probe in Y
    with pytest.raises(InputError, match=r"gene\(s\) \['X'\] of probe_map have no probe"):
        build(Y, extra_gene)
    with pytest.raises(InputError, match="sequence gives the gene of each column"):
        build(Y, list(pmap)[:-1])
    bad = Y.astype(object)
    bad.iloc[0, 0] = "high"
    with pytest.raises(ValueError, match="not numeric"):
        build(bad, pmap)
    with pytest.raises(InputTypeError, match="Y \\(n x probes\\) is required"):
        build(None, pmap)
    with pytest.raises(InputError, match="ProbesToGenes cannot be a block of Combined"):
        Combined({tuple(s.Y.columns): ProbesToGenes(pmap)})
    empty = Y.copy()
    empty["T01_p2"] = np.nan
    with pytest.raises(InputError, match=r"probe\(s\) \['T01_p2'\] of Y have no observed"):
        build(empty, pmap)


def test_y_none_is_refused_without_a_latent_frame(sim, tmp_path):
    s, _, _ = sim
    with pytest.raises(InputTypeError, match="Y is required with the observation model "
                                         "GaussianMissing"):
        MegaLMM(None, s.formula, data=s.data, relmat={"ID": s.K}, verbose=False,
                run_dir=tmp_path / "r")


def test_probes_by_position_and_latent_frame(sim):
    s, Y, pmap = sim
    by_label = ProbesToGenes(pmap).latent_frame(Y, s.data)
    by_position = ProbesToGenes(list(pmap)).latent_frame(Y.to_numpy(), s.data)
    assert list(by_label.columns) == ["T01", "T02", "T03", "T04"]
    np.testing.assert_allclose(by_label.to_numpy(), by_position.to_numpy())
    np.testing.assert_allclose(by_label["T02"], Y[["T02_p0", "T02_p1", "T02_p2"]].mean(axis=1))


# ----------------------------------------------------------------------------- numerics

def test_update_matches_a_slow_reference_on_the_same_numbers():
    rng = np.random.default_rng(5)
    n, gene = 7, np.array([0, 0, 1, 2, 2, 2])
    P, G = gene.size, 3
    y = rng.standard_normal((n, P))
    observed = rng.random((n, P)) > 0.3
    observed[0] = False  # a row with no probe observed: its genes from the prior
    y = np.where(observed, y, 0.0)
    tau, mean, var = rng.uniform(0.5, 3, P), rng.standard_normal((n, G)), rng.uniform(0.2, 2, G)
    S = scipy.sparse.csc_matrix((np.ones(P), (np.arange(P), gene)), shape=(P, G))
    eta, tau_new = probe_gene_update(y, observed, gene, S, tau, mean, var, 2.0, 1.0,
                                     np.random.default_rng(11))
    ref_rng = np.random.default_rng(11)
    z = standard_normal(ref_rng, n, G)
    ref = np.empty((n, G))
    for i in range(n):
        for g in range(G):
            ps = [p for p in range(P) if gene[p] == g and observed[i, p]]
            prec = sum(tau[p] for p in ps) + 1 / var[g]
            lin = sum(tau[p] * y[i, p] for p in ps) + mean[i, g] / var[g]
            ref[i, g] = lin / prec + z[i, g] / np.sqrt(prec)
    np.testing.assert_allclose(eta, ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(eta[0], mean[0] + z[0] * np.sqrt(var))
    shape = [2.0 + 0.5 * observed[:, p].sum() for p in range(P)]
    rate = [1.0 + 0.5 * sum((y[i, p] - ref[i, gene[p]]) ** 2 for i in range(n) if observed[i, p])
            for p in range(P)]
    np.testing.assert_allclose(tau_new, ref_rng.gamma(shape, 1 / np.array(rate)), rtol=1e-12)


def test_draws_do_not_depend_on_the_number_of_threads(sim, tmp_path):
    s, Y, pmap = sim
    a = fit(s, Y, ProbesToGenes(pmap), tmp_path / "a", threads=1, record=["Lambda", "Eta"])
    b = fit(s, Y, ProbesToGenes(pmap), tmp_path / "b", threads=2, record=["Lambda", "Eta"])
    assert a._kernel_threads == 1 and b._kernel_threads == 2
    np.testing.assert_array_equal(a.posterior["Eta"].values, b.posterior["Eta"].values)
    np.testing.assert_array_equal(a.states[0].observation["probe_precision"],
                                  b.states[0].observation["probe_precision"])


def test_resumes_exactly(sim, tmp_path):
    s, Y, pmap = sim
    whole = fit(s, Y, ProbesToGenes(pmap), tmp_path / "whole", n_iter=12)
    whole.save_posterior_chunk()
    part = fit(s, Y, ProbesToGenes(pmap), tmp_path / "part", n_iter=5)
    part.save_posterior_chunk()
    del part
    again = MegaLMM.resume(tmp_path / "part", verbose=False)
    again.sample(7, progress=False)
    again.save_posterior_chunk()
    np.testing.assert_array_equal(again.states[0].Eta, whole.states[0].Eta)
    np.testing.assert_array_equal(again.load_posterior(lazy=False)["probe_precision"].values,
                                  whole.load_posterior(lazy=False)["probe_precision"].values)


def test_recording_coordinates_and_response_scale(sim, tmp_path):
    s, Y, pmap = sim
    m = fit(s, Y, ProbesToGenes(pmap, precision=GammaPrior(3.0, 1.0)), tmp_path / "c")
    pp = m.posterior["probe_precision"]
    assert pp.dims == ("chain", "draw", "probe") and list(pp["probe"].values) == list(Y.columns)
    assert pp.attrs["description"].startswith("residual precision of each probe")
    assert list(m.coords.trait) == ["T01", "T02", "T03", "T04"]
    genes = m.predict()
    probes = m.predict(scale="response")
    assert list(probes.columns) == list(Y.columns)
    # each probe = its gene + the probe's offset (its mean minus its gene's average probe)
    offset = Y.mean() - Y.mean().groupby(pmap).transform("mean")
    np.testing.assert_allclose(probes.to_numpy(),
                               genes[list(pmap[Y.columns])].to_numpy() + offset.to_numpy())
    with pytest.raises(InputError, match="no response-scale options"):
        m.predict(scale="response", library_size=2.0)


# ----------------------------------------------------------------------------- recovery

def test_gene_covariance_and_probe_precisions_are_recovered(tmp_path):
    """200 rows x 8 genes (2 factors), 3 probes per gene: the first noisy (precision 0.5,
    noise variance 2 against a gene variance near 1), the others precise (20)."""
    s = datasets.simulate_factor_data(n=200, t=8, k_true=2, seed=3)
    tau = np.tile([0.5, 20.0, 20.0], 8)
    Y, pmap, _ = simulate_probes(s.Y, 3, tau, np.random.default_rng(1))
    m = MegaLMM(Y, s.formula, data=s.data, relmat={"ID": s.K}, n_factors=4, h2_divisions=10,
                burn=100, seed=1, verbose=False, observation=ProbesToGenes(pmap),
                run_dir=tmp_path / "r")
    m.sample(300, progress=False)
    G = m.posterior["G"].mean(("chain", "draw")).values[0]
    # the gene-level G through noisy probes: 0.98 on this simulation; 0.9 leaves room for
    # Monte Carlo error while failing if the probes were, e.g., averaged with equal weights
    # into the wrong genes or the noise were put into Eta
    assert np.corrcoef(G.ravel(), np.asarray(s.truth["G"]).ravel())[0, 1] > 0.9
    pp = m.posterior["probe_precision"].mean(("chain", "draw")).values
    # noisy probes: posterior means 0.4-0.6 here (truth 0.5; 200 cells each, posterior sd
    # about 0.05); precise probes 10-14 (truth 20: a low noise variance next to a unit gene
    # variance is weakly identified by three probes, posteriors are wide and skewed).  The
    # bounds separate the two kinds by a factor of 10.
    assert np.all(pp[0::3] < 1.0) and np.all(pp[0::3] > 0.25)
    assert np.all(pp[1::3] > 5.0) and np.all(pp[2::3] > 5.0)
