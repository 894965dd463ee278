"""The shipped checks/idcard.yaml: the ID-card flow and drift in every environment."""

from __future__ import annotations

import os

import pytest

from controlplane.config import load_config
from controlplane.probes.base import ProbeContext
from controlplane.probes.config_drift import ConfigDriftConfig
from controlplane.probes.idcard_sms import IdCardSmsConfig, IdCardSmsProbe
from controlplane.results import Status
from tests.services.common import ROOT

SECRETS = ("HALO_TASK_API_TOKEN_PRODUCTION", "IDCARD_PHONE_PRODUCTION", "TWILIO_ACCOUNT_SID",
           "TWILIO_AUTH_TOKEN")


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)


def test_every_environment_has_an_idcard_and_a_drift_check(no_secrets: None) -> None:
    cfg = load_config(str(ROOT / "controlplane.yaml"))
    for env in ("production", "release", "staging", "dev"):
        idcard = cfg.check(f"idcard-sms-{env}")
        drift = cfg.check(f"config-drift-{env}")
        assert isinstance(idcard, IdCardSmsConfig) and isinstance(drift, ConfigDriftConfig)
        assert (idcard.env, drift.env) == (env, env)
        assert idcard.receive == "poll" and idcard.timeout >= idcard.sla.total
        assert idcard.pdf.mode == "browser"  # the real front ends render the link in JS
        assert drift.url is None  # derived from environments.<env>.hosts.idcard_frontend


def test_without_secrets_the_idcard_check_says_what_is_missing(no_secrets: None) -> None:
    cfg = load_config(str(ROOT / "controlplane.yaml"))
    check = cfg.check("idcard-sms-production")
    assert isinstance(check, IdCardSmsConfig)
    result = IdCardSmsProbe(check, ProbeContext(environments=dict(cfg.environments))).execute()
    assert result.status == Status.ERROR
    assert result.message == ("not configured: api_token, phone, twilio.account_sid, "
                              "twilio.auth_token empty; set the environment variables the "
                              "check reads them from (see docs/idcard.md)")


def test_secrets_from_the_environment_fill_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDCARD_PHONE_PRODUCTION", "+15550100001")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "a" * 32)
    check = load_config(str(ROOT / "controlplane.yaml")).check("idcard-sms-production")
    assert isinstance(check, IdCardSmsConfig)
    assert (check.phone, check.twilio.account_sid) == ("+15550100001", "AC" + "a" * 32)
    assert os.environ.get("IDCARD_PHONE_PRODUCTION") == "+15550100001"
