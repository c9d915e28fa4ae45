"""Index types at scale: build time, memory, recall@500 against exact search and end-to-end query latency.

    python benchmarks/query_latency.py [--sizes 163687,1000000] [--dim 384|768] [--types flat,hnsw,ivfpq,sq8]
                                       [--queries 50] [--real /tmp/shared_minilm_index] [--rerank-queries 5]

For every corpus and index type it prints one markdown row: build seconds,
index bytes (the saved file), the heap growth of a fresh process that loads it
(and after it answered 20 queries; plus the memory-mapped pages it then has
resident, which the kernel may evict), recall@500 against exact search, and
latency one query at a time with the serving thread count, nothing warmed (the
first query is in the percentiles and also shown alone). The timed path is
``e2e`` — a whole ``Recommender.search`` with every default signal (BM25,
synopses, aggregation, evidence) — on the real index, and ``bare`` — query
encoding plus one index search — on synthetic corpora, which have no texts.
The end-to-end numbers at the reference size come from ``benchmarks/scale.py``.
A PNG lands under data/benchmarks/.

Corpora:
- synthetic, of each ``--sizes`` at ``--dim``: unit vectors from a clustered
  mixture whose spectrum (variance of the k-th principal axis ∝ 1/k), mean
  direction and neighbour similarities were matched to the real MiniLM
  chunk vectors (top-1/10/100/500 cosine within 0.02 of the shared index's).
  Uniform noise would make every ANN index look either perfect or useless.
  Recall uses held-out points of the mixture as queries. For latency, each
  request runs the real encoder on a real-looking query (so its cost is the
  real one) and then searches with a held-out mixture vector, so the search
  cost is that of an in-distribution query.
- the real shared index (``--real``, built once with ``python -m recommender build``):
  its chunk vectors re-indexed as each type; recall and latency use the real
  encoded queries and the full search path (synopses, BM25, aggregation).
  With a ``rerank`` parameter on ``Recommender.search``, its flat row is also
  timed with a cross-encoder of ms-marco-MiniLM-L-6-v2's exact shape (random
  weights: no hub here, and the cost does not depend on the weights).

``--dim 768`` times the encoder with a random 6-layer, 768-wide BERT (the
shape of TAS-B's DistilBERT) instead of MiniLM.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    Stopwatch,
    benchmark_queries,
    load_average,
    markdown_table,
    percentiles,
    plot_path,
    pyplot,
)

from recommender import config  # noqa: E402
from recommender.backends import default_backend  # noqa: E402
from recommender.build import MANIFEST  # noqa: E402
from recommender.encoder import Encoder, packaged_model_path  # noqa: E402
from recommender.index import (  # noqa: E402
    INDEX_FILE,
    INDEX_TYPES,
    RECALL_AT,
    VectorIndex,
    exact_search,
    recall_at,
    serving_threads,
)
from recommender.search import Recommender, set_serving_threads  # noqa: E402

REFERENCE_SIZE = 163_687
N_ANIME = 4_000


# ---- synthetic corpora --------------------------------------------------------------------------
@dataclass
class Mixture:
    """A clustered distribution of unit vectors shaped like sentence embeddings (see the module docstring)."""

    dim: int
    clusters: int
    seed: int = 0
    #: Share of the variance that lies between clusters (the rest is within): 0.5 matched MiniLM's neighbours.
    between: float = 0.5
    #: MiniLM chunk vectors share a mean direction of this length (cosine of unrelated texts ≈ 0.4).
    mean_norm: float = 0.62
    total_variance: float = 0.62
    _centers: np.ndarray = field(init=False, repr=False)
    _within: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        axes, _ = np.linalg.qr(rng.standard_normal((self.dim, self.dim)))
        spectrum = 1.0 / np.arange(1, self.dim + 1)
        spectrum *= self.total_variance / spectrum.sum()
        mean = rng.standard_normal(self.dim)
        mean *= self.mean_norm / np.linalg.norm(mean)
        between = (axes * np.sqrt(spectrum * self.between)).astype(np.float32)
        self._within = (axes * np.sqrt(spectrum * (1 - self.between))).astype(np.float32)
        self._centers = (rng.standard_normal((self.clusters, self.dim)).astype(np.float32) @ between.T
                         + mean.astype(np.float32))

    def sample(self, n: int, seed: int, chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """``n`` unit vectors and their cluster labels (drawn in chunks to bound the temporaries)."""
        rng = np.random.default_rng(seed)
        vectors = np.empty((n, self.dim), np.float32)
        labels = rng.integers(0, self.clusters, n)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            part = self._centers[labels[lo:hi]] + rng.standard_normal((hi - lo, self.dim), np.float32) @ self._within.T
            part /= np.linalg.norm(part, axis=1, keepdims=True)
            vectors[lo:hi] = part
        return vectors, labels


# ---- random models of real shapes (timing only) ------------------------------------------------
def random_bert_dir(out: Path, *, hidden: int, layers: int, heads: int, intermediate: int,
                    cross_encoder: bool = False) -> Path:
    """A randomly initialised BERT with MiniLM's tokenizer: the compute of a real model of that shape."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()))
    tokenizer.model_max_length = 512
    shape = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                       num_attention_heads=heads, intermediate_size=intermediate, max_position_embeddings=512,
                       num_labels=1)
    model = BertForSequenceClassification(shape) if cross_encoder else BertModel(shape)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# ---- measurements -------------------------------------------------------------------------------
class Queries:
    """Hands out benchmark queries never used before in this run (the encoder caches repeated ones)."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, count: int) -> list[str]:
        queries = benchmark_queries(count, self.used)
        self.used += count
        return queries


def latency(recommender: Recommender, queries: list[str], **options) -> dict:
    """Wall time of whole ``search`` calls, one query at a time, nothing warmed: the first call is in the
    percentiles and also reported alone (``first``)."""
    totals, encode, search, rerank = [], [], [], []
    for query in queries:
        start = time.perf_counter()
        response = recommender.search(query, **options)
        totals.append((time.perf_counter() - start) * 1e3)
        encode.append(response.timing_ms.get("encode", np.nan))
        search.append(response.timing_ms.get("search", np.nan))
        rerank.append(response.timing_ms.get("rerank", np.nan))
    result = percentiles(totals)
    result.update(first=totals[0], encode_p50=float(np.nanmedian(encode)), search_p50=float(np.nanmedian(search)),
                  path="e2e")
    if not np.all(np.isnan(rerank)):
        result["rerank_p50"] = float(np.nanmedian(rerank))
    return result


def bare_latency(encoder: Encoder, index: VectorIndex, texts: list[str], vectors: np.ndarray) -> dict:
    """Encode a real query, then search the index with an in-distribution vector: the two costs a synthetic
    corpus can measure honestly (it has no texts for BM25 or evidence). Nothing warmed."""
    totals, encode, search = [], [], []
    for text, vector in zip(texts, vectors, strict=False):
        start = time.perf_counter()
        encoder.encode([text], batch_size=1)
        encoded = time.perf_counter()
        index.search(vector, RECALL_AT)
        done = time.perf_counter()
        totals.append((done - start) * 1e3)
        encode.append((encoded - start) * 1e3)
        search.append((done - encoded) * 1e3)
    result = percentiles(totals)
    result.update(first=totals[0], encode_p50=float(np.median(encode)), search_p50=float(np.median(search)),
                  path="bare")
    return result


_LOAD_PROBE = """
import json, sys
import numpy as np
sys.path[:0] = [{root!r}, {bench!r}]
from _common import rss_split_mib
from recommender.index import VectorIndex, set_threads
set_threads(1)
queries = np.load({queries!r})
before = rss_split_mib()
index = VectorIndex.load({directory!r}, {index_type!r}, json.loads({params!r}), use_gpu=False)
loaded = rss_split_mib()
for q in queries:
    index.search(q, {k})
served = rss_split_mib()
print(json.dumps({{"load": loaded["anon"] - before["anon"], "served": served["anon"] - before["anon"],
                   "mapped": served["file"] - before["file"]}}))
"""


def load_rss(directory: Path, index_type: str, params: dict, queries: np.ndarray) -> dict:
    """Growth (MiB) of a fresh process's heap on loading the index and after answering ``queries``, and of its
    resident memory-mapped pages (ivfpq's full vectors, which the kernel can evict) by then."""
    np.save(directory / "probe_queries.npy", queries)
    code = _LOAD_PROBE.format(root=str(config.PROJECT_ROOT), bench=str(Path(__file__).parent),
                              queries=str(directory / "probe_queries.npy"), directory=str(directory),
                              index_type=index_type, params=json.dumps(params), k=RECALL_AT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@dataclass
class Row:
    corpus: str
    index_type: str
    params: dict
    build_s: float
    index_mib: float
    rss: dict
    recall: float
    timing: dict

    def cells(self) -> list[str]:
        shown = {k: v for k, v in self.params.items() if k not in ("recall_k", "calibrated_recall")}
        memory = f"{self.rss['load']:.0f} / {self.rss['served']:.0f} / {self.rss['mapped']:.0f}"
        return [self.corpus, self.index_type, ", ".join(f"{k}={v}" for k, v in shown.items()) or "-",
                f"{self.build_s:.1f}", f"{self.index_mib:.0f}", memory,
                f"{self.recall:.4f}", f"{self.timing['search_p50']:.1f}", f"{self.timing['encode_p50']:.1f}",
                self.timing["path"], f"{self.timing['first']:.1f}", f"{self.timing['p50']:.1f}",
                f"{self.timing['p95']:.1f}"]


HEADERS = ["corpus", "type", "params", "build s", "index MiB", "heap Δ MiB load / +20 q / mapped",
           f"recall@{RECALL_AT}", "search p50 ms", "encode p50 ms", "timed path", "first query ms", "p50 ms",
           "p95 ms"]


def measure_type(corpus: str, vectors: np.ndarray, index_type: str, recall_queries: np.ndarray,
                 exact_rows: np.ndarray, make_recommender, queries: list[str], workdir: Path,
                 prebuilt: VectorIndex | None = None) -> tuple[Row, VectorIndex, Path]:
    """Build (unless given), save, probe memory, measure recall and end-to-end latency of one index type."""
    with Stopwatch() as build:
        index = prebuilt or VectorIndex.build(vectors, index_type, use_gpu=False)
    directory = workdir / f"{corpus}-{index_type}"
    directory.mkdir(parents=True, exist_ok=True)
    index.save(directory)
    index_mib = (directory / INDEX_FILE).stat().st_size / 2**20
    rss = load_rss(directory, index.index_type, index.params, recall_queries[:20])
    set_serving_threads(ARGS.threads)
    recall = recall_at(exact_rows, index.search(recall_queries, RECALL_AT)[1])
    timing = make_recommender(index, directory) if callable(make_recommender) else None
    if isinstance(timing, Recommender):
        timing = latency(timing, queries)
    row = Row(corpus, index.index_type, index.params, 0.0 if prebuilt else build.seconds, index_mib, rss, recall,
              timing)
    print(markdown_table(HEADERS, [row.cells()]).splitlines()[-1], flush=True)
    return row, index, directory


def synthetic_runs(size: int, encoder: Encoder, workdir: Path, queries: Queries) -> list[Row]:
    label = f"synthetic {size:,}×{ARGS.dim}"
    with Stopwatch() as made:
        mixture = Mixture(ARGS.dim, clusters=max(1, size // 20), seed=ARGS.seed)
        vectors, labels = mixture.sample(size, seed=ARGS.seed + 1)
        held_out, _ = mixture.sample(ARGS.recall_queries + ARGS.queries, seed=ARGS.seed + 2)
        recall_queries, latency_vectors = held_out[:ARGS.recall_queries], held_out[ARGS.recall_queries:]
        exact_rows = exact_search(recall_queries, vectors, RECALL_AT)[1]
    print(f"\n{label}: generated with exact top-{RECALL_AT} in {made.seconds:.1f} s ({load_average()})", flush=True)
    rows = []
    for index_type in ARGS.types:
        if index_type == "hnsw" and size > ARGS.hnsw_max:
            print(f"| {label} | hnsw | skipped: building HNSW over {size:,} vectors takes many minutes on "
                  f"{os.cpu_count()} cores (raise --hnsw-max to include it) |", flush=True)
            continue

        texts = queries.take(ARGS.queries)

        def make(index, directory, texts=texts):
            return bare_latency(encoder, index, texts, latency_vectors)

        row, index, directory = measure_type(label, vectors, index_type, recall_queries, exact_rows, make,
                                             texts, workdir)
        rows.append(row)
        shutil.rmtree(directory)
        del index
    return rows


def real_runs(real: Path, encoder: Encoder, workdir: Path, queries: Queries) -> list[Row]:
    manifest = json.loads((real / MANIFEST).read_text())
    base = VectorIndex.load(real, manifest["index"]["type"], manifest["index"].get("params"), use_gpu=False)
    vectors = base.vectors()
    label = f"real MAL {len(vectors):,}×{vectors.shape[1]}"
    recall_texts = queries.take(ARGS.recall_queries)
    recall_queries = encoder.encode(recall_texts, batch_size=32)
    exact_rows = exact_search(recall_queries, vectors, RECALL_AT)[1]
    print(f"\n{label} ({real}; {load_average()})", flush=True)
    rows = []
    for index_type in ARGS.types:
        def make(index, directory):
            for item in real.iterdir():
                if item.name not in (INDEX_FILE, MANIFEST, "probe_queries.npy"):
                    (directory / item.name).symlink_to(item)
            copy = {**manifest, "index": {"type": index.index_type, "params": index.params}}
            (directory / MANIFEST).write_text(json.dumps(copy))
            return Recommender.load(directory, encoder=encoder, threads=ARGS.threads)

        prebuilt = base if index_type == manifest["index"]["type"] == "flat" else None
        row, index, directory = measure_type(label, vectors, index_type, recall_queries, exact_rows, make,
                                             queries.take(ARGS.queries), workdir, prebuilt)
        rows.append(row)
        if index_type == "flat":
            recommender = Recommender.load(directory, encoder=encoder, threads=ARGS.threads)
            if ARGS.compare_threads:
                THREAD_ROWS.extend(thread_comparison(label, recommender, queries))
            RERANK_ROWS.extend(rerank_timing(label, recommender, queries, workdir))
    return rows


def thread_comparison(label: str, recommender: Recommender, queries: Queries) -> list[list[str]]:
    """The flat index's end-to-end latency with each thread count of ``--compare-threads`` (20 queries each)."""
    rows = []
    for threads in ARGS.compare_threads:
        set_serving_threads(threads)
        timing = latency(recommender, queries.take(min(ARGS.queries, 20)))
        rows.append([label, "flat", str(threads), f"{timing['encode_p50']:.1f}", f"{timing['search_p50']:.1f}",
                     f"{timing['p50']:.1f}", f"{timing['p95']:.1f}"])
        print(f"  threads={threads}: e2e p50 {timing['p50']:.1f} ms, p95 {timing['p95']:.1f} ms", flush=True)
    set_serving_threads(ARGS.threads)
    return rows


def rerank_timing(label: str, recommender: Recommender, queries: Queries, workdir: Path) -> list[list[str]]:
    """End-to-end latency with ``rerank=``, when ``Recommender.search`` has it, with a real-shape cross-encoder."""
    if "rerank" not in inspect.signature(Recommender.search).parameters:
        print("  rerank: not measured (Recommender.search has no rerank parameter)", flush=True)
        return []
    if ARGS.rerank_queries <= 0:
        return []
    model = random_bert_dir(workdir / "cross-encoder", hidden=384, layers=6, heads=12, intermediate=1536,
                            cross_encoder=True)
    timing = latency(recommender, queries.take(ARGS.rerank_queries), rerank=str(model))
    depth = getattr(config, "RERANK_DEPTH", "?")
    print(f"  rerank (depth {depth}): e2e p50 {timing['p50']:.0f} ms, p95 {timing['p95']:.0f} ms", flush=True)
    return [[label, "flat", str(depth), f"{timing.get('rerank_p50', float('nan')):.0f}",
             f"{timing['p50']:.0f}", f"{timing['p95']:.0f}"]]


def plot(rows: list[Row], path: Path) -> Path:
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    markers = dict(zip(INDEX_TYPES, "os^D", strict=True))
    corpora = list(dict.fromkeys(r.corpus for r in rows))
    colors = dict(zip(corpora, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for r in rows:
        left.scatter(r.timing["p95"], r.recall, marker=markers.get(r.index_type, "x"), color=colors[r.corpus], s=60)
        left.annotate(r.index_type, (r.timing["p95"], r.recall), textcoords="offset points", xytext=(4, 4),
                      fontsize=8)
    for corpus in corpora:
        left.scatter([], [], color=colors[corpus], label=corpus)
    left.axhline(0.98, color="grey", linestyle=":", linewidth=1)
    left.axvline(50, color="grey", linestyle=":", linewidth=1)
    left.set(xlabel="end-to-end p95 latency (ms)", ylabel=f"recall@{RECALL_AT} vs exact",
             title="Recall against latency (dotted: targets)")
    left.legend(fontsize=8)
    width = 0.8 / max(1, len(corpora))
    for i, corpus in enumerate(corpora):
        held = {r.index_type: max(r.rss["served"], 0.1) for r in rows if r.corpus == corpus}
        files = {r.index_type: r.index_mib for r in rows if r.corpus == corpus}
        xs = [INDEX_TYPES.index(t) + i * width for t in held]
        right.bar(xs, list(files.values()), width=width, color=colors[corpus], alpha=0.25)
        right.bar(xs, list(held.values()), width=width, color=colors[corpus], label=corpus)
    right.set_xticks([j + width * (len(corpora) - 1) / 2 for j in range(len(INDEX_TYPES))], INDEX_TYPES)
    right.set(yscale="log", ylabel="MiB (log)",
              title="Heap held after 20 queries (solid) and index file (pale)")
    right.legend(fontsize=8)
    fig.suptitle(f"Index types on {os.cpu_count()} CPU cores, {ARGS.threads} thread(s) per query")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=f"{REFERENCE_SIZE},1000000",
                        help="synthetic corpus sizes, comma-separated ('' for none; default %(default)s)")
    parser.add_argument("--dim", type=int, default=384, choices=(384, 768), help="384 = MiniLM, 768 = TAS-B")
    parser.add_argument("--types", default=",".join(INDEX_TYPES), help="index types (default %(default)s)")
    parser.add_argument("--queries", type=int, default=50, help="timed queries per index (default %(default)s)")
    parser.add_argument("--recall-queries", type=int, default=100, help="queries for recall (default %(default)s)")
    parser.add_argument("--real", default="/tmp/shared_minilm_index",
                        help="a built index to re-index as each type ('' to skip; default %(default)s)")
    parser.add_argument("--hnsw-max", type=int, default=200_000,
                        help="largest synthetic corpus to build HNSW for (default %(default)s)")
    parser.add_argument("--threads", type=int, default=serving_threads(),
                        help="torch and faiss threads per query (default %(default)s: half the cores)")
    parser.add_argument("--compare-threads", default="1,2",
                        help="thread counts to compare on the flat indexes ('' to skip; default %(default)s)")
    parser.add_argument("--rerank-queries", type=int, default=5,
                        help="timed queries with a cross-encoder on the real index (0 to skip; default %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="PNG path (default data/benchmarks/query_latency_<dim>.png)")
    args = parser.parse_args(argv)
    args.sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    args.types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in args.types if t not in INDEX_TYPES]
    if unknown:
        parser.error(f"unknown index type {unknown[0]!r}; choose from {', '.join(INDEX_TYPES)}")
    args.compare_threads = [int(t) for t in args.compare_threads.split(",") if t.strip()]
    args.plot = Path(args.plot or config.DATA_DIR / "benchmarks" / f"query_latency_{args.dim}.png")
    return args


THREAD_ROWS: list[list[str]] = []
RERANK_ROWS: list[list[str]] = []
ARGS: argparse.Namespace


def main(argv: list[str] | None = None) -> int:
    global ARGS
    ARGS = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    print(f"query_latency: {' '.join(sys.argv[1:]) or '(defaults)'}; {load_average()}; threads per query "
          f"{ARGS.threads}", flush=True)
    encoder = Encoder.load(config.FALLBACK_MODEL, device="cpu", backend=default_backend("cpu"))  # as served
    workdir = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    queries = Queries()
    rows: list[Row] = []
    try:
        timing_encoder = encoder
        if ARGS.dim == 768:
            timing_encoder = Encoder.load(str(random_bert_dir(workdir / "tasb-shape", hidden=768, layers=6,
                                                               heads=12, intermediate=3072)), device="cpu")
        print("\n" + markdown_table(HEADERS, []), flush=True)
        for size in ARGS.sizes:
            rows += synthetic_runs(size, timing_encoder, workdir, queries)
        real = Path(ARGS.real) if ARGS.real else None
        if real is not None and (real / MANIFEST).exists():
            if ARGS.dim != encoder.dim:
                print(f"\nreal index skipped: it is {encoder.dim}-d, --dim is {ARGS.dim}")
            else:
                rows += real_runs(real, encoder, workdir, queries)
        elif real is not None:
            print(f"\nreal index skipped: no {MANIFEST} in {real} (build it with python -m recommender build)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\n## Index types ({load_average()} at the end; {ARGS.threads} thread(s) per query)\n")
    print(markdown_table(HEADERS, [r.cells() for r in rows]))
    if THREAD_ROWS:
        print("\n## Threads per query (flat index)\n")
        print(markdown_table(["corpus", "type", "threads", "encode p50 ms", "search p50 ms", "e2e p50 ms",
                              "e2e p95 ms"], THREAD_ROWS))
    if RERANK_ROWS:
        print("\n## With cross-encoder rerank\n")
        print(markdown_table(["corpus", "type", "rerank depth", "rerank p50 ms", "e2e p50 ms", "e2e p95 ms"],
                             RERANK_ROWS))
    if rows:
        print(f"\nPlot: {plot(rows, plot_path(ARGS.plot))}")
    print(f"Total wall time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
