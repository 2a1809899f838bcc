"""``sovrouter demo`` end to end: start the upstreams and the gateway on loopback, send the sample through the
official ``openai`` client, print the table, stop everything.

Wiring (all on 127.0.0.1, free ports)::

    openai client --HTTP--> gateway (uvicorn thread; build_live_pipeline: SQLite records + exact cache)
                               |--HTTP--> llama.cpp server (subprocess): SmolLM2-135M-Instruct = local-small/edge
                               '--HTTP--> playback server (uvicorn thread): recorded answers of the other slots

Everything started is stopped in reverse order on the way out, also on an error or Ctrl-C.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sovrouter.adapters.openai_http import new_client
from sovrouter.config import Settings
from sovrouter.demo.config import DEMO_KEYS, demo_key, render_config
from sovrouter.demo.playback import Playback, create_playback_app
from sovrouter.demo.sample import DemoSample, load_sample
from sovrouter.demo.summary import DemoRow, DemoTotals, format_table, format_totals, frontier_cost, totals
from sovrouter.errors import ConfigError
from sovrouter.gateway.app import create_app
from sovrouter.gateway.server import ServerThread
from sovrouter.gateway.wiring import build_live_pipeline
from sovrouter.local_model import LlamaCppServer, find_smollm2_gguf
from sovrouter.store.records import SQLiteRecordStore

LOCAL_SLOT = "local-small"
FRONTIER_SLOT = "frontier"


@dataclass(frozen=True)
class DemoOptions:
    latency_scale: float = 0.05  # playback latency = catalog profile x this
    max_tokens: int = 64  # sent with every request (llama.cpp honours it; recordings are played whole)
    limit: int | None = None  # send only the first N stream events
    stream_every: int = 3  # every 3rd request streams
    pin_every: int = 8  # of every 8 requests, the 4th asks for "local-small" and the 8th for "frontier" (0: never)
    local_threads: int = 1  # llama.cpp threads: 1 is fastest on a small shared box (see docs/demo.md)
    startup_timeout_s: float = 120.0
    state_dir: Path | None = None  # keep config, records and logs here (default: a temporary folder)


@dataclass(frozen=True)
class PlannedRequest:
    seq: int
    request_id: str
    tenant: str
    data_class: str
    model: str
    stream: bool
    messages: list[dict[str, Any]]


@dataclass(frozen=True)
class DemoResult:
    rows: list[DemoRow]
    totals: DemoTotals
    records_written: int
    local_sample: str  # the first answer of the local model (it shows the model is real, not its quality)


def plan(sample: DemoSample, options: DemoOptions) -> list[PlannedRequest]:
    events = sample.stream[: options.limit] if options.limit is not None else sample.stream
    out = []
    for i, event in enumerate(events):
        req = sample.requests[event.request_id]
        model = "auto"
        if options.pin_every >= 2 and i % options.pin_every == min(3, options.pin_every - 2):
            model = LOCAL_SLOT
        elif options.pin_every >= 2 and i % options.pin_every == options.pin_every - 1:
            model = FRONTIER_SLOT  # the tenant's policy decides whether that is allowed
        out.append(PlannedRequest(
            seq=event.order, request_id=req.id, tenant=req.tenant, data_class=req.data_class,
            model=model,
            stream=options.stream_every > 0 and i % options.stream_every == options.stream_every - 1,
            messages=req.chat_body()["messages"],
        ))
    return out


def _route(meta: dict[str, Any] | None) -> tuple[str | None, str, float]:
    if not meta:
        return None, "?", 0.0
    route = meta.get("route")
    key = f"{route['slot']}/{route['deployment']}" if isinstance(route, dict) else None
    return key, str(meta.get("cache", "?")), float(meta.get("cost_usd") or 0.0)


def send(client: Any, p: PlannedRequest, sample: DemoSample, max_tokens: int) -> tuple[DemoRow, str]:
    """Send one request with the official client; return its row and the answer text."""
    import openai

    rec = sample.responses[(p.request_id, "frontier")]
    ref = frontier_cost(sample.catalog, rec.input_tokens, rec.output_tokens)
    headers = {"X-Data-Class": p.data_class}
    text, meta, error = "", None, None
    t0 = time.perf_counter()
    try:
        if p.stream:
            chunks = client.chat.completions.create(
                model=p.model, messages=p.messages, max_tokens=max_tokens, stream=True,
                stream_options={"include_usage": True}, extra_headers=headers)
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
                extra = (chunk.model_extra or {}).get("sovrouter")
                if extra:
                    meta = extra
        else:
            completion = client.chat.completions.create(
                model=p.model, messages=p.messages, max_tokens=max_tokens, extra_headers=headers)
            text = completion.choices[0].message.content or ""
            meta = (completion.model_extra or {}).get("sovrouter")
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        error = str(body.get("code") or exc.status_code)
    except openai.OpenAIError as exc:  # connection failures, an error event ending a stream
        error = type(exc).__name__
    latency = (time.perf_counter() - t0) * 1000.0
    route, cache, cost = _route(meta)
    if error is None and route is None:
        error = "no_route_metadata"
    row = DemoRow(seq=p.seq, request_id=p.request_id, tenant=p.tenant, data_class=p.data_class, asked=p.model,
                  stream=p.stream, route=route, cache=cache if error is None else "-", latency_ms=latency,
                  cost_usd=cost, frontier_cost_usd=ref, output_chars=len(text), error=error)
    return row, text


@contextmanager
def _run_dir(state_dir: Path | None) -> Iterator[Path]:
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="sovrouter-demo-") as tmp:
        yield Path(tmp)


def run_demo(options: DemoOptions | None = None, out: IO[str] | None = None) -> DemoResult:
    opts = options or DemoOptions()
    stream = out or sys.stdout
    try:
        import openai
    except ImportError:
        raise ConfigError("the demo needs the openai client: pip install -e '.[demo]' (or run "
                          "scripts/setup.sh)") from None

    def say(line: str = "") -> None:
        print(line, file=stream, flush=True)

    sample = load_sample()
    gguf = find_smollm2_gguf()
    t_start = time.perf_counter()
    with ExitStack() as stack:
        run_dir = stack.enter_context(_run_dir(opts.state_dir))
        say("sovrouter demo: the gateway on the embedded default (SQLite records, exact cache), loopback only")
        local = LlamaCppServer(gguf, alias=LOCAL_SLOT, n_threads=opts.local_threads,
                               startup_timeout_s=opts.startup_timeout_s, log_path=run_dir / "llama-server.log")
        stack.callback(_stopped(say, "llama.cpp server", local.stop))
        local.start()
        say(f"  local model   {gguf.name} via llama.cpp (pid {local.pid}) at {local.base_url}"
            f" -> {LOCAL_SLOT}/edge")
        playback = Playback(sample, latency_scale=opts.latency_scale)
        pb_server = ServerThread(create_playback_app(playback))
        stack.callback(_stopped(say, "playback server", pb_server.stop))
        pb_server.start()
        say(f"  playback      recorded answers of {len(sample.requests)} sample requests at {pb_server.url}/v1"
            f" -> {len(playback.models())} deployments, latency profile x{opts.latency_scale:g}")

        config_path = render_config(run_dir, local.base_url, pb_server.url + "/v1")
        settings = Settings.load(config_path)
        client = new_client()
        pipeline = build_live_pipeline(settings, client=client)
        if isinstance(pipeline.records, SQLiteRecordStore):
            stack.callback(pipeline.records.close)
        gw = ServerThread(create_app(pipeline, settings, on_shutdown=[client.aclose]))
        stack.callback(_stopped(say, "gateway", gw.stop))
        gw.start()
        say(f"  gateway       {gw.url}/v1 (router {pipeline.router.name}, policy {type(pipeline.policy).__name__},"
            f" detector {type(pipeline.detector).__name__}); config {config_path}")
        say("  demo API keys " + ", ".join(f"{t}={k}" for t, k in DEMO_KEYS))

        planned = plan(sample, opts)
        clients = {t: openai.OpenAI(base_url=gw.url + "/v1", api_key=demo_key(t), max_retries=0, timeout=120.0)
                   for t, _ in DEMO_KEYS}
        for c in clients.values():
            stack.callback(c.close)
        say(f"\nsending {len(planned)} requests through the official openai client "
            f"({sum(p.stream for p in planned)} streaming; {sum(p.model == LOCAL_SLOT for p in planned)} ask for "
            f"{LOCAL_SLOT}, {sum(p.model == FRONTIER_SLOT for p in planned)} for {FRONTIER_SLOT}, the rest for 'auto'; "
            "X-Data-Class from the sample)\n")
        rows: list[DemoRow] = []
        local_sample = ""
        for p in planned:
            row, text = send(clients[p.tenant], p, sample, opts.max_tokens)
            rows.append(row)
            if not local_sample and row.route == f"{LOCAL_SLOT}/edge" and row.cache == "miss" and text:
                local_sample = " ".join(text.split())[:100]
        summary = totals(rows, sample.catalog)
        say(format_table(rows))
        say()
        say(format_totals(summary))
        if local_sample:
            say(f"local model     first answer: \"{local_sample}...\" (SmolLM2-135M: the demo shows routing, "
                "not model quality)")
        records = pipeline.records
        written = records.count() if isinstance(records, SQLiteRecordStore) else len(rows)
        say(f"records         {written} per-request records in {settings.state_dir / 'records.sqlite'}"
            + ("" if opts.state_dir else " (temporary; keep them with --state-dir)"))
    say(f"done in {time.perf_counter() - t_start:.1f} s; everything stopped")
    return DemoResult(rows=rows, totals=summary, records_written=written, local_sample=local_sample)


def _stopped(say: Callable[[str], None], name: str, stop: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        stop()
        say(f"stopped {name}")

    return run
