"""`smtp` checks: connect, STARTTLS (or implicit TLS), certificate, EHLO, AUTH, a canary mail.

The certificate is judged by the `tls` kind's rules on a handshake of its own (after
STARTTLS on 587, straight TLS on 465), so an untrusted, wrong-name or expiring certificate
reads exactly as a `tls` check says it; then smtplib opens the session with a verifying
context, logs in and, with ``canary_to``, sends one message the server must accept; with
``imap`` that message must then arrive in the recipient's mailbox within ``receive_within``
(controlplane/probes/imap_canary.py).
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import time
import uuid
from email.message import EmailMessage
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Deadline, Findings, TlsRules, judge_tls
from controlplane.probes.imap_canary import (
    CHECK_HEADER,
    TOKEN_HEADER,
    ImapCanaryConfig,
    ImapFailed,
    receive,
)
from controlplane.probes.starttls import smtp_starttls_handshake
from controlplane.results import Status

log = logging.getLogger(__name__)


class SmtpCheckConfig(CheckConfig):
    kind: Literal["smtp"] = "smtp"
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    tls_rules: TlsRules = Field(default_factory=TlsRules)
    user: str = Field(default="", description="empty: no AUTH")
    password: SecretStr = SecretStr("")
    canary_from: str | None = None
    canary_to: str | None = Field(default=None, description="send one message here each run")
    imap: ImapCanaryConfig | None = Field(default=None, description="the canary must arrive "
                                          "in this mailbox (canary_to's)")

    @model_validator(mode="after")
    def _canary(self) -> SmtpCheckConfig:
        if bool(self.canary_from) != bool(self.canary_to):
            raise ValueError("canary_from and canary_to go together: set both or neither")
        if self.imap and not self.canary_to:
            raise ValueError("imap needs a canary to look for: you must specify canary_from "
                             "and canary_to (the address of the imap mailbox)")
        if self.imap and self.imap.receive_within >= self.timeout:
            raise ValueError(f"imap.receive_within ({self.imap.receive_within:g}s) must be "
                             f"shorter than the check's timeout ({self.timeout:g}s): raise "
                             "timeout or lower receive_within")
        return self

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"


class SmtpProbe(Probe[SmtpCheckConfig]):
    kind = "smtp"
    config_model = SmtpCheckConfig

    def check(self) -> Outcome:
        c = self.config
        deadline = Deadline(c.timeout)
        found = Findings()
        metrics: dict[str, float | None] = {}
        details: dict[str, Any] = {"target": c.target, "security": c.security}
        if c.security != "none":
            handshaker = smtp_starttls_handshake if c.security == "starttls" else None
            if not judge_tls(found, c.host, c.port, c.tls_rules, deadline, metrics, details,
                             handshaker):
                return found.outcome("", metrics, details)
        try:
            token = self._session(found, metrics, details, deadline)
        except _Failed as exc:
            found.add(exc.step, Status.FAILING, str(exc))
            return found.outcome("", metrics, details)
        except TimeoutError:
            raise ProbeError(f"SMTP {c.target}: no answer within {c.timeout:g}s") from None
        ok = f"SMTP {c.target}: {details.get('banner_host') or 'server'} accepted " \
             f"{'STARTTLS, ' if c.security == 'starttls' else ''}" \
             f"{'AUTH' if c.user else 'EHLO'}" + (", canary sent" if c.canary_to else "")
        if c.imap and token:
            received = self._receive(c.imap, token, found, metrics, details, deadline)
            if received is not None:
                ok = ok.removesuffix(", canary sent") + \
                    f", canary received by IMAP in {received:.1f}s"
        return found.outcome(ok, metrics, details)

    def _receive(self, imap: ImapCanaryConfig, token: str, found: Findings,
                 metrics: dict[str, float | None], details: dict[str, Any],
                 deadline: Deadline) -> float | None:
        """Wait for the canary in the IMAP mailbox; its delivery time, None if it failed."""
        details["imap"] = {"target": imap.target, "user": imap.user, "mailbox": imap.mailbox}
        t0 = time.monotonic()
        try:
            waited = receive(imap, self.config.id, token, deadline, details)
        except ImapFailed as exc:
            found.add("receive", Status.FAILING, str(exc), time.monotonic() - t0)
            return None
        except TimeoutError:
            raise ProbeError(f"IMAP {imap.target}: no answer within "
                             f"{self.config.timeout:g}s") from None
        metrics["canary_receive_s"] = round(waited, 6)
        found.add("receive", message=f"in {imap.user}'s {imap.mailbox} after {waited:.1f}s",
                  duration_s=waited)
        return waited

    def _session(self, found: Findings, metrics: dict[str, float | None],
                 details: dict[str, Any], deadline: Deadline) -> str | None:
        """The SMTP conversation; the canary's token when one was accepted."""
        c = self.config
        ctx = ssl.create_default_context(cafile=c.tls_rules.ca_file)
        ctx.check_hostname = c.tls_rules.verify_hostname
        t0 = time.monotonic()
        try:
            if c.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(c.host, c.port, timeout=deadline.budget(),
                                                      context=ctx)
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=deadline.budget())
        except socket.gaierror:
            raise _Failed("connect", f"cannot resolve {c.host}") from None
        except ConnectionRefusedError:
            raise _Failed("connect", f"cannot connect to {c.target}: connection refused") \
                from None
        except smtplib.SMTPException as exc:
            raise _Failed("connect", f"SMTP {c.target}: {_reply(exc)}") from None
        metrics["connect_s"] = round(time.monotonic() - t0, 6)
        try:
            return self._converse(smtp, ctx, found, metrics, details, deadline)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def _converse(self, smtp: smtplib.SMTP, ctx: ssl.SSLContext, found: Findings,
                  metrics: dict[str, float | None], details: dict[str, Any],
                  deadline: Deadline) -> str | None:
        c = self.config
        code, banner = smtp.ehlo("controlplane")
        if code != 250:
            raise _Failed("ehlo", f"SMTP {c.target}: EHLO refused ({code})")
        details["banner_host"] = banner.decode(errors="replace").splitlines()[0].split()[0] \
            if banner else None
        if c.security == "starttls":
            smtp.starttls(context=ctx)
            smtp.ehlo("controlplane")
        details["extensions"] = sorted(smtp.esmtp_features)
        found.add("ehlo", message=" ".join(details["extensions"]))
        if c.user:
            t0 = time.monotonic()
            try:
                smtp.login(c.user, c.password.get_secret_value())
            except smtplib.SMTPAuthenticationError as exc:
                raise _Failed("auth", f"SMTP {c.target}: authentication failed for user "
                              f"{c.user!r} ({exc.smtp_code}: wrong user or password)") from None
            except smtplib.SMTPNotSupportedError:
                raise _Failed("auth", f"SMTP {c.target} offers no AUTH on this connection") \
                    from None
            metrics["auth_s"] = round(time.monotonic() - t0, 6)
            found.add("auth", message=f"as {c.user}", duration_s=metrics["auth_s"] or 0)
        return self._canary(smtp, found, metrics, deadline) if c.canary_to else None

    def _canary(self, smtp: smtplib.SMTP, found: Findings, metrics: dict[str, float | None],
                deadline: Deadline) -> str:
        c = self.config
        deadline.budget()
        token = uuid.uuid4().hex
        msg = EmailMessage()
        msg["From"], msg["To"] = c.canary_from, c.canary_to
        msg["Subject"] = f"controlplane canary {token}"
        msg[CHECK_HEADER] = c.id
        msg[TOKEN_HEADER] = token
        msg.set_content("Sent by the 360Voice control plane to prove mail still flows.\n")
        t0 = time.monotonic()
        try:
            refused = smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _Failed("canary", f"SMTP {c.target} refused the canary recipient "
                          f"{c.canary_to} ({_codes(exc.recipients)})") from None
        except smtplib.SMTPException as exc:
            raise _Failed("canary", f"SMTP {c.target} did not accept the canary: "
                          f"{_reply(exc)}") from None
        metrics["canary_s"] = round(time.monotonic() - t0, 6)
        if refused:
            raise _Failed("canary", f"SMTP {c.target} refused {', '.join(refused)}")
        found.add("canary", message=f"accepted for {c.canary_to} ({msg['Subject']})",
                  duration_s=metrics["canary_s"] or 0)
        return token


class _Failed(Exception):
    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step


def _reply(exc: smtplib.SMTPException) -> str:
    code = getattr(exc, "smtp_code", None)
    text = getattr(exc, "smtp_error", b"")
    text = text.decode(errors="replace") if isinstance(text, bytes) else str(text or exc)
    return f"{code} {text}".strip() if code else (text or type(exc).__name__)


def _codes(recipients: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{code}" for code, _ in recipients.values())
