"""Authentication routes (``/api/v1/auth/...``).

Each route's contract is in the OpenAPI document (``/api/v1/openapi.json``).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from sqlalchemy import func

from lms.api.endpoint import endpoint
from lms.api.problems import Conflict, Problem, Unauthorized, ValidationFailed
from lms.api.ratelimit import enforce_account_limits
from lms.appkeys import CONFIG, DB, REDIS
from lms.auth import queries, redis_state, schemas
from lms.auth.guards import authenticated, current_user
from lms.auth.passwords import burn_equal_time, hash_password, policy_errors, verify_password
from lms.auth.redis_state import CodeCheck
from lms.auth.service import email, end_all_sessions, link, password_fingerprint, start_session
from lms.auth.tokens import InvalidToken, TokenType, issue, verify
from lms.db import IntegrityViolation, Row, is_unique_violation
from lms.users import queries as users
from lms.users.schemas import UserOut

routes = web.RouteTableDef()
TAGS = ["auth"]
BAD_CREDENTIALS = "Incorrect email or password."


def check_password_policy(request: web.Request, password: str, email_address: str) -> None:
    errors = policy_errors(password, email=email_address, min_length=request.app[CONFIG].auth.password_min_length)
    if errors:
        raise ValidationFailed("The password does not meet the policy.", errors=errors)


async def create_account(
    request: web.Request, *, email_address: str, password: str, full_name: str, role: str, is_active: bool = True
) -> Row:
    check_password_policy(request, password, email_address)
    password_hash = await hash_password(password, request.app[CONFIG].auth.bcrypt_rounds)
    try:
        async with request.app[DB].transaction() as conn:
            return await users.create_user(
                conn,
                email=email_address,
                password_hash=password_hash,
                full_name=full_name,
                role=role,
                is_active=is_active,
            )
    except IntegrityViolation as err:
        if is_unique_violation(err, "uq_users_email"):
            raise Conflict(
                "An account with this email already exists.",
                errors=[{"field": "email", "message": "already registered"}],
            ) from err
        raise


async def send_verification(request: web.Request, user: Row) -> None:
    config = request.app[CONFIG]
    token, _ = issue(config, TokenType.EMAIL_VERIFICATION, str(user["id"]), email=user["email"])
    await email(
        request, "email_verification", user,
        verify_url=link(request, "/verify-email", token), expires_hours=config.auth.email_verification_minutes // 60,
    )  # fmt: skip


@routes.post("/api/v1/auth/register")
@endpoint(
    summary="Create an account",
    body=schemas.RegisterIn,
    response=schemas.Tokens,
    status=201,
    errors=[409],
    tags=TAGS,
    no_store=True,
)
async def register(request: web.Request, body: schemas.RegisterIn) -> dict[str, Any]:
    user = await create_account(
        request, email_address=str(body.email), password=body.password, full_name=body.full_name, role=body.role
    )
    async with request.app[DB].transaction() as conn:
        session = await start_session(request, conn, user)
    await email(request, "welcome", user)
    await send_verification(request, user)
    return session


async def check_credentials(request: web.Request, email_address: str, password: str) -> Row:
    """The account, or the same 401 whether the email or the password was wrong, in the same time."""
    await enforce_account_limits(request, email_address)
    async with request.app[DB].connection() as conn:
        user = await users.get_user_by_email(conn, email_address)
    if user is None:
        await burn_equal_time(password, request.app[CONFIG].auth.bcrypt_rounds)
        raise Unauthorized(BAD_CREDENTIALS)
    if not await verify_password(password, user["password_hash"]):
        raise Unauthorized(BAD_CREDENTIALS)
    if not user["is_active"]:
        raise Unauthorized("This account is deactivated.")
    return user


async def begin_mfa(request: web.Request, user: Row) -> dict[str, Any]:
    config = request.app[CONFIG]
    token, claims = issue(config, TokenType.MFA_CHALLENGE, str(user["id"]))
    code = redis_state.new_code()
    await redis_state.store_code(
        request.app[REDIS], redis_state.mfa_key("login", claims["jti"]), user_id=str(user["id"]), code=code,
        secret_key=config.secret_key, ttl_seconds=config.auth.mfa_challenge_minutes * 60,
    )  # fmt: skip
    await email(request, "mfa_code", user, code=code, expires_minutes=config.auth.mfa_challenge_minutes)
    return {"mfa_required": True, "challenge_token": token, "expires_in": config.auth.mfa_challenge_minutes * 60}


async def finish_login(request: web.Request, user: Row) -> dict[str, Any]:
    async with request.app[DB].transaction() as conn:
        await users.record_login(conn, user["id"])
        return await start_session(request, conn, user)


@routes.post("/api/v1/auth/login")
@endpoint(
    summary="Sign in with email and password",
    description="Returns tokens, or `{mfa_required, challenge_token}` with a code emailed when MFA is on.",
    body=schemas.LoginIn,
    response=schemas.Tokens | schemas.MfaRequired,
    errors=[401, 429],
    tags=TAGS,
    no_store=True,
)
async def login(request: web.Request, body: schemas.LoginIn) -> dict[str, Any]:
    user = await check_credentials(request, body.email, body.password)
    if user["mfa_enabled"]:
        return await begin_mfa(request, user)
    return await finish_login(request, user)


@routes.post("/api/v1/auth/token")
@endpoint(
    summary="OAuth2 password grant",
    body=schemas.TokenForm,
    body_format="form",
    response=schemas.OAuthTokens,
    errors=[401, 429],
    tags=TAGS,
    no_store=True,
)
async def token(request: web.Request, body: schemas.TokenForm) -> dict[str, Any]:
    user = await check_credentials(request, body.username, body.password)
    if user["mfa_enabled"]:
        raise Unauthorized("This account uses MFA: sign in with /api/v1/auth/login.", type_slug="mfa-required")
    return await finish_login(request, user)


@routes.post("/api/v1/auth/login/mfa")
@endpoint(
    summary="Finish an MFA sign-in with the emailed code",
    body=schemas.MfaLoginIn,
    response=schemas.Tokens,
    errors=[401, 429],
    tags=TAGS,
    no_store=True,
)
async def login_mfa(request: web.Request, body: schemas.MfaLoginIn) -> dict[str, Any]:
    config = request.app[CONFIG]
    try:
        claims = verify(config, body.challenge_token, TokenType.MFA_CHALLENGE)
    except InvalidToken as err:
        raise Unauthorized("The sign-in challenge is invalid or expired; sign in again.") from err
    await enforce_account_limits(request, str(claims["sub"]))
    result = await redis_state.check_code(
        request.app[REDIS], redis_state.mfa_key("login", claims["jti"]), user_id=str(claims["sub"]), code=body.code,
        secret_key=config.secret_key, max_tries=config.auth.mfa_max_attempts,
    )  # fmt: skip
    if result is CodeCheck.DEAD:
        raise Unauthorized("The sign-in challenge is no longer valid; sign in again.", type_slug="mfa-challenge-dead")
    if result is CodeCheck.WRONG:
        raise Unauthorized("The code is not correct.", type_slug="mfa-code-wrong")
    async with request.app[DB].connection() as conn:
        user = await users.get_user(conn, uuid.UUID(str(claims["sub"])))
    if user is None or not user["is_active"]:
        raise Unauthorized("This account is deactivated.")
    return await finish_login(request, user)


@routes.post("/api/v1/auth/refresh")
@endpoint(
    summary="Trade a refresh token for new tokens (rotation)",
    description="Presenting an already-rotated refresh token revokes its whole family, except within "
    "`auth.refresh_reuse_grace_seconds` of its rotation (two tabs refreshing at once): then it yields a sibling "
    "pair of tokens in the same family.",
    body=schemas.RefreshIn,
    response=schemas.Tokens,
    errors=[401],
    tags=TAGS,
    no_store=True,
)
async def refresh(request: web.Request, body: schemas.RefreshIn) -> dict[str, Any]:
    try:
        verify(request.app[CONFIG], body.refresh_token, TokenType.REFRESH)
    except InvalidToken as err:
        raise Unauthorized("The refresh token is invalid or expired.") from err
    grace = request.app[CONFIG].auth.refresh_reuse_grace_seconds
    async with request.app[DB].transaction() as conn:
        row = await queries.rotate_refresh_token(conn, body.refresh_token)
        if row is None and grace:
            row = await queries.rotated_within(conn, body.refresh_token, grace)
        if row is not None:
            user = await users.get_user(conn, row["user_id"])
            if user is not None and user["is_active"]:
                return await start_session(request, conn, user, family_id=row["family_id"])
    # Not live: a replayed (stolen?) token. Revoke its family in its own
    # transaction so the revocation sticks although we answer 401.
    async with request.app[DB].transaction() as conn:
        known = await queries.find_refresh_token(conn, body.refresh_token)
        if known is not None and known["rotated_at"] is not None:
            await queries.revoke_family(conn, known["family_id"])
    raise Unauthorized("The refresh token is no longer valid; sign in again.")


@routes.post("/api/v1/auth/logout")
@endpoint(
    summary="Sign out: revoke this access token (and the refresh token, if sent)",
    body=schemas.LogoutIn,
    body_required=False,
    status=204,
    guards=[authenticated],
    tags=TAGS,
)
async def logout(request: web.Request, body: schemas.LogoutIn) -> None:
    me = current_user(request)
    await redis_state.revoke_access_token(request.app[REDIS], me.jti, me.expires_at)
    if body.refresh_token:
        async with request.app[DB].transaction() as conn:
            await queries.revoke_refresh_token(conn, body.refresh_token, me.id)


@routes.post("/api/v1/auth/logout-all")
@endpoint(summary="Sign out everywhere", status=204, guards=[authenticated], tags=TAGS)
async def logout_all(request: web.Request) -> None:
    async with request.app[DB].transaction() as conn:
        await end_all_sessions(request, conn, current_user(request).id)


@routes.post("/api/v1/auth/forgot-password")
@endpoint(
    summary="Email a password reset link",
    description="Always 202, whether or not the account exists.",
    body=schemas.EmailIn,
    response=schemas.Accepted,
    status=202,
    errors=[429],
    tags=TAGS,
)
async def forgot_password(request: web.Request, body: schemas.EmailIn) -> dict[str, str]:
    await enforce_account_limits(request, str(body.email))
    async with request.app[DB].connection() as conn:
        user = await users.get_user_by_email(conn, str(body.email))
    if user is not None and user["is_active"]:
        config = request.app[CONFIG]
        token, _ = issue(
            config, TokenType.PASSWORD_RESET, str(user["id"]), pwd=password_fingerprint(user["password_hash"])
        )
        await email(
            request, "password_reset", user,
            reset_url=link(request, "/reset-password", token), expires_minutes=config.auth.password_reset_minutes,
        )  # fmt: skip
    return {"status": "accepted"}


@routes.post("/api/v1/auth/reset-password")
@endpoint(
    summary="Set a new password with a reset token (works once)",
    body=schemas.ResetPasswordIn,
    status=204,
    errors=[400],
    tags=TAGS,
)
async def reset_password(request: web.Request, body: schemas.ResetPasswordIn) -> None:
    config = request.app[CONFIG]
    invalid = Problem("The reset link is invalid, expired or already used.", type_slug="invalid-token")
    try:
        claims = verify(config, body.token, TokenType.PASSWORD_RESET)
    except InvalidToken as err:
        raise invalid from err
    async with request.app[DB].connection() as conn:
        user = await users.get_user(conn, uuid.UUID(str(claims["sub"])))
    if user is None or claims.get("pwd") != password_fingerprint(user["password_hash"]):
        raise invalid
    check_password_policy(request, body.new_password, user["email"])
    if not await redis_state.use_once(request.app[REDIS], str(claims["jti"]), float(claims["exp"])):
        raise invalid
    new_hash = await hash_password(body.new_password, config.auth.bcrypt_rounds)
    async with request.app[DB].transaction() as conn:
        await users.set_password(conn, user["id"], new_hash)
        await end_all_sessions(request, conn, user["id"])


@routes.post("/api/v1/auth/verify-email/request")
@endpoint(summary="Email a verification link", response=schemas.Accepted, status=202, guards=[authenticated], tags=TAGS)
async def verify_email_request(request: web.Request) -> dict[str, str]:
    user = current_user(request).user
    if user["email_verified_at"] is None:
        await send_verification(request, user)
    return {"status": "accepted"}


@routes.post("/api/v1/auth/verify-email/confirm")
@endpoint(
    summary="Confirm an email address (the link works once)", body=schemas.TokenIn, status=204, errors=[400], tags=TAGS
)
async def verify_email_confirm(request: web.Request, body: schemas.TokenIn) -> None:
    invalid = Problem("The verification link is invalid, expired or already used.", type_slug="invalid-token")
    try:
        claims = verify(request.app[CONFIG], body.token, TokenType.EMAIL_VERIFICATION)
    except InvalidToken as err:
        raise invalid from err
    if not await redis_state.use_once(request.app[REDIS], str(claims["jti"]), float(claims["exp"])):
        raise invalid
    async with request.app[DB].transaction() as conn:
        user = await users.get_user(conn, uuid.UUID(str(claims["sub"])))
        # The link verifies the address it was sent to, not a later one.
        if user is None or user["email"] != claims.get("email"):
            raise invalid
        if user["email_verified_at"] is None:
            await users.update_user(conn, user["id"], email_verified_at=func.now())


async def confirm_password(request: web.Request, password: str) -> Row:
    user = current_user(request).user
    if not await verify_password(password, user["password_hash"]):
        raise ValidationFailed("The password is not correct.", errors=[{"field": "password", "message": "incorrect"}])
    return user


@routes.post("/api/v1/auth/mfa/enable/request")
@endpoint(
    summary="Start enabling MFA: a code is emailed",
    body=schemas.PasswordIn,
    response=schemas.Accepted,
    status=202,
    guards=[authenticated],
    tags=TAGS,
)
async def mfa_enable_request(request: web.Request, body: schemas.PasswordIn) -> dict[str, str]:
    config = request.app[CONFIG]
    user = await confirm_password(request, body.password)
    if user["mfa_enabled"]:
        raise Conflict("MFA is already enabled.")
    code = redis_state.new_code()
    await redis_state.store_code(
        request.app[REDIS], redis_state.mfa_key("enable", str(user["id"])), user_id=str(user["id"]), code=code,
        secret_key=config.secret_key, ttl_seconds=config.auth.mfa_challenge_minutes * 60,
    )  # fmt: skip
    await email(request, "mfa_code", user, code=code, expires_minutes=config.auth.mfa_challenge_minutes)
    return {"status": "accepted"}


@routes.post("/api/v1/auth/mfa/enable/confirm")
@endpoint(
    summary="Finish enabling MFA with the emailed code",
    body=schemas.CodeIn,
    status=204,
    guards=[authenticated],
    errors=[422],
    tags=TAGS,
)
async def mfa_enable_confirm(request: web.Request, body: schemas.CodeIn) -> None:
    config = request.app[CONFIG]
    me = current_user(request)
    result = await redis_state.check_code(
        request.app[REDIS], redis_state.mfa_key("enable", str(me.id)), user_id=str(me.id), code=body.code,
        secret_key=config.secret_key, max_tries=config.auth.mfa_max_attempts,
    )  # fmt: skip
    if result is not CodeCheck.OK:
        detail = "The code is not correct." if result is CodeCheck.WRONG else "Request a new code."
        raise ValidationFailed(detail, errors=[{"field": "code", "message": str(result)}])
    async with request.app[DB].transaction() as conn:
        await users.update_user(conn, me.id, mfa_enabled=True)


@routes.post("/api/v1/auth/mfa/disable")
@endpoint(
    summary="Turn MFA off (needs the password)", body=schemas.PasswordIn, status=204, guards=[authenticated], tags=TAGS
)
async def mfa_disable(request: web.Request, body: schemas.PasswordIn) -> None:
    user = await confirm_password(request, body.password)
    async with request.app[DB].transaction() as conn:
        await users.update_user(conn, user["id"], mfa_enabled=False)


@routes.get("/api/v1/auth/me")
@endpoint(summary="The signed-in account", response=UserOut, guards=[authenticated], tags=TAGS)
async def me(request: web.Request) -> Row:
    return current_user(request).user
