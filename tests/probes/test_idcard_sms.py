"""The idcard_sms check against the simulated platform: every step, every fault.

Faults go in through the sandbox's HTTP fault API (tests/commands/test_sandbox_cli.py
injects each through the CLI).
"""

from __future__ import annotations

import re

import pytest
import requests
from pydantic import ValidationError

from controlplane.probes.idcard_sms import STEPS, IdCardSmsConfig, IdCardSmsProbe
from controlplane.results import Result, Status
from controlplane.sandbox.platform import ENVIRONMENTS, env_by_name
from controlplane.sandbox.runner import Sandbox
from controlplane.sandbox.twilio_fake import TwilioFake
from tests.services.common import free_port
from tests.services.sandbox import idcard_config, sandbox_context


def run(sb: Sandbox, env: str = "production", **overrides: object) -> Result:
    probe = IdCardSmsProbe(idcard_config(sb, env, **overrides), sandbox_context())
    return probe.execute()


def inject(sb: Sandbox, name: str, env: str = "production", **params: str) -> None:
    """Inject a fault the way an operator does: through the sandbox's fault API."""
    resp = requests.post(f"{sb.url('control')}/faults", timeout=10,
                         json={"name": name, "env": env, "params": params})
    assert resp.status_code == 201, resp.text
    assert sb.faults.active(name, env) is not None


def step(result: Result, name: str) -> tuple[Status, str]:
    s = next(s for s in result.steps if s.name == name)
    return s.status, s.message


@pytest.mark.parametrize("env", [e.name for e in ENVIRONMENTS])
def test_every_step_succeeds_in_each_environment(sandbox: Sandbox, env: str) -> None:
    result = run(sandbox, env)
    e = env_by_name(env)
    assert result.status == Status.OK, result.message
    assert [s.name for s in result.steps] == list(STEPS)
    assert all(s.status == Status.OK for s in result.steps)
    assert step(result, "request_link")[1] == "halo-task API accepted the request (202)"
    assert re.fullmatch(r"SMS SM[0-9a-f]{32} (delivered|received) after \d+\.\ds",
                        step(result, "receive_sms")[1])
    assert step(result, "check_link_host")[1] == f"link host is {e.frontend}"
    assert re.fullmatch(r"200, app shell, \d+ bytes", step(result, "open_link")[1])
    assert step(result, "check_appconfig")[1] == f"apiUrl points at {e.api}"
    assert re.fullmatch(r"valid PDF, \d+ bytes, names Ada Synthetic",
                        step(result, "download_pdf")[1])
    assert result.message.startswith("ID card delivered by SMS in ")
    assert result.metrics["sms_latency_seconds"] is not None
    assert result.metrics["cert_days_left"] is not None and result.metrics["cert_days_left"] > 80
    assert re.fullmatch(rf"https://{e.frontend}:\d+/idcard/….{{4}}", result.details["link"])


def test_steps_are_timed(sandbox: Sandbox) -> None:
    result = run(sandbox)
    assert all(s.duration_s > 0 for s in result.steps)
    assert result.duration_s >= sum(s.duration_s for s in result.steps)


def test_sms_dropped_fails_at_receive_step(sandbox: Sandbox) -> None:
    inject(sandbox, "sms_dropped")
    result = run(sandbox, sla={"receive_sms": 2, "total": 60})
    assert result.status == Status.FAILING
    assert [s.name for s in result.steps] == ["request_link", "receive_sms"]
    assert result.message == ("receive_sms: no SMS delivered to +15550100001 within 2s "
                              "(1 message(s) seen, status sent)")


def test_sms_the_carrier_reports_undelivered_fails_at_once(sandbox: Sandbox) -> None:
    inject(sandbox, "sms_undelivered")
    result = run(sandbox)  # Twilio's own verdict in the message: it did not wait out the SLA
    assert result.status == Status.FAILING
    status, message = step(result, "receive_sms")
    assert status == Status.FAILING
    assert re.fullmatch(r"Twilio reports the SMS SM[0-9a-f]{32} to \+15550100001 undelivered "
                        r"\(error 30003: Unreachable destination handset\)", message)


def test_sms_delayed_past_the_sla_fails(sandbox: Sandbox) -> None:
    inject(sandbox, "sms_delayed", delay="120")
    result = run(sandbox, sla={"receive_sms": 2, "total": 60})
    assert result.status == Status.FAILING
    assert step(result, "receive_sms") == (Status.FAILING, "no SMS delivered to +15550100001 "
                                           "within 2s (1 message(s) seen, status sent)")


def test_sms_delayed_within_the_sla_passes_after_the_delay(sandbox: Sandbox) -> None:
    inject(sandbox, "sms_delayed", delay="2")
    result = run(sandbox)
    assert result.status == Status.OK, result.message
    latency = result.metrics["sms_latency_seconds"]
    assert latency is not None and latency >= 1.5


def test_a_step_over_its_sla_is_degraded(sandbox: Sandbox) -> None:
    probe = IdCardSmsProbe(idcard_config(sandbox), sandbox_context())
    # A step SLA below the time the step took marks that step (and the run) degraded.
    probe.config.sla.request_link = 0
    result = probe.execute()
    assert result.status == Status.DEGRADED
    status, message = step(result, "request_link")
    assert status == Status.DEGRADED
    assert re.fullmatch(r"halo-task API accepted the request \(202\) \(took \d+\.\ds, "
                        r"over its 0s SLA\)", message)
    assert re.fullmatch(r"request_link took \d+\.\ds \(SLA 0s\)", result.message)


def test_whole_flow_over_the_total_sla_is_degraded(sandbox: Sandbox) -> None:
    probe = IdCardSmsProbe(idcard_config(sandbox), sandbox_context())
    probe.config.sla.total = 0
    result = probe.execute()
    assert result.status == Status.DEGRADED
    assert re.fullmatch(r"whole flow took \d+\.\ds \(SLA 0s\)", result.message)
    assert all(s.status == Status.OK for s in result.steps)


def test_wrong_link_host_fails_at_link_host_step(sandbox: Sandbox) -> None:
    inject(sandbox, "wrong_link_host")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert result.steps[-1].name == "check_link_host"
    assert re.fullmatch(r"check_link_host: link host links\.halo360\.ai is not production front "
                        r"end bic-sky\.halo360\.ai \(https://links\.halo360\.ai:\d+/idcard/….{4}\)",
                        result.message)


def test_appconfig_pointing_at_staging_fails_at_appconfig_step(sandbox: Sandbox) -> None:
    inject(sandbox, "appconfig_staging")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert result.steps[-1].name == "check_appconfig"
    assert result.message == (
        "check_appconfig: appconfig.json apiUrl is https://api-halo-task-staging.techhalo.ai:"
        f"{sandbox.port('halo_task')}, expected host api-halo-task.techhalo.ai")


def test_broken_pdf_fails_at_download_step(sandbox: Sandbox) -> None:
    inject(sandbox, "pdf_broken")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert result.steps[-1].name == "download_pdf"
    assert result.message == ("download_pdf: the PDF (73 bytes) cannot be opened: "
                              "PdfReadError: EOF marker not found")


def test_halo_task_500_fails_at_request_step(sandbox: Sandbox) -> None:
    inject(sandbox, "halo_task_500")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert [s.name for s in result.steps] == ["request_link"]
    assert result.message == ("request_link: halo-task API answered 500 to POST "
                              "/api/idcards/send-link: An error occurred while processing "
                              "your request.")


def test_certificate_expiring_in_5_days_is_degraded_at_open_step(sandbox: Sandbox) -> None:
    inject(sandbox, "cert_expiring")
    result = run(sandbox)
    assert result.status == Status.DEGRADED
    assert step(result, "open_link")[0] == Status.DEGRADED
    assert re.fullmatch(r"open_link: certificate of bic-sky\.halo360\.ai expires in "
                        r"(4\.9|5\.0) days", result.message)
    assert [s.name for s in result.steps] == list(STEPS)


def test_expired_certificate_fails_at_open_step(sandbox: Sandbox) -> None:
    inject(sandbox, "cert_expired")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert result.steps[-1].name == "open_link"
    assert result.message == (f"open_link: TLS verification failed for bic-sky.halo360.ai:"
                              f"{sandbox.port('bic_agent')} (127.0.0.1): certificate has expired")


def test_dns_answering_the_wrong_ip_fails_at_open_step(sandbox: Sandbox) -> None:
    inject(sandbox, "dns_wrong_ip")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert result.steps[-1].name == "open_link"
    assert result.message == (f"open_link: cannot connect to bic-sky.halo360.ai:"
                              f"{sandbox.port('bic_agent')} (127.0.0.2): connection refused")


def test_a_fault_in_one_environment_leaves_the_others_ok(sandbox: Sandbox) -> None:
    inject(sandbox, "halo_task_500", "staging")
    assert run(sandbox, "staging").status == Status.FAILING
    assert run(sandbox, "production").status == Status.OK


def test_wrong_api_token_fails_at_request_step(sandbox: Sandbox) -> None:
    result = run(sandbox, api_token="not-the-token")
    assert result.message == ("request_link: halo-task API answered 401 to POST "
                              "/api/idcards/send-link: Unauthorized missing or wrong bearer token")


def test_wrong_twilio_credentials_fail_before_texting(sandbox: Sandbox) -> None:
    assert sandbox.twilio is not None
    result = run(sandbox, twilio={"account_sid": sandbox.twilio.account_sid,
                                  "auth_token": "wrong", "api_base": sandbox.url("twilio")})
    assert result.status == Status.FAILING
    # The run reads the number's existing texts before asking, so it fails before texting.
    assert result.message == ("request_link: Twilio API answered 401 (error 20003): "
                              "Authenticate")


SLA = {"request_link": 30, "receive_sms": 30, "check_link_host": 30, "open_link": 30,
       "check_appconfig": 30, "download_pdf": 30, "total": 60}


def twilio_of(sb: Sandbox) -> TwilioFake:
    assert sb.twilio is not None
    return sb.twilio


# The run lists the number's texts once before asking (skip=1), then polls the same list.

def test_twilio_503_twice_while_polling_is_retried_and_the_run_passes(sandbox: Sandbox) -> None:
    fault = twilio_of(sandbox).fail_requests(503, 2, skip=1, method="GET")
    result = run(sandbox)
    assert result.status == Status.OK, result.message
    assert step(result, "receive_sms")[0] == Status.OK
    assert fault.served == 2


def test_twilio_503_before_texting_is_retried_and_the_run_passes(sandbox: Sandbox) -> None:
    fault = twilio_of(sandbox).fail_requests(503, 2, method="GET")
    result = run(sandbox)
    assert result.status == Status.OK, result.message
    assert step(result, "request_link") == (Status.OK,
                                            "halo-task API accepted the request (202)")
    assert fault.served == 2


def test_twilio_rate_limit_within_the_deadline_waits_retry_after_and_passes(
        sandbox: Sandbox) -> None:
    fault = twilio_of(sandbox).fail_requests(429, 1, skip=1, method="GET", retry_after=1)
    result = run(sandbox)
    assert result.status == Status.OK, result.message
    assert fault.served == 1


def test_twilio_rate_limit_past_the_receive_deadline_fails_naming_the_rate_limit(
        sandbox: Sandbox) -> None:
    fault = twilio_of(sandbox).fail_requests(429, None, skip=1, method="GET", retry_after=1)
    result = run(sandbox, sla={**SLA, "receive_sms": 3})
    assert result.status == Status.FAILING
    assert result.message == (
        "receive_sms: no SMS delivered to +15550100001 within 3s (Twilio API rate limit "
        "(429, error 20429): Too Many Requests; Twilio asks to retry after 1s; no retry fits "
        "before the deadline)")
    # Retry-After (1 s) paced the retries, not poll_interval (0.2 s): at most one a second.
    assert 2 <= fault.served <= 4


def test_twilio_retry_after_past_the_deadline_fails_without_waiting(sandbox: Sandbox) -> None:
    fault = twilio_of(sandbox).fail_requests(429, None, skip=1, method="GET", retry_after=120)
    result = run(sandbox)
    assert result.message == (
        "receive_sms: no SMS delivered to +15550100001 within 30s (Twilio API rate limit "
        "(429, error 20429): Too Many Requests; Twilio asks to retry after 120s; no retry fits "
        "before the deadline)")
    assert fault.served == 1


def test_twilio_unavailable_before_texting_past_the_deadline_fails_at_request_step(
        sandbox: Sandbox) -> None:
    fault = twilio_of(sandbox).fail_requests(503, None, method="GET")
    result = run(sandbox, sla={**SLA, "request_link": 1})
    assert result.message == ("request_link: Twilio API answered 503 (error 20503): Service "
                              "Unavailable; retried until the deadline")
    assert fault.served >= 2


@pytest.mark.parametrize(("status", "error"), [
    (401, "Twilio API answered 401 (error 20003): Authenticate"),
    (404, "Twilio API answered 404 (error 20404): The requested resource was not found"),
])
def test_permanent_twilio_errors_while_polling_fail_at_once(sandbox: Sandbox, status: int,
                                                            error: str) -> None:
    fault = twilio_of(sandbox).fail_requests(status, None, skip=1, method="GET")
    result = run(sandbox)
    assert result.status == Status.FAILING
    assert result.message == f"receive_sms: {error}"
    assert fault.served == 1


def test_unreachable_twilio_is_retried_until_the_deadline(sandbox: Sandbox) -> None:
    port = free_port()  # nothing listens there
    result = run(sandbox, sla={**SLA, "request_link": 1},
                 twilio={"account_sid": twilio_of(sandbox).account_sid,
                         "auth_token": twilio_of(sandbox).auth_token,
                         "api_base": f"http://127.0.0.1:{port}"})
    assert result.status == Status.FAILING
    assert result.message.startswith("request_link: cannot reach the Twilio API: "
                                     "ConnectionError: ")
    assert f"port={port}" in result.message
    assert result.message.endswith("; retried until the deadline")


def test_secrets_never_appear_in_the_result(sandbox: Sandbox) -> None:
    assert sandbox.twilio is not None
    inject(sandbox, "wrong_link_host")
    text = run(sandbox).model_dump_json()
    assert sandbox.halo_token not in text
    assert sandbox.twilio.auth_token not in text
    token = next(iter(sandbox.links))
    assert all(link not in text for link in sandbox.links) and token not in text


def test_timeout_shorter_than_the_sla_is_rejected(sandbox: Sandbox) -> None:
    with pytest.raises(ValidationError) as info:
        idcard_config(sandbox, timeout=10)
    assert ("timeout (10s) is shorter than sla.total (60s): the run would be cut off before "
            "the SMS may arrive; set timeout to at least 60s") in str(info.value)


def test_missing_twilio_settings_are_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        IdCardSmsConfig.model_validate({"id": "x", "env": "production", "timeout": 120,
                                        "api_token": "t", "phone": "+15550100001"})
    assert [e["loc"] for e in info.value.errors()] == [("twilio",)]


def test_unknown_environment_is_an_error_naming_the_fix(sandbox: Sandbox) -> None:
    cfg = idcard_config(sandbox)
    cfg.env = "qa"
    result = IdCardSmsProbe(cfg, sandbox_context()).execute()
    assert result.status == Status.ERROR
    assert result.message == ("environment 'qa' is not configured; add it under environments "
                              "or set frontend_host and api_host on the check")


def test_slas_default_to_60s_for_the_sms_and_90s_for_the_whole_flow() -> None:
    cfg = IdCardSmsConfig.model_validate({
        "id": "x", "env": "production", "timeout": 120, "api_token": "t",
        "phone": "+15550100001", "twilio": {}})
    assert cfg.sla.model_dump() == {"request_link": 5.0, "receive_sms": 60.0,
                                    "check_link_host": 1.0, "open_link": 5.0,
                                    "check_appconfig": 5.0, "download_pdf": 10.0, "total": 90.0}
