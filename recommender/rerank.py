"""Optional second stage: re-score the best retrieved passages with a cross-encoder.

This module owns sentence-transformers' ``CrossEncoder`` (the bi-encoder stays
in :mod:`recommender.encoder`). A cross-encoder reads query and passage
together, so it judges relevance better than comparing two separate vectors,
at the price of one forward pass per passage: only the first ``depth`` hits are
re-scored, and only those are aggregated afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from recommender import config
from recommender.aggregate import Hit
from recommender.encoder import resolve_model
from recommender.errors import InvalidParameterError, ModelNotFoundError

log = logging.getLogger(__name__)


class Reranker:
    """A loaded cross-encoder that scores (query, passage) pairs. Load with :meth:`Reranker.load`."""

    def __init__(self, model, name: str, depth: int = config.RERANK_DEPTH, batch_size: int = 32) -> None:
        self.model = model
        self.name = name
        self.depth = depth
        self.batch_size = batch_size

    @classmethod
    def load(cls, name_or_dir: str, device: str | None = None, depth: int = config.RERANK_DEPTH) -> Reranker:
        """Load a cross-encoder from a local directory or a hub name (the latter needs internet or a cache).

        Raises:
            ModelNotFoundError: it cannot be found or loaded.
        """
        resolved = resolve_model(name_or_dir)
        local = Path(resolved).is_dir()
        try:
            from sentence_transformers.cross_encoder import CrossEncoder

            model = CrossEncoder(resolved, device=device, local_files_only=local)
        except Exception as exc:  # the hub client raises many types; all mean "cannot load"
            raise ModelNotFoundError(
                f"cannot load cross-encoder {name_or_dir!r}: {exc.__class__.__name__}: {exc}"
            ) from exc
        return cls(model, name=str(name_or_dir), depth=depth)

    def scores(self, query: str, passages: Sequence[str]) -> np.ndarray:
        """Relevance of each passage to ``query``: the model's score through a sigmoid, so 0..1 and higher is better."""
        if not passages:
            return np.zeros(0, dtype=np.float64)
        raw = self.model.predict([(query, p) for p in passages], batch_size=self.batch_size,
                                 show_progress_bar=False, activation_fn=_identity, convert_to_numpy=True)
        raw = np.asarray(raw, dtype=np.float64).reshape(len(passages), -1)[:, -1]
        return 1.0 / (1.0 + np.exp(-raw))

    def rerank(self, query: str, hits: Sequence[Hit], text_of: Callable[[Hit], str],
               depth: int | None = None) -> list[Hit]:
        """The first ``depth`` hits, re-ordered by cross-encoder score (which becomes their ``similarity``).

        ``cosine`` keeps each hit's embedding similarity for the evidence; ties
        keep the retrieval order; hits past ``depth`` are dropped.

        Raises:
            InvalidParameterError: ``depth`` below 1.
        """
        depth = self.depth if depth is None else depth
        if depth < 1:
            raise InvalidParameterError(f"rerank depth must be at least 1, got {depth}")
        head = sorted(hits, key=lambda h: h.rank)[:depth]
        scores = self.scores(query, [text_of(h) for h in head])
        order = np.argsort(-scores, kind="stable")
        return [Hit(head[i].anime_id, float(scores[i]), rank, head[i].review_id, head[i].row,
                    head[i].similarity if head[i].cosine is None else head[i].cosine)
                for rank, i in enumerate(order)]


def _identity(x):
    """Raw logits out of the model; :meth:`Reranker.scores` applies its own sigmoid whatever the model's default."""
    return x
