"""Enumerations the code cannot derive from one another must agree.

Each enumeration is declared once in ``lms/tables.py`` (the Literal the API
models use, its values for the CHECK constraint). What cannot import it
there (the role enum of the permission map, the settings' storage
providers, the database's own CHECK constraints) is compared here.
"""

from __future__ import annotations

from typing import get_args, get_type_hints

import pytest
from sqlalchemy import CheckConstraint

from lms.auth.permissions import Role
from lms.config import StorageSettings
from lms.tables import DIFFICULTY_LEVELS, ROLES, STORAGE_PROVIDERS, courses

pytestmark = pytest.mark.no_services


def test_the_permission_map_knows_every_role() -> None:
    assert tuple(Role) == ROLES


def test_the_settings_offer_every_storage_provider() -> None:
    assert get_args(get_type_hints(StorageSettings)["provider"]) == STORAGE_PROVIDERS


def test_a_nullable_enumeration_allows_null_and_its_values() -> None:
    checks = [c for c in courses.constraints if isinstance(c, CheckConstraint)]
    [check] = [c for c in checks if c.name == "ck_courses_difficulty_level_valid"]
    listed = ", ".join(f"'{v}'" for v in DIFFICULTY_LEVELS)
    # The text migration 0001 created: the constraint is the same, only declared once.
    assert str(check.sqltext) == f"difficulty_level IS NULL OR difficulty_level IN ({listed})"
