"""Assemble a :class:`Pipeline` from settings: the one place where implementations are chosen."""

from __future__ import annotations

from collections.abc import Mapping

from sovrouter.cache.exact import ExactCache
from sovrouter.catalog import Catalog, Tenants
from sovrouter.classify import NullClassifier, NullDetector
from sovrouter.config import Settings
from sovrouter.contracts import Candidate
from sovrouter.executor import Executor
from sovrouter.pipeline import Pipeline
from sovrouter.policy.availability import AvailabilityPolicy
from sovrouter.protocols import Classifier, Clock, Detector, ModelAdapter, Policy, RecordSink, Router
from sovrouter.reliability import stack
from sovrouter.routing.baseline import BaselineRouter


def make_detector(settings: Settings) -> Detector:
    return NullDetector()


def make_policy(settings: Settings, catalog: Catalog, tenants: Tenants) -> Policy:
    return AvailabilityPolicy(catalog)


def make_router(settings: Settings, catalog: Catalog, tenants: Tenants) -> tuple[Router, Classifier]:
    return BaselineRouter(catalog, tenants), NullClassifier()


def assemble(
    settings: Settings,
    catalog: Catalog,
    tenants: Tenants,
    adapters: Mapping[Candidate, ModelAdapter],
    clock: Clock,
    records: RecordSink,
    cache_path: str = ":memory:",
) -> Pipeline:
    """``adapters`` are the base adapters; each gets the reliability stack (``reliability.stack``)."""
    router, classifier = make_router(settings, catalog, tenants)
    wired = {c: stack.wrap(a, settings.reliability, clock) for c, a in adapters.items()}
    return Pipeline(
        catalog=catalog,
        detector=make_detector(settings),
        policy=make_policy(settings, catalog, tenants),
        classifier=classifier,
        router=router,
        executor=Executor(adapters=wired),
        cache=ExactCache(clock, cache_path, ttl_s=settings.cache.ttl_s, enabled=settings.cache.exact_enabled),
        records=records,
        clock=clock,
    )
