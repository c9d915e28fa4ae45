"""Known-item evaluation during training, the step → MRR table and its plot.

The evaluator wraps the model being trained in a :class:`recommender.encoder.Encoder` and
calls ``recommender.evaluate.known_item`` on the evaluation reviews the corpus stage kept
out of training, so the number is the same one ``python -m recommender evaluate`` reports
for an index built with that model (on a smaller sample).
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Sequence
from pathlib import Path

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from recommender.encoder import Encoder

#: The metric that picks the best checkpoint.
PRIMARY = "mrr@10"
CURVE_COLUMNS = ("step", "queries", "hit@1", "hit@10", "mrr@10", "macro_mrr@10", "seconds")


def evaluate_model(model, reviews: Sequence, *, max_queries: int, seed: int, name: str = "model",
                   autocast_dtype=None) -> dict:
    """Known-item metrics of a SentenceTransformer (in eval mode for the call, then put back as it was)."""
    import torch

    from recommender.evaluate import known_item

    was_training = model.training
    model.eval()
    encoder = Encoder(model, name=name, path=name)
    use_autocast = autocast_dtype is not None and model.device.type == "cuda"
    context = torch.autocast("cuda", dtype=autocast_dtype) if use_autocast else contextlib.nullcontext()
    try:
        with torch.inference_mode(), context:
            return known_item(encoder, list(reviews), max_queries=max_queries, seed=seed)
    finally:
        model.train(was_training)


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


def plot_curve(rows: Sequence[dict], path: Path, title: str) -> Path:
    """PNG of MRR@10 and hit@10 against training step, with the base model's level and the best checkpoint."""
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
    """Trainer evaluator: known-item metrics on the evaluation reviews, appended to the curve CSV.

    The trainer prefixes the keys with ``eval_``, so the best checkpoint is chosen by
    ``eval_known_item_mrr@10``.
    """

    name = "known_item"

    def __init__(self, reviews: Sequence, curve_path: Path, *, max_queries: int, seed: int,
                 autocast_dtype=None) -> None:
        super().__init__()
        self.reviews = list(reviews)
        self.curve_path = Path(curve_path)
        self.max_queries = max_queries
        self.seed = seed
        self.autocast_dtype = autocast_dtype
        self.primary_metric = PRIMARY

    def __call__(self, model, output_path: str | None = None, epoch: float = -1, steps: int = -1) -> dict[str, float]:
        step = max(int(steps), 0)
        t0 = time.perf_counter()
        metrics = evaluate_model(model, self.reviews, max_queries=self.max_queries, seed=self.seed,
                                 name=f"step-{step}", autocast_dtype=self.autocast_dtype)
        row = {"step": step, **{k: metrics[k] for k in CURVE_COLUMNS[1:-1]},
               "seconds": round(time.perf_counter() - t0, 2)}
        write_curve(self.curve_path, [*read_curve(self.curve_path), row])
        metrics = {k: float(v) for k, v in metrics.items() if k != "queries"}
        return self.prefix_name_to_metrics(metrics, self.name)

    @property
    def metric_for_best_model(self) -> str:
        return f"eval_{self.name}_{PRIMARY}"
