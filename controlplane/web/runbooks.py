"""Runbook pages (/runbooks, /runbooks/<id>, /runbooks/runs/<run>) and their JSON API.

Reading is open like every other page; starting, approving and cancelling need the admin
token. A standby instance queues runs in the shared store; the active one executes them.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, abort, jsonify, render_template, request

from controlplane.notifiers.slack import SlackConfig, parse_runbook_button
from controlplane.runbooks import runs
from controlplane.runbooks.audit import Audit
from controlplane.runbooks.config import RunbookConfig
from controlplane.runbooks.links import runbook_url
from controlplane.web import runtime
from controlplane.web.auth import require_admin

log = logging.getLogger(__name__)

bp = Blueprint("runbooks", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/runbooks")


@bp.app_template_filter("runbook_url")
def _runbook_url(value: str | None) -> str | None:
    """Runbook links on every page (incidents, checks) lead to /runbooks/<id>."""
    return runbook_url(value)


def _runbook(rb_id: str) -> RunbookConfig:
    try:
        return runtime().config.runbook(rb_id)
    except KeyError:
        abort(404, description=f"no runbook {rb_id!r}")


def describe(rb: RunbookConfig) -> dict[str, Any]:
    return {"id": rb.id, "title": rb.title, "description": rb.description, "owner": rb.owner,
            "auto": rb.auto, "schedule": rb.schedule, "timeout_s": rb.timeout,
            "concurrency": rb.concurrency.model_dump(),
            "parameters": {k: p.model_dump() for k, p in rb.parameters.items()},
            "steps": [{"id": s.id, "action": s.action, "args": s.args, "timeout_s":
                       s.timeout_s(), "when": s.when, "idempotent": s.idempotent,
                       "on_failure": s.on_failure if isinstance(s.on_failure, str) else
                       [r.id for r in s.rollback]} for s in rb.steps],
            "url": f"/runbooks/{rb.id}"}


def _wake() -> None:
    engine = runtime().runbook_engine
    if engine is not None:
        engine.wake()


# -- JSON API ------------------------------------------------------------------------------

@bp.get("/api/v1/runbooks")
def api_list() -> Response:
    rt = runtime()
    last = runs.last_runs(rt.store)
    return jsonify([{**describe(rb), "last_run": last.get(rb.id)} for rb in rt.config.runbooks])


@bp.get("/api/v1/runbooks/<rb_id>")
def api_show(rb_id: str) -> Response:
    rb = _runbook(rb_id)
    return jsonify({**describe(rb), "runs": runs.history(runtime().store, rb.id, 20)})


@bp.post("/api/v1/runbooks/<rb_id>/plan")
def api_plan(rb_id: str) -> tuple[Response, int]:
    """The dry-run: reads, changes nothing, so no token is needed."""
    from controlplane.runbooks.plan import plan

    rb = _runbook(rb_id)
    body = request.get_json(silent=True) or {}
    try:
        lines = plan(runtime(), rb, dict(body.get("params") or {}))
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(plan=lines), 200


@bp.post("/api/v1/runbooks/<rb_id>/runs")
@require_admin
def api_start(rb_id: str) -> tuple[Response, int]:
    rb = _runbook(rb_id)
    body = request.get_json(silent=True) or {}
    try:
        started = runs.start(runtime().store, rb, dict(body.get("params") or {}),
                             str(body.get("by") or "api"), str(body.get("via") or "api"))
    except runs.RunRefused as exc:
        return jsonify(error=str(exc)), 409
    _wake()
    return jsonify(run=started.run_id, status=started.status,
                   url=f"/runbooks/runs/{started.run_id}"), 201


@bp.get("/api/v1/runbooks/runs/<int:run_id>")
def api_run(run_id: int) -> Response:
    try:
        return jsonify(runs.get(runtime().store, run_id))
    except runs.NotFound as exc:
        abort(404, description=str(exc))


def _decide(run_id: int, approved: bool) -> tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    try:
        step = runs.decide(runtime().store, run_id, approved, str(body.get("by") or "api"),
                           str(body.get("via") or "api"), str(body.get("comment") or ""))
    except runs.NotFound as exc:
        return jsonify(error=str(exc)), 404
    except runs.RunRefused as exc:
        return jsonify(error=str(exc)), 409
    _wake()
    return jsonify(run=run_id, step=step, approved=approved), 200


@bp.post("/api/v1/runbooks/runs/<int:run_id>/approve")
@require_admin
def api_approve(run_id: int) -> tuple[Response, int]:
    return _decide(run_id, True)


@bp.post("/api/v1/runbooks/runs/<int:run_id>/reject")
@require_admin
def api_reject(run_id: int) -> tuple[Response, int]:
    return _decide(run_id, False)


@bp.post("/api/v1/runbooks/runs/<int:run_id>/cancel")
@require_admin
def api_cancel(run_id: int) -> tuple[Response, int]:
    body = request.get_json(silent=True) or {}
    try:
        status = runs.cancel(runtime().store, run_id, str(body.get("by") or "api"),
                             [Audit(runtime().config).on_finish])
    except runs.NotFound as exc:
        return jsonify(error=str(exc)), 404
    except runs.RunRefused as exc:
        return jsonify(error=str(exc)), 409
    return jsonify(run=run_id, status=status), 200


# -- pages ---------------------------------------------------------------------------------

@bp.get("/runbooks")
def list_page() -> str:
    rt = runtime()
    return render_template("runbooks.html", runbooks=rt.config.runbooks,
                           last=runs.last_runs(rt.store))


@bp.get("/runbooks/<rb_id>")
def runbook_page(rb_id: str) -> str:
    rb = _runbook(rb_id)
    return render_template("runbook.html", rb=rb, runs=runs.history(runtime().store, rb.id, 50))


@bp.get("/runbooks/runs/<int:run_id>")
def run_page(run_id: int) -> str:
    rt = runtime()
    try:
        run = runs.get(rt.store, run_id)
    except runs.NotFound as exc:
        abort(404, description=str(exc))
    jira = rt.config.notifiers.get("jira")
    server = getattr(jira, "server", "")
    jira_url = f"{server}/browse/{run['jira_key']}" if server and run["jira_key"] else None
    return render_template("runbook_run.html", run=run, jira_url=jira_url)


def run_from_slack(slack: SlackConfig, value: str, user_id: str, by: str) -> str:
    """The signed, admin-only Run runbook button of an incident's Slack message; returns
    the ephemeral answer the presser sees."""
    if user_id not in slack.admins:
        log.warning("slack run runbook refused: not an admin user=%s", user_id)
        return ("Only Slack admins may run runbooks (notifiers.slack.admins); ask one, or "
                "use the dashboard with the admin token")
    assert slack.signing_secret is not None
    parsed = parse_runbook_button(slack.signing_secret.get_secret_value(), value)
    if parsed is None:
        log.warning("slack run runbook refused: bad button signature user=%s", user_id)
        return "This button is not one the control plane sent; nothing was started"
    rb_id, incident_id = parsed
    try:
        rb = runtime().config.runbook(rb_id)
    except KeyError:
        return f"Runbook {rb_id} is no longer defined; nothing was started"
    try:
        started = runs.start(runtime().store, rb, {}, f"{by} (slack)", "slack", incident_id)
    except runs.RunRefused as exc:
        return f"Not started: {exc}"
    _wake()
    base = runtime().config.web.public_url.rstrip("/")
    return f"Started runbook {rb.id}: run #{started.run_id} {base}/runbooks/runs/{started.run_id}"
