"""A question as its author sends it, checked and put in its stored form.

Options are ``[{id, text}]``. An author may leave ids out: they are generated
once and stored, and an option re-sent without an id but with the text of an
existing option keeps that option's id, so editing one option does not
renumber the others (a student's saved answer refers to ids).

The correct answer may name options by id or by 0-based index (an author who
let the ids be generated cannot know them yet); it is stored by id. See
:mod:`lms.quizzes.grading` and :mod:`lms.quizzes.question_types` for the
stored forms. An ordering question's items are its options, sent in the
correct order (or in any order, with ``correct_answer`` listing them);
polls and word clouds have no correct answer. ``settings`` are checked by
the type's model (:func:`lms.quizzes.question_types.settings_model`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from lms.quizzes.grading import (
    MAX_SHORT_ANSWER_LENGTH,
    MULTIPLE_CHOICE,
    SHORT_ANSWER,
    SINGLE_CHOICE,
    TRUE_FALSE,
    as_bool,
    normalize_text,
)
from lms.quizzes.question_types import (
    MAX_ITEMS,
    MIN_ITEMS,
    ORDERING,
    SLIDER,
    UNGRADED,
    WORD_CLOUD,
    SliderSettings,
    settings_model,
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
    settings: dict[str, Any] | None = None


def prepare(
    question_type: str,
    options: Sequence[Mapping[str, Any]],
    correct_answer: Any,
    existing_options: Sequence[Mapping[str, Any]] = (),
    settings: Any = None,
) -> AuthoredQuestion:
    """Options with ids, the correct answer and the settings in stored form, or :class:`QuestionInvalid`."""
    checked = _settings(question_type, settings)
    stored = _options(question_type, options, existing_options)
    answer = _correct_answer(question_type, stored, correct_answer, checked)
    return AuthoredQuestion(stored, answer, checked)


def _settings(question_type: str, settings: Any) -> dict[str, Any] | None:
    model = settings_model(question_type)
    if settings is None and question_type != SLIDER:
        return None
    if settings is not None and not isinstance(settings, dict):
        raise QuestionInvalid("settings", "expected an object")
    try:
        parsed = model.model_validate(settings or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"not a setting of a {question_type} question"
        raise QuestionInvalid(f"settings.{where}" if where else "settings", message) from None
    dumped = parsed.model_dump()
    return dumped or None


def _options(
    question_type: str, options: Sequence[Mapping[str, Any]], existing: Sequence[Mapping[str, Any]]
) -> list[dict[str, str]]:
    if question_type in (SHORT_ANSWER, SLIDER, WORD_CLOUD):
        if options:
            raise QuestionInvalid("options", f"a {question_type} question has no options")
        return []
    if question_type == TRUE_FALSE:
        if not options:
            return [dict(o) for o in TRUE_FALSE_OPTIONS]
        ids = [o.get("id") for o in options]
        if sorted(str(i) for i in ids) != ["false", "true"]:
            raise QuestionInvalid("options", 'true/false options are exactly {"id": "true"} and {"id": "false"}')
        return [{"id": str(o["id"]), "text": str(o["text"])} for o in options]
    fewest, most = (MIN_ITEMS, MAX_ITEMS) if question_type == ORDERING else (MIN_CHOICES, MAX_OPTIONS)
    if not fewest <= len(options) <= most:
        raise QuestionInvalid("options", f"between {fewest} and {most} {'items' if fewest == MIN_ITEMS else 'options'}")
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


def _correct_answer(
    question_type: str, options: Sequence[Mapping[str, str]], value: Any, settings: Mapping[str, Any] | None
) -> Any:
    if question_type in UNGRADED:
        if value is not None:
            raise QuestionInvalid("correct_answer", f"a {question_type} question has no correct answer (send null)")
        return None
    if value is None and question_type != ORDERING:
        raise QuestionInvalid("correct_answer", f"required for a {question_type} question")
    if question_type == SLIDER:
        assert settings is not None
        model = SliderSettings.model_validate(settings)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not model.min <= value <= model.max:
            raise QuestionInvalid("correct_answer", f"a number from {model.min:g} to {model.max:g}")
        return value
    if question_type == ORDERING:
        if value is None:  # the items were sent in the correct order
            return [o["id"] for o in options]
        if not isinstance(value, list) or len(value) != len(options):
            raise QuestionInvalid("correct_answer", "every item once, in the correct order (ids or indexes)")
        order = [_resolve(ref, options) for ref in value]
        if len(set(order)) != len(order):
            raise QuestionInvalid("correct_answer", "an item is listed twice")
        return order
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
