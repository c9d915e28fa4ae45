"""Build an index directory from the review store: chunk → embed (resumable) → index → publish atomically.

When ``out`` already holds an index made with the same model and chunking, only
new and changed reviews are embedded (see :mod:`recommender.update`); ``full=True``
embeds everything again.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from recommender import config
from recommender.chunking import chunk_reviews
from recommender.encoder import Encoder
from recommender.errors import EmptyCorpusError
from recommender.index import VectorIndex
from recommender.layout import (
    ANIME_VECTOR_IDS,
    ANIME_VECTORS,
    CATALOG,
    CHUNKS,
    EMBEDDINGS,
    FORMAT_VERSION,
    LEXICAL_DIR,
    MANIFEST,
    REVIEW_DIGESTS,
    REVIEWS,
    ROW_IDS,
    SYNOPSIS_IDS,
    SYNOPSIS_VECTORS,
)
from recommender.lexical import LexicalIndex
from recommender.review_table import write_review_table
from recommender.search_config import SearchConfig
from recommender.update import CHUNK_COLUMNS, PreviousIndex, merge_chunks, read_previous, text_digest
from scraping.store import Store

log = logging.getLogger(__name__)

# MAL appends the synopsis' author or source, e.g. "[Written by MAL Rewrite]" or "(Source: Crunchyroll)".
_SYNOPSIS_CREDIT = re.compile(r"\s*[\[(](?:written by|source)[^\])]*[\])]\s*$", re.IGNORECASE)


#: Above this many chunks the default index is approximate: an exact scan of every vector per query
#: no longer fits the latency budget on 2 cores (benchmarks/scale.py, docs/index_types.md).
FLAT_MAX_CHUNKS = 200_000
#: The approximate type used above FLAT_MAX_CHUNKS.
LARGE_INDEX_TYPE = "sq8"


def default_index_type(chunks: int) -> str:
    """The index type ``build`` uses when none is asked for: exact ``flat`` for small corpora, else
    :data:`LARGE_INDEX_TYPE`."""
    return "flat" if chunks <= FLAT_MAX_CHUNKS else LARGE_INDEX_TYPE


@dataclass
class BuildReport:
    """What a build did and how fast.

    Chunk counts: ``new`` were embedded for reviews the previous index did not have (every chunk, in a full
    build), ``changed`` for reviews whose text changed (their old chunks are dropped), ``deleted`` are the old
    chunks of reviews no longer in the store, ``reused`` kept their vector from the previous index.
    """

    out: Path
    reviews: int
    chunks: int
    anime: int
    seconds: float
    embed_seconds: float
    resumed_chunks: int
    incremental: bool = False
    new: int = 0
    changed: int = 0
    deleted: int = 0
    reused: int = 0
    embedded_reviews: int = 0

    @property
    def reviews_per_s(self) -> float:
        return self.embedded_reviews / self.embed_seconds if self.embed_seconds else float("nan")

    @property
    def chunks_per_s(self) -> float:
        embedded = self.new + self.changed - self.resumed_chunks
        return embedded / self.embed_seconds if self.embed_seconds else float("nan")

    def summary(self) -> str:
        """The one line ``build`` prints: what was indexed, the four chunk counts, time and speed."""
        how = "updated" if self.incremental else "built in full"
        return (f"index {how} at {self.out}: {self.reviews} reviews, {self.chunks} chunks, {self.anime} anime;"
                f" chunks new={self.new} changed={self.changed} deleted={self.deleted} reused={self.reused};"
                f" {self.seconds:.1f} s ({self.chunks_per_s:.1f} chunks/s embedded,"
                f" {self.resumed_chunks} chunks resumed)")


def work_dir_for(out: Path) -> Path:
    """Where a build keeps its embedding shards until the index is published."""
    return out.parent / f".{out.name}.building"


def recover_interrupted_swap(out: Path) -> None:
    """Put the previous index back if a crash hit between the two renames of :func:`publish_directory`."""
    if out.exists():
        return
    old = sorted(out.parent.glob(f".{out.name}.old-*")) if out.parent.exists() else []
    if old:
        old[-1].rename(out)
        log.warning("restored %s from an interrupted index swap", out)


def publish_directory(out: Path, write: Callable[[Path], None]) -> None:
    """Write a directory with ``write(tmp)`` and move it into place as ``out``.

    The new directory is complete before it becomes visible; the old one is
    removed only after the new one is in place, so a crash at any point leaves a
    whole index at ``out`` (or, between the two renames, one that
    :func:`recover_interrupted_swap` restores).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_swap(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir()
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def synopsis_text(meta: dict) -> str:
    """An anime's synopsis without MAL's trailing author/source credit ("" when it has none)."""
    text = " ".join(str(meta.get("synopsis") or "").split())
    return _SYNOPSIS_CREDIT.sub("", text).strip()


def embed_synopses(catalog: Mapping[int | str, dict], encoder: Encoder,
                   batch_size: int = config.ENCODE_BATCH_SIZE, *,
                   reuse: Mapping[int, tuple[str, np.ndarray]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the catalogue's synopses and their anime ids (sorted by id; anime without one are left out).

    Args:
        reuse: anime id → (synopsis text, vector) of a previous build; an anime whose synopsis text is still
            the same takes that vector instead of being embedded again.
    """
    texts_by_id = {int(k): synopsis_text(meta) for k, meta in catalog.items()}
    ids = sorted(a for a, text in texts_by_id.items() if text)
    reuse = reuse or {}
    todo = [i for i, a in enumerate(ids) if a not in reuse or reuse[a][0] != texts_by_id[a]]
    vectors = np.zeros((len(ids), encoder.dim), np.float32)
    if todo:
        vectors[todo] = encoder.encode([texts_by_id[ids[i]] for i in todo], batch_size=batch_size)
    for i in sorted(set(range(len(ids))) - set(todo)):
        vectors[i] = reuse[ids[i]][1]
    return vectors, np.asarray(ids, dtype=np.int64)


def build_lexical(frame: pd.DataFrame, texts: Mapping[str, str], synopses: list[str],
                  progress: bool = False) -> LexicalIndex:
    """BM25 over every chunk (in row order), then every synopsis: the passage numbering search uses."""
    spans = zip(frame["review_id"].to_numpy(), frame["start"].to_numpy(), frame["end"].to_numpy(), strict=True)
    passages = (texts[rid][int(a):int(b)] for rid, a, b in spans)
    return LexicalIndex.build(itertools.chain(passages, synopses), progress=progress,
                              total=len(frame) + len(synopses))


def document_norm(vectors: np.ndarray, normalized: bool, sample: int = 10_000) -> float:
    """The similarity unit of a model: 1 for cosine, the median vector length for a dot-product model.

    Search divides a query's similarities by ``|query| · document_norm`` so that
    the tunables (soft-vote temperature, lexical weight) read in cosine units
    whatever the model's scale (see :class:`recommender.search_config.SearchConfig`).
    """
    if normalized or not len(vectors):
        return 1.0
    rows = np.random.default_rng(0).choice(len(vectors), min(sample, len(vectors)), replace=False)
    norm = float(np.median(np.linalg.norm(vectors[np.sort(rows)], axis=1)))
    return norm if norm > 0 else 1.0


def _catalog(store: Store, review_counts: dict[int, int]) -> dict[str, dict]:
    catalog = {}
    for anime in store.iter_anime():
        if anime.anime_id not in review_counts:
            continue
        entry = anime.to_dict()
        entry.pop("anime_id")
        entry["review_count"] = review_counts[anime.anime_id]
        catalog[str(anime.anime_id)] = entry
    return catalog


def _plan_key(encoder: Encoder, store_checksum: str, overlap: int, base: str | None = None) -> dict:
    """What a resumable plan was made for; ``base`` names the index an update starts from (None: full build)."""
    return {
        "format_version": FORMAT_VERSION,
        "model_sha256": encoder.sha256,
        "backend": encoder.backend,
        "store_checksum": store_checksum,
        "max_tokens": encoder.tokens_per_chunk,
        "overlap": overlap,
        "base": base,
    }


def _plan_chunks(work: Path, key: dict, texts: dict[str, str], anime_of: dict[str, int], encoder: Encoder,
                 overlap: int, progress: bool) -> pd.DataFrame:
    """Chunk every review, or reuse the plan a killed build left behind if it was made the same way."""
    plan_file, chunks_file = work / "plan.json", work / CHUNKS
    if plan_file.exists() and chunks_file.exists():
        if json.loads(plan_file.read_text()) == key:
            log.info("resuming the build in %s", work)
            return pd.read_parquet(chunks_file)
        log.info("discarding an unfinished build made with other data or settings")
    shutil.rmtree(work, ignore_errors=True)
    (work / "shards").mkdir(parents=True)
    reviews = ((rid, anime_of[rid], texts[rid]) for rid in texts)
    bar = tqdm(total=len(texts), desc="chunking", unit="review", disable=not progress)
    rows = []
    for chunk in chunk_reviews(reviews, encoder.token_offsets, key["max_tokens"], overlap):
        rows.append((chunk.review_id, chunk.anime_id, chunk.chunk_no, chunk.start, chunk.end))
        if chunk.chunk_no == 0:
            bar.update(1)
    bar.close()
    frame = pd.DataFrame(rows, columns=["review_id", "anime_id", "chunk_no", "start", "end"])
    frame.insert(0, "chunk_id", np.arange(len(frame), dtype=np.int64))
    frame.to_parquet(chunks_file, index=False)
    plan_file.write_text(json.dumps(key))
    return frame


def _embed(work: Path, frame: pd.DataFrame, texts: dict[str, str], encoder: Encoder, batch_size: int,
           shard_size: int, progress: bool) -> tuple[np.ndarray, int, float]:
    """Embed the planned chunks shard by shard; shards already on disk are loaded, not recomputed.

    The bar counts the chunks still to embed and moves after every batch, with chunks/s and the time left.
    """
    shards_dir = work / "shards"
    n = len(frame)
    shards = [(lo, min(lo + shard_size, n), shards_dir / f"shard_{no:06d}.npy")
              for no, lo in enumerate(range(0, n, shard_size))]
    review_ids, begins, ends = frame["review_id"].to_numpy(), frame["start"].to_numpy(), frame["end"].to_numpy()
    resumed = sum(hi - lo for lo, hi, path in shards if path.exists())
    parts = []
    bar = tqdm(total=n - resumed, desc="embedding", unit="chunk", smoothing=0.1, disable=not progress)
    if resumed:
        bar.set_postfix(resumed=resumed)
    t0 = time.perf_counter()
    for lo, hi, path in shards:
        if path.exists():
            vectors = np.load(path)
        else:
            passages = [texts[review_ids[i]][begins[i]:ends[i]] for i in range(lo, hi)]
            vectors = encoder.encode(passages, batch_size=batch_size, on_batch=bar.update)
            tmp = path.with_suffix(".tmp.npy")
            np.save(tmp, vectors)
            tmp.rename(path)
        parts.append(vectors)
    bar.close()
    seconds = time.perf_counter() - t0
    dim = encoder.dim
    return (np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)), resumed, seconds


def anime_centroids(vectors: np.ndarray, anime_ids: np.ndarray, normalize: bool, *,
                    reuse: Mapping[int, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean chunk vector of every anime (unit length when the model's similarity is cosine).

    Args:
        reuse: anime id → centroid of a previous build for anime whose chunks did not change: taken as they
            are, and only the other anime's rows are summed.
    """
    present = set(np.unique(anime_ids).tolist())
    reuse = {a: v for a, v in (reuse or {}).items() if a in present}
    if reuse:
        rows = ~np.isin(anime_ids, list(reuse))
        vectors, anime_ids = vectors[rows], anime_ids[rows]
    ids, inverse = np.unique(anime_ids, return_inverse=True)
    sums = np.zeros((len(ids), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, vectors)
    centroids = (sums / np.bincount(inverse, minlength=len(ids))[:, None]).astype(np.float32)
    if normalize:
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    if not reuse:
        return centroids, ids.astype(np.int64)
    all_ids = np.concatenate([ids, np.fromiter(reuse, dtype=np.int64, count=len(reuse))])
    order = np.argsort(all_ids, kind="stable")
    merged = np.concatenate([centroids, np.stack(list(reuse.values())).astype(np.float32)])
    return merged[order], all_ids[order].astype(np.int64)


@dataclass
class _Corpus:
    """The store's reviews as a build needs them, in store order."""

    reviews: list
    texts: dict[str, str]
    anime_of: dict[str, int]
    review_counts: dict[int, int]
    catalog: dict[str, dict]
    checksum: str
    #: Review id → digest of its text (:func:`recommender.update.text_digest`).
    digests: dict[str, int]


def _read_store(db: str | Path) -> _Corpus:
    with Store.open(db) as store:
        reviews = [r for r in store.iter_reviews() if r.text and r.text.strip()]
        if not reviews:
            raise EmptyCorpusError(f"no reviews in {db}; import some first (python -m scraping import PATH)")
        texts = {r.review_id: r.text for r in reviews}
        anime_of = {r.review_id: r.anime_id for r in reviews}
        review_counts: dict[int, int] = {}
        for anime_id in anime_of.values():
            review_counts[anime_id] = review_counts.get(anime_id, 0) + 1
        catalog = _catalog(store, review_counts)
        checksum = store.reviews_checksum()
    for anime_id in review_counts:
        catalog.setdefault(str(anime_id), {"title": f"Anime {anime_id}", "url": f"https://myanimelist.net/anime/{anime_id}",
                                           "review_count": review_counts[anime_id]})
    digests = {review_id: text_digest(text) for review_id, text in texts.items()}
    return _Corpus(reviews, texts, anime_of, review_counts, catalog, checksum, digests)


@dataclass
class _Rows:
    """The chunk rows of the new index (canonical order, chunk id = row) and what making them cost."""

    frame: pd.DataFrame
    vectors: np.ndarray
    counts: dict[str, int]
    resumed: int
    embed_seconds: float
    embedded_reviews: int
    centroid_reuse: dict[int, np.ndarray] | None = None
    synopsis_reuse: dict[int, tuple[str, np.ndarray]] | None = None


def _embed_all(corpus: _Corpus, work: Path, key: dict, *, encoder: Encoder, batch_size: int, shard_size: int,
               overlap: int, progress: bool) -> _Rows:
    """Chunk and embed every review (resuming a killed build of the same plan)."""
    texts = corpus.texts
    frame = _plan_chunks(work, key, texts, corpus.anime_of, encoder, overlap, progress)
    frame["review_pos"] = pd.Index(list(texts)).get_indexer(frame["review_id"]).astype(np.int64)
    vectors, resumed, seconds = _embed(work, frame, texts, encoder, batch_size, shard_size, progress)
    counts = {"new": len(frame), "changed": 0, "deleted": 0, "reused": 0}
    return _Rows(frame[CHUNK_COLUMNS], vectors, counts, resumed, seconds, len(texts))


def _embed_changes(corpus: _Corpus, previous: PreviousIndex, work: Path, key: dict, *, encoder: Encoder,
                   batch_size: int, shard_size: int, overlap: int, progress: bool) -> _Rows:
    """Chunk and embed the new and changed reviews only; every other chunk comes from ``previous``."""
    texts = corpus.texts
    diff = previous.diff(corpus.digests, corpus.anime_of)
    todo = {review_id: texts[review_id] for review_id in diff.to_embed}
    fresh = _plan_chunks(work, key, todo, corpus.anime_of, encoder, overlap, progress)
    fresh_vectors, resumed, seconds = _embed(work, fresh, texts, encoder, batch_size, shard_size, progress)
    frame, vectors = merge_chunks(previous.chunks, previous.vectors, fresh, fresh_vectors, diff.kept,
                                  list(texts), corpus.anime_of)
    new = int(fresh["review_id"].isin(pd.Index(diff.new)).sum())
    counts = {"new": new, "changed": len(fresh) - new,
              "deleted": int(previous.chunks["review_id"].isin(pd.Index(diff.deleted)).sum()),
              "reused": len(frame) - len(fresh)}
    synopses = {int(a): (synopsis_text(previous.catalog.get(str(int(a)), {})), v)
                for a, v in zip(previous.synopsis_ids, previous.synopsis_vectors, strict=True)}
    return _Rows(frame, vectors, counts, resumed, seconds, len(todo),
                 previous.reusable_centroids(diff.touched_anime), synopses)


def _requested_type(manifest: dict) -> str:
    """The index type a previous build was asked for (an IVF type asked of too few vectors was built flat)."""
    index_info = manifest.get("index") or {}
    return (index_info.get("params") or {}).get("fallback_from") or index_info.get("type")


def build_index(
    db: str | Path = config.DEFAULT_DB,
    model: str | None = None,
    out: str | Path | None = None,
    index_type: str | None = None,
    *,
    index_params: dict | None = None,
    encoder: Encoder | None = None,
    batch_size: int = config.ENCODE_BATCH_SIZE,
    shard_size: int = config.SHARD_SIZE,
    overlap: int = config.CHUNK_OVERLAP_TOKENS,
    progress: bool = True,
    full: bool = False,
    say: Callable[[str], None] | None = None,
) -> BuildReport:
    """Build the index directory for every review in the store, updating the one in ``out`` when it can.

    When ``out`` holds an index that :func:`recommender.update.incompatibility` accepts, only new and changed
    reviews are embedded; deleted ones are dropped, every other chunk keeps its vector, and the rest (FAISS
    index, BM25, calibration) is rebuilt as a full build would, so the result equals a full build of the same
    store. Either way the new directory replaces the old one atomically: a killed build leaves the old index
    serving, and running it again resumes from the embedding shards it saved.

    Args:
        db: review store path.
        model: model name or directory (see :func:`recommender.encoder.resolve_model`); ignored with ``encoder``.
        out: index directory; default ``data/index/<model name>``.
        index_type: see :data:`recommender.index.INDEX_TYPES`; None picks by size (:func:`default_index_type`).
        index_params: explicit index knobs (e.g. ``ef_search``, ``nprobe``); None values mean "calibrate".
        encoder: an already loaded encoder (tests, benchmarks).
        batch_size: texts per forward pass.
        shard_size: chunks per saved embedding shard (the most a killed build loses).
        overlap: tokens shared by consecutive chunks of a long review.
        progress: show tqdm bars.
        full: embed every review even when ``out`` holds an index that could be updated.
        say: receives the one line saying why an index in ``out`` is rebuilt in full, or re-indexed as
            another type (default: logged as a warning).

    Raises:
        EmptyCorpusError: the store has no reviews.
        ModelNotFoundError: the model cannot be loaded.
    """
    t_start = time.perf_counter()
    say = say or log.warning
    encoder = encoder or Encoder.load(model)
    out = Path(out) if out else config.default_index_dir(encoder.name)
    corpus = _read_store(db)
    texts = corpus.texts
    recover_interrupted_swap(out)
    previous = None
    if not full:
        previous, reason = read_previous(out, encoder, overlap)
        if reason:
            say(f"rebuilding {out} in full: {reason}")

    work = work_dir_for(out)
    key = _plan_key(encoder, corpus.checksum, overlap, previous.identity if previous else None)
    embed = dict(encoder=encoder, batch_size=batch_size, shard_size=shard_size, overlap=overlap, progress=progress)
    rows = _embed_all(corpus, work, key, **embed) if previous is None else \
        _embed_changes(corpus, previous, work, key, **embed)
    base = previous.manifest if previous else None
    previous = None  # its vectors now live in rows; let them go before the index is built
    frame, vectors, counts = rows.frame, rows.vectors, rows.counts
    asked = index_type or default_index_type(len(vectors))
    if base is not None and _requested_type(base) != asked:
        say(f"re-indexing {out} as {asked} (it was {_requested_type(base)}); embeddings are reused")
    index = VectorIndex.build(vectors, asked, **{k: v for k, v in (index_params or {}).items() if v is not None})
    centroids, centroid_ids = anime_centroids(vectors, frame["anime_id"].to_numpy(), encoder.normalize,
                                              reuse=rows.centroid_reuse)
    catalog = corpus.catalog
    synopsis_vectors, synopsis_ids = embed_synopses(catalog, encoder, batch_size, reuse=rows.synopsis_reuse)
    lexical = build_lexical(frame, texts, [synopsis_text(catalog[str(a)]) for a in synopsis_ids], progress)
    search = SearchConfig(doc_norm=document_norm(vectors, encoder.normalize))
    info = encoder.info()
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": info.to_dict(),
        "backend": encoder.backend,
        "dim": info.dim,
        "metric": "inner_product",
        "normalized": info.normalize,
        "similarity": info.similarity,
        "pooling": info.pooling,
        "chunking": {"max_tokens": key["max_tokens"], "overlap": overlap},
        "index": {"type": index.index_type, "params": index.params},
        "search": search.to_dict(),
        "counts": {"reviews": len(texts), "chunks": len(frame), "anime": len(corpus.review_counts),
                   "synopses": len(synopsis_ids)},
        "store": {"path": str(Path(db).resolve()), "checksum": corpus.checksum},
        "update": {"incremental": base is not None, "chunks": counts,
                   "base_built_at": base.get("built_at") if base else None},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_id": uuid.uuid4().hex,
        "build_seconds": round(time.perf_counter() - t_start, 3),
    }

    def write(tmp: Path) -> None:
        index.save(tmp)
        if not VectorIndex.keeps_vectors(index.index_type):
            np.save(tmp / EMBEDDINGS, vectors)
        np.save(tmp / ROW_IDS, frame["chunk_id"].to_numpy(np.int64))
        frame.to_parquet(tmp / CHUNKS, index=False)
        write_review_table(tmp / REVIEWS, corpus.reviews)
        np.save(tmp / REVIEW_DIGESTS, np.fromiter(corpus.digests.values(), dtype=np.int64, count=len(texts)))
        np.save(tmp / ANIME_VECTORS, centroids)
        np.save(tmp / ANIME_VECTOR_IDS, centroid_ids)
        np.save(tmp / SYNOPSIS_VECTORS, synopsis_vectors)
        np.save(tmp / SYNOPSIS_IDS, synopsis_ids)
        lexical.save(tmp / LEXICAL_DIR)
        (tmp / CATALOG).write_text(json.dumps(catalog, ensure_ascii=False))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))

    publish_directory(out, write)
    shutil.rmtree(work, ignore_errors=True)
    return BuildReport(out, len(texts), len(frame), len(corpus.review_counts), time.perf_counter() - t_start,
                       rows.embed_seconds, rows.resumed, incremental=base is not None,
                       embedded_reviews=rows.embedded_reviews, **counts)
