"""Search-quality evaluation of a built index: known-item search, MAL labels, hand-written queries, ``similar``.

The query sets and their dev/test splits are in :mod:`recommender.eval_sets`;
every number is computed by :mod:`recommender.metrics` from a run
``{query_id: {anime_id: score}}`` and qrels ``{query_id: {anime_id: grade}}``.
Known-item evaluation masks every held-out review (dev and test alike) at query
time (a FAISS ID selector and a BM25 mask), which gives the same hits as an
index built without them (BM25's word statistics still count them), and the
popularity corrections see the review counts without them.

Tuning code reads :func:`dev_benchmark` only: it never returns a test query.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recommender import config, metrics
from recommender.aggregate import AnimeScore
from recommender.build import FORMAT_VERSION, anime_centroids, document_norm
from recommender.chunking import chunk_reviews
from recommender.eval_sets import (
    KnownItemQuery,
    LabelledQuery,
    QuerySet,
    hand_written_sets,
    held_out_split,
    in_split,
    known_item_queries,
    known_item_set,
    label_set,
    load_label_queries,
    query_window,
    split_held_out,
)
from recommender.index import VectorIndex
from recommender.index_data import Allowed
from recommender.search_config import SearchConfig

__all__ = [
    "KNOWN_ITEM_KEYS", "KnownItemQuery", "LabelledQuery", "held_out_split", "query_window", "known_item_queries",
    "Benchmark", "benchmark", "dev_benchmark", "rank_queries", "rank_of", "ranking_metrics", "known_item_split",
    "score_known_item", "measure_sets", "point_means", "evaluate_index", "in_memory_recommender", "known_item",
]

#: Metric keys of :func:`known_item` (the GPL training loop reads these).
KNOWN_ITEM_KEYS = ("queries", "hit@1", "hit@10", "mrr@10", "macro_mrr@10")
#: What each query set is scored on. Known-item also gets ``macro_mrr@10`` (every anime weighs the same).
SET_MEASURES = {
    "known_item": ("hit@1", "hit@10", "mrr@10"),
    "labels": ("p@10", "ndcg@10"),
    "long_tail": ("hit@1", "hit@10", "mrr@10"),
    "genres": ("recall@10",),
}
MACRO = {"known_item": ("mrr@10",)}
#: Results per query whose evidence the negative-evidence share counts (a page of results).
EVIDENCE_RESULTS = 10
#: Settings under which the reviewer's verdict plays no part (the "before" of the negative-evidence share).
VERDICT_IGNORED = {"negative_penalty": 0.0, "dislike_weight": 0.0, "verdict_intent": False,
                   "evidence_by_verdict": False}


# ---- one scorer for ranks too (the training loop keeps its rank lists) -----------------------
def rank_of(ranked: Sequence[int], answers: Iterable[int]) -> int | None:
    """1-based position of the first of ``answers`` in ``ranked``, or None."""
    wanted = set(answers)
    for position, anime_id in enumerate(ranked, 1):
        if anime_id in wanted:
            return position
    return None


def ranking_metrics(ranks: Sequence[int | None], groups: Sequence[int] | None = None, k: int = 10) -> dict:
    """hit@1, hit@k, MRR@k over single-answer queries given the answer's rank, and (with ``groups``) macro MRR@k.

    Computed by :mod:`recommender.metrics` on the equivalent run: the answer at its
    rank behind placeholder anime (None: not ranked).
    """
    qrels = {str(i): {0: 1} for i in range(len(ranks))}
    rankings = {str(i): [*range(-1, -r, -1), 0] if r is not None else [] for i, r in enumerate(ranks)}
    values = metrics.per_query(metrics.run_from_rankings(rankings), qrels, ("hit@1", f"hit@{k}", f"mrr@{k}"))
    out = {"queries": len(ranks), **{name: metrics.mean(v) for name, v in values.items()}}
    if groups is not None:
        out[f"macro_mrr@{k}"] = metrics.macro_mean(values[f"mrr@{k}"], {str(i): g for i, g in enumerate(groups)})
    return out


# ---- running queries against a Recommender --------------------------------------------------
def rank_queries(recommender, texts: Sequence[str], aggregations: Sequence[str], *, top_n: int | None = None,
                 allowed: Allowed | None = None, review_counts: Mapping[int, int] | None = None,
                 batch_size: int = 64, reranker=None, vectors: np.ndarray | None = None) -> dict[str, list[list[int]]]:
    """Ranked anime ids for every query under every aggregation; the dense search runs once per query.

    Args:
        recommender: a :class:`recommender.search.Recommender` (its search settings apply).
        texts: queries.
        aggregations: names to compare.
        top_n: passages retrieved per query (default: the recommender's setting).
        allowed: what may be returned (held-out reviews hidden); None: everything.
        review_counts: reviews per anime as the aggregations should see them (held-out ones subtracted).
        batch_size: queries encoded per forward pass.
        reranker: a :class:`recommender.rerank.Reranker` applied to every query's hits before aggregating.
        vectors: the queries' embeddings when already computed (tuning reuses them across settings).
    """
    from recommender.retrieval import similarity_unit

    settings = recommender.settings if top_n is None else recommender.settings.replace(top_n=int(top_n))
    allowed = allowed or Allowed()
    retriever = recommender.retriever
    aggregations = list(dict.fromkeys(aggregations))
    out: dict[str, list[list[int]]] = {name: [] for name in aggregations}
    fused_needed = any(name != "count" for name in aggregations)
    for lo in range(0, len(texts), batch_size):
        batch = list(texts[lo:lo + batch_size])
        batch_vectors = (recommender.encoder.encode(batch, batch_size=batch_size) if vectors is None
                         else vectors[lo:lo + batch_size])
        for text, vector, dense in zip(batch, batch_vectors, retriever.dense(batch_vectors, settings.top_n, allowed),
                                       strict=True):
            single = reranker is None  # one passage per review picked on arrays (see Recommender.rank)
            plain = retriever.dense_hits(dense, similarity_unit(vector, settings), single)
            fused = (retriever.fused_hits(text, vector, dense, allowed, settings,
                                          single and settings.hits_per_review == 1) if fused_needed else plain)
            if reranker is not None:
                plain, fused = (reranker.rerank(text, hits, recommender.hit_text) for hits in (plain, fused))
            for name in aggregations:
                hits = plain if name == "count" else fused
                once = reranker is None and (name == "count" or settings.hits_per_review == 1)
                ranking = recommender.rank(hits, name, review_counts=review_counts, query=text, deduplicated=once)
                out[name].append(_ranked_ids(ranking))
    return out


def _ranked_ids(ranking: list[AnimeScore]) -> list[int]:
    return [entry.anime_id for entry in ranking]


# ---- the benchmark of one split -------------------------------------------------------------
@dataclass(frozen=True)
class Benchmark:
    """The query sets of one split over one index, and what known-item search must hide.

    Attributes:
        split: ``dev``, ``test`` or ``all``.
        sets: ``{name: QuerySet}`` (``known_item``, ``labels``, ``long_tail``, ``genres``).
        allowed: every held-out review's rows hidden (both splits: the corpus is the same for dev and test).
        review_counts: reviews per anime without the held-out ones.
        held_out_reviews: how many reviews are hidden.
    """

    split: str
    sets: dict[str, QuerySet]
    allowed: Allowed
    review_counts: dict[int, int]
    held_out_reviews: int


def known_item_split(recommender, *, split: str = "all", seed: int = config.EVAL_SEED,
                     fraction: float = config.EVAL_HOLDOUT_FRACTION, max_queries: int | None = None,
                     window_words: int = 30) -> tuple[list[KnownItemQuery], Allowed, dict[int, int]]:
    """Held-out queries of ``split`` for a built index, what the search may return without *every* held-out
    review, and the review counts without them."""
    reviews = recommender.data.reviews
    ids, anime, texts = reviews.review_ids(), reviews.anime_ids, reviews.texts()
    pairs = list(zip(ids, anime.tolist(), strict=True))
    held = held_out_split(pairs, fraction=fraction, seed=seed)
    side = split_held_out(pairs, held, seed=seed)
    wanted = {rid for rid in held if in_split(side[rid], split)}
    queries = known_item_queries(zip(ids, anime, texts, strict=True), wanted, max_queries=max_queries,
                                 window_words=window_words, seed=seed)
    counts = dict(recommender.review_counts)
    for review_id, anime_id in pairs:
        if review_id in held:
            counts[int(anime_id)] -= 1
    return queries, recommender.data.allowed_rows_mask(~recommender.data.rows_of_reviews(held)), counts


def benchmark(recommender, split: str, *, seed: int = config.EVAL_SEED, max_queries: int | None = None,
              long_tail: Sequence[LabelledQuery] | None = None, genres: Sequence[LabelledQuery] | None = None,
              label_queries: Sequence[tuple[str, str]] | None = None) -> Benchmark:
    """Every query set of ``split`` (``dev``, ``test`` or ``all``) for ``recommender``'s index.

    Args:
        recommender: a loaded :class:`recommender.search.Recommender`.
        split: which half of every set.
        seed: the split's seed.
        max_queries: cap on known-item queries (None: every held-out review of the split).
        long_tail, genres: hand-written queries (default :mod:`recommender.eval_queries`).
        label_queries: ``(label, query)`` rows (default: ``eval_data/mal_label_queries.tsv``).
    """
    from recommender import eval_queries

    queries, allowed, counts = known_item_split(recommender, split=split, seed=seed, max_queries=max_queries)
    labels_of = {a: recommender.genre_labels(a) for a in recommender.review_counts}
    tail, genre = hand_written_sets(eval_queries.LONG_TAIL if long_tail is None else long_tail,
                                    eval_queries.GENRES if genres is None else genres, labels_of, split, seed=seed)
    labels = label_set(load_label_queries() if label_queries is None else label_queries, labels_of, split, seed=seed)
    sets = {"known_item": known_item_set(queries), "labels": labels, "long_tail": tail, "genres": genre}
    held = sum(recommender.review_counts.values()) - sum(counts.values())
    return Benchmark(split, sets, allowed, counts, held)


def dev_benchmark(recommender, **options) -> Benchmark:
    """The dev half of every query set: what tuning may read (see :func:`benchmark`)."""
    return benchmark(recommender, "dev", **options)


def measure_sets(recommender, bench: Benchmark, aggregations: Sequence[str], *, top_n: int | None = None,
                 reranker=None, vectors: Mapping[str, np.ndarray] | None = None) -> dict[str, dict[str, dict]]:
    """Per-query values: ``{set: {aggregation: {measure: {query_id: value}}}}`` for every set of ``bench``.

    Args:
        recommender: its settings apply.
        bench: the query sets.
        aggregations: names to score.
        top_n: passages retrieved (default: the settings').
        reranker: optional cross-encoder between retrieval and aggregation.
        vectors: ``{set name: query embeddings}`` already computed (see :func:`encode_sets`).
    """
    out: dict[str, dict[str, dict]] = {}
    for name, qset in bench.sets.items():
        if not len(qset):
            out[name] = {agg: {m: {} for m in SET_MEASURES[name]} for agg in aggregations}
            continue
        known = name == "known_item"
        ranked = rank_queries(recommender, qset.texts, aggregations, top_n=top_n,
                              allowed=bench.allowed if known else None,
                              review_counts=bench.review_counts if known else None, reranker=reranker,
                              vectors=None if vectors is None else vectors.get(name))
        out[name] = {agg: metrics.per_query(metrics.run_from_rankings(dict(zip(qset.ids, lists, strict=True))),
                                            qset.qrels, SET_MEASURES[name])
                     for agg, lists in ranked.items()}
    return out


def encode_sets(recommender, bench: Benchmark) -> dict[str, np.ndarray]:
    """Every set's query embeddings, once (tuning scores many settings with the same queries)."""
    return {name: recommender.encoder.encode(list(qset.texts)) for name, qset in bench.sets.items() if len(qset)}


def point_means(values: Mapping[str, Mapping[str, Mapping]], bench: Benchmark) -> dict[str, dict[str, dict]]:
    """``{set: {aggregation: {"queries": n, measure: mean, "macro_<measure>": macro mean}}}`` from per-query values."""
    out: dict[str, dict[str, dict]] = {}
    for name, by_agg in values.items():
        qset = bench.sets[name]
        out[name] = {}
        for agg, measures in by_agg.items():
            row = {"queries": len(qset), **{m: metrics.mean(v) for m, v in measures.items()}}
            for m in MACRO.get(name, ()):
                row[f"macro_{m}"] = metrics.macro_mean(measures[m], qset.groups)
            out[name][agg] = row
    return out


def intervals(values: Mapping[str, Mapping[str, Mapping]], bench: Benchmark, *, baseline: str | None = "count",
              resamples: int = metrics.RESAMPLES, seed: int = 0) -> tuple[dict, dict]:
    """95 % bootstrap intervals of every mean, and of every aggregation's paired difference to ``baseline``.

    Each average is resampled over its own units: a mean over queries resamples queries, the
    known-item macro mean (every anime weighs the same) resamples anime.

    Returns:
        ``({set: {agg: {measure: [low, high]}}}, {set: {agg: {measure: {"mean", "low", "high"}}}})``.
    """
    spans: dict[str, dict] = {}
    diffs: dict[str, dict] = {}
    for name, by_agg in values.items():
        qset = bench.sets[name]
        if not len(qset):
            continue
        groups = [qset.groups[q] for q in qset.ids]
        spans[name], diffs[name] = defaultdict(dict), defaultdict(dict)
        base = baseline if baseline in by_agg else None
        measures = [(m, False) for m in SET_MEASURES[name]] + [(m, True) for m in MACRO.get(name, ())]
        for m, macro in measures:
            scores = {agg: [by_agg[agg][m][q] for q in qset.ids] for agg in by_agg}
            key = f"macro_{m}" if macro else m
            found, differences = metrics.bootstrap(scores, groups if macro else None, macro=macro, baseline=base,
                                                   resamples=resamples, seed=seed)
            for agg, interval in found.items():
                spans[name][agg][key] = [interval.low, interval.high]
            for agg, interval in differences.items():
                diffs[name][agg][key] = interval.to_dict()
        spans[name], diffs[name] = dict(spans[name]), dict(diffs[name])
    return spans, diffs


def score_known_item(recommender, queries: Sequence[KnownItemQuery], aggregations: Sequence[str], *,
                     allowed: Allowed | None = None, review_counts: Mapping[int, int] | None = None,
                     top_n: int | None = None, reranker=None) -> dict[str, dict]:
    """Known-item metrics per aggregation: ``{agg: {"queries", "hit@1", "hit@10", "mrr@10", "macro_mrr@10"}}``."""
    bench = Benchmark("all", {"known_item": known_item_set(queries)}, allowed or Allowed(),
                      dict(review_counts if review_counts is not None else recommender.review_counts), 0)
    values = measure_sets(recommender, bench, aggregations, top_n=top_n, reranker=reranker)
    return point_means(values, bench)["known_item"]


# ---- negative reviews shown as evidence ------------------------------------------------------
def negative_evidence(recommender, texts: Sequence[str], *, limit: int = EVIDENCE_RESULTS) -> list[list[int]]:
    """For every query, one 0/1 per evidence snippet shown for its top ``limit`` results: 1 = a negative review."""
    return [[int(item.negative) for result in recommender.search(text, limit=limit).results
             for item in result.evidence] for text in texts]


def similar_negative_evidence(recommender, anime_ids: Iterable[int], *,
                              limit: int = EVIDENCE_RESULTS) -> list[list[int]]:
    """Like :func:`negative_evidence` for ``similar`` of each anime."""
    return [[int(item.negative) for result in recommender.similar(a, limit=limit).results for item in result.evidence]
            for a in anime_ids]


def share(flags: Sequence[Sequence[int]], *, resamples: int = metrics.RESAMPLES, seed: int = 0) -> dict:
    """Pooled share of 1s with a bootstrap interval that resamples whole queries."""
    values = [v for per in flags for v in per]
    if not values:
        return {"share": 0.0, "interval": [0.0, 0.0], "snippets": 0, "queries": len(flags)}
    groups = [i for i, per in enumerate(flags) for _ in per]
    found, _ = metrics.bootstrap({"share": values}, groups, resamples=resamples, seed=seed)
    interval = found["share"]
    return {"share": interval.mean, "interval": [interval.low, interval.high], "snippets": len(values),
            "queries": len(flags)}


def evidence_report(recommender, bench: Benchmark, *, resamples: int = metrics.RESAMPLES) -> dict:
    """Share of shown evidence from negative reviews, with the verdict ignored and with the recommender's settings.

    Queries: the label and hand-written queries of the split (the known-item windows are parts of reviews,
    not requests); plus ``similar`` of every indexed anime.
    """
    texts = [t for name in ("labels", "long_tail", "genres") for t in bench.sets[name].texts]
    ignored = recommender.with_settings(**VERDICT_IGNORED)
    anime = sorted(recommender.review_counts)
    return {
        "queries": len(texts),
        "results_per_query": EVIDENCE_RESULTS,
        "verdict_ignored": share(negative_evidence(ignored, texts), resamples=resamples),
        "settings": share(negative_evidence(recommender, texts), resamples=resamples),
        "similar_verdict_ignored": share(similar_negative_evidence(ignored, anime), resamples=resamples),
        "similar_settings": share(similar_negative_evidence(recommender, anime), resamples=resamples),
    }


# ---- MAL user recommendations (anime → anime) -----------------------------------------------
def load_user_recs(path: str | Path) -> list[tuple[int, int]]:
    """``(anime_id, recommended_anime_id)`` pairs from ``recs.jsonl`` (source_anime_id / rec_anime_id), deduplicated."""
    pairs: dict[tuple[int, int], None] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                pairs[(int(row["source_anime_id"]), int(row["rec_anime_id"]))] = None
    return list(pairs)


def recommendation_targets(pairs: Iterable[tuple[int, int]], indexed: set[int]) -> dict[int, set[int]]:
    """For every indexed anime, the indexed anime that MAL users paired with it (either direction, not itself)."""
    targets: dict[int, set[int]] = defaultdict(set)
    for a, b in pairs:
        if a in indexed and b in indexed and a != b:
            targets[a].add(b)
            targets[b].add(a)
    return dict(targets)


def score_similar(recommender, targets: Mapping[int, set[int]], k: int = 10, *,
                  resamples: int = metrics.RESAMPLES) -> dict:
    """recall@k of :meth:`Recommender.similar_scores` against MAL user recommendations, and a popularity baseline.

    The baseline ranks every other anime by its number of reviews: what a "more
    like this" that ignores the source anime would achieve. Both with 95 % intervals
    and the paired difference (anime resampled).
    """
    by_reviews = sorted(recommender.review_counts, key=lambda a: (-recommender.review_counts[a], a))
    qrels = {str(a): {b: 1 for b in relevant} for a, relevant in sorted(targets.items())}
    runs = {
        "centroid": metrics.run_from_rankings({str(a): [b for b, _ in recommender.similar_scores(a)]
                                               for a in targets}),
        "popularity": metrics.run_from_rankings({str(a): [b for b in by_reviews if b != a] for a in targets}),
    }
    measure = f"recall@{k}"
    values = {name: list(metrics.per_query(run, qrels, [measure])[measure].values()) for name, run in runs.items()}
    out: dict = {"anime": len(qrels)}
    if not qrels:
        return {**out, **{name: {measure: 0.0, "interval": [0.0, 0.0]} for name in runs}}
    found, diff = metrics.bootstrap(values, baseline="popularity", resamples=resamples)
    for name, interval in found.items():
        out[name] = {measure: interval.mean, "interval": [interval.low, interval.high]}
    out["difference"] = diff["centroid"].to_dict()
    return out


# ---- the full evaluation of a built index ----------------------------------------------------
def evaluate_index(recommender, aggregations: Sequence[str] | None = None, *, split: str = "test",
                   top_n: int | None = None, recs_path: str | Path | None = None, max_queries: int | None = None,
                   rerank: str | None = None, resamples: int = metrics.RESAMPLES, evidence: bool = True) -> dict:
    """Every part of the evaluation for every aggregation on one split, with intervals, in one report.

    Args:
        recommender: a loaded :class:`recommender.search.Recommender` (its search settings apply).
        aggregations: names to compare (default: all); ``count`` is the baseline of the paired differences.
        split: ``test`` (what is published), ``dev`` (what tuning reads) or ``all`` (both halves).
        top_n: passages retrieved per query (default: the recommender's setting).
        recs_path: MAL user recommendations (``recs.jsonl``) for the ``similar`` part; skipped when None or absent.
        max_queries: cap on known-item queries (None: every held-out review of the split).
        rerank: a cross-encoder name or directory: adds a ``"<default>+rerank"`` row.
        resamples: bootstrap resamples.
        evidence: also measure the negative-review share of the evidence shown.

    Returns:
        ``{"setup", "known_item"|"labels"|"long_tail"|"genres": {agg: {"queries", measure: mean}},
        "intervals": {set: {agg: {measure: [low, high]}}}, "vs_count": {set: {agg: {measure: {mean, low, high}}}},
        "similar": {...} or None, "negative_evidence": {...} or None}``.
    """
    from recommender.aggregate import AGGREGATIONS

    aggregations = list(dict.fromkeys(aggregations or AGGREGATIONS))
    bench = benchmark(recommender, split, max_queries=max_queries)
    values = measure_sets(recommender, bench, aggregations, top_n=top_n)
    if rerank:
        _add_rerank_rows(values, recommender, bench, rerank, top_n)
    settings = recommender.settings
    report = {
        "setup": {
            "index": str(recommender.index_dir) if recommender.index_dir else None,
            "model": recommender.manifest.get("model", {}).get("name"),
            "split": split,
            "seed": config.EVAL_SEED,
            "held_out_reviews": bench.held_out_reviews,
            "known_item_anime": len({bench.sets["known_item"].groups[q] for q in bench.sets["known_item"].ids}),
            "top_n": top_n or settings.top_n,
            "synopses": int(len(recommender.data.synopsis_ids)),
            "settings": settings.to_dict(),
            "resamples": resamples,
        },
        **point_means(values, bench),
    }
    report["intervals"], report["vs_count"] = intervals(values, bench, resamples=resamples)
    report["similar"] = None
    if recs_path is not None and Path(recs_path).exists():
        targets = recommendation_targets(load_user_recs(recs_path), set(recommender.review_counts))
        report["similar"] = score_similar(recommender, targets, resamples=resamples)
    report["negative_evidence"] = evidence_report(recommender, bench, resamples=resamples) if evidence else None
    return report


def _add_rerank_rows(values: dict, recommender, bench: Benchmark, rerank: str, top_n: int | None) -> None:
    """Score the default aggregation once more with a cross-encoder between retrieval and aggregation."""
    from recommender.rerank import Reranker

    name = recommender.settings.aggregation
    reranked = measure_sets(recommender, bench, [name], top_n=top_n, reranker=Reranker.load(rerank))
    for part, by_agg in reranked.items():
        values[part][f"{name}+rerank"] = by_agg[name]


# ---- in-memory index for training-time evaluation -------------------------------------------
def review_chunks(encoder, reviews: Sequence) -> tuple[pd.DataFrame, list[str]]:
    """The chunk table of ``reviews`` (``scraping.models.Review`` with text) and each chunk's passage, cut exactly
    as ``python -m recommender build`` cuts them (same window and overlap)."""
    rows = [(c.review_id, c.anime_id, c.chunk_no, c.start, c.end) for c in chunk_reviews(
        ((r.review_id, r.anime_id, r.text) for r in reviews), encoder.token_offsets, encoder.tokens_per_chunk,
        config.CHUNK_OVERLAP_TOKENS)]
    chunks = pd.DataFrame(rows, columns=["review_id", "anime_id", "chunk_no", "start", "end"])
    text_of = {r.review_id: r.text for r in reviews}
    passages = [text_of[rid][a:b] for rid, a, b in zip(chunks["review_id"], chunks["start"], chunks["end"],
                                                        strict=True)]
    return chunks, passages


def recommender_over(encoder, reviews: Sequence, chunks: pd.DataFrame, vectors: np.ndarray,
                     settings: SearchConfig | None = None):
    """A :class:`Recommender` with a flat in-memory index of ``vectors`` (row i = ``chunks`` row i) and the
    same BM25 over the chunks as a built index (which also has synopses: there are none here).
    ``settings`` replaces the default search settings (its ``doc_norm`` is measured here)."""
    from recommender.build import build_lexical
    from recommender.index_data import IndexData
    from recommender.review_table import ReviewTable
    from recommender.search import Recommender

    text_of = {r.review_id: r.text for r in reviews}
    catalog = {}
    for r in reviews:
        catalog.setdefault(int(r.anime_id), {"title": r.anime_title or f"Anime {r.anime_id}"})
    centroids, centroid_ids = anime_centroids(vectors, chunks["anime_id"].to_numpy(), encoder.normalize)
    position = {r.review_id: i for i, r in enumerate(reviews)}
    manifest = {"format_version": FORMAT_VERSION, "model": {"name": encoder.name}, "similarity": encoder.similarity,
                "counts": {"reviews": len(reviews), "chunks": len(chunks), "anime": len(catalog)}}
    data = IndexData(
        manifest=manifest,
        search=(settings or SearchConfig()).replace(doc_norm=document_norm(vectors, encoder.normalize)),
        index=VectorIndex.build(vectors, "flat"), reviews=ReviewTable.from_reviews(reviews),
        row_review=np.array([position[rid] for rid in chunks["review_id"]], dtype=np.int64),
        row_anime=chunks["anime_id"].to_numpy(np.int64), row_start=chunks["start"].to_numpy(np.int64),
        row_end=chunks["end"].to_numpy(np.int64), catalog=catalog,
        lexical=build_lexical(chunks, text_of, []), anime_vectors=centroids, anime_vector_ids=centroid_ids,
    )
    return Recommender(data, encoder)


def in_memory_recommender(encoder, reviews: Sequence, batch_size: int = config.ENCODE_BATCH_SIZE,
                          settings: SearchConfig | None = None):
    """A :class:`Recommender` over ``reviews`` (``scraping.models.Review``) with a flat index built in memory.

    Chunks exactly as ``python -m recommender build`` does (same window and
    overlap), so the numbers match an index built on disk with the same model.
    """
    reviews = [r for r in reviews if r.text and r.text.strip()]
    chunks, passages = review_chunks(encoder, reviews)
    vectors = encoder.encode(passages, batch_size=batch_size) if passages else np.zeros((0, encoder.dim), np.float32)
    return recommender_over(encoder, reviews, chunks, vectors, settings)


def known_item(encoder, reviews: Sequence, *, max_queries: int = 200, window_words: int = 30, seed: int = 13,
               aggregation: str | None = None, settings: SearchConfig | None = None) -> dict:
    """Known-item quality of ``encoder`` on ``reviews``, for use during training.

    Splits ``reviews`` with :func:`held_out_split`, indexes the rest in memory
    (flat, exact), and asks a ``window_words``-word window of each held-out
    review (at most ``max_queries``, round-robin over anime) to find its anime.
    Every non-held-out review is embedded (the whole shared corpus takes ~7 min
    on 2 CPU cores with MiniLM), so pass a sample when time matters; the same
    sample and seed give the same split and queries every time.

    Args:
        encoder: a loaded :class:`recommender.encoder.Encoder`.
        reviews: ``scraping.models.Review`` objects.
        max_queries: queries asked.
        window_words: words per query.
        seed: the split and window seed.
        aggregation: how hits become anime (default ``config.DEFAULT_AGGREGATION``).
        settings: search settings of the in-memory index (default: the defaults).

    Returns:
        ``{"queries", "hit@1", "hit@10", "mrr@10", "macro_mrr@10"}``.
    """
    aggregation = aggregation or config.DEFAULT_AGGREGATION
    reviews = [r for r in reviews if r.text and r.text.strip()]
    held = held_out_split(((r.review_id, r.anime_id) for r in reviews), seed=seed)
    queries = known_item_queries(((r.review_id, r.anime_id, r.text) for r in reviews), held,
                                 max_queries=max_queries, window_words=window_words, seed=seed)
    if not queries:
        return {"queries": 0, "hit@1": 0.0, "hit@10": 0.0, "mrr@10": 0.0, "macro_mrr@10": 0.0}
    recommender = in_memory_recommender(encoder, [r for r in reviews if r.review_id not in held], settings=settings)
    found = score_known_item(recommender, queries, [aggregation])[aggregation]
    return {key: found[key] for key in KNOWN_ITEM_KEYS}
