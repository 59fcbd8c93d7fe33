"""The one packaging fact pyproject.toml cannot state: the top-level ``migrations/`` folder ships as ``lms.migrations``.

pyproject.toml's package discovery cannot add a package that lives outside
its parent's folder, and Alembic's revisions stay at the top level where the
team adds them. This maps the folder into the ``lms`` package for wheels and
editable installs alike, so both find it with ``importlib.resources``
(``lms.migrate``), and nothing but ``lms``, ``realtime`` and ``jobs`` lands in
site-packages. Everything else is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=[
        *find_namespace_packages(include=["lms*", "realtime*", "jobs*"], exclude=["lms.assets.node_modules*"]),
        "lms.migrations",
    ],
    package_dir={"lms.migrations": "migrations"},
)
