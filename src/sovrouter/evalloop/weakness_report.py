"""Write a :class:`WeaknessReport` as Markdown + JSON + PNG plots (matplotlib, Agg backend)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sovrouter.evalloop.weakness import Slice, WeaknessReport


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _row(s: Slice) -> list[str]:
    modes = ", ".join(f"{k} {v}" for k, v in s.failure_modes.items()) or "-"
    label = s.label + (f" (explained by {s.explained_by})" if s.explained_by else "")
    return [label, s.against, str(s.n), f"{_f(s.quality.estimate)} [{_f(s.quality.low)}, {_f(s.quality.high)}]",
            _f(s.expected_mean), f"{_f(s.gap.mean)} [{_f(s.gap.low)}, {_f(s.gap.high)}]", f"{s.gap.p_value:.2g}",
            modes, f"{s.saving_if_fixed_usd:.4f}", " ".join(s.examples[:3]) or "-"]


HEADERS = ["slice", "against", "n", "quality [95% CI]", "expected", "gap [95% CI]", "p", "failure modes",
           "saving if fixed (USD)", "examples"]


def markdown(report: WeaknessReport) -> str:
    cfg = report.settings
    lines = [
        "# Weakness report", "",
        f"{report.observations} requests with a quality signal; {len(report.slices)} slices tested "
        f"(min n {cfg.min_n}); a weakness is a gap >= {cfg.min_gap} that stays significant after Holm-Bonferroni "
        f"over all slices (family-wise alpha {cfg.alpha}). Gap = expected - observed quality (reference route's "
        "score on the same requests, or the router's predicted quality); ranked by the saving a fix unlocks.", "",
    ]
    weak = report.weaknesses
    lines += [f"## Weaknesses ({len(weak)})", ""]
    if weak:
        lines += [_table(HEADERS, [_row(s) for s in weak]), ""]
    else:
        lines += ["None found at this significance level.", ""]
    others = [s for s in report.slices if not s.weakness and s.dimension == "slot"]
    if others:
        lines += ["## Per slot (not flagged)", "", _table(HEADERS, [_row(s) for s in others]), ""]
    return "\n".join(lines)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def as_json(report: WeaknessReport) -> dict[str, Any]:
    return {
        "observations": report.observations,
        "settings": report.settings.__dict__,
        "weaknesses": [s.to_json() for s in report.weaknesses],
        "slices": [s.to_json() for s in report.slices],
    }


def plot_gaps(slices: Sequence[Slice], path: Path, top: int = 15) -> None:
    shown = slices[:top]
    fig, ax = plt.subplots(figsize=(8, 0.4 * max(3, len(shown)) + 1.2))
    if shown:
        ys = range(len(shown))
        means = [s.gap.mean for s in shown]
        err = [[max(0.0, s.gap.mean - s.gap.low) for s in shown], [max(0.0, s.gap.high - s.gap.mean) for s in shown]]
        colors = ["#c0392b" if s.weakness else "#7f8c8d" for s in shown]
        ax.barh(list(ys), means, xerr=err, color=colors, capsize=3)
        ax.set_yticks(list(ys), [f"{s.label} vs {s.against} (n={s.n})" for s in shown], fontsize=8)
        ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("quality gap (expected - observed), 95% CI; red = weakness")
    ax.set_title("Largest quality gaps by slice")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_quality_by(report: WeaknessReport, dimension: str, path: Path) -> None:
    rows = [s for s in report.slices if s.dimension == dimension and s.against == "reference"]
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(3, len(rows)) + 1.2))
    if rows:
        rows.sort(key=lambda s: (s.value, s.slot))
        ys = list(range(len(rows)))
        q = [s.quality.estimate for s in rows]
        err = [[max(0.0, s.quality.estimate - s.quality.low) for s in rows],
               [max(0.0, s.quality.high - s.quality.estimate) for s in rows]]
        ax.errorbar(q, ys, xerr=err, fmt="o", label="observed", capsize=3)
        ax.plot([s.expected_mean for s in rows], ys, "x", color="black", label="reference")
        ax.set_yticks(ys, [f"{s.value} / {s.slot}" for s in rows], fontsize=8)
        ax.invert_yaxis()
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"quality by {dimension} (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: WeaknessReport, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "weakness.md", out / "weakness.json", out / "weakness_gaps.png", out / "quality_by_domain.png"]
    paths[0].write_text(markdown(report), encoding="utf-8")
    paths[1].write_text(json.dumps(clean(as_json(report)), indent=1, allow_nan=False), encoding="utf-8")
    plot_gaps(report.slices, paths[2])
    plot_quality_by(report, "domain", paths[3])
    return paths


def clean(x: Any) -> Any:
    """NaN (an interval over too few values) becomes ``null`` so the JSON stays standard."""
    if isinstance(x, float):
        return None if math.isnan(x) or math.isinf(x) else x
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    return x
