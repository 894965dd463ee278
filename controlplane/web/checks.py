"""Status page, check pages and the checks JSON API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request

from controlplane.durations import parse_duration
from controlplane.probes.base import CheckConfig
from controlplane.results import Result, iso
from controlplane.store.results import CheckStateRow, history, uptime
from controlplane.web import runtime
from controlplane.web.auth import require_admin
from controlplane.web.charts import line_chart, sparkline

bp = Blueprint("checks", __name__)

NO_ENV = "platform"
# The data tier and the SaaS vendors get sections of their own, whatever their env:
# (section id, heading, kinds)
SECTIONS = [("data-services", "Data services",
             {"postgres", "rabbitmq", "clickhouse", "s3", "smtp", "kafka_tls"}),
            ("vendors", "Vendors", {"vendor_status", "vendor_api"})]


@dataclass
class CheckView:
    check: CheckConfig
    state: str
    since: datetime | None
    last: Result | None
    uptime_24h: float | None
    uptime_7d: float | None
    recent: list[Result]
    builtin: str | None = None
    """The feature that builds this check (``backups``); None for a check from YAML."""

    def to_json(self) -> dict[str, Any]:
        c = self.check
        return {
            "id": c.id, "kind": c.kind, "env": c.env, "name": c.name or c.id,
            "severity": c.severity, "labels": c.labels, "interval_s": c.interval,
            "timeout_s": c.timeout, "enabled": c.enabled,
            "failure_threshold": c.failure_threshold,
            "success_threshold": c.success_threshold, "builtin": self.builtin,
            "state": self.state,
            "since": iso(self.since) if self.since else None,
            "uptime_24h": self.uptime_24h, "uptime_7d": self.uptime_7d,
            "last_result": self.last.to_json_dict() if self.last else None,
        }


def _view(check: CheckConfig, recent_n: int = 30) -> CheckView:
    with runtime().store.session() as s:
        row = s.get(CheckStateRow, check.id)
        recent = history(s, check.id, limit=recent_n)
        up24 = uptime(s, check.id, timedelta(hours=24))
        up7 = uptime(s, check.id, timedelta(days=7))
    since = row.since if row else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return CheckView(check, row.state if row else "unknown", since,
                     recent[0] if recent else None, up24, up7, recent,
                     runtime().config.builtin_feature(check.id))


def _find(check_id: str) -> CheckConfig:
    try:
        return runtime().config.check(check_id)
    except KeyError:
        abort(404, description=f"no check with id {check_id!r}")


def _groups() -> list[tuple[str, str, list[CheckView]]]:
    """The one catalog (YAML and built-in checks) by environment."""
    cfg = runtime().config
    views = [_view(c) for c in cfg.checks]
    sectioned = {kind for _, _, kinds in SECTIONS for kind in kinds}
    by_env = [v for v in views if v.check.kind not in sectioned]
    groups = [(name, env.label or name, [v for v in by_env if v.check.env == name])
              for name, env in cfg.environments.items()]
    rest = [v for v in by_env if v.check.env not in cfg.environments]
    if rest:
        groups.append((NO_ENV, "Platform-wide", rest))
    for section, heading, kinds in SECTIONS:
        members = [v for v in views if v.check.kind in kinds]
        if members:
            groups.append((section, heading, members))
    return groups


@bp.get("/")
def status_page() -> str:
    return render_template("status.html", groups=_groups(), spark=_spark, pct=_pct)


@bp.get("/checks/<check_id>")
def check_page(check_id: str) -> str:
    view = _view(_find(check_id), recent_n=200)
    points = [(r.started_at, r.duration_s) for r in reversed(view.recent)]
    chart = line_chart(points, title="Latency (last 200 runs)", unit="s")
    lag_chart = line_chart([(r.started_at, float(r.metrics["total_lag"] or 0))
                            for r in reversed(view.recent) if "total_lag" in r.metrics],
                           title="Total lag, messages (last 200 runs)", unit="") \
        if view.check.kind == "kafka_lag" else None
    return render_template("check.html", v=view, chart=chart, lag_chart=lag_chart, pct=_pct)


@bp.get("/api/v1/checks")
def api_checks() -> Response:
    return jsonify(checks=[v.to_json() for _, _, views in _groups() for v in views])


@bp.get("/api/v1/checks/<check_id>")
def api_check(check_id: str) -> Response:
    return jsonify(_view(_find(check_id)).to_json())


@bp.get("/api/v1/checks/<check_id>/results")
def api_results(check_id: str) -> Response | tuple[Response, int]:
    check = _find(check_id)
    try:
        since = _parse_since(request.args.get("since"))
        limit = _limit(request.args.get("limit", "500"))
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    with runtime().store.session() as s:
        results = history(s, check.id, since=since, limit=limit)
    return jsonify(check=check.id, results=[r.to_json_dict() for r in results])


def _limit(text: str) -> int:
    try:
        n = int(text[:20])
    except ValueError:
        raise ValueError(f"limit must be a whole number from 1 to 5000, not {text[:40]!r}") \
            from None
    if n < 1:
        raise ValueError(f"limit must be a whole number from 1 to 5000, not {text[:40]!r}")
    return min(n, 5000)


@bp.post("/api/v1/checks/<check_id>/run")
@require_admin
def api_run(check_id: str) -> Response:
    check = _find(check_id)
    return jsonify(runtime().scheduler.run_now(check.id).to_json_dict())


def _parse_since(value: str | None) -> datetime | None:
    """``since`` is an ISO 8601 time (2026-11-26T12:00:00Z) or a look-back like 1h or 7d."""
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    except ValueError:
        pass
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
    except ValueError:
        raise ValueError(f"since={value[:40]!r} is neither an ISO 8601 time "
                         "(2026-11-26T12:00:00Z) nor a look-back such as 1h or 7d") from None
    except OverflowError:  # a finite look-back past year 1 (99999999999d)
        raise ValueError(f"since={value[:40]!r} looks back further than the calendar goes; "
                         "use at most 3650d") from None


def _spark(view: CheckView) -> str:
    return sparkline([r.duration_s for r in reversed(view.recent)])


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f}%"
