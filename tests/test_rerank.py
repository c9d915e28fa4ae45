"""Cross-encoder reranking with a tiny random cross-encoder built offline; expectations from the model directly."""

from __future__ import annotations

import numpy as np
import pytest

from recommender import config
from recommender.aggregate import Hit, aggregate, best_hit_per_review
from recommender.errors import InvalidParameterError, ModelNotFoundError
from recommender.rerank import Reranker


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory, tiny_model_dir):
    """A random 2-layer BERT with a one-logit head, using the tiny WordPiece tokenizer of the tiny sentence model."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory = tmp_path_factory.mktemp("models") / "tiny-cross-encoder"
    tokenizer = BertTokenizerFast.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(3)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=256, num_labels=1))
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_reranker(tiny_cross_encoder_dir):
    return Reranker.load(str(tiny_cross_encoder_dir), device="cpu", depth=30)


def direct_scores(model_dir, query: str, passages: list[str]) -> np.ndarray:
    """The reference: sigmoid of the classification logit, computed with transformers alone."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        batch = tokenizer([query] * len(passages), passages, padding=True, truncation=True, return_tensors="pt")
        logits = model(**batch).logits[:, 0].numpy().astype(np.float64)
    return 1 / (1 + np.exp(-logits))


def test_scores_equal_the_models_own_sigmoid_logits(tiny_reranker, tiny_cross_encoder_dir):
    passages = ["space cowboys and jazz", "a cozy camping trip", "a volleyball team trains hard"]
    got = tiny_reranker.scores("jazz in space", passages)
    assert got == pytest.approx(direct_scores(tiny_cross_encoder_dir, "jazz in space", passages), abs=1e-5)
    assert np.all((got > 0) & (got < 1))
    assert tiny_reranker.scores("anything", []).shape == (0,)


def test_rerank_orders_by_score_keeps_cosine_and_cuts_at_depth(tiny_reranker):
    texts = {f"r{i}": text for i, text in enumerate(
        ["slow romance at school", "giant robots fight", "jazz and bounty hunters", "cooking battles",
         "a sad war drama"])}
    hits = [Hit(10 + i, 0.9 - 0.1 * i, i, f"r{i}", i) for i in range(5)]
    scores = tiny_reranker.scores("bounty hunters", [texts[h.review_id] for h in hits[:4]])
    reranked = tiny_reranker.rerank("bounty hunters", hits, lambda h: texts[h.review_id], depth=4)
    assert len(reranked) == 4  # past the depth: dropped
    expected = np.argsort(-scores, kind="stable")
    assert [h.review_id for h in reranked] == [f"r{i}" for i in expected]
    assert [h.rank for h in reranked] == [0, 1, 2, 3]
    assert [h.similarity for h in reranked] == pytest.approx(sorted(scores, reverse=True))
    assert [h.cosine for h in reranked] == pytest.approx([0.9 - 0.1 * i for i in expected])
    with pytest.raises(InvalidParameterError):
        tiny_reranker.rerank("q", hits, lambda h: "", depth=0)


def test_search_with_rerank_aggregates_the_reranked_hits(tiny_recommender, tiny_cross_encoder_dir, tiny_reranker):
    rec = tiny_recommender
    query = "friends on a camping trip"
    response = rec.search(query, rerank=str(tiny_cross_encoder_dir), limit=5, top_n=60)
    assert "rerank" in response.timing_ms and response.timing_ms["rerank"] > 0
    vector = rec.encoder.encode_query(query)
    fused = rec.hits([query], vector[None, :], 60, rec.allowed(None))[0]
    reranked = tiny_reranker.rerank(query, fused, rec.hit_text, depth=config.RERANK_DEPTH)
    expected = aggregate(best_hit_per_review(reranked), config.DEFAULT_AGGREGATION, review_counts=rec.review_counts)
    assert [r.anime_id for r in response.results] == [s.anime_id for s in expected[:5]]
    assert [r.score for r in response.results] == pytest.approx([s.score for s in expected[:5]], abs=1e-5)
    # Evidence keeps showing the embedding similarity of the reranked chunk, not the reranker's score
    # (an anime that only its synopsis brought in shows its closest reviews instead; see test_evidence).
    kept = best_hit_per_review(reranked)
    checked = 0
    for result in response.results:
        cosine_of = {h.review_id: h.cosine for h in kept if h.anime_id == result.anime_id and h.is_review}
        if not cosine_of:
            continue
        for evidence in result.evidence:
            assert evidence.similarity == pytest.approx(cosine_of[evidence.review_id], abs=1e-4)
            checked += 1
    assert checked


def test_missing_cross_encoder_is_a_clean_error(tiny_recommender, tmp_path, tiny_index_dir, tiny_model_dir, capsys):
    with pytest.raises(ModelNotFoundError):
        Reranker.load(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError):
        tiny_recommender.search("anything", rerank=str(tmp_path / "no-such-model"))
    from recommender.__main__ import main

    code = main(["search", "--index", str(tiny_index_dir), "--model", str(tiny_model_dir), "--rerank",
                 str(tmp_path / "no-such-model"), "anything"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error:") and "no-such-model" in err


def test_cli_search_with_rerank(tiny_index_dir, tiny_model_dir, tiny_cross_encoder_dir, capsys):
    import json

    from recommender.__main__ import main

    code = main(["search", "--index", str(tiny_index_dir), "--model", str(tiny_model_dir), "--json", "--limit", "3",
                 "--rerank", str(tiny_cross_encoder_dir), "camping with friends"])
    out = capsys.readouterr().out
    assert code == 0
    response = json.loads(out)
    assert len(response["results"]) == 3 and "rerank" in response["timing_ms"]
