"""``SemanticSearch``: the design's two-tower search API over an in-memory FAISS index.

``SemanticSearch(model, tokenizer)`` takes a trained :class:`~glovefaiss.encoders.TwoTower`
and its :class:`~glovefaiss.training_data.Tokenizer` (documents through the document tower,
queries through the query tower, in torch), or ``SemanticSearch(model_dir)`` a model
directory written by ``glovefaiss train`` (its exported numpy towers: no torch needed).
Search goes through the same :class:`~glovefaiss.query.Index` and FAISS code as a built index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .search import Index


class _TorchSide:
    """One tower of a TwoTower behind the ``encode``/``dim`` interface the query path uses."""

    def __init__(self, model, tokenizer, side: str, batch_size: int):
        self.model, self.tokenizer, self.side, self.batch_size = model, tokenizer, side, batch_size

    @property
    def dim(self) -> int:
        return self.model.dim

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        import torch

        if isinstance(texts, str):
            texts = [texts]
        fn = self.model.encode_query if self.side == "query" else self.model.encode_document
        was_training = self.model.training
        self.model.eval()
        out = []
        try:
            with torch.no_grad():
                for i in range(0, len(texts), self.batch_size):
                    out.append(fn(self.tokenizer(list(texts[i: i + self.batch_size]))).numpy())
        finally:
            self.model.train(was_training)
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.dim), np.float32)


class _NumpySide:
    def __init__(self, encoder):
        self.encoder = encoder
        self.dim = encoder.dim

    def encode(self, texts: Sequence[str] | str) -> np.ndarray:
        if isinstance(texts, str):
            texts = [texts]
        return self.encoder.encode(texts)


class SemanticSearch:
    """Index a list of documents with a two-tower model and search it: ``[{"document", "score"}]``."""

    def __init__(self, model, tokenizer=None, *, batch_size: int = 1024):
        if isinstance(model, (str, Path)):
            from ..tower.model_dir import load_towers

            q, d, _ = load_towers(model)
            self.query_side, self.document_side = _NumpySide(q), _NumpySide(d)
        else:
            if tokenizer is None:
                raise TypeError("SemanticSearch(model, tokenizer): a TwoTower needs its Tokenizer")
            self.query_side = _TorchSide(model, tokenizer, "query", batch_size)
            self.document_side = _TorchSide(model, tokenizer, "document", batch_size)
        self.documents: list[str] = []
        self._index: Index | None = None

    def encode_queries(self, texts: Sequence[str] | str) -> np.ndarray:
        """L2-normalised float32 query vectors (n, dim)."""
        return self.query_side.encode(texts)

    def encode_documents(self, texts: Sequence[str] | str) -> np.ndarray:
        """L2-normalised float32 document vectors (n, dim)."""
        return self.document_side.encode(texts)

    def index_documents(self, documents: Sequence[str]) -> None:
        """Replace the indexed documents with ``documents``."""
        self.documents = list(documents)
        vectors = self.encode_documents(self.documents) if self.documents else np.zeros((0, self.document_side.dim))
        self._index = Index.in_memory(self.query_side, vectors, self.documents)

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """The ``top_k`` best documents for ``query``: ``[{"document": text, "score": cosine}]``, best first."""
        if self._index is None:
            raise RuntimeError("call index_documents() before search()")
        return self._index.documents(query, top_k)
