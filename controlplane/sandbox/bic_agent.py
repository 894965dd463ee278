"""bic-agent, simulated: the Angular app shell, appconfig.json per environment, the card page.

The card page is what the Angular app renders after fetching the card; we render it on
the server so a probe without JavaScript sees the same PDF link a client would tap.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, g, jsonify, request

from controlplane.sandbox.platform import SandboxEnv, env_by_host, env_by_name

if TYPE_CHECKING:
    from controlplane.sandbox.runner import Sandbox

SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>360Voice</title>
<base href="/"><meta name="viewport" content="width=device-width, initial-scale=1">
</head><body><app-root>{content}</app-root>
<script src="main.js" type="module"></script></body></html>
"""


def appconfig(sb: Sandbox, env: SandboxEnv) -> dict[str, Any]:
    """The appconfig.json baked into ``env``'s image (or the wrong one, under the r121 fault)."""
    fault = sb.faults.active("appconfig_staging", env)
    src = env_by_name(fault["target"]) if fault else env
    bic, api, voice = sb.port("bic_agent"), sb.port("halo_task"), sb.port("voice360")
    return {
        "environment": src.name,
        "production": src.name == "production",
        "apiUrl": f"https://{src.api}:{api}",
        "voiceApiUrl": f"https://{src.voice}:{voice}",
        "agentUrl": f"https://{src.bic_agent}:{bic}",
        "idCardBaseUrl": f"https://{src.frontend}:{bic}/idcard",
        "features": {"idCardDownload": True, "liveCalls": src.name != "dev"},
    }


def create_app(sb: Sandbox) -> Flask:
    app = Flask("bic_agent")

    @app.before_request
    def route_env() -> tuple[str, int] | None:
        host = request.host.split(":")[0]
        env = env_by_host(host)
        if env is None and host in ("127.0.0.1", "localhost"):
            env = env_by_name("production")
        if env is None or host in (env.api, env.voice):
            return f"no site for host {host}\n", 404
        g.env = env
        return None

    @app.get("/")
    def shell() -> str:
        return SHELL.format(content="")

    @app.get("/assets/appconfig.json")
    def config() -> Response:
        return jsonify(appconfig(sb, g.env))

    @app.get("/idcard/<token>")
    def card(token: str) -> str:
        link = sb.links.get(token)
        if link is None or link.env != g.env.name:
            return SHELL.format(content='<p class="idcard-error">This ID card link is invalid '
                                       "or has expired.</p>")
        api = appconfig(sb, g.env)["apiUrl"]
        content = (f'<section class="idcard"><h1>ID card</h1>'
                   f'<p class="name">{html.escape(link.name)}</p>'
                   f'<a class="download" href="{html.escape(api)}/api/idcards/'
                   f'{html.escape(token)}/pdf" download>Download PDF</a></section>')
        return SHELL.format(content=content)

    return app
