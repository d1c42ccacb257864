"""The closed-form primal losses equal the N x N kernel (dual) form of the reference implementation."""

import pickle

import pytest
import torch
from ray import cloudpickle

from bib_ray.core.ntk_proxy import NTKProxy
from bib_ray.core.proxy import BidirectionalProxy, DesignProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.devices import cpu_copy, detached_copy


def kernel_reference(phi_d, y, phi_h, target, beta_scale=1e-6, design_beta_scale=1e-6):
    """The reference's dual computation: N x N kernel solves on standardised labels."""
    z = (y - y.mean()) / y.std(unbiased=False)
    n = phi_d.shape[0]
    k_dd = phi_d @ phi_d.T
    beta = beta_scale * torch.trace(k_dd) / n
    alpha = torch.linalg.solve(k_dd + beta * torch.eye(n, dtype=k_dd.dtype), z)
    prediction = (phi_h @ phi_d.T) @ alpha
    forward = (prediction - target) ** 2
    backward = []
    for h in phi_h:
        k_hh = h @ h
        weight = target / (k_hh + design_beta_scale * k_hh)  # (K_hh + beta_h)^-1 y_h
        predicted_d = (phi_d @ h) * weight
        backward.append(((predicted_d - z) ** 2).mean())
    return prediction, forward, torch.stack(backward)


@pytest.mark.parametrize("n,d", [(40, 12), (12, 40), (200, 64)])
@pytest.mark.parametrize("beta_scale", [1e-6, 1e-2])
def test_primal_equals_dual(n, d, beta_scale):
    gen = torch.Generator().manual_seed(n * d)
    phi_d = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64) * 3 + 1
    phi_h = torch.randn(7, d, generator=gen, dtype=torch.float64)
    target = 10.0
    proxy = BidirectionalProxy(EmbeddingStatistics.from_rows(phi_d, y), beta_scale=beta_scale)
    prediction, forward, backward = kernel_reference(phi_d, y, phi_h, target, beta_scale)
    torch.testing.assert_close(proxy.predict(phi_h), prediction, rtol=1e-6, atol=0)
    torch.testing.assert_close(proxy.forward_loss(phi_h, target), forward, rtol=1e-6, atol=0)
    torch.testing.assert_close(proxy.backward_loss(phi_h, target), backward, rtol=1e-6, atol=0)


def test_beta_matters():
    """The test above would notice a wrong beta: a large ridge changes the dual prediction."""
    gen = torch.Generator().manual_seed(0)
    phi_d, y = torch.randn(12, 40, generator=gen, dtype=torch.float64), torch.randn(12, generator=gen, dtype=torch.float64)
    phi_h = torch.randn(3, 40, generator=gen, dtype=torch.float64)
    small = BidirectionalProxy(EmbeddingStatistics.from_rows(phi_d, y), beta_scale=1e-6).predict(phi_h)
    large = kernel_reference(phi_d, y, phi_h, 10.0, beta_scale=1.0)[0]
    assert not torch.allclose(small, large, rtol=1e-3)


def test_statistics_merge_like_one_pass():
    gen = torch.Generator().manual_seed(1)
    phi, y = torch.randn(100, 8, generator=gen), torch.randn(100, generator=gen)
    whole = EmbeddingStatistics.from_rows(phi, y)
    parts = EmbeddingStatistics.from_rows(phi[:30], y[:30]) + EmbeddingStatistics.from_rows(phi[30:], y[30:])
    for a, b in zip(whole.standardised()[:2], parts.standardised()[:2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    assert parts.count == 100
    assert parts.standardised()[2] == pytest.approx(100.0)
    mean, std = parts.feature_moments()
    torch.testing.assert_close(mean, phi.double().mean(0), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(std, phi.double().std(0, unbiased=False), rtol=1e-6, atol=1e-8)


def test_statistics_round_trip_through_tensors():
    stats = EmbeddingStatistics.from_rows(torch.randn(10, 4), torch.randn(10))
    back = EmbeddingStatistics.from_tensors(stats.to_tensors())
    assert back.count == 10 and back.y_sum == pytest.approx(stats.y_sum)
    torch.testing.assert_close(back.gram, stats.gram)


def test_constant_labels_do_not_divide_by_zero():
    stats = EmbeddingStatistics.from_rows(torch.randn(5, 3), torch.ones(5))
    assert stats.label_std == 1.0
    assert torch.isfinite(BidirectionalProxy(stats).weights).all()


def _proxies() -> list[DesignProxy]:
    gen = torch.Generator().manual_seed(3)
    phi, y = torch.randn(30, 6, generator=gen, dtype=torch.float64), torch.randn(30, generator=gen) * 2 + 1
    stats = EmbeddingStatistics.from_rows(phi, y)
    return [BidirectionalProxy(stats, beta_scale=1e-3),
            NTKProxy(phi, y, stats.label_mean, stats.label_std, beta_scale=1e-3)]


def _outputs(proxy: DesignProxy) -> list[torch.Tensor]:
    designs = torch.randn(4, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    return [proxy.predict_raw(designs), *proxy.losses(designs, 1.5)]


@pytest.mark.parametrize("proxy", _proxies(), ids=["bidirectional", "ntk"])
def test_every_proxy_tensor_is_a_float64_buffer(proxy):
    assert isinstance(proxy, torch.nn.Module)
    loose = [name for name, value in vars(proxy).items() if isinstance(value, torch.Tensor)]
    assert loose == [], f"tensors outside the module's buffers: {loose}"
    names = set(proxy.state_dict())
    expected = {"weights", "gram_mean", "b_mean"} if isinstance(proxy, BidirectionalProxy) else {"x", "y", "alpha"}
    assert expected <= names
    assert all(tensor.dtype == torch.float64 for tensor in proxy.buffers())


@pytest.mark.parametrize("proxy", _proxies(), ids=["bidirectional", "ntk"])
def test_to_moves_every_buffer_in_place(proxy):
    assert proxy.to("meta") is proxy
    assert all(tensor.device.type == "meta" for tensor in proxy.buffers())


@pytest.mark.parametrize("proxy", _proxies(), ids=["bidirectional", "ntk"])
def test_shipping_a_copy_leaves_the_drivers_proxy_in_place(proxy):
    """What ShardPool must ship: a copy on the target device, never the driver's proxy moved."""
    expected = _outputs(proxy)
    elsewhere = detached_copy(proxy, "meta")
    assert elsewhere is not proxy
    assert all(tensor.device.type == "meta" for tensor in elsewhere.buffers())
    assert all(tensor.device.type == "cpu" for tensor in proxy.buffers())
    shipped = cpu_copy(proxy)
    assert shipped is not proxy
    with torch.no_grad():
        for tensor in shipped.buffers():
            tensor.mul_(2.0)
    for before, after in zip(expected, _outputs(proxy)):
        torch.testing.assert_close(after, before, rtol=0, atol=0)


@pytest.mark.parametrize("proxy", _proxies(), ids=["bidirectional", "ntk"])
@pytest.mark.parametrize("dumps,loads", [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)],
                         ids=["pickle", "cloudpickle"])
def test_pickled_proxy_predicts_the_same(proxy, dumps, loads):
    back = loads(dumps(cpu_copy(proxy)))
    assert type(back) is type(proxy)
    assert (back.label_mean, back.label_std, back.beta) == (proxy.label_mean, proxy.label_std, proxy.beta)
    for before, after in zip(_outputs(proxy), _outputs(back)):
        torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_statistics_come_back_from_the_buffers():
    phi, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    stats = EmbeddingStatistics.from_rows(phi, y)
    proxy = BidirectionalProxy(stats)
    back = proxy.statistics
    assert back.count == stats.count and back.y_sum == pytest.approx(stats.y_sum)
    torch.testing.assert_close(back.gram, stats.gram, rtol=0, atol=0)
    torch.testing.assert_close(back.phi_y, stats.phi_y, rtol=0, atol=0)
    assert proxy.dim == 5 and proxy.count == 20
