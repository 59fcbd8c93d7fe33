"""Slider, ordering, poll and word cloud: payload models, the one grader, authoring, attempts, import/export."""

from __future__ import annotations

import io
import json
import math
from decimal import Decimal
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lms.db import Database
from lms.live import questions as live_questions
from lms.quizzes.authoring import QuestionInvalid, prepare
from lms.quizzes.grading import GradableQuestion, answer_shape_error, fold_text, fraction, grade, is_correct
from lms.quizzes.question_types import SliderSettings, shuffled_items
from lms.quizzes.schemas import QuestionVideo
from realtime.live.namespace import SubmitAnswer
from tests.builders import make_quiz, make_quiz_course, make_quiz_enrollment, signed_in

Client = TestClient  # type: ignore[type-arg]

SLIDER = {"min": 0, "max": 100, "step": 1, "tolerance": 2, "zero_at": 12}
ITEMS = ["a", "b", "c", "d"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=5),
    max_leaves=20,
)


# -- the grader ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "share"),
    [
        (50, "1"), (52, "1"), (48, "1"),  # within the tolerance: all of it
        (57, "0.5"), (43, "0.5"),  # halfway from the tolerance to zero_at
        (62, "0"), (99, "0"),  # at and beyond zero_at: nothing
        (50.5, "0"),  # off the step grid: not an answer
        (-1, "0"), (101, "0"), (1e308, "0"),  # off the slider
        (math.nan, "0"), (math.inf, "0"), (-math.inf, "0"), (True, "0"), ("50", "0"), (None, "0"),
    ],
)  # fmt: skip
def test_a_slider_pays_in_full_within_the_tolerance_then_linearly_less(answer: Any, share: str) -> None:
    assert fraction("slider", 50, answer, SLIDER) == Decimal(share)
    assert is_correct("slider", 50, answer, SLIDER) is (share == "1")


def test_a_slider_without_zero_at_is_all_or_nothing_beyond_the_tolerance() -> None:
    plain = {"min": 0, "max": 1, "step": 0.1, "tolerance": 0.1}
    assert fraction("slider", 0.5, 0.6, plain) == 1  # 0.6 - 0.5 is 0.1 in decimals, not 0.09999...
    assert fraction("slider", 0.5, 0.7, plain) == 0
    assert fraction("slider", 0.3, 0.30000000000000004, plain) == 1  # 0.1 + 0.2 lies on the 0.1 grid


@pytest.mark.parametrize(
    ("answer", "partial", "share"),
    [
        (["a", "b", "c", "d"], False, "1"),
        (["a", "b", "d", "c"], False, "0"),
        (["a", "b", "d", "c"], True, "0.5"),
        (["d", "c", "b", "a"], True, "0"),
        (["a", "b", "c"], True, "0"),  # an item missing
        (["a", "a", "b", "c"], True, "0"),  # an item twice
        (["a", "b", "c", "d", "e"], True, "0"),  # an unknown item
        ("abcd", True, "0"),
        ([1, 2, 3, 4], True, "0"),
    ],
)
def test_ordering_is_all_or_nothing_unless_partial_credit(answer: Any, partial: bool, share: str) -> None:
    assert fraction("ordering", ITEMS, answer, {"partial_credit": partial}) == Decimal(share)


def test_polls_and_word_clouds_have_no_verdict_and_no_points() -> None:
    questions = [
        GradableQuestion("p", "poll", None, Decimal(5)),
        GradableQuestion("w", "word_cloud", None, Decimal(5)),
        GradableQuestion("s", "slider", 50, Decimal(2), settings=SLIDER),
        GradableQuestion("o", "ordering", ITEMS, Decimal(4), settings={"partial_credit": True}),
    ]
    result = grade(questions, {"p": "x", "w": "Blue", "s": 57, "o": ["a", "b", "d", "c"]}, Decimal(50))
    assert [r["is_correct"] for r in result.results] == [None, None, False, False]
    assert [r["points_awarded"] for r in result.results] == ["0", "0", "1.00", "2.00"]
    assert [r["points"] for r in result.results] == ["0", "0", "2", "4"]
    assert (result.score, result.max_score, result.percentage, result.is_passed) == (
        Decimal(3), Decimal(6), Decimal("50.00"), True,
    )  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    question_type=st.sampled_from(["slider", "ordering", "poll", "word_cloud"]),
    answer=JSON,
    partial=st.booleans(),
)
def test_any_answer_earns_a_share_from_zero_to_one(question_type: str, answer: Any, partial: bool) -> None:
    settings_ = SLIDER if question_type == "slider" else {"partial_credit": partial}
    correct = {"slider": 50, "ordering": ITEMS}.get(question_type)
    share = fraction(question_type, correct, answer, settings_)
    assert Decimal(0) <= share <= Decimal(1)
    if answer_shape_error(question_type, answer, settings=settings_, options=ITEMS) is not None:
        assert share == 0  # what cannot be an answer never earns anything


@settings(max_examples=200)
@given(st.floats(allow_nan=True, allow_infinity=True), st.floats(allow_nan=True, allow_infinity=True))
def test_slider_settings_take_only_finite_bounded_ranges(low: float, high: float) -> None:
    try:
        model = SliderSettings(min=low, max=high, step=1)
    except ValidationError:
        return
    assert math.isfinite(model.min) and math.isfinite(model.max) and model.min < model.max
    assert abs(model.min) <= 1e9 and abs(model.max) <= 1e9 and (model.max - model.min) <= 100_000


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    question_type=st.sampled_from(["slider", "ordering", "poll", "word_cloud"]),
    raw_settings=JSON,
    correct=JSON,
    options=st.lists(st.fixed_dictionaries({"text": st.text(min_size=1, max_size=10)}), max_size=8),
)
def test_authoring_refuses_bad_settings_naming_the_field(
    question_type: str, raw_settings: Any, correct: Any, options: list[dict[str, str]]
) -> None:
    try:
        authored = prepare(question_type, options, correct, settings=raw_settings)
    except QuestionInvalid as err:
        refused = err
    else:
        refused = None
    if refused is not None:
        assert refused.field.split(".")[0] in ("settings", "options", "correct_answer") and refused.message
        return
    if question_type == "slider":
        assert authored.settings is not None and SliderSettings.model_validate(authored.settings)
    if question_type == "ordering":
        assert 3 <= len(authored.options) <= 6 and sorted(authored.correct_answer) == sorted(
            o["id"] for o in authored.options
        )
    if question_type in ("poll", "word_cloud"):
        assert authored.correct_answer is None


@pytest.mark.parametrize(
    ("question_type", "options", "correct", "raw", "field"),
    [
        ("slider", [], 5, None, "settings.min"),
        ("slider", [], 5, {"min": 0, "max": "nan", "step": 1}, "settings.max"),
        ("slider", [], 5, {"min": 10, "max": 0}, "settings"),
        ("slider", [], 5, {"min": 0, "max": 1e9, "step": 1}, "settings"),  # too many steps
        ("slider", [], 5, {"min": 0, "max": 10, "tolerance": 3, "zero_at": 2}, "settings"),
        ("slider", [], 50, {"min": 0, "max": 10}, "correct_answer"),
        ("slider", [], 5, {"min": 0, "max": 10, "colour": "red"}, "settings.colour"),
        ("slider", [{"text": "x"}], 5, {"min": 0, "max": 10}, "options"),
        ("ordering", [{"text": "a"}, {"text": "b"}], None, None, "options"),
        ("ordering", [{"text": t} for t in "abcdefg"], None, None, "options"),
        ("ordering", [{"text": "a"}, {"text": "b"}, {"text": "c"}], [0, 0, 1], None, "correct_answer"),
        ("ordering", [{"text": "a"}, {"text": "b"}, {"text": "c"}], [0, 1], None, "correct_answer"),
        ("ordering", [{"text": "a"}, {"text": "a"}, {"text": "c"}], None, None, "options"),
        ("poll", [{"text": "a"}, {"text": "b"}], 0, None, "correct_answer"),
        ("poll", [{"text": "a"}], None, None, "options"),
        ("word_cloud", [], None, {"max": 3}, "settings.max"),
    ],
)
def test_invalid_new_questions_name_their_field(
    question_type: str, options: list[dict[str, str]], correct: Any, raw: Any, field: str
) -> None:
    with pytest.raises(QuestionInvalid) as caught:
        prepare(question_type, options, correct, settings=raw)
    assert caught.value.field == field


def test_ordering_items_are_shuffled_the_same_way_and_never_already_solved() -> None:
    items = [{"id": i, "text": i.upper()} for i in ITEMS]
    for n in range(200):
        shuffled = shuffled_items(f"question-{n}", items, ITEMS)
        assert [o["id"] for o in shuffled] != ITEMS and sorted(o["id"] for o in shuffled) == ITEMS
        assert shuffled == shuffled_items(f"question-{n}", items, ITEMS)  # every instance agrees


def test_word_cloud_answers_are_counted_folded() -> None:
    assert fold_text("  Café   au LAIT ") == fold_text("cafe au lait") == "cafe au lait"
    counts = live_questions.distribution("word_cloud", [], ["Blue", "blue ", "BLÜE", "red", "", 3, None])
    assert counts == {"blue": 3, "red": 1}


def test_slider_distribution_is_ten_bins_in_order() -> None:
    counts = live_questions.distribution("slider", [], [0, 5, 10, 55, 100, 100, 101, math.nan], settings=SLIDER)
    assert list(counts)[:2] == ["0..10", "10..20"] and len(counts) == 10
    assert counts["0..10"] == 2 and counts["10..20"] == 1 and counts["50..60"] == 1 and counts["90..100"] == 2


def test_ordering_distribution_counts_items_in_their_place() -> None:
    counts = live_questions.distribution(
        "ordering", [], [["a", "b", "c", "d"], ["b", "a", "c", "d"], ["a"]], correct_answer=ITEMS
    )
    assert counts == {"a": 1, "b": 1, "c": 2, "d": 2}


@pytest.mark.parametrize(
    "video",
    [
        {"url": "http://example.com/v"},
        {"url": "javascript:alert(1)"},
        {"url": "https://"},
        {"url": "https://example.com/v", "start_seconds": 10, "end_seconds": 5},
        {"url": "https://example.com/\x00"},
        {"url": "https://example.com/v", "start_seconds": -1},
    ],
)
def test_a_video_is_an_https_link_with_a_sensible_part(video: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        QuestionVideo.model_validate(video)


# -- through the API ---------------------------------------------------------------

NEW_QUESTIONS: list[dict[str, Any]] = [
    {"text": "How tall is Everest (hm)?", "question_type": "slider", "correct_answer": 88, "settings": SLIDER,
     "points": 2, "time_limit_seconds": 30},
    {"text": "Oldest first", "question_type": "ordering", "settings": {"partial_credit": True},
     "options": [{"text": "Rome"}, {"text": "Byzantium"}, {"text": "Ottomans"}, {"text": "Turkey"}], "points": 4},
    {"text": "Favourite?", "question_type": "poll", "options": [{"text": "Tea"}, {"text": "Coffee"}]},
    {"text": "One word for today", "question_type": "word_cloud",
     "video": {"url": "https://example.com/clip", "start_seconds": 5, "end_seconds": 20}},
]  # fmt: skip


async def _quiz(client: Client, db: Database) -> tuple[dict[str, str], Any, Any, str]:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner["id"])
    quiz = await make_quiz(db, course_id=course["id"], is_published=False)
    return headers, course, quiz, f"/api/v1/quizzes/{quiz['id']}/questions"


async def test_authors_add_each_new_type_and_read_it_back(client: Client, db: Database) -> None:
    headers, _, _, url = await _quiz(client, db)
    created = []
    for body in NEW_QUESTIONS:
        response = await client.post(url, json=body, headers=headers)
        assert response.status == 201, await response.text()
        created.append(await response.json())
    slider, ordering, poll, cloud = created
    assert slider["settings"] == {**SLIDER, "step": 1.0} and slider["correct_answer"] == 88
    assert slider["time_limit_seconds"] == 30
    assert ordering["correct_answer"] == [o["id"] for o in ordering["options"]]  # sent in the correct order
    assert ordering["settings"] == {"partial_credit": True}
    assert poll["correct_answer"] is None and len(poll["options"]) == 2
    assert cloud["video"] == {"url": "https://example.com/clip", "start_seconds": 5, "end_seconds": 20}
    assert cloud["options"] == [] and cloud["settings"] is None and cloud["image_file_id"] is None

    # A change of type does not keep what only the old type had.
    patched = await client.patch(
        f"/api/v1/questions/{poll['id']}", json={"question_type": "single_choice", "correct_answer": 0}, headers=headers
    )
    assert patched.status == 200, await patched.text()
    assert (await patched.json())["correct_answer"] == poll["options"][0]["id"]
    patched = await client.patch(
        f"/api/v1/questions/{slider['id']}", json={"settings": {"min": 0, "max": 50}}, headers=headers
    )
    assert patched.status == 422
    assert (await patched.json())["errors"] == [{"field": "correct_answer", "message": "a number from 0 to 50"}]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**NEW_QUESTIONS[0], "settings": {"min": 0, "max": 1e300}}, "settings.max"),
        ({**NEW_QUESTIONS[0], "settings": {"min": 0, "max": math.inf}}, "body"),  # Infinity is not JSON
        ({**NEW_QUESTIONS[0], "settings": None}, "settings.min"),
        ({**NEW_QUESTIONS[0], "correct_answer": None}, "correct_answer"),
        ({**NEW_QUESTIONS[0], "time_limit_seconds": 3}, "time_limit_seconds"),
        ({**NEW_QUESTIONS[1], "options": NEW_QUESTIONS[1]["options"][:2]}, "options"),
        ({**NEW_QUESTIONS[1], "correct_answer": [0, 1, 2, 2]}, "correct_answer"),
        ({**NEW_QUESTIONS[2], "correct_answer": 1}, "correct_answer"),
        ({**NEW_QUESTIONS[3], "video": {"url": "http://example.com/"}}, "video.url"),
        ({**NEW_QUESTIONS[3], "text": "a\x00b"}, "text"),
        ({**NEW_QUESTIONS[3], "image_file_id": "not-a-uuid"}, "image_file_id"),
    ],
)
async def test_bad_new_questions_are_422_naming_the_field(
    client: Client, db: Database, body: dict[str, Any], field: str
) -> None:
    headers, _, _, url = await _quiz(client, db)
    response = await client.post(url, data=json.dumps(body, allow_nan=True), headers={
        **headers, "Content-Type": "application/json"
    })  # fmt: skip
    assert response.status == 422, await response.text()
    fields = [e["field"] for e in (await response.json())["errors"]]
    assert any(f == field or f.startswith(field + ".") for f in fields), fields


async def _upload(client: Client, headers: dict[str, str], *, public: bool, name: str = "pic.png") -> str:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 64
    form = FormData()
    form.add_field("file", io.BytesIO(png), filename=name, content_type="image/png")
    if public:
        form.add_field("is_public", "true")
    response = await client.post("/api/v1/files/upload", data=form, headers=headers)
    assert response.status == 201, await response.text()
    return str((await response.json())["id"])


async def test_a_question_image_is_a_public_image_of_the_author(client: Client, db: Database) -> None:
    headers, _, _, url = await _quiz(client, db)
    _, stranger = await signed_in(client, db, role="instructor")
    mine = await _upload(client, headers, public=True)
    private = await _upload(client, headers, public=False)
    theirs = await _upload(client, stranger, public=True)
    body = NEW_QUESTIONS[2]
    for file_id, message in ((theirs, "no such file of yours"), (private, "the file is private")):
        response = await client.post(url, json={**body, "image_file_id": file_id}, headers=headers)
        assert response.status == 422
        [error] = (await response.json())["errors"]
        assert error["field"] == "image_file_id" and error["message"].startswith(message)
    response = await client.post(url, json={**body, "image_file_id": mine}, headers=headers)
    assert response.status == 201, await response.text()
    assert (await response.json())["image_file_id"] == mine


async def test_a_self_paced_attempt_with_the_new_types(client: Client, db: Database) -> None:
    headers, course, quiz, url = await _quiz(client, db)
    created = [await (await client.post(url, json=body, headers=headers)).json() for body in NEW_QUESTIONS]
    assert (await client.post(f"/api/v1/quizzes/{quiz['id']}/publish", headers=headers)).status == 200
    student, student_headers = await signed_in(client, db, role="student")
    await make_quiz_enrollment(db, student_id=student["id"], course_id=course["id"])
    started = await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=student_headers)
    assert started.status == 201, await started.text()
    attempt = await started.json()
    shown = {q["id"]: q for q in attempt["questions"]}
    slider, ordering, poll, cloud = created
    assert shown[slider["id"]]["settings"] == {"min": 0, "max": 100, "step": 1}  # no tolerance, no answer
    items = [o["id"] for o in shown[ordering["id"]]["options"]]
    assert items != ordering["correct_answer"] and sorted(items) == sorted(ordering["correct_answer"])
    assert shown[cloud["id"]]["video"]["url"] == "https://example.com/clip"
    assert "correct_answer" not in json.dumps(attempt["questions"])

    answers_url = f"/api/v1/attempts/{attempt['id']}/answers"
    bad = [
        ({"question_id": slider["id"], "answer": 50.5}, "expected a multiple of the step 1 from 0"),
        ({"question_id": slider["id"], "answer": 1000}, "expected a number from 0 to 100"),
        ({"question_id": ordering["id"], "answer": items[:3]}, "expected every item exactly once"),
        ({"question_id": ordering["id"], "answer": [items[0]] * 4}, "an item is listed twice"),
        ({"question_id": cloud["id"], "answer": "x" * 41}, "at most 40 characters"),
    ]
    for answer, message in bad:
        response = await client.put(answers_url, json={"answers": [answer]}, headers=student_headers)
        assert response.status == 422, await response.text()
        assert (await response.json())["errors"] == [{"field": "answers.0.answer", "message": message}]
    order = ordering["correct_answer"]
    chosen = [order[0], order[1], order[3], order[2]]  # two of four in place: half, with partial credit
    answers = [
        {"question_id": slider["id"], "answer": 93},  # 5 off: tolerance 2, zero at 12 → 0.7
        {"question_id": ordering["id"], "answer": chosen},
        {"question_id": poll["id"], "answer": poll["options"][1]["id"]},
        {"question_id": cloud["id"], "answer": "Sunny"},
    ]
    response = await client.put(answers_url, json={"answers": answers}, headers=student_headers)
    assert response.status == 200, await response.text()
    submit_url = f"/api/v1/attempts/{attempt['id']}/submit"
    response = await client.post(submit_url, json={"answers": []}, headers=student_headers)
    assert response.status == 200, await response.text()
    graded = await response.json()
    results = {r["question_id"]: r for r in graded["results"]}
    assert results[slider["id"]]["points_awarded"] == 1.4 and results[slider["id"]]["is_correct"] is False
    assert results[ordering["id"]]["points_awarded"] == 2
    assert results[poll["id"]]["is_correct"] is None and results[poll["id"]]["points"] == 0
    assert graded["score"] == 3.4 and graded["max_score"] == 6


async def test_export_and_import_round_trip_the_new_types(client: Client, db: Database) -> None:
    headers, course, quiz, url = await _quiz(client, db)
    image = await _upload(client, headers, public=True)
    bodies = [*NEW_QUESTIONS[:3], {**NEW_QUESTIONS[3], "image_file_id": image}]
    for body in bodies:
        assert (await client.post(url, json=body, headers=headers)).status == 201
    exported = await (await client.get(f"/api/v1/quizzes/{quiz['id']}/export", headers=headers)).json()
    other = await make_quiz(db, course_id=course["id"], is_published=False)
    form = FormData()
    form.add_field("file", json.dumps(exported).encode(), filename="quiz.json", content_type="application/json")
    response = await client.post(f"/api/v1/quizzes/{other['id']}/import", data=form, headers=headers)
    assert response.status == 201, await response.text()
    again = await (await client.get(f"/api/v1/quizzes/{other['id']}/export", headers=headers)).json()
    assert again["questions"] == exported["questions"]
    assert [q["question_type"] for q in exported["questions"]] == ["slider", "ordering", "poll", "word_cloud"]
    assert exported["questions"][0]["time_limit_seconds"] == 30
    assert exported["questions"][0]["settings"] == {**SLIDER, "step": 1.0}
    assert exported["questions"][2]["correct_answer"] is None
    assert exported["questions"][3]["video"]["start_seconds"] == 5
    assert exported["questions"][3]["image_file_id"] == image

    # Someone else cannot import the file as theirs.
    _, stranger = await signed_in(client, db, role="instructor")
    their_course = await make_quiz_course(db, instructor_id=(await _me(client, stranger))["id"])
    theirs = await make_quiz(db, course_id=their_course["id"], is_published=False)
    form = FormData()
    form.add_field("file", json.dumps(exported).encode(), filename="quiz.json", content_type="application/json")
    response = await client.post(f"/api/v1/quizzes/{theirs['id']}/import", data=form, headers=stranger)
    assert response.status == 422
    assert (await response.json())["errors"][0]["field"] == "image_file_id"


async def _me(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    return dict(await (await client.get("/api/v1/auth/me", headers=headers)).json())


async def test_a_kahoot_sheet_time_limit_is_stored(client: Client, db: Database) -> None:
    headers, _, quiz, _ = await _quiz(client, db)
    sheet = "Question,Answer 1,Answer 2,Time limit,Correct answer(s)\nCapital of France?,Lyon,Paris,45,2\n"
    form = FormData()
    form.add_field("file", sheet.encode(), filename="quiz.csv", content_type="text/csv")
    response = await client.post(f"/api/v1/quizzes/{quiz['id']}/import", data=form, headers=headers)
    assert response.status == 201, await response.text()
    assert (await response.json())["questions"][0]["time_limit_seconds"] == 45


async def test_the_openapi_document_describes_the_new_types(client: Client, db: Database) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    create = schemas["QuizQuestionCreate"]["properties"]
    assert "slider" in create["question_type"]["description"] and "word_cloud" in create["question_type"]["description"]
    assert "zero_at" in create["settings"]["description"] and "partial_credit" in create["settings"]["description"]
    assert "is_public" in create["image_file_id"]["description"]
    assert "instead of the session" in create["time_limit_seconds"]["description"]
    assert set(schemas["QuestionVideo"]["properties"]) == {"url", "start_seconds", "end_seconds"}
    assert "null" in json.dumps(schemas["AttemptQuestionResult"]["properties"]["is_correct"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(answer=JSON)
def test_the_live_answer_payload_takes_text_ids_or_finite_numbers_only(answer: Any) -> None:
    try:
        parsed = SubmitAnswer.model_validate({"question_index": 0, "answer": answer})
    except ValidationError:
        return
    value = parsed.answer
    if isinstance(value, float):
        assert math.isfinite(value) and not isinstance(answer, bool)
    elif isinstance(value, list):
        assert all(isinstance(v, str) for v in value) and len(value) <= 100
    else:
        assert isinstance(value, str) and len(value) <= 2000
