"""The one loaded :class:`~recommender.search.Recommender` behind the HTTP routes, shaped into API documents."""

from __future__ import annotations

import math
import time

from recommender import __version__, config
from recommender.evidence import query_terms
from recommender.filters import SearchFilters
from recommender.search import Recommender
from webapp.validation import SearchParams, filters_to_dict


class SearchService:
    """Answers API requests from one recommender shared by all server threads.

    The recommender holds no per-query state, so requests run concurrently
    (one CPU thread each, see ``config.SERVE_THREADS``): on 2 cores two searches
    proceed at once instead of queueing behind a lock.

    Args:
        recommender: the loaded index and model.
    """

    def __init__(self, recommender: Recommender) -> None:
        self.recommender = recommender
        self._meta = recommender.meta()
        self.started = time.time()

    # ---- catalogue facts ---------------------------------------------------------------
    def meta(self) -> dict:
        """Aggregations, genres, types and year range available for filters."""
        return {**self._meta, "limits": {
            "max_query_chars": config.MAX_QUERY_CHARS, "max_limit": config.MAX_LIMIT,
            "max_top_n": config.MAX_TOP_N, "default_limit": config.DEFAULT_LIMIT,
            "default_top_n": config.DEFAULT_TOP_N,
        }}

    @property
    def aggregations(self) -> list[str]:
        return list(self._meta["aggregations"])

    @property
    def default_aggregation(self) -> str:
        return self._meta.get("default_aggregation", config.DEFAULT_AGGREGATION)

    @property
    def genres(self) -> list[str]:
        return list(self._meta.get("genres") or [])

    @property
    def types(self) -> list[str]:
        return list(self._meta.get("types") or [])

    # ---- requests ----------------------------------------------------------------------
    def search(self, params: SearchParams) -> dict:
        """The CLI's JSON document for one page of results, plus paging and the query's highlight terms.

        Raises:
            RecommenderError: bad input the recommender itself refuses.
        """
        response = self.recommender.search(params.query, top_n=params.top_n, limit=params.limit,
                              offset=params.offset, aggregation=params.aggregation, filters=params.filters)
        total = response.total if response.total is not None else len(response.results)
        return {
            **response.to_dict(),
            "page": params.page,
            "limit": params.limit,
            "total": total,
            "pages": math.ceil(total / params.limit),
            "top_n": params.top_n,
            "aggregation": params.aggregation,
            "filters": filters_to_dict(params.filters),
            "terms": sorted(query_terms(response.query)),
        }

    def reference(self, query: str, top_n: int) -> list[dict]:
        """The reference frontend's rows: every anime among the top-N review chunks, by how many are theirs.

        Goes below :meth:`Recommender.search` on purpose: search looks deeper than
        ``top_n`` when a page is not full, but the reference vote counts the top N
        only, and it returned every anime (no limit) without evidence.
        """
        rec = self.recommender

        def vote():
            vector = rec.encoder.encode_query(query)
            return rec.rank(rec.hits([query], vector[None, :], top_n, None, "count")[0], "count")

        rows = []
        for entry in vote():
            meta = rec.catalog.get(entry.anime_id, {})
            rows.append({
                "Anime Title": meta.get("title") or f"Anime {entry.anime_id}",
                "MAL Link": meta.get("url") or f"https://myanimelist.net/anime/{entry.anime_id}",
                "Image URL": meta.get("image_url") or "",
                "count": int(entry.count),
            })
        return rows

    def anime(self, anime_id: int) -> dict:
        """Catalogue entry and review count of one anime.

        Raises:
            UnknownAnimeError: not in the index.
        """
        entry = self.recommender.anime(anime_id)
        entry.setdefault("review_count", self.recommender.review_counts.get(int(anime_id), 0))
        return entry

    def similar(self, anime_id: int, limit: int, filters: SearchFilters | None) -> dict:
        """Anime whose reviews read like ``anime_id``'s, in the search result shape.

        Raises:
            UnknownAnimeError: not in the index.
        """
        source = self.recommender.anime(anime_id)
        response = self.recommender.similar(anime_id, limit=limit, filters=filters)
        return {
            **response.to_dict(),
            "anime": {key: source.get(key) for key in ("anime_id", "title", "url", "image_url")},
            "limit": limit,
            "filters": filters_to_dict(filters),
        }

    def health(self) -> dict:
        """Liveness plus what is loaded."""
        return {
            "status": "ok",
            "index_loaded": True,
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            **self.recommender.health(),
        }
