"""Known-item evaluation during and after training: the step → MRR curve, and the before/after report.

The corpus stage holds whole anime out of training and splits their reviews into known-item
*queries* and the *documents* those queries search, with the anime divided between a
*selection* set and a *report* set (:func:`training.corpus.choose_eval_reviews`). During
training the selection queries pick the best checkpoint (the curve); afterwards the base
model and the chosen checkpoint answer the report queries, which nothing was tuned on, at
the same max_seq_length, and a paired bootstrap gives the before/after difference a 95 %
interval (:func:`before_after`). Ranking goes through ``recommender.evaluate`` with an index
built in memory, so the numbers are those ``python -m recommender evaluate`` computes.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from recommender import config as rconfig
from recommender.encoder import Encoder
from training.corpus import reviews_from_frame

#: The metric that picks the best checkpoint and that the before/after report tests.
PRIMARY = "mrr@10"
CUTOFF = 10
CURVE_COLUMNS = ("step", "queries", "hit@1", "hit@10", "mrr@10", "macro_mrr@10", "seconds")
#: Words per known-item query (a window of the held-out review), as ``python -m recommender evaluate``.
WINDOW_WORDS = 30
#: Bootstrap resamples and interval level of the before/after report.
RESAMPLES = 10_000
LEVEL = 0.95


@dataclass(frozen=True)
class EvalSet:
    """The documents every query searches, and the queries of each split."""

    documents: list
    selection: list        # recommender.evaluate.KnownItemQuery
    report: list

    @property
    def anime(self) -> int:
        return len({r.anime_id for r in self.documents})


def eval_set_from_frame(frame: pd.DataFrame, seed: int, selection_cap: int = 0) -> EvalSet | None:
    """The evaluation set the corpus stage wrote (``eval_reviews.parquet``), or None when it holds none.

    Args:
        frame: ``training.corpus.EVAL_COLUMNS``.
        seed: fixes each query's window.
        selection_cap: at most this many selection queries, taken round-robin over anime (0: all).
    """
    from recommender.evaluate import known_item_queries

    if frame.empty or "role" not in frame.columns:
        return None
    reviews = reviews_from_frame(frame)
    triples = [(r.review_id, r.anime_id, r.text) for r in reviews]
    is_query = frame["role"].to_numpy() == "query"

    def queries(split: str, cap: int | None) -> list:
        ids = set(frame["review_id"][is_query & (frame["split"].to_numpy() == split)])
        return known_item_queries(triples, ids, max_queries=cap, window_words=WINDOW_WORDS, seed=seed)

    documents = [r for r, query in zip(reviews, is_query, strict=True) if not query]
    found = EvalSet(documents, queries("selection", selection_cap or None), queries("report", None))
    return found if documents and (found.selection or found.report) else None


@contextlib.contextmanager
def _inference(model, autocast_dtype=None):
    """The model in eval mode without gradients (autocast on a GPU when asked), put back as it was after."""
    import torch

    was_training = model.training
    model.eval()
    use_autocast = autocast_dtype is not None and model.device.type == "cuda"
    context = torch.autocast("cuda", dtype=autocast_dtype) if use_autocast else contextlib.nullcontext()
    try:
        with torch.inference_mode(), context:
            yield
    finally:
        model.train(was_training)


def query_ranks(model, documents: Sequence, queries: Sequence, *, name: str = "model",
                autocast_dtype=None) -> list[int | None]:
    """1-based rank of each query's anime (None: not ranked) when ``model`` indexes ``documents`` in memory."""
    from recommender.evaluate import in_memory_recommender, rank_of, rank_queries

    if not queries:
        return []
    aggregation = rconfig.DEFAULT_AGGREGATION
    with _inference(model, autocast_dtype):
        recommender = in_memory_recommender(Encoder(model, name=name, path=name), list(documents))
        ranked = rank_queries(recommender, [q.text for q in queries], [aggregation])[aggregation]
    return [rank_of(ids, [q.anime_id]) for ids, q in zip(ranked, queries, strict=True)]


def ranks_to_metrics(ranks: Sequence[int | None], queries: Sequence) -> dict:
    """``queries, hit@1, hit@10, mrr@10, macro_mrr@10`` of ranks (``recommender.evaluate.ranking_metrics``)."""
    from recommender.evaluate import ranking_metrics

    return ranking_metrics(list(ranks), [q.anime_id for q in queries], k=CUTOFF)


def reciprocal_ranks(ranks: Sequence[int | None], k: int = CUTOFF) -> np.ndarray:
    """Per query: 1/rank when the answer is in the top ``k``, else 0 (the terms of MRR@k)."""
    return np.array([1.0 / r if r is not None and r <= k else 0.0 for r in ranks], dtype=np.float64)


def paired_bootstrap(before: Sequence[float], after: Sequence[float], groups: Sequence[int], *,
                     resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> dict[str, dict]:
    """Means and percentile intervals of ``before``, ``after`` and ``after - before``, resampling whole groups.

    The queries of one anime share its difficulty, so a resample draws anime with
    replacement and keeps all their queries; each query's two scores stay together (paired),
    which is what makes a small but consistent difference detectable. Computed by
    :func:`recommender.metrics.bootstrap`, the scorer every evaluation shares.

    Returns:
        ``{"before"|"after"|"difference": {"mean": m, "low": lo, "high": hi}}``.

    Raises:
        ValueError: the two lists differ in length or are empty.
    """
    from recommender.metrics import bootstrap

    found, differences = bootstrap({"before": before, "after": after}, groups, baseline="before",
                                   resamples=resamples, level=level, seed=seed)
    return {"before": found["before"].to_dict(), "after": found["after"].to_dict(),
            "difference": differences["after"].to_dict()}


def before_after(before_ranks: Sequence[int | None], after_ranks: Sequence[int | None], queries: Sequence, *,
                 seed: int, max_seq_length: int) -> dict:
    """The before/after report on the report queries: metrics of both models and the bootstrap of MRR@10.

    ``beats_base`` is true when the whole 95 % interval of the MRR@10 difference is above 0:
    the adapted model is better by more than the noise of these queries.
    """
    boot = paired_bootstrap(reciprocal_ranks(before_ranks), reciprocal_ranks(after_ranks),
                            [q.anime_id for q in queries], seed=seed)
    return {
        "metric": PRIMARY, "queries": len(queries), "anime": len({q.anime_id for q in queries}),
        "max_seq_length": max_seq_length, "level": LEVEL, "resamples": RESAMPLES,
        "before": {**ranks_to_metrics(before_ranks, queries), "interval": [boot["before"]["low"],
                                                                           boot["before"]["high"]]},
        "after": {**ranks_to_metrics(after_ranks, queries), "interval": [boot["after"]["low"],
                                                                         boot["after"]["high"]]},
        "difference": boot["difference"],
        "beats_base": boot["difference"]["low"] > 0,
    }


def describe_report(report: dict) -> str:
    """One line: report-set MRR@10 before and after with their intervals, the difference and the verdict."""
    b, a, d = report["before"], report["after"], report["difference"]
    verdict = ("better than the base beyond noise" if report["beats_base"]
               else "not better than the base beyond noise")
    return (f"report set ({report['queries']} queries, {report['anime']} anime, {report['max_seq_length']} tokens): "
            f"MRR@10 {b['mrr@10']:.3f} [{b['interval'][0]:.3f}, {b['interval'][1]:.3f}] (base) -> "
            f"{a['mrr@10']:.3f} [{a['interval'][0]:.3f}, {a['interval'][1]:.3f}] (adapted), difference "
            f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] (95 %): {verdict}")


def evaluate_model(model, reviews: Sequence, *, max_queries: int, seed: int, name: str = "model",
                   autocast_dtype=None) -> dict:
    """Known-item metrics of a SentenceTransformer on a review sample (``recommender.evaluate.known_item``)."""
    from recommender.evaluate import known_item

    with _inference(model, autocast_dtype):
        return known_item(Encoder(model, name=name, path=name), list(reviews), max_queries=max_queries, seed=seed)


def read_curve(path: Path) -> list[dict]:
    """Rows of an evaluation curve CSV (empty when the file does not exist), sorted by step."""
    if not Path(path).exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [{key: (int(value) if key in ("step", "queries") else float(value)) for key, value in row.items()}
                for row in csv.DictReader(handle)]
    return sorted(rows, key=lambda row: row["step"])


def write_curve(path: Path, rows: Sequence[dict]) -> None:
    """Write the curve atomically, one row per step (a later row for the same step wins)."""
    by_step = {row["step"]: row for row in rows}
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for step in sorted(by_step):
            writer.writerow(by_step[step])
    tmp.replace(path)


def best_row(rows: Sequence[dict]) -> dict | None:
    """The row with the highest MRR@10 (the earliest one on a tie: fewer steps, same quality)."""
    return max(rows, key=lambda row: (row[PRIMARY], -row["step"]), default=None)


def plot_curve(rows: Sequence[dict], path: Path, title: str, report: dict | None = None) -> Path:
    """PNG of selection-set MRR@10 and hit@10 by training step, the base model's level and the best checkpoint.

    With ``report``, the report set's before (at step 0) and after (at the best step) MRR@10 are
    drawn with their 95 % intervals.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [row["step"] for row in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, [row["mrr@10"] for row in rows], marker="o", label="MRR@10")
    ax.plot(steps, [row["hit@10"] for row in rows], marker=".", linestyle="--", label="hit@10")
    base = next((row for row in rows if row["step"] == 0), None)
    if base is not None:
        ax.axhline(base["mrr@10"], color="tab:blue", alpha=0.4, linestyle="-.", label="base model MRR@10")
    best = best_row([row for row in rows if row["step"] > 0])
    if best is not None:
        ax.axvline(best["step"], color="grey", linestyle=":", label=f"best checkpoint: step {best['step']}")
    if report is not None:
        xs = [0, best["step"] if best is not None else 0]
        ys = [report["before"]["mrr@10"], report["after"]["mrr@10"]]
        errors = [[y - part["interval"][0] for y, part in zip(ys, (report["before"], report["after"]), strict=True)],
                  [part["interval"][1] - y for y, part in zip(ys, (report["before"], report["after"]), strict=True)]]
        ax.errorbar(xs, ys, yerr=errors, fmt="s", color="tab:red", capsize=4,
                    label=f"report set MRR@10, 95 % interval ({report['queries']} queries)")
    ax.set_xlabel("training step")
    ax.set_ylabel("known-item score")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def curve_table(rows: Sequence[dict]) -> str:
    """The curve as a Markdown table (model card, CLI output)."""
    lines = ["| step | queries | hit@1 | hit@10 | MRR@10 |", "|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(f"| {row['step']} | {row['queries']} | {row['hit@1']:.3f} | {row['hit@10']:.3f} "
                     f"| {row['mrr@10']:.3f} |")
    return "\n".join(lines)


class KnownItemEvaluator(BaseEvaluator):
    """Trainer evaluator: known-item metrics of the selection queries, appended to the curve CSV.

    The trainer prefixes the keys with ``eval_``, so the best checkpoint is chosen by
    ``eval_known_item_mrr@10``. Under torchrun the trainer calls it on rank 0 only (the other
    ranks help encode), so one process writes the curve.
    """

    name = "known_item"

    def __init__(self, eval_set: EvalSet, curve_path: Path, *, autocast_dtype=None) -> None:
        super().__init__()
        self.documents = eval_set.documents
        self.queries = eval_set.selection
        self.curve_path = Path(curve_path)
        self.autocast_dtype = autocast_dtype
        self.primary_metric = PRIMARY

    def __call__(self, model, output_path: str | None = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        step = max(int(steps), 0)
        t0 = time.perf_counter()
        ranks = query_ranks(model, self.documents, self.queries, name=f"step-{step}",
                            autocast_dtype=self.autocast_dtype)
        metrics = ranks_to_metrics(ranks, self.queries)
        row = {"step": step, **{k: metrics[k] for k in CURVE_COLUMNS[1:-1]},
               "seconds": round(time.perf_counter() - t0, 2)}
        write_curve(self.curve_path, [*read_curve(self.curve_path), row])
        metrics = {k: float(v) for k, v in metrics.items() if k != "queries"}
        return self.prefix_name_to_metrics(metrics, self.name)

    @property
    def metric_for_best_model(self) -> str:
        return f"eval_{self.name}_{PRIMARY}"
