"""Logical Postgres backups: pg_dump -> age -> blob storage, with a catalog and retention."""
