"""Status page, check pages and the checks JSON API."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("checks", __name__)
