"""Configuration: one YAML (or TOML) file, validated by pydantic. Paths are relative to the file's folder."""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from sovrouter.errors import ConfigError


class ApiKey(BaseModel):
    """An API key, stored hashed (sha256 hex); the tenant it authenticates."""

    model_config = ConfigDict(extra="forbid")
    tenant: str
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = ""


class OperatorKey(BaseModel):
    """A key for the operators' pages (``/metrics``, ``/dashboard``), stored hashed (sha256 hex)."""

    model_config = ConfigDict(extra="forbid")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    label: str = ""


class ReplicaAffinity(BaseModel):
    """What the prefix/KV-affinity replica chooser assumes of each replica (docs/prefix-affinity.md).

    The defaults are the scoring model of issue 5; set them to the serving engine's figures (vLLM prints its
    KV cache size in tokens at start-up)."""

    model_config = ConfigDict(extra="forbid")
    kv_cache_tokens: int = Field(default=4096 * 512, ge=512, description="KV cache of one replica, in tokens")
    prefill_tokens_per_s: float = Field(default=10_000.0, gt=0, allow_inf_nan=False)
    decode_tokens_per_s: float = Field(default=1_000.0, gt=0, allow_inf_nan=False)
    compute_price: float = Field(default=10.0, ge=0, le=1e6,
                                 description="seconds of TTFT one replica-second of prefill is worth")
    tail: float = Field(default=0.3, ge=0, le=1e6, description="weight of the long-wait penalty (0 = off)")
    learn_prefill_rate: bool = Field(default=True, description="learn each deployment's prefill speed from "
                                     "completions (the configured rate is the prior)")
    instance_band_s: float = Field(default=0.1, ge=0, le=60, allow_inf_nan=False,
                                   description="with affinity_events: gateway instances spread new work over "
                                   "the replicas within this many seconds of the best (0 = off)")


class EngineLoad(BaseModel):
    """Read the requests each replica's engine holds (running and waiting) from its Prometheus metrics (vLLM;
    SGLang with ``--enable-metrics``; llama.cpp's server with ``--metrics``), so a speculative deployment's
    ``max_batch`` is compared with the engines' batch, and prefix affinity weighs each replica's whole load, not
    only this gateway's calls (``adapters/engine_load.py``)."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(default=None, pattern=r"^/",
                             description="metrics path on the replica's host (default: the base URL's path "
                             "without a trailing /v1, then /metrics)")
    interval_s: float = Field(default=0.25, ge=0.02, le=60, allow_inf_nan=False)
    timeout_s: float = Field(default=0.5, gt=0, le=10, allow_inf_nan=False)


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"  # a variable's name: a key pasted here by mistake is refused unread


class Upstream(BaseModel):
    """Where a deployment's OpenAI-compatible server is (one or more replicas), and how a replica is chosen."""

    model_config = ConfigDict(extra="forbid")
    base_urls: list[str] = Field(min_length=1)
    model: str = "default"
    api_key_env: str | None = Field(default=None, pattern=_ENV_NAME)

    replica_choice: Literal["prefix-affinity", "least-outstanding"] = "prefix-affinity"
    """With several replicas: by expected cached prefix and queue (default), or fewest calls in flight."""
    affinity: ReplicaAffinity = ReplicaAffinity()
    engine_load: EngineLoad | None = None
    """Poll the replicas' own count of requests held (off by default)."""

    @field_validator("base_urls")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        """http(s), a host and a port from 1 to 65535, checked at start-up (a port of 99999 made every request a
        500)."""
        for url in urls:
            parsed = urlsplit(url)
            try:
                port = parsed.port  # a ValueError for a port out of range or not a number
            except ValueError:
                port = 0
            if parsed.scheme not in ("http", "https") or not parsed.hostname or port == 0:
                raise ValueError("each base URL needs http:// or https://, a host and a port from 1 to 65535")
        return urls


class BreakerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    consecutive_failures: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0, le=3600, allow_inf_nan=False)
    window: int = Field(default=50, ge=5)
    eject_error_rate: float = Field(default=0.5, gt=0, le=1)


class ReliabilitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Bounded and finite: an infinite backoff (the sleep runs outside the timeout) hung every retried request.
    timeout_s: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)
    first_token_timeout_s: float = Field(default=20.0, gt=0, le=3600, allow_inf_nan=False)
    retries: int = Field(default=1, ge=0, le=5)
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    retry_budget_window_s: float = Field(default=10.0, gt=0, le=3600, allow_inf_nan=False)
    retry_budget_min_retries: int = Field(default=3, ge=0, description="retries always allowed per window")
    retry_backoff_s: float = Field(default=0.02, ge=0, le=10, allow_inf_nan=False,
                                   description="base of the jittered exponential backoff")
    replica_consecutive_failures: int = Field(default=3, ge=1, description="failed calls in a row that eject a replica")
    replica_cooldown_s: float = Field(default=10.0, gt=0, allow_inf_nan=False,
                                      description="how long an ejected replica is left out")
    breaker: BreakerSettings = BreakerSettings()


class RedisConnection(BaseModel):
    """Where a shared store lives: a Redis URL without credentials, the password's environment variable, the key
    prefix, and the deadline of each operation (past it the feature is skipped: fail open)."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^(redis|rediss|unix)://[^@]*$",
                     description="redis://host:port/db; no credentials in it (a password goes in password_env)")
    password_env: str | None = Field(default=None, pattern=_ENV_NAME,
                                     description="environment variable holding the password")
    key_prefix: str = Field(default="sovrouter", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    op_timeout_s: float = Field(default=0.5, gt=0, le=60, allow_inf_nan=False)


class SharedCacheSettings(RedisConnection):
    """An exact cache in Redis shared by every gateway instance, and the semantic cache's entries broadcast to
    all of them (docs/gateway.md, "Several gateway instances").

    Only the listed tenants' requests with no personal data and a class at most ``max_class`` are shared; the
    others stay in each instance's local caches."""

    tenants: list[str] = Field(min_length=1, description="tenants whose policy allows the store's location")
    max_class: Literal["public", "internal", "confidential", "restricted"] = "internal"
    lock_ttl_s: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False,
                              description="a dead leader's single-flight lock lapses after this")
    wait_s: float = Field(default=30.0, ge=0, le=3600, allow_inf_nan=False,
                          description="how long a request waits for another instance's identical call")
    share_semantic: bool = Field(default=True, description="with semantic_enabled, the same requests' semantic "
                                 "entries reach every instance (cache/semantic_share.py)")


class AffinityEventsSettings(RedisConnection):
    """Share the prefix-affinity model between gateway instances through Redis Streams (docs/prefix-affinity.md,
    "Several gateway instances")."""


class SharedInFlightSettings(RedisConnection):
    """Several gateway instances: ``max_in_flight_per_tenant`` counted across all of them, one lease per request in
    flight in Redis (``gateway/shared_slots.py``; docs/gateway.md, "Several gateway instances"). Redis down or
    slow (``op_timeout_s``): each instance falls back to its own count of the same limit (fail open)."""

    lease_ttl_s: float = Field(default=30.0, ge=1, le=3600, allow_inf_nan=False,
                               description="a lease left by an instance that died stops counting after this; "
                                           "the leases of requests still running are refreshed every third of it")


class ArtifactSettings(BaseModel):
    """Models retrained on your own data, in place of the ones shipped in the package (paths relative to the
    configuration file; unset: the shipped one). Until 2026-11-28 ``serve`` and ``replay`` always loaded the shipped
    artifacts, so a retrained model could only be used by writing it over the installed package."""

    model_config = ConfigDict(extra="forbid")
    router: Path | None = Field(default=None, description="the learned router: the folder `sovrouter train --out "
                                                          "DIR` wrote (router.joblib, thresholds.json)")
    answer_shape: Path | None = Field(default=None, description="the answer-shape model of latency-aware "
                                                                "deployment choice: `sovrouter train-answer-shape "
                                                                "--out FILE`")
    semantic_verifier: Path | None = Field(default=None, description="the semantic cache's pair verifier: "
                                                                     "DIR/verifier.json of `sovrouter train-cache "
                                                                     "--out DIR`")


class CacheSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exact_enabled: bool = True
    ttl_s: float = Field(default=3600.0, ge=0.001, le=365 * 86_400, allow_inf_nan=False,
                         description="how long an answer is kept and may be served (1 ms to a year: Redis keeps "
                                     "whole milliseconds)")
    semantic_enabled: bool = False
    exact_max_entries: int | None = Field(
        default=500_000, ge=1, description="rows of this instance's SQLite cache; the oldest go first (null: no bound)")
    semantic_max_entries: int | None = Field(
        default=100_000, ge=1, description="entries of the in-memory semantic index, all partitions together")
    semantic_persist: bool = Field(default=True, description="keep semantic entries across restarts "
                                   "(state_dir/semantic.sqlite, beside the exact cache's cache.sqlite)")
    purge_every_s: float = Field(default=60.0, gt=0, le=86_400, allow_inf_nan=False,
                                 description="expired entries are deleted at most this far apart")
    shared: SharedCacheSettings | None = None


class PostgresConnection(BaseModel):
    """Where a shared PostgreSQL database is: a URL without a password, and the password's environment variable."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^postgresql(\+psycopg)?://([^:@/]+@)?[^@]*$",
                     description="postgresql+psycopg://user@host:port/db; no password in it (use password_env)")
    password_env: str | None = Field(default=None, pattern=_ENV_NAME,
                                     description="environment variable holding the password")


class BatchStoreSettings(PostgresConnection):
    """A database shared by every gateway instance for files, batches and their results (PostgreSQL), so that
    any instance answers for any batch and takes over one whose instance stopped.

    Batch files hold prompts: only the listed tenants may keep them there (the operator states that the
    database's location meets each one's written policy, as for ``cache.shared``); the others' uploads and
    batches are refused (403), never stored."""

    tenants: list[str] = Field(min_length=1, description="tenants whose policy allows the database's location")

    lease_s: float = Field(default=30.0, ge=1, le=3600, allow_inf_nan=False,
                           description="a stopped instance's batches go to another instance after this")
    poll_s: float = Field(default=2.0, gt=0, le=600, allow_inf_nan=False,
                          description="how often an idle instance looks for batches created or left elsewhere")
    key_grace_s: float = Field(default=300.0, ge=0, le=86_400, allow_inf_nan=False,
                               description="a batch younger than this whose key this instance does not know is "
                                           "left for an instance that does (a key just added may not have reached "
                                           "every instance's api_keys_file yet), then failed as revoked")


class SharedRecordsSettings(PostgresConnection):
    """Several gateway instances: every instance's records and quality signals copied to one PostgreSQL database
    (each still writes its own SQLite files first), so feedback and the dashboard see all traffic
    (docs/gateway.md)."""

    ship_every_s: float = Field(default=1.0, gt=0, le=3600, allow_inf_nan=False,
                                description="how often new records are copied to the shared database")


class BatchSettings(BaseModel):
    """``/v1/files`` + ``/v1/batches`` (docs/batching-and-speculation.md)."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    concurrency: int = Field(default=4, ge=1, le=256, description="lines of one batch in flight")
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    retention_days: float | None = Field(default=30.0, gt=0, allow_inf_nan=False,
                                         description="closed batches and their files are deleted after this "
                                                     "(null: kept until deleted by hand)")
    store: BatchStoreSettings | None = Field(
        default=None, description="several gateway instances: one shared PostgreSQL store (default: SQLite in "
                                  "state_dir/batches, this instance only)")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    catalog: Path
    tenants: Path
    api_keys: list[ApiKey] = Field(default_factory=list)

    @field_validator("api_keys")
    @classmethod
    def _one_tenant_per_key(cls, keys: list[ApiKey]) -> list[ApiKey]:
        """A digest listed twice authenticated as whichever came first: refused (its tenants are not named)."""
        if len({k.key_sha256 for k in keys}) != len(keys):
            raise ValueError("the same key is listed more than once")
        return keys
    api_keys_file: Path | None = Field(
        default=None, description="more API keys in a file of their own (YAML or JSON, entries as in api_keys; "
                                  "relative to this file), read again when it changes: keys are added and revoked "
                                  "without a restart (`sovrouter keys new/revoke` edit it; docs/gateway.md, "
                                  "\"Authentication\")")
    api_keys_reload_s: float = Field(default=5.0, gt=0, le=3600, allow_inf_nan=False,
                                     description="how often, at most, api_keys_file is checked for a change")
    operator_keys: list[OperatorKey] = Field(
        default_factory=list, description="when set, /metrics and /dashboard need one of them (Bearer): they show "
                                          "every tenant's request ids, routes and costs (default: open; keep them "
                                          "on the operators' network)")
    upstreams: dict[str, Upstream] = Field(default_factory=dict, description="'slot/deployment' -> upstream")
    state_dir: Path = Path("var")
    router: Literal["baseline", "learned"] = "learned"
    recalibration: Path | None = Field(
        default=None, description="the learned router's verifier probabilities go through this map "
                                  "(`sovrouter recalibrate --out`; relative to this file): docs/eval.md, section 5")
    deployment_choice: Literal["latency-aware", "cheapest"] = Field(
        default="latency-aware",
        description="within a chosen slot: the cheapest deployment expected to meet the tenant's latency budget "
                    "(speculative decoding counted), or simply the cheapest (docs/routing.md)")
    policy: Literal["availability", "cedar"] = "cedar"  # sovereignty on (docs/sovereignty.md)
    policy_rules: list[Path] | None = Field(
        default=None, description="Cedar files with your tenants' rules (relative to this file), in place of the "
                                  "shipped rules of the workload and example tenants; the shipped base rules and "
                                  "schema still apply (docs/sovereignty.md, \"Your own tenants\")")
    artifacts: ArtifactSettings = ArtifactSettings()
    detector: Literal["none", "pii"] = "pii"
    detector_timeout_ms: float = Field(
        default=1000.0, gt=0, description="detection past this deadline fails closed; replay lifts it (determinism)"
    )
    policy_timeout_ms: float = Field(
        default=1000.0, gt=0, description="policy evaluation past this deadline refuses (fails closed); replay lifts "
                                          "it (determinism)")
    cache: CacheSettings = CacheSettings()
    affinity_events: AffinityEventsSettings | None = Field(
        default=None, description="several gateway instances: share the replica choosers' models through Redis")
    reliability: ReliabilitySettings = ReliabilitySettings()
    batches: BatchSettings = BatchSettings()
    records: SharedRecordsSettings | None = Field(
        default=None, description="several gateway instances: copy the records to one shared database")
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    max_in_flight_per_tenant: int | None = Field(
        default=64, ge=1, description="chat requests one tenant may have in flight on an instance (with "
                                      "shared_in_flight: on every instance together); the next is a 429 with "
                                      "retry-after (null: no limit)")
    shared_in_flight: SharedInFlightSettings | None = Field(
        default=None, description="several gateway instances: count max_in_flight_per_tenant across all of them in "
                                  "Redis (default: each instance counts its own)")

    @model_validator(mode="after")
    def _shared_limit(self) -> Settings:
        if self.shared_in_flight is not None and self.max_in_flight_per_tenant is None:
            raise ValueError("shared_in_flight needs max_in_flight_per_tenant (there is no limit to share)")
        if self.policy_rules is not None and self.policy != "cedar":  # rules that would silently not apply
            raise ValueError("policy_rules needs policy: cedar (the availability policy reads no rules)")
        return self

    @classmethod
    def load(cls, path: str | Path) -> Settings:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
            raw = tomllib.loads(text) if p.suffix == ".toml" else yaml.load(text, Loader=_UniqueKeyLoader)
            settings = cls.model_validate(raw)
        except ValidationError as exc:  # field and reason only: values (a URL's password, a key) are not echoed
            problems = "; ".join(f"{error_place(e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid configuration {p}: {problems}") from None
        except _DuplicateKeyError as exc:  # the key is the file's own structure, not a value
            raise ConfigError(f"invalid configuration {p}: {exc}") from None
        except yaml.YAMLError as exc:  # where, never the offending text (it may be a secret pasted in)
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(f"invalid configuration {p}: not valid YAML{where}") from None
        except (OSError, ValueError) as exc:
            raise ConfigError(f"invalid configuration {p}: {exc}") from exc
        base = p.parent

        def here(path: Path | None) -> Path | None:
            return None if path is None else (base / path).resolve()

        arts = settings.artifacts
        return settings.model_copy(
            update={
                "catalog": (base / settings.catalog).resolve(),
                "tenants": (base / settings.tenants).resolve(),
                "state_dir": (base / settings.state_dir).resolve(),
                "recalibration": here(settings.recalibration),
                # made absolute, its links not followed: a Secret volume's keys.yaml -> ..data/keys.yaml is
                # swapped by relinking ..data, and the file it resolved to at start-up is deleted (found in review)
                "api_keys_file": (None if settings.api_keys_file is None
                                  else Path(os.path.abspath(base / settings.api_keys_file))),
                "policy_rules": None if settings.policy_rules is None else [(base / r).resolve()
                                                                            for r in settings.policy_rules],
                "artifacts": arts.model_copy(update={"router": here(arts.router),
                                                     "answer_shape": here(arts.answer_shape),
                                                     "semantic_verifier": here(arts.semantic_verifier)}),
            }
        )


_KEY_FIELDS: dict[str, frozenset[str]] = {"api_keys": frozenset(ApiKey.model_fields),
                                           "operator_keys": frozenset(OperatorKey.model_fields)}


_PLAIN_WORD = re.compile(r"[A-Za-z_]{1,40}")  # a misspelt field name (a key or a digest has digits or dashes)


def error_place(loc: tuple[int | str, ...]) -> str:
    """Where a validation error is, for a message: the path of field names and indexes, except that inside a key
    entry (``api_keys``, ``operator_keys``) a name that is neither one of the entry's fields nor a plain word shows
    as ``(a field)``: ``- sk-live-...: acme-us``, a key mapped to its tenant, put the key into the message (found
    in review). ``api_keys_file`` reads its entries through this too (:mod:`sovrouter.gateway.keyfile`)."""
    shown: list[str] = []
    fields = _KEY_FIELDS.get(str(loc[0])) if loc else None
    for i, part in enumerate(loc):
        if (fields is not None and i >= 2 and isinstance(part, str) and part not in fields
                and not _PLAIN_WORD.fullmatch(part)):
            shown.append("(a field)")
        else:
            shown.append(str(part))
    return ".".join(shown) or "(root)"


class _DuplicateKeyError(yaml.YAMLError):  # type: ignore[misc]
    pass


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]
    """YAML's safe loader, refusing a key given twice in one mapping. PyYAML keeps the last one silently: a file
    with ``policy: cedar`` near the top and ``policy: availability`` further down ran without the sovereignty
    engine, with no word (found in review, 2026-11-28). The TOML reader already refuses duplicates."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" is merged by the base loader; a key given beside it overrides it
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base loader reports it
                break
            if duplicate:
                mark = key_node.start_mark
                where = f"{key!r}" if isinstance(key, str) and len(key) <= 64 else "a key"
                raise _DuplicateKeyError(f"duplicate key {where} at line {mark.line + 1}, column {mark.column + 1}")
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def env_secret(variable: str | None, needed_by: str) -> str | None:
    """The secret held in environment ``variable`` (None when no variable is configured); a configured but unset
    or empty variable is a start-up :class:`ConfigError` naming the variable, never a value."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"{needed_by} needs the environment variable {variable}")
    return value
