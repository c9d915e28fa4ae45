"""The command lines at their edges: a reader that goes away, bad flags, a mistyped store path, unknown names."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import pytest

import main as console
from tests.conftest import PROJECT_ROOT

FIXTURE_PAGE = PROJECT_ROOT / "tests" / "fixtures" / "html" / "reviews_edge_cases.html"


def run_with_closed_stdout(args: list[str], stdin: str = "") -> tuple[int, str]:
    """Run a command whose reader has already gone (``cmd | head -0``): exit code and stderr."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write gets EPIPE
    try:
        result = subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, input=stdin, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})
    finally:
        os.close(write_end)
    return result.returncode, result.stderr


# ---- BrokenPipe ------------------------------------------------------------------------------------------------
def test_scraping_parse_into_a_closed_pipe_is_quiet():
    code, err = run_with_closed_stdout(["-m", "scraping", "parse", str(FIXTURE_PAGE), "--json"])
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert all(line.startswith("WARNING") for line in err.splitlines()), err  # the page's own parse notes only
    assert code == 141  # like a Unix tool ended by SIGPIPE


def close_stdout(monkeypatch) -> None:
    """Point sys.stdout at a pipe nobody reads, in-process (no interpreter start-up): writes raise BrokenPipeError.

    Called inside the test body: pytest's capture would replace an earlier sys.stdout when the test starts.
    """
    read_end, write_end = os.pipe()
    os.close(read_end)
    monkeypatch.setattr(sys, "stdout", open(write_end, "w", buffering=1, encoding="utf-8"))  # noqa: SIM115


def test_recommender_queries_file_into_a_closed_pipe_is_quiet(tiny_index_dir, tiny_model_dir, tmp_path, capsys,
                                                             monkeypatch):
    from recommender.__main__ import main as recommender_main

    queries = tmp_path / "queries.txt"
    queries.write_text("space jazz\nrobots\n" * 50)
    close_stdout(monkeypatch)
    code = recommender_main(["search", "--index", str(tiny_index_dir), "--model", str(tiny_model_dir), "--json",
                             "--queries-file", str(queries)])
    err = capsys.readouterr().err
    assert code == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_console_into_a_closed_pipe_is_quiet(tiny_index_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("space jazz\nrobots\n"))
    close_stdout(monkeypatch)
    code = console.main(["--index", str(tiny_index_dir)])
    err = capsys.readouterr().err
    assert code == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


# ---- main.py checks its flags before loading anything ----------------------------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--limit", "-1"], "limit must be between 1 and"),
    (["--top-n", "0"], "top_n must be between 1 and"),
    (["--aggregation", "bogus"], "unknown aggregation 'bogus'"),
])
def test_console_refuses_bad_flags_before_loading(monkeypatch, capsys, tiny_index_dir, flags, message):
    from recommender.encoder import Encoder
    from recommender.search import Recommender

    def must_not_load(*args, **kwargs):
        raise AssertionError("loaded a model or index before checking the flags")

    monkeypatch.setattr(Recommender, "load", must_not_load)
    monkeypatch.setattr(Encoder, "load", must_not_load)
    code = console.main(["--index", str(tiny_index_dir), *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


# ---- --db ------------------------------------------------------------------------------------------------------
def test_console_db_in_a_missing_folder_is_an_error_not_a_new_store(tmp_path, capsys):
    db = tmp_path / "no-such-folder" / "mal.sqlite"
    started = time.perf_counter()
    code = console.main(["--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and str(db.parent) in err
    assert not db.parent.exists()
    assert time.perf_counter() - started < 5  # refused before any model was loaded


def test_console_db_that_does_not_exist_is_not_filled_with_the_demo(tmp_path, capsys):
    db = tmp_path / "mal-typo.sqlite"
    code = console.main(["--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and "no review store" in err and "python -m scraping import" in err
    assert not db.exists()


def test_import_into_a_missing_folder_is_an_error_but_a_new_file_is_fine(tmp_path, capsys):
    from scraping.__main__ import main as scraping_main

    reviews = tmp_path / "r.jsonl"
    reviews.write_text('{"review_id": "1", "anime_id": 1, "text": "Fine."}\n')
    missing = tmp_path / "typo-folder" / "s.sqlite"
    assert scraping_main(["import", str(reviews), "--db", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err and not missing.parent.exists()
    fresh = tmp_path / "new.sqlite"  # an existing folder: importing into a new store is what the user asked for
    assert scraping_main(["import", str(reviews), "--db", str(fresh)]) == 0
    assert fresh.exists()


# ---- unknown names ---------------------------------------------------------------------------------------------
def test_unknown_genre_is_one_line_with_close_matches(tiny_index_dir, tiny_model_dir, capsys):
    from recommender.__main__ import main as recommender_main

    code = recommender_main(["search", "--index", str(tiny_index_dir), "--model", str(tiny_model_dir),
                             "--genre", "Dramma", "anything"])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "error: unknown genre 'Dramma'; did you mean 'Drama'?"
    code = recommender_main(["search", "--index", str(tiny_index_dir), "--model", str(tiny_model_dir),
                             "--type", "Podcast", "anything"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: unknown type 'Podcast'") and len(err.strip().splitlines()) == 1
