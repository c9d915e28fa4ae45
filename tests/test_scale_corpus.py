"""The reference-size benchmark corpus (benchmarks/scale_corpus.py, composed_encoder.py) at 300 reviews of 20 anime."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import composed_encoder  # noqa: E402
import scale_corpus  # noqa: E402

from recommender.search import Recommender  # noqa: E402
from scraping.store import Store  # noqa: E402

SIZE = {"reviews": 300, "anime": 20, "sentences": 150}


def build(work_dir: Path, encoder, shared_data: Path, seed: int = 0, table_from: Path | None = None):
    """A tiny corpus; ``table_from`` lends it an already encoded sentence table (the encoding is the slow part)."""
    if table_from is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        table = composed_encoder.SentenceTable.path_for(table_from, encoder)
        shutil.copy(table, work_dir / table.name)
    return scale_corpus.build_scale_corpus(work_dir, seed=seed, encoder=encoder, data_dir=shared_data,
                                           progress=False, **SIZE)


def store_contents(path: Path) -> tuple:
    with Store.open(path, create=False) as store:
        return ([r.to_dict() for r in store.iter_reviews()], [a.to_dict() for a in store.iter_anime()])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, minilm_encoder, shared_data):
    return build(tmp_path_factory.mktemp("scale") / "seed0", minilm_encoder, shared_data)


def test_same_seed_same_corpus_other_seed_other_reviews(corpus, minilm_encoder, shared_data, tmp_path):
    again = build(tmp_path / "again", minilm_encoder, shared_data, table_from=corpus.work_dir)
    other = build(tmp_path / "other", minilm_encoder, shared_data, seed=1, table_from=corpus.work_dir)
    assert again.stats["sentences_encoded_now"] == 0  # the lent table was reused, not re-encoded
    assert store_contents(again.store) == store_contents(corpus.store)
    assert again.store_checksum == corpus.store_checksum
    assert other.store_checksum != corpus.store_checksum
    assert store_contents(other.store)[1] == store_contents(corpus.store)[1]  # same anime, other reviews


def test_rerun_with_same_settings_reuses_the_store(corpus, minilm_encoder, shared_data):
    before = corpus.store.stat().st_mtime_ns
    reused = build(corpus.work_dir, minilm_encoder, shared_data)
    assert reused.reused_store and reused.stats["sentences_encoded_now"] == 0
    # the time the table once took is kept with it, for the "how vectors were made" paragraph
    assert reused.encoder.table.encode_seconds == pytest.approx(corpus.encoder.table.encode_seconds)
    assert reused.encoder.table.encode_seconds > 0
    assert corpus.store.stat().st_mtime_ns == before and reused.store_checksum == corpus.store_checksum


def test_every_anime_has_a_review_and_the_counts_have_a_long_tail(corpus, shared_data):
    with Store.open(corpus.store, create=False) as store:
        counts = np.array(sorted(store.review_counts_by_anime().values(), reverse=True))
        anime = list(store.iter_anime())
    assert len(anime) == 20 and len(counts) == 20 and counts.sum() == 300
    assert counts.min() >= 1
    assert counts.max() >= 10 * np.median(counts)
    # the most reviewed anime is the one with the most members, as on MAL
    with Store.open(corpus.store, create=False) as store:
        by_anime = store.review_counts_by_anime()
    assert max(by_anime, key=by_anime.get) == max(anime, key=lambda a: a.members or 0).anime_id


def test_review_lengths_follow_the_real_ones(corpus, shared_data):
    real = np.median(scale_corpus.RealData.load(shared_data).review_lengths())
    with Store.open(corpus.store, create=False) as store:
        lengths = [len(r.text) for r in store.iter_reviews()]
    assert 0.7 * real <= np.median(lengths) <= 1.3 * real


def test_composed_vectors_are_unit_means_of_their_sentence_vectors(corpus, minilm_encoder):
    encoder, table = corpus.encoder, corpus.encoder.table
    with Store.open(corpus.store, create=False) as store:
        texts = [r.text for r in store.iter_reviews()][:20]
    passages = [text[len(text) // 3:] for text in texts]  # most start with a cut sentence: a fragment to skip
    vectors = encoder.encode(texts + passages)
    for text, vector in zip(texts + passages, vectors, strict=True):
        rows = [table.row_of[s] for s in composed_encoder.split_sentences(text) if s in table.row_of]
        expected = table.vectors[rows].astype(np.float64).mean(axis=0)
        expected /= np.linalg.norm(expected)
        np.testing.assert_allclose(vector, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert encoder.counts.fragments_skipped > 0


def test_a_passage_without_a_known_sentence_is_encoded_for_real(corpus, minilm_encoder):
    before = corpus.encoder.counts.real_passages
    words = "my own words about a cozy camping trip with no sentence the table knows"
    np.testing.assert_allclose(corpus.encoder.encode([words])[0], minilm_encoder.encode([words])[0], atol=1e-6)
    assert corpus.encoder.counts.real_passages == before + 1


def test_composed_token_offsets_equal_the_tokenizer(corpus, minilm_encoder):
    with Store.open(corpus.store, create=False) as store:
        texts = [r.text for r in store.iter_reviews()] + ["a text that is not made of table sentences"]
    composed = corpus.encoder.token_offsets(texts)
    assert composed == minilm_encoder.token_offsets(texts)
    assert corpus.encoder.compose_offsets and corpus.encoder.counts.composed_offsets >= 300


def test_everything_but_encode_is_the_real_encoder(corpus, minilm_encoder):
    assert corpus.encoder.sha256 == minilm_encoder.sha256
    assert corpus.encoder.info() == minilm_encoder.info()
    assert corpus.encoder.tokens_per_chunk == minilm_encoder.tokens_per_chunk
    np.testing.assert_array_equal(corpus.encoder.encode_query("pirates"), minilm_encoder.encode_query("pirates"))


def test_built_index_loads_and_answers(corpus, minilm_encoder):
    out = scale_corpus.build_scale_index(corpus, index_type="flat", progress=False)
    recommender = Recommender.load(out, encoder=minilm_encoder)
    assert recommender.manifest["counts"]["reviews"] == 300
    response = recommender.search("a pirate crew sailing after a great treasure", limit=5)
    with Store.open(corpus.store, create=False) as store:
        anime_ids = {a.anime_id for a in store.iter_anime()}
    assert response.results and {r.anime_id for r in response.results} <= anime_ids
    assert any(r.evidence for r in response.results)  # a match from a synopsis alone has no review line
    built = corpus.index_composition
    assert built.composed_passages + built.real_passages == recommender.manifest["counts"]["chunks"] + 20
    assert f"composed {built.composed_passages:,} passage vectors" in corpus.how_vectors_were_made
    manifest = (out / "manifest.json").stat().st_mtime_ns
    corpus.index_composition = None
    assert scale_corpus.build_scale_index(corpus, index_type="flat", progress=False) == out
    assert (out / "manifest.json").stat().st_mtime_ns == manifest  # same store and model: reused
    assert corpus.index_composition == built  # and what its build did is still known


def test_out_dir_inside_the_repository_is_refused(tmp_path):
    with pytest.raises(ValueError, match="inside the repository"):
        scale_corpus.check_out_dir(scale_corpus.config.PROJECT_ROOT / "benchmarks" / "scale")
    scale_corpus.check_out_dir(scale_corpus.config.PROJECT_ROOT / "data" / "scale")
    scale_corpus.check_out_dir(tmp_path)
