"""Admin-token auth for anything that changes state (``Authorization: Bearer …``).

The token is taken only from the Authorization header with the Bearer scheme (any case,
RFC 9110); a bare token, another scheme or a token in the query string is refused, so the
token never lands in access logs or browser history.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import jsonify, request

from controlplane.web import runtime

F = TypeVar("F", bound=Callable[..., Any])


def bearer_token(header: str) -> str | None:
    """The credentials of ``Bearer <token>`` (scheme in any case), else None."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_admin(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        token = runtime().config.web.admin_token
        if token is None or not token.get_secret_value():
            return jsonify(error="admin API disabled: set web.admin_token in the config"), 403
        given = bearer_token(request.headers.get("Authorization", ""))
        if given is None or not hmac.compare_digest(given.encode(),
                                                    token.get_secret_value().encode()):
            resp = jsonify(error="missing or wrong admin token: send it as "
                                 "'Authorization: Bearer <web.admin_token>'")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="controlplane"'
            return resp, 401
        return fn(*args, **kwargs)

    return cast(F, wrapper)
