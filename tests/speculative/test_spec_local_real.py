"""Real SmolLM2-135M (in-process llama.cpp): prompt lookup runs per request and reports an acceptance rate that
reaches the request record. Slow: loads the real model (twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import CacheSettings, Settings
from sovrouter.contracts import Candidate
from sovrouter.intake import normalize_chat
from sovrouter.local_model import find_smollm2_gguf
from sovrouter.speculative.local import LlamaLocalAdapter, load_llama
from sovrouter.speculative.switch import SpeculativeSwitchAdapter
from sovrouter.testing import MemorySink
from tests.conftest import needs_process_without_usearch

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "src" / "sovrouter" / "data" / "demo"
LOCAL = Candidate(slot="local-small", deployment="edge")
CODE = "def area(width, height):\n    return width * height\n\n\ndef perimeter(width, height):\n" \
       "    return 2 * (width + height)\n"


async def test_prompt_lookup_runs_and_reports_acceptance() -> None:
    if needs_process_without_usearch(f"{__file__}::test_prompt_lookup_runs_and_reports_acceptance"):
        return
    path = find_smollm2_gguf()
    plain_llm, _ = load_llama(path, prompt_lookup=False)
    lookup_llm, draft = load_llama(path, prompt_lookup=True)
    assert draft is not None
    switch = SpeculativeSwitchAdapter(LlamaLocalAdapter(LOCAL, plain_llm), LlamaLocalAdapter(LOCAL, lookup_llm, draft))
    catalog, tenants = Catalog.load(DATA / "models.json"), Tenants.load(DATA / "tenants.json")
    settings = Settings(catalog=DATA / "models.json", tenants=DATA / "tenants.json", detector="none",
                        cache=CacheSettings(exact_enabled=False))
    sink = MemorySink()
    pipeline = assemble(settings, catalog, tenants, {LOCAL: switch}, WallClock(), sink)

    def req(text: str, rid: str):  # type: ignore[no-untyped-def]
        return normalize_chat({"model": "local-small", "max_tokens": 40,
                               "messages": [{"role": "user", "content": text}]}, tenant="acme-us", request_id=rid)

    copy = await pipeline.handle(req(f"Rename width to w everywhere and return the full code:\n```python\n{CODE}```",
                                     "copy"))
    assert copy.result is not None and copy.result.text
    acceptance = copy.record.calls[0].spec_acceptance
    assert acceptance is not None and 0.0 <= acceptance <= 1.0
    assert draft.stats.drafted > 0 and draft.stats.proposals > 0
    assert acceptance == pytest.approx(draft.stats.accepted / draft.stats.drafted)
    assert copy.record.calls[0].spec_drafted_tokens == draft.stats.drafted

    plain = await pipeline.handle(req("Why is the sky blue?", "open"))
    assert plain.result is not None and plain.record.calls[0].spec_acceptance is None
    assert plain.record.calls[0].spec_drafted_tokens is None  # plain decoding: speculation off
    assert (switch.used_lookup, switch.used_plain) == (1, 1)
