"""The status page puts data-tier and vendor checks in sections of their own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from controlplane.app import build_runtime
from controlplane.config import load_config
from controlplane.web import create_app

CONFIG = """
environments:
  release: {label: Release}
store: {dsn: "sqlite:///%(db)s"}
web: {admin_token: s3cret-token}
check_files: []
checks:
  - {id: tcp-release, kind: tcp, env: release, target: "127.0.0.1:9", enabled: false}
  - {id: pg-release, kind: postgres, env: release, host: db.test, user: u, enabled: false}
  - {id: s3-transcripts, kind: s3, bucket: transcripts, enabled: false}
  - {id: vendor-openai, kind: vendor_status, vendor: OpenAI,
     page_url: "https://status.openai.com", enabled: false}
"""


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    path = tmp_path / "controlplane.yaml"
    path.write_text(CONFIG % {"db": tmp_path / "cp.db"})
    runtime = build_runtime(load_config(str(path)))
    yield create_app(runtime).test_client()
    runtime.stop(0)


def _section(html: str, section: str) -> list[str]:
    body = html.split(f'id="env-{section}"', 1)[1].split("</section>", 1)[0]
    return re.findall(r'data-check="([^"]+)"', body)


def test_data_services_and_vendors_have_their_own_sections(client: FlaskClient) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "<h2>Data services " in html and "<h2>Vendors " in html
    assert _section(html, "release") == ["tcp-release"]
    assert _section(html, "data-services") == ["pg-release", "s3-transcripts"]
    assert _section(html, "vendors") == ["vendor-openai"]
    ids = [c["id"] for c in client.get("/api/v1/checks").get_json()["checks"]]
    assert sorted(ids) == ["pg-release", "s3-transcripts", "tcp-release", "vendor-openai"]
