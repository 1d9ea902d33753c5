import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glovefaiss.config import TokeniserConfig
from glovefaiss.tokenisers import Tokeniser

DEFAULT = Tokeniser()
KEEP_PUNCT = Tokeniser(TokeniserConfig(strip_punctuation=False))


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


@settings(max_examples=300, deadline=None)
@given(st.lists(texts, min_size=1, max_size=8),
       st.sampled_from([TokeniserConfig(), TokeniserConfig(strip_punctuation=False),
                        TokeniserConfig(lowercase=False, max_len=3)]))
def test_arrow_and_python_paths_agree_on_any_unicode(batch, cfg):
    tok = Tokeniser(cfg)
    arrow = [t or [] for t in tok.tokenise_arrow(pa.array(batch, pa.string())).to_pylist()]
    assert arrow == [tok.tokenise(t) for t in batch]
    for tokens in arrow:
        assert all(t and " " not in t for t in tokens)
