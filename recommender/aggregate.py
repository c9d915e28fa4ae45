"""Turn ranked review hits into ranked anime. Pure functions, no I/O.

Every aggregation takes the hits of one query, best first, at most one hit per
review (see :func:`best_hit_per_review`), and returns :class:`AnimeScore` rows
sorted best first. Ties are always broken by the anime's best (lowest) rank, so
the order is deterministic and follows the retrieval ranking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from recommender.errors import UnknownAggregationError


@dataclass(frozen=True)
class Hit:
    """One retrieved review chunk: ``rank`` is 0-based among the query's hits, ``row`` its vector row in the index."""

    anime_id: int
    similarity: float
    rank: int
    review_id: str
    row: int = -1


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


def best_hit_per_review(hits: Iterable[Hit]) -> list[Hit]:
    """Keep each review's best chunk and renumber ranks 0.. in order.

    A long review split into several chunks must count once, as one review did in
    the reference system's one-vector-per-review index.
    """
    seen: set[str] = set()
    kept: list[Hit] = []
    for hit in sorted(hits, key=lambda h: h.rank):
        if hit.review_id in seen:
            continue
        seen.add(hit.review_id)
        kept.append(Hit(hit.anime_id, hit.similarity, len(kept), hit.review_id, hit.row))
    return kept


def group_by_anime(hits: Sequence[Hit]) -> dict[int, list[Hit]]:
    """Hits of each anime, in rank order; dict order is the order of each anime's best hit."""
    groups: dict[int, list[Hit]] = {}
    for hit in sorted(hits, key=lambda h: h.rank):
        groups.setdefault(hit.anime_id, []).append(hit)
    return groups


def _rank(groups: dict[int, list[Hit]], score_of: Callable[[list[Hit]], float]) -> list[AnimeScore]:
    scored = [AnimeScore(anime_id, float(score_of(hits)), len(hits), hits) for anime_id, hits in groups.items()]
    scored.sort(key=lambda s: (-s.score, s.best_rank))
    return scored


def count_votes(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """The reference vote: anime ranked by how many of the top-N reviews are theirs.

    Rewards anime with many matching reviews, which favours popular anime; kept
    for comparison and for the reference ``/search`` route. Unlike the reference,
    ties keep the retrieval order instead of an arbitrary set order.
    """
    return _rank(group_by_anime(hits), len)


AGGREGATIONS: dict[str, Callable[..., list[AnimeScore]]] = {
    "count": count_votes,
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
