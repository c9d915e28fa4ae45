"""Command line: ``python -m recommender build|search``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from recommender import config
from recommender.errors import InvalidQueryError, RecommenderError
from scraping.store import StoreError

log = logging.getLogger("recommender")

#: Exit codes: 2 = the user's input is unusable (like argparse), 1 = anything else we could not do.
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def cmd_build(args: argparse.Namespace) -> int:
    from recommender.build import build_index

    report = build_index(args.db, model=args.model, out=args.out, index_type=args.index_type,
                         batch_size=args.batch_size, progress=not args.quiet)
    print(
        f"index written to {report.out}: {report.reviews} reviews, {report.chunks} chunks, {report.anime} anime"
        f" in {report.seconds:.1f} s ({report.reviews_per_s:.1f} reviews/s,"
        f" {report.chunks_per_s:.1f} chunks/s embedded; {report.resumed_chunks} chunks resumed)"
    )
    return 0


def _default_index() -> str | None:
    """The only index under data/index/, if there is exactly one."""
    if not config.INDEX_ROOT.is_dir():
        return None
    found = [p for p in config.INDEX_ROOT.iterdir() if (p / "manifest.json").exists()]
    return str(found[0]) if len(found) == 1 else None


def _print_response(response, as_json: bool) -> None:
    if as_json:
        print(json.dumps(response.to_dict(), ensure_ascii=False), flush=True)
        return
    print(f"query: {response.query}")
    for rank, result in enumerate(response.results, 1):
        print(f"{rank:2d}. {result.title}  (score {result.score:.3f}, {result.count} reviews)  {result.url}")
        if result.evidence:
            print(f"      “{result.evidence[0].snippet}”")
    print(f"({response.timing_ms.get('total', 0):.0f} ms)", flush=True)


def cmd_search(args: argparse.Namespace) -> int:
    from recommender.search import Recommender, clean_query

    if args.queries_file is None:
        if args.query is None:
            raise InvalidQueryError("give a QUERY or --queries-file FILE")
        clean_query(" ".join(args.query))  # reject a blank query before paying for model loading
    index = args.index or _default_index()
    if index is None:
        raise RecommenderError("no --index given and no single index under data/index/; build one first")
    recommender = Recommender.load(index, model=args.model)
    options = dict(top_n=args.top_n, limit=args.limit, aggregation=args.aggregation)
    if args.queries_file is None:
        _print_response(recommender.search(" ".join(args.query), **options), args.json)
        return 0
    failures = 0
    source = sys.stdin if args.queries_file == "-" else open(args.queries_file, encoding="utf-8")
    with source:
        for line in source:
            if not line.strip():
                continue
            try:
                _print_response(recommender.search(line, **options), args.json)
            except InvalidQueryError as exc:
                failures += 1
                print(json.dumps({"query": line.rstrip("\n"), "error": str(exc)}) if args.json else f"error: {exc}")
    return EXIT_BAD_INPUT if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recommender", description="Anime recommendations from reviews.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="embed every review in the store and write an index directory")
    p.add_argument("--db", default=str(config.DEFAULT_DB), help="review store (default: %(default)s)")
    p.add_argument("--model", help="model name or directory (default: newest under data/models/, else all-MiniLM-L6-v2)")
    p.add_argument("--out", help="index directory (default: data/index/<model name>)")
    p.add_argument("--index-type", default="flat", help="flat (exact, default)")
    p.add_argument("--batch-size", type=int, default=config.ENCODE_BATCH_SIZE, help="texts per forward pass")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("search", help="recommend anime for a description")
    p.add_argument("query", nargs="*", default=None, help="what you want to watch")
    p.add_argument("--index", help="index directory (default: the only one under data/index/)")
    p.add_argument("--model", help="override the model recorded in the index manifest")
    p.add_argument("--json", action="store_true", help="print one JSON object per query")
    p.add_argument("--top-n", type=int, default=config.DEFAULT_TOP_N, help="review chunks retrieved (default %(default)s)")
    p.add_argument("--limit", type=int, default=config.DEFAULT_LIMIT, help="anime returned (default %(default)s)")
    p.add_argument("--aggregation", default=config.DEFAULT_AGGREGATION, help="how hits become anime (default %(default)s)")
    p.add_argument("--queries-file", help="one query per line ('-' for stdin); one result line per query")
    p.set_defaults(func=cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "query", None) == []:
        args.query = None
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return args.func(args)
    except InvalidQueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RecommenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.code in ("invalid_parameter", "unknown_aggregation") else EXIT_FAILURE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
