"""Dev/test splits: deterministic, disjoint, stratified; the label queries; tuning never reads test."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from recommender import config
from recommender import eval_sets as es
from recommender.eval_queries import GENRES, LONG_TAIL


def reviews_for(counts: dict[int, int]) -> list[tuple[str, int]]:
    return [(f"a{anime}-r{i}", anime) for anime, n in counts.items() for i in range(n)]


#: Like the shared data: many small anime, a middle class, a few huge ones.
SIZES = {**{a: 2 for a in range(1, 9)}, **{a: 20 for a in range(10, 20)}, 30: 4, 40: 150, 41: 600}


def test_held_out_split_is_deterministic_disjoint_and_stratified():
    pairs = reviews_for(SIZES)
    held = es.held_out_split(pairs, seed=13)
    side = es.split_held_out(pairs, held, seed=13)
    assert set(side) == held and set(side.values()) == {"dev", "test"}
    assert es.split_held_out(list(reversed(pairs)), held, seed=13) == side  # input order does not matter
    assert es.split_held_out(pairs, held, seed=14) != side  # the seed does
    dev = {r for r, s in side.items() if s == "dev"}
    test = held - dev
    assert dev and test and not dev & test
    anime_of = dict(pairs)
    for lo, hi in ((2, 10), (10, 100), (100, 10**9)):  # every size stratum is in both splits
        stratum = {r for r in held if lo <= SIZES[anime_of[r]] < hi}
        assert stratum & dev and stratum & test
        assert abs(len(stratum & dev) - len(stratum & test)) <= 1
    for anime in (10, 40, 41):  # an anime that gives two or more held-out reviews is in both
        mine = {r for r in held if anime_of[r] == anime}
        assert len(mine) >= 2 and mine & dev and mine & test


def test_alternate_halves_and_unknown_split():
    keys = [f"query {i}" for i in range(11)]
    side = es.alternate(keys, seed=13)
    assert es.alternate(list(reversed(keys)), seed=13) == side
    assert sorted(side.values()).count("dev") == 6 and list(side.values()).count("test") == 5
    assert es.in_split("dev", "all") and not es.in_split("dev", "test")
    with pytest.raises(ValueError):
        es.in_split("dev", "train")


def test_label_and_hand_written_sets_split_without_overlap():
    labels_of = {1: {"action", "comedy"}, 2: {"action"}, 3: {"action", "comedy"}, 4: {"comedy", "romance"},
                 5: {"romance"}}
    rows = [("Action", "fights"), ("Comedy", "jokes"), ("Romance", "love"), ("Horror", "scary")]
    dev = es.label_set(rows, labels_of, "dev")
    test = es.label_set(rows, labels_of, "test")
    both = es.label_set(rows, labels_of, "all")
    assert set(both.ids) == {"Action", "Comedy"}  # romance has 2 anime, horror none: below MIN_LABEL_ANIME
    assert set(dev.ids) | set(test.ids) == set(both.ids) and not set(dev.ids) & set(test.ids)
    assert both.qrels["Action"] == {1: 1, 2: 1, 3: 1}
    tail = [es.LabelledQuery("a", (1, 99)), es.LabelledQuery("b", (98,)), es.LabelledQuery("c", (5,))]
    genres = [es.LabelledQuery("g", genre="Comedy"), es.LabelledQuery("h", genre="Mecha")]
    long_tail, genre = es.hand_written_sets(tail, genres, labels_of, "all")
    assert long_tail.qrels == {"a": {1: 1}, "c": {5: 1}}  # answers outside the index are dropped, then the query
    assert genre.qrels == {"g": {1: 1, 3: 1, 4: 1}}


def test_label_query_file_is_well_formed(shared_data):
    rows = es.load_label_queries()
    assert len(rows) >= 60 and all(len(q.split()) >= 3 for _, q in rows)
    mine = {label.casefold() for label, _ in rows}
    labels = set()
    with open(shared_data / "anime.jsonl", encoding="utf-8") as handle:
        for line in handle:
            meta = json.loads(line)
            labels.update(g.casefold() for key in ("genres", "themes", "demographics") for g in meta.get(key) or [])
    assert labels - mine <= {"hentai", "erotica"}  # every MAL label but the adult ones has a query


def test_bad_label_file_is_refused(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("# comment\nAction\tfights\nAction\tmore fights\n")
    with pytest.raises(ValueError, match="twice"):
        es.load_label_queries(path)
    path.write_text("Action fights\n")
    with pytest.raises(ValueError, match="label<TAB>query"):
        es.load_label_queries(path)


def test_hand_written_queries_are_well_formed():
    assert len(LONG_TAIL) >= 40 and len(GENRES) >= 20
    assert all(q.answers and q.text for q in LONG_TAIL)
    assert len({q.text for q in LONG_TAIL}) == len(LONG_TAIL)
    assert all(q.genre and not q.answers for q in GENRES)


def test_evaluation_modules_import_without_a_cycle():
    """eval_queries needs only eval_sets: importing it first must not pull evaluate (the old cycle)."""
    code = ("import sys, recommender.eval_queries; "
            "sys.exit('recommender.evaluate' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=config.PROJECT_ROOT).returncode == 0


def test_tuning_reads_the_dev_split_only(tiny_index_dir, monkeypatch, capsys):
    """Run the tuning script with every way to the test half booby-trapped."""
    sys.path.insert(0, str(config.PROJECT_ROOT / "benchmarks"))
    try:
        import tune
    finally:
        sys.path.remove(str(config.PROJECT_ROOT / "benchmarks"))
    from recommender import evaluate

    asked = []
    real_in_split = es.in_split

    def guarded(split_of: str, split: str) -> bool:
        asked.append(split)
        if split != "dev":
            raise AssertionError(f"tuning asked for the {split} split")
        return real_in_split(split_of, split)

    monkeypatch.setattr(es, "in_split", guarded)
    monkeypatch.setattr(evaluate, "in_split", guarded)
    monkeypatch.setattr(tune, "sweeps", lambda quick: [("top_n", [{"top_n": 30}, {"top_n": 60}])])
    assert tune.main(["--index", str(tiny_index_dir), "--quick", "--max-queries", "12", "--start", "top_n=40"]) == 0
    out = capsys.readouterr().out
    assert "Dev split: 12 known-item queries" in out and "Chosen changes" in out
    assert "Start settings: evidence_by_verdict=True, top_n=40" in out
    assert asked and set(asked) == {"dev"}
