"""Bad input: the right status, an OpenAI-style body, and nothing of the key or the prompt echoed back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import ACME_KEY, Live

SECRET_PROMPT = "my passport is X1234567 please keep it secret"
WRONG_KEY = "sk-wrong-key-do-not-echo-9876"
AUTH = {"Authorization": f"Bearer {ACME_KEY}"}


def _post(live: Live, content: bytes | None = None, headers: dict[str, str] | None = None,
          **kw: Any) -> httpx.Response:
    h = {"Content-Type": "application/json", **AUTH, **(headers or {})}
    return httpx.post(live.url + "/v1/chat/completions", content=content, headers=h, **kw)


def _check(r: httpx.Response, status: int, type_: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    for leaked in (SECRET_PROMPT, "X1234567", WRONG_KEY, ACME_KEY, "Traceback"):
        assert leaked not in r.text
    return body["error"]  # type: ignore[no-any-return]


def _body(**kw: Any) -> bytes:
    import json

    return json.dumps({"model": "auto", "messages": [{"role": "user", "content": SECRET_PROMPT}], **kw}).encode()


def test_malformed_json(live: Live) -> None:
    _check(_post(live, b'{"model": "auto", "messages": [' + SECRET_PROMPT.encode()), 400, "invalid_request_error")


def test_body_not_an_object(live: Live) -> None:
    _check(_post(live, b'["a"]'), 400, "invalid_request_error")


def test_unknown_model(live: Live) -> None:
    err = _check(_post(live, _body(model="gpt-secret-model")), 404, "not_found_error")
    assert err["param"] == "model" and "gpt-secret-model" not in err["message"]


def test_deployment_not_available_to_tenant_is_unknown(live: Live) -> None:
    _check(_post(live, _body(model="sovereign-large/gov-onprem")), 404, "not_found_error")


def test_missing_key(live: Live) -> None:
    r = httpx.post(live.url + "/v1/chat/completions", content=_body(), headers={"Content-Type": "application/json"})
    _check(r, 401, "authentication_error")


@pytest.mark.parametrize("header", [f"Bearer {WRONG_KEY}", WRONG_KEY, "Basic abc", "Bearer"])
def test_wrong_or_malformed_key(live: Live, header: str) -> None:
    _check(_post(live, _body(), headers={"Authorization": header}), 401, "authentication_error")


def test_wrong_key_through_openai_client(live: Live) -> None:
    with pytest.raises(openai.AuthenticationError) as exc:
        live.client(WRONG_KEY).chat.completions.create(model="auto",
                                                       messages=[{"role": "user", "content": SECRET_PROMPT}])
    assert WRONG_KEY not in exc.value.response.text


def test_oversized_body_by_content_length(live: Live) -> None:
    big = _body(padding="x" * 10_000)
    _check(_post(live, big), 413, "invalid_request_error")


def test_oversized_chunked_body(live: Live) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 1000
        yield b'"}]}'

    r = httpx.post(live.url + "/v1/chat/completions", content=gen(), headers={**AUTH})
    assert "content-length" not in r.request.headers
    _check(r, 413, "invalid_request_error")


def test_bad_data_class(live: Live) -> None:
    err = _check(_post(live, _body(), headers={"X-Data-Class": "top-secret"}), 400, "invalid_request_error")
    assert err["param"] == "X-Data-Class"


@pytest.mark.parametrize("content", [
    [{"type": "hologram", "hologram": SECRET_PROMPT}],
    [{"text": SECRET_PROMPT}],
    [{"type": "text", "text": 5}],
    [],
])
def test_bad_content_part(live: Live, content: Any) -> None:
    import json

    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": content}]}).encode()
    _check(_post(live, body), 400, "invalid_request_error")


@pytest.mark.parametrize("body", [
    {"model": "auto"},
    {"model": "auto", "messages": []},
    {"model": "auto", "messages": [{"role": "wizard", "content": SECRET_PROMPT}]},
    {"model": "auto", "messages": [{"role": "user", "content": SECRET_PROMPT}], "temperature": 9},
    {"model": "auto", "messages": [{"role": "user", "content": SECRET_PROMPT}], "max_tokens": "many"},
    {"model": 42, "messages": [{"role": "user", "content": SECRET_PROMPT}]},
    {"model": "auto", "messages": "hello"},
])
def test_invalid_fields(live: Live, body: dict[str, Any]) -> None:
    import json

    _check(_post(live, json.dumps(body).encode()), 400, "invalid_request_error")


def test_image_without_an_image_deployment(live: Live) -> None:
    import json

    body = {"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": SECRET_PROMPT},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}
    err = _check(_post(live, json.dumps(body).encode()), 400, "invalid_request_error")
    assert err["code"] == "unsupported_modality"


def test_bad_input_through_the_openai_client(live: Live) -> None:
    with pytest.raises(openai.NotFoundError):
        live.client().chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        live.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}],
                                              extra_headers={"X-Data-Class": "nope"})


def test_unknown_path_and_method_are_openai_shaped(live: Live) -> None:
    assert _check(httpx.get(live.url + "/v1/nothing-here"), 404, "not_found_error")["code"] == "not_found"
    err = _check(httpx.get(live.url + "/v1/chat/completions", headers=AUTH), 405, "invalid_request_error")
    assert err["code"] == "method_not_allowed"


def test_models_needs_a_key(live: Live) -> None:
    _check(httpx.get(live.url + "/v1/models"), 401, "authentication_error")
    _check(httpx.get(live.url + "/v1/models/auto"), 401, "authentication_error")


def test_every_response_carries_a_request_id(live: Live) -> None:
    """The id was on chat's responses only: a failed models call or a wrong path gave the client nothing to quote."""
    responses = [httpx.get(live.url + "/v1/models"), httpx.get(live.url + "/v1/models", headers=AUTH),
                 httpx.get(live.url + "/v1/nothing-here"), httpx.get(live.url + "/v1/chat/completions"),
                 httpx.get(live.url + "/health"), _post(live, b"{nope")]
    ids = [r.headers.get("x-sovrouter-request-id") for r in responses]
    assert all(ids) and len(set(ids)) == len(ids)
    chat = _post(live, _body())
    assert chat.headers.get_list("x-sovrouter-request-id") == [live.records()[-1].request_id]  # chat's own, once


def test_models_can_be_retrieved_one_by_one(live: Live) -> None:
    listed = [m.id for m in live.client().models.list()]
    assert "auto" in listed and len(listed) > 1
    for model in listed:
        assert live.client().models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError):
        live.client().models.retrieve("no-such-model")


def test_one_record_per_authenticated_request_none_for_unauthenticated(live: Live) -> None:
    _post(live, b"{nope")
    _post(live, _body(model="nope"))
    _post(live, _body(), headers={"Authorization": f"Bearer {WRONG_KEY}"})
    _post(live, _body())
    records = live.records()
    assert [(r.status, r.error_code) for r in records] == [
        ("error", "invalid_request"), ("error", "not_found"), ("ok", None)]
    assert all(r.tenant == "acme-us" for r in records)
    assert len({r.request_id for r in records}) == 3


@pytest.mark.parametrize("raw", [
    # valid JSON whose string decodes to a lone surrogate: no UTF-8 for the cache key, the record or upstream
    b'{"model":"auto","messages":[{"role":"user","content":"my passport is X1234567 \\ud800"}]}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"stop":"\\udc00"}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"stream":true,"metadata":{"\\ud800":"x"}}',
    # a part type that is not a string (was a TypeError: 500, and no record)
    b'{"model":"auto","messages":[{"role":"user","content":[{"type":["text"],"text":"hi"}]}]}',
    b'{"model":"auto","messages":[{"role":"user","content":[{"type":{},"text":"hi"}]}]}',
    # nested past the JSON parser's depth in 4 KB (was a RecursionError: 500)
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"metadata":{"x":' + b"[" * 1900 + b"]" * 1900
    + b"}}",
    # strict types, as OpenAI's API: no silent coercion
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"stream":"yes"}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_tokens":true}',
    b'{"model":"auto","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":0}',
])
def test_input_that_used_to_be_a_500_is_a_400_with_its_record(live: Live, raw: bytes) -> None:
    before = len(live.records())
    _check(_post(live, raw), 400, "invalid_request_error")
    records = live.records()
    assert len(records) == before + 1  # one record per authenticated request, refused ones included
    assert records[-1].status == "error" and records[-1].error_code == "invalid_request"


def test_the_error_names_the_field_never_a_deeper_path() -> None:
    """A pydantic location below the field can hold client data (dict keys): only the field is named."""
    import json

    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": -3}
    err = _error_of(body)
    assert err.param == "max_completion_tokens"
    body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stop": {"jane.doe@example.com": 1}}
    err = _error_of(body)
    assert err.param == "stop" and "jane.doe" not in json.dumps(err.to_openai())


def _error_of(body: dict[str, Any]) -> Any:
    from sovrouter.errors import InvalidRequestError
    from sovrouter.intake import normalize_chat

    with pytest.raises(InvalidRequestError) as exc:
        normalize_chat(body, tenant="t", request_id="r")
    return exc.value


def test_an_unexpected_error_answer_carries_a_request_id_too() -> None:
    """Starlette answers an unhandled exception outside the request-id middleware: the 500 a client most needs
    to quote had no id."""
    from sovrouter.gateway.errors import internal_error_response

    response = internal_error_response(RuntimeError("boom"))
    assert response.status_code == 500 and response.headers.get("x-sovrouter-request-id")
    given = internal_error_response(RuntimeError("boom"), headers={"x-sovrouter-request-id": "r-1"})
    assert given.headers.getlist("x-sovrouter-request-id") == ["r-1"]


def test_a_list_limit_with_thousands_of_digits_is_a_400(live: Live) -> None:
    """``int()`` refuses more than 4,300 digits with a ValueError: the lists answered 500."""
    for path in ("/v1/files", "/v1/batches"):
        r = httpx.get(live.url + path, params={"limit": "1" * 5000}, headers=AUTH)
        assert _check(r, 400, "invalid_request_error")["param"] == "limit"
