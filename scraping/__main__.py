"""Command line of the scraping package: ``python -m scraping import|crawl|stats|parse``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from recommender import config
from recommender.pipes import quiet_on_broken_pipe
from scraping.crawl import add_subcommands
from scraping.importers import ImportFormatError, import_anime_jsonl, import_path
from scraping.store import Store, StoreError
from scraping.storepath import StorePathError, check_store_path

log = logging.getLogger("scraping")


def _print_bad_rows(report, limit: int = 5) -> None:
    for line_no, reason in report.bad[:limit]:
        print(f"  line {line_no}: {reason}", file=sys.stderr)
    if len(report.bad) > limit:
        print(f"  … and {len(report.bad) - limit} more bad rows", file=sys.stderr)


def cmd_import(args: argparse.Namespace) -> int:
    # A typed --db may name a new file, but not a folder that does not exist (a typo must not grow a new tree).
    db = config.DEFAULT_DB if args.db is None else check_store_path(args.db, must_exist=False)
    with Store.open(db) as store:
        if args.anime:
            report = import_anime_jsonl(store, Path(args.anime))
            print(report.summary())
            _print_bad_rows(report)
        report = import_path(store, args.path)
        print(report.summary())
        _print_bad_rows(report)
        print(f"store {db}: {store.count_anime()} anime, {store.count_reviews()} reviews")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m scraping", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import", help="import a review dump (.jsonl or the reference .csv) into the store")
    p.add_argument("path", help="reviews .jsonl (our format) or the reference CSV"
                   " (Anime Title, Review, MAL Link, Image URL)")
    p.add_argument("--anime", help="anime metadata .jsonl to import first")
    p.add_argument("--db", help=f"store file, created if new; its folder must exist (default: {config.DEFAULT_DB})")
    p.set_defaults(func=cmd_import)
    add_subcommands(sub, config.DEFAULT_DB)  # crawl, stats, parse
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return quiet_on_broken_pipe(lambda: args.func(args))
    except StorePathError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (StoreError, ImportFormatError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
