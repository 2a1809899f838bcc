"""Scoring model of prefix affinity: LRU eviction, FIFO queueing, TTFT, partial blocks, trace parsing."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from sovrouter.errors import InvalidRequestError
from sovrouter.reuse.prefix_sim import (
    LRUBlocks,
    ReplicaServer,
    SimConfig,
    TraceRequest,
    arrival_order,
    cached_tokens,
    load_assignment,
    load_trace,
    parse_trace,
    score,
    unbounded_hit_rate,
)

# Small numbers: 10-token blocks, 10 tok/s prefill, 1 tok/s decode.
CFG = SimConfig(capacity=3, prefill_rate=10.0, decode_rate=1.0, block_tokens=10)


def req(t_s: float, inp: int, out: int, ids: list[int]) -> TraceRequest:
    return TraceRequest(t_s * 1000.0, inp, out, tuple(ids))


def test_lru_evicts_least_recent_and_touch_refreshes() -> None:
    c = LRUBlocks(3)
    c.touch([1, 2])
    c.touch([1, 9])  # order now 2, 1, 9
    c.touch([5])  # evicts 2
    assert 2 not in c and len(c) == 3
    assert c.leading_run([1, 2]) == 1
    assert c.leading_run([9, 5, 1, 7]) == 3
    assert c.leading_run([7, 1]) == 0  # only the leading run counts


def test_fifo_queue_wait_hit_and_ttft() -> None:
    s = ReplicaServer(CFG)
    a = s.serve(req(0, 20, 2, [1, 2]))  # prefill 2 s + decode 2 s
    assert (a.start_s, a.cached_tokens, a.ttft_s, a.finish_s) == (0.0, 0, 2.0, 4.0)
    b = s.serve(req(1, 25, 1, [1, 2, 3]))  # waits until 4; 2 blocks cached; 5 tokens uncached
    assert b.start_s == 4.0 and b.hit_blocks == 2 and b.cached_tokens == 20
    assert b.ttft_s == pytest.approx(3.0 + 0.5) and b.finish_s == pytest.approx(5.5)
    c = s.serve(req(10, 25, 0, [1, 2, 3]))  # idle server, everything cached, partial block counts 5 tokens
    assert c.start_s == 10.0 and c.cached_tokens == 25 and c.ttft_s == 0.0
    assert s.busy_s == pytest.approx(4.0 + 1.5 + 0.0)


def test_cache_state_is_taken_when_the_request_starts_not_when_it_arrives() -> None:
    s = ReplicaServer(SimConfig(capacity=2, prefill_rate=10.0, decode_rate=1.0, block_tokens=10))
    s.serve(req(0, 20, 5, [1, 2]))
    s.serve(req(0.1, 20, 1, [3, 4]))  # queued; starts after the first and evicts 1, 2
    late = s.serve(req(0.2, 20, 1, [1, 2]))  # arrived while 1, 2 were cached, but starts after the eviction
    assert late.hit_blocks == 0


def test_cached_tokens_partial_last_block_and_bound_use_one_rule() -> None:
    assert cached_tokens(3, 25, 10) == 25
    assert cached_tokens(2, 25, 10) == 20
    trace = [req(0, 25, 1, [1, 2, 3]), req(1, 25, 1, [1, 2, 3]), req(2, 15, 1, [1, 8])]
    # second: 25 of 25 cached; third: 10 of 15 cached
    assert unbounded_hit_rate(trace, 10) == pytest.approx((25 + 10) / 65)


def test_score_reports_hit_ttft_and_skew() -> None:
    trace = [req(0, 20, 2, [1, 2]), req(0, 20, 2, [1, 2]), req(0, 20, 2, [5, 6])]
    same = score(trace, [0, 0, 1], 2, CFG)
    assert same.token_hit_rate == pytest.approx(20 / 60)
    assert same.mean_ttft_s == pytest.approx((2.0 + 4.0 + 2.0) / 3)
    assert same.skew == pytest.approx(6.0 / 5.0)  # busy 4 + 2 (cached second) vs 4: max 6 / mean 5
    split = score(trace, [0, 1, 1], 2, CFG)
    assert split.token_hit_rate == 0.0
    with pytest.raises(InvalidRequestError):
        score(trace, [0, 2, 1], 2, CFG)
    with pytest.raises(InvalidRequestError):
        score(trace, [0, 1], 2, CFG)


def test_parse_rejects_bad_lines_and_decreasing_time() -> None:
    ok = json.dumps({"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": [0]})
    assert len(parse_trace([ok, "", ok])) == 2
    with pytest.raises(InvalidRequestError, match="line 1"):
        parse_trace(["{not json"])
    for bad in ('[true]', '[""]', '[1.5]', '[[1]]', '{"a": 1}'):
        with pytest.raises(InvalidRequestError, match="hash_ids"):
            parse_trace([f'{{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": {bad}}}'])
    with pytest.raises(InvalidRequestError, match="lengths"):
        parse_trace(['{"timestamp": 0, "input_length": -5, "output_length": 1, "hash_ids": [0]}'])
    for huge in ('"input_length": 1e999, "output_length": 1', '"input_length": 5, "output_length": 1e999'):
        with pytest.raises(InvalidRequestError, match="line 1"):  # int(inf): was an OverflowError traceback
            parse_trace([f'{{"timestamp": 0, {huge}, "hash_ids": [0]}}'])
    assert parse_trace(['{"timestamp": 0, "input_length": 5, "output_length": 1, "hash_ids": ["\\ud800"]}'])
    for rate in ("prefill_rate", "decode_rate"):
        with pytest.raises(InvalidRequestError):  # NaN passed "<= 0" and broke every choice
            SimConfig(**{rate: float("nan")})


def test_string_and_integral_float_block_ids_are_read_without_colliding_with_integers() -> None:
    line = '{{"timestamp": 0, "input_length": 1024, "output_length": 1, "hash_ids": {}}}'
    a, b, c = parse_trace([line.format('["9f2c", "0a11"]'), line.format('["9f2c", "5"]'), line.format("[5, 2.0]")])
    assert a.hash_ids[0] == b.hash_ids[0] and a.hash_ids[1] != b.hash_ids[1]  # equal strings, equal blocks
    assert c.hash_ids == (5, 2) and b.hash_ids[1] != 5  # the string "5" is not the integer 5
    # the simulator treats them as blocks: the second request reuses the first block of the first
    assert score([a, b], [0, 0], 1, SimConfig(block_tokens=512)).token_hit_rate == pytest.approx(512 / 2048)


def test_out_of_order_lines_are_served_in_arrival_order() -> None:
    a, b = req(0, 20, 2, [1, 2]), req(1, 20, 2, [1, 2])
    assert arrival_order([b, a]) == [1, 0] and arrival_order([a, b]) == [0, 1]
    in_order = score([a, b], [0, 0], 1, CFG)
    swapped = score([b, a], [0, 0], 1, CFG)
    assert swapped.as_dict() == in_order.as_dict()
    assert unbounded_hit_rate([b, a], 10) == unbounded_hit_rate([a, b], 10) == pytest.approx(0.5)


def test_load_trace_gzip_and_plain_and_assignment(tmp_path: Path) -> None:
    lines = [json.dumps({"timestamp": i * 100, "input_length": 600, "output_length": 3, "hash_ids": [0, i + 1]})
             for i in range(3)]
    plain = tmp_path / "t.jsonl"
    plain.write_text("\n".join(lines) + "\n")
    gz = tmp_path / "t.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    assert load_trace(plain) == load_trace(gz)
    assert load_trace(gz)[2].hash_ids == (0, 3)
    a = tmp_path / "a.jsonl"
    a.write_text('{"i": 1, "replica": 0}\n{"i": 0, "replica": 1}\n{"i": 2, "replica": 1}\n')
    assert load_assignment(a, 3) == [1, 0, 1]
    a.write_text('{"i": 1, "replica": 0}\n')
    with pytest.raises(InvalidRequestError, match="misses"):
        load_assignment(a, 3)
    agz = tmp_path / "a.jsonl.gz"
    agz.write_bytes(gzip.compress(b'{"i": 0, "replica": 1}\n{"i": 1, "replica": 0}\n{"i": 2, "replica": 1}\n'))
    assert load_assignment(agz, 3) == [1, 0, 1]  # gzip by content, like the trace
    agz.write_bytes(agz.read_bytes()[:-9])  # truncated gzip
    with pytest.raises(InvalidRequestError, match="cannot read"):
        load_assignment(agz, 3)
    a.write_bytes(b'{"i": 0, "replica": "\xff"}\n')  # not UTF-8
    with pytest.raises(InvalidRequestError, match="cannot read"):
        load_assignment(a, 1)
    with pytest.raises(InvalidRequestError, match="not found"):
        load_trace(tmp_path / "missing.jsonl")
