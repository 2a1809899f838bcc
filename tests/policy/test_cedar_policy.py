"""The Cedar sovereignty policy: the five workload tenants as the README reads them, the example tenant (rights
and cultural fit), traceability of every rule, versioning and fail-closed evaluation."""

from __future__ import annotations

import json
import re
from typing import Any

import cedarpy
import pytest

from sovrouter.catalog import Catalog, Tenants
from sovrouter.contracts import Candidate, DataClass, Detection
from sovrouter.errors import ConfigError
from sovrouter.intake import normalize_chat
from sovrouter.policy.cedar import DEFAULT_DENY, ENGINE_FAILED, CedarPolicy, PolicySet, effective_class


def _req(tenant: str, data_class: DataClass = "public") -> Any:
    r = normalize_chat({"messages": [{"role": "user", "content": "hi"}]}, tenant=tenant, request_id="r")
    return r.model_copy(update={"data_class": data_class})


def _servable(catalog: Catalog, tenant: str) -> list[Candidate]:
    return [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs() if d.available_for(tenant)]


def _allowed(policy: CedarPolicy, catalog: Catalog, tenant: str, cls: DataClass, det: Detection) -> set[str]:
    v = policy.evaluate(_req(tenant, cls), det, _servable(catalog, tenant))
    assert not v.failed
    return {c.key for c in v.allowed}


ALL = {"local-small/edge", "sovereign-large/eu-sov", "sovereign-large/us-east", "hosted-mini/us",
       "hosted-mini/eu-zone", "frontier/us"}
EU_OR_PREM = {"local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}
PII = Detection(pii_types=["EMAIL"], language="en", request_language="en")


@pytest.mark.parametrize(("tenant", "cls", "det", "expected"), [
    ("acme-us", "restricted", PII, ALL),
    ("research-open", "confidential", PII, ALL),
    ("eurobank", "public", Detection(), ALL),
    ("eurobank", "internal", Detection(), ALL),
    ("eurobank", "confidential", Detection(), EU_OR_PREM),
    ("eurobank", "restricted", Detection(), EU_OR_PREM),
    ("eurobank", "public", PII, EU_OR_PREM),
    ("ministry-airgap", "restricted", Detection(), {"local-small/edge", "sovereign-large/gov-onprem"}),
    ("ministry-airgap", "public", Detection(), {"local-small/edge", "sovereign-large/gov-onprem"}),
    ("clinic-ca", "restricted", Detection(), ALL),
    ("clinic-ca", "public", PII, {"local-small/edge"}),
    ("clinic-ca", "public", Detection(failed=True), {"local-small/edge"}),
    ("eurobank", "public", Detection(failed=True), EU_OR_PREM),
])
def test_workload_tenants_as_the_readme_reads_them(catalog: Catalog, tenants: Tenants, tenant: str,
                                                   cls: DataClass, det: Detection, expected: set[str]) -> None:
    assert _allowed(CedarPolicy(catalog, tenants), catalog, tenant, cls, det) == expected


def test_example_tenant_rights_and_language(catalog: Catalog, tenants: Tenants) -> None:
    policy = CedarPolicy(catalog, tenants)
    open_weights = {"local-small/edge", "sovereign-large/eu-sov", "sovereign-large/us-east"}
    # rights: only open-weight slots, whatever the region (no personal data)
    assert _allowed(policy, catalog, "heritage-archive", "public", Detection(request_language="en")) == open_weights
    # cultural fit: Dutch is supported only by the proprietary slots here, so nothing is left: a refusal
    v = policy.evaluate(_req("heritage-archive"), Detection(request_language="nl"),
                        _servable(catalog, "heritage-archive"))
    assert v.allowed == []
    rules = {r for x in v.verdicts for r in x.rule.split(",")}
    assert {"heritage-archive.language-support", "heritage-archive.open-weights-only"} <= rules
    # personal data: open weights in the EU or on premises
    phone_de = Detection(pii_types=["PHONE"], request_language="de")
    assert _allowed(policy, catalog, "heritage-archive", "public", phone_de) == {"local-small/edge",
                                                                                 "sovereign-large/eu-sov"}


def test_language_rule_with_a_language_limited_catalog(catalog: Catalog, tenants: Tenants) -> None:
    raw = catalog.model_dump(mode="json")
    for slot in raw["slots"]:
        if slot["id"] == "local-small":
            slot["languages"] = ["en"]
    limited = Catalog.model_validate(raw)
    policy = CedarPolicy(limited, tenants)
    got = _allowed(policy, limited, "heritage-archive", "public", Detection(request_language="fr"))
    assert got == {"sovereign-large/eu-sov", "sovereign-large/us-east"}
    # language unknown: the language rule cannot apply (documented), the licence rule still does
    assert "local-small/edge" in _allowed(policy, limited, "heritage-archive", "public", Detection())


def test_unknown_tenant_gets_nothing(catalog: Catalog, tenants: Tenants) -> None:
    v = CedarPolicy(catalog, tenants).evaluate(_req("stranger"), Detection(), _servable(catalog, "stranger"))
    assert v.allowed == [] and {x.rule for x in v.verdicts} == {"base.unknown-tenant"}


def test_verdicts_carry_cedar_ids_and_version(catalog: Catalog, tenants: Tenants) -> None:
    policy = CedarPolicy(catalog, tenants)
    v = policy.evaluate(_req("eurobank", "restricted"), Detection(), _servable(catalog, "eurobank"))
    ids = set(policy.policies.ids.values())
    for x in v.verdicts:
        assert x.policy_version == policy.version
        assert all(r in ids for r in x.rule.split(","))
        if not x.allowed:
            assert x.rule == "eurobank.sensitive-in-eu-or-on-premises"


def test_every_rule_quotes_its_tenant_sentence(tenants: Tenants) -> None:
    ps = PolicySet()
    assert ps.version and len(ps.reasons) >= 12
    by_id = {t.id: t.policy for t in tenants.tenants}
    for rule, reason in ps.reasons.items():
        m = re.match(r'^([\w-]+): "(.+)"$', reason)
        if m is None:
            continue  # base rules cite the catalog / default deny
        tenant, sentence = m.groups()
        assert sentence in by_id[tenant], f"{rule} quotes a sentence not in tenants.json"
    tenants_with_rules = {r.split(".")[0] for r in ps.reasons if not r.startswith(("base.", "catalog."))}
    assert tenants_with_rules == set(by_id)


def test_effective_class() -> None:
    assert effective_class("public", Detection()) == "public"
    assert effective_class("public", Detection(pii_types=["PERSON"])) == "confidential"
    assert effective_class("restricted", Detection(pii_types=["PERSON"])) == "restricted"
    assert effective_class("internal", Detection(failed=True)) == "restricted"


def test_engine_error_allows_nothing(catalog: Catalog, tenants: Tenants) -> None:
    def broken(*args: Any, **kwargs: Any) -> list[cedarpy.AuthzResult]:
        raise ValueError("engine down")

    policy = CedarPolicy(catalog, tenants, authorize=broken)
    v = policy.evaluate(_req("acme-us"), Detection(), _servable(catalog, "acme-us"))
    assert v.failed and v.allowed == [] and {x.rule for x in v.verdicts} == {ENGINE_FAILED}


def test_evaluation_errors_inside_cedar_fail_closed(catalog: Catalog, tenants: Tenants) -> None:
    def erroring(batch: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[cedarpy.AuthzResult]:
        real = cedarpy.is_authorized_batch(batch, *args, **kwargs)
        # simulate a forbid that errored (Cedar skips it and may then allow): must not be trusted
        return [cedarpy.AuthzResult({"decision": "Allow", "diagnostics": {"reason": [], "errors": ["boom"]}})
                for _ in real]

    v = CedarPolicy(catalog, tenants, authorize=erroring).evaluate(
        _req("clinic-ca"), PII, _servable(catalog, "clinic-ca"))
    assert v.failed and v.allowed == []


def test_over_time_budget_fails_closed(catalog: Catalog, tenants: Tenants) -> None:
    ticks = iter([0.0, 5.0, 5.0, 5.0])
    policy = CedarPolicy(catalog, tenants, timeout_ms=1000.0, timer=lambda: next(ticks))
    v = policy.evaluate(_req("acme-us"), Detection(), _servable(catalog, "acme-us"))
    assert v.failed and v.allowed == []


def test_no_permit_means_default_deny(catalog: Catalog, tenants: Tenants, tmp_path: Any) -> None:

    from sovrouter.policy import cedar as cedar_mod

    src = cedar_mod.RULES_DIR
    for name in ("schema.cedarschema.json", "base.cedar"):
        (tmp_path / name).write_text((src / name).read_text())
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"version": "t", "schema": "schema.cedarschema.json", "files": ["base.cedar"]}))
    policy = CedarPolicy(catalog, tenants, PolicySet(tmp_path))
    v = policy.evaluate(_req("acme-us"), Detection(), _servable(catalog, "acme-us"))
    assert v.allowed == [] and {x.rule for x in v.verdicts} == {DEFAULT_DENY}


def test_a_licence_text_that_says_both_is_not_open_weights() -> None:
    from sovrouter.catalog import Slot
    from sovrouter.policy.cedar import licence_kind

    def kind(text: str) -> str:
        return licence_kind(Slot.model_validate({"id": "s", "licence": text, "languages": ["en"],
                                                 "price_usd_per_mtok": {"input": 1, "output": 1},
                                                 "deployments": []}))

    assert kind("Proprietary; no open weights.") == "proprietary"  # was "open-weights"
    assert kind("Open weights. Apache-2.0.") == "open-weights"
    assert kind("Proprietary, API only.") == "proprietary"
    assert kind("Custom terms.") == "unknown"


def test_a_detector_broken_by_its_install_fails_closed() -> None:
    from sovrouter.detect.detector import FailClosedDetector

    class Broken:
        def detect(self, request: Any) -> Detection:
            raise AttributeError("'NoneType' object has no attribute 'pipe'")

    assert FailClosedDetector(Broken()).detect(_req("acme-us")).failed


NEWCO_RULES = '''
@id("newco.base")
@reason("newco: \\"Requests may be processed in the EU.\\"")
permit (principal == Tenant::"newco", action == Action::"route", resource);

@id("newco.eu-only")
@reason("newco: \\"All requests must be processed only in the EU.\\"")
forbid (principal == Tenant::"newco", action == Action::"route", resource)
unless { resource.region == "EU" };
'''


def _with_newco(tenants: Tenants, policy_text: str) -> Tenants:
    data = tenants.model_dump()
    data["tenants"].append({"id": "newco", "policy": policy_text})
    return Tenants.model_validate(data)


def test_operator_rules_replace_the_shipped_tenant_rules(tmp_path: Any, catalog: Catalog, tenants: Tenants) -> None:
    """Until 2026-11-28 the rules came only from the package: a tenant added to the tenants file was refused
    everything, and a rewritten written policy kept its old rules."""
    rules = tmp_path / "newco.cedar"
    rules.write_text(NEWCO_RULES, encoding="utf-8")
    ps = PolicySet(tenant_rules=[rules])
    assert ps.version.startswith(PolicySet().version + "+rules-") and ps.version != PolicySet().version
    assert ps.permits == {"newco"} and "catalog.available_to" in ps.reasons  # the base rules still apply
    other = tmp_path / "other.cedar"
    other.write_text('@id("other.any")\n@reason("other: \\"Anything.\\"")\n'
                     'permit (principal == Tenant::"other", action == Action::"route", resource);\n', encoding="utf-8")
    # the version names the set of files, not their order
    assert PolicySet(tenant_rules=[rules, other]).version == PolicySet(tenant_rules=[other, rules]).version
    assert PolicySet(tenant_rules=[rules, other]).version != ps.version
    with_newco = _with_newco(tenants, "Requests may be processed in the EU. All requests must be processed only "
                                      "in the EU.")
    policy = CedarPolicy(catalog, with_newco, ps)
    assert _allowed(policy, catalog, "newco", "public", Detection()) == {"sovereign-large/eu-sov",
                                                                          "hosted-mini/eu-zone"}
    assert _allowed(policy, catalog, "acme-us", "public", Detection()) == set()  # its shipped rules are replaced
    rules.write_text(NEWCO_RULES + "\n@id(\"x\")\n", encoding="utf-8")
    with pytest.raises(ConfigError):
        PolicySet(tenant_rules=[rules])  # does not parse
    with pytest.raises(ConfigError):
        PolicySet(tenant_rules=[tmp_path / "missing.cedar"])


def test_rule_problems_name_unpermitted_tenants_and_stale_quotes(tmp_path: Any, tenants: Tenants) -> None:
    from sovrouter.policy.cedar import rule_problems

    shipped = PolicySet()
    assert rule_problems(shipped, tenants, [t.id for t in tenants.tenants]) == []
    [missing] = rule_problems(shipped, _with_newco(tenants, "Anything goes."), ["newco", "acme-us"])
    assert "'newco' has no Cedar permit rule" in missing
    rewritten = Tenants.model_validate({**tenants.model_dump(), "tenants": [
        {**t.model_dump(), "policy": "All requests must be processed only in the EU."} if t.id == "acme-us"
        else t.model_dump() for t in tenants.tenants]})
    [stale] = rule_problems(shipped, rewritten, ["acme-us", "eurobank"])
    assert "'acme-us.any-deployment'" in stale and "does not contain" in stale
    rules = tmp_path / "newco.cedar"
    rules.write_text(NEWCO_RULES, encoding="utf-8")
    # the quote is read up to whitespace and case
    relaxed = _with_newco(tenants, "requests may be processed  in the\nEU. ALL requests must be processed only in "
                                   "the EU.")
    assert rule_problems(PolicySet(tenant_rules=[rules]), relaxed, ["newco"]) == []


def test_cedar_reads_the_effective_class(catalog: Catalog, tenants: Tenants) -> None:
    """The context holds the effective class and its rank: personal data raises it to confidential, a failed
    detection or media the detector cannot read to restricted. No rule yet tells confidential from restricted,
    so a class one rank too low (media), or the declared class as the rank, went unnoticed by every verdict."""
    from sovrouter.contracts import DATA_CLASS_ORDER

    seen: list[dict[str, Any]] = []

    def spy(batch: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[cedarpy.AuthzResult]:
        seen.extend(item["context"] for item in batch)
        return cedarpy.is_authorized_batch(batch, *args, **kwargs)

    policy = CedarPolicy(catalog, tenants, authorize=spy)
    for det, cls in [(Detection(), "public"), (PII, "confidential"), (Detection(failed=True), "restricted"),
                     (Detection(unscanned=["image"]), "restricted")]:
        seen.clear()
        v = policy.evaluate(_req("eurobank"), det, _servable(catalog, "eurobank"))
        assert v.effective_class == cls and effective_class("public", det) == cls
        assert {(c["effective_class"], c["class_rank"]) for c in seen} == {(cls, DATA_CLASS_ORDER.index(cls))}


def _licence(text: str) -> str:
    from sovrouter.catalog import Slot
    from sovrouter.policy.cedar import licence_kind

    return licence_kind(Slot.model_validate({"id": "s", "licence": text, "languages": ["en"],
                                             "price_usd_per_mtok": {"input": 1, "output": 1}, "deployments": []}))


def test_a_licence_that_denies_open_weights_is_proprietary_without_saying_so() -> None:
    """"no open weights" holds "open weights": a licence text that denies them without the word "proprietary" must
    not read as open weights (heritage-archive may use open-weight models only)."""
    assert _licence("API only; no open weights.") == "proprietary"
    assert _licence("Hosted service, no open-weight release.") == "proprietary"


def test_a_slot_of_unknown_licence_is_not_open_weights_to_heritage_archive(catalog: Catalog,
                                                                         tenants: Tenants) -> None:
    """heritage-archive: "Only open-weight models may be used": a licence the catalog does not state as open
    weights (``unknown``) is refused, not given the benefit of the doubt."""
    raw = catalog.model_dump(mode="json")
    for slot in raw["slots"]:
        if slot["id"] == "sovereign-large":
            slot["licence"] = "Custom terms; ask the vendor."
    custom = Catalog.model_validate(raw)
    assert _licence(custom.slot("sovereign-large").licence) == "unknown"
    got = _allowed(CedarPolicy(custom, tenants), custom, "heritage-archive", "public", Detection(request_language="en"))
    assert got == {"local-small/edge"}


def test_a_question_asked_again_is_answered_from_memory_with_the_same_verdicts(catalog: Catalog,
                                                                              tenants: Tenants) -> None:
    """Cedar is asked once per distinct (tenant, context, candidates): the same question again gets the verdicts
    the engine gave, and anything that changes the context (personal data, class, language, detection failing),
    the tenant or the candidates asks the engine again."""
    calls: list[int] = []

    def counting(batch: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[cedarpy.AuthzResult]:
        calls.append(len(batch))
        return cedarpy.is_authorized_batch(batch, *args, **kwargs)

    policy = CedarPolicy(catalog, tenants, authorize=counting)
    fresh = CedarPolicy(catalog, tenants)
    questions = [("eurobank", "public", Detection()), ("eurobank", "public", PII),
                 ("eurobank", "confidential", Detection()), ("clinic-ca", "public", PII),
                 ("eurobank", "public", Detection(failed=True)), ("acme-us", "public", Detection()),
                 ("eurobank", "public", Detection(language="de", request_language="de"))]
    for _ in range(3):
        for tenant, cls, det in questions:
            got = policy.evaluate(_req(tenant, cls), det, _servable(catalog, tenant))
            want = fresh.evaluate(_req(tenant, cls), det, _servable(catalog, tenant))
            assert [(v.candidate, v.allowed, v.rule, v.policy_version) for v in got.verdicts] == \
                [(v.candidate, v.allowed, v.rule, v.policy_version) for v in want.verdicts]
            assert got.effective_class == want.effective_class and not got.failed
    assert len(calls) == len(questions)  # once each
    fewer = _servable(catalog, "eurobank")[:2]
    policy.evaluate(_req("eurobank"), Detection(), fewer)
    assert len(calls) == len(questions) + 1 and calls[-1] == 2


def test_failures_are_never_remembered_and_the_memory_is_bounded(catalog: Catalog, tenants: Tenants) -> None:
    state = {"broken": True}

    def flaky(batch: list[dict[str, Any]], *args: Any, **kwargs: Any) -> list[cedarpy.AuthzResult]:
        if state["broken"]:
            raise RuntimeError("engine down")
        return cedarpy.is_authorized_batch(batch, *args, **kwargs)

    policy = CedarPolicy(catalog, tenants, authorize=flaky, memo_size=2)
    assert policy.evaluate(_req("acme-us"), Detection(), _servable(catalog, "acme-us")).failed
    state["broken"] = False
    assert policy.evaluate(_req("acme-us"), Detection(), _servable(catalog, "acme-us")).allowed  # asked again
    ticks = iter([0.0, 5.0, 5.0, 5.0, 5.0])  # over the time budget: refused, and not remembered either
    slow = CedarPolicy(catalog, tenants, timeout_ms=1000.0, timer=lambda: next(ticks))
    assert slow.evaluate(_req("acme-us"), Detection(), _servable(catalog, "acme-us")).failed
    assert not slow._memo
    for tenant in ("acme-us", "eurobank", "clinic-ca", "research-open"):
        policy.evaluate(_req(tenant), Detection(), _servable(catalog, tenant))
    assert len(policy._memo) == 2


def _catalog_with_slash(catalog: Catalog) -> Catalog:
    raw = catalog.model_dump(mode="json")
    for slot in raw["slots"]:
        if slot["id"] == "frontier":
            for dep in slot["deployments"]:
                dep["id"] = "us/east"   # Deployment::"frontier/us/east"
    return Catalog.model_validate(raw)


def test_a_candidate_outside_the_catalog_is_refused_even_after_a_remembered_question(catalog: Catalog,
                                                                                    tenants: Tenants) -> None:
    """``Candidate.key`` is not one-to-one ("a/b" + "c" and "a" + "b/c"): keyed on it, a remembered verdict let a
    candidate the policy never saw through, skipping the check the engine path makes (found in review)."""
    cat = _catalog_with_slash(catalog)
    known = Candidate(slot="frontier", deployment="us/east")
    stranger = Candidate(slot="frontier/us", deployment="east")  # same .key, not in the catalog
    assert known.key == stranger.key
    fresh = CedarPolicy(cat, tenants)
    assert fresh.evaluate(_req("acme-us"), Detection(), [stranger]).failed  # miss path: refused (engine-failed)
    policy = CedarPolicy(cat, tenants)
    assert policy.evaluate(_req("acme-us"), Detection(), [known]).allowed == [known]
    got = policy.evaluate(_req("acme-us"), Detection(), [stranger])
    assert got.failed and got.allowed == []  # hit path: must not allow a deployment the policy never saw
