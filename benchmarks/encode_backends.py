"""Encoder backends compared on the same chunks of the shared MAL reviews, in one run.

    python benchmarks/encode_backends.py [--json] [--chunks 2000] [--backends torch,onnx,onnx-int8,openvino]
                                         [--batch-size 64] [--queries 100] [--sweep-chunks 192] [--no-sweep]

Whole reviews of the shared data, taken in a fixed hashed order, fill exactly ``--chunks`` chunks (cut as
``python -m recommender build`` cuts them). Every backend then runs in its own process (so that its peak
RSS is its own) and reports: chunks/s over all of them (batches longest first, as a build does), its
cosine to torch fp32, the p50 of encoding one query, and known-item MRR@10 (default aggregation) of an
in-memory index of its vectors, where a 30-word window of each held-out review must find its anime; the
held-out reviews' rows are masked, as ``python -m recommender evaluate`` does. A sweep on the first
``--sweep-chunks`` chunks measures torch and the default backend with 1 and 2 threads, with batches in the
given order vs longest first, and with other batch sizes. The token-length histogram of the chunks is printed
too. The machine's load average is recorded: compare ratios from the same run, not absolute numbers.

Prints markdown tables; with ``--json`` prints one JSON object on stdout and the tables on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import benchmark_queries, load_average, markdown_table, percentiles  # noqa: E402

from recommender import config  # noqa: E402
from recommender.backends import BACKENDS, make_runner  # noqa: E402
from recommender.encoder import Encoder  # noqa: E402
from recommender.evaluate import known_item_split, recommender_over, review_chunks, score_known_item  # noqa: E402
from recommender.search import set_serving_threads  # noqa: E402
from scraping.importers import review_from_json  # noqa: E402

#: Upper ends of the token-length bins (MiniLM's chunks hold at most 254 text tokens).
TOKEN_BINS = (32, 64, 128, 192, 253, 254)


# ---- the sample (parent process) ----------------------------------------------------------------------
def load_reviews(path: Path) -> list:
    """Every review with text in ``reviews.jsonl``."""
    with open(path, encoding="utf-8") as handle:
        reviews = [review_from_json(json.loads(line)) for line in handle if line.strip()]
    return [r for r in reviews if r.text and r.text.strip()]


def sample_reviews(encoder: Encoder, reviews: list, chunks_wanted: int) -> list:
    """Whole reviews, in sha1(review id) order, that together make exactly ``chunks_wanted`` chunks (when possible):
    a review that would overshoot is skipped for a later, shorter one."""
    ordered = sorted(reviews, key=lambda r: hashlib.sha1(r.review_id.encode()).hexdigest())
    counts = review_chunks(encoder, ordered)[0].groupby("review_id").size().to_dict()
    chosen, total = [], 0
    for review in ordered:
        n = counts.get(review.review_id, 0)
        if n and total + n <= chunks_wanted:
            chosen.append(review)
            total += n
        if total == chunks_wanted:
            break
    return chosen


def token_histogram(encoder: Encoder, passages: list[str]) -> dict[str, int]:
    """Chunks per token-length bin (text tokens, without the special tokens)."""
    lengths = np.array([len(spans) for spans in encoder.token_offsets(passages)])
    out, low = {}, 1
    for high in TOKEN_BINS:
        out[f"{low}-{high}" if high > low else str(high)] = int(((lengths >= low) & (lengths <= high)).sum())
        low = high + 1
    out[f">{TOKEN_BINS[-1]}"] = int((lengths > TOKEN_BINS[-1]).sum())
    return out


# ---- one backend (worker process) ----------------------------------------------------------------------
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed_encode(encode, passages: list[str]) -> tuple[np.ndarray, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    vectors = encode(passages)
    return vectors, time.perf_counter() - wall, time.process_time() - cpu


def run_backend(args: argparse.Namespace, workdir: Path) -> dict:
    """Load, encode every sampled chunk, time single queries, score known-item search; peak RSS last."""
    import torch

    sample = json.loads((workdir / "sample.json").read_text())
    passages = sample["passages"]
    bulk_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    encoder = Encoder.load(args.model, device="cpu", backend=args.worker)
    load_s = time.perf_counter() - t0
    encoder.encode(passages[:16], batch_size=16)  # warm-up: first-call allocations are not throughput
    vectors, wall, cpu = _timed_encode(lambda p: encoder.encode(p, batch_size=args.batch_size), passages)
    np.save(workdir / f"vectors-{args.worker}.npy", vectors)
    set_serving_threads(config.SERVE_THREADS)  # queries are timed as served: SERVE_THREADS threads per query
    if encoder.backend != "torch":
        encoder.runner = make_runner(encoder.backend, encoder.model, encoder.path, encoder.sha256)
    query_ms = []
    for query in benchmark_queries(args.queries):
        start = time.perf_counter()
        encoder.encode([query], batch_size=1)
        query_ms.append((time.perf_counter() - start) * 1e3)
    reviews = [review_from_json(obj) for obj in sample["reviews"]]
    chunks, _ = review_chunks(encoder, reviews)
    recommender = recommender_over(encoder, reviews, chunks, vectors)
    queries, excluded, counts = known_item_split(recommender)
    name = config.DEFAULT_AGGREGATION
    metrics = score_known_item(recommender, queries, [name], excluded=excluded, review_counts=counts)[name]
    result = {
        "backend": args.worker, "precision": getattr(encoder.runner, "precision", "?"),
        "threads": bulk_threads, "query_threads": config.SERVE_THREADS, "load_s": round(load_s, 2),
        "chunks": len(passages),
        "encode_s": round(wall, 2), "chunks_per_s": round(len(passages) / wall, 2),
        "chunks_per_cpu_s": round(len(passages) / cpu, 2) if cpu else None,
        "query_p50_ms": round(percentiles(query_ms)["p50"], 2), "known_item_queries": metrics["queries"],
        "mrr@10": round(metrics["mrr@10"], 4), "hit@10": round(metrics["hit@10"], 4),
    }
    result["peak_rss_mib"] = round(_peak_rss_mib(), 1)  # before the sweep, which loads more runtimes
    if args.sweep_chunks:
        result["sweep"] = sweep(encoder, passages[:args.sweep_chunks], args.batch_size)
    return result


def sweep(encoder: Encoder, passages: list[str], batch_size: int) -> list[dict]:
    """chunks/s of this backend with 1 or 2 threads, batches in the given order or longest first, other sizes."""
    import torch

    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        if encoder.backend != "torch":
            encoder.runner = make_runner(encoder.backend, encoder.model, encoder.path, encoder.sha256, threads)
        encoder.encode(passages[:8], batch_size=8)
        settings = [("longest first", batch_size)]
        if threads == 2:
            settings += [("given order", batch_size), ("longest first", batch_size // 4),
                         ("longest first", batch_size * 2)]
        for order, size in settings:
            if order == "given order":
                def encode(p, size=size):
                    return np.concatenate([encoder.runner.embed(p[i:i + size]) for i in range(0, len(p), size)])
            else:
                def encode(p, size=size):
                    return encoder.encode(p, batch_size=size)
            _, wall, _ = _timed_encode(encode, passages)
            rows.append({"threads": threads, "batching": order, "batch_size": size,
                         "chunks_per_s": round(len(passages) / wall, 2)})
    return rows


# ---- the comparison (parent process) -------------------------------------------------------------------
def compare(args: argparse.Namespace) -> dict:
    data = Path(args.data)
    if not (data / "reviews.jsonl").exists():
        raise SystemExit(f"error: {data}/reviews.jsonl not found (pass --data)")
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or "torch" not in backends:
        raise SystemExit(f"error: --backends must include torch and only {', '.join(BACKENDS)}")
    load_before = load_average()
    reference = Encoder.load(args.model, device="cpu")
    sample = sample_reviews(reference, load_reviews(data / "reviews.jsonl"), args.chunks)
    _, passages = review_chunks(reference, sample)
    histogram = token_histogram(reference, passages)
    del reference
    workdir = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    (workdir / "sample.json").write_text(json.dumps({"passages": passages,
                                                     "reviews": [r.to_dict() for r in sample]}))
    results = []
    for backend in backends:
        command = [sys.executable, __file__, "--worker", backend, "--workdir", str(workdir), "--batch-size",
                   str(args.batch_size), "--queries", str(args.queries), "--model", args.model,
                   "--sweep-chunks", str(args.sweep_chunks if backend in ("torch", config.DEFAULT_BACKEND) else 0)]
        print(f"[{backend}] encoding {len(passages)} chunks ({load_average()})", file=sys.stderr, flush=True)
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(
            Path(__file__).resolve().parents[1])})
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            raise SystemExit(f"error: the {backend} worker failed")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    torch_vectors = np.load(workdir / "vectors-torch.npy")
    torch_row = next(r for r in results if r["backend"] == "torch")
    for row in results:
        vectors = np.load(workdir / f"vectors-{row['backend']}.npy")
        cosines = (vectors * torch_vectors).sum(1) / (np.linalg.norm(vectors, axis=1)
                                                     * np.linalg.norm(torch_vectors, axis=1))
        row["cosine_to_torch_mean"] = round(float(cosines.mean()), 5)
        row["cosine_to_torch_min"] = round(float(cosines.min()), 5)
        row["speedup_vs_torch"] = round(row["chunks_per_s"] / torch_row["chunks_per_s"], 2)
        row["mrr_delta_vs_torch"] = round(row["mrr@10"] - torch_row["mrr@10"], 4)
    eligible = [r for r in results if abs(r["mrr_delta_vs_torch"]) <= 0.01]
    fastest = max(eligible, key=lambda r: r["chunks_per_s"])["backend"]
    default = next(r for r in results if r["backend"] == config.DEFAULT_BACKEND) \
        if config.DEFAULT_BACKEND in backends else None
    return {
        "model": args.model, "chunks": len(passages), "reviews": len(sample), "batch_size": args.batch_size,
        "token_histogram": histogram, "load_before": load_before, "load_after": load_average(),
        "results": results, "fastest_within_0.01_mrr": fastest, "default_backend": config.DEFAULT_BACKEND,
        "target_3x_met": None if default is None else bool(default["speedup_vs_torch"] >= 3.0
                                                           and abs(default["mrr_delta_vs_torch"]) <= 0.01),
    }


def tables(report: dict) -> str:
    head = (f"{report['chunks']} chunks of {report['reviews']} shared MAL reviews, {report['model']}, batch size"
            f" {report['batch_size']}; machine: {report['load_before']} before, {report['load_after']} after")
    rows = [(r["backend"], r["precision"], f"{r['chunks_per_s']:.1f}", f"{r['speedup_vs_torch']:.2f}×",
             f"{r['query_p50_ms']:.1f}", f"{r['mrr@10']:.3f} ({r['mrr_delta_vs_torch']:+.3f})",
             f"{r['cosine_to_torch_mean']:.4f} / {r['cosine_to_torch_min']:.4f}", f"{r['peak_rss_mib']:.0f}",
             f"{r['load_s']:.1f}") for r in report["results"]]
    main = markdown_table(["backend", "precision", "chunks/s", "vs torch", "query p50 ms",
                           f"MRR@10 ({report['results'][0]['known_item_queries']} queries)",
                           "cosine to torch mean / min", "peak RSS MiB", "load s"], rows)
    hist = markdown_table(["tokens per chunk", *report["token_histogram"]],
                          [["chunks", *report["token_histogram"].values()]])
    sweeps = [(r["backend"], s["threads"], s["batching"], s["batch_size"], f"{s['chunks_per_s']:.1f}")
              for r in report["results"] for s in r.get("sweep", [])]
    sweep_table = markdown_table(["backend", "threads", "batching", "batch size", "chunks/s"], sweeps)
    verdict = (f"Fastest backend within 0.01 MRR@10 of torch: {report['fastest_within_0.01_mrr']};"
               f" default: {report['default_backend']}; ≥ 3× torch with MRR within 0.01: {report['target_3x_met']}")
    return "\n\n".join([head, main, hist, "Sweep (first chunks of the sample):", sweep_table, verdict])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(config.PROJECT_ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=config.FALLBACK_MODEL)
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batch-size", type=int, default=config.ENCODE_BATCH_SIZE)
    parser.add_argument("--queries", type=int, default=100, help="single queries timed per backend")
    parser.add_argument("--sweep-chunks", type=int, default=192, help="chunks per sweep setting (0: no sweep)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout, tables on stderr")
    parser.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        print(json.dumps(run_backend(args, Path(args.workdir))))
        return 0
    report = compare(args)
    text = tables(report)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(report))
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
