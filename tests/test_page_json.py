"""The hottest lists written straight from their rows (lms/api/pagination.py: page_json) give the bytes their
models render for the same rows: the catalogue (``Page[CourseOut]``) and my courses (``Page[MyEnrollmentOut]``)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lms.api.pagination import Page, PageQuery, page, page_json
from lms.courses.schemas import CourseOut, course_page_json
from lms.enrollments.queries import nest
from lms.enrollments.schemas import MyEnrollmentOut
from lms.tables import DIFFICULTY_LEVELS, ENROLLMENT_STATUSES

# Currencies of every exponent ISO 4217 gives (0, 2, 3, 4).
CURRENCIES = ("JPY", "USD", "EGP", "KWD", "BHD", "CLF")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too: jsonb keeps any integer, orjson refuses those
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from([
        UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))
    ])
)  # fmt: skip
prices = st.one_of(
    st.tuples(st.none(), st.none()),
    st.tuples(st.decimals(min_value=0, max_value=10**15 - 1, places=4), st.sampled_from(CURRENCIES)),
)


@st.composite
def course_rows(draw: st.DrawFn) -> dict[str, Any]:
    amount, currency = draw(prices)
    return {
        "id": draw(st.uuids()),
        "title": draw(st.text(min_size=1)),
        "slug": draw(st.text(min_size=1)),
        "description": draw(st.none() | st.text()),
        "instructor_id": draw(st.uuids()),
        "category": draw(st.none() | st.text()),
        "difficulty_level": draw(st.none() | st.sampled_from(DIFFICULTY_LEVELS)),
        "is_published": draw(st.booleans()),
        "published_at": draw(st.none() | moments),
        "price_amount": amount,
        "price_currency": currency,
        "thumbnail_url": draw(st.none() | st.text()),
        "estimated_duration_minutes": draw(st.none() | st.integers(0, 1_000_000)),
        "metadata": draw(st.dictionaries(st.text(), json_values, max_size=5)),
        "rating_average": draw(st.none() | st.decimals(min_value=0, max_value=5, places=2)),
        "rating_count": draw(st.integers(0, 2**31 - 1)),
        "created_at": draw(moments),
        "updated_at": draw(moments),
    }


@st.composite
def my_enrollment_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row of ``list_student_enrollments``: every enrollment column, the course's labelled ``course__*``."""
    row = {
        "id": draw(st.uuids()),
        "student_id": draw(st.uuids()),
        "course_id": draw(st.uuids()),
        "status": draw(st.sampled_from(ENROLLMENT_STATUSES)),
        "progress_percentage": draw(st.decimals(min_value=0, max_value=100, places=2)),
        "completed_lessons_count": draw(st.integers(0, 2**31 - 1)),
        "total_lessons_count": draw(st.integers(0, 2**31 - 1)),
        "total_time_spent_seconds": draw(st.integers(0, 2**63 - 1)),
        "enrolled_at": draw(moments),
        "started_at": draw(st.none() | moments),
        "completed_at": draw(st.none() | moments),
        "last_accessed_at": draw(st.none() | moments),
        "certificate_issued_at": draw(st.none() | moments),
        "rating": draw(st.none() | st.integers(1, 5)),
        "review": draw(st.none() | st.text()),
        "reviewed_at": draw(st.none() | moments),
        "updated_at": draw(moments),  # a column the model does not show
        "course__id": draw(st.uuids()),
        "course__title": draw(st.text(min_size=1)),
        "course__slug": draw(st.text(min_size=1)),
        "course__thumbnail_url": draw(st.none() | st.text()),
        "course__instructor_id": draw(st.uuids()),
    }
    return row


def model_json(model: type[BaseModel], rows: list[dict[str, Any]], total: int, query: PageQuery) -> bytes:
    """The way every other response is rendered (lms/api/endpoint.py: render)."""
    adapter = Page[model]  # type: ignore[valid-type]
    return adapter.model_validate(page(rows, total, query), from_attributes=True).model_dump_json().encode()


pages = {"total": st.integers(0, 2**40), "offset": st.integers(0, 1_000_000)}


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(course_rows(), max_size=5), **pages)
def test_a_course_page_is_the_bytes_of_its_model(rows: list[dict[str, Any]], total: int, offset: int) -> None:
    query = PageQuery(limit=20, offset=offset)
    expected = model_json(CourseOut, copy.deepcopy(rows), total, query)
    assert course_page_json(rows, total, query) == expected


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(my_enrollment_rows(), max_size=5), **pages)
def test_a_page_of_my_courses_is_the_bytes_of_its_model(rows: list[dict[str, Any]], total: int, offset: int) -> None:
    query = PageQuery(limit=20, offset=offset)
    nested = [nest(row, "course") for row in rows]  # the model takes the course as an object
    assert page_json(rows, total, query, MyEnrollmentOut) == model_json(MyEnrollmentOut, nested, total, query)


NOW = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def a_course(**changes: Any) -> dict[str, Any]:
    return {
        "id": uuid.UUID(int=1), "title": "Python", "slug": "python", "description": None,
        "instructor_id": uuid.UUID(int=2), "category": None, "difficulty_level": "beginner", "is_published": True,
        "published_at": NOW, "price_amount": Decimal("12.5000"), "price_currency": "KWD", "thumbnail_url": None,
        "estimated_duration_minutes": None, "metadata": {"level": [1, 2.5, None]}, "rating_average": Decimal("4.50"),
        "rating_count": 2, "created_at": NOW, "updated_at": NOW, "search_vector": "'python':1",
    } | changes  # fmt: skip


def test_a_price_shows_with_its_currency_decimals_and_a_free_course_none() -> None:
    rows = [a_course(), a_course(id=uuid.UUID(int=3), price_amount=None, price_currency=None)]
    expected = model_json(CourseOut, copy.deepcopy(rows), 2, PageQuery())
    body = course_page_json(rows, 2, PageQuery())
    assert body == expected
    assert b'"price":{"amount":"12.500","currency":"KWD"},"is_free":false' in body
    assert b'"price":null,"is_free":true' in body
    assert b'"published_at":"2026-12-03T17:00:00Z"' in body
    assert b"search_vector" not in body  # only the model's fields


def test_what_orjson_refuses_takes_the_models_way() -> None:
    rows = [a_course(metadata={"big": 2**70, "small": -(2**64)})]  # jsonb keeps any integer
    expected = model_json(CourseOut, copy.deepcopy(rows), 1, PageQuery())
    body = course_page_json(rows, 1, PageQuery())
    assert body == expected
    assert b'"metadata":{"big":1180591620717411303424,"small":-18446744073709551616}' in body
