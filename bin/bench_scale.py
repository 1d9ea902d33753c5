#!/usr/bin/env python
"""glovefaiss scale benchmark: approximate indexes at 1M+ documents, topic-structured and adversarial.

For each corpus flavour it builds an index with ``glovefaiss build`` (index family chosen by
``--index``, tuned for recall@10 >= --target-recall), then measures, against exact search over the
same shard vectors: recall@10 of text queries, warm single-query latency end to end (text in,
hits out) on one thread, batch queries/s, cold ``glovefaiss query`` wall time vs ``import faiss``,
build time, index bytes and peak RSS. Run through ``bin/bench-scale``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the corpus generator and helpers of bin/bench.py)

ROOT = bench.ROOT
log = bench.log


def topic_corpus(out: Path, docs: int, seed: int, topics: int = 2000, per_topic: int = 200) -> Path:
    """Each document mixes ~60% words of one topic (a seed word's nearest GloVe neighbours) with
    ~40% Zipf-drawn background words (with the bench generator's capitals and punctuation)."""
    import faiss

    from glovefaiss.vectors.sources import load_vectors

    path = out / f"topics-{docs}-{seed}.parquet"
    if path.exists() and pq.read_metadata(path).num_rows == docs:
        log(f"reusing {path}")
        return path
    log(f"generating {docs:,} topic-structured documents")
    vec = load_vectors(bench.GLOVE)
    vocab = bench.GenVocab(vec.words, seed)
    rng = np.random.default_rng([seed, 7])
    # Topic words come from the 50,000 most frequent alphabetic words; seeds from ranks 200-20,000.
    cand = np.flatnonzero(pa.compute.match_substring_regex(vec.words, r"^[a-z]+$").to_numpy(zero_copy_only=False))[:50_000]
    m = np.ascontiguousarray(vec.matrix[cand], dtype=np.float32)
    faiss.normalize_L2(m)
    seeds = rng.choice(np.arange(200, 20_000), topics, replace=False)
    _, nn = faiss.knn(m[seeds], m, per_topic, metric=faiss.METRIC_INNER_PRODUCT)
    topic_words = vec.words.take(pa.array(cand[nn.ravel()])).to_numpy(zero_copy_only=False).reshape(topics, per_topic)
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("text", pa.string())])
    tmp = path.with_name(path.name + ".tmp")
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, docs, bench.GEN_CHUNK_DOCS):
            n = min(bench.GEN_CHUNK_DOCS, docs - start)
            lengths = bench.doc_lengths(rng, n)
            n_topic = np.rint(lengths * 0.6).astype(np.int64)
            background = vocab.texts(rng, np.maximum(lengths - n_topic, 1)).to_numpy(zero_copy_only=False)
            t = rng.integers(0, topics, n)
            words = topic_words[np.repeat(t, n_topic), rng.integers(0, per_topic, int(n_topic.sum()))]
            cuts = np.cumsum(n_topic)[:-1]
            texts = [" ".join(w) + " " + b for w, b in zip(np.split(words, cuts), background)]
            writer.write_table(pa.table([pa.array(np.arange(start, start + n)), pa.array(texts)], schema=schema))
    tmp.rename(path)
    return path


def run_build(corpus: Path, out: Path, extra: list[str]) -> dict:
    exe = str(Path(sys.executable).parent / "glovefaiss")
    cmd = ["/usr/bin/time", "-v", exe, "build", str(corpus), "--out", str(out), "--overwrite", *extra]
    log("running: " + " ".join(cmd[2:]))
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise bench.BenchError(f"build failed:\n{proc.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1)) / 1024
    summary = [line for line in proc.stderr.splitlines() if line.startswith(("built ", "index "))]
    return {"wall_s": wall, "peak_rss_mb": rss, "summary": summary,
            "manifest": json.loads((out / "manifest.json").read_text())}


def exact_reference(index_dir: Path, queries: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k labels of the query vectors over every shard vector."""
    from glovefaiss.index.shards import ShardReader, iter_shard_vectors
    from glovefaiss.index.tuning import exact_topk

    m = json.loads((index_dir / "manifest.json").read_text())
    reader = ShardReader(index_dir, m["shards"])
    return exact_topk(((v, ids.to_numpy()) for ids, v in iter_shard_vectors(reader)), queries, k)


def measure_queries(index_dir: Path, texts: list[str], k: int = 10) -> dict:
    import faiss

    import glovefaiss
    from glovefaiss.index.tuning import recall_at_k

    idx = glovefaiss.Index.load(index_dir)
    vecs = idx.encode(texts)
    keep = np.flatnonzero(np.any(vecs != 0, axis=1))
    texts = [texts[i] for i in keep]
    vecs = vecs[keep]
    # Single queries first, each text timed once and by one variant only (hits on one half,
    # search on the other): a text searched a second time finds its IVF lists, vectors and
    # texts in the caches, which flatters whichever variant runs second.
    for t in texts[:50]:
        idx.hits(t, k)
    timed = texts[50:]
    half = len(timed) // 2
    lat_hits, lat_search = [], []
    threads = faiss.omp_get_max_threads()
    for t in timed[:half]:
        a = time.perf_counter()
        idx.hits(t, k)
        lat_hits.append(time.perf_counter() - a)
    for t in timed[half:]:
        a = time.perf_counter()
        idx.search(t, k)
        lat_search.append(time.perf_counter() - a)
    truth = exact_reference(index_dir, vecs, k)
    res = idx.search(texts, k)
    recall = recall_at_k(res.ids, truth)
    batch = texts[:2000]
    idx.search(batch[:100], k)
    a = time.perf_counter()
    idx.search(batch, k)
    qps = len(batch) / (time.perf_counter() - a)
    return {"queries": len(texts), "recall": recall, "hits_p50_ms": bench.pct(lat_hits, 50) / 1e3,
            "hits_p99_ms": bench.pct(lat_hits, 99) / 1e3, "search_p50_ms": bench.pct(lat_search, 50) / 1e3,
            "search_p99_ms": bench.pct(lat_search, 99) / 1e3, "batch_qps": qps, "threads": threads}


def cold_cli(index_dir: Path, text: str, runs: int = 5) -> dict:
    exe = str(Path(sys.executable).parent / "glovefaiss")

    def median(cmd):
        walls = []
        for _ in range(runs):
            a = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            walls.append(time.perf_counter() - a)
        return statistics.median(walls)

    q = [exe, "query", str(index_dir), text, "-k", "10"]
    return {"query_s": median(q), "query_mmap_s": median(q + ["--mmap"]),
            "import_faiss_s": median([sys.executable, "-c", "import faiss"])}


def query_texts(words: pa.Array, corpus: Path, n: int, seed: int) -> list[str]:
    """Queries like a user's: 2-8 words taken from random documents of the corpus."""
    rng = np.random.default_rng([seed, 3])
    rows = np.sort(rng.choice(pq.read_metadata(corpus).num_rows, n, replace=False))
    texts = pq.read_table(corpus, columns=["text"]).column(0).take(pa.array(rows)).to_pylist()
    out = []
    for t in texts:
        w = t.split()
        a = int(rng.integers(0, max(1, len(w) - 2)))
        out.append(" ".join(w[a:a + int(rng.integers(2, 9))]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "bench-out")
    p.add_argument("--flavours", default="topics,zipf", help="comma list of: topics, zipf")
    p.add_argument("--index", default="auto", help="--index for glovefaiss build")
    p.add_argument("--max-index-memory", default=None)
    p.add_argument("--target-recall", type=float, default=0.95)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from glovefaiss.vectors.sources import load_vectors

    words = load_vectors(bench.GLOVE).words
    rows = []
    for flavour in args.flavours.split(","):
        corpus = (topic_corpus(args.out, args.docs, args.seed) if flavour == "topics" else
                  args.out / f"zipf-{args.docs}.parquet")
        if flavour == "zipf" and not corpus.exists():
            sub = args.out / f"zipf-{args.docs}"
            sub.mkdir(exist_ok=True)
            bench.ensure_corpus(sub, args.docs, args.seed, words)
            (sub / "corpus.parquet").rename(corpus)
        index_dir = args.out / f"index-{flavour}-{args.docs}-{args.index}"
        extra = ["--index", args.index, "--target-recall", str(args.target_recall)]
        if args.max_index_memory:
            extra += ["--max-index-memory", args.max_index_memory]
        b = run_build(corpus, index_dir, extra)
        texts = query_texts(words, corpus, args.queries, args.seed)
        log(f"{flavour}: measuring {len(texts)} text queries")
        q = measure_queries(index_dir, texts)
        c = cold_cli(index_dir, texts[0])
        rows.append({"flavour": flavour, "build": b, "queries": q, "cold": c})
        m = b["manifest"]
        tuning = m["index"].get("tuning") or {}
        log(f"{flavour}: {m['index']['key']} {m['index']['params']} tuned recall {tuning.get('recall')}, "
            f"text-query recall {q['recall']:.3f}, hits p50 {q['hits_p50_ms']:.3f} ms")
    report = render(args, rows)
    print(report)
    (args.out / f"scale-{args.docs}.md").write_text(report)
    (args.out / f"scale-{args.docs}.json").write_text(json.dumps(rows, indent=1, default=str))
    return 0


def render(args, rows) -> str:
    lines = [f"# glovefaiss scale benchmark, {args.docs:,} documents", "",
             f"`bin/bench-scale --docs {args.docs} --index {args.index} --target-recall {args.target_recall}"
             + (f" --max-index-memory {args.max_index_memory}" if args.max_index_memory else "")
             + f"` ({time.strftime('%Y-%m-%d %H:%M')}); every figure from this one run.", "",
             "| | " + " | ".join(r["flavour"] for r in rows) + " |", "|---|" + "---:|" * len(rows)]

    def row(name, fn):
        lines.append(f"| {name} | " + " | ".join(fn(r) for r in rows) + " |")

    row("index (key)", lambda r: f"{r['build']['manifest']['index']['type']} (`{r['build']['manifest']['index']['key']}`)")
    row("search params kept", lambda r: ", ".join(f"{k}={v}" for k, v in r["build"]["manifest"]["index"]["params"].items()) or "-")
    row("tuner: recall@10 on its held-out queries", lambda r: f"{(r['build']['manifest']['index'].get('tuning') or {}).get('recall', 1.0):.3f}")
    row("tuner: target reached", lambda r: str((r['build']['manifest']['index'].get('tuning') or {}).get('reached', True)))
    row("recall@10 of text queries vs exact", lambda r: f"{r['queries']['recall']:.3f} ({r['queries']['queries']} queries)")
    row("single query p50 / p99, text in, hits out, each text new (ms)", lambda r: f"{r['queries']['hits_p50_ms']:.3f} / {r['queries']['hits_p99_ms']:.3f}")
    row("single query p50 / p99, `search` ids only, other texts (ms)", lambda r: f"{r['queries']['search_p50_ms']:.3f} / {r['queries']['search_p99_ms']:.3f}")
    row("batch of 2,000 texts (queries/s)", lambda r: f"{r['queries']['batch_qps']:,.0f}")
    row("cold `glovefaiss query` (s, median of 5)", lambda r: f"{r['cold']['query_s']:.2f} ({r['cold']['query_s'] / r['cold']['import_faiss_s']:.1f}x import faiss)")
    row("cold `glovefaiss query --mmap` (s)", lambda r: f"{r['cold']['query_mmap_s']:.2f} ({r['cold']['query_mmap_s'] / r['cold']['import_faiss_s']:.1f}x)")
    row("`python -c 'import faiss'` (s)", lambda r: f"{r['cold']['import_faiss_s']:.2f}")
    row("build wall time (s)", lambda r: f"{r['build']['wall_s']:.0f}")
    row("· encode / index (train+add+tune) (s)", lambda r: f"{r['build']['manifest']['timings']['encode_s']:.0f} / {r['build']['manifest']['timings']['index_s']:.0f}")
    row("index bytes", lambda r: f"{r['build']['manifest']['index']['bytes'] / 2**20:,.0f} MB")
    row("build peak RSS", lambda r: f"{r['build']['peak_rss_mb']:,.0f} MB")
    lines += ["", "Build summaries:", ""] + [f"- {r['flavour']}: " + " / ".join(r["build"]["summary"]) for r in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except bench.BenchError as e:
        print(f"bench-scale: {e}", file=sys.stderr)
        sys.exit(1)
