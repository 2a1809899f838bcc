"""``sovrouter serve --config FILE [--host 127.0.0.1 --port 8080]``: the gateway under uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import uvicorn

from sovrouter.adapters.engine_load import EngineReports
from sovrouter.adapters.openai_http import new_client
from sovrouter.config import Settings
from sovrouter.errors import ConfigError
from sovrouter.evalloop.loop import observe_live
from sovrouter.gateway.app import create_app
from sovrouter.gateway.auth import KeyRing
from sovrouter.gateway.wiring import build_live_pipeline, make_affinity_bus, make_batch_service, make_load_poller
from sovrouter.protocols import AsyncClosable


def _port(text: str) -> int:
    """A TCP port: 99999 was accepted and bound port 34463 (99999 mod 65536) while the log said 99999."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a port is a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError("a port is a number from 1 to 65535")
    return port


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the OpenAI-compatible gateway")
    p.add_argument("--config", required=True, type=Path, help="configuration file (YAML or TOML)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--port", default=8080, type=_port, help="TCP port, 1 to 65535 (default 8080)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--open-operator-pages", action="store_true",
                   help="serve /metrics and /dashboard without operator_keys on a non-loopback --host (they show "
                        "every tenant's ids, routes and costs to anyone who can reach the port)")
    p.set_defaults(func=run)


def check_exposure(settings: Settings, host: str, open_operator_pages: bool = False) -> None:
    """Refuse to serve the operators' pages unauthenticated beyond loopback unless asked in so many words: without
    ``operator_keys`` any client, a tenant's key or none, read every tenant's traffic there (found in review)."""
    if settings.operator_keys or open_operator_pages:
        return
    try:
        loopback = ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ConfigError("operator_keys is empty: /metrics and /dashboard would be open to anyone reaching "
                          f"{host}; set operator_keys, bind to loopback, or pass --open-operator-pages")


Hook = Callable[[], Awaitable[None]]


def shutdown_order(stop_poller: Hook | None, drain_shadow: Hook, close_client: Hook, closers: Sequence[Hook]
                   ) -> list[Hook]:
    """What the gateway runs at shutdown, in order, after its in-flight requests have drained: stop scraping the
    engines, let the eval loop's shadow calls in flight finish (they use the shared HTTP client, so before it
    closes: closed first, they failed and their comparisons were lost), close the client, then the shared stores
    (which ship the shadow calls' last rows)."""
    return [*([stop_poller] if stop_poller is not None else []), drain_shadow, close_client, *closers]


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(args.config)
    check_exposure(settings, args.host, getattr(args, "open_operator_pages", False))
    client = new_client()
    bus = make_affinity_bus(settings)  # several gateway instances: their replica choosers share one model
    reports = EngineReports()  # each replica's engine load, from the poller to the replica choosers
    pipeline = build_live_pipeline(settings, client=client, events=bus, engine_reports=reports)
    poller = make_load_poller(settings, pipeline, client, reports)  # engines' own load, if configured
    obs, observed = observe_live(settings, pipeline)  # metrics, traces, eval loop; /metrics /v1/feedback /dashboard
    closers = [pipeline.cache.aclose] if isinstance(pipeline.cache, AsyncClosable) else []  # a shared cache's client
    if bus is not None:
        closers.append(bus.aclose)
    for shipped in (pipeline.records, obs.signals):  # shared record and signal stores ship their last rows
        if isinstance(shipped, AsyncClosable):
            closers.append(shipped.aclose)
    keys = KeyRing.from_settings(settings)  # one ring for chat, files, batches and feedback (api_keys_file)
    batches = make_batch_service(settings, observed, keys)  # /v1/files, /v1/batches
    stops = shutdown_order(poller.aclose if poller is not None else None, obs.loop.drain, client.aclose, closers)
    app = create_app(observed, settings, on_shutdown=stops,
                     on_startup=[s.start for s in (bus, poller) if s is not None], batches=batches, keys=keys)
    obs.mount(app)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0
