from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sovrouter.errors import ConfigError
from sovrouter.testing_workload import write_workload
from sovrouter.workload import load_labels, load_replay_inputs, load_scores, resolve


def test_flat_and_shared_layouts_load_the_same(tmp_path: Path) -> None:
    flat = write_workload(tmp_path / "flat", n_requests=8, seed=1)
    shared = write_workload(tmp_path / "shared", n_requests=8, seed=1, layout="shared")
    a, b = load_replay_inputs(tmp_path / "flat"), load_replay_inputs(tmp_path / "shared")
    assert b.paths.data == tmp_path / "shared" / "dev"
    assert a.requests == b.requests and a.responses == b.responses and a.stream == b.stream
    assert [e.seq for e in a.stream] == [e["seq"] for e in flat.stream]
    assert len(load_scores(resolve(tmp_path / "shared"))) == len(shared.scores)
    assert set(load_labels(resolve(tmp_path / "flat"))) == {r["id"] for r in flat.requests}


def test_split_selection(tmp_path: Path) -> None:
    write_workload(tmp_path / "w", n_requests=4, seed=2, layout="shared")
    (tmp_path / "w" / "dev").rename(tmp_path / "w" / "heldout")
    assert resolve(tmp_path / "w").data.name == "heldout"  # the only split folder
    write_workload(tmp_path / "w2", n_requests=4, seed=2, layout="shared")
    (tmp_path / "w2" / "dev").rename(tmp_path / "w2" / "a")
    write_workload(tmp_path / "w3", n_requests=4, seed=2, layout="shared")
    (tmp_path / "w3" / "dev").rename(tmp_path / "w2" / "b")
    with pytest.raises(ConfigError, match="several splits"):
        resolve(tmp_path / "w2")
    assert resolve(tmp_path / "w2", split="b").data.name == "b"
    with pytest.raises(ConfigError, match="no split folder"):
        resolve(tmp_path / "w2", split="c")


def test_a_split_folder_named_directly_reads_the_catalog_and_tenants_beside_it(tmp_path: Path) -> None:
    """``--workload shared/data/workload/dev`` found no models.json in dev/ and failed."""
    write_workload(tmp_path / "w", n_requests=4, seed=2, layout="shared")
    inputs = load_replay_inputs(tmp_path / "w" / "dev")
    assert inputs.paths.data == tmp_path / "w" / "dev" and inputs.paths.catalog == tmp_path / "w" / "models.json"
    assert inputs.requests == load_replay_inputs(tmp_path / "w").requests


def test_dev_beside_another_split_is_the_default_said_aloud(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    write_workload(tmp_path / "w", n_requests=4, seed=2, layout="shared")
    write_workload(tmp_path / "x", n_requests=4, seed=3, layout="shared")
    (tmp_path / "x" / "dev").rename(tmp_path / "w" / "heldout")
    with caplog.at_level(logging.WARNING, logger="sovrouter.workload"):
        assert resolve(tmp_path / "w").data.name == "dev"
    assert "heldout" in caplog.text and "--split" in caplog.text
    assert resolve(tmp_path / "w", split="heldout").data.name == "heldout"


def test_bad_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_replay_inputs(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no requests"):
        load_replay_inputs(tmp_path / "empty")
    write_workload(tmp_path / "v", n_requests=4, seed=3)
    (tmp_path / "v" / "responses.jsonl.gz").write_bytes(b"not json")
    with pytest.raises(ConfigError, match=r"responses.jsonl.gz line 1: invalid"):
        load_replay_inputs(tmp_path / "v")
    (tmp_path / "v" / "responses.jsonl.gz").write_bytes(b"\x1f\x8b truncated gzip")
    with pytest.raises(ConfigError, match=r"cannot read .*responses"):
        load_replay_inputs(tmp_path / "v")
    (tmp_path / "v" / "responses.jsonl.gz").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ConfigError, match=r"cannot read .*responses"):
        load_replay_inputs(tmp_path / "v")
    with pytest.raises(ConfigError, match="no scores"):
        load_scores(resolve(write_workload(tmp_path / "x", n_requests=2, with_eval=False).paths.root))


def test_a_recorded_prompt_with_a_broken_escape_is_repaired_for_replay() -> None:
    """Replay answers every event: a lone surrogate in a recorded prompt becomes U+FFFD, not a refused request."""
    from sovrouter.intake import normalize_chat
    from sovrouter.workload import WorkloadRequest

    wreq = WorkloadRequest.model_validate({"id": "q1", "tenant": "t", "data_class": "public",
                                           "messages": [{"role": "user", "content": "cut emoji \ud83d"}]})
    req = normalize_chat(wreq.chat_body(), tenant=wreq.tenant, request_id="q1#0")
    assert req.messages[0].text == "cut emoji \ufffd"


def test_a_recorded_turn_with_tool_calls_is_kept_as_text_for_replay() -> None:
    """Replay keeps a recorded turn's tool calls as its text, so the policy and the router read the arguments (a
    name or an address in them is personal data) as they did before the gateway carried tool calls; a tool turn is
    read as text too (``recorded``: it need not name the call it answers)."""
    from sovrouter.intake import normalize_chat
    from sovrouter.workload import WorkloadRequest

    wreq = WorkloadRequest.model_validate({"id": "q1", "tenant": "t", "data_class": "public", "messages": [
        {"role": "user", "content": "book it"},
        {"role": "assistant", "content": "Booking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "book", "arguments": '{"name": "Ann Lee"}'}}]},
        {"role": "function", "name": "book", "content": "booked"},
        {"role": "assistant", "content": None, "function_call": {"name": "pay", "arguments": {"eur": 5}}},
    ]})
    req = normalize_chat(wreq.chat_body(), tenant=wreq.tenant, request_id="q1#0", recorded=True)
    assert [m.text for m in req.messages] == ["book it", 'Booking.\nbook({"name": "Ann Lee"})', "booked",
                                              'pay({"eur": 5})']
    assert req.tooling is None and not any(m.tool_calls or m.tool_call_id for m in req.messages)


def test_a_latency_not_given_copies_its_sibling_and_a_value_in_capitals_is_read() -> None:
    """The README says two deployments' latency "was not specified" and that they copy their sibling's; a file
    writing that as null (or leaving it out), or a tenant's value as "High", refused the whole workload."""
    from sovrouter.catalog import Catalog, Tenants

    dep = {"region": "EU", "compute": "gpu"}
    catalog = Catalog.model_validate({"slots": [{"id": "s", "price_usd_per_mtok": {"input": 1, "output": 2},
                                                 "deployments": [{**dep, "id": "a", "latency": None},
                                                                 {**dep, "id": "b", "latency": {"ttft_ms": 80,
                                                                                                "tokens_per_s": 50}},
                                                                 {**dep, "id": "c"}]}]})
    assert [d.latency.ttft_ms for d in catalog.slots[0].deployments] == [80, 80, 80]
    tenants = Tenants.model_validate({"tenants": [{"id": "t", "value": "High"}, {"id": "u", "value": " standard"}]})
    assert [t.value for t in tenants.tenants] == ["high", "standard"]
