"""The tuning curve of an index: recall against single-query latency for every setting the build tried."""

from __future__ import annotations

from pathlib import Path

from ..errors import GloveFaissError
from .info import params_text

MISSING = "drawing needs matplotlib: pip install 'glovefaiss[plot]'"


class PlotError(GloveFaissError):
    """The plot cannot be drawn (matplotlib missing, or nothing was tuned)."""


def _worst(entry: dict) -> float:
    buckets = entry.get("buckets") or {}
    return min(b["recall"] for b in buckets.values()) if buckets else entry["recall"]


def curves(index_info: dict) -> list[dict]:
    """[{"family", "key", "tried", "params"}] of every tuned candidate, the kept one first."""
    tuning = index_info.get("tuning")
    if not tuning:
        return []
    out = [{"family": index_info["type"], "key": index_info["key"], "tried": tuning["tried"],
            "params": index_info["params"], "kept": True}]
    for c in index_info.get("candidates", []):
        if c["key"] != index_info["key"] and c.get("tried"):
            out.append({"family": c["type"], "key": c["key"], "tried": c["tried"], "params": c["params"],
                        "kept": False, "forecast": bool(c.get("forecast"))})
    return out


def tuning_curve(manifest, path: str | Path) -> Path:
    """Draw the tuning curve of ``manifest`` (a Manifest or its dict) to ``path`` (PNG, SVG, PDF).

    One line per family tried: the worst query-length bucket's recall against single-query
    p50; the kept family's buckets as thin lines, the target as a horizontal line and the kept
    setting marked.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        raise PlotError(MISSING) from None
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise PlotError(f"cannot draw {path}: name a .png, .svg or .pdf file (matplotlib writes "
                        f"{', '.join(sorted(formats))})")
    info = manifest["index"] if isinstance(manifest, dict) else manifest.index
    lines = curves(info)
    if not lines:
        raise PlotError(f"index {info.get('type')} was not tuned (exact search): there is no curve to draw")
    tuning = info["tuning"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    kept_kf = tuning["params"].get("k_factor")
    for line in lines:
        for kf in sorted({e.get("k_factor") for e in line["tried"]}, key=lambda v: -1 if v is None else v):
            # In order of search effort: sorted by the measured p50, timing noise drew zig-zags.
            group = sorted((e for e in line["tried"] if e.get("k_factor") == kf and e.get("p50_ms")),
                           key=lambda e: (e.get("nprobe") or e.get("efSearch") or 0, e["p50_ms"]))
            if not group:
                continue
            label = f"{line['family']} ({line['key']})" + (f" k_factor {kf:g}" if kf is not None else "")
            if line.get("forecast"):  # computed, not timed: grey and dashed
                ax.plot([e["p50_ms"] for e in group], [_worst(e) for e in group], marker="o", ms=3, lw=1,
                        ls="--", color="grey", label=label + ", forecast, not built")
                continue
            ax.plot([e["p50_ms"] for e in group], [_worst(e) for e in group], marker="o", ms=3,
                    lw=1.5 if line["kept"] else 1, label=label + ", worst bucket")
            if line["kept"] and kf == kept_kf:
                for name in group[0].get("buckets", {}):
                    ax.plot([e["p50_ms"] for e in group], [e["buckets"][name]["recall"] for e in group],
                            lw=0.7, ls=":", label=f"  {name}")
    kept = next((e for e in tuning["tried"] if all(e.get(k) == v for k, v in tuning["params"].items())), None)
    if kept is not None:
        ax.plot([kept["p50_ms"]], [_worst(kept)], marker="*", ms=14, color="black", ls="none",
                label="kept: " + params_text(tuning["params"]))
    ax.axhline(tuning["target_recall"], color="red", lw=0.8, ls="--", label=f"target {tuning['target_recall']}")
    times = [e["p50_ms"] for line in lines for e in line["tried"] if e.get("p50_ms")]
    if max(times) > 10 * min(times):  # a log axis only where it spans a decade: else it has no labels
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("single query p50 (ms, one thread, FAISS only; forecasts computed, not timed)")
    ax.set_ylabel(f"recall@{tuning['k']} vs exact search")
    ax.set_title(f"tuning curve, {info.get('ntotal', 0):,} vectors")
    ax.grid(True, which="both", lw=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes, off the curves
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except OSError as e:
        raise PlotError(f"cannot write {path}: {e.strerror or e}; choose another --plot file") from None
    finally:
        plt.close(fig)
    return path
