"""``SemanticSearch``: the design's two-tower search API over documents held in memory.

``SemanticSearch(model, tokenizer)`` takes a trained :class:`~glovefaiss.train.towers.TwoTower`
and its :class:`~glovefaiss.train.data.Tokenizer` (documents through the document tower,
queries through the query tower, in torch), or ``SemanticSearch(model_dir)`` a model
directory written by ``glovefaiss train`` (its exported numpy towers: no torch needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..index.memory import MemorySearch


class _TorchSide:
    """One tower of a TwoTower behind the ``encode``/``dim`` interface of the numpy towers."""

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


class SemanticSearch(MemorySearch):
    """Index a list of documents with a two-tower model and search it: ``[{"document", "score"}]``."""

    def __init__(self, model, tokenizer=None, *, batch_size: int = 1024):
        if isinstance(model, (str, Path)):
            from ..tower.model_dir import load_towers

            q, d, _ = load_towers(model)
            super().__init__(q, d)
        else:
            if tokenizer is None:
                raise TypeError("SemanticSearch(model, tokenizer): a TwoTower needs its Tokenizer")
            super().__init__(_TorchSide(model, tokenizer, "query", batch_size),
                             _TorchSide(model, tokenizer, "document", batch_size))
