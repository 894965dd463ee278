"""`vendor_status` checks: a vendor's Atlassian Statuspage (``/api/v2/summary.json``).

One GET per run. The components that matter (all of them when none are named) are judged
by their status; open incidents and active maintenance touching them add findings. A
status page that cannot be read says nothing about the vendor: that is ``error``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from controlplane.lazyimport import lazy_module
from controlplane.probes.base import CheckConfig, Outcome, Probe, ProbeError
from controlplane.probes.findings import Findings, connection_reason
from controlplane.results import Status

if TYPE_CHECKING:
    import requests
else:  # requests loads when a probe runs, not when a config validates
    requests = lazy_module("requests")

log = logging.getLogger(__name__)

Judged = Literal["ok", "degraded", "failing"]


class VendorStatusConfig(CheckConfig):
    kind: Literal["vendor_status"] = "vendor_status"
    vendor: str = Field(min_length=1, description="display name, e.g. OpenAI")
    page_url: str = Field(pattern=r"^https?://", description="the status page, e.g. "
                          "https://status.openai.com")
    components: list[str] = Field(default_factory=list, description="names that matter "
                                  "(a group's name takes its members); empty: every one")
    ca_file: str | None = None
    degraded_performance: Judged = "degraded"
    partial_outage: Judged = "degraded"
    major_outage: Judged = "failing"
    under_maintenance: Judged = "degraded"


_IMPACT = {"critical": Status.FAILING, "major": Status.FAILING, "minor": Status.DEGRADED,
           "maintenance": Status.DEGRADED, "none": Status.OK}


class VendorStatusProbe(Probe[VendorStatusConfig]):
    kind = "vendor_status"
    config_model = VendorStatusConfig

    def check(self) -> Outcome:
        c = self.config
        summary = self._fetch()
        found = Findings()
        components = [comp for comp in summary.get("components") or []
                      if isinstance(comp, dict)]
        watched, missing = _select(components, c.components)
        for name in missing:
            found.add(f"component {name}", Status.DEGRADED,
                      f"{c.vendor}: component {name!r} is not on the status page "
                      "(renamed? update the check)")
        ids = {comp.get("id") for comp in watched}
        names = {comp.get("name") for comp in watched}
        for comp in watched:
            self._component(comp, found)
        incidents = [i for i in summary.get("incidents") or []
                     if i.get("status") not in ("resolved", "postmortem")
                     and _touches(i, ids, names, bool(c.components))]
        for incident in incidents:
            status = _IMPACT.get(str(incident.get("impact")), Status.DEGRADED)
            found.add("incident", status, f"{c.vendor} incident: {incident.get('name')} "
                      f"({incident.get('status')}, impact {incident.get('impact')})")
        maintenances = [m for m in summary.get("scheduled_maintenances") or []
                        if m.get("status") in ("in_progress", "verifying")
                        and _touches(m, ids, names, bool(c.components))]
        for m in maintenances:
            found.add("maintenance", Status.DEGRADED, f"{c.vendor} maintenance in progress: "
                      f"{m.get('name')}")
        indicator = (summary.get("status") or {}).get("indicator")
        metrics: dict[str, float | None] = {
            "components": len(watched),
            "components_not_operational": sum(comp.get("status") != "operational"
                                              for comp in watched),
            "incidents": len(incidents), "maintenances": len(maintenances)}
        details = {"vendor": c.vendor, "page": (summary.get("page") or {}).get("name"),
                   "indicator": indicator,
                   "description": (summary.get("status") or {}).get("description"),
                   "components": [{"name": comp.get("name"), "status": comp.get("status")}
                                  for comp in watched],
                   "incidents": [{"name": i.get("name"), "status": i.get("status"),
                                  "impact": i.get("impact"), "shortlink": i.get("shortlink")}
                                 for i in incidents],
                   "maintenances": [{"name": m.get("name"), "status": m.get("status")}
                                    for m in maintenances]}
        ok = f"{c.vendor}: {len(watched)} component(s) operational"
        return found.outcome(ok, metrics, details)

    def _component(self, comp: dict[str, Any], found: Findings) -> None:
        c = self.config
        state = str(comp.get("status"))
        name = comp.get("name")
        if state == "operational":
            found.add(f"component {name}", message="operational")
            return
        judged = getattr(c, state, "degraded") if state in (
            "degraded_performance", "partial_outage", "major_outage",
            "under_maintenance") else "degraded"
        found.add(f"component {name}", Status(judged),
                  f"{c.vendor}: {name} is {state.replace('_', ' ')}")

    def _fetch(self) -> dict[str, Any]:
        c = self.config
        url = f"{c.page_url.rstrip('/')}/api/v2/summary.json"
        try:
            resp = requests.get(url, timeout=c.timeout, verify=c.ca_file or True,
                                headers={"Accept": "application/json"})
        except requests.Timeout:
            raise ProbeError(f"{c.vendor} status page: no answer within {c.timeout:g}s") \
                from None
        except requests.RequestException as exc:
            raise ProbeError(f"{c.vendor} status page unreadable: "
                             f"{connection_reason(exc)}") from None
        if resp.status_code != 200:
            raise ProbeError(f"{c.vendor} status page unreadable: HTTP {resp.status_code} "
                             f"from {url}")
        try:
            summary = resp.json()
        except ValueError:
            raise ProbeError(f"{c.vendor} status page unreadable: {url} is not JSON") from None
        if not isinstance(summary, dict) or "components" not in summary:
            raise ProbeError(f"{c.vendor} status page unreadable: {url} has no components "
                             "(not a Statuspage summary)")
        return summary


def _select(components: list[dict[str, Any]],
            wanted: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """The leaf components to judge, and the wanted names the page does not have."""
    leaves = [comp for comp in components if not comp.get("group")]
    if not wanted:
        return leaves, []
    by_name = {comp.get("name"): comp for comp in components}
    chosen: list[dict[str, Any]] = []
    missing: list[str] = []
    for name in wanted:
        comp = by_name.get(name)
        if comp is None:
            missing.append(name)
        elif comp.get("group"):
            chosen += [leaf for leaf in leaves if leaf.get("group_id") == comp.get("id")]
        else:
            chosen.append(comp)
    unique = {id(comp): comp for comp in chosen}
    return list(unique.values()), missing


def _touches(event: dict[str, Any], ids: set[Any], names: set[Any], filtered: bool) -> bool:
    """Whether an incident or maintenance concerns the watched components."""
    if not filtered:
        return True
    comps = event.get("components") or []
    if not comps:
        return True  # page-wide: Statuspage lists no components for it
    return any(comp.get("id") in ids or comp.get("name") in names for comp in comps)
