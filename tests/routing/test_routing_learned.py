"""Review logic (accept / escalate / pick an earlier answer) and cascades under policy, with stub verifiers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sovrouter.cache.exact import ExactCache
from sovrouter.catalog import Catalog, Tenants
from sovrouter.classify import NullDetector
from sovrouter.clock import WallClock
from sovrouter.config import ReliabilitySettings
from sovrouter.contracts import (
    Candidate,
    CandidateVerdict,
    Detection,
    ModelResult,
    NormalizedRequest,
    PolicyVerdict,
    Signals,
)
from sovrouter.executor import Executor
from sovrouter.intake import normalize_chat
from sovrouter.pipeline import Pipeline
from sovrouter.reliability import stack
from sovrouter.routing.learned import LearnedRouter
from sovrouter.routing.model import SLOT_ORDER, Bundle, RouterModels, Thresholds, TierThresholds
from sovrouter.testing import FakeAdapter, MemorySink


@dataclass
class Const:
    """A stub estimator: predict_proba returns ``p`` for every row."""

    p: float

    def predict_proba(self, x: object) -> np.ndarray:
        n = len(x)  # type: ignore[arg-type]
        return np.column_stack([np.full(n, 1 - self.p), np.full(n, self.p)])


def _router(catalog: Catalog, tenants: Tenants, *, s1: tuple[float, float], s2: tuple[float, float],
            pick: bool = True, s3: tuple[float, float] | None = None,
            s4: dict[str, float] | None = None, skip: float = 2.0, skip_share: float = 0.0) -> LearnedRouter:
    models = RouterModels(domains=("math",), domain_model=None, kind_model=None, prior_models={},
                          stage1_first=Const(s1[0]), stage1_top=Const(s1[1]),
                          stage2_second=Const(s2[0]), stage2_top=Const(s2[1]),
                          stage3_mid=Const(s3[0]) if s3 else None, stage3_top=Const(s3[1]) if s3 else None,
                          stage4={k: Const(v) for k, v in (s4 or {}).items()})
    th = Thresholds(standard=TierThresholds(direct=0.3, stage1=0.05, stage2=0.05, pick_agreeing=pick,
                                            skip=skip, skip_share=skip_share,
                                            stage3=0.05 if s3 else None, pick=0.1 if s4 else None))
    return LearnedRouter(Bundle(models, th), catalog, tenants)


SIGNALS = Signals(slot_prior={s: 0.7 for s in SLOT_ORDER}, route_features=[0.0] * 27)


def _req(text: str = "What is 6*7? Answer in JSON.", tenant: str = "acme-us") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant, request_id="r1")


def _all(catalog: Catalog) -> list[Candidate]:
    return [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs() if d.available_for("acme-us")]


def _res(c: Candidate, text: str) -> ModelResult:
    return ModelResult(candidate=c, text=text)


def test_decide_builds_cascade_from_allowed_only(catalog: Catalog, tenants: Tenants) -> None:
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    allowed = [c for c in _all(catalog) if c.slot != "frontier"]
    d = router.decide(_req(), SIGNALS, allowed)
    assert d.evidence["mode"] == "cascade" and d.evidence["review"] is True
    assert [c.slot for c in d.plan[:3]] == ["local-small", "sovereign-large", "hosted-mini"]
    assert set(d.plan) == set(allowed)


def test_direct_when_prior_gain_is_large(catalog: Catalog, tenants: Tenants) -> None:
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    sig = Signals(slot_prior={"local-small": 0.2, "sovereign-large": 0.3, "hosted-mini": 0.6, "frontier": 0.9},
                  route_features=[0.0] * 27)
    d = router.decide(_req(), sig, _all(catalog))
    assert d.evidence["mode"] == "direct" and d.plan[0].slot == "frontier"


def test_review_accepts_escalates_and_picks(catalog: Catalog, tenants: Tenants) -> None:
    req = _req()
    accept = _router(catalog, tenants, s1=(0.9, 0.9), s2=(0.9, 0.9))
    d = accept.decide(req, SIGNALS, _all(catalog))
    local, sov, top = d.plan[0], d.plan[1], d.plan[2]
    assert accept.review(req, SIGNALS, d, [_res(local, '{"answer": "42"}')]) is None
    escalate = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    assert escalate.review(req, SIGNALS, d, [_res(local, '{"answer": "42"}')]) == sov
    two = [_res(local, '{"answer": "42"}'), _res(sov, '{"answer": "42"}')]
    assert escalate.review(req, SIGNALS, d, two) == top
    assert accept.review(req, SIGNALS, d, two) is None
    # both cheap answers agree against top: serve the cheap answer; top agreeing: accept top
    assert escalate.review(req, SIGNALS, d, [*two, _res(top, '{"answer": "41"}')]) == sov
    assert escalate.review(req, SIGNALS, d, [*two, _res(top, '{"answer": "42"}')]) is None
    no_pick = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), pick=False)
    d2 = no_pick.decide(req, SIGNALS, _all(catalog))
    assert no_pick.review(req, SIGNALS, d2, [*two, _res(top, '{"answer": "41"}')]) is None


def test_high_value_tenant_escalates_more_readily(catalog: Catalog, tenants: Tenants) -> None:
    router = _router(catalog, tenants, s1=(0.86, 0.9), s2=(0.86, 0.9))  # gain 0.04: standard 0.05, high 0.025
    high = next(t.id for t in tenants.tenants if t.value == "high")
    for tenant, escalates in (("acme-us", False), (high, True)):
        req = _req(tenant=tenant)
        d = router.decide(req, SIGNALS, _all(catalog))
        out = router.review(req, SIGNALS, d, [_res(d.plan[0], '{"answer": "1"}')])
        assert (out is not None) is escalates


class NoFrontier:
    """A policy that forbids the frontier slot."""

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        return PolicyVerdict(verdicts=[CandidateVerdict(candidate=c, allowed=c.slot != "frontier",
                                                        rule="test.no-frontier") for c in candidates])


class FixedClassifier:
    def classify(self, request: NormalizedRequest, detection: Detection) -> Signals:
        return SIGNALS


async def test_cascade_under_policy_never_calls_forbidden_step(catalog: Catalog, tenants: Tenants) -> None:
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                   text=f'{{"answer": "{s.id}"}}')
                for s, d in catalog.pairs()}
    router = _router(catalog, tenants, s1=(0.1, 0.95), s2=(0.1, 0.95))  # always escalate as far as allowed
    sink = MemorySink()
    clock = WallClock()
    wired = {c: stack.wrap(a, ReliabilitySettings(), clock) for c, a in adapters.items()}
    pipe = Pipeline(catalog=catalog, detector=NullDetector(), policy=NoFrontier(), classifier=FixedClassifier(),
                    router=router, executor=Executor(adapters=wired), cache=ExactCache(clock, enabled=False),
                    records=sink, clock=clock)
    out = await pipe.handle(_req())
    assert out.record.status == "ok"
    called = [c.candidate.slot for c in out.record.calls]
    assert called == ["local-small", "sovereign-large", "hosted-mini"]
    assert all(a.calls == 0 for c, a in adapters.items() if c.slot == "frontier")
    assert out.record.escalated and out.record.final is not None and out.record.final.slot == "hosted-mini"


def test_executed_question_decides_acceptance(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.routing.execute import answer_key

    router = _router(catalog, tenants, s1=(0.1, 0.95), s2=(0.1, 0.95))  # verifiers alone would escalate
    sig = Signals(slot_prior={s: 0.2 for s in SLOT_ORDER} | {"frontier": 0.95}, route_features=[0.0] * 27,
                  executed=answer_key("[2, 6]"))
    req = _req()
    d = router.decide(req, sig, _all(catalog))
    assert d.evidence["mode"] == "cascade"  # never direct when the answer can be checked by execution
    local, sov = d.plan[0], d.plan[1]
    assert router.review(req, sig, d, [_res(local, '{"answer": "[2, 6]"}')]) is None
    assert router.review(req, sig, d, [_res(local, '{"answer": "[2, 4]"}')]) == sov


def test_a_direct_domain_goes_to_top_at_once(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.routing.execute import answer_key

    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    router.thresholds.standard.direct_domains = ("chat_hard",)
    chat = Signals(slot_prior={s: 0.7 for s in SLOT_ORDER}, route_features=[0.0] * 27, domain="chat_hard")
    d = router.decide(_req(), chat, _all(catalog))
    assert d.evidence["mode"] == "direct" and d.evidence["direct_domain"] == "chat_hard"
    assert d.plan[0].slot == "frontier" and d.evidence["review"] is False
    math = chat.model_copy(update={"domain": "math"})
    assert router.decide(_req(), math, _all(catalog)).evidence["mode"] == "cascade"
    executable = chat.model_copy(update={"executed": answer_key("[2, 6]")})  # still checked exactly
    assert router.decide(_req(), executable, _all(catalog)).evidence["mode"] == "cascade"


def test_voter_step_between_cheap_chain_and_frontier(catalog: Catalog, tenants: Tenants) -> None:
    req = _req()
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), s3=(0.88, 0.9))
    d = router.decide(req, SIGNALS, _all(catalog))
    local, sov, voter, top = d.plan[:4]
    assert [c.slot for c in (local, sov, voter, top)] == ["local-small", "sovereign-large", "hosted-mini",
                                                         "frontier"]
    two = [_res(local, '{"answer": "42"}'), _res(sov, '{"answer": "41"}')]
    assert router.review(req, SIGNALS, d, two) == voter  # stage 2 escalates: the voter answers first
    three = [*two, _res(voter, '{"answer": "41"}')]
    assert router.review(req, SIGNALS, d, three) is None  # gain 0.02 <= 0.05: the voter's answer is served
    doubt = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), s3=(0.5, 0.9))
    assert doubt.review(req, SIGNALS, d, three) == top


def test_no_voter_when_hosted_mini_is_not_allowed_or_top_is_not_frontier(catalog: Catalog,
                                                                          tenants: Tenants) -> None:
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), s3=(0.5, 0.9))
    no_mini = [c for c in _all(catalog) if c.slot != "hosted-mini"]
    d = router.decide(_req(), SIGNALS, no_mini)
    assert [c.slot for c in d.plan[:3]] == ["local-small", "sovereign-large", "frontier"]
    assert all(c.slot != "hosted-mini" for c in d.plan)
    no_frontier = [c for c in _all(catalog) if c.slot != "frontier"]
    d2 = router.decide(_req(), SIGNALS, no_frontier)  # hosted-mini is top here, not a voter
    assert [c.slot for c in d2.plan[:3]] == ["local-small", "sovereign-large", "hosted-mini"]
    two = [_res(d2.plan[0], '{"answer": "1"}'), _res(d2.plan[1], '{"answer": "2"}')]
    assert router.review(_req(), SIGNALS, d2, two) == d2.plan[2]


def test_picker_after_top_serves_the_more_trusted_cheap_answer(catalog: Catalog, tenants: Tenants) -> None:
    req = _req()
    trusting = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), s3=(0.5, 0.9),
                       s4={"sovereign-large": 0.5, "hosted-mini": 0.9, "frontier": 0.6})
    d = trusting.decide(req, SIGNALS, _all(catalog))
    local, sov, voter, top = d.plan[:4]
    four = [_res(local, '{"answer": "1"}'), _res(sov, '{"answer": "2"}'), _res(voter, '{"answer": "3"}'),
            _res(top, '{"answer": "4"}')]
    assert trusting.review(req, SIGNALS, d, four) == voter
    close = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), s3=(0.5, 0.9),
                    s4={"sovereign-large": 0.5, "hosted-mini": 0.65, "frontier": 0.6})
    assert close.review(req, SIGNALS, d, four) is None


class NoHostedMini:
    """A policy that forbids the voter slot."""

    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        return PolicyVerdict(verdicts=[CandidateVerdict(candidate=c, allowed=c.slot != "hosted-mini",
                                                        rule="test.no-hosted-mini") for c in candidates])


async def test_voter_cascade_under_policy_never_calls_a_forbidden_voter(catalog: Catalog,
                                                                        tenants: Tenants) -> None:
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id),
                                                                   text=f'{{"answer": "{s.id}"}}')
                for s, d in catalog.pairs()}
    router = _router(catalog, tenants, s1=(0.1, 0.95), s2=(0.1, 0.95), s3=(0.1, 0.95))
    clock = WallClock()
    wired = {c: stack.wrap(a, ReliabilitySettings(), clock) for c, a in adapters.items()}
    for policy, expected in ((NoHostedMini(), ["local-small", "sovereign-large", "frontier"]),
                             (None, ["local-small", "sovereign-large", "hosted-mini", "frontier"])):
        for a in adapters.values():
            a.calls = 0
        pipe = Pipeline(catalog=catalog, detector=NullDetector(), policy=policy or AllowAll(),
                        classifier=FixedClassifier(), router=router, executor=Executor(adapters=wired),
                        cache=ExactCache(clock, enabled=False), records=MemorySink(), clock=clock)
        out = await pipe.handle(_req())
        assert [c.candidate.slot for c in out.record.calls] == expected
        if policy is not None:
            assert all(a.calls == 0 for c, a in adapters.items() if c.slot == "hosted-mini")


class AllowAll:
    def evaluate(self, request: NormalizedRequest, detection: Detection,
                 candidates: Sequence[Candidate]) -> PolicyVerdict:
        return PolicyVerdict(verdicts=[CandidateVerdict(candidate=c, allowed=True, rule="test.allow")
                                       for c in candidates])


def test_voter_answer_after_a_failed_sovereign_step_is_checked_against_top(catalog: Catalog,
                                                                           tenants: Tenants) -> None:
    req = _req()
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9), s3=(0.5, 0.9))
    d = router.decide(req, SIGNALS, _all(catalog))
    local, _sov, voter, top = d.plan[:4]
    # sovereign-large failed and the fallback chain answered with the voter: escalate to top, not backwards
    assert router.review(req, SIGNALS, d, [_res(local, '{"answer": "1"}'), _res(voter, '{"answer": "2"}')]) == top


def test_skip_goes_straight_to_top_only_when_the_next_step_is_dear(catalog: Catalog, tenants: Tenants) -> None:
    """Stage-1 gain 0.6 exceeds ``skip``: sovereign-large is skipped when it would cost at least ``skip_share`` of
    frontier (a long prompt with a short answer), tried when it is cheap by comparison (a long answer)."""
    router = _router(catalog, tenants, s1=(0.3, 0.9), s2=(0.5, 0.9), skip=0.5, skip_share=0.25)
    long_prompt = _req("Context line. " * 400 + "Which option is right? Answer with one letter.")
    d = router.decide(long_prompt, SIGNALS, _all(catalog))
    local, top = d.plan[0], next(c for c in d.plan if c.slot == "frontier")
    assert router.review(long_prompt, SIGNALS, d, [_res(local, "B")]) == top
    short = _req("Write an essay about rivers.")
    d2 = router.decide(short, SIGNALS, _all(catalog))
    essay = _res(d2.plan[0], "Rivers shape valleys. " * 300)
    assert router.review(short, SIGNALS, d2, [essay]) == d2.plan[1]
    assert d2.plan[1].slot == "sovereign-large"


def test_later_reviews_reuse_answers_already_read(catalog: Catalog, tenants: Tenants) -> None:
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    text = "```python\ndef f(x):\n    return x\n\nprint(f(1))\n```"
    first = router._read(text)
    assert router._read(text) is first  # the sandbox result travels with the view: run once per answer
    assert router._read(text + " ") is not first


def test_cascade_steps_and_top_run_on_the_deployment_the_chooser_prefers(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.routing.deployments import LatencyAwareDeployment

    data = catalog.model_dump()
    for slot in data["slots"]:
        if slot["id"] in ("sovereign-large", "frontier"):
            base = dict(slot["deployments"][0])
            slot["deployments"].append({**base, "id": "spec", "available_to": "all",
                                        "speculative": {"kind": "draft-model", "draft": "small-draft",
                                                        "expected_speedup": 2.5,
                                                        "base_speedup": 0.9}})
    spec_catalog = Catalog.model_validate(data)
    router = _router(spec_catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    router.deployments = LatencyAwareDeployment(spec_catalog, tenants)
    code = "```python\n" + "\n".join(f"def f{i}(x):\n    return x * {i}\n" for i in range(10)) + "```"
    edit = _req(f"Refactor this code and return the full code:\n{code}")
    d = router.decide(edit, SIGNALS, _all(spec_catalog))
    assert d.evidence["mode"] == "cascade" and d.evidence["top"] == "frontier/spec"
    assert [c.key for c in d.plan[:2]] == ["local-small/edge", "sovereign-large/spec"]
    # review finds top by its key: escalation lands on the speculative frontier deployment
    two = [_res(d.plan[0], '{"answer": "1"}'), _res(d.plan[1], '{"answer": "2"}')]
    assert router.review(edit, SIGNALS, d, two) == Candidate(slot="frontier", deployment="spec")
    # an open question: speculation would slow it (0.9x), so the plain deployments serve it
    d = router.decide(_req(), SIGNALS, _all(spec_catalog))
    assert d.evidence["top"] == "frontier/us" and d.plan[1].key == "sovereign-large/eu-sov"
    assert set(d.plan) == set(_all(spec_catalog))


def test_a_request_offering_tools_goes_to_the_best_allowed_model_without_a_cascade(catalog: Catalog,
                                                                                  tenants: Tenants) -> None:
    """The quality models read text answers; none of their training answers called a function."""
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    tools = {"type": "function", "function": {"name": "get_weather"}}
    req = normalize_chat({"messages": [{"role": "user", "content": "What is 6*7? Answer in JSON."}],
                          "tools": [tools]}, tenant="acme-us", request_id="r1")
    allowed = [c for c in _all(catalog) if c.slot != "frontier"]
    d = router.decide(req, SIGNALS, allowed)
    assert d.evidence["mode"] == "tools" and d.evidence["review"] is False
    assert d.plan[0].slot == "hosted-mini" and set(d.plan) == set(allowed)  # the best allowed, then fallbacks
    assert router.review(req, SIGNALS, d, [_res(d.plan[0], "")]) is None
    assert router.decide(_req(), SIGNALS, allowed).evidence["mode"] == "cascade"  # the same text without tools



async def test_an_answer_kept_after_a_failed_escalation_is_served_but_never_cached(catalog: Catalog,
                                                                                   tenants: Tenants) -> None:
    """The review rejected the cheap answer and every later step failed: the cheap answer is served, but it was
    also cached, and the same request got it from the cache for the whole TTL once the upstreams were back."""
    from sovrouter.testing import FailingAdapter

    local = Candidate(slot="local-small", deployment="edge")
    adapters: dict[Candidate, FakeAdapter | FailingAdapter] = {
        Candidate(slot=s.id, deployment=d.id): FailingAdapter(Candidate(slot=s.id, deployment=d.id))
        for s, d in catalog.pairs()}
    adapters[local] = FakeAdapter(local, text='{"answer": "local"}')
    router = _router(catalog, tenants, s1=(0.1, 0.95), s2=(0.1, 0.95))  # always escalate
    clock = WallClock()
    cache = ExactCache(clock)
    wired = {c: stack.wrap(a, ReliabilitySettings(retries=0), clock) for c, a in adapters.items()}
    pipe = Pipeline(catalog=catalog, detector=NullDetector(), policy=AllowAll(), classifier=FixedClassifier(),
                    router=router, executor=Executor(adapters=wired), cache=cache, records=MemorySink(),
                    clock=clock)
    out = await pipe.handle(_req())
    assert out.record.status == "ok" and out.record.final == local
    assert cache.entry_count() == 0
    again = await pipe.handle(_req().model_copy(update={"request_id": "r2"}))
    assert again.record.cache.kind == "miss"


def test_a_request_sent_direct_by_its_gain_is_not_attributed_to_a_direct_domain(catalog: Catalog,
                                                                                  tenants: Tenants) -> None:
    """``direct_domain`` in the evidence names the domain only when the domain alone sent the request to top."""
    router = _router(catalog, tenants, s1=(0.5, 0.9), s2=(0.5, 0.9))
    router.thresholds.standard.direct_domains = ("chat_hard",)
    gain = Signals(slot_prior={s: 0.1 for s in SLOT_ORDER} | {"frontier": 0.9}, route_features=[0.0] * 27,
                   domain="math")
    d = router.decide(_req(), gain, _all(catalog))
    assert d.evidence["mode"] == "direct" and "direct_domain" not in d.evidence
    both = gain.model_copy(update={"domain": "chat_hard"})
    d = router.decide(_req(), both, _all(catalog))
    assert d.evidence["mode"] == "direct" and "direct_domain" not in d.evidence
