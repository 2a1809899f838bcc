"""Model catalog (``models.json``-shaped) and tenants (``tenants.json``-shaped), validated by pydantic."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from sovrouter.errors import ConfigError, InvalidRequestError, NotFoundError

if TYPE_CHECKING:
    from sovrouter.contracts import Candidate  # contracts imports this module

Compute = Literal["cpu", "gpu", "frontier-accelerator", "accelerator", "edge", "on-device"]
Modality = Literal["text", "image", "video", "audio"]


class Latency(BaseModel):
    model_config = ConfigDict(extra="allow")
    ttft_ms: float = Field(ge=0, allow_inf_nan=False)
    tokens_per_s: float = Field(gt=0, allow_inf_nan=False)

    def total_ms(self, output_tokens: int) -> float:
        return self.ttft_ms + output_tokens / self.tokens_per_s * 1000.0


class Speculative(BaseModel):
    """A deployment's speculative decoding setup (optional): a draft/target pair (e.g. vLLM with a draft model)
    or prompt lookup. ``expected_speedup`` is the decode speed-up on copy-heavy output (copy fraction 1);
    ``base_speedup`` the one on output that copies nothing (1.0 = no gain, below 1 = a slowdown), both at low
    load. ``max_batch`` (optional): the largest number of concurrent requests at which speculation still pays on
    this deployment; with more in flight a step turns compute-bound and rejected drafts cost time, so requests
    beyond it decode plainly (speed-up 1.0), as vLLM's engine does with a draft length of 0 above a concurrency
    (``num_speculative_tokens_per_batch_size``; earlier ``speculative_disable_by_batch_size``).
    ``bench/speculative_gpu_batch.py`` measures it per engine (docs/batching-and-speculation.md). It is compared
    with the calls in flight on the whole deployment, so for one served by N replicas declare N times the per-engine
    figure."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["draft-model", "prompt-lookup"]
    draft: str | None = None
    # finite: an infinite speed-up made the estimate inf x 0 = NaN at copy fraction 0, and NaN sorts anywhere
    expected_speedup: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    base_speedup: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    max_batch: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _draft_matches_kind(self) -> Speculative:
        """A draft/target pair names its draft model; prompt lookup drafts from the prompt and names none. Until
        2026-11-28 ``draft`` was never checked: ``{"kind": "draft-model"}`` with no draft, or a draft named under
        prompt lookup, loaded as a declared pair (the name is part of the cache scope, so it says what runs)."""
        if self.kind == "draft-model" and not (self.draft and self.draft.strip()):
            raise ValueError("speculative kind draft-model needs the draft model's name (draft)")
        if self.kind == "prompt-lookup" and self.draft is not None:
            raise ValueError("speculative kind prompt-lookup drafts from the prompt: it names no draft model")
        return self


class Deployment(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    region: str
    compute: str
    on_premises: bool = False
    price_multiplier: float = Field(default=1.0, ge=0)
    latency: Latency
    available_to: Literal["all"] | list[str] = "all"
    modalities: list[Modality] = Field(default_factory=lambda: list[Modality](["text"]))
    # Upstream wiring for the HTTP adapter (absent for replay-only catalogs).
    base_url: str | None = None
    upstream_model: str | None = None
    speculative: Speculative | None = None
    # the upstream serves OpenAI tool calling (e.g. llama.cpp's server with --jinja, vLLM with a tool parser):
    # only such deployments are candidates for a request that offers tools (default: not declared, not served)
    tools: bool = False

    @model_validator(mode="before")
    @classmethod
    def _audience_not_misspelt(cls, data: Any) -> Any:
        """``available_to`` is the one deployment fact whose default opens it up (to every tenant): a misspelt key
        (``availabe_to``) was kept as an unused extra and the deployment became ``"all"``, so restricted data
        could reach another tenant's premises (found in review, 2026-11-28). Without ``available_to``, a key
        that reads like it is refused; other unknown keys stay allowed (catalogs carry notes of their own)."""
        if not isinstance(data, dict) or "available_to" in data:
            return data
        known = set(cls.model_fields)
        for key in data:
            if isinstance(key, str) and key not in known and difflib.get_close_matches(
                    key.lower().replace("-", "_"), ["available_to"], n=1, cutoff=0.8):
                raise ValueError(f"unknown field {key[:40]!r}: did you mean 'available_to'? (a deployment "
                                 "without it is available to every tenant)")
        return data

    def available_for(self, tenant: str) -> bool:
        return self.available_to == "all" or tenant in self.available_to

    @property
    def on_frontier_accelerator(self) -> bool:
        return self.compute == "frontier-accelerator"


class Price(BaseModel):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class Slot(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    kind: str = ""
    licence: str = ""
    languages: list[str] = Field(default_factory=list)
    price_usd_per_mtok: Price
    deployments: list[Deployment]

    @model_validator(mode="before")
    @classmethod
    def _unspecified_latency(cls, data: Any) -> Any:
        """A deployment whose latency is not given (left out or null) copies its first sibling's, as the workload
        README says of two deployments "not specified"."""
        if not isinstance(data, dict) or not isinstance(data.get("deployments"), list):
            return data
        deps = data["deployments"]
        known = next((d["latency"] for d in deps if isinstance(d, dict) and d.get("latency") is not None), None)
        if known is None:
            return data
        fixed = [{**d, "latency": known} if isinstance(d, dict) and d.get("latency") is None else d for d in deps]
        return {**data, "deployments": fixed}


class Catalog(BaseModel):
    """The slots and their deployments. ``(slot id, deployment id)`` is unique."""

    model_config = ConfigDict(extra="allow")
    slots: list[Slot]

    def model_post_init(self, __context: object) -> None:
        seen: set[tuple[str, str]] = set()
        for slot in self.slots:
            for dep in slot.deployments:
                key = (slot.id, dep.id)
                if key in seen:
                    raise ConfigError(f"duplicate deployment {slot.id}/{dep.id} in catalog")
                seen.add(key)

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8-sig")))  # a BOM is fine
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load model catalog {path}: {exc}") from exc

    def slot(self, slot_id: str) -> Slot:
        for slot in self.slots:
            if slot.id == slot_id:
                return slot
        raise KeyError(slot_id)

    def deployment(self, slot_id: str, deployment_id: str) -> Deployment:
        for dep in self.slot(slot_id).deployments:
            if dep.id == deployment_id:
                return dep
        raise KeyError(f"{slot_id}/{deployment_id}")

    def pairs(self) -> Iterator[tuple[Slot, Deployment]]:
        for slot in self.slots:
            for dep in slot.deployments:
                yield slot, dep

    def policy_fingerprint(self) -> str:
        """A digest of what the catalog says about each deployment, prices and latencies aside: region, premises,
        compute, tenants, modalities, upstream, the slot's licence and languages... Caches key their entries
        with it, so an answer stored while a deployment was declared one way (a region, an audience) is never
        served after the catalog declares it another: the policy check at a hit reads only the deployment's
        name, under the current catalog. ``tools`` is left out too: a capability, which the allowed set a hit is
        checked against already reflects (and a catalog that does not use it keeps its earlier digest)."""
        facts = []
        for slot in self.slots:
            deployments = [d.model_dump(mode="json", exclude={"latency": True, "price_multiplier": True, "tools": True,
                                                              "speculative": {"expected_speedup", "base_speedup",
                                                                              "max_batch"}})
                           for d in slot.deployments]
            facts.append({**slot.model_dump(mode="json", exclude={"price_usd_per_mtok", "deployments"}),
                          "deployments": deployments})
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:16]

    def check_requested_model(self, model: object, tenant: str) -> list[Candidate]:
        """A request's ``model``: ``auto`` (or none), a slot id or ``slot/deployment`` with a deployment ``tenant``
        may use; else a 404 naming ``model`` (live chat and batch lines alike). Returns the deployments it names
        that ``tenant`` may use (none for ``auto``)."""
        if model is None or model == "auto":
            return []
        if not isinstance(model, str):
            raise InvalidRequestError("'model' must be a string", param="model")
        from sovrouter.contracts import Candidate

        slot_id, slash, dep_id = model.partition("/")
        named = [Candidate(slot=s.id, deployment=d.id) for s, d in self.pairs()
                 if s.id == slot_id and (not slash or d.id == dep_id) and d.available_for(tenant)]
        if not named:
            raise NotFoundError("unknown model: use 'auto' or an id from GET /v1/models", param="model")
        return named

    def cost_usd(self, slot_id: str, deployment_id: str, input_tokens: int, output_tokens: int) -> float:
        slot = self.slot(slot_id)
        dep = self.deployment(slot_id, deployment_id)
        price = slot.price_usd_per_mtok
        return (input_tokens * price.input + output_tokens * price.output) / 1e6 * dep.price_multiplier


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


class Tenant(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    name: str = ""
    jurisdiction: str = ""
    value: Annotated[Literal["standard", "high"], BeforeValidator(_lower)] = "standard"
    share: float | None = None
    policy: str = ""
    latency_budget_ms: float | None = Field(
        default=None, gt=0, description="end-to-end latency the tenant wants: the cheapest deployment of a chosen "
                                        "model expected to meet it is preferred (routing/deployments.py)")


class Tenants(BaseModel):
    model_config = ConfigDict(extra="allow")
    data_classes: list[str] = Field(default_factory=lambda: ["public", "internal", "confidential", "restricted"])
    tenants: list[Tenant]

    @classmethod
    def load(cls, path: str | Path) -> Tenants:
        try:
            return cls.model_validate(json.loads(Path(path).read_text(encoding="utf-8-sig")))  # a BOM is fine
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load tenants file {path}: {exc}") from exc

    def get(self, tenant_id: str) -> Tenant:
        for tenant in self.tenants:
            if tenant.id == tenant_id:
                return tenant
        raise KeyError(tenant_id)


def estimate_tokens(text: str) -> int:
    """The workload's token estimate: ``ceil(characters / 4)`` (code points)."""
    return math.ceil(len(text) / 4)
