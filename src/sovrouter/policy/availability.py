"""Minimal policy: only the catalog's ``available_to``. The sovereignty engine (Cedar) replaces it."""

from __future__ import annotations

from collections.abc import Sequence

from sovrouter.catalog import Catalog
from sovrouter.contracts import Candidate, CandidateVerdict, Detection, NormalizedRequest, PolicyVerdict


class AvailabilityPolicy:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        verdicts = []
        for c in candidates:
            ok = self.catalog.deployment(c.slot, c.deployment).available_for(request.tenant)
            verdicts.append(CandidateVerdict(candidate=c, allowed=ok,
                                             rule="catalog.available_to" if not ok else "default.allow"))
        return PolicyVerdict(verdicts=verdicts, effective_class=request.data_class)
