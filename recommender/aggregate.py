"""Turn ranked review hits into ranked anime. Pure functions, no I/O.

Every aggregation takes the hits of one query, best first, at most one hit per
review (see :func:`best_hit_per_review`), and returns :class:`AnimeScore` rows
sorted best first. Ties are always broken by the anime's best (lowest) rank, so
the order is deterministic and follows the retrieval ranking.

Aggregations accept keyword parameters; unknown ones are ignored, so a caller can
pass the same context (``review_counts``, ``depth``…) to every aggregation.
``review_counts`` maps an anime to the number of its reviews in the index (what
the popularity corrections divide by); an anime missing from it counts as 1.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from recommender import config
from recommender.errors import UnknownAggregationError


@dataclass(frozen=True)
class Hit:
    """One retrieved passage: ``rank`` is 0-based among the query's hits, ``row`` its vector row in the index.

    ``similarity`` is what the aggregations rank by; ``cosine`` keeps the plain
    embedding similarity when ``similarity`` also mixes in other signals (None:
    they are the same). A hit with ``row < 0`` is not a review chunk (an anime's
    synopsis, say) and never serves as evidence. ``negative`` marks a passage of a
    negative review (see :mod:`recommender.verdict`).
    """

    anime_id: int
    similarity: float
    rank: int
    review_id: str
    row: int = -1
    cosine: float | None = None
    negative: bool = False

    @property
    def is_review(self) -> bool:
        return self.row >= 0


@dataclass
class AnimeScore:
    """An anime's aggregated score, how many of its reviews matched, and those hits best first."""

    anime_id: int
    score: float
    count: int
    hits: list[Hit] = field(default_factory=list)

    @property
    def best_rank(self) -> int:
        return self.hits[0].rank if self.hits else 1 << 30


def best_hit_per_review(hits: Iterable[Hit], per_review: int = 1) -> list[Hit]:
    """Keep each review's best ``per_review`` chunks (0: all of them) and renumber ranks 0.. in order.

    With the default, a long review split into several chunks counts once, as one
    review did in the reference system's one-vector-per-review index (review-level
    voting); 0 lets every matching passage vote (passage-level voting).
    """
    seen: dict[str, int] = {}
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: h.rank):
        if per_review and seen.get(hit.review_id, 0) >= per_review:
            continue
        seen[hit.review_id] = seen.get(hit.review_id, 0) + 1
        kept.append(dataclasses.replace(hit, rank=len(kept)))
    return kept


def group_by_anime(hits: Sequence[Hit]) -> dict[int, list[Hit]]:
    """Hits of each anime, in rank order; dict order is the order of each anime's best hit."""
    groups: dict[int, list[Hit]] = {}
    for hit in sorted(hits, key=lambda h: h.rank):
        groups.setdefault(hit.anime_id, []).append(hit)
    return groups


def _rank(groups: dict[int, list[Hit]], score_of: Callable[[int, list[Hit]], float]) -> list[AnimeScore]:
    scored = [AnimeScore(anime_id, float(score_of(anime_id, hits)), len(hits), hits)
              for anime_id, hits in groups.items()]
    scored.sort(key=lambda s: (-s.score, s.best_rank))
    return scored


def _reviews_of(review_counts: Mapping[int, int] | None, anime_id: int) -> int:
    return max(1, int(review_counts.get(anime_id, 1))) if review_counts else 1


def count_votes(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """The reference vote: anime ranked by how many of the top-N reviews are theirs.

    Rewards anime with many matching reviews, which favours popular anime; kept
    for comparison and for the reference ``/search`` route. Unlike the reference,
    ties keep the retrieval order instead of an arbitrary set order.
    """
    return _rank(group_by_anime(hits), lambda _, group: len(group))


def sum_similarity(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """Sum of the anime's hit similarities.

    Rewards many matching reviews like ``count`` does, but a close match weighs
    more than a marginal one; still favours anime with many reviews.
    """
    return _rank(group_by_anime(hits), lambda _, group: sum(h.similarity for h in group))


def max_similarity(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """The anime's single best hit.

    Rewards the one closest review and ignores how many others matched: blind to
    popularity, but a single lucky sentence decides, so agreement between
    reviews is wasted.
    """
    return _rank(group_by_anime(hits), lambda _, group: group[0].similarity)


def reciprocal_rank_fusion(hits: Sequence[Hit], *, rrf_k: float = config.RRF_K, **_: object) -> list[AnimeScore]:
    """Reciprocal-rank fusion: each hit adds ``1 / (rrf_k + rank + 1)``.

    Rewards anime whose reviews rank near the top, by rank alone (similarity
    scales of different models do not matter); many reviews still add up, so
    popular anime keep part of their advantage.
    """
    return _rank(group_by_anime(hits), lambda _, group: sum(1.0 / (rrf_k + h.rank + 1) for h in group))


def normalized_sum(hits: Sequence[Hit], *, review_counts: Mapping[int, int] | None = None,
                   alpha: float = config.NORM_ALPHA, **_: object) -> list[AnimeScore]:
    """Sum of similarities divided by ``n ** alpha``, ``n`` = the anime's reviews in the index.

    Rewards the share of an anime's reviews that match rather than their number:
    ``alpha = 0`` is ``sum``, ``alpha = 1`` the mean over all its reviews (which
    punishes a famous anime for its many off-topic reviews).
    """
    def score(anime_id: int, group: list[Hit]) -> float:
        return sum(h.similarity for h in group) / _reviews_of(review_counts, anime_id) ** alpha

    return _rank(group_by_anime(hits), score)


def top_k_mean(hits: Sequence[Hit], *, top_k: int = config.TOP_K, floor: float | None = None,
               **_: object) -> list[AnimeScore]:
    """Mean similarity of the anime's ``top_k`` best reviews.

    An anime with fewer than ``top_k`` hits is padded with ``floor``: by default
    the lowest similarity retrieved, since any review outside the top N is at
    most that close. Rewards a few strongly matching reviews: a one-review anime
    can win with one excellent match, and a popular one gains nothing from a long
    tail of weak matches.
    """
    if not hits:
        return []
    pad = min(h.similarity for h in hits) if floor is None else floor

    def score(_: int, group: list[Hit]) -> float:
        best = [h.similarity for h in group[:top_k]]
        return (sum(best) + pad * (top_k - len(best))) / top_k

    return _rank(group_by_anime(hits), score)


def soft_vote(hits: Sequence[Hit], *, review_counts: Mapping[int, int] | None = None,
              temperature: float = config.SOFT_TEMPERATURE, alpha: float = config.SOFT_ALPHA,
              **_: object) -> list[AnimeScore]:
    """Log-sum-exp of the anime's similarities, less ``alpha · T · log n`` (``n`` = its reviews in the index).

    ``T · log Σ exp(s / T)`` is a smooth maximum: close to the best hit for a
    small temperature ``T``, and each further match adds a little; ``alpha``
    removes the advantage an anime gets only from having many reviews (a random
    review of a large anime is more likely to be among the hits). Rewards the
    best-matching reviews first, agreement between them second, popularity not
    at all when ``alpha = 1``.
    """
    def score(anime_id: int, group: list[Hit]) -> float:
        top = group[0].similarity
        lse = top + temperature * math.log(sum(math.exp((h.similarity - top) / temperature) for h in group))
        return lse - alpha * temperature * math.log(_reviews_of(review_counts, anime_id))

    return _rank(group_by_anime(hits), score)


AGGREGATIONS: dict[str, Callable[..., list[AnimeScore]]] = {
    "count": count_votes,
    "sum": sum_similarity,
    "max": max_similarity,
    "rrf": reciprocal_rank_fusion,
    "norm": normalized_sum,
    "topk": top_k_mean,
    "soft": soft_vote,
}


def aggregate(hits: Sequence[Hit], name: str, **params: object) -> list[AnimeScore]:
    """Run the aggregation called ``name`` over one query's hits.

    Raises:
        UnknownAggregationError: no aggregation of that name.
    """
    try:
        function = AGGREGATIONS[name]
    except KeyError:
        raise UnknownAggregationError(
            f"unknown aggregation {name!r}; choose from {', '.join(sorted(AGGREGATIONS))}"
        ) from None
    return function(hits, **params)


def aggregate_with_dislikes(hits: Sequence[Hit], name: str, weight: float, **params: object) -> list[AnimeScore]:
    """What reviewers disliked as a signal of its own: negative reviews vote against an anime, not for it.

    The anime's non-negative hits are aggregated with ``name``; when one of its
    negative hits matches the query better than all of those, the score drops by
    ``weight × (best negative similarity − best other similarity)``. An anime
    matched only by negative reviews is scored on them, less ``weight ×`` their
    best similarity's distance above the weakest hit retrieved. Every hit stays in
    :attr:`AnimeScore.hits` (the evidence may quote it; ``count`` counts it).
    """
    if not hits:
        return []
    floor = min(h.similarity for h in hits)
    groups = group_by_anime(hits)
    liked = {s.anime_id: s for s in aggregate([h for h in hits if not h.negative], name, **params)}
    disliked_only = [h for h in hits if h.negative and h.anime_id not in liked]
    scored: list[AnimeScore] = []
    for entry in [*liked.values(), *aggregate(disliked_only, name, **params)]:
        group = groups[entry.anime_id]
        worst = max((h.similarity for h in group if h.negative), default=None)
        score = entry.score
        if worst is not None:
            best_liked = max((h.similarity for h in group if not h.negative), default=floor)
            score -= weight * max(0.0, worst - best_liked)
        scored.append(AnimeScore(entry.anime_id, score, len(group), group))
    scored.sort(key=lambda s: (-s.score, s.best_rank))
    return scored
