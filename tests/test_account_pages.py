"""Both email flows in headless Chromium, from the real emails (aiosmtpd) to the pages and back.

The app serves on a real port that is also its public base URL, so the
links in the emails are the links a person would click. Jobs run inline:
each email is on the SMTP server when the request that sends it returns.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from lms.app import create_app
from lms.db import Database
from lms.devservers import free_port
from lms.tables import users
from tests.browser import ChromiumPage
from tests.builders import PASSWORD, login, make_user
from tests.conftest import CaughtMail, Servers, SmtpServer, make_config
from tests.node import needs_chromium

pytestmark = [pytest.mark.slow, needs_chromium]

NEW_PASSWORD = "a brand new passphrase"


@dataclass
class Site:
    base: str
    client: TestClient  # type: ignore[type-arg]
    smtp: SmtpServer


@pytest.fixture
async def site(aiohttp_client: Any, servers: Servers, smtp_server: SmtpServer) -> Site:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = make_config(servers, jobs={"mode": "inline"}, smtp=smtp_server.settings(), http={"public_base_url": base})
    client = await aiohttp_client(create_app(config), server_kwargs={"port": port})
    return Site(base, client, smtp_server)


@pytest.fixture
async def page() -> AsyncIterator[ChromiumPage]:
    browser = ChromiumPage()
    yield browser
    browser.kill()


def link_in(mail: CaughtMail, path: str) -> str:
    body = mail.message.get_body(("plain",))
    assert body is not None
    found = re.search(rf"http://\S+{re.escape(path)}\?token=\S+", body.get_content())
    assert found, body.get_content()
    return found.group(0)


def mails_to(site: Site, address: str, count: int) -> list[CaughtMail]:
    site.smtp.catcher.wait_for(len(site.smtp.messages))  # everything sent so far has arrived
    mails = [m for m in site.smtp.messages if address in m.rcpt_tos]
    assert len(mails) == count, [m.message["Subject"] for m in mails]
    return mails


async def verified_at(db: Database, email: str) -> Any:
    async with db.connection() as conn:
        return await conn.fetch_val(select(users.c.email_verified_at).where(users.c.email == email))


async def test_email_verification_from_the_email_and_a_new_link_for_a_dead_one(
    site: Site, page: ChromiumPage, db: Database
) -> None:
    email = "new.person@example.com"
    response = await site.client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "full_name": "New Person"}
    )
    assert response.status == 201, await response.text()
    link = link_in(mails_to(site, email, 2)[-1], "/verify-email")
    assert link.startswith(site.base + "/verify-email?token=")

    # A damaged link: the page says it expired and offers a new one after signing in.
    assert await page.goto(link + "broken")
    assert "expired" in await page.visible("#expired")
    assert "token" not in await page.url()
    await page.fill("#resend input[name=email]", email)
    await page.fill("#resend input[name=password]", PASSWORD)
    await page.click("#resend button[type=submit]")
    assert email in await page.visible("#sent")
    assert await verified_at(db, email) is None

    # The new link confirms the address.
    new_link = link_in(mails_to(site, email, 3)[-1], "/verify-email")
    assert new_link != link
    await page.goto(new_link)
    assert "confirmed" in await page.visible("#confirmed")
    assert await verified_at(db, email) is not None
    assert "token" not in await page.url()

    # Used once: a second visit is refused.
    await page.goto(new_link)
    assert "expired" in await page.visible("#expired")
    assert await page.close() == []


async def test_password_reset_from_the_home_page_through_the_email(
    site: Site, page: ChromiumPage, db: Database
) -> None:
    user = await make_user(db, email="forgetful@example.com", full_name="Fay Forgetful")
    await page.goto(site.base + "/")
    await page.click("#forgot-link")
    await page.fill("#forgot input[name=email]", user["email"])
    await page.click("#forgot button[type=submit]")
    assert user["email"] in await page.visible("#forgot-done")
    link = link_in(mails_to(site, user["email"], 1)[0], "/reset-password")

    await page.goto(link)
    assert "token" not in await page.url()
    assert "At least 10 characters" in await page.visible("#choose")
    # The policy's own messages, from the API.
    await page.fill("#reset input[name=password]", "password")
    await page.fill("#reset input[name=confirm]", "password")
    await page.click("#reset button[type=submit]")
    await page.visible("#problems li >> nth=1")
    problems = await page.text("#problems")
    assert "Password must be at least 10 characters." in problems and "too common" in problems
    await page.fill("#reset input[name=password]", "forgetful-fay")
    await page.fill("#reset input[name=confirm]", "forgetful-fay")
    await page.click("#reset button[type=submit]")
    assert await page.visible("#problems li") == "Password must not contain your email address."
    # Caught on the page: the two fields differ.
    await page.fill("#reset input[name=password]", NEW_PASSWORD)
    await page.fill("#reset input[name=confirm]", NEW_PASSWORD + "!")
    await page.click("#reset button[type=submit]")
    assert "differ" in await page.visible("#problems li")

    await page.fill("#reset input[name=confirm]", NEW_PASSWORD)
    await page.click("#reset button[type=submit]")
    assert "changed" in await page.visible("#changed")
    old = await site.client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert old.status == 401

    # Signing in on the home page with the new password.
    await page.goto(site.base + "/")
    await page.fill("#signin input[name=email]", user["email"])
    await page.fill("#signin input[name=password]", NEW_PASSWORD)
    await page.click("#signin button[type=submit]")
    assert await page.visible("#me-name") == "Fay Forgetful"

    # The link worked once: the page now says so and offers a new one.
    await page.goto(link)
    await page.fill("#reset input[name=password]", "another fine passphrase")
    await page.fill("#reset input[name=confirm]", "another fine passphrase")
    await page.click("#reset button[type=submit]")
    assert "does not work" in await page.visible("#failed")
    await login(site.client, user["email"], NEW_PASSWORD)
    assert await page.close() == []
