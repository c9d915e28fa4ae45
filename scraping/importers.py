"""Import existing review dumps (our JSONL format, the reference system's CSV) and anime metadata into the store.

Rows are parsed by pure functions that check every field (type, range, length, id
bounds, link safety) and raise :class:`BadRow`; the importer reports each bad row
with its line number and reason and goes on, and writes good rows in batches, one
transaction each, so a killed import leaves a consistent store.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from recommender.errors import InvalidParameterError
from recommender.validation import check_bool, check_float, check_int, describe
from scraping.models import MAX_ANIME_ID, Anime, Review, is_adult
from scraping.store import Store, UpsertCounts
from scraping.urls import anime_id_from_url, safe_mal_url

log = logging.getLogger(__name__)

CSV_COLUMNS = ("Anime Title", "Review", "MAL Link", "Image URL")
_BATCH = 1000
#: Longest text stored per field: anything longer is a broken or hostile row, not a review.
MAX_CHARS = {
    "review_id": 200, "text": 200_000, "username": 100, "date": 64, "source": 64, "anime_title": 500,
    "title": 500, "title_english": 500, "type": 32, "season": 16, "rating": 100, "synopsis": 50_000,
    "Review": 200_000, "Anime Title": 500,
}
MAX_LABELS = 100
MAX_LABEL_CHARS = 100
#: Ranges of numeric metadata. A number outside its range is stored as unknown (some sources write 0 for
#: "no score"); a value that is not a number at all makes the row bad.
RANGES: dict[str, tuple[float, float]] = {
    "review score": (1, 10), "score": (0.0, 10.0), "episodes": (0, 100_000), "year": (1900, 2100),
    "members": (0, 10**10),
}
# Lone surrogates (JSON escapes such as \ud800) cannot be written as UTF-8; they become U+FFFD.
_SURROGATES = re.compile(r"[\ud800-\udfff]")
#: What the store raises for a value it cannot write (an int beyond 64 bits, text it cannot encode).
_VALUE_ERRORS = (OverflowError, ValueError, TypeError)
T = TypeVar("T")


class BadRow(ValueError):
    """A row that cannot become a record; the message says why."""


class ImportFormatError(Exception):
    """The file as a whole is not in a format we can import."""


@dataclass
class ImportReport:
    """Counts of one import; ``bad`` holds ``(line, reason)`` for every rejected row."""

    path: Path
    rows: int = 0
    reviews: UpsertCounts = field(default_factory=UpsertCounts)
    anime: UpsertCounts = field(default_factory=UpsertCounts)
    bad: list[tuple[int, str]] = field(default_factory=list)
    #: Anime created title-only because reviews named them (also counted in ``anime.inserted``).
    placeholders: int = 0
    #: Links that were not MyAnimeList URLs, dropped from otherwise good rows.
    unsafe_links: int = 0

    def summary(self) -> str:
        r, a = self.reviews, self.anime
        placeholders = f" ({self.placeholders} title-only, from the reviews)" if self.placeholders else ""
        return (
            f"{self.path.name}: {self.rows} rows read; reviews {r.inserted} new, {r.updated} updated,"
            f" {r.unchanged} unchanged; anime {a.inserted} new{placeholders}, {a.updated} updated,"
            f" {a.unchanged} unchanged; {len(self.bad)} bad rows skipped; {self.unsafe_links} unsafe links dropped"
        )


# ---- one field at a time: every check names the field and the reason ----------------------------
def _text(value: object, name: str, *, required: bool = False) -> str | None:
    """A text field, stripped; None when absent or blank (a BadRow when ``required``)."""
    if isinstance(value, str):
        value = _SURROGATES.sub("\ufffd", value).strip()
    elif value is not None:
        raise BadRow(f"{name} must be text, got {describe(value)}")
    if not value:
        if required:
            raise BadRow(f"{name} is missing or empty")
        return None
    if len(value) > MAX_CHARS[name]:
        raise BadRow(f"{name} is {len(value)} characters long; the limit is {MAX_CHARS[name]}")
    return value


def _number(value: object, name: str, kind: str = "int", range_name: str | None = None) -> float | int | None:
    """An optional number (``kind`` ``int`` or ``float``); None when absent or outside its range."""
    if value is None or value == "":
        return None
    try:
        number = (check_int(name, value, -(2**63), 2**63 - 1) if kind == "int"
                  else check_float(name, value, -math.inf, math.inf))
    except InvalidParameterError as exc:
        raise BadRow(str(exc)) from None
    low, high = RANGES[range_name or name]
    return number if low <= number <= high else None


def _anime_id(value: object) -> int:
    if value is None or value == "":
        raise BadRow("anime_id is missing")
    try:
        return check_int("anime_id", value, 1, MAX_ANIME_ID)
    except InvalidParameterError as exc:
        raise BadRow(str(exc)) from None


def _labels(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRow(f"{name} must be a list of text, got {describe(value)}")
    labels = [_SURROGATES.sub("\ufffd", v).strip() for v in value]
    if len(labels) > MAX_LABELS or any(len(v) > MAX_LABEL_CHARS for v in labels):
        raise BadRow(f"{name} has over {MAX_LABELS} values or one over {MAX_LABEL_CHARS} characters")
    return [v for v in labels if v]


def _link(value: object, report: ImportReport) -> str | None:
    """A MyAnimeList link, or None; any other link is dropped and counted (the row itself is kept)."""
    if value is None or value == "":
        return None
    safe = safe_mal_url(value)
    if safe is None:
        report.unsafe_links += 1
    return safe


def _flag(value: object, name: str) -> bool:
    try:
        return False if value is None else check_bool(name, value)
    except InvalidParameterError as exc:
        raise BadRow(str(exc)) from None


def review_from_json(obj: object) -> Review:
    """One review from a JSONL object (fields of ``../shared/data/reviews.jsonl``).

    Raises:
        BadRow: not an object, or a field of the wrong type, too long, out of bounds or
            missing (review id, anime id and text are required).
    """
    if not isinstance(obj, dict):
        raise BadRow("not a JSON object")
    review_id = obj.get("review_id")
    if isinstance(review_id, int) and not isinstance(review_id, bool):
        review_id = str(review_id)
    return Review(
        review_id=_text(review_id, "review_id", required=True),
        anime_id=_anime_id(obj.get("anime_id")),
        text=_text(obj.get("text"), "text", required=True),
        username=_text(obj.get("username"), "username"),
        date=_text(obj.get("date"), "date"),
        score=_number(obj.get("score"), "score", range_name="review score"),
        tags=_labels(obj.get("tags"), "tags"),
        source=_text(obj.get("source"), "source") or "jsonl",
        anime_title=_text(obj.get("anime_title"), "anime_title"),
    )


def anime_from_json(obj: object, report: ImportReport | None = None) -> Anime:
    """One anime from a JSONL object (fields of ``../shared/data/anime.jsonl``).

    Links that are not MyAnimeList URLs are dropped and counted in ``report``.

    Raises:
        BadRow: not an object, or a field of the wrong type, too long, out of bounds or
            missing (anime id and title are required).
    """
    if not isinstance(obj, dict):
        raise BadRow("not a JSON object")
    report = report if report is not None else ImportReport(Path("-"))
    genres, themes, demographics = (_labels(obj.get(name), name) for name in ("genres", "themes", "demographics"))
    rating = _text(obj.get("rating"), "rating")
    flagged = _flag(obj.get("nsfw"), "nsfw")
    values = dict(
        anime_id=_anime_id(obj.get("anime_id")),
        title=_text(obj.get("title"), "title", required=True),
        title_english=_text(obj.get("title_english"), "title_english"),
        type=_text(obj.get("type"), "type"),
        episodes=_number(obj.get("episodes"), "episodes"),
        year=_number(obj.get("year"), "year"),
        season=_text(obj.get("season"), "season"),
        score=_number(obj.get("score"), "score", kind="float"),
        members=_number(obj.get("members"), "members"),
        synopsis=_text(obj.get("synopsis"), "synopsis"),
        genres=genres, themes=themes, demographics=demographics, rating=rating,
        nsfw=is_adult([*genres, *themes, *demographics], rating, flagged),
    )
    # Links last: a row that turns out bad must not count its links as dropped.
    return Anime(**values, url=_link(obj.get("url"), report), image_url=_link(obj.get("image_url"), report))


def anime_id_from_link(link: object) -> int:
    """The MAL id in an anime URL such as ``https://myanimelist.net/anime/1/Cowboy_Bebop``.

    Raises:
        BadRow: not a MyAnimeList anime link, or an id out of bounds.
    """
    safe = safe_mal_url(link)
    anime_id = anime_id_from_url(safe) if safe else None
    if anime_id is None:
        raise BadRow(f"MAL Link is not a MyAnimeList anime link: {describe(link)}")
    if not 1 <= anime_id <= MAX_ANIME_ID:
        raise BadRow(f"MAL Link has an anime id out of bounds (1 to {MAX_ANIME_ID}): {describe(link)}")
    return anime_id


def csv_review_id(anime_id: int, text: str) -> str:
    """Stable id for a CSV review (the reference CSV has none): sha1 of the anime and normalised text."""
    normalised = " ".join(text.split())
    return hashlib.sha1(f"refcsv|{anime_id}|{normalised}".encode()).hexdigest()


def records_from_csv_row(row: dict[str, str], report: ImportReport | None = None) -> tuple[Review, Anime]:
    """A review and its anime from one row of the reference system's CSV.

    An ``Image URL`` that is not a MyAnimeList link is dropped and counted in ``report``.

    Raises:
        BadRow: no usable MAL link, empty or over-long review or title.
    """
    report = report if report is not None else ImportReport(Path("-"))
    anime_id = anime_id_from_link(row.get("MAL Link"))
    text = _text(row.get("Review"), "Review", required=True)
    title = _text(row.get("Anime Title"), "Anime Title", required=True)
    anime = Anime(anime_id=anime_id, title=title, image_url=_link((row.get("Image URL") or "").strip(), report))
    review = Review(csv_review_id(anime_id, text), anime_id, text, source="reference_csv", anime_title=title)
    return review, anime


def _jsonl_objects(path: Path, report: ImportReport) -> Iterator[tuple[int, object]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            report.rows += 1
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                report.bad.append((line_no, f"invalid JSON: {exc.msg}"))


def _write(batch: list[tuple[int, T]], write: Callable[[list[T]], None], report: ImportReport) -> None:
    """Write a batch in one transaction; if the store refuses a value, retry row by row so only that row is lost.

    Every field was checked while parsing, so this is the last line of defence, not the rule.
    """
    try:
        write([record for _, record in batch])
    except _VALUE_ERRORS:
        for line_no, record in batch:
            try:
                write([record])
            except _VALUE_ERRORS as exc:
                report.bad.append((line_no, f"the store refused it: {exc}"))
    batch.clear()


def _review_writer(store: Store, report: ImportReport) -> Callable[[list[Review]], None]:
    """Upserts reviews, first creating a title-only placeholder for each anime the store does not know."""
    known: set[int] = set()

    def write(reviews: list[Review]) -> None:
        for review in reviews:
            if review.anime_id not in known:
                if store.get_anime(review.anime_id) is None:
                    store.ensure_anime(review.anime_id, review.anime_title)
                    report.placeholders += 1
                    report.anime.inserted += 1
                known.add(review.anime_id)
        report.reviews += store.upsert_reviews(reviews)

    return write


def _anime_writer(store: Store, report: ImportReport) -> Callable[[list[Anime]], None]:
    def write(anime: list[Anime]) -> None:
        report.anime += store.upsert_anime(anime)

    return write


def _import_jsonl(path: Path, parse: Callable[[object, ImportReport], T],
                  writer: Callable[[Store, ImportReport], Callable[[list[T]], None]], store: Store) -> ImportReport:
    """Parse a JSONL file row by row, writing batches of records and reporting bad rows with their line."""
    report = ImportReport(path)
    write = writer(store, report)
    batch: list[tuple[int, T]] = []
    for line_no, obj in _jsonl_objects(path, report):
        try:
            batch.append((line_no, parse(obj, report)))
        except BadRow as exc:
            report.bad.append((line_no, str(exc)))
        if len(batch) >= _BATCH:
            _write(batch, write, report)
    _write(batch, write, report)
    return report


def import_reviews_jsonl(store: Store, path: Path) -> ImportReport:
    """Import reviews from JSONL; unknown anime get title-only placeholders."""
    return _import_jsonl(path, lambda obj, _report: review_from_json(obj), _review_writer, store)


def import_anime_jsonl(store: Store, path: Path) -> ImportReport:
    """Import anime metadata from JSONL, merging with what the store knows."""
    return _import_jsonl(path, anime_from_json, _anime_writer, store)


def import_reference_csv(store: Store, path: Path) -> ImportReport:
    """Import the reference system's CSV (columns ``Anime Title, Review, MAL Link, Image URL``).

    Raises:
        ImportFormatError: the header lacks one of those columns.
    """
    report = ImportReport(path)
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ImportFormatError(f"{path} is not the reference CSV: missing column(s) {', '.join(missing)}")
        write_reviews, write_anime = _review_writer(store, report), _anime_writer(store, report)
        reviews: list[tuple[int, Review]] = []
        anime: dict[int, tuple[int, Anime]] = {}
        for row in reader:
            report.rows += 1
            try:
                review, meta = records_from_csv_row(row, report)
            except BadRow as exc:
                report.bad.append((reader.line_num, str(exc)))
                continue
            reviews.append((reader.line_num, review))
            anime.setdefault(meta.anime_id, (reader.line_num, meta))
            if len(reviews) >= _BATCH:
                _write(list(anime.values()), write_anime, report)
                anime.clear()
                _write(reviews, write_reviews, report)
        _write(list(anime.values()), write_anime, report)
        _write(reviews, write_reviews, report)
    return report


def import_path(store: Store, path: str | Path) -> ImportReport:
    """Import a review file, choosing the format by extension (``.jsonl``/``.json`` or ``.csv``).

    Raises:
        FileNotFoundError: no such file.
        ImportFormatError: unsupported extension or CSV header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return import_reviews_jsonl(store, path)
    if suffix == ".csv":
        return import_reference_csv(store, path)
    raise ImportFormatError(f"cannot import {path.name}: expected .jsonl (reviews) or .csv (reference format)")
