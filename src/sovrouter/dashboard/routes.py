"""``GET /dashboard`` for the gateway to mount."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from sovrouter.catalog import Catalog
from sovrouter.contracts import RequestRecord
from sovrouter.dashboard.data import build
from sovrouter.dashboard.render import render
from sovrouter.errors import SovrouterError
from sovrouter.evalloop.signals import SignalStore
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.errors import error_response
from sovrouter.telemetry.routes import operator_only


class Records(Protocol):
    def __iter__(self) -> Iterator[RequestRecord]: ...


def dashboard_router(records: Records, signals: SignalStore, catalog: Catalog | None = None,
                     operators: KeyRing | None = None) -> APIRouter:
    router = APIRouter()

    @router.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        try:
            operator_only(request, operators)
        except SovrouterError as exc:
            return error_response(exc)
        data = build(iter(records), signals.signals(), signals.regenerations(), catalog)
        return HTMLResponse(render(data), headers={"cache-control": "no-store",
                                                   "content-security-policy": "default-src 'none'; "
                                                   "style-src 'unsafe-inline'; img-src data:"})

    return router
