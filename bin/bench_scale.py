#!/usr/bin/env python
"""glovefaiss scale benchmark: approximate indexes at 1M+ documents, topic-structured and adversarial.

For each corpus flavour it builds an index with ``glovefaiss build`` (index family chosen by
``--index``, tuned for recall@10 >= --target-recall), then measures, against exact search over the
same shard vectors: recall@10 of text queries, warm single-query latency end to end (text in,
hits out) on one thread, batch queries/s, cold ``glovefaiss query --mmap`` and ``--no-mmap``
wall time vs ``import faiss``, build time, index bytes and peak RSS. Run through ``bin/bench-scale``.

Raw results go to ``<out>/scale-<docs>.json`` as each flavour finishes; the report is rendered
from that file to ``<out>/scale-<docs>.md`` and stdout. ``--render FILE`` re-renders without measuring.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import report  # noqa: E402
from benchlib.corpus import GLOVE, topic_corpus, window_queries, zipf_corpus  # noqa: E402
from benchlib.env import ROOT, describe_machine, log, machine_info, set_prog  # noqa: E402
from benchlib.measure import cold_queries, each_once, pct, run_build, timed  # noqa: E402

FLAVOURS = ("topics", "zipf")


def exact_reference(index_dir: Path, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k labels of the query vectors over every shard vector."""
    from glovefaiss.index.shards import ShardReader, iter_shard_vectors
    from glovefaiss.index.tuning import exact_topk

    m = json.loads((index_dir / "manifest.json").read_text())
    reader = ShardReader(index_dir, m["shards"])
    return exact_topk(((v, ids.to_numpy()) for ids, v in iter_shard_vectors(reader)), queries, k)


def measure_queries(index_dir: Path, texts: list[str], k: int = 10, warmup: int = 50) -> dict:
    import faiss

    import glovefaiss
    from glovefaiss.index.tuning import knn_recall

    idx = glovefaiss.Index.load(index_dir)
    vecs = idx.encode(texts)
    keep = np.flatnonzero(np.any(vecs != 0, axis=1))
    texts = [texts[i] for i in keep]
    vecs = vecs[keep]
    for t in texts[:warmup]:
        idx.hits(t, k)
    lat = each_once({"hits": lambda i: idx.hits(texts[i], k), "search": lambda i: idx.search(texts[i], k)},
                    range(warmup, len(texts)))
    truth = exact_reference(index_dir, vecs, k)
    recall = knn_recall(idx.search(texts, k).ids, truth)
    batch = texts[:2000]
    idx.search(batch[:100], k)
    qps = len(batch) / timed(idx.search, batch, k)[1]
    return {"queries": len(texts), "recall": recall, "lat_s": lat, "batch": len(batch), "batch_qps": qps,
            "threads": faiss.omp_get_max_threads()}


def measure(args, res: report.Results) -> None:
    """Each flavour's corpus, build, queries and cold queries, saved as soon as the flavour is done."""
    from glovefaiss.vectors.sources import load_vectors

    res["machine"] = machine_info()
    vectors = load_vectors(GLOVE)
    res["flavours"] = []
    for flavour in args.flavours:
        if flavour == "topics":
            corpus = args.out / f"topics-{args.docs}-{args.seed}.parquet"
            meta = topic_corpus(corpus, args.docs, args.seed, vectors)
        else:
            corpus = args.out / f"zipf-{args.docs}-{args.seed}.parquet"
            meta = zipf_corpus(corpus, args.docs, args.seed, vectors.words)
        index_dir = args.out / f"index-{flavour}-{args.docs}-{args.index}"
        extra = ["--index", args.index, "--target-recall", str(args.target_recall)]
        if args.max_index_memory:
            extra += ["--max-index-memory", args.max_index_memory]
        b = run_build(corpus, index_dir, extra)
        texts = window_queries(corpus, args.queries, args.seed)
        log(f"{flavour}: measuring {len(texts)} text queries")
        q = measure_queries(index_dir, texts)
        c = cold_queries(index_dir, texts[0], args.cold_runs)
        res["flavours"] = res["flavours"] + [{"flavour": flavour, "corpus": meta, "build": b, "queries": q, "cold": c}]
        ix = b["manifest"]["index"]
        log(f"{flavour}: {ix['key']} {ix['params']} tuned recall {(ix.get('tuning') or {}).get('recall')}, "
            f"text-query recall {q['recall']:.3f}, hits p50 {pct(q['lat_s']['hits'], 50) / 1e3:.3f} ms")


def render(data: dict) -> str:
    """The Markdown report of saved results (one column per flavour measured)."""
    rows = data.get("flavours", [])
    lines = [f"# glovefaiss scale benchmark, {int(data['args']['docs']):,} documents", "",
             f"`{data['command']}` ({data['started']}); every figure from this one run.", "",
             "Machine: " + describe_machine(data["machine"]), "", *report.unfinished(data)]
    table = []

    def row(name, fn):
        table.append([name] + [fn(r) for r in rows])

    def ms(r, key, q):
        return pct(r["queries"]["lat_s"][key], q) / 1e3

    def cold(r, key):
        return float(np.median(r["cold"]["walls_s"][key]))

    def ix(r):
        return r["build"]["manifest"]["index"]

    row("index (key)", lambda r: f"{ix(r)['type']} (`{ix(r)['key']}`)")
    row("search params kept", lambda r: ", ".join(f"{k}={v}" for k, v in ix(r)["params"].items()) or "-")
    row("tuner: recall@10 on its held-out queries", lambda r: f"{(ix(r).get('tuning') or {}).get('recall', 1.0):.3f}")
    row("tuner: target reached", lambda r: str((ix(r).get("tuning") or {}).get("reached", True)))
    row("recall@10 of text queries vs exact", lambda r: f"{r['queries']['recall']:.3f} ({r['queries']['queries']} queries)")
    row("single query p50 / p99, text in, hits out, each text new (ms)",
        lambda r: f"{ms(r, 'hits', 50):.3f} / {ms(r, 'hits', 99):.3f}")
    row("single query p50 / p99, `search` ids only, other texts (ms)",
        lambda r: f"{ms(r, 'search', 50):.3f} / {ms(r, 'search', 99):.3f}")
    row("batch of 2,000 texts (queries/s)", lambda r: f"{r['queries']['batch_qps']:,.0f}")
    for key, label in (("mmap_evicted", "`--mmap`, index page cache dropped"),
                       ("no_mmap_evicted", "`--no-mmap`, index page cache dropped"),
                       ("mmap_cached", "`--mmap`, index cached"), ("no_mmap_cached", "`--no-mmap`, index cached")):
        row(f"cold `glovefaiss query` {label} (s, median)",
            lambda r, key=key: f"{cold(r, key):.2f} ({cold(r, key) / cold(r, 'import_faiss'):.1f}x import faiss)")
    row("`python -c 'import faiss'` (s)", lambda r: f"{cold(r, 'import_faiss'):.2f}")
    row("build wall time (s)", lambda r: f"{r['build']['wall_s']:.0f}")
    row("· encode / index (train+add+tune) (s)", lambda r: f"{r['build']['manifest']['timings']['encode_s']:.0f} / "
        f"{r['build']['manifest']['timings']['index_s']:.0f}")
    row("index bytes", lambda r: f"{ix(r)['bytes'] / 2**20:,.0f} MB")
    row("build peak RSS", lambda r: f"{r['build']['max_rss_mb']:,.0f} MB")
    lines += report.table([""] + [r["flavour"] for r in rows], table)
    if rows:
        c = rows[0]["cold"]
        lines += ["", f"Cold queries: fresh processes, {c['runs']} runs each; *page cache dropped*: "
                  f"{c['eviction']} before each run (the interpreter and libraries stay cached)."]
    lines += ["", "Build summaries:", ""] + [f"- {r['flavour']}: " + " / ".join(r["build"]["summary"]) for r in rows]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bin/bench-scale", description=__doc__.splitlines()[0],
                                epilog="Re-render: bin/bench-scale --render bench-out/scale-1000000.json")
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "bench-out", help="corpora, indexes, scale-<docs>.json/.md")
    p.add_argument("--flavours", default="topics,zipf", help="comma list of: " + ", ".join(FLAVOURS))
    p.add_argument("--index", default="auto", help="--index for glovefaiss build")
    p.add_argument("--max-index-memory", default=None)
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cold-runs", type=int, default=5, help="fresh processes per cold-query variant")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="render saved results without measuring")
    args = p.parse_args(argv)
    args.flavours = [f for f in args.flavours.split(",") if f]
    unknown = sorted(set(args.flavours) - set(FLAVOURS))
    if unknown or not args.flavours:
        p.error(f"--flavours: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(FLAVOURS)}")
    return args


def main(argv=None) -> int:
    set_prog("bench-scale")
    args = parse_args(argv)
    args.out = args.out.absolute()
    return report.drive("bench-scale", args, args.out / f"scale-{args.docs}.json", measure, render,
                        lambda results: results.with_suffix(".md"))


if __name__ == "__main__":
    sys.exit(main())
