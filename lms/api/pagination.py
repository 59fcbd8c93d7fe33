"""The list shape every collection uses: ``{items, total, limit, offset}``."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

import orjson
from pydantic import BaseModel, Field, TypeAdapter

T = TypeVar("T")


# Deeper than any list is paged by hand; past it, narrow the list with its filters.
MAX_OFFSET = 1_000_000


class PageQuery(BaseModel):
    """``?limit=&offset=`` of every list (bounded: OFFSET is a bigint, and deep pages are slow)."""

    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Paged(Protocol):
    """Any query model with paging fields (PageQuery or one that adds filters)."""

    limit: int
    offset: int


def page(items: Sequence[Any], total: int, query: Paged) -> dict[str, Any]:
    """The response body of a list endpoint."""
    return {"items": list(items), "total": total, "limit": query.limit, "offset": query.offset}


def page_json(rows: Sequence[Mapping[str, Any]], total: int, query: Paged, model: type[BaseModel]) -> bytes:
    """The JSON of ``Page[model]`` for database rows, without validating the rows into models first.

    For the hottest lists (the catalogue, my courses): validating a page of
    trusted rows into models only to dump them again was a fifth of such a
    request's CPU (py-spy, bench/learning.py). Here each row is cut to the
    model's fields in the model's order (nested models likewise) and written
    by orjson. That is the model's output only for a model whose fields show
    the row's values as they are: no validator, serializer or alias that
    changes one (shape such values first, as ``course_page_json`` does the
    price). A nested model's fields come from the row's columns labelled
    ``{field}__{name}`` (``course__title``: a joined table's, as the queries
    label them). Each use has a property test that holds it to the model's bytes.
    What orjson refuses (an integer past 64 bits in a JSON column) takes the
    model's way.
    """
    body = page([_shown(model, row) for row in rows], total, query)
    try:
        return orjson.dumps(body, default=_decimal, option=orjson.OPT_UTC_Z)
    except orjson.JSONEncodeError:
        adapter = _page_adapter(model)
        return adapter.dump_json(adapter.validate_python(body, from_attributes=True))


def _shown(model: type[BaseModel], row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    return {
        name: row[prefix + name] if nested is None else _shown(nested, row, f"{prefix}{name}__")
        for name, nested in _fields(model)
    }


@functools.cache
def _fields(model: type[BaseModel]) -> tuple[tuple[str, type[BaseModel] | None], ...]:
    """The model's fields in order, each with its model when it is one (a nested object)."""
    return tuple(
        (name, field.annotation if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
         else None)
        for name, field in model.model_fields.items()
    )  # fmt: skip


@functools.cache
def _page_adapter(model: type[BaseModel]) -> TypeAdapter[Any]:
    return TypeAdapter(Page[model])  # type: ignore[valid-type]


def _decimal(value: Any) -> str:
    """orjson's fallback: a Decimal as pydantic writes it; anything else is refused (then the model's way)."""
    if type(value) is Decimal:
        return str(value)
    raise TypeError(type(value).__name__)
