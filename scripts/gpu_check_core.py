"""GPU checks of device choice, shipping and precision that CPU tests can only mock.

Run from the repository root on a machine with at least one CUDA GPU:
    python scripts/gpu_check_core.py
It starts a private local Ray, runs each check, prints one row per check (PASS / FAIL / SKIP with
what was expected and what came back) and exits 1 when any check failed. Without a GPU it prints
"no GPU: skipped" and exits 0.

Checks:
  1. an actor with num_gpus=1 gets CUDA from granted_device('auto'), exactly its granted GPU;
  2. an actor with num_gpus=0 gets the CPU from granted_device('auto') although torch sees the
     node's GPUs (Ray 2.60), and a UserError for 'cuda';
  3. a bfloat16 backbone (tiny and a random Hugging Face ESM) embeds on the actor's GPU, returns
     float32 close to float32 weights, and passes gradients to the design logits;
  4. a proxy on the driver's GPU, shipped with ray.put(cpu_copy(proxy)) to a GPU actor, predicts
     the same there and stays on the driver's GPU;
  5. with two or more GPUs: an actor with num_gpus=2 splits one ESM over its two GPUs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

Row = tuple[str, str, str, str]  # check, expected, got, status


def _esm_dir(root: Path, layers: int = 2, hidden: int = 32) -> str:
    """A random ESM-2 style model saved under ``root`` (the tests' helper, with a chosen size)."""
    from transformers import EsmConfig, EsmModel

    from hf_models import ESM_VOCAB, _write_vocab

    _write_vocab(root, ESM_VOCAB, "EsmTokenizer")
    config = EsmConfig(vocab_size=len(ESM_VOCAB), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                       intermediate_size=4 * hidden, pad_token_id=1, mask_token_id=len(ESM_VOCAB) - 1,
                       position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                       max_position_embeddings=1026)
    torch.manual_seed(0)
    EsmModel(config, add_pooling_layer=False).save_pretrained(root)
    return str(root)


class Probe:
    """Runs inside a Ray actor: reports what the device helpers choose there."""

    def devices(self) -> dict:
        import ray

        from bib_ray.devices import granted_device
        from bib_ray.errors import UserError

        try:
            cuda = str(granted_device("cuda"))
        except UserError as error:
            cuda = f"UserError: {error}"
        return {"gpu_ids": [str(i) for i in ray.get_gpu_ids()], "visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "torch_sees_cuda": torch.cuda.is_available(), "auto": str(granted_device("auto")), "cuda": cuda}

    def bf16_embedding(self, esm_path: str) -> dict:
        from bib_ray.alphabets import DNA, PROTEIN
        from bib_ray.backbones import build_backbone
        from bib_ray.devices import granted_device

        device = granted_device("cuda")
        out = {}
        for name, spec, alphabet in (("tiny", "tiny", DNA), ("esm", f"hf:{esm_path}", PROTEIN)):
            full = build_backbone(spec, alphabet, devices=[device])
            half = build_backbone(spec, alphabet, dtype="bfloat16", devices=[device])
            logits = torch.randn(4, 10, len(alphabet), device=device, requires_grad=True)
            phi = half.embed(torch.softmax(logits, -1))
            phi.sum().backward()
            reference = full.embed(torch.softmax(logits.detach(), -1))
            out[name] = {"weights": str(half.dtype), "phi": f"{phi.dtype} on {phi.device}",
                         "rel_err": float((phi.detach() - reference).norm() / reference.norm()),
                         "grad": bool(logits.grad is not None and logits.grad.abs().sum() > 0)}
        return out

    def predict(self, proxy, phi: torch.Tensor) -> dict:
        from bib_ray.devices import granted_device

        device = granted_device("auto")
        proxy.to(device)  # the actor's own copy: moving it in place is fine here
        return {"device": str(next(proxy.buffers()).device), "prediction": proxy.predict(phi.to(device)).cpu()}

    def split(self, esm_path: str) -> dict:
        from bib_ray.alphabets import PROTEIN
        from bib_ray.backbones import build_backbone
        from bib_ray.devices import granted_devices

        devices = granted_devices(2)
        backbone = build_backbone(f"hf:{esm_path}", PROTEIN, dtype="bfloat16", devices=devices)
        logits = torch.randn(2, 12, len(PROTEIN), device=backbone.device, requires_grad=True)
        phi = backbone.embed(torch.softmax(logits, -1))
        phi.sum().backward()
        return {"split": backbone.split, "weight_devices": sorted({str(p.device) for p in backbone.parameters()}),
                "phi": f"{phi.dtype} on {phi.device}", "grad": bool(logits.grad.abs().sum() > 0)}


def _check_grants(ray, work: Path) -> list[Row]:
    one_gpu, no_gpu = ray.remote(Probe).options(num_gpus=1).remote(), ray.remote(Probe).options(num_gpus=0).remote()
    got = ray.get(one_gpu.devices.remote())
    ok = got["auto"].startswith("cuda") and got["auto"] == got["cuda"] and len(got["gpu_ids"]) == 1
    rows = [("num_gpus=1: granted_device('auto')", "cuda:<its one GPU>",
             f"{got['auto']} (gpu_ids {got['gpu_ids']}, CUDA_VISIBLE_DEVICES={got['visible']})", _status(ok))]
    got = ray.get(no_gpu.devices.remote())
    rows.append(("num_gpus=0: granted_device('auto')", "cpu",
                 f"{got['auto']} (torch sees cuda: {got['torch_sees_cuda']})", _status(got["auto"] == "cpu")))
    rows.append(("num_gpus=0: granted_device('cuda')", "UserError (granted no GPU)", got["cuda"][:70],
                 _status(got["cuda"].startswith("UserError") and "granted no GPU" in got["cuda"])))
    return rows


def _check_bf16(ray, work: Path) -> list[Row]:
    esm = _esm_dir(work / "esm_small")
    rows = []
    for name, result in ray.get(ray.remote(Probe).options(num_gpus=1).remote().bf16_embedding.remote(esm)).items():
        ok = (result["weights"] == "torch.bfloat16" and result["phi"].startswith("torch.float32 on cuda")
              and result["rel_err"] < 0.02 and result["grad"])
        rows.append((f"bf16 {name} backbone on the actor's GPU", "float32 phi on cuda, rel err < 0.02, grads",
                     f"{result['phi']}, rel err {result['rel_err']:.4f}, grads {result['grad']}", _status(ok)))
    return rows


def _check_shipping(ray, work: Path) -> list[Row]:
    from bib_ray.core.proxy import BidirectionalProxy
    from bib_ray.core.statistics import EmbeddingStatistics
    from bib_ray.devices import cpu_copy

    gen = torch.Generator().manual_seed(0)
    phi, y = torch.randn(50, 16, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen)
    proxy = BidirectionalProxy(EmbeddingStatistics.from_rows(phi, y), device="cuda:0")
    designs = torch.randn(5, 16, generator=gen, dtype=torch.float64)
    expected = proxy.predict(designs.cuda()).cpu()
    actor = ray.remote(Probe).options(num_gpus=1).remote()
    got = ray.get(actor.predict.remote(ray.put(cpu_copy(proxy)), designs))
    driver = sorted({str(t.device) for t in proxy.buffers()})
    same = torch.allclose(got["prediction"], expected)
    ok = driver == ["cuda:0"] and got["device"].startswith("cuda") and same
    return [("proxy shipped with cpu_copy to a GPU actor", "driver's stays on cuda:0, same predictions",
             f"driver {driver}, actor {got['device']}, equal {same}", _status(ok))]


def _check_split(ray, work: Path) -> list[Row]:
    name = "num_gpus=2: ESM split over two GPUs"
    gpus = torch.cuda.device_count()
    if gpus < 2:
        return [(name, "2 GPUs", f"{gpus} GPU", "SKIP")]
    actor = ray.remote(Probe).options(num_gpus=2).remote()
    got = ray.get(actor.split.remote(_esm_dir(work / "esm_big", 8, 256)))
    ok = got["split"] and len(got["weight_devices"]) == 2 and got["phi"].startswith("torch.float32") and got["grad"]
    return [(name, "weights on 2 GPUs, float32 phi, grads",
             f"{got['weight_devices']}, {got['phi']}, grads {got['grad']}", _status(ok))]


CHECKS: list[Callable[[object, Path], list[Row]]] = [_check_grants, _check_bf16, _check_shipping, _check_split]


def _run_checks(ray, work: Path) -> list[Row]:
    """Every check's rows; a check that raises gives one FAIL row with the error (traceback on stderr)."""
    rows: list[Row] = []
    for check in CHECKS:
        try:
            rows.extend(check(ray, work))
        except Exception as error:
            traceback.print_exc()
            last_line = (str(error).strip().splitlines() or [""])[-1]
            rows.append((check.__name__.removeprefix("_check_"), "runs", f"{type(error).__name__}: {last_line}"[:100],
                         "FAIL"))
    return rows


def _status(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _print(rows: list[Row]) -> None:
    header = ("check", "expected", "got", "status")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)))


def main() -> int:
    if not torch.cuda.is_available():
        print("no GPU: skipped")
        return 0
    import ray

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), str(REPO_ROOT / "tests"),
                                                             os.environ.get("PYTHONPATH")]))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as temp:
        ray.init(num_cpus=4, num_gpus=torch.cuda.device_count(), include_dashboard=False, log_to_driver=False,
                 _temp_dir=str(Path(temp) / "ray"))
        try:
            rows = _run_checks(ray, Path(temp))
        finally:
            ray.shutdown()
    _print(rows)
    failed = [row[0] for row in rows if row[3] == "FAIL"]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed or skipped"
          + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
