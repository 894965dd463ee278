"""The OpenAPI contract, fuzzed with schemathesis against a running instance (waitress on
loopback, a real store): no 5xx, every response matches its schema, and every admin
operation refuses a missing or wrong token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from controlplane.app import Runtime, build_runtime
from controlplane.config import load_config
from controlplane.results import Result, Status
from controlplane.server import WebServer
from controlplane.web import create_app
from controlplane.web.openapi import OPS

TOKEN = "fuzz-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CONFIG = f"""
environments: {{production: {{}}}}
store: {{dsn: "sqlite:///%(db)s"}}
web: {{admin_token: {TOKEN}}}
check_files: []
checks:
  - {{id: tls-prod, kind: scripted, env: production, failure_threshold: 1}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Runtime]]:
    from controlplane.probes import KINDS, probe_class

    KINDS["scripted"] = "tests.fakeprobes:ScriptedProbe"  # as the scripted_kind fixture
    probe_class.cache_clear()
    tmp = tmp_path_factory.mktemp("openapi")
    path = tmp / "controlplane.yaml"
    path.write_text(CONFIG % {"db": tmp / "cp.db"})
    rt = build_runtime(load_config(str(path)))
    check = rt.config.check("tls-prod")
    rt.pipeline.process(Result(check=check.id, kind=check.kind, env=check.env,
                               status=Status.FAILING, message="down"), check)
    server = WebServer(create_app(rt), "127.0.0.1", 0).start()
    yield server.url, rt
    server.stop()
    rt.stop(0)
    del KINDS["scripted"]
    probe_class.cache_clear()


def test_every_operation_answers_within_its_contract(served: tuple[str, Runtime]) -> None:
    base, _ = served
    schema = schemathesis.openapi.from_url(base + "/api/v1/openapi.json")
    tested = []
    for found in schema.get_all_operations():
        operation = found.ok()

        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=AUTH, checks=[
                not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])

        fuzz()
        tested.append(operation.label)
    assert len(tested) == len(OPS)


def test_the_contract_is_openapi_3_1_and_lists_every_api_route(
        served: tuple[str, Runtime]) -> None:
    base, rt = served
    doc = requests.get(base + "/api/v1/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    app = create_app(rt)
    routes = {(method.lower(), str(rule).replace("<int:", "{").replace("<", "{")
               .replace(">", "}"))
              for rule in app.url_map.iter_rules() if str(rule).startswith("/api/v1/")
              and str(rule) != "/api/v1/openapi.json"
              for method in rule.methods or () if method in ("GET", "POST", "DELETE")}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == routes


@pytest.mark.parametrize("op", [op for op in OPS if op.admin],
                         ids=lambda op: f"{op.method.upper()} {op.path}")
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", TOKEN, f"Basic {TOKEN}"])
def test_every_admin_operation_refuses_a_missing_or_wrong_token(
        served: tuple[str, Runtime], op: Any, auth: str | None) -> None:
    base, _ = served
    path = op.path.replace("{check_id}", "tls-prod").replace("{incident_id}", "1") \
        .replace("{silence_id}", "1").replace("{override_id}", "1").replace("{rb_id}", "x") \
        .replace("{run_id}", "1")
    headers = {"Authorization": auth} if auth is not None else {}
    resp = requests.request(op.method, base + path, headers=headers, timeout=10,
                            json={"matchers": {"check": "tls-prod"}, "comment": "c",
                                  "duration": "1h"})
    assert resp.status_code == 401
    assert resp.json() == {"error": "missing or wrong admin token: send it as "
                                    "'Authorization: Bearer <web.admin_token>'"}
