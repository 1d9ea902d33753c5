"""A build on a simulated two-node Ray cluster (one CPU each) is byte-identical to the local build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from glovefaiss.engine import build

from .ray_helpers import assert_same_build, ray_config, ray_corpus, ray_vectors

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def two_nodes():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 80 << 20,
                                                            "include_dashboard": False})
    cluster.add_node(num_cpus=1, object_store_memory=80 << 20)
    ray.init(address=cluster.address, logging_level="ERROR")
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.slow
def test_two_node_build_is_byte_identical(two_nodes, tmp_path):
    vectors = ray_vectors(tmp_path)
    corpus = ray_corpus(tmp_path, string_ids=True, seed=2)
    local = build(corpus, tmp_path / "local", ray_config(vectors, index="ivf-fastscan"), progress=False).out_dir
    ray = build(corpus, tmp_path / "ray", ray_config(vectors, index="ivf-fastscan", engine="ray"),
                progress=False).out_dir
    assert_same_build(local, ray)
    engine = json.loads((ray / "manifest.json").read_text())["engine"]
    assert engine["workers"] == 2 and engine["nodes_used"] == 2 and engine["cpus"] == 2


@pytest.mark.slow
def test_one_worker_reserves_no_more_than_a_node_has(two_nodes, tmp_path):
    # Two CPUs in all, one a node: a worker asking for both could never be placed.
    vectors = ray_vectors(tmp_path)
    corpus = ray_corpus(tmp_path, seed=3)
    local = build(corpus, tmp_path / "local", ray_config(vectors, index="flat"), progress=False).out_dir
    ray = build(corpus, tmp_path / "ray", ray_config(vectors, index="flat", engine="ray", workers=1),
                progress=False).out_dir
    assert_same_build(local, ray)
    engine = json.loads((ray / "manifest.json").read_text())["engine"]
    assert engine["workers"] == 1 and engine["cpus_per_worker"] == 1.0 and engine["threads_per_worker"] == 1
