"""Vector index over review-chunk embeddings: the only module that imports faiss.

Rows are numbered 0..n-1 in the order the vectors were added; the index
directory's ``vectors.ids.npy`` maps each row to its chunk id.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from recommender.errors import IndexNotFoundError, InvalidParameterError

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat",)
INDEX_FILE = "index.faiss"


def gpu_count() -> int:
    """GPUs that this faiss build can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def set_threads(n: int) -> None:
    """Pin faiss's OpenMP threads (2 on the reference build machine, where more threads only contend)."""
    faiss.omp_set_num_threads(max(1, int(n)))


class VectorIndex:
    """Inner-product search over float32 vectors. Build with :meth:`build`, read with :meth:`load`."""

    def __init__(self, index, index_type: str, params: dict | None = None) -> None:
        self._index = index
        self.index_type = index_type
        self.params = dict(params or {})

    @classmethod
    def build(cls, vectors: np.ndarray, index_type: str = "flat", **params) -> VectorIndex:
        """Index ``vectors`` (n × d float32) for maximum-inner-product search.

        Raises:
            InvalidParameterError: unknown index type.
        """
        if index_type not in INDEX_TYPES:
            raise InvalidParameterError(f"unknown index type {index_type!r}; choose from {', '.join(INDEX_TYPES)}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        return cls(index, index_type, params)

    @classmethod
    def load(cls, directory: Path, index_type: str = "flat", params: dict | None = None) -> VectorIndex:
        path = Path(directory) / INDEX_FILE
        if not path.exists():
            raise IndexNotFoundError(f"no {INDEX_FILE} in {directory}")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise IndexNotFoundError(f"cannot read {path}: {exc}") from exc
        return cls(index, index_type, params)

    def save(self, directory: Path) -> None:
        faiss.write_index(self._index, str(Path(directory) / INDEX_FILE))

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query, best first: ``(scores, rows)``, rows padded with -1 when fewer exist."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = max(1, min(int(k), self.ntotal))
        scores, rows = self._index.search(queries, k)
        return scores, rows
