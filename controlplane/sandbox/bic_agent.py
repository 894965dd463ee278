"""bic-agent, simulated: the Angular app shell, appconfig.json per environment, the card page.

Two variants of the card page, chosen per sandbox (``Sandbox(card_page=...)``):

- ``server`` (default): what the Angular app renders after fetching the card, rendered on
  the server, so a probe without JavaScript sees the PDF link a client would tap;
- ``spa``: as the real bic-sky serves it, the bare app shell; ``main.js`` reads
  ``appconfig.json``, fetches the card from the halo-task API named there and only then
  inserts the download link. A probe must run the script (``pdf.mode: browser``) to see it;
- ``spa-blob``: the same app, but the control is a button whose click fetches the PDF and
  saves it from a ``blob:`` URL (no href to follow).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, g, jsonify, request

from controlplane.sandbox.platform import SandboxEnv, env_by_host, env_by_name

if TYPE_CHECKING:
    from controlplane.sandbox.runner import Sandbox

SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>360Voice</title>
<base href="/"><meta name="viewport" content="width=device-width, initial-scale=1">
</head><body><app-root>{content}</app-root>
<script src="main.js" type="module"></script></body></html>
"""


CARD_PAGES = ("server", "spa", "spa-blob")

# The single-page app's card route, as the Angular app does it: config first, then the
# card from the API it names, then the link. Text goes in through textContent, never HTML.
MAIN_JS = """const root = document.querySelector('app-root');
const match = location.pathname.match(/^\\/idcard\\/([^/]+)$/);
function show(cls, text) {
  const p = document.createElement('p'); p.className = cls; p.textContent = text;
  root.replaceChildren(p);
}
if (match) {
  const token = encodeURIComponent(match[1]);
  show('loading', 'Loading your ID card\u2026');
  try {
    const config = await (await fetch('/assets/appconfig.json')).json();
    const resp = await fetch(`${config.apiUrl}/api/idcards/${token}`,
                             {headers: {'Accept': 'application/json'}});
    if (!resp.ok) throw new Error(`card ${resp.status}`);
    const card = await resp.json();
    const section = document.createElement('section'); section.className = 'idcard';
    const h1 = document.createElement('h1'); h1.textContent = 'ID card';
    const name = document.createElement('p'); name.className = 'name';
    name.textContent = card.fullName;
    const pdf = `${config.apiUrl}/api/idcards/${token}/pdf`;
    const a = document.createElement(BLOB ? 'button' : 'a'); a.className = 'download';
    if (BLOB) {
      a.addEventListener('click', async () => {
        const blob = await (await fetch(pdf)).blob();
        const save = document.createElement('a');
        save.href = URL.createObjectURL(blob); save.download = 'idcard.pdf'; save.click();
      });
    } else {
      a.href = pdf; a.download = '';
    }
    a.textContent = 'Download PDF';
    section.append(h1, name, a); root.replaceChildren(section);
  } catch (err) {
    show('idcard-error', 'This ID card link is invalid or has expired.');
  }
}
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

    @app.get("/main.js")
    def main_js() -> Response:
        if sb.card_page == "server":
            abort(404)  # the server-rendered variant ships no app script
        blob = "true" if sb.card_page == "spa-blob" else "false"
        return Response(f"const BLOB = {blob};\n{MAIN_JS}", mimetype="text/javascript")

    @app.get("/idcard/<token>")
    def card(token: str) -> str:
        if sb.card_page != "server":
            return SHELL.format(content="")  # the app renders the card (or its error)
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
