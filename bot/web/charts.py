"""Charts as SVG drawn here, on the server: no chart library, no script, nothing fetched. Every label
goes through `escape` (a version name or a day is data)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

W, H, PAD = 560, 200, 36


def line_chart(points: Sequence[tuple[float, float]], x_label: str, y_label: str) -> str:
    """A polyline of (x, y) with its axes' ranges written at the ends."""
    if not points:
        return ""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = (W - 2 * PAD) / ((x1 - x0) or 1)
    sy = (H - 2 * PAD) / ((y1 - y0) or 1)
    path = " ".join(f"{PAD + (x - x0) * sx:.1f},{H - PAD - (y - y0) * sy:.1f}" for x, y in points)
    return (
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(y_label)} by {escape(x_label)}">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<polyline points="{path}" class="line"/>'
        f'<text x="{PAD}" y="{H - 8}">{escape(x_label)} {x0:g}</text>'
        f'<text x="{W - PAD}" y="{H - 8}" text-anchor="end">{x1:g}</text>'
        f'<text x="4" y="{PAD - 8}">{escape(y_label)} {y1:.3g}</text>'
        f'<text x="4" y="{H - PAD + 14}">{y0:.3g}</text></svg>'
    )


def bar_chart(bars: Sequence[tuple[str, int, int]]) -> str:
    """Stacked bars of (label, 👍, 👎), one per label, with the label under each."""
    if not bars:
        return ""
    top = max(up + down for _, up, down in bars) or 1
    width = (W - 2 * PAD) / len(bars)
    parts = [f'<svg class="chart" viewBox="0 0 {W} {H + 40}" role="img" aria-label="votes">']
    for i, (label, up, down) in enumerate(bars):
        x = PAD + i * width + 2
        up_h, down_h = (H - 2 * PAD) * up / top, (H - 2 * PAD) * down / top
        parts.append(
            f'<rect x="{x:.1f}" y="{H - PAD - up_h:.1f}" width="{width - 4:.1f}" height="{up_h:.1f}" '
            f'class="up"><title>{escape(label)}: {up} 👍</title></rect>'
        )
        parts.append(
            f'<rect x="{x:.1f}" y="{H - PAD - up_h - down_h:.1f}" width="{width - 4:.1f}" '
            f'height="{down_h:.1f}" class="down"><title>{escape(label)}: {down} 👎</title></rect>'
        )
        parts.append(
            f'<text x="{x:.1f}" y="{H - PAD + 14}" class="small" '
            f'transform="rotate(30 {x:.1f} {H - PAD + 14})">{escape(label)}</text>'
        )
    parts.append(f'<text x="4" y="{PAD - 8}">{top} votes</text></svg>')
    return "".join(parts)
