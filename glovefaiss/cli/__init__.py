"""Command line: parse, call one library function, render. Errors become one-line messages."""

from __future__ import annotations

import logging
import sys

import click

from ..errors import GloveFaissError


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
    _configure_logging(verbose, quiet)


def _configure_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    if not verbose:
        # Other libraries' messages (gensim's download tracebacks, ...) only with --verbose: the
        # user gets glovefaiss's own lines and the one-line error.
        handler.addFilter(lambda record: record.name == "glovefaiss" or record.name.startswith("glovefaiss."))
    logging.basicConfig(level=level, handlers=[handler], force=True)


_LATE_FLAGS = (("verbose", ("-v", "--verbose"), "Debug logging and full tracebacks (also before the command)."),
               ("quiet", ("-q", "--quiet"), "Only errors on stderr (also before the command)."))


def _late_flag(ctx, param, value) -> None:
    """-v / -q given after the command name: what they do before it."""
    if value:
        obj = ctx.find_root().obj
        obj[param.name.removeprefix("late_")] = True
        _configure_logging(obj["verbose"], obj["quiet"])


def _accept_late_flags(command: click.Command) -> None:
    """Give ``command`` (and every command under it) -v/--verbose and -q/--quiet where it has no
    option of that name of its own (``serve --quiet`` is the access log's)."""
    taken = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for name, opts, help_text in _LATE_FLAGS:
        if not taken & set(opts):
            command.params.append(click.Option([*opts, f"late_{name}"], is_flag=True, expose_value=False, show_default=False,
                                               is_eager=True, callback=_late_flag, help=help_text))
    for sub in getattr(command, "commands", {}).values():
        _accept_late_flags(sub)


def quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and bool((ctx.find_root().obj or {}).get("quiet"))


def note(msg: str) -> None:
    """A summary line on stderr, unless ``--quiet``."""
    if not quiet():
        click.echo(msg, err=True)


def progress() -> bool | None:
    """Progress bars: off with ``--quiet``, else on when stderr is a terminal."""
    return False if quiet() else None


def human_bytes(n: float) -> str:
    """``1536`` → ``1.5 KiB`` (binary units, as ``--max-index-memory 4G`` means 4 GiB)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def engine_options(fn):
    """--engine, --ray-address and --workers (see docs/distributed.md)."""
    fn = click.option("--workers", type=click.IntRange(min=1),
                      help="Ray workers (default: one per CPU of the cluster).")(fn)
    fn = click.option("--ray-address",
                      help="Join this Ray cluster ('auto', 'ray://host:port'); default: a local Ray instance.")(fn)
    return click.option("--engine", type=click.Choice(["local", "ray"]),
                        help="Where to run: this process (local, the default) or a Ray cluster.")(fn)


# Corpus arguments stay strings: a Path would fold the '//' of an s3:// or file:// URI.
CORPUS = click.argument("corpus", nargs=-1, required=True, type=str)



# The commands register themselves on ``cli`` when imported.
from . import indexes, learning, serving  # noqa: E402, F401

for _command in cli.commands.values():
    _accept_late_flags(_command)


def main() -> None:
    cli(prog_name="glovefaiss")
