"""The reviews of an index (id, anime, author, verdict, text), memory-mapped from an Arrow IPC file.

Search shows a few snippets per query, so the review texts stay on disk: the
file is mapped, not read, and only the pages of the reviews a query quotes are
touched. Loading costs milliseconds and no heap, whatever the corpus size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from recommender.errors import IndexNotFoundError
from recommender.verdict import NEGATIVE_MAX_SCORE, NOT_RECOMMENDED

SCHEMA = pa.schema([
    ("review_id", pa.string()),
    ("anime_id", pa.int64()),
    ("username", pa.string()),
    ("date", pa.string()),
    ("score", pa.int32()),
    ("tags", pa.string()),  # JSON list, e.g. '["Recommended"]'
    ("text", pa.large_string()),
])


def write_review_table(path: Path, reviews) -> None:
    """Write ``reviews`` (``scraping.models.Review``-like objects, in index order) as an uncompressed Arrow file.

    Uncompressed and in one record batch, so that a reader can map it and reach any row without copying.
    """
    rows = list(reviews)
    columns = {
        "review_id": [str(r.review_id) for r in rows],
        "anime_id": [int(r.anime_id) for r in rows],
        "username": [r.username for r in rows],
        "date": [r.date for r in rows],
        "score": [r.score for r in rows],
        "tags": [json.dumps(list(r.tags or []), ensure_ascii=False) for r in rows],
        "text": [r.text for r in rows],
    }
    table = pa.table(columns, schema=SCHEMA)
    with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, SCHEMA) as writer:
        writer.write_table(table, max_chunksize=max(1, len(rows)))


class ReviewTable:
    """Read-only view of the reviews written by :func:`write_review_table`. Open with :meth:`open`.

    Position ``i`` is the ``i``-th review written; chunk rows refer to reviews by position.
    """

    def __init__(self, table: pa.Table) -> None:
        table = table.combine_chunks()
        self._table = table
        self._ids = table.column("review_id").chunk(0) if table.num_rows else pa.array([], pa.string())
        #: Ids as Python strings (a few MB even at 163k reviews): every query needs a few hundred of them.
        self._id_array = np.asarray(self._ids.to_pylist(), dtype=object)
        self._text = table.column("text").chunk(0) if table.num_rows else pa.array([], pa.large_string())
        #: Anime of every review (small: kept as an array for counting and masking).
        self.anime_ids = table.column("anime_id").to_numpy().astype(np.int64) if table.num_rows else np.zeros(0, int)

    @classmethod
    def open(cls, path: Path) -> ReviewTable:
        """Map the file; nothing is read until a row is asked for.

        Raises:
            IndexNotFoundError: missing or not an Arrow file of reviews.
        """
        try:
            source = pa.memory_map(str(path), "r")
            table = ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise IndexNotFoundError(f"cannot read the review table {path}: {exc}") from exc
        missing = set(SCHEMA.names) - set(table.column_names)
        if missing:
            raise IndexNotFoundError(f"{path} lacks columns {', '.join(sorted(missing))}; rebuild the index")
        return cls(table)

    @classmethod
    def from_reviews(cls, reviews) -> ReviewTable:
        """An in-memory table (tests, training-time evaluation)."""
        rows = list(reviews)
        return cls(pa.table({
            "review_id": [str(r.review_id) for r in rows], "anime_id": [int(r.anime_id) for r in rows],
            "username": [getattr(r, "username", None) for r in rows], "date": [getattr(r, "date", None) for r in rows],
            "score": [getattr(r, "score", None) for r in rows],
            "tags": [json.dumps(list(getattr(r, "tags", None) or [])) for r in rows], "text": [r.text for r in rows],
        }, schema=SCHEMA))

    def __len__(self) -> int:
        return self._table.num_rows

    def review_id(self, position: int) -> str:
        return self._id_array[int(position)]

    def text(self, position: int) -> str:
        return self._text[int(position)].as_py()

    def take_ids(self, positions: np.ndarray) -> list[str]:
        """The ids of the reviews at ``positions``."""
        return self._id_array[np.asarray(positions, dtype=np.int64)].tolist()

    def review_ids(self) -> np.ndarray:
        """Every review id, in position order (evaluation reads them all; search never does)."""
        return self._id_array.copy()

    def texts(self) -> list[str]:
        """Every text (evaluation only: this reads the whole file)."""
        return self._text.to_pylist()

    def negative_mask(self) -> np.ndarray:
        """Per review position: negative by :func:`recommender.verdict.is_negative` (one vectorised pass)."""
        if not len(self):
            return np.zeros(0, dtype=bool)
        low = pc.fill_null(pc.less_equal(self._table.column("score"), NEGATIVE_MAX_SCORE), False)
        tagged = pc.fill_null(pc.match_substring(self._table.column("tags"), json.dumps(NOT_RECOMMENDED)), False)
        return np.asarray(pc.or_(low, tagged).to_numpy(zero_copy_only=False), dtype=bool)

    def verdict(self, position: int) -> tuple[int | None, list[str]]:
        """The reviewer's score (1–10, None when unknown) and tags."""
        row = int(position)
        score = self._table.column("score")[row].as_py()
        tags = self._table.column("tags")[row].as_py()
        return score, (json.loads(tags) if tags else [])
