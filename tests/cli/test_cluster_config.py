"""cluster.yaml passes Ray's own launcher schema offline; broken copies are rejected."""

import copy

import pytest
import yaml
from tests.helpers import REPO_ROOT

CLUSTER_YAML = REPO_ROOT / "cluster.yaml"


def validate(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.fixture(scope="module")
def cluster_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_is_valid(cluster_config):
    prepared = validate(cluster_config)
    types = prepared["available_node_types"]
    assert types["gpu_worker"]["resources"] == {"CPU": 4, "GPU": 1}
    assert types["head"]["resources"]["CPU"] > 0 and "GPU" not in types["head"]["resources"]
    assert prepared["head_node_type"] == "head"
    setup = " ".join(prepared["setup_commands"])
    assert "torch==2.13.0" in setup and "bib-ray" in setup
    assert "BIB_RAY_STORAGE=s3://" in setup  # sweeps need storage every node reaches (nodes share no disk)
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())


@pytest.mark.parametrize("break_it,message", [
    (lambda c: c.update(max_wrkers=3), "'max_wrkers' was unexpected"),
    (lambda c: c["available_node_types"]["gpu_worker"].pop("node_config"), "'node_config' is a required property"),
    (lambda c: c.update(head_node_type="nope"), "must be one of `available_node_types`"),
    (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=9),  # more than max_workers: 8
     "smaller than the sum of `min_workers`"),
    (lambda c: c["provider"].update(type="floppy-disk-cloud"), "Unsupported node provider"),
    (lambda c: c["available_node_types"]["gpu_worker"].update(resources="lots"), "'lots' is not of type 'object'"),
])
def test_broken_copies_are_rejected(cluster_config, break_it, message):
    broken = copy.deepcopy(cluster_config)
    break_it(broken)
    with pytest.raises(Exception, match=message):
        validate(broken)
