"""Quality metrics: ranking metrics over judged queries, and correlations; numpy only.

The ranking metrics follow trec_eval (what BEIR reports through pytrec_eval): a document is
relevant when its judgment is > 0; nDCG uses the judgment as the gain and ``1/log2(rank + 1)``
as the discount, the ideal ranking taken from all judgments of the query; Recall@k is relevant
retrieved in the top k over all relevant; P@k is relevant retrieved in the top k over k (also
when fewer than k were retrieved); MRR@k is 1/rank of the first relevant document in the top
k; MAP@k sums precision at each relevant rank up to k and divides by the number of relevant
documents. Metric names are ``KIND@K`` (e.g. ``ndcg@10``, ``p@5``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError

Judged = Mapping[Hashable, int]
Metric = Callable[[Sequence[Hashable], Judged, int], float]


class EvalError(DataError):
    """Evaluation data or a metric name is invalid."""


def ndcg_at_k(ranked: Sequence[Hashable], judged: Judged, k: int) -> float:
    """nDCG@k with linear gains (the judgment) and a log2(rank + 1) discount, as trec_eval."""
    gains = [max(judged.get(d, 0), 0) for d in ranked[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains) if g)
    ideal = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def _hits(ranked: Sequence[Hashable], judged: Judged, k: int) -> int:
    return sum(1 for d in ranked[:k] if judged.get(d, 0) > 0)


def recall_at_k(ranked: Sequence[Hashable], judged: Judged, k: int) -> float:
    n_relevant = sum(1 for g in judged.values() if g > 0)
    return _hits(ranked, judged, k) / n_relevant if n_relevant else 0.0


def precision_at_k(ranked: Sequence[Hashable], judged: Judged, k: int) -> float:
    return _hits(ranked, judged, k) / k


def mrr_at_k(ranked: Sequence[Hashable], judged: Judged, k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if judged.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def average_precision_at_k(ranked: Sequence[Hashable], judged: Judged, k: int) -> float:
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


METRICS: dict[str, Metric] = {"ndcg": ndcg_at_k, "recall": recall_at_k, "p": precision_at_k, "mrr": mrr_at_k,
                              "map": average_precision_at_k}


def parse_metric(name: str) -> tuple[Metric, int]:
    """(function, k) of a metric name such as ``ndcg@10``."""
    kind, _, cut = name.partition("@")
    if kind not in METRICS or not cut.isdigit() or int(cut) < 1:
        raise EvalError(f"unknown metric {name!r}; use {', '.join(f'{m}@K' for m in METRICS)} with K >= 1")
    return METRICS[kind], int(cut)


def parse_metrics(values: Iterable[str]) -> list[str]:
    """Metric names from values that may each hold several, space- or comma-separated; checked, in
    order, repeats dropped."""
    names: list[str] = []
    for value in values:
        for name in re.split(r"[\s,]+", value.strip().lower()):
            if name and name not in names:
                parse_metric(name)
                names.append(name)
    if not names:
        raise EvalError("no metric given")
    return names


def evaluate_run(run: Mapping[Hashable, Sequence[Hashable]], qrels: Mapping[Hashable, Judged],
                 metrics: Sequence[str]) -> dict[str, Any]:
    """Mean of each metric over the queries of ``qrels`` that have a relevant document.

    ``run[qid]`` is the ranked list of document ids (best first); a judged query missing from
    ``run`` scores 0. Returns ``{"metrics": {name: mean}, "queries": n, "per_query": {qid: {...}}}``.
    """
    funcs = [(m, *parse_metric(m)) for m in metrics]
    per_query: dict[Hashable, dict[str, float]] = {}
    for qid in sorted(qrels):
        judged = qrels[qid]
        if not any(g > 0 for g in judged.values()):
            continue
        ranked = list(run.get(qid, ()))
        per_query[qid] = {m: fn(ranked, judged, k) for m, fn, k in funcs}
    n = len(per_query)
    means = {m: (sum(q[m] for q in per_query.values()) / n if n else 0.0) for m, _, _ in funcs}
    return {"metrics": means, "queries": n, "per_query": per_query}


def pair_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise dot products of two (n, d) arrays of unit (or zero) vectors, in float64.

    Training's validation and ``eval sts`` both score pairs with this: in float32, identical
    sentences get cosines that differ in the last bit, and ties broken by rounding move Spearman.
    """
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64)).sum(axis=1)


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; 0 when either series is constant."""
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
    """Spearman rank correlation (Pearson of the ranks, ties averaged)."""
    return pearson(rankdata(x), rankdata(y))
