"""The BDI-style NTK baseline: kernel parity with neural-tangents, dual losses, an optimisation run."""

import numpy as np
import pytest
import torch

from bib_ray.run.config import build_config
from bib_ray.core.ntk import ReluNTK
from bib_ray.core.ntk_proxy import NTKProxy, kernel_rows
from bib_ray.core.proxy import BidirectionalProxy
from bib_ray.core.statistics import EmbeddingStatistics
from bib_ray.run.engine import run_design
from bib_ray.run.executor import LocalExecutor
from bib_ray.tasks import load_task
from tests.helpers import FIXTURES

FIXTURE = FIXTURES / "ntk_reference.npz"


def test_kernel_matches_neural_tangents():
    """Reference values from Google's neural-tangents (tests/fixtures/make_ntk_reference.py)."""
    reference = np.load(FIXTURE)
    x = torch.as_tensor(reference["x"])
    for (depth, weight_std, bias_std), expected in zip(reference["configs"], reference["kernels"]):
        kernel = ReluNTK(int(depth), float(weight_std), float(bias_std))
        np.testing.assert_allclose(kernel(x, x).numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(kernel.self_kernel(x).numpy(), np.diag(expected), rtol=1e-6)


def test_kernel_gradient_is_finite_where_a_design_equals_a_data_row():
    rows = torch.eye(4, dtype=torch.float64)[torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])].flatten(1)
    design = rows[:1].clone().requires_grad_(True)
    ReluNTK()(design, rows).sum().backward()
    assert torch.isfinite(design.grad).all() and design.grad.abs().sum() > 0


class LinearKernel:
    """K(x, x') = x . x': with it the NTK proxy's dual form must equal the LM proxy's primal form."""

    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b.T

    def self_kernel(self, a: torch.Tensor) -> torch.Tensor:
        return (a * a).sum(-1)


@pytest.mark.parametrize("n,d", [(40, 12), (12, 40)])
def test_dual_losses_equal_the_primal_proxy_under_a_linear_kernel(n, d):
    gen = torch.Generator().manual_seed(n + d)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, generator=gen, dtype=torch.float64) * 2 + 3
    designs = torch.randn(5, d, generator=gen, dtype=torch.float64)
    statistics = EmbeddingStatistics.from_rows(x, y)
    primal = BidirectionalProxy(statistics, beta_scale=1e-3)
    dual = NTKProxy(x, y, statistics.label_mean, statistics.label_std, LinearKernel(), beta_scale=1e-3)
    torch.testing.assert_close(dual.predict_raw(designs), primal.predict_raw(designs), rtol=1e-6, atol=0)
    torch.testing.assert_close(dual.forward_loss(designs, 10.0), primal.forward_loss(designs, 10.0), rtol=1e-6, atol=0)
    torch.testing.assert_close(dual.backward_loss(designs, 10.0), primal.backward_loss(designs, 10.0),
                               rtol=1e-6, atol=0)


def test_ntk_proxy_interpolates_its_rows_and_subsamples_deterministically():
    gen = torch.Generator().manual_seed(0)
    x = torch.eye(4, dtype=torch.float64)[torch.randint(0, 4, (30, 6), generator=gen)].flatten(1)
    x = torch.unique(x, dim=0)
    y = torch.randn(len(x), generator=gen, dtype=torch.float64)
    proxy = NTKProxy(x, y, float(y.mean()), float(y.std()), beta_scale=1e-9)
    torch.testing.assert_close(proxy.predict_raw(x), y, rtol=0, atol=1e-5)  # ridge -> interpolation
    np.testing.assert_array_equal(kernel_rows(100, 10), kernel_rows(100, 10))
    assert len(np.unique(kernel_rows(100, 10))) == 10 and len(kernel_rows(7, 10)) == 7
    with pytest.raises(ValueError, match="matching"):
        NTKProxy(x, y[:-1], 0.0, 1.0)


def test_bdi_style_run_improves_on_its_start(shared_data_dir):
    task = load_task("tfbind8-r", shared_data_dir)
    config = build_config(dict(task="tfbind8-r", backbone="ntk", ntk_rows=1500, device="cpu", method="bidirectional",
                               steps=30, designs=16, seeds=[0]))
    executor = LocalExecutor()
    fitted = executor.fit(task, config.proxy_settings())
    assert isinstance(fitted.proxy, NTKProxy) and fitted.proxy.rows == 1500
    result = run_design(config, task, executor, fitted=fitted).seeds[0]
    assert result.oracle_summary["p100"] > result.oracle_summary["start_p100"]
    proxy_score = result.trajectory.history["proxy_score"]
    assert proxy_score[-1].mean() > proxy_score[0].mean() + 0.5  # standardised units


def test_a_kernel_matrix_that_is_not_positive_definite_is_a_user_error():
    from bib_ray.errors import UserError

    x = torch.eye(4, dtype=torch.float64)
    gram = -torch.eye(4, dtype=torch.float64)  # a gram that cannot be factorised
    with pytest.raises(UserError, match="not numerically positive definite at beta_scale 1e-06: raise --beta-scale"):
        NTKProxy(x, torch.arange(4.0), 1.5, 1.0, gram=gram)
