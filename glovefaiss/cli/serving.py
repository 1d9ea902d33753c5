"""The serve command: the HTTP service over one or more indexes."""

from __future__ import annotations

from pathlib import Path

import click

from . import cli, quiet


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
@click.option("-q", "--quiet", "serve_quiet", is_flag=True,
              help="No access log (one line per request otherwise); glovefaiss -q serve: only errors.")
def serve(index_dirs, names, host, port, api_key, max_k, max_query_chars, max_batch, max_body_bytes,
          reload_interval, serve_quiet):
    """Serve DIR... over HTTP: GET / (search page), GET/POST /search, GET /health, GET /info."""
    if names and len(names) != len(index_dirs):
        raise click.UsageError(f"give one --name per DIR ({len(index_dirs)} DIRs, {len(names)} names), or none")
    from ..serve import Limits, run

    indexes = dict(zip(names, index_dirs)) if names else list(index_dirs)
    if names and len(set(names)) != len(names):
        raise click.UsageError("--name values must differ")
    run(indexes, host=host, port=port, api_key=api_key or None, reload_interval=reload_interval,
        limits=Limits(max_k=max_k, max_query_chars=max_query_chars, max_batch=max_batch, max_body_bytes=max_body_bytes),
        access_log=not (serve_quiet or quiet()), log_level="warning" if quiet() else "info")


