"""Mistakes with Ray's options: one line each, said before Ray starts, and never a hang."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli

from .ray_helpers import ray_corpus, ray_vectors


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray-errors")
    vectors = ray_vectors(d)
    config = d / "cfg.yaml"
    config.write_text(f"embedding:\n  model_name: {vectors}\nbuild:\n  shard_rows: 377\n  batch_size: 100\n"
                      "  tune_queries: 200\n")
    corpus = ray_corpus(d)
    out = d / "idx"
    r = CliRunner().invoke(cli, ["build", *corpus, "--out", str(out), "--index", "flat", "--config", str(config)])
    assert r.exit_code == 0, r.output
    return {"corpus": corpus, "config": str(config), "index": str(out)}


def _last_line(args) -> tuple[int, str]:
    r = CliRunner().invoke(cli, args)
    return r.exit_code, r.output.strip().splitlines()[-1]


def test_ray_options_without_the_ray_engine(setup, tmp_path):
    assert _last_line(["build", *setup["corpus"], "--out", str(tmp_path / "a"), "--workers", "2",
                       "--config", setup["config"]]) == (1, "Error: --workers needs --engine ray")
    assert _last_line(["add", setup["index"], *setup["corpus"], "--workers", "2"]) == \
        (1, "Error: --workers needs --engine ray")
    assert _last_line(["query", setup["index"], "w1", "--ray-address", "auto"]) == \
        (1, "Error: --ray-address needs --engine ray")
    assert not (tmp_path / "a").exists()


def test_cheap_checks_come_before_ray_starts(setup, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    started = []

    def init(*args, **kwargs):
        started.append(kwargs)
        raise RuntimeError("Ray was started")

    monkeypatch.setattr(ray, "init", init)
    missing = str(tmp_path / "missing.parquet")
    code, line = _last_line(["build", missing, "--out", str(tmp_path / "b"), "--engine", "ray",
                             "--config", setup["config"]])
    assert code == 1 and line.startswith("Error: ") and "missing.parquet" in line
    code, line = _last_line(["build", *setup["corpus"], "--out", setup["index"], "--engine", "ray",
                             "--config", setup["config"]])
    assert code == 1 and line.startswith("Error: ") and "--overwrite" in line
    assert started == []  # neither mistake waited for a Ray instance


def test_an_unreachable_cluster_is_one_line_at_once(setup, tmp_path):
    pytest.importorskip("ray")
    with socket.socket() as s:  # a port nothing listens on once this closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    code, line = _last_line(["build", *setup["corpus"], "--out", str(tmp_path / "c"), "--engine", "ray",
                             "--ray-address", address, "--config", setup["config"]])
    assert (code, line) == (1, f"Error: cannot reach a Ray cluster at {address} (Connection refused); start one "
                               "there (ray start --head) or give its address to --ray-address")
    assert not Path(tmp_path / "c").exists()
