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

import hashlib
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
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
# (tenant, context as sorted JSON, each candidate's (slot, deployment)): what a remembered verdict is keyed on
_MemoKey = tuple[str, str, tuple[tuple[str, str], ...]]


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
    """The versioned Cedar policy files, validated against the schema at load.

    ``tenant_rules`` (``Settings.policy_rules``): an operator's own Cedar files for their tenants, in place of the
    shipped tenant files (the manifest's ``tenant_files``: the workload's and the demo's example tenants); the
    shipped base rules and schema still apply, and the version becomes the shipped one plus a digest of those
    files, so every verdict names the rules it was decided by."""

    def __init__(self, rules_dir: Path = RULES_DIR, tenant_rules: Sequence[Path] | None = None) -> None:
        try:
            manifest = json.loads((rules_dir / "manifest.json").read_text(encoding="utf-8"))
            self.version: str = manifest["version"]
            self.schema: dict[str, Any] = json.loads((rules_dir / manifest["schema"]).read_text(encoding="utf-8"))
            shipped = [f for f in manifest["files"]
                       if tenant_rules is None or f not in manifest.get("tenant_files", [])]
            texts = [(rules_dir / f).read_text(encoding="utf-8") for f in shipped]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"cannot load Cedar policies from {rules_dir}: {exc}") from exc
        if tenant_rules is not None:
            own = []
            for path in tenant_rules:
                try:
                    own.append(Path(path).read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    raise ConfigError(f"policy_rules: cannot read {path}: {type(exc).__name__}") from exc
            texts += own
            # the set of files, not their order: the same rules listed in another order are the same version
            digests = sorted(hashlib.sha256(text.encode("utf-8")).hexdigest() for text in own)
            self.version += "+rules-" + hashlib.sha256("".join(digests).encode("ascii")).hexdigest()[:12]
        self.text = "\n".join(texts)
        result = cedarpy.validate_policies(self.text, self.schema)
        if not result.validation_passed:
            raise ConfigError(f"Cedar policies do not validate against the schema: {result.errors}")
        static = json.loads(cedarpy.policies_to_json_str(self.text))["staticPolicies"]
        self.ids: dict[str, str] = {}
        self.reasons: dict[str, str] = {}
        self.permits: set[str] | None = set()  # the tenants some permit names (None: a permit for any tenant)
        for pid, body in static.items():
            ann = body.get("annotations", {})
            if "id" not in ann or "reason" not in ann:
                raise ConfigError(f"every Cedar policy needs @id and @reason annotations ({pid} lacks one)")
            self.ids[pid] = ann["id"]
            self.reasons[ann["id"]] = ann["reason"]
            if body.get("effect") == "permit" and self.permits is not None:
                principal = body.get("principal", {})
                entity = principal.get("entity", {}) if principal.get("op") == "==" else {}
                if entity.get("type") == "Tenant" and isinstance(entity.get("id"), str):
                    self.permits.add(entity["id"])
                else:  # any tenant, or a group this reading does not resolve: counted as covering all
                    self.permits = None
        if len(set(self.ids.values())) != len(self.ids):
            raise ConfigError("duplicate @id in Cedar policies")
        # parsed once, reused by every evaluation
        self.parsed = cedarpy.PolicySet.from_str(self.text)
        self.parsed_schema = cedarpy.Schema.from_json_str(json.dumps(self.schema))


_QUOTE = re.compile(r'^([\w-]+): "(.+)"$', re.DOTALL)


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


def rule_problems(policies: PolicySet, tenants: Tenants, tenant_ids: Iterable[str]) -> list[str]:
    """Where the rules and the tenants' written policies (tenants file) disagree, for ``tenant_ids``: a tenant no
    permit rule names (every request of it is refused: Cedar's default deny), and a rule whose ``@reason`` quotes
    a sentence its tenant's written policy no longer contains (the policy was rewritten and the rules were not).
    Found in review (2026-11-28): a new tenant was refused everything, and a rewritten policy kept its old rules
    and reasons, both without a word at start-up."""
    written = {t.id: _words(t.policy) for t in tenants.tenants}
    wanted = sorted(set(tenant_ids))
    problems = [f"tenant '{t}' has no Cedar permit rule: every request of it would be refused (policy_rules)"
                for t in wanted if policies.permits is not None and t not in policies.permits]
    for rule, reason in sorted(policies.reasons.items()):
        m = _QUOTE.match(reason)
        if m is None or m.group(1) not in wanted:
            continue  # base rules cite the catalog or the default deny
        tenant, sentence = m.groups()
        if _words(sentence) not in written.get(tenant, ""):
            problems.append(f"rule '{rule}' quotes a sentence that tenant '{tenant}''s written policy (tenants "
                            "file) does not contain: the policy changed without its rules (policy_rules)")
    return problems


class CedarPolicy:
    """The sovereignty ``Policy`` (``Settings.policy == "cedar"``).

    Cedar's answer is a pure function of what it is given: the policies, schema and entities (fixed for this
    object's life), the tenant, the candidates and the request context built from the request and its detection.
    So the last ``memo_size`` answers are kept, keyed on exactly those inputs that vary, and a request that asks
    the same question again gets the same verdicts without a call into the engine: Cedar took ~0.4 ms per request
    for the catalog's 7 deployments, on the event loop (2026-11-28), where most requests of a tenant share their
    context. An engine failure, an erroring policy or an evaluation over its time budget is never kept."""

    def __init__(self, catalog: Catalog, tenants: Tenants, policies: PolicySet | None = None, *,
                 timeout_ms: float = 1000.0, timer: Callable[[], float] = time.perf_counter,
                 authorize: Callable[..., list[cedarpy.AuthzResult]] = cedarpy.is_authorized_batch,
                 memo_size: int = 4096) -> None:
        self.memo_size = memo_size
        self._memo: OrderedDict[_MemoKey, list[tuple[bool, str]]] = OrderedDict()
        self._memo_lock = threading.Lock()
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
            # every candidate is checked on a hit too, and keyed by (slot, deployment): ``key`` is not one-to-one
            # ("a/b"/"c" and "a"/"b/c"), so a candidate outside the catalog was allowed as a remembered one
            if any(c not in self._deployments for c in candidates):
                raise PolicyEngineError("candidate not in the catalog the policy was built from")
            context = self._context(request, detection, eff)
            key = (request.tenant, json.dumps(context, sort_keys=True),
                   tuple((c.slot, c.deployment) for c in candidates))
            with self._memo_lock:
                known = self._memo.get(key)
                if known is not None:
                    self._memo.move_to_end(key)
            if known is not None:
                verdicts = [CandidateVerdict(candidate=c, allowed=allowed, rule=rule, policy_version=self.version)
                            for c, (allowed, rule) in zip(candidates, known, strict=True)]
                return PolicyVerdict(verdicts=verdicts, effective_class=eff, elapsed_ms=(self.timer() - t0) * 1000.0)
            verdicts = self._evaluate(request.tenant, context, candidates)
            elapsed = (self.timer() - t0) * 1000.0
            if elapsed > self.timeout_ms:
                raise PolicyEngineError("policy evaluation exceeded its time budget")
            self._remember(key, verdicts)
        except PolicyEngineError as exc:
            log.warning("policy evaluation failed (%s); allowing nothing", exc.message)
            refused = [CandidateVerdict(candidate=c, allowed=False, rule=ENGINE_FAILED,
                                        policy_version=self.version) for c in candidates]
            return PolicyVerdict(verdicts=refused, effective_class=eff, failed=True,
                                 elapsed_ms=(self.timer() - t0) * 1000.0)
        return PolicyVerdict(verdicts=verdicts, effective_class=eff, elapsed_ms=(self.timer() - t0) * 1000.0)

    def _remember(self, key: _MemoKey, verdicts: Sequence[CandidateVerdict]) -> None:
        if self.memo_size <= 0:
            return
        with self._memo_lock:
            self._memo[key] = [(v.allowed, v.rule) for v in verdicts]
            self._memo.move_to_end(key)
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)

    @staticmethod
    def _context(request: NormalizedRequest, detection: Detection, eff: DataClass) -> dict[str, Any]:
        """The Cedar request context: everything of the request and its detection that a rule can read."""
        return {
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

    def _evaluate(self, tenant: str, context: dict[str, Any],
                  candidates: Sequence[Candidate]) -> list[CandidateVerdict]:
        """Cedar's verdicts for ``candidates`` (each already checked to be in the catalog)."""
        if not candidates:
            return []
        tenant_uid = json.dumps(tenant)  # quoted and escaped as a Cedar string literal
        batch = [{"principal": f"Tenant::{tenant_uid}", "action": ACTION,
                  "resource": f"Deployment::{json.dumps(c.key)}", "context": context} for c in candidates]
        try:
            entities = self._entities
            if tenant not in self._known:
                entities = entities.with_added_json_str(json.dumps([self._tenant_entity(tenant)]))
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
