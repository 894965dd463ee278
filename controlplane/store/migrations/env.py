"""Alembic environment: runs on the connection controlplane.store.migrate hands it.

There is no alembic.ini: ``controlplane db upgrade`` (and every Store on open) configures
Alembic in code (controlplane/store/migrate.py), so the migrations ship inside the package.
"""

from __future__ import annotations

from alembic import context

from controlplane.features import table_metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=table_metadata(),
                  render_as_batch=connection.dialect.name == "sqlite",
                  compare_type=True)
with context.begin_transaction():
    context.run_migrations()
