#!/usr/bin/env python
"""Compare embedding options on STS-B test and SciFact test: quality, encoding speed, query
latency, index size and peak memory.

Run through ``bin/compare --data DIR`` (DIR holds ``stsb/`` and ``scifact/``; the wrapper sets up
.venv with the ``quality`` extra). Each option runs in its own child process, so its peak memory
(``ru_maxrss``) is its own. Each option's results are added to ``<out>/results.json`` as it
finishes; the Markdown table (``<out>/comparison.md``) and the PNG bar chart are rendered from
that file. ``--render FILE`` re-renders saved results; ``--markdown PAGE`` also replaces the
table between the bin/compare markers of PAGE (e.g. docs/comparison.md). Every figure in a
report comes from the same run.

Options (one tokeniser for all but the fine-tuned towers, whose model fixes it):

- ``lookup-random``: random vectors (``LookupEmbedding``, seed 0, N(0, 1/sqrt(50))) for the GloVe
  vocabulary, mean-pooled: the floor.
- ``word2vec`` (only when ``--options`` names it): word2vec (gensim CBOW, 50-d, seed 0, one
  worker) trained on the SciFact corpus and the STS-B *train* sentences, saved in word2vec text
  format, read back through ``--glove PATH`` like any word2vec file.
- ``glove-mean``: frozen glove.6B.50d, plain mean.
- ``glove-sif``: SIF weights (a = 1e-3, wordfreq English frequencies).
- ``glove-sif-pc10``: SIF + removal of 10 common components.
- ``glove-sif-rank`` (only when ``--options`` names it): SIF with ``p(w)`` from the GloVe row
  number (Zipf, ``pooling.frequencies: rank``; no frequency list), a = 1e-4 (the research's best
  for SciFact; RESULTS.md finding (b)).
- ``finetuned``: towers trained by ``glovefaiss train`` (``--model-scifact`` on SciFact train
  qrels, ``--model-stsb`` on STS-B train), when given.

STS-B: SIF/components are fitted on the evaluated sentences (fse's protocol). SciFact: on the
corpus (a build's first pass), queries get the stored transform.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bin"))
from benchlib import report  # noqa: E402
from benchlib.env import BenchError, log, machine_info, set_prog  # noqa: E402

TOKENISER = {"tokeniser.type": "alnum", "tokeniser.contractions": True, "tokeniser.numbers": True}
OPTIONS = {
    "lookup-random": {},
    "word2vec": {},
    "glove-mean": {},
    "glove-sif": {"pooling.weighting": "sif"},
    "glove-sif-pc10": {"pooling.weighting": "sif", "pooling.components": 10},
    "glove-sif-rank": {"pooling.weighting": "sif", "pooling.frequencies": "rank", "pooling.sif_a": 1e-4},
    "finetuned": {},
}
LABELS = {
    "lookup-random": "lookup (random, 50d)",
    "word2vec": "word2vec-format (trained here, 50d)",
    "glove-mean": "GloVe 6B 50d, frozen mean",
    "glove-sif": "GloVe 6B 50d + SIF",
    "glove-sif-pc10": "GloVe 6B 50d + SIF + 10 PCs removed",
    "glove-sif-rank": "GloVe 6B 50d + SIF (rank-based p(w), a = 1e-4)",
    "finetuned": "fine-tuned tower (glovefaiss train)",
}

SHORT = {"lookup-random": "lookup\n(random)", "word2vec": "word2vec\n(trained here)", "glove-mean": "GloVe\nmean",
         "glove-sif": "GloVe\nSIF", "glove-sif-pc10": "GloVe SIF\n+10 PCs",
         "glove-sif-rank": "GloVe SIF\n(rank p)", "finetuned": "fine-tuned\ntower"}
BEGIN, END = "<!-- bin/compare: begin -->", "<!-- bin/compare: end -->"


def write_markdown(path: Path, table: str) -> None:
    """Replace the text between the markers of an existing page, or write the table alone."""
    if path.exists() and BEGIN in (text := path.read_text(encoding="utf-8")) and END in text:
        head, rest = text.split(BEGIN, 1)
        table = head + BEGIN + "\n" + table + END + rest.split(END, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table, encoding="utf-8")


# --- child: one option ------------------------------------------------------------------------------

def _config(option: str):
    from glovefaiss.config import Config

    return Config().replace({**TOKENISER, **OPTIONS[option], "build.index": "flat"})


def _random_encoder(config):
    import pyarrow as pa

    from glovefaiss.text.tokeniser import Tokeniser
    from glovefaiss.text.vocabulary import Vocabulary
    from glovefaiss.tower.encoder import TextEncoder
    from glovefaiss.train.embeddings import LookupEmbedding
    from glovefaiss.vectors.sources import load_vectors

    words = load_vectors(config.embedding.model_name).words
    matrix = LookupEmbedding(len(words) + 1, 50, trainable=False, seed=0).export()[0][1:]  # row 0 is padding
    return TextEncoder(Tokeniser(config.tokeniser), Vocabulary(pa.array(words)), matrix)


def run_option(option: str, args) -> dict:
    from glovefaiss.evaluation.retrieval import evaluate_retrieval, load_retrieval
    from glovefaiss.evaluation.sts import evaluate_sts, read_pairs, sts_encoder
    from glovefaiss.index.build import build
    from glovefaiss.index.search import Index

    config = _config(option)
    out: dict = {"option": option}
    work = Path(args.work)
    a, b, gold = read_pairs(Path(args.data) / "stsb" / "stsb-en-test.csv")
    scifact = load_retrieval(Path(args.data) / "scifact", "test")
    corpus = work / "scifact-corpus.parquet"
    index_dir = work / f"index-{option}"
    build_kwargs: dict = {}
    if option == "finetuned":
        from glovefaiss.index.with_model import build_with_model
        from glovefaiss.tower.model_dir import load_towers

        if args.model_stsb:
            sts_enc = load_towers(args.model_stsb)[0]
            out["sts"] = evaluate_sts(sts_enc, a, b, gold).metrics
        if not args.model_scifact:
            return out
        result = build_with_model([corpus], index_dir, args.model_scifact, config=config.replace({}), overwrite=True,
                             progress=False)
    else:
        if option == "lookup-random":
            enc = _random_encoder(config)
            build_kwargs["encoder"] = enc
            sts_enc = enc
        else:
            if option == "word2vec":
                config = config.replace({"embedding.model_name": str(work / "word2vec-50d.txt")})
            sts_enc, _ = sts_encoder(config, a + b)
        out["sts"] = evaluate_sts(sts_enc, a, b, gold).metrics
        result = build([corpus], index_dir, config, overwrite=True, progress=False, **build_kwargs)
    m = result.manifest
    idx = Index.load(index_dir)
    report = evaluate_retrieval(idx, scifact)
    out["scifact"] = report.metrics
    # Single-query latency, warm: every test query once to warm up, then 3 timed passes.
    texts = list(scifact.queries.values())
    for t in texts:
        idx.search(t, k=10)
    lat = []
    for _ in range(3):
        for t in texts:
            t0 = time.perf_counter()
            idx.search(t, k=10)
            lat.append(time.perf_counter() - t0)
    tower_bytes = sum(p.stat().st_size for p in (index_dir / "query_tower").iterdir())
    # Encoding throughput, one thread, best of 3 (the machine is shared: the best run is the least
    # disturbed one). The stored query tower is the document tower here (tied towers).
    import pyarrow.parquet as pq

    texts_arr = pq.read_table(corpus, columns=["text"]).column("text").combine_chunks()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for start in range(0, len(texts_arr), 4096):
            idx.encoder.encode(texts_arr.slice(start, 4096))
        best = min(best, time.perf_counter() - t0)
    out.update({
        "documents": m["documents"],
        "encode_s": round(best, 3),
        "docs_per_s": len(texts_arr) / best,
        "pooling_fit_s": m["timings"].get("pooling_fit_s", 0.0),
        "build_s": m["timings"]["total_s"],
        "index_bytes": m["index"]["bytes"],
        "tower_bytes": tower_bytes,
        "oov_rate": m["oov_rate"],
        "anisotropy": m.get("anisotropy"),
        "query_p50_ms": float(np.percentile(lat, 50) * 1000),
        "query_p99_ms": float(np.percentile(lat, 99) * 1000),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    return out


# --- parent ---------------------------------------------------------------------------------------

def train_word2vec(data: Path, work: Path) -> dict:
    """Train 50-d word2vec on SciFact corpus + STS-B train sentences; save in word2vec text format."""
    from gensim.models import Word2Vec

    from glovefaiss.config import Config
    from glovefaiss.evaluation.sts import read_pairs
    from glovefaiss.io.beir import read_corpus
    from glovefaiss.text.tokeniser import Tokeniser

    path = work / "word2vec-50d.txt"
    if path.exists():
        return json.loads((work / "word2vec-50d.json").read_text())
    tok = Tokeniser(Config().replace(TOKENISER).tokeniser)
    _, docs = read_corpus(data / "scifact" / "corpus.jsonl")
    a, b, _ = read_pairs(data / "stsb" / "stsb-en-train.csv")
    sentences = [tok.tokenise(t) for t in docs + a + b]
    t0 = time.perf_counter()
    model = Word2Vec(sentences, vector_size=50, window=5, min_count=2, workers=1, seed=0, epochs=10)
    info = {"train_s": round(time.perf_counter() - t0, 1), "vocab": len(model.wv),
            "tokens": sum(map(len, sentences)), "texts": len(sentences)}
    model.wv.save_word2vec_format(str(path), binary=False)
    (work / "word2vec-50d.json").write_text(json.dumps(info))
    return info


def markdown(results: list[dict], w2v: dict | None, missing: list[list[str]]) -> str:
    from glovefaiss.cli import human_bytes as fmt_bytes

    head = ("| option | STS-B test Pearson | STS-B test Spearman | SciFact nDCG@10 | SciFact Recall@100 | "
            "encode docs/s (1 thread) | fit s | query p50 / p99 ms | FAISS index | query tower | peak RSS | anisotropy |")
    lines = [head, "|---|" + "---:|" * (head.count("|") - 2)]
    for r in results:
        sts = r.get("sts") or {}
        sf = r.get("scifact") or {}

        def f(x, spec=".2f"):
            return "n/a" if x is None else format(x, spec)

        lines.append(
            f"| {LABELS[r['option']]} | {f(sts.get('pearson'))} | {f(sts.get('spearman'))} | "
            f"{f(sf.get('ndcg@10'))} | {f(sf.get('recall@100'))} | "
            + (f"{r['docs_per_s']:,.0f} | {r['pooling_fit_s']:.2f} | {r['query_p50_ms']:.3f} / {r['query_p99_ms']:.3f} | "
               f"{fmt_bytes(r['index_bytes'])} | {fmt_bytes(r['tower_bytes'])} | {r['peak_rss_mb']:,.0f} MB | "
               f"{f(r['anisotropy'], '.3f')} |" if "docs_per_s" in r else "n/a | n/a | n/a | n/a | n/a | n/a | n/a |"))
    notes = [f"word2vec: trained in {w2v['train_s']} s on {w2v['texts']:,} texts ({w2v['tokens']:,} tokens), "
             f"{w2v['vocab']:,} words."] if w2v else []
    notes += [f"{LABELS[m]}: not run ({why})." for m, why in missing]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")


def chart(results: list[dict], png: Path) -> None:
    try:
        import matplotlib
    except ImportError:  # the quality extra, which bin/compare installs; the table does without it
        log(f"matplotlib is not installed: no chart at {png}")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [SHORT[r["option"]] for r in results]
    panels = [
        ("STS-B test Pearson x100", [((r.get("sts") or {}).get("pearson")) for r in results]),
        ("SciFact test nDCG@10 x100", [((r.get("scifact") or {}).get("ndcg@10")) for r in results]),
        ("encode documents/s (SciFact, 1 thread)", [r.get("docs_per_s") for r in results]),
        ("single-query p50 latency, ms", [r.get("query_p50_ms") for r in results]),
    ]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8))
    colors = plt.cm.tab10(np.arange(len(results)))
    for ax, (title, values) in zip(axes.flat, panels):
        vals = [v if v is not None else 0 for v in values]
        bars = ax.bar(range(len(vals)), vals, color=colors)
        for bar, v in zip(bars, values):
            ax.annotate("n/a" if v is None else (f"{v:,.0f}" if v >= 1000 else f"{v:.2f}"),
                        (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_title(title)
        ax.set_xticks(range(len(vals)), names, fontsize=7)
    fig.suptitle("glovefaiss embedding options (bin/compare)")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def measure(args, res: report.Results) -> None:
    """Each option in its own child process, its results saved as soon as it finishes."""
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from glovefaiss.evaluation.retrieval import corpus_to_parquet

    res["machine"] = machine_info()
    corpus_to_parquet(data / "scifact" / "corpus.jsonl", work / "scifact-corpus.parquet")
    if "word2vec" in args.options:
        log("training word2vec (SciFact corpus + STS-B train)")
        res["word2vec"] = train_word2vec(data, work)
    res["results"], res["missing"] = [], []
    for option in args.options:
        if option == "finetuned" and not (args.model_scifact or args.model_stsb):
            res["missing"] = res["missing"] + [[option, "no --model-scifact / --model-stsb given"]]
            continue
        log(f"running {option}")
        cmd = [sys.executable, __file__, "--run-option", option, "--data", str(data), "--work", str(work)]
        for flag in ("model_scifact", "model_stsb"):
            if getattr(args, flag):
                cmd += [f"--{flag.replace('_', '-')}", str(Path(getattr(args, flag)).resolve())]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise BenchError(f"option {option} failed (exit {proc.returncode})")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        res["results"] = res["results"] + [r]
        log(f"{option}: STS {r.get('sts')}, SciFact nDCG@10 {(r.get('scifact') or {}).get('ndcg@10')}")


def publish(data: dict, args, results_path: Path) -> str:
    """The table of saved results; writes the chart, and the table into ``--markdown`` PAGE if given."""
    md = markdown(data.get("results", []), data.get("word2vec"), data.get("missing", []))
    chart(data.get("results", []), Path(args.png) if args.png else results_path.with_name("comparison.png"))
    if args.markdown:
        write_markdown(Path(args.markdown), md)
        log(f"table written into {args.markdown}")
    return md


def main() -> int:
    set_prog("compare")
    p = argparse.ArgumentParser(prog="bin/compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                usage="bin/compare --data DIR [--out DIR] [--options NAME ...] [--model-scifact DIR] "
                                      "[--model-stsb DIR] [--markdown PAGE]\n       bin/compare --render RESULTS_JSON "
                                      "[--markdown PAGE]")
    p.add_argument("--data", help="directory with stsb/ (stsb-en-test.csv, stsb-en-train.csv) and scifact/ "
                                  "(corpus.jsonl, queries, qrels); required unless --render")
    p.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "glovefaiss-compare"),
                   help="results.json, comparison.md and comparison.png (default: %(default)s)")
    p.add_argument("--work", help="indexes, vectors, SciFact Parquet (default: OUT/work)")
    p.add_argument("--model-scifact", help="model directory from `glovefaiss train` on SciFact train")
    p.add_argument("--model-stsb", help="model directory from `glovefaiss train` on STS-B train")
    p.add_argument("--markdown", metavar="PAGE",
                   help="also replace the table between the bin/compare markers of PAGE (e.g. docs/comparison.md)")
    p.add_argument("--png", help="chart path (default: comparison.png beside the results)")
    p.add_argument("--options", nargs="*", choices=list(OPTIONS), default=[o for o in OPTIONS if o not in ("word2vec", "glove-sif-rank")],
                   help="options to run (default: all but word2vec, which trains a model first)")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="render saved results without measuring")
    p.add_argument("--run-option", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.run_option:
        print(json.dumps(run_option(args.run_option, args)))
        return 0
    if not args.render:
        if not args.data:
            p.error("--data DIR is required (a directory with stsb/ and scifact/)")
        data = Path(args.data)
        for need in (data / "stsb" / "stsb-en-test.csv", data / "scifact" / "corpus.jsonl"):
            if not need.exists():
                p.error(f"{need} not found; --data DIR must hold stsb/ and scifact/")
        out = Path(args.out).absolute()
        args.work = str(Path(args.work).absolute() if args.work else out / "work")
    results_path = args.render if args.render else out / "results.json"
    return report.drive("compare", args, results_path, measure,
                        lambda d: publish(d, args, args.render or results_path),
                        lambda results: results.with_name("comparison.md"))


if __name__ == "__main__":
    sys.exit(main())
