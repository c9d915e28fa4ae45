"""The contract is the spec: schemathesis fuzzes every operation of ``/api/v1/openapi.json`` in-process.

Its engine (what ``schemathesis run`` drives) runs every phase (examples, coverage, fuzzing,
stateful) with every built-in check on: no 5xx, documented statuses, content types, headers and
bodies, ``positive_data_acceptance`` (what the document allows is accepted) and
``negative_data_rejection`` (what it forbids is refused). Bounded by ``MAX_EXAMPLES`` per
operation and generation mode so the test stays well under two minutes on two cores.
"""

from __future__ import annotations

from collections import Counter

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the [dev] extra")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.engine import events  # noqa: E402

from webapp import create_app  # noqa: E402

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 60
#: Checks that must have run on real responses for the result to mean anything.
ESSENTIAL_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                    "response_schema_conformance", "positive_data_acceptance", "negative_data_rejection",
                    "unsupported_method")


def _as_int(value: object) -> int | None:
    try:
        return int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    except ValueError:
        return None


def keep_documented_year_order(ctx, case) -> bool:
    """Valid cases keep ``year_min ≤ year_max``: the one rule of the document that JSON Schema cannot state.

    Negative cases are left as generated: the server must refuse them either way.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return True
    fields = case.body if isinstance(case.body, dict) else (case.query or {})
    low, high = _as_int(fields.get("year_min")), _as_int(fields.get("year_max"))
    return low is None or high is None or low <= high


def run_schemathesis(app) -> tuple[list[str], dict[str, Counter]]:
    """Fuzz ``app`` in-process: (one line per distinct failure, per-operation counts of statuses and checks)."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                    max_examples=MAX_EXAMPLES, deterministic=True)
    schema.hook("filter_case")(keep_documented_year_order)
    failures: dict[tuple, str] = {}
    seen: dict[str, Counter] = {}
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, (events.NonFatalError, events.FatalError)):
            failures[("error", repr(event))] = f"engine error: {getattr(event, 'info', event)!r}"[:500]
        if not isinstance(event, events.ScenarioFinished):
            continue
        recorder = event.recorder
        counts = seen.setdefault(recorder.label, Counter())
        for interaction in recorder.interactions.values():
            if interaction.response is not None:
                counts[f"HTTP {interaction.response.status_code}"] += 1
        for case_id, checks in recorder.checks.items():
            for check in checks:
                counts[check.name] += 1
                if check.failure_info is None:
                    continue
                case = recorder.cases[case_id].value
                failure = check.failure_info.failure
                key = (recorder.label, check.name, failure.title)
                failures.setdefault(key, f"{recorder.label}: {check.name}: {failure.title}: "
                                         f"{' '.join(str(failure.message).split())[:300]} | {case.method}"
                                         f" {case.formatted_path} query={case.query!r:.200} body={case.body!r:.200}")
    return list(failures.values()), seen


def test_every_operation_keeps_its_contract(tiny_recommender):
    # gzip has its own tests; the fuzzer's test client would not inflate it.
    app = create_app({"RECOMMENDER": tiny_recommender, "RATE_LIMIT_ENABLED": False, "LOG_REQUESTS": False,
                      "GZIP": False})
    failures, seen = run_schemathesis(app)
    assert failures == [], "\n".join(failures)
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    operations = {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item}
    operations.discard("GET /api/v1/openapi.json")  # the document itself: loaded, not fuzzed
    assert operations <= set(seen), f"never exercised: {operations - set(seen)}"
    totals = sum(seen.values(), Counter())
    for check in ESSENTIAL_CHECKS:
        assert totals[check] > 0, f"check {check} never ran"
    assert totals["HTTP 200"] > 100 and totals["HTTP 400"] > 100  # both sides of the contract were reached
