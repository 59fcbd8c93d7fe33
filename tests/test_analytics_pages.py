"""The analytics charts in headless Chromium: the course dashboard, /admin and /me.

Each page is signed into through its own form; the charts must be drawn
(Chart.js canvases with painted pixels and the expected number of bars), and
on the dashboard a progress report sent to the other instance must change the
funnel without a reload. Screenshots go to .lms/test-artifacts/screenshots/
(or $LMS_TEST_ARTIFACTS/screenshots/); their paths are printed.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from lms.db import Database
from lms.tables import lessons, quiz_attempts, study_activity
from tests.browser import ChromiumPage
from tests.builders import PASSWORD, login, make_course, make_enrollment, make_quiz, make_user
from tests.conftest import Instance
from tests.node import ROOT, needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]

ARTIFACTS = Path(os.environ.get("LMS_TEST_ARTIFACTS", ROOT / ".lms" / "test-artifacts")) / "screenshots"

# What a chart shows: bars drawn per dataset, the values, and how many pixels are painted.
CHART = """(() => {
  const canvas = document.getElementById(%s);
  const chart = canvas && window.Chart && Chart.getChart(canvas);
  if (!chart || !canvas.width || !canvas.height) return null;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let painted = 0;
  for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
  return {
    bars: chart.data.datasets.map((d, i) => chart.getDatasetMeta(i).data.length),
    values: chart.data.datasets.map((d) => d.data),
    painted: painted,
  };
})()"""


@pytest.fixture
async def page() -> AsyncIterator[ChromiumPage]:
    browser = ChromiumPage()
    yield browser
    browser.kill()


async def chart(page: ChromiumPage, canvas_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = await page.wait_for(CHART % json.dumps(canvas_id))
    assert shown["painted"] > 500, (canvas_id, shown)  # axes, labels and bars, not a blank canvas
    return shown


def shows(canvas_id: str, condition: str) -> str:
    """An expression that is true once the chart ``c`` meets ``condition``."""
    return "(() => { const c = " + CHART % json.dumps(canvas_id) + "; return !!c && (" + condition + "); })()"


async def screenshot(page: ChromiumPage, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(str(path))
    assert path.stat().st_size > 10_000
    print(f"screenshot: {path}")
    return path


async def sign_in_on_page(page: ChromiumPage, url: str, email: str) -> None:
    await page.goto(url)
    await page.fill("#signin input[name=email]", email)
    await page.fill("#signin input[name=password]", PASSWORD)
    await page.click("#signin button[type=submit]")


async def first_lessons(db: Database, course_id: uuid.UUID) -> list[uuid.UUID]:
    async with db.connection() as conn:
        rows = await conn.fetch_all(
            select(lessons.c.id).where(lessons.c.course_id == course_id).order_by(lessons.c.position)
        )
    return [r["id"] for r in rows]


async def graded(db: Database, enrollment: Any, quiz: Any, number: int, percentage: int) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            insert(quiz_attempts).values(
                enrollment_id=enrollment["id"], quiz_id=quiz["id"], student_id=enrollment["student_id"],
                attempt_number=number, status="graded", percentage=percentage, is_passed=percentage >= 70,
                graded_at=datetime.now(UTC),
            )
        )  # fmt: skip


async def put_progress(instance: Instance, student: Any, enrollment: Any, lesson_id: uuid.UUID) -> None:
    token = (await login(instance.http, student["email"]))["access_token"]
    response = await instance.http.put(
        f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson_id}/progress",
        json={"time_spent_seconds": 120, "completion_percentage": 100},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status == 200, await response.text()


async def test_dashboard_charts_draw_and_the_funnel_follows_progress_live(
    instances: list[Instance], db: Database, page: ChromiumPage
) -> None:
    a, b = instances
    instructor = await make_user(db, role="instructor", full_name="Ada Teacher")
    course = await make_course(db, instructor, is_published=True, lessons=3, title="Charts course")
    ann, ben = await make_user(db, full_name="Ann"), await make_user(db, full_name="Ben")
    ann_enrollment = await make_enrollment(db, ann, course)
    ben_enrollment = await make_enrollment(db, ben, course)
    l1, l2, _ = await first_lessons(db, course["id"])
    await put_progress(b, ann, ann_enrollment, l1)
    quiz = await make_quiz(db, course_id=course["id"], title="Quiz one")
    await graded(db, ann_enrollment, quiz, 1, 85)
    await graded(db, ben_enrollment, quiz, 1, 40)

    await sign_in_on_page(page, f"{a.url}/dashboard/courses/{course['id']}", instructor["email"])
    funnel = await chart(page, "chart-funnel")
    assert funnel["bars"] == [3] and funnel["values"] == [[50, 0, 0]]  # Ann of two students did lesson 1
    progress = await chart(page, "chart-progress")
    assert progress["bars"] == [10] and sum(progress["values"][0]) == 2
    enrollments = await chart(page, "chart-enrollments")
    assert enrollments["bars"] == [30] and enrollments["values"][0][-1] == 2
    quizzes = await chart(page, "chart-quizzes")
    assert quizzes["bars"] == [10] and sum(quizzes["values"][0]) == 2
    await page.wait_for(
        "document.querySelector('#connection').className === 'status-live' && "
        "document.querySelector('#online').textContent !== '–'"
    )
    await page.evaluate("window.__notReloaded = true")
    await screenshot(page, "dashboard-before")

    await put_progress(b, ben, ben_enrollment, l1)  # on the other instance
    await page.wait_for(shows("chart-funnel", "c.values[0][0] === 100"))
    await put_progress(b, ben, ben_enrollment, l2)
    await page.wait_for(shows("chart-funnel", "c.values[0][1] === 50"))
    assert await page.evaluate("window.__notReloaded === true")
    progress = await chart(page, "chart-progress")
    assert progress["values"][0][6] == 1  # Ben at 66.67 %
    await screenshot(page, "dashboard-after-progress")
    assert await page.close() == []


async def test_admin_page_draws_the_platform(instances: list[Instance], db: Database, page: ChromiumPage) -> None:
    a = instances[0]
    admin = await make_user(db, role="admin", full_name="Root Admin")
    instructor = await make_user(db, role="instructor")
    course = await make_course(db, instructor, is_published=True, lessons=1)
    for status in ("active", "active", "completed", "dropped"):
        await make_enrollment(db, await make_user(db), course, status=status)

    await sign_in_on_page(page, f"{a.url}/admin", admin["email"])
    roles = await chart(page, "chart-roles")
    assert roles["bars"] == [3] and roles["values"] == [[1, 1, 4]]
    statuses = await chart(page, "chart-statuses")
    assert statuses["bars"] == [5] and statuses["values"] == [[2, 1, 1, 0, 0]]
    assert (await chart(page, "chart-new-users"))["bars"] == [30]
    assert (await chart(page, "chart-enrollments"))["values"][0][-1] == 4
    assert await page.text("#fig-users") == "6"
    await screenshot(page, "admin")
    assert await page.close() == []


async def test_a_student_is_refused_the_admin_page(instances: list[Instance], db: Database, page: ChromiumPage) -> None:
    student = await make_user(db)
    await sign_in_on_page(page, f"{instances[0].url}/admin", student["email"])
    assert "admin" in (await page.visible("#error")).lower()
    assert await page.evaluate("document.getElementById('content').hidden") is True
    await page.close()


async def test_me_page_draws_progress_and_streak(instances: list[Instance], db: Database, page: ChromiumPage) -> None:
    a = instances[0]
    instructor = await make_user(db, role="instructor")
    student = await make_user(db, full_name="Sam Student")
    first = await make_course(db, instructor, is_published=True, lessons=2, title="First course")
    second = await make_course(db, instructor, is_published=True, lessons=4, title="Second course")
    enrollment = await make_enrollment(db, student, first)
    await make_enrollment(db, student, second)
    (lesson, _) = await first_lessons(db, first["id"])
    await put_progress(a, student, enrollment, lesson)  # today: 2 minutes
    yesterday = datetime.now(UTC) - timedelta(days=1)
    async with db.transaction() as conn:
        await conn.execute(insert(study_activity).values(student_id=student["id"], bucket=yesterday.replace(
            minute=0, second=0, microsecond=0), seconds=600, reports=2))  # fmt: skip

    await sign_in_on_page(page, f"{a.url}/me", student["email"])
    courses = await chart(page, "chart-courses")
    assert courses["bars"] == [2] and sorted(courses["values"][0]) == [0, 50]
    time_chart = await chart(page, "chart-time")
    assert time_chart["bars"] == [30] and time_chart["values"][0][-1] == 2
    assert await page.text("#fig-streak") == "2 days"
    await screenshot(page, "me")
    assert await page.close() == []
