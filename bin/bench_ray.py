#!/usr/bin/env python
"""glovefaiss Ray benchmark: the same corpus built by the local engine and by Ray with 1 and 2 workers.

Each build is a ``glovefaiss build`` process, timed with the machine's background load. ``ray-1``
and ``ray-2`` start their own local Ray instance, as a user's would (one worker gets every CPU, two
share them); ``nodes-1`` and ``nodes-2`` join a simulated cluster of two one-CPU nodes started here,
so that the second worker adds a CPU. Per build: wall time, encoding
throughput, index time (train + add + tune), peak memory of the driver and of each worker, and
whether shards, texts and index.faiss are byte-identical to the local build's. Run through
``bin/bench-ray``; ``--render FILE`` re-renders saved results.
"""

from __future__ import annotations

import contextlib
import hashlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import report  # noqa: E402
from benchlib.corpus import GLOVE, zipf_corpus  # noqa: E402
from benchlib.env import describe_machine, log, machine_info, set_prog  # noqa: E402
from benchlib.measure import LoadMonitor, run_build  # noqa: E402

VARIANTS = {"local": [], "ray-1": ["--engine", "ray", "--workers", "1"], "ray-2": ["--engine", "ray", "--workers", "2"],
            "nodes-1": ["--engine", "ray", "--workers", "1"], "nodes-2": ["--engine", "ray", "--workers", "2"]}
# nodes-*: a simulated cluster of two one-CPU nodes, started here and joined with --ray-address,
# so that one worker and two workers have one CPU each: what adding a worker adds.
ON_NODES = ("nodes-1", "nodes-2")


def _digests(index_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(index_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(index_dir.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _identity(local: Path, other: Path, params: tuple[dict, dict]) -> dict:
    """Which files differ from the local build's; index.faiss compared with the same search parameters."""
    import faiss

    from glovefaiss.index.faiss_ops import set_params

    a, b = _digests(local), _digests(other)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    same_params = params[0] == params[1]
    index_same = "index.faiss" not in differ
    if not index_same and not same_params:
        loaded = [faiss.read_index(str(d / "index.faiss")) for d in (local, other)]
        for index in loaded:
            set_params(index, params[0])
        index_same = bytes(faiss.serialize_index(loaded[0])) == bytes(faiss.serialize_index(loaded[1]))
    return {"files": len(a), "differ": differ, "index_same_with_same_params": index_same, "same_params": same_params}


def measure(args, res: report.Results) -> None:
    from glovefaiss.vectors.sources import load_vectors

    res["machine"] = machine_info()
    corpus = args.out / f"zipf-{args.docs}-{args.seed}.parquet"
    res["corpus"] = zipf_corpus(corpus, args.docs, args.seed, load_vectors(GLOVE).words)
    monitor = LoadMonitor(on_step=lambda steps: res.__setitem__("load", steps))
    res["builds"] = {}
    with contextlib.ExitStack() as stack:
        address = None
        for name in args.variants:
            out = args.out / f"ray-bench-{name}"
            extra = ["--index", args.index, "--shard-rows", str(args.shard_rows), *VARIANTS[name]]
            if name in ON_NODES:
                address = address or stack.enter_context(_two_nodes())
                extra += ["--ray-address", address]
            with monitor.step(name):
                b = run_build(corpus, out, extra)
            _record(args, res, name, b, out)


@contextlib.contextmanager
def _two_nodes():
    """The address of a simulated two-node Ray cluster, one CPU a node, for the time of the context."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                            "object_store_memory": 1 << 30})
    cluster.add_node(num_cpus=1, object_store_memory=1 << 30)
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


def _record(args, res: report.Results, name: str, b: dict, out: Path) -> None:
    if name != "local" and "local" in res["builds"]:
        b["identity"] = _identity(args.out / "ray-bench-local", out,
                                  (res["builds"]["local"]["manifest"]["index"]["params"],
                                   b["manifest"]["index"]["params"]))
    res["builds"] = {**res["builds"], name: b}
    t = b["manifest"]["timings"]
    log(f"{name}: {b['wall_s']:.1f} s wall, encode {t['encode_s']:.1f} s, index {t['index_s']:.1f} s"
        + (f", differs from local in {b['identity']['differ'] or 'nothing'}" if "identity" in b else ""))


def render(data: dict) -> str:
    builds = data.get("builds", {})
    names = list(builds)
    docs = int(data["args"]["docs"])
    lines = [f"# glovefaiss Ray engine benchmark, {docs:,} documents", "",
             f"`{data['command']}` ({data['started']}); every figure from this one run.", "",
             "Machine: " + describe_machine(data["machine"]), "", *report.unfinished(data),
             *report.busy_warning(data.get("load", {}), data["machine"]["cpu_count"])]
    local = builds.get("local")
    rows = []

    def row(label, fn):
        rows.append([label] + [fn(builds[n]) for n in names])

    def t(b, key):
        return b["manifest"]["timings"][key]

    def eng(b):
        return b["manifest"].get("engine") or {}

    row("build wall time (s)", lambda b: f"{b['wall_s']:.1f}")
    row("wall time vs local", lambda b: f"{b['wall_s'] / local['wall_s']:.2f}x" if local else "-")
    row("encoding (s)", lambda b: f"{t(b, 'encode_s'):.1f}")
    row("encoding throughput (docs/s)", lambda b: f"{docs / t(b, 'encode_s'):,.0f}")
    row("index: train + add + tune (s)", lambda b: f"{t(b, 'index_s'):.1f}")
    row("· add (s)", lambda b: f"{b['manifest']['index'].get('add_s', 0):.1f}")
    row("other (vectors, tower, id lookup, Ray start/stop) (s)",
        lambda b: f"{b['wall_s'] - t(b, 'encode_s') - t(b, 'index_s'):.1f}")
    row("parts / threads per worker", lambda b: f"{eng(b).get('parts', '-')} / {eng(b).get('threads_per_worker', '-')}")
    row("driver peak RSS (MB)", lambda b: f"{b['max_rss_mb']:,.0f}" if b.get("max_rss_mb") else "-")
    row("worker peak RSS (MB)", lambda b: ", ".join(f"{x:,.0f}" for x in eng(b).get("worker_peak_rss_mb", [])) or "-")
    row("search params", lambda b: ", ".join(f"{k}={v}" for k, v in b["manifest"]["index"]["params"].items()) or "-")
    row("files differing from local", lambda b: (", ".join(b["identity"]["differ"]) or "none") if "identity" in b else "-")
    row("index.faiss identical (same params)",
        lambda b: str(b["identity"]["index_same_with_same_params"]) if "identity" in b else "-")
    lines += report.table([""] + names, rows)
    lines += [""]
    if local and "ray-1" in builds:
        lines += [f"Ray overhead with one worker (the whole machine): {builds['ray-1']['wall_s'] / local['wall_s']:.2f}x "
                  "the local wall time (target: within 1.5x)."]
    for one, two, what in (("ray-1", "ray-2", "on this machine's Ray instance, the first worker with both CPUs, "
                            "the two with one each"),
                           ("nodes-1", "nodes-2", "on a simulated cluster of two one-CPU nodes, one CPU a worker")):
        if one in builds and two in builds:
            lines += [f"Two workers encode {t(builds[one], 'encode_s') / t(builds[two], 'encode_s'):.2f}x as fast "
                      f"as one {what}."]
    lines += ["", "Driver peak RSS: `/usr/bin/time -v` of the `glovefaiss build` process; Ray's own processes "
              "(raylet, GCS) and the workers are not its waited-for children, so worker figures come from each "
              "worker's getrusage, recorded in the manifest's `engine` section.", ""]
    lines += report.load_table(data.get("load", {}))
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    p = report.corpus_parser("bench-ray", __doc__, "ray-1000000.json", "corpus, indexes, ray-<docs>.json/.md")
    p.add_argument("--index", default="ivf", help="--index for glovefaiss build")
    p.add_argument("--shard-rows", type=int, default=100_000, help="rows per shard: a Ray part each")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list of: " + ", ".join(VARIANTS))
    args = p.parse_args(argv)
    args.variants = report.comma_list(p, "--variants", args.variants, VARIANTS)
    return args


def main(argv=None) -> int:
    set_prog("bench-ray")
    args = parse_args(argv)
    results = args.out.absolute() / f"ray-{args.docs}.json"
    args.out = results.parent
    return report.drive("bench-ray", args, results, measure, render, lambda path: path.with_suffix(".md"))


if __name__ == "__main__":
    sys.exit(main())
