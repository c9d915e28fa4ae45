"""Query-time facade: :class:`Recommender` answers queries over one loaded index with one encoder.

The parts live in their own modules: :mod:`recommender.index_data` (the loaded
files), :mod:`recommender.retrieval` (dense + lexical + synopsis candidates),
:mod:`recommender.fusion` and :mod:`recommender.aggregate` (ranking),
:mod:`recommender.explain` (evidence). How an index is meant to be searched is
one :class:`~recommender.search_config.SearchConfig`, read from its manifest.

A :class:`Recommender` holds no per-query state: it is safe to call from many
threads at once (the API does), and nothing is built on the first query.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from recommender import config
from recommender.aggregate import (
    AGGREGATIONS,
    AnimeScore,
    Hit,
    aggregate,
    aggregate_with_dislikes,
    best_hit_per_review,
)
from recommender.backends import manifest_backend
from recommender.encoder import Encoder, load_query_encoder
from recommender.errors import (
    IndexMismatchError,
    IndexNotFoundError,
    InvalidParameterError,
    UnknownAnimeError,
)
from recommender.explain import EvidenceFinder
from recommender.filters import SearchFilters, matches
from recommender.index import set_threads
from recommender.index_data import Allowed, IndexData, load_manifest
from recommender.results import AnimeResult, SearchResponse
from recommender.retrieval import Retriever, negative_intent, similarity_unit
from recommender.search_config import SearchConfig
from recommender.validation import check_aggregation, check_int, clean_query

log = logging.getLogger(__name__)


class Recommender:
    """Search reviews by meaning and recommend the anime behind them. Load with :meth:`Recommender.load`.

    Args:
        data: the loaded index directory.
        encoder: the model the index was built with (it encodes the queries).
        settings: how to search (default: what the index's manifest records).
    """

    def __init__(self, data: IndexData, encoder: Encoder, settings: SearchConfig | None = None) -> None:
        self.data = data
        self.encoder = encoder
        self.settings = settings or data.search
        self.retriever = Retriever(data)
        self.evidence = EvidenceFinder(data)
        self._rerankers: dict[str, object] = {}
        self._reranker_lock = threading.Lock()  # loads an optional model once, whichever request asks first

    @classmethod
    def load(cls, index_dir: str | Path, model: str | None = None, device: str | None = None,
             encoder: Encoder | None = None, threads: int | None = config.SERVE_THREADS) -> Recommender:
        """Load an index directory and the encoder it was built with.

        Args:
            index_dir: directory written by ``python -m recommender build``.
            model: override the model recorded in the manifest (must be the same weights).
            device: torch device for the query encoder.
            encoder: an already loaded encoder (shared between indexes in tests and benchmarks).
            threads: CPU threads per query for the encoder and the index search (None leaves the libraries'
                defaults).

        Raises:
            IndexNotFoundError: missing or incomplete index.
            IndexMismatchError: the encoder differs from the one the index was built with.
        """
        index_dir = Path(index_dir)
        manifest = load_manifest(index_dir)
        if encoder is None:
            encoder = load_query_encoder(manifest["model"], manifest_backend(manifest), model=model, device=device)
        if threads:
            set_serving_threads(threads)
        if encoder.sha256 != manifest["model"]["sha256"] or encoder.dim != manifest["dim"]:
            raise IndexMismatchError(
                f"{index_dir} was built with model {manifest['model']['name']} ({manifest['dim']}-d,"
                f" sha {manifest['model']['sha256'][:12]}), but {encoder.name} ({encoder.dim}-d,"
                f" sha {encoder.sha256[:12]}) is loaded; rebuild the index or pass the right --model"
            )
        data = IndexData.load(index_dir, manifest)
        encoder.encode(["warm up"], batch_size=1)  # runtimes compile kernels on their first call: not the user's
        return cls(data, encoder)

    def with_settings(self, **changes: object) -> Recommender:
        """The same index and encoder searched with some settings changed (evaluation, benchmarks)."""
        return Recommender(self.data, self.encoder, self.settings.replace(**changes))

    # ---- what the index holds ----------------------------------------------------------
    @property
    def manifest(self) -> dict:
        return self.data.manifest

    @property
    def catalog(self) -> dict[int, dict]:
        return self.data.catalog

    @property
    def review_counts(self) -> dict[int, int]:
        return self.data.review_counts

    @property
    def index(self):
        return self.data.index

    @property
    def index_dir(self) -> Path | None:
        return self.data.directory

    # ---- retrieval and ranking (one query or a batch; evaluation uses these) -------------
    def allowed(self, filters: SearchFilters | None) -> Allowed:
        """What ``filters`` let a query return (cached per filter set)."""
        if filters is not None and not isinstance(filters, SearchFilters):
            raise InvalidParameterError("filters must be a SearchFilters")
        return self.data.allowed(filters)

    def hits(self, queries: list[str], vectors: np.ndarray, top_n: int | None = None, allowed: Allowed | None = None,
             aggregation: str | None = None) -> list[list[Hit]]:
        """What ``aggregation`` ranks for each query: the dense top N for ``count`` (the reference vote),
        else dense, lexical and synopsis candidates fused (see :mod:`recommender.fusion`).

        Args:
            queries: the query texts (for BM25).
            vectors: their embeddings, one row each.
            top_n: passages retrieved by similarity (default: the settings').
            allowed: what may be returned (filters, held-out reviews); None: everything.
            aggregation: the aggregation the hits are for (default: the settings').
        """
        settings = self.settings if top_n is None else self.settings.replace(top_n=int(top_n))
        aggregation = aggregation or settings.aggregation
        allowed = allowed or Allowed()
        vectors = np.atleast_2d(vectors)
        dense = self.retriever.dense(vectors, settings.top_n, allowed)
        if aggregation == "count":
            return [self.retriever.dense_hits(d, similarity_unit(v, settings)) for v, d in zip(vectors, dense,
                                                                                              strict=True)]
        return [self.retriever.fused_hits(q, v, d, allowed, settings)
                for q, v, d in zip(queries, vectors, dense, strict=True)]

    def rank(self, hits: list[Hit], aggregation: str | None = None, review_counts: dict[int, int] | None = None,
             query: str = "", deduplicated: bool = False) -> list[AnimeScore]:
        """Aggregate one query's hits into ranked anime (``hits_per_review`` hits per review, popularity from
        the index). ``count`` is the reference vote: one hit per review, verdicts ignored.

        ``deduplicated``: the hits already hold one passage per review, ranked 0.. in order (what the
        retriever gives when asked, without making a :class:`Hit` per passage).
        """
        settings = self.settings
        aggregation = aggregation or settings.aggregation
        params = dict(review_counts=self.review_counts if review_counts is None else review_counts,
                      **settings.aggregation_params(aggregation))
        per_review = 1 if aggregation == "count" else settings.hits_per_review
        if not (deduplicated and per_review == 1):
            hits = best_hit_per_review(hits, per_review)
        if aggregation != "count" and settings.dislike_weight > 0 and not negative_intent(query, settings):
            return aggregate_with_dislikes(hits, aggregation, settings.dislike_weight, **params)
        return aggregate(hits, aggregation, **params)

    # ---- query path --------------------------------------------------------------------
    def search(self, query: str, *, top_n: int | None = None, limit: int = config.DEFAULT_LIMIT,
               offset: int = 0, aggregation: str | None = None, filters: SearchFilters | None = None,
               rerank: bool | str = False) -> SearchResponse:
        """Recommend anime for a free-text description.

        Args:
            query: what the user wants to watch.
            top_n: review passages retrieved by similarity before aggregation, among the anime the
                filters allow (default: the index's search settings).
            limit: anime returned.
            offset: anime skipped (paging).
            aggregation: name in :data:`recommender.aggregate.AGGREGATIONS` (default: the index's).
            filters: which anime may appear; None hides adult titles only.
            rerank: re-score the best passages with a cross-encoder: True for the default model
                (``config.RERANK_MODEL``), or a model name or directory.

        Returns:
            The page of results; ``total`` is the number of anime ranked after filters.

        Raises:
            InvalidQueryError, InvalidParameterError, UnknownAggregationError: bad input.
            ModelNotFoundError: the reranker cannot be loaded.
        """
        query = clean_query(query)
        top_n = check_int("top_n", self.settings.top_n if top_n is None else top_n, 1, config.MAX_TOP_N)
        limit = check_int("limit", limit, 1, config.MAX_LIMIT)
        offset = check_int("offset", offset, 0, config.MAX_TOP_N)
        aggregation = check_aggregation(aggregation or self.settings.aggregation, AGGREGATIONS)
        allowed = self.allowed(filters)
        reranker = self.reranker(rerank) if rerank else None
        settings = self.settings.replace(top_n=top_n)
        t0 = time.perf_counter()
        vector = self.encoder.encode_query(query)
        t1 = time.perf_counter()
        dense = self.retriever.dense(vector, top_n, allowed)[0]
        t2 = time.perf_counter()
        # One passage per review picked on arrays, unless a reranker must see every passage or the
        # settings let several passages of one review vote.
        deduplicated = reranker is None and (aggregation == "count" or settings.hits_per_review == 1)
        if aggregation == "count":
            hits = self.retriever.dense_hits(dense, similarity_unit(vector, settings), deduplicated)
        else:
            hits = self.retriever.fused_hits(query, vector, dense, allowed, settings, deduplicated)
        t3 = time.perf_counter()
        if reranker is not None:
            hits = reranker.rerank(query, hits, self.hit_text)
        t4 = time.perf_counter()
        ranked = self.rank(hits, aggregation, query=query, deduplicated=deduplicated)
        t5 = time.perf_counter()
        results = [self._result(entry, query, vector, negative_intent(query, self.settings))
                   for entry in ranked[offset:offset + limit]]
        t6 = time.perf_counter()
        timing = {"encode": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3, "fuse": (t3 - t2) * 1e3,
                  "aggregate": (t5 - t4) * 1e3, "evidence": (t6 - t5) * 1e3, "total": (t6 - t0) * 1e3}
        if reranker is not None:
            timing["rerank"] = (t4 - t3) * 1e3
        return SearchResponse(query=query, results=results, timing_ms=timing, total=len(ranked))

    def reranker(self, choice: bool | str):
        """The cross-encoder for ``choice`` (True: ``config.RERANK_MODEL``), loaded once and kept.

        Raises:
            ModelNotFoundError: it cannot be loaded.
        """
        from recommender.rerank import Reranker

        name = config.RERANK_MODEL if choice is True else str(choice)
        with self._reranker_lock:
            if name not in self._rerankers:
                self._rerankers[name] = Reranker.load(name)
            return self._rerankers[name]

    def chunk_text(self, row: int) -> str:
        """The text of the review chunk at index row ``row``."""
        return self.data.chunk_text(row)

    def hit_text(self, hit: Hit) -> str:
        """The passage behind a hit: its review chunk, or the anime's synopsis."""
        return self.data.chunk_text(hit.row) if hit.is_review else self.data.synopsis(hit.anime_id)

    def _result(self, entry: AnimeScore, query: str, vector: np.ndarray | None = None,
                asks_negative: bool = False) -> AnimeResult:
        """One result with its evidence (which prefers agreeing verdicts when the settings say so)."""
        meta = self.catalog.get(entry.anime_id, {})
        hits = entry.hits
        if vector is not None and not any(h.is_review for h in hits):
            # Ranked on its synopsis alone: show the anime's own reviews closest to the query instead.
            shown = 2 * self.settings.evidence_per_result  # spares, as a duplicate passage is skipped
            hits = self.evidence.nearest_reviews(vector, [entry.anime_id], per_anime=shown).get(entry.anime_id, [])
        return AnimeResult(
            anime_id=entry.anime_id,
            title=meta.get("title") or f"Anime {entry.anime_id}",
            url=meta.get("url") or f"https://myanimelist.net/anime/{entry.anime_id}",
            image_url=meta.get("image_url"),
            score=round(entry.score, 6),
            count=sum(h.is_review for h in entry.hits),
            evidence=self.evidence.snippets(hits, query, self.settings.evidence_per_result,
                                            self.settings.snippet_chars,
                                            asks_negative if self.settings.evidence_by_verdict else None),
            mal_score=meta.get("score"),
            type=meta.get("type"),
            year=meta.get("year"),
            genres=list(meta.get("genres") or []),
        )

    # ---- anime to anime ----------------------------------------------------------------
    def similar_scores(self, anime_id: int) -> list[tuple[int, float]]:
        """Every other anime with the similarity of its review centroid to ``anime_id``'s, best first.

        Raises:
            UnknownAnimeError: the anime has no reviews in this index.
            IndexNotFoundError: the index has no anime vectors.
        """
        vectors, ids = self.data.anime_vectors, self.data.anime_vector_ids
        if vectors is None or ids is None:
            raise IndexNotFoundError("this index has no anime vectors; rebuild it with: python -m recommender build")
        try:
            anime_id = int(anime_id)
        except (TypeError, ValueError):
            raise UnknownAnimeError(f"anime id must be a number, got {anime_id!r}") from None
        where = np.flatnonzero(ids == anime_id)
        if not len(where):
            raise UnknownAnimeError(f"anime {anime_id} is not in this index")
        sims = vectors @ vectors[where[0]]
        order = np.lexsort((ids, -sims))  # ties: lower id first, so the order is reproducible
        return [(int(ids[i]), float(sims[i])) for i in order if int(ids[i]) != anime_id]

    def similar(self, anime_id: int, *, limit: int = config.DEFAULT_LIMIT,
                filters: SearchFilters | None = None) -> SearchResponse:
        """Anime whose reviews read like ``anime_id``'s ("more like this").

        Each anime is its reviews' centroid; results are the nearest centroids
        (``score`` = similarity, ``count`` = the result's reviews in the index),
        and each carries as evidence its review passages closest to the source
        anime's centroid. ``total`` counts the anime the filters allow.

        Raises:
            UnknownAnimeError: the anime has no reviews in this index.
            InvalidParameterError: a bad limit or filters.
        """
        limit = check_int("limit", limit, 1, config.MAX_LIMIT)
        if filters is not None and not isinstance(filters, SearchFilters):
            raise InvalidParameterError("filters must be a SearchFilters")
        filters = filters or SearchFilters()
        t0 = time.perf_counter()
        allowed = [(a, s) for a, s in self.similar_scores(anime_id) if matches(self.catalog.get(a, {}), filters)]
        t1 = time.perf_counter()
        source = self.catalog.get(int(anime_id), {})
        title = source.get("title") or f"Anime {anime_id}"
        page = allowed[:limit]
        centroid = self.data.anime_vectors[np.flatnonzero(self.data.anime_vector_ids == int(anime_id))[0]]
        evidence_hits = self.evidence.nearest_reviews(centroid, {a for a, _ in page})
        results = []
        for other, sim in page:
            result = self._result(AnimeScore(other, sim, 0, evidence_hits.get(other, [])), title)
            result.count = self.review_counts.get(other, 0)
            results.append(result)
        t2 = time.perf_counter()
        timing = {"search": (t1 - t0) * 1e3, "evidence": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        return SearchResponse(query=title, results=results, timing_ms=timing, total=len(allowed))

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

    def meta(self) -> dict:
        """What a client needs to offer choices: aggregations, genres, types and the year range of the catalogue."""
        entries = [self.catalog[a] for a in self.review_counts if a in self.catalog]
        names = sorted({label for meta in entries for key in ("genres", "themes", "demographics")
                        for label in (meta.get(key) or [])}, key=lambda name: (name.casefold(), name))
        years = [int(meta["year"]) for meta in entries if meta.get("year") is not None]
        return {
            "aggregations": sorted(AGGREGATIONS),
            "default_aggregation": self.settings.aggregation,
            "genres": names,
            "types": sorted({meta["type"] for meta in entries if meta.get("type")}),
            "year_range": [min(years), max(years)] if years else None,
        }

    def genre_labels(self, anime_id: int) -> set[str]:
        """Case-folded genres, themes and demographics of an anime (empty when unknown)."""
        return self.data.genre_labels(anime_id)

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


def set_serving_threads(threads: int) -> None:
    """Pin faiss's CPU threads, and torch's when torch is in use: on the 2-core target more threads per query
    only contend with each other (the ONNX runtimes get theirs when loaded). Torch is not imported for this:
    an index served from an ONNX export never needs it."""
    threads = max(1, int(threads))
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    set_threads(threads)
    # numpy's BLAS too: a 4,000 × 384 synopsis product took 12 ms on two contended threads, 0.3 ms on one.
    threadpool_limits(threads, user_api="blas")
