"""IR and STS metrics against hand-computed cases and second implementations; data readers;
``glovefaiss eval`` end to end on tiny data."""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from glovefaiss.cli import cli
from glovefaiss.evaluation.metrics import (
    EvalError,
    average_precision_at_k,
    evaluate_run,
    mrr_at_k,
    ndcg_at_k,
    parse_metrics,
    pearson,
    precision_at_k,
    rankdata,
    recall_at_k,
    spearman,
)
from glovefaiss.evaluation.retrieval import load_retrieval, render_table
from glovefaiss.evaluation.sts import evaluate_sts, read_pairs
from glovefaiss.text.tokeniser import Tokeniser
from glovefaiss.text.vocabulary import Vocabulary
from glovefaiss.tower.encoder import TextEncoder

from .helpers import write_glove_text

JUDGED = {"a": 1, "c": 2, "e": 1, "x": 0}
RANKED = ["c", "b", "a", "d"]


# --- hand-computed ------------------------------------------------------------------------------

def test_ndcg_hand_computed():
    dcg = 2 / math.log2(2) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at_k(RANKED, JUDGED, 1) == pytest.approx(1.0)  # ideal@1 is c (gain 2) too
    assert ndcg_at_k(["b", "c"], JUDGED, 1) == 0.0
    assert ndcg_at_k(["c", "a", "e"], JUDGED, 10) == pytest.approx(1.0)
    assert ndcg_at_k(RANKED, {"x": 0}, 10) == 0.0


def test_recall_mrr_map_hand_computed():
    assert recall_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKED, JUDGED, 10) == pytest.approx(2 / 3)
    assert mrr_at_k(RANKED, JUDGED, 10) == 1.0
    assert mrr_at_k(["b", "x", "a"], JUDGED, 10) == pytest.approx(1 / 3)  # judged 0 is not relevant
    assert mrr_at_k(["b", "x", "a"], JUDGED, 2) == 0.0
    assert average_precision_at_k(RANKED, JUDGED, 10) == pytest.approx((1 + 2 / 3) / 3)
    assert average_precision_at_k(RANKED, JUDGED, 2) == pytest.approx(1 / 3)
    assert average_precision_at_k([], JUDGED, 10) == 0.0


def test_evaluate_run_means_over_judged_queries():
    qrels = {"q1": JUDGED, "q2": {"z": 1}, "q3": {"y": 0}}  # q3 has nothing relevant: left out
    run = {"q1": RANKED}  # q2 unanswered: zeros
    out = evaluate_run(run, qrels, ["recall@10", "mrr@10"])
    assert out["queries"] == 2
    assert out["metrics"] == {"recall@10": pytest.approx(1 / 3), "mrr@10": pytest.approx(0.5)}
    assert out["per_query"]["q2"] == {"recall@10": 0.0, "mrr@10": 0.0}
    with pytest.raises(EvalError, match=r"^unknown metric 'f1@5'; use ndcg@K, recall@K, p@K, mrr@K, map@K with K >= 1$"):
        evaluate_run(run, qrels, ["f1@5"])
    with pytest.raises(EvalError, match="unknown metric 'p@0'"):
        evaluate_run(run, qrels, ["p@0"])


def test_precision_hand_computed():
    assert precision_at_k(RANKED, JUDGED, 1) == 1.0
    assert precision_at_k(RANKED, JUDGED, 3) == pytest.approx(2 / 3)
    assert precision_at_k(RANKED, JUDGED, 10) == pytest.approx(2 / 10)  # over k, also when fewer were retrieved
    assert precision_at_k([], JUDGED, 5) == 0.0


def test_parse_metrics_spaces_commas_repeats():
    assert parse_metrics(["ndcg@10 recall@5", "P@3,mrr@10", " map@100 , ndcg@10 "]) == [
        "ndcg@10", "recall@5", "p@3", "mrr@10", "map@100"]
    with pytest.raises(EvalError, match="^no metric given$"):
        parse_metrics([" , "])
    with pytest.raises(EvalError, match="unknown metric 'ndcg'"):
        parse_metrics(["recall@10 ndcg"])


def test_correlations_hand_computed():
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert pearson([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    np.testing.assert_array_equal(rankdata([10, 20, 20, 30, 5]), [2, 3.5, 3.5, 5, 1])
    assert spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)
    assert pearson([1, 1, 1], [1, 2, 3]) == 0.0
    with pytest.raises(EvalError):
        pearson([1], [1])


# --- second implementations ---------------------------------------------------------------------

def _random_run(seed, n_queries=40, n_docs=300):
    rng = np.random.default_rng(seed)
    qrels, run = {}, {}
    for q in range(n_queries):
        rel = rng.choice(n_docs, rng.integers(1, 8), replace=False)
        qrels[f"q{q}"] = {f"d{d}": int(rng.integers(0, 3)) for d in rel}
        scores = rng.permutation(n_docs)[:150].astype(float) + rng.random(150) * 0.1  # distinct scores
        run[f"q{q}"] = {f"d{d}": float(s) for d, s in zip(rng.permutation(n_docs)[:150], scores)}
    return qrels, run


def test_metrics_agree_with_pytrec_eval():
    pytrec_eval = pytest.importorskip("pytrec_eval")
    for seed in range(3):
        qrels, scored = _random_run(seed)
        ranked = {q: sorted(d, key=lambda x: -d[x]) for q, d in scored.items()}
        ours = evaluate_run(ranked, qrels, ["ndcg@10", "recall@10", "recall@100", "map@100", "p@5", "p@100"])
        ours = ours["per_query"]
        ref = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100", "map_cut.100", "P.5",
                                                     "P.100"})
        theirs = ref.evaluate(scored)
        assert set(ours) == {q for q in theirs if any(g > 0 for g in qrels[q].values())}
        for q in ours:
            assert ours[q]["ndcg@10"] == pytest.approx(theirs[q]["ndcg_cut_10"], abs=1e-9)
            assert ours[q]["recall@10"] == pytest.approx(theirs[q]["recall_10"], abs=1e-9)
            assert ours[q]["recall@100"] == pytest.approx(theirs[q]["recall_100"], abs=1e-9)
            assert ours[q]["map@100"] == pytest.approx(theirs[q]["map_cut_100"], abs=1e-9)
            assert ours[q]["p@5"] == pytest.approx(theirs[q]["P_5"], abs=1e-9)
            assert ours[q]["p@100"] == pytest.approx(theirs[q]["P_100"], abs=1e-9)


def test_mrr_against_brute_force():
    """MRR@k: the best 1/rank over the relevant documents found in the top k (0 if none)."""
    qrels, scored = _random_run(5)
    for q, docs in scored.items():
        ranked = sorted(docs, key=lambda x: -docs[x])
        for k in (1, 10, 100):
            want = max([1 / (i + 1) for i, d in enumerate(ranked[:k]) if qrels[q].get(d, 0) > 0], default=0.0)
            assert mrr_at_k(ranked, qrels[q], k) == want


def test_correlations_agree_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 200).astype(float)  # many ties
    y = x + rng.standard_normal(200)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
    np.testing.assert_array_equal(rankdata(x), stats.rankdata(x))


# --- readers ------------------------------------------------------------------------------------

def test_read_pairs_csv_tsv_parquet(tmp_path):
    (tmp_path / "a.csv").write_text('"A man, walking.","A man ""walks""",4.5\nx,y,0\n', encoding="utf-8")
    a, b, s = read_pairs(tmp_path / "a.csv")
    assert a == ["A man, walking.", "x"] and b == ['A man "walks"', "y"] and s.tolist() == [4.5, 0.0]
    (tmp_path / "b.tsv").write_text("score\tsentence2\tsentence1\n3\tB\tA\n", encoding="utf-8")
    assert read_pairs(tmp_path / "b.tsv")[0] == ["A"]
    pq.write_table(pa.table({"sentence1": ["p"], "sentence2": ["q"], "score": [1.5]}), tmp_path / "c.parquet")
    a, b, s = read_pairs(tmp_path / "c.parquet")
    assert (a, b, s.tolist()) == (["p"], ["q"], [1.5])
    (tmp_path / "quote.tsv").write_text('"Quoted, then not\tB\t2.5\nC\tD\t1\n', encoding="utf-8")  # TSV: quotes are text
    assert read_pairs(tmp_path / "quote.tsv")[0] == ['"Quoted, then not', "C"]
    (tmp_path / "bom.csv").write_text("\ufeffsentence1,sentence2,score\nx,y,1\n", encoding="utf-8")  # Excel's
    assert read_pairs(tmp_path / "bom.csv")[0] == ["x"]
    (tmp_path / "head.csv").write_text("s1,s2,label\nx,y,1\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"head.csv: the header must name 'sentence1', 'sentence2' and 'score' "
                                        r"\(found: s1, s2, label\); or give a file without header$"):
        read_pairs(tmp_path / "head.csv")
    (tmp_path / "one.csv").write_text("interest rates\nthe bank\n", encoding="utf-8")  # not pairs at all
    with pytest.raises(EvalError, match=r"one.csv: want 3 comma-separated columns \(sentence1, sentence2, score\), "
                                        r"but the first line has 1$"):
        read_pairs(tmp_path / "one.csv")
    (tmp_path / "bad.csv").write_text("a,b,1\nc,d,high\n", encoding="utf-8")
    with pytest.raises(EvalError, match=r"bad.csv:2: expected sentence1, sentence2, score; got \[.c., .d., .high.\]$"):
        read_pairs(tmp_path / "bad.csv")


def _beir(root, words_docs, queries, qrels):
    (root / "qrels").mkdir(parents=True)
    with open(root / "corpus.jsonl", "w") as f:
        for i, (title, text) in words_docs.items():
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with open(root / "queries.jsonl", "w") as f:
        for i, text in queries.items():
            f.write(json.dumps({"_id": i, "text": text, "metadata": {}}) + "\n")
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return root


@pytest.fixture
def beir(tmp_path, tiny_vectors):
    docs = {"10": ("Cats", "the cat sat on the mat"), "11": ("", "the dog barked loudly"),
            "12": ("Markets", "stock market fell sharply"), "13": ("", "a kitten played with yarn")}
    queries = {"1": "the cat sat on the mat", "2": "stock market fell sharply", "3": "dog", "4": "zzz unknown", "5": "not judged"}
    qrels = [("1", "10", 1), ("2", "12", 1), ("3", "11", 1), ("3", "13", 1), ("4", "13", 1)]
    return _beir(tmp_path / "beir", docs, queries, qrels)


def test_load_retrieval_beir_and_errors(beir, tmp_path):
    rd = load_retrieval(beir)
    assert sorted(rd.queries) == ["1", "2", "3", "4"] and rd.qrels["3"] == {"11": 1, "13": 1}
    assert rd.corpus == beir / "corpus.jsonl"
    with pytest.raises(EvalError, match="is not a directory"):
        load_retrieval(tmp_path / "nope")
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n99\t10\t1\n")
    with pytest.raises(EvalError, match="1 judged queries are not in"):
        load_retrieval(beir, "dev")


# --- end to end -------------------------------------------------------------------------------

def test_eval_retrieval_cli_builds_and_scores(beir, tiny_vectors, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", "retrieval", str(beir), "--glove", str(tiny_vectors[0]),
                              "--out", str(tmp_path / "idx"), "--format", "json", "--per-query"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)[0]
    assert report["queries"] == 4 and report["documents"] == 4 and report["unanswered_queries"] == 1
    pq_ = report["per_query"]
    assert pq_["1"]["mrr@10"] == 1.0 and pq_["2"]["mrr@10"] == 1.0
    assert pq_["4"] == {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0, "map@100": 0.0}
    assert pq_["3"]["recall@10"] == 1.0  # both judged documents are among the 4 returned
    means = {m: sum(q[m] for q in pq_.values()) / 4 * 100 for m in report["metrics"]}
    assert report["metrics"] == pytest.approx(means)
    assert f"built {tmp_path / 'idx'}: 4 documents in " in res.stderr
    # Without --out the index lives in a temporary directory: the line says so, not a path that is gone.
    res_tmp = runner.invoke(cli, ["eval", "retrieval", str(beir), "--glove", str(tiny_vectors[0]), "--format", "json"])
    assert res_tmp.exit_code == 0, res_tmp.output
    assert res_tmp.stderr.startswith("built a temporary index (--out DIR keeps it): 4 documents in "), res_tmp.stderr
    assert json.loads(res_tmp.stdout)[0]["metrics"] == report["metrics"]
    # The kept index evaluates the same with --index, and renders as a table.
    res2 = runner.invoke(cli, ["eval", "retrieval", str(beir), "--index", str(tmp_path / "idx")])
    assert res2.exit_code == 0, res2.output
    lines = res2.stdout.splitlines()
    assert lines[0].split() == ["task", "name", "ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100", "n"]
    assert lines[2].split()[2] == f"{report['metrics']['ndcg@10']:.2f}"


def test_eval_retrieval_metric_option(beir, tiny_vectors, tmp_path):
    runner = CliRunner()
    assert runner.invoke(cli, ["eval", "retrieval", str(beir), "--glove", str(tiny_vectors[0]),
                               "--out", str(tmp_path / "idx")]).exit_code == 0
    base = ["eval", "retrieval", str(beir), "--index", str(tmp_path / "idx"), "--format", "json"]
    res = runner.invoke(cli, [*base, "--metric", "ndcg@10 recall@5", "--metric", "p@1,mrr@3", "--metric", "NDCG@10"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.stdout)[0]["metrics"]
    assert list(metrics) == ["ndcg@10", "recall@5", "p@1", "mrr@3"]
    per_query = json.loads(runner.invoke(cli, [*base, "--metric", "p@1", "--per-query"]).stdout)[0]["per_query"]
    assert per_query["1"]["p@1"] == 1.0 and per_query["4"]["p@1"] == 0.0  # exact match first; unanswered
    assert metrics["p@1"] == pytest.approx(100 * sum(q["p@1"] for q in per_query.values()) / len(per_query))
    res = runner.invoke(cli, [*base, "--metric", "ndcg@10 f1@5"])
    assert res.exit_code == 2
    assert res.stderr.endswith("Error: Invalid value for '--metric': unknown metric 'f1@5'; "
                               "use ndcg@K, recall@K, p@K, mrr@K, map@K with K >= 1\n")
    res = runner.invoke(cli, [*base, "--metric", ","])
    assert res.exit_code == 2 and res.stderr.endswith("Error: Invalid value for '--metric': no metric given\n")


def test_eval_retrieval_usage_errors(beir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", "retrieval"])
    assert res.exit_code == 2 and "give a BEIR directory DATA" in res.output
    res = runner.invoke(cli, ["eval", "retrieval", str(beir), "--index", str(tmp_path), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--index evaluates an existing index" in res.output
    res = runner.invoke(cli, ["eval", "retrieval", str(tmp_path / "missing")])
    assert res.exit_code == 1 and "is not a directory" in res.output


def test_evaluate_sts_hand_made_vectors():
    words = ["a", "b", "c"]
    enc = TextEncoder(Tokeniser(), Vocabulary(pa.array(words)), np.eye(3, dtype=np.float32))
    # cosines: a·a = 1, a·b = 0, (a+b)/√2 · a = 0.7071, unknown word → 0
    report = evaluate_sts(enc, ["a", "a", "a b", "zzz"], ["a", "b", "a", "a"], [5, 1, 3, 0], name="toy")
    cos = [1.0, 0.0, math.sqrt(0.5), 0.0]
    assert report.metrics["pearson"] == pytest.approx(100 * pearson([5, 1, 3, 0], cos))
    assert report.metrics["spearman"] == pytest.approx(100 * spearman([5, 1, 3, 0], cos))
    assert report.counts == {"pairs": 4, "zero_cosine_pairs": 2}
    assert "toy" in render_table([report])


def test_eval_sts_cli_config_and_index_agree(tmp_path, tiny_vectors, tiny_corpus):
    path, words, matrix = tiny_vectors
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("the cat sat,a kitten played,3.5\nstock market fell,the bank of the river,0.5\n"
                     "the dog barked,the dog barked loudly,4.8\nrates rise,the market fell,2.0\n")
    runner = CliRunner()
    res = runner.invoke(cli, ["eval", "sts", str(pairs), "--glove", str(path), "--format", "json"])
    assert res.exit_code == 0, res.output
    via_config = json.loads(res.stdout)[0]
    # Reference: cosines of normalised means of known words.
    idx = {w: i for i, w in enumerate(words)}

    def vec(s):
        v = matrix[[idx[t] for t in s.split() if t in idx]].astype(np.float64).mean(axis=0)
        return v / np.linalg.norm(v)

    rows = [line.split(",") for line in pairs.read_text().splitlines()]
    cos = [float(vec(a) @ vec(b)) for a, b, _ in rows]
    gold = [float(s) for _, _, s in rows]
    assert via_config["metrics"]["pearson"] == pytest.approx(100 * pearson(gold, cos), abs=1e-4)
    assert via_config["metrics"]["spearman"] == pytest.approx(100 * spearman(gold, cos), abs=1e-4)
    assert runner.invoke(cli, ["build", str(tiny_corpus[0]), "--out", str(tmp_path / "idx"),
                               "--glove", str(path)]).exit_code == 0
    res = runner.invoke(cli, ["eval", "sts", str(pairs), "--index", str(tmp_path / "idx"), "--format", "json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["metrics"] == pytest.approx(via_config["metrics"])


def test_eval_sts_sif_fitted_on_other_pairs(tmp_path):
    pytest.importorskip("wordfreq")
    rng = np.random.default_rng(0)
    words = ["the", "a", "cat", "dog", "kitten", "puppy", "car", "truck", "is", "on"]
    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((len(words), 6)).astype(np.float32))
    pairs = tmp_path / "p.tsv"
    pairs.write_text("sentence1\tsentence2\tscore\nthe cat\ta kitten\t4\nthe car\ta truck\t3.5\n"
                     "the cat\tthe truck\t0.5\na dog is on the car\tthe puppy\t1\n")
    cfg = tmp_path / "sif.yml"
    cfg.write_text("pooling:\n  weighting: sif\n  components: 1\n")
    runner = CliRunner()
    own = runner.invoke(cli, ["eval", "sts", str(pairs), "--glove", str(vec), "--config", str(cfg), "--format", "json"])
    other = runner.invoke(cli, ["eval", "sts", str(pairs), "--glove", str(vec), "--config", str(cfg),
                                "--fit-on", str(pairs), "--format", "json"])
    assert own.exit_code == 0 and other.exit_code == 0, own.output + other.output
    assert json.loads(own.stdout)[0]["metrics"] == json.loads(other.stdout)[0]["metrics"]
    plain = runner.invoke(cli, ["eval", "sts", str(pairs), "--glove", str(vec), "--format", "json"])
    assert json.loads(plain.stdout)[0]["metrics"] != json.loads(own.stdout)[0]["metrics"]


def test_training_validation_and_eval_sts_give_the_same_spearman_on_tied_pairs():
    from glovefaiss.train.data import ScoredData
    from glovefaiss.train.fit import evaluate_scored

    rng = np.random.default_rng(11)
    words = [f"w{i}" for i in range(40)]
    enc = TextEncoder(Tokeniser(), Vocabulary(pa.array(words)), rng.standard_normal((40, 16)).astype(np.float32))
    first = [" ".join(rng.choice(words, 6)) for _ in range(60)]
    # Half the pairs are a sentence and itself: cosines of 1 up to rounding, whose order decides ties.
    second = [s if i % 2 else " ".join(rng.choice(words, 6)) for i, s in enumerate(first)]
    gold = np.where(np.arange(60) % 2, 5.0, rng.uniform(0, 4, 60))
    trained = evaluate_scored(enc, enc, ScoredData(first, second, gold))
    evaluated = evaluate_sts(enc, first, second, gold).metrics
    assert trained["spearman"] == evaluated["spearman"] and trained["pearson"] == evaluated["pearson"]
