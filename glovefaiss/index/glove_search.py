"""``GloVeSearch``: the design's standalone utility, an in-memory index over a list of documents.

It is a thin wrapper: the same tokeniser, word vectors and mean-pool tower as ``glovefaiss
build``, and the same :class:`~glovefaiss.query.Index` for search.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..config import Config, EmbeddingConfig, TokeniserConfig
from .build import encoder_from_config
from .search import Index


class GloVeSearch:
    """Index a list of documents in memory and search it with GloVe mean-pool vectors."""

    def __init__(self, model_name: str = "glove-wiki-gigaword-50", tokeniser: TokeniserConfig | None = None):
        config = Config(tokeniser=tokeniser or TokeniserConfig(), embedding=EmbeddingConfig(model_name=model_name))
        self.encoder, self.vectors = encoder_from_config(config)
        self.documents: list[str] = []
        self._index: Index | None = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        return self.encoder.encode(texts)

    def index_documents(self, documents: Sequence[str]) -> None:
        """Replace the indexed documents with ``documents``."""
        self.documents = list(documents)
        self._index = Index.in_memory(self.encoder, self.encode(self.documents), self.documents)

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """The ``top_k`` most similar documents: ``[{"document": text, "score": cosine}]``, best first."""
        if self._index is None:
            raise RuntimeError("call index_documents() before search()")
        return self._index.documents(query, top_k)
