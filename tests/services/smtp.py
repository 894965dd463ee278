"""A real SMTP server on loopback (aiosmtpd): STARTTLS required, AUTH required after it.

``smtp_server`` is the fixture; ``smtp_running(certs, names)`` the same server as a
context manager, for a certificate with other names.

The handler keeps every accepted mail and can be told to answer a 4xx (an outage) or a
5xx (a rejection) to recipients, or to accept a mail and drop the connection before the
final reply (the mail IS stored; the client cannot know). With ``relay_lmtp`` set it hands
every accepted mail on to that LMTP server (Dovecot, tests/services/imap.py), as a relay's
delivery agent does, unless told to ``hold`` mail (accepted, never delivered).
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.services.certs import CertFactory
from tests.services.common import free_port

USER, PASSWORD = "controlplane", "smtp-secret-password"


@dataclass
class Mailbox:
    """What the server received, and the answers it is told to give."""

    mails: list[Message] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    rcpt_answer: str | None = None  # e.g. "451 4.3.0 try later", "550 5.1.1 no such user"
    drop_after_data: int = 0  # accept this many mails, then close without the 250
    relay_lmtp: tuple[str, int] | None = None  # deliver accepted mail to this LMTP server
    hold: bool = False  # accept mail but never deliver it (a stuck relay queue)

    def message_ids(self) -> list[str]:
        return [str(m["Message-ID"]) for m in self.mails]


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: list[str]) -> str:
        if self.box.rcpt_answer:
            return self.box.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.mails.append(message_from_bytes(envelope.original_content or b"",
                                                 policy=policy.default))
        self.box.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.box.relay_lmtp and not self.box.hold:
            await asyncio.get_running_loop().run_in_executor(
                None, _deliver, self.box.relay_lmtp, envelope.mail_from,
                list(envelope.rcpt_tos), envelope.original_content or b"")
        if self.box.drop_after_data > 0:
            self.box.drop_after_data -= 1
            server.transport.close()  # stored, then the answer is lost
        return "250 Message accepted for delivery"


def _deliver(lmtp: tuple[str, int], mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
    with smtplib.LMTP(*lmtp, timeout=10) as client:
        client.sendmail(mail_from, rcpt_tos, data)


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and \
        auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # aiosmtpd answers 235 or 535


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: str
    box: Mailbox


@contextmanager
def smtp_running(certs: CertFactory, names: list[str] | None = None) -> Iterator[SmtpServer]:
    """The server, with a certificate for ``names`` (default 127.0.0.1 and localhost)."""
    files = certs.server(names or ["127.0.0.1", "localhost"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(files.cert_file), str(files.key_file))
    box = Mailbox()
    port = free_port()
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=port, tls_context=ctx,
                            require_starttls=True, authenticator=_authenticate,
                            auth_require_tls=True)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, str(files.ca_file), box)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server(certs: CertFactory) -> Iterator[SmtpServer]:
    with smtp_running(certs) as server:
        yield server
