"""Admin-token auth for anything that changes state (``Authorization: Bearer …``)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import jsonify, request

from controlplane.web import runtime

F = TypeVar("F", bound=Callable[..., Any])


def require_admin(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = runtime().config.web.admin_token
        if token is None or not token.get_secret_value():
            return jsonify(error="admin API disabled: set web.admin_token in the config"), 403
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            return jsonify(error="missing or wrong admin token (Authorization: Bearer …)"), 401
        return fn(*args, **kwargs)

    return cast(F, wrapper)
