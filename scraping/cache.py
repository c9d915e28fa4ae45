"""Raw-page cache: every page fetched once is kept, gzipped, so re-runs and re-parses never refetch it.

Layout: ``<root>/<key[:2]>/<key>.json.gz`` with ``key = sha256(url)``. Each file is one gzipped JSON
object ``{"url", "final_url", "status", "fetched_at", "text"}``; it is written to a temporary name and
renamed into place, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from recommender import config

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = config.DATA_DIR / "raw"


@dataclass(frozen=True)
class CachedPage:
    """One stored response: the requested URL, where it ended up, its HTTP status, when, and its body."""

    url: str
    status: int
    fetched_at: float
    text: str
    final_url: str | None = None


def cache_key(url: str) -> str:
    """The cache key of a URL: hex sha256 of the exact URL string."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class PageCache:
    """A directory of gzipped pages keyed by URL hash. Constructing one does no I/O."""

    def __init__(self, root: str | Path = DEFAULT_CACHE_DIR) -> None:
        self.root = Path(root)

    def path_for(self, url: str) -> Path:
        """Where the entry for ``url`` lives (whether or not it exists)."""
        key = cache_key(url)
        return self.root / key[:2] / f"{key}.json.gz"

    def get(self, url: str) -> CachedPage | None:
        """The cached page for ``url``, or None when absent or unreadable (an unreadable entry is a miss)."""
        path = self.path_for(url)
        try:
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, EOFError, ValueError) as exc:
            # A damaged entry must not stop a crawl: treat it as missing so the page is fetched again.
            log.warning("ignoring unreadable cache entry %s for %s: %s", path, url, exc)
            return None
        if data.get("url") != url:
            # A hash collision is practically impossible; a hand-copied file is not.
            log.warning("cache entry %s holds %r, not %r; ignoring it", path, data.get("url"), url)
            return None
        return CachedPage(
            url=url, status=int(data["status"]), fetched_at=float(data["fetched_at"]), text=data["text"],
            final_url=data.get("final_url"),
        )

    def put(self, page: CachedPage) -> Path:
        """Store ``page`` atomically, replacing any earlier entry for its URL."""
        path = self.path_for(page.url)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "url": page.url, "final_url": page.final_url, "status": page.status,
            "fetched_at": page.fetched_at, "text": page.text,
        }
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as handle:
                handle.write(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def delete(self, url: str) -> bool:
        """Drop the entry for ``url`` (e.g. a login wall that was cached as a 200); True if one existed."""
        try:
            self.path_for(url).unlink()
        except FileNotFoundError:
            return False
        return True

    def __contains__(self, url: str) -> bool:
        return self.path_for(url).exists()
