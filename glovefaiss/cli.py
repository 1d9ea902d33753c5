"""Command line: parse, call one library function, render. Errors become one-line messages."""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import sys
from pathlib import Path

import click

from .errors import GloveFaissError


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
@click.option("--adapt/--no-adapt", default=None,
              help="Train a self-supervised tower on the corpus first (kept in --out/model) and build through it "
                   "(build.adapt).")
def build(corpus, out, config_path, id_column, text_column, glove, batch_size, shard_rows, threads,
          store_text, index_kind, index_key, max_index_memory, target_recall, tuning_queries, overwrite, resume,
          as_json, model_dir, adapt):
    """Encode Parquet CORPUS files (or directories of them) into an index at --out."""
    from .config import load_config
    from .index.build import build as run_build

    if model_dir is not None:
        if glove is not None:
            raise click.UsageError("--glove cannot be combined with --model: the model fixes the word vectors")
        from .index.with_model import build_with_model

        run_build = functools.partial(build_with_model, model_dir=model_dir)  # noqa: F811

    config = load_config(config_path).replace({"build.adapt": adapt}).replace({
        "build.id_column": id_column, "build.text_column": text_column, "embedding.model_name": glove,
        "build.batch_size": batch_size, "build.shard_rows": shard_rows, "build.threads": threads,
        "build.store_text": store_text, "build.index": index_kind, "build.index_key": index_key,
        "build.max_index_memory": max_index_memory, "build.target_recall": target_recall,
        "build.tuning_queries": str(tuning_queries) if tuning_queries is not None else None,
    })
    if config.build.adapt:
        if model_dir is not None:
            raise click.UsageError("--adapt trains its own model; it cannot be combined with --model")
        from .train.adapt import adapt_and_build as run_build  # noqa: F811
    result = run_build(list(corpus), out, config=config, overwrite=overwrite, resume=resume, progress=_progress())
    if as_json:
        click.echo(json.dumps(result.manifest, indent=2))
    m = result.manifest
    if "adapt" in m:
        a = m["adapt"]
        shown = ", ".join(f"pseudo {k} {v:.2f}" for k, v in a["best_metrics"].items())
        _note(f"adapted: self-supervised tower trained on {a['sample_documents']:,} of {a['documents']:,} documents "
              f"in {a['train_seconds']:.1f} s (kept epoch {a['best_epoch']} of {a['epochs']}{f', {shown}' if shown else ''}; "
              f"{a['words_added']:,} words added); model in {result.out_dir / a['model_dir']}")
    _note(
        f"built {result.out_dir}: {result.documents:,} documents in {result.seconds:.1f} s "
        f"({m['timings']['docs_per_s'] or 0:,.0f} docs/s encoding), OOV rate {result.oov_rate:.1%}, "
        f"{result.empty_documents:,} empty documents, index {human_bytes(result.index_bytes)} "
        f"(+ {'towers' if 'document_tower' in m else 'query tower'} {human_bytes(result.tower_bytes)}), "
        f"anisotropy {m.get('anisotropy') or 0:.3f} (mean cosine to the centroid)")
    tuning = m["index"].get("tuning")
    if tuning:
        params = _params(tuning["params"])
        lb = tuning.get("recall_lower_bound", tuning["recall"])
        verdict = ("" if tuning["reached"] else
                   f" - target {tuning['target_recall']} NOT reached (short by {tuning['target_recall'] - lb:.3f})")
        _note(
            f"index {m['index']['type']} ({m['index']['key']}): recall@{tuning['k']} {tuning['recall']:.3f} "
            f"(95% lower bound {lb:.3f}) "
            f"with {params}; single query p50 {tuning['p50_ms']:.3f} ms, p99 {tuning['p99_ms']:.3f} ms; "
            f"batch {tuning['batch_qps']:,.0f} queries/s{verdict}")
    candidates = m["index"].get("candidates", [])
    if candidates:
        _note("index auto compared: " + "; ".join(
            f"{c['type']} ({c['key']}) recall@{tuning['k']} {c['recall']:.3f}, p50 {c['p50_ms']:.3f} ms"
            + ("" if c["reached"] else ", target not reached") for c in candidates))


FORMATS = ("table", "json", "jsonl", "csv", "trec")


def _render(hits: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(hits, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(h, ensure_ascii=False) + "\n" for h in hits)
    if fmt == "trec":
        return "".join(f"{h['query_id']} Q0 {h['id']} {h['rank']} {h['score']:.6f} glovefaiss\n" for h in hits)
    fields = ["query_id", "rank", "id", "score"] + (["text"] if hits and "text" in hits[0] else [])
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(hits)
        return buf.getvalue()
    rows = [[str(h["query_id"]), str(h["rank"]), str(h["id"]), f"{h['score']:.4f}"]
            + ([_snippet(h["text"])] if "text" in fields else []) for h in hits]
    widths = [max([len(f)] + [len(r[i]) for r in rows]) for i, f in enumerate(fields)]
    lines = ["  ".join(f.ljust(w) for f, w in zip(fields, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def _snippet(text: str | None, width: int = 80) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("text", nargs=-1)
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option("--queries", type=click.Path(path_type=Path),
              help="Queries from Parquet or JSONL (columns id, text) or a text file (one per line).")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--output", type=click.Path(path_type=Path), help="Write results here instead of stdout.")
@click.option("--mmap/--no-mmap", default=True, show_default=True,
              help="Memory-map the index instead of reading it (a one-shot query reads only what it needs).")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Check that the index was built with this trained model (refuse a mismatch).")
def query(index_dir, text, k, queries, fmt, output, mmap, model_dir):
    """Search INDEX_DIR for each TEXT (or each query of --queries)."""
    from .index.search import Index
    from .io.rows import read_queries

    if queries is not None and text:
        raise click.UsageError("give query TEXT arguments or --queries FILE, not both")
    if queries is None and not text:
        raise click.UsageError("give at least one query TEXT, or --queries FILE")
    qids, qtexts = read_queries(queries) if queries is not None else (list(range(1, len(text) + 1)), list(text))
    index = Index.load(index_dir, mmap=mmap)
    if model_dir is not None:
        from .tower.model_dir import check_index_model

        check_index_model(index.manifest, index_dir, model_dir)
    hits = index.hits(qtexts, k=k, query_ids=qids)
    answered = {h["query_id"] for h in hits}
    unanswered = [q for q in qids if q not in answered]  # with k >= 1, only queries without a known word
    if unanswered:
        shown = ", ".join(map(str, unanswered[:10])) + (", ..." if len(unanswered) > 10 else "")
        _note(f"{len(unanswered)} of {len(qids)} queries have no word in the vocabulary and get no hits: {shown}")
    rendered = _render(hits, fmt)
    if output is not None:
        output.write_text(rendered, encoding="utf-8")
    else:
        click.echo(rendered, nl=False)


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("corpus", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--id-column", help="Column with document ids (default: the one the index was built from).")
@click.option("--text-column", help="Column with document text (default: the one the index was built from).")
@click.option("--threads", type=click.IntRange(min=1), help="Encoding threads (default: all cores).")
def add(index_dir, corpus, id_column, text_column, threads):
    """Append Parquet CORPUS files to the index at INDEX_DIR."""
    from .index.add import add_documents

    r = add_documents(index_dir, list(corpus), threads=threads, id_column=id_column, text_column=text_column,
                      progress=_progress())
    _note(f"added {r.added:,} documents to {r.out_dir} in {r.seconds:.1f} s; it now holds {r.documents:,}")
    if r.retuned:
        t, k = r.retuned, r.manifest["index"]["tuning"]["k"]
        _note(f"search retuned: {_params(t['params_before'])} -> {_params(t['params'])}, recall@{k} "
              f"{t['recall']:.3f}{'' if t['reached'] else ' (target not reached)'}, p50 {t['p50_ms']:.3f} ms")


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
    from .config import load_config
    from .train.recipes import recommended

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
        from .train.selfsup import train_self_supervised

        s = train_self_supervised(data, out, config, epochs=epochs, seed=seed, id_column=id_column,
                                  text_column=text_column, title_column=title_column, overwrite=overwrite,
                                  threads=threads, progress=_progress())
    else:
        given = [f for f, v in (("--id-column", id_column), ("--text-column", text_column),
                                ("--title-column", title_column), ("--grow-vocabulary", grow is not None)) if v]
        if given:
            raise click.UsageError(f"{given[0]} is for --self-supervised training")
        from .train.fit import train as run_train

        s = run_train(data, out, config, epochs=epochs, seed=seed, validation=validation, holdout=holdout,
                      corpus=list(corpus), negatives=negatives, hard_negatives_k=hard_negatives_k,
                      overwrite=overwrite, threads=threads, progress=_progress(), init=init)
    if as_json:
        click.echo(json.dumps(s.info, indent=2))
    if recipe_note:
        _note(recipe_note)
    best = s.fit.best
    t = s.info["training"]
    shown = ", ".join(f"{k} {v:.2f}" for k, v in best.metrics.items())
    if t.get("objective") == "self_supervised":
        sample = "" if t["sampled_documents"] == t["documents"] else f" (a seeded sample of {t['documents']:,})"
        _note(f"self-supervised on {t['sampled_documents']:,} documents{sample}: {t['pairs']:,} pseudo pairs "
              f"({t['pairs_per_epoch']:,} a epoch, {t['epochs']} epochs), validated on {t['validation_queries']:,} "
              f"span queries of {t['validation_documents']:,} held-out documents; {t['words_added']:,} words added "
              f"(min count {t['grow_min_count']})")
        _note(f"trained {s.out_dir} (model {s.model_id[:12]}) in {s.seconds:.1f} s: kept epoch {best.epoch}"
              f"{f' (pseudo {shown})' if shown else ''}, peak memory {s.peak_rss_mb:.0f} MB")
        return
    _note(
        f"trained {s.out_dir} (model {s.model_id[:12]}) in {s.seconds:.1f} s: kept epoch {best.epoch}"
        f"{f' ({shown})' if shown else ''}, {t['seconds_per_epoch'] or 0:.2f} s/epoch, "
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
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="Build the index here through this trained model's document tower (glovefaiss train).")
def eval_retrieval(data, split, corpus, queries, qrels, index_dir, config_path, glove, out, metrics, fmt, per_query,
                   model_dir):
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
    if index_dir is not None and (config_path or glove or out or model_dir):
        raise click.UsageError("--index evaluates an existing index; --config, --glove, --out and --model are for "
                               "building one")
    if model_dir is not None and (config_path or glove):
        raise click.UsageError("--model brings its towers and word vectors; --config and --glove cannot be combined "
                               "with it")
    rd = load_retrieval(data, split, corpus=corpus, queries=queries, qrels=qrels)
    with tempfile.TemporaryDirectory(prefix="glovefaiss-eval-") as tmp:
        if index_dir is None:
            from .index.build import build as run_build

            if rd.corpus is None:
                raise click.UsageError("give --index, or a corpus (a BEIR directory or --corpus) to build one")
            if model_dir is not None:
                from .index.with_model import build_with_model

                run_build = functools.partial(build_with_model, model_dir=model_dir)  # noqa: F811
            corpus_file = corpus_to_parquet(rd.corpus, Path(tmp) / "corpus.parquet")
            index_dir = out or Path(tmp) / "index"
            result = run_build([corpus_file], index_dir, config=_eval_config(config_path, glove),
                               overwrite=out is not None, progress=_progress())
            _note(f"built {index_dir}: {result.documents:,} documents in {result.seconds:.1f} s"
                  f"{f' through model {model_dir}' if model_dir is not None else ''}")
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
        from .index.layout import TOWER_DIR, read_manifest
        from .tower.encoder import load_encoder

        m = read_manifest(index_dir)
        encoder = load_encoder(Path(index_dir) / m.get("query_tower", {}).get("dir", TOWER_DIR))
        # An index built with an untied model also carries its document tower: sentence2 goes through it.
        document = load_encoder(Path(index_dir) / m["document_tower"]["dir"]) if "document_tower" in m else None
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
