"""The batched BIB optimiser: initialisation, straight-through, modes, adaptive modules, determinism."""

import numpy as np
import pytest
import torch

from bib_ray.backbones.tiny import TinyTransformerBackbone
from bib_ray.core.aux_ensemble import AuxiliaryEnsemble, AuxiliarySettings
from bib_ray.core.design_variables import init_logits, straight_through
from bib_ray.core.optimizer import BIBOptimiser, CotangentBatching, Mode, OptimiserSettings
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.core.statistics import EmbeddingStatistics

ALPHABET = "ACGT"
LENGTH = 8


@pytest.fixture(scope="module")
def problem():
    """A tiny backbone, a proxy fitted on a synthetic additive landscape, and an aux ensemble."""
    backbone = TinyTransformerBackbone(ALPHABET, hidden_size=32, layers=1, heads=2)
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (400, LENGTH), generator=gen)
    y = (codes == 2).float().sum(1) + 0.1 * torch.randn(400, generator=gen)  # "more G is better"
    with torch.no_grad():
        phi = backbone.embed(torch.nn.functional.one_hot(codes, 4).float())
    stats = EmbeddingStatistics.from_rows(phi, y)
    proxy = BidirectionalProxy(stats)
    mean, std = stats.feature_moments()
    aux = AuxiliaryEnsemble(32, AuxiliarySettings(members=3, hidden=16, epochs=3), 0, mean, std)
    aux.fit(phi, (y.double() - stats.label_mean) / stats.label_std)
    starts = codes[torch.argsort(y)[:6]]
    return backbone, proxy, aux, starts


def run(problem, seed=0, starts=None, **settings):
    backbone, proxy, aux, default_starts = problem
    settings.setdefault("steps", 8)
    optimiser = BIBOptimiser(backbone.embed, proxy, OptimiserSettings(**settings), aux)
    return optimiser.run(default_starts if starts is None else starts, 4, torch.Generator().manual_seed(seed))


def test_init_logits_reproduce_seeds():
    seeds = torch.randint(0, 5, (16, 9))
    logits = init_logits(seeds, 5, torch.Generator().manual_seed(3))
    assert torch.equal(logits.argmax(-1), seeds)


def test_straight_through_is_hard_forward_soft_backward():
    logits = torch.randn(3, 4, 5, requires_grad=True)
    x = straight_through(logits)
    assert torch.equal(x.detach(), torch.nn.functional.one_hot(logits.argmax(-1), 5).float())
    (x * torch.arange(5.0)).sum().backward()
    soft = torch.softmax(logits.detach(), -1)
    expected = soft * (torch.arange(5.0) - (soft * torch.arange(5.0)).sum(-1, keepdim=True))
    torch.testing.assert_close(logits.grad, expected)


def test_same_seed_same_designs_and_history(problem):
    a = run(problem, seed=5, mode=Mode.ADAPTIVE_GAMMA, adaptive_eta=True)
    b = run(problem, seed=5, mode=Mode.ADAPTIVE_GAMMA, adaptive_eta=True)
    assert np.array_equal(a.final_codes, b.final_codes)
    for key in a.history:
        np.testing.assert_array_equal(a.history[key], b.history[key])
    c = run(problem, seed=6, mode=Mode.ADAPTIVE_GAMMA, adaptive_eta=True)
    assert not np.array_equal(a.history["proxy_score"], c.history["proxy_score"])


@pytest.mark.parametrize("mode,gamma", [(Mode.FORWARD, 1.0), (Mode.BACKWARD, 0.0), (Mode.BIDIRECTIONAL, 0.3)])
def test_fixed_gamma_modes(problem, mode, gamma):
    result = run(problem, mode=mode, gamma_init=0.3)
    assert np.all(result.history["gamma"] == gamma)
    np.testing.assert_allclose(result.history["eta"], 0.1, rtol=1e-7)  # eta is float32
    assert "aux_score" not in result.history


def test_adaptive_gamma_moves_within_bounds(problem):
    result = run(problem, mode=Mode.ADAPTIVE_GAMMA, steps=15)
    gamma = result.history["gamma"]
    assert gamma.min() >= 0.0 and gamma.max() <= 1.0
    assert not np.allclose(gamma, 0.5), "gamma never moved"
    assert len(np.unique(gamma[-1].round(6))) > 1, "one gamma per trajectory"


def test_adaptive_eta_on_forward_mode(problem):
    result = run(problem, mode=Mode.FORWARD, adaptive_eta=True)
    eta = result.history["eta"]
    assert eta.min() >= 1e-4 and eta.max() <= 0.5
    assert not np.allclose(eta, 0.1)


def test_forward_mode_raises_proxy_score(problem):
    result = run(problem, mode=Mode.FORWARD, steps=20)
    scores = result.history["proxy_score"]
    assert scores[-1].mean() > scores[0].mean() + 0.5


def test_batched_cotangents_equal_sequential(problem):
    batched = run(problem, mode=Mode.ADAPTIVE_GAMMA, adaptive_eta=True, cotangents=CotangentBatching.BATCHED)
    sequential = run(problem, mode=Mode.ADAPTIVE_GAMMA, adaptive_eta=True,
                     cotangents=CotangentBatching.SEQUENTIAL)
    for key in batched.history:
        np.testing.assert_allclose(batched.history[key], sequential.history[key], rtol=1e-4, atol=1e-6)
    assert np.array_equal(batched.final_codes, sequential.final_codes)


def test_batch_equals_one_at_a_time(problem):
    """Trajectories are independent: running them together equals running each alone."""
    starts = problem[3]
    together = run(problem, seed=1, starts=starts, mode=Mode.ADAPTIVE_GAMMA)
    gen = torch.Generator().manual_seed(1)
    noise_order = init_logits(starts, 4, gen)  # the batch draws its init noise row by row
    backbone, proxy, aux, _ = problem
    for row in range(starts.shape[0]):
        optimiser = BIBOptimiser(backbone.embed, proxy, OptimiserSettings(mode=Mode.ADAPTIVE_GAMMA, steps=8), aux)
        single = optimiser.run_from_logits(noise_order[row:row + 1].clone())
        np.testing.assert_allclose(single.history["proxy_score"][:, 0], together.history["proxy_score"][:, row],
                                   rtol=1e-4, atol=1e-5)
        assert np.array_equal(single.final_codes[0], together.final_codes[row])


def test_adaptive_needs_aux(problem):
    backbone, proxy, _, _ = problem
    with pytest.raises(ValueError, match="auxiliary"):
        BIBOptimiser(backbone.embed, proxy, OptimiserSettings(mode=Mode.ADAPTIVE_GAMMA), None)


class ProxyAsAux:
    """An auxiliary model equal to the proxy's prediction (sign +1) or to its negation (sign -1)."""

    def __init__(self, proxy: BidirectionalProxy, sign: float) -> None:
        self.proxy, self.sign = proxy, sign

    def mean(self, phi: torch.Tensor) -> torch.Tensor:
        return self.sign * self.proxy.predict(phi)


def run_with_aux(problem, sign: float, **settings):
    backbone, proxy, _, starts = problem
    optimiser = BIBOptimiser(backbone.embed, proxy, OptimiserSettings(**settings), ProxyAsAux(proxy, sign))
    return optimiser.run(starts, 4, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gamma_follows_the_auxiliary_model(problem, sign):
    """The forward loss pulls the proxy's prediction up, so an aux that agrees with the proxy must
    raise gamma (more forward weight) on every trajectory, and its negation must lower it."""
    result = run_with_aux(problem, sign, mode=Mode.ADAPTIVE_GAMMA, steps=5)
    moved = result.history["gamma"][-1] - 0.5
    assert (np.sign(moved) == sign).all() and np.abs(moved).min() > 0.1


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_eta_follows_the_auxiliary_model(problem, sign):
    """Forward ascent on the proxy: a longer step raises an aux equal to the proxy, so eta must grow
    above eta_0 from the second step on (the first keeps eta_0), and shrink for its negation."""
    result = run_with_aux(problem, sign, mode=Mode.FORWARD, adaptive_eta=True, steps=5, eta_meta_lr=0.001)
    eta = result.history["eta"]
    np.testing.assert_allclose(eta[0], 0.1, rtol=1e-6)
    assert (np.sign(eta[1:] - 0.1) == sign).all()


def test_reference_defaults_reach_the_optimiser():
    from bib_ray.alphabets import DNA, PROTEIN, RNA
    from bib_ray.run.config import DesignConfig

    settings = DesignConfig().resolved_for(DNA).optimiser_settings()
    assert settings.gamma_lr == 0.1 and settings.init_std == 0.01 and settings.lr == 0.1
    assert DesignConfig(init_std=0.05).resolved_for(DNA).optimiser_settings().init_std == 0.05
    # T as the reference: dna/BIB.py 100, protein/BIB.py 25; an explicit value wins
    assert settings.steps == 100 and DesignConfig().resolved_for(RNA).steps == 100
    assert DesignConfig().resolved_for(PROTEIN).optimiser_settings().steps == 25
    assert DesignConfig(steps=7).resolved_for(PROTEIN).steps == 7
    with pytest.raises(ValueError, match="resolve"):
        DesignConfig().optimiser_settings()
    with pytest.raises(ValueError):
        OptimiserSettings(init_std=0.0)


def test_history_records_the_argmax_designs(problem):
    result = run(problem, mode=Mode.FORWARD, steps=4)
    codes = result.history["codes"]
    assert codes.shape == (4, *result.final_codes.shape)
    assert np.array_equal(codes[-1], result.final_codes)
