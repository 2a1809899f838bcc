"""The llama.cpp-served SmolLM2-135M as a real upstream behind the gateway, called with the official openai
client (non-streaming and streaming). Slow: starts the real model server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from sovrouter.adapters.openai_http import new_client
from sovrouter.config import ApiKey, Settings, Upstream, hash_key
from sovrouter.gateway.app import create_app
from sovrouter.gateway.server import ServerThread
from sovrouter.gateway.wiring import build_live_pipeline
from sovrouter.local_model import LlamaCppServer, find_smollm2_gguf

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
KEY = "sk-test-llamacpp"
QUESTION: Any = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaCppServer]:
    with LlamaCppServer(find_smollm2_gguf(), alias="local-small") as server:
        yield server


@pytest.fixture
def gateway(llama: LlamaCppServer, tmp_path: Path) -> Iterator[str]:
    settings = Settings(
        catalog=DATA / "models.json",
        tenants=DATA / "tenants.json",
        api_keys=[ApiKey(tenant="clinic-ca", key_sha256=hash_key(KEY))],
        upstreams={"local-small/edge": Upstream(base_urls=[llama.base_url], model="local-small")},
        state_dir=tmp_path,
    )
    client = new_client()
    pipeline = build_live_pipeline(settings, client=client)
    with ServerThread(create_app(pipeline, settings, on_shutdown=[client.aclose])) as server:
        yield server.url + "/v1"


def test_non_streaming_through_the_gateway(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key=KEY, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="local-small", messages=QUESTION, max_tokens=16)
    out = raw.parse()
    assert raw.headers["x-sovrouter-route"] == "local-small/edge"
    assert raw.headers["x-sovrouter-cache"] == "miss"
    assert (out.choices[0].message.content or "").strip()
    assert out.usage is not None and 0 < out.usage.completion_tokens <= 16
    meta = (out.model_extra or {})["sovrouter"]
    assert meta["route"] == {"slot": "local-small", "deployment": "edge"}
    assert meta["cost_usd"] > 0
    # the same request again: the exact cache answers, the model is not called
    again = client.chat.completions.with_raw_response.create(
        model="local-small", messages=QUESTION, max_tokens=16)
    assert again.headers["x-sovrouter-cache"] == "exact"
    assert again.parse().choices[0].message.content == out.choices[0].message.content


def test_streaming_through_the_gateway(gateway: str) -> None:
    client = openai.OpenAI(base_url=gateway, api_key=KEY, max_retries=0, timeout=120)
    chunks = list(client.chat.completions.create(
        model="local-small", messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=24, stream=True, stream_options={"include_usage": True}))
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1  # really streamed, token by token from llama.cpp
    assert "".join(deltas).strip()
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] in ("stop", "length")
    meta = [(c.model_extra or {}).get("sovrouter") for c in chunks]
    route = next(m for m in meta if m)["route"]
    assert route == {"slot": "local-small", "deployment": "edge"}
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
