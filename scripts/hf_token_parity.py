"""Parity of the soft path with each model family's own tokenizer, as a Markdown table.

Run from the repository root (CPU, no network, about a minute):
    python scripts/hf_token_parity.py
For every family in ``tests/hf_models.FAMILIES`` (small random models built from each family's config
class, tokenizers in the family's real vocabulary format) it builds the backbone from ``hf:<dir>``,
embeds the family's test sequences as one-hot rows through the soft path, and prints the largest
|soft - token path| over sequences and hidden units, where the token path is the family's tokenizer
applied to the sequence the way its users call it and the model run on the ids
(``hf_models.reference_phi``), for mean pooling and, where the model has a CLS token, cls pooling.
Exits 1 when a difference exceeds 1e-5.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

TOLERANCE = 1e-5


def main() -> int:
    from hf_models import FAMILIES, reference_phi
    from transformers.utils import logging

    from bib_ray.alphabets import encode
    from bib_ray.backbones import build_backbone

    logging.set_verbosity_error()
    logging.disable_progress_bar()

    rows, worst = [], 0.0
    with tempfile.TemporaryDirectory() as root:
        for index, family in enumerate(FAMILIES):
            directory = family.build(Path(root) / f"family{index}")
            codes = torch.as_tensor(encode(list(family.sequences), family.alphabet))
            probs = torch.nn.functional.one_hot(codes, len(family.alphabet)).to(torch.float32)
            diffs = {}
            for pooling in ("mean", "cls") if family.has_cls else ("mean",):
                backbone = build_backbone(family.spec(directory, pooling=pooling), family.alphabet)
                reference, _ = reference_phi(family, directory, list(family.sequences), pooling)
                with torch.no_grad():
                    diffs[pooling] = float((backbone.embed(probs) - reference).abs().max())
            worst = max(worst, *diffs.values())
            text = "spaced" if backbone.layout.spaced else "raw"
            rows.append(f"| {family.name} | {backbone.scheme} | {text} | {diffs['mean']:.1e} | "
                        f"{format(diffs['cls'], '.1e') if 'cls' in diffs else 'no CLS token'} |")
    print("| family | scheme | tokenizer input | max abs diff, mean pooling | max abs diff, cls pooling |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
