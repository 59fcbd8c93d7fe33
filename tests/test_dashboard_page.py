"""The instructor's live dashboard page in headless Chromium (tests/js/dashboard_page.js).

The page is served by instance A; the student's progress is reported to
instance B; the row on the page changes without a reload.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest

from lms.db import Database
from tests.builders import PASSWORD, make_course, make_enrollment, make_user
from tests.node import needs_chromium, node_env, node_script
from tests.test_realtime_processes import Serve, first_lesson, rest, serves, sign_in

__all__ = ["serves"]  # the fixture, shared with the real-process tests

pytestmark = [pytest.mark.slow, needs_chromium]


class Browser:
    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            node_script("dashboard_page.js", *args, packages=("playwright-core",)),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=node_env(),
        )  # fmt: skip

    async def read(self, timeout: float = 60) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), timeout)
        if not line:
            stderr = self.process.stderr.read() if self.process.stderr else ""
            raise AssertionError("the browser script ended: " + stderr)
        message: dict[str, Any] = json.loads(line)
        assert "failed" not in message, message
        return message

    def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


async def test_a_progress_put_updates_the_dashboard_row_live(serves: list[Serve], db: Database) -> None:
    a, b = serves
    instructor = await make_user(db, role="instructor", full_name="Ada Teacher")
    student = await make_user(db, full_name="Sam Student")
    course = await make_course(db, instructor, is_published=True, lessons=4)
    enrollment = await make_enrollment(db, student, course)
    lesson_id = await first_lesson(db, course["id"])

    browser = Browser(f"{a.url}/dashboard/courses/{course['id']}", instructor["email"], PASSWORD, str(enrollment["id"]))
    try:
        shown = await browser.read()
        assert shown == {"live": True, "progress": "0%", "student": "Sam Student", "online": "0"}

        path = f"/api/v1/enrollments/{enrollment['id']}/lessons/{lesson_id}/progress"
        status, body = await rest("PUT", b.url + path, await sign_in(b.url, student), {"completion_percentage": 100})
        assert status == 200, body

        browser.send({"expect_progress": "25%"})
        updated = await browser.read()
        assert updated["progress"] == "25%" and updated["reloaded"] is False
        assert "Sam Student: lesson at 100%, course at 25%" in updated["activity"]
        browser.send({"close": True})
        assert (await browser.read())["errors"] == []
    finally:
        browser.close()
