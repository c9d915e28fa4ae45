"""What an index directory holds, loaded: vectors, row → review/anime maps, reviews, catalogue, BM25, synopses.

Loading reads small files, maps the large ones (review texts, BM25 postings)
and builds nothing: the first query costs what every query costs. Everything
here is read-only after loading, except a bounded cache of filter bitmaps, so one
:class:`IndexData` serves concurrent queries.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recommender.build import (
    ANIME_VECTOR_IDS,
    ANIME_VECTORS,
    CATALOG,
    CHUNKS,
    FORMAT_VERSION,
    LEXICAL_DIR,
    MANIFEST,
    REVIEWS,
    ROW_IDS,
    SYNOPSIS_IDS,
    SYNOPSIS_VECTORS,
    recover_interrupted_swap,
    synopsis_text,
)
from recommender.errors import IndexMismatchError, IndexNotFoundError
from recommender.filters import SearchFilters, labels, matches
from recommender.index import AllowedRows, VectorIndex
from recommender.lexical import LexicalIndex
from recommender.review_table import ReviewTable
from recommender.search_config import SearchConfig

log = logging.getLogger(__name__)

#: Distinct filter sets whose row bitmaps are kept (they come from users, so the cache is bounded).
FILTER_CACHE_SIZE = 256


def load_manifest(index_dir: Path) -> dict:
    """Read and sanity-check ``manifest.json``.

    Raises:
        IndexNotFoundError: the directory or a required file is missing or unreadable.
        IndexMismatchError: the index was written by an incompatible version of this code.
    """
    index_dir = Path(index_dir)
    recover_interrupted_swap(index_dir)
    path = index_dir / MANIFEST
    if not index_dir.is_dir():
        raise IndexNotFoundError(f"index not found: {index_dir} (build it with: python -m recommender build)")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise IndexNotFoundError(f"{index_dir} is not an index: no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise IndexNotFoundError(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise IndexMismatchError(
            f"{index_dir} has index format {found}; this code reads {FORMAT_VERSION}."
            " Rebuild it with: python -m recommender build --full"
        )
    for name in (ROW_IDS, CHUNKS, REVIEWS, CATALOG, LEXICAL_DIR):
        if not (index_dir / name).exists():
            raise IndexNotFoundError(f"{index_dir} is incomplete: {name} is missing; rebuild it")
    return manifest


@dataclass
class IndexData:
    """The loaded contents of one index directory (or of an in-memory index, see :meth:`from_parts`).

    Rows are vector rows (review chunks). Lexical passages are the rows, then
    the synopses in ``synopsis_ids`` order.
    """

    manifest: dict
    search: SearchConfig
    index: VectorIndex
    reviews: ReviewTable
    row_review: np.ndarray
    row_anime: np.ndarray
    row_start: np.ndarray
    row_end: np.ndarray
    catalog: dict[int, dict]
    lexical: LexicalIndex | None = None
    anime_vectors: np.ndarray | None = None
    anime_vector_ids: np.ndarray | None = None
    synopsis_vectors: np.ndarray | None = None
    synopsis_ids: np.ndarray | None = None
    directory: Path | None = None
    review_counts: dict[int, int] = field(init=False)
    row_negative: np.ndarray = field(init=False)
    _filter_cache: dict = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        anime, counts = np.unique(self.reviews.anime_ids, return_counts=True)
        #: Reviews of each anime in the index: what the popularity-corrected aggregations divide by.
        self.review_counts = {int(a): int(n) for a, n in zip(anime, counts, strict=True)}
        #: Per row: the chunk belongs to a negative review (see :mod:`recommender.verdict`).
        self.row_negative = self.reviews.negative_mask()[np.asarray(self.row_review, dtype=np.int64)]
        self.row_negative.setflags(write=False)
        order = np.argsort(self.row_anime, kind="stable")
        self._rows_by_anime = order
        self._anime_sorted = self.row_anime[order]
        if self.synopsis_ids is None or self.synopsis_vectors is None:
            self.synopsis_ids = np.zeros(0, np.int64)
            self.synopsis_vectors = np.zeros((0, self.index.dim), np.float32)
        keep = np.isin(self.synopsis_ids, anime)
        if not keep.all():
            raise IndexMismatchError("synopsis vectors of anime without reviews; rebuild the index")
        self._synopsis_anime_pos = {int(a): i for i, a in enumerate(self.synopsis_ids)}
        self._max_anime_id = int(max(anime.max(initial=0), self.synopsis_ids.max(initial=0)))
        self._filter_cache = {}
        self._lock = threading.Lock()
        self._labels = {a: labels(self.catalog.get(a, {})) for a in self.review_counts}
        for name, array in (("row_review", self.row_review), ("row_anime", self.row_anime),
                            ("row_start", self.row_start), ("row_end", self.row_end)):
            array.setflags(write=False)
            if len(array) != self.index.ntotal:
                raise IndexMismatchError(f"{name} has {len(array)} rows for {self.index.ntotal} vectors; rebuild it")
        if self.lexical is not None and self.lexical.size != self.index.ntotal + len(self.synopsis_ids):
            raise IndexMismatchError(f"the lexical index has {self.lexical.size} passages for {self.index.ntotal}"
                                     f" chunks and {len(self.synopsis_ids)} synopses; rebuild the index")

    @classmethod
    def load(cls, directory: str | Path, manifest: dict | None = None) -> IndexData:
        """Load an index directory written by ``python -m recommender build``.

        Raises:
            IndexNotFoundError: missing or incomplete index.
            IndexMismatchError: files that disagree with each other or with this code.
        """
        directory = Path(directory)
        manifest = manifest or load_manifest(directory)
        index = VectorIndex.load(directory, manifest["index"]["type"], manifest["index"].get("params"))
        if index.dim != manifest["dim"]:
            raise IndexMismatchError(f"{directory}: index.faiss has dim {index.dim}, manifest says {manifest['dim']}")
        row_ids = np.load(directory / ROW_IDS)
        if len(row_ids) != index.ntotal:
            raise IndexMismatchError(f"{directory}: {len(row_ids)} row ids for {index.ntotal} vectors; rebuild it")
        chunks = pd.read_parquet(directory / CHUNKS, columns=["chunk_id", "review_pos", "anime_id", "start", "end"])
        if not np.array_equal(chunks["chunk_id"].to_numpy(), row_ids):
            chunks = chunks.set_index("chunk_id").loc[row_ids].reset_index()
        catalog = {int(k): v for k, v in json.loads((directory / CATALOG).read_text()).items()}
        optional = {}
        for key, vectors, ids in (("anime", ANIME_VECTORS, ANIME_VECTOR_IDS),
                                  ("synopsis", SYNOPSIS_VECTORS, SYNOPSIS_IDS)):
            if (directory / vectors).exists():
                optional[f"{key}_vectors"] = np.load(directory / vectors)
                optional[f"{key}_ids"] = np.load(directory / ids).astype(np.int64)
        return cls(
            manifest=manifest,
            search=SearchConfig.from_dict(manifest.get("search")),
            index=index,
            reviews=ReviewTable.open(directory / REVIEWS),
            row_review=chunks["review_pos"].to_numpy(np.int64),
            row_anime=chunks["anime_id"].to_numpy(np.int64),
            row_start=chunks["start"].to_numpy(np.int64),
            row_end=chunks["end"].to_numpy(np.int64),
            catalog=catalog,
            lexical=LexicalIndex.load(directory / LEXICAL_DIR),
            anime_vectors=optional.get("anime_vectors"),
            anime_vector_ids=optional.get("anime_ids"),
            synopsis_vectors=optional.get("synopsis_vectors"),
            synopsis_ids=optional.get("synopsis_ids"),
            directory=directory,
        )

    # ---- rows, passages and text -----------------------------------------------------
    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def rows_of_anime(self, anime_id: int) -> np.ndarray:
        """Index rows of one anime's review chunks (ascending)."""
        lo, hi = np.searchsorted(self._anime_sorted, [anime_id, anime_id + 1])
        return np.sort(self._rows_by_anime[lo:hi])

    def rows_of_reviews(self, review_ids) -> np.ndarray:
        """Boolean row mask: the chunks of the given reviews (evaluation hides held-out reviews with it)."""
        wanted = np.isin(self.reviews.review_ids(), list(review_ids))
        return wanted[self.row_review]

    def chunk_text(self, row: int) -> str:
        """The text of the review chunk at index row ``row``."""
        text = self.reviews.text(self.row_review[row])
        return text[int(self.row_start[row]):int(self.row_end[row])]

    def synopsis_position(self, anime_id: int) -> int | None:
        """Position of an anime's synopsis among the synopsis vectors, or None."""
        return self._synopsis_anime_pos.get(int(anime_id))

    def synopsis(self, anime_id: int) -> str:
        return synopsis_text(self.catalog.get(int(anime_id), {}))

    def genre_labels(self, anime_id: int) -> set[str]:
        """Case-folded genres, themes and demographics of an anime (empty when unknown)."""
        known = self._labels.get(int(anime_id))
        return set(known) if known is not None else labels(self.catalog.get(int(anime_id), {}))

    # ---- filters ---------------------------------------------------------------------
    def allowed(self, filters: SearchFilters | None) -> Allowed:
        """What ``filters`` let a query return (rows and synopses of the anime they allow), cached per filter set."""
        filters = filters or SearchFilters()
        cached = self._filter_cache.get(filters)
        if cached is not None:
            return cached
        banned = [a for a in self.review_counts
                  if not matches(self.catalog.get(a, {}), filters, self._labels[a])]
        if banned:
            ok = np.ones(self._max_anime_id + 1, dtype=bool)  # anime id → allowed: one lookup per row
            ok[banned] = False
            result = Allowed(AllowedRows(ok[self.row_anime]), ok[self.synopsis_ids])
        else:
            result = Allowed()
        with self._lock:
            if len(self._filter_cache) >= FILTER_CACHE_SIZE:
                self._filter_cache.clear()
            self._filter_cache[filters] = result
        return result

    def allowed_rows_mask(self, mask: np.ndarray) -> Allowed:
        """Only the rows where ``mask`` is true, and the synopses of anime that keep at least one row."""
        mask = np.asarray(mask, dtype=bool)
        if mask.all():
            return Allowed()
        return Allowed(AllowedRows(mask), np.isin(self.synopsis_ids, np.unique(self.row_anime[mask])))


@dataclass(frozen=True)
class Allowed:
    """What one query may return: index rows (None: all) and synopses (boolean mask; None: all)."""

    rows: AllowedRows | None = None
    synopses: np.ndarray | None = None

    def synopsis_mask(self, count: int) -> np.ndarray:
        return np.ones(count, dtype=bool) if self.synopses is None else self.synopses

    def passage_mask(self, n_rows: int, n_synopses: int) -> np.ndarray | None:
        """Boolean mask over lexical passages (rows, then synopses), or None when all are allowed."""
        if self.rows is None and self.synopses is None:
            return None
        rows = np.ones(n_rows, dtype=bool) if self.rows is None else self.rows.mask
        return np.concatenate([rows, self.synopsis_mask(n_synopses)])
