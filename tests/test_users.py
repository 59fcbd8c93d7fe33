"""The Users endpoints, roles and escalation attempts."""

from __future__ import annotations

from typing import Any

from tests.builders import PASSWORD, bearer, login, make_user, signed_in

PROBLEM = "application/problem+json"


async def test_me_read_and_update(client: Any, db: Any) -> None:
    _, headers = await signed_in(client, db, full_name="Old Name")
    updated = await client.patch(
        "/api/v1/users/me", json={"full_name": "  New   Name ", "metadata": {"locale": "ar"}}, headers=headers
    )
    assert updated.status == 200
    body = await updated.json()
    assert body["full_name"] == "New Name" and body["metadata"] == {"locale": "ar"}
    assert (await (await client.get("/api/v1/users/me", headers=headers)).json())["full_name"] == "New Name"


async def test_student_cannot_make_themselves_admin(client: Any, db: Any) -> None:
    user, headers = await signed_in(client, db)
    for patch in ({"role": "admin"}, {"is_active": True, "role": "instructor"}):
        response = await client.patch("/api/v1/users/me", json=patch, headers=headers)
        assert response.status == 422
    assert (await client.patch(f"/api/v1/users/{user['id']}", json={"role": "admin"}, headers=headers)).status == 403
    assert (await (await client.get("/api/v1/users/me", headers=headers)).json())["role"] == "student"


async def test_student_reading_another_user_gets_404(client: Any, db: Any) -> None:
    _, headers = await signed_in(client, db)
    other = await make_user(db)
    response = await client.get(f"/api/v1/users/{other['id']}", headers=headers)
    assert response.status == 404 and response.content_type == PROBLEM
    assert (await client.get("/api/v1/users/not-a-uuid", headers=headers)).status == 404


async def test_self_can_read_own_record_by_id(client: Any, db: Any) -> None:
    user, headers = await signed_in(client, db)
    assert (await client.get(f"/api/v1/users/{user['id']}", headers=headers)).status == 200


async def test_admin_lists_filters_and_creates_any_role(client: Any, db: Any) -> None:
    _, admin = await signed_in(client, db, role="admin", full_name="Root")
    await make_user(db, role="instructor", full_name="Grace Hopper", email="grace@example.com")
    await make_user(db, role="student", full_name="Alan Turing", is_active=False)
    created = await client.post(
        "/api/v1/users",
        json={
            "email": "new.admin@example.com",
            "password": "a much longer secret",
            "full_name": "Second Admin",
            "role": "admin",
        },
        headers=admin,
    )
    assert created.status == 201 and (await created.json())["role"] == "admin"

    page = await (await client.get("/api/v1/users?limit=2", headers=admin)).json()
    assert page["total"] == 4 and len(page["items"]) == 2 and page["limit"] == 2 and page["offset"] == 0
    instructors = await (await client.get("/api/v1/users?role=instructor", headers=admin)).json()
    assert [u["email"] for u in instructors["items"]] == ["grace@example.com"]
    inactive = await (await client.get("/api/v1/users?is_active=false", headers=admin)).json()
    assert [u["full_name"] for u in inactive["items"]] == ["Alan Turing"]
    found = await (await client.get("/api/v1/users?q=hopp", headers=admin)).json()
    assert found["total"] == 1
    assert (await client.get("/api/v1/users?limit=1000", headers=admin)).status == 422


async def test_only_admins_manage_users(client: Any, db: Any) -> None:
    _, instructor = await signed_in(client, db, role="instructor")
    assert (await client.get("/api/v1/users", headers=instructor)).status == 403
    response = await client.post(
        "/api/v1/users",
        json={"email": "x@example.com", "password": "long enough password", "full_name": "X"},
        headers=instructor,
    )
    assert response.status == 403


async def test_admin_demotion_takes_effect_at_once(client: Any, db: Any) -> None:
    _, root = await signed_in(client, db, role="admin")
    other_admin, other = await signed_in(client, db, role="admin")
    assert (await client.get("/api/v1/users", headers=other)).status == 200
    await client.patch(f"/api/v1/users/{other_admin['id']}", json={"role": "student"}, headers=root)
    assert (await client.get("/api/v1/users", headers=other)).status == 403


async def test_change_password_signs_out_everywhere(client: Any, db: Any) -> None:
    user = await make_user(db)
    tokens = await login(client, user["email"])
    headers = bearer(tokens["access_token"])
    wrong = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": "wrong", "new_password": "another good passphrase"},
        headers=headers,
    )
    assert wrong.status == 422
    weak = await client.post(
        "/api/v1/users/me/password", json={"current_password": PASSWORD, "new_password": "password"}, headers=headers
    )
    assert weak.status == 422
    ok = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another good passphrase"},
        headers=headers,
    )
    assert ok.status == 204
    assert (await client.get("/api/v1/auth/me", headers=headers)).status == 401
    assert (await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})).status == 401
    fresh = await login(client, user["email"], "another good passphrase")
    assert (await client.get("/api/v1/auth/me", headers=bearer(fresh["access_token"]))).status == 200
