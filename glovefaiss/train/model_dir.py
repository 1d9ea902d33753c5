"""Write a model directory from a trained TwoTower (torch), export it to the numpy towers, and
load its checkpoint for further training. Reading a model directory needs no torch: see
:mod:`glovefaiss.tower.model_dir`."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import Config
from ..errors import ModelError
from ..io.files import absolute_path, publish_dir, sha256_file
from ..text.tokeniser import Tokeniser
from ..text.vocabulary import Vocabulary
from ..tower.encoder import TextEncoder, save_encoder
from ..tower.model_dir import (
    CHECKPOINT,
    DOCUMENT_TOWER,
    MODEL_FILE,
    MODEL_FORMAT,
    QUERY_TOWER,
    VOCAB,
    dir_files,
    is_model_dir,
    model_config,
    model_id,
    read_model,
)


def export_towers(model, tokenizer, config: Config, vectors: Any = None,
                  base_weights: np.ndarray | None = None) -> tuple[TextEncoder, TextEncoder]:
    """(query, document) numpy encoders serving ``model`` exactly (within float rounding).

    For GloVe / word2vec embeddings the encoders' vocabulary is the whole word-vector vocabulary
    (``vectors``, loaded from ``config.embedding.model_name`` when None) with the model's rows
    written over it, then the model's words the vectors lack but the model knows (grown words,
    :mod:`glovefaiss.train.pseudo`) appended with their rows; for ``lookup`` embeddings it is the
    model vocabulary. Words the model does
    not know (padding, words missing from the vectors) are left out, so the numpy path drops
    them as the torch towers mask them. ``base_weights`` (one per word-vector row) scale the
    rows of words outside the model, as a SIF initialisation scaled the model's own rows.
    """
    exported = model.export()
    tokeniser = Tokeniser(config.tokeniser)
    words = tokenizer.words
    base_words = None
    if config.embedding.type in ("glove", "word2vec"):
        if vectors is None:
            from ..vectors.sources import load_vectors

            vectors = load_vectors(config.embedding.model_name)
        base_words = vectors.words.combine_chunks() if isinstance(vectors.words, pa.ChunkedArray) else vectors.words
        base_rows = pc.index_in(words, value_set=base_words.cast(pa.string())).fill_null(-1)
        base_rows = base_rows.to_numpy(zero_copy_only=False).astype(np.int64)
    out = []
    cache: dict[int, TextEncoder] = {}
    for side in ("query", "document"):
        e = exported[side]
        key = id(model.query_embedding) if side == "query" else id(model.document_embedding)
        key = (key, id(model.query_tower) if side == "query" else id(model.document_tower))
        if key in cache:  # tied: one encoder object serves both sides
            out.append(cache[key])
            continue
        known = e["known"]
        if base_words is not None:
            matrix = np.array(vectors.matrix, dtype=np.float32, copy=True)
            if base_weights is not None:
                matrix *= np.asarray(base_weights, dtype=np.float32)[:, None]
            take = known & (base_rows >= 0)
            matrix[base_rows[take]] = e["matrix"][take]
            grown = known & (base_rows < 0)
            vocab = Vocabulary(pa.concat_arrays([base_words.cast(pa.string()),
                                                 pc.filter(words, pa.array(grown)).cast(pa.string())]))
            matrix = np.concatenate([matrix, e["matrix"][grown]])
        else:
            matrix = np.ascontiguousarray(e["matrix"][known])
            vocab = Vocabulary(pc.filter(words, pa.array(known)))
        enc = TextEncoder(tokeniser, vocab, matrix, e["projection"], e["bias"])
        cache[key] = enc
        out.append(enc)
    return out[0], out[1]


def added_words(model, tokenizer, vectors: Any) -> int:
    """How many model words the word vectors lack but the model knows (grown words)."""
    base = vectors.words.combine_chunks() if isinstance(vectors.words, pa.ChunkedArray) else vectors.words
    in_base = pc.is_in(tokenizer.words, value_set=base.cast(pa.string())).to_numpy(zero_copy_only=False)
    known = np.zeros(len(in_base), bool)
    for emb in {id(m): m for m in (model.query_embedding, model.document_embedding)}.values():
        known |= emb.known.detach().cpu().numpy().astype(bool)
    return int((known & ~in_base).sum())


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace an existing directory unless ``overwrite``, and never one that is not a model."""
    if not out.exists():
        return
    if not overwrite:
        raise ModelError(f"{out} already exists; pass --overwrite to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not is_model_dir(out)):
        raise ModelError(f"{out} exists and is not a glovefaiss model; refusing to overwrite it, choose another --out")


def save_model(out: str | Path, model, tokenizer, config: Config, *, vectors: Any = None,
               training: dict | None = None, overwrite: bool = False, base_weights: np.ndarray | None = None) -> dict:
    """Write a model directory (atomically: built in a hidden sibling, then renamed); returns model.json."""
    import torch
    import yaml

    from .. import __version__

    out = absolute_path(out)
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        q_enc, d_enc = export_towers(model, tokenizer, config, vectors, base_weights)
        save_encoder(q_enc, tmp / QUERY_TOWER)
        save_encoder(d_enc, tmp / DOCUMENT_TOWER)
        towers = {QUERY_TOWER: dir_files(tmp / QUERY_TOWER), DOCUMENT_TOWER: dir_files(tmp / DOCUMENT_TOWER)}
        pq.write_table(pa.table({"word": tokenizer.words}), tmp / VOCAB)
        torch.save({"state_dict": model.state_dict(), "tied": model.tied}, tmp / CHECKPOINT)
        (tmp / "config.yml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        source = getattr(vectors, "source", config.embedding.model_name)
        info = {
            "format_version": MODEL_FORMAT,
            "glovefaiss_version": __version__,
            "model_id": model_id(towers),
            "tied": bool(model.tied),
            "dim": int(q_enc.dim),
            "embedding_dim": int(model.query_embedding.embedding_dim),
            "model_vocab_size": len(tokenizer),
            "served_vocab_size": len(q_enc.vocabulary),
            "added_words": added_words(model, tokenizer, vectors) if vectors is not None else 0,
            "vectors": {"source": source, "sha256": getattr(vectors, "sha256", None)},
            "config": config.to_dict(),
            "towers": towers,
            "checkpoint": {"file": CHECKPOINT, "sha256": sha256_file(tmp / CHECKPOINT)},
            "training": training or {},
        }
        (tmp / MODEL_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


class _ZeroVectors:
    """Stands in for word vectors when a checkpoint is loaded: its state dict overwrites every row."""

    def __init__(self, words: pa.Array, dim: int, source: str):
        self.words, self.matrix, self.source = words, np.zeros((len(words), dim), np.float32), source


def load_two_tower(model_dir: str | Path):
    """(TwoTower, Tokenizer, Config, model.json) from a model directory's checkpoint."""
    import torch

    from . import embeddings
    from .data import Tokenizer
    from .towers import build_two_tower

    model_dir = Path(model_dir)
    info = read_model(model_dir)
    config = model_config(info)
    words = pq.read_table(model_dir / VOCAB).column("word").combine_chunks()
    tokenizer = Tokenizer(config.tokeniser, words)
    stub = _ZeroVectors(words, int(info["embedding_dim"]), str(info.get("vectors", {}).get("source")))
    emb = embeddings.from_config(config.embedding, words, vectors=stub)
    enc = config.encoder
    model = build_two_tower(emb, enc.arch, enc.hidden_dim, bool(info["tied"]), enc.dropout)
    try:
        state = torch.load(model_dir / CHECKPOINT, map_location="cpu", weights_only=True)
        model.load_state_dict(state["state_dict"])
    except (OSError, RuntimeError, KeyError) as e:
        raise ModelError(f"{model_dir}: cannot load {CHECKPOINT} ({str(e).splitlines()[0]}); train the model again") from None
    return model.eval(), tokenizer, config, info


def init_from_model(model_dir: str | Path, config: Config, texts: list, vectors: Any):
    """(TwoTower, Tokenizer, Config) to go on training a model directory's checkpoint (``train --init``).

    Tokeniser, word vectors and architecture are the model's (its config); training settings
    (loss, optimizer, batch, epochs, ``embedding.trainable``) are ``config``'s. Words of ``texts``
    that the vectors have but the model vocabulary lacks are appended with their vector rows, so
    the new training data is learnt in full; every other row and weight is the checkpoint's.
    """
    import torch

    from . import embeddings
    from .data import Tokenizer
    from .towers import build_two_tower

    old, old_tok, old_cfg, info = load_two_tower(model_dir)
    trainable = config.embedding.trainable
    merged = config.to_dict()
    for section in ("tokeniser", "embedding", "encoder"):
        merged[section] = old_cfg.to_dict()[section]
    merged["embedding"]["trainable"] = trainable
    merged["encoder"]["tied_weights"] = bool(info["tied"])
    merged["pooling"] = Config().to_dict()["pooling"]  # the checkpoint's rows already hold any SIF scaling
    cfg = _config_from(merged)
    extra = Tokenizer.build(texts, cfg.tokeniser, vectors).words
    new = pc.filter(extra, pc.invert(pc.is_in(extra, value_set=old_tok.words)))
    tokenizer = Tokenizer(cfg.tokeniser, pa.concat_arrays([old_tok.words.cast(pa.string()), new.cast(pa.string())]))
    emb = embeddings.from_config(cfg.embedding, tokenizer.words, vectors=vectors)
    enc = cfg.encoder
    model = build_two_tower(emb, enc.arch, enc.hidden_dim, enc.tied_weights, enc.dropout)
    state = model.state_dict()
    with torch.no_grad():
        for key, value in old.state_dict().items():
            # Embedding rows (weight, known) keep their ids: the old vocabulary is a prefix of the new.
            state[key][: value.shape[0]] = value
    model.load_state_dict(state)
    return model, tokenizer, cfg


def _config_from(data: dict) -> Config:
    from ..config import from_dict

    return from_dict(data, origin="train --init")
