"""IVF-Flat's forecast tuning curve against the real index, and the build path it prices out."""

import json

import faiss
import numpy as np
import pytest

from glovefaiss.index import faiss_ops as faiss_index
from glovefaiss.index import families
from glovefaiss.index.build import build
from glovefaiss.index.forecast import forecast, list_ranks, stand_in
from glovefaiss.index.tuning import QuerySet, bucket_recall, exact_neighbours, nprobe_grid, recall_per_query

from .test_tuning_buckets import clustered  # noqa: F401  (a module-scoped fixture)


def _data(seed=5, n=6000, d=16, k=10):
    """Unit vectors around 30 centres, and 300 queries of three token-count buckets with their exact top-k."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((30, d))
    x = centres[rng.integers(30, size=n)] + 0.8 * rng.standard_normal((n, d))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = x[rng.choice(n, 300, replace=False)] + 0.3 * rng.standard_normal((300, d)).astype(np.float32)
    q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
    qs = QuerySet(q, rng.choice([2, 8, 20], size=300))
    labels, vectors, _ = exact_neighbours([(x[:2500], None), (x[2500:], np.arange(2500, n))], q, k)
    return x, qs, labels, vectors


def test_exact_neighbours_match_numpy_over_chunks():
    x, qs, labels, vectors = _data()
    order = np.argsort(-(qs.vectors @ x.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(labels, order)
    np.testing.assert_array_equal(vectors, x[order])


def test_the_forecast_recall_is_the_built_ivf_flat_recall_at_every_nprobe():
    x, qs, labels, vectors = _data()
    index = faiss_index.make_index(x.shape[1], "IVF40,Flat", False)
    faiss_index.train(index, x, 0)
    quantizer = faiss_index.quantizer_of(index)
    fc = forecast(quantizer, qs, vectors, x, len(x), target_recall=0.95)
    index.add(x)
    assert len(fc["tried"]) > 2
    for entry in fc["tried"]:
        index.nprobe = entry["nprobe"]
        _, found = index.search(qs.vectors, 10)
        real = bucket_recall(recall_per_query(found, labels), qs.buckets(), 10)
        for name, b in real.items():
            assert entry["buckets"][name]["recall"] == b["recall"]
            assert entry["buckets"][name]["recall_lower_bound"] == b["recall_lower_bound"]
    # each bucket's setting is its first that reaches the target on the curve
    for name, params in fc["params_by_bucket"].items():
        reached = [e["nprobe"] for e in fc["tried"] if e["buckets"][name]["recall_lower_bound"] >= 0.95]
        assert params["nprobe"] == reached[0]
    assert fc["forecast"] and fc["reached"] and fc["p50_ms"] > 0
    # the entry's recall is with each bucket's own setting, as a built candidate's is
    own = np.empty(len(qs))
    for name, rows in qs.buckets().items():
        index.nprobe = fc["params_by_bucket"][name]["nprobe"]
        own[rows] = recall_per_query(index.search(qs.vectors[rows], 10)[1], labels[rows])
    assert fc["recall"] == round(float(own.mean()), 4)


def test_list_ranks_and_the_stand_in_against_numpy():
    x, qs, _, vectors = _data(seed=6)
    index = faiss_index.make_index(x.shape[1], "IVF25,Flat", False)
    faiss_index.train(index, x, 0)
    quantizer = faiss_index.quantizer_of(index)
    c = quantizer.reconstruct_n(0, 25)
    ranks, order = list_ranks(quantizer, qs.vectors, vectors)
    own = np.argmax(vectors.reshape(-1, x.shape[1]) @ c.T, axis=1).reshape(ranks.shape)
    by_score = np.argsort(-(qs.vectors @ c.T), axis=1, kind="stable")
    np.testing.assert_array_equal(order[:, 0], by_score[:, 0])
    expected = np.array([[np.flatnonzero(order[i] == own[i, j])[0] for j in range(10)] for i in range(len(own))])
    np.testing.assert_array_equal(ranks, expected)
    sample = x[:1000]
    ivf, sizes = stand_in(quantizer, sample, 3000)
    counts = np.bincount(np.argmax(sample @ c.T, axis=1), minlength=25)
    assert ivf.ntotal == 3000
    np.testing.assert_array_equal([ivf.invlists.list_size(i) for i in range(25)], 3 * counts)
    np.testing.assert_allclose(sizes, 3 * counts)


def test_auto_builds_the_alternative_on_the_forecast_quantizer_when_ivf_flat_is_priced_out(
        clustered, monkeypatch, tmp_path):  # noqa: F811
    out, _ = clustered
    m = json.loads((out / "manifest.json").read_text())
    monkeypatch.setattr(faiss_index, "choose_kind", lambda *a, **k: "ivf")
    monkeypatch.setattr(faiss_index, "alternatives", lambda *a, **k: ["ivf-fastscan"])
    # a budget no IVF-Flat forecast fits in: the alternative comes first, on the forecast's lists
    cfg = config_for(m, auto_latency_ms=1e-9, target_recall=0.99)
    result = build([m["corpus"]["files"][0]], tmp_path / "auto", cfg, progress=False)
    idx = result.manifest.index
    fc, alt = idx["candidates"]
    lists = faiss_index.forecast_nlist(3000)
    assert fc["forecast"] and fc["key"] == f"IVF{lists},Flat" and fc["nlist"] == lists and fc["add_s"] == 0.0
    assert fc["priced_out"] and not fc["reached"]  # as a walk given up at the budget
    assert alt["key"].startswith(f"IVF{lists},PQ") and alt["reached"]
    # Over the forecast's lists, fewer probes than the forecast gives any bucket are not walked.
    least = min(p["nprobe"] for p in fc["params_by_bucket"].values())
    assert least > 1 and min(e["nprobe"] for e in alt["tried"]) == least
    assert idx["type"] == "ivf-fastscan" and idx["key"] == alt["key"]
    assert faiss_index.nlist_of(faiss.read_index(str(tmp_path / "auto" / "index.faiss"))) == lists
    # `info` says what auto compared, the forecast named as not built
    from click.testing import CliRunner

    from glovefaiss.cli import cli

    r = CliRunner().invoke(cli, ["info", str(tmp_path / "auto")])
    line = next(x for x in r.output.splitlines() if x.startswith("auto compared: "))
    assert line.startswith(f"auto compared: IVF-Flat forecast over {lists} lists, not built: recall@10 ")
    assert "(over the 1e-09 ms budget even with finer lists); ivf-fastscan (" in line
    r = CliRunner().invoke(cli, ["info", str(tmp_path / "auto"), "--json"])
    assert [c["forecast"] for c in json.loads(r.output)["candidates"]] == [True, None]


def test_auto_builds_ivf_flat_after_all_when_the_alternative_falls_short(clustered, monkeypatch, tmp_path):  # noqa: F811
    out, _ = clustered
    m = json.loads((out / "manifest.json").read_text())
    monkeypatch.setattr(faiss_index, "choose_kind", lambda *a, **k: "ivf")
    monkeypatch.setattr(faiss_index, "alternatives", lambda *a, **k: ["ivf-pq"])  # PQ codes alone: no 0.99
    cfg = config_for(m, auto_latency_ms=1e-9, target_recall=0.99)
    idx = build([m["corpus"]["files"][0]], tmp_path / "auto", cfg, progress=False).manifest.index
    kinds = [(c["type"], bool(c.get("forecast")), c["reached"]) for c in idx["candidates"]]
    # the alternative on the forecast's lists, then on the full count, then IVF-Flat on the latter's centroids
    assert kinds == [("ivf", True, False), ("ivf-pq", False, False), ("ivf-pq", False, False), ("ivf", False, True)]
    lists = [faiss_index.forecast_nlist(3000)] + [faiss_index.nlist_for(3000)] * 2
    assert [c["key"].split(",")[0] for c in idx["candidates"][1:]] == [f"IVF{n}" for n in lists]
    assert idx["type"] == "ivf" and idx["tuning"]["reached"] and idx["centroids"] == "reused from another candidate"
    assert faiss_index.nlist_of(faiss.read_index(str(tmp_path / "auto" / "index.faiss"))) == faiss_index.nlist_for(3000)


def config_for(m, **build):
    from .helpers import config_for as base

    return base(m["vectors"]["source"], index="auto", tune_queries=300, **build)


def test_a_forecast_within_the_budget_leaves_the_old_path(clustered, monkeypatch, tmp_path):  # noqa: F811
    out, _ = clustered
    m = json.loads((out / "manifest.json").read_text())
    monkeypatch.setattr(faiss_index, "choose_kind", lambda *a, **k: "ivf")
    monkeypatch.setattr(families, "FINER_LISTS", 0.0)
    idx = build([m["corpus"]["files"][0]], tmp_path / "auto", config_for(m, target_recall=0.9),
                progress=False).manifest.index
    assert idx["type"] == "ivf" and idx["key"] == f"IVF{faiss_index.nlist_for(3000)},Flat"
    assert idx["candidates"][0]["forecast"] and len(idx["candidates"]) == 2
    lists = faiss_index.forecast_nlist(3000)
    assert idx["centroids"] == f"the forecast's {lists} lists, each split in {families.LIST_PARTS}"


def test_split_lists_refines_each_list_within_its_own_members():
    rng = np.random.default_rng(5)
    x = np.hstack([rng.standard_normal((4000, 8)), -np.ones((4000, 1))]).astype(np.float32)
    faiss.normalize_L2(x)
    coarse = x[rng.choice(len(x), 6, replace=False)].copy()
    coarse[5] = np.eye(9, dtype=np.float32)[8]  # every point of x scores it below the others
    far = coarse[5] + 0.01 * rng.standard_normal((3, 9)).astype(np.float32)  # its only members
    faiss.normalize_L2(far)
    sample = np.concatenate([x, far])
    out = faiss_index.split_lists(coarse, sample, 4, seed=1)
    assert out.shape == (21, 9)  # five lists split in 4, the last kept whole
    np.testing.assert_array_equal(out, faiss_index.split_lists(coarse, sample, 4, seed=1))  # seeded
    lists = np.argmax(sample @ coarse.T, axis=1)  # the brute-force assignment
    assert (lists == 5).sum() < 16  # too few members to split
    np.testing.assert_array_equal(out[20], coarse[5])  # once: a repeated centroid would leave a list empty
    for i in range(5):
        members, parts = sample[lists == i], out[4 * i:4 * i + 4]
        assert len(members) >= 16
        np.testing.assert_allclose(np.linalg.norm(parts, axis=1), 1.0, atol=1e-5)  # spherical, as IVF's k-means
        # Each member fits its best part better, on average, than the one centroid it replaced.
        assert (members @ parts.T).max(axis=1).mean() > (members @ coarse[i]).mean() + 0.05


def test_blas_scoring_is_undone_when_the_last_overlapping_block_ends():
    before = faiss.cvar.distance_compute_blas_threshold
    lowered = min(before, faiss_index.BLAS_FROM_QUERIES)
    a, b = faiss_index.blas_scoring(), faiss_index.blas_scoring()
    a.__enter__()
    b.__enter__()  # overlapping, not nested: a ends first (two threads)
    a.__exit__(None, None, None)
    assert faiss.cvar.distance_compute_blas_threshold == lowered  # b still inside
    b.__exit__(None, None, None)
    assert faiss.cvar.distance_compute_blas_threshold == before  # a save-and-restore each would leave 20
    try:
        with faiss_index.blas_scoring():
            raise KeyError
    except KeyError:
        pass
    assert faiss.cvar.distance_compute_blas_threshold == before


def test_an_unreachable_target_leaves_the_forecast_short_at_the_last_setting():
    x, qs, _, vectors = _data(seed=7)
    index = faiss_index.make_index(x.shape[1], "IVF40,Flat", False)
    faiss_index.train(index, x, 0)
    fc = forecast(faiss_index.quantizer_of(index), qs, vectors, x[:2000], len(x), target_recall=1.01)
    last = nprobe_grid(40)[-1]
    assert not fc["reached"] and fc["params"] == {"nprobe": last}
    assert all(p == {"nprobe": last} for p in fc["params_by_bucket"].values())


def test_the_stand_in_stops_at_its_byte_cap(monkeypatch):
    from glovefaiss.index import forecast as fc_module

    x, _, _, _ = _data(seed=8)
    index = faiss_index.make_index(x.shape[1], "IVF20,Flat", False)
    faiss_index.train(index, x, 0)
    quantizer = faiss_index.quantizer_of(index)
    ivf, _ = stand_in(quantizer, x[:1000], 2500)  # two copies and a part of the third
    assert ivf.ntotal == 2500
    monkeypatch.setattr(fc_module, "STAND_IN_BYTES", 1700 * (4 * x.shape[1] + 8))
    ivf, sizes = stand_in(quantizer, x[:1000], 100_000)
    assert ivf.ntotal == 1700 and sizes.sum() == pytest.approx(100_000)
