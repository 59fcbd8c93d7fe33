"""Roles and what each may do: the one place the permission map and the ownership rule live.

A permission says what a role may do at all (``course:create``); ownership
says on which things: an instructor changes *their own* courses. Both are
checked in the same way by REST guards, Socket.IO namespaces and jobs.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Protocol


class Role(StrEnum):
    ADMIN = "admin"
    INSTRUCTOR = "instructor"
    STUDENT = "student"


class Permission(StrEnum):
    CREATE_COURSE = "course:create"
    UPDATE_COURSE = "course:update"
    DELETE_COURSE = "course:delete"
    VIEW_ANALYTICS = "analytics:view"
    MANAGE_ENROLLMENTS = "enrollments:manage"
    MANAGE_USERS = "users:manage"
    MANAGE_QUIZZES = "quizzes:manage"
    ENROLL = "course:enroll"
    HOST_LIVE = "live:host"
    # Refunds, the payments list and flagged payments (admins only).
    MANAGE_PAYMENTS = "payments:manage"
    # Revoking certificates (admins only).
    MANAGE_CERTIFICATES = "certificates:manage"
    # The whole platform's figures (admins only); VIEW_ANALYTICS is a course's or an instructor's own.
    VIEW_PLATFORM_ANALYTICS = "analytics:platform"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    # Instructors act on their own courses; ownership is checked per resource.
    Role.INSTRUCTOR: frozenset(
        {
            Permission.CREATE_COURSE,
            Permission.UPDATE_COURSE,
            Permission.DELETE_COURSE,
            Permission.VIEW_ANALYTICS,
            Permission.MANAGE_QUIZZES,
            Permission.HOST_LIVE,
        }
    ),
    Role.STUDENT: frozenset({Permission.ENROLL}),
}

# Roles a person may pick at registration; admins are made by an admin or `lms create-admin`.
SELF_SERVICE_ROLES = (Role.STUDENT, Role.INSTRUCTOR)


def roles_with(*permissions: Permission) -> list[str]:
    """The roles that have every one of ``permissions`` (to tell a refused caller who may)."""
    return [str(role) for role, granted in ROLE_PERMISSIONS.items() if granted.issuperset(permissions)]


def has_permission(role: str, permission: Permission) -> bool:
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False


class Actor(Protocol):
    """Whoever acts: a request's :class:`~lms.auth.guards.Principal`, or a socket connection's."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def role(self) -> str: ...


def owner_or_admin(actor: Actor | None, owner_id: object) -> bool:
    """The one ownership rule: the owner of a thing (a course, an upload, an enrollment's student) or an admin."""
    return actor is not None and (actor.role == Role.ADMIN or actor.id == owner_id)
