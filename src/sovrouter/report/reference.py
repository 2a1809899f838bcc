"""The workload README's "Policy interpretation used for the baselines", and the reference route built on it.

Offline evaluation only: the facts here come from ground-truth labels (``labels.pii_types``), which routing never
sees. The rules, exactly as the README reads the tenants' policies:

- acme-us, research-open: any deployment;
- eurobank: if the declared class is confidential/restricted or the request contains personal data, only
  deployments with region ``EU`` or ``on_premises: true``;
- ministry-airgap: only ``on_premises: true`` deployments;
- clinic-ca: if the request contains personal data, only ``on_premises: true`` deployments;
- every tenant: only deployments whose ``available_to`` includes it (``gov-onprem`` is ministry-airgap's).

A tenant the README does not name gets the catalog's ``available_to`` only.

The reference ("always-frontier under policy") takes the first slot of ``frontier > hosted-mini >
sovereign-large > local-small`` that has a compliant deployment, on its cheapest compliant deployment (lowest
``price_multiplier``, ties by catalog order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sovrouter.catalog import Catalog, Deployment

FALLBACK_ORDER: tuple[str, ...] = ("frontier", "hosted-mini", "sovereign-large", "local-small")
RESTRICTED_CLASSES = frozenset({"confidential", "restricted"})


@dataclass(frozen=True)
class Facts:
    """What the README's policy reading depends on (personal data from the ground-truth labels)."""

    tenant: str
    data_class: str
    personal_data: bool


def _eu_or_premises(d: Deployment) -> bool:
    return d.region == "EU" or d.on_premises


def _premises(d: Deployment) -> bool:
    return d.on_premises


def _any(d: Deployment) -> bool:
    return True


def _rule(facts: Facts) -> Callable[[Deployment], bool]:
    if facts.tenant == "ministry-airgap":
        return _premises
    if facts.tenant == "eurobank" and (facts.data_class in RESTRICTED_CLASSES or facts.personal_data):
        return _eu_or_premises
    if facts.tenant == "clinic-ca" and facts.personal_data:
        return _premises
    return _any


def allowed(catalog: Catalog, slot: str, deployment: str, facts: Facts) -> bool:
    """Does the README's interpretation allow ``slot/deployment`` for this request? Unknown pairs: no."""
    try:
        dep = catalog.deployment(slot, deployment)
    except KeyError:
        return False
    return dep.available_for(facts.tenant) and _rule(facts)(dep)


def cheapest_deployment(catalog: Catalog, slot: str, facts: Facts | None) -> Deployment | None:
    """The slot's cheapest deployment the policy allows (``facts=None``: ignoring policy entirely)."""
    best: Deployment | None = None
    for dep in catalog.slot(slot).deployments:
        if facts is not None and not (dep.available_for(facts.tenant) and _rule(facts)(dep)):
            continue
        if best is None or dep.price_multiplier < best.price_multiplier:
            best = dep
    return best


def fallback_route(catalog: Catalog, start_slot: str, facts: Facts | None) -> tuple[str, Deployment]:
    """``start_slot`` if it has a compliant deployment, else the next slot down :data:`FALLBACK_ORDER`."""
    order = FALLBACK_ORDER[FALLBACK_ORDER.index(start_slot):] if start_slot in FALLBACK_ORDER else (start_slot,)
    for slot in order:
        dep = cheapest_deployment(catalog, slot, facts)
        if dep is not None:
            return slot, dep
    raise ValueError(f"no compliant deployment for {start_slot} or any slot below it")


def reference_route(catalog: Catalog, facts: Facts) -> tuple[str, Deployment]:
    """Always-frontier under policy."""
    return fallback_route(catalog, FALLBACK_ORDER[0], facts)


def request_cost(catalog: Catalog, slot: str, deployment: Deployment, input_tokens: int, output_tokens: int,
                 multiplier: bool = True) -> float:
    """The README's cost: ``(in*price_in + out*price_out) / 1e6 * multiplier``."""
    price = catalog.slot(slot).price_usd_per_mtok
    base = (input_tokens * price.input + output_tokens * price.output) / 1e6
    return base * deployment.price_multiplier if multiplier else base
