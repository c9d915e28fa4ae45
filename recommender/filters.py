"""Result filters applied server-side, before the result limit. Pure functions over catalogue entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from scraping.models import is_adult as adult_rule


@dataclass(frozen=True)
class SearchFilters:
    """Which anime may appear in results. Empty/None fields do not filter.

    ``genres`` must all be present (genres, themes and demographics all count);
    ``exclude_genres`` must all be absent; ``types`` is a set of allowed MAL
    types (TV, Movie, OVA…); adult titles are hidden unless ``nsfw`` is True.
    """

    genres: tuple[str, ...] = field(default_factory=tuple)
    exclude_genres: tuple[str, ...] = field(default_factory=tuple)
    types: tuple[str, ...] = field(default_factory=tuple)
    year_min: int | None = None
    year_max: int | None = None
    min_score: float | None = None
    nsfw: bool = False

    @property
    def is_default(self) -> bool:
        """True when the filters only hide adult titles (the default of every search)."""
        return self == SearchFilters()


def labels(meta: Mapping) -> set[str]:
    """An anime's genres, themes and demographics, case-folded."""
    return {label.casefold() for key in ("genres", "themes", "demographics") for label in (meta.get(key) or [])}


def is_adult(meta: Mapping) -> bool:
    """Whether a catalogue entry is an adult title, by the one rule in :func:`scraping.models.is_adult`."""
    return adult_rule(labels(meta), meta.get("rating"), bool(meta.get("nsfw")))


def matches(meta: dict, filters: SearchFilters) -> bool:
    """Whether an anime's catalogue entry passes ``filters``; unknown metadata fails only the filters that need it."""
    if not filters.nsfw and is_adult(meta):
        return False
    found = labels(meta)
    if any(g.casefold() not in found for g in filters.genres):
        return False
    if any(g.casefold() in found for g in filters.exclude_genres):
        return False
    if filters.types and (meta.get("type") or "").casefold() not in {t.casefold() for t in filters.types}:
        return False
    year = meta.get("year")
    if filters.year_min is not None and (year is None or year < filters.year_min):
        return False
    if filters.year_max is not None and (year is None or year > filters.year_max):
        return False
    score = meta.get("score")
    if filters.min_score is not None and (score is None or score < filters.min_score):
        return False
    return True
