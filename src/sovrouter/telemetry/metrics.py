"""Prometheus metrics computed from :class:`~sovrouter.contracts.RequestRecord` (one registry per instance).

Label cardinality is bounded: routes come from the catalog (slot x deployment, a handful), refusal reasons from
the error hierarchy's codes, and tenants are capped by :class:`TenantLabels` (configured tenants, or the first
``max_tenants`` seen; every other tenant is reported as ``"other"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sovrouter.adapters.inflight import InFlightBoard
from sovrouter.contracts import CallAttempt, Candidate, RequestRecord
from sovrouter.protocols import CacheGauges

if TYPE_CHECKING:
    from sovrouter.gateway.auth import KeyRing
    from sovrouter.gateway.shared_slots import RedisTenantSlots

NO_ROUTE = "none"
CACHE_ROUTE = "cache"  # the latency histogram's slot for answers served from a cache
OTHER_TENANT = "other"
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 20.0)


class TenantLabels:
    """Maps a tenant to a bounded label value. With ``configured`` tenants, only those get their own label;
    without, the first ``max_tenants`` distinct tenants seen do."""

    def __init__(self, configured: Iterable[str] = (), max_tenants: int = 20) -> None:
        self._fixed = bool(list(configured))
        self._known: set[str] = set(configured)
        self._max = max_tenants

    def label(self, tenant: str) -> str:
        if tenant in self._known:
            return tenant
        if not self._fixed and len(self._known) < self._max:
            self._known.add(tenant)
            return tenant
        return OTHER_TENANT


def route_labels(candidate: Candidate | None) -> tuple[str, str]:
    return (candidate.slot, candidate.deployment) if candidate is not None else (NO_ROUTE, NO_ROUTE)


class RequestMetrics:
    """The request-level metrics of the control plane. ``observe`` is called once per record."""

    def __init__(self, registry: CollectorRegistry | None = None, tenants: TenantLabels | None = None,
                 namespace: str = "sovrouter") -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self.tenants = tenants if tenants is not None else TenantLabels()
        r, ns = self.registry, namespace
        route = ("slot", "deployment")
        self.requests = Counter("requests", "Requests by final route, tenant and status",
                                ("tenant", *route, "status"), namespace=ns, registry=r)
        self.cost = Counter("cost_usd", "Cost of upstream calls (catalog prices) by call route and tenant",
                            ("tenant", *route), namespace=ns, registry=r)
        self.calls = Counter("upstream_calls", "Upstream calls by route, purpose and outcome",
                             (*route, "purpose", "outcome"), namespace=ns, registry=r)
        self.tokens = Counter("tokens", "Tokens of upstream calls by route and direction",
                              (*route, "direction"), namespace=ns, registry=r)
        self.latency = Histogram("request_latency_seconds", "Total request latency by final route (cache hits: "
                                 "slot cache, deployment exact or semantic)",
                                 route, namespace=ns, registry=r, buckets=LATENCY_BUCKETS_S)
        self.ttft = Histogram("ttft_seconds", "Time to first token of successful upstream calls",
                              route, namespace=ns, registry=r, buckets=TTFT_BUCKETS_S)
        self.cache_hits = Counter("cache_hits", "Requests served from a cache, by kind (exact, semantic)",
                                  ("tenant", "kind"), namespace=ns, registry=r)
        self.fallbacks = Counter("fallbacks", "Requests that used a fallback step, by final route",
                                 ("tenant", *route), namespace=ns, registry=r)
        self.escalations = Counter("escalations", "Requests the router escalated (cascade), by final route",
                                   ("tenant", *route), namespace=ns, registry=r)
        self.refusals = Counter("refusals", "Requests not served, by reason (error code)",
                                ("tenant", "reason"), namespace=ns, registry=r)
        self.regenerations = Counter("regenerations", "Re-asks of the same or nearly the same prompt within the "
                                     "window, by the route that served the earlier answer",
                                     ("tenant", *route), namespace=ns, registry=r)
        self.shadow_calls = Counter("shadow_calls", "Shadow calls to the reference route, by outcome",
                                    (*route, "outcome"), namespace=ns, registry=r)

    def observe(self, record: RequestRecord) -> None:
        tenant = self.tenants.label(record.tenant)
        slot, dep = route_labels(record.final)
        self.requests.labels(tenant, slot, dep, record.status).inc()
        if record.status == "ok":
            # a cache hit names the route that made the cached answer: filed there at ~0 ms it made a slow
            # deployment look fast as the hit rate rose (until 2026-11-28); hits have slot "cache", deployment kind
            hit = record.cache.kind in ("exact", "semantic")
            lat_route = (CACHE_ROUTE, record.cache.kind) if hit else (slot, dep)
            self.latency.labels(*lat_route).observe(record.latency_ms / 1000.0)
        else:
            self.refusals.labels(tenant, record.error_code or record.status).inc()
        if record.cache.kind in ("exact", "semantic"):
            self.cache_hits.labels(tenant, record.cache.kind).inc()
        if record.fallback_used:
            self.fallbacks.labels(tenant, slot, dep).inc()
        if record.escalated:
            self.escalations.labels(tenant, slot, dep).inc()
        for call in record.calls:
            self._call(call, tenant)

    def _call(self, call: CallAttempt, tenant: str) -> None:
        """One upstream try: the calls, cost, tokens and time-to-first-token series (``tenant``: its label)."""
        cs, cd = route_labels(call.candidate)
        self.calls.labels(cs, cd, call.purpose, call.outcome).inc()
        if call.cost_usd:
            self.cost.labels(tenant, cs, cd).inc(call.cost_usd)
        if call.input_tokens:
            self.tokens.labels(cs, cd, "input").inc(call.input_tokens)
        if call.output_tokens:
            self.tokens.labels(cs, cd, "output").inc(call.output_tokens)
        if call.outcome == "ok" and call.ttft_ms is not None:
            self.ttft.labels(cs, cd).observe(call.ttft_ms / 1000.0)

    def regeneration(self, tenant: str, route: Candidate | None) -> None:
        slot, dep = route_labels(route)
        self.regenerations.labels(self.tenants.label(tenant), slot, dep).inc()

    def shadow(self, route: Candidate, outcome: str, tenant: str, calls: Sequence[CallAttempt] = ()) -> None:
        """A shadow call of the eval loop: in the shadow counter, and each of its tries (``calls``, priced as a
        record's are) like any call in the calls (``purpose`` ``shadow``), cost and token counters, so shadow spend
        shows where spend is read (it was only in the signal store until 2026-11-28: at a shadow fraction of 1 the
        metrics showed a tenth of the spend; and until the same review one call per shadow call, with nothing
        for a timed-out try's prompt nor for the tries the retry layer made)."""
        self.shadow_calls.labels(route.slot, route.deployment, outcome).inc()
        label = self.tenants.label(tenant)
        for call in calls:
            self._call(call.model_copy(update={"purpose": "shadow"}), label)


class CacheCollector(Collector):
    """The cache's own report (:class:`~sovrouter.protocols.CacheGauges`) at each scrape: entries held per layer
    as gauges (``sovrouter_cache_exact_entries``...), purges, evictions and sharing events as counters
    (``sovrouter_cache_semantic_evicted_total``...). Read when scraped, so nothing is kept in step by hand."""

    def __init__(self, cache: CacheGauges, namespace: str = "sovrouter") -> None:
        self.cache = cache
        self.prefix = f"{namespace}_cache_"

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self.cache.cache_gauges().items()):
            if name.endswith("_total"):
                yield CounterMetricFamily(self.prefix + name[: -len("_total")], f"cache: {name}", value=value)
            else:
                yield GaugeMetricFamily(self.prefix + name, f"cache: {name}", value=value)


class InFlightCollector(Collector):
    """Calls in flight per deployment from this gateway (``sovrouter_upstream_in_flight{slot, deployment}``) and,
    where ``engine_load`` polls them, the requests the deployment's engines last reported holding, running or
    waiting (``sovrouter_upstream_engine_requests``), read from the
    :class:`~sovrouter.adapters.inflight.InFlightBoard` at each scrape: the load a speculative deployment's
    ``max_batch`` is compared with is the larger of the two (the report carried forward with this instance's
    calls since)."""

    def __init__(self, board: InFlightBoard, namespace: str = "sovrouter") -> None:
        self.board = board
        self.name = f"{namespace}_upstream_in_flight"
        self.engine_name = f"{namespace}_upstream_engine_requests"

    def collect(self) -> Iterator[Metric]:
        for name, doc, values in (
                (self.name, "upstream calls in flight per deployment", self.board.snapshot()),
                (self.engine_name, "requests the deployment's engines reported holding (running + waiting)",
                 self.board.reported())):
            family = GaugeMetricFamily(name, doc, labels=["slot", "deployment"])
            for target, n in sorted(values.items(), key=lambda kv: kv[0].key):
                family.add_metric([target.slot, target.deployment], n)
            yield family


SLOT_OPS = ("take", "count", "refresh", "release")


class SharedSlotsCollector(Collector):
    """What the per-tenant limit shared in Redis (``shared_in_flight``,
    :class:`~sovrouter.gateway.shared_slots.RedisTenantSlots`) decided on this instance, read at each scrape:

    - ``sovrouter_shared_in_flight_refused_total{tenant, by}``: chat requests refused at the limit, ``by="shared"``
      (every instance's leases in Redis) or ``by="instance"`` (this instance's own count, asked first: the only
      one while Redis cannot be reached); together the ``rate_limit_exceeded`` refusals of ``refusals_total``.
    - ``sovrouter_shared_in_flight_local_only_total{why}``: requests admitted on this instance's count alone,
      ``why="error"`` (the take failed: Redis down, slow or unreadable) or ``"backoff"`` (Redis not asked, within
      ``retry_s`` of a failure).
    - ``sovrouter_shared_in_flight_redis_errors_total{op}`` (take, count, refresh, release),
      ``sovrouter_shared_in_flight_leases_lost_total`` (expired before their refresh) and the gauge
      ``sovrouter_shared_in_flight_leases`` (leases this instance holds now).

    Tenants go through the request metrics' :class:`TenantLabels`, so their label values are the same bounded set.
    """

    def __init__(self, slots: RedisTenantSlots, tenants: TenantLabels, namespace: str = "sovrouter") -> None:
        self.slots = slots
        self.tenants = tenants
        self.prefix = f"{namespace}_shared_in_flight_"

    def collect(self) -> Iterator[Metric]:
        stats, p = self.slots.stats, self.prefix
        refused = CounterMetricFamily(p + "refused", "chat requests refused at the per-tenant limit, by the count "
                                      "that refused (shared: every instance's, instance: this one's)",
                                      labels=["tenant", "by"])
        sums: dict[tuple[str, str], int] = {}
        for (tenant, by), n in self.slots.refused_by.snapshot().items():
            key = (self.tenants.label(tenant), by)
            sums[key] = sums.get(key, 0) + n
        for (tenant, by), n in sorted(sums.items()):
            refused.add_metric([tenant, by], n)
        yield refused
        local = CounterMetricFamily(p + "local_only", "requests admitted on this instance's own count alone "
                                    "(error: the shared take failed; backoff: Redis not asked after a failure)",
                                    labels=["why"])
        local.add_metric(["error"], stats["errors:take"])
        local.add_metric(["backoff"], stats["local_only"])
        yield local
        errors = CounterMetricFamily(p + "redis_errors", "operations on the shared count that failed (Redis "
                                     "unreachable, slow or unreadable)", labels=["op"])
        for op in SLOT_OPS:
            errors.add_metric([op], stats[f"errors:{op}"])
        yield errors
        yield CounterMetricFamily(p + "leases_lost", "leases that expired before their refresh",
                                  value=stats["lost"])
        yield GaugeMetricFamily(p + "leases", "leases this instance holds in the shared count now",
                                value=self.slots.leases_held)


class KeyFileCollector(Collector):
    """The ``api_keys_file`` of a gateway (:mod:`~sovrouter.gateway.keyfile`), read at each scrape:
    ``sovrouter_api_keys_file_reloads_total{result}`` (``ok``: a change read; ``error``: a changed file that did
    not read or validate, the keys before it staying in force) and the gauge ``sovrouter_api_keys`` (keys in force:
    the configuration's plus the file's)."""

    def __init__(self, keys: KeyRing, namespace: str = "sovrouter") -> None:
        self.keys = keys
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(f"{self.namespace}_api_keys_file_reloads", "changes of api_keys_file read "
                                      "(error: the file did not read or validate; the keys before stay in force)",
                                      labels=["result"])
        counts = self.keys.source.reloads if self.keys.source is not None else {"ok": 0, "error": 0}
        for result in ("ok", "error"):
            reloads.add_metric([result], counts[result])
        yield reloads
        yield GaugeMetricFamily(f"{self.namespace}_api_keys", "API keys in force (api_keys and api_keys_file)",
                                value=self.keys.count)
