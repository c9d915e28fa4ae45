"""Load benchmark of the HTTP API: ``python api.py`` on loopback, N search requests from C concurrent clients.

Prints throughput, latency percentiles and the error count, and writes a latency plot::

    python benchmarks/api_load.py                       # demo corpus, MiniLM index (built once, ~40 s)
    python benchmarks/api_load.py --index /tmp/shared_minilm_index --requests 2000 --clients 8

Every request is a distinct query (the encoder's query cache never hits), so each one pays for
encoding, retrieval, aggregation and evidence. The server's rate limit is raised for the run; the
run is bounded by ``--requests`` and ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import numpy as np
from _common import load_average, markdown_table, percentiles, plot_path, pyplot

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

DEFAULT_INDEX = Path(tempfile.gettempdir()) / "anime-search-bench" / "demo-minilm"
ROUTES = {"v1": "/api/v1/search", "reference": "/search"}

# Query parts written for this benchmark; their product gives thousands of distinct descriptions.
_WHAT = ["a slow-burn romance", "a crime drama", "a cozy slice of life", "a space opera", "a sports story",
         "a dark fantasy", "a mystery", "a comedy", "a coming-of-age tale", "a war story", "a cooking show",
         "a time travel thriller", "a mecha series", "a horror story", "a music drama", "an isekai adventure",
         "a psychological thriller", "a school comedy", "a road trip story", "a detective story"]
_WHO = ["about two rival students", "with a morally grey detective", "about a found family",
        "with an unlikely friendship", "about a lonely genius", "with a tired office worker",
        "about siblings on the run", "with a cheerful underdog team", "about a retired hero",
        "with a mysterious stranger"]
_HOW = ["and a bittersweet ending", "with great music", "that made me cry", "with beautiful animation",
        "and lots of humour", "with a twist I did not see coming", "and slow pacing", "with strong world building",
        "and intense fights", "that is relaxing to watch"]


def queries(count: int) -> list[str]:
    """``count`` distinct queries (cycled with a number suffix beyond the 2,000 combinations)."""
    combos = [f"{a} {b} {c}" for a, b, c in itertools.product(_WHAT, _WHO, _HOW)]
    return [combos[i % len(combos)] + (f" {i // len(combos)}" if i >= len(combos) else "") for i in range(count)]


def ensure_demo_index(path: Path) -> Path:
    """Build the demo corpus index with the packaged MiniLM once; later runs reuse it."""
    if (path / "manifest.json").exists():
        return path
    from recommender.build import build_index
    from recommender.config import DEMO_ANIME, DEMO_REVIEWS, FALLBACK_MODEL
    from scraping.importers import import_anime_jsonl, import_path
    from scraping.store import Store

    path.parent.mkdir(parents=True, exist_ok=True)
    store = path.parent / "demo.sqlite"
    with Store.open(store) as db:
        import_anime_jsonl(db, DEMO_ANIME)
        import_path(db, DEMO_REVIEWS)
    print(f"building the demo index at {path} (once)…", flush=True)
    build_index(store, model=FALLBACK_MODEL, out=path, progress=False)
    return path


def start_server(index: Path, workers: int, timeout: float = 180.0) -> tuple[subprocess.Popen, str]:
    """``python api.py`` on a free loopback port; returns the process and its base URL."""
    command = [sys.executable, str(PROJECT_ROOT / "api.py"), "--index", str(index), "--host", "127.0.0.1",
               "--port", "0", "--workers", str(workers), "--rate-limit", "1000000 per second"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                               cwd=PROJECT_ROOT)
    deadline = time.monotonic() + timeout
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.extend(
        line.split("serving on ", 1)[1].strip() for line in process.stdout if "serving on " in line), daemon=True)
    reader.start()
    while not found:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"the server did not start (exit code {process.returncode});"
                             " run api.py by hand to see why")
        time.sleep(0.1)
    return process, found[0].rstrip("/")


def run_load(base: str, route: str, texts: list[str], clients: int, max_seconds: float) -> dict:
    """Send every query once from ``clients`` keep-alive connections; latency in ms per request, errors counted."""
    parts = urlsplit(base)
    next_index = itertools.count()
    lock = threading.Lock()
    latencies: list[tuple[float, float]] = []  # (start offset s, latency ms)
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds
    start = time.perf_counter()
    extra = {"limit": 10} if route == "v1" else {}

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                i = next(next_index)
            if i >= len(texts):
                break
            path = f"{ROUTES[route]}?{urlencode({'q' if route == 'v1' else 'query': texts[i], **extra})}"
            t0 = time.perf_counter()
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                ok = response.status == 200 and "results" in json.loads(body)
                problem = None if ok else f"HTTP {response.status}: {body[:120]!r}"
            except (OSError, http.client.HTTPException, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            elapsed = (time.perf_counter() - t0) * 1e3
            with lock:
                latencies.append((t0 - start, elapsed))
                if problem:
                    errors.append(problem)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "wall_s": wall, "sent": len(latencies)}


def summary(result: dict, clients: int) -> dict:
    ms = np.array([lat for _, lat in result["latencies"]], dtype=np.float64)
    return {
        "requests": result["sent"], "clients": clients, "errors": len(result["errors"]),
        "wall_s": result["wall_s"], "throughput": result["sent"] / result["wall_s"] if result["wall_s"] else 0.0,
        **percentiles(ms, (50, 95, 99)),
        "mean": float(ms.mean()) if ms.size else float("nan"), "max": float(ms.max()) if ms.size else float("nan"),
    }


def print_table(rows: list[dict], index: Path, route: str, vectors: int | None, machine_load: str) -> None:
    print(f"\nAPI load: GET {ROUTES[route]}, index {index} ({vectors or '?'} vectors); {machine_load} at the start")
    headers = ["requests", "clients", "errors", "wall s", "req/s", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms"]
    print(markdown_table(headers, [
        [s["requests"], s["clients"], s["errors"], f"{s['wall_s']:.1f}", f"{s['throughput']:.1f}",
         f"{s['p50']:.0f}", f"{s['p95']:.0f}", f"{s['p99']:.0f}", f"{s['mean']:.0f}", f"{s['max']:.0f}"]
        for s in rows]))


def plot(result: dict, stats: dict, path: Path, title: str) -> None:
    plt = pyplot()
    starts = [s for s, _ in result["latencies"]]
    ms = [lat for _, lat in result["latencies"]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist(ms, bins=50, color="#3b5bdb")
    for name in ("p50", "p95", "p99"):
        left.axvline(stats[name], linestyle="--", color="#333")
        left.text(stats[name], left.get_ylim()[1] * 0.9, f" {name}", fontsize=8)
    left.set(xlabel="latency (ms)", ylabel="requests", title="latency distribution")
    right.scatter(starts, ms, s=3, alpha=0.5, color="#3b5bdb")
    right.set(xlabel="time since start (s)", ylabel="latency (ms)", title="latency over the run")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(plot_path(path), dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", help=f"index directory (default: the demo corpus with MiniLM at {DEFAULT_INDEX})")
    parser.add_argument("--requests", type=int, default=2000, help="requests to send (default %(default)s)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default %(default)s)")
    parser.add_argument("--workers", type=int, default=8, help="server worker threads (default %(default)s)")
    parser.add_argument("--single-client-requests", type=int, default=200,
                        help="first measure this many requests from one client: the unloaded latency (0 skips it)")
    parser.add_argument("--max-seconds", type=float, default=600, help="stop sending after this long (per pass)")
    parser.add_argument("--route", choices=sorted(ROUTES), default="v1", help="which search route to load")
    parser.add_argument("--plot", help="PNG to write (default data/benchmarks/api_load.png)")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.clients <= 256 or \
            not 0 <= args.single_client_requests <= 100_000:
        parser.error("--requests and --single-client-requests must be up to 100000, --clients 1..256")
    passes = ([(1, args.single_client_requests)] if args.single_client_requests else []) + \
        [(args.clients, args.requests)]
    texts = queries(sum(n for _, n in passes))  # no query is sent twice, so the query cache never helps

    from recommender import config

    plot_file = Path(args.plot) if args.plot else config.DATA_DIR / "benchmarks" / "api_load.png"
    index = Path(args.index) if args.index else ensure_demo_index(DEFAULT_INDEX)
    machine_load = load_average()
    process, base = start_server(index, args.workers)
    try:
        connection = http.client.HTTPConnection(urlsplit(base).hostname, urlsplit(base).port, timeout=120)
        connection.request("GET", "/api/v1/health")
        health = json.loads(connection.getresponse().read())
        for warm in ("warm up the model", "and the lexical index"):  # first queries build lazy caches
            connection.request("GET", f"{ROUTES['v1']}?{urlencode({'q': warm})}")
            connection.getresponse().read()
        connection.close()
        results, used = [], 0
        for clients, count in passes:
            results.append((clients, run_load(base, args.route, texts[used:used + count], clients, args.max_seconds)))
            used += count
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    rows = [summary(result, clients) for clients, result in results]
    print_table(rows, index, args.route, health.get("vectors"), machine_load)
    print(f"(server: {args.workers} waitress threads, model {health.get('model')}; client and server share"
          f" this machine's {os.cpu_count()} CPUs)")
    errors = [e for _, result in results for e in result["errors"]]
    if errors:
        print("first errors:", *errors[:5], sep="\n  ")
    result, stats = results[-1][1], rows[-1]
    plot(result, stats, plot_file, f"{stats['requests']} requests, {args.clients} clients, {stats['errors']} errors")
    print(f"plot written to {plot_file}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
