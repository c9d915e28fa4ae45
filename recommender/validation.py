"""Every input rule, defined once and used by every face: the CLIs, the console, the HTTP API and the importers.

Pure: no Flask, no I/O. Each problem raises a domain error from :mod:`recommender.errors`
(``InvalidQueryError``, ``InvalidParameterError``, ``UnknownAggregationError``); the edges turn it
into an exit code and one line (CLI) or a JSON 400 (API).
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from urllib.parse import parse_qsl, unquote_plus

from recommender import config
from recommender.errors import InvalidParameterError, InvalidQueryError, UnknownAggregationError
from recommender.filters import SearchFilters

#: Bounds of the filters and list fields.
MAX_LIST_ITEMS = 30
MAX_LABEL_CHARS = 60
YEAR_RANGE = (1900, 2100)
SCORE_RANGE = (0.0, 10.0)
#: Last page a client may ask for: beyond ``MAX_TOP_N`` ranked anime there is nothing to page through.
MAX_PAGE = config.MAX_TOP_N
#: Most fields a query string may carry; more is abuse, not a search.
MAX_QUERY_STRING_FIELDS = 100

#: The reference frontend's defaults: it voted over the top 500 passages and showed ``results.head(18)``.
REFERENCE_DEFAULT_TOP_N = 500
REFERENCE_DEFAULT_LIMIT = 18
#: Parameters of the reference route besides ``query``; anything else inside its query string is query text.
REFERENCE_PARAMETERS = ("top_n", "limit", "aggregation")

SEARCH_FIELDS = frozenset({
    "q", "limit", "page", "top_n", "aggregation", "genre", "exclude_genre", "type",
    "year_min", "year_max", "min_score", "nsfw",
})
FILTER_FIELDS = frozenset({"genre", "exclude_genre", "type", "year_min", "year_max", "min_score", "nsfw"})

#: Characters removed from queries: control characters, zero-width characters and the replacement character.
QUERY_NOISE = "\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff\ufffd"
_NOISE = re.compile(f"[{QUERY_NOISE}]")
# Lone surrogates survive JSON decoding but cannot be encoded to UTF-8; they are noise, not text.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
# ASCII digits only: int() would also read "5_0" and Arabic-Indic digits, which no client means as a number.
_INTEGER = re.compile(r"-?[0-9]{1,19}")
_NUMBER = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?([eE][-+]?[0-9]{1,3})?")
_TRUE, _FALSE = frozenset({"true", "1", "yes", "on"}), frozenset({"false", "0", "no", "off"})


def describe(value: object) -> str:
    """How a value reads in an error message: its JSON type, or the text itself (shortened)."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    names = {dict: "an object", list: "a list", tuple: "a list", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


# ---- scalar rules ------------------------------------------------------------------------------
def clean_query(query: object, max_chars: int = config.MAX_QUERY_CHARS, name: str = "query") -> str:
    """Normalise a user's query: drop control characters and stray surrogates, collapse whitespace, cap the length.

    Raises:
        InvalidQueryError: missing, not text, empty or blank after cleaning, or longer than ``max_chars``.
    """
    label = "the query" if name == "query" else name
    if query is None:
        raise InvalidQueryError(f"{label} is required: describe what you want to watch")
    if not isinstance(query, str):
        raise InvalidQueryError(f"{label} must be text, got {describe(query)}")
    text = " ".join(_NOISE.sub(" ", _SURROGATES.sub(" ", query)).split())
    if not text:
        raise InvalidQueryError(f"{label} is empty; describe what you want to watch")
    if len(text) > max_chars:
        raise InvalidQueryError(f"{label} is {len(text)} characters long; the limit is {max_chars}")
    return text


def check_int(name: str, value: object, low: int, high: int) -> int:
    """An integer within ``[low, high]``: a Python int, or a string of ASCII digits with an optional ``-``.

    Floats (even ``2.0``), booleans, ``5_0``, other scripts' digits and surrounding spaces are refused.

    Raises:
        InvalidParameterError: not such an integer, or outside ``[low, high]``.
    """
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        number = int(value)
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        number = int(value)
    else:
        raise InvalidParameterError(f"{name} must be an integer between {low} and {high}, got {describe(value)}")
    if not low <= number <= high:
        shown = str(number) if abs(number) < 10**20 else f"a {len(str(abs(number)))}-digit number"
        raise InvalidParameterError(f"{name} must be between {low} and {high}, got {shown}")
    return number


def check_float(name: str, value: object, low: float, high: float) -> float:
    """A finite number within ``[low, high]``: an int or float, or a plain decimal string (``7.5``, ``1e1``).

    Raises:
        InvalidParameterError: not a number, not finite (``nan``, ``inf``, ``1e999``) or out of range.
    """
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        number = float(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if not isinstance(value, int) or abs(value) < 10**20 else math.inf
    else:
        raise InvalidParameterError(f"{name} must be a number between {low:g} and {high:g}, got {describe(value)}")
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidParameterError(f"{name} must be between {low:g} and {high:g}, got {describe(value)}")
    return number


def check_bool(name: str, value: object) -> bool:
    """A boolean: ``True``/``False``, or one of true/false, 1/0, yes/no, on/off (any case).

    Raises:
        InvalidParameterError: anything else.
    """
    if isinstance(value, bool):
        return value
    text = value.lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise InvalidParameterError(f"{name} must be true or false, got {describe(value)}")


def check_aggregation(value: object, available: Iterable[str]) -> str:
    """An aggregation name among ``available``.

    Raises:
        UnknownAggregationError: any other value.
    """
    names = sorted(available)
    if not isinstance(value, str) or value not in names:
        raise UnknownAggregationError(f"unknown aggregation {describe(value)}; choose from {', '.join(names)}")
    return value


def check_labels(name: str, labels: Iterable[str], known: Iterable[str] | None) -> tuple[str, ...]:
    """Labels spelled as the catalogue spells them (matched case-insensitively); ``known=None`` skips the check.

    Raises:
        InvalidParameterError: an unknown label, with the closest known ones in the message.
    """
    labels = tuple(labels)
    if known is None:
        return labels
    canonical = {label.casefold(): label for label in known}
    for label in labels:
        if label.casefold() not in canonical:
            close = difflib.get_close_matches(label.casefold(), list(canonical), n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join(repr(canonical[c]) for c in close)}?" if close
                    else f"none of the {len(canonical)} known values is close")
            raise InvalidParameterError(f"unknown {name} {describe(label)}; {hint}")
    return tuple(canonical[label.casefold()] for label in labels)


# ---- request fields ----------------------------------------------------------------------------
def query_string_pairs(raw: bytes | str) -> list[tuple[str, str]]:
    """``name=value`` pairs of a raw query string, decoded strictly as UTF-8.

    Raises:
        InvalidParameterError: a byte or percent-escape that is not UTF-8 (``%FF``), or too many fields.
    """
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_STRING_FIELDS)
    except UnicodeError:
        raise InvalidParameterError("the query string is not valid UTF-8 (a percent-escape such as %FF)") from None
    except ValueError:
        raise InvalidParameterError(f"the query string has more than {MAX_QUERY_STRING_FIELDS} fields") from None


class Fields:
    """Uniform access to request fields from a query string, a JSON object or command-line values.

    Args:
        values: field name → list of raw values (a query string may repeat a field).
        typed: values keep their own types (JSON, command line); a query string only has text.
    """

    def __init__(self, values: Mapping[str, list[object]], typed: bool) -> None:
        self.values = values
        self.typed = typed

    @classmethod
    def from_query_string(cls, raw: bytes | str | Iterable[tuple[str, str]]) -> Fields:
        """Fields of a raw query string (see :func:`query_string_pairs`) or of already decoded pairs."""
        pairs = query_string_pairs(raw) if isinstance(raw, (bytes, str)) else raw
        values: dict[str, list[object]] = {}
        for key, value in pairs:
            values.setdefault(key, []).append(value)
        return cls(values, typed=False)

    @classmethod
    def from_json_object(cls, document: object, allowed: frozenset[str]) -> Fields:
        """Fields of a decoded JSON body; anything but an object with known keys is refused.

        Raises:
            InvalidParameterError: not an object, or an unknown key (likely a typo the client wants to hear about).
        """
        if not isinstance(document, dict):
            raise InvalidParameterError(f"the JSON body must be an object, got {describe(document)}")
        unknown = sorted(set(document) - allowed)
        if unknown:
            raise InvalidParameterError(
                f"unknown field(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(allowed))}"
            )
        return cls({key: [value] for key, value in document.items()}, typed=True)

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> Fields:
        """Fields of command-line options: None means "not given"; a list is a repeated option."""
        return cls({key: [value] for key, value in values.items() if value is not None}, typed=True)

    def one(self, name: str, *, allow_empty: bool = False) -> object | None:
        """The field's single value, or None when it is absent.

        Raises:
            InvalidParameterError: given twice, JSON null or a list/object, or an empty
                query-string value (unless ``allow_empty``): an empty value is not "absent".
        """
        raw = self.values.get(name)
        if not raw:
            return None
        if len(raw) > 1:
            raise InvalidParameterError(f"{name} is given {len(raw)} times; give it once")
        value = raw[0]
        if self.typed and value is None:
            raise InvalidParameterError(f"{name} is null; leave the field out or give a value")
        if self.typed and isinstance(value, (list, dict)):
            raise InvalidParameterError(f"{name} must be a single value, got {describe(value)}")
        if value == "" and not allow_empty:
            raise InvalidParameterError(f"{name} is empty; leave the field out or give a value")
        return value

    def many(self, name: str) -> tuple[str, ...]:
        """A list field: repeated, comma-separated, or a JSON list of strings; order kept, duplicates dropped.

        Raises:
            InvalidParameterError: a blank value, a non-text item, too many items or an over-long item.
        """
        items: list[str] = []
        for value in self.values.get(name) or []:
            parts = value if self.typed and isinstance(value, (list, tuple)) else [value]
            for part in parts:
                if not isinstance(part, str):
                    raise InvalidParameterError(f"{name} must be text or a list of text, got {describe(part)}")
                pieces = [piece for piece in (" ".join(p.split()) for p in part.split(",")) if piece]
                if not pieces:
                    raise InvalidParameterError(f"{name} has an empty value; leave the field out or name one")
                items.extend(pieces)
        if len(items) > MAX_LIST_ITEMS:  # counted as given, repeats included, as the API description counts them
            raise InvalidParameterError(f"{name} has {len(items)} values; the limit is {MAX_LIST_ITEMS}")
        items = list(dict.fromkeys(items))
        for item in items:
            if len(item) > MAX_LABEL_CHARS:
                raise InvalidParameterError(f"{name} value is longer than {MAX_LABEL_CHARS} characters")
        return tuple(items)

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer field (see :func:`check_int`), ``default`` when absent."""
        value = self.one(name)
        return default if value is None else check_int(name, value, low, high)


# ---- whole requests ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchParams:
    """A validated search request."""

    query: str
    limit: int
    page: int
    top_n: int
    aggregation: str
    filters: SearchFilters | None

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


def parse_filters(fields: Fields, genres: Iterable[str] | None = None,
                  types: Iterable[str] | None = None) -> SearchFilters | None:
    """The result filters of a request, or None when it sets none.

    Args:
        fields: the request's fields.
        genres: the genre/theme/demographic labels of the index (None skips the name check).
        types: the anime types of the index (None skips the name check).

    Raises:
        InvalidParameterError: a malformed value, an unknown label, or ``year_min`` after ``year_max``.
    """
    genres = list(genres) if genres is not None else None
    year_min, year_max, min_score = (fields.one(name) for name in ("year_min", "year_max", "min_score"))
    nsfw = fields.one("nsfw")
    filters = SearchFilters(
        genres=check_labels("genre", fields.many("genre"), genres),
        exclude_genres=check_labels("exclude_genre", fields.many("exclude_genre"), genres),
        types=check_labels("type", fields.many("type"), types),
        year_min=None if year_min is None else check_int("year_min", year_min, *YEAR_RANGE),
        year_max=None if year_max is None else check_int("year_max", year_max, *YEAR_RANGE),
        min_score=None if min_score is None else check_float("min_score", min_score, *SCORE_RANGE),
        nsfw=False if nsfw is None else check_bool("nsfw", nsfw),
    )
    if filters.year_min is not None and filters.year_max is not None and filters.year_min > filters.year_max:
        raise InvalidParameterError(f"year_min ({filters.year_min}) is after year_max ({filters.year_max})")
    return None if filters == SearchFilters() else filters


def parse_search(fields: Fields, aggregations: Iterable[str], default_aggregation: str = config.DEFAULT_AGGREGATION,
                 genres: Iterable[str] | None = None, types: Iterable[str] | None = None) -> SearchParams:
    """Validate every field of a search request.

    Raises:
        InvalidQueryError, InvalidParameterError, UnknownAggregationError: the first problem found.
    """
    query = clean_query(fields.one("q", allow_empty=True), name="q")
    limit = fields.integer("limit", config.DEFAULT_LIMIT, 1, config.MAX_LIMIT)
    page = fields.integer("page", 1, 1, MAX_PAGE)
    aggregation = fields.one("aggregation")
    return SearchParams(
        query=query,
        limit=limit,
        page=page,
        top_n=fields.integer("top_n", config.DEFAULT_TOP_N, 1, config.MAX_TOP_N),
        aggregation=default_aggregation if aggregation is None else check_aggregation(aggregation, aggregations),
        filters=parse_filters(fields, genres, types),
    )


def reference_fields(raw: bytes | str) -> Fields:
    """The fields of the reference route's query string, read the way its frontend writes it.

    The reference frontend concatenates the query into the URL without encoding it
    (``"/search?query=" + query + "&top_n=500"``), so an ``&`` inside the query
    splits it. Here the query is everything from ``query=`` up to the last
    ``&top_n=``, ``&`` and unknown ``name=value`` pieces included, less a trailing
    run of the route's other parameters (``&limit=``, ``&aggregation=``); fields
    before ``query=`` and after ``top_n`` are read as usual. Without ``&top_n=`` the
    query runs to the trailing run of the route's parameters, or to the end. A ``#``
    ends the URL in the browser and never reaches us.

    Raises:
        InvalidParameterError: the query string is not valid UTF-8.
    """
    try:
        text = raw.decode("utf-8", errors="strict") if isinstance(raw, bytes) else raw
    except UnicodeError:
        raise InvalidParameterError("the query string is not valid UTF-8") from None
    pieces = text.split("&")
    start = next((i for i, piece in enumerate(pieces) if piece.startswith("query=")), None)
    if start is None:
        return Fields.from_query_string(text)
    top_n = [i for i in range(start + 1, len(pieces)) if pieces[i].startswith("top_n=")]
    end = top_n[-1] if top_n else len(pieces)
    while end - 1 > start and pieces[end - 1].split("=", 1)[0] in REFERENCE_PARAMETERS:
        end -= 1
    query_text = "&".join(pieces[start:end])[len("query="):]
    try:
        query = unquote_plus(query_text, errors="strict")
    except UnicodeError:
        raise InvalidParameterError("the query string is not valid UTF-8 (a percent-escape such as %FF)") from None
    pairs = query_string_pairs("&".join(pieces[:start] + pieces[end:]))
    return Fields.from_query_string([*pairs, ("query", query)])


def parse_reference(fields: Fields, aggregations: Iterable[str],
                    default_aggregation: str = config.DEFAULT_AGGREGATION) -> SearchParams:
    """``query``, ``top_n``, ``limit`` and ``aggregation`` of the reference frontend's ``GET /search``.

    Raises:
        InvalidQueryError, InvalidParameterError, UnknownAggregationError: missing/blank query or a bad number.
    """
    query = clean_query(fields.one("query", allow_empty=True), name="query")
    aggregation = fields.one("aggregation")
    return SearchParams(
        query=query,
        limit=fields.integer("limit", REFERENCE_DEFAULT_LIMIT, 1, config.MAX_LIMIT),
        page=1,
        top_n=fields.integer("top_n", REFERENCE_DEFAULT_TOP_N, 1, config.MAX_TOP_N),
        aggregation=default_aggregation if aggregation is None else check_aggregation(aggregation, aggregations),
        filters=None,
    )


def filters_to_dict(filters: SearchFilters | None) -> dict:
    """JSON form of the applied filters (empty when none)."""
    if filters is None:
        return {}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(filters).items()
            if value not in ((), None)}
