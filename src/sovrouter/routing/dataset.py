"""The dev workload as arrays for training and offline evaluation of the learned router.

Reads ``requests``, ``responses``, ``scores``, ``labels`` and ``stream`` of a workload directory. Training may read
labels (domain, personal-data ground truth, item ids for group folds); the router at serving time never does.

``allowed_slots`` applies the workload README's reading of the tenants' policies (with ground-truth personal
data), the same reading the README's baselines use; the sovereignty engine replaces it in the live pipeline.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from sovrouter.catalog import Catalog, Deployment
from sovrouter.contracts import Candidate
from sovrouter.errors import ConfigError
from sovrouter.fileio import open_text
from sovrouter.routing.model import SLOT_ORDER

FRONTIER_ACCELERATOR = "frontier-accelerator"


def _read(path: Path) -> Iterator[dict[str, Any]]:
    try:
        with open_text(path) as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read workload file {path}: {exc}") from exc


def policy_allows(tenant: str, data_class: str, has_pii: bool, dep: Deployment) -> bool:
    """The README's interpretation of the synthetic tenants' policies."""
    if not dep.available_for(tenant):
        return False
    if tenant == "ministry-airgap":
        return dep.on_premises
    if tenant == "eurobank" and (has_pii or data_class in ("confidential", "restricted")):
        return dep.region == "EU" or dep.on_premises
    if tenant == "clinic-ca" and has_pii:
        return dep.on_premises
    return True


@dataclass
class Workload:
    """One row per request record. Slot-indexed arrays follow ``SLOT_ORDER``."""

    ids: list[str]
    texts: list[str]
    tenants: list[str]
    data_classes: list[str]
    has_pii: NDArray[np.bool_]
    domains: list[str]
    groups: list[str]
    responses: list[list[str]]
    input_tokens: NDArray[np.float64]  # (n,)
    output_tokens: NDArray[np.float64]  # (n, 4)
    scores: NDArray[np.float64]  # (n, 4)
    events: NDArray[np.float64]  # (n,) number of stream events of the request (1 + exact repeats)
    allowed: list[list[Candidate]]

    def __len__(self) -> int:
        return len(self.ids)

    def cost_matrix(self, catalog: Catalog) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Per request and slot: cost on the cheapest allowed deployment (nan when the slot is not allowed),
        and whether that deployment is a frontier accelerator."""
        n = len(self)
        cost = np.full((n, len(SLOT_ORDER)), np.nan)
        accel = np.zeros((n, len(SLOT_ORDER)), dtype=bool)
        for i, allowed in enumerate(self.allowed):
            for j, slot in enumerate(SLOT_ORDER):
                deps = [catalog.deployment(c.slot, c.deployment) for c in allowed if c.slot == slot]
                if not deps:
                    continue
                dep = min(deps, key=lambda d: (d.price_multiplier, d.id))
                cost[i, j] = catalog.cost_usd(slot, dep.id, int(self.input_tokens[i]), int(self.output_tokens[i, j]))
                accel[i, j] = dep.compute == FRONTIER_ACCELERATOR
        return cost, accel


def load_workload(directory: str | Path, catalog: Catalog, split: str = "dev") -> Workload:
    base = Path(directory) / split
    if not base.is_dir():
        raise ConfigError(f"workload split not found: {base}")
    labels = {r["id"]: r for r in _read(base / "labels.jsonl.gz")}
    slot_idx = {s: j for j, s in enumerate(SLOT_ORDER)}
    requests = list(_read(base / "requests.jsonl.gz"))
    row = {r["id"]: i for i, r in enumerate(requests)}
    n = len(requests)
    responses = [["" for _ in SLOT_ORDER] for _ in range(n)]
    input_tokens = np.zeros(n)
    output_tokens = np.zeros((n, len(SLOT_ORDER)))
    scores = np.full((n, len(SLOT_ORDER)), np.nan)
    for r in _read(base / "responses.jsonl.gz"):
        i, j = row[r["request_id"]], slot_idx[r["model"]]
        responses[i][j] = r["response"]
        input_tokens[i] = r["input_tokens"]
        output_tokens[i, j] = r["output_tokens"]
    for r in _read(base / "scores.jsonl.gz"):
        scores[row[r["request_id"]], slot_idx[r["model"]]] = r["score"]
    if np.isnan(scores).any():
        raise ConfigError("workload has requests without a score for every slot")
    counts = Counter(r["request_id"] for r in _read(base / "stream.jsonl.gz"))
    texts, tenants, classes, pii, domains, groups, allowed = [], [], [], [], [], [], []
    for r in requests:
        lab = labels[r["id"]]
        texts.append("\n".join(m["content"] for m in r["messages"] if m.get("role") == "user"))
        tenants.append(r["tenant"])
        classes.append(r.get("data_class", "public"))
        has_pii = bool(lab.get("pii_types"))
        pii.append(has_pii)
        domains.append(lab["domain"])
        groups.append(f"{lab['source']}:{lab['source_item_id']}")
        allowed.append([Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs()
                        if policy_allows(r["tenant"], classes[-1], has_pii, d)])
    return Workload(
        ids=[r["id"] for r in requests], texts=texts, tenants=tenants, data_classes=classes,
        has_pii=np.asarray(pii, dtype=bool), domains=domains, groups=groups, responses=responses,
        input_tokens=input_tokens, output_tokens=output_tokens, scores=scores,
        events=np.asarray([max(1, counts.get(i, 1)) for i in (r["id"] for r in requests)], dtype=np.float64),
        allowed=allowed,
    )
