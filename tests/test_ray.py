"""The Ray engine: builds, additions and batch queries byte-identical to the local engine's."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.engine import add, batch_hits, build
from glovefaiss.errors import EngineError
from glovefaiss.index.search import Index

from .ray_helpers import assert_same_build, digests, ray_config, ray_corpus, ray_vectors

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    # Workers import glovefaiss from this worktree: Ray gives local workers the driver's environment.
    os.environ["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(num_cpus=2, object_store_memory=100 << 20, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray-data")
    (d / "int").mkdir()
    (d / "str").mkdir()
    return {"vectors": ray_vectors(d), "int": ray_corpus(d / "int"), "str": ray_corpus(d / "str", string_ids=True, seed=1)}


def _pair(data, tmp_path, corpus, **build_opts):
    """(local, ray) index directories of ``corpus`` built with ``build_opts``."""
    out = {}
    for engine in ("local", "ray"):
        cfg = ray_config(data["vectors"], engine=engine, **build_opts)
        out[engine] = build(corpus, tmp_path / engine, cfg, progress=False).out_dir
    return out["local"], out["ray"]


@pytest.mark.slow
@pytest.mark.parametrize("kind,ids", [("flat", "int"), ("ivf", "int"), ("ivf", "str"), ("ivf-fastscan", "int")])
def test_ray_build_is_byte_identical(ray_instance, data, tmp_path, kind, ids):
    local, ray = _pair(data, tmp_path, data[ids], index=kind)
    assert_same_build(local, ray)
    m = json.loads((ray / "manifest.json").read_text())
    assert m["engine"]["engine"] == "ray" and m["engine"]["workers"] == 2 and m["engine"]["parts"] == 8
    assert m["config"]["build"]["engine"] == "ray"
    assert json.loads((local / "manifest.json").read_text())["engine"] == {"engine": "local", "workers": 1}


@pytest.mark.slow
def test_killed_worker_is_retried_and_output_identical(ray_instance, data, tmp_path, monkeypatch):
    marker = tmp_path / "crashed"
    monkeypatch.setenv("GLOVEFAISS_RAY_TEST_CRASH", f"3:{marker}")
    local, ray = _pair(data, tmp_path, data["int"], index="ivf", workers=1)
    assert marker.exists()  # part 3's first attempt did die
    assert_same_build(local, ray)


@pytest.mark.slow
def test_interrupted_ray_build_resumes_with_either_engine(ray_instance, data, tmp_path, monkeypatch):
    from glovefaiss.index import build as build_module

    clean = build(data["int"], tmp_path / "clean", ray_config(data["vectors"], index="ivf"), progress=False).out_dir
    original = build_module._BuildState.add

    def add_then_die(self, shard):
        original(self, shard)
        if len(self.shards) == 3:
            raise KeyboardInterrupt  # the driver stops, as on Ctrl-C, with 3 shards journalled

    for resume_engine in ("local", "ray"):
        out = tmp_path / f"idx-{resume_engine}"
        monkeypatch.setattr(build_module._BuildState, "add", add_then_die)
        with pytest.raises(KeyboardInterrupt):
            build(data["int"], out, ray_config(data["vectors"], index="ivf", engine="ray"), progress=False)
        monkeypatch.setattr(build_module._BuildState, "add", original)
        state = json.loads((tmp_path / f".idx-{resume_engine}.partial" / "build-state.json").read_text())
        assert [s["file"] for s in state["shards"]] == [f"shards/part-{i:05d}.parquet" for i in range(3)]
        resumed = build(data["int"], out, ray_config(data["vectors"], index="ivf", engine=resume_engine),
                        resume=True, progress=False)
        assert resumed.manifest.timings["resumed_documents"] == 3 * 377
        assert_same_build(clean, out)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["flat", "ivf-fastscan"])
def test_ray_add_is_byte_identical(ray_instance, data, tmp_path, kind):
    base = build(data["str"][:1], tmp_path / "base", ray_config(data["vectors"], index=kind), progress=False).out_dir
    extra = ray_corpus(tmp_path, sizes=(800, 401), string_ids=True, seed=5, first_id=10_000)
    out = {}
    for engine in ("local", "ray"):
        out[engine] = tmp_path / engine
        shutil.copytree(base, out[engine])
        result = add(out[engine], extra, engine=engine, workers=2, progress=False)
        assert result.added == 1201
    assert_same_build(out["local"], out["ray"])
    m = json.loads((out["ray"] / "manifest.json").read_text())
    assert m["additions"][-1]["engine"]["engine"] == "ray"


@pytest.mark.slow
def test_ray_batch_query_equals_local(ray_instance, data, tmp_path):
    from glovefaiss.index.hits import FORMATS
    from glovefaiss.index.hits import render as _render

    cfg = ray_config(data["vectors"], index="ivf", engine="local")
    index_dir = build(data["int"], tmp_path / "idx", cfg, progress=False).out_dir
    texts = [f"w{i % 300} w{(i * 7) % 300} w{(i * 13) % 300}" for i in range(5000)]  # > one FAISS query block
    qids = [f"q{i}" for i in range(len(texts))]
    local = Index.load(index_dir, mmap=True).hits(texts, k=5, query_ids=qids)
    remote = batch_hits(index_dir, texts, k=5, query_ids=qids, workers=2)
    assert remote == local
    for fmt in FORMATS:
        if fmt != "parquet":  # a file format: compared through the CLI below
            assert _render(remote, fmt) == _render(local, fmt)
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(texts[:50]) + "\n")
    runs = [CliRunner().invoke(cli, ["query", str(index_dir), "--queries", str(queries), "--format", "jsonl",
                                     *engine, "-k", "3"]) for engine in ([], ["--engine", "ray", "--workers", "2"])]
    assert [r.exit_code for r in runs] == [0, 0], runs[1].output
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.count("\n") == 150


@pytest.mark.slow
def test_cli_build_with_ray_and_a_file_uri(ray_instance, data, tmp_path):
    uris = ["file://" + f for f in data["int"]]
    args = ["build", *uris, "--config", str(_config_file(data, tmp_path)), "--index", "ivf"]
    local = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "local")])
    ray = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"])
    assert (local.exit_code, ray.exit_code) == (0, 0), ray.output
    assert_same_build(tmp_path / "local", tmp_path / "ray")
    m = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert m["corpus"]["files"] == uris and m["engine"]["workers"] == 2


def _config_file(data, tmp_path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"embedding:\n  model_name: {data['vectors']}\nbuild:\n  shard_rows: 377\n  batch_size: 100\n"
                    "  tune_queries: 200\n")
    return path


def test_file_uri_corpus_builds_like_paths(data, tmp_path):
    paths = data["int"]
    a = build(paths, tmp_path / "a", ray_config(data["vectors"], index="flat"), progress=False).out_dir
    b = build(["file://" + p for p in paths], tmp_path / "b", ray_config(data["vectors"], index="flat"),
              progress=False).out_dir
    assert digests(a) == digests(b)


def test_missing_ray_is_one_clear_line(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(EngineError, match=r"^--engine ray needs Ray: pip install 'glovefaiss\[ray\]'$"):
        build(data["int"], tmp_path / "x", ray_config(data["vectors"], engine="ray"), progress=False)
    result = CliRunner().invoke(cli, ["build", *data["int"], "--out", str(tmp_path / "y"), "--engine", "ray",
                                      "--config", str(_config_file(data, tmp_path))])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == "Error: --engine ray needs Ray: pip install 'glovefaiss[ray]'"
    assert not (tmp_path / "y").exists()


@pytest.mark.slow
def test_ray_output_without_hits_names_the_stored_columns_as_local_does(ray_instance, data, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    corpus = tmp_path / "c.parquet"
    pq.write_table(pa.table({"id": [1, 2], "text": ["w1 w2", "w3"], "year": pa.array([2001, 2002], pa.int32())}),
                   corpus)
    index_dir = build([str(corpus)], tmp_path / "idx", ray_config(data["vectors"], engine="local", columns="year"),
                      progress=False).out_dir
    queries = tmp_path / "q.txt"
    queries.write_text("qqqzzz\n")
    runs = [CliRunner().invoke(cli, ["query", str(index_dir), "--queries", str(queries), "--format", "csv", *engine])
            for engine in ([], ["--engine", "ray", "--workers", "2"])]
    assert [r.exit_code for r in runs] == [0, 0], runs[1].output
    assert runs[0].stdout == runs[1].stdout == "query_id,rank,id,score,text,year\n"
