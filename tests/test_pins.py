"""python-socketio and python-engineio are the minors realtime/'s overrides were written for (realtime/pins.py)."""

from __future__ import annotations

import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from realtime.pins import WRITTEN_FOR

pytestmark = pytest.mark.no_services

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def minor(text: str) -> str:
    return ".".join(text.split(".")[:2])


@pytest.mark.parametrize("distribution", sorted(WRITTEN_FOR))
def test_the_installed_minor_is_the_one_the_overrides_were_written_for(distribution: str) -> None:
    installed = version(distribution)
    assert minor(installed) == WRITTEN_FOR[distribution], (
        f"{distribution} {installed} is installed, but realtime/ overrides private parts of "
        f"{distribution} {WRITTEN_FOR[distribution]}: read them against the new version first (realtime/pins.py)"
    )


@pytest.mark.parametrize("distribution", sorted(WRITTEN_FOR))
def test_pyproject_pins_that_minor(distribution: str) -> None:
    written = WRITTEN_FOR[distribution]
    major, number = written.split(".")
    expected = f"{distribution}>={written},<{major}.{int(number) + 1}"
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    assert expected in dependencies, f"pyproject.toml should pin {expected!r} (realtime/pins.py)"
