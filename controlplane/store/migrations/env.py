"""Alembic environment: runs on the connection controlplane.store.migrate hands it.

There is no alembic.ini: ``controlplane db upgrade`` (and every Store on open) configures
Alembic in code (controlplane/store/migrate.py), so the migrations ship inside the package.
The models' metadata is handed in only to write a new revision (``controlplane db
revision``); upgrading needs none, so the store never imports a feature.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection,
                  target_metadata=context.config.attributes.get("metadata"),
                  render_as_batch=connection.dialect.name == "sqlite",
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
