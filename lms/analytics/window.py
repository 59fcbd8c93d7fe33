"""The time zone and the days that every analytics series is reported in.

``?tz=`` names an IANA zone (UTC by default); ``?from=`` and ``?to=`` are
local days in that zone, both included (by default the last 30 days, today
included). Day boundaries are computed by PostgreSQL from the zone name, so
that the days counted and the instants searched follow the same rules.
"""

from __future__ import annotations

import functools
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg2.errors
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import DateTime, String, bindparam, func

from lms.api.problems import ValidationFailed

DEFAULT_DAYS = 30
MAX_DAYS = 366


@functools.cache
def known_zones() -> frozenset[str]:
    """The IANA names this machine knows (read once: scanning the tz database is slow)."""
    # "localtime" is this machine's own zone file, not a name PostgreSQL (or a client elsewhere) knows.
    return frozenset((zoneinfo.available_timezones() | {"UTC"}) - {"localtime", "posixrules"})


class WindowQuery(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    tz: str = Field(default="UTC", max_length=64, description="IANA time zone of the days, e.g. `Europe/Paris`.")
    from_: date | None = Field(default=None, alias="from", description="First local day; default 29 days before `to`.")
    to: date | None = Field(default=None, description="Last local day (included); default today in `tz`.")

    @field_validator("tz")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        if value not in known_zones():
            raise ValueError("not an IANA time zone name (e.g. UTC, Europe/Paris, America/New_York)")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> WindowQuery:
        if self.from_ is not None and self.to is not None:
            if self.from_ > self.to:
                raise ValueError("`from` must not be after `to`")
            if (self.to - self.from_).days >= MAX_DAYS:
                raise ValueError(f"at most {MAX_DAYS} days at a time")
        return self

    def window(self) -> Window:
        last = self.to or datetime.now(UTC).astimezone(zoneinfo.ZoneInfo(self.tz)).date()
        first = self.from_ or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last or (last - first).days >= MAX_DAYS:  # only one end given
            raise ValidationFailed(
                "The query string is not valid.",
                errors=[{"field": "from", "message": f"`from` must be before `to`, at most {MAX_DAYS} days apart"}],
            )
        return Window(self.tz, first, last)


# The window in SQL, as bind parameters: statements that use them are built
# once (building a Core statement costs more than running these), and each
# request passes Window.params().
TZ = bindparam("tz", type_=String)
START = func.timezone(TZ, bindparam("window_start", type_=DateTime(timezone=False)))
END = func.timezone(TZ, bindparam("window_end", type_=DateTime(timezone=False)))


def local_day(column: Any) -> Any:
    """The local day (in the window's zone) of a timestamptz column."""
    return func.date(func.timezone(TZ, column))


class Window:
    """Local days ``first``..``last`` in zone ``tz``; :data:`START` and :data:`END` are their instants."""

    def __init__(self, tz: str, first: date, last: date) -> None:
        self.tz, self.first, self.last = tz, first, last

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def params(self) -> dict[str, Any]:
        return {
            "tz": self.tz,
            "window_start": datetime.combine(self.first, time.min),
            "window_end": datetime.combine(self.last + timedelta(days=1), time.min),
        }

    def describe(self) -> dict[str, Any]:
        return {"timezone": self.tz, "from": self.first, "to": self.last}


@contextmanager
def zone_known_to_the_database(tz: str) -> Iterator[None]:
    """A zone Python knows but this PostgreSQL does not (tz databases of other ages): 422, not 500."""
    try:
        yield
    except psycopg2.errors.InvalidParameterValue as err:
        raise ValidationFailed(
            "The query string is not valid.", errors=[{"field": "tz", "message": f"{tz!r} is unknown to the database"}]
        ) from err
