"""Quality measurement: IR metrics over an index, STS correlations over a tower, and their inputs.

Retrieval (``evaluate_retrieval``): queries and relevance judgments in BEIR layout
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) or Parquet/JSONL/TSV files; an
index directory answers the queries; nDCG@10, Recall@10/100, MRR@10 and MAP@100 are averaged
over the judged queries. The definitions follow trec_eval (what BEIR reports through
pytrec_eval): a document is relevant when its judgment is > 0; nDCG uses the judgment as the
gain and ``1/log2(rank + 1)`` as the discount, the ideal ranking taken from all judgments of
the query; Recall@k is relevant retrieved in the top k over all relevant; MRR@k is 1/rank of
the first relevant document in the top k; MAP@k sums precision at each relevant rank up to k
and divides by the number of relevant documents. A judged query the index cannot answer (no
word in the vocabulary) scores 0 on every metric; it still counts.

Similarity (``evaluate_sts``): sentence pairs with gold scores (CSV/TSV with or without a
header, or Parquet) → Pearson and Spearman correlations, x100, between the gold scores and the
cosine of the two sentences' vectors (0 when either sentence has no known word).

No torch, no scipy: numpy, pyarrow and the index.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError, GloveFaissError
from ..io.scored import read_scored_csv
from ..tower.encoder import TextEncoder

RETRIEVAL_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")
STS_METRICS = ("pearson", "spearman")

Qrels = dict[str, dict[str, int]]
Run = dict[str, list[str]]


class EvalError(GloveFaissError):
    """Evaluation data is missing or malformed."""


# --- metrics ------------------------------------------------------------------------------------

def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """nDCG@k with linear gains (the judgment) and a log2(rank + 1) discount, as trec_eval."""
    gains = [max(judged.get(d, 0), 0) for d in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    relevant = {d for d, g in judged.items() if g > 0}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def mrr_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def average_precision_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Sum of precision@i at each relevant rank i <= k, over the number of relevant documents."""
    n_relevant = sum(1 for g in judged.values() if g > 0)
    if not n_relevant:
        return 0.0
    hits = 0
    total = 0.0
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) > 0:
            hits += 1
            total += hits / (i + 1)
    return total / n_relevant


_METRIC_FUNCS = {"ndcg": ndcg_at_k, "recall": recall_at_k, "mrr": mrr_at_k, "map": average_precision_at_k}


def _parse_metric(name: str) -> tuple[Any, int]:
    kind, _, cut = name.partition("@")
    if kind not in _METRIC_FUNCS or not cut.isdigit() or int(cut) < 1:
        raise EvalError(f"unknown metric {name!r}; use {', '.join(f'{m}@K' for m in _METRIC_FUNCS)}")
    return _METRIC_FUNCS[kind], int(cut)


def evaluate_run(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]],
                 metrics: Sequence[str] = RETRIEVAL_METRICS) -> dict[str, Any]:
    """Mean of each metric over the queries of ``qrels`` that have a relevant document.

    ``run[qid]`` is the ranked list of document ids (best first); a judged query missing from
    ``run`` scores 0. Returns ``{"metrics": {name: mean}, "queries": n, "per_query": {qid: {...}}}``.
    """
    funcs = [(m, *_parse_metric(m)) for m in metrics]
    per_query: dict[str, dict[str, float]] = {}
    for qid in sorted(qrels):
        judged = qrels[qid]
        if not any(g > 0 for g in judged.values()):
            continue
        ranked = list(run.get(qid, ()))
        per_query[qid] = {m: fn(ranked, judged, k) for m, fn, k in funcs}
    n = len(per_query)
    means = {m: (sum(q[m] for q in per_query.values()) / n if n else 0.0) for m, _, _ in funcs}
    return {"metrics": means, "queries": n, "per_query": per_query}


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if len(x) != len(y) or len(x) < 2:
        raise EvalError("correlations need two equally long series of at least 2 values")
    xc = x - x.mean()
    yc = y - y.mean()
    denom = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / denom if denom > 0 else 0.0


def rankdata(x: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties given the average of their ranks (scipy's ``rankdata`` default)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    start = 0
    for end in np.append(np.flatnonzero(np.diff(xs) != 0) + 1, len(x)):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
        start = end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    return pearson(rankdata(x), rankdata(y))


# --- inputs -------------------------------------------------------------------------------------

def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise EvalError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(row, dict):
                    raise EvalError(f"{path}:{n}: each line must be a JSON object")
                rows.append(row)
    return rows


def _is_parquet(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PAR1"


def _rows(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"file not found: {path}")
    if _is_parquet(path):
        return pq.read_table(path).to_pylist()
    return _read_jsonl(path)


def _pick(row: dict, names: Sequence[str], path: Path) -> Any:
    for n in names:
        if n in row:
            return row[n]
    raise EvalError(f"{path}: no column {' or '.join(repr(n) for n in names)}; columns present: {', '.join(row)}")


def read_texts(path: str | Path) -> tuple[list[str], list[str]]:
    """(ids, texts) of a BEIR JSONL file or Parquet: id ``_id``/``id``; text ``title`` + " " + ``text``.

    The title is joined to the text the way BEIR's dense retrievers do it.
    """
    path = Path(path)
    rows = _rows(path)
    if not rows:
        raise EvalError(f"{path} is empty")
    ids, texts = [], []
    for row in rows:
        ids.append(str(_pick(row, ("_id", "id"), path)))
        title = row.get("title") or ""
        text = _pick(row, ("text",), path) or ""
        texts.append(f"{title} {text}".strip() if title else text)
    return ids, texts


def read_qrels(path: str | Path) -> Qrels:
    """Judgments from a TSV (BEIR: header ``query-id corpus-id score``), JSONL or Parquet file."""
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"qrels file not found: {path}")
    qrels: Qrels = {}
    if _is_parquet(path) or path.suffix.lower() in (".jsonl", ".json"):
        for row in _rows(path):
            q = str(_pick(row, ("query-id", "query_id", "qid"), path))
            d = str(_pick(row, ("corpus-id", "corpus_id", "doc_id", "docid"), path))
            qrels.setdefault(q, {})[d] = int(_pick(row, ("score", "relevance", "rel"), path))
        return qrels
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        for n, row in enumerate(reader, 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) == 4:  # TREC qrels: qid iteration docid rel
                row = [row[0], row[2], row[3]]
            if len(row) != 3:
                raise EvalError(f"{path}:{n}: want 3 tab-separated fields (query-id, corpus-id, score), got {len(row)}")
            try:
                score = int(float(row[2]))
            except ValueError:
                if n == 1:
                    continue  # header
                raise EvalError(f"{path}:{n}: score {row[2]!r} is not a number") from None
            qrels.setdefault(row[0], {})[row[1]] = score
    return qrels


@dataclass
class RetrievalData:
    """Queries and judgments, plus the corpus file when the index is to be built here."""

    queries: dict[str, str]
    qrels: Qrels
    corpus: Path | None = None
    name: str = ""


def load_retrieval(data: str | Path | None = None, split: str = "test", *, corpus: str | Path | None = None,
                   queries: str | Path | None = None, qrels: str | Path | None = None) -> RetrievalData:
    """A BEIR directory (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) and/or explicit files."""
    if data is not None:
        data = Path(data)
        if not data.is_dir():
            raise EvalError(f"{data} is not a directory; a BEIR data set has corpus.jsonl, queries.jsonl and qrels/")
        corpus = corpus or data / "corpus.jsonl"
        queries = queries or data / "queries.jsonl"
        qrels = qrels or data / "qrels" / f"{split}.tsv"
    if queries is None or qrels is None:
        raise EvalError("retrieval evaluation needs queries and qrels: a BEIR directory, or --queries and --qrels")
    qids, qtexts = read_texts(queries)
    judged = read_qrels(qrels)
    known = set(qids)
    missing = sorted(set(judged) - known)
    if missing:
        raise EvalError(f"{len(missing)} judged queries are not in {queries} (e.g. {missing[0]!r})")
    wanted = {q: t for q, t in zip(qids, qtexts) if q in judged}
    return RetrievalData(wanted, judged, Path(corpus) if corpus else None, str(data.name if data else Path(qrels).stem))


def corpus_to_parquet(path: str | Path, out: str | Path) -> Path:
    """Write a BEIR corpus (JSONL or Parquet) as Parquet with columns ``id`` (string), ``text``."""
    ids, texts = read_texts(path)
    out = Path(out)
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())}), out)
    return out


def read_pairs(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(sentence1, sentence2, scores) from CSV/TSV (:func:`~glovefaiss.scored_csv.read_scored_csv`) or Parquet.

    Parquet: columns ``sentence1``, ``sentence2``, ``score`` when named; otherwise the first three.
    """
    path = Path(path)
    if not path.is_file():
        raise EvalError(f"pairs file not found: {path}")
    if _is_parquet(path):
        table = pq.read_table(path)
        names = table.column_names
        cols = [n for n in ("sentence1", "sentence2", "score") if n in names]
        cols = cols if len(cols) == 3 else names[:3]
        if len(cols) < 3:
            raise EvalError(f"{path}: want columns sentence1, sentence2, score; got {', '.join(names)}")
        a, b, s = (table.column(c).to_pylist() for c in cols)
        return [x or "" for x in a], [x or "" for x in b], np.asarray(s, dtype=np.float64)
    try:
        return read_scored_csv(path)
    except DataError as e:
        raise EvalError(str(e)) from None


# --- evaluations --------------------------------------------------------------------------------

@dataclass
class Report:
    """One evaluation: metric name → value (x100 for display), plus counts and timings."""

    task: str
    name: str
    metrics: dict[str, float]
    counts: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    per_query: dict[str, dict[str, float]] | None = None

    def to_dict(self, per_query: bool = False) -> dict[str, Any]:
        out = {"task": self.task, "name": self.name, "metrics": self.metrics, **self.counts, "timings": self.timings}
        if per_query and self.per_query is not None:
            out["per_query"] = self.per_query
        return out


def run_queries(index, queries: Mapping[str, str], k: int = 100, batch: int = 256) -> tuple[Run, float]:
    """Ranked document ids (as strings) of each query from an :class:`~glovefaiss.query.Index`,
    and the seconds spent encoding and searching."""
    qids = list(queries)
    run: Run = {}
    t = time.perf_counter()
    for start in range(0, len(qids), batch):
        chunk = qids[start:start + batch]
        res = index.search_vectors(index.encode([queries[q] for q in chunk]), k)
        for qi, q in enumerate(chunk):
            found = res.rows[qi] >= 0
            run[q] = [str(x) for x in res.ids[qi][found].tolist()]
    return run, time.perf_counter() - t


def evaluate_retrieval(index, data: RetrievalData, metrics: Sequence[str] = RETRIEVAL_METRICS,
                       name: str = "") -> Report:
    """Search ``data.queries`` in ``index`` and score the rankings against ``data.qrels``."""
    depth = max(_parse_metric(m)[1] for m in metrics)
    run, seconds = run_queries(index, data.queries, depth)
    result = evaluate_run(run, data.qrels, metrics)
    unanswered = sum(1 for q in data.queries if not run.get(q))
    return Report("retrieval", name or data.name, {m: v * 100 for m, v in result["metrics"].items()},
                  {"queries": result["queries"], "documents": len(index), "unanswered_queries": unanswered},
                  {"search_s": round(seconds, 4), "ms_per_query": round(1000 * seconds / max(len(run), 1), 4)},
                  result["per_query"])


def cosines(encoder: TextEncoder, a: Sequence[str], b: Sequence[str],
            document_encoder: TextEncoder | None = None) -> np.ndarray:
    """Cosine of each pair's vectors (0 when either has no known word); ``b`` through
    ``document_encoder`` when given (a trained model's document tower)."""
    va = encoder.encode(a)
    vb = (document_encoder or encoder).encode(b)
    return (va.astype(np.float64) * vb.astype(np.float64)).sum(axis=1)


def evaluate_sts(encoder: TextEncoder, a: Sequence[str], b: Sequence[str], gold: Sequence[float],
                 name: str = "", document_encoder: TextEncoder | None = None) -> Report:
    """Pearson and Spearman (x100) of gold scores against pair cosines (see :func:`cosines`)."""
    t = time.perf_counter()
    cos = cosines(encoder, a, b, document_encoder)
    seconds = time.perf_counter() - t
    va_empty = int(np.sum(cos == 0))
    return Report("sts", name, {"pearson": 100 * pearson(gold, cos), "spearman": 100 * spearman(gold, cos)},
                  {"pairs": len(gold), "zero_cosine_pairs": va_empty}, {"encode_s": round(seconds, 4)})


def sts_encoder(config, sentences: Iterable[str], vectors=None) -> tuple[TextEncoder, dict[str, Any]]:
    """The config's tower, with its SIF weights and components fitted on ``sentences``."""
    from ..index.build import encoder_from_config
    from ..tower import sif as weighting

    encoder, _ = encoder_from_config(config, vectors)
    return weighting.prepare_for_texts(encoder, config.pooling, list(sentences), seed=config.seed)


# --- rendering ----------------------------------------------------------------------------------

def render_table(reports: Sequence[Report]) -> str:
    """A plain-text table: one row per report, metric values x100 with 2 decimals."""
    if not reports:
        return ""
    cols = []
    for r in reports:
        for m in r.metrics:
            if m not in cols:
                cols.append(m)
    head = ["task", "name", *cols, "n"]
    rows = []
    for r in reports:
        n = r.counts.get("queries", r.counts.get("pairs", ""))
        rows.append([r.task, r.name, *(f"{r.metrics[c]:.2f}" if c in r.metrics else "" for c in cols), str(n)])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"
