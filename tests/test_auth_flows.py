"""Auth flows that go through email: registration, verification, reset, MFA.

Jobs run inline against a real SMTP server (aiosmtpd); tests read the links
and codes out of the delivered messages, as a person would.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from lms.app import create_app
from tests.builders import PASSWORD, bearer, login, make_user
from tests.conftest import Servers, SmtpServer, make_config

PROBLEM = "application/problem+json"
GOOD_PASSWORD = "a perfectly fine passphrase"


@pytest.fixture
async def mail_client(aiohttp_client: Any, servers: Servers, smtp_server: SmtpServer) -> Any:
    config = make_config(servers, jobs={"mode": "inline"}, smtp=smtp_server.settings())
    return await aiohttp_client(create_app(config))


def text_of(mail: Any) -> str:
    return str(mail.message.get_body(preferencelist=("plain",)).get_content())


def mails_to(smtp: SmtpServer, address: str, template: str | None = None) -> list[Any]:
    return [m for m in smtp.messages if address in m.rcpt_tos and template in (None, m.message["X-LMS-Template"])]


def token_in(mail: Any) -> str:
    found = re.search(r"token=([A-Za-z0-9_\-.]+)", text_of(mail))
    assert found, text_of(mail)
    return found.group(1)


def code_in(mail: Any) -> str:
    found = re.search(r"\b(\d{6})\b", text_of(mail))
    assert found, text_of(mail)
    return found.group(1)


async def register(client: Any, email: str, **extra: Any) -> Any:
    body = {"email": email, "password": GOOD_PASSWORD, "full_name": "Ada Lovelace"} | extra
    return await client.post("/api/v1/auth/register", json=body)


async def test_register_signs_in_and_sends_welcome_and_verification(mail_client: Any, smtp_server: SmtpServer) -> None:
    response = await register(mail_client, "Ada@Example.com")
    assert response.status == 201
    body = await response.json()
    assert body["user"]["email"] == "ada@example.com" and body["user"]["role"] == "student"
    assert body["user"]["email_verified_at"] is None and "password_hash" not in body["user"]
    assert (await mail_client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))).status == 200
    smtp_server.catcher.wait_for(2)
    templates = {m.message["X-LMS-Template"] for m in mails_to(smtp_server, "ada@example.com")}
    assert templates == {"welcome", "email_verification"}


async def test_register_as_instructor_but_never_admin(mail_client: Any) -> None:
    assert (await register(mail_client, "teacher@example.com", role="instructor")).status == 201
    refused = await register(mail_client, "sneaky@example.com", role="admin")
    assert refused.status == 422
    assert [e["field"] for e in (await refused.json(content_type=PROBLEM))["errors"]] == ["role"]


async def test_duplicate_email_is_a_conflict(mail_client: Any) -> None:
    assert (await register(mail_client, "dup@example.com")).status == 201
    again = await register(mail_client, "DUP@example.com")
    assert again.status == 409 and again.content_type == PROBLEM


@pytest.mark.parametrize("password", ["short", "password123", "aaaaaaaaaaaa", "weakling@example.com", "x" * 80])
async def test_weak_passwords_are_422_with_reasons(mail_client: Any, password: str) -> None:
    response = await register(mail_client, "weakling@example.com", password=password)
    assert response.status == 422
    errors = (await response.json(content_type=PROBLEM))["errors"]
    assert errors and all(e["field"] == "password" for e in errors)


async def test_email_verification_link_works_once(mail_client: Any, smtp_server: SmtpServer) -> None:
    tokens = await (await register(mail_client, "verify@example.com")).json()
    smtp_server.catcher.wait_for(2)
    (mail,) = mails_to(smtp_server, "verify@example.com", "email_verification")
    token = token_in(mail)
    assert (await mail_client.post("/api/v1/auth/verify-email/confirm", json={"token": token})).status == 204
    me = await (await mail_client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"]))).json()
    assert me["email_verified_at"] is not None
    again = await mail_client.post("/api/v1/auth/verify-email/confirm", json={"token": token})
    assert again.status == 400 and again.content_type == PROBLEM
    # Already verified: asking again sends nothing more.
    asked = await mail_client.post("/api/v1/auth/verify-email/request", headers=bearer(tokens["access_token"]))
    assert asked.status == 202
    assert len(mails_to(smtp_server, "verify@example.com", "email_verification")) == 1


async def test_password_reset_works_once_and_ends_sessions(mail_client: Any, smtp_server: SmtpServer, db: Any) -> None:
    user = await make_user(db, email="forgetful@example.com")
    old = await login(mail_client, user["email"])
    unknown = await mail_client.post("/api/v1/auth/forgot-password", json={"email": "nobody@example.com"})
    known = await mail_client.post("/api/v1/auth/forgot-password", json={"email": "forgetful@example.com"})
    assert unknown.status == known.status == 202
    assert await unknown.json() == await known.json()
    smtp_server.catcher.wait_for(1)
    assert mails_to(smtp_server, "nobody@example.com") == []
    token = token_in(mails_to(smtp_server, "forgetful@example.com")[0])

    weak = await mail_client.post("/api/v1/auth/reset-password", json={"token": token, "new_password": "password"})
    assert weak.status == 422
    done = await mail_client.post("/api/v1/auth/reset-password", json={"token": token, "new_password": GOOD_PASSWORD})
    assert done.status == 204
    twice = await mail_client.post(
        "/api/v1/auth/reset-password", json={"token": token, "new_password": "yet another passphrase"}
    )
    assert twice.status == 400

    assert (await mail_client.get("/api/v1/auth/me", headers=bearer(old["access_token"]))).status == 401
    assert (await mail_client.post("/api/v1/auth/refresh", json={"refresh_token": old["refresh_token"]})).status == 401
    bad = await mail_client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert bad.status == 401
    await login(mail_client, user["email"], GOOD_PASSWORD)


async def enable_mfa(client: Any, smtp: SmtpServer, email: str) -> None:
    headers = bearer((await login(client, email))["access_token"])
    wrong_password = await client.post("/api/v1/auth/mfa/enable/request", json={"password": "not it"}, headers=headers)
    assert wrong_password.status == 422
    assert (
        await client.post("/api/v1/auth/mfa/enable/request", json={"password": PASSWORD}, headers=headers)
    ).status == 202
    code = code_in(smtp.catcher.wait_for(1)[-1])
    assert (await client.post("/api/v1/auth/mfa/enable/confirm", json={"code": code}, headers=headers)).status == 204
    me = await (await client.get("/api/v1/auth/me", headers=headers)).json()
    assert me["mfa_enabled"] is True


async def test_mfa_login_with_the_emailed_code(mail_client: Any, smtp_server: SmtpServer, db: Any) -> None:
    user = await make_user(db)
    await enable_mfa(mail_client, smtp_server, user["email"])
    first = await mail_client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    challenge = await first.json()
    assert first.status == 200 and challenge["mfa_required"] is True and "access_token" not in challenge
    code = code_in(smtp_server.catcher.wait_for(2)[-1])
    done = await mail_client.post(
        "/api/v1/auth/login/mfa", json={"challenge_token": challenge["challenge_token"], "code": code}
    )
    assert done.status == 200 and (await done.json())["access_token"]
    # The OAuth2 form grant cannot do MFA and says so.
    form = await mail_client.post("/api/v1/auth/token", data={"username": user["email"], "password": PASSWORD})
    assert form.status == 401


async def test_mfa_challenge_dies_after_five_wrong_codes(mail_client: Any, smtp_server: SmtpServer, db: Any) -> None:
    user = await make_user(db)
    await enable_mfa(mail_client, smtp_server, user["email"])
    challenge = await (
        await mail_client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).json()
    code = code_in(smtp_server.catcher.wait_for(2)[-1])
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        response = await mail_client.post(
            "/api/v1/auth/login/mfa", json={"challenge_token": challenge["challenge_token"], "code": wrong}
        )
        assert response.status == 401
    late = await mail_client.post(
        "/api/v1/auth/login/mfa", json={"challenge_token": challenge["challenge_token"], "code": code}
    )
    assert late.status == 401
    assert (await late.json(content_type=PROBLEM))["type"].endswith("mfa-challenge-dead")


async def test_mfa_disable_needs_the_password(mail_client: Any, smtp_server: SmtpServer, db: Any) -> None:
    user = await make_user(db)
    await enable_mfa(mail_client, smtp_server, user["email"])
    challenge = await (
        await mail_client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).json()
    code = code_in(smtp_server.catcher.wait_for(2)[-1])
    tokens = await (
        await mail_client.post(
            "/api/v1/auth/login/mfa", json={"challenge_token": challenge["challenge_token"], "code": code}
        )
    ).json()
    headers = bearer(tokens["access_token"])
    assert (
        await mail_client.post("/api/v1/auth/mfa/disable", json={"password": "wrong"}, headers=headers)
    ).status == 422
    assert (
        await mail_client.post("/api/v1/auth/mfa/disable", json={"password": PASSWORD}, headers=headers)
    ).status == 204
    plain = await login(mail_client, user["email"])
    assert "access_token" in plain
