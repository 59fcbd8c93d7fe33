"""Every route, any body and query string: never a 5xx, every error a problem document (issue 10, item 2).

For each operation the app declares, hypothesis builds bodies and query
strings from the operation's own models (the fields it names, values of
their types near and past their bounds) mixed with hostile values (NUL,
lone surrogates, bidi overrides, huge and non-finite numbers, deep nesting,
wrong types) and whole-body garbage, and sends them as the course's owner,
an enrolled student, an admin, a stranger with a bad token, or nobody, to
real ids of a small world (a course with a lesson, a quiz with questions,
an enrollment, an attempt, a live session).
"""

from __future__ import annotations

import json
import os
import typing
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lms.api.endpoint import Operation, operation_of
from lms.app import create_app
from lms.config import load_config
from lms.db import Database
from tests.builders import (
    bearer,
    login,
    make_course,
    make_enrollment,
    make_lesson,
    make_question,
    make_quiz,
    make_user,
)
from tests.schema_walk import leaves

PROBLEM = "application/problem+json"
# Enough for CI (about a minute for every route); LMS_TEST_PROPERTY_EXAMPLES=500 digs deeper.
EXAMPLES_PER_ROUTE = int(os.environ.get("LMS_TEST_PROPERTY_EXAMPLES", "25"))


def operations() -> list[tuple[str, str, Operation]]:
    app = create_app(load_config("test", environ={}))
    found = []
    for route in app.router.routes():
        op = operation_of(route.handler)
        if op is not None and route.method != "HEAD":
            found.append((route.method, route.resource.canonical, op))
    return found


OPERATIONS = operations()

# -- values -----------------------------------------------------------------------

hostile_text = st.sampled_from(
    [
        "\u0000",
        "a\u0000b",
        "\ud800",
        "\u202egnp.exe",
        "\u200b",
        " ",
        "",
        "\u0007",
        "x" * 5000,
        "%00",
        "../..",
        "' OR 1=1 --",
    ]
) | st.text(max_size=30)
hostile_numbers = (
    st.sampled_from([2**31, 2**31 - 1, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30, 0, -1, 1e308, -0.0, 1.5, 1e-300])
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
)
json_leaves = st.none() | st.booleans() | hostile_numbers | hostile_text
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=10,
)


@dataclass
class World:
    ids: dict[str, str]
    tokens: dict[str, str | None]


def value_for(annotation: Any, world: World, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values of the field's own types (at and past their bounds), and anything else."""
    options: list[st.SearchStrategy[Any]] = []
    for leaf, _ in leaves(annotation):
        if typing.get_origin(leaf) is typing.Literal:
            options.append(st.sampled_from(typing.get_args(leaf)))
        elif leaf is bool:
            options.append(st.booleans())
        elif leaf is int:
            options.append(hostile_numbers)
        elif leaf is Decimal:
            options.append(hostile_numbers | st.sampled_from(["12.345", "1e5", "99999999999.99", "-0.01"]))
        elif leaf is uuid.UUID:
            options.append(st.sampled_from(list(world.ids.values())) | st.uuids().map(str))
        elif isinstance(leaf, type) and issubclass(leaf, BaseModel) and depth < 3:
            options.append(body_for(leaf, world, depth + 1))
        elif isinstance(leaf, type) and issubclass(leaf, str):
            options.append(hostile_text | st.emails())
    if typing.get_origin(annotation) is list or "list[" in str(annotation):
        inner = st.one_of(options) if options else json_values
        options.append(st.lists(inner, max_size=5))
    return st.one_of(*options, json_values) if options else json_values


def body_for(model: type[BaseModel], world: World, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    fields = {info.alias or name: value_for(info.annotation, world, depth) for name, info in model.model_fields.items()}
    return st.fixed_dictionaries({}, optional=fields) | st.fixed_dictionaries(
        {}, optional=fields | {"unexpected": json_values}
    )


def query_for(model: type[BaseModel]) -> st.SearchStrategy[dict[str, str]]:
    # Each value under 1,000 characters: a request line past 8,190 bytes is refused by aiohttp's
    # HTTP parser (400, text/plain) before any of our code runs.
    text = (hostile_text | hostile_numbers.map(str) | st.sampled_from(["true", "false", "-1", str(uuid.uuid4())])).map(
        lambda v: v[:1000]
    )
    return st.fixed_dictionaries({}, optional={info.alias or name: text for name, info in model.model_fields.items()})


def raw_bodies(op: Operation, world: World) -> st.SearchStrategy[tuple[bytes, str]]:
    """(bytes, content type) of whole bodies: the model's shape, or garbage."""
    garbage = st.sampled_from(
        [b"", b"{", b"[1,2]", b'"text"', b"\xff\xfe", b"null", b"[" * 3000, b'{"a": ' + b"9" * 5000 + b"}"]
    ) | st.binary(max_size=64)
    if op.body is None:
        shaped = st.just(b"")
    elif op.body_format == "form":
        shaped = body_for(op.body, world).map(
            lambda d: "&".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in d.items()).encode(
                "utf-8", "surrogatepass"
            )
        )
    else:
        shaped = body_for(op.body, world).map(lambda d: json.dumps(d).encode("utf-8", "surrogatepass"))
    if op.body_format == "form":
        types = ["application/x-www-form-urlencoded"] * 2 + ["multipart/form-data", "multipart/form-data; boundary=b"]
    else:
        types = ["application/json"] * 3 + ["application/merge-patch+json"]
    return st.tuples(shaped | garbage, st.sampled_from([*types, "text/plain"]))


def fill_path(path: str, world: World, junk: str | None) -> str:
    """Real ids in the path (by what the segment names), or one junk segment."""
    prefix_ids = {
        "/users/": "student",
        "/courses/": "course",
        "/lessons/": "lesson",
        "/enrollments/": "enrollment",
        "/quizzes/": "quiz",
        "/questions/": "question",
        "/attempts/": "attempt",
        "/live-sessions/": "live_session",
    }
    out = path
    for prefix, kind in prefix_ids.items():
        out = out.replace(prefix + "{id}", prefix + (junk or world.ids[kind]))
    return (
        out.replace("{course_id}", junk or world.ids["course"])
        .replace("{lesson_id}", world.ids["lesson"])
        .replace("{pin}", junk or world.ids["pin"])
    )


async def build_world(client: Any, db: Database) -> World:
    owner = await make_user(db, role="instructor")
    student = await make_user(db)
    admin = await make_user(db, role="admin")
    course = await make_course(db, owner, is_published=True)
    lesson = await make_lesson(db, course, content_type="video", duration_seconds=600)
    enrollment = await make_enrollment(db, student, course)
    quiz = await make_quiz(db, course_id=course["id"], time_limit_seconds=600)
    question = await make_question(db, quiz_id=quiz["id"])
    await make_question(db, quiz_id=quiz["id"], question_type="multiple_choice")
    tokens: dict[str, str | None] = {
        who: (await login(client, user["email"]))["access_token"]
        for who, user in (("owner", owner), ("student", student), ("admin", admin))
    }
    tokens |= {"nobody": None, "bad-token": "not.a.token"}
    attempt = await client.post(f"/api/v1/quizzes/{quiz['id']}/attempts", headers=bearer(tokens["student"] or ""))
    assert attempt.status == 201, await attempt.text()
    session = await client.post(
        f"/api/v1/quizzes/{quiz['id']}/live-sessions", json={}, headers=bearer(tokens["owner"] or "")
    )
    assert session.status == 201, await session.text()
    live = await session.json()
    ids = {
        "owner": str(owner["id"]), "student": str(student["id"]), "course": str(course["id"]),
        "lesson": str(lesson["id"]), "enrollment": str(enrollment["id"]), "quiz": str(quiz["id"]),
        "question": str(question["id"]), "attempt": (await attempt.json())["id"], "live_session": live["id"],
        "pin": live["pin"],
    }  # fmt: skip
    return World(ids, tokens)


@pytest.fixture
async def world(client: Any, db: Database) -> World:
    return await build_world(client, db)


def request_for(op: Operation, world: World) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "who": st.sampled_from(list(world.tokens)),
            "body": raw_bodies(op, world),
            "query": query_for(op.query) if op.query is not None else st.just({}),
            "junk": st.none() | st.none() | st.sampled_from(["%00", "x" * 300, "0", "-1", "%E2%80%AE", "null"]),
        }
    )


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
@settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(data=st.data())
async def test_no_input_gets_a_5xx_and_every_error_is_a_problem(
    client: Any, world: World, method: str, path: str, op: Operation, data: st.DataObject
) -> None:
    request = data.draw(request_for(op, world))
    token = world.tokens[request["who"]]
    raw, content_type = request["body"]
    headers = {"Content-Type": content_type} | (bearer(token) if token else {})
    url = fill_path(path, world, request["junk"])
    response = await client.request(method, url, params=request["query"], data=raw or None, headers=headers)
    text = await response.text(errors="replace")
    assert response.status < 500, (method, url, request, response.status, text)
    if response.status >= 400:
        assert response.content_type == PROBLEM, (method, url, response.status, text)
