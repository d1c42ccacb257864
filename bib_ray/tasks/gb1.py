"""GB1 four-site landscape (Wu et al. 2016): 149,361 of 20^4 variants measured.

The designed residues are positions V39, D40, G41, V54 of the 56-residue GB1 domain; the
LM reads the whole domain with the four sites filled in. The oracle is the measurement
table: an unmeasured variant is UNKNOWN (reported as such, never scored 0). Offline set:
variants with fitness at or below the 50th percentile (design-bench's standard split).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bib_ray.alphabets import PROTEIN, encode
from bib_ray.errors import UserError
from bib_ray.tasks.base import OracleKind, Task
from bib_ray.tasks.data_dir import find_data_file
from bib_ray.tasks.lookup_oracle import LookupOracle, build_table

GB1_DOMAIN = "MQYKLILNGKTLKGETTTEAVDAATAEKVFKQYANDNGVDGEWTYDDATKTFTVTE"
GB1_SITES = np.array([38, 39, 40, 53])  # 0-based positions of V39, D40, G41, V54


def load_gb1(data_dir: Path | None) -> Task:
    path = find_data_file(data_dir, "gb1", ["gb1/gb1_4site_fitness.csv"])
    table_rows = pd.read_csv(path)
    if not {"variant", "fitness"} <= set(table_rows.columns):
        raise UserError(f"{path}: expected columns 'variant' and 'fitness'")
    x = encode(table_rows["variant"].tolist(), PROTEIN)
    y = table_rows["fitness"].to_numpy(dtype=np.float64)
    oracle = LookupOracle(build_table(x, y, len(PROTEIN)), len(PROTEIN), OracleKind.NEAR_EXACT)
    offline = np.flatnonzero(y <= np.percentile(y, 50))
    return Task(name="gb1", alphabet=PROTEIN, x=x[offline], y=y[offline], oracle=oracle,
                score_range=(float(y.min()), float(y.max())),
                template=encode([GB1_DOMAIN], PROTEIN)[0], design_positions=GB1_SITES,
                description="GB1 IgG-binding fitness at 4 sites (V39 D40 G41 V54), near-exact oracle",
                details={"split": "standard", "offline_rows": int(len(offline)),
                         "oracle_coverage": oracle.coverage, "context": "GB1 domain, 56 aa"})
