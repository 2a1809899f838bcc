"""The replay decision line (one per stream event), shared by the harness that writes it and the report that
reads it::

    {"seq", "request_id", "calls": [{"model", "deployment"}, ...], "final": {"model", "deployment"} | null,
     "cache": {"source_seq"} | null, "detected": {"pii_types": [...]}, "decision_ms"}
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sovrouter.contracts import Candidate
from sovrouter.errors import ConfigError
from sovrouter.fileio import atomic_text


class Route(BaseModel):
    """A slot (``model``) on one deployment, as the decision file spells it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    deployment: str

    @classmethod
    def of(cls, candidate: Candidate) -> Route:
        return cls(model=candidate.slot, deployment=candidate.deployment)


class CacheRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source_seq: int = Field(ge=0)


class Detected(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    pii_types: list[str] = Field(default_factory=list)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    seq: int = Field(ge=0)
    request_id: str | int = Field(description="the request's id as the workload wrote it (text, or a number)")
    calls: list[Route] = Field(default_factory=list)
    final: Route | None = None
    cache: CacheRef | None = None
    detected: Detected = Detected()
    decision_ms: float = Field(default=0.0, ge=0)

    @property
    def workload_id(self) -> str:
        """The request id as the workload loader keys it (text)."""
        return str(self.request_id)


def write_decisions(decisions: Iterable[Decision], path: str | Path) -> int:
    """Write every decision, or nothing: the file appears whole (``fileio.atomic_text``)."""
    n = 0
    with atomic_text(path) as fh:
        for d in decisions:
            fh.write(d.model_dump_json() + "\n")
            n += 1
    return n


def read_decisions(path: str | Path) -> list[Decision]:
    return list(iter_decisions(path))


def iter_decisions(path: str | Path) -> Iterator[Decision]:
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield Decision.model_validate_json(line)
                except ValidationError as exc:
                    err = exc.errors()[0]
                    where = ".".join(str(x) for x in err.get("loc", ()))
                    raise ConfigError(f"decisions line {lineno}: {where}: {err.get('msg', 'invalid')}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read decisions file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read decisions file {path}: not UTF-8 text (gzip?)") from None
