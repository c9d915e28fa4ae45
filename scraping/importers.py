"""Import existing review dumps (our JSONL format, the reference system's CSV) and anime metadata into the store.

Rows are parsed by pure functions that raise :class:`BadRow`; the importer
counts and reports bad rows instead of stopping, and writes in batches.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from scraping.models import Anime, Review
from scraping.store import Store, UpsertCounts

log = logging.getLogger(__name__)

ADULT_GENRES = frozenset({"Hentai", "Erotica"})
CSV_COLUMNS = ("Anime Title", "Review", "MAL Link", "Image URL")
_MAL_ANIME_LINK = re.compile(r"myanimelist\.net/anime/(\d+)")
_BATCH = 1000
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

    def summary(self) -> str:
        r, a = self.reviews, self.anime
        return (
            f"{self.path.name}: {self.rows} rows read; reviews {r.inserted} new, {r.updated} updated,"
            f" {r.unchanged} unchanged; anime {a.inserted} new, {a.updated} updated, {a.unchanged} unchanged;"
            f" {len(self.bad)} bad rows skipped"
        )


def _optional_int(value: object, name: str, low: int | None = None, high: int | None = None) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(float(value)) if not isinstance(value, bool) else None
    except (TypeError, ValueError):
        raise BadRow(f"{name} is not a number: {value!r}") from None
    if number is None:
        raise BadRow(f"{name} is not a number: {value!r}")
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return number


def _required_int(value: object, name: str) -> int:
    number = _optional_int(value, name)
    if number is None or number <= 0:
        raise BadRow(f"{name} is missing or not a positive integer: {value!r}")
    return number


def _string_list(value: object, name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRow(f"{name} must be a list of strings")
    return value


def review_from_json(obj: object) -> Review:
    """One review from a JSONL object (fields of ``../shared/data/reviews.jsonl``).

    Raises:
        BadRow: not an object, no review id, no usable anime id, or no text.
    """
    if not isinstance(obj, dict):
        raise BadRow("not a JSON object")
    review_id = obj.get("review_id")
    if review_id is None or not str(review_id).strip():
        raise BadRow("review_id is missing")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRow("text is missing or empty")
    return Review(
        review_id=str(review_id).strip(),
        anime_id=_required_int(obj.get("anime_id"), "anime_id"),
        text=text.strip(),
        username=obj.get("username") or None,
        date=obj.get("date") or None,
        score=_optional_int(obj.get("score"), "score", 1, 10),
        tags=_string_list(obj.get("tags"), "tags"),
        source=str(obj.get("source") or "jsonl"),
        anime_title=obj.get("anime_title") or None,
    )


def anime_from_json(obj: object) -> Anime:
    """One anime from a JSONL object (fields of ``../shared/data/anime.jsonl``).

    Raises:
        BadRow: not an object, no anime id or no title.
    """
    if not isinstance(obj, dict):
        raise BadRow("not a JSON object")
    anime_id = _required_int(obj.get("anime_id"), "anime_id")
    title = obj.get("title")
    if not isinstance(title, str) or not title.strip():
        raise BadRow("title is missing")
    genres = _string_list(obj.get("genres"), "genres")
    rating = obj.get("rating") or None
    score = obj.get("score")
    try:
        score = float(score) if score not in (None, "") else None
    except (TypeError, ValueError):
        raise BadRow(f"score is not a number: {score!r}") from None
    return Anime(
        anime_id=anime_id,
        title=title.strip(),
        title_english=obj.get("title_english") or None,
        url=obj.get("url") or None,
        image_url=obj.get("image_url") or None,
        type=obj.get("type") or None,
        episodes=_optional_int(obj.get("episodes"), "episodes", 0),
        year=_optional_int(obj.get("year"), "year", 1900, 2100),
        season=obj.get("season") or None,
        score=score,
        members=_optional_int(obj.get("members"), "members", 0),
        genres=genres,
        themes=_string_list(obj.get("themes"), "themes"),
        demographics=_string_list(obj.get("demographics"), "demographics"),
        rating=rating,
        nsfw=bool(obj.get("nsfw")) or bool(ADULT_GENRES & set(genres)) or str(rating or "").startswith("Rx"),
        synopsis=obj.get("synopsis") or None,
    )


def anime_id_from_link(link: str) -> int:
    """The MAL id in an anime URL such as ``https://myanimelist.net/anime/1/Cowboy_Bebop``.

    Raises:
        BadRow: no anime id in the link.
    """
    match = _MAL_ANIME_LINK.search(link or "")
    if not match:
        raise BadRow(f"MAL Link has no anime id: {link!r}")
    return int(match.group(1))


def csv_review_id(anime_id: int, text: str) -> str:
    """Stable id for a CSV review (the reference CSV has none): sha1 of the anime and normalised text."""
    normalised = " ".join(text.split())
    return hashlib.sha1(f"refcsv|{anime_id}|{normalised}".encode()).hexdigest()


def records_from_csv_row(row: dict[str, str]) -> tuple[Review, Anime]:
    """A review and its anime from one row of the reference system's CSV.

    Raises:
        BadRow: no usable MAL link, empty review or empty title.
    """
    anime_id = anime_id_from_link(row.get("MAL Link") or "")
    text = (row.get("Review") or "").strip()
    title = (row.get("Anime Title") or "").strip()
    if not text:
        raise BadRow("Review is empty")
    if not title:
        raise BadRow("Anime Title is empty")
    anime = Anime(anime_id=anime_id, title=title, image_url=(row.get("Image URL") or "").strip() or None)
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


def _flush_reviews(store: Store, batch: list[Review], report: ImportReport) -> None:
    for review in batch:
        store.ensure_anime(review.anime_id, review.anime_title)
    report.reviews += store.upsert_reviews(batch)
    batch.clear()


def _import_jsonl(path: Path, parse: Callable[[object], T], flush: Callable[[list[T], ImportReport], None]
                  ) -> ImportReport:
    """Parse a JSONL file row by row, handing batches of records to ``flush`` and counting bad rows."""
    report = ImportReport(path)
    batch: list[T] = []
    for line_no, obj in _jsonl_objects(path, report):
        try:
            batch.append(parse(obj))
        except BadRow as exc:
            report.bad.append((line_no, str(exc)))
        if len(batch) >= _BATCH:
            flush(batch, report)
            batch.clear()
    flush(batch, report)
    return report


def import_reviews_jsonl(store: Store, path: Path) -> ImportReport:
    """Import reviews from JSONL; unknown anime get title-only stubs."""
    return _import_jsonl(path, review_from_json, lambda batch, report: _flush_reviews(store, batch, report))


def import_anime_jsonl(store: Store, path: Path) -> ImportReport:
    """Import anime metadata from JSONL, merging with what the store knows."""

    def flush(batch: list[Anime], report: ImportReport) -> None:
        report.anime += store.upsert_anime(batch)

    return _import_jsonl(path, anime_from_json, flush)


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
        reviews: list[Review] = []
        anime: dict[int, Anime] = {}
        for row in reader:
            report.rows += 1
            try:
                review, meta = records_from_csv_row(row)
            except BadRow as exc:
                report.bad.append((reader.line_num, str(exc)))
                continue
            reviews.append(review)
            anime.setdefault(meta.anime_id, meta)
            if len(reviews) >= _BATCH:
                report.anime += store.upsert_anime(anime.values())
                anime.clear()
                _flush_reviews(store, reviews, report)
        report.anime += store.upsert_anime(anime.values())
        _flush_reviews(store, reviews, report)
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
