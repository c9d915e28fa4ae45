"""`python -m recommender` contracts: JSON shape, queries file, exit codes and one-line errors."""

import json
import subprocess
import sys

import pytest

from recommender.__main__ import main as recommender_main
from tests.conftest import PROJECT_ROOT


def run_cli(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "recommender", *args], cwd=PROJECT_ROOT, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_search_json_shape(tiny_index_dir, capsys):
    code = recommender_main(["search", "--index", str(tiny_index_dir), "--json", "--limit", "3", "--top-n", "50",
                             "--aggregation", "count", "cozy", "camping"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["query"] == "cozy camping"
    assert len(payload["results"]) == 3
    for result in payload["results"]:
        assert {"anime_id", "title", "url", "image_url", "score", "count", "evidence"} <= set(result)
        assert isinstance(result["anime_id"], int) and isinstance(result["count"], int)
        assert result["url"] == f"https://myanimelist.net/anime/{result['anime_id']}"
        assert 1 <= len(result["evidence"]) <= 3
        assert {"review_id", "similarity", "snippet"} <= set(result["evidence"][0])
    counts = [r["count"] for r in payload["results"]]
    assert counts == sorted(counts, reverse=True)  # the count vote orders by matched reviews
    assert {"encode", "search", "aggregate", "total"} <= set(payload["timing_ms"])


def test_queries_file_gives_one_line_per_query(tiny_index_dir, tmp_path, capsys):
    queries = tmp_path / "q.txt"
    queries.write_text("space jazz\n\nrobots at war\nschool romance\n")
    code = recommender_main(["search", "--index", str(tiny_index_dir), "--json", "--limit", "2",
                             "--queries-file", str(queries)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [json.loads(line)["query"] for line in lines] == ["space jazz", "robots at war", "school romance"]


@pytest.mark.parametrize("args,code,message", [
    (["search", "--index", "{index}", "--json", "   "], 2, "query is empty"),
    (["search", "--index", "{index}", "--json", "--top-n", "0", "x"], 2, "top_n must be between"),
    (["search", "--index", "{index}", "--json", "--aggregation", "nope", "x"], 2, "unknown aggregation"),
    (["search", "--index", "{missing}", "--json", "x"], 1, "index not found"),
])
def test_exit_codes_and_one_line_errors(tiny_index_dir, tmp_path, capsys, args, code, message):
    args = [a.format(index=tiny_index_dir, missing=tmp_path / "missing") for a in args]
    assert recommender_main(args) == code
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and "Traceback" not in err


def test_real_process_blank_query_and_mismatch(tiny_index_dir, tmp_path):
    blank = run_cli("search", "--index", str(tiny_index_dir), "--json", " ")
    assert blank.returncode == 2
    assert blank.stderr.strip() == "error: the query is empty; describe what you want to watch"
    manifest = json.loads((tiny_index_dir / "manifest.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({**manifest, "dim": 7}))
    result = run_cli("search", "--index", str(broken), "--json", "anything")
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
