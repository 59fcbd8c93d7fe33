"""Grading, question authoring and presentation order: pure functions."""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from lms.quizzes.authoring import QuestionInvalid, prepare
from lms.quizzes.grading import GradableQuestion, answer_shape_error, grade, is_correct, normalize_text
from lms.quizzes.presentation import arrange, draw

pytestmark = pytest.mark.no_services


# -- one question at a time ---------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("b", True), ("a", False), ("zz-unknown", False), ("", False), (None, False), (["b"], False), (1, False)],
)
def test_single_choice_needs_exactly_the_correct_option(answer: Any, expected: bool) -> None:
    assert is_correct("single_choice", "b", answer) is expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (["a", "c"], True),
        (["c", "a"], True),  # order does not matter
        (["a", "c", "a"], True),  # repeating a choice does not change the set
        (["a"], False),  # partial: no credit
        (["a", "b", "c"], False),  # a wrong extra choice
        (["a", "b", "c", "d"], False),  # choosing everything must not pay
        (["a", "c", "zz-unknown"], False),  # an unknown option id is a wrong choice
        (["zz-unknown"], False),
        ([], False),
        (None, False),
        ("a", False),
        ([1, 2], False),
    ],
)
def test_multiple_choice_is_correct_only_for_the_exact_set(answer: Any, expected: bool) -> None:
    assert is_correct("multiple_choice", ["a", "c"], answer) is expected


@pytest.mark.parametrize(
    ("correct", "answer", "expected"),
    [
        (True, True, True),
        (True, False, False),
        (False, False, True),
        (False, "false", True),  # the option id works too
        (True, "true", True),
        (True, "yes", False),
        (True, None, False),
        (True, 1, False),
    ],
)
def test_true_false(correct: bool, answer: Any, expected: bool) -> None:
    assert is_correct("true_false", correct, answer) is expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Ulan Bator", True),
        ("ulaanbaatar", True),  # any of the accepted answers
        ("  ULAN   bator ", True),  # case and whitespace do not matter
        ("Ulan\tBator\n", True),
        ("Ｕｌａｎ Ｂａｔｏｒ", True),  # full-width letters fold (NFKC)
        ("Ulan", False),
        ("UlanBator", False),  # whitespace folds, it does not vanish
        ("", False),
        ("   ", False),
        (None, False),
        (["Ulan Bator"], False),
    ],
)
def test_short_answer_accepts_any_listed_answer_ignoring_case_and_spacing(answer: Any, expected: bool) -> None:
    assert is_correct("short_answer", ["Ulan Bator", "Ulaanbaatar"], answer) is expected


def test_normalize_text_folds_case_and_whitespace() -> None:
    assert normalize_text("  Straße \n  Berlin ") == "strasse berlin"


@pytest.mark.parametrize(
    ("question_type", "answer", "ok"),
    [
        ("single_choice", "zz-unknown", True),  # unknown ids are wrong, not malformed
        ("single_choice", None, True),
        ("single_choice", 3, False),
        ("single_choice", ["a"], False),
        ("multiple_choice", [], True),
        ("multiple_choice", ["a", "zz"], True),
        ("multiple_choice", "a", False),
        ("multiple_choice", ["a", 1], False),
        ("multiple_choice", ["x"] * 101, False),
        ("true_false", "true", True),
        ("true_false", "maybe", False),
        ("true_false", 0, False),
        ("short_answer", "", True),
        ("short_answer", 42, False),
        ("short_answer", "x" * 2001, False),
    ],
)
def test_answer_shapes(question_type: str, answer: Any, ok: bool) -> None:
    assert (answer_shape_error(question_type, answer) is None) is ok


# -- a whole attempt ----------------------------------------------------------

QUESTIONS = [
    GradableQuestion("q1", "single_choice", "b", Decimal(1), "Paris is the capital."),
    GradableQuestion("q2", "multiple_choice", ["a", "c"], Decimal(2)),
    GradableQuestion("q3", "true_false", False, Decimal("0.5")),
    GradableQuestion("q4", "short_answer", ["Ulan Bator"], Decimal("1.5")),
]


def test_points_add_up_per_question_all_or_nothing() -> None:
    result = grade(QUESTIONS, {"q1": "b", "q2": ["a"], "q3": False, "q4": "ulan bator"}, Decimal(70))
    assert result.score == Decimal(3)
    assert result.max_score == Decimal(5)
    assert result.percentage == Decimal("60.00")
    assert result.is_passed is False
    assert [r["is_correct"] for r in result.results] == [True, False, True, True]
    assert [r["points_awarded"] for r in result.results] == ["1", "0", "0.5", "1.5"]
    assert result.results[0]["correct_answer"] == "b"
    assert result.results[0]["explanation"] == "Paris is the capital."


def test_unanswered_questions_score_nothing() -> None:
    result = grade(QUESTIONS, {}, Decimal(0))
    assert result.score == 0
    assert result.percentage == Decimal("0.00")
    assert all(r["answer"] is None and not r["is_correct"] for r in result.results)
    # A passing score of 0 is met by 0%.
    assert result.is_passed is True


def test_reaching_the_passing_score_exactly_passes() -> None:
    full = {"q1": "b", "q2": ["c", "a"], "q3": "false", "q4": "Ulan Bator"}
    assert grade(QUESTIONS, full, Decimal(100)).is_passed is True
    half = grade(QUESTIONS[:2], {"q1": "b"}, Decimal("33.33"))
    assert half.percentage == Decimal("33.33")
    assert half.is_passed is True
    assert grade(QUESTIONS[:2], {"q1": "b"}, Decimal("33.34")).is_passed is False


def test_percentage_rounds_half_up_to_cents() -> None:
    three = [GradableQuestion(f"q{i}", "true_false", True, Decimal(1)) for i in range(3)]
    assert grade(three, {"q0": True, "q1": True}, Decimal(50)).percentage == Decimal("66.67")


def test_no_questions_means_zero_and_not_passed() -> None:
    result = grade([], {"q1": "b"}, Decimal(0))
    assert (result.score, result.max_score, result.percentage, result.is_passed) == (0, 0, 0, False)


# -- authoring -----------------------------------------------------------------


def test_missing_option_ids_are_generated_unique_and_answers_may_use_indexes() -> None:
    q = prepare("multiple_choice", [{"text": "A"}, {"text": "B"}, {"id": "c", "text": "C"}], [0, "c"])
    ids = [o["id"] for o in q.options]
    assert ids[2] == "c" and len(set(ids)) == 3 and all(ids)
    assert q.correct_answer == [ids[0], "c"]


def test_resending_options_without_ids_keeps_the_ids_of_unchanged_texts() -> None:
    first = prepare("single_choice", [{"text": "Lyon"}, {"text": "Paris"}], 1)
    again = prepare("single_choice", [{"text": "Paris"}, {"text": "Lyon"}, {"text": "Nice"}], 0, first.options)
    ids = {o["text"]: o["id"] for o in first.options}
    assert again.options[0]["id"] == ids["Paris"]
    assert again.options[1]["id"] == ids["Lyon"]
    assert again.options[2]["id"] not in ids.values()
    assert again.correct_answer == ids["Paris"]


def test_true_false_gets_its_two_options() -> None:
    q = prepare("true_false", [], "false")
    assert q.options == [{"id": "true", "text": "True"}, {"id": "false", "text": "False"}]
    assert q.correct_answer is False
    labelled = prepare("true_false", [{"id": "true", "text": "Vrai"}, {"id": "false", "text": "Faux"}], True)
    assert labelled.options[0]["text"] == "Vrai"


def test_short_answers_are_trimmed_and_deduplicated() -> None:
    q = prepare("short_answer", [], ["  Ulan  Bator ", "ulan bator", "Ulaanbaatar"])
    assert q.options == []
    assert q.correct_answer == ["Ulan Bator", "Ulaanbaatar"]
    assert prepare("short_answer", [], "Paris").correct_answer == ["Paris"]


@pytest.mark.parametrize(
    ("question_type", "options", "correct", "field"),
    [
        ("single_choice", [{"text": "only one"}], 0, "options"),
        ("single_choice", [{"text": "A"}, {"text": "a "}], 0, "options"),  # same text
        ("single_choice", [{"id": "x", "text": "A"}, {"id": "x", "text": "B"}], "x", "options"),
        ("single_choice", [{"text": "A"}, {"text": "B"}], "zz", "correct_answer"),
        ("single_choice", [{"text": "A"}, {"text": "B"}], 2, "correct_answer"),
        ("single_choice", [{"text": "A"}, {"text": "B"}], True, "correct_answer"),  # a bool is not an index
        ("single_choice", [{"text": "A"}, {"text": "B"}], [0], "correct_answer"),
        ("multiple_choice", [{"text": "A"}, {"text": "B"}], [], "correct_answer"),
        ("multiple_choice", [{"text": "A"}, {"text": "B"}], 0, "correct_answer"),
        ("true_false", [], "yes", "correct_answer"),
        ("true_false", [{"id": "yes", "text": "Yes"}, {"id": "no", "text": "No"}], True, "options"),
        ("short_answer", [{"text": "A"}], "A", "options"),
        ("short_answer", [], "  ", "correct_answer"),
        ("short_answer", [], [], "correct_answer"),
        ("short_answer", [], 42, "correct_answer"),
    ],
)
def test_questions_that_cannot_be_graded_are_refused(
    question_type: str, options: list[dict[str, Any]], correct: Any, field: str
) -> None:
    with pytest.raises(QuestionInvalid) as caught:
        prepare(question_type, options, correct)
    assert caught.value.field == field


# -- presentation order ----------------------------------------------------------


def _questions(n: int, options: int = 4, question_type: str = "single_choice") -> list[dict[str, Any]]:
    return [
        {
            "id": f"q{i}",
            "question_type": question_type,
            "options": [{"id": f"o{j}", "text": str(j)} for j in range(options)],
        }
        for i in range(n)
    ]


def test_without_shuffling_the_authors_order_is_kept() -> None:
    drawn = draw(_questions(5), shuffle_questions=False, shuffle_options=False)
    assert drawn["questions"] == ["q0", "q1", "q2", "q3", "q4"]
    assert drawn["options"]["q3"] == ["o0", "o1", "o2", "o3"]


def test_shuffling_permutes_questions_and_options() -> None:
    drawn = draw(_questions(8, 6), shuffle_questions=True, shuffle_options=True, rng=random.Random(7))
    assert sorted(drawn["questions"]) == [f"q{i}" for i in range(8)]
    assert drawn["questions"] != sorted(drawn["questions"])
    assert all(sorted(ids) == [f"o{j}" for j in range(6)] for ids in drawn["options"].values())
    assert any(ids != sorted(ids) for ids in drawn["options"].values())


def test_true_false_options_are_never_shuffled() -> None:
    questions = _questions(3, 2, "true_false")
    for seed in range(10):
        drawn = draw(questions, shuffle_questions=False, shuffle_options=True, rng=random.Random(seed))
        assert all(ids == ["o0", "o1"] for ids in drawn["options"].values())


def test_arrange_follows_the_stored_order_after_edits() -> None:
    questions = _questions(3, 3)
    stored = {"questions": ["q2", "q0", "q1"], "options": {"q0": ["o2", "o0", "o1"], "q2": ["o1", "o0", "o2"]}}
    # Since the attempt began: q1 deleted, q3 added, q0 lost o1 and gained o9.
    current = [questions[0], questions[2], _questions(4)[3]]
    current[0] = {
        **current[0],
        "options": [{"id": "o0", "text": "0"}, {"id": "o9", "text": "9"}, {"id": "o2", "text": "2"}],
    }
    arranged = arrange(current, stored)
    assert [q["id"] for q in arranged] == ["q2", "q0"]
    assert [o["id"] for o in arranged[0]["options"]] == ["o1", "o0", "o2"]
    assert [o["id"] for o in arranged[1]["options"]] == ["o2", "o0", "o9"]
