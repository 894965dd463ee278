"""Persistence: SQLAlchemy models and queries (SQLite by default, PostgreSQL by DSN)."""

from __future__ import annotations

from controlplane.store.db import Base, Store

__all__ = ["Base", "Store"]
