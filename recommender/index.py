"""Vector index over review-chunk embeddings: the only module that imports faiss.

Rows are numbered 0..n-1 in the order the vectors were added; the index
directory's ``vectors.ids.npy`` maps each row to its chunk id. Every type
searches by inner product (cosine on unit vectors) and answers with the same
contract: ``(scores, rows)`` best first, rows padded with -1.

Types (``docs/index_types.md`` has the measurements behind the defaults):

- ``flat``: exact; the default, and the right choice below ~200k vectors.
- ``hnsw``: HNSW graph with 32 links per node over the full vectors: fast at
  any size, ~1.2× flat's memory, slow to build on few cores.
- ``sq8``: IVF over 8-bit scalar codes: a quarter of flat's memory.
- ``ivfpq``: IVF over 4-bit product-quantised codes (SIMD "fast scan") that
  proposes ``k_factor × k`` candidates, re-scored exactly from the full
  vectors, which are memory-mapped from disk on load: the RAM held per vector
  is ``pq_m / 2`` bytes plus whatever pages the OS keeps cached. PQ codes
  alone cannot keep 98 % of the exact top 500 (measured ~0.76–0.89), hence
  the re-scoring.

The approximate types tune their search knob (``ef_search`` or ``nprobe``) at
build time: the smallest value whose recall of the exact top ``RECALL_AT`` on a
sample of the corpus reaches ``RECALL_TARGET`` is stored in :attr:`VectorIndex.params`
(with the measured recall), which ``build.py`` writes into the manifest and
:meth:`VectorIndex.load` reads back. Each call to :meth:`VectorIndex.search`
may override it.

With a GPU build of faiss (``pip install .[gpu]``) and a visible GPU, flat and
IVF indexes are also copied to the GPU for search; HNSW stays on the CPU, and
the CPU copy is what is saved.
"""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path

import numpy as np

try:
    import faiss
except ImportError as exc:  # install_requires names no provider: faiss-cpu and faiss-gpu-cu12 clash
    raise ImportError("faiss is not installed: pip install -e '.[cpu]' (or '.[gpu]' with CUDA 12)") from exc

from recommender import config
from recommender.errors import IndexMismatchError, IndexNotFoundError, InvalidParameterError

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "hnsw", "ivfpq", "sq8")
INDEX_FILE = "index.faiss"

#: Share of the exact top ``RECALL_AT`` an approximate index must return (the reference used top 500).
RECALL_TARGET = 0.98
RECALL_AT = 500
#: Corpus vectors used as queries when calibrating the search knob at build time.
CALIBRATION_QUERIES = 64
#: Below this many vectors an IVF type is built as ``flat``: exact search costs well under a millisecond
#: there, and too few points cannot train the coarse and product quantizers.
MIN_IVF_VECTORS = 1_000
#: faiss's k-means wants at least 39 training points per centroid; nlist is capped accordingly.
MIN_POINTS_PER_LIST = 39
#: Ten k-means iterations place the coarse centroids well enough; faiss's 25 cost 2.5× the build time.
KMEANS_ITERATIONS = 10
#: faiss GPU kernels return at most this many neighbours; larger ``k`` is searched on the CPU copy.
GPU_MAX_K = 2048
#: A filter leaving fewer than this share of the rows is answered exactly from the full-precision vectors
#: by HNSW and IVF-PQ: a graph walk or coarse probe would find too few allowed neighbours.
EXACT_FILTER_SHARE = 0.05

#: Build-time parameters of each type (``None`` values are ignored, so callers may pass every knob).
BUILD_PARAMS = {
    "flat": (),
    "hnsw": ("m", "ef_construction", "ef_search"),
    "sq8": ("nlist", "nprobe"),
    "ivfpq": ("nlist", "nprobe", "pq_m", "pq_bits", "k_factor"),
}
#: Knobs :meth:`VectorIndex.search` accepts per call, by type (others are ignored).
QUERY_PARAMS = {"flat": (), "hnsw": ("ef_search",), "sq8": ("nprobe",), "ivfpq": ("nprobe", "k_factor")}

HNSW_M = 32
#: faiss's default; 100 gained 0.003 recall@500 at 2.3× the build time (docs/index_types.md).
HNSW_EF_CONSTRUCTION = 40
#: Used when an index carries no calibrated value (e.g. loaded without its manifest params).
HNSW_EF_SEARCH = 1024
IVF_NPROBE_SHARE = 1 / 3
PQ_BITS = 4
PQ_K_FACTOR = 8

_EF_CANDIDATES = (128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
_NPROBE_SHARES = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4, 1 / 3, 1 / 2, 3 / 4, 1.0)


def gpu_count() -> int:
    """GPUs that this faiss build can use (0 with faiss-cpu)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get else 0


def set_threads(n: int) -> None:
    """Set faiss's OpenMP threads (1 serves a single query best on 2 cores; see docs/index_types.md)."""
    faiss.omp_set_num_threads(max(1, int(n)))


def serving_threads() -> int:
    """Threads per query for a server: half the usable cores, at least one.

    On the 2-core target this is 1: a second OpenMP thread per query made
    whole requests 4–16× slower at p50 whenever the other core was busy
    (another request, the web server, other jobs), as idle spinning faiss
    threads starve torch's (``benchmarks/query_latency.py --compare-threads``).
    """
    return max(1, config.usable_cores() // 2)


def default_nlist(n: int) -> int:
    """IVF lists for ``n`` vectors: the power of two at or below 4·√n, capped so each list can train."""
    nlist = 1 << max(0, int(math.log2(max(1.0, 4 * math.sqrt(n)))))
    return max(1, min(nlist, n // MIN_POINTS_PER_LIST))


def recall_at(exact: np.ndarray, approximate: np.ndarray) -> float:
    """Mean share of each row of ``exact`` (true neighbour rows) found in the same row of ``approximate``."""
    if exact.size == 0:
        return 1.0
    found = [len(np.intersect1d(e[e >= 0], a[a >= 0], assume_unique=True)) / max(1, int((e >= 0).sum()))
             for e, a in zip(exact, approximate, strict=True)]
    return float(np.mean(found))


def exact_search(queries: np.ndarray, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force inner-product top ``k`` (ground truth for recall), without building an index."""
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return faiss.knn(queries, vectors, min(int(k), len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidParameterError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_type(index_type: str) -> None:
    if index_type not in INDEX_TYPES:
        raise InvalidParameterError(f"unknown index type {index_type!r}; choose from {', '.join(INDEX_TYPES)}")


def resolve_params(index_type: str, n: int, dim: int, given: dict) -> tuple[str, dict]:
    """The type actually built and its build parameters, from the caller's (possibly partial) choice.

    IVF types fall back to ``flat`` below :data:`MIN_IVF_VECTORS` vectors and
    cap ``nlist`` at what ``n`` vectors can train, with a logged warning;
    ``ef_search``/``nprobe`` stay unset unless given (build calibrates them).

    Raises:
        InvalidParameterError: unknown type, a parameter the type does not take, or a bad value.
    """
    _check_type(index_type)
    params = {key: value for key, value in given.items() if value is not None}
    unknown = sorted(set(params) - set(BUILD_PARAMS[index_type]))
    if unknown:
        allowed = ", ".join(BUILD_PARAMS[index_type]) or "none"
        raise InvalidParameterError(f"index type {index_type!r} takes no {', '.join(unknown)} (it takes: {allowed})")
    params = {key: _positive_int(key, value) for key, value in params.items()}
    if index_type == "flat":
        return "flat", {}
    if index_type == "hnsw":
        return "hnsw", {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, **params}
    if n < MIN_IVF_VECTORS:
        log.warning("%d vectors are too few to train a %s index (it needs %d); building an exact flat index",
                    n, index_type, MIN_IVF_VECTORS)
        return "flat", {"fallback_from": index_type}
    cap = max(1, n // MIN_POINTS_PER_LIST)
    nlist = params.get("nlist", default_nlist(n))
    if nlist > cap:
        log.warning("nlist %d is more than %d vectors can train; using %d lists", nlist, n, cap)
        nlist = cap
    params["nlist"] = nlist
    if "nprobe" in params:
        params["nprobe"] = min(params["nprobe"], nlist)
    if index_type == "ivfpq":
        pq_m = params.setdefault("pq_m", _default_pq_m(dim))
        if dim % pq_m:
            raise InvalidParameterError(f"pq_m must divide the dimension {dim}, got {pq_m}")
        if params.setdefault("pq_bits", PQ_BITS) not in (4, 8):
            raise InvalidParameterError(f"pq_bits must be 4 or 8, got {params['pq_bits']}")
        params.setdefault("k_factor", PQ_K_FACTOR)
    return index_type, params


def _default_pq_m(dim: int) -> int:
    """Two dimensions per sub-quantizer (2 bits per dimension at 4 bits each), or the nearest divisor."""
    return next(m for m in range(max(1, dim // 2), 0, -1) if dim % m == 0)


def _factory_string(index_type: str, params: dict) -> str:
    if index_type == "flat":
        return "Flat"
    if index_type == "hnsw":
        return f"HNSW{params['m']},Flat"
    if index_type == "sq8":
        return f"IVF{params['nlist']},SQ8"
    codes = f"PQ{params['pq_m']}x4fs" if params["pq_bits"] == 4 else f"PQ{params['pq_m']}x{params['pq_bits']}"
    return f"IVF{params['nlist']},{codes},RFlat"


def _kind_of(index) -> str | None:
    """The index type a faiss object read from disk implements."""
    if isinstance(index, faiss.IndexRefine):
        return "ivfpq"
    if isinstance(index, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(index, faiss.IndexIVFScalarQuantizer):
        return "sq8"
    if isinstance(index, faiss.IndexFlat):
        return "flat"
    return None


def _to_gpu(index, index_type: str):
    """A GPU copy of ``index`` for search, or None (no GPU, HNSW, or a kind faiss cannot move)."""
    if index_type == "hnsw" or gpu_count() == 0:
        return None
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except (RuntimeError, AttributeError) as exc:  # e.g. fast-scan PQ codes have no GPU implementation
        log.warning("%s index stays on the CPU: faiss cannot move it to the GPU (%s)", index_type, exc)
        return None


class VectorIndex:
    """Inner-product search over float32 vectors. Build with :meth:`build`, read with :meth:`load`."""

    def __init__(self, index, index_type: str, params: dict | None = None, gpu_index=None) -> None:
        self._index = index
        ivf = faiss.try_extract_index_ivf(index) if index_type == "sq8" else None
        if ivf is not None and ivf.direct_map.type == faiss.DirectMap.NoMap:
            ivf.make_direct_map()  # row → list position, so single rows can be decoded (see similarities)
        self._gpu = gpu_index
        self._gpu_lock = threading.Lock()  # faiss GPU indexes are not safe for concurrent searches; CPU ones are
        self.index_type = index_type
        self.params = dict(params or {})

    @classmethod
    def build(cls, vectors: np.ndarray, index_type: str = "flat", *, calibrate: bool = True,
              use_gpu: bool = True, **params) -> VectorIndex:
        """Index ``vectors`` (n × d float32) for maximum-inner-product search.

        Args:
            vectors: one row per review chunk (unit length for cosine models).
            index_type: one of :data:`INDEX_TYPES`.
            calibrate: measure recall on a sample and pick the cheapest ``ef_search``/``nprobe`` that meets
                :data:`RECALL_TARGET` (when not given explicitly).
            use_gpu: search on a GPU copy when faiss sees a GPU.
            **params: see :data:`BUILD_PARAMS`; ``None`` values mean "choose for me".

        Raises:
            InvalidParameterError: unknown index type or bad parameters.
        """
        _check_type(index_type)
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        n, dim = vectors.shape
        built_type, resolved = resolve_params(index_type, n, dim, params)
        index = faiss.index_factory(dim, _factory_string(built_type, resolved), faiss.METRIC_INNER_PRODUCT)
        if built_type == "hnsw":
            index.hnsw.efConstruction = resolved["ef_construction"]
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.cp.niter = KMEANS_ITERATIONS
            train_n = min(n, max(40 * resolved["nlist"], 20_000))
            sample = np.sort(np.random.default_rng(0).choice(n, train_n, replace=False))
            index.train(vectors[sample])
        index.add(vectors)
        built = cls(index, built_type, resolved)
        if built_type in ("hnsw", "sq8", "ivfpq"):
            built._calibrate(vectors, calibrate)
        if use_gpu:
            built._gpu = _to_gpu(index, built_type)
        return built

    def _calibrate(self, vectors: np.ndarray, measure: bool) -> None:
        """Fill in the search knob: the cheapest candidate that reaches the recall target on a sample."""
        knob = "ef_search" if self.index_type == "hnsw" else "nprobe"
        n = len(vectors)
        k = min(RECALL_AT, max(1, n // 10))
        self.params["recall_k"] = k
        if knob in self.params or not measure:
            self.params.setdefault(knob, self._default_knob(knob))
            if not measure:
                return
            candidates = [self.params[knob]]
        elif knob == "ef_search":
            candidates = [ef for ef in _EF_CANDIDATES if ef >= k] or [k]
        else:
            nlist = self.params["nlist"]
            candidates = sorted({max(1, math.ceil(nlist * share)) for share in _NPROBE_SHARES})
        queries = vectors[np.sort(np.random.default_rng(1).choice(n, min(n, CALIBRATION_QUERIES), replace=False))]
        _, exact = exact_search(queries, vectors, k)
        recall = 0.0
        for value in candidates:
            _, rows = self.search(queries, k, **{knob: value})
            recall = recall_at(exact, rows)
            if recall >= RECALL_TARGET:
                break
        else:
            if len(candidates) > 1:
                log.warning("%s index reaches only %.3f recall@%d at the largest %s (%d)",
                            self.index_type, recall, k, knob, value)
        self.params[knob] = int(value)
        self.params["calibrated_recall"] = round(recall, 4)

    def _default_knob(self, knob: str) -> int:
        if knob == "ef_search":
            return HNSW_EF_SEARCH
        return max(1, math.ceil(self.params.get("nlist", 1) * IVF_NPROBE_SHARE))

    @classmethod
    def load(cls, directory: Path, index_type: str = "flat", params: dict | None = None, *,
             use_gpu: bool = True) -> VectorIndex:
        """Read ``index.faiss`` from an index directory, with the type and params its manifest records.

        ``ivfpq`` memory-maps its full vectors (used only to re-score candidates)
        instead of reading them into RAM.

        Raises:
            InvalidParameterError: unknown index type.
            IndexNotFoundError: the file is missing or unreadable.
            IndexMismatchError: the file holds another type of index than ``index_type``.
        """
        _check_type(index_type)
        path = Path(directory) / INDEX_FILE
        if not path.exists():
            raise IndexNotFoundError(f"no {INDEX_FILE} in {directory}")
        flags = faiss.IO_FLAG_MMAP_IFC if index_type == "ivfpq" else 0
        try:
            index = faiss.read_index(str(path), flags)
        except RuntimeError as exc:
            raise IndexNotFoundError(f"cannot read {path}: {exc}") from exc
        kind = _kind_of(index)
        if kind != index_type:
            raise IndexMismatchError(f"{path} holds a {kind or type(index).__name__} index, the manifest says "
                                     f"{index_type}; rebuild it")
        loaded = cls(index, index_type, params)
        ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            loaded.params.setdefault("nlist", int(ivf.nlist))
        if index_type == "ivfpq":
            loaded.params.setdefault("k_factor", int(index.k_factor))
        for knob in QUERY_PARAMS[index_type]:
            if knob != "k_factor":
                loaded.params.setdefault(knob, loaded._default_knob(knob))
        if use_gpu:
            loaded._gpu = _to_gpu(index, index_type)
        return loaded

    def save(self, directory: Path) -> None:
        """Write the CPU index (never a GPU copy) as ``index.faiss`` in ``directory``."""
        faiss.write_index(self._index, str(Path(directory) / INDEX_FILE))

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def dim(self) -> int:
        return int(self._index.d)

    @property
    def on_gpu(self) -> bool:
        """Whether searches (with ``k`` up to :data:`GPU_MAX_K`) run on a GPU copy."""
        return self._gpu is not None

    @staticmethod
    def keeps_vectors(index_type: str) -> bool:
        """Whether an index of this type stores the full-precision vectors (``sq8`` keeps 8-bit codes only)."""
        return index_type != "sq8"

    def vectors(self) -> np.ndarray:
        """The stored full-precision vectors (to re-index as another type without re-embedding).

        Raises:
            InvalidParameterError: ``sq8`` keeps only 8-bit codes.
        """
        if not self.keeps_vectors(self.index_type):
            raise InvalidParameterError("an sq8 index keeps only 8-bit codes, not the original vectors")
        source = faiss.downcast_index(self._index.refine_index) if self.index_type == "ivfpq" else self._index
        return source.reconstruct_n(0, self.ntotal) if self.ntotal else np.zeros((0, self.dim), np.float32)

    def search(self, queries: np.ndarray, k: int, *, allowed: AllowedRows | None = None,
               ef_search: int | None = None, nprobe: int | None = None,
               k_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` rows per query, best first: ``(scores, rows)``, rows padded with -1 when fewer exist.

        Args:
            queries: one vector or a batch (nq × d).
            k: rows wanted per query (capped at the number indexed, or allowed).
            allowed: only these rows may be returned (filters, held-out reviews); None: every row.
                The selector is applied inside faiss's scan, so one search returns the best allowed
                rows without over-fetching.
            ef_search: HNSW candidate list size (default: the calibrated one).
            nprobe: IVF lists scanned (default: the calibrated one).
            k_factor: ``ivfpq`` candidates re-scored per wanted row.

        The knobs are floors calibrated for ``k = recall_k`` (500) over every row;
        a larger ``k``, or a filter that leaves a share ``f`` of the rows, scales
        them up by ``k / recall_k`` and ``1 / f`` so recall holds. Below
        :data:`EXACT_FILTER_SHARE` of the rows HNSW and IVF-PQ answer from their
        full-precision storage (exact). Knobs the index type does not use are ignored.

        Raises:
            InvalidParameterError: a knob that is not a positive integer.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if allowed is not None and allowed.count >= self.ntotal:
            allowed = None
        available = self.ntotal if allowed is None else allowed.count
        if available == 0:
            return np.zeros((len(queries), 0), np.float32), np.full((len(queries), 0), -1, np.int64)
        k = max(1, min(int(k), available))
        given = {"ef_search": ef_search, "nprobe": nprobe, "k_factor": k_factor}
        knobs = {name: _positive_int(name, given[name]) if given[name] is not None else self.params.get(name)
                 for name in QUERY_PARAMS[self.index_type]}
        share = 1.0 if allowed is None else allowed.count / self.ntotal
        if allowed is not None and share < EXACT_FILTER_SHARE and self.index_type in ("hnsw", "ivfpq"):
            return self._exact_storage().search(queries, k, params=faiss.SearchParameters(sel=allowed.selector))
        params = self._search_parameters(knobs, k, share, allowed)
        kf = knobs.get("k_factor") or 1
        if self._gpu is not None and allowed is None and k * kf <= GPU_MAX_K:
            try:
                with self._gpu_lock:
                    return self._gpu.search(queries, k, params=params)
            except RuntimeError as exc:  # an older GPU build without per-call parameters: use the CPU copy
                log.warning("GPU search failed (%s); searching on the CPU from now on", exc)
                self._gpu = None
        return self._index.search(queries, k, params=params)

    def similarities(self, query: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Inner product of one query vector with the stored vectors of ``rows`` (decoded codes for ``sq8``).

        Used for the few rows a search did not return but an answer needs (lexical-only
        hits, evidence of a given anime): ``O(len(rows))``, no scan of the index.
        """
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        if not len(rows):
            return np.zeros(0, dtype=np.float32)
        vectors = self._index.reconstruct_batch(rows)
        return vectors @ np.asarray(query, dtype=np.float32)

    def _exact_storage(self):
        """The full-precision flat vectors behind an HNSW graph or an IVF-PQ refine step."""
        source = self._index.storage if self.index_type == "hnsw" else self._index.refine_index
        return faiss.downcast_index(source)

    def _search_parameters(self, knobs: dict, k: int, share: float = 1.0, allowed: AllowedRows | None = None):
        """faiss per-call search parameters (thread-safe: nothing on the shared index is changed)."""
        scale = max(1.0, k / self.params.get("recall_k", RECALL_AT)) / share
        selector = allowed.selector if allowed is not None else None
        if self.index_type == "hnsw":
            ef = max(k, math.ceil(knobs["ef_search"] * scale))
            return faiss.SearchParametersHNSW(efSearch=ef, sel=selector)
        if self.index_type == "flat":
            return None if selector is None else faiss.SearchParameters(sel=selector)
        nprobe = min(self.params["nlist"], math.ceil(knobs["nprobe"] * scale))
        ivf_params = faiss.SearchParametersIVF(nprobe=nprobe, sel=selector)
        if self.index_type == "sq8":
            return ivf_params
        refine = faiss.IndexRefineSearchParameters(k_factor=float(knobs["k_factor"]), base_index_params=ivf_params)
        refine.referenced_ivf_params = ivf_params  # keep the Python object alive as long as refine
        return refine


class AllowedRows:
    """A set of index rows a search may return, as the bitmap faiss's ``IDSelectorBitmap`` reads.

    Immutable once made, so one instance can serve concurrent searches (filters
    are cached per filter set and shared between request threads).
    """

    def __init__(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        self.mask = mask.copy()
        self.mask.setflags(write=False)
        self.count = int(mask.sum())
        self._bits = np.packbits(mask, bitorder="little")
        self.selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(self._bits))

    @classmethod
    def of_rows(cls, rows: np.ndarray, ntotal: int) -> AllowedRows:
        """Only ``rows`` (out of ``ntotal``)."""
        mask = np.zeros(ntotal, dtype=bool)
        mask[np.asarray(rows, dtype=np.int64)] = True
        return cls(mask)

    def __len__(self) -> int:
        return len(self.mask)
