"""One word-level tokeniser with two paths that agree: Arrow arrays (corpora) and single strings (queries).

The rules, in order: optional lowercasing (Unicode simple case mapping, as pyarrow's
``utf8_lower``); optionally ``contractions`` ("n't" becomes " not", so "don't" gives "do not")
and ``numbers`` (a "." or "," between two digits stays inside the token: "3.5", "1,000");
then, for ``type: word``, every separator character (whitespace and punctuation) either becomes
a space (``strip_punctuation``) or, for punctuation, a token of its own, and for ``type: alnum``
every character other than ASCII letters and digits is a separator (tokens ``[a-z0-9]+``, as
SentEval/fse tokenise STS); then split on spaces, then keep the first ``max_len`` tokens. The
separator sets are explicit lists of code points given to both regex engines (RE2 in pyarrow,
``re`` in Python), whose ``\\w``/``\\s`` differ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from ..config import TokeniserConfig
from ..errors import ConfigError
from .keys import padded_buffer

if TYPE_CHECKING:  # annotations only: the Arrow methods import it, single queries need no pyarrow
    import pyarrow as pa

# Separator code points, frozen from Unicode 14.0 (Python 3.11) so that an index built on one
# Python tokenises queries the same on another: whitespace = ASCII controls \t..\r, \x1c..\x1f,
# space, and category Z*; punctuation = printable ASCII that is not alphanumeric, and category P*.
_SPACE_RANGES = (
    (0x0009, 0x000D), (0x001C, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0), (0x1680, 0x1680),
    (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000),
)
_PUNCT_RANGES = (
    (0x0021, 0x002F), (0x003A, 0x0040), (0x005B, 0x0060), (0x007B, 0x007E), (0x00A1, 0x00A1),
    (0x00A7, 0x00A7), (0x00AB, 0x00AB), (0x00B6, 0x00B7), (0x00BB, 0x00BB), (0x00BF, 0x00BF),
    (0x037E, 0x037E), (0x0387, 0x0387), (0x055A, 0x055F), (0x0589, 0x058A), (0x05BE, 0x05BE),
    (0x05C0, 0x05C0), (0x05C3, 0x05C3), (0x05C6, 0x05C6), (0x05F3, 0x05F4), (0x0609, 0x060A),
    (0x060C, 0x060D), (0x061B, 0x061B), (0x061D, 0x061F), (0x066A, 0x066D), (0x06D4, 0x06D4),
    (0x0700, 0x070D), (0x07F7, 0x07F9), (0x0830, 0x083E), (0x085E, 0x085E), (0x0964, 0x0965),
    (0x0970, 0x0970), (0x09FD, 0x09FD), (0x0A76, 0x0A76), (0x0AF0, 0x0AF0), (0x0C77, 0x0C77),
    (0x0C84, 0x0C84), (0x0DF4, 0x0DF4), (0x0E4F, 0x0E4F), (0x0E5A, 0x0E5B), (0x0F04, 0x0F12),
    (0x0F14, 0x0F14), (0x0F3A, 0x0F3D), (0x0F85, 0x0F85), (0x0FD0, 0x0FD4), (0x0FD9, 0x0FDA),
    (0x104A, 0x104F), (0x10FB, 0x10FB), (0x1360, 0x1368), (0x1400, 0x1400), (0x166E, 0x166E),
    (0x169B, 0x169C), (0x16EB, 0x16ED), (0x1735, 0x1736), (0x17D4, 0x17D6), (0x17D8, 0x17DA),
    (0x1800, 0x180A), (0x1944, 0x1945), (0x1A1E, 0x1A1F), (0x1AA0, 0x1AA6), (0x1AA8, 0x1AAD),
    (0x1B5A, 0x1B60), (0x1B7D, 0x1B7E), (0x1BFC, 0x1BFF), (0x1C3B, 0x1C3F), (0x1C7E, 0x1C7F),
    (0x1CC0, 0x1CC7), (0x1CD3, 0x1CD3), (0x2010, 0x2027), (0x2030, 0x2043), (0x2045, 0x2051),
    (0x2053, 0x205E), (0x207D, 0x207E), (0x208D, 0x208E), (0x2308, 0x230B), (0x2329, 0x232A),
    (0x2768, 0x2775), (0x27C5, 0x27C6), (0x27E6, 0x27EF), (0x2983, 0x2998), (0x29D8, 0x29DB),
    (0x29FC, 0x29FD), (0x2CF9, 0x2CFC), (0x2CFE, 0x2CFF), (0x2D70, 0x2D70), (0x2E00, 0x2E2E),
    (0x2E30, 0x2E4F), (0x2E52, 0x2E5D), (0x3001, 0x3003), (0x3008, 0x3011), (0x3014, 0x301F),
    (0x3030, 0x3030), (0x303D, 0x303D), (0x30A0, 0x30A0), (0x30FB, 0x30FB), (0xA4FE, 0xA4FF),
    (0xA60D, 0xA60F), (0xA673, 0xA673), (0xA67E, 0xA67E), (0xA6F2, 0xA6F7), (0xA874, 0xA877),
    (0xA8CE, 0xA8CF), (0xA8F8, 0xA8FA), (0xA8FC, 0xA8FC), (0xA92E, 0xA92F), (0xA95F, 0xA95F),
    (0xA9C1, 0xA9CD), (0xA9DE, 0xA9DF), (0xAA5C, 0xAA5F), (0xAADE, 0xAADF), (0xAAF0, 0xAAF1),
    (0xABEB, 0xABEB), (0xFD3E, 0xFD3F), (0xFE10, 0xFE19), (0xFE30, 0xFE52), (0xFE54, 0xFE61),
    (0xFE63, 0xFE63), (0xFE68, 0xFE68), (0xFE6A, 0xFE6B), (0xFF01, 0xFF03), (0xFF05, 0xFF0A),
    (0xFF0C, 0xFF0F), (0xFF1A, 0xFF1B), (0xFF1F, 0xFF20), (0xFF3B, 0xFF3D), (0xFF3F, 0xFF3F),
    (0xFF5B, 0xFF5B), (0xFF5D, 0xFF5D), (0xFF5F, 0xFF65), (0x10100, 0x10102), (0x1039F, 0x1039F),
    (0x103D0, 0x103D0), (0x1056F, 0x1056F), (0x10857, 0x10857), (0x1091F, 0x1091F), (0x1093F, 0x1093F),
    (0x10A50, 0x10A58), (0x10A7F, 0x10A7F), (0x10AF0, 0x10AF6), (0x10B39, 0x10B3F), (0x10B99, 0x10B9C),
    (0x10EAD, 0x10EAD), (0x10F55, 0x10F59), (0x10F86, 0x10F89), (0x11047, 0x1104D), (0x110BB, 0x110BC),
    (0x110BE, 0x110C1), (0x11140, 0x11143), (0x11174, 0x11175), (0x111C5, 0x111C8), (0x111CD, 0x111CD),
    (0x111DB, 0x111DB), (0x111DD, 0x111DF), (0x11238, 0x1123D), (0x112A9, 0x112A9), (0x1144B, 0x1144F),
    (0x1145A, 0x1145B), (0x1145D, 0x1145D), (0x114C6, 0x114C6), (0x115C1, 0x115D7), (0x11641, 0x11643),
    (0x11660, 0x1166C), (0x116B9, 0x116B9), (0x1173C, 0x1173E), (0x1183B, 0x1183B), (0x11944, 0x11946),
    (0x119E2, 0x119E2), (0x11A3F, 0x11A46), (0x11A9A, 0x11A9C), (0x11A9E, 0x11AA2), (0x11C41, 0x11C45),
    (0x11C70, 0x11C71), (0x11EF7, 0x11EF8), (0x11FFF, 0x11FFF), (0x12470, 0x12474), (0x12FF1, 0x12FF2),
    (0x16A6E, 0x16A6F), (0x16AF5, 0x16AF5), (0x16B37, 0x16B3B), (0x16B44, 0x16B44), (0x16E97, 0x16E9A),
    (0x16FE2, 0x16FE2), (0x1BC9F, 0x1BC9F), (0x1DA87, 0x1DA8B), (0x1E95E, 0x1E95F),
)


def _char_class(ranges: tuple[tuple[int, int], ...]) -> str:
    """A regex character class that RE2 and Python's ``re`` read the same way."""

    def lit(cp: int) -> str:
        c = chr(cp)
        return "\\" + c if c in "\\]^-[" else c

    return "[" + "".join(lit(a) if a == b else f"{lit(a)}-{lit(b)}" for a, b in ranges) + "]"


SPACE_CLASS = _char_class(_SPACE_RANGES)
PUNCT_CLASS = _char_class(_PUNCT_RANGES)
SEPARATOR_CLASS = SPACE_CLASS[:-1] + PUNCT_CLASS[1:]

TYPES = ("word", "alnum")

# Rewrites shared by both paths: (pattern, replacement), RE2 and ``re`` read them the same way.
# "numbers" protects a "." / "," between digits with a Unicode noncharacter while separators are
# replaced, then puts it back; those two code points in the input itself are separators then.
_DOT, _COMMA = "\ufdd0", "\ufdd1"
_CONTRACTION = ("n['\u2019]t", " not")
_CONTRACTION_CASED = ("[nN]['\u2019][tT]", " not")
_MARKERS = ("[" + _DOT + _COMMA + "]", " ")
_PROTECT = (("([0-9])\\.([0-9])", "\\1" + _DOT + "\\2"), ("([0-9]),([0-9])", "\\1" + _COMMA + "\\2"))
_RESTORE = ((_DOT, "."), (_COMMA, ","))


@dataclass(frozen=True)
class Tokeniser:
    """Splits text into word tokens by the rules of a :class:`TokeniserConfig`."""

    config: TokeniserConfig = TokeniserConfig()

    def __post_init__(self):
        c = self.config
        if c.type not in TYPES:
            raise ConfigError(f"tokeniser.type must be one of {', '.join(TYPES)}, got {c.type!r}")
        if c.type == "alnum" and not c.strip_punctuation:
            raise ConfigError("tokeniser.strip_punctuation: false needs tokeniser.type: word "
                              "(type alnum drops every character but ASCII letters and digits)")

    def describe(self) -> dict:
        c = self.config
        out = {
            "type": c.type,
            "lowercase": c.lowercase,
            "strip_punctuation": c.strip_punctuation,
            "max_len": c.max_len,
        }
        # Options added later are listed only when on, so older index directories describe the same.
        for key in ("contractions", "numbers"):
            if getattr(c, key):
                out[key] = True
        return out

    @cached_property
    def _steps(self) -> tuple[tuple[str, str], ...]:
        """Regex rewrites applied in order after lowercasing; tokens are then the text split on spaces."""
        c = self.config
        steps: list[tuple[str, str]] = []
        if c.contractions:
            steps.append(_CONTRACTION if c.lowercase else _CONTRACTION_CASED)
        if c.numbers:
            steps += [_MARKERS, *_PROTECT]
        keep = _DOT + _COMMA if c.numbers else ""
        if c.type == "alnum":
            letters = "a-z0-9" if c.lowercase else "A-Za-z0-9"
            steps.append(("[^" + letters + keep + "]+", " "))
        elif c.strip_punctuation:
            steps.append((SEPARATOR_CLASS + "+", " "))
        else:
            steps += [(SPACE_CLASS + "+", " "), ("(" + PUNCT_CLASS + ")", r" \1 ")]
        return tuple(steps)

    @cached_property
    def _compiled(self) -> tuple[tuple[re.Pattern, str], ...]:
        return tuple((re.compile(p), r) for p, r in self._steps)

    def tokenise(self, text: str) -> list[str]:
        """Tokens of one string (the query path: a few microseconds, no Arrow batch overhead)."""
        table = self._ascii_table
        if table is not None and text.isascii():
            # The byte table (the corpus path's rules) instead of the regex: 4 µs instead of 59 µs
            # for a 50-word query. split() breaks only at bytes the table maps to spaces.
            tokens = text.encode("ascii").translate(table).decode("ascii").split()
            return tokens if self.config.max_len is None else tokens[: self.config.max_len]
        return self.tokenise_regex(text)

    def tokenise_regex(self, text: str) -> list[str]:
        """Tokens of one string by the regex rules (what :meth:`tokenise` gives; the reference its
        byte-table path is tested against)."""
        if self.config.lowercase:
            if text.isascii():
                text = text.lower()  # the same as utf8_lower on ASCII, without importing pyarrow
            else:
                # utf8_lower, not str.lower: Python's full case mapping differs ("İ", final sigma).
                import pyarrow as pa
                import pyarrow.compute as pc

                text = pc.utf8_lower(pa.scalar(_valid_utf8(text), pa.string())).as_py()
        for pattern, repl in self._compiled:
            text = pattern.sub(repl, text)
        if self.config.numbers:
            for marker, char in _RESTORE:
                text = text.replace(marker, char)
        tokens = [t for t in text.split(" ") if t]
        if self.config.max_len is not None:
            tokens = tokens[: self.config.max_len]
        return tokens

    @cached_property
    def _byte_map(self) -> np.ndarray | None:
        """For rules that only lowercase and turn a character class into spaces: the same rules on
        ASCII bytes as a 256-entry table, or None when the rules do more (contractions, numbers,
        punctuation kept as tokens)."""
        c = self.config
        if c.contractions or c.numbers or (c.type == "word" and not c.strip_punctuation):
            return None
        table = np.arange(256, dtype=np.uint8)
        if c.lowercase:
            table[ord("A"):ord("Z") + 1] += 32
        if c.type == "alnum":
            keep = set(range(ord("a"), ord("z") + 1)) | set(range(ord("0"), ord("9") + 1))
            if not c.lowercase:
                keep |= set(range(ord("A"), ord("Z") + 1))
            separators = [b for b in range(128) if table[b] not in keep]  # judged after lowercasing
        else:
            separators = [b for a, z in _SPACE_RANGES + _PUNCT_RANGES for b in range(a, min(z, 127) + 1)]
        table[separators] = 32
        return table

    @cached_property
    def _ascii_table(self) -> bytes | None:
        """:attr:`_byte_map` as a ``bytes.translate`` table (None where it is None)."""
        table = self._byte_map
        return None if table is None else table.tobytes()

    def tokenise_arrow(self, texts: pa.Array | pa.ChunkedArray) -> pa.ListArray:
        """Tokens of every string in an Arrow array, vectorised; null texts give null lists."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        if pa.types.is_large_string(texts.type):
            texts = texts.cast(pa.string())
        spans = self.token_spans(texts)
        if spans is not None:
            return spans.lists()
        s = texts
        if self.config.lowercase:
            s = pc.utf8_lower(s)
        for pattern, repl in self._steps:
            s = pc.replace_substring_regex(s, pattern, repl)
        if self.config.numbers:
            for marker, char in _RESTORE:
                s = pc.replace_substring(s, marker, char)
        if self.config.type == "word" and not self.config.strip_punctuation:
            s = pc.replace_substring_regex(s, "  +", " ")
        s = pc.utf8_trim(s, " ")
        s = pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)
        tokens = pc.split_pattern(s, " ")
        if self.config.max_len is not None:
            tokens = pc.list_slice(tokens, 0, self.config.max_len)
        return tokens

    def token_spans(self, texts: pa.Array | pa.ChunkedArray) -> TokenSpans | None:
        """The tokens of every text as spans of one byte buffer (no Arrow list of strings), for
        rules the byte table covers; None for the others (contractions, numbers, punctuation
        kept as tokens), which go through :meth:`tokenise_arrow`. Same tokens, tested."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if self._byte_map is None:
            return None
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        if pa.types.is_large_string(texts.type):
            texts = texts.cast(pa.string())
        if texts.null_count:
            texts = pc.fill_null(texts, "")
        texts = self._full_rules_where_not_ascii(texts)
        _, offsets_buf, data_buf = texts.buffers()
        offsets = np.frombuffer(offsets_buf, dtype=np.int32)[texts.offset:texts.offset + len(texts) + 1]
        data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
        doc = (offsets - offsets[0]).astype(np.int64)
        size = int(doc[-1])
        buf = padded_buffer(size)
        np.take(self._byte_map, data[offsets[0]:offsets[-1]], out=buf[:size], mode="clip")  # "raise" would copy out
        # A token is a run of non-space bytes inside one text: its edges are where "is a space"
        # flips, plus each text boundary that falls between two non-space bytes.
        word = buf[:size] != 32
        edge = np.zeros(size + 1, dtype=bool)
        if size:
            edge[0], edge[size] = word[0], word[-1]
            np.not_equal(word[1:], word[:-1], out=edge[1:size])
        edges = np.flatnonzero(edge)
        inner = doc[1:-1]
        glued = inner[(inner > 0) & (inner < size)]
        glued = glued[word[glued - 1] & word[glued]]
        if len(glued):
            glued = glued[np.concatenate([[True], glued[1:] != glued[:-1]])]  # empty texts repeat offsets
            edges = np.sort(np.concatenate([edges, glued, glued]))
        starts, ends = edges[0::2], edges[1::2]
        first = np.searchsorted(starts, doc)
        counts = np.diff(first)
        if self.config.max_len is not None and len(starts):
            keep = np.arange(len(starts)) - np.repeat(first[:-1], counts) < self.config.max_len
            starts, ends = starts[keep], ends[keep]
            counts = np.minimum(counts, self.config.max_len)
        return TokenSpans(buf, starts, ends - starts, counts)

    def _full_rules_where_not_ascii(self, texts: pa.StringArray) -> pa.StringArray:
        """Texts with non-ASCII characters rewritten by the regex rules (the byte table then
        leaves them as they are); ASCII texts unchanged, for the byte table."""
        import pyarrow.compute as pc

        non_ascii = pc.invert(pc.string_is_ascii(texts)).fill_null(False)
        if pc.any(non_ascii).as_py():
            # Lowercasing may turn a non-ASCII character into an ASCII one ("İ" -> "i"), so these
            # texts take the full rules; the byte table is then a no-op on them.
            sub = pc.filter(texts, non_ascii)
            if self.config.lowercase:
                sub = pc.utf8_lower(sub)
            for pattern, repl in self._steps:
                sub = pc.replace_substring_regex(sub, pattern, repl)
            texts = pc.replace_with_mask(texts, non_ascii, sub)
        return texts


@dataclass(frozen=True)
class TokenSpans:
    """Tokens as byte spans: token i is ``buf[starts[i]:starts[i] + lengths[i]]``; text j has
    ``counts[j]`` tokens, in order. ``buf`` carries the padding :mod:`.lookup` reads past the end."""

    buf: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray

    def lists(self):
        """The tokens as an Arrow list array, one list per text; null where a text has no token
        (a null, empty or separator-only text), as :meth:`Tokeniser.tokenise_arrow` gives them."""
        import pyarrow as pa

        offsets = np.concatenate([[0], np.cumsum(self.counts)]).astype(np.int32)
        values = self.strings(np.arange(len(self.starts)))
        return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(self.counts == 0))

    def strings(self, which: np.ndarray):
        """The tokens at positions ``which`` as an Arrow string array."""
        import pyarrow as pa

        lengths = self.lengths[which]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        gather = np.repeat(self.starts[which] - (ends - lengths), lengths) + np.arange(total)
        offsets = np.concatenate([[0], ends]).astype(np.int32)
        return pa.StringArray.from_buffers(len(lengths), pa.py_buffer(offsets), pa.py_buffer(self.buf[gather]))


def _valid_utf8(text: str) -> str:
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates cannot enter Arrow
        return text.encode("utf-8", "replace").decode("utf-8")
