#!/usr/bin/env python
"""glovefaiss serve benchmark: HTTP latency and throughput of a served 1M-document index, beside the
same searches in-process, and while the index is swapped.

Steps: (1) a topic-structured corpus (bin/bench_scale.py's generator) and its index, reused when
present; (2) in-process ``Index.hits`` timings; (3) ``glovefaiss serve`` in a subprocess, loaded by
``wrk`` (a second process, on loopback) at concurrency 1, 8 and 64 for GET single queries and POST
batches of 100; (4) the same under index swaps; raw figures to JSON, then Markdown rendered from
that JSON (``--render FILE.json`` re-renders without measuring). Run through ``bin/bench-serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote_plus

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.corpus import GLOVE, topic_corpus, window_queries  # noqa: E402
from benchlib.env import ROOT, BenchError, log, machine_info  # noqa: E402
from benchlib.measure import pct, run_build  # noqa: E402

K = 10
BATCH = 100
CONCURRENCY = (1, 8, 64)

# wrk calls request() for each request and done() once; the figures go to a JSON file. It stops
# after --duration, or after max_requests responses, whichever comes first.
LUA = r"""
local specs = {REQUESTS}
local max_requests = {MAX}
local requests, i, seen = {}, 0, 0
init = function(args)
  for n, s in ipairs(specs) do
    if s[1] == "GET" then requests[n] = wrk.format("GET", s[2])
    else requests[n] = wrk.format("POST", s[2], {["Content-Type"] = "application/json"}, s[3]) end
  end
end
request = function()
  i = i + 1
  return requests[(i % #requests) + 1]
end
response = function(status, headers, body)
  seen = seen + 1
  if seen >= max_requests then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  local f = io.open("{OUT}", "w")
  f:write(string.format('{"requests": %d, "duration_us": %d, "bytes": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "max_us": %.1f, ' ..
    '"mean_us": %.1f}', summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
  f:close()
end
"""


def lua_string(s: str) -> str:
    return json.dumps(s)  # a JSON string of ASCII is a valid Lua string literal


def wrk_script(path: Path, requests: list[str], out: Path, max_requests: int) -> Path:
    """``requests``: Lua tables {method, path[, body]}, built into requests by the script's init()."""
    body = LUA.replace("{REQUESTS}", "{\n" + ",\n".join(requests) + "\n}").replace("{MAX}", str(max_requests))
    path.write_text(body.replace("{OUT}", str(out)))
    return path


def get_requests(texts: list[str]) -> list[str]:
    return [f'{{"GET", {lua_string(f"/search?q={quote_plus(t)}&k={K}")}}}' for t in texts]


def post_requests(texts: list[str]) -> list[str]:
    out = []
    for a in range(0, len(texts) - BATCH + 1, BATCH):
        body = json.dumps({"queries": texts[a:a + BATCH], "k": K}, ensure_ascii=True)
        out.append(f'{{"POST", "/search", {lua_string(body)}}}')
    return out


class CpuMeter:
    """Cores busy on the machine, in the server, in wrk, and elsewhere (anything else), over a run."""

    def __init__(self, server_pid: int):
        self.pid = server_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def _sample(self):
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(f) - f[3] - f[4] - f[7]) / self.tick
        s = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        server = (int(s[11]) + int(s[12])) / self.tick
        t = os.times()
        return busy, server, t.user + t.system, t.children_user + t.children_system

    def __enter__(self):
        self.t0, self.s0 = time.perf_counter(), self._sample()
        return self

    def __exit__(self, *exc):
        wall = time.perf_counter() - self.t0
        s1 = self._sample()
        d = [b - a for a, b in zip(self.s0, s1)]
        self.cores = {"total": d[0] / wall, "server": d[1] / wall, "wrk": d[3] / wall,
                      "other": max(0.0, d[0] - d[1] - d[2] - d[3]) / wall}


def run_wrk(url: str, script: Path, out: Path, connections: int, duration: float, server_pid: int) -> dict:
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration:g}s", "--timeout", "10s", "-s", str(script), url]
    out.unlink(missing_ok=True)
    with CpuMeter(server_pid) as cpu:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0 or not out.exists():
        raise BenchError(f"wrk failed: {proc.stderr or proc.stdout}")
    r = json.loads(out.read_text())
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["failed"] = sum(r["errors"].values())
    r["cores"] = cpu.cores
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def start_server(index_dir: Path, port: int, log_path: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "glovefaiss", "serve", str(index_dir), "--name", "bench", "--port", str(port),
           "--max-batch", str(BATCH), "--quiet"]
    log("running: " + " ".join(cmd[1:]))
    f = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=f, stderr=f, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while True:
        try:
            get_json(f"http://127.0.0.1:{port}/health")
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the server did not start: {log_path.read_text()[-2000:]}") from None
            time.sleep(0.2)


def in_process(index_dir: Path, texts: list[str]) -> dict:
    """Index.hits timed in this process: single queries (each text once) and batches of 100."""
    import glovefaiss

    idx = glovefaiss.Index.load(index_dir).warm()  # as the server loads it
    for t in texts[:50]:
        idx.hits(t, K)
    single = []
    for t in texts[50:]:
        a = time.perf_counter()
        idx.hits(t, K)
        single.append(time.perf_counter() - a)
    batches = [texts[a:a + BATCH] for a in range(0, len(texts) - BATCH + 1, BATCH)]
    idx.hits(batches[0], K)
    times = []
    for b in batches:
        a = time.perf_counter()
        idx.hits(b, K)
        times.append(time.perf_counter() - a)
    return {"single_p50_us": pct(single, 50), "single_p99_us": pct(single, 99),
            "single_per_s": len(single) / sum(single), "single_n": len(single),
            "batch_p50_us": pct(times, 50), "batch_p99_us": pct(times, 99),
            "batch_per_s": len(times) / sum(times), "batch_n": len(times)}


def swapper(index_dir: Path, copies: list[Path], at: list[float], started: threading.Event, done: list):
    """Publish each prepared copy over ``index_dir`` at the given seconds after ``started``."""
    from glovefaiss.io.files import publish_dir  # what build --overwrite and add publish with

    started.wait()
    t0 = time.monotonic()
    for when, copy in zip(at, copies):
        time.sleep(max(0.0, t0 + when - time.monotonic()))
        publish_dir(copy, index_dir)
        done.append(time.monotonic() - t0)


def measure(args) -> dict:
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install wrk")
    args.out.mkdir(parents=True, exist_ok=True)
    from glovefaiss.vectors.sources import load_vectors

    info = machine_info()
    try:
        info["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        info["wrk"] = "?"
    corpus = args.out / f"topics-{args.docs}-{args.seed}.parquet"
    topic_corpus(corpus, args.docs, args.seed, load_vectors(GLOVE))
    index_dir = args.out / f"serve-index-topics-{args.docs}"
    if not (index_dir / "manifest.json").exists():
        run_build(corpus, index_dir, ["--index", "auto", "--target-recall", "0.95"])
    else:
        log(f"reusing {index_dir}")
    manifest = json.loads((index_dir / "manifest.json").read_text())
    texts = window_queries(corpus, args.queries, args.seed)
    log(f"in-process: {len(texts)} single queries, {len(texts) // BATCH} batches of {BATCH}")
    inproc = in_process(index_dir, texts)
    log(f"in-process single p50 {inproc['single_p50_us']:.0f} us, batch p50 {inproc['batch_p50_us']:.0f} us")

    work = args.out / "serve-bench"
    work.mkdir(exist_ok=True)
    scripts = {"get": wrk_script(work / "get.lua", get_requests(texts), work / "wrk.json", args.max_requests),
               "post": wrk_script(work / "post.lua", post_requests(texts), work / "wrk.json", args.max_requests)}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(index_dir, port, work / "server.log")
    runs, swaps = [], []
    try:
        for mode in ("get", "post"):
            log(f"{mode}: warm-up")
            run_wrk(url, scripts[mode], work / "wrk.json", 8, 2, server.pid)
            for c in CONCURRENCY:
                r = run_wrk(url, scripts[mode], work / "wrk.json", c, args.duration, server.pid)
                r.update(mode=mode, concurrency=c)
                runs.append(r)
                log(f"{mode} c={c}: p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us, {r['rps']:,.0f} req/s, "
                    f"{r['failed']} failed")
        for mode in ("get", "post"):
            at = [args.swap_duration * f for f in (0.2, 0.5, 0.8)]
            copies = []
            for i in range(len(at)):
                copy = args.out / f".serve-swap-{i}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(index_dir, copy)
                copies.append(copy)
            before = get_json(f"{url}/info?index=bench")["reloads"]
            started, done = threading.Event(), []
            t = threading.Thread(target=swapper, args=(index_dir, copies, at, started, done))
            t.start()
            started.set()
            r = run_wrk(url, scripts[mode], work / "wrk.json", 8, args.swap_duration, server.pid)
            t.join()
            time.sleep(2 * 0.5 + 1)  # the service polls every 0.5 s; the last swap may still be loading
            r.update(mode=mode, concurrency=8, swaps=len(done), swap_at_s=done,
                     reloads=get_json(f"{url}/info?index=bench")["reloads"] - before)
            swaps.append(r)
            log(f"{mode} c=8 with {len(done)} swaps ({r['reloads']} reloads): p50 {r['p50_us']:.0f} us, "
                f"p99 {r['p99_us']:.0f} us, max {r['max_us'] / 1e3:.0f} ms, {r['rps']:,.0f} req/s, {r['failed']} failed")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": info, "docs": args.docs, "duration_s": args.duration,
            "swap_duration_s": args.swap_duration, "queries": len(texts), "k": K, "batch": BATCH,
            "index": {"type": manifest["index"]["type"], "key": manifest["index"]["key"],
                      "params": manifest["index"].get("params", {}),
                      "recall": (manifest["index"].get("tuning") or {}).get("recall")},
            "in_process": inproc, "runs": runs, "swaps": swaps}


def render(r: dict) -> str:
    ip, m = r["in_process"], r["machine"]
    ix = r["index"]
    params = ", ".join(f"{k}={v}" for k, v in ix["params"].items()) or "-"
    lines = [
        "# Serve: the HTTP service under load", "",
        "Command: `bin/bench-serve` (sets up `.venv` like the other `bin/` scripts; needs Debian's `wrk`). "
        "Re-render this page from the saved figures: `bin/bench-serve --render bench-out/serve-bench.json`.", "",
        f"Run {r['date']} at commit {m.get('git', {}).get('commit', '?')}: {m['cpu_count']} cores ({m['cpu']}), "
        f"Python {m['python']}, faiss {m['faiss']}, {m['wrk']}.", "",
        f"- Index: {r['docs']:,} topic-structured documents (`bin/bench-scale`'s generator), "
        f"{ix['type']} (`{ix['key']}`), {params}, tuned recall@10 {ix['recall'] or 1.0:.3f}.",
        "- Server: `glovefaiss serve DIR --quiet` (uvicorn with uvloop and httptools, one process, access log off); "
        "single GET queries are searched on the event loop on one FAISS thread, POST batches in one worker "
        "thread on every core.",
        f"- Load: `wrk -t 1 -c C` (one thread, C keep-alive connections) in a second process on loopback, "
        f"{r['duration_s']:g} s per row, after a 2 s warm-up per request kind. The client shares the "
        f"{m['cpu_count']} cores with the server: the CPU columns say how many cores each used, and how many "
        "were busy with other processes (the machine is shared; 'other' near 1 means the server had about "
        "one core).",
        f"- Requests: {r['queries']:,} query texts (2-8 word windows of random documents), each GET one text "
        f"with k={r['k']}, each POST {r['batch']} texts with k={r['k']}, cycled in order; hits carry texts.",
        f"- In-process: `Index.hits` on the same texts in the benchmark process, single queries each text "
        f"once ({ip['single_n']:,}), batches of {r['batch']} ({ip['batch_n']}).", "",
        "## HTTP vs in-process", "",
        "| request | concurrency | p50 (ms) | p99 (ms) | requests/s | queries/s | failed | cores: server / wrk / other |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines.append(f"| in-process single query | 1 | {ip['single_p50_us'] / 1e3:.3f} | {ip['single_p99_us'] / 1e3:.3f} | "
                 f"{ip['single_per_s']:,.0f} | {ip['single_per_s']:,.0f} | - | - |")
    for x in r["runs"]:
        if x["mode"] == "get":
            lines.append(_row(x, "GET /search", 1))
    lines.append(f"| in-process batch of {r['batch']} | 1 | {ip['batch_p50_us'] / 1e3:.3f} | "
                 f"{ip['batch_p99_us'] / 1e3:.3f} | {ip['batch_per_s']:,.0f} | {ip['batch_per_s'] * r['batch']:,.0f} | - | - |")
    for x in r["runs"]:
        if x["mode"] == "post":
            lines.append(_row(x, f"POST /search, {r['batch']} queries", r["batch"]))
    get1 = next(x for x in r["runs"] if x["mode"] == "get" and x["concurrency"] == 1)
    post1 = next(x for x in r["runs"] if x["mode"] == "post" and x["concurrency"] == 1)
    get8 = next(x for x in r["runs"] if x["mode"] == "get" and x["concurrency"] == 8)
    lines += [
        "",
        f"HTTP overhead at concurrency 1 (p50 over HTTP minus p50 in-process): "
        f"{(get1['p50_us'] - ip['single_p50_us']) / 1e3:.3f} ms per GET single query, "
        f"{(post1['p50_us'] - ip['batch_p50_us']) / 1e3:.3f} ms per POST batch of {r['batch']}. The rows ran one "
        "after another while other processes used the machine (the 'other' column), so a difference smaller than "
        "that noise can come out negative.", "",
        "## During index swaps", "",
        f"Each row: {r['swap_duration_s']:g} s of load at concurrency 8 while the index directory is replaced "
        "three times (at 20%, 50% and 80% of the run) by a copy, published the way `build --overwrite` and `add` "
        "publish (an atomic directory exchange); the service notices the new manifest within 0.5 s, loads the "
        "copy in a background thread and swaps it in, closing the old one after its last request.", "",
        "| request | swaps | reloads seen | p50 (ms) | p99 (ms) | max (ms) | requests/s | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for x in r["swaps"]:
        name = "GET /search" if x["mode"] == "get" else f"POST /search, {r['batch']} queries"
        lines.append(f"| {name} | {x['swaps']} | {x['reloads']} | {x['p50_us'] / 1e3:.3f} | {x['p99_us'] / 1e3:.3f} | "
                     f"{x['max_us'] / 1e3:.1f} | {x['rps']:,.0f} | {x['failed']} |")
    failed = sum(x["failed"] for x in r["runs"] + r["swaps"])
    swap_failed = sum(x["failed"] for x in r["swaps"])
    lines += [
        "", "## Against the issue's targets", "",
        f"- GET p50 at concurrency 1: **{get1['p50_us'] / 1e3:.3f} ms** (target ≤ 1 ms: "
        f"{'met' if get1['p50_us'] <= 1000 else 'NOT met'}).",
        f"- GET requests/s at concurrency 8: **{get8['rps']:,.0f}** (target ≥ 2,000: "
        f"{'met' if get8['rps'] >= 2000 else 'NOT met'}).",
        f"- Failed requests during swaps: **{swap_failed}** (target 0: {'met' if swap_failed == 0 else 'NOT met'}); "
        f"in all rows: {failed}.",
    ]
    return "\n".join(lines) + "\n"


def _row(x: dict, name: str, per_request: int) -> str:
    c = x["cores"]
    return (f"| {name} | {x['concurrency']} | {x['p50_us'] / 1e3:.3f} | {x['p99_us'] / 1e3:.3f} | {x['rps']:,.0f} | "
            f"{x['rps'] * per_request:,.0f} | {x['failed']} | {c['server']:.2f} / {c['wrk']:.2f} / {c['other']:.2f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=1_000_000)
    p.add_argument("--out", type=Path, default=ROOT / "bench-out")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=5, help="seconds of load per row")
    p.add_argument("--swap-duration", type=float, default=10, help="seconds of load per swap row")
    p.add_argument("--max-requests", type=int, default=200_000, help="wrk stops a row after this many responses")
    p.add_argument("--json", type=Path, help="where the raw figures go (default: OUT/serve-bench.json)")
    p.add_argument("--md", type=Path, default=ROOT / "docs" / "serve.md", help="the rendered report")
    p.add_argument("--render", type=Path, metavar="JSON", help="only render the report from saved figures")
    args = p.parse_args(argv)
    if args.render:
        results = json.loads(args.render.read_text())
    else:
        results = measure(args)
        raw = args.json or args.out / "serve-bench.json"
        raw.write_text(json.dumps(results, indent=1))
        log(f"raw figures: {raw}")
    report = render(results)
    args.md.write_text(report)
    log(f"report: {args.md}")
    print(report)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench-serve: {e}", file=sys.stderr)
        sys.exit(1)
