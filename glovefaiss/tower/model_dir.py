"""The trained-model directory, read without torch: its towers for serving, and the check that an
index was built with it. Writing one (from torch) is :mod:`glovefaiss.train.model_dir`.

A model directory (written by ``glovefaiss train``)::

    model.json        format version, model id, config, vocabulary size, dims, tower checksums, training report
    config.yml        the resolved config the model was trained with (for reading; model.json is authoritative)
    vocab.parquet     the model vocabulary (column ``word``; row 0 is "<pad>")
    checkpoint.pt     torch state dict of the TwoTower, for further training
    query_tower/      the query tower in the numpy format of ``tower.encoder.save_encoder``
    document_tower/   the document tower, same format (a copy of the query tower when tied)

The exported towers cover the whole word-vector vocabulary: rows of the model vocabulary are the
trained rows, every other word keeps its original (frozen) vector, so a query with words never
seen in training is still encoded (see docs/training.md). ``model_id`` is a sha256 over the
towers' file checksums: two directories with the same id serve identical vectors.

"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..config import Config, from_dict
from ..errors import ModelError
from ..io.files import sha256_file
from .encoder import DOCUMENT_TOWER, QUERY_TOWER, TextEncoder, load_encoder

MODEL_FILE = "model.json"
MODEL_FORMAT = 1
CHECKPOINT = "checkpoint.pt"
VOCAB = "vocab.parquet"


def dir_files(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file()}


def model_id(towers: dict[str, dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(towers, sort_keys=True).encode()).hexdigest()


def is_model_dir(path: str | Path) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


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
            have = dir_files(tower) if tower.is_dir() else {}
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
            "vectors": info.get("vectors"), "dim": info.get("dim"), "added_words": info.get("added_words", 0)}


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
