"""Server-side SVG: RPO over time with the target line (no scripts, no CDN)."""

from __future__ import annotations

from datetime import datetime
from html import escape

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 160, 48, 10, 10, 22
MIN_LIFT = 3.0
"""Pixels above the baseline for any RPO above zero: a minute against a 24 h target would
otherwise sit on the frame's bottom edge and read as no line at all."""


def rpo_svg(series: list[tuple[datetime, float | None]], target_s: float, title: str) -> str:
    """A polyline of RPO (hours) per sample, gaps where unknown, a dashed target line."""
    values = [v for _, v in series if v is not None]
    top = max([target_s * 1.25, *values]) / 3600.0
    n = max(len(series) - 1, 1)

    def x(i: int) -> float:
        return PAD_L + (W - PAD_L - PAD_R) * i / n

    def y(hours: float) -> float:
        return PAD_T + (H - PAD_T - PAD_B) * (1 - min(hours, top) / top)

    def y_rpo(hours: float) -> float:
        return min(y(hours), H - PAD_B - MIN_LIFT) if hours > 0 else y(hours)

    paths: list[str] = []
    current: list[str] = []
    for i, (_, v) in enumerate(series):
        if v is None:
            if current:
                paths.append(" ".join(current))
            current = []
            continue
        current.append(f"{x(i):.1f},{y_rpo(v / 3600.0):.1f}")
    if current:
        paths.append(" ".join(current))
    ty = y(target_s / 3600.0)
    parts = [f'<svg class="rpo-chart" xmlns="http://www.w3.org/2000/svg" width="{W}" '
             f'height="{H}" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">',
             f"<title>{escape(title)}</title>",
             f'<rect x="{PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" '
             f'height="{H - PAD_T - PAD_B}" fill="#fff" stroke="#d0d7de"/>']
    for frac in (0.0, 0.5, 1.0):
        hours = top * frac
        parts.append(f'<text x="{PAD_L - 4}" y="{y(hours) + 4:.1f}" font-size="10" '
                     f'text-anchor="end" fill="#656d76">{hours:.0f}h</text>')
    parts.append(f'<line class="target" x1="{PAD_L}" x2="{W - PAD_R}" y1="{ty:.1f}" '
                 f'y2="{ty:.1f}" stroke="#cf222e" stroke-dasharray="5,4"/>')
    parts.append(f'<text x="{W - PAD_R - 2}" y="{ty - 3:.1f}" font-size="10" text-anchor="end"'
                 f' fill="#cf222e">target {target_s / 3600:.0f}h</text>')
    for pts in paths:
        parts.append(f'<polyline class="rpo" fill="none" stroke="#0969da" stroke-width="1.5" '
                     f'points="{pts}"/>')
    latest = next(((i, v) for i, (_, v) in reversed(list(enumerate(series)))
                   if v is not None), None)
    if latest is not None:  # the latest RPO in words, whatever the scale shows
        i, v = latest
        parts.append(f'<text class="rpo-now" x="{min(x(i), W - PAD_R - 60):.1f}" '
                     f'y="{y_rpo(v / 3600.0) - 4:.1f}" font-size="10" fill="#0969da">'
                     f'now {_short(v)}</text>')
    if series:
        first, last = series[0][0], series[-1][0]
        parts.append(f'<text x="{PAD_L}" y="{H - 6}" font-size="10" fill="#656d76">'
                     f'{first:%Y-%m-%d}</text>')
        parts.append(f'<text x="{W - PAD_R}" y="{H - 6}" font-size="10" text-anchor="end" '
                     f'fill="#656d76">{last:%Y-%m-%d}</text>')
    if not values:
        parts.append(f'<text x="{W / 2}" y="{H / 2}" font-size="12" text-anchor="middle" '
                     'fill="#656d76">no verified backup in the last 30 days</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
