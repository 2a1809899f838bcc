"""The live pipeline: the gateway's request path wired to real upstreams, from settings.

One :class:`OpenAIHTTPAdapter` per entry of ``settings.upstreams`` (``'slot/deployment' -> Upstream``), plus
any catalog deployment that names its own ``base_url``; SQLite record store and exact cache under
``settings.state_dir``; wall clock; each deployment's replica chooser as its upstream configures it
(prefix/KV affinity by default when it has several replicas, with replica outlier ejection). The rest
(policy, router, reliability stack) comes from ``build.assemble``, the same assembly the replay harness uses.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
from sqlalchemy.exc import SQLAlchemyError

from sovrouter.adapters.engine_load import EngineLoadPoller, EngineProbe, EngineReports, metrics_url
from sovrouter.adapters.openai_http import OpenAIHTTPAdapter, new_client
from sovrouter.adapters.replicas import HealthAwareChooser, LeastOutstandingChooser, ReplicaChooser
from sovrouter.batch.service import BatchService
from sovrouter.batch.store import BatchStore, store_url
from sovrouter.build import assemble
from sovrouter.catalog import Catalog, Tenants
from sovrouter.clock import WallClock
from sovrouter.config import ReliabilitySettings, Settings, Upstream, env_secret
from sovrouter.contracts import Candidate
from sovrouter.errors import ConfigError
from sovrouter.gateway.auth import KeyRing
from sovrouter.pipeline import Pipeline
from sovrouter.protocols import Clock, ModelAdapter
from sovrouter.reuse.affinity_events import AffinityEventBus, RedisAffinityBus
from sovrouter.reuse.prefix_chooser import PrefixAffinityChooser, settings_from_config
from sovrouter.store.records import SQLiteRecordStore
from sovrouter.store.shared_records import SharedRecordStore
from sovrouter.store.sql import database_url

ChooserFactory = Callable[[Candidate, Upstream], ReplicaChooser]


def upstreams_of(settings: Settings, catalog: Catalog) -> dict[Candidate, Upstream]:
    """Every wired deployment and where it is served; unknown ``slot/deployment`` keys are a config error."""
    out: dict[Candidate, Upstream] = {}
    for slot, dep in catalog.pairs():
        if dep.base_url:
            out[Candidate(slot=slot.id, deployment=dep.id)] = Upstream(base_urls=[dep.base_url],
                                                                         model=dep.upstream_model or "default")
    for key, upstream in settings.upstreams.items():
        slot_id, _, dep_id = key.partition("/")
        try:
            catalog.deployment(slot_id, dep_id)
        except KeyError:
            raise ConfigError(f"upstreams: '{key}' is not a slot/deployment of the catalog") from None
        out[Candidate(slot=slot_id, deployment=dep_id)] = upstream
    return out


def configured_chooser(upstream: Upstream, clock: Clock, reliability: ReliabilitySettings | None = None,
                       events: AffinityEventBus | None = None, stream: str = "default",
                       engine: EngineReports | None = None) -> ReplicaChooser:
    """The replica chooser an upstream's configuration asks for: with several replicas, prefix/KV affinity (the
    default; sharing its model on ``events``' ``stream`` when given, and reading the engines' reports on
    ``engine``'s when the upstream polls them) or fewest calls in flight, inside replica outlier ejection; with
    one, nothing to choose."""
    if len(upstream.base_urls) <= 1:
        return LeastOutstandingChooser()
    rel = reliability or ReliabilitySettings()
    reports = engine if upstream.engine_load is not None else None
    inner: ReplicaChooser = (PrefixAffinityChooser(clock, settings_from_config(upstream.affinity), events=events,
                                                   stream=stream, engine=reports)
                             if upstream.replica_choice == "prefix-affinity" else LeastOutstandingChooser())
    return HealthAwareChooser(inner, clock, consecutive_failures=rel.replica_consecutive_failures,
                              cooldown_s=rel.replica_cooldown_s)


def _api_key(upstream: Upstream, key: str) -> str | None:
    return env_secret(upstream.api_key_env, f"upstreams: '{key}'")


def make_affinity_bus(settings: Settings) -> RedisAffinityBus | None:
    """The Redis bus that shares the replica choosers' models between gateway instances, if configured (its
    owner closes it: ``await bus.aclose()``)."""
    cfg = settings.affinity_events
    if cfg is None:
        return None
    return RedisAffinityBus.from_url(cfg.url, password=env_secret(cfg.password_env, "affinity_events"),
                                     op_timeout_s=cfg.op_timeout_s, prefix=cfg.key_prefix)


def _reads_replica_load(upstream: Upstream) -> bool:
    return len(upstream.base_urls) > 1 and upstream.replica_choice == "prefix-affinity"


def make_load_poller(settings: Settings, pipeline: Pipeline, client: httpx.AsyncClient,
                     reports: EngineReports | None = None) -> EngineLoadPoller | None:
    """The poller of the engines' held requests for every upstream with ``engine_load`` set (``None`` when
    nothing is configured): each deployment's sum into the board the latency-aware deployment chooser reads, each
    replica's count on ``reports``, which the prefix-affinity choosers read (pass the object given to
    :func:`build_live_pipeline`). An upstream whose reports nothing reads is a configuration error. Start it in
    the serving loop; its owner closes it."""
    wanted = {c: u for c, u in upstreams_of(settings, pipeline.catalog).items() if u.engine_load is not None}
    if not wanted:
        return None
    for cand, upstream in wanted.items():
        if pipeline.load is None and (reports is None or not _reads_replica_load(upstream)):
            raise ConfigError(f"upstreams: '{cand.key}': engine_load needs deployment_choice: latency-aware, or "
                              "several base_urls with replica_choice: prefix-affinity (nothing else reads it)")
    targets = {c: EngineProbe(tuple(metrics_url(b, cfg.path) for b in u.base_urls), cfg.interval_s, cfg.timeout_s,
                              replicas=tuple(u.base_urls))
               for c, u in wanted.items() if (cfg := u.engine_load) is not None}
    return EngineLoadPoller(pipeline.load, targets, client, reports=reports)


def _check_key_tenants(settings: Settings, known: set[str]) -> None:
    """A typo in a key's tenant id is refused at start-up, not answered with 403s at run time. The message names
    each such entry by its index in ``api_keys`` and the tenant it names (tenant ids are configuration, not
    secrets); never the key's digest."""
    bad = [f"api_keys[{i}] names tenant {k.tenant!r}" for i, k in enumerate(settings.api_keys) if k.tenant not in known]
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ConfigError(f"{'; '.join(bad[:3])}{more}: the tenants file {settings.tenants} has no such tenant")


def build_live_pipeline(
    settings: Settings,
    *,
    client: httpx.AsyncClient | None = None,
    chooser_factory: ChooserFactory | None = None,
    events: AffinityEventBus | None = None,
    engine_reports: EngineReports | None = None,
) -> Pipeline:
    """``client`` is shared by every adapter (its owner closes it; one is created if omitted);
    ``chooser_factory`` gives each deployment its replica chooser (default: :func:`configured_chooser`);
    ``events`` shares the prefix-affinity choosers' models with other gateway instances (default: the bus
    ``settings.affinity_events`` configures, if any); ``engine_reports`` carries the engines' per-replica load to
    the prefix-affinity choosers of upstreams with ``engine_load`` (give the same object to
    :func:`make_load_poller`)."""
    catalog = Catalog.load(settings.catalog)
    tenants = Tenants.load(settings.tenants)
    _check_key_tenants(settings, {t.id for t in tenants.tenants})
    shared = client or new_client()
    clock = WallClock()
    adapters: dict[Candidate, ModelAdapter] = {}
    bus = events if events is not None else make_affinity_bus(settings)
    for cand, upstream in upstreams_of(settings, catalog).items():
        chooser = (chooser_factory(cand, upstream) if chooser_factory
                   else configured_chooser(upstream, clock, settings.reliability, bus, cand.key, engine_reports))
        adapters[cand] = OpenAIHTTPAdapter(cand, upstream.base_urls, model=upstream.model,
                                           api_key=_api_key(upstream, cand.key), client=shared, chooser=chooser)
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create state_dir {settings.state_dir}: {exc}") from exc
    local = SQLiteRecordStore(settings.state_dir / "records.sqlite")
    records: SQLiteRecordStore | SharedRecordStore = local
    if settings.records is not None:
        url = database_url(settings.records.url, settings.records.password_env, "records")
        try:
            records = SharedRecordStore(local, url, ship_every_s=settings.records.ship_every_s)
        except SQLAlchemyError as exc:  # unreachable or refusing at start-up: a configuration problem
            raise ConfigError(f"records: cannot open the shared database ({type(exc).__name__})") from None
    return assemble(settings, catalog, tenants, adapters, clock, records,
                    cache_path=str(settings.state_dir / "cache.sqlite"))


def make_batch_service(settings: Settings, pipeline: Pipeline, keys: KeyRing | None = None) -> BatchService | None:
    """``/v1/files`` and ``/v1/batches`` over ``pipeline``, stored under ``state_dir/batches`` (off when
    ``batches.enabled`` is false). ``keys``: the gateway's ring (a batch whose creating key is no longer in it
    fails; the ring follows ``api_keys_file``); default: a ring of its own from ``settings`` (with ``api_keys``
    alone, every batch of a key in ``api_keys_file`` would fail as revoked)."""
    cfg = settings.batches
    if not cfg.enabled:
        return None
    keys_now = (keys if keys is not None else KeyRing.from_settings(settings)).digests
    retention_s = None if cfg.retention_days is None else cfg.retention_days * 86_400
    if cfg.store is None:
        return BatchService(settings.state_dir / "batches", pipeline, concurrency=cfg.concurrency,
                            max_file_bytes=cfg.max_file_bytes, retention_s=retention_s, keys=keys_now)
    url = store_url(cfg.store.url, settings.state_dir / "batches", cfg.store.password_env)
    try:
        store = BatchStore(url)
    except SQLAlchemyError as exc:  # unreachable or refusing at start-up: a configuration problem, said plainly
        raise ConfigError(f"batches.store: cannot open the database ({type(exc).__name__})") from None
    return BatchService(store, pipeline, concurrency=cfg.concurrency, max_file_bytes=cfg.max_file_bytes,
                        lease_s=cfg.store.lease_s, poll_s=cfg.store.poll_s, retention_s=retention_s,
                        tenants=cfg.store.tenants, keys=keys_now, key_grace_s=cfg.store.key_grace_s)
