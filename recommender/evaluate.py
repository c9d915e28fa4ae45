"""Search-quality evaluation: known-item retrieval, MAL user recommendations, long-tail and genre queries.

The held-out rule (:func:`held_out_split`) is deterministic: it depends only on
the review ids, their anime and ``seed``. Known-item evaluation on a built index
masks the held-out reviews' rows at query time (a FAISS ID selector and a BM25
mask), which gives the same hits as an index built without them (BM25's word
statistics still count them).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recommender import config
from recommender.aggregate import AnimeScore
from recommender.build import FORMAT_VERSION, anime_centroids, document_norm
from recommender.chunking import chunk_reviews
from recommender.index import VectorIndex
from recommender.index_data import Allowed
from recommender.search_config import SearchConfig

#: Metric keys of :func:`known_item` (the GPL training loop reads these).
KNOWN_ITEM_KEYS = ("queries", "hit@1", "hit@10", "mrr@10", "macro_mrr@10")


@dataclass(frozen=True)
class KnownItemQuery:
    """A window of a held-out review; the anime it reviews is the answer."""

    text: str
    anime_id: int
    review_id: str


@dataclass(frozen=True)
class LabelledQuery:
    """A hand-written query: ``answers`` are the anime it describes (long tail), or ``genre`` its expected label."""

    text: str
    answers: tuple[int, ...] = ()
    genre: str | None = None


# ---- the held-out split ---------------------------------------------------------------------
def _key(seed: int, review_id: str) -> str:
    return hashlib.sha1(f"{seed}:{review_id}".encode()).hexdigest()


def held_out_split(reviews: Iterable[tuple[str, int]], *, fraction: float = config.EVAL_HOLDOUT_FRACTION,
                   seed: int = config.EVAL_SEED) -> set[str]:
    """Review ids held out of the index for known-item evaluation.

    Every anime with at least two reviews gives ``max(1, round(fraction · n))``
    of them, never all: the ones whose ``sha1(seed:review_id)`` is smallest.
    Anime with one review keep it (a held-out query whose anime is absent from
    the index could not be answered). Deterministic: no state, no clock.

    Args:
        reviews: ``(review_id, anime_id)`` pairs.
        fraction: share of each anime's reviews to hold out.
        seed: changes which reviews are chosen.
    """
    by_anime: dict[int, list[str]] = defaultdict(list)
    for review_id, anime_id in reviews:
        by_anime[int(anime_id)].append(str(review_id))
    held: set[str] = set()
    for ids in by_anime.values():
        if len(ids) < 2:
            continue
        take = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        held.update(sorted(ids, key=lambda rid: _key(seed, rid))[:take])
    return held


def query_window(text: str, review_id: str, *, window_words: int = 30, seed: int = config.EVAL_SEED) -> str:
    """A ``window_words``-word window of a review at a position fixed by ``seed`` and the review id."""
    words = text.split()
    if len(words) <= window_words:
        return " ".join(words)
    start = random.Random(f"{seed}:{review_id}").randrange(len(words) - window_words + 1)
    return " ".join(words[start:start + window_words])


def known_item_queries(reviews: Iterable[tuple[str, int, str]], held_out: set[str], *,
                       max_queries: int | None = 200, window_words: int = 30,
                       seed: int = config.EVAL_SEED) -> list[KnownItemQuery]:
    """Queries from the held-out reviews, taken round-robin over anime so that small anime are represented.

    Args:
        reviews: ``(review_id, anime_id, text)``; only held-out ones with text are used.
        held_out: ids from :func:`held_out_split`.
        max_queries: at most this many (None: all).
        window_words: words per query.
        seed: as for the split.
    """
    by_anime: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for review_id, anime_id, text in reviews:
        if review_id in held_out and text and text.strip():
            by_anime[int(anime_id)].append((review_id, text))
    queues = [sorted(items, key=lambda item: _key(seed, item[0])) for _, items in sorted(by_anime.items())]
    anime_of = [anime_id for anime_id, _ in sorted(by_anime.items())]
    queries: list[KnownItemQuery] = []
    depth = 0
    while any(depth < len(queue) for queue in queues):
        for anime_id, queue in zip(anime_of, queues, strict=True):
            if depth < len(queue):
                review_id, text = queue[depth]
                queries.append(KnownItemQuery(query_window(text, review_id, window_words=window_words, seed=seed),
                                              anime_id, review_id))
        depth += 1
    return queries if max_queries is None else queries[:max_queries]


# ---- metrics --------------------------------------------------------------------------------
def rank_of(ranked: Sequence[int], answers: Iterable[int]) -> int | None:
    """1-based position of the first of ``answers`` in ``ranked``, or None."""
    wanted = set(answers)
    for position, anime_id in enumerate(ranked, 1):
        if anime_id in wanted:
            return position
    return None


def ranking_metrics(ranks: Sequence[int | None], groups: Sequence[int] | None = None, k: int = 10) -> dict:
    """hit@1, hit@k, MRR@k over queries, and (with ``groups``) macro MRR@k: the mean of per-group means.

    Args:
        ranks: 1-based rank of each query's answer, None when it was not found.
        groups: each query's answer anime; macro MRR weighs every anime equally.
        k: cut-off.
    """
    n = len(ranks)
    rr = [1.0 / r if r is not None and r <= k else 0.0 for r in ranks]
    out = {
        "queries": n,
        "hit@1": sum(r == 1 for r in ranks) / n if n else 0.0,
        f"hit@{k}": sum(r is not None and r <= k for r in ranks) / n if n else 0.0,
        f"mrr@{k}": sum(rr) / n if n else 0.0,
    }
    if groups is not None:
        per: dict[int, list[float]] = defaultdict(list)
        for group, value in zip(groups, rr, strict=True):
            per[group].append(value)
        out[f"macro_mrr@{k}"] = float(np.mean([np.mean(v) for v in per.values()])) if per else 0.0
    return out


def genre_precision(ranked: Sequence[int], genre: str, labels_of: Callable[[int], set[str]],
                    available: int, k: int = 10) -> float:
    """Share of the top ``k`` results carrying ``genre``, out of the most that could (``min(k, available)``)."""
    best = min(k, available)
    if best == 0:
        return 0.0
    found = sum(genre.casefold() in labels_of(a) for a in ranked[:k])
    return found / best


# ---- scoring against a Recommender ----------------------------------------------------------
def _ranked_ids(ranking: list[AnimeScore]) -> list[int]:
    return [entry.anime_id for entry in ranking]


def rank_queries(recommender, texts: Sequence[str], aggregations: Sequence[str], *, top_n: int | None = None,
                 allowed: Allowed | None = None, review_counts: Mapping[int, int] | None = None,
                 batch_size: int = 64, reranker=None) -> dict[str, list[list[int]]]:
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
        vectors = recommender.encoder.encode(batch, batch_size=batch_size)
        for text, vector, dense in zip(batch, vectors, retriever.dense(vectors, settings.top_n, allowed),
                                       strict=True):
            once = reranker is None
            plain = retriever.dense_hits(dense, similarity_unit(vector, settings), once)
            fused = retriever.fused_hits(text, vector, dense, allowed, settings, once) if fused_needed else plain
            if reranker is not None:
                plain, fused = (reranker.rerank(text, hits, recommender.hit_text) for hits in (plain, fused))
            for name in aggregations:
                hits = plain if name == "count" else fused
                out[name].append(_ranked_ids(recommender.rank(hits, name, review_counts=review_counts,
                                                              deduplicated=once)))
    return out


def known_item_split(recommender, *, seed: int = config.EVAL_SEED, fraction: float = config.EVAL_HOLDOUT_FRACTION,
                     max_queries: int | None = None,
                     window_words: int = 30) -> tuple[list[KnownItemQuery], Allowed, dict[int, int]]:
    """Held-out queries for a built index, what the search may return without them, and the review counts
    without them."""
    reviews = recommender.data.reviews
    ids, anime, texts = reviews.review_ids(), reviews.anime_ids, reviews.texts()
    held = held_out_split(zip(ids, anime, strict=True), fraction=fraction, seed=seed)
    queries = known_item_queries(zip(ids, anime, texts, strict=True), held, max_queries=max_queries,
                                 window_words=window_words, seed=seed)
    counts = dict(recommender.review_counts)
    for review_id, anime_id in zip(ids, anime, strict=True):
        if review_id in held:
            counts[int(anime_id)] -= 1
    return queries, recommender.data.allowed_rows_mask(~recommender.data.rows_of_reviews(held)), counts


def score_known_item(recommender, queries: Sequence[KnownItemQuery], aggregations: Sequence[str], *,
                     allowed: Allowed | None = None, review_counts: Mapping[int, int] | None = None,
                     top_n: int | None = None, reranker=None) -> dict[str, dict]:
    """Known-item metrics per aggregation (see :func:`ranking_metrics`)."""
    ranked = rank_queries(recommender, [q.text for q in queries], aggregations, top_n=top_n, allowed=allowed,
                          review_counts=review_counts, reranker=reranker)
    answers = [q.anime_id for q in queries]
    return {name: ranking_metrics([rank_of(r, [a]) for r, a in zip(lists, answers, strict=True)], answers)
            for name, lists in ranked.items()}


def score_long_tail(recommender, queries: Sequence[LabelledQuery], aggregations: Sequence[str], *,
                    top_n: int | None = None, reranker=None) -> dict[str, dict]:
    """hit@1, hit@10 and MRR@10 of hand-written premise queries whose answer is a little-reviewed anime."""
    usable = [q for q in queries if any(a in recommender.review_counts for a in q.answers)]
    ranked = rank_queries(recommender, [q.text for q in usable], aggregations, top_n=top_n, reranker=reranker)
    return {name: ranking_metrics([rank_of(r, q.answers) for r, q in zip(lists, usable, strict=True)])
            for name, lists in ranked.items()}


def score_genres(recommender, queries: Sequence[LabelledQuery], aggregations: Sequence[str], *,
                 top_n: int | None = None, k: int = 10, reranker=None) -> dict[str, dict]:
    """Mean genre precision@k (see :func:`genre_precision`) of genre-flavoured queries."""
    available = defaultdict(int)
    for anime_id in recommender.review_counts:
        for label in recommender.genre_labels(anime_id):
            available[label] += 1
    usable = [q for q in queries if q.genre and available[q.genre.casefold()]]
    ranked = rank_queries(recommender, [q.text for q in usable], aggregations, top_n=top_n, reranker=reranker)
    out = {}
    for name, lists in ranked.items():
        values = [genre_precision(r, q.genre, recommender.genre_labels, available[q.genre.casefold()], k)
                  for r, q in zip(lists, usable, strict=True)]
        out[name] = {"queries": len(values), f"genre@{k}": float(np.mean(values)) if values else 0.0}
    return out


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


def recall_at_k(ranked: Sequence[int], relevant: set[int], k: int = 10) -> float:
    """Share of ``relevant`` in the top ``k``, out of the most that fit (``min(k, |relevant|)``)."""
    if not relevant:
        return 0.0
    return len(set(ranked[:k]) & relevant) / min(k, len(relevant))


def score_similar(recommender, targets: Mapping[int, set[int]], k: int = 10) -> dict[str, dict]:
    """recall@k of :meth:`Recommender.similar_scores` against MAL user recommendations, with a popularity baseline.

    The baseline ranks every other anime by its number of reviews: what a
    "more like this" that ignores the source anime would achieve.
    """
    by_reviews = sorted(recommender.review_counts, key=lambda a: (-recommender.review_counts[a], a))
    centroid, popular = [], []
    for anime_id, relevant in sorted(targets.items()):
        centroid.append(recall_at_k([a for a, _ in recommender.similar_scores(anime_id)], relevant, k))
        popular.append(recall_at_k([a for a in by_reviews if a != anime_id], relevant, k))
    n = len(centroid)
    return {
        "centroid": {"anime": n, f"recall@{k}": float(np.mean(centroid)) if n else 0.0},
        "popularity": {"anime": n, f"recall@{k}": float(np.mean(popular)) if n else 0.0},
    }


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
    return score_known_item(recommender, queries, [aggregation])[aggregation]


# ---- the full evaluation of a built index ----------------------------------------------------
def evaluate_index(recommender, aggregations: Sequence[str] | None = None, *, top_n: int | None = None,
                   recs_path: str | Path | None = None, max_queries: int | None = None,
                   long_tail: Sequence[LabelledQuery] | None = None,
                   genres: Sequence[LabelledQuery] | None = None, rerank: str | None = None) -> dict:
    """Every part of the evaluation for every aggregation, in one report.

    Args:
        recommender: a loaded :class:`recommender.search.Recommender` (its search settings apply).
        aggregations: names to compare (default: all).
        top_n: passages retrieved per query (default: the recommender's setting).
        recs_path: MAL user recommendations (``recs.jsonl``) for the ``similar`` part; skipped when None or absent.
        max_queries: cap on known-item queries (None: every held-out review).
        long_tail: premise queries (default :data:`recommender.eval_queries.LONG_TAIL`).
        genres: genre queries (default :data:`recommender.eval_queries.GENRES`).
        rerank: a cross-encoder name or directory: adds ``"<default>+rerank"`` rows, and the
            reranker's mean milliseconds per query to the setup.

    Returns:
        ``{"setup": {...}, "known_item": {agg: metrics}, "long_tail": {...}, "genres": {...},
        "similar": {...} or None}``.
    """
    from recommender import eval_queries
    from recommender.aggregate import AGGREGATIONS

    aggregations = list(dict.fromkeys(aggregations or AGGREGATIONS))
    long_tail = eval_queries.LONG_TAIL if long_tail is None else long_tail
    genres = eval_queries.GENRES if genres is None else genres
    queries, allowed, counts = known_item_split(recommender, max_queries=max_queries)
    settings = recommender.settings
    report = {
        "setup": {
            "index": str(recommender.index_dir) if recommender.index_dir else None,
            "model": recommender.manifest.get("model", {}).get("name"),
            "top_n": top_n or settings.top_n,
            "synopsis_weight": settings.synopsis_weight,
            "synopses": int(len(recommender.data.synopsis_ids)),
            "lexical_weight": settings.lexical_weight,
            "lexical_depth": settings.lexical_depth,
            "held_out_reviews": int(sum(recommender.review_counts.values()) - sum(counts.values())),
            "seed": config.EVAL_SEED,
        },
        "known_item": score_known_item(recommender, queries, aggregations, allowed=allowed, review_counts=counts,
                                       top_n=top_n),
        "long_tail": score_long_tail(recommender, long_tail, aggregations, top_n=top_n),
        "genres": score_genres(recommender, genres, aggregations, top_n=top_n),
        "similar": None,
    }
    if rerank:
        _add_rerank_rows(report, recommender, rerank, queries, allowed, counts, top_n, long_tail, genres)
    if recs_path is not None and Path(recs_path).exists():
        targets = recommendation_targets(load_user_recs(recs_path), set(recommender.review_counts))
        report["similar"] = score_similar(recommender, targets)
    return report


def _add_rerank_rows(report: dict, recommender, rerank: str, queries: Sequence[KnownItemQuery],
                     allowed: Allowed, counts: Mapping[int, int], top_n: int,
                     long_tail: Sequence[LabelledQuery], genres: Sequence[LabelledQuery]) -> None:
    """Score the default aggregation once more with a cross-encoder between retrieval and aggregation."""
    import time

    from recommender.rerank import Reranker

    reranker = Reranker.load(rerank)
    name = config.DEFAULT_AGGREGATION
    label = f"{name}+rerank"
    t0 = time.perf_counter()
    known = score_known_item(recommender, queries, [name], allowed=allowed, review_counts=counts, top_n=top_n,
                             reranker=reranker)
    seconds = time.perf_counter() - t0
    report["known_item"][label] = known[name]
    report["long_tail"][label] = score_long_tail(recommender, long_tail, [name], top_n=top_n, reranker=reranker)[name]
    report["genres"][label] = score_genres(recommender, genres, [name], top_n=top_n, reranker=reranker)[name]
    report["setup"]["rerank_model"] = rerank
    report["setup"]["rerank_depth"] = reranker.depth
    report["setup"]["known_item_ms_per_query_with_rerank"] = round(seconds / max(1, len(queries)) * 1e3, 1)


#: (report part, metric key, column title) of the printed table, in order.
TABLE_COLUMNS = (
    ("known_item", "hit@1", "known-item hit@1"),
    ("known_item", "hit@10", "known-item hit@10"),
    ("known_item", "mrr@10", "known-item MRR@10"),
    ("known_item", "macro_mrr@10", "known-item macro-MRR@10"),
    ("long_tail", "hit@10", "long-tail hit@10"),
    ("long_tail", "mrr@10", "long-tail MRR@10"),
    ("genres", "genre@10", "genre@10"),
)


def format_table(report: dict, default: str | None = None) -> str:
    """The report as one Markdown table (one row per aggregation), with the setup and the ``similar`` line under it."""
    default = default or config.DEFAULT_AGGREGATION
    header = "| aggregation | " + " | ".join(title for _, _, title in TABLE_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(TABLE_COLUMNS) + 1)]
    for name in report["known_item"]:
        label = f"**{name}** (default)" if name == default else name
        cells = [f"{report[part][name][key]:.3f}" for part, key, _ in TABLE_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    setup = report["setup"]
    any_name = next(iter(report["known_item"]))
    lines.append("")
    lines.append(
        f"Known-item: {report['known_item'][any_name]['queries']} queries (30-word windows of"
        f" {setup['held_out_reviews']} held-out reviews, seed {setup['seed']});"
        f" long tail: {report['long_tail'][any_name]['queries']} queries;"
        f" genres: {report['genres'][any_name]['queries']} queries. top_n={setup['top_n']},"
        f" synopsis weight {setup['synopsis_weight']} ({setup['synopses']} synopses),"
        f" lexical weight {setup['lexical_weight']}, BM25 depth {setup.get('lexical_depth', 0)}"
        " (neither applied to count)."
    )
    if report.get("similar"):
        sim = report["similar"]
        lines.append(
            f"Similar anime vs MAL user recommendations ({sim['centroid']['anime']} anime):"
            f" recall@10 {sim['centroid']['recall@10']:.3f} (review centroids);"
            f" popularity baseline {sim['popularity']['recall@10']:.3f}."
        )
    return "\n".join(lines)


def plot_report(report: dict, path: str | Path, default: str | None = None) -> Path:
    """Grouped bars: each metric of the table, one bar per aggregation; written as PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    default = default or config.DEFAULT_AGGREGATION
    names = list(report["known_item"])
    columns = [c for c in TABLE_COLUMNS if c[1] != "hit@1"]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(11, 4.5))
    for i, name in enumerate(names):
        values = [report[part][name][key] for part, key, _ in columns]
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(columns))]
        ax.bar(xs, values, width, label=f"{name} (default)" if name == default else name,
               edgecolor="black" if name == default else None, linewidth=1.5 if name == default else 0)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([title.replace(" ", "\n", 1) for _, _, title in columns], fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(f"Aggregations compared — {report['setup'].get('model')}, top_n={report['setup']['top_n']}")
    ax.legend(ncol=len(names), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
