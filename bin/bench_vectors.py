"""How long bigger word vectors take to load: a GloVe-format text file of 400,000 words at 100,
200 and 300 dimensions (glove.6B's shape; random values, since the real files need a download),
parsed and cached on the first load, memory-mapped on later ones; and what a tower of each weighs.

measure → ``OUT/vectors.json`` → render ``OUT/vectors.md``; ``--render FILE`` re-renders.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import env, report  # noqa: E402


def write_glove_text(path: Path, words: int, dim: int, seed: int) -> None:
    """A Stanford GloVe text file of ``words`` x ``dim`` with values printed like the real ones (5 decimals)."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, words, 20_000):
            block = rng.standard_normal((min(20_000, words - start), dim)).astype(np.float32) * 0.4
            f.writelines(f"w{start + i} " + " ".join(f"{x:.5f}" for x in row) + "\n" for i, row in enumerate(block))


def measure(args, res: report.Results) -> None:
    import glovefaiss
    from glovefaiss.config import TokeniserConfig
    from glovefaiss.text.tokeniser import Tokeniser
    from glovefaiss.text.vocabulary import Vocabulary
    from glovefaiss.tower.encoder import TextEncoder, save_encoder

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for dim in [int(d) for d in args.dims.split(",")]:
        path = out / f"vectors-{args.words}x{dim}.txt"
        if not path.exists():
            env.log(f"writing {path}")
            write_glove_text(path, args.words, dim, args.seed)
        cache = out / f"cache-{dim}"
        if cache.exists():
            import shutil

            shutil.rmtree(cache)
        t0 = time.perf_counter()
        wv = glovefaiss.load_vectors(str(path), cache_dir=cache, progress=False)
        first = time.perf_counter() - t0
        later = []
        for _ in range(3):
            t0 = time.perf_counter()
            glovefaiss.load_vectors(str(path), cache_dir=cache, progress=False)
            later.append(time.perf_counter() - t0)
        tower = out / f"tower-{dim}"
        encoder = TextEncoder(Tokeniser(TokeniserConfig()), Vocabulary(wv.words), wv.matrix)
        save_encoder(encoder, tower)
        tower_bytes = sum(p.stat().st_size for p in tower.iterdir())
        rows.append({"dim": dim, "words": len(wv), "file_bytes": path.stat().st_size, "first_load_s": first,
                     "later_load_s": sorted(later)[1], "tower_bytes": tower_bytes,
                     "index_bytes_per_doc": 4 * dim})
        env.log(f"{dim}d: first load {first:.1f} s, later {sorted(later)[1] * 1000:.1f} ms")
        res["loads"] = rows
    res["machine"] = env.machine_info()


def render(data: dict) -> str:
    L = ["# Loading bigger word vectors", "", f"`{data['command']}` ({data['started']}).", "",
         env.describe_machine(data["machine"]) if "machine" in data else "", "", *report.unfinished(data)]
    L += report.table(["vectors", "file", "first load (parse + cache)", "later loads (memory map)", "query tower",
                       "flat index per 1M docs"],
                      [[f"{r['words']:,} x {r['dim']}", f"{r['file_bytes'] / 1e9:.2f} GB", f"{r['first_load_s']:.1f} s",
                        f"{r['later_load_s'] * 1000:.1f} ms", f"{r['tower_bytes'] / 1e6:.0f} MB",
                        f"{r['index_bytes_per_doc'] * 1e6 / 1e9:.2f} GB"] for r in data.get("loads", [])])
    return "\n".join(L) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(prog="bin/bench-vectors", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench-out/vectors", help="working directory (vector files, caches, results)")
    p.add_argument("--words", type=int, default=400_000)
    p.add_argument("--dims", default="100,200,300")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--render", metavar="RESULTS_JSON", help="render saved results without measuring")
    args = p.parse_args()
    env.set_prog("bench-vectors")
    return report.drive("bench-vectors", args, Path(args.out) / "vectors.json", measure, render,
                        lambda path: path.with_suffix(".md"))


if __name__ == "__main__":
    sys.exit(main())
