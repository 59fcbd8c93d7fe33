"""Quiz import (Kahoot template xlsx/CSV, JSON) and export (JSON, live results xlsx)."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
import zipfile
from typing import Any

import aiohttp
import openpyxl
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from lms.db import Database
from lms.quizzes.transfer import (
    MAX_IMPORT_BYTES,
    MAX_QUESTIONS,
    MAX_UNZIPPED_BYTES,
    Formula,
    ImportInvalid,
    ImportTooLarge,
    parse_rows,
    read_sheet,
)
from tests.builders import make_question, make_quiz, make_quiz_course, make_quiz_enrollment, make_user, signed_in
from tests.test_live_rest import hosted_quiz, stored_game

Client = TestClient  # type: ignore[type-arg]

# The Kahoot template: instructions above, numbers in column A, the header in row 8.
KAHOOT_HEADER = [
    None, "Question - max 120 characters", "Answer 1 - max 75 characters", "Answer 2 - max 75 characters",
    "Answer 3 - max 75 characters", "Answer 4 - max 75 characters",
    "Time limit (sec) – 5, 10, 20, 30, 60, 90, 120, or 240 secs", "Correct answer(s) - choose at least one",
]  # fmt: skip
ROWS: list[list[Any]] = [
    [1, "Capital of France?", "Lyon", "Paris", "Nice", None, 20, 2],
    [2, "Prime numbers?", 2, 3, 4, 9, 30, "1,2"],
    [3, "The sky is blue.", "True", "False", None, None, 10, "1"],
]


def kahoot_xlsx(rows: list[list[Any]], *, header: list[Any] | None = None) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["Quiz template"])
    sheet.append(["Add questions, at least two answer alternatives, time limit and choose correct answers"])
    for _ in range(5):
        sheet.append([])
    sheet.append(header or KAHOOT_HEADER)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def csv_file(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Question", "Answer 1", "Answer 2", "Answer 3", "Answer 4", "Time limit", "Correct answers"])
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(data: bytes, filename: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    # A stream: aiohttp warns about (and the suite's -W error refuses) large bytes bodies held in memory.
    form.add_field("file", io.BytesIO(data), filename=filename, content_type="application/octet-stream")
    return form


async def owned_quiz(client: Client, db: Database) -> tuple[dict[str, str], Any, Any]:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner["id"])
    return headers, course, await make_quiz(db, course_id=course["id"])


async def questions_of(client: Client, quiz_id: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/quizzes/{quiz_id}/questions?limit=100", headers=headers)
    assert response.status == 200
    items: list[dict[str, Any]] = (await response.json())["items"]
    return items


def expected_questions() -> list[tuple[Any, ...]]:
    return [
        ("Capital of France?", "single_choice", ["Lyon", "Paris", "Nice"], [1]),
        ("Prime numbers?", "multiple_choice", ["2", "3", "4", "9"], [0, 1]),
        ("The sky is blue.", "true_false", ["True", "False"], True),
    ]


def summarise(questions: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for q in questions:
        texts = [o["text"] for o in q["options"]]
        ids = [o["id"] for o in q["options"]]
        answer = q["correct_answer"]
        if q["question_type"] == "single_choice":
            answer = [ids.index(answer)]
        elif q["question_type"] == "multiple_choice":
            answer = [ids.index(a) for a in answer]
        out.append((q["text"], q["question_type"], texts, answer))
    return out


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
async def test_a_kahoot_spreadsheet_imports_every_question(client: Client, db: Database, kind: str) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    data = kahoot_xlsx(ROWS) if kind == "xlsx" else csv_file([r[1:] for r in ROWS])
    url = f"/api/v1/quizzes/{quiz['id']}/import"
    response = await client.post(url, data=upload(data, f"quiz.{kind}"), headers=headers)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["imported"] == 3
    stored = await questions_of(client, quiz["id"], headers)
    assert summarise(stored) == expected_questions()
    assert [q["order"] for q in stored] == [0, 1, 2]
    # A second import appends after the existing questions.
    again = await client.post(url, data=upload(data, f"quiz.{kind}"), headers=headers)
    assert again.status == 201
    assert [q["order"] for q in await questions_of(client, quiz["id"], headers)] == [0, 1, 2, 3, 4, 5]


async def test_a_semicolon_csv_imports_too(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    data = b"Question;Answer 1;Answer 2;Time limit;Correct\r\nPi, roughly?;3,14;2,72;20;1\r\n"
    response = await client.post(f"/api/v1/quizzes/{quiz['id']}/import", data=upload(data, "q.csv"), headers=headers)
    assert response.status == 201, await response.text()
    assert summarise(await questions_of(client, quiz["id"], headers)) == [
        ("Pi, roughly?", "single_choice", ["3,14", "2,72"], [0])
    ]


async def test_concurrent_imports_each_get_their_own_positions(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    data = csv_file([r[1:] for r in ROWS])
    url = f"/api/v1/quizzes/{quiz['id']}/import"
    responses = await asyncio.gather(
        *(client.post(url, data=upload(data, f"q{i}.csv"), headers=headers) for i in range(3))
    )
    assert [r.status for r in responses] == [201, 201, 201]
    stored = await questions_of(client, quiz["id"], headers)
    assert sorted(q["order"] for q in stored) == list(range(9))
    # Each import's three questions are consecutive, in the file's order.
    texts = [q["text"] for q in sorted(stored, key=lambda q: q["order"])]
    assert texts == [r[1] for r in ROWS] * 3


async def test_the_preview_shows_row_errors_and_saves_nothing(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    rows = [
        *ROWS,
        [4, "No correct answer", "a", "b", None, None, 20, None],
        [5, "Wrong number", "a", "b", None, None, 20, "3"],
        [6, "Bad time", "a", "b", None, None, 3, "1"],
        [7, None, "a", "b", None, None, 20, "1"],
    ]
    url = f"/api/v1/quizzes/{quiz['id']}/import?dry_run=true"
    response = await client.post(url, data=upload(kahoot_xlsx(rows), "quiz.xlsx"), headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["valid"] is False
    assert [(q["row"], q["text"], q["time_limit_seconds"]) for q in body["questions"]] == [
        (9, "Capital of France?", 20), (10, "Prime numbers?", 30), (11, "The sky is blue.", 10),
    ]  # fmt: skip
    assert [(e["row"], e["column"]) for e in body["errors"]] == [(12, "H"), (13, "H"), (14, "G"), (15, "B")]
    assert await questions_of(client, quiz["id"], headers) == []
    # The same file imported for real: 422 naming every row and column, still nothing saved.
    refused = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/import", data=upload(kahoot_xlsx(rows), "quiz.xlsx"), headers=headers
    )
    assert refused.status == 422
    assert refused.content_type == "application/problem+json"
    problem = await refused.json()
    assert [(r["row"], r["column"]) for r in problem["rows"]] == [(12, "H"), (13, "H"), (14, "G"), (15, "B")]
    assert problem["errors"][0]["field"] == "row 12, column H"
    assert await questions_of(client, quiz["id"], headers) == []


async def test_a_bad_cell_is_422_naming_row_and_column(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    data = csv_file([["Capital?", "Lyon", "Paris", None, None, "twenty", "2"]])
    response = await client.post(f"/api/v1/quizzes/{quiz['id']}/import", data=upload(data, "q.csv"), headers=headers)
    assert response.status == 422
    problem = await response.json()
    assert problem["rows"] == [{"row": 2, "column": "F", "message": "a whole number of seconds from 5 to 600"}]


async def test_nul_and_formula_cells_are_row_errors(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    rows: list[list[Any]] = [
        [1, "Nul\x00here", "a", "b", None, None, 20, 1],
        [2, "Formula answer", "=1+1", "b", None, None, 20, 1],
        [3, "-5 + 3 = ?", "-2", "2", None, None, 20, 1],  # text that merely starts with a sign is fine
    ]
    workbook_bytes = kahoot_xlsx([rows[1], rows[2]])
    preview = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/import?dry_run=true", data=upload(workbook_bytes, "q.xlsx"), headers=headers
    )
    body = await preview.json()
    assert body["errors"] == [{"row": 9, "column": "C", "message": "a formula; type its value instead"}]
    assert [q["text"] for q in body["questions"]] == ["-5 + 3 = ?"]
    nul = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/import", data=upload(csv_file([rows[0][1:]]), "q.csv"), headers=headers
    )
    assert nul.status == 422
    assert (await nul.json())["rows"][0]["row"] == 2 and (await nul.json())["rows"][0]["column"] == "A"
    assert await questions_of(client, quiz["id"], headers) == []


async def test_unreadable_and_oversized_files_are_refused(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    url = f"/api/v1/quizzes/{quiz['id']}/import"
    huge = b"Question,Answer 1,Answer 2,Correct\n" + b"x" * (MAX_IMPORT_BYTES + 1)
    assert (await client.post(url, data=upload(huge, "q.csv"), headers=headers)).status == 413
    many = csv_file([[f"Q{i}?", "a", "b", None, None, 20, 1] for i in range(MAX_QUESTIONS + 1)])
    too_many = await client.post(url, data=upload(many, "q.csv"), headers=headers)
    assert too_many.status == 422
    assert str(MAX_QUESTIONS) in (await too_many.json())["detail"]
    not_xlsx = await client.post(url, data=upload(b"PK\x03\x04 not really", "q.xlsx"), headers=headers)
    assert not_xlsx.status == 422
    no_header = await client.post(url, data=upload(b"a,b,c\n1,2,3\n", "q.csv"), headers=headers)
    assert no_header.status == 422
    assert (await no_header.json())["rows"][0]["column"] == "A"
    latin1 = await client.post(url, data=upload("Question,é".encode("latin-1"), "q.csv"), headers=headers)
    assert latin1.status == 422
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/padding.xml", b"\0" * (MAX_UNZIPPED_BYTES + 1))
    assert len(bomb.getvalue()) < MAX_IMPORT_BYTES  # small on the wire, huge unpacked
    assert (await client.post(url, data=upload(bomb.getvalue(), "q.xlsx"), headers=headers)).status == 413
    assert (await client.post(url, data=upload(b"x", "q.pdf"), headers=headers)).status == 415
    assert (await client.post(url, json={}, headers=headers)).status == 415
    assert await questions_of(client, quiz["id"], headers) == []


async def test_students_and_strangers_cannot_import_or_export(client: Client, db: Database) -> None:
    owner = await make_user(db, role="instructor")
    course = await make_quiz_course(db, instructor_id=owner["id"])
    quiz = await make_quiz(db, course_id=course["id"])
    await make_question(db, quiz_id=quiz["id"])
    student, student_auth = await signed_in(client, db, role="student")
    await make_quiz_enrollment(db, student_id=student["id"], course_id=course["id"])
    _, other = await signed_in(client, db, role="instructor")
    _, admin = await signed_in(client, db, role="admin")
    data = csv_file([r[1:] for r in ROWS])
    imports = f"/api/v1/quizzes/{quiz['id']}/import"
    exports = f"/api/v1/quizzes/{quiz['id']}/export"
    assert (await client.post(imports, data=upload(data, "q.csv"))).status == 401
    assert (await client.post(imports, data=upload(data, "q.csv"), headers=student_auth)).status == 403
    # Another instructor does not see the quiz at all, as with the other quiz routes.
    assert (await client.post(imports, data=upload(data, "q.csv"), headers=other)).status == 404
    assert (await client.get(exports, headers=student_auth)).status == 403
    assert (await client.get(exports, headers=other)).status == 404
    assert (await client.get(f"/api/v1/quizzes/{uuid.uuid4()}/export", headers=admin)).status == 404
    assert (await client.post(imports, data=upload(data, "q.csv"), headers=admin)).status == 201
    assert (await client.get(exports, headers=admin)).status == 200
    assert len((await (await client.get(exports, headers=admin)).json())["questions"]) == 4


async def test_json_export_round_trips(client: Client, db: Database) -> None:
    headers, course, quiz = await owned_quiz(client, db)
    await make_question(db, quiz_id=quiz["id"], points=2, explanation="Paris is the capital.")
    await make_question(db, quiz_id=quiz["id"], question_type="multiple_choice")
    await make_question(db, quiz_id=quiz["id"], question_type="true_false", double_points=True)
    await make_question(db, quiz_id=quiz["id"], question_type="short_answer")
    first = await client.get(f"/api/v1/quizzes/{quiz['id']}/export", headers=headers)
    assert first.status == 200
    exported = await first.json()
    assert exported["format"] == "lms-quiz" and len(exported["questions"]) == 4
    assert exported["questions"][0]["points"] == 2.0
    assert [q["double_points"] for q in exported["questions"]] == [False, False, True, False]
    created = await client.post(f"/api/v1/courses/{course['id']}/quizzes", json=exported["quiz"], headers=headers)
    assert created.status == 201, await created.text()
    copy = await created.json()
    raw = (await first.read()) or b""
    imported = await client.post(f"/api/v1/quizzes/{copy['id']}/import", data=upload(raw, "quiz.json"), headers=headers)
    assert imported.status == 201, await imported.text()
    again = await (await client.get(f"/api/v1/quizzes/{copy['id']}/export", headers=headers)).json()
    assert again == exported


async def test_a_json_file_that_is_not_an_export_is_422(client: Client, db: Database) -> None:
    headers, _, quiz = await owned_quiz(client, db)
    url = f"/api/v1/quizzes/{quiz['id']}/import"
    for data in (b"{", b'{"format": "other"}', b'{"format": "lms-quiz", "version": 1, "questions": [{"text": 1}]}'):
        assert (await client.post(url, data=upload(data, "q.json"), headers=headers)).status == 422
    ungradable = (
        b'{"format": "lms-quiz", "version": 1, "questions": [{"text": "Q", "question_type": "single_choice",'
        b' "options": [{"text": "a"}, {"text": "b"}], "correct_answer": 7}]}'
    )
    preview = await client.post(f"{url}?dry_run=true", data=upload(ungradable, "q.json"), headers=headers)
    assert (await preview.json())["errors"][0]["column"] == "correct_answer"
    nul = b'{"format": "lms-quiz", "version": 1, "questions": [{"text": "Q\\u0000", "question_type": "true_false",'
    nul += b' "correct_answer": true}]}'
    assert (await client.post(url, data=upload(nul, "q.json"), headers=headers)).status == 422
    assert await questions_of(client, quiz["id"], headers) == []


async def test_live_results_xlsx_has_a_summary_and_a_sheet_per_question(client: Client, db: Database) -> None:
    teacher, auth = await signed_in(client, db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    game = await stored_game(db, quiz, teacher["id"])
    url = f"/api/v1/live-sessions/{game['session']['id']}/results.xlsx"
    response = await client.get(url, headers=auth)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    workbook = openpyxl.load_workbook(io.BytesIO(await response.read()))
    assert workbook.sheetnames == ["Summary", "Q1", "Q2"]
    summary = [list(r) for r in workbook["Summary"].iter_rows(values_only=True)]
    assert summary[0][:2] == ["quiz", quiz["title"]]
    assert summary[1][:2] == ["pin", "123456"]
    assert summary[5][:2] == ["questions_asked", 2]
    assert summary[8] == ["rank", "nickname", "user_id", "player_id", "score", "correct_count", "kicked"]
    assert summary[9] == [1, "Alice", str(game["student"]["id"]), game["alice"], 1700, 2, "false"]
    assert summary[10] == [2, "'=cmd()", None, game["bob"], 0, 0, "false"]
    first = [list(r) for r in workbook["Q1"].iter_rows(values_only=True)]
    assert first[0][:2] == ["question", "Question 0"]
    assert first[6] == ["nickname", "user_id", "player_id", "answer", "correct", "points", "response_time_ms"]
    assert first[7] == ["Alice", str(game["student"]["id"]), game["alice"], "b", "true", 900, 4000]
    assert first[8] == ["'=cmd()", None, game["bob"], "a", "false", 0, 5000]
    second = [list(r) for r in workbook["Q2"].iter_rows(values_only=True)]
    assert second[7] == ["Alice", str(game["student"]["id"]), game["alice"], "true", "true", 800, 8000]
    assert second[8] == ["'=cmd()", None, game["bob"], None, "false", 0, None]
    # No cell of the workbook is a formula.
    for sheet in workbook.worksheets:
        assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


async def test_live_results_xlsx_has_the_csv_access_rules(client: Client, db: Database) -> None:
    teacher = await make_user(db, role="instructor")
    quiz = await hosted_quiz(db, teacher["id"])
    game = await stored_game(db, quiz, teacher["id"])
    _, other = await signed_in(client, db, role="instructor")
    _, student = await signed_in(client, db, role="student")
    _, admin = await signed_in(client, db, role="admin")
    url = f"/api/v1/live-sessions/{game['session']['id']}/results.xlsx"
    assert (await client.get(url)).status == 401
    assert (await client.get(url, headers=student)).status == 403
    assert (await client.get(url, headers=other)).status == 404
    assert (await client.get(url, headers=admin)).status == 200


async def test_openapi_documents_import_and_export(client: Client) -> None:
    paths = (await (await client.get("/api/v1/openapi.json")).json())["paths"]
    assert "multipart/form-data" in paths["/api/v1/quizzes/{id}/import"]["post"]["requestBody"]["content"]
    assert "get" in paths["/api/v1/quizzes/{id}/export"]
    assert "get" in paths["/api/v1/live-sessions/{id}/results.xlsx"]


# -- the row parser ------------------------------------------------------------

HEADER = ["Question", "Answer 1", "Answer 2", "Answer 3", "Answer 4", "Time limit", "Correct", "Type"]
cells = st.one_of(
    st.none(), st.text(max_size=30), st.integers(), st.floats(), st.booleans(),
    st.sampled_from(["1", "1,3", "2;4", "²", "True", "False", "short_answer", "true_false", "=A1"]),
    st.text(max_size=5).map(Formula),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cells, max_size=10), max_size=12), st.booleans())
def test_the_row_parser_only_ever_refuses_clearly(rows: list[list[Any]], with_header: bool) -> None:
    numbered = list(enumerate(([HEADER] if with_header else []) + rows, start=1))
    try:
        parsed = parse_rows(numbered)
    except ImportInvalid as err:  # the one clear refusal: a message, and where when known
        message = err.message
        assert message
        return
    assert len(parsed.questions) + len(parsed.errors) <= len(rows)
    for error in parsed.errors:
        assert error.message and error.column.isalpha() and error.row >= 2


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["csv", "xlsx"]))
def test_reading_any_bytes_refuses_clearly_or_gives_rows(data: bytes, extension: str) -> None:
    try:
        rows = read_sheet(data, extension)
    except (ImportInvalid, ImportTooLarge) as err:
        message = str(err)
        assert message
        return
    assert all(number >= 1 and isinstance(cells, list) for number, cells in rows)
