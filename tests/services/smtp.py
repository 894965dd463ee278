"""A real SMTP server on loopback (aiosmtpd) with STARTTLS required and AUTH LOGIN/PLAIN.

``with smtp_server() as srv:`` yields host, port, user, password and the CA file that
trusts its certificate; accepted messages are kept in ``srv.messages``.
"""

from __future__ import annotations

import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.services.certs import CertFactory
from tests.services.common import free_port

USER = "alerts@techhalo.test"
PASSWORD = "s3cret-smtp-pass"


@dataclass
class SmtpServer:
    host: str
    port: int
    user: str
    password: str
    ca_file: Path
    messages: list[tuple[Envelope, Message]] = field(default_factory=list)


class _Keep:
    """aiosmtpd handler: accept every message and keep it."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.server.messages.append((envelope, message_from_bytes(content)))
        return "250 OK"


def _authenticator(user: str, password: str) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
              auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and \
            auth_data.login.decode() == user and auth_data.password.decode() == password
        return AuthResult(success=ok, handled=False)
    return check


@contextmanager
def smtp_server(directory: Path | None = None, *, names: list[str] | None = None,
                user: str = USER, password: str = PASSWORD) -> Iterator[SmtpServer]:
    """An SMTP server with a certificate for ``names`` (default localhost, 127.0.0.1)."""
    with tempfile.TemporaryDirectory(prefix="cp-smtp-") as tmp:
        files = CertFactory(directory or Path(tmp)).server(names or ["localhost", "127.0.0.1"])
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(files.cert_file), str(files.key_file))
        server = SmtpServer("127.0.0.1", free_port(), user, password, files.ca_file)
        controller = Controller(_Keep(server), hostname=server.host, port=server.port,
                                server_hostname="mail.techhalo.test", tls_context=ctx,
                                require_starttls=True, auth_require_tls=True,
                                authenticator=_authenticator(user, password))
        controller.start()
        try:
            yield server
        finally:
            controller.stop()


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    with smtp_server(tmp_path / "smtp-certs") as server:
        yield server
