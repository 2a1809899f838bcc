"""The server variant of the per-request switch: two llama.cpp servers for the same GGUF, one started with
prompt lookup (``prompt_lookup_server_args``). Slow: starts two real model servers."""

from __future__ import annotations

import httpx
import pytest

from sovrouter.adapters.openai_http import OpenAIHTTPAdapter
from sovrouter.contracts import Candidate, ModelCall
from sovrouter.intake import normalize_chat
from sovrouter.local_model import LlamaCppServer, find_smollm2_gguf
from sovrouter.speculative.switch import SpeculativeSwitchAdapter, prompt_lookup_server_args

pytestmark = pytest.mark.slow

LOCAL = Candidate(slot="local-small", deployment="edge")
CODE = "```python\ndef area(width, height):\n    return width * height\n\n\ndef double(value):\n" \
       "    return value * 2\n```"


async def test_switch_over_a_plain_and_a_prompt_lookup_server() -> None:
    path = find_smollm2_gguf()
    with LlamaCppServer(path, alias="local-small") as plain_srv, \
            LlamaCppServer(path, alias="local-small", extra_args=prompt_lookup_server_args(4)) as lookup_srv:
        assert "prompt-lookup-decoding" in lookup_srv.command()
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0)) as client:
            plain = OpenAIHTTPAdapter(LOCAL, [plain_srv.base_url], model="local-small", client=client)
            lookup = OpenAIHTTPAdapter(LOCAL, [lookup_srv.base_url], model="local-small", client=client)
            switch = SpeculativeSwitchAdapter(plain, lookup)
            for text in (f"Rename width to w and return the full code:\n{CODE}", "Why is the sea salty?"):
                body = {"messages": [{"role": "user", "content": text}], "max_tokens": 24, "temperature": 0}
                call = ModelCall(request=normalize_chat(body, tenant="t", request_id="r"), allowed=[LOCAL])
                result = await switch.generate(call)
                assert result.text and result.output_tokens > 0
                assert result.spec_acceptance is None  # the server reports no draft statistics
    assert (switch.used_lookup, switch.used_plain) == (1, 1)
