"""Turn query-string or JSON request fields into validated search parameters. Pure: no Flask, no I/O.

Every problem raises a domain error from :mod:`recommender.errors` (``InvalidQueryError``,
``InvalidParameterError``, ``UnknownAggregationError``), which the error handlers turn into a JSON 400.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from recommender import config
from recommender.errors import InvalidParameterError, InvalidQueryError, UnknownAggregationError
from recommender.filters import SearchFilters
from recommender.search import check_int, clean_query

#: The reference frontend's default and the bounds it never had.
REFERENCE_DEFAULT_TOP_N = 500
MAX_LIST_ITEMS = 30
MAX_LABEL_CHARS = 60
YEAR_RANGE = (1900, 2100)
SCORE_RANGE = (0.0, 10.0)
#: Last page a client may ask for: beyond ``MAX_TOP_N`` ranked anime there is nothing to page through.
MAX_PAGE = config.MAX_TOP_N

SEARCH_FIELDS = frozenset({
    "q", "limit", "page", "top_n", "aggregation", "genre", "exclude_genre", "type",
    "year_min", "year_max", "min_score", "nsfw",
})

# Lone surrogates survive JSON decoding but cannot be encoded to UTF-8; they are noise, not text.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Fields:
    """Uniform access to request fields, whether they came from a query string or a JSON object.

    Args:
        values: field name → list of raw values (a query string may repeat a field).
        from_json: values keep their JSON types; a query string only has text.
    """

    def __init__(self, values: Mapping[str, list[object]], from_json: bool) -> None:
        self.values = values
        self.from_json = from_json

    @classmethod
    def from_query_string(cls, pairs: Iterable[tuple[str, str]]) -> Fields:
        values: dict[str, list[object]] = {}
        for key, value in pairs:
            values.setdefault(key, []).append(value)
        return cls(values, from_json=False)

    @classmethod
    def from_json_object(cls, document: object, allowed: frozenset[str]) -> Fields:
        """Fields of a decoded JSON body; anything but an object with known keys is refused.

        Raises:
            InvalidParameterError: not an object, or an unknown key (likely a typo the client wants to hear about).
        """
        if not isinstance(document, dict):
            raise InvalidParameterError(f"the JSON body must be an object, got {_json_type(document)}")
        unknown = sorted(set(document) - allowed)
        if unknown:
            raise InvalidParameterError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls({key: [value] for key, value in document.items()}, from_json=True)

    def one(self, name: str) -> object | None:
        """The field's single value; None when absent, null or (in a query string) empty."""
        raw = self.values.get(name)
        if not raw:
            return None
        value = raw[0]
        if self.from_json and isinstance(value, (list, dict)):
            raise InvalidParameterError(f"{name} must be a single value, got {_json_type(value)}")
        if isinstance(value, str) and not self.from_json and not value.strip():
            return None
        return value

    def many(self, name: str) -> tuple[str, ...]:
        """A list field: repeated, comma-separated, or a JSON list of strings; blanks dropped, order kept."""
        items: list[str] = []
        for value in self.values.get(name) or []:
            if value is None:
                continue
            parts = value if self.from_json and isinstance(value, list) else [value]
            for part in parts:
                if not isinstance(part, str):
                    raise InvalidParameterError(f"{name} must be text or a list of text, got {_json_type(part)}")
                items.extend(piece for piece in (" ".join(p.split()) for p in part.split(",")) if piece)
        items = list(dict.fromkeys(items))
        if len(items) > MAX_LIST_ITEMS:
            raise InvalidParameterError(f"{name} has {len(items)} values; the limit is {MAX_LIST_ITEMS}")
        for item in items:
            if len(item) > MAX_LABEL_CHARS:
                raise InvalidParameterError(f"{name} value is longer than {MAX_LABEL_CHARS} characters")
        return tuple(items)


@dataclass(frozen=True)
class SearchParams:
    """A validated ``/api/v1/search`` request."""

    query: str
    limit: int
    page: int
    top_n: int
    aggregation: str
    filters: SearchFilters | None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def parse_query(value: object, name: str = "q", max_chars: int = config.MAX_QUERY_CHARS) -> str:
    """The cleaned query text (control characters and stray surrogates removed, whitespace collapsed).

    Raises:
        InvalidQueryError: missing, not text, blank after cleaning, or too long.
    """
    if value is None:
        raise InvalidQueryError(f"{name} is required: describe what you want to watch")
    if not isinstance(value, str):
        raise InvalidQueryError(f"{name} must be text, got {_json_type(value)}")
    return clean_query(_SURROGATES.sub(" ", value), max_chars=max_chars)


def parse_int(fields: Fields, name: str, default: int, low: int, high: int) -> int:
    """An integer field within ``[low, high]`` (numeric strings allowed; floats and booleans are not).

    Raises:
        InvalidParameterError: not an integer or out of range.
    """
    value = fields.one(name)
    if value is None:
        return default
    if isinstance(value, float):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, str) and len(value) > 20:  # int() of a huge digit string is slow and pointless
        raise InvalidParameterError(f"{name} must be an integer between {low} and {high}")
    return check_int(name, value, low, high)


def parse_optional_int(fields: Fields, name: str, low: int, high: int) -> int | None:
    return None if fields.one(name) is None else parse_int(fields, name, 0, low, high)


def parse_float(fields: Fields, name: str, low: float, high: float) -> float | None:
    """An optional finite number within ``[low, high]``.

    Raises:
        InvalidParameterError: not a number, not finite, or out of range.
    """
    value = fields.one(name)
    if value is None:
        return None
    too_long = isinstance(value, str) and len(value) > 32
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or too_long:
        raise InvalidParameterError(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise InvalidParameterError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidParameterError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return number


def parse_bool(fields: Fields, name: str, default: bool = False) -> bool:
    """A boolean: JSON true/false, or one of 1/0, true/false, yes/no, on/off.

    Raises:
        InvalidParameterError: anything else.
    """
    value = fields.one(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise InvalidParameterError(f"{name} must be true or false, got {value!r}")


def _pick_labels(fields: Fields, name: str, known: Iterable[str] | None) -> tuple[str, ...]:
    """Labels of a list field, spelled as the catalogue spells them; unknown ones refused when ``known`` is given."""
    labels = fields.many(name)
    if known is None:
        return labels
    canonical = {label.casefold(): label for label in known}
    unknown = [label for label in labels if label.casefold() not in canonical]
    if unknown:
        raise InvalidParameterError(
            f"unknown {name} {', '.join(map(repr, unknown))}; see /api/v1/meta for the values in this index"
        )
    return tuple(canonical[label.casefold()] for label in labels)


def parse_filters(fields: Fields, genres: Iterable[str] | None = None,
                  types: Iterable[str] | None = None) -> SearchFilters | None:
    """The result filters of a request, or None when it sets none.

    Args:
        fields: the request's fields.
        genres: the genre/theme/demographic labels of the index (None skips the check).
        types: the anime types of the index (None skips the check).

    Raises:
        InvalidParameterError: a malformed value, an unknown label, or ``year_min`` after ``year_max``.
    """
    genres = list(genres) if genres is not None else None
    filters = SearchFilters(
        genres=_pick_labels(fields, "genre", genres),
        exclude_genres=_pick_labels(fields, "exclude_genre", genres),
        types=_pick_labels(fields, "type", types),
        year_min=parse_optional_int(fields, "year_min", *YEAR_RANGE),
        year_max=parse_optional_int(fields, "year_max", *YEAR_RANGE),
        min_score=parse_float(fields, "min_score", *SCORE_RANGE),
        nsfw=parse_bool(fields, "nsfw"),
    )
    if filters.year_min is not None and filters.year_max is not None and filters.year_min > filters.year_max:
        raise InvalidParameterError(f"year_min ({filters.year_min}) is after year_max ({filters.year_max})")
    return None if filters == SearchFilters() else filters


def parse_aggregation(value: object, available: Iterable[str], default: str) -> str:
    """The aggregation name, checked against those the recommender offers.

    Raises:
        UnknownAggregationError: not one of ``available``.
    """
    if value is None:
        return default
    names = sorted(available)
    if not isinstance(value, str) or value not in names:
        raise UnknownAggregationError(f"unknown aggregation {value!r}; choose from {', '.join(names)}")
    return value


def parse_search(fields: Fields, aggregations: Iterable[str], default_aggregation: str = config.DEFAULT_AGGREGATION,
                 genres: Iterable[str] | None = None, types: Iterable[str] | None = None) -> SearchParams:
    """Validate every field of a search request.

    Raises:
        InvalidQueryError, InvalidParameterError, UnknownAggregationError: the first problem found.
    """
    query = parse_query(fields.one("q"))
    limit = parse_int(fields, "limit", config.DEFAULT_LIMIT, 1, config.MAX_LIMIT)
    page = parse_int(fields, "page", 1, 1, MAX_PAGE)
    if (page - 1) * limit > config.MAX_TOP_N:
        raise InvalidParameterError(
            f"page {page} with limit {limit} starts past result {config.MAX_TOP_N}, the most a search can rank"
        )
    return SearchParams(
        query=query,
        limit=limit,
        page=page,
        top_n=parse_int(fields, "top_n", config.DEFAULT_TOP_N, 1, config.MAX_TOP_N),
        aggregation=parse_aggregation(fields.one("aggregation"), aggregations, default_aggregation),
        filters=parse_filters(fields, genres, types),
    )


def parse_reference(fields: Fields) -> tuple[str, int]:
    """``query`` and ``top_n`` of the reference frontend's ``GET /search``.

    Raises:
        InvalidQueryError, InvalidParameterError: missing/blank query or a bad ``top_n``.
    """
    query = parse_query(fields.one("query"), name="query")
    return query, parse_int(fields, "top_n", REFERENCE_DEFAULT_TOP_N, 1, config.MAX_TOP_N)


def filters_to_dict(filters: SearchFilters | None) -> dict:
    """JSON form of the applied filters (empty when none)."""
    if filters is None:
        return {}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(filters).items()
            if value not in ((), None)}
