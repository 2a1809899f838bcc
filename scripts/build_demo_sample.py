"""Build the demo's workload sample (``src/sovrouter/data/demo/*.jsonl``) from the dev split in ``../shared``.

Deterministic: the same dev files give the same sample. The rule is written up in
``src/sovrouter/data/demo/PROVENANCE.md``; run this again only to rebuild the sample from scratch::

    .venv/bin/python scripts/build_demo_sample.py [--workload ../shared/data/workload]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "sovrouter" / "data" / "demo"
DOMAINS = ("math", "code", "knowledge", "commonsense", "chat_hard")
TENANTS = ("acme-us", "eurobank", "ministry-airgap", "clinic-ca", "research-open")
SLOTS = ("local-small", "sovereign-large", "hosted-mini", "frontier")
MAX_PROMPT = 2500
MAX_RESPONSE = 1500
MAX_RESPONSE_CHAT = 2500
HARD_NEGATIVES = 2
REPEAT_EVERY = 4  # after every 4th new request, one exact repeat of an earlier one
GAP_MS = 250


def read(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def rank(request_id: str) -> str:
    return hashlib.sha256(f"sovrouter-demo:{request_id}".encode()).hexdigest()


def select(requests: dict[str, Any], labels: dict[str, Any], responses: dict[str, dict[str, Any]]) -> list[str]:
    def eligible(rid: str) -> bool:
        lab = labels[rid]
        if lab["copy_of"] is not None or set(responses[rid]) != set(SLOTS):
            return False
        limit = MAX_RESPONSE_CHAT if lab["domain"] == "chat_hard" else MAX_RESPONSE
        prompt = requests[rid]["messages"][0]["content"]
        return len(prompt) <= MAX_PROMPT and all(len(r["response"]) <= limit for r in responses[rid].values())

    pool = sorted((rid for rid in requests if eligible(rid)), key=rank)
    chosen: list[str] = []

    def take(pred: Any) -> None:
        for rid in pool:
            if rid not in chosen and pred(rid):
                chosen.append(rid)
                return

    # 1. one request per (domain, tenant), no personal data: every domain for every tenant.
    for domain in DOMAINS:
        for tenant in TENANTS:
            take(lambda r, d=domain, t=tenant: labels[r]["domain"] == d and requests[r]["tenant"] == t
                 and not labels[r]["pii_types"] and not labels[r]["hard_negative"])
    # 2. one request with personal data per tenant (domains rotate).
    for i, tenant in enumerate(TENANTS):
        domain = DOMAINS[i % 3]  # math, code, knowledge: the domains with short enough prompts for every tenant
        take(lambda r, d=domain, t=tenant: labels[r]["domain"] == d and requests[r]["tenant"] == t
             and bool(labels[r]["pii_types"]))
    # 3. a few hard negatives (identifier-like numbers that are not personal data).
    for _ in range(HARD_NEGATIVES):
        take(lambda r: labels[r]["hard_negative"])
    return chosen


def stream_of(chosen: list[str]) -> list[dict[str, Any]]:
    events: list[str] = []
    for i, rid in enumerate(chosen, start=1):
        events.append(rid)
        if i % REPEAT_EVERY == 0:
            events.append(chosen[int(rank(f"repeat:{i}"), 16) % i])  # a deterministic earlier request, repeated exactly
    return [{"seq": s, "request_id": rid, "t_ms": (s + 1) * GAP_MS} for s, rid in enumerate(events)]


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", type=Path, default=ROOT.parent / "shared" / "data" / "workload")
    args = parser.parse_args()
    dev = args.workload / "dev"
    requests = {r["id"]: r for r in read(dev / "requests.jsonl.gz")}
    labels = {r["id"]: r for r in read(dev / "labels.jsonl.gz")}
    responses: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in read(dev / "responses.jsonl.gz"):
        responses[r["request_id"]][r["model"]] = r
    scores: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in read(dev / "scores.jsonl.gz"):
        scores[r["request_id"]][r["model"]] = r

    chosen = select(requests, labels, responses)
    order = sorted(chosen)  # files sorted by id, as in the workload; the stream keeps the selection order
    write(OUT / "requests.jsonl", [requests[r] for r in order])
    write(OUT / "responses.jsonl", [responses[r][s] for r in order for s in SLOTS])
    write(OUT / "scores.jsonl", [scores[r][s] for r in order for s in SLOTS])
    write(OUT / "labels.jsonl", [labels[r] for r in order])
    write(OUT / "stream.jsonl", stream_of(chosen))
    print(f"{len(chosen)} requests, {len(stream_of(chosen))} stream events -> {OUT}")


if __name__ == "__main__":
    main()
