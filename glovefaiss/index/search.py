"""Load an index directory once and search it with many queries. Imports neither torch nor gensim."""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..errors import IndexDirError, QueryError
from ..io.rows import read_queries
from ..tower.encoder import TextEncoder, load_encoder
from . import faiss_ops as faiss_index
from . import faiss_warm
from .hits import HitsWriter, format_for
from .info import manifest_value
from .layout import check_sizes, read_manifest
from .shards import ColumnStore, ShardReader, TextStore, iter_shard_vectors, load_id_lookup

logger = logging.getLogger(__name__)

# Families whose search scores are exact inner products with the stored vectors (flat storage, or a
# flat refinement): a zero vector scores exactly 0 in them.
EXACT_SCORES = ("flat", "hnsw", "ivf", "ivf-fastscan")


@dataclass
class SearchResult:
    """Top-k per query: ``ids`` (n, k) corpus ids, ``scores`` (n, k) cosine similarities.

    A query with no word in the vocabulary, or a k beyond the corpus size, leaves slots
    empty: id -1 (or None for string ids) and score -inf.
    """

    ids: np.ndarray
    scores: np.ndarray
    rows: np.ndarray  # row numbers in the shards, -1 where empty


@dataclass
class QueryRun:
    """What :meth:`Index.search_file` (or :meth:`Index.write_hits`) wrote.

    ``empty``: ids of the queries skipped for having no text (blank lines of a text file by line
    number); ``unanswered``: ids of the queries with no word in the vocabulary (no hits);
    ``missed``: ids of queries with a known word that the index found no hit for (an index key
    whose lists near them hold no vector); ``repeated``: ids given to more than one query (their
    hits share a query_id).
    """

    queries: int
    hits: int
    format: str
    output: Path | None
    empty: list = field(default_factory=list)
    unanswered: list = field(default_factory=list)
    missed: list = field(default_factory=list)
    repeated: list = field(default_factory=list)


def split_no_hits(encoder: TextEncoder, no_hits: list[tuple[Any, str]]) -> tuple[list, list]:
    """Of the (query id, text) pairs that got no hit: (ids of those with no known word, ids of the others)."""
    if not no_hits:
        return [], []
    known = encoder.encode([t for _, t in no_hits]).any(axis=1).tolist()
    return [q for (q, _), w in zip(no_hits, known) if not w], [q for (q, _), w in zip(no_hits, known) if w]


def repeated_ids(ids: Sequence) -> list:
    """The ids that occur more than once, in order of first occurrence."""
    seen: dict = {}
    for q in ids:
        seen[q] = seen.get(q, 0) + 1
    return [q for q, c in seen.items() if c > 1]


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
        self._id_rows: dict | None = None
        self._vectors: np.ndarray | None = None  # document vectors of an in-memory index
        self._empty: np.ndarray | None = None  # sorted rows of documents with a zero vector
        self.directory: Path | None = None
        self._columns: ColumnStore | None = None  # build --columns: corpus columns returned in every hit
        self._by_length: list[tuple[int | None, Any]] = []  # (most tokens, SearchParameters) per query length
        self._single = faiss_idx  # what one query at a time searches (see warm)
        self._id_offset: int | None = None  # ids are rows + this, in row order (see warm)
        self._mapped = False

    @classmethod
    def in_memory(cls, encoder: TextEncoder, doc_vectors: np.ndarray, texts: Sequence[str]) -> Index:
        """An exact index over ``doc_vectors`` held in memory; queries go through ``encoder``."""
        idx = faiss_index.make_index(encoder.dim, "Flat", with_ids=False)
        if len(doc_vectors):
            faiss_index.add(idx, doc_vectors)
        self = cls(encoder, idx, row_ids=np.arange(len(texts), dtype=np.int64), texts=list(texts))
        self._vectors = np.asarray(doc_vectors, np.float32).reshape(len(texts), encoder.dim)
        self._empty = np.flatnonzero(~np.any(self._vectors != 0, axis=1))
        return self

    def documents(self, query: str, top_k: int = 5) -> list[dict]:
        """``[{"document": text, "score": cosine}]`` for one query, best first (the design's shape)."""
        return [{"document": h["text"], "score": h["score"]} for h in self.hits([query], k=top_k)]

    @classmethod
    def load(cls, directory: str | Path, *, mmap: bool = False) -> Index:
        """Open an index directory written by ``glovefaiss build``.

        ``mmap=False`` (for a process that answers many queries) reads the FAISS index, the query
        tower and the id lookup into memory, so that no query waits on first-touch page faults;
        ``mmap=True`` (for one-off queries) maps them, which starts in milliseconds. Stored texts
        are memory-mapped either way; with ``mmap=False`` their pages are mapped at load
        (MAP_POPULATE: 50 ms for 200 MB in the page cache).
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
        texts = TextStore(directory, manifest.shards, populate=not mmap) if manifest.store_text else None
        self = cls(encoder, idx, None, texts, manifest)
        self.directory, self._mapped = directory, mmap
        self.set_params_by_length(manifest.index.get("params_by_length") or [])
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

    def warm(self) -> Index:
        """Ready for many queries (a server), at a cost of about a second at 1M documents.

        The word lookup of single texts is built now, not after thousands of distinct words (10-40 µs
        a query until then). Single queries get their own view of a fast-scan index, and the
        index's large arrays huge pages when it was read into memory (see :mod:`.faiss_warm`):
        8-10% and 4-6% of a query. A single query's top k may then differ from the same text's in
        a batch where candidates tie in the 4-bit scan.
        """
        self.encoder.vocabulary.build_dict()
        if not self._mapped:
            faiss_warm.advise_huge_pages(self.faiss)
        self._single = faiss_warm.single_query_view(self.faiss)
        if self._id_order is not None and len(self._id_order[0]):
            # Integer ids that are the row numbers plus a constant, in row order (0..n-1 most often):
            # a hit's row is its id minus that, not a binary search of the sorted ids (20 µs a query).
            sorted_ids, order = self._id_order
            n = len(sorted_ids)
            if int(sorted_ids[-1]) - int(sorted_ids[0]) == n - 1 and np.array_equal(order, np.arange(n)):
                self._id_offset = int(sorted_ids[0])
        return self

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        """Query vectors, float32 (n, dim), L2-normalised (zero for a text with no known word)."""
        return self.encoder.encode(texts)

    def set_params_by_length(self, params_by_length: list[dict]) -> None:
        """Search each query with the setting of its token count: ``[{"max_tokens", "params"}]``, counts
        ascending, the last ``max_tokens`` None for any longer (the manifest's ``index.params_by_length``).

        [] searches every query with the index's own setting. Each setting is a FAISS SearchParameters
        object given to each search call, so threads searching queries of different lengths do not race.
        """
        self._by_length = [(e["max_tokens"], faiss_index.search_parameters(self.faiss, e["params"]))
                           for e in params_by_length]

    def search(self, texts: Sequence[str] | str, k: int = 10) -> SearchResult:
        """Top-``k`` documents for each text, best first."""
        if isinstance(texts, str):
            texts = [texts]
        if k <= 0:
            raise QueryError(f"k must be at least 1, got {k}")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise QueryError(f"query {i + 1} is empty; give some text to search for")
        if not self._by_length:
            return self.search_vectors(self.encode(texts), k)
        vectors, tokens = self.encoder.encode_counted(texts)
        return self.search_vectors(vectors, k, tokens=tokens)

    def search_vectors(self, vectors: np.ndarray, k: int = 10, *, tokens: np.ndarray | None = None) -> SearchResult:
        """Top-``k`` for query vectors already encoded by :meth:`encode`.

        ``tokens``: each query's token count, for the setting of its length (see
        :meth:`set_params_by_length`); None: the index's own setting for every query.
        Documents without a known word (zero vectors, score 0 to every query) are never returned.
        """
        n = len(self)
        width = min(k, max(n, 1))
        zero = ~vectors.any(axis=1)
        if self._empty is None and self._figure("empty_documents", 0) and self._figure("index.type") in EXACT_SCORES:
            # Stored vectors exact: an empty document scores exactly 0, so a top k without a 0 holds
            # none, and the shards (pyarrow) are read only when one does.
            scores, labels, rows = self._search_rows(vectors, width, tokens)
            if not (scores[~zero] == 0).any():
                return self._result(scores, labels, rows, zero)
        empty = self._empty_rows()
        depth = min(k + min(len(empty), k), max(n, 1))
        scores, labels, rows = self._search_rows(vectors, depth, tokens)
        if len(empty):
            keep = ~_sorted_contains(empty, rows)
            # Deeper only for the queries that lost more than min(#empty, k) slots: then the first
            # depth rows held more empty documents than expected, and k + #empty rows always suffice.
            short = np.flatnonzero((keep.sum(axis=1) < width) & (depth < n) & ~zero)
            if len(short):
                full = min(k + len(empty), n)
                s2, l2, r2 = self._search_rows(vectors[short], full, None if tokens is None else tokens[short])
                pad = full - depth
                scores, labels, rows = (np.pad(a, ((0, 0), (0, pad)), constant_values=c)
                                        for a, c in ((scores, -np.inf), (labels, -1), (rows, -1)))
                scores[short], labels[short], rows[short] = s2, l2, r2
                keep = ~_sorted_contains(empty, rows)
            keep &= rows >= 0
            order = np.argsort(~keep, axis=1, kind="stable")[:, :width]
            scores, labels, rows = (np.take_along_axis(a, order, axis=1) for a in (scores, labels, rows))
            dropped = ~np.take_along_axis(keep, order, axis=1)
            scores[dropped], labels[dropped], rows[dropped] = -np.inf, -1, -1
        return self._result(scores, labels, rows, zero)

    def _result(self, scores: np.ndarray, labels: np.ndarray, rows: np.ndarray, zero: np.ndarray) -> SearchResult:
        """Empty slots for the queries with no known word; corpus ids for the rows."""
        if zero.any():
            scores[zero], labels[zero], rows[zero] = -np.inf, -1, -1
        if self._row_ids is None:
            return SearchResult(ids=labels, scores=scores, rows=rows)
        ids = np.empty(rows.shape, dtype=object)
        found = rows >= 0
        if isinstance(self._row_ids, np.ndarray):
            ids[found] = self._row_ids[rows[found]]
        else:  # an Arrow array of string ids
            import pyarrow as pa

            ids[found] = self._row_ids.take(pa.array(rows[found])).to_numpy(zero_copy_only=False)
        ids[~found] = None
        return SearchResult(ids=ids, scores=scores, rows=rows)

    def _search_rows(self, vectors: np.ndarray, depth: int,
                     tokens: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """FAISS's (scores, labels) and the shard row of each label; each query with the setting of its
        length when ``tokens`` are given, grouped by setting and put back in query order."""
        by_length = self._by_length  # read once: set_params_by_length may replace it meanwhile
        bounds = [most for most, _ in by_length]
        if len(vectors) == 1:
            # Its setting by Python arithmetic: the numpy calls that group a batch cost 40 µs here.
            g = -1 if tokens is None or not by_length else _length_group_of(bounds, int(tokens[0]))
            scores, labels = faiss_index.search(self._single, vectors, depth, by_length[g][1] if g >= 0 else None)
            return scores, labels, labels if self._row_ids is not None else self._rows_of_ids(labels)
        group = None if tokens is None or not by_length else _length_group(bounds, np.asarray(tokens))
        if group is None or (group == group[0]).all():  # one setting: no gathering
            params = by_length[group[0]][1] if group is not None and len(group) and group[0] >= 0 else None
            scores, labels = faiss_index.search(self.faiss, vectors, depth, params)
        else:
            scores = np.empty((len(vectors), depth), np.float32)
            labels = np.empty((len(vectors), depth), np.int64)
            for g in np.unique(group).tolist():
                at = np.flatnonzero(group == g)
                params = by_length[g][1] if g >= 0 else None
                scores[at], labels[at] = faiss_index.search(self.faiss, vectors[at], depth, params)
        rows = labels if self._row_ids is not None else self._rows_of_ids(labels)
        return scores, labels, rows

    def _empty_rows(self) -> np.ndarray:
        """Sorted rows whose stored vector is zero, found once, only when the manifest counts some."""
        if self._empty is None:
            # Assigned once, complete: threads of the service may search while it is computed.
            empty = np.zeros(0, np.int64)
            if self._figure("empty_documents", 0) and self._id_source is not None:
                found, start = [], 0
                for _, vectors in iter_shard_vectors(self._id_source):
                    found.append(start + np.flatnonzero(~np.any(vectors != 0, axis=1)))
                    start += len(vectors)
                empty = np.concatenate(found).astype(np.int64)
                logger.debug("%d documents without a known word are left out of every search", len(empty))
            self._empty = empty
        return self._empty

    def _figure(self, path: str, default: Any = None) -> Any:
        """A manifest value by dotted path: the one place Index reads its manifest after loading."""
        return manifest_value(self.manifest, path, default)

    def _rows_of_ids(self, labels: np.ndarray) -> np.ndarray:
        """Shard row of each int64 id label (-1 stays -1)."""
        if self._id_order is None:
            if self._id_source is None:
                return labels
            ids = self._id_source.column("id").to_numpy()
            order = np.argsort(ids, kind="stable")
            self._id_order = (ids[order], order)
        if self._id_offset == 0:
            return labels  # ids 0..n-1 are the rows
        if self._id_offset is not None:
            return np.where(labels >= 0, labels - self._id_offset, -1)
        sorted_ids, order = self._id_order
        pos = np.minimum(sorted_ids.searchsorted(labels), len(sorted_ids) - 1)
        return np.where(labels >= 0, order[pos], -1)

    def hits(self, texts: Sequence[str] | str, k: int = 10, query_ids: Sequence[Any] | None = None,
             with_text: bool = True) -> list[dict[str, Any]]:
        """Flat list of hits: ``query_id``, ``rank`` (from 1), ``id``, ``score`` and ``text`` when stored."""
        if isinstance(texts, str):
            texts = [texts]
        return self.hits_of(self.search(texts, k), query_ids, with_text)

    def hits_of(self, result: SearchResult, query_ids: Sequence[Any] | None = None,
                with_text: bool = True) -> list[dict[str, Any]]:
        """The hits of a :class:`SearchResult` (of :meth:`search` or :meth:`like`), empty slots left out."""
        rows = result.rows.tolist()
        query_ids = list(query_ids) if query_ids is not None else list(range(1, len(rows) + 1))
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
        self._attach_columns(out, rows)
        return out

    def _attach_columns(self, hits: list[dict[str, Any]], rows: list[list[int]]) -> None:
        """The stored corpus columns (``build --columns``) of each hit's row (``rows``: per query, -1 for
        an empty slot), added to the hit."""
        if self._columns is not None and hits:
            for hit, values in zip(hits, self._columns.take([r for q_rows in rows for r in q_rows if r >= 0])):
                hit.update(values)

    def like(self, ids: Sequence[Any], k: int = 10) -> SearchResult:
        """The ``k`` documents nearest to each stored document's own vector, that document left out.

        ``ids`` are corpus ids (digit strings are taken for an index of integer ids); an unknown id
        raises :class:`QueryError` naming it. A document without a known word gets no hits.
        """
        if k <= 0:
            raise QueryError(f"k must be at least 1, got {k}")
        rows = self.rows_of(ids)
        res = self.search_vectors(self._document_vectors(rows), k + 1)
        # Drop the document itself; where the search missed it (approximate indexes), the last hit.
        own = res.rows == rows[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), res.rows.shape[1] - 1)
        keep = np.ones(res.rows.shape, bool)
        keep[np.arange(len(rows)), drop] = False
        width = res.rows.shape[1] - 1
        return SearchResult(*(a[keep].reshape(len(rows), width) for a in (res.ids, res.scores, res.rows)))

    def _document_vectors(self, rows: np.ndarray) -> np.ndarray:
        vectors = self._vectors[rows] if self._vectors is not None else self._id_source.vectors_at(rows)
        return vectors.reshape(len(rows), self.dim)

    def rows_of(self, ids: Sequence[Any]) -> np.ndarray:
        """Shard row of each corpus id; :class:`QueryError` naming the ids the index does not hold."""
        ids = list(ids)
        if self._row_ids is None:  # FAISS labels are the int64 ids: binary search in the id lookup
            keys = [_as_int(i) for i in ids]
            if None in keys:
                raise QueryError(f"id {ids[keys.index(None)]!r} is not an integer; this index has integer ids")
            ids = keys  # named as integers below, as the index holds them
            labels = np.asarray(keys, dtype=np.int64)
            rows = self._rows_of_ids(labels)
            if self._id_order is not None:
                sorted_ids, _ = self._id_order
                pos = np.minimum(sorted_ids.searchsorted(labels), len(sorted_ids) - 1)
                found = sorted_ids[pos] == labels
            else:
                found = (labels >= 0) & (labels < len(self))
        elif isinstance(self._row_ids, np.ndarray):  # an in-memory index
            if self._id_rows is None:
                self._id_rows = {v: r for r, v in enumerate(self._row_ids.tolist())}
            rows = np.asarray([self._id_rows.get(_as_int(i), -1) for i in ids], dtype=np.int64)
            found = rows >= 0
        else:  # string ids, an Arrow array
            import pyarrow as pa
            import pyarrow.compute as pc

            at = pc.index_in(pa.array([str(i) for i in ids], pa.string()), value_set=self._row_ids)
            rows = at.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            found = rows >= 0
        if not found.all():
            missing = [ids[i] for i in np.flatnonzero(~found)[:10].tolist()]
            shown = ", ".join(map(repr, missing))
            raise QueryError((f"no document with id {shown} in the index" if len(missing) == 1
                              else f"no documents with ids {shown} in the index") + "; like takes ids of indexed documents")
        return rows

    def write_like(self, ids: Sequence[Any], k: int = 10, output: str | Path | IO[str] | None = None,
                   fmt: str | None = None, *, with_text: bool = True) -> QueryRun:
        """Write the hits of :meth:`like` as :meth:`write_hits` does; each hit's query_id is the document's id."""
        fmt = format_for(output, fmt)
        id_type = self._figure("corpus.id_type", "int64")
        writer = HitsWriter(output, fmt, with_text=with_text and self._texts is not None, id_types=(id_type, id_type),
                            columns=self._stored_schema)
        with writer:
            result = self.like(ids, k)
            query_ids = [_as_int(i) if id_type == "int64" else str(i) for i in ids]
            writer.write(self.hits_of(result, query_ids, with_text))
        answered = (result.rows.max(axis=1, initial=-1) >= 0).tolist()
        # Read the documents' own vectors again only for those without hits.
        known = self._document_vectors(self.rows_of(ids)).any(axis=1).tolist() if not all(answered) else answered
        return QueryRun(queries=len(query_ids), hits=writer.count, format=fmt,
                        output=Path(output) if isinstance(output, (str, Path)) else None,
                        unanswered=[q for q, a, w in zip(query_ids, answered, known) if not a and not w],
                        missed=[q for q, a, w in zip(query_ids, answered, known) if not a and w])

    def write_hits(self, query_ids: Sequence[Any], texts: Sequence[str], k: int = 10,
                   output: str | Path | IO[str] | None = None, fmt: str | None = None, *,
                   batch_size: int = 1024, with_text: bool = True) -> QueryRun:
        """Search each text and write its hits to ``output`` (a path, a text stream, None: stdout),
        ``batch_size`` queries at a time, in ``fmt`` (default: from the file's suffix, else table).

        Empty or blank queries are skipped and listed in :attr:`QueryRun.empty`; if every query is
        empty, :class:`QueryError`.
        """
        return self._write_queries(list(query_ids), list(texts), k, output, fmt, batch_size, with_text)

    def search_file(self, queries_path: str | Path, k: int = 10, output_path: str | Path | IO[str] | None = None,
                    fmt: str | None = None, *, batch_size: int = 1024, with_text: bool = True) -> QueryRun:
        """Search every query of a Parquet/JSONL/CSV (``id``, ``text``) or text file (one a line, ids are
        line numbers) and write the hits as :meth:`write_hits` does. Blank lines of a text file are
        skipped and listed in :attr:`QueryRun.empty`, as empty queries anywhere are.
        """
        query_ids, texts = read_queries(queries_path, blank_lines=True)
        return self._write_queries(query_ids, texts, k, output_path, fmt, batch_size, with_text)

    def _write_queries(self, query_ids: list, texts: list, k: int, output, fmt: str | None,
                       batch_size: int, with_text: bool) -> QueryRun:
        if k <= 0:
            raise QueryError(f"k must be at least 1, got {k}")
        if batch_size <= 0:
            raise QueryError(f"batch_size must be at least 1, got {batch_size}")
        fmt = format_for(output, fmt)
        empty = [q for q, t in zip(query_ids, texts) if not isinstance(t, str) or not t.strip()]
        kept = [(q, t) for q, t in zip(query_ids, texts) if isinstance(t, str) and t.strip()]
        if not kept:
            raise QueryError("every query is empty; give some text to search for")
        qtype = "int64" if all(isinstance(q, int) and not isinstance(q, bool) for q, _ in kept) else "string"
        writer = HitsWriter(output, fmt, with_text=with_text and self._texts is not None, columns=self._stored_schema,
                            id_types=(qtype, self._figure("corpus.id_type", "int64")))
        no_hits = []
        with writer:
            for start in range(0, len(kept), batch_size):
                batch = kept[start:start + batch_size]
                ids = [q for q, _ in batch]
                hits = self.hits([t for _, t in batch], k, query_ids=ids, with_text=with_text)
                answered = {h["query_id"] for h in hits}
                no_hits += [(q, t) for q, t in batch if q not in answered]
                writer.write(hits)
        unanswered, missed = split_no_hits(self.encoder, no_hits)
        return QueryRun(queries=len(query_ids), hits=writer.count, format=fmt,
                        output=Path(output) if isinstance(output, (str, Path)) else None,
                        empty=empty, unanswered=unanswered, missed=missed, repeated=repeated_ids(query_ids))

    @property
    def _stored_schema(self):
        return self._columns.schema if self._columns is not None else None

    def __repr__(self) -> str:
        where = repr(str(self.directory)) if self.directory is not None else "in memory"
        family, key = self._figure("index.type"), self._figure("index.key")
        kind = f"{family} ({key})" if family else type(self.faiss).__name__.removeprefix("Index")
        return f"Index({where}, documents={len(self)}, dim={self.dim}, index={kind!r})"


def _length_group(most_tokens: list[int | None], tokens: np.ndarray) -> np.ndarray:
    """Position in ``most_tokens`` (ascending, None last for any longer) of the first bound each count
    is within; -1 for a count beyond every bound or unknown (below 0)."""
    bounds = np.asarray([m for m in most_tokens if m is not None], dtype=np.int64)
    group = np.searchsorted(bounds, tokens, side="left")
    if most_tokens[-1] is not None:
        group[tokens > bounds[-1]] = -1
    group[tokens < 0] = -1
    return group


def _length_group_of(most_tokens: list[int | None], count: int) -> int:
    """:func:`_length_group` of one token count."""
    if count < 0:
        return -1
    g = bisect_left(most_tokens, count, hi=len(most_tokens) - (most_tokens[-1] is None))
    return g if g < len(most_tokens) else -1


def _sorted_contains(sorted_values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``np.isin(x, sorted_values)`` by binary search."""
    pos = np.minimum(sorted_values.searchsorted(x), len(sorted_values) - 1)
    return sorted_values[pos] == x


def _as_int(value: Any) -> int | None:
    """An integer id from an int or a string of digits; None otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
