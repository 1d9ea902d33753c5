"""Bad input fails with one clear line; builds are atomic, resumable and deterministic."""

import dataclasses
import json
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glovefaiss.cli import cli
from glovefaiss.config import Config
from glovefaiss.index.build import build
from glovefaiss.index.search import Index
from glovefaiss.index.writer import SerialCalls, write_shards
from glovefaiss.io.corpus import Corpus, open_corpus
from glovefaiss.text.tokeniser import Tokeniser
from glovefaiss.text.vocabulary import Vocabulary
from glovefaiss.tower.encoder import TextEncoder

from .helpers import WORDS, config_for, random_texts, write_corpus


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


# --- input corpus -------------------------------------------------------------------------

def test_not_parquet(tmp_path, tiny_vectors):
    bad = tmp_path / "c.parquet"
    bad.write_text("id,text\n1,hello\n")
    result = run("build", bad, "--out", tmp_path / "o", "--glove", tiny_vectors[0])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {bad} is not a readable Parquet file (")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "table, message",
    [
        (pa.table({"id": [1], "text": [3]}), "text column 'text' has type int64, expected a string type"),
        (pa.table({"id": [1.5], "text": ["a"]}), "id column 'id' has type double; ids must be integers or strings"),
        (pa.table({"id": pa.array([], pa.int64()), "text": pa.array([], pa.string())}), "the corpus has no rows"),
    ],
)
def test_bad_columns(tmp_path, tiny_vectors, table, message):
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    result = run("build", path, "--out", tmp_path / "o", "--glove", tiny_vectors[0])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith(message)
    assert not (tmp_path / "o").exists()


def test_empty_directory_and_mixed_id_types(tmp_path, tiny_vectors):
    (tmp_path / "empty").mkdir()
    result = run("build", tmp_path / "empty", "--out", tmp_path / "o")
    assert result.stderr == f"Error: no .parquet files in directory {tmp_path / 'empty'}\n"
    d = tmp_path / "mixed"
    d.mkdir()
    write_corpus(d / "a.parquet", [1], ["cat"], pa.int64())
    write_corpus(d / "b.parquet", ["x"], ["dog"])
    result = run("build", d, "--out", tmp_path / "o", "--glove", tiny_vectors[0])
    assert result.stderr == (f"Error: the corpus files mix id types (int64 in {d / 'a.parquet'}; string in "
                             f"{d / 'b.parquet'}); use one id type in every file\n")


def test_null_ids_name_the_file_and_the_fix(tmp_path, tiny_vectors):
    c = write_corpus(tmp_path / "n.parquet", [1, None, 3], ["cat", "dog", "fish"], pa.int64())
    result = run("build", c, "--out", tmp_path / "o", "--glove", tiny_vectors[0])
    assert result.exit_code == 1
    assert result.stderr.endswith(f"\nError: {c}: column 'id' has 1 null ids; give every row an id, "
                                  "or choose another column with --id-column\n")  # after the vectors' parse note
    assert not (tmp_path / "o").exists()


def test_null_and_odd_texts_are_empty_documents_not_errors(tmp_path, tiny_vectors):
    long_doc = " ".join(["cat"] * 200_000)
    texts = [None, "", "   ", "猫が好き 🐈‍⬛ שָׁלוֹם مرحبا", "e\u0301te\u0301", long_doc, "the dog"]
    corpus = write_corpus(tmp_path / "c.parquet", list(range(len(texts))), texts, pa.int64())
    result = build([corpus], tmp_path / "o", config_for(tiny_vectors[0]), progress=False)
    assert result.documents == 7 and result.empty_documents == 5
    idx = Index.load(tmp_path / "o")
    assert [h["id"] for h in idx.hits("cat", k=1)] == [5]


def test_unknown_vectors_name_via_cli(tmp_path, tiny_corpus):
    result = run("build", tiny_corpus[0], "--out", tmp_path / "o", "--glove", "glove-wiki-gigaword-51")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: unknown word vectors 'glove-wiki-gigaword-51'")
    assert "glove-wiki-gigaword-50" in result.stderr and len(result.stderr.splitlines()) == 1


def test_empty_vectors_file_via_cli(tmp_path, tiny_corpus):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run("build", tiny_corpus[0], "--out", tmp_path / "o", "--glove", empty)
    assert result.exit_code == 1 and result.stderr.startswith("Error: ") and str(empty) in result.stderr
    assert len(result.stderr.splitlines()) == 1


# --- index directory ----------------------------------------------------------------------

@pytest.fixture
def built(tmp_path, tiny_vectors, tiny_corpus):
    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0], shard_rows=3), progress=False)
    return out


def test_verify_ok_then_detects_corruption(built):
    result = run("verify", built)
    assert result.exit_code == 0 and result.stdout == f"{built}: OK (18 files match the manifest)\n"
    shard = built / "shards" / "part-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = run("verify", built)
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {built} is damaged: shards/part-00001.parquet does not match its sha256; rebuild the index\n"
    )


def test_truncated_index_is_refused_at_load(built):
    path = built / "index.faiss"
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    result = run("query", built, "cat")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: {built}: index.faiss has {size // 2} bytes, the manifest says {size} (truncated or replaced); "
        "run 'glovefaiss verify' and rebuild the index\n"
    )


def test_missing_shard_and_newer_format(built):
    m = json.loads((built / "manifest.json").read_text())
    (built / "shards" / "part-00000.parquet").unlink()
    assert run("query", built, "cat").stderr == (
        f"Error: {built}: shards/part-00000.parquet is missing; rebuild the index\n")
    r = run("info", built)  # a summary of files that are gone would mislead
    assert r.exit_code == 1 and r.stderr == f"Error: {built}: shards/part-00000.parquet is missing; rebuild the index\n"
    m["format_version"] = 99
    (built / "manifest.json").write_text(json.dumps(m))
    assert run("query", built, "cat").stderr == (
        f"Error: {built} has index format 99, newer than this glovefaiss reads (2); upgrade glovefaiss\n")
    m["format_version"] = 1  # one texts.arrow instead of packed texts per shard
    (built / "manifest.json").write_text(json.dumps(m))
    assert run("query", built, "cat").stderr == (
        f"Error: {built} has index format 1, older than this glovefaiss reads (2); rebuild it with 'glovefaiss build'\n")


def test_damaged_texts_are_found(built):
    text = built / "texts" / "part-00001.text"
    text.write_bytes(text.read_bytes()[:-1])
    assert run("query", built, "cat").stderr == (
        f"Error: {built}: texts/part-00001.text has {text.stat().st_size} bytes, the manifest says "
        f"{text.stat().st_size + 1} (truncated or replaced); run 'glovefaiss verify' and rebuild the index\n")
    text.write_bytes(text.read_bytes() + b"!")
    result = run("verify", built)
    assert result.exit_code == 1 and result.stderr == (
        f"Error: {built} is damaged: texts/part-00001.text does not match its sha256; rebuild the index\n")


def test_not_an_index(tmp_path):
    (tmp_path / "x").mkdir()
    assert run("query", tmp_path / "x", "cat").stderr == (
        f"Error: {tmp_path / 'x'} is not a glovefaiss index (no manifest.json); build one with 'glovefaiss build'\n")


def test_reader_keeps_working_across_a_rebuild(tmp_path, tiny_vectors):
    out = tmp_path / "idx"
    cfg = config_for(tiny_vectors[0])
    build([write_corpus(tmp_path / "a.parquet", [1, 2], ["the cat sat", "stock market"], pa.int64())], out, cfg,
          progress=False)
    old = Index.load(out, mmap=True)
    before = old.hits("cat", k=2)
    build([write_corpus(tmp_path / "b.parquet", [7, 8, 9], ["river boat", "bank rates", "dog barked"], pa.int64())],
          out, cfg, overwrite=True, progress=False)
    assert old.hits("cat", k=2) == before
    assert {h["id"] for h in Index.load(out).hits("cat", k=3)} == {7, 8, 9}


def _query_in_process(args):
    directory, queries = args
    res = Index.load(directory, mmap=True).search(queries, k=5)
    return res.ids.tolist(), res.scores.tolist()


def test_concurrent_readers_agree(tmp_path):
    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(200)]
    from .helpers import write_glove_text

    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((200, 12)).astype(np.float32))
    texts = random_texts(rng, 3000, words, 0.0)
    out = tmp_path / "idx"
    build([write_corpus(tmp_path / "c.parquet", list(range(3000)), texts, pa.int64())], out, config_for(vec),
          progress=False)
    queries = [t or "w1" for t in random_texts(rng, 50, words, 0.0)]
    expected = _query_in_process((out, queries))
    # spawn, not fork: a forked child inherits OpenMP/Arrow thread pools in a locked state.
    with ProcessPoolExecutor(3, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_query_in_process, [(out, queries)] * 6))
    assert all(r == expected for r in results)


# --- atomic, resumable, deterministic ------------------------------------------------------

def _sums(directory):
    m = json.loads((directory / "manifest.json").read_text())
    return [s["sha256"] for s in m["shards"]], m["index"]["sha256"]


def _kept_shards(partial) -> int:
    """How many complete shards the partial directory's journal lists (0 before it exists)."""
    try:
        return len(json.loads((partial / "build-state.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_equals_clean_build(tmp_path):
    rng = np.random.default_rng(9)
    words = [f"w{i}" for i in range(500)]
    from .helpers import write_glove_text

    vec = write_glove_text(tmp_path / "v.txt", words, rng.standard_normal((500, 32)).astype(np.float32))
    n = 40_000  # 20 shards, under auto's exact-search limit: the build is encoding, not training an index
    corpus = write_corpus(tmp_path / "c.parquet", np.arange(n), random_texts(rng, n, words, 0.05), pa.int64())
    args = [sys.executable, "-m", "glovefaiss", "build", str(corpus), "--glove", str(vec),
            "--shard-rows", "2000", "--batch-size", "500", "--threads", "1"]
    subprocess.run(args + ["--out", str(tmp_path / "clean")], check=True, capture_output=True)

    out = tmp_path / "resumed"
    partial = tmp_path / ".resumed.partial"
    proc = subprocess.Popen(args + ["--out", str(out)], stderr=subprocess.DEVNULL)
    # Killed once the journal lists two complete shards, however long they took; the build has
    # 20, so it is still running (checked below), whatever the machine's speed.
    deadline = time.time() + 900  # only against a hang
    while proc.poll() is None and _kept_shards(partial) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the build ended before its journal listed two shards"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads((partial / "build-state.json").read_text())
    assert len(state["shards"]) >= 2
    assert not out.exists()

    subprocess.run(args + ["--out", str(out), "--resume"], check=True, capture_output=True)
    assert _sums(out) == _sums(tmp_path / "clean")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["timings"]["resumed_documents"] == 2000 * len(state["shards"])
    assert manifest["documents"] == n
    assert not partial.exists()


@dataclasses.dataclass(frozen=True)
class _InterruptedCorpus(Corpus):
    """A corpus whose reading is interrupted (Ctrl-C) at batch ``at``."""

    at: int = 2

    def batches(self, batch_size):
        for i, batch in enumerate(super().batches(batch_size)):
            if i == self.at:
                raise KeyboardInterrupt
            yield batch


def test_interrupted_build_keeps_previous_index_then_resumes(tmp_path, tiny_vectors, tiny_corpus):
    out = tmp_path / "idx"
    cfg = config_for(tiny_vectors[0], shard_rows=2, batch_size=2, threads=1)
    build([tiny_corpus[0]], tmp_path / "clean", cfg, progress=False)
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0]), progress=False)
    before = _sums(out)

    plain = open_corpus([tiny_corpus[0]], "id", "text")
    interrupted = _InterruptedCorpus(**{f.name: getattr(plain, f.name) for f in dataclasses.fields(Corpus)})
    with pytest.raises(KeyboardInterrupt):
        build(interrupted, out, cfg, overwrite=True, progress=False)
    assert _sums(out) == before
    assert Index.load(out).hits("the cat sat on the mat", k=1)[0]["id"] == 10
    kept = _kept_shards(tmp_path / ".idx.partial")
    assert 1 <= kept <= 2  # the shard of batch 0, and that of batch 1 if it was written before the interrupt

    resumed = build([tiny_corpus[0]], out, cfg, overwrite=True, resume=True, progress=False)
    assert resumed.manifest.timings["resumed_documents"] == 2 * kept
    assert _sums(out) == _sums(tmp_path / "clean")
    assert not (tmp_path / ".idx.partial").exists()


def test_an_interrupt_says_what_it_kept_and_keeps_nothing_before_the_first_shard(tmp_path, tiny_vectors, tiny_corpus,
                                                                                   caplog):
    cfg = config_for(tiny_vectors[0], shard_rows=2, batch_size=2, threads=1)
    plain = open_corpus([tiny_corpus[0]], "id", "text")
    fields = {f.name: getattr(plain, f.name) for f in dataclasses.fields(Corpus)}
    with caplog.at_level(logging.WARNING, logger="glovefaiss.index.build"), pytest.raises(KeyboardInterrupt):
        build(_InterruptedCorpus(**fields, at=0), tmp_path / "idx", cfg, progress=False)
    assert [r.getMessage() for r in caplog.records] == ["interrupted before any shard was complete; nothing to resume"]
    assert not (tmp_path / ".idx.partial").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="glovefaiss.index.build"), pytest.raises(KeyboardInterrupt):
        build(_InterruptedCorpus(**fields, at=2), tmp_path / "idx", cfg, progress=False)
    kept = _kept_shards(tmp_path / ".idx.partial")
    assert [r.getMessage() for r in caplog.records] == [
        f"interrupted after {kept} complete {'shard' if kept == 1 else 'shards'} ({2 * kept} documents), kept in "
        f"{tmp_path / '.idx.partial'}: "
        "build again with --resume to continue"]


# --- properties -----------------------------------------------------------------------------

_rng = np.random.default_rng(1)
ENCODER = TextEncoder(Tokeniser(), Vocabulary(pa.array(WORDS)), _rng.standard_normal((len(WORDS), 6)).astype(np.float32))
# A trained tower's shape: projection and bias after the mean.
PROJECTED = TextEncoder(Tokeniser(), ENCODER.vocabulary, ENCODER.matrix,
                        _rng.standard_normal((4, 6)).astype(np.float32), _rng.standard_normal(4).astype(np.float32))
any_text = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
                     st.lists(st.sampled_from(WORDS + ["Cat,", "MAT!", "zzz"]), max_size=8).map(" ".join))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(any_text, min_size=1, max_size=300), st.randoms(use_true_random=False), st.booleans())
def test_encoding_invariant_to_batching_and_order(texts, random, projected):
    encoder = PROJECTED if projected else ENCODER
    whole = encoder.encode(pa.array(texts, pa.string()))
    norms = np.linalg.norm(whole, axis=1)
    assert np.all(np.isclose(norms, 1.0, atol=1e-5) | (norms == 0))
    cut = random.randint(0, len(texts))
    parts = [encoder.encode(pa.array(p, pa.string())) for p in (texts[:cut], texts[cut:]) if p]
    np.testing.assert_array_equal(np.vstack(parts), whole)
    order = list(range(len(texts)))
    random.shuffle(order)
    shuffled = encoder.encode(pa.array([texts[i] for i in order], pa.string()))
    np.testing.assert_array_equal(shuffled, whole[order])
    one = random.randrange(len(texts))
    np.testing.assert_array_equal(encoder.encode([texts[one]])[0], whole[one])  # the query path


@pytest.fixture(scope="module")
def property_index(tmp_path_factory):
    from .helpers import write_glove_text

    d = tmp_path_factory.mktemp("prop")
    rng = np.random.default_rng(2)
    vec = write_glove_text(d / "v.txt", WORDS, rng.standard_normal((len(WORDS), 6)).astype(np.float32))
    texts = random_texts(rng, 300, WORDS, 0.2)
    build([write_corpus(d / "c.parquet", list(range(300)), texts, pa.int64())], d / "idx", config_for(vec),
          progress=False)
    return Index.load(d / "idx")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join), st.integers(1, 400))
def test_search_results_sorted_and_bounded(property_index, query, k):
    res = property_index.search(query, k=k)
    assert len(res.scores[0]) == min(k, 300)
    found = res.rows[0] >= 0
    # Documents without a known word never come back: the slots beyond the others stay empty, at the end.
    assert found.sum() == min(k, 300 - property_index.manifest["empty_documents"])
    assert found[: found.sum()].all()
    scores = res.scores[0][found]
    assert np.all(np.diff(scores) <= 1e-6)
    assert np.all((scores >= -1 - 1e-5) & (scores <= 1 + 1e-5))


def test_serial_calls_keep_order_and_raise_failures():
    done = []
    with SerialCalls() as s:
        for i in range(5):
            s.submit(done.append, i)
    assert done == [0, 1, 2, 3, 4]

    def fail(i):
        if i == 1:
            raise OSError("disk full")
        done.append(i)

    done.clear()
    with pytest.raises(OSError, match="disk full"):
        with SerialCalls() as s:
            for i in range(4):
                s.submit(fail, i)
    assert done[0] == 0 and 1 not in done


def test_a_failing_shard_write_stops_write_shards(tmp_path):
    corpus = open_corpus([write_corpus(tmp_path / "c.parquet", list(range(12)), ["the cat"] * 12, pa.int64())],
                         "id", "text")
    bc = Config().replace({"build.shard_rows": 3, "build.batch_size": 2, "build.threads": 2}).build
    seen = []

    def on_shard(entry):  # runs on the writing thread, after the shard's files are complete
        if len(seen) == 1:
            raise OSError("disk full")
        seen.append(entry["file"])

    with pytest.raises(OSError, match="disk full"):
        write_shards(corpus, tmp_path / "out", ENCODER, bc, store_text=False, row_group_rows=3, on_shard=on_shard)
    assert seen == ["shards/part-00000.parquet"]


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from glovefaiss.index.update import index_lock
with index_lock(Path(sys.argv[1]), sys.argv[2]):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.parametrize("holder", ["build", "add", "delete"])
def test_a_second_writer_is_told_who_holds_the_index(tmp_path, tiny_vectors, tiny_corpus, holder):
    import os
    import subprocess
    import sys

    from click.testing import CliRunner

    from glovefaiss.cli import cli

    out = tmp_path / "idx"
    build([tiny_corpus[0]], out, config_for(tiny_vectors[0]), progress=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(out), holder], stdout=subprocess.PIPE, env=env,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        want = f"Error: another {holder} is writing {out} (pid {proc.pid}); wait for it to finish and try again"
        for args in (["build", tiny_corpus[0], "--out", out, "--glove", tiny_vectors[0], "--overwrite"],
                     ["add", out, tiny_corpus[0]], ["delete", out, "10"]):
            result = CliRunner().invoke(cli, [str(a) for a in args])
            assert result.exit_code == 1 and result.stderr.splitlines() == [want]
        assert not (tmp_path / ".idx.partial").exists()
    finally:
        proc.kill()
        proc.wait()
    # The kernel released the lock with the process, whatever file it left.
    result = CliRunner().invoke(cli, ["delete", str(out), "10"])
    assert result.exit_code == 0, result.output


def test_an_encoding_map_closed_early_does_not_wait_for_its_batches():
    import threading

    from glovefaiss.index.writer import _ordered_map

    finished, release = [], threading.Event()

    def batch(i):
        if i:
            release.wait(10)  # the batches after the first are still running at close
        finished.append(i)
        return i

    gen = _ordered_map(batch, range(50), workers=2)
    assert next(gen) == 0
    gen.close()  # as when the consumer stops (an error, Ctrl-C)
    # Returned without waiting for the running batches (waiting is where a second Ctrl-C used to
    # print a traceback); the queued ones are cancelled.
    assert finished == [0]
    release.set()
