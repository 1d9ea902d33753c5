#!/usr/bin/env python
"""glovefaiss benchmark: synthetic corpus from the GloVe vocabulary, encoding throughput against the
design's reference loop, build time and memory, warm and cold query latency.

Run through ``bin/bench`` (which sets up .venv). Progress goes to stderr; the Markdown report goes to
stdout and to ``<out>/report.md``. Every figure in the report comes from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
GLOVE = "glove-wiki-gigaword-50"
GENERATOR_VERSION = 1  # bump when the corpus generator changes, so cached corpora are regenerated
GEN_CHUNK_DOCS = 200_000  # documents generated (and written as one row group) at a time


class BenchError(Exception):
    """A step failed; main() prints the message and exits non-zero."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def pct(values_s, q: float) -> float:
    """Percentile ``q`` of durations in seconds, in microseconds."""
    return float(np.percentile(np.asarray(values_s) * 1e6, q))


class LoadMonitor:
    """Wall time of each step and the CPU that *other* processes used meanwhile.

    The machine is shared (other people run tests on it), so the report says how many cores were
    busy elsewhere during each step: /proc/stat busy time minus this process's and its children's.
    """

    def __init__(self):
        self.steps: dict[str, dict] = {}
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy(self) -> tuple[float, float] | None:
        try:
            f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        steal = f[7] if len(f) > 7 else 0
        return (sum(f) - f[3] - f[4] - steal) / self._tick, steal / self._tick

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    @contextlib.contextmanager
    def step(self, name: str):
        b0, c0, t0 = self._busy(), self._own(), time.perf_counter()
        yield
        wall = time.perf_counter() - t0
        b1, c1 = self._busy(), self._own()
        rec = {"wall_s": wall, "own_cores": (c1 - c0) / wall if wall else 0.0}
        if b0 and b1:
            rec["other_cores"] = max(0.0, (b1[0] - b0[0]) - (c1 - c0)) / wall if wall else 0.0
            rec["steal_cores"] = (b1[1] - b0[1]) / wall if wall else 0.0
        self.steps[name] = rec


# --------------------------------------------------------------------------------------------------
# Machine and versions


def machine_info() -> dict:
    import faiss
    import gensim

    import glovefaiss

    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024**2
    except OSError:
        pass
    git = {}
    try:
        git["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", "glovefaiss"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        git["library_changes"] = [s[3:] for s in status]
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "mem_gb": mem_gb,
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "faiss": faiss.__version__,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "gensim": gensim.__version__,
        "glovefaiss": glovefaiss.__version__,
        "git": git,
    }


# --------------------------------------------------------------------------------------------------
# Corpus generation (vectorised: numpy for the choices, Arrow kernels for the strings)


class GenVocab:
    """What the generator draws from: GloVe words (Zipf by GloVe rank) and made-up unknown words."""

    PUNCT = ["", ",", ";", ":", ".", "?", "!"]  # after a word
    WRAP_OPEN = ["", '"', "(", ""]  # before a word
    WRAP_CLOSE = ["", '"', ")", "'s"]  # after a word, before its punctuation

    def __init__(self, words: pa.Array, seed: int, n_fake: int = 20_000, exponent: float = 1.05):
        # Alphabetic-ish GloVe words (letters/digits, at most one inner hyphen or apostrophe), no
        # pure punctuation or number tokens; weight by the word's rank in GloVe (frequency order).
        ok = pc.match_substring_regex(words, r"^[a-z][a-z0-9]*(?:[-'][a-z0-9]+)?$")
        ok = ok.to_numpy(zero_copy_only=False)
        ranks = np.flatnonzero(ok)
        self.known = words.filter(pa.array(ok))
        self.known_cdf = self._cdf(ranks, exponent)
        fake = self._fake_words(np.random.default_rng([seed, 1]), n_fake, words)
        self.fake_cdf = self._cdf(np.arange(len(fake)), exponent)
        base = pa.concat_arrays([self.known.cast(pa.string()), fake])
        self.n_base = len(base)
        # Row i: base word i; row n_base + i: the same word capitalised.
        self.forms = pa.concat_arrays([base, pc.utf8_capitalize(base)])
        self.suffixes = pa.array([c + p for c in self.WRAP_CLOSE for p in self.PUNCT])
        self.prefixes = pa.array(self.WRAP_OPEN)

    @staticmethod
    def _cdf(ranks: np.ndarray, exponent: float) -> np.ndarray:
        p = 1.0 / (ranks.astype(np.float64) + 10.0) ** exponent
        cdf = np.cumsum(p)
        return cdf / cdf[-1]

    @staticmethod
    def _fake_words(rng: np.random.Generator, n: int, vocab: pa.Array) -> pa.Array:
        """``n`` distinct lowercase made-up words of 5-11 letters that GloVe does not have."""
        letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
        out: list[str] = []
        seen: set[str] = set()
        while len(out) < n:
            m = 2 * (n - len(out))
            codes = letters[rng.integers(0, 26, size=(m, 11))]
            lens = rng.integers(5, 12, size=m)
            cand = [bytes(row[:k]).decode() for row, k in zip(codes, lens)]
            known = pc.is_in(pa.array(cand), value_set=vocab).to_numpy(zero_copy_only=False)
            for w, k in zip(cand, known):
                if not k and w not in seen:
                    seen.add(w)
                    out.append(w)
        return pa.array(out[:n], pa.string())

    def texts(self, rng: np.random.Generator, lengths: np.ndarray, unknown_rate: float = 0.03,
              cap_rate: float = 0.10, sentence_rate: float = 1 / 14) -> pa.Array:
        """One text per entry of ``lengths`` (number of words)."""
        n = len(lengths)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        # Words: GloVe words by Zipf rank, ~unknown_rate of them made up (also Zipf among themselves).
        code = np.searchsorted(self.known_cdf, rng.random(total)).astype(np.int64)
        unk = rng.random(total) < unknown_rate
        code[unk] = len(self.known) + np.searchsorted(self.fake_cdf, rng.random(int(unk.sum())))
        # Sentences: a word ends one with probability sentence_rate, and every text ends one.
        last = offsets[1:] - 1
        sent_end = rng.random(total) < sentence_rate
        sent_end[last] = True
        sent_start = np.zeros(total, dtype=bool)
        sent_start[1:] = sent_end[:-1]
        sent_start[offsets[:-1]] = True
        capital = sent_start | (rng.random(total) < cap_rate)
        code += capital * self.n_base
        # Wrappers: 1.5% "quoted", 1% (parenthesised), 1% possessive 's.
        r = rng.random(total)
        wrap = np.select([r < 0.015, r < 0.025, r < 0.035], [1, 2, 3], 0)
        # Punctuation: sentence ends get . (90%) ? (5%) ! (5%); others , (7%) ; (0.5%) : (0.5%).
        r = rng.random(total)
        inner = np.select([r < 0.07, r < 0.075, r < 0.08], [1, 2, 3], 0)
        end = np.select([r < 0.90, r < 0.95], [4, 5], 6)
        punct = np.where(sent_end, end, inner)
        tokens = pc.binary_join_element_wise(
            self.prefixes.take(pa.array(wrap)),
            self.forms.take(pa.array(code)),
            self.suffixes.take(pa.array(wrap * len(self.PUNCT) + punct)),
            "",
        )
        lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), tokens)
        return pc.binary_join(lists, " ")


def doc_lengths(rng: np.random.Generator, n: int) -> np.ndarray:
    """Words per document: log-normal (median 26), clipped to 5-60; mean about 29."""
    return np.clip(np.rint(rng.lognormal(np.log(26), 0.55, n)), 5, 60).astype(np.int64)


def ensure_corpus(out: Path, docs: int, seed: int, words: pa.Array) -> dict:
    """``out/corpus.parquet`` with ``docs`` documents, reused when generated with the same parameters."""
    path = out / "corpus.parquet"
    meta_path = out / "corpus.json"
    params = {"generator_version": GENERATOR_VERSION, "docs": docs, "seed": seed}
    if path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("params") == params and pq.read_metadata(path).num_rows == docs:
                log(f"reusing corpus {path} ({docs:,} documents)")
                meta["reused"] = True
                return meta
        except (OSError, ValueError, pa.ArrowException):
            pass
    log(f"generating {docs:,} documents into {path}")
    t0 = time.perf_counter()
    vocab = GenVocab(words, seed)
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    tokens = 0
    schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("text", pa.string())])
    with pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, docs, GEN_CHUNK_DOCS):
            n = min(GEN_CHUNK_DOCS, docs - start)
            lengths = doc_lengths(rng, n)
            tokens += int(lengths.sum())
            texts = vocab.texts(rng, lengths)
            ids = pa.array(np.arange(start, start + n, dtype=np.int64))
            writer.write_table(pa.table([ids, texts], schema=schema))
    os.replace(tmp, path)
    seconds = time.perf_counter() - t0
    meta = {"params": params, "docs": docs, "words": tokens, "mean_words": tokens / docs,
            "generate_s": round(seconds, 2), "bytes": path.stat().st_size,
            "text_bytes": None, "reused": False}
    meta["text_bytes"] = int(pc.sum(pc.binary_length(pq.read_table(path, columns=["text"]).column(0))).as_py())
    meta_path.write_text(json.dumps(meta, indent=1))
    log(f"generated {docs:,} documents ({tokens:,} words) in {seconds:.1f} s")
    return meta


def make_queries(words: pa.Array, n: int, seed: int) -> list[str]:
    """``n`` short query texts (2-8 words), generated like documents."""
    vocab = GenVocab(words, seed)
    rng = np.random.default_rng([seed, 2])
    return vocab.texts(rng, rng.integers(2, 9, size=n)).to_pylist()


# --------------------------------------------------------------------------------------------------
# 2. Encoding: the design's reference loop


def measure_reference(corpus: Path, sample: int, seed: int, vectors) -> dict:
    from gensim.models import KeyedVectors

    log("building gensim KeyedVectors for the reference loop")
    kv = KeyedVectors(vector_size=vectors.dim)
    kv.add_vectors(vectors.words.to_pylist(), np.asarray(vectors.matrix))
    texts = pq.read_table(corpus, columns=["text"]).column(0)
    rng = np.random.default_rng([seed, 3])
    sample = min(sample, len(texts))
    rows = np.sort(rng.choice(len(texts), size=sample, replace=False))
    docs = texts.take(pa.array(rows)).to_pylist()
    log(f"reference loop over {sample:,} documents")
    words_total = known_total = 0
    out = np.empty((len(docs), vectors.dim), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.mean of an empty list (no known word)
        t0, c0 = time.perf_counter(), time.thread_time()
        for i, text in enumerate(docs):
            words = text.lower().split()
            vecs = [kv[w] for w in words if w in kv]
            out[i] = np.mean(vecs, axis=0)
        seconds, cpu = time.perf_counter() - t0, time.thread_time() - c0
    for text in docs:  # counts, outside the timed loop
        words = text.lower().split()
        words_total += len(words)
        known_total += sum(w in kv for w in words)
    return {"docs": sample, "seconds": seconds, "docs_per_s": sample / seconds, "cpu_s": cpu,
            "docs_per_cpu_s": sample / cpu,
            "oov_rate": 1 - known_total / max(words_total, 1)}


# --------------------------------------------------------------------------------------------------
# 2-3. The product path: `glovefaiss build` as a subprocess


def measure_build(corpus: Path, index_dir: Path, extra: tuple[str, ...] = ()) -> dict:
    exe = shutil.which("glovefaiss", path=str(Path(sys.executable).parent)) or shutil.which("glovefaiss")
    if exe is None:
        raise BenchError("the glovefaiss console script is not on PATH; run through bin/bench")
    cmd = [exe, "build", str(corpus), "--out", str(index_dir), "--overwrite", *extra]
    time_file = index_dir.parent / "build-time.txt"
    use_time = Path("/usr/bin/time").exists()
    full = (["/usr/bin/time", "-v", "-o", str(time_file)] + cmd) if use_time else cmd
    log("running: " + " ".join(cmd))
    before = _children_maxrss_kb()
    c0 = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(full, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise BenchError(f"glovefaiss build failed (exit {proc.returncode}):\n{tail}")
    rss_kb, rss_source = None, None
    if use_time and time_file.exists():
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
        if m:
            rss_kb, rss_source = int(m.group(1)), "/usr/bin/time -v"
    if rss_kb is None:
        after = _children_maxrss_kb()
        rss_kb = after if after > before else None
        rss_source = "getrusage(RUSAGE_CHILDREN)"
    manifest = json.loads((index_dir / "manifest.json").read_text())
    summary = [line for line in proc.stderr.splitlines() if line.startswith("built ")]
    return {"cmd": " ".join(["glovefaiss"] + cmd[1:]), "wall_s": wall, "cpu_s": cpu, "max_rss_mb": rss_kb / 1024 if rss_kb else None,
            "rss_source": rss_source, "manifest": manifest, "summary": summary[-1] if summary else "",
            "index_bytes": manifest["index"]["bytes"],
            "shard_bytes": sum((index_dir / s["file"]).stat().st_size for s in manifest["shards"])}


def measure_encode_repeats(corpus: Path, out: Path, runs: int, sample: int, seed: int, vectors) -> list[dict]:
    """Pairs (reference loop, build encoding) measured back to back, ``runs`` times: on a shared
    or noisy machine one pair can be off by 20%; the report gives every pair and their median."""
    pairs = []
    for i in range(runs):
        ref = measure_reference(corpus, sample, seed, vectors)
        b = measure_build(corpus, out / "index-encode-only", ("--index", "flat"))
        rate = b["manifest"]["timings"].get("docs_per_s") or 0
        pairs.append({"reference": ref["docs_per_s"], "build": rate, "ratio": rate / ref["docs_per_s"]})
        log(f"repeat {i + 1}/{runs}: reference {ref['docs_per_s']:,.0f} docs/s, build encoding {rate:,.0f} docs/s "
            f"({rate / ref['docs_per_s']:.1f}x)")
    shutil.rmtree(out / "index-encode-only", ignore_errors=True)
    return pairs


def _children_maxrss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


# --------------------------------------------------------------------------------------------------
# 2. Encoding in process: TextEncoder.encode_arrow, per-stage split, threads, batch sizes


def read_batches(corpus: Path, batch_size: int) -> tuple[list[pa.Array], float]:
    t0 = time.perf_counter()
    pf = pq.ParquetFile(corpus)
    batches = [b.column(1).cast(pa.string()) for b in pf.iter_batches(batch_size=batch_size, columns=["id", "text"])]
    return batches, time.perf_counter() - t0


def _tokenise(encoder, texts):
    """The encoder's own tokenising step: byte spans where its rules allow, else Arrow lists."""
    spans = encoder.tokeniser.token_spans(texts)
    if spans is not None:
        return spans
    tokens = encoder.tokeniser.tokenise_arrow(texts)
    return pc.list_flatten(tokens), pc.list_value_length(tokens).fill_null(0).to_numpy().astype(np.int64)


def _lookup(encoder, tokens) -> tuple[np.ndarray, np.ndarray]:
    """(rows, tokens per text) for the output of :func:`_tokenise`."""
    if isinstance(tokens, tuple):
        return encoder.vocabulary.lookup_arrow(tokens[0]), tokens[1]
    return encoder.vocabulary.key_table().lookup(tokens.buf, tokens.starts, tokens.lengths), tokens.counts


def _unknown_strings(tokens, unknown: np.ndarray):
    if isinstance(tokens, tuple):
        return pc.filter(tokens[0], pa.array(unknown))
    return tokens.strings(np.flatnonzero(unknown))


def stage_split(encoder, batches: list[pa.Array]) -> dict:
    """encode_arrow's steps timed one by one through the encoder's own components, on one thread.

    Timed in CPU seconds of this thread, so that other processes on the machine do not inflate them.
    """
    t = {"tokenise": 0.0, "lookup": 0.0, "pool": 0.0, "oov_stats": 0.0}
    for texts in batches:
        t0 = time.thread_time()
        tokens = _tokenise(encoder, texts)
        t1 = time.thread_time()
        rows, lengths = _lookup(encoder, tokens)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        known = rows >= 0
        known_offsets = np.concatenate([[0], np.cumsum(known)])[offsets]
        t2 = time.thread_time()
        encoder._pool(rows[known], known_offsets)
        t3 = time.thread_time()
        if not known.all():
            counts = pc.value_counts(_unknown_strings(tokens, ~known))
            counts.field("values").to_pylist(), counts.field("counts").to_pylist()
        t4 = time.thread_time()
        t["tokenise"] += t1 - t0
        t["lookup"] += t2 - t1
        t["pool"] += t3 - t2
        t["oov_stats"] += t4 - t3
    return t


def stage_scaling(encoder, batches: list[pa.Array], threads: int) -> dict:
    """Seconds per stage over ``batches`` on 1 thread and on ``threads`` threads (batches in parallel).

    A stage that does not speed up holds the GIL (or saturates memory bandwidth).
    """
    tokenised, pooled_inputs = [], []
    for texts in batches:
        tokens = _tokenise(encoder, texts)
        rows, lengths = _lookup(encoder, tokens)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        known = rows >= 0
        tokenised.append(tokens)
        pooled_inputs.append((rows[known], np.concatenate([[0], np.cumsum(known)])[offsets]))
    stages = {
        "tokenise": (lambda texts: _tokenise(encoder, texts), batches),
        "lookup": (lambda tokens: _lookup(encoder, tokens), tokenised),
        "pool": (lambda a: encoder._pool(*a), pooled_inputs),
        "encode_arrow": (encoder.encode_arrow, batches),
    }
    out = {}
    for name, (fn, items) in stages.items():
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        one = time.perf_counter() - t0
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, items))
        out[name] = (one, time.perf_counter() - t0)
    return out


def encode_all(encoder, batches: list[pa.Array], threads: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to encode every batch with encode_arrow (top_oov=20, as the build)."""
    fn = lambda texts: encoder.encode_arrow(texts, top_oov=20)  # noqa: E731
    t0, c0 = time.perf_counter(), time.process_time()
    if threads <= 1:
        for texts in batches:
            fn(texts)
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(fn, batches):
                pass
    return time.perf_counter() - t0, time.process_time() - c0


def measure_encode_inprocess(corpus: Path, vectors, docs: int) -> dict:
    from glovefaiss import Config
    from glovefaiss.index.build import encoder_from_config

    config = Config()
    encoder, _ = encoder_from_config(config, vectors)
    from glovefaiss.index.build import pooling_backend

    # As the build of this many documents pools (pipeline.encode_corpus).
    encoder.batch_sums = pooling = pooling_backend(docs)
    if pooling == "torch":
        encoder.batch_rows()
    batch_size = config.build.batch_size
    log(f"in-process encoding: reading {corpus.name} in batches of {batch_size:,}")
    batches, read_s = read_batches(corpus, batch_size)
    encoder.encode_arrow(batches[0][:1000])  # warm-up (first-call costs, page-ins of the matrix)

    log("in-process encoding: encode_arrow on 1 thread")
    one, one_cpu = encode_all(encoder, batches, 1)
    log("in-process encoding: per-stage split")
    stages = stage_split(encoder, batches)
    threads = max(2, min(os.cpu_count() or 1, 4))
    log(f"in-process encoding: encode_arrow on {threads} threads (batches in parallel)")
    multi, multi_cpu = encode_all(encoder, batches, threads)
    log(f"in-process encoding: per-stage thread scaling on {min(8, len(batches))} batches")
    scaling = stage_scaling(encoder, batches[:8], threads)

    # Fixed cost of a vocabulary lookup call (once 60-90 ms: pc.index_in hashed the whole vocabulary).
    one_token = pa.array(["the"])
    fixed = min(timed(encoder.vocabulary.lookup_arrow, one_token)[1] for _ in range(7))

    # Batch-size sensitivity on the first ~256k documents.
    sub = pa.chunked_array(batches).slice(0, min(262_144, docs)).combine_chunks()
    sweep = {}
    for bs in (4096, 16384, 32768, 131072):
        if bs > len(sub):
            continue
        parts = [sub.slice(i, bs) for i in range(0, len(sub), bs)]
        sweep[bs] = len(sub) / encode_all(encoder, parts, 1)[1]
    return {"batch_size": batch_size, "pooling": pooling, "batches": len(batches), "docs": docs, "read_s": read_s,
            "one_thread_s": one, "one_thread_cpu_s": one_cpu, "multi_cpu_s": multi_cpu, "stages": stages, "threads": threads, "multi_s": multi,
            "scaling": scaling, "scaling_batches": min(8, len(batches)), "lookup_fixed_s": fixed, "sweep": sweep, "sweep_docs": len(sub)}


# --------------------------------------------------------------------------------------------------
# 4. Warm in-process queries


def measure_warm_queries(index_dir: Path, queries: list[str]) -> dict:
    import faiss

    import glovefaiss

    k = 10
    (idx, load_s) = timed(glovefaiss.Index.load, index_dir)
    first_search = timed(idx.search, queries[0], k)[1]
    first_hits = timed(idx.hits, queries[0], k)[1]
    load_mmap_s = timed(glovefaiss.Index.load, index_dir, mmap=True)[1]
    for q in queries[:50]:  # warm-up
        idx.search(q, k)
        idx.hits(q, k)
    threads = faiss.omp_get_max_threads()
    vecs = idx.encode(queries)
    one_vecs = [np.ascontiguousarray(vecs[i:i + 1]) for i in range(len(vecs))]

    # The variants take turns, query by query, so that each sees the same background conditions;
    # each query is timed once, by one variant: a repeated query finds its IVF lists in the CPU
    # cache: timed after `search` on the same query, FAISS alone looked 1.8x faster on the Zipf
    # corpus (0.53 ms p50) than on new queries (0.94 ms).
    # FAISS runs on one OpenMP thread, as the library runs it for fewer than 16 queries.
    log(f"warm queries: {len(queries):,} single queries, each timed once by one of search, hits, encode, "
        "search_vectors, FAISS (1 and all threads) in turn")
    variants = {
        "search": lambda i: idx.search(queries[i], k),
        "hits": lambda i: idx.hits(queries[i], k),
        "encode": lambda i: idx.encode(queries[i]),
        "search_vectors": lambda i: idx.search_vectors(one_vecs[i], k),
        "faiss_1t": lambda i: idx.faiss.search(one_vecs[i], k),
        "faiss_default": lambda i: faiss_all_threads(one_vecs[i]),
    }

    def faiss_all_threads(v):
        faiss.omp_set_num_threads(threads)
        try:
            return idx.faiss.search(v, k)
        finally:
            faiss.omp_set_num_threads(1)

    lat: dict[str, list[float]] = {name: [] for name in variants}
    faiss.omp_set_num_threads(1)
    try:
        names = list(variants)
        for i in range(50, len(queries)):  # not the warm-up queries
            name = names[(i - 50) % len(names)]
            t = time.perf_counter()
            variants[name](i)
            lat[name].append(time.perf_counter() - t)
    finally:
        faiss.omp_set_num_threads(threads)

    batch = min(1000, len(queries))
    chunks = [queries[i:i + batch] for i in range(0, len(queries) - batch + 1, batch)]
    log(f"warm queries: {len(chunks)} batches of {batch}")
    idx.search(chunks[0], k)  # warm-up
    qps = {}
    qps["search"] = len(chunks) * batch / sum(timed(idx.search, c, k)[1] for c in chunks)
    qps["encode"] = len(chunks) * batch / sum(timed(idx.encode, c)[1] for c in chunks)
    vchunks = [idx.encode(c) for c in chunks]
    qps["faiss"] = len(chunks) * batch / sum(timed(idx.faiss.search, v, k)[1] for v in vchunks)
    return {"load_s": load_s, "load_mmap_s": load_mmap_s, "first_search_s": first_search,
            "first_hits_s": first_hits, "lat": lat, "batch": batch, "qps": qps, "ntotal": len(idx),
            "faiss_threads": threads, "queries": len(queries) - 50, "empty_queries": int((~np.any(vecs != 0, axis=1)).sum())}


# --------------------------------------------------------------------------------------------------
# 5. Cold CLI queries


def measure_cold_cli(index_dir: Path, text: str, runs: int = 5) -> dict:
    exe = shutil.which("glovefaiss", path=str(Path(sys.executable).parent)) or "glovefaiss"

    def median_wall(cmd):
        walls = []
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            walls.append(time.perf_counter() - t)
            if proc.returncode != 0:
                tail = "\n".join(proc.stderr.strip().splitlines()[-10:])
                raise BenchError(f"{' '.join(cmd[:3])} ... failed (exit {proc.returncode}):\n{tail}")
        return statistics.median(walls)

    log(f"cold CLI: {runs} runs each")
    query = [exe, "query", str(index_dir), text, "-k", "10"]
    out = {
        "query": median_wall(query),
        "query_mmap": median_wall(query + ["--mmap"]),
        "import_faiss": median_wall([sys.executable, "-c", "import faiss"]),
        "import_glovefaiss": median_wall([sys.executable, "-c", "import glovefaiss"]),
        "python": median_wall([sys.executable, "-c", "pass"]),
        "runs": runs,
        "text": text,
    }
    return out


# --------------------------------------------------------------------------------------------------
# 6. Report


def render(info: dict, args, corpus: dict, ref: dict, build: dict, enc: dict, warm: dict, cold: dict,
           load: dict, repeats: list[dict]) -> str:
    m = build["manifest"]
    tm = m["timings"]
    n = m["documents"]
    ref_rate = ref["docs_per_s"]
    build_enc_rate = tm.get("docs_per_s") or 0
    build_overall = n / build["wall_s"]
    one_rate = enc["docs"] / enc["one_thread_s"]
    multi_rate = enc["docs"] / enc["multi_s"]
    build_threads = m.get("config", {}).get("build", {}).get("threads") or info["cpu_count"]
    git = info.get("git", {})
    L: list[str] = []
    add = L.append

    add("# glovefaiss benchmark")
    add("")
    add(f"`bin/bench --docs {args.docs} --queries {args.queries} --reference-sample {args.reference_sample} "
        f"--seed {args.seed}` ({time.strftime('%Y-%m-%d %H:%M')}). All figures from this one run.")
    add("")
    add(f"Machine: {info['cpu_count']} CPUs ({info['cpu']}), {info['mem_gb']:.0f} GB RAM, {info['os']}. "
        f"Python {info['python']}, numpy {info['numpy']}, pyarrow {info['pyarrow']}, faiss {info['faiss']} "
        f"(OpenMP threads {info['faiss_omp_threads']}), gensim {info['gensim']}, glovefaiss {info['glovefaiss']}"
        + (f", git {git.get('commit')}" if git.get("commit") else "")
        + (f" + uncommitted changes in {', '.join(git['library_changes'])}" if git.get("library_changes") else "")
        + ".")
    add("")
    busy = {name: rec.get("other_cores", 0.0) for name, rec in load.items()}
    if busy and max(busy.values()) > 0.25:
        add(f"**Warning: the machine was shared.** Other processes kept up to {max(busy.values()):.1f} of "
            f"{info['cpu_count']} cores busy during the measurements (see *Background load*); multi-threaded "
            f"figures suffer most.")
        add("")
    add("## Corpus")
    add("")
    add(f"{corpus['docs']:,} documents, {corpus['words']:,} words (mean {corpus['mean_words']:.1f}, 5–60), "
        f"{corpus['text_bytes'] / 1e6:,.0f} MB of text, `corpus.parquet` {corpus['bytes'] / 1e6:,.0f} MB. "
        f"Words Zipf-drawn (p ∝ 1/(rank+10)^1.05) from the alphabetic GloVe words, ~3% made-up words, "
        f"capitals at sentence starts and on ~10% of words, punctuation attached. "
        + (f"Generated in {corpus['generate_s']:.1f} s." if not corpus.get("reused") else
           f"Reused from the cache (generated in {corpus['generate_s']:.1f} s)."))
    add("")

    add("## Encoding throughput")
    add("")
    add("docs/s is documents per wall-clock second; docs/CPU-s is documents per CPU-second used (this process "
        "or the build process, all threads), which other processes on the machine barely affect.")
    add("")
    ref_cpu = ref["docs_per_cpu_s"]
    build_cpu = n / build["cpu_s"] if build.get("cpu_s") else float("nan")
    one_cpu = enc["docs"] / enc["one_thread_cpu_s"]
    multi_cpu = enc["docs"] / enc["multi_cpu_s"]
    add("| path | docs/s | vs reference | docs/CPU-s | vs reference |")
    add("|---|---:|---:|---:|---:|")
    add(f"| reference loop (`lower().split()`, `kv[w]`, `np.mean`), {ref['docs']:,}-doc sample, 1 thread "
        f"| {ref_rate:,.0f} | 1.0x | {ref_cpu:,.0f} | 1.0x |")
    add(f"| `glovefaiss build`, encoding (manifest `timings.docs_per_s`, {build_threads} threads) "
        f"| {build_enc_rate:,.0f} | **{build_enc_rate / ref_rate:.1f}x** | | |")
    add(f"| `glovefaiss build`, overall (documents / process wall time; CPU: whole process) | {build_overall:,.0f} "
        f"| {build_overall / ref_rate:.1f}x | {build_cpu:,.0f} | {build_cpu / ref_cpu:.1f}x |")
    add(f"| in process `TextEncoder.encode_arrow`, 1 thread, batches of {enc['batch_size']:,} | {one_rate:,.0f} "
        f"| {one_rate / ref_rate:.1f}x | {one_cpu:,.0f} | {one_cpu / ref_cpu:.1f}x |")
    add(f"| in process `encode_arrow`, {enc['threads']} batches in parallel | {multi_rate:,.0f} "
        f"| {multi_rate / ref_rate:.1f}x | {multi_cpu:,.0f} | {multi_cpu / ref_cpu:.1f}x |")
    add("")
    ratios = [r["ratio"] for r in repeats]
    add(f"Build encoding vs the reference loop, measured as {len(repeats)} back-to-back pairs (the first is the "
        f"build above; the others `--index flat` builds of the same corpus): "
        + ", ".join(f"{r['build']:,.0f} / {r['reference']:,.0f} = {r['ratio']:.1f}x" for r in repeats)
        + f"; **median {float(np.median(ratios)):.1f}x**, lowest {min(ratios):.1f}x.")
    add("")
    add(f"Unknown-token rate: glovefaiss tokeniser {m['oov_rate']:.1%}; reference `lower().split()` "
        f"{ref['oov_rate']:.1%} (punctuation stays glued to words, so the reference also averages fewer words).")
    add("")
    st = enc["stages"]
    total_st = sum(st.values())
    sc = enc.get("scaling", {})
    add(f"Where encoding time goes, in CPU seconds of one thread: {enc['batches']} batch(es) of {enc['batch_size']:,} "
        f"(reading the text column from Parquet, not included: {enc['read_s']:.2f} s). Thread scaling: the "
        f"same stage on {enc['scaling_batches']} batches, 1 thread vs {enc['threads']} batches in parallel.")
    add("")
    add(f"| stage | s | share | µs/doc | {enc['threads']}-thread speed-up |")
    add("|---|---:|---:|---:|---:|")
    for name, label in (("tokenise", "tokenise (`Tokeniser.token_spans`: byte table, token edges)"),
                        ("lookup", "vocabulary lookup (`KeyTable.lookup` on the spans, known mask)"),
                        ("pool", f"pooling (`TextEncoder._pool`, {enc.get('pooling', '?')}, L2)"),
                        ("oov_stats", "OOV word counts (`value_counts`, top_oov)")):
        speed = f"{sc[name][0] / sc[name][1]:.2f}x" if name in sc else ""
        add(f"| {label} | {st[name]:.2f} | {st[name] / total_st:.0%} | {st[name] / enc['docs'] * 1e6:.2f} | {speed} |")
    speed = f"{sc['encode_arrow'][0] / sc['encode_arrow'][1]:.2f}x" if "encode_arrow" in sc else ""
    add(f"| sum of stages (`encode_arrow` alone: {enc['one_thread_cpu_s']:.2f} CPU-s) | {total_st:.2f} | 100% "
        f"| {total_st / enc['docs'] * 1e6:.2f} | {speed} |")
    add("")
    add(f"Fixed cost of one `Vocabulary.lookup_arrow` call (a single token, {m['vectors'].get('vocab_size', 0):,}-word "
        f"vocabulary): {enc['lookup_fixed_s'] * 1e3:.0f} ms; × {enc['batches']} batches = "
        f"{enc['lookup_fixed_s'] * enc['batches']:.2f} s of the {st['lookup']:.2f} s lookup total.")
    add("")
    if enc["sweep"]:
        add(f"Batch size, `encode_arrow` on 1 thread over the first {enc['sweep_docs']:,} documents: "
            + ", ".join(f"{bs:,} → {rate:,.0f} docs/CPU-s" for bs, rate in enc["sweep"].items()) + ".")
        add("")

    add("## Build")
    add("")
    add(f"`{build['cmd']}`")
    add("")
    ix = m.get("index", {})
    add("| | |")
    add("|---|---:|")
    add(f"| wall time | {build['wall_s']:.1f} s |")
    add(f"| CPU time (user + system, all threads) | {build.get('cpu_s', float('nan')):.1f} s |")
    labels = {"load_vectors_s": "load vectors", "encode_s": "encode + write shards",
              "index_s": "index (train, add, tune)", "index_write_s": "write index.faiss"}
    for key, value in tm.items():
        if key.endswith("_s") and key not in ("total_s", "docs_per_s") and isinstance(value, (int, float)):
            add(f"| · {labels.get(key, key)} (`timings.{key}`) | {value:.2f} s |")
    for key in ("train_s", "add_s", "tune_s"):
        if isinstance(ix.get(key), (int, float)):
            add(f"| · · index {key[:-2]} (`index.{key}`) | {ix[key]:.2f} s |")
    if isinstance(tm.get("total_s"), (int, float)):
        add(f"| · outside `timings.total_s` (interpreter start, imports, exit) | {build['wall_s'] - tm['total_s']:.1f} s |")
    add(f"| peak RSS ({build['rss_source']}) | {build['max_rss_mb']:,.0f} MB |" if build["max_rss_mb"] else
        "| peak RSS | n/a |")
    add(f"| index.faiss / shards on disk | {build['index_bytes'] / 1e6:,.0f} MB / {build['shard_bytes'] / 1e6:,.0f} MB |")
    add(f"| documents / empty / OOV rate | {n:,} / {m['empty_documents']:,} / {m['oov_rate']:.2%} |")
    add("")

    lat = warm["lat"]
    kind = ix.get("key") or ix.get("type") or "?"
    params = ", ".join(f"{k}={v}" for k, v in (ix.get("params") or {}).items())
    recall = (ix.get("tuning") or {}).get("recall")
    index_desc = f"`{kind}`" + (f" ({params})" if params else "") + (
        f", tuned by the build to recall@10 {recall:.3f} against exact search" if recall is not None else "")
    add("## Warm queries (in process)")
    add("")
    add(f"`Index.load` {warm['load_s'] * 1e3:.0f} ms ({warm['ntotal']:,} vectors, index {index_desc}; "
        f"`mmap=True`: {warm['load_mmap_s'] * 1e3:.0f} ms); first `search` after load "
        f"{warm['first_search_s'] * 1e3:.0f} ms, first `hits` {warm['first_hits_s'] * 1e3:.0f} ms. "
        f"Then {warm['queries']:,} queries of 2–8 words, k=10, after 50 warm-up queries; the variants "
        f"below take turns and each query is timed once, by one of them (about {len(lat['search']):,} "
        f"each: a repeated query would find its index lists in the CPU cache; "
        f"{warm['empty_queries']} queries have no known word).")
    add("")
    add("| single query | p50 µs | p99 µs | mean µs |")
    add("|---|---:|---:|---:|")
    for key, label in (("search", "`idx.search(text, k=10)` end to end"),
                       ("hits", "`idx.hits(text, k=10)` end to end (with stored texts)"),
                       ("encode", "· encode only, `idx.encode(text)`"),
                       ("search_vectors", "· `idx.search_vectors(vec)` (FAISS + id mapping, no encoding)"),
                       ("faiss_1t", "· FAISS only, `idx.faiss.search`, 1 OpenMP thread (as the library runs it)"),
                       ("faiss_default", f"· FAISS only, {warm['faiss_threads']} OpenMP threads")):
        v = lat[key]
        add(f"| {label} | {pct(v, 50):,.0f} | {pct(v, 99):,.0f} | {np.mean(v) * 1e6:,.0f} |")
    add("")
    q = warm["qps"]
    add(f"Batches of {warm['batch']:,} texts: `idx.search(list)` {q['search']:,.0f} queries/s; encode only "
        f"{q['encode']:,.0f} queries/s; FAISS only {q['faiss']:,.0f} queries/s "
        f"({warm['faiss_threads']} OpenMP threads).")
    add("")

    add("## Cold CLI query")
    add("")
    add(f"Median of {cold['runs']} runs each, page cache warm, "
        f"`glovefaiss query INDEX \"{cold['text']}\" -k 10`:")
    add("")
    add("| command | median s | vs `import faiss` |")
    add("|---|---:|---:|")
    base = cold["import_faiss"]
    for key, label in (("query", "`glovefaiss query`"), ("query_mmap", "`glovefaiss query --mmap`"),
                       ("import_faiss", "`python -c \"import faiss\"`"),
                       ("import_glovefaiss", "`python -c \"import glovefaiss\"`"),
                       ("python", "`python -c pass`")):
        add(f"| {label} | {cold[key]:.3f} | {cold[key] / base:.1f}x |")
    add("")

    add("## Background load")
    add("")
    add("The machine is shared; cores busy in *other* processes while each step ran (this process and its "
        "children excluded), and cores stolen by the hypervisor:")
    add("")
    add("| step | wall s | this run, cores | others, cores | steal, cores |")
    add("|---|---:|---:|---:|---:|")
    for name, rec in load.items():
        add(f"| {name} | {rec['wall_s']:.1f} | {rec['own_cores']:.2f} | {rec.get('other_cores', float('nan')):.2f} "
            f"| {rec.get('steal_cores', float('nan')):.2f} |")
    add("")
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bin/bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--docs", type=int, default=1_000_000, help="documents in the synthetic corpus")
    p.add_argument("--out", type=Path, default=ROOT / "bench-out", help="working directory (corpus cache, index, report)")
    p.add_argument("--queries", type=int, default=2000, help="query texts for the warm query measurements")
    p.add_argument("--reference-sample", type=int, default=100_000, help="documents run through the reference loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--encode-repeats", type=int, default=2,
                   help="extra (reference loop, build encoding) pairs, builds with --index flat, for the median")
    args = p.parse_args(argv)
    if args.encode_repeats < 0:
        p.error("--encode-repeats must be at least 0")
    for name in ("docs", "queries", "reference_sample"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    mon = LoadMonitor()
    try:
        from glovefaiss.vectors.sources import load_vectors

        info = machine_info()
        log(f"loading {GLOVE}")
        vectors = load_vectors(GLOVE)
        with mon.step("corpus"):
            corpus_meta = ensure_corpus(out, args.docs, args.seed, vectors.words)
            queries = make_queries(vectors.words, args.queries, args.seed)
        corpus = out / "corpus.parquet"
        with mon.step("reference loop"):
            ref = measure_reference(corpus, args.reference_sample, args.seed, vectors)
        log(f"reference loop: {ref['docs_per_s']:,.0f} docs/s")
        index_dir = out / "index"
        with mon.step("glovefaiss build"):
            build = measure_build(corpus, index_dir)
        log(f"build: {build['wall_s']:.1f} s wall, encoding "
            f"{build['manifest']['timings'].get('docs_per_s') or 0:,.0f} docs/s")
        with mon.step("encoding repeats"):
            repeats = [{"reference": ref["docs_per_s"], "build": build["manifest"]["timings"].get("docs_per_s") or 0}]
            repeats[0]["ratio"] = repeats[0]["build"] / repeats[0]["reference"]
            repeats += measure_encode_repeats(corpus, out, args.encode_repeats, args.reference_sample, args.seed,
                                              vectors)
        with mon.step("in-process encoding"):
            enc = measure_encode_inprocess(corpus, vectors, args.docs)
        log(f"in-process encode_arrow: {args.docs / enc['one_thread_s']:,.0f} docs/s on 1 thread")
        with mon.step("warm queries"):
            warm = measure_warm_queries(index_dir, queries)
        with mon.step("cold CLI"):
            cold = measure_cold_cli(index_dir, queries[0])
        report = render(info, args, corpus_meta, ref, build, enc, warm, cold, mon.steps, repeats)
    except BenchError as e:
        print(f"bin/bench: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug or a library failure: show where, and fail
        import traceback

        traceback.print_exc()
        print(f"bin/bench: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    (out / "report.md").write_text(report, encoding="utf-8")
    raw = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": info, "corpus": corpus_meta,
           "reference": ref, "build": {k: v for k, v in build.items() if k != "manifest"},
           "build_timings": build["manifest"]["timings"], "encode": enc,
           "warm": {**{k: v for k, v in warm.items() if k != "lat"},
                    "lat_us": {k: {"p50": pct(v, 50), "p99": pct(v, 99), "mean": float(np.mean(v) * 1e6)}
                               for k, v in warm["lat"].items()}},
           "cold": cold, "load": mon.steps, "encode_repeats": repeats}
    (out / "results.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    sys.stdout.write(report)
    log(f"done in {time.perf_counter() - t_start:.0f} s; report in {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
