"""The smtp probe against a real SMTP server on loopback (aiosmtpd, STARTTLS required, AUTH)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from controlplane.probes.smtp import SmtpCheckConfig, SmtpProbe
from controlplane.results import Result, Status
from tests.services.certs import CertFactory
from tests.services.common import free_port
from tests.services.smtp import PASSWORD, USER, SmtpServer, smtp_running


def probe(srv: SmtpServer, **fields: Any) -> Result:
    base: dict[str, Any] = {"id": "smtp-test", "host": "localhost", "port": srv.port,
                            "user": USER, "password": PASSWORD,
                            "tls_rules": {"ca_file": str(srv.ca_file)}, "timeout": 5}
    return SmtpProbe(SmtpCheckConfig(**{**base, **fields})).execute()


def steps(result: Result) -> dict[str, Status]:
    return {s.name: s.status for s in result.steps}


def test_starttls_auth_and_canary_are_ok(smtp_server: SmtpServer) -> None:
    result = probe(smtp_server, canary_from="monitor@techhalo.test",
                   canary_to="inbox@techhalo.test")
    assert result.status == Status.OK, result.message
    assert result.message.startswith(f"SMTP localhost:{smtp_server.port}: ")
    assert result.message.endswith(" accepted STARTTLS, AUTH, canary sent")
    assert steps(result) == {"tls": Status.OK, "ehlo": Status.OK, "auth": Status.OK,
                             "canary": Status.OK}
    assert (result.metrics["tls_days_left"] or 0) > 80
    assert result.details["tls"]["tls_version"] == "TLSv1.3"
    assert "auth" in result.details["extensions"]
    [message] = smtp_server.box.mails
    assert smtp_server.box.envelopes == [("monitor@techhalo.test", ["inbox@techhalo.test"])]
    assert message["X-Controlplane-Check"] == "smtp-test"
    assert message["Subject"].startswith("controlplane canary ")


def test_wrong_password_fails_without_showing_it(smtp_server: SmtpServer) -> None:
    result = probe(smtp_server, password="hunter2-wrong")
    assert result.status == Status.FAILING
    assert result.message == (f"SMTP localhost:{smtp_server.port}: authentication failed for user "
                              f"{USER!r} (535: wrong user or password)")
    assert "hunter2" not in result.model_dump_json()
    assert steps(result)["auth"] == Status.FAILING


def test_untrusted_certificate_fails_before_login(smtp_server: SmtpServer,
                                                  certs: CertFactory) -> None:
    result = probe(smtp_server, tls_rules={"ca_file": str(certs.self_signed().ca_file)})
    assert result.status == Status.FAILING
    assert result.message.startswith("certificate verify failed: unable to get local issuer")
    assert steps(result) == {"tls": Status.FAILING}
    assert smtp_server.box.mails == []


def test_certificate_for_another_name_fails(certs: CertFactory) -> None:
    with smtp_running(certs, names=["mail.other.test"]) as srv:
        result = probe(srv)
    assert result.status == Status.FAILING
    assert result.message == ("certificate is not valid for localhost; its names are: "
                              "mail.other.test")


def test_expiring_certificate_degrades_but_mail_still_flows(smtp_server: SmtpServer) -> None:
    result = probe(smtp_server, tls_rules={"ca_file": str(smtp_server.ca_file), "warn_days": 100,
                                    "crit_days": 7})
    assert result.status == Status.DEGRADED
    assert "within the warning threshold of 100 days" in result.message
    assert steps(result)["auth"] == Status.OK


def test_server_without_starttls_fails() -> None:
    # a plain listener that greets and answers EHLO without offering STARTTLS
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]
        def serve() -> None:
            conn, _ = srv.accept()
            with conn:
                conn.sendall(b"220 plain.test ESMTP\r\n")
                conn.recv(1024)
                conn.sendall(b"250-plain.test\r\n250 AUTH PLAIN\r\n")
                conn.recv(1024)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        result = SmtpProbe(SmtpCheckConfig(id="smtp-plain", host="127.0.0.1", port=port,
                                           timeout=3)).execute()
        t.join(5)
    assert result.status == Status.FAILING
    assert result.message == f"SMTP 127.0.0.1:{port} does not offer STARTTLS"


def test_server_down_fails() -> None:
    port = free_port()
    result = SmtpProbe(SmtpCheckConfig(id="smtp-down", host="127.0.0.1", port=port)).execute()
    assert result.status == Status.FAILING
    assert result.message == f"cannot connect to 127.0.0.1:{port}: connection refused"


def test_unresolvable_host_fails() -> None:
    result = SmtpProbe(SmtpCheckConfig(id="smtp-dns", host="no-such-mx.invalid")).execute()
    assert result.status == Status.FAILING
    assert result.message.startswith("cannot resolve no-such-mx.invalid")


def test_silent_server_is_an_error_within_the_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        result = SmtpProbe(SmtpCheckConfig(id="smtp-silent", host="127.0.0.1", port=port,
                                           timeout=2)).execute()
    assert time.monotonic() - t0 < 5
    assert result.status == Status.ERROR
    assert result.message == f"127.0.0.1:{port}: no TLS handshake within 2s"


def test_canary_fields_go_together() -> None:
    with pytest.raises(ValueError, match="canary_from and canary_to go together"):
        SmtpCheckConfig(id="x", host="h", canary_to="a@b.test")



def test_min_version_written_as_a_yaml_number_is_read() -> None:
    cfg = SmtpCheckConfig(id="x", host="h", tls_rules={"min_version": 1.3})
    assert cfg.tls_rules.min_version == "1.3"
