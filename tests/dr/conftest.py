"""Drill tests reuse the backup tests' environment (age key, catalog, blob store, pipeline)."""

from __future__ import annotations

from tests.backups.conftest import age_key, make_env, source_dsn

__all__ = ["age_key", "make_env", "source_dsn"]
