"""Interactive console: describe what you want to watch, get anime recommended from their reviews.

    python main.py [--index DIR] [--db DB]

With no flags it works under data/: the first run imports the demo corpus when
the store is empty and builds the index (progress bars on the way); later runs
update it when the store has changed (embedding only new and changed reviews) and
rebuild it when the model or chunking differ from the ones it was built with.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TextIO

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from recommender import config  # noqa: E402
from recommender.errors import RecommenderError  # noqa: E402
from recommender.pipes import quiet_on_broken_pipe  # noqa: E402
from recommender.verdict import describe as describe_verdict  # noqa: E402
from scraping.store import StoreError  # noqa: E402

EXIT_WORDS = {"q", "quit", "exit"}
PROMPT = "What do you want to watch? (q to quit) > "


def rebuild_reason(index_dir: Path, db: Path, encoder) -> str | None:
    """Why ``index_dir`` must be built or updated before it answers for the store with ``encoder`` (None: current).

    The build's own compatibility check decides (:func:`recommender.update.incompatibility`), so an index
    made with other weights — a model re-exported under the same name — is rebuilt, never refused.
    """
    from recommender.errors import IndexMismatchError
    from recommender.search import load_manifest
    from recommender.update import incompatibility
    from scraping.store import Store

    try:
        manifest = load_manifest(index_dir)
    except IndexMismatchError:
        return "it was written by another version of this program"
    except RecommenderError:
        return "there is no index yet"
    reason = incompatibility(manifest, encoder, config.CHUNK_OVERLAP_TOKENS)
    if reason:
        return reason
    with Store.open(db) as store:
        if manifest["store"]["checksum"] != store.reviews_checksum():
            return "the store's reviews changed; only new and changed reviews are embedded"
    return None


def ensure_default_index(db: Path, encoder, out: TextIO) -> Path:
    """The default index for ``encoder``, importing the demo corpus and building or updating it as needed."""
    from recommender.build import build_index
    from scraping.importers import import_anime_jsonl, import_path
    from scraping.store import Store

    with Store.open(db) as store:
        if store.count_reviews() == 0:
            print(f"The review store {db} is empty: importing the demo corpus from {config.DEMO_DIR}.", file=out)
            print(import_anime_jsonl(store, config.DEMO_ANIME).summary(), file=out)
            print(import_path(store, config.DEMO_REVIEWS).summary(), file=out)
    index_dir = config.default_index_dir(encoder.name)
    reason = rebuild_reason(index_dir, db, encoder)
    if reason is not None:
        print(f"Indexing the reviews into {index_dir} with {encoder.name}: {reason}.", file=out)
        report = build_index(db, out=index_dir, encoder=encoder, say=lambda _line: None)  # the reason is said
        print(report.summary(), file=out)
    return index_dir


def format_response(response) -> str:
    """Ranked results with title, URL, score/count and one evidence line each."""
    if not response.results:
        return "No anime matched. Try describing the story, mood or characters differently."
    lines = []
    for rank, result in enumerate(response.results, 1):
        lines.append(f"{rank:2d}. {result.title} — {result.url}")
        lines.append(f"    score {result.score:.3f} · {result.count} matching review(s)")
        if result.evidence:
            first = result.evidence[0]
            said = describe_verdict(first.review_score, first.verdict)
            lines.append(f"    “{first.snippet}”" + (f" ({said})" if said else ""))
    return "\n".join(lines)


def run_console(recommender, stdin: TextIO, out: TextIO, *, top_n: int, limit: int, aggregation: str) -> int:
    """Read queries until q/quit/exit or end of input, printing recommendations for each."""
    interactive = stdin.isatty()
    while True:
        if interactive:
            out.write(PROMPT)
            out.flush()
        line = stdin.readline()
        if not line:
            break
        query = line.strip()
        if not query:
            continue
        if query.lower() in EXIT_WORDS:
            break
        if not interactive:
            print(f"> {query}", file=out)
        try:
            response = recommender.search(query, top_n=top_n, limit=limit, aggregation=aggregation)
        except RecommenderError as exc:
            print(f"error: {exc}", file=out)
            continue
        print(format_response(response), file=out)
        print(file=out, flush=True)
    print("Goodbye!", file=out, flush=True)
    return 0


def check_flags(args: argparse.Namespace) -> Path:
    """Validate the options by the shared rules before anything is loaded; returns the store path.

    Raises:
        InvalidParameterError, UnknownAggregationError, StorePathError: an unusable option.
    """
    from recommender.aggregate import AGGREGATIONS
    from recommender.validation import check_aggregation, check_int
    from scraping.storepath import check_store_path

    check_int("top_n", args.top_n, 1, config.MAX_TOP_N)
    check_int("limit", args.limit, 1, config.MAX_LIMIT)
    check_aggregation(args.aggregation, AGGREGATIONS)
    # The no-flags first run creates data/ and fills the store with the demo; a --db the user typed must exist.
    return config.DEFAULT_DB if args.db is None else check_store_path(args.db, must_exist=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Describe what you want to watch; get anime recommended.")
    parser.add_argument("--index", help="index directory (default: data/index/<model>, built on first run)")
    parser.add_argument("--db", help=f"an existing review store (default: {config.DEFAULT_DB}, created and filled"
                                     " with the demo corpus on first run)")
    parser.add_argument("--model", help="model name or directory (default: newest under data/models/, else MiniLM)")
    parser.add_argument("--top-n", type=int, default=config.DEFAULT_TOP_N, help="review chunks retrieved per query")
    parser.add_argument("--limit", type=int, default=5, help="anime shown per query (default %(default)s)")
    parser.add_argument("--aggregation", default=config.DEFAULT_AGGREGATION, help="how hits become anime")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        db = check_flags(args)
    except (RecommenderError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return quiet_on_broken_pipe(lambda: console(args, db))


def console(args: argparse.Namespace, db: Path) -> int:
    """Load (building on first run) and answer queries until the user leaves."""
    try:
        from recommender.backends import default_backend
        from recommender.encoder import Encoder
        from recommender.search import Recommender

        if args.index:
            recommender = Recommender.load(args.index, model=args.model)
        else:
            print("Loading the model…", file=sys.stderr)
            encoder = Encoder.load(args.model, backend=default_backend())
            index_dir = ensure_default_index(db, encoder, sys.stderr)
            recommender = Recommender.load(index_dir, encoder=encoder)
        counts = recommender.health()["counts"]
        print(f"Ready: {counts['reviews']} reviews of {counts['anime']} anime.", file=sys.stderr)
        return run_console(recommender, sys.stdin, sys.stdout, top_n=args.top_n, limit=args.limit,
                           aggregation=args.aggregation)
    except (RecommenderError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nGoodbye!")
        return 0


if __name__ == "__main__":
    sys.exit(main())
