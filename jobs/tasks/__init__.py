"""Every task the workers run, collected from the task modules' tables."""

from __future__ import annotations

from jobs.registry import JobSpec
from jobs.tasks import certificates, diagnostics, email, learning, live, maintenance, payments, quizzes, reports


def all_specs() -> dict[str, JobSpec]:
    specs = [
        *email.tasks.specs,
        *reports.tasks.specs,
        *maintenance.tasks.specs,
        *diagnostics.tasks.specs,
        *learning.tasks.specs,
        *quizzes.tasks.specs,
        *live.tasks.specs,
        *payments.tasks.specs,
        *certificates.tasks.specs,
    ]
    by_name = {spec.name: spec for spec in specs}
    assert len(by_name) == len(specs), "two tasks share a name"
    return by_name
