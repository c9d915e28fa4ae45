"""Serving at the reference size (163,687 reviews of 4,000 anime) on this machine, every default signal on.

    python benchmarks/scale.py [--json] [--index-type sq8] [--work data/benchmarks/scale]
                               [--queries 200] [--requests 400] [--clients 8] [--plot PNG]

Builds (or reuses, under ``--work``) the reference-size corpus of ``benchmarks/scale_corpus.py`` —
real anime, review texts made of real review sentences, vectors composed from real sentence
encodings (its docstring says exactly how) — and its index with the project's own build
(``flat``; other ``--index-type`` values re-index the same vectors). Then, in a fresh process that
has warmed nothing, it measures:

- ``load_s``: ``Recommender.load`` of the index directory (model included), and ``rss_mib_after_load``;
- ``first_query_ms``: the very first query after loading;
- ``e2e_p50_ms`` / ``e2e_p95_ms``: ``Recommender.search`` over ``--queries`` distinct queries with the
  query cache off, BM25, synopses, evidence and one filter (TV series only) on, one at a time;
- ``bare_p50_ms``: the same queries through the query encoder and one raw index search only (with the
  same filter, which FAISS applies inside its scan);

and, against ``python api.py`` serving the same index over HTTP (rate limit off), ``--clients``
concurrent clients sending ``--requests`` distinct queries in all: ``api_rps_8``, ``api_p95_ms_8`` and
``errors``. Prints one JSON object (``--json``) or a table, and writes a PNG of latency by stage.

Latency and memory are real: the serving code does the same work on composed vectors as on encoded
ones, and queries are encoded by the real model. Retrieval quality on this corpus means nothing
(see ``scale_corpus.py``); quality is measured by ``python -m recommender evaluate`` on real data.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
sys.path[:0] = [str(ROOT), str(BENCH_DIR)]

from _common import benchmark_queries, load_average, markdown_table, plot_path, pyplot  # noqa: E402

#: The filter every measured query carries ("one filter on"): TV series only.
FILTER = {"types": ("TV",)}
STAGES = ("encode", "search", "fuse", "aggregate", "evidence")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--work", default=str(ROOT / "data" / "benchmarks" / "scale"),
                        help="corpus, store and indexes are kept (and reused) here (default %(default)s)")
    parser.add_argument("--index-type", default=None,
                        help="index type to serve (default: what `python -m recommender build` picks for this size)")
    parser.add_argument("--queries", type=int, default=200, help="distinct queries timed in-process")
    parser.add_argument("--requests", type=int, default=400, help="HTTP requests in all (0 skips the API)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--reviews", type=int, default=163_687, help="corpus size (smaller for a smoke run)")
    parser.add_argument("--anime", type=int, default=4_000)
    parser.add_argument("--plot", default=str(ROOT / "data" / "benchmarks" / "scale.png"), help="PNG written")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: measure INDEX in this fresh process
    return parser.parse_args(argv)


# ---- the corpus and its index ------------------------------------------------------------------------
def prepare_index(args: argparse.Namespace) -> tuple[Path, dict]:
    """The corpus's flat index (built by the project's build code), re-indexed as ``--index-type`` if asked."""
    from scale_corpus import build_scale_corpus, build_scale_index

    from recommender.backends import default_backend
    from recommender.build import default_index_type
    from recommender.encoder import Encoder

    work = Path(args.work)
    # The backend `python -m recommender build` uses by default, so the index serves as a user's would.
    encoder = Encoder.load(None, backend=default_backend())
    corpus = build_scale_corpus(work, reviews=args.reviews, anime=args.anime, encoder=encoder,
                                progress=not args.json)
    flat = Path(build_scale_index(corpus, work / "index-flat", index_type="flat", progress=not args.json))
    manifest = json.loads((flat / "manifest.json").read_text())
    index_type = args.index_type or default_index_type(manifest["counts"]["chunks"])
    info = {"corpus": corpus.how_vectors_were_made, "corpus_seconds": corpus.seconds}
    return (flat if index_type == "flat" else derive_index(flat, index_type, work)), info


def derive_index(flat: Path, index_type: str, work: Path) -> Path:
    """A copy of the flat index directory whose vectors are indexed as ``index_type`` (other files linked)."""
    from recommender.index import INDEX_FILE, VectorIndex

    out = work / f"index-{index_type}"
    manifest = json.loads((flat / "manifest.json").read_text())
    stamp = out / "derived-from.json"
    source = {"built_at": manifest["built_at"], "index_type": index_type}
    if stamp.exists() and json.loads(stamp.read_text()) == source:
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    vectors = VectorIndex.load(flat, "flat", use_gpu=False).vectors()
    index = VectorIndex.build(vectors, index_type, use_gpu=False)
    del vectors
    index.save(out)
    for item in flat.iterdir():
        if item.name not in (INDEX_FILE, "manifest.json"):
            (out / item.name).symlink_to(item.resolve())
    manifest["index"] = {"type": index.index_type, "params": index.params}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    stamp.write_text(json.dumps(source))
    print(f"re-indexed as {index_type} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return out


# ---- in a fresh process: load, first query, e2e and bare latency ---------------------------------------
def measure_in_process(index_dir: str, n_queries: int) -> dict:
    """Runs in a child process that has imported nothing of the project yet (see ``--child``)."""
    os.environ["ANIME_SEARCH_QUERY_CACHE"] = "0"  # every query pays for its encoding, as a new one would
    from _common import rss_split_mib

    from recommender.filters import SearchFilters
    from recommender.search import Recommender

    before = rss_split_mib()
    started = time.perf_counter()
    rec = Recommender.load(index_dir)
    load_s = time.perf_counter() - started
    after_load = rss_split_mib()
    queries = benchmark_queries(n_queries + 1)
    filters = SearchFilters(**FILTER)

    started = time.perf_counter()
    rec.search(queries[0], filters=filters)
    first_query_ms = (time.perf_counter() - started) * 1e3

    e2e, stages = [], {name: [] for name in STAGES}
    for query in queries[1:]:
        started = time.perf_counter()
        response = rec.search(query, filters=filters)
        e2e.append((time.perf_counter() - started) * 1e3)
        for name in STAGES:
            stages[name].append(response.timing_ms.get(name, 0.0))
    bare, bare_encode = [], []
    allowed_rows = rec.allowed(filters).rows  # the filter acts inside the FAISS scan: part of the raw search
    for query in queries[1:]:
        started = time.perf_counter()
        vector = rec.encoder.encode_query(query)
        encoded = time.perf_counter()
        rec.index.search(vector, rec.settings.top_n, allowed=allowed_rows)
        bare.append((time.perf_counter() - started) * 1e3)
        bare_encode.append((encoded - started) * 1e3)
    served = rss_split_mib()
    index_file = Path(index_dir) / "index.faiss"
    return {
        "load_s": round(load_s, 3),
        "rss_mib_before_load": round(before["anon"] + before["file"], 1),
        "rss_mib_after_load": round(after_load["anon"] + after_load["file"], 1),
        "rss_mib_after_queries": round(served["anon"] + served["file"], 1),
        "heap_mib_after_load": round(after_load["anon"], 1),
        "vectors_mib": round(index_file.stat().st_size / 2**20, 1),
        "first_query_ms": round(first_query_ms, 2),
        "e2e_p50_ms": round(float(np.percentile(e2e, 50)), 2),
        "e2e_p95_ms": round(float(np.percentile(e2e, 95)), 2),
        "bare_p50_ms": round(float(np.percentile(bare, 50)), 2),
        "bare_p95_ms": round(float(np.percentile(bare, 95)), 2),
        "bare_encode_p50_ms": round(float(np.percentile(bare_encode, 50)), 2),
        "stages_p50_ms": {name: round(float(np.percentile(v, 50)), 2) for name, v in stages.items()},
        "stages_p95_ms": {name: round(float(np.percentile(v, 95)), 2) for name, v in stages.items()},
        "index_type": rec.index.index_type,
        "index_params": {k: v for k, v in rec.index.params.items()},
        "reviews": int(rec.manifest["counts"]["reviews"]),
        "chunks": int(rec.manifest["counts"]["chunks"]),
        "anime": int(rec.manifest["counts"]["anime"]),
        "queries": len(e2e),
        "filter": {k: list(v) for k, v in FILTER.items()},
    }


def run_child(index_dir: Path, n_queries: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(index_dir), "--queries", str(n_queries)],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"measurement process failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the API over HTTP --------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_api(index_dir: Path, requests: int, clients: int) -> dict:
    """Start ``python api.py`` on the index, fire ``requests`` distinct searches from ``clients`` threads."""
    port = free_port()
    env = {**os.environ, "ANIME_SEARCH_QUERY_CACHE": "0"}
    log_path = index_dir.parent / "api-benchmark.log"  # a file, not a pipe: a full pipe would stall the server
    log_file = open(log_path, "w")  # noqa: SIM115 (closed in the finally below)
    server = subprocess.Popen([sys.executable, "api.py", "--index", str(index_dir), "--port", str(port),
                               "--rate-limit", "off"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=log_file, text=True)
    try:
        deadline = time.time() + 180
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/api/v1/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise SystemExit(f"api.py did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        queries = benchmark_queries(requests, offset=1000)  # none of them seen by the in-process run
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client(worker: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            for query in queries[worker::clients]:
                path = "/api/v1/search?" + urllib.parse.urlencode({"q": query, "type": FILTER["types"][0]})
                started = time.perf_counter()
                try:
                    conn.request("GET", path)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                except OSError as exc:
                    status, conn = f"{type(exc).__name__}", http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                elapsed = (time.perf_counter() - started) * 1e3
                with lock:
                    latencies.append(elapsed)
                    if status != 200:
                        errors.append(str(status))

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
        log_file.close()
    return {f"api_rps_{clients}": round(len(latencies) / wall, 2),
            f"api_p50_ms_{clients}": round(float(np.percentile(latencies, 50)), 1),
            f"api_p95_ms_{clients}": round(float(np.percentile(latencies, 95)), 1),
            "api_requests": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors))}


def plot(result: dict, path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [*STAGES, "bare (encode + index)"]
    p50 = [result["stages_p50_ms"][s] for s in STAGES] + [result["bare_p50_ms"]]
    p95 = [result["stages_p95_ms"][s] for s in STAGES] + [result["bare_p95_ms"]]
    xs = np.arange(len(names))
    ax.bar(xs - 0.2, p50, 0.4, label="p50")
    ax.bar(xs + 0.2, p95, 0.4, label="p95")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel("ms per query")
    ax.set_title(f"{result['reviews']:,} reviews, {result['chunks']:,} chunks, {result['index_type']}:"
                 f" e2e p50 {result['e2e_p50_ms']:.0f} / p95 {result['e2e_p95_ms']:.0f} ms")
    ax.legend()
    fig.tight_layout()
    path = plot_path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(measure_in_process(args.child, args.queries)))
        return 0
    started = time.perf_counter()
    index_dir, info = prepare_index(args)
    result = {"machine": load_average(), **run_child(index_dir, args.queries)}
    if args.requests > 0:
        result.update(measure_api(index_dir, args.requests, args.clients))
    result["plot"] = str(plot(result, Path(args.plot)))
    result["benchmark_s"] = round(time.perf_counter() - started, 1)
    result["how_vectors_were_made"] = info["corpus"]
    if args.json:
        print(json.dumps(result))
        return 0
    keys = ["reviews", "chunks", "anime", "index_type", "load_s", "rss_mib_after_load", "vectors_mib",
            "first_query_ms", "e2e_p50_ms", "e2e_p95_ms", "bare_p50_ms", f"api_rps_{args.clients}",
            f"api_p95_ms_{args.clients}", "errors"]
    print(markdown_table(["measure", "value"], [(k, result.get(k, "-")) for k in keys]))
    print()
    print(markdown_table(["stage", "p50 ms", "p95 ms"],
                         [(s, result["stages_p50_ms"][s], result["stages_p95_ms"][s]) for s in STAGES]))
    print(f"\n{result['machine']}; plot: {result['plot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
