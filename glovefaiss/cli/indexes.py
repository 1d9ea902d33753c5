"""The index commands: build, query, info, add, delete, verify."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from ..index.hits import FORMATS as HIT_FORMATS
from ..index.info import params_text
from . import CORPUS, cli, engine_options, human_bytes, note, progress


@cli.command()
@CORPUS
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index directory to write.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="YAML config (may `extends` another).")
@click.option("--id-column", help="Column with document ids (default: id).")
@click.option("--text-column", help="Column with document text (default: text).")
@click.option("--glove", help="Word vectors: a gensim-data name or a path (default: glove-wiki-gigaword-50, bundled).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Documents encoded per batch (default: 16384).")
@click.option("--shard-rows", type=click.IntRange(min=1), help="Rows per Parquet shard (default: 1000000).")
@click.option("--threads", type=click.IntRange(min=1), help="Encoding threads (default: all cores).")
@click.option("--store-text/--no-store-text", default=None, help="Keep document texts in the shards (default: yes).")
@click.option("--index", "index_kind", type=click.Choice(["auto", "flat", "hnsw", "ivf", "ivf-fastscan", "ivf-pq", "ivf-sq8"]),
              help="Index family (default: auto, by corpus size and --max-index-memory).")
@click.option("--index-key", help="Any FAISS factory string, e.g. 'IVF4000,PQ50x4fsr,RFlat' (overrides --index).")
@click.option("--max-index-memory", help="Memory budget for the index, e.g. 4G (guides --index auto).")
@click.option("--target-recall", type=click.FloatRange(0, 1), help="Recall@10 that tuning must reach (default 0.95).")
@click.option("--tuning-queries", type=click.Path(path_type=Path),
              help="Queries to tune with: Parquet/JSONL/CSV (id, text) or one per line (default: windows of documents).")
@click.option("--overwrite", is_flag=True, help="Replace an existing index directory.")
@click.option("--resume", is_flag=True, help="Continue an interrupted build from its completed shards.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON on stdout.")
@click.option("--model", "model_dir", type=click.Path(path_type=Path),
              help="A trained model directory (glovefaiss train): documents through its document tower.")
@click.option("--columns", help="Extra corpus columns to store with each document and return in every hit, "
                                "e.g. title,url (config build.columns).")
@click.option("--adapt/--no-adapt", default=None,
              help="Train a self-supervised tower on the corpus first (kept in --out/model) and build through it "
                   "(build.adapt).")
@engine_options
def build(corpus, out, config_path, id_column, text_column, glove, batch_size, shard_rows, threads,
          store_text, index_kind, index_key, max_index_memory, target_recall, tuning_queries, overwrite, resume,
          as_json, model_dir, columns, adapt, engine, ray_address, workers):
    """Encode Parquet CORPUS files (or directories, or URIs pyarrow reads: s3://, gs://, hdfs://, file://)
    into an index at --out."""
    from ..config import check_engine, load_config
    from ..engine import build as run_build
    from ..index.tuning import bucket_summary

    if model_dir is not None:
        if glove is not None:
            raise click.UsageError("--glove cannot be combined with --model: the model fixes the word vectors")
        run_build = functools.partial(run_build, model_dir=model_dir)  # noqa: F811

    config = load_config(config_path).replace({"build.adapt": adapt}).replace({
        "build.id_column": id_column, "build.text_column": text_column, "embedding.model_name": glove,
        "build.batch_size": batch_size, "build.shard_rows": shard_rows, "build.threads": threads,
        "build.store_text": store_text, "build.index": index_kind, "build.index_key": index_key,
        "build.max_index_memory": max_index_memory, "build.target_recall": target_recall,
        "build.tuning_queries": str(tuning_queries) if tuning_queries is not None else None,
        "build.columns": columns,
        "build.engine": engine, "build.ray_address": ray_address, "build.workers": workers,
    })
    check_engine(config.build.engine, ray_address, workers)
    if config.build.adapt:
        if model_dir is not None:
            raise click.UsageError("--adapt trains its own model; it cannot be combined with --model")
        from ..train.adapt import adapt_and_build as run_build  # noqa: F811
    result = run_build(list(corpus), out, config=config, overwrite=overwrite, resume=resume, progress=progress())
    if as_json:
        click.echo(json.dumps(result.manifest.to_dict(), indent=2))
    m = result.manifest
    if "adapt" in m:
        a = m["adapt"]
        shown = ", ".join(f"pseudo {k} {v:.2f}" for k, v in a["best_metrics"].items())
        note(f"adapted: self-supervised tower trained on {a['sample_documents']:,} of {a['documents']:,} documents "
              f"in {a['train_seconds']:.1f} s (kept epoch {a['best_epoch']} of {a['epochs']}{f', {shown}' if shown else ''}; "
              f"{a['words_added']:,} words added); model in {result.out_dir / a['model_dir']}")
    resumed = m.timings.get("resumed_documents") or 0
    encoding = (f"{m.timings['docs_per_s']:,.0f} docs/s encoding" if m.timings.get("docs_per_s")
                else "nothing left to encode")
    if resumed:
        encoding += f"; {resumed:,} documents were encoded before the resume"
    note(
        f"built {result.out_dir}: {result.documents:,} documents in {result.seconds:.1f} s "
        f"({encoding}), OOV rate {result.oov_rate:.1%}, "
        f"{result.empty_documents:,} empty documents, index {human_bytes(result.index_bytes)} "
        f"(+ {'towers' if m.document_tower else 'query tower'} {human_bytes(result.tower_bytes)}), "
        f"anisotropy {m.anisotropy or 0:.3f} (mean cosine to the centroid)")
    if result.oov_rate >= HIGH_OOV_RATE and m.top_oov_words:
        note(f"unknown words most often: {', '.join(repr(w) for w, _ in m.top_oov_words[:10])} "
             f"(glovefaiss info {result.out_dir} lists them; check the vectors and the tokeniser settings)")
    tuning = m.index.get("tuning")
    if tuning:
        params = params_text(tuning["params"])
        if tuning.get("params_by_length"):  # the figures are with each length's setting (next line)
            params = f"a setting per query length ({params} for queries of unknown length)"
        lb = tuning.get("recall_lower_bound", tuning["recall"])
        short = ", ".join(tuning.get("short_buckets", []))
        verdict = ("" if tuning["reached"] else
                   f" - target {tuning['target_recall']} NOT reached{' for ' + short if short else ''} "
                   f"(short by {tuning['target_recall'] - lb:.3f})")
        note(
            f"index {m.index['type']} ({m.index['key']}): recall@{tuning['k']} {tuning['recall']:.3f} "
            f"(95% lower bound {lb:.3f}) "
            f"with {params}; single query p50 {tuning['p50_ms']:.3f} ms, p99 {tuning['p99_ms']:.3f} ms; "
            f"batch {tuning['batch_qps']:,.0f} queries/s{verdict}")
        if tuning.get("buckets"):
            note(bucket_summary(tuning))
    candidates = m.index.get("candidates", [])
    if candidates:
        note("index auto compared: " + compared_text(candidates, tuning["k"],
                                                     m.config.get("build", {}).get("auto_latency_ms")))


def compared_text(candidates: list[dict], k: int, budget_ms: float | None) -> str:
    """The families ``auto`` compared (a manifest's ``index.candidates``), forecasts named as such."""
    def one(c: dict) -> str:
        if c.get("forecast"):
            over = f" (over the {budget_ms} ms budget even with finer lists)" if c.get("priced_out") else ""
            return (f"IVF-Flat forecast over {c['nlist']} lists, not built: "
                    f"recall@{k} {c['recall']:.3f}, p50 {c['p50_ms']:.3f} ms{over}")
        return (f"{c['type']} ({c['key']}) recall@{k} {c['recall']:.3f}, p50 {c['p50_ms']:.3f} ms"
                + ("" if c["reached"] else ", target not reached"))
    return "; ".join(one(c) for c in candidates)


# An OOV rate from which the build names the unknown words (GloVe's English leaves 1-4% on news text).
HIGH_OOV_RATE = 0.10


def shown(values: list, most: int = 10) -> str:
    return ", ".join(map(str, values[:most])) + (", ..." if len(values) > most else "")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("text", nargs=-1)
@click.option("-k", "--top-k", "k", default=10, show_default=True, type=int, help="Hits per query.")
@click.option("--queries", type=click.Path(path_type=Path),
              help="Queries from Parquet, JSONL, CSV or TSV (columns id, text) or a text file (one per line).")
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
@engine_options
def query(index_dir, text, k, queries, like, fmt, output, batch_size, mmap, model_dir, engine, ray_address, workers):
    """Search INDEX_DIR for each TEXT (or each query of --queries, or documents like the ids given with --like)."""
    from ..index.search import Index

    if queries is not None and (text or like):
        raise click.UsageError("give query TEXT arguments, --like IDs or --queries FILE, not two of them")
    if queries is None and not text:
        raise click.UsageError("give at least one document ID with --like" if like else
                               "give at least one query TEXT, or --queries FILE")
    index = Index.load(index_dir, mmap=True if engine == "ray" else mmap)
    if model_dir is not None:
        from ..tower.model_dir import check_index_model

        check_index_model(index.manifest, index_dir, model_dir)
    from ..config import check_engine

    check_engine(engine or "local", ray_address, workers)
    if engine == "ray":
        from ..engine import write_batch_hits
        from ..io.rows import read_queries

        if like:
            raise click.UsageError("--like runs in this process; drop --engine ray")
        qids, qtexts = (read_queries(queries, blank_lines=True) if queries is not None
                        else (list(range(1, len(text) + 1)), list(text)))
        run = write_batch_hits(index_dir, qids, qtexts, k, output, fmt, ray_address=ray_address, workers=workers)
    elif like:
        run = index.write_like(list(text), k, output, fmt)
    elif queries is not None:
        run = index.search_file(queries, k, output, fmt, batch_size=batch_size)
    else:
        run = index.write_hits(list(range(1, len(text) + 1)), list(text), k, output, fmt, batch_size=batch_size)
    if run.empty:
        note(f"{len(run.empty)} of {run.queries} queries are empty and skipped: {shown(run.empty)}")
    if run.repeated:
        one = len(run.repeated) == 1
        note(f"query {'id' if one else 'ids'} {shown(run.repeated)} {'is' if one else 'are each'} given to more "
             f"than one query; their hits share {'it' if one else 'them'}")
    if run.unanswered:
        what = "documents have no word in the vocabulary" if like else "queries have no word in the vocabulary"
        note(f"{len(run.unanswered)} of {run.queries} {what} and get no hits: {shown(run.unanswered)}")
    if run.missed:
        note(f"{len(run.missed)} of {run.queries} {'documents' if like else 'queries'} found no hits although the "
             f"vocabulary knows their words: {shown(run.missed)}; the index's lists near them hold no vector "
             f"(see the build's warning): rebuild with fewer lists in --index-key, or --index auto")
    if output is not None:
        note(f"wrote {run.hits:,} {'hit' if run.hits == 1 else 'hits'} of {run.queries:,} "
             f"{'query' if run.queries == 1 else 'queries'} to {output} "
             f"({run.format})")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The summary as JSON on stdout.")
@click.option("--plot", "plot_path", type=click.Path(path_type=Path),
              help="Also draw the tuning curve (recall against latency per setting tried) to this PNG; "
                   "needs glovefaiss[plot].")
def info(index_dir, as_json, plot_path):
    """A short summary of INDEX_DIR: documents, vectors, index and tuning, sizes, provenance."""
    from ..index.info import summary

    s = summary(index_dir)
    if plot_path is not None:
        from ..index.layout import read_manifest
        from ..index.plot import tuning_curve

        note(f"tuning curve written to {tuning_curve(read_manifest(index_dir), plot_path)}")
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    idx, tuning, size = s["index"], s["tuning"], s["bytes"]
    tok = s["tokeniser"] or {}
    words = s["vectors"]["vocab_size"]
    words = f"{words:,}" if words is not None else "?"
    lines = [
        f"{index_dir}: {s['documents']:,} documents ({s['empty_documents']:,} empty: no known word), "
        f"{s['ids']} ids{', texts stored' if s['texts'] else ''}",
        f"vectors: {s['vectors']['source']} ({words} words x {s['dim']}), "
        f"{s['weighting']} pooling, tokeniser {tok.get('type')}"
        + "".join(f", {k.replace('_', ' ')}" for k, v in tok.items() if v is True)
        + (f", at most {tok['max_len']} tokens a text" if tok.get("max_len") else ""),
        *([f"unknown tokens: {s['oov_rate']:.1%}" + (f", most often {', '.join(map(repr, s['top_unknown_words']))}"
                                                      if s["top_unknown_words"] else "")]
          if s["oov_rate"] is not None else []),
        f"index: {idx['family']} ({idx['key']}), search with {params_text(idx['params'])}",
    ]
    if tuning:
        setting = (f"a setting per query length ({params_text(tuning['params'])} for queries of unknown length)"
                   if tuning.get("params_by_length") else params_text(tuning["params"]))
        lines.append(f"tuning: recall@{tuning['k']} {tuning['recall']:.3f} with {setting}, target "
                     f"{tuning['target_recall']} {'reached' if tuning['reached'] else 'NOT reached'}")
        if tuning.get("buckets"):
            from ..index.tuning import bucket_summary

            lines.append(bucket_summary(tuning))
        if s["candidates"]:
            lines.append("auto compared: " + compared_text(s["candidates"], tuning["k"], s["auto_latency_ms"]))
    towers = ", ".join(f"{k.replace('_', ' ')} {human_bytes(v)}" for k, v in size.items()
                       if k not in ("index", "shards") and v is not None)
    lines.append(f"sizes: index {human_bytes(size['index'] or 0)}, {towers}, shards {human_bytes(size['shards'])}")
    if s["model"]:
        lines.append(f"model: {s['model']['id'][:12]} ({s['model']['dir']})")
    lines.append(f"built from {', '.join(s['built_from']['files'])} by glovefaiss {s['glovefaiss_version']}; "
                 f"written {s['written_at']}")
    for a in s["additions"]:
        replaced = f" ({a['replaced']:,} of them replacing documents with the same id)" if a.get("replaced") else ""
        lines.append(f"added {a['documents']:,} documents from {', '.join(map(str, a['files']))}{replaced}")
    for d in s["deletions"]:
        lines.append(f"deleted {d['documents']:,} {'document' if d['documents'] == 1 else 'documents'}")
    click.echo("\n".join(lines))


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@CORPUS
@click.option("--id-column", help="Column with document ids (default: the one the index was built from).")
@click.option("--text-column", help="Column with document text (default: the one the index was built from).")
@click.option("--threads", type=click.IntRange(min=1), help="Encoding threads (default: all cores).")
@click.option("--upsert", is_flag=True, help="Replace the documents whose ids are already in the index.")
@engine_options
def add(index_dir, corpus, id_column, text_column, threads, upsert, engine, ray_address, workers):
    """Append Parquet CORPUS files (or URIs) to the index at INDEX_DIR."""
    from ..config import check_engine
    from ..engine import add as add_documents

    check_engine(engine or "local", ray_address, workers)

    r = add_documents(index_dir, list(corpus), threads=threads, id_column=id_column, text_column=text_column,
                      progress=progress(), upsert=upsert, engine=engine or "local", ray_address=ray_address,
                      workers=workers)
    replaced = f" ({r.replaced:,} of them replacing documents with the same id)" if upsert else ""
    note(f"added {r.added:,} documents{replaced} to {r.out_dir} in {r.seconds:.1f} s; it now holds {r.documents:,}")
    if r.retuned:
        t, k = r.retuned, r.manifest.index["tuning"]["k"]
        note(f"search retuned: {params_text(t['params_before'])} -> {params_text(t['params'])}, recall@{k} "
              f"{t['recall']:.3f}{'' if t['reached'] else ' (target not reached)'}, p50 {t['p50_ms']:.3f} ms")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
@click.argument("ids", nargs=-1)
@click.option("--ids-file", type=click.Path(path_type=Path, dir_okay=False),
              help="More ids to delete, one per line.")
@click.option("--missing-ok", is_flag=True, help="Skip ids the index does not hold instead of refusing.")
def delete(index_dir, ids, ids_file, missing_ok):
    """Remove the documents with IDS (and those of --ids-file) from the index at INDEX_DIR."""
    from ..index.delete import delete_documents

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
    note(f"deleted {r.deleted:,} {'document' if r.deleted == 1 else 'documents'} from {r.out_dir}{skipped} "
         f"in {r.seconds:.1f} s; it now holds {r.documents:,}")


@cli.command()
@click.argument("index_dir", type=click.Path(path_type=Path))
def verify(index_dir):
    """Check every file of INDEX_DIR against the sha256 sums in its manifest."""
    from ..index.layout import verify as run_verify

    checked = run_verify(index_dir)
    click.echo(f"{index_dir}: OK ({len(checked)} files match the manifest)")


