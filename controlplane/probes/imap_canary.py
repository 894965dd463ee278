"""The receiving half of the `smtp` canary: wait for the canary in an IMAP mailbox.

The relay accepting a message proves little (a relay queues happily while delivery is
broken); the canary is judged delivered only when it shows up in the mailbox it was sent
to. This logs in over TLS (implicit, port 993, or STARTTLS on 143; the certificate is
verified), selects the mailbox and polls ``SEARCH HEADER X-Controlplane-Canary <token>``
until the message is there or ``receive_within`` has passed, then deletes it and any
earlier canaries of the same check that arrived too late, so the mailbox does not fill.
"""

from __future__ import annotations

import imaplib
import logging
import re
import socket
import ssl
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from controlplane.durations import Duration
from controlplane.probes.findings import Deadline

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Controlplane-Canary"
CHECK_HEADER = "X-Controlplane-Check"


class ImapCanaryConfig(BaseModel):
    """Where the `smtp` check's canary must arrive."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(default=993, ge=1, le=65535)
    security: Literal["tls", "starttls"] = "tls"
    user: str
    password: SecretStr
    mailbox: str = "INBOX"
    ca_file: str | None = Field(default=None, description="PEM bundle to trust; default: the "
                                "system trust store")
    verify_hostname: bool = True
    receive_within: Duration = Field(default=60.0, gt=0,
                                     description="the canary must be in the mailbox by then")
    poll_interval: Duration = Field(default=1.0, gt=0)

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class ImapFailed(Exception):
    """The mailbox could not be read, or the canary did not arrive: the run fails."""


def receive(cfg: ImapCanaryConfig, check_id: str, token: str, deadline: Deadline,
            details: dict[str, Any]) -> float:
    """Seconds from now until the canary ``token`` was found in the mailbox.

    Raises :class:`ImapFailed` (failing) with a message naming what went wrong; a server that
    stops answering raises TimeoutError (the caller's error)."""
    t0 = time.monotonic()
    until = min(t0 + cfg.receive_within, deadline.end)
    imap = _login(cfg, deadline)
    try:
        _select(imap, cfg)
        found = _poll(imap, cfg, token, until)
        waited = time.monotonic() - t0
        if found is None:
            raise ImapFailed(f"the canary did not arrive in {cfg.user}'s {cfg.mailbox} on IMAP "
                             f"{cfg.target} within {cfg.receive_within:g}s (the relay "
                             "accepted it; delivery is late or broken)")
        details["imap_stale_canaries_removed"] = _clean(imap, check_id, found)
        return waited
    finally:
        _logout(imap)


def _login(cfg: ImapCanaryConfig, deadline: Deadline) -> imaplib.IMAP4:
    ctx = ssl.create_default_context(cafile=cfg.ca_file)
    ctx.check_hostname = cfg.verify_hostname
    where = f"IMAP {cfg.target}"
    try:
        if cfg.security == "tls":
            imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(cfg.host, cfg.port, ssl_context=ctx,
                                                    timeout=deadline.budget())
        else:
            imap = imaplib.IMAP4(cfg.host, cfg.port, timeout=deadline.budget())
    except ssl.SSLCertVerificationError as exc:
        raise ImapFailed(f"{where}: certificate verify failed: {exc.verify_message}") from None
    except socket.gaierror:
        raise ImapFailed(f"{where}: cannot resolve {cfg.host}") from None
    except ConnectionRefusedError:
        raise ImapFailed(f"{where}: cannot connect: connection refused") from None
    except ssl.SSLError as exc:
        raise ImapFailed(f"{where}: TLS handshake failed: {exc.reason or exc}") from None
    try:
        if cfg.security == "starttls":
            try:
                imap.starttls(ssl_context=ctx)
            except ssl.SSLCertVerificationError as exc:
                raise ImapFailed(f"{where}: certificate verify failed: "
                                 f"{exc.verify_message}") from None
            except imaplib.IMAP4.error:
                raise ImapFailed(f"{where} does not offer STARTTLS") from None
        try:
            imap.login(cfg.user, cfg.password.get_secret_value())
        except imaplib.IMAP4.error as exc:
            # the server's text is not copied: only its response code (never the password)
            raise ImapFailed(f"{where}: login refused for user {cfg.user!r} "
                             f"({_code(exc) or 'NO'}: wrong user or password)") from None
    except BaseException:
        _logout(imap)
        raise
    return imap


def _select(imap: imaplib.IMAP4, cfg: ImapCanaryConfig) -> None:
    typ, _ = imap.select(_quote(cfg.mailbox))
    if typ != "OK":
        raise ImapFailed(f"IMAP {cfg.target}: mailbox {cfg.mailbox!r} of {cfg.user} cannot be "
                         "selected (does it exist?)")


def _poll(imap: imaplib.IMAP4, cfg: ImapCanaryConfig, token: str, until: float) -> bytes | None:
    """The message number of the canary, or None once ``until`` has passed."""
    while True:
        imap.sock.settimeout(max(until - time.monotonic(), 0.5))
        imap.noop()  # a selected mailbox shows new mail only after a command
        typ, data = imap.search(None, "HEADER", TOKEN_HEADER, token)
        numbers = (data[0] or b"").split() if typ == "OK" and data else []
        if numbers:
            return numbers[0]
        left = until - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(cfg.poll_interval, left))


def _clean(imap: imaplib.IMAP4, check_id: str, found: bytes) -> int:
    """Delete the canary and earlier ones of this check; how many earlier ones there were."""
    typ, data = imap.search(None, "HEADER", CHECK_HEADER, _quote(check_id))
    numbers = set((data[0] or b"").split()) if typ == "OK" and data else set()
    numbers.add(found)
    imap.store(",".join(n.decode() for n in sorted(numbers, key=int)), "+FLAGS", "\\Deleted")
    imap.expunge()
    return len(numbers) - 1


def _logout(imap: imaplib.IMAP4) -> None:
    try:
        imap.logout()
    except (imaplib.IMAP4.error, OSError):
        try:
            imap.shutdown()
        except OSError:
            log.debug("imap shutdown failed after logout failed")


def _code(exc: imaplib.IMAP4.error) -> str:
    """The bracketed response code of an IMAP error (AUTHENTICATIONFAILED, …), if any."""
    text = exc.args[0] if exc.args else ""
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    match = re.match(r"\s*\[([A-Z-]+)", text)
    return match.group(1) if match else ""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
