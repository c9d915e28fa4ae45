"""Result filters applied server-side, before the result limit. Pure functions over catalogue entries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from recommender.errors import InvalidParameterError

#: MAL labels and age ratings that mark adult titles (MAL's own catalogue hides them by default too).
ADULT_GENRES = frozenset({"hentai", "erotica"})
ADULT_RATING_PREFIX = "rx"


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

    @classmethod
    def from_values(cls, *, genres: Iterable[str] | str | None = None,
                    exclude_genres: Iterable[str] | str | None = None, types: Iterable[str] | str | None = None,
                    year_min: object = None, year_max: object = None, min_score: object = None,
                    nsfw: object = False) -> SearchFilters:
        """Validated filters from loose user input (CLI flags, query-string values).

        Lists may be given as one comma-separated string; blank values mean "no filter".

        Raises:
            InvalidParameterError: a year or score that is not a number, or a year range that is empty.
        """
        filters = cls(
            genres=_labels_arg(genres), exclude_genres=_labels_arg(exclude_genres), types=_labels_arg(types),
            year_min=_number("year_min", year_min, int), year_max=_number("year_max", year_max, int),
            min_score=_number("min_score", min_score, float), nsfw=_flag("nsfw", nsfw),
        )
        if filters.year_min is not None and filters.year_max is not None and filters.year_min > filters.year_max:
            raise InvalidParameterError(f"year_min {filters.year_min} is after year_max {filters.year_max}")
        if filters.min_score is not None and not 0 <= filters.min_score <= 10:
            raise InvalidParameterError(f"min_score must be between 0 and 10, got {filters.min_score}")
        return filters


def _labels_arg(value: Iterable[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else [part for v in value for part in str(v).split(",")]
    return tuple(dict.fromkeys(item.strip() for item in items if item and item.strip()))


def _number(name: str, value: object, kind: type) -> int | float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be a number")
    try:
        number = float(str(value).strip())
    except ValueError:
        raise InvalidParameterError(f"{name} must be a number, got {value!r}") from None
    if kind is int:
        if not number.is_integer():
            raise InvalidParameterError(f"{name} must be a whole year, got {value!r}")
        return int(number)
    return number


def _flag(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in ("", "0", "false", "no", "off", "none"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InvalidParameterError(f"{name} must be true or false, got {value!r}")


def labels(meta: Mapping) -> set[str]:
    """An anime's genres, themes and demographics, case-folded."""
    return {label.casefold() for key in ("genres", "themes", "demographics") for label in (meta.get(key) or [])}



def is_adult(meta: Mapping) -> bool:
    """Adult title: flagged ``nsfw``, rated Rx, or labelled Hentai/Erotica (sources disagree on which they record)."""
    rating = (meta.get("rating") or "").strip().casefold()
    return bool(meta.get("nsfw")) or rating.startswith(ADULT_RATING_PREFIX) or bool(labels(meta) & ADULT_GENRES)


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
