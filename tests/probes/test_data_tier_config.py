"""The shipped checks/data.yaml and checks/vendors.yaml load, with secrets left unset."""

from __future__ import annotations

import pytest

from controlplane.config import load_config
from tests.services.common import ROOT

SECRETS = ["RABBITMQ_PASSWORD", "CLICKHOUSE_PASSWORD", "HALOTASKS_PG_PASSWORD",
           "S3_SECRET_ACCESS_KEY", "SMTP_PASSWORD", "OPENAI_API_KEY", "STRIPE_SECRET_KEY",
           "TWILIO_AUTH_TOKEN", "KAFKA_EXTERNAL_PASSWORD"]


def test_data_and_vendor_checks_load_without_their_secrets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)
    cfg = load_config(str(ROOT / "controlplane.yaml"))
    kinds = {c.id: c.kind for c in cfg.checks}
    assert {k: kinds[k] for k in ("rabbitmq-cloudamqp", "clickhouse-cloud",
                                  "postgres-halotasks-release", "s3-transcripts",
                                  "smtp-relay", "kafka-external-production")} == {
        "rabbitmq-cloudamqp": "rabbitmq", "clickhouse-cloud": "clickhouse",
        "postgres-halotasks-release": "postgres", "s3-transcripts": "s3",
        "smtp-relay": "smtp", "kafka-external-production": "kafka_tls"}
    assert sorted(i for i, k in kinds.items() if k == "vendor_status") == [
        "vendor-status-clicksend", "vendor-status-cloudamqp", "vendor-status-openai",
        "vendor-status-sentry", "vendor-status-twilio"]
    assert sorted(i for i, k in kinds.items() if k == "vendor_api") == [
        "vendor-api-openai", "vendor-api-stripe", "vendor-api-twilio"]
    s3 = cfg.check("s3-transcripts")
    assert s3.secret_access_key.get_secret_value() == ""  # type: ignore[attr-defined]
