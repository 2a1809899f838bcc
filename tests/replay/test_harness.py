from __future__ import annotations

import builtins
import gzip
import json
import random
import string
from pathlib import Path
from typing import Any

import pytest

from sovrouter import build
from sovrouter.classify import NullClassifier
from sovrouter.cli.main import main
from sovrouter.config import Settings
from sovrouter.replay.decisions import Decision, read_decisions
from sovrouter.replay.harness import replay_settings, run_replay
from sovrouter.testing_workload import DEMO_DATA, EscalatingRouter, tokens, write_jsonl, write_workload
from sovrouter.workload import ReplayInputs, load_replay_inputs

SHARED = Path("/work/shared/data/workload")


def _replay(directory: Path) -> tuple[ReplayInputs, list[Decision]]:
    inputs = load_replay_inputs(directory)
    return inputs, run_replay(inputs, replay_settings(inputs)).decisions


def _strip(decisions: list[Decision]) -> list[dict[str, Any]]:
    return [d.model_dump(exclude={"decision_ms"}) for d in decisions]


def _check_valid(inputs: ReplayInputs, decisions: list[Decision]) -> None:
    """One decision per event, known deployments only, cache hits point at earlier served events."""
    assert [d.seq for d in decisions] == [e.seq for e in inputs.stream]
    assert [d.request_id for d in decisions] == [e.request_id for e in inputs.stream]
    known = {(s.id, dep.id) for s, dep in inputs.catalog.pairs()}
    by_seq = {d.seq: d for d in decisions}
    for d in decisions:
        for r in [*d.calls, *([d.final] if d.final else [])]:
            assert (r.model, r.deployment) in known
        if d.cache is not None:
            src = by_seq[d.cache.source_seq]
            assert src.seq < d.seq and src.final is not None
            assert d.final == src.final
        elif d.final is not None:
            assert d.final in d.calls


def test_replay_is_deterministic(tmp_path: Path) -> None:
    write_workload(tmp_path / "wl", n_requests=30, seed=3)
    inputs, first = _replay(tmp_path / "wl")
    _, second = _replay(tmp_path / "wl")
    assert _strip(first) == _strip(second)
    _check_valid(inputs, first)
    assert any(d.cache is not None for d in first), "the stream repeats requests: some must be served from cache"
    assert all(d.calls == [] for d in first if d.cache is not None)


@pytest.fixture
def escalating(monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay with a router whose decisions depend on the answers it reads (wired through build, as usual)."""
    monkeypatch.setattr(build, "make_router",
                        lambda settings, catalog, tenants, deployments=None: (EscalatingRouter(catalog),
                                                                              NullClassifier()))


@pytest.mark.usefixtures("escalating")
def test_noise_in_uncalled_slots_changes_nothing(tmp_path: Path) -> None:
    wl = write_workload(tmp_path / "wl", n_requests=40, seed=4)
    _, before = _replay(tmp_path / "wl")
    assert any(len(d.calls) > 1 for d in before), "the escalating router must escalate on some answers"
    called = {(d.request_id, c.model) for d in before for c in d.calls}
    rng = random.Random(99)
    noisy = []
    for r in wl.responses:
        if (r["request_id"], r["model"]) in called:
            noisy.append(r)
            continue
        text = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 3000)))
        noisy.append({**r, "response": text, "output_tokens": tokens(text)})
    assert noisy != wl.responses
    write_jsonl(wl.paths.data / "responses.jsonl.gz", noisy)
    _, after = _replay(tmp_path / "wl")
    assert _strip(after) == _strip(before)


@pytest.mark.usefixtures("escalating")
def test_noise_in_called_slots_does_change_decisions(tmp_path: Path) -> None:
    """The converse, so the test above can fail: noise in the answers the router did read changes its route."""
    wl = write_workload(tmp_path / "wl", n_requests=40, seed=4)
    inputs, before = _replay(tmp_path / "wl")
    _check_valid(inputs, before)
    noisy = [{**r, "response": r["response"] + " (changed)"} for r in wl.responses]
    write_jsonl(wl.paths.data / "responses.jsonl.gz", noisy)
    _, after = _replay(tmp_path / "wl")
    assert _strip(after) != _strip(before)


def test_replay_never_opens_scores_or_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_workload(tmp_path / "wl", n_requests=10, seed=5)  # scores and labels are present...
    opened: list[str] = []
    real_open = builtins.open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    _replay(tmp_path / "wl")
    monkeypatch.undo()
    names = [Path(p).name for p in opened]
    assert "requests.jsonl.gz" in names
    assert not [n for n in names if n.startswith(("scores", "labels"))]  # ...and never read


def test_replay_without_scores_and_labels_shared_layout(tmp_path: Path) -> None:
    write_workload(tmp_path / "wl", n_requests=12, seed=6, with_eval=False, layout="shared")
    assert not list((tmp_path / "wl").rglob("scores*")) and not list((tmp_path / "wl").rglob("labels*"))
    inputs, decisions = _replay(tmp_path / "wl")
    _check_valid(inputs, decisions)


def test_demo_sample_replays_from_plain_jsonl() -> None:
    inputs, decisions = _replay(DEMO_DATA)
    _check_valid(inputs, decisions)
    assert len(decisions) == len(inputs.stream) > 0


def test_cli_replay_writes_decisions_and_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wl = write_workload(tmp_path / "wl", n_requests=12, seed=7)
    out, recs = tmp_path / "d.jsonl", tmp_path / "r.jsonl"
    rc = main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(out), "--records", str(recs)])
    assert rc == 0
    decisions = read_decisions(out)
    assert len(decisions) == len(wl.stream)
    first = json.loads(out.read_text().splitlines()[0])
    assert set(first) == {"seq", "request_id", "calls", "final", "cache", "detected", "decision_ms"}
    records = [json.loads(line) for line in recs.read_text().splitlines()]
    assert len(records) == len(wl.stream)
    assert len({r["request_id"] for r in records}) == len(records)  # request ids are unique per event
    assert {r["external_id"] for r in records} == {r["id"] for r in wl.requests}
    err = capsys.readouterr().err
    assert f"{len(wl.stream)} events" in err and "p99" in err


def test_cli_replay_bad_workload_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    wl = write_workload(tmp_path / "wl", n_requests=4, seed=8)
    with gzip.open(tmp_path / "wl" / "stream.jsonl.gz", "at", encoding="utf-8") as fh:
        fh.write('{"seq": "x"}\n')  # no request: left out with a warning, every other event decided
    rc = main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(tmp_path / "d.jsonl")])
    assert rc == 0 and len(read_decisions(tmp_path / "d.jsonl")) == len(wl.stream)
    assert "stream.jsonl.gz line" in caplog.text and "left out" in caplog.text
    assert "Traceback" not in capsys.readouterr().err
    with gzip.open(tmp_path / "wl" / "stream.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write('{"seq": "x"}\nnot json\n')  # no line reads: nothing to replay is an error, not an empty file
    rc = main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(tmp_path / "e.jsonl")])
    assert rc == 2 and not (tmp_path / "e.jsonl").exists()
    err = capsys.readouterr().err
    assert "no line of stream.jsonl.gz reads" in err and "Traceback" not in err
    assert main(["replay", "--workload", str(tmp_path / "missing"), "--out", str(tmp_path / "d.jsonl")]) == 2


def test_replay_config_file_overrides_shipped_settings(tmp_path: Path) -> None:
    write_workload(tmp_path / "wl", n_requests=20, repeat_share=0.4, seed=9)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("catalog: nowhere.json\ntenants: nowhere.json\ncache:\n  exact_enabled: false\n")
    inputs = load_replay_inputs(tmp_path / "wl")
    settings = replay_settings(inputs, cfg)
    assert settings.catalog == inputs.paths.catalog  # catalog and tenants always come from the workload
    decisions = run_replay(inputs, settings).decisions
    assert all(d.cache is None for d in decisions)


def test_replay_never_uses_a_configs_shared_cache(tmp_path: Path) -> None:
    """With cache.shared in the config, replay read the live instances' entries (their wall-clock expiry is
    fresh on the simulated clock) and wrote its answers into their stream; its caches are its own."""
    write_workload(tmp_path / "wl", n_requests=4, seed=3)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("catalog: x.json\ntenants: y.json\ncache:\n  semantic_enabled: true\n"
                   "  shared: {url: 'redis://127.0.0.1:1/0', tenants: [acme-us]}\n")
    inputs = load_replay_inputs(tmp_path / "wl")
    assert Settings.load(cfg).cache.shared is not None
    assert replay_settings(inputs, cfg).cache.shared is None


@pytest.mark.slow
def test_dev_replay_valid_and_deterministic() -> None:
    if not (SHARED / "dev" / "stream.jsonl.gz").is_file():
        pytest.skip("shared dev workload not present")
    inputs, first = _replay(SHARED)
    _check_valid(inputs, first)
    _, second = _replay(SHARED)
    assert _strip(first) == _strip(second)


def test_messages_the_gateway_would_refuse_still_get_a_decision(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A held-out workload may write messages other ways: one refused message stopped the whole replay and no
    decision was written. Mendable ones are mended (roles written otherwise, content as an object, parts of an
    unknown type); the rest get an error decision; every event gets its line."""
    wl = write_workload(tmp_path / "wl", n_requests=10, seed=11)
    odd = [
        [{"role": "User", "content": "What is 2 + 2?"}],
        [{"role": "function", "name": "lookup", "content": "context"}, {"role": "user", "content": "Summarise."}],
        [{"role": "user", "content": {"text": "content as an object"}}],
        [{"role": "user", "content": [{"type": "refusal", "refusal": "no"}, {"type": "output_text", "text": "hi"}]}],
        [{"role": "user", "content": []}],
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],  # not mendable: an error decision
    ]
    requests = [dict(r) for r in wl.requests]
    for r, messages in zip(requests, odd, strict=False):
        r["messages"] = messages
    write_jsonl(tmp_path / "wl" / "requests.jsonl.gz", requests)
    models = tmp_path / "wl" / "models.json"
    models.write_bytes(b"\xef\xbb\xbf" + models.read_bytes())  # a BOM, as some Windows tools write
    assert main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err  # said before the replay, not after it
    out = tmp_path / "new" / "d.jsonl"  # a missing folder is created
    assert main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(out)]) == 0
    decisions = read_decisions(out)
    assert [d.seq for d in decisions] == [e["seq"] for e in wl.stream]
    by_request = {d.request_id: d for d in decisions}
    assert all(by_request[r["id"]].final is not None for r in requests[:5])
    assert by_request[requests[5]["id"]].final is None and by_request[requests[5]["id"]].calls == []
    assert not list(out.parent.glob(".d.jsonl.partial*"))


def test_what_another_producer_of_the_format_may_write_still_gets_every_decision(tmp_path: Path) -> None:
    """Found in review (2026-11-28): each of these refused the whole workload, so replay wrote no decision at all.
    Numeric ids, a class in another case or left out, stream lines without ``seq``, an event naming a request the
    file lacks, an identical request line twice, a null answer and answers without token counts."""
    wl = write_workload(tmp_path / "wl", n_requests=12, seed=5)
    base_inputs, base = _replay(tmp_path / "wl")
    numeric = {r["id"]: 1000 + i for i, r in enumerate(wl.requests)}
    requests = [{**r, "id": numeric[r["id"]]} for r in wl.requests]
    requests[0]["data_class"] = requests[0]["data_class"].upper()
    requests.append(dict(requests[1]))  # the same line twice
    responses = [{k: v for k, v in {**r, "request_id": numeric[r["request_id"]]}.items()
                  if k not in ("input_tokens", "output_tokens")} for r in wl.responses]
    stream = [{"request_id": numeric[e["request_id"]], "t_ms": e["t_ms"]} for e in wl.stream]  # no seq
    stream.append({"request_id": 999_999, "t_ms": stream[-1]["t_ms"] + 1})  # a request the file lacks
    write_jsonl(tmp_path / "wl" / "requests.jsonl.gz", requests)
    write_jsonl(tmp_path / "wl" / "responses.jsonl.gz", responses)
    write_jsonl(tmp_path / "wl" / "stream.jsonl.gz", stream)
    write_jsonl(tmp_path / "wl" / "scores.jsonl.gz", [{**x, "request_id": numeric[x["request_id"]]} for x in wl.scores])
    write_jsonl(tmp_path / "wl" / "labels.jsonl.gz", [{**x, "id": numeric[x["id"]]} for x in wl.labels])
    assert main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(tmp_path / "d.jsonl")]) == 0
    written = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [d["seq"] for d in written] == list(range(len(stream)))  # every event, numbered in file order
    assert [d["request_id"] for d in written] == [e["request_id"] for e in stream]  # numbers, as written
    assert written[-1]["final"] is None and written[-1]["calls"] == []  # the unknown request: an error decision
    routes = [(d["final"], d["calls"]) for d in written[:-1]]
    assert routes == [(b.model_dump()["final"], b.model_dump()["calls"]) for b in base]  # same routing as before
    _check_valid(base_inputs, base)
    # the offline tools read that file too (the report crashed on the event whose request is missing)
    assert main(["report", "--workload", str(tmp_path / "wl"), "--decisions", str(tmp_path / "d.jsonl"),
                 "--json", str(tmp_path / "k.json"), "--no-baselines"]) == 0
    assert main(["weakness", "--decisions", str(tmp_path / "d.jsonl"), "--workload", str(tmp_path / "wl"),
                 "--min-n", "2", "--out", str(tmp_path / "weak")]) == 0


def test_a_missing_or_unknown_class_is_read_as_restricted() -> None:
    from sovrouter.workload import WorkloadRequest

    msgs = [{"role": "user", "content": "hi"}]
    read = [WorkloadRequest.model_validate({"id": "a", "tenant": "t", "messages": msgs, **extra}).data_class
            for extra in ({}, {"data_class": None}, {"data_class": "secret"}, {"data_class": " Internal "})]
    assert read == ["restricted", "restricted", "restricted", "internal"]


def test_one_odd_request_or_stream_line_does_not_stop_the_replay(tmp_path: Path) -> None:
    """A turn without a role or content, a null role, a request line without a tenant, and stream lines without
    (or with a negative) ``t_ms`` each aborted the whole replay (exit 2, no decision at all)."""
    wl = write_workload(tmp_path / "wl", n_requests=8, seed=12)
    requests = [dict(r) for r in wl.requests]
    requests[0]["messages"] = [{"content": "What is 2 + 2?"}]  # no role
    requests[1]["messages"] = [{"role": None, "content": "What is 3 + 3?"}]
    requests[2]["messages"] = [{"role": "user"}]  # no content
    broken = requests[3]["id"]
    requests[3] = {k: v for k, v in requests[3].items() if k != "tenant"}  # not servable: an error decision
    stream = [dict(e) for e in wl.stream]
    stream[1].pop("t_ms")
    stream[2]["t_ms"] = -5
    stream[3]["t_ms"] = "soon"  # not a time: the previous event's
    stream[4]["t_ms"] = str(stream[4]["t_ms"])  # a number written as text is read
    lost = {k: v for k, v in stream[5].items() if k != "request_id"}  # no request: no event to decide
    stream[5] = lost
    write_jsonl(tmp_path / "wl" / "requests.jsonl.gz", requests)
    write_jsonl(tmp_path / "wl" / "stream.jsonl.gz", stream)
    assert main(["replay", "--workload", str(tmp_path / "wl"), "--out", str(tmp_path / "d.jsonl")]) == 0
    decisions = read_decisions(tmp_path / "d.jsonl")
    assert [d.seq for d in decisions] == [e["seq"] for e in wl.stream if e["seq"] != lost["seq"]]
    by_request = {d.request_id: d for d in decisions}
    assert all(by_request[r["id"]].final is not None for r in requests[:2])
    assert by_request[broken].final is None and by_request[broken].calls == []


def test_an_empty_request_id_is_served_from_its_own_recorded_answers(tmp_path: Path) -> None:
    """The adapter looked answers up by ``external_id or request_id``: the id "" fell back to the replay's own
    "#<seq>" id, found no answer for any slot, called every deployment in turn and failed the event."""
    wl = write_workload(tmp_path / "wl", n_requests=6, seed=13)
    old = wl.requests[0]["id"]
    write_jsonl(tmp_path / "wl" / "requests.jsonl.gz", [{**r, "id": "" if r["id"] == old else r["id"]}
                                                       for r in wl.requests])
    write_jsonl(tmp_path / "wl" / "responses.jsonl.gz",
                [{**r, "request_id": "" if r["request_id"] == old else r["request_id"]} for r in wl.responses])
    write_jsonl(tmp_path / "wl" / "stream.jsonl.gz",
                [{**e, "request_id": "" if e["request_id"] == old else e["request_id"]} for e in wl.stream])
    _, decisions = _replay(tmp_path / "wl")
    mine = [d for d in decisions if d.request_id == ""]
    assert mine and all(d.final is not None for d in mine)
    first = next(d for d in mine if d.cache is None)
    assert len(first.calls) == len({(c.model, c.deployment) for c in first.calls}) <= 4
