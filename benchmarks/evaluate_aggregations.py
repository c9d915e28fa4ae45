"""Sweep the search-quality levers on a built index and print one table per sweep.

    python benchmarks/evaluate_aggregations.py --index /tmp/shared_minilm_index [--quick]

Sweeps (every row is a full ``python -m recommender evaluate`` run):
1. aggregation parameters (soft temperature/alpha, topk k, norm alpha, rrf k) at lexical weights 0.1 and 0.2;
2. the levers for the default aggregation: synopsis documents on/off, lexical (BM25) weight, top-N depth.

Selection rule for the default: among the variants strictly better than ``count`` on every metric of the
table, the best mean of KI MRR@10, KI macro-MRR@10, tail MRR@10 and genre@10.

Parameter variants are registered under temporary names (``soft[T=0.02,a=0.5]``)
so that one retrieval serves all of them.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender import config  # noqa: E402
from recommender.aggregate import AGGREGATIONS  # noqa: E402
from recommender.evaluate import evaluate_index  # noqa: E402
from recommender.search import Recommender  # noqa: E402

SHARED_RECS = config.PROJECT_ROOT.parent / "shared" / "data" / "recs.jsonl"


def register_variants(quick: bool) -> list[str]:
    """Add parameter variants of the aggregations to the registry; returns their names."""
    variants: dict[str, tuple[str, dict]] = {}
    temps = (0.03, 0.05) if quick else (0.02, 0.03, 0.05, 0.08)
    alphas = (0.25, 0.5) if quick else (0.0, 0.25, 0.35, 0.5, 0.75, 1.0)
    for t, a in itertools.product(temps, alphas):
        variants[f"soft[T={t},a={a}]"] = ("soft", {"temperature": t, "alpha": a})
    for k in (1, 2, 3, 5):
        variants[f"topk[k={k}]"] = ("topk", {"top_k": k})
    for a in (0.25, 0.5, 0.75, 1.0):
        variants[f"norm[a={a}]"] = ("norm", {"alpha": a})
    for k in (10, 60):
        variants[f"rrf[k={k}]"] = ("rrf", {"rrf_k": k})
    for name, (base, params) in variants.items():
        AGGREGATIONS[name] = functools.partial(AGGREGATIONS[base], **params)
    return list(variants)


def balanced(report: dict, name: str) -> float:
    """The selection rule: the mean of the four headline metrics, each part of the evaluation weighing the same."""
    ki, lt, g = report["known_item"][name], report["long_tail"][name], report["genres"][name]
    return (ki["mrr@10"] + ki["macro_mrr@10"] + lt["mrr@10"] + g["genre@10"]) / 4


#: Every metric of the table: (part, key).
METRICS = (("known_item", "hit@1"), ("known_item", "hit@10"), ("known_item", "mrr@10"), ("known_item", "macro_mrr@10"),
           ("long_tail", "hit@10"), ("long_tail", "mrr@10"), ("genres", "genre@10"))


def beats_count(report: dict, name: str) -> bool:
    """Strictly better than the reference vote on every metric of the table."""
    return all(report[p][name][k] > report[p]["count"][k] for p, k in METRICS)


def row(name: str, report: dict) -> str:
    ki, lt, g = report["known_item"][name], report["long_tail"][name], report["genres"][name]
    return (f"| {name} | {ki['hit@1']:.3f} | {ki['hit@10']:.3f} | {ki['mrr@10']:.3f} | {ki['macro_mrr@10']:.3f} |"
            f" {lt['hit@10']:.3f} |"
            f" {lt['mrr@10']:.3f} | {g['genre@10']:.3f} | {balanced(report, name):.3f} |"
            f" {'yes' if name == 'count' or beats_count(report, name) else 'no'} |")


HEADER = ("| {} | KI hit@1 | KI hit@10 | KI MRR@10 | KI macro-MRR@10 | tail hit@10 | tail MRR@10 | genre@10 |"
          " mean of 4 | beats count on all |\n|---|---|---|---|---|---|---|---|---|---|")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument("--quick", action="store_true", help="fewer variants and depths")
    args = parser.parse_args()
    base = Recommender.load(args.index)
    names = ["count", *register_variants(args.quick)]

    print("## 1. Aggregation parameters"
          f" (top_n={base.settings.top_n}, synopsis weight {base.settings.synopsis_weight},"
          f" BM25 depth {base.settings.lexical_depth})\n")
    print(HEADER.format("aggregation @ lexical weight"))
    candidates = []
    for lam in (0.1, 0.2):
        rec = base.with_settings(lexical_weight=lam)
        t0 = time.perf_counter()
        report = evaluate_index(rec, names)
        for name in names:
            print(row(name, report).replace(f"| {name} |", f"| {name} @ {lam:g} |", 1), flush=True)
            if name != "count" and beats_count(report, name):
                candidates.append((balanced(report, name), f"{name} @ lexical {lam:g}"))
        print(f"| ({time.perf_counter() - t0:.0f} s) |||||||||")
    best = max(candidates, default=None)
    print("\nSelection rule (strictly better than count on every metric, then the best mean of KI MRR@10,"
          " KI macro-MRR@10, tail MRR@10, genre@10): " + (f"{best[1]} ({best[0]:.3f})" if best else "none qualifies"))

    default = config.DEFAULT_AGGREGATION
    print(f"\n## 2. Levers for the default aggregation ({default}); count shown for reference\n")
    print(HEADER.format("setting"))
    depths = (100, 500) if args.quick else (100, 250, 500, 1500)
    settings = [(w, lam, d, config.DEFAULT_TOP_N) for w in (0.0, 1.0) for lam in (0.0, 0.1, 0.2, 0.3)
                for d in (0, config.LEXICAL_DEPTH)]
    settings += [(config.SYNOPSIS_WEIGHT, config.LEXICAL_WEIGHT, config.LEXICAL_DEPTH, n) for n in depths
                 if n != config.DEFAULT_TOP_N]
    count_rows = {}
    for w, lam, depth, n in settings:
        rec = base.with_settings(synopsis_weight=w, lexical_weight=lam, lexical_depth=depth)
        report = evaluate_index(rec, ["count", default], top_n=n)
        label = f"synopsis {w:g}, lexical {lam:g}, BM25 depth {depth}, top_n {n}"
        print(row(default, report).replace(f"| {default} |", f"| {default}: {label} |", 1), flush=True)
        count_rows.setdefault(n, row("count", report).replace("| count |", f"| count: top_n {n} |", 1))
    for line in count_rows.values():  # count ignores synopses and the lexical signal: one row per depth
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
