"""``GET /dashboard`` for the gateway to mount."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from sovrouter.catalog import Catalog
from sovrouter.contracts import RequestRecord
from sovrouter.dashboard.data import build
from sovrouter.dashboard.render import render
from sovrouter.evalloop.signals import SignalStore


class Records(Protocol):
    def __iter__(self) -> Iterator[RequestRecord]: ...


def dashboard_router(records: Records, signals: SignalStore, catalog: Catalog | None = None) -> APIRouter:
    router = APIRouter()

    @router.get("/dashboard", include_in_schema=False)
    def dashboard() -> HTMLResponse:
        data = build(iter(records), signals.signals(), signals.regenerations(), catalog)
        return HTMLResponse(render(data), headers={"cache-control": "no-store",
                                                   "content-security-policy": "default-src 'none'; "
                                                   "style-src 'unsafe-inline'; img-src data:"})

    return router
