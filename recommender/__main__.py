"""Command line: ``python -m recommender build|search|similar|evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from recommender import config
from recommender.backends import BACKENDS
from recommender.errors import InvalidQueryError, RecommenderError
from recommender.pipes import quiet_on_broken_pipe
from recommender.verdict import describe as describe_verdict
from scraping.store import StoreError

log = logging.getLogger("recommender")

#: Exit codes: 2 = the user's input is unusable (like argparse), 1 = anything else we could not do.
EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
#: Error codes that mean the user asked for something unusable rather than that we failed.
BAD_INPUT_CODES = ("invalid_parameter", "unknown_aggregation", "unknown_anime")


def cmd_build(args: argparse.Namespace) -> int:
    from recommender.backends import default_backend
    from recommender.build import build_index
    from recommender.encoder import Encoder

    encoder = Encoder.load(args.model, backend=args.backend or default_backend())
    report = build_index(args.db, encoder=encoder, out=args.out, index_type=args.index_type,
                         index_params={"ef_search": args.ef_search, "nprobe": args.nprobe},
                         batch_size=args.batch_size, progress=not args.quiet,
                         full=args.full, say=lambda line: print(line, file=sys.stderr, flush=True))
    print(report.summary())
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
            first = result.evidence[0]
            said = describe_verdict(first.review_score, first.verdict)
            print(f"      “{first.snippet}”" + (f" ({said})" if said else ""))
    print(f"({response.timing_ms.get('total', 0):.0f} ms)", flush=True)


def _filters(args: argparse.Namespace, recommender=None):
    """The search filters given on the command line (adult titles hidden unless --nsfw), by the API's rules.

    Without ``recommender`` only their form is checked (before the model is loaded); with it,
    genre and type names must also be ones the index knows.

    Raises:
        InvalidParameterError: a malformed value, reversed years, or an unknown name (with close matches).
    """
    from recommender.validation import Fields, parse_filters

    fields = Fields.from_values({"genre": args.genre, "exclude_genre": args.exclude_genre, "type": args.type,
                                 "year_min": args.year_min, "year_max": args.year_max, "min_score": args.min_score,
                                 "nsfw": args.nsfw or None})
    meta = recommender.meta() if recommender is not None else {}
    return parse_filters(fields, meta.get("genres"), meta.get("types"))


def _index_dir(args: argparse.Namespace) -> str:
    index = args.index or _default_index()
    if index is None:
        raise RecommenderError("no --index given and no single index under data/index/; build one first")
    return index


def cmd_search(args: argparse.Namespace) -> int:
    from recommender.search import Recommender
    from recommender.validation import clean_query

    if args.queries_file is None:
        if args.query is None:
            raise InvalidQueryError("give a QUERY or --queries-file FILE")
        clean_query(" ".join(args.query))  # reject a blank query before paying for model loading
    _filters(args)
    recommender = Recommender.load(_index_dir(args), model=args.model)
    filters = _filters(args, recommender)
    options = dict(top_n=args.top_n, limit=args.limit, offset=args.offset, aggregation=args.aggregation,
                   filters=filters, rerank=args.rerank or False)
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


def cmd_similar(args: argparse.Namespace) -> int:
    from recommender.errors import UnknownAnimeError
    from recommender.search import Recommender

    try:
        anime_id = int(args.anime_id)
    except ValueError:
        raise UnknownAnimeError(f"ANIME_ID must be a MyAnimeList anime id (a number), got {args.anime_id!r}") from None
    _filters(args)
    recommender = Recommender.load(_index_dir(args), model=args.model)
    filters = _filters(args, recommender)
    _print_response(recommender.similar(anime_id, limit=args.limit, filters=filters), args.json)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recommender.aggregate import AGGREGATIONS
    from recommender.errors import UnknownAggregationError
    from recommender.eval_report import format_table, plot_report
    from recommender.evaluate import evaluate_index
    from recommender.search import Recommender
    from recommender.search_config import SearchConfig
    from recommender.validation import check_int

    names = [n.strip() for value in (args.aggregation or []) for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in AGGREGATIONS]
    if unknown:
        raise UnknownAggregationError(
            f"unknown aggregation {unknown[0]!r}; choose from {', '.join(sorted(AGGREGATIONS))}"
        )
    top_n = None if args.top_n is None else check_int("top_n", args.top_n, 1, config.MAX_TOP_N)
    resamples = check_int("resamples", args.resamples, 100, 100_000)
    changes = SearchConfig.parse_changes(args.set or [])
    SearchConfig().replace(**changes)  # refuse a bad value before the model is loaded
    recommender = Recommender.load(_index_dir(args), model=args.model)
    if changes:
        recommender = recommender.with_settings(**changes)
    report = evaluate_index(recommender, names or None, split=args.split, top_n=top_n, recs_path=args.recs,
                            max_queries=args.max_queries, rerank=args.rerank, resamples=resamples)
    if args.plot:
        report["plot"] = str(plot_report(report, args.plot))
    if args.json:
        print(json.dumps(report, ensure_ascii=False), flush=True)
    else:
        print(format_table(report))
        if args.plot:
            print(f"Plot: {report['plot']}")
    return 0


def _add_filter_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--genre", action="append", help="only anime with this genre/theme/demographic (repeat, or a,b)")
    p.add_argument("--exclude-genre", action="append", help="no anime with this genre/theme/demographic")
    p.add_argument("--type", action="append", help="only these MAL types: TV, Movie, OVA, ONA, Special… (repeat)")
    p.add_argument("--year-min", help="first year aired, at the earliest")
    p.add_argument("--year-max", help="first year aired, at the latest")
    p.add_argument("--min-score", help="minimum MAL score (0-10)")
    p.add_argument("--nsfw", action="store_true", help="include adult titles (hidden by default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recommender", description="Anime recommendations from reviews.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="index the store's reviews: update the index in --out, or build it")
    p.add_argument("--db", default=str(config.DEFAULT_DB), help="review store (default: %(default)s)")
    p.add_argument("--model",
                   help="model name or directory (default: newest under data/models/, else all-MiniLM-L6-v2)")
    p.add_argument("--out", help="index directory (default: data/index/<model name>)")
    p.add_argument("--index-type", default=None, choices=("flat", "hnsw", "ivfpq", "sq8"),
                   help="default: flat up to 200,000 chunks, sq8 above. flat: exact; hnsw: fast graph, ~1.2x"
                        " flat's memory; sq8: 8-bit codes, 1/4 of the memory; ivfpq: 4-bit PQ codes in RAM, full"
                        " vectors memory-mapped for re-scoring (see docs/index_types.md)")
    p.add_argument("--ef-search", type=int, help="hnsw: candidate list size (default: calibrated for 98%% recall)")
    p.add_argument("--nprobe", type=int, help="sq8/ivfpq: IVF lists scanned (default: calibrated for 98%% recall)")
    p.add_argument("--batch-size", type=int, default=config.ENCODE_BATCH_SIZE, help="texts per forward pass")
    p.add_argument("--backend", choices=BACKENDS,
                   help=f"what computes the embeddings (default: {config.DEFAULT_BACKEND} on a CPU, torch on a GPU;"
                        " the index's queries are encoded the same way; see benchmarks/encode_backends.py)")
    p.add_argument("--full", action="store_true",
                   help="embed every review again (default: when --out holds an index made with the same model"
                        " and chunking, embed only new and changed reviews)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("search", help="recommend anime for a description")
    p.add_argument("query", nargs="*", default=None, help="what you want to watch")
    p.add_argument("--index", help="index directory (default: the only one under data/index/)")
    p.add_argument("--model", help="override the model recorded in the index manifest")
    p.add_argument("--json", action="store_true", help="print one JSON object per query")
    p.add_argument("--top-n", type=int, default=config.DEFAULT_TOP_N,
                   help="review chunks retrieved (default %(default)s)")
    p.add_argument("--limit", type=int, default=config.DEFAULT_LIMIT, help="anime returned (default %(default)s)")
    p.add_argument("--offset", type=int, default=0, help="anime skipped, for paging (default %(default)s)")
    p.add_argument("--aggregation", default=config.DEFAULT_AGGREGATION,
                   help="how hits become anime (default %(default)s; count = the reference vote)")
    p.add_argument("--queries-file", help="one query per line ('-' for stdin); one result line per query")
    p.add_argument("--rerank", nargs="?", const=True, metavar="MODEL",
                   help=f"re-score the best passages with a cross-encoder (default {config.RERANK_MODEL})")
    _add_filter_flags(p)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("similar", help="anime whose reviews read like this anime's")
    p.add_argument("anime_id", metavar="ANIME_ID", help="MyAnimeList id of an indexed anime")
    p.add_argument("--index", help="index directory (default: the only one under data/index/)")
    p.add_argument("--model", help="override the model recorded in the index manifest")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--limit", type=int, default=config.DEFAULT_LIMIT, help="anime returned (default %(default)s)")
    _add_filter_flags(p)
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("evaluate", help="measure search quality of every aggregation on an index")
    p.add_argument("--index", help="index directory (default: the only one under data/index/)")
    p.add_argument("--model", help="override the model recorded in the index manifest")
    p.add_argument("--split", choices=("test", "dev", "all"), default="test",
                   help="which half of the evaluation queries: test (published, default), dev (what tuning"
                        " reads) or all")
    p.add_argument("--aggregation", action="append",
                   help="aggregations to compare (repeat or a,b; default: all)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--top-n", type=int, help="review chunks retrieved (default: the index's search settings)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default %(default)s)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="search with one setting changed from the index's (repeat; VALUE in JSON: 0.5, false)")
    p.add_argument("--max-queries", type=int, help="known-item queries at most (default: every held-out review)")
    p.add_argument("--recs", default=str(config.SHARED_RECS),
                   help="MAL user recommendations JSONL for the similar-anime part (default %(default)s)")
    p.add_argument("--plot", default=str(config.DATA_DIR / "evaluation.png"),
                   help="PNG written with the comparison ('' for none; default %(default)s)")
    p.add_argument("--rerank", metavar="MODEL", help="also measure the default aggregation with this cross-encoder")
    p.set_defaults(func=cmd_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "query", None) == []:
        args.query = None
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return quiet_on_broken_pipe(lambda: args.func(args))
    except InvalidQueryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RecommenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.code in BAD_INPUT_CODES else EXIT_FAILURE
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
