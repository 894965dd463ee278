"""The RPO chart: exact geometry of the RPO line, its gaps and the dashed target line."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from controlplane.dr.chart import rpo_svg

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _series(values: list[float | None]) -> list[tuple[datetime, float | None]]:
    return [(T0 + timedelta(days=7 * i), v) for i, v in enumerate(values)]


def test_rpo_line_breaks_where_unknown_and_target_line_sits_at_the_target() -> None:
    # Plot area x 48..550, y 10..138; the top is 1.25 x the 24 h target = 30 h.
    svg = rpo_svg(_series([None, 0, 12 * 3600, None, 6 * 3600]), 86400, "RPO of postgres")
    assert re.findall(r'<polyline class="rpo"[^>]* points="([^"]+)"', svg) == [
        "173.5,138.0 299.0,86.8", "550.0,112.4"]
    assert '<line class="target" x1="48" x2="550" y1="35.6" y2="35.6" ' in svg
    assert ">target 24h</text>" in svg and ">30h</text>" in svg
    assert ">2026-11-01</text>" in svg and ">2026-11-29</text>" in svg
    assert "<title>RPO of postgres</title>" in svg


def test_chart_scales_up_to_an_rpo_above_the_target() -> None:
    svg = rpo_svg(_series([48 * 3600, 24 * 3600]), 86400, "x")
    assert ">48h</text>" in svg  # the top is the largest RPO, not the target
    assert '<line class="target" x1="48" x2="550" y1="74.0" y2="74.0" ' in svg


def test_chart_without_any_verified_backup_says_so() -> None:
    svg = rpo_svg(_series([None, None]), 3600, "RPO of <kafka>")
    assert "no verified backup in the last 30 days" in svg
    assert "<polyline" not in svg
    assert "RPO of &lt;kafka&gt;" in svg and "<kafka>" not in svg


def test_a_tiny_rpo_against_a_long_target_stays_visible_above_the_frame() -> None:
    """60 s against 24 h would be 0.07 px above the baseline (138): it is lifted 3 px and
    its value is written next to it."""
    svg = rpo_svg(_series([60, 90, 45]), 86400, "RPO of postgres")
    (points,) = re.findall(r'<polyline class="rpo"[^>]* points="([^"]+)"', svg)
    assert points == "48.0,135.0 299.0,135.0 550.0,135.0"
    assert re.search(r'<text class="rpo-now" x="490.0" y="131.0"[^>]*>now 45s</text>', svg)


def test_the_latest_rpo_is_written_in_words() -> None:
    svg = rpo_svg(_series([3 * 3600, 5400, None]), 86400, "x")
    assert ">now 90m</text>" in svg
