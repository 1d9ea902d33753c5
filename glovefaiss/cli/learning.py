"""The training and evaluation commands: train, eval retrieval / sts / recall."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import cli, note, progress


@cli.command()
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Model directory to write.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config (may `extends` another).")
@click.option("--epochs", type=click.IntRange(min=0), help="Epochs (default: the config's).")
@click.option("--seed", type=int, help="Random seed (default: the config's).")
@click.option("--validation", type=click.Path(path_type=Path),
              help="Validation data (same kind as DATA): a metric per epoch, the best epoch kept.")
@click.option("--holdout", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Hold out this fraction of DATA's queries for validation instead of --validation.")
@click.option("--corpus", "corpus", multiple=True, type=click.Path(path_type=Path),
              help="Parquet corpus whose words join the model vocabulary (repeatable).")
@click.option("--loss", type=click.Choice(["triplet", "contrastive", "cosine", "cosent"]), help="Overrides loss.type.")
@click.option("--negatives", type=click.Choice(["auto", "none", "random", "hard"]), default="auto", show_default=True,
              help="Negatives for pairs: the data's, none (in-batch only), random, or hard (mined with the frozen tower).")
@click.option("--hard-negatives-k", type=click.IntRange(min=1), default=20, show_default=True,
              help="Hard negatives are drawn from each query's top K documents minus its positives.")
@click.option("--lr", type=float, help="Overrides optimizer.lr.")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True),
              help="Overrides optimizer.ema: keep a moving average of the weights with this decay (0: off).")
@click.option("--spread", type=click.FloatRange(min=0),
              help="Overrides loss.spread (scored pairs): weight pushing sentences of different pairs apart (0: off).")
@click.option("--batch-size", type=click.IntRange(min=2), help="Overrides batch_size.")
@click.option("--hidden-dim", type=click.IntRange(min=1), help="Overrides encoder.hidden_dim (a projection).")
@click.option("--trainable/--frozen", default=None, help="Overrides embedding.trainable.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads while training (one is fastest for these small towers).")
@click.option("--json", "as_json", is_flag=True, help="Print model.json on stdout.")
@click.option("--self-supervised", "self_supervised", is_flag=True,
              help="DATA is an unlabelled corpus: train on pseudo pairs drawn from it (train.objective).")
@click.option("--id-column", help="--self-supervised: column with document ids (default: id or _id).")
@click.option("--text-column", help="--self-supervised: column with document text (default: text).")
@click.option("--title-column", help="--self-supervised: column with titles (default: title, when present).")
@click.option("--grow-vocabulary", "grow", type=click.IntRange(min=0), metavar="MIN_COUNT",
              help="--self-supervised: corpus words the vectors lack, seen MIN_COUNT times or more, get trained "
                   "rows (self_supervised.grow_min_count; 0: off).")
@click.option("--init", "init", type=click.Path(path_type=Path),
              help="Start from this model directory's checkpoint (e.g. a --self-supervised model).")
def train(data, out, config_path, epochs, seed, validation, holdout, corpus, loss, negatives, hard_negatives_k,
          lr, ema, spread, batch_size, hidden_dim, trainable, overwrite, threads, as_json, self_supervised,
          id_column, text_column, title_column, grow, init):
    """Train a two-tower model on DATA and write it to --out.

    DATA: (query, positive[, negative]) pairs (Parquet/JSONL), a BEIR directory (its train split)
    or one of its qrels/SPLIT.tsv files, or scored sentence pairs (CSV/TSV/Parquet); with
    --self-supervised, a corpus (Parquet/JSONL id, text[, title], or a BEIR directory's corpus).
    Without --config, the recommended recipe for DATA's kind is used (the summary names it).
    """
    from ..config import load_config
    from ..train.recipes import recommended

    if config_path is not None:
        config, recipe_note = load_config(config_path), None
    else:
        config, name, why = recommended(data, self_supervised)
        recipe_note = f"recipe: configs/{name}.yml (built in; no --config given and {why})"
    config = config.replace({
        "loss.type": loss, "optimizer.lr": lr, "optimizer.ema": ema, "loss.spread": spread,
        "batch_size": batch_size, "train.objective": "self_supervised" if self_supervised else None,
        "encoder.hidden_dim": hidden_dim, "embedding.trainable": trainable, "self_supervised.grow_min_count": grow,
    })
    if config.train.objective == "self_supervised":
        given = [f for f, v in (("--validation", validation), ("--holdout", holdout), ("--corpus", corpus),
                                ("--init", init), ("--ema", ema), ("--spread", spread)) if v]
        if given:
            raise click.UsageError(f"{given[0]} does not apply to self-supervised training (it validates on "
                                   "held-out documents of DATA)")
        from ..train.selfsup import train_self_supervised

        s = train_self_supervised(data, out, config, epochs=epochs, seed=seed, id_column=id_column,
                                  text_column=text_column, title_column=title_column, overwrite=overwrite,
                                  threads=threads, progress=progress())
    else:
        given = [f for f, v in (("--id-column", id_column), ("--text-column", text_column),
                                ("--title-column", title_column), ("--grow-vocabulary", grow is not None)) if v]
        if given:
            raise click.UsageError(f"{given[0]} is for --self-supervised training")
        from ..train.fit import train as run_train

        s = run_train(data, out, config, epochs=epochs, seed=seed, validation=validation, holdout=holdout,
                      corpus=list(corpus), negatives=negatives, hard_negatives_k=hard_negatives_k,
                      overwrite=overwrite, threads=threads, progress=progress(), init=init)
    if as_json:
        click.echo(json.dumps(s.info, indent=2))
    if recipe_note:
        note(recipe_note)
    best = s.fit.best
    t = s.info["training"]
    shown = ", ".join(f"{k} {v:.2f}" for k, v in best.metrics.items())
    if t.get("objective") == "self_supervised":
        sample = "" if t["sampled_documents"] == t["documents"] else f" (a seeded sample of {t['documents']:,})"
        note(f"self-supervised on {t['sampled_documents']:,} documents{sample}: {t['pairs']:,} pseudo pairs "
              f"({t['pairs_per_epoch']:,} an epoch, {t['epochs']} epochs), validated on {t['validation_queries']:,} "
              f"span queries of {t['validation_documents']:,} held-out documents; {t['words_added']:,} words added "
              f"(min count {t['grow_min_count']})")
        note(f"trained {s.out_dir} (model {s.model_id[:12]}) in {s.seconds:.1f} s: kept epoch {best.epoch}"
              f"{f' (pseudo {shown})' if shown else ''}, peak memory {s.peak_rss_mb:.0f} MiB")
        return
    note(
        f"trained {s.out_dir} (model {s.model_id[:12]}) in {s.seconds:.1f} s: kept epoch {best.epoch}"
        f"{f' ({shown})' if shown else ''}, {t['seconds_per_epoch'] or 0:.2f} s/epoch, "
        f"peak memory {s.peak_rss_mb:.0f} MiB")


@cli.group("eval")
def eval_group():
    """Measure quality: retrieval metrics (BEIR data), STS correlations, or an index's recall against exact search."""


def _eval_config(config_path, glove):
    from ..config import load_config

    return load_config(config_path).replace({"embedding.model_name": glove})


def _emit_reports(reports, fmt: str, per_query: bool = False) -> None:
    from ..evaluation.retrieval import render_table

    if fmt == "json":
        click.echo(json.dumps([r.to_dict(per_query) for r in reports], indent=2))
    else:
        click.echo(render_table(reports), nl=False)


@eval_group.command("retrieval")
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("--split", default="test", show_default=True, help="Qrels split of a BEIR directory (qrels/SPLIT.tsv).")
@click.option("--corpus", type=click.Path(path_type=Path), help="Corpus (BEIR JSONL or Parquet) to build an index of.")
@click.option("--queries", type=click.Path(path_type=Path), help="Queries (BEIR JSONL or Parquet: _id/id, text).")
@click.option("--qrels", type=click.Path(path_type=Path), help="Judgments (TSV query-id, corpus-id, score; or Parquet).")
@click.option("--index", "index_dir", type=click.Path(path_type=Path), help="Evaluate this index instead of building one.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Config for the index built here.")
@click.option("--glove", help="Word vectors for the index built here (default: the config's).")
@click.option("--out", type=click.Path(path_type=Path), help="Keep the index built here in this directory.")
@click.option("--metric", "metrics", multiple=True,
              help="Metrics KIND@K, KIND one of ndcg, recall, p, mrr, map; repeat it or separate with spaces or "
                   "commas (default: ndcg@10 recall@10 recall@100 mrr@10 map@100).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--per-query", is_flag=True, help="With --format json: every query's metrics too.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Build the index here through this trained model's document tower (glovefaiss train).")
def eval_retrieval(data, split, corpus, queries, qrels, index_dir, config_path, glove, out, metrics, fmt, per_query,
                   model_dir):
    """nDCG@10, Recall@10/100, MRR@10, MAP@100 (or the --metric ones) of an index on DATA (a BEIR
    directory) or on --queries/--qrels; without --index, an index of the corpus is built first (--config, --glove)."""
    from ..evaluation.metrics import EvalError, parse_metrics
    from ..evaluation.retrieval import RETRIEVAL_METRICS, evaluate_built, evaluate_retrieval, load_retrieval
    from ..index.search import Index

    try:
        metrics = parse_metrics(metrics) if metrics else list(RETRIEVAL_METRICS)
    except EvalError as e:
        raise click.BadParameter(str(e), param_hint="'--metric'") from None
    if data is None and (queries is None or qrels is None):
        raise click.UsageError("give a BEIR directory DATA, or --queries and --qrels")
    if index_dir is not None and (config_path or glove or out or model_dir):
        raise click.UsageError("--index evaluates an existing index; --config, --glove, --out and --model are for "
                               "building one")
    if model_dir is not None and (config_path or glove):
        raise click.UsageError("--model brings its towers and word vectors; --config and --glove cannot be combined "
                               "with it")
    rd = load_retrieval(data, split, corpus=corpus, queries=queries, qrels=qrels)
    name = f"{rd.name}/{split}" if data is not None else rd.name
    if index_dir is not None:
        report = evaluate_retrieval(Index.load(index_dir), rd, metrics, name=name)
    elif rd.corpus is None:
        raise click.UsageError("give --index, or a corpus (a BEIR directory or --corpus) to build one")
    else:
        report, built = evaluate_built(rd, metrics, name, config=_eval_config(config_path, glove), model_dir=model_dir,
                                       out=out, progress=progress())
        note(f"built {out if out is not None else 'a temporary index (--out DIR keeps it)'}: {built.documents:,} "
             f"documents in {built.seconds:.1f} s{f' through model {model_dir}' if model_dir is not None else ''}")
    _emit_reports([report], fmt, per_query)


@eval_group.command("sts")
@click.argument("pairs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--index", "index_dir", type=click.Path(path_type=Path),
              help="Use this index's towers (query; document too if it has one).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Use a trained model (glovefaiss train): sentence1 through its query tower, sentence2 its document tower.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Config of the tower (default: built-in).")
@click.option("--glove", help="Word vectors (default: the config's).")
@click.option("--fit-on", "fit_on", multiple=True, type=click.Path(path_type=Path),
              help="Pairs files whose sentences fit SIF corpus counts and components (default: each evaluated file).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def eval_sts(pairs, index_dir, model_dir, config_path, glove, fit_on, fmt):
    """Pearson and Spearman x100 between gold scores and cosines, for each PAIRS file
    (CSV/TSV sentence1, sentence2, score, header optional; or Parquet)."""
    from ..evaluation.sts import evaluate_sts, read_pairs, sts_encoder

    if index_dir is not None and model_dir is not None:
        raise click.UsageError("give --index or --model, not both")
    if (index_dir is not None or model_dir is not None) and (config_path or glove or fit_on):
        raise click.UsageError("--index and --model bring their towers; --config, --glove and --fit-on are for "
                               "building one")
    loaded = [(p, *read_pairs(p)) for p in pairs]
    reports = []
    if model_dir is not None:
        from ..tower.model_dir import load_towers

        query_encoder, document_encoder, _ = load_towers(model_dir)
        reports = [evaluate_sts(query_encoder, a, b, s, name=p.name, document_encoder=document_encoder)
                   for p, a, b, s in loaded]
    elif index_dir is not None:
        from ..index.layout import read_manifest
        from ..tower.encoder import load_encoder

        m = read_manifest(index_dir)
        encoder = load_encoder(Path(index_dir) / m.query_tower_dir)
        # An index built with an untied model also carries its document tower: sentence2 goes through it.
        document = load_encoder(Path(index_dir) / m.document_tower_dir) if m.document_tower else None
        reports = [evaluate_sts(encoder, a, b, s, name=p.name, document_encoder=document) for p, a, b, s in loaded]
    else:
        from ..vectors.sources import load_vectors

        config = _eval_config(config_path, glove)
        vectors = load_vectors(config.embedding.model_name)
        fit = [t for f in fit_on for t in read_pairs(f)[0] + read_pairs(f)[1]]
        shared = sts_encoder(config, fit, vectors)[0] if fit else None
        for p, a, b, s in loaded:
            encoder = shared or sts_encoder(config, a + b, vectors)[0]
            reports.append(evaluate_sts(encoder, a, b, s, name=p.name))
    _emit_reports(reports, fmt)


@eval_group.command("recall")
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.option("--queries", "queries_file", type=click.Path(path_type=Path),
              help="Query file (text lines, JSONL, CSV or Parquet); default: queries sampled from the stored texts.")
@click.option("-k", "k", type=int, default=10, show_default=True, help="Neighbours per query.")
@click.option("-n", "n", type=int, default=1000, show_default=True, help="Queries to sample.")
@click.option("--seed", type=int, help="Seed of the sampled queries (default: the build's seed + 1, so not the "
                                      "queries it tuned on).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def eval_recall(index_dir, queries_file, k, n, seed, fmt):
    """Recall@k of the index in INDEX_DIR against exact search of its own shards, per query length."""
    from ..index.recall import index_recall
    from ..io.rows import read_queries

    texts = read_queries(queries_file, blank_lines=True)[1] if queries_file is not None else None
    r = index_recall(index_dir, texts, k=k, n=n, seed=seed)
    gone = r["left_out"]
    if texts is not None and (gone["empty"] or gone["no_known_word"]):
        parts = [f"{gone['empty']} empty" if gone["empty"] else "",
                 f"{gone['no_known_word']} with no word in the vocabulary" if gone["no_known_word"] else ""]
        note(f"{' and '.join(p for p in parts if p)} of {len(texts)} queries left out")
    if fmt == "json":
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"recall@{k} {r['recall']:.3f} over {r['queries']} queries")
    for name, b in r["buckets"].items():
        click.echo(f"  {name:>12}: {b['recall']:.3f} (95% lower bound {b['recall_lower_bound']:.3f}, "
                   f"{b['queries']} queries)")


