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
from recommender.backends import manifest_backend
from recommender.build import (
    ANIME_VECTOR_IDS,
    ANIME_VECTORS,
    CATALOG,
    CHUNKS,
    FORMAT_VERSION,
    MANIFEST,
    REVIEWS,
    ROW_IDS,
    SYNOPSIS_IDS,
    SYNOPSIS_VECTORS,
    embed_synopses,
    recover_interrupted_swap,
    synopsis_text,
)
from recommender.encoder import Encoder
from recommender.errors import (
    IndexMismatchError,
    IndexNotFoundError,
    InvalidParameterError,
    InvalidQueryError,
    UnknownAggregationError,
    UnknownAnimeError,
)
from recommender.evidence import snippet
from recommender.filters import SearchFilters, labels, matches
from recommender.index import VectorIndex, set_threads
from recommender.lexical import LexicalIndex
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
    """Search reviews by meaning and recommend the anime behind them. Load with :meth:`Recommender.load`.

    Besides the review chunks, an anime's synopsis (when the index has its
    vector) takes part in retrieval as one more document of that anime, and a
    BM25 score over the retrieved passages is added to their similarity; see
    :meth:`hits`. ``synopsis_weight`` and ``lexical_weight`` (defaults in
    :mod:`recommender.config`) tune them, 0 turns them off. The reference
    ``count`` vote always uses the plain dense hits, as the reference did.
    """

    def __init__(self, encoder: Encoder, index: VectorIndex, manifest: dict, catalog: dict[int, dict],
                 chunks: pd.DataFrame, reviews: pd.DataFrame, row_chunk_ids: np.ndarray,
                 anime_vectors: np.ndarray | None = None, anime_vector_ids: np.ndarray | None = None,
                 index_dir: Path | None = None, synopsis_vectors: np.ndarray | None = None,
                 synopsis_ids: np.ndarray | None = None) -> None:
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
        self._review_anime = reviews["anime_id"].to_numpy(np.int64)
        #: Reviews of each anime in the index: what the popularity-corrected aggregations divide by.
        self.review_counts: dict[int, int] = {
            int(a): int(n) for a, n in zip(*np.unique(self._review_anime, return_counts=True), strict=True)
        }
        self.synopsis_weight = config.SYNOPSIS_WEIGHT
        self.lexical_weight = config.LEXICAL_WEIGHT
        self.synopsis_vectors: np.ndarray | None = None
        self.synopsis_ids: np.ndarray | None = None
        if synopsis_vectors is not None and synopsis_ids is not None:
            self.attach_synopses(synopsis_vectors, synopsis_ids)
        self._lexical: LexicalIndex | None = None
        self._filter_rows: dict[SearchFilters, np.ndarray | None] = {}
        self._allowed_cache: tuple[np.ndarray | None, np.ndarray] | None = None
        self._rerankers: dict[str, object] = {}

    @classmethod
    def load(cls, index_dir: str | Path, model: str | None = None, device: str | None = None,
             encoder: Encoder | None = None, threads: int | None = config.SERVE_THREADS) -> Recommender:
        """Load an index directory and the encoder it was built with.

        Args:
            index_dir: directory written by ``python -m recommender build``.
            model: override the model recorded in the manifest (must be the same weights).
            device: torch device for the query encoder.
            encoder: an already loaded encoder (shared between indexes in tests and benchmarks).
            threads: CPU threads for the query encoder and the index search (None leaves the libraries' defaults).

        Raises:
            IndexNotFoundError: missing or incomplete index.
            IndexMismatchError: the encoder differs from the one the index was built with.
        """
        index_dir = Path(index_dir)
        manifest = load_manifest(index_dir)
        if threads:
            set_serving_threads(threads)
        if encoder is None:
            recorded = manifest["model"]
            choice = model or (recorded["path"] if Path(recorded["path"]).exists() else recorded["name"])
            encoder = Encoder.load(choice, device=device, backend=manifest_backend(manifest))
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
        anime_vectors = anime_ids = synopsis_vectors = synopsis_ids = None
        if (index_dir / ANIME_VECTORS).exists():
            anime_vectors, anime_ids = np.load(index_dir / ANIME_VECTORS), np.load(index_dir / ANIME_VECTOR_IDS)
        if (index_dir / SYNOPSIS_VECTORS).exists():
            synopsis_vectors, synopsis_ids = np.load(index_dir / SYNOPSIS_VECTORS), np.load(index_dir / SYNOPSIS_IDS)
        return cls(encoder, index, manifest, catalog, pd.read_parquet(index_dir / CHUNKS),
                   pd.read_parquet(index_dir / REVIEWS), row_ids, anime_vectors, anime_ids, index_dir,
                   synopsis_vectors, synopsis_ids)

    # ---- synopses and lexical scores ---------------------------------------------------
    def attach_synopses(self, vectors: np.ndarray, anime_ids: np.ndarray) -> None:
        """Use ``vectors[i]`` as the synopsis document of ``anime_ids[i]`` (anime without reviews are dropped).

        Raises:
            IndexMismatchError: the vectors do not match the index's dimension.
        """
        vectors, anime_ids = np.asarray(vectors, dtype=np.float32), np.asarray(anime_ids, dtype=np.int64)
        if len(vectors) and (vectors.ndim != 2 or vectors.shape[1] != self.index.dim or len(vectors) != len(anime_ids)):
            raise IndexMismatchError(f"synopsis vectors of shape {vectors.shape} do not fit a {self.index.dim}-d index")
        keep = np.isin(anime_ids, list(self.review_counts))
        self.synopsis_vectors, self.synopsis_ids = vectors[keep], anime_ids[keep]
        self._lexical = None
        self._allowed_cache = None

    def encode_synopses(self, batch_size: int = config.ENCODE_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
        """Embed the catalogue synopses of the indexed anime (for indexes built before synopses were indexed)."""
        return embed_synopses({a: self.catalog.get(a, {}) for a in self.review_counts}, self.encoder, batch_size)

    def lexical(self) -> LexicalIndex:
        """BM25 over every chunk, then every synopsis (built on first use: a second or two per 10,000 chunks)."""
        if self._lexical is None:
            texts = [self.chunk_text(row) for row in range(self.index.ntotal)]
            if self.synopsis_ids is not None:
                texts += [synopsis_text(self.catalog.get(int(a), {})) for a in self.synopsis_ids]
            self._lexical = LexicalIndex.build(texts)
        return self._lexical

    def _synopsis_allowed(self, excluded: np.ndarray | None) -> np.ndarray:
        """Which synopses may be hits: those of anime with at least one row left after ``excluded``."""
        cached = self._allowed_cache
        if cached is not None and cached[0] is excluded:
            return cached[1]
        if excluded is None:
            allowed = np.ones(len(self.synopsis_ids), dtype=bool)
        else:
            allowed = np.isin(self.synopsis_ids, np.unique(self._row_anime[~excluded]))
        self._allowed_cache = (excluded, allowed)
        return allowed

    def fuse(self, query: str, vector: np.ndarray, hits: list[Hit], top_n: int,
              excluded: np.ndarray | None) -> list[Hit]:
        """Dense chunk hits plus synopsis documents, each scored ``cosine·weight + lexical_weight·BM25/max BM25``.

        A synopsis joins only when it beats the weakest chunk hit, so ``top_n``
        keeps its meaning; the result is sorted by the fused score.
        """
        use_synopses = self.synopsis_weight > 0 and self.synopsis_ids is not None and len(self.synopsis_ids)
        if not use_synopses and self.lexical_weight <= 0:
            return hits
        anime = [h.anime_id for h in hits]
        review_ids = [h.review_id for h in hits]
        rows = np.array([h.row for h in hits], dtype=np.int64)
        cosines = np.array([h.similarity for h in hits], dtype=np.float64)
        base = cosines.copy()
        docs = rows.copy()
        n_chunks = len(hits)
        if use_synopses:
            allowed = np.flatnonzero(self._synopsis_allowed(excluded))
            sims = self.synopsis_vectors[allowed] @ vector
            anime += [int(a) for a in self.synopsis_ids[allowed]]
            review_ids += [f"synopsis:{int(a)}" for a in self.synopsis_ids[allowed]]
            rows = np.concatenate([rows, np.full(len(allowed), -1, dtype=np.int64)])
            cosines = np.concatenate([cosines, sims])
            base = np.concatenate([base, self.synopsis_weight * sims])
            docs = np.concatenate([docs, self.index.ntotal + allowed])
        fused = base
        if self.lexical_weight > 0 and len(docs):
            lexical = self.lexical().scores(query, docs)
            top = lexical.max()
            if top > 0:
                fused = base + self.lexical_weight * lexical / top
        keep = np.ones(len(fused), dtype=bool)
        if n_chunks >= top_n and n_chunks:
            keep[n_chunks:] = fused[n_chunks:] >= fused[:n_chunks].min()
        order = [i for i in np.argsort(-fused, kind="stable") if keep[i]]
        return [Hit(anime[i], float(fused[i]), rank, review_ids[i], int(rows[i]), float(cosines[i]))
                for rank, i in enumerate(order)]

    # ---- retrieval ---------------------------------------------------------------------
    @property
    def row_anime(self) -> np.ndarray:
        """Anime id of every index row (read-only view)."""
        view = self._row_anime.view()
        view.setflags(write=False)
        return view

    def rows_of_reviews(self, review_ids: set[str] | frozenset[str]) -> np.ndarray:
        """Boolean row mask: the chunks of the given reviews (evaluation masks held-out reviews with it)."""
        wanted = np.isin(self._review_ids, list(review_ids))
        return wanted[self._row_review]

    def retrieve(self, query_vector: np.ndarray, top_n: int, excluded: np.ndarray | None = None) -> list[Hit]:
        """The best ``top_n`` review chunks for one query vector, best first (see :meth:`retrieve_batch`)."""
        return self.retrieve_batch(query_vector[None, :], top_n, excluded)[0]

    def retrieve_batch(self, query_vectors: np.ndarray, top_n: int,
                       excluded: np.ndarray | None = None) -> list[list[Hit]]:
        """The best ``top_n`` chunks for each query vector by embedding similarity, skipping ``excluded`` rows.

        The index is asked for ``top_n`` plus as many rows as are excluded (or,
        when that is a large share of the index, a growing multiple of ``top_n``),
        so the answer equals a search of an index that never held the excluded
        rows: filters and held-out reviews cost no recall.
        """
        query_vectors = np.atleast_2d(query_vectors)
        ntotal = self.index.ntotal
        n_excluded = int(excluded.sum()) if excluded is not None else 0
        wanted = min(top_n, ntotal - n_excluded)
        if wanted <= 0:
            return [[] for _ in range(len(query_vectors))]
        k = min(ntotal, top_n + n_excluded if n_excluded <= 3 * top_n else 4 * top_n)
        while True:
            scores, rows = self.index.search(query_vectors, k)
            kept = []
            for q in range(len(query_vectors)):
                ok = rows[q] >= 0
                if excluded is not None:
                    ok &= ~excluded[np.where(ok, rows[q], 0)]
                kept.append((scores[q][ok][:top_n], rows[q][ok][:top_n]))
            if k >= ntotal or all(len(r) >= wanted for _, r in kept):
                break
            k = min(ntotal, k * 4)
        return [self._hits(s, r) for s, r in kept]

    def _hits(self, scores: np.ndarray, rows: np.ndarray) -> list[Hit]:
        anime, review_ids = self._row_anime[rows], self._review_ids[self._row_review[rows]]
        return [Hit(int(anime[i]), float(scores[i]), i, str(review_ids[i]), int(rows[i])) for i in range(len(rows))]

    def hits(self, queries: list[str], vectors: np.ndarray, top_n: int, excluded: np.ndarray | None = None,
             aggregation: str = config.DEFAULT_AGGREGATION) -> list[list[Hit]]:
        """What ``aggregation`` ranks per query: dense chunk hits, fused with synopses and BM25 except for ``count``.

        Args:
            queries: the query texts (for the lexical score).
            vectors: their embeddings, one row each.
            top_n: chunks retrieved per query.
            excluded: row mask of chunks to leave out (filters, held-out reviews).
            aggregation: the aggregation the hits are for.
        """
        dense = self.retrieve_batch(vectors, top_n, excluded)
        if aggregation == "count":
            return dense
        return [self.fuse(q, v, h, top_n, excluded) for q, v, h in zip(queries, vectors, dense, strict=True)]

    def rank(self, hits: list[Hit], aggregation: str = config.DEFAULT_AGGREGATION,
             review_counts: dict[int, int] | None = None, **params: object) -> list[AnimeScore]:
        """Aggregate one query's hits into ranked anime (one hit per review, popularity from the index)."""
        return aggregate(best_hit_per_review(hits), aggregation,
                         review_counts=self.review_counts if review_counts is None else review_counts, **params)

    def excluded_rows(self, filters: SearchFilters | None) -> np.ndarray | None:
        """Row mask of the anime that ``filters`` remove (None when nothing is removed); cached per filter set."""
        filters = filters or SearchFilters()
        try:  # one lookup, not "in" then "[]": another request's thread may clear the cache in between
            return self._filter_rows[filters]
        except KeyError:
            pass
        banned = [a for a in self.review_counts if not matches(self.catalog.get(a, {}), filters)]
        mask = np.isin(self._row_anime, banned) if banned else None
        if len(self._filter_rows) > 256:  # filter sets come from users: keep the cache bounded
            self._filter_rows.clear()
        self._filter_rows[filters] = mask
        return mask

    # ---- query path --------------------------------------------------------------------
    def search(self, query: str, *, top_n: int = config.DEFAULT_TOP_N, limit: int = config.DEFAULT_LIMIT,
               offset: int = 0, aggregation: str = config.DEFAULT_AGGREGATION,
               filters: SearchFilters | None = None, rerank: bool | str = False) -> SearchResponse:
        """Recommend anime for a free-text description.

        Args:
            query: what the user wants to watch.
            top_n: review chunks retrieved before aggregation (among the anime the filters allow).
            limit: anime returned.
            offset: anime skipped (paging).
            aggregation: name in :data:`recommender.aggregate.AGGREGATIONS`.
            filters: which anime may appear; None hides adult titles only.
            rerank: re-score the best chunks with a cross-encoder: True for the default model
                (``config.RERANK_MODEL``), or a model name or directory.

        Returns:
            The page of results; ``total`` is the number of anime ranked after filters.

        Raises:
            InvalidQueryError, InvalidParameterError, UnknownAggregationError: bad input.
            ModelNotFoundError: the reranker cannot be loaded.
        """
        query = clean_query(query)
        top_n = check_int("top_n", top_n, 1, config.MAX_TOP_N)
        limit = check_int("limit", limit, 1, config.MAX_LIMIT)
        offset = check_int("offset", offset, 0, config.MAX_TOP_N)
        if aggregation not in AGGREGATIONS:
            raise UnknownAggregationError(
                f"unknown aggregation {aggregation!r}; choose from {', '.join(sorted(AGGREGATIONS))}"
            )
        if filters is not None and not isinstance(filters, SearchFilters):
            raise InvalidParameterError("filters must be a SearchFilters")
        reranker = self.reranker(rerank) if rerank else None
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        vector = self.encoder.encode_query(query)
        t1 = time.perf_counter()
        excluded = self.excluded_rows(filters)
        hits = self.hits([query], vector[None, :], top_n, excluded, aggregation)[0]
        t2 = time.perf_counter()
        if reranker is not None:
            hits = reranker.rerank(query, hits, self.hit_text)
        t3 = time.perf_counter()
        ranked = self.rank(hits, aggregation)
        depth = top_n
        allowed_rows = self.index.ntotal - (int(excluded.sum()) if excluded is not None else 0)
        # Too few anime among the top-N chunks for this page (a narrow filter, one anime owning most hits):
        # look deeper until the page is full or every allowed chunk has been seen.
        while len(ranked) < offset + limit and depth < allowed_rows and reranker is None:
            depth = min(allowed_rows, depth * 4)
            hits = self.hits([query], vector[None, :], depth, excluded, aggregation)[0]
            ranked = self.rank(hits, aggregation)
        t4 = time.perf_counter()
        results = [self._result(entry, query, vector) for entry in ranked[offset:offset + limit]]
        t5 = time.perf_counter()
        timing.update(encode=(t1 - t0) * 1e3, search=(t2 - t1) * 1e3, aggregate=(t4 - t3) * 1e3,
                      evidence=(t5 - t4) * 1e3, total=(t5 - t0) * 1e3)
        if reranker is not None:
            timing["rerank"] = (t3 - t2) * 1e3
        return SearchResponse(query=query, results=results, timing_ms=timing, total=len(ranked))

    def reranker(self, choice: bool | str):
        """The cross-encoder for ``choice`` (True: ``config.RERANK_MODEL``), loaded once and kept.

        Raises:
            ModelNotFoundError: it cannot be loaded.
        """
        from recommender.rerank import Reranker

        name = config.RERANK_MODEL if choice is True else str(choice)
        if name not in self._rerankers:
            self._rerankers[name] = Reranker.load(name)
        return self._rerankers[name]

    def chunk_text(self, row: int) -> str:
        """The text of the review chunk at index row ``row``."""
        text = self._review_texts[self._row_review[row]]
        return text[int(self._row_start[row]):int(self._row_end[row])]

    def hit_text(self, hit: Hit) -> str:
        """The passage behind a hit: its review chunk, or the anime's synopsis."""
        if hit.is_review:
            return self.chunk_text(hit.row)
        return synopsis_text(self.catalog.get(hit.anime_id, {}))

    def _evidence(self, hits: list[Hit], query: str) -> list[Evidence]:
        """Snippets of the anime's review hits closest in meaning to the query (plain cosine, best first).

        Ranking may also weigh words (BM25) or a reranker, but the reason shown
        is the passage that means most nearly what was asked, and its similarity.
        """
        evidence: list[Evidence] = []
        seen: set[str] = set()
        by_meaning = sorted((h for h in hits if h.is_review),
                            key=lambda h: -(h.similarity if h.cosine is None else h.cosine))
        for hit in by_meaning:
            if len(evidence) >= config.EVIDENCE_PER_RESULT:
                break
            row = hit.row
            text = self._review_texts[self._row_review[row]]
            passage = snippet(text, int(self._row_start[row]), int(self._row_end[row]), query, config.SNIPPET_CHARS)
            if not passage or passage in seen:  # the same passage twice explains nothing new
                continue
            seen.add(passage)
            similarity = hit.similarity if hit.cosine is None else hit.cosine
            evidence.append(Evidence(review_id=hit.review_id, similarity=round(similarity, 4),
                                     snippet=passage, url=review_url(hit.review_id)))
        return evidence

    def _result(self, entry: AnimeScore, query: str, vector: np.ndarray | None = None) -> AnimeResult:
        meta = self.catalog.get(entry.anime_id, {})
        hits = entry.hits
        if vector is not None and not any(h.is_review for h in hits):
            # Ranked on its synopsis alone: show the anime's own reviews closest to the query instead.
            hits = best_hit_per_review(self.retrieve(vector, config.EVIDENCE_PER_RESULT,
                                                     self._row_anime != entry.anime_id))
        return AnimeResult(
            anime_id=entry.anime_id,
            title=meta.get("title") or f"Anime {entry.anime_id}",
            url=meta.get("url") or f"https://myanimelist.net/anime/{entry.anime_id}",
            image_url=meta.get("image_url"),
            score=round(entry.score, 6),
            count=sum(h.is_review for h in entry.hits),
            evidence=self._evidence(hits, query),
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
        if self.anime_vectors is None or self.anime_vector_ids is None:
            raise IndexNotFoundError("this index has no anime vectors; rebuild it with: python -m recommender build")
        try:
            anime_id = int(anime_id)
        except (TypeError, ValueError):
            raise UnknownAnimeError(f"anime id must be a number, got {anime_id!r}") from None
        where = np.flatnonzero(self.anime_vector_ids == anime_id)
        if not len(where):
            raise UnknownAnimeError(f"anime {anime_id} is not in this index")
        sims = self.anime_vectors @ self.anime_vectors[where[0]]
        order = np.lexsort((self.anime_vector_ids, -sims))  # ties: lower id first, so the order is reproducible
        return [(int(self.anime_vector_ids[i]), float(sims[i])) for i in order
                if int(self.anime_vector_ids[i]) != anime_id]

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
        evidence_hits = self._nearest_chunks(int(anime_id), {a for a, _ in page})
        results = []
        for other, sim in page:
            result = self._result(AnimeScore(other, sim, 0, evidence_hits.get(other, [])), title)
            result.count = self.review_counts.get(other, 0)
            results.append(result)
        t2 = time.perf_counter()
        timing = {"search": (t1 - t0) * 1e3, "evidence": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}
        return SearchResponse(query=title, results=results, timing_ms=timing, total=len(allowed))

    def _nearest_chunks(self, anime_id: int, wanted: set[int]) -> dict[int, list[Hit]]:
        """Best chunks of the ``wanted`` anime for the source anime's centroid (one hit per review)."""
        if not wanted:
            return {}
        vector = self.anime_vectors[np.flatnonzero(self.anime_vector_ids == anime_id)[0]]
        excluded = ~np.isin(self._row_anime, list(wanted))
        depth = config.EVIDENCE_PER_RESULT * len(wanted) * 4
        grouped: dict[int, list[Hit]] = {}
        for hit in best_hit_per_review(self.retrieve(vector, depth, excluded)):
            grouped.setdefault(hit.anime_id, []).append(hit)
        return grouped

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
            "default_aggregation": config.DEFAULT_AGGREGATION,
            "genres": names,
            "types": sorted({meta["type"] for meta in entries if meta.get("type")}),
            "year_range": [min(years), max(years)] if years else None,
        }

    def genre_labels(self, anime_id: int) -> set[str]:
        """Case-folded genres, themes and demographics of an anime (empty when unknown)."""
        return labels(self.catalog.get(int(anime_id), {}))

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
    """Pin torch's and faiss's CPU threads: on the 2-core target more threads only contend with each other."""
    import torch

    threads = max(1, int(threads))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    set_threads(threads)
