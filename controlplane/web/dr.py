"""The managers' DR dashboard (/dr) and its JSON twin (/api/v1/dr)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, render_template
from markupsafe import Markup

from controlplane.backups.streams import human_bytes
from controlplane.dr import tracker
from controlplane.dr.chart import rpo_svg
from controlplane.web import runtime

bp = Blueprint("dr", __name__, template_folder="templates")


@bp.get("/api/v1/dr")
def api_dr() -> Response:
    rt = runtime()
    statuses = tracker.evaluate(rt.store, rt.config.dr)
    return jsonify(tracker.to_api(statuses, rt.store, rt.config.dr))


@bp.get("/dr")
def dr_page() -> str:
    rt = runtime()
    targets = rt.config.dr.targets()
    statuses = tracker.evaluate(rt.store, rt.config.dr)
    charts: dict[str, Markup] = {}
    histories: dict[str, dict[str, list[Any]]] = {}
    for cs in statuses:
        src = targets[cs.component].backup_component or cs.component  # as the tracker measures
        series = tracker.rpo_series(rt.store, src)
        # rpo_svg escapes every text it embeds; the rest is numbers we computed.
        charts[cs.component] = Markup(rpo_svg(
            series, cs.rpo_target_s, f"RPO of {cs.component} over 30 days"))
        histories[cs.component] = tracker.history(rt.store, src)
    return render_template("dr.html", statuses=statuses, charts=charts, histories=histories,
                           dur=tracker.human_duration, size=human_bytes, words=tracker.WORDS)
