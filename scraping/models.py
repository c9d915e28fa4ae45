"""Plain records that flow between the parser, the importers and the store."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

#: Largest anime id we store or accept (MAL ids are far below it; SQLite and JSON clients handle it exactly).
MAX_ANIME_ID = 2**31 - 1
#: MAL labels and age ratings that mark adult titles (MAL's own catalogue hides them by default too).
ADULT_LABELS = frozenset({"hentai", "erotica"})
ADULT_RATING_PREFIX = "rx"


def is_adult(labels: Iterable[str], rating: str | None = None, flagged: bool = False) -> bool:
    """The adult-title rule: flagged by the source, rated Rx, or labelled Hentai/Erotica (any case).

    Args:
        labels: the anime's genres, themes and demographics.
        rating: MAL's age rating, e.g. ``"Rx - Hentai"``.
        flagged: the source's own adult flag.
    """
    rated_adult = (rating or "").strip().casefold().startswith(ADULT_RATING_PREFIX)
    return bool(flagged) or rated_adult or any(label.casefold() in ADULT_LABELS for label in labels)


def anime_url(anime_id: int) -> str:
    """Canonical MyAnimeList page of an anime."""
    return f"https://myanimelist.net/anime/{int(anime_id)}"


def review_url(review_id: str) -> str | None:
    """Permalink of a MAL review, or None for reviews without a numeric MAL id."""
    return f"https://myanimelist.net/reviews.php?id={review_id}" if str(review_id).isdigit() else None


@dataclass
class Anime:
    """Metadata of one anime; every field but ``anime_id`` and ``title`` may be unknown."""

    anime_id: int
    title: str
    title_english: str | None = None
    url: str | None = None
    image_url: str | None = None
    type: str | None = None
    episodes: int | None = None
    year: int | None = None
    season: str | None = None
    score: float | None = None
    members: int | None = None
    genres: list[str] = field(default_factory=list)
    themes: list[str] = field(default_factory=list)
    demographics: list[str] = field(default_factory=list)
    rating: str | None = None
    nsfw: bool = False
    synopsis: str | None = None

    def __post_init__(self) -> None:
        self.anime_id = int(self.anime_id)
        if not self.url:
            self.url = anime_url(self.anime_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Review:
    """One user review of one anime."""

    review_id: str
    anime_id: int
    text: str
    username: str | None = None
    date: str | None = None
    score: int | None = None
    tags: list[str] = field(default_factory=list)
    source: str = "unknown"
    anime_title: str | None = None

    def __post_init__(self) -> None:
        self.review_id = str(self.review_id)
        self.anime_id = int(self.anime_id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UserRecommendation:
    """MAL users recommending ``rec_anime_id`` to fans of ``anime_id``."""

    anime_id: int
    rec_anime_id: int
    user_count: int = 1
    rec_title: str | None = None
    source: str = "unknown"
