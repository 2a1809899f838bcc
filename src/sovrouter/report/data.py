"""What the offline evaluation reads: the replay inputs' catalog, requests, token counts and stream, plus the
score and label files (which routing never reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sovrouter.catalog import Catalog
from sovrouter.report.reference import Facts
from sovrouter.workload import (
    Label,
    StreamEvent,
    WorkloadPaths,
    WorkloadRequest,
    load_labels,
    load_requests,
    load_responses,
    load_scores,
    load_stream,
    resolve,
)


@dataclass(frozen=True)
class EvalData:
    catalog: Catalog
    requests: dict[str, WorkloadRequest]
    tokens: dict[tuple[str, str], tuple[int, int]]  # (request id, slot) -> (input tokens, output tokens)
    scores: dict[tuple[str, str], float]  # (request id, slot) -> score
    labels: dict[str, Label]
    stream: list[StreamEvent]

    @property
    def slots(self) -> list[str]:
        return [s.id for s in self.catalog.slots]

    def facts(self, request_id: str) -> Facts:
        req = self.requests[request_id]
        label = self.labels.get(request_id)
        return Facts(tenant=req.tenant, data_class=req.data_class,
                     personal_data=label.has_personal_data if label is not None else False)

    def domain(self, request_id: str) -> str:
        label = self.labels.get(request_id)
        return label.domain if label is not None else "unknown"

    def score(self, request_id: str, slot: str) -> float:
        """A missing score counts as 0 (an answer nobody graded is not credited)."""
        return self.scores.get((request_id, slot), 0.0)

    def cost(self, request_id: str, slot: str, deployment: str) -> float:
        """Catalog cost of serving ``request_id`` on ``slot/deployment`` with the workload's token counts."""
        tin, tout = self.tokens.get((request_id, slot), (0, 0))
        return self.catalog.cost_usd(slot, deployment, tin, tout)

    def same_item(self, a: str, b: str) -> bool:
        """Same underlying benchmark item (same prompt task): same id, or same ``(source, source_item_id)``."""
        if a == b:
            return True
        la, lb = self.labels.get(a), self.labels.get(b)
        if la is None or lb is None:
            return False
        return (la.source, la.source_item_id) == (lb.source, lb.source_item_id) and bool(la.source_item_id)


def load_eval_data(directory: str | Path | WorkloadPaths, split: str | None = None) -> EvalData:
    paths = resolve(directory, split)
    requests = load_requests(paths)
    tokens = {key: (r.input_tokens, r.output_tokens) for key, r in load_responses(paths, requests).items()}
    return EvalData(
        catalog=Catalog.load(paths.catalog),
        requests=requests,
        tokens=tokens,
        scores=load_scores(paths),
        labels=load_labels(paths),
        stream=load_stream(paths),
    )
