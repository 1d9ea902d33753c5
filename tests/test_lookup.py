"""The numpy key table gives the rows pc.index_in gives, on any strings."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glovefaiss.text.keys import KeyTable, padded
from glovefaiss.text.packed import PackedStrings, arrow_string_buffers
from glovefaiss.text.vocabulary import Vocabulary

# Short and long words, shared prefixes, NUL bytes, non-ASCII: what could confuse 16-byte keys.
word = st.one_of(
    st.text(alphabet="abc\x00é猫", min_size=0, max_size=20),
    st.sampled_from(["a", "a\x00", "ab", "abcdefgh", "abcdefghi", "abcdefghabcdefgh", "abcdefghabcdefgha",
                     "internationalisation", "internationalisations"]),
)


def table_of(words: list[str]) -> KeyTable:
    offsets, data = arrow_string_buffers(pa.array(words, pa.string()))
    offsets = offsets - offsets[0]
    return KeyTable(padded(data), offsets[:-1], np.diff(offsets))


def lookup(table: KeyTable, tokens: pa.Array) -> np.ndarray:
    offsets, data = arrow_string_buffers(tokens)
    return table.lookup(padded(data), offsets[:-1] - offsets[0], np.diff(offsets))


@settings(max_examples=200, deadline=None)
@given(st.lists(word, max_size=40), st.lists(word, max_size=60), st.integers(0, 3))
def test_key_table_equals_index_in(vocab, tokens, cut):
    words = pa.array(vocab, pa.string())
    # A slice: the token buffer starts mid-way, as a batch of a larger array does.
    arr = pa.array(["x"] * cut + tokens, pa.string()).slice(cut)
    want = pc.index_in(arr, value_set=words).fill_null(-1).to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(lookup(table_of(vocab), arr), want)


def test_first_row_wins_and_misses():
    table = table_of(["the", "cat", "the", "", "cats", "c" * 30, "c" * 30])
    got = lookup(table, pa.array(["the", "cat", "cats", "ca", "", "c" * 30, "c" * 31, "dog"]))
    assert got.tolist() == [0, 1, 4, -1, 3, 5, -1, -1]


def test_vocabulary_batch_lookup_through_the_table():
    rng = np.random.default_rng(3)
    vocab = [f"w{i}" for i in range(5000)]
    words = pa.array(vocab)
    tokens = pa.array([f"w{i}" for i in rng.integers(0, 6000, 50_007)])
    want = pc.index_in(tokens, value_set=words).fill_null(-1).to_numpy(zero_copy_only=False)
    for v in (Vocabulary(words), Vocabulary(PackedStrings.from_arrow(words))):
        np.testing.assert_array_equal(v.lookup_arrow(tokens), want)


@settings(max_examples=100, deadline=None)
@given(st.lists(word, min_size=1, max_size=30, unique=True), st.lists(st.lists(word, max_size=12), max_size=6),
       st.integers(1, 8))
def test_hashed_lookup_remembers_words_and_stays_exact(vocab, queries, limit):
    # The single-text path (hash table plus its memo of words seen, then the dict once the memo
    # would pass its limit) against a plain dict, query after query.
    import glovefaiss.text.vocabulary as vocabulary

    v = Vocabulary(pa.array(vocab, pa.string()))
    v.attach_hash_table(*v.hash_table())
    rows = {w: i for i, w in enumerate(vocab)}
    old, vocabulary.DICT_AFTER = vocabulary.DICT_AFTER, limit
    seen: set = set()
    try:
        for tokens in queries + queries:  # each query twice: the second time from the memo
            np.testing.assert_array_equal(v.lookup(tokens), [rows.get(t, -1) for t in tokens])
            seen |= set(tokens)
            if len(seen) > limit:  # past the limit a thread builds the dict, which then answers
                assert v._dict_started
        if v._dict_started:
            v.build_dict()  # waits for the thread's build (same lock), or does it
            assert v._dict == rows
            for tokens in queries:
                np.testing.assert_array_equal(v.lookup(tokens), [rows.get(t, -1) for t in tokens])
        else:
            assert v._dict is None and len(seen) <= limit
    finally:
        vocabulary.DICT_AFTER = old


def test_warm_builds_the_word_dict_and_lookups_stay_exact(tmp_path, tiny_vectors, tiny_corpus):
    # What `glovefaiss serve` does at load: single-text lookups from the dict at once, same rows.
    from glovefaiss.index.build import build
    from glovefaiss.index.search import Index

    from .helpers import config_for

    build([tiny_corpus[0]], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    cold, warm = Index.load(tmp_path / "idx"), Index.load(tmp_path / "idx")
    assert warm.warm() is warm and warm.encoder.vocabulary._dict is not None
    assert cold.encoder.vocabulary._dict is None
    for text in ("the cat sat", "dog unknownword the", "nothing known here qqq"):
        np.testing.assert_array_equal(warm.encode(text), cold.encode(text))
        assert warm.hits(text, k=3) == cold.hits(text, k=3)


@pytest.mark.parametrize("scheme", ["rows", "offset", "sparse", "shuffled"])
def test_warm_maps_hits_to_rows_as_a_cold_index_does(tmp_path, tiny_vectors, tiny_corpus, scheme):
    # Ids that are the rows plus a constant, in row order, are mapped to rows by subtraction once
    # warm; any other integer ids by the sorted-id search. Either way the same hits.
    from glovefaiss.index.build import build
    from glovefaiss.index.search import Index

    from .helpers import config_for, write_corpus

    texts = tiny_corpus[2]
    n = len(texts)
    ids = {"rows": list(range(n)), "offset": list(range(1000, 1000 + n)), "sparse": [3 * i + 1 for i in range(n)],
           "shuffled": list(np.random.default_rng(2).permutation(n))}[scheme]
    corpus = write_corpus(tmp_path / "c.parquet", [int(i) for i in ids], texts)
    build([corpus], tmp_path / "idx", config_for(tiny_vectors[0]), progress=False)
    cold, warm = Index.load(tmp_path / "idx"), Index.load(tmp_path / "idx").warm()
    assert warm._id_offset == {"rows": 0, "offset": 1000, "sparse": None, "shuffled": None}[scheme]
    for text in texts[:4] + ["the cat sat"]:
        assert warm.hits(text, k=3) == cold.hits(text, k=3)
    assert warm.hits(texts[:4], k=3) == cold.hits(texts[:4], k=3)
