"""Result records returned by :class:`recommender.search.Recommender` and printed as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Evidence:
    """One matched review passage that explains why an anime was recommended, and its reviewer's verdict.

    ``review_score`` is the reviewer's score (1–10, None when unknown), ``verdict`` MAL's tag
    (Recommended, Mixed Feelings, Not Recommended; None when untagged), ``negative`` whether the
    review counts as negative (:func:`recommender.verdict.is_negative`).
    """

    review_id: str
    similarity: float
    snippet: str
    url: str | None = None
    review_score: int | None = None
    verdict: str | None = None
    negative: bool = False


@dataclass
class AnimeResult:
    """One recommended anime. ``score`` is the aggregation's score, ``count`` the matched reviews among the top N."""

    anime_id: int
    title: str
    url: str
    image_url: str | None
    score: float
    count: int
    evidence: list[Evidence] = field(default_factory=list)
    mal_score: float | None = None
    type: str | None = None
    year: int | None = None
    genres: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResponse:
    """The answer to one query: ranked anime plus per-stage timings in milliseconds."""

    query: str
    results: list[AnimeResult]
    timing_ms: dict[str, float] = field(default_factory=dict)
    total: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "results": [r.to_dict() for r in self.results],
            "timing_ms": {k: round(v, 3) for k, v in self.timing_ms.items()},
        }
