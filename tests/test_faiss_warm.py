"""What Index.warm does to a FAISS index: the single-query view of fast-scan lists, huge pages."""

import threading

import faiss
import numpy as np
import pytest

from glovefaiss.index import faiss_ops
from glovefaiss.index.faiss_warm import SCAN_LIST_BY_LIST, advise_huge_pages, single_query_view
from glovefaiss.index.tuning import exact_topk, knn_recall


def _cone(rng, n, dim=32):
    """Unit vectors in a narrow cone, like mean-pooled Zipf documents: near-tied neighbours."""
    x = rng.standard_normal((n, dim)).astype(np.float32) * 0.3 + 1.0
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def fastscan():
    rng = np.random.default_rng(8)
    x = _cone(rng, 40_000)
    ids = np.arange(len(x), dtype=np.int64) * 7 + 3
    index = faiss_ops.make_index(x.shape[1], "IVF64,PQ32x4fsr,RFlat", with_ids=True)
    faiss_ops.train(index, x[:20_000], 0)
    faiss_ops.add(index, x, ids)
    faiss_ops.set_params(index, {"nprobe": 16, "k_factor": 32})
    queries = _cone(np.random.default_rng(9), 300)
    return index, x, ids, queries


def _singles(index, queries, k, params=None):
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        out = [index.search(q[None], k, params=params) for q in queries]
    finally:
        faiss.omp_set_num_threads(threads)
    return np.concatenate([d for d, _ in out]), np.concatenate([i for _, i in out])


def test_view_answers_as_the_index_scanning_list_by_list(fastscan):
    index, x, ids, queries = fastscan
    view = single_query_view(index)
    assert view is not index and faiss_ops.index_chain(view)[-1].implem == SCAN_LIST_BY_LIST
    fs = faiss_ops.index_chain(index)[-1]
    assert fs.implem == 0  # the index itself still groups a batch's queries by list
    for params in (None, faiss_ops.search_parameters(index, {"nprobe": 48, "k_factor": 4})):
        got = _singles(view, queries, 10, params)
        fs.implem = SCAN_LIST_BY_LIST
        try:
            want = _singles(index, queries, 10, params)
        finally:
            fs.implem = 0
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    # Against brute force: ids of the corpus, exact inner products, the recall of every list probed.
    scores, labels = _singles(view, queries, 10, faiss_ops.search_parameters(index, {"nprobe": 64, "k_factor": 64}))
    truth = exact_topk([(x, ids)], queries, 10)
    assert knn_recall(labels, truth) >= 0.97
    row = {int(i): r for r, i in enumerate(ids)}
    np.testing.assert_allclose(scores[:, 0], [x[row[int(lab)]] @ q for lab, q in zip(labels[:, 0], queries)], rtol=1e-5)


def test_view_outlives_its_index_variable():
    rng = np.random.default_rng(3)
    x = _cone(rng, 5_000, 16)
    index = faiss_ops.make_index(16, "IVF16,PQ16x4fsr,RFlat", with_ids=False)
    faiss_ops.train(index, x, 0)
    faiss_ops.add(index, x)
    want = index.search(x[:3], 5)[1]
    view = single_query_view(index)
    del index  # the view keeps the arrays it shares alive
    np.testing.assert_array_equal(_singles(view, x[:3], 5)[1], want)


@pytest.mark.parametrize("key", ["Flat", "IVF16,Flat", "IVF16,PQ8x4fs", "HNSW8"])
def test_other_families_are_searched_as_they_are(key):
    index = faiss_ops.make_index(16, key, with_ids=False)
    assert single_query_view(index) is index


@pytest.mark.parametrize("key", ["Flat", "IVF64,Flat", "IVF64,PQ32x4fsr,RFlat"])
def test_huge_pages_change_no_result(tmp_path, key):
    rng = np.random.default_rng(5)
    x = _cone(rng, 30_000)
    index = faiss_ops.make_index(x.shape[1], key, with_ids=True)
    faiss_ops.train(index, x[:10_000], 0)
    faiss_ops.add(index, x, np.arange(len(x), dtype=np.int64))
    faiss_ops.save(index, tmp_path / "i.faiss")
    index = faiss_ops.load(tmp_path / "i.faiss")  # read into memory, as Index.load does
    before = index.search(x[:50], 10)
    moved = advise_huge_pages(index)
    assert moved >= 0 and moved % (2 << 20) == 0
    after = index.search(x[:50], 10)
    np.testing.assert_array_equal(before[1], after[1])
    np.testing.assert_array_equal(before[0], after[0])


def test_warm_index_searches_single_texts_through_the_view_and_batches_through_the_index(tmp_path):
    from glovefaiss.index.build import build
    from glovefaiss.index.search import Index

    from .helpers import config_for, write_corpus, write_glove_text

    rng = np.random.default_rng(12)
    words = [f"w{i}" for i in range(400)]
    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((400, 16)).astype(np.float32) + 1.5)
    texts = [" ".join(rng.choice(words, int(rng.integers(3, 20)))) for _ in range(8000)]
    corpus = write_corpus(tmp_path / "c.parquet", list(range(len(texts))), texts)
    build([corpus], tmp_path / "idx", config_for(vec, index="ivf-fastscan", tune_queries=200), progress=False)
    idx = Index.load(tmp_path / "idx").warm()
    assert idx._single is not idx.faiss
    queries = texts[:40]
    single = [idx.search(t, 10).ids[0].tolist() for t in queries]
    # Threads searching single texts and batches at once get what each gets alone.
    batch = idx.search(queries, 10).ids.tolist()
    got: dict = {}

    def run(name, fn):
        got[name] = fn()

    threads = [threading.Thread(target=run, args=("single", lambda: [idx.search(t, 10).ids[0].tolist() for t in queries])),
               threading.Thread(target=run, args=("batch", lambda: [idx.search(queries, 10).ids.tolist() for _ in range(5)]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["single"] == single and all(b == batch for b in got["batch"])
    # The view is FAISS's list-by-list scan of the same lists: the same documents found, ties aside.
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(single, batch)])
    assert overlap >= 0.95
