"""Assemble a :class:`Pipeline` from settings: the one place where implementations are chosen."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from sovrouter.adapters.inflight import InFlightAdapter, InFlightBoard
from sovrouter.cache.exact import ExactCache
from sovrouter.catalog import Catalog, Tenants
from sovrouter.classify import NullClassifier, NullDetector
from sovrouter.config import Settings, env_secret
from sovrouter.contracts import Candidate, NormalizedRequest
from sovrouter.errors import ConfigError
from sovrouter.executor import Executor
from sovrouter.pipeline import Pipeline
from sovrouter.policy.availability import AvailabilityPolicy
from sovrouter.protocols import (
    Classifier,
    Clock,
    DeploymentChooser,
    Detector,
    ModelAdapter,
    Policy,
    RecordSink,
    ResponseCache,
    Router,
)
from sovrouter.reliability import stack
from sovrouter.routing.baseline import BaselineRouter
from sovrouter.routing.deployments import CheapestDeployment, LatencyAwareDeployment
from sovrouter.speculative.shape_online import OnlineAnswerShape, ShapeObservingAdapter

log = logging.getLogger(__name__)


def make_detector(settings: Settings) -> Detector:
    if settings.detector == "pii":
        from sovrouter.detect.detector import FailClosedDetector, PiiDetector  # heavy imports: only when chosen

        detector = PiiDetector(timeout_ms=settings.detector_timeout_ms)
        detector.load_models()  # at start-up, not on the first request that needs NER
        return FailClosedDetector(detector)
    return NullDetector()


def make_policy(settings: Settings, catalog: Catalog, tenants: Tenants) -> Policy:
    """The sovereignty policy. With API keys (a gateway; ``api_keys`` and the ``api_keys_file`` as it reads at
    start-up), a keyed tenant no permit rule names, or a rule quoting a
    sentence its tenant's written policy lacks, stops the start (``ConfigError``); without keys (replay) every
    tenant of the tenants file is checked and a disagreement is logged."""
    if settings.policy == "cedar":
        from sovrouter.policy.cedar import CedarPolicy, PolicySet, rule_problems

        policy = CedarPolicy(catalog, tenants, PolicySet(tenant_rules=settings.policy_rules),
                             timeout_ms=settings.policy_timeout_ms)
        keyed = {k.tenant for k in settings.api_keys}
        if settings.api_keys_file is not None:  # the file's keys at start-up (read again later by the gateway)
            from sovrouter.gateway.keyfile import read_keys

            keyed |= {k.tenant for k in read_keys(settings.api_keys_file, {t.id for t in tenants.tenants},
                                                   settings.api_keys)}
        problems = rule_problems(policy.policies, tenants, keyed or {t.id for t in tenants.tenants})
        if problems and keyed:
            raise ConfigError("; ".join(problems))
        for problem in problems:
            log.warning("policy: %s", problem)
        return policy
    return AvailabilityPolicy(catalog)


def make_deployment_chooser(settings: Settings, catalog: Catalog, tenants: Tenants,
                            load: InFlightBoard | None = None) -> DeploymentChooser:
    if settings.deployment_choice == "cheapest":
        return CheapestDeployment(catalog)
    from sovrouter.speculative.answer_shape import AnswerShapeModel

    # the shipped artifact, corrected online from the answers this pipeline sees (shape_observer)
    shapes = AnswerShapeModel.load() if settings.artifacts.answer_shape is None else \
        AnswerShapeModel.load(settings.artifacts.answer_shape)
    return LatencyAwareDeployment(catalog, tenants, OnlineAnswerShape(shapes), load)


def shape_observer(deployments: DeploymentChooser) -> Callable[[NormalizedRequest, str], None] | None:
    """Where answers go to correct the chooser's answer-shape estimates online, if it learns from them."""
    if isinstance(deployments, LatencyAwareDeployment) and isinstance(deployments.shapes, OnlineAnswerShape):
        return deployments.shapes.observe
    return None


def make_router(settings: Settings, catalog: Catalog, tenants: Tenants,
                deployments: DeploymentChooser | None = None) -> tuple[Router, Classifier]:
    deployments = deployments or make_deployment_chooser(settings, catalog, tenants)
    if settings.router == "learned":
        from sovrouter.routing.learned import LearnedClassifier, LearnedRouter  # loads scikit-learn
        from sovrouter.routing.model import Bundle

        bundle = Bundle.load(settings.artifacts.router)  # the shipped artifacts unless retrained ones are named
        calibrator = None
        if settings.recalibration is not None:
            from sovrouter.evalloop.recalibrate import Recalibration

            calibrator = Recalibration.load(settings.recalibration)
        return LearnedRouter(bundle, catalog, tenants, deployments, calibrator), LearnedClassifier(bundle)
    return BaselineRouter(catalog, tenants, deployments), NullClassifier()


def make_exact_cache(settings: Settings, clock: Clock, cache_path: str, scope: str = "") -> ResponseCache:
    """This instance's SQLite cache; with ``cache.shared``, a Redis cache shared by every instance for the
    requests its scope admits (:mod:`sovrouter.cache.split`). ``scope``: the catalog's policy fingerprint, in
    every key (an entry stored under another catalog never matches)."""
    local = ExactCache(clock, cache_path, ttl_s=settings.cache.ttl_s, enabled=settings.cache.exact_enabled,
                       max_entries=settings.cache.exact_max_entries, purge_every_s=settings.cache.purge_every_s,
                       scope=scope)
    shared = settings.cache.shared
    if shared is None or not settings.cache.exact_enabled:
        return local
    from sovrouter.cache.redis_exact import RedisExactCache  # the client library loads only when configured
    from sovrouter.cache.split import SharedScope, SplitCache

    remote = RedisExactCache.from_url(clock, shared.url, password=env_secret(shared.password_env, "cache.shared"),
                                      ttl_s=settings.cache.ttl_s,
                                      prefix=shared.key_prefix, lock_ttl_s=shared.lock_ttl_s,
                                      wait_s=shared.wait_s, op_timeout_s=shared.op_timeout_s, scope=scope)
    return SplitCache(remote, local, SharedScope.of(shared.tenants, shared.max_class))


def make_cache(settings: Settings, clock: Clock, cache_path: str, scope: str = "") -> ResponseCache:
    exact = make_exact_cache(settings, clock, cache_path, scope)
    if not settings.cache.semantic_enabled:
        return exact
    from sovrouter.cache.layered import LayeredCache  # the embedding model loads only when chosen
    from sovrouter.cache.semantic import SemanticCache
    from sovrouter.cache.verifier import PairVerifier
    from sovrouter.embed import MiniLMEmbedder, named_embedder

    verifier = PairVerifier.load(settings.artifacts.semantic_verifier)
    alt = named_embedder(verifier.alt_embedder) if verifier.alt_embedder else None
    main = MiniLMEmbedder()
    store = None
    if settings.cache.semantic_persist and cache_path != ":memory:":
        from sovrouter.cache.semantic_store import SQLiteEntryStore

        store = SQLiteEntryStore(Path(cache_path).with_name("semantic.sqlite"), verifier.embedder, main.dim)
    semantic = SemanticCache(clock, main, verifier, ttl_s=settings.cache.ttl_s, alt_embedder=alt,
                             max_entries=settings.cache.semantic_max_entries,
                             purge_every_s=settings.cache.purge_every_s, store=store, scope=scope)
    shared = settings.cache.shared
    if shared is None or not shared.share_semantic:
        return LayeredCache(exact, semantic)
    from sovrouter.cache.semantic_share import RedisEntryFeed, SharedSemanticCache
    from sovrouter.cache.split import SharedScope

    feed = RedisEntryFeed.from_url(shared.url, password=env_secret(shared.password_env, "cache.shared"),
                                   op_timeout_s=shared.op_timeout_s, prefix=shared.key_prefix,
                                   max_len=settings.cache.semantic_max_entries or 100_000)
    return LayeredCache(exact, SharedSemanticCache(semantic, feed, SharedScope.of(shared.tenants, shared.max_class)))


def assemble(
    settings: Settings,
    catalog: Catalog,
    tenants: Tenants,
    adapters: Mapping[Candidate, ModelAdapter],
    clock: Clock,
    records: RecordSink,
    cache_path: str = ":memory:",
) -> Pipeline:
    """``adapters`` are the base adapters; each gets the reliability stack (``reliability.stack``) and, with the
    latency-aware deployment chooser, counts its calls in flight on the board the chooser reads and reports its
    answers to the chooser's online answer-shape correction (outside the stack: learning, in a worker thread, is
    not the upstream's time and never counts against a call's deadline)."""
    load = InFlightBoard()
    deployments = make_deployment_chooser(settings, catalog, tenants, load)
    router, classifier = make_router(settings, catalog, tenants, deployments)
    if isinstance(deployments, LatencyAwareDeployment):  # each upstream try counts while it runs
        adapters = {c: InFlightAdapter(a, load) for c, a in adapters.items()}
    wired = {c: stack.wrap(a, settings.reliability, clock) for c, a in adapters.items()}
    observe = shape_observer(deployments)
    if observe is not None:  # outermost: each answer a deployment gave (retries included), seen once
        wired = {c: ShapeObservingAdapter(a, observe) for c, a in wired.items()}
    return Pipeline(
        catalog=catalog,
        detector=make_detector(settings),
        policy=make_policy(settings, catalog, tenants),
        classifier=classifier,
        router=router,
        executor=Executor(adapters=wired),
        cache=make_cache(settings, clock, cache_path, catalog.policy_fingerprint()),
        records=records,
        clock=clock,
        load=load if isinstance(deployments, LatencyAwareDeployment) else None,
    )
