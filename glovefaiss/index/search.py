"""Load an index directory once and search it with many queries. Imports neither torch nor gensim."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexDirError, QueryError
from ..tower.encoder import TextEncoder, load_encoder
from . import faiss_ops as faiss_index
from .layout import check_sizes, read_manifest
from .shards import ColumnStore, ShardReader, TextStore, load_id_lookup

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """Top-k per query: ``ids`` (n, k) corpus ids, ``scores`` (n, k) cosine similarities.

    A query with no word in the vocabulary, or a k beyond the corpus size, leaves slots
    empty: id -1 (or None for string ids) and score -inf.
    """

    ids: np.ndarray
    scores: np.ndarray
    rows: np.ndarray  # row numbers in the shards, -1 where empty


class Index:
    """A searchable index: query tower + FAISS index + ids (+ stored texts)."""

    def __init__(self, encoder: TextEncoder, faiss_idx, row_ids,
                 texts=None, manifest: dict | None = None):
        """``row_ids``: corpus id of each row (numpy or Arrow array), None when FAISS labels are the int64 ids themselves.

        ``texts``: an object with ``take(rows, "text")`` (a TextStore), a sequence of strings, or None.
        """
        self.encoder = encoder
        self.faiss = faiss_idx
        self._row_ids = row_ids
        self._texts = texts
        self.manifest = manifest or {}
        self._id_order: tuple[np.ndarray, np.ndarray] | None = None
        self._id_source = None
        self._columns: ColumnStore | None = None  # build --columns: corpus columns returned in every hit

    @classmethod
    def in_memory(cls, encoder: TextEncoder, doc_vectors: np.ndarray, texts: Sequence[str]) -> Index:
        """An exact index over ``doc_vectors`` held in memory; queries go through ``encoder``."""
        idx = faiss_index.make_index(encoder.dim, "Flat", with_ids=False)
        if len(doc_vectors):
            faiss_index.add(idx, doc_vectors)
        return cls(encoder, idx, row_ids=np.arange(len(texts), dtype=np.int64), texts=list(texts))

    def documents(self, query: str, top_k: int = 5) -> list[dict]:
        """``[{"document": text, "score": cosine}]`` for one query, best first (the design's shape)."""
        return [{"document": h["text"], "score": h["score"]} for h in self.hits([query], k=top_k)]

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = False) -> Index:
        """Open an index directory written by ``glovefaiss build``.

        ``mmap=False`` (for a process that answers many queries) reads the FAISS index, the query
        tower and the id lookup into memory, so that no query waits on first-touch page faults;
        ``mmap=True`` (for one-off queries) maps them, which starts in milliseconds. Stored texts
        are memory-mapped either way.
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        check_sizes(directory, manifest)
        try:
            encoder = load_encoder(directory / manifest.query_tower_dir, mmap=mmap)
        except (OSError, KeyError, ValueError) as e:
            raise IndexDirError(f"{directory}: the query tower is missing or damaged ({e}); rebuild the index") from None
        idx = faiss_index.load(directory / manifest.index_file, mmap=mmap)
        faiss_index.set_params(idx, manifest.index.get("params", {}))
        reader = ShardReader(directory, manifest.shards)
        if idx.ntotal != reader.num_rows:
            raise IndexDirError(
                f"{directory}: the index holds {idx.ntotal} vectors but the shards {reader.num_rows} rows; rebuild the index"
            )
        by_row = not manifest.labels_are_ids
        texts = TextStore(directory, manifest.shards) if manifest.store_text else None
        self = cls(encoder, idx, None, texts, manifest)
        self._id_source = reader
        if manifest.corpus.get("columns"):
            self._columns = ColumnStore(directory, manifest.shards, manifest.corpus["columns"])
        if manifest.id_lookup:
            self._id_order = load_id_lookup(directory, mmap=mmap)
        if by_row:
            # String ids: FAISS labels are row numbers; the ids come from the shards (needs pyarrow).
            self._row_ids = reader.column("id").combine_chunks()
        return self

    def __len__(self) -> int:
        return int(self.faiss.ntotal)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        """Query vectors, float32 (n, dim), L2-normalised (zero for a text with no known word)."""
        return self.encoder.encode(texts)

    def search(self, texts: Sequence[str] | str, k: int = 10) -> SearchResult:
        """Top-``k`` documents for each text, best first."""
        if isinstance(texts, str):
            texts = [texts]
        if k <= 0:
            raise QueryError(f"k must be at least 1, got {k}")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise QueryError(f"query {i + 1} is empty; give some text to search for")
        return self.search_vectors(self.encode(texts), k)

    def search_vectors(self, vectors: np.ndarray, k: int = 10) -> SearchResult:
        """Top-``k`` for query vectors already encoded by :meth:`encode`."""
        scores, labels = faiss_index.search(self.faiss, vectors, min(k, max(len(self), 1)))
        empty = ~np.any(vectors != 0, axis=1)
        labels[empty] = -1
        scores[empty] = -np.inf
        if self._row_ids is None:
            ids = labels
            rows = self._rows_of_ids(labels)
        else:
            rows = labels
            ids = np.empty(labels.shape, dtype=object)
            found = labels >= 0
            if isinstance(self._row_ids, np.ndarray):
                ids[found] = self._row_ids[labels[found]]
            else:  # an Arrow array of string ids
                import pyarrow as pa

                ids[found] = self._row_ids.take(pa.array(labels[found])).to_numpy(zero_copy_only=False)
            ids[~found] = None
        return SearchResult(ids=ids, scores=scores, rows=rows)

    def _rows_of_ids(self, labels: np.ndarray) -> np.ndarray:
        """Shard row of each int64 id label (-1 stays -1)."""
        if self._id_order is None:
            if self._id_source is None:
                return labels
            ids = self._id_source.column("id").to_numpy()
            order = np.argsort(ids, kind="stable")
            self._id_order = (ids[order], order)
        sorted_ids, order = self._id_order
        pos = np.minimum(sorted_ids.searchsorted(labels), len(sorted_ids) - 1)
        return np.where(labels >= 0, order[pos], -1)

    def hits(self, texts: Sequence[str] | str, k: int = 10, query_ids: Sequence[Any] | None = None,
             with_text: bool = True) -> list[dict[str, Any]]:
        """Flat list of hits: ``query_id``, ``rank`` (from 1), ``id``, ``score`` and ``text`` when stored."""
        if isinstance(texts, str):
            texts = [texts]
        query_ids = list(query_ids) if query_ids is not None else list(range(1, len(texts) + 1))
        result = self.search(texts, k)
        rows = result.rows.tolist()
        want_text = with_text and self._texts is not None
        text_of = {}
        if want_text:
            wanted = sorted({r for row in rows for r in row if r >= 0})
            if wanted:
                take = getattr(self._texts, "take", None)
                values = take(wanted, "text") if take else [self._texts[r] for r in wanted]
                text_of = dict(zip(wanted, values))
        # Python lists once, not numpy scalars per hit: a query's ten hits cost microseconds each otherwise.
        ids, scores = result.ids.tolist(), result.scores.tolist()
        out = []
        for qid, q_rows, q_ids, q_scores in zip(query_ids, rows, ids, scores):
            for rank, (row, ident, score) in enumerate(zip(q_rows, q_ids, q_scores), 1):
                if row < 0:
                    continue
                hit = {"query_id": qid, "rank": rank, "id": ident, "score": score}
                if want_text:
                    hit["text"] = text_of[row]
                out.append(hit)
        self._attach_columns(out, [r for q_rows in rows for r in q_rows if r >= 0])
        return out

    def _attach_columns(self, hits: list[dict[str, Any]], rows: list[int]) -> None:
        """The stored corpus columns (``build --columns``) of each hit's row, added to the hit."""
        if self._columns is not None and hits:
            for hit, values in zip(hits, self._columns.take(rows)):
                hit.update(values)
