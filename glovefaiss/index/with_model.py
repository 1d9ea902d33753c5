"""Build an index through a trained model's towers: documents through the document tower, the
query tower stored for queries, the model recorded in the manifest."""

from __future__ import annotations

from pathlib import Path

from ..config import Config, from_dict
from ..tower.model_dir import index_model_entry, load_towers, model_config
from .build import build


def build_with_model(corpus, out: str | Path, model_dir: str | Path, config: Config | None = None, *,
                     record_dir: str | Path | None = None, extra_manifest: dict | None = None, **kwargs):
    """``build`` with the model's towers: documents through the document tower, the query tower stored.

    ``config`` contributes its ``build`` section; tokeniser and embedding come from the model.
    ``record_dir``: where the manifest says the model is (default ``model_dir``; ``build --adapt``
    moves its model into the index afterwards).
    """
    q, d, info = load_towers(model_dir)
    cfg = model_config(info).to_dict()
    if config is not None:
        cfg["build"] = config.to_dict()["build"]
    cfg.pop("pooling", None)  # a SIF initialisation is already in the towers' rows and projection
    cfg = from_dict(cfg, origin="config")
    return build(corpus, out, cfg, encoder=d, query_encoder=q,
                 extra_manifest={"model": index_model_entry(info, record_dir or model_dir), **(extra_manifest or {})},
                 **kwargs)
