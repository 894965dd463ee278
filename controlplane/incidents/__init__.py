"""Incidents: one per (check, env), notified through a durable outbox (see docs/incidents.md)."""
