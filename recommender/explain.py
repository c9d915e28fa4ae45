"""Evidence: the review lines shown as the reason for a result, read from the mapped review table."""

from __future__ import annotations

import numpy as np

from recommender.aggregate import Hit
from recommender.evidence import snippet
from recommender.index import AllowedRows
from recommender.index_data import IndexData
from recommender.results import Evidence
from recommender.verdict import is_negative, verdict_tag
from scraping.models import review_url

#: Above this many rows an anime's passages are scored by a filtered index search instead of one by one.
DIRECT_SCORING_ROWS = 4096


class EvidenceFinder:
    """Builds :class:`~recommender.results.Evidence` for ranked anime (read-only: safe across threads)."""

    def __init__(self, data: IndexData) -> None:
        self.data = data

    def snippets(self, hits: list[Hit], query: str, count: int, max_chars: int,
                 prefer_negative: bool | None = None) -> list[Evidence]:
        """Snippets of the review hits closest in meaning to the query (the model's similarity, best first).

        Ranking may also weigh words (BM25) or a reranker, but the reason shown
        is the passage that means most nearly what was asked, and its similarity.
        The same passage twice explains nothing new, so duplicates are skipped.
        With ``prefer_negative`` set, passages of reviews whose verdict agrees come
        first (negative reviews when True, the others when False), each group by
        meaning; None orders by meaning alone.
        """
        evidence: list[Evidence] = []
        seen: set[str] = set()

        def order(hit: Hit) -> tuple[bool, float]:
            disagrees = prefer_negative is not None and hit.negative != prefer_negative
            return disagrees, -(hit.similarity if hit.cosine is None else hit.cosine)

        for hit in sorted((h for h in hits if h.is_review), key=order):
            if len(evidence) >= count:
                break
            row = hit.row
            text = self.data.reviews.text(self.data.row_review[row])
            passage = snippet(text, int(self.data.row_start[row]), int(self.data.row_end[row]), query, max_chars)
            if not passage or passage in seen:
                continue
            seen.add(passage)
            similarity = hit.similarity if hit.cosine is None else hit.cosine
            score, tags = self.data.reviews.verdict(self.data.row_review[row])
            evidence.append(Evidence(review_id=hit.review_id, similarity=round(similarity, 4),
                                     snippet=passage, url=review_url(hit.review_id), review_score=score,
                                     verdict=verdict_tag(tags), negative=is_negative(score, tags)))
        return evidence

    def nearest_reviews(self, vector: np.ndarray, anime_ids: list[int] | set[int],
                        per_anime: int | None = None) -> dict[int, list[Hit]]:
        """Each anime's reviews ranked by the similarity of their best passage to ``vector``.

        Scores only those anime's rows (one decode per row, or one filtered search
        for a very large anime), never a growing search of the whole index; with
        ``per_anime`` only that many reviews of each anime are kept.
        """
        data = self.data
        rows = np.concatenate([data.rows_of_anime(a) for a in anime_ids]) if anime_ids else np.zeros(0, np.int64)
        if not len(rows):
            return {}
        if len(rows) <= DIRECT_SCORING_ROWS:
            sims = data.index.similarities(vector, rows)
        else:
            sims, found = data.index.search(vector, DIRECT_SCORING_ROWS, allowed=AllowedRows.of_rows(rows, data.ntotal))
            rows, sims = found[0][found[0] >= 0], sims[0][found[0] >= 0]
        order = np.argsort(-sims, kind="stable")
        rows, sims = rows[order], sims[order]
        first = np.sort(np.unique(data.row_review[rows], return_index=True)[1])  # best passage of each review
        rows, sims = rows[first], sims[first]
        anime = data.row_anime[rows]
        if per_anime is not None:
            seen = np.zeros(len(rows), dtype=np.int64)
            for a in np.unique(anime):
                where = np.flatnonzero(anime == a)
                seen[where] = np.arange(len(where))
            keep = seen < per_anime
            rows, sims, anime = rows[keep], sims[keep], anime[keep]
        review_ids = data.reviews.take_ids(data.row_review[rows])
        negative = data.row_negative[rows].tolist()
        grouped: dict[int, list[Hit]] = {}
        for i, (a, s, r, rid, bad) in enumerate(zip(anime.tolist(), sims.tolist(), rows.tolist(), review_ids,
                                                    negative, strict=True)):
            grouped.setdefault(a, []).append(Hit(a, s, i, rid, r, negative=bad))
        return grouped
