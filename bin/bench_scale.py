#!/usr/bin/env python
"""glovefaiss scale benchmark: approximate indexes at 1M+ documents, topic-structured and adversarial.

For each corpus flavour it builds an index with ``glovefaiss build`` (index family chosen by
``--index``, tuned for recall@10 >= --target-recall), then measures, against exact search over the
same shard vectors: recall@10 of text queries, warm single-query latency end to end (text in,
hits out) on one thread of an index loaded as ``glovefaiss serve`` loads it, batch queries/s, cold
``glovefaiss query --mmap`` and ``--no-mmap`` wall time vs ``import faiss``, build time, index
bytes and peak RSS. Run through ``bin/bench-scale``.

Raw results go to ``<out>/scale-<docs>.json`` as each flavour finishes; the report is rendered
from that file to ``<out>/scale-<docs>.md`` and stdout. ``--render FILE`` re-renders without measuring.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import report  # noqa: E402
from benchlib.corpus import GLOVE, length_mix_queries, topic_corpus, zipf_corpus  # noqa: E402
from benchlib.env import describe_machine, log, machine_info, set_prog  # noqa: E402
from benchlib.measure import cold_queries, pct, run_build, timed  # noqa: E402

FLAVOURS = ("topics", "zipf")


def exact_reference(index_dir: Path, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k labels of the query vectors over every shard vector."""
    from glovefaiss.index.shards import ShardReader, iter_shard_vectors
    from glovefaiss.index.tuning import exact_topk

    m = json.loads((index_dir / "manifest.json").read_text())
    reader = ShardReader(index_dir, m["shards"])
    return exact_topk(((v, ids.to_numpy()) for ids, v in iter_shard_vectors(reader)), queries, k)


def measure_queries(index_dir: Path, texts: list[str], k: int = 10, warmup: int = 50) -> dict:
    """Recall vs exact and single-query latency (hits / search taking turns, each text timed once), per length bucket."""
    import faiss
    import pyarrow as pa

    import glovefaiss
    from glovefaiss.index.tuning import QuerySet, bucket_recall, knn_recall, recall_per_query

    idx = glovefaiss.Index.load(index_dir).warm()  # as `glovefaiss serve` loads it
    vecs = idx.encode(texts)
    keep = np.flatnonzero(np.any(vecs != 0, axis=1))
    texts = [texts[i] for i in keep]
    qs = QuerySet(vecs[keep], np.asarray(idx.encoder.token_rows(pa.array(texts, pa.string()))[1]))
    bucket_of = np.empty(len(qs), dtype=object)
    for name, rows in qs.buckets().items():
        bucket_of[rows] = name
    for t in texts[:warmup]:
        idx.hits(t, k)
    variants = {"hits": lambda i: idx.hits(texts[i], k), "search": lambda i: idx.search(texts[i], k)}
    lat: dict = {v: [] for v in variants}
    by_bucket: dict = {v: {} for v in variants}
    for j, i in enumerate(range(warmup, len(texts))):
        v = ("hits", "search")[j % 2]
        t = time.perf_counter()
        variants[v](i)
        dt = time.perf_counter() - t
        lat[v].append(dt)
        by_bucket[v].setdefault(bucket_of[i], []).append(dt)
    truth = exact_reference(index_dir, qs.vectors, k)
    found = idx.search(texts, k).ids
    per_query = recall_per_query(found, truth)
    batch = texts[:2000]
    idx.search(batch[:100], k)
    qps = len(batch) / timed(idx.search, batch, k)[1]
    return {"queries": len(texts), "recall": knn_recall(found, truth), "lat_s": lat, "bucket_lat_s": by_bucket,
            "buckets": bucket_recall(per_query, qs.buckets(), k), "batch": len(batch), "batch_qps": qps,
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
        flat = None
        if args.flat_baseline and args.index != "flat":
            # The exact index's build in the same run: what the approximate build's time is a ratio of.
            fb = run_build(corpus, args.out / f"index-{flavour}-{args.docs}-flat", ["--index", "flat"])
            flat = {"wall_s": fb["wall_s"], "index_s": fb["manifest"]["timings"]["index_s"], "load": os.getloadavg()}
            log(f"{flavour}: flat build {fb['wall_s']:.0f} s")
        load_before = os.getloadavg()
        b = run_build(corpus, index_dir, extra)
        b["flat_baseline"] = flat
        texts = length_mix_queries(corpus, args.queries, args.seed)
        log(f"{flavour}: measuring {len(texts)} text queries")
        q = measure_queries(index_dir, texts)
        c = cold_queries(index_dir, texts[0], args.cold_runs)
        load = {"before_build": load_before, "after_queries": os.getloadavg()}
        res["flavours"] = res["flavours"] + [{"flavour": flavour, "corpus": meta, "build": b, "queries": q, "cold": c,
                                              "loadavg": load}]
        ix = b["manifest"]["index"]
        log(f"{flavour}: {ix['key']} {ix['params']} tuned recall {(ix.get('tuning') or {}).get('recall')}, "
            f"text-query recall {q['recall']:.3f}, hits p50 {pct(q['lat_s']['hits'], 50) / 1e3:.3f} ms; "
            + "; ".join(f"{n} {bq['recall']:.3f}" for n, bq in q["buckets"].items()))


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
    row("search params by query length (most tokens: params)", lambda r: "; ".join(
        f"{e['max_tokens'] or 'more'}: " + ", ".join(f"{k}={v}" for k, v in e["params"].items())
        for e in ix(r).get("params_by_length") or []) or "-")
    row("tuner: recall@10 on its held-out queries", lambda r: f"{(ix(r).get('tuning') or {}).get('recall', 1.0):.3f}")
    row("tuner: target reached", lambda r: str((ix(r).get("tuning") or {}).get("reached", True)))
    row("recall@10 of text queries vs exact, all lengths", lambda r: f"{r['queries']['recall']:.3f} ({r['queries']['queries']} queries)")
    names = [n for n in ("1-3 tokens", "4-12 tokens", "13+ tokens") if any(n in r["queries"].get("buckets", {})
                                                                           for r in rows)]
    for name in names:
        row(f"recall@10 vs exact, {name} queries", lambda r, name=name: (
            f"{r['queries']['buckets'][name]['recall']:.3f} ({r['queries']['buckets'][name]['queries']})"
            if name in r["queries"].get("buckets", {}) else "-"))
    for name in names:
        row(f"single query p50 / p99, hits, {name} (ms)", lambda r, name=name: (
            f"{pct(r['queries']['bucket_lat_s']['hits'][name], 50) / 1e3:.3f} / "
            f"{pct(r['queries']['bucket_lat_s']['hits'][name], 99) / 1e3:.3f}"
            if name in r["queries"].get("bucket_lat_s", {}).get("hits", {}) else "-"))
    row("tuner: recall@10 per bucket (lower bound)", lambda r: "; ".join(
        f"{n} {b['recall']:.3f} ({b['recall_lower_bound']:.3f})"
        for n, b in ((ix(r).get("tuning") or {}).get("buckets") or {}).items()) or "-")
    row("load average before build / after queries", lambda r: " / ".join(
        f"{x[0]:.1f}" for x in (r.get("loadavg") or {}).values()) or "-")
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
    row("flat build wall time, same run (s); build / flat", lambda r: (
        f"{r['build']['flat_baseline']['wall_s']:.0f}; {r['build']['wall_s'] / r['build']['flat_baseline']['wall_s']:.2f}x"
        if r["build"].get("flat_baseline") else "-"))
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
    p = report.corpus_parser("bench-scale", __doc__, "scale-1000000.json", "corpora, indexes, scale-<docs>.json/.md")
    p.add_argument("--flavours", default="topics,zipf", help="comma list of: " + ", ".join(FLAVOURS))
    p.add_argument("--index", default="auto", help="--index for glovefaiss build")
    p.add_argument("--max-index-memory", default=None)
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--cold-runs", type=int, default=5, help="fresh processes per cold-query variant")
    p.add_argument("--flat-baseline", action="store_true", help="also time a flat build of each corpus (the ratio)")
    args = p.parse_args(argv)
    args.flavours = report.comma_list(p, "--flavours", args.flavours, FLAVOURS)
    return args


def main(argv=None) -> int:
    set_prog("bench-scale")
    args = parse_args(argv)
    args.out = args.out.absolute()
    return report.drive("bench-scale", args, args.out / f"scale-{args.docs}.json", measure, render,
                        lambda results: results.with_suffix(".md"))


if __name__ == "__main__":
    sys.exit(main())
