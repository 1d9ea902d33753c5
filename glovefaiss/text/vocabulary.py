"""The vocabulary: words ↔ rows of an embedding matrix, for batches (a key table over byte
spans, or Arrow) and for single texts (a dict, or a saved hash table)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .keys import KeyTable, padded
from .packed import PackedStrings, arrow_string_buffers

if TYPE_CHECKING:
    import pyarrow as pa


class Vocabulary:
    """Words ↔ rows of an embedding matrix, with a batch (Arrow) and a single-text lookup.

    ``words``: an Arrow string array, or :class:`PackedStrings` (a saved tower), turned into
    an Arrow array only when a batch lookup needs one.
    """

    def __init__(self, words: pa.Array | pa.ChunkedArray | PackedStrings):
        self._packed = words if isinstance(words, PackedStrings) else None
        self._words = None
        if self._packed is None:
            import pyarrow as pa

            if isinstance(words, pa.ChunkedArray):
                words = words.combine_chunks()
            self._words = words.cast(pa.string()) if pa.types.is_large_string(words.type) else words
        self._dict: dict[str, int] | None = None
        self._hashes: tuple[np.ndarray, np.ndarray] | None = None  # (sorted word hashes, their rows)
        self._seen: dict[str, int] = {}  # words looked up through the hash table, and their rows
        self._keys: KeyTable | None = None
        self._keys_lock = threading.Lock()
        self._dict_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._dict_started = False
        self._hash_store: Callable[[Callable[[], tuple]], tuple] | None = None

    @property
    def words(self) -> pa.Array:
        """The words as an Arrow string array, row order."""
        if self._words is None:
            self._words = self._packed.to_arrow()
        return self._words

    def _word_list(self) -> list[str]:
        return self._packed.take(range(len(self))) if self._packed is not None else self.words.to_pylist()

    def word(self, row: int) -> str:
        return self._packed[row] if self._packed is not None else self._words[row].as_py()

    def __len__(self) -> int:
        return len(self._packed) if self._packed is not None else len(self._words)

    def key_table(self) -> KeyTable:
        """The vocabulary's numpy key table (see :mod:`.lookup`), built on first use."""
        with self._keys_lock:
            if self._keys is None:
                if self._packed is not None:
                    offsets, data = np.asarray(self._packed.offsets, dtype=np.int64), np.asarray(self._packed.data)
                else:
                    offsets, data = arrow_string_buffers(self.words)
                    offsets = offsets - offsets[0]
                self._keys = KeyTable(padded(data), offsets[:-1], np.diff(offsets))
            return self._keys

    def lookup_arrow(self, tokens: pa.Array) -> np.ndarray:
        """Row of each token of an Arrow string array, -1 where unknown.

        Through the numpy key table, not ``pc.index_in``: that rehashes all the words on every
        call (75 ms for 400,000), which made small batches slow and cost a fifth of the lookup.
        """
        offsets, data = arrow_string_buffers(tokens)
        return self.key_table().lookup(padded(data), offsets[:-1] - offsets[0], np.diff(offsets))

    def lookup(self, tokens: list[str]) -> np.ndarray:
        """Row of each token, -1 where unknown (:meth:`rows` as an int64 array)."""
        return np.array(self.rows(tokens), dtype=np.int64)

    def rows(self, tokens: list[str]) -> list[int]:
        """Row of each token as a Python int, -1 where unknown (the single-text path: no numpy call).

        With a saved hash table (see :meth:`hash_table`), a binary search of the token's hash,
        confirmed against the word itself: nothing to build, so a cold query starts at once. Once
        ``DICT_AFTER`` different words have been searched so (a process answering many queries), a
        thread builds a dict of every word (about 0.3 s for 400,000, in chunks that let queries run
        between them), and lookups use it when it is done; without a hash table, that dict is built
        on first use.
        """
        if self._dict is None and self._hashes is not None:
            return self._rows_hashed(tokens)
        if self._dict is None:
            self.build_dict()
        get = self._dict.get
        return [get(t, -1) for t in tokens]

    def build_dict(self) -> None:
        """Build the dict of every word that single-text lookups use (0.3-0.5 s for 400,000 words),
        now rather than after ``DICT_AFTER`` words; a no-op once built."""
        with self._dict_lock:
            if self._dict is not None:
                return
            try:
                words, rows = self.words, {}
                for start in range(0, len(words), DICT_CHUNK):
                    rows.update(zip(words.slice(start, DICT_CHUNK).to_pylist(), range(start, start + DICT_CHUNK)))
                    time.sleep(0)  # the GIL to query threads between chunks: no query waits the whole build
            except BaseException:
                self._dict_started = False  # a later lookup tries again
                raise
            self._dict = rows  # assigned complete: other threads read the memo meanwhile
            self._seen = {}

    def _rows_hashed(self, tokens: list[str]) -> list[int]:
        # Words recur from query to query: each is hashed and searched once (5-10 µs), then
        # remembered. The memo only grows (so a reader in another thread never misses a word it
        # just saw in it); past DICT_AFTER words a thread builds the dict that replaces it.
        seen = self._seen
        new = [t for t in dict.fromkeys(tokens) if t not in seen]
        if not new:
            return [seen[t] for t in tokens]
        found = dict(zip(new, self._search_hashes(new).tolist()))
        out = [found[t] if t in found else seen[t] for t in tokens]
        seen.update(found)
        if len(seen) > DICT_AFTER and not self._dict_started:
            with self._start_lock:  # not the build's lock, which a query thread must never wait on
                start, self._dict_started = not self._dict_started, True
            if start:
                threading.Thread(target=self.build_dict, name="vocabulary-dict", daemon=True).start()
        return out

    @property
    def remembered(self) -> int:
        """Words the single-text lookup remembers from its hash-table searches (until the dict takes over)."""
        return len(self._seen)

    def _search_hashes(self, tokens: list[str]) -> np.ndarray:
        hashes, rows = self._hashes
        wanted = np.fromiter((word_hash(t) for t in tokens), dtype=np.uint64, count=len(tokens))
        pos = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
        out = np.where(hashes[pos] == wanted, rows[pos], -1).astype(np.int64)
        found = out >= 0
        if found.any():
            # Confirm by the word: a 64-bit collision is unlikely, not impossible.
            words = (self._packed.take(out[found].tolist()) if self._packed is not None
                     else self._words.take(out[found]).to_pylist())
            for i, word in zip(np.flatnonzero(found).tolist(), words):
                if word != tokens[i]:
                    out[i] = self._scan_collisions(tokens[i], int(pos[i]))
        return out

    def _scan_collisions(self, token: str, i: int) -> int:
        hashes, rows = self._hashes
        h = hashes[i]
        while i < len(hashes) and hashes[i] == h:
            if self.word(int(rows[i])) == token:
                return int(rows[i])
            i += 1
        return -1

    def hash_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted 64-bit word hashes, row of each): what :meth:`lookup` searches when attached.

        Hashing 400,000 words takes about 0.9 s; see :meth:`keep_hash_table_in`."""
        if self._hashes is not None:
            return self._hashes
        if self._hash_store is not None:
            return self._hash_store(self._compute_hash_table)
        return self._compute_hash_table()

    def keep_hash_table_in(self, store: Callable[[Callable[[], tuple]], tuple]) -> None:
        """Have :meth:`hash_table` ask ``store(make)`` for it, which returns a kept copy or ``make()``'s."""
        self._hash_store = store

    def _compute_hash_table(self) -> tuple[np.ndarray, np.ndarray]:
        hashes = np.fromiter((word_hash(w) for w in self._word_list()), dtype=np.uint64, count=len(self))
        order = np.argsort(hashes, kind="stable")
        return hashes[order], order.astype(np.int32)

    def attach_hash_table(self, hashes: np.ndarray, rows: np.ndarray) -> None:
        self._hashes = (hashes, rows)


# Different words a vocabulary looks up by hash before a thread builds a dict of every word: a
# process that has answered this many words' worth of queries is answering many more.
DICT_AFTER = 5_000
DICT_CHUNK = 20_000  # words added to the dict between two releases of the GIL


def word_hash(word: str) -> int:
    """A stable 64-bit hash of a word (blake2b), the same on every machine and Python."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
