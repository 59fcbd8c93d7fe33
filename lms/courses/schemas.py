"""Courses and lessons as the API takes and shows them."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from lms.api.pagination import Paged, PageQuery, page_json
from lms.money import Money, money
from lms.tables import ContentType, Difficulty
from lms.text import display_text


def _clean_title(value: str) -> str:
    return display_text(value)


def _small_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is not None and len(str(value)) > 10_000:
        raise ValueError("must be under 10 kB")
    return value


class CourseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    difficulty_level: Difficulty | None = None
    price: Money | None = Field(default=None, description="Absent, null or a zero amount: a free course.")
    thumbnail_url: str | None = Field(default=None, max_length=1000)
    estimated_duration_minutes: int | None = Field(default=None, ge=0, le=1_000_000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    _title = field_validator("title")(_clean_title)
    _metadata = field_validator("metadata")(_small_metadata)


class CourseUpdate(BaseModel):
    """Only the fields sent change; ``null`` clears an optional field. The slug never changes."""

    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=20_000)
    category: str | None = Field(default=None, min_length=1, max_length=100)
    difficulty_level: Difficulty | None = None
    price: Money | None = None
    thumbnail_url: str | None = Field(default=None, max_length=1000)
    estimated_duration_minutes: int | None = Field(default=None, ge=0, le=1_000_000)
    metadata: dict[str, Any] | None = Field(default=None, description="Replaces the metadata; `{}` clears it.")

    @field_validator("title")
    @classmethod
    def title_not_blank(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("a course needs a title")
        return _clean_title(value)

    @field_validator("metadata")
    @classmethod
    def metadata_not_null(cls, value: dict[str, Any] | None) -> dict[str, Any]:
        if value is None:
            raise ValueError("must be an object (send {} to clear it), not null")
        return value

    _metadata = field_validator("metadata")(_small_metadata)


def price_columns(price: Money | None) -> dict[str, Any]:
    """A free course stores no price; a paid one the amount beside its currency."""
    if price is None or price.amount == 0:
        return {"price_amount": None, "price_currency": None}
    return {"price_amount": price.amount, "price_currency": price.currency}


class CourseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    title: str
    slug: str
    description: str | None
    instructor_id: uuid.UUID
    category: str | None
    difficulty_level: Difficulty | None
    is_published: bool
    published_at: datetime | None
    price: Money | None
    is_free: bool
    thumbnail_url: str | None
    estimated_duration_minutes: int | None
    metadata: dict[str, Any]
    rating_average: Decimal | None
    rating_count: int
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def from_row(cls, data: Any) -> Any:
        if isinstance(data, dict) and "price_amount" in data:
            data = data | _priced(data)
        return data


def _priced(row: dict[str, Any]) -> dict[str, Any]:
    """A stored price as the API shows it: the money object, or null and ``is_free``."""
    price = money(row["price_amount"], row["price_currency"])
    return {"price": price, "is_free": price is None}


def course_page_json(rows: list[dict[str, Any]], total: int, query: Paged) -> bytes:
    """``Page[CourseOut]`` of course rows (priced in place), written without validating them (see page_json)."""
    for row in rows:  # the query's own rows: priced in place, not copied
        row.update(_priced(row))
    return page_json(rows, total, query, CourseOut)


class CourseListQuery(PageQuery):
    category: str | None = Field(default=None, max_length=100)
    difficulty_level: Difficulty | None = None
    instructor_id: uuid.UUID | None = None
    q: str | None = Field(default=None, max_length=200, description="Full-text search over title and description.")


class CourseDeleteQuery(BaseModel):
    force: bool = Field(default=False, description="Admins only: delete although students are enrolled.")


FILE_ID_DOC = "An uploaded file (video or document) of yours; whoever may see the lesson's content may download it."


class LessonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    content_type: ContentType
    content: str | None = Field(default=None, max_length=200_000)
    video_url: str | None = Field(default=None, max_length=1000)
    file_id: uuid.UUID | None = Field(default=None, description=FILE_ID_DOC)
    duration_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    is_free: bool = False
    is_published: bool = Field(
        default=True, description="Published with the course; false keeps it a draft even in a published course."
    )
    order: int | None = Field(default=None, ge=1, le=100_000, description="1-based place in the course; absent: last.")

    _title = field_validator("title")(_clean_title)


class LessonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=200)
    content_type: ContentType | None = None
    content: str | None = Field(default=None, max_length=200_000)
    video_url: str | None = Field(default=None, max_length=1000)
    file_id: uuid.UUID | None = Field(default=None, description=FILE_ID_DOC)
    duration_seconds: int | None = Field(default=None, ge=0, le=7 * 24 * 3600)
    is_free: bool | None = None
    is_published: bool | None = None
    order: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def required_stay_set(self) -> LessonUpdate:
        for name in ("title", "content_type", "is_free", "is_published", "order"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        if self.title is not None:
            self.title = _clean_title(self.title)
        return self


class LessonOut(BaseModel):
    """A lesson; ``content``, ``video_url`` and ``file_id`` are null and ``locked`` true for callers without access."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    course_id: uuid.UUID
    title: str
    slug: str
    content_type: ContentType
    content: str | None
    video_url: str | None
    file_id: uuid.UUID | None = Field(default=None, description="Download: `GET /api/v1/files/{file_id}/download`.")
    duration_seconds: int | None
    order: int = Field(validation_alias=AliasChoices("order", "position"))
    is_free: bool
    is_published: bool
    locked: bool = False
    created_at: datetime
    updated_at: datetime


class LessonOrder(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lesson_ids: list[uuid.UUID] = Field(min_length=1, max_length=1000, description="Every lesson of the course, once.")
