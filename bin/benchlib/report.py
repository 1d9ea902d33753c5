"""Raw results saved as they are measured, and the Markdown pieces reports are made of."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

SCHEMA = 1


class Results:
    """A benchmark's raw results, rewritten to ``path`` (atomically) after every section, so that
    a failure later in the run, or in rendering, loses nothing measured before it."""

    def __init__(self, path: Path, kind: str, args: dict):
        self.path = Path(path)
        self.data: dict = {"kind": kind, "schema": SCHEMA, "started": time.strftime("%Y-%m-%d %H:%M"),
                           "command": shlex.join(["bin/" + kind, *sys.argv[1:]]), "args": args}
        self.save()

    def __setitem__(self, section: str, value) -> None:
        self.data[section] = value
        self.save()

    def __getitem__(self, section: str):
        return self.data[section]

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)

    def finish(self) -> dict:
        """Mark the run complete; returns the results as a reader of the file sees them."""
        self["finished"] = time.strftime("%Y-%m-%d %H:%M")
        return load(self.path, self.data["kind"])


def load(path: Path, kind: str) -> dict:
    """Results written by :class:`Results` for a benchmark of ``kind``."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("kind") != kind:
        raise ValueError(f"{path} holds {data.get('kind')!r} results, not {kind!r}")
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path} has results schema {data.get('schema')}; this script reads {SCHEMA}")
    return data


def table(header: list[str], rows: list[list], align: str | None = None) -> list[str]:
    """Markdown table lines; ``align``: one letter per column, ``l`` or ``r`` (default: first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def load_table(steps: dict) -> list[str]:
    """The *Background load* section: cores busy in other processes while each step ran."""
    rows = [[name, f"{r['wall_s']:.1f}", f"{r['own_cores']:.2f}", f"{r.get('other_cores', float('nan')):.2f}",
             f"{r.get('steal_cores', float('nan')):.2f}"] for name, r in steps.items()]
    return ["## Background load", "",
            "The machine is shared; cores busy in *other* processes while each step ran (this process and its "
            "children excluded), and cores stolen by the hypervisor:", "",
            *table(["step", "wall s", "this run, cores", "others, cores", "steal, cores"], rows), ""]


def busy_warning(steps: dict, cpu_count: int) -> list[str]:
    """A warning paragraph when other processes kept more than a quarter of a core busy."""
    busy = max((r.get("other_cores", 0.0) for r in steps.values()), default=0.0)
    if busy <= 0.25:
        return []
    return [f"**Warning: the machine was shared.** Other processes kept up to {busy:.1f} of {cpu_count} cores "
            "busy during the measurements (see *Background load*); multi-threaded figures suffer most.", ""]


def unfinished(data: dict) -> list[str]:
    """A note for results of a run that stopped before its end."""
    if data.get("finished"):
        return []
    return ["**Partial results:** the run stopped before its end; sections it did not reach are missing.", ""]


def drive(kind: str, args, results_path: Path, measure: Callable[[object, Results], None],
          render: Callable[[dict], str], report_path: Callable[[Path], Path]) -> int:
    """A benchmark script's main: with ``args.render`` set, render that results file; else
    measure into a new ``results_path`` (saved section by section), then render it. The report
    goes to ``report_path(results file)`` and stdout. Returns the exit status."""
    from .env import BenchError, log

    try:
        if args.render:
            path = Path(args.render)
            data = load(path, kind)
        else:
            t0 = time.perf_counter()
            res = Results(results_path, kind, {k: str(v) for k, v in vars(args).items()})
            try:
                measure(args, res)
            finally:
                log(f"raw results in {res.path}")
            log(f"measured in {time.perf_counter() - t0:.0f} s")
            path, data = res.path, res.finish()
        text = render(data)
        out = report_path(path)
        out.write_text(text, encoding="utf-8")
        sys.stdout.write(text)
        log(f"report in {out}")
    except BenchError as e:
        print(f"bin/{kind}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug or a library failure: show where, and fail
        traceback.print_exc()
        print(f"bin/{kind}: error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def corpus_parser(kind: str, doc: str, results_name: str, out_help: str) -> argparse.ArgumentParser:
    """The options every corpus benchmark takes (--docs, --out, --seed, --render); add the script's own."""
    from .env import ROOT

    p = argparse.ArgumentParser(prog=f"bin/{kind}", description=doc.splitlines()[0],
                                epilog=f"Re-render: bin/{kind} --render bench-out/{results_name}")
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "bench-out", help=out_help)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON", help="render saved results without measuring")
    return p


def comma_list(p: argparse.ArgumentParser, option: str, value: str, allowed) -> list[str]:
    """A comma-separated option's names, refusing (through ``p``) any not in ``allowed`` or none at all."""
    names = [v for v in value.split(",") if v]
    unknown = sorted(set(names) - set(allowed))
    if unknown or not names:
        p.error(f"{option}: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(allowed)}")
    return names
