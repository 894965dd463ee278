"""The smtp canary received back by IMAP: aiosmtpd relays by LMTP into a real Dovecot."""

from __future__ import annotations

import imaplib
import smtplib
import socket
import ssl
import time
from typing import Any

import pytest

from controlplane.probes.smtp import SmtpCheckConfig, SmtpProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.imap import INBOX_PASSWORD, ImapServer, MailSystem, dovecot_running
from tests.services.smtp import PASSWORD, USER

pytestmark = pytest.mark.imap


def probe(mail: MailSystem, imap: ImapServer | None = None, **imap_fields: Any) -> Result:
    srv = imap or mail.imap
    imap_cfg: dict[str, Any] = {"host": "localhost", "port": srv.imaps_port, "user": srv.user,
                                "password": srv.password, "ca_file": srv.ca_file,
                                "receive_within": 3, "poll_interval": 0.2, **imap_fields}
    return SmtpProbe(SmtpCheckConfig(
        id="smtp-canary", host="localhost", port=mail.smtp.port, user=USER, password=PASSWORD,
        tls_rules={"ca_file": mail.smtp.ca_file}, timeout=8,
        canary_from="monitor@techhalo.test", canary_to=srv.user, imap=imap_cfg)).execute()


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


def inbox(srv: ImapServer) -> list[bytes]:
    """Message numbers left in the mailbox (read with the stdlib client, not the probe's)."""
    ctx = ssl.create_default_context(cafile=srv.ca_file)
    with imaplib.IMAP4_SSL(srv.host, srv.imaps_port, ssl_context=ctx) as m:
        m.login(srv.user, srv.password)
        m.select("INBOX")
        _, data = m.search(None, "ALL")
        return (data[0] or b"").split()


def test_canary_received_by_imap_is_ok_and_removed(mail_system: MailSystem) -> None:
    result = probe(mail_system)
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"SMTP localhost:{mail_system.smtp.port}: ")
    assert " accepted STARTTLS, AUTH, canary received by IMAP in " in result.message
    assert steps(result) == {"tls": Status.OK, "ehlo": Status.OK, "auth": Status.OK,
                             "canary": Status.OK, "receive": Status.OK}
    assert 0 <= (result.metrics["canary_receive_s"] or -1) < 3
    assert result.details["imap"] == {"target": f"localhost:{mail_system.imap.imaps_port}",
                                      "user": "inbox@techhalo.test", "mailbox": "INBOX"}
    assert result.details["imap_stale_canaries_removed"] == 0
    assert inbox(mail_system.imap) == []  # the canary is deleted once seen
    assert "saved mail to INBOX" in mail_system.imap.log()  # Dovecot delivered it


def test_starttls_on_the_imap_port_works_too(mail_system: MailSystem) -> None:
    result = probe(mail_system, port=mail_system.imap.imap_port, security="starttls")
    assert result.status == Status.OK, result.message
    assert steps(result)["receive"] == Status.OK


def test_canary_that_never_arrives_fails_at_the_deadline(mail_system: MailSystem) -> None:
    mail_system.smtp.box.hold = True  # the relay accepts and queues, delivery is stuck
    result = probe(mail_system, receive_within=1.5)
    assert result.status == Status.FAILING
    assert result.message == ("the canary did not arrive in inbox@techhalo.test's INBOX on "
                              f"IMAP localhost:{mail_system.imap.imaps_port} within 1.5s (the "
                              "relay accepted it; delivery is late or broken)")
    assert steps(result)["canary"] == Status.OK
    receive = next(s for s in result.steps if s.name == "receive")
    assert receive.status == Status.FAILING and 1.5 <= receive.duration_s < 3
    assert "canary_receive_s" not in result.metrics


def test_late_canaries_of_earlier_runs_are_cleaned_up(mail_system: MailSystem) -> None:
    mail_system.smtp.box.hold = True
    assert probe(mail_system, receive_within=0.5).status == Status.FAILING
    late = mail_system.smtp.box.mails[0].as_bytes()
    with smtplib.LMTP(mail_system.imap.host, mail_system.imap.lmtp_port) as lmtp:
        lmtp.sendmail("monitor@techhalo.test", [mail_system.imap.user], late)  # arrives late
    mail_system.smtp.box.hold = False
    result = probe(mail_system)
    assert result.status == Status.OK, result.message
    assert result.details["imap_stale_canaries_removed"] == 1
    assert inbox(mail_system.imap) == []


def test_imap_login_refused_fails_without_showing_the_password(mail_system: MailSystem) -> None:
    result = probe(mail_system, password="imap-wrong-hunter2")
    assert result.status == Status.FAILING
    assert result.message == (f"IMAP localhost:{mail_system.imap.imaps_port}: login refused for "
                              "user 'inbox@techhalo.test' (AUTHENTICATIONFAILED: wrong user or "
                              "password)")
    dumped = result.model_dump_json()
    assert "hunter2" not in dumped and INBOX_PASSWORD not in dumped and PASSWORD not in dumped


def test_untrusted_imap_certificate_fails_before_login(mail_system: MailSystem,
                                                      certs: CertFactory) -> None:
    other_ca = str(certs.self_signed().ca_file)
    result = probe(mail_system, ca_file=other_ca)
    assert result.status == Status.FAILING
    assert result.message == (f"IMAP localhost:{mail_system.imap.imaps_port}: certificate verify "
                              "failed: unable to get local issuer certificate")
    assert "Login: user=" not in mail_system.imap.log()


def test_untrusted_imap_certificate_after_starttls_fails(mail_system: MailSystem,
                                                         certs: CertFactory) -> None:
    result = probe(mail_system, port=mail_system.imap.imap_port, security="starttls",
                   ca_file=str(certs.self_signed().ca_file))
    assert result.status == Status.FAILING
    assert result.message == (f"IMAP localhost:{mail_system.imap.imap_port}: certificate verify "
                              "failed: unable to get local issuer certificate")


def test_imap_certificate_for_another_name_fails(mail_system: MailSystem,
                                                 certs: CertFactory) -> None:
    with dovecot_running(certs, names=["imap.other.test"]) as other:
        result = probe(mail_system, imap=other)
    assert result.status == Status.FAILING
    assert result.message.startswith(f"IMAP localhost:{other.imaps_port}: certificate verify "
                                     "failed: Hostname mismatch")


def test_imap_server_down_fails(mail_system: MailSystem) -> None:
    port = free_port()
    result = probe(mail_system, port=port)
    assert result.status == Status.FAILING
    assert result.message == f"IMAP localhost:{port}: cannot connect: connection refused"


def test_missing_mailbox_fails(mail_system: MailSystem) -> None:
    result = probe(mail_system, mailbox="Canaries")
    assert result.status == Status.FAILING
    assert result.message == (f"IMAP localhost:{mail_system.imap.imaps_port}: mailbox 'Canaries' "
                              "of inbox@techhalo.test cannot be selected (does it exist?)")


def test_imap_needs_a_canary_address() -> None:
    with pytest.raises(ValueError, match="imap needs a canary to look for: you must specify "
                                         "canary_from and canary_to"):
        SmtpCheckConfig(id="x", host="h", timeout=30,
                        imap={"host": "h", "user": "u", "password": "p"})


def test_receive_window_must_fit_in_the_timeout() -> None:
    with pytest.raises(ValueError, match=r"imap.receive_within \(60s\) must be shorter than "
                                         r"the check's timeout \(10s\)"):
        SmtpCheckConfig(id="x", host="h", canary_from="a@b.test", canary_to="c@d.test",
                        imap={"host": "h", "user": "u", "password": "p"})


def test_silent_imap_server_is_an_error_within_the_timeout(mail_system: MailSystem) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never greets
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        result = SmtpProbe(SmtpCheckConfig(
            id="smtp-canary", host="localhost", port=mail_system.smtp.port, user=USER,
            password=PASSWORD, tls_rules={"ca_file": mail_system.smtp.ca_file}, timeout=3,
            canary_from="monitor@techhalo.test", canary_to=mail_system.imap.user,
            imap={"host": "localhost", "port": port, "user": mail_system.imap.user,
                  "password": mail_system.imap.password, "receive_within": 2})).execute()
    assert time.monotonic() - t0 < 6
    assert result.status == Status.ERROR
    assert result.message == f"IMAP localhost:{port}: no answer within 3s"
