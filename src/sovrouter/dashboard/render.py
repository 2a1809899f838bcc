"""Render :class:`DashboardData` as one self-contained HTML page (Jinja2 with autoescaping)."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

from jinja2 import Environment, select_autoescape
from markupsafe import Markup

from sovrouter.dashboard import svg
from sovrouter.dashboard.data import DashboardData
from sovrouter.evalloop.stats import regression

TEMPLATE = "data/dashboard.html.j2"



def _f3(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _kpis(d: DashboardData) -> list[dict[str, str]]:
    k = d.kpi
    out: list[dict[str, str]] = []

    def add(id_: str, label: str, value: str, cls: str = "") -> None:
        out.append({"id": id_, "label": label, "value": value, "cls": cls})

    if d.quality is not None:
        add("quality", f"quality (n={d.quality.n}) [{_f3(d.quality.low)}, {_f3(d.quality.high)}]",
            _f3(d.quality.estimate))
    if d.gap is not None:
        cls = "bad" if regression(d.gap) else "good"
        add("gap", f"vs reference (n={d.gap.n}) [{_f3(d.gap.low)}, {_f3(d.gap.high)}]", f"{d.gap.mean:+.3f}", cls)
    if "quality_ratio" in k:
        add("ratio", "quality / reference quality", _f3(k["quality_ratio"]))
    if "cost_vs_reference_est" in k:
        add("cost_ratio", "cost vs reference route (est.)", _pct(k["cost_vs_reference_est"]))
    if "off_frontier_share" in k:
        add("off_frontier", "served off frontier accelerators", _pct(k["off_frontier_share"]))
    add("cost", "total cost (USD)", f"{k.get('cost_usd', 0.0):.4f}")
    add("exact", "exact cache hit rate", _pct(k.get("exact_cache_rate", 0.0)))
    add("semantic", "semantic cache hit rate", _pct(k.get("semantic_cache_rate", 0.0)))
    add("fallback", "fallback rate", _pct(k.get("fallback_rate", 0.0)))
    add("escalation", "escalation rate", _pct(k.get("escalation_rate", 0.0)))
    add("regeneration", "regeneration rate", _pct(k.get("regeneration_rate", 0.0)))
    add("refusal", "refused by policy", _pct(k.get("refusal_rate", 0.0)))
    return out


def render(d: DashboardData) -> str:
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    tpl = env.from_string(resources.files("sovrouter").joinpath(TEMPLATE).read_text(encoding="utf-8"))
    routes = d.routes
    ctx: dict[str, Any] = {
        "d": d, "kpis": _kpis(d), "pct": _pct, "f3": _f3,
        "cost_svg": Markup(svg.bars([r.route for r in routes], [r.cost_per_request for r in routes], "$",
                                    "cost per request by route")),
        "latency_svg": Markup(svg.bars([r.route for r in routes], [r.latency_mean_ms for r in routes], "ms",
                                       "mean latency by route")),
        "domain_svg": Markup(svg.intervals([r.domain for r in d.domains], [r.quality.estimate for r in d.domains],
                                           [r.quality.low for r in d.domains], [r.quality.high for r in d.domains],
                                           [r.reference for r in d.domains], "quality by domain")),
    }
    return tpl.render(**ctx)
