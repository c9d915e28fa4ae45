"""Evaluation: the deterministic held-out split, the metrics by hand, masking == leaving out, and the CLI."""

from __future__ import annotations

import json

import pytest

from recommender import config
from recommender import evaluate as ev
from recommender.eval_queries import GENRES, LONG_TAIL
from recommender.eval_report import format_table, plot_report
from recommender.search_config import SearchConfig
from scraping.models import Review


def reviews_for(counts: dict[int, int]) -> list[tuple[str, int]]:
    return [(f"a{anime}-r{i}", anime) for anime, n in counts.items() for i in range(n)]


def test_held_out_split_rules():
    pairs = reviews_for({1: 1, 2: 2, 3: 10, 4: 97})
    held = ev.held_out_split(pairs, fraction=0.1, seed=13)
    by_anime = {a: sum(rid in held for rid, x in pairs if x == a) for a in (1, 2, 3, 4)}
    assert by_anime == {1: 0, 2: 1, 3: 1, 4: 10}  # one-review anime keep theirs; at least one; ~10 %; never all
    assert ev.held_out_split(list(reversed(pairs)), fraction=0.1, seed=13) == held  # order does not matter
    assert ev.held_out_split(pairs, fraction=0.1, seed=14) != held  # the seed does
    assert ev.held_out_split(reviews_for({5: 2}), fraction=0.9) and len(ev.held_out_split(reviews_for({5: 2}),
                                                                                              fraction=0.9)) == 1


def test_query_window_is_deterministic_and_30_words():
    text = " ".join(f"w{i}" for i in range(100))
    window = ev.query_window(text, "r1", window_words=30, seed=13)
    assert len(window.split()) == 30 and window in text
    assert ev.query_window(text, "r1", window_words=30, seed=13) == window
    assert {ev.query_window(text, f"r{i}", seed=13) for i in range(20)} != {window}
    assert ev.query_window("short  review\ttext", "r2") == "short review text"


def test_known_item_queries_round_robin_over_anime():
    reviews = [(rid, anime, f"text of {rid}") for rid, anime in reviews_for({1: 5, 2: 5, 3: 2})]
    held = {rid for rid, _, _ in reviews}  # pretend all are held out
    queries = ev.known_item_queries(reviews, held, max_queries=7)
    assert [q.anime_id for q in queries] == [1, 2, 3, 1, 2, 3, 1]
    assert len({q.review_id for q in queries}) == 7
    assert ev.known_item_queries(reviews, held, max_queries=None)[-1].anime_id in (1, 2)
    assert ev.known_item_queries(reviews, set(), max_queries=None) == []


def test_ranking_metrics_by_hand():
    ranks = [1, 3, None, 12, 2]
    groups = [7, 7, 7, 8, 9]
    m = ev.ranking_metrics(ranks, groups)
    assert m["queries"] == 5
    assert m["hit@1"] == pytest.approx(1 / 5)
    assert m["hit@10"] == pytest.approx(3 / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3 + 0 + 0 + 1 / 2) / 5)
    # macro: anime 7 -> (1 + 1/3 + 0)/3, anime 8 -> 0, anime 9 -> 1/2
    assert m["macro_mrr@10"] == pytest.approx(((4 / 3) / 3 + 0 + 0.5) / 3)
    assert ev.rank_of([5, 6, 7], [7, 6]) == 2 and ev.rank_of([5], [1]) is None


def test_recommendation_targets_are_symmetric_and_inside_the_index(tmp_path):
    path = tmp_path / "recs.jsonl"
    rows = [(1, 2), (1, 3), (2, 1), (4, 1), (1, 1), (1, 2)]
    path.write_text("".join(json.dumps({"source_anime_id": a, "rec_anime_id": b, "votes_or_count": 1}) + "\n"
                            for a, b in rows))
    pairs = ev.load_user_recs(path)
    assert pairs == [(1, 2), (1, 3), (2, 1), (4, 1), (1, 1)]
    assert ev.recommendation_targets(pairs, {1, 2, 3}) == {1: {2, 3}, 2: {1}, 3: {1}}


def test_hand_written_queries_are_well_formed():
    assert len(LONG_TAIL) >= 40 and len(GENRES) >= 20
    assert all(q.answers and q.text for q in LONG_TAIL)
    assert len({q.text for q in LONG_TAIL}) == len(LONG_TAIL)
    assert all(q.genre and not q.answers for q in GENRES)


def demo_reviews() -> list[Review]:
    from scraping.importers import review_from_json

    with open(config.DEMO_REVIEWS, encoding="utf-8") as handle:
        return [review_from_json(json.loads(line)) for line in handle if line.strip()]


def test_known_item_masking_equals_leaving_the_reviews_out(tiny_encoder):
    """The fast path (mask held-out rows of one index) against the reference (an index without them).

    BM25 statistics are corpus-wide, so a masked index still counts the held-out
    passages in them; the lexical signal is off here to compare like with like.
    """
    lexical_off = SearchConfig(lexical_weight=0.0, lexical_depth=0)
    wanted = sorted({r.anime_id for r in demo_reviews()})[:20]
    reviews = [r for r in demo_reviews() if r.anime_id in wanted]
    reference = ev.known_item(tiny_encoder, reviews, max_queries=15, aggregation="soft", settings=lexical_off)
    assert set(reference) == set(ev.KNOWN_ITEM_KEYS)
    assert reference["queries"] == 15
    assert 0.0 <= reference["hit@1"] <= reference["hit@10"] <= 1.0

    full = ev.in_memory_recommender(tiny_encoder, reviews, settings=lexical_off)
    queries, allowed, counts = ev.known_item_split(full, max_queries=15)
    held = ev.held_out_split((r.review_id, r.anime_id) for r in reviews)
    assert allowed.rows.count < full.index.ntotal
    assert sum(full.review_counts.values()) - sum(counts.values()) == len(held)
    fast = ev.score_known_item(full, queries, ["soft"], allowed=allowed, review_counts=counts)["soft"]
    assert fast == pytest.approx(reference)


@pytest.mark.slow
def test_default_beats_count_with_minilm_on_the_demo_index(minilm_recommender):
    queries, allowed, counts = ev.known_item_split(minilm_recommender)
    got = ev.score_known_item(minilm_recommender, queries, ["count", config.DEFAULT_AGGREGATION],
                              allowed=allowed, review_counts=counts)
    default, count = got[config.DEFAULT_AGGREGATION], got["count"]
    assert default["queries"] == count["queries"] >= 70
    assert default["mrr@10"] > 0.4  # 76 anime: chance is about 0.04
    assert default["mrr@10"] > count["mrr@10"] and default["macro_mrr@10"] > count["macro_mrr@10"]


def test_evaluate_index_report_and_table(tiny_recommender, tmp_path):
    report = ev.evaluate_index(tiny_recommender, ["count", "soft"], split="test", top_n=50, max_queries=30,
                               recs_path=tmp_path / "absent.jsonl", resamples=200)
    assert set(report["known_item"]) == {"count", "soft"}
    assert report["known_item"]["soft"]["queries"] == 30 and report["setup"]["split"] == "test"
    dev = ev.benchmark(tiny_recommender, "dev")
    test = ev.benchmark(tiny_recommender, "test")
    assert report["long_tail"]["soft"]["queries"] == len(test.sets["long_tail"])
    assert len(dev.sets["long_tail"]) + len(test.sets["long_tail"]) == sum(
        any(a in tiny_recommender.review_counts for a in q.answers) for q in LONG_TAIL)
    assert report["labels"]["soft"]["queries"] > 0 and report["similar"] is None
    low, high = report["intervals"]["known_item"]["soft"]["mrr@10"]
    assert low <= report["known_item"]["soft"]["mrr@10"] <= high
    diff = report["vs_count"]["known_item"]["soft"]["macro_mrr@10"]
    assert diff["mean"] == pytest.approx(report["known_item"]["soft"]["macro_mrr@10"]
                                         - report["known_item"]["count"]["macro_mrr@10"])
    shares = report["negative_evidence"]
    assert shares["queries"] == sum(len(test.sets[n]) for n in ("labels", "long_tail", "genres"))
    assert 0.0 <= shares["settings"]["share"] <= 1.0 and shares["similar_settings"]["snippets"] > 0
    table = format_table(report, default="soft")
    assert table.splitlines()[0].startswith("| aggregation | known-item hit@1")
    assert "| **soft** (default) |" in table and "| count |" in table
    assert "Paired difference to `count`" in table and "Split: test." in table
    png = plot_report(report, tmp_path / "plot.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_evaluate_json(tiny_index_dir, tiny_model_dir, tmp_path, capsys):
    recs = tmp_path / "recs.jsonl"
    recs.write_text(json.dumps({"source_anime_id": 1, "rec_anime_id": 6, "votes_or_count": 3}) + "\n")
    plot = tmp_path / "eval.png"
    code, out, err = run_cli(capsys, "evaluate", "--index", tiny_index_dir, "--model", tiny_model_dir,
                             "--aggregation", "count,soft", "--aggregation", "max", "--json", "--top-n", "50",
                             "--max-queries", "20", "--recs", recs, "--plot", plot, "--split", "dev",
                             "--resamples", "200", "--set", "soft_alpha=0.5", "--set", "evidence_by_verdict=false")
    assert code == 0, err
    report = json.loads(out)
    assert list(report["known_item"]) == ["count", "soft", "max"]
    assert report["known_item"]["soft"]["queries"] == 20
    assert report["similar"]["anime"] == 2  # 1 -> 6 and, symmetrically, 6 -> 1
    assert report["setup"]["split"] == "dev"
    settings = report["setup"]["settings"]
    assert settings["soft_alpha"] == 0.5 and settings["evidence_by_verdict"] is False
    assert plot.exists() and report["plot"] == str(plot)
    code, out, err = run_cli(capsys, "evaluate", "--index", tiny_index_dir, "--aggregation", "popularity")
    assert code == 2 and "unknown aggregation" in err
    for bad in ("soft_alpha", "no_such_setting=1", "soft_alpha=-1", "top_n=many"):
        code, out, err = run_cli(capsys, "evaluate", "--index", tiny_index_dir, "--set", bad)
        assert code == 2 and err.startswith("error: ") and "Traceback" not in err, (bad, err)


def run_cli(capsys, *args) -> tuple[int, str, str]:
    """``python -m recommender ARGS`` in-process (no interpreter start-up): exit code, stdout, stderr."""
    from recommender.__main__ import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
