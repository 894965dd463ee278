"""Email specifics against a real SMTP server on loopback (STARTTLS and AUTH required)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from controlplane.notifiers.base import Notification, TransportError
from controlplane.notifiers.email import EmailConfig, EmailNotifier
from tests.notifiers.test_contract import PAYLOAD
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.smtp import PASSWORD, USER, SmtpServer


def _notifier(server: SmtpServer, **over: Any) -> EmailNotifier:
    fields: dict[str, Any] = {
        "host": server.host, "port": server.port, "username": USER, "password": PASSWORD,
        "sender": "controlplane@example.com", "to": ["oncall@example.com", "sre@example.com"],
        "ca_file": server.ca_file, "timeout": "5s"}
    return EmailNotifier(EmailConfig.model_validate({**fields, **over}))


def _n(action: str, key: str, attempts: int = 0, refs: dict[str, str] | None = None,
       **extra: Any) -> Notification:
    return Notification(1, 7, action, {**PAYLOAD, **extra}, key, attempts,
                        datetime(2026, 11, 26, 12, 0, tzinfo=UTC), refs or {})


def test_the_mails_of_one_incident_form_one_thread(smtp_server: SmtpServer) -> None:
    n = _notifier(smtp_server)
    refs = n.notify(_n("open", "k1"))
    assert refs == {"message_id": "<k1@example.com>"}
    n.notify(_n("resolve", "k2", refs=refs, message="certificate renewed"))
    first, second = smtp_server.box.mails
    assert first["Subject"] == "[FAILING] tls-bic-sky-prod (production, critical): " \
                               "certificate expired"
    assert second["Subject"] == "Re: [RESOLVED] tls-bic-sky-prod (production, critical): " \
                                "certificate renewed"
    assert (second["In-Reply-To"], second["References"]) == ("<k1@example.com>",) * 2
    assert second.get_content().splitlines()[0] == "Resolved after 1m 30s: certificate renewed"
    assert smtp_server.box.envelopes == [
        ("controlplane@example.com", ["oncall@example.com", "sre@example.com"])] * 2


def test_a_lost_answer_after_the_data_resends_the_same_message(
        smtp_server: SmtpServer) -> None:
    n = _notifier(smtp_server)
    smtp_server.box.drop_after_data = 1
    with pytest.raises(TransportError) as info:
        n.notify(_n("open", "k1"))
    assert info.value.permanent is False
    assert info.value.message.startswith("email: 127.0.0.1 unreachable: ")
    n.notify(_n("open", "k1", attempts=1))
    assert smtp_server.box.message_ids() == ["<k1@example.com>"] * 2  # one message to a reader


def test_a_wrong_password_is_a_permanent_error_that_names_the_fields(
        smtp_server: SmtpServer) -> None:
    n = _notifier(smtp_server, password="not-the-password")
    with pytest.raises(TransportError) as info:
        n.notify(_n("open", "k1"))
    assert (info.value.permanent, info.value.message) == (
        True, "email rejected the request: 535 5.7.8 Authentication credentials invalid "
              "(check notifiers.email.username and password)")
    assert smtp_server.box.mails == []


def test_a_server_certificate_from_another_ca_is_a_permanent_error(
        smtp_server: SmtpServer, certs: CertFactory) -> None:
    other = certs.server(["127.0.0.1"], root_name="Some Other Root")
    n = _notifier(smtp_server, ca_file=str(other.ca_file))
    with pytest.raises(TransportError) as info:
        n.notify(_n("open", "k1"))
    assert info.value.permanent is True
    assert info.value.message.startswith("email: TLS with 127.0.0.1 failed: "
                                         "CERTIFICATE_VERIFY_FAILED")


def test_a_server_without_starttls_gets_no_credentials(smtp_server: SmtpServer) -> None:
    port = free_port()
    plain = Controller(object(), hostname="127.0.0.1", port=port)
    plain.start()
    try:
        n = _notifier(smtp_server, port=port)
        with pytest.raises(TransportError) as info:
            n.notify(_n("open", "k1"))
        assert (info.value.permanent, info.value.message) == (
            True, "email: 127.0.0.1 does not offer STARTTLS; use security: tls or another "
                  "server")
    finally:
        plain.stop()


def test_nothing_listening_is_a_retryable_error(smtp_server: SmtpServer) -> None:
    n = _notifier(smtp_server, port=free_port())
    with pytest.raises(TransportError) as info:
        n.notify(_n("open", "k1"))
    assert (info.value.permanent, info.value.message) == (
        False, "email: 127.0.0.1 unreachable: ConnectionRefusedError")


def test_email_takes_major_incidents_open_acknowledge_and_resolve_by_default(
        smtp_server: SmtpServer) -> None:
    from controlplane.notifiers.base import ACTIONS, Incident

    n = _notifier(smtp_server)
    major = Incident(1, "c", "production", "tls", "major", "open", "failing")
    minor = Incident(2, "c", "production", "tls", "minor", "open", "failing")
    assert [e for e in ACTIONS if n.wants(major, e)] == ["open", "acknowledge", "resolve"]
    assert not any(n.wants(minor, e) for e in ACTIONS)
    assert n.route(major) == ["oncall@example.com", "sre@example.com"]
    assert n.secrets() == [PASSWORD]
