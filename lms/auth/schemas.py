from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from lms.text import display_text
from lms.users.schemas import UserOut


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr = Field(max_length=255)
    password: str = Field(max_length=200)
    full_name: str = Field(min_length=1, max_length=200)
    # Never "admin": admins are made by an admin or `lms create-admin`.
    role: Literal["student", "instructor"] = "student"

    _full_name = field_validator("full_name")(display_text)


class LoginIn(BaseModel):
    email: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=200)


class TokenForm(BaseModel):
    """OAuth2 password grant (RFC 6749 4.3)."""

    username: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=200)
    grant_type: Literal["password"] | None = None
    scope: str | None = Field(default=None, max_length=1000)


class Tokens(BaseModel):
    user: UserOut
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class OAuthTokens(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class MfaRequired(BaseModel):
    mfa_required: Literal[True] = True
    challenge_token: str
    expires_in: int


class MfaLoginIn(BaseModel):
    challenge_token: str = Field(min_length=1, max_length=2000)
    code: str = Field(pattern=r"^\d{6}$")


class RefreshIn(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=2000)


class LogoutIn(BaseModel):
    refresh_token: str | None = Field(default=None, max_length=2000)


class EmailIn(BaseModel):
    email: EmailStr = Field(max_length=255)


class ResetPasswordIn(BaseModel):
    token: str = Field(min_length=1, max_length=2000)
    new_password: str = Field(max_length=200)


class TokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=2000)


class PasswordIn(BaseModel):
    password: str = Field(min_length=1, max_length=200)


class CodeIn(BaseModel):
    code: str = Field(pattern=r"^\d{6}$")


class Accepted(BaseModel):
    status: Literal["accepted"] = "accepted"
