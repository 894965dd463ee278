"""What admin CLI commands share: reaching a running control plane, or the store instead.

Commands that change state (`silence`, `oncall override`) work on a running control plane
through ``/api/v1`` with the admin token when ``--url`` (or ``$CONTROLPLANE_URL``) is given,
so the change takes effect at once, and on the configured store directly otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from controlplane.cli import EXIT_ERROR, EXIT_OK, err

if TYPE_CHECKING:  # urllib.request (http.client, email, ssl) loads when a command calls out,
    # not when the CLI's parser is built
    import urllib.error


class NotFound(ValueError):
    """The control plane answered 404 for the object asked for."""


def admin_args(p: argparse.ArgumentParser) -> None:
    """--config for the store, --url and --token for a running control plane."""
    p.add_argument("--config", metavar="FILE",
                   help="main config file (default: $CONTROLPLANE_CONFIG or ./controlplane.yaml)")
    p.add_argument("--url", metavar="URL",
                   help="a running control plane, e.g. http://127.0.0.1:8080 (default: "
                        "$CONTROLPLANE_URL; without it the configured store is used)")
    p.add_argument("--token", metavar="TOKEN",
                   help="admin token for --url (default: $CONTROLPLANE_ADMIN_TOKEN)")


def api_url(args: argparse.Namespace) -> str | None:
    url: str | None = args.url or os.environ.get("CONTROLPLANE_URL")
    return url.rstrip("/") if url else None


def call(args: argparse.Namespace, method: str, path: str,
         body: dict[str, Any] | None = None) -> Any:
    """One call to the running control plane; ValueError says what went wrong and what to do."""
    import urllib.error
    import urllib.request

    base = api_url(args)
    token = args.token or os.environ.get("CONTROLPLANE_ADMIN_TOKEN")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    req = urllib.request.Request(f"{base}{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, base) from None
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        raise ValueError(f"cannot reach {base}: {reason}; check --url or $CONTROLPLANE_URL") \
            from None


def _http_error(exc: urllib.error.HTTPError, base: str | None) -> ValueError:
    if exc.code == 401:
        return ValueError(f"{base} refused the admin token (HTTP 401); pass --token or set "
                          "$CONTROLPLANE_ADMIN_TOKEN")
    try:
        body = json.loads(exc.read())
    except ValueError:
        body = {}
    problems = body.get("problems") if isinstance(body, dict) else None
    message = "; ".join(str(p).removeprefix("body: ") for p in problems) if problems else (
        body.get("error") if isinstance(body, dict) else None) or f"HTTP {exc.code}"
    return (NotFound if exc.code == 404 else ValueError)(message)


def remove(args: argparse.Namespace, path: str, on_store: Callable[[], bool | None], *,
           what: str, done: str, listing: str) -> int:
    """DELETE ``path`` on the running control plane, or call ``on_store`` without --url.

    ``on_store`` answers whether there was such an object (None: it could not open the
    store and has said why). Prints ``"{what} {done}"`` and returns the exit code; an
    unknown id names the command that lists the ids (``listing``).
    """
    found: bool | None = True
    if not api_url(args):
        found = on_store()
    else:
        try:
            call(args, "DELETE", path)
        except NotFound:
            found = False
        except ValueError as exc:
            err(str(exc))
            found = None
    if found is None:
        return EXIT_ERROR
    if not found:
        err(f"no {what}; `{listing}` shows the ids")
        return EXIT_ERROR
    print(f"{what} {done}")
    return EXIT_OK


def parse_time(text: str | None, flag: str) -> datetime | None:
    """An ISO time from the command line, UTC when it names no zone."""
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{flag}: {text!r} is not an ISO time; write 2026-11-26T23:00:00Z") \
            from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
