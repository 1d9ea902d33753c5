"""``glovefaiss build CORPUS --adapt``: train a self-supervised tower on the corpus, then build the
index through it (:func:`adapt_and_build`). The model directory is kept in the index directory
(``DIR/model/``): ``query`` uses the query tower the index stores, and ``build --model DIR/model``
builds the same index again.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..config import Config
from ..errors import IndexDirError
from ..index.with_model import build_with_model
from ..io.corpus import open_corpus
from ..io.files import absolute_path
from ..tower import sif
from .pseudo import CorpusTexts
from .recipes import recipe
from .selfsup import check_config, train_on_corpus

log = logging.getLogger(__name__)

MODEL_SUBDIR = "model"


def adapt_config(config: Config) -> Config:
    """The training config of ``build --adapt``: ``config`` itself when it is a self-supervised one
    (``train.objective: self_supervised``, e.g. extending configs/self_supervised.yml, to change
    epochs or batch size); otherwise the self-supervised recipe with ``config``'s word vectors,
    seed and ``self_supervised`` section."""
    if config.train.objective == "self_supervised":
        return config
    base = recipe("self_supervised").to_dict()
    given = config.to_dict()
    base["embedding"].update(type=given["embedding"]["type"], model_name=given["embedding"]["model_name"])
    base["self_supervised"] = given["self_supervised"]
    base["seed"] = given["seed"]
    base["build"] = given["build"]
    from ..config import from_dict

    return from_dict(base, origin="build --adapt")


def sample_corpus(paths, config: Config) -> tuple[CorpusTexts, int]:
    """(a seeded sample of at most ``self_supervised.max_documents`` texts, the corpus size)."""
    b = config.build
    corpus = open_corpus(list(paths), b.id_column, b.text_column)
    rows = sif.sample_rows(corpus.num_rows, config.self_supervised.max_documents, config.seed)
    texts = list(sif.sampled((t for _ids, t in corpus.batches(b.batch_size)), rows))
    arr = pa.concat_arrays(texts) if texts else pa.array([], pa.string())
    return CorpusTexts(pa.array(rows.astype(np.int64)).cast(pa.string()), arr, None, ", ".join(map(str, paths))), \
        corpus.num_rows


def adapt_and_build(corpus, out: str | Path, config: Config | None = None, *, overwrite: bool = False,
                    resume: bool = False, progress: bool | None = None, threads: int | None = 1,
                    epochs: int | None = None, **kwargs):
    """Train the self-supervised tower on (a sample of) ``corpus``, then build ``out`` through it.

    ``epochs``: instead of the recipe's 60 (to measure or bound the cost).

    Returns the build's result; its manifest's ``adapt`` entry reports the sample, the training
    time and the model (also ``manifest["model"]``, which points at ``out/model``).
    """
    config = Config() if config is None else config
    t0 = time.perf_counter()
    out = absolute_path(out)
    if out.exists() and not overwrite and not resume:
        raise IndexDirError(f"{out} already exists; pass --overwrite to replace it")
    train_cfg = adapt_config(config)
    check_config(train_cfg)
    texts, n_docs = sample_corpus(corpus, train_cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.adapt-{uuid.uuid4().hex[:8]}")
    try:
        summary = train_on_corpus(texts, tmp, train_cfg, corpus_documents=n_docs,
                                  epochs=train_cfg.epochs if epochs is None else epochs,
                                  seed=train_cfg.seed, progress=progress, threads=threads)
        train_s = time.perf_counter() - t0
        t = summary.info["training"]
        entry = {"documents": n_docs, "sample_documents": t["sampled_documents"], "train_seconds": round(train_s, 3),
                 "best_epoch": t["best_epoch"], "best_metrics": t["best_metrics"], "words_added": t["words_added"],
                 "epochs": t["epochs"], "model_dir": MODEL_SUBDIR}
        result = build_with_model(corpus, out, tmp, config, record_dir=out / MODEL_SUBDIR,
                                  extra_manifest={"adapt": entry}, overwrite=overwrite, resume=resume,
                                  progress=progress, **kwargs)
        os.replace(tmp, out / MODEL_SUBDIR)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("adapted: trained on %d of %d documents in %.1f s, then built %s", entry["sample_documents"], n_docs,
             train_s, out)
    return result
