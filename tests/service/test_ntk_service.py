"""The NTK proxy served like any other: an artifact of the NTK proxy (kernel rows, dual weights, label
statistics, aux ensemble) answers /score with the scores the in-process proxy gives.

One Serve instance for the module on a free 127.0.0.1 port, always shut down.
"""

from __future__ import annotations

import numpy as np
import pytest
import requests

from bib_ray.core.aux_ensemble import AuxiliarySettings
from bib_ray.distributed.cluster_utils import free_port
from bib_ray.proxy.artifacts import save_proxy_artifact
from bib_ray.proxy.fitting import fit_aux_ensemble, fit_proxy
from bib_ray.proxy.scoring import score_codes
from bib_ray.run.config import build_config
from bib_ray.service import launch
from bib_ray.service.settings import DEFAULT_DEPLOYMENT, ServeDeployment, ServiceSettings
from bib_ray.tasks import load_task
from tests.helpers import ensure_local_ray


@pytest.fixture(scope="module")
def fitted(shared_data_dir):
    """The NTK proxy on 800 of tfbind8's rows and a 3-member aux ensemble, in this process."""
    task = load_task("tfbind8", shared_data_dir)
    settings = build_config(dict(task="tfbind8", backbone="ntk", ntk_rows=800, aux_max_rows=1000,
                                 device="cpu")).proxy_settings()
    fitted = fit_proxy(task, settings)
    aux, _ = fit_aux_ensemble(fitted.statistics, fitted.aux_phi, fitted.aux_labels(),
                              AuxiliarySettings(members=3, epochs=2, max_rows=1000), 0)
    return fitted, aux


@pytest.fixture(scope="module")
def service(fitted, tmp_path_factory):
    proxy, aux = fitted
    artifact = save_proxy_artifact(tmp_path_factory.mktemp("ntk") / "proxy", proxy.task, proxy.lm, proxy.statistics,
                                   proxy.proxy, aux)
    ensure_local_ray()
    settings = ServiceSettings(artifact=str(artifact), device="cpu")
    try:
        yield launch.deploy(settings, ServeDeployment(**dict(DEFAULT_DEPLOYMENT, port=free_port())))
    finally:
        launch.shutdown()


def test_served_ntk_scores_equal_the_in_process_proxy(fitted, service):
    proxy, aux = fitted
    task = proxy.task
    codes = task.x[np.random.default_rng(1).choice(len(task.y), 32, replace=False)]
    codes[:8, :2] = (codes[:8, :2] + 1) % 4  # some sequences the kernel has not seen
    answer = requests.post(f"{service}/score", json={"sequences": task.sequences(codes)}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"]["lm_id"] == "ntk"
    expected = score_codes(proxy.embedder, proxy.proxy, aux, codes)
    for key, values in expected.items():
        served = np.array([row[key] for row in body["scores"]])
        np.testing.assert_allclose(served, values, rtol=1e-9, atol=1e-9, err_msg=key)
    info = requests.get(f"{service}/info", timeout=30).json()
    assert (info["proxy"], info["lm_id"], info["offline_rows"]) == ("ntk", "ntk", len(task.y))
