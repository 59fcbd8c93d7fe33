"""Property tests: the streak against a brute count, the window's query model against any text, the rounding."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lms.analytics.students import streak
from lms.analytics.window import MAX_DAYS, WindowQuery, known_zones
from lms.enrollments.queries import percent, rounded_mean

pytestmark = pytest.mark.no_services
TODAY = date(2026, 6, 15)


def brute_streaks(days: set[date], today: date) -> tuple[int, int]:
    def run_ending(day: date) -> int:
        n = 0
        while day - timedelta(days=n) in days:
            n += 1
        return n

    current = max(run_ending(today), run_ending(today - timedelta(days=1)))
    return current, max((run_ending(d) for d in days), default=0)


@given(st.sets(st.integers(min_value=0, max_value=60), max_size=40))
def test_streak_matches_a_brute_count(offsets: set[int]) -> None:
    days = {TODAY - timedelta(days=o) for o in offsets}
    found = streak(sorted(days, reverse=True), TODAY)
    assert (found["current_days"], found["longest_days"]) == brute_streaks(days, TODAY)
    assert found["last_active_date"] == (max(days) if days else None)


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=10**12))
def test_integer_percentages_and_means_round_as_exact_decimals_do(part: int, whole: int) -> None:
    # PostgreSQL's round(): half away from zero, here on non-negative values, i.e. half up.
    exact = (Decimal(part) * 100 / Decimal(whole)) if whole else Decimal(0)
    expected = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    found = percent(part, whole)
    assert found == expected and str(found) == str(expected)
    mean = (Decimal(part) / Decimal(whole)).quantize(Decimal(1), rounding=ROUND_HALF_UP) if whole else 0
    assert rounded_mean(part, whole) == int(mean)


@settings(max_examples=300)
@given(st.text(max_size=80), st.one_of(st.none(), st.dates()), st.one_of(st.none(), st.dates()))
def test_the_window_takes_known_zones_and_ordered_days_only(tz: str, first: date | None, last: date | None) -> None:
    data = {"tz": tz, "from": first, "to": last}
    try:
        query = WindowQuery.model_validate(data)
    except ValidationError:
        ordered = first is None or last is None or (first <= last and (last - first).days < MAX_DAYS)
        assert tz not in known_zones() or not ordered
        return
    assert query.tz in known_zones()
    if first is not None and last is not None:
        window = query.window()
        assert window.days[0] == first and window.days[-1] == last and len(window.days) <= MAX_DAYS


@given(st.sampled_from(sorted(known_zones())))
def test_every_known_zone_is_accepted(tz: str) -> None:
    assert WindowQuery.model_validate({"tz": tz}).tz == tz


@pytest.mark.usefixtures("db")
async def test_postgresql_knows_every_zone_the_api_accepts(db: Any) -> None:
    async with db.connection() as conn:
        known = {r["name"] for r in await conn.fetch_all("SELECT name FROM pg_timezone_names")}
    assert sorted(known_zones() - known) == []
