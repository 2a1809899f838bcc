"""``sovrouter train --workload DIR --out DIR``: rebuild the learned router's artifacts from dev data.

Deterministic (fixed seeds, group folds). Writes ``router.joblib``, ``thresholds.json``, ``metrics.json`` and
``model_card.md``. The shipped artifacts live in ``src/sovrouter/data/router/`` (the default ``--out``).
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from sovrouter.catalog import Catalog, Tenants
from sovrouter.errors import ConfigError
from sovrouter.fileio import check_output_dir


def _default_out() -> Path:
    return Path(str(resources.files("sovrouter"))) / "data" / "router"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="train the learned router (prompt models, verifiers, thresholds)")
    p.add_argument("--workload", required=True, type=Path, help="workload directory holding dev/ and models.json")
    p.add_argument("--out", type=Path, default=None,
                   help="artifact directory (default: the package's own, i.e. the shipped artifacts are replaced; to "
                        "serve a retrained router from its own folder, name it in the configuration's "
                        "artifacts.router)")
    p.add_argument("--catalog", type=Path, default=None, help="models.json (default: WORKLOAD/models.json)")
    p.add_argument("--tenants", type=Path, default=None, help="tenants.json (default: WORKLOAD/tenants.json)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sovrouter.routing.evaluation import train_all

    catalog = Catalog.load(args.catalog or args.workload / "models.json")
    tenants = Tenants.load(args.tenants or args.workload / "tenants.json")
    out = args.out or _default_out()
    check_output_dir(out)  # now, not after the ~3 min of cross-validation and refitting

    def log(msg: str) -> None:
        print(f"train: {msg}", file=sys.stderr)

    try:
        report = train_all(args.workload, out, catalog, tenants, log=log)
    except ValueError as exc:  # scikit-learn's word on data it cannot fit (one domain, a slot always right...)
        raise ConfigError(f"cannot train on {args.workload}: {exc}") from None
    cv = report["cv_pooled"]
    print(
        f"train: cross-validated quality diff {cv['diff'] * 100:+.2f} points "
        f"(95% CI low {cv['diff_ci_low'] * 100:+.2f}); cost {cv['cost_ratio_vs_uncached_reference'] * 100:.1f}% "
        f"of the reference, {cv['off_frontier_cache_hits_off'] * 100:.1f}% of events off frontier accelerators "
        f"(report terms; both with the exact cache: {cv['cost_ratio'] * 100:.1f}%, "
        f"{cv['off_frontier'] * 100:.1f}%); worst domain "
        f"{min(cv['domain_diff'].values()) * 100:+.2f} points; {report['seconds']} s -> {out}"
    )
    return 0
