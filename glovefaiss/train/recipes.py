"""The recommended training recipes, built in, so ``glovefaiss train`` without ``--config`` can pick
one for the data it is given. Each equals a config file of ``configs/`` (tests/test_selfsup.py
checks it), where the figures that chose it are cited."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import Config, from_dict

RECIPES: dict[str, dict[str, Any]] = {
    # configs/train_scifact.yml: (query, positive) pairs, e.g. a BEIR train split.
    "train_scifact": {
        "tokeniser": {"max_len": None}, "embedding": {"trainable": True}, "encoder": {"dropout": 0.1},
        "loss": {"type": "contrastive", "margin": 0.3, "temperature": 0.05}, "optimizer": {"lr": 0.05},
        "batch_size": 128, "epochs": 10,
    },
    # configs/train_stsb_spread.yml: scored sentence pairs.
    "train_stsb_spread": {
        "tokeniser": {"max_len": 128}, "embedding": {"trainable": True},
        "encoder": {"hidden_dim": 50, "dropout": 0.1},
        "pooling": {"weighting": "sif", "sif_a": 0.001, "frequencies": "wordfreq", "components": 1},
        "loss": {"type": "cosine", "margin": 0.3, "spread": 3.0}, "optimizer": {"lr": 0.01},
        "batch_size": 128, "epochs": 30,
    },
    # configs/self_supervised.yml: an unlabelled corpus.
    "self_supervised": {
        "tokeniser": {"max_len": None}, "embedding": {"trainable": True},
        "loss": {"type": "contrastive", "temperature": 0.1, "symmetric": True}, "optimizer": {"lr": 0.1},
        "batch_size": 1024, "epochs": 60, "train": {"objective": "self_supervised"},
    },
}

FOR_KIND = {"pairs": "train_scifact", "scored": "train_stsb_spread", "corpus": "self_supervised"}
WHY = {"pairs": "the data holds (query, positive) pairs", "scored": "the data holds scored sentence pairs",
       "corpus": "--self-supervised on an unlabelled corpus"}


def recipe(name: str) -> Config:
    """The built-in config of recipe ``name`` (a key of :data:`RECIPES`)."""
    cfg = Config().to_dict()
    for section, value in RECIPES[name].items():
        if isinstance(value, dict):
            cfg[section].update(value)
        else:
            cfg[section] = value
    return from_dict(cfg, origin=f"recipe {name}")


def recommended(data: str | Path, self_supervised: bool) -> tuple[Config, str, str]:
    """(config, recipe name, why) for ``glovefaiss train DATA`` without ``--config``."""
    from .data import data_kind

    kind = "corpus" if self_supervised else data_kind(data)
    return recipe(FOR_KIND[kind]), FOR_KIND[kind], WHY[kind]
