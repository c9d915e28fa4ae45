"""How an index is meant to be searched: one record, written into the manifest at build time.

Every tunable of the query path lives here (defaults from :mod:`recommender.config`),
so an index directory says how it should be queried and a caller can change one
setting for one experiment (``config.replace(lexical_depth=0)``) without touching
module globals. Similarities are compared in *cosine units*: a dot-product model's
scores are divided by ``|query| · doc_norm`` (see :attr:`SearchConfig.doc_norm`), so
constants tuned on a cosine model mean the same for TAS-B.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass

from recommender import config
from recommender.aggregate import AGGREGATIONS
from recommender.errors import InvalidParameterError, UnknownAggregationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchConfig:
    """Query-time settings of one index.

    Attributes:
        aggregation: how passage hits become ranked anime (a name in ``AGGREGATIONS``).
        top_n: passages retrieved by embedding similarity per query.
        synopsis_weight: an anime's synopsis competes with review passages at this weight (0: off).
        lexical_weight: ``weight × BM25 / best BM25`` is added to every candidate passage (0: off).
        lexical_depth: for query words rare in the corpus that no dense hit contains, the best this
            many BM25 passages for those words join the candidates, so a name the embedding blurs is
            still found (0: BM25 only re-weights candidates).
        lexical_rare_share: a word is rare when at most this share of the passages contain it.
        lexical_coverage: lexical retrieval runs only while ``top_n`` is below this share of the passages
            (a dense top N that covers much of the corpus already holds the rare words' passages).
        doc_norm: median length of the indexed vectors (1 for cosine models); a query's
            similarities are divided by ``|query| · doc_norm`` before fusion and aggregation.
        soft_temperature, soft_alpha: ``soft`` aggregation (smooth maximum, review-count correction).
        top_k: ``topk`` aggregation (mean of the best ``top_k`` reviews).
        rrf_k: ``rrf`` aggregation constant.
        norm_alpha: ``norm`` aggregation (power of the review count dividing the sum).
        hits_per_review: passages of one review that vote (1: review-level voting, a review counts once;
            0: passage-level, every matching passage counts).
        negative_penalty: subtracted (cosine units) from passages of negative reviews before aggregation,
            unless the query asks for what reviewers disliked (see :mod:`recommender.verdict`).
        dislike_weight: negative reviews vote against an anime instead of for it, at this weight
            (:func:`recommender.aggregate.aggregate_with_dislikes`; 0: off).
        verdict_intent: a query that asks for what reviewers disliked (``verdict.asks_for_negative``) is
            matched with negative reviews: no penalty, and its evidence prefers them.
        evidence_by_verdict: evidence prefers passages whose review's verdict agrees with the query
            (non-negative reviews for a query that asks what to watch).
        evidence_per_result: review snippets shown per anime.
        snippet_chars: longest snippet.
    """

    aggregation: str = config.DEFAULT_AGGREGATION
    top_n: int = config.DEFAULT_TOP_N
    synopsis_weight: float = config.SYNOPSIS_WEIGHT
    lexical_weight: float = config.LEXICAL_WEIGHT
    lexical_depth: int = config.LEXICAL_DEPTH
    lexical_rare_share: float = config.LEXICAL_RARE_SHARE
    lexical_coverage: float = config.LEXICAL_COVERAGE
    doc_norm: float = 1.0
    soft_temperature: float = config.SOFT_TEMPERATURE
    soft_alpha: float = config.SOFT_ALPHA
    top_k: int = config.TOP_K
    rrf_k: float = config.RRF_K
    norm_alpha: float = config.NORM_ALPHA
    hits_per_review: int = config.HITS_PER_REVIEW
    negative_penalty: float = config.NEGATIVE_PENALTY
    dislike_weight: float = config.DISLIKE_WEIGHT
    verdict_intent: bool = config.VERDICT_INTENT
    evidence_by_verdict: bool = config.EVIDENCE_BY_VERDICT
    evidence_per_result: int = config.EVIDENCE_PER_RESULT
    snippet_chars: int = config.SNIPPET_CHARS

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise UnknownAggregationError(
                f"unknown aggregation {self.aggregation!r}; choose from {', '.join(sorted(AGGREGATIONS))}")
        for name in ("top_n", "lexical_depth", "top_k", "hits_per_review", "evidence_per_result", "snippet_chars"):
            value = getattr(self, name)
            lowest = 0 if name in ("lexical_depth", "hits_per_review") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise InvalidParameterError(f"search setting {name} must be an integer of at least {lowest},"
                                            f" got {value!r}")
        for name in ("verdict_intent", "evidence_by_verdict"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(f"search setting {name} must be true or false, got {getattr(self, name)!r}")
        for name in ("synopsis_weight", "lexical_weight", "lexical_rare_share", "lexical_coverage", "doc_norm",
                     "soft_temperature", "soft_alpha", "rrf_k", "norm_alpha", "negative_penalty", "dislike_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise InvalidParameterError(f"search setting {name} must be a non-negative number, got {value!r}")
        if self.doc_norm <= 0 or self.soft_temperature <= 0:
            raise InvalidParameterError("search settings doc_norm and soft_temperature must be positive")

    def replace(self, **changes: object) -> SearchConfig:
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict | None) -> SearchConfig:
        """The settings a manifest records; keys this version does not know are ignored with a warning.

        Raises:
            InvalidParameterError, UnknownAggregationError: a recorded value is invalid.
        """
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            log.warning("ignoring unknown search settings in the manifest: %s", ", ".join(unknown))
        return cls(**{k: v for k, v in values.items() if k in known})

    @classmethod
    def parse_changes(cls, items: list[str]) -> dict:
        """``["soft_alpha=0.5", "evidence_by_verdict=false"]`` → ``{"soft_alpha": 0.5, "evidence_by_verdict": False}``.

        Values are read as JSON (numbers, ``true``/``false``), else kept as text; the
        changed settings are validated like any others when applied.

        Raises:
            InvalidParameterError: an item without ``=`` or a name that is not a search setting.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        changes = {}
        for item in items:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in known:
                raise InvalidParameterError(f"expected NAME=VALUE with NAME one of {', '.join(sorted(known))};"
                                            f" got {item!r}")
            try:
                changes[name] = json.loads(value)
            except ValueError:
                changes[name] = value.strip()
        return changes

    def aggregation_params(self, name: str) -> dict:
        """Keyword parameters of the aggregation ``name`` under these settings."""
        return {
            "soft": {"temperature": self.soft_temperature, "alpha": self.soft_alpha},
            "topk": {"top_k": self.top_k},
            "rrf": {"rrf_k": self.rrf_k},
            "norm": {"alpha": self.norm_alpha},
        }.get(name, {})
