"""Documents held in memory and searched exactly: the design's small in-process search API.

:class:`MemorySearch` takes any pair of towers (``encode(texts)`` → L2-normalised float32 rows,
and ``dim``) and searches through the same :class:`~glovefaiss.index.search.Index` and FAISS
code as a built index. :class:`GloVeSearch` is it over the frozen GloVe mean; the two-tower
``SemanticSearch`` (:mod:`glovefaiss.train.search`) over a trained model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import Config, EmbeddingConfig, TokeniserConfig
from ..tower.encoder import encoder_from_config
from .search import Index


class MemorySearch:
    """Index a list of documents through ``document_encoder`` and search it with ``query_encoder``."""

    def __init__(self, query_encoder, document_encoder=None):
        self.query_encoder = query_encoder
        self.document_encoder = document_encoder or query_encoder
        self.documents: list[str] = []
        self._index: Index | None = None

    def encode_queries(self, texts: Sequence[str] | str) -> np.ndarray:
        """L2-normalised float32 query vectors (n, dim)."""
        return self.query_encoder.encode(texts)

    def encode_documents(self, texts: Sequence[str] | str) -> np.ndarray:
        """L2-normalised float32 document vectors (n, dim)."""
        return self.document_encoder.encode(texts)

    def index_documents(self, documents: Sequence[str]) -> None:
        """Replace the indexed documents with ``documents``."""
        self.documents = list(documents)
        vectors = (self.encode_documents(self.documents) if self.documents
                   else np.zeros((0, self.document_encoder.dim), np.float32))
        self._index = Index.in_memory(self.query_encoder, vectors, self.documents)

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """The ``top_k`` most similar documents: ``[{"document": text, "score": cosine}]``, best first."""
        if self._index is None:
            raise RuntimeError("call index_documents() before search()")
        return self._index.documents(query, top_k)


class GloVeSearch(MemorySearch):
    """Documents in memory, searched with the same tokeniser, GloVe vectors and mean as ``glovefaiss build``."""

    def __init__(self, model_name: str = "glove-wiki-gigaword-50", tokeniser: TokeniserConfig | None = None):
        config = Config(tokeniser=tokeniser or TokeniserConfig(), embedding=EmbeddingConfig(model_name=model_name))
        encoder, self.vectors = encoder_from_config(config)
        super().__init__(encoder)

    @property
    def encoder(self):
        return self.query_encoder

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        return self.query_encoder.encode(texts)
