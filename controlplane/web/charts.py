"""Server-side SVG charts: no JavaScript, no CDN, readable without the network.

``sparkline`` for tables, ``line_chart`` for detail pages (time on x, optional target line).
Returned strings are safe markup built only from numbers and escaped labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup


def sparkline(values: Sequence[float | None], width: int = 120, height: int = 24,
              color: str = "#0969da") -> Markup:
    """A tiny polyline of ``values`` (oldest first); None breaks the line."""
    pts = [v for v in values if v is not None]
    if len(pts) < 2:
        return Markup(f'<svg class="spark" width="{width}" height="{height}"></svg>')
    hi, lo = max(pts), min(pts)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    segments: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            segments.append([])
            continue
        y = height - 2 - (v - lo) / span * (height - 4)
        segments[-1].append(f"{i * step:.1f},{y:.1f}")
    lines = "".join(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" '
                    f'points="{" ".join(s)}"/>' for s in segments if len(s) > 1)
    return Markup(f'<svg class="spark" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img" '
                  f'aria-label="latency sparkline">{lines}</svg>')


def line_chart(points: Sequence[tuple[datetime, float]], *, title: str, unit: str = "s",
               target: float | None = None, width: int = 760, height: int = 220,
               color: str = "#0969da") -> Markup:
    """A time series with axes, min/max labels and an optional dashed target line."""
    pad_l, pad_r, pad_t, pad_b = 56, 12, 24, 28
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    head = (f'<svg class="chart" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">'
            f'<text x="{pad_l}" y="16" font-size="12" font-weight="600">{escape(title)}</text>')
    if not points:
        return Markup(head + f'<text x="{pad_l}" y="{pad_t + h / 2}" font-size="12" '
                      'fill="#656d76">no data yet</text></svg>')
    xs = [p[0].timestamp() for p in points]
    ys = [p[1] for p in points] + ([target] if target is not None else [])
    x0, x1 = min(xs), max(xs)
    y1 = max(ys) * 1.1 or 1.0
    xspan = (x1 - x0) or 1.0

    def px(x: float) -> float:
        return pad_l + (x - x0) / xspan * w

    def py(y: float) -> float:
        return pad_t + h - y / y1 * h

    coords = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=False))
    body = [
        f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" stroke="#d0d7de"/>',
        f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{pad_t + h}" stroke="#d0d7de"/>',
        f'<text x="{pad_l - 4}" y="{pad_t + 4}" font-size="10" text-anchor="end">'
        f'{_fmt(y1)}{unit}</text>',
        f'<text x="{pad_l - 4}" y="{pad_t + h}" font-size="10" text-anchor="end">0</text>',
        f'<text x="{pad_l}" y="{height - 8}" font-size="10">{_when(points[0][0])}</text>',
        f'<text x="{pad_l + w}" y="{height - 8}" font-size="10" text-anchor="end">'
        f'{_when(points[-1][0])}</text>',
        f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>',
    ]
    if target is not None:
        body.append(f'<line class="target" x1="{pad_l}" y1="{py(target):.1f}" x2="{pad_l + w}" '
                    f'y2="{py(target):.1f}" stroke="#cf222e" stroke-dasharray="5,4"/>'
                    f'<text x="{pad_l + w}" y="{py(target) - 4:.1f}" font-size="10" '
                    f'text-anchor="end" fill="#cf222e">target {_fmt(target)}{unit}</text>')
    return Markup(head + "".join(body) + "</svg>")


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _when(ts: datetime) -> str:
    return ts.strftime("%m-%d %H:%M")
