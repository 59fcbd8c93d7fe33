from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from lms.api.pagination import PageQuery
from lms.tables import RoleName
from lms.text import display_text


def _clean_name(value: str) -> str:
    return display_text(value)


class UserOut(BaseModel):
    """What the API shows of an account. Never the password hash."""

    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str
    full_name: str
    role: RoleName
    is_active: bool
    mfa_enabled: bool
    email_verified_at: datetime | None
    created_at: datetime
    last_login_at: datetime | None
    metadata: dict[str, Any] = {}


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: EmailStr = Field(max_length=255)
    password: str = Field(max_length=200)
    full_name: str = Field(min_length=1, max_length=200)
    role: RoleName = "student"
    is_active: bool = True

    _name = field_validator("full_name")(_clean_name)


class ProfileUpdate(BaseModel):
    """What a person may change about themselves (not role, not activity)."""

    model_config = ConfigDict(extra="forbid")
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    metadata: dict[str, Any] | None = None

    @field_validator("full_name")
    @classmethod
    def clean(cls, value: str | None) -> str | None:
        return None if value is None else _clean_name(value)

    @field_validator("metadata")
    @classmethod
    def small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(str(value)) > 10_000:
            raise ValueError("must be under 10 kB")
        return value


class AdminUserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    full_name: str | None = Field(default=None, min_length=1, max_length=200)
    role: RoleName | None = None
    is_active: bool | None = None

    @field_validator("full_name")
    @classmethod
    def clean(cls, value: str | None) -> str | None:
        return None if value is None else _clean_name(value)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str = Field(max_length=200)
    new_password: str = Field(max_length=200)


class UserListQuery(PageQuery):
    role: RoleName | None = None
    is_active: bool | None = None
    q: str | None = Field(default=None, max_length=100)
