"""bic-agent's card page variants: server-rendered (default) and the single-page app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.probes.sitefetch import Fetched, Fetcher
from controlplane.sandbox import bic_agent
from controlplane.sandbox.halo_task import IdCardLink
from controlplane.sandbox.platform import env_by_name
from controlplane.sandbox.runner import Sandbox

PROD, STAGING = env_by_name("production"), env_by_name("staging")
TOKEN = "card-page-test-token-0001"


@pytest.fixture
def card(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The sandbox with one ID-card link issued for production; card page restored after."""
    sandbox.links[TOKEN] = IdCardLink(TOKEN, "production", "c-1", "Ada Synthetic",
                                      PROD.phone, sandbox.env_url(PROD, "frontend",
                                                                  f"/idcard/{TOKEN}"))
    yield sandbox
    sandbox.links.pop(TOKEN, None)
    sandbox.card_page = "server"


def get(sb: Sandbox, url: str, headers: dict[str, str] | None = None) -> Fetched:
    return Fetcher(sb.ca_file, sb.nameserver, 20).request("GET", url, headers=headers)


def test_the_default_card_page_is_rendered_on_the_server(card: Sandbox) -> None:
    page = get(card, card.env_url(PROD, "frontend", f"/idcard/{TOKEN}"))
    assert card.card_page == "server"
    assert f'href="{card.env_url(PROD, "api", f"/api/idcards/{TOKEN}/pdf")}"' in page.text()
    assert get(card, card.env_url(PROD, "frontend", "/main.js")).status == 404


def test_the_single_page_card_is_the_bare_app_shell_with_its_script(card: Sandbox) -> None:
    card.card_page = "spa"
    page = get(card, card.env_url(PROD, "frontend", f"/idcard/{TOKEN}"))
    assert page.status == 200
    assert page.text() == bic_agent.SHELL.format(content="")
    script = get(card, card.env_url(PROD, "frontend", "/main.js"))
    assert (script.status, script.content_type) == (200, "text/javascript")
    assert script.text() == "const BLOB = false;\n" + bic_agent.MAIN_JS
    assert "/assets/appconfig.json" in script.text()


def test_the_blob_variant_ships_the_same_app_with_a_button(card: Sandbox) -> None:
    card.card_page = "spa-blob"
    script = get(card, card.env_url(PROD, "frontend", "/main.js"))
    assert script.text() == "const BLOB = true;\n" + bic_agent.MAIN_JS


def test_halo_task_lets_the_environments_front_end_read_the_card(card: Sandbox) -> None:
    origin = card.env_url(PROD, "frontend", "")
    got = get(card, card.env_url(PROD, "api", f"/api/idcards/{TOKEN}"), {"Origin": origin})
    assert got.status == 200
    assert got.headers["access-control-allow-origin"] == origin
    assert got.headers["vary"] == "Origin"


def test_halo_task_does_not_let_another_environments_front_end_read_the_card(
        card: Sandbox) -> None:
    origin = card.env_url(STAGING, "frontend", "")
    got = get(card, card.env_url(PROD, "api", f"/api/idcards/{TOKEN}"), {"Origin": origin})
    assert got.status == 200
    assert "access-control-allow-origin" not in got.headers


def test_the_card_page_variant_shows_in_the_sandbox_info(card: Sandbox) -> None:
    card.card_page = "spa"
    assert card.info()["card_page"] == "spa"


def test_an_unknown_card_page_variant_is_rejected() -> None:
    with pytest.raises(ValueError) as info:
        Sandbox(card_page="react")
    assert str(info.value) == "card_page 'react' is not one of server, spa, spa-blob"
