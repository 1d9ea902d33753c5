"""Score a trained model (or the frozen GloVe tower of a config) on held-out data, the way it is served.

    train_eval.py DATA [--model MODEL_DIR | --config FILE] [--json]

DATA: a BEIR ``qrels/<split>.tsv`` (e.g. path/to/scifact/qrels/test.tsv) or STS pairs
(CSV/TSV sentence1, sentence2, score). Retrieval: the corpus is written to a temporary Parquet
file, indexed with ``glovefaiss build`` (``--model``: the document tower; otherwise the config's
frozen tower), and every query is answered by ``Index.search`` (the ``glovefaiss query`` path);
nDCG@10 and Recall@10/100 (x100) over all judged queries, and again over the queries none of whose
relevant documents is a positive of the training split ("unseen documents"). STS: Spearman and
Pearson x100 of cos(query tower(sentence1), document tower(sentence2)).

The metrics are :mod:`glovefaiss.evaluation.metrics` with binary relevance (SciFact's qrels are).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def ndcg_recall(ranked: list[list], relevant: list[set]) -> dict[str, float]:
    """nDCG@10, Recall@10 and Recall@100 x100 of each ranking against its relevant set (binary)."""
    from glovefaiss.evaluation.metrics import evaluate_run

    result = evaluate_run(dict(enumerate(ranked)), {i: dict.fromkeys(rel, 1) for i, rel in enumerate(relevant)},
                          ["ndcg@10", "recall@10", "recall@100"])
    return {"queries": len(ranked), **{m: 100 * v for m, v in result["metrics"].items()}}


def retrieval(qrels: Path, model: Path | None, config_path: Path | None) -> dict:
    from glovefaiss.config import load_config
    from glovefaiss.index.build import build
    from glovefaiss.index.search import Index
    from glovefaiss.index.with_model import build_with_model
    from glovefaiss.train.data import read_beir

    root = qrels.parent.parent
    data = read_beir(root, qrels.stem)
    train_docs = set()
    if (root / "qrels" / "train.tsv").is_file() and qrels.stem != "train":
        train = read_beir(root, "train")
        train_docs = {train.document_ids[d] for d in train.pairs[:, 1].tolist()}
    with tempfile.TemporaryDirectory(prefix="train-eval-") as tmp:
        corpus = Path(tmp) / "corpus.parquet"
        pq.write_table(pa.table({"id": pa.array(data.document_ids, pa.string()),
                                 "text": pa.array(data.documents, pa.string())}), corpus)
        if model is not None:
            build_with_model([corpus], Path(tmp) / "idx", model, progress=False)
        else:
            build([corpus], Path(tmp) / "idx", load_config(config_path), progress=False)
        index = Index.load(Path(tmp) / "idx")
        rel = data.relevant()
        qs = sorted(rel)
        res = index.search([data.queries[q] for q in qs], k=100)
    ranked = [[i for i in row if i is not None] for row in res.ids.tolist()]
    relevant = [{data.document_ids[d] for d in rel[q]} for q in qs]
    out = {"all": ndcg_recall(ranked, relevant)}
    if train_docs:
        keep = [i for i, r in enumerate(relevant) if not r & train_docs]
        out["unseen documents"] = ndcg_recall([ranked[i] for i in keep], [relevant[i] for i in keep])
        out["seen documents"] = ndcg_recall([ranked[i] for i in range(len(qs)) if i not in set(keep)],
                                            [relevant[i] for i in range(len(qs)) if i not in set(keep)])
    return out


def sts(path: Path, model: Path | None, config_path: Path | None) -> dict:
    from glovefaiss.config import load_config
    from glovefaiss.tower.encoder import encoder_from_config
    from glovefaiss.tower.model_dir import load_towers
    from glovefaiss.train.data import load_training_data
    from glovefaiss.train.fit import evaluate_scored

    data = load_training_data(path)
    if model is not None:
        q, d, _ = load_towers(model)
    else:
        q = d = encoder_from_config(load_config(config_path))[0]
    return {"all": {"pairs": len(data), **evaluate_scored(q, d, data)}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--config", type=Path)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    is_qrels = a.data.suffix == ".tsv" and a.data.parent.name == "qrels"
    out = retrieval(a.data, a.model, a.config) if is_qrels else sts(a.data, a.model, a.config)
    if a.json:
        print(json.dumps(out, indent=2))
        return
    for part, metrics in out.items():
        shown = ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
        print(f"{a.model or a.config or 'defaults'} on {a.data} [{part}]: {shown}")


if __name__ == "__main__":
    sys.exit(main())
