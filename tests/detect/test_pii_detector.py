"""The detector's contract: types only, fail closed on error or timeout, models loaded only when needed; and the
pipeline's fail-closed behaviour when detection or policy evaluation fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import Settings
from sovrouter.contracts import Candidate, Detection, NormalizedRequest
from sovrouter.detect.detector import FailClosedDetector, PiiDetector, language_fields, segments
from sovrouter.errors import DetectionTimeoutError
from sovrouter.intake import normalize_chat
from sovrouter.policy.cedar import CedarPolicy
from sovrouter.testing import FakeAdapter, MemorySink


def _req(text: str, tenant: str = "clinic-ca", rid: str = "r1") -> NormalizedRequest:
    return normalize_chat({"messages": [{"role": "user", "content": text}]}, tenant=tenant, request_id=rid)


class _Broken:
    def detect(self, request: NormalizedRequest) -> Detection:
        raise RuntimeError("model crashed")


def test_fail_closed_wrapper_turns_errors_into_failed_detection() -> None:
    det = FailClosedDetector(_Broken()).detect(_req("hello"))
    assert det.failed and det.has_personal_data and det.pii_types == []


def test_timeout_fails_closed() -> None:
    clock = iter([0.0] + [10.0] * 50)
    detector = PiiDetector(timeout_ms=100.0, timer=lambda: next(clock))
    with pytest.raises(DetectionTimeoutError):
        detector.detect_text("line one\nline two")
    clock = iter([0.0] + [10.0] * 50)
    assert FailClosedDetector(detector).detect(_req("line one\nline two")).failed


@pytest.mark.parametrize("text", ["one line only", "line one\nline two"])
def test_the_budget_holds_to_the_last_segment(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline is checked between segments and after the last one: a detection that ran past its budget on
    any segment, the last included, fails closed, and no segment is read once the budget is spent."""
    now = [0.0]
    detector = PiiDetector(timeout_ms=100.0, timer=lambda: now[0])
    read: list[str] = []
    real = detector._segment_types

    def slow(seg: str, whole_line: bool = True) -> set[str]:
        read.append(seg)
        now[0] += 1.0  # each segment takes ten times the whole budget
        return real(seg, whole_line)

    monkeypatch.setattr(detector, "_segment_types", slow)
    with pytest.raises(DetectionTimeoutError):
        detector.detect_text(text)
    assert len(read) == 1


def test_plain_text_needs_no_model() -> None:
    detector = PiiDetector()
    det = detector.detect_text("What is the capital of France? Answer in one word.")
    assert det.pii_types == [] and not det.failed
    assert not detector._models_loaded


def test_segments_split_long_lines() -> None:
    text = "short\n\n" + "A sentence. " * 60
    parts = list(segments(text, max_line=100))
    assert parts[0] == "short" and len(parts) > 10 and all(len(p) < 100 for p in parts)


def _pipeline(catalog: Catalog, tenants: Tenants, sink: MemorySink) -> tuple[Any, dict[Candidate, FakeAdapter]]:
    adapters = {Candidate(slot=s.id, deployment=d.id): FakeAdapter(Candidate(slot=s.id, deployment=d.id))
                for s, d in catalog.pairs()}
    cfg = Settings(catalog=Path("x"), tenants=Path("y"), policy="cedar", detector="none")
    return assemble(cfg, catalog, tenants, adapters, WallClock(), sink), adapters


@pytest.mark.parametrize(("tenant", "allowed"), [
    ("clinic-ca", {"local-small/edge"}),
    ("eurobank", {"local-small/edge", "sovereign-large/eu-sov", "hosted-mini/eu-zone"}),
])
async def test_detector_failure_is_treated_as_personal_and_restricted(catalog: Catalog, tenants: Tenants,
                                                                      tenant: str, allowed: set[str]) -> None:
    sink = MemorySink()
    pipe, adapters = _pipeline(catalog, tenants, sink)
    pipe.detector = FailClosedDetector(_Broken())
    out = await pipe.handle(_req("hello", tenant=tenant))
    rec = out.record
    assert rec.effective_class == "restricted"
    assert {v.candidate.key for v in rec.policy if v.allowed} == allowed
    assert all(c.key in allowed for c, a in adapters.items() if a.calls)


async def test_policy_engine_failure_refuses_with_no_call(catalog: Catalog, tenants: Tenants) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("engine down")

    sink = MemorySink()
    pipe, adapters = _pipeline(catalog, tenants, sink)
    pipe.policy = CedarPolicy(catalog, tenants, authorize=broken)
    out = await pipe.handle(_req("hello", tenant="acme-us"))
    assert out.error is not None and out.record.status == "refused"
    assert out.error.to_openai()["error"]["code"] == "no_allowed_deployment"
    assert out.error.status == 403
    assert {v.rule for v in out.record.policy} == {"policy.engine-failed"}
    assert sum(a.calls for a in adapters.values()) == 0


@pytest.mark.slow
def test_types_only_on_workload_like_lines() -> None:
    detector = PiiDetector(timeout_ms=60_000)
    det = detector.detect_text("Customer: Jacques Arnaud, IBAN FR66 0070 0967 4842 6908 7807 427, phone 0495743919."
                               "\n\nWhat is 2+2?")
    assert det.pii_types == ["IBAN", "PERSON", "PHONE"]
    assert "Jacques" not in det.model_dump_json() and "0495743919" not in det.model_dump_json()


DUTCH = "Kunt u mij helpen met het samenvatten van deze brief over de geschiedenis van Amsterdam?"
POLISH = "Proszę streścić ten list o historii Krakowa w trzech zdaniach."


def test_the_policy_reads_the_language_identified_not_one_the_ner_prefers() -> None:
    """``language_of`` prefers en/de/fr whenever they are in the top three (to pick a NER model): given to the
    policy it read Dutch as French and Polish as German, so a language rule never fired."""
    assert language_fields(_req(DUTCH))["request_language"] == "nl"
    assert language_fields(_req(POLISH))["request_language"] == "pl"
    mixed = normalize_chat({"messages": [{"role": "system", "content": "You are a helpful assistant for archives."},
                                         {"role": "user", "content": DUTCH}]}, tenant="t", request_id="r")
    assert language_fields(mixed) == {"request_language": "nl", "request_languages": ["nl"]}  # not the system's
    det = PiiDetector().detect(_req(DUTCH))
    assert det.request_language == "nl" and det.language in ("en", "de", "fr")  # the routing feature unchanged


def test_a_failed_detection_keeps_the_language_rules() -> None:
    """A failure dropped the language (``None``), so a rule about unsupported languages stopped applying: less
    strict on failure, not more."""
    det = FailClosedDetector(_Broken()).detect(_req(DUTCH))
    assert det.failed and det.request_language == "nl"


ENGLISH = ("I am cataloguing letters for our archive and need help with the one below. It was found in a box "
           "of correspondence from the harbour office, and I would like a short summary for the catalogue entry. "
           "Please keep the names of places as they are written, and note anything unusual about the dates. ") * 2


def _turns(*texts: str, tenant: str = "heritage-archive") -> NormalizedRequest:
    messages: list[dict[str, str]] = []
    for text in texts:
        messages += [{"role": "user", "content": text}, {"role": "assistant", "content": "Of course."}]
    return normalize_chat({"messages": messages[:-1]}, tenant=tenant, request_id="r")


def test_every_user_turn_is_read_for_its_language() -> None:
    """The language was read from the first 400 characters of all user text: a Dutch request behind a long English
    first turn was English, and the rule about unsupported languages did not fire."""
    assert language_fields(_turns(ENGLISH, DUTCH)) == {"request_language": "nl", "request_languages": ["en", "nl"]}
    assert language_fields(_turns(DUTCH, ENGLISH)) == {"request_language": "en", "request_languages": ["nl", "en"]}
    assert FailClosedDetector(_Broken()).detect(_turns(ENGLISH, DUTCH)).request_languages == ["en", "nl"]


def test_stop_sequences_are_scanned_like_the_messages() -> None:
    """``stop`` goes upstream with the request, but detection read the messages only: personal data placed there
    was judged absent and left the premises."""
    req = normalize_chat({"messages": [{"role": "user", "content": "Summarise the visit."}],
                          "stop": ["jane.roe@gmail.com"]}, tenant="clinic-ca", request_id="r")
    assert "EMAIL" in PiiDetector().detect(req).pii_types


def test_media_the_detector_cannot_read_counts_as_personal_data() -> None:
    req = normalize_chat({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "Transcribe this scanned card."},
        {"type": "image_url", "image_url": {"url": "https://files.example/scan.png"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}]}]},
        tenant="clinic-ca", request_id="r")
    det = PiiDetector().detect(req)
    assert det.pii_types == [] and det.unscanned == ["audio", "image"] and det.has_personal_data
    assert FailClosedDetector(_Broken()).detect(req).unscanned == ["audio", "image"]
    assert PiiDetector().detect(_req("What is the capital of France?")).unscanned == []


@pytest.mark.parametrize(("text", "refused"), [(DUTCH, True), ("Please summarise this letter about Amsterdam.", False)])
async def test_an_unsupported_language_is_refused_end_to_end(catalog: Catalog, tenants: Tenants, text: str,
                                                             refused: bool) -> None:
    """heritage-archive: "The model must support the language of the request." Dutch is supported only by the
    proprietary slots, which its open-weights rule forbids: nothing is left. It was served (read as French)."""
    sink = MemorySink()
    pipe, adapters = _pipeline(catalog, tenants, sink)
    pipe.detector = FailClosedDetector(PiiDetector())
    out = await pipe.handle(_req(text, tenant="heritage-archive"))
    assert (out.record.status == "refused") is refused
    assert (sum(a.calls for a in adapters.values()) == 0) is refused


@pytest.mark.parametrize("texts", [(ENGLISH, DUTCH), (DUTCH, ENGLISH)])
async def test_an_unsupported_language_in_any_turn_is_refused_end_to_end(catalog: Catalog, tenants: Tenants,
                                                                         texts: tuple[str, str]) -> None:
    sink = MemorySink()
    pipe, adapters = _pipeline(catalog, tenants, sink)
    pipe.detector = FailClosedDetector(PiiDetector())
    out = await pipe.handle(_turns(*texts))
    assert out.record.status == "refused" and sum(a.calls for a in adapters.values()) == 0


async def test_personal_data_in_a_stop_sequence_stays_on_premises(catalog: Catalog, tenants: Tenants) -> None:
    sink = MemorySink()
    pipe, _ = _pipeline(catalog, tenants, sink)
    pipe.detector = FailClosedDetector(PiiDetector())
    req = normalize_chat({"messages": [{"role": "user", "content": "Summarise the visit."}],
                          "stop": ["jane.roe@gmail.com"]}, tenant="clinic-ca", request_id="r")
    out = await pipe.handle(req)
    on_premises = {f"{s.id}/{d.id}" for s, d in catalog.pairs() if d.on_premises}
    assert "EMAIL" in out.record.detected_pii_types
    assert out.record.final is not None and out.record.final.key in on_premises


async def test_media_takes_the_strictest_branch_for_every_tenant(catalog: Catalog, tenants: Tenants) -> None:
    from sovrouter.policy.cedar import CedarPolicy

    policy = CedarPolicy(catalog, tenants)
    for tenant in ("clinic-ca", "eurobank", "heritage-archive"):
        cands = [Candidate(slot=s.id, deployment=d.id) for s, d in catalog.pairs() if d.available_for(tenant)]
        as_pii = policy.evaluate(_req("x", tenant=tenant), Detection(pii_types=["PERSON"]), cands).allowed
        media = policy.evaluate(_req("x", tenant=tenant), Detection(unscanned=["image"]), cands).allowed
        assert set(media) == set(as_pii)


def _with_tools(catalog: Catalog, capable: Callable[[str], bool]) -> Catalog:
    raw = catalog.model_dump(mode="json")
    for slot in raw["slots"]:
        for dep in slot["deployments"]:
            dep["tools"] = capable(f"{slot['id']}/{dep['id']}")
    return Catalog.model_validate(raw)


def _tool_request() -> NormalizedRequest:
    call = {"id": "c1", "type": "function", "function": {"name": "book", "arguments": '{"to": "jane.roe@gmail.com"}'}}
    return normalize_chat({"messages": [{"role": "user", "content": "Book the follow-up visit."},
                                        {"role": "assistant", "content": None, "tool_calls": [call]},
                                        {"role": "tool", "tool_call_id": "c1", "content": "done"}],
                           "tools": [{"type": "function", "function": {"name": "book"}}]},
                          tenant="clinic-ca", request_id="r")


async def test_personal_data_in_a_tool_call_stays_on_premises(catalog: Catalog, tenants: Tenants) -> None:
    """A call's arguments go upstream with the conversation: they are scanned like the messages."""
    every = _with_tools(catalog, lambda key: True)
    pipe, _ = _pipeline(every, tenants, MemorySink())
    pipe.detector = FailClosedDetector(PiiDetector())
    out = await pipe.handle(_tool_request())
    on_premises = {f"{s.id}/{d.id}" for s, d in catalog.pairs() if d.on_premises}
    assert "EMAIL" in out.record.detected_pii_types
    assert out.record.final is not None and out.record.final.key in on_premises


async def test_tools_served_only_off_premises_are_refused_for_personal_data(catalog: Catalog,
                                                                           tenants: Tenants) -> None:
    """Capability narrows the candidates, then the policy: nothing left is a refusal, never a relaxed rule."""
    cloud_only = _with_tools(catalog, lambda key: not key.startswith("local-small/"))
    pipe, adapters = _pipeline(cloud_only, tenants, MemorySink())
    pipe.detector = FailClosedDetector(PiiDetector())
    out = await pipe.handle(_tool_request())
    assert out.record.status == "refused" and sum(a.calls for a in adapters.values()) == 0


def test_a_functions_json_result_is_read_as_text() -> None:
    """Quoted strings next to braces read as code literals, which the e-mail rule leaves alone: a tool's JSON
    result carrying a patient's mailbox was judged free of personal data."""
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    req = normalize_chat({"messages": [{"role": "user", "content": "Find the patient."},
                                       {"role": "assistant", "content": None, "tool_calls": [call]},
                                       {"role": "tool", "tool_call_id": "c1",
                                        "content": '{"patient": {"email": "jane.roe@gmail.com"}}'}],
                          "tools": [{"type": "function", "function": {"name": "lookup"}}]},
                         tenant="clinic-ca", request_id="r")
    assert "EMAIL" in PiiDetector().detect(req).pii_types


@pytest.mark.parametrize("arguments", [
    '{"payload": "{\\"to\\": \\"jane.roe@gmail.com\\"}"}',  # JSON inside a JSON string
    '{"to": "jane.roe@gmail.com",}',  # a trailing comma: not JSON
    "{'to': 'jane.roe@gmail.com'}",  # a Python repr, as agents often write tool results
    '{"jane.roe@gmail.com": null}',  # the mailbox as a key
])
def test_tool_strings_in_any_shape_are_read_as_text(arguments: str) -> None:
    """Only one level of valid JSON was unpacked: each of these reached a cloud deployment with the mailbox
    unseen (found in review, 2026-11-28)."""
    call = {"id": "c1", "type": "function", "function": {"name": "send", "arguments": arguments}}
    req = normalize_chat({"messages": [{"role": "user", "content": "Send the letter."},
                                       {"role": "assistant", "content": None, "tool_calls": [call]},
                                       {"role": "tool", "tool_call_id": "c1", "content": arguments}],
                          "tools": [{"type": "function", "function": {"name": "send"}}]},
                         tenant="clinic-ca", request_id="r")
    assert "EMAIL" in PiiDetector().detect(req).pii_types
