"""How good is the fitted proxy? Rank correlation with the oracle over every sequence of a
small task, and the oracle score of the proxy's own best sequence.

    python -m bib_ray.bench.proxy_quality --data-dir ../shared/data --task tfbind8 --backbones tiny,onehot
"""

from __future__ import annotations

import argparse

import numpy as np

from bib_ray.tasks.evaluation import spearman
from bib_ray.backbones import BackboneSpec
from bib_ray.proxy.fitting import ProxySettings, fit_proxy
from bib_ray.tasks import load_task

MAX_ENUMERATED = 1 << 17


def all_sequences(vocab: int, length: int) -> np.ndarray:
    """Every sequence over ``vocab`` letters of ``length``, in table order."""
    index = np.arange(vocab**length)
    return (index[:, None] // vocab ** np.arange(length - 1, -1, -1)) % vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--task", default="tfbind8")
    parser.add_argument("--backbones", default="tiny,onehot")
    args = parser.parse_args()
    task = load_task(args.task, args.data_dir)
    vocab = len(task.alphabet)
    if task.oracle is None or vocab**task.length > MAX_ENUMERATED:
        raise SystemExit(f"{args.task}: needs an oracle and at most {MAX_ENUMERATED} sequences to enumerate")
    codes = all_sequences(vocab, task.length)
    truth = task.oracle(codes).scores
    known = ~np.isnan(truth)
    top = known & (truth > np.nanpercentile(truth, 50))
    print(f"| backbone | Spearman, all {known.sum()} | Spearman, unseen top half | oracle of proxy's best "
          f"(normalised) | best offline |\n|---|---|---|---|---|")
    for spec in args.backbones.split(","):
        fitted = fit_proxy(task, ProxySettings(BackboneSpec.parse(spec), embed_batch_size=4096))
        predicted = fitted.proxy.predict(fitted.embedder.embed_codes(codes, 4096)).numpy()
        best = codes[np.argmax(predicted)]
        print(f"| {spec} | {spearman(predicted[known], truth[known]):.3f} | "
              f"{spearman(predicted[top], truth[top]):.3f} | "
              f"{float(task.normalise(task.oracle(best[None]).scores[0])):.3f} | "
              f"{float(task.normalise(task.y.max())):.3f} |")


if __name__ == "__main__":
    main()
