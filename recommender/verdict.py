"""The reviewer's verdict: which reviews count as negative, how a verdict is shown, and what a query asks for.

One rule for every face (search, evidence, evaluation, API, page): a review is
*negative* when its score is at most :data:`NEGATIVE_MAX_SCORE` or MAL tags it
:data:`NOT_RECOMMENDED`. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: Scores (1–10) at or below this make a review negative.
NEGATIVE_MAX_SCORE = 4
NOT_RECOMMENDED = "Not Recommended"
#: MAL's verdict tags, in the order they are shown when a review somehow carries several.
VERDICT_TAGS = ("Recommended", "Mixed Feelings", NOT_RECOMMENDED)

#: Phrases with which a query asks for what reviewers disliked ("overrated shows with a rushed ending"),
#: not for what to watch. Such a query agrees with negative reviews. Kept short on purpose: a word like
#: "bad" also names villains ("the bad guys win"), so only phrases that judge a show are listed.
NEGATIVE_INTENT = (
    "overrated", "disappointing", "disappointed", "worst", "waste of time", "hated", "i hate", "dropped it",
    "boring", "ruined", "terrible", "awful", "unwatchable", "cringe", "not worth",
)
_INTENT = re.compile(r"\b(?:" + "|".join(re.escape(p) for p in NEGATIVE_INTENT) + r")\b", re.IGNORECASE)


def is_negative(score: int | None, tags: Iterable[str] | None) -> bool:
    """Whether a review with this score (None: unknown) and these tags is negative."""
    return (score is not None and score <= NEGATIVE_MAX_SCORE) or NOT_RECOMMENDED in (tags or ())


def verdict_tag(tags: Iterable[str] | None) -> str | None:
    """The review's MAL verdict tag (Recommended, Mixed Feelings or Not Recommended), or None."""
    present = set(tags or ())
    return next((tag for tag in reversed(VERDICT_TAGS) if tag in present), None)


def describe(review_score: int | None, verdict: str | None) -> str:
    """How a snippet's verdict is written beside it: ``"reviewer's score 9/10 · Recommended"`` ("" when unknown).

    The page (``web/app.js`` ``verdictText``) writes it the same way.
    """
    parts = [f"reviewer's score {review_score}/10"] if review_score is not None else []
    return " · ".join(parts + ([verdict] if verdict else []))


def asks_for_negative(query: str) -> bool:
    """Whether the query asks for what reviewers disliked (see :data:`NEGATIVE_INTENT`) rather than what to watch."""
    return bool(_INTENT.search(query))
