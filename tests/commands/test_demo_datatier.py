"""`controlplane demo` runs PostgreSQL, RabbitMQ and S3 when installed, and watches them."""

from __future__ import annotations

import requests

from controlplane.sandbox.datatier import rabbitmq_unavailable, s3_unavailable
from controlplane.sandbox.localdata import postgres_bindir
from tests.commands.test_demo import checks, run_check
from tests.services.sandbox import DemoProcess


def test_demo_data_services_are_ok_and_shown_under_data_services(demo: DemoProcess) -> None:
    expected = {"postgres-halotasks-demo": postgres_bindir() is not None,
                "rabbitmq-demo": rabbitmq_unavailable() is None,
                "s3-transcripts-demo": s3_unavailable() is None}
    ids = {str(r["id"]) for r in checks(demo.url)}
    for check_id, installed in expected.items():
        assert (check_id in ids) == installed, check_id
        if installed:
            result = run_check(demo, check_id)
            assert result["status"] == "ok", (check_id, result["message"])
    html = requests.get(f"{demo.url}/", timeout=30).text
    section = html.split('id="env-data-services"', 1)[1].split("</section>", 1)[0]
    for check_id, installed in expected.items():
        assert (f'data-check="{check_id}"' in section) == installed, check_id


def test_demo_vendors_are_ok_and_shown_under_vendors(demo: DemoProcess) -> None:
    vendors = ["vendor-status-openai-demo", "vendor-status-twilio-demo",
               "vendor-api-openai-demo"]
    ids = {str(r["id"]) for r in checks(demo.url)}
    assert set(vendors) <= ids
    for check_id in vendors:
        result = run_check(demo, check_id)
        assert result["status"] == "ok", (check_id, result["message"])
    assert run_check(demo, "vendor-api-openai-demo")["message"].startswith(
        "openai: 4 models listed (")
    html = requests.get(f"{demo.url}/", timeout=30).text
    section = html.split('id="env-vendors"', 1)[1].split("</section>", 1)[0]
    assert all(f'data-check="{check_id}"' in section for check_id in vendors)
