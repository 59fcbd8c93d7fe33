"""Alembic's environment and revisions, installed as the ``lms.migrations`` package (see setup.py)."""
