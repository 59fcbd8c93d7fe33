"""The order an attempt shows its questions and options in.

Drawn once when the attempt starts and stored with it
(``quiz_attempts.presentation``), so reloading the page, another device or
the grader sees the same order. Questions edited after the start still show:
options added later come last, anything deleted is left out.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from lms.quizzes.grading import MULTIPLE_CHOICE, SINGLE_CHOICE
from lms.quizzes.question_types import ORDERING, POLL, public_settings, shuffled_items

SHUFFLED_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE, POLL)  # true/false stays "True, False"


def draw(
    questions: Sequence[Mapping[str, Any]],
    *,
    shuffle_questions: bool,
    shuffle_options: bool,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """``{"questions": [question id...], "options": {question id: [option id...]}}``.

    ``questions`` come in the author's order; ids are stored as strings.
    """
    rng = rng or random.Random()
    order = [str(q["id"]) for q in questions]
    if shuffle_questions:
        rng.shuffle(order)
    options: dict[str, list[str]] = {}
    for question in questions:
        ids = [str(o["id"]) for o in question["options"]]
        if question["question_type"] == ORDERING:  # always: the author's order is the answer
            items = shuffled_items(str(question["id"]), question["options"], question["correct_answer"])
            ids = [o["id"] for o in items]
        elif shuffle_options and question["question_type"] in SHUFFLED_TYPES:
            rng.shuffle(ids)
        options[str(question["id"])] = ids
    return {"questions": order, "options": options}


def arrange(questions: Sequence[Mapping[str, Any]], presentation: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The attempt's questions (existing ones, in its stored order), options in its stored order."""
    by_id = {str(q["id"]): q for q in questions}
    option_orders: Mapping[str, list[str]] = presentation.get("options", {})
    arranged = []
    for question_id in presentation.get("questions", []):
        question = by_id.get(question_id)
        if question is None:
            continue
        rank = {option_id: i for i, option_id in enumerate(option_orders.get(question_id, []))}
        indexed = sorted(
            enumerate(question["options"]), key=lambda pair: (rank.get(str(pair[1]["id"]), len(rank)), pair[0])
        )
        arranged.append({**question, "options": [option for _, option in indexed]})
    return arranged


def image_url(file_id: Any) -> str | None:
    return None if file_id is None else f"/api/v1/files/{file_id}/download"


def shown(question: Mapping[str, Any]) -> dict[str, Any]:
    """A question as a student sees it: a slider's public settings only, the image as a URL."""
    return {
        **question,
        "settings": public_settings(question["question_type"], question.get("settings")),
        "image_url": image_url(question.get("image_file_id")),
    }
