"""SQLite review store: the only module that touches sqlite3.

One file holds anime metadata, reviews, MAL user recommendations and the crawl
state. Every write is an upsert keyed on the natural id, so importing or
crawling the same data twice adds nothing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scraping.models import Anime, Review, UserRecommendation

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS anime (
    anime_id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    title_english TEXT,
    url TEXT,
    image_url TEXT,
    type TEXT,
    episodes INTEGER,
    year INTEGER,
    season TEXT,
    score REAL,
    members INTEGER,
    genres TEXT NOT NULL DEFAULT '[]',
    themes TEXT NOT NULL DEFAULT '[]',
    demographics TEXT NOT NULL DEFAULT '[]',
    rating TEXT,
    nsfw INTEGER NOT NULL DEFAULT 0,
    synopsis TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reviews (
    review_id TEXT PRIMARY KEY,
    anime_id INTEGER NOT NULL,
    username TEXT,
    date TEXT,
    score INTEGER,
    tags TEXT NOT NULL DEFAULT '[]',
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_anime ON reviews(anime_id);
CREATE TABLE IF NOT EXISTS user_recs (
    anime_id INTEGER NOT NULL,
    rec_anime_id INTEGER NOT NULL,
    user_count INTEGER NOT NULL,
    rec_title TEXT,
    source TEXT NOT NULL,
    PRIMARY KEY (anime_id, rec_anime_id, source)
);
CREATE TABLE IF NOT EXISTS crawl_state (
    url TEXT PRIMARY KEY,
    kind TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS crawl_by_status ON crawl_state(status, kind);
"""

_ANIME_FIELDS = (
    "title", "title_english", "url", "image_url", "type", "episodes", "year", "season",
    "score", "members", "genres", "themes", "demographics", "rating", "nsfw", "synopsis",
)
_LIST_FIELDS = {"genres", "themes", "demographics"}
_REVIEW_FIELDS = ("anime_id", "username", "date", "score", "tags", "text", "source")


class StoreError(Exception):
    """The store file is missing, corrupt or of an unknown schema."""


@dataclass
class UpsertCounts:
    """How many records an upsert inserted, changed, or found already present."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def __iadd__(self, other: UpsertCounts) -> UpsertCounts:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        return self


def _anime_row(anime: Anime) -> dict:
    row = {name: getattr(anime, name) for name in _ANIME_FIELDS}
    for name in _LIST_FIELDS:
        row[name] = json.dumps(list(row[name] or []), ensure_ascii=False)
    row["nsfw"] = int(bool(row["nsfw"]))
    return row


def _anime_from_row(row: sqlite3.Row) -> Anime:
    values = {name: row[name] for name in _ANIME_FIELDS}
    for name in _LIST_FIELDS:
        values[name] = json.loads(values[name])
    values["nsfw"] = bool(values["nsfw"])
    return Anime(anime_id=row["anime_id"], **values)


def _review_row(review: Review) -> dict:
    return {
        "anime_id": review.anime_id,
        "username": review.username,
        "date": review.date,
        "score": review.score,
        "tags": json.dumps(list(review.tags or []), ensure_ascii=False),
        "text": review.text,
        "source": review.source,
    }


def _review_from_row(row: sqlite3.Row) -> Review:
    return Review(
        review_id=row["review_id"], anime_id=row["anime_id"], text=row["text"],
        username=row["username"], date=row["date"], score=row["score"],
        tags=json.loads(row["tags"]), source=row["source"],
    )


class Store:
    """Handle on one SQLite store file. Open it with :meth:`Store.open`."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True) -> Store:
        """Open (and, if ``create``, create) a store file, migrating its schema.

        Raises:
            StoreError: the file is missing (with ``create=False``), not SQLite, or newer than this code.
        """
        path = Path(path)
        if not create and not path.exists():
            raise StoreError(f"store not found: {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = cls._schema_version(db)
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(f"{path} has schema version {version}; this code reads up to {SCHEMA_VERSION}")
            with db:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a readable review store: {exc}") from exc
        return cls(path, db)

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> int | None:
        has_meta = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if not has_meta:
            return None
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return int(row[0]) if row else None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- anime -------------------------------------------------------------------------
    def upsert_anime(self, records: Iterable[Anime]) -> UpsertCounts:
        """Insert or merge anime; a known field is never overwritten by an unknown (null/empty) one."""
        counts = UpsertCounts()
        now = time.time()
        with self._db:
            for anime in records:
                new = _anime_row(anime)
                old = self._db.execute("SELECT * FROM anime WHERE anime_id=?", (anime.anime_id,)).fetchone()
                if old is None:
                    cols = ", ".join(_ANIME_FIELDS)
                    marks = ", ".join(f":{name}" for name in _ANIME_FIELDS)
                    self._db.execute(
                        f"INSERT INTO anime (anime_id, {cols}, updated_at) VALUES (:anime_id, {marks}, :now)",
                        {**new, "anime_id": anime.anime_id, "now": now},
                    )
                    counts.inserted += 1
                    continue
                merged = {}
                for name in _ANIME_FIELDS:
                    value = new[name]
                    unknown = (value is None or (name in _LIST_FIELDS and value == "[]")
                               or (name == "nsfw" and not value))
                    merged[name] = old[name] if unknown else value
                if all(merged[name] == old[name] for name in _ANIME_FIELDS):
                    counts.unchanged += 1
                    continue
                sets = ", ".join(f"{name}=:{name}" for name in _ANIME_FIELDS)
                self._db.execute(
                    f"UPDATE anime SET {sets}, updated_at=:now WHERE anime_id=:anime_id",
                    {**merged, "anime_id": anime.anime_id, "now": now},
                )
                counts.updated += 1
        return counts

    def ensure_anime(self, anime_id: int, title: str | None) -> None:
        """Create a title-only stub for an anime that reviews refer to, if it is not known yet."""
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO anime (anime_id, title, url, updated_at) VALUES (?, ?, ?, ?)",
                (int(anime_id), title or f"Anime {anime_id}", Anime(anime_id, "").url, time.time()),
            )

    def get_anime(self, anime_id: int) -> Anime | None:
        row = self._db.execute("SELECT * FROM anime WHERE anime_id=?", (int(anime_id),)).fetchone()
        return _anime_from_row(row) if row else None

    def iter_anime(self) -> Iterator[Anime]:
        for row in self._db.execute("SELECT * FROM anime ORDER BY anime_id"):
            yield _anime_from_row(row)

    def count_anime(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM anime").fetchone()[0]

    # ---- reviews -----------------------------------------------------------------------
    def upsert_reviews(self, records: Iterable[Review]) -> UpsertCounts:
        """Insert new reviews and update changed ones (same review id, different content)."""
        counts = UpsertCounts()
        now = time.time()
        with self._db:
            for review in records:
                new = _review_row(review)
                old = self._db.execute("SELECT * FROM reviews WHERE review_id=?", (review.review_id,)).fetchone()
                if old is None:
                    self._db.execute(
                        "INSERT INTO reviews (review_id, anime_id, username, date, score, tags, text, source,"
                        " updated_at) VALUES (:review_id, :anime_id, :username, :date, :score, :tags, :text,"
                        " :source, :now)",
                        {**new, "review_id": review.review_id, "now": now},
                    )
                    counts.inserted += 1
                elif any(new[name] != old[name] for name in _REVIEW_FIELDS):
                    sets = ", ".join(f"{name}=:{name}" for name in _REVIEW_FIELDS)
                    self._db.execute(
                        f"UPDATE reviews SET {sets}, updated_at=:now WHERE review_id=:review_id",
                        {**new, "review_id": review.review_id, "now": now},
                    )
                    counts.updated += 1
                else:
                    counts.unchanged += 1
        return counts

    def iter_reviews(self, anime_ids: Iterable[int] | None = None) -> Iterator[Review]:
        """All reviews (or those of ``anime_ids``) in review-id order."""
        if anime_ids is None:
            cursor = self._db.execute("SELECT * FROM reviews ORDER BY review_id")
        else:
            ids = sorted({int(a) for a in anime_ids})
            marks = ",".join("?" * len(ids))
            cursor = self._db.execute(f"SELECT * FROM reviews WHERE anime_id IN ({marks}) ORDER BY review_id", ids)
        for row in cursor:
            yield _review_from_row(row)

    def known_review_ids(self, review_ids: Iterable[str]) -> set[str]:
        """Those of ``review_ids`` that the store already holds."""
        ids = sorted({str(r) for r in review_ids})
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        return {row[0] for row in self._db.execute(f"SELECT review_id FROM reviews WHERE review_id IN ({marks})", ids)}

    def get_review(self, review_id: str) -> Review | None:
        row = self._db.execute("SELECT * FROM reviews WHERE review_id=?", (str(review_id),)).fetchone()
        return _review_from_row(row) if row else None

    def count_reviews(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM reviews").fetchone()[0]

    def reviews_per_source(self) -> dict[str, int]:
        rows = self._db.execute("SELECT source, COUNT(*) FROM reviews GROUP BY source ORDER BY source")
        return {source: n for source, n in rows}

    def review_counts_by_anime(self) -> dict[int, int]:
        rows = self._db.execute("SELECT anime_id, COUNT(*) FROM reviews GROUP BY anime_id")
        return {anime_id: n for anime_id, n in rows}

    def reviews_checksum(self) -> str:
        """A sha256 over every review's id, anime and text: changes whenever the indexed content would."""
        digest = hashlib.sha256()
        for review_id, anime_id, text in self._db.execute(
            "SELECT review_id, anime_id, text FROM reviews ORDER BY review_id"
        ):
            digest.update(f"{review_id}\x1f{anime_id}\x1f{text}\x1e".encode())
        return digest.hexdigest()

    # ---- user recommendations ----------------------------------------------------------
    def upsert_user_recs(self, records: Iterable[UserRecommendation]) -> UpsertCounts:
        counts = UpsertCounts()
        with self._db:
            for rec in records:
                key = (int(rec.anime_id), int(rec.rec_anime_id), rec.source)
                old = self._db.execute(
                    "SELECT user_count, rec_title FROM user_recs WHERE anime_id=? AND rec_anime_id=? AND source=?",
                    key,
                ).fetchone()
                if old is None:
                    self._db.execute("INSERT INTO user_recs VALUES (?, ?, ?, ?, ?)",
                                     (*key[:2], int(rec.user_count), rec.rec_title, rec.source))
                    counts.inserted += 1
                elif (old["user_count"], old["rec_title"]) != (int(rec.user_count), rec.rec_title):
                    self._db.execute(
                        "UPDATE user_recs SET user_count=?, rec_title=?"
                        " WHERE anime_id=? AND rec_anime_id=? AND source=?",
                        (int(rec.user_count), rec.rec_title, *key),
                    )
                    counts.updated += 1
                else:
                    counts.unchanged += 1
        return counts

    def user_recs(self, anime_id: int | None = None) -> list[UserRecommendation]:
        if anime_id is None:
            rows = self._db.execute("SELECT * FROM user_recs ORDER BY anime_id, user_count DESC, rec_anime_id")
        else:
            rows = self._db.execute(
                "SELECT * FROM user_recs WHERE anime_id=? ORDER BY user_count DESC, rec_anime_id", (int(anime_id),)
            )
        return [
            UserRecommendation(r["anime_id"], r["rec_anime_id"], r["user_count"], r["rec_title"], r["source"])
            for r in rows
        ]

    # ---- crawl state -------------------------------------------------------------------
    def mark_url(self, url: str, status: str, *, kind: str | None = None, error: str | None = None,
                 count_attempt: bool = False) -> None:
        """Record a URL's crawl status (pending/done/failed); ``count_attempt`` adds one to its attempts."""
        with self._db:
            self._db.execute(
                "INSERT INTO crawl_state (url, kind, status, attempts, last_error, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(url) DO UPDATE SET"
                " kind=COALESCE(excluded.kind, crawl_state.kind), status=excluded.status,"
                " attempts=crawl_state.attempts + excluded.attempts, last_error=excluded.last_error,"
                " updated_at=excluded.updated_at",
                (url, kind, status, int(count_attempt), error, time.time()),
            )

    def url_status(self, url: str) -> str | None:
        row = self._db.execute("SELECT status FROM crawl_state WHERE url=?", (url,)).fetchone()
        return row[0] if row else None

    def urls_with_status(self, status: str, kind: str | None = None) -> list[str]:
        if kind is None:
            rows = self._db.execute("SELECT url FROM crawl_state WHERE status=? ORDER BY url", (status,))
        else:
            rows = self._db.execute(
                "SELECT url FROM crawl_state WHERE status=? AND kind=? ORDER BY url", (status, kind)
            )
        return [r[0] for r in rows]

    def crawl_failures(self) -> list[tuple[str, int, str | None]]:
        rows = self._db.execute(
            "SELECT url, attempts, last_error FROM crawl_state WHERE status='failed' ORDER BY url"
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def crawl_counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) FROM crawl_state GROUP BY status")
        return {status: n for status, n in rows}

    def done_url_times(self, kinds: Iterable[str]) -> list[tuple[str, float]]:
        """``(url, when it was last done)`` for every done URL of these kinds."""
        kinds = sorted(set(kinds))
        marks = ",".join("?" * len(kinds))
        rows = self._db.execute(
            f"SELECT url, updated_at FROM crawl_state WHERE status='done' AND kind IN ({marks})", kinds)
        return [(r[0], r[1]) for r in rows]

    def requeue_urls(self, items: Iterable[tuple[str, str | None]]) -> int:
        """Add ``(url, kind)`` pairs as pending on top of the queue even when they were crawled before (a refresh
        re-reads listings that change); returns how many."""
        added = 0
        now = time.time()
        with self._db:
            for url, kind in items:
                self._db.execute("DELETE FROM crawl_state WHERE url=?", (url,))
                self._db.execute(
                    "INSERT INTO crawl_state (url, kind, status, attempts, last_error, updated_at)"
                    " VALUES (?, ?, 'pending', 0, NULL, ?)",
                    (url, kind, now),
                )
                added += 1
        return added

    def enqueue_urls(self, items: Iterable[tuple[str, str | None]]) -> int:
        """Add ``(url, kind)`` pairs as pending, in order and in one transaction, skipping URLs the crawl
        already knows (in any status); returns how many were added."""
        added = 0
        now = time.time()
        with self._db:
            for url, kind in items:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO crawl_state (url, kind, status, attempts, last_error, updated_at)"
                    " VALUES (?, ?, 'pending', 0, NULL, ?)",
                    (url, kind, now),
                )
                added += cursor.rowcount
        return added

    def next_pending_url(self) -> tuple[str, str | None] | None:
        """The most recently enqueued pending URL and its kind (the crawl is a stack: depth first), or None."""
        row = self._db.execute(
            "SELECT url, kind FROM crawl_state WHERE status='pending' ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1]) if row else None

    def reset_failed_urls(self) -> int:
        """Set every failed URL back to pending (keeping its attempts and last error); returns how many."""
        with self._db:
            cursor = self._db.execute(
                "UPDATE crawl_state SET status='pending', updated_at=? WHERE status='failed'", (time.time(),)
            )
        return cursor.rowcount
