"""Index types: recall against exact search, save/load, parameters, small corpora and the GPU fallback."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from recommender import index as index_mod
from recommender.errors import IndexMismatchError, IndexNotFoundError, InvalidParameterError
from recommender.index import (
    INDEX_TYPES,
    RECALL_TARGET,
    VectorIndex,
    default_nlist,
    exact_search,
    recall_at,
    resolve_params,
)

ANN_TYPES = ("hnsw", "sq8", "ivfpq")
K = 50
#: recall@50 each approximate type must keep; build-time calibration aims at 0.98 of the top 500.
MIN_RECALL = 0.95


def clustered(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors from a Gaussian mixture: neighbourhoods like real embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, dim))
    points = centers[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, dim))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


@pytest.fixture(scope="module")
def mixture() -> np.ndarray:
    return clustered(5040, 32, 60, seed=0)


@pytest.fixture(scope="module")
def corpus(mixture) -> np.ndarray:
    return mixture[:5000]


@pytest.fixture(scope="module")
def queries(mixture) -> np.ndarray:
    """Unseen points of the same mixture: queries near, but not in, the corpus."""
    return mixture[5000:]


@pytest.fixture(scope="module")
def exact(corpus, queries) -> np.ndarray:
    return exact_search(queries, corpus, K)[1]


@pytest.fixture(scope="module")
def built(corpus) -> dict[str, VectorIndex]:
    return {kind: VectorIndex.build(corpus, kind) for kind in INDEX_TYPES}


def test_flat_is_exact(built, queries, exact):
    scores, rows = built["flat"].search(queries, K)
    assert rows.shape == (len(queries), K)
    assert np.array_equal(rows, exact)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first


@pytest.mark.parametrize("kind", ANN_TYPES)
def test_ann_recall_against_exact(built, queries, exact, kind):
    index = built[kind]
    assert index.index_type == kind
    scores, rows = index.search(queries, K)
    assert rows.shape == (len(queries), K)
    assert recall_at(exact, rows) >= MIN_RECALL
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


@pytest.mark.parametrize("kind", ANN_TYPES)
def test_build_calibrates_and_records_the_search_knob(built, kind):
    params = built[kind].params
    knob = "ef_search" if kind == "hnsw" else "nprobe"
    assert params[knob] >= 1
    assert params["calibrated_recall"] >= RECALL_TARGET
    assert params["recall_k"] == 500
    if kind != "hnsw":
        assert params["nlist"] == default_nlist(5000) == 128
        assert params["nprobe"] <= params["nlist"]
    if kind == "ivfpq":
        assert (params["pq_m"], params["pq_bits"], params["k_factor"]) == (16, 4, 8)


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_save_load_round_trip_keeps_results(built, queries, tmp_path, kind):
    index = built[kind]
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path, index.index_type, index.params)
    assert loaded.params == index.params
    assert (loaded.ntotal, loaded.dim) == (5000, 32)
    scores, rows = index.search(queries, K)
    loaded_scores, loaded_rows = loaded.search(queries, K)
    assert np.array_equal(rows, loaded_rows)
    assert np.allclose(scores, loaded_scores)


def test_query_time_override_changes_the_work_done(built, queries, exact):
    index = built["sq8"]
    _, narrow = index.search(queries, K, nprobe=1)
    _, wide = index.search(queries, K, nprobe=index.params["nlist"])
    assert recall_at(exact, narrow) < recall_at(exact, wide)
    assert recall_at(exact, wide) >= 0.99  # every list scanned: only the 8-bit codes cost recall
    # knobs of other types are ignored, bad values are not
    assert np.array_equal(index.search(queries, K, ef_search=7)[1], index.search(queries, K)[1])
    with pytest.raises(InvalidParameterError):
        built["hnsw"].search(queries, K, ef_search=0)


def test_load_without_manifest_params_uses_defaults(built, tmp_path):
    built["sq8"].save(tmp_path)
    loaded = VectorIndex.load(tmp_path, "sq8")
    assert loaded.params["nlist"] == 128 and loaded.params["nprobe"] == 43  # a third of the lists


def test_unknown_type_or_parameter_is_rejected(corpus, tmp_path):
    with pytest.raises(InvalidParameterError, match="unknown index type"):
        VectorIndex.build(corpus[:100], "annoy")
    with pytest.raises(InvalidParameterError, match="unknown index type"):
        VectorIndex.load(tmp_path, "ivf")
    with pytest.raises(InvalidParameterError, match="takes no nprobe"):
        VectorIndex.build(corpus[:100], "hnsw", nprobe=4)
    with pytest.raises(InvalidParameterError, match="positive integer"):
        VectorIndex.build(corpus[:100], "hnsw", ef_search=0)
    with pytest.raises(InvalidParameterError, match="pq_m must divide"):
        resolve_params("ivfpq", 5000, 32, {"pq_m": 5})
    with pytest.raises(InvalidParameterError, match="pq_bits"):
        resolve_params("ivfpq", 5000, 32, {"pq_bits": 6})
    # None means "choose for me", so callers can pass every CLI knob
    assert resolve_params("hnsw", 5000, 32, {"ef_search": None, "nprobe": None}) == ("hnsw", {"m": 32,
                                                                                              "ef_construction": 40})


def test_load_checks_the_file(built, tmp_path):
    with pytest.raises(IndexNotFoundError):
        VectorIndex.load(tmp_path, "flat")
    built["flat"].save(tmp_path)
    with pytest.raises(IndexMismatchError, match="holds a flat index"):
        VectorIndex.load(tmp_path, "hnsw")
    (tmp_path / "index.faiss").write_bytes(b"not an index")
    with pytest.raises(IndexNotFoundError, match="cannot read"):
        VectorIndex.load(tmp_path, "flat")


@pytest.mark.parametrize("kind", ("sq8", "ivfpq"))
def test_tiny_corpus_falls_back_to_flat(kind, caplog):
    vectors = clustered(120, 32, 5, seed=3)
    with caplog.at_level(logging.WARNING, logger="recommender.index"):
        index = VectorIndex.build(vectors, kind, nlist=256)
    assert "too few" in caplog.text
    assert index.index_type == "flat" and index.params == {"fallback_from": kind}
    assert np.array_equal(index.search(vectors[:5], 10)[1], exact_search(vectors[:5], vectors, 10)[1])
    # k beyond the corpus is capped, as for every type
    assert index.search(vectors[:2], 500)[1].shape == (2, 120)


def test_more_lists_than_vectors_can_train_is_capped(caplog):
    vectors = clustered(1500, 32, 20, seed=4)
    with caplog.at_level(logging.WARNING, logger="recommender.index"):
        index = VectorIndex.build(vectors, "sq8", nlist=4096, nprobe=8)
    assert "using 38 lists" in caplog.text
    assert index.params["nlist"] == 38 and index.params["nprobe"] == 8
    _, rows = index.search(vectors[:10], 20)
    assert recall_at(exact_search(vectors[:10], vectors, 20)[1], rows) >= 0.9


def test_hnsw_on_a_handful_of_vectors():
    vectors = clustered(7, 32, 2, seed=5)
    index = VectorIndex.build(vectors, "hnsw")
    scores, rows = index.search(vectors[0], 500)
    assert sorted(rows[0].tolist()) == list(range(7)) and rows[0][0] == 0


@pytest.mark.parametrize("kind", ("flat", "hnsw", "ivfpq"))
def test_vectors_come_back_for_reindexing(built, corpus, kind):
    assert np.allclose(built[kind].vectors(), corpus)


def test_sq8_cannot_give_back_vectors(built):
    with pytest.raises(InvalidParameterError, match="8-bit"):
        built["sq8"].vectors()


# ---- GPU placement (no GPU here: the GPU calls are replaced to exercise the guards) -----------------
def test_gpu_placement_follows_faiss(built):
    assert built["flat"].on_gpu == (index_mod.gpu_count() > 0)
    assert not built["hnsw"].on_gpu


def test_gpu_copy_is_used_and_hnsw_stays_on_cpu(monkeypatch, corpus, queries):
    moved = []

    def fake_cpu_to_all_gpus(index):  # stands in for the GPU copy; same answers as the CPU index
        moved.append(type(index).__name__)
        return index

    monkeypatch.setattr(index_mod, "gpu_count", lambda: 1)
    monkeypatch.setattr(index_mod.faiss, "index_cpu_to_all_gpus", fake_cpu_to_all_gpus)
    flat = VectorIndex.build(corpus, "flat")
    hnsw = VectorIndex.build(corpus[:500], "hnsw")
    assert flat.on_gpu and not hnsw.on_gpu
    assert moved == ["IndexFlat"]
    assert np.array_equal(flat.search(queries, K)[1], exact_search(queries, corpus, K)[1])


def test_gpu_refusal_or_failure_falls_back_to_cpu(monkeypatch, corpus, queries, caplog):
    def refuse(index):
        raise RuntimeError("not implemented for this index type")

    monkeypatch.setattr(index_mod, "gpu_count", lambda: 1)
    monkeypatch.setattr(index_mod.faiss, "index_cpu_to_all_gpus", refuse)
    with caplog.at_level(logging.WARNING, logger="recommender.index"):
        index = VectorIndex.build(corpus, "flat")
    assert not index.on_gpu and "stays on the CPU" in caplog.text

    class BrokenGpu:
        def search(self, *args, **kwargs):
            raise RuntimeError("CUDA error")

    index._gpu = BrokenGpu()
    assert np.array_equal(index.search(queries, K)[1], exact_search(queries, corpus, K)[1])
    assert not index.on_gpu


def test_large_k_searches_the_cpu_copy(monkeypatch, corpus, queries):
    class CountingGpu:
        calls = 0

        def __init__(self, cpu):
            self.cpu = cpu

        def search(self, *args, **kwargs):
            CountingGpu.calls += 1
            return self.cpu.search(*args, **kwargs)

    index = VectorIndex.build(corpus, "flat", use_gpu=False)
    index._gpu = CountingGpu(index._index)
    index.search(queries, 100)
    index.search(queries, index_mod.GPU_MAX_K + 1)
    assert CountingGpu.calls == 1


def test_build_cli_accepts_index_types_and_knobs():
    from recommender.__main__ import build_parser

    args = build_parser().parse_args(["build", "--index-type", "hnsw", "--ef-search", "256"])
    assert (args.index_type, args.ef_search, args.nprobe) == ("hnsw", 256, None)
    args = build_parser().parse_args(["build", "--index-type", "sq8", "--nprobe", "64"])
    assert (args.index_type, args.nprobe) == ("sq8", 64)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "--index-type", "annoy"])
    for kind in INDEX_TYPES:  # the CLI does not import faiss, so it keeps its own list of choices
        assert build_parser().parse_args(["build", "--index-type", kind]).index_type == kind
