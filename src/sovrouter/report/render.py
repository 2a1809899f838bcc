"""Plain-text tables of the report (KPIs, per domain, baselines)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sovrouter.report.baselines import BaselineRow


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                                 strict=True)))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _ci(d: dict[str, float]) -> str:
    return f"{d['mean']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"


def kpi_text(report: dict[str, Any]) -> str:
    ref_off = _pct(report["ref_off_frontier_share"])
    rows = [
        ["quality (mean score)", f"{report['quality']:.4f}", f"{report['ref_quality']:.4f}"],
        ["paired diff, 95% CI", _ci(report["paired_diff"]), ""],
        ["cost USD", f"{report['cost']:.4f}", f"{report['ref_cost']:.4f}"],
        ["cost ratio", f"{report['cost_ratio']:.4f}", "1.0000"],
        ["off frontier accelerators", _pct(report["off_frontier_share"]), ref_off],
        ["cache hits", _pct(report["cache_hit_share"]), "0.0%"],
        ["refusals", str(report["refusals"]), "0"],
        ["policy violations", str(report["violations"]), "0"],
        ["cross-tenant cache hits", str(report["cross_tenant_cache_hits"]), "0"],
        ["cache hits on another item", str(report["cache_other_item_hits"]), "0"],
    ]
    head = (f"Replay KPIs over {report['n_events']} stream events "
            "(reference = always-frontier under policy, paid on every event, no cache)")
    return head + "\n" + table(["metric", "replay", "reference"], rows)


def domain_text(report: dict[str, Any]) -> str:
    rows = []
    for name, d in report["per_domain"].items():
        rows.append([name, str(d["n"]), f"{d['quality']:.4f}", f"{d['ref_quality']:.4f}", _ci(d["paired_diff"]),
                     f"{d['cost_ratio']:.4f}", _pct(d["off_frontier_share"]), _pct(d["cache_hit_share"]),
                     str(d["refusals"]), str(d["violations"])])
    return "Per domain (domain from labels)\n" + table(
        ["domain", "n", "quality", "ref", "paired diff, 95% CI", "cost ratio", "off frontier", "cache",
         "refused", "viol."], rows)


def baseline_text(title: str, rows: Sequence[BaselineRow]) -> str:
    domains = sorted({d for r in rows for d in r.per_domain})
    out = []
    for r in rows:
        out.append([r.name, f"{r.quality:.4f}", *(f"{r.per_domain.get(d, 0.0):.4f}" for d in domains),
                    f"{r.cost:.4f}", _pct(r.cost_vs_frontier), _pct(r.on_frontier_share),
                    _pct(r.rerouted_share) if r.rerouted_share is not None else "-"])
    headers = ["policy", "mean quality", *domains, "total cost USD", "cost vs always-frontier",
               "on frontier-accelerator", "rerouted by policy"]
    n = rows[0].n if rows else 0
    return f"{title} (n={n})\n" + table(headers, out)


def baseline_json(rows: Sequence[BaselineRow]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]
