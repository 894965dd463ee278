"""Notification channels: base.py holds the contract, one module per integration."""
