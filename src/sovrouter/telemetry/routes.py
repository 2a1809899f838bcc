"""``GET /metrics`` (Prometheus text exposition) for the gateway to mount."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from sovrouter.errors import SovrouterError
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.errors import error_response


def metrics_router(registry: CollectorRegistry, operators: KeyRing | None = None) -> APIRouter:
    """``operators``: the keys one of which a scrape must present (``Settings.operator_keys``); None: open."""
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        try:
            operator_only(request, operators)
        except SovrouterError as exc:
            return error_response(exc)
        return Response(content=generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def operator_only(request: Request, operators: KeyRing | None) -> None:
    """Raise the 401 unless ``operators`` is None or the request presents one of its keys."""
    if operators is not None:
        operators.tenant_for(request.headers.get("authorization"))
