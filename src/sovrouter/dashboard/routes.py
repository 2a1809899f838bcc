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
    def recent(self, limit: int) -> Iterator[RequestRecord]:
        """The latest ``limit`` records, oldest first."""
        ...


DASHBOARD_RECORDS = 20_000
"""The latest records one page view reads: all of them took ~21 KB of memory and ~0.6 ms per record held (the
store keeps every record for good), so a gateway weeks old held gigabytes for one view."""


def dashboard_router(records: Records, signals: SignalStore, catalog: Catalog | None = None,
                     operators: KeyRing | None = None, max_records: int = DASHBOARD_RECORDS) -> APIRouter:
    router = APIRouter()

    @router.get("/dashboard", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        try:
            operator_only(request, operators)
        except SovrouterError as exc:
            return error_response(exc)
        recs = list(records.recent(max_records))
        ids = {r.request_id for r in recs}  # the signals and re-asks of the requests shown, so rates stay rates
        data = build(recs, (s for s in signals.signals() if s.request_id in ids),
                     [g for g in signals.regenerations() if g.request_id in ids], catalog)
        return HTMLResponse(render(data), headers={"cache-control": "no-store",
                                                   "content-security-policy": "default-src 'none'; "
                                                   "style-src 'unsafe-inline'; img-src data:"})

    return router
