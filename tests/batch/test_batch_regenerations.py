"""Batch lines feed the eval loop's scorers, never its regeneration signal (a batch file is not a user re-asking)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from batch_helpers import CHAT, make_pipeline

from sovrouter.batch.objects import CreateBatch
from sovrouter.batch.service import BatchService
from sovrouter.catalog import Catalog, Tenants
from sovrouter.evalloop.loop import EvalSettings, build_observability


def _line(cid: str, text: str, temperature: float) -> str:
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"temperature": temperature, "messages": [{"role": "user", "content": text}]}})


async def test_repeated_prompts_in_a_batch_are_not_regenerations(tmp_path: Path, catalog: Catalog,
                                                                 tenants: Tenants) -> None:
    pipeline, _ = make_pipeline(catalog, tenants)
    obs = build_observability(EvalSettings(), catalog)
    observed = obs.observe(pipeline)
    service = BatchService(tmp_path, observed, concurrency=1)
    await service.start()
    data = "\n".join(_line(f"r{i}", "Classify: great product", t) for i, t in enumerate((0.0, 0.7, 1.0)))
    f = service.upload("acme-us", "in.jsonl", "batch", data.encode())
    batch = service.create("acme-us", CreateBatch(input_file_id=f.id, **CHAT))
    for _ in range(1000):
        if service.get("acme-us", batch.id).status == "completed":
            break
        await asyncio.sleep(0.01)
    assert service.get("acme-us", batch.id).request_counts.completed == 3
    assert obs.signals.regenerations() == []
    assert observed.loop is not None and observed.loop.regenerations is not None  # live traffic still tracked
    await service.aclose()
