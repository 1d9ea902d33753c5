#!/usr/bin/env python
"""glovefaiss benchmark: synthetic corpus from the GloVe vocabulary, encoding throughput against the
design's reference loop, build time and memory, warm and cold query latency.

Run through ``bin/bench``. Three steps: measure, save the raw results to ``<out>/results.json``
(rewritten after every section, so a failure keeps what was measured), render the Markdown report
from that file to ``<out>/report.md`` and stdout. ``--render FILE`` re-renders saved results
without measuring. ``--sizes N,N,...`` measures only build encoding against the reference loop at
each corpus size. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import report  # noqa: E402
from benchlib.corpus import GLOVE, generated_queries, sample_texts, zipf_corpus  # noqa: E402
from benchlib.env import ROOT, BenchError, describe_machine, log, machine_info  # noqa: E402
from benchlib.measure import LoadMonitor, cold_queries, each_once, pct, run_build, timed  # noqa: E402

TOP_OOV = 20  # as the build asks the encoder for


# --------------------------------------------------------------------------------------------------
# The design's reference loop


def reference_vectors(vectors):
    """gensim KeyedVectors of the GloVe words, what the reference loop looks words up in."""
    from gensim.models import KeyedVectors

    log("building gensim KeyedVectors for the reference loop")
    kv = KeyedVectors(vector_size=vectors.dim)
    kv.add_vectors(vectors.words.to_pylist(), np.asarray(vectors.matrix))
    return kv


def reference_loop(kv, corpus: Path, sample: int, seed: int) -> dict:
    """The design's baseline on a random sample of the corpus: ``text.lower().split()``,
    ``kv[w]`` for the known words, ``np.mean``; one thread."""
    docs = sample_texts(corpus, sample, np.random.default_rng([seed, 3]))
    log(f"reference loop over {len(docs):,} documents")
    out = np.empty((len(docs), kv.vector_size), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.mean of an empty list (no known word)
        t0, c0 = time.perf_counter(), time.thread_time()
        for i, text in enumerate(docs):
            words = text.lower().split()
            vecs = [kv[w] for w in words if w in kv]
            out[i] = np.mean(vecs, axis=0)
        seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
    words_total = known_total = 0
    for text in docs:  # counted outside the timed loop
        words = text.lower().split()
        words_total += len(words)
        known_total += sum(w in kv for w in words)
    return {"docs": len(docs), "seconds": seconds, "docs_per_s": len(docs) / seconds, "cpu_s": cpu,
            "docs_per_cpu_s": len(docs) / cpu, "oov_rate": 1 - known_total / max(words_total, 1)}


def encoding_pairs(kv, corpus: Path, work: Path, runs: int, sample: int, seed: int) -> list[dict]:
    """``runs`` pairs (reference loop, ``glovefaiss build --index flat`` encoding) back to back: on a
    shared machine one pair can be off by 20%, so a report gives every pair and their median."""
    pairs = []
    for i in range(runs):
        ref = reference_loop(kv, corpus, sample, seed)
        b = run_build(corpus, work, ("--index", "flat"))
        pairs.append(build_pair(ref, b))
        log(f"pair {i + 1}/{runs}: reference {ref['docs_per_s']:,.0f} docs/s, build encoding "
            f"{pairs[-1]['build']:,.0f} docs/s ({pairs[-1]['ratio']:.1f}x)")
    shutil.rmtree(work, ignore_errors=True)  # only its manifest's timings were wanted
    return pairs


def build_pair(ref: dict, build: dict) -> dict:
    timings = build["manifest"]["timings"]
    rate = timings.get("docs_per_s") or 0.0
    return {"reference": ref["docs_per_s"], "build": rate, "ratio": rate / ref["docs_per_s"],
            "pooling": timings.get("pooling_backend"), "build_wall_s": build["wall_s"],
            "reference_docs": ref["docs"]}


# --------------------------------------------------------------------------------------------------
# Encoding in process: the encoder's own stages, threads, batch sizes


def read_batches(corpus: Path, batch_size: int) -> tuple[list, float]:
    """The text column in batches, read by the library's corpus reader; (texts, seconds)."""
    from glovefaiss.io.corpus import open_corpus

    t0 = time.perf_counter()
    batches = [texts for _, texts in open_corpus([corpus]).batches(batch_size)]
    return batches, time.perf_counter() - t0


def stage_inputs(encoder, texts):
    """What each stage takes, made by the stage before it: (texts, spans, (rows, lengths), known rows and offsets)."""
    from glovefaiss.tower.encoder import known_offsets

    spans = encoder.tokeniser.token_spans(texts)
    rows = encoder.vocabulary.key_table().lookup(spans.buf, spans.starts, spans.lengths)
    known, offsets = known_offsets(rows, spans.counts)
    return texts, spans, (rows, spans.counts), (rows[known], offsets)


def stage_functions(encoder) -> dict:
    """Each stage as the encoder runs it, called on that stage's own input (see :func:`stage_inputs`)."""
    from glovefaiss.tower.encoder import known_offsets

    keys = encoder.vocabulary.key_table()
    return {
        "tokenise": lambda x: encoder.tokeniser.token_spans(x[0]),
        "lookup": lambda x: keys.lookup(x[1].buf, x[1].starts, x[1].lengths),
        "known_offsets": lambda x: known_offsets(*x[2]),
        "pool": lambda x: encoder.pool(*x[3]),
        "encode": lambda x: encoder.encode(x[0], stats=_stats(), top_oov=TOP_OOV),
    }


def _stats():
    from glovefaiss.tower.encoder import EncodeStats

    return EncodeStats()


def stage_split(encoder, batches: list) -> dict:
    """CPU seconds of this thread in each stage over every batch (other processes do not inflate them)."""
    fns = stage_functions(encoder)
    del fns["encode"]  # timed whole by encode_all
    out = dict.fromkeys(fns, 0.0)
    for texts in batches:
        x = stage_inputs(encoder, texts)
        for name, fn in fns.items():
            t0 = time.thread_time()
            fn(x)
            out[name] += time.thread_time() - t0
    return out


def stage_scaling(encoder, batches: list, threads: int) -> dict:
    """[1 thread, ``threads`` threads] wall seconds of each stage over ``batches`` (batches in parallel).

    A stage that does not speed up holds the GIL (or saturates memory bandwidth).
    """
    inputs = [stage_inputs(encoder, texts) for texts in batches]
    out = {}
    for name, fn in stage_functions(encoder).items():
        one = timed(lambda f=fn: [f(x) for x in inputs])[1]
        with ThreadPoolExecutor(threads) as pool:
            many = timed(lambda f=fn: list(pool.map(f, inputs)))[1]
        out[name] = [one, many]
    return out


def encode_all(encoder, batches: list, threads: int, stats: bool = True) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to encode every batch; ``stats``: with an
    EncodeStats and the top OOV words, as the build encodes."""
    def fn(texts):
        return encoder.encode(texts, stats=_stats(), top_oov=TOP_OOV) if stats else encoder.encode(texts)

    t0, c0 = time.perf_counter(), time.process_time()
    if threads <= 1:
        for texts in batches:
            fn(texts)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(fn, batches):
                pass
    return time.perf_counter() - t0, time.process_time() - c0


def measure_encode(corpus: Path, vectors, docs: int) -> dict:
    import pyarrow as pa

    from glovefaiss import Config
    from glovefaiss.index.writer import pooling_backend
    from glovefaiss.tower.encoder import encoder_from_config

    config = Config()
    pooling = pooling_backend(docs)  # as a build of this many documents pools
    encoder = encoder_from_config(config, vectors)[0].for_batches(pooling)
    if encoder.tokeniser.token_spans(pa.array(["a"])) is None:
        raise BenchError("the stage split needs tokeniser rules the byte-span path covers")
    batch_size = config.build.batch_size
    log(f"in-process encoding: reading {corpus.name} in batches of {batch_size:,}")
    batches, read_s = read_batches(corpus, batch_size)
    encoder.encode(batches[0][:1000])  # warm-up: first-call costs, page-ins of the matrix
    log("in-process encoding: encode on 1 thread, with and without statistics")
    one, one_cpu = encode_all(encoder, batches, 1)
    plain_cpu = encode_all(encoder, batches, 1, stats=False)[1]
    log("in-process encoding: per-stage split")
    stages = stage_split(encoder, batches)
    threads = max(2, min(os.cpu_count() or 1, 4))
    log(f"in-process encoding: encode on {threads} threads (batches in parallel)")
    multi, multi_cpu = encode_all(encoder, batches, threads)
    scaling_batches = min(8, len(batches))
    log(f"in-process encoding: per-stage thread scaling on {scaling_batches} batches")
    scaling = stage_scaling(encoder, batches[:scaling_batches], threads)
    # Fixed cost of a lookup call (once 60-90 ms: pc.index_in rehashed the whole vocabulary per call).
    one_token = pa.array(["the"])
    fixed = min(timed(encoder.vocabulary.lookup_arrow, one_token)[1] for _ in range(7))
    sub = pa.chunked_array(batches).slice(0, min(262_144, docs)).combine_chunks()
    sweep = []
    for bs in (4096, 16384, 32768, 131072):
        if bs <= len(sub):
            parts = [sub.slice(i, bs) for i in range(0, len(sub), bs)]
            sweep.append([bs, len(sub) / encode_all(encoder, parts, 1)[1]])
    return {"batch_size": batch_size, "pooling": pooling, "batches": len(batches), "docs": docs, "read_s": read_s,
            "one_thread_s": one, "one_thread_cpu_s": one_cpu, "no_stats_cpu_s": plain_cpu, "threads": threads,
            "multi_s": multi, "multi_cpu_s": multi_cpu, "stages": stages, "scaling": scaling,
            "scaling_batches": scaling_batches, "lookup_fixed_s": fixed, "sweep": sweep, "sweep_docs": len(sub),
            "vocab_size": len(encoder.vocabulary)}


# --------------------------------------------------------------------------------------------------
# Warm in-process queries


def measure_warm_queries(index_dir: Path, queries: list[str], k: int = 10, warmup: int = 50) -> dict:
    import faiss

    import glovefaiss

    idx, load_s = timed(glovefaiss.Index.load, index_dir)
    idx.warm()  # as `glovefaiss serve` loads it
    first_search = timed(idx.search, queries[0], k)[1]
    first_hits = timed(idx.hits, queries[0], k)[1]
    load_mmap_s = timed(glovefaiss.Index.load, index_dir, mmap=True)[1]
    for q in queries[:warmup]:
        idx.search(q, k)
        idx.hits(q, k)
    threads = faiss.omp_get_max_threads()
    vecs = idx.encode(queries)
    one_vecs = [np.ascontiguousarray(vecs[i:i + 1]) for i in range(len(vecs))]

    def faiss_all_threads(v):
        faiss.omp_set_num_threads(threads)
        try:
            return idx.faiss.search(v, k)
        finally:
            faiss.omp_set_num_threads(1)

    # FAISS on one OpenMP thread, as the library runs it for fewer than 16 queries.
    variants = {
        "search": lambda i: idx.search(queries[i], k),
        "hits": lambda i: idx.hits(queries[i], k),
        "encode": lambda i: idx.encode(queries[i]),
        "search_vectors": lambda i: idx.search_vectors(one_vecs[i], k),
        "faiss_1t": lambda i: idx.faiss.search(one_vecs[i], k),
        "faiss_default": lambda i: faiss_all_threads(one_vecs[i]),
    }
    log(f"warm queries: {len(queries) - warmup:,} single queries, each timed once by one of "
        f"{', '.join(variants)} in turn")
    faiss.omp_set_num_threads(1)
    try:
        lat = each_once(variants, range(warmup, len(queries)))
    finally:
        faiss.omp_set_num_threads(threads)

    batch = min(1000, len(queries))
    chunks = [queries[i:i + batch] for i in range(0, len(queries) - batch + 1, batch)]
    log(f"warm queries: {len(chunks)} batches of {batch}")
    idx.search(chunks[0], k)  # warm-up
    n = len(chunks) * batch
    vchunks = [idx.encode(c) for c in chunks]
    qps = {"search": n / sum(timed(idx.search, c, k)[1] for c in chunks),
           "encode": n / sum(timed(idx.encode, c)[1] for c in chunks),
           "faiss": n / sum(timed(idx.faiss.search, v, k)[1] for v in vchunks)}
    return {"load_s": load_s, "load_mmap_s": load_mmap_s, "first_search_s": first_search,
            "first_hits_s": first_hits, "lat_s": lat, "batch": batch, "qps": qps, "ntotal": len(idx),
            "faiss_threads": threads, "queries": len(queries) - warmup,
            "empty_queries": int((~np.any(vecs != 0, axis=1)).sum())}


# --------------------------------------------------------------------------------------------------
# Measuring


def measure(args, res: report.Results) -> None:
    """Every section of a full run, each saved as soon as it is measured."""
    from glovefaiss.vectors.sources import load_vectors

    mon = LoadMonitor(on_step=lambda steps: res.__setitem__("load", steps))
    res["machine"] = machine_info()
    log(f"loading {GLOVE}")
    vectors = load_vectors(GLOVE)
    kv = reference_vectors(vectors)
    if args.sizes:
        res["sizes"] = []
        for n in args.sizes:
            with mon.step(f"sizes: {n:,} documents"):
                corpus = args.out / f"sizes-{n}" / "corpus.parquet"
                meta = zipf_corpus(corpus, n, args.seed, vectors.words)
                pairs = encoding_pairs(kv, corpus, args.out / "index-sizes", 1 + args.encode_repeats,
                                       args.reference_sample, args.seed)
                res["sizes"] = res["sizes"] + [{"docs": n, "corpus": meta, "pairs": pairs}]
        return
    corpus = args.out / "corpus.parquet"
    index_dir = args.out / "index"
    with mon.step("corpus"):
        res["corpus"] = zipf_corpus(corpus, args.docs, args.seed, vectors.words)
        queries = generated_queries(vectors.words, args.queries, args.seed)
    with mon.step("reference loop"):
        ref = res["reference"] = reference_loop(kv, corpus, args.reference_sample, args.seed)
    log(f"reference loop: {ref['docs_per_s']:,.0f} docs/s")
    with mon.step("glovefaiss build"):
        build = res["build"] = run_build(corpus, index_dir)
    log(f"build: {build['wall_s']:.1f} s wall, encoding {build['manifest']['timings'].get('docs_per_s') or 0:,.0f} docs/s")
    with mon.step("encoding repeats"):
        res["encode_repeats"] = [build_pair(ref, build)] + encoding_pairs(
            kv, corpus, args.out / "index-encode-only", args.encode_repeats, args.reference_sample, args.seed)
    with mon.step("in-process encoding"):
        enc = res["encode"] = measure_encode(corpus, vectors, args.docs)
    log(f"in-process encode: {args.docs / enc['one_thread_s']:,.0f} docs/s on 1 thread")
    with mon.step("warm queries"):
        res["warm"] = measure_warm_queries(index_dir, queries)
    with mon.step("cold CLI"):
        res["cold"] = cold_queries(index_dir, queries[0], args.cold_runs)


# --------------------------------------------------------------------------------------------------
# Rendering (from the saved results only)


def render(data: dict) -> str:
    """The Markdown report of saved results; a section the run did not reach is left out."""
    info = data["machine"]
    L = ["# glovefaiss benchmark", "",
         f"`{data['command']}` ({data['started']}). All figures from this one run.", "",
         "Machine: " + describe_machine(info), ""]
    L += report.unfinished(data) + report.busy_warning(data.get("load", {}), info["cpu_count"])
    for section, fn in (("sizes", render_sizes), ("corpus", render_corpus), ("encode", render_encoding),
                        ("build", render_build), ("warm", render_warm), ("cold", render_cold)):
        if section in data:
            L += fn(data)
    L += report.load_table(data.get("load", {}))
    return "\n".join(L) + "\n"


def render_sizes(data: dict) -> list[str]:
    rows = []
    for s in data["sizes"]:
        ratios = [p["ratio"] for p in s["pairs"]]
        rows.append([f"{s['docs']:,}", ", ".join(sorted({p['pooling'] or '?' for p in s['pairs']})),
                     f"{float(np.median([p['build'] for p in s['pairs']])):,.0f}",
                     f"{float(np.median([p['reference'] for p in s['pairs']])):,.0f}",
                     ", ".join(f"{r:.1f}x" for r in ratios), f"**{float(np.median(ratios)):.1f}x**"])
    sample = data["sizes"][0]["pairs"][0]["reference_docs"] if data["sizes"] else 0
    return ["## Encoding throughput by corpus size", "",
            "Zipf-word corpora (see *Corpus* in a full report) of each size. Build encoding: manifest "
            "`timings.docs_per_s` of `glovefaiss build --index flat` (read + encode + write shards, all cores). "
            f"Reference loop (`text.lower().split()`, `kv[w]`, `np.mean`, 1 thread) on a random sample of up to "
            f"{sample:,} documents of the same corpus. Each pair is a reference run and a build back to back; "
            "docs/s columns are medians over the pairs.", "",
            *report.table(["documents", "pooling", "build encoding docs/s", "reference docs/s",
                           "build / reference, each pair", "median"], rows, "llrrlr"), ""]


def render_corpus(data: dict) -> list[str]:
    c = data["corpus"]
    return ["## Corpus", "",
            f"{c['docs']:,} documents, {c['words']:,} words (mean {c['mean_words']:.1f}, 5–60), "
            f"{c['text_bytes'] / 1e6:,.0f} MB of text, `corpus.parquet` {c['bytes'] / 1e6:,.0f} MB. "
            "Words Zipf-drawn (p ∝ 1/(rank+10)^1.05) from the alphabetic GloVe words, ~3% made-up words, "
            "capitals at sentence starts and on ~10% of words, punctuation attached. "
            + (f"Reused from the cache (generated in {c['generate_s']:.1f} s)." if c.get("reused") else
               f"Generated in {c['generate_s']:.1f} s."), ""]


def render_encoding(data: dict) -> list[str]:
    ref, enc, build = data["reference"], data["encode"], data["build"]
    m = build["manifest"]
    n = m["documents"]
    ref_rate, ref_cpu = ref["docs_per_s"], ref["docs_per_cpu_s"]
    build_rate = m["timings"].get("docs_per_s") or 0
    build_threads = (m.get("config", {}).get("build", {}).get("threads")) or data["machine"]["cpu_count"]
    overall, overall_cpu = n / build["wall_s"], n / build["cpu_s"] if build.get("cpu_s") else float("nan")
    one_rate, multi_rate = enc["docs"] / enc["one_thread_s"], enc["docs"] / enc["multi_s"]
    one_cpu, multi_cpu = enc["docs"] / enc["one_thread_cpu_s"], enc["docs"] / enc["multi_cpu_s"]
    rows = [
        [f"reference loop (`lower().split()`, `kv[w]`, `np.mean`), {ref['docs']:,}-doc sample, 1 thread",
         f"{ref_rate:,.0f}", "1.0x", f"{ref_cpu:,.0f}", "1.0x"],
        [f"`glovefaiss build`, encoding (manifest `timings.docs_per_s`, {build_threads} threads)",
         f"{build_rate:,.0f}", f"**{build_rate / ref_rate:.1f}x**", "", ""],
        ["`glovefaiss build`, overall (documents / process wall time; CPU: whole process)", f"{overall:,.0f}",
         f"{overall / ref_rate:.1f}x", f"{overall_cpu:,.0f}", f"{overall_cpu / ref_cpu:.1f}x"],
        [f"in process `TextEncoder.encode` (with stats, as the build), 1 thread, batches of {enc['batch_size']:,}",
         f"{one_rate:,.0f}", f"{one_rate / ref_rate:.1f}x", f"{one_cpu:,.0f}", f"{one_cpu / ref_cpu:.1f}x"],
        [f"in process `encode`, {enc['threads']} batches in parallel", f"{multi_rate:,.0f}",
         f"{multi_rate / ref_rate:.1f}x", f"{multi_cpu:,.0f}", f"{multi_cpu / ref_cpu:.1f}x"],
    ]
    L = ["## Encoding throughput", "",
         "docs/s is documents per wall-clock second; docs/CPU-s is documents per CPU-second used (this process "
         "or the build process, all threads), which other processes on the machine barely affect.", "",
         *report.table(["path", "docs/s", "vs reference", "docs/CPU-s", "vs reference"], rows), ""]
    pairs = data.get("encode_repeats") or []
    if pairs:
        ratios = [p["ratio"] for p in pairs]
        L += [f"Build encoding vs the reference loop, measured as {len(pairs)} back-to-back pairs (the first is the "
              "build above; the others `--index flat` builds of the same corpus): "
              + ", ".join(f"{p['build']:,.0f} / {p['reference']:,.0f} = {p['ratio']:.1f}x" for p in pairs)
              + f"; **median {float(np.median(ratios)):.1f}x**, lowest {min(ratios):.1f}x.", ""]
    L += [f"Unknown-token rate: glovefaiss tokeniser {m['oov_rate']:.1%}; reference `lower().split()` "
          f"{ref['oov_rate']:.1%} (punctuation stays glued to words, so the reference also averages fewer words).", ""]
    return L + render_stages(enc)


def render_stages(enc: dict) -> list[str]:
    st, sc, docs = enc["stages"], enc["scaling"], enc["docs"]
    total = st["tokenise"] + st["lookup"] + st.get("known_offsets", 0.0) + st["pool"]
    stats_s = enc["one_thread_cpu_s"] - enc["no_stats_cpu_s"]

    def speed(name):
        return f"{sc[name][0] / sc[name][1]:.2f}x" if name in sc else ""

    def row(label, seconds, share, name=None):
        return [label, f"{seconds:.2f}", share, f"{seconds / docs * 1e6:.2f}", speed(name)]

    rows = [
        row("tokenise (`Tokeniser.token_spans`: byte table, token edges)", st["tokenise"],
            f"{st['tokenise'] / total:.0%}", "tokenise"),
        row("vocabulary lookup (`Vocabulary.key_table().lookup` on the spans)", st["lookup"],
            f"{st['lookup'] / total:.0%}", "lookup"),
        *([row("known-token offsets (`known_offsets`: unknown tokens left out of the mean)", st["known_offsets"],
                f"{st['known_offsets'] / total:.0%}", "known_offsets")] if "known_offsets" in st else []),
        row(f"pooling (`TextEncoder.pool`, {enc['pooling']}, L2)", st["pool"], f"{st['pool'] / total:.0%}", "pool"),
        row("sum of the stages", total, "100%"),
        *([row("· `TextEncoder.pooled_ids` (tokenise + lookup + known-token offsets, one call)", st["pooled_ids"],
               "", "pooled_ids")] if "pooled_ids" in st else []),
        row(f"`encode` whole, with stats (top_oov={TOP_OOV}, as the build)", enc["one_thread_cpu_s"], "", "encode"),
        row("· of which statistics (`encode` with stats minus without)", stats_s, ""),
    ]
    L = [f"Where encoding time goes, in CPU seconds of one thread: {enc['batches']} batch(es) of "
         f"{enc['batch_size']:,} (reading the text column through the library's corpus reader, not included: "
         f"{enc['read_s']:.2f} s wall). Each stage is the encoder's own call on the previous stage's output. "
         f"Thread scaling: the same stage on {enc['scaling_batches']} batches, 1 thread vs {enc['threads']} "
         "batches in parallel.", "",
         *report.table(["stage", "s", "share", "µs/doc", f"{enc['threads']}-thread speed-up"], rows), "",
         f"Fixed cost of one `Vocabulary.lookup_arrow` call (a single token, {enc['vocab_size']:,}-word "
         f"vocabulary): {enc['lookup_fixed_s'] * 1e3:.1f} ms.", ""]
    if enc["sweep"]:
        L += [f"Batch size, `encode` (with stats) on 1 thread over the first {enc['sweep_docs']:,} documents: "
              + ", ".join(f"{bs:,} → {rate:,.0f} docs/CPU-s" for bs, rate in enc["sweep"]) + ".", ""]
    return L


def render_build(data: dict) -> list[str]:
    build = data["build"]
    m = build["manifest"]
    tm, ix = m["timings"], m.get("index", {})
    labels = {"load_vectors_s": "load vectors", "encode_s": "encode + write shards",
              "index_s": "index (train, add, tune)", "index_write_s": "write index.faiss"}
    rows = [["wall time", f"{build['wall_s']:.1f} s"],
            ["CPU time (user + system, all threads)", f"{build.get('cpu_s', float('nan')):.1f} s"]]
    rows += [[f"· {labels.get(key, key)} (`timings.{key}`)", f"{value:.2f} s"] for key, value in tm.items()
             if key.endswith("_s") and key not in ("total_s", "docs_per_s") and isinstance(value, (int, float))]
    rows += [[f"· · index {key[:-2]} (`index.{key}`)", f"{ix[key]:.2f} s"] for key in ("train_s", "add_s", "tune_s")
             if isinstance(ix.get(key), (int, float))]
    if isinstance(tm.get("total_s"), (int, float)):
        rows.append(["· outside `timings.total_s` (interpreter start, imports, exit)",
                     f"{build['wall_s'] - tm['total_s']:.1f} s"])
    rows.append([f"peak RSS ({build['rss_source']})", f"{build['max_rss_mb']:,.0f} MB"] if build["max_rss_mb"]
                else ["peak RSS", "n/a"])
    rows.append(["index.faiss / shards on disk", f"{build['index_bytes'] / 1e6:,.0f} MB / {build['shard_bytes'] / 1e6:,.0f} MB"])
    rows.append(["documents / empty / OOV rate", f"{m['documents']:,} / {m['empty_documents']:,} / {m['oov_rate']:.2%}"])
    return ["## Build", "", f"`{build['cmd']}`", "", *report.table(["", ""], rows), ""]


def render_warm(data: dict) -> list[str]:
    warm, ix = data["warm"], data["build"]["manifest"].get("index", {})
    lat = warm["lat_s"]
    params = ", ".join(f"{k}={v}" for k, v in (ix.get("params") or {}).items())
    recall = (ix.get("tuning") or {}).get("recall")
    index_desc = (f"`{ix.get('key') or ix.get('type') or '?'}`" + (f" ({params})" if params else "")
                  + (f", tuned by the build to recall@10 {recall:.3f} against exact search" if recall is not None else ""))
    labels = {"search": "`idx.search(text, k=10)` end to end",
              "hits": "`idx.hits(text, k=10)` end to end (with stored texts)",
              "encode": "· encode only, `idx.encode(text)`",
              "search_vectors": "· `idx.search_vectors(vec)` (FAISS + id mapping, no encoding)",
              "faiss_1t": "· FAISS only, `idx.faiss.search`, 1 OpenMP thread (as the library runs it)",
              "faiss_default": f"· FAISS only, {warm['faiss_threads']} OpenMP threads"}
    rows = [[label, f"{pct(lat[key], 50):,.0f}", f"{pct(lat[key], 99):,.0f}", f"{np.mean(lat[key]) * 1e6:,.0f}"]
            for key, label in labels.items()]
    q = warm["qps"]
    return ["## Warm queries (in process)", "",
            f"`Index.load` {warm['load_s'] * 1e3:.0f} ms ({warm['ntotal']:,} vectors, index {index_desc}; "
            f"`mmap=True`: {warm['load_mmap_s'] * 1e3:.0f} ms); first `search` after load "
            f"{warm['first_search_s'] * 1e3:.0f} ms, first `hits` {warm['first_hits_s'] * 1e3:.0f} ms. "
            f"Then {warm['queries']:,} queries of 2–8 words, k=10, after 50 warm-up queries; the variants "
            f"below take turns and each query is timed once, by one of them (about {len(lat['search']):,} "
            f"each: a repeated query would find its index lists in the CPU cache; "
            f"{warm['empty_queries']} queries have no known word).", "",
            *report.table(["single query", "p50 µs", "p99 µs", "mean µs"], rows), "",
            f"Batches of {warm['batch']:,} texts: `idx.search(list)` {q['search']:,.0f} queries/s; encode only "
            f"{q['encode']:,.0f} queries/s; FAISS only {q['faiss']:,.0f} queries/s "
            f"({warm['faiss_threads']} OpenMP threads).", ""]


def render_cold(data: dict) -> list[str]:
    cold = data["cold"]
    med = {k: float(np.median(v)) for k, v in cold["walls_s"].items()}
    base = med["import_faiss"]
    query = "`glovefaiss query INDEX TEXT -k 10"
    labels = [("mmap_evicted", f"{query} --mmap`", "dropped"), ("no_mmap_evicted", f"{query} --no-mmap`", "dropped"),
              ("mmap_cached", f"{query} --mmap`", "cached"), ("no_mmap_cached", f"{query} --no-mmap`", "cached"),
              ("import_faiss", "`python -c \"import faiss\"`", ""),
              ("import_glovefaiss", "`python -c \"import glovefaiss\"`", ""), ("python", "`python -c pass`", "")]
    rows = [[label, cache, f"{med[key]:.3f}", f"{med[key] / base:.1f}x"] for key, label, cache in labels]
    left = cold.get("max_cached_after_evict")
    check = ("not checked (no `fincore`)" if left is None else
             f"at most {left / 1e6:,.1f} MB of the index directory's {cold['index_dir_bytes'] / 1e6:,.0f} MB "
             "still cached after it (`fincore`)")
    return ["## Cold CLI query", "",
            f"Median of {cold['runs']} runs each, every run a fresh process, text \"{cold['text']}\". "
            f"*dropped*: before each run, {cold['eviction']}; {check}. The interpreter and libraries stay in "
            "the page cache (a machine that ran Python lately); *cached*: the index files too. The two modes "
            "take turns.", "",
            *report.table(["command", "index page cache", "median s", "vs `import faiss`"], rows, "llrr"), ""]


# --------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bin/bench", description=__doc__.split("\n\n")[0],
                                epilog="Measure: bin/bench --docs 1000000 --out bench-out. "
                                       "Sizes: bin/bench --sizes 100000,300000,1000000. "
                                       "Re-render: bin/bench --render bench-out/results.json.")
    p.add_argument("--docs", type=int, default=1_000_000, help="documents in the synthetic corpus")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out",
                   help="working directory (corpus cache, index, results.json, report.md)")
    p.add_argument("--sizes", help="comma list of corpus sizes: measure only build encoding vs the reference "
                                   "loop at each (instead of the full run)")
    p.add_argument("--queries", type=int, default=2000, help="query texts for the warm query measurements")
    p.add_argument("--reference-sample", type=int, default=100_000, help="documents run through the reference loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encode-repeats", type=int, default=2,
                   help="extra (reference loop, build encoding) pairs, builds with --index flat, for the median")
    p.add_argument("--cold-runs", type=int, default=5, help="fresh processes per cold-query variant")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON",
                   help="render saved results (report.md beside them, and stdout) without measuring")
    args = p.parse_args(argv)
    if args.sizes:
        try:
            args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
        except ValueError:
            p.error("--sizes takes a comma list of integers, e.g. 100000,300000,1000000")
        if not args.sizes or min(args.sizes) < 1:
            p.error("--sizes: every size must be at least 1")
    if args.encode_repeats < 0:
        p.error("--encode-repeats must be at least 0")
    for name in ("docs", "queries", "reference_sample", "cold_runs"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out = args.out.absolute()
    return report.drive("bench", args, args.out / "results.json", measure, render,
                        lambda results: results.with_name("report.md"))


if __name__ == "__main__":
    sys.exit(main())
