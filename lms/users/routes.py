"""User routes (``/api/v1/users/...``).

Each route's contract is in the OpenAPI document (``/api/v1/openapi.json``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lms.api.endpoint import endpoint, path_uuid
from lms.api.pagination import Page, page
from lms.api.problems import NotFound, ValidationFailed
from lms.appkeys import CONFIG, DB
from lms.auth.guards import authenticated, current_user, require
from lms.auth.passwords import hash_password, verify_password
from lms.auth.permissions import Permission
from lms.auth.routes import check_password_policy, create_account
from lms.auth.service import end_all_sessions
from lms.db import Row
from lms.users import queries
from lms.users.schemas import AdminUserUpdate, PasswordChange, ProfileUpdate, UserCreate, UserListQuery, UserOut

routes = web.RouteTableDef()
TAGS = ["users"]
manage_users = require(Permission.MANAGE_USERS)


@routes.get("/api/v1/users")
@endpoint(summary="List accounts", query=UserListQuery, response=Page[UserOut], guards=[manage_users], tags=TAGS)
async def list_users(request: web.Request, query: UserListQuery) -> dict[str, Any]:
    async with request.app[DB].connection() as conn:
        rows, total = await queries.list_users(
            conn, role=query.role, is_active=query.is_active, q=query.q, limit=query.limit, offset=query.offset
        )
    return page(rows, total, query)


@routes.post("/api/v1/users")
@endpoint(
    summary="Create an account of any role",
    body=UserCreate,
    response=UserOut,
    status=201,
    errors=[409],
    guards=[manage_users],
    tags=TAGS,
)
async def create_user(request: web.Request, body: UserCreate) -> Row:
    return await create_account(
        request, email_address=str(body.email), password=body.password, full_name=body.full_name, role=body.role,
        is_active=body.is_active,
    )  # fmt: skip


@routes.get("/api/v1/users/me")
@endpoint(summary="My profile", response=UserOut, guards=[authenticated], tags=TAGS)
async def get_me(request: web.Request) -> Row:
    return current_user(request).user


@routes.patch("/api/v1/users/me")
@endpoint(
    summary="Change my name or profile metadata",
    body=ProfileUpdate,
    response=UserOut,
    guards=[authenticated],
    tags=TAGS,
)
async def update_me(request: web.Request, body: ProfileUpdate) -> Row | None:
    async with request.app[DB].transaction() as conn:
        return await queries.update_user(conn, current_user(request).id, **body.model_dump(exclude_none=True))


@routes.post("/api/v1/users/me/password")
@endpoint(
    summary="Change my password",
    description="Every session, this one included, is signed out.",
    body=PasswordChange,
    status=204,
    guards=[authenticated],
    tags=TAGS,
)
async def change_password(request: web.Request, body: PasswordChange) -> None:
    me = current_user(request)
    user = me.user
    if not await verify_password(body.current_password, user["password_hash"]):
        raise ValidationFailed(
            "The current password is not correct.", errors=[{"field": "current_password", "message": "incorrect"}]
        )
    check_password_policy(request, body.new_password, user["email"])
    new_hash = await hash_password(body.new_password, request.app[CONFIG].auth.bcrypt_rounds)
    async with request.app[DB].transaction() as conn:
        await queries.set_password(conn, me.id, new_hash)
        await end_all_sessions(request, conn, me.id)


@routes.get("/api/v1/users/{id}")
@endpoint(summary="An account (admins, or yourself)", response=UserOut, errors=[404], guards=[authenticated], tags=TAGS)
async def get_user(request: web.Request) -> Row:
    me = current_user(request)
    user_id = path_uuid(request)
    # Others' accounts are invisible, not forbidden: no probing which ids exist.
    if user_id != me.id and not me.can(Permission.MANAGE_USERS):
        raise NotFound("No such user.")
    async with request.app[DB].connection() as conn:
        user = await queries.get_user(conn, user_id)
    if user is None:
        raise NotFound("No such user.")
    return user


@routes.patch("/api/v1/users/{id}")
@endpoint(
    summary="Change an account's role, activity or name",
    body=AdminUserUpdate,
    response=UserOut,
    errors=[404],
    guards=[manage_users],
    tags=TAGS,
)
async def update_user(request: web.Request, body: AdminUserUpdate) -> Row:
    user_id = path_uuid(request)
    async with request.app[DB].transaction() as conn:
        user = await queries.update_user(conn, user_id, **body.model_dump(exclude_none=True))
        if user is None:
            raise NotFound("No such user.")
        if body.is_active is False:
            await end_all_sessions(request, conn, user_id)
    return user
