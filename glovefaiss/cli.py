"""Command line: parse, call one library function, render. Errors become one-line messages."""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from .errors import GloveFaissError
from .index.hits import FORMATS as HIT_FORMATS


class _Group(click.Group):
    """Turns library errors into ``click.ClickException`` unless ``--verbose`` asks for tracebacks."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GloveFaissError as e:
            if ctx.obj and ctx.obj.get("verbose"):
                raise
            raise click.ClickException(str(e)) from None


@click.group(cls=_Group)
@click.version_option(package_name="glovefaiss")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and full tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.pass_context
def cli(ctx, verbose, quiet):
    """Build and query FAISS indexes of GloVe mean-pool text vectors."""
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if not verbose:
        # Other libraries' messages (gensim's download tracebacks, ...) only with --verbose: the
        # user gets glovefaiss's own lines and the one-line error.
        handler.addFilter(lambda record: record.name == "glovefaiss" or record.name.startswith("glovefaiss."))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool((ctx.find_root().obj or {}).get("quiet"))


def _note(msg: str) -> None:
    """A summary line on stderr, unless ``--quiet``."""
    if not _quiet():
        click.echo(msg, err=True)


def _progress() -> bool | None:
    """Progress bars: off with ``--quiet``, else on when stderr is a terminal."""
    return False if _quiet() else None


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KB``."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@cli.command()
@click.argument("corpus", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index directory to write.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config (may `extends` another).")
@click.option("--id-column", help="Column with document ids (default: id).")
@click.option("--text-column", help="Column with document text (default: text).")
@click.option("--glove", help="Word vectors: a gensim-data name or a path (default: glove-wiki-gigaword-50, bundled).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Documents encoded per batch.")
@click.option("--shard-rows", type=click.IntRange(min=1), help="Rows per Parquet shard.")
@click.option("--threads", type=click.IntRange(min=1), help="Encoding threads (default: all cores).")
@click.option("--store-text/--no-store-text", default=None, help="Keep document texts in the shards (default: yes).")
@click.option("--index", "index_kind", type=click.Choice(["auto", "flat", "hnsw", "ivf", "ivf-fastscan", "ivf-pq", "ivf-sq8"]),
              help="Index family (default: auto, by corpus size and --max-index-memory).")
@click.option("--index-key", help="Any FAISS factory string, e.g. 'IVF4000,PQ50x4fsr,RFlat' (overrides --index).")
@click.option("--max-index-memory", help="Memory budget for the index, e.g. 4G (guides --index auto).")
@click.option("--target-recall", type=click.FloatRange(0, 1), help="Recall@10 that tuning must reach (default 0.95).")
@click.option("--tuning-queries", type=click.Path(path_type=Path),
              help="Queries to tune with: Parquet/JSONL (id, text) or one per line (default: windows of documents).")
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted build from its completed shards.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="A trained model directory (glovefaiss train): documents through its document tower.")
@click.option("--columns", help="Extra corpus columns to store with each document and return in every hit, "
                                "e.g. title,url (config build.columns).")
def build(corpus, out, config_path, id_column, text_column, glove, batch_size, shard_rows, threads,
          store_text, index_kind, index_key, max_index_memory, target_recall, tuning_queries, overwrite, resume,
          as_json, model_dir, columns):
    """Encode Parquet CORPUS files (or directories of them) into an index at --out."""
    from .config import load_config
    from .index.build import build as run_build
    from .index.tuning import bucket_summary

    if model_dir is not None:
        if glove is not None:
            raise click.UsageError("--glove cannot be combined with --model: the model fixes the word vectors")
        from .index.with_model import build_with_model

        run_build = functools.partial(build_with_model, model_dir=model_dir)  # noqa: F811

    config = load_config(config_path).replace({
        "build.id_column": id_column, "build.text_column": text_column, "embedding.model_name": glove,
        "build.batch_size": batch_size, "build.shard_rows": shard_rows, "build.threads": threads,
        "build.store_text": store_text, "build.index": index_kind, "build.index_key": index_key,
        "build.max_index_memory": max_index_memory, "build.target_recall": target_recall,
        "build.tuning_queries": str(tuning_queries) if tuning_queries is not None else None,
        "build.columns": columns,
    })
    result = run_build(list(corpus), out, config=config, overwrite=overwrite, resume=resume, progress=_progress())
    if as_json:
        click.echo(json.dumps(result.manifest.to_dict(), indent=2))
    m = result.manifest
    _note(
        f"built {result.out_dir}: {result.documents:,} documents in {result.seconds:.1f} s "
        f"({m.timings['docs_per_s'] or 0:,.0f} docs/s encoding), OOV rate {result.oov_rate:.1%}, "
        f"{result.empty_documents:,} empty documents, index {human_bytes(result.index_bytes)} "
        f"(+ {'towers' if m.document_tower else 'query tower'} {human_bytes(result.tower_bytes)}), "
        f"anisotropy {m.anisotropy or 0:.3f} (mean cosine to the centroid)")
    tuning = m.index.get("tuning")
    if tuning:
        params = _params(tuning["params"])
        if tuning.get("params_by_length"):  # the figures are with each length's setting (next line)
            params = f"a setting per query length ({params} for any length)"
        lb = tuning.get("recall_lower_bound", tuning["recall"])
        short = ", ".join(tuning.get("short_buckets", []))
        verdict = ("" if tuning["reached"] else
                   f" - target {tuning['target_recall']} NOT reached{' for ' + short if short else ''} "
                   f"(short by {tuning['target_recall'] - lb:.3f})")
        _note(
            f"index {m.index['type']} ({m.index['key']}): recall@{tuning['k']} {tuning['recall']:.3f} "
            f"(95% lower bound {lb:.3f}) "
            f"with {params}; single query p50 {tuning['p50_ms']:.3f} ms, p99 {tuning['p99_ms']:.3f} ms; "
            f"batch {tuning['batch_qps']:,.0f} queries/s{verdict}")
        if tuning.get("buckets"):
            _note(bucket_summary(tuning))
    candidates = m.index.get("candidates", [])
    if candidates:
        _note("index auto compared: " + "; ".join(
            f"{c['type']} ({c['key']}) recall@{tuning['k']} {c['recall']:.3f}, p50 {c['p50_ms']:.3f} ms"
            + ("" if c["reached"] else ", target not reached") for c in candidates))


def _shown(values: list, most: int = 10) -> str:
    return ", ".join(map(str, values[:most])) + (", ..." if len(values) > most else "")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("text", nargs=-1)
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option("--queries", type=click.Path(path_type=Path),
              help="Queries from Parquet or JSONL (columns id, text) or a text file (one per line).")
@click.option("--like", is_flag=True, help="TEXT arguments are document ids: find the documents nearest to each.")
@click.option("--format", "fmt", type=click.Choice(HIT_FORMATS),
              help="Hits format [default: from --output's suffix (.parquet, .jsonl, .json, .csv, .trec), else table]")
@click.option("--output", type=click.Path(path_type=Path), help="Write results here instead of stdout.")
@click.option("--batch-size", default=1024, show_default=True, type=click.IntRange(min=1),
              help="Queries searched (and hits written) per batch.")
@click.option("--mmap/--no-mmap", default=True, show_default=True,
              help="Memory-map the index instead of reading it (a one-shot query reads only what it needs).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Check that the index was built with this trained model (refuse a mismatch).")
def query(index_dir, text, k, queries, like, fmt, output, batch_size, mmap, model_dir):
    """Search INDEX_DIR for each TEXT (or each query of --queries, or documents like the ids given with --like)."""
    from .index.search import Index

    if queries is not None and (text or like):
        raise click.UsageError("give query TEXT arguments, --like IDs or --queries FILE, not two of them")
    if queries is None and not text:
        raise click.UsageError("give at least one document ID with --like" if like else
                               "give at least one query TEXT, or --queries FILE")
    index = Index.load(index_dir, mmap=mmap)
    if model_dir is not None:
        from .tower.model_dir import check_index_model

        check_index_model(index.manifest, index_dir, model_dir)
    if like:
        run = index.write_like(list(text), k, output, fmt)
    elif queries is not None:
        run = index.search_file(queries, k, output, fmt, batch_size=batch_size)
    else:
        run = index.write_hits(list(range(1, len(text) + 1)), list(text), k, output, fmt, batch_size=batch_size)
    if run.empty:
        _note(f"{len(run.empty)} of {run.queries} queries are empty and skipped: {_shown(run.empty)}")
    if run.unanswered:
        what = "documents have no word in the vocabulary" if like else "queries have no word in the vocabulary"
        _note(f"{len(run.unanswered)} of {run.queries} {what} and get no hits: {_shown(run.unanswered)}")
    if output is not None:
        _note(f"wrote {run.hits:,} hits of {run.queries:,} {'query' if run.queries == 1 else 'queries'} to {output} "
              f"({run.format})")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON on stdout.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Also draw the tuning curve (recall against latency per setting tried) to this PNG; "
                   "needs glovefaiss[plot].")
def info(index_dir, as_json, plot_path):
    """A short summary of INDEX_DIR: documents, vectors, index and tuning, sizes, provenance."""
    from .index.info import summary

    s = summary(index_dir)
    if plot_path is not None:
        from .index.layout import read_manifest
        from .index.plot import tuning_curve

        _note(f"tuning curve written to {tuning_curve(read_manifest(index_dir), plot_path)}")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    idx, tuning, size = s["index"], s["tuning"], s["bytes"]
    tok = s["tokeniser"] or {}
    lines = [
        f"{index_dir}: {s['documents']:,} documents ({s['empty_documents']:,} empty: no known word), "
        f"{s['ids']} ids{', texts stored' if s['texts'] else ''}",
        f"vectors: {s['vectors']['source']} ({s['vectors']['vocab_size']:,} words x {s['dim']}), "
        f"{s['weighting']} pooling, tokeniser {tok.get('type')}"
        + "".join(f", {k.replace('_', ' ')}" for k, v in tok.items() if v is True),
        f"index: {idx['family']} ({idx['key']}), search with {_params(idx['params'])}",
    ]
    if tuning:
        setting = (f"a setting per query length ({_params(tuning['params'])} for any length)"
                   if tuning.get("params_by_length") else _params(tuning["params"]))
        lines.append(f"tuning: recall@{tuning['k']} {tuning['recall']:.3f} with {setting}, target "
                     f"{tuning['target_recall']} {'reached' if tuning['reached'] else 'NOT reached'}")
        if tuning.get("buckets"):
            from .index.tuning import bucket_summary

            lines.append(bucket_summary(tuning))
    towers = ", ".join(f"{k.replace('_', ' ')} {human_bytes(v)}" for k, v in size.items()
                       if k not in ("index", "shards") and v is not None)
    lines.append(f"sizes: index {human_bytes(size['index'] or 0)}, {towers}, shards {human_bytes(size['shards'])}")
    if s["model"]:
        lines.append(f"model: {s['model']['id'][:12]} ({s['model']['dir']})")
    lines.append(f"built from {', '.join(s['built_from']['files'])} by glovefaiss {s['glovefaiss_version']}; "
                 f"written {s['written_at']}")
    for a in s["additions"]:
        lines.append(f"added {a['documents']:,} documents from {', '.join(map(str, a['files']))}")
    if s["deletions"]:
        lines.append(f"deletions: {len(s['deletions'])}")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("corpus", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--id-column", help="Column with document ids (default: the one the index was built from).")
@click.option("--text-column", help="Column with document text (default: the one the index was built from).")
@click.option("--threads", type=click.IntRange(min=1), help="Encoding threads (default: all cores).")
@click.option("--upsert", is_flag=True, help="Replace the documents whose ids are already in the index.")
def add(index_dir, corpus, id_column, text_column, threads, upsert):
    """Append Parquet CORPUS files to the index at INDEX_DIR."""
    from .index.add import add_documents

    r = add_documents(index_dir, list(corpus), threads=threads, id_column=id_column, text_column=text_column,
                      progress=_progress(), upsert=upsert)
    replaced = f" ({r.replaced:,} of them replacing documents with the same id)" if upsert else ""
    _note(f"added {r.added:,} documents{replaced} to {r.out_dir} in {r.seconds:.1f} s; it now holds {r.documents:,}")
    if r.retuned:
        t, k = r.retuned, r.manifest.index["tuning"]["k"]
        _note(f"search retuned: {_params(t['params_before'])} -> {_params(t['params'])}, recall@{k} "
              f"{t['recall']:.3f}{'' if t['reached'] else ' (target not reached)'}, p50 {t['p50_ms']:.3f} ms")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("ids", nargs=-1)
@click.option("--ids-file", type=click.Path(path_type=Path, dir_okay=False),
              help="More ids to delete, one per line.")
@click.option("--missing-ok", is_flag=True, help="Skip ids the index does not hold instead of refusing.")
def delete(index_dir, ids, ids_file, missing_ok):
    """Remove the documents with IDS (and those of --ids-file) from the index at INDEX_DIR."""
    from .index.delete import delete_documents

    ids = list(ids)
    if ids_file is not None:
        try:
            ids += [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as e:
            raise click.BadParameter(f"cannot read {ids_file} ({e.strerror})", param_hint="'--ids-file'") from None
    if not ids:
        raise click.UsageError("give at least one ID, or --ids-file FILE")
    r = delete_documents(index_dir, ids, missing_ok=missing_ok)
    skipped = f" ({len(r.missing):,} ids not in the index, skipped)" if r.missing else ""
    _note(f"deleted {r.deleted:,} documents from {r.out_dir}{skipped} in {r.seconds:.1f} s; it now holds {r.documents:,}")


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
def verify(index_dir):
    """Check every file of INDEX_DIR against the sha256 sums in its manifest."""
    from .index.layout import verify as run_verify

    checked = run_verify(index_dir)
    click.echo(f"{index_dir}: OK ({len(checked)} files match the manifest)")


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
def train(data, out, config_path, epochs, seed, validation, holdout, corpus, loss, negatives, hard_negatives_k,
          lr, ema, spread, batch_size, hidden_dim, trainable, overwrite, threads, as_json):
    """Train a two-tower model on DATA and write it to --out.

    DATA: (query, positive[, negative]) pairs (Parquet/JSONL), a BEIR directory (its train split)
    or one of its qrels/SPLIT.tsv files, or scored sentence pairs (CSV/TSV/Parquet).
    """
    from .config import load_config
    from .train.fit import train as run_train

    config = load_config(config_path).replace({
        "loss.type": loss, "optimizer.lr": lr, "optimizer.ema": ema, "loss.spread": spread,
        "batch_size": batch_size,
        "encoder.hidden_dim": hidden_dim, "embedding.trainable": trainable,
    })
    s = run_train(data, out, config, epochs=epochs, seed=seed, validation=validation, holdout=holdout,
                  corpus=list(corpus), negatives=negatives, hard_negatives_k=hard_negatives_k, overwrite=overwrite,
                  threads=threads, progress=_progress())
    if as_json:
        click.echo(json.dumps(s.info, indent=2))
    best = s.fit.best
    shown = ", ".join(f"{k} {v:.2f}" for k, v in best.metrics.items())
    _note(
        f"trained {s.out_dir} (model {s.model_id[:12]}) in {s.seconds:.1f} s: kept epoch {best.epoch}"
        f"{f' ({shown})' if shown else ''}, {s.info['training']['seconds_per_epoch'] or 0:.2f} s/epoch, "
        f"peak memory {s.peak_rss_mb:.0f} MB")


@cli.group("eval")
def eval_group():
    """Measure quality: retrieval metrics (BEIR data) or STS correlations."""


def _eval_config(config_path, glove):
    from .config import load_config

    return load_config(config_path).replace({"embedding.model_name": glove})


def _emit_reports(reports, fmt: str, per_query: bool = False) -> None:
    from .evaluation.retrieval import render_table

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
def eval_retrieval(data, split, corpus, queries, qrels, index_dir, config_path, glove, out, metrics, fmt, per_query):
    """nDCG@10, Recall@10/100, MRR@10, MAP@100 (or the --metric ones) of an index on DATA (a BEIR
    directory) or on --queries/--qrels; without --index, an index of the corpus is built first (--config, --glove)."""
    import tempfile

    from .evaluation.metrics import EvalError, parse_metrics
    from .evaluation.retrieval import RETRIEVAL_METRICS, corpus_to_parquet, evaluate_retrieval, load_retrieval
    from .index.search import Index

    try:
        metrics = parse_metrics(metrics) if metrics else list(RETRIEVAL_METRICS)
    except EvalError as e:
        raise click.BadParameter(str(e), param_hint="'--metric'") from None
    if data is None and (queries is None or qrels is None):
        raise click.UsageError("give a BEIR directory DATA, or --queries and --qrels")
    if index_dir is not None and (config_path or glove or out):
        raise click.UsageError("--index evaluates an existing index; --config, --glove and --out are for building one")
    rd = load_retrieval(data, split, corpus=corpus, queries=queries, qrels=qrels)
    with tempfile.TemporaryDirectory(prefix="glovefaiss-eval-") as tmp:
        if index_dir is None:
            from .index.build import build as run_build

            if rd.corpus is None:
                raise click.UsageError("give --index, or a corpus (a BEIR directory or --corpus) to build one")
            corpus_file = corpus_to_parquet(rd.corpus, Path(tmp) / "corpus.parquet")
            index_dir = out or Path(tmp) / "index"
            result = run_build([corpus_file], index_dir, _eval_config(config_path, glove), overwrite=out is not None,
                               progress=_progress())
            _note(f"built {index_dir}: {result.documents:,} documents in {result.seconds:.1f} s")
        report = evaluate_retrieval(Index.load(index_dir), rd, metrics,
                                    name=f"{rd.name}/{split}" if data is not None else rd.name)
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
    from .evaluation.sts import evaluate_sts, read_pairs, sts_encoder

    if index_dir is not None and model_dir is not None:
        raise click.UsageError("give --index or --model, not both")
    if (index_dir is not None or model_dir is not None) and (config_path or glove or fit_on):
        raise click.UsageError("--index and --model bring their towers; --config, --glove and --fit-on are for "
                               "building one")
    loaded = [(p, *read_pairs(p)) for p in pairs]
    reports = []
    if model_dir is not None:
        from .tower.model_dir import load_towers

        query_encoder, document_encoder, _ = load_towers(model_dir)
        reports = [evaluate_sts(query_encoder, a, b, s, name=p.name, document_encoder=document_encoder)
                   for p, a, b, s in loaded]
    elif index_dir is not None:
        from .index.layout import read_manifest
        from .tower.encoder import load_encoder

        m = read_manifest(index_dir)
        encoder = load_encoder(Path(index_dir) / m.query_tower_dir)
        # An index built with an untied model also carries its document tower: sentence2 goes through it.
        document = load_encoder(Path(index_dir) / m.document_tower_dir) if m.document_tower else None
        reports = [evaluate_sts(encoder, a, b, s, name=p.name, document_encoder=document) for p, a, b, s in loaded]
    else:
        from .vectors.sources import load_vectors

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
              help="Query file (text lines, JSONL or Parquet); default: queries sampled from the stored texts.")
@click.option("-k", "k", type=click.IntRange(1), default=10, show_default=True)
@click.option("-n", "n", type=click.IntRange(1), default=1000, show_default=True, help="Queries to sample.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def eval_recall(index_dir, queries_file, k, n, fmt):
    """Recall@k of the index in INDEX_DIR against exact search of its own shards, per query length."""
    from .index.recall import index_recall
    from .io.rows import read_queries

    texts = read_queries(queries_file)[1] if queries_file is not None else None
    r = index_recall(index_dir, texts, k=k, n=n)
    if fmt == "json":
        click.echo(json.dumps(r, indent=2))
        return
    click.echo(f"recall@{k} {r['recall']:.3f} over {r['queries']} queries")
    for name, b in r["buckets"].items():
        click.echo(f"  {name:>12}: {b['recall']:.3f} (95% lower bound {b['recall_lower_bound']:.3f}, "
                   f"{b['queries']} queries)")


@cli.command()
@click.argument("index_dirs", metavar="DIR...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--name", "names", multiple=True,
              help="Name of each DIR, in order (default: its base name); the first is the default index.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--api-key", envvar="GLOVEFAISS_API_KEY", show_envvar=True,
              help="Require this key in the X-API-Key header of /search and /info.")
@click.option("--max-k", default=100, show_default=True, type=click.IntRange(min=1), help="Largest k.")
@click.option("--max-query-chars", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Longest query text, in characters.")
@click.option("--max-batch", default=1000, show_default=True, type=click.IntRange(min=1),
              help="Most queries in one POST /search.")
@click.option("--max-body-bytes", default=1 << 20, show_default=True, type=click.IntRange(min=1),
              help="Largest request body.")
@click.option("--reload-interval", default=0.5, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between checks for a replaced index directory (0: only on SIGHUP).")
@click.option("--quiet", "serve_quiet", is_flag=True, help="No access log (one line per request otherwise).")
def serve(index_dirs, names, host, port, api_key, max_k, max_query_chars, max_batch, max_body_bytes,
          reload_interval, serve_quiet):
    """Serve DIR... over HTTP: GET / (search page), GET/POST /search, GET /health, GET /info."""
    if names and len(names) != len(index_dirs):
        raise click.UsageError(f"give one --name per DIR ({len(index_dirs)} DIRs, {len(names)} names), or none")
    from .serve import Limits, run

    indexes = dict(zip(names, index_dirs)) if names else list(index_dirs)
    if names and len(set(names)) != len(names):
        raise click.UsageError("--name values must differ")
    quiet = serve_quiet or _quiet()
    run(indexes, host=host, port=port, api_key=api_key or None, reload_interval=reload_interval,
        limits=Limits(max_k=max_k, max_query_chars=max_query_chars, max_batch=max_batch, max_body_bytes=max_body_bytes),
        access_log=not quiet, log_level="warning" if quiet else "info")


def main() -> None:
    cli(prog_name="glovefaiss")
