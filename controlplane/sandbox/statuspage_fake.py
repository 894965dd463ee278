"""A contract fake of Atlassian Statuspage's public API (``/api/v2/summary.json``).

Serves several vendor pages from one loopback server, each under ``/<slug>``: the page
``https://status.openai.com`` becomes ``{fake.url}/openai``. The JSON is Statuspage's
own shape (page, components, incidents, scheduled_maintenances, status), written by hand
from captured summaries, and the state changes the way a vendor's page does: a component
degrades, an incident opens and resolves, a maintenance starts. A page can be made to
fail (HTTP 5xx, a body that is not JSON, a delay) to test what a watcher does when the
status page itself is down.
"""

from __future__ import annotations

import copy
import itertools
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMPONENT_STATUSES = ("operational", "degraded_performance", "partial_outage",
                      "major_outage", "under_maintenance")
_ids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _id(prefix: str) -> str:
    return f"{prefix}{next(_ids):010d}"


@dataclass
class Page:
    slug: str
    name: str
    page_id: str
    components: list[dict[str, Any]] = field(default_factory=list)
    incidents: list[dict[str, Any]] = field(default_factory=list)
    maintenances: list[dict[str, Any]] = field(default_factory=list)
    failure: tuple[int, bytes] | None = None  # (HTTP status, body) while the page is down
    delay_s: float = 0.0

    def summary(self, base_url: str) -> dict[str, Any]:
        open_incidents = [i for i in self.incidents
                          if i["status"] not in ("resolved", "postmortem")]
        active = [m for m in self.maintenances if m["status"] in ("in_progress", "verifying")]
        upcoming = [m for m in self.maintenances if m["status"] == "scheduled"]
        return {
            "page": {"id": self.page_id, "name": self.name, "url": f"{base_url}/{self.slug}",
                     "time_zone": "Etc/UTC", "updated_at": _now()},
            "components": copy.deepcopy(self.components),
            "incidents": copy.deepcopy(open_incidents),
            "scheduled_maintenances": copy.deepcopy(active + upcoming),
            "status": self._indicator(open_incidents, active),
        }

    def _indicator(self, incidents: list[dict[str, Any]],
                   maintenances: list[dict[str, Any]]) -> dict[str, str]:
        # Statuspage's rollup: the worst open incident's impact, else maintenance, else the
        # worst component
        order = {"none": 0, "minor": 1, "major": 2, "critical": 3}
        worst = max((i["impact"] for i in incidents), key=lambda x: order[x], default="none")
        comp = {c["status"] for c in self.components}
        if worst == "none" and "major_outage" in comp:
            worst = "major"
        elif worst == "none" and comp & {"partial_outage", "degraded_performance"}:
            worst = "minor"
        if worst == "none" and maintenances:
            return {"indicator": "maintenance", "description": "Service Under Maintenance"}
        text = {"none": "All Systems Operational", "minor": "Minor Service Outage",
                "major": "Partial System Outage", "critical": "Major System Outage"}
        return {"indicator": worst, "description": text[worst]}


class StatuspageFake:
    """``fake.add_page("openai", "OpenAI", ["API", "ChatGPT"])``; then ``fake.url + "/openai"``."""

    def __init__(self, tls_context: ssl.SSLContext | None = None) -> None:
        self.pages: dict[str, Page] = {}
        self.requests: list[str] = []
        self._tls = tls_context
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.url = ""

    # -- state, as a vendor changes it --------------------------------------------------------

    def add_page(self, slug: str, name: str, components: list[str],
                 groups: dict[str, list[str]] | None = None) -> Page:
        page = Page(slug, name, _id("pg"))
        position = itertools.count(1)
        for group, members in (groups or {}).items():
            gid = _id("grp")
            page.components.append(self._component(page, group, next(position), group=True,
                                                   gid=gid, members=[]))
            for member in members:
                page.components.append(self._component(page, member, next(position),
                                                       group_id=gid))
        for name_ in components:
            page.components.append(self._component(page, name_, next(position)))
        for comp in page.components:  # a group lists its members' ids
            if comp["group"]:
                comp["components"] = [c["id"] for c in page.components
                                      if c["group_id"] == comp["id"]]
        with self._lock:
            self.pages[slug] = page
        return page

    @staticmethod
    def _component(page: Page, name: str, position: int, *, group: bool = False,
                   group_id: str | None = None, gid: str | None = None,
                   members: list[str] | None = None) -> dict[str, Any]:
        comp: dict[str, Any] = {
            "id": gid or _id("cmp"), "name": name, "status": "operational",
            "created_at": "2019-06-03T17:21:57.155Z", "updated_at": _now(),
            "position": position, "description": None, "showcase": not group,
            "start_date": None, "group_id": group_id, "page_id": page.page_id,
            "group": group, "only_show_if_degraded": False}
        if group:
            comp["components"] = members or []
        return comp

    def set_component(self, slug: str, name: str, status: str) -> None:
        if status not in COMPONENT_STATUSES:
            raise ValueError(f"{status!r} is not a Statuspage component status")
        with self._lock:
            comp = self._find(slug, name)
            comp["status"], comp["updated_at"] = status, _now()

    def open_incident(self, slug: str, name: str, impact: str, components: list[str],
                      status: str = "investigating") -> str:
        with self._lock:
            page = self.pages[slug]
            comps = [copy.deepcopy(self._find(slug, c)) for c in components]
            now = _now()
            incident_id = _id("inc")
            incident: dict[str, Any] = {
                "id": incident_id, "name": name, "status": status, "created_at": now,
                "updated_at": now, "monitoring_at": None, "resolved_at": None,
                "impact": impact, "shortlink": f"https://stspg.io/{_id('s')}",
                "started_at": now, "page_id": page.page_id,
                "incident_updates": [{
                    "id": _id("upd"), "status": status,
                    "body": f"We are investigating {name.lower()}.",
                    "incident_id": incident_id,
                    "created_at": now, "updated_at": now, "display_at": now,
                    "affected_components": [
                        {"code": c["id"], "name": c["name"], "old_status": "operational",
                         "new_status": c["status"]} for c in comps],
                    "deliver_notifications": True, "custom_tweet": None, "tweet_id": None}],
                "components": comps}
            page.incidents.append(incident)
            return incident_id

    def resolve_incident(self, slug: str, incident_id: str) -> None:
        with self._lock:
            for incident in self.pages[slug].incidents:
                if incident["id"] == incident_id:
                    incident["status"], incident["resolved_at"] = "resolved", _now()

    def start_maintenance(self, slug: str, name: str, components: list[str],
                          status: str = "in_progress") -> str:
        with self._lock:
            page = self.pages[slug]
            now = _now()
            maintenance = {
                "id": _id("mnt"), "name": name, "status": status, "created_at": now,
                "updated_at": now, "monitoring_at": None, "resolved_at": None,
                "impact": "maintenance", "shortlink": f"https://stspg.io/{_id('s')}",
                "started_at": now, "page_id": page.page_id, "incident_updates": [],
                "components": [copy.deepcopy(self._find(slug, c)) for c in components],
                "scheduled_for": now, "scheduled_until": now}
            page.maintenances.append(maintenance)
            return str(maintenance["id"])

    def page_down(self, slug: str, status: int = 503,
                  body: bytes = b"<html><body>503 Service Unavailable</body></html>") -> None:
        with self._lock:
            self.pages[slug].failure = (status, body)

    def page_up(self, slug: str) -> None:
        with self._lock:
            self.pages[slug].failure = None

    def slow(self, slug: str, delay_s: float) -> None:
        with self._lock:
            self.pages[slug].delay_s = delay_s

    def _find(self, slug: str, name: str) -> dict[str, Any]:
        for comp in self.pages[slug].components:
            if comp["name"] == name:
                return comp
        raise KeyError(f"page {slug} has no component {name!r}")

    # -- serving ------------------------------------------------------------------------------

    def answer(self, path: str) -> tuple[int, bytes, float]:
        slug, _, rest = path.strip("/").partition("/")
        with self._lock:
            self.requests.append(path)
            page = self.pages.get(slug)
            if page is None or rest not in ("api/v2/summary.json", "api/v2/status.json"):
                return 404, b'{"error":"Not found"}', 0.0
            if page.failure:
                return page.failure[0], page.failure[1], page.delay_s
            body = page.summary(self.url)
            if rest.endswith("status.json"):
                body = {"page": body["page"], "status": body["status"]}
            return 200, json.dumps(body).encode(), page.delay_s

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        fake = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                status, body, delay = fake.answer(self.path.split("?", 1)[0])
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8"
                                 if body.startswith(b"{") else "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer((host, port), _H)
        httpd.daemon_threads = True
        if self._tls is not None:
            httpd.socket = self._tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, name="statuspage-fake",
                         daemon=True).start()
        scheme = "https" if self._tls is not None else "http"
        self.url = f"{scheme}://{'localhost' if self._tls else host}:{httpd.server_address[1]}"
        return self.url

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
