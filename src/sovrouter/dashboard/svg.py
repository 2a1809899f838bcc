"""Tiny server-rendered SVG charts (escaped labels, no scripts, no external assets)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

_W = 560
_ROW = 22
_LEFT = 190


def _fmt(v: float, unit: str) -> str:
    if unit == "$":
        return f"${v:.4g}"
    if unit == "ms":
        return f"{v:,.0f} ms"
    return f"{v:.3f}"


def bars(labels: Sequence[str], values: Sequence[float], unit: str = "", title: str = "") -> str:
    """Horizontal bar chart."""
    top = max((v for v in values if math.isfinite(v)), default=0.0) or 1.0
    h = _ROW * len(labels) + 30
    width = _W - _LEFT - 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{h}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        y = 10 + i * _ROW
        w = 0.0 if not math.isfinite(v) else max(1.0, width * v / top)
        out.append(f'<text x="{_LEFT - 6}" y="{y + 14}" text-anchor="end" class="lab">{escape(lab)}</text>')
        out.append(f'<rect x="{_LEFT}" y="{y + 3}" width="{w:.1f}" height="{_ROW - 8}" class="bar"/>')
        out.append(f'<text x="{_LEFT + w + 5:.1f}" y="{y + 14}" class="val">{escape(_fmt(v, unit))}</text>')
    out.append("</svg>")
    return "".join(out)


def intervals(labels: Sequence[str], est: Sequence[float], low: Sequence[float], high: Sequence[float],
              ref: Sequence[float | None], title: str = "") -> str:
    """Point estimates with interval whiskers on a 0..1 axis; ``ref`` drawn as a black tick."""
    h = _ROW * len(labels) + 44
    width = _W - _LEFT - 30

    def x(v: float) -> float:
        return _LEFT + width * min(1.0, max(0.0, v))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{h}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="6" y2="{h - 24}" class="grid"/>'
                   f'<text x="{x(t):.1f}" y="{h - 8}" text-anchor="middle" class="val">{t:.2f}</text>')
    for i, lab in enumerate(labels):
        y = 14 + i * _ROW
        out.append(f'<text x="{_LEFT - 8}" y="{y + 4}" text-anchor="end" class="lab">{escape(lab)}</text>')
        if math.isfinite(low[i]) and math.isfinite(high[i]):
            out.append(f'<line x1="{x(low[i]):.1f}" x2="{x(high[i]):.1f}" y1="{y}" y2="{y}" class="ci"/>')
        out.append(f'<circle cx="{x(est[i]):.1f}" cy="{y}" r="4" class="pt"/>')
        r = ref[i]
        if r is not None:
            out.append(f'<line x1="{x(r):.1f}" x2="{x(r):.1f}" y1="{y - 7}" y2="{y + 7}" class="ref"/>')
    out.append("</svg>")
    return "".join(out)
