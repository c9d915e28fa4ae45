"""Query-time core: one :class:`Recommender` holds the model, the index and the catalogue in memory."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recommender import config
from recommender.aggregate import AGGREGATIONS, AnimeScore, Hit, aggregate, best_hit_per_review
from recommender.build import (
    ANIME_VECTOR_IDS, ANIME_VECTORS, CATALOG, CHUNKS, FORMAT_VERSION, MANIFEST, REVIEWS, ROW_IDS,
    recover_interrupted_swap,
)
from recommender.encoder import Encoder
from recommender.errors import (
    IndexMismatchError, IndexNotFoundError, InvalidParameterError, InvalidQueryError, UnknownAggregationError,
    UnknownAnimeError,
)
from recommender.evidence import snippet
from recommender.index import VectorIndex
from recommender.results import AnimeResult, Evidence, SearchResponse
from scraping.models import review_url

log = logging.getLogger(__name__)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\ufeff\ufffd]")


def clean_query(query: object, max_chars: int = config.MAX_QUERY_CHARS) -> str:
    """Normalise a user's query: drop control characters, collapse whitespace, enforce a length cap.

    Raises:
        InvalidQueryError: not text, empty or blank after cleaning, or longer than ``max_chars``.
    """
    if not isinstance(query, str):
        raise InvalidQueryError("the query must be text")
    text = " ".join(_CONTROL.sub(" ", query).split())
    if not text:
        raise InvalidQueryError("the query is empty; describe what you want to watch")
    if len(text) > max_chars:
        raise InvalidQueryError(f"the query is {len(text)} characters long; the limit is {max_chars}")
    return text


def check_int(name: str, value: object, low: int, high: int) -> int:
    """Validate an integer parameter (accepts numeric strings).

    Raises:
        InvalidParameterError: not an integer, or outside ``[low, high]``.
    """
    if isinstance(value, bool):
        raise InvalidParameterError(f"{name} must be an integer")
    try:
        number = int(str(value).strip()) if not isinstance(value, int) else value
    except (TypeError, ValueError):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidParameterError(f"{name} must be between {low} and {high}, got {number}")
    return number


def load_manifest(index_dir: Path) -> dict:
    """Read and sanity-check ``manifest.json``.

    Raises:
        IndexNotFoundError: the directory or a required file is missing or unreadable.
        IndexMismatchError: the index was written by an incompatible version of this code.
    """
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
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"{index_dir} has index format {manifest.get('format_version')}; this code reads {FORMAT_VERSION}."
            " Rebuild it with: python -m recommender build"
        )
    for name in (ROW_IDS, CHUNKS, REVIEWS, CATALOG):
        if not (index_dir / name).exists():
            raise IndexNotFoundError(f"{index_dir} is incomplete: {name} is missing; rebuild it")
    return manifest


class Recommender:
    """Search reviews by meaning and recommend the anime behind them. Load with :meth:`Recommender.load`."""

    def __init__(self, encoder: Encoder, index: VectorIndex, manifest: dict, catalog: dict[int, dict],
                 chunks: pd.DataFrame, reviews: pd.DataFrame, row_chunk_ids: np.ndarray,
                 anime_vectors: np.ndarray | None = None, anime_vector_ids: np.ndarray | None = None,
                 index_dir: Path | None = None) -> None:
        self.encoder = encoder
        self.index = index
        self.manifest = manifest
        self.catalog = catalog
        self.index_dir = index_dir
        self.anime_vectors = anime_vectors
        self.anime_vector_ids = anime_vector_ids
        chunks = chunks.set_index("chunk_id").loc[row_chunk_ids]
        review_pos = pd.Index(reviews["review_id"]).get_indexer(chunks["review_id"])
        # Row-aligned numpy columns keep the per-query mapping from faiss rows to reviews vectorised.
        self._row_review = review_pos.astype(np.int64)
        self._row_anime = chunks["anime_id"].to_numpy(np.int64)
        self._row_start = chunks["start"].to_numpy(np.int64)
        self._row_end = chunks["end"].to_numpy(np.int64)
        self._review_ids = reviews["review_id"].astype(str).to_numpy()
        self._review_texts = reviews["text"].to_numpy()

    @classmethod
    def load(cls, index_dir: str | Path, model: str | None = None, device: str | None = None,
             encoder: Encoder | None = None) -> Recommender:
        """Load an index directory and the encoder it was built with.

        Args:
            index_dir: directory written by ``python -m recommender build``.
            model: override the model recorded in the manifest (must be the same weights).
            device: torch device for the query encoder.
            encoder: an already loaded encoder (shared between indexes in tests and benchmarks).

        Raises:
            IndexNotFoundError: missing or incomplete index.
            IndexMismatchError: the encoder differs from the one the index was built with.
        """
        index_dir = Path(index_dir)
        manifest = load_manifest(index_dir)
        if encoder is None:
            recorded = manifest["model"]
            choice = model or (recorded["path"] if Path(recorded["path"]).exists() else recorded["name"])
            encoder = Encoder.load(choice, device=device)
        if encoder.sha256 != manifest["model"]["sha256"] or encoder.dim != manifest["dim"]:
            raise IndexMismatchError(
                f"{index_dir} was built with model {manifest['model']['name']} ({manifest['dim']}-d,"
                f" sha {manifest['model']['sha256'][:12]}), but {encoder.name} ({encoder.dim}-d,"
                f" sha {encoder.sha256[:12]}) is loaded; rebuild the index or pass the right --model"
            )
        index = VectorIndex.load(index_dir, manifest["index"]["type"], manifest["index"].get("params"))
        if index.dim != manifest["dim"]:
            raise IndexMismatchError(f"{index_dir}: index.faiss has dim {index.dim}, manifest says {manifest['dim']}")
        catalog = {int(k): v for k, v in json.loads((index_dir / CATALOG).read_text()).items()}
        row_ids = np.load(index_dir / ROW_IDS)
        if len(row_ids) != index.ntotal:
            raise IndexMismatchError(f"{index_dir}: {len(row_ids)} row ids for {index.ntotal} vectors; rebuild it")
        anime_vectors = anime_ids = None
        if (index_dir / ANIME_VECTORS).exists():
            anime_vectors, anime_ids = np.load(index_dir / ANIME_VECTORS), np.load(index_dir / ANIME_VECTOR_IDS)
        return cls(encoder, index, manifest, catalog, pd.read_parquet(index_dir / CHUNKS),
                   pd.read_parquet(index_dir / REVIEWS), row_ids, anime_vectors, anime_ids, index_dir)

    # ---- query path --------------------------------------------------------------------
    def retrieve(self, query_vector: np.ndarray, top_n: int) -> list[Hit]:
        """The best ``top_n`` review chunks for one query vector, best first."""
        scores, rows = self.index.search(query_vector[None, :], top_n)
        scores, rows = scores[0], rows[0]
        keep = rows >= 0
        scores, rows = scores[keep], rows[keep]
        anime, review_ids = self._row_anime[rows], self._review_ids[self._row_review[rows]]
        return [Hit(int(anime[i]), float(scores[i]), i, review_ids[i], int(rows[i])) for i in range(len(rows))]

    def search(self, query: str, *, top_n: int = config.DEFAULT_TOP_N, limit: int = config.DEFAULT_LIMIT,
               offset: int = 0, aggregation: str = config.DEFAULT_AGGREGATION) -> SearchResponse:
        """Recommend anime for a free-text description.

        Args:
            query: what the user wants to watch.
            top_n: review chunks retrieved before aggregation.
            limit: anime returned.
            offset: anime skipped (paging).
            aggregation: name in :data:`recommender.aggregate.AGGREGATIONS`.

        Raises:
            InvalidQueryError, InvalidParameterError, UnknownAggregationError: bad input.
        """
        query = clean_query(query)
        top_n = check_int("top_n", top_n, 1, config.MAX_TOP_N)
        limit = check_int("limit", limit, 1, config.MAX_LIMIT)
        offset = check_int("offset", offset, 0, config.MAX_TOP_N)
        if aggregation not in AGGREGATIONS:
            raise UnknownAggregationError(
                f"unknown aggregation {aggregation!r}; choose from {', '.join(sorted(AGGREGATIONS))}"
            )
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = self.encoder.encode_query(query)
        t1 = time.perf_counter()
        hits = self.retrieve(vector, top_n)
        t2 = time.perf_counter()
        ranked = aggregate(best_hit_per_review(hits), aggregation)
        t3 = time.perf_counter()
        results = [self._result(entry, query) for entry in ranked[offset:offset + limit]]
        t4 = time.perf_counter()
        timing.update(encode=(t1 - t0) * 1e3, search=(t2 - t1) * 1e3, aggregate=(t3 - t2) * 1e3,
                      evidence=(t4 - t3) * 1e3, total=(t4 - t0) * 1e3)
        return SearchResponse(query=query, results=results, timing_ms=timing, total=len(ranked))

    def _result(self, entry: AnimeScore, query: str) -> AnimeResult:
        meta = self.catalog.get(entry.anime_id, {})
        evidence = []
        for hit in entry.hits[: config.EVIDENCE_PER_RESULT]:
            row = hit.row
            text = self._review_texts[self._row_review[row]]
            evidence.append(Evidence(
                review_id=hit.review_id, similarity=round(hit.similarity, 4),
                snippet=snippet(text, int(self._row_start[row]), int(self._row_end[row]), query, config.SNIPPET_CHARS),
                url=review_url(hit.review_id),
            ))
        return AnimeResult(
            anime_id=entry.anime_id,
            title=meta.get("title") or f"Anime {entry.anime_id}",
            url=meta.get("url") or f"https://myanimelist.net/anime/{entry.anime_id}",
            image_url=meta.get("image_url"),
            score=round(entry.score, 6),
            count=entry.count,
            evidence=evidence,
            mal_score=meta.get("score"),
            type=meta.get("type"),
            year=meta.get("year"),
            genres=list(meta.get("genres") or []),
        )

    # ---- catalogue ---------------------------------------------------------------------
    def anime(self, anime_id: int) -> dict:
        """Catalogue entry of an indexed anime (metadata plus ``review_count``).

        Raises:
            UnknownAnimeError: the anime has no reviews in this index.
        """
        try:
            return {"anime_id": int(anime_id), **self.catalog[int(anime_id)]}
        except (KeyError, ValueError, TypeError):
            raise UnknownAnimeError(f"anime {anime_id} is not in this index") from None

    def health(self) -> dict:
        """Counts and model of the loaded index."""
        return {
            "index": str(self.index_dir) if self.index_dir else None,
            "model": self.manifest["model"]["name"],
            "similarity": self.manifest["similarity"],
            "counts": dict(self.manifest["counts"]),
            "vectors": self.index.ntotal,
            "index_type": self.index.index_type,
        }
