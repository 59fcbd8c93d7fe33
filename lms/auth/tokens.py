"""JSON Web Tokens with PyJWT: one function to issue, one to verify, per-type lifetimes.

Every token carries ``typ`` and is refused where another type is expected.
The accepted algorithm list is pinned to the configured HMAC algorithm, so
``alg: none`` and algorithm confusion are refused by PyJWT itself.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from lms.config import AuthSettings, Settings


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    PASSWORD_RESET = "password_reset"
    EMAIL_VERIFICATION = "email_verification"
    MFA_CHALLENGE = "mfa_challenge"


class InvalidToken(Exception):
    """Expired, tampered, of the wrong type or otherwise unusable.

    The message is for logs (it may quote PyJWT's decoder); tell clients
    only :attr:`public_message`.
    """

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired

    @property
    def public_message(self) -> str:
        return "expired" if self.expired else "not valid"


def lifetime(auth: AuthSettings, typ: TokenType) -> timedelta:
    return {
        TokenType.ACCESS: timedelta(minutes=auth.access_token_minutes),
        TokenType.REFRESH: timedelta(days=auth.refresh_token_days),
        TokenType.PASSWORD_RESET: timedelta(minutes=auth.password_reset_minutes),
        TokenType.EMAIL_VERIFICATION: timedelta(minutes=auth.email_verification_minutes),
        TokenType.MFA_CHALLENGE: timedelta(minutes=auth.mfa_challenge_minutes),
    }[typ]


def issue(
    config: Settings, typ: TokenType, subject: str, *, now: datetime | None = None, **claims: Any
) -> tuple[str, dict[str, Any]]:
    """A signed token and its claims (``jti`` is generated unless given)."""
    now = now or datetime.now(UTC)
    payload: dict[str, Any] = {
        "sub": subject,
        "typ": typ.value,
        "jti": claims.pop("jti", None) or uuid.uuid4().hex,
        # Millisecond precision: "revoke everything issued up to now" must not
        # also catch a token issued a moment later in the same second.
        "iat": round(now.timestamp(), 3),
        "exp": int((now + lifetime(config.auth, typ)).timestamp()),
        "iss": config.auth.issuer,
        **claims,
    }
    return jwt.encode(payload, config.secret_key, algorithm=config.auth.algorithm), payload


def verify(config: Settings, token: str, expected: TokenType) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            config.secret_key,
            algorithms=[config.auth.algorithm],
            issuer=config.auth.issuer,
            options={"require": ["sub", "typ", "jti", "iat", "exp"]},
        )
    except jwt.ExpiredSignatureError as err:
        raise InvalidToken("token expired", expired=True) from err
    except jwt.PyJWTError as err:
        raise InvalidToken(f"invalid token: {err}") from err
    if claims.get("typ") != expected.value:
        raise InvalidToken(f"expected a {expected.value} token")
    return claims
