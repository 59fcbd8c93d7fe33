"""`lms create-admin`: the one way to make the first admin."""

from __future__ import annotations

import uuid

from lms.auth.passwords import hash_password, policy_errors
from lms.clients import open_database
from lms.config import Settings
from lms.db import IntegrityViolation, is_unique_violation
from lms.users.queries import create_user


class AdminError(Exception):
    pass


async def create_admin_account(config: Settings, *, email: str, full_name: str, password: str) -> uuid.UUID:
    email = email.strip().lower()
    if "@" not in email or not full_name.strip():
        raise AdminError("an email address and a name are required")
    errors = policy_errors(password, email=email, min_length=config.auth.password_min_length)
    if errors:
        raise AdminError("; ".join(e["message"] for e in errors))
    password_hash = await hash_password(password, config.auth.bcrypt_rounds)
    db = await open_database(config.database, pool_max=1)
    try:
        async with db.transaction() as conn:
            user = await create_user(
                conn, email=email, password_hash=password_hash, full_name=full_name.strip(), role="admin"
            )
    except IntegrityViolation as err:
        if is_unique_violation(err, "uq_users_email"):
            raise AdminError(f"an account with {email} already exists") from err
        raise
    finally:
        await db.close()
    return uuid.UUID(str(user["id"]))
