"""Retrieval quality of an index: its rankings of judged queries scored with :mod:`.metrics`.

Queries and judgments come in BEIR layout (``corpus.jsonl``, ``queries.jsonl``,
``qrels/<split>.tsv``) or as explicit files (:mod:`glovefaiss.io.beir`); an index directory
answers the queries; the metrics (default nDCG@10, Recall@10/100, MRR@10, MAP@100) are
averaged over the judged queries. A judged query the index cannot answer (no word in the
vocabulary) scores 0 on every metric; it still counts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError
from ..io import beir
from .metrics import EvalError, evaluate_run, parse_metric

RETRIEVAL_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10", "map@100")

Run = dict[str, list[str]]


@dataclass
class RetrievalData:
    """Queries and judgments, plus the corpus file when the index is to be built here."""

    queries: dict[str, str]
    qrels: beir.Qrels
    corpus: Path | None = None
    name: str = ""


def load_retrieval(data: str | Path | None = None, split: str = "test", *, corpus: str | Path | None = None,
                   queries: str | Path | None = None, qrels: str | Path | None = None) -> RetrievalData:
    """A BEIR directory (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``) and/or explicit files."""
    if data is not None:
        data = Path(data)
        corpus = corpus or data / "corpus.jsonl"
        queries = queries or data / "queries.jsonl"
    if queries is None or (qrels is None and data is None):
        raise EvalError("retrieval evaluation needs queries and qrels: a BEIR directory, or --queries and --qrels")
    try:
        qrels = qrels or beir.qrels_file(data, split)
        qids, qtexts = beir.read_queries(queries)
        judged = beir.read_qrels(qrels)
    except DataError as e:
        raise EvalError(str(e)) from None
    missing = sorted(set(judged) - set(qids))
    if missing:
        raise EvalError(f"{len(missing)} judged queries are not in {queries} (e.g. {missing[0]!r})")
    wanted = {q: t for q, t in zip(qids, qtexts) if q in judged}
    return RetrievalData(wanted, judged, Path(corpus) if corpus else None, str(data.name if data else Path(qrels).stem))


def corpus_to_parquet(path: str | Path, out: str | Path) -> Path:
    """Write a BEIR corpus (JSONL or Parquet) as Parquet with columns ``id`` (string), ``text``."""
    ids, texts = beir.read_corpus(path)
    out = Path(out)
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "text": pa.array(texts, pa.string())}), out)
    return out


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
    """Ranked document ids (as strings) of each query from an :class:`~glovefaiss.index.search.Index`,
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
    depth = max(parse_metric(m)[1] for m in metrics)
    run, seconds = run_queries(index, data.queries, depth)
    result = evaluate_run(run, data.qrels, metrics)
    unanswered = sum(1 for q in data.queries if not run.get(q))
    return Report("retrieval", name or data.name, {m: v * 100 for m, v in result["metrics"].items()},
                  {"queries": result["queries"], "documents": len(index), "unanswered_queries": unanswered},
                  {"search_s": round(seconds, 4), "ms_per_query": round(1000 * seconds / max(len(run), 1), 4)},
                  result["per_query"])


def evaluate_built(data: RetrievalData, metrics: Sequence[str] = RETRIEVAL_METRICS, name: str = "", *,
                   config=None, model_dir: str | Path | None = None, out: str | Path | None = None,
                   progress: bool | None = None):
    """(:class:`Report`, the build's result) of an index of ``data.corpus`` built first: at ``out``
    (replacing it), else in a temporary directory removed afterwards; through ``model_dir``'s
    towers when given (``config`` then contributes its build section)."""
    import tempfile

    from ..index.build import build
    from ..index.search import Index
    from ..index.with_model import build_with_model

    if data.corpus is None:
        raise EvalError("no corpus to build an index of: give a BEIR directory with corpus.jsonl, or a corpus file")
    with tempfile.TemporaryDirectory(prefix="glovefaiss-eval-") as tmp:
        corpus_file = corpus_to_parquet(data.corpus, Path(tmp) / "corpus.parquet")
        index_dir = Path(out) if out is not None else Path(tmp) / "index"
        kwargs = {"config": config, "overwrite": out is not None, "progress": progress}
        built = (build_with_model([corpus_file], index_dir, model_dir, **kwargs) if model_dir is not None
                 else build([corpus_file], index_dir, **kwargs))
        return evaluate_retrieval(Index.load(index_dir), data, metrics, name), built


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
