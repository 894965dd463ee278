"""Email over SMTP: STARTTLS (or implicit TLS) and authentication, never in clear text.

One mail per notification; later mails of an incident answer the first (``In-Reply-To``
and ``References`` carry its Message-ID), so a mail client shows one thread.

Idempotency: SMTP cannot be asked what it received, so a mail whose answer was lost is
sent again. Every mail's Message-ID is derived from the outbox entry's idempotency key,
so the repeat is the same message to the receiving side (mail stores and clients drop a
second copy of a Message-ID); delivery is at least once, never a different second mail.

Errors: a 4xx reply, a dropped connection or a timeout are retried; a 5xx reply (bad
credentials, refused sender or recipient, rejected content), a server that does not offer
STARTTLS or a certificate that does not verify are permanent.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from controlplane.durations import Duration
from controlplane.notifiers.base import (
    Clock,
    Event,
    FilteredConfig,
    Incident,
    Notification,
    Notifier,
    Refs,
    Severity,
    TransportError,
    duration_text,
    summary,
    system_clock,
)

log = logging.getLogger(__name__)

EMAIL_EVENTS: tuple[Event, ...] = ("open", "acknowledge", "resolve")
# Subjects are at most 200 characters: no folding (some folders start the value on a line
# of its own, which readers then show with a leading space).
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)


class EmailConfig(FilteredConfig):
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "tls"] = Field(default="starttls", description=(
        "starttls: plain connection upgraded with STARTTLS (port 587); tls: TLS from the "
        "first byte (port 465)"))
    username: str = ""
    password: SecretStr | None = None
    sender: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[str] = Field(min_length=1)
    min_severity: Severity = "major"
    events: list[Event] = Field(default_factory=lambda: list(EMAIL_EVENTS))
    ca_file: str | None = None
    timeout: Duration = 15.0

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if "@" not in a or any(c.isspace() for c in a)]
        if bad:
            raise ValueError(f"not an email address: {', '.join(bad)}")
        return v


class EmailNotifier(Notifier[EmailConfig]):
    """Incidents of ``min_severity`` or worse to a list of addresses, one thread each."""

    channel = "email"
    config_model = EmailConfig
    contact = "email"

    def __init__(self, cfg: EmailConfig, clock: Clock = system_clock) -> None:
        super().__init__(cfg, clock)

    def secrets(self) -> list[str]:
        return [self.cfg.password.get_secret_value()] if self.cfg.password else []

    def route(self, incident: Incident) -> list[str]:
        return list(self.cfg.to)

    def notify(self, n: Notification) -> Refs:
        msg = self._message(n)
        try:
            refused = self._send(msg, n.to or self.cfg.to)
        except ssl.SSLError as exc:
            raise TransportError(f"email: TLS with {self.cfg.host} failed: {exc.reason}; "
                                 "check notifiers.email.ca_file and the server certificate",
                                 permanent=True) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise _refused(exc.recipients) from None
        except smtplib.SMTPNotSupportedError:
            raise TransportError(f"email: {self.cfg.host} does not offer STARTTLS; use "
                                 "security: tls or another server", permanent=True) from None
        except smtplib.SMTPResponseException as exc:
            raise _classify(exc) from None
        except (smtplib.SMTPException, OSError) as exc:  # dropped, refused, timed out
            raise TransportError(f"email: {self.cfg.host} unreachable: "
                                 f"{type(exc).__name__}") from None
        if refused:  # the others got it: a retry would send them a second copy
            log.warning("email recipients refused incident=%s refused=%s", n.incident_id,
                        ",".join(sorted(refused)))
        if n.action == "open":
            return {"message_id": str(msg["Message-ID"])}
        return {}

    def _send(self, msg: EmailMessage, to: list[str]) -> dict[str, Any]:
        ctx = ssl.create_default_context(cafile=self.cfg.ca_file)
        cfg = self.cfg
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout, context=ctx)
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=ctx)
            if cfg.username:
                smtp.login(cfg.username, cfg.password.get_secret_value() if cfg.password
                           else "")
            refused: dict[str, Any] = smtp.send_message(msg, cfg.sender, to)
            return refused

    # -- rendering --------------------------------------------------------------------------

    def _message(self, n: Notification) -> EmailMessage:
        p = n.payload
        msg = EmailMessage(policy=MAIL_POLICY)
        domain = self.cfg.sender.rpartition("@")[2]
        msg["Message-ID"] = f"<{n.idempotency_key}@{domain}>"
        first = n.refs.get("message_id")
        subject = summary({**p, "resolved": n.action == "resolve"})
        msg["Subject"] = (f"Re: {subject}" if n.action != "open" else subject)[:200]
        if first and n.action != "open":
            msg["In-Reply-To"] = first
            msg["References"] = first
        msg["From"] = self.cfg.sender
        msg["To"] = ", ".join(n.to or self.cfg.to)
        msg["Date"] = formatdate(n.created_at.timestamp(), usegmt=True)
        msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to us
        msg.set_content(_body(n))
        return msg


def _body(n: Notification) -> str:
    p = n.payload
    lines = []
    if n.action == "resolve":
        lines.append(f"Resolved after {duration_text(float(p['duration_s']))}: {p['message']}")
    elif p.get("text"):
        lines.append(str(p["text"]))
    else:
        lines.append(str(p["message"]))
    lines += ["", f"Check: {p['check']} ({p.get('kind', '')})",
              f"Environment: {p['env'] or '-'}", f"Severity: {p['severity']}",
              f"Status: {'resolved' if n.action == 'resolve' else p['status']}",
              f"Since: {p['since']}"]
    for label, key in (("Acknowledged by", "acknowledged_by"), ("Runbook", "runbook"),
                       ("Dashboard", "dashboard")):
        if p.get(key):
            lines.append(f"{label}: {p[key]}")
    return "\n".join(lines) + "\n"


def _refused(recipients: dict[str, tuple[int, bytes]]) -> TransportError:
    codes = sorted({code for code, _ in recipients.values()})
    text = "; ".join(f"{a}: {c} {m.decode(errors='replace')}" for a, (c, m) in
                     sorted(recipients.items()))
    if all(c >= 500 for c in codes):
        return TransportError(f"email rejected the request: recipients refused: {text}",
                              permanent=True)
    return TransportError(f"email unavailable: recipients deferred: {text}")


def _classify(exc: smtplib.SMTPResponseException) -> TransportError:
    code = exc.smtp_code
    text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) \
        else str(exc.smtp_error)
    if 400 <= code < 500 or code < 200:
        return TransportError(f"email unavailable: {code} {text}")
    hint = ""
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        hint = " (check notifiers.email.username and password)"
    return TransportError(f"email rejected the request: {code} {text}{hint}", permanent=True)
