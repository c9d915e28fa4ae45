"""The loaded :class:`~recommender.search.Recommender` behind the HTTP routes, shaped into API documents.

The service holds one loaded index at a time and can swap in a rebuilt one while serving:
a watcher notices that ``manifest.json`` changed, loads the new index beside the old one,
and replaces the reference in one assignment. A request reads the reference once and
finishes on the index it started with, so none is dropped or answered from a mix of both.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from recommender import __version__, config
from recommender.errors import RecommenderError
from recommender.evidence import query_terms
from recommender.filters import SearchFilters
from recommender.search import Recommender
from recommender.validation import SearchParams, filters_to_dict
from scraping.models import anime_url
from scraping.urls import safe_mal_url

log = logging.getLogger("webapp")

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Loaded:
    """One loaded index with what the routes read from it on every request."""

    recommender: Recommender
    meta: dict
    stamp: str | None
    loaded_at: float


def manifest_stamp(index_dir: Path | None) -> str | None:
    """A fingerprint of the index's manifest (None when it cannot be read): a rebuild always changes it."""
    if index_dir is None:
        return None
    try:
        return hashlib.sha256((index_dir / MANIFEST).read_bytes()).hexdigest()
    except OSError:
        return None


def safe_links(entry: dict, anime_id: int) -> dict:
    """``entry`` with its page link, image and evidence links limited to MyAnimeList (see ``safe_mal_url``).

    The importers already refuse other links, but an index built from an older store may still hold them.
    """
    entry = dict(entry)
    entry["url"] = safe_mal_url(entry.get("url")) or anime_url(anime_id)
    if "image_url" in entry:
        entry["image_url"] = safe_mal_url(entry.get("image_url"))
    if entry.get("evidence"):
        entry["evidence"] = [{**item, "url": safe_mal_url(item.get("url"))} for item in entry["evidence"]]
    return entry


class SearchService:
    """Answers API requests from one recommender shared by all server threads.

    The recommender holds no per-query state, so requests run concurrently
    (one CPU thread each, see ``config.SERVE_THREADS``): on 2 cores two searches
    proceed at once instead of queueing behind a lock.

    Args:
        recommender: the loaded index and model.
        index_dir: where the index lives, to notice a rebuild (default: the loaded index's own directory).
        model, device: passed to :meth:`Recommender.load` when a rebuilt index is loaded.
    """

    def __init__(self, recommender: Recommender, *, index_dir: str | Path | None = None,
                 model: str | None = None, device: str | None = None) -> None:
        loaded_from = recommender.health().get("index")
        self.index_dir = Path(index_dir) if index_dir else (Path(loaded_from) if loaded_from else None)
        self._load_options = {"model": model, "device": device}
        self._loaded = Loaded(recommender, recommender.meta(), manifest_stamp(self.index_dir), time.time())
        self._reload_lock = threading.Lock()
        self._failed_stamp: str | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.started = time.time()

    @property
    def recommender(self) -> Recommender:
        """The index being served now (read it once per request)."""
        return self._loaded.recommender

    # ---- catalogue facts ---------------------------------------------------------------
    def meta(self) -> dict:
        """Aggregations, genres, types and year range available for filters."""
        return {**self._loaded.meta, "limits": {
            "max_query_chars": config.MAX_QUERY_CHARS, "max_limit": config.MAX_LIMIT,
            "max_top_n": config.MAX_TOP_N, "default_limit": config.DEFAULT_LIMIT,
            "default_top_n": config.DEFAULT_TOP_N,
        }}

    @property
    def aggregations(self) -> list[str]:
        return list(self._loaded.meta["aggregations"])

    @property
    def default_aggregation(self) -> str:
        return self._loaded.meta.get("default_aggregation", config.DEFAULT_AGGREGATION)

    @property
    def genres(self) -> list[str]:
        return list(self._loaded.meta.get("genres") or [])

    @property
    def types(self) -> list[str]:
        return list(self._loaded.meta.get("types") or [])

    # ---- requests ----------------------------------------------------------------------
    def search(self, params: SearchParams) -> dict:
        """The CLI's JSON document for one page of results, plus paging and the query's highlight terms.

        A page that starts past ``MAX_TOP_N`` ranked anime is empty (there is nothing to rank that deep).

        Raises:
            RecommenderError: bad input the recommender itself refuses.
        """
        rec = self.recommender
        past_the_end = params.offset > config.MAX_TOP_N
        response = rec.search(params.query, top_n=params.top_n, limit=1 if past_the_end else params.limit,
                              offset=0 if past_the_end else params.offset, aggregation=params.aggregation,
                              filters=params.filters)
        total = response.total if response.total is not None else len(response.results)
        document = response.to_dict()
        document["results"] = [] if past_the_end else [safe_links(r, r["anime_id"]) for r in document["results"]]
        return {
            **document,
            "page": params.page,
            "limit": params.limit,
            "total": total,
            "pages": math.ceil(total / params.limit),
            "top_n": params.top_n,
            "aggregation": params.aggregation,
            "filters": filters_to_dict(params.filters),
            "terms": sorted(query_terms(response.query)),
        }

    def reference(self, params: SearchParams) -> list[dict]:
        """The reference frontend's rows for one search: the anime ranked as any search ranks them.

        ``count`` is the anime's matching reviews among the top N passages; with
        ``aggregation="count"`` the order is the reference system's own vote.
        """
        response = self.recommender.search(params.query, top_n=params.top_n, limit=params.limit,
                              aggregation=params.aggregation, filters=None)
        return [{
            "Anime Title": result.title,
            "MAL Link": safe_mal_url(result.url) or anime_url(result.anime_id),
            "Image URL": safe_mal_url(result.image_url) or "",
            "count": int(result.count),
        } for result in response.results]

    def anime(self, anime_id: int) -> dict:
        """Catalogue entry and review count of one anime.

        Raises:
            UnknownAnimeError: not in the index.
        """
        rec = self.recommender
        entry = safe_links(rec.anime(anime_id), anime_id)
        entry.setdefault("review_count", rec.review_counts.get(int(anime_id), 0))
        return entry

    def similar(self, anime_id: int, limit: int, filters: SearchFilters | None) -> dict:
        """Anime whose reviews read like ``anime_id``'s, in the search result shape.

        Raises:
            UnknownAnimeError: not in the index.
        """
        rec = self.recommender
        source = safe_links(rec.anime(anime_id), anime_id)
        response = rec.similar(anime_id, limit=limit, filters=filters)
        document = response.to_dict()
        document["results"] = [safe_links(r, r["anime_id"]) for r in document["results"]]
        return {
            **document,
            "anime": {key: source.get(key) for key in ("anime_id", "title", "url", "image_url")},
            "limit": limit,
            "filters": filters_to_dict(filters),
        }

    def health(self) -> dict:
        """Liveness plus what is loaded; the index by its directory name, never its path on this machine."""
        loaded = self._loaded
        facts = loaded.recommender.health()
        index = facts.get("index")
        return {
            "status": "ok",
            "index_loaded": True,
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 1),
            **facts,
            "index": Path(index).name if index else None,
            "index_loaded_at": round(loaded.loaded_at, 3),
        }

    # ---- hot reload --------------------------------------------------------------------
    def reload_if_changed(self) -> bool:
        """Load the index again if its manifest changed, and swap it in; True when it did.

        A rebuild that cannot be loaded (half written, another model) is logged and the old
        index keeps serving; the same broken manifest is not retried until it changes again.
        """
        with self._reload_lock:
            stamp = manifest_stamp(self.index_dir)
            if stamp is None or stamp == self._loaded.stamp or stamp == self._failed_stamp:
                return False
            try:
                fresh = Recommender.load(self.index_dir, **self._load_options)
                meta = fresh.meta()
            except (RecommenderError, OSError, ValueError, KeyError) as exc:
                self._failed_stamp = stamp
                log.warning("index %s changed but cannot be loaded (%s); the old index keeps serving",
                            self.index_dir.name, exc)
                return False
            if manifest_stamp(self.index_dir) != stamp:  # rebuilt again while we loaded: take the next one
                return False
            self._loaded = Loaded(fresh, meta, stamp, time.time())  # one assignment: requests see old or new
            self._failed_stamp = None
            log.info("index %s reloaded: %s", self.index_dir.name, fresh.health().get("counts"))
            return True

    def watch(self, interval_s: float) -> None:
        """Check for a rebuilt index every ``interval_s`` seconds in a background thread (0 turns it off)."""
        if interval_s <= 0 or self.index_dir is None or self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.reload_if_changed()
                except Exception:  # the watcher must survive anything a half-written index can throw
                    log.exception("checking index %s for a rebuild failed", self.index_dir.name)

        self._watcher = threading.Thread(target=loop, name="index-watcher", daemon=True)
        self._watcher.start()

    def stop_watching(self) -> None:
        """Stop the background watcher (tests; the server's own watcher ends with the process)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
            self._watcher = None
