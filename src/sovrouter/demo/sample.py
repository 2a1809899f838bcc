"""The workload sample the demo ships (``sovrouter/data/demo``, see its ``PROVENANCE.md``).

The folder is a complete flat workload in the ``rep-v1`` format (``models.json``, ``tenants.json``,
``requests.jsonl``, ``responses.jsonl``, ``stream.jsonl``, plus ``scores.jsonl`` and ``labels.jsonl`` for offline
evaluation), so ``sovrouter replay --workload`` reads it too. It is read with :mod:`sovrouter.workload`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sovrouter.adapters.replay import RecordedResponse
from sovrouter.catalog import Catalog, Tenants
from sovrouter.errors import ConfigError
from sovrouter.workload import StreamEvent, WorkloadRequest, load_replay_inputs


def demo_data_dir() -> Path:
    """The folder of the shipped sample (inside the installed package)."""
    return Path(__file__).resolve().parents[1] / "data" / "demo"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_key(messages: Iterable[Mapping[str, Any]]) -> str:
    """Identity of a prompt as an upstream sees it: sha256 of its user messages' text, in order."""
    text = "\n".join(_text(m.get("content")) for m in messages if m.get("role") == "user")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DemoSample:
    catalog: Catalog
    tenants: Tenants
    requests: dict[str, WorkloadRequest]
    responses: dict[tuple[str, str], RecordedResponse]  # (request id, slot) -> recorded response
    stream: list[StreamEvent]

    def by_prompt(self) -> dict[str, str]:
        """``prompt_key -> request id`` (requests with the same text share their recorded responses)."""
        return {prompt_key(r.chat_body()["messages"]): rid for rid, r in sorted(self.requests.items())}


def load_sample(directory: str | Path | None = None) -> DemoSample:
    folder = Path(directory) if directory is not None else demo_data_dir()
    inputs = load_replay_inputs(folder)
    if not inputs.stream:
        raise ConfigError(f"the demo sample in {folder} has an empty stream")
    return DemoSample(catalog=inputs.catalog, tenants=inputs.tenants, requests=inputs.requests,
                      responses=inputs.responses, stream=inputs.stream)
