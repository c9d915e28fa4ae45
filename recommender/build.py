"""Build an index directory from the review store: chunk → embed (resumable) → index → publish atomically."""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import shutil
import time
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
from recommender.lexical import LexicalIndex
from recommender.review_table import write_review_table
from recommender.search_config import SearchConfig
from scraping.store import Store

log = logging.getLogger(__name__)

#: 2: reviews in a memory-mapped Arrow file, the BM25 index built at index time, search settings in the manifest.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
CHUNKS = "chunks.parquet"
REVIEWS = "reviews.arrow"
#: bm25s's files (postings memory-mapped at load) over every chunk, then every synopsis.
LEXICAL_DIR = "lexical"
CATALOG = "catalog.json"
ROW_IDS = "vectors.ids.npy"
ANIME_VECTORS = "anime_vectors.npy"
ANIME_VECTOR_IDS = "anime_vectors.ids.npy"
#: One embedded synopsis per anime that has one: an extra document of that anime at query time.
SYNOPSIS_VECTORS = "synopsis_vectors.npy"
SYNOPSIS_IDS = "synopsis_vectors.ids.npy"

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
    """What a build did and how fast."""

    out: Path
    reviews: int
    chunks: int
    anime: int
    seconds: float
    embed_seconds: float
    resumed_chunks: int

    @property
    def reviews_per_s(self) -> float:
        return self.reviews / self.embed_seconds if self.embed_seconds else float("nan")

    @property
    def chunks_per_s(self) -> float:
        embedded = self.chunks - self.resumed_chunks
        return embedded / self.embed_seconds if self.embed_seconds else float("nan")


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
                   batch_size: int = config.ENCODE_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of the catalogue's synopses and their anime ids (sorted by id; anime without one are left out)."""
    texts_by_id = {int(k): synopsis_text(meta) for k, meta in catalog.items()}
    ids = sorted(a for a, text in texts_by_id.items() if text)
    texts = [texts_by_id[a] for a in ids]
    vectors = encoder.encode(texts, batch_size=batch_size) if texts else np.zeros((0, encoder.dim), np.float32)
    return vectors.astype(np.float32), np.asarray(ids, dtype=np.int64)


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


def _plan_key(encoder: Encoder, store_checksum: str, overlap: int) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "model_sha256": encoder.sha256,
        "store_checksum": store_checksum,
        "max_tokens": encoder.tokens_per_chunk,
        "overlap": overlap,
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


def anime_centroids(vectors: np.ndarray, anime_ids: np.ndarray, normalize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean chunk vector of every anime (unit length when the model's similarity is cosine)."""
    ids, inverse = np.unique(anime_ids, return_inverse=True)
    sums = np.zeros((len(ids), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, vectors)
    centroids = (sums / np.bincount(inverse)[:, None]).astype(np.float32)
    if normalize:
        centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    return centroids, ids.astype(np.int64)


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
) -> BuildReport:
    """Build (or finish building) the index directory for every review in the store.

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

    Raises:
        EmptyCorpusError: the store has no reviews.
        ModelNotFoundError: the model cannot be loaded.
    """
    t_start = time.perf_counter()
    encoder = encoder or Encoder.load(model)
    out = Path(out) if out else config.default_index_dir(encoder.name)
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
        store_checksum = store.reviews_checksum()
    for anime_id in review_counts:
        catalog.setdefault(str(anime_id), {"title": f"Anime {anime_id}", "url": f"https://myanimelist.net/anime/{anime_id}",
                                           "review_count": review_counts[anime_id]})

    work = work_dir_for(out)
    key = _plan_key(encoder, store_checksum, overlap)
    frame = _plan_chunks(work, key, texts, anime_of, encoder, overlap, progress)
    frame["review_pos"] = pd.Index([r.review_id for r in reviews]).get_indexer(frame["review_id"]).astype(np.int64)
    vectors, resumed, embed_seconds = _embed(work, frame, texts, encoder, batch_size, shard_size, progress)
    index = VectorIndex.build(vectors, index_type or default_index_type(len(vectors)),
                              **{k: v for k, v in (index_params or {}).items() if v is not None})
    centroids, centroid_ids = anime_centroids(vectors, frame["anime_id"].to_numpy(), encoder.normalize)
    synopsis_vectors, synopsis_ids = embed_synopses(catalog, encoder, batch_size)
    lexical = build_lexical(frame, texts, [synopsis_text(catalog[str(a)]) for a in synopsis_ids], progress)
    search = SearchConfig(doc_norm=document_norm(vectors, encoder.normalize))
    info = encoder.info()
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": info.to_dict(),
        "dim": info.dim,
        "metric": "inner_product",
        "normalized": info.normalize,
        "similarity": info.similarity,
        "pooling": info.pooling,
        "chunking": {"max_tokens": key["max_tokens"], "overlap": overlap},
        "index": {"type": index.index_type, "params": index.params},
        "search": search.to_dict(),
        "counts": {"reviews": len(texts), "chunks": len(frame), "anime": len(review_counts),
                   "synopses": len(synopsis_ids)},
        "store": {"path": str(Path(db).resolve()), "checksum": store_checksum},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.perf_counter() - t_start, 3),
    }

    def write(tmp: Path) -> None:
        index.save(tmp)
        np.save(tmp / ROW_IDS, frame["chunk_id"].to_numpy(np.int64))
        frame.to_parquet(tmp / CHUNKS, index=False)
        write_review_table(tmp / REVIEWS, reviews)
        np.save(tmp / ANIME_VECTORS, centroids)
        np.save(tmp / ANIME_VECTOR_IDS, centroid_ids)
        np.save(tmp / SYNOPSIS_VECTORS, synopsis_vectors)
        np.save(tmp / SYNOPSIS_IDS, synopsis_ids)
        lexical.save(tmp / LEXICAL_DIR)
        (tmp / CATALOG).write_text(json.dumps(catalog, ensure_ascii=False))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))

    publish_directory(out, write)
    shutil.rmtree(work, ignore_errors=True)
    return BuildReport(out, len(texts), len(frame), len(review_counts), time.perf_counter() - t_start,
                       embed_seconds, resumed)
