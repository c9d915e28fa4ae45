"""Build an index over the shared MAL reviews and time it, then time 200 queries stage by stage.

    python benchmarks/build_and_query.py [--data ../shared/data] [--model NAME] [--backend NAME] [--sample N]
                                         [--out DIR]

Prints a markdown table (build throughput, index size, peak RSS, query latency
p50/p95 split into encode / search / aggregate) and writes a PNG of the query
latency distribution next to the index.
"""

from __future__ import annotations

import argparse
import itertools
import resource
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import load_average  # noqa: E402

from recommender import config  # noqa: E402
from recommender.backends import BACKENDS, default_backend  # noqa: E402
from recommender.build import build_index  # noqa: E402
from recommender.encoder import Encoder  # noqa: E402
from recommender.search import Recommender  # noqa: E402
from scraping.importers import import_anime_jsonl, import_reviews_jsonl  # noqa: E402
from scraping.models import Review  # noqa: E402
from scraping.store import Store  # noqa: E402

MOODS = ["dark", "cozy", "funny", "sad", "slow-burn", "fast-paced", "thoughtful", "violent", "wholesome", "weird"]
SUBJECTS = ["space pirates", "high school romance", "a detective chasing a killer", "giant robots at war",
            "friends camping", "a cooking competition", "time travel", "a volleyball team", "ninjas and rivals",
            "a demon working a normal job", "samurai in old Japan", "a band of misfits on a ship",
            "magic school", "post-apocalyptic travel", "idol singers", "a chess prodigy", "vampires in a city",
            "bounty hunters and jazz", "a boy who wants to be the strongest", "office workers"]


def benchmark_queries(n: int) -> list[str]:
    """``n`` distinct queries, so the encoder's query cache never answers for the model."""
    combos = itertools.product(MOODS, SUBJECTS)
    return [f"{mood} anime about {subject}" for mood, subject in itertools.islice(combos, n)]


def directory_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(config.PROJECT_ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=None, help="model name or dir (default: the CLI default)")
    parser.add_argument("--backend", choices=BACKENDS, default=default_backend(),
                        help="encoder backend (default: %(default)s, the build default here)")
    parser.add_argument("--sample", type=int, default=0, help="index only the first N reviews (0 = all)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--top-n", type=int, default=config.DEFAULT_TOP_N)
    parser.add_argument("--out", help="index directory (default: a temporary one, removed afterwards)")
    parser.add_argument("--plot", default=str(config.DATA_DIR / "benchmarks" / "build_and_query.png"))
    args = parser.parse_args(argv)

    data = Path(args.data)
    if not (data / "reviews.jsonl").exists():
        print(f"error: {data}/reviews.jsonl not found (pass --data)", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="bench-build-"))
    out = Path(args.out) if args.out else workdir / "index"
    try:
        db = workdir / "store.sqlite"
        with Store.open(db) as store:
            import_anime_jsonl(store, data / "anime.jsonl")
            import_reviews_jsonl(store, data / "reviews.jsonl")
            if args.sample:
                keep = [r for r, _ in zip(store.iter_reviews(), range(args.sample), strict=False)]
        if args.sample:
            db = workdir / "sample.sqlite"
            with Store.open(db) as store:
                store.upsert_reviews(Review(**{**r.to_dict()}) for r in keep)
        load_before = load_average()
        encoder = Encoder.load(args.model, backend=args.backend)
        rss_before = peak_rss_mib()
        report = build_index(db, out=out, encoder=encoder, progress=True, full=True)  # full even into an old --out
        rss_build = peak_rss_mib()
        load_after_build = load_average()

        # Loaded as served: the manifest's backend, config.SERVE_THREADS threads per query.
        recommender = Recommender.load(out)
        queries = benchmark_queries(args.queries)
        recommender.search("warm-up query", top_n=args.top_n, aggregation=config.DEFAULT_AGGREGATION)
        stages = {"encode": [], "search": [], "aggregate": [], "evidence": [], "total": []}
        for query in queries:
            timing = recommender.search(query, top_n=args.top_n, aggregation=config.DEFAULT_AGGREGATION).timing_ms
            for name in stages:
                stages[name].append(timing.get(name, 0.0))

        rows = [
            ("model", encoder.name),
            ("encoder backend", f"{encoder.backend} ({getattr(encoder.runner, 'precision', '?')})"),
            ("machine load before → after the build", f"{load_before} → {load_after_build}"),
            ("reviews / chunks / anime", f"{report.reviews} / {report.chunks} / {report.anime}"),
            ("build wall time", f"{report.seconds:.1f} s"),
            ("reviews embedded per s", f"{report.reviews_per_s:.1f}"),
            ("chunks embedded per s", f"{report.chunks_per_s:.1f}"),
            ("index size on disk", f"{directory_bytes(out) / 2**20:.1f} MiB"),
            ("index.faiss", f"{(out / 'index.faiss').stat().st_size / 2**20:.1f} MiB"),
            ("peak RSS (before build → after build → after queries)",
             f"{rss_before:.0f} → {rss_build:.0f} → {peak_rss_mib():.0f} MiB"),
        ]
        print(f"\n### Build ({encoder.name}, {report.reviews} reviews)\n")
        print("| measure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
        print(f"\n### Query latency over {len(queries)} distinct queries (top_n={args.top_n},"
              f" aggregation={config.DEFAULT_AGGREGATION}), ms\n")
        print("| stage | p50 | p95 | mean |\n|---|---|---|---|")
        for name, values in stages.items():
            arr = np.array(values)
            print(f"| {name} | {np.percentile(arr, 50):.2f} | {np.percentile(arr, 95):.2f} | {arr.mean():.2f} |")

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.boxplot([stages[s] for s in ("encode", "search", "aggregate", "evidence", "total")],
                   tick_labels=["encode", "search", "aggregate", "evidence", "total"])
        ax.set_ylabel("ms per query")
        ax.set_title(f"Query latency, {report.chunks} chunks, {encoder.name}")
        plot = Path(args.plot)
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(plot, dpi=100)
        print(f"\nplot: {plot}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
