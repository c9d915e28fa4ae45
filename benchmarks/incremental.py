"""Time a full build against an update that adds 1 % new reviews, and check the update answers like the full build.

    python benchmarks/incremental.py [--data ../shared/data] [--model NAME] [--share 0.01] [--queries 50]
                                     [--full-index DIR] [--workdir DIR]

On the shared MAL reviews, in one run: a full build of every review (timed); the
same index with a random ``--share`` of the reviews deleted (an update that
embeds nothing); then the update that adds them back (timed: the number the
issue's target is about), and an update with nothing to do (the fixed cost).
The added-back index is then compared with the full build: chunk table (chunk
ids per row), vectors, centroids, synopsis vectors, BM25 scores and the top 10
anime of ``--queries`` queries. Prints a markdown table.

``--full-index DIR`` skips the full build and copies DIR instead (it must be a
full build of the same store with the same model); its build time is then read
from its manifest and says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Stopwatch, load_average, markdown_table  # noqa: E402
from build_and_query import benchmark_queries  # noqa: E402

from recommender import config  # noqa: E402
from recommender.build import build_index  # noqa: E402
from recommender.encoder import Encoder  # noqa: E402
from recommender.index import VectorIndex  # noqa: E402
from recommender.lexical import LexicalIndex  # noqa: E402
from recommender.search import Recommender  # noqa: E402
from scraping.importers import import_anime_jsonl, import_reviews_jsonl  # noqa: E402
from scraping.store import Store  # noqa: E402


def make_stores(data: Path, workdir: Path, share: float, seed: int) -> tuple[Path, Path, int]:
    """The store of every shared review, and one without a random ``share`` of them; returns both and how many."""
    everything, fewer = workdir / "all.sqlite", workdir / "fewer.sqlite"
    with Store.open(everything) as store:
        import_anime_jsonl(store, data / "anime.jsonl")
        import_reviews_jsonl(store, data / "reviews.jsonl")
        anime, reviews = list(store.iter_anime()), list(store.iter_reviews())
    held = set(np.random.default_rng(seed).choice(len(reviews), max(1, round(share * len(reviews))), replace=False))
    with Store.open(fewer) as store:
        store.upsert_anime(anime)
        store.upsert_reviews(r for i, r in enumerate(reviews) if i not in held)
    return everything, fewer, len(held)


def compare(updated: Path, full: Path, encoder: Encoder, queries: list[str]) -> list[tuple[str, str]]:
    """How the updated index differs from the full build, one row per part."""
    def parts(directory: Path) -> dict:
        manifest = json.loads((directory / "manifest.json").read_text())
        info = manifest["index"]
        return {"chunks": pd.read_parquet(directory / "chunks.parquet"),
                "rows": np.load(directory / "vectors.ids.npy"),
                "vectors": VectorIndex.load(directory, info["type"], info["params"], use_gpu=False).vectors(),
                "centroids": np.load(directory / "anime_vectors.npy"),
                "synopses": np.load(directory / "synopsis_vectors.npy"),
                "lexical": LexicalIndex.load(directory / "lexical"), "search": manifest["search"]}

    a, b = parts(updated), parts(full)
    same_chunks = a["chunks"].equals(b["chunks"]) and np.array_equal(a["rows"], b["rows"])
    bm25_same = sum(np.array_equal(a["lexical"].scores(q), b["lexical"].scores(q)) for q in queries)
    ra, rb = Recommender.load(updated, encoder=encoder), Recommender.load(full, encoder=encoder)
    same_top = same_evidence = 0
    for query in queries:
        x, y = ra.search(query, limit=10), rb.search(query, limit=10)
        same_top += [r.anime_id for r in x.results] == [r.anime_id for r in y.results]
        same_evidence += [[e.review_id for e in r.evidence] for r in x.results] == \
                         [[e.review_id for e in r.evidence] for r in y.results]
    return [
        ("chunk table and row → chunk id identical", "yes" if same_chunks else "NO"),
        ("max abs difference of chunk vectors", f"{np.abs(a['vectors'] - b['vectors']).max():.1e}"),
        ("max abs difference of anime centroids", f"{np.abs(a['centroids'] - b['centroids']).max():.1e}"),
        ("max abs difference of synopsis vectors", f"{np.abs(a['synopses'] - b['synopses']).max():.1e}"),
        ("doc_norm (updated / full)", f"{a['search']['doc_norm']} / {b['search']['doc_norm']}"),
        ("queries with identical BM25 scores over every passage", f"{bm25_same} / {len(queries)}"),
        ("queries with the same top 10 anime, in order", f"{same_top} / {len(queries)}"),
        ("queries with the same evidence reviews", f"{same_evidence} / {len(queries)}"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(config.PROJECT_ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default=None, help="model name or dir (default: the CLI default)")
    parser.add_argument("--share", type=float, default=0.01, help="share of the reviews added by the update")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--full-index", help="reuse this full build of the same store instead of building one")
    parser.add_argument("--workdir", help="keep the stores and indexes here (default: a temporary dir, removed)")
    args = parser.parse_args(argv)

    data = Path(args.data)
    if not (data / "reviews.jsonl").exists():
        print(f"error: {data}/reviews.jsonl not found (pass --data)", file=sys.stderr)
        return 1
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-incremental-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        everything, fewer, held = make_stores(data, workdir, args.share, args.seed)
        with Stopwatch() as load:
            encoder = Encoder.load(args.model)
            _ = encoder.sha256  # computed once per model load; part of every build, timed here
        full_dir, updated = workdir / "full", workdir / "updated"
        for path in (full_dir, updated):
            shutil.rmtree(path, ignore_errors=True)
        load_before = load_average()
        if args.full_index:
            shutil.copytree(args.full_index, full_dir)
            manifest = json.loads((full_dir / "manifest.json").read_text())
            with Store.open(everything) as store:
                if manifest["store"]["checksum"] != store.reviews_checksum():
                    print(f"error: {args.full_index} was not built from {data}/reviews.jsonl", file=sys.stderr)
                    return 1
            full_seconds, full_note = manifest["build_seconds"], "from its manifest, not this run"
        else:
            full_seconds = build_index(everything, out=full_dir, encoder=encoder, progress=True, full=True).seconds
            full_note = "this run"
        shutil.copytree(full_dir, updated)
        deleted = build_index(fewer, out=updated, encoder=encoder, progress=False)
        added = build_index(everything, out=updated, encoder=encoder, progress=True)
        idle = build_index(everything, out=updated, encoder=encoder, progress=False)
        load_after = load_average()
        if not (deleted.incremental and added.incremental and idle.incremental):
            print("error: an update was not incremental", file=sys.stderr)
            return 1

        print(f"\n### Full build vs update ({encoder.name}, {added.reviews} reviews, {added.chunks} chunks; "
              f"2 shared cores, {load_before} → {load_after})\n")
        rows = [
            ("model load + weights sha256 (paid by every build command)", f"{load.seconds:.1f} s", "", ""),
            (f"full build ({full_note})", f"{full_seconds:.1f} s", f"{added.chunks}", "100 %"),
            (f"update: delete {held} reviews ({args.share:.0%})", f"{deleted.seconds:.1f} s",
             f"{deleted.new + deleted.changed}", f"{100 * deleted.seconds / full_seconds:.1f} %"),
            (f"update: add them back ({added.new} new chunks, {added.reused} reused)", f"{added.seconds:.1f} s",
             f"{added.new + added.changed}", f"{100 * added.seconds / full_seconds:.1f} %"),
            ("update with nothing changed", f"{idle.seconds:.1f} s", f"{idle.new + idle.changed}",
             f"{100 * idle.seconds / full_seconds:.1f} %"),
        ]
        print(markdown_table(["build", "wall time", "chunks embedded", "of the full build"], rows))
        print(f"\n### Added-back index vs the full build ({args.queries} queries)\n")
        print(markdown_table(["check", "result"], compare(updated, full_dir, encoder,
                                                          benchmark_queries(args.queries))))
        print(f"\nsummary line of the add: {added.summary()}")
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
