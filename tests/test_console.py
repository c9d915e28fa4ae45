"""Console: piped stdin, exit words, blank lines, errors re-prompt, Goodbye!."""

import io
import subprocess
import sys

from main import format_response, run_console
from tests.conftest import PROJECT_ROOT


def converse(recommender, text):
    out = io.StringIO()
    code = run_console(recommender, io.StringIO(text), out, top_n=50, limit=3, aggregation="count")
    return code, out.getvalue()


def test_quit_words_and_eof(tiny_recommender):
    for ending in ("q\n", "quit\n", "EXIT\n", ""):
        code, output = converse(tiny_recommender, "space jazz\n" + ending + "never asked\n" * (ending != ""))
        assert code == 0
        assert output.rstrip().endswith("Goodbye!")
        assert "> space jazz" in output and "never asked" not in output


def test_blank_lines_are_skipped_and_errors_reprompt(tiny_recommender):
    code, output = converse(tiny_recommender, "\n   \n" + "x" * 2000 + "\nrobots\n")
    assert code == 0
    assert "error: the query is 2000 characters long" in output
    assert "> robots" in output and output.count(" 1. ") == 1
    assert "Traceback" not in output


def test_format_lists_title_url_and_evidence(minilm_recommender):
    response = minilm_recommender.search("space cowboys and jazz", limit=3, top_n=50)
    text = format_response(response)
    assert "https://myanimelist.net/anime/" in text and "“" in text
    assert text.splitlines()[0].startswith(" 1. ")
    first = response.results[0].evidence[0]  # every demo review has a score and a verdict tag
    assert f"” (reviewer's score {first.review_score}/10 · {first.verdict})" in text.splitlines()[2]


def test_main_with_piped_stdin(tiny_index_dir):
    result = subprocess.run([sys.executable, "main.py", "--index", str(tiny_index_dir), "--limit", "2"],
                            cwd=PROJECT_ROOT, input="cozy camping\nexit\n", capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("Goodbye!")
    assert " 1. " in result.stdout and " 2. " in result.stdout


def test_main_missing_index_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "main.py", "--index", str(tmp_path / "nope")], cwd=PROJECT_ROOT,
                            input="", capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: index not found")
