"""Tuning and evaluation per query-length bucket: brute-force references, a bucket that falls short, the curve."""

import io
import json

import faiss
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.index import faiss_ops as faiss_index
from glovefaiss.index import families
from glovefaiss.index.build import build
from glovefaiss.index.recall import index_recall
from glovefaiss.index.search import Index
from glovefaiss.index.tuning import BUCKETS, QuerySet, bucket_summary, short_message, tune

from .helpers import config_for, write_corpus, write_glove_text


@pytest.fixture(scope="module")
def clustered(tmp_path_factory):
    """3,000 documents of 3-30 words over 20 word clusters in 12 dimensions, and an IVF index of them."""
    d = tmp_path_factory.mktemp("buckets")
    rng = np.random.default_rng(13)
    words = [f"w{i}" for i in range(400)]
    centres = rng.standard_normal((20, 12))
    rows = centres[np.arange(400) % 20] + 0.7 * rng.standard_normal((400, 12))
    vec = write_glove_text(d / "v.txt", words, rows.astype(np.float32))
    texts = []
    for _ in range(3000):
        c = rng.integers(20)
        own = [words[j] for j in range(c, 400, 20)]
        texts.append(" ".join(rng.choice(own, rng.integers(1, 20)).tolist() + rng.choice(words, rng.integers(2, 11)).tolist()))
    corpus = write_corpus(d / "c.parquet", list(range(3000)), texts, pa.int64())
    out = d / "idx"
    build([corpus], out, config_for(vec, index="ivf", tune_queries=300), progress=False)
    return out, texts


def _brute_force_recall(idx, out, queries, k):
    """Recall per bucket computed here from scratch: numpy scores over every document vector."""
    x = np.concatenate([v for v in _vectors(out)])
    buckets = {}
    for q in queries:
        v = idx.encode([q])[0]
        if not np.any(v):
            continue
        truth = set(np.argsort(-(x @ v), kind="stable")[:k].tolist())
        found = set(idx.search_vectors(v[None, :], k).rows[0].tolist())
        n = len(idx.encoder.tokeniser.tokenise_arrow(pa.array([q])).to_pylist()[0])
        name = next(b for b, lo, hi in BUCKETS if n >= lo and (hi is None or n <= hi))
        buckets.setdefault(name, []).append(len(truth & found) / k)
    return {b: float(np.mean(r)) for b, r in buckets.items()}


def _vectors(out):
    from glovefaiss.index.shards import ShardReader, iter_shard_vectors

    m = json.loads((out / "manifest.json").read_text())
    return [v for _, v in iter_shard_vectors(ShardReader(out, m["shards"]))]


def test_recall_per_bucket_matches_a_brute_force_reference(clustered):
    out, texts = clustered
    idx = Index.load(out)
    faiss_index.set_params(idx.faiss, {"nprobe": 2})  # an approximate setting: recall below 1 to compare
    idx.set_params_by_length([])  # for every query length
    rng = np.random.default_rng(1)
    queries = [" ".join(t.split()[:n]) for t, n in zip(texts[:240], rng.integers(1, 25, 240))]
    from glovefaiss.index.recall import recall_of, shard_rows
    from glovefaiss.index.tuning import encode_queries, exact_topk

    qs = encode_queries(queries, idx.encoder).known()
    r = recall_of(idx, qs, 10, exact_topk(shard_rows(out, idx.manifest.shards), qs.vectors, 10))
    ref = _brute_force_recall(idx, out, queries, 10)
    assert set(r["buckets"]) == set(ref) == {b for b, _, _ in BUCKETS}
    for name, b in r["buckets"].items():
        assert b["recall"] == pytest.approx(ref[name], abs=1e-4)
    assert min(b["recall"] for b in r["buckets"].values()) < 1.0
    # The index as built reaches what its manifest says, per bucket, on queries of its own kind.
    built = index_recall(out, n=300)
    assert set(built["buckets"]) == {b for b, _, _ in BUCKETS} and built["queries"] > 200


def test_the_build_tunes_for_the_worst_bucket_and_records_the_curve(clustered):
    out, _ = clustered
    t = json.loads((out / "manifest.json").read_text())["index"]["tuning"]
    assert set(t["buckets"]) == {b for b, _, _ in BUCKETS}
    uniform = next(e for e in t["tried"] if e["nprobe"] == t["params"]["nprobe"])
    assert t["recall_lower_bound"] == min(b["recall_lower_bound"] for b in t["buckets"].values())
    assert t["uniform_recall_lower_bound"] == min(b["recall_lower_bound"] for b in uniform["buckets"].values()) >= 0.95
    assert t["reached"] and t["recall_lower_bound"] >= 0.95 and t["short_buckets"] == []
    assert all("buckets" in e and e["p50_ms"] > 0 for e in t["tried"])
    # Every cheaper setting tried had a bucket below the target.
    assert all(e["recall_lower_bound"] < 0.95 for e in t["tried"] if e["nprobe"] < t["params"]["nprobe"])
    # Each bucket keeps the first setting where it reached the target: never more probes than the uniform one.
    for name, b in t["buckets"].items():
        own = b["params"]["nprobe"]
        assert b["recall_lower_bound"] >= 0.95 and own <= t["params"]["nprobe"]
        assert all(e["buckets"][name]["recall_lower_bound"] < 0.95 for e in t["tried"] if e["nprobe"] < own)
    assert [e["params"] for e in t["params_by_length"]] == [t["buckets"][name]["params"] for name, _, _ in BUCKETS]


def test_a_bucket_that_cannot_reach_the_target_is_reported_short():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 16)).astype(np.float32)
    faiss.normalize_L2(x)
    idx = faiss_index.make_index(16, "IVF16,PQ4x4", with_ids=False)
    faiss_index.train(idx, x)
    idx.add(x)
    q = x[:300] + 0.01 * rng.standard_normal((300, 16)).astype(np.float32)
    faiss.normalize_L2(q)
    truth = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    faiss_index.set_params(idx, {"nprobe": 16})
    reachable = idx.search(q, 10)[1]  # what the codes can find: a "bucket" whose target is reachable
    truth[:200] = reachable[:200]
    tokens = np.where(np.arange(300) < 200, 2, 20)  # 200 short queries, 100 long ones
    t = tune(idx, QuerySet(q, tokens), truth, 10, target_recall=0.95)
    assert not t.reached and t.short_buckets == ["13+ tokens"]
    assert t.buckets["1-3 tokens"]["recall_lower_bound"] >= 0.95 > t.buckets["13+ tokens"]["recall_lower_bound"]
    line = bucket_summary(t.to_dict())
    assert "13+ tokens" in line and line.endswith("SHORT") and "1-3 tokens" in line
    lb = t.buckets["13+ tokens"]["recall_lower_bound"]
    assert short_message(10, 0.95, t.buckets, t.short_buckets) == (
        f"recall@10 target 0.950 not reached in 13+ tokens: lower bound {lb:.3f} (short by {0.95 - lb:.3f}) "
        f"with nprobe={t.buckets['13+ tokens']['params']['nprobe']} (13+ tokens)")


def test_eval_recall_cli_and_info_plot(clustered, tmp_path):
    out, texts = clustered
    qfile = tmp_path / "q.txt"
    qfile.write_text("\n".join(t.split()[0] for t in texts[:50]) + "\n")
    r = CliRunner().invoke(cli, ["eval", "recall", str(out), "--queries", str(qfile), "--format", "json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["k"] == 10 and list(d["buckets"]) == ["1-3 tokens"] and d["buckets"]["1-3 tokens"]["queries"] == 50
    assert d["left_out"] == {"empty": 0, "no_known_word": 0}
    # Blank lines and queries with no known word are left out, and said so (as query says it).
    qfile.write_text("\n".join(t.split()[0] for t in texts[:5]) + "\n\nqqqzzz\n")
    r = CliRunner().invoke(cli, ["eval", "recall", str(out), "--queries", str(qfile)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("recall@10 ") and " over 5 queries" in r.stdout.splitlines()[0]
    assert r.stderr == "1 empty and 1 with no word in the vocabulary of 7 queries left out\n"
    r = CliRunner().invoke(cli, ["info", str(out), "--plot", str(tmp_path / "curve.png")])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert r.exit_code != 0 and "pip install 'glovefaiss[plot]'" in r.output
        return
    assert r.exit_code == 0, r.output
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(cli, ["info", str(out), "--plot", str(tmp_path / "curve.txt")])
    assert r.exit_code == 1 and r.output.startswith(f"Error: cannot draw {tmp_path / 'curve.txt'}: name a .png, "
                                                    ".svg or .pdf file (matplotlib writes ")
    missing = tmp_path / "no" / "dir" / "c.png"
    r = CliRunner().invoke(cli, ["info", str(out), "--plot", str(missing)])
    assert (r.exit_code, r.output) == (1, f"Error: cannot write {missing}: No such file or directory; "
                                          "choose another --plot file\n")


def _length_queries(texts, n=240, seed=2):
    """Queries of 1 to 24 words cut from the corpus's texts: every token-count bucket."""
    rng = np.random.default_rng(seed)
    return [" ".join(t.split()[:m]) for t, m in zip(texts[:n], rng.integers(1, 25, n))]


def _per_bucket_reference(out, queries, k):
    """Each bucket's queries searched on their own, its stored params set on a second copy of the index."""
    ref = Index.load(out)
    ref.set_params_by_length([])
    vectors, tokens = ref.encoder.encode_counted(queries)
    scores = np.empty((len(queries), k), np.float32)
    ids = np.empty((len(queries), k), np.int64)
    for entry, (_, lo, hi) in zip(ref.manifest.index["params_by_length"], BUCKETS):
        rows = np.flatnonzero((tokens >= lo) & ((tokens <= hi) if hi is not None else True))
        faiss_index.set_params(ref.faiss, entry["params"])
        res = ref.search_vectors(vectors[rows], k)
        scores[rows], ids[rows] = res.scores, res.ids
    return scores, ids


def test_adaptive_search_equals_per_bucket_searches_with_the_stored_params(clustered):
    out, texts = clustered
    idx = Index.load(out)
    by_length = idx.manifest.index["params_by_length"]
    assert [e["max_tokens"] for e in by_length] == [3, 12, None]
    assert len({e["params"]["nprobe"] for e in by_length}) > 1  # the buckets differ: something to test
    queries = _length_queries(texts)
    scores, ids = _per_bucket_reference(out, queries, 10)
    res = idx.search(queries, 10)
    assert np.array_equal(res.ids, ids) and np.array_equal(res.scores, scores)
    # Scores stay exact cosines of the returned documents.
    x = np.concatenate(list(_vectors(out)))
    q = idx.encode(queries)
    assert np.allclose(res.scores, np.einsum("qd,qkd->qk", q, x[res.rows]), atol=1e-5)
    # Without lengths (a document's own vector), the index's one setting for every length.
    faiss_index.set_params(idx.faiss, {"nprobe": 1})
    idx.set_params_by_length([])
    assert not np.array_equal(idx.search(queries, 10).ids, ids)


@pytest.mark.parametrize("open_end", [True, False], ids=["last-bound-open", "last-bound-12"])
def test_a_single_query_gets_the_setting_of_its_length_as_in_a_batch(clustered, open_end):
    out, texts = clustered
    idx = Index.load(out)
    nlist = faiss.extract_index_ivf(idx.faiss).nlist
    faiss_index.set_params(idx.faiss, {"nprobe": 2})  # the index's own: past a closed last bound
    by_length = [{"max_tokens": 3, "params": {"nprobe": 1}}, {"max_tokens": 12, "params": {"nprobe": nlist}}]
    idx.set_params_by_length(by_length + ([{"max_tokens": None, "params": {"nprobe": 4}}] if open_end else []))
    queries = _length_queries(texts)
    counts = idx.encoder.encode_counted(queries)[1]
    assert {2, 3, 4, 12, 13, 14} <= set(counts.tolist())  # both sides of each bound
    batch = idx.search(queries, 10)
    for i, q in enumerate(queries):
        one = idx.search(q, 10)
        assert np.array_equal(one.ids[0], batch.ids[i]) and np.array_equal(one.scores[0], batch.scores[i]), counts[i]


def test_adaptive_search_reaches_the_target_in_every_bucket_of_the_tuning_set(clustered):
    out, _ = clustered
    t = json.loads((out / "manifest.json").read_text())["index"]["tuning"]
    built = index_recall(out, n=300)  # the build's kind of queries, searched as Index.search does
    for name, b in built["buckets"].items():
        assert b["recall"] >= t["target_recall"] - 0.03, (name, b)
    for b in t["buckets"].values():
        assert b["recall_lower_bound"] >= t["target_recall"]


def test_threads_searching_different_buckets_at_once_get_the_serial_results(clustered):
    from concurrent.futures import ThreadPoolExecutor

    out, texts = clustered
    idx = Index.load(out)
    words = [t.split()[0] for t in texts[:60]]  # 1 token each
    docs = texts[:60]  # mostly 13+ tokens
    serial = [idx.search([q], 10).ids for q in words], [idx.search([q], 10).ids for q in docs]

    def run(qs):
        return [idx.search([q], 10).ids for _ in range(5) for q in qs]

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.submit(run, words), pool.submit(run, docs)
        got_a, got_b = a.result(), b.result()
    assert all(np.array_equal(g, serial[0][i % 60]) for i, g in enumerate(got_a))
    assert all(np.array_equal(g, serial[1][i % 60]) for i, g in enumerate(got_b))


def _ivf_case(seed=0, n=4000, dim=16, nlist=64, queries=300, key=None):
    """(index of ``key``, default IVF-Flat, over seeded unit vectors; queries near the first ones, half
    of 2 tokens and half of 20; their exact top-10)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    faiss.normalize_L2(x)
    idx = faiss_index.make_index(dim, key or f"IVF{nlist},Flat", with_ids=False)
    faiss_index.train(idx, x)
    idx.add(x)
    q = x[:queries] + 0.05 * rng.standard_normal((queries, dim)).astype(np.float32)
    faiss.normalize_L2(q)
    truth = faiss.knn(q, x, 10, metric=faiss.METRIC_INNER_PRODUCT)[1]
    return idx, QuerySet(q, np.where(np.arange(queries) < queries // 2, 2, 20)), truth


def test_each_bucket_keeps_the_fastest_of_its_passing_settings_timed_side_by_side(monkeypatch):
    import glovefaiss.index.tuning as tuning

    idx, qs, truth = _ivf_case(seed=4, queries=400, key="IVF32,PQ16x4fs,RFlat")  # re-ranked: several grid lines
    real = tuning.single_query_ms
    side_by_side = []

    def timed(index, queries, k, params=None):
        lat = real(index, queries, k, params)
        if isinstance(params, list):  # the last setting in turn is made the fastest
            side_by_side.append(len(params))
            lat[len(params) - 1::len(params)] = 1e-6
        return lat

    monkeypatch.setattr(tuning, "single_query_ms", timed)
    t = tune(idx, qs, truth, 10, target_recall=0.9)
    assert t.reached and max(side_by_side) > 1  # some bucket passed on more than one line
    for name, b in t.buckets.items():
        first_per_line = {}  # k_factor: the first setting of that line passing in this bucket
        for e in t.tried:
            if name in e["buckets"] and e["buckets"][name]["recall_lower_bound"] >= 0.9:
                first_per_line.setdefault(e["k_factor"], {"nprobe": e["nprobe"], "k_factor": e["k_factor"]})
        assert b["params"] == list(first_per_line.values())[-1] and b["p50_ms"] == 0.0


def test_a_latency_budget_prices_buckets_out_of_the_walk():
    idx, qs, truth = _ivf_case()
    full = tune(idx, qs, truth, 10, target_recall=0.95)
    assert full.reached and len(full.tried) > 1
    # A budget no query can meet: every bucket short of the target leaves after the first setting.
    cut = tune(idx, qs, truth, 10, target_recall=0.95, budget_ms=1e-9)
    assert len(cut.tried) == 1 and cut.tried[0]["nprobe"] == 1
    assert not cut.reached and sorted(cut.short_buckets) == sorted(full.buckets)
    # A budget every setting meets changes nothing but the timings.
    loose = tune(idx, qs, truth, 10, target_recall=0.95, budget_ms=1e9)
    assert [e["nprobe"] for e in loose.tried] == [e["nprobe"] for e in full.tried]
    assert loose.params == full.params


def test_a_walk_from_least_nprobe_keeps_the_settings_of_a_walk_from_one_probe():
    idx, qs, truth = _ivf_case()
    full = tune(idx, qs, truth, 10, target_recall=0.95)
    least = min(b["params"]["nprobe"] for b in full.buckets.values())
    assert least > 1 and full.tried[0]["nprobe"] == 1
    started = tune(idx, qs, truth, 10, target_recall=0.95, least_nprobe=least)
    assert started.tried[0]["nprobe"] == least and all(e["nprobe"] >= least for e in started.tried)
    assert (started.params, started.params_by_length) == (full.params, full.params_by_length)
    assert len(started.tried) < len(full.tried)


def test_auto_walks_the_first_family_in_full_when_no_alternative_reaches_the_target(clustered, monkeypatch, tmp_path):
    out, _ = clustered
    m = json.loads((out / "manifest.json").read_text())
    monkeypatch.setattr(faiss_index, "choose_kind", lambda *a, **k: "ivf")  # an IVF first at this size
    monkeypatch.setattr(faiss_index, "alternatives", lambda *a, **k: ["ivf-pq"])  # PQ codes alone: no 0.99
    monkeypatch.setattr(families, "FINER_LISTS", 0.0)  # IVF-Flat's forecast always within the budget
    # Every setting is over a 1e-9 ms budget: the first walk stops at its first setting.
    cfg = config_for(m["vectors"]["source"], index="auto", tune_queries=300, auto_latency_ms=1e-9,
                     target_recall=0.99)
    idx = build([m["corpus"]["files"][0]], tmp_path / "auto", cfg, progress=False).manifest.index
    forecast, first, alt = idx["candidates"]
    assert forecast["forecast"] and not first.get("forecast")
    assert (first["type"], alt["type"]) == ("ivf", "ivf-pq") and not alt["reached"]
    assert len(first["tried"]) > 1  # walked again without the budget, not left at its first setting
    assert first["reached"] and idx["type"] == "ivf" and idx["tuning"]["reached"]


def test_screened_settings_are_only_those_far_short_and_the_kept_ones_are_measured_in_full(monkeypatch):
    import glovefaiss.index.tuning as tuning

    idx, qs, truth = _ivf_case(seed=3, queries=1200)  # 600 a bucket: a quarter is 150, past SCREEN_MIN
    sizes = {name: len(rows) for name, rows in qs.buckets().items()}

    def screened_entries(t):
        return [e for e in t.tried if any(b["queries"] < sizes[n] for n, b in e["buckets"].items())]

    screened = tune(idx, qs, truth, 10, target_recall=0.95)
    part = screened_entries(screened)
    assert part  # the first settings of the walk, far short, were searched with a quarter of the queries
    for e in part:
        for b in e["buckets"].values():
            assert b["queries"] == 600 // tuning.SCREEN
            assert b["recall"] + tuning.Z_SCREEN / tuning.Z * (b["recall"] - b["recall_lower_bound"]) < 0.95
    for e in screened.tried:
        for name, b in e["buckets"].items():
            if b["recall_lower_bound"] >= 0.95:
                assert b["queries"] == sizes[name]
    # An unreachable target: the short settings are compared on every query, not on parts.
    short = tune(idx, qs, truth, 10, target_recall=1.01)
    assert not short.reached and not screened_entries(short)
    # Without screening the walks keep the same settings with the same figures.
    monkeypatch.setattr(tuning, "SCREEN_MIN", 10**9)
    plain = tune(idx, qs, truth, 10, target_recall=0.95)
    assert not screened_entries(plain)
    assert (plain.params, plain.params_by_length) == (screened.params, screened.params_by_length)
    assert plain.uniform_recall_lower_bound == screened.uniform_recall_lower_bound
    kept = {tuple(sorted(b["params"].items())) for b in screened.buckets.values()}
    for e in screened.tried:
        if tuple((key, e[key]) for key in sorted(tuning.PARAM_KEYS) if key in e) in kept:
            same = next(p for p in plain.tried if all(p.get(key) == e.get(key) for key in tuning.PARAM_KEYS))
            assert {n: b["recall"] for n, b in e["buckets"].items()} == {n: b["recall"] for n, b in same["buckets"].items()}
    plain_short = tune(idx, qs, truth, 10, target_recall=1.01)
    assert (plain_short.params, plain_short.uniform_recall_lower_bound) == (short.params, short.uniform_recall_lower_bound)


def test_recall_counts_a_duplicate_of_the_kth_neighbour_as_found():
    from glovefaiss.index.tuning import recall_per_query

    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[1, 2, 9], [4, 8, 7]])
    assert recall_per_query(found, truth).tolist() == [2 / 3, 1 / 3]
    tied = np.array([[False, False, True], [False, True, False]])  # 9 and 8 score as 3 and 6 do
    assert recall_per_query(found, truth, tied).tolist() == [1.0, 2 / 3]


def test_eval_recall_of_an_exact_index_is_one_with_duplicate_documents(tmp_path):
    # Documents added later repeat existing ones word for word: FAISS may return the copy where
    # exact search returns the first, at the same score. Neither is a miss.
    rng = np.random.default_rng(21)
    words = [f"w{i}" for i in range(300)]
    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((300, 16)).astype(np.float32))
    texts = [" ".join(rng.choice(words, int(rng.integers(2, 12)))) for _ in range(3000)]
    build([write_corpus(tmp_path / "c.parquet", list(range(3000)), texts)], tmp_path / "idx",
          config_for(vec, index="flat"), progress=False)
    from glovefaiss.index.add import add_documents

    add_documents(tmp_path / "idx", [write_corpus(tmp_path / "more.parquet", list(range(3000, 3300)), texts[:300])],
                  progress=False)
    r = index_recall(tmp_path / "idx", texts=texts[:300] + [t.split()[0] for t in texts[:300]])
    assert r["recall"] == 1.0 and all(b["recall"] == 1.0 for b in r["buckets"].values())


def test_three_perfect_tuning_queries_do_not_show_the_target(tmp_path, clustered):
    # Recall 1.0 on 3 queries is no 95%-confidence promise of 0.95: the build says the target was not shown.
    out, texts = clustered
    src = json.loads((out / "manifest.json").read_text())
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(texts[:3]) + "\n", encoding="utf-8")
    corpus = write_corpus(tmp_path / "c.parquet", list(range(len(texts))), texts)
    cfg = config_for(src["config"]["embedding"]["model_name"], index="ivf", tuning_queries=str(queries))
    t = build([corpus], tmp_path / "idx", cfg, progress=False).manifest.index["tuning"]
    assert t["queries"] == 3 and t["recall"] == 1.0
    assert t["recall_lower_bound"] < 0.95 and not t["reached"] and t["short_buckets"]


def test_tuning_queries_from_stored_texts_equal_those_from_the_corpus(clustered, tmp_path):
    from glovefaiss.index.layout import read_manifest
    from glovefaiss.index.tuning_queries import corpus_window_queries, stored_window_queries
    from glovefaiss.io.corpus import open_corpus

    out, texts = clustered
    # Null and empty texts among them, in several shards: both sources must skip them alike.
    mixed = [None if i % 97 == 0 else "" if i % 89 == 0 else t for i, t in enumerate(texts)]
    corpus = write_corpus(tmp_path / "c.parquet", list(range(len(mixed))), mixed, pa.int64())
    vec = read_manifest(out).config["embedding"]["model_name"]
    idx_dir = tmp_path / "idx"
    build([corpus], idx_dir, config_for(vec, shard_rows=700), progress=False)
    encoder = Index.load(idx_dir).encoder
    m = read_manifest(idx_dir)
    assert len(m.shards) == 5
    a = corpus_window_queries(open_corpus([corpus], "id", "text"), encoder, 300, 4)
    b = stored_window_queries(idx_dir, m.shards, encoder, 300, 4)
    assert len(a) == len(b) == 300
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_repeated_documents_count_as_found_when_they_tie_the_kth_exact_score(clustered, tmp_path):
    from glovefaiss.index.layout import read_manifest

    out, texts = clustered
    vec = read_manifest(out).config["embedding"]["model_name"]
    # 80 documents, each 60 times over 4 shards: a query's exact top 10 is any 10 of 60 equal scores
    # (the exact search's BLAS and the index's scan break such ties differently).
    repeated = [texts[i % 80] for i in range(4800)]
    corpus = write_corpus(tmp_path / "rep.parquet", list(range(4800)), repeated, pa.int64())
    built = build([corpus], tmp_path / "rep", config_for(vec, index="ivf", tune_queries=300, shard_rows=1200),
                  progress=False)
    tuning = built.manifest.index["tuning"]
    assert tuning["reached"] and min(b["recall"] for b in tuning["buckets"].values()) >= 0.95
    # The brute-force reference: a hit counts when its exact score reaches the 10th exact score.
    idx = Index.load(tmp_path / "rep")
    x = np.concatenate([v for v in _vectors(tmp_path / "rep")])
    qs = [" ".join(t.split()[:3]) for t in texts[:60]]
    v = idx.encode(qs)
    found = idx.search_vectors(v, 10).rows
    by_id = []
    for q, f in zip(v, found):
        s = x @ q
        kth = np.sort(s)[-10]
        by_id.append(np.sum(s[f[f >= 0]] >= kth - 1e-6) / 10)  # an empty slot is a miss
    assert np.mean(by_id) >= 0.95
    # k-means over 80 distinct vectors left lists empty, which queries near them found nothing in:
    # the index keeps only the lists that hold vectors.
    assert faiss_index.filled_lists(idx.faiss).all()
    assert (found >= 0).all()


def test_lists_left_empty_are_dropped_and_the_others_filled_again(clustered):
    from glovefaiss.index.shards import ShardReader

    out, _ = clustered
    m = json.loads((out / "manifest.json").read_text())
    reader = ShardReader(out, m["shards"])
    x = np.concatenate(_vectors(out))
    kept = faiss_index.centroids_of(Index.load(out).faiss)
    assert ((x @ kept.T).max(axis=1) > 0).all()  # so a shrunk copy of a centroid is no vector's nearest
    given = np.concatenate([kept[:4], 0.999 * kept[:1], kept[4:]])
    index, info = families._build_one(reader, "ivf", f"IVF{len(given)},Flat", x.shape[1], True, 0,
                                      np.random.default_rng(0), centroids=given)
    assert info["key"] == f"IVF{len(kept)},Flat" and faiss_index.nlist_of(index) == len(kept)
    assert faiss_index.filled_lists(index).all() and index.ntotal == len(x)
    np.testing.assert_array_equal(faiss_index.centroids_of(index), kept)


def test_distinct_rows_are_the_first_copy_of_each_row_as_a_byte_comparison_finds_them():
    rng = np.random.default_rng(8)
    for dim in (1, 3, 12, 50):  # row widths of 4, 12, 48 and 200 bytes
        x = rng.standard_normal((300, dim)).astype(np.float32)
        x = x[rng.integers(0, 120, 600)]  # repeats, in no order
        rows = x.view(np.dtype((np.void, dim * 4))).ravel()
        _, first = np.unique(rows, return_index=True)
        np.testing.assert_array_equal(faiss_index.distinct_rows(x), np.sort(first))
        np.testing.assert_array_equal(faiss_index.distinct_rows(x[:, ::-1]), faiss_index.distinct_rows(x[:, ::-1].copy()))
    assert faiss_index.lists_for_distinct(4000, 160_000) == 4000
    assert faiss_index.lists_for_distinct(123, 80) == 2 and faiss_index.lists_for_distinct(50, 10) == 1


def test_a_query_with_known_words_that_finds_no_hit_is_told_apart_from_one_without(clustered):
    out, texts = clustered
    loaded = Index.load(out)
    x = np.concatenate(_vectors(out))
    q = loaded.encode([texts[0]])[0]
    # Two lists: one that the documents held are nearer to, one that the query is nearer to, left empty.
    centroids = np.stack([x[1], q]).astype(np.float32)
    held = x[(x @ centroids.T).argmax(axis=1) == 0]
    assert (centroids @ q).argmax() == 1 and len(held) > 100
    ivf = faiss_index.make_index(x.shape[1], "IVF2,Flat", with_ids=False)
    assert faiss_index.give_centroids(ivf, centroids)
    ivf.train(centroids)
    faiss_index.add(ivf, held)
    assert faiss_index.filled_lists(ivf).tolist() == [True, False]
    ivf.nprobe = 1
    idx = Index(loaded.encoder, ivf, row_ids=np.arange(len(held), dtype=np.int64))
    run = idx.write_hits([1, 2, 3], [texts[0], "zzzunknown", texts[1]], k=3, output=io.StringIO(), fmt="jsonl")
    assert run.missed == [1] and run.unanswered == [2]
    assert run.hits == 3  # the third query's
