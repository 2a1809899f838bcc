"""``sovrouter train-answer-shape --workload DIR --out FILE``: rebuild the answer-shape model.

Reads a workload's prompts and recorded answers (``requests`` and ``responses``; no scores or labels), fits the
copy-fraction and output-length models (:mod:`sovrouter.speculative.answer_shape_train`) and writes FILE (copy
it to ``src/sovrouter/data/answer_shape/answer_shape.json`` to ship it). The out-of-fold report (folds by
request) goes to stderr and into the artifact's ``meta``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sovrouter.fileio import check_output
from sovrouter.intake import normalize_chat
from sovrouter.speculative.answer_shape_train import build_rows, fit, out_of_fold, report
from sovrouter.workload import load_requests, load_responses, resolve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train-answer-shape", help="fit the copy-fraction and output-length models")
    p.add_argument("--workload", required=True, help="workload directory (flat or shared layout)")
    p.add_argument("--split", default=None, help="split folder in the shared layout (default: dev)")
    p.add_argument("--out", required=True, type=Path, help="artifact JSON to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_output(args.out)
    paths = resolve(args.workload, args.split)
    requests = {rid: normalize_chat(r.chat_body(), tenant=r.tenant, request_id=rid, recorded=True)
                for rid, r in load_requests(paths).items()}
    answers = {k: v.response for k, v in load_responses(paths).items()}
    rows = build_rows(requests, answers)
    oof = report(rows, out_of_fold(rows))
    model = fit(rows, meta={"trained_on": f"{paths.data.name}: {len(requests)} prompts, {len(rows.copy)} answers",
                            "out_of_fold": oof})
    model.save(args.out)
    print(f"train-answer-shape: {json.dumps(oof)} -> {args.out}", file=sys.stderr)
    return 0
