"""Serve the JSON API and the web page with waitress: ``python api.py [--index DIR] [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from recommender import config
from recommender.errors import RecommenderError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000
DEFAULT_WORKERS = 4
#: Where the reference frontend's development server (``npm start``) runs; see README "Reference frontend".
DEFAULT_CORS_ORIGINS = "http://localhost:3000,http://127.0.0.1:3000"
DEFAULT_RELOAD_INTERVAL_S = 5.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python api.py", description="Serve the anime review search API and page.")
    parser.add_argument("--index", help="index directory (default: the only one under data/index/)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default %(default)s)")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="waitress worker threads (default %(default)s)")
    parser.add_argument("--rate-limit", default="10 per second",
                        help='requests per client, flask-limiter syntax (default "%(default)s"); "off" disables it')
    parser.add_argument("--cors-origins", default=DEFAULT_CORS_ORIGINS,
                        help='comma-separated origins (scheme://host:port) allowed to call the API from a browser;'
                             ' "*" for any http(s) origin; "null" is never allowed (default %(default)s)')
    parser.add_argument("--reload-interval", type=float, default=DEFAULT_RELOAD_INTERVAL_S, metavar="S",
                        help="seconds between checks for a rebuilt index, loaded and swapped in without dropping"
                             " requests; 0 turns it off (default %(default)s)")
    parser.add_argument("--model", help="override the model recorded in the index manifest")
    parser.add_argument("--device", help="torch device for the query encoder (default: CUDA when available)")
    parser.add_argument("--no-gzip", action="store_true", help="never compress responses")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def resolve_index(index: str | None) -> str:
    """The index to serve: ``--index``, else the only one under data/index/.

    Raises:
        RecommenderError: none given and none (or several) found.
    """
    from recommender.__main__ import _default_index

    if index:
        return index
    found = _default_index()
    if found:
        return found
    root = config.INDEX_ROOT
    if root.is_dir() and sum((p / "manifest.json").exists() for p in root.iterdir()) > 1:
        raise RecommenderError(f"several indexes under {config.INDEX_ROOT}; choose one with --index DIR")
    raise RecommenderError(
        f"no index found under {config.INDEX_ROOT}. Run `python main.py` once (it builds one), or"
        " `python -m recommender build`, or pass --index DIR"
    )


def settings_from_args(args: argparse.Namespace) -> dict:
    """create_app configuration for the command-line options."""
    limit_off = args.rate_limit.strip().lower() in ("off", "none", "0", "")
    origins = [o.strip() for o in args.cors_origins.split(",") if o.strip()]
    return {
        "INDEX_DIR": resolve_index(args.index),
        "MODEL": args.model,
        "DEVICE": args.device,
        "RATE_LIMIT": args.rate_limit,
        "RATE_LIMIT_ENABLED": not limit_off,
        "CORS_ORIGINS": "*" if origins == ["*"] else origins,  # "" allows no browser origin at all
        "GZIP": not args.no_gzip,
        "RELOAD_INTERVAL_S": args.reload_interval,
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Request lines and waitress's own notices, without the libraries' start-up chatter.
    for name in ("webapp", "waitress"):
        logging.getLogger(name).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.workers < 1 or not 0 <= args.port <= 65535 or not 0 <= args.reload_interval <= 86400:
        print("error: --workers must be at least 1, --port between 0 and 65535 and --reload-interval"
              " between 0 and 86400", file=sys.stderr)
        return 2
    try:
        from webapp.app import cors_origins

        settings = settings_from_args(args)  # before the heavy imports: a missing index is reported at once
        cors_origins(settings["CORS_ORIGINS"])
    except ValueError as exc:
        print(f"error: --cors-origins: {exc}", file=sys.stderr)
        return 2
    except RecommenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        from webapp import create_app

        app = create_app(settings)
    except RecommenderError as exc:  # missing or mismatched index/model: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1

    from webapp.server import make_server

    server = make_server(app, host=args.host, port=args.port, threads=args.workers)
    # Printed (and flushed) so scripts that start us with --port 0 can read the address.
    print(f"serving on http://{args.host}:{server.effective_port}/", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
