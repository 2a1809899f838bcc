"""A tiny synthetic workload in the ``rep-v1`` format, for tests of replay, reports and anything that eats a
workload directory. Deterministic for a given seed; catalog and tenants are the demo's copies.

    wl = write_workload(tmp_path / "wl", n_requests=20, seed=1)
    wl.paths.data / "requests.jsonl.gz"   # etc.; wl.requests / wl.responses / wl.scores / wl.labels / wl.stream

Prompts are synthetic (no benchmark text); some carry a made-up personal-data line (labelled in ``labels``),
one request is a cross-tenant copy of another (``copy_of``), and the stream repeats earlier requests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import random
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sovrouter.catalog import Catalog
from sovrouter.contracts import Candidate, ModelResult, NormalizedRequest, RouteDecision, Signals
from sovrouter.workload import WorkloadPaths

DEMO_DATA = Path(__file__).resolve().parent / "data" / "demo"
SLOTS: tuple[str, ...] = ("local-small", "sovereign-large", "hosted-mini", "frontier")
TENANTS: tuple[str, ...] = ("acme-us", "eurobank", "ministry-airgap", "clinic-ca", "research-open")
CLASSES: tuple[str, ...] = ("public", "internal", "confidential", "restricted")
DOMAINS: tuple[str, ...] = ("math", "code", "knowledge")
# Probability that a slot's answer is correct, per slot (frontier best), for the synthetic scores.
_P_CORRECT = {"local-small": 0.45, "sovereign-large": 0.7, "hosted-mini": 0.7, "frontier": 0.85}
_PII_LINES = (
    ("Customer Jane Roe (jane.roe@example.org) asked about this.", ["EMAIL", "PERSON"]),
    ("Patient John Doe, phone 555-0100, sent this in.", ["PERSON", "PHONE"]),
)


@dataclass
class SyntheticWorkload:
    paths: WorkloadPaths
    requests: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)
    stream: list[dict[str, Any]] = field(default_factory=list)


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """gzip JSONL if ``path`` ends in ``.gz``, else plain JSONL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def write_workload(
    directory: str | Path,
    *,
    n_requests: int = 16,
    repeat_share: float = 0.25,
    seed: int = 0,
    with_eval: bool = True,
    layout: Literal["flat", "shared"] = "flat",
) -> SyntheticWorkload:
    """Write a synthetic workload to ``directory`` and return what was written.

    ``with_eval=False`` leaves out ``scores`` and ``labels`` (as on the held-out split); ``layout="shared"`` puts
    the data files under ``directory/dev/`` with ``models.json``/``tenants.json`` at the top.
    """
    rng = random.Random(seed)
    root = Path(directory)
    data = root / "dev" if layout == "shared" else root
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_DATA / "models.json", root / "models.json")
    shutil.copy(DEMO_DATA / "tenants.json", root / "tenants.json")
    wl = SyntheticWorkload(paths=WorkloadPaths(root, data))

    for i in range(n_requests):
        rid = f"rq-syn{seed:02d}-{i:04d}"
        tenant = TENANTS[i % len(TENANTS)]
        data_class = "restricted" if tenant == "ministry-airgap" else rng.choice(CLASSES)
        domain = DOMAINS[i % len(DOMAINS)]
        task = f"Synthetic {domain} task {i}: compute {rng.randint(2, 99)} * {rng.randint(2, 99)} and explain."
        pii: list[str] = []
        if i % 4 == 1:
            line, pii = _PII_LINES[i % len(_PII_LINES)]
            task = f"{line}\n\n{task}"
        item = f"syn-{seed}-{i}"
        _add_request(wl, rng, rid, tenant, data_class, task, domain, item, pii, copy_of=None)
    if n_requests >= 2:  # a cross-tenant copy of request 0: same prompt and answers, another tenant
        src = wl.requests[0]
        tenant = next(t for t in TENANTS if t != src["tenant"] and t != "ministry-airgap")
        _add_request(wl, rng, f"rq-syn{seed:02d}-copy", tenant, "public", src["messages"][0]["content"],
                     wl.labels[0]["domain"], wl.labels[0]["source_item_id"], [], copy_of=src["id"],
                     like=src["id"])

    ids = [r["id"] for r in wl.requests]
    seen: list[str] = []
    t_ms = 0
    order: list[str] = []
    for rid in ids:
        order.append(rid)
        seen.append(rid)
        if rng.random() < repeat_share / (1 - repeat_share):
            order.append(rng.choice(seen))
    for seq, rid in enumerate(order):
        t_ms += rng.randint(1, 120)
        wl.stream.append({"seq": seq, "request_id": rid, "t_ms": t_ms})

    write_jsonl(data / "requests.jsonl.gz", wl.requests)
    write_jsonl(data / "responses.jsonl.gz", wl.responses)
    write_jsonl(data / "stream.jsonl.gz", wl.stream)
    if with_eval:
        write_jsonl(data / "scores.jsonl.gz", wl.scores)
        write_jsonl(data / "labels.jsonl.gz", wl.labels)
    return wl


def _add_request(wl: SyntheticWorkload, rng: random.Random, rid: str, tenant: str, data_class: str, content: str,
                 domain: str, item: str, pii: list[str], copy_of: str | None, like: str | None = None) -> None:
    wl.requests.append({"id": rid, "tenant": tenant, "data_class": data_class,
                        "messages": [{"role": "user", "content": content}]})
    for slot in SLOTS:
        if like is not None:  # a copy carries the original's answers and scores
            resp = next(r for r in wl.responses if r["request_id"] == like and r["model"] == slot)
            score = next(s for s in wl.scores if s["request_id"] == like and s["model"] == slot)["score"]
            text = resp["response"]
        else:
            text = f"[{slot}] " + " ".join(f"step{k}" for k in range(rng.randint(3, 40)))
            score = 1.0 if rng.random() < _P_CORRECT[slot] else 0.0
        wl.responses.append({"request_id": rid, "model": slot, "response": text, "input_tokens": tokens(content),
                             "output_tokens": tokens(text)})
        wl.scores.append({"request_id": rid, "model": slot, "score": score, "score_kind": "binary_correct"})
    wl.labels.append({"id": rid, "source": "synthetic", "source_item_id": item, "domain": domain,
                      "subdomain": domain, "backing_models": {s: f"synthetic-{s}" for s in SLOTS},
                      "pii_types": sorted(set(pii)), "pii_spans": [], "hard_negative": False, "copy_of": copy_of})


class EscalatingRouter:
    """A router test double whose choices depend on the answers it reads: cheapest slot first (local-small, then
    sovereign-large, hosted-mini, frontier), escalating to the next plan step whenever the last answer's text
    hashes to an even number. Replay tests use it to show decisions depend only on the answers of called slots."""

    name = "escalating-test"
    ORDER: tuple[str, ...] = ("local-small", "sovereign-large", "hosted-mini", "frontier")

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def decide(self, request: NormalizedRequest, signals: Signals, allowed: Sequence[Candidate]) -> RouteDecision:
        def rank(c: Candidate) -> tuple[int, float, str]:
            slot = self.ORDER.index(c.slot) if c.slot in self.ORDER else len(self.ORDER)
            return (slot, self.catalog.deployment(c.slot, c.deployment).price_multiplier, c.key)

        plan: list[Candidate] = []
        for c in sorted(allowed, key=rank):  # one deployment per slot: escalation moves up a slot
            if all(p.slot != c.slot for p in plan):
                plan.append(c)
        return RouteDecision(plan=plan, router=self.name, evidence={"review": True})

    def review(self, request: NormalizedRequest, signals: Signals, decision: RouteDecision,
               results: Sequence[ModelResult]) -> Candidate | None:
        last = results[-1]
        if hashlib.sha256(last.text.encode()).digest()[0] % 2:
            return None
        i = decision.plan.index(last.candidate) if last.candidate in decision.plan else len(decision.plan)
        return decision.plan[i + 1] if i + 1 < len(decision.plan) else None
