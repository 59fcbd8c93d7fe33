"""Roles and what each may do: the one place the permission map lives."""

from __future__ import annotations

from enum import StrEnum


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


def has_permission(role: str, permission: Permission) -> bool:
    try:
        return permission in ROLE_PERMISSIONS[Role(role)]
    except ValueError:
        return False
