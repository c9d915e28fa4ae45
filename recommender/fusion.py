"""Fuse one query's candidate passages (dense hits, BM25 hits, synopses) into one ranked list. Pure numpy.

Every candidate gets ``weight · similarity / unit + lexical_weight · BM25 / best BM25``
(less ``negative_penalty`` for a passage of a negative review):
``similarity / unit`` is the model's similarity in cosine units (see
:class:`recommender.search_config.SearchConfig`), ``weight`` is 1 for a review
passage and ``synopsis_weight`` for a synopsis, and the BM25 term rewards the
query's rare words and names. Review passages found only by BM25 join as they
are (that is what lexical retrieval is for); a synopsis joins only when it beats
the weakest dense passage of a full top N, so ``top_n`` keeps its meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Candidates:
    """One query's candidate passages, as aligned arrays.

    Attributes:
        rows: index row of a review passage, -1 for a synopsis.
        anime: the anime each passage belongs to.
        similarity: the model's similarity to the query (its own units).
        lexical: BM25 score (0 when the query shares no word).
        dense: True for the passages of the dense top N.
        negative: True for the passages of negative reviews (None: none is).
    """

    rows: np.ndarray
    anime: np.ndarray
    similarity: np.ndarray
    lexical: np.ndarray
    dense: np.ndarray
    negative: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)


def fuse(candidates: Candidates, *, unit: float, synopsis_weight: float, lexical_weight: float,
         top_n: int, negative_penalty: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Order the candidates by fused score.

    Args:
        candidates: the passages to rank.
        unit: one cosine unit of the model's similarity for this query (1 for a cosine model).
        synopsis_weight: weight of a synopsis's similarity (review passages weigh 1).
        lexical_weight: weight of the BM25 score relative to the best BM25 among the candidates.
        top_n: the dense depth; decides whether the dense list is full (see the module notes).
        negative_penalty: subtracted (in cosine units) from the passages of negative reviews.

    Returns:
        ``(order, fused)``: positions into ``candidates`` best first (candidates that do not
        join are left out), and every candidate's fused score.
    """
    if not len(candidates):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    is_synopsis = candidates.rows < 0
    weight = np.where(is_synopsis, synopsis_weight, 1.0)
    fused = weight * candidates.similarity.astype(np.float64) / unit
    if lexical_weight > 0:
        best = float(candidates.lexical.max())
        if best > 0:
            fused = fused + lexical_weight * candidates.lexical.astype(np.float64) / best
    keep = np.ones(len(candidates), dtype=bool)
    dense = candidates.dense & ~is_synopsis
    if int(dense.sum()) >= top_n and dense.any():
        keep[is_synopsis] = fused[is_synopsis] >= fused[dense].min()
    if negative_penalty and candidates.negative is not None:  # after the synopsis bar: the penalty moves no bar
        fused = fused - negative_penalty * candidates.negative
    positions = np.flatnonzero(keep)
    order = positions[np.argsort(-fused[positions], kind="stable")]
    return order, fused
