"""One tenant's burst never takes every other tenant's share of the gateway: at most ``max_in_flight_per_tenant``
chat requests of a tenant in flight on an instance, the next a 429 with ``retry-after`` (found in review,
2026-11-28: one tenant could hold the whole gateway's CPU with concurrent long prompts)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gateway_harness import ACME_KEY, EURO_KEY, live_gateway

from sovrouter.errors import TooManyRequestsError
from sovrouter.gateway.auth import TenantSlots

ASK: Any = [{"role": "user", "content": "hello"}]


async def test_slots_count_per_tenant_and_free_once() -> None:
    slots = TenantSlots(2)
    first, second = await slots.take("a"), await slots.take("a")
    with pytest.raises(TooManyRequestsError):
        await slots.take("a")
    other = await slots.take("b")  # another tenant is not affected
    first()
    first()  # a second release of the same slot frees nothing more
    assert await slots.in_flight("a") == 1
    third = await slots.take("a")
    for release in (second, third, other):
        release()
    assert await slots.in_flight("a") == await slots.in_flight("b") == 0
    unlimited = TenantSlots(None)
    assert all([await unlimited.take("a") for _ in range(1000)])


def test_a_tenant_past_its_limit_gets_a_429_and_others_are_served(tmp_path: Path) -> None:
    with live_gateway(tmp_path, max_in_flight_per_tenant=1) as live:
        live.primary.first_token_delay_s = 1.0  # acme's first request holds its one slot for a second
        results: dict[str, Any] = {}

        def slow() -> None:
            results["slow"] = live.client().chat.completions.create(model="auto", messages=ASK)

        worker = threading.Thread(target=slow)
        worker.start()
        for _ in range(200):  # until the slow request has reached the upstream
            if live.primary.calls:
                break
            threading.Event().wait(0.01)
        refused = httpx.post(live.url + "/v1/chat/completions", headers={"authorization": f"Bearer {ACME_KEY}"},
                             json={"model": "auto", "messages": ASK}, timeout=10)
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        with pytest.raises(openai.RateLimitError):  # the official client's class for it
            live.client().chat.completions.create(model="auto", messages=ASK)
        other = live.client(EURO_KEY).chat.completions.create(model="auto", messages=ASK)
        assert other.choices[0].message.content
        worker.join(10)
        assert results["slow"].choices[0].message.content
        live.primary.first_token_delay_s = 0.0
        again = live.client().chat.completions.create(model="auto", messages=ASK)  # the slot was given back
        assert again.choices[0].message.content
        stream = live.client().chat.completions.create(model="auto", messages=ASK, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        after = live.client().chat.completions.create(model="auto", messages=ASK)  # and the stream's too
        assert after.choices[0].message.content
        codes = [r.error_code for r in live.records() if r.status == "error"]
        assert codes.count("rate_limit_exceeded") == 2  # each refusal still has its one record
