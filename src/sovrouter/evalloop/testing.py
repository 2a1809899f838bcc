"""Synthetic records and scores for tests and demos of the eval loop (a planted weakness is optional)."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sovrouter.contracts import (
    CacheOutcome,
    CallAttempt,
    Candidate,
    CandidateVerdict,
    RequestRecord,
    RouteDecision,
    Signals,
)

ROUTES = (Candidate(slot="local-small", deployment="edge"), Candidate(slot="sovereign-large", deployment="eu-sov"),
          Candidate(slot="hosted-mini", deployment="us"), Candidate(slot="frontier", deployment="us"))
COST = {"local-small": 0.00002, "sovereign-large": 0.0002, "hosted-mini": 0.0001, "frontier": 0.002}
DOMAINS = ("math", "code", "knowledge")
KINDS = {"math": "number", "code": "code", "knowledge": "choice"}


@dataclass(frozen=True)
class Planted:
    slot: str = "sovereign-large"
    domain: str = "math"
    quality: float = 0.35


def synthetic(n: int = 2000, seed: int = 0, planted: Planted | None = None, base_quality: float = 0.7,
              with_prediction: bool = True) -> tuple[list[RequestRecord], dict[tuple[str, str], float]]:
    """``n`` served records spread over routes and domains, and 0/1 scores for every (request, slot): each slot
    scores ``base_quality`` everywhere except the planted slice. The router's predicted quality (``slot_prior``)
    is ``base_quality`` for every slot."""
    rng = np.random.default_rng(seed)
    records: list[RequestRecord] = []
    scores: dict[tuple[str, str], float] = {}
    for i in range(n):
        rid = f"syn-{seed}-{i:05d}"
        domain = DOMAINS[int(rng.integers(len(DOMAINS)))]
        route = ROUTES[int(rng.integers(len(ROUTES)))]
        for c in ROUTES:
            q = planted.quality if planted and c.slot == planted.slot and domain == planted.domain else base_quality
            scores[(rid, c.slot)] = float(rng.random() < q)
        cost = COST[route.slot] * (0.5 + float(rng.random()))
        records.append(RequestRecord(
            request_id=rid, external_id=rid, tenant="acme-us", data_class="public", effective_class="public",
            modalities=["text"], arrived_ms=1_700_000_000_000.0 + i * 50.0, status="ok", final=route,
            calls=[CallAttempt(candidate=route, outcome="ok", latency_ms=300 + 10 * (i % 40), ttft_ms=120.0,
                               input_tokens=50, output_tokens=80, cost_usd=cost)],
            cache=CacheOutcome(kind="exact" if i % 10 == 9 else "miss"), latency_ms=320 + 10 * (i % 40),
            cost_usd=cost, fallback_used=i % 50 == 7,
            policy=[CandidateVerdict(candidate=c, allowed=True, rule="default.allow") for c in ROUTES],
            decision=RouteDecision(plan=[route], router="synthetic", evidence={"mode": "single", "review": False}),
            signals=Signals(domain=domain, language="en", output_kind=KINDS[domain],
                            **({"slot_prior": {c.slot: base_quality for c in ROUTES}} if with_prediction else {})),
        ))
    return records, scores


def write_workload(directory: Path, records: list[RequestRecord], scores: dict[tuple[str, str], float]) -> Path:
    """A flat workload folder with the request ids and the score file (what ``--workload`` reads)."""
    directory.mkdir(parents=True, exist_ok=True)
    with gzip.open(directory / "requests.jsonl.gz", "wt", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps({"id": r.external_id, "tenant": r.tenant, "data_class": "public",
                                 "messages": [{"role": "user", "content": "synthetic"}]}) + "\n")
    with gzip.open(directory / "scores.jsonl.gz", "wt", encoding="utf-8") as fh:
        for (rid, slot), s in scores.items():
            fh.write(json.dumps({"request_id": rid, "model": slot, "score": s, "score_kind": "binary"}) + "\n")
    return directory


def write_records(path: Path, records: list[RequestRecord]) -> Path:
    path.write_text("".join(r.model_dump_json() + "\n" for r in records), encoding="utf-8")
    return path
