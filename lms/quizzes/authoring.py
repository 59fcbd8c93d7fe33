"""A question as its author sends it, checked and put in its stored form.

Options are ``[{id, text}]``. An author may leave ids out: they are generated
once and stored, and an option re-sent without an id but with the text of an
existing option keeps that option's id, so editing one option does not
renumber the others (a student's saved answer refers to ids).

The correct answer may name options by id or by 0-based index (an author who
let the ids be generated cannot know them yet); it is stored by id. See
:mod:`lms.quizzes.grading` for the stored forms.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lms.quizzes.grading import (
    MAX_SHORT_ANSWER_LENGTH,
    MULTIPLE_CHOICE,
    SHORT_ANSWER,
    SINGLE_CHOICE,
    TRUE_FALSE,
    as_bool,
    normalize_text,
)

CHOICE_TYPES = (SINGLE_CHOICE, MULTIPLE_CHOICE)
MIN_CHOICES = 2
MAX_OPTIONS = 50
MAX_ACCEPTED_ANSWERS = 50
TRUE_FALSE_OPTIONS = ({"id": "true", "text": "True"}, {"id": "false", "text": "False"})


class QuestionInvalid(ValueError):
    """The question cannot be graded as written; ``field`` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AuthoredQuestion:
    options: list[dict[str, str]]
    correct_answer: Any


def prepare(
    question_type: str,
    options: Sequence[Mapping[str, Any]],
    correct_answer: Any,
    existing_options: Sequence[Mapping[str, Any]] = (),
) -> AuthoredQuestion:
    """Options with ids and the correct answer in stored form, or :class:`QuestionInvalid`."""
    stored = _options(question_type, options, existing_options)
    return AuthoredQuestion(stored, _correct_answer(question_type, stored, correct_answer))


def _options(
    question_type: str, options: Sequence[Mapping[str, Any]], existing: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    if question_type == SHORT_ANSWER:
        if options:
            raise QuestionInvalid("options", "a short-answer question has no options")
        return []
    if question_type == TRUE_FALSE:
        if not options:
            return [dict(o) for o in TRUE_FALSE_OPTIONS]
        ids = [o.get("id") for o in options]
        if sorted(str(i) for i in ids) != ["false", "true"]:
            raise QuestionInvalid("options", 'true/false options are exactly {"id": "true"} and {"id": "false"}')
        return [{"id": str(o["id"]), "text": str(o["text"])} for o in options]
    if not MIN_CHOICES <= len(options) <= MAX_OPTIONS:
        raise QuestionInvalid("options", f"between {MIN_CHOICES} and {MAX_OPTIONS} options")
    texts = [normalize_text(str(o["text"])) for o in options]
    if len(set(texts)) != len(texts):
        raise QuestionInvalid("options", "two options have the same text")
    given = [str(o["id"]) for o in options if o.get("id")]
    if len(set(given)) != len(given):
        raise QuestionInvalid("options", "option ids must be unique")
    used = set(given)
    # An option re-sent without its id keeps the id it had (matched by text).
    by_text = {normalize_text(str(o["text"])): str(o["id"]) for o in existing if o.get("id")}
    stored = []
    for option in options:
        option_id = option.get("id")
        if not option_id:
            option_id = by_text.get(normalize_text(str(option["text"])))
            if option_id is None or option_id in used:
                option_id = _new_id(used)
            used.add(option_id)
        stored.append({"id": str(option_id), "text": str(option["text"])})
    return stored


def _new_id(taken: Iterable[str]) -> str:
    taken = set(taken)
    while True:
        candidate = uuid.uuid4().hex[:8]
        if candidate not in taken:
            return candidate


def _resolve(ref: Any, options: Sequence[Mapping[str, str]]) -> str:
    ids = [o["id"] for o in options]
    if isinstance(ref, str) and ref in ids:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool) and 0 <= ref < len(ids):
        return ids[ref]
    raise QuestionInvalid("correct_answer", f"{ref!r} is neither an option id nor an option index")


def _correct_answer(question_type: str, options: Sequence[Mapping[str, str]], value: Any) -> Any:
    if question_type == SINGLE_CHOICE:
        if isinstance(value, list):
            raise QuestionInvalid("correct_answer", "a single-choice question has one correct option")
        return _resolve(value, options)
    if question_type == MULTIPLE_CHOICE:
        if not isinstance(value, list) or not value:
            raise QuestionInvalid("correct_answer", "a list of one or more correct options")
        chosen = {_resolve(ref, options) for ref in value}
        return [o["id"] for o in options if o["id"] in chosen]
    if question_type == TRUE_FALSE:
        flag = as_bool(value)
        if flag is None:
            raise QuestionInvalid("correct_answer", "true or false")
        return flag
    if question_type == SHORT_ANSWER:
        accepted = [value] if isinstance(value, str) else value
        if not isinstance(accepted, list) or not accepted or not all(isinstance(a, str) for a in accepted):
            raise QuestionInvalid("correct_answer", "an accepted answer, or a list of them")
        if len(accepted) > MAX_ACCEPTED_ANSWERS:
            raise QuestionInvalid("correct_answer", f"at most {MAX_ACCEPTED_ANSWERS} accepted answers")
        cleaned: dict[str, str] = {}
        for answer in accepted:
            if not normalize_text(answer):
                raise QuestionInvalid("correct_answer", "an accepted answer must not be blank")
            if len(answer) > MAX_SHORT_ANSWER_LENGTH:
                raise QuestionInvalid("correct_answer", f"at most {MAX_SHORT_ANSWER_LENGTH} characters per answer")
            cleaned.setdefault(normalize_text(answer), " ".join(answer.split()))
        return list(cleaned.values())
    raise QuestionInvalid("question_type", "unknown question type")
