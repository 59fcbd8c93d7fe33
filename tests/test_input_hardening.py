"""Input no column can hold is a 422 naming the field, never a 500 (issue 10, item 2 and the text rules)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import annotated_types as at
import pytest
from pydantic import BaseModel
from sqlalchemy import BigInteger, Integer, Numeric, SmallInteger, String

from lms.api.endpoint import operation_of
from lms.api.pagination import PageQuery
from lms.app import create_app
from lms.config import load_config
from lms.db import Database
from lms.tables import metadata
from tests.builders import make_course, make_enrollment, make_lesson, signed_in
from tests.schema_walk import input_models, leaves

PROBLEM = "application/problem+json"
COURSES = "/api/v1/courses"


async def problem(response: Any, status: int = 422) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json(content_type=PROBLEM)
    return body


def fields_of(body: dict[str, Any]) -> list[str]:
    return [e["field"] for e in body.get("errors", [])]


# -- NUL and lone surrogates, in every kind of input ----------------------------


async def test_nul_in_a_json_field_is_a_422_naming_it(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    body = await problem(await client.post(COURSES, json={"title": "a\u0000b"}, headers=headers))
    assert fields_of(body) == ["title"] and "NUL" in body["errors"][0]["message"]


async def test_nul_inside_jsonb_metadata_is_a_422_naming_the_path(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    body = await problem(
        await client.post(COURSES, json={"title": "x", "metadata": {"tags": ["ok", "b\u0000d"]}}, headers=headers)
    )
    assert fields_of(body) == ["metadata.tags.1"]
    body = await problem(await client.post(COURSES, json={"title": "x", "metadata": {"k\u0000": 1}}, headers=headers))
    assert fields_of(body) == ["metadata.k\u0000"]


async def test_a_lone_surrogate_is_a_422(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    raw = b'{"title": "x", "description": "\\ud800"}'
    response = await client.post(COURSES, data=raw, headers=headers | {"Content-Type": "application/json"})
    assert fields_of(await problem(response)) == ["description"]


async def test_nul_in_a_query_string_is_a_422_naming_the_parameter(client: Any) -> None:
    body = await problem(await client.get(f"{COURSES}?q=py%00thon"))
    assert fields_of(body) == ["q"]


async def test_nul_in_a_token_form_field_is_a_422(client: Any) -> None:
    response = await client.post(
        "/api/v1/auth/token",
        data="username=a%00b%40example.com&password=whatever-it-is",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert fields_of(await problem(response)) == ["username"]


async def test_nul_in_a_path_segment_names_nothing(client: Any) -> None:
    await problem(await client.get(f"{COURSES}/py%00thon"), 404)
    await problem(await client.get("/api/v1/live-sessions/12%0034"), 404)


# -- numbers: pagination, columns, the decoder ------------------------------------


def paginated_lists(app: Any) -> list[str]:
    paths = []
    for route in app.router.routes():
        op = operation_of(route.handler)
        if route.method == "GET" and op is not None and op.query is not None and issubclass(op.query, PageQuery):
            paths.append(route.resource.canonical)
    return paths


async def test_offset_and_limit_beyond_the_bounds_are_422_on_every_list(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="admin")
    paths = paginated_lists(client.app)
    assert len(paths) >= 8
    for path in paths:
        url = path.replace("{id}", "00000000-0000-0000-0000-000000000000").replace(
            "{course_id}", "00000000-0000-0000-0000-000000000000"
        )
        for query, field in ((f"offset={2**63}", "offset"), ("offset=1000001", "offset"), (f"limit={10**30}", "limit")):
            body = await problem(await client.get(f"{url}?{query}", headers=headers))
            assert fields_of(body) == [field], (path, query)


async def test_a_position_past_a_32_bit_column_is_422(client: Any, db: Database) -> None:
    student, headers = await signed_in(client, db)
    owner, _ = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, is_published=True)
    lesson = await make_lesson(db, course, content_type="video", duration_seconds=None)
    enrollment = await make_enrollment(db, student, course)
    url = f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson['id']}/progress"
    body = await problem(await client.put(url, json={"last_position_seconds": 2**31}, headers=headers))
    assert fields_of(body) == ["last_position_seconds"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"title": ' + b"[" * 2000 + b"]" * 2000 + b"}", "nested"),
        (b'{"title": "x", "metadata": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", "nested"),
        (b'{"title": "x", "estimated_duration_minutes": ' + b"9" * 5000 + b"}", "too large"),
        (b'{"title": "x", "metadata": {"a": 1e999}}', "not finite"),
        (b'{"title": "x", "metadata": {"a": NaN}}', "not finite"),
        (b'{"title": "x", "metadata": {"a": -Infinity}}', "not finite"),
    ],
    ids=["2000-deep", "40-deep-metadata", "5000-digits", "1e999", "NaN", "Infinity"],
)
async def test_pathological_json_is_refused_at_the_decoder(client: Any, db: Database, raw: bytes, message: str) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    response = await client.post(COURSES, data=raw, headers=headers | {"Content-Type": "application/json"})
    body = await problem(response)
    assert message in body["errors"][0]["message"]
    assert "sys.set_int_max_str_digits" not in str(body)


async def test_patching_metadata_to_null_is_422_and_an_empty_object_clears_it(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    course = await make_course(db, owner, metadata={"level": 2})
    url = f"{COURSES}/{course['id']}"
    assert fields_of(await problem(await client.patch(url, json={"metadata": None}, headers=headers))) == ["metadata"]
    cleared = await client.patch(url, json={"metadata": {}}, headers=headers)
    assert cleared.status == 200 and (await cleared.json())["metadata"] == {}


# -- every schema bound fits its column -------------------------------------------

INT_RANGE = {SmallInteger: 2**15 - 1, Integer: 2**31 - 1, BigInteger: 2**63 - 1}
# Input fields whose column has another name ("Model.field" first, then the field's name);
# None: the value is not stored in a column of its own (a JSONB document holds it).
COLUMN_OF: dict[str, str | None] = {
    "order": "position",
    "text": "question_text",
    "amount": "price_amount",
    "currency": "price_currency",
    "RefundIn.reason": None,
    "RevokeIn.reason": "revocation_reason",
}


def columns_named(model: type[BaseModel], name: str) -> list[Any]:
    column = COLUMN_OF.get(f"{model.__name__}.{name}", COLUMN_OF.get(name, name))
    return [c for t in metadata.tables.values() for c in t.c if c.name == column]


def problems_of_field(model: type[BaseModel], name: str, info: Any) -> list[str]:
    found = []
    where = f"{model.__name__}.{name}"
    for leaf, extra in leaves(info.annotation):
        constraints = (*info.metadata, *extra)
        columns = columns_named(model, name)
        if leaf is int:
            uppers = [c.le for c in constraints if isinstance(c, at.Le)] + [
                c.lt - 1 for c in constraints if isinstance(c, at.Lt)
            ]
            lowers = [c.ge for c in constraints if isinstance(c, at.Ge)] + [
                c.gt + 1 for c in constraints if isinstance(c, at.Gt)
            ]
            limit = min([INT_RANGE[type(c.type)] for c in columns if type(c.type) in INT_RANGE] or [2**31 - 1])
            if not uppers or min(uppers) > limit:
                found.append(f"{where}: at most {min(uppers, default=None)}, its column holds {limit}")
            if not lowers or max(lowers) < -limit - 1:
                found.append(f"{where}: at least {max(lowers, default=None)}, its column holds {-limit - 1}")
        elif leaf is Decimal:
            digits = [c.max_digits for c in constraints if getattr(c, "max_digits", None)]
            places = [c.decimal_places for c in constraints if getattr(c, "decimal_places", None) is not None]
            uppers = [c.le for c in constraints if isinstance(c, at.Le)] + [
                c.lt for c in constraints if isinstance(c, at.Lt)
            ]
            if not (digits and places) and not uppers:
                found.append(f"{where}: a decimal without max_digits/decimal_places or an upper bound")
            for column in columns:
                if not isinstance(column.type, Numeric) or column.type.precision is None:
                    continue
                p, s = column.type.precision, column.type.scale or 0
                if digits and places and (min(digits) - min(places) > p - s or min(places) > s):
                    found.append(f"{where}: {min(digits)},{min(places)} does not fit NUMERIC({p},{s})")
                if uppers and min(uppers) >= Decimal(10) ** (p - s):
                    found.append(f"{where}: up to {min(uppers)}, its column NUMERIC({p},{s}) holds less")
        elif isinstance(leaf, type) and issubclass(leaf, str):
            lengths = [c.max_length for c in constraints if isinstance(c, at.MaxLen)]
            patterned = any(getattr(c, "pattern", None) for c in constraints)
            if not lengths and not patterned:
                found.append(f"{where}: text without max_length")
            for column in columns:
                if (
                    isinstance(column.type, String)
                    and column.type.length
                    and lengths
                    and min(lengths) > column.type.length
                ):
                    found.append(f"{where}: {min(lengths)} characters, its column holds {column.type.length}")
    return found


@pytest.mark.no_services
def test_every_input_number_and_text_fits_its_column() -> None:
    models = input_models(create_app(load_config("test", environ={})))
    assert len(models) > 30
    found = [
        problem
        for model in sorted(models, key=lambda m: m.__name__)
        for name, info in model.model_fields.items()
        for problem in problems_of_field(model, name, info)
    ]
    assert not found, "\n".join(found)


# -- titles, names and slugs --------------------------------------------------------


async def test_titles_lose_invisible_formatting_and_refuse_control_characters(client: Any, db: Database) -> None:
    owner, headers = await signed_in(client, db, role="instructor")
    spoof = "Invoice\u202egnp.exe\u200b \u2066x\u2069"
    created = await client.post(COURSES, json={"title": spoof}, headers=headers)
    assert created.status == 201 and (await created.json())["title"] == "Invoicegnp.exe x"
    assert fields_of(await problem(await client.post(COURSES, json={"title": "bell\u0007"}, headers=headers))) == [
        "title"
    ]
    assert fields_of(await problem(await client.post(COURSES, json={"title": "\u200b\u202e "}, headers=headers))) == [
        "title"
    ]
    # Joiners that scripts need are kept (Persian "mi-khaham" with a zero-width non-joiner).
    persian = "می\u200cخواهم"
    kept = await client.post(COURSES, json={"title": persian}, headers=headers)
    assert (await kept.json())["title"] == persian
    course = await make_course(db, owner)
    quiz = await client.post(
        f"/api/v1/courses/{course['id']}/quizzes", json={"title": "\u202eQuiz\u202c one"}, headers=headers
    )
    assert quiz.status == 201 and (await quiz.json())["title"] == "Quiz one"
    renamed = await client.patch("/api/v1/users/me", json={"full_name": "Eve\u202e \u200bAdmin"}, headers=headers)
    assert renamed.status == 200 and (await renamed.json())["full_name"] == "Eve Admin"


async def test_slugs_transliterate_every_latin_letter_alike(client: Any, db: Database) -> None:
    _, headers = await signed_in(client, db, role="instructor")
    for title, slug in (("cøurse", "course"), ("Łódź Straße", "lodz-strasse"), ("Ærø", "aero"), ("日本語", "日本語")):
        response = await client.post(COURSES, json={"title": title}, headers=headers)
        assert (await response.json())["slug"] == slug


@pytest.mark.no_services
def test_nicknames_follow_the_same_text_rule() -> None:
    from realtime.live.edge import clean_nickname
    from realtime.live.errors import LiveError

    live = load_config("test", environ={}).live
    assert clean_nickname("  Sa\u200bm\u202e ", live) == "Sam"
    for raw, code in (
        ("bell\u0007", "invalid_payload"),
        ("\u2066\u2069", "invalid_payload"),
        ("ad\u200bmin", "nickname_not_allowed"),
    ):
        with pytest.raises(LiveError) as refused:
            clean_nickname(raw, live)
        assert refused.value.code == code
