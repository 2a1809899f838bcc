"""Dev replay with the semantic cache off vs on (same settings otherwise): hits, wrong hits, KPI deltas.

    python bench/semantic_cache_replay.py [--workload /work/shared/data/workload] [--config FILE]

A semantic hit is "wrong" here if the event it was served from carries a different prompt text (in this
workload every distinct prompt is a distinct task with its own gold answer, so any such hit risks the answer).
Quality and cost come from ``sovrouter report``'s KPI code. Writes bench/results/semantic_cache_replay.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sovrouter.cache.semindex import SemanticIndex
from sovrouter.cache.verifier import PairVerifier
from sovrouter.embed import MiniLMEmbedder, named_embedder
from sovrouter.replay.harness import replay_settings, run_replay
from sovrouter.report.data import load_eval_data
from sovrouter.report.kpi import kpi_report
from sovrouter.workload import ReplayInputs, load_replay_inputs

OUT = Path(__file__).parent / "results" / "semantic_cache_replay.json"
KEYS = ("quality", "cost", "cost_ratio", "cache_hit_share", "cache_other_item_hits", "cross_tenant_cache_hits",
        "violations", "refusals")


def stress(inputs: ReplayInputs, text: dict[str, str]) -> dict[str, Any]:
    """Eligibility off: each distinct prompt of a tenant looked up among that tenant's other prompts, numbers
    and the verifier only. Every accepted match is a different prompt (a different task): all would be wrong."""
    verifier = PairVerifier.load()
    embedder = MiniLMEmbedder(threads=2)
    alt = named_embedder(verifier.alt_embedder) if verifier.alt_embedder else None
    by_tenant: dict[str, list[str]] = {}
    for rid, r in inputs.requests.items():
        by_tenant.setdefault(r.tenant, []).append(text[rid])
    accepted, looked, examples = 0, 0, []
    for tenant in sorted(by_tenant):
        prompts = sorted(set(by_tenant[tenant]))
        vecs = embedder.embed(prompts)
        index: SemanticIndex[str] = SemanticIndex(verifier, embedder.dim, alt)
        for p, v in zip(prompts, vecs, strict=True):
            index.add(p, v, p)
        for p, cands in zip(prompts, index.score_many(prompts, vecs), strict=True):  # itself is never a candidate
            looked += 1
            best = max(cands, key=lambda c: (c.probability, c.cosine), default=None)
            if best is not None and best.probability >= verifier.threshold:
                accepted += 1
                examples.append([tenant, p[:160], best.text[:160], round(best.probability, 4)])
    return {"prompts": looked, "accepted_matches": accepted, "examples": examples[:20]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", type=Path, default=Path("/work/shared/data/workload"))
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--stress", action="store_true",
                    help="also run the verifier alone (eligibility off) over every prompt of each tenant")
    args = ap.parse_args()
    inputs = load_replay_inputs(args.workload, None)
    data = load_eval_data(args.workload, None)
    base = replay_settings(inputs, args.config)
    text = {rid: r.chat_body()["messages"][0]["content"] for rid, r in inputs.requests.items()}
    out: dict[str, Any] = {"workload": str(args.workload), "router": base.router}
    for name, on in (("semantic_off", False), ("semantic_on", True)):
        settings = base.model_copy(update={"cache": base.cache.model_copy(update={"semantic_enabled": on})})
        result = run_replay(inputs, settings)
        by_seq = {d.seq: d for d in result.decisions}
        hits = [d for d in result.decisions if d.cache is not None]
        other = [d for d in hits if by_seq[d.cache.source_seq].workload_id != d.workload_id]  # type: ignore[union-attr]
        wrong = [d for d in other if text[by_seq[d.cache.source_seq].workload_id] != text[d.workload_id]]  # type: ignore[union-attr]
        kpi = kpi_report(data, result.decisions)
        out[name] = {"cache_hits": len(hits), "hits_from_another_request": len(other),
                     "hits_from_a_different_prompt": len(wrong), "wall_s": result.wall_s,
                     **{k: kpi[k] for k in KEYS}}
    if args.stress:
        out["verifier_without_eligibility"] = stress(inputs, text)
    out["quality_delta_on_minus_off"] = out["semantic_on"]["quality"] - out["semantic_off"]["quality"]
    out["cost_delta_on_minus_off"] = out["semantic_on"]["cost"] - out["semantic_off"]["cost"]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
