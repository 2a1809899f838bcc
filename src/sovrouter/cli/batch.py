"""``sovrouter batch``: run an OpenAI Batch-style JSONL file through the live pipeline (deferrable routing).

    sovrouter batch --config sovrouter.yaml --tenant acme-us --input in.jsonl --output out.jsonl

Every line goes through the same pipeline as the gateway (policy, cache, routing, records); the router is
wrapped by :class:`~sovrouter.batch.router.DeferrableRouter` (cheapest allowed capacity first). Bad lines get
an error line in the output; the batch never aborts on one. A summary goes to stderr. The arguments, the
configuration, the tenant and the output (neither the input nor a configuration file; its folder can be created)
are checked before the pipeline is built; the output is written atomically (it appears whole when the batch
ends, or not at all).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path

from sovrouter.adapters.openai_http import new_client
from sovrouter.batch.fileio import jsonl_lines, parse_lines
from sovrouter.batch.runner import BatchRunner, BatchSummary, deferrable
from sovrouter.catalog import Tenants
from sovrouter.config import Settings
from sovrouter.errors import ConfigError, NotFoundError
from sovrouter.fileio import atomic_text, check_not_input, check_output
from sovrouter.gateway.wiring import build_live_pipeline, make_affinity_bus

_DATA_CLASSES = ("public", "internal", "confidential", "restricted")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("batch", help="run a JSONL batch of chat completions (OpenAI Batch shape)")
    p.add_argument("--config", required=True, type=Path, help="sovrouter configuration (YAML or TOML)")
    p.add_argument("--input", required=True, type=Path, help="input JSONL: {custom_id, method, url, body}")
    p.add_argument("--output", required=True, type=Path, help="output JSONL: {id, custom_id, response, error}")
    p.add_argument("--tenant", required=True, help="tenant the batch is submitted for (from tenants.json)")
    p.add_argument("--data-class", default="public", choices=_DATA_CLASSES)
    p.add_argument("--concurrency", type=int, default=4, help="lines in flight at once (default 4)")
    p.add_argument("--scope", default="slot", choices=("slot", "plan", "allowed"),
                   help="slot: router's model, cheapest allowed deployment of it (default); plan: cheapest of "
                        "the router's plan; allowed: cheapest of the whole allowed set")
    p.set_defaults(func=run)


def _print_summary(s: BatchSummary) -> None:
    lat = sorted(s.latencies_ms)
    p50 = statistics.median(lat) if lat else 0.0
    print(f"batch: {s.lines} lines, {s.ok} ok, {s.failed} failed, {s.invalid} invalid; "
          f"{s.wall_s:.1f} s, cost ${s.cost_usd:.6f}, {s.output_tokens} output tokens, p50 {p50:.0f} ms; "
          f"routes {s.routes}", file=sys.stderr)


def _prepare(args: argparse.Namespace) -> tuple[Settings, str]:
    """Everything checked before the pipeline is built (its adapters, record store, affinity bus): the
    arguments, the configuration and tenant, the output (not the input or the configuration, a folder that can
    be created), and the input read. Until 2026-11-28 ``--output`` in a missing folder failed only after the
    pipeline was built, and ``--output`` = ``--input`` silently replaced the input (found in review)."""
    if args.concurrency < 1:
        raise ConfigError("--concurrency must be at least 1")
    settings = Settings.load(args.config)
    try:
        Tenants.load(settings.tenants).get(args.tenant)
    except KeyError:
        raise NotFoundError("unknown tenant (not in the tenants file)", param="tenant") from None
    check_not_input(args.output, args.input, flag="--output")
    check_not_input(args.output, args.config, settings.catalog, settings.tenants, what="a configuration file",
                    flag="--output")
    check_output(args.output)
    try:
        text = args.input.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read batch input {args.input}: {type(exc).__name__}") from None
    return settings, text


async def _run(args: argparse.Namespace, settings: Settings, text: str) -> BatchSummary:
    lines = parse_lines(jsonl_lines(text))
    async with new_client() as client:
        # this command owns the affinity bus (if configured) and closes it, which sends its last events: left to
        # build_live_pipeline, nobody closed it and the final "done" events were dropped when the loop ended, so
        # live gateways sharing the stream modelled those calls as running for max_call_s (found in review)
        bus = make_affinity_bus(settings)
        pipeline = deferrable(build_live_pipeline(settings, client=client, events=bus), scope=args.scope)
        try:
            with atomic_text(args.output) as out:  # the file appears whole, or an earlier one stays as it was
                runner = BatchRunner(pipeline, tenant=args.tenant, data_class=args.data_class,
                                     concurrency=args.concurrency)
                _, summary = await runner.run(lines, out)
        except OSError as exc:
            raise ConfigError(f"cannot write batch output {args.output}: {type(exc).__name__}") from None
        finally:
            close = getattr(pipeline.records, "close", None)
            if callable(close):
                close()
            if bus is not None:
                await bus.aclose()
    return summary


def run(args: argparse.Namespace) -> int:
    settings, text = _prepare(args)
    summary = asyncio.run(_run(args, settings, text))
    _print_summary(summary)
    return 0
