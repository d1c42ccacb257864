"""The default-backbone rule: highest mean (100th + 50th) over the tasks all candidates ran, within the cost limit."""

import pandas as pd

from bib_ray.bench.default_choice import compare, scores


def suite_rows(backbone: str, task: str, p100: float, p50: float, seconds: float) -> list[dict]:
    return [dict(task=task, backbone=backbone, method="bib", seed=seed, p100=p100, p50=p50, seconds=seconds)
            for seed in range(2)]


def test_the_rule_takes_the_best_sum_within_the_cost_limit_on_common_tasks():
    frame = pd.DataFrame(suite_rows("a", "t1", 0.9, 0.5, 10) + suite_rows("a", "t2", 0.5, 0.3, 10)
                         + suite_rows("b", "t1", 0.8, 0.7, 20) + suite_rows("b", "t2", 0.6, 0.4, 20)
                         + suite_rows("fast", "t1", 1.0, 1.0, 900) + suite_rows("fast", "t2", 1.0, 1.0, 900)
                         + suite_rows("b", "t3", 0.0, 0.0, 20))  # t3: only b ran it, so it is left out
    table = compare(scores(frame), ["a", "b", "fast"], max_seconds=300)
    assert list(table.backbone) == ["b", "a", "fast"]  # fast scores best but is over the limit
    assert table.loc[0, "sum"] == 0.8 / 2 + 0.7 / 2 + 0.6 / 2 + 0.4 / 2 and table.loc[0, "tasks"] == 2
    assert not table.loc[2, "within_cost"]
