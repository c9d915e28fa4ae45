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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender import config
from recommender.errors import UnknownAggregationError


@dataclass(slots=True)
class Hit:
    """One retrieved passage: ``rank`` is 0-based among the query's hits, ``row`` its vector row in the index.

    Treated as read-only (functions make new hits instead of changing one); not frozen only
    because a frozen dataclass takes five times as long to create, and a query makes hundreds.

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
    hits: Sequence[Hit] = field(default_factory=list)

    @property
    def best_rank(self) -> int:
        return self.hits[0].rank if self.hits else 1 << 30


class RankedHits(Sequence):
    """A query's hits in rank order (ranks 0, 1, 2…), held as arrays; :class:`Hit` objects are made only
    for the hits someone reads.

    The retriever hands these to the aggregations, which rank anime from the arrays; only the
    hits of the anime on the page shown are ever made into objects (a few dozen of the ~500).
    Reads like a list of hits and compares equal to one.
    """

    def __init__(self, anime: np.ndarray, similarity: np.ndarray, review_ids: list[str], rows: np.ndarray,
                 cosine: np.ndarray, negative: np.ndarray | None = None) -> None:
        self.anime = np.asarray(anime, dtype=np.int64)
        self.similarity = np.asarray(similarity, dtype=np.float64)
        self._review_ids = review_ids
        self._rows = np.asarray(rows, dtype=np.int64)
        self._cosine = np.asarray(cosine, dtype=np.float64)
        self._negative = np.zeros(len(self.anime), dtype=bool) if negative is None else np.asarray(negative, bool)
        self._made: dict[int, Hit] = {}

    def __len__(self) -> int:
        return len(self.anime)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]
        hit = self._made.get(i)
        if hit is None:
            hit = self._made[i] = Hit(int(self.anime[i]), float(self.similarity[i]), i, self._review_ids[i],
                                      int(self._rows[i]), float(self._cosine[i]), bool(self._negative[i]))
        return hit

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None


class _GroupHits(Sequence):
    """The hits of one anime: a view into a :class:`RankedHits`, in rank order, made on first read."""

    def __init__(self, hits: RankedHits, member: np.ndarray, group: int) -> None:
        self._hits, self._member, self._group = hits, member, group
        self._positions: list[int] | None = None

    def _where(self) -> list[int]:
        if self._positions is None:
            self._positions = np.flatnonzero(self._member == self._group).tolist()
        return self._positions

    def __len__(self) -> int:
        return len(self._where())

    def __getitem__(self, index):
        where = self._where()
        if isinstance(index, slice):
            return [self._hits[i] for i in where[index]]
        return self._hits[where[index]]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None


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


class _Groups:
    """One query's hits grouped by anime, as arrays: what every aggregation scores (a few hundred hits per
    query, so the per-anime sums run in numpy rather than in Python loops).

    Groups are numbered in the order of each anime's best (first-ranked) hit; within a group,
    hits keep their rank order.
    """

    def __init__(self, hits: Sequence[Hit]) -> None:
        if isinstance(hits, RankedHits):
            ordered, anime, self.similarity = hits, hits.anime, hits.similarity
            self.rank = np.arange(len(hits), dtype=np.float64)
        else:
            ordered = sorted(hits, key=lambda h: h.rank)
            anime = np.fromiter((h.anime_id for h in ordered), dtype=np.int64, count=len(ordered))
            self.similarity = np.fromiter((h.similarity for h in ordered), dtype=np.float64, count=len(ordered))
            self.rank = np.fromiter((h.rank for h in ordered), dtype=np.float64, count=len(ordered))
        ids, first, inverse = np.unique(anime, return_index=True, return_inverse=True)
        by_first = np.argsort(first, kind="stable")
        position = np.empty(len(ids), dtype=np.int64)
        position[by_first] = np.arange(len(ids))
        self.anime = ids[by_first]
        self.first = first[by_first]  # index (in rank order) of each group's best hit
        self.member = position[inverse]  # group of every hit
        self.size = np.bincount(self.member, minlength=len(self.anime))
        self.hits = ordered

    def total(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.member, weights=values, minlength=len(self.anime))

    def nth(self) -> np.ndarray:
        """Each hit's place within its group (0 for the group's best)."""
        order = np.argsort(self.member, kind="stable")
        starts = np.repeat(np.cumsum(self.size) - self.size, self.size)
        nth = np.empty(len(self.member), dtype=np.int64)
        nth[order] = np.arange(len(self.member)) - starts
        return nth

    def reviews(self, review_counts: Mapping[int, int] | None) -> np.ndarray:
        """Each group's reviews in the index (at least 1; 1 when unknown)."""
        if not review_counts:
            return np.ones(len(self.anime))
        return np.array([max(1, int(review_counts.get(int(a), 1))) for a in self.anime], dtype=np.float64)

    def ranked(self, scores: np.ndarray) -> list[AnimeScore]:
        """AnimeScores best first; ties by the best hit's rank."""
        if isinstance(self.hits, RankedHits):  # hits are made when an anime's are read (the page shown)
            members = [_GroupHits(self.hits, self.member, g) for g in range(len(self.anime))]
        else:
            members = [[] for _ in range(len(self.anime))]
            for hit, group in zip(self.hits, self.member.tolist(), strict=True):
                members[group].append(hit)
        best_rank = self.rank[self.first]
        order = np.lexsort((best_rank, -scores))
        anime, size = self.anime.tolist(), self.size.tolist()
        return [AnimeScore(anime[g], float(scores[g]), size[g], members[g]) for g in order.tolist()]


def count_votes(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """The reference vote: anime ranked by how many of the top-N reviews are theirs.

    Rewards anime with many matching reviews, which favours popular anime; kept
    for comparison and for the reference ``/search`` route. Unlike the reference,
    ties keep the retrieval order instead of an arbitrary set order.
    """
    groups = _Groups(hits)
    return groups.ranked(groups.size.astype(np.float64))


def sum_similarity(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """Sum of the anime's hit similarities.

    Rewards many matching reviews like ``count`` does, but a close match weighs
    more than a marginal one; still favours anime with many reviews.
    """
    groups = _Groups(hits)
    return groups.ranked(groups.total(groups.similarity))


def max_similarity(hits: Sequence[Hit], **_: object) -> list[AnimeScore]:
    """The anime's single best hit.

    Rewards the one closest review and ignores how many others matched: blind to
    popularity, but a single lucky sentence decides, so agreement between
    reviews is wasted.
    """
    groups = _Groups(hits)
    return groups.ranked(groups.similarity[groups.first])


def reciprocal_rank_fusion(hits: Sequence[Hit], *, rrf_k: float = config.RRF_K, **_: object) -> list[AnimeScore]:
    """Reciprocal-rank fusion: each hit adds ``1 / (rrf_k + rank + 1)``.

    Rewards anime whose reviews rank near the top, by rank alone (similarity
    scales of different models do not matter); many reviews still add up, so
    popular anime keep part of their advantage.
    """
    groups = _Groups(hits)
    return groups.ranked(groups.total(1.0 / (rrf_k + groups.rank + 1)))


def normalized_sum(hits: Sequence[Hit], *, review_counts: Mapping[int, int] | None = None,
                   alpha: float = config.NORM_ALPHA, **_: object) -> list[AnimeScore]:
    """Sum of similarities divided by ``n ** alpha``, ``n`` = the anime's reviews in the index.

    Rewards the share of an anime's reviews that match rather than their number:
    ``alpha = 0`` is ``sum``, ``alpha = 1`` the mean over all its reviews (which
    punishes a famous anime for its many off-topic reviews).
    """
    groups = _Groups(hits)
    return groups.ranked(groups.total(groups.similarity) / groups.reviews(review_counts) ** alpha)


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
    groups = _Groups(hits)
    pad = float(groups.similarity.min()) if floor is None else floor
    kept = groups.nth() < top_k
    best = np.bincount(groups.member[kept], weights=groups.similarity[kept], minlength=len(groups.anime))
    missing = np.maximum(0, top_k - groups.size)
    return groups.ranked((best + pad * missing) / top_k)


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
    groups = _Groups(hits)
    top = groups.similarity[groups.first]
    spread = groups.total(np.exp((groups.similarity - top[groups.member]) / temperature))
    lse = top + temperature * np.log(spread)
    return groups.ranked(lse - alpha * temperature * np.log(groups.reviews(review_counts)))


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
