"""Search behaves the same whether the model scores by cosine or by an unnormalised dot product.

The twin of the tiny cosine model multiplies every embedding by a constant: its dot products are
the cosines times that constant squared. Aggregation temperatures and the lexical weight are tuned in
cosine units, so without the index's recorded similarity unit (``doc_norm``) the twin would rank
differently; with it, every aggregation ranks alike.
"""

from __future__ import annotations

import numpy as np
import pytest

from recommender.aggregate import AGGREGATIONS

SCALE = 8.0
QUERIES = ["space cowboys and jazz", "a cozy camping trip with friends", "rival students fall in love",
           "a dark detective story", "volleyball team training for a tournament"]


class ScaledTwin:
    """The tiny model with every vector multiplied by SCALE and dot-product similarity."""

    def __init__(self, encoder) -> None:
        self._encoder = encoder
        self.normalize = False
        self.similarity = "dot"

    def encode(self, texts, batch_size=64, **kwargs):
        return self._encoder.encode(texts, batch_size=batch_size, **kwargs) * SCALE

    def encode_query(self, query):
        return self._encoder.encode_query(query) * SCALE

    def info(self):
        from dataclasses import replace

        return replace(self._encoder.info(), similarity="dot", normalize=False)

    def __getattr__(self, name):
        return getattr(self._encoder, name)


@pytest.fixture(scope="module")
def twins(tmp_path_factory, demo_store_path, tiny_encoder, tiny_recommender):
    from recommender.build import build_index
    from recommender.search import Recommender

    twin = ScaledTwin(tiny_encoder)
    out = tmp_path_factory.mktemp("index") / "dot-twin"
    build_index(demo_store_path, out=out, encoder=twin, progress=False)
    return tiny_recommender, Recommender.load(out, encoder=twin)


def ranking(rec, query, aggregation):
    response = rec.search(query, aggregation=aggregation, limit=20)
    return [r.anime_id for r in response.results], [r.score for r in response.results]


def test_the_twin_index_records_a_dot_product_and_its_unit(twins):
    cosine, dot = twins
    assert dot.manifest["similarity"] == "dot" and dot.manifest["normalized"] is False
    assert dot.settings.doc_norm == pytest.approx(SCALE, rel=1e-5)
    assert cosine.settings.doc_norm == 1.0


@pytest.mark.parametrize("aggregation", sorted(AGGREGATIONS))
def test_every_aggregation_ranks_the_twins_alike(twins, aggregation):
    cosine, dot = twins
    for query in QUERIES:
        ids_cos, scores_cos = ranking(cosine, query, aggregation)
        ids_dot, scores_dot = ranking(dot, query, aggregation)
        assert ids_dot == ids_cos, query
        if aggregation != "rrf":  # rrf scores are ranks, the others similarity in cosine units
            assert np.allclose(scores_dot, scores_cos, atol=1e-4), query


def test_without_the_unit_the_dot_twin_would_rank_differently(twins):
    cosine, dot = twins
    raw = dot.with_settings(doc_norm=1.0)  # what applying cosine-tuned constants to raw dot products means
    differs = [q for q in QUERIES if ranking(raw, q, "soft") != ranking(cosine, q, "soft")]
    assert differs
