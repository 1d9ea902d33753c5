"""Vocabulary rows of tokens given as byte spans of one buffer: a numpy hash table built once.

The Arrow route (split into a list of strings, then ``pc.index_in`` against the vocabulary)
rebuilds a hash of all 400,000 words on every call (about 75 ms) and then hashes every token as
a string. Here each token up to 16 bytes becomes a key of two 64-bit words read straight from
the buffer, plus its length; a table of the vocabulary's keys, built once, is probed with
vectorised linear probing. Tokens longer than 16 bytes (rare) go through a dict.

Keys are read as little-endian 64-bit words (two aligned reads and shifts), the same way for
words and for tokens, so they agree wherever a string sits in its buffer and on any machine.
"""

from __future__ import annotations

import numpy as np

KEY_BYTES = 16
_MUL0 = np.uint64(0x9E3779B97F4A7C15)
_MUL1 = np.uint64(0xC2B2AE3D27D4EB4F)
_MUL2 = np.uint64(0x165667B19E3779F9)
# _MASKS[n]: the low n bytes of a 64-bit word (n = 0..8).
_MASKS = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [2**64 - 1], dtype=np.uint64)


def padded_buffer(n: int) -> np.ndarray:
    """Zero bytes for ``n`` bytes of strings plus what :func:`span_keys` reads past the last one
    (to a multiple of 8, two words to spare)."""
    return np.zeros((n + 8 * 3) // 8 * 8, dtype=np.uint8)


def padded(data: np.ndarray) -> np.ndarray:
    """``data`` in a :func:`padded_buffer`."""
    out = padded_buffer(len(data))
    out[: len(data)] = data
    return out


def _word_at(words: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The 8 bytes at byte offsets ``pos`` as little-endian uint64, from two aligned reads."""
    shift = ((pos & 7) * 8).astype(np.uint64)
    lo = np.take(words, pos >> 3)
    hi = np.take(words, (pos >> 3) + 1)
    # Where the shift is 0 the second term would shift by 64 bits; np.where discards it.
    return np.where(shift == 0, lo, (lo >> shift) | (hi << (np.uint64(64) - shift)))


def span_keys(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first 8 bytes, next 8 bytes) of each span as uint64, zeroed past the span's end.

    ``buf`` comes from :func:`padded`. Bytes are read as little-endian words on every machine,
    so a word's key and a token's key agree wherever the two sit in their buffers.
    """
    words = buf.view("<u8")
    k0 = _word_at(words, starts) & np.take(_MASKS, np.minimum(lengths, 8))
    k1 = np.zeros(len(starts), dtype=np.uint64)
    long = np.flatnonzero(lengths > 8)
    if len(long):
        k1[long] = _word_at(words, starts[long] + 8) & np.take(_MASKS, np.minimum(lengths[long] - 8, 8))
    return k0, k1


def _slots(k0: np.ndarray, k1: np.ndarray, lengths: np.ndarray, bits: int) -> np.ndarray:
    h = k0 * _MUL0 ^ k1 * _MUL1 ^ lengths.astype(np.uint64) * _MUL2
    return (h >> np.uint64(64 - bits)).astype(np.int64)


class KeyTable:
    """Open-addressing table from word keys (two 64-bit words and a length) to vocabulary rows.

    The table holds only rows (int32, -1 empty: 4 MB for 400,000 words, so probes mostly hit
    the cache); a probe compares the token's key with the key of the row it finds.
    """

    def __init__(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
        """The vocabulary as spans of ``buf`` (row i = span i), ``buf`` padded as for :func:`span_keys`."""
        n = len(starts)
        self.bits = max(4, int(np.ceil(np.log2(max(2 * n, 2)))))  # load factor at most 1/2
        size = 1 << self.bits
        self.table = np.full(size, -1, dtype=np.int32)
        self.k0, self.k1 = span_keys(buf, starts, np.minimum(lengths, KEY_BYTES))
        # Lengths above KEY_BYTES never match a key (those words are in self.long); uint8 keeps the
        # array small for the cache, so longer ones are stored as KEY_BYTES + 1.
        self.length = np.minimum(lengths, KEY_BYTES + 1).astype(np.uint8)
        home = _slots(self.k0, self.k1, self.length, self.bits)
        claim = np.full(size, n, dtype=np.int64)
        # Linear probing, all words at once, round by round in row order: of the words that want
        # one free slot, the lowest row takes it; a word meeting its own key is a repeat (the
        # first row keeps it, as a dict or pc.index_in would) and is dropped.
        pending = np.flatnonzero(self.length <= KEY_BYTES)
        step = 0
        while len(pending):
            slot = (home[pending] + step) & (size - 1)
            held = self.table[slot].astype(np.int64)
            safe = np.maximum(held, 0)
            repeat = (held >= 0) & (self.k0[safe] == self.k0[pending]) & (self.k1[safe] == self.k1[pending]) \
                & (self.length[safe] == self.length[pending])
            free = held < 0
            np.minimum.at(claim, slot[free], pending[free])
            won = np.zeros(len(pending), dtype=bool)
            won[free] = claim[slot[free]] == pending[free]
            self.table[slot[won]] = pending[won]
            claim[slot[free]] = n
            pending = pending[~won & ~repeat]
            step += 1
        self.long: dict[bytes, int] = {}
        for i in np.flatnonzero(self.length > KEY_BYTES).tolist():
            self.long.setdefault(buf[starts[i]:starts[i] + lengths[i]].tobytes(), i)

    def lookup(self, buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Row of each span of ``buf`` (from :func:`padded`), -1 where the vocabulary lacks it."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if not len(self.k0):
            return np.full(len(starts), -1, dtype=np.int64)
        k0, k1 = span_keys(buf, starts, lengths)
        slot = _slots(k0, k1, lengths, self.bits)
        # The first probe, for every token at once (most end here), then the few that go on.
        row = self._probe(slot, k0, k1, lengths)
        out = np.where(row >= 0, row, -1)
        pending = np.flatnonzero(row == -2)
        mask = (1 << self.bits) - 1
        while len(pending):
            slot[pending] = (slot[pending] + 1) & mask
            row = self._probe(slot[pending], k0[pending], k1[pending], lengths[pending])
            out[pending] = np.where(row >= 0, row, -1)
            pending = pending[row == -2]
        if self.long:
            for i in np.flatnonzero(lengths > KEY_BYTES).tolist():
                out[i] = self.long.get(buf[starts[i]:starts[i] + lengths[i]].tobytes(), -1)
        return out

    def _probe(self, slot, k0, k1, lengths) -> np.ndarray:
        """Per key: its row where the slot holds it, -1 where the slot is empty, -2 to probe on."""
        row = np.take(self.table, slot).astype(np.int64)
        safe = np.maximum(row, 0)
        same = (np.take(self.k0, safe) == k0) & (np.take(self.length, safe) == lengths)
        # Second words differ only between words longer than 8 bytes (shorter ones have 0 there).
        long = np.flatnonzero(same & (lengths > 8))
        same[long] = np.take(self.k1, safe[long]) == k1[long]
        return np.where(row < 0, -1, np.where(same, row, -2))
