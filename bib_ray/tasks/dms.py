"""Protein deep-mutational-scan tasks: avgfp, e4b (Ube4b) and pab1, from ../shared/data/dms.

Designs are whole proteins (every residue is a design variable). Offline set, following BIB:
the variants scoring at or below the scan's median. The oracle is approximate (an MLP on the
substitutions, trained on the whole scan; see ``dms_oracle``), and it scores only designs
within the mutation radius the offline set supports: the largest number of substitutions that
at least 1 % of the offline variants carry (avgfp 10, e4b 5, pab1 2; the top half of the scan
plays no part in it), each substitution seen in the scan. Designs outside are reported UNKNOWN.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.alphabets import PROTEIN, encode
from bib_ray.errors import UserError
from bib_ray.tasks.base import Task
from bib_ray.tasks.data_dir import find_data_file
from bib_ray.tasks.dms_oracle import train_dms_oracle

RADIUS_SUPPORT = 0.01  # a mutation count is "supported" when at least this share of the scan carries it
_SUBSTITUTION = re.compile(r"^([A-Z])(\d+)([A-Z*])$")
STOP = "*"


@dataclass(frozen=True)
class Scan:
    name: str
    file: str
    wild_type: str
    offset: int  # subtract from the numbers in `variant` to get 0-based positions
    description: str


SCANS = {
    "avgfp": Scan("avgfp", "dms/avgfp.tsv",
                  "SKGEELFTGVVPILVELDGDVNGHKFSVSGEGEGDATYGKLTLKFICTTGKLPVPWPTLVTTLSYGVQCFSRYPDHMKQHDFFKSAMPEGYVQE"
                  "RTIFFKDDGNYKTRAEVKFEGDTLVNRIELKGIDFKEDGNILGHKLEYNYNSHNVYIMADKQKNGIKVNFKIRHNIEDGSVQLADHYQQNTPIG"
                  "DGPVLLPDNHYLSTQSALSKDPNEKRDHMVLLEFVTAAGITHGMDELYK", 0,
                  "avGFP brightness (Sarkisyan 2016), 237 aa, approximate oracle"),
    "e4b": Scan("e4b", "dms/ube4b.tsv",
                "IEKFKLLAEKVEEIVAKNARAEIDYSDAPDEFRDPLMDTLMTDPVRLPSGTVMDRSIILRHLLNSPTDPFNRQMLTESMLEPVPELKEQIQAWMREKQSSDH",
                0, "Ube4b U-box ubiquitin ligase activity (Starita 2013), 102 aa, approximate oracle"),
    "pab1": Scan("pab1", "dms/pab1.tsv",
                 "GNIFIKNLHPDIDNKALYDTFSVFGDILSSKIATDENGKSKGFGFVHFEEEGAAKEAIDALNGMLLNGQEIYVAP", 126,
                 "Pab1 RRM binding (Melamed 2013), 75 aa, approximate oracle"),
}


def parse_variant(text: str, scan: Scan, row: int, path: Path) -> list[tuple[int, int]]:
    """'A108D,N144D' -> [(position, residue index), ...], checked against the wild type; a stop is -1."""
    out = []
    for token in str(text).split(","):
        match = _SUBSTITUTION.match(token.strip())
        if match is None:
            raise UserError(f"{path}: row {row + 1}: cannot read substitution {token!r} (expected like A108D)")
        original, number, new = match.group(1), int(match.group(2)), match.group(3)
        position = number - scan.offset
        if not 0 <= position < len(scan.wild_type) or scan.wild_type[position] != original:
            raise UserError(f"{path}: row {row + 1}: {token} does not match the {scan.name} wild type")
        if new != STOP and new not in PROTEIN:
            raise UserError(f"{path}: row {row + 1}: {token}: {new!r} is not one of the 20 amino acids")
        out.append((position, -1 if new == STOP else PROTEIN.index(new)))
    return out


def mutation_radius(counts: np.ndarray) -> int:
    """Largest substitution count carried by at least RADIUS_SUPPORT of the variants."""
    values, frequency = np.unique(counts, return_counts=True)
    supported = values[frequency >= RADIUS_SUPPORT * len(counts)]
    return int(supported.max())


@functools.lru_cache(maxsize=None)
def _load_scan(name: str, path: Path) -> Task:
    scan = SCANS[name]
    table = pd.read_csv(path, sep="\t")
    if not {"variant", "score"} <= set(table.columns):
        raise UserError(f"{path}: expected columns 'variant' and 'score'")
    wild_type = encode([scan.wild_type], PROTEIN)[0]
    parsed = [parse_variant(v, scan, i, path) for i, v in enumerate(table["variant"])]
    scores = table["score"].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        bad = int(np.flatnonzero(~np.isfinite(scores))[0]) + 1
        raise UserError(f"{path}: row {bad}: score is not a finite number")
    # Nonsense variants (a stop codon) are outside the 20-letter design space: set aside, counted.
    keep = [i for i, subs in enumerate(parsed) if all(residue >= 0 for _, residue in subs)]
    substitutions = [parsed[i] for i in keep]
    y = scores[keep]
    vocab = len(PROTEIN)
    flat = [np.array([p * vocab + a for p, a in subs], dtype=np.int64) for subs in substitutions]
    counts = np.array([len(s) for s in substitutions])
    offline = np.flatnonzero(y <= np.median(y))
    radius = mutation_radius(counts[offline])
    oracle = train_dms_oracle(wild_type, flat, y, vocab, radius)
    x = np.broadcast_to(wild_type, (len(offline), len(wild_type))).copy()
    for row, source in enumerate(offline):
        for position, residue in substitutions[source]:
            x[row, position] = residue
    return Task(name=name, alphabet=PROTEIN, x=x, y=y[offline], oracle=oracle,
                score_range=(float(y.min()), float(y.max())), reference=wild_type, description=scan.description,
                details={"split": "BIB: offline = variants at or below the median score",
                         "offline_rows": int(len(offline)), "scan_variants": int(len(y)),
                         "nonsense_variants_set_aside": int(len(parsed) - len(keep)),
                         "mutation_radius": radius, "mutation_radius_from": "offline rows", "oracle": "approximate: substitution MLP on the whole scan; "
                         "designs beyond the radius or with unseen substitutions are unknown",
                         **{f"oracle_{k}": v for k, v in oracle.quality.items()}})


def load_dms(name: str, data_dir: Path | None) -> Task:
    """The DMS task ``name`` (avgfp, e4b, pab1); the oracle is trained once per process."""
    scan = SCANS[name]
    path = find_data_file(data_dir, name, [scan.file])
    return dataclasses.replace(_load_scan(name, path.resolve()))  # a fresh Task sharing the cached arrays
