"""Choose the search defaults on the dev split, and print every setting tried. It cannot read the test split.

    python benchmarks/tune.py --index /tmp/shared_minilm_index [--quick] [--compare-index DIR ...]

Everything here comes from :func:`recommender.evaluate.dev_benchmark`, which only
ever returns the dev half of each query set (held-out reviews of both halves stay
hidden from the index, as in ``python -m recommender evaluate``). The test half is
read once, afterwards, by ``python -m recommender evaluate --split test``.

Rule, fixed before any run: the *objective* is the mean of three dev numbers whose
judgements we did not write — known-item MRR@10, known-item macro-MRR@10 and
MAL-label nDCG@10. Levers are swept one at a time (coordinate ascent, in the order
below, then the aggregation once more), each with the others at their current
best; a setting replaces the current one only when it raises the objective by at
least ``MIN_GAIN`` (smaller gains are noise at this size). The hand-written
long-tail and genre queries are printed but decide nothing. Whether evidence
prefers agreeing verdicts is decided by the negative-evidence share on the dev
label and hand-written queries (it does not change the ranking).

``--compare-index`` scores the start and the chosen settings on other index
directories of the same reviews and model (e.g. another chunk size), with exactly
the settings used here: the same review ids give the same dev split there.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender import metrics  # noqa: E402
from recommender.evaluate import (  # noqa: E402
    dev_benchmark,
    encode_sets,
    intervals,
    measure_sets,
    negative_evidence,
    point_means,
    share,
)
from recommender.search import Recommender  # noqa: E402
from recommender.search_config import SearchConfig  # noqa: E402

#: A setting must raise the dev objective by at least this much to replace the current one.
MIN_GAIN = 0.005
OBJECTIVE = (("known_item", "mrr@10"), ("known_item", "macro_mrr@10"), ("labels", "ndcg@10"))
COLUMNS = (("known_item", "hit@1", "KI hit@1"), ("known_item", "mrr@10", "KI MRR@10"),
           ("known_item", "macro_mrr@10", "KI macro-MRR@10"), ("labels", "p@10", "label P@10"),
           ("labels", "ndcg@10", "label nDCG@10"), ("long_tail", "mrr@10", "tail MRR@10"),
           ("genres", "recall@10", "genre@10"))


def sweeps(quick: bool) -> list[tuple[str, list[dict]]]:
    """The levers in the order they are tuned, each as the settings changes to try."""
    temps, alphas = ((0.03, 0.05), (0.25, 0.5)) if quick else ((0.02, 0.03, 0.05, 0.08), (0.0, 0.25, 0.5, 0.75, 1.0))
    aggregation = [{"aggregation": "soft", "soft_temperature": t, "soft_alpha": a}
                   for t, a in itertools.product(temps, alphas)]
    aggregation += [{"aggregation": "topk", "top_k": k} for k in ((1, 2) if quick else (1, 2, 3, 5))]
    if not quick:
        aggregation += [{"aggregation": "norm", "norm_alpha": a} for a in (0.25, 0.5, 0.75, 1.0)]
        aggregation += [{"aggregation": "rrf", "rrf_k": k} for k in (10.0, 60.0)]
        aggregation += [{"aggregation": "max"}]
    plan = [
        ("aggregation and its parameters", aggregation),
        ("depth: passages retrieved (top_n)", [{"top_n": n} for n in ((100, 500) if quick else (100, 250, 500, 1000,
                                                                                                 1500))]),
        ("synopsis weight", [{"synopsis_weight": w} for w in ((0.0, 1.0) if quick else (0.0, 0.5, 0.8, 1.0, 1.2))]),
        ("BM25: weight, retrieval depth and the coverage below which it retrieves",
         [{"lexical_weight": w, "lexical_depth": d, "lexical_coverage": c}
          for w in ((0.0, 0.2) if quick else (0.0, 0.1, 0.2, 0.3, 0.5))
          for d, c in ((0, 0.01), (50, 0.01), (50, 1.0))]),
        ("voting depth: passages per review that vote (0 = every passage)",
         [{"hits_per_review": h} for h in ((1, 0) if quick else (1, 2, 3, 0))]),
        ("verdict: penalty on negative reviews' passages (cosine units)",
         [{"negative_penalty": p, "dislike_weight": 0.0} for p in ((0.0, 0.05) if quick
                                                                  else (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0))]),
        ("verdict: negative reviews vote against (dislike weight)",
         [{"dislike_weight": w, "negative_penalty": 0.0} for w in ((0.0, 1.0) if quick else (0.0, 0.5, 1.0, 2.0))]),
        ("verdict: queries asking for what reviewers disliked match negative reviews",
         [{"verdict_intent": b} for b in (False, True)]),
    ]
    return [*plan, ("aggregation again, with the levers above", aggregation)]


def objective(means: dict, aggregation: str) -> float:
    return sum(means[part][aggregation][key] for part, key in OBJECTIVE) / len(OBJECTIVE)


def describe(changes: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in changes.items()) or "(start)"


def row(label: str, means: dict, aggregation: str, extra: str = "") -> str:
    cells = " | ".join(f"{means[p][aggregation][k]:.3f}" for p, k, _ in COLUMNS)
    return f"| {label} | {cells} | {objective(means, aggregation):.3f} |{extra}"


def header(first: str, extra: str = "") -> str:
    titles = " | ".join(t for _, _, t in COLUMNS)
    return f"| {first} | {titles} | objective |{extra}\n|" + "---|" * (len(COLUMNS) + 2 + (1 if extra else 0))


class DevScorer:
    """Scores settings on the dev split of one index, reusing the query embeddings."""

    def __init__(self, recommender: Recommender, max_queries: int | None, vectors: dict | None = None) -> None:
        self.base = recommender
        self.bench = dev_benchmark(recommender, max_queries=max_queries)
        self.vectors = vectors if vectors is not None else encode_sets(recommender, self.bench)
        self.texts = [t for name in ("labels", "long_tail", "genres") for t in self.bench.sets[name].texts]

    def values(self, settings: dict, aggregations: list[str] | None = None) -> tuple[dict, str]:
        rec = self.base.with_settings(**settings)
        names = aggregations or [rec.settings.aggregation]
        return measure_sets(rec, self.bench, names, vectors=self.vectors), rec.settings.aggregation

    def means(self, settings: dict, aggregations: list[str] | None = None) -> tuple[dict, str]:
        values, aggregation = self.values(settings, aggregations)
        return point_means(values, self.bench), aggregation

    def negative_share(self, settings: dict) -> float:
        return share(negative_evidence(self.base.with_settings(**settings), self.texts), resamples=100)["share"]


def tune(scorer: DevScorer, quick: bool) -> dict:
    """Coordinate ascent over :func:`sweeps`; prints one table per lever and returns the chosen changes."""
    chosen: dict = {}
    means, aggregation = scorer.means({}, ["count", scorer.base.settings.aggregation])
    bench = scorer.bench
    print(f"Dev split: {len(bench.sets['known_item'])} known-item queries, {len(bench.sets['labels'])} MAL-label,"
          f" {len(bench.sets['long_tail'])} long-tail, {len(bench.sets['genres'])} genre queries.")
    tuned = {key for _, variants in sweeps(quick) for changes in variants for key in changes}
    start = scorer.base.settings.to_dict()
    print("Start settings:", describe({key: start[key] for key in sorted(tuned | {"evidence_by_verdict"})}) + "\n")
    print(header("reference"))
    print(row("count (reference vote)", means, "count"))
    print(row(f"start: the index's settings ({aggregation})", means, aggregation))
    best = objective(means, aggregation)
    for title, variants in sweeps(quick):
        verdict = title.startswith("verdict")
        print(f"\n## {title}\n")
        print(header("setting", " negative evidence |" if verdict else ""))
        t0 = time.perf_counter()
        results = []
        for changes in variants:
            settings = {**chosen, **changes}
            found, agg = scorer.means(settings)
            score = objective(found, agg)
            extra = f" {scorer.negative_share(settings):.3f} |" if verdict else ""
            print(row(describe(changes), found, agg, extra), flush=True)
            results.append((score, changes))
        top_score, top = max(results, key=lambda item: item[0])
        if top_score >= best + MIN_GAIN:
            chosen, best = {**chosen, **top}, top_score
            print(f"\nChosen: {describe(top)} (objective {top_score:.3f}).", end="")
        else:
            print(f"\nKept: best new objective {top_score:.3f} < {best:.3f} + {MIN_GAIN}.", end="")
        print(f" ({time.perf_counter() - t0:.0f} s)")
    return chosen


def choose_evidence(scorer: DevScorer, chosen: dict) -> dict:
    """Evidence prefers agreeing verdicts when that lowers the dev negative-evidence share."""
    shares = {flag: scorer.negative_share({**chosen, "evidence_by_verdict": flag}) for flag in (False, True)}
    print("\n## evidence: prefer passages whose verdict agrees with the query\n")
    print("| evidence_by_verdict | negative-evidence share (dev label and hand-written queries) |\n|---|---|")
    for flag, value in shares.items():
        print(f"| {flag} | {value:.3f} |")
    prefer = shares[True] < shares[False]
    return chosen if prefer == scorer.base.settings.evidence_by_verdict else {**chosen, "evidence_by_verdict": prefer}


def dev_difference(scorer: DevScorer, chosen: dict) -> None:
    """The chosen settings against the start on dev: paired bootstrap of every objective term."""
    start, agg_start = scorer.values({})
    final, agg_final = scorer.values(chosen)
    paired = {part: {"start": start[part][agg_start], "chosen": final[part][agg_final]} for part in start}
    _, diffs = intervals(paired, scorer.bench, baseline="start", resamples=metrics.RESAMPLES)
    print("\nChosen minus start on dev (paired, 95 % interval):", ", ".join(
        f"{part} {key} {diffs[part]['chosen'][key]['mean']:+.3f}"
        f" [{diffs[part]['chosen'][key]['low']:+.3f}, {diffs[part]['chosen'][key]['high']:+.3f}]"
        for part, key in OBJECTIVE))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", required=True, help="index directory")
    parser.add_argument("--quick", action="store_true", help="two values per lever (a smoke run)")
    parser.add_argument("--max-queries", type=int, help="cap on dev known-item queries (default: all)")
    parser.add_argument("--compare-index", action="append", default=[],
                        help="another index of the same reviews and model: score the start and chosen settings there")
    parser.add_argument("--start", action="append", default=[], metavar="NAME=VALUE",
                        help="start from the index's settings with this one changed (VALUE in JSON: 0.25, false)")
    args = parser.parse_args(argv)
    base = Recommender.load(args.index)
    if args.start:
        base = base.with_settings(**SearchConfig.parse_changes(args.start))
    scorer = DevScorer(base, args.max_queries)
    chosen = choose_evidence(scorer, tune(scorer, args.quick))
    dev_difference(scorer, chosen)
    start = {k: v for k, v in base.settings.to_dict().items() if k != "doc_norm"}  # doc_norm is the index's own
    for other_dir in args.compare_index:
        other = DevScorer(Recommender.load(other_dir, encoder=base.encoder).with_settings(**start), args.max_queries)
        print(f"\n## {other_dir} ({other.base.manifest.get('chunking')})\n")
        print(header("settings"))
        for label, changes in (("start", {}), ("chosen", chosen)):
            found, agg = other.means(changes)
            print(row(label, found, agg))
    print(f"\nChosen changes to the start settings: {chosen or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
