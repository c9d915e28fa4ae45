"""Incremental builds: what a build may take over from the index already in ``--out``.

An update embeds only the reviews that are new or whose text changed (found by
review id and a digest of the text), takes every other chunk's span and vector
from the previous index, and then rebuilds everything derived from the vectors
(FAISS index, BM25, calibration) the way a full build does. Rows are kept in
the canonical order a full build writes — reviews in store order, then chunk
number — and a chunk's id is its row, so an updated index is the index a full
build of the same store would write: same chunk ids per row, same vectors
(up to float rounding of the batches they were embedded in), same answers.

:func:`incompatibility` decides when the previous index cannot be used at all;
``build`` and ``main.py`` both ask it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recommender import layout
from recommender.backends import manifest_backend
from recommender.encoder import Encoder
from recommender.errors import RecommenderError
from recommender.index import VectorIndex
from recommender.review_table import ReviewTable

#: Columns of ``chunks.parquet``, in the order a full build writes them.
CHUNK_COLUMNS = ["chunk_id", "review_id", "anime_id", "chunk_no", "start", "end", "review_pos"]


def text_digest(text: str) -> int:
    """A 64-bit digest of a review's text: two texts with the same digest are taken to be the same text."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def incompatibility(manifest: dict, encoder: Encoder, overlap: int) -> str | None:
    """Why an index with ``manifest`` cannot be updated with ``encoder`` and this chunk overlap (None: it can).

    Anything that changes a chunk's span or vector makes the old vectors useless:
    the format, the model's weights, its pooling, normalisation, similarity or
    dimension, the backend that computes the embeddings, and the chunking
    settings (the tokenizer is taken to come with the weights). The index type
    is not on the list: an update re-indexes every vector anyway, so another
    type costs no re-embedding.
    """
    found = manifest.get("format_version")
    if found != layout.FORMAT_VERSION:
        return f"it has index format {found}, this code writes {layout.FORMAT_VERSION}"
    model = manifest.get("model") or {}
    if model.get("sha256") != encoder.sha256:
        return (f"it was built with other model weights ({model.get('name')}, sha256 {str(model.get('sha256'))[:12]}…;"
                f" now {encoder.name}, {encoder.sha256[:12]}…)")
    built_with, now = manifest_backend(manifest), encoder.backend
    if built_with != now:
        return f"it was built with the {built_with} backend, this build uses {now}"
    for key, value in (("dim", encoder.dim), ("pooling", encoder.pooling), ("normalized", encoder.normalize),
                       ("similarity", encoder.similarity)):
        if manifest.get(key) != value:
            return f"the model's {key} changed ({manifest.get(key)} → {value})"
    chunking = manifest.get("chunking") or {}
    was, wanted = (chunking.get("max_tokens"), chunking.get("overlap")), (encoder.tokens_per_chunk, overlap)
    if was != wanted:
        return f"its chunking (max_tokens, overlap) is {was}, this build uses {wanted}"
    return None


@dataclass(frozen=True)
class ReviewDiff:
    """How the store's reviews differ from the previous index's, by review id and text digest.

    Attributes:
        new: ids of reviews the previous index does not have.
        changed: ids whose text changed (re-embedded).
        deleted: ids no longer in the store.
        kept: ids whose text is unchanged (their chunks and vectors are reused).
        touched_anime: anime whose set of review chunks changed (a review added, edited, deleted or moved to
            another anime): their centroids are recomputed, every other anime's is reused.
    """

    new: list[str]
    changed: list[str]
    deleted: list[str]
    kept: list[str]
    touched_anime: set[int]

    @property
    def to_embed(self) -> list[str]:
        """New and changed reviews, in the order the store gave them."""
        return self.new + self.changed


def diff_reviews(old_digests: Mapping[str, int], old_anime: Mapping[str, int],
                 new_digests: Mapping[str, int], new_anime: Mapping[str, int]) -> ReviewDiff:
    """Compare the previous index's reviews with the store's (both: review id → text digest, review id → anime).

    ``new``, ``changed`` and ``kept`` follow the order of ``new_digests``; ``deleted`` that of ``old_digests``.
    """
    new, changed, kept, touched = [], [], [], set()
    for review_id, digest in new_digests.items():
        old = old_digests.get(review_id)
        if old is None:
            new.append(review_id)
            touched.add(new_anime[review_id])
            continue
        if old != digest:
            changed.append(review_id)
        else:
            kept.append(review_id)
        if old != digest or old_anime[review_id] != new_anime[review_id]:
            touched.update((old_anime[review_id], new_anime[review_id]))
    deleted = [review_id for review_id in old_digests if review_id not in new_digests]
    touched.update(old_anime[review_id] for review_id in deleted)
    return ReviewDiff(new, changed, deleted, kept, touched)


def merge_chunks(old: pd.DataFrame, old_vectors: np.ndarray, fresh: pd.DataFrame, fresh_vectors: np.ndarray,
                 kept: Sequence[str], review_order: Sequence[str],
                 anime_of: Mapping[str, int]) -> tuple[pd.DataFrame, np.ndarray]:
    """The chunk table and vectors of the updated index, in the canonical row order of a full build.

    Args:
        old: the previous index's chunks (``review_id, chunk_no, start, end``), row for row with ``old_vectors``.
        fresh: the chunks just made for new and changed reviews, row for row with ``fresh_vectors``.
        kept: reviews whose old chunks are reused.
        review_order: every review id of the store, in store order (a review's position is its ``review_pos``).
        anime_of: review id → anime id now (a kept review may have moved to another anime).

    Returns:
        The table with the columns of :data:`CHUNK_COLUMNS` (chunk id = row) and the matching vectors.
    """
    spans = ["review_id", "chunk_no", "start", "end"]
    keep = old["review_id"].isin(pd.Index(kept)).to_numpy()
    reused = old.loc[keep, spans].assign(source=0, source_row=np.flatnonzero(keep))
    made = fresh[spans].assign(source=1, source_row=np.arange(len(fresh)))
    both = pd.concat([reused, made], ignore_index=True)
    both["review_pos"] = pd.Index(review_order).get_indexer(both["review_id"]).astype(np.int64)
    both = both.sort_values(["review_pos", "chunk_no"], kind="stable", ignore_index=True)
    vectors = np.empty((len(both), old_vectors.shape[1]), dtype=np.float32)
    for source, matrix in ((0, old_vectors), (1, fresh_vectors)):
        rows = np.flatnonzero(both["source"].to_numpy() == source)
        vectors[rows] = matrix[both["source_row"].to_numpy()[rows]]
    frame = pd.DataFrame({
        "chunk_id": np.arange(len(both), dtype=np.int64),
        "review_id": both["review_id"].to_numpy(dtype=object),
        "anime_id": np.fromiter((anime_of[r] for r in both["review_id"]), dtype=np.int64, count=len(both)),
        "chunk_no": both["chunk_no"].to_numpy(np.int64),
        "start": both["start"].to_numpy(np.int64),
        "end": both["end"].to_numpy(np.int64),
        "review_pos": both["review_pos"].to_numpy(np.int64),
    })
    return frame, vectors


@dataclass(frozen=True)
class PreviousIndex:
    """What an update takes over from the index already in ``--out`` (see :func:`read_previous`).

    Attributes:
        manifest: its manifest.
        chunks: its chunk table (``review_id, chunk_no, start, end``), row for row with ``vectors``.
        vectors: its full-precision chunk vectors.
        digests: review id → digest of the text it indexed (:func:`text_digest`).
        anime_of: review id → anime id it was indexed under.
        centroid_ids, centroids: its per-anime mean vectors.
        synopsis_ids, synopsis_vectors: its embedded synopses.
        catalog: its catalogue (anime id as a string → metadata, synopsis included).
    """

    manifest: dict
    chunks: pd.DataFrame
    vectors: np.ndarray
    digests: dict[str, int]
    anime_of: dict[str, int]
    centroid_ids: np.ndarray
    centroids: np.ndarray
    synopsis_ids: np.ndarray
    synopsis_vectors: np.ndarray
    catalog: dict[str, dict]

    def diff(self, digests: Mapping[str, int], anime_of: Mapping[str, int]) -> ReviewDiff:
        """How the store's reviews (review id → digest, review id → anime) differ from this index's."""
        return diff_reviews(self.digests, self.anime_of, digests, anime_of)

    def reusable_centroids(self, touched: set[int]) -> dict[int, np.ndarray]:
        """The centroids of anime whose chunks did not change."""
        return {int(a): v for a, v in zip(self.centroid_ids, self.centroids, strict=True) if int(a) not in touched}

    @property
    def identity(self) -> str:
        """Names this previous index in a resumable plan: a plan made over another base is discarded."""
        built = self.manifest.get("build_id") or self.manifest.get("built_at")
        return f"{built}|{(self.manifest.get('store') or {}).get('checksum')}"


def read_previous(out: Path, encoder: Encoder, overlap: int) -> tuple[PreviousIndex | None, str | None]:
    """The index in ``out`` when an update with ``encoder`` can reuse it; else None and why not.

    Returns ``(None, None)`` when ``out`` holds no index at all.
    """
    path = Path(out) / layout.MANIFEST
    if not path.exists():
        return None, None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            return None, f"{layout.MANIFEST} is not a JSON object"
        reason = incompatibility(manifest, encoder, overlap)
        if reason:
            return None, reason
        return _read_parts(Path(out), manifest)
    except (OSError, ValueError, KeyError, RecommenderError) as exc:
        return None, f"its files cannot be read ({exc.__class__.__name__}: {exc})"


def _read_parts(out: Path, manifest: dict) -> tuple[PreviousIndex | None, str | None]:
    row_ids = np.load(out / layout.ROW_IDS)
    chunks = pd.read_parquet(out / layout.CHUNKS, columns=["chunk_id", "review_id", "chunk_no", "start", "end"])
    if not np.array_equal(chunks["chunk_id"].to_numpy(), row_ids):
        chunks = chunks.set_index("chunk_id").loc[row_ids].reset_index()
    index_info = manifest["index"]
    if (out / layout.EMBEDDINGS).exists():
        vectors = np.load(out / layout.EMBEDDINGS)
    elif VectorIndex.keeps_vectors(index_info["type"]):
        vectors = VectorIndex.load(out, index_info["type"], index_info.get("params"), use_gpu=False).vectors()
    else:
        return None, (f"its {index_info['type']} index keeps only 8-bit codes and there is no"
                      f" {layout.EMBEDDINGS} beside it")
    if vectors.shape != (len(chunks), manifest["dim"]):
        return None, f"it holds {vectors.shape} vectors for {len(chunks)} chunks"
    table = ReviewTable.open(out / layout.REVIEWS)
    review_ids = [str(r) for r in table.review_ids()]
    digests = np.load(out / layout.REVIEW_DIGESTS) if (out / layout.REVIEW_DIGESTS).exists() else None
    if digests is None or len(digests) != len(review_ids):  # an index from before digests were written
        digests = [text_digest(text) for text in table.texts()]
    synopsis_ids, synopses = np.zeros(0, np.int64), np.zeros((0, manifest["dim"]), np.float32)
    if (out / layout.SYNOPSIS_IDS).exists():
        synopsis_ids = np.load(out / layout.SYNOPSIS_IDS).astype(np.int64)
        synopses = np.load(out / layout.SYNOPSIS_VECTORS)
    previous = PreviousIndex(
        manifest=manifest,
        chunks=chunks,
        vectors=vectors,
        digests=dict(zip(review_ids, (int(d) for d in digests), strict=True)),
        anime_of=dict(zip(review_ids, table.anime_ids.tolist(), strict=True)),
        centroid_ids=np.load(out / layout.ANIME_VECTOR_IDS).astype(np.int64),
        centroids=np.load(out / layout.ANIME_VECTORS),
        synopsis_ids=synopsis_ids,
        synopsis_vectors=synopses,
        catalog=json.loads((out / layout.CATALOG).read_text()),
    )
    return previous, None
