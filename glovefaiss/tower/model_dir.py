"""The trained-model directory: save, load, export to the numpy towers, and serve through an index.

A model directory (written by ``glovefaiss train``)::

    model.json        format version, model id, config, vocabulary size, dims, tower checksums, training report
    config.yml        the resolved config the model was trained with (for reading; model.json is authoritative)
    vocab.parquet     the model vocabulary (column ``word``; row 0 is "<pad>")
    checkpoint.pt     torch state dict of the TwoTower, for further training
    query_tower/      the query tower in the numpy format of ``pooling.save_encoder``
    document_tower/   the document tower, same format (a copy of the query tower when tied)

The exported towers cover the whole word-vector vocabulary: rows of the model vocabulary are the
trained rows, every other word keeps its original (frozen) vector, so a query with words never
seen in training is still encoded (see docs/training.md). ``model_id`` is a sha256 over the
towers' file checksums: two directories with the same id serve identical vectors.

Reading a model (``read_model``, ``load_towers``, ``check_index_model``) needs no torch; only
``save_model``, ``export_towers`` and ``load_two_tower`` import it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..config import Config, from_dict
from ..errors import ModelError
from ..index.layout import publish_dir, sha256_file
from ..text.tokeniser import Tokeniser
from ..text.vocabulary import Vocabulary
from .encoder import TextEncoder, load_encoder, save_encoder

MODEL_FILE = "model.json"
MODEL_FORMAT = 1
QUERY_TOWER = "query_tower"
DOCUMENT_TOWER = "document_tower"
CHECKPOINT = "checkpoint.pt"
VOCAB = "vocab.parquet"


# --------------------------------------------------------------------------------------------
# torch → numpy


def export_towers(model, tokenizer, config: Config, vectors: Any = None,
                  base_weights: np.ndarray | None = None) -> tuple[TextEncoder, TextEncoder]:
    """(query, document) numpy encoders serving ``model`` exactly (within float rounding).

    For GloVe / word2vec embeddings the encoders' vocabulary is the whole word-vector vocabulary
    (``vectors``, loaded from ``config.embedding.model_name`` when None) with the model's rows
    written over it; for ``lookup`` embeddings it is the model vocabulary. Words the model does
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
            vocab = Vocabulary(base_words)
        else:
            matrix = np.ascontiguousarray(e["matrix"][known])
            vocab = Vocabulary(pc.filter(words, pa.array(known)))
        enc = TextEncoder(tokeniser, vocab, matrix, e["projection"], e["bias"])
        cache[key] = enc
        out.append(enc)
    return out[0], out[1]


# --------------------------------------------------------------------------------------------
# save


def _dir_files(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}


def _model_id(towers: dict[str, dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(towers, sort_keys=True).encode()).hexdigest()


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse to replace an existing directory unless ``overwrite``, and never one that is not a model."""
    if not out.exists():
        return
    if not overwrite:
        raise ModelError(f"{out} already exists; pass --overwrite (overwrite=True) to replace it")
    if not out.is_dir() or (any(out.iterdir()) and not is_model_dir(out)):
        raise ModelError(f"{out} exists and is not a glovefaiss model; refusing to overwrite it, choose another --out")


def save_model(out: str | Path, model, tokenizer, config: Config, *, vectors: Any = None,
               training: dict | None = None, overwrite: bool = False, base_weights: np.ndarray | None = None) -> dict:
    """Write a model directory (atomically: built in a hidden sibling, then renamed); returns model.json."""
    import torch
    import yaml

    from .. import __version__

    out = Path(out).absolute()
    check_out_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        q_enc, d_enc = export_towers(model, tokenizer, config, vectors, base_weights)
        save_encoder(q_enc, tmp / QUERY_TOWER)
        save_encoder(d_enc, tmp / DOCUMENT_TOWER)
        towers = {QUERY_TOWER: _dir_files(tmp / QUERY_TOWER), DOCUMENT_TOWER: _dir_files(tmp / DOCUMENT_TOWER)}
        pq.write_table(pa.table({"word": tokenizer.words}), tmp / VOCAB)
        torch.save({"state_dict": model.state_dict(), "tied": model.tied}, tmp / CHECKPOINT)
        (tmp / "config.yml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        source = getattr(vectors, "source", config.embedding.model_name)
        info = {
            "format_version": MODEL_FORMAT,
            "glovefaiss_version": __version__,
            "model_id": _model_id(towers),
            "tied": bool(model.tied),
            "dim": int(q_enc.dim),
            "embedding_dim": int(model.query_embedding.embedding_dim),
            "model_vocab_size": len(tokenizer),
            "served_vocab_size": len(q_enc.vocabulary),
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


# --------------------------------------------------------------------------------------------
# load (no torch)


def read_model(model_dir: str | Path) -> dict:
    """model.json of a model directory, checked for format."""
    model_dir = Path(model_dir)
    path = model_dir / MODEL_FILE
    if not path.is_file():
        if not model_dir.exists():
            raise ModelError(f"model directory not found: {model_dir}")
        raise ModelError(f"{model_dir} is not a glovefaiss model ({MODEL_FILE} missing); train one with `glovefaiss train`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ModelError(f"{path} is not valid JSON ({e}); train the model again") from None
    version = info.get("format_version")
    if not isinstance(version, int) or version > MODEL_FORMAT:
        raise ModelError(f"{model_dir} has model format {version!r}, newer than this glovefaiss reads "
                         f"({MODEL_FORMAT}); upgrade glovefaiss")
    return info


def model_config(info: dict) -> Config:
    return from_dict(info["config"], origin=MODEL_FILE)


def load_towers(model_dir: str | Path, *, verify: bool = True) -> tuple[TextEncoder, TextEncoder, dict]:
    """(query encoder, document encoder, model.json): the numpy towers, checked against their checksums.

    For a tied model the same encoder object is returned twice.
    """
    model_dir = Path(model_dir)
    info = read_model(model_dir)
    encoders = []
    for name in (QUERY_TOWER, DOCUMENT_TOWER):
        tower = model_dir / name
        if verify:
            want = info["towers"].get(name, {})
            have = _dir_files(tower) if tower.is_dir() else {}
            if have != want:
                bad = sorted(set(want) ^ set(have) | {k for k in want if have.get(k) != want[k]})
                raise ModelError(f"{model_dir}: {name}/ does not match model.json "
                                 f"({', '.join(bad) or 'files'} missing or changed); train the model again")
        try:
            encoders.append(load_encoder(tower))
        except (OSError, KeyError, ValueError) as e:
            raise ModelError(f"{model_dir}: {name}/ is missing or damaged ({e}); train the model again") from None
    q, d = encoders
    if info.get("tied"):
        d = q
    return q, d, info


def index_model_entry(info: dict, model_dir: str | Path) -> dict:
    """What an index built with this model records under ``manifest["model"]``."""
    return {"id": info["model_id"], "dir": str(Path(model_dir).absolute()), "tied": info.get("tied"),
            "vectors": info.get("vectors"), "dim": info.get("dim")}


def check_index_model(manifest: dict, index_dir: str | Path, model_dir: str | Path) -> dict:
    """Raise :class:`ModelError` unless the index at ``index_dir`` was built with the model at ``model_dir``."""
    info = read_model(model_dir)
    built = (manifest.get("model") or {}).get("id")
    if built is None:
        raise ModelError(f"model mismatch: {index_dir} was built without a trained model, not with {model_dir}; "
                         f"rebuild it with `glovefaiss build CORPUS --model {model_dir}` or drop --model")
    if built != info["model_id"]:
        raise ModelError(f"model mismatch: {index_dir} was built with model {built[:12]}, but {model_dir} is "
                         f"model {info['model_id'][:12]}; query with the model the index was built with, or "
                         f"rebuild it with `glovefaiss build CORPUS --model {model_dir}`")
    return info


def build_index(corpus, out: str | Path, model_dir: str | Path, config: Config | None = None, **kwargs):
    """``pipeline.build`` with the model's towers: documents through the document tower, the query tower stored.

    ``config`` contributes its ``build`` section; tokeniser and embedding come from the model.
    """
    from ..index.build import build

    q, d, info = load_towers(model_dir)
    cfg = model_config(info).to_dict()
    if config is not None:
        cfg["build"] = config.to_dict()["build"]
    cfg.pop("pooling", None)  # a SIF initialisation is already in the towers' rows and projection
    cfg = from_dict(cfg, origin="config")
    return build(corpus, out, cfg, encoder=d, query_encoder=q,
                 extra_manifest={"model": index_model_entry(info, model_dir)}, **kwargs)


# --------------------------------------------------------------------------------------------
# load for further training (torch)


class _ZeroVectors:
    """Stands in for word vectors when a checkpoint is loaded: its state dict overwrites every row."""

    def __init__(self, words: pa.Array, dim: int, source: str):
        self.words, self.matrix, self.source = words, np.zeros((len(words), dim), np.float32), source


def load_two_tower(model_dir: str | Path):
    """(TwoTower, Tokenizer, Config, model.json) from a model directory's checkpoint."""
    import torch

    from ..train import embeddings
    from ..train.data import Tokenizer
    from ..train.towers import build_two_tower

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
