"""The one scorer every evaluation shares: runs and qrels in, per-query values and bootstrap intervals out.

Shapes are those of BEIR and pyserini: a *run* maps a query id to ``{anime_id:
score}`` (higher is better), *qrels* map a query id to ``{anime_id: grade}``
(grade > 0 is relevant). A query of the qrels that the run lacks has an empty
ranking and scores 0. Pure numpy, no I/O.

Measures are named ``"<name>@<k>"``:

=============  ===========================================================================
``hit@k``      1 when a relevant anime is in the top ``k``
``mrr@k``      1 / rank of the first relevant anime in the top ``k``, else 0
``p@k``        relevant anime in the top ``k``, divided by ``k``
``ndcg@k``     DCG of the top ``k`` (gain ``2^grade - 1``, discount ``log2(rank + 1)``) over the ideal DCG
``recall@k``   relevant anime in the top ``k``, divided by ``min(k, relevant anime)``
=============  ===========================================================================

Intervals come from a (cluster) percentile bootstrap: queries that share a group
(the anime a known-item query comes from) are drawn together, and every system is
scored on the same draws, so a paired difference gets an interval of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Run = Mapping[str, Mapping[int, float]]
Qrels = Mapping[str, Mapping[int, int]]

#: Bootstrap defaults: resamples and the interval's level.
RESAMPLES = 10_000
LEVEL = 0.95
#: Resamples drawn at once (a resamples x groups index array would be large).
_BLOCK = 1000


def ranked(scores: Mapping[int, float]) -> list[int]:
    """Anime ids best first; ties go to the lower id, so a run has one ranking."""
    return [anime for anime, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def run_from_rankings(rankings: Mapping[str, Sequence[int]]) -> dict[str, dict[int, float]]:
    """A run whose scores reproduce the given orders (the first anime scores highest); a repeat keeps its first."""
    run = {}
    for query_id, order in rankings.items():
        scores: dict[int, float] = {}
        for position, anime in enumerate(order):
            scores.setdefault(int(anime), float(len(order) - position))
        run[query_id] = scores
    return run


def parse_measure(measure: str) -> tuple[str, int]:
    """``"ndcg@10"`` → ``("ndcg", 10)``.

    Raises:
        ValueError: an unknown name or a cut-off that is not a positive integer.
    """
    name, _, cutoff = measure.partition("@")
    if name not in _MEASURES or not cutoff.isdigit() or int(cutoff) < 1:
        raise ValueError(f"unknown measure {measure!r}; use one of {', '.join(sorted(_MEASURES))} followed by @k")
    return name, int(cutoff)


def _hit(order: list[int], grades: Mapping[int, int], k: int) -> float:
    return float(any(grades.get(a, 0) > 0 for a in order[:k]))


def _mrr(order: list[int], grades: Mapping[int, int], k: int) -> float:
    for position, anime in enumerate(order[:k], 1):
        if grades.get(anime, 0) > 0:
            return 1.0 / position
    return 0.0


def _precision(order: list[int], grades: Mapping[int, int], k: int) -> float:
    return sum(grades.get(a, 0) > 0 for a in order[:k]) / k


def _recall(order: list[int], grades: Mapping[int, int], k: int) -> float:
    relevant = sum(g > 0 for g in grades.values())
    if not relevant:
        return 0.0
    return sum(grades.get(a, 0) > 0 for a in order[:k]) / min(k, relevant)


def _ndcg(order: list[int], grades: Mapping[int, int], k: int) -> float:
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return 0.0
    dcg = sum((2.0 ** grades.get(a, 0) - 1) / math.log2(i + 2) for i, a in enumerate(order[:k]) if grades.get(a, 0) > 0)
    idcg = sum((2.0 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg


_MEASURES = {"hit": _hit, "mrr": _mrr, "p": _precision, "recall": _recall, "ndcg": _ndcg}


def per_query(run: Run, qrels: Qrels, measures: Sequence[str]) -> dict[str, dict[str, float]]:
    """``{measure: {query_id: value}}`` for every query of ``qrels`` (in their order)."""
    parsed = [(m, *parse_measure(m)) for m in measures]
    out: dict[str, dict[str, float]] = {m: {} for m, _, _ in parsed}
    for query_id, grades in qrels.items():
        order = ranked(run.get(query_id, {}))
        for measure, name, k in parsed:
            out[measure][query_id] = _MEASURES[name](order, grades, k)
    return out


def mean(values: Mapping[str, float] | Sequence[float]) -> float:
    """Mean over queries (0 for none)."""
    items = list(values.values()) if isinstance(values, Mapping) else list(values)
    return float(np.mean(items)) if items else 0.0


def macro_mean(values: Mapping[str, float], groups: Mapping[str, object]) -> float:
    """Mean over groups of each group's mean: every group (anime) weighs the same, however many queries it has."""
    per: dict[object, list[float]] = {}
    for query_id, value in values.items():
        per.setdefault(groups[query_id], []).append(value)
    return float(np.mean([np.mean(v) for v in per.values()])) if per else 0.0


@dataclass(frozen=True)
class Interval:
    """A statistic and its bootstrap percentile interval."""

    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high}


def bootstrap(scores: Mapping[str, Sequence[float]], groups: Sequence[object] | None = None, *,
              macro: bool = False, baseline: str | None = None, resamples: int = RESAMPLES, level: float = LEVEL,
              seed: int = 0) -> tuple[dict[str, Interval], dict[str, Interval]]:
    """Intervals of the mean of each system's per-query scores, and of each one's paired difference to ``baseline``.

    Every system must score the same queries in the same order. A resample draws
    groups with replacement (all queries of a drawn group come along; without
    ``groups`` every query is its own group), and every system and difference is
    computed on the same draws.

    Args:
        scores: ``{system: per-query values}``.
        groups: each query's group (e.g. the anime a known-item query comes from).
        macro: the statistic is the mean of group means (macro average) instead of the mean over queries.
        baseline: a system in ``scores``: differences ``system - baseline`` are returned for every other.
        resamples: bootstrap draws.
        level: interval coverage, e.g. 0.95.
        seed: the draws' seed (same seed, same draws).

    Returns:
        ``(intervals, differences)``: ``{system: Interval}`` and ``{system: Interval}`` (empty without baseline).

    Raises:
        ValueError: no queries, lists of different lengths, or an unknown baseline.
    """
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in scores.items()}
    lengths = {a.shape for a in arrays.values()}
    if len(lengths) != 1 or next(iter(lengths))[0] == 0:
        raise ValueError("bootstrap needs equally long, non-empty score lists")
    if baseline is not None and baseline not in arrays:
        raise ValueError(f"baseline {baseline!r} is not one of the systems")
    n = next(iter(arrays.values())).size
    group_keys = np.arange(n) if groups is None else np.asarray(list(groups))
    if len(group_keys) != n:
        raise ValueError("one group per query is needed")
    _, group_of = np.unique(group_keys, return_inverse=True)
    n_groups = int(group_of.max()) + 1
    counts = np.bincount(group_of, minlength=n_groups).astype(np.float64)
    sums = {name: np.bincount(group_of, a, n_groups) for name, a in arrays.items()}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {name: [] for name in arrays}
    for lo in range(0, resamples, _BLOCK):
        picks = rng.integers(0, n_groups, size=(min(_BLOCK, resamples - lo), n_groups))
        for name in arrays:
            if macro:
                draws[name].append((sums[name] / counts)[picks].mean(axis=1))
            else:
                draws[name].append(sums[name][picks].sum(axis=1) / counts[picks].sum(axis=1))
    samples = {name: np.concatenate(parts) for name, parts in draws.items()}
    point = {name: float((sums[name] / counts).mean()) if macro else float(a.mean()) for name, a in arrays.items()}
    tail = (1.0 - level) / 2 * 100

    def interval(value: float, sample: np.ndarray) -> Interval:
        return Interval(value, float(np.percentile(sample, tail)), float(np.percentile(sample, 100 - tail)))

    intervals = {name: interval(point[name], samples[name]) for name in arrays}
    differences = {}
    if baseline is not None:
        differences = {name: interval(point[name] - point[baseline], samples[name] - samples[baseline])
                       for name in arrays if name != baseline}
    return intervals, differences
