"""Self-supervised training of the two-tower model on an unlabelled corpus (issue 16).

``glovefaiss train CORPUS --self-supervised``: every epoch each training document gives one fresh
pseudo pair (:func:`glovefaiss.train.pseudo.make_pairs`: a span of it, or its title, against the
rest of it); batches of distinct documents under the config's in-batch loss (the recipe,
``configs/self_supervised.yml``: symmetric InfoNCE, temperature 0.1, 1,024 documents, Adam lr
0.1, 60 epochs, trainable tied GloVe rows, vocabulary growth). Held-out documents' span queries,
searched against every document, score each ``eval_every`` epochs; the best epoch is kept.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..config import Config, SelfSupervisedConfig
from ..errors import ConfigError, ModelError
from ..io.files import absolute_path
from ..tower import sif
from .fit import Epoch, FitResult, TrainSummary, peak_rss_mb, torch_threads
from .losses import from_config as loss_from_config
from .pseudo import CorpusTexts, Documents, Pairs, eligible, make_pairs, pair_ids, read_corpus_texts, tokenise_corpus

log = logging.getLogger(__name__)

# Validation queries come from one fixed distribution (the default spans, never titles), whatever
# the training pairs are, so that validation figures compare across settings.
VALIDATION_PAIRS = replace(SelfSupervisedConfig(), p_title=0.0)
METRIC = "ndcg@10"


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def encode_all(model, documents: Documents, chunk: int = 4096) -> torch.Tensor:
    """Document-tower vectors of every document (no gradient)."""
    off, ids = documents.tokens.offsets, documents.tokens.ids
    out = []
    with torch.no_grad():
        for s in range(0, len(documents), chunk):
            e = min(s + chunk, len(documents))
            out.append(model.encode_document_bags(_t(ids[off[s]:off[e]]), _t(np.diff(off[s:e + 1]))))
    return torch.cat(out) if out else torch.zeros(0, model.dim)


def validation_split(documents: Documents, cfg: SelfSupervisedConfig, seed: int) -> tuple[np.ndarray, Pairs | None]:
    """(training documents, validation pairs): ``validation_documents`` held out (at most a tenth
    of the eligible ones), each with ``validation_queries`` span queries; seeded."""
    ok = eligible(documents)
    rng = np.random.default_rng(seed + 1_000_003)
    n_val = min(cfg.validation_documents, len(ok) // 10)
    if n_val < 1 or cfg.validation_queries < 1:
        return ok, None
    held = np.sort(rng.choice(ok, n_val, replace=False))
    pairs = make_pairs(documents, held, rng, VALIDATION_PAIRS, titles=False)
    for _ in range(cfg.validation_queries - 1):
        pairs = pairs.concat(make_pairs(documents, held, rng, VALIDATION_PAIRS, titles=False))
    return np.setdiff1d(ok, held), pairs


def pseudo_validation(model, documents: Documents, pairs: Pairs, chunk: int = 512) -> dict[str, float]:
    """nDCG@10 and recall@10 x100 of span queries against every document, the query's own document
    (its only relevant one) scored as the document without the span, since the span is its query."""
    model.eval()
    docs = encode_all(model, documents)
    with torch.no_grad():
        q_ids, q_len, p_ids, p_len = pair_ids(documents, pairs)
        q = model.encode_query_bags(_t(q_ids), _t(q_len))
        own = (q * model.encode_document_bags(_t(p_ids), _t(p_len))).sum(1)
        rank = torch.empty(len(pairs), dtype=torch.long)
        for s in range(0, len(pairs), chunk):
            scores = q[s:s + chunk] @ docs.T
            scores[torch.arange(len(scores)), _t(pairs.docs[s:s + chunk])] = -torch.inf
            rank[s:s + chunk] = (scores > own[s:s + chunk, None]).sum(1)
    rank = rank.numpy()
    # One relevant document: nDCG@10 is 1 / log2(rank + 2) inside the top 10 (rank from 0), else 0.
    gain = np.where(rank < 10, 1.0 / np.log2(rank + 2.0), 0.0)
    return {"ndcg@10": float(gain.mean() * 100), "recall@10": float((rank < 10).mean() * 100)}


def fit_self_supervised(model, documents: Documents, config: Config, *, epochs: int | None = None,
                        seed: int | None = None, titles: bool = True, progress: bool | None = None,
                        threads: int | None = 1) -> FitResult:
    """Train ``model`` in place on fresh pseudo pairs every epoch; keep the best validated epoch
    (epoch 0, the untrained model, competes). ``extra`` reports documents and pairs."""
    epochs = config.epochs if epochs is None else epochs
    seed = config.seed if seed is None else seed
    with torch_threads(threads):
        return _fit(model, documents, config, epochs, seed, titles, progress)


def _fit(model, documents, config, epochs, seed, titles, progress) -> FitResult:
    from tqdm.auto import tqdm

    cfg = config.self_supervised
    if config.loss.type != "contrastive":
        raise ConfigError(f"self-supervised training needs loss.type contrastive (in-batch negatives), "
                          f"not {config.loss.type}")
    if epochs < 0 or config.batch_size < 2 or cfg.eval_every < 1:
        raise ConfigError("self-supervised training needs epochs >= 0, batch_size >= 2 and eval_every >= 1")
    loss_fn = loss_from_config(config.loss)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_docs, val = validation_split(documents, cfg, seed)
    if len(train_docs) < 2:
        raise ModelError(f"self-supervised training needs at least 2 documents with 2 or more known words; "
                         f"the corpus has {len(train_docs)} (besides {0 if val is None else len(set(val.docs))} "
                         f"held out)")
    params = [p for p in model.parameters() if p.requires_grad]
    if epochs and not params:
        raise ModelError("nothing to train: embedding.trainable is false and encoder.hidden_dim is null")
    opt = torch.optim.Adam(params, lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay) if params else None

    history: list[Epoch] = []
    best = {"value": -np.inf, "epoch": 0, "state": None}
    t_start = time.perf_counter()

    def validate(epoch: int, loss: float | None, seconds: float, cpu: float) -> None:
        metrics = {k: round(v, 4) for k, v in pseudo_validation(model, documents, val).items()} if val else {}
        history.append(Epoch(epoch, loss, metrics, round(seconds, 3), round(cpu, 3)))
        value = metrics.get(METRIC, epoch)  # without validation, the last epoch is kept
        improved = value > best["value"]
        if improved:
            best.update(value=value, epoch=epoch, state=copy.deepcopy(model.state_dict()))
        log.info("epoch %d/%d: %s%s%s", epoch, epochs, f"loss {loss:.4f}" if loss is not None else "before training",
                 "".join(f", pseudo {k} {v:.2f}" for k, v in metrics.items()), " (best)" if improved and val else "")

    validate(0, None, 0.0, 0.0)
    bs = config.batch_size
    seconds = cpu = 0.0
    for epoch in range(1, epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        pairs = make_pairs(documents, rng.permutation(train_docs), rng, cfg, titles=titles)
        total, batches = 0.0, 0
        steps = range(0, len(pairs) - 1, bs)  # a last batch of 1 is dropped: in-batch losses need 2 rows
        with tqdm(steps, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=None if progress is None else not progress,
                  leave=False, file=sys.stderr) as bar:
            for s in bar:
                batch = pairs.slice(slice(s, s + bs))
                if len(batch) < 2:
                    continue
                q_ids, q_len, p_ids, p_len = pair_ids(documents, batch)
                q = model.encode_query_bags(_t(q_ids), _t(q_len))
                p = model.encode_document_bags(_t(p_ids), _t(p_len))
                loss = loss_fn(q, p, doc_keys=_t(batch.docs))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach())
                batches += 1
                bar.set_postfix(loss=f"{total / batches:.4f}")
        seconds += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if epoch % cfg.eval_every == 0 or epoch == epochs:
            validate(epoch, total / max(batches, 1), seconds, cpu)
            seconds = cpu = 0.0
    if best["state"] is not None and best["epoch"] != epochs:
        model.load_state_dict(best["state"])
        log.info("kept epoch %d (best pseudo %s %.2f)", best["epoch"], METRIC, best["value"])
    model.eval()
    extra = {"train_documents": int(len(train_docs)), "pairs_per_epoch": int(len(train_docs)),
             "pairs": int(len(train_docs) * epochs),
             "validation_documents": 0 if val is None else int(len(np.unique(val.docs))),
             "validation_queries": 0 if val is None else len(val)}
    return FitResult(history, METRIC if val else None, best["epoch"], round(time.perf_counter() - t_start, 3),
                     "in-batch", extra)


def train_self_supervised(data_path: str | Path, out: str | Path, config: Config, *, epochs: int | None = None,
                          seed: int | None = None, id_column: str | None = None, text_column: str | None = None,
                          title_column: str | None = None, overwrite: bool = False, progress: bool | None = None,
                          threads: int | None = 1) -> TrainSummary:
    """``glovefaiss train CORPUS --self-supervised``: an unlabelled corpus → a model directory at ``out``.

    CORPUS: Parquet or JSONL (id, text, optional title) or a BEIR directory (its corpus.jsonl).
    A corpus above ``self_supervised.max_documents`` is trained on a seeded sample of that many.
    """
    from .model_dir import check_out_dir

    t0 = time.perf_counter()
    out = absolute_path(out)
    check_out_dir(out, overwrite)
    seed = config.seed if seed is None else seed
    epochs = config.epochs if epochs is None else epochs
    cfg = config.self_supervised
    check_config(config)
    corpus = read_corpus_texts(data_path, id_column, text_column, title_column)
    n_corpus = len(corpus)
    if n_corpus > cfg.max_documents:
        corpus = corpus.take(sif.sample_rows(n_corpus, cfg.max_documents, seed))
        log.info("training on a seeded sample of %d of the corpus's %d documents (self_supervised.max_documents)",
                 len(corpus), n_corpus)
    return train_on_corpus(corpus, out, config, corpus_documents=n_corpus, epochs=epochs, seed=seed, overwrite=overwrite,
                           progress=progress, threads=threads, started=t0)


def check_config(config: Config) -> None:
    """Refuse settings self-supervised training cannot use, before any data is read."""
    cfg = config.self_supervised
    loss_from_config(config.loss)
    if config.loss.type != "contrastive":
        raise ConfigError(f"self-supervised training needs loss.type contrastive (in-batch negatives), "
                          f"not {config.loss.type}")
    if sif.is_active(config.pooling):
        raise ConfigError("self-supervised training starts from the plain mean: leave pooling at its defaults "
                          "(SIF weights did not help after training, docs/training.md)")
    if config.embedding.type not in ("glove", "word2vec"):
        raise ConfigError("self-supervised training adapts pretrained word vectors: embedding.type glove or word2vec")
    if cfg.max_documents < 1:
        raise ConfigError(f"self_supervised.max_documents must be at least 1, got {cfg.max_documents}")


def train_on_corpus(corpus: CorpusTexts, out: Path, config: Config, *, corpus_documents: int, epochs: int, seed: int,
                    overwrite: bool = False, progress: bool | None = None, threads: int | None = 1,
                    started: float | None = None) -> TrainSummary:
    """Self-supervised training on texts already read (``corpus_documents``: the corpus size they were
    sampled from); writes the model directory ``out``."""
    from ..text.tokeniser import Tokeniser
    from ..vectors.sources import load_vectors
    from . import embeddings
    from .model_dir import save_model
    from .towers import build_two_tower

    t0 = time.perf_counter() if started is None else started
    cfg = config.self_supervised

    vectors = load_vectors(config.embedding.model_name)
    t_tok = time.perf_counter()
    tokenizer, documents, growth = tokenise_corpus(corpus, Tokeniser(config.tokeniser), vectors, cfg)
    tokenise_s = time.perf_counter() - t_tok
    emb = embeddings.from_config(config.embedding, tokenizer.words, vectors=vectors, seed=seed)
    if len(growth.words):
        emb.set_rows(growth.ids, growth.rows)
        log.info("the %d grown words among them start at their context mean and are trained", len(growth.words))
    enc = config.encoder
    model = build_two_tower(emb, enc.arch, enc.hidden_dim, enc.tied_weights, enc.dropout, seed=seed)
    titles = corpus.titles is not None
    result = fit_self_supervised(model, documents, config, epochs=epochs, seed=seed, titles=titles,
                                 progress=progress, threads=threads)
    training = {
        "objective": "self_supervised", "data": corpus.source, "documents": corpus_documents,
        "sampled_documents": len(corpus), "titles": titles, **result.extra, "epochs": epochs, "seed": seed,
        "metric": None if result.metric is None else f"pseudo {result.metric}", "best_epoch": result.best_epoch,
        "best_metrics": result.best.metrics, "history": [asdict(e) for e in result.history],
        "words_added": len(growth.words), "grow_min_count": cfg.grow_min_count,
        "grown_word_occurrences": growth.occurrences, "model_vocab_size": len(tokenizer),
        "tokenise_seconds": round(tokenise_s, 3), "fit_seconds": result.seconds,
        "torch_threads": threads or torch.get_num_threads(), "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    info = save_model(out, model, tokenizer, config, vectors=vectors, training=training, overwrite=overwrite)
    return TrainSummary(out, info["model_id"], result, round(time.perf_counter() - t0, 3), round(peak_rss_mb(), 1), info)
