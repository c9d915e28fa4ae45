"""Retrieval: the dense top N (one FAISS search, filters applied inside it), BM25's best passages and
the synopses, turned into the ranked :class:`~recommender.aggregate.Hit` list an aggregation reads."""

from __future__ import annotations

import numpy as np

from recommender.aggregate import RankedHits
from recommender.fusion import Candidates, fuse
from recommender.index_data import Allowed, IndexData
from recommender.search_config import SearchConfig
from recommender.verdict import asks_for_negative


def similarity_unit(vector: np.ndarray, settings: SearchConfig) -> float:
    """One cosine unit of the model's similarity for this query: ``|query| · doc_norm`` (1 for cosine models)."""
    if settings.doc_norm == 1.0:
        return 1.0
    norm = float(np.linalg.norm(vector))
    return norm * settings.doc_norm if norm > 0 else 1.0


class Retriever:
    """Finds and fuses candidate passages in one :class:`IndexData` (read-only: safe across threads)."""

    def __init__(self, data: IndexData) -> None:
        self.data = data

    def dense(self, vectors: np.ndarray, top_n: int, allowed: Allowed) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(similarities, rows)`` of the best ``top_n`` allowed rows for each query vector, best first."""
        scores, rows = self.data.index.search(np.atleast_2d(vectors), top_n, allowed=allowed.rows)
        out = []
        for s, r in zip(scores, rows, strict=True):
            ok = r >= 0
            out.append((s[ok], r[ok]))
        return out

    def candidates(self, query: str, vector: np.ndarray, dense: tuple[np.ndarray, np.ndarray], allowed: Allowed,
                   settings: SearchConfig) -> Candidates:
        """The dense hits, plus BM25's best allowed passages, plus every allowed synopsis, with their signals."""
        data = self.data
        sims, rows = dense
        n_rows, n_syn = data.ntotal, len(data.synopsis_ids)
        use_lexical = data.lexical is not None and (settings.lexical_weight > 0 or settings.lexical_depth > 0)
        term_ids = data.lexical.term_ids(query) if use_lexical else []
        extra_rows = self.lexical_rows(term_ids, rows, allowed, settings) if term_ids else np.zeros(0, np.int64)
        synopses = np.zeros(0, dtype=np.int64)
        if settings.synopsis_weight > 0 and n_syn:
            synopses = np.flatnonzero(allowed.synopsis_mask(n_syn))
        all_rows = np.concatenate([rows, extra_rows]).astype(np.int64)
        similarity = np.concatenate([
            sims, data.index.similarities(vector, extra_rows),
            (data.synopsis_vectors @ vector)[synopses] if len(synopses) else np.zeros(0, np.float32),
        ])
        if term_ids and settings.lexical_weight > 0:
            lexical = np.concatenate([data.lexical.scores_at(term_ids, all_rows),
                                      data.lexical.scores_from(term_ids, n_rows)[synopses]])
        else:
            lexical = np.zeros(len(all_rows) + len(synopses), dtype=np.float32)
        dense_flags = np.zeros(len(lexical), dtype=bool)
        dense_flags[:len(rows)] = True
        return Candidates(
            rows=np.concatenate([all_rows, np.full(len(synopses), -1, dtype=np.int64)]),
            anime=np.concatenate([data.row_anime[all_rows], data.synopsis_ids[synopses]]),
            similarity=similarity, lexical=lexical, dense=dense_flags,
            negative=np.concatenate([data.row_negative[all_rows], np.zeros(len(synopses), dtype=bool)]),
        )

    def lexical_rows(self, term_ids: list[int], dense_rows: np.ndarray, allowed: Allowed,
                     settings: SearchConfig) -> np.ndarray:
        """Rows BM25 adds: the best passages for the query's rare words that no dense hit contains.

        Empty when lexical retrieval is off, when the dense top N covers at least
        ``lexical_coverage`` of the passages, or when every rare word is already in a dense hit.
        Only the rare words' postings are read (a few hundred passages at most).
        """
        lexical, n_rows = self.data.lexical, self.data.ntotal
        if settings.lexical_depth <= 0 or len(dense_rows) >= settings.lexical_coverage * n_rows:
            return np.zeros(0, dtype=np.int64)
        max_df = max(1.0, settings.lexical_rare_share * lexical.size)
        missing = [t for t in dict.fromkeys(term_ids)
                   if lexical.document_frequency(t) <= max_df and not np.isin(lexical.postings(t), dense_rows).any()]
        if not missing:
            return np.zeros(0, dtype=np.int64)
        holders = np.unique(np.concatenate([lexical.postings(t) for t in missing]))
        holders = holders[holders < n_rows]
        if allowed.rows is not None:
            holders = holders[allowed.rows.mask[holders]]
        scores = lexical.scores_at(missing, holders)
        order = np.lexsort((holders, -scores))[:settings.lexical_depth]
        return np.setdiff1d(holders[order], dense_rows).astype(np.int64)

    def hits(self, candidates: Candidates, order: np.ndarray, scores: np.ndarray,
             one_per_review: bool = False) -> RankedHits:
        """Hits for ``candidates[order]``: ``similarity`` is the ranking score, ``cosine`` the model's similarity.

        With ``one_per_review`` only each review's best passage is kept and ranks are
        renumbered — what :func:`~recommender.aggregate.best_hit_per_review` does, done
        on arrays before any :class:`Hit` is made.
        """
        rows = candidates.rows[order]
        reviews = np.where(rows >= 0, self.data.row_review[np.maximum(rows, 0)], -1)
        if one_per_review:
            keys = np.where(rows >= 0, reviews, -1 - candidates.anime[order])  # a synopsis is its own "review"
            first = np.sort(np.unique(keys, return_index=True)[1])
            order, rows, reviews = order[first], rows[first], reviews[first]
        anime = candidates.anime[order]
        review_ids = [rid if rid is not None else f"synopsis:{a}" for rid, a in zip(self.review_ids(reviews),
                                                                                    anime.tolist(), strict=True)]
        negative = self.data.row_negative[np.maximum(rows, 0)] & (rows >= 0)
        return RankedHits(anime, scores[order], review_ids, rows, candidates.similarity[order], negative)

    def review_ids(self, positions: np.ndarray) -> list[str | None]:
        """Review ids at ``positions`` (None for -1), read from the mapped table in one call."""
        positions = np.asarray(positions, dtype=np.int64)
        ids = self.data.reviews.take_ids(np.maximum(positions, 0))
        return [rid if p >= 0 else None for rid, p in zip(ids, positions.tolist(), strict=True)]

    def dense_hits(self, dense: tuple[np.ndarray, np.ndarray], unit: float, one_per_review: bool = False) -> RankedHits:
        """The dense hits alone (what the reference ``count`` vote reads), similarity in cosine units."""
        sims, rows = dense
        candidates = Candidates(rows=rows.astype(np.int64), anime=self.data.row_anime[rows], similarity=sims,
                                lexical=np.zeros(len(rows), np.float32), dense=np.ones(len(rows), dtype=bool))
        return self.hits(candidates, np.arange(len(rows)), sims.astype(np.float64) / unit, one_per_review)

    def fused_hits(self, query: str, vector: np.ndarray, dense: tuple[np.ndarray, np.ndarray], allowed: Allowed,
                   settings: SearchConfig, one_per_review: bool = False) -> RankedHits:
        """Dense, lexical and synopsis candidates fused and ranked (see :mod:`recommender.fusion`)."""
        candidates = self.candidates(query, vector, dense, allowed, settings)
        penalty = 0.0 if negative_intent(query, settings) else settings.negative_penalty
        order, fused = fuse(candidates, unit=similarity_unit(vector, settings),
                            synopsis_weight=settings.synopsis_weight, lexical_weight=settings.lexical_weight,
                            top_n=settings.top_n, negative_penalty=penalty)
        return self.hits(candidates, order, fused, one_per_review)


def negative_intent(query: str, settings: SearchConfig) -> bool:
    """Whether ``query`` is matched with negative reviews: it asks what reviewers disliked, and the settings look."""
    return settings.verdict_intent and asks_for_negative(query)

