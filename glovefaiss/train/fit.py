"""Two-tower training: Adam over the config's loss, a validation metric per epoch, the best epoch kept.

:func:`fit` trains a :class:`~glovefaiss.encoders.TwoTower` in memory (what the example and the
tests use); :func:`train` is ``glovefaiss train``: read the data, build the vocabulary and the
model from the config, fit, and write a model directory (:mod:`glovefaiss.model`).

Validation runs through the exported numpy towers and a FAISS index, i.e. exactly what an
index built with the model will serve: recall@10 (and nDCG@10) for (query, document) pairs,
Spearman x100 of the cosine for scored pairs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch

from ..config import Config
from ..errors import ConfigError, ModelError
from ..evaluation.metrics import evaluate_run, pair_cosines, pearson, spearman
from ..index import faiss_ops as faiss_index
from ..io.files import absolute_path
from .data import PairData, ScoredData, Tokenizer, load_training_data
from .losses import SCORED_LOSSES
from .losses import from_config as loss_from_config

log = logging.getLogger(__name__)

NEGATIVES = ("auto", "none", "random", "hard")


@dataclass
class Epoch:
    epoch: int
    loss: float | None
    metrics: dict[str, float]
    seconds: float
    cpu_seconds: float = 0.0


@dataclass
class FitResult:
    history: list[Epoch]
    metric: str | None
    best_epoch: int
    seconds: float
    negatives: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Epoch:
        return next(e for e in self.history if e.epoch == self.best_epoch)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["history"] = [asdict(e) for e in self.history]
        return d


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (1024 * 1024) if sys.platform == "darwin" else kb / 1024


# --------------------------------------------------------------------------------------------
# Validation metrics (through the numpy towers)


def evaluate_pairs(query_encoder, document_encoder, data: PairData, k: int = 10) -> dict[str, float]:
    """recall@k and nDCG@k x100 (binary relevance) of the judged queries against the whole document pool."""
    rel = data.relevant()
    qs = sorted(rel)
    docs = document_encoder.encode(_arrow(data.documents))
    queries = query_encoder.encode([data.queries[q] for q in qs]) if qs else np.zeros((0, docs.shape[1]), np.float32)
    idx = faiss_index.make_index(docs.shape[1], with_ids=False)
    faiss_index.add(idx, docs)
    _, labels = faiss_index.search(idx, queries, min(k, len(data.documents)))
    empty = ~np.any(queries != 0, axis=1)  # no known word: no ranking, as the served index answers
    run = {q: [] if e else [d for d in row.tolist() if d >= 0] for q, row, e in zip(qs, labels, empty)}
    qrels = {q: dict.fromkeys(rel[q], 1) for q in qs}
    means = evaluate_run(run, qrels, [f"recall@{k}", f"ndcg@{k}"])["metrics"]
    return {m: v * 100 for m, v in means.items()}


def evaluate_scored(query_encoder, document_encoder, data: ScoredData) -> dict[str, float]:
    """Spearman and Pearson x100 between cos(sentence1, sentence2) and the gold scores (NaN below 2 pairs)."""
    cos = pair_cosines(query_encoder.encode(_arrow(data.first)), document_encoder.encode(_arrow(data.second)))
    if len(cos) < 2:
        return {"spearman": float("nan"), "pearson": float("nan")}
    return {"spearman": spearman(cos, data.scores) * 100, "pearson": pearson(cos, data.scores) * 100}


def _arrow(texts: Sequence[str]):
    import pyarrow as pa

    return pa.array(list(texts), pa.string())


def evaluate(encoders, data: PairData | ScoredData) -> dict[str, float]:
    q, d = encoders
    return evaluate_pairs(q, d, data) if data.kind == "pairs" else evaluate_scored(q, d, data)


def selection_metric(data: PairData | ScoredData) -> str:
    return "recall@10" if data.kind == "pairs" else "spearman"


# Breaks ties of the selection metric (recall@10 is often equal across epochs on small validation sets).
TIE_BREAK = {"recall@10": "ndcg@10", "spearman": "pearson"}


# --------------------------------------------------------------------------------------------
# Negatives


def mine_hard_negatives(encoders, data: PairData, k: int) -> np.ndarray:
    """(n_pairs, k) document indices: each pair's query's top-k documents minus its positives, -1 padded.

    ``encoders``: (query, document) numpy encoders, normally the untrained (frozen) towers.
    """
    q_enc, d_enc = encoders
    rel = data.relevant()
    qs = sorted(rel)
    docs = d_enc.encode(_arrow(data.documents))
    idx = faiss_index.make_index(docs.shape[1], with_ids=False)
    faiss_index.add(idx, docs)
    most = max(len(r) for r in rel.values())
    _, labels = faiss_index.search(idx, q_enc.encode([data.queries[q] for q in qs]),
                                   min(k + most, len(data.documents)))
    per_query = {}
    for q, row in zip(qs, labels):
        cands = [d for d in row.tolist() if d >= 0 and d not in rel[q]][:k]
        per_query[q] = cands + [-1] * (k - len(cands))
    return np.asarray([per_query[q] for q in data.pairs[:, 0].tolist()], dtype=np.int64).reshape(len(data), k)


def _draw_negatives(kind: str, data: PairData, rng: np.random.Generator, hard: np.ndarray | None,
                    rel: dict[int, set[int]]) -> np.ndarray:
    n_docs = len(data.documents)
    out = np.empty(len(data), dtype=np.int64)
    if kind == "explicit":
        return data.negatives
    if kind == "hard":
        choice = rng.integers(0, hard.shape[1], len(data))
        out[:] = hard[np.arange(len(data)), choice]
        need = out < 0  # fewer than k candidates: fall back to random
    else:
        need = np.ones(len(data), dtype=bool)
    for i in np.flatnonzero(need):
        q = int(data.pairs[i, 0])
        while True:
            d = int(rng.integers(0, n_docs))
            if d not in rel[q] or len(rel[q]) >= n_docs:
                break
        out[i] = d
    return out


# --------------------------------------------------------------------------------------------
# fit


def fit(model, tokenizer: Tokenizer, data: PairData | ScoredData, config: Config, *,
        epochs: int | None = None, seed: int | None = None, validation: PairData | ScoredData | None = None,
        negatives: str = "auto", hard_negatives_k: int = 20,
        export: Callable[[Any], tuple] | None = None, progress: bool | None = None,
        threads: int | None = 1, ema: float | None = None) -> FitResult:
    """Train ``model`` in place on ``data``; with ``validation`` keep the best epoch's weights.

    ``export(model)`` gives the (query, document) numpy encoders that validation and hard-negative
    mining use (default: :func:`glovefaiss.model.export_towers` with the config's vectors).
    Epoch 0 is the model before training; it competes for "best" like every other epoch.
    ``threads``: torch threads while fitting (restored after; None leaves torch's setting). One by
    default: a tower's matrices are small, and a second OpenMP thread cost 2-12x in time per
    epoch on 2 cores, more when another process used the other core (docs/training.md). The
    result does not depend on it.
    ``ema`` (default: the config's ``optimizer.ema``, 0 when the config has none): a decay in
    [0, 1); above 0, an exponential moving average of the trained weights
    (``avg = ema * avg + (1 - ema) * weights`` after every step) is what validation scores and
    what the model keeps: the best epoch's average, or the last epoch's without validation.
    """
    ema = ema_decay(config) if ema is None else float(ema)
    if not 0.0 <= ema < 1.0:
        raise ConfigError(f"optimizer.ema must be in [0, 1), got {ema}")
    with torch_threads(threads):
        return _fit(model, tokenizer, data, config, epochs, seed, validation, negatives, hard_negatives_k, export,
                    progress, ema)


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Torch uses ``threads`` threads inside the block (None: leave torch's setting)."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ema_decay(config: Config) -> float:
    """``optimizer.ema`` of the config (0.0: no averaging)."""
    return float(config.optimizer.ema or 0.0)


class _Average:
    """Exponential moving average of ``params``; :meth:`swap` exchanges it with the live weights (twice restores them)."""

    def __init__(self, params: list, decay: float):
        self.params, self.decay = params, decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        for s, p in zip(self.shadow, self.params):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def _fit(model, tokenizer, data, config, epochs, seed, validation, negatives, hard_negatives_k, export, progress,
         ema=0.0):
    from tqdm.auto import tqdm

    epochs = config.epochs if epochs is None else epochs
    seed = config.seed if seed is None else seed
    if epochs < 0:
        raise ConfigError(f"epochs must be 0 or more, got {epochs}")
    if config.batch_size < 2:
        raise ConfigError(f"batch_size must be at least 2, got {config.batch_size}")
    if negatives not in NEGATIVES:
        raise ConfigError(f"unknown negatives {negatives!r}; valid: {', '.join(NEGATIVES)}")
    loss_fn = loss_from_config(config.loss)
    _check_loss(config.loss.type, data, "training data")
    if validation is not None and validation.kind != data.kind:
        raise ConfigError(f"the validation data ({validation.source}) holds {validation.kind} but the training "
                          f"data {data.kind}; give validation data of the same kind")
    if export is None:
        from .model_dir import export_towers

        export = lambda m: export_towers(m, tokenizer, config)  # noqa: E731

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if epochs and not params:
        raise ModelError("nothing to train: embedding.trainable is false and encoder.hidden_dim is null; "
                         "pass --trainable or --hidden-dim D (in a config: embedding.trainable: true or "
                         "encoder.hidden_dim), or train 0 epochs")
    opt = torch.optim.Adam(params, lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay) if params else None
    average = _Average(params, ema) if ema and params else None

    # Pre-tokenise every text once.
    if data.kind == "pairs":
        first, second = tokenizer.encode_texts(data.queries), tokenizer.encode_texts(data.documents)
        neg_kind = _negative_kind(negatives, data, loss_fn.needs_negatives)
        rel = data.relevant()
        hard = mine_hard_negatives(export(model), data, hard_negatives_k) if neg_kind == "hard" else None
    else:
        first, second = tokenizer.encode_texts(data.first), tokenizer.encode_texts(data.second)
        neg_kind = "none"
        lo, hi = float(data.scores.min()), float(data.scores.max())
        scores = torch.from_numpy(data.scaled_scores(lo, hi))

    metric = selection_metric(validation) if validation is not None else None
    history: list[Epoch] = []
    best_state, best_epoch, best_value = None, 0, (-np.inf, -np.inf)
    t_start = time.perf_counter()

    def validate(epoch: int, loss: float | None, seconds: float, cpu: float = 0.0) -> None:
        nonlocal best_state, best_epoch, best_value
        metrics = {}
        if average is not None:
            average.swap()  # validate (and keep) the averaged weights
        if validation is not None:
            model.eval()
            with torch.no_grad():
                metrics = evaluate(export(model), validation)
        history.append(Epoch(epoch, loss, {k: round(v, 4) for k, v in metrics.items()}, round(seconds, 3),
                             round(cpu, 3)))
        shown = ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())
        value = (metrics.get(metric, -np.inf), metrics.get(TIE_BREAK[metric], -np.inf)) if metric else (epoch, 0)
        improved = value > best_value
        if improved:
            best_value, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict()) if metric else None
        if average is not None:
            average.swap()
        log.info("epoch %d/%d: %s%s%s", epoch, epochs, f"loss {loss:.4f}" if loss is not None else "before training",
                 f", {shown}" if shown else "", " (best)" if improved and metric else "")

    validate(0, None, 0.0)
    n = len(data)
    bs = config.batch_size
    for epoch in range(1, epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        order = rng.permutation(n)
        negs = _draw_negatives(neg_kind, data, rng, hard, rel) if neg_kind != "none" else None
        total, batches = 0.0, 0
        steps = range(0, n - 1, bs)  # a last batch of 1 is dropped: in-batch losses need 2 rows
        with tqdm(steps, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=None if progress is None else not progress,
                  leave=False, file=sys.stderr) as bar:
            for start in bar:
                rows = order[start: start + bs]
                if len(rows) < 2:
                    continue
                if data.kind == "pairs":
                    q_rows, d_rows = data.pairs[rows, 0], data.pairs[rows, 1]
                    q = model.encode_query(first.batch(q_rows))
                    d = model.encode_document(second.batch(d_rows))
                    nv = model.encode_document(second.batch(negs[rows])) if negs is not None else None
                    loss = loss_fn(q, d, nv, query_keys=torch.from_numpy(q_rows), doc_keys=torch.from_numpy(d_rows),
                                   neg_keys=torch.from_numpy(negs[rows]) if negs is not None else None)
                else:
                    a = model.encode_query(first.batch(rows))
                    b = model.encode_document(second.batch(rows))
                    loss = loss_fn(a, b, scores=scores[rows])
                opt.zero_grad()
                loss.backward()
                opt.step()
                if average is not None:
                    average.update()
                total += float(loss.detach())
                batches += 1
                bar.set_postfix(loss=f"{total / batches:.4f}")
        validate(epoch, total / max(batches, 1), time.perf_counter() - t0, time.process_time() - c0)

    if best_state is not None and (best_epoch != epochs or average is not None):
        model.load_state_dict(best_state)
        log.info("kept epoch %d (best %s %.2f)", best_epoch, metric, best_value[0])
    elif average is not None:
        average.swap()  # no validation: keep the last epoch's average
    model.eval()
    return FitResult(history, metric, best_epoch if metric else epochs, round(time.perf_counter() - t_start, 3),
                     neg_kind)


def _check_loss(loss_type: str, data, what: str) -> None:
    if data.kind == "scored" and loss_type not in SCORED_LOSSES:
        raise ConfigError(f"loss.type {loss_type!r} needs (query, positive) pairs, but the {what} ({data.source}) "
                          f"has scored sentence pairs; use loss.type (--loss) {' or '.join(SCORED_LOSSES)}")
    if data.kind == "pairs" and loss_type in SCORED_LOSSES:
        raise ConfigError(f"loss.type {loss_type!r} needs scored sentence pairs, but the {what} ({data.source}) "
                          "has (query, positive) pairs; use loss.type (--loss) triplet or contrastive")


def _negative_kind(negatives: str, data: PairData, needed: bool) -> str:
    if negatives == "auto":
        if data.negatives is not None:
            return "explicit"
        return "random" if needed else "none"
    if negatives == "none" and needed:
        raise ConfigError("loss.type triplet needs a negative for each pair: use --negatives random or hard, "
                          "or data with a 'negative' column")
    if negatives in ("random", "hard") and len(data.documents) < 2:
        raise ConfigError("random or hard negatives need at least 2 documents in the training data")
    return negatives


# --------------------------------------------------------------------------------------------
# train: files in, model directory out


@dataclass
class TrainSummary:
    out_dir: Path
    model_id: str
    fit: FitResult
    seconds: float
    peak_rss_mb: float
    info: dict


def _pooling_init(config: Config, tokenizer: Tokenizer, vectors: Any, emb, texts: list, seed: int):
    """Fold the config's ``pooling`` section (SIF weights, common components) into the initial model.

    Both are fitted by :func:`glovefaiss.tower.sif.fit` on the training texts (as a build fits
    them on its corpus), over the whole word-vector vocabulary. SIF weights scale the embedding
    rows (a weighted mean is the mean of scaled rows); the removal of the components becomes the
    projection's initial value. Returns (weights of every word-vector row or None, components or
    None, a summary).
    """
    import pyarrow as pa

    from ..text.tokeniser import Tokeniser
    from ..text.vocabulary import Vocabulary
    from ..tower import sif
    from ..tower.encoder import TextEncoder

    pc_cfg = config.pooling
    sif.check(pc_cfg)
    if not sif.is_active(pc_cfg):
        return None, None, {"weighting": "mean"}
    if vectors is None:
        raise ConfigError("pooling.weighting/components need word vectors (embedding.type glove or word2vec)")
    if pc_cfg.components > 0 and config.encoder.hidden_dim is None:
        raise ConfigError("pooling.components needs a projection to start from: set encoder.hidden_dim "
                          f"(e.g. {emb.embedding_dim}, the embedding size)")
    base_words = vectors.words.combine_chunks() if isinstance(vectors.words, pa.ChunkedArray) else vectors.words
    encoder = TextEncoder(Tokeniser(config.tokeniser), Vocabulary(base_words), np.asarray(vectors.matrix, np.float32))
    flat = [t if isinstance(t, pa.Array) else pa.array(list(t), pa.string()) for t in texts]
    all_texts = pa.concat_arrays(flat) if flat else pa.array([], pa.string())
    # One batch: the components sample is then taken from all texts at once.
    weights, components, info = sif.fit(encoder, pc_cfg, lambda: [all_texts], len(all_texts), seed)
    if weights is not None:
        base_rows = pc.index_in(tokenizer.words, value_set=base_words.cast(pa.string())).fill_null(-1)
        base_rows = base_rows.to_numpy(zero_copy_only=False).astype(np.int64)
        known = emb.known.numpy() & (base_rows >= 0)
        with torch.no_grad():
            emb.weight[torch.from_numpy(np.flatnonzero(known))] *= torch.from_numpy(weights[base_rows[known]])[:, None]
    return weights, components, info


def _corpus_texts(paths: Sequence[str | Path], config: Config) -> list:
    from ..io.corpus import open_corpus

    corpus = open_corpus(list(paths), config.build.id_column, config.build.text_column)
    return [texts for _ids, texts in corpus.batches(config.build.batch_size)]


def train(data_path: str | Path, out: str | Path, config: Config, *, epochs: int | None = None,
          seed: int | None = None, validation: str | Path | None = None, holdout: float | None = None,
          corpus: Sequence[str | Path] = (), negatives: str = "auto", hard_negatives_k: int = 20,
          overwrite: bool = False, progress: bool | None = None, threads: int | None = 1,
          ema: float | None = None, init: str | Path | None = None) -> TrainSummary:
    """``glovefaiss train``: data file(s) → trained model directory at ``out``.

    ``ema``: weight averaging decay, overriding the config's ``optimizer.ema`` (see :func:`fit`).
    ``init``: a model directory whose checkpoint training starts from (its tokeniser, vectors and
    architecture; see :func:`glovefaiss.train.model_dir.init_from_model`).
    """
    from . import embeddings
    from .model_dir import check_out_dir, export_towers, save_model
    from .towers import build_two_tower

    t0 = time.perf_counter()
    out = absolute_path(out)
    check_out_dir(out, overwrite)
    seed = config.seed if seed is None else seed
    epochs = config.epochs if epochs is None else epochs
    ema = ema_decay(config) if ema is None else float(ema)
    loss_from_config(config.loss)  # refuse bad loss settings before loading data and vectors
    data = load_training_data(data_path)
    _check_loss(config.loss.type, data, "training data")
    val = None
    if validation is not None and holdout:
        raise ConfigError("give --validation or --holdout, not both")
    if validation is not None:
        val = load_training_data(validation)
    elif holdout:
        if data.kind != "pairs":
            raise ConfigError("--holdout splits (query, document) pairs by query; give --validation for scored pairs")
        data, val = data.split_queries(holdout, seed)

    if init is not None:
        from ..tower.model_dir import model_config, read_model

        emb_cfg = model_config(read_model(init)).embedding
        config = config.replace({"embedding.type": emb_cfg.type, "embedding.model_name": emb_cfg.model_name})
    vectors = None
    if config.embedding.type in ("glove", "word2vec"):
        from ..vectors.sources import load_vectors

        vectors = load_vectors(config.embedding.model_name)
    texts = data.texts() + (_corpus_texts(corpus, config) if corpus else [])
    if init is not None:
        from .model_dir import init_from_model

        model, tokenizer, config = init_from_model(init, config, texts, vectors)
        base_weights, pooling_info = None, {"weighting": "mean", "init": str(Path(init).absolute())}
    else:
        tokenizer = Tokenizer.build(texts, config.tokeniser, vectors)
        emb = embeddings.from_config(config.embedding, tokenizer.words, vectors=vectors, seed=seed)
        enc = config.encoder
        base_weights, components, pooling_info = _pooling_init(config, tokenizer, vectors, emb, texts, seed)
        model = build_two_tower(emb, enc.arch, enc.hidden_dim, enc.tied_weights, enc.dropout, seed=seed,
                                remove_components=components)
    log.info("model vocabulary: %d words (from %s%s%s)", len(tokenizer) - 1, data.source,
             f" and {len(corpus)} corpus file(s)" if corpus else "", f", starting from {init}" if init else "")
    result = fit(model, tokenizer, data, config, epochs=epochs, seed=seed, validation=val, negatives=negatives,
                 hard_negatives_k=hard_negatives_k,
                 export=lambda m: export_towers(m, tokenizer, config, vectors, base_weights), progress=progress,
                 threads=threads, ema=ema)
    trained_epochs = [e for e in result.history if e.epoch > 0]
    training = {
        "data": str(data.source), "validation": None if val is None else str(val.source),
        "pairs": len(data), "epochs": epochs, "seed": seed, "negatives": result.negatives,
        "hard_negatives_k": hard_negatives_k if result.negatives == "hard" else None,
        "metric": result.metric, "best_epoch": result.best_epoch,
        "best_metrics": result.best.metrics, "history": [asdict(e) for e in result.history],
        "seconds_per_epoch": round(float(np.mean([e.seconds for e in trained_epochs])), 3) if trained_epochs else None,
        "cpu_seconds_per_epoch": (round(float(np.mean([e.cpu_seconds for e in trained_epochs])), 3)
                                  if trained_epochs else None),
        "ema": ema,
        "fit_seconds": result.seconds, "torch_threads": threads or torch.get_num_threads(), "pooling_init": pooling_info,
        "init": None if init is None else str(Path(init).absolute()),
    }
    training["peak_rss_mb"] = round(peak_rss_mb(), 1)
    info = save_model(out, model, tokenizer, config, vectors=vectors, training=training, overwrite=overwrite,
                      base_weights=base_weights)
    return TrainSummary(out, info["model_id"], result, round(time.perf_counter() - t0, 3), round(peak_rss_mb(), 1), info)
