"""Result filters applied server-side, before the result limit. Pure functions over catalogue entries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

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


def is_adult(meta: Mapping, found: set[str] | None = None) -> bool:
    """Whether a catalogue entry is an adult title, by the one rule in :func:`scraping.models.is_adult`
    (``found``: its :func:`labels`, when already known)."""
    return adult_rule(labels(meta) if found is None else found, meta.get("rating"), bool(meta.get("nsfw")))


def matches(meta: dict, filters: SearchFilters, found: set[str] | None = None) -> bool:
    """Whether an anime's catalogue entry passes ``filters``; unknown metadata fails only the filters that need it.

    ``found``: the entry's :func:`labels`, when the caller keeps them (a loaded index computes them once).
    """
    found = labels(meta) if found is None else found
    if not filters.nsfw and is_adult(meta, found):
        return False
    wanted, unwanted, types = _folded(filters)
    if wanted and not wanted <= found:
        return False
    if unwanted and not unwanted.isdisjoint(found):
        return False
    if types and (meta.get("type") or "").casefold() not in types:
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


@lru_cache(maxsize=512)
def _folded(filters: SearchFilters) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """The filter's genres to have, genres to avoid and types, case-folded once per filter set."""
    fold = lambda values: frozenset(v.casefold() for v in values)  # noqa: E731
    return fold(filters.genres), fold(filters.exclude_genres), fold(filters.types)
