"""Sovereignty policy as code: Cedar (``cedarpy``), evaluated once per request over all candidates in one batch.

Policies, schema and version live in ``data/policy/`` (see ``manifest.json``). Entities:

- principal ``Tenant::"<id>"`` (``known``: the tenant has a written policy in tenants.json);
- resource ``Deployment::"<slot>/<deployment>"`` with the catalog's slot, region, on_premises, compute,
  licence kind (``open-weights`` / ``proprietary`` / ``unknown``), languages and available_to;
- context: declared and effective data class (and its rank), personal data present, detection failed, detected
  types, the last user turn's language and every language identified in the user's turns.

Fail closed, two ways (``docs/sovereignty.md``): a failed detection arrives as personal data of unknown type and
the request as ``restricted``; a failed evaluation (engine error, any policy evaluation error, or over the time
budget) allows nothing, so the pipeline refuses.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cedarpy

from sovrouter.catalog import Catalog, Slot, Tenants
from sovrouter.contracts import (
    DATA_CLASS_ORDER,
    Candidate,
    CandidateVerdict,
    DataClass,
    Detection,
    NormalizedRequest,
    PolicyVerdict,
)
from sovrouter.errors import ConfigError, PolicyEngineError

log = logging.getLogger(__name__)

RULES_DIR = Path(__file__).resolve().parents[1] / "data" / "policy"  # shipped as package data
DEFAULT_DENY = "default.deny"  # no permit applied (Cedar's implicit deny)
ENGINE_FAILED = "policy.engine-failed"
ACTION = 'Action::"route"'


def licence_kind(slot: Slot) -> str:
    """``open-weights`` / ``proprietary`` / ``unknown``: an explicit ``licence_kind`` in the catalog wins."""
    explicit = getattr(slot, "licence_kind", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    text = slot.licence.lower()
    # proprietary first: "Proprietary; no open weights" is not open weights (a rule allowing only open weights
    # errs towards refusing a slot whose text says both)
    if "proprietary" in text or "no open weights" in text or "no open-weight" in text:
        return "proprietary"
    if "open weights" in text or "open-weight" in text:
        return "open-weights"
    return "unknown"


def effective_class(declared: DataClass, detection: Detection) -> DataClass:
    """Personal data raises the class to at least ``confidential``; a failed detection, or media the detector
    cannot read, to ``restricted`` (content unknown: the strictest branch)."""
    unknown = detection.failed or bool(detection.unscanned)
    floor: DataClass = "restricted" if unknown else "confidential" if detection.pii_types else "public"
    return max(declared, floor, key=DATA_CLASS_ORDER.index)


class PolicySet:
    """The versioned Cedar policy files, validated against the schema at load."""

    def __init__(self, rules_dir: Path = RULES_DIR) -> None:
        try:
            manifest = json.loads((rules_dir / "manifest.json").read_text(encoding="utf-8"))
            self.version: str = manifest["version"]
            self.schema: dict[str, Any] = json.loads((rules_dir / manifest["schema"]).read_text(encoding="utf-8"))
            self.text = "\n".join((rules_dir / f).read_text(encoding="utf-8") for f in manifest["files"])
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load Cedar policies from {rules_dir}: {exc}") from exc
        result = cedarpy.validate_policies(self.text, self.schema)
        if not result.validation_passed:
            raise ConfigError(f"Cedar policies do not validate against the schema: {result.errors}")
        static = json.loads(cedarpy.policies_to_json_str(self.text))["staticPolicies"]
        self.ids: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        for pid, body in static.items():
            ann = body.get("annotations", {})
            if "id" not in ann or "reason" not in ann:
                raise ConfigError(f"every Cedar policy needs @id and @reason annotations ({pid} lacks one)")
            self.ids[pid] = ann["id"]
            self.reasons[ann["id"]] = ann["reason"]
        if len(set(self.ids.values())) != len(self.ids):
            raise ConfigError("duplicate @id in Cedar policies")
        # parsed once, reused by every evaluation
        self.parsed = cedarpy.PolicySet.from_str(self.text)
        self.parsed_schema = cedarpy.Schema.from_json_str(json.dumps(self.schema))


class CedarPolicy:
    """The sovereignty ``Policy`` (``Settings.policy == "cedar"``)."""

    def __init__(self, catalog: Catalog, tenants: Tenants, policies: PolicySet | None = None, *,
                 timeout_ms: float = 1000.0, timer: Callable[[], float] = time.perf_counter,
                 authorize: Callable[..., list[cedarpy.AuthzResult]] = cedarpy.is_authorized_batch) -> None:
        self.catalog = catalog
        self.policies = policies or PolicySet()
        self.timeout_ms = timeout_ms
        self.timer = timer
        self._authorize = authorize
        self._known = {t.id for t in tenants.tenants}
        self._deployments = {
            Candidate(slot=slot.id, deployment=dep.id): self._deployment_entity(slot, dep.id)
            for slot in catalog.slots for dep in slot.deployments
        }
        base = [*self._deployments.values(), *(self._tenant_entity(t) for t in sorted(self._known))]
        try:
            self._entities = cedarpy.Entities.from_json_str(json.dumps(base), schema=self.policies.schema)
        except ValueError as exc:
            raise ConfigError(f"catalog or tenants do not fit the Cedar schema: {exc}") from exc

    def _tenant_entity(self, tenant: str) -> dict[str, Any]:
        return {"uid": {"type": "Tenant", "id": tenant}, "attrs": {"known": tenant in self._known}, "parents": []}

    @property
    def version(self) -> str:
        return self.policies.version

    def _deployment_entity(self, slot: Slot, dep_id: str) -> dict[str, Any]:
        dep = self.catalog.deployment(slot.id, dep_id)
        to_all = dep.available_to == "all"
        listed = [] if to_all else list(dep.available_to)
        return {
            "uid": {"type": "Deployment", "id": f"{slot.id}/{dep.id}"},
            "attrs": {
                "slot": slot.id, "deployment": dep.id, "region": dep.region, "on_premises": dep.on_premises,
                "compute": dep.compute, "licence_kind": licence_kind(slot), "languages": list(slot.languages),
                "available_to_all": to_all,
                "available_to": [{"__entity": {"type": "Tenant", "id": t}} for t in listed],
            },
            "parents": [],
        }

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        t0 = self.timer()
        eff = effective_class(request.data_class, detection)
        try:
            verdicts = self._evaluate(request, detection, eff, candidates)
            elapsed = (self.timer() - t0) * 1000.0
            if elapsed > self.timeout_ms:
                raise PolicyEngineError("policy evaluation exceeded its time budget")
        except PolicyEngineError as exc:
            log.warning("policy evaluation failed (%s); allowing nothing", exc.message)
            refused = [CandidateVerdict(candidate=c, allowed=False, rule=ENGINE_FAILED,
                                        policy_version=self.version) for c in candidates]
            return PolicyVerdict(verdicts=refused, effective_class=eff, failed=True,
                                 elapsed_ms=(self.timer() - t0) * 1000.0)
        return PolicyVerdict(verdicts=verdicts, effective_class=eff, elapsed_ms=(self.timer() - t0) * 1000.0)

    def _evaluate(self, request: NormalizedRequest, detection: Detection, eff: DataClass,
                  candidates: Sequence[Candidate]) -> list[CandidateVerdict]:
        if not candidates:
            return []
        unknown = [c for c in candidates if c not in self._deployments]
        if unknown:
            raise PolicyEngineError("candidate not in the catalog the policy was built from")
        context = {
            "declared_class": request.data_class,
            "effective_class": eff,
            "class_rank": DATA_CLASS_ORDER.index(eff),
            "has_personal_data": detection.has_personal_data,
            "detection_failed": detection.failed,
            "detected_types": sorted(detection.pii_types),
            "language": detection.request_language or "",
            "language_known": bool(detection.request_language),
            "languages": sorted(set(detection.request_languages) | (
                {detection.request_language} if detection.request_language else set())),
        }
        tenant_uid = json.dumps(request.tenant)  # quoted and escaped as a Cedar string literal
        batch = [{"principal": f"Tenant::{tenant_uid}", "action": ACTION,
                  "resource": f"Deployment::{json.dumps(c.key)}", "context": context} for c in candidates]
        try:
            entities = self._entities
            if request.tenant not in self._known:
                entities = entities.with_added_json_str(json.dumps([self._tenant_entity(request.tenant)]))
            results = self._authorize(batch, self.policies.parsed, entities, schema=self.policies.parsed_schema)
        except (ValueError, RuntimeError, TypeError, KeyError) as exc:
            raise PolicyEngineError(f"Cedar evaluation error ({type(exc).__name__})") from exc
        if len(results) != len(candidates):
            raise PolicyEngineError("Cedar returned a different number of decisions than requests")
        out: list[CandidateVerdict] = []
        for c, res in zip(candidates, results, strict=True):
            if res.diagnostics.errors:  # an erroring forbid would be skipped by Cedar: never accept that
                raise PolicyEngineError("a Cedar policy failed to evaluate")
            rules = sorted(self.policies.ids.get(r, r) for r in res.diagnostics.reasons)
            out.append(CandidateVerdict(candidate=c, allowed=bool(res.allowed),
                                        rule=",".join(rules) if rules else DEFAULT_DENY,
                                        policy_version=self.version))
        return out
