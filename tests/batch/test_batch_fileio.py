from __future__ import annotations

import json

from sovrouter.batch.fileio import dumps_line, output_line, parse_line, parse_lines

GOOD = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
        "body": {"messages": [{"role": "user", "content": "hi"}]}}


def test_good_line_parses() -> None:
    p = parse_line(json.dumps(GOOD), 1)
    assert p.error is None and p.custom_id == "a" and p.body == GOOD["body"]


def test_per_line_errors_keep_every_line_and_never_echo_content() -> None:
    secret = "jane.doe@example.com"
    lines = [
        json.dumps(GOOD),
        "{not json " + secret,
        json.dumps({**GOOD, "custom_id": "b", "url": "/v1/embeddings"}),
        json.dumps({k: v for k, v in GOOD.items() if k != "custom_id"}),
        "",
        json.dumps({**GOOD, "custom_id": "c", "body": "not an object " + secret}),
        json.dumps(GOOD),  # duplicate custom_id
        json.dumps({**GOOD, "custom_id": "d", "method": "GET"}),
        json.dumps({**GOOD, "custom_id": "e"}),
    ]
    parsed = parse_lines(lines)
    assert [p.line_no for p in parsed] == [1, 2, 3, 4, 6, 7, 8, 9]  # blank line 5 is not a request
    codes = [p.error.code if p.error else None for p in parsed]
    assert codes == [None, "invalid_json", "invalid_batch_line", "invalid_batch_line", "invalid_batch_line",
                     "duplicate_custom_id", "invalid_batch_line", None]
    assert parsed[2].custom_id == "b"  # an invalid line keeps its custom_id when it has one
    assert parsed[1].custom_id is None
    for p in parsed:
        if p.error:
            assert secret not in p.error.message


def test_output_line_shape() -> None:
    ok = output_line("id1", "a", status_code=200, request_id="r", body={"x": 1})
    assert ok == {"id": "id1", "custom_id": "a", "response": {"status_code": 200, "request_id": "r", "body": {"x": 1}},
                  "error": None}
    parsed = parse_line("nope", 3)
    assert parsed.error is not None
    bad = output_line("id2", None, error=parsed.error, line_no=3)
    assert bad["response"] is None and bad["error"] == {"code": "invalid_json", "message": "line is not valid JSON",
                                                        "line": 3}
    assert json.loads(dumps_line(bad)) == bad and dumps_line(bad).endswith("\n")


def test_jsonl_lines_keep_unicode_line_separators_inside_strings() -> None:
    from sovrouter.batch.fileio import jsonl_lines

    one = json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                      "body": {"messages": [{"role": "user", "content": "first\u2028second\x85third"}]}},
                     ensure_ascii=False)
    text = one + "\n" + one.replace('"a"', '"b"') + "\n"
    assert len(text.splitlines()) > 2  # what str.splitlines would do to it
    parsed = parse_lines(jsonl_lines(text))
    assert [p.custom_id for p in parsed] == ["a", "b"] and all(p.error is None for p in parsed)
    assert parsed[0].body is not None and "\u2028" in parsed[0].body["messages"][0]["content"]


def test_lines_that_broke_a_whole_batch_are_line_errors() -> None:
    """Each of these ended the batch with an internal error (and lost every line not yet answered)."""
    deep = '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"x": ' + "[" * 5000 \
        + "]" * 5000 + "}}"
    surrogate_id = json.dumps({**GOOD, "custom_id": "x\ud800"})  # valid JSON: "x\\ud800"
    extra_key = json.dumps({**GOOD, "jane.doe@example.com": 1})
    parsed = parse_lines([deep, surrogate_id, extra_key])
    assert [p.error.code if p.error else None for p in parsed] == ["invalid_json", "invalid_batch_line",
                                                                    "invalid_batch_line"]
    assert parsed[1].custom_id is None  # not carried into an output line that could not be encoded
    assert "jane.doe" not in (parsed[2].error.message if parsed[2].error else "")
    for p in parsed:
        line = dumps_line(output_line("id", p.custom_id, error=p.error, line_no=p.line_no))
        line.encode("utf-8")


def test_an_output_line_with_a_lone_surrogate_is_still_valid_utf8_json() -> None:
    obj = output_line("id", "a", status_code=200, request_id="r", body={"text": "cut \ud83d"})
    line = dumps_line(obj)
    line.encode("utf-8")
    assert json.loads(line) == obj
    assert dumps_line({"text": "é"}) == '{"text":"é"}\n'  # readable UTF-8 otherwise
