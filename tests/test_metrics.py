"""The shared scorer on runs and qrels computed by hand, and the bootstrap against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender import metrics

# Three queries. q1: relevant 10 (grade 2) and 30 (grade 1); q2: relevant 7; q3: relevant 5, not retrieved.
RUN = {
    "q1": {20: 0.9, 10: 0.8, 40: 0.7, 30: 0.6},       # ranking 20, 10, 40, 30
    "q2": {7: 0.5, 8: 0.5, 9: 0.1},                   # tie 7/8 -> lower id first: 7, 8, 9
    "q3": {1: 1.0, 2: 0.5},
}
QRELS = {"q1": {10: 2, 30: 1, 99: 0}, "q2": {7: 1}, "q3": {5: 1}, "q4": {3: 1}}  # q4 is missing from the run


def test_measures_by_hand():
    got = metrics.per_query(RUN, QRELS, ["hit@1", "hit@2", "mrr@10", "mrr@1", "p@2", "p@10", "recall@2",
                                         "recall@10", "ndcg@10", "ndcg@1"])
    assert got["hit@1"] == {"q1": 0.0, "q2": 1.0, "q3": 0.0, "q4": 0.0}
    assert got["hit@2"]["q1"] == 1.0
    assert got["mrr@10"] == {"q1": 0.5, "q2": 1.0, "q3": 0.0, "q4": 0.0}
    assert got["mrr@1"]["q1"] == 0.0
    assert got["p@2"]["q1"] == pytest.approx(1 / 2) and got["p@10"]["q1"] == pytest.approx(2 / 10)
    assert got["p@2"]["q2"] == pytest.approx(1 / 2)
    assert got["recall@2"]["q1"] == pytest.approx(1 / 2)     # 10 of {10, 30}; the grade-0 anime does not count
    assert got["recall@10"]["q1"] == pytest.approx(1.0) and got["recall@10"]["q3"] == 0.0
    # DCG: 10 at rank 2 (gain 3), 30 at rank 4 (gain 1); ideal: gain 3 at rank 1, gain 1 at rank 2.
    dcg = 3 / math.log2(3) + 1 / math.log2(5)
    idcg = 3 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@10"]["q1"] == pytest.approx(dcg / idcg)
    assert got["ndcg@10"]["q2"] == pytest.approx(1.0)
    assert got["ndcg@1"]["q1"] == 0.0
    assert metrics.mean(got["mrr@10"]) == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert metrics.macro_mean(got["mrr@10"], {"q1": "a", "q2": "a", "q3": "b", "q4": "c"}) == pytest.approx(
        (0.75 + 0 + 0) / 3)


def test_runs_from_rankings_and_bad_measures():
    run = metrics.run_from_rankings({"q": [5, 3, 5, 9]})
    assert metrics.ranked(run["q"]) == [5, 3, 9]
    assert metrics.per_query(run, {"q": {9: 1}}, ["mrr@10"])["mrr@10"]["q"] == pytest.approx(1 / 3)
    for bad in ("map@10", "ndcg", "p@0", "p@x"):
        with pytest.raises(ValueError):
            metrics.parse_measure(bad)


def test_bootstrap_against_brute_force():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(12), [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4])
    a, b = rng.random(len(groups)), rng.random(len(groups))
    draw = np.random.default_rng(11).integers(0, 12, size=(1, 12))[0]  # the first (only) resample of seed 11
    picked = np.concatenate([np.flatnonzero(groups == g) for g in draw])
    found, diff = metrics.bootstrap({"a": a, "b": b}, groups, baseline="a", resamples=1, seed=11)
    assert found["b"].low == pytest.approx(b[picked].mean()) and found["b"].mean == pytest.approx(b.mean())
    assert diff["b"].low == pytest.approx(b[picked].mean() - a[picked].mean())
    macro, _ = metrics.bootstrap({"a": a}, groups, macro=True, resamples=1, seed=11)
    group_means = np.array([a[groups == g].mean() for g in range(12)])
    assert macro["a"].low == pytest.approx(group_means[draw].mean())
    assert macro["a"].mean == pytest.approx(group_means.mean())


def test_bootstrap_intervals_cover_and_pair():
    rng = np.random.default_rng(0)
    values = rng.random(300)
    found, diff = metrics.bootstrap({"x": values, "same": values, "up": values + 0.1}, baseline="x", resamples=2000)
    assert found["x"].low < values.mean() < found["x"].high and found["x"].high - found["x"].low < 0.1
    assert diff["same"].to_dict() == {"mean": 0.0, "low": 0.0, "high": 0.0} and not diff["same"].excludes_zero()
    assert diff["up"].low == pytest.approx(0.1) and diff["up"].excludes_zero()
    assert metrics.bootstrap({"x": values}, seed=5)[0] == metrics.bootstrap({"x": values}, seed=5)[0]
    with pytest.raises(ValueError):
        metrics.bootstrap({"x": [1.0], "y": [1.0, 2.0]})
    with pytest.raises(ValueError):
        metrics.bootstrap({"x": [1.0]}, baseline="z")
