"""The list shape every collection uses: ``{items, total, limit, offset}``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, Field

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
