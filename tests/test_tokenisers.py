import re

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glovefaiss.config import TokeniserConfig
from glovefaiss.errors import ConfigError
from glovefaiss.text.tokeniser import Tokeniser

DEFAULT = Tokeniser()
KEEP_PUNCT = Tokeniser(TokeniserConfig(strip_punctuation=False))
ALNUM = Tokeniser(TokeniserConfig(type="alnum", contractions=True))
NUMBERS = Tokeniser(TokeniserConfig(type="alnum", contractions=True, numbers=True))


@pytest.mark.parametrize(
    "tok, text, expected",
    [
        (DEFAULT, "Hello, World!", ["hello", "world"]),
        (DEFAULT, "  multiple\t\nspaces\u00a0here  ", ["multiple", "spaces", "here"]),
        (DEFAULT, "“Curly” quotes—and dashes…", ["curly", "quotes", "and", "dashes"]),
        (DEFAULT, "don't stop", ["don", "t", "stop"]),
        (DEFAULT, "e-mail x_y 3.14", ["e", "mail", "x", "y", "3", "14"]),
        (DEFAULT, "", []),
        (DEFAULT, " ,;. ", []),
        (DEFAULT, "東京。日本", ["東京", "日本"]),
        (Tokeniser(TokeniserConfig(lowercase=False)), "Hello World", ["Hello", "World"]),
        (KEEP_PUNCT, "Hello, World!", ["hello", ",", "world", "!"]),
        (KEEP_PUNCT, "a , , b", ["a", ",", ",", "b"]),
        (KEEP_PUNCT, "x\\y-z]^[w", ["x", "\\", "y", "-", "z", "]", "^", "[", "w"]),
        (Tokeniser(TokeniserConfig(max_len=2)), "one two three", ["one", "two"]),
        (ALNUM, "A man isn't résumé-ready: 3.5%", ["a", "man", "is", "not", "r", "sum", "ready", "3", "5"]),
        (ALNUM, "Can't WON'T don’t", ["ca", "not", "wo", "not", "do", "not"]),
        (ALNUM, "naïve_x", ["na", "ve", "x"]),
        (Tokeniser(TokeniserConfig(type="alnum")), "don't", ["don", "t"]),
        (Tokeniser(TokeniserConfig(type="alnum", lowercase=False, contractions=True)), "DON'T Do", ["DO", "not", "Do"]),
        (NUMBERS, "1,000,000 at 3.5. U.S. 1.2.3 a.5 7,", ["1,000,000", "at", "3.5", "u", "s", "1.2", "3", "a", "5", "7"]),
        (NUMBERS, "x\ufdd0y 1\ufdd02", ["x", "y", "1", "2"]),
        (Tokeniser(TokeniserConfig(numbers=True, strip_punctuation=False)), "3.5, 2", ["3.5", ",", "2"]),
        (Tokeniser(TokeniserConfig(contractions=True)), "We don't.", ["we", "do", "not"]),
    ],
)
def test_rules(tok, text, expected):
    assert tok.tokenise(text) == expected
    assert (tok.tokenise_arrow(pa.array([text])).to_pylist()[0] or []) == expected


def test_lowercase_uses_simple_case_mapping():
    # Python's str.lower gives "i̇" (two code points) and a final sigma; Arrow does not.
    assert DEFAULT.tokenise("İSTANBUL ΣΑΣ") == ["istanbul", "σασ"]


def test_null_text_gives_null_tokens():
    assert DEFAULT.tokenise_arrow(pa.array([None, "a"])).to_pylist() == [None, ["a"]]


def test_large_string_and_chunked_input():
    arr = pa.chunked_array([pa.array(["A b"], pa.large_string()), pa.array(["c"], pa.large_string())])
    assert DEFAULT.tokenise_arrow(arr).to_pylist() == [["a", "b"], ["c"]]


texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


CONFIGS = [TokeniserConfig(), TokeniserConfig(strip_punctuation=False), TokeniserConfig(lowercase=False, max_len=3),
           TokeniserConfig(type="alnum"), TokeniserConfig(type="alnum", contractions=True),
           TokeniserConfig(type="alnum", contractions=True, numbers=True, lowercase=False),
           TokeniserConfig(contractions=True, numbers=True), TokeniserConfig(strip_punctuation=False, numbers=True)]
# Pieces that exercise the contraction and number rules far more often than random code points.
tricky = st.lists(st.sampled_from(["n't", "N'T", "n’t", "n", "'", "t", "3", "0", ".", ",", " ", "\ufdd0", "\ufdd1",
                                   "a", "É", "İ", "ß", "-", "\t", "東", "\u2019"]), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(texts, tricky), min_size=1, max_size=8), st.sampled_from(CONFIGS))
def test_arrow_and_python_paths_agree_on_any_unicode(batch, cfg):
    tok = Tokeniser(cfg)
    arrow = [t or [] for t in tok.tokenise_arrow(pa.array(batch, pa.string())).to_pylist()]
    assert arrow == [tok.tokenise(t) for t in batch]
    for tokens in arrow:
        assert all(t and " " not in t for t in tokens)
        if cfg.type == "alnum":
            assert all(re.fullmatch(r"[A-Za-z0-9]+(?:[.,][0-9][A-Za-z0-9]*)*" if cfg.numbers else r"[A-Za-z0-9]+", t)
                       for t in tokens), tokens


ascii_texts = st.text(alphabet=st.characters(max_codepoint=127), max_size=80)


@settings(max_examples=400, deadline=None)
@given(ascii_texts, st.sampled_from(CONFIGS))
def test_ascii_byte_table_path_gives_the_regex_tokens(text, cfg):
    # tokenise() takes the byte table for ASCII text where the rules allow: every ASCII code point
    # (controls, \x1c-\x1f, punctuation) must split as the regex rules split it.
    tok = Tokeniser(cfg)
    assert tok.tokenise(text) == tok.tokenise_regex(text)


def test_every_ascii_character_splits_as_the_regex_says():
    every = "".join(chr(c) + "a" for c in range(128))
    for cfg in CONFIGS:
        tok = Tokeniser(cfg)
        assert tok.tokenise(every) == tok.tokenise_regex(every), cfg
    assert len(DEFAULT.tokenise(every)) > 1


def test_alnum_matches_the_reference_regex():
    # The STS anchor's tokens: re.findall("[a-z0-9]+") of the lowercased text after "n't" -> " not".
    import random

    rnd = random.Random(5)
    alphabet = "abcXYZ019 .,'-’éİ\n"
    for _ in range(500):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 40)))
        lowered = pa.compute.utf8_lower(pa.scalar(text)).as_py()
        expected = re.findall("[a-z0-9]+", re.sub("n['’]t", " not", lowered))
        assert ALNUM.tokenise(text) == expected


def test_unknown_type_and_bad_combination_are_config_errors():
    with pytest.raises(ConfigError, match="tokeniser.type must be one of word, alnum, got 'regex'"):
        Tokeniser(TokeniserConfig(type="regex"))
    with pytest.raises(ConfigError, match="needs tokeniser.type: word"):
        Tokeniser(TokeniserConfig(type="alnum", strip_punctuation=False))


def test_describe_lists_new_options_only_when_on():
    assert set(Tokeniser().describe()) == {"type", "lowercase", "strip_punctuation", "max_len"}
    assert NUMBERS.describe()["numbers"] is True and NUMBERS.describe()["contractions"] is True
    assert Tokeniser(TokeniserConfig(**NUMBERS.describe())) == NUMBERS


@pytest.mark.parametrize("cfg", [TokeniserConfig(), TokeniserConfig(type="alnum")])
def test_sliced_arrays_with_nulls(cfg):
    tok = Tokeniser(cfg)
    texts = ["x y", None, "A, b", "", "Ünïcode q", None, "last."]
    arr = pa.array(texts)
    for start in range(len(texts)):
        for stop in range(start, len(texts) + 1):
            got = tok.tokenise_arrow(arr.slice(start, stop - start)).to_pylist()
            assert [g or [] for g in got] == [tok.tokenise(t) if t is not None else [] for t in texts[start:stop]]
            assert all(g is None for g, t in zip(got, texts[start:stop]) if t is None)


def span_tokens(tok: Tokeniser, arr) -> list[list[str]] | None:
    spans = tok.token_spans(arr)
    if spans is None:
        return None
    words = spans.strings(np.arange(len(spans.starts))).to_pylist()
    out, i = [], 0
    for c in spans.counts.tolist():
        out.append(words[i:i + c])
        i += c
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(texts, tricky, st.none()), min_size=1, max_size=8), st.sampled_from(CONFIGS),
       st.integers(0, 2))
def test_byte_spans_give_the_single_string_tokens(batch, cfg, cut):
    tok = Tokeniser(cfg)
    # A slice, so that the texts start inside their buffer, as a corpus batch does.
    arr = pa.array(["pad"] * cut + batch, pa.string()).slice(cut)
    got = span_tokens(tok, arr)
    if got is None:  # rules outside the byte table: contractions, numbers, punctuation kept as tokens
        assert cfg.contractions or cfg.numbers or (cfg.type == "word" and not cfg.strip_punctuation)
        return
    # Against the single-string path: tokenise_arrow itself is built on the spans.
    assert got == [tok.tokenise(t) if t is not None else [] for t in batch]


def test_byte_spans_between_glued_texts():
    # Texts that end and start with a letter must not run into one token; empty texts between.
    arr = pa.array(["ab", "", "cd", "e f", "", "", "g", None, "h."])
    assert span_tokens(DEFAULT, arr) == [["ab"], [], ["cd"], ["e", "f"], [], [], ["g"], [], ["h"]]
    assert span_tokens(Tokeniser(TokeniserConfig(max_len=1)), arr) == [["ab"], [], ["cd"], ["e"], [], [], ["g"], [], ["h"]]


def test_non_ascii_symbols_stay_inside_words_as_the_readme_says():
    # ASCII symbols separate; Unicode S* symbols beyond ASCII do not (README, "How text becomes a vector").
    t = Tokeniser(TokeniserConfig())
    assert t.tokenise("Dose 5±2 mg × 3, 20°C; $5 €10 a+b<c") == ["dose", "5±2", "mg", "×", "3", "20°c", "5", "€10", "a", "b", "c"]
    spans = t.tokenise_arrow(pa.array(["Dose 5±2 mg × 3, 20°C; $5 €10 a+b<c"])).to_pylist()
    assert spans == [t.tokenise("Dose 5±2 mg × 3, 20°C; $5 €10 a+b<c")]
