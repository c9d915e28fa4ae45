"""The A100 notebook: valid nbformat 4, runs top to bottom with nothing but the project's own command lines."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest

from training.config import STAGES

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOK = PROJECT / "notebooks" / "retrain_gpl_a100.ipynb"


def _parsers():
    from recommender.__main__ import build_parser as recommender_parser
    from scraping.__main__ import build_parser as scraping_parser
    from training.__main__ import build_parser as training_parser

    return {"training": training_parser, "scraping": scraping_parser, "recommender": recommender_parser}


def _command_lines(source: str) -> list[str]:
    """The shell lines of a cell (``!…``), commented-out ones included: an alternative must be valid too."""
    return [line.strip().lstrip("#").strip()[1:] for line in source.splitlines()
            if line.strip().lstrip("#").strip().startswith("!")]


def notebook_problems(notebook: dict) -> list[str]:
    """Everything that would stop the notebook running top to bottom on a fresh GPU box, one line each."""
    import nbformat

    problems = []
    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(notebook)))
    except nbformat.ValidationError as exc:
        problems.append(f"not valid nbformat: {exc.message}")
    if notebook.get("nbformat") != 4:
        problems.append("not nbformat 4")
    parsers = _parsers()
    code = [(i, "".join(cell["source"])) for i, cell in enumerate(notebook.get("cells", []))
            if cell.get("cell_type") == "code"]
    stages, gpl_calls = [], []
    for i, source in code:
        first = source.strip().splitlines()[0] if source.strip() else ""
        if not re.match(r"# A100( box)?: (instant|~?[\d.-]+ (s|min|h))", first):
            problems.append(f"cell {i}: the first line does not state the expected A100 time")
        if re.search(r"^\s*(def|class|for|while)\s", source, re.M):
            problems.append(f"cell {i}: has logic of its own (def/class/loop)")
        if notebook["cells"][i].get("outputs"):
            problems.append(f"cell {i}: saved with outputs")
        for line in _command_lines(source):
            argv = shlex.split(re.sub(r"\{(\w+)\}", r"/x/\1", line))
            if argv[:2] != ["python", "-m"]:
                continue
            package, args = argv[2], argv[3:]
            if package not in parsers:
                problems.append(f"cell {i}: {line!r} calls no package of the project")
                continue
            try:
                parsed = parsers[package]().parse_args(args)
            except SystemExit:
                problems.append(f"cell {i}: {line!r} is not a command line `python -m {package}` accepts")
                continue
            if package == "training" and parsed.command == "gpl":
                stages.append(parsed.stage)
                gpl_calls.append(parsed)
    everything = "\n".join(source for _, source in code)
    if not re.search(r"!git clone .*\{REPO_URL\}", everything):
        problems.append("no cell clones the project")
    if '!pip install -q -e ".[gpu,train]"' not in everything:
        problems.append("no cell installs the project with its gpu and train extras")
    if stages != list(STAGES):
        problems.append(f"the gpl cells run stages {stages}, not {list(STAGES)} in order")
    if any(not getattr(call, "mirror", None) for call in gpl_calls):
        problems.append("a gpl cell runs without --mirror: a disconnect would lose its work")
    if not re.search(r"!python -m scraping (import|crawl) ", everything):
        problems.append("no cell fills the review store (import or crawl)")
    return problems


def _notebook() -> dict:
    return json.loads(NOTEBOOK.read_text(encoding="utf-8"))


def test_the_notebook_runs_top_to_bottom_on_the_project_command_lines():
    assert notebook_problems(_notebook()) == []


def _edited(change) -> dict:
    notebook = _notebook()
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            new = change(source)
            if new != source:
                cell["source"] = new.splitlines(keepends=True)
                return notebook
    raise AssertionError("the edit matched no cell")


@pytest.mark.parametrize("change, expected", [
    (lambda s: s.replace("--stage corpus", "--stage corpus --sampel 10"), "not a command line"),
    (lambda s: s.replace("recommender build", "recommender biuld"), "not a command line"),
    (lambda s: s.replace("scraping import", "scraping imports"), "not a command line"),
    (lambda s: s.replace("--stage mine", "--stage mining"), "not a command line"),
    (lambda s: s.replace("--mirror {MIRROR} --stage label", "--stage label"), "without --mirror"),
    (lambda s: s.replace("--stage export", "--stage train"), "not ['corpus'"),
    (lambda s: s.replace("# A100: ~2 min (reads", "# reads"), "expected A100 time"),
    (lambda s: s.replace("!cat {CONFIG}", "def show():\n    pass"), "logic of its own"),
    (lambda s: s.replace('".[gpu,train]"', '".[train]"'), "gpu and train extras"),
    (lambda s: s.replace("!git clone", "!echo"), "clones the project"),
])
def test_the_check_catches_a_broken_notebook(change, expected):
    problems = notebook_problems(_edited(change))
    assert any(expected in problem for problem in problems), problems


def test_an_invalid_notebook_file_is_caught():
    notebook = _notebook()
    del notebook["cells"][1]["metadata"]
    assert any("nbformat" in problem for problem in notebook_problems(notebook))
