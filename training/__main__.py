"""Command line: ``python -m training gpl|eval|make-tiny-models``."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from recommender import config as rconfig
from recommender.errors import RecommenderError
from scraping.store import StoreError
from training.config import STAGES
from training.errors import ConfigError, TrainingError

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


#: Command-line settings that are stored with the run (``overrides.json``) and reused by later invocations.
OVERRIDE_FLAGS = {"max_steps": "--max-steps", "sample": "--sample"}


def cmd_gpl(args: argparse.Namespace) -> int:
    from training import dist
    from training.config import load_config
    from training.gpl import closing_line, run_gpl
    from training.rundir import RunDir

    run = load_config(args.config)
    # Overrides given once stay in force: a later `--stage export` without --max-steps must not see
    # "other settings" in the train stage (and must not redo it).
    stored = RunDir(run.run_dir).overrides()
    given = {key: getattr(args, key) for key in OVERRIDE_FLAGS if getattr(args, key) is not None}
    overrides = {key: value for key, value in {**stored, **given}.items() if key in OVERRIDE_FLAGS}
    main_rank = dist.from_env().is_main
    reused = {key: value for key, value in overrides.items() if key not in given}
    if reused and main_rank:
        print("using the overrides stored with this run: "
              + " ".join(f"{OVERRIDE_FLAGS[key]} {value}" for key, value in reused.items()), file=sys.stderr)
    run = run.with_overrides(**overrides)
    infos = run_gpl(run, until=args.stage, progress=not args.quiet, device=args.device, restart=args.restart_stage,
                    force_export=args.force_export, mirror=args.mirror, overrides=overrides)
    if main_rank:
        if args.json:
            print(json.dumps(infos, indent=2, default=str))
        print(closing_line(run, infos), flush=True)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from recommender.encoder import Encoder
    from scraping.store import Store
    from training.corpus import choose_eval_reviews
    from training.evalcurve import evaluate_model

    encoder = Encoder.load(args.model, device=args.device)  # TAS-B by name gets its own CLS pooling and dot product
    if args.max_seq_length:
        encoder.model.max_seq_length = args.max_seq_length
    with Store.open(args.db, create=False) as store:
        reviews = [r for r in store.iter_reviews() if r.text and r.text.strip()]
    if args.max_reviews:
        keep = choose_eval_reviews(((r.review_id, r.anime_id) for r in reviews), args.max_reviews,
                                   args.per_anime, args.seed)
        reviews = [r for r in reviews if r.review_id in keep]
    metrics = evaluate_model(encoder.model, reviews, max_queries=args.max_queries, seed=args.seed,
                             name=encoder.name)
    result = {"model": encoder.name, "path": encoder.path, "similarity": encoder.similarity,
              "pooling": encoder.pooling, "max_seq_length": encoder.max_seq_length, "reviews": len(reviews), **metrics}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{encoder.name} ({encoder.pooling}, {encoder.similarity}, {encoder.max_seq_length} tokens) on "
              f"{len(reviews)} reviews, {metrics['queries']} queries: "
              f"hit@1 {metrics['hit@1']:.3f}  hit@10 {metrics['hit@10']:.3f}  MRR@10 {metrics['mrr@10']:.3f}  "
              f"macro MRR@10 {metrics['macro_mrr@10']:.3f}")
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from training.tiny import make_tiny_models

    for kind, path in make_tiny_models(args.dir, shaped=args.shaped).items():
        print(f"{kind}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description="GPL domain adaptation of the encoder.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("gpl", help="run the GPL stages (finished ones are skipped, killed ones resume)")
    p.add_argument("--config", required=True, help="run configuration (TOML), e.g. configs/gpl-full.toml")
    p.add_argument("--stage", choices=STAGES, help="run up to and including this stage (default: all)")
    p.add_argument("--max-steps", type=int, help="override train.steps (kept for later invocations of this run)")
    p.add_argument("--sample", type=int,
                   help="override corpus.sample: at most N passages, 0 = all (kept for later invocations of this run)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--restart-stage", action="store_true",
                   help="redo stages whose finished or partial work was made with other settings (they refuse "
                        "otherwise, naming the settings that differ)")
    p.add_argument("--force-export", action="store_true",
                   help="publish the model to export.dir even if it did not beat the base model beyond noise")
    p.add_argument("--mirror", metavar="DIR",
                   help="copy each finished stage and the best checkpoint to DIR (e.g. Google Drive), and restore "
                        "from it what the run directory lacks")
    p.add_argument("--json", action="store_true", help="print the stages' done-markers as JSON at the end")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_gpl)

    p = sub.add_parser("eval", help="known-item evaluation of a model on the review store")
    p.add_argument("--model", required=True, help="model directory or name")
    p.add_argument("--db", default=str(rconfig.DEFAULT_DB), help="review store (default: %(default)s)")
    p.add_argument("--max-reviews", type=int, default=0,
                   help="evaluate on a sample of this many reviews, whole anime at a time (default: all)")
    p.add_argument("--per-anime", type=int, default=20, help="reviews per anime in that sample")
    p.add_argument("--max-queries", type=int, default=200, help="known-item queries (default %(default)s)")
    p.add_argument("--max-seq-length", type=int, default=0,
                   help="tokens the model reads (default: its own); compare two models at the same length")
    p.add_argument("--seed", type=int, default=rconfig.EVAL_SEED, help="split and sample seed")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("make-tiny-models", help="write tiny random T5/cross-encoder/bi-encoder models (offline)")
    p.add_argument("dir", help="output directory")
    p.add_argument("--shaped", action="store_true",
                   help="random models in the production shapes (T5-base, MiniLM-L6 cross-encoder, DistilBERT)")
    p.set_defaults(func=cmd_make_tiny)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("max_steps", "sample", "max_reviews", "max_queries", "max_seq_length"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (TrainingError, RecommenderError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
